//! tokio as a [`Runtime`] for muster's one async driver.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use muster_driver::Runtime;
use tokio::io::ReadBuf;
use tokio::net::{TcpListener, TcpStream, UdpSocket};

/// The tokio runtime the cluster was built on (the current one, by default).
#[derive(Debug, Clone)]
pub struct Tokio {
    handle: tokio::runtime::Handle,
}

impl Tokio {
    /// The runtime of `handle`.
    pub fn new(handle: tokio::runtime::Handle) -> Self {
        Tokio { handle }
    }

    /// The current runtime.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn current() -> Self {
        Tokio::new(tokio::runtime::Handle::current())
    }
}

/// A tokio TCP stream with futures-io's read and write traits.
#[derive(Debug)]
pub struct Stream(TcpStream);

impl futures_lite::AsyncRead for Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut b = ReadBuf::new(buf);
        match tokio::io::AsyncRead::poll_read(Pin::new(&mut self.0), cx, &mut b) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(b.filled().len())),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl futures_lite::AsyncWrite for Stream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        tokio::io::AsyncWrite::poll_write(Pin::new(&mut self.0), cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        tokio::io::AsyncWrite::poll_flush(Pin::new(&mut self.0), cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        tokio::io::AsyncWrite::poll_shutdown(Pin::new(&mut self.0), cx)
    }
}

impl Runtime for Tokio {
    type Tcp = Stream;
    type Listener = TcpListener;
    type Udp = UdpSocket;

    fn spawn(&self, future: impl Future<Output = ()> + Send + 'static) {
        drop(self.handle.spawn(future));
    }

    fn sleep_until(&self, at: Instant) -> impl Future<Output = ()> + Send + 'static {
        tokio::time::sleep_until(at.into())
    }

    async fn connect(&self, to: SocketAddr) -> io::Result<Stream> {
        let s = TcpStream::connect(to).await?;
        let _ = s.set_nodelay(true);
        Ok(Stream(s))
    }

    async fn resolve(&self, host: String, port: u16) -> io::Result<Vec<SocketAddr>> {
        Ok(tokio::net::lookup_host((host.as_str(), port))
            .await?
            .collect())
    }

    fn read_file(&self, path: String) -> impl Future<Output = io::Result<Vec<u8>>> + Send {
        tokio::fs::read(path)
    }

    fn listener(&self, listener: std::net::TcpListener) -> io::Result<TcpListener> {
        let _guard = self.handle.enter();
        TcpListener::from_std(listener)
    }

    fn poll_accept(
        listener: &TcpListener,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<(Stream, SocketAddr)>> {
        listener.poll_accept(cx).map_ok(|(s, from)| {
            let _ = s.set_nodelay(true);
            (Stream(s), from)
        })
    }

    fn udp(&self, socket: std::net::UdpSocket) -> io::Result<UdpSocket> {
        let _guard = self.handle.enter();
        UdpSocket::from_std(socket)
    }

    fn poll_recv_from(
        socket: &UdpSocket,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>> {
        let mut b = ReadBuf::new(buf);
        socket
            .poll_recv_from(cx, &mut b)
            .map_ok(|from| (b.filled().len(), from))
    }

    fn poll_send_to(
        socket: &UdpSocket,
        cx: &mut Context<'_>,
        buf: &[u8],
        to: SocketAddr,
    ) -> Poll<io::Result<usize>> {
        socket.poll_send_to(cx, buf, to)
    }

    fn try_send_to(socket: &UdpSocket, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        socket.try_send_to(buf, to)
    }

    fn udp_local_addr(socket: &UdpSocket) -> io::Result<SocketAddr> {
        socket.local_addr()
    }
}
