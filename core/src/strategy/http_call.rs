//! One HTTP request in flight for a polling strategy: the exchange, the response read as its
//! bytes arrive, and a deadline the core enforces itself even if the adapter never answers.

use core::time::Duration;

use crate::io::Exchange;
use crate::proto::http::{DEFAULT_MAX_HEAD, HttpError, Response, ResponseReader};
use crate::reason::{Failure, FailureKind};
use crate::strategy::{Context, ExchangeId, Reply};
use crate::time::Instant;

/// The request in flight, if any.
#[derive(Debug, Default)]
pub(crate) struct HttpCall {
    exchange: Option<ExchangeId>,
    reader: Option<ResponseReader>,
    deadline: Option<Instant>,
    timeout: Duration,
}

impl HttpCall {
    /// Whether a request is in flight.
    pub(crate) fn busy(&self) -> bool {
        self.exchange.is_some()
    }

    /// Sends `x` (whose deadline is `now + timeout`), accepting at most `max_body` bytes of
    /// body.
    pub(crate) fn start(
        &mut self,
        now: Instant,
        timeout: Duration,
        max_body: usize,
        x: Exchange,
        cx: &mut Context<'_>,
    ) {
        let deadline = now + timeout;
        let mut x = x.max_reply(
            max_body
                .saturating_add(DEFAULT_MAX_HEAD)
                .saturating_add(64 * 1024),
        );
        x.deadline = deadline;
        self.exchange = Some(cx.exchange(x));
        self.reader = Some(ResponseReader::new(DEFAULT_MAX_HEAD, max_body));
        self.deadline = Some(deadline);
        self.timeout = timeout;
    }

    fn end(&mut self, cx: &mut Context<'_>, stop: bool) -> Option<ResponseReader> {
        if let (true, Some(x)) = (stop, self.exchange) {
            cx.cancel_exchange(x);
        }
        self.exchange = None;
        self.deadline = None;
        self.reader.take()
    }

    /// What came back: the outcome once the response is complete or the request failed;
    /// `None` when it is not this call's or the response is still coming.
    pub(crate) fn handle_exchange(
        &mut self,
        exchange: ExchangeId,
        reply: Reply<'_>,
        cx: &mut Context<'_>,
    ) -> Option<Result<Response, Failure>> {
        if self.exchange != Some(exchange) {
            return None;
        }
        match reply {
            Reply::Data(d) => {
                let reader = self.reader.as_mut()?;
                reader.feed(d);
                if !reader.is_done() {
                    return None;
                }
                // Complete (or broken) before the close: stop the stream now.
                let reader = self.end(cx, true)?;
                Some(reader.finish().map_err(http_failure))
            }
            Reply::Closed => {
                let reader = self.end(cx, false)?;
                Some(reader.finish().map_err(http_failure))
            }
            Reply::Failed(why) => {
                self.end(cx, false);
                Some(Err(why.clone()))
            }
            _ => {
                self.end(cx, false);
                Some(Err(self.timed_out()))
            }
        }
    }

    fn timed_out(&self) -> Failure {
        Failure::timed_out(format!(
            "no complete response within {} ms",
            self.timeout.as_millis()
        ))
    }

    /// Gives up on a request past its deadline.
    pub(crate) fn handle_timeout(
        &mut self,
        now: Instant,
        cx: &mut Context<'_>,
    ) -> Option<Result<Response, Failure>> {
        if self.deadline.is_some_and(|d| d <= now) {
            self.end(cx, true);
            return Some(Err(self.timed_out()));
        }
        None
    }

    /// The request's deadline, while one is in flight.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }
}

/// A response that could not be read, as a failure.
pub(crate) fn http_failure(e: HttpError) -> Failure {
    let kind = match e {
        HttpError::HeadTooLarge(_) | HttpError::BodyTooLarge(_) => FailureKind::TooLarge,
        HttpError::Truncated { .. } => FailureKind::Closed,
        _ => FailureKind::Protocol,
    };
    Failure::new(kind, e.to_string())
}

/// `host` as an authority: IPv6 addresses in brackets, with the port unless it is `default`.
pub(crate) fn authority(host: &str, port: u16, default: u16) -> String {
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    if port == default {
        host
    } else {
        format!("{host}:{port}")
    }
}

/// Splits `host[:port]`, `[v6]:port` or a bare IPv6 address; `None` for a bad port.
pub(crate) fn host_port(s: &str, default: u16) -> Option<(String, u16)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default,
            None => return None,
        };
        return Some((host.to_owned(), port));
    }
    if s.matches(':').count() > 1 {
        return Some((s.to_owned(), default));
    }
    match s.split_once(':') {
        Some((h, p)) => Some((h.to_owned(), p.parse().ok()?)),
        None => Some((s.to_owned(), default)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_ports() {
        assert_eq!(host_port("k8s.test", 443), Some(("k8s.test".into(), 443)));
        assert_eq!(
            host_port("k8s.test:6443", 443),
            Some(("k8s.test".into(), 6443))
        );
        assert_eq!(
            host_port("[fd00::1]:6443", 443),
            Some(("fd00::1".into(), 6443))
        );
        assert_eq!(host_port("fd00::1", 443), Some(("fd00::1".into(), 443)));
        assert_eq!(host_port("k8s.test:x", 443), None);
        assert_eq!(authority("fd00::1", 6443, 443), "[fd00::1]:6443");
        assert_eq!(authority("k8s.test", 443, 443), "k8s.test");
    }
}
