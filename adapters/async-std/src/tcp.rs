//! The `tcp` connector on async-io: one held TCP connection per node.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};

use async_io::Async;
use muster_core::connector::{BoxFuture, ConnectOutcome, Connector, DisconnectOutcome};
use muster_core::{Node, NodeName};

/// Holds one TCP connection to each node, on the node's address hint or on its host at a
/// fixed port, and counts the node connected while that connection is up.
///
/// Plain plumbing for services that listen on a known port: the peer only has to accept.
/// The connector runs no task of its own: when the cluster lists the connected nodes (every
/// poll), it reads and discards what each peer sent and drops the connections the peers
/// closed, so the cluster reconnects them with backoff.
#[derive(Clone, Debug)]
pub struct TcpConnector {
    port: u16,
    held: Arc<Mutex<BTreeMap<NodeName, Async<TcpStream>>>>,
}

impl TcpConnector {
    /// Connects to each node's host on `port` (or to its address hint, when it has one).
    pub fn new(port: u16) -> Self {
        TcpConnector {
            port,
            held: Arc::default(),
        }
    }

    /// The port used for nodes without an address hint.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn held(&self) -> std::sync::MutexGuard<'_, BTreeMap<NodeName, Async<TcpStream>>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }
}

async fn open(node: &Node, port: u16) -> Result<Async<TcpStream>, String> {
    let addrs: Vec<SocketAddr> = match node.addr {
        Some(a) => vec![a],
        None => {
            let host = node.name.host();
            async_net::resolve((host, port))
                .await
                .map_err(|e| format!("{host}: {e}"))?
        }
    };
    let mut last = format!("{}: no address", node.name.host());
    for addr in addrs {
        match Async::<TcpStream>::connect(addr).await {
            Ok(s) => {
                let _ = s.get_ref().set_nodelay(true);
                return Ok(s);
            }
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    Err(last)
}

/// Whether the connection is still up, reading (and discarding) what the peer sent.
fn alive(stream: &Async<TcpStream>) -> bool {
    let mut buf = [0u8; 512];
    let mut s = stream.get_ref();
    loop {
        match s.read(&mut buf) {
            Ok(0) => return false,
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
}

impl Connector for TcpConnector {
    fn connect(&self, node: Node) -> BoxFuture<ConnectOutcome> {
        let this = self.clone();
        Box::pin(async move {
            if this.held().contains_key(&node.name) {
                return ConnectOutcome::Connected;
            }
            match open(&node, this.port).await {
                Ok(s) => {
                    this.held().insert(node.name, s);
                    ConnectOutcome::Connected
                }
                Err(e) => ConnectOutcome::Failed(e),
            }
        })
    }

    fn disconnect(&self, node: NodeName) -> BoxFuture<DisconnectOutcome> {
        // Dropping the stream closes the connection.
        let outcome = match self.held().remove(&node) {
            Some(_) => DisconnectOutcome::Disconnected,
            None => DisconnectOutcome::NotConnected,
        };
        Box::pin(async move { outcome })
    }

    fn list_nodes(&self) -> BoxFuture<Result<Vec<NodeName>, String>> {
        let mut held = self.held();
        held.retain(|_, s| alive(s));
        let nodes = held.keys().cloned().collect();
        Box::pin(async move { Ok(nodes) })
    }
}
