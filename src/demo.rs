//! `muster demo`: a real cluster forming on this machine, with no configuration and no
//! system service.
//!
//! N nodes run in this process, each a service listening on a loopback TCP port and a muster
//! cluster (the Epmd strategy listing every node, the `tcp` connector). The demo shows them
//! forming a full mesh, then stops one node's service so that the others report the failure
//! and back off, brings it back, and shows the mesh heal.

use std::collections::BTreeSet;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use muster_core::strategy::epmd::{Epmd, EpmdConfig};
use muster_core::{ConnectPolicy, Event, Node, NodeName, TopologySpec};
use muster_tokio::{Builder, ClusterHandle, TcpConnector};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

use crate::output::{Format, event_line};

/// What the demo does.
#[derive(Debug, Clone, Copy)]
pub struct DemoOptions {
    /// How many nodes (at least 2).
    pub nodes: usize,
    /// How events are printed.
    pub format: Format,
    /// Give up if the cluster has not done what it should within this long.
    pub limit: Duration,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            nodes: 5,
            format: Format::Text,
            limit: Duration::from_secs(60),
        }
    }
}

/// What the demo measured.
#[derive(Debug, Clone, Copy)]
pub struct DemoReport {
    /// From start until every node had every other connected.
    pub full_mesh: Duration,
    /// From the stopped service's restart until the mesh was full again.
    pub healed: Duration,
}

/// A node's service: accepts connections and holds them until stopped.
struct Service {
    accept: JoinHandle<()>,
}

impl Service {
    async fn start(addr: SocketAddr) -> io::Result<(Service, SocketAddr)> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let accept = tokio::spawn(async move {
            // Dropping this set, when the task is aborted, closes every accepted connection.
            let mut held = JoinSet::new();
            while let Ok((mut s, _)) = listener.accept().await {
                held.spawn(async move {
                    let mut buf = [0u8; 64];
                    while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
                });
                while held.try_join_next().is_some() {}
            }
        });
        Ok((Service { accept }, addr))
    }

    fn stop(self) {
        self.accept.abort();
    }
}

fn name(i: usize) -> NodeName {
    NodeName::new(&format!("demo{}@127.0.0.1", i + 1)).unwrap_or_else(|e| {
        unreachable!("demo node names are valid: {e}");
    })
}

fn say(format: Format, text: &str) {
    match format {
        Format::Text => println!("{text}"),
        Format::Json => println!("{}", serde_json::json!({ "demo": text })),
    }
}

struct Demo {
    opts: DemoOptions,
    start: Instant,
    handles: Vec<ClusterHandle>,
    rx: mpsc::Receiver<(usize, Event)>,
    /// Each node's connected peers, as its events told (so output and checks agree).
    peers: Vec<BTreeSet<NodeName>>,
}

impl Demo {
    fn full_mesh(&self) -> bool {
        let n = self.peers.len();
        self.peers.iter().all(|p| p.len() == n - 1)
    }

    fn track(&mut self, (i, e): &(usize, Event)) {
        match e {
            Event::Connected { node, .. } => {
                self.peers[*i].insert(node.clone());
            }
            Event::Disconnected { node, .. } => {
                self.peers[*i].remove(node);
            }
            _ => {}
        }
    }

    /// Prints events until `done` says the demo may move on.
    async fn until(
        &mut self,
        what: &str,
        mut done: impl FnMut(&Self, Option<&(usize, Event)>) -> bool,
    ) -> io::Result<()> {
        if done(self, None) {
            return Ok(());
        }
        let deadline = tokio::time::Instant::from_std(self.start + self.opts.limit);
        loop {
            let got = tokio::time::timeout_at(deadline, self.rx.recv()).await;
            let Ok(Some(ev)) = got else {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "the demo cluster did not {what} within {:?}",
                        self.opts.limit
                    ),
                ));
            };
            self.track(&ev);
            let on = name(ev.0);
            println!(
                "{}",
                event_line(
                    &ev.1,
                    self.opts.format,
                    self.start.elapsed(),
                    Some(on.as_str())
                )
            );
            if done(self, Some(&ev)) {
                return Ok(());
            }
        }
    }
}

/// Runs the demo, printing as it goes.
pub async fn run(opts: DemoOptions) -> io::Result<DemoReport> {
    let n = opts.nodes.max(2);
    let format = opts.format;
    let mut services = Vec::with_capacity(n);
    let mut nodes = Vec::with_capacity(n);
    for i in 0..n {
        let (svc, addr) = Service::start("127.0.0.1:0".parse().map_err(io::Error::other)?).await?;
        services.push(Some(svc));
        nodes.push(Node::with_addr(name(i), addr));
    }
    say(
        format,
        &format!(
            "muster demo: {n} nodes, each a TCP service on loopback and a muster cluster (Epmd strategy, tcp connector)"
        ),
    );
    for node in &nodes {
        if let Some(a) = node.addr {
            say(format, &format!("  {} listens on {a}", node.name));
        }
    }
    let policy = ConnectPolicy::default()
        .connect_timeout(Duration::from_secs(2))
        .backoff(Duration::from_millis(100), Duration::from_millis(1600));
    let (tx, rx) = mpsc::channel(1024);
    let start = Instant::now();
    let mut handles = Vec::with_capacity(n);
    for (i, node) in nodes.iter().enumerate() {
        let epmd = EpmdConfig::new(nodes.clone()).reconnect_every(Duration::from_secs(1));
        let (handle, mut events) = Builder::new(TcpConnector::new(1))
            .this_node(node.name.clone())
            .topology(TopologySpec {
                name: "demo".into(),
                strategy: Box::new(Epmd::new(epmd)),
                policy,
            })
            .spawn()
            .map_err(io::Error::other)?;
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(e) = events.recv().await {
                if tx.send((i, e)).await.is_err() {
                    return;
                }
            }
        });
        handles.push(handle);
    }
    drop(tx);
    let mut demo = Demo {
        opts,
        start,
        handles,
        rx,
        peers: vec![BTreeSet::new(); n],
    };

    demo.until("form a full mesh", |d, _| d.full_mesh()).await?;
    let full_mesh = start.elapsed();
    say(
        format,
        &format!(
            "full mesh: {n} nodes, {} connections, after {:.1} ms",
            n * (n - 1),
            full_mesh.as_secs_f64() * 1000.0
        ),
    );

    let victim = n / 2;
    let victim_name = name(victim);
    say(
        format,
        &format!("stopping {victim_name}'s service: its peers notice, fail and back off"),
    );
    if let Some(svc) = services[victim].take() {
        svc.stop();
    }
    let mut failures: BTreeSet<(usize, u32)> = BTreeSet::new();
    demo.until("report the stopped service", |_, ev| {
        if let Some((i, Event::ConnectFailed { node, attempt, .. })) = ev
            && *node == victim_name
        {
            failures.insert((*i, *attempt));
        }
        // Every other node has failed at least twice: the backoff is visible.
        (0..n)
            .filter(|i| *i != victim)
            .all(|i| failures.contains(&(i, 2)))
    })
    .await?;

    let addr = nodes[victim]
        .addr
        .unwrap_or_else(|| unreachable!("demo nodes have addresses"));
    say(
        format,
        &format!("restarting {victim_name}'s service on {addr}"),
    );
    let (svc, _) = Service::start(addr).await?;
    services[victim] = Some(svc);
    let restarted = Instant::now();
    demo.until("heal", |d, _| d.full_mesh()).await?;
    let healed = restarted.elapsed();
    say(
        format,
        &format!(
            "healed: full mesh again {:.1} ms after the restart (each peer retried on its own backoff)",
            healed.as_secs_f64() * 1000.0
        ),
    );
    for h in demo.handles.drain(..) {
        h.leave().await;
    }
    for svc in services.into_iter().flatten() {
        svc.stop();
    }
    Ok(DemoReport { full_mesh, healed })
}
