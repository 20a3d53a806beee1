//! UDP sockets for the core: opened by muster-net with the options it asks for, registered
//! with the runtime, each with one task that hands arriving datagrams to the driver and sends
//! what could not go out at once, in order.

use std::collections::BTreeMap;
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures_lite::FutureExt;
use muster_core::{Endpoint, Failure, FailureKind, OwnedAnswer, Token, UdpOptions};

use crate::Runtime;
use crate::inbox::{Inbox, InboxTx};
use crate::tasks::Tasks;

/// Datagrams waiting for a socket that could not take them at once; more are refused.
const QUEUE: usize = 1024;

struct Open<R: Runtime> {
    socket: Arc<R::Udp>,
    /// Sends the socket's task makes: a name to resolve, or a full send buffer.
    queue: async_channel::Sender<(Endpoint, Bytes)>,
}

/// The sockets the core opened, by the token of their `OpenUdp` request.
pub(crate) struct Sockets<R: Runtime> {
    open: BTreeMap<Token, Open<R>>,
}

impl<R: Runtime> Default for Sockets<R> {
    fn default() -> Self {
        Sockets {
            open: BTreeMap::new(),
        }
    }
}

enum Step {
    Received(io::Result<(usize, SocketAddr)>),
    Send(Option<(Endpoint, Bytes)>),
}

impl<R: Runtime> Sockets<R> {
    /// Opens the socket for `token` and starts its task. Returns the bound address.
    pub(crate) fn open(
        &mut self,
        tasks: &mut Tasks<R>,
        inbox: &InboxTx,
        token: Token,
        opts: &UdpOptions,
    ) -> Result<SocketAddr, Failure> {
        let socket = muster_net::udp::open(opts)?;
        let socket = tasks
            .runtime()
            .udp(socket)
            .map_err(|e| Failure::io(format_args!("cannot register UDP {}", opts.bind), &e))?;
        let local = R::udp_local_addr(&socket).unwrap_or(opts.bind);
        let socket = Arc::new(socket);
        let (queue, sends) = async_channel::bounded(QUEUE);
        let runtime = tasks.runtime().clone();
        let io = socket.clone();
        let tx = inbox.clone();
        // One task polls the socket in each direction: runtimes wake one waiter per direction.
        tasks.spawn_stoppable(token, async move {
            let mut buf = vec![0u8; muster_net::udp::READ_BUF];
            loop {
                // Sends first, and arrivals are handed on without waiting: a flood of incoming
                // datagrams neither holds up this node's own nor backs up into the driver.
                let step = async { Step::Send(sends.recv().await.ok()) }
                    .or(async {
                        Step::Received(poll_fn(|cx| R::poll_recv_from(&io, cx, &mut buf)).await)
                    })
                    .await;
                match step {
                    Step::Received(Ok((n, from))) => {
                        let d = Inbox::Datagram(token, from, buf[..n].to_vec());
                        match tx.try_send(d) {
                            Ok(()) => {}
                            // The driver is behind: a datagram is lost, as the network may
                            // lose it anyway.
                            Err(async_channel::TrySendError::Full(_)) => {
                                tracing::debug!("UDP datagram dropped: the driver is behind")
                            }
                            Err(async_channel::TrySendError::Closed(_)) => return,
                        }
                    }
                    // A connected socket's peer answered an earlier send with ICMP
                    // port-unreachable: said on the socket's token, so a resolver moves to
                    // its next server at once. Other errors: the socket is still good.
                    Step::Received(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
                        let why =
                            Failure::io("the peer's port is closed (ICMP port unreachable)", &e);
                        let _ = tx.try_send(Inbox::Answer(token, OwnedAnswer::Failed(why)));
                    }
                    Step::Received(Err(e)) => tracing::debug!(%e, "UDP receive error"),
                    Step::Send(Some((to, data))) => {
                        if let Err(why) = send::<R>(&runtime, &io, &to, &data).await {
                            let _ = tx.try_send(Inbox::Answer(token, OwnedAnswer::Failed(why)));
                        }
                    }
                    // The socket was closed.
                    Step::Send(None) => return,
                }
            }
        });
        self.open.insert(token, Open { socket, queue });
        Ok(local)
    }

    /// Sends `data` on socket `token`: at once when it can, else through the socket's task.
    /// Returns a failure to report on the socket's token, or `None` when the send went out
    /// or is queued (the task reports its failures through the inbox).
    pub(crate) fn send(&self, token: Token, to: Endpoint, data: Bytes) -> Option<Failure> {
        let open = self.open.get(&token)?;
        // Only when nothing waits in the queue (one may still be on its way out of it).
        if let (Endpoint::Addr(addr), true) = (&to, open.queue.is_empty()) {
            match R::try_send_to(&open.socket, &data, *addr) {
                Ok(_) => return None,
                Err(e) if e.kind() != io::ErrorKind::WouldBlock => {
                    return Some(Failure::io(format_args!("sending to {addr}"), &e));
                }
                Err(_) => {}
            }
        }
        let what = to.to_string();
        match open.queue.try_send((to, data)) {
            Ok(()) => None,
            Err(_) => Some(Failure::new(
                FailureKind::Resources,
                format!("sending to {what}: {QUEUE} datagrams already wait to be sent"),
            )),
        }
    }

    /// Closes socket `token` (its task is stopped by the caller).
    pub(crate) fn close(&mut self, token: Token) {
        self.open.remove(&token);
    }

    pub(crate) fn close_all(&mut self) {
        self.open.clear();
    }
}

/// Resolves `to` when it is a name (an address of the socket's family), then sends.
async fn send<R: Runtime>(
    runtime: &R,
    socket: &R::Udp,
    to: &Endpoint,
    data: &[u8],
) -> Result<(), Failure> {
    let addr = match to {
        Endpoint::Addr(a) => *a,
        Endpoint::Host { host, port } => {
            let v4 = R::udp_local_addr(socket)
                .map(|l| l.is_ipv4())
                .unwrap_or(true);
            let addrs = runtime
                .resolve(host.clone(), *port)
                .await
                .map_err(|e| Failure::io(format_args!("sending to {to}"), &e))?;
            addrs
                .into_iter()
                .find(|a| a.is_ipv4() == v4)
                .ok_or_else(|| {
                    Failure::new(
                        FailureKind::NotFound,
                        format!("sending to {to}: no address of the socket's family"),
                    )
                })?
        }
        other => {
            let why = format!("cannot send to {other}");
            return Err(Failure::new(FailureKind::Unsupported, why));
        }
    };
    poll_fn(|cx| R::poll_send_to(socket, cx, data, addr))
        .await
        .map(|_| ())
        .map_err(|e| Failure::io(format_args!("sending to {to}"), &e))
}
