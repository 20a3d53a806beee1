//! The async-io adapter's builder, and the future that runs a cluster on whatever executor
//! the application has.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use muster_core::ConfigError;
use muster_net::setup::Setup;

use crate::runtime::AsyncIo;
use crate::{ClusterHandle, Events};

/// Configures a cluster on async-io; [`build`](Builder::build) returns the future that runs
/// it, for the executor you already have.
///
/// ```no_run
/// # fn demo() -> Result<(), muster_core::ConfigError> {
/// use muster_async_io::Builder;
/// use muster_core::connector::NoneConnector;
/// use muster_core::strategy::epmd::{Epmd, EpmdConfig};
/// use muster_core::{Node, TopologySpec};
///
/// let hosts = ["app@10.0.0.1", "app@10.0.0.2"].map(|h| Node::new(h.parse().unwrap()));
/// let (cluster, mut events, driver) = Builder::new(NoneConnector)
///     .topology(TopologySpec::new("static", Epmd::new(EpmdConfig::new(hosts))))
///     .build()?;
/// smol::block_on(async {
///     let running = smol::spawn(driver);   // or async_std::task::spawn(driver)
///     while let Some(event) = events.recv().await {
///         println!("{event}");
///     }
///     cluster.shutdown().await;
///     running.await;
/// });
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

    /// Builds the cluster. Returns its handle, a stream of every event from the first one on,
    /// and the [`Driver`]: the future that runs the cluster until it is shut down, has left,
    /// or every handle is dropped. Nothing happens until the driver is polled: spawn it on
    /// your executor. Fails on a bad topology (duplicate name, too many).
    ///
    /// # Panics
    ///
    /// If the operating system has no random source.
    pub fn build(self) -> Result<(ClusterHandle, Events, Driver), ConfigError> {
        let runtime = AsyncIo::new();
        let executor = runtime.executor().clone();
        let (handle, events, driver) = muster_driver::build(self.setup, runtime)?;
        let run = driver.run();
        let driver = Driver(Box::pin(async move {
            executor.run(run).await;
        }));
        Ok((handle, events, driver))
    }
}

/// The future that runs a cluster: every request of the core runs concurrently inside it.
/// Spawn it on your executor (`async_std::task::spawn`, `smol::spawn`), or `.await` it. It
/// ends when the cluster is shut down, has left, or every [`ClusterHandle`] is dropped.
#[must_use = "the cluster runs only while its driver is polled"]
pub struct Driver(Pin<Box<dyn Future<Output = ()> + Send>>);

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Driver")
    }
}

impl Future for Driver {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.as_mut().poll(cx)
    }
}
