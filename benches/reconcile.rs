//! The reconciler's cost at 10,000 nodes: time, heap allocations and memory per node.
//!
//! Run with `cargo bench --bench reconcile`. Prints its figures; asserts nothing about speed.

#![allow(clippy::unwrap_used)] // a benchmark unwraps what it set up itself

#[path = "support/alloc.rs"]
mod alloc;

use std::hint::black_box;
use std::time::{Duration, Instant as Wall};

use muster_core::strategy::epmd::{Epmd, EpmdConfig};
use muster_core::{
    Answer, Cluster, ClusterConfig, ConnectPolicy, Input, Instant, Node, NodeName, Output, Request,
    Token,
};

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

const N: usize = 10_000;
const ROUNDS: usize = 200;

fn names() -> Vec<NodeName> {
    (0..N)
        .map(|i| {
            NodeName::new(&format!(
                "app{i}@10.{}.{}.{}",
                i >> 16,
                (i >> 8) & 255,
                i & 255
            ))
            .unwrap()
        })
        .collect()
}

fn cluster(names: &[NodeName], at: Instant) -> Cluster {
    let mut c = Cluster::new(ClusterConfig::new().max_in_flight(N), [7; 32]);
    let hosts = names.iter().cloned().map(Node::new);
    let epmd = EpmdConfig::new(hosts).reconnect_every(Duration::from_secs(1));
    let policy = ConnectPolicy::default();
    c.add_topology(at, "bench", Box::new(Epmd::new(epmd)), policy)
        .unwrap();
    c
}

/// Drains outputs, returning the connect tokens and the list token.
fn drain(c: &mut Cluster) -> (Vec<Token>, Option<Token>, usize) {
    let mut connects = Vec::new();
    let mut list = None;
    let mut events = 0;
    while let Some(o) = c.poll_output() {
        match o {
            Output::Request {
                token,
                request: Request::Connect { .. },
            } => connects.push(token),
            Output::Request {
                token,
                request: Request::ListNodes { .. },
            } => list = Some(token),
            Output::Event(_) => events += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    (connects, list, events)
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn main() {
    let names = names();
    let t0 = Instant::ZERO;

    // ---- 10,000 new nodes: discovery, the list, one reconcile that connects them all ----
    let mut new_node_runs = Vec::new();
    let mut reconcile_runs = Vec::new();
    for _ in 0..20 {
        let start = Wall::now();
        let mut c = cluster(&names, t0);
        let (_, list, _) = drain(&mut c);
        let list = list.unwrap();
        let r = Wall::now();
        c.handle_input(
            t0,
            Input::Answer {
                token: list,
                answer: Answer::Nodes(&[]),
            },
        );
        let (connects, _, _) = drain(&mut c);
        reconcile_runs.push(r.elapsed());
        new_node_runs.push(start.elapsed());
        assert_eq!(connects.len(), N);
        black_box(c);
    }

    // ---- 10,000 nodes all connected: a poll with nothing to do ----
    let mut c = cluster(&names, t0);
    let (_, list, _) = drain(&mut c);
    c.handle_input(
        t0,
        Input::Answer {
            token: list.unwrap(),
            answer: Answer::Nodes(&[]),
        },
    );
    let (connects, _, _) = drain(&mut c);
    for t in connects {
        c.handle_input(
            t0,
            Input::Answer {
                token: t,
                answer: Answer::Connected,
            },
        );
    }
    let _ = drain(&mut c);
    assert_eq!(c.members().count(), N);
    // What the connector would list: the same names, in a stable order.
    let listed: Vec<NodeName> = c.members().cloned().collect();

    let mut answer_runs = Vec::new();
    let mut poll_runs = Vec::new();
    let mut answer_allocs = 0;
    let mut poll_allocs = 0;
    let mut now = t0;
    for round in 0..ROUNDS + 10 {
        now += Duration::from_secs(1);
        let a0 = alloc::allocs();
        let p = Wall::now();
        c.handle_timeout(now);
        let Some(Output::Request {
            token,
            request: Request::ListNodes { .. },
        }) = c.poll_output()
        else {
            panic!("expected a list request")
        };
        assert!(c.poll_output().is_none());
        let a1 = alloc::allocs();
        let r = Wall::now();
        c.handle_input(
            now,
            Input::Answer {
                token,
                answer: Answer::Nodes(&listed),
            },
        );
        let nothing = c.poll_output().is_none();
        let done = Wall::now();
        let a2 = alloc::allocs();
        assert!(nothing, "nothing to do");
        if round >= 10 {
            answer_runs.push(done - r);
            poll_runs.push(done - p);
            answer_allocs += a2 - a1;
            poll_allocs += a2 - a0;
        }
    }
    assert_eq!(c.metrics().connected_nodes as usize, N);

    // ---- memory per known node ----
    let before = alloc::live();
    let mut m = cluster(&names, t0);
    let (_, list, _) = drain(&mut m);
    m.handle_input(
        t0,
        Input::Answer {
            token: list.unwrap(),
            answer: Answer::Nodes(&[]),
        },
    );
    let (connects, _, _) = drain(&mut m);
    for t in connects {
        m.handle_input(
            t0,
            Input::Answer {
                token: t,
                answer: Answer::Connected,
            },
        );
    }
    let _ = drain(&mut m);
    let with_strategy = alloc::live() - before;
    // The Epmd strategy keeps its configured host list (a `Node` per host); the rest is the
    // reconciler's table, index and timers. Names are shared, not copied.
    let strategy_part = N * std::mem::size_of::<Node>();
    let per_node_total = with_strategy as f64 / N as f64;
    let per_node_core = (with_strategy - strategy_part) as f64 / N as f64;

    println!("muster reconcile benchmark ({N} nodes, median of {ROUNDS} rounds unless said)");
    println!(
        "  poll with nothing to do, list answer -> reconcile: {}  allocations/round: {}",
        micros(median(answer_runs)),
        answer_allocs as f64 / ROUNDS as f64
    );
    println!(
        "  the whole poll (timer -> list request -> answer -> reconcile): {}  allocations/round: {}",
        micros(median(poll_runs)),
        poll_allocs as f64 / ROUNDS as f64
    );
    println!(
        "  one reconcile with {N} new nodes (list answer -> {N} connect requests drained): {} (median of 20)",
        micros(median(reconcile_runs))
    );
    println!(
        "  discovering {N} new nodes from scratch through that reconcile: {} (median of 20)",
        micros(median(new_node_runs))
    );
    println!(
        "  memory per known node (connected, excluding its name): {per_node_core:.0} B in the reconciler, {per_node_total:.0} B with the Epmd strategy's own host list"
    );
    black_box(m);
}
