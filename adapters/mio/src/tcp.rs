//! The `tcp` connector for the mio loop: one held TCP connection per node, connected on a
//! worker thread.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use muster_core::connector::{BoxFuture, ConnectOutcome, Connector, DisconnectOutcome};
use muster_core::{Node, NodeName};
use muster_net::held::Held;

/// How long one connect attempt may block its worker.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Holds one TCP connection to each node, on the node's address hint or on its host at a
/// fixed port, and counts the node connected while that connection is up.
///
/// Plain plumbing for services that listen on a known port: the peer only has to accept.
/// Connects block a worker thread of the loop (at most 10 s each); when the cluster lists
/// the connected nodes (every poll), the connector reads and discards what each peer sent
/// and drops the connections the peers closed, so the cluster reconnects them with backoff.
#[derive(Clone, Debug)]
pub struct TcpConnector {
    port: u16,
    held: Held,
}

impl TcpConnector {
    /// Connects to each node's host on `port` (or to its address hint, when it has one).
    pub fn new(port: u16) -> Self {
        TcpConnector {
            port,
            held: Held::default(),
        }
    }

    /// The port used for nodes without an address hint.
    pub fn port(&self) -> u16 {
        self.port
    }
}

fn open(node: &Node, port: u16) -> Result<TcpStream, String> {
    let addrs: Vec<SocketAddr> = match node.addr {
        Some(a) => vec![a],
        None => {
            let host = node.name.host();
            (host, port)
                .to_socket_addrs()
                .map_err(|e| format!("{host}: {e}"))?
                .collect()
        }
    };
    let mut last = format!("{}: no address", node.name.host());
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(s) => return Ok(s),
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    Err(last)
}

impl Connector for TcpConnector {
    fn connect(&self, node: Node) -> BoxFuture<ConnectOutcome> {
        let this = self.clone();
        // The loop runs this on a worker thread: blocking here is what it is for.
        Box::pin(async move {
            if this.held.contains(&node.name) {
                return ConnectOutcome::Connected;
            }
            match open(&node, this.port) {
                Ok(s) => match this.held.insert(node.name, s) {
                    Ok(()) => ConnectOutcome::Connected,
                    Err(e) => ConnectOutcome::Failed(e.to_string()),
                },
                Err(e) => ConnectOutcome::Failed(e),
            }
        })
    }

    fn disconnect(&self, node: NodeName) -> BoxFuture<DisconnectOutcome> {
        let outcome = self.held.remove(&node);
        Box::pin(async move { outcome })
    }

    fn list_nodes(&self) -> BoxFuture<Result<Vec<NodeName>, String>> {
        let nodes = self.held.list();
        Box::pin(async move { Ok(nodes) })
    }
}
