//! The Kubernetes strategy's costs:
//!
//! - `parse`: decoding a generated EndpointSliceList of 5,000 endpoints (50 slices of 100, as
//!   the EndpointSlice controller cuts them): time, and the peak heap the decode adds;
//! - `poll`: one whole poll of the strategy on that list in steady state (the response read
//!   from 16 KiB chunks, decoded, named, diffed): time, and the peak heap of the poll
//!   (response body included) against the body's size; and the HTTP requests per poll over
//!   100 polls.
//! - `load`: the API server's load from one node, polling against watching, for a Service of
//!   1,000 endpoints (10 slices of 100) with one change a minute, over 30 virtual minutes:
//!   requests, and bytes both ways, per minute.
//!
//! `cargo bench --bench k8s [-- parse|poll|load]`. Prints figures; asserts nothing about speed.

#![allow(clippy::unwrap_used)] // a benchmark unwraps what it set up itself

#[path = "support/alloc.rs"]
mod alloc;

use std::hint::black_box;
use std::time::Instant as Wall;

use muster_core::config::Options;
use muster_core::proto::k8s::{self, LookupMode};
use muster_core::strategy::{Environment, Registry};
use muster_core::{
    Answer, Cluster, ClusterConfig, ConnectPolicy, Input, Instant, Output, Request, Value,
};

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

const ENDPOINTS: usize = 5000;

fn body() -> String {
    let mut items = Vec::new();
    for s in 0..ENDPOINTS / 100 {
        let eps: Vec<String> = (0..100)
            .map(|e| {
                let i = s * 100 + e;
                format!(
                    r#"{{"addresses":["10.{}.{}.{}"],"conditions":{{"ready":true,"serving":true,"terminating":false}},"hostname":"myapp-{i}","targetRef":{{"kind":"Pod","namespace":"default","name":"myapp-{i}","uid":"6b3c0f1e-2c4d-4d8a-9f0e-{i:012}"}},"nodeName":"worker-{}","zone":"zone-{}"}}"#,
                    i >> 16,
                    (i >> 8) & 255,
                    i & 255,
                    i % 40,
                    i % 3
                )
            })
            .collect();
        items.push(format!(
            r#"{{"metadata":{{"name":"myapp-{s:05}","generateName":"myapp-","namespace":"default","uid":"u{s}","resourceVersion":"{s}","labels":{{"endpointslice.kubernetes.io/managed-by":"endpointslice-controller.k8s.io","kubernetes.io/service-name":"myapp"}},"ownerReferences":[{{"apiVersion":"v1","kind":"Service","name":"myapp","uid":"x","controller":true,"blockOwnerDeletion":true}}]}},"addressType":"IPv4","endpoints":[{}],"ports":[{{"name":"epmd","protocol":"TCP","port":4369}}]}}"#,
            eps.join(",")
        ));
    }
    format!(
        r#"{{"kind":"EndpointSliceList","apiVersion":"discovery.k8s.io/v1","metadata":{{"resourceVersion":"99"}},"items":[{}]}}"#,
        items.join(",")
    )
}

fn parse() {
    let body = body();
    let runs = 30;
    let mut best = f64::MAX;
    let mut total = 0.0;
    let mut peak = 0;
    let mut allocs = 0;
    for _ in 0..runs {
        alloc::reset_peak();
        let base = alloc::live();
        let before = alloc::allocs();
        let start = Wall::now();
        let p = k8s::parse(body.as_bytes(), LookupMode::EndpointSlices, false).unwrap();
        let took = start.elapsed().as_secs_f64() * 1e3;
        allocs = alloc::allocs() - before;
        assert_eq!(p.targets.len(), ENDPOINTS);
        peak = peak.max(alloc::peak() - base);
        black_box(p);
        best = best.min(took);
        total += took;
    }
    println!(
        "decode of an EndpointSliceList of {ENDPOINTS} endpoints ({} bytes): {:.2} ms mean, {:.2} ms best of {runs}; peak heap added {} bytes ({:.2}× the body), {allocs} allocations",
        body.len(),
        total / f64::from(runs),
        best,
        peak,
        peak as f64 / body.len() as f64
    );
}

struct Rig {
    cluster: Cluster,
    now: Instant,
    requests: usize,
}

impl Rig {
    /// Runs the cluster until it waits, answering files and the API with `response`.
    fn settle(&mut self, response: &[u8]) {
        loop {
            let mut answers: Vec<(muster_core::Token, Vec<u8>)> = Vec::new();
            while let Some(out) = self.cluster.poll_output() {
                if let Output::Request { token, request } = out {
                    match request {
                        Request::ReadFile { path, .. } if path.ends_with("token") => {
                            answers.push((token, b"tok".to_vec()))
                        }
                        Request::ReadFile { .. } => answers.push((token, b"x".to_vec())),
                        Request::Exchange(_) => {
                            self.requests += 1;
                            for chunk in response.chunks(16 * 1024) {
                                answers.push((token, chunk.to_vec()));
                            }
                        }
                        _ => {}
                    }
                }
            }
            if answers.is_empty() {
                return;
            }
            for (token, data) in answers {
                self.cluster.handle_input(
                    self.now,
                    Input::Answer {
                        token,
                        answer: Answer::Data(&data),
                    },
                );
            }
        }
    }

    fn next_poll(&mut self, response: &[u8]) {
        let at = self.cluster.poll_timeout().unwrap();
        self.now = at.max(self.now);
        self.cluster.handle_timeout(self.now);
        self.settle(response);
    }
}

fn poll() {
    let body = body();
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes();
    let t: Vec<(String, Value)> = [
        ("kubernetes_node_basename", Value::str("app")),
        ("kubernetes_service_name", Value::str("myapp")),
        ("kubernetes_service_account_path", Value::str("/sa")),
        ("kubernetes_namespace", Value::str("default")),
        ("polling_interval", Value::Int(5000)),
        ("watch", Value::Bool(false)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let env = Environment::new().set("KUBERNETES_SERVICE_HOST", "10.96.0.1");
    let strategy = Registry::builtin()
        .with_env(env)
        .build("kubernetes", &mut Options::new("c", &t))
        .unwrap();
    let mut cluster = Cluster::new(
        ClusterConfig::new()
            .this_node("me@10.0.0.1".parse().unwrap())
            .discovery_only(true),
        [4; 32],
    );
    cluster
        .add_topology(Instant::ZERO, "k8s", strategy, ConnectPolicy::default())
        .unwrap();
    let mut rig = Rig {
        cluster,
        now: Instant::ZERO,
        requests: 0,
    };
    // The first poll discovers every node; measure the polls after it.
    rig.settle(&response);
    assert_eq!(rig.cluster.metrics().discovered, ENDPOINTS as u64);
    let polls: u32 = 100;
    let mut peak = 0;
    let start = Wall::now();
    for _ in 0..polls {
        alloc::reset_peak();
        let base = alloc::live();
        rig.next_poll(&response);
        peak = peak.max(alloc::peak() - base);
    }
    let took = start.elapsed().as_secs_f64() * 1e3 / f64::from(polls);
    let m = rig.cluster.metrics();
    assert_eq!(m.rounds, u64::from(polls) + 1);
    assert_eq!(m.discovery_failed, 0);
    println!(
        "a whole steady-state poll of {ENDPOINTS} endpoints ({} bytes): {took:.2} ms; peak heap of the poll {} bytes ({:.2}× the body, which it holds)",
        body.len(),
        peak,
        peak as f64 / body.len() as f64
    );
    println!(
        "HTTP requests: {} in {} polls ({} per poll)",
        rig.requests,
        polls + 1,
        rig.requests as f64 / f64::from(polls + 1)
    );
}

/// A Kubernetes API of one Service, 1,000 endpoints in 10 slices, for `load`.
struct Api {
    version: u64,
    ready: Vec<Vec<bool>>,
    /// Open watches: token, and when the server ends each (its timeoutSeconds).
    watches: Vec<(muster_core::Token, Instant)>,
    requests: u64,
    bytes: u64,
}

impl Api {
    fn slice(&self, s: usize) -> String {
        let eps: Vec<String> = self.ready[s]
            .iter()
            .enumerate()
            .map(|(e, ready)| {
                let i = s * 100 + e;
                format!(
                    r#"{{"addresses":["10.1.{}.{}"],"conditions":{{"ready":{ready},"serving":{ready},"terminating":false}},"hostname":"myapp-{i}","targetRef":{{"kind":"Pod","namespace":"default","name":"myapp-{i}","uid":"6b3c0f1e-2c4d-4d8a-9f0e-{i:012}"}},"nodeName":"worker-{}","zone":"zone-{}"}}"#,
                    i >> 8,
                    i & 255,
                    i % 40,
                    i % 3
                )
            })
            .collect();
        format!(
            r#"{{"metadata":{{"name":"myapp-{s:05}","generateName":"myapp-","namespace":"default","uid":"u{s}","resourceVersion":"{}","labels":{{"endpointslice.kubernetes.io/managed-by":"endpointslice-controller.k8s.io","kubernetes.io/service-name":"myapp"}}}},"addressType":"IPv4","endpoints":[{}],"ports":[{{"name":"epmd","protocol":"TCP","port":4369}}]}}"#,
            self.version,
            eps.join(",")
        )
    }

    fn list(&self) -> Vec<u8> {
        let items: Vec<String> = (0..self.ready.len()).map(|s| self.slice(s)).collect();
        let body = format!(
            r#"{{"kind":"EndpointSliceList","apiVersion":"discovery.k8s.io/v1","metadata":{{"resourceVersion":"{}"}},"items":[{}]}}"#,
            self.version,
            items.join(",")
        );
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }
}

fn chunk(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

/// One node against [`Api`] for 30 virtual minutes: (requests, bytes) per minute.
fn load_of(watch: bool) -> (f64, f64, u64) {
    let t: Vec<(String, Value)> = [
        ("kubernetes_node_basename", Value::str("app")),
        ("kubernetes_service_name", Value::str("myapp")),
        ("kubernetes_service_account_path", Value::str("/sa")),
        ("kubernetes_namespace", Value::str("default")),
        ("watch", Value::Bool(watch)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let env = Environment::new().set("KUBERNETES_SERVICE_HOST", "10.96.0.1");
    let strategy = Registry::builtin()
        .with_env(env)
        .build("kubernetes", &mut Options::new("c", &t))
        .unwrap();
    let mut cluster = Cluster::new(
        ClusterConfig::new()
            .this_node("me@10.0.0.1".parse().unwrap())
            .discovery_only(true),
        [4; 32],
    );
    let mut now = Instant::ZERO;
    cluster
        .add_topology(now, "k8s", strategy, ConnectPolicy::default())
        .unwrap();
    let mut api = Api {
        version: 1,
        ready: vec![vec![true; 100]; 10],
        watches: Vec::new(),
        requests: 0,
        bytes: 0,
    };
    let minute = std::time::Duration::from_secs(60);
    let end = Instant::ZERO + 30 * minute;
    let mut next_change = Instant::ZERO + minute / 2;
    let mut changes = 0u64;
    loop {
        // Answer everything the cluster asks, until it waits.
        loop {
            let mut answers: Vec<(muster_core::Token, Vec<u8>, bool)> = Vec::new();
            while let Some(out) = cluster.poll_output() {
                let Output::Request { token, request } = out else {
                    continue;
                };
                match request {
                    Request::ReadFile { .. } => answers.push((token, b"tok".to_vec(), false)),
                    Request::Exchange(x) => {
                        api.requests += 1;
                        api.bytes += x.send.len() as u64;
                        let line = String::from_utf8_lossy(&x.send).into_owned();
                        if line.contains("watch=1") {
                            let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
                            api.bytes += head.len() as u64;
                            answers.push((token, head.as_bytes().to_vec(), false));
                            api.watches
                                .push((token, now + std::time::Duration::from_secs(300)));
                        } else {
                            let list = api.list();
                            api.bytes += list.len() as u64;
                            answers.push((token, list, true));
                        }
                    }
                    _ => {}
                }
            }
            if answers.is_empty() {
                break;
            }
            for (token, data, close) in answers {
                cluster.handle_input(
                    now,
                    Input::Answer {
                        token,
                        answer: Answer::Data(&data),
                    },
                );
                if close {
                    cluster.handle_input(
                        now,
                        Input::Answer {
                            token,
                            answer: Answer::Closed,
                        },
                    );
                }
            }
        }
        let wake = [
            cluster.poll_timeout(),
            Some(next_change),
            api.watches.iter().map(|w| w.1).min(),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap();
        if wake >= end {
            break;
        }
        now = wake.max(now);
        if now >= next_change {
            // Another pod goes unready: one slice changes.
            let (s, e) = ((changes % 10) as usize, (changes / 10 % 100) as usize);
            api.ready[s][e] = !api.ready[s][e];
            api.version += 1;
            changes += 1;
            next_change = now + minute;
            let event = format!(r#"{{"type":"MODIFIED","object":{}}}"#, api.slice(s)) + "\n";
            for (token, _) in api.watches.clone() {
                let data = chunk(event.as_bytes());
                api.bytes += data.len() as u64;
                cluster.handle_input(
                    now,
                    Input::Answer {
                        token,
                        answer: Answer::Data(&data),
                    },
                );
            }
        }
        let (ended, open): (Vec<_>, Vec<_>) = api.watches.iter().partition(|w| w.1 <= now);
        api.watches = open;
        for (token, _) in ended {
            api.bytes += 5;
            cluster.handle_input(
                now,
                Input::Answer {
                    token,
                    answer: Answer::Data(b"0\r\n\r\n"),
                },
            );
            cluster.handle_input(
                now,
                Input::Answer {
                    token,
                    answer: Answer::Closed,
                },
            );
        }
        cluster.handle_timeout(now);
    }
    let m = cluster.metrics();
    assert_eq!(m.discovery_failed, 0);
    // Every change was seen: each took another pod out.
    assert_eq!(m.lost, changes);
    let minutes = 30.0;
    (
        api.requests as f64 / minutes,
        api.bytes as f64 / minutes,
        changes,
    )
}

fn load() {
    let (pr, pb, changes) = load_of(false);
    let (wr, wb, _) = load_of(true);
    println!(
        "API load from one node, 1,000 endpoints, {changes} changes in 30 min: polling every 5 s {pr:.1} requests and {:.0} KiB a minute; watching {wr:.2} requests and {:.1} KiB a minute ({:.0}× fewer requests, {:.0}× fewer bytes)",
        pb / 1024.0,
        wb / 1024.0,
        pr / wr,
        pb / wb
    );
}

fn main() {
    let which: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let want = |name: &str| which.is_empty() || which.iter().any(|w| w == name);
    if want("parse") {
        parse();
    }
    if want("poll") {
        poll();
    }
    if want("load") {
        load();
    }
}
