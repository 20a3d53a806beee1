//! The Rancher strategy: the containers of this container's service, from Rancher 1.x's
//! metadata service (libcluster's `Cluster.Strategy.Rancher`).
//!
//! Options:
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `node_basename` | required | the name part of every node: `node_basename@<ip>` |
//! | `polling_interval` | `5000` | ms between polls |
//! | `metadata_url` | `http://rancher-metadata/latest/self/service` | the service's metadata (plain HTTP) |
//! | `request_timeout` | `5000` | ms a request may take (libcluster waits forever) |
//!
//! Each container's first IP names a node; a container without one is skipped (libcluster
//! crashes on it). A failed request, a status other than 200 or a malformed body keeps the
//! last good set and reports `discovery_failed` (libcluster disconnects every node).

use core::fmt::Write as _;
use core::time::Duration;

use bytes::Bytes;

use super::http_call::{HttpCall, authority, host_port};
use super::{Context, Environment, ExchangeId, Periodic, Reply, Strategy};
use crate::config::{ConfigError, Options, Value};
use crate::io::{Endpoint, Exchange};
use crate::reason::{DiscoveryError, Failure, escape};

use crate::proto::http::{self, DEFAULT_MAX_BODY, Response};
use crate::proto::rancher;
use crate::time::Instant;

/// The metadata service's URL unless configured.
pub const DEFAULT_METADATA_URL: &str = "http://rancher-metadata/latest/self/service";

/// The Rancher strategy's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RancherConfig {
    /// `node_basename`.
    pub node_basename: String,
    /// `polling_interval`.
    pub polling_interval: Duration,
    /// `metadata_url`.
    pub metadata_url: String,
    /// `request_timeout`.
    pub request_timeout: Duration,
    host: String,
    port: u16,
    path: String,
}

/// Splits an `http://host[:port]/path` URL.
fn split_url(url: &str) -> Option<(String, u16, String)> {
    let rest = url.strip_prefix("http://")?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = host_port(hostport, 80)?;
    (!host.is_empty()).then(|| (host, port, path.to_owned()))
}

impl RancherConfig {
    /// Polls the default metadata URL every 5 s, naming nodes `node_basename@<ip>`.
    pub fn new(node_basename: impl Into<String>) -> Self {
        let (host, port, path) = split_url(DEFAULT_METADATA_URL).unwrap_or_default();
        RancherConfig {
            node_basename: node_basename.into(),
            polling_interval: Duration::from_millis(5000),
            metadata_url: DEFAULT_METADATA_URL.to_owned(),
            request_timeout: Duration::from_millis(5000),
            host,
            port,
            path,
        }
    }

    /// Uses another metadata URL (`http://host[:port]/path`); `None` if it is not one.
    pub fn metadata_url(mut self, url: &str) -> Option<Self> {
        let (host, port, path) = split_url(url)?;
        (self.host, self.port, self.path) = (host, port, path);
        self.metadata_url = url.to_owned();
        Some(self)
    }

    /// Reads the options.
    pub fn from_options(o: &mut Options<'_>) -> Result<Self, ConfigError> {
        let basename = super::dns_poll::required_string(o, "node_basename")?;
        super::dns_poll::basename(o, "node_basename", &basename)?;
        let mut c = RancherConfig::new(basename);
        if let Some(url) = o.string("metadata_url")? {
            c = c.metadata_url(url).ok_or_else(|| {
                ConfigError::invalid(
                    o.key_path("metadata_url"),
                    format!("{url:?} is not an http://host[:port]/path URL"),
                )
            })?;
        }
        if let Some(d) = o.positive_millis("polling_interval")? {
            c.polling_interval = d;
        }
        if let Some(d) = o.positive_millis("request_timeout")? {
            c.request_timeout = d;
        }
        Ok(c)
    }
}

/// The Rancher strategy; see the module documentation.
#[derive(Debug)]
pub struct Rancher {
    config: RancherConfig,
    every: Periodic,
    call: HttpCall,
}

impl Rancher {
    /// The strategy for `config`.
    pub fn new(config: RancherConfig) -> Self {
        Rancher {
            every: Periodic::new(config.polling_interval),
            config,
            call: HttpCall::default(),
        }
    }

    pub(crate) fn build(
        o: &mut Options<'_>,
        _env: &Environment,
    ) -> Result<Box<dyn Strategy>, ConfigError> {
        Ok(Box::new(Rancher::new(RancherConfig::from_options(o)?)))
    }

    fn poll(&mut self, now: Instant, cx: &mut Context<'_>) {
        let c = &self.config;
        let request = http::get(
            &authority(&c.host, c.port, 80),
            &c.path,
            &[("Accept", "application/json")],
        );
        let to = match c.host.parse() {
            Ok(ip) => Endpoint::Addr(std::net::SocketAddr::new(ip, c.port)),
            Err(_) => Endpoint::Host {
                host: c.host.clone(),
                port: c.port,
            },
        };
        let x = Exchange::tcp(to, Bytes::from(request), now);
        self.call
            .start(now, c.request_timeout, DEFAULT_MAX_BODY, x, cx);
    }

    fn response(&self, r: Result<Response, Failure>, cx: &mut Context<'_>) {
        let url = &self.config.metadata_url;
        let r = match r {
            Ok(r) if r.status == 200 => r,
            Ok(r) => {
                return cx.discovery_failed(DiscoveryError::Status {
                    source: url.clone(),
                    status: r.status,
                    message: format!("{}: {}", escape(&r.reason), r.body_excerpt(200)),
                });
            }
            Err(e) => return cx.discovery_failed(DiscoveryError::request(url, e)),
        };
        let containers = match rancher::parse(&r.body) {
            Ok(c) => c,
            Err(e) => {
                let why = format!("invalid response: {e}");
                return cx.discovery_failed(DiscoveryError::invalid(url, why));
            }
        };
        let mut name = String::new();
        let mut round = cx.round();
        for ip in &containers.ips {
            name.clear();
            let _ = write!(name, "{}@{ip}", self.config.node_basename);
            if let Err(e) = round.add(&name, None) {
                return round.fail(DiscoveryError::invalid(url, format_args!("{name}: {e}")));
            }
        }
        round.commit();
    }
}

impl Strategy for Rancher {
    fn kind(&self) -> &'static str {
        "rancher"
    }

    fn handle_timeout(&mut self, now: Instant, cx: &mut Context<'_>) {
        if let Some(r) = self.call.handle_timeout(now, cx) {
            self.response(r, cx);
        }
        if !self.call.busy() && self.every.fire(now) {
            self.poll(now, cx);
        }
    }

    fn handle_exchange(
        &mut self,
        _now: Instant,
        exchange: ExchangeId,
        reply: Reply<'_>,
        cx: &mut Context<'_>,
    ) {
        if let Some(r) = self.call.handle_exchange(exchange, reply, cx) {
            self.response(r, cx);
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let next = if self.call.busy() {
            None
        } else {
            self.every.next()
        };
        crate::time::earliest(next, self.call.poll_timeout())
    }

    fn describe(&self) -> Vec<(String, Value)> {
        vec![
            (
                "node_basename".into(),
                Value::str(&self.config.node_basename),
            ),
            (
                "polling_interval".into(),
                Value::millis(self.config.polling_interval),
            ),
            ("metadata_url".into(), Value::str(&self.config.metadata_url)),
            (
                "request_timeout".into(),
                Value::millis(self.config.request_timeout),
            ),
        ]
    }
}
