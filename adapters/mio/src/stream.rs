//! Streams that stay open, and listeners, for the core's own connector (Erlang
//! distribution) and for strategies that hold a connection (PostgreSQL), on mio: accepted
//! when the core asks for one, read until they would block, written from a queue — through
//! rustls driven by hand when the core asks for TLS, after its negotiation in the clear.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Instant as StdInstant;

use bytes::Bytes;
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry};
use muster_core::{Failure, FailureKind, OwnedAnswer, StreamTls, Token};
use rustls::ClientConnection;

use crate::exchange::connected;
use crate::udp::key;

struct Listener {
    socket: TcpListener,
    /// `Accept` requests waiting for a connection, oldest first.
    waiting: VecDeque<Token>,
}

struct Conn {
    socket: TcpStream,
    /// Until opened (connected and, with TLS, negotiated and shaken hands): give up at this
    /// time.
    connecting: Option<StdInstant>,
    /// The TCP connection is up (TLS may still be on its way).
    up: Option<SocketAddr>,
    tls: Option<Tls>,
    out: VecDeque<Bytes>,
    /// How much of `out[0]` is written.
    written: usize,
    /// Closed by the core: what is queued is written until then, nothing more is passed on.
    closing: Option<StdInstant>,
    /// Everything is written and our side is shut: what the peer still sends is read and
    /// dropped until it closes too (closing with unread data would reset the connection, and
    /// the peer would lose what it had not read yet).
    shut: bool,
    /// Bytes of ours went out: only then is there something the peer could lose.
    wrote: bool,
}

/// The listeners and streams, by token.
#[derive(Default)]
pub(crate) struct Streams {
    listeners: HashMap<Token, Listener>,
    conns: HashMap<Token, Conn>,
}

impl Streams {
    pub(crate) fn owns(&self, token: Token) -> bool {
        self.listeners.contains_key(&token) || self.conns.contains_key(&token)
    }

    /// Listens on `bind`; the bound address, or why not.
    pub(crate) fn listen(
        &mut self,
        registry: &Registry,
        token: Token,
        bind: SocketAddr,
    ) -> OwnedAnswer {
        let opened = TcpListener::bind(bind).and_then(|mut l| {
            registry.register(&mut l, key(token), Interest::READABLE)?;
            Ok((l.local_addr()?, l))
        });
        match opened {
            Ok((local, socket)) => {
                self.listeners.insert(
                    token,
                    Listener {
                        socket,
                        waiting: VecDeque::new(),
                    },
                );
                OwnedAnswer::Opened(local)
            }
            Err(e) => OwnedAnswer::Failed(Failure::io(format_args!("cannot listen on {bind}"), &e)),
        }
    }

    /// Queues an `Accept` on `listener` as `token`, and takes what is waiting already (mio's
    /// readiness fires once per arrival).
    pub(crate) fn accept(
        &mut self,
        registry: &Registry,
        token: Token,
        listener: Token,
        out: &mut Vec<(Token, OwnedAnswer)>,
    ) {
        match self.listeners.get_mut(&listener) {
            Some(l) => l.waiting.push_back(token),
            None => out.push((
                token,
                OwnedAnswer::Failed(Failure::other("no such listener")),
            )),
        }
        self.accept_ready(registry, listener, out);
    }

    /// Takes the connections waiting on `listener`, one per waiting `Accept`.
    pub(crate) fn accept_ready(
        &mut self,
        registry: &Registry,
        listener: Token,
        out: &mut Vec<(Token, OwnedAnswer)>,
    ) {
        let Some(l) = self.listeners.get_mut(&listener) else {
            return;
        };
        while let Some(&token) = l.waiting.front() {
            match l.socket.accept() {
                Ok((mut socket, from)) => {
                    l.waiting.pop_front();
                    let _ = socket.set_nodelay(true);
                    let interest = Interest::READABLE | Interest::WRITABLE;
                    if let Err(e) = registry.register(&mut socket, key(token), interest) {
                        out.push((token, OwnedAnswer::Failed(e.into())));
                        continue;
                    }
                    self.conns.insert(
                        token,
                        Conn {
                            socket,
                            connecting: None,
                            up: Some(from),
                            tls: None,
                            out: VecDeque::new(),
                            written: 0,
                            closing: None,
                            shut: false,
                            wrote: false,
                        },
                    );
                    out.push((token, OwnedAnswer::Accepted(from)));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // A connection that failed before it was taken; the next may be fine.
                Err(e) => tracing::debug!(%e, "accept"),
            }
        }
    }

    /// Starts connecting stream `token` to `addr`, through TLS if `tls` says so.
    pub(crate) fn open(
        &mut self,
        registry: &Registry,
        token: Token,
        addr: SocketAddr,
        deadline: StdInstant,
        tls: Option<StreamTls>,
    ) -> Option<OwnedAnswer> {
        let started = TcpStream::connect(addr).and_then(|mut socket| {
            registry.register(
                &mut socket,
                key(token),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            Ok(socket)
        });
        match started {
            Ok(socket) => {
                self.conns.insert(
                    token,
                    Conn {
                        socket,
                        connecting: Some(deadline),
                        up: None,
                        tls: tls.map(|spec| Tls {
                            to: addr.to_string(),
                            negotiated: spec.negotiate.is_none(),
                            sent: 0,
                            spec,
                            conn: None,
                            notify_pending: false,
                        }),
                        out: VecDeque::new(),
                        written: 0,
                        closing: None,
                        shut: false,
                        wrote: false,
                    },
                );
                None
            }
            Err(e) => Some(OwnedAnswer::Failed(Failure::io(addr, &e))),
        }
    }

    /// Queues `data` on `stream` and writes what the socket takes now.
    pub(crate) fn write(
        &mut self,
        registry: &Registry,
        stream: Token,
        data: Bytes,
        out: &mut Vec<(Token, OwnedAnswer)>,
    ) {
        // An empty write is nothing to send (and rustls would take no byte of it).
        if data.is_empty() {
            return;
        }
        if let Some(c) = self.conns.get_mut(&stream) {
            c.out.push_back(data);
            if c.connecting.is_none() {
                self.advance(registry, stream, out);
            }
        }
    }

    /// Does what the socket of stream `token` allows now.
    pub(crate) fn advance(
        &mut self,
        registry: &Registry,
        token: Token,
        out: &mut Vec<(Token, OwnedAnswer)>,
    ) {
        let Some(c) = self.conns.get_mut(&token) else {
            return;
        };
        if c.closing.is_some() {
            // The core is done with it: nothing to answer, only the writes to finish, then
            // the peer's end to wait for (at most until the closing deadline).
            let mut ignored = Vec::new();
            if step(c, token, &mut ignored).is_some() {
                self.close(registry, token);
            } else if c.flushed() && !c.shut {
                c.shut = true;
                // A stream that wrote nothing has nothing to lose, and goes at once (an idle
                // connection a peer holds open must not be kept).
                if !c.wrote || c.socket.shutdown(std::net::Shutdown::Write).is_err() {
                    self.close(registry, token);
                }
            }
            return;
        }
        let end = step(c, token, out);
        if let Some(last) = end {
            self.close(registry, token);
            out.push((token, last));
        }
    }

    /// Streams still connecting at `now` past their deadline: closed, `TimedOut`.
    pub(crate) fn expire(
        &mut self,
        registry: &Registry,
        now: StdInstant,
        out: &mut Vec<(Token, OwnedAnswer)>,
    ) {
        let late: Vec<Token> = self
            .conns
            .iter()
            .filter(|(_, c)| c.connecting.is_some_and(|d| d <= now))
            .map(|(t, _)| *t)
            .collect();
        for t in late {
            self.close(registry, t);
            out.push((t, OwnedAnswer::TimedOut));
        }
        let closing: Vec<Token> = self
            .conns
            .iter()
            .filter(|(_, c)| c.closing.is_some_and(|d| d <= now))
            .map(|(t, _)| *t)
            .collect();
        for t in closing {
            self.close(registry, t);
        }
    }

    /// The earliest connect deadline, or closing stream's grace.
    pub(crate) fn deadline(&self) -> Option<StdInstant> {
        self.conns
            .values()
            .filter_map(|c| c.connecting.or(c.closing))
            .min()
    }

    /// Closes listener or stream `token` once what is queued on it is written, or at `by`.
    pub(crate) fn close_after_writes(&mut self, registry: &Registry, token: Token, by: StdInstant) {
        match self.conns.get_mut(&token) {
            Some(c) if c.connecting.is_none() => {
                // TLS says goodbye too, after what is queued.
                if let Some(t) = c.tls.as_mut().filter(|t| t.conn.is_some()) {
                    t.notify_pending = true;
                }
                c.closing = Some(by);
                self.advance(registry, token, &mut Vec::new());
            }
            _ => self.close(registry, token),
        }
    }

    /// Closes listener or stream `token` (or forgets an accept not yet answered).
    pub(crate) fn close(&mut self, registry: &Registry, token: Token) {
        if let Some(mut l) = self.listeners.remove(&token) {
            let _ = registry.deregister(&mut l.socket);
        }
        for l in self.listeners.values_mut() {
            l.waiting.retain(|t| *t != token);
        }
        if let Some(mut c) = self.conns.remove(&token) {
            let _ = registry.deregister(&mut c.socket);
        }
    }

    pub(crate) fn close_all(&mut self, registry: &Registry) {
        let all: Vec<Token> = self
            .listeners
            .keys()
            .chain(self.conns.keys())
            .copied()
            .collect();
        for t in all {
            self.close(registry, t);
        }
    }
}

/// TLS on a stream: the negotiation in the clear first (when asked), then rustls.
struct Tls {
    spec: StreamTls,
    /// The peer, for reasons.
    to: String,
    /// The negotiation is done (or there is none).
    negotiated: bool,
    /// How much of the negotiation's request is written.
    sent: usize,
    /// Once negotiated.
    conn: Option<ClientConnection>,
    /// Closing: TLS's close_notify goes once everything queued is in rustls, not before
    /// (what came after it would be ignored by the peer).
    notify_pending: bool,
}

impl Conn {
    /// Nothing left to write: the queue, and what TLS holds.
    fn flushed(&self) -> bool {
        let tls_pending = self
            .tls
            .as_ref()
            .is_some_and(|t| t.notify_pending || t.conn.as_ref().is_some_and(|c| c.wants_write()));
        self.out.is_empty() && !tls_pending
    }
}

/// Connects, writes and reads as far as the socket allows; the last answer when the stream
/// has ended.
fn step(c: &mut Conn, token: Token, out: &mut Vec<(Token, OwnedAnswer)>) -> Option<OwnedAnswer> {
    if c.up.is_none() {
        match connected(&c.socket) {
            Ok(None) => return None,
            Ok(Some(peer)) => c.up = Some(peer),
            Err(e) => return Some(OwnedAnswer::Failed(e.into())),
        }
    }
    if c.connecting.is_some() {
        if let Some(t) = c.tls.as_mut() {
            match start_tls(&mut c.socket, t) {
                Ok(true) => {}
                Ok(false) => return None,
                Err(f) => return Some(OwnedAnswer::Failed(f)),
            }
        }
        c.connecting = None;
        if let Some(peer) = c.up {
            out.push((token, OwnedAnswer::Opened(peer)));
        }
    }
    match c.tls.as_mut() {
        Some(Tls {
            conn: Some(conn),
            notify_pending,
            ..
        }) => step_tls(
            &mut c.socket,
            conn,
            notify_pending,
            &mut c.out,
            (&mut c.written, &mut c.wrote),
            token,
            out,
        ),
        _ => step_plain(c, token, out),
    }
}

/// Negotiates and shakes hands as far as the socket allows: whether TLS is up.
fn start_tls(socket: &mut TcpStream, t: &mut Tls) -> Result<bool, Failure> {
    if !t.negotiated {
        let Some((send, accept)) = &t.spec.negotiate else {
            return Err(Failure::other("no negotiation"));
        };
        while t.sent < send.len() {
            match socket.write(&send[t.sent..]) {
                Ok(n) => t.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Failure::io(&t.to, &e)),
            }
        }
        // One byte, and no more: what follows is the server's TLS.
        let mut b = [0u8; 1];
        loop {
            match socket.read(&mut b) {
                Ok(0) => {
                    let why = format!("{}: closed before answering the TLS request", t.to);
                    return Err(Failure::new(FailureKind::Closed, why));
                }
                Ok(_) if b[0] != *accept => {
                    let why = format!(
                        "{}: TLS refused by the server (it answered {:?})",
                        t.to, b[0] as char
                    );
                    return Err(Failure::new(FailureKind::Refused, why));
                }
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Failure::io(&t.to, &e)),
            }
        }
        t.negotiated = true;
    }
    let conn = match &mut t.conn {
        Some(conn) => conn,
        None => {
            let (config, name) = muster_net::tls::client_config(&t.spec.tls)
                .map_err(|e| Failure::new(FailureKind::Tls, format!("{}: {e}", t.to)))?;
            let conn = ClientConnection::new(config, name).map_err(|e| {
                let why = format!("{}: TLS with {:?}: {e}", t.to, t.spec.tls.server_name);
                Failure::new(FailureKind::Tls, why)
            })?;
            t.conn.insert(conn)
        }
    };
    while conn.is_handshaking() {
        let mut progress = false;
        while conn.wants_write() {
            match conn.write_tls(socket) {
                Ok(_) => progress = true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Failure::io(&t.to, &e)),
            }
        }
        if conn.wants_read() {
            match conn.read_tls(socket) {
                Ok(0) => {
                    let why = format!("{}: closed during the TLS handshake", t.to);
                    return Err(Failure::new(FailureKind::Closed, why));
                }
                Ok(_) => {
                    progress = true;
                    if let Err(e) = conn.process_new_packets() {
                        // Tell the server why, then stop.
                        let _ = conn.write_tls(socket);
                        let why = format!("{}: TLS with {:?}: {e}", t.to, t.spec.tls.server_name);
                        return Err(Failure::new(FailureKind::Tls, why));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => progress = true,
                Err(e) => return Err(Failure::io(&t.to, &e)),
            }
        }
        if !progress {
            return Ok(false);
        }
    }
    Ok(true)
}

/// An established TLS stream: the queue into rustls, rustls to the socket, and back.
fn step_tls(
    socket: &mut TcpStream,
    conn: &mut ClientConnection,
    notify_pending: &mut bool,
    queue: &mut VecDeque<Bytes>,
    (written, wrote): (&mut usize, &mut bool),
    token: Token,
    out: &mut Vec<(Token, OwnedAnswer)>,
) -> Option<OwnedAnswer> {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let mut progress = false;
        // rustls takes plaintext up to its buffer limit; the rest waits in the queue.
        while let Some(front) = queue.front() {
            match conn.writer().write(&front[*written..]) {
                Ok(0) => break,
                Ok(n) => {
                    progress = true;
                    *wrote = true;
                    *written += n;
                    if *written == front.len() {
                        queue.pop_front();
                        *written = 0;
                    }
                }
                Err(e) => return Some(OwnedAnswer::Failed(Failure::io("write failed", &e))),
            }
        }
        if *notify_pending && queue.is_empty() {
            conn.send_close_notify();
            *notify_pending = false;
            progress = true;
        }
        while conn.wants_write() {
            match conn.write_tls(socket) {
                Ok(_) => progress = true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Some(OwnedAnswer::Failed(Failure::io("write failed", &e))),
            }
        }
        let mut eof = false;
        if conn.wants_read() {
            match conn.read_tls(socket) {
                Ok(0) => eof = true,
                Ok(_) => {
                    progress = true;
                    if let Err(e) = conn.process_new_packets() {
                        let _ = conn.write_tls(socket);
                        return Some(OwnedAnswer::Failed(Failure::new(
                            FailureKind::Tls,
                            format!("TLS: {e}"),
                        )));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => progress = true,
                Err(e) => return Some(OwnedAnswer::Failed(e.into())),
            }
        }
        loop {
            match conn.reader().read(&mut buf) {
                Ok(0) => return Some(OwnedAnswer::Closed),
                Ok(n) => {
                    progress = true;
                    out.push((token, OwnedAnswer::Data(buf[..n].to_vec())));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // A peer that closes without close_notify (a cut stream): failed, as the
                // other adapters say.
                Err(e) => return Some(OwnedAnswer::Failed(e.into())),
            }
        }
        if eof {
            return Some(OwnedAnswer::Closed);
        }
        if !progress {
            return None;
        }
    }
}

/// A plain stream: the queue to the socket, and what it reads.
fn step_plain(
    c: &mut Conn,
    token: Token,
    out: &mut Vec<(Token, OwnedAnswer)>,
) -> Option<OwnedAnswer> {
    while let Some(front) = c.out.front() {
        match c.socket.write(&front[c.written..]) {
            Ok(n) => {
                c.wrote |= n > 0;
                c.written += n;
                if c.written == front.len() {
                    c.out.pop_front();
                    c.written = 0;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Some(OwnedAnswer::Failed(Failure::io("write failed", &e))),
        }
    }
    let mut buf = [0u8; 16 * 1024];
    loop {
        match c.socket.read(&mut buf) {
            Ok(0) => return Some(OwnedAnswer::Closed),
            Ok(n) => out.push((token, OwnedAnswer::Data(buf[..n].to_vec()))),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Some(OwnedAnswer::Failed(e.into())),
        }
    }
}
