//! PostgreSQL's frontend/backend protocol (version 3.0) as far as a LISTEN/NOTIFY client needs
//! it, its password authentications (cleartext, MD5, SCRAM-SHA-256), and the notification
//! payloads muster's nodes send each other.
//!
//! Nothing here does I/O: encoders append whole frames to a caller's `Vec<u8>`, the
//! [`Decoder`] is fed whatever the stream delivered and hands back whole messages, and
//! [`ScramClient`] is told each server message in turn. Every length from the network is
//! checked against a cap before its bytes are kept.
//!
//! # The session a discovery strategy drives
//!
//! 1. TLS (optional): send [`SSL_REQUEST`], read the single byte answer and judge it with
//!    [`ssl_response`] (`S`: hand the stream to TLS; `N`: the server has no TLS, so go on in
//!    plain text only if the configuration allows it). Bytes after the `S` that arrived before
//!    the TLS handshake are refused: they would be a man in the middle's (CVE-2021-23222).
//! 2. [`startup`] with the user, the database and e.g. `application_name`.
//! 3. Answer the authentication request the [`Decoder`] yields:
//!    [`Backend::AuthenticationCleartextPassword`] with [`password_cleartext`],
//!    [`Backend::AuthenticationMd5Password`] with [`password_md5`],
//!    [`Backend::AuthenticationSasl`] (when it lists [`SCRAM_SHA_256`]) with
//!    [`sasl_initial_response`] of [`ScramClient::client_first`], then
//!    [`Backend::AuthenticationSaslContinue`] with [`sasl_response`] of
//!    [`ScramClient::handle_server_first`], then [`Backend::AuthenticationSaslFinal`] with
//!    [`ScramClient::handle_server_final`]. Once SCRAM has begun, an
//!    [`Backend::AuthenticationOk`] before [`ScramClient::is_verified`] is a failure: a server
//!    that skips the final step has not proved it knows the password.
//!    An [`Backend::ErrorResponse`] ends the attempt (code `28P01`: wrong password; `28000`:
//!    no pg_hba.conf entry).
//! 4. Wait for [`Backend::ReadyForQuery`]; [`Backend::ParameterStatus`] and
//!    [`Backend::BackendKeyData`] come before it (the latter's `pid` is this session's, which
//!    is how the node recognises its own notifications coming back).
//! 5. [`query`] of [`listen_query`]`(channel)`, answered by [`Backend::CommandComplete`]
//!    (`LISTEN`) and [`Backend::ReadyForQuery`].
//! 6. From then on, [`query`] of [`notify_query`]`(channel, payload)` on every heartbeat; every
//!    [`Backend::NotificationResponse`] on the channel goes to [`decode_payload`].
//!    Notifications, notices and parameter statuses may arrive at any time, also inside a
//!    query's answer: the session's own NOTIFY comes back to it between the
//!    [`Backend::CommandComplete`] and the [`Backend::ReadyForQuery`], with the session's own
//!    pid (checked against the real server). An [`Backend::ErrorResponse`] that
//!    [`is_fatal`](ServerMessage::is_fatal) (`57P01` when the server shuts down) ends the
//!    session, any other is answered by a [`Backend::ReadyForQuery`].
//! 7. Leaving: a goodbye notification, then [`terminate`], then close.
//!
//! Every [`DecodeError`] ends the session: the stream can no longer be trusted to be framed.

use core::fmt;

use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;

use crate::node::{NodeName, NodeNameError};
use crate::reason::escape;

type HmacSha256 = Hmac<Sha256>;

// ---------------------------------------------------------------------------------------------
// Frontend messages
// ---------------------------------------------------------------------------------------------

/// Protocol version 3.0, as the startup message spells it (major 3 in the high 16 bits).
pub const PROTOCOL_3_0: i32 = 3 << 16;

/// The SSLRequest: length 8, then the magic code 1234.5679 that no protocol version can be.
pub const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// The SASL mechanism this client speaks (no channel binding, so never the `-PLUS` one).
pub const SCRAM_SHA_256: &str = "SCRAM-SHA-256";

/// The longest identifier PostgreSQL keeps (NAMEDATALEN - 1); longer ones are truncated by
/// the server, which would make two long channel names that share a prefix one channel.
pub const MAX_IDENTIFIER: usize = 63;

/// The NOTIFY payload limit: the server refuses payloads of 8000 bytes or more.
pub const MAX_NOTIFY_PAYLOAD: usize = 7999;

/// Why a frontend message could not be built. These come from configuration, never from
/// the network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The protocol's strings end at a NUL byte, so a NUL inside one would cut it short.
    #[error("{0} contains a NUL byte, which PostgreSQL's protocol cannot carry")]
    Nul(&'static str),
    /// Empty where PostgreSQL needs something.
    #[error("{0} is empty")]
    Empty(&'static str),
    /// Longer than PostgreSQL accepts.
    #[error("{what} is {len} bytes long, the limit is {max}")]
    TooLong {
        /// What was too long.
        what: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A startup parameter that [`startup`] sets itself.
    #[error("startup parameter {0:?} is set by muster itself")]
    Reserved(String),
}

/// Writes one message: the tag (none for startup-phase messages), the length, the body. On
/// an error nothing is left in `out`, so a caller's buffer never holds half a frame.
fn message(
    out: &mut Vec<u8>,
    tag: Option<u8>,
    body: impl FnOnce(&mut Vec<u8>) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    let start = out.len();
    out.extend(tag);
    let len_at = out.len();
    out.extend_from_slice(&[0; 4]);
    let result = body(out).and_then(|()| {
        let len = out.len() - len_at;
        let len = i32::try_from(len).map_err(|_| EncodeError::TooLong {
            what: "message",
            len,
            max: i32::MAX as usize,
        })?;
        out[len_at..len_at + 4].copy_from_slice(&len.to_be_bytes());
        Ok(())
    });
    if result.is_err() {
        out.truncate(start);
    }
    result
}

fn cstr(out: &mut Vec<u8>, what: &'static str, s: &[u8]) -> Result<(), EncodeError> {
    if s.contains(&0) {
        return Err(EncodeError::Nul(what));
    }
    out.extend_from_slice(s);
    out.push(0);
    Ok(())
}

/// The StartupMessage for protocol 3.0: `user`, `database` (the server defaults it to the
/// user's name when `None`), `client_encoding=UTF8`, then `params` (e.g.
/// `("application_name", "muster")`).
///
/// `client_encoding` is fixed because [`quote_literal`] is safe only in an encoding where a
/// quote byte is always a quote, and because notifications must arrive as UTF-8. `params`
/// may not set `user`, `database`, `client_encoding` or `replication` (a replication
/// connection cannot LISTEN).
pub fn startup(
    out: &mut Vec<u8>,
    user: &str,
    database: Option<&str>,
    params: &[(&str, &str)],
) -> Result<(), EncodeError> {
    if user.is_empty() {
        return Err(EncodeError::Empty("user"));
    }
    if let Some((name, _)) = params.iter().find(|(name, _)| {
        ["user", "database", "client_encoding", "replication"]
            .iter()
            .any(|r| name.eq_ignore_ascii_case(r))
    }) {
        return Err(EncodeError::Reserved((*name).to_owned()));
    }
    message(out, None, |out| {
        out.extend_from_slice(&PROTOCOL_3_0.to_be_bytes());
        cstr(out, "parameter name", b"user")?;
        cstr(out, "user", user.as_bytes())?;
        if let Some(db) = database {
            cstr(out, "parameter name", b"database")?;
            cstr(out, "database", db.as_bytes())?;
        }
        cstr(out, "parameter name", b"client_encoding")?;
        cstr(out, "parameter value", b"UTF8")?;
        for (name, value) in params {
            if name.is_empty() {
                return Err(EncodeError::Empty("parameter name"));
            }
            cstr(out, "parameter name", name.as_bytes())?;
            cstr(out, "parameter value", value.as_bytes())?;
        }
        out.push(0);
        Ok(())
    })
}

/// A PasswordMessage carrying the password itself, the answer to
/// [`Backend::AuthenticationCleartextPassword`]. Only over TLS: anyone on the path reads it.
pub fn password_cleartext(out: &mut Vec<u8>, password: &str) -> Result<(), EncodeError> {
    message(out, Some(b'p'), |out| {
        cstr(out, "password", password.as_bytes())
    })
}

/// What MD5 authentication sends: `"md5" + md5hex(md5hex(password + user) + salt)`.
pub fn md5_password(user: &str, password: &str, salt: [u8; 4]) -> String {
    let inner = hex(&Md5::new()
        .chain_update(password.as_bytes())
        .chain_update(user.as_bytes())
        .finalize());
    let outer = Md5::new()
        .chain_update(inner.as_bytes())
        .chain_update(salt)
        .finalize();
    format!("md5{}", hex(&outer))
}

/// A PasswordMessage answering [`Backend::AuthenticationMd5Password`] with
/// [`md5_password`]. `user` is the startup message's: the server salts with that name.
pub fn password_md5(
    out: &mut Vec<u8>,
    user: &str,
    password: &str,
    salt: [u8; 4],
) -> Result<(), EncodeError> {
    let hashed = md5_password(user, password, salt);
    message(out, Some(b'p'), |out| {
        cstr(out, "password", hashed.as_bytes())
    })
}

/// A SASLInitialResponse: the chosen mechanism (see [`SCRAM_SHA_256`]) and its first message
/// ([`ScramClient::client_first`]).
pub fn sasl_initial_response(
    out: &mut Vec<u8>,
    mechanism: &str,
    data: &[u8],
) -> Result<(), EncodeError> {
    message(out, Some(b'p'), |out| {
        cstr(out, "mechanism", mechanism.as_bytes())?;
        let len = i32::try_from(data.len()).map_err(|_| EncodeError::TooLong {
            what: "SASL data",
            len: data.len(),
            max: i32::MAX as usize,
        })?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(data);
        Ok(())
    })
}

/// A SASLResponse: the next SASL message ([`ScramClient::handle_server_first`]'s answer).
pub fn sasl_response(out: &mut Vec<u8>, data: &[u8]) -> Result<(), EncodeError> {
    message(out, Some(b'p'), |out| {
        out.extend_from_slice(data);
        Ok(())
    })
}

/// A simple Query: one or more SQL statements as text.
pub fn query(out: &mut Vec<u8>, sql: &str) -> Result<(), EncodeError> {
    message(out, Some(b'Q'), |out| cstr(out, "query", sql.as_bytes()))
}

/// Terminate: says goodbye so the server logs a clean disconnection, not an EOF.
pub fn terminate(out: &mut Vec<u8>) {
    out.extend_from_slice(&[b'X', 0, 0, 0, 4]);
}

/// `name` as a quoted SQL identifier (`"name"`, inner quotes doubled), so a channel name is
/// used exactly as configured (case kept, any punctuation) and can never end the statement.
/// Refuses empty names, NUL and names over [`MAX_IDENTIFIER`] bytes.
pub fn quote_identifier(name: &str) -> Result<String, EncodeError> {
    if name.is_empty() {
        return Err(EncodeError::Empty("identifier"));
    }
    if name.contains('\0') {
        return Err(EncodeError::Nul("identifier"));
    }
    if name.len() > MAX_IDENTIFIER {
        return Err(EncodeError::TooLong {
            what: "identifier",
            len: name.len(),
            max: MAX_IDENTIFIER,
        });
    }
    Ok(format!("\"{}\"", name.replace('"', "\"\"")))
}

/// `text` as an SQL string literal, quotes doubled. Text with a backslash is written in the
/// `E'...'` form with backslashes doubled too, as PostgreSQL's own `quote_literal` does, so
/// it reads the same whatever `standard_conforming_strings` says. Refuses NUL.
pub fn quote_literal(text: &str) -> Result<String, EncodeError> {
    if text.contains('\0') {
        return Err(EncodeError::Nul("string literal"));
    }
    let mut out = String::with_capacity(text.len() + 3);
    if text.contains('\\') {
        out.push('E');
    }
    out.push('\'');
    for c in text.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('\'');
    Ok(out)
}

/// `LISTEN "<channel>"`.
pub fn listen_query(channel: &str) -> Result<String, EncodeError> {
    Ok(format!("LISTEN {}", quote_identifier(channel)?))
}

/// `NOTIFY "<channel>", '<payload>'`. The payload must be shorter than 8000 bytes
/// ([`MAX_NOTIFY_PAYLOAD`]), the server's limit.
pub fn notify_query(channel: &str, payload: &str) -> Result<String, EncodeError> {
    if payload.len() > MAX_NOTIFY_PAYLOAD {
        return Err(EncodeError::TooLong {
            what: "NOTIFY payload",
            len: payload.len(),
            max: MAX_NOTIFY_PAYLOAD,
        });
    }
    Ok(format!(
        "NOTIFY {}, {}",
        quote_identifier(channel)?,
        quote_literal(payload)?
    ))
}

// ---------------------------------------------------------------------------------------------
// Backend messages
// ---------------------------------------------------------------------------------------------

/// The default cap on one backend message (its length field, which counts itself): far more
/// than any authentication message, notification (under 8 KiB) or error a LISTEN session sees.
pub const DEFAULT_MAX_MESSAGE: usize = 64 * 1024;

/// Why the backend's byte stream cannot be read on. Every one of them ends the session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// A length field under 4, which cannot even count itself.
    #[error("message {:?} has length {len}, less than 4", char::from(*tag))]
    BadLength {
        /// The message type byte.
        tag: u8,
        /// The length it claimed.
        len: i32,
    },
    /// A message longer than the decoder's cap.
    #[error("message {:?} of {len} bytes is larger than the limit of {max}", char::from(*tag))]
    TooLarge {
        /// The message type byte.
        tag: u8,
        /// The length it claimed.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// A message whose body ends before its contents do.
    #[error("message {:?} is truncated", char::from(*tag))]
    Truncated {
        /// The message type byte.
        tag: u8,
    },
    /// A message with bytes after its contents.
    #[error("message {:?} has {extra} bytes after its contents", char::from(*tag))]
    Trailing {
        /// The message type byte.
        tag: u8,
        /// How many.
        extra: usize,
    },
    /// A negative count or length where the protocol has none (other than a NULL column).
    #[error("message {:?} has a negative count or length", char::from(*tag))]
    Negative {
        /// The message type byte.
        tag: u8,
    },
    /// An authentication method this client does not speak (Kerberos, GSSAPI, SSPI, ...).
    #[error("the server asks for authentication method {0}, which muster does not support")]
    UnsupportedAuth(i32),
    /// A ReadyForQuery status other than `I`, `T` or `E`.
    #[error("ReadyForQuery with unknown status {:?}", char::from(*.0))]
    BadStatus(u8),
    /// The answer to an SSLRequest was neither `S` nor `N`.
    #[error("the answer to SSLRequest is {:?}, not 'S' or 'N'", char::from(*.0))]
    SslAnswer(u8),
    /// Bytes arrived along with the answer to an SSLRequest, before any TLS handshake.
    #[error("{0} unexpected bytes arrived with the answer to SSLRequest")]
    SslTrailing(usize),
    /// The stream ended before the answer to an SSLRequest.
    #[error("no answer to SSLRequest")]
    SslEmpty,
}

/// The server's answer to [`SSL_REQUEST`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslResponse {
    /// `S`: go on with a TLS handshake.
    Accepted,
    /// `N`: the server does not do TLS.
    Refused,
}

/// Judges what arrived after [`SSL_REQUEST`]: exactly one byte, `S` or `N`. It is not a
/// framed message, hence not the [`Decoder`]'s. Anything after that byte came before the
/// TLS handshake that should protect it, and is refused (CVE-2021-23222).
pub fn ssl_response(data: &[u8]) -> Result<SslResponse, DecodeError> {
    let (&first, rest) = data.split_first().ok_or(DecodeError::SslEmpty)?;
    let answer = match first {
        b'S' => SslResponse::Accepted,
        b'N' => SslResponse::Refused,
        other => return Err(DecodeError::SslAnswer(other)),
    };
    if !rest.is_empty() {
        return Err(DecodeError::SslTrailing(rest.len()));
    }
    Ok(answer)
}

/// The transaction status a ReadyForQuery reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionStatus {
    /// `I`: not in a transaction block; notifications are delivered.
    Idle,
    /// `T`: in a transaction block.
    InTransaction,
    /// `E`: in a failed transaction block.
    Failed,
}

/// The fields of an ErrorResponse or NoticeResponse a client acts on or reports. Text is as
/// the server sent it (lossily made UTF-8); [`Display`](fmt::Display) escapes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerMessage {
    /// The severity, not localized (`V`) when the server sends it, else the localized one
    /// (`S`): `ERROR`, `FATAL`, `PANIC`, `WARNING`, `NOTICE`, ...
    pub severity: String,
    /// The SQLSTATE code (`C`), e.g. `28P01` for a wrong password.
    pub code: String,
    /// The primary message (`M`).
    pub message: String,
    /// The detail (`D`), if any.
    pub detail: Option<String>,
    /// The hint (`H`), if any.
    pub hint: Option<String>,
}

impl ServerMessage {
    /// True when the server closes the session after this error (`FATAL` or `PANIC`); any
    /// other error ends only the current query.
    pub fn is_fatal(&self) -> bool {
        self.severity == "FATAL" || self.severity == "PANIC"
    }
}

impl fmt::Display for ServerMessage {
    /// `SEVERITY CODE: message`, every part escaped: this text came from the network.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            escape(&self.severity),
            escape(&self.code),
            escape(&self.message)
        )
    }
}

/// One backend message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backend {
    /// Authentication succeeded.
    AuthenticationOk,
    /// Send the password in clear ([`password_cleartext`]).
    AuthenticationCleartextPassword,
    /// Send [`password_md5`] with this salt.
    AuthenticationMd5Password {
        /// The salt.
        salt: [u8; 4],
    },
    /// Start SASL with one of these mechanisms (see [`SCRAM_SHA_256`]).
    AuthenticationSasl {
        /// The mechanisms the server offers, in its order of preference.
        mechanisms: Vec<String>,
    },
    /// The SCRAM server-first message.
    AuthenticationSaslContinue {
        /// The SASL data.
        data: Vec<u8>,
    },
    /// The SCRAM server-final message.
    AuthenticationSaslFinal {
        /// The SASL data.
        data: Vec<u8>,
    },
    /// A run-time parameter's value (server_version, client_encoding, ...).
    ParameterStatus {
        /// The parameter.
        name: String,
        /// Its value.
        value: String,
    },
    /// The session's process id and cancellation key.
    BackendKeyData {
        /// The backend's process id: notifications this session sent carry it.
        pid: i32,
        /// The cancellation key (4 bytes in protocol 3.0).
        secret: Vec<u8>,
    },
    /// The server waits for a query.
    ReadyForQuery {
        /// The transaction status.
        status: TransactionStatus,
    },
    /// A statement finished.
    CommandComplete {
        /// The command tag, e.g. `LISTEN` or `NOTIFY`.
        tag: String,
    },
    /// An error: the query failed, or (when [fatal](ServerMessage::is_fatal)) the session.
    ErrorResponse(ServerMessage),
    /// A warning or notice; nothing failed.
    NoticeResponse(ServerMessage),
    /// A notification on a channel this session listens to.
    NotificationResponse {
        /// The process id of the session that sent it.
        pid: i32,
        /// The channel.
        channel: String,
        /// The payload (see [`decode_payload`]).
        payload: String,
    },
    /// The query string was empty.
    EmptyQueryResponse,
    /// The columns of the rows that follow.
    RowDescription {
        /// The column names.
        columns: Vec<String>,
    },
    /// One row.
    DataRow {
        /// The columns' values in text form; `None` is NULL.
        values: Vec<Option<Vec<u8>>>,
    },
    /// A message a LISTEN session has no use for, skipped whole (e.g. the copy protocol's).
    Other {
        /// Its type byte.
        tag: u8,
        /// Its body's length.
        len: usize,
    },
}

/// Reads backend messages from a byte stream delivered in arbitrary pieces.
///
/// [`push`](Decoder::push) what arrived, then call [`next_message`](Decoder::next_message) until it returns
/// `Ok(None)`. Each message's length is checked against the cap as soon as its 5-byte header
/// is in, before any of its body is kept, so the decoder holds at most the unread messages
/// of the last push plus one partial message. The first error is sticky: messages before
/// it are still handed out, then every call returns it.
#[derive(Debug, Clone)]
pub struct Decoder {
    buf: Vec<u8>,
    /// Where the next unread message starts.
    read: usize,
    /// Where the message still arriving starts (everything before it is whole).
    partial: usize,
    max: usize,
    error: Option<DecodeError>,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new()
    }
}

impl Decoder {
    /// A decoder with the [`DEFAULT_MAX_MESSAGE`] cap.
    pub fn new() -> Decoder {
        Decoder::with_max_message(DEFAULT_MAX_MESSAGE)
    }

    /// A decoder refusing messages whose length field exceeds `max` (at least 4 is always
    /// allowed: an empty message).
    pub fn with_max_message(max: usize) -> Decoder {
        Decoder {
            buf: Vec::new(),
            read: 0,
            partial: 0,
            max: max.max(4),
            error: None,
        }
    }

    /// Takes the next piece of the stream. Once an error was found the rest is ignored.
    pub fn push(&mut self, mut data: &[u8]) {
        while !data.is_empty() && self.error.is_none() {
            let have = self.buf.len() - self.partial;
            let want = if have < 5 {
                5 - have
            } else {
                match self.frame_len(self.partial) {
                    Ok(total) => total - have,
                    Err(e) => {
                        self.error = Some(e);
                        return;
                    }
                }
            };
            let take = want.min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            let have = self.buf.len() - self.partial;
            if have < 5 {
                continue;
            }
            match self.frame_len(self.partial) {
                Ok(total) if have == total => self.partial = self.buf.len(),
                Ok(_) => {}
                Err(e) => self.error = Some(e),
            }
        }
    }

    /// The whole length (type byte included) of the frame at `at`, whose header is in.
    fn frame_len(&self, at: usize) -> Result<usize, DecodeError> {
        let tag = self.buf[at];
        let len = i32::from_be_bytes([
            self.buf[at + 1],
            self.buf[at + 2],
            self.buf[at + 3],
            self.buf[at + 4],
        ]);
        let Ok(ulen) = usize::try_from(len) else {
            return Err(DecodeError::BadLength { tag, len });
        };
        if ulen < 4 {
            return Err(DecodeError::BadLength { tag, len });
        }
        if ulen > self.max {
            return Err(DecodeError::TooLarge {
                tag,
                len: ulen,
                max: self.max,
            });
        }
        Ok(ulen + 1)
    }

    /// The next whole message, `Ok(None)` when more bytes are needed.
    pub fn next_message(&mut self) -> Result<Option<Backend>, DecodeError> {
        if self.read < self.partial {
            let total = self.frame_len(self.read)?;
            let tag = self.buf[self.read];
            let body = &self.buf[self.read + 5..self.read + total];
            let msg = decode_message(tag, body);
            self.read += total;
            self.compact();
            return match msg {
                Ok(m) => Ok(Some(m)),
                Err(e) => {
                    // A message that breaks the protocol ends the stream as a framing error does.
                    self.error = Some(e.clone());
                    self.read = self.partial;
                    Err(e)
                }
            };
        }
        match &self.error {
            Some(e) => Err(e.clone()),
            None => Ok(None),
        }
    }

    /// Bytes held, whole unread messages and the partial one: what the cap bounds.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.read
    }

    fn compact(&mut self) {
        if self.read == self.buf.len() {
            self.buf.clear();
            self.read = 0;
            self.partial = 0;
        } else if self.read > 4096 && self.read * 2 > self.buf.len() {
            self.buf.drain(..self.read);
            self.partial -= self.read;
            self.read = 0;
        }
    }
}

/// A cursor over a message body.
struct Body<'a> {
    tag: u8,
    rest: &'a [u8],
}

impl<'a> Body<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.rest.len() < n {
            return Err(DecodeError::Truncated { tag: self.tag });
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn i16(&mut self) -> Result<i16, DecodeError> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self) -> Result<i32, DecodeError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn count(&mut self) -> Result<usize, DecodeError> {
        usize::try_from(self.i16()?).map_err(|_| DecodeError::Negative { tag: self.tag })
    }

    fn cstr(&mut self) -> Result<&'a [u8], DecodeError> {
        let end = self
            .rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(DecodeError::Truncated { tag: self.tag })?;
        let s = &self.rest[..end];
        self.rest = &self.rest[end + 1..];
        Ok(s)
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        Ok(String::from_utf8_lossy(self.cstr()?).into_owned())
    }

    fn rest(&mut self) -> &'a [u8] {
        core::mem::take(&mut self.rest)
    }

    fn end(&self) -> Result<(), DecodeError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Trailing {
                tag: self.tag,
                extra: self.rest.len(),
            })
        }
    }
}

fn decode_message(tag: u8, body: &[u8]) -> Result<Backend, DecodeError> {
    let mut b = Body { tag, rest: body };
    let msg = match tag {
        b'R' => return decode_auth(&mut b),
        b'S' => Backend::ParameterStatus {
            name: b.string()?,
            value: b.string()?,
        },
        b'K' => {
            let pid = b.i32()?;
            let secret = b.rest().to_vec();
            if secret.len() < 4 || secret.len() > 256 {
                return Err(DecodeError::Truncated { tag });
            }
            Backend::BackendKeyData { pid, secret }
        }
        b'Z' => Backend::ReadyForQuery {
            status: match b.u8()? {
                b'I' => TransactionStatus::Idle,
                b'T' => TransactionStatus::InTransaction,
                b'E' => TransactionStatus::Failed,
                other => return Err(DecodeError::BadStatus(other)),
            },
        },
        b'C' => Backend::CommandComplete { tag: b.string()? },
        b'E' => Backend::ErrorResponse(server_message(&mut b)?),
        b'N' => Backend::NoticeResponse(server_message(&mut b)?),
        b'A' => Backend::NotificationResponse {
            pid: b.i32()?,
            channel: b.string()?,
            payload: b.string()?,
        },
        b'I' => Backend::EmptyQueryResponse,
        b'T' => {
            let n = b.count()?;
            let mut columns = Vec::new();
            for _ in 0..n {
                columns.push(b.string()?);
                // table oid, column number, type oid, type size, type modifier, format code
                b.take(18)?;
            }
            Backend::RowDescription { columns }
        }
        b'D' => {
            let n = b.count()?;
            let mut values = Vec::new();
            for _ in 0..n {
                let len = b.i32()?;
                values.push(match len {
                    -1 => None,
                    len => {
                        let len =
                            usize::try_from(len).map_err(|_| DecodeError::Negative { tag })?;
                        Some(b.take(len)?.to_vec())
                    }
                });
            }
            Backend::DataRow { values }
        }
        _ => Backend::Other {
            tag,
            len: b.rest().len(),
        },
    };
    b.end()?;
    Ok(msg)
}

fn decode_auth(b: &mut Body<'_>) -> Result<Backend, DecodeError> {
    let msg = match b.i32()? {
        0 => Backend::AuthenticationOk,
        3 => Backend::AuthenticationCleartextPassword,
        5 => {
            let s = b.take(4)?;
            Backend::AuthenticationMd5Password {
                salt: [s[0], s[1], s[2], s[3]],
            }
        }
        10 => {
            let mut mechanisms = Vec::new();
            loop {
                let m = b.cstr()?;
                if m.is_empty() {
                    break;
                }
                mechanisms.push(String::from_utf8_lossy(m).into_owned());
            }
            Backend::AuthenticationSasl { mechanisms }
        }
        11 => Backend::AuthenticationSaslContinue {
            data: b.rest().to_vec(),
        },
        12 => Backend::AuthenticationSaslFinal {
            data: b.rest().to_vec(),
        },
        other => return Err(DecodeError::UnsupportedAuth(other)),
    };
    b.end()?;
    Ok(msg)
}

fn server_message(b: &mut Body<'_>) -> Result<ServerMessage, DecodeError> {
    let mut m = ServerMessage::default();
    let mut localized_severity = None;
    loop {
        let field = b.u8()?;
        if field == 0 {
            break;
        }
        let value = b.string()?;
        match field {
            b'S' => localized_severity = Some(value),
            b'V' => m.severity = value,
            b'C' => m.code = value,
            b'M' => m.message = value,
            b'D' => m.detail = Some(value),
            b'H' => m.hint = Some(value),
            _ => {}
        }
    }
    if m.severity.is_empty() {
        m.severity = localized_severity.unwrap_or_default();
    }
    Ok(m)
}

// ---------------------------------------------------------------------------------------------
// SCRAM-SHA-256
// ---------------------------------------------------------------------------------------------

/// The fewest PBKDF2 iterations accepted (RFC 7677's minimum, PostgreSQL's default): a
/// server, or a man in the middle posing as one, that asks for fewer would make the proof
/// this client sends cheaper to attack offline.
pub const MIN_ITERATIONS: u32 = 4096;

/// The most PBKDF2 iterations accepted: more would let a hostile server make this node spend
/// seconds of CPU on every connection attempt.
pub const MAX_ITERATIONS: u32 = 1_000_000;

/// Random bytes a client nonce should be made of (see [`client_nonce`]).
pub const NONCE_BYTES: usize = 18;

/// The longest server SCRAM message accepted; PostgreSQL's are under 200 bytes.
const MAX_SCRAM_MESSAGE: usize = 4096;

/// A client nonce made of random bytes from the caller's generator: base64, so printable and
/// free of commas, as SCRAM requires.
pub fn client_nonce(random: &[u8; NONCE_BYTES]) -> String {
    super::base64::encode(random)
}

/// Why a SCRAM exchange failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScramError {
    /// A step was called out of order, or after the exchange ended.
    #[error("SCRAM step out of order")]
    OutOfOrder,
    /// The client nonce is empty or has a character SCRAM forbids (a comma, a space, non-ASCII).
    #[error("the SCRAM client nonce is empty or not printable ASCII without commas")]
    BadClientNonce,
    /// A server message longer than accepted.
    #[error("SCRAM server message of {0} bytes is too long")]
    TooLong(usize),
    /// A server message that does not parse.
    #[error("malformed SCRAM server message: {0}")]
    Malformed(&'static str),
    /// The server demands an extension (`m=`) this client does not know.
    #[error("the SCRAM server demands an unsupported extension")]
    Extension,
    /// The server's nonce does not extend this client's.
    #[error("the SCRAM server nonce does not extend the client's")]
    NonceMismatch,
    /// An iteration count outside [`MIN_ITERATIONS`]..=[`MAX_ITERATIONS`].
    #[error("SCRAM iteration count {0} is outside {MIN_ITERATIONS}..={MAX_ITERATIONS}")]
    Iterations(u64),
    /// The server reported an error (`e=`); escaped, it came from the network.
    #[error("the SCRAM server reports: {}", escape(.0))]
    Server(String),
    /// The server's signature is wrong: it does not know the password, or is not the server.
    #[error("the SCRAM server signature does not verify")]
    BadServerSignature,
}

#[derive(Debug, Clone)]
enum ScramState {
    Start,
    SentFirst,
    SentFinal {
        server_key: [u8; 32],
        auth_message: String,
    },
    Verified,
    Failed,
}

/// The client side of SCRAM-SHA-256 (RFC 5802, RFC 7677) without channel binding: the
/// `n,,` GS2 header and the `SCRAM-SHA-256` mechanism.
///
/// The user name sent is empty, as libpq sends it: PostgreSQL takes the startup message's.
/// No SASLprep is applied to the password: ASCII passwords are unaffected, and PostgreSQL
/// itself uses the raw password when SASLprep fails, so only a non-ASCII password that
/// SASLprep would change (a rare normalization or a mapped-out character) fails to match.
#[derive(Clone)]
pub struct ScramClient {
    password: Vec<u8>,
    nonce: String,
    first_bare: String,
    state: ScramState,
}

impl fmt::Debug for ScramClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the password.
        f.debug_struct("ScramClient")
            .field("nonce", &self.nonce)
            .field("state", &self.state_name())
            .finish()
    }
}

fn is_nonce_char(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) && b != b','
}

fn saslname(user: &str) -> String {
    user.replace('=', "=3D").replace(',', "=2C")
}

impl ScramClient {
    /// A client for `password` with `client_nonce` (e.g. [`client_nonce`] of
    /// [`NONCE_BYTES`] random bytes).
    pub fn new(password: &str, client_nonce: &str) -> Result<ScramClient, ScramError> {
        ScramClient::with_user("", password, client_nonce)
    }

    fn with_user(user: &str, password: &str, nonce: &str) -> Result<ScramClient, ScramError> {
        if nonce.is_empty() || !nonce.bytes().all(is_nonce_char) {
            return Err(ScramError::BadClientNonce);
        }
        Ok(ScramClient {
            password: password.as_bytes().to_vec(),
            nonce: nonce.to_owned(),
            first_bare: format!("n={},r={nonce}", saslname(user)),
            state: ScramState::Start,
        })
    }

    fn state_name(&self) -> &'static str {
        match self.state {
            ScramState::Start => "start",
            ScramState::SentFirst => "sent-first",
            ScramState::SentFinal { .. } => "sent-final",
            ScramState::Verified => "verified",
            ScramState::Failed => "failed",
        }
    }

    /// The client-first message, for [`sasl_initial_response`].
    pub fn client_first(&mut self) -> Vec<u8> {
        if matches!(self.state, ScramState::Start) {
            self.state = ScramState::SentFirst;
        }
        format!("n,,{}", self.first_bare).into_bytes()
    }

    /// Checks the server-first message and computes the client-final one, for
    /// [`sasl_response`]. Runs PBKDF2 for as many iterations as the server asked, within
    /// [`MIN_ITERATIONS`]..=[`MAX_ITERATIONS`].
    pub fn handle_server_first(&mut self, data: &[u8]) -> Result<Vec<u8>, ScramError> {
        if !matches!(self.state, ScramState::SentFirst) {
            return Err(ScramError::OutOfOrder);
        }
        self.state = ScramState::Failed;
        let first = ServerFirst::parse(data, &self.nonce)?;
        let salted = hi(&self.password, &first.salt, first.iterations);
        let client_key = hmac(&salted, b"Client Key");
        let stored_key: [u8; 32] = sha2::Sha256::digest(client_key).into();
        let without_proof = format!("c=biws,r={}", first.nonce);
        let auth_message = format!("{},{},{without_proof}", self.first_bare, first.text);
        let signature = hmac(&stored_key, auth_message.as_bytes());
        let mut proof = client_key;
        for (p, s) in proof.iter_mut().zip(signature) {
            *p ^= s;
        }
        self.state = ScramState::SentFinal {
            server_key: hmac(&salted, b"Server Key"),
            auth_message,
        };
        Ok(format!("{without_proof},p={}", super::base64::encode(&proof)).into_bytes())
    }

    /// Checks the server-final message: the server's signature (compared in constant time),
    /// or the error it reports.
    pub fn handle_server_final(&mut self, data: &[u8]) -> Result<(), ScramError> {
        let ScramState::SentFinal {
            server_key,
            auth_message,
        } = core::mem::replace(&mut self.state, ScramState::Failed)
        else {
            return Err(ScramError::OutOfOrder);
        };
        if data.len() > MAX_SCRAM_MESSAGE {
            return Err(ScramError::TooLong(data.len()));
        }
        let text = core::str::from_utf8(data).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let first = text.split(',').next().unwrap_or_default();
        if let Some(e) = first.strip_prefix("e=") {
            return Err(ScramError::Server(e.to_owned()));
        }
        let v = first
            .strip_prefix("v=")
            .ok_or(ScramError::Malformed("no verifier"))?;
        let v =
            super::base64::decode(v, 64).ok_or(ScramError::Malformed("verifier is not base64"))?;
        let mut m = <HmacSha256 as KeyInit>::new_from_slice(&server_key)
            .expect("HMAC takes any key length");
        m.update(auth_message.as_bytes());
        m.verify_slice(&v)
            .map_err(|_| ScramError::BadServerSignature)?;
        self.state = ScramState::Verified;
        Ok(())
    }

    /// True once the server proved it knows the password: the only state in which an
    /// AuthenticationOk after SCRAM may be believed.
    pub fn is_verified(&self) -> bool {
        matches!(self.state, ScramState::Verified)
    }
}

struct ServerFirst<'a> {
    text: &'a str,
    nonce: &'a str,
    salt: Vec<u8>,
    iterations: u32,
}

impl<'a> ServerFirst<'a> {
    fn parse(data: &'a [u8], client_nonce: &str) -> Result<ServerFirst<'a>, ScramError> {
        if data.len() > MAX_SCRAM_MESSAGE {
            return Err(ScramError::TooLong(data.len()));
        }
        let text = core::str::from_utf8(data).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        if text.starts_with("m=") {
            return Err(ScramError::Extension);
        }
        let mut attrs = text.split(',');
        let nonce = attrs
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .ok_or(ScramError::Malformed("no nonce"))?;
        if !nonce.bytes().all(is_nonce_char) {
            return Err(ScramError::Malformed("nonce is not printable"));
        }
        if nonce.len() <= client_nonce.len() || !nonce.starts_with(client_nonce) {
            return Err(ScramError::NonceMismatch);
        }
        let salt = attrs
            .next()
            .and_then(|a| a.strip_prefix("s="))
            .ok_or(ScramError::Malformed("no salt"))?;
        let salt =
            super::base64::decode(salt, 1024).ok_or(ScramError::Malformed("salt is not base64"))?;
        if salt.is_empty() {
            return Err(ScramError::Malformed("empty salt"));
        }
        let count = attrs
            .next()
            .and_then(|a| a.strip_prefix("i="))
            .ok_or(ScramError::Malformed("no iteration count"))?;
        if count.is_empty() || count.len() > 12 || !count.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ScramError::Malformed("iteration count is not a number"));
        }
        let count: u64 = count
            .parse()
            .map_err(|_| ScramError::Malformed("iteration count is not a number"))?;
        let iterations = u32::try_from(count)
            .ok()
            .filter(|i| (MIN_ITERATIONS..=MAX_ITERATIONS).contains(i))
            .ok_or(ScramError::Iterations(count))?;
        Ok(ServerFirst {
            text,
            nonce,
            salt,
            iterations,
        })
    }
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut m = <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(data);
    m.finalize().into_bytes().into()
}

/// PBKDF2-HMAC-SHA256 with one 32-byte block, SCRAM's `Hi`. The keyed HMAC state is made once
/// and cloned per round, so a round costs two compressions, not four.
fn hi(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let prf = <HmacSha256 as KeyInit>::new_from_slice(password).expect("HMAC takes any key length");
    let mut m = prf.clone();
    m.update(salt);
    m.update(&1u32.to_be_bytes());
    let mut u: [u8; 32] = m.finalize().into_bytes().into();
    let mut out = u;
    for _ in 1..iterations {
        let mut m = prf.clone();
        m.update(&u);
        u = m.finalize().into_bytes().into();
        for (o, x) in out.iter_mut().zip(u) {
            *o ^= x;
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Hex (base64 is proto::base64)
// ---------------------------------------------------------------------------------------------

fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 15)]));
    }
    s
}

fn unhex8(s: &str) -> Option<[u8; 8]> {
    let b = s.as_bytes();
    if b.len() != 16 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 8];
    for (o, pair) in out.iter_mut().zip(b.chunks(2)) {
        *o = (digit(pair[0])? << 4) | digit(pair[1])?;
    }
    Some(out)
}

// ---------------------------------------------------------------------------------------------
// muster's notification payloads
// ---------------------------------------------------------------------------------------------

/// The first word of a plain payload: muster's format, version 1.
pub const PLAIN_PREFIX: &str = "muster1";
/// The first word of an authenticated payload.
pub const SIGNED_PREFIX: &str = "muster1s";

/// The longest payload read: every form muster or libcluster sends is under 450 bytes (a
/// node name is at most 255), so anything longer is refused before it is looked at.
pub const MAX_PAYLOAD: usize = 1024;

/// What a notification says about its sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `hb`: the sender is alive; connect to it.
    Heartbeat,
    /// `sync`: the sender just joined; everyone answers with a heartbeat at once.
    Sync,
    /// `bye`: the sender is leaving; forget it now rather than after missed heartbeats.
    Goodbye,
}

impl Kind {
    /// The word on the wire: `hb`, `sync` or `bye`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Heartbeat => "hb",
            Kind::Sync => "sync",
            Kind::Goodbye => "bye",
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        match s {
            "hb" => Some(Kind::Heartbeat),
            "sync" => Some(Kind::Sync),
            "bye" => Some(Kind::Goodbye),
            _ => None,
        }
    }
}

/// Which of the formats a payload was in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// `muster1 <kind> <node>`.
    Plain,
    /// `muster1s <kind> <node> <unix_ms> <nonce_hex> <mac_b64>`.
    Signed,
    /// Supabase's libcluster_postgres (the hex package): the bare node name, a heartbeat.
    Libcluster,
    /// Supabase Realtime's own strategy: `heartbeat::<node>` or `sync::<node>`.
    Realtime,
}

/// The freshness fields of a signed payload; the caller checks them (time window, nonces
/// already seen), since only it knows the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// The sender's wall clock, Unix milliseconds.
    pub unix_ms: u64,
    /// The sender's random nonce.
    pub nonce: [u8; 8],
}

/// A decoded notification payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// What it says.
    pub kind: Kind,
    /// Who sent it (validated as a node name).
    pub node: NodeName,
    /// The format it came in.
    pub format: Format,
    /// The time and nonce of a signed payload; `None` for the others.
    pub stamp: Option<Stamp>,
}

/// The key that signs and checks payloads, derived from the topology's secret as
/// `HMAC-SHA256(secret, "muster postgres v1")`, so the raw secret never keys anything itself
/// and the same secret used by another muster protocol yields another key.
#[derive(Clone)]
pub struct PayloadKey([u8; 32]);

impl PayloadKey {
    /// Derives the key from `secret`.
    pub fn new(secret: &[u8]) -> PayloadKey {
        PayloadKey(hmac(secret, b"muster postgres v1"))
    }

    /// The MAC of a signed payload's text before its MAC field, bound to the channel so a
    /// payload cannot be replayed onto another topology's channel. The NUL between them
    /// cannot occur in either (a channel with one is refused), so no two pairs collide.
    fn mac(&self, channel: &str, signed_text: &str) -> HmacSha256 {
        let mut m =
            <HmacSha256 as KeyInit>::new_from_slice(&self.0).expect("HMAC takes any key length");
        m.update(channel.as_bytes());
        m.update(&[0]);
        m.update(signed_text.as_bytes());
        m
    }
}

impl fmt::Debug for PayloadKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PayloadKey(..)")
    }
}

/// Why a payload was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// Longer than [`MAX_PAYLOAD`].
    #[error("payload of {0} bytes is longer than {MAX_PAYLOAD}")]
    TooLarge(usize),
    /// A plain or libcluster payload at a topology with a secret.
    #[error("an unsigned payload, but this topology has a secret")]
    Unsigned,
    /// A signed payload at a topology without a secret: it cannot be checked.
    #[error("a signed payload, but this topology has no secret")]
    NoSecret,
    /// A muster payload of a version this node does not speak.
    #[error("muster payload version {}, this node speaks muster1", escape(.0))]
    Version(String),
    /// The fields do not parse.
    #[error("malformed payload: {0}")]
    Malformed(&'static str),
    /// The MAC does not match: forged, corrupted, another secret or another channel.
    #[error("authentication failed (forged, corrupted, or another secret or channel)")]
    BadMac,
    /// The node name is not a valid one.
    #[error("bad node name: {0}")]
    BadNode(NodeNameError),
}

/// A plain payload: `muster1 <kind> <node>`.
pub fn encode_payload(kind: Kind, node: &NodeName) -> String {
    format!("{PLAIN_PREFIX} {} {}", kind.as_str(), node.as_str())
}

/// A signed payload: `muster1s <kind> <node> <unix_ms> <nonce_hex> <mac_b64>`, the MAC over
/// `channel`, a NUL and everything before the MAC field. `unix_ms` is the sender's wall
/// clock, `nonce` fresh random bytes: together they let receivers refuse replays.
pub fn encode_signed_payload(
    key: &PayloadKey,
    channel: &str,
    kind: Kind,
    node: &NodeName,
    unix_ms: u64,
    nonce: [u8; 8],
) -> String {
    let text = format!(
        "{SIGNED_PREFIX} {} {} {unix_ms} {}",
        kind.as_str(),
        node.as_str(),
        hex(&nonce)
    );
    let mac: [u8; 32] = key.mac(channel, &text).finalize().into_bytes().into();
    format!("{text} {}", super::base64::encode(&mac))
}

/// Reads a notification payload received on `channel`.
///
/// With a `key`, only signed payloads are accepted; their MAC is checked (in constant time)
/// before anything else of them is parsed, and the [`Stamp`] is returned for the caller's
/// freshness check. Without one, muster's plain payloads and libcluster_postgres' are
/// accepted (a bare node name, or Supabase Realtime's `heartbeat::`/`sync::` forms).
pub fn decode_payload(
    payload: &str,
    channel: &str,
    key: Option<&PayloadKey>,
) -> Result<Notice, PayloadError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(PayloadError::TooLarge(payload.len()));
    }
    let first = payload.split(' ').next().unwrap_or_default();
    if first == SIGNED_PREFIX {
        let key = key.ok_or(PayloadError::NoSecret)?;
        return decode_signed(payload, channel, key);
    }
    // A newer muster's format is reported as such, with or without a key, not as unsigned.
    if let Some(version) = first.strip_prefix("muster")
        && first != PLAIN_PREFIX
        && version.as_bytes().first().is_some_and(u8::is_ascii_digit)
    {
        return Err(PayloadError::Version(first.to_owned()));
    }
    if key.is_some() {
        return Err(PayloadError::Unsigned);
    }
    if first == PLAIN_PREFIX {
        let mut fields = payload.split(' ').skip(1);
        let (Some(kind), Some(node), None) = (fields.next(), fields.next(), fields.next()) else {
            return Err(PayloadError::Malformed("expected muster1 <kind> <node>"));
        };
        return Ok(Notice {
            kind: Kind::parse(kind).ok_or(PayloadError::Malformed("unknown kind"))?,
            node: NodeName::new(node).map_err(PayloadError::BadNode)?,
            format: Format::Plain,
            stamp: None,
        });
    }
    // Not `split_once("::")`: a bare IPv6 node name such as `app@::1` has one too.
    for (prefix, kind) in [("heartbeat::", Kind::Heartbeat), ("sync::", Kind::Sync)] {
        if let Some(node) = payload.strip_prefix(prefix) {
            return Ok(Notice {
                kind,
                node: NodeName::new(node).map_err(PayloadError::BadNode)?,
                format: Format::Realtime,
                stamp: None,
            });
        }
    }
    Ok(Notice {
        kind: Kind::Heartbeat,
        node: NodeName::new(payload).map_err(PayloadError::BadNode)?,
        format: Format::Libcluster,
        stamp: None,
    })
}

fn decode_signed(payload: &str, channel: &str, key: &PayloadKey) -> Result<Notice, PayloadError> {
    let (text, mac) = payload
        .rsplit_once(' ')
        .ok_or(PayloadError::Malformed("no MAC"))?;
    let mac = super::base64::decode(mac, 32)
        .filter(|m| m.len() == 32)
        .ok_or(PayloadError::Malformed("MAC is not 32 bytes of base64"))?;
    key.mac(channel, text)
        .verify_slice(&mac)
        .map_err(|_| PayloadError::BadMac)?;
    let mut fields = text.split(' ').skip(1);
    let (Some(kind), Some(node), Some(ms), Some(nonce), None) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return Err(PayloadError::Malformed(
            "expected muster1s <kind> <node> <unix_ms> <nonce> <mac>",
        ));
    };
    let kind = Kind::parse(kind).ok_or(PayloadError::Malformed("unknown kind"))?;
    if ms.is_empty() || !ms.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PayloadError::Malformed("time is not a number"));
    }
    let unix_ms = ms
        .parse()
        .map_err(|_| PayloadError::Malformed("time is not a number"))?;
    let nonce = unhex8(nonce).ok_or(PayloadError::Malformed("nonce is not 16 hex digits"))?;
    Ok(Notice {
        kind,
        node: NodeName::new(node).map_err(PayloadError::BadNode)?,
        format: Format::Signed,
        stamp: Some(Stamp { unix_ms, nonce }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn n(s: &str) -> NodeName {
        NodeName::new(s).unwrap()
    }

    fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    fn all(d: &mut Decoder) -> Result<Vec<Backend>, DecodeError> {
        let mut out = Vec::new();
        while let Some(m) = d.next_message()? {
            out.push(m);
        }
        Ok(out)
    }

    #[test]
    fn scram_rfc7677_vector() {
        let mut c = ScramClient::with_user("user", "pencil", "rOprNGfwEbeRWgbNEkqO").unwrap();
        assert_eq!(c.client_first(), b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let server_first = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                             s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let client_final = c.handle_server_first(server_first).unwrap();
        assert_eq!(
            String::from_utf8(client_final).unwrap(),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
             p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        assert!(!c.is_verified());
        c.handle_server_final(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .unwrap();
        assert!(c.is_verified());
        assert_eq!(
            c.handle_server_final(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="),
            Err(ScramError::OutOfOrder)
        );
    }

    fn rfc_client_after_first() -> ScramClient {
        let mut c = ScramClient::with_user("user", "pencil", "rOprNGfwEbeRWgbNEkqO").unwrap();
        c.client_first();
        c.handle_server_first(
            b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
        )
        .unwrap();
        c
    }

    #[test]
    fn scram_refuses_bad_server_messages() {
        let mut c = rfc_client_after_first();
        assert_eq!(
            c.handle_server_final(b"v=7rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="),
            Err(ScramError::BadServerSignature)
        );
        assert!(!c.is_verified());
        let mut c = rfc_client_after_first();
        let err = c
            .handle_server_final(b"e=invalid-proof\x1b[31m")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "the SCRAM server reports: invalid-proof\\u{1b}[31m"
        );
        let first = |c: &mut ScramClient, m: &[u8]| {
            c.client_first();
            c.handle_server_first(m)
        };
        let fresh = || ScramClient::new("pw", "abc").unwrap();
        assert_eq!(
            first(&mut fresh(), b"r=xyzdef,s=QUJD,i=4096"),
            Err(ScramError::NonceMismatch)
        );
        assert_eq!(
            first(&mut fresh(), b"r=abc,s=QUJD,i=4096"),
            Err(ScramError::NonceMismatch)
        );
        assert_eq!(
            first(&mut fresh(), b"r=abcd,s=QUJD,i=4095"),
            Err(ScramError::Iterations(4095))
        );
        assert_eq!(
            first(&mut fresh(), b"r=abcd,s=QUJD,i=99999999999"),
            Err(ScramError::Iterations(99_999_999_999))
        );
        assert!(matches!(
            first(&mut fresh(), b"r=abcd,s=QUJD,i=999999999999999"),
            Err(ScramError::Malformed(_))
        ));
        assert!(matches!(
            first(&mut fresh(), b"r=abcd,s=QUJ,i=4096"),
            Err(ScramError::Malformed(_))
        ));
        assert_eq!(
            first(&mut fresh(), b"m=ext,r=abcd,s=QUJD,i=4096"),
            Err(ScramError::Extension)
        );
        assert_eq!(
            fresh().handle_server_first(b"r=abcd,s=QUJD,i=4096"),
            Err(ScramError::OutOfOrder)
        );
        assert_eq!(
            first(&mut fresh(), &[b'r'; 5000]),
            Err(ScramError::TooLong(5000))
        );
        assert!(ScramClient::new("pw", "a,b").is_err());
        assert!(ScramClient::new("pw", "").is_err());
        assert_eq!(client_nonce(&[0xff; 18]).len(), 24);
    }

    #[test]
    fn scram_without_user_name_as_libpq_sends_it() {
        // The server-final computed independently with Python's hashlib.pbkdf2_hmac and hmac
        // for the user name "" (libpq's, and ours) over the RFC 7677 exchange.
        let mut c = ScramClient::new("pencil", "rOprNGfwEbeRWgbNEkqO").unwrap();
        assert_eq!(c.client_first(), b"n,,n=,r=rOprNGfwEbeRWgbNEkqO");
        c.handle_server_first(
            b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
        )
        .unwrap();
        c.handle_server_final(b"v=3HO6Qt1M4MKJrmlKaoOqLAI0/0TV0HZe7J9H3MBtSOg=")
            .unwrap();
        assert!(c.is_verified());
    }

    #[test]
    fn signed_payload_matches_an_independent_computation() {
        // key = HMAC(b"secret", b"muster postgres v1");
        // mac = HMAC(key, b"muster\0" + text), computed with Python's hmac module.
        let key = PayloadKey::new(b"secret");
        let node = n("a@127.0.0.1");
        let want = "muster1s hb a@127.0.0.1 1700000000000 0001020304050607 \
                    mcM6amJRiJbXtAaOztEf7z95PN4YOJHitO/P3nrJ+x0=";
        let got = encode_signed_payload(
            &key,
            "muster",
            Kind::Heartbeat,
            &node,
            1_700_000_000_000,
            [0, 1, 2, 3, 4, 5, 6, 7],
        );
        assert_eq!(got, want);
    }

    #[test]
    fn md5_known_value() {
        // python3 -c "import hashlib; i=hashlib.md5(b'secretpwalice').hexdigest();
        //   print('md5'+hashlib.md5(i.encode()+bytes([1,2,3,4])).hexdigest())"
        assert_eq!(
            md5_password("alice", "secretpw", [1, 2, 3, 4]),
            "md51c32133f2811b9ed4ec031ea397ba262"
        );
        let mut out = Vec::new();
        password_md5(&mut out, "alice", "secretpw", [1, 2, 3, 4]).unwrap();
        assert_eq!(out[0], b'p');
        assert_eq!(&out[1..5], &40i32.to_be_bytes());
        assert_eq!(&out[5..40], b"md51c32133f2811b9ed4ec031ea397ba262");
        assert_eq!(out[40], 0);
    }

    #[test]
    fn frontend_messages() {
        let mut out = Vec::new();
        startup(&mut out, "u", Some("db"), &[("application_name", "muster")]).unwrap();
        let mut want = Vec::new();
        want.extend_from_slice(&196608i32.to_be_bytes());
        want.extend_from_slice(
            b"user\0u\0database\0db\0client_encoding\0UTF8\0application_name\0muster\0\0",
        );
        let mut framed = ((want.len() + 4) as i32).to_be_bytes().to_vec();
        framed.extend_from_slice(&want);
        assert_eq!(out, framed);

        assert_eq!(
            startup(&mut out, "u", None, &[("Client_Encoding", "LATIN1")]),
            Err(EncodeError::Reserved("Client_Encoding".into()))
        );
        assert_eq!(
            startup(&mut out, "", None, &[]),
            Err(EncodeError::Empty("user"))
        );
        let before = out.len();
        assert_eq!(
            startup(&mut out, "u\0x", None, &[]),
            Err(EncodeError::Nul("user"))
        );
        assert_eq!(out.len(), before, "nothing half-written");

        let mut q = Vec::new();
        query(&mut q, "SELECT 1").unwrap();
        assert_eq!(q, b"Q\0\0\0\x0dSELECT 1\0");
        let mut t = Vec::new();
        terminate(&mut t);
        assert_eq!(t, b"X\0\0\0\x04");
        let mut s = Vec::new();
        sasl_initial_response(&mut s, SCRAM_SHA_256, b"n,,n=,r=x").unwrap();
        assert_eq!(s, b"p\0\0\0\x1fSCRAM-SHA-256\0\0\0\0\x09n,,n=,r=x");
        let mut s = Vec::new();
        sasl_response(&mut s, b"c=biws").unwrap();
        assert_eq!(s, b"p\0\0\0\x0ac=biws");
        let mut p = Vec::new();
        password_cleartext(&mut p, "pw").unwrap();
        assert_eq!(p, b"p\0\0\0\x07pw\0");
        assert_eq!(SSL_REQUEST[4..], 80877103i32.to_be_bytes());
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_identifier("Cluster").unwrap(), "\"Cluster\"");
        assert_eq!(quote_identifier("a\"b").unwrap(), "\"a\"\"b\"");
        assert!(quote_identifier("").is_err());
        assert!(quote_identifier("a\0b").is_err());
        assert!(quote_identifier(&"x".repeat(64)).is_err());
        assert!(quote_identifier(&"x".repeat(63)).is_ok());
        assert_eq!(quote_literal("it's").unwrap(), "'it''s'");
        assert_eq!(quote_literal("a\\'b").unwrap(), "E'a\\\\''b'");
        assert!(quote_literal("a\0").is_err());
        assert_eq!(
            notify_query("c\"h", "muster1 hb a@b").unwrap(),
            "NOTIFY \"c\"\"h\", 'muster1 hb a@b'"
        );
        assert_eq!(listen_query("x").unwrap(), "LISTEN \"x\"");
        assert!(notify_query("c", &"x".repeat(8000)).is_err());
    }

    #[test]
    fn ssl_answers() {
        assert_eq!(ssl_response(b"S"), Ok(SslResponse::Accepted));
        assert_eq!(ssl_response(b"N"), Ok(SslResponse::Refused));
        assert_eq!(ssl_response(b""), Err(DecodeError::SslEmpty));
        assert_eq!(ssl_response(b"E"), Err(DecodeError::SslAnswer(b'E')));
        assert_eq!(ssl_response(b"S\x16"), Err(DecodeError::SslTrailing(1)));
    }

    fn session_bytes() -> Vec<u8> {
        let mut w = Vec::new();
        w.extend(frame(b'R', b"\0\0\0\x0aSCRAM-SHA-256\0\0"));
        w.extend(frame(b'R', b"\0\0\0\x0br=abc"));
        w.extend(frame(b'R', b"\0\0\0\x0cv=xyz"));
        w.extend(frame(b'R', &[0, 0, 0, 0]));
        w.extend(frame(b'R', &[0, 0, 0, 5, 9, 8, 7, 6]));
        w.extend(frame(b'R', &[0, 0, 0, 3]));
        w.extend(frame(b'S', b"server_version\x0015.8\0"));
        w.extend(frame(b'K', &[0, 0, 0, 42, 1, 2, 3, 4]));
        w.extend(frame(b'Z', b"I"));
        w.extend(frame(b'C', b"LISTEN\0"));
        w.extend(frame(b'A', b"\0\0\x01\x00ch\0muster1 hb a@h\0"));
        w.extend(frame(
            b'N',
            b"SWARNING\0VWARNING\0C01000\0Mcareful\0Hhint\0\0",
        ));
        w.extend(frame(b'I', b""));
        let mut t = vec![0, 1];
        t.extend_from_slice(b"x\0");
        t.extend_from_slice(&[0; 18]);
        w.extend(frame(b'T', &t));
        w.extend(frame(
            b'D',
            &[0, 2, 0, 0, 0, 1, b'7', 0xff, 0xff, 0xff, 0xff],
        ));
        w.extend(frame(b'G', &[0, 0, 0]));
        w.extend(frame(
            b'E',
            b"SFATAL\0VFATAL\0C28P01\0Mpassword authentication failed for user \"u\x1b\"\0Ddetail\0\0",
        ));
        w
    }

    fn session_messages() -> Vec<Backend> {
        vec![
            Backend::AuthenticationSasl {
                mechanisms: vec!["SCRAM-SHA-256".into()],
            },
            Backend::AuthenticationSaslContinue {
                data: b"r=abc".to_vec(),
            },
            Backend::AuthenticationSaslFinal {
                data: b"v=xyz".to_vec(),
            },
            Backend::AuthenticationOk,
            Backend::AuthenticationMd5Password { salt: [9, 8, 7, 6] },
            Backend::AuthenticationCleartextPassword,
            Backend::ParameterStatus {
                name: "server_version".into(),
                value: "15.8".into(),
            },
            Backend::BackendKeyData {
                pid: 42,
                secret: vec![1, 2, 3, 4],
            },
            Backend::ReadyForQuery {
                status: TransactionStatus::Idle,
            },
            Backend::CommandComplete {
                tag: "LISTEN".into(),
            },
            Backend::NotificationResponse {
                pid: 256,
                channel: "ch".into(),
                payload: "muster1 hb a@h".into(),
            },
            Backend::NoticeResponse(ServerMessage {
                severity: "WARNING".into(),
                code: "01000".into(),
                message: "careful".into(),
                detail: None,
                hint: Some("hint".into()),
            }),
            Backend::EmptyQueryResponse,
            Backend::RowDescription {
                columns: vec!["x".into()],
            },
            Backend::DataRow {
                values: vec![Some(b"7".to_vec()), None],
            },
            Backend::Other { tag: b'G', len: 3 },
            Backend::ErrorResponse(ServerMessage {
                severity: "FATAL".into(),
                code: "28P01".into(),
                message: "password authentication failed for user \"u\x1b\"".into(),
                detail: Some("detail".into()),
                hint: None,
            }),
        ]
    }

    #[test]
    fn decodes_a_session_whole_and_byte_by_byte() {
        let wire = session_bytes();
        let mut d = Decoder::new();
        d.push(&wire);
        assert_eq!(all(&mut d).unwrap(), session_messages());
        assert_eq!(d.buffered(), 0);
        let mut d = Decoder::new();
        let mut got = Vec::new();
        for b in &wire {
            d.push(std::slice::from_ref(b));
            got.extend(all(&mut d).unwrap());
        }
        assert_eq!(got, session_messages());
        let Some(Backend::ErrorResponse(e)) = got.last() else {
            panic!()
        };
        assert!(e.is_fatal());
        assert_eq!(
            e.to_string(),
            "FATAL 28P01: password authentication failed for user \"u\\u{1b}\""
        );
    }

    #[test]
    fn refuses_bad_frames() {
        // length < 4
        let mut d = Decoder::new();
        d.push(&[b'Z', 0, 0, 0, 3, b'I']);
        assert_eq!(
            d.next_message(),
            Err(DecodeError::BadLength { tag: b'Z', len: 3 })
        );
        assert_eq!(
            d.next_message(),
            Err(DecodeError::BadLength { tag: b'Z', len: 3 })
        );
        let mut d = Decoder::new();
        d.push(&[b'Z', 0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(
            d.next_message(),
            Err(DecodeError::BadLength { .. })
        ));
        // over the cap: refused as soon as the header is in, nothing of the body kept
        let mut d = Decoder::with_max_message(100);
        d.push(&frame(b'Z', b"I"));
        d.push(&[b'A', 0, 0, 0, 101]);
        d.push(&[0; 1000]);
        assert_eq!(
            d.next_message(),
            Ok(Some(Backend::ReadyForQuery {
                status: TransactionStatus::Idle
            }))
        );
        assert_eq!(
            d.next_message(),
            Err(DecodeError::TooLarge {
                tag: b'A',
                len: 101,
                max: 100
            })
        );
        assert!(d.buffered() <= 5);
        // a 2 GiB claim on a default decoder
        let mut d = Decoder::new();
        d.push(&[b'D', 0x7f, 0xff, 0xff, 0xff, 1, 2, 3]);
        assert!(matches!(
            d.next_message(),
            Err(DecodeError::TooLarge { .. })
        ));
        assert!(d.buffered() <= 5);
        // bodies that break their message's shape
        for (tag, body, want) in [
            (b'Z', &b"X"[..], DecodeError::BadStatus(b'X')),
            (b'Z', b"", DecodeError::Truncated { tag: b'Z' }),
            (
                b'Z',
                b"II",
                DecodeError::Trailing {
                    tag: b'Z',
                    extra: 1,
                },
            ),
            (b'R', &[0, 0, 0, 7], DecodeError::UnsupportedAuth(7)),
            (b'R', &[0, 0, 0, 5, 1], DecodeError::Truncated { tag: b'R' }),
            (
                b'R',
                &[0, 0, 0, 0, 1],
                DecodeError::Trailing {
                    tag: b'R',
                    extra: 1,
                },
            ),
            (b'C', b"LISTEN", DecodeError::Truncated { tag: b'C' }),
            (b'D', &[0xff, 0xff], DecodeError::Negative { tag: b'D' }),
            (
                b'D',
                &[0, 1, 0xff, 0xff, 0xff, 0xfe],
                DecodeError::Negative { tag: b'D' },
            ),
            (
                b'D',
                &[0, 1, 0, 0, 0, 9, 1],
                DecodeError::Truncated { tag: b'D' },
            ),
            (b'K', &[0, 0, 0, 1], DecodeError::Truncated { tag: b'K' }),
            (b'E', b"SERROR\0", DecodeError::Truncated { tag: b'E' }),
        ] {
            let mut d = Decoder::new();
            d.push(&frame(tag, body));
            d.push(&frame(b'Z', b"I"));
            assert_eq!(d.next_message(), Err(want.clone()), "{body:?}");
            assert_eq!(d.next_message(), Err(want), "sticky");
        }
    }

    #[test]
    fn payloads() {
        let a = n("a@10.0.0.1");
        let p = encode_payload(Kind::Heartbeat, &a);
        assert_eq!(p, "muster1 hb a@10.0.0.1");
        let got = decode_payload(&p, "ch", None).unwrap();
        assert_eq!(
            (got.kind, got.node, got.format, got.stamp),
            (Kind::Heartbeat, a.clone(), Format::Plain, None)
        );
        for kind in [Kind::Sync, Kind::Goodbye] {
            assert_eq!(
                decode_payload(&encode_payload(kind, &a), "ch", None)
                    .unwrap()
                    .kind,
                kind
            );
        }

        let key = PayloadKey::new(b"s3cret");
        let s = encode_signed_payload(&key, "ch", Kind::Goodbye, &a, 1_700_000_000_123, [7; 8]);
        assert!(s.starts_with("muster1s bye a@10.0.0.1 1700000000123 0707070707070707 "));
        let got = decode_payload(&s, "ch", Some(&key)).unwrap();
        assert_eq!(got.kind, Kind::Goodbye);
        assert_eq!(got.format, Format::Signed);
        assert_eq!(
            got.stamp,
            Some(Stamp {
                unix_ms: 1_700_000_000_123,
                nonce: [7; 8]
            })
        );
        assert_eq!(
            decode_payload(&s, "other", Some(&key)),
            Err(PayloadError::BadMac)
        );
        assert_eq!(
            decode_payload(&s, "ch", Some(&PayloadKey::new(b"other"))),
            Err(PayloadError::BadMac)
        );
        let forged = s.replace("bye", "hb ");
        assert_eq!(
            decode_payload(&forged, "ch", Some(&key)),
            Err(PayloadError::BadMac)
        );
        assert_eq!(decode_payload(&s, "ch", None), Err(PayloadError::NoSecret));
        assert_eq!(
            decode_payload(&p, "ch", Some(&key)),
            Err(PayloadError::Unsigned)
        );
        assert_eq!(
            decode_payload("a@h", "ch", Some(&key)),
            Err(PayloadError::Unsigned)
        );
        assert_eq!(
            decode_payload("muster2 hb a@h", "ch", None),
            Err(PayloadError::Version("muster2".into()))
        );
        assert_eq!(
            decode_payload("muster2s hb a@h 1 00 x", "ch", Some(&key)),
            Err(PayloadError::Version("muster2s".into()))
        );
        assert!(matches!(
            decode_payload("muster1 hb a@h extra", "ch", None),
            Err(PayloadError::Malformed(_))
        ));
        assert!(matches!(
            decode_payload("muster1 hb a@@h", "ch", None),
            Err(PayloadError::BadNode(_))
        ));
        assert!(matches!(
            decode_payload(&"x".repeat(1025), "ch", None),
            Err(PayloadError::TooLarge(1025))
        ));

        // libcluster_postgres (Supabase's hex package) and Supabase Realtime
        let got = decode_payload("app@10.0.0.2", "ch", None).unwrap();
        assert_eq!(
            (got.kind, got.format),
            (Kind::Heartbeat, Format::Libcluster)
        );
        let got = decode_payload("sync::app@10.0.0.2", "ch", None).unwrap();
        assert_eq!((got.kind, got.format), (Kind::Sync, Format::Realtime));
        assert_eq!(got.node, n("app@10.0.0.2"));
        assert!(decode_payload("heartbeat::app@10.0.0.2", "ch", None).is_ok());
        assert!(decode_payload("bye::app@10.0.0.2", "ch", None).is_err());
        let got = decode_payload("app@::1", "ch", None).unwrap();
        assert_eq!((got.node, got.format), (n("app@::1"), Format::Libcluster));
        assert!(decode_payload("", "ch", None).is_err());
        assert!(decode_payload("hello world", "ch", None).is_err());
    }

    proptest! {
        #[test]
        fn decoder_never_panics_and_ignores_chunking(
            wire in proptest::collection::vec(any::<u8>(), 0..2048),
            cuts in proptest::collection::vec(1usize..64, 1..64),
        ) {
            let mut whole = Decoder::with_max_message(512);
            whole.push(&wire);
            let mut a = Vec::new();
            let ea = loop {
                match whole.next_message() {
                    Ok(Some(m)) => a.push(m),
                    Ok(None) => break None,
                    Err(e) => break Some(e),
                }
            };
            let mut split = Decoder::with_max_message(512);
            let mut b = Vec::new();
            let mut rest = &wire[..];
            let mut i = 0;
            let mut eb = None;
            while !rest.is_empty() {
                let n = cuts[i % cuts.len()].min(rest.len());
                i += 1;
                split.push(&rest[..n]);
                rest = &rest[n..];
                prop_assert!(split.buffered() <= 512 + 1 + 64);
                loop {
                    match split.next_message() {
                        Ok(Some(m)) => b.push(m),
                        Ok(None) => break,
                        Err(e) => { eb = Some(e); break; }
                    }
                }
                if eb.is_some() { break; }
            }
            prop_assert_eq!(a, b);
            prop_assert_eq!(ea, eb);
        }

        #[test]
        fn session_survives_any_chunking(cuts in proptest::collection::vec(1usize..40, 1..32)) {
            let wire = session_bytes();
            let mut d = Decoder::new();
            let mut got = Vec::new();
            let mut rest = &wire[..];
            let mut i = 0;
            while !rest.is_empty() {
                let n = cuts[i % cuts.len()].min(rest.len());
                i += 1;
                d.push(&rest[..n]);
                rest = &rest[n..];
                got.extend(all(&mut d).unwrap());
            }
            prop_assert_eq!(got, session_messages());
        }

        #[test]
        fn scram_and_payloads_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut c = ScramClient::new("pw", "abc").unwrap();
            c.client_first();
            let _ = c.handle_server_first(&data);
            let mut c = rfc_client_after_first();
            let _ = c.handle_server_final(&data);
            let text = String::from_utf8_lossy(&data);
            let _ = decode_payload(&text, "ch", None);
            let _ = decode_payload(&text, "ch", Some(&PayloadKey::new(b"k")));
            let _ = crate::proto::base64::decode(&text, 64);
        }

        #[test]
        fn payload_round_trip(name in "[a-z][a-z0-9_-]{0,20}", host in "[a-z]{1,10}(\\.[a-z]{1,10}){0,3}",
                              ms in any::<u64>(), nonce in any::<[u8; 8]>(), k in 0usize..3) {
            let node = n(&format!("{name}@{host}"));
            let kind = [Kind::Heartbeat, Kind::Sync, Kind::Goodbye][k];
            let key = PayloadKey::new(b"k");
            let s = encode_signed_payload(&key, "chan", kind, &node, ms, nonce);
            let got = decode_payload(&s, "chan", Some(&key)).unwrap();
            prop_assert_eq!(got, Notice { kind, node: node.clone(), format: Format::Signed,
                                          stamp: Some(Stamp { unix_ms: ms, nonce }) });
            let got = decode_payload(&encode_payload(kind, &node), "chan", None).unwrap();
            prop_assert_eq!(got.node, node);
        }

        #[test]
        fn base64_round_trip(data in proptest::collection::vec(any::<u8>(), 0..100)) {
            prop_assert_eq!(crate::proto::base64::decode(&crate::proto::base64::encode(&data), 100), Some(data));
        }
    }
}
