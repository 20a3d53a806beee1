//! What the core asks the adapter to do, and what the adapter tells the core back.
//!
//! Every request carries a [`Token`]; the adapter answers with the same token. Requests go out
//! through [`Output::Request`]; answers come back through [`Input::Answer`].

use bytes::Bytes;
use core::fmt;
use core::time::Duration;
use std::net::SocketAddr;

use crate::event::Event;
use crate::node::{Node, NodeName};
use crate::reason::Failure;
use crate::time::Instant;

/// Identifies one request; the answer carries it back. Unique for the life of a cluster.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Token(pub u64);

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Everything the core gives the adapter, one at a time, from `poll_output`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Output {
    /// Perform `request` and answer it with `token`.
    Request {
        /// Echo this in the answer.
        token: Token,
        /// What to do.
        request: Request,
    },
    /// Something happened that the application may want to know.
    Event(Event),
}

/// An I/O request. The adapter performs it and answers with [`Input::Answer`].
///
/// New kinds of request are added as strategies need them; adapters answer a kind they do not
/// know with [`Answer::Failed`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Request {
    /// Ask the connector to connect to `node`. Answers: [`Answer::Connected`],
    /// [`Answer::Ignored`] (this node is not part of a network), [`Answer::Failed`],
    /// [`Answer::TimedOut`]. The core stops waiting at `deadline` in any case.
    Connect {
        /// The node, with its address hint if the strategy had one.
        node: Node,
        /// Give up at this time.
        deadline: Instant,
    },
    /// Ask the connector to disconnect `node`. Answers: [`Answer::Disconnected`],
    /// [`Answer::NotConnected`], [`Answer::Ignored`], [`Answer::Failed`],
    /// [`Answer::TimedOut`]. The core stops waiting at `deadline` in any case.
    Disconnect {
        /// The node.
        node: NodeName,
        /// Give up at this time.
        deadline: Instant,
    },
    /// Ask the connector for the nodes connected now. Answer: [`Answer::Nodes`] (or
    /// [`Answer::Failed`], or [`Answer::TimedOut`] at `deadline`).
    ListNodes {
        /// Give up at this time.
        deadline: Instant,
    },
    /// Read a whole file. Answer: one [`Answer::Data`] with its contents, or
    /// [`Answer::Failed`] (or [`Answer::TimedOut`] at `deadline`).
    ReadFile {
        /// The path, as given in the configuration.
        path: String,
        /// Give up at this time.
        deadline: Instant,
    },
    /// Talk to a service over a stream: connect, write `send`, then deliver what comes back.
    Exchange(Exchange),
    /// Open a UDP socket. Answer: [`Answer::Opened`] with the bound address, or
    /// [`Answer::Failed`] naming the address, the interface and the OS error. From then on,
    /// datagrams arriving on it come as [`Input::Datagram`] with this request's token, and a
    /// failure to send on it as [`Answer::Failed`] with this token.
    OpenUdp(UdpOptions),
    /// Send a datagram on the socket opened with `socket`. No answer on success (a datagram
    /// is unreliable anyway); a failure is answered on the socket's token.
    SendDatagram {
        /// The token of the `OpenUdp` request.
        socket: Token,
        /// The destination; a host name is resolved by the adapter.
        to: Endpoint,
        /// The datagram.
        data: Bytes,
    },
    /// Close the socket opened with `socket`. No answer. It may come before the `OpenUdp`
    /// was answered: the socket is then closed as soon as it is open, or not opened.
    CloseUdp {
        /// The token of the `OpenUdp` request.
        socket: Token,
    },
    /// Stop the request `token` (a file read, an [`Exchange`], a stream, a listener): the core
    /// wants nothing more from it and drops whatever still comes; a stream writes what was
    /// queued on it, then closes; a listener closes.
    /// No answer. An adapter that cannot stop it may ignore this; the request's own deadline
    /// still ends it.
    Cancel {
        /// The token of the request to stop.
        token: Token,
    },
    /// Listen for TCP connections on `bind`. Answer: [`Answer::Opened`] with the bound
    /// address, or [`Answer::Failed`]. Connections are taken with [`Request::Accept`]; a
    /// [`Request::Cancel`] with this token closes the listener.
    Listen {
        /// The address to listen on (port 0: any).
        bind: SocketAddr,
    },
    /// Take the next connection on the listener opened with `listener`. Answer:
    /// [`Answer::Accepted`] with the peer's address when one comes; from then on this token
    /// is that stream, as for [`Request::OpenStream`].
    Accept {
        /// The token of the `Listen` request.
        listener: Token,
    },
    /// Open a TCP stream that stays open. Answer: [`Answer::Opened`] with the peer's address
    /// once connected ([`Answer::Failed`], or [`Answer::TimedOut`] at `deadline`, if not);
    /// then every chunk read as [`Answer::Data`] until [`Answer::Closed`] (the peer closed)
    /// or [`Answer::Failed`]. Bytes go out with [`Request::Write`]; [`Request::Cancel`]
    /// closes it.
    OpenStream {
        /// Where to connect.
        to: Endpoint,
        /// Give up connecting (and, with `tls`, negotiating and the handshake) at this time;
        /// the stream itself has no deadline.
        deadline: Instant,
        /// Wrap the stream in TLS once connected. An adapter that cannot answers
        /// [`Answer::Failed`] with [`FailureKind::Unsupported`](crate::FailureKind).
        tls: Option<StreamTls>,
    },
    /// Write `data` to the stream `stream` (opened or accepted), after whatever was written
    /// before. No answer on success; a failure is answered on the stream's token with
    /// [`Answer::Failed`], and the stream is then closed.
    Write {
        /// The token of the stream.
        stream: Token,
        /// The bytes.
        data: Bytes,
    },
}

/// How to open a UDP socket.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UdpOptions {
    /// The address to bind.
    pub bind: SocketAddr,
    /// `SO_REUSEADDR` and `SO_REUSEPORT` (with the platform's own constants), so several
    /// nodes on one host share the port.
    pub reuse: bool,
    /// `SO_BROADCAST`.
    pub broadcast: bool,
    /// Multicast membership and sending options, if any.
    pub multicast: Option<Multicast>,
    /// Connect the socket to this peer after binding: it then receives only the peer's
    /// datagrams, and an ICMP port-unreachable from the peer surfaces as a failure on the
    /// socket's token (kind `Refused`) instead of silence until a deadline.
    pub connect: Option<SocketAddr>,
}

impl UdpOptions {
    /// Binds `bind`, with address and port reuse, no broadcast and no multicast.
    pub fn new(bind: SocketAddr) -> Self {
        UdpOptions {
            bind,
            reuse: true,
            broadcast: false,
            multicast: None,
            connect: None,
        }
    }

    /// Connects the socket to `peer`; see [`UdpOptions::connect`].
    pub fn connected_to(mut self, peer: SocketAddr) -> Self {
        self.connect = Some(peer);
        self
    }

    /// Sets `SO_BROADCAST`.
    pub fn broadcast(mut self, yes: bool) -> Self {
        self.broadcast = yes;
        self
    }

    /// Joins a multicast group and sends to it as `m` says.
    pub fn multicast(mut self, m: Multicast) -> Self {
        self.multicast = Some(m);
        self
    }
}

/// Multicast options of a UDP socket: the group to join, on which interface, and how to send.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Multicast {
    /// The group to join (IPv4 or IPv6).
    pub group: std::net::IpAddr,
    /// The interface to join it on and to send from.
    pub interface: MulticastInterface,
    /// TTL (IPv4) or hop limit (IPv6) of sent datagrams.
    pub ttl: u32,
    /// Whether this host's own sockets receive what it sends.
    pub loopback: bool,
}

impl Multicast {
    /// Group `group` on `interface`, TTL 1, loopback on (libcluster's settings).
    pub fn new(group: std::net::IpAddr, interface: MulticastInterface) -> Self {
        Multicast {
            group,
            interface,
            ttl: 1,
            loopback: true,
        }
    }

    /// Sets the TTL.
    pub fn ttl(mut self, ttl: u32) -> Self {
        self.ttl = ttl;
        self
    }
}

/// Which interface a multicast group is joined on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MulticastInterface {
    /// Let the system choose (the default route's interface).
    Default,
    /// An IPv4 interface, by one of its addresses.
    V4(std::net::Ipv4Addr),
    /// An interface by index (IPv6).
    Index(u32),
    /// An interface by name, e.g. `eth0` (IPv6; the adapter looks up its index).
    Name(String),
}

impl fmt::Display for MulticastInterface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MulticastInterface::Default => f.write_str("the default interface"),
            MulticastInterface::V4(a) => write!(f, "interface {a}"),
            MulticastInterface::Index(i) => write!(f, "interface #{i}"),
            MulticastInterface::Name(n) => write!(f, "interface {n}"),
        }
    }
}

/// A stream exchange: connect to `to` (through TLS when `tls` says so), write `send`, then
/// deliver every chunk that comes back as [`Answer::Data`] until the peer closes
/// ([`Answer::Closed`]), `max_reply` bytes have come ([`Answer::Failed`]), or `deadline` passes
/// ([`Answer::TimedOut`]). A TLS handshake or verification failure is [`Answer::Failed`] and
/// nothing is written.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Exchange {
    /// Where to connect.
    pub to: Endpoint,
    /// The bytes to write once connected.
    pub send: Bytes,
    /// Give up at this time.
    pub deadline: Instant,
    /// The most bytes to accept in reply.
    pub max_reply: usize,
    /// Wrap the stream in TLS.
    pub tls: Option<Tls>,
}

/// TLS on a long-lived stream ([`Request::OpenStream`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamTls {
    /// The server's name and what its certificate is verified against.
    pub tls: Tls,
    /// What is said in the clear before the handshake, if the protocol negotiates TLS
    /// (PostgreSQL's `SSLRequest`): write `send`, read one byte; the handshake starts if it
    /// is `accept`, and otherwise the open fails ([`FailureKind::Refused`](crate::FailureKind),
    /// naming the byte).
    pub negotiate: Option<(Bytes, u8)>,
}

impl StreamTls {
    /// TLS from the first byte.
    pub fn new(tls: Tls) -> Self {
        StreamTls {
            tls,
            negotiate: None,
        }
    }

    /// TLS after writing `send` and reading `accept` back.
    pub fn negotiated(tls: Tls, send: Bytes, accept: u8) -> Self {
        StreamTls {
            tls,
            negotiate: Some((send, accept)),
        }
    }
}

/// TLS for an [`Exchange`].
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Tls {
    /// The name the server's certificate must be valid for, also sent as SNI (an IP address
    /// is matched against the certificate's IP addresses and sends no SNI).
    pub server_name: String,
    /// What the server's certificate is checked against.
    pub trust: Trust,
    /// The certificate this client presents when the server asks for one (mutual TLS, such
    /// as etcd's `--client-cert-auth`); none by default.
    pub identity: Option<Identity>,
}

/// A client certificate chain and its private key, both PEM (the key PKCS#8, PKCS#1 or
/// SEC1), for servers that authenticate clients by certificate. Its `Debug` never shows the
/// key.
#[derive(Clone, PartialEq, Eq)]
pub struct Identity {
    /// The certificate chain, the client's own certificate first.
    pub cert_pem: Bytes,
    /// The private key of the first certificate.
    pub key_pem: Bytes,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("cert_pem", &format_args!("{} bytes", self.cert_pem.len()))
            .field("key_pem", &format_args!("(hidden)"))
            .finish()
    }
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let trust = match &self.trust {
            Trust::CaPem(pem) => format!("CA PEM, {} bytes", pem.len()),
            Trust::InsecureSkipVerify => "none (insecure_skip_tls_verify)".to_owned(),
            Trust::System => "the system's CA bundle".to_owned(),
        };
        f.debug_struct("Tls")
            .field("server_name", &self.server_name)
            .field("trust", &trust)
            .field("identity", &self.identity)
            .finish()
    }
}

/// What a TLS server's certificate chain is verified against.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Trust {
    /// These CA certificates (PEM), and no others.
    CaPem(Bytes),
    /// Nothing: any certificate is accepted. Only when a configuration says so in so many
    /// words; anyone on the path can then read what is sent.
    InsecureSkipVerify,
    /// The host's own CA bundle (for public services such as AWS's APIs): the adapter reads
    /// `SSL_CERT_FILE`, else the first of the usual system bundles
    /// (`/etc/ssl/certs/ca-certificates.crt`, `/etc/pki/tls/certs/ca-bundle.crt`,
    /// `/etc/ssl/cert.pem`, ...), and fails the connection naming them when none is there.
    System,
}

impl Tls {
    /// TLS to `server_name`, verified against the CA certificates in `ca_pem`.
    pub fn verified(server_name: impl Into<String>, ca_pem: Bytes) -> Self {
        Tls {
            server_name: server_name.into(),
            trust: Trust::CaPem(ca_pem),
            identity: None,
        }
    }

    /// TLS to `server_name`, verified against the host's CA bundle ([`Trust::System`]).
    pub fn system(server_name: impl Into<String>) -> Self {
        Tls {
            server_name: server_name.into(),
            trust: Trust::System,
            identity: None,
        }
    }

    /// TLS to `server_name` that accepts any certificate.
    pub fn insecure(server_name: impl Into<String>) -> Self {
        Tls {
            server_name: server_name.into(),
            trust: Trust::InsecureSkipVerify,
            identity: None,
        }
    }

    /// Presents `identity` to a server that asks for a client certificate.
    pub fn with_identity(mut self, identity: Identity) -> Self {
        self.identity = Some(identity);
        self
    }
}

impl Exchange {
    /// A plain TCP exchange.
    pub fn tcp(to: Endpoint, send: Bytes, deadline: Instant) -> Self {
        Exchange {
            to,
            send,
            deadline,
            max_reply: 32 * 1024 * 1024,
            tls: None,
        }
    }

    /// Runs the exchange through TLS.
    pub fn tls(mut self, tls: Tls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Limits the reply to `max` bytes.
    pub fn max_reply(mut self, max: usize) -> Self {
        self.max_reply = max;
        self
    }
}

/// Where a stream exchange connects.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Endpoint {
    /// An address.
    Addr(SocketAddr),
    /// A host name and port, resolved by the adapter.
    Host {
        /// The host name.
        host: String,
        /// The port.
        port: u16,
    },
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Addr(a) => write!(f, "{a}"),
            Endpoint::Host { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

/// Everything the adapter tells the core, through `handle_input`.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Input<'a> {
    /// The answer to the request with `token`. A request may get several answers (chunks of
    /// an exchange); an answer whose token the core no longer waits for is ignored and
    /// counted in `Metrics::stale_answers`.
    Answer {
        /// The request's token.
        token: Token,
        /// What happened.
        answer: Answer<'a>,
    },
    /// The connector noticed, on its own, that a connection to `node` went away.
    NodeDown {
        /// The node (as text; unknown or invalid names are ignored).
        node: &'a str,
        /// Why, for the event.
        reason: &'a Failure,
    },
    /// The connector noticed a connection from `node` that it did not open (an incoming one).
    NodeUp {
        /// The node (as text; unknown or invalid names are ignored).
        node: &'a str,
    },
    /// A datagram arrived on the UDP socket opened with `socket`.
    Datagram {
        /// The token of the `OpenUdp` request.
        socket: Token,
        /// The sender.
        from: SocketAddr,
        /// The datagram, borrowed for the call.
        data: &'a [u8],
    },
}

/// The outcome of a request, borrowed for the duration of the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Answer<'a> {
    /// The connect succeeded.
    Connected,
    /// The connector ignored the request because this node is not part of a network (Erlang's
    /// `:ignored`).
    Ignored,
    /// The disconnect succeeded.
    Disconnected,
    /// The disconnect found no connection.
    NotConnected,
    /// The connected nodes, for [`Request::ListNodes`].
    Nodes(&'a [NodeName]),
    /// Bytes: a whole file, or the next chunk of an exchange's reply.
    Data(&'a [u8]),
    /// The exchange's peer closed the stream: no more data.
    Closed,
    /// The request failed: why.
    Failed(&'a Failure),
    /// The adapter's deadline for the request passed.
    TimedOut,
    /// The UDP socket or listener is open, bound to this address; or the stream is
    /// connected, to this peer.
    Opened(SocketAddr),
    /// A connection came in from this address, on an [`Request::Accept`].
    Accepted(SocketAddr),
}

/// How long the adapter has left for a request that must end at `deadline`.
pub fn time_left(now: Instant, deadline: Instant) -> Duration {
    deadline.saturating_duration_since(now)
}

/// An [`Answer`] that owns its data, for adapters that produce answers on one task and feed
/// them to the core on another.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OwnedAnswer {
    /// [`Answer::Connected`].
    Connected,
    /// [`Answer::Ignored`].
    Ignored,
    /// [`Answer::Disconnected`].
    Disconnected,
    /// [`Answer::NotConnected`].
    NotConnected,
    /// [`Answer::Nodes`].
    Nodes(Vec<NodeName>),
    /// [`Answer::Data`].
    Data(Vec<u8>),
    /// [`Answer::Closed`].
    Closed,
    /// [`Answer::Failed`].
    Failed(Failure),
    /// [`Answer::TimedOut`].
    TimedOut,
    /// [`Answer::Opened`].
    Opened(SocketAddr),
    /// [`Answer::Accepted`].
    Accepted(SocketAddr),
}

impl OwnedAnswer {
    /// The answer, borrowed for [`Input::Answer`].
    pub fn borrow(&self) -> Answer<'_> {
        match self {
            OwnedAnswer::Connected => Answer::Connected,
            OwnedAnswer::Ignored => Answer::Ignored,
            OwnedAnswer::Disconnected => Answer::Disconnected,
            OwnedAnswer::NotConnected => Answer::NotConnected,
            OwnedAnswer::Nodes(n) => Answer::Nodes(n),
            OwnedAnswer::Data(d) => Answer::Data(d),
            OwnedAnswer::Closed => Answer::Closed,
            OwnedAnswer::Failed(f) => Answer::Failed(f),
            OwnedAnswer::TimedOut => Answer::TimedOut,
            OwnedAnswer::Opened(a) => Answer::Opened(*a),
            OwnedAnswer::Accepted(a) => Answer::Accepted(*a),
        }
    }
}

impl From<crate::connector::ConnectOutcome> for OwnedAnswer {
    fn from(o: crate::connector::ConnectOutcome) -> Self {
        use crate::connector::ConnectOutcome as C;
        match o {
            C::Connected => OwnedAnswer::Connected,
            C::Ignored => OwnedAnswer::Ignored,
            C::Failed(e) => OwnedAnswer::Failed(e),
        }
    }
}

impl From<crate::connector::DisconnectOutcome> for OwnedAnswer {
    fn from(o: crate::connector::DisconnectOutcome) -> Self {
        use crate::connector::DisconnectOutcome as D;
        match o {
            D::Disconnected => OwnedAnswer::Disconnected,
            D::NotConnected => OwnedAnswer::NotConnected,
            D::Ignored => OwnedAnswer::Ignored,
            D::Failed(e) => OwnedAnswer::Failed(e),
        }
    }
}

impl From<Result<Vec<NodeName>, Failure>> for OwnedAnswer {
    fn from(r: Result<Vec<NodeName>, Failure>) -> Self {
        match r {
            Ok(nodes) => OwnedAnswer::Nodes(nodes),
            Err(e) => OwnedAnswer::Failed(e),
        }
    }
}
