//! One long-lived HTTP request whose response is read line by line as it streams in (a
//! Kubernetes or etcd watch), with a deadline for its head and one for the whole stream, both
//! enforced by the core itself even if the adapter never answers.

use core::time::Duration;

use crate::io::Exchange;
use crate::proto::http::{DEFAULT_MAX_HEAD, Response, ResponseReader};
use crate::reason::Failure;
use crate::strategy::{Context, ExchangeId, Reply};
use crate::time::Instant;

use super::http_call::http_failure;

/// How a stream ended.
#[derive(Debug)]
pub(crate) enum StreamEnd {
    /// The server ended the stream as its framing says (a watch's own timeout).
    Ended,
    /// The server answered with another status than 200: the whole response.
    Status(Response),
    /// The stream broke: cut short, over a limit, its head or its whole deadline passed.
    Broken(Failure),
}

/// The stream in flight, if any.
#[derive(Debug, Default)]
pub(crate) struct HttpStream {
    exchange: Option<ExchangeId>,
    reader: Option<ResponseReader>,
    head_deadline: Option<Instant>,
    deadline: Option<Instant>,
    head_timeout: Duration,
    lasting: Duration,
}

impl HttpStream {
    /// Whether a stream is open.
    pub(crate) fn busy(&self) -> bool {
        self.exchange.is_some()
    }

    /// Sends `x`. Its response head must come within `head_timeout`, and the stream ends by
    /// `lasting` after now in any case; no line may be longer than `max_line` bytes.
    pub(crate) fn start(
        &mut self,
        now: Instant,
        head_timeout: Duration,
        lasting: Duration,
        max_line: usize,
        x: Exchange,
        cx: &mut Context<'_>,
    ) {
        let deadline = now + lasting;
        let mut x = x.max_reply(
            max_line
                .saturating_add(DEFAULT_MAX_HEAD)
                .saturating_add(64 * 1024),
        );
        x.deadline = deadline;
        self.exchange = Some(cx.exchange(x));
        self.reader = Some(ResponseReader::new(DEFAULT_MAX_HEAD, max_line));
        self.head_deadline = Some(now + head_timeout);
        self.deadline = Some(deadline);
        self.head_timeout = head_timeout;
        self.lasting = lasting;
    }

    fn end(&mut self, cx: &mut Context<'_>, stop: bool) -> Option<ResponseReader> {
        if let (true, Some(x)) = (stop, self.exchange) {
            cx.cancel_exchange(x);
        }
        self.exchange = None;
        self.head_deadline = None;
        self.deadline = None;
        self.reader.take()
    }

    /// Stops the stream, if one is open.
    pub(crate) fn stop(&mut self, cx: &mut Context<'_>) {
        self.end(cx, true);
    }

    /// What came back on `exchange`: each complete line of a 200 response goes to `line`;
    /// `Some` once the stream is over. Nothing happens for another exchange.
    pub(crate) fn handle_exchange(
        &mut self,
        exchange: ExchangeId,
        reply: Reply<'_>,
        cx: &mut Context<'_>,
        mut line: impl FnMut(&[u8]),
    ) -> Option<StreamEnd> {
        if self.exchange != Some(exchange) {
            return None;
        }
        match reply {
            Reply::Data(d) => {
                let reader = self.reader.as_mut()?;
                reader.feed(d);
                if reader.status() == Some(200) {
                    reader.drain_lines(&mut line);
                    self.head_deadline = None;
                }
                if !reader.is_done() {
                    return None;
                }
                let reader = self.end(cx, true)?;
                Some(finish(reader, line))
            }
            Reply::Closed => {
                let reader = self.end(cx, false)?;
                Some(finish(reader, line))
            }
            Reply::Failed(why) => {
                self.end(cx, false);
                Some(StreamEnd::Broken(why.clone()))
            }
            _ => {
                self.end(cx, false);
                Some(StreamEnd::Broken(self.lasted()))
            }
        }
    }

    fn lasted(&self) -> Failure {
        Failure::timed_out(format!(
            "the stream was still open after {} ms",
            self.lasting.as_millis()
        ))
    }

    /// Gives up on a stream whose head, or whose end, is overdue.
    pub(crate) fn handle_timeout(
        &mut self,
        now: Instant,
        cx: &mut Context<'_>,
    ) -> Option<StreamEnd> {
        if self.head_deadline.is_some_and(|d| d <= now) {
            let why = Failure::timed_out(format!(
                "no response head within {} ms",
                self.head_timeout.as_millis()
            ));
            self.end(cx, true);
            return Some(StreamEnd::Broken(why));
        }
        if self.deadline.is_some_and(|d| d <= now) {
            let why = self.lasted();
            self.end(cx, true);
            return Some(StreamEnd::Broken(why));
        }
        None
    }

    /// The next deadline, while a stream is open.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.head_deadline.or(self.deadline)
    }
}

/// The response is over: how, and the last line of a 200 body framed by the close.
fn finish(reader: ResponseReader, mut line: impl FnMut(&[u8])) -> StreamEnd {
    match reader.finish() {
        Ok(r) if r.status != 200 => StreamEnd::Status(r),
        Ok(r) => {
            if !r.body.is_empty() {
                line(&r.body);
            }
            StreamEnd::Ended
        }
        Err(e) => StreamEnd::Broken(http_failure(e)),
    }
}
