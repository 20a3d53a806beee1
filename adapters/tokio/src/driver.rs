//! The tokio adapter's builder: the one async driver, on tokio.

use muster_core::ConfigError;
use muster_net::setup::Setup;

use crate::runtime::Tokio;
use crate::{ClusterHandle, Events};

/// The future that runs a cluster on tokio: every request of the core runs concurrently on
/// its own task. [`Builder::spawn`] spawns it for you; [`Builder::build`] hands it to you.
pub type Driver = muster_driver::Driver<Tokio>;

/// Configures and starts a cluster on the current tokio runtime.
///
/// ```no_run
/// # async fn demo() -> Result<(), muster_core::ConfigError> {
/// use std::time::Duration;
/// use muster_core::strategy::epmd::{Epmd, EpmdConfig};
/// use muster_core::{Node, TopologySpec};
/// use muster_tokio::{Builder, TcpConnector};
///
/// let hosts = ["app@10.0.0.1", "app@10.0.0.2"].map(|h| Node::new(h.parse().unwrap()));
/// let epmd = EpmdConfig::new(hosts).reconnect_every(Duration::from_secs(5));
/// let (handle, mut events) = Builder::new(TcpConnector::new(7000))
///     .this_node("app@10.0.0.1".parse().unwrap())
///     .topology(TopologySpec::new("static", Epmd::new(epmd)))
///     .spawn()?;
/// while let Some(event) = events.recv().await {
///     println!("{event}");
/// }
/// handle.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Builder {
    setup: Setup,
}

impl Builder {
    muster_net::builder_methods!();

    fn from_setup(setup: Setup) -> Self {
        Builder { setup }
    }

    /// Builds the cluster on the current tokio runtime. Returns its handle, a stream of every
    /// event from the first one on, and the [`Driver`], which runs nothing until you spawn
    /// its [`run`](muster_driver::Driver::run) future. Fails on a bad topology (duplicate
    /// name, too many).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, or if the operating system has no random source.
    pub fn build(self) -> Result<(ClusterHandle, Events, Driver), ConfigError> {
        muster_driver::build(self.setup, Tokio::current())
    }

    /// Starts the cluster on the current tokio runtime. Returns its handle and a stream of
    /// every event from the first one on. Fails on a bad topology (duplicate name, too
    /// many).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, or if the operating system has no random source.
    pub fn spawn(self) -> Result<(ClusterHandle, Events), ConfigError> {
        let (handle, events, driver) = self.build()?;
        tokio::spawn(driver.run());
        Ok((handle, events))
    }
}
