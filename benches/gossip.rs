//! Gossip's costs and speed:
//!
//! - `receive`: core cost per heartbeat from a known sender, in each mode (time, allocations);
//! - `flood`: 1,000,000 invalid or forged packets (packets per second, memory growth);
//! - `netns`: real `muster run` nodes (3, 10, 50; plain, secure and compat mode; Erlang
//!   connector with Erlang's epmd) on loopback inside a network namespace, from the last
//!   launch until every node has a `connected` event for every other (needs root);
//! - `sim`: 1,000 simulated gossip nodes, 60 virtual seconds, 5% loss.
//!
//! `cargo bench --features sim --bench gossip [-- receive|flood|netns|sim]`. Prints figures;
//! asserts nothing about speed.

#![allow(clippy::unwrap_used)] // a benchmark unwraps what it set up itself

#[path = "support/alloc.rs"]
mod alloc;

use std::collections::BTreeSet;
use std::hint::black_box;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant as Wall};

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

fn netns() {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    if !root {
        println!("netns: skipped (needs root for `ip netns`)");
        return;
    }
    let ns = format!("mstbench{}", std::process::id() % 10_000);
    let ip = |args: &[&str]| {
        let ok = Command::new("ip").args(args).status().unwrap().success();
        assert!(ok, "ip {}", args.join(" "));
    };
    let _ = Command::new("ip").args(["netns", "del", &ns]).output();
    ip(&["netns", "add", &ns]);
    ip(&["-n", &ns, "link", "set", "lo", "up"]);
    ip(&[
        "-n",
        &ns,
        "route",
        "add",
        "224.0.0.0/4",
        "dev",
        "lo",
        "src",
        "127.0.0.1",
    ]);
    // Erlang's own epmd in the namespace, for the nodes to register with (stopped below).
    let mut epmd = Command::new("ip")
        .args(["netns", "exec", &ns, "epmd", "-port", "4369"])
        .stderr(Stdio::null())
        .spawn()
        .expect("epmd (Debian's erlang-base)");
    std::thread::sleep(Duration::from_millis(300));
    println!(
        "last launch -> every node has a `connected` event for every other: real `muster run` nodes \
         (Erlang connector, libcluster's default 1..5000 ms heartbeats) on loopback in a namespace; \
         libcluster's 10-node figure on this machine was 2.1 s:"
    );
    let dir = std::env::temp_dir().join(&ns);
    std::fs::create_dir_all(&dir).unwrap();
    for (mode, extra) in [
        ("plain", ""),
        ("secure", "secret = \"s\"\n"),
        ("compat", "secret = \"s\"\ncompat = true\n"),
    ] {
        for n in [3usize, 10, 50] {
            let (tx, rx) = std::sync::mpsc::channel();
            let mut children = Vec::new();
            for i in 0..n {
                let node = format!("n{i}@127.0.0.1");
                let path = dir.join(format!("n{i}.toml"));
                std::fs::write(
                    &path,
                    format!(
                        "[node]\nname = \"{node}\"\nconnector = \"erlang\"\n[connector]\ncookie = \"c\"\nembedded_epmd = \"never\"\n\
                         [topologies.lan]\nstrategy = \"gossip\"\n[topologies.lan.config]\n{extra}"
                    ),
                )
                .unwrap();
                let mut child = Command::new("ip")
                    .args([
                        "netns",
                        "exec",
                        &ns,
                        env!("CARGO_BIN_EXE_muster"),
                        "run",
                        "--format",
                        "json",
                        "--config",
                    ])
                    .arg(&path)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap();
                let out = child.stdout.take().unwrap();
                let tx = tx.clone();
                std::thread::spawn(move || {
                    for line in BufReader::new(out).lines().map_while(Result::ok) {
                        let v: serde_json::Value = match serde_json::from_str(&line) {
                            Ok(v) => v,
                            Err(_) => continue,
                        };
                        if v["event"] == "connected"
                            && tx
                                .send((i, v["node"].as_str().unwrap_or("").to_owned()))
                                .is_err()
                        {
                            return;
                        }
                    }
                });
                children.push(child);
            }
            let last = Wall::now();
            let mut seen = BTreeSet::new();
            let mut failed = false;
            while seen.len() < n * (n - 1) {
                match rx.recv_timeout(Duration::from_secs(60)) {
                    Ok(x) => {
                        seen.insert(x);
                    }
                    Err(_) => {
                        failed = true;
                        break;
                    }
                }
            }
            let took = last.elapsed();
            match failed {
                false => println!(
                    "  {mode:>6}, {n:>2} nodes: {:>6.0} ms",
                    took.as_secs_f64() * 1000.0
                ),
                true => println!(
                    "  {mode:>6}, {n:>2} nodes: not meshed in 60 s ({} of {} pairs)",
                    seen.len(),
                    n * (n - 1)
                ),
            }
            for mut c in children {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
    let _ = epmd.kill();
    let _ = epmd.wait();
    let _ = Command::new("ip")
        .args(["netns", "pids", &ns])
        .output()
        .map(|o| {
            for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        });
    let _ = Command::new("ip").args(["netns", "del", &ns]).status();
    let _ = std::fs::remove_dir_all(&dir);
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
    while sim.now() < Instant::from_millis(60_000) {
        sim.run_for(Duration::from_millis(500));
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
}
