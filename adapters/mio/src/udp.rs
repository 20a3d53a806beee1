//! UDP sockets for the core on mio: opened by muster-net with the options the core asks
//! for; datagrams are read straight into one buffer and handed to the core borrowed.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;

use bytes::Bytes;
use mio::net::UdpSocket;
use mio::{Interest, Registry};
use muster_core::{Failure, FailureKind, Token, UdpOptions};

/// Datagrams waiting for room in a full send buffer; more than this are dropped (a datagram
/// may be lost anyway) and the drop reported on the socket's token.
const QUEUE: usize = 64;

pub(crate) struct Udp {
    pub(crate) socket: UdpSocket,
    queued: VecDeque<(SocketAddr, Bytes)>,
}

impl Udp {
    pub(crate) fn open(
        registry: &Registry,
        key: mio::Token,
        opts: &UdpOptions,
    ) -> Result<(Udp, SocketAddr), Failure> {
        let mut socket = UdpSocket::from_std(muster_net::udp::open(opts)?);
        registry
            .register(&mut socket, key, Interest::READABLE | Interest::WRITABLE)
            .map_err(|e| Failure::io(format_args!("cannot register UDP {}", opts.bind), &e))?;
        let local = socket.local_addr().unwrap_or(opts.bind);
        Ok((
            Udp {
                socket,
                queued: VecDeque::new(),
            },
            local,
        ))
    }

    /// Sends `data` to `to`, or queues it until the socket is writable. An error to report.
    pub(crate) fn send(&mut self, to: SocketAddr, data: Bytes) -> Option<Failure> {
        if !self.queued.is_empty() {
            return self.enqueue(to, data);
        }
        match self.socket.send_to(&data, to) {
            Ok(_) => None,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.enqueue(to, data),
            Err(e) => Some(Failure::io(format_args!("sending to {to}"), &e)),
        }
    }

    fn enqueue(&mut self, to: SocketAddr, data: Bytes) -> Option<Failure> {
        if self.queued.len() >= QUEUE {
            return Some(Failure::new(
                FailureKind::Resources,
                format!("sending to {to}: the send buffer is full"),
            ));
        }
        self.queued.push_back((to, data));
        None
    }

    /// Sends what was queued, now that the socket is writable. Errors to report.
    pub(crate) fn flush(&mut self) -> Vec<Failure> {
        let mut errors = Vec::new();
        while let Some((to, data)) = self.queued.front() {
            match self.socket.send_to(data, *to) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => errors.push(Failure::io(format_args!("sending to {to}"), &e)),
            }
            self.queued.pop_front();
        }
        errors
    }

    /// The next datagram into `buf`, or `None` when none is waiting. A connected socket's
    /// peer that answered with ICMP port-unreachable is noted in `refused`, for the caller to
    /// say on the socket's token.
    pub(crate) fn recv(
        &self,
        buf: &mut [u8],
        refused: &mut Option<Failure>,
    ) -> Option<(usize, SocketAddr)> {
        // Other errors from earlier sends surface here on some systems; the socket is still
        // good. A socket that only errs is left until its next event.
        for _ in 0..16 {
            match self.socket.recv_from(buf) {
                Ok(r) => return Some(r),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    *refused = Some(Failure::io(
                        "the peer's port is closed (ICMP port unreachable)",
                        &e,
                    ));
                }
                Err(e) => tracing::debug!(%e, "UDP receive error"),
            }
        }
        None
    }
}

/// The mio key of the core's token.
pub(crate) fn key(token: Token) -> mio::Token {
    mio::Token(usize::try_from(token.0).unwrap_or(usize::MAX - 1))
}
