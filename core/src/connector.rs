//! Connectors: the plumbing that connects, disconnects and lists nodes.
//!
//! The trait is the same for every adapter: its methods return futures that need no
//! particular runtime of their own (a connector that does I/O uses its adapter's). Adapters
//! run each call with the request's deadline around it and feed the outcome back as an
//! [`Answer`](crate::Answer). The connectors here do no I/O: [`NoneConnector`] (discovery
//! only), [`CallbackConnector`] (your closures) and [`RecordingConnector`] (tests).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use crate::node::{Node, NodeName};
use crate::reason::Failure;

/// A boxed future, as connectors return them (so that `dyn Connector` works).
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What a connect came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectOutcome {
    /// Connected.
    Connected,
    /// Not attempted: this node is not part of a network (Erlang's `:ignored`).
    Ignored,
    /// Failed: why. A text converts (`"no route".into()`), and so does an `io::Error`.
    Failed(Failure),
}

/// What a disconnect came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisconnectOutcome {
    /// Disconnected.
    Disconnected,
    /// There was no connection.
    NotConnected,
    /// Not attempted: this node is not part of a network.
    Ignored,
    /// Failed: why.
    Failed(Failure),
}

/// Something a connector noticed on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The connection to a node went away.
    Down {
        /// The node.
        node: NodeName,
        /// Why.
        reason: Failure,
    },
    /// A connection to a node came up without a connect request (an incoming one).
    Up {
        /// The node.
        node: NodeName,
    },
}

type Sink = dyn Fn(Notice) + Send + Sync;

/// Where a connector reports what it notices on its own; see [`Connector::attach`].
///
/// The adapter makes one around its own channel; reporting never blocks.
#[derive(Clone)]
pub struct Notices {
    sink: Arc<Sink>,
}

impl std::fmt::Debug for Notices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Notices")
    }
}

impl Notices {
    /// Notices that go to `sink`, which must not block: an adapter pushes into a bounded
    /// queue and drops what does not fit (the next list of connected nodes tells it anyway).
    pub fn new(sink: impl Fn(Notice) + Send + Sync + 'static) -> Self {
        Notices {
            sink: Arc::new(sink),
        }
    }

    /// Reports that the connection to `node` went away. Never blocks: if the cluster is
    /// behind, the notice is dropped and the next list of connected nodes tells it instead.
    pub fn node_down(&self, node: NodeName, reason: impl Into<Failure>) {
        (self.sink)(Notice::Down {
            node,
            reason: reason.into(),
        });
    }

    /// Reports an incoming connection from `node`.
    pub fn node_up(&self, node: NodeName) {
        (self.sink)(Notice::Up { node });
    }
}

/// The plumbing a cluster connects nodes with: libcluster's `connect`, `disconnect` and
/// `list_nodes`.
///
/// Each call returns a future that the adapter runs concurrently with everything else, with
/// the request's deadline around it, so a slow connect never holds up anything else. `list_nodes` must
/// return every node the plumbing holds a connection to, however it came about: the cluster
/// reconciles against it.
pub trait Connector: Send + Sync + 'static {
    /// Connects to `node` (its address hint, when set, says where).
    fn connect(&self, node: Node) -> BoxFuture<ConnectOutcome>;

    /// Disconnects `node`.
    fn disconnect(&self, node: NodeName) -> BoxFuture<DisconnectOutcome>;

    /// The nodes connected now.
    fn list_nodes(&self) -> BoxFuture<Result<Vec<NodeName>, Failure>>;

    /// Called once, before anything else: where to report connections that drop (or come
    /// in) on their own. A connector that cannot tell ignores it; the cluster then notices at
    /// its next poll.
    fn attach(&self, notices: Notices) {
        let _ = notices;
    }

    /// True for a connector that connects nothing (discovery only): the cluster then never
    /// asks it anything.
    fn discovery_only(&self) -> bool {
        false
    }
}

/// The `none` connector: discovery only. Topologies discover and report; nothing is
/// connected.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoneConnector;

impl Connector for NoneConnector {
    fn connect(&self, _node: Node) -> BoxFuture<ConnectOutcome> {
        Box::pin(async { ConnectOutcome::Ignored })
    }

    fn disconnect(&self, _node: NodeName) -> BoxFuture<DisconnectOutcome> {
        Box::pin(async { DisconnectOutcome::Ignored })
    }

    fn list_nodes(&self) -> BoxFuture<Result<Vec<NodeName>, Failure>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn discovery_only(&self) -> bool {
        true
    }
}

type ConnectFn = dyn Fn(Node) -> BoxFuture<ConnectOutcome> + Send + Sync;
type DisconnectFn = dyn Fn(NodeName) -> BoxFuture<DisconnectOutcome> + Send + Sync;
type ListFn = dyn Fn() -> BoxFuture<Result<Vec<NodeName>, Failure>> + Send + Sync;

/// A connector made of three async closures: plug in your own RPC mesh, actor system or seed
/// list.
///
/// ```
/// use muster_core::connector::{CallbackConnector, ConnectOutcome, DisconnectOutcome};
/// let connector = CallbackConnector::new(
///     |node| async move { println!("connect {}", node.name); ConnectOutcome::Connected },
///     |name| async move { println!("disconnect {name}"); DisconnectOutcome::Disconnected },
///     || async { Ok(Vec::new()) },
/// );
/// # let _ = connector;
/// ```
#[derive(Clone)]
pub struct CallbackConnector {
    connect: Arc<ConnectFn>,
    disconnect: Arc<DisconnectFn>,
    list: Arc<ListFn>,
}

impl std::fmt::Debug for CallbackConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CallbackConnector")
    }
}

impl CallbackConnector {
    /// A connector that calls `connect`, `disconnect` and `list_nodes`.
    pub fn new<C, CF, D, DF, L, LF>(connect: C, disconnect: D, list_nodes: L) -> Self
    where
        C: Fn(Node) -> CF + Send + Sync + 'static,
        CF: Future<Output = ConnectOutcome> + Send + 'static,
        D: Fn(NodeName) -> DF + Send + Sync + 'static,
        DF: Future<Output = DisconnectOutcome> + Send + 'static,
        L: Fn() -> LF + Send + Sync + 'static,
        LF: Future<Output = Result<Vec<NodeName>, Failure>> + Send + 'static,
    {
        CallbackConnector {
            connect: Arc::new(move |n| Box::pin(connect(n))),
            disconnect: Arc::new(move |n| Box::pin(disconnect(n))),
            list: Arc::new(move || Box::pin(list_nodes())),
        }
    }
}

impl Connector for CallbackConnector {
    fn connect(&self, node: Node) -> BoxFuture<ConnectOutcome> {
        (self.connect)(node)
    }

    fn disconnect(&self, node: NodeName) -> BoxFuture<DisconnectOutcome> {
        (self.disconnect)(node)
    }

    fn list_nodes(&self) -> BoxFuture<Result<Vec<NodeName>, Failure>> {
        (self.list)()
    }
}

/// A call a [`RecordingConnector`] received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `connect(node)`.
    Connect(NodeName),
    /// `disconnect(node)`.
    Disconnect(NodeName),
    /// `list_nodes()`.
    List,
}

#[derive(Default)]
struct Recording {
    calls: Vec<Call>,
    connected: std::collections::BTreeSet<NodeName>,
    outcomes: BTreeMap<NodeName, ConnectOutcome>,
    notices: Option<Notices>,
}

/// A connector for tests: records every call, connects whatever it is asked to unless told to
/// answer otherwise for a node, and can drop a connection on demand.
#[derive(Clone, Default)]
pub struct RecordingConnector {
    inner: Arc<Mutex<Recording>>,
}

impl std::fmt::Debug for RecordingConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingConnector")
            .field("calls", &self.calls())
            .finish()
    }
}

impl RecordingConnector {
    /// A connector that accepts every connect.
    pub fn new() -> Self {
        RecordingConnector::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recording> {
        // A panic while holding this lock can only come from a test; keep going.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// The nodes it holds as connected.
    pub fn connected(&self) -> Vec<NodeName> {
        self.lock().connected.iter().cloned().collect()
    }

    /// Answers connects to `node` with `outcome` from now on.
    pub fn set_outcome(&self, node: &NodeName, outcome: ConnectOutcome) {
        self.lock().outcomes.insert(node.clone(), outcome);
    }

    /// Drops the connection to `node` and tells the cluster, as a real connector would.
    pub fn drop_node(&self, node: &NodeName, reason: &str) {
        let mut r = self.lock();
        if r.connected.remove(node)
            && let Some(n) = &r.notices
        {
            n.node_down(node.clone(), reason);
        }
    }
}

impl Connector for RecordingConnector {
    fn connect(&self, node: Node) -> BoxFuture<ConnectOutcome> {
        let mut r = self.lock();
        r.calls.push(Call::Connect(node.name.clone()));
        let outcome = r
            .outcomes
            .get(&node.name)
            .cloned()
            .unwrap_or(ConnectOutcome::Connected);
        if outcome == ConnectOutcome::Connected {
            r.connected.insert(node.name);
        }
        Box::pin(async move { outcome })
    }

    fn disconnect(&self, node: NodeName) -> BoxFuture<DisconnectOutcome> {
        let mut r = self.lock();
        r.calls.push(Call::Disconnect(node.clone()));
        let outcome = if r.connected.remove(&node) {
            DisconnectOutcome::Disconnected
        } else {
            DisconnectOutcome::NotConnected
        };
        Box::pin(async move { outcome })
    }

    fn list_nodes(&self) -> BoxFuture<Result<Vec<NodeName>, Failure>> {
        let mut r = self.lock();
        r.calls.push(Call::List);
        let nodes = r.connected.iter().cloned().collect();
        Box::pin(async move { Ok(nodes) })
    }

    fn attach(&self, notices: Notices) {
        self.lock().notices = Some(notices);
    }
}
