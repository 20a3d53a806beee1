//! The simulator's invariants, checked after every step.

use core::fmt;
use core::time::Duration;
use std::collections::{BTreeMap, BTreeSet};

use crate::cluster::Cluster;
use crate::event::Event;
use crate::io::{Request, Token};
use crate::node::NodeName;
use crate::time::Instant;

/// A broken invariant, with what is needed to replay it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The simulator's seed.
    pub seed: u64,
    /// Virtual time of the violation.
    pub at: Instant,
    /// The node whose cluster broke it.
    pub node: String,
    /// What went wrong.
    pub what: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invariant violated at {} on {} (seed {}): {}",
            self.at, self.node, self.seed, self.what
        )
    }
}

#[derive(Default)]
struct NodeState {
    name: String,
    /// Per topology, the nodes it discovers according to its events.
    discovered: BTreeMap<String, BTreeSet<NodeName>>,
    /// Outstanding connects: token, node, deadline.
    connects: BTreeMap<Token, (NodeName, Instant)>,
    /// Topologies that reported a failed discovery in the current drain.
    failed_now: BTreeSet<String>,
    lost_now: BTreeSet<String>,
}

#[derive(Default)]
pub(crate) struct Checker {
    nodes: BTreeMap<usize, NodeState>,
    bound: Option<Duration>,
    armed_at: Instant,
    waiting: BTreeMap<(usize, NodeName), Instant>,
    collect: bool,
    violations: Vec<Violation>,
}

impl Checker {
    fn fail(&mut self, seed: u64, at: Instant, node: &str, what: String) {
        let v = Violation {
            seed,
            at,
            node: node.to_owned(),
            what,
        };
        if !self.collect {
            panic!("{v}");
        }
        self.violations.push(v);
    }

    pub(crate) fn collect(&mut self) {
        self.collect = true;
    }

    pub(crate) fn violations(&self) -> &[Violation] {
        &self.violations
    }

    pub(crate) fn reset_node(&mut self, index: usize) {
        self.nodes.remove(&index);
        self.waiting.retain(|(i, _), _| *i != index);
    }

    pub(crate) fn set_bound(&mut self, bound: Option<Duration>, now: Instant) {
        self.bound = bound;
        self.armed_at = now;
        self.waiting.clear();
    }

    pub(crate) fn liveness_on(&self) -> bool {
        self.bound.is_some()
    }

    pub(crate) fn on_event(&mut self, seed: u64, now: Instant, index: usize, e: &Event) {
        let st = self.nodes.entry(index).or_default();
        match e {
            Event::Discovered { topology, node } => {
                st.discovered
                    .entry(topology.to_string())
                    .or_default()
                    .insert(node.clone());
            }
            Event::Lost { topology, node } => {
                st.discovered
                    .entry(topology.to_string())
                    .or_default()
                    .remove(node);
                st.lost_now.insert(topology.to_string());
            }
            Event::DiscoveryFailed { topology, .. } => {
                st.failed_now.insert(topology.to_string());
            }
            Event::Connected { .. }
            | Event::ConnectFailed { .. }
            | Event::Disconnected { .. }
            | Event::DisconnectFailed { .. }
            | Event::Rejected { .. }
            | Event::PeerConnected { .. }
            | Event::PeerDisconnected { .. } => {}
        }
        let both: Vec<String> = st.failed_now.intersection(&st.lost_now).cloned().collect();
        if let Some(t) = both.first() {
            let name = st.name.clone();
            self.fail(
                seed,
                now,
                &name,
                format!("topology {t} lost nodes in the same step as its discovery failed"),
            );
        }
    }

    pub(crate) fn on_answer(&mut self, index: usize, token: Token) {
        if let Some(st) = self.nodes.get_mut(&index) {
            st.connects.remove(&token);
        }
    }

    pub(crate) fn on_request(
        &mut self,
        seed: u64,
        now: Instant,
        index: usize,
        me: &NodeName,
        token: Token,
        request: &Request,
    ) {
        let st = self.nodes.entry(index).or_default();
        if st.name.is_empty() {
            st.name = me.to_string();
        }
        match request {
            Request::Connect { node, deadline } => {
                if node.name == *me {
                    return self.fail(seed, now, me.as_str(), "connect to self".to_owned());
                }
                st.connects.retain(|_, (_, d)| *d > now);
                if st.connects.values().any(|(n, _)| *n == node.name) {
                    let what = format!("a second connect to {} while one is in flight", node.name);
                    return self.fail(seed, now, me.as_str(), what);
                }
                st.connects.insert(token, (node.name.clone(), *deadline));
            }
            Request::Disconnect { node, .. } => {
                if let Some((t, _)) = st.discovered.iter().find(|(_, set)| set.contains(node)) {
                    let what = format!("disconnect of {node}, which topology {t} still discovers");
                    self.fail(seed, now, me.as_str(), what);
                }
            }
            _ => {}
        }
    }

    pub(crate) fn after_drain(
        &mut self,
        seed: u64,
        now: Instant,
        index: usize,
        c: &Cluster,
        max_in_flight: usize,
    ) {
        let st = self.nodes.entry(index).or_default();
        st.failed_now.clear();
        st.lost_now.clear();
        let name = st.name.clone();
        let m = c.metrics();
        if c.queued_outputs() != 0 {
            self.fail(seed, now, &name, "outputs left after a drain".to_owned());
        }
        if m.events_dropped != 0 {
            self.fail(
                seed,
                now,
                &name,
                format!("{} events dropped", m.events_dropped),
            );
        }
        if m.in_flight > max_in_flight as u64 {
            self.fail(
                seed,
                now,
                &name,
                format!("{} requests in flight", m.in_flight),
            );
        }
    }

    pub(crate) fn liveness(
        &mut self,
        seed: u64,
        now: Instant,
        state: &[(usize, NodeName, bool, bool)],
    ) {
        let Some(bound) = self.bound else { return };
        let mut waiting = BTreeMap::new();
        let mut late = Vec::new();
        for (i, peer, reachable, linked) in state {
            if !*reachable || *linked {
                continue;
            }
            let key = (*i, peer.clone());
            let since = self
                .waiting
                .get(&key)
                .copied()
                .unwrap_or(now)
                .max(self.armed_at);
            if now.saturating_duration_since(since) > bound {
                late.push((*i, peer.clone(), since));
            }
            waiting.insert(key, since);
        }
        self.waiting = waiting;
        for (i, peer, since) in late {
            let name = self
                .nodes
                .get(&i)
                .map(|s| s.name.clone())
                .unwrap_or_default();
            let what = format!(
                "{peer} is wanted and reachable since {since} but not connected within {} ms",
                bound.as_millis()
            );
            self.fail(seed, now, &name, what);
            self.waiting.remove(&(i, peer));
        }
    }
}
