//! The tasks the driver spawns: each one stoppable, by its token or all at once, so that a
//! cancelled exchange or a stopped cluster leaves no socket behind.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::time::Instant as StdInstant;

use futures_lite::FutureExt;
use muster_core::Token;

use crate::Runtime;

/// Spawns tasks on the runtime and stops them.
pub(crate) struct Tasks<R> {
    runtime: R,
    /// Dropping a task's sender stops it.
    stoppable: BTreeMap<Token, async_channel::Sender<()>>,
    /// Tasks given until a time to end on their own, the earliest first (every grace is the
    /// same length, so the order they came in is the order they are due): a queue, not a
    /// timer task each, so that thousands of closing streams cost a few bytes each.
    draining: VecDeque<(StdInstant, async_channel::Sender<()>)>,
    /// Dropping this stops every task.
    all: Option<async_channel::Sender<()>>,
    all_rx: async_channel::Receiver<()>,
    /// Each task holds a clone until it has ended (and dropped what it held).
    alive: Option<async_channel::Sender<()>>,
    alive_rx: async_channel::Receiver<()>,
}

impl<R: Runtime> Tasks<R> {
    pub(crate) fn new(runtime: R) -> Self {
        let (all, all_rx) = async_channel::bounded(1);
        let (alive, alive_rx) = async_channel::bounded(1);
        Tasks {
            runtime,
            stoppable: BTreeMap::new(),
            draining: VecDeque::new(),
            all: Some(all),
            all_rx,
            alive: Some(alive),
            alive_rx,
        }
    }

    pub(crate) fn runtime(&self) -> &R {
        &self.runtime
    }

    fn launch(
        &self,
        stop: Option<async_channel::Receiver<()>>,
        f: impl Future<Output = ()> + Send + 'static,
    ) {
        let all = self.all_rx.clone();
        let alive = self.alive.clone();
        self.runtime.spawn(async move {
            let _alive = alive;
            let stopped = async move {
                match stop {
                    Some(stop) => {
                        let _ = stop.recv().or(all.recv()).await;
                    }
                    None => {
                        let _ = all.recv().await;
                    }
                }
            };
            f.or(stopped).await;
        });
    }

    /// Runs `f` until it ends or the driver stops.
    pub(crate) fn spawn(&mut self, f: impl Future<Output = ()> + Send + 'static) {
        self.launch(None, f);
    }

    /// Runs `f` until it ends, the driver stops, or [`stop`](Tasks::stop) is called with
    /// `token`.
    pub(crate) fn spawn_stoppable(
        &mut self,
        token: Token,
        f: impl Future<Output = ()> + Send + 'static,
    ) {
        let (tx, rx) = async_channel::bounded(1);
        self.stoppable.insert(token, tx);
        self.launch(Some(rx), f);
    }

    /// Stops the task of `token`, if it still runs.
    pub(crate) fn stop(&mut self, token: Token) {
        self.stoppable.remove(&token);
    }

    /// Stops the task of `token` at `at` if it has not ended by then; `at` is never earlier
    /// than that of a task given a time before (the driver gives every one the same grace).
    /// [`reap`](Tasks::reap) stops it when it is due.
    pub(crate) fn stop_at(&mut self, token: Token, at: StdInstant) {
        let Some(stop) = self.stoppable.remove(&token) else {
            return;
        };
        self.draining.push_back((at, stop));
    }

    /// When the next task given a time is due, if any still runs.
    pub(crate) fn next_due(&self) -> Option<StdInstant> {
        self.draining.front().map(|(at, _)| *at)
    }

    /// Stops the tasks whose time has come.
    pub(crate) fn reap(&mut self, now: StdInstant) {
        while self.draining.front().is_some_and(|(at, _)| *at <= now) {
            self.draining.pop_front();
        }
    }

    /// Forgets the tasks that ended on their own.
    pub(crate) fn prune(&mut self) {
        self.stoppable.retain(|_, tx| !tx.is_closed());
        self.draining.retain(|(_, tx)| !tx.is_closed());
        // A burst of closes (a flood of connections) leaves no large queue behind.
        if self.draining.capacity() > 64 && self.draining.len() < self.draining.capacity() / 4 {
            self.draining.shrink_to(self.draining.len() * 2);
        }
    }

    /// Stops every task and waits until each has ended.
    pub(crate) async fn stop_all(&mut self) {
        self.stoppable.clear();
        self.draining.clear();
        self.all = None;
        self.alive = None;
        // Every sender gone: the channel closes once the last task has dropped its clone.
        while self.alive_rx.recv().await.is_ok() {}
    }
}
