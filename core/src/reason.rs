//! Why things fail or end, as values an application can match on.
//!
//! Every reason has a readable [`Display`](core::fmt::Display) (the text muster has always
//! printed) and a stable machine [`code`](Failure::code), which the `muster` tool writes
//! beside the text in its JSON output. The enums are `#[non_exhaustive]`: match the cases you
//! care about and keep a catch-all arm.
//!
//! - [`Failure`]: an I/O request or a connector call failed (adapter → core, connector →
//!   cluster). Its [`FailureKind`] is what to match on; its text says what and where.
//! - [`ConnectError`], [`DisconnectReason`], [`DiscoveryError`], [`Rejection`]: the reasons
//!   carried by [`Event`](crate::Event)s.

use core::fmt;
use core::time::Duration;
use std::borrow::Cow;

/// Text that came from the network, made safe to print in an event, a log line or a
/// terminal: control characters (escape sequences, line breaks) are written as escapes, as
/// `str::escape_debug` writes them; everything else is kept.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// What kind of failure a [`Failure`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum FailureKind {
    /// The peer refused: a connection refused, a DNS server answering REFUSED.
    Refused,
    /// No route to the host or network.
    Unreachable,
    /// The connection was reset or aborted, or a write found it broken.
    Reset,
    /// The peer closed the connection.
    Closed,
    /// A deadline passed.
    TimedOut,
    /// What was asked for does not exist: a file, a DNS name, a node's EPMD registration.
    NotFound,
    /// The operating system refused permission.
    PermissionDenied,
    /// The local address is in use or not available.
    AddrInUse,
    /// The TLS handshake or the certificate check failed.
    Tls,
    /// The peer does not speak the protocol expected, or broke it.
    Protocol,
    /// The peer turned this node away: a wrong cookie, a name in use, not allowed.
    Rejected,
    /// A reply was larger than allowed.
    TooLarge,
    /// This host ran out of something: file descriptors, memory.
    Resources,
    /// The adapter or connector cannot do what was asked.
    Unsupported,
    /// Anything else.
    Other,
}

impl FailureKind {
    /// The stable machine code: `refused`, `unreachable`, `reset`, `closed`, `timed_out`,
    /// `not_found`, `permission_denied`, `addr_in_use`, `tls`, `protocol`, `rejected`,
    /// `too_large`, `resources`, `unsupported`, `other`.
    pub fn code(self) -> &'static str {
        match self {
            FailureKind::Refused => "refused",
            FailureKind::Unreachable => "unreachable",
            FailureKind::Reset => "reset",
            FailureKind::Closed => "closed",
            FailureKind::TimedOut => "timed_out",
            FailureKind::NotFound => "not_found",
            FailureKind::PermissionDenied => "permission_denied",
            FailureKind::AddrInUse => "addr_in_use",
            FailureKind::Tls => "tls",
            FailureKind::Protocol => "protocol",
            FailureKind::Rejected => "rejected",
            FailureKind::TooLarge => "too_large",
            FailureKind::Resources => "resources",
            FailureKind::Unsupported => "unsupported",
            FailureKind::Other => "other",
        }
    }

    /// The kind of an operating-system error.
    pub fn of_io(e: &std::io::Error) -> FailureKind {
        use std::io::ErrorKind as K;
        // EMFILE and ENFILE: out of descriptors, which std reports as uncategorized.
        #[cfg(unix)]
        if matches!(e.raw_os_error(), Some(23 | 24)) {
            return FailureKind::Resources;
        }
        match e.kind() {
            K::ConnectionRefused => FailureKind::Refused,
            K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::NotConnected => {
                FailureKind::Reset
            }
            K::HostUnreachable | K::NetworkUnreachable | K::NetworkDown => FailureKind::Unreachable,
            K::TimedOut => FailureKind::TimedOut,
            K::NotFound => FailureKind::NotFound,
            K::PermissionDenied => FailureKind::PermissionDenied,
            K::AddrInUse | K::AddrNotAvailable => FailureKind::AddrInUse,
            K::UnexpectedEof => FailureKind::Closed,
            K::OutOfMemory => FailureKind::Resources,
            K::Unsupported => FailureKind::Unsupported,
            K::InvalidData => FailureKind::Protocol,
            _ => FailureKind::Other,
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A failed request or connector call: its [kind](FailureKind), to match on, and a text that
/// says what failed and where (`10.0.0.2:4369: Connection refused (os error 111)`).
///
/// Connectors build one from anything textual (`"no route".into()` is a
/// [`FailureKind::Other`]), from an [`std::io::Error`] (its kind mapped), or with
/// [`Failure::new`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Failure {
    kind: FailureKind,
    text: String,
}

impl Failure {
    /// A failure of `kind`, described by `text`.
    pub fn new(kind: FailureKind, text: impl Into<String>) -> Self {
        Failure {
            kind,
            text: text.into(),
        }
    }

    /// A failure of kind [`FailureKind::Other`].
    pub fn other(text: impl Into<String>) -> Self {
        Failure::new(FailureKind::Other, text)
    }

    /// A deadline that passed, described by `text`.
    pub fn timed_out(text: impl Into<String>) -> Self {
        Failure::new(FailureKind::TimedOut, text)
    }

    /// An operating-system error met while doing `what` (an address, a path): the text is
    /// `what: error`.
    pub fn io(what: impl fmt::Display, e: &std::io::Error) -> Self {
        Failure::new(FailureKind::of_io(e), format!("{what}: {e}"))
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> FailureKind {
        self.kind
    }

    /// The stable machine code of its kind.
    pub fn code(&self) -> &'static str {
        self.kind.code()
    }

    /// The readable text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The same failure, its text prefixed with `context: `.
    pub fn context(self, context: impl fmt::Display) -> Self {
        Failure {
            kind: self.kind,
            text: format!("{context}: {}", self.text),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for Failure {}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::new(FailureKind::of_io(&e), e.to_string())
    }
}

impl From<String> for Failure {
    fn from(text: String) -> Self {
        Failure::other(text)
    }
}

impl From<&str> for Failure {
    fn from(text: &str) -> Self {
        Failure::other(text)
    }
}

/// Why a connect failed ([`Event::ConnectFailed`](crate::Event::ConnectFailed)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectError {
    /// No answer within the topology's `connect_timeout`.
    TimedOut {
        /// The deadline the connect had.
        after: Duration,
    },
    /// The connector ignored the request: this node is not part of a network (Erlang's
    /// `:ignored`).
    NotPartOfNetwork,
    /// The connector (or the Erlang node) failed to connect: its reason.
    Failed(Failure),
}

impl ConnectError {
    /// The stable machine code: `timed_out`, `not_part_of_network`, or the failure's code.
    pub fn code(&self) -> &'static str {
        match self {
            ConnectError::TimedOut { .. } => "timed_out",
            ConnectError::NotPartOfNetwork => "not_part_of_network",
            ConnectError::Failed(f) => f.code(),
        }
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::TimedOut { after } => {
                write!(f, "timed out after {} ms", after.as_millis())
            }
            ConnectError::NotPartOfNetwork => f.write_str("not part of network"),
            ConnectError::Failed(e) => e.fmt(f),
        }
    }
}

/// Why a node is no longer connected ([`Event::Disconnected`](crate::Event::Disconnected)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// This cluster disconnected it: no topology wants it any more.
    Pruned,
    /// This cluster asked to disconnect it and the connector had no connection.
    AlreadyDisconnected,
    /// The connector ignored the disconnect: this node is not part of a network.
    NotPartOfNetwork,
    /// This cluster disconnected it because this node is leaving.
    Leaving,
    /// The connector's list of connected nodes no longer names it.
    NotListed,
    /// The connection went away on its own: the connector's (or the link's) reason.
    Dropped(Failure),
}

impl DisconnectReason {
    /// The stable machine code: `pruned`, `already_disconnected`, `not_part_of_network`,
    /// `leaving`, `not_listed`, or `dropped`.
    pub fn code(&self) -> &'static str {
        match self {
            DisconnectReason::Pruned => "pruned",
            DisconnectReason::AlreadyDisconnected => "already_disconnected",
            DisconnectReason::NotPartOfNetwork => "not_part_of_network",
            DisconnectReason::Leaving => "leaving",
            DisconnectReason::NotListed => "not_listed",
            DisconnectReason::Dropped(_) => "dropped",
        }
    }
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DisconnectReason::Pruned => f.write_str("pruned"),
            DisconnectReason::AlreadyDisconnected => f.write_str("already disconnected"),
            DisconnectReason::NotPartOfNetwork => f.write_str("not part of network"),
            DisconnectReason::Leaving => f.write_str("leaving"),
            DisconnectReason::NotListed => f.write_str("not listed by the connector"),
            DisconnectReason::Dropped(e) => e.fmt(f),
        }
    }
}

/// Why a discovery attempt failed ([`Event::DiscoveryFailed`](crate::Event::DiscoveryFailed)).
/// The topology keeps its last good set whatever the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// A request to the source of nodes failed (connect, TLS, a read, a DNS lookup, its
    /// deadline): what was asked, and the failure.
    Request {
        /// What was asked: a URL, `lookup of NAME`, a file, `EPMD on HOST:PORT`.
        source: String,
        /// Why it failed.
        failure: Failure,
    },
    /// The source answered with an error status (HTTP).
    Status {
        /// What was asked.
        source: String,
        /// The status code.
        status: u16,
        /// The status line and the server's message, [escaped](escape).
        message: String,
    },
    /// The source answered with something that does not name nodes: a malformed reply, or
    /// an invalid node name in it.
    Invalid {
        /// What was asked.
        source: String,
        /// What is wrong with the reply.
        detail: String,
    },
    /// This node cannot discover as configured until something changes: it has no name, no
    /// CA to trust, no namespace, no wall clock.
    Setup(String),
    /// Several sources failed in one poll (ErlangHosts asks every host).
    Several(Vec<DiscoveryError>),
    /// Anything else, in the strategy's words.
    Other(String),
}

impl DiscoveryError {
    /// A request to `source` that failed with `failure`.
    pub fn request(source: impl Into<String>, failure: Failure) -> Self {
        DiscoveryError::Request {
            source: source.into(),
            failure,
        }
    }

    /// A reply from `source` that is wrong as `detail` says.
    pub fn invalid(source: impl Into<String>, detail: impl fmt::Display) -> Self {
        DiscoveryError::Invalid {
            source: source.into(),
            detail: detail.to_string(),
        }
    }

    /// The stable machine code: the failure's code for a failed request (`refused`,
    /// `timed_out`, `tls`, `not_found`, ...), `http_status`, `invalid_response`, `setup`,
    /// `several`, or `other`.
    pub fn code(&self) -> &'static str {
        match self {
            DiscoveryError::Request { failure, .. } => failure.code(),
            DiscoveryError::Status { .. } => "http_status",
            DiscoveryError::Invalid { .. } => "invalid_response",
            DiscoveryError::Setup(_) => "setup",
            DiscoveryError::Several(_) => "several",
            DiscoveryError::Other(_) => "other",
        }
    }
}

impl fmt::Display for DiscoveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiscoveryError::Request { source, failure } => {
                // Adapters name the address in their text; say the source once.
                if failure.text().contains(source.as_str()) {
                    failure.fmt(f)
                } else {
                    write!(f, "{source}: {failure}")
                }
            }
            DiscoveryError::Status {
                source,
                status,
                message,
            } => {
                write!(f, "{source}: HTTP {status}")?;
                if !message.is_empty() {
                    write!(f, " {message}")?;
                }
                Ok(())
            }
            DiscoveryError::Invalid { source, detail } => write!(f, "{source}: {detail}"),
            DiscoveryError::Setup(s) | DiscoveryError::Other(s) => f.write_str(s),
            DiscoveryError::Several(all) => {
                for (i, e) in all.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    e.fmt(f)?;
                }
                Ok(())
            }
        }
    }
}

impl From<String> for DiscoveryError {
    fn from(s: String) -> Self {
        DiscoveryError::Other(s)
    }
}

impl From<&str> for DiscoveryError {
    fn from(s: &str) -> Self {
        DiscoveryError::Other(s.to_owned())
    }
}

/// Why input from the network was dropped ([`Event::Rejected`](crate::Event::Rejected)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// It could not be read: too large, too short, not the protocol's framing.
    Malformed(String),
    /// It failed authentication: forged, corrupted, or sealed with another secret.
    Unauthenticated(String),
    /// It speaks another mode or version of the protocol than this topology.
    Mismatch(String),
    /// A replay, or a timestamp outside the accepted window.
    Replayed(String),
    /// It named a node that is not a valid node name.
    InvalidNode(String),
    /// It would pass a limit (`max_nodes`, the handshakes in progress).
    OverLimit(String),
    /// It did not complete: a handshake or request that stopped or came too slowly.
    Incomplete(String),
}

impl Rejection {
    /// The stable machine code: `malformed`, `unauthenticated`, `mismatch`, `replayed`,
    /// `invalid_node`, `over_limit` or `incomplete`.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::Malformed(_) => "malformed",
            Rejection::Unauthenticated(_) => "unauthenticated",
            Rejection::Mismatch(_) => "mismatch",
            Rejection::Replayed(_) => "replayed",
            Rejection::InvalidNode(_) => "invalid_node",
            Rejection::OverLimit(_) => "over_limit",
            Rejection::Incomplete(_) => "incomplete",
        }
    }

    /// The readable text.
    pub fn text(&self) -> &str {
        match self {
            Rejection::Malformed(s)
            | Rejection::Unauthenticated(s)
            | Rejection::Mismatch(s)
            | Rejection::Replayed(s)
            | Rejection::InvalidNode(s)
            | Rejection::OverLimit(s)
            | Rejection::Incomplete(s) => s,
        }
    }

    /// The same rejection with `more` appended to its text.
    pub fn with_note(mut self, more: impl fmt::Display) -> Self {
        let s = match &mut self {
            Rejection::Malformed(s)
            | Rejection::Unauthenticated(s)
            | Rejection::Mismatch(s)
            | Rejection::Replayed(s)
            | Rejection::InvalidNode(s)
            | Rejection::OverLimit(s)
            | Rejection::Incomplete(s) => s,
        };
        use fmt::Write;
        let _ = write!(s, " {more}");
        self
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_keep_their_kind_and_text() {
        let e = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let f = Failure::io("10.0.0.2:4369", &e);
        assert_eq!(f.kind(), FailureKind::Refused);
        assert_eq!(f.code(), "refused");
        assert!(f.to_string().starts_with("10.0.0.2:4369: "), "{f}");
        let emfile = std::io::Error::from_raw_os_error(24);
        assert_eq!(FailureKind::of_io(&emfile), FailureKind::Resources);
    }

    #[test]
    fn network_text_is_escaped_before_it_is_printed() {
        assert_eq!(escape("forbidden"), "forbidden");
        assert_eq!(escape("a\u{1b}[2Jb\nc"), "a\\u{1b}[2Jb\\nc");
        assert!(!escape("x\u{7}\r\t").chars().any(char::is_control));
    }

    #[test]
    fn reasons_read_as_before() {
        assert_eq!(
            ConnectError::TimedOut {
                after: Duration::from_millis(7000)
            }
            .to_string(),
            "timed out after 7000 ms"
        );
        assert_eq!(DisconnectReason::Pruned.to_string(), "pruned");
        let e = DiscoveryError::request(
            "10.0.0.2:4369",
            Failure::new(FailureKind::Refused, "10.0.0.2:4369: connection refused"),
        );
        assert_eq!(e.to_string(), "10.0.0.2:4369: connection refused");
        assert_eq!(e.code(), "refused");
        let s = DiscoveryError::Status {
            source: "https://k8s/api".into(),
            status: 403,
            message: "Forbidden".into(),
        };
        assert_eq!(s.to_string(), "https://k8s/api: HTTP 403 Forbidden");
    }
}
