//! `muster demo`: a real Erlang-distribution cluster forming on this machine, with no
//! configuration and no system service.
//!
//! N nodes run in this process, `demo1@127.0.0.1` to `demoN@127.0.0.1`. Each is a hidden
//! Erlang node (the `erlang` connector): it registers with EPMD — the system's if one
//! runs, else muster's own — and finds the others with the LocalEpmd strategy, which asks
//! EPMD for its names every second. The demo prints every event, the time until the nodes
//! form a full mesh, then stops one node so that the others see it go, starts it again and
//! shows the mesh heal. It prints the `erl` command with which a person can join the cluster
//! from a real Erlang shell (with `--stay`, the demo keeps running for that).

use std::collections::BTreeSet;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use muster::core::dist::DistConfig;
use muster::core::dist::epmd::DEFAULT_PORT;
use muster::core::strategy::local_epmd::{LocalEpmd, LocalEpmdConfig};
use muster::core::{ConnectPolicy, Event, NodeName, TopologySpec};
use muster::tokio::{Builder, ClusterHandle, EpmdHandle, epmd_names, epmd_running, run_epmd};
use tokio::sync::mpsc;

use super::output::{Format, event_line};

/// The demo cluster's cookie.
pub const COOKIE: &str = "muster-demo";

/// What the demo does.
#[derive(Debug, Clone, Copy)]
pub struct DemoOptions {
    /// How many nodes (2 to 64).
    pub nodes: usize,
    /// How events are printed.
    pub format: Format,
    /// Keep running after the show, until interrupted, so a person can join.
    pub stay: bool,
    /// Give up if the cluster has not done what it should within this long.
    pub limit: Duration,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            nodes: 5,
            format: Format::Text,
            stay: false,
            limit: Duration::from_secs(60),
        }
    }
}

fn name(i: usize) -> NodeName {
    NodeName::new(&format!("demo{}@127.0.0.1", i + 1))
        .unwrap_or_else(|e| unreachable!("demo node names are valid: {e}"))
}

fn say(format: Format, text: &str) {
    match format {
        Format::Text => println!("{text}"),
        Format::Json => println!("{}", serde_json::json!({ "demo": text })),
    }
}

/// The EPMD the demo uses: the system's on 4369 if one answers, else muster's own there, else
/// muster's own on a free port.
async fn epmd() -> io::Result<(u16, Option<EpmdHandle>, &'static str)> {
    if epmd_running(("127.0.0.1", DEFAULT_PORT)).await {
        return Ok((DEFAULT_PORT, None, "the system's EPMD"));
    }
    if let Ok(h) = run_epmd(SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT))).await {
        return Ok((DEFAULT_PORT, Some(h), "muster's own EPMD"));
    }
    let h = run_epmd(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    Ok((h.local_addr().port(), Some(h), "muster's own EPMD"))
}

struct Node {
    handle: ClusterHandle,
}

impl Node {
    /// Leaves the cluster and Erlang distribution.
    async fn stop(self) {
        self.handle.leave().await;
    }

    /// Starts finding the others (once every node is registered with EPMD, so that each
    /// one's first look finds them all).
    async fn find_others(&self, epmd_port: u16) -> io::Result<()> {
        let policy = ConnectPolicy::default()
            .connect_timeout(Duration::from_secs(3))
            .backoff(Duration::from_millis(100), Duration::from_millis(1600));
        let local = LocalEpmd::new(LocalEpmdConfig::new(epmd_port, Duration::from_secs(1)));
        self.handle
            .add_topology(TopologySpec::new("demo", local).policy(policy))
            .await
            .map(|_| ())
            .map_err(io::Error::other)
    }
}

/// Starts node `i`: a cluster that is itself an Erlang node (the core's distribution), with
/// no topology yet.
fn start_node(i: usize, epmd_port: u16, tx: &mpsc::Sender<(usize, Event)>) -> io::Result<Node> {
    let config = DistConfig::new(name(i), COOKIE)
        .epmd_port(epmd_port)
        .listen(SocketAddr::from(([127, 0, 0, 1], 0)));
    let (handle, mut events) = Builder::erlang(config).spawn().map_err(io::Error::other)?;
    let tx = tx.clone();
    tokio::spawn(async move {
        while let Some(e) = events.recv().await {
            if tx.send((i, e)).await.is_err() {
                return;
            }
        }
    });
    Ok(Node { handle })
}

/// Waits until EPMD lists every node of `which` (EPMD has no event for it: it is asked).
async fn registered(epmd_port: u16, which: impl Iterator<Item = usize>) -> io::Result<()> {
    let want: Vec<String> = which.map(|i| name(i).name().to_owned()).collect();
    let give_up = Instant::now() + Duration::from_secs(10);
    loop {
        let names = epmd_names(("127.0.0.1", epmd_port))
            .await
            .unwrap_or_default();
        if want.iter().all(|w| names.contains(w)) {
            return Ok(());
        }
        if Instant::now() > give_up {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the demo nodes did not register with EPMD on port {epmd_port}"),
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

struct Show {
    opts: DemoOptions,
    start: Instant,
    rx: mpsc::Receiver<(usize, Event)>,
    /// Each node's connected demo peers, as its events told.
    peers: Vec<BTreeSet<NodeName>>,
    /// Events since the last check, for conditions that look at them.
    seen: Vec<(usize, Event)>,
}

impl Show {
    fn full_mesh(&self, except: Option<usize>) -> bool {
        let n = self.peers.len();
        let want = if except.is_some() { n - 2 } else { n - 1 };
        (0..n).filter(|i| Some(*i) != except).all(|i| {
            self.peers[i]
                .iter()
                .filter(|p| (0..n).any(|j| Some(j) != except && name(j) == **p))
                .count()
                == want
        })
    }

    fn track(&mut self, (i, e): &(usize, Event)) -> Option<String> {
        let n = self.peers.len();
        let changed = match e {
            Event::Connected { node, .. } => self.peers[*i].insert(node.clone()),
            Event::Disconnected { node, .. } => self.peers[*i].remove(node),
            _ => false,
        };
        changed.then(|| format!("connected {}/{}", self.peers[*i].len(), n - 1))
    }

    fn print(&mut self, ev: &(usize, Event)) {
        let membership = self.track(ev);
        let on = name(ev.0);
        let mut line = event_line(
            &ev.1,
            self.opts.format,
            self.start.elapsed(),
            Some(on.as_str()),
        );
        if let (Some(m), Format::Text) = (membership, self.opts.format) {
            line = format!("{line:<100}  [{m}]");
        }
        println!("{line}");
    }

    /// Prints events until `done` says the demo may move on.
    async fn until(&mut self, what: &str, mut done: impl FnMut(&Self) -> bool) -> io::Result<()> {
        let deadline = tokio::time::Instant::from_std(Instant::now() + self.opts.limit);
        while !done(self) {
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
            self.print(&ev);
            self.seen.push(ev);
        }
        self.seen.clear();
        Ok(())
    }
}

/// Runs the demo, printing as it goes.
pub async fn run(opts: DemoOptions) -> io::Result<()> {
    let n = opts.nodes.clamp(2, 64);
    let format = opts.format;
    let (epmd_port, _epmd, which) = epmd().await?;
    say(
        format,
        &format!(
            "muster demo: {n} hidden Erlang nodes in this process, registered with {which} on port {epmd_port}, finding each other with the LocalEpmd strategy and connected by Erlang distribution (cookie {COOKIE:?})"
        ),
    );
    let (tx, rx) = mpsc::channel(4096);
    let start = Instant::now();
    // Every node registers first, so that each one's first look at EPMD finds them all.
    let mut nodes = Vec::with_capacity(n);
    for i in 0..n {
        nodes.push(Some(start_node(i, epmd_port, &tx)?));
    }
    registered(epmd_port, 0..n).await?;
    for node in nodes.iter().flatten() {
        node.find_others(epmd_port).await?;
    }
    let mut show = Show {
        opts,
        start,
        rx,
        peers: vec![BTreeSet::new(); n],
        seen: Vec::new(),
    };
    show.until("form a full mesh", |s| s.full_mesh(None))
        .await?;
    let full_mesh = start.elapsed();
    say(
        format,
        &format!(
            "full mesh: {n} nodes, {} connections, after {:.0} ms",
            n * (n - 1),
            full_mesh.as_secs_f64() * 1000.0
        ),
    );

    let victim = n / 2;
    say(
        format,
        &format!("stopping {}: its peers see it go", name(victim)),
    );
    if let Some(node) = nodes[victim].take() {
        node.stop().await;
    }
    show.peers[victim].clear();
    // Each peer sees its connection drop at once, and loses the node at its next look at
    // EPMD.
    let mut lost: BTreeSet<usize> = BTreeSet::new();
    show.until("notice the stopped node", |s| {
        for (i, e) in &s.seen {
            if let Event::Lost { node, .. } = e
                && *node == name(victim)
            {
                lost.insert(*i);
            }
        }
        (0..n)
            .filter(|i| *i != victim)
            .all(|i| !s.peers[i].contains(&name(victim)) && lost.contains(&i))
    })
    .await?;
    say(format, &format!("starting {} again", name(victim)));
    let restarted = Instant::now();
    let node = start_node(victim, epmd_port, &tx)?;
    registered(epmd_port, [victim].into_iter()).await?;
    node.find_others(epmd_port).await?;
    nodes[victim] = Some(node);
    show.until("heal", |s| s.full_mesh(None)).await?;
    let healed = restarted.elapsed();
    say(
        format,
        &format!(
            "healed: full mesh again {:.0} ms after the restart",
            healed.as_secs_f64() * 1000.0
        ),
    );
    let env = if epmd_port == DEFAULT_PORT {
        String::new()
    } else {
        format!("ERL_EPMD_PORT={epmd_port} ")
    };
    let erl = format!("{env}erl -name you@127.0.0.1 -setcookie {COOKIE}");
    if opts.stay {
        say(
            format,
            &format!(
                "the cluster keeps running; join it from Erlang with:  {erl}  then  nodes(hidden).  (Ctrl-C ends the demo)"
            ),
        );
        drop(tx);
        loop {
            tokio::select! {
                ev = show.rx.recv() => match ev {
                    Some(ev) => show.print(&ev),
                    None => break,
                },
                _ = tokio::signal::ctrl_c() => break,
            }
        }
    } else {
        say(
            format,
            &format!(
                "to join it from a real Erlang shell, run `muster demo --stay` and then:  {erl}"
            ),
        );
    }
    for node in nodes.into_iter().flatten() {
        node.stop().await;
    }
    Ok(())
}
