//! The tokio adapter against real TCP listeners: connect, fail, back off, reconnect, drop,
//! shut down, leave.
#![allow(clippy::unwrap_used)] // tests unwrap what they set up themselves

mod support;

use support::{n, next_where, within};

use std::net::SocketAddr;
use std::time::Duration;

use muster_core::strategy::epmd::{Epmd, EpmdConfig};
use muster_core::{ConnectPolicy, Event, Node, TopologySpec};
use muster_tokio::{Builder, Connector, TcpConnector};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

fn quick() -> ConnectPolicy {
    ConnectPolicy::default()
        .connect_timeout(Duration::from_secs(5))
        .backoff(Duration::from_millis(20), Duration::from_millis(400))
}

fn epmd(hosts: Vec<Node>, every_ms: u64) -> TopologySpec {
    TopologySpec::new(
        "static",
        Epmd::new(EpmdConfig::new(hosts).reconnect_every(Duration::from_millis(every_ms))),
    )
    .policy(quick())
}

/// Accepts connections forever, holding each until the peer closes it.
async fn serve(listener: TcpListener) {
    loop {
        let Ok((mut s, _)) = listener.accept().await else {
            return;
        };
        tokio::spawn(async move {
            let mut buf = [0u8; 64];
            while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
        });
    }
}

async fn listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    (l, a)
}

#[tokio::test]
async fn connects_every_listening_node() {
    let mut hosts = Vec::new();
    for i in 0..3 {
        let (l, a) = listener().await;
        tokio::spawn(serve(l));
        hosts.push(Node::with_addr(n(&format!("svc{i}@127.0.0.1")), a));
    }
    let (handle, mut events) = Builder::new(TcpConnector::new(1))
        .this_node(n("me@127.0.0.1"))
        .topology(epmd(hosts, 1000))
        .spawn()
        .unwrap();
    let members = within(handle.wait_for_members(|m| m.len() == 3))
        .await
        .unwrap();
    assert_eq!(
        members,
        vec![
            n("svc0@127.0.0.1"),
            n("svc1@127.0.0.1"),
            n("svc2@127.0.0.1")
        ]
    );
    for _ in 0..3 {
        next_where(&mut events, |e| e.name() == "connected").await;
    }
    assert_eq!(handle.metrics().connected, 3);
    handle.shutdown().await;
}

#[tokio::test]
async fn a_refused_node_backs_off_and_connects_when_its_listener_comes_back() {
    let (l, addr) = listener().await;
    drop(l);
    let (handle, mut events) = Builder::new(TcpConnector::new(1))
        .topology(epmd(
            vec![Node::with_addr(n("late@127.0.0.1"), addr)],
            60_000,
        ))
        .spawn()
        .unwrap();
    let mut delays = Vec::new();
    for attempt in 1..=4 {
        let e = next_where(&mut events, |e| e.name() == "connect_failed").await;
        let Event::ConnectFailed {
            attempt: a,
            retry_in,
            reason,
            ..
        } = e
        else {
            unreachable!()
        };
        assert_eq!(a, attempt);
        assert!(
            reason.to_string().contains(&addr.to_string()) && reason.code() == "refused",
            "the reason names the address: {reason}"
        );
        delays.push(retry_in.expect("retried"));
    }
    // Each delay is jittered into the upper half of 20, 40, 80, 160 ms.
    for (i, d) in delays.iter().enumerate() {
        let full = Duration::from_millis(20 << i);
        assert!(*d >= full / 2 && *d <= full, "attempt {}: {d:?}", i + 1);
    }
    let l = TcpListener::bind(addr).await.unwrap();
    tokio::spawn(serve(l));
    let e = next_where(&mut events, |e| e.name() == "connected").await;
    assert_eq!(e.node(), Some(&n("late@127.0.0.1")));
    handle.shutdown().await;
}

#[tokio::test]
async fn a_connection_the_peer_closes_is_reported_and_reconnected() {
    let (l, addr) = listener().await;
    let (handle, mut events) = Builder::new(TcpConnector::new(1))
        .topology(epmd(
            vec![Node::with_addr(n("peer@127.0.0.1"), addr)],
            60_000,
        ))
        .spawn()
        .unwrap();
    // Accept the first connection and close it at once; serve the next ones.
    let (first, _) = within(l.accept()).await.unwrap();
    next_where(&mut events, |e| e.name() == "connected").await;
    drop(first);
    let e = next_where(&mut events, |e| e.name() == "disconnected").await;
    assert_eq!(e.reason().as_deref(), Some("connection closed by peer"));
    tokio::spawn(serve(l));
    next_where(&mut events, |e| e.name() == "connected").await;
    assert_eq!(handle.members(), vec![n("peer@127.0.0.1")]);
    assert_eq!(handle.metrics().dropped, 1);
    handle.shutdown().await;
}

#[tokio::test]
async fn shutdown_keeps_connections_and_leave_closes_them() {
    let (l, addr) = listener().await;
    let connector = TcpConnector::new(1);
    let (handle, _events) = Builder::new(connector.clone())
        .topology(epmd(
            vec![Node::with_addr(n("peer@127.0.0.1"), addr)],
            60_000,
        ))
        .spawn()
        .unwrap();
    let (mut server_side, _) = within(l.accept()).await.unwrap();
    within(handle.wait_for_members(|m| m.len() == 1))
        .await
        .unwrap();
    handle.shutdown().await;
    assert_eq!(
        connector.list_nodes().await.unwrap(),
        vec![n("peer@127.0.0.1")]
    );

    // A second cluster on the same connector, this time leaving.
    let (handle, mut events) = Builder::new(connector.clone())
        .topology(epmd(
            vec![Node::with_addr(n("peer@127.0.0.1"), addr)],
            60_000,
        ))
        .spawn()
        .unwrap();
    next_where(&mut events, |e| e.name() == "connected").await;
    handle.leave().await;
    assert!(connector.list_nodes().await.unwrap().is_empty());
    let mut buf = [0u8; 8];
    let n = within(server_side.read(&mut buf)).await.unwrap();
    assert_eq!(n, 0, "the peer sees the connection closed");
}

#[tokio::test]
async fn never_connects_to_itself() {
    let (l, addr) = listener().await;
    tokio::spawn(serve(l));
    let connector = TcpConnector::new(addr.port());
    let (handle, _events) = Builder::new(connector)
        .this_node(n("me@127.0.0.1"))
        .topology(epmd(
            vec![
                Node::new(n("me@127.0.0.1")),
                Node::new(n("other@127.0.0.1")),
            ],
            60_000,
        ))
        .spawn()
        .unwrap();
    let m = within(handle.wait_for_members(|m| !m.is_empty()))
        .await
        .unwrap();
    assert_eq!(m, vec![n("other@127.0.0.1")]);
    assert_eq!(handle.metrics().self_skipped, 1);
    handle.shutdown().await;
}

#[tokio::test]
async fn resolves_the_host_part_of_the_name_on_the_configured_port() {
    let (l, addr) = listener().await;
    tokio::spawn(serve(l));
    let (handle, _events) = Builder::new(TcpConnector::new(addr.port()))
        .topology(epmd(vec![Node::new(n("svc@localhost"))], 60_000))
        .spawn()
        .unwrap();
    within(handle.wait_for_members(|m| m.len() == 1))
        .await
        .unwrap();
    handle.shutdown().await;
}
