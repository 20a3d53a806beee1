//! A polling strategy over a file of node names, for simulations and tests.

use core::time::Duration;

use crate::config::Value;
use crate::reason::{DiscoveryError, Failure};
use crate::strategy::{Context, Periodic, ReadId, Strategy};
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
    every: Periodic,
    reading: Option<ReadId>,
}

impl NodesFile {
    /// Polls `path` every `interval`.
    pub fn new(path: impl Into<String>, interval: Duration) -> Self {
        NodesFile {
            path: path.into(),
            every: Periodic::new(interval),
            reading: None,
        }
    }

    fn poll(&mut self, cx: &mut Context<'_>) {
        if let Some(read) = self.reading.take() {
            // The last read never came back; stop waiting for it.
            cx.cancel_read(read);
            let why = Failure::timed_out("read did not complete");
            cx.discovery_failed(DiscoveryError::request(&self.path, why));
        }
        self.reading = Some(cx.read_file(self.path.as_str()));
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
                let source = format!("{}:{}", self.path, n + 1);
                return round.fail(DiscoveryError::invalid(source, why));
            }
        }
        round.commit();
    }
}

impl Strategy for NodesFile {
    fn kind(&self) -> &'static str {
        "nodes_file"
    }

    fn handle_timeout(&mut self, now: Instant, cx: &mut Context<'_>) {
        if self.every.fire(now) {
            self.poll(cx);
        }
    }

    fn handle_file(
        &mut self,
        _now: Instant,
        read: ReadId,
        result: Result<&[u8], &Failure>,
        cx: &mut Context<'_>,
    ) {
        if self.reading != Some(read) {
            return;
        }
        self.reading = None;
        match result {
            Ok(bytes) => match core::str::from_utf8(bytes) {
                Ok(text) => self.apply(text, cx),
                Err(e) => cx.discovery_failed(DiscoveryError::invalid(
                    &self.path,
                    format_args!("not UTF-8: {e}"),
                )),
            },
            Err(why) => cx.discovery_failed(DiscoveryError::request(&self.path, why.clone())),
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.every.next()
    }

    fn describe(&self) -> Vec<(String, Value)> {
        vec![
            ("path".into(), Value::str(self.path.clone())),
            ("polling_interval".into(), Value::millis(self.every.every())),
        ]
    }
}
