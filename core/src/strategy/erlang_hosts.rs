//! The ErlangHosts strategy: the nodes registered with the EPMD of every host listed in
//! `.hosts.erlang` (libcluster's `Cluster.Strategy.ErlangHosts`).
//!
//! Options:
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `timeout` | absent | re-read the file and ask every EPMD again every this many ms; absent: once at start, as libcluster |
//! | `epmd_port` | `ERL_EPMD_PORT`, else `4369` | the EPMD port on every host |
//!
//! The file is looked for as `net_adm` does: `.hosts.erlang` in the working directory, then in
//! `$HOME`. Unlike libcluster, which reads it once, it is read on every poll, so a host added
//! to the file is found; a host whose EPMD does not answer is reported (`discovery_failed`)
//! instead of skipped in silence. Like libcluster's, the strategy never loses a node.

use core::time::Duration;

use super::epmd_names::{ASK_TIMEOUT, Asking, Reply, Reported, epmd_port, reject};
use super::{Context, Environment, ExchangeId, Periodic, ReadId, Reply as Part, Strategy};
use crate::config::{ConfigError, Options, Value};
use crate::proto::hosts_file;
use crate::reason::{DiscoveryError, Failure, FailureKind};
use crate::time::Instant;

/// The ErlangHosts strategy's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ErlangHostsConfig {
    /// `timeout`.
    pub timeout: Option<Duration>,
    /// `epmd_port`.
    pub epmd_port: u16,
    /// The files tried, in order.
    pub files: Vec<String>,
}

impl ErlangHostsConfig {
    /// Reads the options; the files come from the environment's `HOME`.
    pub fn from_options(o: &mut Options<'_>, env: &Environment) -> Result<Self, ConfigError> {
        let mut files = vec![".hosts.erlang".to_owned()];
        if let Some(home) = env.get("HOME") {
            files.push(format!("{}/.hosts.erlang", home.trim_end_matches('/')));
        }
        Ok(ErlangHostsConfig {
            timeout: o.positive_millis("timeout")?,
            epmd_port: epmd_port(o, env)?,
            files,
        })
    }
}

/// The ErlangHosts strategy; see the module documentation.
#[derive(Debug)]
pub struct ErlangHosts {
    config: ErlangHostsConfig,
    /// Polls again every `timeout`, when set.
    every: Option<Periodic>,
    reading: Option<(ReadId, usize)>,
    asking: Asking,
    failures: Vec<DiscoveryError>,
    reported: Reported,
}

impl ErlangHosts {
    /// The strategy for `config`.
    pub fn new(config: ErlangHostsConfig) -> Self {
        ErlangHosts {
            every: config.timeout.map(Periodic::new),
            config,
            reading: None,
            asking: Asking::default(),
            failures: Vec::new(),
            reported: Reported::default(),
        }
    }

    pub(crate) fn build(
        o: &mut Options<'_>,
        env: &Environment,
    ) -> Result<Box<dyn Strategy>, ConfigError> {
        Ok(Box::new(ErlangHosts::new(ErlangHostsConfig::from_options(
            o, env,
        )?)))
    }

    fn read(&mut self, which: usize, cx: &mut Context<'_>) {
        match self.config.files.get(which) {
            Some(path) => {
                let read = cx.read_file(path.as_str());
                self.reading = Some((read, which));
            }
            None => {
                self.reading = None;
                let tried = self.config.files.join(", then ");
                cx.discovery_failed(DiscoveryError::request(
                    ".hosts.erlang",
                    Failure::new(
                        FailureKind::NotFound,
                        format!("no .hosts.erlang file (tried {tried})"),
                    ),
                ));
            }
        }
    }

    fn poll(&mut self, cx: &mut Context<'_>) {
        if let Some((read, _)) = self.reading.take() {
            cx.cancel_read(read);
        }
        self.asking.cancel_all(cx);
        self.failures.clear();
        self.read(0, cx);
        if self.every.is_some() {
            cx.reconcile();
        }
    }
}

impl Strategy for ErlangHosts {
    fn kind(&self) -> &'static str {
        "erlang_hosts"
    }

    fn start(&mut self, now: Instant, cx: &mut Context<'_>) {
        if let Some(every) = &mut self.every {
            every.fire(now);
        }
        self.poll(cx);
    }

    fn handle_timeout(&mut self, now: Instant, cx: &mut Context<'_>) {
        if self.every.as_mut().is_some_and(|p| p.fire(now)) {
            self.poll(cx);
        }
    }

    fn handle_file(
        &mut self,
        now: Instant,
        read: ReadId,
        result: Result<&[u8], &Failure>,
        cx: &mut Context<'_>,
    ) {
        let Some((reading, which)) = self.reading else {
            return;
        };
        if reading != read {
            return;
        }
        self.reading = None;
        let path = self.config.files[which].clone();
        let text = match result {
            Ok(d) => String::from_utf8_lossy(d).into_owned(),
            // Not there: try the next place, as net_adm does.
            Err(_) => return self.read(which + 1, cx),
        };
        match hosts_file::parse(&text) {
            Ok(hosts) => {
                for host in &hosts {
                    self.asking
                        .ask(cx, host, self.config.epmd_port, now + ASK_TIMEOUT);
                }
            }
            Err(e) => cx.discovery_failed(DiscoveryError::invalid(path, e)),
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
            Some(Reply::Failed(why)) => self.failures.push(why),
            Some(Reply::Names(host, names, skipped)) => {
                let epmd = (host.as_str(), self.config.epmd_port);
                // A name that is no node's is skipped and reported: the others still count.
                for name in names {
                    if let Err(e) = cx.found(&format!("{name}@{host}"), None) {
                        reject(cx, &mut self.reported, epmd, &name, e);
                    }
                }
                for line in skipped {
                    reject(cx, &mut self.reported, epmd, &line, "not a names line");
                }
            }
        }
        if self.asking.is_idle() && !self.failures.is_empty() {
            let mut all = std::mem::take(&mut self.failures);
            let one = if all.len() == 1 {
                all.remove(0)
            } else {
                DiscoveryError::Several(all)
            };
            cx.discovery_failed(one);
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.every.and_then(|p| p.next())
    }

    fn retries(&self) -> bool {
        self.config.timeout.is_some()
    }

    fn describe(&self) -> Vec<(String, Value)> {
        let mut v = vec![(
            "epmd_port".to_owned(),
            Value::Int(i64::from(self.config.epmd_port)),
        )];
        if let Some(t) = self.config.timeout {
            v.push(("timeout".to_owned(), Value::millis(t)));
        }
        v
    }
}
