//! Events to any number of blocking subscribers, each missing the oldest when it falls more
//! than the capacity behind.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use muster_core::Event;

struct Ring {
    events: VecDeque<Event>,
    /// The sequence number of `events[0]`.
    first: u64,
    capacity: usize,
    closed: bool,
}

pub(crate) struct Hub {
    ring: Mutex<Ring>,
    arrived: Condvar,
}

impl Hub {
    pub(crate) fn new(capacity: usize) -> Arc<Hub> {
        Arc::new(Hub {
            ring: Mutex::new(Ring {
                events: VecDeque::new(),
                first: 0,
                capacity,
                closed: false,
            }),
            arrived: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn publish(&self, e: Event) {
        let mut r = self.lock();
        r.events.push_back(e);
        if r.events.len() > r.capacity {
            r.events.pop_front();
            r.first += 1;
        }
        drop(r);
        self.arrived.notify_all();
    }

    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.arrived.notify_all();
    }

    /// A subscriber from the next event on.
    pub(crate) fn subscribe(self: &Arc<Self>) -> Events {
        let r = self.lock();
        let next = r.first + r.events.len() as u64;
        drop(r);
        Events {
            hub: self.clone(),
            next,
            missed: 0,
        }
    }

    /// A subscriber from the first event on.
    pub(crate) fn subscribe_from_start(self: &Arc<Self>) -> Events {
        Events {
            hub: self.clone(),
            next: 0,
            missed: 0,
        }
    }
}

/// A stream of events, read by blocking. A subscriber that falls more than the builder's
/// `event_capacity` behind misses the oldest ones; [`missed`](Events::missed) counts them.
pub struct Events {
    hub: Arc<Hub>,
    next: u64,
    missed: u64,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("next", &self.next)
            .field("missed", &self.missed)
            .finish()
    }
}

enum Take {
    Event(Event),
    Closed,
    Wait,
}

impl Events {
    fn take(&mut self, r: &Ring) -> Take {
        if self.next < r.first {
            self.missed += r.first - self.next;
            self.next = r.first;
        }
        let i = (self.next - r.first) as usize;
        match r.events.get(i) {
            Some(e) => {
                self.next += 1;
                Take::Event(e.clone())
            }
            None if r.closed => Take::Closed,
            None => Take::Wait,
        }
    }

    /// The next event, waiting for it; `None` once the cluster has stopped and every event
    /// was received.
    pub fn recv(&mut self) -> Option<Event> {
        let hub = self.hub.clone();
        let mut r = hub.lock();
        loop {
            match self.take(&r) {
                Take::Event(e) => return Some(e),
                Take::Closed => return None,
                Take::Wait => r = hub.arrived.wait(r).unwrap_or_else(|p| p.into_inner()),
            }
        }
    }

    /// The next event, waiting at most `timeout`; `None` if none came (or the cluster
    /// stopped).
    pub fn recv_timeout(&mut self, timeout: Duration) -> Option<Event> {
        let until = Instant::now() + timeout;
        let hub = self.hub.clone();
        let mut r = hub.lock();
        loop {
            match self.take(&r) {
                Take::Event(e) => return Some(e),
                Take::Closed => return None,
                Take::Wait => {
                    let left = until.checked_duration_since(Instant::now())?;
                    r = hub
                        .arrived
                        .wait_timeout(r, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            }
        }
    }

    /// The next event if one is waiting.
    pub fn try_recv(&mut self) -> Option<Event> {
        let hub = self.hub.clone();
        let r = hub.lock();
        match self.take(&r) {
            Take::Event(e) => Some(e),
            _ => None,
        }
    }

    /// Events this subscriber missed because it fell behind.
    pub fn missed(&self) -> u64 {
        self.missed
    }
}

impl Iterator for Events {
    type Item = Event;
    fn next(&mut self) -> Option<Event> {
        self.recv()
    }
}
