//! A band of seeds, each a random cluster under random faults, then healed.
//!
//! Every step of every run is checked by the simulator's invariants (never connect to self,
//! never disconnect a node a topology still discovers, one request in flight per node,
//! bounded queues). After the faults stop, every node must reach every node it wants within
//! the stated bound, and the whole cluster must become quiescent. Some bands also discover
//! through a simulated PostgreSQL server (the `postgres` strategy), which restarts, goes down,
//! becomes unreachable, stalls and turns standby during the faults: once healed, every node
//! of such a band must know every other through postgres itself. Some bands discover through
//! simulated EC2 and ECS APIs (the `ec2` and `ecs` strategies, signed requests checked), which
//! refuse, fail, throttle, stall and cut answers short during the faults: once healed, every
//! node with such a topology must know every instance (task) through it.
//!
//! `MUSTER_SIM_SEEDS` sets how many seeds (default 256); `MUSTER_SIM_SEED` runs just one.
#![allow(clippy::unwrap_used)] // tests unwrap what they set up themselves

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use muster_core::config::Options;
use muster_core::dist::DistConfig;
use muster_core::sim::{
    ApiFault, ConnectBehaviour, DnsBehaviour, DnsRecord, DnsServer, Ec2Api, EcsApi, KubernetesApi,
    PostgresServer, ServiceFault, Sim, SimConfig, convergence_bound,
};
use muster_core::strategy::dns::DnsOptions;
use muster_core::strategy::gossip::{Gossip, GossipConfig};
use muster_core::strategy::kubernetes_dns_srv::{KubernetesDnsSrv, KubernetesDnsSrvConfig};
use muster_core::strategy::{Environment, Registry};
use muster_core::{ClusterConfig, ConnectPolicy, NodeName, Rng, TopologySpec, Value};

struct Scenario {
    seed: u64,
    nodes: Vec<NodeName>,
    fakes: Vec<NodeName>,
    /// The nodes with a postgres topology: each must know every other once healed.
    pg_nodes: Vec<NodeName>,
    /// Whether some nodes poll the simulated EC2 API, and some the ECS API.
    aws: AwsBand,
    /// The longest polling interval of a node with an AWS topology.
    aws_every: Duration,
    bound: Duration,
    /// How long after healing a strategy may take to discover again (postgres waiting out
    /// its backoff), on top of which `bound` holds.
    settle: Duration,
}

fn pick<'a, T>(rng: &mut Rng, xs: &'a [T]) -> &'a T {
    &xs[rng.range_inclusive(0, xs.len() as u64 - 1) as usize]
}

fn subset(rng: &mut Rng, all: &[NodeName]) -> String {
    all.iter()
        .filter(|_| rng.chance(0.7))
        .map(|n| format!("{n}\n"))
        .collect()
}

const API: &str = "10.96.0.1:443";

/// A Kubernetes topology against the band's simulated API.
fn kubernetes(lookup: &str, interval: u64) -> TopologySpec {
    let t: Vec<(String, Value)> = [
        ("kubernetes_node_basename", Value::str("n")),
        ("kubernetes_service_name", Value::str("n")),
        ("kubernetes_selector", Value::str("app=n")),
        ("kubernetes_ip_lookup_mode", Value::str(lookup)),
        ("kubernetes_service_account_path", Value::str("/sa")),
        ("polling_interval", Value::Int(interval as i64)),
        ("request_timeout", Value::Int(5000)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let env = Environment::new()
        .set("KUBERNETES_SERVICE_HOST", "10.96.0.1")
        .set("KUBERNETES_SERVICE_PORT", "443");
    let mut o = Options::new("k8s", &t);
    let s = Registry::builtin()
        .with_env(env)
        .build("kubernetes", &mut o)
        .unwrap();
    TopologySpec::boxed("k8s", s)
}

/// The band's simulated PostgreSQL server.
const PG: &str = "10.99.0.1:5432";

/// The postgres configuration of a band: every node of it must share the channel, the
/// secret and the timing (a node's timeout must outlast the others' heartbeats).
#[derive(Debug, Clone)]
struct PgBand {
    heartbeat: u64,
    timeout: u64,
    connect: u64,
    channel: &'static str,
    secret: bool,
}

/// Channel names that must be quoted: case, spaces, both kinds of quote, a backslash.
const CHANNELS: [&str; 3] = ["band", "Band \"x\" 'y'", "n\\ode"];

/// The postgres strategy's longest wait between attempts (its backoff cap, 30 s, plus a
/// quarter of jitter): how long a node may take to try again once the server is back.
const PG_MAX_RETRY: u64 = 37_500;

/// Postgres choices come from their own generator, so that the other choices of every seed
/// stay what they were before postgres joined the band.
fn pg_rng(seed: u64) -> Rng {
    let mut s = [0u8; 32];
    s[..8].copy_from_slice(&seed.to_le_bytes());
    s[8..16].copy_from_slice(b"postgres");
    Rng::from_seed(s)
}

/// A postgres topology against the band's simulated server.
fn postgres(pg: &PgBand) -> TopologySpec {
    let mut t: Vec<(String, Value)> = vec![
        (
            "url".into(),
            Value::str(format!("postgres://band@{PG}/band?sslmode=disable")),
        ),
        ("channel_name".into(), Value::str(pg.channel)),
        ("heartbeat_interval".into(), Value::Int(pg.heartbeat as i64)),
        ("node_timeout".into(), Value::Int(pg.timeout as i64)),
        ("connect_timeout".into(), Value::Int(pg.connect as i64)),
    ];
    if pg.secret {
        t.push(("secret".into(), Value::str("band")));
    }
    let mut o = Options::new("pg", &t);
    let s = Registry::builtin().build("postgres", &mut o).unwrap();
    o.finish().unwrap();
    TopologySpec::boxed("pg", s)
}

/// The band's simulated EC2 API (a port that is not http's, so the `Host` header and the
/// signature carry it).
const EC2: &str = "10.98.0.1:8080";
/// The band's simulated ECS API.
const ECS: &str = "10.98.0.2:80";

/// The AWS choices of a band: which APIs its nodes poll.
#[derive(Debug, Clone, Copy, Default)]
struct AwsBand {
    ec2: bool,
    ecs: bool,
}

/// The AWS strategies' longest wait between polls while throttled: two minutes.
const AWS_MAX_BACKOFF: u64 = 120_000;

/// AWS choices come from their own generator, so that the other choices of every seed stay
/// what they were before EC2 and ECS joined the band.
fn aws_rng(seed: u64) -> Rng {
    let mut s = [0u8; 32];
    s[..8].copy_from_slice(&seed.to_le_bytes());
    s[8..11].copy_from_slice(b"aws");
    Rng::from_seed(s)
}

/// The environment of an AWS topology: keys (with a session token, sometimes), a region, no
/// instance metadata service.
fn aws_env(token: bool) -> Environment {
    let env = Environment::new()
        .set("AWS_ACCESS_KEY_ID", "AKIDBAND")
        .set("AWS_SECRET_ACCESS_KEY", "band-secret")
        .set("AWS_REGION", "us-east-1")
        .set("AWS_EC2_METADATA_DISABLED", "true");
    if token {
        env.set("AWS_SESSION_TOKEN", "band-token")
    } else {
        env
    }
}

/// An `ec2` or `ecs` topology against the band's simulated API.
fn aws_topology(strategy: &str, interval: u64, page_size: u64, token: bool) -> TopologySpec {
    let mut t: Vec<(String, Value)> = vec![
        ("app_prefix".into(), Value::str("n")),
        ("polling_interval".into(), Value::Int(interval as i64)),
        ("request_timeout".into(), Value::Int(5000)),
    ];
    if strategy == "ec2" {
        t.push(("endpoint_url".into(), Value::str(format!("http://{EC2}"))));
        t.push(("ec2_tagname".into(), Value::str("cluster")));
        t.push(("ec2_tagvalue".into(), Value::str("band")));
        t.push(("page_size".into(), Value::Int(page_size as i64)));
    } else {
        t.push(("endpoint_url".into(), Value::str(format!("http://{ECS}"))));
        t.push(("cluster".into(), Value::str("band")));
        t.push(("service_name".into(), Value::str("n")));
    }
    let mut o = Options::new(strategy, &t);
    let s = Registry::builtin()
        .with_env(aws_env(token))
        .build(strategy, &mut o)
        .unwrap();
    o.finish().unwrap();
    TopologySpec::boxed(strategy, s)
}

fn dns_server() -> SocketAddr {
    SocketAddr::from(([10, 53, 0, 53], 53))
}

/// A name server whose SRV records name a random subset of `all`.
fn zone(rng: &mut Rng, all: &[NodeName]) -> DnsServer {
    let mut z = DnsServer::new();
    let records = all
        .iter()
        .filter(|_| rng.chance(0.7))
        .map(|n| DnsRecord::Srv {
            priority: 0,
            weight: 0,
            port: 4369,
            target: n.host().to_owned(),
        })
        .collect();
    z.set("band.sim.svc.cluster.local", records);
    z
}

fn build(seed: u64) -> (Sim, Scenario) {
    let mut rng = Rng::from_seed({
        let mut s = [0u8; 32];
        s[..8].copy_from_slice(&seed.to_le_bytes());
        s
    });
    let symmetric = rng.chance(0.5);
    let config = SimConfig::default()
        .symmetric(symmetric)
        .notify_drops(rng.chance(0.5))
        .latency(ms(1), ms(rng.range_inclusive(2, 50)));
    let mut sim = Sim::new(seed, config.clone());
    let count = rng.range_inclusive(3, 8) as usize;
    // One name part for all, so that SRV targets name them (app@<target>).
    // Hosts named by address, so that the Kubernetes API's pods (`n@<pod IP>`) name them.
    let nodes: Vec<NodeName> = (0..count)
        .map(|i| n(&format!("n@10.77.0.{}", i + 1)))
        .collect();
    // Some bands are Erlang nodes: they link over simulated streams through each host's
    // EPMD, not through the simulated connector, and so have no fake nodes to fail at.
    let erlang = rng.chance(0.3);
    let fakes: Vec<NodeName> = (0..if erlang { 0 } else { rng.range_inclusive(0, 3) })
        .map(|i| n(&format!("n@10.77.1.{}", i + 1)))
        .collect();
    for f in &fakes {
        sim.add_fake_node(f.clone());
    }
    let everyone: Vec<NodeName> = nodes.iter().chain(&fakes).cloned().collect();
    sim.write_file("dns", subset(&mut rng, &everyone));
    sim.add_dns_server(dns_server(), zone(&mut rng, &everyone));
    sim.serve_http(
        API,
        KubernetesApi::new("band", "n").pods(everyone.iter().cloned()),
    );
    sim.serve_stream(PG, PostgresServer::new());
    sim.serve_http(
        EC2,
        Ec2Api::new("cluster", "band")
            .instances(everyone.iter().cloned())
            .credentials("AKIDBAND", "band-secret"),
    );
    sim.serve_http(
        ECS,
        EcsApi::new("band", "n")
            .tasks(everyone.iter().cloned())
            .credentials("AKIDBAND", "band-secret"),
    );
    let mut arng = aws_rng(seed);
    let aws = AwsBand {
        ec2: arng.chance(0.15),
        ecs: arng.chance(0.1),
    };
    let mut prng = pg_rng(seed);
    let pg = prng.chance(0.3).then(|| {
        let heartbeat = prng.range_inclusive(200, 1000);
        PgBand {
            heartbeat,
            timeout: heartbeat * prng.range_inclusive(2, 5),
            connect: prng.range_inclusive(1000, 5000),
            channel: CHANNELS[prng.range_inclusive(0, CHANNELS.len() as u64 - 1) as usize],
            secret: prng.chance(0.5),
        }
    });
    let mut pg_nodes = Vec::new();
    for (path, data) in [
        ("/sa/token", "t"),
        ("/sa/ca.crt", "ca"),
        ("/sa/namespace", "band"),
    ] {
        sim.write_file(path, data);
    }
    // One gossip configuration for the whole band: every gossiping node must share it.
    let mut gossip_options: Vec<(String, Value)> = match rng.range_inclusive(0, 2) {
        0 => vec![],
        1 => vec![("secret".into(), Value::str("band"))],
        _ => vec![
            ("secret".into(), Value::str("band")),
            ("compat".into(), Value::Bool(true)),
        ],
    };
    let heartbeat_max = rng.range_inclusive(200, 5000);
    gossip_options.push(("heartbeat_max_ms".into(), Value::Int(heartbeat_max as i64)));
    let gossip = GossipConfig::from_options(&mut Options::new("gossip", &gossip_options)).unwrap();
    let mut bound = Duration::ZERO;
    let mut settle = Duration::ZERO;
    let mut aws_every = Duration::ZERO;
    for me in &nodes {
        let interval = rng.range_inclusive(500, 5000);
        let base = rng.range_inclusive(50, 1000);
        let policy = ConnectPolicy::default()
            .connect_timeout(ms(rng.range_inclusive(500, 7000)))
            .backoff(ms(base), ms(base * rng.range_inclusive(2, 20)))
            .prune(rng.chance(0.7))
            .grace(ms(if rng.chance(0.5) {
                0
            } else {
                rng.range_inclusive(1, 3000)
            }));
        bound = bound.max(convergence_bound(&policy, ms(interval), &config));
        let use_gossip = rng.chance(0.4);
        let use_static = rng.chance(0.6);
        let use_file = !(use_static || use_gossip) || rng.chance(0.4);
        let use_srv = rng.chance(0.4);
        let use_k8s = rng.chance(0.3);
        let lookup = *pick(&mut rng, &["endpointslices", "endpoints", "pods"]);
        let pg = pg.clone().filter(|_| prng.chance(0.7));
        let use_ec2 = aws.ec2 && arng.chance(0.7);
        let use_ecs = aws.ecs && arng.chance(0.7);
        let page_size = arng.range_inclusive(5, 8);
        // AWS is polled at AWS's pace (the default is 5 s), not at the band's fastest.
        let aws_interval = arng.range_inclusive(2000, 5000);
        let token = arng.chance(0.5);
        if use_ec2 || use_ecs {
            // A poll can wait out a stalled request (5 s) before the next.
            let worst = ms(aws_interval) + ms(5000);
            bound = bound.max(convergence_bound(&policy, worst, &config));
            aws_every = aws_every.max(ms(aws_interval));
        }
        if let Some(pg) = &pg {
            pg_nodes.push(me.clone());
            // Once the server is back a node may wait out a connect (its deadline) and its
            // longest backoff, then log in, listen and sync within a few round trips.
            settle =
                settle.max(ms(pg.connect + PG_MAX_RETRY + pg.heartbeat) + config.latency.1 * 8);
        }
        if use_k8s {
            // A poll can wait out a stalled request (5 s) before the next.
            let worst = ms(interval) + ms(5000);
            bound = bound.max(convergence_bound(&policy, worst, &config));
        }
        if use_srv {
            // A poll can wait out every resolver time-out (5 s, twice) before the next.
            let worst = ms(interval) + ms(10_000);
            bound = bound.max(convergence_bound(&policy, worst, &config));
        }
        if use_gossip {
            bound = bound.max(convergence_bound(&policy, ms(heartbeat_max), &config));
        }
        let gossip = gossip.clone();
        let hosts: Vec<String> = everyone.iter().map(|n| n.to_string()).collect();
        let mut cluster = ClusterConfig::new().max_in_flight(4);
        if erlang {
            cluster = cluster.erlang(DistConfig::new(me.clone(), "band"));
        }
        sim.add_node(me.clone(), cluster, move || {
            let mut t = Vec::new();
            if use_static {
                let h: Vec<&str> = hosts.iter().map(String::as_str).collect();
                t.push(epmd("static", &h, Some(interval), policy));
            }
            if use_file {
                t.push(file("dns", "dns", interval, policy));
            }
            if use_srv {
                let c = KubernetesDnsSrvConfig::new("band", "sim", "n").with_dns(
                    DnsOptions::default()
                        .nameservers([dns_server()])
                        .polling_interval(ms(interval)),
                );
                t.push(TopologySpec::new("srv", KubernetesDnsSrv::new(c)).policy(policy));
            }
            if use_gossip {
                t.push(TopologySpec::new("gossip", Gossip::new(gossip.clone())).policy(policy));
            }
            if use_k8s {
                t.push(kubernetes(lookup, interval).policy(policy));
            }
            if let Some(pg) = &pg {
                t.push(postgres(pg).policy(policy));
            }
            if use_ec2 {
                t.push(aws_topology("ec2", aws_interval, page_size, token).policy(policy));
            }
            if use_ecs {
                t.push(aws_topology("ecs", aws_interval, page_size, token).policy(policy));
            }
            t
        });
    }
    (
        sim,
        Scenario {
            seed,
            nodes,
            fakes,
            pg_nodes,
            aws,
            aws_every,
            bound,
            settle,
        },
    )
}

/// Runs the faults; returns how long after healing a strategy may take to discover again
/// (an AWS strategy waiting out its throttled backoff).
fn chaos(sim: &mut Sim, sc: &Scenario, rng: &mut Rng) -> Duration {
    let all: Vec<NodeName> = sc.nodes.iter().chain(&sc.fakes).cloned().collect();
    let until = sim.now() + ms(rng.range_inclusive(20_000, 90_000));
    let mut prng = pg_rng(sc.seed ^ 1);
    let mut arng = aws_rng(sc.seed ^ 1);
    // When an AWS API first answered in a way that throttles (503 or a throttling code).
    let mut throttled_since = None;
    while sim.now() < until {
        sim.run_for(ms(rng.range_inclusive(100, 5000)));
        if !sc.pg_nodes.is_empty() && prng.chance(0.25) {
            match prng.range_inclusive(0, 6) {
                5 | 6 => {
                    if let Some(server) = sim.stream_service_mut::<PostgresServer>(PG) {
                        // A standby, then promoted (or the other way round).
                        server.set_read_only(prng.chance(0.5));
                    }
                }
                0 => sim.restart_service(PG),
                1 => sim.service_fault(PG, ServiceFault::Down),
                2 => sim.service_fault(PG, ServiceFault::Unreachable),
                3 => sim.service_fault(PG, ServiceFault::Stall),
                _ => sim.service_fault(PG, ServiceFault::None),
            }
        }
        for (on, at) in [(sc.aws.ec2, EC2), (sc.aws.ecs, ECS)] {
            if on && arng.chance(0.25) {
                let fault = *pick(
                    &mut arng,
                    &[
                        ApiFault::None,
                        ApiFault::None,
                        ApiFault::Forbidden,
                        ApiFault::ServerError,
                        ApiFault::Stall,
                        ApiFault::Truncate,
                        ApiFault::Throttled,
                    ],
                );
                if matches!(fault, ApiFault::Throttled | ApiFault::ServerError) {
                    throttled_since.get_or_insert(sim.now());
                }
                sim.http_fault(at, fault);
            }
        }
        let target = pick(rng, &all).clone();
        match rng.range_inclusive(0, 9) {
            9 => sim.set_datagram_loss(if rng.chance(0.5) { 0.0 } else { 0.3 }),
            0 => sim.set_up(&target, false),
            1 => sim.set_up(&target, true),
            2 => {
                let (a, b): (Vec<&NodeName>, Vec<&NodeName>) =
                    all.iter().partition(|_| rng.chance(0.5));
                sim.partition(&[&a, &b]);
            }
            3 => sim.heal(),
            4 => {
                let b = match rng.range_inclusive(0, 3) {
                    0 => ConnectBehaviour::Refuse("connection refused".into()),
                    1 => ConnectBehaviour::Silent,
                    2 => ConnectBehaviour::Ignore,
                    _ => ConnectBehaviour::Accept,
                };
                sim.set_connect_behaviour(&target, b);
            }
            5 => {
                sim.fail_file("dns", "SERVFAIL");
                let fault = *pick(
                    rng,
                    &[
                        ApiFault::None,
                        ApiFault::Forbidden,
                        ApiFault::ServerError,
                        ApiFault::Stall,
                        ApiFault::Truncate,
                    ],
                );
                sim.http_fault(API, fault);
                let b = *pick(
                    rng,
                    &[
                        DnsBehaviour::ServFail,
                        DnsBehaviour::Silent,
                        DnsBehaviour::WrongId,
                        DnsBehaviour::Answer,
                    ],
                );
                if let Some(server) = sim.dns_server(dns_server()) {
                    server.behave(b);
                }
            }
            6 => {
                let s = subset(rng, &all);
                sim.write_file("dns", s);
                sim.add_dns_server(dns_server(), zone(rng, &all));
            }
            7 => {
                let other = pick(rng, &all).clone();
                sim.drop_link(&target, &other);
            }
            _ => sim.set_disconnect_failure(&target, rng.chance(0.5).then_some("busy")),
        }
    }
    // A throttled AWS poll waits between half and all of interval × 2^n, n counting the
    // throttled polls in a row, so a streak that began at t0 has waited at least half its
    // last full wait, less one interval: what is left is at most 2 × (now - t0 + interval),
    // and never more than two minutes. Then a stalled request (5 s) and the pages.
    throttled_since.map_or(Duration::ZERO, |t0| {
        let left = (sim.now().saturating_duration_since(t0) + sc.aws_every) * 2;
        left.min(ms(AWS_MAX_BACKOFF)) + ms(5000) + ms(50) * 16
    })
}

fn heal(sim: &mut Sim, sc: &Scenario, rng: &mut Rng) {
    let all: Vec<NodeName> = sc.nodes.iter().chain(&sc.fakes).cloned().collect();
    sim.heal();
    sim.set_datagram_loss(0.0);
    sim.http_fault(API, ApiFault::None);
    sim.http_fault(EC2, ApiFault::None);
    sim.http_fault(ECS, ApiFault::None);
    sim.service_fault(PG, ServiceFault::None);
    if let Some(server) = sim.stream_service_mut::<PostgresServer>(PG) {
        server.set_read_only(false);
    }
    for n in &all {
        sim.set_up(n, true);
        sim.set_connect_behaviour(n, ConnectBehaviour::Accept);
        sim.set_disconnect_failure(n, None);
    }
    let s = subset(rng, &all);
    sim.write_file("dns", s);
    sim.add_dns_server(dns_server(), zone(rng, &all));
}

fn run_seed(seed: u64) {
    let (mut sim, sc) = build(seed);
    let mut rng = Rng::from_seed([seed as u8; 32]);
    sim.run_for(ms(2000));
    let settle = chaos(&mut sim, &sc, &mut rng).max(sc.settle);
    heal(&mut sim, &sc, &mut rng);
    if std::env::var("MUSTER_SIM_DUMP").is_ok() {
        sim.collect_violations();
    }
    sim.expect_convergence(Some(sc.bound));
    sim.run_for((sc.bound * 3).max(settle + sc.bound));
    if let Ok(who) = std::env::var("MUSTER_SIM_DUMP") {
        for v in sim.violations() {
            eprintln!("{v}");
        }
        for (t, e) in sim.events(&who) {
            eprintln!("{t} {e}");
        }
        eprintln!("metrics: {:?}", sim.cluster(&who).map(|c| c.metrics()));
    }
    assert!(
        sim.run_until_quiescent(sc.bound),
        "seed {seed}: not quiescent {} after healing",
        sim.now()
    );
    for me in &sc.nodes {
        let c = sim.cluster(me.as_str()).expect("node");
        for (other, _) in sc.nodes.iter().zip(0..) {
            if other != me && c.is_wanted(other.as_str()) {
                assert!(
                    sim.linked(me.as_str(), other.as_str()),
                    "seed {seed}: {me} -> {other}"
                );
            }
        }
        // Other topologies may know the same nodes: postgres must know them itself.
        if let Some((pg, _)) = c.topologies().find(|(_, name)| *name == "pg") {
            let known: Vec<&NodeName> = c.discovered(pg).collect();
            for other in sc.pg_nodes.iter().filter(|o| *o != me) {
                assert!(
                    known.contains(&other),
                    "seed {seed}: {me} does not know {other} through postgres"
                );
            }
        }
        // Every instance and task is running once healed: EC2 and ECS must list them all.
        let everyone: Vec<&NodeName> = sc.nodes.iter().chain(&sc.fakes).collect();
        for (id, name) in c.topologies().filter(|(_, n)| matches!(*n, "ec2" | "ecs")) {
            let known: Vec<&NodeName> = c.discovered(id).collect();
            for other in everyone.iter().filter(|o| **o != me) {
                assert!(
                    known.contains(other),
                    "seed {seed}: {me} does not know {other} through {name}"
                );
            }
        }
        let m = c.metrics();
        assert_eq!(m.events_dropped, 0);
        assert!(muster_core::sim::table_capacity(c) <= sc.nodes.len() + sc.fakes.len());
    }
}

#[test]
fn seed_band() {
    if let Ok(one) = std::env::var("MUSTER_SIM_SEED") {
        run_seed(one.parse().expect("MUSTER_SIM_SEED is a number"));
        return;
    }
    let seeds: u64 = std::env::var("MUSTER_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(256);
    for seed in 0..seeds {
        run_seed(seed);
    }
}

/// Every event of every node (with its virtual time) and every node's counters, as text.
fn transcript(sim: &Sim, nodes: &[NodeName]) -> String {
    let mut out = String::new();
    for me in nodes {
        for (t, e) in sim.events(me.as_str()) {
            out.push_str(&format!("{t} {me} {e:?}\n"));
        }
        if let Some(c) = sim.cluster(me.as_str()) {
            out.push_str(&format!("{me} {:?}\n", c.metrics()));
        }
    }
    out
}

fn band_transcript(seed: u64) -> String {
    let (mut sim, sc) = build(seed);
    let mut rng = Rng::from_seed([seed as u8; 32]);
    sim.run_for(ms(2000));
    chaos(&mut sim, &sc, &mut rng);
    heal(&mut sim, &sc, &mut rng);
    sim.run_for(sc.bound);
    transcript(&sim, &sc.nodes)
}

/// The determinism contract: the same seed gives the same run, byte for byte — every
/// strategy of the band (static, file, DNS SRV, gossip in all three modes, Kubernetes,
/// postgres, EC2, ECS) under faults.
#[test]
fn the_band_replays_byte_for_byte() {
    let seeds: u64 = std::env::var("MUSTER_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(32, |n: u64| n.min(32));
    for seed in 0..seeds {
        let (a, b) = (band_transcript(seed), band_transcript(seed));
        assert!(!a.is_empty());
        assert!(a == b, "seed {seed}: two runs differ");
    }
    assert_ne!(band_transcript(1), band_transcript(2));
}

/// Gossip that loses nodes at one instant (`expire_after`) reports them in the same order on
/// every run with the same seed: its tables iterate in key order, never in hash order.
#[test]
fn gossip_loses_many_nodes_at_once_in_the_same_order_every_run() {
    fn run(seed: u64) -> String {
        let options = vec![
            ("heartbeat_max_ms".to_owned(), Value::Int(300)),
            ("expire_after".to_owned(), Value::Int(2000)),
        ];
        let gossip = GossipConfig::from_options(&mut Options::new("gossip", &options)).unwrap();
        let mut sim = Sim::new(seed, SimConfig::default());
        let nodes: Vec<NodeName> = (0..12).map(|i| n(&format!("n{i}@h{i}"))).collect();
        for me in &nodes {
            let gossip = gossip.clone();
            sim.add_node(me.clone(), ClusterConfig::new(), move || {
                vec![TopologySpec::new("gossip", Gossip::new(gossip.clone()))]
            });
        }
        sim.run_for(ms(3000));
        // Everyone but n0 goes silent at once.
        let (me, rest) = nodes.split_at(1);
        let rest: Vec<&NodeName> = rest.iter().collect();
        sim.partition(&[&[&me[0]], &rest]);
        sim.run_for(ms(5000));
        let lost = sim
            .events("n0@h0")
            .iter()
            .filter(|(_, e)| e.name() == "lost")
            .count();
        assert_eq!(lost, 11, "every other node is lost");
        transcript(&sim, &nodes[..1])
    }
    for seed in 0..8 {
        assert_eq!(run(seed), run(seed), "seed {seed}");
    }
}
