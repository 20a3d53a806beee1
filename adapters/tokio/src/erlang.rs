//! The `erlang` connector: this process as a (hidden) Erlang node that real BEAM nodes see
//! connected. The protocol lives in `muster_core::dist`; this moves its bytes over TCP.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use muster_core::dist::{Admission, Link, LinkConfig, LinkEvent};
use muster_core::proto::epmd::{self, NodeEntry};
use muster_core::{Node, NodeName, Rng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::AbortHandle;
use tokio::time::Instant as TokioInstant;

use crate::epmd::{ask, register};
use muster_core::connector::{BoxFuture, ConnectOutcome, Connector, DisconnectOutcome, Notices};

/// How this node takes part in Erlang distribution.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ErlangConfig {
    /// This node's full name, `name@host`.
    pub name: NodeName,
    /// The cookie.
    pub cookie: String,
    /// The EPMD port, on this host and on every peer's host (`ERL_EPMD_PORT`, else 4369).
    pub epmd_port: u16,
    /// Where to accept distribution connections (port 0: any).
    pub listen: SocketAddr,
    /// Stay out of peers' `nodes()` and global name registration. Default true.
    pub hidden: bool,
    /// Erlang's `net_ticktime`. Default 60 s.
    pub tick_time: Duration,
}

impl ErlangConfig {
    /// A hidden node `name` with `cookie`, EPMD on 4369, listening on any port.
    pub fn new(name: NodeName, cookie: impl Into<String>) -> Self {
        ErlangConfig {
            name,
            cookie: cookie.into(),
            epmd_port: epmd::DEFAULT_PORT,
            listen: SocketAddr::from(([0, 0, 0, 0], 0)),
            hidden: true,
            tick_time: Duration::from_secs(60),
        }
    }

    /// Sets the EPMD port.
    pub fn epmd_port(mut self, port: u16) -> Self {
        self.epmd_port = port;
        self
    }

    /// Sets where distribution connections are accepted.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// Sets `net_ticktime`.
    pub fn tick_time(mut self, d: Duration) -> Self {
        self.tick_time = d;
        self
    }

    /// Visible (published) instead of hidden.
    pub fn hidden(mut self, hidden: bool) -> Self {
        self.hidden = hidden;
        self
    }
}

struct Held {
    id: u64,
    /// Dropping this closes the link.
    _stop: oneshot::Sender<()>,
}

struct Inner {
    link: LinkConfig,
    epmd_port: u16,
    origin: TokioInstant,
    rng: Mutex<Rng>,
    next_id: Mutex<u64>,
    up: Mutex<BTreeMap<NodeName, Held>>,
    /// Nodes we are connecting to right now (for simultaneous connects).
    dialing: Mutex<BTreeSet<NodeName>>,
    notices: OnceLock<Notices>,
    /// Signalled whenever a link comes up.
    came_up: tokio::sync::Notify,
    local: SocketAddr,
    /// The EPMD registration and the accept loop, stopped by `shutdown`.
    tasks: Mutex<Vec<AbortHandle>>,
    stopped: std::sync::atomic::AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Inner {
    fn now(&self) -> muster_core::Instant {
        muster_core::Instant::from_duration(self.origin.elapsed())
    }

    fn at(&self, i: muster_core::Instant) -> TokioInstant {
        self.origin + i.since_origin()
    }

    fn id(&self) -> u64 {
        let mut n = lock(&self.next_id);
        *n += 1;
        *n
    }

    /// Who may connect: the acceptor's rules for a simultaneous or a duplicate connection.
    fn admission(&self, peer: &NodeName) -> Admission {
        if lock(&self.up).contains_key(peer) {
            return Admission::Alive;
        }
        if lock(&self.dialing).contains(peer) {
            // Erlang's rule: the node with the greater name keeps its own attempt.
            return if peer.as_str() > self.link.name.as_str() {
                Admission::OkSimultaneous
            } else {
                Admission::Nok
            };
        }
        Admission::Ok
    }
}

/// The Erlang distribution connector; see the module documentation.
#[derive(Clone)]
pub struct ErlangConnector {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ErlangConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ErlangConnector")
            .field("name", &self.inner.link.name)
            .field("listen", &self.inner.local)
            .finish()
    }
}

impl ErlangConnector {
    /// Listens for distribution connections and registers with the EPMD on this host, which
    /// must be running (Erlang's, or muster's own from [`run_epmd`](crate::run_epmd)). Fails
    /// naming what went wrong.
    pub async fn start(config: ErlangConfig) -> io::Result<ErlangConnector> {
        let listener = TcpListener::bind(config.listen).await.map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot listen for distribution on {}: {e}", config.listen),
            )
        })?;
        let local = listener.local_addr()?;
        let entry = NodeEntry::new(config.name.name(), local.port(), config.hidden);
        let (creation, registration) = register(("127.0.0.1", config.epmd_port), &entry)
            .await
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "cannot register {} with EPMD on port {}: {e}",
                        config.name, config.epmd_port
                    ),
                )
            })?;
        let seed = muster_net::try_seed()?;
        let mut link = LinkConfig::new(config.name.clone(), config.cookie.clone(), creation);
        link.hidden = config.hidden;
        link.tick_time = config.tick_time;
        let inner = Arc::new(Inner {
            link,
            epmd_port: config.epmd_port,
            origin: TokioInstant::now(),
            rng: Mutex::new(Rng::from_seed(seed)),
            next_id: Mutex::new(0),
            up: Mutex::new(BTreeMap::new()),
            dialing: Mutex::new(BTreeSet::new()),
            notices: OnceLock::new(),
            came_up: tokio::sync::Notify::new(),
            local,
            tasks: Mutex::new(Vec::new()),
            stopped: std::sync::atomic::AtomicBool::new(false),
        });
        // The registration lasts as long as this connection: hold it.
        let name = config.name.clone();
        let held = tokio::spawn(async move {
            let mut reg = registration;
            let mut buf = [0u8; 64];
            while matches!(reg.read(&mut buf).await, Ok(n) if n > 0) {}
            tracing::warn!(node = %name, "EPMD closed this node's registration; other nodes can no longer find it");
        });
        lock(&inner.tasks).push(held.abort_handle());
        let weak = Arc::downgrade(&inner);
        let accept = tokio::spawn(async move {
            while let Ok((stream, from)) = listener.accept().await {
                let Some(inner) = weak.upgrade() else { return };
                let now = inner.now();
                let link = Link::accept(inner.link.clone(), now, &mut lock(&inner.rng));
                tracing::debug!(%from, "incoming distribution connection");
                tokio::spawn(drive(inner, stream, link, None));
            }
        });
        lock(&inner.tasks).push(accept.abort_handle());
        Ok(ErlangConnector { inner })
    }

    /// Where distribution connections are accepted.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local
    }

    /// The creation EPMD gave this node.
    pub fn creation(&self) -> u32 {
        self.inner.link.creation
    }

    /// Leaves distribution: unregisters from EPMD, stops accepting, and closes every
    /// connection. The connector connects nothing afterwards.
    pub fn shutdown(&self) {
        self.inner
            .stopped
            .store(true, std::sync::atomic::Ordering::SeqCst);
        for t in lock(&self.inner.tasks).drain(..) {
            t.abort();
        }
        // Dropping the entries drops their stop senders, which closes the links.
        lock(&self.inner.up).clear();
    }

    /// The nodes connected now.
    pub fn connected(&self) -> Vec<NodeName> {
        lock(&self.inner.up).keys().cloned().collect()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        for t in lock(&self.tasks).drain(..) {
            t.abort();
        }
    }
}

/// Runs one link over `stream` until it is down. `dialed` is the connect call waiting for
/// the outcome of a link we opened.
async fn drive(
    inner: Arc<Inner>,
    stream: TcpStream,
    mut link: Link,
    mut dialed: Option<oneshot::Sender<Result<(), Dial>>>,
) {
    let _ = stream.set_nodelay(true);
    let id = inner.id();
    let (mut read, mut write) = stream.into_split();
    let mut buf = vec![0u8; 64 * 1024];
    let mut registered: Option<NodeName> = None;
    // Resolves when this link's entry is dropped from the table (disconnect, replacement).
    let mut stop: Option<oneshot::Receiver<()>> = None;
    loop {
        // Events may queue bytes (an admission queues the status and the challenge):
        // write, handle events, and repeat until both are quiet.
        if let Some(bytes) = link.poll_transmit() {
            if let Err(e) = write.write_all(&bytes).await {
                link.close(format!("write failed: {e}"));
            }
            continue;
        }
        if let Some(ev) = link.poll_event() {
            match ev {
                LinkEvent::Hello { peer } => {
                    let answer = inner.admission(&peer);
                    link.admit(inner.now(), answer);
                }
                LinkEvent::Up { .. } if inner.stopped.load(std::sync::atomic::Ordering::SeqCst) => {
                    link.close("this node left distribution");
                }
                LinkEvent::Up { peer, .. } => {
                    let (stop_tx, stop_rx) = oneshot::channel::<()>();
                    // Replacing a stale connection to the same node drops its stop sender,
                    // which closes it.
                    lock(&inner.up).insert(peer.clone(), Held { id, _stop: stop_tx });
                    stop = Some(stop_rx);
                    registered = Some(peer.clone());
                    inner.came_up.notify_waiters();
                    match dialed.take() {
                        Some(tx) => {
                            let _ = tx.send(Ok(()));
                        }
                        None => {
                            tracing::info!(node = %peer, "incoming distribution connection up");
                            if let Some(n) = inner.notices.get() {
                                n.node_up(peer);
                            }
                        }
                    }
                }
                LinkEvent::Down { reason } => {
                    if registered.is_none() && dialed.is_none() {
                        // An incoming connection that never came up (a wrong cookie, a
                        // refused name): nobody else hears of it.
                        tracing::warn!(%reason, "refused an incoming distribution connection");
                    }
                    let peer = registered.take().or_else(|| link.peer().cloned());
                    if let Some(p) = &peer {
                        let mut up = lock(&inner.up);
                        if up.get(p).is_some_and(|h| h.id == id) {
                            up.remove(p);
                            drop(up);
                            if dialed.is_none()
                                && let Some(n) = inner.notices.get()
                            {
                                n.node_down(p.clone(), reason.clone());
                            }
                        }
                    }
                    if let Some(tx) = dialed.take() {
                        let _ = tx.send(Err(Dial {
                            reason,
                            lost_race: link.lost_race(),
                        }));
                    }
                    let _ = write.shutdown().await;
                    return;
                }
                _ => {}
            }
            continue;
        }
        if link.is_closed() {
            continue;
        }
        // Nothing to write and no event: wait for input.
        let wake = link.poll_timeout().map(|t| inner.at(t));
        tokio::select! {
            r = read.read(&mut buf) => match r {
                Ok(0) => link.peer_closed(),
                Ok(n) => link.handle_data(inner.now(), &buf[..n]),
                Err(e) => link.close(format!("read failed: {e}")),
            },
            _ = sleep_until(wake) => link.handle_timeout(inner.now()),
            _ = stopped(&mut stop) => link.close("disconnected by this node"),
        }
    }
}

/// Why a link we opened did not come up.
struct Dial {
    reason: String,
    /// The peer's own connection to us wins a simultaneous connect.
    lost_race: bool,
}

/// Resolves when the link's stop sender is dropped; never before the link is up.
async fn stopped(stop: &mut Option<oneshot::Receiver<()>>) {
    match stop {
        Some(rx) => {
            let _ = rx.await;
        }
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<TokioInstant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Where `node` listens: its host's EPMD says.
async fn port_of(node: &Node, epmd_port: u16) -> Result<SocketAddr, String> {
    let host: String = match node.addr {
        Some(a) => a.ip().to_string(),
        None => node.name.host().to_owned(),
    };
    let reply = ask(
        (host.as_str(), epmd_port),
        &epmd::port_please_request(node.name.name()),
    )
    .await
    .map_err(|e| format!("EPMD on {host}:{epmd_port}: {e}"))?;
    let entry = epmd::parse_port2(&reply)
        .map_err(|e| format!("EPMD on {host}:{epmd_port}: {e}"))?
        .ok_or_else(|| {
            format!(
                "{} is not registered with EPMD on {host}:{epmd_port}",
                node.name
            )
        })?;
    let ip: IpAddr = match node.addr {
        Some(a) => a.ip(),
        None => tokio::net::lookup_host((host.as_str(), entry.port))
            .await
            .map_err(|e| format!("{host}: {e}"))?
            .next()
            .map(|a| a.ip())
            .ok_or_else(|| format!("{host}: no address"))?,
    };
    Ok(SocketAddr::new(ip, entry.port))
}

impl Connector for ErlangConnector {
    fn connect(&self, node: Node) -> BoxFuture<ConnectOutcome> {
        let inner = self.inner.clone();
        Box::pin(async move {
            if lock(&inner.up).contains_key(&node.name) {
                return ConnectOutcome::Connected;
            }
            if inner.stopped.load(std::sync::atomic::Ordering::SeqCst) {
                return ConnectOutcome::Failed("this node left distribution".to_owned());
            }
            lock(&inner.dialing).insert(node.name.clone());
            let result = async {
                let addr = port_of(&node, inner.epmd_port)
                    .await
                    .map_err(|reason| Dial {
                        reason,
                        lost_race: false,
                    })?;
                let stream = TcpStream::connect(addr).await.map_err(|e| Dial {
                    reason: format!("{} at {addr}: {e}", node.name),
                    lost_race: false,
                })?;
                let link = Link::connect(
                    inner.link.clone(),
                    node.name.clone(),
                    inner.now(),
                    &mut lock(&inner.rng),
                );
                let (tx, rx) = oneshot::channel();
                tokio::spawn(drive(inner.clone(), stream, link, Some(tx)));
                rx.await.unwrap_or_else(|_| {
                    Err(Dial {
                        reason: "the link stopped".to_owned(),
                        lost_race: false,
                    })
                })
            }
            .await;
            lock(&inner.dialing).remove(&node.name);
            match result {
                Ok(()) => ConnectOutcome::Connected,
                // A simultaneous connect the other side won: its connection to us is coming.
                Err(d) if d.lost_race => {
                    let wait = async {
                        loop {
                            let notified = inner.came_up.notified();
                            if lock(&inner.up).contains_key(&node.name) {
                                return;
                            }
                            notified.await;
                        }
                    };
                    match tokio::time::timeout(inner.link.handshake_timeout, wait).await {
                        Ok(()) => ConnectOutcome::Connected,
                        Err(_) => ConnectOutcome::Failed(d.reason),
                    }
                }
                Err(d) => ConnectOutcome::Failed(d.reason),
            }
        })
    }

    fn disconnect(&self, node: NodeName) -> BoxFuture<DisconnectOutcome> {
        let held = lock(&self.inner.up).remove(&node);
        Box::pin(async move {
            match held {
                Some(h) => {
                    drop(h);
                    DisconnectOutcome::Disconnected
                }
                None => DisconnectOutcome::NotConnected,
            }
        })
    }

    fn list_nodes(&self) -> BoxFuture<Result<Vec<NodeName>, String>> {
        let nodes = self.connected();
        Box::pin(async move { Ok(nodes) })
    }

    fn attach(&self, notices: Notices) {
        let _ = self.inner.notices.set(notices);
    }
}
