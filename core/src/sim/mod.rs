//! A deterministic simulator: many clusters in virtual time over a seeded network.
//!
//! The simulator is the adapter the core is tested with, and it is public so that you can
//! test your own strategies and your own use of the cluster the same way. It owns:
//!
//! - **virtual time**: it jumps straight to the next thing due, so an hour of cluster life
//!   runs in milliseconds;
//! - **a seeded network**: every answer arrives after a random latency, connects may be lost
//!   (the core's deadline then fires), and the same seed replays the same run exactly;
//! - **a simulated connector**: hosts that can go down and come back, be partitioned from
//!   each other, refuse connections, or fail disconnects; links that drop when a host or a
//!   partition cuts them;
//! - **simulated streams**: listeners, accepts, connections and exchanges between hosts, the
//!   bytes of every write split at random points, refused when nothing listens, hanging
//!   until their deadline across a partition, broken when a host goes down; and an EPMD on
//!   every host (the core's own), so clusters that are Erlang nodes
//!   ([`ClusterConfig::erlang`]) register, find each other and link here as on real hosts;
//! - **simulated HTTP services** ([`Sim::serve_http`]): a Kubernetes API ([`KubernetesApi`]:
//!   EndpointSlices, Endpoints and Pods that follow which hosts are up, with 403, 500, stall
//!   and truncation faults), Rancher's metadata ([`RancherMetadata`]), and any closure as
//!   the service a strategy of your own talks to;
//! - **simulated stream services** ([`Sim::serve_stream`]): servers that hold connections,
//!   such as a PostgreSQL server ([`PostgresServer`]: login, `LISTEN`, `NOTIFY`) for the
//!   `postgres` strategy and an etcd member ([`EtcdServer`]: keys, leases expiring in
//!   virtual time, watches, through its JSON gateway) for the `etcd` strategy, reachable
//!   from every host, that can go down, become unreachable, stall or restart
//!   ([`ServiceFault`], [`Sim::restart_service`]);
//! - **fake nodes**: hosts that accept connections but run no cluster;
//! - **a virtual file system** answering `ReadFile`, and the [`NodesFile`] strategy that polls
//!   it, for polling semantics without any real service;
//! - **invariants**, checked after every step: never connect to self; never disconnect a node
//!   some topology still discovers (so a failed discovery cannot cause one); never two
//!   requests in flight for one node; bounded queues; and, when asked, every discovered
//!   reachable node connected within a stated bound. A violation panics with the seed and the
//!   time, so the run can be replayed.
//!
//! ```
//! use std::time::Duration;
//! use muster_core::sim::{Sim, SimConfig};
//! use muster_core::strategy::epmd::{Epmd, EpmdConfig};
//! use muster_core::{ClusterConfig, Node, NodeName, TopologySpec};
//!
//! let names: Vec<NodeName> = ["a@h1", "b@h2", "c@h3"].iter().map(|n| n.parse().unwrap()).collect();
//! let mut sim = Sim::new(42, SimConfig::default());
//! for name in &names {
//!     let hosts = names.clone();
//!     sim.add_node(name.clone(), ClusterConfig::new(), move || {
//!         let epmd = EpmdConfig::new(hosts.iter().cloned().map(Node::new))
//!             .reconnect_every(Duration::from_secs(5));
//!         vec![TopologySpec::new("static", Epmd::new(epmd))]
//!     });
//! }
//! assert!(sim.run_until_quiescent(Duration::from_secs(60)));
//! assert!(sim.linked("a@h1", "c@h3") && sim.linked("c@h3", "b@h2"));
//! ```

mod aws;
mod checker;
mod dns_server;
mod etcd;
mod http;
mod links;
mod nodes_file;
mod postgres;
mod service;
mod streams;
mod tcp;
mod udp;

pub use aws::{Ec2Api, EcsApi};
pub use checker::Violation;
pub use dns_server::{DnsBehaviour, DnsRecord, DnsServer};
pub use etcd::{EtcdFigures, EtcdServer};
pub use http::{
    ApiFault, HttpReply, HttpRequest, HttpService, KubernetesApi, RancherMetadata, World,
};
pub use nodes_file::NodesFile;
pub use postgres::{PostgresFigures, PostgresServer};
pub use service::{ConnId, ServiceFault, ServiceOutput, StreamService};

use core::time::Duration;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;

use crate::cluster::{Cluster, ClusterConfig};
use crate::event::Event;
use crate::io::{Answer, Input, Output, Request, Token};
use crate::node::NodeName;
use crate::reason::{Failure, FailureKind};
use crate::rng::Rng;
use crate::time::Instant;
use crate::topology::TopologySpec;
use checker::Checker;
use links::Links;
use streams::{End, Streams};
use udp::Udp;

use crate::dist::{EpmdOutput, EpmdServer};

/// How the simulated network behaves.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SimConfig {
    /// Each answer takes a uniformly random latency in this range.
    pub latency: (Duration, Duration),
    /// Probability that a connect vanishes without an answer (the core's deadline fires).
    pub connect_loss: f64,
    /// Links are symmetric, as Erlang distribution's are: a link from `a` to `b` shows in
    /// both nodes' lists. When false, a link belongs to the node that opened it (the `tcp`
    /// connector's model).
    pub symmetric: bool,
    /// The connector tells a cluster when one of its links drops (`Input::NodeDown`). When
    /// false, the cluster finds out at its next poll of the list.
    pub notify_drops: bool,
    /// Record every event of every cluster (turn off for long benchmarks).
    pub record_events: bool,
    /// Probability that a datagram is lost, per recipient.
    pub datagram_loss: f64,
    /// Each node's wall clock is off by a random amount up to this, either way.
    pub clock_skew: Duration,
    /// Every host runs an EPMD on this port, started when something first connects to it
    /// (as `erl` starts one): clusters that are Erlang nodes register and find each other
    /// through it.
    pub epmd_port: u16,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            latency: (Duration::from_millis(1), Duration::from_millis(20)),
            connect_loss: 0.0,
            symmetric: false,
            notify_drops: true,
            record_events: true,
            datagram_loss: 0.0,
            clock_skew: Duration::ZERO,
            epmd_port: crate::proto::epmd::DEFAULT_PORT,
        }
    }
}

impl SimConfig {
    /// Sets the latency range.
    pub fn latency(mut self, lo: Duration, hi: Duration) -> Self {
        self.latency = (lo, hi.max(lo));
        self
    }

    /// Sets the probability that a connect gets no answer.
    pub fn connect_loss(mut self, p: f64) -> Self {
        self.connect_loss = p;
        self
    }

    /// Makes links symmetric (Erlang distribution) or owned by their opener.
    pub fn symmetric(mut self, yes: bool) -> Self {
        self.symmetric = yes;
        self
    }

    /// Whether dropped links are notified to the clusters.
    pub fn notify_drops(mut self, yes: bool) -> Self {
        self.notify_drops = yes;
        self
    }

    /// Whether events are recorded.
    pub fn record_events(mut self, yes: bool) -> Self {
        self.record_events = yes;
        self
    }

    /// Sets the port every host's EPMD listens on.
    pub fn epmd_port(mut self, port: u16) -> Self {
        self.epmd_port = port;
        self
    }

    /// Sets the probability that a datagram is lost.
    pub fn datagram_loss(mut self, p: f64) -> Self {
        self.datagram_loss = p;
        self
    }

    /// Sets the largest wall-clock skew between a node and true time.
    pub fn clock_skew(mut self, d: Duration) -> Self {
        self.clock_skew = d;
        self
    }
}

/// The Unix time the simulated world starts at (2023-11-14T22:13:20Z).
const EPOCH_AT_START: Duration = Duration::from_secs(1_700_000_000);

/// The node table slots `cluster` holds, used or free: what the simulator's memory invariant
/// bounds (a table never grows past the nodes there are).
pub fn table_capacity(cluster: &Cluster) -> usize {
    cluster.table_capacity()
}

/// The bound the simulator's convergence check uses, stated: once the network is healthy, a
/// node that a cluster wants and can reach is connected within
///
/// `connect_timeout + backoff_max + 4 × latency`, plus `poll_interval` when drops are not
/// notified
///
/// — an attempt that was in flight when the fault ended may still have to reach its deadline;
/// the retry after any failure comes within the backoff cap; a list and a connect each take a
/// round trip; and a drop nobody reported is only noticed at the next poll.
pub fn convergence_bound(
    policy: &crate::policy::ConnectPolicy,
    poll_interval: Duration,
    config: &SimConfig,
) -> Duration {
    let noticed = if config.notify_drops {
        Duration::ZERO
    } else {
        poll_interval
    };
    noticed + policy.connect_timeout + policy.backoff_max + config.latency.1 * 4
}

/// What a simulated host answers to a connect.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectBehaviour {
    /// Accept (when up and reachable).
    Accept,
    /// Refuse with this reason.
    Refuse(String),
    /// Answer `Ignored` (libcluster's `:ignored`: not part of a network).
    Ignore,
    /// Never answer.
    Silent,
}

type Factory = Box<dyn FnMut() -> Vec<TopologySpec>>;

struct Host {
    /// The host's address on the simulated network.
    ip: IpAddr,
    up: bool,
    group: u32,
    connect: ConnectBehaviour,
    disconnect_failure: Option<String>,
    /// The cluster running on this host, if it is a full node.
    node: Option<usize>,
}

struct SimNode {
    name: NodeName,
    config: ClusterConfig,
    factory: Factory,
    cluster: Cluster,
    events: Vec<(Instant, Event)>,
    restarts: u32,
    /// Datagrams it asked to send, restarts included.
    datagrams_sent: u64,
}

#[derive(Debug)]
enum Delivery {
    Answer {
        token: Token,
        answer: Owned,
    },
    Datagram {
        socket: Token,
        from: SocketAddr,
        data: Bytes,
    },
    Down {
        peer: NodeName,
        reason: Failure,
    },
    Up {
        peer: NodeName,
    },
    /// To a host's EPMD.
    Epmd(EpmdIn),
    /// To a stream service.
    Service(service::ServiceIn),
    /// An exchange with a stream service reached its deadline: answered `TimedOut`, but a
    /// timer, not something in transit (for quiescence).
    Deadline {
        token: Token,
    },
}

#[derive(Debug)]
enum EpmdIn {
    Open { id: u64, peer: SocketAddr },
    Data { id: u64, data: Bytes },
    Closed { id: u64 },
    Tick,
}

/// What reaches one end of a simulated connection.
#[derive(Debug, Clone)]
enum SideMsg {
    Opened(SocketAddr),
    Accepted(SocketAddr),
    Data(Bytes),
    Closed,
    Failed(Failure),
}

/// Where something in transit goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// A node, in its `life`-th life.
    Node { index: usize, life: u32 },
    /// The EPMD of a host.
    Epmd(IpAddr),
    /// A stream service, in its `life`-th life.
    Service { index: usize, life: u32 },
}

#[derive(Debug)]
enum Owned {
    Connect(NodeName),
    Disconnect(NodeName),
    List,
    Data(Vec<u8>),
    Closed,
    TimedOut,
    Failed(Failure),
    Opened(SocketAddr),
    Accepted(SocketAddr),
}

struct InTransit {
    at: Instant,
    seq: u64,
    to: Target,
    what: Delivery,
}

impl PartialEq for InTransit {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for InTransit {}
impl PartialOrd for InTransit {
    fn partial_cmp(&self, o: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for InTransit {
    fn cmp(&self, o: &Self) -> core::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

/// Counts of what a run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SimStats {
    /// Steps taken (distinct points of virtual time).
    pub steps: u64,
    /// Inputs delivered to clusters (answers and notices).
    pub inputs: u64,
    /// `handle_timeout` calls.
    pub timeouts: u64,
    /// Outputs drained from clusters (requests and events).
    pub outputs: u64,
    /// Datagrams delivered (each copy to each recipient).
    pub datagrams: u64,
}

impl SimStats {
    /// Everything the clusters handled or produced: the simulator's unit of work.
    pub fn events(&self) -> u64 {
        self.inputs + self.timeouts + self.outputs
    }
}

/// The simulator; see the module documentation.
pub struct Sim {
    seed: u64,
    now: Instant,
    rng: Rng,
    config: SimConfig,
    hosts: BTreeMap<NodeName, Host>,
    nodes: Vec<SimNode>,
    links: Links,
    udp: Udp,
    streams: Streams,
    /// Each host's EPMD, once something connected to it, and when it next wants a tick.
    epmds: BTreeMap<IpAddr, (EpmdServer, Option<Instant>)>,
    /// Which host has which address.
    ips: BTreeMap<IpAddr, NodeName>,
    /// Each node's wall-clock skew, in milliseconds either way.
    skews: Vec<i64>,
    /// When each node's cluster next needs `handle_timeout`, as last read.
    wake_at: Vec<Option<Instant>>,
    wakes: BinaryHeap<Reverse<(Instant, usize)>>,
    files: BTreeMap<String, Result<Vec<u8>, String>>,
    dns: BTreeMap<SocketAddr, DnsServer>,
    /// HTTP services, by the endpoint they answer at (`host:port`).
    http: BTreeMap<String, Box<dyn HttpService>>,
    /// Stream services, and which answers at which endpoint (`host:port`).
    services: Vec<service::Slot>,
    service_at: BTreeMap<String, usize>,
    transit: BinaryHeap<Reverse<InTransit>>,
    seq: u64,
    checker: Checker,
    stats: SimStats,
}

fn seed_bytes(seed: u64, salt: u64) -> [u8; 32] {
    let mut s = [0u8; 32];
    s[..8].copy_from_slice(&seed.to_le_bytes());
    s[8..16].copy_from_slice(&salt.to_le_bytes());
    s
}

impl Sim {
    /// A simulator whose every random choice, and every cluster's, derives from `seed`.
    pub fn new(seed: u64, config: SimConfig) -> Self {
        Sim {
            seed,
            now: Instant::ZERO,
            rng: Rng::from_seed(seed_bytes(seed, u64::MAX)),
            config,
            hosts: BTreeMap::new(),
            nodes: Vec::new(),
            links: Links::default(),
            udp: Udp::default(),
            streams: Streams::default(),
            epmds: BTreeMap::new(),
            ips: BTreeMap::new(),
            skews: Vec::new(),
            wake_at: Vec::new(),
            wakes: BinaryHeap::new(),
            files: BTreeMap::new(),
            dns: BTreeMap::new(),
            http: BTreeMap::new(),
            services: Vec::new(),
            service_at: BTreeMap::new(),
            transit: BinaryHeap::new(),
            seq: 0,
            checker: Checker::default(),
            stats: SimStats::default(),
        }
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Virtual time now.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// What the run did so far.
    pub fn stats(&self) -> SimStats {
        self.stats
    }

    fn host_mut(&mut self, name: &NodeName) -> &mut Host {
        if !self.hosts.contains_key(name) {
            let n = self.hosts.len() as u32 + 1;
            let ip = name.host_ip().unwrap_or_else(|| {
                IpAddr::V4(std::net::Ipv4Addr::new(
                    10,
                    (n >> 16) as u8,
                    (n >> 8) as u8,
                    n as u8,
                ))
            });
            self.ips.insert(ip, name.clone());
            self.hosts.insert(
                name.clone(),
                Host {
                    ip,
                    up: true,
                    group: 0,
                    connect: ConnectBehaviour::Accept,
                    disconnect_failure: None,
                    node: None,
                },
            );
        }
        match self.hosts.get_mut(name) {
            Some(h) => h,
            None => unreachable!("inserted above"),
        }
    }

    /// Adds a full node: a host running a cluster named `name` with the topologies `factory`
    /// makes. The factory runs again whenever the node restarts after being down.
    pub fn add_node(
        &mut self,
        name: NodeName,
        config: ClusterConfig,
        factory: impl FnMut() -> Vec<TopologySpec> + 'static,
    ) {
        let index = self.nodes.len();
        let config = config.this_node(name.clone());
        let cluster = Cluster::new(config.clone(), seed_bytes(self.seed, index as u64));
        self.nodes.push(SimNode {
            name: name.clone(),
            config,
            factory: Box::new(factory),
            cluster,
            events: Vec::new(),
            restarts: 0,
            datagrams_sent: 0,
        });
        self.wake_at.push(None);
        let max = u64::try_from(self.config.clock_skew.as_millis()).unwrap_or(0);
        let skew = self.rng.range_inclusive(0, 2 * max) as i64 - max as i64;
        self.skews.push(skew);
        self.host_mut(&name).node = Some(index);
        self.start_node(index);
    }

    /// The Unix time on node `index`'s (skewed) clock now.
    fn wall_clock(&self, index: usize) -> Duration {
        let t = EPOCH_AT_START + self.now.since_origin();
        let skew = self.skews[index];
        if skew >= 0 {
            t + Duration::from_millis(skew as u64)
        } else {
            t.saturating_sub(Duration::from_millis(skew.unsigned_abs()))
        }
    }

    fn start_node(&mut self, index: usize) {
        let specs = (self.nodes[index].factory)();
        let now = self.now;
        let wall = self.wall_clock(index);
        self.nodes[index].cluster.set_unix_time(now, wall);
        for spec in specs {
            if let Err(e) = self.nodes[index].cluster.add(now, spec) {
                panic!("sim: bad topology for {}: {e}", self.nodes[index].name);
            }
        }
        self.drain(index);
    }

    /// Adds a fake node: a host that accepts connections but runs no cluster.
    pub fn add_fake_node(&mut self, name: NodeName) {
        self.host_mut(&name);
    }

    /// Sets what a host answers to connects.
    pub fn set_connect_behaviour(&mut self, name: &NodeName, b: ConnectBehaviour) {
        self.host_mut(name).connect = b;
    }

    /// Makes disconnects of `name` fail with `reason` (or succeed again with `None`).
    pub fn set_disconnect_failure(&mut self, name: &NodeName, reason: Option<&str>) {
        self.host_mut(name).disconnect_failure = reason.map(str::to_owned);
    }

    /// Takes a host down (its links drop; a full node stops) or brings it back (a full node
    /// restarts with fresh state, as after a crash).
    pub fn set_up(&mut self, name: &NodeName, up: bool) {
        let host = self.host_mut(name);
        if host.up == up {
            return;
        }
        host.up = up;
        let node = host.node;
        if !up {
            let gone = self.links.touching(name);
            self.cut_links(gone, "peer down");
            let ip = self.hosts.get(name).map(|h| h.ip);
            if let Some(ip) = ip {
                self.break_streams(ip, node, "peer down");
                self.epmds.remove(&ip);
            }
            if let Some(i) = node {
                self.wake_at[i] = None;
                self.udp.drop_node(i);
                self.streams.drop_node(i);
            }
            return;
        }
        if let Some(index) = node {
            let n = &mut self.nodes[index];
            n.restarts += 1;
            let seed = seed_bytes(self.seed, (index as u64) | (u64::from(n.restarts) << 32));
            n.cluster = Cluster::new(n.config.clone(), seed);
            self.checker.reset_node(index);
            self.start_node(index);
        }
    }

    /// Splits the hosts into groups that cannot reach each other; hosts not named stay in
    /// group 0. Links across groups drop.
    pub fn partition(&mut self, groups: &[&[&NodeName]]) {
        for h in self.hosts.values_mut() {
            h.group = 0;
        }
        for (g, members) in groups.iter().enumerate() {
            for m in *members {
                self.host_mut(m).group = g as u32 + 1;
            }
        }
        let group = |h: &BTreeMap<NodeName, Host>, n: &NodeName| h.get(n).map_or(0, |h| h.group);
        let cut: Vec<(NodeName, NodeName)> = self
            .links
            .all()
            .filter(|(a, b)| group(&self.hosts, a) != group(&self.hosts, b))
            .map(|(a, b)| (a.clone(), b.clone()))
            .collect();
        self.cut_links(cut, "partitioned");
        let group = |s: &Self, ip: IpAddr| {
            s.ips
                .get(&ip)
                .and_then(|n| s.hosts.get(n))
                .map_or(0, |h| h.group)
        };
        // A stream service is reachable from every host: no partition cuts its connections.
        let across: Vec<u64> = self
            .streams
            .conns
            .iter()
            .filter(|(_, c)| !Self::is_service_conn(c))
            .filter(|(_, c)| group(self, c.hosts[0]) != group(self, c.hosts[1]))
            .map(|(id, _)| *id)
            .collect();
        for id in across {
            self.break_conn(id, FailureKind::Unreachable, "partitioned");
        }
    }

    /// Creates a link from `a` to `b` outside the clusters' control (as if the application
    /// had connected it itself).
    pub fn link(&mut self, a: &NodeName, b: &NodeName) {
        self.host_mut(a);
        self.host_mut(b);
        self.links.insert(a, b);
    }

    /// Cuts the link between `a` and `b` (both directions), notifying the clusters if the
    /// configuration says so.
    pub fn drop_link(&mut self, a: &NodeName, b: &NodeName) {
        let pairs = [(a.clone(), b.clone()), (b.clone(), a.clone())];
        let cut = pairs
            .into_iter()
            .filter(|(x, y)| self.links.contains(x, y))
            .collect();
        self.cut_links(cut, "link dropped");
    }

    /// Changes the probability that a datagram is lost, from now on.
    pub fn set_datagram_loss(&mut self, p: f64) {
        self.config.datagram_loss = p;
    }

    /// Changes the probability that a connect gets no answer, from now on.
    pub fn set_connect_loss(&mut self, p: f64) {
        self.config.connect_loss = p;
    }

    /// Ends every partition.
    pub fn heal(&mut self) {
        for h in self.hosts.values_mut() {
            h.group = 0;
        }
    }

    /// Sets the contents of a file every node reads.
    pub fn write_file(&mut self, path: &str, contents: impl Into<Vec<u8>>) {
        self.files.insert(path.to_owned(), Ok(contents.into()));
    }

    /// Makes reads of `path` fail with `reason`.
    pub fn fail_file(&mut self, path: &str, reason: &str) {
        self.files.insert(path.to_owned(), Err(reason.to_owned()));
    }

    /// Runs a name server at `addr`, reachable from every host, answering over UDP and TCP.
    pub fn add_dns_server(&mut self, addr: SocketAddr, server: DnsServer) {
        self.dns.insert(addr, server);
    }

    /// Runs the HTTP service `service` at `at` (`host:port` as a strategy names it, e.g.
    /// `kubernetes.default.svc:443` or `10.0.0.1:80`), reachable from every host. TLS is the
    /// adapter's business: here the bytes go in the clear.
    pub fn serve_http(&mut self, at: &str, service: impl HttpService + 'static) {
        self.http.insert(at.to_owned(), Box::new(service));
    }

    /// Makes the HTTP service at `at` show `fault` from now on.
    pub fn http_fault(&mut self, at: &str, fault: ApiFault) {
        if let Some(s) = self.http.get_mut(at) {
            s.set_fault(fault);
        }
    }

    /// Requests the HTTP service at `at` answered.
    pub fn http_requests(&self, at: &str) -> u64 {
        self.http.get(at).map_or(0, |s| s.requests())
    }

    /// The name server at `addr`, to change its zone or behaviour.
    pub fn dns_server(&mut self, addr: SocketAddr) -> Option<&mut DnsServer> {
        self.dns.get_mut(&addr)
    }

    /// Asks the checker to require that every node a cluster wants, and can reach, is linked
    /// within `bound` of becoming wanted and reachable. `None` turns the check off (while
    /// faults are being injected, say).
    pub fn expect_convergence(&mut self, bound: Option<Duration>) {
        self.checker.set_bound(bound, self.now);
    }

    fn reachable(&self, from: &NodeName, to: &NodeName) -> bool {
        match (self.hosts.get(from), self.hosts.get(to)) {
            (Some(a), Some(b)) => a.up && b.up && a.group == b.group,
            _ => false,
        }
    }

    /// Whether a link exists between `a` and `b` (in either direction when links are
    /// symmetric, from `a` to `b` otherwise).
    pub fn linked(&self, a: &str, b: &str) -> bool {
        let (Ok(a), Ok(b)) = (NodeName::new(a), NodeName::new(b)) else {
            return false;
        };
        self.has_link(&a, &b)
    }

    fn has_link(&self, a: &NodeName, b: &NodeName) -> bool {
        // An Erlang node's links are its own distribution connections.
        let erlang = self
            .hosts
            .get(a)
            .and_then(|h| h.node)
            .map(|i| &self.nodes[i]);
        if let Some(n) = erlang.filter(|n| n.config.erlang.is_some()) {
            return n.cluster.is_connected(b.as_str());
        }
        self.links.contains(a, b) || (self.config.symmetric && self.links.contains(b, a))
    }

    /// How many datagrams `name` has asked to send so far (each send once, whatever it
    /// reaches), across its restarts: with [`run_for`](Sim::run_for) in steps, its sending
    /// rate.
    pub fn datagrams_sent(&self, name: &str) -> Option<u64> {
        self.nodes
            .iter()
            .find(|n| n.name.as_str() == name)
            .map(|n| n.datagrams_sent)
    }

    /// The cluster running on `name`.
    pub fn cluster(&self, name: &str) -> Option<&Cluster> {
        self.nodes
            .iter()
            .find(|n| n.name.as_str() == name)
            .map(|n| &n.cluster)
    }

    /// Runs `f` on the cluster of `name` at the current virtual time (to add or remove
    /// topologies, say), then drains it. Returns `None` if there is no such node.
    pub fn with_cluster<R>(
        &mut self,
        name: &str,
        f: impl FnOnce(&mut Cluster, Instant) -> R,
    ) -> Option<R> {
        let index = self.nodes.iter().position(|n| n.name.as_str() == name)?;
        let r = f(&mut self.nodes[index].cluster, self.now);
        self.drain(index);
        Some(r)
    }

    /// The events `name`'s cluster emitted, with their times.
    pub fn events(&self, name: &str) -> &[(Instant, Event)] {
        self.nodes
            .iter()
            .find(|n| n.name.as_str() == name)
            .map_or(&[], |n| &n.events)
    }

    /// The names of the full nodes.
    pub fn node_names(&self) -> impl Iterator<Item = &NodeName> {
        self.nodes.iter().map(|n| &n.name)
    }

    fn schedule(&mut self, node: usize, what: Delivery) {
        let (lo, hi) = self.config.latency;
        let at = self.now + self.rng.duration_between(lo, hi);
        self.schedule_at(node, at, what);
    }

    fn schedule_at(&mut self, node: usize, at: Instant, what: Delivery) {
        let life = self.nodes[node].restarts;
        self.schedule_to(Target::Node { index: node, life }, at, what);
    }

    fn schedule_to(&mut self, to: Target, at: Instant, what: Delivery) {
        self.seq += 1;
        self.transit.push(Reverse(InTransit {
            at,
            seq: self.seq,
            to,
            what,
        }));
    }

    fn latency(&mut self) -> Duration {
        let (lo, hi) = self.config.latency;
        self.rng.duration_between(lo, hi)
    }

    fn cut_links(&mut self, gone: Vec<(NodeName, NodeName)>, reason: &str) {
        for (a, b) in gone {
            if !self.links.remove(&a, &b) {
                continue;
            }
            if !self.config.notify_drops {
                continue;
            }
            for (me, peer) in [(&a, &b), (&b, &a)] {
                if me != &a && !self.config.symmetric {
                    continue;
                }
                let idx = self.hosts.get(me).filter(|h| h.up).and_then(|h| h.node);
                if let Some(idx) = idx {
                    self.schedule(
                        idx,
                        Delivery::Down {
                            peer: peer.clone(),
                            reason: Failure::new(FailureKind::Closed, reason),
                        },
                    );
                }
            }
        }
    }

    fn drain(&mut self, index: usize) {
        while let Some(out) = self.nodes[index].cluster.poll_output() {
            self.stats.outputs += 1;
            match out {
                Output::Event(e) => {
                    self.checker.on_event(self.seed, self.now, index, &e);
                    if self.config.record_events {
                        self.nodes[index].events.push((self.now, e));
                    }
                }
                Output::Request { token, request } => {
                    let me = &self.nodes[index];
                    self.checker
                        .on_request(self.seed, self.now, index, &me.name, token, &request);
                    self.execute(index, token, request);
                }
            }
        }
        let n = &self.nodes[index];
        self.checker.after_drain(
            self.seed,
            self.now,
            index,
            &n.cluster,
            n.config.max_in_flight,
        );
        self.rearm(index);
    }

    fn execute(&mut self, index: usize, token: Token, request: Request) {
        let owned = match request {
            Request::Connect { node, .. } => {
                if self.rng.chance(self.config.connect_loss) {
                    return;
                }
                Owned::Connect(node.name)
            }
            Request::Disconnect { node, .. } => Owned::Disconnect(node),
            Request::ListNodes { .. } => Owned::List,
            Request::ReadFile { path, .. } => match self.files.get(&path) {
                Some(Ok(data)) => Owned::Data(data.clone()),
                Some(Err(why)) => Owned::Failed(Failure::other(why.clone())),
                None => Owned::Failed(Failure::new(
                    FailureKind::NotFound,
                    format!("{path}: no such file"),
                )),
            },
            Request::Exchange(x) => {
                if self.http.contains_key(&x.to.to_string()) {
                    return self.exchange_http(
                        index,
                        token,
                        &x.to.to_string(),
                        &x.send,
                        x.deadline,
                    );
                }
                let server = match &x.to {
                    crate::io::Endpoint::Addr(a) => self.dns.get_mut(a),
                    crate::io::Endpoint::Host { .. } => None,
                };
                let Some(server) = server else {
                    if self.resolve(index, &x.to).is_some() || self.service_for(&x.to).is_some() {
                        let (to, deadline, send) = (x.to, x.deadline, x.send);
                        return self.open_stream(index, token, &to, deadline, Some(send));
                    }
                    return self.schedule(
                        index,
                        Delivery::Answer {
                            token,
                            answer: Owned::Failed(Failure::new(
                                FailureKind::Refused,
                                format!("no simulated service at {}", x.to),
                            )),
                        },
                    );
                };
                // DNS over TCP: one length-prefixed query, one length-prefixed reply, close.
                let reply = x.send.get(2..).and_then(|q| server.answer(q, true));
                let (lo, hi) = self.config.latency;
                let at = self.now + self.rng.duration_between(lo, hi);
                let answers = match reply {
                    Some(r) => {
                        let mut framed = (r.len() as u16).to_be_bytes().to_vec();
                        framed.extend_from_slice(&r);
                        vec![(at, Owned::Data(framed)), (at, Owned::Closed)]
                    }
                    None => vec![(x.deadline.max(self.now), Owned::TimedOut)],
                };
                for (at, answer) in answers {
                    self.schedule_at(index, at, Delivery::Answer { token, answer });
                }
                return;
            }
            Request::OpenUdp(opts) => {
                let restarts = self.nodes[index].restarts;
                match self.udp.open(index, restarts, token, &opts) {
                    Ok(port) => {
                        let ip = self.host_ip(index);
                        Owned::Opened(SocketAddr::new(ip, port))
                    }
                    Err(e) => Owned::Failed(Failure::new(FailureKind::AddrInUse, e)),
                }
            }
            Request::SendDatagram { socket, to, data } => {
                self.nodes[index].datagrams_sent += 1;
                self.send_datagram(index, socket, to, data);
                return;
            }
            Request::CloseUdp { socket } => {
                self.udp.close(index, socket);
                return;
            }
            // What was scheduled still arrives, and the core drops it as stale, as it does
            // with answers an adapter could not stop in time.
            Request::Cancel { token } => return self.cancel(index, token),
            Request::Listen { bind } => return self.listen(index, token, bind),
            Request::Accept { listener } => return self.accept(index, token, listener),
            Request::OpenStream {
                to,
                deadline,
                tls: None,
            } => {
                return self.open_stream(index, token, &to, deadline, None);
            }
            Request::OpenStream { tls: Some(_), .. } => Owned::Failed(Failure::new(
                FailureKind::Unsupported,
                "the simulator has no TLS streams",
            )),
            Request::Write { stream, data } => return self.write(index, stream, data),
        };
        self.schedule(
            index,
            Delivery::Answer {
                token,
                answer: owned,
            },
        );
    }

    /// Computes an answer at delivery time and feeds it to the node's cluster.
    fn deliver(&mut self, index: usize, what: Delivery) {
        let what = match what {
            Delivery::Deadline { token } => {
                // The adapter gives up on the exchange: its connection closes (the service
                // hears it end).
                if let Some((id, side)) = self.streams.end_of(index, token) {
                    self.close(id, side);
                }
                Delivery::Answer {
                    token,
                    answer: Owned::TimedOut,
                }
            }
            what => what,
        };
        let me = self.nodes[index].name.clone();
        let now = self.now;
        match what {
            Delivery::Answer { token, answer } => {
                self.checker.on_answer(index, token);
                let text;
                let nodes: Vec<NodeName>;
                let data;
                let answer = match answer {
                    Owned::Connect(peer) => {
                        let behaviour = self.hosts.get(&peer).map(|h| h.connect.clone());
                        match behaviour {
                            None => {
                                text = Failure::new(
                                    FailureKind::NotFound,
                                    format!("{peer}: no such host"),
                                );
                                Answer::Failed(&text)
                            }
                            Some(_) if !self.reachable(&me, &peer) => {
                                text = Failure::new(FailureKind::Unreachable, "unreachable");
                                Answer::Failed(&text)
                            }
                            Some(ConnectBehaviour::Accept) => {
                                self.links.insert(&me, &peer);
                                if self.config.symmetric && self.config.notify_drops {
                                    let other = self.hosts.get(&peer).and_then(|h| h.node);
                                    if let Some(o) = other {
                                        self.schedule(o, Delivery::Up { peer: me.clone() });
                                    }
                                }
                                Answer::Connected
                            }
                            Some(ConnectBehaviour::Refuse(why)) => {
                                text = Failure::new(FailureKind::Refused, why);
                                Answer::Failed(&text)
                            }
                            Some(ConnectBehaviour::Ignore) => Answer::Ignored,
                            Some(ConnectBehaviour::Silent) => return,
                        }
                    }
                    Owned::Disconnect(peer) => {
                        let failure = self
                            .hosts
                            .get(&peer)
                            .and_then(|h| h.disconnect_failure.clone());
                        if let Some(why) = failure {
                            text = Failure::other(why);
                            Answer::Failed(&text)
                        } else if self.has_link(&me, &peer) {
                            self.links.remove(&me, &peer);
                            if self.config.symmetric {
                                self.links.remove(&peer, &me);
                            }
                            if self.config.symmetric && self.config.notify_drops {
                                // Erlang tells the other side with a nodedown.
                                let other =
                                    self.hosts.get(&peer).filter(|h| h.up).and_then(|h| h.node);
                                if let Some(o) = other {
                                    let reason =
                                        Failure::new(FailureKind::Closed, "disconnected by peer");
                                    self.schedule(
                                        o,
                                        Delivery::Down {
                                            peer: me.clone(),
                                            reason,
                                        },
                                    );
                                }
                            }
                            Answer::Disconnected
                        } else {
                            Answer::NotConnected
                        }
                    }
                    Owned::List => {
                        nodes = self.list_of(&me);
                        Answer::Nodes(&nodes)
                    }
                    Owned::Data(d) => {
                        data = d;
                        Answer::Data(&data)
                    }
                    Owned::Failed(why) => {
                        text = why;
                        Answer::Failed(&text)
                    }
                    Owned::Opened(a) => Answer::Opened(a),
                    Owned::Accepted(a) => Answer::Accepted(a),
                    Owned::Closed => Answer::Closed,
                    Owned::TimedOut => Answer::TimedOut,
                };
                self.nodes[index]
                    .cluster
                    .handle_input(now, Input::Answer { token, answer });
            }
            Delivery::Down { peer, reason } => {
                self.nodes[index].cluster.handle_input(
                    now,
                    Input::NodeDown {
                        node: peer.as_str(),
                        reason: &reason,
                    },
                );
            }
            Delivery::Datagram { socket, from, data } => {
                self.nodes[index].cluster.handle_input(
                    now,
                    Input::Datagram {
                        socket,
                        from,
                        data: &data,
                    },
                );
            }
            Delivery::Epmd(_) | Delivery::Service(_) | Delivery::Deadline { .. } => return,
            Delivery::Up { peer } => {
                if self.has_link(&me, &peer) {
                    self.nodes[index].cluster.handle_input(
                        now,
                        Input::NodeUp {
                            node: peer.as_str(),
                        },
                    );
                }
            }
        }
        self.stats.inputs += 1;
        self.drain(index);
    }

    fn host_ip(&self, index: usize) -> IpAddr {
        self.hosts
            .get(&self.nodes[index].name)
            .map_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), |h| h.ip)
    }

    /// Delivers a datagram to every socket it reaches, each copy with its own latency and
    /// chance of loss, within the sender's partition.
    fn send_datagram(&mut self, index: usize, socket: Token, to: crate::io::Endpoint, data: Bytes) {
        let restarts = self.nodes[index].restarts;
        let Some(port) = self.udp.port_of(index, restarts, socket) else {
            return;
        };
        let to = match to {
            crate::io::Endpoint::Addr(a) => a,
            crate::io::Endpoint::Host { host, port } => {
                let ip = self
                    .hosts
                    .iter()
                    .find(|(n, _)| n.host() == host)
                    .map(|(_, h)| h.ip);
                match ip {
                    Some(ip) => SocketAddr::new(ip, port),
                    None => return,
                }
            }
        };
        let me = self.nodes[index].name.clone();
        if let Some(server) = self.dns.get_mut(&to) {
            let reply = server.answer(&data, false);
            if let Some(reply) = reply
                && !self.rng.chance(self.config.datagram_loss)
            {
                self.schedule(
                    index,
                    Delivery::Datagram {
                        socket,
                        from: to,
                        data: Bytes::from(reply),
                    },
                );
            }
            return;
        }
        let from = SocketAddr::new(self.host_ip(index), port);
        let to_node = self
            .ips
            .get(&to.ip())
            .and_then(|n| self.hosts.get(n))
            .and_then(|h| h.node);
        for (node, life, token) in self.udp.recipients(index, to, to_node) {
            let peer = self.nodes[node].name.clone();
            if !self.reachable(&me, &peer) || self.rng.chance(self.config.datagram_loss) {
                continue;
            }
            if self.nodes[node].restarts != life {
                continue;
            }
            self.stats.datagrams += 1;
            self.schedule(
                node,
                Delivery::Datagram {
                    socket: token,
                    from,
                    data: data.clone(),
                },
            );
        }
    }

    fn list_of(&self, me: &NodeName) -> Vec<NodeName> {
        let mut out: Vec<NodeName> = self.links.outgoing(me).cloned().collect();
        if self.config.symmetric {
            out.extend(self.links.incoming(me).cloned());
            out.sort();
            out.dedup();
        }
        out
    }

    fn node_up(&self, index: usize) -> bool {
        self.hosts
            .get(&self.nodes[index].name)
            .is_some_and(|h| h.up)
    }

    /// Records when node `i` next needs `handle_timeout`, after anything changed it.
    fn rearm(&mut self, i: usize) {
        let at = self.nodes[i].cluster.poll_timeout();
        if at != self.wake_at[i] {
            self.wake_at[i] = at;
            if let Some(at) = at {
                self.wakes.push(Reverse((at, i)));
            }
        }
    }

    /// The earliest valid wake-up, dropping stale entries.
    fn next_wake(&mut self) -> Option<Instant> {
        while let Some(&Reverse((at, i))) = self.wakes.peek() {
            if self.wake_at[i] == Some(at) && self.node_up(i) {
                return Some(at);
            }
            self.wakes.pop();
        }
        None
    }

    /// The next time something is due, if anything is.
    pub fn next_due(&mut self) -> Option<Instant> {
        let at = self.transit.peek().map(|Reverse(t)| t.at);
        crate::time::earliest(at, self.next_wake())
    }

    /// Advances virtual time to the next thing due and runs everything due then. Returns
    /// false when nothing at all is scheduled.
    pub fn step(&mut self) -> bool {
        let Some(at) = self.next_due() else {
            return false;
        };
        self.now = self.now.max(at);
        self.stats.steps += 1;
        while self
            .transit
            .peek()
            .is_some_and(|Reverse(t)| t.at <= self.now)
        {
            let Some(Reverse(t)) = self.transit.pop() else {
                break;
            };
            match t.to {
                // A node that went down, or restarted since, never sees answers meant for
                // the process that asked.
                Target::Node { index, life } => {
                    if !self.node_up(index) || self.nodes[index].restarts != life {
                        continue;
                    }
                    self.deliver(index, t.what);
                }
                Target::Epmd(ip) => {
                    if let Delivery::Epmd(ev) = t.what {
                        self.deliver_epmd(ip, ev);
                    }
                }
                Target::Service { index, life } => {
                    if let Delivery::Service(ev) = t.what {
                        self.arrive_service(index, life, ev);
                    }
                }
            }
        }
        while let Some(at) = self.next_wake() {
            if at > self.now {
                break;
            }
            let Some(Reverse((_, i))) = self.wakes.pop() else {
                break;
            };
            self.wake_at[i] = None;
            self.stats.timeouts += 1;
            self.nodes[i].cluster.handle_timeout(self.now);
            self.drain(i);
        }
        self.check_liveness();
        true
    }

    fn check_liveness(&mut self) {
        if !self.checker.liveness_on() {
            return;
        }
        let mut state = Vec::new();
        for (i, n) in self.nodes.iter().enumerate() {
            if !self.node_up(i) {
                continue;
            }
            for peer in self.hosts.keys() {
                if peer == &n.name || !n.cluster.is_wanted(peer.as_str()) {
                    continue;
                }
                let ok = self.reachable(&n.name, peer);
                let linked = self.has_link(&n.name, peer);
                state.push((i, peer.clone(), ok, linked));
            }
        }
        self.checker.liveness(self.seed, self.now, &state);
    }

    /// Steps until virtual time passes `until` (or nothing is scheduled).
    pub fn run_until(&mut self, until: Instant) {
        while self.next_due().is_some_and(|t| t <= until) {
            self.step();
        }
        self.now = self.now.max(until);
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    /// Whether nothing is in transit and every up node has a link to every node it wants and
    /// can reach.
    pub fn is_quiescent(&self) -> bool {
        // What is meant for a process that went down or restarted is never delivered.
        let pending = self.transit.iter().any(|Reverse(t)| match t.to {
            Target::Node { .. } if matches!(t.what, Delivery::Deadline { .. }) => false,
            Target::Node { index, life } => {
                self.node_up(index) && self.nodes[index].restarts == life
            }
            Target::Epmd(_) => true,
            // A service's timer is not in transit (as a node's is not).
            Target::Service { .. }
                if matches!(t.what, Delivery::Service(service::ServiceIn::Tick)) =>
            {
                false
            }
            Target::Service { index, life } => self.service_pending(index, life),
        });
        if pending {
            return false;
        }
        self.nodes.iter().enumerate().all(|(i, n)| {
            !self.node_up(i)
                || self.hosts.keys().all(|peer| {
                    peer == &n.name
                        || !n.cluster.is_wanted(peer.as_str())
                        || !self.reachable(&n.name, peer)
                        || self.has_link(&n.name, peer)
                })
        })
    }

    /// Steps until [`is_quiescent`](Sim::is_quiescent) or until `limit` of virtual time has
    /// passed. Returns whether it became quiescent.
    pub fn run_until_quiescent(&mut self, limit: Duration) -> bool {
        let until = self.now + limit;
        loop {
            if self.is_quiescent() {
                return true;
            }
            match self.next_due() {
                Some(t) if t <= until => {
                    self.step();
                }
                _ => return self.is_quiescent(),
            }
        }
    }

    /// Violations seen so far (the checker panics on the first unless told to collect).
    pub fn violations(&self) -> &[Violation] {
        self.checker.violations()
    }

    /// Collect violations instead of panicking on the first (for tests that expect one).
    pub fn collect_violations(&mut self) {
        self.checker.collect();
    }
}
