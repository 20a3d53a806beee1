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

use super::epmd_names::{ASK_TIMEOUT, Asking, Reply, epmd_port};
use super::{Context, Environment, Strategy};
use crate::config::{ConfigError, Options, Value};
use crate::io::{Answer, Request, Token};
use crate::proto::hosts_file;
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
    next: Option<Instant>,
    reading: Option<(Token, usize)>,
    asking: Asking,
    failures: Vec<String>,
}

impl ErlangHosts {
    /// The strategy for `config`.
    pub fn new(config: ErlangHostsConfig) -> Self {
        ErlangHosts {
            config,
            next: None,
            reading: None,
            asking: Asking::default(),
            failures: Vec::new(),
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
                let token = cx.request(Request::ReadFile { path: path.clone() });
                self.reading = Some((token, which));
            }
            None => {
                self.reading = None;
                let tried = self.config.files.join(", then ");
                cx.discovery_failed(format!("no .hosts.erlang file (tried {tried})"));
            }
        }
    }

    fn poll(&mut self, now: Instant, cx: &mut Context<'_>) {
        self.next = self.config.timeout.map(|t| now + t);
        if let Some((token, _)) = self.reading.take() {
            cx.cancel(token);
        }
        self.asking.cancel_all(cx);
        self.failures.clear();
        self.read(0, cx);
        if self.next.is_some() {
            cx.reconcile();
        }
    }
}

impl Strategy for ErlangHosts {
    fn kind(&self) -> &'static str {
        "erlang_hosts"
    }

    fn start(&mut self, now: Instant, cx: &mut Context<'_>) {
        self.poll(now, cx);
    }

    fn handle_timeout(&mut self, now: Instant, cx: &mut Context<'_>) {
        if self.next.is_some_and(|t| t <= now) {
            self.poll(now, cx);
        }
    }

    fn handle_answer(
        &mut self,
        now: Instant,
        token: Token,
        answer: Answer<'_>,
        cx: &mut Context<'_>,
    ) {
        if let Some((reading, which)) = self.reading
            && reading == token
        {
            self.reading = None;
            let path = self.config.files[which].clone();
            let text = match answer {
                Answer::Data(d) => String::from_utf8_lossy(d).into_owned(),
                // Not there: try the next place, as net_adm does.
                _ => return self.read(which + 1, cx),
            };
            match hosts_file::parse(&text) {
                Ok(hosts) => {
                    for host in &hosts {
                        self.asking
                            .ask(cx, host, self.config.epmd_port, now + ASK_TIMEOUT);
                    }
                }
                Err(e) => cx.discovery_failed(format!("{path}: {e}")),
            }
            return;
        }
        match self.asking.answer(token, answer, self.config.epmd_port) {
            None => {}
            Some(Reply::Failed(why)) => self.failures.push(why),
            Some(Reply::Names(host, names)) => {
                for name in names {
                    if let Err(e) = cx.found(&format!("{name}@{host}"), None) {
                        self.failures.push(format!("{host} listed {name:?}: {e}"));
                    }
                }
            }
        }
        if self.asking.is_idle() && !self.failures.is_empty() {
            let all = std::mem::take(&mut self.failures).join("; ");
            cx.discovery_failed(all);
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.next
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
