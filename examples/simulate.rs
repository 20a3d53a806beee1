//! Testing with the simulator: three nodes, one crash, one partition, all in virtual time.
//! The same seed replays the same run, event for event.
//!
//! `cargo run --features sim --example simulate`

use std::time::Duration;

use muster::core::sim::{Sim, SimConfig};
use muster::core::strategy::epmd::{Epmd, EpmdConfig};
use muster::core::{ClusterConfig, Node, NodeName, TopologySpec};

fn main() {
    let names: Vec<NodeName> = ["a@h1", "b@h2", "c@h3"]
        .iter()
        .map(|n| n.parse().expect("valid"))
        .collect();
    let mut sim = Sim::new(7, SimConfig::default().symmetric(true));
    for name in &names {
        let hosts: Vec<Node> = names.iter().cloned().map(Node::new).collect();
        sim.add_node(name.clone(), ClusterConfig::new(), move || {
            vec![TopologySpec::new(
                "static",
                Epmd::new(EpmdConfig::new(hosts.clone()).reconnect_every(Duration::from_secs(5))),
            )]
        });
    }
    assert!(sim.run_until_quiescent(Duration::from_secs(60)), "formed");
    println!("{}: full mesh", sim.now());

    sim.set_up(&names[2], false);
    sim.run_for(Duration::from_secs(10));
    sim.set_up(&names[2], true);
    assert!(
        sim.run_until_quiescent(Duration::from_secs(60)),
        "healed after the crash"
    );
    println!("{}: healed after c crashed and restarted", sim.now());

    sim.partition(&[&[&names[0]], &[&names[1], &names[2]]]);
    sim.run_for(Duration::from_secs(20));
    sim.heal();
    assert!(
        sim.run_until_quiescent(Duration::from_secs(60)),
        "healed after the partition"
    );
    println!("{}: healed after the partition", sim.now());

    for (t, e) in sim.events("a@h1") {
        println!("  a@h1 {t} {e}");
    }
    let s = sim.stats();
    println!("{} events simulated in {} steps", s.events(), s.steps);
}
