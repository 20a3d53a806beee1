//! `muster simulate`: N nodes of the user's own configuration in the deterministic
//! simulator — virtual time, a seeded network, simulated discovery services — with the same
//! event lines as `muster run` and a summary of how the cluster formed and healed.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use muster::config::{ConfigFile, ConnectorConfig};
use muster::core::sim::{
    DnsRecord, DnsServer, Ec2Api, EcsApi, EtcdServer, KubernetesApi, PostgresServer,
    RancherMetadata, Sim, SimConfig,
};
use muster::core::strategy::etcd::EtcdEndpoint;
use muster::core::strategy::{Environment, Registry};
use muster::core::{ClusterConfig, Instant, NodeName, Value};

use super::output::{Format, event_line};

/// What `muster simulate` was asked: its command-line arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct SimulateOptions {
    /// The configuration file
    #[arg(short, long, value_name = "FILE")]
    pub config: String,
    /// Nodes to simulate
    #[arg(long, default_value_t = 5, value_parser = parse_nodes)]
    pub nodes: usize,
    /// The seed of every random choice
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Virtual time to run: 500ms, 30s, 10m, 1h
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Probability that a datagram is lost (0 to 1)
    #[arg(long, default_value_t = 0.0, value_parser = parse_probability)]
    pub loss: f64,
    /// Split the nodes in halves at AT for FOR (e.g. 20s:10s)
    #[arg(long, value_name = "AT:FOR", value_parser = parse_window)]
    pub partition: Option<(Duration, Duration)>,
    /// Take the last node down at AT for FOR
    #[arg(long, value_name = "AT:FOR", value_parser = parse_window)]
    pub crash: Option<(Duration, Duration)>,
    /// text or json
    #[arg(long, default_value = "text")]
    pub format: Format,
}

fn parse_nodes(s: &str) -> Result<usize, String> {
    s.parse::<usize>()
        .ok()
        .filter(|n| (2..=1000).contains(n))
        .ok_or_else(|| format!("{s:?} is not a number of nodes from 2 to 1000"))
}

fn parse_probability(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .filter(|p| (0.0..=1.0).contains(p))
        .ok_or_else(|| format!("{s:?} is not a probability (0 to 1)"))
}

/// Parses `500ms`, `30s`, `10m`, `1h`, or a number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration (such as 500ms, 30s, 10m, 1h)");
    let (number, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let v: f64 = number.parse().map_err(|_| bad())?;
    let secs = match unit {
        "ms" => v / 1000.0,
        "s" => v,
        "m" => v * 60.0,
        "h" => v * 3600.0,
        _ => return Err(bad()),
    };
    if !(0.0..=365.0 * 86400.0).contains(&secs) {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses `AT:FOR`, two durations.
pub fn parse_window(s: &str) -> Result<(Duration, Duration), String> {
    let (at, len) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?} is not AT:FOR (such as 20s:10s)"))?;
    Ok((parse_duration(at)?, parse_duration(len)?))
}

/// What a run found, for the summary.
#[derive(Debug, Default)]
struct Tally {
    formed: Option<Duration>,
    heals: Vec<(&'static str, Duration, Option<Duration>)>,
}

fn text(v: &Value) -> Option<&str> {
    match v {
        Value::Str(s) => Some(s),
        _ => None,
    }
}

fn field<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut v = v;
    for key in path {
        let Value::Table(t) = v else { return None };
        v = &t.iter().find(|(k, _)| k == key)?.1;
    }
    Some(v)
}

/// The simulated nodes' names: the static host list when a topology has one, else
/// `[node] name` with a distinct host each (the next addresses after an IPv4 host, or
/// `host-1`, `host-2`, … after a name).
fn names(file: &ConfigFile, n: usize) -> Result<Vec<NodeName>, String> {
    for t in &file.topologies {
        let d = t.describe();
        if text(field(&d, &["strategy"]).unwrap_or(&Value::Bool(false))) == Some("epmd")
            && let Some(Value::List(hosts)) = field(&d, &["config", "hosts"])
        {
            let mut out = Vec::new();
            for h in hosts.iter().filter_map(text) {
                out.push(h.parse().map_err(|e| format!("hosts: {h}: {e}"))?);
            }
            if let Some(me) = &file.cluster.this_node
                && !out.contains(me)
            {
                out.insert(0, me.clone());
            }
            return Ok(out);
        }
    }
    let me = file
        .cluster
        .this_node
        .clone()
        .ok_or("the configuration needs [node] name: the simulated nodes are named after it")?;
    let (name, host) = (me.name(), me.host());
    (0..n)
        .map(|i| {
            let host = match host.parse::<Ipv4Addr>() {
                Ok(ip) => {
                    let v = u32::from(ip)
                        .checked_add(i as u32)
                        .ok_or("host overflows")?;
                    Ipv4Addr::from(v).to_string()
                }
                Err(_) if i == 0 => host.to_owned(),
                Err(_) => format!("{host}-{i}"),
            };
            format!("{name}@{host}")
                .parse()
                .map_err(|e| format!("{name}@{host}: {e}"))
        })
        .collect()
}

fn ipv4_of(nodes: &[NodeName], what: &str) -> Result<Vec<DnsRecord>, String> {
    nodes
        .iter()
        .map(|n| match n.host_ip() {
            Some(IpAddr::V4(ip)) => Ok(DnsRecord::A(ip)),
            Some(IpAddr::V6(ip)) => Ok(DnsRecord::Aaaa(ip)),
            None => Err(format!(
                "{what} needs node names whose host is an IP address to simulate (name the node app@10.0.0.1, say)"
            )),
        })
        .collect()
}

/// Simulates the services the topologies talk to.
fn services(sim: &mut Sim, file: &ConfigFile, nodes: &[NodeName]) -> Result<(), String> {
    let resolver = SocketAddr::from(([10, 53, 0, 53], 53));
    for t in &file.topologies {
        let d = t.describe();
        let kind = field(&d, &["strategy"]).and_then(text).unwrap_or_default();
        let get = |k: &str| field(&d, &["config", k]).and_then(text).map(str::to_owned);
        match kind {
            "gossip" | "epmd" => {}
            "kubernetes" => {
                if get("mode").as_deref().is_some_and(|m| m != "ip") {
                    return Err(format!(
                        "topology {}: only mode = \"ip\" is simulated",
                        t.name
                    ));
                }
                let master = get("kubernetes_master").unwrap_or_default();
                let sa = get("kubernetes_service_account_path").unwrap_or_default();
                let ns = get("kubernetes_namespace")
                    .filter(|n| !n.starts_with('('))
                    .unwrap_or_else(|| "default".to_owned());
                let svc = get("kubernetes_service_name")
                    .filter(|n| !n.starts_with('('))
                    .unwrap_or_else(|| "app".to_owned());
                sim.write_file(&format!("{sa}/token"), "simulated");
                sim.write_file(&format!("{sa}/ca.crt"), "simulated");
                sim.write_file(&format!("{sa}/namespace"), ns.clone());
                let at = match master.rsplit_once(':') {
                    Some(_) => master,
                    None => format!("{master}:443"),
                };
                sim.serve_http(
                    &at,
                    KubernetesApi::new(&ns, &svc).pods(nodes.iter().cloned()),
                );
            }
            "dns_poll" | "kubernetes_dns" => {
                let mut server = DnsServer::new();
                server.wildcard(ipv4_of(nodes, kind)?);
                let mut servers: Vec<SocketAddr> = match field(&d, &["config", "nameservers"]) {
                    Some(Value::List(l)) => l
                        .iter()
                        .filter_map(text)
                        .filter_map(|s| s.parse().ok())
                        .collect(),
                    _ => Vec::new(),
                };
                if servers.is_empty() {
                    let conf = get("resolv_conf").unwrap_or_else(|| "/etc/resolv.conf".into());
                    sim.write_file(&conf, format!("nameserver {}\n", resolver.ip()));
                    servers.push(resolver);
                }
                for s in servers {
                    sim.add_dns_server(s, server.clone());
                }
            }
            "rancher" => {
                let url = get("metadata_url").unwrap_or_default();
                let rest = url.strip_prefix("http://").unwrap_or(&url);
                let authority = rest.split('/').next().unwrap_or_default();
                let at = match authority.rsplit_once(':') {
                    Some(_) => authority.to_owned(),
                    None => format!("{authority}:80"),
                };
                sim.serve_http(&at, RancherMetadata::new(nodes.iter().cloned()));
            }
            "postgres" => {
                // The simulated server has no TLS (and trusts every login).
                if matches!(get("sslmode").as_deref(), Some("require" | "verify-full")) {
                    return Err(format!(
                        "topology {}: the simulated PostgreSQL server has no TLS; simulate with \
                         sslmode = \"disable\" or \"prefer\"",
                        t.name
                    ));
                }
                let host = get("hostname").unwrap_or_else(|| "localhost".into());
                let port = match field(&d, &["config", "port"]) {
                    Some(Value::Int(p)) => u16::try_from(*p).unwrap_or(5432),
                    _ => 5432,
                };
                // Named as the strategy names its endpoint: an address, or host:port.
                let at = match host.parse::<IpAddr>() {
                    Ok(ip) => SocketAddr::new(ip, port).to_string(),
                    Err(_) => format!("{host}:{port}"),
                };
                // Topologies naming one server share it.
                if sim.stream_service::<PostgresServer>(&at).is_none() {
                    sim.serve_stream(&at, PostgresServer::new());
                }
            }
            "etcd" => {
                // One simulated member, at the first endpoint, without TLS; the password is
                // not in the description, so no authentication either.
                if get("#username").is_some() {
                    return Err(format!(
                        "topology {}: the simulated etcd has no authentication; simulate \
                         without username and password",
                        t.name
                    ));
                }
                let first = match field(&d, &["config", "endpoints"]) {
                    Some(Value::List(l)) => l.first().and_then(text).and_then(EtcdEndpoint::parse),
                    _ => None,
                };
                let Some(e) = first else {
                    return Err(format!("topology {}: no etcd endpoint", t.name));
                };
                if e.tls {
                    return Err(format!(
                        "topology {}: the simulated etcd has no TLS; simulate with an \
                         http:// endpoint",
                        t.name
                    ));
                }
                // Named as the strategy names its endpoint: an address, or host:port.
                let at = match e.host.parse::<IpAddr>() {
                    Ok(ip) => SocketAddr::new(ip, e.port).to_string(),
                    Err(_) => format!("{}:{}", e.host.trim_end_matches('.'), e.port),
                };
                // Topologies naming one member share it.
                if sim.stream_service::<EtcdServer>(&at).is_none() {
                    sim.serve_stream(&at, EtcdServer::new());
                }
            }
            "ec2" | "ecs" => {
                let at = aws_endpoint(&t.name, kind, &d)?;
                let first = |k: &str| match field(&d, &["config", k]) {
                    Some(Value::List(l)) => l.first().and_then(text).map(str::to_owned),
                    Some(v) => text(v).map(str::to_owned),
                    None => None,
                };
                let keys = std::env::var("AWS_ACCESS_KEY_ID")
                    .ok()
                    .zip(std::env::var("AWS_SECRET_ACCESS_KEY").ok());
                if kind == "ec2" {
                    let (Some(tag), Some(value)) = (get("ec2_tagname"), first("ec2_tagvalue"))
                    else {
                        return Err(format!(
                            "topology {}: the simulation has no instance metadata service to \
                             read this instance's tag from; set ec2_tagvalue",
                            t.name
                        ));
                    };
                    if get("ip_type").as_deref() == Some("public") {
                        return Err(format!(
                            "topology {}: simulated instances have private addresses only; \
                             simulate with ip_type = \"private\"",
                            t.name
                        ));
                    }
                    let mut api = Ec2Api::new(&tag, &value).instances(nodes.iter().cloned());
                    if let Some((id, secret)) = &keys {
                        api = api.credentials(id, secret);
                    }
                    sim.serve_http(&at, api);
                } else {
                    let cluster = get("cluster").unwrap_or_default();
                    let service = first("service_name").unwrap_or_else(|| "app".into());
                    let mut api = EcsApi::new(&cluster, &service).tasks(nodes.iter().cloned());
                    if let Some((id, secret)) = &keys {
                        api = api.credentials(id, secret);
                    }
                    sim.serve_http(&at, api);
                }
            }
            other => {
                return Err(format!(
                    "topology {}: strategy {other} cannot be simulated yet (gossip, epmd, \
                     kubernetes, dns_poll, kubernetes_dns, rancher, postgres, etcd, ec2 and \
                     ecs can)",
                    t.name
                ));
            }
        }
    }
    Ok(())
}

/// Where an `ec2` or `ecs` topology's simulated API is served: its `http://` endpoint_url,
/// as `host:port`. The simulation has no TLS, no instance metadata service and no container
/// credentials endpoint, so the endpoint, the region and the keys must be given.
fn aws_endpoint(name: &str, kind: &str, d: &Value) -> Result<String, String> {
    let get = |k: &str| field(d, &["config", k]).and_then(text);
    let Some(rest) = get("endpoint_url").and_then(|u| u.strip_prefix("http://")) else {
        return Err(format!(
            "topology {name}: the simulated {kind} API has no TLS; simulate with an http:// \
             endpoint_url (such as http://10.0.0.250:5000)"
        ));
    };
    if get("#region").is_some_and(|r| r.starts_with("read from")) {
        return Err(format!(
            "topology {name}: the simulation has no instance metadata service; set region (or \
             AWS_REGION)"
        ));
    }
    if !get("#credentials").is_some_and(|c| c.starts_with("from the environment")) {
        return Err(format!(
            "topology {name}: the simulation has no metadata service or container credentials \
             endpoint; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        ));
    }
    let authority = rest.trim_end_matches('/');
    Ok(match authority.rsplit_once(':') {
        Some(_) => authority.to_owned(),
        None => format!("{authority}:80"),
    })
}

fn meshed(sim: &Sim, nodes: &[NodeName], up: &[bool]) -> bool {
    nodes.iter().zip(up).filter(|(_, u)| **u).all(|(a, _)| {
        nodes
            .iter()
            .zip(up)
            .filter(|(_, u)| **u)
            .all(|(b, _)| a == b || sim.linked(a.as_str(), b.as_str()))
    })
}

/// Runs the simulation and prints it; the exit status (1 when an invariant was violated).
pub fn run(opts: &SimulateOptions) -> Result<u8, String> {
    let source = std::fs::read_to_string(&opts.config)
        .map_err(|e| format!("{}: cannot read: {e}", opts.config))?;
    let env = Environment::from_vars(std::env::vars());
    let registry = Registry::builtin().with_env(env);
    let file =
        ConfigFile::parse_with(&opts.config, &source, &registry).map_err(|e| e.to_string())?;
    let nodes = names(&file, opts.nodes)?;
    let mut config = SimConfig::default()
        .datagram_loss(opts.loss)
        .record_events(true);
    let mut erlang = None;
    match &file.connector {
        ConnectorConfig::Erlang(e) => {
            config = config.epmd_port(e.epmd_port);
            erlang = Some(e.clone());
        }
        ConnectorConfig::Tcp { .. } => {}
        _ => {
            return Err(
                "connector \"none\" discovers only: there is no cluster to form; simulate with \
                 connector \"erlang\" or \"tcp\""
                    .into(),
            );
        }
    }
    let mut sim = Sim::new(opts.seed, config);
    sim.collect_violations();
    services(&mut sim, &file, &nodes)?;
    for me in &nodes {
        let mut cluster: ClusterConfig = file.cluster.clone();
        if let Some(e) = &erlang {
            cluster = cluster.erlang(
                muster::core::dist::DistConfig::new(me.clone(), e.cookie.clone())
                    .epmd_port(e.epmd_port)
                    .hidden(e.hidden)
                    .tick_time(e.tick_time)
                    .max_handshakes(e.max_handshakes),
            );
        }
        let (path, text, registry) = (opts.config.clone(), source.clone(), registry.clone());
        sim.add_node(me.clone(), cluster, move || {
            // Parsed once above: it parses again the same way.
            ConfigFile::parse_with(&path, &text, &registry)
                .map(|f| f.topologies)
                .unwrap_or_default()
        });
    }
    let mut up = vec![true; nodes.len()];
    let mut tally = Tally::default();
    let slice = Duration::from_millis(100);
    let end = Instant::ZERO + opts.duration;
    let half = nodes.len() / 2;
    let mut pending: Vec<(&'static str, Duration)> = Vec::new();
    let last = nodes.len() - 1;
    while sim.now() < end {
        let t = sim.now().since_origin();
        if let Some((at, len)) = opts.partition {
            if t >= at && t < at + slice {
                let (a, b) = nodes.split_at(half);
                let a: Vec<&NodeName> = a.iter().collect();
                let b: Vec<&NodeName> = b.iter().collect();
                sim.partition(&[&a, &b]);
            }
            if t >= at + len && t < at + len + slice {
                sim.heal();
                pending.push(("partition", t));
            }
        }
        if let Some((at, len)) = opts.crash {
            if t >= at && t < at + slice {
                sim.set_up(&nodes[last], false);
                up[last] = false;
            }
            if t >= at + len && t < at + len + slice {
                sim.set_up(&nodes[last], true);
                up[last] = true;
                pending.push(("crash", t));
            }
        }
        sim.run_for(slice);
        let now = sim.now().since_origin();
        if meshed(&sim, &nodes, &up) {
            if tally.formed.is_none() {
                tally.formed = Some(now);
            }
            for (what, since) in pending.drain(..) {
                tally
                    .heals
                    .push((what, since, Some(now.saturating_sub(since))));
            }
        }
    }
    for (what, since) in pending {
        tally.heals.push((what, since, None));
    }
    print_events(&sim, &nodes, opts.format);
    print_summary(&sim, &nodes, opts, &tally);
    Ok(u8::from(!sim.violations().is_empty()))
}

fn print_events(sim: &Sim, nodes: &[NodeName], format: Format) {
    let mut all: Vec<(Instant, usize, &muster::core::Event)> = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        all.extend(sim.events(n.as_str()).iter().map(|(t, e)| (*t, i, e)));
    }
    // Stable: events of one instant keep each node's order, nodes in name order.
    all.sort_by_key(|(t, i, _)| (*t, *i));
    let mut out = String::new();
    for (t, i, e) in all {
        out.push_str(&event_line(
            e,
            format,
            t.since_origin(),
            Some(nodes[i].as_str()),
        ));
        out.push('\n');
    }
    print!("{out}");
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

fn print_summary(sim: &Sim, nodes: &[NodeName], opts: &SimulateOptions, tally: &Tally) {
    let count = |kind: &str| -> usize {
        nodes
            .iter()
            .map(|n| {
                sim.events(n.as_str())
                    .iter()
                    .filter(|(_, e)| e.name() == kind)
                    .count()
            })
            .sum()
    };
    let (connects, failures, disconnects) = (
        count("connected"),
        count("connect_failed"),
        count("disconnected"),
    );
    let packets = sim.stats().datagrams;
    let violations: Vec<String> = sim.violations().iter().map(|v| v.to_string()).collect();
    match opts.format {
        Format::Json => {
            let heals: Vec<serde_json::Value> = tally
                .heals
                .iter()
                .map(|(what, at, took)| {
                    serde_json::json!({"fault": what, "ended_ms": ms(*at), "healed_in_ms": took.map(ms)})
                })
                .collect();
            let v = serde_json::json!({"summary": {
                "seed": opts.seed,
                "nodes": nodes.len(),
                "virtual_ms": ms(opts.duration),
                "full_mesh_ms": tally.formed.map(ms),
                "heals": heals,
                "connects": connects,
                "connect_failures": failures,
                "disconnects": disconnects,
                "datagrams": packets,
                "violations": violations,
            }});
            println!("{v}");
        }
        Format::Text => {
            let mut s = String::new();
            let _ = writeln!(
                s,
                "summary: {} nodes, seed {}, {:.1}s of virtual time",
                nodes.len(),
                opts.seed,
                opts.duration.as_secs_f64()
            );
            let _ = match tally.formed {
                Some(d) => writeln!(s, "  full mesh after {:.3}s", d.as_secs_f64()),
                None => writeln!(s, "  never a full mesh"),
            };
            for (what, at, took) in &tally.heals {
                let _ = match took {
                    Some(d) => writeln!(
                        s,
                        "  healed {:.3}s after the {what} ended at {:.3}s",
                        d.as_secs_f64(),
                        at.as_secs_f64()
                    ),
                    None => writeln!(
                        s,
                        "  not healed after the {what} that ended at {:.3}s",
                        at.as_secs_f64()
                    ),
                };
            }
            let _ = writeln!(
                s,
                "  {connects} connects, {failures} connect failures, {disconnects} disconnects, {packets} datagrams"
            );
            if violations.is_empty() {
                let _ = writeln!(s, "  no invariant violated");
            } else {
                for v in &violations {
                    let _ = writeln!(s, "  VIOLATED: {v}");
                }
                let _ = writeln!(s, "  replay with --seed {}", opts.seed);
            }
            print!("{s}");
        }
    }
}
