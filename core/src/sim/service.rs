//! Simulated stream services: servers that hold connections (a database, a coordination
//! service) at an address, reached by the clusters' long-lived streams
//! ([`Request::OpenStream`](crate::io::Request::OpenStream)) and exchanges.
//!
//! A service is registered with [`Sim::serve_stream`] and implements [`StreamService`]: it
//! hears each connection open, its bytes (split at random points, as every simulated stream's
//! are) and its end, and answers with [`ServiceOutput`]s. The simulator carries those bytes
//! with its latency, in order per connection, and breaks the connections of a host that goes
//! down. A service is reachable from every host whatever the partitions; its own faults
//! ([`ServiceFault`], [`Sim::restart_service`]) say when it is not.

use std::any::Any;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use bytes::Bytes;

use super::{Delivery, End, Owned, SideMsg, Sim};
use crate::io::Token;
use crate::reason::{Failure, FailureKind};
use crate::time::Instant;

/// A connection to a stream service, as the service sees it: unique within a run, never
/// reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub(crate) u64);

impl ConnId {
    /// The number behind the id (for logs and figures).
    pub fn get(self) -> u64 {
        self.0
    }
}

/// What a stream service asks the simulator to do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServiceOutput {
    /// Send these bytes on a connection, after what was sent on it before.
    Write {
        /// The connection.
        conn: ConnId,
        /// The bytes.
        data: Bytes,
    },
    /// Close a connection once what was written on it has gone out.
    Close {
        /// The connection.
        conn: ConnId,
    },
}

/// A simulated server holding streams (a database, a coordination service), registered
/// at an address with [`Sim::serve_stream`] and reached by the clusters' long-lived streams
/// and exchanges. The simulator carries its bytes with its latency, split at random points,
/// in order per connection; it is reachable from every host whatever the partitions, and its
/// own faults ([`ServiceFault`], [`Sim::restart_service`]) say when it is not.
///
/// Calls come in the order a real server would see them for each connection: `open`, then
/// `data` (any number of times, the bytes in arbitrary pieces), then `closed` at most once.
/// After each call the simulator drains [`poll_output`](StreamService::poll_output). The
/// service must never panic on what a client sends: bytes from a strategy are untrusted.
pub trait StreamService: Any {
    /// A client connected from `peer`.
    fn open(&mut self, now: Instant, conn: ConnId, peer: SocketAddr);

    /// Bytes arrived on `conn`.
    fn data(&mut self, now: Instant, conn: ConnId, data: &[u8]);

    /// The client closed `conn`, or the connection broke. Nothing more can be written on it.
    fn closed(&mut self, now: Instant, conn: ConnId);

    /// The next thing to do, if any.
    fn poll_output(&mut self) -> Option<ServiceOutput>;

    /// The server process stops and starts again. It may write a last word on its
    /// connections and close them (a fast shutdown); every connection still open afterwards
    /// is broken by the simulator, and the service must forget them all.
    fn restart(&mut self, now: Instant) {
        let _ = now;
    }

    /// When the service next wants [`handle_timeout`](StreamService::handle_timeout) (a
    /// lease that expires), if ever. Read after every call; a server timer is not something
    /// in transit, so it never keeps the simulator from being quiescent.
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    /// The time [`poll_timeout`](StreamService::poll_timeout) named has come (calls may be
    /// early or spurious: do what is due by `now`, nothing else). Not called while the
    /// service is down or stalled: a stalled server catches up once the fault ends.
    fn handle_timeout(&mut self, now: Instant) {
        let _ = now;
    }

    /// The server process runs again after being down ([`ServiceFault::Down`] ended); it
    /// was told [`restart`](StreamService::restart) when it went down.
    fn start(&mut self, now: Instant) {
        let _ = now;
    }
}

/// A fault a stream service shows (see [`Sim::service_fault`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ServiceFault {
    /// Up and reachable.
    #[default]
    None,
    /// The server process is gone (a crash): every connection is reset at once, new ones are
    /// refused, and the service forgets everything ([`StreamService::restart`] without its
    /// last words reaching anyone).
    Down,
    /// The network to the server is gone: every connection breaks, new connects hang until
    /// their deadline. The server keeps running and hears the connections end.
    Unreachable,
    /// The server hangs (stopped, or swamped): connections still open and bytes still go in,
    /// but the service sees nothing until the fault ends, then everything, in order.
    Stall,
}

/// What reaches a stream service.
#[derive(Debug)]
pub(super) enum ServiceIn {
    Open {
        id: u64,
        peer: SocketAddr,
    },
    Data {
        id: u64,
        data: Bytes,
    },
    Closed {
        id: u64,
    },
    /// The service's own timer ([`StreamService::poll_timeout`]): not in transit, and due
    /// whatever life the service is in.
    Tick,
}

/// A registered service and what the simulator keeps about it.
pub(super) struct Slot {
    /// The address connections name as their server's.
    addr: SocketAddr,
    service: Box<dyn StreamService>,
    fault: ServiceFault,
    /// Bumped when the process restarts: what was on its way to the old one is lost.
    life: u32,
    /// What arrived while the service was stalled, in order.
    held: Vec<ServiceIn>,
    /// When a tick is scheduled for the service's timer.
    wake: Option<Instant>,
}

/// The address a service named by `at` (`host:port`) has: the host's own when it is an IP
/// address, else one from the benchmarking range 198.18.0.0/15, which no simulated host has.
fn service_addr(at: &str, index: usize) -> SocketAddr {
    if let Ok(a) = at.parse::<SocketAddr>() {
        return a;
    }
    let port = at
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or(0);
    let n = index as u32 + 1;
    let ip = Ipv4Addr::new(198, 18, (n >> 8) as u8, n as u8);
    SocketAddr::new(IpAddr::V4(ip), port)
}

impl Sim {
    /// Runs the stream service `service` at `at` (`host:port` as a strategy names it, e.g.
    /// `10.99.0.1:5432` or `db.internal:5432`), reachable from every host. Connections to
    /// that address, and exchanges with it, reach the service. TLS is not simulated: a
    /// stream that asks for it is answered `Unsupported`. A service already at `at` is
    /// replaced (its connections break).
    pub fn serve_stream(&mut self, at: &str, service: impl StreamService + 'static) {
        if let Some(&index) = self.service_at.get(at) {
            self.break_service_conns(index, FailureKind::Reset, "server replaced");
            let slot = &mut self.services[index];
            slot.service = Box::new(service);
            slot.life += 1;
            slot.held.clear();
            slot.fault = ServiceFault::None;
            slot.wake = None;
            return self.drain_service(index);
        }
        let index = self.services.len();
        self.services.push(Slot {
            addr: service_addr(at, index),
            service: Box::new(service),
            fault: ServiceFault::None,
            life: 0,
            held: Vec::new(),
            wake: None,
        });
        self.service_at.insert(at.to_owned(), index);
        self.drain_service(index);
    }

    /// The stream service at `at`, if it is a `T` (to read its figures).
    pub fn stream_service<T: StreamService>(&self, at: &str) -> Option<&T> {
        let slot = &self.services[*self.service_at.get(at)?];
        let any: &dyn Any = &*slot.service;
        any.downcast_ref()
    }

    /// The stream service at `at`, if it is a `T` (to change its behaviour).
    pub fn stream_service_mut<T: StreamService>(&mut self, at: &str) -> Option<&mut T> {
        let index = *self.service_at.get(at)?;
        let any: &mut dyn Any = &mut *self.services[index].service;
        any.downcast_mut()
    }

    /// Makes the stream service at `at` show `fault` from now on; [`ServiceFault::None`]
    /// ends a fault (a stalled service then sees everything it missed, in order).
    pub fn service_fault(&mut self, at: &str, fault: ServiceFault) {
        let Some(&index) = self.service_at.get(at) else {
            return;
        };
        let was = self.services[index].fault;
        self.services[index].fault = fault;
        if was == ServiceFault::Stall && fault != ServiceFault::Stall {
            for ev in std::mem::take(&mut self.services[index].held) {
                self.deliver_service(index, ev);
            }
            self.service_tick(index);
        }
        if was == ServiceFault::Down && fault != ServiceFault::Down {
            self.services[index].service.start(self.now);
            self.service_tick(index);
        }
        match fault {
            ServiceFault::Down if was != ServiceFault::Down => {
                self.break_service_conns(index, FailureKind::Reset, "connection reset by peer");
                self.services[index].held.clear();
                self.services[index].life += 1;
                // Connections are gone already: a last word reaches no one.
                self.services[index].service.restart(self.now);
                self.drain_service(index);
            }
            ServiceFault::Unreachable if was != ServiceFault::Unreachable => {
                self.break_service_conns(index, FailureKind::Unreachable, "unreachable");
            }
            _ => {}
        }
    }

    /// Restarts the stream service at `at`: it says its last word on its connections (see
    /// [`StreamService::restart`]), every connection still open breaks, and it starts again
    /// with none. A fault it showed stays.
    pub fn restart_service(&mut self, at: &str) {
        let Some(&index) = self.service_at.get(at) else {
            return;
        };
        self.services[index].held.clear();
        self.services[index].service.restart(self.now);
        self.drain_service(index);
        self.break_service_conns(index, FailureKind::Reset, "connection reset by peer");
        self.services[index].life += 1;
    }

    /// The service a stream to `to` reaches, if one serves there.
    pub(super) fn service_for(&self, to: &crate::io::Endpoint) -> Option<usize> {
        self.service_at.get(&to.to_string()).copied()
    }

    /// Whether something on its way to a service will reach it (for quiescence): what was
    /// sent to a process since restarted never will.
    pub(super) fn service_pending(&self, index: usize, life: u32) -> bool {
        self.services.get(index).is_some_and(|s| s.life == life)
    }

    /// Connects node `index`'s `token` to service `service` (see `open_stream`).
    pub(super) fn open_service(
        &mut self,
        index: usize,
        token: Token,
        service: usize,
        deadline: Instant,
        send: Option<Bytes>,
    ) {
        let (addr, fault, life) = {
            let s = &self.services[service];
            (s.addr, s.fault, s.life)
        };
        match fault {
            ServiceFault::Down => {
                let why = Failure::new(FailureKind::Refused, format!("{addr}: connection refused"));
                let answer = Owned::Failed(why);
                return self.schedule(index, Delivery::Answer { token, answer });
            }
            ServiceFault::Unreachable => {
                let answer = Owned::TimedOut;
                let at = deadline.max(self.now);
                return self.schedule_at(index, at, Delivery::Answer { token, answer });
            }
            ServiceFault::None | ServiceFault::Stall => {}
        }
        let mine = self.host_ip(index);
        let client = SocketAddr::new(mine, self.streams.ephemeral(mine));
        let me_end = End::Node {
            node: index,
            life: self.nodes[index].restarts,
            token,
        };
        let server_end = End::Service { service, life };
        let id = self.streams.connect(
            me_end,
            server_end,
            [mine, addr.ip()],
            [client, addr],
            self.now,
        );
        self.reach_side(id, 1, SideMsg::Opened(client));
        match send {
            Some(data) => {
                self.send(id, 0, data);
                // The exchange's deadline: a timer, not something in transit (a watch holds
                // its exchange open for minutes).
                let at = deadline.max(self.now);
                self.schedule_at(index, at, Delivery::Deadline { token });
            }
            None => self.reach_side(id, 0, SideMsg::Opened(addr)),
        }
    }

    /// What reaches side 1 of connection `id`, a service's: as a delivery to it.
    pub(super) fn to_service(msg: SideMsg, id: u64) -> Option<ServiceIn> {
        Some(match msg {
            // The client's address, given when the connection is made.
            SideMsg::Opened(peer) => ServiceIn::Open { id, peer },
            SideMsg::Data(data) => ServiceIn::Data { id, data },
            SideMsg::Closed | SideMsg::Failed(_) => ServiceIn::Closed { id },
            SideMsg::Accepted(_) => return None,
        })
    }

    /// A delivery for service `index` in its `life`-th life came due.
    pub(super) fn arrive_service(&mut self, index: usize, life: u32, ev: ServiceIn) {
        let Some(slot) = self.services.get_mut(index) else {
            return;
        };
        if matches!(ev, ServiceIn::Tick) {
            return self.service_tick(index);
        }
        if slot.life != life {
            return;
        }
        if slot.fault == ServiceFault::Stall {
            slot.held.push(ev);
            return;
        }
        self.deliver_service(index, ev);
    }

    /// Service `index` hears `ev` now; what it answers goes out.
    fn deliver_service(&mut self, index: usize, ev: ServiceIn) {
        let now = self.now;
        let service = &mut self.services[index].service;
        match ev {
            ServiceIn::Open { id, peer } => service.open(now, ConnId(id), peer),
            ServiceIn::Data { id, data } => service.data(now, ConnId(id), &data),
            ServiceIn::Closed { id } => {
                service.closed(now, ConnId(id));
                self.streams.close_side(id, 1);
            }
            ServiceIn::Tick => {}
        }
        self.drain_service(index);
    }

    /// Service `index`'s timer: what is due runs, unless the service is down or stalled
    /// (then it runs once the fault ends).
    fn service_tick(&mut self, index: usize) {
        let now = self.now;
        let Some(slot) = self.services.get_mut(index) else {
            return;
        };
        if matches!(slot.fault, ServiceFault::Down | ServiceFault::Stall) {
            return;
        }
        if slot.wake.is_some_and(|w| w <= now) {
            slot.wake = None;
            slot.service.handle_timeout(now);
        }
        self.drain_service(index);
    }

    /// Carries out what service `index` asked, on its own connections only.
    fn drain_service(&mut self, index: usize) {
        while let Some(out) = self.services[index].service.poll_output() {
            let conn = match &out {
                ServiceOutput::Write { conn, .. } | ServiceOutput::Close { conn } => conn.0,
            };
            // A service may name a connection that is gone, or (a bug) another's.
            let ours = self.streams.conns.get(&conn).is_some_and(
                |c| matches!(c.ends[1], End::Service { service, .. } if service == index),
            );
            if !ours {
                continue;
            }
            match out {
                ServiceOutput::Write { data, .. } => self.send(conn, 1, data),
                ServiceOutput::Close { .. } => self.close(conn, 1),
            }
        }
        // The service's timer: a tick when it is earlier than the one scheduled (or that one
        // is past: it ran, or waits for a fault to end).
        let now = self.now;
        let slot = &mut self.services[index];
        if let Some(w) = slot.service.poll_timeout()
            && slot.wake.is_none_or(|d| d > w || d <= now)
        {
            slot.wake = Some(w);
            let to = super::Target::Service {
                index,
                life: slot.life,
            };
            self.schedule_to(to, w.max(now), Delivery::Service(ServiceIn::Tick));
        }
    }

    /// Breaks every connection of service `index` whose server side is still open.
    fn break_service_conns(&mut self, index: usize, kind: FailureKind, why: &str) {
        let ids: Vec<u64> = self
            .streams
            .conns
            .iter()
            .filter(|(_, c)| {
                !c.closed[1]
                    && matches!(c.ends[1], End::Service { service, .. } if service == index)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.break_conn(id, kind, why);
        }
    }

    /// Whether connection `c` ends at a service (which no partition cuts).
    pub(super) fn is_service_conn(c: &super::streams::Conn) -> bool {
        matches!(c.ends[1], End::Service { .. })
    }
}
