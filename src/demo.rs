//! `muster demo`: a real cluster forming on this machine over gossip, with no configuration
//! and no system service.
//!
//! N nodes run in this process. Node *i* is `demo<i>@127.0.0.<i>`: a TCP service listening on
//! its own loopback address, and a muster cluster with the Gossip strategy (secure mode,
//! multicast on loopback) and the `tcp` connector. The demo shows the nodes discovering each
//! other from their heartbeats and connecting into a full mesh, then stops one node's service
//! so that the others report the failure and back off, brings it back, and shows the mesh
//! heal. Every address is on loopback and every packet stays on this host.

use std::collections::BTreeSet;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use muster_core::strategy::gossip::{Gossip, GossipConfig};
use muster_core::{ConnectPolicy, Event, MulticastInterface, NodeName, TopologySpec};
use muster_tokio::{Builder, ClusterHandle, TcpConnector};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

use crate::output::{Format, event_line};

/// What the demo does.
#[derive(Debug, Clone, Copy)]
pub struct DemoOptions {
    /// How many nodes (2 to 64).
    pub nodes: usize,
    /// How events are printed.
    pub format: Format,
    /// The gossip `heartbeat_max_ms`: heartbeats go out every uniform 1..this ms.
    pub heartbeat_max: Duration,
    /// Give up if the cluster has not done what it should within this long.
    pub limit: Duration,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            nodes: 5,
            format: Format::Text,
            heartbeat_max: Duration::from_millis(1000),
            limit: Duration::from_secs(60),
        }
    }
}

/// What the demo measured.
#[derive(Debug, Clone, Copy)]
pub struct DemoReport {
    /// From start until every node had discovered every other.
    pub known: Duration,
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
    async fn start(addr: SocketAddr) -> io::Result<Service> {
        let listener = TcpListener::bind(addr).await.map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot listen on {addr}: {e} (the demo gives each node its own loopback address, as Linux allows)"),
            )
        })?;
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
        Ok(Service { accept })
    }

    fn stop(self) {
        self.accept.abort();
    }
}

fn ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, (i + 1) as u8)
}

fn name(i: usize) -> NodeName {
    NodeName::new(&format!("demo{}@{}", i + 1, ip(i)))
        .unwrap_or_else(|e| unreachable!("demo node names are valid: {e}"))
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
    /// Each node's discovered and connected peers, as its events told (so that what is
    /// printed and what is checked agree).
    known: Vec<BTreeSet<NodeName>>,
    peers: Vec<BTreeSet<NodeName>>,
}

impl Demo {
    fn all(sets: &[BTreeSet<NodeName>]) -> bool {
        let n = sets.len();
        sets.iter().all(|p| p.len() == n - 1)
    }

    fn track(&mut self, (i, e): &(usize, Event)) -> Option<String> {
        let n = self.peers.len();
        let changed = match e {
            Event::Discovered { node, .. } => self.known[*i].insert(node.clone()),
            Event::Connected { node, .. } => self.peers[*i].insert(node.clone()),
            Event::Disconnected { node, .. } => self.peers[*i].remove(node),
            _ => false,
        };
        changed.then(|| {
            format!(
                "knows {}/{}, connected {}/{}",
                self.known[*i].len(),
                n - 1,
                self.peers[*i].len(),
                n - 1
            )
        })
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
            let membership = self.track(&ev);
            let on = name(ev.0);
            let mut line = event_line(
                &ev.1,
                self.opts.format,
                self.start.elapsed(),
                Some(on.as_str()),
            );
            if let (Some(m), Format::Text) = (membership, self.opts.format) {
                line = format!("{line:<90}  [{m}]");
            }
            println!("{line}");
            if done(self, Some(&ev)) {
                return Ok(());
            }
        }
    }
}

/// A UDP port free on this host right now, for the demo's gossip.
async fn free_udp_port() -> io::Result<u16> {
    Ok(UdpSocket::bind("127.0.0.1:0").await?.local_addr()?.port())
}

/// Runs the demo, printing as it goes.
pub async fn run(opts: DemoOptions) -> io::Result<DemoReport> {
    let n = opts.nodes.clamp(2, 64);
    let format = opts.format;
    let gossip_port = free_udp_port().await?;
    let service_port = TcpListener::bind("127.0.0.1:0").await?.local_addr()?.port();
    let mut services = Vec::with_capacity(n);
    for i in 0..n {
        services.push(Some(
            Service::start(SocketAddr::new(IpAddr::V4(ip(i)), service_port)).await?,
        ));
    }
    say(
        format,
        &format!(
            "muster demo: {n} nodes on loopback, each a TCP service on port {service_port} of its own address and a muster cluster: \
             gossip in secure mode on multicast 233.252.1.32:{gossip_port} (heartbeats every 1..{} ms), tcp connector",
            opts.heartbeat_max.as_millis()
        ),
    );
    let mut gossip = GossipConfig::default();
    gossip.port = gossip_port;
    gossip.multicast_if = Some(MulticastInterface::V4(Ipv4Addr::LOCALHOST));
    gossip.secret = Some(b"muster demo".to_vec());
    gossip.heartbeat_max = opts.heartbeat_max;
    let policy = ConnectPolicy::default()
        .connect_timeout(Duration::from_secs(2))
        .backoff(Duration::from_millis(100), Duration::from_millis(1600));
    let (tx, rx) = mpsc::channel(4096);
    let start = Instant::now();
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let (handle, mut events) = Builder::new(TcpConnector::new(service_port))
            .this_node(name(i))
            .topology(TopologySpec {
                name: "demo".into(),
                strategy: Box::new(Gossip::new(gossip.clone())),
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
        known: vec![BTreeSet::new(); n],
        peers: vec![BTreeSet::new(); n],
    };

    let mut known_at = None;
    demo.until("form a full mesh", |d, _| {
        if known_at.is_none() && Demo::all(&d.known) {
            known_at = Some(d.start.elapsed());
        }
        known_at.is_some() && Demo::all(&d.peers)
    })
    .await?;
    let full_mesh = start.elapsed();
    let known = known_at.unwrap_or(full_mesh);
    let mean = opts.heartbeat_max.as_secs_f64() / 2.0;
    say(
        format,
        &format!(
            "every node knows every other after {:.0} ms ({:.1} mean heartbeat intervals); full mesh of {} connections after {:.0} ms",
            known.as_secs_f64() * 1000.0,
            known.as_secs_f64() / mean,
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

    let addr = SocketAddr::new(IpAddr::V4(ip(victim)), service_port);
    say(
        format,
        &format!("restarting {victim_name}'s service on {addr}"),
    );
    services[victim] = Some(Service::start(addr).await?);
    let restarted = Instant::now();
    demo.until("heal", |d, _| Demo::all(&d.peers)).await?;
    let healed = restarted.elapsed();
    say(
        format,
        &format!(
            "healed: full mesh again {:.0} ms after the restart (each peer retried on its own backoff)",
            healed.as_secs_f64() * 1000.0
        ),
    );
    for h in demo.handles.drain(..) {
        h.leave().await;
    }
    for svc in services.into_iter().flatten() {
        svc.stop();
    }
    Ok(DemoReport {
        known,
        full_mesh,
        healed,
    })
}
