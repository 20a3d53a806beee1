//! Simulator speed: 1,000 nodes, each with a static topology of ten peers, under churn.
//!
//! Run with `cargo bench --bench sim`. Prints virtual events per wall-clock second; asserts
//! nothing about speed.

#![allow(clippy::unwrap_used)] // a benchmark unwraps what it set up itself

use std::time::{Duration, Instant as Wall};

use muster_core::sim::{Sim, SimConfig};
use muster_core::strategy::epmd::{Epmd, EpmdConfig};
use muster_core::{ClusterConfig, Node, NodeName, Rng, TopologySpec};

const NODES: usize = 1000;
const PEERS: usize = 10;
const VIRTUAL: Duration = Duration::from_secs(300);

fn main() {
    let names: Vec<NodeName> = (0..NODES)
        .map(|i| NodeName::new(&format!("n{i}@10.0.{}.{}", i / 256, i % 256)).unwrap())
        .collect();
    let mut rng = Rng::from_seed([1; 32]);
    let config = SimConfig::default().symmetric(true).record_events(false);
    let mut sim = Sim::new(1, config);
    for name in &names {
        let peers: Vec<Node> = (0..PEERS)
            .map(|_| Node::new(names[rng.range_inclusive(0, NODES as u64 - 1) as usize].clone()))
            .collect();
        sim.add_node(name.clone(), ClusterConfig::new(), move || {
            let epmd = EpmdConfig::new(peers.clone()).reconnect_every(Duration::from_secs(5));
            vec![TopologySpec::new("static", Epmd::new(epmd))]
        });
    }
    let wall = Wall::now();
    let mut down: Vec<NodeName> = Vec::new();
    let end = sim.now() + VIRTUAL;
    while sim.now() < end {
        sim.run_for(Duration::from_secs(2));
        // Churn: one node goes down, and the one that went down before comes back.
        if let Some(n) = down.pop() {
            sim.set_up(&n, true);
        }
        let n = names[rng.range_inclusive(0, NODES as u64 - 1) as usize].clone();
        sim.set_up(&n, false);
        down.push(n);
    }
    let took = wall.elapsed();
    let stats = sim.stats();
    println!(
        "muster simulator benchmark: {NODES} nodes x {PEERS} static peers, churn every 2 s, {} s virtual",
        VIRTUAL.as_secs()
    );
    println!(
        "  {} virtual events ({} inputs, {} timeouts, {} outputs) in {:.2} s wall",
        stats.events(),
        stats.inputs,
        stats.timeouts,
        stats.outputs,
        took.as_secs_f64()
    );
    println!(
        "  {:.0} virtual events per wall-clock second; virtual time ran {:.0}x faster than real time",
        stats.events() as f64 / took.as_secs_f64(),
        VIRTUAL.as_secs_f64() / took.as_secs_f64()
    );
}
