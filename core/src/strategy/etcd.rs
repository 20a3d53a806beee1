//! The etcd strategy: every node registers itself under a key with a lease in etcd v3, and
//! watches the keys of its topology (the counterpart of the libcluster_etcd add-on, on etcd's
//! v3 API instead of the v2 API it polls).
//!
//! Each node grants a lease of `ttl` seconds, puts `prefix + node name` (its value is the node
//! name too) under it, and keeps the lease alive every third of the TTL. It reads every key
//! under the prefix once (a range), then watches the prefix from the range's revision: a node
//! is found when its key is put and lost when its key goes — deleted, or its lease expired
//! because the node stopped keeping it alive (killed, partitioned). Everything goes through
//! etcd's JSON gateway (`/v3/...`, etcd 3.4 and later) as plain HTTP/1.1 exchanges, optionally
//! over TLS verified against `ca_file`, else the host's CA bundle.
//!
//! A node registers once it is reachable (an Erlang node once EPMD has registered it), and
//! only if the cluster has a name for it; without one it only watches. With `username` and
//! `password` it first authenticates (`/v3/auth/authenticate`) and sends the token with every
//! request; a token the server no longer knows (expired, or etcd restarted) is replaced once,
//! at once.
//!
//! Options:
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `endpoints` | required | etcd's client URLs, `http://host[:port]` or `https://host[:port]` (port 2379 by default) |
//! | `prefix` | `"/muster/<topology>/"` | the keys of this topology's nodes: `prefix + node name` |
//! | `ttl` | `10` | seconds the registration outlives the node's last keep-alive (at least 2) |
//! | `username`, `password` | none | etcd authentication (both or neither) |
//! | `ca_file` | the system's bundle | PEM CA certificates `https` endpoints are verified against |
//! | `cert_file`, `key_file` | none | a client certificate (PEM chain) and its key (PKCS#8, PKCS#1 or SEC1), for `https` endpoints that authenticate clients by certificate (etcd's `--client-cert-auth`); both or neither |
//! | `request_timeout` | `5000` | ms a request may take (a keep-alive at most a third of `ttl`) |
//! | `watch_timeout` | `300000` | ms a watch lasts before it is opened again from where it was |
//! | `max_response_bytes` | `33554432` | the largest response accepted (and the most a watch reads before it is opened again) |
//!
//! Failures keep the last good set and say why (`discovery_failed`): a failed request, an
//! error answer or a broken session moves to the next endpoint, after a backoff that doubles
//! from 200 ms up to 5 s (at most a third of `ttl`, so a registration outlives a failover),
//! and reads the keys again. A watch broken mid-stream resumes from the revision after the
//! last one seen, without reading the keys again; a watch whose revision was compacted reads
//! them again. A lease that expired (the node was paused, etcd lost its data) is granted anew,
//! the key put again and the keys read again (a store that lost its data counts revisions
//! from 1 again); the node's own key is put again if someone deletes it.
//!
//! When the cluster leaves, the strategy revokes its lease (`/v3/lease/revoke`, one last
//! exchange within `request_timeout`): etcd deletes the node's key at once, and peers lose the
//! node without waiting for the TTL. A node that cannot (killed, etcd unreachable) is lost
//! when its lease expires, within `ttl`.

use core::time::Duration;
use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;

use super::http_call::{HttpCall, authority, host_port};
use super::http_stream::{HttpStream, StreamEnd};
use super::secret::Secret;
use super::{Context, Environment, ExchangeId, ReadId, Reply, Strategy};
use crate::config::{ConfigError, Options, Value};
use crate::io::{Endpoint, Exchange, Identity, Tls};
use crate::proto::etcd::{self, ChangeKind, EtcdError, WatchMessage};
use crate::proto::http::{self, DEFAULT_MAX_BODY, Response};
use crate::reason::{DiscoveryError, Failure, escape};
use crate::time::{Instant, earliest};

/// etcd's client port unless a URL says otherwise.
pub const DEFAULT_PORT: u16 = 2379;
/// The lease's TTL unless configured, in seconds.
pub const DEFAULT_TTL: u64 = 10;
/// The shortest TTL accepted, in seconds: etcd raises shorter ones to its own minimum (about
/// 1.5 election timeouts), and a third of it must leave room for a keep-alive.
pub const MIN_TTL: u64 = 2;
/// The longest TTL etcd grants, in seconds.
pub const MAX_TTL: u64 = 9_000_000_000;
/// The first backoff after a failure; it doubles with each failure in a row.
const BACKOFF_BASE: Duration = Duration::from_millis(200);
/// The longest backoff (when a third of the TTL is not shorter).
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A watch that lasted this long before it broke starts its backoff over.
const WATCH_HEALTHY: Duration = Duration::from_secs(60);

/// One of etcd's client URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EtcdEndpoint {
    /// The URL as configured.
    pub url: String,
    /// Whether it is `https`.
    pub tls: bool,
    /// The host: a name or an IP address (the name its certificate must carry).
    pub host: String,
    /// The port.
    pub port: u16,
    endpoint: Endpoint,
    authority: String,
}

impl EtcdEndpoint {
    /// Reads `http(s)://host[:port]` (a trailing `/` allowed, nothing else after the
    /// authority); `None` if it is not one.
    pub fn parse(url: &str) -> Option<Self> {
        let (tls, rest) = match url.strip_prefix("https://") {
            Some(r) => (true, r),
            None => (false, url.strip_prefix("http://")?),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
            return None;
        }
        let (host, port) = host_port(rest, DEFAULT_PORT)?;
        if host.is_empty() || port == 0 || host.contains(|c: char| c.is_whitespace()) {
            return None;
        }
        let endpoint = match host.parse::<IpAddr>() {
            Ok(ip) => Endpoint::Addr(SocketAddr::new(ip, port)),
            Err(_) => Endpoint::Host {
                host: host.trim_end_matches('.').to_owned(),
                port,
            },
        };
        Some(EtcdEndpoint {
            url: url.to_owned(),
            tls,
            // Never the default port of the scheme: etcd's is its own.
            authority: authority(&host, port, 0),
            host,
            port,
            endpoint,
        })
    }
}

/// The etcd strategy's configuration.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EtcdConfig {
    /// `endpoints`, in order: the first is tried first.
    pub endpoints: Vec<EtcdEndpoint>,
    /// `prefix`; `None`: `/muster/<topology>/`.
    pub prefix: Option<String>,
    /// `ttl`, in seconds.
    pub ttl: u64,
    /// `username`.
    pub username: Option<String>,
    password: Option<String>,
    /// `ca_file`.
    pub ca_file: Option<String>,
    /// `cert_file` and `key_file`: the client certificate (chain) and its key, presented to
    /// endpoints that authenticate clients by certificate.
    pub client_cert: Option<(String, String)>,
    /// `request_timeout`.
    pub request_timeout: Duration,
    /// `watch_timeout`.
    pub watch_timeout: Duration,
    /// `max_response_bytes`.
    pub max_response_bytes: usize,
}

impl core::fmt::Debug for EtcdConfig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("EtcdConfig")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .field("ttl", &self.ttl)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "(not shown)"))
            .field("ca_file", &self.ca_file)
            .field("client_cert", &self.client_cert)
            .field("request_timeout", &self.request_timeout)
            .field("watch_timeout", &self.watch_timeout)
            .field("max_response_bytes", &self.max_response_bytes)
            .finish()
    }
}

impl EtcdConfig {
    /// The configuration for `endpoints`, every option at its default.
    pub fn new(endpoints: Vec<EtcdEndpoint>) -> Self {
        EtcdConfig {
            endpoints,
            prefix: None,
            ttl: DEFAULT_TTL,
            username: None,
            password: None,
            ca_file: None,
            client_cert: None,
            request_timeout: Duration::from_millis(5000),
            watch_timeout: Duration::from_millis(300_000),
            max_response_bytes: DEFAULT_MAX_BODY,
        }
    }

    /// Authenticates as `username` with `password`.
    pub fn credentials(mut self, username: impl Into<String>, password: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self.password = Some(password.into());
        self
    }

    /// How often the lease is kept alive: a third of the TTL.
    pub fn keepalive_interval(&self) -> Duration {
        Duration::from_millis(self.ttl.saturating_mul(1000) / 3)
    }

    /// Reads the options.
    pub fn from_options(o: &mut Options<'_>) -> Result<Self, ConfigError> {
        let list = o.strings("endpoints")?;
        let list = o.required("endpoints", list)?;
        if list.is_empty() {
            return Err(ConfigError::invalid(
                o.key_path("endpoints"),
                "must name at least one etcd client URL",
            ));
        }
        let mut endpoints = Vec::with_capacity(list.len());
        for (path, url) in list {
            let e = EtcdEndpoint::parse(url).ok_or_else(|| {
                ConfigError::invalid(
                    path,
                    format!("{url:?} is not an http://host[:port] or https://host[:port] URL"),
                )
            })?;
            endpoints.push(e);
        }
        let mut c = EtcdConfig::new(endpoints);
        match o.string("prefix")? {
            Some("") => {
                return Err(ConfigError::invalid(
                    o.key_path("prefix"),
                    "must not be empty (it would watch every key in etcd)",
                ));
            }
            Some(p) => {
                if !p.ends_with('/') {
                    o.warn(
                        "prefix",
                        format!(
                            "{p:?} does not end with '/': keys of other prefixes that start with it are read too"
                        ),
                    );
                }
                c.prefix = Some(p.to_owned());
            }
            None => {}
        }
        if let Some(ttl) = o.u64("ttl")? {
            if !(MIN_TTL..=MAX_TTL).contains(&ttl) {
                return Err(ConfigError::invalid(
                    o.key_path("ttl"),
                    format!("{ttl} is not between {MIN_TTL} and {MAX_TTL} seconds"),
                ));
            }
            c.ttl = ttl;
        }
        let username = o.string("username")?;
        let password = o.string("password")?;
        match (username, password) {
            (Some(""), _) => {
                return Err(ConfigError::invalid(
                    o.key_path("username"),
                    "must not be empty",
                ));
            }
            (Some(u), Some(p)) => {
                c.username = Some(u.to_owned());
                c.password = Some(p.to_owned());
            }
            (Some(_), None) => {
                return Err(ConfigError::invalid(
                    o.key_path("password"),
                    "missing: username is set",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::invalid(
                    o.key_path("username"),
                    "missing: password is set",
                ));
            }
            (None, None) => {}
        }
        let file = |o: &mut Options<'_>, key: &'static str| match o.string(key)? {
            Some("") => Err(ConfigError::invalid(o.key_path(key), "must not be empty")),
            f => Ok(f.map(str::to_owned)),
        };
        c.client_cert = match (file(o, "cert_file")?, file(o, "key_file")?) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (Some(_), None) => {
                return Err(ConfigError::invalid(
                    o.key_path("key_file"),
                    "missing: cert_file is set",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::invalid(
                    o.key_path("cert_file"),
                    "missing: key_file is set",
                ));
            }
            (None, None) => None,
        };
        if c.client_cert.is_some() && !c.endpoints.iter().any(|e| e.tls) {
            o.warn("cert_file", "no endpoint is https: it is not used");
        }
        match o.string("ca_file")? {
            Some("") => {
                return Err(ConfigError::invalid(
                    o.key_path("ca_file"),
                    "must not be empty",
                ));
            }
            Some(f) => c.ca_file = Some(f.to_owned()),
            None => {}
        }
        if c.ca_file.is_some() && !c.endpoints.iter().any(|e| e.tls) {
            o.warn("ca_file", "no endpoint is https: it is not used");
        }
        if c.password.is_some() && c.endpoints.iter().any(|e| !e.tls) {
            o.warn(
                "password",
                "sent in the clear to the http:// endpoints, with its token after it",
            );
        }
        if let Some(d) = o.positive_millis("request_timeout")? {
            c.request_timeout = d;
        }
        if let Some(d) = o.positive_millis("watch_timeout")? {
            c.watch_timeout = d;
        }
        if let Some(max) = o.u64("max_response_bytes")? {
            if max == 0 {
                return Err(ConfigError::invalid(
                    o.key_path("max_response_bytes"),
                    "must be greater than zero",
                ));
            }
            c.max_response_bytes = usize::try_from(max).unwrap_or(usize::MAX);
        }
        Ok(c)
    }
}

/// The requests of a session, one at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Authenticate,
    Grant,
    Put,
    KeepAlive,
    Range,
}

/// Which PEM file a read is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pem {
    Ca,
    Cert,
    Key,
}

/// The etcd strategy; see the module documentation.
#[derive(Debug)]
pub struct Etcd {
    config: EtcdConfig,
    /// The prefix in use (the configured one, or the topology's default once started).
    prefix: Vec<u8>,
    range_end: Vec<u8>,
    /// The endpoint in use.
    current: usize,
    ca: Option<Bytes>,
    /// The client certificate and key, once read.
    cert: Option<Bytes>,
    key: Option<Secret<Bytes>>,
    /// The file being read, and which it is.
    reading: Option<(ReadId, Pem)>,
    token: Option<Secret<String>>,
    /// A request was refused for its token and a new one is being used: a second refusal is
    /// a failure, not a loop.
    reauthenticated: bool,
    /// This node's lease, once granted.
    lease: Option<i64>,
    /// Whether this node's key is in place under `lease`, as far as the strategy knows.
    registered: bool,
    /// This node's key, once started with a name.
    own_key: Option<Vec<u8>>,
    next_keepalive: Option<Instant>,
    /// Where the next watch starts; `None` reads the keys first.
    revision: Option<i64>,
    /// The name part of every key under the prefix.
    nodes: BTreeSet<Vec<u8>>,
    call: HttpCall,
    step: Option<Step>,
    stream: HttpStream,
    /// Whether the open watch has said anything (so the server accepted it).
    watch_created: bool,
    watch_started: Instant,
    /// Nothing is sent before this time (a backoff).
    retry_at: Option<Instant>,
    /// Session failures in a row.
    failures: u32,
    /// Watches broken in a row.
    breaks: u32,
    /// How many keys named no node at the last commit (reported when it changes).
    unnamed: super::unnamed::Unnamed,
}

impl Etcd {
    /// The strategy for `config`.
    pub fn new(config: EtcdConfig) -> Self {
        Etcd {
            config,
            prefix: Vec::new(),
            range_end: Vec::new(),
            current: 0,
            ca: None,
            cert: None,
            key: None,
            reading: None,
            token: None,
            reauthenticated: false,
            lease: None,
            registered: false,
            own_key: None,
            next_keepalive: None,
            revision: None,
            nodes: BTreeSet::new(),
            call: HttpCall::default(),
            step: None,
            stream: HttpStream::default(),
            watch_created: false,
            watch_started: Instant::ZERO,
            retry_at: None,
            failures: 0,
            breaks: 0,
            unnamed: Default::default(),
        }
    }

    pub(crate) fn build(
        o: &mut Options<'_>,
        _env: &Environment,
    ) -> Result<Box<dyn Strategy>, ConfigError> {
        Ok(Box::new(Etcd::new(EtcdConfig::from_options(o)?)))
    }

    fn endpoint(&self) -> &EtcdEndpoint {
        // `current` only ever indexes the list, which is never empty.
        &self.config.endpoints[self.current % self.config.endpoints.len().max(1)]
    }

    fn prefix_text(&self) -> String {
        String::from_utf8_lossy(&self.prefix).into_owned()
    }

    /// What a step does, for the events that say why it failed.
    fn source(&self, step: Step) -> String {
        let what = match step {
            Step::Authenticate => format!(
                "authenticating as {:?}",
                self.config.username.as_deref().unwrap_or("")
            ),
            Step::Grant => "granting a lease".to_owned(),
            Step::Put => format!(
                "registering {}",
                String::from_utf8_lossy(self.own_key.as_deref().unwrap_or_default())
            ),
            Step::KeepAlive => format!("keeping lease {:x} alive", self.lease.unwrap_or(0)),
            Step::Range => format!("reading {}", self.prefix_text()),
        };
        format!("etcd {}: {what}", self.endpoint().url)
    }

    /// The next request of the session, if nothing is in flight and no backoff is running:
    /// the CA, a token, a lease, this node's key, a keep-alive that is due, the keys, then
    /// the watch.
    fn drive(&mut self, now: Instant, cx: &mut Context<'_>) {
        if self.call.busy() || self.reading.is_some() {
            return;
        }
        if let Some(at) = self.retry_at {
            if now < at {
                return;
            }
            self.retry_at = None;
        }
        if self.endpoint().tls
            && let Some((which, path)) = self.unread()
        {
            self.reading = Some((cx.read_file(path), which));
            return;
        }
        if self.config.username.is_some() && self.token.is_none() {
            return self.send(now, Step::Authenticate, cx);
        }
        if self.own_key.is_none()
            && let Some(me) = cx.this_node()
        {
            let mut key = self.prefix.clone();
            key.extend_from_slice(me.as_str().as_bytes());
            self.own_key = Some(key);
        }
        // Peers would fail to connect to a node that is not reachable yet: announce it only
        // once it is (the cluster calls handle_timeout then).
        let register = self.own_key.is_some() && cx.is_reachable();
        if register && self.lease.is_none() {
            return self.send(now, Step::Grant, cx);
        }
        if register && !self.registered {
            return self.send(now, Step::Put, cx);
        }
        if self.lease.is_some() && self.next_keepalive.is_some_and(|t| t <= now) {
            return self.send(now, Step::KeepAlive, cx);
        }
        if self.revision.is_none() {
            return self.send(now, Step::Range, cx);
        }
        if !self.stream.busy() {
            self.watch(now, cx);
        }
    }

    /// The request for `path` with `body`, to the endpoint in use.
    fn exchange(&self, now: Instant, path: &str, body: &[u8]) -> Exchange {
        let e = self.endpoint();
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(Secret(t)) = &self.token {
            headers.push(("Authorization", t.as_str()));
        }
        let request = http::request("POST", &e.authority, path, &headers, body);
        let x = Exchange::tcp(e.endpoint.clone(), Bytes::from(request), now);
        if !e.tls {
            return x;
        }
        let tls = match &self.ca {
            Some(ca) => Tls::verified(e.host.clone(), ca.clone()),
            // No ca_file: the host's CA bundle.
            None => Tls::system(e.host.clone()),
        };
        match (&self.cert, &self.key) {
            (Some(cert), Some(Secret(key))) => x.tls(tls.with_identity(Identity {
                cert_pem: cert.clone(),
                key_pem: key.clone(),
            })),
            _ => x.tls(tls),
        }
    }

    /// The next PEM file to read before a session over TLS: its kind and path.
    fn unread(&self) -> Option<(Pem, String)> {
        let c = &self.config;
        if self.ca.is_none()
            && let Some(path) = &c.ca_file
        {
            return Some((Pem::Ca, path.clone()));
        }
        let (cert, key) = c.client_cert.as_ref()?;
        if self.cert.is_none() {
            return Some((Pem::Cert, cert.clone()));
        }
        if self.key.is_none() {
            return Some((Pem::Key, key.clone()));
        }
        None
    }

    fn send(&mut self, now: Instant, step: Step, cx: &mut Context<'_>) {
        let c = &self.config;
        let lease = self.lease.unwrap_or(0);
        let (path, body) = match step {
            Step::Authenticate => (
                etcd::AUTHENTICATE,
                etcd::authenticate(
                    c.username.as_deref().unwrap_or_default(),
                    c.password.as_deref().unwrap_or_default(),
                ),
            ),
            Step::Grant => (
                etcd::LEASE_GRANT,
                etcd::lease_grant(i64::try_from(c.ttl).unwrap_or(i64::MAX)),
            ),
            Step::Put => {
                let key = self.own_key.as_deref().unwrap_or_default();
                let name = key.get(self.prefix.len()..).unwrap_or_default();
                (etcd::KV_PUT, etcd::put(key, name, lease))
            }
            Step::KeepAlive => (etcd::LEASE_KEEPALIVE, etcd::lease_keepalive(lease)),
            Step::Range => (etcd::KV_RANGE, etcd::range(&self.prefix, &self.range_end)),
        };
        // A keep-alive that hangs longer than its interval would let the lease lapse while
        // another endpoint could have kept it.
        let timeout = if step == Step::KeepAlive {
            c.request_timeout.min(c.keepalive_interval())
        } else {
            c.request_timeout
        };
        let max = c.max_response_bytes;
        let x = self.exchange(now, path, &body);
        self.call.start(now, timeout, max, x, cx);
        self.step = Some(step);
    }

    fn watch(&mut self, now: Instant, cx: &mut Context<'_>) {
        let from = self.revision.unwrap_or(0);
        let body = etcd::watch_create(&self.prefix, &self.range_end, from, true);
        let x = self.exchange(now, etcd::WATCH, &body);
        let c = &self.config;
        self.stream.start(
            now,
            c.request_timeout,
            c.watch_timeout,
            c.max_response_bytes,
            x,
            cx,
        );
        self.watch_created = false;
        self.watch_started = now;
    }

    fn backoff(&self, n: u32, cx: &mut Context<'_>) -> Duration {
        let cap = BACKOFF_MAX.min(self.config.keepalive_interval());
        let d = BACKOFF_BASE
            .saturating_mul(1 << n.saturating_sub(1).min(16))
            .min(cap);
        cx.rng().duration_between(d / 2, d)
    }

    /// The session failed: say why, keep the set, and start over on the next endpoint after
    /// a backoff, reading the keys again.
    fn fail(&mut self, now: Instant, why: DiscoveryError, cx: &mut Context<'_>) {
        cx.discovery_failed(why);
        self.stream.stop(cx);
        self.watch_created = false;
        self.current = (self.current + 1) % self.config.endpoints.len().max(1);
        // Simple tokens belong to the member that issued them; a CA file or a client
        // certificate may have been replaced: get them all again.
        self.token = None;
        self.reauthenticated = false;
        self.ca = None;
        self.cert = None;
        self.key = None;
        self.registered = false;
        self.revision = None;
        self.failures = self.failures.saturating_add(1);
        self.retry_at = Some(now + self.backoff(self.failures, cx));
    }

    /// An error answer to `step`, with what may help.
    fn api_failure(&self, step: Step, status: u16, e: &etcd::ApiError) -> DiscoveryError {
        let mut message = escape(&e.to_string()).into_owned();
        if step == Step::Authenticate && e.message.contains("authentication failed") {
            message.push_str(" (check username and password)");
        } else if e.code == etcd::CODE_PERMISSION_DENIED {
            message.push_str(&format!(
                " (the user's role needs readwrite permission on the prefix {})",
                self.prefix_text()
            ));
        } else if e.message.contains("authentication is not enabled") {
            message.push_str(" (remove username and password, or enable authentication)");
        }
        DiscoveryError::Status {
            source: self.source(step),
            status,
            message,
        }
    }

    /// The lease is gone: grant another and put the key again.
    fn lease_gone(&mut self, cx: &mut Context<'_>) {
        if let Some(id) = self.lease.take() {
            cx.discovery_failed(DiscoveryError::Other(format!(
                "etcd {}: lease {id:x} of {} expired: registering again",
                self.endpoint().url,
                String::from_utf8_lossy(self.own_key.as_deref().unwrap_or_default())
            )));
        }
        self.registered = false;
        self.next_keepalive = None;
        // The lease lapsed while we were away, or etcd lost its data and counts revisions
        // from 1 again: then a watch resumed from the revision after the last one seen
        // waits for a future far away and hears nobody register or leave. Read the keys
        // again and watch from there.
        self.revision = None;
        self.stream.stop(cx);
        self.watch_created = false;
    }

    fn answered(&mut self, now: Instant, r: Result<Response, Failure>, cx: &mut Context<'_>) {
        let Some(step) = self.step.take() else {
            return;
        };
        let r = match r {
            Ok(r) => r,
            Err(f) => return self.fail(now, DiscoveryError::request(self.source(step), f), cx),
        };
        let outcome = if r.status == 200 {
            self.apply(now, step, &r.body, cx)
        } else {
            match etcd::parse_error(&r.body) {
                Some(e) => Err(EtcdError::Api(e)),
                None => {
                    let why = DiscoveryError::Status {
                        source: self.source(step),
                        status: r.status,
                        message: format!("{}: {}", escape(&r.reason), r.body_excerpt(200)),
                    };
                    return self.fail(now, why, cx);
                }
            }
        };
        match outcome {
            Ok(()) => {
                if step != Step::Authenticate {
                    self.reauthenticated = false;
                }
            }
            Err(EtcdError::Api(e))
                if e.is_unauthenticated()
                    && step != Step::Authenticate
                    && self.config.username.is_some()
                    && !self.reauthenticated =>
            {
                // The token expired, or etcd restarted and forgot it: get another, now.
                self.token = None;
                self.reauthenticated = true;
            }
            Err(EtcdError::Api(e))
                if e.is_lease_not_found() && matches!(step, Step::Put | Step::KeepAlive) =>
            {
                self.lease_gone(cx);
            }
            Err(EtcdError::Api(e)) => {
                let why = self.api_failure(step, r.status, &e);
                return self.fail(now, why, cx);
            }
            Err(EtcdError::Malformed(m)) => {
                let why = DiscoveryError::invalid(
                    self.source(step),
                    format!("invalid response: {}", escape(&m)),
                );
                return self.fail(now, why, cx);
            }
        }
        self.drive(now, cx);
    }

    /// A 200 answer to `step`.
    fn apply(
        &mut self,
        now: Instant,
        step: Step,
        body: &[u8],
        cx: &mut Context<'_>,
    ) -> Result<(), EtcdError> {
        match step {
            Step::Authenticate => self.token = Some(Secret(etcd::parse_authenticate(body)?)),
            Step::Grant => {
                let lease = etcd::parse_lease_grant(body)?;
                self.lease = Some(lease.id);
                self.registered = false;
                self.next_keepalive = Some(now + self.config.keepalive_interval());
            }
            Step::Put => {
                etcd::parse_put(body)?;
                self.registered = true;
            }
            Step::KeepAlive => {
                let lease = etcd::parse_lease_keepalive(body)?;
                if lease.ttl <= 0 {
                    self.lease_gone(cx);
                } else {
                    self.next_keepalive = Some(now + self.config.keepalive_interval());
                }
            }
            Step::Range => {
                let range = etcd::parse_range(body)?;
                if range.more {
                    return Err(EtcdError::Malformed(
                        "the range was cut short (more keys than returned)".into(),
                    ));
                }
                self.nodes.clear();
                for kv in range.kvs {
                    if let Some(name) = kv.key.strip_prefix(self.prefix.as_slice()) {
                        self.nodes.insert(name.to_vec());
                    }
                }
                if let Some(own) = &self.own_key
                    && self.registered
                    && own
                        .get(self.prefix.len()..)
                        .is_some_and(|name| !self.nodes.contains(name))
                {
                    // Our key went between the put and the range: put it again.
                    self.registered = false;
                }
                self.revision = Some(range.revision.saturating_add(1));
                self.failures = 0;
                self.breaks = 0;
                self.commit(cx);
            }
        }
        Ok(())
    }

    /// The keys under the prefix become the discovered set.
    fn commit(&mut self, cx: &mut Context<'_>) {
        let mut unnamed: Vec<(String, String)> = Vec::new();
        let mut round = cx.round();
        for name in &self.nodes {
            let why = match core::str::from_utf8(name) {
                Ok(n) => match round.add(n, None) {
                    Ok(()) => continue,
                    Err(e) => e.to_string(),
                },
                Err(_) => "not UTF-8".to_owned(),
            };
            unnamed.push((escape(&String::from_utf8_lossy(name)).into_owned(), why));
        }
        round.commit();
        let what = format!("the keys under {}", escape(&self.prefix_text()));
        self.unnamed.report(cx, &what, &unnamed);
    }

    /// Lines of the watch arrived (`lines`), or it ended (`end`).
    fn watched(
        &mut self,
        now: Instant,
        lines: Vec<Vec<u8>>,
        end: Option<StreamEnd>,
        cx: &mut Context<'_>,
    ) {
        let source = format!(
            "etcd {}: watching {}",
            self.endpoint().url,
            self.prefix_text()
        );
        let mut changed = false;
        // Some(None): stop and carry on (read again, new token); Some(Some(why)): fail.
        let mut stop: Option<Option<DiscoveryError>> = None;
        for line in lines
            .iter()
            .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        {
            // Whatever the server says, it took the watch.
            self.watch_created = true;
            match etcd::parse_watch_line(line) {
                Ok(WatchMessage::Created) => self.failures = 0,
                Ok(WatchMessage::Changes { changes, .. }) => {
                    for c in changes {
                        let next = c.kv.mod_revision.saturating_add(1);
                        if self.revision.is_none_or(|r| r < next) {
                            self.revision = Some(next);
                        }
                        let Some(name) = c.kv.key.strip_prefix(self.prefix.as_slice()) else {
                            continue;
                        };
                        changed |= match c.kind {
                            ChangeKind::Put => self.nodes.insert(name.to_vec()),
                            ChangeKind::Delete => {
                                if self.own_key.as_deref() == Some(c.kv.key.as_slice()) {
                                    // Someone deleted our key, or our lease lapsed: put it
                                    // again (a lease that is gone is granted anew).
                                    self.registered = false;
                                }
                                self.nodes.remove(name)
                            }
                        };
                    }
                }
                Ok(WatchMessage::Progress { revision }) => {
                    let next = revision.saturating_add(1);
                    if revision > 0 && self.revision.is_none_or(|r| r < next) {
                        self.revision = Some(next);
                    }
                }
                Ok(WatchMessage::Canceled {
                    compact_revision,
                    reason,
                }) => {
                    stop = Some(if compact_revision > 0 {
                        // The revision is gone: read the keys again, then watch from there.
                        self.revision = None;
                        None
                    } else if (reason.contains("auth token") || reason.contains("Unauthenticated"))
                        && self.config.username.is_some()
                        && !self.reauthenticated
                    {
                        self.token = None;
                        self.reauthenticated = true;
                        None
                    } else {
                        Some(DiscoveryError::Status {
                            source: source.clone(),
                            status: 200,
                            message: format!("the watch was canceled: {}", escape(&reason)),
                        })
                    });
                    break;
                }
                Ok(WatchMessage::Error(e)) => {
                    stop = Some(Some(DiscoveryError::Status {
                        source: source.clone(),
                        status: 200,
                        message: escape(&e.to_string()).into_owned(),
                    }));
                    break;
                }
                Err(e) => {
                    let why = format!("invalid watch message: {}", escape(&e.to_string()));
                    stop = Some(Some(DiscoveryError::invalid(source.clone(), why)));
                    break;
                }
            }
        }
        if changed {
            self.commit(cx);
        }
        if let Some(why) = stop {
            self.stream.stop(cx);
            self.watch_created = false;
            if let Some(why) = why {
                return self.fail(now, why, cx);
            }
            return self.drive(now, cx);
        }
        let Some(end) = end else {
            // Our own key may have gone: put it again.
            return self.drive(now, cx);
        };
        let broken = match end {
            StreamEnd::Status(r) => {
                let why = match etcd::parse_error(&r.body) {
                    Some(e) if e.is_unauthenticated() && !self.reauthenticated => {
                        self.token = None;
                        self.reauthenticated = true;
                        return self.drive(now, cx);
                    }
                    Some(e) => self.api_failure_watch(source, r.status, &e),
                    None => DiscoveryError::Status {
                        source,
                        status: r.status,
                        message: format!("{}: {}", escape(&r.reason), r.body_excerpt(200)),
                    },
                };
                return self.fail(now, why, cx);
            }
            StreamEnd::Ended => Failure::new(
                crate::reason::FailureKind::Closed,
                "the server ended the watch",
            ),
            StreamEnd::Broken(f) => f,
        };
        if !self.watch_created {
            // The watch never started: the endpoint is no good.
            return self.fail(now, DiscoveryError::request(source, broken), cx);
        }
        self.watch_created = false;
        if now < self.watch_started + self.config.watch_timeout {
            // Cut short: say so, and resume from the revision after the last one seen (the
            // set is up to date until then), after a backoff if it keeps breaking.
            if now >= self.watch_started + WATCH_HEALTHY {
                self.breaks = 0;
            }
            self.breaks = self.breaks.saturating_add(1);
            let from = self.revision.unwrap_or(0);
            cx.discovery_failed(DiscoveryError::request(
                format!("{source} (resuming from revision {from})"),
                broken,
            ));
            self.retry_at = Some(now + self.backoff(self.breaks, cx));
        } else {
            self.breaks = 0;
        }
        self.drive(now, cx);
    }

    fn api_failure_watch(&self, source: String, status: u16, e: &etcd::ApiError) -> DiscoveryError {
        match self.api_failure(Step::Range, status, e) {
            DiscoveryError::Status {
                status, message, ..
            } => DiscoveryError::Status {
                source,
                status,
                message,
            },
            other => other,
        }
    }
}

impl Strategy for Etcd {
    fn kind(&self) -> &'static str {
        "etcd"
    }

    fn start(&mut self, now: Instant, cx: &mut Context<'_>) {
        let prefix = match &self.config.prefix {
            Some(p) => p.clone(),
            None => format!("/muster/{}/", cx.topology()),
        };
        self.prefix = prefix.into_bytes();
        self.range_end = etcd::prefix_end(&self.prefix);
        self.drive(now, cx);
    }

    fn handle_timeout(&mut self, now: Instant, cx: &mut Context<'_>) {
        if let Some(r) = self.call.handle_timeout(now, cx) {
            self.answered(now, r, cx);
        }
        if let Some(end) = self.stream.handle_timeout(now, cx) {
            self.watched(now, Vec::new(), Some(end), cx);
        }
        self.drive(now, cx);
    }

    fn handle_file(
        &mut self,
        now: Instant,
        read: ReadId,
        result: Result<&[u8], &Failure>,
        cx: &mut Context<'_>,
    ) {
        let which = match self.reading {
            Some((r, which)) if r == read => which,
            _ => return,
        };
        self.reading = None;
        match result {
            Ok(pem) => {
                let pem = Some(Bytes::copy_from_slice(pem));
                match which {
                    Pem::Ca => self.ca = pem,
                    Pem::Cert => self.cert = pem,
                    Pem::Key => self.key = pem.map(Secret),
                }
            }
            Err(f) => {
                let c = &self.config;
                let (key, path) = match (which, &c.client_cert) {
                    (Pem::Cert, Some((cert, _))) => ("cert_file", cert.as_str()),
                    (Pem::Key, Some((_, key))) => ("key_file", key.as_str()),
                    _ => ("ca_file", c.ca_file.as_deref().unwrap_or_default()),
                };
                let why = DiscoveryError::request(format!("reading {key} {path}"), f.clone());
                return self.fail(now, why, cx);
            }
        }
        self.drive(now, cx);
    }

    fn handle_exchange(
        &mut self,
        now: Instant,
        exchange: ExchangeId,
        reply: Reply<'_>,
        cx: &mut Context<'_>,
    ) {
        if let Some(r) = self.call.handle_exchange(exchange, reply, cx) {
            return self.answered(now, r, cx);
        }
        let mut lines = Vec::new();
        let end = self
            .stream
            .handle_exchange(exchange, reply, cx, |l| lines.push(l.to_vec()));
        if !lines.is_empty() || end.is_some() {
            self.watched(now, lines, end, cx);
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let mut at = earliest(self.call.poll_timeout(), self.stream.poll_timeout());
        // Timers of the session only matter when a request could go: otherwise the answer
        // (or the file) that is awaited drives the next step.
        if !self.call.busy() && self.reading.is_none() {
            let keepalive = self.lease.and(self.next_keepalive);
            at = earliest(at, self.retry_at.or(keepalive));
        }
        at
    }

    fn leave(&mut self, now: Instant, cx: &mut Context<'_>) {
        let Some(lease) = self.lease.take() else {
            return;
        };
        // An https endpoint whose CA is being read again cannot be reached now: the lease
        // then expires on its own.
        if self.endpoint().tls && self.ca.is_none() {
            return;
        }
        let mut x = self.exchange(now, etcd::LEASE_REVOKE, &etcd::lease_revoke(lease));
        x.deadline = now + self.config.request_timeout;
        cx.exchange(x.max_reply(http::DEFAULT_MAX_HEAD.saturating_mul(2)));
    }

    fn describe(&self) -> Vec<(String, Value)> {
        let c = &self.config;
        // Keys starting with '#' are comments: what is derived, or secret, is said without
        // becoming a value that would read back differently.
        let mut v = vec![(
            "endpoints".into(),
            Value::List(c.endpoints.iter().map(|e| Value::str(&e.url)).collect()),
        )];
        match &c.prefix {
            Some(p) => v.push(("prefix".into(), Value::str(p))),
            None => v.push((
                "#prefix".into(),
                Value::str("/muster/<the topology's name>/ (the default)"),
            )),
        }
        v.push((
            "ttl".into(),
            Value::Int(i64::try_from(c.ttl).unwrap_or(i64::MAX)),
        ));
        v.push((
            "#keep-alive".into(),
            Value::str(format!(
                "every {} ms (a third of ttl)",
                c.keepalive_interval().as_millis()
            )),
        ));
        if let Some(u) = &c.username {
            v.push((
                "#username".into(),
                Value::str(format!(
                    "{u} (set in the configuration, with its password: not shown)"
                )),
            ));
        }
        if let Some(f) = &c.ca_file {
            v.push(("ca_file".into(), Value::str(f)));
        }
        if let Some((cert, key)) = &c.client_cert {
            v.push(("cert_file".into(), Value::str(cert)));
            v.push(("key_file".into(), Value::str(key)));
        }
        v.extend([
            ("request_timeout".into(), Value::millis(c.request_timeout)),
            ("watch_timeout".into(), Value::millis(c.watch_timeout)),
            (
                "max_response_bytes".into(),
                Value::Int(i64::try_from(c.max_response_bytes).unwrap_or(i64::MAX)),
            ),
        ]);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Answer, Cluster, ClusterConfig, ConnectPolicy, Event, Input, NodeName, Output};
    use crate::{FailureKind, Request, Token};

    #[test]
    fn debug_hides_the_token_and_the_client_key() {
        let endpoint = EtcdEndpoint::parse("https://etcd:2379").unwrap();
        let mut e = Etcd::new(EtcdConfig::new(vec![endpoint]));
        e.token = Some(Secret("sekrit-token".into()));
        e.key = Some(Secret(Bytes::from_static(
            b"-----BEGIN PRIVATE KEY-----\nsekrit",
        )));
        let text = format!("{e:?}");
        assert!(!text.contains("sekrit"), "{text}");
        assert!(text.contains("<redacted>"), "{text}");
    }

    /// An exchange the strategy started, as the fake etcd sees it.
    #[derive(Debug, Clone)]
    struct Sent {
        token: Token,
        to: Endpoint,
        path: String,
        body: serde_json::Value,
        auth: Option<String>,
        tls: bool,
    }

    /// A cluster with one etcd topology, driven by hand: the test answers each exchange.
    struct H {
        cluster: Cluster,
        now: Instant,
        pending: Vec<Sent>,
        events: Vec<Event>,
        connected: Vec<NodeName>,
    }

    fn b64(s: &str) -> String {
        crate::proto::base64::encode(s.as_bytes())
    }

    fn kv(key: &str, rev: i64) -> String {
        format!(
            r#"{{"key":"{}","mod_revision":"{rev}","value":"eA==","lease":"77"}}"#,
            b64(key)
        )
    }

    fn range_body(rev: i64, keys: &[&str]) -> String {
        let kvs: Vec<String> = keys.iter().map(|k| kv(k, rev)).collect();
        format!(
            r#"{{"header":{{"revision":"{rev}"}},"kvs":[{}]}}"#,
            kvs.join(",")
        )
    }

    fn event(kind: &str, key: &str, rev: i64) -> String {
        let t = if kind == "DELETE" {
            r#""type":"DELETE","#
        } else {
            ""
        };
        format!(
            r#"{{"result":{{"header":{{"revision":"{rev}"}},"events":[{{{t}"kv":{}}}]}}}}"#,
            kv(key, rev)
        )
    }

    const CREATED: &str = r#"{"result":{"header":{"revision":"5"},"created":true}}"#;

    impl H {
        fn new(entries: &[(&str, Value)]) -> H {
            let t: Vec<(String, Value)> = entries
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect();
            let mut o = Options::new("c", &t);
            let strategy = Etcd::build(&mut o, &Environment::new()).unwrap();
            o.finish().unwrap();
            let mut cluster = Cluster::new(
                ClusterConfig::new().this_node("me@10.0.0.1".parse().unwrap()),
                [3; 32],
            );
            cluster
                .add_topology(Instant::ZERO, "t", strategy, ConnectPolicy::default())
                .unwrap();
            let mut h = H {
                cluster,
                now: Instant::ZERO,
                pending: Vec::new(),
                events: Vec::new(),
                connected: Vec::new(),
            };
            h.pump();
            h
        }

        fn basic() -> H {
            H::new(&[(
                "endpoints",
                Value::List(vec![Value::str("http://10.9.0.1:2379")]),
            )])
        }

        fn input(&mut self, token: Token, answer: Answer<'_>) {
            self.cluster
                .handle_input(self.now, Input::Answer { token, answer });
        }

        /// Drains the outputs: events kept, the connector answered at once, exchanges queued
        /// for the test, the CA file read.
        fn pump(&mut self) {
            loop {
                let mut progressed = false;
                while let Some(out) = self.cluster.poll_output() {
                    let (token, request) = match out {
                        Output::Event(e) => {
                            self.events.push(e);
                            continue;
                        }
                        Output::Request { token, request } => (token, request),
                    };
                    progressed = true;
                    match request {
                        Request::Exchange(x) => {
                            let text = String::from_utf8_lossy(&x.send).into_owned();
                            let (head, body) = text.split_once("\r\n\r\n").unwrap();
                            let path = head.split(' ').nth(1).unwrap().to_owned();
                            let auth = head
                                .lines()
                                .find_map(|l| l.strip_prefix("Authorization: "))
                                .map(str::to_owned);
                            self.pending.push(Sent {
                                token,
                                to: x.to.clone(),
                                path,
                                body: serde_json::from_str(body).unwrap(),
                                auth,
                                tls: x.tls.is_some(),
                            });
                        }
                        Request::ReadFile { path, .. } => {
                            if path == "/ca.pem" {
                                self.input(token, Answer::Data(b"PEM"));
                            } else {
                                let f = Failure::new(FailureKind::NotFound, "no such file");
                                self.input(token, Answer::Failed(&f));
                            }
                        }
                        Request::ListNodes { .. } => {
                            let nodes = self.connected.clone();
                            self.input(token, Answer::Nodes(&nodes));
                        }
                        Request::Connect { node, .. } => {
                            self.connected.push(node.name.clone());
                            self.input(token, Answer::Connected);
                        }
                        Request::Disconnect { node, .. } => {
                            self.connected.retain(|n| *n != node);
                            self.input(token, Answer::Disconnected);
                        }
                        _ => {}
                    }
                }
                if !progressed {
                    return;
                }
            }
        }

        /// The oldest exchange not answered yet.
        fn next(&mut self) -> Sent {
            self.pump();
            assert!(
                !self.pending.is_empty(),
                "no request; events: {:?}",
                self.events
            );
            self.pending.remove(0)
        }

        /// Takes the next exchange, which must be to `path`.
        fn expect(&mut self, path: &str) -> Sent {
            let s = self.next();
            assert_eq!(s.path, path, "{s:?}");
            s
        }

        fn reply(&mut self, s: &Sent, status: u16, body: &str) {
            let r = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            self.input(s.token, Answer::Data(r.as_bytes()));
            self.input(s.token, Answer::Closed);
            self.pump();
        }

        fn ok(&mut self, s: &Sent, body: &str) {
            self.reply(s, 200, body);
        }

        fn refuse(&mut self, s: &Sent) {
            let f = Failure::new(FailureKind::Refused, "connection refused");
            self.input(s.token, Answer::Failed(&f));
            self.pump();
        }

        /// Opens a watch's response and sends `lines` on it.
        fn stream(&mut self, s: &Sent, lines: &[&str]) {
            self.input(
                s.token,
                Answer::Data(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
            );
            self.lines(s, lines);
        }

        fn lines(&mut self, s: &Sent, lines: &[&str]) {
            for l in lines {
                let chunk = format!("{:x}\r\n{l}\n\r\n", l.len() + 1);
                self.input(s.token, Answer::Data(chunk.as_bytes()));
            }
            self.pump();
        }

        /// Runs the timers up to `until`.
        fn run_until(&mut self, until: Instant) {
            while let Some(at) = self.cluster.poll_timeout() {
                if at > until {
                    break;
                }
                self.now = at.max(self.now);
                self.cluster.handle_timeout(self.now);
                self.pump();
                if !self.pending.is_empty() {
                    return;
                }
            }
            self.now = until.max(self.now);
        }

        /// Runs the timers until a request goes out.
        fn wait_request(&mut self) -> Sent {
            self.pump();
            if !self.pending.is_empty() {
                return self.next();
            }
            self.run_until(self.now + Duration::from_secs(3600));
            self.next()
        }

        fn nodes(&self, kind: &str) -> Vec<String> {
            self.events
                .iter()
                .filter_map(|e| match e {
                    Event::Discovered { node, .. } if kind == "discovered" => {
                        Some(node.to_string())
                    }
                    Event::Lost { node, .. } if kind == "lost" => Some(node.to_string()),
                    _ => None,
                })
                .collect()
        }

        fn failures(&self) -> Vec<String> {
            self.events
                .iter()
                .filter_map(|e| match e {
                    Event::DiscoveryFailed { reason, .. } => Some(reason.to_string()),
                    _ => None,
                })
                .collect()
        }

        /// Grant, put and range (of `keys` at revision 4) answered; the watch open and
        /// created. Returns the watch.
        fn up(&mut self, keys: &[&str]) -> Sent {
            let g = self.expect("/v3/lease/grant");
            self.ok(&g, r#"{"header":{"revision":"1"},"ID":"77","TTL":"10"}"#);
            let p = self.expect("/v3/kv/put");
            self.ok(&p, r#"{"header":{"revision":"2"}}"#);
            let r = self.expect("/v3/kv/range");
            let mut keys = keys.to_vec();
            keys.push("/muster/t/me@10.0.0.1");
            self.ok(&r, &range_body(4, &keys));
            let w = self.expect("/v3/watch");
            self.stream(&w, &[CREATED]);
            w
        }
    }

    #[test]
    fn registers_under_a_lease_reads_the_prefix_and_watches_from_the_next_revision() {
        let mut h = H::basic();
        let g = h.expect("/v3/lease/grant");
        assert_eq!(g.body, serde_json::json!({"TTL": "10"}));
        assert_eq!(g.to, Endpoint::Addr("10.9.0.1:2379".parse().unwrap()));
        assert!(!g.tls);
        h.ok(&g, r#"{"header":{"revision":"1"},"ID":"77","TTL":"10"}"#);
        let p = h.expect("/v3/kv/put");
        assert_eq!(
            p.body,
            serde_json::json!({"key": b64("/muster/t/me@10.0.0.1"), "value": b64("me@10.0.0.1"), "lease": "77"})
        );
        h.ok(&p, r#"{"header":{"revision":"2"}}"#);
        let r = h.expect("/v3/kv/range");
        assert_eq!(
            r.body,
            serde_json::json!({"key": b64("/muster/t/"), "range_end": b64("/muster/t0")})
        );
        h.ok(
            &r,
            &range_body(
                4,
                &[
                    "/muster/t/a@10.0.0.2",
                    "/muster/t/me@10.0.0.1",
                    "/muster/t/b@10.0.0.3",
                ],
            ),
        );
        assert_eq!(h.nodes("discovered"), ["a@10.0.0.2", "b@10.0.0.3"]);
        let w = h.expect("/v3/watch");
        assert_eq!(
            w.body,
            serde_json::json!({"create_request": {"key": b64("/muster/t/"), "range_end": b64("/muster/t0"), "start_revision": "5", "progress_notify": true}})
        );
        h.stream(&w, &[CREATED]);
        h.lines(&w, &[&event("PUT", "/muster/t/c@10.0.0.4", 6)]);
        h.lines(&w, &[&event("DELETE", "/muster/t/a@10.0.0.2", 7)]);
        assert_eq!(
            h.nodes("discovered"),
            ["a@10.0.0.2", "b@10.0.0.3", "c@10.0.0.4"]
        );
        assert_eq!(h.nodes("lost"), ["a@10.0.0.2"]);
        assert!(h.failures().is_empty(), "{:?}", h.failures());
        assert!(h.pending.is_empty());
    }

    #[test]
    fn keeps_the_lease_alive_every_third_of_the_ttl_and_registers_again_when_it_expired() {
        let mut h = H::basic();
        let _w = h.up(&["/muster/t/a@10.0.0.2"]);
        let k = h.wait_request();
        assert_eq!(k.path, "/v3/lease/keepalive");
        assert_eq!(k.body, serde_json::json!({"ID": "77"}));
        assert_eq!(h.now, Instant::ZERO + Duration::from_millis(3333));
        h.ok(
            &k,
            r#"{"result":{"header":{"revision":"5"},"ID":"77","TTL":"10"}}"#,
        );
        let k = h.wait_request();
        assert_eq!(h.now, Instant::ZERO + Duration::from_millis(6666));
        // The lease expired (the node was paused): a new lease, the key again.
        h.ok(&k, r#"{"result":{"header":{"revision":"5"},"ID":"77"}}"#);
        let g = h.expect("/v3/lease/grant");
        h.ok(&g, r#"{"header":{"revision":"6"},"ID":"78","TTL":"10"}"#);
        let p = h.expect("/v3/kv/put");
        assert_eq!(p.body["lease"], "78");
        h.ok(&p, r#"{"header":{"revision":"7"}}"#);
        assert!(h.failures()[0].contains("expired"), "{:?}", h.failures());
        assert!(h.nodes("lost").is_empty());
    }

    #[test]
    fn a_compacted_revision_reads_the_keys_again() {
        let mut h = H::basic();
        let w = h.up(&["/muster/t/a@10.0.0.2", "/muster/t/b@10.0.0.3"]);
        h.lines(
            &w,
            &[r#"{"result":{"header":{},"canceled":true,"compact_revision":"40"}}"#],
        );
        let r = h.expect("/v3/kv/range");
        h.ok(
            &r,
            &range_body(50, &["/muster/t/b@10.0.0.3", "/muster/t/me@10.0.0.1"]),
        );
        let w = h.expect("/v3/watch");
        assert_eq!(w.body["create_request"]["start_revision"], "51");
        assert_eq!(h.nodes("lost"), ["a@10.0.0.2"]);
        assert!(h.failures().is_empty(), "routine: {:?}", h.failures());
    }

    #[test]
    fn a_watch_broken_mid_stream_resumes_from_the_last_revision_without_reading_again() {
        let mut h = H::basic();
        let w = h.up(&["/muster/t/a@10.0.0.2"]);
        h.lines(&w, &[&event("PUT", "/muster/t/b@10.0.0.3", 9)]);
        h.input(w.token, Answer::Closed);
        h.pump();
        assert_eq!(h.failures().len(), 1);
        assert!(
            h.failures()[0].contains("resuming from revision 10"),
            "{:?}",
            h.failures()
        );
        let w = h.wait_request();
        assert_eq!(w.path, "/v3/watch");
        assert_eq!(w.body["create_request"]["start_revision"], "10");
        h.stream(&w, &[CREATED, &event("DELETE", "/muster/t/a@10.0.0.2", 10)]);
        assert_eq!(h.nodes("lost"), ["a@10.0.0.2"]);
        assert_eq!(h.nodes("discovered"), ["a@10.0.0.2", "b@10.0.0.3"]);
    }

    #[test]
    fn a_failure_keeps_the_set_and_moves_to_the_next_endpoint_after_a_backoff() {
        let mut h = H::new(&[(
            "endpoints",
            Value::List(vec![
                Value::str("http://10.9.0.1:2379"),
                Value::str("http://etcd-2.test"),
            ]),
        )]);
        let w = h.up(&["/muster/t/a@10.0.0.2"]);
        // etcd 1 goes away: the watch is cut, and resuming it is refused.
        h.input(w.token, Answer::Closed);
        h.pump();
        let w = h.wait_request();
        assert_eq!(w.path, "/v3/watch");
        h.refuse(&w);
        let before = h.now;
        let p = h.wait_request();
        assert!(h.now > before, "a backoff");
        assert_eq!(
            p.to,
            Endpoint::Host {
                host: "etcd-2.test".into(),
                port: 2379
            }
        );
        // The session starts over there: the key again (same lease), the keys, the watch.
        assert_eq!(p.path, "/v3/kv/put");
        assert_eq!(p.body["lease"], "77");
        h.ok(&p, r#"{"header":{"revision":"9"}}"#);
        let r = h.expect("/v3/kv/range");
        h.refuse(&r);
        assert_eq!(h.failures().len(), 3, "{:?}", h.failures());
        let r = h.wait_request();
        assert_eq!(r.path, "/v3/kv/put", "back on etcd 1");
        assert_eq!(r.to, Endpoint::Addr("10.9.0.1:2379".parse().unwrap()));
        assert!(h.nodes("lost").is_empty(), "the set is kept");
        assert_eq!(h.nodes("discovered"), ["a@10.0.0.2"]);
    }

    #[test]
    fn authenticates_first_and_once_more_when_the_token_is_refused() {
        let mut h = H::new(&[
            (
                "endpoints",
                Value::List(vec![Value::str("http://10.9.0.1")]),
            ),
            ("username", Value::str("app")),
            ("password", Value::str("pw")),
        ]);
        let a = h.expect("/v3/auth/authenticate");
        assert_eq!(a.body, serde_json::json!({"name": "app", "password": "pw"}));
        assert_eq!(a.auth, None);
        h.ok(&a, r#"{"header":{"revision":"1"},"token":"tok.1"}"#);
        let g = h.expect("/v3/lease/grant");
        assert_eq!(g.auth.as_deref(), Some("tok.1"));
        // etcd restarted and forgot the token.
        h.reply(
            &g,
            401,
            r#"{"error":"etcdserver: invalid auth token","message":"etcdserver: invalid auth token","code":16}"#,
        );
        let a = h.expect("/v3/auth/authenticate");
        h.ok(&a, r#"{"header":{"revision":"1"},"token":"tok.2"}"#);
        let g = h.expect("/v3/lease/grant");
        assert_eq!(g.auth.as_deref(), Some("tok.2"));
        assert!(h.failures().is_empty(), "{:?}", h.failures());
    }

    #[test]
    fn a_wrong_password_is_reported_and_retried_with_backoff_without_discovering() {
        let mut h = H::new(&[
            (
                "endpoints",
                Value::List(vec![Value::str("http://10.9.0.1")]),
            ),
            ("username", Value::str("app")),
            ("password", Value::str("wrong")),
        ]);
        for _ in 0..3 {
            let a = h.wait_request();
            assert_eq!(a.path, "/v3/auth/authenticate");
            h.reply(
                &a,
                400,
                r#"{"error":"etcdserver: authentication failed, invalid user ID or password","message":"etcdserver: authentication failed, invalid user ID or password","code":3}"#,
            );
        }
        let f = h.failures();
        assert_eq!(f.len(), 3);
        assert!(f[0].contains("authenticating as \"app\""), "{f:?}");
        assert!(f[0].contains("check username and password"), "{f:?}");
        assert!(!f[0].contains("wrong"), "never the password: {f:?}");
        assert!(h.nodes("discovered").is_empty());
    }

    #[test]
    fn its_own_key_deleted_by_someone_is_put_again() {
        let mut h = H::basic();
        let w = h.up(&["/muster/t/me@10.0.0.1"]);
        h.lines(&w, &[&event("DELETE", "/muster/t/me@10.0.0.1", 8)]);
        let p = h.expect("/v3/kv/put");
        assert_eq!(p.body["lease"], "77");
        h.reply(
            &p,
            404,
            r#"{"error":"etcdserver: requested lease not found","code":5}"#,
        );
        let g = h.expect("/v3/lease/grant");
        h.ok(&g, r#"{"header":{"revision":"9"},"ID":"79","TTL":"10"}"#);
        let p = h.expect("/v3/kv/put");
        assert_eq!(p.body["lease"], "79");
    }

    #[test]
    fn https_reads_the_ca_and_leaving_revokes_the_lease() {
        let mut h = H::new(&[
            (
                "endpoints",
                Value::List(vec![Value::str("https://etcd.test:2379/")]),
            ),
            ("ca_file", Value::str("/ca.pem")),
            ("prefix", Value::str("/apps/x/")),
            ("ttl", Value::Int(5)),
        ]);
        let g = h.expect("/v3/lease/grant");
        assert!(g.tls);
        assert_eq!(g.body, serde_json::json!({"TTL": "5"}));
        h.ok(&g, r#"{"header":{"revision":"1"},"ID":"12345","TTL":"5"}"#);
        let p = h.expect("/v3/kv/put");
        assert_eq!(p.body["key"], b64("/apps/x/me@10.0.0.1"));
        h.ok(&p, r#"{"header":{"revision":"2"}}"#);
        h.cluster.leave(h.now);
        h.pump();
        let rv = h
            .pending
            .iter()
            .find(|s| s.path == "/v3/lease/revoke")
            .cloned();
        let rv = rv.expect("a revoke");
        assert_eq!(rv.body, serde_json::json!({"ID": "12345"}));
        assert!(rv.tls);
        assert!(!h.cluster.is_left(), "waits for the revoke");
        for s in std::mem::take(&mut h.pending) {
            h.ok(&s, r#"{"header":{"revision":"3"}}"#);
        }
        assert!(h.cluster.is_left());
    }

    #[test]
    fn configuration_errors_name_the_key() {
        let err = |entries: &[(&str, Value)]| {
            let t: Vec<(String, Value)> = entries
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect();
            let mut o = Options::new("c", &t);
            EtcdConfig::from_options(&mut o).unwrap_err().to_string()
        };
        let ep = |u: &str| {
            (
                "endpoints",
                Value::List(vec![Value::str("http://a"), Value::str(u)]),
            )
        };
        assert_eq!(err(&[]), "`c.endpoints`: missing required key");
        assert!(err(&[ep("ftp://x")]).starts_with("`c.endpoints[1]`: \"ftp://x\" is not"));
        assert!(err(&[ep("http://x/v3")]).starts_with("`c.endpoints[1]`"));
        assert!(err(&[ep("http://x:0")]).starts_with("`c.endpoints[1]`"));
        assert!(
            err(&[ep("http://b"), ("ttl", Value::Int(1))])
                .starts_with("`c.ttl`: 1 is not between 2")
        );
        assert!(
            err(&[ep("http://b"), ("username", Value::str("u"))])
                .starts_with("`c.password`: missing")
        );
        assert!(
            err(&[ep("http://b"), ("password", Value::str("p"))])
                .starts_with("`c.username`: missing")
        );
        assert!(err(&[ep("http://b"), ("prefix", Value::str(""))]).starts_with("`c.prefix`"));
        let e = err(&[ep("https://b"), ("cert_file", Value::str("/c.pem"))]);
        assert!(
            e.starts_with("`c.key_file`: missing: cert_file is set"),
            "{e}"
        );
        let e = err(&[ep("https://b"), ("key_file", Value::str("/k.pem"))]);
        assert!(
            e.starts_with("`c.cert_file`: missing: key_file is set"),
            "{e}"
        );
        let e = err(&[
            ep("https://b"),
            ("cert_file", Value::str("")),
            ("key_file", Value::str("/k.pem")),
        ]);
        assert!(e.starts_with("`c.cert_file`: must not be empty"), "{e}");
        // What is accepted, and what is said about it.
        let t = vec![
            (
                "endpoints".to_owned(),
                Value::List(vec![Value::str("http://[fd00::1]:2390")]),
            ),
            ("password".to_owned(), Value::str("p")),
            ("username".to_owned(), Value::str("u")),
            ("prefix".to_owned(), Value::str("/x")),
        ];
        let mut o = Options::new("c", &t);
        let c = EtcdConfig::from_options(&mut o).unwrap();
        assert_eq!(c.endpoints[0].authority, "[fd00::1]:2390");
        assert_eq!(c.keepalive_interval(), Duration::from_millis(3333));
        let warnings: Vec<String> = o.take_warnings().iter().map(|w| w.to_string()).collect();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            !format!("{c:?}").contains("\"p\""),
            "the password stays out of Debug"
        );
    }
}
