//! The cluster as an Erlang node, at the sans-IO level: the requests it makes to listen,
//! register with EPMD and find a node, and what it does with EPMD's answers. (Against real
//! `epmd` and `erl`, on every adapter: the conformance suite and tests/erlang_dist.rs.)
#![allow(clippy::unwrap_used)] // tests unwrap what they set up themselves

use std::net::SocketAddr;
use std::time::Duration;

use muster_core::dist::DistConfig;
use muster_core::proto::epmd;
use muster_core::strategy::epmd::{Epmd, EpmdConfig};
use muster_core::{
    Answer, Cluster, ClusterConfig, Endpoint, Event, Input, Instant, Node, Output, Request, Token,
    TopologySpec,
};

const EPMD: u16 = 4400;

fn cluster() -> Cluster {
    let me = "rust@127.0.0.1".parse().unwrap();
    let config = ClusterConfig::new()
        .this_node("rust@127.0.0.1".parse().unwrap())
        .erlang(DistConfig::new(me, "cookie").epmd_port(EPMD));
    Cluster::new(config, [7; 32])
}

fn drain(c: &mut Cluster) -> (Vec<(Token, Request)>, Vec<Event>) {
    let mut requests = Vec::new();
    let mut events = Vec::new();
    while let Some(out) = c.poll_output() {
        match out {
            Output::Request { token, request } => requests.push((token, request)),
            Output::Event(e) => events.push(e),
            _ => {}
        }
    }
    (requests, events)
}

fn answer(c: &mut Cluster, now: Instant, token: Token, a: Answer<'_>) -> Vec<(Token, Request)> {
    c.handle_input(now, Input::Answer { token, answer: a });
    drain(c).0
}

fn only(rs: Vec<(Token, Request)>) -> (Token, Request) {
    assert_eq!(rs.len(), 1, "{rs:?}");
    rs.into_iter().next().unwrap()
}

fn topology() -> TopologySpec {
    TopologySpec::new(
        "static",
        Epmd::new(EpmdConfig::new([Node::new("a@10.0.0.2".parse().unwrap())])),
    )
}

/// Drives the start: listen, connect to the local EPMD, send ALIVE2 (checking each request);
/// returns the registration stream's token, awaiting EPMD's reply.
fn until_epmd_replies(c: &mut Cluster, now: Instant) -> Token {
    let (listen, r) = only(drain(c).0);
    assert!(matches!(r, Request::Listen { .. }), "{r:?}");
    let local: SocketAddr = "0.0.0.0:9100".parse().unwrap();
    let (reg, r) = only(answer(c, now, listen, Answer::Opened(local)));
    match r {
        Request::OpenStream { to, .. } => {
            assert_eq!(to, Endpoint::Addr(([127, 0, 0, 1], EPMD).into()))
        }
        other => panic!("{other:?}"),
    }
    let (_, r) = only(answer(
        c,
        now,
        reg,
        Answer::Opened(([127, 0, 0, 1], EPMD).into()),
    ));
    let Request::Write { stream, data } = r else {
        panic!("{r:?}")
    };
    assert_eq!(stream, reg);
    let entry = epmd::NodeEntry::new("rust", 9100, true);
    assert_eq!(
        &data[..],
        &epmd::alive2_request(&entry)[..],
        "ALIVE2 with our port"
    );
    reg
}

/// Listens and registers; returns the requests that follow (the Accept).
fn registered(c: &mut Cluster, now: Instant) -> Vec<(Token, Request)> {
    let reg = until_epmd_replies(c, now);
    answer(c, now, reg, Answer::Data(&epmd::alive2_reply(0, 3)))
}

#[test]
fn it_listens_then_registers_then_accepts() {
    let mut c = cluster();
    let rs = registered(&mut c, Instant::ZERO);
    let (_, r) = only(rs);
    assert!(matches!(r, Request::Accept { .. }), "{r:?}");
}

#[test]
fn a_connect_asked_before_the_registration_waits_for_it() {
    let mut c = cluster();
    let now = Instant::ZERO;
    c.add(now, topology()).unwrap();
    let reg = until_epmd_replies(&mut c, now);
    // The static topology's connect is held, not failed, while EPMD has not answered.
    assert_eq!(c.metrics().connect_failed, 0);
    let rs = answer(&mut c, now, reg, Answer::Data(&epmd::alive2_reply(0, 3)));
    let lookup = rs
        .iter()
        .find_map(|(_, r)| match r {
            Request::Exchange(x) => Some(x.clone()),
            _ => None,
        })
        .expect("the PORT_PLEASE2 lookup once registered");
    assert_eq!(
        lookup.to,
        Endpoint::Host {
            host: "10.0.0.2".into(),
            port: EPMD
        }
    );
    assert_eq!(&lookup.send[..], &epmd::port_please_request("a")[..]);
}

#[test]
fn a_name_epmd_refuses_fails_the_waiting_connects_and_says_why() {
    let mut c = cluster();
    let now = Instant::ZERO;
    c.add(now, topology()).unwrap();
    let reg = until_epmd_replies(&mut c, now);
    c.handle_input(
        now,
        Input::Answer {
            token: reg,
            answer: Answer::Data(&epmd::alive2_reply(1, 0)),
        },
    );
    let (requests, events) = drain(&mut c);
    let failed = events
        .iter()
        .find(|e| e.name() == "connect_failed")
        .expect("the waiting connect fails");
    assert!(
        failed.reason().unwrap().contains("is the name taken?"),
        "{failed}"
    );
    // The registration is tried again later, not at once.
    assert!(
        !requests
            .iter()
            .any(|(_, r)| matches!(r, Request::OpenStream { .. }))
    );
    let again = c.poll_timeout().expect("a retry");
    c.handle_timeout(again.saturating_add(Duration::from_millis(1)));
    let (requests, _) = drain(&mut c);
    assert!(
        requests
            .iter()
            .any(|(_, r)| matches!(r, Request::OpenStream { .. })),
        "{requests:?}"
    );
}

#[test]
fn a_node_epmd_does_not_know_is_a_failed_connect_naming_it() {
    let now = Instant::ZERO;
    // The topology's connect waits for the registration, then asks a's EPMD.
    let mut c = cluster();
    c.add(now, topology()).unwrap();
    let reg = until_epmd_replies(&mut c, now);
    let rs = answer(&mut c, now, reg, Answer::Data(&epmd::alive2_reply(0, 3)));
    let (lookup, _) = rs
        .into_iter()
        .find(|(_, r)| matches!(r, Request::Exchange(_)))
        .unwrap();
    let _ = answer(&mut c, now, lookup, Answer::Data(&epmd::port2_reply(None)));
    c.handle_input(
        now,
        Input::Answer {
            token: lookup,
            answer: Answer::Closed,
        },
    );
    let (_, events) = drain(&mut c);
    let failed = events
        .iter()
        .find(|e| e.name() == "connect_failed")
        .expect("connect_failed");
    assert!(
        failed
            .reason()
            .unwrap()
            .contains("a@10.0.0.2 is not registered with EPMD on 10.0.0.2"),
        "{failed}"
    );
}

#[test]
fn leaving_closes_the_listener_and_the_registration() {
    let mut c = cluster();
    let now = Instant::ZERO;
    let reg = until_epmd_replies(&mut c, now);
    let (accept, _) = only(answer(
        &mut c,
        now,
        reg,
        Answer::Data(&epmd::alive2_reply(0, 3)),
    ));
    assert!(!c.is_left());
    c.leave(now);
    let (requests, _) = drain(&mut c);
    let closed: Vec<Token> = requests
        .iter()
        .filter_map(|(_, r)| match r {
            Request::Cancel { token } => Some(*token),
            _ => None,
        })
        .collect();
    assert!(closed.contains(&reg), "the registration: {closed:?}");
    assert!(closed.contains(&accept), "the pending accept: {closed:?}");
    assert_eq!(closed.len(), 3, "and the listener: {closed:?}");
    assert!(c.is_left());
    // A cluster that left takes no more topologies, and says so as what it is.
    assert_eq!(
        c.add(now, topology()).unwrap_err(),
        muster_core::AddTopologyError::Stopped
    );
}

// ----- hostile and racing peers --------------------------------------------------------------

use muster_core::dist::{Link, LinkConfig, LinkEvent};
use muster_core::{FailureKind, NodeName, Rng};

fn node(s: &str) -> NodeName {
    s.parse().unwrap()
}

/// A cluster that is rust@127.0.0.1, its Erlang node registered, dialing `peers` through a
/// static topology; returns it and the requests after registration.
fn dialing(
    peers: &[&str],
    dist: impl FnOnce(DistConfig) -> DistConfig,
) -> (Cluster, Vec<(Token, Request)>) {
    let me = node("rust@127.0.0.1");
    let config = ClusterConfig::new()
        .this_node(me.clone())
        .erlang(dist(DistConfig::new(me, "cookie").epmd_port(EPMD)));
    let mut c = Cluster::new(config, [7; 32]);
    let now = Instant::ZERO;
    if !peers.is_empty() {
        let hosts = peers.iter().map(|p| Node::new(node(p)));
        c.add(
            now,
            TopologySpec::new("static", Epmd::new(EpmdConfig::new(hosts))),
        )
        .unwrap();
    }
    let rs = registered(&mut c, now);
    (c, rs)
}

fn accept_token(rs: &[(Token, Request)]) -> Token {
    rs.iter()
        .find_map(|(t, r)| matches!(r, Request::Accept { .. }).then_some(*t))
        .expect("an Accept")
}

/// Moves bytes between the cluster's stream `stream` and a peer's `link` until both are
/// quiet; returns every request and event the cluster made meanwhile.
fn pump(
    c: &mut Cluster,
    now: Instant,
    stream: Token,
    link: &mut Link,
) -> (Vec<(Token, Request)>, Vec<Event>) {
    let (mut all, mut events) = (Vec::new(), Vec::new());
    loop {
        let mut moved = false;
        while let Some(bytes) = link.poll_transmit() {
            moved = true;
            c.handle_input(
                now,
                Input::Answer {
                    token: stream,
                    answer: Answer::Data(&bytes),
                },
            );
        }
        let (rs, es) = drain(c);
        events.extend(es);
        for (t, r) in rs {
            if let Request::Write { stream: s, data } = &r
                && *s == stream
            {
                moved = true;
                link.handle_data(now, data);
            }
            all.push((t, r));
        }
        if !moved {
            return (all, events);
        }
    }
}

fn peer_link(me: &str, to: &str, cookie: &str) -> Link {
    let cfg = LinkConfig::new(node(me), cookie, 5);
    Link::connect(cfg, node(to), Instant::ZERO, &mut Rng::from_seed([3; 32]))
}

/// OTP's rule for a simultaneous connect: the node with the greater name wins. Here the peer
/// does: this node drops its own attempt (no second link), answers the peer `ok_simultaneous`,
/// and the connect is answered by the peer's link — connected, with no failure and no
/// disconnect on the way.
#[test]
fn a_simultaneous_connect_the_peer_wins_is_one_link_and_no_failure() {
    let now = Instant::ZERO;
    let (mut c, rs) = dialing(&["z@10.0.0.2"], |d| d);
    let acc = accept_token(&rs);
    let (lookup, _) = rs
        .iter()
        .find(|(_, r)| matches!(r, Request::Exchange(_)))
        .unwrap();
    let entry = epmd::NodeEntry::new("z", 9200, true);
    answer(
        &mut c,
        now,
        *lookup,
        Answer::Data(&epmd::port2_reply(Some(&entry))),
    );
    let rs = answer(&mut c, now, *lookup, Answer::Closed);
    let (ours, _) = rs
        .iter()
        .find(|(_, r)| matches!(r, Request::OpenStream { .. }))
        .expect("our own dial");
    let ours = *ours;
    answer(
        &mut c,
        now,
        ours,
        Answer::Opened("10.0.0.2:9200".parse().unwrap()),
    );
    // Meanwhile z connects to us.
    answer(
        &mut c,
        now,
        acc,
        Answer::Accepted("10.0.0.2:5555".parse().unwrap()),
    );
    let mut z = peer_link("z@10.0.0.2", "rust@127.0.0.1", "cookie");
    let (rs, events) = pump(&mut c, now, acc, &mut z);
    assert!(
        rs.iter()
            .any(|(_, r)| matches!(r, Request::Cancel { token } if *token == ours)),
        "our own attempt is dropped: {rs:?}"
    );
    assert!(z.is_up(), "z's link is up");
    let names: Vec<&str> = events.iter().map(|e| e.name()).collect();
    assert!(names.contains(&"connected"), "{names:?}");
    assert!(
        !names.contains(&"connect_failed") && !names.contains(&"disconnected"),
        "{names:?}"
    );
    assert_eq!(c.members().count(), 1);
}

/// The other half of the rule: this node's name is the greater, so it refuses the peer's
/// attempt (`nok`, sent before the stream closes), which is no failure and not reported, and
/// its own attempt is the one link.
#[test]
fn a_refused_simultaneous_connect_is_no_failure_and_ours_is_the_one_link() {
    let now = Instant::ZERO;
    let (mut c, rs) = dialing(&["a@10.0.0.2"], |d| d);
    let acc = accept_token(&rs);
    let (lookup, _) = rs
        .iter()
        .find(|(_, r)| matches!(r, Request::Exchange(_)))
        .unwrap();
    // a's attempt reaches us first; our name is greater, so we refuse it (`nok`) and keep
    // our own, as OTP does — the refusal is sent, and is no failure of ours.
    answer(
        &mut c,
        now,
        acc,
        Answer::Accepted("10.0.0.2:5555".parse().unwrap()),
    );
    let mut a = peer_link("a@10.0.0.2", "rust@127.0.0.1", "cookie");
    let (_, events) = pump(&mut c, now, acc, &mut a);
    assert!(a.lost_race(), "a heard `nok`");
    assert!(events.iter().all(|e| e.name() != "rejected"), "{events:?}");
    // Our own dial goes on and is the one link.
    let entry = epmd::NodeEntry::new("a", 9200, true);
    answer(
        &mut c,
        now,
        *lookup,
        Answer::Data(&epmd::port2_reply(Some(&entry))),
    );
    let rs = answer(&mut c, now, *lookup, Answer::Closed);
    assert_eq!(
        rs.iter()
            .filter(|(_, r)| matches!(r, Request::OpenStream { .. }))
            .count(),
        1
    );
    assert_eq!(c.metrics().connect_failed, 0);
}

/// A peer that presents another cookie is reported — with its address, escaped — once per
/// address in a while, and every one counted.
#[test]
fn a_wrong_cookie_inbound_is_reported_once_per_address_and_counted() {
    let now = Instant::ZERO;
    let (mut c, rs) = dialing(&[], |d| d);
    let mut acc = accept_token(&rs);
    let mut reports = Vec::new();
    for _ in 0..3 {
        let rs = answer(
            &mut c,
            now,
            acc,
            Answer::Accepted("10.6.6.6:4000".parse().unwrap()),
        );
        let next = accept_token(&rs);
        let mut evil = peer_link("evil@10.6.6.6", "rust@127.0.0.1", "not the cookie");
        let (_, events) = pump(&mut c, now, acc, &mut evil);
        reports.extend(events.into_iter().filter(|e| e.name() == "rejected"));
        acc = next;
    }
    assert_eq!(reports.len(), 1, "{reports:?}");
    let Event::Rejected {
        topology,
        from,
        reason,
    } = &reports[0]
    else {
        unreachable!()
    };
    assert_eq!(&**topology, "erlang");
    assert_eq!(*from, Some("10.6.6.6:4000".parse().unwrap()));
    assert_eq!(reason.code(), "unauthenticated", "{reason}");
    assert_eq!(c.metrics().inbound_failed, 3);
    assert_eq!(c.members().count(), 0);
}

/// A failed accept (out of descriptors) is not asked again at once: it backs off, doubling,
/// and the run of failures is reported once.
#[test]
fn a_failed_accept_backs_off_and_is_reported_once() {
    let now = Instant::ZERO;
    let (mut c, rs) = dialing(&[], |d| d);
    let mut acc = accept_token(&rs);
    let emfile = muster_core::Failure::new(FailureKind::Resources, "Too many open files");
    let mut waits = Vec::new();
    let mut t = now;
    let mut reports = 0;
    for _ in 0..4 {
        c.handle_input(
            t,
            Input::Answer {
                token: acc,
                answer: Answer::Failed(&emfile),
            },
        );
        let (rs, events) = drain(&mut c);
        reports += events.iter().filter(|e| e.name() == "rejected").count();
        assert!(
            !rs.iter().any(|(_, r)| matches!(r, Request::Accept { .. })),
            "not at once: {rs:?}"
        );
        let at = c.poll_timeout().unwrap();
        waits.push(at.saturating_duration_since(t));
        t = at;
        c.handle_timeout(t);
        acc = accept_token(&drain(&mut c).0);
    }
    assert_eq!(reports, 1);
    assert!(waits.windows(2).all(|w| w[1] > w[0]), "doubling: {waits:?}");
    assert_eq!(c.metrics().accept_failed, 4);
}

/// No more than `max_handshakes` inbound connections are in handshake: one more closes the
/// oldest, so idle connections cannot keep a real peer out, and it is said once.
#[test]
fn inbound_handshakes_are_capped_by_closing_the_oldest() {
    let now = Instant::ZERO;
    let (mut c, rs) = dialing(&[], |d| d.max_handshakes(2));
    let mut acc = accept_token(&rs);
    let mut accepted = Vec::new();
    let mut reports = 0;
    let mut cancelled = Vec::new();
    for port in 1..=4u16 {
        accepted.push(acc);
        c.handle_input(
            now,
            Input::Answer {
                token: acc,
                answer: Answer::Accepted(SocketAddr::from(([10, 6, 6, 6], port))),
            },
        );
        let (rs, events) = drain(&mut c);
        reports += events
            .iter()
            .filter(|e| e.name() == "rejected" && e.code() == Some("over_limit"))
            .count();
        cancelled.extend(rs.iter().filter_map(|(_, r)| match r {
            Request::Cancel { token } => Some(*token),
            _ => None,
        }));
        acc = accept_token(&rs);
    }
    assert_eq!(
        cancelled,
        accepted[..2].to_vec(),
        "the third closes the first, the fourth the second"
    );
    assert_eq!(reports, 1, "said once while the cap holds");
    assert_eq!(c.metrics().inbound_failed, 2);
    // The two left fail at the handshake deadline.
    let at = c.poll_timeout().unwrap();
    c.handle_timeout(at);
    drain(&mut c);
    assert_eq!(c.metrics().inbound_failed, 4);
}

/// The link's own part of OTP's rule: told a peer holds a live connection to us, it asks its
/// owner, and gives way when the owner holds a link up.
#[test]
fn a_link_asked_alive_gives_way_when_told_to() {
    let now = Instant::ZERO;
    let mut rng = Rng::from_seed([1; 32]);
    let mut ours = Link::connect(
        LinkConfig::new(node("rust@127.0.0.1"), "cookie", 3),
        node("a@10.0.0.2"),
        now,
        &mut rng,
    );
    let mut theirs = Link::accept(
        LinkConfig::new(node("a@10.0.0.2"), "cookie", 4),
        now,
        &mut rng,
    );
    let name = ours.poll_transmit().unwrap();
    theirs.handle_data(now, &name);
    assert!(matches!(theirs.poll_event(), Some(LinkEvent::Hello { .. })));
    theirs.admit(now, muster_core::dist::Admission::Alive);
    let status = theirs.poll_transmit().unwrap();
    ours.handle_data(now, &status);
    assert!(matches!(ours.poll_event(), Some(LinkEvent::Alive { .. })));
    ours.answer_alive(false);
    let reply = ours.poll_transmit().unwrap();
    assert!(reply.ends_with(b"false"), "{reply:?}");
    assert!(matches!(ours.poll_event(), Some(LinkEvent::Down { .. })));
    assert!(ours.lost_race(), "its connection stays, and counts");
}

/// A cluster with no topology that accepted a connection from z@10.0.0.2; returns it, the
/// accepted stream and z's side of the link (nothing sent yet).
fn z_connects_to_us(now: Instant) -> (Cluster, Token, Link) {
    let (mut c, rs) = dialing(&[], |d| d);
    let acc = accept_token(&rs);
    answer(
        &mut c,
        now,
        acc,
        Answer::Accepted("10.0.0.2:5555".parse().unwrap()),
    );
    (c, acc, peer_link("z@10.0.0.2", "rust@127.0.0.1", "cookie"))
}

/// Feeds the peer's pending bytes to the cluster once; returns what the cluster did.
fn feed(
    c: &mut Cluster,
    now: Instant,
    stream: Token,
    link: &mut Link,
) -> (Vec<(Token, Request)>, Vec<Event>) {
    while let Some(bytes) = link.poll_transmit() {
        c.handle_input(
            now,
            Input::Answer {
                token: stream,
                answer: Answer::Data(&bytes),
            },
        );
    }
    drain(c)
}

fn dials(rs: &[(Token, Request)]) -> usize {
    rs.iter()
        .filter(|(_, r)| matches!(r, Request::Exchange(_) | Request::OpenStream { .. }))
        .count()
}

/// A connect asked while the peer's own connection to us is in its handshake waits for that
/// link, as a pending connection does in OTP's `net_kernel`: a dial of ours would race it and
/// could make the peer replace a link that is already up on our side (a spurious disconnect).
#[test]
fn a_connect_while_the_peer_connects_to_us_waits_for_its_link() {
    let now = Instant::ZERO;
    let (mut c, acc, mut z) = z_connects_to_us(now);
    // z's name arrives and is admitted; its handshake is under way.
    let (rs, _) = feed(&mut c, now, acc, &mut z);
    for (_, r) in &rs {
        if let Request::Write { stream, data } = r
            && *stream == acc
        {
            z.handle_data(now, data);
        }
    }
    // Now discovery finds z.
    c.add(
        now,
        TopologySpec::new(
            "static",
            Epmd::new(EpmdConfig::new([Node::new(node("z@10.0.0.2"))])),
        ),
    )
    .unwrap();
    let (rs, _) = drain(&mut c);
    assert_eq!(dials(&rs), 0, "no second connection to z: {rs:?}");
    let (_, events) = pump(&mut c, now, acc, &mut z);
    assert!(z.is_up());
    let names: Vec<&str> = events.iter().map(|e| e.name()).collect();
    assert_eq!(
        names.iter().filter(|n| **n == "connected").count(),
        1,
        "{names:?}"
    );
    assert!(!names.contains(&"connect_failed"), "{names:?}");
    assert_eq!(c.members().count(), 1);
}

/// If the peer's connection that a connect waited for fails, the connect dials after all.
#[test]
fn a_connect_that_waited_for_a_failed_inbound_dials() {
    let now = Instant::ZERO;
    let (mut c, acc, mut z) = z_connects_to_us(now);
    feed(&mut c, now, acc, &mut z);
    c.add(
        now,
        TopologySpec::new(
            "static",
            Epmd::new(EpmdConfig::new([Node::new(node("z@10.0.0.2"))])),
        ),
    )
    .unwrap();
    let (rs, _) = drain(&mut c);
    assert_eq!(dials(&rs), 0, "{rs:?}");
    let rs = answer(&mut c, now, acc, Answer::Closed);
    assert_eq!(dials(&rs), 1, "our own dial to z: {rs:?}");
}

/// A peer that names itself and then stalls holds a connect to it for a second at most
/// (a real simultaneous connect takes milliseconds): then the connect dials, its handshake
/// still pending (before, the connect waited until its own deadline and timed out).
#[test]
fn a_peer_that_names_itself_and_stalls_holds_a_connect_for_a_second_at_most() {
    let now = Instant::ZERO;
    let (mut c, acc, mut z) = z_connects_to_us(now);
    feed(&mut c, now, acc, &mut z);
    c.add(
        now,
        TopologySpec::new(
            "static",
            Epmd::new(EpmdConfig::new([Node::new(node("z@10.0.0.2"))])),
        ),
    )
    .unwrap();
    let (rs, _) = drain(&mut c);
    assert_eq!(dials(&rs), 0, "{rs:?}");
    let wake = c.poll_timeout().unwrap();
    assert!(wake <= now + Duration::from_secs(1), "{wake:?}");
    c.handle_timeout(wake);
    let (rs, events) = drain(&mut c);
    assert_eq!(dials(&rs), 1, "our own dial to z: {rs:?}");
    assert!(
        events.iter().all(|e| e.name() != "connect_failed"),
        "{events:?}"
    );
}

/// A node that no topology wants, connecting to us on its own (a `net_adm:ping`, a peer's
/// own discovery), is reported: `peer_connected`, then `peer_disconnected` when it goes —
/// before, nothing was said of it.
#[test]
fn a_peer_no_topology_wants_is_reported_when_it_connects_and_goes() {
    let now = Instant::ZERO;
    let (mut c, acc, mut z) = z_connects_to_us(now);
    let (_, events) = pump(&mut c, now, acc, &mut z);
    assert!(z.is_up());
    let lines: Vec<String> = events.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        lines,
        ["peer_connected z@10.0.0.2 (it connected to us; no topology wants it)"]
    );
    assert_eq!(events[0].topology(), "");
    c.handle_input(
        now,
        Input::Answer {
            token: acc,
            answer: Answer::Closed,
        },
    );
    let (_, events) = drain(&mut c);
    assert_eq!(
        events.iter().map(|e| e.name()).collect::<Vec<_>>(),
        ["peer_disconnected"]
    );
    assert_eq!(events[0].node().map(|n| n.as_str()), Some("z@10.0.0.2"));
}
