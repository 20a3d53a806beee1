//! The timer of a polling strategy, written once.

use core::time::Duration;

use crate::time::Instant;

/// A timer that is due at once, then every `every` after each time it fired: the skeleton of
/// a polling strategy.
///
/// ```
/// # use std::time::Duration;
/// # use muster_core::Instant;
/// # use muster_core::strategy::{Context, Periodic, Strategy};
/// struct Poller { every: Periodic }
///
/// impl Strategy for Poller {
///     fn kind(&self) -> &'static str { "poller" }
///     fn handle_timeout(&mut self, now: Instant, cx: &mut Context<'_>) {
///         if self.every.fire(now) {
///             // ask for the nodes
///         }
///     }
///     fn poll_timeout(&self) -> Option<Instant> { self.every.next() }
/// }
/// # let _ = Poller { every: Periodic::new(Duration::from_secs(5)) };
/// ```
///
/// [`Strategy::start`](super::Strategy::start) calls `handle_timeout` unless a strategy says
/// otherwise, so the first poll happens at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Periodic {
    every: Duration,
    next: Option<Instant>,
}

impl Periodic {
    /// Due at once, then every `every`.
    pub fn new(every: Duration) -> Self {
        Periodic { every, next: None }
    }

    /// The interval.
    pub fn every(&self) -> Duration {
        self.every
    }

    /// Whether the timer is due at `now`; if so it fires, and is due again `every` later.
    pub fn fire(&mut self, now: Instant) -> bool {
        if self.next.is_some_and(|at| at > now) {
            return false;
        }
        self.next = Some(now + self.every);
        true
    }

    /// When the timer is next due, once it has fired; for
    /// [`Strategy::poll_timeout`](super::Strategy::poll_timeout).
    pub fn next(&self) -> Option<Instant> {
        self.next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_at_once_then_every_interval() {
        let s = Duration::from_secs(1);
        let mut p = Periodic::new(5 * s);
        assert_eq!(p.next(), None);
        assert!(p.fire(Instant::ZERO));
        assert_eq!(p.next(), Some(Instant::ZERO + 5 * s));
        assert!(!p.fire(Instant::ZERO + 4 * s));
        assert!(p.fire(Instant::ZERO + 6 * s));
        assert_eq!(p.next(), Some(Instant::ZERO + 11 * s));
    }
}
