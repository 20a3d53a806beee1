//! A simulated PostgreSQL server for the `postgres` strategy: see [`PostgresServer`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;

use bytes::Bytes;

use super::service::{ConnId, ServiceOutput, StreamService};
use crate::proto::postgres::{MAX_IDENTIFIER, MAX_NOTIFY_PAYLOAD, PROTOCOL_3_0};
use crate::time::Instant;

/// The longest startup message accepted (the real server's `MAX_STARTUP_PACKET_LENGTH`).
const MAX_STARTUP: usize = 10_000;
/// The longest other message accepted: far more than any query a LISTEN client sends, and
/// what bounds a connection's buffer.
const MAX_MESSAGE: usize = 1 << 20;
/// The request codes that share the startup message's place.
const SSL_REQUEST_CODE: i32 = 80_877_103;
const GSSENC_REQUEST_CODE: i32 = 80_877_104;
const CANCEL_REQUEST_CODE: i32 = 80_877_102;
/// The first pid handed out; each restart moves the next ones on by [`PID_STEP`].
const FIRST_PID: i32 = 4_000;
const PID_STEP: i32 = 10_000;

/// What a [`PostgresServer`] did, for figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PostgresFigures {
    /// Connections opened to it.
    pub connections: u64,
    /// Sessions logged in.
    pub logins: u64,
    /// Simple queries received.
    pub queries: u64,
    /// `NOTIFY` statements committed.
    pub notifies: u64,
    /// Notifications delivered (one per listening session per `NOTIFY`).
    pub notifications: u64,
    /// Queries that failed (`ERROR`, the session goes on).
    pub errors: u64,
    /// Sessions ended by the server for breaking the protocol (`FATAL`).
    pub protocol_errors: u64,
    /// Restarts.
    pub restarts: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the startup message (or an `SSLRequest` before it).
    Startup,
    /// Logged in: messages have a type byte.
    Ready,
}

#[derive(Debug)]
struct Session {
    pid: i32,
    phase: Phase,
    /// Bytes of the message still arriving.
    buf: Vec<u8>,
    listening: BTreeSet<String>,
}

/// A simulated PostgreSQL server, as much of one as a `LISTEN`/`NOTIFY` client needs: the
/// `postgres` strategy's sessions run against it in the simulator
/// ([`Sim::serve_stream`](super::Sim::serve_stream)).
///
/// It speaks protocol 3.0 without TLS (an `SSLRequest` is answered `N`) and trusts every
/// login: the startup message is answered with `AuthenticationOk`, a few `ParameterStatus`,
/// `BackendKeyData` (the session's pid) and `ReadyForQuery`. Simple queries run `LISTEN`,
/// `UNLISTEN` and `NOTIFY` (identifiers quoted or not, `'...'` and `E'...'` literals), several
/// statements in one query forming one implicit transaction as on the real server: parsed
/// whole first (a syntax error anywhere runs nothing), rolled back on an error, and only at
/// its commit are `LISTEN`s registered and notifications sent — to every session listening
/// on the channel, the sender's own included, whose copy comes after its `CommandComplete`s
/// and before its `ReadyForQuery`, carrying the sender's pid. Any other statement is a
/// syntax error (`42601`); the extended query protocol is not spoken.
///
/// Bytes that break the protocol (a bad length, an unknown message, a malformed startup
/// message) are answered with a `FATAL` `ErrorResponse` and the connection is closed; nothing
/// a client sends can make it panic, and it buffers at most one message (capped) per
/// connection. [`restart`](StreamService::restart) is a fast shutdown: every session hears
/// `57P01` and is closed, and the sessions after it have other pids. A hot standby
/// ([`set_read_only`](PostgresServer::set_read_only)) refuses `LISTEN` and `NOTIFY`.
#[derive(Debug)]
pub struct PostgresServer {
    sessions: BTreeMap<ConnId, Session>,
    out: VecDeque<ServiceOutput>,
    next_pid: i32,
    max_connections: usize,
    /// A hot standby: `LISTEN`, `UNLISTEN` and `NOTIFY` fail (`25006`).
    read_only: bool,
    figures: PostgresFigures,
}

impl Default for PostgresServer {
    fn default() -> Self {
        PostgresServer::new()
    }
}

/// A statement the server runs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Statement {
    Listen(String),
    /// `None`: `UNLISTEN *`.
    Unlisten(Option<String>),
    Notify(String, String),
}

/// An error a query ends with: SQLSTATE and message.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SqlError {
    code: &'static str,
    message: String,
}

impl SqlError {
    fn syntax(message: impl Into<String>) -> SqlError {
        SqlError {
            code: "42601",
            message: message.into(),
        }
    }

    fn encoding() -> SqlError {
        SqlError {
            code: "22021",
            message: "invalid byte sequence for encoding \"UTF8\"".into(),
        }
    }
}

impl PostgresServer {
    /// A server with no sessions, accepting up to 100 (the real server's default).
    pub fn new() -> Self {
        PostgresServer {
            sessions: BTreeMap::new(),
            out: VecDeque::new(),
            next_pid: FIRST_PID,
            max_connections: 100,
            read_only: false,
            figures: PostgresFigures::default(),
        }
    }

    /// Sets how many sessions may be logged in at once; a login beyond that is refused
    /// (`53300`, "too many clients").
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n;
        self
    }

    /// Makes the server a hot standby (`true`: every `LISTEN`, `UNLISTEN` and `NOTIFY` fails
    /// with `25006`, "cannot execute ... during recovery", and the session goes on) or
    /// promotes it (`false`): sessions opened meanwhile stay, as they do on a promoted
    /// standby, and what they did not `LISTEN` to they do not hear.
    pub fn set_read_only(&mut self, yes: bool) {
        self.read_only = yes;
    }

    /// What it did so far.
    pub fn figures(&self) -> PostgresFigures {
        self.figures
    }

    /// Connections open now (logged in or not).
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// Sessions listening on `channel` now.
    pub fn listeners(&self, channel: &str) -> usize {
        self.sessions
            .values()
            .filter(|s| s.listening.contains(channel))
            .count()
    }

    fn write(&mut self, conn: ConnId, data: Vec<u8>) {
        if !data.is_empty() {
            self.out.push_back(ServiceOutput::Write {
                conn,
                data: Bytes::from(data),
            });
        }
    }

    /// Ends `conn` for breaking the protocol: a `FATAL` error, then close.
    fn fatal(&mut self, conn: ConnId, code: &'static str, message: &str) {
        let mut out = Vec::new();
        error_response(&mut out, "FATAL", code, message);
        self.write(conn, out);
        self.out.push_back(ServiceOutput::Close { conn });
        self.sessions.remove(&conn);
        self.figures.protocol_errors += 1;
    }

    fn startup(&mut self, conn: ConnId, body: &[u8]) {
        let Some(code) = be_i32(body) else {
            return self.fatal(conn, "08P01", "invalid length of startup packet");
        };
        match code {
            SSL_REQUEST_CODE | GSSENC_REQUEST_CODE if body.len() == 4 => {
                // No TLS here: the client goes on in the clear or gives up.
                self.write(conn, b"N".to_vec());
            }
            CANCEL_REQUEST_CODE => {
                // Nothing here runs long enough to cancel: the connection just ends.
                self.out.push_back(ServiceOutput::Close { conn });
                self.sessions.remove(&conn);
            }
            c if c >> 16 == PROTOCOL_3_0 >> 16 => self.login(conn, &body[4..]),
            _ => self.fatal(conn, "0A000", "unsupported frontend protocol"),
        }
    }

    /// The startup message's parameters, then the session is in.
    fn login(&mut self, conn: ConnId, mut rest: &[u8]) {
        let mut user = None;
        loop {
            let Some(name) = take_cstr(&mut rest) else {
                return self.fatal(
                    conn,
                    "08P01",
                    "invalid startup packet layout: expected terminator as last byte",
                );
            };
            if name.is_empty() {
                if !rest.is_empty() {
                    return self.fatal(
                        conn,
                        "08P01",
                        "invalid startup packet layout: expected terminator as last byte",
                    );
                }
                break;
            }
            let Some(value) = take_cstr(&mut rest) else {
                return self.fatal(
                    conn,
                    "08P01",
                    "invalid startup packet layout: expected terminator as last byte",
                );
            };
            if name == b"user" {
                user = Some(value);
            }
        }
        if user.is_none_or(<[u8]>::is_empty) {
            return self.fatal(
                conn,
                "28000",
                "no PostgreSQL user name specified in startup packet",
            );
        }
        let in_session = self
            .sessions
            .values()
            .filter(|s| s.phase == Phase::Ready)
            .count();
        if in_session >= self.max_connections {
            return self.fatal(conn, "53300", "sorry, too many clients already");
        }
        let pid = self.next_pid;
        self.next_pid = self.next_pid.checked_add(1).unwrap_or(FIRST_PID);
        let Some(s) = self.sessions.get_mut(&conn) else {
            return;
        };
        s.pid = pid;
        s.phase = Phase::Ready;
        self.figures.logins += 1;
        let mut out = Vec::new();
        message(&mut out, b'R', |o| o.extend_from_slice(&0i32.to_be_bytes()));
        for (name, value) in [
            ("server_version", "16.4"),
            ("server_encoding", "UTF8"),
            ("client_encoding", "UTF8"),
            ("standard_conforming_strings", "on"),
            ("DateStyle", "ISO, MDY"),
            ("integer_datetimes", "on"),
        ] {
            message(&mut out, b'S', |o| {
                put_cstr(o, name);
                put_cstr(o, value);
            });
        }
        message(&mut out, b'K', |o| {
            o.extend_from_slice(&pid.to_be_bytes());
            o.extend_from_slice(&(pid as u32).wrapping_mul(0x9e37_79b1).to_be_bytes());
        });
        ready(&mut out);
        self.write(conn, out);
    }

    fn message(&mut self, conn: ConnId, tag: u8, body: &[u8]) {
        match tag {
            b'Q' => self.query(conn, body),
            b'X' => {
                self.out.push_back(ServiceOutput::Close { conn });
                self.sessions.remove(&conn);
            }
            // The extended query protocol, COPY, and password messages to a server that
            // asked for none: real messages this server does not speak.
            b'P' | b'B' | b'E' | b'D' | b'S' | b'H' | b'C' | b'F' | b'd' | b'c' | b'f' | b'p' => {
                self.fatal(
                    conn,
                    "0A000",
                    "the simulated server speaks the simple query protocol only",
                );
            }
            other => {
                let why = format!("invalid frontend message type {other}");
                self.fatal(conn, "08P01", &why);
            }
        }
    }

    fn query(&mut self, conn: ConnId, body: &[u8]) {
        // One string, its NUL the message's last byte.
        let Some((&0, text)) = body.split_last() else {
            return self.fatal(conn, "08P01", "invalid message format");
        };
        if text.contains(&0) {
            return self.fatal(conn, "08P01", "invalid message format");
        }
        self.figures.queries += 1;
        let mut out = Vec::new();
        let result = std::str::from_utf8(text)
            .map_err(|_| SqlError::encoding())
            .and_then(parse);
        let statements = match result {
            Ok((s, notices)) => {
                for n in notices {
                    notice_response(&mut out, "42622", &n);
                }
                s
            }
            Err(e) => return self.fail(conn, out, &e),
        };
        if statements.is_empty() {
            message(&mut out, b'I', |_| {});
            ready(&mut out);
            return self.write(conn, out);
        }
        // Run in one implicit transaction: effects kept aside until it commits.
        let mut listening = match self.sessions.get(&conn) {
            Some(s) => s.listening.clone(),
            None => return,
        };
        let mut pending: Vec<(String, String)> = Vec::new();
        for st in statements {
            if self.read_only {
                let name = match st {
                    Statement::Listen(_) => "LISTEN",
                    Statement::Unlisten(_) => "UNLISTEN",
                    Statement::Notify(..) => "NOTIFY",
                };
                let e = SqlError {
                    code: "25006",
                    message: format!("cannot execute {name} during recovery"),
                };
                return self.fail(conn, out, &e);
            }
            let tag = match st {
                Statement::Listen(ch) => {
                    listening.insert(ch);
                    "LISTEN"
                }
                Statement::Unlisten(Some(ch)) => {
                    listening.remove(&ch);
                    "UNLISTEN"
                }
                Statement::Unlisten(None) => {
                    listening.clear();
                    "UNLISTEN"
                }
                Statement::Notify(ch, payload) => {
                    if payload.len() > MAX_NOTIFY_PAYLOAD {
                        let e = SqlError {
                            code: "22023",
                            message: "payload string too long".into(),
                        };
                        return self.fail(conn, out, &e);
                    }
                    // The real server sends one of identical notifications in a transaction.
                    if !pending.iter().any(|(c, p)| *c == ch && *p == payload) {
                        pending.push((ch, payload));
                    }
                    "NOTIFY"
                }
            };
            message(&mut out, b'C', |o| put_cstr(o, tag));
        }
        // Commit: the LISTENs first, so that a session hears its own NOTIFY of the same
        // transaction, then the notifications.
        let Some(me) = self.sessions.get_mut(&conn) else {
            return;
        };
        me.listening = listening;
        let pid = me.pid;
        self.figures.notifies += pending.len() as u64;
        let mut others: BTreeMap<ConnId, Vec<u8>> = BTreeMap::new();
        for (channel, payload) in &pending {
            for (id, s) in &self.sessions {
                if !s.listening.contains(channel) {
                    continue;
                }
                let buf = if *id == conn {
                    &mut out
                } else {
                    others.entry(*id).or_default()
                };
                message(buf, b'A', |o| {
                    o.extend_from_slice(&pid.to_be_bytes());
                    put_cstr(o, channel);
                    put_cstr(o, payload);
                });
                self.figures.notifications += 1;
            }
        }
        ready(&mut out);
        self.write(conn, out);
        for (id, data) in others {
            self.write(id, data);
        }
    }

    /// The query ends with `e`; the session goes on.
    fn fail(&mut self, conn: ConnId, mut out: Vec<u8>, e: &SqlError) {
        self.figures.errors += 1;
        error_response(&mut out, "ERROR", e.code, &e.message);
        ready(&mut out);
        self.write(conn, out);
    }
}

impl StreamService for PostgresServer {
    fn open(&mut self, _now: Instant, conn: ConnId, _peer: SocketAddr) {
        self.figures.connections += 1;
        self.sessions.insert(
            conn,
            Session {
                pid: 0,
                phase: Phase::Startup,
                buf: Vec::new(),
                listening: BTreeSet::new(),
            },
        );
    }

    fn data(&mut self, _now: Instant, conn: ConnId, data: &[u8]) {
        match self.sessions.get_mut(&conn) {
            Some(s) => s.buf.extend_from_slice(data),
            None => return,
        }
        // Whole messages, one at a time: each may end the session or change its phase.
        loop {
            let Some(s) = self.sessions.get_mut(&conn) else {
                return;
            };
            let (head, cap, min) = match s.phase {
                Phase::Startup => (4, MAX_STARTUP, 8),
                Phase::Ready => (5, MAX_MESSAGE, 4),
            };
            if s.buf.len() < head {
                return;
            }
            let len = i32::from_be_bytes([
                s.buf[head - 4],
                s.buf[head - 3],
                s.buf[head - 2],
                s.buf[head - 1],
            ]);
            let Some(len) = usize::try_from(len)
                .ok()
                .filter(|l| (min..=cap).contains(l))
            else {
                return self.fatal(conn, "08P01", "invalid message length");
            };
            let total = len + head - 4;
            if s.buf.len() < total {
                return;
            }
            let frame: Vec<u8> = s.buf.drain(..total).collect();
            let phase = s.phase;
            match phase {
                Phase::Startup => self.startup(conn, &frame[4..]),
                Phase::Ready => self.message(conn, frame[0], &frame[5..]),
            }
        }
    }

    fn closed(&mut self, _now: Instant, conn: ConnId) {
        self.sessions.remove(&conn);
    }

    fn poll_output(&mut self) -> Option<ServiceOutput> {
        self.out.pop_front()
    }

    fn restart(&mut self, _now: Instant) {
        let conns: Vec<(ConnId, Phase)> =
            self.sessions.iter().map(|(c, s)| (*c, s.phase)).collect();
        for (conn, phase) in conns {
            if phase == Phase::Ready {
                let mut out = Vec::new();
                error_response(
                    &mut out,
                    "FATAL",
                    "57P01",
                    "terminating connection due to administrator command",
                );
                self.write(conn, out);
            }
            self.out.push_back(ServiceOutput::Close { conn });
        }
        self.sessions.clear();
        self.figures.restarts += 1;
        // Other pids from now on, as after a real restart.
        self.next_pid = FIRST_PID.saturating_add(
            PID_STEP.saturating_mul(i32::try_from(self.figures.restarts % 1000).unwrap_or(0)),
        );
    }
}

// ----- the backend's messages -------------------------------------------------------------------

/// Appends one message: the tag, the length (counting itself), the body.
fn message(out: &mut Vec<u8>, tag: u8, body: impl FnOnce(&mut Vec<u8>)) {
    out.push(tag);
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    body(out);
    let len = i32::try_from(out.len() - at).unwrap_or(i32::MAX);
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

/// A protocol string: the text, NUL-free (what reaches here came through checks that refuse
/// NUL; dropping one is the safe way to keep the frame whole should one slip through).
fn put_cstr(out: &mut Vec<u8>, s: &str) {
    out.extend(s.bytes().filter(|b| *b != 0));
    out.push(0);
}

fn ready(out: &mut Vec<u8>) {
    message(out, b'Z', |o| o.push(b'I'));
}

fn fields(out: &mut Vec<u8>, severity: &str, code: &str, text: &str) {
    for (f, v) in [
        (b'S', severity),
        (b'V', severity),
        (b'C', code),
        (b'M', text),
    ] {
        out.push(f);
        put_cstr(out, v);
    }
    out.push(0);
}

fn error_response(out: &mut Vec<u8>, severity: &str, code: &str, text: &str) {
    message(out, b'E', |o| fields(o, severity, code, text));
}

fn notice_response(out: &mut Vec<u8>, code: &str, text: &str) {
    message(out, b'N', |o| fields(o, "NOTICE", code, text));
}

// ----- the frontend's -----------------------------------------------------------------------------

fn be_i32(b: &[u8]) -> Option<i32> {
    Some(i32::from_be_bytes(b.get(..4)?.try_into().ok()?))
}

/// Takes a NUL-terminated string off the front of `rest`.
fn take_cstr<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let end = rest.iter().position(|b| *b == 0)?;
    let s = &rest[..end];
    *rest = &rest[end + 1..];
    Some(s)
}

// ----- SQL, the little of it there is -------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// An identifier or keyword: unquoted ones folded to lower case.
    Ident {
        text: String,
        quoted: bool,
    },
    Str(String),
    Comma,
    Semi,
    Star,
    Other(u8),
}

/// An identifier as the server keeps it: at most [`MAX_IDENTIFIER`] bytes (cut at a
/// character boundary, with a notice, as the real server does).
fn identifier(text: String, notices: &mut Vec<String>) -> String {
    if text.len() <= MAX_IDENTIFIER {
        return text;
    }
    let mut end = MAX_IDENTIFIER;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let cut = text[..end].to_owned();
    notices.push(format!(
        "identifier \"{text}\" will be truncated to \"{cut}\""
    ));
    cut
}

/// Splits `sql` into tokens; the notices are identifiers it truncated.
fn lex(sql: &str, notices: &mut Vec<String>) -> Result<Vec<Tok>, SqlError> {
    let b = sql.as_bytes();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        match c {
            c if c.is_ascii_whitespace() => i += 1,
            b'-' if next == Some(b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if next == Some(b'*') => {
                // Block comments nest in PostgreSQL.
                let mut depth = 0usize;
                loop {
                    match (b.get(i), b.get(i + 1)) {
                        (Some(b'/'), Some(b'*')) => {
                            depth += 1;
                            i += 2;
                        }
                        (Some(b'*'), Some(b'/')) => {
                            depth -= 1;
                            i += 2;
                            if depth == 0 {
                                break;
                            }
                        }
                        (Some(_), _) => i += 1,
                        (None, _) => return Err(SqlError::syntax("unterminated /* comment")),
                    }
                }
            }
            b'E' | b'e' if next == Some(b'\'') => {
                let (s, end) = escape_string(b, i + 2)?;
                toks.push(Tok::Str(s));
                i = end;
            }
            b'\'' => {
                let (s, end) = quoted(b, i + 1, b'\'')
                    .ok_or_else(|| SqlError::syntax("unterminated quoted string"))?;
                toks.push(Tok::Str(s));
                i = end;
            }
            b'"' => {
                let (s, end) = quoted(b, i + 1, b'"')
                    .ok_or_else(|| SqlError::syntax("unterminated quoted identifier"))?;
                if s.is_empty() {
                    return Err(SqlError::syntax("zero-length delimited identifier"));
                }
                let text = identifier(s, notices);
                toks.push(Tok::Ident { text, quoted: true });
                i = end;
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 => {
                let start = i;
                while i < b.len()
                    && (b[i].is_ascii_alphanumeric()
                        || b[i] == b'_'
                        || b[i] == b'$'
                        || b[i] >= 0x80)
                {
                    i += 1;
                }
                // Only ASCII folds, as in a multi-byte encoding on the real server.
                let text = sql[start..i].to_ascii_lowercase();
                let text = identifier(text, notices);
                toks.push(Tok::Ident {
                    text,
                    quoted: false,
                });
            }
            b',' => {
                toks.push(Tok::Comma);
                i += 1;
            }
            b';' => {
                toks.push(Tok::Semi);
                i += 1;
            }
            b'*' => {
                toks.push(Tok::Star);
                i += 1;
            }
            other => {
                toks.push(Tok::Other(other));
                i += 1;
            }
        }
    }
    Ok(toks)
}

/// A `'...'` string or `"..."` identifier from `start` (after the opening quote): the text
/// with doubled quotes made single, and where it ends. Backslashes are plain characters
/// (`standard_conforming_strings` is on). `None` if it never ends.
fn quoted(b: &[u8], start: usize, q: u8) -> Option<(String, usize)> {
    let mut out = Vec::new();
    let mut i = start;
    loop {
        match (b.get(i), b.get(i + 1)) {
            (Some(&c), Some(&d)) if c == q && d == q => {
                out.push(q);
                i += 2;
            }
            (Some(&c), _) if c == q => break,
            (Some(&c), _) => {
                out.push(c);
                i += 1;
            }
            (None, _) => return None,
        }
    }
    // Cut only at ASCII quotes out of valid UTF-8: still valid.
    Some((String::from_utf8(out).ok()?, i + 1))
}

/// An `E'...'` string from `start` (after the opening quote): backslash escapes, doubled
/// quotes; the bytes it makes must be UTF-8 without NUL, as the real server requires.
fn escape_string(b: &[u8], start: usize) -> Result<(String, usize), SqlError> {
    let unterminated = || SqlError::syntax("unterminated quoted string");
    let mut out: Vec<u8> = Vec::new();
    let mut i = start;
    loop {
        let Some(&c) = b.get(i) else {
            return Err(unterminated());
        };
        match c {
            b'\'' if b.get(i + 1) == Some(&b'\'') => {
                out.push(b'\'');
                i += 2;
            }
            b'\'' => break,
            b'\\' => {
                let Some(&e) = b.get(i + 1) else {
                    return Err(unterminated());
                };
                i += 2;
                match e {
                    b'b' => out.push(8),
                    b'f' => out.push(12),
                    b'n' => out.push(b'\n'),
                    b'r' => out.push(b'\r'),
                    b't' => out.push(b'\t'),
                    b'0'..=b'7' => {
                        let mut v = u32::from(e - b'0');
                        for _ in 0..2 {
                            match b.get(i) {
                                Some(&d @ b'0'..=b'7') => {
                                    v = v * 8 + u32::from(d - b'0');
                                    i += 1;
                                }
                                _ => break,
                            }
                        }
                        // The real server keeps the low byte of a large octal value.
                        out.push(v as u8);
                    }
                    b'x' if b.get(i).is_some_and(u8::is_ascii_hexdigit) => {
                        let mut v = 0u32;
                        for _ in 0..2 {
                            match b.get(i).and_then(|d| char::from(*d).to_digit(16)) {
                                Some(d) => {
                                    v = v * 16 + d;
                                    i += 1;
                                }
                                None => break,
                            }
                        }
                        out.push(v as u8);
                    }
                    b'u' | b'U' => {
                        let n = if e == b'u' { 4 } else { 8 };
                        let digits = b.get(i..i + n).ok_or_else(|| {
                            SqlError::syntax("invalid Unicode escape: \\uXXXX or \\UXXXXXXXX")
                        })?;
                        let v = std::str::from_utf8(digits)
                            .ok()
                            .filter(|d| d.bytes().all(|x| x.is_ascii_hexdigit()))
                            .and_then(|d| u32::from_str_radix(d, 16).ok())
                            .ok_or_else(|| {
                                SqlError::syntax("invalid Unicode escape: \\uXXXX or \\UXXXXXXXX")
                            })?;
                        i += n;
                        let ch = char::from_u32(v).filter(|c| *c != '\0').ok_or(SqlError {
                            code: "22P05",
                            message: "invalid Unicode escape value".into(),
                        })?;
                        let mut buf = [0u8; 4];
                        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                    }
                    // Any other character stands for itself (`\\`, `\'`, ...).
                    other => out.push(other),
                }
            }
            other => {
                out.push(other);
                i += 1;
            }
        }
    }
    if out.contains(&0) {
        return Err(SqlError::encoding());
    }
    let s = String::from_utf8(out).map_err(|_| SqlError::encoding())?;
    Ok((s, i + 1))
}

/// The statements of a simple query, and the notices parsing it gave. A syntax error
/// anywhere fails the whole query before anything runs.
fn parse(sql: &str) -> Result<(Vec<Statement>, Vec<String>), SqlError> {
    let mut notices = Vec::new();
    let toks = lex(sql, &mut notices)?;
    let mut out = Vec::new();
    for st in toks.split(|t| *t == Tok::Semi) {
        if st.is_empty() {
            continue;
        }
        let keyword = match &st[0] {
            Tok::Ident {
                text,
                quoted: false,
            } => text.as_str(),
            _ => "",
        };
        let channel = |t: Option<&Tok>| match t {
            Some(Tok::Ident { text, .. }) => Some(text.clone()),
            _ => None,
        };
        let statement = match (keyword, st.len()) {
            ("listen", 2) => channel(st.get(1)).map(Statement::Listen),
            ("unlisten", 2) if st[1] == Tok::Star => Some(Statement::Unlisten(None)),
            ("unlisten", 2) => channel(st.get(1)).map(|c| Statement::Unlisten(Some(c))),
            ("notify", 2) => channel(st.get(1)).map(|c| Statement::Notify(c, String::new())),
            ("notify", 4) => match (channel(st.get(1)), &st[2], &st[3]) {
                (Some(c), Tok::Comma, Tok::Str(p)) => Some(Statement::Notify(c, p.clone())),
                _ => None,
            },
            _ => None,
        };
        match statement {
            Some(s) => out.push(s),
            None => {
                let near = match &st[0] {
                    Tok::Ident { text, .. } => text.clone(),
                    Tok::Str(_) => "a string".into(),
                    Tok::Other(c) => char::from(*c).to_string(),
                    Tok::Comma => ",".into(),
                    Tok::Star => "*".into(),
                    Tok::Semi => ";".into(),
                };
                return Err(SqlError::syntax(format!(
                    "syntax error at or near \"{near}\" (the simulated server runs LISTEN, \
                     UNLISTEN and NOTIFY only)"
                )));
            }
        }
    }
    Ok((out, notices))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::postgres::{
        self as pg, Backend, Decoder, TransactionStatus, listen_query, notify_query,
    };

    fn c(n: u64) -> ConnId {
        ConnId(n)
    }

    /// Everything written to each connection, decoded, and which were closed.
    fn drain(s: &mut PostgresServer) -> (BTreeMap<ConnId, Vec<Backend>>, BTreeSet<ConnId>) {
        let mut bytes: BTreeMap<ConnId, Vec<u8>> = BTreeMap::new();
        let mut closed = BTreeSet::new();
        while let Some(o) = s.poll_output() {
            match o {
                ServiceOutput::Write { conn, data } => {
                    assert!(!closed.contains(&conn), "written after close");
                    bytes.entry(conn).or_default().extend_from_slice(&data);
                }
                ServiceOutput::Close { conn } => {
                    closed.insert(conn);
                }
            }
        }
        let msgs = bytes
            .into_iter()
            .map(|(conn, b)| {
                let mut d = Decoder::new();
                d.push(&b);
                let mut v = Vec::new();
                while let Some(m) = d.next_message().unwrap() {
                    v.push(m);
                }
                (conn, v)
            })
            .collect();
        (msgs, closed)
    }

    fn peer() -> SocketAddr {
        "10.0.0.1:40000".parse().unwrap()
    }

    fn login(s: &mut PostgresServer, conn: ConnId) -> i32 {
        s.open(Instant::ZERO, conn, peer());
        let mut m = Vec::new();
        pg::startup(&mut m, "band", Some("band"), &[("application_name", "t")]).unwrap();
        // One byte at a time: framing must not depend on how bytes arrive.
        for b in &m {
            s.data(Instant::ZERO, conn, std::slice::from_ref(b));
        }
        let (msgs, closed) = drain(s);
        assert!(closed.is_empty());
        let msgs = &msgs[&conn];
        assert_eq!(msgs[0], Backend::AuthenticationOk);
        assert_eq!(
            msgs.last(),
            Some(&Backend::ReadyForQuery {
                status: TransactionStatus::Idle
            })
        );
        msgs.iter()
            .find_map(|m| match m {
                Backend::BackendKeyData { pid, .. } => Some(*pid),
                _ => None,
            })
            .unwrap()
    }

    fn query(s: &mut PostgresServer, conn: ConnId, sql: &str) {
        let mut m = Vec::new();
        pg::query(&mut m, sql).unwrap();
        s.data(Instant::ZERO, conn, &m);
    }

    fn tag(t: &str) -> Backend {
        Backend::CommandComplete { tag: t.into() }
    }

    fn rfq() -> Backend {
        Backend::ReadyForQuery {
            status: TransactionStatus::Idle,
        }
    }

    fn note(pid: i32, channel: &str, payload: &str) -> Backend {
        Backend::NotificationResponse {
            pid,
            channel: channel.into(),
            payload: payload.into(),
        }
    }

    fn code(m: &Backend) -> Option<(&str, &str)> {
        match m {
            Backend::ErrorResponse(e) => Some((e.severity.as_str(), e.code.as_str())),
            _ => None,
        }
    }

    #[test]
    fn a_notify_reaches_every_listener_the_senders_copy_before_its_ready() {
        let mut s = PostgresServer::new();
        let (a, b, idle) = (c(1), c(2), c(3));
        let pa = login(&mut s, a);
        let pb = login(&mut s, b);
        login(&mut s, idle);
        assert_ne!(pa, pb);
        let chan = "band \"x\"";
        query(&mut s, a, &listen_query(chan).unwrap());
        query(&mut s, b, &listen_query(chan).unwrap());
        let (m, _) = drain(&mut s);
        assert_eq!(m[&a], [tag("LISTEN"), rfq()]);
        assert_eq!(s.listeners(chan), 2);

        // Quotes doubled, and a backslash: the E'...' form.
        let payload = "it's a \\ payload";
        query(&mut s, a, &notify_query(chan, payload).unwrap());
        let (m, _) = drain(&mut s);
        assert_eq!(m[&a], [tag("NOTIFY"), note(pa, chan, payload), rfq()]);
        assert_eq!(m[&b], [note(pa, chan, payload)]);
        assert!(!m.contains_key(&idle));
        let f = s.figures();
        assert_eq!((f.notifies, f.notifications, f.logins), (1, 2, 3));
    }

    #[test]
    fn a_query_is_one_transaction_parsed_whole_and_rolled_back_on_error() {
        let mut s = PostgresServer::new();
        let a = c(1);
        let pa = login(&mut s, a);
        // LISTEN and NOTIFY together: the LISTEN counts at the commit, so it hears itself;
        // identical notifications are sent once.
        query(&mut s, a, "listen Ch; NOTIFY ch, 'x'; notify CH, 'x';");
        let (m, _) = drain(&mut s);
        let want = [
            tag("LISTEN"),
            tag("NOTIFY"),
            tag("NOTIFY"),
            note(pa, "ch", "x"),
            rfq(),
        ];
        assert_eq!(m[&a], want);

        // A syntax error anywhere: nothing runs.
        query(&mut s, a, "UNLISTEN *; SELECT 1");
        let (m, _) = drain(&mut s);
        assert_eq!(m[&a].len(), 2);
        assert_eq!(code(&m[&a][0]), Some(("ERROR", "42601")));
        assert_eq!(s.listeners("ch"), 1);

        // An error when running: what ran before is rolled back, nothing is sent.
        let long = "x".repeat(8000);
        query(
            &mut s,
            a,
            &format!("UNLISTEN ch; NOTIFY ch, 'y'; NOTIFY ch, '{long}'"),
        );
        let (m, _) = drain(&mut s);
        assert_eq!(m[&a][..2], [tag("UNLISTEN"), tag("NOTIFY")]);
        assert_eq!(code(&m[&a][2]), Some(("ERROR", "22023")));
        assert_eq!(m[&a][3], rfq());
        assert_eq!(s.listeners("ch"), 1);

        // Empty, comments, E'' escapes.
        query(&mut s, a, " ; -- nothing\n");
        let (m, _) = drain(&mut s);
        assert_eq!(m[&a], [Backend::EmptyQueryResponse, rfq()]);
        query(
            &mut s,
            a,
            "/* a /* nested */ comment */ NOTIFY ch, E'a\\'b\\n\\x41\\101\\u00e9'",
        );
        let (m, _) = drain(&mut s);
        assert_eq!(m[&a][1], note(pa, "ch", "a'b\nAAé"));
        query(&mut s, a, "NOTIFY ch, E'\\000'");
        let (m, _) = drain(&mut s);
        assert_eq!(code(&m[&a][0]), Some(("ERROR", "22021")));
        query(&mut s, a, "NOTIFY ch, 'open");
        let (m, _) = drain(&mut s);
        assert_eq!(code(&m[&a][0]), Some(("ERROR", "42601")));
        assert!(s.sessions() == 1, "errors end queries, not the session");
    }

    #[test]
    fn long_identifiers_are_cut_with_a_notice() {
        let mut s = PostgresServer::new();
        let a = c(1);
        login(&mut s, a);
        let long = "é".repeat(40);
        query(&mut s, a, &format!("LISTEN \"{long}\""));
        let (m, _) = drain(&mut s);
        assert!(matches!(m[&a][0], Backend::NoticeResponse(_)));
        assert_eq!(s.listeners(&"é".repeat(31)), 1);
    }

    #[test]
    fn bad_bytes_end_the_session_with_a_fatal_error() {
        let bad: [&[u8]; 7] = [
            // A startup length below 8, and one past the cap.
            &[0, 0, 0, 4],
            &[0, 0, 0x7f, 0xff, 0, 3, 0, 0],
            // Protocol 2.0.
            &[0, 0, 0, 8, 0, 2, 0, 0],
            // No user.
            &[0, 0, 0, 9, 0, 3, 0, 0, 0],
            // Parameters without the final NUL.
            &[0, 0, 0, 14, 0, 3, 0, 0, b'u', b's', b'e', b'r', 0, b'x'],
            // Not a length at all (a query before logging in).
            b"Q\0\0\0\x09LISTEN\0",
            &[0xff; 16],
        ];
        for (i, b) in bad.iter().enumerate() {
            let mut s = PostgresServer::new();
            s.open(Instant::ZERO, c(1), peer());
            s.data(Instant::ZERO, c(1), b);
            let (m, closed) = drain(&mut s);
            assert!(closed.contains(&c(1)), "case {i}");
            assert_eq!(code(&m[&c(1)][0]).map(|x| x.0), Some("FATAL"), "case {i}");
            assert_eq!(s.sessions(), 0, "case {i}");
        }
        let after_login: [&[u8]; 4] = [
            // A query without its NUL, a length below 4, an unknown type, a Parse.
            b"Q\0\0\0\x05x",
            b"Q\0\0\0\x03",
            b"?\0\0\0\x04",
            b"P\0\0\0\x04",
        ];
        for (i, b) in after_login.iter().enumerate() {
            let mut s = PostgresServer::new();
            login(&mut s, c(1));
            s.data(Instant::ZERO, c(1), b);
            let (m, closed) = drain(&mut s);
            assert!(closed.contains(&c(1)), "case {i}");
            assert_eq!(code(&m[&c(1)][0]).map(|x| x.0), Some("FATAL"), "case {i}");
        }
        // Invalid UTF-8 in a query: an error, the session goes on.
        let mut s = PostgresServer::new();
        login(&mut s, c(1));
        s.data(Instant::ZERO, c(1), b"Q\0\0\0\x06\xff\0");
        let (m, closed) = drain(&mut s);
        assert!(closed.is_empty());
        assert_eq!(code(&m[&c(1)][0]), Some(("ERROR", "22021")));
    }

    #[test]
    fn ssl_is_refused_terminate_closes_and_a_restart_changes_pids() {
        let mut s = PostgresServer::new().max_connections(2);
        // A standby: LISTEN fails, the session goes on; promoted, it runs.
        s.set_read_only(true);
        login(&mut s, c(9));
        query(&mut s, c(9), "LISTEN x");
        let (msgs, _) = drain(&mut s);
        assert_eq!(code(&msgs[&c(9)][0]), Some(("ERROR", "25006")));
        s.set_read_only(false);
        query(&mut s, c(9), "LISTEN x");
        let (msgs, _) = drain(&mut s);
        assert_eq!(msgs[&c(9)], [tag("LISTEN"), rfq()]);
        s.closed(Instant::ZERO, c(9));
        s.open(Instant::ZERO, c(1), peer());
        s.data(Instant::ZERO, c(1), &pg::SSL_REQUEST);
        let mut n = None;
        while let Some(o) = s.poll_output() {
            if let ServiceOutput::Write { data, .. } = o {
                n = Some(data);
            }
        }
        assert_eq!(n.as_deref(), Some(&b"N"[..]));
        s.closed(Instant::ZERO, c(1));
        let p1 = login(&mut s, c(2));
        login(&mut s, c(3));
        // A third login is one too many.
        s.open(Instant::ZERO, c(4), peer());
        let mut m = Vec::new();
        pg::startup(&mut m, "band", None, &[]).unwrap();
        s.data(Instant::ZERO, c(4), &m);
        let (msgs, closed) = drain(&mut s);
        assert_eq!(code(&msgs[&c(4)][0]), Some(("FATAL", "53300")));
        assert!(closed.contains(&c(4)));

        let mut x = Vec::new();
        pg::terminate(&mut x);
        s.data(Instant::ZERO, c(3), &x);
        let (_, closed) = drain(&mut s);
        assert!(closed.contains(&c(3)));

        s.restart(Instant::ZERO);
        let (msgs, closed) = drain(&mut s);
        assert_eq!(code(&msgs[&c(2)][0]), Some(("FATAL", "57P01")));
        assert!(closed.contains(&c(2)));
        assert_eq!(s.sessions(), 0);
        let p2 = login(&mut s, c(5));
        assert_ne!(p1, p2);
    }

    #[test]
    fn any_bytes_in_any_pieces_never_panic_and_stay_bounded() {
        let mut rng = crate::rng::Rng::from_seed([7; 32]);
        for round in 0..300u64 {
            let mut s = PostgresServer::new();
            s.open(Instant::ZERO, c(1), peer());
            if round % 2 == 0 {
                let mut m = Vec::new();
                pg::startup(&mut m, "u", None, &[]).unwrap();
                s.data(Instant::ZERO, c(1), &m);
            }
            for _ in 0..20 {
                let len = rng.range_inclusive(0, 64) as usize;
                let mut junk = vec![0u8; len];
                rng.fill_bytes(&mut junk);
                // Mostly plausible tags and small lengths, so that parsing goes deep.
                if len > 5 && rng.chance(0.7) {
                    junk[0] = *b"QXPp".get(rng.range_inclusive(0, 3) as usize).unwrap();
                    junk[1..5].copy_from_slice(&(len as i32 - 1).to_be_bytes());
                }
                s.data(Instant::ZERO, c(1), &junk);
                while s.poll_output().is_some() {}
                assert!(s.sessions.values().all(|x| x.buf.len() <= MAX_MESSAGE + 64));
            }
        }
    }
}
