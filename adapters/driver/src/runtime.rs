//! What the driver needs of an async runtime: spawning, a timer, TCP and UDP.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::task::{Context, Poll};
use std::time::Instant;

use futures_lite::{AsyncRead, AsyncWrite};

/// An async runtime, as the [`Driver`](crate::Driver) uses it. Each adapter implements it in a
/// few dozen lines over its runtime's own types (tokio's, or async-io's); everything else —
/// executing the core's requests, TLS, the handle, the events — is written once, here.
///
/// Sockets are created by muster-net with the options the core asks for (as std sockets, in
/// non-blocking mode) and handed to the runtime to register with its reactor. The driver polls
/// each socket from one task at a time in each direction, so a runtime that wakes only the
/// latest waiter per direction (as tokio's `poll_*` methods do) is served right.
pub trait Runtime: Clone + Send + Sync + 'static {
    /// A connected TCP stream.
    type Tcp: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// A TCP listener.
    type Listener: Send + Sync + 'static;
    /// A UDP socket.
    type Udp: Send + Sync + 'static;

    /// Runs `future` to completion concurrently with the driver.
    fn spawn(&self, future: impl Future<Output = ()> + Send + 'static);

    /// Completes at `at`.
    fn sleep_until(&self, at: Instant) -> impl Future<Output = ()> + Send + 'static;

    /// Connects to `to`, with `TCP_NODELAY` set.
    fn connect(&self, to: SocketAddr) -> impl Future<Output = io::Result<Self::Tcp>> + Send;

    /// The addresses of `host` (a name or an address literal) at `port`.
    fn resolve(
        &self,
        host: String,
        port: u16,
    ) -> impl Future<Output = io::Result<Vec<SocketAddr>>> + Send;

    /// Reads a whole (small, local) file.
    fn read_file(&self, path: String) -> impl Future<Output = io::Result<Vec<u8>>> + Send;

    /// Registers a bound, non-blocking listener.
    fn listener(&self, listener: std::net::TcpListener) -> io::Result<Self::Listener>;

    /// Takes the next connection on `listener`, with `TCP_NODELAY` set.
    fn poll_accept(
        listener: &Self::Listener,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<(Self::Tcp, SocketAddr)>>;

    /// Registers a bound, non-blocking UDP socket.
    fn udp(&self, socket: std::net::UdpSocket) -> io::Result<Self::Udp>;

    /// Receives a datagram into `buf`.
    fn poll_recv_from(
        socket: &Self::Udp,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>>;

    /// Sends `buf` to `to` once the socket can take it.
    fn poll_send_to(
        socket: &Self::Udp,
        cx: &mut Context<'_>,
        buf: &[u8],
        to: SocketAddr,
    ) -> Poll<io::Result<usize>>;

    /// Sends `buf` to `to` if the socket can take it now (`WouldBlock` if not).
    fn try_send_to(socket: &Self::Udp, buf: &[u8], to: SocketAddr) -> io::Result<usize>;

    /// The address `socket` is bound to.
    fn udp_local_addr(socket: &Self::Udp) -> io::Result<SocketAddr>;
}
