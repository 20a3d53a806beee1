//! The DNS strategies' costs:
//!
//! - `poll`: core cost of one DNSPoll poll whose A answer holds 100 records (read
//!   resolv.conf, encode the A and AAAA queries, decode the replies — the A reply is too
//!   large for UDP, so it comes truncated and again over TCP, as from a real server — and
//!   diff the set), in time and allocations, with the set unchanged and with one record
//!   replaced each poll;
//! - `sim`: 10,000 polls in the simulator against a simulated name server whose answer
//!   changes every 100 polls and fails every 250th: the memory held after 1,000 and after
//!   10,000 polls.
//!
//! `cargo bench --features sim --bench dns [-- poll|sim]`. Prints figures; asserts nothing
//! about speed.

#![allow(clippy::unwrap_used)] // a benchmark unwraps what it set up itself

#[path = "support/alloc.rs"]
mod alloc;

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant as Wall};

use muster_core::sim::{DnsBehaviour, DnsRecord, DnsServer, Sim, SimConfig};
use muster_core::strategy::dns::DnsOptions;
use muster_core::strategy::dns_poll::{DnsPoll, DnsPollConfig};
use muster_core::{
    Answer, Cluster, ClusterConfig, ConnectPolicy, Input, Instant, Output, Request, Token,
    TopologySpec,
};

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

const RESOLV_CONF: &[u8] = b"# muster bench\nnameserver 10.53.0.53\noptions ndots:1 timeout:2\n";

fn server() -> SocketAddr {
    "10.53.0.53:53".parse().unwrap()
}

fn records(generation: u32) -> Vec<DnsRecord> {
    (0..100u32)
        .map(|i| {
            let i = if i == 0 { 1000 + generation } else { i };
            DnsRecord::A([10, 1, (i >> 8) as u8, i as u8].into())
        })
        .collect()
}

/// What one poll asked for.
#[derive(Default)]
struct Asked {
    read: Option<Token>,
    open: Option<Token>,
    queries: Vec<Vec<u8>>,
    exchanges: Vec<(Token, Vec<u8>)>,
}

fn drain(c: &mut Cluster, asked: &mut Asked) {
    while let Some(out) = c.poll_output() {
        if let Output::Request { token, request } = out {
            match request {
                Request::ReadFile { .. } => asked.read = Some(token),
                Request::OpenUdp(_) => asked.open = Some(token),
                Request::SendDatagram { data, .. } => asked.queries.push(data.to_vec()),
                Request::Exchange(x) => asked.exchanges.push((token, x.send.to_vec())),
                _ => {}
            }
        }
    }
}

fn poll() {
    const N: u32 = 20_000;
    let config = DnsPollConfig::new("app.test", "node").with_dns(
        DnsOptions::default()
            .nameservers([server()])
            .polling_interval(Duration::from_secs(1)),
    );
    println!("core cost of one DNSPoll poll, A answer of 100 records, AAAA empty ({N} polls):");
    for churn in [false, true] {
        let mut c = Cluster::new(
            ClusterConfig::new()
                .this_node("me@10.0.0.1".parse().unwrap())
                .discovery_only(true),
            [5; 32],
        );
        c.add_topology(
            Instant::ZERO,
            "dns",
            Box::new(DnsPoll::new(config.clone())),
            ConnectPolicy::default(),
        )
        .unwrap();
        // The replies, built once by the simulated server (not core cost); each poll only
        // patches the query's ID into them.
        let mut zones: Vec<DnsServer> = (0..2)
            .map(|g| {
                let mut z = DnsServer::new();
                z.set("app.test", records(g));
                z
            })
            .collect();
        // Per generation: the truncated UDP reply to A, the UDP reply to AAAA, and the
        // length-prefixed TCP reply to A.
        let mut replies: Vec<[Vec<u8>; 3]> = Vec::new();
        let mut asked = Asked::default();
        drain(&mut c, &mut asked);
        let socket = {
            let t = Instant::from_millis(1);
            c.handle_input(
                t,
                Input::Answer {
                    token: asked.read.take().unwrap(),
                    answer: Answer::Data(RESOLV_CONF),
                },
            );
            drain(&mut c, &mut asked);
            let socket = asked.open.unwrap();
            c.handle_input(
                t,
                Input::Answer {
                    token: socket,
                    answer: Answer::Opened("0.0.0.0:40000".parse().unwrap()),
                },
            );
            drain(&mut c, &mut asked);
            for z in &mut zones {
                let tcp = z.answer(&asked.queries[0], true).unwrap();
                let mut framed = (tcp.len() as u16).to_be_bytes().to_vec();
                framed.extend_from_slice(&tcp);
                replies.push([
                    z.answer(&asked.queries[0], false).unwrap(),
                    z.answer(&asked.queries[1], false).unwrap(),
                    framed,
                ]);
            }
            socket
        };
        let mut a0 = 0;
        let mut start = Wall::now();
        for poll in 0..=N {
            if poll == 1 {
                // The first poll warms the tables up; measure the steady state.
                a0 = alloc::allocs();
                start = Wall::now();
            }
            let now = Instant::from_millis((u64::from(poll) + 1) * 1000);
            if poll > 0 {
                c.handle_timeout(now);
                drain(&mut c, &mut asked);
                c.handle_input(
                    now,
                    Input::Answer {
                        token: asked.read.take().unwrap(),
                        answer: Answer::Data(RESOLV_CONF),
                    },
                );
                drain(&mut c, &mut asked);
            }
            let generation = if churn { (poll % 2) as usize } else { 0 };
            let [udp_a, udp_aaaa, tcp_a] = &mut replies[generation];
            for (q, reply) in asked.queries.iter().zip([udp_a, udp_aaaa]) {
                reply[..2].copy_from_slice(&q[..2]);
                c.handle_input(
                    now,
                    Input::Datagram {
                        socket,
                        from: server(),
                        data: reply,
                    },
                );
            }
            asked.queries.clear();
            drain(&mut c, &mut asked);
            let (token, query) = asked.exchanges.pop().unwrap();
            tcp_a[2..4].copy_from_slice(&query[2..4]);
            c.handle_input(
                now,
                Input::Answer {
                    token,
                    answer: Answer::Data(tcp_a),
                },
            );
            drain(&mut c, &mut asked);
        }
        let took = start.elapsed();
        let allocs = alloc::allocs() - a0;
        let m = c.metrics();
        assert_eq!(m.discovery_failed, 0);
        assert_eq!(m.rounds, u64::from(N) + 1);
        println!(
            "  {:<34} {:>7.1} µs/poll  {:>6.1} allocations/poll",
            if churn {
                "one record replaced every poll"
            } else {
                "answer unchanged"
            },
            took.as_secs_f64() * 1e6 / f64::from(N),
            allocs as f64 / f64::from(N)
        );
        black_box(c);
    }
}

fn sim() {
    const POLLS: u64 = 10_000;
    let mut sim = Sim::new(
        9,
        SimConfig::default()
            .record_events(false)
            .latency(Duration::from_millis(1), Duration::from_millis(5)),
    );
    let mut zone = DnsServer::new();
    zone.set("app.test", records(0));
    sim.add_dns_server(server(), zone);
    for i in 0..110u32 {
        let ip = std::net::Ipv4Addr::new(10, 1, (i >> 8) as u8, i as u8);
        sim.add_fake_node(format!("node@{ip}").parse().unwrap());
    }
    sim.add_node("me@10.0.0.1".parse().unwrap(), ClusterConfig::new(), || {
        vec![TopologySpec::new(
            "dns",
            DnsPoll::new(
                DnsPollConfig::new("app.test", "node").with_dns(
                    DnsOptions::default()
                        .nameservers([server()])
                        .polling_interval(Duration::from_secs(1)),
                ),
            ),
        )]
    });
    println!(
        "{POLLS} DNSPoll polls in the simulator (100 records, churn every 100, SERVFAIL every 250):"
    );
    let start = Wall::now();
    let mut live_at_1000 = 0;
    for poll in 1..=POLLS {
        sim.run_for(Duration::from_secs(1));
        let server = sim.dns_server(server()).unwrap();
        if poll % 100 == 0 {
            server.set("app.test", records((poll / 100 % 10) as u32));
        }
        server.behave(if poll % 250 == 0 {
            DnsBehaviour::ServFail
        } else {
            DnsBehaviour::Answer
        });
        if poll == 1000 {
            live_at_1000 = alloc::live();
        }
    }
    let live = alloc::live();
    let m = sim.cluster("me@10.0.0.1").unwrap().metrics();
    println!(
        "  {:.2} s wall; {} rounds, {} failed; live heap after 1,000 polls {} bytes, after 10,000 {} bytes (growth {} bytes)",
        start.elapsed().as_secs_f64(),
        m.rounds,
        m.discovery_failed,
        live_at_1000,
        live,
        live as i64 - live_at_1000 as i64
    );
}

fn main() {
    let which: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let want = |name: &str| which.is_empty() || which.iter().any(|w| w == name);
    if want("poll") {
        poll();
    }
    if want("sim") {
        sim();
    }
}
