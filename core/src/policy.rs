//! How a topology's nodes are connected and let go: deadlines, backoff, pruning, grace.

use core::time::Duration;

use crate::config::{ConfigError, Options, Value};
use crate::rng::Rng;

/// How a topology's nodes are connected and let go.
///
/// In a config file these are the keys of `[topologies.NAME.connect]`, all in milliseconds
/// except `prune`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectPolicy {
    /// `connect_timeout`: the deadline of each connect (and disconnect) request. Default 7000,
    /// Erlang's `net_setuptime`.
    pub connect_timeout: Duration,
    /// `backoff_base`: the delay before the first retry of a failed node; each further
    /// failure doubles it. Default 500.
    pub backoff_base: Duration,
    /// `backoff_max`: the cap on the retry delay, and how long a connection must have lived
    /// for its loss to restart the backoff from zero. Default 30000.
    pub backoff_max: Duration,
    /// `prune`: disconnect nodes that a polling strategy no longer discovers. Default true.
    /// Static and gossip strategies never lose nodes, so this changes nothing for them.
    pub prune: bool,
    /// `grace`: how long a node that left discovery stays connected before it is
    /// disconnected. Default 0.
    pub grace: Duration,
}

impl Default for ConnectPolicy {
    fn default() -> Self {
        ConnectPolicy {
            connect_timeout: Duration::from_secs(7),
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            prune: true,
            grace: Duration::ZERO,
        }
    }
}

impl ConnectPolicy {
    /// Sets `connect_timeout`.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// Sets `backoff_base` and `backoff_max`.
    pub fn backoff(mut self, base: Duration, max: Duration) -> Self {
        self.backoff_base = base;
        self.backoff_max = max;
        self
    }

    /// Sets `prune`.
    pub fn prune(mut self, prune: bool) -> Self {
        self.prune = prune;
        self
    }

    /// Sets `grace`.
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// The policy described by `options`, defaults filled in.
    pub fn from_options(o: &mut Options<'_>) -> Result<Self, ConfigError> {
        let d = ConnectPolicy::default();
        let p = ConnectPolicy {
            connect_timeout: o
                .positive_millis("connect_timeout")?
                .unwrap_or(d.connect_timeout),
            backoff_base: o.positive_millis("backoff_base")?.unwrap_or(d.backoff_base),
            backoff_max: o.positive_millis("backoff_max")?.unwrap_or(d.backoff_max),
            prune: o.bool("prune")?.unwrap_or(d.prune),
            grace: o.millis("grace")?.unwrap_or(d.grace),
        };
        p.check(o.path())?;
        Ok(p)
    }

    /// Whether the policy can work: a connect deadline and a backoff above zero (else a
    /// failing node would be tried again at once, for ever), and `backoff_max` at least
    /// `backoff_base`. Errors name the key under `path`.
    pub fn check(&self, path: &str) -> Result<(), ConfigError> {
        let key = |k: &str| {
            if path.is_empty() {
                k.to_owned()
            } else {
                format!("{path}.{k}")
            }
        };
        if self.connect_timeout.is_zero() {
            return Err(ConfigError::invalid(
                key("connect_timeout"),
                "must be above 0",
            ));
        }
        if self.backoff_base.is_zero() {
            return Err(ConfigError::invalid(key("backoff_base"), "must be above 0"));
        }
        if self.backoff_max < self.backoff_base {
            return Err(ConfigError::invalid(
                key("backoff_max"),
                format!(
                    "must be at least backoff_base ({} ms), got {} ms",
                    self.backoff_base.as_millis(),
                    self.backoff_max.as_millis()
                ),
            ));
        }
        Ok(())
    }

    /// The policy as configuration values, every default filled in.
    pub fn describe(&self) -> Vec<(String, Value)> {
        vec![
            (
                "connect_timeout".into(),
                Value::millis(self.connect_timeout),
            ),
            ("backoff_base".into(), Value::millis(self.backoff_base)),
            ("backoff_max".into(), Value::millis(self.backoff_max)),
            ("prune".into(), Value::Bool(self.prune)),
            ("grace".into(), Value::millis(self.grace)),
        ]
    }

    /// The delay before retrying after `attempt` consecutive failures (1 for the first):
    /// `min(max, base * 2^(attempt-1))`, jittered uniformly into its upper half so that nodes
    /// that failed together do not retry together.
    pub fn backoff_delay(&self, attempt: u32, rng: &mut Rng) -> Duration {
        let shift = attempt.saturating_sub(1).min(31);
        let full = self
            .backoff_base
            .checked_mul(1u32 << shift)
            .unwrap_or(self.backoff_max)
            .min(self.backoff_max);
        rng.duration_between(full / 2, full)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_is_capped_and_jittered_in_the_upper_half() {
        let p =
            ConnectPolicy::default().backoff(Duration::from_millis(100), Duration::from_secs(1));
        let mut rng = Rng::from_seed([9; 32]);
        for attempt in 1..40 {
            let full = Duration::from_millis((100u64 << (attempt - 1).min(20)).min(1000));
            for _ in 0..20 {
                let d = p.backoff_delay(attempt, &mut rng);
                assert!(
                    d >= full / 2 && d <= full,
                    "attempt {attempt}: {d:?} vs {full:?}"
                );
            }
        }
    }

    #[test]
    fn policy_options_are_validated_by_key() {
        let t = vec![
            ("backoff_base".to_string(), Value::Int(2000)),
            ("backoff_max".to_string(), Value::Int(1000)),
        ];
        let mut o = Options::new("topologies.a.connect", &t);
        let e = ConnectPolicy::from_options(&mut o).unwrap_err();
        assert_eq!(e.key, "topologies.a.connect.backoff_max");
        let t = vec![("connect_timeout".to_string(), Value::Int(0))];
        let mut o = Options::new("topologies.a.connect", &t);
        let e = ConnectPolicy::from_options(&mut o).unwrap_err();
        assert_eq!(e.key, "topologies.a.connect.connect_timeout");
    }

    #[test]
    fn a_policy_that_would_retry_at_once_is_refused_when_its_topology_is_added() {
        use crate::strategy::epmd::{Epmd, EpmdConfig};
        use crate::{AddTopologyError, Cluster, ClusterConfig, Instant};
        let mut c = Cluster::new(ClusterConfig::new(), [1; 32]);
        let zero = ConnectPolicy::default().backoff(Duration::ZERO, Duration::ZERO);
        let strategy = Box::new(Epmd::new(EpmdConfig::default()));
        match c.add_topology(Instant::ZERO, "a", strategy, zero) {
            Err(AddTopologyError::Invalid(e)) => {
                assert_eq!(e.key, "topologies.a.connect.backoff_base")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(c.topologies().count(), 0);
    }
}
