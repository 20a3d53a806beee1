//! What the reconciler knows of each topology: its name, its policy, whether it retries,
//! and the name each topology slot last had (events about a removed topology's nodes name
//! it).

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
    last_names: Vec<TopologyName>,
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
        if self.last_names.len() <= i {
            self.last_names.resize(i + 1, TopologyName::from("?"));
        }
        let name = TopologyName::from(name);
        self.last_names[i] = name.clone();
        self.infos[i] = Some(Info {
            name,
            policy,
            retries,
        });
    }

    /// Empties slot `t` (its last name stays for later events).
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
        match self.infos.get(usize::from(t)) {
            Some(Some(info)) => info.name.clone(),
            _ => self
                .last_names
                .get(usize::from(t))
                .cloned()
                .unwrap_or_else(|| TopologyName::from("?")),
        }
    }

    /// [`name`](Topologies::name), borrowed.
    pub(crate) fn name_str(&self, t: u8) -> &str {
        match self.infos.get(usize::from(t)) {
            Some(Some(info)) => &info.name,
            _ => self.last_names.get(usize::from(t)).map_or("?", |n| n),
        }
    }

    pub(crate) fn policy(&self, t: u8) -> ConnectPolicy {
        match self.infos.get(usize::from(t)) {
            Some(Some(info)) => info.policy,
            _ => ConnectPolicy::default(),
        }
    }

    pub(crate) fn retries(&self, t: u8) -> bool {
        match self.infos.get(usize::from(t)) {
            Some(Some(info)) => info.retries,
            _ => false,
        }
    }
}
