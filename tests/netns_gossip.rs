//! Gossip across several hosts: each test builds its own network namespaces (environment.md
//! §3), runs the real `muster` tool in each, checks that the nodes discover each other, and
//! deletes everything it made. No packet ever reaches the host's real interfaces.
//!
//! Needs root (for `ip netns`), as CI has.
#![allow(clippy::unwrap_used)] // tests unwrap what they set up themselves

mod support;

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::netns::{Lab, ip};

fn gossip_config(node: &str, gossip: &str) -> String {
    format!(
        "[node]\nname = \"{node}\"\nconnector = \"none\"\n\n[topologies.lan]\nstrategy = \"gossip\"\n\n[topologies.lan.config]\nheartbeat_max_ms = 500\n{gossip}\n"
    )
}

/// Waits until every node has discovered every other; fails on any rejection.
fn await_full_knowledge(rx: &mpsc::Receiver<(String, serde_json::Value)>, nodes: &[&str]) {
    let want: BTreeSet<(String, String)> = nodes
        .iter()
        .flat_map(|a| {
            nodes
                .iter()
                .filter(move |b| *b != a)
                .map(move |b| (a.to_string(), b.to_string()))
        })
        .collect();
    let mut got = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while got != want {
        let left = deadline.saturating_duration_since(Instant::now());
        let (on, v) = rx.recv_timeout(left).unwrap_or_else(|_| {
            panic!(
                "not every node discovered every other; missing {:?}",
                want.difference(&got).collect::<Vec<_>>()
            )
        });
        assert_ne!(v["event"], "rejected", "{on}: {v}");
        assert_ne!(v["event"], "discovery_failed", "{on}: {v}");
        if v["event"] == "discovered" {
            let node = v["node"].as_str().unwrap().to_string();
            assert_ne!(node, on, "a node discovered itself");
            got.insert((on, node));
        }
    }
}

/// Three hosts on a bridge, each with a default route through its veth: libcluster's default
/// configuration (default group, port and interface), plain and in secure mode.
#[test]
fn three_hosts_on_a_bridge_discover_each_other() {
    for (round, gossip) in ["", "secret = \"lan secret\""].iter().enumerate() {
        let mut lab = Lab::new(&format!("b{round}"));
        let sw = lab.netns("sw");
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &sw, "link", "set", "br0", "up"]);
        let (tx, rx) = mpsc::channel();
        let mut nodes = Vec::new();
        for i in 1..=3 {
            let h = lab.netns(&format!("h{i}"));
            let (v, vp) = (
                format!("v{i}"),
                format!("{}p{i}", &lab.tag[..8.min(lab.tag.len())]),
            );
            ip(&[
                "link", "add", &v, "netns", &h, "type", "veth", "peer", "name", &vp, "netns", &sw,
            ]);
            ip(&["-n", &sw, "link", "set", &vp, "master", "br0", "up"]);
            ip(&[
                "-n",
                &h,
                "addr",
                "add",
                &format!("198.18.0.{i}/24"),
                "dev",
                &v,
            ]);
            ip(&["-n", &h, "link", "set", &v, "up"]);
            ip(&["-n", &h, "route", "add", "default", "dev", &v]);
            let node = format!("n{i}@198.18.0.{i}");
            lab.muster(&h, &node, &gossip_config(&node, gossip), &tx);
            nodes.push(node);
        }
        let refs: Vec<&str> = nodes.iter().map(String::as_str).collect();
        await_full_knowledge(&rx, &refs);
    }
}

/// A host with only loopback and a multicast route through it: two nodes with libcluster's
/// default configuration find each other.
#[test]
fn a_loopback_only_host_with_a_multicast_route() {
    let mut lab = Lab::new("lo");
    let h = lab.netns("h");
    ip(&[
        "-n",
        &h,
        "route",
        "add",
        "224.0.0.0/4",
        "dev",
        "lo",
        "src",
        "127.0.0.1",
    ]);
    let (tx, rx) = mpsc::channel();
    let nodes = ["a@127.0.0.1", "b@127.0.0.1"];
    for node in nodes {
        lab.muster(&h, node, &gossip_config(node, ""), &tx);
    }
    await_full_knowledge(&rx, &nodes);
}

/// Two hosts joined by a veth pair, gossiping over an IPv6 group on a named interface, with
/// IPv6 node names.
#[test]
fn two_hosts_over_ipv6_multicast() {
    let mut lab = Lab::new("v6");
    let a = lab.netns("a");
    let b = lab.netns("b");
    // Without duplicate address detection the link-local addresses are usable at once, so the
    // first heartbeat does not race the kernel.
    for ns in [&a, &b] {
        for scope in ["all", "default"] {
            let key = format!("net.ipv6.conf.{scope}.accept_dad=0");
            let ok = Command::new("ip")
                .args(["netns", "exec", ns, "sysctl", "-qw", &key])
                .status()
                .unwrap();
            assert!(ok.success(), "sysctl {key}");
        }
    }
    ip(&[
        "link", "add", "va", "netns", &a, "type", "veth", "peer", "name", "vb", "netns", &b,
    ]);
    ip(&["-n", &a, "addr", "add", "fd00::1/64", "dev", "va", "nodad"]);
    ip(&["-n", &b, "addr", "add", "fd00::2/64", "dev", "vb", "nodad"]);
    ip(&["-n", &a, "link", "set", "va", "up"]);
    ip(&["-n", &b, "link", "set", "vb", "up"]);
    // The kernel configures the link-local addresses after the links come up; multicast has
    // no source address until then. Wait for that state (there is no event to await).
    for (ns, iface) in [(&a, "va"), (&b, "vb")] {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = Command::new("ip")
                .args(["-n", ns, "-6", "addr", "show", "dev", iface])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            if text.contains("scope link") && !text.contains("tentative") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{iface} never got a link-local address: {text}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let (tx, rx) = mpsc::channel();
    let nodes = [("n1@fd00::1", &a, "va"), ("n2@fd00::2", &b, "vb")];
    for (node, ns, iface) in nodes {
        let gossip =
            format!("multicast_addr = \"ff12::4d53\"\nmulticast_if = \"{iface}\"\nsecret = \"v6\"");
        lab.muster(ns, node, &gossip_config(node, &gossip), &tx);
    }
    await_full_knowledge(&rx, &["n1@fd00::1", "n2@fd00::2"]);
}
