//! What a strategy acts through: typed I/O requests, each with a handle of its own type, and
//! the discovery calls that feed the reconciler.

use core::fmt;
use core::time::Duration;
use std::net::SocketAddr;

use bytes::Bytes;

use crate::io::{Endpoint, Exchange, Request, StreamTls, Token, UdpOptions};
use crate::node::{Node, NodeName, NodeNameError};
use crate::reason::{DiscoveryError, Failure, Rejection};
use crate::reconcile::Reconciler;
use crate::requests::Pending;
use crate::rng::Rng;
use crate::time::Instant;

/// How long a file read may take before the adapter gives up on it.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

macro_rules! handle {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub(crate) Token);

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(self, f)
            }
        }
    };
}

handle!(
    /// A file read a strategy asked for with [`Context::read_file`]; its outcome comes to
    /// [`Strategy::handle_file`](super::Strategy::handle_file).
    ReadId,
    "read#"
);
handle!(
    /// An exchange a strategy started with [`Context::exchange`]; what comes back comes to
    /// [`Strategy::handle_exchange`](super::Strategy::handle_exchange).
    ExchangeId,
    "exchange#"
);
handle!(
    /// A UDP socket a strategy opened with [`Context::open_udp`]; what becomes of it comes to
    /// [`Strategy::handle_socket`](super::Strategy::handle_socket), its datagrams to
    /// [`Strategy::handle_datagram`](super::Strategy::handle_datagram).
    SocketId,
    "socket#"
);

handle!(
    /// A long-lived stream a strategy opened with [`Context::open_stream`]; what becomes of
    /// it comes to [`Strategy::handle_stream`](super::Strategy::handle_stream).
    StreamId,
    "stream#"
);

/// What became of a long-lived stream, in order: [`Opened`](StreamEvent::Opened), then
/// [`Data`](StreamEvent::Data) any number of times, then [`Closed`](StreamEvent::Closed) or
/// [`Failed`](StreamEvent::Failed) — or `Failed` alone if it never opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamEvent<'a> {
    /// Connected (and through TLS, if asked) to this address: writes go out from now on.
    Opened(SocketAddr),
    /// The next bytes read, borrowed for the call.
    Data(&'a [u8]),
    /// The peer closed the stream.
    Closed,
    /// The stream could not open, or broke.
    Failed(&'a Failure),
}

/// What came back on an exchange, in order: [`Data`](Reply::Data) any number of times, then
/// exactly one of the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reply<'a> {
    /// The next bytes of the reply, borrowed for the call.
    Data(&'a [u8]),
    /// The peer closed the stream: the reply is whole.
    Closed,
    /// The exchange failed (connect, TLS, a reply over its limit).
    Failed(&'a Failure),
    /// The exchange's deadline passed.
    TimedOut,
}

/// What became of a UDP socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SocketEvent<'a> {
    /// The socket is open, bound to this address. Datagrams come from now on.
    Opened(SocketAddr),
    /// The socket could not be opened; it is forgotten, and may be opened again.
    OpenFailed(&'a Failure),
    /// A send on the open socket failed; the socket stays open.
    SendFailed(&'a Failure),
}

/// What a strategy acts through: typed I/O requests, discoveries, failures, randomness.
///
/// A strategy can only ask for what a strategy may do — read a file, make an exchange, use a
/// UDP socket — and each request returns a handle of its own type, with which its answers
/// come back. Connecting and disconnecting nodes is the reconciler's alone: a strategy says
/// what it found ([`found`](Context::found), [`round`](Context::round)) and the reconciler
/// does the rest.
pub struct Context<'a> {
    core: &'a mut Reconciler,
    topology: u8,
    now: Instant,
    /// The cluster is leaving: exchanges started now outlive the topology.
    farewell: bool,
}

impl<'a> Context<'a> {
    pub(crate) fn new(core: &'a mut Reconciler, topology: u8, now: Instant) -> Self {
        Context {
            core,
            topology,
            now,
            farewell: false,
        }
    }

    /// The context of [`Strategy::leave`](super::Strategy::leave).
    pub(crate) fn farewell(core: &'a mut Reconciler, topology: u8, now: Instant) -> Self {
        Context {
            core,
            topology,
            now,
            farewell: true,
        }
    }

    /// Whether the cluster is leaving (the call is [`Strategy::leave`](super::Strategy::leave)).
    pub fn is_leaving(&self) -> bool {
        self.farewell
    }

    /// The time of the call.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The name of the topology this strategy serves.
    pub fn topology(&self) -> &str {
        self.core.topo_str(self.topology)
    }

    /// This node's own name, if the cluster was given one.
    pub fn this_node(&self) -> Option<&NodeName> {
        self.core.this_node()
    }

    /// Whether the cluster holds a connection to `name` now.
    pub fn is_connected(&self, name: &str) -> bool {
        self.core.is_connected(name)
    }

    /// Whether peers can connect to this node now. An Erlang node is reachable once EPMD has
    /// registered it (a peer that looked it up before would fail, and back off); other nodes
    /// always are. A strategy that announces this node (a gossip heartbeat, a registration)
    /// waits for it: when it becomes true, every strategy's `handle_timeout` is called.
    pub fn is_reachable(&self) -> bool {
        self.core.is_reachable()
    }

    /// The cluster's deterministic random generator.
    pub fn rng(&mut self) -> &mut Rng {
        self.core.rng()
    }

    /// The Unix time now (for timestamps that other hosts check), if the adapter provided a
    /// wall clock with [`Cluster::set_unix_time`](crate::Cluster::set_unix_time).
    pub fn unix_time(&self) -> Option<Duration> {
        self.core.unix_time(self.now)
    }

    // ----- I/O ------------------------------------------------------------------------------

    /// Reads the whole file at `path`, giving up after [`READ_TIMEOUT`]. The contents, or why
    /// not, come to [`Strategy::handle_file`](super::Strategy::handle_file).
    pub fn read_file(&mut self, path: impl Into<String>) -> ReadId {
        let request = Request::ReadFile {
            path: path.into(),
            deadline: self.now + READ_TIMEOUT,
        };
        ReadId(self.core.request(Pending::Read(self.topology), request))
    }

    /// Stops waiting for a read: whatever still comes for it is dropped. A read that already
    /// ended, or another topology's, is left alone.
    pub fn cancel_read(&mut self, read: ReadId) {
        self.cancel(read.0, Pending::Read(self.topology));
    }

    /// Connects to `x.to`, writes `x.send` and passes on what comes back, to
    /// [`Strategy::handle_exchange`](super::Strategy::handle_exchange), until the peer
    /// closes, the reply passes `x.max_reply` or `x.deadline` passes.
    ///
    /// Started in [`Strategy::leave`](super::Strategy::leave), the exchange outlives the
    /// topology: the cluster counts as left only once it has ended (its deadline bounds
    /// that), and what comes back is dropped.
    pub fn exchange(&mut self, x: Exchange) -> ExchangeId {
        let pending = if self.farewell {
            Pending::Farewell
        } else {
            Pending::Exchange(self.topology)
        };
        ExchangeId(self.core.request(pending, Request::Exchange(x)))
    }

    /// Stops an exchange: the adapter closes its stream, and whatever still comes for it is
    /// dropped. An exchange that already ended, or another topology's, is left alone.
    pub fn cancel_exchange(&mut self, exchange: ExchangeId) {
        self.cancel(exchange.0, Pending::Exchange(self.topology));
    }

    /// Opens a TCP stream that stays open (through TLS when `tls` says so), giving up at
    /// `deadline` if it has not opened by then. What becomes of it comes to
    /// [`Strategy::handle_stream`](super::Strategy::handle_stream); bytes go out with
    /// [`write`](Context::write). It is closed with [`close_stream`](Context::close_stream),
    /// or when the topology is removed (queued writes are flushed first).
    pub fn open_stream(
        &mut self,
        to: Endpoint,
        tls: Option<StreamTls>,
        deadline: Instant,
    ) -> StreamId {
        let request = Request::OpenStream { to, deadline, tls };
        StreamId(self.core.request(Pending::Stream(self.topology), request))
    }

    /// Writes `data` on `stream`, after what was written before. A stream that is not this
    /// topology's, or has ended, takes nothing. Write once it has
    /// [opened](StreamEvent::Opened): the adapter may drop earlier writes.
    pub fn write(&mut self, stream: StreamId, data: Bytes) {
        if self
            .core
            .is_pending(stream.0, Pending::Stream(self.topology))
        {
            self.core.request_untracked(Request::Write {
                stream: stream.0,
                data,
            });
        }
    }

    /// Closes `stream` once what was written on it has gone out; nothing more comes from it.
    /// A stream that ended, or another topology's, is left alone.
    pub fn close_stream(&mut self, stream: StreamId) {
        self.cancel(stream.0, Pending::Stream(self.topology));
    }

    fn cancel(&mut self, token: Token, what: Pending) {
        if self.core.forget_token_if(token, what) {
            self.core.request_untracked(Request::Cancel { token });
        }
    }

    /// Opens a UDP socket. Whether it opened comes to
    /// [`Strategy::handle_socket`](super::Strategy::handle_socket); datagrams that arrive on
    /// it to [`Strategy::handle_datagram`](super::Strategy::handle_datagram). The socket is
    /// closed with [`close_udp`](Context::close_udp), or when the topology is removed.
    pub fn open_udp(&mut self, options: UdpOptions) -> SocketId {
        let token = self
            .core
            .request(Pending::Socket(self.topology), Request::OpenUdp(options));
        self.core.open_socket(token, self.topology);
        SocketId(token)
    }

    /// Sends `data` to `to` on `socket`. No answer on success; a failure comes to
    /// [`Strategy::handle_socket`](super::Strategy::handle_socket) as
    /// [`SocketEvent::SendFailed`]. A socket not open — its opening not answered yet, closed,
    /// or another topology's — sends nothing: wait for [`SocketEvent::Opened`].
    pub fn send_datagram(&mut self, socket: SocketId, to: Endpoint, data: Bytes) {
        if !self.core.socket_ready(socket.0, self.topology) {
            return;
        }
        self.core.request_untracked(Request::SendDatagram {
            socket: socket.0,
            to,
            data,
        });
    }

    /// Closes `socket`; nothing more comes from it. Another topology's socket is left alone.
    pub fn close_udp(&mut self, socket: SocketId) {
        if self.core.socket_topology(socket.0) == Some(self.topology)
            && self.core.close_socket(socket.0)
        {
            self.core.forget_token(socket.0);
            self.core
                .request_untracked(Request::CloseUdp { socket: socket.0 });
        }
    }

    // ----- discovery --------------------------------------------------------------------------

    /// Adds a node to this topology's discovered set (static and gossip strategies). This
    /// node's own name is skipped. Only a name the cluster has not seen is validated (and
    /// allocated).
    pub fn found(&mut self, name: &str, addr: Option<SocketAddr>) -> Result<(), NodeNameError> {
        if let Some(i) = self.core.intern(name, addr)? {
            self.core.discover(self.topology, i);
        }
        Ok(())
    }

    /// [`found`](Context::found) for an already validated node.
    pub fn found_node(&mut self, node: &Node) {
        if let Some(i) = self.core.intern_node(node) {
            self.core.discover(self.topology, i);
        }
    }

    /// Removes a node from this topology's discovered set (e.g. gossip that expired). Returns
    /// whether it was there.
    pub fn lose(&mut self, name: &str) -> bool {
        match self.core.lookup(name) {
            Some(i) => self.core.lose(self.now, self.topology, i),
            None => false,
        }
    }

    /// Starts a discovery round: the nodes added to it and committed become this topology's
    /// whole discovered set, and nodes not in it are lost. A round ends with
    /// [`commit`](Round::commit) or [`fail`](Round::fail); dropped without either, it changes
    /// nothing.
    pub fn round(&mut self) -> Round<'_, 'a> {
        let id = self.core.begin_round();
        Round {
            cx: self,
            id,
            ended: false,
        }
    }

    /// Reports a failed discovery attempt. The topology keeps its last good set.
    pub fn discovery_failed(&mut self, reason: impl Into<DiscoveryError>) {
        self.core.discovery_failed(self.topology, reason.into());
    }

    /// Reports bad input from the network that was dropped.
    pub fn rejected(&mut self, from: Option<SocketAddr>, reason: Rejection) {
        self.core.rejected(self.topology, from, reason);
    }

    /// Counts bad input from the network without reporting it (a strategy rate-limits its
    /// reports, and counts every rejection).
    pub fn count_rejected(&mut self) {
        self.core.count_rejected();
    }

    /// Asks for a reconcile against the connector's actual list of connected nodes, so that
    /// dropped nodes are reconnected (the Epmd strategy's periodic `timeout`).
    pub fn reconcile(&mut self) {
        self.core.want_refresh();
    }
}

/// A discovery round in progress; see [`Context::round`].
pub struct Round<'c, 'a> {
    cx: &'c mut Context<'a>,
    id: u32,
    ended: bool,
}

impl Round<'_, '_> {
    /// Adds a node to the round. This node's own name is skipped.
    pub fn add(&mut self, name: &str, addr: Option<SocketAddr>) -> Result<(), NodeNameError> {
        if let Some(i) = self.cx.core.intern(name, addr)? {
            self.cx.core.add_to_round(i);
        }
        Ok(())
    }

    /// Makes the round the topology's discovered set and reconciles against the connector's
    /// list of connected nodes.
    pub fn commit(mut self) {
        self.ended = true;
        let (now, topology) = (self.cx.now, self.cx.topology);
        self.cx.core.commit_round(now, topology, self.id);
    }

    /// Abandons the round because the poll failed: the topology keeps its last good set, and
    /// a [`DiscoveryFailed`](crate::Event::DiscoveryFailed) event says why.
    pub fn fail(mut self, reason: impl Into<DiscoveryError>) {
        self.ended = true;
        self.cx.core.abandon_round();
        self.cx.discovery_failed(reason);
    }
}

impl Drop for Round<'_, '_> {
    fn drop(&mut self) {
        if !self.ended {
            self.cx.core.abandon_round();
        }
    }
}
