//! The etcd strategy inside the simulator, against the simulated etcd (`Sim::serve_stream`
//! with `EtcdServer`, spoken to through its JSON gateway): nodes find each other through
//! their leased keys and the watch, a node that leaves is lost at once and one that dies when
//! its lease expires, and they ride out etcd restarting, going down, stalling, being
//! unreachable, cutting watches and compacting; a seed band of its own under random chaos.
#![cfg(feature = "sim")]
#![allow(clippy::unwrap_used)] // tests unwrap what they set up themselves

mod common;

use common::*;
use muster_core::config::Options;
use muster_core::sim::{EtcdFigures, EtcdServer, ServiceFault, Sim, SimConfig};
use muster_core::strategy::Registry;
use muster_core::{ClusterConfig, NodeName, Rng, TopologySpec, Value};

const ETCD: &str = "10.99.0.2:2379";
const PREFIX: &str = "/muster/it's/";

fn topology(ttl: u64, credentials: Option<(&str, &str)>) -> TopologySpec {
    topology_with(ttl, credentials, None)
}

fn topology_with(
    ttl: u64,
    credentials: Option<(&str, &str)>,
    watch_timeout: Option<i64>,
) -> TopologySpec {
    let mut t: Vec<(String, Value)> = vec![
        (
            "endpoints".into(),
            Value::List(vec![Value::str(format!("http://{ETCD}"))]),
        ),
        ("prefix".into(), Value::str(PREFIX)),
        ("ttl".into(), Value::Int(ttl as i64)),
        ("request_timeout".into(), Value::Int(1000)),
    ];
    if let Some(ms) = watch_timeout {
        t.push(("watch_timeout".into(), Value::Int(ms)));
    }
    if let Some((u, p)) = credentials {
        t.push(("username".into(), Value::str(u)));
        t.push(("password".into(), Value::str(p)));
    }
    let mut o = Options::new("etcd", &t);
    let s = Registry::builtin().build("etcd", &mut o).unwrap();
    o.finish().unwrap();
    TopologySpec::boxed("etcd", s).policy(quick())
}

/// `k` nodes with an etcd topology of `ttl` seconds, and the server.
fn band_of(
    seed: u64,
    k: usize,
    ttl: u64,
    server: EtcdServer,
    credentials: Option<(&'static str, &'static str)>,
) -> (Sim, Vec<NodeName>) {
    let mut sim = Sim::new(seed, SimConfig::default());
    sim.serve_stream(ETCD, server);
    let all: Vec<NodeName> = (1..=k).map(|i| n(&format!("app@10.1.0.{i}"))).collect();
    for me in &all {
        sim.add_node(me.clone(), ClusterConfig::new(), move || {
            vec![topology(ttl, credentials)]
        });
    }
    (sim, all)
}

fn band(seed: u64, k: usize) -> (Sim, Vec<NodeName>) {
    band_of(seed, k, 3, EtcdServer::new(), None)
}

fn meshed(sim: &Sim, all: &[NodeName]) -> bool {
    all.iter().all(|a| {
        all.iter()
            .all(|b| a == b || sim.linked(a.as_str(), b.as_str()))
    })
}

/// Whether every node of `all` that is up knows every other of `all` through etcd itself.
fn knows_all(sim: &Sim, all: &[NodeName]) -> Result<(), String> {
    for me in all {
        let c = sim.cluster(me.as_str()).unwrap();
        let (id, _) = c.topologies().find(|(_, name)| *name == "etcd").unwrap();
        let known: Vec<&NodeName> = c.discovered(id).collect();
        for other in all.iter().filter(|o| *o != me) {
            if !known.contains(&other) {
                return Err(format!("{me} does not know {other} through etcd"));
            }
        }
    }
    Ok(())
}

fn server(sim: &Sim) -> &EtcdServer {
    sim.stream_service::<EtcdServer>(ETCD).unwrap()
}

fn server_mut(sim: &mut Sim) -> &mut EtcdServer {
    sim.stream_service_mut::<EtcdServer>(ETCD).unwrap()
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
fn nodes_find_each_other_and_one_that_leaves_is_lost_at_once() {
    let (mut sim, all) = band(1, 3);
    sim.run_for(ms(1000));
    assert!(sim.run_until_quiescent(ms(10_000)));
    assert!(meshed(&sim, &all));
    knows_all(&sim, &all).unwrap();
    let f = server(&sim).figures();
    assert_eq!((f.grants, f.puts, f.errors), (3, 3, 0), "{f:?}");
    assert!(f.watches >= 3, "{f:?}");
    assert_eq!(server(&sim).keys(PREFIX.as_bytes()).len(), 3);
    assert_eq!(server(&sim).watching(), 3);

    let left = sim.now();
    sim.with_cluster(all[2].as_str(), |c, now| c.leave(now));
    sim.run_for(ms(500));
    for me in &all[..2] {
        let t = times(sim.events(me.as_str()), "lost", all[2].as_str());
        assert_eq!(t.len(), 1, "{me}");
        // Far before the 3 s TTL: the revoke did it.
        assert!(t[0] < left + ms(300), "{me}");
    }
    let f = server(&sim).figures();
    assert_eq!((f.revokes, f.expired), (1, 0), "{f:?}");
    assert_eq!(server(&sim).keys(PREFIX.as_bytes()).len(), 2);
    assert_eq!(lost(&sim, &all[..2]), 2);
}

#[test]
fn a_node_that_dies_is_lost_when_its_lease_expires() {
    let (mut sim, all) = band(2, 3);
    sim.run_for(ms(4000));
    knows_all(&sim, &all).unwrap();
    let down = sim.now();
    sim.set_up(&all[2], false);
    sim.run_for(ms(1500));
    assert_eq!(lost(&sim, &all[..2]), 0, "the lease is still alive");
    sim.run_for(ms(3000));
    assert_eq!(server(&sim).figures().expired, 1);
    for me in &all[..2] {
        let t = times(sim.events(me.as_str()), "lost", all[2].as_str());
        assert_eq!(t.len(), 1, "{me}");
        // Its last keep-alive was at most a third of the TTL before it died.
        assert!(
            t[0] >= down + ms(2000) && t[0] <= down + ms(3300),
            "{me}: {}",
            t[0]
        );
    }
    assert_eq!(lost(&sim, &all[..2]), 2);
    // It comes back as a new process: a new lease, the same key, found again.
    sim.set_up(&all[2], true);
    sim.run_for(ms(3000));
    knows_all(&sim, &all).unwrap();
    assert_eq!(server(&sim).leases(), 3);
}

#[test]
fn a_restart_keeps_the_keys_and_breaks_the_watches_losing_no_one() {
    let (mut sim, all) = band(3, 3);
    sim.run_for(ms(3000));
    let before = server(&sim).figures();
    sim.restart_service(ETCD);
    sim.run_for(ms(6000));
    let f = server(&sim).figures();
    assert_eq!(f.restarts, 1);
    assert!(f.watches >= before.watches + 3, "{f:?}");
    assert_eq!(f.expired, 0, "leases renewed at the restart");
    assert_eq!(lost(&sim, &all), 0);
    assert_eq!(server(&sim).watching(), 3);
    knows_all(&sim, &all).unwrap();
    assert!(meshed(&sim, &all));
}

#[test]
fn a_server_down_for_longer_than_the_ttl_loses_no_one() {
    let (mut sim, all) = band(4, 3);
    sim.run_for(ms(3000));
    sim.service_fault(ETCD, ServiceFault::Down);
    sim.run_for(ms(10_000));
    for me in &all {
        assert!(failures(&sim, me, "refused") >= 3, "{me}");
    }
    // Far past the TTL, yet nobody is lost: etcd is down, not the nodes.
    assert_eq!(lost(&sim, &all), 0);
    assert!(meshed(&sim, &all));
    sim.service_fault(ETCD, ServiceFault::None);
    sim.run_for(ms(6000));
    assert_eq!(server(&sim).figures().expired, 0);
    assert_eq!(server(&sim).watching(), 3);
    assert_eq!(lost(&sim, &all), 0, "no flap after the outage");
    knows_all(&sim, &all).unwrap();
}

#[test]
fn a_stalled_server_catches_up_and_an_unreachable_one_is_reached_again() {
    let (mut sim, all) = band(5, 3);
    sim.run_for(ms(3000));
    // Hung for less than the TTL: what was held runs when it resumes, nobody is lost.
    sim.service_fault(ETCD, ServiceFault::Stall);
    sim.run_for(ms(1500));
    sim.service_fault(ETCD, ServiceFault::None);
    sim.run_for(ms(5000));
    assert_eq!(server(&sim).figures().expired, 0);
    assert_eq!(lost(&sim, &all), 0);
    knows_all(&sim, &all).unwrap();

    // Hung for longer than the TTL: the keep-alives waiting in its sockets renew the leases
    // it would expire when it resumes, or they lapse and everyone registers again.
    sim.service_fault(ETCD, ServiceFault::Stall);
    sim.run_for(ms(8000));
    assert_eq!(lost(&sim, &all), 0, "nothing is heard from a hung etcd");
    sim.service_fault(ETCD, ServiceFault::None);
    sim.run_for(ms(5000));
    assert!(server(&sim).figures().expired <= 3);
    assert_eq!(server(&sim).leases(), 3);
    assert_eq!(server(&sim).watching(), 3);
    knows_all(&sim, &all).unwrap();

    // Unreachable for a quarter of the TTL: every watch breaks, requests made meanwhile hang
    // until their deadline (a second), and yet nobody is lost.
    let (mut sim, all) = band_of(5, 3, 6, EtcdServer::new(), None);
    sim.run_for(ms(3000));
    sim.service_fault(ETCD, ServiceFault::Unreachable);
    sim.run_for(ms(1500));
    sim.service_fault(ETCD, ServiceFault::None);
    sim.run_for(ms(5000));
    for me in &all {
        assert!(failures(&sim, me, "unreachable") >= 1, "{me}");
    }
    assert_eq!(lost(&sim, &all), 0);
    assert_eq!(server(&sim).watching(), 3);
    knows_all(&sim, &all).unwrap();
}

#[test]
fn a_watch_cut_mid_stream_resumes_from_its_revision_without_reading_again() {
    let (mut sim, all) = band(6, 3);
    sim.run_for(ms(3000));
    let before = server(&sim).figures();
    server_mut(&mut sim).break_watches();
    // Written while nobody watches: the resumed watches replay it from the history.
    let ghost = n("app@10.1.0.9");
    server_mut(&mut sim).put(format!("{PREFIX}{ghost}").as_bytes(), b"x");
    sim.run_for(ms(3000));
    let f = server(&sim).figures();
    assert_eq!(f.ranges, before.ranges, "no node read the keys again");
    assert_eq!(f.watches, before.watches + 3);
    for me in &all {
        assert_eq!(failures(&sim, me, "resuming from revision"), 1, "{me}");
        assert_eq!(
            times(sim.events(me.as_str()), "discovered", ghost.as_str()).len(),
            1,
            "{me}"
        );
    }
    assert_eq!(lost(&sim, &all), 0);
}

#[test]
fn a_watch_resumed_from_a_compacted_revision_reads_the_keys_again() {
    let (mut sim, all) = band(7, 3);
    sim.run_for(ms(3000));
    let before = server(&sim).figures();
    let s = server_mut(&mut sim);
    s.break_watches();
    s.put(b"/elsewhere", b"x");
    let rev = s.revision();
    s.compact(rev);
    sim.run_for(ms(3000));
    let f = server(&sim).figures();
    assert_eq!(f.compacted_watches, 3, "{f:?}");
    assert_eq!(f.ranges, before.ranges + 3);
    assert_eq!(server(&sim).watching(), 3);
    assert_eq!(lost(&sim, &all), 0);
    knows_all(&sim, &all).unwrap();
    // And the watches from the new revision hear what comes next.
    sim.with_cluster(all[0].as_str(), |c, now| c.leave(now));
    sim.run_for(ms(500));
    assert_eq!(lost(&sim, &all[1..]), 2);
}

/// A watch that reaches its own `watch_timeout` is opened again from where it was: quietly,
/// without reading the keys again, and still hearing every change.
#[test]
fn a_watch_that_lasted_its_timeout_is_opened_again_quietly() {
    let mut sim = Sim::new(11, SimConfig::default());
    sim.serve_stream(ETCD, EtcdServer::new());
    let all: Vec<NodeName> = (1..=3).map(|i| n(&format!("app@10.1.0.{i}"))).collect();
    for me in &all {
        sim.add_node(me.clone(), ClusterConfig::new(), || {
            vec![topology_with(3, None, Some(2000))]
        });
    }
    sim.run_for(ms(3000));
    let before = server(&sim).figures();
    sim.run_for(ms(10_000));
    let f = server(&sim).figures();
    assert_eq!(f.ranges, before.ranges, "{f:?}");
    assert!(f.watches >= before.watches + 3 * 4, "{f:?}");
    assert_eq!(server(&sim).watching(), 3);
    for me in &all {
        let failed = count(sim.events(me.as_str()), "discovery_failed");
        assert_eq!(failed, 0, "{me}");
    }
    sim.with_cluster(all[0].as_str(), |c, now| c.leave(now));
    sim.run_for(ms(500));
    assert_eq!(lost(&sim, &all[1..]), 2);
}

/// etcd restarted with an empty data directory: revisions start again at 1, so a watch
/// resumed from the revision after the last one seen waits for a future that is hundreds of
/// changes away, and hears none of the nodes registering again nor leaving. A lease that is
/// gone now also reads the keys again and watches from there.
#[test]
fn after_etcd_lost_its_data_everyone_registers_again_and_a_node_that_dies_is_lost() {
    let (mut sim, all) = band(10, 3);
    sim.run_for(ms(3000));
    // Enough changes under the prefix that the revisions the nodes saw are far ahead of
    // the new store's.
    let churn = format!("{PREFIX}churn@10.9.9.9");
    for _ in 0..30 {
        server_mut(&mut sim).put(churn.as_bytes(), b"x");
        server_mut(&mut sim).delete(churn.as_bytes());
    }
    sim.run_for(ms(1000));
    server_mut(&mut sim).lose_data();
    sim.restart_service(ETCD);
    sim.run_for(ms(6000));
    assert_eq!(server(&sim).keys(PREFIX.as_bytes()).len(), 3);
    knows_all(&sim, &all).unwrap();
    sim.set_up(&all[2], false);
    sim.run_for(ms(5000));
    assert_eq!(server(&sim).figures().expired, 1);
    for me in &all[..2] {
        let t = times(sim.events(me.as_str()), "lost", all[2].as_str());
        assert_eq!(t.len(), 1, "{me} heard the lease expire");
    }
}

#[test]
fn with_authentication_tokens_are_renewed_after_a_restart_and_a_wrong_password_is_said() {
    let (mut sim, all) = band_of(
        8,
        3,
        3,
        EtcdServer::new().auth("app", "pw"),
        Some(("app", "pw")),
    );
    sim.run_for(ms(3000));
    knows_all(&sim, &all).unwrap();
    assert_eq!(server(&sim).figures().authentications, 3);
    sim.restart_service(ETCD);
    sim.run_for(ms(5000));
    // The restart forgot every token: each node got a new one.
    assert!(server(&sim).figures().authentications >= 6);
    assert_eq!(lost(&sim, &all), 0);
    assert_eq!(server(&sim).watching(), 3);
    knows_all(&sim, &all).unwrap();

    let (mut sim, all) = band_of(
        9,
        1,
        3,
        EtcdServer::new().auth("app", "pw"),
        Some(("app", "nope")),
    );
    sim.run_for(ms(3000));
    assert!(failures(&sim, &all[0], "authentication failed") >= 2);
    assert!(failures(&sim, &all[0], "check username and password") >= 2);
    assert_eq!(server(&sim).figures().grants, 0);
}

// ----- the seed band -------------------------------------------------------------------------

/// One seed: 3 to 5 nodes with a TTL of 2 to 6 s, and random chaos on etcd and on the nodes;
/// once healed, every node must know every other through etcd. The transcript of the run.
fn run_seed(seed: u64) -> (String, EtcdFigures) {
    let mut rng = Rng::from_seed({
        let mut s = [0u8; 32];
        s[..8].copy_from_slice(&seed.to_le_bytes());
        s[8..12].copy_from_slice(b"etcd");
        s
    });
    let k = rng.range_inclusive(3, 5) as usize;
    let ttl = rng.range_inclusive(2, 6);
    let history = rng.range_inclusive(2, 50) as usize;
    let etcd = EtcdServer::new().history(history);
    let (etcd, credentials) = if rng.chance(0.5) {
        (etcd.auth("band", "pw"), Some(("band", "pw")))
    } else {
        (etcd, None)
    };
    let (mut sim, all) = band_of(seed, k, ttl, etcd, credentials);
    sim.run_for(ms(2000));
    let until = sim.now() + ms(rng.range_inclusive(10_000, 40_000));
    while sim.now() < until {
        sim.run_for(ms(rng.range_inclusive(100, 4000)));
        let target = all[rng.range_inclusive(0, k as u64 - 1) as usize].clone();
        match rng.range_inclusive(0, 13) {
            13 if rng.chance(0.3) => {
                // etcd comes back with an empty data directory.
                server_mut(&mut sim).lose_data();
                sim.restart_service(ETCD);
            }
            12 => {
                // Someone deletes a node's key: it puts it again.
                server_mut(&mut sim).delete(format!("{PREFIX}{target}").as_bytes());
            }
            0 => sim.restart_service(ETCD),
            1 => sim.service_fault(ETCD, ServiceFault::Down),
            2 => sim.service_fault(ETCD, ServiceFault::Unreachable),
            3 => sim.service_fault(ETCD, ServiceFault::Stall),
            4 | 5 => sim.service_fault(ETCD, ServiceFault::None),
            6 => server_mut(&mut sim).break_watches(),
            7 => {
                // Compacted past where the watches are, then cut: they read the keys again.
                let s = server_mut(&mut sim);
                s.put(b"/elsewhere", b"x");
                let rev = s.revision();
                s.compact(rev);
                if rng.chance(0.7) {
                    s.break_watches();
                }
            }
            8 => sim.set_up(&target, false),
            9 => sim.set_up(&target, true),
            10 => {
                let (a, b): (Vec<&NodeName>, Vec<&NodeName>) =
                    all.iter().partition(|_| rng.chance(0.5));
                sim.partition(&[&a, &b]);
            }
            _ => sim.heal(),
        }
    }
    sim.heal();
    sim.service_fault(ETCD, ServiceFault::None);
    for me in &all {
        sim.set_up(me, true);
    }
    // A dead node's key outlives it by its TTL; the backoff is at most a third of it.
    sim.run_for(ms(ttl * 1000 * 2 + 3000));
    if let Err(e) = knows_all(&sim, &all) {
        panic!("seed {seed}: {e}");
    }
    assert!(
        sim.run_until_quiescent(ms(10_000)),
        "seed {seed}: not quiescent after healing"
    );
    assert!(meshed(&sim, &all), "seed {seed}: not meshed");
    // Every watch the server holds is one a node holds: none left behind by a node that
    // gave up on it.
    assert_eq!(server(&sim).watching(), k, "seed {seed}: watches held");
    let mut out = String::new();
    for me in &all {
        for (t, e) in sim.events(me.as_str()) {
            out.push_str(&format!("{t} {me} {e:?}\n"));
        }
        if let Some(c) = sim.cluster(me.as_str()) {
            out.push_str(&format!("{me} {:?}\n", c.metrics()));
        }
    }
    out.push_str(&format!("{:?}\n", server(&sim).figures()));
    (out, server(&sim).figures())
}

#[test]
fn etcd_seed_band() {
    if let Ok(one) = std::env::var("MUSTER_SIM_SEED") {
        run_seed(one.parse().expect("MUSTER_SIM_SEED is a number"));
        return;
    }
    let seeds: u64 = std::env::var("MUSTER_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64);
    let (mut expired, mut compacted, mut restarts, mut auths) = (0, 0, 0, 0);
    for seed in 0..seeds {
        let f = run_seed(seed).1;
        expired += f.expired;
        compacted += f.compacted_watches;
        restarts += f.restarts;
        auths += f.authentications;
    }
    // The chaos reached what it is for.
    eprintln!(
        "{seeds} seeds: {expired} leases expired, {compacted} watches compacted, {restarts} restarts, {auths} tokens"
    );
    if seeds >= 16 {
        assert!(expired > 0 && compacted > 0 && restarts > 0 && auths > 0);
    }
}

#[test]
fn the_etcd_band_replays_byte_for_byte() {
    for seed in [0, 1, 7] {
        let (a, b) = (run_seed(seed).0, run_seed(seed).0);
        assert!(a == b, "seed {seed}: two runs differ");
    }
    assert_ne!(run_seed(1).0, run_seed(2).0);
}
