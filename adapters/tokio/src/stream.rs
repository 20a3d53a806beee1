//! Streams that stay open, and listeners, for the core's own connector (Erlang
//! distribution): each stream a task that passes on what it reads and writes what the core
//! sends it.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use muster_core::{Endpoint, OwnedAnswer, Token};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant as TokioInstant;

use crate::exec::Answers;

/// The listeners and the write sides of the open streams, by token.
#[derive(Default)]
pub(crate) struct Streams {
    listeners: HashMap<Token, Arc<TcpListener>>,
    writers: HashMap<Token, mpsc::UnboundedSender<Bytes>>,
}

impl Streams {
    /// Listens on `bind`; the bound address, or why not.
    pub(crate) fn listen(&mut self, token: Token, bind: std::net::SocketAddr) -> OwnedAnswer {
        let opened = std::net::TcpListener::bind(bind)
            .and_then(|l| {
                l.set_nonblocking(true)?;
                TcpListener::from_std(l)
            })
            .and_then(|l| Ok((l.local_addr()?, l)));
        match opened {
            Ok((local, l)) => {
                self.listeners.insert(token, Arc::new(l));
                OwnedAnswer::Opened(local)
            }
            Err(e) => OwnedAnswer::Failed(format!("cannot listen on {bind}: {e}")),
        }
    }

    /// Takes the next connection on `listener` as stream `token`.
    pub(crate) fn accept(
        &mut self,
        tasks: &mut JoinSet<()>,
        answers: &Answers,
        token: Token,
        listener: Token,
    ) -> Option<AbortHandle> {
        let Some(l) = self.listeners.get(&listener).cloned() else {
            let tx = answers.clone();
            tasks.spawn(async move {
                let why = "no such listener".to_owned();
                let _ = tx.send((token, OwnedAnswer::Failed(why))).await;
            });
            return None;
        };
        let (wtx, wrx) = mpsc::unbounded_channel();
        self.writers.insert(token, wtx);
        let tx = answers.clone();
        Some(tasks.spawn(async move {
            match l.accept().await {
                Ok((s, from)) => {
                    if tx.send((token, OwnedAnswer::Accepted(from))).await.is_ok() {
                        run(s, token, wrx, tx).await;
                    }
                }
                Err(e) => {
                    let _ = tx.send((token, OwnedAnswer::Failed(e.to_string()))).await;
                }
            }
        }))
    }

    /// Opens stream `token` to `to`, giving up connecting at `deadline`.
    pub(crate) fn open(
        &mut self,
        tasks: &mut JoinSet<()>,
        answers: &Answers,
        token: Token,
        to: Endpoint,
        deadline: TokioInstant,
    ) -> AbortHandle {
        let (wtx, wrx) = mpsc::unbounded_channel();
        self.writers.insert(token, wtx);
        let tx = answers.clone();
        tasks.spawn(async move {
            let connect = async {
                match &to {
                    Endpoint::Addr(a) => TcpStream::connect(a).await,
                    Endpoint::Host { host, port } => {
                        TcpStream::connect((host.as_str(), *port)).await
                    }
                    other => Err(std::io::Error::other(format!(
                        "unsupported endpoint {other}"
                    ))),
                }
            };
            match tokio::time::timeout_at(deadline, connect).await {
                Ok(Ok(s)) => {
                    let _ = s.set_nodelay(true);
                    let peer = s.peer_addr().unwrap_or_else(|_| ([0, 0, 0, 0], 0).into());
                    if tx.send((token, OwnedAnswer::Opened(peer))).await.is_ok() {
                        run(s, token, wrx, tx).await;
                    }
                }
                Ok(Err(e)) => {
                    let _ = tx
                        .send((token, OwnedAnswer::Failed(format!("{to}: {e}"))))
                        .await;
                }
                Err(_) => {
                    let _ = tx.send((token, OwnedAnswer::TimedOut)).await;
                }
            }
        })
    }

    /// Queues `data` on stream `stream`; a stream that is gone takes nothing.
    pub(crate) fn write(&self, stream: Token, data: Bytes) {
        if let Some(w) = self.writers.get(&stream) {
            let _ = w.send(data);
        }
    }

    /// Forgets `token`: a listener closes; a stream's task is aborted by the caller.
    pub(crate) fn close(&mut self, token: Token) {
        self.listeners.remove(&token);
        self.writers.remove(&token);
    }

    pub(crate) fn close_all(&mut self) {
        self.listeners.clear();
        self.writers.clear();
    }
}

/// Passes on what `s` reads and writes what comes on `writes`, until either side ends.
async fn run(s: TcpStream, token: Token, mut writes: mpsc::UnboundedReceiver<Bytes>, tx: Answers) {
    let (mut read, mut write) = s.into_split();
    let mut buf = vec![0u8; 64 * 1024];
    let last = loop {
        tokio::select! {
            r = read.read(&mut buf) => match r {
                Ok(0) => break OwnedAnswer::Closed,
                Ok(n) => {
                    if tx.send((token, OwnedAnswer::Data(buf[..n].to_vec()))).await.is_err() {
                        return;
                    }
                }
                Err(e) => break OwnedAnswer::Failed(e.to_string()),
            },
            w = writes.recv() => match w {
                Some(data) => {
                    if let Err(e) = write.write_all(&data).await {
                        break OwnedAnswer::Failed(format!("write failed: {e}"));
                    }
                }
                // The core closed the stream.
                None => return,
            },
        }
    };
    let _ = tx.send((token, last)).await;
}
