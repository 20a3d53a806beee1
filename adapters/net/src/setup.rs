//! What every adapter's builder gathers — settings, topologies, connector, seed, event
//! capacity — and the cluster made from it, so that each builder only adds its runtime's
//! loop. [`builder_methods!`](crate::builder_methods) gives a builder holding a `setup`
//! field the same public methods on every adapter.

use std::sync::Arc;

use muster_core::connector::{Connector, NoneConnector};
use muster_core::dist::DistConfig;
use muster_core::{
    AddTopologyError, Cluster, ClusterConfig, ConfigError, Instant, NodeName, TopologySpec,
};

/// A cluster's ingredients, before it runs.
pub struct Setup {
    config: ClusterConfig,
    topologies: Vec<TopologySpec>,
    connector: Arc<dyn Connector>,
    seed: Option<[u8; 32]>,
    event_capacity: usize,
}

impl std::fmt::Debug for Setup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Setup")
            .field("config", &self.config)
            .field("topologies", &self.topologies)
            .finish()
    }
}

/// A cluster made from a [`Setup`], with what its loop needs besides.
pub struct Ready {
    /// The cluster, its topologies added and the wall clock set.
    pub cluster: Cluster,
    /// The connector, attached to nothing yet.
    pub connector: Arc<dyn Connector>,
    /// How many events a subscriber may fall behind.
    pub event_capacity: usize,
}

impl Setup {
    /// Nothing yet, connecting through `connector`.
    pub fn new(connector: Arc<dyn Connector>) -> Self {
        Setup {
            config: ClusterConfig::new(),
            topologies: Vec::new(),
            connector,
            seed: None,
            event_capacity: 4096,
        }
    }

    /// A cluster that is the Erlang node `config` says, named after it.
    pub fn erlang(config: DistConfig) -> Self {
        let mut s = Setup::new(Arc::new(NoneConnector));
        s.config = ClusterConfig::new().this_node(config.name.clone());
        s.config.erlang = Some(config);
        s
    }

    /// Sets this node's name.
    pub fn this_node(&mut self, name: NodeName) {
        self.config.this_node = Some(name);
    }

    /// Replaces the settings, keeping this node's name and the Erlang node unless `config`
    /// gives its own.
    pub fn config(&mut self, config: ClusterConfig) {
        let me = self.config.this_node.take();
        let erlang = self.config.erlang.take();
        self.config = config;
        if self.config.this_node.is_none() {
            self.config.this_node = me;
        }
        if self.config.erlang.is_none() {
            self.config.erlang = erlang;
        }
    }

    /// Adds a topology.
    pub fn topology(&mut self, spec: TopologySpec) {
        self.topologies.push(spec);
    }

    /// Fixes the seed.
    pub fn seed(&mut self, seed: [u8; 32]) {
        self.seed = Some(seed);
    }

    /// Sets the event capacity (at least 1).
    pub fn event_capacity(&mut self, n: usize) {
        self.event_capacity = n.max(1);
    }

    /// The cluster: seeded (from the operating system unless fixed), told the wall clock,
    /// its topologies added. A discovery-only connector makes a discovery-only cluster,
    /// unless the cluster is an Erlang node (its own connector). Fails on a bad topology.
    ///
    /// # Panics
    ///
    /// If no seed was fixed and the operating system has no random source.
    pub fn ready(self) -> Result<Ready, ConfigError> {
        let seed = self.seed.unwrap_or_else(crate::seed);
        let mut config = self.config;
        if let Some(d) = config.erlang.as_ref().filter(|d| !d.hidden) {
            tracing::warn!(
                node = %d.name,
                "this Erlang node is visible (hidden = false): it does not speak OTP's global \
                 protocol, so global:sync() on every BEAM node connected to it does not return \
                 while it is connected; keep it hidden unless no one there calls global:sync()"
            );
        }
        if config.erlang.is_none() {
            config.discovery_only |= self.connector.discovery_only();
        }
        let mut cluster = Cluster::new(config, seed);
        if let Some(unix) = crate::unix_time() {
            cluster.set_unix_time(Instant::ZERO, unix);
        }
        for spec in self.topologies {
            cluster.add(Instant::ZERO, spec).map_err(|e| match e {
                AddTopologyError::Invalid(e) => e,
                // A cluster that was just made has not stopped.
                other => ConfigError::invalid("topologies", other.to_string()),
            })?;
        }
        Ok(Ready {
            cluster,
            connector: self.connector,
            event_capacity: self.event_capacity,
        })
    }
}

/// The public methods every adapter's `Builder` has, for a builder whose field `setup` is a
/// [`Setup`]. Expands inside `impl Builder`.
#[macro_export]
macro_rules! builder_methods {
    () => {
        /// A cluster that connects nodes through `connector`.
        pub fn new(connector: impl ::muster_core::connector::Connector) -> Self {
            Self::with_connector(::std::sync::Arc::new(connector))
        }

        /// [`Builder::new`] for a connector already shared.
        pub fn with_connector(
            connector: ::std::sync::Arc<dyn ::muster_core::connector::Connector>,
        ) -> Self {
            Self::from_setup($crate::setup::Setup::new(connector))
        }

        /// A cluster that is the Erlang node `config` says: it connects, disconnects and
        /// lists nodes itself over Erlang distribution (registering with the local EPMD,
        /// listening, linking with the cookie handshake), and this adapter only moves the
        /// bytes. The node's name is also this node's name.
        pub fn erlang(config: ::muster_core::dist::DistConfig) -> Self {
            Self::from_setup($crate::setup::Setup::erlang(config))
        }

        /// This node's name (never connected to).
        pub fn this_node(mut self, name: ::muster_core::NodeName) -> Self {
            self.setup.this_node(name);
            self
        }

        /// The cluster's settings (this node's name and the Erlang node are kept unless
        /// `config` sets its own).
        pub fn config(mut self, config: ::muster_core::ClusterConfig) -> Self {
            self.setup.config(config);
            self
        }

        /// Adds a topology.
        pub fn topology(mut self, spec: ::muster_core::TopologySpec) -> Self {
            self.setup.topology(spec);
            self
        }

        /// Fixes the random seed (tests); by default it comes from the operating system.
        pub fn seed(mut self, seed: [u8; 32]) -> Self {
            self.setup.seed(seed);
            self
        }

        /// How many events a subscriber may fall behind before it misses some. Default 4096.
        pub fn event_capacity(mut self, n: usize) -> Self {
            self.setup.event_capacity(n);
            self
        }
    };
}
