//! The DNS strategies and the stub resolver in the simulator: libcluster's `dns_poll_test`,
//! `kubernetes_dns_test` and `kubernetes_dns_srv_test` case by case (reference: libcluster.md
//! §4), then what libcluster gets wrong (§2.10) and the resolver's own rules.
#![allow(clippy::unwrap_used)] // tests unwrap what they set up themselves

mod common;

use std::net::SocketAddr;

use common::*;
use muster_core::config::Options;
use muster_core::sim::{DnsBehaviour, DnsRecord, DnsServer, Sim, SimConfig};
use muster_core::strategy::Registry;
use muster_core::strategy::Strategy;
use muster_core::strategy::dns::DnsOptions;
use muster_core::strategy::dns_poll::{DnsPoll, DnsPollConfig};
use muster_core::strategy::kubernetes_dns::{KubernetesDns, KubernetesDnsConfig};
use muster_core::strategy::kubernetes_dns_srv::{KubernetesDnsSrv, KubernetesDnsSrvConfig};
use muster_core::{ClusterConfig, ConnectPolicy, Event, TopologySpec, Value};

const ME: &str = "me@10.9.9.9";

fn server_addr() -> SocketAddr {
    "10.53.0.53:53".parse().unwrap()
}

fn dns() -> DnsOptions {
    DnsOptions::default().nameservers([server_addr()])
}

fn a(ip: &str) -> DnsRecord {
    DnsRecord::A(ip.parse().unwrap())
}

fn aaaa(ip: &str) -> DnsRecord {
    DnsRecord::Aaaa(ip.parse().unwrap())
}

fn spec(strategy: Box<dyn Strategy>, policy: ConnectPolicy) -> TopologySpec {
    TopologySpec::boxed("dns", strategy).policy(policy)
}

/// A simulator with the name server, fake nodes for `peers`, and this node running `make`.
fn sim_with(
    seed: u64,
    zone: DnsServer,
    peers: &[&str],
    make: impl Fn() -> TopologySpec + 'static,
) -> Sim {
    let mut sim = Sim::new(seed, SimConfig::default());
    sim.add_dns_server(server_addr(), zone);
    for p in peers {
        sim.add_fake_node(n(p));
    }
    sim.add_node(n(ME), ClusterConfig::new(), move || vec![make()]);
    sim
}

fn dns_poll(query: &str) -> impl Fn() -> TopologySpec + 'static {
    let query = query.to_owned();
    move || {
        spec(
            Box::new(DnsPoll::new(
                DnsPollConfig::new(query.clone(), "node").with_dns(dns()),
            )),
            quick(),
        )
    }
}

fn failures(sim: &Sim) -> Vec<String> {
    sim.events(ME)
        .iter()
        .filter_map(|(_, e)| match e {
            Event::DiscoveryFailed { reason, .. } => Some(reason.to_string()),
            _ => None,
        })
        .collect()
}

/// dns_poll_test "adds new nodes": two A and one AAAA record, IPv6 written as Erlang does.
#[test]
fn dns_poll_adds_new_nodes() {
    let mut zone = DnsServer::new();
    zone.set(
        "app.test",
        vec![
            a("10.0.0.1"),
            a("10.0.0.2"),
            aaaa("2a09:8280:1:a270:b8f5:b9f7:8891:f3"),
        ],
    );
    let peers = [
        "node@10.0.0.1",
        "node@10.0.0.2",
        "node@2a09:8280:1:a270:b8f5:b9f7:8891:f3",
    ];
    let mut sim = sim_with(1, zone, &peers, dns_poll("app.test"));
    sim.run_for(ms(1000));
    for p in peers {
        assert!(sim.linked(ME, p), "{p}: {:?}", sim.events(ME));
    }
}

/// dns_poll_test "removes nodes" and "keeps state": a record gone from the answer is lost and
/// disconnected; an unchanged answer connects and disconnects nothing.
#[test]
fn dns_poll_removes_nodes_and_keeps_state() {
    let mut zone = DnsServer::new();
    zone.set("app.test", vec![a("10.0.0.1"), a("10.0.0.2")]);
    let mut sim = sim_with(
        2,
        zone,
        &["node@10.0.0.1", "node@10.0.0.2"],
        dns_poll("app.test"),
    );
    sim.run_for(ms(30_000));
    let m = sim.cluster(ME).unwrap().metrics();
    assert_eq!((m.connects_started, m.disconnects_started), (2, 0), "{m:?}");
    sim.dns_server(server_addr())
        .unwrap()
        .set("app.test", vec![a("10.0.0.1")]);
    sim.run_for(ms(6000));
    assert!(sim.linked(ME, "node@10.0.0.1"));
    assert!(!sim.linked(ME, "node@10.0.0.2"));
    assert_eq!(times(sim.events(ME), "lost", "node@10.0.0.2").len(), 1);
    assert_eq!(
        times(sim.events(ME), "disconnected", "node@10.0.0.2").len(),
        1
    );
}

/// dns_poll_test "does not connect to anything with missing/invalid config params": muster
/// refuses the configuration and names the key, where libcluster logs and idles (or crashes
/// when exactly one is missing).
#[test]
fn dns_poll_config_errors_name_the_key() {
    let build = |entries: Vec<(&str, Value)>| {
        let t: Vec<(String, Value)> = entries
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        let mut o = Options::new("topologies.dns.config", &t);
        let r = Registry::builtin().build("dns_poll", &mut o).map(|_| ());
        r.and_then(|_| o.finish())
    };
    let e = build(vec![]);
    assert_eq!(e.unwrap_err().key, "topologies.dns.config.query");
    let e = build(vec![("query", Value::str("app.test"))]);
    assert_eq!(e.unwrap_err().key, "topologies.dns.config.node_basename");
    let e = build(vec![
        ("query", Value::str("app.test")),
        ("node_basename", Value::str("")),
    ]);
    let e = e.unwrap_err();
    assert_eq!(e.key, "topologies.dns.config.node_basename");
    assert!(e.to_string().contains("empty"), "{e}");
    let e = build(vec![
        ("query", Value::Int(3)),
        ("node_basename", Value::str("n")),
    ]);
    assert_eq!(e.unwrap_err().key, "topologies.dns.config.query");
    let e = build(vec![
        ("query", Value::str("app.test")),
        ("node_basename", Value::str("a@b")),
    ]);
    assert_eq!(e.unwrap_err().key, "topologies.dns.config.node_basename");
    let e = build(vec![
        ("query", Value::str("app.test")),
        ("node_basename", Value::str("n")),
        ("nameservers", Value::List(vec![Value::str("localhost")])),
    ]);
    assert_eq!(e.unwrap_err().key, "topologies.dns.config.nameservers[0]");
}

/// libcluster documents `poll_interval` but reads `polling_interval`: muster accepts both and
/// warns about the alias.
#[test]
fn poll_interval_is_an_alias_with_a_warning() {
    let t: Vec<(String, Value)> = vec![
        ("query".into(), Value::str("app.test")),
        ("node_basename".into(), Value::str("n")),
        ("poll_interval".into(), Value::Int(1234)),
    ];
    let mut o = Options::new("topologies.dns.config", &t);
    let s = Registry::builtin().build("dns_poll", &mut o).unwrap();
    let warnings = o.take_warnings();
    o.finish().unwrap();
    assert_eq!(warnings.len(), 1);
    assert_eq!(warnings[0].key, "topologies.dns.config.poll_interval");
    let described = s.describe();
    let interval = described.iter().find(|(k, _)| k == "polling_interval");
    assert_eq!(interval.map(|(_, v)| v.clone()), Some(Value::Int(1234)));
}

fn k8s_dns() -> TopologySpec {
    spec(
        Box::new(KubernetesDns::new(
            KubernetesDnsConfig::new("app-headless", "node").with_dns(dns()),
        )),
        quick(),
    )
}

/// kubernetes_dns_test "adds new nodes", "removes nodes", "keeps state".
#[test]
fn kubernetes_dns_adds_removes_and_keeps() {
    let mut zone = DnsServer::new();
    zone.set("app-headless", vec![a("10.0.0.1"), a("10.0.0.2")]);
    let mut sim = sim_with(3, zone, &["node@10.0.0.1", "node@10.0.0.2"], k8s_dns);
    sim.run_for(ms(20_000));
    assert!(sim.linked(ME, "node@10.0.0.1") && sim.linked(ME, "node@10.0.0.2"));
    assert_eq!(sim.cluster(ME).unwrap().metrics().connects_started, 2);
    sim.dns_server(server_addr())
        .unwrap()
        .set("app-headless", vec![a("10.0.0.1")]);
    sim.run_for(ms(6000));
    assert!(!sim.linked(ME, "node@10.0.0.2"));
    assert!(sim.linked(ME, "node@10.0.0.1"));
}

/// kubernetes_dns_test "does not connect to anything if name is not resolved": NXDOMAIN is a
/// failed discovery, reported, and nothing is connected.
#[test]
fn kubernetes_dns_nxdomain_connects_nothing() {
    let mut sim = sim_with(4, DnsServer::new(), &["node@10.0.0.1"], k8s_dns);
    sim.run_for(ms(12_000));
    assert_eq!(sim.cluster(ME).unwrap().metrics().connects_started, 0);
    let f = failures(&sim);
    assert_eq!(f.len(), 3, "one per poll: {f:?}");
    assert!(f[0].contains("NXDOMAIN"), "{f:?}");
}

/// libcluster crashes on a CNAME answer (§2.6); muster follows it.
#[test]
fn kubernetes_dns_follows_a_cname() {
    let mut zone = DnsServer::new();
    zone.set(
        "app-headless",
        vec![DnsRecord::Cname("real.app.test".into())],
    );
    zone.set("real.app.test", vec![a("10.0.0.1")]);
    let mut sim = sim_with(5, zone, &["node@10.0.0.1"], k8s_dns);
    sim.run_for(ms(1000));
    assert!(sim.linked(ME, "node@10.0.0.1"), "{:?}", sim.events(ME));
    assert!(failures(&sim).is_empty());
}

/// The `ipv6` option adds AAAA records.
#[test]
fn kubernetes_dns_asks_aaaa_when_told() {
    let mut zone = DnsServer::new();
    zone.set("app-headless", vec![a("10.0.0.1"), aaaa("fd00::1")]);
    let make = || {
        spec(
            Box::new(KubernetesDns::new(
                KubernetesDnsConfig::new("app-headless", "node")
                    .ipv6(true)
                    .with_dns(dns()),
            )),
            quick(),
        )
    };
    let mut sim = sim_with(6, zone, &["node@10.0.0.1", "node@fd00::1"], make);
    sim.run_for(ms(1000));
    assert!(sim.linked(ME, "node@fd00::1") && sim.linked(ME, "node@10.0.0.1"));
}

fn k8s_srv() -> TopologySpec {
    spec(
        Box::new(KubernetesDnsSrv::new(
            KubernetesDnsSrvConfig::new("elixir-plug-poc", "default", "node").with_dns(dns()),
        )),
        quick(),
    )
}

const SRV_NAME: &str = "elixir-plug-poc.default.svc.cluster.local";

fn srv(target: &str, port: u16) -> DnsRecord {
    DnsRecord::Srv {
        priority: 10,
        weight: 50,
        port,
        target: target.into(),
    }
}

/// kubernetes_dns_srv_test "adds new nodes", "removes nodes", "keeps state"; the SRV port and
/// the target's address reach the connector as the node's address hint.
#[test]
fn kubernetes_dns_srv_adds_removes_and_keeps() {
    let t0 = "elixir-plug-poc-0.elixir-plug-poc.default.svc.cluster.local";
    let t1 = "elixir-plug-poc-1.elixir-plug-poc.default.svc.cluster.local";
    let mut zone = DnsServer::new();
    zone.set(SRV_NAME, vec![srv(t0, 4369), srv(t1, 4369)]);
    zone.set(t0, vec![a("10.0.0.10")]);
    let peers = [format!("node@{t0}"), format!("node@{t1}")];
    let mut sim = sim_with(7, zone, &[&peers[0], &peers[1]], k8s_srv);
    sim.run_for(ms(20_000));
    assert!(sim.linked(ME, &peers[0]) && sim.linked(ME, &peers[1]));
    assert_eq!(sim.cluster(ME).unwrap().metrics().connects_started, 2);
    let hints = sim.cluster(ME).unwrap().node_addr(&peers[0]);
    assert_eq!(hints, Some("10.0.0.10:4369".parse().unwrap()));
    assert_eq!(sim.cluster(ME).unwrap().node_addr(&peers[1]), None);
    sim.dns_server(server_addr())
        .unwrap()
        .set(SRV_NAME, vec![srv(t0, 4369)]);
    sim.run_for(ms(6000));
    assert!(!sim.linked(ME, &peers[1]));
    assert!(sim.linked(ME, &peers[0]));
}

/// kubernetes_dns_srv_test "does not connect to anything if name is not resolved".
#[test]
fn kubernetes_dns_srv_nxdomain_connects_nothing() {
    let mut sim = sim_with(8, DnsServer::new(), &[], k8s_srv);
    sim.run_for(ms(6000));
    assert_eq!(sim.cluster(ME).unwrap().metrics().connects_started, 0);
    assert!(failures(&sim)[0].contains(SRV_NAME), "{:?}", failures(&sim));
}

/// The cluster domain comes from `CLUSTER_DOMAIN`; without a trailing dot the name is
/// relative and the search list applies.
#[test]
fn kubernetes_dns_srv_query_follows_cluster_domain() {
    let env = muster_core::strategy::Environment::new().set("CLUSTER_DOMAIN", "corp.internal");
    let t: Vec<(String, Value)> = vec![
        ("service".into(), Value::str("svc")),
        ("namespace".into(), Value::str("ns")),
        ("application_name".into(), Value::str("app")),
    ];
    let mut o = Options::new("c", &t);
    let c = KubernetesDnsSrvConfig::from_options(&mut o, &env).unwrap();
    assert_eq!(c.query(), "svc.ns.svc.corp.internal");
    let mut o = Options::new("c", &t);
    let c = KubernetesDnsSrvConfig::from_options(&mut o, &Default::default()).unwrap();
    assert_eq!(c.query(), "svc.ns.svc.cluster.local.");
}

/// Every failure libcluster turns into "disconnect everyone" (§2.10) — SERVFAIL, REFUSED, a
/// server that stopped answering, NXDOMAIN — keeps the last good set here: discovery_failed
/// events, and no lost and no disconnected.
#[test]
fn failed_lookups_keep_the_last_good_set() {
    for (seed, fault, reason) in [
        (10, DnsBehaviour::ServFail, "10.53.0.53:53: Server Failure"),
        (11, DnsBehaviour::Refused, "10.53.0.53:53: Query Refused"),
        (
            12,
            DnsBehaviour::Silent,
            "10.53.0.53:53 did not answer within 5 s",
        ),
        // With the name removed:
        (
            13,
            DnsBehaviour::Answer,
            "app.test: no such name (NXDOMAIN)",
        ),
    ] {
        let mut zone = DnsServer::new();
        zone.set("app.test", vec![a("10.0.0.1"), a("10.0.0.2")]);
        let mut sim = sim_with(
            seed,
            zone,
            &["node@10.0.0.1", "node@10.0.0.2"],
            dns_poll("app.test"),
        );
        sim.run_for(ms(6000));
        assert!(sim.linked(ME, "node@10.0.0.1"));
        let server = sim.dns_server(server_addr()).unwrap();
        server.behave(fault);
        if fault == DnsBehaviour::Answer {
            server.remove("app.test");
        }
        sim.run_for(ms(60_000));
        let f = failures(&sim);
        assert!(!f.is_empty(), "{fault:?}");
        assert!(f[0].ends_with(reason), "{fault:?}: {f:?}");
        assert_eq!(count(sim.events(ME), "lost"), 0, "{fault:?}: {f:?}");
        assert_eq!(count(sim.events(ME), "disconnected"), 0, "{fault:?}");
        assert!(sim.linked(ME, "node@10.0.0.1") && sim.linked(ME, "node@10.0.0.2"));
        // And the set follows the server again once it is back.
        let server = sim.dns_server(server_addr()).unwrap();
        server.behave(DnsBehaviour::Answer);
        server.set("app.test", vec![a("10.0.0.1")]);
        sim.run_for(ms(30_000));
        assert!(!sim.linked(ME, "node@10.0.0.2"), "{fault:?}");
    }
}

/// An empty NOERROR answer is empty: the nodes are lost, and with `prune = false` they are
/// lost but stay connected (libcluster issue #190).
#[test]
fn an_empty_answer_is_empty_and_prune_false_keeps_nodes() {
    for prune in [true, false] {
        let mut zone = DnsServer::new();
        zone.set("app.test", vec![a("10.0.0.1")]);
        let make = move || {
            spec(
                Box::new(DnsPoll::new(
                    DnsPollConfig::new("app.test", "node").with_dns(dns()),
                )),
                quick().prune(prune),
            )
        };
        let mut sim = sim_with(20, zone, &["node@10.0.0.1"], make);
        sim.run_for(ms(6000));
        assert!(sim.linked(ME, "node@10.0.0.1"));
        sim.dns_server(server_addr())
            .unwrap()
            .set("app.test", vec![]);
        sim.run_for(ms(12_000));
        assert!(failures(&sim).is_empty());
        assert_eq!(times(sim.events(ME), "lost", "node@10.0.0.1").len(), 1);
        assert_eq!(sim.linked(ME, "node@10.0.0.1"), !prune, "prune = {prune}");
    }
}

/// One poll per interval (libcluster's K8s.DNS strategies poll twice): an A and an AAAA
/// query for DNSPoll, every 5 s, over a minute.
#[test]
fn one_poll_per_interval() {
    let mut zone = DnsServer::new();
    zone.set("app.test", vec![a("10.0.0.1")]);
    let mut sim = sim_with(30, zone, &["node@10.0.0.1"], dns_poll("app.test"));
    sim.run_for(ms(60_000) - ms(1));
    assert_eq!(sim.dns_server(server_addr()).unwrap().queries(), 2 * 12);
}

/// A name with more records than a UDP reply holds: the truncated reply is asked again over
/// TCP and every record arrives.
#[test]
fn truncated_answers_are_asked_again_over_tcp() {
    let ips: Vec<String> = (1..=200)
        .map(|i| format!("10.1.{}.{}", i / 250, i % 250))
        .collect();
    let mut zone = DnsServer::new();
    zone.set("many.test", ips.iter().map(|ip| a(ip)).collect());
    let mut sim = sim_with(40, zone, &[], dns_poll("many.test"));
    sim.run_for(ms(1000));
    let discovered = count(sim.events(ME), "discovered");
    assert_eq!(discovered, 200, "{:?}", failures(&sim));
    assert_eq!(sim.dns_server(server_addr()).unwrap().tcp_queries(), 1);
}

/// `options edns0` announces a 1232-byte payload: an answer of 60 records (about 1 KB) then
/// fits in UDP; without it, the 512-byte limit sends it over TCP.
#[test]
fn edns0_keeps_a_kilobyte_answer_on_udp() {
    for (seed, edns0) in [(41, true), (42, false)] {
        let mut sim = Sim::new(seed, SimConfig::default());
        let mut zone = DnsServer::new();
        zone.set(
            "mid.test",
            (1..=60).map(|i| a(&format!("10.2.0.{i}"))).collect(),
        );
        sim.add_dns_server(server_addr(), zone);
        let options = if edns0 { "options edns0\n" } else { "" };
        sim.write_file(
            "/etc/resolv.conf",
            format!("nameserver 10.53.0.53\n{options}"),
        );
        sim.add_node(n(ME), ClusterConfig::new(), || {
            vec![spec(
                Box::new(DnsPoll::new(DnsPollConfig::new("mid.test", "node"))),
                quick(),
            )]
        });
        sim.run_for(ms(1000));
        assert_eq!(count(sim.events(ME), "discovered"), 60);
        let tcp = sim.dns_server(server_addr()).unwrap().tcp_queries();
        assert_eq!(tcp, u64::from(!edns0), "edns0 = {edns0}");
    }
}

/// `options rotate` spreads lookups over the servers; without it every lookup starts with
/// the first.
#[test]
fn rotate_spreads_lookups_over_the_servers() {
    for (seed, rotate) in [(43, true), (44, false)] {
        let mut sim = Sim::new(seed, SimConfig::default());
        let servers: [SocketAddr; 2] = [
            "10.53.0.1:53".parse().unwrap(),
            "10.53.0.2:53".parse().unwrap(),
        ];
        for s in servers {
            let mut zone = DnsServer::new();
            zone.set("app.test", vec![a("10.0.0.1")]);
            sim.add_dns_server(s, zone);
        }
        let options = if rotate { "options rotate\n" } else { "" };
        sim.write_file(
            "/etc/resolv.conf",
            format!("nameserver 10.53.0.1\nnameserver 10.53.0.2\n{options}"),
        );
        sim.add_node(n(ME), ClusterConfig::new(), || {
            vec![spec(
                Box::new(DnsPoll::new(DnsPollConfig::new("app.test", "node"))),
                quick(),
            )]
        });
        sim.run_for(ms(20_000));
        let first = sim.dns_server(servers[0]).unwrap().queries();
        let second = sim.dns_server(servers[1]).unwrap().queries();
        assert_eq!(first + second, 8, "four polls of A and AAAA");
        if rotate {
            assert_eq!((first, second), (4, 4));
        } else {
            assert_eq!((first, second), (8, 0));
        }
    }
}

/// Replies with another ID or another question, from the server's own address, are ignored
/// and counted; the lookup then times out and the poll fails without touching the set.
#[test]
fn forged_replies_are_ignored() {
    for (seed, forgery) in [
        (50, DnsBehaviour::WrongId),
        (51, DnsBehaviour::WrongQuestion),
    ] {
        let mut zone = DnsServer::new();
        zone.set("app.test", vec![a("10.0.0.1")]);
        let mut sim = sim_with(seed, zone, &["node@10.0.0.1"], dns_poll("app.test"));
        sim.run_for(ms(1000));
        assert!(sim.linked(ME, "node@10.0.0.1"));
        sim.dns_server(server_addr()).unwrap().behave(forgery);
        sim.dns_server(server_addr())
            .unwrap()
            .set("app.test", vec![a("10.0.0.2")]);
        sim.run_for(ms(30_000));
        let m = sim.cluster(ME).unwrap().metrics();
        assert!(m.rejected > 0, "{forgery:?}: {m:?}");
        assert!(!failures(&sim).is_empty(), "{forgery:?}");
        assert_eq!(count(sim.events(ME), "discovered"), 1, "{forgery:?}");
        assert_eq!(count(sim.events(ME), "lost"), 0, "{forgery:?}");
    }
}

/// The search list and ndots from `resolv.conf`, re-read on every poll, and failover to the
/// next name server when the first does not answer.
#[test]
fn resolv_conf_search_list_and_server_failover() {
    let mut sim = Sim::new(60, SimConfig::default());
    let dead: SocketAddr = "10.53.0.1:53".parse().unwrap();
    let mut silent = DnsServer::new();
    silent.behave(DnsBehaviour::Silent);
    sim.add_dns_server(dead, silent);
    let mut zone = DnsServer::new();
    zone.set("app.svc.test", vec![a("10.0.0.1")]);
    sim.add_dns_server(server_addr(), zone);
    sim.write_file(
        "/etc/resolv.conf",
        "nameserver 10.53.0.1\nnameserver 10.53.0.53\nsearch svc.test\noptions ndots:2 timeout:1 attempts:1\n",
    );
    sim.add_fake_node(n("node@10.0.0.1"));
    sim.add_fake_node(n("node@10.0.0.2"));
    sim.add_node(n(ME), ClusterConfig::new(), || {
        vec![spec(
            Box::new(DnsPoll::new(DnsPollConfig::new("app", "node"))),
            quick(),
        )]
    });
    sim.run_for(ms(3000));
    assert!(sim.linked(ME, "node@10.0.0.1"), "{:?}", sim.events(ME));
    assert!(failures(&sim).is_empty(), "{:?}", failures(&sim));
    // A changed file is read at the next poll: now the other domain answers.
    let mut other = DnsServer::new();
    other.set("app.other.test", vec![a("10.0.0.2")]);
    sim.add_dns_server("10.53.0.54:53".parse().unwrap(), other);
    sim.write_file(
        "/etc/resolv.conf",
        "nameserver 10.53.0.54\nsearch other.test\n",
    );
    sim.run_for(ms(6000));
    assert!(sim.linked(ME, "node@10.0.0.2"));
    assert!(!sim.linked(ME, "node@10.0.0.1"));
}

/// A `resolv_conf` file the configuration names must exist; the default one may be absent.
#[test]
fn a_named_resolv_conf_that_is_missing_fails_the_poll() {
    let mut sim = Sim::new(61, SimConfig::default());
    sim.add_node(n(ME), ClusterConfig::new(), || {
        vec![spec(
            Box::new(DnsPoll::new(DnsPollConfig::new("app", "node").with_dns(
                DnsOptions::default().resolv_conf("/etc/muster/resolv.conf"),
            ))),
            quick(),
        )]
    });
    sim.run_for(ms(1000));
    let f = failures(&sim);
    assert_eq!(f.len(), 1);
    assert!(f[0].contains("/etc/muster/resolv.conf"), "{f:?}");
}

/// A strategy of the test's own around the public resolver: it looks `app.test` up once and,
/// while the query is on its way, changes the configuration to another server. What it got
/// is shared with the test.
struct SwitchMidLookup {
    resolver: muster_core::resolver::Resolver,
    got: std::sync::Arc<std::sync::Mutex<Vec<muster_core::resolver::Outcome>>>,
}

impl SwitchMidLookup {
    fn collect(&mut self) {
        while let Some((_, outcome)) = self.resolver.poll_outcome() {
            self.got.lock().unwrap().push(outcome);
        }
    }
}

impl Strategy for SwitchMidLookup {
    fn kind(&self) -> &'static str {
        "switch_mid_lookup"
    }

    fn start(&mut self, now: muster_core::Instant, cx: &mut muster_core::strategy::Context<'_>) {
        use muster_core::resolver::{Kind, ResolvConf};
        self.resolver.lookup(now, "app.test", Kind::A, cx);
        self.resolver
            .set_conf(ResolvConf::parse("nameserver 10.53.0.54\n"), cx);
    }

    fn handle_timeout(
        &mut self,
        now: muster_core::Instant,
        cx: &mut muster_core::strategy::Context<'_>,
    ) {
        self.resolver.handle_timeout(now, cx);
        self.collect();
    }

    fn handle_socket(
        &mut self,
        now: muster_core::Instant,
        socket: muster_core::strategy::SocketId,
        event: muster_core::strategy::SocketEvent<'_>,
        cx: &mut muster_core::strategy::Context<'_>,
    ) {
        self.resolver.handle_socket(now, socket, event, cx);
        self.collect();
    }

    fn handle_datagram(
        &mut self,
        now: muster_core::Instant,
        socket: muster_core::strategy::SocketId,
        from: SocketAddr,
        data: &[u8],
        cx: &mut muster_core::strategy::Context<'_>,
    ) {
        self.resolver.handle_datagram(now, socket, from, data, cx);
        self.collect();
    }

    fn poll_timeout(&self) -> Option<muster_core::Instant> {
        self.resolver.poll_timeout()
    }
}

/// A lookup in flight when the configuration changes still takes the reply of the server it
/// asked (before, the reply was ignored as coming from the wrong server, and the lookup
/// moved on to the new server, which does not know the name).
#[test]
fn a_lookup_in_flight_across_a_configuration_change_keeps_its_reply() {
    use muster_core::resolver::{Found, Outcome, ResolvConf, Resolver};
    let mut sim = Sim::new(62, SimConfig::default());
    let mut zone = DnsServer::new();
    zone.set("app.test", vec![a("10.0.0.1")]);
    sim.add_dns_server(server_addr(), zone);
    sim.add_dns_server("10.53.0.54:53".parse().unwrap(), DnsServer::new());
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let shared = got.clone();
    sim.add_node(n(ME), ClusterConfig::new(), move || {
        let strategy = SwitchMidLookup {
            resolver: Resolver::new(ResolvConf::parse("nameserver 10.53.0.53\n")),
            got: shared.clone(),
        };
        vec![TopologySpec::boxed("switch", Box::new(strategy))]
    });
    sim.run_for(ms(30_000));
    let ip = "10.0.0.1".parse().unwrap();
    assert_eq!(
        *got.lock().unwrap(),
        vec![Outcome::Records(vec![Found::Ip(ip)])]
    );
    // The old server's socket went with the lookup that waited on it; none is open for the
    // new one, which nothing asked.
    assert_eq!(sim.cluster(ME).unwrap().metrics().sockets, 0);
}

/// The socket of a name server that left `resolv.conf` is closed at the next poll: a node
/// whose file changes servers does not keep a socket per server it ever had.
#[test]
fn a_name_server_dropped_from_resolv_conf_has_its_socket_closed() {
    let mut sim = Sim::new(63, SimConfig::default());
    let mut zone = DnsServer::new();
    zone.set("app.svc.test", vec![a("10.0.0.1")]);
    sim.add_dns_server(server_addr(), zone.clone());
    sim.add_dns_server("10.53.0.54:53".parse().unwrap(), zone.clone());
    sim.add_dns_server("10.53.0.55:53".parse().unwrap(), zone);
    sim.write_file(
        "/etc/resolv.conf",
        "nameserver 10.53.0.53\nsearch svc.test\noptions rotate\n",
    );
    sim.add_fake_node(n("node@10.0.0.1"));
    sim.add_node(n(ME), ClusterConfig::new(), || {
        vec![spec(
            Box::new(DnsPoll::new(DnsPollConfig::new("app", "node"))),
            quick(),
        )]
    });
    let sockets = |sim: &Sim| sim.cluster(ME).unwrap().metrics().sockets;
    sim.run_for(ms(3000));
    assert!(sim.linked(ME, "node@10.0.0.1"));
    assert_eq!(sockets(&sim), 1);
    sim.write_file(
        "/etc/resolv.conf",
        "nameserver 10.53.0.54\nsearch svc.test\n",
    );
    sim.run_for(ms(6000));
    sim.write_file(
        "/etc/resolv.conf",
        "nameserver 10.53.0.55\nsearch svc.test\n",
    );
    sim.run_for(ms(6000));
    assert_eq!(sockets(&sim), 1, "one server, one socket");
    assert!(sim.linked(ME, "node@10.0.0.1"));
    assert!(failures(&sim).is_empty(), "{:?}", failures(&sim));
}
