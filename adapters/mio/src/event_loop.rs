//! The blocking loop: one `mio::Poll` for every socket, the core's timer as its timeout,
//! worker threads for what may block.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Instant as StdInstant;

use mio::{Interest, Poll, Waker};
use muster_core::connector::{Connector, Notice, Notices};
use muster_core::{
    Cluster, Endpoint, Exchange, Failure, FailureKind, Input, Output, OwnedAnswer, Request, Token,
};

use crate::exchange::{Step, Stream};
use crate::handle::{BuildError, Builder, ClusterHandle, Command, Shared};
use crate::hub::{Events, Hub};
use crate::stream::Streams;
use crate::udp::{Udp, key};
use crate::workers::{Workers, block_on};
use muster_net::setup::Ready;
use muster_net::view::View;

const WAKER: mio::Token = mio::Token(usize::MAX);
/// How long a closed stream may take to write what was queued on it.
const FLUSH_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// What comes back from the workers and the connector.
enum Back {
    Answer(Token, OwnedAnswer),
    /// The addresses of an exchange's host.
    Resolved(Token, Result<SocketAddr, Failure>),
    /// The address of a datagram's host, and the datagram.
    ResolvedSend(Token, Result<SocketAddr, Failure>, bytes::Bytes),
    /// The address of a stream's host, its connect deadline and its TLS.
    ResolvedStream(
        Token,
        Result<SocketAddr, Failure>,
        StdInstant,
        Option<muster_core::StreamTls>,
    ),
    Notice(Notice),
}

/// Sends to the loop and wakes it.
#[derive(Clone)]
struct BackTx {
    tx: mpsc::Sender<Back>,
    waker: Arc<Waker>,
}

impl BackTx {
    fn send(&self, b: Back) {
        if self.tx.send(b).is_ok() {
            let _ = self.waker.wake();
        }
    }
}

struct Exch {
    /// `None` while its host is being resolved.
    stream: Option<Stream>,
    x: Exchange,
    deadline: StdInstant,
}

/// The loop that runs a cluster. [`run`](Driver::run) blocks the calling thread until the
/// cluster is shut down (or every handle dropped); run it on a thread of your own.
pub struct Driver {
    cluster: Cluster,
    poll: Poll,
    connector: Arc<dyn Connector>,
    workers: Workers,
    origin: StdInstant,
    cmd: mpsc::Receiver<Command>,
    back: mpsc::Receiver<Back>,
    back_tx: BackTx,
    udp: HashMap<Token, Udp>,
    exchanges: HashMap<Token, Exch>,
    /// Listeners and open streams (the core's Erlang distribution).
    links: Streams,
    /// Worker calls awaiting an answer, with the time to give up on them.
    waiting: HashMap<Token, StdInstant>,
    /// Answers known at once, fed back after the drain.
    immediate: Vec<(Token, OwnedAnswer)>,
    shared: Arc<Shared>,
    hub: Arc<Hub>,
    buf: Vec<u8>,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("sockets", &self.udp.len())
            .field("exchanges", &self.exchanges.len())
            .finish()
    }
}

impl Driver {
    pub(crate) fn new(b: Builder) -> Result<(ClusterHandle, Events, Driver), BuildError> {
        let workers = b.workers;
        let Ready {
            cluster,
            connector,
            event_capacity,
        } = b.setup.ready()?;
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (cmd_tx, cmd) = mpsc::channel();
        let (tx, back) = mpsc::channel();
        let back_tx = BackTx {
            tx,
            waker: waker.clone(),
        };
        let notices = back_tx.clone();
        connector.attach(Notices::new(move |n| notices.send(Back::Notice(n))));
        let shared = Shared::new(View::new(&cluster));
        let hub = Hub::new(event_capacity);
        let handle = ClusterHandle::new(cmd_tx, waker, shared.clone(), hub.clone());
        let events = hub.subscribe_from_start();
        let driver = Driver {
            cluster,
            poll,
            connector,
            workers: Workers::new(workers)?,
            origin: StdInstant::now(),
            cmd,
            back,
            back_tx,
            udp: HashMap::new(),
            exchanges: HashMap::new(),
            links: Streams::default(),
            waiting: HashMap::new(),
            immediate: Vec::new(),
            shared,
            hub,
            buf: vec![0u8; muster_net::udp::READ_BUF],
        };
        Ok((handle, events, driver))
    }

    fn now(&self) -> muster_core::Instant {
        muster_core::Instant::from_duration(self.origin.elapsed())
    }

    fn std_at(&self, at: muster_core::Instant) -> StdInstant {
        self.origin + at.since_origin()
    }

    /// `now`, after telling the core the wall clock (secure gossip timestamps need it).
    fn tick(&mut self) -> muster_core::Instant {
        let now = self.now();
        if let Some(unix) = muster_net::unix_time() {
            self.cluster.set_unix_time(now, unix);
        }
        now
    }

    fn answer(&mut self, token: Token, a: OwnedAnswer) {
        let now = self.tick();
        self.cluster.handle_input(
            now,
            Input::Answer {
                token,
                answer: a.borrow(),
            },
        );
    }

    /// Runs `job` on a worker; its answer comes back on `token` unless `deadline` passes
    /// first.
    fn on_worker(
        &mut self,
        token: Token,
        deadline: StdInstant,
        job: impl FnOnce() -> OwnedAnswer + Send + 'static,
    ) {
        self.waiting.insert(token, deadline);
        let tx = self.back_tx.clone();
        self.workers
            .run(move || tx.send(Back::Answer(token, job())));
    }

    fn execute(&mut self, token: Token, request: Request) {
        match request {
            Request::OpenUdp(opts) => {
                let a = match Udp::open(self.poll.registry(), key(token), &opts) {
                    Ok((udp, local)) => {
                        self.udp.insert(token, udp);
                        OwnedAnswer::Opened(local)
                    }
                    Err(e) => {
                        tracing::warn!(reason = %e, "UDP socket");
                        OwnedAnswer::Failed(e)
                    }
                };
                self.immediate.push((token, a));
            }
            Request::SendDatagram { socket, to, data } => match to {
                Endpoint::Addr(addr) => {
                    if let Some(e) = self.udp.get_mut(&socket).and_then(|u| u.send(addr, data)) {
                        self.immediate.push((socket, OwnedAnswer::Failed(e)));
                    }
                }
                other => {
                    let v4 = self
                        .udp
                        .get(&socket)
                        .and_then(|u| u.socket.local_addr().ok())
                        .is_none_or(|a| a.is_ipv4());
                    let tx = self.back_tx.clone();
                    self.workers.run(move || {
                        let r = resolve(&other, Some(v4));
                        tx.send(Back::ResolvedSend(socket, r, data));
                    });
                }
            },
            Request::CloseUdp { socket } => {
                if let Some(mut u) = self.udp.remove(&socket) {
                    let _ = self.poll.registry().deregister(&mut u.socket);
                }
            }
            Request::Cancel { token } => {
                self.close_exchange(token);
                // A stream writes what was queued on it (a refusal, say) before it closes.
                let by = StdInstant::now() + FLUSH_GRACE;
                self.links
                    .close_after_writes(self.poll.registry(), token, by);
            }
            Request::Listen { bind } => {
                let a = self.links.listen(self.poll.registry(), token, bind);
                self.immediate.push((token, a));
            }
            Request::Accept { listener } => {
                self.links
                    .accept(self.poll.registry(), token, listener, &mut self.immediate);
            }
            Request::OpenStream { to, deadline, tls } => {
                let deadline = self.std_at(deadline);
                match to {
                    Endpoint::Addr(addr) => {
                        if let Some(a) =
                            self.links
                                .open(self.poll.registry(), token, addr, deadline, tls)
                        {
                            self.immediate.push((token, a));
                        }
                    }
                    to => {
                        let tx = self.back_tx.clone();
                        self.workers.run(move || {
                            let r = resolve(&to, None);
                            tx.send(Back::ResolvedStream(token, r, deadline, tls));
                        });
                    }
                }
            }
            Request::Write { stream, data } => {
                self.links
                    .write(self.poll.registry(), stream, data, &mut self.immediate);
            }
            Request::Connect { node, deadline } => {
                let fut = self.connector.connect(node);
                let at = self.std_at(deadline);
                self.on_worker(token, at, move || block_on(fut).into());
            }
            Request::Disconnect { node, deadline } => {
                let fut = self.connector.disconnect(node);
                let at = self.std_at(deadline);
                self.on_worker(token, at, move || block_on(fut).into());
            }
            Request::ListNodes { deadline } => {
                let fut = self.connector.list_nodes();
                let at = self.std_at(deadline);
                self.on_worker(token, at, move || {
                    let r = block_on(fut);
                    if let Err(e) = &r {
                        tracing::warn!(reason = %e, "the connector could not list its nodes");
                    }
                    r.into()
                });
            }
            Request::ReadFile { path, deadline } => {
                let at = self.std_at(deadline);
                self.on_worker(token, at, move || match std::fs::read(&path) {
                    Ok(data) => OwnedAnswer::Data(data),
                    Err(e) => OwnedAnswer::Failed(Failure::io(&path, &e)),
                });
            }
            Request::Exchange(x) => {
                let deadline = self.std_at(x.deadline);
                match &x.to {
                    Endpoint::Addr(addr) => {
                        let addr = *addr;
                        self.exchanges.insert(
                            token,
                            Exch {
                                stream: None,
                                x,
                                deadline,
                            },
                        );
                        self.connect_exchange(token, Ok(addr));
                    }
                    to => {
                        let to = to.clone();
                        let tx = self.back_tx.clone();
                        self.workers
                            .run(move || tx.send(Back::Resolved(token, resolve(&to, None))));
                        self.exchanges.insert(
                            token,
                            Exch {
                                stream: None,
                                x,
                                deadline,
                            },
                        );
                    }
                }
            }
            other => {
                let why = Failure::new(
                    FailureKind::Unsupported,
                    format!("this adapter cannot perform {other:?}"),
                );
                self.immediate.push((token, OwnedAnswer::Failed(why)));
            }
        }
    }

    /// Starts the exchange `token` now that its address is known.
    fn connect_exchange(&mut self, token: Token, addr: Result<SocketAddr, Failure>) {
        let Some(e) = self.exchanges.get_mut(&token) else {
            return;
        };
        let started = addr.and_then(|a| Stream::start(a, &e.x)).and_then(|mut s| {
            self.poll
                .registry()
                .register(
                    &mut s.socket,
                    key(token),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .map_err(|err| Failure::io(&e.x.to, &err))?;
            Ok(s)
        });
        match started {
            Ok(s) => e.stream = Some(s),
            Err(why) => {
                self.exchanges.remove(&token);
                self.immediate.push((token, OwnedAnswer::Failed(why)));
            }
        }
    }

    fn close_exchange(&mut self, token: Token) {
        if let Some(Exch {
            stream: Some(mut s),
            ..
        }) = self.exchanges.remove(&token)
        {
            let _ = self.poll.registry().deregister(&mut s.socket);
        }
    }

    /// Moves the exchange `token` on as far as its socket allows.
    fn advance_exchange(&mut self, token: Token) {
        let Some(Exch {
            stream: Some(s), ..
        }) = self.exchanges.get_mut(&token)
        else {
            return;
        };
        let mut out = Vec::new();
        let step = s.advance(&mut out);
        for a in out {
            self.answer(token, a);
        }
        if let Step::Done(last) = step {
            self.close_exchange(token);
            self.answer(token, last);
        }
    }

    fn readable_udp(&mut self, token: Token) {
        let mut buf = std::mem::take(&mut self.buf);
        let mut refused = None;
        while let Some((n, from)) = self
            .udp
            .get(&token)
            .and_then(|u| u.recv(&mut buf, &mut refused))
        {
            let now = self.tick();
            self.cluster.handle_input(
                now,
                Input::Datagram {
                    socket: token,
                    from,
                    data: &buf[..n],
                },
            );
        }
        self.buf = buf;
        if let Some(why) = refused {
            self.answer(token, OwnedAnswer::Failed(why));
        }
        let errors = self.udp.get_mut(&token).map(Udp::flush).unwrap_or_default();
        for e in errors {
            self.answer(token, OwnedAnswer::Failed(e));
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
                        self.hub.publish(e);
                    }
                    Output::Request { token, request } => self.execute(token, request),
                    other => tracing::debug!(?other, "output this adapter does not know"),
                }
            }
            if self.immediate.is_empty() {
                break;
            }
            for (token, a) in std::mem::take(&mut self.immediate) {
                self.answer(token, a);
            }
        }
        let changed = self.shared.lock().view.update(&self.cluster);
        if changed {
            self.shared.notify();
        }
    }

    /// The earliest of the core's timer and the adapter's own deadlines.
    fn wake_at(&self) -> Option<StdInstant> {
        let core = self.cluster.poll_timeout().map(|t| self.std_at(t));
        let own = self
            .exchanges
            .values()
            .map(|e| e.deadline)
            .chain(self.waiting.values().copied())
            .chain(self.links.deadline())
            .min();
        match (core, own) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Answers `TimedOut` for whatever passed its deadline.
    fn expire(&mut self) {
        let now = StdInstant::now();
        let late: Vec<Token> = self
            .exchanges
            .iter()
            .filter(|(_, e)| e.deadline <= now)
            .map(|(t, _)| *t)
            .chain(
                self.waiting
                    .iter()
                    .filter(|(_, d)| **d <= now)
                    .map(|(t, _)| *t),
            )
            .collect();
        for token in late {
            self.close_exchange(token);
            self.waiting.remove(&token);
            self.answer(token, OwnedAnswer::TimedOut);
        }
        let mut out = Vec::new();
        self.links.expire(self.poll.registry(), now, &mut out);
        for (t, a) in out {
            self.answer(t, a);
        }
    }

    fn handle_back(&mut self, b: Back) {
        match b {
            Back::Answer(token, a) => {
                // Late answers (past their deadline) were already answered `TimedOut`.
                if self.waiting.remove(&token).is_some() {
                    self.answer(token, a);
                }
            }
            Back::Resolved(token, r) => self.connect_exchange(token, r),
            Back::ResolvedStream(token, r, deadline, tls) => {
                let a = match r {
                    Ok(addr) => self
                        .links
                        .open(self.poll.registry(), token, addr, deadline, tls),
                    Err(e) => Some(OwnedAnswer::Failed(e)),
                };
                if let Some(a) = a {
                    self.answer(token, a);
                }
            }
            Back::ResolvedSend(socket, r, data) => {
                let e = match r {
                    Ok(addr) => self.udp.get_mut(&socket).and_then(|u| u.send(addr, data)),
                    Err(e) => Some(e.context("sending")),
                };
                if let Some(e) = e {
                    self.answer(socket, OwnedAnswer::Failed(e));
                }
            }
            Back::Notice(n) => {
                let now = self.now();
                match &n {
                    Notice::Down { node, reason } => self.cluster.handle_input(
                        now,
                        Input::NodeDown {
                            node: node.as_str(),
                            reason,
                        },
                    ),
                    Notice::Up { node } => self.cluster.handle_input(
                        now,
                        Input::NodeUp {
                            node: node.as_str(),
                        },
                    ),
                }
            }
        }
    }

    /// Handles a command; `Some(leave)` when it asks the loop to stop.
    fn handle_command(&mut self, c: Command) -> Option<bool> {
        let now = self.now();
        match c {
            Command::Stop { leave } => return Some(leave),
            Command::Add(spec, done) => {
                let _ = done.send(self.cluster.add(now, spec));
            }
            Command::Remove(id, done) => {
                let _ = done.send(self.cluster.remove_topology(now, id));
            }
        }
        None
    }

    /// Runs the cluster until it is shut down or every handle is dropped. Errors only if the
    /// operating system's poller fails.
    pub fn run(mut self) -> std::io::Result<()> {
        let result = self.run_inner();
        for (_, mut u) in self.udp.drain() {
            let _ = self.poll.registry().deregister(&mut u.socket);
        }
        self.exchanges.clear();
        self.links.close_all(self.poll.registry());
        self.shared.lock().stopped = true;
        self.shared.notify();
        self.hub.close();
        result
    }

    fn run_inner(&mut self) -> std::io::Result<()> {
        let mut events = mio::Events::with_capacity(256);
        let mut leaving = false;
        loop {
            self.drain();
            if leaving && self.cluster.is_left() {
                return Ok(());
            }
            let timeout = self
                .wake_at()
                .map(|at| at.saturating_duration_since(StdInstant::now()));
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for ev in events.iter() {
                if ev.token() == WAKER {
                    continue;
                }
                let token = Token(ev.token().0 as u64);
                if self.udp.contains_key(&token) {
                    self.readable_udp(token);
                } else if self.links.owns(token) {
                    let mut out = Vec::new();
                    let registry = self.poll.registry();
                    self.links.accept_ready(registry, token, &mut out);
                    self.links.advance(registry, token, &mut out);
                    for (t, a) in out {
                        self.answer(t, a);
                    }
                } else {
                    self.advance_exchange(token);
                }
            }
            if !leaving {
                loop {
                    match self.cmd.try_recv() {
                        Ok(c) => match self.handle_command(c) {
                            None => {}
                            Some(false) => return Ok(()),
                            Some(true) => {
                                let now = self.now();
                                self.cluster.leave(now);
                                leaving = true;
                                break;
                            }
                        },
                        Err(mpsc::TryRecvError::Empty) => break,
                        Err(mpsc::TryRecvError::Disconnected) => return Ok(()),
                    }
                }
            }
            while let Ok(b) = self.back.try_recv() {
                self.handle_back(b);
            }
            self.expire();
            let now = self.tick();
            if self.cluster.poll_timeout().is_some_and(|t| t <= now) {
                self.cluster.handle_timeout(now);
            }
        }
    }
}

/// The first address of `to` (of the given family, when one is asked for).
fn resolve(to: &Endpoint, v4: Option<bool>) -> Result<SocketAddr, Failure> {
    let addrs: Vec<SocketAddr> = match to {
        Endpoint::Addr(a) => vec![*a],
        Endpoint::Host { host, port } => (host.as_str(), *port)
            .to_socket_addrs()
            .map_err(|e| Failure::io(host, &e))?
            .collect(),
        other => {
            let why = format!("unsupported endpoint {other}");
            return Err(Failure::new(FailureKind::Unsupported, why));
        }
    };
    addrs
        .into_iter()
        .find(|a| v4.is_none_or(|v4| a.is_ipv4() == v4))
        .ok_or_else(|| {
            let why = format!("{to}: no address of the right family");
            Failure::new(FailureKind::NotFound, why)
        })
}
