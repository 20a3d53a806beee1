//! The postgres strategy inside the simulator, against the simulated PostgreSQL server
//! (`Sim::serve_stream` with `PostgresServer`): nodes find each other through LISTEN/NOTIFY,
//! hear a goodbye at once, and ride out the server restarting, going down, stalling, being
//! unreachable, and being a standby that is promoted.
#![cfg(feature = "sim")]
#![allow(clippy::unwrap_used)] // tests unwrap what they set up themselves

mod common;

use common::*;
use muster_core::config::Options;
use muster_core::sim::{PostgresServer, ServiceFault, Sim, SimConfig};
use muster_core::strategy::Registry;
use muster_core::{ClusterConfig, NodeName, TopologySpec, Value};

const PG: &str = "10.99.0.1:5432";
const CHANNEL: &str = "it's \"the\" channel";

fn topology(sslmode: &str) -> TopologySpec {
    let t: Vec<(String, Value)> = [
        (
            "url",
            Value::str(format!("postgres://app@{PG}/app?sslmode={sslmode}")),
        ),
        ("channel_name", Value::str(CHANNEL)),
        ("heartbeat_interval", Value::Int(500)),
        ("node_timeout", Value::Int(1500)),
        ("connect_timeout", Value::Int(2000)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let mut o = Options::new("pg", &t);
    let s = Registry::builtin().build("postgres", &mut o).unwrap();
    o.finish().unwrap();
    TopologySpec::boxed("pg", s).policy(quick())
}

/// `k` nodes with a postgres topology, and the server.
fn band(seed: u64, k: usize, server: PostgresServer) -> (Sim, Vec<NodeName>) {
    let mut sim = Sim::new(seed, SimConfig::default());
    sim.serve_stream(PG, server);
    let all: Vec<NodeName> = (1..=k).map(|i| n(&format!("app@10.1.0.{i}"))).collect();
    for me in &all {
        sim.add_node(me.clone(), ClusterConfig::new(), || {
            vec![topology("disable")]
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

fn server(sim: &Sim) -> &PostgresServer {
    sim.stream_service::<PostgresServer>(PG).unwrap()
}

fn lost(sim: &Sim, all: &[NodeName]) -> usize {
    all.iter()
        .map(|me| count(sim.events(me.as_str()), "lost"))
        .sum()
}

fn failures(sim: &Sim, me: &NodeName, text: &str) -> usize {
    sim.events(me.as_str())
        .iter()
        .filter(|(_, e)| e.name() == "discovery_failed" && format!("{e}").contains(text))
        .count()
}

#[test]
fn nodes_find_each_other_and_hear_a_goodbye_at_once() {
    let (mut sim, all) = band(1, 3, PostgresServer::new());
    sim.run_for(ms(1000));
    assert!(sim.run_until_quiescent(ms(10_000)));
    assert!(meshed(&sim, &all));
    let f = server(&sim).figures();
    assert_eq!((f.connections, f.logins, f.errors), (3, 3, 0));
    assert!(f.notifications >= 9, "{f:?}");
    assert_eq!(server(&sim).listeners(CHANNEL), 3);
    // Any other type is not the service there.
    assert!(sim.stream_service::<NotPostgres>(PG).is_none());

    let left = sim.now();
    sim.with_cluster(all[2].as_str(), |c, now| c.leave(now));
    sim.run_for(ms(300));
    for me in &all[..2] {
        let t = times(sim.events(me.as_str()), "lost", all[2].as_str());
        assert_eq!(t.len(), 1, "{me}");
        // Well before the 1.5 s timeout: the goodbye did it.
        assert!(t[0] < left + ms(200), "{me}");
    }
    assert_eq!(server(&sim).sessions(), 2, "Terminate closed the session");
}

struct NotPostgres;

impl muster_core::sim::StreamService for NotPostgres {
    fn open(
        &mut self,
        _: muster_core::Instant,
        _: muster_core::sim::ConnId,
        _: std::net::SocketAddr,
    ) {
    }
    fn data(&mut self, _: muster_core::Instant, _: muster_core::sim::ConnId, _: &[u8]) {}
    fn closed(&mut self, _: muster_core::Instant, _: muster_core::sim::ConnId) {}
    fn poll_output(&mut self) -> Option<muster_core::sim::ServiceOutput> {
        None
    }
}

#[test]
fn a_restart_ends_every_session_and_everyone_logs_in_again_losing_no_one() {
    let (mut sim, all) = band(2, 3, PostgresServer::new());
    sim.run_for(ms(3000));
    assert!(meshed(&sim, &all));
    sim.restart_service(PG);
    sim.run_for(ms(5000));
    let f = server(&sim).figures();
    assert_eq!((f.restarts, f.logins), (1, 6), "{f:?}");
    for me in &all {
        assert_eq!(failures(&sim, me, "57P01"), 1, "{me} heard the shutdown");
    }
    assert_eq!(lost(&sim, &all), 0);
    assert_eq!(server(&sim).listeners(CHANNEL), 3);
}

#[test]
fn a_server_that_is_down_refuses_and_the_nodes_keep_their_set() {
    let (mut sim, all) = band(3, 3, PostgresServer::new());
    sim.run_for(ms(3000));
    sim.service_fault(PG, ServiceFault::Down);
    sim.run_for(ms(20_000));
    assert_eq!(server(&sim).sessions(), 0);
    for me in &all {
        assert!(failures(&sim, me, "refused") >= 3, "{me}");
    }
    // Far past node_timeout, yet nobody is lost: the server is down, not the nodes.
    assert_eq!(lost(&sim, &all), 0);
    assert!(meshed(&sim, &all));
    sim.service_fault(PG, ServiceFault::None);
    // Retries are never further apart than a third of node_timeout (and a quarter more), so
    // a node back first hears every other before its timeout: nobody is lost on the way back.
    sim.run_for(ms(25_000));
    assert_eq!(server(&sim).listeners(CHANNEL), 3);
    assert!(sim.run_until_quiescent(ms(10_000)));
    assert!(meshed(&sim, &all));
    assert_eq!(lost(&sim, &all), 0, "no flap after the outage");
}

#[test]
fn an_unreachable_server_breaks_sessions_and_connects_time_out() {
    let (mut sim, all) = band(4, 3, PostgresServer::new());
    sim.run_for(ms(3000));
    sim.service_fault(PG, ServiceFault::Unreachable);
    sim.run_for(ms(10_000));
    for me in &all {
        assert!(failures(&sim, me, "unreachable") == 1, "{me}");
        assert!(failures(&sim, me, "in time") >= 1, "{me}");
    }
    sim.service_fault(PG, ServiceFault::None);
    sim.run_for(ms(20_000));
    assert_eq!(server(&sim).listeners(CHANNEL), 3);
    assert!(meshed(&sim, &all));
}

#[test]
fn a_stalled_server_hears_everything_it_missed_when_it_resumes() {
    let (mut sim, all) = band(5, 3, PostgresServer::new());
    sim.run_for(ms(3000));
    let before = server(&sim).figures();
    sim.service_fault(PG, ServiceFault::Stall);
    sim.run_for(ms(4000));
    // Heartbeats went in, nothing came out: every node lost the others.
    assert_eq!(server(&sim).figures().queries, before.queries);
    assert_eq!(lost(&sim, &all), 6);
    sim.service_fault(PG, ServiceFault::None);
    // Every query held is run now, in order, on the sessions that sent them.
    assert!(server(&sim).figures().queries >= before.queries + 3 * 7);
    assert_eq!(server(&sim).figures().protocol_errors, 0);
    sim.run_for(ms(2000));
    for me in &all {
        assert_eq!(count(sim.events(me.as_str()), "discovered"), 4, "{me}");
    }
    assert_eq!(server(&sim).figures().logins, 3, "the sessions went on");
}

/// A standby lets a session log in but refuses its LISTEN; promoted, it keeps the session.
/// The strategy once stayed on that session, deaf for ever (the band's seed 96 showed it):
/// an error before the LISTEN is confirmed now ends the session, with backoff.
#[test]
fn a_session_refused_its_listen_by_a_standby_listens_once_the_server_is_promoted() {
    let mut standby = PostgresServer::new();
    standby.set_read_only(true);
    let (mut sim, all) = band(6, 3, standby);
    sim.run_for(ms(5000));
    for me in &all {
        assert_eq!(count(sim.events(me.as_str()), "discovered"), 0, "{me}");
        assert!(failures(&sim, me, "cannot execute LISTEN") >= 2, "{me}");
        // Backing off: at most one login per 0.5 s (the backoff's floor; its cap is a third
        // of node_timeout, 0.5 s here), not one at every answer.
        assert!(failures(&sim, me, "cannot execute LISTEN") <= 10, "{me}");
    }
    sim.stream_service_mut::<PostgresServer>(PG)
        .unwrap()
        .set_read_only(false);
    sim.run_for(ms(20_000));
    assert_eq!(server(&sim).listeners(CHANNEL), 3);
    assert!(meshed(&sim, &all));
}

#[test]
fn partitions_do_not_cut_the_database_and_tls_is_not_simulated() {
    let (mut sim, all) = band(7, 3, PostgresServer::new());
    sim.run_for(ms(3000));
    sim.partition(&[&[&all[0]], &[&all[1], &all[2]]]);
    sim.run_for(ms(3000));
    assert_eq!(server(&sim).figures().connections, 3);
    assert_eq!(lost(&sim, &all), 0, "they still hear each other");

    // `prefer` goes on in the clear when TLS is unsupported; `require` cannot.
    let mut sim = Sim::new(8, SimConfig::default());
    sim.serve_stream(PG, PostgresServer::new());
    let (a, b) = (n("app@10.1.0.1"), n("app@10.1.0.2"));
    sim.add_node(a.clone(), ClusterConfig::new(), || vec![topology("prefer")]);
    sim.add_node(b.clone(), ClusterConfig::new(), || {
        vec![topology("require")]
    });
    sim.run_for(ms(3000));
    assert_eq!(server(&sim).figures().logins, 1);
    assert!(failures(&sim, &b, "TLS") >= 1);
    assert_eq!(failures(&sim, &a, "TLS"), 0);
}
