//! The `tcp` connector: one held TCP connection per node.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use muster_core::{Failure, FailureKind, Node, NodeName};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::task::AbortHandle;

use muster_core::connector::{BoxFuture, ConnectOutcome, Connector, DisconnectOutcome, Notices};

struct Held {
    id: u64,
    watcher: AbortHandle,
}

struct Inner {
    port: u16,
    held: Mutex<BTreeMap<NodeName, Held>>,
    next_id: Mutex<u64>,
    notices: OnceLock<Notices>,
}

impl Inner {
    fn held(&self) -> std::sync::MutexGuard<'_, BTreeMap<NodeName, Held>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Holds one TCP connection to each node, on the node's address hint or on its host at a
/// fixed port, and counts the node connected while that connection is up.
///
/// Plain plumbing for services that listen on a known port: the peer only has to accept. A
/// connection the peer closes (or that fails) is reported at once, so the cluster reconnects
/// it with backoff. Bytes the peer sends are read and discarded.
#[derive(Clone)]
pub struct TcpConnector {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TcpConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpConnector")
            .field("port", &self.inner.port)
            .field("held", &self.inner.held().len())
            .finish()
    }
}

impl TcpConnector {
    /// Connects to each node's host on `port` (or to its address hint, when it has one).
    pub fn new(port: u16) -> Self {
        TcpConnector {
            inner: Arc::new(Inner {
                port,
                held: Mutex::new(BTreeMap::new()),
                next_id: Mutex::new(0),
                notices: OnceLock::new(),
            }),
        }
    }

    /// The port used for nodes without an address hint.
    pub fn port(&self) -> u16 {
        self.inner.port
    }
}

async fn open(node: &Node, port: u16) -> Result<TcpStream, Failure> {
    let addrs: Vec<SocketAddr> = match node.addr {
        Some(a) => vec![a],
        None => {
            let host = node.name.host();
            tokio::net::lookup_host((host, port))
                .await
                .map_err(|e| Failure::io(host, &e))?
                .collect()
        }
    };
    let mut last = muster_net::held::no_address(node.name.host());
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => last = Failure::io(addr, &e),
        }
    }
    Err(last)
}

/// Reads until the peer closes; the connection is up for as long as this runs.
async fn watch(mut stream: TcpStream) -> Failure {
    let mut buf = [0u8; 512];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) => return Failure::new(FailureKind::Closed, "connection closed by peer"),
            Ok(_) => continue,
            Err(e) => return e.into(),
        }
    }
}

impl Connector for TcpConnector {
    fn connect(&self, node: Node) -> BoxFuture<ConnectOutcome> {
        let inner = self.inner.clone();
        Box::pin(async move {
            if inner.held().contains_key(&node.name) {
                return ConnectOutcome::Connected;
            }
            let stream = match open(&node, inner.port).await {
                Ok(s) => s,
                Err(e) => return ConnectOutcome::Failed(e),
            };
            let id = {
                let mut n = inner.next_id.lock().unwrap_or_else(|p| p.into_inner());
                *n += 1;
                *n
            };
            let name = node.name.clone();
            let weak = Arc::downgrade(&inner);
            let watcher = tokio::spawn(async move {
                let reason = watch(stream).await;
                let Some(inner) = weak.upgrade() else { return };
                let mine = {
                    let mut held = inner.held();
                    if held.get(&name).is_some_and(|h| h.id == id) {
                        held.remove(&name);
                        true
                    } else {
                        false
                    }
                };
                if mine && let Some(n) = inner.notices.get() {
                    n.node_down(name, reason);
                }
            });
            inner.held().insert(
                node.name,
                Held {
                    id,
                    watcher: watcher.abort_handle(),
                },
            );
            ConnectOutcome::Connected
        })
    }

    fn disconnect(&self, node: NodeName) -> BoxFuture<DisconnectOutcome> {
        let held = self.inner.held().remove(&node);
        Box::pin(async move {
            match held {
                // Aborting the watcher drops the stream, which closes the connection.
                Some(h) => {
                    h.watcher.abort();
                    DisconnectOutcome::Disconnected
                }
                None => DisconnectOutcome::NotConnected,
            }
        })
    }

    fn list_nodes(&self) -> BoxFuture<Result<Vec<NodeName>, Failure>> {
        let nodes = self.inner.held().keys().cloned().collect();
        Box::pin(async move { Ok(nodes) })
    }

    fn attach(&self, notices: Notices) {
        let _ = self.inner.notices.set(notices);
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        for h in self.held().values() {
            h.watcher.abort();
        }
    }
}
