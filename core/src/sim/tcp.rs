//! The simulator's stream requests: listen, accept, open, write, close, and exchanges with
//! simulated services, over the seeded network — with latency, bytes split at random points
//! (so every framing path runs), refused connections, partitions and hosts going down. Every
//! host runs an EPMD (the core's own state machine) on the configured port. Streams to the
//! address of a stream service go to it (`service.rs`).

use std::cmp::Reverse;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use bytes::Bytes;

use super::http::{HttpReply, HttpRequest, World};
use super::{Delivery, End, EpmdIn, EpmdOutput, EpmdServer, Owned, SideMsg, Sim, Target};
use crate::io::{Endpoint, Token};
use crate::reason::{Failure, FailureKind};
use crate::rng::Rng;
use crate::time::Instant;

/// Pieces a write is split into, at most.
const MAX_PIECES: u64 = 4;

impl Sim {
    /// The host address and port `to` names from node `index`, and whether it is loopback.
    pub(super) fn resolve(&self, index: usize, to: &Endpoint) -> Option<(IpAddr, u16, bool)> {
        let mine = self.host_ip(index);
        let (ip, port) = match to {
            Endpoint::Addr(a) => (a.ip(), a.port()),
            Endpoint::Host { host, port } => {
                if host == "localhost" {
                    (IpAddr::V4(Ipv4Addr::LOCALHOST), *port)
                } else if let Ok(ip) = host.parse::<IpAddr>() {
                    (ip, *port)
                } else {
                    let ip = self
                        .hosts
                        .iter()
                        .find(|(n, _)| n.host() == host)
                        .map(|(_, h)| h.ip)?;
                    (ip, *port)
                }
            }
        };
        if ip.to_canonical().is_loopback() {
            return Some((mine, port, true));
        }
        self.ips.contains_key(&ip).then_some((ip, port, false))
    }

    pub(super) fn listen(&mut self, index: usize, token: Token, bind: SocketAddr) {
        let ip = self.host_ip(index);
        let port = match bind.port() {
            0 => self.streams.ephemeral(ip),
            p => p,
        };
        let addr = SocketAddr::new(ip, port);
        let answer = if self.streams.listen(addr, index, token) {
            Owned::Opened(addr)
        } else {
            Owned::Failed(Failure::new(
                FailureKind::AddrInUse,
                format!("{addr}: address in use"),
            ))
        };
        self.schedule(index, Delivery::Answer { token, answer });
    }

    pub(super) fn accept(&mut self, index: usize, token: Token, listener: Token) {
        let Some(addr) = self.streams.listener_of(index, listener) else {
            let why = Failure::new(FailureKind::Closed, "no such listener");
            let answer = Owned::Failed(why);
            return self.schedule(index, Delivery::Answer { token, answer });
        };
        let mut next = None;
        while let Some(id) = self
            .streams
            .listeners
            .get_mut(&addr)
            .and_then(|l| l.backlog.pop_front())
        {
            if self.streams.conns.contains_key(&id) {
                next = Some(id);
                break;
            }
        }
        match next {
            Some(id) => self.take(index, token, id),
            None => {
                if let Some(l) = self.streams.listeners.get_mut(&addr) {
                    l.accepts.push_back(token);
                }
            }
        }
    }

    /// The accept `token` of node `index` takes connection `id` from the backlog.
    fn take(&mut self, index: usize, token: Token, id: u64) {
        let life = self.nodes[index].restarts;
        let end = End::Node {
            node: index,
            life,
            token,
        };
        self.streams.bind(id, 1, end);
        let Some(c) = self.streams.conns.get_mut(&id) else {
            return;
        };
        let client = c.addrs[0];
        let held = std::mem::take(&mut c.held);
        self.reach_side(id, 1, SideMsg::Accepted(client));
        for data in held {
            self.reach_side(id, 1, SideMsg::Data(data));
        }
        let closed = self.streams.conns.get(&id).is_some_and(|c| c.closed[0]);
        if closed {
            self.reach_side(id, 1, SideMsg::Closed);
        }
    }

    /// Connects node `index`'s `token` to `to`; an exchange (`send` given) writes `send` at
    /// once and is answered with what comes back, without `Opened`.
    pub(super) fn open_stream(
        &mut self,
        index: usize,
        token: Token,
        to: &Endpoint,
        deadline: Instant,
        send: Option<Bytes>,
    ) {
        if let Some(service) = self.service_for(to) {
            return self.open_service(index, token, service, deadline, send);
        }
        let Some((ip, port, loopback)) = self.resolve(index, to) else {
            let why = Failure::new(FailureKind::NotFound, format!("{to}: no such host"));
            let answer = Owned::Failed(why);
            return self.schedule(index, Delivery::Answer { token, answer });
        };
        let me = self.nodes[index].name.clone();
        let reachable = match self.ips.get(&ip) {
            Some(peer) => loopback || self.reachable(&me, peer),
            None => false,
        };
        if !reachable {
            // Nothing answers: the connect hangs until its deadline.
            let at = deadline.max(self.now);
            return self.schedule_at(
                index,
                at,
                Delivery::Answer {
                    token,
                    answer: Owned::TimedOut,
                },
            );
        }
        let mine = self.host_ip(index);
        let (client_ip, server_ip) = match loopback {
            true => (
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V4(Ipv4Addr::LOCALHOST),
            ),
            false => (mine, ip),
        };
        let client = SocketAddr::new(client_ip, self.streams.ephemeral(mine));
        let server = SocketAddr::new(server_ip, port);
        let life = self.nodes[index].restarts;
        let me_end = End::Node {
            node: index,
            life,
            token,
        };
        let key = SocketAddr::new(ip, port);
        let hosts = [mine, ip];
        let id = if self.streams.listeners.contains_key(&key) {
            let id = self
                .streams
                .connect(me_end, End::Backlog, hosts, [client, server], self.now);
            let (owner, accept) = match self.streams.listeners.get_mut(&key) {
                Some(l) => match l.accepts.pop_front() {
                    Some(t) => (l.node, Some(t)),
                    None => {
                        l.backlog.push_back(id);
                        (l.node, None)
                    }
                },
                None => return,
            };
            if let Some(t) = accept {
                self.take(owner, t, id);
            }
            id
        } else if port == self.config.epmd_port {
            let id = self
                .streams
                .connect(me_end, End::Backlog, hosts, [client, server], self.now);
            self.streams.bind(id, 1, End::Epmd { ip, id });
            self.reach_epmd(ip, id, EpmdIn::Open { id, peer: client });
            id
        } else {
            let why = Failure::new(
                FailureKind::Refused,
                format!("{server}: connection refused"),
            );
            let answer = Owned::Failed(why);
            return self.schedule(index, Delivery::Answer { token, answer });
        };
        match send {
            Some(data) => {
                self.send(id, 0, data);
                let at = deadline.max(self.now);
                self.schedule_at(
                    index,
                    at,
                    Delivery::Answer {
                        token,
                        answer: Owned::TimedOut,
                    },
                );
            }
            None => self.reach_side(id, 0, SideMsg::Opened(server)),
        }
    }

    pub(super) fn write(&mut self, index: usize, stream: Token, data: Bytes) {
        if let Some((id, side)) = self.streams.end_of(index, stream) {
            self.send(id, side, data);
        }
    }

    /// Side `from` of `id` sends `data` to the other side, split at random points.
    pub(super) fn send(&mut self, id: u64, from: usize, data: Bytes) {
        let to = 1 - from;
        if self.streams.conns.get(&id).is_none_or(|c| c.closed[to]) {
            return;
        }
        for piece in split(&mut self.rng, data) {
            self.reach_side(id, to, SideMsg::Data(piece));
        }
    }

    pub(super) fn cancel(&mut self, index: usize, token: Token) {
        if let Some((id, side)) = self.streams.end_of(index, token) {
            self.close(id, side);
            return;
        }
        if let Some(addr) = self.streams.listener_of(index, token) {
            if let Some(l) = self.streams.listeners.remove(&addr) {
                for id in l.backlog {
                    self.close(id, 1);
                }
            }
            return;
        }
        for l in self.streams.listeners.values_mut() {
            if l.node == index {
                l.accepts.retain(|t| *t != token);
            }
        }
        // A cancelled exchange or read: what was still coming for it never comes (a stalled
        // watch would otherwise sit in transit until its deadline, minutes away).
        self.transit.retain(|Reverse(t)| {
            !matches!(
                (&t.to, &t.what),
                (
                    Target::Node { index: i, .. },
                    Delivery::Answer { token: k, .. } | Delivery::Deadline { token: k }
                ) if *i == index && *k == token
            )
        });
    }

    /// Side `side` closes `id`: the other side hears it after what was sent before.
    pub(super) fn close(&mut self, id: u64, side: usize) {
        let other_open = self
            .streams
            .conns
            .get(&id)
            .is_some_and(|c| !c.closed[1 - side]);
        if other_open {
            self.reach_side(id, 1 - side, SideMsg::Closed);
        }
        self.streams.close_side(id, side);
    }

    /// Breaks connection `id`: both ends hear `why` (what was on its way still arrives).
    pub(super) fn break_conn(&mut self, id: u64, kind: FailureKind, why: &str) {
        for side in 0..2 {
            let open = self.streams.conns.get(&id).is_some_and(|c| !c.closed[side]);
            if open {
                self.reach_side(id, side, SideMsg::Failed(Failure::new(kind, why)));
            }
        }
        self.streams.close_side(id, 0);
        self.streams.close_side(id, 1);
    }

    /// A host (and the node on it) went down: every connection to it breaks.
    pub(super) fn break_streams(&mut self, ip: IpAddr, node: Option<usize>, why: &str) {
        for id in self.streams.touching(ip, node) {
            self.break_conn(id, FailureKind::Reset, why);
        }
    }

    /// Sends `msg` to side `side` of `id`, after everything sent to that side before.
    pub(super) fn reach_side(&mut self, id: u64, side: usize, msg: SideMsg) {
        let lat = self.latency();
        let Some(c) = self.streams.conns.get_mut(&id) else {
            return;
        };
        let at = (self.now + lat).max(c.last[side]);
        c.last[side] = at;
        match c.ends[side] {
            // Closed before anyone accepted it: the accept sees it closed (the client's side
            // is marked closed already).
            End::Backlog => {
                if let SideMsg::Data(d) = msg {
                    c.held.push(d);
                }
            }
            End::Node { node, life, token } => {
                let answer = match msg {
                    SideMsg::Opened(a) => Owned::Opened(a),
                    SideMsg::Accepted(a) => Owned::Accepted(a),
                    SideMsg::Data(d) => Owned::Data(d.to_vec()),
                    SideMsg::Closed => Owned::Closed,
                    SideMsg::Failed(f) => Owned::Failed(f),
                };
                let target = Target::Node { index: node, life };
                self.schedule_to(target, at, Delivery::Answer { token, answer });
            }
            End::Epmd { ip, id } => {
                let ev = match msg {
                    SideMsg::Data(data) => EpmdIn::Data { id, data },
                    SideMsg::Closed | SideMsg::Failed(_) => EpmdIn::Closed { id },
                    SideMsg::Opened(_) | SideMsg::Accepted(_) => return,
                };
                self.schedule_to(Target::Epmd(ip), at, Delivery::Epmd(ev));
            }
            End::Service { service, life } => {
                if let Some(ev) = Self::to_service(msg, id) {
                    let target = Target::Service {
                        index: service,
                        life,
                    };
                    self.schedule_to(target, at, Delivery::Service(ev));
                }
            }
        }
    }

    fn reach_epmd(&mut self, ip: IpAddr, id: u64, ev: EpmdIn) {
        let lat = self.latency();
        let at = match self.streams.conns.get_mut(&id) {
            Some(c) => {
                let at = (self.now + lat).max(c.last[1]);
                c.last[1] = at;
                at
            }
            None => self.now + lat,
        };
        self.schedule_to(Target::Epmd(ip), at, Delivery::Epmd(ev));
    }

    /// Something reaches host `ip`'s EPMD.
    pub(super) fn deliver_epmd(&mut self, ip: IpAddr, ev: EpmdIn) {
        let now = self.now;
        if !self.epmds.contains_key(&ip) {
            if !matches!(ev, EpmdIn::Open { .. }) {
                return;
            }
            let mut rng =
                Rng::from_seed(super::seed_bytes(self.seed, u64::from(self.epmd_salt(ip))));
            let server = EpmdServer::new(self.config.epmd_port, &mut rng);
            self.epmds.insert(ip, (server, None));
        }
        let Some((server, _)) = self.epmds.get_mut(&ip) else {
            return;
        };
        match ev {
            EpmdIn::Open { id, peer } => server.handle_open(now, id, peer),
            EpmdIn::Data { id, data } => server.handle_data(id, &data),
            EpmdIn::Closed { id } => {
                server.handle_closed(id);
                self.streams.close_side(id, 1);
            }
            EpmdIn::Tick => server.handle_timeout(now),
        }
        let mut outs = Vec::new();
        let mut wake = None;
        if let Some((server, _)) = self.epmds.get_mut(&ip) {
            while let Some(o) = server.poll_output() {
                outs.push(o);
            }
            wake = server.poll_timeout();
        }
        for o in outs {
            match o {
                EpmdOutput::Write { conn, data } => self.send(conn, 1, Bytes::from(data)),
                EpmdOutput::Close { conn } => self.close(conn, 1),
                EpmdOutput::Stop => {
                    self.epmds.remove(&ip);
                    return;
                }
            }
        }
        let due = self.epmds.get(&ip).and_then(|(_, at)| *at);
        if let Some(w) = wake
            && due.is_none_or(|d| d > w || d <= now)
        {
            if let Some((_, at)) = self.epmds.get_mut(&ip) {
                *at = Some(w);
            }
            self.schedule_to(Target::Epmd(ip), w.max(now), Delivery::Epmd(EpmdIn::Tick));
        }
    }

    /// An exchange with the HTTP service at `at`: one request, one reply, then close.
    pub(super) fn exchange_http(
        &mut self,
        index: usize,
        token: Token,
        at: &str,
        send: &[u8],
        deadline: Instant,
    ) {
        let request = HttpRequest::parse(send);
        let now = self.now;
        let world = World {
            hosts: self.hosts.iter().map(|(n, h)| (n, h.ip, h.up)).collect(),
        };
        let reply = match (request, self.http.get_mut(at)) {
            (Some(r), Some(service)) => service.respond(now, &r, &world),
            _ => HttpReply::status(400, "bad request"),
        };
        let Some(bytes) = reply.encode() else {
            let answer = Owned::TimedOut;
            return self.schedule_at(index, deadline.max(now), Delivery::Answer { token, answer });
        };
        let mut t = now + self.latency();
        for piece in split(&mut self.rng, Bytes::from(bytes)) {
            t += self.latency() / 4;
            let answer = Owned::Data(piece.to_vec());
            self.schedule_at(index, t, Delivery::Answer { token, answer });
        }
        let answer = Owned::Closed;
        self.schedule_at(index, t, Delivery::Answer { token, answer });
    }

    /// A stable number for host `ip`, for its EPMD's seed.
    fn epmd_salt(&self, ip: IpAddr) -> u32 {
        match ip {
            IpAddr::V4(v4) => u32::from(v4) | 0x8000_0000,
            IpAddr::V6(v6) => (u128::from(v6) as u32) | 0x8000_0000,
        }
    }
}

/// Splits `data` into up to [`MAX_PIECES`] pieces at random points.
fn split(rng: &mut Rng, data: Bytes) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut rest = data;
    let pieces = rng.range_inclusive(1, MAX_PIECES);
    for _ in 1..pieces {
        if rest.len() < 2 {
            break;
        }
        let at = rng.range_inclusive(1, rest.len() as u64 - 1) as usize;
        out.push(rest.split_to(at));
    }
    out.push(rest);
    out
}
