//! libcluster's `strategy_test.exs` and `epmd_test.exs`, case by case, run in the simulator
//! (reference: libcluster.md §4). Where libcluster asserts log lines and telemetry, these
//! assert the events that replace both.
#![allow(clippy::unwrap_used)] // tests unwrap what they set up themselves

mod common;

use common::*;
use muster_core::sim::{ConnectBehaviour, Sim, SimConfig};
use muster_core::{ClusterConfig, Event};

fn one_node(
    sim: &mut Sim,
    me: &str,
    topologies: impl FnMut() -> Vec<muster_core::TopologySpec> + 'static,
) {
    sim.add_node(n(me), ClusterConfig::new(), topologies);
}

/// strategy_test: "connect_nodes/4 does not connect existing nodes again" — nodes already in
/// the connector's list, and this node itself, are not connected.
#[test]
fn does_not_connect_existing_nodes_again() {
    let mut sim = Sim::new(1, SimConfig::default());
    sim.add_fake_node(n("foo@some.host"));
    sim.link(&n("me@h"), &n("foo@some.host"));
    one_node(&mut sim, "me@h", || {
        vec![epmd("t", &["me@h", "foo@some.host"], None, quick())]
    });
    sim.run_for(ms(10_000));
    let c = sim.cluster("me@h").unwrap();
    assert_eq!(c.metrics().connects_started, 0, "{:?}", c.metrics());
    assert_eq!(c.metrics().self_skipped, 1);
    assert!(c.is_connected("foo@some.host"));
}

/// strategy_test: "connect_nodes/4 does connect new nodes" — the connect happens and an event
/// names the node, the topology and the duration.
#[test]
fn does_connect_new_nodes() {
    let mut sim = Sim::new(2, SimConfig::default());
    sim.add_fake_node(n("foo@some.host"));
    one_node(&mut sim, "me@h", || {
        vec![epmd("test", &["foo@some.host"], None, quick())]
    });
    sim.run_for(ms(1000));
    let ev = sim.events("me@h");
    let connected: Vec<_> = ev
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Connected {
                topology,
                node,
                took,
            } => Some((topology.to_string(), node.to_string(), *took)),
            _ => None,
        })
        .collect();
    assert_eq!(connected.len(), 1, "{ev:?}");
    assert_eq!(connected[0].0, "test");
    assert_eq!(connected[0].1, "foo@some.host");
    assert!(connected[0].2 > ms(0), "the duration is measured");
    assert!(sim.linked("me@h", "foo@some.host"));
}

/// strategy_test: "connect_nodes/4 handles connect failure" — the failure is reported with the
/// node and the reason.
#[test]
fn handles_connect_failure() {
    let mut sim = Sim::new(3, SimConfig::default());
    sim.add_fake_node(n("foo@some.host"));
    sim.set_connect_behaviour(
        &n("foo@some.host"),
        ConnectBehaviour::Refuse("unreachable".into()),
    );
    one_node(&mut sim, "me@h", || {
        vec![epmd("test", &["foo@some.host"], None, quick())]
    });
    sim.run_for(ms(10_000));
    let failures: Vec<_> = sim
        .events("me@h")
        .iter()
        .filter_map(|(_, e)| match e {
            Event::ConnectFailed {
                node,
                reason,
                attempt,
                retry_in,
                ..
            } => Some((node.to_string(), reason.to_string(), *attempt, *retry_in)),
            _ => None,
        })
        .collect();
    // Without `timeout` Epmd connects once, as libcluster does: one failure, no retry.
    assert_eq!(
        failures,
        vec![(
            "foo@some.host".to_string(),
            "unreachable".to_string(),
            1,
            None
        )]
    );
    assert!(!sim.cluster("me@h").unwrap().is_connected("foo@some.host"));
}

/// strategy_test: "connect_nodes/4 handles connect ignore" — `:ignored` is a failure whose
/// reason says the node is not part of a network.
#[test]
fn handles_connect_ignore() {
    let mut sim = Sim::new(4, SimConfig::default());
    sim.add_fake_node(n("foo@some.host"));
    sim.set_connect_behaviour(&n("foo@some.host"), ConnectBehaviour::Ignore);
    one_node(&mut sim, "me@h", || {
        vec![epmd("test", &["foo@some.host"], None, quick())]
    });
    sim.run_for(ms(1000));
    let reasons: Vec<_> = sim
        .events("me@h")
        .iter()
        .filter(|(_, e)| e.name() == "connect_failed")
        .map(|(_, e)| e.reason().unwrap_or_default().to_string())
        .collect();
    assert_eq!(reasons, vec!["not part of network"]);
}

/// strategy_test: "disconnect_nodes/4 does not disconnect missing nodes" — a node that left
/// discovery but is not connected is not disconnected.
#[test]
fn does_not_disconnect_missing_nodes() {
    let mut sim = Sim::new(5, SimConfig::default());
    sim.add_fake_node(n("foo@some.host"));
    sim.set_connect_behaviour(
        &n("foo@some.host"),
        ConnectBehaviour::Refuse("refused".into()),
    );
    sim.write_file("nodes", "foo@some.host\n");
    one_node(&mut sim, "me@h", || {
        vec![file("test", "nodes", 1000, quick())]
    });
    sim.run_for(ms(3000));
    sim.write_file("nodes", "");
    sim.run_for(ms(3000));
    let ev = sim.events("me@h");
    assert_eq!(times(ev, "lost", "foo@some.host").len(), 1);
    assert_eq!(count(ev, "disconnected"), 0);
    assert_eq!(
        sim.cluster("me@h").unwrap().metrics().disconnects_started,
        0
    );
}

/// strategy_test: "disconnect_nodes/4 does disconnect new nodes" — a connected node that left
/// discovery is disconnected and the event says so.
#[test]
fn does_disconnect_nodes_that_left() {
    let mut sim = Sim::new(6, SimConfig::default());
    sim.add_fake_node(n("foo@some.host"));
    sim.write_file("nodes", "foo@some.host\n");
    one_node(&mut sim, "me@h", || {
        vec![file("test", "nodes", 1000, quick())]
    });
    sim.run_for(ms(2000));
    assert!(sim.linked("me@h", "foo@some.host"));
    sim.write_file("nodes", "\n");
    sim.run_for(ms(2000));
    let ev = sim.events("me@h");
    let d: Vec<_> = ev
        .iter()
        .filter(|(_, e)| e.name() == "disconnected")
        .map(|(_, e)| {
            (
                e.topology().to_string(),
                e.node().unwrap().to_string(),
                e.reason().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        d,
        vec![("test".into(), "foo@some.host".into(), "pruned".into())]
    );
    assert!(!sim.linked("me@h", "foo@some.host"));
}

/// strategy_test: "disconnect_nodes/4 handles disconnect error" — the failure is reported with
/// the connector's reason, and the disconnect is tried again later.
#[test]
fn handles_disconnect_error() {
    let mut sim = Sim::new(7, SimConfig::default());
    sim.add_fake_node(n("foo@some.host"));
    sim.write_file("nodes", "foo@some.host\n");
    one_node(&mut sim, "me@h", || {
        vec![file("test", "nodes", 1000, quick())]
    });
    sim.run_for(ms(2000));
    sim.set_disconnect_failure(&n("foo@some.host"), Some(":failed"));
    sim.write_file("nodes", "");
    sim.run_for(ms(2500));
    let ev = sim.events("me@h").to_vec();
    let failed: Vec<_> = ev
        .iter()
        .filter(|(_, e)| e.name() == "disconnect_failed")
        .map(|(_, e)| e.reason().unwrap().to_string())
        .collect();
    assert!(failed.len() >= 2, "retried: {failed:?}");
    // ... with backoff (100 ms doubling to 1 s, jittered): at most one try per 50 ms, 100 ms,
    // 200 ms, 400 ms, 500 ms, 500 ms, ... in 2.5 s — never again at once.
    assert!(failed.len() <= 9, "backed off: {} tries", failed.len());
    assert!(failed.iter().all(|r| r == ":failed"));
    assert!(sim.linked("me@h", "foo@some.host"));
    sim.set_disconnect_failure(&n("foo@some.host"), None);
    sim.run_for(ms(2000));
    assert!(!sim.linked("me@h", "foo@some.host"));
}

/// epmd_test: "starts GenServer and connects nodes".
#[test]
fn epmd_connects_its_hosts() {
    let mut sim = Sim::new(8, SimConfig::default());
    sim.add_fake_node(n("foo@bar"));
    one_node(&mut sim, "me@h", || {
        vec![epmd("test", &["foo@bar"], None, quick())]
    });
    sim.run_for(ms(500));
    assert!(sim.linked("me@h", "foo@bar"));
    assert_eq!(times(sim.events("me@h"), "connected", "foo@bar").len(), 1);
}

/// epmd_test: "reconnects every time the configured timeout was reached" — with
/// `timeout: 500`, one connect at start; after every silent drop, a reconnect comes at the
/// next timeout (not at once: nobody told the cluster) and within two timeouts.
#[test]
fn epmd_reconnects_every_timeout() {
    let mut sim = Sim::new(9, SimConfig::default().notify_drops(false));
    sim.add_fake_node(n("foo@bar"));
    let policy = quick().backoff(ms(50), ms(100));
    one_node(&mut sim, "me@h", move || {
        vec![epmd("test", &["foo@bar"], Some(500), policy)]
    });
    sim.run_for(ms(300));
    assert_eq!(times(sim.events("me@h"), "connected", "foo@bar").len(), 1);
    let mut drops = Vec::new();
    for k in 0..5u64 {
        // 200 ms after a tick, so that the next tick is the first to notice.
        sim.run_until(muster_core::Instant::from_millis(700 + 1500 * k));
        drops.push(sim.now());
        sim.drop_link(&n("me@h"), &n("foo@bar"));
        sim.run_for(ms(250));
        assert!(
            !sim.linked("me@h", "foo@bar"),
            "reconnected before the next timeout"
        );
        sim.run_for(ms(750));
        assert!(
            sim.linked("me@h", "foo@bar"),
            "reconnected within two timeouts"
        );
    }
    let connects = times(sim.events("me@h"), "connected", "foo@bar");
    assert_eq!(connects.len(), 6, "{connects:?}");
    for (drop, again) in drops.iter().zip(&connects[1..]) {
        let gap = again.saturating_duration_since(*drop);
        assert!(
            gap >= ms(300) && gap <= ms(1000),
            "reconnect {gap:?} after the drop"
        );
    }
}
