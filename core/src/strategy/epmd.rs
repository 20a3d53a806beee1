//! The Epmd strategy: a static list of nodes (libcluster's `Cluster.Strategy.Epmd`).
//!
//! Options (libcluster's names and defaults):
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `hosts` | `[]` | node names to connect to |
//! | `timeout` | absent | reconnect interval in ms; absent means connect once at start |
//!
//! With `timeout`, every interval the cluster compares the connector's actual list of
//! connected nodes with `hosts` and reconnects the ones that dropped; failed nodes are
//! retried with the topology's backoff. Without it, each node is tried once, as libcluster
//! does. The strategy never disconnects anything.

use core::time::Duration;

use super::{Context, Environment, Strategy};
use crate::config::{ConfigError, Options, Value};
use crate::node::{Node, NodeName};
use crate::time::Instant;

/// The Epmd strategy's configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EpmdConfig {
    /// The nodes to connect to. A node may carry an address hint.
    pub hosts: Vec<Node>,
    /// The reconnect interval; `None` connects once at start.
    pub timeout: Option<Duration>,
}

impl EpmdConfig {
    /// A configuration for `hosts`, connected once.
    pub fn new(hosts: impl IntoIterator<Item = Node>) -> Self {
        EpmdConfig {
            hosts: hosts.into_iter().collect(),
            timeout: None,
        }
    }

    /// Reconnects every `interval`.
    pub fn reconnect_every(mut self, interval: Duration) -> Self {
        self.timeout = Some(interval);
        self
    }

    /// Reads `hosts` and `timeout`.
    pub fn from_options(o: &mut Options<'_>) -> Result<Self, ConfigError> {
        let mut hosts = Vec::new();
        for (path, s) in o.strings("hosts")?.unwrap_or_default() {
            let name = NodeName::new(s).map_err(|e| ConfigError::invalid(path, e))?;
            hosts.push(Node::new(name));
        }
        // libcluster's `timeout: :infinity` (never reconnect) is written "infinity".
        let timeout = match o.get("timeout") {
            Some(Value::Str(s)) if s == "infinity" => None,
            Some(_) => o.positive_millis("timeout")?,
            None => None,
        };
        Ok(EpmdConfig { hosts, timeout })
    }
}

/// The Epmd strategy; see the module documentation.
#[derive(Debug, Clone)]
pub struct Epmd {
    config: EpmdConfig,
    next: Option<Instant>,
}

impl Epmd {
    /// The strategy for `config`.
    pub fn new(config: EpmdConfig) -> Self {
        Epmd { config, next: None }
    }

    /// The registry's builder.
    pub(crate) fn build(
        o: &mut Options<'_>,
        _env: &Environment,
    ) -> Result<Box<dyn Strategy>, ConfigError> {
        Ok(Box::new(Epmd::new(EpmdConfig::from_options(o)?)))
    }
}

impl Strategy for Epmd {
    fn kind(&self) -> &'static str {
        "epmd"
    }

    fn start(&mut self, now: Instant, cx: &mut Context<'_>) {
        for node in &self.config.hosts {
            cx.found_node(node);
        }
        self.next = self.config.timeout.map(|t| now + t);
    }

    fn handle_timeout(&mut self, now: Instant, cx: &mut Context<'_>) {
        let (Some(next), Some(every)) = (self.next, self.config.timeout) else {
            return;
        };
        if now < next {
            return;
        }
        cx.reconcile();
        self.next = Some(now + every);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.next
    }

    fn retries(&self) -> bool {
        self.config.timeout.is_some()
    }

    fn describe(&self) -> Vec<(String, Value)> {
        let hosts = self
            .config
            .hosts
            .iter()
            .map(|n| Value::str(n.name.as_str()))
            .collect();
        let mut v = vec![("hosts".to_owned(), Value::List(hosts))];
        if let Some(t) = self.config.timeout {
            v.push(("timeout".to_owned(), Value::millis(t)));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_names_the_bad_host() {
        let t = vec![(
            "hosts".to_owned(),
            Value::List(vec![Value::str("a@h"), Value::str("nope")]),
        )];
        let mut o = Options::new("topologies.app.config", &t);
        let e = EpmdConfig::from_options(&mut o).unwrap_err();
        assert_eq!(e.key, "topologies.app.config.hosts[1]");
        assert!(e.to_string().contains("no '@'"), "{e}");
    }

    #[test]
    fn config_defaults_to_connect_once() {
        let t = vec![("hosts".to_owned(), Value::List(vec![Value::str("a@h")]))];
        let mut o = Options::new("x", &t);
        let c = EpmdConfig::from_options(&mut o).unwrap();
        assert_eq!(c.timeout, None);
        assert!(!Epmd::new(c).retries());
    }
}
