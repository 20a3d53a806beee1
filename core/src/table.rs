//! The node table: a slot per node the cluster knows, found by name without hashing it
//! twice, with indices that never move.

use crate::hash::{KeyedMap, KeyedState};
use crate::node::NodeName;
use crate::slab::Slab;

/// Slots of `S` by index, and an index by name.
#[derive(Debug)]
pub(crate) struct Table<S> {
    slots: Slab<S>,
    index: KeyedMap<NodeName, u32>,
}

impl<S> Table<S> {
    /// An empty table whose name index is keyed with `keys`.
    pub(crate) fn new(keys: KeyedState) -> Self {
        Table {
            slots: Slab::default(),
            index: KeyedMap::with_hasher(keys),
        }
    }

    /// The index of `name`'s slot.
    pub(crate) fn lookup(&self, name: &str) -> Option<u32> {
        self.index.get(name).copied()
    }

    pub(crate) fn get(&self, i: u32) -> Option<&S> {
        self.slots.get(i)
    }

    pub(crate) fn get_mut(&mut self, i: u32) -> Option<&mut S> {
        self.slots.get_mut(i)
    }

    /// Stores `slot` for `name` (not in the table yet); its index.
    pub(crate) fn insert(&mut self, name: NodeName, slot: S) -> u32 {
        let i = self.slots.insert(slot);
        self.index.insert(name, i);
        i
    }

    /// Forgets slot `i`, which holds `name`.
    pub(crate) fn remove(&mut self, i: u32, name: &str) -> Option<S> {
        let s = self.slots.remove(i)?;
        self.index.remove(name);
        Some(s)
    }

    /// One past the highest index ever used: iterate `0..bound()`.
    pub(crate) fn bound(&self) -> u32 {
        self.slots.len() as u32
    }

    /// Every slot in use, in index order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &S> {
        self.slots.iter()
    }
}
