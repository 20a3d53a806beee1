//! The scenarios' [`Adapter`] for each adapter and executor: tokio, async-io under
//! async-std's executor and under smol's, and the mio loop.

use std::future::Future;
use std::sync::Arc;

use muster::core::connector::{Connector, NoneConnector};
use muster::core::{ClusterConfig, Event, Metrics, NodeName};

use crate::harness::{Adapter, HANG, Plumbing, Running, Setup};

fn connector(p: Plumbing, tcp: impl FnOnce(u16) -> Arc<dyn Connector>) -> Arc<dyn Connector> {
    match p {
        Plumbing::None | Plumbing::Erlang(_) => Arc::new(NoneConnector),
        Plumbing::Recording(r) => Arc::new(r),
        Plumbing::Tcp(port) => tcp(port),
    }
}

/// The cluster settings for `p`: an Erlang node is its own connector.
fn config(p: &Plumbing, name: &NodeName) -> ClusterConfig {
    let c = ClusterConfig::new().this_node(name.clone());
    match p {
        Plumbing::Erlang(d) => c.erlang(d.clone()),
        _ => c,
    }
}

// ---- tokio ----

pub struct Tokio;

struct TokioNode {
    rt: tokio::runtime::Runtime,
    handle: muster::tokio::ClusterHandle,
    events: muster::tokio::Events,
}

impl TokioNode {
    fn block<T>(&self, what: &str, f: impl Future<Output = T>) -> T {
        self.rt
            .block_on(async { tokio::time::timeout(HANG, f).await })
            .unwrap_or_else(|_| panic!("tokio: timed out waiting for {what}"))
    }
}

impl Adapter for Tokio {
    fn start(s: Setup) -> Box<dyn Running> {
        // A worker thread of its own, so the cluster runs between the scenario's calls.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let cfg = config(&s.plumbing, &s.name);
        let c = connector(s.plumbing, |port| {
            Arc::new(muster::tokio::TcpConnector::new(port))
        });
        let (handle, events) = rt.block_on(async {
            let mut b = muster::tokio::Builder::with_connector(c).config(cfg);
            for t in s.topologies {
                b = b.topology(t);
            }
            b.spawn().unwrap()
        });
        Box::new(TokioNode { rt, handle, events })
    }
}

impl Running for TokioNode {
    fn members(&self) -> Vec<NodeName> {
        self.handle.members()
    }
    fn wait_members(&mut self, what: &str, pred: &mut dyn FnMut(&[NodeName]) -> bool) {
        self.block(what, self.handle.wait_for_members(pred))
            .expect("the cluster stopped");
    }
    fn wait_metrics(&mut self, what: &str, pred: &mut dyn FnMut(&Metrics) -> bool) -> Metrics {
        self.block(what, self.handle.wait_for_metrics(pred))
            .expect("the cluster stopped")
    }
    fn next_event(&mut self, what: &str, pred: &mut dyn FnMut(&Event) -> bool) -> Event {
        let events = &mut self.events;
        self.rt
            .block_on(async {
                tokio::time::timeout(HANG, async {
                    loop {
                        let e = events.recv().await.expect("the cluster stopped");
                        if pred(&e) {
                            return e;
                        }
                    }
                })
                .await
            })
            .unwrap_or_else(|_| panic!("tokio: timed out waiting for {what}"))
    }
    fn shutdown(mut self: Box<Self>) {
        let h = self.handle.clone();
        self.block("shutdown", h.shutdown());
        let events = &mut self.events;
        self.rt
            .block_on(async {
                tokio::time::timeout(HANG, async { while events.recv().await.is_some() {} }).await
            })
            .expect("the event stream to end");
    }
    fn leave(self: Box<Self>) {
        let h = self.handle.clone();
        self.block("leave", h.leave());
    }
}

// ---- async-io, on async-std's executor or smol's ----

/// How an executor runs the driver and blocks on a future.
pub trait Executor {
    const NAME: &'static str;
    fn spawn(driver: muster::async_io::Driver);
    fn block_on<T>(f: impl Future<Output = T>) -> Option<T>;
}

pub struct AsyncStd;

impl Executor for AsyncStd {
    const NAME: &'static str = "async-std";
    fn spawn(driver: muster::async_io::Driver) {
        async_std::task::spawn(driver);
    }
    fn block_on<T>(f: impl Future<Output = T>) -> Option<T> {
        async_std::task::block_on(async_std::future::timeout(HANG, f)).ok()
    }
}

pub struct Smol;

impl Executor for Smol {
    const NAME: &'static str = "smol";
    fn spawn(driver: muster::async_io::Driver) {
        smol::spawn(driver).detach();
    }
    fn block_on<T>(f: impl Future<Output = T>) -> Option<T> {
        use smol::future::FutureExt;
        smol::block_on(async { Some(f.await) }.or(async {
            smol::Timer::after(HANG).await;
            None
        }))
    }
}

pub struct AsyncIo<E>(std::marker::PhantomData<E>);

struct AsyncIoNode<E> {
    handle: muster::async_io::ClusterHandle,
    events: muster::async_io::Events,
    _e: std::marker::PhantomData<E>,
}

impl<E: Executor + 'static> Adapter for AsyncIo<E> {
    fn start(s: Setup) -> Box<dyn Running> {
        let cfg = config(&s.plumbing, &s.name);
        let c = connector(s.plumbing, |port| {
            Arc::new(muster::async_io::TcpConnector::new(port))
        });
        let mut b = muster::async_io::Builder::with_connector(c).config(cfg);
        for t in s.topologies {
            b = b.topology(t);
        }
        let (handle, events, driver) = b.build().unwrap();
        E::spawn(driver);
        Box::new(AsyncIoNode::<E> {
            handle,
            events,
            _e: std::marker::PhantomData,
        })
    }
}

impl<E: Executor> AsyncIoNode<E> {
    fn block<T>(what: &str, f: impl Future<Output = T>) -> T {
        E::block_on(f).unwrap_or_else(|| panic!("{}: timed out waiting for {what}", E::NAME))
    }
}

impl<E: Executor> Running for AsyncIoNode<E> {
    fn members(&self) -> Vec<NodeName> {
        self.handle.members()
    }
    fn wait_members(&mut self, what: &str, pred: &mut dyn FnMut(&[NodeName]) -> bool) {
        Self::block(what, self.handle.wait_for_members(pred)).expect("the cluster stopped");
    }
    fn wait_metrics(&mut self, what: &str, pred: &mut dyn FnMut(&Metrics) -> bool) -> Metrics {
        Self::block(what, self.handle.wait_for_metrics(pred)).expect("the cluster stopped")
    }
    fn next_event(&mut self, what: &str, pred: &mut dyn FnMut(&Event) -> bool) -> Event {
        let events = &mut self.events;
        Self::block(what, async {
            loop {
                let e = events.recv().await.expect("the cluster stopped");
                if pred(&e) {
                    return e;
                }
            }
        })
    }
    fn shutdown(mut self: Box<Self>) {
        let h = self.handle.clone();
        Self::block("shutdown", h.shutdown());
        let events = &mut self.events;
        Self::block("the event stream to end", async {
            while events.recv().await.is_some() {}
        });
    }
    fn leave(self: Box<Self>) {
        let h = self.handle.clone();
        Self::block("leave", h.leave());
    }
}

// ---- mio ----

pub struct Mio;

struct MioNode {
    handle: muster::mio::ClusterHandle,
    events: muster::mio::Events,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl Adapter for Mio {
    fn start(s: Setup) -> Box<dyn Running> {
        let cfg = config(&s.plumbing, &s.name);
        let c = connector(s.plumbing, |port| {
            Arc::new(muster::mio::TcpConnector::new(port))
        });
        let mut b = muster::mio::Builder::with_connector(c).config(cfg);
        for t in s.topologies {
            b = b.topology(t);
        }
        let (handle, events, event_loop) = b.build().unwrap();
        let thread = std::thread::spawn(move || event_loop.run());
        Box::new(MioNode {
            handle,
            events,
            thread: Some(thread),
        })
    }
}

impl MioNode {
    fn join(&mut self) {
        if let Some(t) = self.thread.take() {
            t.join()
                .expect("the loop panicked")
                .expect("the loop failed");
        }
    }
}

impl Running for MioNode {
    fn members(&self) -> Vec<NodeName> {
        self.handle.members()
    }
    fn wait_members(&mut self, what: &str, pred: &mut dyn FnMut(&[NodeName]) -> bool) {
        self.handle
            .wait_for_members(HANG, pred)
            .unwrap_or_else(|| panic!("mio: timed out waiting for {what}"));
    }
    fn wait_metrics(&mut self, what: &str, pred: &mut dyn FnMut(&Metrics) -> bool) -> Metrics {
        self.handle
            .wait_for_metrics(HANG, pred)
            .unwrap_or_else(|| panic!("mio: timed out waiting for {what}"))
    }
    fn next_event(&mut self, what: &str, pred: &mut dyn FnMut(&Event) -> bool) -> Event {
        loop {
            let e = self
                .events
                .recv_timeout(HANG)
                .unwrap_or_else(|| panic!("mio: timed out waiting for {what}"));
            if pred(&e) {
                return e;
            }
        }
    }
    fn shutdown(mut self: Box<Self>) {
        self.handle.clone().shutdown();
        self.join();
        while self.events.recv_timeout(HANG).is_some() {}
    }
    fn leave(mut self: Box<Self>) {
        self.handle.clone().leave();
        self.join();
    }
}
