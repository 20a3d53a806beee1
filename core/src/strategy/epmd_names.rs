//! Asking EPMDs for their registered names: what LocalEpmd and ErlangHosts share.

use core::time::Duration;
use std::collections::BTreeMap;

use super::{Context, Environment, ExchangeId, Reply as Part};
use crate::config::{ConfigError, Options};
use crate::io::{Endpoint, Exchange};
use crate::proto::epmd;
use crate::reason::{DiscoveryError, Failure, Rejection};
use std::net::SocketAddr;

/// How long an EPMD has to answer `NAMES`.
pub(crate) const ASK_TIMEOUT: Duration = Duration::from_secs(5);

/// The EPMD port: the `epmd_port` option, else `ERL_EPMD_PORT`, else 4369.
pub(crate) fn epmd_port(o: &mut Options<'_>, env: &Environment) -> Result<u16, ConfigError> {
    if let Some(p) = o.u64("epmd_port")? {
        return u16::try_from(p).ok().filter(|p| *p != 0).ok_or_else(|| {
            ConfigError::invalid(o.key_path("epmd_port"), format!("{p} is not a TCP port"))
        });
    }
    match env.get("ERL_EPMD_PORT") {
        Some(v) => v.trim().parse().map_err(|_| {
            ConfigError::invalid(
                o.key_path("epmd_port"),
                format!("ERL_EPMD_PORT={v:?} is not a port"),
            )
        }),
        None => Ok(epmd::DEFAULT_PORT),
    }
}

/// How often one bad name in a listing is reported; every one is counted.
pub(crate) const REPORT_EVERY: Duration = Duration::from_secs(60);

/// What was reported lately, so that one bad name in a listing is reported once per
/// interval, not at every poll.
#[derive(Debug, Default)]
pub(crate) struct Reported {
    at: BTreeMap<String, crate::Instant>,
}

impl Reported {
    /// Whether `what` is to be reported at `now`: not reported within `every`. Records it.
    pub(crate) fn due(&mut self, what: &str, now: crate::Instant, every: Duration) -> bool {
        if self.at.len() >= 1024 {
            self.at
                .retain(|_, at| now.saturating_duration_since(*at) < every);
        }
        match self.at.get(what) {
            Some(at) if now.saturating_duration_since(*at) < every => false,
            _ => {
                if self.at.len() < 1024 {
                    self.at.insert(what.to_owned(), now);
                }
                true
            }
        }
    }
}

/// The listing of `host` named what is not a node: skipped, and reported unless it was
/// lately.
pub(crate) fn reject(
    cx: &mut Context<'_>,
    reported: &mut Reported,
    epmd: (&str, u16),
    what: &str,
    why: impl core::fmt::Display,
) {
    if reported.due(what, cx.now(), REPORT_EVERY) {
        let (host, port) = epmd;
        let from = host.parse().ok().map(|ip| SocketAddr::new(ip, port));
        let text = format!("EPMD on {host}:{port} listed {what:?}, which names no node: {why}");
        cx.rejected(from, Rejection::InvalidNode(text));
    } else {
        cx.count_rejected();
    }
}

/// `NAMES` requests in flight, by token, each with the host asked and the reply so far.
#[derive(Debug, Default)]
pub(crate) struct Asking {
    pending: BTreeMap<ExchangeId, (String, Vec<u8>)>,
}

/// What came of one host's `NAMES`.
pub(crate) enum Reply {
    /// The host, its registered node names (before the `@`), and the lines of its listing
    /// that name nothing.
    Names(String, Vec<String>, Vec<String>),
    /// The host could not be asked, or answered nonsense: why.
    Failed(DiscoveryError),
}

impl Asking {
    pub(crate) fn ask(
        &mut self,
        cx: &mut Context<'_>,
        host: &str,
        port: u16,
        deadline: crate::Instant,
    ) {
        let to = match host.parse() {
            Ok(ip) => Endpoint::Addr(std::net::SocketAddr::new(ip, port)),
            Err(_) => Endpoint::Host {
                host: host.to_owned(),
                port,
            },
        };
        let x = Exchange::tcp(to, epmd::names_request().into(), deadline).max_reply(64 * 1024);
        let id = cx.exchange(x);
        self.pending.insert(id, (host.to_owned(), Vec::new()));
    }

    pub(crate) fn is_idle(&self) -> bool {
        self.pending.is_empty()
    }

    /// Stops waiting for every request (a new poll starts).
    pub(crate) fn cancel_all(&mut self, cx: &mut Context<'_>) {
        for id in std::mem::take(&mut self.pending).into_keys() {
            cx.cancel_exchange(id);
        }
    }

    /// Takes what came back on an exchange; returns what it completed, if anything.
    pub(crate) fn answer(&mut self, id: ExchangeId, part: Part<'_>, port: u16) -> Option<Reply> {
        let (_, buf) = self.pending.get_mut(&id)?;
        if let Part::Data(d) = part {
            buf.extend_from_slice(d);
            return None;
        }
        let (host, buf) = self.pending.remove(&id)?;
        let source = format!("EPMD on {host}:{port}");
        Some(match part {
            Part::Closed => match epmd::parse_names(&buf) {
                Ok(n) => {
                    let names = n.nodes.into_iter().map(|(name, _)| name).collect();
                    Reply::Names(host, names, n.skipped)
                }
                Err(e) => Reply::Failed(DiscoveryError::invalid(source, e)),
            },
            Part::Failed(why) => Reply::Failed(DiscoveryError::request(source, why.clone())),
            _ => {
                let why = Failure::timed_out(format!(
                    "did not answer within {} s",
                    ASK_TIMEOUT.as_secs()
                ));
                Reply::Failed(DiscoveryError::request(source, why))
            }
        })
    }
}
