//! A polling strategy over a file of node names, for simulations and tests.

use core::time::Duration;

use crate::config::Value;
use crate::io::{Answer, Request, Token};
use crate::strategy::{Context, Strategy};
use crate::time::Instant;

/// Polls a file every `interval` and takes its lines as the whole discovered set: one node
/// name per line, optionally followed by an `ip:port` address hint; blank lines and lines
/// starting with `#` are skipped. A read that fails, or a file with a bad line, is a failed
/// discovery: the last good set stays.
///
/// In the simulator the file lives in [`Sim::write_file`](super::Sim::write_file); under a
/// real adapter it is a real file. It is the polling strategy the simulator's tests use to
/// exercise pruning, grace and failed discoveries without any real service.
#[derive(Debug, Clone)]
pub struct NodesFile {
    path: String,
    interval: Duration,
    next: Option<Instant>,
    reading: Option<Token>,
}

impl NodesFile {
    /// Polls `path` every `interval`.
    pub fn new(path: impl Into<String>, interval: Duration) -> Self {
        NodesFile {
            path: path.into(),
            interval,
            next: None,
            reading: None,
        }
    }

    fn poll(&mut self, now: Instant, cx: &mut Context<'_>) {
        if let Some(t) = self.reading.take() {
            // The last read never came back; stop waiting for it.
            cx.cancel(t);
            cx.discovery_failed(format!("{}: read did not complete", self.path));
        }
        self.reading = Some(cx.request(Request::ReadFile {
            path: self.path.clone(),
        }));
        self.next = Some(now + self.interval);
    }

    fn apply(&self, text: &str, cx: &mut Context<'_>) {
        let mut round = cx.round();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            let name = words.next().unwrap_or_default();
            let addr = match words.next().map(str::parse) {
                None => Ok(None),
                Some(Ok(a)) => Ok(Some(a)),
                Some(Err(e)) => Err(format!("bad address: {e}")),
            };
            let added = addr.and_then(|addr| round.add(name, addr).map_err(|e| e.to_string()));
            if let Err(why) = added {
                drop(round);
                cx.discovery_failed(format!("{}:{}: {why}", self.path, n + 1));
                return;
            }
        }
        round.commit();
    }
}

impl Strategy for NodesFile {
    fn kind(&self) -> &'static str {
        "nodes_file"
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
        _now: Instant,
        token: Token,
        answer: Answer<'_>,
        cx: &mut Context<'_>,
    ) {
        if self.reading != Some(token) {
            return;
        }
        self.reading = None;
        match answer {
            Answer::Data(bytes) => match core::str::from_utf8(bytes) {
                Ok(text) => self.apply(text, cx),
                Err(e) => cx.discovery_failed(format!("{}: not UTF-8: {e}", self.path)),
            },
            Answer::Failed(why) => cx.discovery_failed(format!("{}: {why}", self.path)),
            other => cx.discovery_failed(format!("{}: unexpected answer {other:?}", self.path)),
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.next
    }

    fn describe(&self) -> Vec<(String, Value)> {
        vec![
            ("path".into(), Value::str(self.path.clone())),
            ("polling_interval".into(), Value::millis(self.interval)),
        ]
    }
}
