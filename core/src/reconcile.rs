//! The reconciler: turns what the strategies discovered and what the connector reports
//! connected into connect and disconnect requests. It owns the parts the strategies share —
//! the node table, the requests in flight, the output queue, the timers, the list protocol —
//! each behind its own narrow methods.
//!
//! Every node the cluster knows has one [`Slot`]. A slot records which topologies discover
//! the node and which want it connected (a node that left a topology's discovery stays
//! wanted while its grace period runs, or for good when the topology does not prune), its
//! connection state, its backoff, and at most one timer of each kind. Connection state is
//! the core's view; it is corrected against the connector's own list at every poll.

use core::time::Duration;
use std::net::SocketAddr;

use crate::event::{Event, TopologyName};
use crate::hash::KeyedState;
use crate::io::{Answer, Output, Request, Token};
use crate::list::Listing;
use crate::metrics::Metrics;
use crate::node::{Node, NodeName, NodeNameError};
use crate::outputs::Outputs;
use crate::policy::ConnectPolicy;
use crate::reason::{
    ConnectError, DisconnectReason, DiscoveryError, Failure, FailureKind, Rejection,
};
use crate::requests::{Pending, Requests};
use crate::rng::Rng;
use crate::table::Table;
use crate::time::{Instant, Wall, earliest};
use crate::timers::TimerTable;
use crate::topologies::Topologies;

/// A node's connection as the core sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Conn {
    Idle,
    Connecting(Token),
    Connected,
    Disconnecting(Token),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum TimerKind {
    /// The in-flight connect or disconnect passes its deadline.
    Deadline,
    /// A failed node may be tried again.
    Retry,
    /// A node's grace period after leaving discovery ends.
    Linger,
}

#[derive(Debug)]
pub(crate) struct Slot {
    pub(crate) name: NodeName,
    addr: Option<SocketAddr>,
    /// Topologies whose latest discovery includes the node.
    pub(crate) discovered: u64,
    /// Topologies that want the node connected (a superset of `discovered`).
    pub(crate) wanted: u64,
    /// The connection state, packed: `Conn` is rebuilt from these two by `conn()`.
    state: State,
    token: Token,
    /// The topology named in this node's connection events.
    owner: u8,
    /// Consecutive failed connects since the last success.
    attempts: u32,
    /// Consecutive connections that died young (before `backoff_max`): a flapping node backs
    /// off even though its connects succeed.
    flaps: u32,
    /// The list sequence number current when `conn` last changed.
    mark: u32,
    /// The last list that named the node as connected.
    listed: u32,
    /// The last discovery round that included the node.
    round: u32,
    /// When the request in flight started, or when the connection came up.
    since: Instant,
    not_before: Instant,
    /// Pending timers by `TimerKind`; `Instant::MAX` means none (a timer at MAX never fires).
    timers: [Instant; 3],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    Connecting,
    Connected,
    Disconnecting,
}

impl Slot {
    fn new(name: NodeName, addr: Option<SocketAddr>) -> Self {
        Slot {
            name,
            addr,
            discovered: 0,
            wanted: 0,
            state: State::Idle,
            token: Token(0),
            owner: 0,
            attempts: 0,
            flaps: 0,
            mark: 0,
            listed: 0,
            round: 0,
            since: Instant::ZERO,
            not_before: Instant::ZERO,
            timers: [Instant::MAX; 3],
        }
    }

    pub(crate) fn conn(&self) -> Conn {
        match self.state {
            State::Idle => Conn::Idle,
            State::Connecting => Conn::Connecting(self.token),
            State::Connected => Conn::Connected,
            State::Disconnecting => Conn::Disconnecting(self.token),
        }
    }

    fn put_conn(&mut self, c: Conn) {
        (self.state, self.token) = match c {
            Conn::Idle => (State::Idle, Token(0)),
            Conn::Connecting(t) => (State::Connecting, t),
            Conn::Connected => (State::Connected, Token(0)),
            Conn::Disconnecting(t) => (State::Disconnecting, t),
        };
    }

    fn timer(&self, kind: TimerKind) -> Option<Instant> {
        let at = self.timers[kind as usize];
        (at != Instant::MAX).then_some(at)
    }

    /// Sets a timer field, returning the old one.
    fn put_timer(&mut self, kind: TimerKind, at: Option<Instant>) -> Option<Instant> {
        let old = self.timer(kind);
        self.timers[kind as usize] = at.unwrap_or(Instant::MAX);
        old
    }
}

/// Limits and switches of the whole cluster.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub(crate) max_in_flight: usize,
    pub(crate) max_queued_events: usize,
    pub(crate) list_timeout: Duration,
    pub(crate) discovery_only: bool,
}

/// The reconciler and everything the strategies share.
pub(crate) struct Reconciler {
    this_node: Option<NodeName>,
    rng: Rng,
    limits: Limits,
    topologies: Topologies,
    metrics: Metrics,
    membership_version: u64,
    table: Table<Slot>,
    requests: Requests,
    outputs: Outputs,
    timers: TimerTable<TimerKind>,
    wall: Wall,
    listing: Listing,
    in_flight: usize,
    connected: usize,
    /// Where the last reconcile pass stopped for the in-flight limit.
    cursor: u32,
    round_seq: u32,
    /// The slots of the round being collected.
    scratch: Vec<u32>,
    refresh_wanted: bool,
    reconcile_wanted: bool,
    /// The cluster is leaving: every disconnect is for that.
    leaving: bool,
    /// Peers can connect to this node now (an Erlang node: once EPMD has registered it).
    reachable: bool,
}

impl Reconciler {
    pub(crate) fn new(this_node: Option<NodeName>, limits: Limits, mut rng: Rng) -> Self {
        let names = KeyedState::new(rng.next_u64(), rng.next_u64());
        // Tokens are ours, not the network's; their maps get keys of their own all the same.
        let tokens = KeyedState::new(rng.next_u64(), rng.next_u64());
        Reconciler {
            this_node,
            rng,
            outputs: Outputs::new(limits.max_queued_events),
            limits,
            topologies: Topologies::default(),
            metrics: Metrics::default(),
            membership_version: 0,
            table: Table::new(names),
            requests: Requests::new(tokens),
            timers: TimerTable::new(),
            wall: Wall::default(),
            listing: Listing::default(),
            in_flight: 0,
            connected: 0,
            cursor: 0,
            reachable: true,
            round_seq: 0,
            scratch: Vec::new(),
            refresh_wanted: false,
            reconcile_wanted: false,
            leaving: false,
        }
    }

    // ----- outputs ------------------------------------------------------------------------

    pub(crate) fn emit(&mut self, event: Event) {
        if !self.outputs.event(event) {
            self.metrics.events_dropped += 1;
        }
    }

    pub(crate) fn request(&mut self, pending: Pending, request: Request) -> Token {
        let token = self.requests.issue(Some(pending));
        self.outputs.request(token, request);
        token
    }

    /// Whether `token` is awaited as `what`.
    pub(crate) fn is_pending(&self, token: Token, what: Pending) -> bool {
        self.requests.is_pending(token, what)
    }

    /// A request nobody waits an answer for (datagram sends, socket closes).
    pub(crate) fn request_untracked(&mut self, request: Request) -> Token {
        let token = self.requests.issue(None);
        self.outputs.request(token, request);
        token
    }

    pub(crate) fn open_socket(&mut self, token: Token, topology: u8) {
        self.requests.open_socket(token, topology);
        self.metrics.sockets = self.requests.sockets() as u64;
    }

    pub(crate) fn socket_topology(&self, token: Token) -> Option<u8> {
        self.requests.socket_topology(token)
    }

    pub(crate) fn close_socket(&mut self, token: Token) -> bool {
        let closed = self.requests.close_socket(token);
        self.metrics.sockets = self.requests.sockets() as u64;
        closed
    }

    /// Closes every socket of topology `t` (being removed).
    pub(crate) fn close_topology_sockets(&mut self, t: u8) {
        for socket in self.requests.close_topology_sockets(t) {
            self.request_untracked(Request::CloseUdp { socket });
        }
        self.metrics.sockets = self.requests.sockets() as u64;
    }

    pub(crate) fn set_wall(&mut self, now: Instant, unix: Duration) {
        self.wall.set(now, unix);
    }

    /// Unix time at `now`, from the adapter's last reading.
    pub(crate) fn unix_time(&self, now: Instant) -> Option<Duration> {
        self.wall.at(now)
    }

    pub(crate) fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop()
    }

    #[cfg(feature = "sim")]
    pub(crate) fn queued_outputs(&self) -> usize {
        self.outputs.len()
    }

    /// What `token` was for; forgotten unless more answers are due (a chunk of a stream).
    pub(crate) fn take_pending(&mut self, token: Token, more_due: bool) -> Option<Pending> {
        self.requests.take(token, more_due)
    }

    /// Stops waiting for `token`; whether it was awaited.
    pub(crate) fn forget_token(&mut self, token: Token) -> bool {
        self.requests.forget(token)
    }

    /// Stops waiting for `token` if it is awaited as `what`; whether it was.
    pub(crate) fn forget_token_if(&mut self, token: Token, what: Pending) -> bool {
        self.requests.forget_if(token, what)
    }

    /// Whether `socket` is open for topology `t`.
    pub(crate) fn socket_ready(&self, socket: Token, t: u8) -> bool {
        self.requests.socket_ready(socket, t)
    }

    /// Forgets topology `t`'s requests, telling the adapter to stop its exchanges.
    pub(crate) fn forget_topology_tokens(&mut self, t: u8) {
        for token in self.requests.forget_topology(t) {
            self.request_untracked(Request::Cancel { token });
        }
    }

    /// An answer came that nobody waits for.
    pub(crate) fn count_stale(&mut self) {
        self.metrics.stale_answers += 1;
    }

    pub(crate) fn metrics(&self) -> Metrics {
        self.metrics
    }

    pub(crate) fn membership_version(&self) -> u64 {
        self.membership_version
    }

    // ----- topologies -----------------------------------------------------------------------

    pub(crate) fn topologies(&self) -> &Topologies {
        &self.topologies
    }

    /// Topology `t` joins, named `name`.
    pub(crate) fn add_topology(&mut self, t: u8, name: &str, policy: ConnectPolicy, retries: bool) {
        self.topologies.add(t, name, policy, retries);
    }

    /// The name of topology `t`, or of the last topology that held its slot (events about
    /// nodes it owned can outlive a removed topology).
    pub(crate) fn topo_name(&self, t: u8) -> TopologyName {
        self.topologies.name(t)
    }

    /// The name of topology `t`, borrowed.
    pub(crate) fn topo_str(&self, t: u8) -> &str {
        self.topologies.name_str(t)
    }

    pub(crate) fn this_node(&self) -> Option<&NodeName> {
        self.this_node.as_ref()
    }

    pub(crate) fn is_reachable(&self) -> bool {
        self.reachable
    }

    pub(crate) fn set_reachable(&mut self, yes: bool) {
        self.reachable = yes;
    }

    pub(crate) fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }

    fn policy(&self, t: u8) -> ConnectPolicy {
        self.topologies.policy(t)
    }

    fn retries(&self, t: u8) -> bool {
        self.topologies.retries(t)
    }

    // ----- the table -----------------------------------------------------------------------

    pub(crate) fn is_self(&self, name: &str) -> bool {
        self.this_node
            .as_ref()
            .is_some_and(|me| me.as_str() == name)
    }

    fn slot(&self, i: u32) -> Option<&Slot> {
        self.table.get(i)
    }

    fn slot_mut(&mut self, i: u32) -> Option<&mut Slot> {
        self.table.get_mut(i)
    }

    pub(crate) fn lookup(&self, name: &str) -> Option<u32> {
        self.table.lookup(name)
    }

    /// The slot of `name`, created (unwanted) if new; `None` for this node's own name, which
    /// is skipped and counted. Validates only new names.
    pub(crate) fn intern(
        &mut self,
        name: &str,
        addr: Option<SocketAddr>,
    ) -> Result<Option<u32>, NodeNameError> {
        if self.is_self(name) {
            self.metrics.self_skipped += 1;
            return Ok(None);
        }
        if let Some(i) = self.lookup(name) {
            if addr.is_some()
                && let Some(s) = self.slot_mut(i)
            {
                s.addr = addr;
            }
            return Ok(Some(i));
        }
        let name = NodeName::new(name)?;
        Ok(Some(self.insert(name, addr)))
    }

    /// [`intern`](Core::intern) for a validated node.
    pub(crate) fn intern_node(&mut self, node: &Node) -> Option<u32> {
        if self.is_self(node.name.as_str()) {
            self.metrics.self_skipped += 1;
            return None;
        }
        if let Some(i) = self.lookup(node.name.as_str()) {
            if node.addr.is_some()
                && let Some(s) = self.slot_mut(i)
            {
                s.addr = node.addr;
            }
            return Some(i);
        }
        Some(self.insert(node.name.clone(), node.addr))
    }

    fn insert(&mut self, name: NodeName, addr: Option<SocketAddr>) -> u32 {
        let slot = Slot::new(name.clone(), addr);
        let i = self.table.insert(name, slot);
        self.metrics.known_nodes += 1;
        i
    }

    /// Forgets a slot nobody wants and nothing refers to.
    pub(crate) fn maybe_free(&mut self, i: u32) {
        let Some(s) = self.slot(i) else { return };
        if s.wanted != 0 || s.discovered != 0 || s.conn() != Conn::Idle {
            return;
        }
        let timers = [
            s.timer(TimerKind::Deadline)
                .map(|at| (at, TimerKind::Deadline)),
            s.timer(TimerKind::Retry).map(|at| (at, TimerKind::Retry)),
            s.timer(TimerKind::Linger).map(|at| (at, TimerKind::Linger)),
        ];
        let name = s.name.clone();
        for (at, kind) in timers.into_iter().flatten() {
            self.timers.remove(at, i, kind);
        }
        if self.table.remove(i, name.as_str()).is_some() {
            self.metrics.known_nodes -= 1;
        }
    }

    fn set_timer(&mut self, i: u32, kind: TimerKind, at: Option<Instant>) {
        let Some(s) = self.table.get_mut(i) else {
            return;
        };
        if let Some(old) = s.put_timer(kind, at) {
            self.timers.remove(old, i, kind);
        }
        if let Some(at) = at {
            self.timers.insert(at, i, kind);
        }
    }

    /// The lowest topology bit in `mask`, for naming the owner of a node.
    fn lowest(mask: u64) -> Option<u8> {
        (mask != 0).then(|| mask.trailing_zeros() as u8)
    }

    fn set_wanted(&mut self, i: u32, wanted: u64) {
        if let Some(s) = self.slot_mut(i) {
            s.wanted = wanted;
            if let Some(o) = Self::lowest(wanted) {
                s.owner = o;
            }
        }
    }

    // ----- discovery -----------------------------------------------------------------------

    /// Topology `t` discovers slot `i`.
    pub(crate) fn discover(&mut self, t: u8, i: u32) {
        let bit = 1u64 << t;
        let Some(s) = self.slot_mut(i) else { return };
        if s.discovered & bit != 0 {
            return;
        }
        s.discovered |= bit;
        let wanted = s.wanted | bit;
        let node = s.name.clone();
        let lingering = s.timer(TimerKind::Linger).is_some() && wanted & !s.discovered == 0;
        self.set_wanted(i, wanted);
        if lingering {
            self.set_timer(i, TimerKind::Linger, None);
        }
        self.metrics.discovered += 1;
        let topology = self.topo_name(t);
        self.emit(Event::Discovered { topology, node });
        // Ask the connector what is connected before connecting: a node connected already
        // (by someone else, or before we started) is not connected again.
        self.refresh_wanted = true;
    }

    /// Topology `t` no longer discovers slot `i`; whether it did.
    pub(crate) fn lose(&mut self, now: Instant, t: u8, i: u32) -> bool {
        let bit = 1u64 << t;
        let policy = self.policy(t);
        let Some(s) = self.slot_mut(i) else {
            return false;
        };
        if s.discovered & bit == 0 {
            return false;
        }
        s.discovered &= !bit;
        let node = s.name.clone();
        let connected = s.conn() != Conn::Idle;
        let wanted = s.wanted;
        self.metrics.lost += 1;
        let topology = self.topo_name(t);
        self.emit(Event::Lost { topology, node });
        if policy.prune {
            if policy.grace.is_zero() || !connected {
                self.set_wanted(i, wanted & !bit);
            } else {
                let until = now + policy.grace;
                let later = match self.slot(i).and_then(|s| s.timer(TimerKind::Linger)) {
                    Some(old) => old.max(until),
                    None => until,
                };
                self.set_timer(i, TimerKind::Linger, Some(later));
            }
        }
        self.reconcile_wanted = true;
        self.maybe_free(i);
        true
    }

    /// Removes every trace of topology `t` (the topology is being removed): its nodes are
    /// lost to it, and its slot is free for another.
    pub(crate) fn drop_topology(&mut self, t: u8) {
        let bit = 1u64 << t;
        let topology = self.topo_name(t);
        for i in 0..self.table.bound() {
            let Some(s) = self.slot_mut(i) else { continue };
            if (s.discovered | s.wanted) & bit == 0 {
                continue;
            }
            let was_discovered = s.discovered & bit != 0;
            s.discovered &= !bit;
            let wanted = s.wanted & !bit;
            if was_discovered {
                let node = s.name.clone();
                self.metrics.lost += 1;
                self.emit(Event::Lost {
                    topology: topology.clone(),
                    node,
                });
            }
            self.set_wanted(i, wanted);
            self.maybe_free(i);
        }
        self.topologies.remove(t);
        self.reconcile_wanted = true;
    }

    /// Reports topology `t`'s failed discovery.
    pub(crate) fn discovery_failed(&mut self, t: u8, reason: DiscoveryError) {
        self.metrics.discovery_failed += 1;
        let topology = self.topo_name(t);
        self.emit(Event::DiscoveryFailed { topology, reason });
    }

    /// Reports input topology `t` rejected.
    pub(crate) fn rejected(&mut self, t: u8, from: Option<SocketAddr>, reason: Rejection) {
        self.metrics.rejected += 1;
        let topology = self.topo_name(t);
        self.emit(Event::Rejected {
            topology,
            from,
            reason,
        });
    }

    /// An inbound Erlang distribution connection failed: counted, and reported (as the
    /// `erlang` topology's) when `report`.
    pub(crate) fn inbound_failed(
        &mut self,
        from: Option<SocketAddr>,
        reason: Rejection,
        report: bool,
    ) {
        self.metrics.inbound_failed += 1;
        self.metrics.rejected += 1;
        if report {
            self.emit(Event::Rejected {
                topology: TopologyName::from(ERLANG),
                from,
                reason,
            });
        }
    }

    /// Accepting Erlang distribution connections failed: counted, and reported (as the
    /// `erlang` topology's) when `report`.
    pub(crate) fn accept_failed(&mut self, reason: Failure, report: bool) {
        self.metrics.accept_failed += 1;
        if report {
            self.emit(Event::Rejected {
                topology: TopologyName::from(ERLANG),
                from: None,
                reason: Rejection::OverLimit(reason.to_string()),
            });
        }
    }

    /// The Erlang node accepts no more connections for now: reported.
    pub(crate) fn dist_busy(&mut self, reason: Rejection) {
        self.emit(Event::Rejected {
            topology: TopologyName::from(ERLANG),
            from: None,
            reason,
        });
    }

    pub(crate) fn count_rejected(&mut self) {
        self.metrics.rejected += 1;
    }

    pub(crate) fn add_to_round(&mut self, i: u32) {
        self.scratch.push(i);
    }

    pub(crate) fn begin_round(&mut self) -> u32 {
        self.round_seq = self.round_seq.wrapping_add(1);
        self.scratch.clear();
        self.round_seq
    }

    /// Commits the round collected in `scratch` as topology `t`'s whole discovered set.
    pub(crate) fn commit_round(&mut self, now: Instant, t: u8, round: u32) {
        self.metrics.rounds += 1;
        let scratch = core::mem::take(&mut self.scratch);
        for &i in &scratch {
            if let Some(s) = self.slot_mut(i) {
                s.round = round;
            }
            self.discover(t, i);
        }
        self.scratch = scratch;
        self.scratch.clear();
        let bit = 1u64 << t;
        for i in 0..self.table.bound() {
            let gone = self
                .slot(i)
                .is_some_and(|s| s.discovered & bit != 0 && s.round != round);
            if gone {
                self.lose(now, t, i);
            }
        }
        self.refresh_wanted = true;
    }

    /// Drops a round that was never committed: forget the nodes it created.
    pub(crate) fn abandon_round(&mut self) {
        let scratch = core::mem::take(&mut self.scratch);
        for &i in &scratch {
            self.maybe_free(i);
        }
        self.scratch = scratch;
        self.scratch.clear();
    }

    pub(crate) fn want_refresh(&mut self) {
        self.refresh_wanted = true;
    }

    // ----- connector answers ---------------------------------------------------------------

    fn owner_of(&self, i: u32) -> (TopologyName, ConnectPolicy, bool) {
        let owner = self.slot(i).map(|s| s.owner).unwrap_or(0);
        (
            self.topo_name(owner),
            self.policy(owner),
            self.retries(owner),
        )
    }

    fn set_conn(&mut self, i: u32, conn: Conn) {
        let seq = self.listing.seq();
        let Some(s) = self.slot_mut(i) else { return };
        let was = s.conn();
        s.put_conn(conn);
        s.mark = seq;
        let busy = |c: Conn| matches!(c, Conn::Connecting(_) | Conn::Disconnecting(_));
        match (busy(was), busy(conn)) {
            (true, false) => self.in_flight -= 1,
            (false, true) => self.in_flight += 1,
            _ => {}
        }
        match (was == Conn::Connected, conn == Conn::Connected) {
            (true, false) => {
                self.connected -= 1;
                self.membership_version += 1;
            }
            (false, true) => {
                self.connected += 1;
                self.membership_version += 1;
            }
            _ => {}
        }
        self.metrics.in_flight = self.in_flight as u64;
        self.metrics.connected_nodes = self.connected as u64;
    }

    /// The connector's answer to a connect.
    pub(crate) fn connect_answer(
        &mut self,
        now: Instant,
        i: u32,
        token: Token,
        answer: Answer<'_>,
    ) {
        let Some(s) = self.slot(i) else { return };
        if s.conn() != Conn::Connecting(token) {
            self.metrics.stale_answers += 1;
            return;
        }
        self.set_timer(i, TimerKind::Deadline, None);
        let (_, policy, _) = self.owner_of(i);
        let failed = match answer {
            Answer::Connected => None,
            Answer::Ignored => Some(ConnectError::NotPartOfNetwork),
            Answer::Failed(why) => Some(ConnectError::Failed(why.clone())),
            Answer::TimedOut => Some(ConnectError::TimedOut {
                after: policy.connect_timeout,
            }),
            other => Some(ConnectError::Failed(unexpected(other))),
        };
        match failed {
            None => self.up(now, i),
            Some(reason) => self.connect_failed(now, i, reason),
        }
        // A finished request frees a place for nodes that waited for one.
        self.reconcile_wanted = true;
    }

    /// The node is connected (our request succeeded, or the connector says so).
    fn up(&mut self, now: Instant, i: u32) {
        let Some(s) = self.slot(i) else { return };
        if s.conn() == Conn::Connected {
            return;
        }
        let (conn, since, node) = (s.conn(), s.since, s.name.clone());
        let took = match conn {
            Conn::Connecting(tok) => {
                self.requests.forget(tok);
                now.saturating_duration_since(since)
            }
            _ => Duration::ZERO,
        };
        self.set_timer(i, TimerKind::Deadline, None);
        self.set_timer(i, TimerKind::Retry, None);
        self.set_conn(i, Conn::Connected);
        if let Some(s) = self.slot_mut(i) {
            s.since = now;
            s.attempts = 0;
        }
        self.metrics.connected += 1;
        let (topology, _, _) = self.owner_of(i);
        self.emit(Event::Connected {
            topology,
            node,
            took,
        });
    }

    fn connect_failed(&mut self, now: Instant, i: u32, reason: ConnectError) {
        let timed_out = match &reason {
            ConnectError::TimedOut { .. } => true,
            ConnectError::Failed(f) => f.kind() == FailureKind::TimedOut,
            _ => false,
        };
        let (topology, policy, retries) = self.owner_of(i);
        self.set_conn(i, Conn::Idle);
        let Some(s) = self.slot_mut(i) else { return };
        s.attempts = s.attempts.saturating_add(1);
        let attempt = s.attempts;
        let wanted = s.wanted != 0;
        let node = s.name.clone();
        let level = attempt.saturating_add(s.flaps);
        let delay = policy.backoff_delay(level, &mut self.rng);
        let retry_at = now + delay;
        if let Some(s) = self.slot_mut(i) {
            s.not_before = retry_at;
        }
        let retry_in = if retries && wanted {
            self.set_timer(i, TimerKind::Retry, Some(retry_at));
            Some(delay)
        } else {
            None
        };
        self.metrics.connect_failed += 1;
        if timed_out {
            self.metrics.connect_timeouts += 1;
        }
        self.emit(Event::ConnectFailed {
            topology,
            node,
            reason,
            attempt,
            retry_in,
        });
        self.maybe_free(i);
    }

    /// The connection went away without our asking.
    fn dropped(&mut self, now: Instant, i: u32, reason: DisconnectReason) {
        let (topology, policy, retries) = self.owner_of(i);
        let Some(s) = self.slot(i) else { return };
        if s.conn() != Conn::Connected {
            return;
        }
        let lived = now.saturating_duration_since(s.since);
        let node = s.name.clone();
        self.set_conn(i, Conn::Idle);
        self.metrics.dropped += 1;
        self.emit(Event::Disconnected {
            topology,
            node,
            reason,
        });
        let Some(s) = self.slot_mut(i) else { return };
        if lived >= policy.backoff_max {
            // It was stable: reconnect at once.
            s.flaps = 0;
            s.not_before = now;
        } else {
            // It keeps dropping soon after connecting: back off although its connects succeed.
            s.flaps = s.flaps.saturating_add(1);
            let flaps = s.flaps;
            let at = now + policy.backoff_delay(flaps, &mut self.rng);
            if let Some(s) = self.slot_mut(i) {
                s.not_before = at;
            }
            if retries {
                self.set_timer(i, TimerKind::Retry, Some(at));
            }
        }
        if retries {
            self.reconcile_wanted = true;
        }
        self.maybe_free(i);
    }

    pub(crate) fn disconnect_done(
        &mut self,
        now: Instant,
        i: u32,
        token: Token,
        result: Result<DisconnectReason, Failure>,
    ) {
        let Some(s) = self.slot(i) else { return };
        if s.conn() != Conn::Disconnecting(token) {
            self.metrics.stale_answers += 1;
            return;
        }
        let node = s.name.clone();
        let (topology, _, _) = self.owner_of(i);
        self.set_timer(i, TimerKind::Deadline, None);
        match result {
            Ok(reason) => {
                // Whatever the connector says, a node let go because this one leaves is
                // reported as such.
                let reason = match reason {
                    DisconnectReason::Pruned if self.leaving => DisconnectReason::Leaving,
                    other => other,
                };
                self.set_conn(i, Conn::Idle);
                if let Some(s) = self.slot_mut(i) {
                    s.attempts = 0;
                }
                self.metrics.disconnected += 1;
                self.emit(Event::Disconnected {
                    topology,
                    node,
                    reason,
                });
                self.maybe_free(i);
            }
            Err(reason) => {
                self.metrics.disconnect_failed += 1;
                self.emit(Event::DisconnectFailed {
                    topology,
                    node,
                    reason,
                });
                if self.leaving {
                    // Leaving tries once: a connector that cannot let go must not keep this
                    // node from having left.
                    self.set_conn(i, Conn::Idle);
                    self.maybe_free(i);
                } else {
                    // Tried again later, backing off as connects do: a connector that fails
                    // at once must not be asked again at once, for ever.
                    self.set_conn(i, Conn::Connected);
                    let (_, policy, _) = self.owner_of(i);
                    let attempts = match self.slot_mut(i) {
                        Some(s) => {
                            s.attempts = s.attempts.saturating_add(1);
                            s.attempts
                        }
                        None => 1,
                    };
                    let at = now + policy.backoff_delay(attempts, &mut self.rng);
                    if let Some(s) = self.slot_mut(i) {
                        s.not_before = at;
                    }
                    self.set_timer(i, TimerKind::Retry, Some(at));
                }
            }
        }
        self.reconcile_wanted = true;
    }

    pub(crate) fn node_down(&mut self, now: Instant, name: &str, reason: &Failure) {
        match self.lookup(name) {
            Some(i) => self.dropped(now, i, DisconnectReason::Dropped(reason.clone())),
            None => {
                if let Ok(node) = NodeName::new(name) {
                    let reason = DisconnectReason::Dropped(reason.clone());
                    self.emit(Event::PeerDisconnected { node, reason });
                }
            }
        }
    }

    pub(crate) fn node_up(&mut self, now: Instant, name: &str) {
        let Some(i) = self.lookup(name) else {
            // No topology wants it (yet): say so, rather than nothing.
            if self.this_node.as_ref().is_none_or(|me| me.as_str() != name)
                && let Ok(node) = NodeName::new(name)
            {
                self.emit(Event::PeerConnected { node });
            }
            return;
        };
        if matches!(
            self.slot(i).map(|s| s.conn()),
            Some(Conn::Idle | Conn::Connecting(_))
        ) {
            self.up(now, i);
        }
    }

    pub(crate) fn list_done(&mut self, now: Instant, token: Token, nodes: Option<&[NodeName]>) {
        let Some(seq) = self.listing.answered(token) else {
            self.metrics.stale_answers += 1;
            return;
        };
        match nodes {
            Some(nodes) => self.apply_list(now, seq, nodes),
            None => self.metrics.list_failed += 1,
        }
        self.reconcile(now);
    }

    fn resolve_listed(&mut self, pos: usize, name: &NodeName) -> Option<u32> {
        if let Some(i) = self.listing.hint(pos)
            && let Some(s) = self.slot(i)
            && (s.name.ptr_eq(name) || s.name == *name)
        {
            return Some(i);
        }
        let i = self.lookup(name.as_str())?;
        self.listing.remember(pos, i);
        Some(i)
    }

    fn apply_list(&mut self, now: Instant, seq: u32, nodes: &[NodeName]) {
        self.listing.truncate(nodes.len());
        for (pos, name) in nodes.iter().enumerate() {
            let Some(i) = self.resolve_listed(pos, name) else {
                continue;
            };
            let Some(s) = self.slot_mut(i) else { continue };
            // Our own knowledge is newer than this list: keep it.
            if s.mark >= seq {
                continue;
            }
            s.listed = seq;
            if matches!(s.conn(), Conn::Idle | Conn::Connecting(_)) {
                self.up(now, i);
            }
        }
        for i in 0..self.table.bound() {
            let gone = self
                .slot(i)
                .is_some_and(|s| s.conn() == Conn::Connected && s.listed != seq && s.mark < seq);
            if gone {
                self.dropped(now, i, DisconnectReason::NotListed);
            }
        }
    }

    // ----- the reconcile pass --------------------------------------------------------------

    fn start_connect(&mut self, now: Instant, i: u32) {
        let (_, policy, _) = self.owner_of(i);
        let Some(s) = self.slot(i) else { return };
        let node = Node {
            name: s.name.clone(),
            addr: s.addr,
        };
        let deadline = now + policy.connect_timeout;
        let token = self.request(Pending::Connect(i), Request::Connect { node, deadline });
        self.set_conn(i, Conn::Connecting(token));
        if let Some(s) = self.slot_mut(i) {
            s.since = now;
        }
        self.set_timer(i, TimerKind::Retry, None);
        self.set_timer(i, TimerKind::Deadline, Some(deadline));
        self.metrics.connects_started += 1;
    }

    fn start_disconnect(&mut self, now: Instant, i: u32) {
        let (_, policy, _) = self.owner_of(i);
        let Some(s) = self.slot(i) else { return };
        let node = s.name.clone();
        let deadline = now + policy.connect_timeout;
        let token = self.request(
            Pending::Disconnect(i),
            Request::Disconnect { node, deadline },
        );
        self.set_conn(i, Conn::Disconnecting(token));
        self.set_timer(i, TimerKind::Deadline, Some(deadline));
        self.metrics.disconnects_started += 1;
    }

    /// One pass over the table: connect what is wanted and not connected, disconnect what is
    /// connected and no longer wanted, within the in-flight limit. Resumes where the last pass
    /// stopped for the limit, so no node waits behind the same others forever.
    pub(crate) fn reconcile(&mut self, now: Instant) {
        self.metrics.reconciles += 1;
        if self.limits.discovery_only {
            return;
        }
        let n = self.table.bound() as usize;
        if n == 0 {
            return;
        }
        let start = self.cursor as usize % n;
        let leaving = self.leaving;
        for k in 0..n {
            let i = ((start + k) % n) as u32;
            let Some(s) = self.slot(i) else { continue };
            let action = match s.conn() {
                Conn::Idle if s.wanted != 0 && now >= s.not_before && !leaving => 1,
                Conn::Connected if s.wanted == 0 && (now >= s.not_before || leaving) => 2,
                _ => 0,
            };
            if action == 0 {
                continue;
            }
            if self.in_flight >= self.limits.max_in_flight {
                self.cursor = i;
                return;
            }
            if action == 1 {
                self.start_connect(now, i);
            } else {
                self.start_disconnect(now, i);
            }
        }
        self.cursor = 0;
    }

    fn request_list(&mut self, now: Instant) {
        let deadline = now + self.limits.list_timeout;
        let token = self.request(Pending::List, Request::ListNodes { deadline });
        self.listing.start(token, deadline);
        self.metrics.list_requests += 1;
    }

    /// Runs what the last call asked for: a list of the connected nodes (then a reconcile
    /// when it comes back) or a reconcile on the current view.
    pub(crate) fn flush(&mut self, now: Instant) {
        if self.limits.discovery_only {
            self.refresh_wanted = false;
            self.reconcile_wanted = false;
            return;
        }
        if self.refresh_wanted && !self.listing.busy() {
            self.refresh_wanted = false;
            self.request_list(now);
        }
        if self.reconcile_wanted {
            self.reconcile_wanted = false;
            self.reconcile(now);
        }
    }

    // ----- timers --------------------------------------------------------------------------

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        earliest(self.timers.next(), self.listing.deadline())
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if let Some(token) = self.listing.expire(now) {
            self.requests.forget(token);
            self.metrics.list_failed += 1;
            self.reconcile_wanted = true;
        }
        while let Some((i, kind)) = self.timers.pop_due(now) {
            if let Some(s) = self.slot_mut(i) {
                s.put_timer(kind, None);
            }
            self.fire(now, i, kind);
        }
    }

    fn fire(&mut self, now: Instant, i: u32, kind: TimerKind) {
        let Some(s) = self.slot(i) else { return };
        match kind {
            TimerKind::Deadline => match s.conn() {
                Conn::Connecting(token) => {
                    self.requests.forget(token);
                    let (_, policy, _) = self.owner_of(i);
                    let after = policy.connect_timeout;
                    self.connect_failed(now, i, ConnectError::TimedOut { after });
                    self.reconcile_wanted = true;
                }
                Conn::Disconnecting(token) => {
                    self.requests.forget(token);
                    let why = Failure::timed_out("timed out");
                    self.disconnect_done(now, i, token, Err(why));
                }
                _ => {}
            },
            TimerKind::Retry => self.reconcile_wanted = true,
            TimerKind::Linger => {
                let mut wanted = s.wanted;
                let mut rest = s.wanted & !s.discovered;
                while let Some(t) = Self::lowest(rest) {
                    rest &= !(1u64 << t);
                    if self.policy(t).prune {
                        wanted &= !(1u64 << t);
                    }
                }
                self.set_wanted(i, wanted);
                self.reconcile_wanted = true;
                self.maybe_free(i);
            }
        }
    }

    // ----- queries -------------------------------------------------------------------------

    pub(crate) fn members(&self) -> impl Iterator<Item = &NodeName> {
        self.table
            .iter()
            .filter(|s| s.conn() == Conn::Connected)
            .map(|s| &s.name)
    }

    pub(crate) fn is_connected(&self, name: &str) -> bool {
        self.lookup(name)
            .and_then(|i| self.slot(i))
            .is_some_and(|s| s.conn() == Conn::Connected)
    }

    pub(crate) fn addr_of(&self, name: &str) -> Option<SocketAddr> {
        self.lookup(name)
            .and_then(|i| self.slot(i))
            .and_then(|s| s.addr)
    }

    pub(crate) fn discovered_by(&self, t: u8) -> impl Iterator<Item = &NodeName> {
        let bit = 1u64 << t;
        self.table
            .iter()
            .filter(move |s| s.discovered & bit != 0)
            .map(|s| &s.name)
    }

    pub(crate) fn wanted_by_any(&self, name: &str) -> bool {
        self.lookup(name)
            .and_then(|i| self.slot(i))
            .is_some_and(|s| s.wanted != 0)
    }

    /// The connector's answer to a disconnect.
    pub(crate) fn disconnect_answer(
        &mut self,
        now: Instant,
        i: u32,
        token: Token,
        answer: Answer<'_>,
    ) {
        let result = match answer {
            Answer::Disconnected => Ok(DisconnectReason::Pruned),
            Answer::NotConnected => Ok(DisconnectReason::AlreadyDisconnected),
            Answer::Ignored => Ok(DisconnectReason::NotPartOfNetwork),
            Answer::Failed(why) => Err(why.clone()),
            Answer::TimedOut => Err(Failure::timed_out("timed out")),
            other => Err(unexpected(other)),
        };
        self.disconnect_done(now, i, token, result);
    }

    /// Whether the cluster is leaving.
    pub(crate) fn is_leaving(&self) -> bool {
        self.leaving
    }

    /// Whether nothing the core asked for is still in flight: no connect, disconnect, list or
    /// strategy request.
    pub(crate) fn is_idle(&self) -> bool {
        self.in_flight == 0 && !self.listing.busy() && self.requests.is_idle()
    }

    /// Leaves: no topology wants any node any more, so every node connected is disconnected
    /// (reported as [`DisconnectReason::Leaving`]) by the reconcile passes that follow, within
    /// the in-flight limit, and nothing is connected again.
    pub(crate) fn leave(&mut self) {
        self.leaving = true;
        for i in 0..self.table.bound() {
            if let Some(s) = self.slot_mut(i) {
                s.discovered = 0;
            }
            self.set_wanted(i, 0);
            self.maybe_free(i);
        }
        self.reconcile_wanted = true;
    }

    #[cfg(feature = "sim")]
    pub(crate) fn slot_count(&self) -> usize {
        self.table.bound() as usize
    }
}

/// The topology named in events about the cluster's own Erlang node.
pub(crate) const ERLANG: &str = "erlang";

/// An answer of a kind the request cannot have.
pub(crate) fn unexpected(answer: Answer<'_>) -> Failure {
    Failure::new(
        FailureKind::Protocol,
        format!("unexpected answer {answer:?}"),
    )
}
