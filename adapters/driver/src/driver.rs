//! The loop that drives a `Cluster` on any [`Runtime`]: it executes what the core asks, feeds
//! back what comes in, and sleeps until the core's next timer.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant as StdInstant;

use futures_lite::FutureExt;
use muster_core::connector::{Connector, Notice, Notices};
use muster_core::{Cluster, ConfigError, Event, Input, Output, OwnedAnswer, Request, Token};
use muster_net::setup::{Ready, Setup};
use muster_net::view::View;

use crate::Runtime;
use crate::events::Events;
use crate::exec;
use crate::handle::{ClusterHandle, Command, Shared};
use crate::inbox::{Inbox, InboxTx};
use crate::streams::Streams;
use crate::tasks::Tasks;
use crate::udp::Sockets;

/// How long a closed stream may take to write what was queued on it.
const FLUSH_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// A cluster ready to run on runtime `R`: [`run`](Driver::run) is the future that runs it,
/// until it is shut down, has left, or every [`ClusterHandle`] is dropped.
pub struct Driver<R: Runtime> {
    cluster: Cluster,
    connector: Arc<dyn Connector>,
    origin: StdInstant,
    tasks: Tasks<R>,
    sockets: Sockets<R>,
    /// Listeners and open streams (the core's Erlang distribution).
    streams: Streams<R>,
    inbox: InboxTx,
    inbox_rx: async_channel::Receiver<Inbox>,
    cmd: async_channel::Receiver<Command>,
    /// Answers known at once (a socket opened or failed to), fed back after the drain.
    immediate: Vec<(Token, OwnedAnswer)>,
    events: async_broadcast::Sender<Event>,
    shared: Arc<Shared>,
}

impl<R: Runtime> std::fmt::Debug for Driver<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("cluster", &self.cluster)
            .finish()
    }
}

/// Makes the cluster `setup` describes, to run on `runtime`: its handle, a stream of every
/// event from the first one on, and the driver. Fails on a bad topology (duplicate name, too
/// many).
///
/// # Panics
///
/// If no seed was fixed and the operating system has no random source.
pub fn build<R: Runtime>(
    setup: Setup,
    runtime: R,
) -> Result<(ClusterHandle, Events, Driver<R>), ConfigError> {
    let Ready {
        cluster,
        connector,
        event_capacity,
    } = setup.ready()?;
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
    let shared = Arc::new(Shared::new(View::new(&cluster)));
    let driver = Driver {
        cluster,
        connector,
        origin: StdInstant::now(),
        tasks: Tasks::new(runtime),
        sockets: Sockets::default(),
        streams: Streams::default(),
        inbox: inbox_tx,
        inbox_rx,
        cmd: cmd_rx,
        immediate: Vec::new(),
        events: events_tx.clone(),
        shared: shared.clone(),
    };
    let handle = ClusterHandle {
        cmd: cmd_tx,
        shared,
        events: events_tx.new_receiver().deactivate(),
    };
    Ok((handle, Events::new(events_rx), driver))
}

enum Wake {
    Cmd(Option<Command>),
    Inbox(Inbox),
    Timer,
}

impl<R: Runtime> Driver<R> {
    fn now(&self) -> muster_core::Instant {
        muster_core::Instant::from_duration(self.origin.elapsed())
    }

    fn at(&self, t: muster_core::Instant) -> StdInstant {
        self.origin + t.since_origin()
    }

    /// `now`, after telling the core the wall clock (secure gossip timestamps need it).
    fn tick(&mut self) -> muster_core::Instant {
        let now = self.now();
        if let Some(unix) = muster_net::unix_time() {
            self.cluster.set_unix_time(now, unix);
        }
        now
    }

    fn execute(&mut self, token: Token, request: Request) {
        let runtime = self.tasks.runtime().clone();
        let tx = self.inbox.clone();
        match request {
            Request::OpenUdp(opts) => {
                let answer = match self.sockets.open(&mut self.tasks, &tx, token, &opts) {
                    Ok(local) => {
                        tracing::debug!(%local, "UDP socket open");
                        OwnedAnswer::Opened(local)
                    }
                    Err(e) => {
                        tracing::warn!(reason = %e, "UDP socket");
                        OwnedAnswer::Failed(e)
                    }
                };
                self.immediate.push((token, answer));
            }
            Request::SendDatagram { socket, to, data } => {
                if let Some(e) = self.sockets.send(socket, to, data) {
                    self.immediate.push((socket, OwnedAnswer::Failed(e)));
                }
            }
            Request::CloseUdp { socket } => {
                self.sockets.close(socket);
                self.tasks.stop(socket);
            }
            Request::Cancel { token } => {
                if self.streams.close(token) {
                    // A stream writes what was queued before it closes, within a grace.
                    let at = StdInstant::now() + FLUSH_GRACE;
                    self.tasks.stop_at(token, at);
                } else {
                    self.tasks.stop(token);
                }
            }
            Request::Listen { bind } => {
                let answer = self.streams.listen(&runtime, token, bind);
                self.immediate.push((token, answer));
            }
            Request::Accept { listener } => {
                self.streams.accept(&mut self.tasks, tx, token, listener);
            }
            Request::OpenStream { to, deadline, tls } => {
                let at = self.at(deadline);
                self.streams.open(&mut self.tasks, tx, token, to, tls, at);
            }
            Request::Write { stream, data } => self.streams.write(stream, data),
            Request::Connect { node, deadline } => {
                let at = self.at(deadline);
                let job = exec::connect(runtime, &self.connector, tx, token, node, at);
                self.tasks.spawn(job);
            }
            Request::Disconnect { node, deadline } => {
                let at = self.at(deadline);
                let job = exec::disconnect(runtime, &self.connector, tx, token, node, at);
                self.tasks.spawn(job);
            }
            Request::ListNodes { deadline } => {
                let at = self.at(deadline);
                let job = exec::list(runtime, &self.connector, tx, token, at);
                self.tasks.spawn(job);
            }
            Request::ReadFile { path, deadline } => {
                let at = self.at(deadline);
                self.tasks
                    .spawn(exec::read_file(runtime, tx, token, path, at));
            }
            Request::Exchange(x) => {
                let at = self.at(x.deadline);
                let job = exec::exchange(runtime, tx, token, x, at);
                self.tasks.spawn_stoppable(token, job);
            }
            other => {
                let why = muster_core::Failure::new(
                    muster_core::FailureKind::Unsupported,
                    format!("this adapter cannot perform {other:?}"),
                );
                self.immediate.push((token, OwnedAnswer::Failed(why)));
            }
        }
    }

    /// Executes every output (feeding back the answers known at once, and draining again),
    /// then publishes what changed.
    fn drain(&mut self) {
        loop {
            while let Some(out) = self.cluster.poll_output() {
                match out {
                    Output::Event(e) => {
                        muster_net::log(&e);
                        let _ = self.events.try_broadcast(e);
                    }
                    Output::Request { token, request } => self.execute(token, request),
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
        self.tasks.prune();
        self.streams.prune();
        let changed = self.shared.lock().view.update(&self.cluster);
        if changed {
            self.shared.notify();
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

    /// The future that runs the cluster. Every request of the core runs concurrently on the
    /// runtime, each with its deadline; the future ends when the cluster is shut down, has
    /// left, or every handle is dropped — once every socket it opened is closed.
    pub fn run(self) -> impl Future<Output = ()> + Send + 'static {
        self.run_loop()
    }

    async fn run_loop(mut self) {
        let mut done = None;
        let mut leaving = false;
        loop {
            self.drain();
            if leaving && self.cluster.is_left() {
                break;
            }
            // Timers first: a busy inbox (a flood of datagrams) must not starve heartbeats,
            // deadlines and polls, which the wait below would otherwise put behind it.
            let now = self.tick();
            if self.cluster.poll_timeout().is_some_and(|at| at <= now) {
                self.cluster.handle_timeout(now);
                continue;
            }
            self.tasks.reap(StdInstant::now());
            let wake_at = self.cluster.poll_timeout().map(|at| self.at(at));
            let wake_at = match (wake_at, self.tasks.next_due()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let timer = wake_at.map(|at| self.tasks.runtime().sleep_until(at));
            let wake = {
                let (cmd, inbox) = (&self.cmd, &self.inbox_rx);
                let cmd_wait = async {
                    if leaving {
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
                let timer_wait = async {
                    match timer {
                        Some(t) => t.await,
                        None => std::future::pending().await,
                    }
                    Wake::Timer
                };
                cmd_wait.or(inbox_wait).or(timer_wait).await
            };
            match wake {
                Wake::Cmd(None) => break,
                Wake::Cmd(Some(Command::Stop {
                    leave: false,
                    done: d,
                })) => {
                    done = Some(d);
                    break;
                }
                Wake::Cmd(Some(Command::Stop {
                    leave: true,
                    done: d,
                })) => {
                    let now = self.now();
                    self.cluster.leave(now);
                    leaving = true;
                    done = Some(d);
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
        self.sockets.close_all();
        self.streams.close_all();
        self.tasks.stop_all().await;
        self.shared.lock().stopped = true;
        self.shared.notify();
        self.events.close();
        if let Some(done) = done {
            let _ = done.try_send(());
        }
    }
}
