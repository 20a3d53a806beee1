//! The LocalEpmd strategy: the nodes registered with this host's EPMD (libcluster's
//! `Cluster.Strategy.LocalEpmd`).
//!
//! Options:
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `polling_interval` | `5000` | how often to ask EPMD (ms) |
//! | `epmd_port` | `ERL_EPMD_PORT`, else `4369` | the local EPMD's port |
//!
//! Every node registered with the EPMD at 127.0.0.1 becomes `name@<this node's host>`. Unlike
//! libcluster, which asks once at start and crashes when EPMD is down, it asks on every poll;
//! an EPMD that is absent or answers nonsense is a `discovery_failed` event and the next poll
//! tries again, keeping what was found before. A node that unregisters (it stopped) leaves
//! the discovered set. What EPMD lists is untrusted: a name that is no node's (a control
//! character, a space, a broken line) is skipped and reported as `rejected` (each at most
//! once a minute, every one counted); the other nodes are still discovered.

use core::time::Duration;
use std::net::{IpAddr, Ipv4Addr};

use super::epmd_names::{ASK_TIMEOUT, Asking, Reply, Reported, epmd_port, reject};
use super::{Context, Environment, ExchangeId, Periodic, Reply as Part, Strategy};
use crate::config::{ConfigError, Options, Value};
use crate::reason::DiscoveryError;
use crate::time::Instant;

/// The LocalEpmd strategy's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LocalEpmdConfig {
    /// `polling_interval`.
    pub polling_interval: Duration,
    /// `epmd_port`.
    pub epmd_port: u16,
}

impl LocalEpmdConfig {
    /// Asks the EPMD on `epmd_port` every `polling_interval`.
    pub fn new(epmd_port: u16, polling_interval: Duration) -> Self {
        LocalEpmdConfig {
            polling_interval,
            epmd_port,
        }
    }

    /// Reads the options.
    pub fn from_options(o: &mut Options<'_>, env: &Environment) -> Result<Self, ConfigError> {
        Ok(LocalEpmdConfig {
            polling_interval: o
                .positive_millis("polling_interval")?
                .unwrap_or(Duration::from_millis(5000)),
            epmd_port: epmd_port(o, env)?,
        })
    }
}

/// The LocalEpmd strategy; see the module documentation.
#[derive(Debug)]
pub struct LocalEpmd {
    config: LocalEpmdConfig,
    every: Periodic,
    asking: Asking,
    reported: Reported,
}

impl LocalEpmd {
    /// The strategy for `config`.
    pub fn new(config: LocalEpmdConfig) -> Self {
        LocalEpmd {
            every: Periodic::new(config.polling_interval),
            config,
            asking: Asking::default(),
            reported: Reported::default(),
        }
    }

    pub(crate) fn build(
        o: &mut Options<'_>,
        env: &Environment,
    ) -> Result<Box<dyn Strategy>, ConfigError> {
        Ok(Box::new(LocalEpmd::new(LocalEpmdConfig::from_options(
            o, env,
        )?)))
    }

    fn poll(&mut self, now: Instant, cx: &mut Context<'_>) {
        if !self.asking.is_idle() {
            self.asking.cancel_all(cx);
        }
        let local = IpAddr::V4(Ipv4Addr::LOCALHOST).to_string();
        self.asking
            .ask(cx, &local, self.config.epmd_port, now + ASK_TIMEOUT);
    }
}

impl Strategy for LocalEpmd {
    fn kind(&self) -> &'static str {
        "local_epmd"
    }

    fn handle_timeout(&mut self, now: Instant, cx: &mut Context<'_>) {
        if self.every.fire(now) {
            self.poll(now, cx);
        }
    }

    fn handle_exchange(
        &mut self,
        _now: Instant,
        exchange: ExchangeId,
        part: Part<'_>,
        cx: &mut Context<'_>,
    ) {
        match self.asking.answer(exchange, part, self.config.epmd_port) {
            None => {}
            Some(Reply::Failed(why)) => cx.discovery_failed(why),
            Some(Reply::Names(_, names, skipped)) => {
                let Some(host) = cx.this_node().map(|n| n.host().to_owned()) else {
                    return cx.discovery_failed(DiscoveryError::Setup(
                        "local_epmd names nodes after this node's host: give this node a name"
                            .into(),
                    ));
                };
                let epmd = ("127.0.0.1", self.config.epmd_port);
                // A name that is no node's is skipped and reported: the others still count.
                let mut bad = Vec::new();
                let mut round = cx.round();
                for name in &names {
                    if let Err(e) = round.add(&format!("{name}@{host}"), None) {
                        bad.push((name.clone(), e.to_string()));
                    }
                }
                round.commit();
                for line in skipped {
                    bad.push((line, "not a names line".to_owned()));
                }
                for (what, why) in bad {
                    reject(cx, &mut self.reported, epmd, &what, why);
                }
            }
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.every.next()
    }

    fn describe(&self) -> Vec<(String, Value)> {
        vec![
            (
                "polling_interval".into(),
                Value::millis(self.config.polling_interval),
            ),
            (
                "epmd_port".into(),
                Value::Int(i64::from(self.config.epmd_port)),
            ),
        ]
    }
}
