//! The future that drives a `Cluster` on async-io, and the handle the application keeps.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant as StdInstant};

use async_executor::{Executor, Task};
use async_io::Timer;
use futures_lite::FutureExt;
use muster_core::connector::{Connector, Notice, Notices};
use muster_core::{
    Cluster, ConfigError, Event, Input, Metrics, NodeName, Output, OwnedAnswer, Token, TopologyId,
    TopologySpec,
};

use crate::exec;
use crate::stream::Streams;
use crate::udp::Sockets;
use muster_net::setup::{Ready, Setup};
use muster_net::view::View;

const LEAVE_BACKSTOP: Duration = Duration::from_secs(60);

/// Everything that comes back to the driver from its tasks, its sockets and the connector.
pub(crate) enum Inbox {
    Answer(Token, OwnedAnswer),
    Datagram(Token, std::net::SocketAddr, Vec<u8>),
    Notice(Notice),
}

pub(crate) type InboxTx = async_channel::Sender<Inbox>;

/// Configures a cluster on async-io; [`build`](Builder::build) returns the future that runs
/// it, for the executor you already have.
///
/// ```no_run
/// # fn demo() -> Result<(), muster_core::ConfigError> {
/// use muster_async_std::Builder;
/// use muster_core::connector::NoneConnector;
/// use muster_core::strategy::epmd::{Epmd, EpmdConfig};
/// use muster_core::{ConnectPolicy, Node, TopologySpec};
///
/// let hosts = ["app@10.0.0.1", "app@10.0.0.2"].map(|h| Node::new(h.parse().unwrap()));
/// let (cluster, mut events, driver) = Builder::new(NoneConnector)
///     .topology(TopologySpec {
///         name: "static".into(),
///         strategy: Box::new(Epmd::new(EpmdConfig::new(hosts))),
///         policy: ConnectPolicy::default(),
///     })
///     .build()?;
/// smol::block_on(async {
///     let running = smol::spawn(driver);   // or async_std::task::spawn(driver)
///     while let Some(event) = events.recv().await {
///         println!("{event}");
///     }
///     cluster.shutdown().await;
///     running.await;
/// });
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

    /// Builds the cluster. Returns its handle, a stream of every event from the first one on,
    /// and the [`Driver`]: the future that runs the cluster until it is shut down (or every
    /// handle is dropped). Nothing happens until the driver is polled: spawn it on your
    /// executor. Fails on a bad topology (duplicate name, too many).
    ///
    /// # Panics
    ///
    /// If the operating system has no random source.
    pub fn build(self) -> Result<(ClusterHandle, Events, Driver), ConfigError> {
        let Ready {
            cluster,
            connector,
            event_capacity,
            list_timeout,
        } = self.setup.ready()?;
        let (mut events_tx, events_rx) = async_broadcast::broadcast(event_capacity);
        events_tx.set_overflow(true);
        // Events also go to the log, so nobody listening is fine.
        events_tx.set_await_active(false);
        let (cmd_tx, cmd_rx) = async_channel::bounded(64);
        let (inbox_tx, inbox_rx) = async_channel::bounded(1024);
        let notices = inbox_tx.clone();
        connector.attach(Notices::new(move |n| {
            let _ = notices.try_send(Inbox::Notice(n));
        }));
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                view: View::new(&cluster),
                stopped: false,
            }),
            changed: event_listener::Event::new(),
        });
        let executor = Arc::new(Executor::new());
        let run = Run {
            cluster,
            connector,
            origin: StdInstant::now(),
            list_timeout,
            executor: executor.clone(),
            sockets: Sockets::default(),
            links: Streams::default(),
            inbox: inbox_tx,
            immediate: Vec::new(),
            streams: HashMap::new(),
            events: events_tx.clone(),
            shared: shared.clone(),
        };
        let driver = Driver(Box::pin(async move {
            executor.run(run.run(cmd_rx, inbox_rx)).await;
        }));
        let handle = ClusterHandle {
            cmd: cmd_tx,
            shared,
            events: events_tx.new_receiver().deactivate(),
        };
        Ok((handle, Events::new(events_rx), driver))
    }
}

/// The future that runs a cluster: every request of the core runs concurrently inside it.
/// Spawn it on your executor (`async_std::task::spawn`, `smol::spawn`), or `.await` it. It
/// ends when the cluster is shut down or every [`ClusterHandle`] is dropped.
#[must_use = "the cluster runs only while its driver is polled"]
pub struct Driver(Pin<Box<dyn Future<Output = ()> + Send>>);

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Driver")
    }
}

impl Future for Driver {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.as_mut().poll(cx)
    }
}

struct State {
    view: View,
    stopped: bool,
}

struct Shared {
    state: Mutex<State>,
    changed: event_listener::Event,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until `f` gives a value, re-checking after every published change.
    async fn wait<T>(&self, mut f: impl FnMut(&State) -> Option<T>) -> Option<T> {
        loop {
            let listener = self.changed.listen();
            {
                let s = self.lock();
                if let Some(v) = f(&s) {
                    return Some(v);
                }
                if s.stopped {
                    return None;
                }
            }
            listener.await;
        }
    }
}

enum Command {
    Stop {
        leave: bool,
        done: async_channel::Sender<()>,
    },
    Add {
        spec: TopologySpec,
        done: async_channel::Sender<Result<TopologyId, ConfigError>>,
    },
    Remove {
        id: TopologyId,
        done: async_channel::Sender<bool>,
    },
}

/// The application's handle on a running cluster. Cheap to clone. When every handle is
/// dropped the cluster stops, as with [`shutdown`](ClusterHandle::shutdown).
#[derive(Clone)]
pub struct ClusterHandle {
    cmd: async_channel::Sender<Command>,
    shared: Arc<Shared>,
    events: async_broadcast::InactiveReceiver<Event>,
}

impl std::fmt::Debug for ClusterHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterHandle")
            .field("members", &self.members())
            .finish()
    }
}

impl ClusterHandle {
    /// The nodes connected now, in name order.
    pub fn members(&self) -> Vec<NodeName> {
        self.shared.lock().view.members.clone()
    }

    /// Waits until the members satisfy `pred`, and returns them. Returns `None` if the
    /// cluster stopped first.
    pub async fn wait_for_members(
        &self,
        mut pred: impl FnMut(&[NodeName]) -> bool,
    ) -> Option<Vec<NodeName>> {
        self.shared
            .wait(|s| pred(&s.view.members).then(|| s.view.members.clone()))
            .await
    }

    /// A snapshot of the core's counters.
    pub fn metrics(&self) -> Metrics {
        self.shared.lock().view.metrics
    }

    /// Waits until the counters satisfy `pred` (they are published after every step of the
    /// cluster), and returns them. Returns `None` if the cluster stopped first.
    pub async fn wait_for_metrics(
        &self,
        mut pred: impl FnMut(&Metrics) -> bool,
    ) -> Option<Metrics> {
        self.shared
            .wait(|s| pred(&s.view.metrics).then_some(s.view.metrics))
            .await
    }

    /// A new stream of the events from now on.
    pub fn subscribe(&self) -> Events {
        Events::new(self.events.activate_cloned())
    }

    /// Adds a topology to the running cluster.
    pub async fn add_topology(&self, spec: TopologySpec) -> Result<TopologyId, ConfigError> {
        let stopped = || ConfigError::invalid("topologies", "the cluster has stopped");
        let (done, rx) = async_channel::bounded(1);
        if self.cmd.send(Command::Add { spec, done }).await.is_err() {
            return Err(stopped());
        }
        rx.recv().await.unwrap_or_else(|_| Err(stopped()))
    }

    /// Removes a topology from the running cluster; its nodes are lost to it, and those no
    /// other topology wants are disconnected. Returns whether it existed.
    pub async fn remove_topology(&self, id: TopologyId) -> bool {
        let (done, rx) = async_channel::bounded(1);
        if self.cmd.send(Command::Remove { id, done }).await.is_err() {
            return false;
        }
        rx.recv().await.unwrap_or(false)
    }

    /// Stops the cluster: no more discovery, no more connects. Connections are left as they
    /// are (they live as long as the connector does). The driver future then ends.
    pub async fn shutdown(self) {
        self.stop(false).await;
    }

    /// Leaves the cluster: stops discovery, disconnects every node this cluster connected,
    /// waits until each disconnect is answered or reaches its deadline, then stops.
    pub async fn leave(self) {
        self.stop(true).await;
    }

    async fn stop(self, leave: bool) {
        let (done, rx) = async_channel::bounded(1);
        if self.cmd.send(Command::Stop { leave, done }).await.is_ok() {
            let _ = rx.recv().await;
        }
    }
}

/// A stream of events. A subscriber that falls more than the builder's `event_capacity`
/// behind misses the oldest ones; [`missed`](Events::missed) counts them.
#[derive(Debug)]
pub struct Events {
    rx: async_broadcast::Receiver<Event>,
    missed: u64,
}

impl Events {
    fn new(rx: async_broadcast::Receiver<Event>) -> Self {
        Events { rx, missed: 0 }
    }

    /// The next event; `None` once the cluster has stopped and every event was received.
    pub async fn recv(&mut self) -> Option<Event> {
        loop {
            match self.rx.recv_direct().await {
                Ok(e) => return Some(e),
                Err(async_broadcast::RecvError::Overflowed(n)) => self.missed += n,
                Err(async_broadcast::RecvError::Closed) => return None,
            }
        }
    }

    /// The next event if one is waiting.
    pub fn try_recv(&mut self) -> Option<Event> {
        loop {
            match self.rx.try_recv() {
                Ok(e) => return Some(e),
                Err(async_broadcast::TryRecvError::Overflowed(n)) => self.missed += n,
                Err(_) => return None,
            }
        }
    }

    /// Events this subscriber missed because it fell behind.
    pub fn missed(&self) -> u64 {
        self.missed
    }
}

struct Run {
    cluster: Cluster,
    connector: Arc<dyn Connector>,
    origin: StdInstant,
    list_timeout: Duration,
    executor: Arc<Executor<'static>>,
    sockets: Sockets,
    /// Listeners and open streams (the core's Erlang distribution).
    links: Streams,
    inbox: InboxTx,
    /// Answers known at once (a socket opened or failed to), fed back after the drain.
    immediate: Vec<(Token, OwnedAnswer)>,
    /// Stream exchanges the core may cancel: dropping the task stops it.
    streams: HashMap<Token, Task<()>>,
    events: async_broadcast::Sender<Event>,
    shared: Arc<Shared>,
}

enum Wake {
    Cmd(Option<Command>),
    Inbox(Inbox),
    Timer,
}

impl Run {
    fn now(&self) -> muster_core::Instant {
        muster_core::Instant::from_duration(self.origin.elapsed())
    }

    /// `now`, after telling the core the wall clock (secure gossip timestamps need it).
    fn tick(&mut self) -> muster_core::Instant {
        let now = self.now();
        if let Some(unix) = muster_net::unix_time() {
            self.cluster.set_unix_time(now, unix);
        }
        now
    }

    fn execute(&mut self, token: Token, request: muster_core::Request, fallback: StdInstant) {
        use muster_core::Request;
        match request {
            Request::OpenUdp(opts) => {
                let answer = match self.sockets.open(token, &opts, &self.executor, &self.inbox) {
                    Ok(local) => OwnedAnswer::Opened(local),
                    Err(e) => {
                        tracing::warn!(reason = %e, "UDP socket");
                        OwnedAnswer::Failed(e)
                    }
                };
                self.immediate.push((token, answer));
            }
            Request::SendDatagram { socket, to, data } => {
                if let Some(e) = self
                    .sockets
                    .send(socket, to, data, &self.executor, &self.inbox)
                {
                    self.immediate.push((socket, OwnedAnswer::Failed(e)));
                }
            }
            Request::CloseUdp { socket } => self.sockets.close(socket),
            Request::Cancel { token } => {
                self.streams.remove(&token);
                self.links.close(token);
            }
            Request::Listen { bind } => {
                let answer = self.links.listen(token, bind);
                self.immediate.push((token, answer));
            }
            Request::Accept { listener } => {
                let job = self.links.accept(self.inbox.clone(), token, listener);
                self.streams.insert(token, self.executor.spawn(job));
            }
            Request::OpenStream { to, deadline } => {
                let at = self.origin + deadline.since_origin();
                let job = self.links.open(self.inbox.clone(), token, to, at);
                self.streams.insert(token, self.executor.spawn(job));
            }
            Request::Write { stream, data } => self.links.write(stream, data),
            other => {
                let origin = self.origin;
                let job = exec::run(
                    &self.connector,
                    self.inbox.clone(),
                    token,
                    other,
                    |at| origin + at.since_origin(),
                    fallback,
                );
                let task = self.executor.spawn(job.future);
                if job.stream {
                    self.streams.insert(token, task);
                } else {
                    task.detach();
                }
            }
        }
    }

    /// Executes every output (feeding back the answers known at once, and draining again),
    /// then publishes what changed.
    fn drain(&mut self) {
        let fallback = StdInstant::now() + self.list_timeout;
        loop {
            while let Some(out) = self.cluster.poll_output() {
                match out {
                    Output::Event(e) => {
                        muster_net::log(&e);
                        let _ = self.events.try_broadcast(e);
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
        self.streams.retain(|_, t| !t.is_finished());
        let changed = self.shared.lock().view.update(&self.cluster);
        if changed {
            self.shared.changed.notify(usize::MAX);
        }
    }

    fn handle(&mut self, item: Inbox) {
        let now = self.tick();
        match item {
            Inbox::Answer(token, owned) => self.cluster.handle_input(
                now,
                Input::Answer {
                    token,
                    answer: owned.borrow(),
                },
            ),
            Inbox::Datagram(socket, from, data) => self.cluster.handle_input(
                now,
                Input::Datagram {
                    socket,
                    from,
                    data: &data,
                },
            ),
            Inbox::Notice(Notice::Down { node, reason }) => self.cluster.handle_input(
                now,
                Input::NodeDown {
                    node: node.as_str(),
                    reason: &reason,
                },
            ),
            Inbox::Notice(Notice::Up { node }) => self.cluster.handle_input(
                now,
                Input::NodeUp {
                    node: node.as_str(),
                },
            ),
        }
    }

    async fn run(
        mut self,
        cmd: async_channel::Receiver<Command>,
        inbox: async_channel::Receiver<Inbox>,
    ) {
        let mut leaving: Option<(StdInstant, async_channel::Sender<()>)> = None;
        let mut stop_now = None;
        loop {
            self.drain();
            if let Some((until, _)) = &leaving
                && (self.cluster.metrics().in_flight == 0 || StdInstant::now() >= *until)
            {
                break;
            }
            let wake_at = self
                .cluster
                .poll_timeout()
                .map(|at| self.origin + at.since_origin());
            let cmd_wait = async {
                if leaving.is_some() {
                    std::future::pending().await
                } else {
                    Wake::Cmd(cmd.recv().await.ok())
                }
            };
            let inbox_wait = async {
                match inbox.recv().await {
                    Ok(i) => Wake::Inbox(i),
                    // The driver holds a sender itself: never closed while it runs.
                    Err(_) => std::future::pending().await,
                }
            };
            let timer = async {
                match wake_at {
                    Some(at) => Timer::at(at).await,
                    None => Timer::never().await,
                };
                Wake::Timer
            };
            match cmd_wait.or(inbox_wait).or(timer).await {
                Wake::Cmd(None) => break,
                Wake::Cmd(Some(Command::Stop { leave: false, done })) => {
                    stop_now = Some(done);
                    break;
                }
                Wake::Cmd(Some(Command::Stop { leave: true, done })) => {
                    let now = self.now();
                    let ids: Vec<TopologyId> =
                        self.cluster.topologies().map(|(id, _)| id).collect();
                    for id in ids {
                        self.cluster.remove_topology(now, id);
                    }
                    self.cluster.disconnect_all(now);
                    // The core's own deadlines end every disconnect; this is a backstop.
                    leaving = Some((StdInstant::now() + LEAVE_BACKSTOP, done));
                }
                Wake::Cmd(Some(Command::Add { spec, done })) => {
                    let now = self.now();
                    let _ = done.try_send(self.cluster.add(now, spec));
                }
                Wake::Cmd(Some(Command::Remove { id, done })) => {
                    let now = self.now();
                    let _ = done.try_send(self.cluster.remove_topology(now, id));
                }
                Wake::Inbox(item) => self.handle(item),
                Wake::Timer => {
                    let now = self.tick();
                    self.cluster.handle_timeout(now);
                }
            }
        }
        // Every socket is closed before the stop is confirmed.
        for (_, task) in self.streams.drain() {
            task.cancel().await;
        }
        self.sockets.close_all().await;
        self.links.close_all();
        self.shared.lock().stopped = true;
        self.shared.changed.notify(usize::MAX);
        self.events.close();
        if let Some((_, done)) = leaving {
            let _ = done.try_send(());
        }
        if let Some(done) = stop_now {
            let _ = done.try_send(());
        }
    }
}
