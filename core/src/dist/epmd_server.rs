//! An EPMD as a state machine: real `erl` nodes register with it and ask it where other nodes
//! listen, exactly as they do with Erlang's own `epmd`, and it refuses what Erlang's refuses.
//!
//! The adapter accepts TCP connections on the EPMD port, gives each an id and tells
//! [`handle_open`](EpmdServer::handle_open) who connected, feeds its bytes to
//! [`handle_data`](EpmdServer::handle_data), reports its end with
//! [`handle_closed`](EpmdServer::handle_closed), calls
//! [`handle_timeout`](EpmdServer::handle_timeout) at [`poll_timeout`](EpmdServer::poll_timeout),
//! and carries out [`poll_output`](EpmdServer::poll_output). A node stays registered while the
//! connection it registered on stays open.
//!
//! As Erlang's `epmd`: `ALIVE2`, `KILL` and `STOP` are taken only from loopback; `DUMP` is
//! answered only on loopback; `KILL` is answered `NO` while nodes are registered; names are
//! checked as Erlang checks node names before they are registered. Beyond it, the server is
//! bounded: at most [`max_pending`](EpmdServer::max_pending) connections that have not
//! registered a node — a new one beyond that closes the oldest, so idle connections cannot
//! shut out real clients, whose request comes at once — each given
//! [`request_timeout`](EpmdServer::request_timeout) to send it, and at most
//! [`max_nodes`](EpmdServer::max_nodes) registered nodes.

use core::time::Duration;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;

use crate::proto::epmd::{self, NodeEntry, Request};
use crate::rng::Rng;
use crate::time::Instant;

/// The most a connection may send before its request is whole.
const MAX_REQUEST: usize = 64 * 1024;
/// The longest node name (the part before `@`) Erlang accepts.
pub const MAX_NAME: usize = 255;

/// What the adapter must do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EpmdOutput {
    /// Write `data` to connection `conn`.
    Write {
        /// The connection.
        conn: u64,
        /// The bytes.
        data: Vec<u8>,
    },
    /// Close connection `conn` (after writing what was asked before).
    Close {
        /// The connection.
        conn: u64,
    },
    /// A `KILL` from loopback with no node registered: stop serving, as Erlang's `epmd`
    /// exits.
    Stop,
}

/// What an [`EpmdServer`] counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EpmdStats {
    /// Requests answered.
    pub requests: u64,
    /// Connections closed, the oldest first, to make room for new ones when `max_pending`
    /// were already waiting for their request.
    pub evicted: u64,
    /// Requests refused because only loopback may make them (`ALIVE2`, `KILL`, `STOP`,
    /// `DUMP`).
    pub refused_remote: u64,
    /// Registrations refused: an invalid name, a name taken, or `max_nodes` reached.
    pub refused_names: u64,
    /// Connections closed because no whole request came in time.
    pub timed_out: u64,
    /// Connections closed for sending what is not EPMD's protocol.
    pub malformed: u64,
}

#[derive(Debug)]
struct Conn {
    buf: Vec<u8>,
    registered: Option<String>,
    local: bool,
    /// When it was accepted.
    opened: Instant,
    /// A whole request must have come by then (none once the connection holds a node).
    deadline: Option<Instant>,
}

/// The embedded EPMD; see the module documentation.
#[derive(Debug)]
pub struct EpmdServer {
    port: u16,
    nodes: BTreeMap<String, (NodeEntry, u64)>,
    conns: BTreeMap<u64, Conn>,
    out: VecDeque<EpmdOutput>,
    next_creation: u32,
    stats: EpmdStats,
    max_pending: usize,
    max_nodes: usize,
    request_timeout: Duration,
}

/// Whether `name` is a node name Erlang accepts: 1 to 255 of `[A-Za-z0-9_-]`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl EpmdServer {
    /// An EPMD that reports it listens on `port`: at most 256 connections waiting for their
    /// request, each for at most 5 s, and at most 1,024 registered nodes.
    pub fn new(port: u16, rng: &mut Rng) -> Self {
        EpmdServer {
            port,
            nodes: BTreeMap::new(),
            conns: BTreeMap::new(),
            out: VecDeque::new(),
            // Creations start anywhere, so a node that re-registers gets a new one.
            next_creation: (rng.next_u64() as u32) | 1,
            stats: EpmdStats::default(),
            max_pending: 256,
            max_nodes: 1024,
            request_timeout: Duration::from_secs(5),
        }
    }

    /// Sets the most connections that may wait for their request at once.
    pub fn max_pending(mut self, n: usize) -> Self {
        self.max_pending = n.max(1);
        self
    }

    /// Sets the most nodes that may be registered.
    pub fn max_nodes(mut self, n: usize) -> Self {
        self.max_nodes = n;
        self
    }

    /// Sets how long a connection may take to send a whole request.
    pub fn request_timeout(mut self, d: Duration) -> Self {
        self.request_timeout = d;
        self
    }

    fn pending(&self) -> usize {
        self.conns
            .values()
            .filter(|c| c.registered.is_none())
            .count()
    }

    /// A connection was accepted from `peer`. When `max_pending` connections already wait
    /// for their request, the one that waited longest is closed to make room.
    pub fn handle_open(&mut self, now: Instant, conn: u64, peer: SocketAddr) {
        if self.pending() >= self.max_pending {
            self.shed();
        }
        self.conns.insert(
            conn,
            Conn {
                buf: Vec::new(),
                registered: None,
                local: peer.ip().to_canonical().is_loopback(),
                opened: now,
                deadline: Some(now + self.request_timeout),
            },
        );
    }

    /// Closes the connection that has waited longest for its request (never one that holds
    /// a registration), counted as evicted; whether there was one. The adapter calls it when
    /// it cannot accept for want of descriptors, so that a real client, whose request comes
    /// at once, is not shut out by idle ones until their deadlines.
    pub fn shed(&mut self) -> bool {
        let oldest = self
            .conns
            .iter()
            .filter(|(_, c)| c.registered.is_none())
            .min_by_key(|(id, c)| (c.opened, **id))
            .map(|(id, _)| *id);
        let Some(old) = oldest else {
            return false;
        };
        self.stats.evicted += 1;
        self.close(old);
        true
    }

    /// Bytes arrived on `conn`.
    pub fn handle_data(&mut self, conn: u64, data: &[u8]) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.buf.extend_from_slice(data);
        if c.buf.len() > MAX_REQUEST {
            self.stats.malformed += 1;
            return self.close(conn);
        }
        loop {
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            match epmd::parse_request(&c.buf) {
                Ok(None) => return,
                Ok(Some((req, used))) => {
                    c.buf.drain(..used);
                    if c.buf.is_empty() {
                        c.buf = Vec::new();
                    }
                    self.serve(conn, req);
                }
                Err(_) => {
                    self.stats.malformed += 1;
                    return self.close(conn);
                }
            }
        }
    }

    /// `conn` closed (or failed): a node registered on it is unregistered.
    pub fn handle_closed(&mut self, conn: u64) {
        if let Some(c) = self.conns.remove(&conn)
            && let Some(name) = c.registered
            && self
                .nodes
                .get(&name)
                .is_some_and(|(_, owner)| *owner == conn)
        {
            self.nodes.remove(&name);
        }
    }

    /// Closes the connections whose request did not come in time.
    pub fn handle_timeout(&mut self, now: Instant) {
        let late: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| c.deadline.is_some_and(|d| d <= now))
            .map(|(id, _)| *id)
            .collect();
        for conn in late {
            self.stats.timed_out += 1;
            self.close(conn);
        }
    }

    /// When [`handle_timeout`](EpmdServer::handle_timeout) is next needed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.conns.values().filter_map(|c| c.deadline).min()
    }

    fn close(&mut self, conn: u64) {
        self.out.push_back(EpmdOutput::Close { conn });
        self.handle_closed(conn);
    }

    fn reply_and_close(&mut self, conn: u64, data: Vec<u8>) {
        self.out.push_back(EpmdOutput::Write { conn, data });
        self.close(conn);
    }

    fn serve(&mut self, conn: u64, req: Request) {
        let local = self.conns.get(&conn).is_some_and(|c| c.local);
        if !local
            && matches!(
                req,
                Request::Alive2(_) | Request::Kill | Request::Stop(_) | Request::Dump
            )
        {
            // Erlang's epmd takes these only from this host, and says nothing to others.
            self.stats.refused_remote += 1;
            return self.close(conn);
        }
        self.stats.requests += 1;
        match req {
            Request::Alive2(entry) => {
                let refused = !valid_name(&entry.name)
                    || self.nodes.contains_key(&entry.name)
                    || self.nodes.len() >= self.max_nodes
                    || self
                        .conns
                        .get(&conn)
                        .is_some_and(|c| c.registered.is_some());
                if refused {
                    self.stats.refused_names += 1;
                    return self.reply_and_close(conn, epmd::alive2_reply(1, 0));
                }
                let creation = self.next_creation;
                self.next_creation = self.next_creation.wrapping_add(1).max(1);
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.registered = Some(entry.name.clone());
                    c.deadline = None;
                }
                self.nodes.insert(entry.name.clone(), (entry, conn));
                self.out.push_back(EpmdOutput::Write {
                    conn,
                    data: epmd::alive2_reply(0, creation),
                });
            }
            Request::PortPlease2(name) => {
                let reply = epmd::port2_reply(self.nodes.get(&name).map(|(e, _)| e));
                self.reply_and_close(conn, reply);
            }
            Request::Names => {
                let reply = epmd::names_reply(
                    self.port,
                    self.nodes.values().map(|(e, _)| (e.name.as_str(), e.port)),
                );
                self.reply_and_close(conn, reply);
            }
            Request::Dump => {
                let mut out = u32::from(self.port).to_be_bytes().to_vec();
                for (e, fd) in self.nodes.values() {
                    out.extend_from_slice(
                        format!(
                            "active name     <{}> at port {}, fd = {fd}\n",
                            e.name, e.port
                        )
                        .as_bytes(),
                    );
                }
                self.reply_and_close(conn, out);
            }
            // As Erlang's: no stopping while nodes rely on it.
            Request::Kill if !self.nodes.is_empty() => self.reply_and_close(conn, b"NO".to_vec()),
            Request::Kill => {
                self.reply_and_close(conn, b"OK".to_vec());
                self.out.push_back(EpmdOutput::Stop);
            }
            Request::Stop(name) => match self.nodes.remove(&name) {
                Some((_, owner)) => {
                    if let Some(c) = self.conns.get_mut(&owner) {
                        c.registered = None;
                    }
                    self.close(owner);
                    self.reply_and_close(conn, b"STOPPED".to_vec());
                }
                None => self.reply_and_close(conn, b"NOEXIST".to_vec()),
            },
        }
    }

    /// The next thing to do.
    pub fn poll_output(&mut self) -> Option<EpmdOutput> {
        self.out.pop_front()
    }

    /// The registered nodes: name and distribution port.
    pub fn names(&self) -> impl Iterator<Item = (&str, u16)> {
        self.nodes.values().map(|(e, _)| (e.name.as_str(), e.port))
    }

    /// Requests answered so far.
    pub fn requests(&self) -> u64 {
        self.stats.requests
    }

    /// What the server counted.
    pub fn stats(&self) -> EpmdStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(s: &mut EpmdServer) -> Vec<EpmdOutput> {
        std::iter::from_fn(|| s.poll_output()).collect()
    }

    const T0: Instant = Instant::ZERO;

    fn local() -> SocketAddr {
        "127.0.0.1:50000".parse().unwrap()
    }

    fn remote() -> SocketAddr {
        "10.0.0.9:50000".parse().unwrap()
    }

    fn server() -> EpmdServer {
        EpmdServer::new(4369, &mut Rng::from_seed([1; 32]))
    }

    #[test]
    fn registers_answers_and_forgets_when_the_connection_closes() {
        let mut s = server();
        s.handle_open(T0, 1, local());
        let req = epmd::alive2_request(&NodeEntry::new("a", 40000, false));
        // Byte by byte, as a slow client would send it.
        for b in &req {
            s.handle_data(1, &[*b]);
        }
        let out = drain(&mut s);
        let [EpmdOutput::Write { conn: 1, data }] = &out[..] else {
            panic!("{out:?}")
        };
        assert!(epmd::parse_alive2_reply(data).unwrap().is_some());
        // A registered node's connection has no deadline.
        assert_eq!(s.poll_timeout(), None);
        // A second registration of the name is refused.
        s.handle_open(T0, 2, local());
        s.handle_data(2, &epmd::alive2_request(&NodeEntry::new("a", 40001, false)));
        let out = drain(&mut s);
        assert!(
            matches!(&out[..], [EpmdOutput::Write { conn: 2, data }, EpmdOutput::Close { conn: 2 }] if data == &[118, 1, 0, 0, 0, 0])
        );
        // Remote hosts may ask where a node listens.
        s.handle_open(T0, 3, remote());
        s.handle_data(3, &epmd::port_please_request("a"));
        let out = drain(&mut s);
        let [
            EpmdOutput::Write { data, .. },
            EpmdOutput::Close { conn: 3 },
        ] = &out[..]
        else {
            panic!()
        };
        assert_eq!(epmd::parse_port2(data).unwrap().unwrap().port, 40000);
        s.handle_open(T0, 4, remote());
        s.handle_data(4, &epmd::names_request());
        let [EpmdOutput::Write { data, .. }, _] = &drain(&mut s)[..] else {
            panic!()
        };
        assert_eq!(
            epmd::parse_names(data).unwrap().nodes,
            vec![("a".into(), 40000)]
        );
        s.handle_closed(1);
        assert_eq!(s.names().count(), 0);
        s.handle_open(T0, 5, local());
        s.handle_data(5, &epmd::port_please_request("a"));
        let [EpmdOutput::Write { data, .. }, _] = &drain(&mut s)[..] else {
            panic!()
        };
        assert_eq!(data, &[119, 1]);
    }

    #[test]
    fn only_loopback_may_register_kill_stop_or_dump() {
        let mut s = server();
        for (conn, req) in [
            (
                1,
                epmd::alive2_request(&NodeEntry::new("squat", 40000, false)),
            ),
            (2, vec![0, 1, b'k']),
            (3, [vec![0, 2, b's'], b"a".to_vec()].concat()),
            (4, vec![0, 1, b'd']),
        ] {
            s.handle_open(T0, conn, remote());
            s.handle_data(conn, &req);
            assert_eq!(drain(&mut s), vec![EpmdOutput::Close { conn }], "#{conn}");
        }
        assert_eq!(s.names().count(), 0, "nothing registered from afar");
        assert_eq!(s.stats().refused_remote, 4);
        // IPv4-mapped loopback is loopback.
        s.handle_open(T0, 5, "[::ffff:127.0.0.1]:5".parse().unwrap());
        s.handle_data(
            5,
            &epmd::alive2_request(&NodeEntry::new("ok", 40000, false)),
        );
        assert_eq!(s.names().count(), 1);
    }

    #[test]
    fn kill_is_refused_while_nodes_are_registered() {
        let mut s = server();
        s.handle_open(T0, 1, local());
        s.handle_data(1, &epmd::alive2_request(&NodeEntry::new("a", 40000, false)));
        drain(&mut s);
        s.handle_open(T0, 2, local());
        s.handle_data(2, &[0, 1, b'k']);
        let out = drain(&mut s);
        assert!(
            matches!(&out[..], [EpmdOutput::Write { conn: 2, data }, EpmdOutput::Close { conn: 2 }] if data == b"NO"),
            "{out:?}"
        );
        s.handle_closed(1);
        s.handle_open(T0, 3, local());
        s.handle_data(3, &[0, 1, b'k']);
        let out = drain(&mut s);
        assert!(
            matches!(&out[..], [EpmdOutput::Write { data, .. }, EpmdOutput::Close { .. }, EpmdOutput::Stop] if data == b"OK"),
            "{out:?}"
        );
    }

    #[test]
    fn names_are_checked_as_erlang_checks_them() {
        for bad in [
            "",
            "a\nname b at port 1",
            "\u{1b}[2J",
            "a.b",
            "a b",
            &"x".repeat(256),
        ] {
            let mut s = server();
            s.handle_open(T0, 1, local());
            s.handle_data(1, &epmd::alive2_request(&NodeEntry::new(bad, 40000, false)));
            let out = drain(&mut s);
            assert!(
                matches!(&out[..], [EpmdOutput::Write { data, .. }, EpmdOutput::Close { .. }] if data[1] == 1),
                "{bad:?}: {out:?}"
            );
            assert_eq!(s.names().count(), 0, "{bad:?}");
        }
        assert!(valid_name("demo-1_x"));
    }

    #[test]
    fn waiting_connections_are_bounded_in_number_and_time() {
        let mut s = server().max_pending(2);
        let t1 = T0 + Duration::from_millis(1);
        s.handle_open(T0, 1, remote());
        s.handle_open(t1, 2, remote());
        // A third evicts the one that waited longest; the newcomer is served.
        s.handle_open(t1, 3, local());
        assert_eq!(drain(&mut s), vec![EpmdOutput::Close { conn: 1 }]);
        assert_eq!(s.stats().evicted, 1);
        s.handle_data(3, &epmd::names_request());
        assert!(matches!(
            &drain(&mut s)[..],
            [
                EpmdOutput::Write { conn: 3, .. },
                EpmdOutput::Close { conn: 3 }
            ]
        ));
        // The idle one is closed at its deadline.
        let at = s.poll_timeout().unwrap();
        s.handle_timeout(at);
        assert_eq!(drain(&mut s), vec![EpmdOutput::Close { conn: 2 }]);
        assert_eq!(s.stats().timed_out, 1);
        assert_eq!(s.poll_timeout(), None);
    }

    #[test]
    fn shedding_closes_the_oldest_waiting_connection_never_a_registration() {
        let mut s = server();
        s.handle_open(T0, 1, local());
        s.handle_data(1, &epmd::alive2_request(&NodeEntry::new("a", 9000, true)));
        drain(&mut s);
        s.handle_open(T0 + Duration::from_millis(1), 2, remote());
        s.handle_open(T0 + Duration::from_millis(2), 3, remote());
        assert!(s.shed());
        assert_eq!(drain(&mut s), vec![EpmdOutput::Close { conn: 2 }]);
        assert!(s.shed());
        assert_eq!(drain(&mut s), vec![EpmdOutput::Close { conn: 3 }]);
        assert!(!s.shed(), "the registration stays");
        assert_eq!(s.stats().evicted, 2);
    }

    #[test]
    fn garbage_closes_the_connection() {
        let mut s = server();
        s.handle_open(T0, 9, local());
        s.handle_data(9, &[0, 1, 250]);
        assert_eq!(drain(&mut s), vec![EpmdOutput::Close { conn: 9 }]);
        s.handle_open(T0, 8, local());
        s.handle_data(8, &vec![0xff; 70_000]);
        assert_eq!(drain(&mut s), vec![EpmdOutput::Close { conn: 8 }]);
    }
}
