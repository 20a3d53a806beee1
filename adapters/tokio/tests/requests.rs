//! The adapter's other requests — file reads and stream exchanges — through strategies, and
//! connector notices through the recording connector.
#![allow(clippy::unwrap_used)] // tests unwrap what they set up themselves

mod support;

use support::{n, next_where};

use std::time::Duration;

use muster_core::sim::NodesFile;
use muster_core::strategy::epmd::{Epmd, EpmdConfig};
use muster_core::strategy::{Context, ExchangeId, Reply, Strategy};
use muster_core::{
    AddTopologyError, ConnectPolicy, DiscoveryError, Endpoint, Exchange, Instant, Node,
    TopologySpec,
};
use muster_tokio::{Builder, Call, NoneConnector, RecordingConnector};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

#[tokio::test]
async fn a_file_strategy_reads_real_files_every_poll() {
    let dir = std::env::temp_dir().join(format!("muster-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("nodes.txt");
    std::fs::write(&path, "a@h1\nb@h2\n").unwrap();
    let spec = TopologySpec::new(
        "file",
        NodesFile::new(path.to_string_lossy(), Duration::from_millis(50)),
    );
    let (handle, mut events) = Builder::new(NoneConnector).topology(spec).spawn().unwrap();
    let mut found = vec![
        next_where(&mut events, |e| e.name() == "discovered").await,
        next_where(&mut events, |e| e.name() == "discovered").await,
    ]
    .into_iter()
    .map(|e| e.node().unwrap().to_string())
    .collect::<Vec<_>>();
    found.sort();
    assert_eq!(found, ["a@h1", "b@h2"]);
    std::fs::write(&path, "a@h1\n").unwrap();
    let lost = next_where(&mut events, |e| e.name() == "lost").await;
    assert_eq!(lost.node(), Some(&n("b@h2")));
    std::fs::remove_file(&path).unwrap();
    let failed = next_where(&mut events, |e| e.name() == "discovery_failed").await;
    assert!(failed.reason().unwrap().contains("nodes.txt"), "{failed}");
    assert_eq!(handle.metrics().connects_started, 0, "discovery only");
    handle.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A strategy that asks a registry service for node names over TCP.
struct Registry {
    to: Endpoint,
    asking: Option<ExchangeId>,
    reply: Vec<u8>,
}

impl Strategy for Registry {
    fn kind(&self) -> &'static str {
        "registry"
    }
    fn start(&mut self, now: Instant, cx: &mut Context<'_>) {
        let x = Exchange::tcp(
            self.to.clone(),
            "LIST\n".into(),
            now + Duration::from_secs(5),
        )
        .max_reply(1024);
        self.asking = Some(cx.exchange(x));
    }
    fn handle_timeout(&mut self, _now: Instant, _cx: &mut Context<'_>) {}
    fn handle_exchange(
        &mut self,
        _now: Instant,
        exchange: ExchangeId,
        reply: Reply<'_>,
        cx: &mut Context<'_>,
    ) {
        if self.asking != Some(exchange) {
            return;
        }
        match reply {
            Reply::Data(d) => self.reply.extend_from_slice(d),
            Reply::Closed => {
                let text = String::from_utf8_lossy(&self.reply).into_owned();
                let mut round = cx.round();
                for line in text.lines() {
                    round.add(line, None).unwrap();
                }
                round.commit();
            }
            Reply::Failed(why) => {
                cx.discovery_failed(DiscoveryError::request("registry", why.clone()))
            }
            other => cx.discovery_failed(format!("{other:?}")),
        }
    }
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
}

#[tokio::test]
async fn an_exchange_delivers_the_reply_in_chunks_then_closed() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        // Two writes, so the reply may arrive in several chunks.
        s.write_all(b"x@h1\n").await.unwrap();
        s.flush().await.unwrap();
        s.write_all(b"y@h2\n").await.unwrap();
    });
    let spec = TopologySpec::new(
        "registry",
        Registry {
            to: Endpoint::Addr(addr),
            asking: None,
            reply: Vec::new(),
        },
    );
    let (handle, mut events) = Builder::new(NoneConnector).topology(spec).spawn().unwrap();
    let a = next_where(&mut events, |e| e.name() == "discovered").await;
    let b = next_where(&mut events, |e| e.name() == "discovered").await;
    assert_eq!(
        (a.node().unwrap().as_str(), b.node().unwrap().as_str()),
        ("x@h1", "y@h2")
    );
    handle.shutdown().await;
}

#[tokio::test]
async fn an_exchange_with_nobody_listening_fails_with_the_address() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    let spec = TopologySpec::new(
        "registry",
        Registry {
            to: Endpoint::Addr(addr),
            asking: None,
            reply: Vec::new(),
        },
    );
    let (handle, mut events) = Builder::new(NoneConnector).topology(spec).spawn().unwrap();
    let e = next_where(&mut events, |e| e.name() == "discovery_failed").await;
    assert!(e.reason().unwrap().contains(&addr.to_string()), "{e}");
    handle.shutdown().await;
}

#[tokio::test]
async fn a_connector_notice_is_a_disconnect_and_the_node_comes_back() {
    let rec = RecordingConnector::new();
    let spec = TopologySpec::new(
        "static",
        Epmd::new(EpmdConfig::new([Node::new(n("a@h1"))]).reconnect_every(Duration::from_secs(60))),
    )
    .policy(
        ConnectPolicy::default().backoff(Duration::from_millis(10), Duration::from_millis(100)),
    );
    let (handle, mut events) = Builder::new(rec.clone()).topology(spec).spawn().unwrap();
    next_where(&mut events, |e| e.name() == "connected").await;
    rec.drop_node(&n("a@h1"), "tick timeout");
    let e = next_where(&mut events, |e| e.name() == "disconnected").await;
    assert_eq!(e.reason().as_deref(), Some("tick timeout"));
    assert_eq!(e.code(), Some("dropped"));
    next_where(&mut events, |e| e.name() == "connected").await;
    let connects = rec
        .calls()
        .iter()
        .filter(|c| **c == Call::Connect(n("a@h1")))
        .count();
    assert_eq!(connects, 2);
    // It asked for the actual list before the first connect.
    assert_eq!(rec.calls().first(), Some(&Call::List));
    handle.shutdown().await;
}

#[tokio::test]
async fn topologies_can_be_added_and_removed_while_running() {
    let rec = RecordingConnector::new();
    let (handle, mut events) = Builder::new(rec.clone()).spawn().unwrap();
    let spec = TopologySpec::new("late", Epmd::new(EpmdConfig::new([Node::new(n("a@h1"))])));
    let id = handle.add_topology(spec).await.unwrap();
    next_where(&mut events, |e| e.name() == "connected").await;
    let dup = TopologySpec::new("late", Epmd::new(EpmdConfig::default()));
    let err = handle.add_topology(dup).await.unwrap_err();
    let AddTopologyError::Invalid(err) = err else {
        panic!("a duplicate name is a configuration error: {err}")
    };
    assert_eq!(err.key, "topologies.late");
    assert!(handle.remove_topology(id).await);
    next_where(&mut events, |e| e.name() == "disconnected").await;
    assert!(rec.connected().is_empty());
    let other = handle.clone();
    handle.shutdown().await;
    // A stopped cluster takes no topology, and says so as what it is.
    let late = TopologySpec::new("later", Epmd::new(EpmdConfig::default()));
    assert_eq!(
        other.add_topology(late).await.unwrap_err(),
        AddTopologyError::Stopped
    );
}
