//! HTTP/1.1 for the API-polling strategies: a GET request, and a response read incrementally
//! from whatever chunks the stream delivers, with its body framed by `Content-Length`, chunked
//! transfer coding, or the connection's close, within limits on the head and the body.
//!
//! Requests say `Connection: close`: one request per connection, so a response framed by the
//! close is complete exactly when the peer closes.

use core::fmt;

/// The most header bytes accepted by default.
pub const DEFAULT_MAX_HEAD: usize = 64 * 1024;
/// The most body bytes accepted by default.
pub const DEFAULT_MAX_BODY: usize = 32 * 1024 * 1024;
/// The most headers a response may have.
const MAX_HEADERS: usize = 64;
/// The longest chunk-size line (size, extensions) accepted.
const MAX_CHUNK_LINE: usize = 1024;

/// A GET request for `path` (with its query) on `host` (as the `Host` header writes it:
/// `name`, `name:port`, `[v6]:port`), with extra `headers`.
pub fn get(host: &str, path: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    request("GET", host, path, headers, &[])
}

/// A `method` request for `path` on `host`, with extra `headers` and `body` (sent with its
/// `Content-Length` unless the body is empty and the method is `GET` or `HEAD`).
pub fn request(
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut r = Vec::with_capacity(160 + path.len() + body.len());
    r.extend_from_slice(method.as_bytes());
    r.push(b' ');
    r.extend_from_slice(path.as_bytes());
    r.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    r.extend_from_slice(host.as_bytes());
    r.extend_from_slice(b"\r\nUser-Agent: muster/");
    r.extend_from_slice(env!("CARGO_PKG_VERSION").as_bytes());
    r.extend_from_slice(b"\r\nConnection: close\r\n");
    for (k, v) in headers {
        r.extend_from_slice(k.as_bytes());
        r.extend_from_slice(b": ");
        r.extend_from_slice(v.as_bytes());
        r.extend_from_slice(b"\r\n");
    }
    if !(body.is_empty() && matches!(method, "GET" | "HEAD")) {
        r.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    r.extend_from_slice(b"\r\n");
    r.extend_from_slice(body);
    r
}

/// Percent-encodes `s` for a query string value as RFC 3986 does (unreserved characters
/// stay, everything else is `%XX`).
pub fn encode_query_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b >> 4)]));
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b & 15)]));
        }
    }
    out
}

/// Why a response could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The head is not HTTP.
    #[error("malformed response head: {0}")]
    BadHead(String),
    /// The head is larger than allowed.
    #[error("response head larger than {0} bytes")]
    HeadTooLarge(usize),
    /// The body is (or says it will be) larger than allowed.
    #[error("response body larger than {0} bytes")]
    BodyTooLarge(usize),
    /// The chunked framing is broken.
    #[error("malformed chunked body: {0}")]
    BadChunk(&'static str),
    /// The connection closed before the response was complete.
    #[error("connection closed after {got} bytes of the body, before its end{}", expected.map(|e| format!(" ({e} expected)")).unwrap_or_default())]
    Truncated {
        /// Body bytes received.
        got: usize,
        /// Body bytes announced, when known.
        expected: Option<usize>,
    },
}

/// A complete response.
#[derive(Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The reason phrase.
    pub reason: String,
    /// The `Content-Type`, if sent.
    pub content_type: Option<String>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("reason", &self.reason)
            .field("content_type", &self.content_type)
            .field("body", &format_args!("{} bytes", self.body.len()))
            .finish()
    }
}

impl Response {
    /// The start of the body as text, for error messages (at most `max` characters).
    pub fn body_excerpt(&self, max: usize) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let text = text.trim();
        let excerpt = match text.char_indices().nth(max) {
            Some((i, _)) => format!("{}…", &text[..i]),
            None => text.to_owned(),
        };
        crate::reason::escape(&excerpt).into_owned()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Reading the size line; `len` bytes of it seen so far.
    Size {
        size: usize,
        digits: usize,
        ext: bool,
        len: usize,
        cr: bool,
    },
    /// Reading `left` bytes of data.
    Data { left: usize },
    /// Expecting the CRLF after a chunk's data.
    DataEnd { cr: bool },
    /// Reading trailer lines; `line` bytes of the current one so far.
    Trailer { line: usize, cr: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(usize),
    Chunked(Chunk),
    Close,
}

#[derive(Debug)]
enum State {
    Head,
    Body { framing: Framing },
    Done,
    Failed(HttpError),
}

/// Reads one response from the chunks of a stream; see the module documentation.
#[derive(Debug)]
pub struct ResponseReader {
    max_head: usize,
    max_body: usize,
    head: Vec<u8>,
    state: State,
    status: u16,
    reason: String,
    content_type: Option<String>,
    body: Vec<u8>,
}

impl Default for ResponseReader {
    fn default() -> Self {
        ResponseReader::new(DEFAULT_MAX_HEAD, DEFAULT_MAX_BODY)
    }
}

impl ResponseReader {
    /// A reader accepting at most `max_head` bytes of head and `max_body` bytes of body.
    pub fn new(max_head: usize, max_body: usize) -> Self {
        ResponseReader {
            max_head,
            max_body,
            head: Vec::new(),
            state: State::Head,
            status: 0,
            reason: String::new(),
            content_type: None,
            body: Vec::new(),
        }
    }

    /// Whether the response is complete (or failed): nothing more is needed.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done | State::Failed(_))
    }

    /// The status code, once the head has been read.
    pub fn status(&self) -> Option<u16> {
        match self.state {
            State::Head => None,
            State::Failed(_) if self.status == 0 => None,
            _ => Some(self.status),
        }
    }

    /// Whether the body ended as its framing says (the last chunk, or all of its
    /// `Content-Length`): the stream was not cut short.
    pub fn is_complete(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Hands each complete line of the body received so far (without its `\n`, nor a `\r`
    /// before it) to `each`, and forgets them: a streaming response (a watch) is read line by
    /// line, and `max_body` then bounds only what waits for its end of line.
    pub fn drain_lines(&mut self, mut each: impl FnMut(&[u8])) {
        let mut start = 0;
        while let Some(n) = self.body[start..].iter().position(|b| *b == b'\n') {
            let line = &self.body[start..start + n];
            each(line.strip_suffix(b"\r").unwrap_or(line));
            start += n + 1;
        }
        if start > 0 {
            self.body.drain(..start);
        }
    }

    /// The error that ended the response, if one did.
    pub fn error(&self) -> Option<&HttpError> {
        match &self.state {
            State::Failed(e) => Some(e),
            _ => None,
        }
    }

    /// Feeds the next bytes of the stream. Bytes after the end of the response are ignored.
    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match &mut self.state {
                State::Done | State::Failed(_) => return,
                State::Head => {
                    let before = self.head.len();
                    let room = self.max_head.saturating_sub(before);
                    let take = data.len().min(room.max(1));
                    self.head.extend_from_slice(&data[..take]);
                    match self.parse_head() {
                        Ok(Some(head_len)) => {
                            // What followed the head in this chunk is the start of the body.
                            let body_start = head_len - before;
                            let rest_in_head = self.head.split_off(head_len);
                            self.head = Vec::new();
                            drop(rest_in_head);
                            data = &data[body_start..];
                        }
                        Ok(None) if self.head.len() >= self.max_head => {
                            self.state = State::Failed(HttpError::HeadTooLarge(self.max_head));
                            return;
                        }
                        Ok(None) => data = &data[take..],
                        Err(e) => {
                            self.state = State::Failed(e);
                            return;
                        }
                    }
                }
                State::Body { framing } => {
                    let mut framing = *framing;
                    let used = match self.body_bytes(&mut framing, data) {
                        Ok(n) => n,
                        Err(e) => {
                            self.state = State::Failed(e);
                            return;
                        }
                    };
                    self.state = State::Body { framing };
                    if let Framing::Length(0) = framing {
                        self.state = State::Done;
                    }
                    data = &data[used..];
                }
            }
        }
        if let State::Body {
            framing: Framing::Length(0),
        } = self.state
        {
            self.state = State::Done;
        }
    }

    /// Parses the head once it is complete: `Some(length of the head)`.
    fn parse_head(&mut self) -> Result<Option<usize>, HttpError> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut r = httparse::Response::new(&mut headers);
        let n = match r.parse(&self.head) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(HttpError::BadHead(e.to_string())),
        };
        let status = r.code.unwrap_or(0);
        let mut length: Option<usize> = None;
        let mut chunked = false;
        for h in r.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                let v = std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .ok_or_else(|| HttpError::BadHead("bad Content-Length".into()))?;
                if length.is_some_and(|l| l != v) {
                    return Err(HttpError::BadHead("conflicting Content-Length".into()));
                }
                length = Some(v);
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                let v = String::from_utf8_lossy(h.value).to_ascii_lowercase();
                match v.rsplit(',').next().map(str::trim) {
                    Some("chunked") => chunked = true,
                    _ => {
                        return Err(HttpError::BadHead(format!(
                            "unsupported Transfer-Encoding {v:?}"
                        )));
                    }
                }
            } else if h.name.eq_ignore_ascii_case("content-type") {
                self.content_type = Some(String::from_utf8_lossy(h.value).into_owned());
            }
        }
        self.status = status;
        self.reason = r.reason.unwrap_or("").to_owned();
        // RFC 9112 §6.3: no body for 1xx, 204 and 304; chunked wins over a length.
        let framing = if (100..200).contains(&status) || status == 204 || status == 304 {
            Framing::Length(0)
        } else if chunked {
            Framing::Chunked(Chunk::Size {
                size: 0,
                digits: 0,
                ext: false,
                len: 0,
                cr: false,
            })
        } else if let Some(l) = length {
            if l > self.max_body {
                return Err(HttpError::BodyTooLarge(self.max_body));
            }
            self.body.reserve_exact(l);
            Framing::Length(l)
        } else {
            Framing::Close
        };
        self.state = State::Body { framing };
        Ok(Some(n))
    }

    fn push_body(&mut self, bytes: &[u8]) -> Result<(), HttpError> {
        if self.body.len() + bytes.len() > self.max_body {
            return Err(HttpError::BodyTooLarge(self.max_body));
        }
        self.body.extend_from_slice(bytes);
        Ok(())
    }

    /// Consumes body bytes from `data` as `framing` says; returns how many were used.
    fn body_bytes(&mut self, framing: &mut Framing, data: &[u8]) -> Result<usize, HttpError> {
        match framing {
            Framing::Length(left) => {
                let n = (*left).min(data.len());
                self.push_body(&data[..n])?;
                *left -= n;
                Ok(n)
            }
            Framing::Close => {
                self.push_body(data)?;
                Ok(data.len())
            }
            Framing::Chunked(chunk) => {
                let mut used = 0;
                while used < data.len() {
                    let b = data[used];
                    match chunk {
                        Chunk::Size {
                            size,
                            digits,
                            ext,
                            len,
                            cr,
                        } => {
                            used += 1;
                            *len += 1;
                            if *len > MAX_CHUNK_LINE {
                                return Err(HttpError::BadChunk("chunk-size line too long"));
                            }
                            if *cr {
                                if b != b'\n' {
                                    return Err(HttpError::BadChunk("CR without LF"));
                                }
                                if *digits == 0 {
                                    return Err(HttpError::BadChunk("no chunk size"));
                                }
                                *chunk = if *size == 0 {
                                    Chunk::Trailer { line: 0, cr: false }
                                } else {
                                    Chunk::Data { left: *size }
                                };
                            } else if b == b'\r' {
                                *cr = true;
                            } else if *ext {
                                // Extensions are ignored, as RFC 9112 allows.
                            } else if let Some(d) = (b as char).to_digit(16) {
                                *size = size
                                    .checked_mul(16)
                                    .and_then(|s| s.checked_add(d as usize))
                                    .filter(|s| *s <= self.max_body)
                                    .ok_or(HttpError::BodyTooLarge(self.max_body))?;
                                *digits += 1;
                            } else if b == b';' || b == b' ' || b == b'\t' {
                                *ext = true;
                            } else {
                                return Err(HttpError::BadChunk("bad chunk size"));
                            }
                        }
                        Chunk::Data { left } => {
                            let n = (*left).min(data.len() - used);
                            self.push_body(&data[used..used + n])?;
                            used += n;
                            *left -= n;
                            if *left == 0 {
                                *chunk = Chunk::DataEnd { cr: false };
                            }
                        }
                        Chunk::DataEnd { cr } => {
                            used += 1;
                            match (*cr, b) {
                                (false, b'\r') => *cr = true,
                                (true, b'\n') => {
                                    *chunk = Chunk::Size {
                                        size: 0,
                                        digits: 0,
                                        ext: false,
                                        len: 0,
                                        cr: false,
                                    }
                                }
                                _ => return Err(HttpError::BadChunk("no CRLF after chunk data")),
                            }
                        }
                        Chunk::Trailer { line, cr } => {
                            used += 1;
                            if *cr {
                                if b != b'\n' {
                                    return Err(HttpError::BadChunk("CR without LF"));
                                }
                                if *line == 0 {
                                    *framing = Framing::Length(0);
                                    return Ok(used);
                                }
                                *line = 0;
                                *cr = false;
                            } else if b == b'\r' {
                                *cr = true;
                            } else {
                                *line += 1;
                                if *line > MAX_CHUNK_LINE {
                                    return Err(HttpError::BadChunk("trailer line too long"));
                                }
                            }
                        }
                    }
                }
                Ok(used)
            }
        }
    }

    /// The stream closed: the response, if it is complete.
    pub fn finish(self) -> Result<Response, HttpError> {
        let got = self.body.len();
        match self.state {
            State::Failed(e) => Err(e),
            State::Head => Err(if self.head.is_empty() {
                HttpError::BadHead("the connection closed without a response".into())
            } else {
                HttpError::BadHead("the connection closed inside the response head".into())
            }),
            State::Body {
                framing: Framing::Length(left),
            } if left > 0 => Err(HttpError::Truncated {
                got,
                expected: Some(got + left),
            }),
            State::Body {
                framing: Framing::Chunked(_),
            } => Err(HttpError::Truncated {
                got,
                expected: None,
            }),
            State::Done | State::Body { .. } => Ok(Response {
                status: self.status,
                reason: self.reason,
                content_type: self.content_type,
                body: self.body,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn read_all(chunks: &[&[u8]]) -> Result<Response, HttpError> {
        let mut r = ResponseReader::default();
        for c in chunks {
            r.feed(c);
        }
        r.finish()
    }

    #[test]
    fn builds_a_get() {
        let r = get(
            "10.96.0.1:443",
            "/api/v1/namespaces/default/endpoints?labelSelector=app%3Dmyapp",
            &[
                ("Authorization", "Bearer t"),
                ("Accept", "application/json"),
            ],
        );
        let text = String::from_utf8(r).unwrap();
        assert!(text.starts_with(
            "GET /api/v1/namespaces/default/endpoints?labelSelector=app%3Dmyapp HTTP/1.1\r\nHost: 10.96.0.1:443\r\n"
        ));
        assert!(text.contains("\r\nConnection: close\r\n"));
        assert!(text.ends_with("Authorization: Bearer t\r\nAccept: application/json\r\n\r\n"));
        let post = request("POST", "etcd:2379", "/v3/kv/range", &[], b"{}");
        let post = String::from_utf8(post).unwrap();
        assert!(post.starts_with("POST /v3/kv/range HTTP/1.1\r\nHost: etcd:2379\r\n"));
        assert!(post.ends_with("Content-Length: 2\r\n\r\n{}"));
        assert_eq!(
            encode_query_value("app=myapp,tier in (a b)"),
            "app%3Dmyapp%2Ctier%20in%20%28a%20b%29"
        );
        assert_eq!(
            encode_query_value("kubernetes.io/service-name=x"),
            "kubernetes.io%2Fservice-name%3Dx"
        );
    }

    #[test]
    fn a_streamed_body_is_read_line_by_line_within_its_limit() {
        let mut r = ResponseReader::new(DEFAULT_MAX_HEAD, 16);
        assert_eq!(r.status(), None);
        r.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(r.status(), Some(200));
        let mut lines = Vec::new();
        // Twice the limit in all, but never more than the limit waiting for its newline.
        for piece in [
            &b"6\r\nabc\nde\r\n"[..],
            b"7\r\nf\r\nghij\r\n",
            b"4\r\nklm\n\r\n",
        ] {
            r.feed(piece);
            r.drain_lines(|l| lines.push(String::from_utf8_lossy(l).into_owned()));
        }
        assert_eq!(lines, ["abc", "def", "ghijklm"]);
        assert!(!r.is_done());
        r.feed(b"0\r\n\r\n");
        assert!(r.is_complete());
        // A line longer than the limit fails the stream.
        let mut r = ResponseReader::new(DEFAULT_MAX_HEAD, 4);
        r.feed(b"HTTP/1.1 200 OK\r\n\r\nabcdef");
        assert_eq!(r.error(), Some(&HttpError::BodyTooLarge(4)));
    }

    #[test]
    fn frames_by_length_chunks_and_close() {
        let by_length = read_all(&[
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\nhel",
            b"lo and more",
        ])
        .unwrap();
        assert_eq!(
            (by_length.status, &by_length.body[..]),
            (200, &b"hello"[..])
        );
        assert_eq!(by_length.content_type.as_deref(), Some("application/json"));
        let chunked = read_all(&[
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhel",
            b"lo\r\n1",
            b"A\r\n",
            &[b'x'; 26],
            b"\r\n0\r\nTrailer: yes\r\n\r\n",
        ])
        .unwrap();
        assert_eq!(chunked.body.len(), 31);
        assert!(chunked.body.starts_with(b"hello"));
        let close =
            read_all(&[b"HTTP/1.0 403 Forbidden\r\n\r\n{\"message\":", b"\"no\"}"]).unwrap();
        assert_eq!((close.status, close.reason.as_str()), (403, "Forbidden"));
        assert_eq!(close.body_excerpt(5), "{\"mes…");
        let empty = read_all(&[b"HTTP/1.1 204 No Content\r\n\r\n"]).unwrap();
        assert!(empty.body.is_empty());
    }

    #[test]
    fn refuses_what_is_broken_or_too_big() {
        let truncated = read_all(&[b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"]);
        assert_eq!(
            truncated,
            Err(HttpError::Truncated {
                got: 3,
                expected: Some(10)
            })
        );
        let unfinished =
            read_all(&[b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab"]);
        assert!(matches!(
            unfinished,
            Err(HttpError::Truncated {
                got: 2,
                expected: None
            })
        ));
        assert!(matches!(
            read_all(&[b"SSH-2.0-OpenSSH\r\n\r\n"]),
            Err(HttpError::BadHead(_))
        ));
        assert!(matches!(read_all(&[]), Err(HttpError::BadHead(_))));
        let bad_chunk = read_all(&[b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"]);
        assert_eq!(bad_chunk, Err(HttpError::BadChunk("bad chunk size")));
        let mut small = ResponseReader::new(64, 8);
        small.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n");
        assert_eq!(small.finish(), Err(HttpError::BodyTooLarge(8)));
        let mut chunky = ResponseReader::new(64, 8);
        chunky.feed(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffffff\r\n",
        );
        assert_eq!(chunky.finish(), Err(HttpError::BodyTooLarge(8)));
        let mut long_head = ResponseReader::new(32, 8);
        long_head.feed(b"HTTP/1.1 200 OK\r\nX-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n");
        assert_eq!(long_head.finish(), Err(HttpError::HeadTooLarge(32)));
        let two_lengths =
            read_all(&[b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"]);
        assert!(matches!(two_lengths, Err(HttpError::BadHead(_))));
    }

    fn chunked_encoding(body: &[u8], sizes: &[usize]) -> Vec<u8> {
        let mut out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        let mut rest = body;
        let mut i = 0;
        while !rest.is_empty() {
            let n = sizes.get(i).copied().unwrap_or(7).clamp(1, rest.len());
            out.extend_from_slice(format!("{n:x}\r\n").as_bytes());
            out.extend_from_slice(&rest[..n]);
            out.extend_from_slice(b"\r\n");
            rest = &rest[n..];
            i += 1;
        }
        out.extend_from_slice(b"0\r\n\r\n");
        out
    }

    proptest! {
        /// However the stream splits a chunked response, the body comes out whole.
        #[test]
        fn chunked_bodies_survive_any_split(
            body in proptest::collection::vec(any::<u8>(), 0..300),
            sizes in proptest::collection::vec(1usize..40, 0..20),
            cuts in proptest::collection::vec(1usize..50, 0..30),
        ) {
            let wire = chunked_encoding(&body, &sizes);
            let mut r = ResponseReader::default();
            let mut rest = &wire[..];
            for c in cuts {
                let n = c.min(rest.len());
                r.feed(&rest[..n]);
                rest = &rest[n..];
            }
            r.feed(rest);
            prop_assert!(r.is_done());
            let resp = r.finish().unwrap();
            prop_assert_eq!(resp.body, body);
        }

        #[test]
        fn never_panics(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..80), 0..8)) {
            let mut r = ResponseReader::new(256, 1024);
            for c in &chunks {
                r.feed(c);
            }
            let _ = r.finish();
        }
    }
}
