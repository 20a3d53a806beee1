//! UDP sockets for the core: opened with the options it asks for, each with a task that hands
//! arriving datagrams to the driver.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use muster_core::{Endpoint, Token, UdpOptions};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// A datagram that arrived, for the driver.
pub(crate) type Arrival = (Token, SocketAddr, Vec<u8>);

struct Open {
    socket: Arc<UdpSocket>,
    reader: JoinHandle<()>,
}

/// The sockets the core opened, by the token of their `OpenUdp` request.
#[derive(Default)]
pub(crate) struct Sockets {
    open: HashMap<Token, Open>,
}

impl Sockets {
    /// Opens the socket for `token` and starts its reader. Returns the bound address.
    pub(crate) fn open(
        &mut self,
        token: Token,
        opts: &UdpOptions,
        arrivals: &mpsc::Sender<Arrival>,
    ) -> Result<SocketAddr, String> {
        let std_socket = muster_net::udp::open(opts)?;
        let socket = UdpSocket::from_std(std_socket)
            .map_err(|e| format!("cannot register UDP {}: {e}", opts.bind))?;
        let local = socket.local_addr().unwrap_or(opts.bind);
        let socket = Arc::new(socket);
        let reader_socket = socket.clone();
        let tx = arrivals.clone();
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; muster_net::udp::READ_BUF];
            loop {
                match reader_socket.recv_from(&mut buf).await {
                    Ok((n, from)) => {
                        if tx.send((token, from, buf[..n].to_vec())).await.is_err() {
                            return;
                        }
                    }
                    // ICMP errors from earlier sends surface here on some systems; the
                    // socket is still good.
                    Err(e) => tracing::debug!(%e, "UDP receive error"),
                }
            }
        });
        self.open.insert(token, Open { socket, reader });
        Ok(local)
    }

    /// Sends `data` on socket `token`. Returns a failure to report on the socket's token, or
    /// `None` when the send went out or continues on a task (which reports through
    /// `failures`).
    pub(crate) fn send(
        &self,
        token: Token,
        to: Endpoint,
        data: Bytes,
        failures: &mpsc::Sender<(Token, String)>,
    ) -> Option<String> {
        let open = self.open.get(&token)?;
        let socket = open.socket.clone();
        if let Endpoint::Addr(addr) = &to {
            match socket.try_send_to(&data, *addr) {
                Ok(_) => return None,
                Err(e) if e.kind() != io::ErrorKind::WouldBlock => {
                    return Some(format!("sending to {addr}: {e}"));
                }
                Err(_) => {}
            }
        }
        // A host name to resolve, or a full send buffer: finish on a task.
        let failures = failures.clone();
        tokio::spawn(async move {
            let result = match &to {
                Endpoint::Addr(a) => socket.send_to(&data, *a).await.map(|_| ()),
                Endpoint::Host { host, port } => {
                    match tokio::net::lookup_host((host.as_str(), *port)).await {
                        Ok(mut addrs) => match addrs.find(|a| {
                            a.is_ipv4() == socket.local_addr().map(|l| l.is_ipv4()).unwrap_or(true)
                        }) {
                            Some(a) => socket.send_to(&data, a).await.map(|_| ()),
                            None => Err(io::Error::other("no address of the socket's family")),
                        },
                        Err(e) => Err(e),
                    }
                }
                other => Err(io::Error::other(format!("cannot send to {other}"))),
            };
            if let Err(e) = result {
                let _ = failures.try_send((token, format!("sending to {to}: {e}")));
            }
        });
        None
    }

    /// Closes socket `token`.
    pub(crate) fn close(&mut self, token: Token) {
        if let Some(o) = self.open.remove(&token) {
            o.reader.abort();
        }
    }

    /// Closes every socket, returning once each is closed.
    pub(crate) async fn close_all(&mut self) {
        for (_, o) in self.open.drain() {
            o.reader.abort();
            let _ = o.reader.await;
        }
    }
}
