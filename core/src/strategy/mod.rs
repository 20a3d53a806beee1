//! Discovery strategies: the [`Strategy`] trait, the [`Context`] a strategy acts through, and
//! the [`Registry`] that builds strategies from configuration.
//!
//! A strategy is a deterministic state machine. It never performs I/O: it asks for it with
//! [`Context::request`] and gets the answer in [`Strategy::handle_answer`]. It reports what it
//! found in one of two ways:
//!
//! - **additively**, node by node, with [`Context::found`] (static lists, gossip): nodes are
//!   never lost unless the strategy calls [`Context::lose`];
//! - **as a whole set** per poll, with [`Context::round`] (DNS, Kubernetes, ...): nodes absent
//!   from a committed round are lost, and a failed poll, reported with
//!   [`Context::discovery_failed`], never commits a round, so the last good set stays.
//!
//! The built-in strategies use exactly this interface; a user's strategy in their own crate
//! is a peer of them.
//!
//! # Writing a strategy
//!
//! This one reads node names, one per line, from a file on every poll:
//!
//! ```
//! use std::time::Duration;
//! use muster_core::strategy::{Context, Strategy};
//! use muster_core::{Answer, Cluster, ClusterConfig, ConnectPolicy, Input, Instant, Output,
//!                   Request, Token};
//!
//! struct NodesFile { path: String, every: Duration, next_poll: Option<Instant>, reading: Option<Token> }
//!
//! impl Strategy for NodesFile {
//!     fn kind(&self) -> &'static str { "nodes_file" }
//!     fn start(&mut self, now: Instant, cx: &mut Context<'_>) { self.poll(now, cx) }
//!     fn handle_timeout(&mut self, now: Instant, cx: &mut Context<'_>) {
//!         if self.next_poll.is_some_and(|t| t <= now) { self.poll(now, cx) }
//!     }
//!     fn handle_answer(&mut self, _now: Instant, token: Token, answer: Answer<'_>,
//!                      cx: &mut Context<'_>) {
//!         if self.reading != Some(token) { return }
//!         self.reading = None;
//!         match answer {
//!             Answer::Data(bytes) => {
//!                 let text = String::from_utf8_lossy(bytes);
//!                 let mut round = cx.round();
//!                 for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
//!                     if let Err(e) = round.add(line, None) {
//!                         // Report, and keep the last good set: do not commit.
//!                         drop(round);
//!                         cx.discovery_failed(format!("{line:?}: {e}"));
//!                         return;
//!                     }
//!                 }
//!                 round.commit();
//!             }
//!             Answer::Failed(why) => cx.discovery_failed(format!("{}: {why}", self.path)),
//!             _ => cx.discovery_failed(format!("{}: no data", self.path)),
//!         }
//!     }
//!     fn poll_timeout(&self) -> Option<Instant> { self.next_poll }
//! }
//!
//! impl NodesFile {
//!     fn poll(&mut self, now: Instant, cx: &mut Context<'_>) {
//!         self.reading = Some(cx.request(Request::ReadFile { path: self.path.clone() }));
//!         self.next_poll = Some(now + self.every);
//!     }
//! }
//!
//! // Drive it by hand, as an adapter would.
//! let mut cluster = Cluster::new(ClusterConfig::new(), [0; 32]);
//! let strategy = NodesFile { path: "nodes.txt".into(), every: Duration::from_secs(5),
//!                            next_poll: None, reading: None };
//! let now = Instant::ZERO;
//! cluster.add_topology(now, "files", Box::new(strategy), ConnectPolicy::default())?;
//! let Some(Output::Request { token, request: Request::ReadFile { .. } }) = cluster.poll_output()
//!     else { panic!("expected a read") };
//! cluster.handle_input(now, Input::Answer { token, answer: Answer::Data(b"a@host1\nb@host2\n") });
//! // Before connecting, the cluster asks the connector what is connected already.
//! let mut list = None;
//! while let Some(out) = cluster.poll_output() {
//!     if let Output::Request { token, request: Request::ListNodes } = out { list = Some(token) }
//! }
//! cluster.handle_input(now, Input::Answer { token: list.unwrap(), answer: Answer::Nodes(&[]) });
//! let mut connects = 0;
//! while let Some(out) = cluster.poll_output() {
//!     if let Output::Request { request: Request::Connect { .. }, .. } = out { connects += 1 }
//! }
//! assert_eq!(connects, 2);
//! # Ok::<(), muster_core::ConfigError>(())
//! ```

pub mod dns_poll;
pub mod dns_poller;
pub mod epmd;
mod epmd_names;
pub mod erlang_hosts;
pub mod gossip;
mod http_call;
pub mod kubernetes;
pub mod kubernetes_dns;
pub mod kubernetes_dns_srv;
pub mod local_epmd;
pub mod rancher;

use std::net::SocketAddr;

use crate::config::{ConfigError, Options, Problem, Value};
use crate::event::Event;
use crate::io::{Answer, Request, Token};
use crate::node::{Node, NodeName, NodeNameError};
use crate::reconcile::{Core, Pending};
use crate::rng::Rng;
use crate::time::Instant;

/// A discovery strategy: a deterministic state machine that finds nodes.
///
/// The cluster calls [`start`](Strategy::start) once, then
/// [`handle_timeout`](Strategy::handle_timeout) whenever `now` has reached
/// [`poll_timeout`](Strategy::poll_timeout) (spurious calls must be no-ops), and
/// [`handle_answer`](Strategy::handle_answer) for every answer to a request the strategy made.
pub trait Strategy: Send + 'static {
    /// The strategy's name in configuration files, e.g. `"epmd"`.
    fn kind(&self) -> &'static str;

    /// Called once when the topology is added.
    fn start(&mut self, now: Instant, cx: &mut Context<'_>);

    /// Called when `now` has reached the time [`poll_timeout`](Strategy::poll_timeout) gave,
    /// or at any other time (then it must do nothing).
    fn handle_timeout(&mut self, now: Instant, cx: &mut Context<'_>);

    /// An answer to a request this strategy made through [`Context::request`].
    fn handle_answer(
        &mut self,
        now: Instant,
        token: Token,
        answer: Answer<'_>,
        cx: &mut Context<'_>,
    ) {
        let _ = (now, token, answer, cx);
    }

    /// A datagram arrived on a UDP socket this strategy opened with
    /// [`Request::OpenUdp`]. `data` is borrowed for the call:
    /// validate it before anything that allocates.
    fn handle_datagram(
        &mut self,
        now: Instant,
        socket: Token,
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

/// What a strategy acts through: requests, discoveries, failures, randomness.
pub struct Context<'a> {
    pub(crate) core: &'a mut Core,
    pub(crate) topology: u8,
    pub(crate) now: Instant,
}

impl<'a> Context<'a> {
    /// The time of the call.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The name of the topology this strategy serves.
    pub fn topology(&self) -> String {
        self.core.topo_name(self.topology).to_string()
    }

    /// This node's own name, if the cluster was given one.
    pub fn this_node(&self) -> Option<&NodeName> {
        self.core.this_node.as_ref()
    }

    /// The cluster's deterministic random generator.
    pub fn rng(&mut self) -> &mut Rng {
        &mut self.core.rng
    }

    /// Asks the adapter for I/O; the answer comes to [`Strategy::handle_answer`] with the
    /// returned token (datagrams on an opened socket to [`Strategy::handle_datagram`]).
    /// Sends and closes get no answer.
    pub fn request(&mut self, request: Request) -> Token {
        match request {
            Request::SendDatagram { .. } | Request::Cancel { .. } => {
                self.core.request_untracked(request)
            }
            Request::CloseUdp { socket } => {
                self.core.close_socket(socket);
                self.core.request_untracked(request)
            }
            Request::OpenUdp(_) => {
                let pending = Pending::Strategy {
                    topology: self.topology,
                    streaming: false,
                };
                let token = self.core.request(pending, request);
                self.core.open_socket(token, self.topology);
                token
            }
            other => {
                let streaming = matches!(other, Request::Exchange(_));
                let pending = Pending::Strategy {
                    topology: self.topology,
                    streaming,
                };
                self.core.request(pending, other)
            }
        }
    }

    /// The Unix time now (for timestamps that other hosts check), if the adapter provided a
    /// wall clock with [`Cluster::set_unix_time`](crate::Cluster::set_unix_time).
    pub fn unix_time(&self) -> Option<core::time::Duration> {
        self.core.unix_time(self.now)
    }

    /// Forgets a socket whose opening failed, so that nothing is routed to it.
    pub fn forget_socket(&mut self, socket: Token) {
        self.core.close_socket(socket);
    }

    /// Stops waiting for `token`: later answers to it are dropped and counted as stale, and
    /// the adapter is told it may stop the request ([`Request::Cancel`]).
    pub fn cancel(&mut self, token: Token) {
        if self.core.forget_token(token) {
            self.core.request_untracked(Request::Cancel { token });
        }
    }

    /// Adds a node to this topology's discovered set (static and gossip strategies). This
    /// node's own name is skipped. Only a name the cluster has not seen is validated (and
    /// allocated).
    pub fn found(&mut self, name: &str, addr: Option<SocketAddr>) -> Result<(), NodeNameError> {
        if self.core.is_self(name) {
            self.core.metrics.self_skipped += 1;
            return Ok(());
        }
        let i = self.core.intern(name, addr)?;
        self.core.discover(self.topology, i);
        Ok(())
    }

    /// [`found`](Context::found) for an already validated node.
    pub fn found_node(&mut self, node: &Node) {
        if self.core.is_self(node.name.as_str()) {
            self.core.metrics.self_skipped += 1;
            return;
        }
        let i = self.core.intern_node(node);
        self.core.discover(self.topology, i);
    }

    /// Removes a node from this topology's discovered set (e.g. gossip that expired). Returns
    /// whether it was there.
    pub fn lose(&mut self, name: &str) -> bool {
        let Some(i) = self.core.lookup(name) else {
            return false;
        };
        let before = self.core.metrics.lost;
        self.core.lose(self.now, self.topology, i);
        self.core.metrics.lost != before
    }

    /// Starts a discovery round: the nodes added to it and committed become this topology's
    /// whole discovered set, and nodes not in it are lost. Dropping the round without
    /// committing it changes nothing.
    pub fn round(&mut self) -> Round<'_, 'a> {
        let id = self.core.begin_round();
        Round {
            cx: self,
            id,
            committed: false,
        }
    }

    /// Reports a failed discovery attempt. The topology keeps its last good set.
    pub fn discovery_failed(&mut self, reason: impl Into<String>) {
        self.core.metrics.discovery_failed += 1;
        let topology = self.core.topo_name(self.topology);
        self.core.emit(Event::DiscoveryFailed {
            topology,
            reason: reason.into(),
        });
    }

    /// Reports bad input from the network that was dropped.
    pub fn rejected(&mut self, from: Option<SocketAddr>, reason: impl Into<String>) {
        self.core.metrics.rejected += 1;
        let topology = self.core.topo_name(self.topology);
        self.core.emit(Event::Rejected {
            topology,
            from,
            reason: reason.into(),
        });
    }

    /// Counts bad input from the network without reporting it (a strategy rate-limits its
    /// reports, and counts every rejection).
    pub fn count_rejected(&mut self) {
        self.core.metrics.rejected += 1;
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
    committed: bool,
}

impl Round<'_, '_> {
    /// Adds a node to the round. This node's own name is skipped.
    pub fn add(&mut self, name: &str, addr: Option<SocketAddr>) -> Result<(), NodeNameError> {
        if self.cx.core.is_self(name) {
            self.cx.core.metrics.self_skipped += 1;
            return Ok(());
        }
        let i = self.cx.core.intern(name, addr)?;
        self.cx.core.scratch.push(i);
        Ok(())
    }

    /// [`add`](Round::add) for an already validated node.
    pub fn add_node(&mut self, node: &Node) {
        if self.cx.core.is_self(node.name.as_str()) {
            self.cx.core.metrics.self_skipped += 1;
            return;
        }
        let i = self.cx.core.intern_node(node);
        self.cx.core.scratch.push(i);
    }

    /// Makes the round the topology's discovered set and reconciles against the connector's
    /// list of connected nodes.
    pub fn commit(mut self) {
        self.committed = true;
        self.cx
            .core
            .commit_round(self.cx.now, self.cx.topology, self.id);
    }
}

impl Drop for Round<'_, '_> {
    fn drop(&mut self) {
        if !self.committed {
            self.cx.core.abandon_round();
        }
    }
}

/// Builds a strategy from its options and the process environment.
pub type Builder = fn(&mut Options<'_>, &Environment) -> Result<Box<dyn Strategy>, ConfigError>;

/// The environment variables a strategy may consult when it is built (`CLUSTER_DOMAIN`,
/// `HOME`, `ERL_EPMD_PORT`, ...). The core never reads the process environment itself: the
/// front end takes a snapshot and hands it over, so builds are reproducible and testable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Environment {
    vars: std::collections::BTreeMap<String, String>,
}

impl Environment {
    /// An empty environment.
    pub fn new() -> Self {
        Environment::default()
    }

    /// An environment holding `vars` (an adapter or the tool passes the process's own).
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        Environment {
            vars: vars.into_iter().collect(),
        }
    }

    /// Sets one variable.
    pub fn set(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.vars.insert(name.into(), value.into());
        self
    }

    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }
}

/// The strategies a configuration can name, by name, and the environment they are built in.
#[derive(Clone)]
pub struct Registry {
    builders: Vec<(&'static str, Builder)>,
    env: Environment,
}

impl core::fmt::Debug for Registry {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_list()
            .entries(self.builders.iter().map(|(n, _)| n))
            .finish()
    }
}

impl Default for Registry {
    fn default() -> Self {
        Registry::builtin()
    }
}

impl Registry {
    /// The built-in strategies, in an empty environment.
    pub fn builtin() -> Self {
        Registry {
            builders: vec![
                ("epmd", epmd::Epmd::build),
                ("local_epmd", local_epmd::LocalEpmd::build),
                ("erlang_hosts", erlang_hosts::ErlangHosts::build),
                ("gossip", gossip::Gossip::build),
                ("dns_poll", dns_poll::DnsPoll::build),
                ("kubernetes_dns", kubernetes_dns::KubernetesDns::build),
                (
                    "kubernetes_dns_srv",
                    kubernetes_dns_srv::KubernetesDnsSrv::build,
                ),
                ("kubernetes", kubernetes::Kubernetes::build),
                ("rancher", rancher::Rancher::build),
            ],
            env: Environment::new(),
        }
    }

    /// Builds strategies in `env` from now on.
    pub fn with_env(mut self, env: Environment) -> Self {
        self.env = env;
        self
    }

    /// The environment strategies are built in.
    pub fn env(&self) -> &Environment {
        &self.env
    }

    /// Adds (or replaces) a strategy under `name`.
    pub fn register(&mut self, name: &'static str, builder: Builder) -> &mut Self {
        self.builders.retain(|(n, _)| *n != name);
        self.builders.push((name, builder));
        self
    }

    /// The names this registry knows.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.builders.iter().map(|(n, _)| *n)
    }

    /// Builds the strategy `kind` from `options`. Unknown options are left for the caller's
    /// [`Options::finish`].
    pub fn build(
        &self,
        kind: &str,
        options: &mut Options<'_>,
    ) -> Result<Box<dyn Strategy>, ConfigError> {
        match self.builders.iter().find(|(n, _)| *n == kind) {
            Some((_, b)) => b(options, &self.env),
            None => {
                let known: Vec<&str> = self.names().collect();
                Err(ConfigError::new(
                    options.path().to_owned(),
                    Problem::UnknownStrategy(kind.to_owned(), known.join(", ")),
                ))
            }
        }
    }
}
