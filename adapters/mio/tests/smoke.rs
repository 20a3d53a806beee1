//! The mio loop on a thread of its own: a static topology through the recording connector,
//! the TCP connector against a real listener, shutdown and the end of the event stream.
#![allow(clippy::unwrap_used)] // tests unwrap what they set up themselves

use std::net::TcpListener;
use std::time::Duration;

use muster_core::strategy::epmd::{Epmd, EpmdConfig};
use muster_core::{ConnectPolicy, Event, Node, NodeName, TopologySpec};
use muster_mio::{Builder, RecordingConnector, TcpConnector};

/// A failsafe for waits that should end: a hung test fails instead of hanging CI.
const HANG: Duration = Duration::from_secs(30);

fn n(s: &str) -> NodeName {
    s.parse().unwrap()
}

fn epmd(hosts: Vec<Node>) -> TopologySpec {
    TopologySpec::new(
        "static",
        Epmd::new(EpmdConfig::new(hosts).reconnect_every(Duration::from_millis(50))),
    )
    .policy(ConnectPolicy::default().backoff(Duration::from_millis(20), Duration::from_millis(200)))
}

#[test]
fn a_static_topology_connects_reconnects_and_shuts_down() {
    let rec = RecordingConnector::new();
    let hosts = vec![Node::new(n("a@h1")), Node::new(n("b@h2"))];
    let (cluster, mut events, event_loop) = Builder::new(rec.clone())
        .this_node(n("me@h0"))
        .topology(epmd(hosts))
        .build()
        .unwrap();
    let thread = std::thread::spawn(move || event_loop.run());
    let m = cluster.wait_for_members(HANG, |m| m.len() == 2).unwrap();
    assert_eq!(m, vec![n("a@h1"), n("b@h2")]);
    rec.drop_node(&n("a@h1"), "gone");
    loop {
        let e = events.recv_timeout(HANG).expect("an event");
        if matches!(&e, Event::Connected { node, .. } if *node == n("a@h1"))
            && rec.connected().len() == 2
        {
            break;
        }
    }
    cluster.shutdown();
    thread.join().unwrap().unwrap();
    while events.recv_timeout(HANG).is_some() {}
}

#[test]
fn the_tcp_connector_holds_a_connection_and_makes_it_again() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (cluster, _events, event_loop) = Builder::new(TcpConnector::new(addr.port()))
        .this_node(n("me@127.0.0.1"))
        .topology(epmd(vec![Node::with_addr(n("svc@127.0.0.1"), addr)]))
        .build()
        .unwrap();
    let thread = std::thread::spawn(move || event_loop.run());
    cluster
        .wait_for_members(HANG, |m| m == [n("svc@127.0.0.1")])
        .unwrap();
    let (peer, _) = listener.accept().unwrap();
    drop(peer);
    let (_again, _) = listener.accept().unwrap();
    cluster
        .wait_for_metrics(HANG, |m| m.connected >= 2)
        .unwrap();
    cluster.shutdown();
    thread.join().unwrap().unwrap();
}

#[test]
fn dropping_every_handle_stops_the_loop() {
    let (cluster, events, event_loop) = Builder::new(RecordingConnector::new())
        .topology(epmd(vec![Node::new(n("a@h1"))]))
        .build()
        .unwrap();
    let thread = std::thread::spawn(move || event_loop.run());
    drop(cluster);
    thread.join().unwrap().unwrap();
    drop(events);
}
