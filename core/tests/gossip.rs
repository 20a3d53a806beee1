//! The Gossip strategy: in the simulator (many nodes, loss, partitions, modes), and driven by
//! hand for what an attacker on the network can send.
#![allow(clippy::unwrap_used)] // tests unwrap what they set up themselves

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use muster_core::config::Options;
use muster_core::proto::gossip::{self as wire, SecureKeys};
use muster_core::sim::{Sim, SimConfig};
use muster_core::strategy::gossip::{Gossip, GossipConfig};
use muster_core::{
    Answer, Cluster, ClusterConfig, ConnectPolicy, Event, Input, Instant, NodeName, Output,
    Request, Token, TopologySpec, Value,
};

fn gossip_config(pairs: &[(&str, Value)]) -> GossipConfig {
    let t: Vec<(String, Value)> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let mut o = Options::new("gossip", &t);
    let c = GossipConfig::from_options(&mut o).unwrap();
    o.finish().unwrap();
    c
}

fn gossip_spec(config: GossipConfig) -> TopologySpec {
    TopologySpec::new("gossip", Gossip::new(config))
        .policy(ConnectPolicy::default().backoff(ms(100), ms(2000)))
}

fn mesh(sim: &mut Sim, names: &[NodeName], config: impl Fn(usize) -> GossipConfig) {
    for (i, name) in names.iter().enumerate() {
        let c = config(i);
        sim.add_node(name.clone(), ClusterConfig::new(), move || {
            vec![gossip_spec(c.clone())]
        });
    }
}

fn names(n: usize) -> Vec<NodeName> {
    (0..n)
        .map(|i| NodeName::new(&format!("g{i}@10.0.0.{}", i + 1)).unwrap())
        .collect()
}

fn knows_everyone(sim: &Sim, names: &[NodeName]) -> bool {
    names.iter().all(|a| {
        let c = sim.cluster(a.as_str()).unwrap();
        names.iter().all(|b| a == b || c.is_wanted(b.as_str()))
    })
}

#[test]
fn plain_nodes_find_and_connect_each_other_and_never_themselves() {
    let mut sim = Sim::new(1, SimConfig::default().datagram_loss(0.05));
    let ns = names(8);
    mesh(&mut sim, &ns, |_| GossipConfig::default());
    sim.run_for(ms(20_000));
    assert!(knows_everyone(&sim, &ns));
    assert!(sim.run_until_quiescent(ms(30_000)));
    for a in &ns {
        for b in &ns {
            assert_eq!(sim.linked(a.as_str(), b.as_str()), a != b);
        }
        let ev = sim.events(a.as_str());
        assert!(
            ev.iter().all(|(_, e)| e.node() != Some(a)),
            "{a} never reports itself"
        );
        assert_eq!(count(ev, "rejected"), 0);
    }
}

#[test]
fn secure_nodes_with_the_secret_cluster_and_others_are_rejected_and_reported_rarely() {
    let mut sim = Sim::new(2, SimConfig::default().clock_skew(ms(2000)));
    let ns = names(4);
    let secret = |s: &str| gossip_config(&[("secret", Value::str(s))]);
    mesh(&mut sim, &ns, |i| {
        if i < 3 {
            secret("right")
        } else {
            secret("wrong")
        }
    });
    sim.run_for(ms(120_000));
    let good = &ns[..3];
    assert!(knows_everyone(&sim, good));
    for a in good {
        let c = sim.cluster(a.as_str()).unwrap();
        assert!(
            !c.is_wanted(ns[3].as_str()),
            "the wrong secret is never discovered"
        );
        let ev = sim.events(a.as_str());
        let reports = count(ev, "rejected");
        // About 48 heartbeats in two minutes from the outsider, counted every one, reported
        // once per report_interval (60 s) per sender address.
        assert!((1..=3).contains(&reports), "{reports} reports");
        assert!(
            c.metrics().rejected >= 30,
            "{} counted",
            c.metrics().rejected
        );
        let why = ev
            .iter()
            .find(|(_, e)| e.name() == "rejected")
            .unwrap()
            .1
            .reason()
            .unwrap()
            .to_string();
        assert!(why.contains("authentication failed"), "{why}");
    }
}

#[test]
fn a_mode_mismatch_is_reported_not_silently_ignored() {
    let mut sim = Sim::new(3, SimConfig::default());
    let ns = names(2);
    mesh(&mut sim, &ns, |i| {
        if i == 0 {
            gossip_config(&[("secret", Value::str("s"))])
        } else {
            GossipConfig::default()
        }
    });
    sim.run_for(ms(30_000));
    let secure = sim.events(ns[0].as_str());
    let plain = sim.events(ns[1].as_str());
    let reason = |ev: &[(Instant, Event)]| {
        ev.iter()
            .find(|(_, e)| e.name() == "rejected")
            .map(|(_, e)| e.reason().unwrap().to_string())
    };
    assert!(
        reason(secure)
            .unwrap()
            .contains("libcluster plaintext heartbeat, but this topology runs in secure mode")
    );
    assert!(
        reason(plain)
            .unwrap()
            .contains("muster secure-mode packet, but this topology runs in compat mode")
    );
}

#[test]
fn compat_nodes_with_a_secret_understand_each_other() {
    let mut sim = Sim::new(4, SimConfig::default());
    let ns = names(3);
    mesh(&mut sim, &ns, |_| {
        gossip_config(&[("secret", Value::str("x")), ("compat", Value::Bool(true))])
    });
    sim.run_for(ms(20_000));
    assert!(knows_everyone(&sim, &ns));
}

#[test]
fn unicast_peers_work_without_a_shared_group() {
    let mut sim = Sim::new(5, SimConfig::default());
    let ns = names(2);
    mesh(&mut sim, &ns, |i| {
        let (group, peer) = if i == 0 {
            ("239.1.1.1", "10.0.0.2:45892")
        } else {
            ("239.2.2.2", "10.0.0.1:45892")
        };
        gossip_config(&[
            ("multicast_addr", Value::str(group)),
            ("peers", Value::List(vec![Value::str(peer)])),
        ])
    });
    sim.run_for(ms(20_000));
    assert!(knows_everyone(&sim, &ns));
}

/// Gossip loses a node it still holds a connection to only with `expire_after`: a
/// connected node that goes quiet (here every datagram is lost, the links stay) stays wanted.
#[test]
fn gossip_loses_a_connected_node_only_with_expire_after() {
    for expire in [None, Some(10_000u64)] {
        let mut sim = Sim::new(6, SimConfig::default());
        let ns = names(3);
        mesh(&mut sim, &ns, |_| match expire {
            Some(e) => gossip_config(&[("expire_after", Value::Int(e as i64))]),
            None => GossipConfig::default(),
        });
        sim.run_for(ms(20_000));
        assert!(knows_everyone(&sim, &ns));
        sim.set_datagram_loss(1.0);
        sim.run_for(ms(60_000));
        let ev = sim.events(ns[0].as_str());
        let lost = times(ev, "lost", ns[2].as_str());
        let wanted = sim
            .cluster(ns[0].as_str())
            .unwrap()
            .is_wanted(ns[2].as_str());
        match expire {
            None => assert!(lost.is_empty() && wanted, "{ev:?}"),
            Some(_) => assert!(lost.len() == 1 && !wanted, "{ev:?}"),
        }
    }
}

#[test]
fn a_partition_heals_by_gossip_alone() {
    let mut sim = Sim::new(7, SimConfig::default().symmetric(true));
    let ns = names(6);
    mesh(&mut sim, &ns, |_| GossipConfig::default());
    assert!(sim.run_until_quiescent(ms(60_000)));
    let (a, b) = ns.split_at(3);
    let a: Vec<&NodeName> = a.iter().collect();
    let b: Vec<&NodeName> = b.iter().collect();
    sim.partition(&[&a, &b]);
    sim.run_for(ms(30_000));
    assert!(!sim.linked(ns[0].as_str(), ns[5].as_str()));
    sim.heal();
    // Unheard and cut off for longer than forget_after, the other side was lost: the next
    // heartbeats find it again.
    sim.run_for(ms(10_000));
    assert!(sim.run_until_quiescent(ms(60_000)));
    assert!(sim.linked(ns[0].as_str(), ns[5].as_str()));
}

// ----- driven by hand: what an attacker can send ------------------------------------------

const ME: &str = "me@10.0.0.1";
const T0: u64 = 1_700_000_000_000;

struct Rig {
    c: Cluster,
    socket: Token,
    now: Instant,
}

impl Rig {
    fn new(config: GossipConfig) -> Self {
        let mut c = Cluster::new(
            ClusterConfig::new().this_node(n(ME)).discovery_only(true),
            [3; 32],
        );
        c.set_unix_time(Instant::ZERO, Duration::from_millis(T0));
        c.add_topology(
            Instant::ZERO,
            "gossip",
            Box::new(Gossip::new(config)),
            ConnectPolicy::default(),
        )
        .unwrap();
        let Some(Output::Request {
            token,
            request: Request::OpenUdp(_),
        }) = c.poll_output()
        else {
            panic!("expected the socket to open")
        };
        let bound: SocketAddr = "0.0.0.0:45892".parse().unwrap();
        c.handle_input(
            Instant::ZERO,
            Input::Answer {
                token,
                answer: Answer::Opened(bound),
            },
        );
        let mut rig = Rig {
            c,
            socket: token,
            now: Instant::ZERO,
        };
        rig.drain();
        rig
    }

    fn drain(&mut self) -> Vec<Event> {
        let mut ev = Vec::new();
        while let Some(o) = self.c.poll_output() {
            if let Output::Event(e) = o {
                ev.push(e);
            }
        }
        ev
    }

    fn send(&mut self, from: &str, data: &[u8]) -> Vec<Event> {
        let from: SocketAddr = from.parse().unwrap();
        self.c.handle_input(
            self.now,
            Input::Datagram {
                socket: self.socket,
                from,
                data,
            },
        );
        self.drain()
    }
}

fn secure(keys: &SecureKeys, ts: u64, node: &str) -> Vec<u8> {
    let mut p = Vec::new();
    wire::write_secure(&mut p, keys, ts, [9; 16], node);
    p
}

#[test]
fn secure_mode_rejects_forged_flipped_replayed_stale_and_compat_packets_and_counts_each() {
    let mut rig = Rig::new(gossip_config(&[("secret", Value::str("s3cret"))]));
    let keys = SecureKeys::derive(b"s3cret");
    let good = secure(&keys, T0 + 10, "a@10.0.0.2");
    let ev = rig.send("10.0.0.2:45892", &good);
    assert_eq!(ev.iter().filter(|e| e.name() == "discovered").count(), 1);

    let mut attacks: Vec<(&str, Vec<u8>, &str)> = Vec::new();
    attacks.push((
        "10.0.0.9:1",
        secure(&SecureKeys::derive(b"guess"), T0 + 20, "evil@10.0.0.9"),
        "authentication failed",
    ));
    let mut flipped = secure(&keys, T0 + 30, "b@10.0.0.3");
    flipped[40] ^= 1;
    attacks.push(("10.0.0.8:1", flipped, "authentication failed"));
    attacks.push((
        "10.0.0.7:1",
        good.clone(),
        "replayed heartbeat from a@10.0.0.2",
    ));
    attacks.push((
        "10.0.0.6:1",
        secure(&keys, T0 - 60_000, "c@10.0.0.4"),
        "outside the replay window",
    ));
    let mut plain = Vec::new();
    wire::write_plain(&mut plain, "d@10.0.0.5");
    attacks.push(("10.0.0.5:1", plain, "libcluster plaintext heartbeat"));
    let mut compat = Vec::new();
    wire::write_compat_secret(
        &mut compat,
        &wire::compat_key(b"s3cret"),
        [1; 16],
        "e@10.0.0.6",
    );
    attacks.push(("10.0.0.4:1", compat, "not a muster secure-mode packet"));
    attacks.push(("10.0.0.3:1", vec![0u8; 4096], "larger than"));
    for (i, (from, packet, why)) in attacks.iter().enumerate() {
        let ev = rig.send(from, packet);
        assert_eq!(ev.len(), 1, "attack {i}: {ev:?}");
        assert_eq!(ev[0].name(), "rejected");
        assert!(
            ev[0].reason().unwrap().contains(why),
            "attack {i}: {}",
            ev[0]
        );
        assert_eq!(rig.c.metrics().rejected, i as u64 + 1);
    }
    // A second attack from a reported address is counted but not reported again.
    let ev = rig.send(
        "10.0.0.9:1",
        &secure(&SecureKeys::derive(b"guess"), T0 + 21, "evil@10.0.0.9"),
    );
    assert!(ev.is_empty());
    assert_eq!(rig.c.metrics().rejected, attacks.len() as u64 + 1);
    // A newer heartbeat from the real sender is accepted.
    let ev = rig.send("10.0.0.2:45892", &secure(&keys, T0 + 40, "a@10.0.0.2"));
    assert!(ev.is_empty());
    assert_eq!(rig.c.metrics().rejected, attacks.len() as u64 + 1);
    assert_eq!(rig.c.metrics().discovered, 1);
}

/// A sender forgotten (quiet past `forget_after`, not connected) is not forgotten by the
/// replay check: its last heartbeat, sent again within the replay window, is a replay.
#[test]
fn a_forgotten_senders_old_heartbeat_is_still_a_replay() {
    let mut rig = Rig::new(gossip_config(&[
        ("secret", Value::str("s3cret")),
        ("forget_after", Value::Int(1000)),
    ]));
    let keys = SecureKeys::derive(b"s3cret");
    let good = secure(&keys, T0 + 10, "a@10.0.0.2");
    let ev = rig.send("10.0.0.2:45892", &good);
    assert_eq!(ev.iter().filter(|e| e.name() == "discovered").count(), 1);
    rig.now = Instant::ZERO + Duration::from_secs(3);
    rig.c.handle_timeout(rig.now);
    let ev = rig.drain();
    assert_eq!(
        ev.iter().filter(|e| e.name() == "lost").count(),
        1,
        "{ev:?}"
    );
    // Well inside the 30 s window: the same packet again is a replay, not a node back.
    let ev = rig.send("10.0.0.7:1", &good);
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert!(ev[0].reason().unwrap().contains("replayed"), "{}", ev[0]);
    assert_eq!(rig.c.metrics().discovered, 1);
    // A newer heartbeat brings it back.
    let ev = rig.send("10.0.0.2:45892", &secure(&keys, T0 + 3000, "a@10.0.0.2"));
    assert_eq!(ev.iter().filter(|e| e.name() == "discovered").count(), 1);
}

#[test]
fn a_flood_of_senders_is_bounded_by_max_nodes() {
    let mut rig = Rig::new(gossip_config(&[("max_nodes", Value::Int(50))]));
    for i in 0..5000 {
        let mut p = Vec::new();
        wire::write_plain(&mut p, &format!("n{i}@10.1.{}.{}", i / 256, i % 256));
        rig.send("10.9.9.9:1", &p);
    }
    assert_eq!(rig.c.metrics().discovered, 50);
    assert_eq!(rig.c.metrics().rejected, 4950);
    assert!(muster_core::sim::table_capacity(&rig.c) <= 64);
}

#[test]
fn heartbeats_go_to_the_group_and_every_peer_in_the_configured_form() {
    let mut c = Cluster::new(
        ClusterConfig::new().this_node(n(ME)).discovery_only(true),
        [4; 32],
    );
    let config = gossip_config(&[
        (
            "peers",
            Value::List(vec![
                Value::str("10.0.0.7:4000"),
                Value::str("host.example:5000"),
            ]),
        ),
        ("heartbeat_max_ms", Value::Int(100)),
    ]);
    c.add_topology(
        Instant::ZERO,
        "g",
        Box::new(Gossip::new(config)),
        ConnectPolicy::default(),
    )
    .unwrap();
    let Some(Output::Request {
        token,
        request: Request::OpenUdp(opts),
    }) = c.poll_output()
    else {
        panic!()
    };
    assert_eq!(opts.bind, "0.0.0.0:45892".parse().unwrap());
    assert!(opts.reuse && opts.broadcast);
    let m = opts.multicast.unwrap();
    assert_eq!(
        (m.group.to_string(), m.ttl, m.loopback),
        ("233.252.1.32".to_string(), 1, true)
    );
    c.handle_input(
        Instant::ZERO,
        Input::Answer {
            token,
            answer: Answer::Opened("0.0.0.0:45892".parse().unwrap()),
        },
    );
    let mut sent = Vec::new();
    let mut at = Instant::ZERO;
    for _ in 0..20 {
        while let Some(o) = c.poll_output() {
            if let Output::Request {
                request: Request::SendDatagram { to, data, .. },
                ..
            } = o
            {
                sent.push((at, to.to_string(), data));
            }
        }
        at = c.poll_timeout().unwrap();
        c.handle_timeout(at);
    }
    let mut expected = Vec::new();
    wire::write_plain(&mut expected, ME);
    assert!(sent.iter().all(|(_, _, d)| d[..] == expected[..]));
    let to_group: Vec<Instant> = sent
        .iter()
        .filter(|(_, to, _)| to == "233.252.1.32:45892")
        .map(|(t, _, _)| *t)
        .collect();
    assert_eq!(
        to_group[0],
        Instant::ZERO,
        "the first heartbeat goes at once"
    );
    for w in to_group.windows(2) {
        let gap = w[1].saturating_duration_since(w[0]);
        assert!(gap >= ms(1) && gap <= ms(100), "{gap:?}");
    }
    assert_eq!(
        sent.iter()
            .filter(|(_, to, _)| to == "10.0.0.7:4000")
            .count(),
        to_group.len()
    );
    assert_eq!(
        sent.iter()
            .filter(|(_, to, _)| to == "host.example:5000")
            .count(),
        to_group.len()
    );
}

#[test]
fn a_socket_that_cannot_open_is_reported_and_retried() {
    let mut c = Cluster::new(ClusterConfig::new().this_node(n(ME)), [5; 32]);
    c.add_topology(
        Instant::ZERO,
        "g",
        Box::new(Gossip::new(GossipConfig::default())),
        ConnectPolicy::default(),
    )
    .unwrap();
    let Some(Output::Request { token, .. }) = c.poll_output() else {
        panic!()
    };
    let why = "cannot bind UDP 0.0.0.0:45892: Address already in use (os error 98)";
    c.handle_input(
        Instant::ZERO,
        Input::Answer {
            token,
            answer: Answer::Failed(&muster_core::Failure::new(
                muster_core::FailureKind::AddrInUse,
                why,
            )),
        },
    );
    let Some(Output::Event(e)) = c.poll_output() else {
        panic!()
    };
    assert_eq!(e.name(), "discovery_failed");
    assert!(e.reason().unwrap().contains(why));
    let retry = c.poll_timeout().unwrap();
    c.handle_timeout(retry);
    assert!(matches!(
        c.poll_output(),
        Some(Output::Request {
            request: Request::OpenUdp(_),
            ..
        })
    ));
}

#[test]
fn bad_options_name_their_key() {
    let cases: &[(&str, Value, &str)] = &[
        (
            "multicast_addr",
            Value::str("10.0.0.1"),
            "gossip.multicast_addr",
        ),
        (
            "multicast_addr",
            Value::str("nope"),
            "gossip.multicast_addr",
        ),
        ("port", Value::Int(70000), "gossip.port"),
        ("secret", Value::str(""), "gossip.secret"),
        ("multicast_ttl", Value::Int(300), "gossip.multicast_ttl"),
        ("heartbeat_max_ms", Value::Int(0), "gossip.heartbeat_max_ms"),
    ];
    for (k, v, key) in cases {
        let t = vec![(k.to_string(), v.clone())];
        let mut o = Options::new("gossip", &t);
        let e = GossipConfig::from_options(&mut o).unwrap_err();
        assert_eq!(&e.key, key, "{e}");
    }
    let t = vec![(
        "peers".to_string(),
        Value::List(vec![Value::str("::1:45892")]),
    )];
    let e = GossipConfig::from_options(&mut Options::new("gossip", &t)).unwrap_err();
    assert_eq!(e.key, "gossip.peers[0]");
    assert!(e.to_string().contains("bracket IPv6"), "{e}");
}

/// A node joining an established cluster learns every member from the answers to its first
/// heartbeat, not from their next random heartbeats: here nobody's next heartbeat comes for an
/// hour, so only answers can teach it — in every mode.
#[test]
fn a_newcomer_learns_every_member_from_the_answers_to_its_first_heartbeat() {
    for mode in [
        vec![],
        vec![("secret", Value::str("s"))],
        vec![("secret", Value::str("s")), ("compat", Value::Bool(true))],
    ] {
        let mut pairs = mode.clone();
        pairs.push(("heartbeat_max_ms", Value::Int(3_600_000)));
        let config = gossip_config(&pairs);
        let mut sim = Sim::new(9, SimConfig::default());
        let members: Vec<NodeName> = (0..8)
            .map(|i| n(&format!("m{i}@10.0.0.{}", i + 1)))
            .collect();
        mesh(&mut sim, &members, |_| config.clone());
        sim.run_for(ms(10_000));
        let newcomer = n("new@10.0.1.1");
        mesh(&mut sim, std::slice::from_ref(&newcomer), |_| {
            config.clone()
        });
        sim.run_for(ms(10_000));
        let events = sim.events("new@10.0.1.1");
        assert_eq!(count(events, "discovered"), 8, "{mode:?}: {events:?}");
        assert_eq!(count(events, "connected"), 8, "{mode:?}");
        for m in &members {
            assert!(sim.linked(m.as_str(), "new@10.0.1.1"), "{mode:?}: {m}");
        }
    }
}

/// Answers are budgeted: a flood of new senders (here 500 forged names in plaintext mode)
/// makes a node send at most one early heartbeat per 100 ms, never one per packet.
#[test]
fn answers_to_newcomers_are_budgeted() {
    let config = gossip_config(&[("heartbeat_max_ms", Value::Int(3_600_000))]);
    let mut c = Cluster::new(ClusterConfig::new().this_node(n("me@10.0.0.1")), [5; 32]);
    c.add(Instant::ZERO, gossip_spec(config)).unwrap();
    let mut now = Instant::ZERO;
    let (socket, _) = drain_requests(&mut c)
        .into_iter()
        .find(|(_, r)| matches!(r, Request::OpenUdp(_)))
        .unwrap();
    c.handle_input(
        now,
        Input::Answer {
            token: socket,
            answer: Answer::Opened("0.0.0.0:45892".parse().unwrap()),
        },
    );
    let mut sent = count_sends(drain_requests(&mut c));
    assert_eq!(sent, 1, "the first heartbeat");
    let from: SocketAddr = "10.6.6.6:45892".parse().unwrap();
    for i in 0..500 {
        let mut packet = Vec::new();
        wire::write_plain(
            &mut packet,
            &format!("forged{i}@10.9.{}.{}", i / 250, i % 250),
        );
        c.handle_input(
            now,
            Input::Datagram {
                socket,
                from,
                data: &packet,
            },
        );
        sent += count_sends(drain_requests(&mut c));
        now += ms(1);
        while c.poll_timeout().is_some_and(|t| t <= now) {
            c.handle_timeout(now);
            sent += count_sends(drain_requests(&mut c));
        }
    }
    // 500 ms of flood: the first heartbeat, then at most one answer per 100 ms (and its
    // spread may push the last past the end).
    assert!((2..=7).contains(&sent), "{sent} heartbeats sent");
}

fn drain_requests(c: &mut Cluster) -> Vec<(Token, Request)> {
    let mut out = Vec::new();
    while let Some(o) = c.poll_output() {
        if let Output::Request { token, request } = o {
            out.push((token, request));
        }
    }
    out
}

fn count_sends(rs: Vec<(Token, Request)>) -> usize {
    rs.iter()
        .filter(|(_, r)| matches!(r, Request::SendDatagram { .. }))
        .count()
}

/// A rolling deploy is quiet: a gossip node that stops is retried while it might come back,
/// then — unheard for three heartbeat ranges and no longer connected — it is lost and no
/// longer retried; a node that is still connected is never lost this way. When it comes back
/// its first heartbeat finds it again.
#[test]
fn a_stopped_gossip_node_is_lost_and_no_longer_retried() {
    let config = gossip_config(&[]);
    let mut sim = Sim::new(11, SimConfig::default());
    let names: Vec<NodeName> = (0..4)
        .map(|i| n(&format!("r{i}@10.0.0.{}", i + 1)))
        .collect();
    mesh(&mut sim, &names, |_| config.clone());
    sim.run_for(ms(30_000));
    let gone = &names[3];
    sim.set_up(gone, false);
    sim.run_for(ms(600_000));
    let events = sim.events("r0@10.0.0.1");
    let failed = times(events, "connect_failed", "r3@10.0.0.4");
    let lost = times(events, "lost", "r3@10.0.0.4");
    assert_eq!(lost.len(), 1);
    // Retried (with backoff) only until it was lost; none in the ten minutes since.
    assert!(failed.iter().all(|t| *t <= lost[0]), "{failed:?} {lost:?}");
    assert!(failed.len() <= 20, "{} retries", failed.len());
    assert_eq!(
        count(events, "lost"),
        1,
        "the connected ones stay: {events:?}"
    );
    sim.set_up(gone, true);
    sim.run_for(ms(30_000));
    assert!(sim.linked("r0@10.0.0.1", "r3@10.0.0.4"));
}
