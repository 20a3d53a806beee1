//! What the DNS strategies share: the `nameservers`, `resolv_conf` and `polling_interval`
//! options, and one poll per interval: read `resolv.conf`, look the names up, and hand the
//! strategy either every record found or the reason the poll failed.

use core::time::Duration;
use std::net::{IpAddr, SocketAddr};

use crate::config::{ConfigError, Options, Value};
use crate::proto::dns::{Found, Kind};
use crate::proto::resolv_conf::ResolvConf;
use crate::reason::{Failure, FailureKind};
use crate::resolver::{LookupId, Outcome, Resolver};
use crate::strategy::Context;
use crate::strategy::{ExchangeId, ReadId, Reply, SocketEvent, SocketId};
use crate::time::{Instant, earliest};

/// Where `resolv.conf` is read from unless `resolv_conf` says otherwise.
pub const DEFAULT_RESOLV_CONF: &str = "/etc/resolv.conf";

/// The options every DNS strategy takes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DnsOptions {
    /// `polling_interval`: time between the starts of two polls.
    pub polling_interval: Duration,
    /// `nameservers`: asked instead of `resolv.conf`'s when not empty.
    pub nameservers: Vec<SocketAddr>,
    /// `resolv_conf`: the file to read, when not the default one.
    pub resolv_conf: Option<String>,
}

impl Default for DnsOptions {
    fn default() -> Self {
        DnsOptions {
            polling_interval: Duration::from_millis(5000),
            nameservers: Vec::new(),
            resolv_conf: None,
        }
    }
}

/// A name server written as `ip`, `ip:port` or `[ipv6]:port`.
fn nameserver(s: &str) -> Option<SocketAddr> {
    s.parse::<SocketAddr>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53)))
}

impl DnsOptions {
    /// Sets the time between polls.
    pub fn polling_interval(mut self, every: Duration) -> Self {
        self.polling_interval = every;
        self
    }

    /// Asks these name servers instead of `resolv.conf`'s.
    pub fn nameservers(mut self, servers: impl IntoIterator<Item = SocketAddr>) -> Self {
        self.nameservers = servers.into_iter().collect();
        self
    }

    /// Reads the resolver configuration from `path`, which must then exist (the default
    /// file may be absent: glibc's defaults apply).
    pub fn resolv_conf(mut self, path: impl Into<String>) -> Self {
        self.resolv_conf = Some(path.into());
        self
    }

    /// Reads `polling_interval` (or libcluster's documented alias `poll_interval`, with a
    /// warning), `nameservers` and `resolv_conf`.
    pub fn from_options(o: &mut Options<'_>) -> Result<Self, ConfigError> {
        let mut d = DnsOptions::default();
        let alias = o.positive_millis("poll_interval")?;
        match (o.positive_millis("polling_interval")?, alias) {
            (Some(p), Some(_)) => {
                o.warn(
                    "poll_interval",
                    "ignored: `polling_interval` is set too, and it is the one read",
                );
                d.polling_interval = p;
            }
            (Some(p), None) => d.polling_interval = p,
            (None, Some(p)) => {
                o.warn(
                    "poll_interval",
                    "accepted as `polling_interval`, the name libcluster's code reads; rename it",
                );
                d.polling_interval = p;
            }
            (None, None) => {}
        }
        for (path, s) in o.strings("nameservers")?.unwrap_or_default() {
            let a = nameserver(s).ok_or_else(|| {
                ConfigError::invalid(
                    path,
                    format!(
                        "{s:?} is not an address (\"10.0.0.2\", \"127.0.0.1:5353\" or \"[::1]:53\")"
                    ),
                )
            })?;
            d.nameservers.push(a);
        }
        if let Some(p) = o.string("resolv_conf")? {
            if p.is_empty() {
                return Err(ConfigError::invalid(
                    o.key_path("resolv_conf"),
                    "must not be empty",
                ));
            }
            d.resolv_conf = Some(p.to_owned());
        }
        Ok(d)
    }

    /// The options as configuration values.
    pub fn describe(&self) -> Vec<(String, Value)> {
        vec![
            (
                "polling_interval".into(),
                Value::millis(self.polling_interval),
            ),
            (
                "nameservers".into(),
                Value::List(
                    self.nameservers
                        .iter()
                        .map(|a| Value::str(a.to_string()))
                        .collect(),
                ),
            ),
            (
                "resolv_conf".into(),
                Value::str(self.resolv_conf.as_deref().unwrap_or(DEFAULT_RESOLV_CONF)),
            ),
        ]
    }
}

/// How a poll ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollResult {
    /// Every record found, for every name asked (possibly none: an empty answer).
    Found(Vec<Found>),
    /// Why the poll failed; the strategy keeps its last good set.
    Failed(Failure),
    /// Some lookups found records and others failed (an AAAA lookup refused beside a good A
    /// lookup, say): what was found is added, nothing is removed, and the failure is said.
    Partial(Vec<Found>, Failure),
}

/// The poll cycle; see the module documentation.
#[derive(Debug)]
pub struct Poller {
    options: DnsOptions,
    questions: Vec<(String, Kind)>,
    resolver: Resolver,
    /// Whether a `resolv.conf` was read successfully once.
    have_conf: bool,
    next: Option<Instant>,
    reading: Option<ReadId>,
    lookups: Vec<(LookupId, Option<Outcome>)>,
}

impl Poller {
    /// Polls for `questions` (names and record kinds) as `options` say.
    pub fn new(options: DnsOptions, questions: Vec<(String, Kind)>) -> Self {
        let mut conf = ResolvConf::default();
        if !options.nameservers.is_empty() {
            conf.nameservers = options.nameservers.clone();
        }
        Poller {
            options,
            questions,
            resolver: Resolver::new(conf),
            have_conf: false,
            next: None,
            reading: None,
            lookups: Vec::new(),
        }
    }

    /// The options.
    pub fn options(&self) -> &DnsOptions {
        &self.options
    }

    /// The resolver (for its counters).
    pub fn resolver(&self) -> &Resolver {
        &self.resolver
    }

    fn busy(&self) -> bool {
        self.reading.is_some() || !self.lookups.is_empty()
    }

    /// Starts the first poll.
    pub fn start(&mut self, now: Instant, cx: &mut Context<'_>) {
        self.poll(now, cx);
    }

    fn poll(&mut self, now: Instant, cx: &mut Context<'_>) {
        self.next = Some(now + self.options.polling_interval);
        let path = self
            .options
            .resolv_conf
            .clone()
            .unwrap_or_else(|| DEFAULT_RESOLV_CONF.to_owned());
        self.reading = Some(cx.read_file(path));
    }

    fn ask(&mut self, now: Instant, cx: &mut Context<'_>) {
        for i in 0..self.questions.len() {
            let (name, kind) = &self.questions[i];
            let (name, kind) = (name.clone(), *kind);
            let id = self.resolver.lookup(now, &name, kind, cx);
            self.lookups.push((id, None));
        }
        self.collect()
    }

    /// Moves finished lookups into place.
    fn collect(&mut self) {
        while let Some((id, outcome)) = self.resolver.poll_outcome() {
            if let Some(slot) = self.lookups.iter_mut().find(|(i, _)| *i == id) {
                slot.1 = Some(outcome);
            }
        }
    }

    /// The poll's result once every lookup has finished.
    fn finished(&mut self) -> Option<PollResult> {
        self.collect();
        if self.lookups.is_empty() || self.lookups.iter().any(|(_, o)| o.is_none()) {
            return None;
        }
        let lookups = core::mem::take(&mut self.lookups);
        let mut found = Vec::new();
        let mut failures = Vec::new();
        let mut nxdomain = 0;
        for ((_, outcome), (name, kind)) in lookups.into_iter().zip(&self.questions) {
            match outcome {
                Some(Outcome::Records(r)) => found.extend(r),
                Some(Outcome::Empty) | None => {}
                Some(Outcome::NxDomain) => nxdomain += 1,
                Some(Outcome::Failed(why)) => failures.push((format!("{name} {kind}"), why)),
            }
        }
        if let Some((_, first)) = failures.first() {
            // One line per reason: "app.test A, app.test AAAA: 10.0.0.2:53: Server Failure";
            // the first failure's kind.
            let kind = first.kind();
            let mut by_reason: Vec<(Failure, Vec<String>)> = Vec::new();
            for (what, why) in failures {
                match by_reason.iter_mut().find(|(w, _)| w.text() == why.text()) {
                    Some((_, whats)) => whats.push(what),
                    None => by_reason.push((why, vec![what])),
                }
            }
            let parts: Vec<String> = by_reason
                .into_iter()
                .map(|(why, whats)| format!("{}: {why}", whats.join(", ")))
                .collect();
            let why = Failure::new(kind, parts.join("; "));
            if !found.is_empty() {
                found.sort_unstable();
                found.dedup();
                return Some(PollResult::Partial(found, why));
            }
            return Some(PollResult::Failed(why));
        }
        if nxdomain == self.questions.len() {
            let mut names: Vec<&str> = self.questions.iter().map(|(n, _)| n.as_str()).collect();
            names.dedup();
            return Some(PollResult::Failed(Failure::new(
                FailureKind::NotFound,
                format!("{}: no such name (NXDOMAIN)", names.join(", ")),
            )));
        }
        found.sort_unstable();
        found.dedup();
        Some(PollResult::Found(found))
    }

    /// Polls when the interval has passed, and moves on from lookups that timed out.
    pub fn handle_timeout(&mut self, now: Instant, cx: &mut Context<'_>) -> Option<PollResult> {
        self.resolver.handle_timeout(now, cx);
        let done = self.finished();
        if !self.busy() && self.next.is_some_and(|t| t <= now) {
            self.poll(now, cx);
        }
        done
    }

    /// The `resolv.conf` read; `None` when it was not the poller's or the poll goes on.
    pub fn handle_file(
        &mut self,
        now: Instant,
        read: ReadId,
        result: Result<&[u8], &Failure>,
        cx: &mut Context<'_>,
    ) -> Option<PollResult> {
        if self.reading != Some(read) {
            return None;
        }
        self.reading = None;
        match result {
            Ok(bytes) => {
                let mut conf = ResolvConf::parse(&String::from_utf8_lossy(bytes));
                if !self.options.nameservers.is_empty() {
                    conf.nameservers = self.options.nameservers.clone();
                }
                self.resolver.set_conf(conf, cx);
                self.have_conf = true;
            }
            Err(why) => {
                // glibc runs on its defaults without the default file; a file the
                // configuration names must be there, unless it was read before.
                if let Some(path) = &self.options.resolv_conf
                    && !self.have_conf
                {
                    let why = why.clone().context(format_args!("cannot read {path}"));
                    return Some(PollResult::Failed(why));
                }
            }
        }
        self.ask(now, cx);
        self.finished()
    }

    /// What came back on the resolver's exchanges.
    pub fn handle_exchange(
        &mut self,
        now: Instant,
        exchange: ExchangeId,
        reply: Reply<'_>,
        cx: &mut Context<'_>,
    ) -> Option<PollResult> {
        if self.resolver.handle_exchange(now, exchange, reply, cx) {
            return self.finished();
        }
        None
    }

    /// What became of the resolver's sockets.
    pub fn handle_socket(
        &mut self,
        now: Instant,
        socket: SocketId,
        event: SocketEvent<'_>,
        cx: &mut Context<'_>,
    ) -> Option<PollResult> {
        if self.resolver.handle_socket(now, socket, event, cx) {
            return self.finished();
        }
        None
    }

    /// A datagram on the resolver's sockets.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        socket: SocketId,
        from: SocketAddr,
        data: &[u8],
        cx: &mut Context<'_>,
    ) -> Option<PollResult> {
        if self.resolver.handle_datagram(now, socket, from, data, cx) {
            return self.finished();
        }
        None
    }

    /// When [`handle_timeout`](Poller::handle_timeout) is next needed: the next poll (not
    /// before the current one has finished) or a lookup's deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let next = if self.busy() { None } else { self.next };
        earliest(next, self.resolver.poll_timeout())
    }
}

/// Implements [`Strategy`](crate::strategy::Strategy) for a DNS strategy: a type with a
/// `poller: Poller` field and the methods `report(&self, Option<PollResult>, &mut Context)`
/// and `describe_config(&self) -> Vec<(String, Value)>`. Every input goes to the poller, and
/// whatever poll it finishes to `report`.
macro_rules! polled_strategy {
    ($ty:ty, $kind:literal) => {
        impl $crate::strategy::Strategy for $ty {
            fn kind(&self) -> &'static str {
                $kind
            }

            fn start(
                &mut self,
                now: $crate::time::Instant,
                cx: &mut $crate::strategy::Context<'_>,
            ) {
                self.poller.start(now, cx);
            }

            fn handle_timeout(
                &mut self,
                now: $crate::time::Instant,
                cx: &mut $crate::strategy::Context<'_>,
            ) {
                let r = self.poller.handle_timeout(now, cx);
                self.report(r, cx);
            }

            fn handle_file(
                &mut self,
                now: $crate::time::Instant,
                read: $crate::strategy::ReadId,
                result: Result<&[u8], &$crate::reason::Failure>,
                cx: &mut $crate::strategy::Context<'_>,
            ) {
                let r = self.poller.handle_file(now, read, result, cx);
                self.report(r, cx);
            }

            fn handle_exchange(
                &mut self,
                now: $crate::time::Instant,
                exchange: $crate::strategy::ExchangeId,
                reply: $crate::strategy::Reply<'_>,
                cx: &mut $crate::strategy::Context<'_>,
            ) {
                let r = self.poller.handle_exchange(now, exchange, reply, cx);
                self.report(r, cx);
            }

            fn handle_socket(
                &mut self,
                now: $crate::time::Instant,
                socket: $crate::strategy::SocketId,
                event: $crate::strategy::SocketEvent<'_>,
                cx: &mut $crate::strategy::Context<'_>,
            ) {
                let r = self.poller.handle_socket(now, socket, event, cx);
                self.report(r, cx);
            }

            fn handle_datagram(
                &mut self,
                now: $crate::time::Instant,
                socket: $crate::strategy::SocketId,
                from: std::net::SocketAddr,
                data: &[u8],
                cx: &mut $crate::strategy::Context<'_>,
            ) {
                let r = self.poller.handle_datagram(now, socket, from, data, cx);
                self.report(r, cx);
            }

            fn poll_timeout(&self) -> Option<$crate::time::Instant> {
                self.poller.poll_timeout()
            }

            fn describe(&self) -> Vec<(String, $crate::config::Value)> {
                let mut d = self.describe_config();
                d.extend(self.poller.options().describe());
                d
            }
        }
    };
}
pub(crate) use polled_strategy;
