//! What a scenario needs from an adapter, written once; one implementation per adapter (and
//! per executor) in `adapters.rs`. Everything here blocks, so that a scenario reads the same
//! whatever runs the cluster.

use std::time::Duration;

use muster::core::connector::RecordingConnector;
use muster::core::{Event, Metrics, NodeName, TopologySpec};

/// A failsafe around every wait: a hung scenario fails instead of hanging CI. Never a
/// timing threshold: every wait ends on the event it waits for.
pub const HANG: Duration = Duration::from_secs(60);

/// The plumbing a scenario asks for; each adapter builds its own where it has one.
pub enum Plumbing {
    /// Discovery only.
    None,
    /// The core's recording connector, shared with the scenario.
    Recording(RecordingConnector),
    /// The adapter's own TCP connector, on this port.
    Tcp(u16),
    /// The cluster is this Erlang node itself (the core's distribution over the adapter's
    /// streams).
    Erlang(muster::core::dist::DistConfig),
}

/// One node to start.
pub struct Setup {
    pub name: NodeName,
    pub topologies: Vec<TopologySpec>,
    pub plumbing: Plumbing,
}

/// A way of running a cluster: an adapter, on an executor.
pub trait Adapter {
    /// Starts the node's cluster.
    fn start(setup: Setup) -> Box<dyn Running>;
}

/// A running cluster, as the scenarios see it.
pub trait Running {
    /// The connected nodes, in name order.
    fn members(&self) -> Vec<NodeName>;
    /// Waits until the members satisfy `pred`.
    fn wait_members(&mut self, what: &str, pred: &mut dyn FnMut(&[NodeName]) -> bool);
    /// Waits until the counters satisfy `pred`.
    fn wait_metrics(&mut self, what: &str, pred: &mut dyn FnMut(&Metrics) -> bool) -> Metrics;
    /// The next event that satisfies `pred`.
    fn next_event(&mut self, what: &str, pred: &mut dyn FnMut(&Event) -> bool) -> Event;
    /// Shuts the cluster down; returns once it has stopped and its event stream has ended.
    fn shutdown(self: Box<Self>);
    /// Leaves the cluster (disconnecting its nodes); returns once it has stopped.
    fn leave(self: Box<Self>);
}
