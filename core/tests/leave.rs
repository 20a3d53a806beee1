//! Leaving belongs to the core: `Cluster::leave` removes the topologies, disconnects every
//! node connected (reported as `leaving`), connects nothing more, and `is_left` comes once
//! nothing is in flight — bounded by each request's deadline even when the connector never
//! answers.
#![allow(clippy::unwrap_used)] // tests unwrap what they set up themselves

use std::time::Duration;

use muster_core::strategy::epmd::{Epmd, EpmdConfig};
use muster_core::{
    AddTopologyError, Answer, Cluster, ClusterConfig, ConnectPolicy, DisconnectReason, Event,
    Input, Instant, Node, NodeName, Output, Request, Token, TopologySpec,
};

fn n(s: &str) -> NodeName {
    s.parse().unwrap()
}

/// Drains the outputs: the requests and the events.
fn drain(c: &mut Cluster) -> (Vec<(Token, Request)>, Vec<Event>) {
    let (mut requests, mut events) = (Vec::new(), Vec::new());
    while let Some(out) = c.poll_output() {
        match out {
            Output::Request { token, request } => requests.push((token, request)),
            Output::Event(e) => events.push(e),
            _ => {}
        }
    }
    (requests, events)
}

/// A cluster with a and b connected through a static topology.
fn connected(now: Instant) -> Cluster {
    let mut c = Cluster::new(ClusterConfig::new().this_node(n("me@h0")), [3; 32]);
    let hosts = [Node::new(n("a@h1")), Node::new(n("b@h2"))];
    let epmd = EpmdConfig::new(hosts).reconnect_every(Duration::from_secs(60));
    let policy = ConnectPolicy::default().connect_timeout(Duration::from_secs(2));
    c.add(
        now,
        TopologySpec::new("static", Epmd::new(epmd)).policy(policy),
    )
    .unwrap();
    let (requests, _) = drain(&mut c);
    let (list, _) = requests
        .iter()
        .find(|(_, r)| matches!(r, Request::ListNodes { .. }))
        .unwrap();
    c.handle_input(
        now,
        Input::Answer {
            token: *list,
            answer: Answer::Nodes(&[]),
        },
    );
    let (requests, _) = drain(&mut c);
    for (token, r) in requests {
        assert!(matches!(r, Request::Connect { .. }), "{r:?}");
        c.handle_input(
            now,
            Input::Answer {
                token,
                answer: Answer::Connected,
            },
        );
    }
    let _ = drain(&mut c);
    assert_eq!(c.members().count(), 2);
    c
}

#[test]
fn leaving_disconnects_every_node_as_leaving_and_ends_when_they_are_answered() {
    let now = Instant::ZERO;
    let mut c = connected(now);
    c.leave(now);
    let (requests, events) = drain(&mut c);
    let disconnects: Vec<Token> = requests
        .iter()
        .map(|(t, r)| match r {
            Request::Disconnect { deadline, .. } => {
                assert!(*deadline > now, "every disconnect has a deadline");
                *t
            }
            other => panic!("only disconnects while leaving, not {other:?}"),
        })
        .collect();
    assert_eq!(disconnects.len(), 2);
    assert_eq!(
        events.iter().filter(|e| e.name() == "lost").count(),
        2,
        "the topology is removed: its nodes are lost to it"
    );
    assert!(!c.is_left(), "two disconnects in flight");
    for token in disconnects {
        c.handle_input(
            now,
            Input::Answer {
                token,
                answer: Answer::Disconnected,
            },
        );
    }
    let (requests, events) = drain(&mut c);
    assert!(requests.is_empty(), "{requests:?}");
    let reasons: Vec<&DisconnectReason> = events
        .iter()
        .filter_map(|e| match e {
            Event::Disconnected { reason, .. } => Some(reason),
            _ => None,
        })
        .collect();
    assert_eq!(
        reasons,
        [&DisconnectReason::Leaving, &DisconnectReason::Leaving]
    );
    assert!(c.is_left());
    assert_eq!(c.members().count(), 0);
    // Nothing more: no topology, no timer that connects anything.
    assert_eq!(
        c.add(
            now,
            TopologySpec::new("late", Epmd::new(EpmdConfig::default()))
        )
        .unwrap_err(),
        AddTopologyError::Stopped
    );
}

#[test]
fn a_connector_that_never_answers_does_not_keep_the_cluster_from_having_left() {
    let now = Instant::ZERO;
    let mut c = connected(now);
    c.leave(now);
    let (requests, _) = drain(&mut c);
    assert_eq!(requests.len(), 2);
    assert!(!c.is_left());
    // The connector is silent: the disconnects' deadline ends them, once.
    let deadline = c.poll_timeout().expect("the disconnects' deadline");
    assert!(deadline <= now + Duration::from_secs(2));
    c.handle_timeout(deadline);
    let (requests, events) = drain(&mut c);
    assert!(
        requests.is_empty(),
        "not tried again while leaving: {requests:?}"
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| e.name() == "disconnect_failed" && e.code() == Some("timed_out"))
            .count(),
        2
    );
    assert!(c.is_left());
    // Late answers change nothing.
    c.handle_input(
        deadline,
        Input::Answer {
            token: Token(1),
            answer: Answer::Disconnected,
        },
    );
    assert!(c.is_left());
}
