//! Helpers shared by the simulator tests.
#![allow(clippy::unwrap_used)] // tests unwrap what they set up themselves
#![allow(dead_code)]

use std::time::Duration;

use muster_core::sim::NodesFile;
use muster_core::strategy::epmd::{Epmd, EpmdConfig};
use muster_core::{ConnectPolicy, Event, Instant, Node, NodeName, TopologySpec};

pub fn n(s: &str) -> NodeName {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

pub fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

/// A quick policy for tests: 5 s deadline, 100 ms..1 s backoff.
pub fn quick() -> ConnectPolicy {
    ConnectPolicy::default()
        .connect_timeout(ms(5000))
        .backoff(ms(100), ms(1000))
}

pub fn epmd(
    name: &str,
    hosts: &[&str],
    timeout: Option<u64>,
    policy: ConnectPolicy,
) -> TopologySpec {
    let mut c = EpmdConfig::new(hosts.iter().map(|h| Node::new(n(h))));
    if let Some(t) = timeout {
        c = c.reconnect_every(ms(t));
    }
    TopologySpec::new(name, Epmd::new(c)).policy(policy)
}

pub fn file(name: &str, path: &str, every: u64, policy: ConnectPolicy) -> TopologySpec {
    TopologySpec::new(name, NodesFile::new(path, ms(every))).policy(policy)
}

/// The events named `kind` about `node`, with their times.
pub fn times(events: &[(Instant, Event)], kind: &str, node: &str) -> Vec<Instant> {
    events
        .iter()
        .filter(|(_, e)| e.name() == kind && e.node().is_some_and(|x| x.as_str() == node))
        .map(|(t, _)| *t)
        .collect()
}

pub fn count(events: &[(Instant, Event)], kind: &str) -> usize {
    events.iter().filter(|(_, e)| e.name() == kind).count()
}
