//! Streams that stay open, and listeners, for the core's own connector (Erlang
//! distribution), on mio: accepted when the core asks for one, read until they would block,
//! written from a queue.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Instant as StdInstant;

use bytes::Bytes;
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry};
use muster_core::{Failure, OwnedAnswer, Token};

use crate::exchange::connected;
use crate::udp::key;

struct Listener {
    socket: TcpListener,
    /// `Accept` requests waiting for a connection, oldest first.
    waiting: VecDeque<Token>,
}

struct Conn {
    socket: TcpStream,
    /// Until connected: give up at this time.
    connecting: Option<StdInstant>,
    out: VecDeque<Bytes>,
    /// How much of `out[0]` is written.
    written: usize,
    /// Closed by the core: what is queued is written until then, nothing more is read.
    closing: Option<StdInstant>,
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
                            out: VecDeque::new(),
                            written: 0,
                            closing: None,
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

    /// Starts connecting stream `token` to `addr`.
    pub(crate) fn open(
        &mut self,
        registry: &Registry,
        token: Token,
        addr: SocketAddr,
        deadline: StdInstant,
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
                        out: VecDeque::new(),
                        written: 0,
                        closing: None,
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
            // The core is done with it: nothing to answer, only the writes to finish.
            let mut ignored = Vec::new();
            let end = step(c, token, &mut ignored);
            if end.is_some() || c.out.is_empty() {
                self.close(registry, token);
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
            Some(c) if !c.out.is_empty() && c.connecting.is_none() => c.closing = Some(by),
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

/// Connects, writes and reads as far as the socket allows; the last answer when the stream
/// has ended.
fn step(c: &mut Conn, token: Token, out: &mut Vec<(Token, OwnedAnswer)>) -> Option<OwnedAnswer> {
    if c.connecting.is_some() {
        match connected(&c.socket) {
            Ok(None) => return None,
            Ok(Some(peer)) => {
                c.connecting = None;
                out.push((token, OwnedAnswer::Opened(peer)));
            }
            Err(e) => return Some(OwnedAnswer::Failed(e.into())),
        }
    }
    while let Some(front) = c.out.front() {
        match c.socket.write(&front[c.written..]) {
            Ok(n) => {
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
