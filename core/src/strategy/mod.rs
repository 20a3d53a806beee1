//! Discovery strategies: the [`Strategy`] trait, the [`Context`] a strategy acts through, and
//! the [`Registry`] that builds strategies from configuration.
//!
//! A strategy is a deterministic state machine. It never performs I/O: it asks for it through
//! typed calls on its [`Context`] — [`read_file`](Context::read_file),
//! [`exchange`](Context::exchange), [`open_udp`](Context::open_udp) and
//! [`send_datagram`](Context::send_datagram) — each returning a handle of its own type
//! ([`ReadId`], [`ExchangeId`], [`SocketId`]), and gets the answers in the matching
//! `handle_*` method. DNS lookups go through the core's [`Resolver`](crate::resolver::Resolver),
//! which uses the same calls. It reports what it found in one of two ways:
//!
//! - **additively**, node by node, with [`Context::found`] (static lists, gossip): nodes are
//!   never lost unless the strategy calls [`Context::lose`];
//! - **as a whole set** per poll, with [`Context::round`] (DNS, Kubernetes, ...): nodes absent
//!   from a committed round are lost, and a failed poll ([`Round::fail`], or
//!   [`Context::discovery_failed`]) never commits a round, so the last good set stays.
//!
//! Connecting is not a strategy's business: the reconciler connects what the topologies
//! discovered. The built-in strategies use exactly this interface; a user's strategy in their
//! own crate is a peer of them.
//!
//! # Writing a strategy
//!
//! This one reads node names, one per line, from a file on every poll:
//!
//! ```
//! use std::time::Duration;
//! use muster_core::strategy::{Context, Periodic, ReadId, Strategy};
//! use muster_core::{Answer, Cluster, ClusterConfig, ConnectPolicy, DiscoveryError, Failure,
//!                   Input, Instant, Output, Request};
//!
//! struct NodesFile { path: String, every: Periodic }
//!
//! impl Strategy for NodesFile {
//!     fn kind(&self) -> &'static str { "nodes_file" }
//!     fn handle_timeout(&mut self, now: Instant, cx: &mut Context<'_>) {
//!         if self.every.fire(now) {
//!             cx.read_file(self.path.as_str());
//!         }
//!     }
//!     fn handle_file(&mut self, _now: Instant, _read: ReadId, result: Result<&[u8], &Failure>,
//!                    cx: &mut Context<'_>) {
//!         let bytes = match result {
//!             Ok(bytes) => bytes,
//!             Err(why) => return cx.discovery_failed(DiscoveryError::request(&self.path, why.clone())),
//!         };
//!         let text = String::from_utf8_lossy(bytes);
//!         let mut round = cx.round();
//!         for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
//!             if let Err(e) = round.add(line, None) {
//!                 // Report, and keep the last good set.
//!                 return round.fail(DiscoveryError::invalid(&self.path, format!("{line:?}: {e}")));
//!             }
//!         }
//!         round.commit();
//!     }
//!     fn poll_timeout(&self) -> Option<Instant> { self.every.next() }
//! }
//!
//! // Drive it by hand, as an adapter would.
//! let mut cluster = Cluster::new(ClusterConfig::new(), [0; 32]);
//! let strategy = NodesFile { path: "nodes.txt".into(), every: Periodic::new(Duration::from_secs(5)) };
//! let now = Instant::ZERO;
//! cluster.add_topology(now, "files", Box::new(strategy), ConnectPolicy::default())?;
//! let Some(Output::Request { token, request: Request::ReadFile { .. } }) = cluster.poll_output()
//!     else { panic!("expected a read") };
//! cluster.handle_input(now, Input::Answer { token, answer: Answer::Data(b"a@host1\nb@host2\n") });
//! // Before connecting, the cluster asks the connector what is connected already.
//! let mut list = None;
//! while let Some(out) = cluster.poll_output() {
//!     if let Output::Request { token, request: Request::ListNodes { .. } } = out { list = Some(token) }
//! }
//! cluster.handle_input(now, Input::Answer { token: list.unwrap(), answer: Answer::Nodes(&[]) });
//! let mut connects = 0;
//! while let Some(out) = cluster.poll_output() {
//!     if let Output::Request { request: Request::Connect { .. }, .. } = out { connects += 1 }
//! }
//! assert_eq!(connects, 2);
//! # Ok::<(), muster_core::AddTopologyError>(())
//! ```

mod aws;
mod context;
pub mod dns;
pub mod dns_poll;
pub mod ec2;
pub mod ecs;
pub mod epmd;
mod epmd_names;
pub mod erlang_hosts;
pub mod etcd;
pub mod gossip;
mod http_call;
mod http_stream;
pub mod kubernetes;
pub mod kubernetes_dns;
pub mod kubernetes_dns_srv;
pub mod local_epmd;
mod periodic;
pub mod postgres;
pub mod rancher;
mod registry;
mod secret;
mod unnamed;

use std::net::SocketAddr;

pub use context::{
    Context, ExchangeId, READ_TIMEOUT, ReadId, Reply, Round, SocketEvent, SocketId, StreamEvent,
    StreamId,
};
pub use periodic::Periodic;
pub use registry::{Builder, Environment, Registry, libcluster_alias};

use crate::config::Value;
use crate::reason::Failure;
use crate::time::Instant;

/// A discovery strategy: a deterministic state machine that finds nodes.
///
/// The cluster calls [`start`](Strategy::start) once, then
/// [`handle_timeout`](Strategy::handle_timeout) whenever `now` has reached
/// [`poll_timeout`](Strategy::poll_timeout) (spurious calls must be no-ops), and the
/// `handle_*` method of each kind of request the strategy made through its [`Context`].
pub trait Strategy: Send + 'static {
    /// The strategy's name in configuration files, e.g. `"epmd"`.
    fn kind(&self) -> &'static str;

    /// Called once when the topology is added. By default it calls
    /// [`handle_timeout`](Strategy::handle_timeout), so that a [`Periodic`] poll starts at
    /// once.
    fn start(&mut self, now: Instant, cx: &mut Context<'_>) {
        self.handle_timeout(now, cx);
    }

    /// Called when `now` has reached the time [`poll_timeout`](Strategy::poll_timeout) gave,
    /// or at any other time (then it must do nothing).
    fn handle_timeout(&mut self, now: Instant, cx: &mut Context<'_>);

    /// The outcome of a [`Context::read_file`]: the whole file, or why not.
    fn handle_file(
        &mut self,
        now: Instant,
        read: ReadId,
        result: Result<&[u8], &Failure>,
        cx: &mut Context<'_>,
    ) {
        let _ = (now, read, result, cx);
    }

    /// What came back on a [`Context::exchange`]: chunks of the reply, then how it ended.
    fn handle_exchange(
        &mut self,
        now: Instant,
        exchange: ExchangeId,
        reply: Reply<'_>,
        cx: &mut Context<'_>,
    ) {
        let _ = (now, exchange, reply, cx);
    }

    /// What became of a stream opened with [`Context::open_stream`]: opened, data, closed or
    /// failed.
    fn handle_stream(
        &mut self,
        now: Instant,
        stream: StreamId,
        event: StreamEvent<'_>,
        cx: &mut Context<'_>,
    ) {
        let _ = (now, stream, event, cx);
    }

    /// The cluster is leaving: a last word before the topology goes — a goodbye written on
    /// a stream (queued writes are flushed before the stream closes), a lease revoked with
    /// one last [`Context::exchange`] (the cluster waits for it, within its deadline). Nothing
    /// more reaches the strategy afterwards. By default, nothing.
    fn leave(&mut self, now: Instant, cx: &mut Context<'_>) {
        let _ = (now, cx);
    }

    /// What became of a socket opened with [`Context::open_udp`]: opened, failed to open, or
    /// a send on it failed.
    fn handle_socket(
        &mut self,
        now: Instant,
        socket: SocketId,
        event: SocketEvent<'_>,
        cx: &mut Context<'_>,
    ) {
        let _ = (now, socket, event, cx);
    }

    /// A datagram arrived on a socket opened with [`Context::open_udp`]. `data` is borrowed
    /// for the call: validate it before anything that allocates.
    fn handle_datagram(
        &mut self,
        now: Instant,
        socket: SocketId,
        from: SocketAddr,
        data: &[u8],
        cx: &mut Context<'_>,
    ) {
        let _ = (now, socket, from, data, cx);
    }

    /// The next time the strategy needs [`handle_timeout`](Strategy::handle_timeout), if any.
    fn poll_timeout(&self) -> Option<Instant>;

    /// Whether failed connects to this topology's nodes are retried (with backoff). True for
    /// every strategy but a static list without a reconnect interval, which connects once.
    fn retries(&self) -> bool {
        true
    }

    /// The strategy's configuration with every default filled in, for `muster check`.
    fn describe(&self) -> Vec<(String, Value)> {
        Vec::new()
    }
}
