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
