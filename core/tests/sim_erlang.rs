//! Clusters that are Erlang nodes, inside the simulator: each registers with its host's
//! simulated EPMD (the core's own), finds its peers through theirs, and links over simulated
//! streams whose bytes arrive split at random points — forming, partitioned, healed, and
//! restarted, replayed byte for byte.
#![allow(clippy::unwrap_used)] // tests unwrap what they set up themselves

mod common;

use common::*;
use muster_core::dist::DistConfig;
use muster_core::sim::{Sim, SimConfig};
use muster_core::{ClusterConfig, NodeName};

fn names(k: usize) -> Vec<NodeName> {
    (0..k).map(|i| n(&format!("n{i}@h{i}"))).collect()
}

fn erlang_cluster(seed: u64, k: usize) -> (Sim, Vec<NodeName>) {
    let all = names(k);
    let mut sim = Sim::new(seed, SimConfig::default());
    for me in &all {
        let hosts: Vec<String> = all.iter().map(|n| n.to_string()).collect();
        let config = ClusterConfig::new().erlang(DistConfig::new(me.clone(), "cookie"));
        sim.add_node(me.clone(), config, move || {
            let h: Vec<&str> = hosts.iter().map(String::as_str).collect();
            vec![epmd("static", &h, Some(1000), quick())]
        });
    }
    (sim, all)
}

fn meshed(sim: &Sim, all: &[NodeName]) -> bool {
    all.iter().all(|a| {
        all.iter()
            .all(|b| a == b || sim.linked(a.as_str(), b.as_str()))
    })
}

#[test]
fn erlang_nodes_form_a_full_mesh_through_simulated_epmd_and_streams() {
    for seed in 0..64 {
        let (mut sim, all) = erlang_cluster(seed, 5);
        assert!(
            sim.run_until_quiescent(ms(30_000)),
            "seed {seed}: not meshed by {}",
            sim.now()
        );
        assert!(meshed(&sim, &all), "seed {seed}");
        for me in &all {
            let events = sim.events(me.as_str());
            assert_eq!(
                count(events, "connected"),
                4,
                "seed {seed} {me}: {events:?}"
            );
            assert_eq!(count(events, "disconnected"), 0, "seed {seed} {me}");
            // Started together, a node may look a peer up before the peer registered: that
            // is the one failure allowed, and no race of links is one.
            let failed: Vec<String> = events
                .iter()
                .filter(|(_, e)| e.name() == "connect_failed")
                .map(|(_, e)| e.to_string())
                .filter(|e| !e.contains("is not registered with EPMD"))
                .collect();
            assert!(failed.is_empty(), "seed {seed} {me}: {failed:?}");
            assert_eq!(count(events, "rejected"), 0, "seed {seed} {me}: {events:?}");
        }
    }
}

#[test]
fn a_partition_drops_the_links_across_it_and_healing_restores_them() {
    let (mut sim, all) = erlang_cluster(3, 4);
    assert!(sim.run_until_quiescent(ms(30_000)));
    let (a, b) = all.split_at(2);
    let a: Vec<&NodeName> = a.iter().collect();
    let b: Vec<&NodeName> = b.iter().collect();
    sim.partition(&[&a, &b]);
    sim.run_for(ms(2000));
    assert!(!sim.linked("n0@h0", "n2@h2"));
    assert!(sim.linked("n0@h0", "n1@h1"), "links inside a side stay");
    assert!(count(sim.events("n0@h0"), "disconnected") >= 2);
    sim.heal();
    assert!(sim.run_until_quiescent(ms(30_000)));
    assert!(meshed(&sim, &all));
}

#[test]
fn a_restarted_node_registers_again_and_rejoins() {
    let (mut sim, all) = erlang_cluster(4, 4);
    assert!(sim.run_until_quiescent(ms(30_000)));
    sim.set_up(&all[3], false);
    sim.run_for(ms(2000));
    assert!(!sim.linked("n0@h0", "n3@h3"));
    sim.set_up(&all[3], true);
    assert!(sim.run_until_quiescent(ms(30_000)));
    assert!(meshed(&sim, &all));
    assert_eq!(
        times(sim.events("n0@h0"), "connected", "n3@h3").len(),
        2,
        "connected, and again after the restart"
    );
}

#[test]
fn an_erlang_cluster_replays_byte_for_byte() {
    fn run(seed: u64) -> String {
        let (mut sim, all) = erlang_cluster(seed, 4);
        sim.run_for(ms(5000));
        sim.partition(&[&[&all[0]]]);
        sim.run_for(ms(3000));
        sim.heal();
        sim.run_for(ms(10_000));
        let mut out = String::new();
        for me in &all {
            for (t, e) in sim.events(me.as_str()) {
                out.push_str(&format!("{t} {me} {e:?}\n"));
            }
            out.push_str(&format!(
                "{:?}\n",
                sim.cluster(me.as_str()).unwrap().metrics()
            ));
        }
        out
    }
    for seed in 0..8 {
        assert_eq!(run(seed), run(seed), "seed {seed}");
    }
}

/// Gossip announces an Erlang node only once EPMD has registered it: a peer that heard it
/// earlier would look it up, fail ("not registered") and back off — and that holds for its
/// answers to newcomers too. Started together, eight (and forty) nodes mesh with no failed
/// connect at all.
#[test]
fn gossip_announces_an_erlang_node_only_once_it_is_registered() {
    use muster_core::TopologySpec;
    use muster_core::strategy::gossip::{Gossip, GossipConfig};
    // Many nodes hear many newcomers before they are registered: their answers must wait too.
    for (seed, k) in (0..16).map(|s| (s, 8)).chain((16..20).map(|s| (s, 40))) {
        let all = names(k);
        let mut sim = Sim::new(seed, SimConfig::default());
        for me in &all {
            let config = ClusterConfig::new().erlang(DistConfig::new(me.clone(), "cookie"));
            sim.add_node(me.clone(), config, || {
                let g = Gossip::new(GossipConfig::default());
                vec![TopologySpec::new("gossip", g).policy(quick())]
            });
        }
        sim.run_for(ms(10_000));
        assert!(meshed(&sim, &all), "seed {seed}");
        for me in &all {
            let events = sim.events(me.as_str());
            assert_eq!(
                count(events, "connect_failed"),
                0,
                "seed {seed} {me}: {events:?}"
            );
        }
    }
}
