//! What the reconciler knows of each topology: its name, its policy, whether it retries,
//! and the name and policy each topology slot last had (a removed topology's nodes are still
//! named after it, and let go as it said).

use crate::event::TopologyName;
use crate::policy::ConnectPolicy;

/// The most topologies one cluster can hold (one bit each in a node's masks).
pub const MAX_TOPOLOGIES: usize = 64;

#[derive(Debug, Clone)]
struct Info {
    name: TopologyName,
    policy: ConnectPolicy,
    retries: bool,
}

/// The topologies by slot (their `u8` number).
#[derive(Debug, Default)]
pub(crate) struct Topologies {
    infos: Vec<Option<Info>>,
    /// What each slot last held.
    last: Vec<Info>,
}

impl Topologies {
    /// A free slot for a new topology, if the cluster holds fewer than [`MAX_TOPOLOGIES`].
    pub(crate) fn free_slot(&self) -> Option<u8> {
        match self.infos.iter().position(Option::is_none) {
            Some(i) => Some(i as u8),
            None if self.infos.len() < MAX_TOPOLOGIES => Some(self.infos.len() as u8),
            None => None,
        }
    }

    /// Puts a topology in slot `t`.
    pub(crate) fn add(&mut self, t: u8, name: &str, policy: ConnectPolicy, retries: bool) {
        let i = usize::from(t);
        if self.infos.len() <= i {
            self.infos.resize(i + 1, None);
        }
        let info = Info {
            name: TopologyName::from(name),
            policy,
            retries,
        };
        if self.last.len() <= i {
            self.last.resize(i + 1, info.clone());
        }
        self.last[i] = info.clone();
        self.infos[i] = Some(info);
    }

    /// Empties slot `t` (its last name and policy stay for its nodes' later events).
    pub(crate) fn remove(&mut self, t: u8) {
        if let Some(slot) = self.infos.get_mut(usize::from(t)) {
            *slot = None;
        }
    }

    /// The topologies, by slot.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u8, &str)> {
        self.infos
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.as_ref().map(|t| (i as u8, &*t.name)))
    }

    /// The name of topology `t`, or of the last topology that held its slot.
    pub(crate) fn name(&self, t: u8) -> TopologyName {
        self.last
            .get(usize::from(t))
            .map_or_else(|| TopologyName::from("?"), |i| i.name.clone())
    }

    /// [`name`](Topologies::name), borrowed.
    pub(crate) fn name_str(&self, t: u8) -> &str {
        self.last.get(usize::from(t)).map_or("?", |i| &i.name)
    }

    /// The policy of topology `t`, or of the last topology that held its slot.
    pub(crate) fn policy(&self, t: u8) -> ConnectPolicy {
        self.last
            .get(usize::from(t))
            .map_or_else(ConnectPolicy::default, |i| i.policy)
    }

    pub(crate) fn retries(&self, t: u8) -> bool {
        match self.infos.get(usize::from(t)) {
            Some(Some(info)) => info.retries,
            _ => false,
        }
    }
}
