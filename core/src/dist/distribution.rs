//! This node in Erlang distribution, as the cluster's connector: it listens, registers with
//! the local EPMD and holds the registration, asks a node's EPMD for its port, opens and
//! accepts links and answers the cluster's connect, disconnect and list requests itself.
//! Every byte moves through the adapter's streams (`Listen`, `Accept`, `OpenStream`,
//! `Write`), so the same Erlang node runs on every adapter.

use core::time::Duration;
use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use bytes::Bytes;

use super::link::{Admission, Link, LinkConfig, LinkEvent};
use crate::io::{Answer, Endpoint, Exchange, OwnedAnswer, Request, Token};
use crate::node::{Node, NodeName};
use crate::proto::epmd::{self, NodeEntry};
use crate::reason::{Failure, FailureKind, Rejection};
use crate::rng::Rng;
use crate::time::{Instant, earliest};

/// Tokens of the distribution's own requests carry this bit; the cluster's never do.
const OWN: u64 = 1 << 62;
const REGISTER_BACKOFF_MIN: Duration = Duration::from_millis(500);
const REGISTER_BACKOFF_MAX: Duration = Duration::from_secs(30);
const EPMD_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a connect waits for the peer's own handshake with us before it dials anyway:
/// a real simultaneous connect finishes in milliseconds, and a peer that names itself then
/// stalls must not hold our connects until their deadline.
const MAX_DEFER: Duration = Duration::from_secs(1);
/// How long a connect that lost a simultaneous connect waits for the peer's own link: a
/// handshake's time, as Erlang's setup timer gives it.
const RACE_WAIT: Duration = Duration::from_secs(7);
/// How long a failed accept (out of descriptors, say) waits before the next, at first and at
/// most.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How often the failures of one peer address are reported (every one is counted).
const REPORT_EVERY: Duration = Duration::from_secs(60);
/// Peer addresses whose last report is remembered, at most.
const MAX_REPORTERS: usize = 1024;

/// How this node takes part in Erlang distribution.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DistConfig {
    /// This node's full name, `name@host`.
    pub name: NodeName,
    /// The cookie.
    pub cookie: String,
    /// The EPMD port, on this host and on every peer's host (`ERL_EPMD_PORT`, else 4369).
    pub epmd_port: u16,
    /// Where to accept distribution connections (port 0: any).
    pub listen: SocketAddr,
    /// Stay out of peers' `nodes()` and global name registration. Default true.
    ///
    /// Keep it: a visible node (`false`) does not speak OTP's `global` protocol, so on every
    /// BEAM node connected to it `global:sync()` does not return while it is connected
    /// (`global:register_name/2` still works). Adapters warn at start when a node is visible.
    pub hidden: bool,
    /// Erlang's `net_ticktime`. Default 60 s.
    pub tick_time: Duration,
    /// The most inbound connections in handshake at once; one more closes the oldest of them
    /// (a real peer's handshake takes a round trip or two, so idle or slow connections cannot
    /// keep real peers out; the handshake deadline, 7 s, ends the rest). Default 64.
    pub max_handshakes: usize,
}

impl DistConfig {
    /// A hidden node `name` with `cookie`, EPMD on 4369, listening on any port.
    pub fn new(name: NodeName, cookie: impl Into<String>) -> Self {
        DistConfig {
            name,
            cookie: cookie.into(),
            epmd_port: epmd::DEFAULT_PORT,
            listen: SocketAddr::from(([0, 0, 0, 0], 0)),
            hidden: true,
            tick_time: Duration::from_secs(60),
            max_handshakes: 64,
        }
    }

    /// Sets the most inbound connections in handshake at once (at least 1).
    pub fn max_handshakes(mut self, n: usize) -> Self {
        self.max_handshakes = n.max(1);
        self
    }

    /// Sets the EPMD port.
    pub fn epmd_port(mut self, port: u16) -> Self {
        self.epmd_port = port;
        self
    }

    /// Sets where distribution connections are accepted.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// Sets `net_ticktime`.
    pub fn tick_time(mut self, d: Duration) -> Self {
        self.tick_time = d;
        self
    }

    /// Visible (published) instead of hidden: see [`DistConfig::hidden`] for what that costs
    /// the BEAM nodes connected to it.
    pub fn hidden(mut self, hidden: bool) -> Self {
        self.hidden = hidden;
        self
    }
}

/// What the distribution gives the cluster.
#[derive(Debug)]
pub(crate) enum DistOutput {
    /// A request for the adapter.
    Request(Token, Request),
    /// The answer to one of the cluster's connector requests.
    Answer(Token, OwnedAnswer),
    /// A link came up that the cluster did not ask for.
    Up(NodeName),
    /// A link went down.
    Down(NodeName, Failure),
    /// An inbound connection failed its handshake or was turned away: count it, and report it
    /// when `report` (the first from its address in a while).
    Inbound {
        from: Option<SocketAddr>,
        reason: Rejection,
        report: bool,
    },
    /// Accepting failed (out of descriptors, say): count it, and report it when `report`
    /// (the first of a run of failures).
    AcceptFailed { reason: Failure, report: bool },
    /// `max_handshakes` were in handshake when another came: the oldest was closed (reported
    /// once per such time).
    Busy(Rejection),
    /// EPMD registered this node (`true`: peers can find it now) or the registration was
    /// lost (`false`).
    Reachable(bool),
}

enum Registration {
    /// Waiting for the listener.
    Idle,
    /// Connecting to the local EPMD, or waiting for its reply.
    Asking { stream: Token, buf: Vec<u8> },
    /// Registered; the stream holds the registration.
    Held { stream: Token },
    /// Failed; try again at this time.
    Retry { at: Instant, why: Failure },
}

struct Held {
    link: Link,
    /// The cluster's connect request this link answers, for links we opened.
    connect: Option<Token>,
    /// Whether the stream is connected (accepted streams are).
    open: bool,
    /// The node it came up with.
    up: Option<NodeName>,
    /// Who connected, for links we accepted.
    from: Option<SocketAddr>,
    /// We refused it ourselves in a simultaneous connect: a normal end, not a failure.
    refused_race: bool,
}

struct Lookup {
    node: Node,
    connect: Token,
    deadline: Instant,
    buf: Vec<u8>,
}

/// This node in Erlang distribution; see the module documentation.
pub(crate) struct Distribution {
    cfg: DistConfig,
    rng: Rng,
    next: u64,
    listener: Option<Token>,
    port: Option<u16>,
    accepting: Option<Token>,
    registration: Registration,
    backoff: Duration,
    creation: Option<u32>,
    links: BTreeMap<Token, Held>,
    lookups: BTreeMap<Token, Lookup>,
    up: BTreeMap<NodeName, Token>,
    dialing: BTreeMap<NodeName, Token>,
    /// Connects that lost a simultaneous connect: the peer's own link answers them.
    awaiting: BTreeMap<NodeName, (Token, Instant)>,
    /// Connects asked while the peer's own connection to us was in its handshake: that link
    /// answers them, as a pending connection does in OTP's `net_kernel`; if it fails, we dial.
    /// Connects waiting for the peer's own handshake: the connect, its node, its deadline,
    /// and when it dials anyway.
    deferred: BTreeMap<NodeName, (Token, Node, Instant, Instant)>,
    /// Connects asked before the registration with EPMD is done, with their deadlines.
    early: Vec<(Token, Node, Instant)>,
    out: VecDeque<DistOutput>,
    stopped: bool,
    /// A failed accept waits until then before the next.
    accept_retry: Option<Instant>,
    accept_backoff: Duration,
    /// The current run of failed accepts was reported.
    accept_reported: bool,
    /// The current time at `max_handshakes` was reported.
    busy_reported: bool,
    /// When each peer address's inbound failure was last reported.
    reports: BTreeMap<IpAddr, Instant>,
}

impl core::fmt::Debug for Distribution {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Distribution")
            .field("name", &self.cfg.name)
            .field("port", &self.port)
            .field("creation", &self.creation)
            .field("up", &self.up.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Distribution {
    pub(crate) fn new(cfg: DistConfig, rng: Rng) -> Self {
        let mut d = Distribution {
            cfg,
            rng,
            next: 0,
            listener: None,
            port: None,
            accepting: None,
            registration: Registration::Idle,
            backoff: REGISTER_BACKOFF_MIN,
            creation: None,
            links: BTreeMap::new(),
            lookups: BTreeMap::new(),
            up: BTreeMap::new(),
            dialing: BTreeMap::new(),
            awaiting: BTreeMap::new(),
            deferred: BTreeMap::new(),
            early: Vec::new(),
            out: VecDeque::new(),
            stopped: false,
            accept_retry: None,
            accept_backoff: ACCEPT_BACKOFF_MIN,
            accept_reported: false,
            busy_reported: false,
            reports: BTreeMap::new(),
        };
        let t = d.token();
        d.listener = Some(t);
        d.request(t, Request::Listen { bind: d.cfg.listen });
        d
    }

    pub(crate) fn owns(token: Token) -> bool {
        token.0 & OWN != 0
    }

    fn token(&mut self) -> Token {
        self.next += 1;
        Token(OWN | self.next)
    }

    fn request(&mut self, token: Token, r: Request) {
        self.out.push_back(DistOutput::Request(token, r));
    }

    fn answer(&mut self, token: Token, a: OwnedAnswer) {
        self.out.push_back(DistOutput::Answer(token, a));
    }

    pub(crate) fn poll_output(&mut self) -> Option<DistOutput> {
        self.out.pop_front()
    }

    fn link_config(&self) -> Option<LinkConfig> {
        let mut c = LinkConfig::new(
            self.cfg.name.clone(),
            self.cfg.cookie.clone(),
            self.creation?,
        );
        c.hidden = self.cfg.hidden;
        c.tick_time = self.cfg.tick_time;
        Some(c)
    }

    fn registration_problem(&self) -> Failure {
        let epmd = format!("EPMD on 127.0.0.1:{}", self.cfg.epmd_port);
        match &self.registration {
            Registration::Retry { why, .. } => why
                .clone()
                .context(format_args!("not registered with {epmd}")),
            _ if self.port.is_none() => Failure::new(
                FailureKind::Unsupported,
                "not listening for distribution yet",
            ),
            _ => Failure::new(
                FailureKind::Unsupported,
                format!("not registered with {epmd} yet"),
            ),
        }
    }

    /// The cluster asks to connect `node`.
    pub(crate) fn connect(&mut self, now: Instant, token: Token, node: Node, deadline: Instant) {
        self.connect_as(now, token, node, deadline, true);
    }

    /// Connects; `may_defer`: wait for the peer's own handshake with us if one is under way
    /// (a connect defers once: after waiting, it dials whatever the peer does).
    fn connect_as(
        &mut self,
        now: Instant,
        token: Token,
        node: Node,
        deadline: Instant,
        may_defer: bool,
    ) {
        if self.up.contains_key(&node.name) {
            return self.answer(token, OwnedAnswer::Connected);
        }
        if self.stopped {
            let why = Failure::new(FailureKind::Unsupported, "this node left distribution");
            return self.answer(token, OwnedAnswer::Failed(why));
        }
        if self.creation.is_none() {
            // Starting up: wait for the registration rather than fail the first connects.
            if let Registration::Retry { .. } = self.registration {
                let why = self.registration_problem();
                return self.answer(token, OwnedAnswer::Failed(why));
            }
            self.early.push((token, node, deadline));
            return;
        }
        if may_defer && self.inbound_handshake(&node.name) {
            // A dial now would race the peer's own link, and whichever side the race rules
            // leave standing, one side may see a live link replaced: wait for this one.
            let wake = deadline.min(now + MAX_DEFER);
            self.deferred
                .insert(node.name.clone(), (token, node, deadline, wake));
            return;
        }
        let host = match node.addr {
            Some(a) => Endpoint::Addr(SocketAddr::new(a.ip(), self.cfg.epmd_port)),
            None => Endpoint::Host {
                host: node.name.host().to_owned(),
                port: self.cfg.epmd_port,
            },
        };
        let x = Exchange::tcp(
            host,
            Bytes::from(epmd::port_please_request(node.name.name())),
            deadline.min(now + EPMD_TIMEOUT),
        )
        .max_reply(1024);
        let t = self.token();
        self.dialing.insert(node.name.clone(), token);
        self.lookups.insert(
            t,
            Lookup {
                node,
                connect: token,
                deadline,
                buf: Vec::new(),
            },
        );
        self.request(t, Request::Exchange(x));
    }

    /// The cluster asks to disconnect `node`.
    pub(crate) fn disconnect(&mut self, token: Token, node: &NodeName) {
        match self.up.remove(node) {
            Some(stream) => {
                self.links.remove(&stream);
                let c = self.token();
                self.request(c, Request::Cancel { token: stream });
                self.answer(token, OwnedAnswer::Disconnected);
            }
            None => self.answer(token, OwnedAnswer::NotConnected),
        }
    }

    /// The cluster asks for the linked nodes.
    pub(crate) fn list(&mut self, token: Token) {
        let nodes = self.up.keys().cloned().collect();
        self.answer(token, OwnedAnswer::Nodes(nodes));
    }

    /// Whether this node has left distribution.
    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// Leaves distribution: closes every link, every EPMD lookup, the registration and the
    /// listener, in token order.
    pub(crate) fn shutdown(&mut self) {
        self.stopped = true;
        let mut close: Vec<Token> = self.links.keys().copied().collect();
        close.extend(self.lookups.keys().copied());
        close.extend(self.listener.take());
        close.extend(self.accepting.take());
        if let Registration::Asking { stream, .. } | Registration::Held { stream } =
            &self.registration
        {
            close.push(*stream);
        }
        close.sort_unstable();
        self.registration = Registration::Idle;
        self.links.clear();
        self.lookups.clear();
        self.up.clear();
        for t in close {
            let c = self.token();
            self.request(c, Request::Cancel { token: t });
        }
    }

    fn register(&mut self, now: Instant) {
        if self.stopped || self.port.is_none() {
            return;
        }
        let stream = self.token();
        self.registration = Registration::Asking {
            stream,
            buf: Vec::new(),
        };
        let to = Endpoint::Addr(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            self.cfg.epmd_port,
        ));
        self.request(
            stream,
            Request::OpenStream {
                to,
                deadline: now + EPMD_TIMEOUT,
                tls: None,
            },
        );
    }

    fn registration_failed(&mut self, now: Instant, why: Failure) {
        if let Registration::Held { .. } = self.registration {
            self.out.push_back(DistOutput::Reachable(false));
        }
        if let Registration::Asking { stream, .. } | Registration::Held { stream } =
            self.registration
        {
            let c = self.token();
            self.request(c, Request::Cancel { token: stream });
        }
        self.registration = Registration::Retry {
            at: now + self.backoff,
            why,
        };
        self.backoff = (self.backoff * 2).min(REGISTER_BACKOFF_MAX);
        self.fail_early();
    }

    /// Fails the connects that waited for a registration that did not come.
    fn fail_early(&mut self) {
        for (token, _, _) in std::mem::take(&mut self.early) {
            let why = self.registration_problem();
            self.answer(token, OwnedAnswer::Failed(why));
        }
    }

    /// Whether `peer` is connecting to us and we admitted it: its link is in its handshake.
    fn inbound_handshake(&self, peer: &NodeName) -> bool {
        self.links.values().any(|h| {
            h.connect.is_none() && h.up.is_none() && !h.refused_race && h.link.peer() == Some(peer)
        })
    }

    /// Inbound links whose handshake is not done.
    fn handshakes(&self) -> usize {
        self.links
            .values()
            .filter(|h| h.connect.is_none() && h.up.is_none())
            .count()
    }

    /// Asks for the next inbound connection, unless one is asked for already or a failed
    /// accept is waiting out its backoff.
    fn accept_next(&mut self) {
        let (Some(listener), None, false, None) = (
            self.listener,
            self.accepting,
            self.stopped,
            self.accept_retry,
        ) else {
            return;
        };
        let t = self.token();
        self.accepting = Some(t);
        self.request(t, Request::Accept { listener });
    }

    /// Closes the oldest inbound handshake when `max_handshakes` are in progress, so that a
    /// new connection has room; says so once per such time.
    fn make_room(&mut self, now: Instant) {
        let busy = self.handshakes();
        if busy < self.cfg.max_handshakes {
            self.busy_reported = false;
            return;
        }
        // Tokens grow with time: the smallest is the oldest.
        let oldest = self
            .links
            .iter()
            .find(|(_, h)| h.connect.is_none() && h.up.is_none())
            .map(|(t, _)| *t);
        if !self.busy_reported {
            self.busy_reported = true;
            self.out
                .push_back(DistOutput::Busy(Rejection::OverLimit(format!(
                    "{busy} inbound handshakes in progress (max_handshakes): the oldest are \
                     closed to make room for new connections"
                ))));
        }
        if let Some(t) = oldest {
            self.link_down(
                now,
                t,
                Failure::new(
                    FailureKind::Closed,
                    "closed to make room: max_handshakes inbound handshakes were in progress",
                ),
            );
        }
    }

    /// Whether a failure of a peer at `from` is to be reported at `now`; records it.
    fn report_due(&mut self, from: Option<SocketAddr>, now: Instant) -> bool {
        let Some(ip) = from.map(|a| a.ip()) else {
            return true;
        };
        if self.reports.len() >= MAX_REPORTERS {
            self.reports
                .retain(|_, at| now.saturating_duration_since(*at) < REPORT_EVERY);
        }
        match self.reports.get(&ip) {
            Some(at) if now.saturating_duration_since(*at) < REPORT_EVERY => false,
            _ => {
                if self.reports.len() < MAX_REPORTERS {
                    self.reports.insert(ip, now);
                }
                true
            }
        }
    }

    /// An answer to one of the distribution's own requests.
    pub(crate) fn handle_answer(&mut self, now: Instant, token: Token, answer: Answer<'_>) {
        if Some(token) == self.listener {
            match answer {
                Answer::Opened(local) => {
                    self.port = Some(local.port());
                    self.register(now);
                }
                Answer::Failed(why) => {
                    self.listener = None;
                    let why = why
                        .clone()
                        .context(format_args!("cannot listen on {}", self.cfg.listen));
                    self.registration = Registration::Retry {
                        at: Instant::MAX,
                        why,
                    };
                    self.fail_early();
                }
                _ => {}
            }
            return;
        }
        if Some(token) == self.accepting {
            self.accepting = None;
            match answer {
                Answer::Accepted(from) => {
                    self.accept_backoff = ACCEPT_BACKOFF_MIN;
                    self.accept_reported = false;
                    if let Some(cfg) = self.link_config().filter(|_| !self.stopped) {
                        self.make_room(now);
                        let link = Link::accept(cfg, now, &mut self.rng);
                        self.links.insert(
                            token,
                            Held {
                                link,
                                connect: None,
                                open: true,
                                up: None,
                                from: Some(from),
                                refused_race: false,
                            },
                        );
                    } else {
                        let c = self.token();
                        self.request(c, Request::Cancel { token });
                    }
                }
                Answer::Failed(why) => self.accept_failed(now, why.clone()),
                Answer::TimedOut => {
                    self.accept_failed(now, Failure::timed_out("the accept timed out"))
                }
                _ => {}
            }
            self.accept_next();
            return self.drive(now, token);
        }
        if let Some(l) = self.lookups.get_mut(&token) {
            match answer {
                Answer::Data(d) => l.buf.extend_from_slice(d),
                Answer::Closed => {
                    let Some(l) = self.lookups.remove(&token) else {
                        return;
                    };
                    self.looked_up(now, l);
                }
                Answer::Failed(why) => {
                    let Some(l) = self.lookups.remove(&token) else {
                        return;
                    };
                    let why = why
                        .clone()
                        .context(format_args!("EPMD on {}", epmd_host(&l.node)));
                    self.dial_failed(&l.node.name, l.connect, why);
                }
                Answer::TimedOut => {
                    let Some(l) = self.lookups.remove(&token) else {
                        return;
                    };
                    let why =
                        Failure::timed_out(format!("EPMD on {}: no answer", epmd_host(&l.node)));
                    self.dial_failed(&l.node.name, l.connect, why);
                }
                _ => {}
            }
            return;
        }
        if let Registration::Asking { stream, .. } = self.registration
            && stream == token
        {
            return self.registering(now, token, answer);
        }
        if let Registration::Held { stream } = self.registration
            && stream == token
        {
            if let Answer::Closed | Answer::Failed(_) = answer {
                // EPMD went away: other nodes can no longer find this one until it is back.
                let why = Failure::new(FailureKind::Closed, "EPMD closed this node's registration");
                self.registration_failed(now, why);
            }
            return;
        }
        let Some(h) = self.links.get_mut(&token) else {
            return;
        };
        match answer {
            Answer::Opened(_) => h.open = true,
            Answer::Data(d) => h.link.handle_data(now, d),
            Answer::Closed => h.link.peer_closed(),
            Answer::Failed(why) => h.link.close(why.clone()),
            Answer::TimedOut => h
                .link
                .close(Failure::timed_out("could not connect in time")),
            _ => {}
        }
        self.drive(now, token);
    }

    /// An answer on the stream to the local EPMD, before the registration is held.
    fn registering(&mut self, now: Instant, stream: Token, answer: Answer<'_>) {
        match answer {
            Answer::Opened(_) => {
                let entry = NodeEntry::new(
                    self.cfg.name.name(),
                    self.port.unwrap_or(0),
                    self.cfg.hidden,
                );
                let data = Bytes::from(epmd::alive2_request(&entry));
                let w = self.token();
                self.request(w, Request::Write { stream, data });
            }
            Answer::Data(d) => {
                let reply = match &mut self.registration {
                    Registration::Asking { buf, .. } => {
                        buf.extend_from_slice(d);
                        epmd::parse_alive2_reply(buf)
                    }
                    _ => return,
                };
                match reply {
                    Ok(None) => {}
                    Ok(Some(creation)) => {
                        self.creation = Some(creation);
                        self.backoff = REGISTER_BACKOFF_MIN;
                        self.registration = Registration::Held { stream };
                        self.out.push_back(DistOutput::Reachable(true));
                        self.accept_next();
                        for (token, node, deadline) in std::mem::take(&mut self.early) {
                            self.connect(now, token, node, deadline);
                        }
                    }
                    Err(e) => {
                        let why = format!(
                            "EPMD refused to register {}: {e} (is the name taken?)",
                            self.cfg.name
                        );
                        self.registration_failed(now, Failure::new(FailureKind::Rejected, why));
                    }
                }
            }
            Answer::Closed => {
                let why = Failure::new(FailureKind::Closed, "EPMD closed the connection");
                self.registration_failed(now, why)
            }
            Answer::Failed(why) => self.registration_failed(now, why.clone()),
            Answer::TimedOut => self.registration_failed(now, Failure::timed_out("no answer")),
            _ => {}
        }
    }

    fn looked_up(&mut self, now: Instant, l: Lookup) {
        if self.up.contains_key(&l.node.name) {
            // A link came up while we asked EPMD (the peer connected to us): no second one.
            if self.dialing.get(&l.node.name) == Some(&l.connect) {
                self.dialing.remove(&l.node.name);
            }
            return self.answer(l.connect, OwnedAnswer::Connected);
        }
        if self.stopped {
            let why = Failure::new(FailureKind::Unsupported, "this node left distribution");
            return self.dial_failed(&l.node.name, l.connect, why);
        }
        let host = epmd_host(&l.node);
        let port = match epmd::parse_port2(&l.buf) {
            Ok(Some(entry)) => entry.port,
            Ok(None) => {
                let why = format!("{} is not registered with EPMD on {host}", l.node.name);
                let why = Failure::new(FailureKind::NotFound, why);
                return self.dial_failed(&l.node.name, l.connect, why);
            }
            Err(e) => {
                let why = Failure::new(FailureKind::Protocol, format!("EPMD on {host}: {e}"));
                return self.dial_failed(&l.node.name, l.connect, why);
            }
        };
        let Some(cfg) = self.link_config() else {
            let why = self.registration_problem();
            return self.dial_failed(&l.node.name, l.connect, why);
        };
        let to = match l.node.addr {
            Some(a) => Endpoint::Addr(SocketAddr::new(a.ip(), port)),
            None => Endpoint::Host {
                host: l.node.name.host().to_owned(),
                port,
            },
        };
        let stream = self.token();
        let link = Link::connect(cfg, l.node.name.clone(), now, &mut self.rng);
        self.links.insert(
            stream,
            Held {
                link,
                connect: Some(l.connect),
                open: false,
                up: None,
                from: None,
                refused_race: false,
            },
        );
        self.request(
            stream,
            Request::OpenStream {
                to,
                deadline: l.deadline,
                tls: None,
            },
        );
    }

    /// Accepting failed: wait before the next, longer each time, and say so once per run.
    fn accept_failed(&mut self, now: Instant, why: Failure) {
        self.accept_retry = Some(now + self.accept_backoff);
        self.accept_backoff = (self.accept_backoff * 2).min(ACCEPT_BACKOFF_MAX);
        let report = !self.accept_reported;
        self.accept_reported = true;
        self.out.push_back(DistOutput::AcceptFailed {
            reason: why.context("cannot accept distribution connections"),
            report,
        });
    }

    /// Stops our own attempt to connect `peer`, if one is under way: its connect is answered
    /// by the link to `peer` that wins instead (or fails at its deadline).
    fn drop_own_dial(&mut self, now: Instant, peer: &NodeName) {
        let Some(connect) = self.dialing.remove(peer) else {
            return;
        };
        let lookups: Vec<Token> = self
            .lookups
            .iter()
            .filter(|(_, l)| l.connect == connect)
            .map(|(t, _)| *t)
            .collect();
        let links: Vec<Token> = self
            .links
            .iter()
            .filter(|(_, h)| h.connect == Some(connect) && h.up.is_none())
            .map(|(t, _)| *t)
            .collect();
        for t in lookups {
            self.lookups.remove(&t);
            let c = self.token();
            self.request(c, Request::Cancel { token: t });
        }
        for t in links {
            self.links.remove(&t);
            let c = self.token();
            self.request(c, Request::Cancel { token: t });
        }
        match self.up.contains_key(peer) {
            true => self.answer(connect, OwnedAnswer::Connected),
            false => {
                self.awaiting
                    .insert(peer.clone(), (connect, now + RACE_WAIT));
            }
        }
    }

    fn dial_failed(&mut self, node: &NodeName, connect: Token, why: Failure) {
        if self.dialing.get(node) == Some(&connect) {
            self.dialing.remove(node);
        }
        self.answer(connect, OwnedAnswer::Failed(why));
    }

    /// Who may connect: the acceptor's rules for a simultaneous or a duplicate connection,
    /// as OTP's `net_kernel` makes them.
    fn admission(&self, peer: &NodeName) -> Admission {
        if self.up.contains_key(peer) {
            return Admission::Alive;
        }
        if self.dialing.contains_key(peer) {
            // Erlang's rule: the node with the greater name keeps its own attempt; the other
            // drops its own and takes the peer's (`ok_simultaneous`).
            return if peer.as_str() > self.cfg.name.as_str() {
                Admission::OkSimultaneous
            } else {
                Admission::Nok
            };
        }
        Admission::Ok
    }

    /// Moves the link on `token` on: writes what it has, acts on its events.
    fn drive(&mut self, now: Instant, token: Token) {
        loop {
            let Some(h) = self.links.get_mut(&token) else {
                return;
            };
            if h.open
                && let Some(bytes) = h.link.poll_transmit()
            {
                let data = Bytes::from(bytes);
                let w = self.token();
                self.request(
                    w,
                    Request::Write {
                        stream: token,
                        data,
                    },
                );
                continue;
            }
            let Some(ev) = h.link.poll_event() else {
                return;
            };
            match ev {
                LinkEvent::Hello { peer } => {
                    let a = self.admission(&peer);
                    if a == Admission::OkSimultaneous {
                        self.drop_own_dial(now, &peer);
                    }
                    if let Some(h) = self.links.get_mut(&token) {
                        h.refused_race = a == Admission::Nok;
                        h.link.admit(now, a);
                    }
                }
                LinkEvent::Alive { peer } => {
                    // Replace what the peer holds only if no link of ours to it is up.
                    let replace = !self.up.contains_key(&peer);
                    if let Some(h) = self.links.get_mut(&token) {
                        h.link.answer_alive(replace);
                    }
                }
                LinkEvent::Up { peer, .. } => self.link_up(now, token, peer),
                LinkEvent::Down { reason } => return self.link_down(now, token, reason),
            }
        }
    }

    fn link_up(&mut self, now: Instant, token: Token, peer: NodeName) {
        if self.stopped {
            if let Some(h) = self.links.get_mut(&token) {
                h.link.close(Failure::new(
                    FailureKind::Closed,
                    "this node left distribution",
                ));
            }
            return;
        }
        let Some(h) = self.links.get_mut(&token) else {
            return;
        };
        h.up = Some(peer.clone());
        let connect = h.connect.take();
        let inbound = connect.is_none();
        if inbound {
            // An attempt of ours to the same node would only replace this link: drop it, and
            // let this link answer its connect.
            self.drop_own_dial(now, &peer);
        }
        // A stale link to the same node (the peer restarted) gives way to this one.
        if let Some(old) = self.up.insert(peer.clone(), token)
            && old != token
        {
            self.links.remove(&old);
            let c = self.token();
            self.request(c, Request::Cancel { token: old });
        }
        match connect {
            Some(c) => {
                self.dialing.remove(&peer);
                self.answer(c, OwnedAnswer::Connected);
            }
            None => match (self.awaiting.remove(&peer), self.deferred.remove(&peer)) {
                (None, None) => self.out.push_back(DistOutput::Up(peer)),
                // Both may wait: each is answered.
                (a, d) => {
                    for c in a.map(|(c, _)| c).into_iter().chain(d.map(|(c, ..)| c)) {
                        self.answer(c, OwnedAnswer::Connected);
                    }
                }
            },
        }
        if inbound {
            // A handshake slot is free again.
            self.accept_next();
        }
    }

    fn link_down(&mut self, now: Instant, token: Token, reason: Failure) {
        let Some(h) = self.links.remove(&token) else {
            return;
        };
        let c = self.token();
        self.request(c, Request::Cancel { token });
        if let Some(peer) = &h.up
            && self.up.get(peer) == Some(&token)
        {
            self.up.remove(peer);
            self.out
                .push_back(DistOutput::Down(peer.clone(), reason.clone()));
        }
        if let Some(connect) = h.connect {
            let peer = h.link.peer().cloned();
            if let Some(p) = &peer {
                if self.dialing.get(p) == Some(&connect) {
                    self.dialing.remove(p);
                }
                // Another link to the node is up (it won a race, or the peer held it): the
                // node is connected through it.
                if self.up.contains_key(p) {
                    return self.answer(connect, OwnedAnswer::Connected);
                }
                // A simultaneous connect the other side won: its link to us answers.
                if h.link.lost_race() {
                    let wait = now + RACE_WAIT;
                    self.awaiting.insert(p.clone(), (connect, wait));
                    return;
                }
            }
            return self.answer(connect, OwnedAnswer::Failed(reason));
        }
        if h.up.is_none() {
            // An inbound handshake that failed: a wrong cookie, nonsense, or too slow. Our
            // own refusal in a simultaneous connect is no failure.
            // Nor is a peer keeping the link it has, and a peer that closed before it said
            // who it is is counted but not reported: that is how a simultaneous connect the
            // peer dropped looks from here (OTP says nothing either), and how health checks
            // and port scans look.
            let normal = h.link.peer_kept_its_link();
            let nameless = h.link.peer().is_none()
                && matches!(reason.kind(), FailureKind::Closed | FailureKind::Reset);
            if !h.refused_race && !normal && !self.stopped {
                let report = !nameless && self.report_due(h.from, now);
                let peer = h
                    .from
                    .map_or_else(|| "a peer".to_owned(), |a| a.to_string());
                let text = format!("inbound connection from {peer}: {reason}");
                let rejection = match reason.kind() {
                    FailureKind::Rejected => Rejection::Unauthenticated(text),
                    FailureKind::TimedOut | FailureKind::Closed | FailureKind::Reset => {
                        Rejection::Incomplete(text)
                    }
                    _ => Rejection::Malformed(text),
                };
                self.out.push_back(DistOutput::Inbound {
                    from: h.from,
                    reason: rejection,
                    report,
                });
            }
            // A connect that waited for this link dials after all.
            if let Some(peer) = h.link.peer()
                && !self.inbound_handshake(peer)
                && let Some((connect, node, deadline, _)) = self.deferred.remove(peer)
            {
                self.connect_as(now, connect, node, deadline, false);
            }
            // A handshake slot is free again.
            self.accept_next();
        }
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        let (late, early): (Vec<_>, Vec<_>) = std::mem::take(&mut self.early)
            .into_iter()
            .partition(|(_, _, deadline)| *deadline <= now);
        self.early = early;
        for (token, _, _) in late {
            self.answer(token, OwnedAnswer::TimedOut);
        }
        if let Registration::Retry { at, .. } = self.registration
            && at <= now
        {
            self.register(now);
        }
        if self.accept_retry.is_some_and(|at| at <= now) {
            self.accept_retry = None;
            self.accept_next();
        }
        let due: Vec<Token> = self
            .links
            .iter()
            .filter(|(_, h)| h.link.poll_timeout().is_some_and(|t| t <= now))
            .map(|(t, _)| *t)
            .collect();
        for t in due {
            if let Some(h) = self.links.get_mut(&t) {
                h.link.handle_timeout(now);
            }
            self.drive(now, t);
        }
        let expired: Vec<NodeName> = self
            .awaiting
            .iter()
            .filter(|(_, (_, at))| *at <= now)
            .map(|(n, _)| n.clone())
            .collect();
        for n in expired {
            if let Some((c, _)) = self.awaiting.remove(&n) {
                let why = format!("{n}: lost a simultaneous connect and its own never came");
                self.answer(c, OwnedAnswer::Failed(Failure::timed_out(why)));
            }
        }
        let waited: Vec<NodeName> = self
            .deferred
            .iter()
            .filter(|(_, (_, _, _, wake))| *wake <= now)
            .map(|(n, _)| n.clone())
            .collect();
        for n in waited {
            if let Some((c, node, deadline, _)) = self.deferred.remove(&n) {
                if deadline <= now {
                    self.answer(c, OwnedAnswer::TimedOut);
                } else {
                    // The peer's handshake is still not done: dial.
                    self.connect_as(now, c, node, deadline, false);
                }
            }
        }
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let mut at = match self.registration {
            Registration::Retry { at, .. } if at != Instant::MAX => Some(at),
            _ => None,
        };
        for h in self.links.values() {
            at = earliest(at, h.link.poll_timeout());
        }
        for (_, wait) in self.awaiting.values() {
            at = earliest(at, Some(*wait));
        }
        for (_, _, _, wake) in self.deferred.values() {
            at = earliest(at, Some(*wake));
        }
        for (_, _, deadline) in &self.early {
            at = earliest(at, Some(*deadline));
        }
        earliest(at, self.accept_retry)
    }
}

fn epmd_host(node: &Node) -> String {
    match node.addr {
        Some(a) => a.ip().to_string(),
        None => node.name.host().to_owned(),
    }
}
