//! The TCP connections a `tcp` connector holds, one per node, checked when it lists them.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::net::TcpStream;
use std::sync::{Arc, Mutex, MutexGuard};

use muster_core::NodeName;
use muster_core::connector::DisconnectOutcome;

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
