//! The Postgres strategy: discovery through a database every node already reaches, with
//! `LISTEN`/`NOTIFY` on one channel (libcluster_postgres, as Supabase Realtime, Supavisor and
//! Logflare use it).
//!
//! Each node holds one connection, `LISTEN`s on the channel, and `NOTIFY`s its name every
//! `heartbeat_interval`. On connecting it sends a *sync*, which every member answers at once
//! with its heartbeat, so a newcomer knows the cluster one round trip after it is connected;
//! leaving, it sends a *goodbye* that peers act on at once. A node not heard from for
//! `node_timeout` is lost. When the database goes away the strategy reconnects with backoff
//! and keeps the nodes it knew meanwhile (their timeouts start again once it is back).
//!
//! Payloads are untrusted: anyone who may `NOTIFY` on the channel could announce nodes. With
//! a `secret`, every payload carries an HMAC-SHA256 over the channel, the message, a
//! timestamp and a nonce; unsigned or forged payloads, and replays, are rejected.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `url` | none | `postgres://user:password@host:port/database?sslmode=...` (instead of the keys below) |
//! | `hostname` | `"localhost"` | the server |
//! | `port` | `5432` | its port |
//! | `username` | required | the role |
//! | `password` | `""` | its password (SCRAM-SHA-256, MD5 or cleartext, as the server asks) |
//! | `database` | `"postgres"` | the database |
//! | `parameters` | none | a table of extra startup parameters, e.g. `application_name` |
//! | `channel_name` | `"cluster"` | the channel |
//! | `heartbeat_interval` | `5000` | ms between heartbeats |
//! | `node_timeout` | 3 × `heartbeat_interval` | ms without a heartbeat before a node is lost |
//! | `sslmode` | `"prefer"` | `"disable"`, `"prefer"`, `"require"` (encrypted, not verified), `"verify-full"` |
//! | `sslrootcert` | none | the CA certificates (PEM) `verify-full` checks the server against |
//! | `connect_timeout` | `10000` | ms to connect, negotiate TLS and log in |
//! | `secret` | none | authenticates every payload |
//! | `payload_format` | `"muster"` | what this node sends: `"muster"`, `"libcluster"` (bare names, for libcluster_postgres nodes on the channel) or `"realtime"` (Supabase Realtime's `heartbeat::`/`sync::`); every format is read |
//! | `max_nodes` | `1024` | the most nodes remembered; announcements of more are rejected |

use core::time::Duration;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;

use super::{Context, Environment, ReadId, Strategy, StreamEvent, StreamId};
use crate::config::{ConfigError, Options, Value};
use crate::io::{Endpoint, StreamTls, Tls};
use crate::node::NodeName;
use crate::proto::postgres::{
    self as pg, Backend, Decoder, Kind, PayloadKey, SCRAM_SHA_256, ScramClient,
};
use crate::reason::{DiscoveryError, Failure, FailureKind, Rejection, escape};
use crate::time::Instant;

/// What this node's notifications look like. Every format is read, whatever this says;
/// it decides what the node sends, so that peers of another implementation hear it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PayloadFormat {
    /// muster's own: `muster1 hb|sync|bye <node>` (signed with a `secret`): newcomers are
    /// answered at once, leavers are lost at once.
    #[default]
    Muster,
    /// libcluster_postgres's (Supabase's hex package): the bare node name, heartbeats only,
    /// so that its BEAM nodes on the same channel connect to this one.
    Libcluster,
    /// Supabase Realtime's own strategy: `heartbeat::<node>`, and `sync::<node>` at start
    /// (which its nodes answer at once).
    Realtime,
}

impl PayloadFormat {
    /// The name the configuration uses.
    pub fn name(self) -> &'static str {
        match self {
            PayloadFormat::Muster => "muster",
            PayloadFormat::Libcluster => "libcluster",
            PayloadFormat::Realtime => "realtime",
        }
    }
}

/// How a connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Never TLS.
    Disable,
    /// TLS if the server offers it (and the adapter can), else plain; not verified.
    Prefer,
    /// TLS always, the server's certificate not verified.
    Require,
    /// TLS always, the certificate verified against `sslrootcert` for the host name.
    VerifyFull,
}

impl SslMode {
    /// The name the configuration uses.
    pub fn name(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyFull => "verify-full",
        }
    }

    fn parse(s: &str) -> Option<SslMode> {
        Some(match s {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }
}

/// The Postgres strategy's configuration.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PostgresConfig {
    /// `hostname`.
    pub hostname: String,
    /// `port`.
    pub port: u16,
    /// `username`.
    pub username: String,
    /// `password`.
    pub password: String,
    /// `database`.
    pub database: String,
    /// `parameters`.
    pub parameters: Vec<(String, String)>,
    /// `channel_name`.
    pub channel: String,
    /// `heartbeat_interval`.
    pub heartbeat_interval: Duration,
    /// `node_timeout`.
    pub node_timeout: Duration,
    /// `sslmode`.
    pub sslmode: SslMode,
    /// `sslrootcert`.
    pub sslrootcert: Option<String>,
    /// `connect_timeout`.
    pub connect_timeout: Duration,
    /// `secret`.
    pub secret: Option<Vec<u8>>,
    /// `payload_format`.
    pub payload_format: PayloadFormat,
    /// `max_nodes`.
    pub max_nodes: usize,
}

impl core::fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("hostname", &self.hostname)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("database", &self.database)
            .field("channel", &self.channel)
            .field("sslmode", &self.sslmode)
            .finish_non_exhaustive()
    }
}

/// The parts of a `postgres://` URL.
#[derive(Debug, Default)]
struct Url {
    user: Option<String>,
    password: Option<String>,
    host: Option<String>,
    port: Option<u16>,
    database: Option<String>,
    query: Vec<(String, String)>,
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn parse_url(s: &str) -> Result<Url, String> {
    let rest = s
        .strip_prefix("postgres://")
        .or_else(|| s.strip_prefix("postgresql://"))
        .ok_or("must start with postgres:// or postgresql://")?;
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut url = Url::default();
    let bad = |what: &str| format!("bad {what} (percent-encode reserved characters)");
    let host_part = match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let (user, password) = match userinfo.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (userinfo, None),
            };
            url.user = Some(percent_decode(user).ok_or_else(|| bad("user"))?);
            if let Some(p) = password {
                url.password = Some(percent_decode(p).ok_or_else(|| bad("password"))?);
            }
            host
        }
        None => authority,
    };
    if !host_part.is_empty() {
        let (host, port) = super::http_call::host_port(host_part, 5432)
            .ok_or_else(|| format!("bad host or port {host_part:?}"))?;
        url.host = Some(host);
        url.port = Some(port);
    }
    if !path.is_empty() {
        url.database = Some(percent_decode(path).ok_or_else(|| bad("database"))?);
    }
    for kv in query.split('&').filter(|kv| !kv.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        let v = percent_decode(v).ok_or_else(|| bad("query value"))?;
        url.query.push((k.to_owned(), v));
    }
    Ok(url)
}

impl PostgresConfig {
    /// Reads the options.
    pub fn from_options(o: &mut Options<'_>, _env: &Environment) -> Result<Self, ConfigError> {
        let url = match o.string("url")? {
            Some(u) => parse_url(u).map_err(|e| ConfigError::invalid(o.key_path("url"), e))?,
            None => Url::default(),
        };
        let mut from_url = url.query.clone();
        let mut query = |key: &str| {
            from_url
                .iter()
                .position(|(k, _)| k == key)
                .map(|i| from_url.remove(i).1)
        };
        let url_sslmode = query("sslmode");
        let url_rootcert = query("sslrootcert");
        let url_timeout = query("connect_timeout");
        let both = |o: &Options<'_>, key: &str| {
            ConfigError::invalid(o.key_path(key), "set both here and in url: keep one")
        };
        let pick = |o: &mut Options<'_>,
                    key: &'static str,
                    from_url: Option<String>|
         -> Result<Option<String>, ConfigError> {
            match (o.string(key)?, from_url) {
                (Some(_), Some(_)) => Err(both(o, key)),
                (Some(v), None) => Ok(Some(v.to_owned())),
                (None, v) => Ok(v),
            }
        };
        let hostname = pick(o, "hostname", url.host)?.unwrap_or_else(|| "localhost".into());
        let port = match (o.u64("port")?, url.port) {
            (Some(_), Some(_)) => return Err(both(o, "port")),
            (Some(p), None) => u16::try_from(p)
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| ConfigError::invalid(o.key_path("port"), "not a port"))?,
            (None, p) => p.unwrap_or(5432),
        };
        let username = pick(o, "username", url.user)?;
        let username = match username {
            Some(u) if !u.is_empty() => u,
            _ => {
                return Err(ConfigError::invalid(
                    o.key_path("username"),
                    "missing: the role to log in as (or a user in url)",
                ));
            }
        };
        let password = pick(o, "password", url.password)?.unwrap_or_default();
        let database = pick(o, "database", url.database)?.unwrap_or_else(|| "postgres".into());
        let mut parameters: Vec<(String, String)> = from_url;
        if let Some(mut t) = o.table("parameters")? {
            for (k, v) in t.rest() {
                match v {
                    Value::Str(s) => parameters.push((k.to_owned(), s.clone())),
                    _ => {
                        return Err(ConfigError::invalid(
                            format!("{}.{k}", o.key_path("parameters")),
                            "must be a string",
                        ));
                    }
                }
            }
        }
        let channel = o.string("channel_name")?.unwrap_or("cluster").to_owned();
        if let Err(e) = pg::listen_query(&channel) {
            return Err(ConfigError::invalid(o.key_path("channel_name"), e));
        }
        let heartbeat_interval = o
            .positive_millis("heartbeat_interval")?
            .unwrap_or(Duration::from_millis(5000));
        let node_timeout = o
            .positive_millis("node_timeout")?
            .unwrap_or(heartbeat_interval * 3);
        if node_timeout <= heartbeat_interval {
            return Err(ConfigError::invalid(
                o.key_path("node_timeout"),
                "must be longer than heartbeat_interval, or every node flaps",
            ));
        }
        let sslmode = match pick(o, "sslmode", url_sslmode)? {
            None => SslMode::Prefer,
            Some(m) => SslMode::parse(&m).ok_or_else(|| {
                ConfigError::invalid(
                    o.key_path("sslmode"),
                    format!(
                        "{m:?} is not one of \"disable\", \"prefer\", \"require\", \"verify-full\""
                    ),
                )
            })?,
        };
        let sslrootcert = pick(o, "sslrootcert", url_rootcert)?;
        if sslmode == SslMode::VerifyFull && sslrootcert.is_none() {
            return Err(ConfigError::invalid(
                o.key_path("sslrootcert"),
                "missing: sslmode = \"verify-full\" checks the server against these CA certificates",
            ));
        }
        let connect_timeout = match (o.positive_millis("connect_timeout")?, url_timeout) {
            (Some(_), Some(_)) => return Err(both(o, "connect_timeout")),
            (Some(t), None) => t,
            // libpq's connect_timeout is in seconds.
            (None, Some(s)) => s
                .parse::<u64>()
                .ok()
                .filter(|s| *s > 0)
                .map(Duration::from_secs)
                .ok_or_else(|| {
                    ConfigError::invalid(o.key_path("url"), "connect_timeout is not seconds")
                })?,
            (None, None) => Duration::from_secs(10),
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
        let payload_format = match o.string("payload_format")? {
            None | Some("muster") => PayloadFormat::Muster,
            Some("libcluster") => PayloadFormat::Libcluster,
            Some("realtime") => PayloadFormat::Realtime,
            Some(other) => {
                return Err(ConfigError::invalid(
                    o.key_path("payload_format"),
                    format!(
                        "unknown format \"{}\" (muster, libcluster or realtime)",
                        escape(other)
                    ),
                ));
            }
        };
        if secret.is_some() && payload_format != PayloadFormat::Muster {
            return Err(ConfigError::invalid(
                o.key_path("payload_format"),
                format!(
                    "{:?} payloads cannot be signed: with a secret, only \"muster\"",
                    payload_format.name()
                ),
            ));
        }
        let max_nodes = match o.u64("max_nodes")? {
            None => 1024,
            Some(0) => {
                return Err(ConfigError::invalid(
                    o.key_path("max_nodes"),
                    "must be at least 1",
                ));
            }
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
        };
        // Checked now, so that the first connect cannot fail on them.
        let mut probe = Vec::new();
        let params: Vec<(&str, &str)> = parameters
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if let Err(e) = pg::startup(&mut probe, &username, Some(&database), &params) {
            return Err(ConfigError::invalid(o.key_path("parameters"), e));
        }
        Ok(PostgresConfig {
            hostname,
            port,
            username,
            password,
            database,
            parameters,
            channel,
            heartbeat_interval,
            node_timeout,
            sslmode,
            sslrootcert,
            connect_timeout,
            secret,
            payload_format,
            max_nodes,
        })
    }
}

/// Where the session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No connection; the next attempt at `retry_at`.
    Down,
    /// Reading `sslrootcert`.
    ReadingCa,
    /// Connecting (and TLS, and logging in) until `deadline`.
    Connecting,
    /// Logged in, `LISTEN` sent.
    Listening,
}

/// The Postgres strategy; see the module documentation.
#[derive(Debug)]
pub struct Postgres {
    config: PostgresConfig,
    key: Option<PayloadKey>,
    phase: Phase,
    stream: Option<StreamId>,
    read: Option<ReadId>,
    ca: Option<Bytes>,
    /// Whether the attempt in progress asked for TLS.
    tls: bool,
    /// `prefer`: the server (or the adapter) had no TLS; the next attempt is plain.
    plain_next: bool,
    decoder: Decoder,
    scram: Option<ScramClient>,
    /// This session's backend pid: its own notifications come back with it.
    pid: Option<i32>,
    deadline: Option<Instant>,
    retry_at: Option<Instant>,
    backoff: Duration,
    next_heartbeat: Option<Instant>,
    /// Whether the sync was sent on this session.
    synced: bool,
    /// Whether the server confirmed this session's `LISTEN`: an error before that is the
    /// `LISTEN`'s own (a hot standby refuses it), and a session that does not listen hears
    /// nothing, ever, so it is ended and tried again.
    listening: bool,
    /// An answer to a sync is due (coalesced: one heartbeat answers many).
    answer_due: bool,
    /// Nodes heard from, and when last.
    heard: BTreeMap<NodeName, Instant>,
    /// Signed payloads: the last time and nonce taken from each node (replays refused).
    stamps: BTreeMap<NodeName, (u64, [u8; 8])>,
    /// When a rejected payload was last reported (rate-limited).
    reported: Option<Instant>,
}

/// The first wait after a failed connection, doubled up to a third of `node_timeout`, within
/// [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A signed payload's time may be this far from ours.
const WINDOW_MS: u64 = 30_000;

impl Postgres {
    /// The strategy for `config`.
    pub fn new(config: PostgresConfig) -> Self {
        Postgres {
            key: config.secret.as_deref().map(PayloadKey::new),
            phase: Phase::Down,
            stream: None,
            read: None,
            ca: None,
            tls: false,
            plain_next: false,
            decoder: Decoder::new(),
            scram: None,
            pid: None,
            deadline: None,
            retry_at: None,
            backoff: MIN_BACKOFF,
            next_heartbeat: None,
            synced: false,
            listening: false,
            answer_due: false,
            heard: BTreeMap::new(),
            stamps: BTreeMap::new(),
            reported: None,
            config,
        }
    }

    pub(crate) fn build(
        o: &mut Options<'_>,
        env: &Environment,
    ) -> Result<Box<dyn Strategy>, ConfigError> {
        Ok(Box::new(Postgres::new(PostgresConfig::from_options(
            o, env,
        )?)))
    }

    fn what(&self) -> String {
        format!(
            "postgres {}:{} (channel {:?})",
            self.config.hostname, self.config.port, self.config.channel
        )
    }

    fn endpoint(&self) -> Endpoint {
        match self.config.hostname.parse::<IpAddr>() {
            Ok(ip) => Endpoint::Addr(SocketAddr::new(ip, self.config.port)),
            Err(_) => Endpoint::Host {
                host: self.config.hostname.clone(),
                port: self.config.port,
            },
        }
    }

    /// Starts a connection attempt.
    fn connect(&mut self, now: Instant, cx: &mut Context<'_>) {
        self.retry_at = None;
        if self.config.sslmode == SslMode::VerifyFull
            && self.read.is_none()
            && let Some(path) = &self.config.sslrootcert
        {
            self.read = Some(cx.read_file(path.clone()));
            self.phase = Phase::ReadingCa;
            return;
        }
        let tls = match self.config.sslmode {
            SslMode::Disable => None,
            SslMode::Prefer if self.plain_next => None,
            SslMode::Prefer | SslMode::Require => Some(Tls::insecure(self.config.hostname.clone())),
            SslMode::VerifyFull => match &self.ca {
                Some(ca) => Some(Tls::verified(self.config.hostname.clone(), ca.clone())),
                None => return self.failed(now, cx, "no CA certificates to verify with".into()),
            },
        };
        self.plain_next = false;
        self.tls = tls.is_some();
        let tls = tls.map(|t| StreamTls::negotiated(t, Bytes::from_static(&pg::SSL_REQUEST), b'S'));
        let deadline = now + self.config.connect_timeout;
        self.stream = Some(cx.open_stream(self.endpoint(), tls, deadline));
        self.deadline = Some(deadline);
        self.phase = Phase::Connecting;
        self.decoder = Decoder::new();
        self.scram = None;
        self.pid = None;
        self.synced = false;
        self.listening = false;
    }

    /// The attempt or the session failed: say why, keep the nodes, try again later.
    fn failed(&mut self, now: Instant, cx: &mut Context<'_>, why: String) {
        if let Some(s) = self.stream.take() {
            cx.close_stream(s);
        }
        self.phase = Phase::Down;
        self.deadline = None;
        self.next_heartbeat = None;
        let jitter = cx
            .rng()
            .range_inclusive(0, self.backoff.as_millis() as u64 / 4);
        self.retry_at = Some(now + self.backoff + Duration::from_millis(jitter));
        // Never longer than a third of node_timeout: after an outage every node is back
        // (and heard) before the first one back times the others out.
        let cap = (self.config.node_timeout / 3).clamp(MIN_BACKOFF, MAX_BACKOFF);
        self.backoff = (self.backoff * 2).min(cap);
        cx.discovery_failed(DiscoveryError::Setup(format!("{}: {why}", self.what())));
    }

    fn send(&mut self, cx: &mut Context<'_>, frame: Vec<u8>) {
        if let Some(s) = self.stream {
            cx.write(s, Bytes::from(frame));
        }
    }

    fn payload(&self, kind: Kind, me: &NodeName, cx: &mut Context<'_>) -> Option<String> {
        match self.config.payload_format {
            PayloadFormat::Muster => {}
            PayloadFormat::Libcluster => return Some(me.as_str().to_owned()),
            PayloadFormat::Realtime if kind == Kind::Sync => return Some(format!("sync::{me}")),
            PayloadFormat::Realtime => return Some(format!("heartbeat::{me}")),
        }
        match &self.key {
            None => Some(pg::encode_payload(kind, me)),
            Some(key) => {
                let ms = cx.unix_time()?.as_millis() as u64;
                let mut nonce = [0u8; 8];
                cx.rng().fill_bytes(&mut nonce);
                Some(pg::encode_signed_payload(
                    key,
                    &self.config.channel,
                    kind,
                    me,
                    ms,
                    nonce,
                ))
            }
        }
    }

    /// Announces this node (`kind`), once it is reachable.
    fn announce(&mut self, now: Instant, kind: Kind, cx: &mut Context<'_>) {
        if self.phase != Phase::Listening || !cx.is_reachable() {
            return;
        }
        let Some(me) = cx.this_node().cloned() else {
            return;
        };
        // Only muster's format has a goodbye: the others' peers lose this node when its
        // heartbeats stop (or their distribution link goes down).
        if kind == Kind::Goodbye && self.config.payload_format != PayloadFormat::Muster {
            return;
        }
        let Some(payload) = self.payload(kind, &me, cx) else {
            return cx.discovery_failed(DiscoveryError::Setup(
                "a secret needs the wall clock, which the adapter did not give".into(),
            ));
        };
        let mut frame = Vec::new();
        match pg::notify_query(&self.config.channel, &payload) {
            Ok(sql) if pg::query(&mut frame, &sql).is_ok() => self.send(cx, frame),
            _ => return,
        }
        if kind != Kind::Goodbye {
            self.next_heartbeat = Some(now + self.config.heartbeat_interval);
        }
    }

    fn handle_message(
        &mut self,
        now: Instant,
        m: Backend,
        cx: &mut Context<'_>,
    ) -> Result<(), String> {
        let mut frame = Vec::new();
        match m {
            Backend::AuthenticationOk if self.scram.as_ref().is_some_and(|s| !s.is_verified()) => {
                return Err("the server skipped SCRAM's final proof".into());
            }
            Backend::AuthenticationCleartextPassword => {
                if !self.tls {
                    // As libpq does: the password would cross the network in the clear.
                    return Err(
                        "the server asks for the password in cleartext without TLS; \
                                use scram-sha-256 or md5 in pg_hba.conf, or sslmode"
                            .into(),
                    );
                }
                pg::password_cleartext(&mut frame, &self.config.password)
                    .map_err(|e| e.to_string())?;
            }
            Backend::AuthenticationMd5Password { salt } => {
                pg::password_md5(
                    &mut frame,
                    &self.config.username,
                    &self.config.password,
                    salt,
                )
                .map_err(|e| e.to_string())?;
            }
            Backend::AuthenticationSasl { mechanisms } => {
                if !mechanisms.iter().any(|m| m == SCRAM_SHA_256) {
                    return Err(format!(
                        "the server offers no SCRAM-SHA-256 (it offers {})",
                        escape(&mechanisms.join(", "))
                    ));
                }
                let mut random = [0u8; pg::NONCE_BYTES];
                cx.rng().fill_bytes(&mut random);
                let mut scram = ScramClient::new(&self.config.password, &pg::client_nonce(&random))
                    .map_err(|e| e.to_string())?;
                let first = scram.client_first();
                self.scram = Some(scram);
                pg::sasl_initial_response(&mut frame, SCRAM_SHA_256, &first)
                    .map_err(|e| e.to_string())?;
            }
            Backend::AuthenticationSaslContinue { data } => {
                let scram = self.scram.as_mut().ok_or("SCRAM out of order")?;
                let fin = scram
                    .handle_server_first(&data)
                    .map_err(|e| e.to_string())?;
                pg::sasl_response(&mut frame, &fin).map_err(|e| e.to_string())?;
            }
            Backend::AuthenticationSaslFinal { data } => {
                let scram = self.scram.as_mut().ok_or("SCRAM out of order")?;
                scram
                    .handle_server_final(&data)
                    .map_err(|e| e.to_string())?;
            }
            Backend::BackendKeyData { pid, .. } => self.pid = Some(pid),
            Backend::ReadyForQuery { .. } if self.phase == Phase::Connecting => {
                let sql = pg::listen_query(&self.config.channel).map_err(|e| e.to_string())?;
                pg::query(&mut frame, &sql).map_err(|e| e.to_string())?;
                self.phase = Phase::Listening;
                self.deadline = None;
                // Everyone known gets a whole timeout to be heard from again.
                for t in self.heard.values_mut() {
                    *t = now;
                }
                self.send(cx, std::mem::take(&mut frame));
                self.synced = cx.is_reachable();
                self.announce(now, Kind::Sync, cx);
            }
            Backend::CommandComplete { tag } if tag == "LISTEN" && !self.listening => {
                self.listening = true;
                // Only a session that listens is a success: a standby that lets us log in
                // but refuses the LISTEN keeps backing off.
                self.backoff = MIN_BACKOFF;
            }
            Backend::ErrorResponse(e) => {
                if e.is_fatal() || self.phase == Phase::Connecting || !self.listening {
                    return Err(e.to_string());
                }
                cx.discovery_failed(DiscoveryError::Setup(format!("{}: {e}", self.what())));
            }
            Backend::NotificationResponse {
                pid,
                channel,
                payload,
            } if channel == self.config.channel && Some(pid) != self.pid => {
                self.notification(now, &payload, cx);
            }
            _ => {}
        }
        if !frame.is_empty() {
            self.send(cx, frame);
        }
        Ok(())
    }

    fn reject(&mut self, now: Instant, cx: &mut Context<'_>, why: Rejection) {
        cx.count_rejected();
        // One report a minute: a flood of forged NOTIFYs must not flood the events.
        if self
            .reported
            .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(60))
        {
            self.reported = Some(now);
            cx.rejected(None, why);
        }
    }

    fn notification(&mut self, now: Instant, payload: &str, cx: &mut Context<'_>) {
        let notice = match pg::decode_payload(payload, &self.config.channel, self.key.as_ref()) {
            Ok(n) => n,
            Err(e) => {
                let why = format!("{}: {e}", self.what());
                let why = match e {
                    pg::PayloadError::BadMac | pg::PayloadError::Unsigned => {
                        Rejection::Unauthenticated(why)
                    }
                    _ => Rejection::Malformed(why),
                };
                return self.reject(now, cx, why);
            }
        };
        if cx.this_node() == Some(&notice.node) {
            return;
        }
        if let Some(stamp) = notice.stamp {
            if let Some(ours) = cx.unix_time() {
                let ours = ours.as_millis() as u64;
                if stamp.unix_ms.abs_diff(ours) > WINDOW_MS {
                    let why = format!(
                        "{}'s payload is {} ms away from this node's clock",
                        notice.node,
                        stamp.unix_ms.abs_diff(ours)
                    );
                    return self.reject(now, cx, Rejection::Unauthenticated(why));
                }
            }
            let last = self.stamps.get(&notice.node).copied();
            if last.is_some_and(|(ms, nonce)| {
                stamp.unix_ms < ms || (stamp.unix_ms == ms && stamp.nonce == nonce)
            }) {
                let why = format!("a replayed payload of {}", notice.node);
                return self.reject(now, cx, Rejection::Unauthenticated(why));
            }
            self.stamps
                .insert(notice.node.clone(), (stamp.unix_ms, stamp.nonce));
        }
        match notice.kind {
            Kind::Goodbye => {
                self.heard.remove(&notice.node);
                cx.lose(notice.node.as_str());
            }
            kind => {
                if !self.heard.contains_key(&notice.node)
                    && self.heard.len() >= self.config.max_nodes
                {
                    let why = format!(
                        "{}: already {} nodes (max_nodes): {} rejected",
                        self.what(),
                        self.config.max_nodes,
                        notice.node
                    );
                    return self.reject(now, cx, Rejection::OverLimit(why));
                }
                if kind == Kind::Sync {
                    self.answer_due = true;
                }
                self.heard.insert(notice.node.clone(), now);
                cx.found_node(&crate::node::Node::new(notice.node));
            }
        }
    }

    fn stream_event(&mut self, now: Instant, event: StreamEvent<'_>, cx: &mut Context<'_>) {
        match event {
            StreamEvent::Opened(_) => {
                let mut frame = Vec::new();
                let params: Vec<(&str, &str)> = self
                    .config
                    .parameters
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                match pg::startup(
                    &mut frame,
                    &self.config.username,
                    Some(&self.config.database),
                    &params,
                ) {
                    Ok(()) => self.send(cx, frame),
                    Err(e) => self.failed(now, cx, e.to_string()),
                }
            }
            StreamEvent::Data(d) => {
                self.decoder.push(d);
                loop {
                    match self.decoder.next_message() {
                        Ok(Some(m)) => {
                            if let Err(why) = self.handle_message(now, m, cx) {
                                return self.failed(now, cx, why);
                            }
                            if self.stream.is_none() {
                                return;
                            }
                        }
                        Ok(None) => break,
                        Err(e) => return self.failed(now, cx, e.to_string()),
                    }
                }
                if std::mem::take(&mut self.answer_due) {
                    self.announce(now, Kind::Heartbeat, cx);
                }
            }
            StreamEvent::Closed => self.failed(now, cx, "the server closed the connection".into()),
            StreamEvent::Failed(why) => {
                if self.tls
                    && self.config.sslmode == SslMode::Prefer
                    && matches!(why.kind(), FailureKind::Refused | FailureKind::Unsupported)
                    && self.phase == Phase::Connecting
                {
                    // The server (or the adapter) has no TLS: plain, at once.
                    self.plain_next = true;
                    self.stream = None;
                    return self.connect(now, cx);
                }
                self.failed(now, cx, why.to_string())
            }
        }
    }
}

impl Strategy for Postgres {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn handle_timeout(&mut self, now: Instant, cx: &mut Context<'_>) {
        match self.phase {
            Phase::Down if self.retry_at.is_none_or(|t| t <= now) => self.connect(now, cx),
            Phase::Connecting if self.deadline.is_some_and(|d| d <= now) => {
                let why = format!(
                    "not logged in within {} ms",
                    self.config.connect_timeout.as_millis()
                );
                self.failed(now, cx, why);
            }
            Phase::Listening => {
                if !self.synced && cx.is_reachable() {
                    // Reachable only now (the Erlang node registered): the sync goes now.
                    self.synced = true;
                    self.announce(now, Kind::Sync, cx);
                } else if self.next_heartbeat.is_some_and(|t| t <= now) {
                    self.announce(now, Kind::Heartbeat, cx);
                }
                let timeout = self.config.node_timeout;
                let gone: Vec<NodeName> = self
                    .heard
                    .iter()
                    .filter(|(_, t)| now.saturating_duration_since(**t) >= timeout)
                    .map(|(n, _)| n.clone())
                    .collect();
                for n in gone {
                    self.heard.remove(&n);
                    cx.lose(n.as_str());
                }
            }
            _ => {}
        }
    }

    fn handle_file(
        &mut self,
        now: Instant,
        read: ReadId,
        result: Result<&[u8], &Failure>,
        cx: &mut Context<'_>,
    ) {
        if self.read != Some(read) {
            return;
        }
        match result {
            Ok(pem) => {
                self.ca = Some(Bytes::copy_from_slice(pem));
                self.connect(now, cx);
                // Read again at the next connection (a rotated CA).
                self.read = None;
            }
            Err(why) => {
                self.read = None;
                let path = self.config.sslrootcert.clone().unwrap_or_default();
                self.failed(now, cx, format!("sslrootcert {path}: {why}"));
            }
        }
    }

    fn handle_stream(
        &mut self,
        now: Instant,
        stream: StreamId,
        event: StreamEvent<'_>,
        cx: &mut Context<'_>,
    ) {
        if self.stream == Some(stream) {
            self.stream_event(now, event, cx);
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Down => self.retry_at,
            Phase::ReadingCa => None,
            Phase::Connecting => self.deadline,
            Phase::Listening => {
                let expiry = self
                    .heard
                    .values()
                    .min()
                    .map(|t| *t + self.config.node_timeout);
                crate::time::earliest(self.next_heartbeat, expiry)
            }
        }
    }

    fn leave(&mut self, now: Instant, cx: &mut Context<'_>) {
        if self.phase == Phase::Listening && self.synced {
            self.announce(now, Kind::Goodbye, cx);
            let mut frame = Vec::new();
            pg::terminate(&mut frame);
            self.send(cx, frame);
        }
    }

    fn describe(&self) -> Vec<(String, Value)> {
        let c = &self.config;
        let mut v = vec![
            ("hostname".into(), Value::str(&c.hostname)),
            ("port".into(), Value::Int(i64::from(c.port))),
            ("username".into(), Value::str(&c.username)),
            (
                "#password".into(),
                Value::str(if c.password.is_empty() { "none" } else { "set" }),
            ),
            ("database".into(), Value::str(&c.database)),
            ("channel_name".into(), Value::str(&c.channel)),
            (
                "heartbeat_interval".into(),
                Value::millis(c.heartbeat_interval),
            ),
            ("node_timeout".into(), Value::millis(c.node_timeout)),
            ("sslmode".into(), Value::str(c.sslmode.name())),
            ("connect_timeout".into(), Value::millis(c.connect_timeout)),
            ("max_nodes".into(), Value::Int(c.max_nodes as i64)),
            ("payload_format".into(), Value::str(c.payload_format.name())),
            (
                "#secret".into(),
                Value::str(if c.secret.is_some() {
                    "set: payloads are signed"
                } else {
                    "none: anyone who may NOTIFY on the channel can announce a node"
                }),
            ),
        ];
        if let Some(r) = &c.sslrootcert {
            v.push(("sslrootcert".into(), Value::str(r)));
        }
        if !c.parameters.is_empty() {
            v.push((
                "parameters".into(),
                Value::Table(
                    c.parameters
                        .iter()
                        .map(|(k, x)| (k.clone(), Value::str(x)))
                        .collect(),
                ),
            ));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(entries: &[(&str, Value)]) -> Result<PostgresConfig, ConfigError> {
        let t: Vec<(String, Value)> = entries
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        let mut o = Options::new("pg", &t);
        let c = PostgresConfig::from_options(&mut o, &Environment::new())?;
        o.finish()?;
        Ok(c)
    }

    #[test]
    fn a_url_or_keys_and_the_errors_name_the_key() {
        let c = config(&[(
            "url",
            Value::str("postgres://app:p%40ss@db.internal:5433/cluster?sslmode=require&application_name=web"),
        )])
        .unwrap();
        assert_eq!(
            (
                c.username.as_str(),
                c.password.as_str(),
                c.hostname.as_str(),
                c.port
            ),
            ("app", "p@ss", "db.internal", 5433)
        );
        assert_eq!(
            (c.database.as_str(), c.sslmode),
            ("cluster", SslMode::Require)
        );
        assert_eq!(c.parameters, [("application_name".into(), "web".into())]);
        assert_eq!(c.node_timeout, Duration::from_millis(15_000));

        let e = config(&[("url", Value::str("mysql://x"))]).unwrap_err();
        assert!(e.to_string().contains("pg.url"), "{e}");
        let e = config(&[]).unwrap_err();
        assert!(e.to_string().contains("pg.username"), "{e}");
        let e = config(&[
            ("username", Value::str("app")),
            ("sslmode", Value::str("verify-full")),
        ])
        .unwrap_err();
        assert!(e.to_string().contains("pg.sslrootcert"), "{e}");
        let e = config(&[
            ("url", Value::str("postgres://app@h/db")),
            ("username", Value::str("other")),
        ])
        .unwrap_err();
        assert!(e.to_string().contains("pg.username"), "{e}");
        let e = config(&[
            ("username", Value::str("app")),
            ("heartbeat_interval", Value::Int(5000)),
            ("node_timeout", Value::Int(5000)),
        ])
        .unwrap_err();
        assert!(e.to_string().contains("pg.node_timeout"), "{e}");
        let e = config(&[
            ("username", Value::str("app")),
            ("channel_name", Value::str("")),
        ])
        .unwrap_err();
        assert!(e.to_string().contains("pg.channel_name"), "{e}");
        let e = config(&[
            ("username", Value::str("app")),
            ("payload_format", Value::str("beam")),
        ])
        .unwrap_err();
        assert!(e.to_string().contains("pg.payload_format"), "{e}");
        assert!(
            e.to_string().contains("muster, libcluster or realtime"),
            "{e}"
        );
        // Another implementation's payloads cannot carry the MAC.
        let e = config(&[
            ("username", Value::str("app")),
            ("payload_format", Value::str("libcluster")),
            ("secret", Value::str("s")),
        ])
        .unwrap_err();
        assert!(e.to_string().contains("pg.payload_format"), "{e}");
        let c = config(&[
            ("username", Value::str("app")),
            ("payload_format", Value::str("realtime")),
        ])
        .unwrap();
        assert_eq!(c.payload_format, PayloadFormat::Realtime);
    }
}
