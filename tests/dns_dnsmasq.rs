//! The DNS strategies against a real name server: dnsmasq (Debian's dnsmasq-base, which
//! `scripts/test` installs) on a loopback port, started and stopped by each test, through the
//! tokio adapter's UDP and TCP.
#![allow(clippy::unwrap_used)] // tests unwrap what they set up themselves

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use muster::core::strategy::Strategy;
use muster::core::strategy::dns::DnsOptions;
use muster::core::strategy::dns_poll::{DnsPoll, DnsPollConfig};
use muster::core::strategy::kubernetes_dns::{KubernetesDns, KubernetesDnsConfig};
use muster::core::strategy::kubernetes_dns_srv::{KubernetesDnsSrv, KubernetesDnsSrvConfig};
use muster::core::{ConnectPolicy, Event, Node, NodeName, TopologySpec};
use muster::tokio::{
    BoxFuture, Builder, ClusterHandle, ConnectOutcome, Connector, DisconnectOutcome, Events,
    Notices, RecordingConnector,
};
use tokio::net::UdpSocket;

mod support;
use support::dnsmasq::{Dnsmasq, Scratch, free_port, host};

fn n(s: &str) -> NodeName {
    s.parse().unwrap()
}

fn names(v: &[&str]) -> Vec<NodeName> {
    let mut out: Vec<NodeName> = v.iter().map(|s| n(s)).collect();
    out.sort();
    out
}

fn spec(strategy: Box<dyn Strategy>, policy: ConnectPolicy) -> TopologySpec {
    TopologySpec::boxed("dns", strategy).policy(policy)
}

fn start(connector: impl Connector, spec: TopologySpec) -> (ClusterHandle, Events) {
    Builder::new(connector)
        .this_node(n("me@127.0.0.1"))
        .topology(spec)
        .spawn()
        .unwrap()
}

async fn members(h: &ClusterHandle, want: &[NodeName]) {
    let got =
        tokio::time::timeout(Duration::from_secs(30), h.wait_for_members(|m| m == want)).await;
    assert!(got.is_ok(), "wanted {want:?}, have {:?}", h.members());
}

async fn next_where(events: &mut Events, what: &str, f: impl Fn(&Event) -> bool) -> Event {
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let e = events.recv().await.expect("cluster stopped");
            if f(&e) {
                return e;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

#[tokio::test]
async fn a_and_aaaa_records_become_node_names() {
    let port = free_port();
    let _dns = Dnsmasq::start(
        port,
        &[
            host("app.test", "127.0.0.2"),
            host("app.test", "127.0.0.3"),
            host("app.test", "127.0.0.4"),
            host("app.test", "fd00::1"),
            host("app.test", "2a09:8280:1:a270:b8f5:b9f7:8891:f3"),
        ],
    );
    let server: SocketAddr = ([127, 0, 0, 1], port).into();
    let dns_opts = DnsOptions::default()
        .nameservers([server])
        .polling_interval(Duration::from_millis(500));
    let (h, _events) = start(
        RecordingConnector::new(),
        spec(
            Box::new(DnsPoll::new(
                DnsPollConfig::new("app.test", "node").with_dns(dns_opts.clone()),
            )),
            ConnectPolicy::default(),
        ),
    );
    let want = names(&[
        "node@127.0.0.2",
        "node@127.0.0.3",
        "node@127.0.0.4",
        "node@fd00::1",
        "node@2a09:8280:1:a270:b8f5:b9f7:8891:f3",
    ]);
    members(&h, &want).await;
    assert_eq!(h.metrics().discovery_failed, 0);
    h.shutdown().await;

    // Kubernetes.DNS: A only unless told, AAAA too with `ipv6`.
    for (ipv6, want) in [
        (
            false,
            names(&["app@127.0.0.2", "app@127.0.0.3", "app@127.0.0.4"]),
        ),
        (true, {
            let mut w = names(&["app@127.0.0.2", "app@127.0.0.3", "app@127.0.0.4"]);
            w.extend(names(&[
                "app@fd00::1",
                "app@2a09:8280:1:a270:b8f5:b9f7:8891:f3",
            ]));
            w.sort();
            w
        }),
    ] {
        let (h, _events) = start(
            RecordingConnector::new(),
            spec(
                Box::new(KubernetesDns::new(
                    KubernetesDnsConfig::new("app.test", "app")
                        .ipv6(ipv6)
                        .with_dns(dns_opts.clone()),
                )),
                ConnectPolicy::default(),
            ),
        );
        members(&h, &want).await;
        h.shutdown().await;
    }
}

/// Records the address hint of every connect, around a [`RecordingConnector`].
#[derive(Clone, Default)]
struct Hints {
    inner: RecordingConnector,
    hints: Arc<Mutex<BTreeMap<NodeName, Option<SocketAddr>>>>,
}

impl Connector for Hints {
    fn connect(&self, node: Node) -> BoxFuture<ConnectOutcome> {
        self.hints
            .lock()
            .unwrap()
            .insert(node.name.clone(), node.addr);
        self.inner.connect(node)
    }
    fn disconnect(&self, node: NodeName) -> BoxFuture<DisconnectOutcome> {
        self.inner.disconnect(node)
    }
    fn list_nodes(&self) -> BoxFuture<Result<Vec<NodeName>, muster::core::Failure>> {
        self.inner.list_nodes()
    }
    fn attach(&self, notices: Notices) {
        self.inner.attach(notices)
    }
}

#[tokio::test]
async fn srv_records_become_node_names_with_address_hints() {
    let port = free_port();
    let _dns = Dnsmasq::start(
        port,
        &[
            "--srv-host=app.ns.svc.test,app-0.app.ns.svc.test,4369,0,10".into(),
            "--srv-host=app.ns.svc.test,app-1.app.ns.svc.test,4370,0,10".into(),
            host("app-0.app.ns.svc.test", "127.0.0.2"),
            host("app-1.app.ns.svc.test", "127.0.0.3"),
        ],
    );
    let connector = Hints::default();
    let (h, _events) = start(
        connector.clone(),
        spec(
            Box::new(KubernetesDnsSrv::new(
                KubernetesDnsSrvConfig::new("app", "ns", "app")
                    .cluster_domain("test.")
                    .with_dns(DnsOptions::default().nameservers([([127, 0, 0, 1], port).into()])),
            )),
            ConnectPolicy::default(),
        ),
    );
    let want = names(&["app@app-0.app.ns.svc.test", "app@app-1.app.ns.svc.test"]);
    members(&h, &want).await;
    let hints = connector.hints.lock().unwrap().clone();
    assert_eq!(hints[&want[0]], Some("127.0.0.2:4369".parse().unwrap()));
    assert_eq!(hints[&want[1]], Some("127.0.0.3:4370".parse().unwrap()));
    h.shutdown().await;
}

#[tokio::test]
async fn a_truncated_udp_answer_is_completed_over_tcp() {
    let port = free_port();
    // More A records than fit in 512 bytes, or in a 1232-byte EDNS payload.
    let records: Vec<String> = (1..=120)
        .map(|i| host("many.test", &format!("127.1.0.{i}")))
        .collect();
    let _dns = Dnsmasq::start(port, &records);
    let scratch = Scratch::new("tcp");
    let (h, _events) = start(
        RecordingConnector::new(),
        spec(
            Box::new(DnsPoll::new(
                DnsPollConfig::new("many.test", "node")
                    .with_dns(DnsOptions::default().resolv_conf(scratch.resolv_conf(port))),
            )),
            ConnectPolicy::default(),
        ),
    );
    let want: Vec<NodeName> = {
        let mut w: Vec<NodeName> = (1..=120).map(|i| n(&format!("node@127.1.0.{i}"))).collect();
        w.sort();
        w
    };
    members(&h, &want).await;
    assert_eq!(h.metrics().discovery_failed, 0);
    h.shutdown().await;
}

fn no_loss(h: &ClusterHandle) {
    let m = h.metrics();
    assert_eq!((m.lost, m.disconnects_started), (0, 0), "{m:?}");
}

#[tokio::test]
async fn nxdomain_and_a_stopped_server_keep_the_nodes() {
    let port = free_port();
    let scratch = Scratch::new("stop");
    let dns = Dnsmasq::start(
        port,
        &[host("app.test", "127.0.0.2"), host("app.test", "127.0.0.3")],
    );
    let dns_opts = DnsOptions::default()
        .resolv_conf(scratch.resolv_conf(port))
        .polling_interval(Duration::from_millis(300));

    // A name that does not exist: discovery_failed, nothing connected.
    let (h, mut events) = start(
        RecordingConnector::new(),
        spec(
            Box::new(DnsPoll::new(
                DnsPollConfig::new("nothing.test", "node").with_dns(dns_opts.clone()),
            )),
            ConnectPolicy::default(),
        ),
    );
    let e = next_where(&mut events, "discovery_failed", |e| {
        e.name() == "discovery_failed"
    })
    .await;
    assert!(e.to_string().contains("NXDOMAIN"), "{e}");
    assert_eq!(h.metrics().connects_started, 0);
    h.shutdown().await;

    // The server stops in the middle of a run: failures, and the nodes stay.
    let (h, mut events) = start(
        RecordingConnector::new(),
        spec(
            Box::new(DnsPoll::new(
                DnsPollConfig::new("app.test", "node").with_dns(dns_opts),
            )),
            ConnectPolicy::default(),
        ),
    );
    let want = names(&["node@127.0.0.2", "node@127.0.0.3"]);
    members(&h, &want).await;
    dns.stop();
    for _ in 0..2 {
        let e = next_where(&mut events, "discovery_failed", |e| {
            e.name() == "discovery_failed" || e.name() == "lost" || e.name() == "disconnected"
        })
        .await;
        assert_eq!(e.name(), "discovery_failed", "{e}");
    }
    no_loss(&h);
    assert_eq!(h.members(), want);
    h.shutdown().await;
}

#[tokio::test]
async fn a_record_gone_after_a_restart_is_lost_and_disconnected_unless_prune_is_off() {
    for prune in [true, false] {
        let port = free_port();
        let scratch = Scratch::new(if prune { "prune" } else { "noprune" });
        let three = [
            host("app.test", "127.0.0.2"),
            host("app.test", "127.0.0.3"),
            host("app.test", "127.0.0.4"),
        ];
        let dns = Dnsmasq::start(port, &three);
        let (h, mut events) = start(
            RecordingConnector::new(),
            spec(
                Box::new(DnsPoll::new(
                    DnsPollConfig::new("app.test", "node").with_dns(
                        DnsOptions::default()
                            .resolv_conf(scratch.resolv_conf(port))
                            .polling_interval(Duration::from_millis(300)),
                    ),
                )),
                ConnectPolicy::default().prune(prune),
            ),
        );
        let all = names(&["node@127.0.0.2", "node@127.0.0.3", "node@127.0.0.4"]);
        members(&h, &all).await;
        dns.stop();
        let _dns = Dnsmasq::start(port, &three[..2]);
        let e = next_where(&mut events, "lost", |e| e.name() == "lost").await;
        assert_eq!(e.node().unwrap().as_str(), "node@127.0.0.4");
        if prune {
            let e = next_where(&mut events, "disconnected", |e| e.name() == "disconnected").await;
            assert_eq!(e.node().unwrap().as_str(), "node@127.0.0.4");
            members(&h, &all[..2]).await;
        } else {
            // Two more good polls, and nothing was disconnected.
            let rounds = h.metrics().rounds;
            let _ = h.wait_for_metrics(|m| m.rounds >= rounds + 2).await;
            assert_eq!(h.metrics().disconnects_started, 0);
            assert_eq!(h.members(), all);
        }
        h.shutdown().await;
    }
}

/// A fake server on the configured port answers each query first from another port, then
/// with another ID, then with another question, and only then correctly: the resolver
/// ignores the three and takes the fourth.
#[tokio::test]
async fn replies_with_the_wrong_id_question_or_source_are_ignored() {
    let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let other = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = server.local_addr().unwrap().port();
    let scratch = Scratch::new("forged");
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        loop {
            let Ok((len, from)) = server.recv_from(&mut buf).await else {
                return;
            };
            let q = &buf[..len];
            let Some(good) = answer_a(q, [127, 0, 0, 9]) else {
                continue;
            };
            let mut wrong_id = good.clone();
            wrong_id[1] ^= 0x5a;
            let mut wrong_question = good.clone();
            // The first letter of the question's name ("app" becomes "bpp").
            wrong_question[13] ^= 0x03;
            let _ = other.send_to(&good, from).await;
            let _ = server.send_to(&wrong_id, from).await;
            let _ = server.send_to(&wrong_question, from).await;
            let _ = server.send_to(&good, from).await;
        }
    });
    let (h, _events) = start(
        RecordingConnector::new(),
        spec(
            Box::new(KubernetesDns::new(
                KubernetesDnsConfig::new("app.test", "node")
                    .with_dns(DnsOptions::default().resolv_conf(scratch.resolv_conf(port))),
            )),
            ConnectPolicy::default(),
        ),
    );
    members(&h, &names(&["node@127.0.0.9"])).await;
    let m = h.metrics();
    // The wrong ID and the wrong question are rejected; a reply from another source never
    // even arrives (the resolver's socket is connected to its server).
    assert!(m.rejected >= 2, "{m:?}");
    assert_eq!(m.discovery_failed, 0, "{m:?}");
    h.shutdown().await;
}

/// A reply to `query` (no EDNS, one question) with one A record: the query's bytes with the
/// response bits set and the answer appended, pointing at the question's name.
fn answer_a(query: &[u8], ip: [u8; 4]) -> Option<Vec<u8>> {
    if query.len() < 12 || query[4..6] != [0, 1] || query[10..12] != [0, 0] {
        return None;
    }
    let mut r = query.to_vec();
    r[2] = 0x81; // QR, RD
    r[3] = 0x80; // RA, NOERROR
    r[6..8].copy_from_slice(&[0, 1]);
    r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4]);
    r.extend_from_slice(&ip);
    Some(r)
}

/// A server that answers A but refuses AAAA (dnsmasq with no upstream, for a name outside
/// its local domains) still gives the A records' nodes: the refused half is said, not made
/// a failed discovery of the whole.
#[tokio::test]
async fn a_refused_aaaa_beside_good_a_records_discovers_the_a_records() {
    let port = free_port();
    let _dns = Dnsmasq::start(
        port,
        &[
            host("app.example", "127.0.0.2"),
            host("app.example", "127.0.0.3"),
        ],
    );
    let server: SocketAddr = ([127, 0, 0, 1], port).into();
    let dns_opts = DnsOptions::default()
        .nameservers([server])
        .polling_interval(Duration::from_millis(500));
    let (h, mut events) = start(
        RecordingConnector::new(),
        spec(
            Box::new(DnsPoll::new(
                DnsPollConfig::new("app.example", "node").with_dns(dns_opts),
            )),
            ConnectPolicy::default(),
        ),
    );
    members(&h, &names(&["node@127.0.0.2", "node@127.0.0.3"])).await;
    let e = next_where(&mut events, "the refused AAAA", |e| {
        e.name() == "discovery_failed"
    })
    .await;
    let why = e.reason().unwrap();
    assert!(
        why.contains("AAAA") && why.contains("used what the other lookups found"),
        "{why}"
    );
}

/// A name server whose port is closed answers with ICMP port-unreachable: the lookup moves to
/// the next server at once, as glibc does, instead of waiting out its time-out (here a long
/// one, so a lookup that waited would not be done before the failsafe).
#[tokio::test]
async fn a_closed_name_server_port_moves_to_the_next_server_at_once() {
    let port = free_port();
    let closed = free_port();
    let _dns = Dnsmasq::start(port, &[host("app.test", "127.0.0.2")]);
    let scratch = Scratch::new("icmp");
    let conf = scratch.path("resolv.conf");
    std::fs::write(
        &conf,
        format!(
            "nameserver 127.0.0.1:{closed}\nnameserver 127.0.0.1:{port}\noptions timeout:30 attempts:1\n"
        ),
    )
    .unwrap();
    let dns_opts = DnsOptions::default()
        .resolv_conf(conf.to_string_lossy())
        .polling_interval(Duration::from_millis(500));
    let (h, _events) = start(
        RecordingConnector::new(),
        spec(
            Box::new(DnsPoll::new(
                DnsPollConfig::new("app.test", "node").with_dns(dns_opts),
            )),
            ConnectPolicy::default(),
        ),
    );
    let got = tokio::time::timeout(
        Duration::from_secs(20),
        h.wait_for_members(|m| m == names(&["node@127.0.0.2"])),
    )
    .await;
    assert!(
        got.is_ok(),
        "still waiting on the closed server: {:?}",
        h.members()
    );
}
