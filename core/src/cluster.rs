//! The cluster: several topologies, one reconciler, one queue of outputs.

use core::time::Duration;

use crate::config::{ConfigError, Problem};
use crate::dist::{DistConfig, DistOutput, Distribution};
use crate::io::{Answer, Input, Output, Request, Token};
use crate::metrics::Metrics;
use crate::node::NodeName;
use crate::policy::ConnectPolicy;
use crate::reason::Failure;
use crate::reconcile::{Limits, Reconciler, unexpected};
use crate::requests::Pending;
use crate::rng::Rng;
use crate::strategy::{
    Context, ExchangeId, ReadId, Reply, SocketEvent, SocketId, Strategy, StreamEvent, StreamId,
};
use crate::time::{Instant, earliest};
use crate::topologies::MAX_TOPOLOGIES;
use crate::topology::{TopologyId, TopologySpec};

/// Why a topology could not be added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddTopologyError {
    /// The topology is wrong: its name is empty or taken, or the cluster holds 64 already.
    #[error(transparent)]
    Invalid(#[from] ConfigError),
    /// The cluster has left, is leaving, or has stopped: it takes no more topologies.
    #[error("the cluster has stopped")]
    Stopped,
}

/// Settings of a whole cluster.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClusterConfig {
    /// This node's name: never connected to, skipped wherever a strategy finds it.
    pub this_node: Option<NodeName>,
    /// The most connect and disconnect requests in flight at once. Default 128.
    pub max_in_flight: usize,
    /// The most events waiting in the output queue; more are dropped and counted in
    /// `Metrics::events_dropped`. Default 65,536.
    pub max_queued_events: usize,
    /// How long to wait for the connector's list of connected nodes. Default 5 s.
    pub list_timeout: Duration,
    /// Discover only: never ask the connector to connect, disconnect or list anything.
    pub discovery_only: bool,
    /// Be an Erlang node: the cluster connects, disconnects and lists nodes itself over
    /// Erlang distribution, through the adapter's streams, instead of asking a connector.
    pub erlang: Option<DistConfig>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            this_node: None,
            max_in_flight: 128,
            max_queued_events: 65_536,
            list_timeout: Duration::from_secs(5),
            discovery_only: false,
            erlang: None,
        }
    }
}

impl ClusterConfig {
    /// The defaults.
    pub fn new() -> Self {
        ClusterConfig::default()
    }

    /// Sets this node's name.
    pub fn this_node(mut self, name: NodeName) -> Self {
        self.this_node = Some(name);
        self
    }

    /// Sets the in-flight limit (at least 1).
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n.max(1);
        self
    }

    /// Sets the event queue's bound.
    pub fn max_queued_events(mut self, n: usize) -> Self {
        self.max_queued_events = n;
        self
    }

    /// Sets the deadline for the connector's list.
    pub fn list_timeout(mut self, d: Duration) -> Self {
        self.list_timeout = d;
        self
    }

    /// Discover only; see [`ClusterConfig::discovery_only`].
    pub fn discovery_only(mut self, yes: bool) -> Self {
        self.discovery_only = yes;
        self
    }

    /// Be the Erlang node `config` says; see [`ClusterConfig::erlang`]. The adapter then
    /// needs no connector of its own: it only moves the bytes of the streams the core opens.
    pub fn erlang(mut self, config: DistConfig) -> Self {
        self.erlang = Some(config);
        self
    }
}

/// A set of topologies and the reconciler that connects what they discover: the sans-IO core
/// of muster.
///
/// # Driving a cluster
///
/// An adapter owns the sockets, the clock and the connector, and runs this loop:
///
/// ```text
/// cluster.handle_input(now, input)   // an answer to a request, or a connector notice
/// cluster.handle_timeout(now)        // when `now` reaches poll_timeout()
/// while let Some(out) = cluster.poll_output() { execute(out) }
/// let wake_at = cluster.poll_timeout();
/// ```
///
/// **The drain rule.** After every call that changes the cluster ([`new`](Cluster::new)
/// itself when it queued outputs — an Erlang node asks to listen at once —, `handle_input`,
/// `handle_timeout`, `add_topology`, `remove_topology`, `leave`), drain
/// [`poll_output`](Cluster::poll_output) until it returns `None`, *then* read
/// [`poll_timeout`](Cluster::poll_timeout): only those calls change it. Calling
/// `handle_timeout` early, or twice, is harmless: it does only what is due.
///
/// **Leaving** is the core's too, as quinn's `close` and `is_drained`: [`leave`](Cluster::leave)
/// removes every topology, disconnects every node and connects nothing more; the adapter
/// keeps driving the cluster until [`is_left`](Cluster::is_left), which every request's own
/// deadline guarantees.
///
/// Time and randomness are inputs: `now` comes with every call (it may repeat, and a `now`
/// older than the last one is treated as no time passing), and the generator is seeded at
/// construction. The same seed and the same inputs give the same outputs, byte for byte.
///
/// Faults of the outside world (a refused connect, a failed poll, a malformed packet) never
/// return an error and never panic: they become [events](crate::Event) and count in
/// [`Metrics`]. Errors are for API misuse and bad configuration only.
pub struct Cluster {
    core: Reconciler,
    /// Each topology's strategy, by topology slot.
    strategies: Vec<Option<Box<dyn Strategy>>>,
    last_now: Instant,
    /// This node in Erlang distribution, when the cluster is its own connector.
    dist: Option<Distribution>,
}

impl core::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Cluster")
            .field("this_node", &self.core.this_node())
            .field("topologies", &self.topology_names().collect::<Vec<_>>())
            .field("metrics", &self.core.metrics())
            .finish()
    }
}

impl Cluster {
    /// An empty cluster. `seed` feeds every random choice it makes; adapters take it from the
    /// operating system, tests and simulations fix it.
    pub fn new(config: ClusterConfig, seed: [u8; 32]) -> Self {
        let limits = Limits {
            max_in_flight: config.max_in_flight.max(1),
            max_queued_events: config.max_queued_events,
            list_timeout: config.list_timeout,
            discovery_only: config.discovery_only,
        };
        let mut rng = Rng::from_seed(seed);
        let dist = config
            .erlang
            .map(|c| Distribution::new(c, rng.fork(b"erlang distribution")));
        let mut core = Reconciler::new(config.this_node, limits, rng);
        core.set_reachable(dist.is_none());
        Cluster {
            core,
            strategies: Vec::new(),
            last_now: Instant::ZERO,
            dist,
        }
    }

    fn clock(&mut self, now: Instant) -> Instant {
        self.last_now = self.last_now.max(now);
        self.last_now
    }

    /// Adds a topology and starts its strategy. Fails if the name is taken or empty, if the
    /// cluster already has 64 topologies, or if it is leaving.
    pub fn add_topology(
        &mut self,
        now: Instant,
        name: &str,
        strategy: Box<dyn Strategy>,
        policy: ConnectPolicy,
    ) -> Result<TopologyId, AddTopologyError> {
        if self.core.is_leaving() {
            return Err(AddTopologyError::Stopped);
        }
        let key = format!("topologies.{name}");
        if name.is_empty() {
            return Err(ConfigError::invalid(key, "a topology needs a name").into());
        }
        if self.topology_names().any(|n| n == name) {
            return Err(ConfigError::invalid(key, "a topology of that name exists").into());
        }
        policy.check(&format!("{key}.connect"))?;
        let t = match self.core.topologies().free_slot() {
            Some(t) => t,
            None => {
                return Err(ConfigError::new(
                    key,
                    Problem::Invalid(format!(
                        "a cluster holds at most {MAX_TOPOLOGIES} topologies"
                    )),
                )
                .into());
            }
        };
        let now = self.clock(now);
        self.core.add_topology(t, name, policy, strategy.retries());
        let index = usize::from(t);
        if self.strategies.len() <= index {
            self.strategies.resize_with(index + 1, || None);
        }
        self.strategies[index] = Some(strategy);
        self.with_strategy(t, now, |s, now, cx| s.start(now, cx));
        self.core.flush(now);
        Ok(TopologyId(t))
    }

    /// [`add_topology`](Cluster::add_topology) from a [`TopologySpec`].
    pub fn add(
        &mut self,
        now: Instant,
        spec: TopologySpec,
    ) -> Result<TopologyId, AddTopologyError> {
        self.add_topology(now, &spec.name, spec.strategy, spec.policy)
    }

    /// Removes a topology. Its nodes are lost to it (with `lost` events), and those no other
    /// topology wants are disconnected, whatever its `prune`. Returns whether it existed.
    pub fn remove_topology(&mut self, now: Instant, id: TopologyId) -> bool {
        let now = self.clock(now);
        let removed = self.drop_topology(id);
        self.core.flush(now);
        removed
    }

    fn drop_topology(&mut self, id: TopologyId) -> bool {
        let Some(slot) = self.strategies.get_mut(id.index()) else {
            return false;
        };
        if slot.take().is_none() {
            return false;
        }
        self.core.forget_topology_tokens(id.0);
        self.core.close_topology_sockets(id.0);
        self.core.drop_topology(id.0);
        true
    }

    fn with_strategy(
        &mut self,
        t: u8,
        now: Instant,
        f: impl FnOnce(&mut dyn Strategy, Instant, &mut Context<'_>),
    ) {
        let Some(Some(strategy)) = self.strategies.get_mut(usize::from(t)) else {
            return;
        };
        let mut cx = Context::new(&mut self.core, t, now);
        f(strategy.as_mut(), now, &mut cx);
    }

    /// Feeds an answer or a connector notice. Never fails: an answer nobody waits for is
    /// counted in `Metrics::stale_answers`, a name the cluster does not know is ignored.
    pub fn handle_input(&mut self, now: Instant, input: Input<'_>) {
        let now = self.clock(now);
        if let (Input::Answer { token, answer }, Some(d)) = (&input, &mut self.dist)
            && Distribution::owns(*token)
        {
            d.handle_answer(now, *token, *answer);
            return;
        }
        match input {
            Input::Answer { token, answer } => self.core_answer(now, token, answer),
            Input::Datagram { socket, from, data } => match self.core.socket_topology(socket) {
                Some(topology) => self.with_strategy(topology, now, |s, now, cx| {
                    s.handle_datagram(now, SocketId(socket), from, data, cx)
                }),
                None => self.core.count_stale(),
            },
            Input::NodeDown { node, reason } => self.core.node_down(now, node, reason),
            Input::NodeUp { node } => self.core.node_up(now, node),
        }
        self.core.flush(now);
    }

    /// An answer to one of the core's own requests (the reconciler's or a strategy's).
    fn core_answer(&mut self, now: Instant, token: Token, answer: Answer<'_>) {
        // A stream's opening and data, like an exchange's data, are followed by more.
        let more_due = matches!(answer, Answer::Data(_) | Answer::Opened(_));
        match self.core.take_pending(token, more_due) {
            // An answer on an open socket's token: a send on it failed.
            None => match (self.core.socket_topology(token), answer) {
                (Some(topology), Answer::Failed(why)) => {
                    self.with_strategy(topology, now, |s, now, cx| {
                        s.handle_socket(now, SocketId(token), SocketEvent::SendFailed(why), cx)
                    })
                }
                _ => self.core.count_stale(),
            },
            Some(Pending::Connect(i)) => self.core.connect_answer(now, i, token, answer),
            Some(Pending::Disconnect(i)) => self.core.disconnect_answer(now, i, token, answer),
            Some(Pending::List) => {
                let nodes = match answer {
                    Answer::Nodes(n) => Some(n),
                    _ => None,
                };
                self.core.list_done(now, token, nodes);
            }
            Some(Pending::Read(t)) => {
                let failure;
                let result = match answer {
                    Answer::Data(d) => Ok(d),
                    Answer::Failed(why) => Err(why),
                    Answer::TimedOut => {
                        failure = Failure::timed_out("the read did not complete in time");
                        Err(&failure)
                    }
                    other => {
                        failure = unexpected(other);
                        Err(&failure)
                    }
                };
                self.with_strategy(t, now, |s, now, cx| {
                    s.handle_file(now, ReadId(token), result, cx)
                });
            }
            Some(Pending::Exchange(t)) => {
                let failure;
                let reply = match answer {
                    Answer::Data(d) => Reply::Data(d),
                    Answer::Closed => Reply::Closed,
                    Answer::Failed(why) => Reply::Failed(why),
                    Answer::TimedOut => Reply::TimedOut,
                    other => {
                        // Whatever the adapter meant, this exchange is over.
                        self.core.request_untracked(Request::Cancel { token });
                        failure = unexpected(other);
                        Reply::Failed(&failure)
                    }
                };
                self.with_strategy(t, now, |s, now, cx| {
                    s.handle_exchange(now, ExchangeId(token), reply, cx)
                });
            }
            Some(Pending::Stream(t)) => {
                let failure;
                let event = match answer {
                    Answer::Opened(peer) => StreamEvent::Opened(peer),
                    Answer::Data(d) => StreamEvent::Data(d),
                    Answer::Closed => StreamEvent::Closed,
                    Answer::Failed(why) => StreamEvent::Failed(why),
                    Answer::TimedOut => {
                        failure = Failure::timed_out("the stream did not open in time");
                        StreamEvent::Failed(&failure)
                    }
                    other => {
                        self.core.request_untracked(Request::Cancel { token });
                        failure = unexpected(other);
                        StreamEvent::Failed(&failure)
                    }
                };
                self.with_strategy(t, now, |s, now, cx| {
                    s.handle_stream(now, StreamId(token), event, cx)
                });
            }
            // What a strategy asked for as it left: nobody is there to hear how it went.
            Some(Pending::Farewell) => {}
            Some(Pending::Socket(t)) => {
                let failure;
                let event = match answer {
                    Answer::Opened(local) => SocketEvent::Opened(local),
                    Answer::Failed(why) => SocketEvent::OpenFailed(why),
                    Answer::TimedOut => {
                        failure = Failure::timed_out("the socket did not open in time");
                        SocketEvent::OpenFailed(&failure)
                    }
                    other => {
                        failure = unexpected(other);
                        SocketEvent::OpenFailed(&failure)
                    }
                };
                if let SocketEvent::OpenFailed(_) = event {
                    // A socket that failed to open is not a socket.
                    self.core.close_socket(token);
                }
                self.with_strategy(t, now, |s, now, cx| {
                    s.handle_socket(now, SocketId(token), event, cx)
                });
            }
        }
    }

    /// Runs whatever is due at `now`: request deadlines, retries, grace periods, strategy
    /// timers. Calling it early does nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.clock(now);
        if let Some(d) = &mut self.dist
            && d.poll_timeout().is_some_and(|at| at <= now)
        {
            d.handle_timeout(now);
        }
        self.core.handle_timeout(now);
        for t in 0..self.strategies.len() {
            let due = match &self.strategies[t] {
                Some(strategy) => strategy.poll_timeout().is_some_and(|at| at <= now),
                None => false,
            };
            if due {
                self.with_strategy(t as u8, now, |s, now, cx| s.handle_timeout(now, cx));
            }
        }
        self.core.flush(now);
    }

    /// The next output: a request to execute or an event to deliver. Drain until `None` after
    /// every call that changes the cluster.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        if self.dist.is_none() {
            return self.core.poll_output();
        }
        let now = self.last_now;
        loop {
            // The distribution's own outputs first: its answers may let the core go on.
            if let Some(o) = self.dist.as_mut().and_then(Distribution::poll_output) {
                match o {
                    DistOutput::Request(token, request) => {
                        return Some(Output::Request { token, request });
                    }
                    DistOutput::Answer(token, a) => {
                        self.core_answer(now, token, a.borrow());
                    }
                    DistOutput::Up(node) => self.core.node_up(now, node.as_str()),
                    DistOutput::Down(node, why) => self.core.node_down(now, node.as_str(), &why),
                    DistOutput::Inbound {
                        from,
                        reason,
                        report,
                    } => self.core.inbound_failed(from, reason, report),
                    DistOutput::AcceptFailed { reason, report } => {
                        self.core.accept_failed(reason, report)
                    }
                    DistOutput::Busy(reason) => self.core.dist_busy(reason),
                    DistOutput::Reachable(yes) => {
                        self.core.set_reachable(yes);
                        if yes {
                            // Strategies that waited to announce this node go on now.
                            for t in 0..self.strategies.len() {
                                self.with_strategy(t as u8, now, |s, now, cx| {
                                    s.handle_timeout(now, cx)
                                });
                            }
                        }
                    }
                }
                self.core.flush(now);
                continue;
            }
            let Some(out) = self.core.poll_output() else {
                // Leaving, with every disconnect done: leave distribution too.
                if let Some(d) = self.dist.as_mut()
                    && self.core.is_leaving()
                    && self.core.is_idle()
                    && !d.is_stopped()
                {
                    d.shutdown();
                    continue;
                }
                return None;
            };
            let Some(dist) = self.dist.as_mut() else {
                return Some(out);
            };
            match out {
                Output::Request {
                    token,
                    request: Request::Connect { node, deadline },
                } => dist.connect(now, token, node, deadline),
                Output::Request {
                    token,
                    request: Request::Disconnect { node, .. },
                } => dist.disconnect(token, &node),
                Output::Request {
                    token,
                    request: Request::ListNodes { .. },
                } => dist.list(token),
                other => return Some(other),
            }
        }
    }

    /// When [`handle_timeout`](Cluster::handle_timeout) is next needed, if ever. Read it after
    /// draining [`poll_output`](Cluster::poll_output); only the calls that change the cluster
    /// change it.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut at = self.core.poll_timeout();
        if let Some(d) = &self.dist {
            at = earliest(at, d.poll_timeout());
        }
        for strategy in self.strategies.iter().flatten() {
            at = earliest(at, strategy.poll_timeout());
        }
        at
    }

    /// Tells the cluster the wall-clock (Unix) time at `now`, for strategies that put
    /// timestamps on the wire (secure gossip). Adapters call it at start and now and then;
    /// the core extrapolates with `now` in between.
    pub fn set_unix_time(&mut self, now: Instant, since_epoch: Duration) {
        let now = self.clock(now);
        self.core.set_wall(now, since_epoch);
    }

    /// Leaves the cluster: removes every topology (their sockets closed, their requests
    /// stopped, their nodes lost), disconnects every node connected — reported as
    /// [`DisconnectReason::Leaving`](crate::DisconnectReason::Leaving) — and connects nothing
    /// more. A cluster that is an Erlang node then leaves distribution: its links, its EPMD
    /// registration and its listener are closed. Drain the outputs, and keep driving the
    /// cluster until [`is_left`](Cluster::is_left); every request has a deadline, so that
    /// comes in bounded time. Calling it again does nothing.
    pub fn leave(&mut self, now: Instant) {
        let now = self.clock(now);
        if self.core.is_leaving() {
            return;
        }
        for i in 0..self.strategies.len() {
            // A last word first (a goodbye, a lease revoked), then the topology goes.
            if let Some(Some(strategy)) = self.strategies.get_mut(i) {
                let mut cx = Context::farewell(&mut self.core, i as u8, now);
                strategy.leave(now, &mut cx);
            }
            self.drop_topology(TopologyId(i as u8));
        }
        self.core.leave();
        self.core.flush(now);
    }

    /// Whether the cluster has left: [`leave`](Cluster::leave) was called, nothing it asked
    /// for is in flight any more, and the Erlang node, if any, has left distribution. The
    /// adapter may then drop the cluster and close what is left.
    pub fn is_left(&self) -> bool {
        self.core.is_leaving()
            && self.core.is_idle()
            && self.dist.as_ref().is_none_or(Distribution::is_stopped)
    }

    /// A snapshot of the counters.
    pub fn metrics(&self) -> Metrics {
        self.core.metrics()
    }

    /// The nodes connected, as far as the cluster knows.
    pub fn members(&self) -> impl Iterator<Item = &NodeName> {
        self.core.members()
    }

    /// Increases whenever [`members`](Cluster::members) changes: publish the membership only
    /// when this moved.
    pub fn membership_version(&self) -> u64 {
        self.core.membership_version()
    }

    /// Whether `node` is connected, as far as the cluster knows.
    pub fn is_connected(&self, node: &str) -> bool {
        self.core.is_connected(node)
    }

    /// The address hint a strategy gave for `node` (the connector gets it with each
    /// connect), if the cluster knows the node and has one.
    pub fn node_addr(&self, node: &str) -> Option<std::net::SocketAddr> {
        self.core.addr_of(node)
    }

    /// Whether some topology wants `node` connected.
    pub fn is_wanted(&self, node: &str) -> bool {
        self.core.wanted_by_any(node)
    }

    /// The nodes topology `id` discovers now.
    pub fn discovered(&self, id: TopologyId) -> impl Iterator<Item = &NodeName> {
        self.core.discovered_by(id.0)
    }

    /// The topologies, with their ids.
    pub fn topologies(&self) -> impl Iterator<Item = (TopologyId, &str)> {
        self.core
            .topologies()
            .iter()
            .map(|(t, name)| (TopologyId(t), name))
    }

    fn topology_names(&self) -> impl Iterator<Item = &str> {
        self.topologies().map(|(_, n)| n)
    }

    /// This node's name, if set.
    pub fn this_node(&self) -> Option<&NodeName> {
        self.core.this_node()
    }

    /// Outputs waiting to be polled (for the simulator's bounded-queue checks).
    #[cfg(feature = "sim")]
    pub(crate) fn queued_outputs(&self) -> usize {
        self.core.queued_outputs()
    }

    /// Table slots allocated, used or free (for the simulator's memory checks).
    #[cfg(feature = "sim")]
    pub(crate) fn table_capacity(&self) -> usize {
        self.core.slot_count()
    }
}
