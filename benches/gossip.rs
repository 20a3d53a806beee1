//! Gossip's costs and speed:
//!
//! - `receive`: core cost per heartbeat from a known sender, in each mode (time, allocations);
//! - `flood`: 1,000,000 invalid or forged packets (packets per second, memory growth);
//! - `netns`: real `muster run` nodes (3, 10, 50; plain, secure and compat mode; Erlang
//!   connector with Erlang's epmd) on loopback inside a network namespace, from the last
//!   launch until every node has a `connected` event for every other (needs root);
//! - `sim`: 1,000 simulated gossip nodes, 60 virtual seconds, 5% loss;
//! - `footprint`: an idle `muster run` node with four peers (needs root): RSS and PSS after
//!   30 s, CPU time over the next 60 s (`MUSTER_IDLE_SECONDS` for other than 30;
//!   `MUSTER_BIN` for another build of the tool).
//!
//! `cargo bench --features sim,cli --bench gossip [-- receive|flood|netns|sim|footprint]`. Prints figures;
//! asserts nothing about speed.

#![allow(clippy::unwrap_used)] // a benchmark unwraps what it set up itself

#[path = "support/alloc.rs"]
mod alloc;
// The tests' namespaces: the bench uses only some of what they offer.
#[allow(dead_code)]
#[path = "../tests/support/netns.rs"]
mod netns;

use std::collections::BTreeSet;
use std::hint::black_box;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant as Wall};

use netns::Lab;

use muster_core::proto::gossip::{self as wire, SecureKeys};
use muster_core::sim::{Sim, SimConfig};
use muster_core::strategy::gossip::{Gossip, GossipConfig};
use muster_core::{
    Answer, Cluster, ClusterConfig, ConnectPolicy, Input, Instant, NodeName, Output, Request,
    Token, TopologySpec,
};

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

const T0_MS: u64 = 1_700_000_000_000;

fn rig(secret: Option<&str>, compat: bool) -> (Cluster, Token) {
    let mut c = Cluster::new(
        ClusterConfig::new()
            .this_node("me@10.0.0.1".parse().unwrap())
            .discovery_only(true),
        [1; 32],
    );
    c.set_unix_time(Instant::ZERO, Duration::from_millis(T0_MS));
    let mut config = GossipConfig::default();
    config.secret = secret.map(|s| s.as_bytes().to_vec());
    config.compat = compat;
    // The bench's clock runs far: keep every generated timestamp inside the window.
    config.replay_window = Duration::from_secs(100_000);
    c.add_topology(
        Instant::ZERO,
        "g",
        Box::new(Gossip::new(config)),
        ConnectPolicy::default(),
    )
    .unwrap();
    let Some(Output::Request {
        token,
        request: Request::OpenUdp(_),
    }) = c.poll_output()
    else {
        panic!("expected a socket")
    };
    let bound: SocketAddr = "0.0.0.0:45892".parse().unwrap();
    c.handle_input(
        Instant::ZERO,
        Input::Answer {
            token,
            answer: Answer::Opened(bound),
        },
    );
    while c.poll_output().is_some() {}
    (c, token)
}

fn receive() {
    const N: usize = 200_000;
    let from: SocketAddr = "10.0.0.2:45892".parse().unwrap();
    let sender = "peer@10.0.0.2";
    println!("receive cost per heartbeat from a known sender ({N} packets each):");
    for (label, secret, compat) in [
        ("compat, plain", None, false),
        ("compat, with a secret", Some("s"), true),
        ("secure", Some("s"), false),
    ] {
        let (mut c, socket) = rig(secret, compat);
        let keys = SecureKeys::derive(b"s");
        let key = wire::compat_key(b"s");
        let packets: Vec<Vec<u8>> = (0..N as u64 + 1)
            .map(|i| {
                let mut p = Vec::new();
                match (secret, compat) {
                    (None, _) => wire::write_plain(&mut p, sender),
                    (Some(_), true) => {
                        wire::write_compat_secret(&mut p, &key, [i as u8; 16], sender)
                    }
                    (Some(_), false) => {
                        wire::write_secure(&mut p, &keys, T0_MS + i, [i as u8; 16], sender)
                    }
                }
                p
            })
            .collect();
        // The first makes the sender known.
        c.handle_input(
            Instant::ZERO,
            Input::Datagram {
                socket,
                from,
                data: &packets[0],
            },
        );
        while c.poll_output().is_some() {}
        let a0 = alloc::allocs();
        let start = Wall::now();
        for (i, p) in packets[1..].iter().enumerate() {
            let now = Instant::from_millis(i as u64 + 1);
            c.handle_input(
                now,
                Input::Datagram {
                    socket,
                    from,
                    data: p,
                },
            );
        }
        let took = start.elapsed();
        let allocs = alloc::allocs() - a0;
        assert!(c.poll_output().is_none(), "{label}: nothing to report");
        assert_eq!(c.metrics().rejected, 0, "{label}");
        println!(
            "  {label:<24} {:>7.0} ns/packet  {:.3} allocations/packet",
            took.as_nanos() as f64 / N as f64,
            allocs as f64 / N as f64
        );
        black_box(c);
    }
}

fn flood() {
    const N: usize = 1_000_000;
    let (mut c, socket) = rig(Some("s"), false);
    let forged_keys = SecureKeys::derive(b"guess");
    let mut kinds: Vec<Vec<u8>> = Vec::new();
    let mut forged = Vec::new();
    wire::write_secure(&mut forged, &forged_keys, T0_MS, [3; 16], "evil@10.6.6.6");
    kinds.push(forged);
    let mut plain = Vec::new();
    wire::write_plain(&mut plain, "plain@10.6.6.7");
    kinds.push(plain);
    kinds.push(vec![0xAB; 77]);
    kinds.push(vec![0u8; 1400]);
    let mut bad_version = kinds[0].clone();
    bad_version[4] = 9;
    kinds.push(bad_version);
    // Warm up the rejection reports (one per sender address) before measuring memory.
    for (i, k) in kinds.iter().enumerate() {
        let from = SocketAddr::from(([10, 6, 6, i as u8], 45892));
        c.handle_input(
            Instant::ZERO,
            Input::Datagram {
                socket,
                from,
                data: k,
            },
        );
    }
    while c.poll_output().is_some() {}
    let live0 = alloc::live();
    let start = Wall::now();
    for i in 0..N {
        let k = &kinds[i % kinds.len()];
        let from = SocketAddr::from(([10, 6, 6, (i % kinds.len()) as u8], 45892));
        c.handle_input(
            Instant::from_millis(1 + (i / 1000) as u64),
            Input::Datagram {
                socket,
                from,
                data: k,
            },
        );
        while c.poll_output().is_some() {}
    }
    let took = start.elapsed();
    let grown = alloc::live() as i64 - live0 as i64;
    println!(
        "flood of {N} invalid or forged packets (forged MAC, wrong mode, garbage, oversized, unknown version):\n  {:.2} M packets/s, memory growth {grown} bytes, {} rejected",
        N as f64 / took.as_secs_f64() / 1e6,
        c.metrics().rejected
    );
}

/// Whether this runs as root, which `ip netns` needs; says the mode is skipped if not.
fn root(what: &str) -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    if !root {
        println!("{what}: skipped (needs root for `ip netns`)");
    }
    root
}

/// A namespace of `lab` with multicast routed over loopback and Erlang's own epmd listening.
fn lan(lab: &mut Lab) -> String {
    let h = lab.netns("h");
    netns::ip(&[
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
    // Its complaints about the nodes killed at the end of a round are not the figures.
    lab.spawn(&h, "sh", &["-c", "exec epmd -port 4369 2>/dev/null"]);
    // epmd says nothing when it listens: a node that registers too early retries anyway.
    std::thread::sleep(Duration::from_millis(300));
    h
}

/// Node `n{i}@127.0.0.1`: its name and its configuration (Erlang connector, one gossip
/// topology with `extra` in its config).
fn node(i: usize, extra: &str) -> (String, String) {
    let node = format!("n{i}@127.0.0.1");
    let config = format!(
        "[node]\nname = \"{node}\"\nconnector = \"erlang\"\n[connector]\ncookie = \"c\"\nembedded_epmd = \"never\"\n\
         [topologies.lan]\nstrategy = \"gossip\"\n[topologies.lan.config]\n{extra}"
    );
    (node, config)
}

/// Waits until `n` nodes have each had a `connected` event for every other, at most `limit`:
/// the pairs seen.
fn mesh(rx: &mpsc::Receiver<netns::Line>, n: usize, limit: Duration) -> usize {
    let mut seen = BTreeSet::new();
    while seen.len() < n * (n - 1) {
        match rx.recv_timeout(limit) {
            Ok((node, v)) if v["event"] == "connected" => {
                seen.insert((node, v["node"].as_str().unwrap_or("").to_owned()));
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    seen.len()
}

fn netns() {
    if !root("netns") {
        return;
    }
    println!(
        "last launch -> every node has a `connected` event for every other: real `muster run` nodes \
         (Erlang connector, libcluster's default 1..5000 ms heartbeats) on loopback in a namespace; \
         libcluster's 10-node figure on this machine was 2.1 s:"
    );
    for (mode, extra) in [
        ("plain", ""),
        ("secure", "secret = \"s\"\n"),
        ("compat", "secret = \"s\"\ncompat = true\n"),
    ] {
        for n in [3usize, 10, 50] {
            // A lab per round: dropping it stops the round's nodes and its epmd.
            let mut lab = Lab::new("g");
            let h = lan(&mut lab);
            let (tx, rx) = mpsc::channel();
            for i in 0..n {
                let (name, config) = node(i, extra);
                lab.muster(&h, &name, &config, &tx);
            }
            let last = Wall::now();
            let seen = mesh(&rx, n, Duration::from_secs(60));
            let took = last.elapsed();
            match seen == n * (n - 1) {
                true => println!(
                    "  {mode:>6}, {n:>2} nodes: {:>6.0} ms",
                    took.as_secs_f64() * 1000.0
                ),
                false => println!(
                    "  {mode:>6}, {n:>2} nodes: not meshed in 60 s ({seen} of {} pairs)",
                    n * (n - 1)
                ),
            }
        }
    }
}

/// One line of `/proc/{pid}/smaps_rollup`, in KiB.
fn smaps(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// User and system CPU time of `pid` so far.
fn cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    // USER_HZ is 100 on every Linux this runs on.
    Duration::from_millis(ticks * 10)
}

/// An idle node's footprint: five `muster run` nodes (gossip, Erlang connector, secure mode),
/// meshed; node 0's RSS and PSS 30 s after the mesh, then its CPU time over 60 s.
/// `MUSTER_BIN` measures another build of the tool (a static one, say).
fn footprint() {
    if !root("footprint") {
        return;
    }
    let settle: u64 = std::env::var("MUSTER_IDLE_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let mut lab = Lab::new("f");
    let h = lan(&mut lab);
    let (tx, rx) = mpsc::channel();
    let pids: Vec<u32> = (0..5)
        .map(|i| {
            let (name, config) = node(i, "secret = \"s\"\n");
            lab.muster_under(&h, &[], &name, &config, &tx)
        })
        .collect();
    let seen = mesh(&rx, 5, Duration::from_secs(60));
    assert_eq!(seen, 20, "the five nodes did not mesh");
    let pid = pids[0];
    std::thread::sleep(Duration::from_secs(settle));
    let (rss, pss) = (smaps(pid, "Rss"), smaps(pid, "Pss"));
    let (anon, file) = (smaps(pid, "Anonymous"), smaps(pid, "Pss_File"));
    let before = cpu(pid);
    std::thread::sleep(Duration::from_secs(2 * settle));
    let used = cpu(pid).saturating_sub(before);
    let bin = std::env::var("MUSTER_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_muster").into());
    println!(
        "idle `muster run` ({bin}), secure gossip + Erlang connector, 4 peers: after {settle} s \
         RSS {rss} KiB (anonymous {anon} KiB), PSS {pss} KiB (of files {file} KiB); CPU over {} s: {} ms",
        2 * settle,
        used.as_millis()
    );
}

fn sim() {
    const NODES: usize = 1000;
    let names: Vec<NodeName> = (0..NODES)
        .map(|i| NodeName::new(&format!("g{i}@10.1.{}.{}", i / 256, i % 256)).unwrap())
        .collect();
    let mut sim = Sim::new(
        1,
        SimConfig::default()
            .datagram_loss(0.05)
            .record_events(false),
    );
    for name in &names {
        sim.add_node(
            name.clone(),
            ClusterConfig::new().discovery_only(true),
            || {
                vec![TopologySpec::new(
                    "gossip",
                    Gossip::new(GossipConfig::default()),
                )]
            },
        );
    }
    let wall = Wall::now();
    let mut full = None;
    // Every node's datagrams a virtual second ago: the most one node sent in a second
    // (its random heartbeats and its answers to newcomers; no peers, so one datagram each).
    let mut before: Vec<u64> = vec![0; NODES];
    let mut busiest = (0u64, 0usize, Instant::ZERO);
    let mut halves = 0u64;
    while sim.now() < Instant::from_millis(60_000) {
        sim.run_for(Duration::from_millis(500));
        halves += 1;
        if halves.is_multiple_of(2) {
            for (i, n) in names.iter().enumerate() {
                let sent = sim.datagrams_sent(n.as_str()).unwrap_or(0);
                if sent - before[i] > busiest.0 {
                    busiest = (sent - before[i], i, sim.now());
                }
                before[i] = sent;
            }
        }
        if full.is_none()
            && names.iter().all(|n| {
                sim.cluster(n.as_str()).unwrap().metrics().discovered as usize == NODES - 1
            })
        {
            full = Some(sim.now());
        }
    }
    let took = wall.elapsed();
    let s = sim.stats();
    println!(
        "simulator: {NODES} gossip nodes (libcluster's 1..5000 ms heartbeats), 60 virtual s, 5% datagram loss:\n  full knowledge at {}, {} virtual events in {:.1} s wall ({:.0} events/s)",
        full.map_or("never".to_string(), |t| t.to_string()),
        s.events(),
        took.as_secs_f64(),
        s.events() as f64 / took.as_secs_f64()
    );
    println!(
        "  the most heartbeats one node sent in one virtual second (random ones and answers to newcomers): {} ({} in the second to {})",
        busiest.0, names[busiest.1], busiest.2
    );
}

fn main() {
    let which: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let want = |name: &str| which.is_empty() || which.iter().any(|w| w == name);
    if want("receive") {
        receive();
    }
    if want("flood") {
        flood();
    }
    if want("netns") {
        netns();
    }
    if want("sim") {
        sim();
    }
    if want("footprint") {
        footprint();
    }
}
