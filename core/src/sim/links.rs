//! The simulated connector's links, indexed by both ends.

use std::collections::{BTreeMap, BTreeSet};

use crate::node::NodeName;

/// Links as (opener, peer), findable from either end.
#[derive(Debug, Default)]
pub(crate) struct Links {
    out: BTreeMap<NodeName, BTreeSet<NodeName>>,
    inc: BTreeMap<NodeName, BTreeSet<NodeName>>,
}

impl Links {
    pub(crate) fn insert(&mut self, a: &NodeName, b: &NodeName) {
        self.out.entry(a.clone()).or_default().insert(b.clone());
        self.inc.entry(b.clone()).or_default().insert(a.clone());
    }

    pub(crate) fn remove(&mut self, a: &NodeName, b: &NodeName) -> bool {
        let gone = self.out.get_mut(a).is_some_and(|s| s.remove(b));
        if gone && let Some(s) = self.inc.get_mut(b) {
            s.remove(a);
        }
        gone
    }

    pub(crate) fn contains(&self, a: &NodeName, b: &NodeName) -> bool {
        self.out.get(a).is_some_and(|s| s.contains(b))
    }

    pub(crate) fn outgoing(&self, a: &NodeName) -> impl Iterator<Item = &NodeName> {
        self.out.get(a).into_iter().flatten()
    }

    pub(crate) fn incoming(&self, b: &NodeName) -> impl Iterator<Item = &NodeName> {
        self.inc.get(b).into_iter().flatten()
    }

    /// Every link with `n` at either end.
    pub(crate) fn touching(&self, n: &NodeName) -> Vec<(NodeName, NodeName)> {
        let out = self.outgoing(n).map(|b| (n.clone(), b.clone()));
        let inc = self.incoming(n).map(|a| (a.clone(), n.clone()));
        out.chain(inc).collect()
    }

    pub(crate) fn all(&self) -> impl Iterator<Item = (&NodeName, &NodeName)> {
        self.out
            .iter()
            .flat_map(|(a, bs)| bs.iter().map(move |b| (a, b)))
    }
}
