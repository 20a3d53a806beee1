//! The `tcp` connector of the async-io and mio adapters, and the connections it holds, one
//! per node, checked when it lists them.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::marker::PhantomData;
use std::net::TcpStream;
use std::sync::{Arc, Mutex, MutexGuard};

use muster_core::connector::{BoxFuture, ConnectOutcome, Connector, DisconnectOutcome};
use muster_core::{Failure, FailureKind, Node, NodeName};

/// One held connection per node. A node counts as connected while its connection is up;
/// [`list`](Held::list) reads and discards what each peer sent and drops the connections
/// the peers closed, so the cluster (which lists at every poll) reconnects them. Needs no
/// task or thread of its own.
#[derive(Debug, Clone, Default)]
pub struct Held {
    streams: Arc<Mutex<BTreeMap<NodeName, TcpStream>>>,
}

impl Held {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<NodeName, TcpStream>> {
        self.streams.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a connection to `node` is held.
    pub fn contains(&self, node: &NodeName) -> bool {
        self.lock().contains_key(node)
    }

    /// Holds `stream` as the connection to `node` (non-blocking from now on), replacing and
    /// closing any earlier one.
    pub fn insert(&self, node: NodeName, stream: TcpStream) -> io::Result<()> {
        stream.set_nonblocking(true)?;
        let _ = stream.set_nodelay(true);
        self.lock().insert(node, stream);
        Ok(())
    }

    /// Closes the connection to `node`.
    pub fn remove(&self, node: &NodeName) -> DisconnectOutcome {
        match self.lock().remove(node) {
            Some(_) => DisconnectOutcome::Disconnected,
            None => DisconnectOutcome::NotConnected,
        }
    }

    /// The nodes whose connection is still up, in name order.
    pub fn list(&self) -> Vec<NodeName> {
        let mut held = self.lock();
        held.retain(|_, s| alive(s));
        held.keys().cloned().collect()
    }
}

/// Whether a non-blocking connection is still up, reading (and discarding) what the peer
/// sent.
fn alive(mut stream: &TcpStream) -> bool {
    let mut buf = [0u8; 512];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return false,
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
}

/// The failure of a host with no address to try.
pub fn no_address(host: &str) -> Failure {
    Failure::new(FailureKind::NotFound, format!("{host}: no address"))
}

/// How a `tcp` connector opens a connection to a node: its address hint, else its host
/// resolved, at `port`. Each adapter opens in its own way (async, or blocking on a worker).
pub trait Open: Default + Send + Sync + 'static {
    /// A connection to `node`, or why not (naming the address).
    fn open(node: Node, port: u16) -> BoxFuture<Result<TcpStream, Failure>>;
}

/// The `tcp` connector: holds one TCP connection to each node, on the node's address hint
/// or on its host at a fixed port, and counts the node connected while that connection is
/// up.
///
/// Plain plumbing for services that listen on a known port: the peer only has to accept.
/// The connector runs no task of its own: when the cluster lists the connected nodes (every
/// poll), it reads and discards what each peer sent and drops the connections the peers
/// closed, so the cluster reconnects them with backoff.
#[derive(Debug, Clone)]
pub struct TcpConnector<O> {
    port: u16,
    held: Held,
    open: PhantomData<O>,
}

impl<O: Open> TcpConnector<O> {
    /// Connects to each node's host on `port` (or to its address hint, when it has one).
    pub fn new(port: u16) -> Self {
        TcpConnector {
            port,
            held: Held::default(),
            open: PhantomData,
        }
    }

    /// The port used for nodes without an address hint.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl<O: Open> Connector for TcpConnector<O> {
    fn connect(&self, node: Node) -> BoxFuture<ConnectOutcome> {
        let held = self.held.clone();
        let port = self.port;
        Box::pin(async move {
            if held.contains(&node.name) {
                return ConnectOutcome::Connected;
            }
            let name = node.name.clone();
            match O::open(node, port).await {
                Ok(s) => match held.insert(name, s) {
                    Ok(()) => ConnectOutcome::Connected,
                    Err(e) => ConnectOutcome::Failed(e.into()),
                },
                Err(e) => ConnectOutcome::Failed(e),
            }
        })
    }

    fn disconnect(&self, node: NodeName) -> BoxFuture<DisconnectOutcome> {
        let outcome = self.held.remove(&node);
        Box::pin(async move { outcome })
    }

    fn list_nodes(&self) -> BoxFuture<Result<Vec<NodeName>, Failure>> {
        let nodes = self.held.list();
        Box::pin(async move { Ok(nodes) })
    }
}
