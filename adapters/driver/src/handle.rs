//! The application's side of a running cluster: the handle that watches and steers it, and
//! the commands it sends the driver.

use std::sync::{Arc, Mutex};

use muster_core::{AddTopologyError, Metrics, NodeName, TopologyId, TopologySpec};
use muster_net::view::View;

use crate::events::Events;

/// What the handle asks of the driver.
pub(crate) enum Command {
    Stop {
        leave: bool,
        done: async_channel::Sender<()>,
    },
    Add {
        spec: TopologySpec,
        done: async_channel::Sender<Result<TopologyId, AddTopologyError>>,
    },
    Remove {
        id: TopologyId,
        done: async_channel::Sender<bool>,
    },
}

pub(crate) struct State {
    pub(crate) view: View,
    pub(crate) stopped: bool,
}

/// What the driver publishes after each step and the handles read.
pub(crate) struct Shared {
    state: Mutex<State>,
    changed: event_listener::Event,
}

impl Shared {
    pub(crate) fn new(view: View) -> Self {
        Shared {
            state: Mutex::new(State {
                view,
                stopped: false,
            }),
            changed: event_listener::Event::new(),
        }
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes whoever waits for a change.
    pub(crate) fn notify(&self) {
        self.changed.notify(usize::MAX);
    }

    /// Waits until `f` gives a value, re-checking after every published change.
    async fn wait<T>(&self, mut f: impl FnMut(&State) -> Option<T>) -> Option<T> {
        loop {
            let listener = self.changed.listen();
            {
                let s = self.lock();
                if let Some(v) = f(&s) {
                    return Some(v);
                }
                if s.stopped {
                    return None;
                }
            }
            listener.await;
        }
    }
}

/// The application's handle on a running cluster. Cheap to clone. When every handle is
/// dropped the cluster stops, as with [`shutdown`](ClusterHandle::shutdown).
#[derive(Clone)]
pub struct ClusterHandle {
    pub(crate) cmd: async_channel::Sender<Command>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) events: async_broadcast::InactiveReceiver<muster_core::Event>,
}

impl std::fmt::Debug for ClusterHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterHandle")
            .field("members", &self.members())
            .finish()
    }
}

impl ClusterHandle {
    /// The nodes connected now, in name order.
    pub fn members(&self) -> Vec<NodeName> {
        self.shared.lock().view.members.clone()
    }

    /// Waits until the members satisfy `pred`, and returns them. Returns `None` if the
    /// cluster stopped first.
    pub async fn wait_for_members(
        &self,
        mut pred: impl FnMut(&[NodeName]) -> bool,
    ) -> Option<Vec<NodeName>> {
        self.shared
            .wait(|s| pred(&s.view.members).then(|| s.view.members.clone()))
            .await
    }

    /// A snapshot of the core's counters.
    pub fn metrics(&self) -> Metrics {
        self.shared.lock().view.metrics
    }

    /// Waits until the counters satisfy `pred` (they are published after every step of the
    /// cluster), and returns them. Returns `None` if the cluster stopped first.
    pub async fn wait_for_metrics(
        &self,
        mut pred: impl FnMut(&Metrics) -> bool,
    ) -> Option<Metrics> {
        self.shared
            .wait(|s| pred(&s.view.metrics).then_some(s.view.metrics))
            .await
    }

    /// Whether the cluster has stopped (shut down, left, or every handle dropped).
    pub fn is_stopped(&self) -> bool {
        self.shared.lock().stopped
    }

    /// A new stream of the events from now on.
    pub fn subscribe(&self) -> Events {
        Events::new(self.events.activate_cloned())
    }

    /// Adds a topology to the running cluster. Fails if the topology is invalid
    /// ([`AddTopologyError::Invalid`]) or the cluster has stopped or is leaving
    /// ([`AddTopologyError::Stopped`]).
    pub async fn add_topology(&self, spec: TopologySpec) -> Result<TopologyId, AddTopologyError> {
        let (done, rx) = async_channel::bounded(1);
        if self.cmd.send(Command::Add { spec, done }).await.is_err() {
            return Err(AddTopologyError::Stopped);
        }
        rx.recv().await.unwrap_or(Err(AddTopologyError::Stopped))
    }

    /// Removes a topology from the running cluster; its nodes are lost to it, and those no
    /// other topology wants are disconnected. Returns whether it existed.
    pub async fn remove_topology(&self, id: TopologyId) -> bool {
        let (done, rx) = async_channel::bounded(1);
        if self.cmd.send(Command::Remove { id, done }).await.is_err() {
            return false;
        }
        rx.recv().await.unwrap_or(false)
    }

    /// Stops the cluster: no more discovery, no more connects. Connections are left as they
    /// are (they live as long as the connector does). Returns once every socket the cluster
    /// opened is closed.
    pub async fn shutdown(self) {
        self.stop(false).await;
    }

    /// Leaves the cluster, as the core's [`Cluster::leave`](muster_core::Cluster::leave)
    /// says: stops discovery, disconnects every node this cluster connected (an Erlang node
    /// also leaves distribution), waits until nothing is in flight — every request has its
    /// deadline —, then stops.
    pub async fn leave(self) {
        self.stop(true).await;
    }

    async fn stop(self, leave: bool) {
        let (done, rx) = async_channel::bounded(1);
        if self.cmd.send(Command::Stop { leave, done }).await.is_ok() {
            let _ = rx.recv().await;
        }
    }
}
