//! A full mesh of Erlang nodes formed all at once: `nodes` muster nodes that are Erlang nodes
//! (the core's distribution on tokio) register with one EPMD, then all look at once — the
//! worst case for simultaneous connects. Shared by the mesh test and the Erlang benchmark.

use std::net::SocketAddr;
use std::time::Duration;

use muster::core::dist::DistConfig;
use muster::core::strategy::local_epmd::{LocalEpmd, LocalEpmdConfig};
use muster::core::{ConnectPolicy, Event, NodeName, TopologySpec};
use muster::tokio::{Builder, ClusterHandle, epmd_names};
use tokio::sync::mpsc;

/// What went wrong while a mesh formed, one line per event.
#[derive(Debug, Default)]
pub struct Spurious {
    /// `disconnected` events: a link replaced or lost.
    pub disconnected: Vec<String>,
    /// `connect_failed` events: a lost race reported as a failure, or worse.
    pub failed: Vec<String>,
}

fn name(round: usize, i: usize) -> NodeName {
    format!("mesh{round}x{i}@127.0.0.1").parse().unwrap()
}

/// Forms a mesh of `nodes` nodes named for `round` through the EPMD on `port`, waits until
/// every node has every other as a member, and returns what went wrong meanwhile.
pub async fn form(port: u16, round: usize, nodes: usize) -> Spurious {
    let (tx, mut rx) = mpsc::unbounded_channel::<(usize, Event)>();
    let mut handles: Vec<ClusterHandle> = Vec::new();
    for i in 0..nodes {
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
        handles.push(h);
    }
    // Every node registered (there is no event for it: EPMD is asked until it says so).
    let want: Vec<String> = (0..nodes)
        .map(|i| name(round, i).name().to_owned())
        .collect();
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let names = epmd_names(("127.0.0.1", port)).await.unwrap_or_default();
            if want.iter().all(|w| names.contains(w)) {
                break;
            }
            // A pause between polls, so that the polling's own connections stay few.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("every node registers with EPMD");
    let policy = ConnectPolicy::default()
        .connect_timeout(Duration::from_secs(3))
        .backoff(Duration::from_millis(100), Duration::from_millis(1600));
    for h in &handles {
        let local = LocalEpmd::new(LocalEpmdConfig::new(port, Duration::from_millis(500)));
        h.add_topology(TopologySpec::new("mesh", local).policy(policy))
            .await
            .unwrap();
    }
    for h in &handles {
        tokio::time::timeout(
            Duration::from_secs(60),
            h.wait_for_members(|m| m.len() == nodes - 1),
        )
        .await
        .expect("a full mesh")
        .unwrap();
    }
    // A replaced link shows as a `disconnected` right after the mesh is complete: watch a
    // little longer before counting (there is no event for "nothing more happened").
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut spurious = Spurious::default();
    while let Ok((i, e)) = rx.try_recv() {
        match e.name() {
            "disconnected" => spurious.disconnected.push(format!("node {i}: {e}")),
            "connect_failed" => spurious.failed.push(format!("node {i}: {e}")),
            _ => {}
        }
    }
    for h in handles {
        h.shutdown().await;
    }
    spurious
}
