//! Wire compatibility with libcluster's gossip, against a real Erlang peer
//! (`tests/erlang/gossip_peer.escript`, Debian's erlang-base and erlang-crypto, which
//! `scripts/test` installs): the peer's heartbeats, built by Erlang's own `term_to_binary`
//! and `crypto`, are understood by muster; muster's heartbeats decode in Erlang with
//! `binary_to_term(_, [safe])`. Both with and without a secret.
#![allow(clippy::unwrap_used)] // tests unwrap what they set up themselves

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use muster::core::config::Options;
use muster::core::strategy::gossip::{Gossip, GossipConfig};
use muster::core::{Event, TopologySpec, Value};
use muster::tokio::{Builder, ClusterHandle, Events, NoneConnector};

const PEER: &str = "tests/erlang/gossip_peer.escript";

fn escript(args: &[&str]) -> Child {
    Command::new("escript")
        .arg(PEER)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run escript ({e}): install Debian's erlang-base and erlang-crypto (scripts/test does)")
        })
}

/// Kills the peer when the test ends, however it ends.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn rust_node(port: u16, secret: Option<&str>, peers: Vec<String>) -> (ClusterHandle, Events) {
    let mut t = vec![
        ("port".to_string(), Value::Int(i64::from(port))),
        ("multicast_if".to_string(), Value::str("127.0.0.1")),
        ("heartbeat_max_ms".to_string(), Value::Int(200)),
        ("compat".to_string(), Value::Bool(true)),
        (
            "peers".to_string(),
            Value::List(peers.into_iter().map(Value::Str).collect()),
        ),
    ];
    if let Some(s) = secret {
        t.push(("secret".to_string(), Value::str(s)));
    }
    let config = GossipConfig::from_options(&mut Options::new("gossip", &t)).unwrap();
    Builder::new(NoneConnector)
        .this_node("rust@127.0.0.1".parse().unwrap())
        .topology(TopologySpec::new("gossip", Gossip::new(config)))
        .spawn()
        .unwrap()
}

async fn next_where(events: &mut Events, f: impl Fn(&Event) -> bool) -> Event {
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let e = events.recv().await.expect("cluster stopped");
            if f(&e) {
                return e;
            }
        }
    })
    .await
    .expect("timed out waiting for the Erlang peer")
}

#[tokio::test]
async fn muster_understands_erlangs_heartbeats_plain_and_with_a_secret() {
    for secret in [None, Some("x")] {
        let port = free_udp_port();
        let (handle, mut events) = rust_node(port, secret, Vec::new());
        let mut args = vec![
            "send".to_string(),
            port.to_string(),
            "erl@127.0.0.1".to_string(),
        ];
        args.extend(secret.map(str::to_owned));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let _peer = Peer(escript(&refs));
        let e = next_where(&mut events, |e| {
            e.name() == "discovered" || e.name() == "rejected"
        })
        .await;
        assert_eq!(e.name(), "discovered", "secret {secret:?}: {e}");
        assert_eq!(e.node().unwrap().as_str(), "erl@127.0.0.1");
        assert_eq!(handle.metrics().rejected, 0);
        handle.shutdown().await;
    }
}

#[tokio::test]
async fn erlang_decodes_musters_heartbeats_with_safe_binary_to_term() {
    for secret in [None, Some("x")] {
        let erl_port = free_udp_port();
        let mut args = vec![
            "recv".to_string(),
            erl_port.to_string(),
            "rust@127.0.0.1".to_string(),
        ];
        args.extend(secret.map(str::to_owned));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut peer = Peer(escript(&refs));
        let mut out = BufReader::new(peer.0.stdout.take().unwrap()).lines();
        assert_eq!(out.next().unwrap().unwrap(), "listening");
        let (handle, _events) = rust_node(
            free_udp_port(),
            secret,
            vec![format!("127.0.0.1:{erl_port}")],
        );
        let got = tokio::task::spawn_blocking(move || out.next().unwrap().unwrap())
            .await
            .unwrap();
        assert_eq!(got, "rust@127.0.0.1", "secret {secret:?}");
        handle.shutdown().await;
    }
}
