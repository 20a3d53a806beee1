//! async-io as a [`Runtime`] for muster's one async driver: sockets registered with async-io's
//! reactor, tasks on an executor that runs inside the cluster's own future.

use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use async_executor::Executor;
use async_io::{Async, Timer};
use muster_driver::Runtime;

/// async-io, with the executor the cluster's tasks run on (polled by the cluster's
/// [`Driver`](crate::Driver) future, on whatever executor runs that).
#[derive(Debug, Clone)]
pub struct AsyncIo {
    executor: Arc<Executor<'static>>,
}

impl AsyncIo {
    pub(crate) fn new() -> Self {
        AsyncIo {
            executor: Arc::new(Executor::new()),
        }
    }

    pub(crate) fn executor(&self) -> &Arc<Executor<'static>> {
        &self.executor
    }
}

/// Retries `op` until it does not block, waiting for `ready` in between.
fn poll_io<T>(
    cx: &mut Context<'_>,
    mut op: impl FnMut() -> io::Result<T>,
    mut ready: impl FnMut(&mut Context<'_>) -> Poll<io::Result<()>>,
) -> Poll<io::Result<T>> {
    loop {
        match op() {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => ready!(ready(cx))?,
            other => return Poll::Ready(other),
        }
    }
}

impl Runtime for AsyncIo {
    type Tcp = Async<TcpStream>;
    type Listener = Async<TcpListener>;
    type Udp = Async<UdpSocket>;

    fn spawn(&self, future: impl Future<Output = ()> + Send + 'static) {
        self.executor.spawn(future).detach();
    }

    // An async fn would borrow `self`; the timer must outlive the call.
    #[allow(clippy::manual_async_fn)]
    fn sleep_until(&self, at: Instant) -> impl Future<Output = ()> + Send + 'static {
        async move {
            Timer::at(at).await;
        }
    }

    async fn connect(&self, to: SocketAddr) -> io::Result<Async<TcpStream>> {
        let s = Async::<TcpStream>::connect(to).await?;
        let _ = s.get_ref().set_nodelay(true);
        Ok(s)
    }

    async fn resolve(&self, host: String, port: u16) -> io::Result<Vec<SocketAddr>> {
        async_net::resolve((host.as_str(), port)).await
    }

    // Small local files (a token, a CA, resolv.conf): read on blocking's thread pool, as
    // async-fs does.
    fn read_file(&self, path: String) -> impl Future<Output = io::Result<Vec<u8>>> + Send {
        blocking::unblock(move || std::fs::read(path))
    }

    fn listener(&self, listener: TcpListener) -> io::Result<Async<TcpListener>> {
        Async::new(listener)
    }

    fn poll_accept(
        listener: &Async<TcpListener>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<(Async<TcpStream>, SocketAddr)>> {
        let (s, from) = ready!(poll_io(
            cx,
            || listener.get_ref().accept(),
            |cx| listener.poll_readable(cx)
        ))?;
        let _ = s.set_nodelay(true);
        Poll::Ready(Async::new(s).map(|s| (s, from)))
    }

    fn udp(&self, socket: UdpSocket) -> io::Result<Async<UdpSocket>> {
        Async::new(socket)
    }

    fn poll_recv_from(
        socket: &Async<UdpSocket>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>> {
        poll_io(
            cx,
            || socket.get_ref().recv_from(buf),
            |cx| socket.poll_readable(cx),
        )
    }

    fn poll_send_to(
        socket: &Async<UdpSocket>,
        cx: &mut Context<'_>,
        buf: &[u8],
        to: SocketAddr,
    ) -> Poll<io::Result<usize>> {
        poll_io(
            cx,
            || socket.get_ref().send_to(buf, to),
            |cx| socket.poll_writable(cx),
        )
    }

    fn try_send_to(socket: &Async<UdpSocket>, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        socket.get_ref().send_to(buf, to)
    }

    fn udp_local_addr(socket: &Async<UdpSocket>) -> io::Result<SocketAddr> {
        socket.get_ref().local_addr()
    }
}
