//! The cluster fed arbitrary answers, notices and clock jumps: whatever the adapter and the
//! connector say, in whatever order, the core must not panic, must never ask to connect to
//! itself, and must keep its queues bounded.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use muster_core::sim::NodesFile;
use muster_core::strategy::epmd::{Epmd, EpmdConfig};
use muster_core::{
    Answer, Cluster, ClusterConfig, ConnectPolicy, Input, Instant, Node, NodeName, Output, Request,
    Token,
};

#[derive(Arbitrary, Debug)]
enum Step {
    /// Answer the n-th outstanding request (or a made-up token).
    Answer { which: u8, kind: Kind, text: String, data: Vec<u8> },
    Down { name: String, reason: String },
    Up { name: String },
    Advance { ms: u16 },
    Jump { back: bool },
}

#[derive(Arbitrary, Debug)]
enum Kind {
    Connected,
    Ignored,
    Disconnected,
    NotConnected,
    Nodes,
    Data,
    Closed,
    Failed,
    TimedOut,
}

fuzz_target!(|steps: Vec<Step>| {
    let me: NodeName = "me@h0".parse().unwrap();
    let peers: Vec<NodeName> = (1..6).map(|i| format!("p{i}@h{i}").parse().unwrap()).collect();
    let mut c = Cluster::new(ClusterConfig::new().this_node(me.clone()).max_in_flight(3), [1; 32]);
    let mut now = Instant::ZERO;
    let hosts = peers.iter().cloned().chain([me.clone()]).map(Node::new);
    let epmd = EpmdConfig::new(hosts).reconnect_every(Duration::from_millis(500));
    let policy = ConnectPolicy::default().connect_timeout(Duration::from_millis(300)).grace(Duration::from_millis(200));
    c.add_topology(now, "static", Box::new(Epmd::new(epmd)), policy).unwrap();
    c.add_topology(now, "file", Box::new(NodesFile::new("f", Duration::from_millis(700))), ConnectPolicy::default()).unwrap();
    let mut outstanding: Vec<Token> = Vec::new();
    for step in steps.into_iter().take(500) {
        while let Some(out) = c.poll_output() {
            if let Output::Request { token, request } = out {
                if let Request::Connect { node, .. } = &request {
                    assert_ne!(node.name, me, "connect to self");
                }
                outstanding.push(token);
            }
        }
        assert!(c.metrics().in_flight <= 3);
        match step {
            Step::Answer { which, kind, text, data } => {
                let token = if outstanding.is_empty() || which == 255 {
                    Token(u64::from(which))
                } else {
                    outstanding.remove(usize::from(which) % outstanding.len())
                };
                let names: Vec<NodeName> = text.split(',').filter_map(|s| s.parse().ok()).collect();
                let failure = muster_core::Failure::other(text.clone());
                let answer = match kind {
                    Kind::Connected => Answer::Connected,
                    Kind::Ignored => Answer::Ignored,
                    Kind::Disconnected => Answer::Disconnected,
                    Kind::NotConnected => Answer::NotConnected,
                    Kind::Nodes => Answer::Nodes(&names),
                    Kind::Data => Answer::Data(&data),
                    Kind::Closed => Answer::Closed,
                    Kind::Failed => Answer::Failed(&failure),
                    Kind::TimedOut => Answer::TimedOut,
                };
                c.handle_input(now, Input::Answer { token, answer });
            }
            Step::Down { name, reason } => {
                let reason = muster_core::Failure::other(reason);
                c.handle_input(now, Input::NodeDown { node: &name, reason: &reason })
            }
            Step::Up { name } => c.handle_input(now, Input::NodeUp { node: &name }),
            Step::Advance { ms } => {
                now += Duration::from_millis(u64::from(ms));
                c.handle_timeout(now);
            }
            Step::Jump { back } => {
                // Time going backwards, or a spurious wake-up: both must be harmless.
                let at = if back { Instant::ZERO } else { now };
                c.handle_timeout(at);
            }
        }
        assert!(!c.is_connected(me.as_str()));
    }
});
