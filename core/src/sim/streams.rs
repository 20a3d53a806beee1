//! The simulated TCP network: listeners, connections between two ends, and which end of
//! which connection a cluster's token is. The simulator decides when bytes arrive; this
//! module only keeps the books.

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;

use crate::io::Token;
use crate::time::Instant;

/// One end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// A cluster's stream: node `node` in its `life`-th life, as `token`.
    Node {
        node: usize,
        life: u32,
        token: Token,
    },
    /// A connection of the simulated EPMD on host `ip`.
    Epmd { ip: IpAddr, id: u64 },
    /// A connection of stream service `service` (see `Sim::serve_stream`), in its
    /// `life`-th life.
    Service { service: usize, life: u32 },
    /// Accepted by a listener, not yet taken with an `Accept`.
    Backlog,
}

#[derive(Debug)]
pub(crate) struct Conn {
    /// [client, server].
    pub(crate) ends: [End; 2],
    /// Each end's host and address.
    pub(crate) hosts: [IpAddr; 2],
    pub(crate) addrs: [SocketAddr; 2],
    /// The latest time anything is due at each end: what is sent later arrives later.
    pub(crate) last: [Instant; 2],
    /// Each end closed (or was told the connection is gone).
    pub(crate) closed: [bool; 2],
    /// What reached the server end before an `Accept` took it.
    pub(crate) held: Vec<Bytes>,
}

#[derive(Debug)]
pub(crate) struct Listener {
    pub(crate) node: usize,
    pub(crate) token: Token,
    pub(crate) accepts: VecDeque<Token>,
    pub(crate) backlog: VecDeque<u64>,
}

/// Every listener and connection.
#[derive(Debug, Default)]
pub(crate) struct Streams {
    pub(crate) listeners: BTreeMap<SocketAddr, Listener>,
    pub(crate) conns: BTreeMap<u64, Conn>,
    /// A cluster's stream token → (connection, side).
    ends: BTreeMap<(usize, Token), (u64, usize)>,
    next_id: u64,
    next_port: BTreeMap<IpAddr, u16>,
}

impl Streams {
    /// A free port on `ip`, as an OS picks one.
    pub(crate) fn ephemeral(&mut self, ip: IpAddr) -> u16 {
        loop {
            let p = self.next_port.entry(ip).or_insert(32_768);
            let port = *p;
            *p = if *p == u16::MAX { 32_768 } else { *p + 1 };
            if !self.listeners.contains_key(&SocketAddr::new(ip, port)) {
                return port;
            }
        }
    }

    /// Opens a listener; false when the address is taken.
    pub(crate) fn listen(&mut self, addr: SocketAddr, node: usize, token: Token) -> bool {
        if self.listeners.contains_key(&addr) {
            return false;
        }
        self.listeners.insert(
            addr,
            Listener {
                node,
                token,
                accepts: VecDeque::new(),
                backlog: VecDeque::new(),
            },
        );
        true
    }

    /// The address of node `node`'s listener `token`.
    pub(crate) fn listener_of(&self, node: usize, token: Token) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|(_, l)| l.node == node && l.token == token)
            .map(|(a, _)| *a)
    }

    /// Adds a connection; returns its id.
    pub(crate) fn connect(
        &mut self,
        client: End,
        server: End,
        hosts: [IpAddr; 2],
        addrs: [SocketAddr; 2],
        now: Instant,
    ) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        self.conns.insert(
            id,
            Conn {
                ends: [client, server],
                hosts,
                addrs,
                last: [now, now],
                closed: [false, false],
                held: Vec::new(),
            },
        );
        for (side, end) in [client, server].into_iter().enumerate() {
            self.bind(id, side, end);
        }
        id
    }

    /// Names `end` as side `side` of connection `id`.
    pub(crate) fn bind(&mut self, id: u64, side: usize, end: End) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.ends[side] = end;
        }
        if let End::Node { node, token, .. } = end {
            self.ends.insert((node, token), (id, side));
        }
    }

    /// The connection and side that node `node`'s token is.
    pub(crate) fn end_of(&self, node: usize, token: Token) -> Option<(u64, usize)> {
        self.ends.get(&(node, token)).copied()
    }

    /// Marks side `side` of `id` closed; drops the connection when both are.
    pub(crate) fn close_side(&mut self, id: u64, side: usize) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        c.closed[side] = true;
        if let End::Node { node, token, .. } = c.ends[side] {
            self.ends.remove(&(node, token));
        }
        if c.closed == [true, true] {
            self.conns.remove(&id);
        }
    }

    /// Every connection with an end on `ip`, or on node `node`.
    pub(crate) fn touching(&self, ip: IpAddr, node: Option<usize>) -> Vec<u64> {
        self.conns
            .iter()
            .filter(|(_, c)| {
                c.hosts.contains(&ip)
                    || c.ends
                        .iter()
                        .any(|e| matches!(e, End::Node { node: n, .. } if Some(*n) == node))
            })
            .map(|(id, _)| *id)
            .collect()
    }

    /// Forgets node `node`'s listeners and stream tokens (it went down).
    pub(crate) fn drop_node(&mut self, node: usize) {
        self.listeners.retain(|_, l| l.node != node);
        self.ends.retain(|(n, _), _| *n != node);
    }
}
