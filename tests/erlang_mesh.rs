//! A full mesh of Erlang nodes forms cleanly: twelve muster nodes that are Erlang nodes
//! (the core's distribution on tokio) find each other through muster's own EPMD, all at
//! once, ten times over — and not one link is replaced (no `disconnected`) and not one
//! simultaneous connect is reported as a failure (no `connect_failed`). Counted, not timed.
#![allow(clippy::unwrap_used)] // tests unwrap what they set up themselves

#[path = "support/mesh.rs"]
mod mesh;

use muster::tokio::run_epmd;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twelve_nodes_mesh_ten_times_with_no_replaced_link_and_no_failed_connect() {
    let epmd = run_epmd("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let port = epmd.local_addr().port();
    for round in 0..10 {
        let s = mesh::form(port, round, 12).await;
        assert!(
            s.disconnected.is_empty(),
            "round {round}: {:#?}",
            s.disconnected
        );
        assert!(s.failed.is_empty(), "round {round}: {:#?}", s.failed);
    }
}
