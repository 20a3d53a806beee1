//! A full mesh of Erlang nodes forms cleanly: twelve muster nodes that are Erlang nodes
//! (the core's distribution on tokio) find each other through muster's own EPMD, all at
//! once, ten times over — and not one link is replaced (no `disconnected`) and not one
//! simultaneous connect is reported as a failure (no `connect_failed`). Counted, not timed.
#![allow(clippy::unwrap_used)] // tests unwrap what they set up themselves

use std::net::SocketAddr;
use std::time::Duration;

use muster::core::dist::DistConfig;
use muster::core::strategy::local_epmd::{LocalEpmd, LocalEpmdConfig};
use muster::core::{ConnectPolicy, Event, NodeName, TopologySpec};
use muster::tokio::{Builder, ClusterHandle, epmd_names, run_epmd};
use tokio::sync::mpsc;

const NODES: usize = 12;
const ROUNDS: usize = 10;

fn name(round: usize, i: usize) -> NodeName {
    format!("mesh{round}x{i}@127.0.0.1").parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twelve_nodes_mesh_ten_times_with_no_replaced_link_and_no_failed_connect() {
    let epmd = run_epmd("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let port = epmd.local_addr().port();
    for round in 0..ROUNDS {
        let (tx, mut rx) = mpsc::unbounded_channel::<(usize, Event)>();
        let mut nodes: Vec<ClusterHandle> = Vec::new();
        for i in 0..NODES {
            let config = DistConfig::new(name(round, i), "mesh-cookie")
                .epmd_port(port)
                .listen(SocketAddr::from(([127, 0, 0, 1], 0)));
            let (h, mut events) = Builder::erlang(config).spawn().unwrap();
            let tx = tx.clone();
            tokio::spawn(async move {
                while let Some(e) = events.recv().await {
                    let _ = tx.send((i, e));
                }
            });
            nodes.push(h);
        }
        // Every node registered, then every node looks at once: the worst case for races.
        let want: Vec<String> = (0..NODES)
            .map(|i| name(round, i).name().to_owned())
            .collect();
        tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let names = epmd_names(("127.0.0.1", port)).await.unwrap_or_default();
                if want.iter().all(|w| names.contains(w)) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("every node registers with EPMD");
        let policy = ConnectPolicy::default()
            .connect_timeout(Duration::from_secs(3))
            .backoff(Duration::from_millis(100), Duration::from_millis(1600));
        for h in &nodes {
            let local = LocalEpmd::new(LocalEpmdConfig::new(port, Duration::from_millis(500)));
            h.add_topology(TopologySpec::new("mesh", local).policy(policy))
                .await
                .unwrap();
        }
        for h in &nodes {
            tokio::time::timeout(
                Duration::from_secs(60),
                h.wait_for_members(|m| m.len() == NODES - 1),
            )
            .await
            .expect("a full mesh")
            .unwrap();
        }
        // Let the last handshakes and any late race settle a little before counting: a
        // replaced link would show as a `disconnected` right after the mesh is complete.
        tokio::time::sleep(Duration::from_millis(500)).await;
        // What happened while the mesh formed (not the shutdown's closes that follow).
        let (mut disconnected, mut failed) = (Vec::new(), Vec::new());
        while let Ok((i, e)) = rx.try_recv() {
            match e.name() {
                "disconnected" => disconnected.push(format!("node {i}: {e}")),
                "connect_failed" => failed.push(format!("node {i}: {e}")),
                _ => {}
            }
        }
        for h in nodes {
            h.shutdown().await;
        }
        drop(tx);
        assert!(disconnected.is_empty(), "round {round}: {disconnected:#?}");
        assert!(failed.is_empty(), "round {round}: {failed:#?}");
    }
}
