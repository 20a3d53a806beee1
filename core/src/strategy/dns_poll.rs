//! The DNSPoll strategy: the A and AAAA records of a name (libcluster's
//! `Cluster.Strategy.DNSPoll`).
//!
//! Options:
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `query` | required | the name to look up (the search list applies, as glibc applies it) |
//! | `node_basename` | required | the name part of every node: `node_basename@<ip>` |
//! | `polling_interval` | `5000` | ms between polls (libcluster's documented `poll_interval` is accepted, with a warning) |
//! | `nameservers` | from `resolv_conf` | name servers to ask instead, e.g. `["127.0.0.1:5353"]` |
//! | `resolv_conf` | `/etc/resolv.conf` | the resolver configuration, re-read on every poll |
//!
//! IPv6 addresses are written as Erlang's `inet:ntoa` writes them
//! (`node@2a09:8280:1:a270:b8f5:b9f7:8891:f3`). Unlike libcluster, which cannot tell a DNS
//! failure from an empty answer and disconnects the cluster on either, a failed or NXDOMAIN
//! lookup keeps the last good set and reports `discovery_failed`; only an empty NOERROR
//! answer empties the set (and with `prune = false` not even that disconnects). When one
//! family's lookup fails and the other's finds records (a server that refuses AAAA, say), the
//! records found are added, nothing is removed, and the failed half is reported.

use super::dns::{DnsOptions, PollResult, Poller, polled_strategy};
use super::{Context, Environment, Strategy};
use crate::config::{ConfigError, Options, Value};
use crate::node::NodeName;
use crate::proto::dns::{Found, Kind};
use crate::reason::DiscoveryError;
use core::fmt::Write as _;

/// The DNSPoll strategy's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DnsPollConfig {
    /// `query`.
    pub query: String,
    /// `node_basename`.
    pub node_basename: String,
    /// The options every DNS strategy takes.
    pub dns: DnsOptions,
}

/// Checks that `basename` can be the name part of a node name.
pub(crate) fn basename(o: &Options<'_>, key: &str, basename: &str) -> Result<(), ConfigError> {
    NodeName::validate(&format!("{basename}@host"))
        .map_err(|e| ConfigError::invalid(o.key_path(key), format!("{basename:?}: {e}")))
}

/// A required, non-empty string option.
pub(crate) fn required_string(
    o: &mut Options<'_>,
    key: &'static str,
) -> Result<String, ConfigError> {
    let v = o.string(key)?;
    let v = o.required(key, v)?;
    if v.is_empty() {
        return Err(ConfigError::invalid(o.key_path(key), "must not be empty"));
    }
    Ok(v.to_owned())
}

impl DnsPollConfig {
    /// Polls `query` every 5 s, naming nodes `node_basename@<ip>`.
    pub fn new(query: impl Into<String>, node_basename: impl Into<String>) -> Self {
        DnsPollConfig {
            query: query.into(),
            node_basename: node_basename.into(),
            dns: DnsOptions::default(),
        }
    }

    /// Sets the options every DNS strategy takes.
    pub fn with_dns(mut self, dns: DnsOptions) -> Self {
        self.dns = dns;
        self
    }

    /// Reads the options.
    pub fn from_options(o: &mut Options<'_>) -> Result<Self, ConfigError> {
        let query = required_string(o, "query")?;
        let node_basename = required_string(o, "node_basename")?;
        basename(o, "node_basename", &node_basename)?;
        Ok(DnsPollConfig {
            query,
            node_basename,
            dns: DnsOptions::from_options(o)?,
        })
    }
}

/// The DNSPoll strategy; see the module documentation.
#[derive(Debug)]
pub struct DnsPoll {
    config: DnsPollConfig,
    poller: Poller,
}

impl DnsPoll {
    /// The strategy for `config`.
    pub fn new(config: DnsPollConfig) -> Self {
        let questions = vec![
            (config.query.clone(), Kind::A),
            (config.query.clone(), Kind::Aaaa),
        ];
        DnsPoll {
            poller: Poller::new(config.dns.clone(), questions),
            config,
        }
    }

    pub(crate) fn build(
        o: &mut Options<'_>,
        _env: &Environment,
    ) -> Result<Box<dyn Strategy>, ConfigError> {
        Ok(Box::new(DnsPoll::new(DnsPollConfig::from_options(o)?)))
    }

    fn report(&self, result: Option<PollResult>, cx: &mut Context<'_>) {
        report_ips(&self.config.node_basename, &self.config.query, result, cx);
    }

    fn describe_config(&self) -> Vec<(String, Value)> {
        vec![
            ("query".into(), Value::str(&self.config.query)),
            (
                "node_basename".into(),
                Value::str(&self.config.node_basename),
            ),
        ]
    }
}

/// Commits `basename@ip` for every address found, or reports the failure.
pub(crate) fn report_ips(
    basename: &str,
    query: &str,
    result: Option<PollResult>,
    cx: &mut Context<'_>,
) {
    match result {
        None => {}
        Some(PollResult::Failed(why)) => {
            cx.discovery_failed(DiscoveryError::request(format!("lookup of {query}"), why))
        }
        Some(PollResult::Partial(found, why)) => {
            // What was found is added (nothing removed: the failed half may still hold
            // nodes), and the failure is said.
            let mut name = String::with_capacity(basename.len() + 40);
            for f in &found {
                if let Found::Ip(ip) = f {
                    name.clear();
                    let _ = write!(name, "{basename}@{ip}");
                    cx.found(&name, None).ok();
                }
            }
            let why = why.context("used what the other lookups found; failed");
            cx.discovery_failed(DiscoveryError::request(format!("lookup of {query}"), why))
        }
        Some(PollResult::Found(found)) => {
            // One buffer for every name: a node the cluster knows costs no allocation.
            let mut name = String::with_capacity(basename.len() + 40);
            let mut round = cx.round();
            for f in &found {
                if let Found::Ip(ip) = f {
                    name.clear();
                    let _ = write!(name, "{basename}@{ip}");
                    if let Err(e) = round.add(&name, None) {
                        return round.fail(DiscoveryError::invalid(
                            format!("lookup of {query}"),
                            format_args!("{name}: {e}"),
                        ));
                    }
                }
            }
            round.commit();
        }
    }
}

polled_strategy!(DnsPoll, "dns_poll");
