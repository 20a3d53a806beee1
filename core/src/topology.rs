//! One topology: a named strategy and the policy its nodes are connected with.

use crate::config::{ConfigError, Options, Problem, Value};
use crate::policy::ConnectPolicy;
use crate::strategy::{Registry, Strategy};

/// Identifies a topology inside its cluster.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct TopologyId(pub(crate) u8);

impl TopologyId {
    /// The topology's position (0-based) among the cluster's topology slots.
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// Everything needed to add a topology: its name, its strategy and its policy.
///
/// ```
/// # use std::time::Duration;
/// use muster_core::strategy::epmd::{Epmd, EpmdConfig};
/// use muster_core::{ConnectPolicy, Node, TopologySpec};
///
/// let hosts = [Node::new("app@10.0.0.2".parse()?)];
/// let spec = TopologySpec::new("static", Epmd::new(EpmdConfig::new(hosts)))
///     .policy(ConnectPolicy::default().connect_timeout(Duration::from_secs(2)));
/// assert_eq!(spec.name, "static");
/// # Ok::<(), muster_core::NodeNameError>(())
/// ```
#[non_exhaustive]
pub struct TopologySpec {
    /// The topology's name (the key under `[topologies]`).
    pub name: String,
    /// The discovery strategy.
    pub strategy: Box<dyn Strategy>,
    /// How its nodes are connected.
    pub policy: ConnectPolicy,
}

impl core::fmt::Debug for TopologySpec {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TopologySpec")
            .field("name", &self.name)
            .field("strategy", &self.strategy.kind())
            .field("policy", &self.policy)
            .finish()
    }
}

impl TopologySpec {
    /// A topology named `name` discovering with `strategy`, with the default
    /// [`ConnectPolicy`].
    pub fn new(name: impl Into<String>, strategy: impl Strategy) -> Self {
        TopologySpec::boxed(name, Box::new(strategy))
    }

    /// [`new`](TopologySpec::new) for a strategy already boxed (one a
    /// [`Registry`] built).
    pub fn boxed(name: impl Into<String>, strategy: Box<dyn Strategy>) -> Self {
        TopologySpec {
            name: name.into(),
            strategy,
            policy: ConnectPolicy::default(),
        }
    }

    /// Connects its nodes as `policy` says.
    pub fn policy(mut self, policy: ConnectPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// A topology from a `[topologies.NAME]` table: `strategy` (required), `config` (the
    /// strategy's options, libcluster's names) and `connect` (a [`ConnectPolicy`]). Warnings
    /// about accepted but discouraged keys are left in `o`
    /// ([`Options::take_warnings`]).
    pub fn from_config(
        name: &str,
        o: &mut Options<'_>,
        registry: &Registry,
    ) -> Result<TopologySpec, ConfigError> {
        let kind = o.string("strategy")?;
        let written = o.required("strategy", kind)?;
        // libcluster's module names are accepted, and said to be aliases.
        let alias = crate::strategy::libcluster_alias(written);
        let kind = match alias {
            Some(k) => {
                o.warn(
                    "strategy",
                    format!("{written:?} is libcluster's name; muster calls it {k:?}"),
                );
                k
            }
            None => written,
        };
        let empty = Vec::new();
        let config_path = o.key_path("config");
        let mut config = o
            .table("config")?
            .unwrap_or_else(|| Options::new(config_path, &empty));
        let strategy = match registry.build(kind, &mut config) {
            Ok(s) => s,
            Err(e) if matches!(e.problem, Problem::UnknownStrategy(..)) => {
                return Err(ConfigError::new(o.key_path("strategy"), e.problem));
            }
            Err(e) => return Err(e),
        };
        // A libcluster topology moved over with its secret would switch to muster's secure
        // format, which libcluster nodes cannot read: say so.
        if alias == Some("gossip") && config.has("secret") && !config.has("compat") {
            config.warn(
                "secret",
                "a secret without compat = true is muster's secure format, which libcluster \
                 nodes cannot read; add compat = true to talk to them",
            );
        }
        o.absorb_warnings(&mut config);
        config.finish()?;
        let policy = match o.table("connect")? {
            Some(mut c) => {
                let p = ConnectPolicy::from_options(&mut c)?;
                c.finish()?;
                p
            }
            None => ConnectPolicy::default(),
        };
        Ok(TopologySpec {
            name: name.to_owned(),
            strategy,
            policy,
        })
    }

    /// The topology as configuration values, every default filled in.
    pub fn describe(&self) -> Value {
        Value::Table(vec![
            ("strategy".into(), Value::str(self.strategy.kind())),
            ("config".into(), Value::Table(self.strategy.describe())),
            ("connect".into(), Value::Table(self.policy.describe())),
        ])
    }
}
