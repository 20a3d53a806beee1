//! UDP sockets for the core: opened by muster-net with the options it asks for, registered
//! with async-io, each with a task that hands arriving datagrams to the driver.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;

use async_executor::{Executor, Task};
use async_io::Async;
use bytes::Bytes;
use muster_core::{Endpoint, Token, UdpOptions};

use crate::driver::{Inbox, InboxTx};

struct Open {
    socket: Arc<Async<UdpSocket>>,
    /// Dropping it stops the reader.
    reader: Task<()>,
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
        executor: &Executor<'static>,
        inbox: &InboxTx,
    ) -> Result<SocketAddr, String> {
        let socket = Async::new(muster_net::udp::open(opts)?)
            .map_err(|e| format!("cannot register UDP {}: {e}", opts.bind))?;
        let local = socket.get_ref().local_addr().unwrap_or(opts.bind);
        let socket = Arc::new(socket);
        let reader_socket = socket.clone();
        let tx = inbox.clone();
        let reader = executor.spawn(async move {
            let mut buf = vec![0u8; muster_net::udp::READ_BUF];
            loop {
                match reader_socket.recv_from(&mut buf).await {
                    Ok((n, from)) => {
                        if tx
                            .send(Inbox::Datagram(token, from, buf[..n].to_vec()))
                            .await
                            .is_err()
                        {
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
    /// `None` when the send went out or continues on a task (which reports through the
    /// inbox).
    pub(crate) fn send(
        &self,
        token: Token,
        to: Endpoint,
        data: Bytes,
        executor: &Executor<'static>,
        inbox: &InboxTx,
    ) -> Option<String> {
        let open = self.open.get(&token)?;
        if let Endpoint::Addr(addr) = &to {
            match open.socket.get_ref().send_to(&data, *addr) {
                Ok(_) => return None,
                Err(e) if e.kind() != io::ErrorKind::WouldBlock => {
                    return Some(format!("sending to {addr}: {e}"));
                }
                Err(_) => {}
            }
        }
        // A host name to resolve, or a full send buffer: finish on a task.
        let socket = open.socket.clone();
        let tx = inbox.clone();
        executor
            .spawn(async move {
                let v4 = socket
                    .get_ref()
                    .local_addr()
                    .map(|l| l.is_ipv4())
                    .unwrap_or(true);
                let result = match &to {
                    Endpoint::Addr(a) => socket.send_to(&data, *a).await.map(|_| ()),
                    Endpoint::Host { host, port } => {
                        match async_net::resolve((host.as_str(), *port)).await {
                            Ok(addrs) => match addrs.into_iter().find(|a| a.is_ipv4() == v4) {
                                Some(a) => socket.send_to(&data, a).await.map(|_| ()),
                                None => Err(io::Error::other("no address of the socket's family")),
                            },
                            Err(e) => Err(e),
                        }
                    }
                    other => Err(io::Error::other(format!("cannot send to {other}"))),
                };
                if let Err(e) = result {
                    let why = format!("sending to {to}: {e}");
                    let _ =
                        tx.try_send(Inbox::Answer(token, muster_core::OwnedAnswer::Failed(why)));
                }
            })
            .detach();
        None
    }

    /// Closes socket `token`.
    pub(crate) fn close(&mut self, token: Token) {
        self.open.remove(&token);
    }

    /// Closes every socket, returning once each is closed.
    pub(crate) async fn close_all(&mut self) {
        for (_, o) in self.open.drain() {
            o.reader.cancel().await;
            drop(o.socket);
        }
    }
}
