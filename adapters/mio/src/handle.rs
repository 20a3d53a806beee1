//! The builder, and the handle an application keeps on a cluster whose loop runs on a
//! thread of its own.

use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mio::Waker;
use muster_core::{AddTopologyError, ConfigError, Metrics, NodeName, TopologyId, TopologySpec};

use crate::event_loop::Driver;
use crate::hub::{Events, Hub};
use muster_net::setup::Setup;
use muster_net::view::View;

/// Configures a cluster; [`build`](Builder::build) returns the [`Driver`] to run on a
/// thread of your own.
///
/// ```no_run
/// # fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use muster_core::connector::NoneConnector;
/// use muster_core::strategy::epmd::{Epmd, EpmdConfig};
/// use muster_core::{Node, TopologySpec};
/// use muster_mio::Builder;
///
/// let hosts = ["app@10.0.0.1", "app@10.0.0.2"].map(|h| Node::new(h.parse().unwrap()));
/// let (cluster, events, driver) = Builder::new(NoneConnector)
///     .topology(TopologySpec::new("static", Epmd::new(EpmdConfig::new(hosts))))
///     .build()?;
/// let thread = std::thread::spawn(move || driver.run());
/// for event in events.take(3) {
///     println!("{event}");
/// }
/// cluster.shutdown();
/// thread.join().expect("the loop")?;
/// # Ok(()) }
/// ```
pub struct Builder {
    pub(crate) setup: Setup,
    pub(crate) workers: usize,
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("setup", &self.setup)
            .field("workers", &self.workers)
            .finish()
    }
}

impl Builder {
    muster_net::builder_methods!();

    fn from_setup(setup: Setup) -> Self {
        Builder { setup, workers: 4 }
    }

    /// How many threads run connector calls, file reads and name lookups. Default 4.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n.max(1);
        self
    }

    /// Builds the cluster: its handle, a stream of every event from the first one on, and
    /// the loop to run (nothing happens until it runs). Fails on a bad topology, or when the
    /// operating system refuses a poller or a thread.
    pub fn build(self) -> Result<(ClusterHandle, Events, Driver), BuildError> {
        Driver::new(self)
    }
}

/// Why a cluster could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A bad topology (duplicate name, too many).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The operating system refused a poller, a waker or a worker thread.
    #[error("cannot start the event loop: {0}")]
    Io(#[from] std::io::Error),
}

pub(crate) enum Command {
    Stop {
        leave: bool,
    },
    Add(
        TopologySpec,
        mpsc::Sender<Result<TopologyId, AddTopologyError>>,
    ),
    Remove(TopologyId, mpsc::Sender<bool>),
}

pub(crate) struct State {
    pub(crate) view: View,
    pub(crate) stopped: bool,
}

/// What the loop publishes and the handles read.
pub(crate) struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    pub(crate) fn new(view: View) -> Arc<Shared> {
        Arc::new(Shared {
            state: Mutex::new(State {
                view,
                stopped: false,
            }),
            changed: Condvar::new(),
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn notify(&self) {
        self.changed.notify_all();
    }

    /// Waits until `f` gives a value, the loop stops (`None`) or `timeout` passes (`None`).
    fn wait<T>(&self, timeout: Duration, mut f: impl FnMut(&State) -> Option<T>) -> Option<T> {
        let until = Instant::now().checked_add(timeout);
        let mut s = self.lock();
        loop {
            if let Some(v) = f(&s) {
                return Some(v);
            }
            if s.stopped {
                return None;
            }
            s = match until {
                None => self.changed.wait(s).unwrap_or_else(|p| p.into_inner()),
                Some(until) => {
                    let left = until.checked_duration_since(Instant::now())?;
                    self.changed
                        .wait_timeout(s, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
    }
}

/// Commands to the loop. Dropping the last one closes the channel and wakes the loop, which
/// then stops.
struct Line {
    cmd: Option<mpsc::Sender<Command>>,
    waker: Arc<Waker>,
}

impl Line {
    fn send(&self, c: Command) -> bool {
        let sent = self.cmd.as_ref().is_some_and(|tx| tx.send(c).is_ok());
        sent && self.waker.wake().is_ok()
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        self.cmd.take();
        let _ = self.waker.wake();
    }
}

/// The application's handle on a running cluster. Cheap to clone; every call may be made
/// from any thread. When every handle is dropped the loop stops, as with
/// [`shutdown`](ClusterHandle::shutdown).
#[derive(Clone)]
pub struct ClusterHandle {
    line: Arc<Line>,
    shared: Arc<Shared>,
    hub: Arc<Hub>,
}

impl std::fmt::Debug for ClusterHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterHandle")
            .field("members", &self.members())
            .finish()
    }
}

impl ClusterHandle {
    pub(crate) fn new(
        cmd: mpsc::Sender<Command>,
        waker: Arc<Waker>,
        shared: Arc<Shared>,
        hub: Arc<Hub>,
    ) -> Self {
        ClusterHandle {
            line: Arc::new(Line {
                cmd: Some(cmd),
                waker,
            }),
            shared,
            hub,
        }
    }

    /// The nodes connected now, in name order.
    pub fn members(&self) -> Vec<NodeName> {
        self.shared.lock().view.members.clone()
    }

    /// Waits until the members satisfy `pred`, and returns them; `None` if the cluster
    /// stopped first or `timeout` passed.
    pub fn wait_for_members(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(&[NodeName]) -> bool,
    ) -> Option<Vec<NodeName>> {
        self.shared.wait(timeout, |s| {
            pred(&s.view.members).then(|| s.view.members.clone())
        })
    }

    /// A snapshot of the core's counters.
    pub fn metrics(&self) -> Metrics {
        self.shared.lock().view.metrics
    }

    /// Waits until the counters satisfy `pred` (they are published after every step of the
    /// cluster); `None` if the cluster stopped first or `timeout` passed.
    pub fn wait_for_metrics(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(&Metrics) -> bool,
    ) -> Option<Metrics> {
        self.shared
            .wait(timeout, |s| pred(&s.view.metrics).then_some(s.view.metrics))
    }

    /// A new stream of the events from now on.
    pub fn subscribe(&self) -> Events {
        self.hub.subscribe()
    }

    /// Adds a topology to the running cluster. Fails if the topology is invalid
    /// ([`AddTopologyError::Invalid`]) or the cluster has stopped or is leaving
    /// ([`AddTopologyError::Stopped`]).
    pub fn add_topology(&self, spec: TopologySpec) -> Result<TopologyId, AddTopologyError> {
        let (tx, rx) = mpsc::channel();
        if !self.line.send(Command::Add(spec, tx)) {
            return Err(AddTopologyError::Stopped);
        }
        rx.recv().unwrap_or(Err(AddTopologyError::Stopped))
    }

    /// Removes a topology from the running cluster; its nodes are lost to it, and those no
    /// other topology wants are disconnected. Returns whether it existed.
    pub fn remove_topology(&self, id: TopologyId) -> bool {
        let (tx, rx) = mpsc::channel();
        self.line.send(Command::Remove(id, tx)) && rx.recv().unwrap_or(false)
    }

    /// Stops the cluster and waits until the loop has returned from
    /// [`Driver::run`]: no more discovery, no more connects. Connections are left as they
    /// are (they live as long as the connector does).
    pub fn shutdown(self) {
        self.stop(false);
    }

    /// Leaves the cluster, as the core's [`Cluster::leave`](muster_core::Cluster::leave)
    /// says: stops discovery, disconnects every node this cluster connected (an Erlang node
    /// also leaves distribution), waits until nothing is in flight — every request has its
    /// deadline —, then stops.
    pub fn leave(self) {
        self.stop(true);
    }

    fn stop(self, leave: bool) {
        if self.line.send(Command::Stop { leave }) {
            self.shared.wait(Duration::MAX, |s| s.stopped.then_some(()));
        }
    }
}
