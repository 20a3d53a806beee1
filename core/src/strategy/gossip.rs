//! The Gossip strategy: heartbeats over UDP multicast, broadcast or unicast
//! (libcluster's `Cluster.Strategy.Gossip`, wire-compatible, and authenticated by default).
//!
//! Options (libcluster's names and defaults first):
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `port` | `45892` | UDP port, bound and sent to |
//! | `if_addr` | `"0.0.0.0"` | the interface: the default multicast interface when it is a specific IPv4 address |
//! | `multicast_if` | none | the interface to join the group on and send from: an IPv4 address, or for IPv6 an interface name or index |
//! | `multicast_addr` | `"233.252.1.32"` | the group (IPv4 or IPv6), or the broadcast address with `broadcast_only` |
//! | `multicast_ttl` | `1` | TTL (IPv4) or hop limit (IPv6) |
//! | `broadcast_only` | `false` | no multicast: send to `multicast_addr` as a broadcast address |
//! | `secret` | none | authenticates (and encrypts) heartbeats |
//! | `compat` | `false` | with a secret: libcluster's own encrypted format instead of muster's secure one |
//! | `heartbeat_max_ms` | `5000` | heartbeats go out at start, then after a uniform 1..this ms |
//! | `peers` | `[]` | `host:port` destinations heartbeats also go to (networks without multicast) |
//! | `expire_after` | none | lose a node not heard from for this long (ms), connected or not |
//! | `forget_after` | three `heartbeat_max_ms` | lose a node not heard from for this long (ms) once its connection is gone, so a node that stopped is not retried for ever |
//! | `replay_window` | `30000` | secure mode: how far a heartbeat's timestamp may be from this node's clock (ms) |
//! | `max_nodes` | `1024` | the most distinct senders remembered; more are rejected |
//! | `report_interval` | `60000` | rejections from one sender address are reported at most once per this (ms); all are counted |
//!
//! Without a secret, heartbeats are libcluster's plaintext form: anyone who can reach the port
//! can announce a node. With a secret and `compat = true`, they are libcluster's encrypted
//! form (AES-256-CBC, no integrity). With a secret and the default `compat = false`, they are
//! muster's secure form (a versioned header, keys derived with HKDF-SHA256,
//! encrypt-then-MAC): authenticated, timestamped, replay-checked. A packet of the other mode,
//! or of another version, is rejected and reported.
//!
//! The socket binds the wildcard address of the group's family: Linux delivers no group or
//! broadcast traffic to a socket bound to a unicast address, which is why libcluster's
//! `if_addr` binding silently receives nothing there. `if_addr` still picks the multicast
//! interface when it names one.

use core::time::Duration;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::Bytes;

use super::{Context, Environment, SocketEvent, SocketId, Strategy};
use crate::config::{ConfigError, Options, Value};
use crate::io::{Endpoint, Multicast, MulticastInterface, UdpOptions};
use crate::node::NodeName;
use crate::proto::gossip::{self, GossipError, MAX_PACKET, SecureKeys};
use crate::reason::{DiscoveryError, Rejection};
use crate::time::Instant;

/// How heartbeats are written and read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// libcluster's plaintext heartbeat (no secret).
    Plain,
    /// libcluster's encrypted heartbeat (a secret and `compat = true`).
    CompatSecret,
    /// muster's authenticated heartbeat (a secret, the default).
    Secure,
}

/// The Gossip strategy's configuration; see the module documentation for each field.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GossipConfig {
    /// `port`.
    pub port: u16,
    /// `if_addr`.
    pub if_addr: IpAddr,
    /// `multicast_if`.
    pub multicast_if: Option<MulticastInterface>,
    /// `multicast_addr`.
    pub multicast_addr: IpAddr,
    /// `multicast_ttl`.
    pub multicast_ttl: u32,
    /// `broadcast_only`.
    pub broadcast_only: bool,
    /// `secret`.
    pub secret: Option<Vec<u8>>,
    /// `compat`.
    pub compat: bool,
    /// `heartbeat_max_ms`.
    pub heartbeat_max: Duration,
    /// `peers`.
    pub peers: Vec<Endpoint>,
    /// `expire_after`.
    pub expire_after: Option<Duration>,
    /// `forget_after`: a node not heard from for this long whose connection is gone is lost
    /// (so it is no longer retried); `None` is three times `heartbeat_max`.
    pub forget_after: Option<Duration>,
    /// `replay_window`.
    pub replay_window: Duration,
    /// `max_nodes`.
    pub max_nodes: usize,
    /// `report_interval`.
    pub report_interval: Duration,
}

impl Default for GossipConfig {
    fn default() -> Self {
        GossipConfig {
            port: 45892,
            if_addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            multicast_if: None,
            multicast_addr: IpAddr::V4(Ipv4Addr::new(233, 252, 1, 32)),
            multicast_ttl: 1,
            broadcast_only: false,
            secret: None,
            compat: false,
            heartbeat_max: Duration::from_millis(5000),
            peers: Vec::new(),
            expire_after: None,
            forget_after: None,
            replay_window: Duration::from_secs(30),
            max_nodes: 1024,
            report_interval: Duration::from_secs(60),
        }
    }
}

fn parse_ip(o: &Options<'_>, key: &str, s: &str) -> Result<IpAddr, ConfigError> {
    s.parse()
        .map_err(|_| ConfigError::invalid(o.key_path(key), format!("{s:?} is not an IP address")))
}

/// `host:port`, with IPv6 addresses bracketed.
pub fn parse_endpoint(s: &str) -> Result<Endpoint, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(Endpoint::Addr(a));
    }
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("{s:?} is not host:port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{s:?}: {port:?} is not a port"))?;
    if host.is_empty() || host.contains(':') || host.contains(['[', ']']) {
        return Err(format!(
            "{s:?} is not host:port (bracket IPv6 addresses: [::1]:45892)"
        ));
    }
    Ok(Endpoint::Host {
        host: host.to_owned(),
        port,
    })
}

impl GossipConfig {
    /// The mode the secret and `compat` select.
    pub fn mode(&self) -> Mode {
        match (&self.secret, self.compat) {
            (None, _) => Mode::Plain,
            (Some(_), true) => Mode::CompatSecret,
            (Some(_), false) => Mode::Secure,
        }
    }

    /// Reads the options.
    pub fn from_options(o: &mut Options<'_>) -> Result<Self, ConfigError> {
        let d = GossipConfig::default();
        let port = match o.u64("port")? {
            None => d.port,
            Some(p) => u16::try_from(p).ok().filter(|p| *p != 0).ok_or_else(|| {
                ConfigError::invalid(
                    o.key_path("port"),
                    format!("{p} is not a UDP port (1-65535)"),
                )
            })?,
        };
        let multicast_addr = match o.string("multicast_addr")? {
            Some(s) => parse_ip(o, "multicast_addr", s)?,
            None => d.multicast_addr,
        };
        let if_addr = match o.string("if_addr")? {
            Some(s) => parse_ip(o, "if_addr", s)?,
            None if multicast_addr.is_ipv6() => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            None => d.if_addr,
        };
        let multicast_if = match o.string("multicast_if")? {
            None => None,
            Some(s) => Some(match (s.parse::<IpAddr>(), s.parse::<u32>()) {
                (Ok(IpAddr::V4(a)), _) => MulticastInterface::V4(a),
                (Ok(IpAddr::V6(_)), _) => {
                    return Err(ConfigError::invalid(
                        o.key_path("multicast_if"),
                        "an IPv6 interface is named by its name (eth0) or index, not an address",
                    ));
                }
                (_, Ok(i)) => MulticastInterface::Index(i),
                _ => MulticastInterface::Name(s.to_owned()),
            }),
        };
        if let Some(MulticastInterface::V4(_)) = multicast_if
            && multicast_addr.is_ipv6()
        {
            return Err(ConfigError::invalid(
                o.key_path("multicast_if"),
                "an IPv4 interface for an IPv6 group",
            ));
        }
        let broadcast_only = o.bool("broadcast_only")?.unwrap_or(d.broadcast_only);
        if !broadcast_only && !multicast_addr.is_multicast() {
            return Err(ConfigError::invalid(
                o.key_path("multicast_addr"),
                format!(
                    "{multicast_addr} is not a multicast group (set broadcast_only = true to broadcast)"
                ),
            ));
        }
        let multicast_ttl = match o.u64("multicast_ttl")? {
            None => d.multicast_ttl,
            Some(t) if t <= 255 => t as u32,
            Some(t) => {
                return Err(ConfigError::invalid(
                    o.key_path("multicast_ttl"),
                    format!("{t} is more than 255"),
                ));
            }
        };
        let secret = match o.string("secret")? {
            Some("") => {
                return Err(ConfigError::invalid(
                    o.key_path("secret"),
                    "must not be empty",
                ));
            }
            s => s.map(|s| s.as_bytes().to_vec()),
        };
        let compat = o.bool("compat")?.unwrap_or(d.compat);
        let heartbeat_max = o
            .positive_millis("heartbeat_max_ms")?
            .unwrap_or(d.heartbeat_max);
        let mut peers = Vec::new();
        for (path, s) in o.strings("peers")?.unwrap_or_default() {
            peers.push(parse_endpoint(s).map_err(|e| ConfigError::invalid(path, e))?);
        }
        let expire_after = o.positive_millis("expire_after")?;
        let forget_after = o.positive_millis("forget_after")?;
        let replay_window = o
            .positive_millis("replay_window")?
            .unwrap_or(d.replay_window);
        let max_nodes = match o.u64("max_nodes")? {
            None => d.max_nodes,
            Some(0) => {
                return Err(ConfigError::invalid(
                    o.key_path("max_nodes"),
                    "must be at least 1",
                ));
            }
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
        };
        let report_interval = o
            .positive_millis("report_interval")?
            .unwrap_or(d.report_interval);
        Ok(GossipConfig {
            port,
            if_addr,
            multicast_if,
            multicast_addr,
            multicast_ttl,
            broadcast_only,
            secret,
            compat,
            heartbeat_max,
            peers,
            expire_after,
            forget_after,
            replay_window,
            max_nodes,
            report_interval,
        })
    }

    /// The socket this configuration opens.
    pub fn udp_options(&self) -> UdpOptions {
        let any = match self.multicast_addr {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        let opts = UdpOptions::new(SocketAddr::new(any, self.port)).broadcast(true);
        if self.broadcast_only {
            return opts;
        }
        let interface = match (&self.multicast_if, self.if_addr) {
            (Some(i), _) => i.clone(),
            (None, IpAddr::V4(a)) if !a.is_unspecified() && self.multicast_addr.is_ipv4() => {
                MulticastInterface::V4(a)
            }
            _ => MulticastInterface::Default,
        };
        opts.multicast(Multicast::new(self.multicast_addr, interface).ttl(self.multicast_ttl))
    }
}

/// What is remembered of a sender.
#[derive(Debug, Clone, Copy)]
struct Sender {
    seen: Instant,
    /// Secure mode: the newest timestamp accepted from it.
    last_ts: u64,
}

/// Where the strategy is with its socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Socket {
    Closed,
    Opening(SocketId),
    Open(SocketId),
}

/// The Gossip strategy; see the module documentation.
pub struct Gossip {
    config: GossipConfig,
    mode: Mode,
    compat_key: [u8; 32],
    secure_keys: Option<SecureKeys>,
    socket: Socket,
    /// Timers: next heartbeat, next attempt to open the socket, next expiry sweep.
    next_beat: Option<Instant>,
    reopen_at: Option<Instant>,
    reopen_delay: Duration,
    next_sweep: Option<Instant>,
    /// An early heartbeat due, answering a newcomer, and when the last heartbeat of any kind
    /// went.
    answer_at: Option<Instant>,
    sent_at: Option<Instant>,
    /// The socket is open, but peers could not connect to this node yet: the first
    /// heartbeat waits (see [`Context::is_reachable`]).
    unannounced: bool,
    senders: BTreeMap<NodeName, Sender>,
    /// Secure mode: the last timestamp of senders forgotten within the replay window, so
    /// that their last heartbeat, sent again, is still a replay (bounded by `max_nodes`).
    forgotten: BTreeMap<NodeName, u64>,
    reports: BTreeMap<IpAddr, Instant>,
    send_failure_reported: Option<Instant>,
    last_sent_ts: u64,
    packet: Vec<u8>,
    warned_no_name: bool,
}

impl core::fmt::Debug for Gossip {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Gossip")
            .field("mode", &self.mode)
            .field("port", &self.config.port)
            .field("senders", &self.senders.len())
            .finish()
    }
}

/// The most sender addresses whose last report time is remembered.
const MAX_REPORTERS: usize = 1024;
const REOPEN_FIRST: Duration = Duration::from_secs(1);
const REOPEN_MAX: Duration = Duration::from_secs(60);
/// At most one early heartbeat (an answer to newcomers) per this, and none this close to
/// another heartbeat: the budget that keeps a flood of new senders, forged or not, from
/// making this node send more than ten a second, and a gap wide enough that two heartbeats do
/// not overtake each other on the way (secure mode refuses one older than the last).
const ANSWER_GAP: Duration = Duration::from_millis(100);
/// Answers are spread over this much per known member (up to half the heartbeat range), so
/// a thousand members hearing one newcomer do not answer in the same millisecond.
const ANSWER_SPREAD_PER_MEMBER: Duration = Duration::from_millis(2);

impl Gossip {
    /// The strategy for `config`.
    pub fn new(config: GossipConfig) -> Self {
        let mode = config.mode();
        let secret = config.secret.clone().unwrap_or_default();
        Gossip {
            compat_key: gossip::compat_key(&secret),
            secure_keys: (mode == Mode::Secure).then(|| SecureKeys::derive(&secret)),
            mode,
            config,
            socket: Socket::Closed,
            next_beat: None,
            reopen_at: None,
            reopen_delay: REOPEN_FIRST,
            next_sweep: None,
            answer_at: None,
            sent_at: None,
            unannounced: false,
            senders: BTreeMap::new(),
            forgotten: BTreeMap::new(),
            reports: BTreeMap::new(),
            send_failure_reported: None,
            last_sent_ts: 0,
            packet: Vec::with_capacity(MAX_PACKET),
            warned_no_name: false,
        }
    }

    /// The registry's builder.
    pub(crate) fn build(
        o: &mut Options<'_>,
        _env: &Environment,
    ) -> Result<Box<dyn Strategy>, ConfigError> {
        Ok(Box::new(Gossip::new(GossipConfig::from_options(o)?)))
    }

    /// The mode heartbeats use.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    fn open(&mut self, cx: &mut Context<'_>) {
        self.socket = Socket::Opening(cx.open_udp(self.config.udp_options()));
        self.reopen_at = None;
    }

    fn schedule_beat(&mut self, now: Instant, cx: &mut Context<'_>) {
        let max = u64::try_from(self.config.heartbeat_max.as_millis()).unwrap_or(u64::MAX);
        let ms = cx.rng().range_inclusive(1, max.max(1));
        self.next_beat = Some(now + Duration::from_millis(ms));
    }

    /// Writes this node's heartbeat into `self.packet`; false if it cannot be written.
    fn write_packet(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(me) = cx.this_node().cloned() else {
            if !self.warned_no_name {
                self.warned_no_name = true;
                cx.discovery_failed(DiscoveryError::Setup(
                    "this node has no name, so it listens but sends no heartbeats".into(),
                ));
            }
            return false;
        };
        self.packet.clear();
        match self.mode {
            Mode::Plain => gossip::write_plain(&mut self.packet, me.as_str()),
            Mode::CompatSecret => {
                let mut iv = [0u8; 16];
                cx.rng().fill_bytes(&mut iv);
                gossip::write_compat_secret(&mut self.packet, &self.compat_key, iv, me.as_str());
            }
            Mode::Secure => {
                let Some(unix) = cx.unix_time() else {
                    if !self.warned_no_name {
                        self.warned_no_name = true;
                        cx.discovery_failed(DiscoveryError::Setup(
                            "secure gossip needs the wall clock, and the adapter gave none".into(),
                        ));
                    }
                    return false;
                };
                let ms = u64::try_from(unix.as_millis()).unwrap_or(u64::MAX);
                // Strictly increasing, so receivers can refuse anything not newer.
                self.last_sent_ts = ms.max(self.last_sent_ts.saturating_add(1));
                let mut iv = [0u8; 16];
                cx.rng().fill_bytes(&mut iv);
                if let Some(keys) = &self.secure_keys {
                    gossip::write_secure(
                        &mut self.packet,
                        keys,
                        self.last_sent_ts,
                        iv,
                        me.as_str(),
                    );
                }
            }
        }
        true
    }

    fn beat(&mut self, now: Instant, cx: &mut Context<'_>) {
        self.schedule_beat(now, cx);
        // Every heartbeat is also a poll: reconcile against the connector's actual list, so
        // a node that dropped is reconnected even if nobody said so.
        cx.reconcile();
        self.send_heartbeat(now, cx);
    }

    /// A sender this node did not know was heard (its packet passed every check): send our
    /// own heartbeat soon, so that it learns this node within a round trip instead of at our
    /// next random heartbeat. The heartbeat goes where every heartbeat goes (the group, the
    /// peers) — never back to the packet's source, so a forged source gets nothing — and it
    /// is the same heartbeat, no larger. One early heartbeat answers every newcomer heard
    /// before it leaves; at most one goes per [`ANSWER_GAP`].
    fn answer_newcomer(&mut self, now: Instant, cx: &mut Context<'_>) {
        // Not before this node may be announced: its first heartbeat will answer then.
        if self.answer_at.is_some() || self.unannounced || !matches!(self.socket, Socket::Open(_)) {
            return;
        }
        let earliest = self.sent_at.map_or(now, |t| (t + ANSWER_GAP).max(now));
        let cap = self.config.heartbeat_max / 2;
        let members = u32::try_from(self.senders.len()).unwrap_or(u32::MAX);
        let spread = ANSWER_SPREAD_PER_MEMBER.saturating_mul(members).min(cap);
        let spread_ms = u64::try_from(spread.as_millis()).unwrap_or(u64::MAX);
        let at = earliest + Duration::from_millis(cx.rng().range_inclusive(0, spread_ms));
        if self.next_beat.is_some_and(|b| b <= at + ANSWER_GAP) {
            return;
        }
        self.answer_at = Some(at);
    }

    /// Sends this node's heartbeat on the open socket, to the group and the peers.
    fn send_heartbeat(&mut self, now: Instant, cx: &mut Context<'_>) {
        self.sent_at = Some(now);
        let Socket::Open(socket) = self.socket else {
            return;
        };
        if !self.write_packet(cx) {
            return;
        }
        let data = Bytes::copy_from_slice(&self.packet);
        let group = SocketAddr::new(self.config.multicast_addr, self.config.port);
        cx.send_datagram(socket, Endpoint::Addr(group), data.clone());
        for peer in &self.config.peers {
            cx.send_datagram(socket, peer.clone(), data.clone());
        }
    }

    /// How long a node may go unheard, once its connection is gone, before it is lost.
    fn forget_after(&self) -> Duration {
        self.config
            .forget_after
            .unwrap_or(self.config.heartbeat_max.saturating_mul(3))
    }

    /// How often senders are swept.
    fn sweep_every(&self) -> Duration {
        let t = match self.config.expire_after {
            Some(ttl) => ttl.min(self.forget_after()),
            None => self.forget_after(),
        };
        (t / 4).max(Duration::from_millis(10))
    }

    /// Loses the senders gone quiet: after `expire_after` whatever their connection, and
    /// after `forget_after` once their connection is gone (a node that stopped, in a rolling
    /// deploy, is not retried for ever; a connected node is never lost this way).
    fn sweep(&mut self, now: Instant, cx: &mut Context<'_>) {
        let forget = self.forget_after();
        let expire = self.config.expire_after;
        let stale: Vec<NodeName> = self
            .senders
            .iter()
            .filter(|(n, s)| {
                let quiet = now.saturating_duration_since(s.seen);
                expire.is_some_and(|ttl| quiet >= ttl)
                    || (quiet >= forget && !cx.is_connected(n.as_str()))
            })
            .map(|(n, _)| n.clone())
            .collect();
        // Timestamps older than the window are refused by the window itself.
        let window = u64::try_from(self.config.replay_window.as_millis()).unwrap_or(u64::MAX);
        if let Some(here) = cx.unix_time() {
            let oldest = u64::try_from(here.as_millis())
                .unwrap_or(u64::MAX)
                .saturating_sub(window);
            self.forgotten.retain(|_, ts| *ts >= oldest);
        }
        for name in stale {
            if let Some(s) = self.senders.remove(&name)
                && s.last_ts > 0
            {
                if self.forgotten.len() >= self.config.max_nodes
                    && let Some(oldest) = self
                        .forgotten
                        .iter()
                        .min_by_key(|(_, ts)| **ts)
                        .map(|(n, _)| n.clone())
                {
                    self.forgotten.remove(&oldest);
                }
                self.forgotten.insert(name.clone(), s.last_ts);
            }
            cx.lose(name.as_str());
        }
        self.next_sweep = Some(now + self.sweep_every());
    }

    /// Counts a rejection, and reports it unless this sender was reported recently.
    fn reject(&mut self, now: Instant, from: SocketAddr, why: Rejection, cx: &mut Context<'_>) {
        let ip = from.ip();
        let every = self.config.report_interval;
        let due = match self.reports.get(&ip) {
            Some(at) => now.saturating_duration_since(*at) >= every,
            None => {
                if self.reports.len() >= MAX_REPORTERS {
                    self.reports
                        .retain(|_, at| now.saturating_duration_since(*at) < every);
                }
                self.reports.len() < MAX_REPORTERS
            }
        };
        if due {
            self.reports.insert(ip, now);
            let note = format!(
                "(further rejections from {ip} are counted, reported at most every {} s)",
                every.as_secs()
            );
            cx.rejected(Some(from), why.with_note(note));
        } else {
            cx.count_rejected();
        }
    }

    fn receive(&mut self, now: Instant, from: SocketAddr, data: &[u8], cx: &mut Context<'_>) {
        let mut scratch = [0u8; MAX_PACKET];
        let decoded: Result<(&str, Option<u64>), GossipError> = match self.mode {
            Mode::Plain => gossip::read_plain(data).map(|n| (n, None)),
            Mode::CompatSecret => {
                gossip::read_compat_secret(data, &self.compat_key, &mut scratch).map(|n| (n, None))
            }
            Mode::Secure => match &self.secure_keys {
                Some(keys) => gossip::read_secure(data, keys, &mut scratch)
                    .map(|s| (s.node, Some(s.timestamp_ms))),
                None => Err(GossipError::NotSecure),
            },
        };
        let (node, ts) = match decoded {
            Ok(x) => x,
            Err(e) => return self.reject(now, from, rejection(e), cx),
        };
        if cx.this_node().is_some_and(|me| me.as_str() == node) {
            return;
        }
        if let Some(ts) = ts {
            let window = u64::try_from(self.config.replay_window.as_millis()).unwrap_or(u64::MAX);
            let Some(unix) = cx.unix_time() else {
                let why = "secure heartbeat, but this node has no wall clock to check it against";
                return self.reject(now, from, Rejection::Replayed(why.into()), cx);
            };
            let here = u64::try_from(unix.as_millis()).unwrap_or(u64::MAX);
            if ts.abs_diff(here) > window {
                let why = format!(
                    "heartbeat from {node} is {} ms off this node's clock, outside the replay window (replayed, or clocks apart)",
                    ts.abs_diff(here)
                );
                return self.reject(now, from, Rejection::Replayed(why), cx);
            }
            let last = match self.senders.get(node) {
                Some(s) => Some(s.last_ts),
                None => self.forgotten.get(node).copied(),
            };
            if last.is_some_and(|last| ts <= last) {
                let why = format!(
                    "replayed heartbeat from {node} (timestamp not newer than the last one)"
                );
                return self.reject(now, from, Rejection::Replayed(why), cx);
            }
        }
        let last_ts = ts.unwrap_or(0);
        if let Some(s) = self.senders.get_mut(node) {
            s.seen = now;
            s.last_ts = last_ts;
            return;
        }
        if self.senders.len() >= self.config.max_nodes {
            let why = format!(
                "{node}: already {} senders (max_nodes)",
                self.config.max_nodes
            );
            return self.reject(now, from, Rejection::OverLimit(why), cx);
        }
        let name = match NodeName::new(node) {
            Ok(n) => n,
            Err(e) => {
                let why = Rejection::InvalidNode(format!("{node:?}: {e}"));
                return self.reject(now, from, why, cx);
            }
        };
        cx.found(name.as_str(), None).ok();
        self.forgotten.remove(&name);
        self.senders.insert(name, Sender { seen: now, last_ts });
        self.answer_newcomer(now, cx);
    }
}

/// The rejection a packet that could not be read is.
fn rejection(e: GossipError) -> Rejection {
    let why = e.to_string();
    match e {
        GossipError::BadTag | GossipError::Decrypt => Rejection::Unauthenticated(why),
        GossipError::SecureInCompat
        | GossipError::PlainInSecure
        | GossipError::NotSecure
        | GossipError::Version(_) => Rejection::Mismatch(why),
        _ => Rejection::Malformed(why),
    }
}

impl Strategy for Gossip {
    fn kind(&self) -> &'static str {
        "gossip"
    }

    fn start(&mut self, now: Instant, cx: &mut Context<'_>) {
        self.open(cx);
        self.next_sweep = Some(now + self.sweep_every());
    }

    fn handle_timeout(&mut self, now: Instant, cx: &mut Context<'_>) {
        if self.reopen_at.is_some_and(|t| t <= now) {
            self.open(cx);
        }
        if self.unannounced && cx.is_reachable() {
            self.unannounced = false;
            self.beat(now, cx);
        }
        if self.next_beat.is_some_and(|t| t <= now) {
            self.answer_at = None;
            self.beat(now, cx);
        }
        if self.answer_at.is_some_and(|t| t <= now) {
            self.answer_at = None;
            self.send_heartbeat(now, cx);
        }
        if self.next_sweep.is_some_and(|t| t <= now) {
            self.sweep(now, cx);
        }
    }

    fn handle_socket(
        &mut self,
        now: Instant,
        socket: SocketId,
        event: SocketEvent<'_>,
        cx: &mut Context<'_>,
    ) {
        match (self.socket, event) {
            (Socket::Opening(s), SocketEvent::Opened(_)) if s == socket => {
                self.socket = Socket::Open(socket);
                self.reopen_delay = REOPEN_FIRST;
                // The first heartbeat goes out at once, as libcluster's does — once peers
                // can connect to this node: before, they would fail and back off.
                match cx.is_reachable() {
                    true => self.beat(now, cx),
                    false => self.unannounced = true,
                }
            }
            (Socket::Opening(s), SocketEvent::OpenFailed(why)) if s == socket => {
                self.socket = Socket::Closed;
                let why = why.clone().context(format_args!(
                    "cannot open the gossip socket (retrying in {} s)",
                    self.reopen_delay.as_secs()
                ));
                cx.discovery_failed(DiscoveryError::request("gossip", why));
                self.reopen_at = Some(now + self.reopen_delay);
                self.reopen_delay = (self.reopen_delay * 2).min(REOPEN_MAX);
            }
            (Socket::Open(s), SocketEvent::SendFailed(e)) if s == socket => {
                let every = self.config.report_interval;
                let due = self
                    .send_failure_reported
                    .is_none_or(|at| now.saturating_duration_since(at) >= every);
                if due {
                    self.send_failure_reported = Some(now);
                    let why = e.clone().context("cannot send a heartbeat");
                    cx.discovery_failed(DiscoveryError::request("gossip", why));
                }
            }
            _ => {}
        }
    }

    fn handle_datagram(
        &mut self,
        now: Instant,
        socket: SocketId,
        from: SocketAddr,
        data: &[u8],
        cx: &mut Context<'_>,
    ) {
        if self.socket == Socket::Open(socket) {
            self.receive(now, from, data, cx);
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let t = crate::time::earliest(self.next_beat, self.reopen_at);
        let t = crate::time::earliest(t, self.answer_at);
        crate::time::earliest(t, self.next_sweep)
    }

    fn describe(&self) -> Vec<(String, Value)> {
        let c = &self.config;
        let mut v = vec![
            ("port".into(), Value::Int(i64::from(c.port))),
            ("if_addr".into(), Value::str(c.if_addr.to_string())),
        ];
        if let Some(i) = &c.multicast_if {
            let text = match i {
                MulticastInterface::V4(a) => a.to_string(),
                MulticastInterface::Index(n) => n.to_string(),
                MulticastInterface::Name(n) => n.clone(),
                _ => String::new(),
            };
            v.push(("multicast_if".into(), Value::str(text)));
        }
        v.extend([
            (
                "multicast_addr".into(),
                Value::str(c.multicast_addr.to_string()),
            ),
            (
                "multicast_ttl".into(),
                Value::Int(i64::from(c.multicast_ttl)),
            ),
            ("broadcast_only".into(), Value::Bool(c.broadcast_only)),
        ]);
        if c.secret.is_some() {
            v.push((
                "#secret".into(),
                Value::str("set in the configuration (not shown)"),
            ));
        }
        v.extend([
            ("compat".into(), Value::Bool(c.compat)),
            ("heartbeat_max_ms".into(), Value::millis(c.heartbeat_max)),
            (
                "peers".into(),
                Value::List(c.peers.iter().map(|p| Value::str(p.to_string())).collect()),
            ),
        ]);
        if let Some(f) = c.forget_after {
            v.push(("forget_after".into(), Value::millis(f)));
        }
        if let Some(e) = c.expire_after {
            v.push(("expire_after".into(), Value::millis(e)));
        }
        v.extend([
            ("replay_window".into(), Value::millis(c.replay_window)),
            ("max_nodes".into(), Value::Int(c.max_nodes as i64)),
            ("report_interval".into(), Value::millis(c.report_interval)),
        ]);
        v
    }
}
