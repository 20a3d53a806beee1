//! Streams that stay open, and listeners, for the core's own connector (Erlang
//! distribution): each stream a task that passes on what it reads and writes what the core
//! sends it.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Instant as StdInstant;

use async_io::Timer;
use async_net::{TcpListener, TcpStream};
use bytes::Bytes;
use futures_lite::{AsyncReadExt, AsyncWriteExt, FutureExt};
use muster_core::{Endpoint, OwnedAnswer, Token};

use crate::driver::{Inbox, InboxTx};

type Job = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The listeners and the write sides of the open streams, by token.
#[derive(Default)]
pub(crate) struct Streams {
    listeners: HashMap<Token, TcpListener>,
    writers: HashMap<Token, async_channel::Sender<Bytes>>,
}

impl Streams {
    /// Listens on `bind`; the bound address, or why not.
    pub(crate) fn listen(&mut self, token: Token, bind: std::net::SocketAddr) -> OwnedAnswer {
        let opened = std::net::TcpListener::bind(bind)
            .and_then(TcpListener::try_from)
            .and_then(|l| Ok((l.local_addr()?, l)));
        match opened {
            Ok((local, l)) => {
                self.listeners.insert(token, l);
                OwnedAnswer::Opened(local)
            }
            Err(e) => OwnedAnswer::Failed(format!("cannot listen on {bind}: {e}")),
        }
    }

    /// The task that takes the next connection on `listener` as stream `token`.
    pub(crate) fn accept(&mut self, tx: InboxTx, token: Token, listener: Token) -> Job {
        let Some(l) = self.listeners.get(&listener).cloned() else {
            return Box::pin(async move {
                let why = "no such listener".to_owned();
                let _ = tx
                    .send(Inbox::Answer(token, OwnedAnswer::Failed(why)))
                    .await;
            });
        };
        let (wtx, wrx) = async_channel::unbounded();
        self.writers.insert(token, wtx);
        Box::pin(async move {
            match l.accept().await {
                Ok((s, from)) => {
                    let accepted = Inbox::Answer(token, OwnedAnswer::Accepted(from));
                    if tx.send(accepted).await.is_ok() {
                        run(s, token, wrx, tx).await;
                    }
                }
                Err(e) => {
                    let _ = tx
                        .send(Inbox::Answer(token, OwnedAnswer::Failed(e.to_string())))
                        .await;
                }
            }
        })
    }

    /// The task that opens stream `token` to `to`, giving up connecting at `deadline`.
    pub(crate) fn open(
        &mut self,
        tx: InboxTx,
        token: Token,
        to: Endpoint,
        deadline: StdInstant,
    ) -> Job {
        let (wtx, wrx) = async_channel::unbounded();
        self.writers.insert(token, wtx);
        Box::pin(async move {
            let connect = async {
                let r = match &to {
                    Endpoint::Addr(a) => TcpStream::connect(*a).await,
                    Endpoint::Host { host, port } => {
                        TcpStream::connect((host.as_str(), *port)).await
                    }
                    other => Err(std::io::Error::other(format!(
                        "unsupported endpoint {other}"
                    ))),
                };
                Some(r)
            };
            let timeout = async {
                Timer::at(deadline).await;
                None
            };
            match connect.or(timeout).await {
                Some(Ok(s)) => {
                    let _ = s.set_nodelay(true);
                    let peer = s.peer_addr().unwrap_or_else(|_| ([0, 0, 0, 0], 0).into());
                    if tx
                        .send(Inbox::Answer(token, OwnedAnswer::Opened(peer)))
                        .await
                        .is_ok()
                    {
                        run(s, token, wrx, tx).await;
                    }
                }
                Some(Err(e)) => {
                    let why = format!("{to}: {e}");
                    let _ = tx
                        .send(Inbox::Answer(token, OwnedAnswer::Failed(why)))
                        .await;
                }
                None => {
                    let _ = tx.send(Inbox::Answer(token, OwnedAnswer::TimedOut)).await;
                }
            }
        })
    }

    /// Queues `data` on stream `stream`; a stream that is gone takes nothing.
    pub(crate) fn write(&self, stream: Token, data: Bytes) {
        if let Some(w) = self.writers.get(&stream) {
            let _ = w.try_send(data);
        }
    }

    /// Forgets `token`: a listener closes; a stream's task is dropped by the caller.
    pub(crate) fn close(&mut self, token: Token) {
        self.listeners.remove(&token);
        self.writers.remove(&token);
    }

    pub(crate) fn close_all(&mut self) {
        self.listeners.clear();
        self.writers.clear();
    }
}

enum Step {
    Read(std::io::Result<usize>),
    Write(Option<Bytes>),
}

/// Passes on what `s` reads and writes what comes on `writes`, until either side ends.
async fn run(s: TcpStream, token: Token, writes: async_channel::Receiver<Bytes>, tx: InboxTx) {
    let mut read = s.clone();
    let mut write = s;
    let mut buf = vec![0u8; 64 * 1024];
    let last = loop {
        let step = async { Step::Read(read.read(&mut buf).await) }
            .or(async { Step::Write(writes.recv().await.ok()) })
            .await;
        match step {
            Step::Read(Ok(0)) => break OwnedAnswer::Closed,
            Step::Read(Ok(n)) => {
                let data = OwnedAnswer::Data(buf[..n].to_vec());
                if tx.send(Inbox::Answer(token, data)).await.is_err() {
                    return;
                }
            }
            Step::Read(Err(e)) => break OwnedAnswer::Failed(e.to_string()),
            Step::Write(Some(data)) => {
                if let Err(e) = write.write_all(&data).await {
                    break OwnedAnswer::Failed(format!("write failed: {e}"));
                }
            }
            // The core closed the stream.
            Step::Write(None) => return,
        }
    };
    let _ = tx.send(Inbox::Answer(token, last)).await;
}
