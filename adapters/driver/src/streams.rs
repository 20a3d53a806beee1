//! Streams that stay open, and listeners, for the core's own connector (Erlang
//! distribution): each stream a task that passes on what it reads and writes what the core
//! sends it.

use std::collections::BTreeMap;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant as StdInstant;

use bytes::Bytes;
use futures_lite::{AsyncReadExt, AsyncWriteExt, FutureExt};
use muster_core::{Endpoint, Failure, FailureKind, OwnedAnswer, StreamTls, Token};

use crate::Runtime;
use crate::exec::{answer, connect_endpoint};
use crate::inbox::InboxTx;
use crate::tasks::Tasks;

/// The largest read buffer a stream grows to.
const MAX_READ: usize = 64 * 1024;

/// The listeners and the write sides of the open streams, by token.
pub(crate) struct Streams<R: Runtime> {
    listeners: BTreeMap<Token, Arc<R::Listener>>,
    writers: BTreeMap<Token, async_channel::Sender<Bytes>>,
}

impl<R: Runtime> Default for Streams<R> {
    fn default() -> Self {
        Streams {
            listeners: BTreeMap::new(),
            writers: BTreeMap::new(),
        }
    }
}

impl<R: Runtime> Streams<R> {
    /// Listens on `bind`; the bound address, or why not.
    pub(crate) fn listen(&mut self, runtime: &R, token: Token, bind: SocketAddr) -> OwnedAnswer {
        let opened = std::net::TcpListener::bind(bind).and_then(|l| {
            l.set_nonblocking(true)?;
            let local = l.local_addr()?;
            Ok((local, runtime.listener(l)?))
        });
        match opened {
            Ok((local, l)) => {
                self.listeners.insert(token, Arc::new(l));
                OwnedAnswer::Opened(local)
            }
            Err(e) => OwnedAnswer::Failed(Failure::io(format_args!("cannot listen on {bind}"), &e)),
        }
    }

    /// Takes the next connection on `listener` as stream `token`.
    pub(crate) fn accept(
        &mut self,
        tasks: &mut Tasks<R>,
        tx: InboxTx,
        token: Token,
        listener: Token,
    ) {
        let Some(l) = self.listeners.get(&listener).cloned() else {
            tasks.spawn(async move {
                let why = Failure::other("no such listener");
                answer(&tx, token, OwnedAnswer::Failed(why)).await;
            });
            return;
        };
        let (wtx, wrx) = async_channel::unbounded();
        self.writers.insert(token, wtx);
        tasks.spawn_stoppable(token, async move {
            let accepted = async { Some(poll_fn(|cx| R::poll_accept(&l, cx)).await) };
            // Cancelled before a connection came (the core writes nothing before that): stop
            // waiting, and let the listener go.
            let cancelled = async {
                while wrx.recv().await.is_ok() {}
                None
            };
            let Some(accepted) = accepted.or(cancelled).await else {
                return;
            };
            drop(l);
            match accepted {
                Ok((s, from)) => {
                    if answer(&tx, token, OwnedAnswer::Accepted(from)).await {
                        run(s, token, wrx, tx).await;
                    }
                }
                Err(e) => {
                    answer(&tx, token, OwnedAnswer::Failed(e.into())).await;
                }
            }
        });
    }

    /// Opens stream `token` to `to` (through TLS if `tls` says so), giving up connecting at
    /// `deadline`.
    pub(crate) fn open(
        &mut self,
        tasks: &mut Tasks<R>,
        tx: InboxTx,
        token: Token,
        to: Endpoint,
        tls: Option<StreamTls>,
        deadline: StdInstant,
    ) {
        let (wtx, wrx) = async_channel::unbounded();
        self.writers.insert(token, wtx);
        let runtime = tasks.runtime().clone();
        tasks.spawn_stoppable(token, async move {
            let timer = runtime.sleep_until(deadline);
            let connect = async {
                let (s, peer) = match connect_endpoint(&runtime, &to).await {
                    Ok(c) => c,
                    Err(why) => return Some(Err(why)),
                };
                Some(match tls {
                    None => Ok((Either::Plain(s), peer)),
                    Some(tls) => start_tls(s, &to, &tls)
                        .await
                        .map(|s| (Either::Tls(Box::new(s)), peer)),
                })
            };
            let timeout = async move {
                timer.await;
                None
            };
            match connect.or(timeout).await {
                Some(Ok((s, peer))) => {
                    if answer(&tx, token, OwnedAnswer::Opened(peer)).await {
                        match s {
                            Either::Plain(s) => run(s, token, wrx, tx).await,
                            Either::Tls(s) => run(s, token, wrx, tx).await,
                        }
                    }
                }
                Some(Err(why)) => {
                    answer(&tx, token, OwnedAnswer::Failed(why)).await;
                }
                None => {
                    answer(&tx, token, OwnedAnswer::TimedOut).await;
                }
            }
        });
    }

    /// Queues `data` on stream `stream`; a stream that is gone takes nothing.
    pub(crate) fn write(&self, stream: Token, data: Bytes) {
        if let Some(w) = self.writers.get(&stream) {
            let _ = w.try_send(data);
        }
    }

    /// Forgets `token`: a listener closes; a stream's write side is dropped, so that its task
    /// writes what is queued and ends. Whether `token` was a stream.
    pub(crate) fn close(&mut self, token: Token) -> bool {
        self.listeners.remove(&token);
        self.writers.remove(&token).is_some()
    }

    /// Forgets the write sides of streams whose task has ended.
    pub(crate) fn prune(&mut self) {
        self.writers.retain(|_, w| !w.is_closed());
    }

    pub(crate) fn close_all(&mut self) {
        self.listeners.clear();
        self.writers.clear();
    }
}

enum Either<P, T> {
    Plain(P),
    Tls(Box<T>),
}

/// Negotiates TLS as `tls` says (a byte written and one read back, for PostgreSQL), then
/// runs the handshake.
async fn start_tls<S>(
    mut s: S,
    to: &Endpoint,
    tls: &StreamTls,
) -> Result<futures_rustls::client::TlsStream<S>, Failure>
where
    S: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin,
{
    if let Some((send, accept)) = &tls.negotiate {
        s.write_all(send).await.map_err(|e| Failure::io(to, &e))?;
        s.flush().await.map_err(|e| Failure::io(to, &e))?;
        let mut b = [0u8; 1];
        s.read_exact(&mut b)
            .await
            .map_err(|e| Failure::io(to, &e))?;
        if b[0] != *accept {
            let why = format!(
                "{to}: TLS refused by the server (it answered {:?})",
                b[0] as char
            );
            return Err(Failure::new(FailureKind::Refused, why));
        }
    }
    let (config, name) = muster_net::tls::client_config(&tls.tls)
        .map_err(|e| Failure::new(FailureKind::Tls, format!("{to}: {e}")))?;
    futures_rustls::TlsConnector::from(config)
        .connect(name, s)
        .await
        .map_err(|e| muster_net::tls::handshake_failure(to, &tls.tls, &e))
}

enum Step {
    Read(std::io::Result<usize>),
    Write(Option<Bytes>),
}

/// Passes on what `s` reads and writes what comes on `writes`, until either side ends.
async fn run<S>(s: S, token: Token, writes: async_channel::Receiver<Bytes>, tx: InboxTx)
where
    S: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin + Send,
{
    let (mut read, mut write) = futures_lite::io::split(s);
    // Small to start with, as most streams carry little (a handshake, ticks); it grows while
    // reads fill it, up to what a busy link needs.
    let mut buf = vec![0u8; 2 * 1024];
    let mut wrote = false;
    let last = loop {
        // Writes first: what the core queued goes out even while the peer keeps sending.
        let step = async { Step::Write(writes.recv().await.ok()) }
            .or(async { Step::Read(read.read(&mut buf).await) })
            .await;
        match step {
            Step::Read(Ok(0)) => break OwnedAnswer::Closed,
            Step::Read(Ok(n)) => {
                if !answer(&tx, token, OwnedAnswer::Data(buf[..n].to_vec())).await {
                    return;
                }
                if n == buf.len() && buf.len() < MAX_READ {
                    buf.resize(buf.len() * 2, 0);
                }
            }
            Step::Read(Err(e)) => break OwnedAnswer::Failed(e.into()),
            Step::Write(Some(data)) => {
                if let Err(e) = write.write_all(&data).await {
                    break OwnedAnswer::Failed(Failure::io("write failed", &e));
                }
                wrote |= !data.is_empty();
            }
            // The core closed the stream, and everything queued has been written: our side
            // is shut. After writing, what the peer still sends is read and dropped until it
            // closes too (the task is stopped at the close's grace at the latest): closing
            // with unread data would reset the connection, and the peer would lose what it
            // had not read yet of ours. A stream that wrote nothing has nothing to lose, and
            // goes at once (an idle connection a peer holds open must not hold a task).
            Step::Write(None) => {
                let _ = write.close().await;
                if wrote {
                    while let Ok(n) = read.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                    }
                }
                return;
            }
        }
    };
    answer(&tx, token, last).await;
}
