//! The reconciler's semantics (DESIGN.md §3), each one a scenario in the simulator.
#![allow(clippy::unwrap_used)] // tests unwrap what they set up themselves

mod common;

use common::*;
use muster_core::sim::{ConnectBehaviour, Sim, SimConfig};
use muster_core::{ClusterConfig, Event, Instant};

fn node_with(sim: &mut Sim, me: &str, f: impl FnMut() -> Vec<muster_core::TopologySpec> + 'static) {
    sim.add_node(n(me), ClusterConfig::new(), f);
}

#[test]
fn a_failed_discovery_is_never_an_empty_one() {
    let mut sim = Sim::new(11, SimConfig::default());
    for p in ["a@h1", "b@h2"] {
        sim.add_fake_node(n(p));
    }
    sim.write_file("nodes", "a@h1\nb@h2\n");
    node_with(&mut sim, "me@h", || {
        vec![file("dns", "nodes", 1000, quick())]
    });
    sim.run_for(ms(1500));
    assert!(sim.linked("me@h", "a@h1") && sim.linked("me@h", "b@h2"));
    sim.fail_file("nodes", "SERVFAIL");
    sim.run_for(ms(5000));
    let ev = sim.events("me@h");
    assert!(count(ev, "discovery_failed") >= 4);
    assert_eq!(count(ev, "lost"), 0);
    assert_eq!(count(ev, "disconnected"), 0);
    assert!(sim.linked("me@h", "a@h1") && sim.linked("me@h", "b@h2"));
    // A bad body is a failure too, not a partial set.
    sim.write_file("nodes", "a@h1\nnot a node\n");
    sim.run_for(ms(2000));
    assert_eq!(count(sim.events("me@h"), "lost"), 0);
    assert!(sim.linked("me@h", "b@h2"));
}

#[test]
fn an_empty_answer_is_empty() {
    let mut sim = Sim::new(12, SimConfig::default());
    sim.add_fake_node(n("a@h1"));
    sim.write_file("nodes", "a@h1\n");
    node_with(&mut sim, "me@h", || {
        vec![file("dns", "nodes", 1000, quick())]
    });
    sim.run_for(ms(1500));
    sim.write_file("nodes", "# nobody\n");
    sim.run_for(ms(1500));
    let ev = sim.events("me@h");
    assert_eq!(times(ev, "lost", "a@h1").len(), 1);
    assert_eq!(times(ev, "disconnected", "a@h1").len(), 1);
    assert!(!sim.linked("me@h", "a@h1"));
}

#[test]
fn prune_false_keeps_nodes_that_left_discovery() {
    let mut sim = Sim::new(13, SimConfig::default());
    sim.add_fake_node(n("a@h1"));
    sim.write_file("nodes", "a@h1\n");
    node_with(&mut sim, "me@h", || {
        vec![file("dns", "nodes", 1000, quick().prune(false))]
    });
    sim.run_for(ms(1500));
    sim.write_file("nodes", "");
    sim.run_for(ms(3000));
    let ev = sim.events("me@h");
    assert_eq!(times(ev, "lost", "a@h1").len(), 1);
    assert_eq!(count(ev, "disconnected"), 0);
    assert!(sim.linked("me@h", "a@h1"));
    // Still wanted: a drop is reconnected.
    sim.drop_link(&n("me@h"), &n("a@h1"));
    sim.run_for(ms(2000));
    assert!(sim.linked("me@h", "a@h1"));
}

#[test]
fn grace_delays_the_disconnect_and_a_return_cancels_it() {
    let mut sim = Sim::new(14, SimConfig::default());
    sim.add_fake_node(n("a@h1"));
    sim.write_file("nodes", "a@h1\n");
    node_with(&mut sim, "me@h", || {
        vec![file("dns", "nodes", 1000, quick().grace(ms(3000)))]
    });
    sim.run_for(ms(1500));
    // Gone for one poll, back at the next: never disconnected.
    sim.write_file("nodes", "");
    sim.run_for(ms(1000));
    sim.write_file("nodes", "a@h1\n");
    sim.run_for(ms(5000));
    assert_eq!(count(sim.events("me@h"), "disconnected"), 0);
    assert!(sim.linked("me@h", "a@h1"));
    // Gone for good: disconnected once the grace period is over, not before.
    sim.write_file("nodes", "");
    let gone_at = sim.now();
    sim.run_for(ms(2500));
    assert!(sim.linked("me@h", "a@h1"), "still inside the grace period");
    sim.run_for(ms(3000));
    assert!(!sim.linked("me@h", "a@h1"));
    let lost = times(sim.events("me@h"), "lost", "a@h1");
    let disc = times(sim.events("me@h"), "disconnected", "a@h1");
    assert_eq!(disc.len(), 1);
    let after = disc[0].saturating_duration_since(*lost.last().unwrap());
    assert!(
        after >= ms(3000),
        "disconnected {after:?} after it was lost"
    );
    assert!(lost.last().unwrap() >= &gone_at);
}

#[test]
fn a_node_wanted_by_two_topologies_stays_until_neither_wants_it() {
    let mut sim = Sim::new(15, SimConfig::default());
    sim.add_fake_node(n("a@h1"));
    sim.write_file("one", "a@h1\n");
    sim.write_file("two", "a@h1\n");
    node_with(&mut sim, "me@h", || {
        vec![
            file("one", "one", 1000, quick()),
            file("two", "two", 1000, quick()),
        ]
    });
    sim.run_for(ms(1500));
    sim.write_file("one", "");
    sim.run_for(ms(3000));
    let ev = sim.events("me@h");
    assert_eq!(times(ev, "lost", "a@h1").len(), 1);
    assert_eq!(count(ev, "disconnected"), 0);
    assert!(sim.linked("me@h", "a@h1"));
    sim.write_file("two", "");
    sim.run_for(ms(3000));
    assert_eq!(times(sim.events("me@h"), "disconnected", "a@h1").len(), 1);
    assert!(!sim.linked("me@h", "a@h1"));
}

#[test]
fn a_static_topology_keeps_a_node_a_polling_one_dropped() {
    let mut sim = Sim::new(16, SimConfig::default());
    sim.add_fake_node(n("a@h1"));
    sim.write_file("dns", "a@h1\n");
    node_with(&mut sim, "me@h", || {
        vec![
            epmd("static", &["a@h1"], Some(1000), quick()),
            file("dns", "dns", 1000, quick()),
        ]
    });
    sim.run_for(ms(1500));
    sim.write_file("dns", "");
    sim.run_for(ms(3000));
    assert_eq!(count(sim.events("me@h"), "disconnected"), 0);
    assert!(sim.linked("me@h", "a@h1"));
}

#[test]
fn a_dropped_node_is_reconnected_at_the_next_poll_without_notice() {
    let mut sim = Sim::new(17, SimConfig::default().notify_drops(false));
    sim.add_fake_node(n("a@h1"));
    sim.write_file("nodes", "a@h1\n");
    node_with(&mut sim, "me@h", || {
        vec![file("dns", "nodes", 1000, quick())]
    });
    sim.run_until(Instant::from_millis(1500));
    sim.drop_link(&n("me@h"), &n("a@h1"));
    sim.run_until(Instant::from_millis(1900));
    assert!(!sim.linked("me@h", "a@h1"));
    sim.run_until(Instant::from_millis(4000));
    assert!(sim.linked("me@h", "a@h1"));
    let d = times(sim.events("me@h"), "disconnected", "a@h1");
    assert_eq!(d.len(), 1);
    assert!(
        d[0] >= Instant::from_millis(2000),
        "noticed at the poll, {d:?}"
    );
}

#[test]
fn a_dropped_node_is_reconnected_at_once_when_the_connector_says_so() {
    let mut sim = Sim::new(18, SimConfig::default());
    sim.add_fake_node(n("a@h1"));
    node_with(&mut sim, "me@h", || {
        vec![epmd("static", &["a@h1"], Some(60_000), quick())]
    });
    sim.run_for(ms(100));
    // Stable for longer than backoff_max: the backoff starts from zero.
    sim.run_for(ms(2000));
    sim.drop_link(&n("me@h"), &n("a@h1"));
    sim.run_for(ms(200));
    assert!(sim.linked("me@h", "a@h1"));
    assert_eq!(times(sim.events("me@h"), "connected", "a@h1").len(), 2);
}

#[test]
fn failing_nodes_back_off_exponentially_up_to_the_cap_then_connect() {
    let mut sim = Sim::new(19, SimConfig::default());
    sim.add_fake_node(n("a@h1"));
    sim.set_connect_behaviour(
        &n("a@h1"),
        ConnectBehaviour::Refuse("connection refused".into()),
    );
    let policy = quick().backoff(ms(100), ms(2000));
    node_with(&mut sim, "me@h", move || {
        vec![epmd("static", &["a@h1"], Some(60_000), policy)]
    });
    sim.run_for(ms(30_000));
    let retries: Vec<_> = sim
        .events("me@h")
        .iter()
        .filter_map(|(_, e)| match e {
            Event::ConnectFailed {
                attempt,
                retry_in,
                reason,
                ..
            } => {
                assert_eq!(reason.to_string(), "connection refused");
                assert_eq!(reason.code(), "refused", "a typed reason to match on");
                Some((*attempt, retry_in.expect("retried")))
            }
            _ => None,
        })
        .collect();
    // 100, 200, 400, 800, 1600, 2000, 2000, ... each jittered into its upper half.
    assert!(
        retries.len() >= 14 && retries.len() <= 25,
        "{} attempts",
        retries.len()
    );
    for (attempt, d) in &retries {
        let full = ms((100u64 << (attempt - 1).min(10)).min(2000));
        assert!(*d >= full / 2 && *d <= full, "attempt {attempt}: {d:?}");
    }
    let distinct: std::collections::BTreeSet<_> = retries.iter().map(|r| r.1).collect();
    assert!(distinct.len() > 5, "jittered");
    sim.set_connect_behaviour(&n("a@h1"), ConnectBehaviour::Accept);
    sim.run_for(ms(2100));
    assert!(sim.linked("me@h", "a@h1"), "reconnected within the cap");
}

#[test]
fn a_silent_node_fails_at_its_deadline_and_others_do_not_wait_for_it() {
    let mut sim = Sim::new(20, SimConfig::default());
    sim.add_fake_node(n("slow@h1"));
    sim.add_fake_node(n("fast@h2"));
    sim.set_connect_behaviour(&n("slow@h1"), ConnectBehaviour::Silent);
    let policy = quick().connect_timeout(ms(2000));
    node_with(&mut sim, "me@h", move || {
        vec![epmd(
            "static",
            &["slow@h1", "fast@h2"],
            Some(60_000),
            policy,
        )]
    });
    sim.run_for(ms(100));
    assert!(sim.linked("me@h", "fast@h2"), "connects run concurrently");
    sim.run_for(ms(2000));
    let failed: Vec<_> = sim
        .events("me@h")
        .iter()
        .filter(|(_, e)| e.name() == "connect_failed")
        .map(|(t, e)| (*t, e.reason().unwrap().to_string()))
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].1, "timed out after 2000 ms");
    assert_eq!(sim.cluster("me@h").unwrap().metrics().connect_timeouts, 1);
}

#[test]
fn never_more_in_flight_than_the_limit_and_everyone_gets_a_turn() {
    let mut sim = Sim::new(21, SimConfig::default());
    let hosts: Vec<String> = (0..300).map(|i| format!("n{i}@h{i}")).collect();
    for h in &hosts {
        sim.add_fake_node(n(h));
    }
    let refs: Vec<&str> = hosts.iter().map(String::as_str).collect();
    let spec_hosts: Vec<String> = refs.iter().map(|s| s.to_string()).collect();
    sim.add_node(
        n("me@h"),
        ClusterConfig::new().max_in_flight(8),
        move || {
            let r: Vec<&str> = spec_hosts.iter().map(String::as_str).collect();
            vec![epmd("static", &r, Some(60_000), quick())]
        },
    );
    // The checker fails the run if more than 8 are ever in flight.
    assert!(sim.run_until_quiescent(ms(60_000)));
    for h in &hosts {
        assert!(sim.linked("me@h", h));
    }
}

#[test]
fn never_connects_to_itself_even_when_listed_everywhere() {
    let mut sim = Sim::new(22, SimConfig::default());
    sim.write_file("nodes", "me@h\nb@h2\n");
    node_with(&mut sim, "me@h", || {
        vec![
            epmd("static", &["me@h", "b@h2"], Some(500), quick()),
            file("dns", "nodes", 500, quick()),
        ]
    });
    node_with(&mut sim, "b@h2", || {
        vec![epmd("static", &["me@h", "b@h2"], Some(500), quick())]
    });
    sim.run_for(ms(5000));
    assert!(sim.linked("me@h", "b@h2") && sim.linked("b@h2", "me@h"));
    assert!(sim.cluster("me@h").unwrap().metrics().self_skipped >= 2);
}

#[test]
fn the_same_seed_replays_the_same_run_and_another_seed_does_not() {
    fn run(seed: u64) -> Vec<String> {
        let mut sim = Sim::new(seed, SimConfig::default().connect_loss(0.3));
        for i in 0..5 {
            sim.add_fake_node(n(&format!("p{i}@h{i}")));
        }
        sim.set_connect_behaviour(&n("p0@h0"), ConnectBehaviour::Refuse("no".into()));
        node_with(&mut sim, "me@h", || {
            vec![epmd(
                "s",
                &["p0@h0", "p1@h1", "p2@h2", "p3@h3", "p4@h4"],
                Some(1000),
                quick(),
            )]
        });
        sim.run_for(ms(20_000));
        sim.events("me@h")
            .iter()
            .map(|(t, e)| format!("{t} {e}"))
            .collect()
    }
    assert_eq!(run(5), run(5));
    assert_ne!(run(5), run(6));
}

#[test]
fn removing_a_topology_loses_its_nodes_and_disconnects_them() {
    let mut sim = Sim::new(23, SimConfig::default());
    sim.add_fake_node(n("a@h1"));
    sim.write_file("nodes", "a@h1\n");
    node_with(&mut sim, "me@h", || {
        vec![file("dns", "nodes", 1000, quick())]
    });
    sim.run_for(ms(1500));
    let removed = sim.with_cluster("me@h", |c, now| {
        let (id, _) = c.topologies().next().unwrap();
        c.remove_topology(now, id)
    });
    assert_eq!(removed, Some(true));
    sim.run_for(ms(1000));
    assert!(!sim.linked("me@h", "a@h1"));
    assert_eq!(times(sim.events("me@h"), "lost", "a@h1").len(), 1);
}

#[test]
fn symmetric_links_are_adopted_by_the_other_side() {
    let mut sim = Sim::new(24, SimConfig::default().symmetric(true));
    node_with(&mut sim, "a@h1", || {
        vec![epmd("s", &["a@h1", "b@h2"], Some(1000), quick())]
    });
    node_with(&mut sim, "b@h2", || {
        vec![epmd("s", &["a@h1", "b@h2"], Some(1000), quick())]
    });
    assert!(sim.run_until_quiescent(ms(10_000)));
    assert!(sim.cluster("a@h1").unwrap().is_connected("b@h2"));
    assert!(sim.cluster("b@h2").unwrap().is_connected("a@h1"));
}
