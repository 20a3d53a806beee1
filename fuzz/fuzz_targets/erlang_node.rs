//! The cluster as an Erlang node, answered anything at all: each step of the input picks one
//! of its outstanding requests (listen, EPMD registration, PORT_PLEASE2 lookups, links,
//! accepts) and answers it — opened, accepted, arbitrary bytes, EPMD's well-formed replies,
//! closed, failed, timed out — or lets time pass. Nothing may panic, this node is never a
//! member, and the cluster always knows when it next needs the time.
#![no_main]

use std::net::SocketAddr;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use muster_core::dist::DistConfig;
use muster_core::proto::epmd::{self, NodeEntry};
use muster_core::strategy::epmd::{Epmd, EpmdConfig};
use muster_core::{
    Answer, Cluster, ClusterConfig, Input, Instant, Node, NodeName, Output, Token,
    TopologySpec,
};

fn drain(c: &mut Cluster, open: &mut Vec<Token>) {
    while let Some(out) = c.poll_output() {
        if let Output::Request { token, .. } = out {
            open.push(token);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let me: NodeName = "rust@127.0.0.1".parse().unwrap();
    let config = ClusterConfig::new()
        .this_node(me.clone())
        .erlang(DistConfig::new(me.clone(), "cookie"));
    let mut c = Cluster::new(config, [1; 32]);
    let mut now = Instant::ZERO;
    let hosts = ["a@10.0.0.1", "b@10.0.0.2", "rust@127.0.0.1"]
        .map(|h| Node::new(h.parse().unwrap()));
    c.add(
        now,
        TopologySpec::new("static", Epmd::new(EpmdConfig::new(hosts))),
    )
    .unwrap();
    let mut open = Vec::new();
    drain(&mut c, &mut open);
    let addr: SocketAddr = "10.0.0.1:4370".parse().unwrap();
    let alive = epmd::alive2_reply(0, 7);
    let port = epmd::port2_reply(Some(&NodeEntry::new("a", 4370, true)));
    let mut rest = data;
    while let [op, pick, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (payload, tail) = tail.split_at(n);
        rest = tail;
        if op % 9 == 8 || open.is_empty() {
            now += Duration::from_millis(u64::from(*len) * 40);
            c.handle_timeout(now);
        } else {
            let token = open[usize::from(*pick) % open.len()];
            let refused = muster_core::Failure::new(muster_core::FailureKind::Refused, "refused");
            let answer = match op % 9 {
                0 => Answer::Opened(addr),
                1 => Answer::Accepted(addr),
                2 => Answer::Data(payload),
                3 => Answer::Data(&alive),
                4 => Answer::Data(&port),
                5 => Answer::Closed,
                6 => Answer::Failed(&refused),
                _ => Answer::TimedOut,
            };
            c.handle_input(now, Input::Answer { token, answer });
        }
        drain(&mut c, &mut open);
        assert!(!c.members().any(|m| *m == me), "never a member of itself");
    }
    c.handle_timeout(now + Duration::from_secs(3600));
    drain(&mut c, &mut open);
});
