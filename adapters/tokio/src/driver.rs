//! The loop that drives a `Cluster` on tokio, and the handle the application keeps.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use muster_core::{
    Cluster, ConfigError, Event, Input, Metrics, NodeName, Output, TopologyId, TopologySpec,
};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant as TokioInstant;

use crate::exec::{self, Owned};
use crate::stream::Streams;
use crate::udp::{Arrival, Sockets};
use muster_core::connector::{Connector, Notice, Notices};
use muster_net::setup::{Ready, Setup};

const LEAVE_BACKSTOP: Duration = Duration::from_secs(60);

/// Configures and starts a cluster on the current tokio runtime.
///
/// ```no_run
/// # async fn demo() -> Result<(), muster_core::ConfigError> {
/// use std::time::Duration;
/// use muster_core::strategy::epmd::{Epmd, EpmdConfig};
/// use muster_core::{ConnectPolicy, Node, TopologySpec};
/// use muster_tokio::{Builder, TcpConnector};
///
/// let hosts = ["app@10.0.0.1", "app@10.0.0.2"].map(|h| Node::new(h.parse().unwrap()));
/// let (handle, mut events) = Builder::new(TcpConnector::new(7000))
///     .this_node("app@10.0.0.1".parse().unwrap())
///     .topology(TopologySpec {
///         name: "static".into(),
///         strategy: Box::new(Epmd::new(EpmdConfig::new(hosts).reconnect_every(Duration::from_secs(5)))),
///         policy: ConnectPolicy::default(),
///     })
///     .spawn()?;
/// while let Some(event) = events.recv().await {
///     println!("{event}");
/// }
/// handle.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Builder {
    setup: Setup,
}

impl Builder {
    muster_net::builder_methods!();

    fn from_setup(setup: Setup) -> Self {
        Builder { setup }
    }

    /// Starts the cluster on the current tokio runtime. Returns its handle and a stream of
    /// every event from the first one on. Fails on a bad topology (duplicate name, too many).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, or if the operating system has no random source.
    pub fn spawn(self) -> Result<(ClusterHandle, Events), ConfigError> {
        let Ready {
            cluster,
            connector,
            event_capacity,
            list_timeout,
        } = self.setup.ready()?;
        let origin = TokioInstant::now();
        let (events_tx, events_rx) = broadcast::channel(event_capacity);
        let (cmd_tx, cmd_rx) = mpsc::channel(64);
        let (members_tx, members_rx) = watch::channel(Vec::new());
        let (metrics_tx, metrics_rx) = watch::channel(cluster.metrics());
        let (notice_tx, notice_rx) = mpsc::channel(1024);
        connector.attach(Notices::new(move |n| {
            let _ = notice_tx.try_send(n);
        }));
        let (answers_tx, answers_rx) = mpsc::channel(1024);
        let (arrivals_tx, arrivals_rx) = mpsc::channel(1024);
        let (send_failures_tx, send_failures_rx) = mpsc::channel(64);
        let driver = Driver {
            sockets: Sockets::default(),
            links: Streams::default(),
            arrivals: arrivals_tx,
            send_failures: send_failures_tx,
            immediate: Vec::new(),
            cluster,
            connector,
            origin,
            list_timeout,
            tasks: JoinSet::new(),
            streams: HashMap::new(),
            answers_tx,
            events: events_tx.clone(),
            members: members_tx,
            metrics: metrics_tx,
            published: u64::MAX,
        };
        tokio::spawn(driver.run(Inputs {
            cmd: cmd_rx,
            answers: answers_rx,
            notices: notice_rx,
            arrivals: arrivals_rx,
            send_failures: send_failures_rx,
        }));
        let handle = ClusterHandle {
            cmd: cmd_tx,
            members: members_rx,
            metrics: metrics_rx,
            // Weak, so that the event streams end when the driver stops even while handles
            // live.
            events: events_tx.downgrade(),
        };
        Ok((handle, Events::new(events_rx)))
    }
}

enum Command {
    Stop {
        leave: bool,
        done: oneshot::Sender<()>,
    },
    Add {
        spec: TopologySpec,
        done: oneshot::Sender<Result<TopologyId, ConfigError>>,
    },
    Remove {
        id: TopologyId,
        done: oneshot::Sender<bool>,
    },
}

/// The application's handle on a running cluster. Cheap to clone. When every handle is
/// dropped the cluster stops, as with [`shutdown`](ClusterHandle::shutdown).
#[derive(Clone, Debug)]
pub struct ClusterHandle {
    cmd: mpsc::Sender<Command>,
    members: watch::Receiver<Vec<NodeName>>,
    metrics: watch::Receiver<Metrics>,
    events: broadcast::WeakSender<Event>,
}

impl ClusterHandle {
    /// The nodes connected now, in name order.
    pub fn members(&self) -> Vec<NodeName> {
        self.members.borrow().clone()
    }

    /// Waits until the members satisfy `pred`, and returns them. Returns `None` if the
    /// cluster stopped first.
    pub async fn wait_for_members(
        &self,
        mut pred: impl FnMut(&[NodeName]) -> bool,
    ) -> Option<Vec<NodeName>> {
        let mut rx = self.members.clone();
        let r = rx.wait_for(|m| pred(m)).await.ok()?;
        Some(r.clone())
    }

    /// A snapshot of the core's counters.
    pub fn metrics(&self) -> Metrics {
        *self.metrics.borrow()
    }

    /// Waits until the counters satisfy `pred` (they are published after every step of the
    /// cluster), and returns them. Returns `None` if the cluster stopped first.
    pub async fn wait_for_metrics(
        &self,
        mut pred: impl FnMut(&Metrics) -> bool,
    ) -> Option<Metrics> {
        let mut rx = self.metrics.clone();
        let m = rx.wait_for(|m| pred(m)).await.ok()?;
        Some(*m)
    }

    /// A new stream of the events from now on.
    pub fn subscribe(&self) -> Events {
        match self.events.upgrade() {
            Some(tx) => Events::new(tx.subscribe()),
            // The cluster has stopped: a stream that has ended.
            None => Events::new(broadcast::channel(1).1),
        }
    }

    /// Adds a topology to the running cluster.
    pub async fn add_topology(&self, spec: TopologySpec) -> Result<TopologyId, ConfigError> {
        let (done, rx) = oneshot::channel();
        if self.cmd.send(Command::Add { spec, done }).await.is_err() {
            return Err(ConfigError::invalid(
                "topologies",
                "the cluster has stopped",
            ));
        }
        rx.await.unwrap_or_else(|_| {
            Err(ConfigError::invalid(
                "topologies",
                "the cluster has stopped",
            ))
        })
    }

    /// Removes a topology from the running cluster; its nodes are lost to it, and those no
    /// other topology wants are disconnected. Returns whether it existed.
    pub async fn remove_topology(&self, id: TopologyId) -> bool {
        let (done, rx) = oneshot::channel();
        if self.cmd.send(Command::Remove { id, done }).await.is_err() {
            return false;
        }
        rx.await.unwrap_or(false)
    }

    /// Stops the cluster: no more discovery, no more connects. Connections are left as they
    /// are (they live as long as the connector does).
    pub async fn shutdown(self) {
        self.stop(false).await;
    }

    /// Leaves the cluster: stops discovery, disconnects every node this cluster connected,
    /// waits until each disconnect is answered or reaches its deadline, then stops.
    pub async fn leave(self) {
        self.stop(true).await;
    }

    async fn stop(self, leave: bool) {
        let (done, rx) = oneshot::channel();
        if self.cmd.send(Command::Stop { leave, done }).await.is_ok() {
            let _ = rx.await;
        }
    }
}

/// A stream of events. A subscriber that falls more than the builder's `event_capacity`
/// behind misses the oldest ones; [`missed`](Events::missed) counts them.
#[derive(Debug)]
pub struct Events {
    rx: broadcast::Receiver<Event>,
    missed: u64,
}

impl Events {
    fn new(rx: broadcast::Receiver<Event>) -> Self {
        Events { rx, missed: 0 }
    }

    /// The next event; `None` once the cluster has stopped and every event was received.
    pub async fn recv(&mut self) -> Option<Event> {
        loop {
            match self.rx.recv().await {
                Ok(e) => return Some(e),
                Err(broadcast::error::RecvError::Lagged(n)) => self.missed += n,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// The next event if one is waiting.
    pub fn try_recv(&mut self) -> Option<Event> {
        loop {
            match self.rx.try_recv() {
                Ok(e) => return Some(e),
                Err(broadcast::error::TryRecvError::Lagged(n)) => self.missed += n,
                Err(_) => return None,
            }
        }
    }

    /// Events this subscriber missed because it fell behind.
    pub fn missed(&self) -> u64 {
        self.missed
    }
}

/// Everything the driver listens to.
struct Inputs {
    cmd: mpsc::Receiver<Command>,
    answers: mpsc::Receiver<(muster_core::Token, Owned)>,
    notices: mpsc::Receiver<Notice>,
    arrivals: mpsc::Receiver<Arrival>,
    send_failures: mpsc::Receiver<(muster_core::Token, String)>,
}

struct Driver {
    sockets: Sockets,
    /// Listeners and open streams (the core's Erlang distribution).
    links: Streams,
    arrivals: mpsc::Sender<Arrival>,
    send_failures: mpsc::Sender<(muster_core::Token, String)>,
    /// Answers known at once (a socket opened or failed to), fed back after the drain.
    immediate: Vec<(muster_core::Token, Owned)>,
    cluster: Cluster,
    connector: Arc<dyn Connector>,
    origin: TokioInstant,
    list_timeout: Duration,
    tasks: JoinSet<()>,
    /// Stream exchanges the core may cancel.
    streams: HashMap<muster_core::Token, AbortHandle>,
    answers_tx: exec::Answers,
    events: broadcast::Sender<Event>,
    members: watch::Sender<Vec<NodeName>>,
    metrics: watch::Sender<Metrics>,
    published: u64,
}

impl Driver {
    fn now(&self) -> muster_core::Instant {
        muster_core::Instant::from_duration(self.origin.elapsed())
    }

    fn tokio_at(origin: TokioInstant, at: muster_core::Instant) -> TokioInstant {
        origin + at.since_origin()
    }

    /// `now`, after telling the core the wall clock (secure gossip timestamps need it).
    fn tick(&mut self) -> muster_core::Instant {
        let now = self.now();
        if let Some(unix) = muster_net::unix_time() {
            self.cluster.set_unix_time(now, unix);
        }
        now
    }

    fn execute(
        &mut self,
        token: muster_core::Token,
        request: muster_core::Request,
        fallback: TokioInstant,
    ) {
        use muster_core::Request;
        let origin = self.origin;
        match request {
            Request::OpenUdp(opts) => {
                let answer = match self.sockets.open(token, &opts, &self.arrivals) {
                    Ok(local) => {
                        tracing::debug!(%local, "UDP socket open");
                        Owned::Opened(local)
                    }
                    Err(e) => {
                        tracing::warn!(reason = %e, "UDP socket");
                        Owned::Failed(e)
                    }
                };
                self.immediate.push((token, answer));
            }
            Request::SendDatagram { socket, to, data } => {
                if let Some(e) = self.sockets.send(socket, to, data, &self.send_failures) {
                    self.immediate.push((socket, Owned::Failed(e)));
                }
            }
            Request::CloseUdp { socket } => self.sockets.close(socket),
            Request::Cancel { token } => {
                if let Some(h) = self.streams.remove(&token) {
                    h.abort();
                }
                self.links.close(token);
            }
            Request::Listen { bind } => {
                let answer = self.links.listen(token, bind);
                self.immediate.push((token, answer));
            }
            Request::Accept { listener } => {
                if let Some(h) =
                    self.links
                        .accept(&mut self.tasks, &self.answers_tx, token, listener)
                {
                    self.streams.insert(token, h);
                }
            }
            Request::OpenStream { to, deadline } => {
                let h = self.links.open(
                    &mut self.tasks,
                    &self.answers_tx,
                    token,
                    to,
                    Self::tokio_at(origin, deadline),
                );
                self.streams.insert(token, h);
            }
            Request::Write { stream, data } => self.links.write(stream, data),
            other => {
                let stream = exec::spawn(
                    &mut self.tasks,
                    &self.connector,
                    &self.answers_tx,
                    token,
                    other,
                    |at| Self::tokio_at(origin, at),
                    fallback,
                );
                if let Some(h) = stream {
                    self.streams.insert(token, h);
                }
            }
        }
    }

    /// Executes every output (feeding back the answers known at once, and draining again),
    /// then publishes what changed.
    fn drain(&mut self) {
        let fallback = TokioInstant::now() + self.list_timeout;
        loop {
            while let Some(out) = self.cluster.poll_output() {
                match out {
                    Output::Event(e) => {
                        muster_net::log(&e);
                        // No subscriber is fine: events are also logged.
                        let _ = self.events.send(e);
                    }
                    Output::Request { token, request } => self.execute(token, request, fallback),
                    other => tracing::debug!(?other, "output this adapter does not know"),
                }
            }
            if self.immediate.is_empty() {
                break;
            }
            let now = self.now();
            for (token, owned) in std::mem::take(&mut self.immediate) {
                self.cluster.handle_input(
                    now,
                    Input::Answer {
                        token,
                        answer: owned.borrow(),
                    },
                );
            }
        }
        while self.tasks.try_join_next().is_some() {}
        self.streams.retain(|_, h| !h.is_finished());
        if self.cluster.membership_version() != self.published {
            self.published = self.cluster.membership_version();
            let mut m: Vec<NodeName> = self.cluster.members().cloned().collect();
            m.sort();
            self.members.send_replace(m);
        }
        let m = self.cluster.metrics();
        self.metrics.send_if_modified(|old| {
            let changed = *old != m;
            *old = m;
            changed
        });
    }

    async fn run(mut self, inputs: Inputs) {
        let Inputs {
            mut cmd,
            mut answers,
            mut notices,
            mut arrivals,
            mut send_failures,
        } = inputs;
        let mut leaving: Option<(TokioInstant, oneshot::Sender<()>)> = None;
        loop {
            self.drain();
            if let Some((until, _)) = &leaving
                && (self.cluster.metrics().in_flight == 0 || TokioInstant::now() >= *until)
            {
                break;
            }
            let wake = self
                .cluster
                .poll_timeout()
                .map(|at| Self::tokio_at(self.origin, at));
            tokio::select! {
                c = cmd.recv(), if leaving.is_none() => match c {
                    None => break,
                    Some(Command::Stop { leave: false, done }) => {
                        leaving = Some((TokioInstant::now(), done));
                        break;
                    }
                    Some(Command::Stop { leave: true, done }) => {
                        let now = self.now();
                        let ids: Vec<TopologyId> = self.cluster.topologies().map(|(id, _)| id).collect();
                        for id in ids {
                            self.cluster.remove_topology(now, id);
                        }
                        self.cluster.disconnect_all(now);
                        // The core's own deadlines end every disconnect; this is a backstop.
                        leaving = Some((TokioInstant::now() + LEAVE_BACKSTOP, done));
                    }
                    Some(Command::Add { spec, done }) => {
                        let now = self.now();
                        let _ = done.send(self.cluster.add(now, spec));
                    }
                    Some(Command::Remove { id, done }) => {
                        let now = self.now();
                        let _ = done.send(self.cluster.remove_topology(now, id));
                    }
                },
                Some((token, owned)) = answers.recv() => {
                    let now = self.tick();
                    self.cluster.handle_input(now, Input::Answer { token, answer: owned.borrow() });
                }
                Some((socket, from, data)) = arrivals.recv() => {
                    let now = self.tick();
                    self.cluster.handle_input(now, Input::Datagram { socket, from, data: &data });
                }
                Some((socket, why)) = send_failures.recv() => {
                    let now = self.tick();
                    self.cluster.handle_input(now, Input::Answer { token: socket, answer: muster_core::Answer::Failed(&why) });
                }
                Some(n) = notices.recv() => {
                    let now = self.now();
                    match &n {
                        Notice::Down { node, reason } => self.cluster.handle_input(
                            now,
                            Input::NodeDown { node: node.as_str(), reason },
                        ),
                        Notice::Up { node } => {
                            self.cluster.handle_input(now, Input::NodeUp { node: node.as_str() })
                        }
                    }
                }
                _ = sleep_until(wake) => {
                    let now = self.tick();
                    self.cluster.handle_timeout(now);
                }
            }
        }
        // Every socket is closed before the stop is confirmed: wait for the aborted tasks.
        self.tasks.shutdown().await;
        self.sockets.close_all().await;
        self.links.close_all();
        if let Some((_, done)) = leaving {
            let _ = done.send(());
        }
    }
}

async fn sleep_until(at: Option<TokioInstant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
