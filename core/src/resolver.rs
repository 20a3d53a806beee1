//! A stub resolver as a state machine, for strategies that discover through DNS.
//!
//! It asks the configured name servers over UDP (EDNS0 when `resolv.conf` says so), falls back
//! to TCP when a reply is truncated, retries across servers and attempts with each server's
//! timeout, follows CNAME chains (at most eight hops), applies the search list and `ndots` as
//! glibc does, and tells NXDOMAIN, an empty answer, a server failure and a time-out apart. It
//! accepts a reply only from the server it asked, with the query's ID and question; anything
//! else is ignored and counted.
//!
//! The owning strategy forwards its datagrams, answers and timeouts to the resolver; the
//! adapter only moves bytes.

use core::time::Duration;
use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::Bytes;

use crate::io::{Endpoint, Exchange, UdpOptions};
use crate::proto::dns::{self, Reply};

pub use crate::proto::dns::{Found, Kind};
pub use crate::proto::resolv_conf::ResolvConf;
use crate::reason::{Failure, FailureKind};
use crate::strategy::{self, Context, ExchangeId, SocketEvent, SocketId};
use crate::time::{Instant, earliest};

/// Identifies one lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LookupId(pub u64);

/// How a lookup ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Records of the kind asked.
    Records(Vec<Found>),
    /// The name exists (for some candidate) but has no such records.
    Empty,
    /// No candidate name exists.
    NxDomain,
    /// No server gave an answer: why (the last server's failure).
    Failed(Failure),
}

/// The server a lookup asks now (glibc's fallback when none is configured).
fn server_at(servers: &[SocketAddr], l: &Lookup) -> SocketAddr {
    let n = servers.len().max(1);
    servers
        .get((l.start + l.server) % n)
        .copied()
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 53)))
}

/// The most CNAME hops a lookup follows across queries.
const MAX_HOPS: u8 = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sock {
    Closed,
    Opening(SocketId),
    Open(SocketId),
}

#[derive(Debug)]
enum Transport {
    Udp,
    Tcp { exchange: ExchangeId, buf: Vec<u8> },
}

#[derive(Debug)]
struct Lookup {
    id: LookupId,
    kind: Kind,
    candidates: Vec<String>,
    cand: usize,
    /// The name asked right now (a candidate, or where a CNAME led).
    asking: String,
    hops: u8,
    start: usize,
    server: usize,
    /// The server the query in flight went to: its reply is accepted from there even when
    /// the configuration changed meanwhile.
    asked: SocketAddr,
    attempt: u32,
    query_id: u16,
    deadline: Instant,
    transport: Transport,
    /// Waiting for the socket to open, with the packet to send.
    queued: Option<Vec<u8>>,
    saw_nodata: bool,
    last_error: Option<Failure>,
    /// A reason no server can help (the name cannot be encoded): fail at the deadline.
    fatal: Option<Failure>,
}

/// The resolver; see the module documentation.
#[derive(Debug)]
pub struct Resolver {
    conf: ResolvConf,
    servers: Vec<SocketAddr>,
    /// One connected socket per server (so a server's ICMP port-unreachable is heard, and
    /// only its datagrams arrive), in the order first used.
    socks: Vec<(SocketAddr, Sock)>,
    lookups: Vec<Lookup>,
    done: VecDeque<(LookupId, Outcome)>,
    next: u64,
    rotate: usize,
    ignored: u64,
}

impl Resolver {
    /// A resolver for `conf`.
    pub fn new(conf: ResolvConf) -> Self {
        let servers = conf.servers();
        Resolver {
            conf,
            servers,
            socks: Vec::new(),
            lookups: Vec::new(),
            done: VecDeque::new(),
            next: 0,
            rotate: 0,
            ignored: 0,
        }
    }

    /// Uses `conf` from now on: lookups in flight keep waiting for the servers they asked,
    /// and move on to `conf`'s servers. The socket of a server no longer configured is
    /// closed as soon as no lookup waits on it (one still opening, once it is open).
    pub fn set_conf(&mut self, conf: ResolvConf, cx: &mut Context<'_>) {
        self.servers = conf.servers();
        self.conf = conf;
        self.prune(cx);
    }

    /// After a lookup moved on or ended: closes a dropped server's socket nobody waits on.
    fn tidy(&mut self, cx: &mut Context<'_>) {
        // Only a configuration change leaves a socket of a server not configured.
        if self.socks.iter().any(|(a, _)| !self.servers.contains(a)) {
            self.prune(cx);
        }
    }

    /// Closes the sockets of servers neither configured nor waited on.
    fn prune(&mut self, cx: &mut Context<'_>) {
        let (servers, lookups) = (&self.servers, &self.lookups);
        self.socks.retain(|(addr, sock)| {
            if servers.contains(addr) || lookups.iter().any(|l| l.asked == *addr) {
                return true;
            }
            match sock {
                Sock::Open(socket) => {
                    cx.close_udp(*socket);
                    false
                }
                Sock::Closed => false,
                // Closed when its opening is answered.
                Sock::Opening(_) => true,
            }
        });
    }

    /// The configuration in use.
    pub fn conf(&self) -> &ResolvConf {
        &self.conf
    }

    /// Replies ignored so far: wrong source, ID or question, or malformed.
    pub fn ignored(&self) -> u64 {
        self.ignored
    }

    /// Lookups not finished.
    pub fn in_flight(&self) -> usize {
        self.lookups.len()
    }

    /// Starts looking up `name` for records of `kind`. The outcome comes from
    /// [`poll_outcome`](Resolver::poll_outcome).
    pub fn lookup(
        &mut self,
        now: Instant,
        name: &str,
        kind: Kind,
        cx: &mut Context<'_>,
    ) -> LookupId {
        self.next += 1;
        let id = LookupId(self.next);
        let candidates = self.conf.candidates(name);
        let start = if self.conf.rotate {
            self.rotate = self.rotate.wrapping_add(1);
            self.rotate % self.servers.len().max(1)
        } else {
            0
        };
        let mut l = Lookup {
            id,
            kind,
            asking: candidates.first().cloned().unwrap_or_default(),
            candidates,
            cand: 0,
            hops: 0,
            start,
            server: 0,
            // Set by the first send, below.
            asked: SocketAddr::from(([0, 0, 0, 0], 0)),
            attempt: 0,
            query_id: 0,
            deadline: now,
            transport: Transport::Udp,
            queued: None,
            saw_nodata: false,
            last_error: None,
            fatal: None,
        };
        if l.asking.is_empty() {
            let why = Failure::new(FailureKind::Unsupported, "empty name");
            self.done.push_back((id, Outcome::Failed(why)));
            return id;
        }
        self.send(now, &mut l, cx);
        self.lookups.push(l);
        id
    }

    /// The next finished lookup.
    pub fn poll_outcome(&mut self) -> Option<(LookupId, Outcome)> {
        self.done.pop_front()
    }

    /// When [`handle_timeout`](Resolver::handle_timeout) is next needed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.lookups
            .iter()
            .fold(None, |at, l| earliest(at, Some(l.deadline)))
    }

    fn server_of(&self, l: &Lookup) -> SocketAddr {
        server_at(&self.servers, l)
    }

    fn socket_for(&mut self, addr: &SocketAddr, cx: &mut Context<'_>) -> Sock {
        if let Some((_, sock)) = self.socks.iter().find(|(a, _)| a == addr)
            && *sock != Sock::Closed
        {
            return *sock;
        }
        let any = match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        let mut opts = UdpOptions::new(SocketAddr::new(any, 0)).connected_to(*addr);
        opts.reuse = false;
        let sock = Sock::Opening(cx.open_udp(opts));
        match self.socks.iter_mut().find(|(a, _)| a == addr) {
            Some((_, s)) => *s = sock,
            None => self.socks.push((*addr, sock)),
        }
        sock
    }

    /// The server whose socket `socket` is.
    fn server_of_socket(&self, socket: SocketId) -> Option<(SocketAddr, Sock)> {
        self.socks
            .iter()
            .find(|(_, s)| matches!(s, Sock::Opening(x) | Sock::Open(x) if *x == socket))
            .copied()
    }

    /// Every lookup waiting on `server` (over UDP, queued or sent) fails over to its next
    /// server with `why`.
    fn fail_over(&mut self, now: Instant, server: SocketAddr, why: &Failure, cx: &mut Context<'_>) {
        let waiting: Vec<usize> = (0..self.lookups.len())
            .filter(|&i| {
                matches!(self.lookups[i].transport, Transport::Udp)
                    && self.lookups[i].asked == server
            })
            .collect();
        for i in waiting.into_iter().rev() {
            let mut l = self.lookups.swap_remove(i);
            l.queued = None;
            self.next_server(now, l, why.clone(), cx);
        }
    }

    /// Sends the query for the lookup's current name to its current server.
    fn send(&mut self, now: Instant, l: &mut Lookup, cx: &mut Context<'_>) {
        l.query_id = cx.rng().next_u64() as u16;
        l.deadline = now + self.conf.timeout;
        l.transport = Transport::Udp;
        let packet = match dns::query(l.query_id, &l.asking, l.kind, self.conf.edns0) {
            Ok(p) => p,
            Err(e) => {
                l.deadline = now;
                l.fatal = Some(Failure::new(FailureKind::Unsupported, e.to_string()));
                return;
            }
        };
        let to = self.server_of(l);
        l.asked = to;
        match self.socket_for(&to, cx) {
            Sock::Open(socket) => {
                cx.send_datagram(socket, Endpoint::Addr(to), Bytes::from(packet));
            }
            _ => l.queued = Some(packet),
        }
    }

    fn send_tcp(&mut self, now: Instant, l: &mut Lookup, cx: &mut Context<'_>) {
        let Ok(packet) = dns::query(l.query_id, &l.asking, l.kind, false) else {
            return;
        };
        let mut framed = (packet.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&packet);
        // The server that said the reply was truncated.
        let to = l.asked;
        l.deadline = now + self.conf.timeout;
        let x =
            Exchange::tcp(Endpoint::Addr(to), Bytes::from(framed), l.deadline).max_reply(66 * 1024);
        let exchange = cx.exchange(x);
        l.transport = Transport::Tcp {
            exchange,
            buf: Vec::new(),
        };
    }

    /// Stops a TCP exchange the lookup no longer needs.
    fn drop_tcp(l: &mut Lookup, cx: &mut Context<'_>) {
        if let Transport::Tcp { exchange, .. } = l.transport {
            cx.cancel_exchange(exchange);
        }
        l.transport = Transport::Udp;
    }

    /// The lookup's server did not answer usefully: the next server, the next attempt, or
    /// failure.
    fn next_server(&mut self, now: Instant, mut l: Lookup, why: Failure, cx: &mut Context<'_>) {
        Self::drop_tcp(&mut l, cx);
        l.last_error = Some(why);
        l.server += 1;
        if l.server >= self.servers.len().max(1) {
            l.server = 0;
            l.attempt += 1;
        }
        if l.attempt >= self.conf.attempts {
            let why = l
                .last_error
                .take()
                .unwrap_or_else(|| Failure::other("no server answered"));
            self.done.push_back((l.id, Outcome::Failed(why)));
            return;
        }
        l.hops = 0;
        l.asking = l.candidates[l.cand].clone();
        self.send(now, &mut l, cx);
        self.lookups.push(l);
    }

    /// This candidate does not have it: the next candidate, or the end.
    fn next_candidate(&mut self, now: Instant, mut l: Lookup, nodata: bool, cx: &mut Context<'_>) {
        Self::drop_tcp(&mut l, cx);
        l.saw_nodata |= nodata;
        l.cand += 1;
        if l.cand >= l.candidates.len() {
            let out = if l.saw_nodata {
                Outcome::Empty
            } else {
                Outcome::NxDomain
            };
            self.done.push_back((l.id, out));
            return;
        }
        l.asking = l.candidates[l.cand].clone();
        l.hops = 0;
        l.server = 0;
        l.attempt = 0;
        self.send(now, &mut l, cx);
        self.lookups.push(l);
    }

    fn handle_reply(
        &mut self,
        now: Instant,
        mut l: Lookup,
        reply: Reply,
        tcp: bool,
        cx: &mut Context<'_>,
    ) {
        let server = l.asked;
        match reply {
            Reply::Truncated if !tcp => {
                self.send_tcp(now, &mut l, cx);
                self.lookups.push(l);
            }
            Reply::Truncated => {
                let why = Failure::new(
                    FailureKind::Protocol,
                    format!("{server}: truncated even over TCP"),
                );
                self.next_server(now, l, why, cx)
            }
            Reply::Records(r) => {
                Self::drop_tcp(&mut l, cx);
                self.done.push_back((l.id, Outcome::Records(r)));
            }
            Reply::Alias(target) if l.hops < MAX_HOPS => {
                Self::drop_tcp(&mut l, cx);
                l.hops += 1;
                l.asking = target;
                self.send(now, &mut l, cx);
                self.lookups.push(l);
            }
            Reply::Alias(_) => {
                Self::drop_tcp(&mut l, cx);
                let why = Failure::new(
                    FailureKind::Protocol,
                    format!("more than {MAX_HOPS} CNAMEs"),
                );
                self.done.push_back((l.id, Outcome::Failed(why)));
            }
            Reply::NoData => self.next_candidate(now, l, true, cx),
            Reply::NxDomain => self.next_candidate(now, l, false, cx),
            Reply::Refused => {
                let why = Failure::new(FailureKind::Refused, format!("{server}: Query Refused"));
                self.next_server(now, l, why, cx)
            }
            Reply::ServerError(e) => {
                let why = Failure::new(FailureKind::Other, format!("{server}: {e}"));
                self.next_server(now, l, why, cx)
            }
        }
    }

    /// A datagram on one of the resolver's sockets; returns whether it was the resolver's.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        socket: SocketId,
        from: SocketAddr,
        data: &[u8],
        cx: &mut Context<'_>,
    ) -> bool {
        if !matches!(self.server_of_socket(socket), Some((_, Sock::Open(_)))) {
            return false;
        }
        let id = dns::id_of(data);
        // Two lookups may share an ID by chance: the reply is the one whose question it
        // answers.
        let mut found = None;
        for (pos, l) in self.lookups.iter().enumerate() {
            let candidate = matches!(l.transport, Transport::Udp)
                && l.queued.is_none()
                && Some(l.query_id) == id
                && l.asked == from;
            if candidate && let Ok(reply) = dns::read_reply(data, l.query_id, &l.asking, l.kind) {
                found = Some((pos, reply));
                break;
            }
        }
        match found {
            Some((pos, reply)) => {
                let l = self.lookups.swap_remove(pos);
                self.handle_reply(now, l, reply, false, cx);
            }
            None => {
                // Another ID, another question, another source, or garbage: not an answer
                // to anything asked.
                self.ignored += 1;
                cx.count_rejected();
            }
        }
        self.tidy(cx);
        true
    }

    /// What became of one of the resolver's sockets; returns whether it was the resolver's.
    pub fn handle_socket(
        &mut self,
        now: Instant,
        socket: SocketId,
        event: SocketEvent<'_>,
        cx: &mut Context<'_>,
    ) -> bool {
        let Some((server, sock)) = self.server_of_socket(socket) else {
            return false;
        };
        match (sock, event) {
            (Sock::Opening(_), SocketEvent::Opened(_)) => {
                if let Some((_, s)) = self.socks.iter_mut().find(|(a, _)| *a == server) {
                    *s = Sock::Open(socket);
                }
                for l in &mut self.lookups {
                    if l.asked == server
                        && let Some(packet) = l.queued.take()
                    {
                        cx.send_datagram(socket, Endpoint::Addr(server), Bytes::from(packet));
                    }
                }
                // Opened for a server the configuration dropped meanwhile, with no lookup
                // waiting on it.
                self.prune(cx);
            }
            (Sock::Opening(_), SocketEvent::OpenFailed(why)) => {
                if let Some((_, s)) = self.socks.iter_mut().find(|(a, _)| *a == server) {
                    *s = Sock::Closed;
                }
                // Every lookup waiting for this socket fails over to the next server.
                let why = why.clone().context("cannot open a UDP socket");
                self.fail_over(now, server, &why, cx);
            }
            // The server's port is closed (ICMP port unreachable on the connected socket):
            // the lookups asking it move to the next server at once, as glibc's do, instead
            // of waiting out their time-out.
            (Sock::Open(_), SocketEvent::SendFailed(why)) if why.kind() == FailureKind::Refused => {
                let why = why.clone().context(server);
                self.fail_over(now, server, &why, cx);
            }
            // Another failed send (no route, say): the lookups on it time out.
            _ => {}
        }
        self.tidy(cx);
        true
    }

    /// What came back on one of the resolver's TCP exchanges; returns whether it was the
    /// resolver's.
    pub fn handle_exchange(
        &mut self,
        now: Instant,
        exchange: ExchangeId,
        reply: strategy::Reply<'_>,
        cx: &mut Context<'_>,
    ) -> bool {
        let pos = self.lookups.iter().position(
            |l| matches!(&l.transport, Transport::Tcp { exchange: x, .. } if *x == exchange),
        );
        let Some(pos) = pos else { return false };
        let server = self.lookups[pos].asked;
        match reply {
            strategy::Reply::Data(d) => {
                let Transport::Tcp { buf, .. } = &mut self.lookups[pos].transport else {
                    return true;
                };
                buf.extend_from_slice(d);
                if buf.len() >= 2 {
                    let len = usize::from(u16::from_be_bytes([buf[0], buf[1]]));
                    if buf.len() >= 2 + len {
                        let msg = buf[2..2 + len].to_vec();
                        let l = &self.lookups[pos];
                        match dns::read_reply(&msg, l.query_id, &l.asking, l.kind) {
                            Ok(reply) => {
                                let l = self.lookups.swap_remove(pos);
                                self.handle_reply(now, l, reply, true, cx);
                            }
                            Err(e) => {
                                let l = self.lookups.swap_remove(pos);
                                let why = Failure::new(
                                    FailureKind::Protocol,
                                    format!("{server} over TCP: {e}"),
                                );
                                self.next_server(now, l, why, cx);
                            }
                        }
                    }
                }
            }
            strategy::Reply::Closed => {
                let l = self.lookups.swap_remove(pos);
                let why = Failure::new(
                    FailureKind::Closed,
                    format!("{server} closed the TCP connection before answering"),
                );
                self.next_server(now, l, why, cx);
            }
            strategy::Reply::Failed(e) => {
                let l = self.lookups.swap_remove(pos);
                let why = e.clone().context(format_args!("{server} over TCP"));
                self.next_server(now, l, why, cx);
            }
            _ => {
                let l = self.lookups.swap_remove(pos);
                let why = Failure::timed_out(format!("{server} over TCP: timed out"));
                self.next_server(now, l, why, cx);
            }
        }
        self.tidy(cx);
        true
    }

    /// Moves on from lookups whose server did not answer in time.
    pub fn handle_timeout(&mut self, now: Instant, cx: &mut Context<'_>) {
        let mut i = 0;
        while i < self.lookups.len() {
            if self.lookups[i].deadline <= now {
                let mut l = self.lookups.swap_remove(i);
                if let Some(why) = l.fatal.take() {
                    self.done.push_back((l.id, Outcome::Failed(why)));
                    continue;
                }
                let why = Failure::timed_out(format!(
                    "{} did not answer within {} s",
                    l.asked,
                    self.conf.timeout.as_secs()
                ));
                self.next_server(now, l, why, cx);
            } else {
                i += 1;
            }
        }
        self.tidy(cx);
    }

    /// The time a lookup may take at most: every server, every attempt, every candidate.
    pub fn worst_case(&self) -> Duration {
        self.conf.timeout * self.conf.attempts * self.servers.len().max(1) as u32
    }
}
