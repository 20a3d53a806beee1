//! The async-io adapter under async-std's executor and under smol's: a static topology
//! through the recording connector, and the TCP connector against real listeners.
#![allow(clippy::unwrap_used)] // tests unwrap what they set up themselves

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use futures_lite::FutureExt;
use muster_async_io::{Builder, Connector, RecordingConnector, TcpConnector};
use muster_core::strategy::epmd::{Epmd, EpmdConfig};
use muster_core::{ConnectPolicy, Event, Node, NodeName, TopologySpec};

fn n(s: &str) -> NodeName {
    s.parse().unwrap()
}

/// A failsafe: a hung test fails instead of hanging CI.
async fn within<T>(fut: impl Future<Output = T>) -> T {
    fut.or(async {
        async_io::Timer::after(Duration::from_secs(30)).await;
        panic!("timed out waiting")
    })
    .await
}

fn epmd(hosts: Vec<Node>) -> TopologySpec {
    TopologySpec::new(
        "static",
        Epmd::new(EpmdConfig::new(hosts).reconnect_every(Duration::from_millis(50))),
    )
    .policy(ConnectPolicy::default().backoff(Duration::from_millis(20), Duration::from_millis(200)))
}

async fn static_topology(spawn: fn(muster_async_io::Driver)) {
    let rec = RecordingConnector::new();
    let hosts = vec![Node::new(n("a@h1")), Node::new(n("b@h2"))];
    let (cluster, mut events, driver) = Builder::new(rec.clone())
        .this_node(n("me@h0"))
        .topology(epmd(hosts))
        .build()
        .unwrap();
    spawn(driver);
    let m = within(cluster.wait_for_members(|m| m.len() == 2))
        .await
        .unwrap();
    assert_eq!(m, vec![n("a@h1"), n("b@h2")]);
    // A connection that drops is reported and made again.
    rec.drop_node(&n("a@h1"), "gone");
    within(async {
        loop {
            let e = events.recv().await.unwrap();
            if matches!(&e, Event::Connected { node, .. } if *node == n("a@h1"))
                && rec.connected().len() == 2
            {
                return;
            }
        }
    })
    .await;
    let c = cluster.clone();
    within(c.shutdown()).await;
    // The stream ends once the driver has stopped.
    within(async { while events.recv().await.is_some() {} }).await;
}

async fn tcp_connector(spawn: fn(muster_async_io::Driver)) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let tcp = TcpConnector::new(addr.port());
    let (cluster, _events, driver) = Builder::new(tcp.clone())
        .this_node(n("me@127.0.0.1"))
        .topology(epmd(vec![Node::with_addr(n("svc@127.0.0.1"), addr)]))
        .build()
        .unwrap();
    spawn(driver);
    within(cluster.wait_for_members(|m| m == [n("svc@127.0.0.1")])).await;
    let (peer, _) = listener.accept().unwrap();
    // The peer closes: the next list finds it gone and the cluster connects again.
    drop(peer);
    let (_again, _) = blocking::unblock(move || listener.accept()).await.unwrap();
    within(cluster.wait_for_metrics(|m| m.connected >= 2))
        .await
        .unwrap();
    assert_eq!(tcp.list_nodes().await.unwrap(), vec![n("svc@127.0.0.1")]);
    within(cluster.shutdown()).await;
}

fn on_async_std(d: muster_async_io::Driver) {
    async_std::task::spawn(d);
}

fn on_smol(d: muster_async_io::Driver) {
    smol::spawn(d).detach();
}

#[test]
fn static_topology_under_async_std() {
    async_std::task::block_on(static_topology(on_async_std));
}

#[test]
fn static_topology_under_smol() {
    smol::block_on(static_topology(on_smol));
}

#[test]
fn tcp_connector_under_async_std() {
    async_std::task::block_on(tcp_connector(on_async_std));
}

#[test]
fn tcp_connector_under_smol() {
    smol::block_on(tcp_connector(on_smol));
}
