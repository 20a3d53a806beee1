//! Time as an input: the core's own monotonic timestamp.
//!
//! The core never reads a clock. Every `handle_*` call carries a `now`, an [`Instant`]
//! measured from an origin the adapter picks (its start, usually). Arithmetic saturates, so a
//! `now` that goes backwards or a deadline far in the future never panics.

use core::fmt;
use core::ops::{Add, AddAssign};
use core::time::Duration;

/// A point in time, in nanoseconds since an origin chosen by the adapter.
///
/// Eight bytes; ordered; `Copy`. Use [`Instant::from_duration`] to convert from the adapter's
/// own clock (`origin.elapsed()`), and [`Instant::saturating_duration_since`] to measure.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(u64);

impl Instant {
    /// The origin.
    pub const ZERO: Instant = Instant(0);
    /// The latest representable instant (about 584 years after the origin).
    pub const MAX: Instant = Instant(u64::MAX);

    /// The instant `since_origin` after the origin; saturates at [`Instant::MAX`].
    pub fn from_duration(since_origin: Duration) -> Self {
        Instant(u64::try_from(since_origin.as_nanos()).unwrap_or(u64::MAX))
    }

    /// The instant `ms` milliseconds after the origin.
    pub const fn from_millis(ms: u64) -> Self {
        Instant(ms.saturating_mul(1_000_000))
    }

    /// The instant `nanos` nanoseconds after the origin.
    pub const fn from_nanos(nanos: u64) -> Self {
        Instant(nanos)
    }

    /// Nanoseconds since the origin.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// Time since the origin.
    pub const fn since_origin(self) -> Duration {
        Duration::from_nanos(self.0)
    }

    /// `self - earlier`, or zero when `earlier` is later than `self`.
    pub const fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// `self + d`, saturating at [`Instant::MAX`].
    pub fn saturating_add(self, d: Duration) -> Instant {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Instant(self.0.saturating_add(nanos))
    }

    /// `self - d`, saturating at the origin.
    pub fn saturating_sub(self, d: Duration) -> Instant {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Instant(self.0.saturating_sub(nanos))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        self.saturating_add(d)
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, d: Duration) {
        *self = self.saturating_add(d);
    }
}

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self)
    }
}

impl fmt::Display for Instant {
    /// Seconds since the origin with millisecond precision, e.g. `t+12.345s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0 / 1_000_000;
        write!(f, "t+{}.{:03}s", ms / 1000, ms % 1000)
    }
}

/// The earliest of two optional deadlines.
pub(crate) fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// The wall clock as the adapter last told it: a monotonic instant and the Unix time then.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Wall(Option<(Instant, Duration)>);

impl Wall {
    /// The Unix time was `unix` at `now`.
    pub(crate) fn set(&mut self, now: Instant, unix: Duration) {
        self.0 = Some((now, unix));
    }

    /// The Unix time at `now`, extrapolated from the last reading.
    pub(crate) fn at(&self, now: Instant) -> Option<Duration> {
        let (at, unix) = self.0?;
        Some(if now >= at {
            unix + now.saturating_duration_since(at)
        } else {
            unix.saturating_sub(at.saturating_duration_since(now))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_instead_of_panicking() {
        assert_eq!(Instant::MAX + Duration::from_secs(1), Instant::MAX);
        assert_eq!(
            Instant::ZERO.saturating_sub(Duration::from_secs(1)),
            Instant::ZERO
        );
        assert_eq!(
            Instant::from_millis(5).saturating_duration_since(Instant::from_millis(9)),
            Duration::ZERO
        );
        assert_eq!(Instant::from_duration(Duration::MAX), Instant::MAX);
        assert_eq!(Instant::from_millis(u64::MAX), Instant::MAX);
    }

    #[test]
    fn displays_seconds_and_millis() {
        assert_eq!(Instant::from_millis(12_345).to_string(), "t+12.345s");
        assert_eq!(Instant::ZERO.to_string(), "t+0.000s");
    }

    #[test]
    fn earliest_prefers_present_and_smaller() {
        let a = Some(Instant::from_millis(1));
        let b = Some(Instant::from_millis(2));
        assert_eq!(earliest(a, b), a);
        assert_eq!(earliest(None, b), b);
        assert_eq!(earliest(a, None), a);
        assert_eq!(earliest(None, None), None);
    }
}
