//! Erlang distribution figures, against real Erlang (erlang-base must be installed):
//!
//! - `handshake`: connect time (EPMD lookup + TCP + cookie handshake) to a local `erl` node
//!   and to another muster node, median of many;
//! - `epmd`: requests per second muster's own EPMD answers;
//! - `footprint`: RSS and CPU time of one idle `muster run` holding 20 distribution
//!   connections, beside one idle `erl` node holding the same 20;
//! - `demo`: `muster demo` with 5 and 20 nodes, time to a full mesh;
//! - `flood` (root, for network namespaces): RSS and CPU of `muster run` (erlang connector,
//!   its own EPMD) idle, while another host holds 3,000 idle connections to its distribution
//!   port and 3,000 to its EPMD, and after they leave — at a descriptor limit of 1,024 and of
//!   256;
//! - `mesh`: `disconnected` and `connect_failed` events over 100 twelve-node meshes formed
//!   all at once (both should be 0);
//! - `startup`: process start of `muster run` (Epmd strategy, Erlang connector) to its first
//!   `connected` event and to all five, against five real `erl` nodes (libcluster: 313 ms).
//!
//! `cargo bench --bench erlang [-- handshake|epmd|footprint|demo|flood|mesh|startup]`. Prints
//! figures; asserts nothing about speed.

#![allow(clippy::unwrap_used)] // a benchmark unwraps what it set up itself

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "../tests/support/mesh.rs"]
mod mesh;
#[path = "../tests/support/mod.rs"]
mod support;

use muster::core::Node;
use muster::core::dist::DistConfig;
use muster::core::strategy::epmd::{Epmd, EpmdConfig};
use muster::core::{Event, NodeName, TopologySpec};
use muster::tokio::{Builder, run_epmd};
use support::dnsmasq::free_port;
use support::erlang::{Proc, epmd};

fn wait_registered(port: u16, names: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !names
        .iter()
        .all(|n| support::erlang::names(port).contains(n))
    {
        assert!(Instant::now() < deadline, "erl nodes did not register");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn erl(port: u16, name: &str, cookie: &str, eval: Option<&str>) -> Proc {
    let mut c = Command::new("erl");
    c.env("ERL_EPMD_PORT", port.to_string())
        .args([
            "-name",
            &format!("{name}@127.0.0.1"),
            "-setcookie",
            cookie,
            "-noshell",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(e) = eval {
        c.args(["-eval", e]);
    }
    Proc(c.spawn().expect("erl (erlang-base)"))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

async fn handshake() {
    const ROUNDS: usize = 200;
    let port = free_port();
    let _epmd = epmd(port);
    let _a = erl(port, "a", "c", None);
    let node = |name: &str| {
        Builder::erlang(DistConfig::new(name.parse().unwrap(), "c").epmd_port(port))
            .spawn()
            .unwrap()
    };
    let (me, mut events) = node("bench@127.0.0.1");
    let (_other, _) = node("other@127.0.0.1");
    wait_registered(port, &["a".into(), "bench".into(), "other".into()]);
    for (label, target) in [
        ("a local erl node", "a@127.0.0.1"),
        ("another muster node", "other@127.0.0.1"),
    ] {
        let target: NodeName = target.parse().unwrap();
        let mut times = Vec::new();
        for _ in 0..ROUNDS {
            // A topology of one node: connected at once; removed: disconnected.
            let id = me
                .add_topology(TopologySpec::new(
                    "bench",
                    Epmd::new(EpmdConfig::new([Node::new(target.clone())])),
                ))
                .await
                .unwrap();
            loop {
                match events.recv().await.unwrap() {
                    Event::Connected { node, took, .. } if node == target => {
                        times.push(took);
                        break;
                    }
                    Event::ConnectFailed { reason, .. } => panic!("{label}: {reason}"),
                    _ => {}
                }
            }
            me.remove_topology(id).await;
            while !matches!(events.recv().await.unwrap(), Event::Disconnected { .. }) {}
            // Let the peer see the close before the next round.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        println!(
            "  connect to {label} (EPMD lookup, TCP, cookie handshake, as the core times it): median {:.2} ms over {ROUNDS}",
            median(times).as_secs_f64() * 1000.0
        );
    }
}

async fn epmd_rate() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = run_epmd("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = server.local_addr();
    let req = muster::core::proto::epmd::port_please_request("nobody");
    let until = Instant::now() + Duration::from_secs(5);
    let mut clients = Vec::new();
    for _ in 0..8 {
        let req = req.clone();
        clients.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < until {
                let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
                s.write_all(&req).await.unwrap();
                let mut reply = Vec::new();
                s.read_to_end(&mut reply).await.unwrap();
                assert_eq!(reply, [119, 1]);
                n += 1;
            }
            n
        }));
    }
    let mut total = 0;
    for c in clients {
        total += c.await.unwrap();
    }
    println!(
        "  muster's EPMD: {:.0} PORT_PLEASE2 requests/s (8 clients, a TCP connection each, 5 s; {} counted by the server)",
        total as f64 / 5.0,
        server.requests()
    );
}

fn proc_stat(pid: u32) -> (u64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    (rss_kb, ticks as f64 / 100.0)
}

fn footprint() {
    const N: usize = 20;
    let port = free_port();
    let _epmd = epmd(port);
    let names: Vec<String> = (0..N).map(|i| format!("n{i}")).collect();
    let _nodes: Vec<Proc> = names.iter().map(|n| erl(port, n, "c", None)).collect();
    wait_registered(port, &names);
    // The erl node that holds the same 20 connections.
    let pings: Vec<String> = names
        .iter()
        .map(|n| format!("net_adm:ping('{n}@127.0.0.1')"))
        .collect();
    let eval = format!("[{}], receive after infinity -> ok end.", pings.join(", "));
    let watcher = erl(port, "watcher", "c", Some(&eval));
    let dir = std::env::temp_dir().join(format!("muster-footprint-{port}"));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("muster.toml");
    std::fs::write(
        &config,
        format!("[node]\nname = \"rust@127.0.0.1\"\nconnector = \"erlang\"\n[connector]\ncookie = \"c\"\nepmd_port = {port}\nembedded_epmd = \"never\"\n[topologies.local]\nstrategy = \"local_epmd\"\n"),
    )
    .unwrap();
    let mut tool = Command::new(env!("CARGO_BIN_EXE_muster"))
        .args(["run", "--config"])
        .arg(&config)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = tool.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if l.contains("] connected ") {
                let _ = tx.send(());
            }
        }
    });
    // 20 erl nodes, plus the watcher, which it connects to as well.
    for _ in 0..N {
        rx.recv_timeout(Duration::from_secs(60))
            .expect("muster did not connect");
    }
    let tool_pid = tool.id();
    let watcher_pid = watcher.0.id();
    let settle = Duration::from_secs(3);
    std::thread::sleep(settle);
    let (m0, mc0) = proc_stat(tool_pid);
    let (e0, ec0) = proc_stat(watcher_pid);
    let idle = Duration::from_secs(30);
    std::thread::sleep(idle);
    let (m1, mc1) = proc_stat(tool_pid);
    let (e1, ec1) = proc_stat(watcher_pid);
    println!(
        "  one idle node holding {N} distribution connections, over {} s:",
        idle.as_secs()
    );
    println!(
        "    muster run (erlang connector, local_epmd): RSS {} KiB, CPU {:.2} s ({:.3}%)",
        m1.max(m0),
        mc1 - mc0,
        (mc1 - mc0) / idle.as_secs_f64() * 100.0
    );
    println!(
        "    erl -noshell, the same connections:         RSS {} KiB, CPU {:.2} s ({:.3}%)",
        e1.max(e0),
        ec1 - ec0,
        (ec1 - ec0) / idle.as_secs_f64() * 100.0
    );
    let _ = tool.kill();
    let _ = tool.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

fn demo() {
    for n in [5, 20] {
        let out = Command::new(env!("CARGO_BIN_EXE_muster"))
            .args(["demo", "--nodes", &n.to_string()])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find(|l| l.starts_with("full mesh:"))
            .unwrap_or("no full mesh");
        let heal = text
            .lines()
            .find(|l| l.starts_with("healed:"))
            .unwrap_or("no heal");
        println!("  muster demo --nodes {n}: {line}; {heal}");
    }
}

/// The victim's configuration in the flood: an Erlang node with muster's own EPMD.
const FLOOD_VICTIM: &str = "[node]\nname = \"victim@10.77.0.1\"\nconnector = \"erlang\"\n\n\
[connector]\ncookie = \"flood\"\nlisten = \"0.0.0.0:9100\"\nembedded_epmd = \"always\"\n\
epmd_port = 4369\n\n[topologies.local]\nstrategy = \"local_epmd\"\n";

/// Peak resident memory of `pid` so far, in KiB.
fn peak_rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn flood() {
    use support::netns::Lab;
    const EACH: usize = 3000;
    let window = Duration::from_secs(10);
    for limit in [1024, 256] {
        let mut lab = Lab::new(&format!("bf{limit}"));
        let (v, a) = lab.pair();
        let (tx, _rx) = std::sync::mpsc::channel();
        let nofile = format!("--nofile={limit}:{limit}");
        let pid = lab.muster_under(&v, &["prlimit", &nofile, "--"], "victim", FLOOD_VICTIM, &tx);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !lab
            .try_bash(&v, "epmd -names")
            .is_ok_and(|o| o.contains("name victim "))
        {
            assert!(Instant::now() < deadline, "the victim never registered");
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_secs(2));
        let (_, c0) = proc_stat(pid);
        std::thread::sleep(window);
        let (idle, c1) = proc_stat(pid);
        let script = format!(
            "ulimit -n 16384; for port in 4369 9100; do for i in $(seq {EACH}); do \
             exec {{fd}}<>/dev/tcp/10.77.0.1/$port || exit 1; done; done; echo opened; read"
        );
        println!(
            "  muster run, {limit} descriptors; another host opens {EACH} idle connections to its distribution port and {EACH} to its EPMD, holds them {} s, leaves; twice:",
            window.as_secs()
        );
        println!(
            "    idle:     RSS {idle} KiB, CPU {:.2}% of a core",
            pct(c1 - c0, window)
        );
        for round in 1..=2 {
            let (_, c_start) = proc_stat(pid);
            let started = Instant::now();
            let attacker = lab.spawn(&a, "bash", &["-c", &script]);
            let mut out = std::io::BufReader::new(attacker.stdout.take().unwrap());
            let mut line = String::new();
            std::io::BufRead::read_line(&mut out, &mut line).unwrap();
            let opened = started.elapsed();
            let (_, c2) = proc_stat(pid);
            std::thread::sleep(window);
            let (during, c3) = proc_stat(pid);
            let peak = peak_rss(pid);
            drop(attacker.stdin.take());
            drop(out);
            std::thread::sleep(window);
            let (_, c4) = proc_stat(pid);
            std::thread::sleep(window);
            let (after, c5) = proc_stat(pid);
            println!(
                "    flood {round}: opened in {:.1} s; held: RSS {during} KiB (peak {peak} KiB, {:.2}x idle), CPU {:.2}% of a core ({:.2} s of CPU while they were opened)",
                opened.as_secs_f64(),
                peak as f64 / idle as f64,
                pct(c3 - c2, window),
                c2 - c_start
            );
            println!(
                "             after they left: RSS {after} KiB ({:+.1}% of idle), CPU {:.2}% of a core",
                (after as f64 / idle as f64 - 1.0) * 100.0,
                pct(c5 - c4, window)
            );
        }
    }
}

/// CPU seconds `c` over `window`, as a percentage of one core.
fn pct(c: f64, window: Duration) -> f64 {
    c / window.as_secs_f64() * 100.0
}

async fn mesh_rounds() {
    const ROUNDS: usize = 100;
    const NODES: usize = 12;
    let server = run_epmd("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let port = server.local_addr().port();
    let (mut disconnected, mut failed) = (0, 0);
    let started = Instant::now();
    for round in 0..ROUNDS {
        let s = mesh::form(port, round, NODES).await;
        disconnected += s.disconnected.len();
        failed += s.failed.len();
        for line in s.disconnected.iter().chain(&s.failed).take(3) {
            println!("    round {round}: {line}");
        }
    }
    println!(
        "  {ROUNDS} meshes of {NODES} Erlang nodes formed at once ({:.0} s): {disconnected} disconnected, {failed} connect_failed",
        started.elapsed().as_secs_f64()
    );
}

fn startup() {
    use std::io::{BufRead, BufReader};
    let port = free_port();
    let _epmd = epmd(port);
    let names: Vec<String> = (0..5).map(|i| format!("s{i}")).collect();
    let _erls: Vec<Proc> = names.iter().map(|n| erl(port, n, "c", None)).collect();
    wait_registered(port, &names);
    let dir = std::env::temp_dir().join(format!("muster-startup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("m.toml");
    let hosts: Vec<String> = names.iter().map(|n| format!("\"{n}@127.0.0.1\"")).collect();
    std::fs::write(
        &path,
        format!(
            "[node]\nname = \"m@127.0.0.1\"\nconnector = \"erlang\"\n[connector]\ncookie = \"c\"\n\
             epmd_port = {port}\nembedded_epmd = \"never\"\n[topologies.s]\nstrategy = \"epmd\"\n\
             config = {{ hosts = [{}] }}\n",
            hosts.join(", ")
        ),
    )
    .unwrap();
    let (mut first, mut all) = (Vec::new(), Vec::new());
    for _ in 0..21 {
        let t0 = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_muster"))
            .args(["run", "--format", "json", "--config"])
            .arg(&path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let mut n = 0;
        for line in out.lines().map_while(Result::ok) {
            if line.contains("\"connected\"") {
                n += 1;
                if n == 1 {
                    first.push(t0.elapsed());
                }
                if n == 5 {
                    all.push(t0.elapsed());
                    break;
                }
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    println!(
        "  muster run start -> first connected: median {:.1} ms; -> all 5 erl nodes connected: median {:.1} ms (21 runs; libcluster 313 ms)",
        median(first).as_secs_f64() * 1000.0,
        median(all).as_secs_f64() * 1000.0
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::main]
async fn main() {
    let which: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let want = |name: &str| which.is_empty() || which.iter().any(|w| w == name);
    println!("muster Erlang distribution benchmark");
    if want("handshake") {
        handshake().await;
    }
    if want("epmd") {
        epmd_rate().await;
    }
    if want("footprint") {
        tokio::task::spawn_blocking(footprint).await.unwrap();
    }
    if want("demo") {
        tokio::task::spawn_blocking(demo).await.unwrap();
    }
    if want("flood") {
        tokio::task::spawn_blocking(flood).await.unwrap();
    }
    if want("mesh") {
        mesh_rounds().await;
    }
    if want("startup") {
        tokio::task::spawn_blocking(startup).await.unwrap();
    }
}
