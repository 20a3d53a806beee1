//! A table of timers keyed by `(when, whose, which)`: the earliest is the next wake-up, and
//! what is due is taken in time order (ties in key order, so runs replay exactly).

use std::collections::BTreeSet;

use crate::time::Instant;

/// Timers of kind `K` on items numbered `u32`.
#[derive(Debug)]
pub(crate) struct TimerTable<K> {
    set: BTreeSet<(Instant, u32, K)>,
}

impl<K: Ord + Copy> TimerTable<K> {
    pub(crate) fn new() -> Self {
        TimerTable {
            set: BTreeSet::new(),
        }
    }

    pub(crate) fn insert(&mut self, at: Instant, item: u32, kind: K) {
        self.set.insert((at, item, kind));
    }

    pub(crate) fn remove(&mut self, at: Instant, item: u32, kind: K) {
        self.set.remove(&(at, item, kind));
    }

    /// When the earliest timer is due.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.set.first().map(|(at, _, _)| *at)
    }

    /// Takes the earliest timer if it is due at `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(u32, K)> {
        match self.set.first() {
            Some(&(at, item, kind)) if at <= now => {
                self.set.pop_first();
                Some((item, kind))
            }
            _ => None,
        }
    }
}
