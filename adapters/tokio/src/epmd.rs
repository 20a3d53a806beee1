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
    Open(u64, OwnedWriteHalf),
    Data(u64, Vec<u8>),
    Closed(u64),
}

/// Starts muster's own EPMD on `addr` (the state machine is `muster_core::dist::EpmdServer`;
/// this only moves bytes). Real `erl` nodes register with it and query it as with Erlang's.
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
    let task = tokio::spawn(async move {
        let mut writers: HashMap<u64, OwnedWriteHalf> = HashMap::new();
        let mut readers: HashMap<u64, AbortHandle> = HashMap::new();
        let mut next = 0u64;
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let _ = stream.set_nodelay(true);
                    next += 1;
                    let id = next;
                    let (mut read, write) = stream.into_split();
                    let tx = tx.clone();
                    let reader = tokio::spawn(async move {
                        let _ = tx.send(ConnMsg::Open(id, write)).await;
                        let mut buf = vec![0u8; 4096];
                        loop {
                            match read.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    if tx.send(ConnMsg::Data(id, buf[..n].to_vec())).await.is_err() {
                                        return;
                                    }
                                }
                            }
                        }
                        let _ = tx.send(ConnMsg::Closed(id)).await;
                    });
                    readers.insert(id, reader.abort_handle());
                }
                Some(msg) = rx.recv() => match msg {
                    ConnMsg::Open(id, w) => {
                        writers.insert(id, w);
                        server.handle_open(id);
                    }
                    ConnMsg::Data(id, data) => server.handle_data(id, &data),
                    ConnMsg::Closed(id) => {
                        server.handle_closed(id);
                        writers.remove(&id);
                        readers.remove(&id);
                    }
                }
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
                }
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
