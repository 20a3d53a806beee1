//! Talking to an EPMD over TCP, and running muster's own.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use muster_core::Rng;
use muster_core::dist::epmd;
use muster_core::dist::{EpmdOutput, EpmdServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

/// How long a failed accept waits before the next, at first and at most.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// How long a one-shot EPMD request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Sends `request` to the EPMD at `at` and reads the reply until the EPMD closes.
pub(crate) async fn ask(at: (&str, u16), request: &[u8]) -> io::Result<Vec<u8>> {
    let job = async {
        let mut s = TcpStream::connect(at).await?;
        s.write_all(request).await?;
        let mut reply = Vec::new();
        s.take(64 * 1024).read_to_end(&mut reply).await?;
        Ok(reply)
    };
    tokio::time::timeout(REQUEST_TIMEOUT, job)
        .await
        .unwrap_or_else(|_| {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "EPMD did not answer",
            ))
        })
}

/// The names registered with the EPMD at `at`, as its `NAMES` reply lists them.
pub async fn epmd_names(at: (&str, u16)) -> io::Result<Vec<String>> {
    let reply = ask(at, &epmd::names_request()).await?;
    let names = epmd::parse_names(&reply).map_err(|e| io::Error::other(e.to_string()))?;
    Ok(names.nodes.into_iter().map(|(name, _)| name).collect())
}

/// Whether an EPMD answers `NAMES` at `at`.
pub async fn epmd_running(at: (&str, u16)) -> bool {
    match ask(at, &epmd::names_request()).await {
        Ok(reply) => epmd::parse_names(&reply).is_ok(),
        Err(_) => false,
    }
}

/// A running embedded EPMD. Dropping it stops it.
#[derive(Debug)]
pub struct EpmdHandle {
    addr: SocketAddr,
    task: AbortHandle,
    requests: Arc<AtomicU64>,
}

impl EpmdHandle {
    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Requests answered so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

impl Drop for EpmdHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

enum ConnMsg {
    Data(u64, Vec<u8>),
    Closed(u64),
}

/// Starts muster's own EPMD on `addr` (the state machine is `muster_core::dist::EpmdServer`;
/// this only moves bytes). Real `erl` nodes register with it and query it as with Erlang's;
/// as Erlang's, it takes registrations only from this host. A failure to accept (out of
/// descriptors) backs off rather than spins.
pub async fn run_epmd(addr: SocketAddr) -> io::Result<EpmdHandle> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen for EPMD on {addr}: {e}")))?;
    let local = listener.local_addr()?;
    let seed = muster_net::try_seed()?;
    let mut server = EpmdServer::new(local.port(), &mut Rng::from_seed(seed));
    let requests = Arc::new(AtomicU64::new(0));
    let counted = requests.clone();
    let (tx, mut rx) = mpsc::channel::<ConnMsg>(1024);
    let origin = tokio::time::Instant::now();
    let task = tokio::spawn(async move {
        let mut writers: HashMap<u64, OwnedWriteHalf> = HashMap::new();
        let mut readers: HashMap<u64, AbortHandle> = HashMap::new();
        let mut next = 0u64;
        let mut backoff = ACCEPT_BACKOFF_MIN;
        let mut shed = false;
        let now = || muster_core::Instant::from_duration(origin.elapsed());
        loop {
            let wake = server.poll_timeout().map(|at| origin + at.since_origin());
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        backoff = ACCEPT_BACKOFF_MIN;
                        next += 1;
                        let id = next;
                        server.handle_open(now(), id, peer);
                        {
                            let _ = stream.set_nodelay(true);
                            let (read, write) = stream.into_split();
                            writers.insert(id, write);
                            let tx = tx.clone();
                            let reader = tokio::spawn(async move {
                                loop {
                                    // Read into the stack once readable: an idle connection
                                    // holds no buffer while it waits.
                                    if read.readable().await.is_err() {
                                        break;
                                    }
                                    // The buffer's scope ends before the next await, so
                                    // it is not part of the task's state.
                                    let got = {
                                        let mut buf = [0u8; 1024];
                                        read.try_read(&mut buf).map(|n| buf[..n].to_vec())
                                    };
                                    match got {
                                        Ok(data) if data.is_empty() => break,
                                        Ok(data) => {
                                            if tx.send(ConnMsg::Data(id, data)).await.is_err() {
                                                return;
                                            }
                                        }
                                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                                        Err(_) => break,
                                    }
                                }
                                let _ = tx.send(ConnMsg::Closed(id)).await;
                            });
                            readers.insert(id, reader.abort_handle());
                        }
                    }
                    Err(e) => {
                        // Out of descriptors, most likely: give one back by closing the
                        // connection that has waited longest for its request, and try again;
                        // with none to close, wait, longer each time, so that the failure
                        // costs nothing while it lasts.
                        tracing::debug!(%e, "EPMD cannot accept");
                        if server.shed() {
                            shed = true;
                        } else {
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                        }
                    }
                },
                Some(msg) = rx.recv() => match msg {
                    ConnMsg::Data(id, data) => server.handle_data(id, &data),
                    ConnMsg::Closed(id) => {
                        server.handle_closed(id);
                        writers.remove(&id);
                        readers.remove(&id);
                    }
                },
                _ = sleep_until(wake) => server.handle_timeout(now()),
            }
            while let Some(out) = server.poll_output() {
                match out {
                    EpmdOutput::Write { conn, data } => {
                        if let Some(w) = writers.get_mut(&conn) {
                            let _ = w.write_all(&data).await;
                        }
                    }
                    EpmdOutput::Close { conn } => {
                        if let Some(mut w) = writers.remove(&conn) {
                            let _ = w.shutdown().await;
                        }
                        if let Some(r) = readers.remove(&conn) {
                            r.abort();
                        }
                    }
                    EpmdOutput::Stop => {
                        for (_, r) in readers.drain() {
                            r.abort();
                        }
                        return;
                    }
                    other => tracing::debug!(?other, "EPMD output this runner does not know"),
                }
            }
            if std::mem::take(&mut shed) {
                // The descriptor is free once the closed connection's reader task has ended:
                // let it end before the next accept.
                tokio::task::yield_now().await;
            }
            counted.store(server.requests(), Ordering::Relaxed);
        }
    });
    Ok(EpmdHandle {
        addr: local,
        task: task.abort_handle(),
        requests,
    })
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
