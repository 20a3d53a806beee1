//! What an idle node costs on each adapter: a node with three topologies — secure gossip on
//! loopback multicast, DNSPoll against dnsmasq, Kubernetes against the HTTPS fake API, each
//! polling every 5 s (gossip heartbeats 1..5 s) — runs in a child process of its own per
//! adapter for 60 s after a 5 s start-up; the parent reads the child's RSS, CPU time and
//! context switches (every thread's, voluntary and not: the wake-ups) from /proc.
//!
//! `cargo bench --all-features --bench idle` (MUSTER_IDLE_SECONDS overrides the 60 s).
//! Prints figures; asserts nothing about speed. Needs dnsmasq and openssl, as the tests do.

#![allow(clippy::unwrap_used)] // a benchmark unwraps what it set up itself

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use muster::core::config::Options;
use muster::core::connector::RecordingConnector;
use muster::core::strategy::{Environment, Registry};
use muster::core::{NodeName, TopologySpec, Value};

use support::dnsmasq::{Dnsmasq, Scratch, free_port, host};
use support::k8s::{Dir, Fake, json, make_certs, service_account, slices};

const ADAPTERS: [&str; 4] = ["tokio", "async-std", "smol", "mio"];

fn build(kind: &str, t: &[(&str, Value)], env: Environment) -> TopologySpec {
    let t: Vec<(String, Value)> = t.iter().map(|(k, v)| ((*k).into(), v.clone())).collect();
    let mut o = Options::new("config", &t);
    let strategy = Registry::builtin()
        .with_env(env)
        .build(kind, &mut o)
        .unwrap();
    o.finish().unwrap();
    TopologySpec::boxed(kind, strategy)
}

/// The three topologies, from what the parent passed in the environment.
fn topologies() -> Vec<TopologySpec> {
    let var = |k: &str| std::env::var(k).unwrap();
    let gossip_port: i64 = var("IDLE_GOSSIP_PORT").parse().unwrap();
    let env = Environment::new()
        .set("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        .set("KUBERNETES_SERVICE_PORT", var("IDLE_K8S_PORT"));
    vec![
        build(
            "gossip",
            &[
                ("port", Value::Int(gossip_port)),
                ("multicast_if", Value::str("127.0.0.1")),
                ("secret", Value::str("idle")),
            ],
            Environment::new(),
        ),
        build(
            "dns_poll",
            &[
                ("query", Value::str("app.test")),
                ("node_basename", Value::str("app")),
                ("resolv_conf", Value::str(var("IDLE_RESOLV_CONF"))),
            ],
            Environment::new(),
        ),
        build(
            "kubernetes",
            &[
                ("kubernetes_node_basename", Value::str("app")),
                ("kubernetes_service_name", Value::str("myapp")),
                (
                    "kubernetes_service_account_path",
                    Value::str(var("IDLE_SA")),
                ),
            ],
            env,
        ),
    ]
}

/// The child: one node on `adapter` until killed.
fn node(adapter: &str) {
    let me: NodeName = "idle@127.0.0.1".parse().unwrap();
    let rec = RecordingConnector::new();
    match adapter {
        "tokio" => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let mut b = muster::tokio::Builder::new(rec).this_node(me);
                for t in topologies() {
                    b = b.topology(t);
                }
                let (_h, _e) = b.spawn().unwrap();
                std::future::pending::<()>().await;
            });
        }
        "async-std" | "smol" => {
            let mut b = muster::async_io::Builder::new(rec).this_node(me);
            for t in topologies() {
                b = b.topology(t);
            }
            let (_h, _e, driver) = b.build().unwrap();
            if adapter == "smol" {
                smol::block_on(driver);
            } else {
                async_std::task::block_on(driver);
            }
        }
        "mio" => {
            let mut b = muster::mio::Builder::new(rec).this_node(me);
            for t in topologies() {
                b = b.topology(t);
            }
            let (_h, _e, event_loop) = b.build().unwrap();
            event_loop.run().unwrap();
        }
        other => panic!("no adapter {other}"),
    }
}

/// CPU ticks (user + system) of process `pid`.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the command name, which is in parentheses.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// Context switches of every thread of `pid`, and how many threads.
fn switches(pid: u32) -> (u64, usize) {
    let mut total = 0;
    let mut threads = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let path = task.unwrap().path().join("status");
        let Ok(status) = std::fs::read_to_string(path) else {
            continue;
        };
        threads += 1;
        for line in status.lines() {
            if let Some(v) = line
                .strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
            {
                total += v.trim().parse::<u64>().unwrap();
            }
        }
    }
    (total, threads)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap()
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--node") {
        return node(&args[i + 1]);
    }
    let seconds: u64 = std::env::var("MUSTER_IDLE_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let dns_port = free_port();
    let _dns = Dnsmasq::start(dns_port, &[host("app.test", "127.0.0.2")]);
    let scratch = Scratch::new("idle");
    let resolv = scratch.resolv_conf(dns_port);
    let dir = Dir::new("idle");
    make_certs(&dir, "api");
    let sa = service_account(&dir, Some("api"));
    let fake = Fake::start(&dir, Some("api"), json(slices(&["10.1.0.1"])));
    let me = std::env::current_exe().unwrap();
    let children: Vec<(&str, Proc)> = ADAPTERS
        .iter()
        .map(|a| {
            // Each its own gossip port: they would hear each other otherwise.
            let gossip = free_port();
            let child = Command::new(&me)
                .args(["--node", a])
                .env("IDLE_GOSSIP_PORT", gossip.to_string())
                .env("IDLE_K8S_PORT", fake.addr.port().to_string())
                .env("IDLE_RESOLV_CONF", &resolv)
                .env("IDLE_SA", sa.s())
                .stdout(Stdio::null())
                .spawn()
                .unwrap();
            (*a, Proc(child))
        })
        .collect();
    std::thread::sleep(Duration::from_secs(5));
    let start: Vec<(u64, u64)> = children
        .iter()
        .map(|(_, p)| (cpu_ticks(p.0.id()), switches(p.0.id()).0))
        .collect();
    std::thread::sleep(Duration::from_secs(seconds));
    let hz = 100.0; // USER_HZ on Linux
    println!(
        "idle node, three topologies (gossip, DNSPoll, Kubernetes), {seconds} s after a 5 s start-up:"
    );
    println!("adapter     RSS KiB  CPU ms  wake-ups  wake-ups/s  threads");
    for ((name, p), (cpu0, sw0)) in children.iter().zip(start) {
        let pid = p.0.id();
        let cpu = (cpu_ticks(pid) - cpu0) as f64 / hz * 1e3;
        let (sw, threads) = switches(pid);
        let wake = sw - sw0;
        println!(
            "{name:<10} {:>8} {:>7.0} {:>9} {:>11.1} {:>8}",
            rss_kib(pid),
            cpu,
            wake,
            wake as f64 / seconds as f64,
            threads
        );
    }
    println!(
        "requests the fake API answered: {} (every node polls it every 5 s)",
        fake.requests().len()
    );
}
