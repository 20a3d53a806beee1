//! Gossip over real UDP sockets on loopback: multicast among several clusters, what an
//! attacker's packets come to, and a socket that cannot bind.
#![allow(clippy::unwrap_used)] // tests unwrap what they set up themselves

mod support;

use support::{n, next_where, within};

use muster_core::config::Options;
use muster_core::proto::gossip::{self as wire, SecureKeys};
use muster_core::strategy::gossip::{Gossip, GossipConfig};
use muster_core::{TopologySpec, Value};
use muster_tokio::{Builder, ClusterHandle, Events, NoneConnector};
use tokio::net::UdpSocket;

/// A port nobody uses right now.
async fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn config(port: u16, extra: &[(&str, Value)]) -> GossipConfig {
    let mut t = vec![
        ("port".to_string(), Value::Int(i64::from(port))),
        // Keep every packet on loopback.
        ("multicast_if".to_string(), Value::str("127.0.0.1")),
        ("heartbeat_max_ms".to_string(), Value::Int(200)),
    ];
    t.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
    GossipConfig::from_options(&mut Options::new("gossip", &t)).unwrap()
}

fn node(name: &str, c: GossipConfig) -> (ClusterHandle, Events) {
    Builder::new(NoneConnector)
        .this_node(n(name))
        .topology(TopologySpec::new("gossip", Gossip::new(c)))
        .spawn()
        .unwrap()
}

#[tokio::test]
async fn nodes_on_one_host_find_each_other_over_loopback_multicast() {
    for extra in [
        vec![],
        vec![("secret", Value::str("s"))],
        vec![("secret", Value::str("s")), ("compat", Value::Bool(true))],
    ] {
        let port = free_port().await;
        let names = ["a@127.0.0.1", "b@127.0.0.1", "c@127.0.0.1"];
        let mut nodes: Vec<(ClusterHandle, Events)> = names
            .iter()
            .map(|name| node(name, config(port, &extra)))
            .collect();
        for (i, (_, events)) in nodes.iter_mut().enumerate() {
            let mut found = Vec::new();
            while found.len() < 2 {
                let e = next_where(events, |e| {
                    e.name() == "discovered" || e.name() == "rejected"
                })
                .await;
                assert_eq!(e.name(), "discovered", "{extra:?}: {e}");
                found.push(e.node().unwrap().to_string());
            }
            found.sort();
            let mut want: Vec<String> = names.iter().map(|s| s.to_string()).collect();
            want.remove(i);
            assert_eq!(found, want, "{extra:?}");
        }
        for (h, _) in nodes {
            assert_eq!(h.metrics().rejected, 0);
            h.shutdown().await;
        }
    }
}

#[tokio::test]
async fn forged_flipped_replayed_and_compat_packets_are_rejected_and_counted() {
    let port = free_port().await;
    let (handle, mut events) = node("me@127.0.0.1", config(port, &[("secret", Value::str("k"))]));
    within(handle.wait_for_metrics(|m| m.sockets == 1))
        .await
        .unwrap();
    let attacker = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let to = ("127.0.0.1", port);
    let keys = SecureKeys::derive(b"k");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let mut good = Vec::new();
    wire::write_secure(&mut good, &keys, now_ms, [5; 16], "peer@127.0.0.2");
    attacker.send_to(&good, to).await.unwrap();
    let e = next_where(&mut events, |e| e.name() == "discovered").await;
    assert_eq!(e.node(), Some(&n("peer@127.0.0.2")));

    let mut forged = Vec::new();
    wire::write_secure(
        &mut forged,
        &SecureKeys::derive(b"guess"),
        now_ms + 1,
        [5; 16],
        "evil@127.0.0.3",
    );
    let mut flipped = good.clone();
    flipped[20] ^= 0x10;
    let mut compat = Vec::new();
    wire::write_plain(&mut compat, "plain@127.0.0.4");
    let rejected_before = handle.metrics().rejected;
    for packet in [&forged, &flipped, &good, &compat] {
        attacker.send_to(packet, to).await.unwrap();
    }
    // The first rejection from this address is reported; all four are counted.
    let e = next_where(&mut events, |e| e.name() == "rejected").await;
    assert!(e.reason().unwrap().contains("authentication failed"), "{e}");
    within(handle.wait_for_metrics(|m| m.rejected >= rejected_before + 4))
        .await
        .unwrap();
    assert_eq!(handle.metrics().rejected, rejected_before + 4);
    assert_eq!(handle.metrics().discovered, 1, "nothing forged got in");
    handle.shutdown().await;
}

#[tokio::test]
async fn a_port_taken_without_reuse_is_reported_with_address_and_os_error() {
    // A socket without SO_REUSEPORT holds the port.
    let holder = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let (handle, mut events) = node("me@127.0.0.1", config(port, &[]));
    let e = next_where(&mut events, |e| e.name() == "discovery_failed").await;
    let why = e.reason().unwrap();
    assert!(
        why.contains(&format!("cannot bind UDP 0.0.0.0:{port}")),
        "{why}"
    );
    assert!(why.contains("Address already in use"), "{why}");
    assert!(why.contains("retrying"), "{why}");
    assert_eq!(handle.metrics().sockets, 0);
    // Freed, the port is taken on the next attempt.
    drop(holder);
    within(handle.wait_for_metrics(|m| m.sockets == 1 && m.discovery_failed == 1))
        .await
        .unwrap();
    handle.shutdown().await;
}
