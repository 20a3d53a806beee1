//! Each scenario, written once against [`Adapter`], with real peers where one exists.

use std::net::{TcpListener, UdpSocket};
use std::time::Duration;

use muster::core::config::Options;
use muster::core::connector::{ConnectOutcome, RecordingConnector};
use muster::core::dist::DistConfig;
use muster::core::strategy::dns::DnsOptions;
use muster::core::strategy::dns_poll::{DnsPoll, DnsPollConfig};
use muster::core::strategy::epmd::{Epmd, EpmdConfig};
use muster::core::strategy::gossip::{Gossip, GossipConfig};
use muster::core::strategy::local_epmd::{LocalEpmd, LocalEpmdConfig};
use muster::core::strategy::{Environment, Registry, Strategy};
use muster::core::{
    ConnectPolicy, DiscoveryError, Event, Failure, FailureKind, Node, NodeName, TopologySpec, Value,
};

use crate::harness::{Adapter, Plumbing, Setup};
use crate::support::dnsmasq::{Dnsmasq, Scratch, free_port, host};
use crate::support::erlang::{epmd, erl, erl_eval};
use crate::support::k8s::{
    Behaviour, Dir, Fake, Recorded, WatchMsg, json, make_certs, service_account, slice_event,
    slices, slices_at,
};

/// A tag no other scenario in this process uses (they run in parallel).
fn unique(tag: &str) -> String {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let i = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("conformance-{tag}-{i}")
}

fn n(s: &str) -> NodeName {
    s.parse().unwrap()
}

fn names(v: &[&str]) -> Vec<NodeName> {
    let mut out: Vec<NodeName> = v.iter().map(|s| n(s)).collect();
    out.sort();
    out
}

fn quick() -> ConnectPolicy {
    ConnectPolicy::default()
        .connect_timeout(Duration::from_secs(5))
        .backoff(Duration::from_millis(20), Duration::from_millis(400))
}

fn topology(name: &str, strategy: Box<dyn Strategy>) -> TopologySpec {
    TopologySpec::boxed(name, strategy).policy(quick())
}

fn options(entries: &[(&str, Value)]) -> Vec<(String, Value)> {
    entries
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

fn gossip(port: u16) -> Box<dyn Strategy> {
    let t = options(&[
        ("port", Value::Int(i64::from(port))),
        // Every packet stays on loopback.
        ("multicast_if", Value::str("127.0.0.1")),
        ("heartbeat_max_ms", Value::Int(200)),
        ("secret", Value::str("conformance")),
    ]);
    Box::new(Gossip::new(
        GossipConfig::from_options(&mut Options::new("gossip", &t)).unwrap(),
    ))
}

fn static_hosts(hosts: Vec<Node>) -> Box<dyn Strategy> {
    Box::new(Epmd::new(
        EpmdConfig::new(hosts).reconnect_every(Duration::from_millis(100)),
    ))
}

/// Three nodes on one host find each other by secure gossip over loopback multicast.
pub fn gossip_nodes_find_each_other<A: Adapter>() {
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let all = ["a@127.0.0.1", "b@127.0.0.1", "c@127.0.0.1"];
    let mut nodes: Vec<_> = all
        .iter()
        .map(|name| {
            let rec = RecordingConnector::new();
            let node = A::start(Setup {
                name: n(name),
                topologies: vec![topology("lan", gossip(port))],
                plumbing: Plumbing::Recording(rec.clone()),
            });
            (name, rec, node)
        })
        .collect();
    for (name, rec, node) in &mut nodes {
        let want: Vec<NodeName> = names(&all)
            .into_iter()
            .filter(|m| m.as_str() != **name)
            .collect();
        node.wait_members("the two others", &mut |m| m == want);
        assert_eq!(rec.connected(), want);
        assert_eq!(node.members(), want);
    }
    for (_, _, node) in nodes {
        node.shutdown();
    }
}

/// DNSPoll against dnsmasq: A and AAAA records become nodes; a server that stops answering
/// keeps them.
pub fn dns_poll_against_dnsmasq<A: Adapter>() {
    let port = free_port();
    let dns = Dnsmasq::start(
        port,
        &[
            host("app.test", "127.0.0.2"),
            host("app.test", "127.0.0.3"),
            host("app.test", "fd00::1"),
        ],
    );
    // One quick attempt per poll, so that a stopped server is noticed at once.
    let scratch = Scratch::new(&unique("dns"));
    let opts = DnsOptions::default()
        .resolv_conf(scratch.resolv_conf(port))
        .polling_interval(Duration::from_millis(200));
    let mut node = A::start(Setup {
        name: n("me@127.0.0.1"),
        topologies: vec![topology(
            "dns",
            Box::new(DnsPoll::new(
                DnsPollConfig::new("app.test", "app").with_dns(opts),
            )),
        )],
        plumbing: Plumbing::Recording(RecordingConnector::new()),
    });
    let want = names(&["app@127.0.0.2", "app@127.0.0.3", "app@fd00::1"]);
    node.wait_members("the records' nodes", &mut |m| m == want);
    dns.stop();
    let e = node.next_event("discovery_failed", &mut |e| {
        matches!(e, Event::DiscoveryFailed { .. } | Event::Lost { .. })
    });
    assert!(matches!(e, Event::DiscoveryFailed { .. }), "{e}");
    assert_eq!(node.members(), want, "a failed poll keeps the nodes");
    node.shutdown();
}

/// The Kubernetes strategy against the HTTPS fake API: EndpointSlices over verified TLS with
/// the token; a 403 keeps the nodes.
pub fn kubernetes_against_the_https_api<A: Adapter>() {
    let dir = Dir::new(&unique("k8s"));
    make_certs(&dir, "api");
    let sa = service_account(&dir, Some("api"));
    let fake = Fake::start(&dir, Some("api"), json(slices(&["10.1.0.1", "10.1.0.2"])));
    let t = options(&[
        ("kubernetes_node_basename", Value::str("app")),
        ("kubernetes_service_name", Value::str("myapp")),
        ("kubernetes_service_account_path", Value::str(sa.s())),
        ("polling_interval", Value::Int(200)),
        ("request_timeout", Value::Int(2000)),
        ("watch", Value::Bool(false)),
    ]);
    let env = Environment::new()
        .set("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        .set("KUBERNETES_SERVICE_PORT", fake.addr.port().to_string());
    let mut o = Options::new("config", &t);
    let strategy = Registry::builtin()
        .with_env(env)
        .build("kubernetes", &mut o)
        .unwrap();
    o.finish().unwrap();
    let mut node = A::start(Setup {
        name: n("me@127.0.0.1"),
        topologies: vec![topology("k8s", strategy)],
        plumbing: Plumbing::Recording(RecordingConnector::new()),
    });
    let want = names(&["app@10.1.0.1", "app@10.1.0.2"]);
    node.wait_members("the slices' nodes", &mut |m| m == want);
    let first = &fake.requests()[0];
    assert_eq!(first.authorization.as_deref(), Some("Bearer tok-1"));
    assert!(
        first
            .request_line
            .starts_with("GET /apis/discovery.k8s.io/v1/namespaces/default/endpointslices?"),
        "{}",
        first.request_line
    );
    fake.set(Behaviour::Json {
        status: 403,
        body: r#"{"kind":"Status","message":"forbidden"}"#.into(),
        chunked: false,
    });
    let e = node.next_event("discovery_failed", &mut |e| {
        matches!(e, Event::DiscoveryFailed { .. } | Event::Lost { .. })
    });
    match e {
        Event::DiscoveryFailed { reason, .. } => assert!(
            matches!(reason, DiscoveryError::Status { status: 403, .. }),
            "{reason}"
        ),
        other => panic!("unexpected {other}"),
    }
    assert_eq!(node.members(), want, "a 403 keeps the nodes");
    // Each poll reuses the TLS configuration: its session is resumed, not renegotiated.
    assert!(
        fake.requests().iter().skip(1).any(|r| r.resumed),
        "no poll resumed the TLS session"
    );
    node.shutdown();
}

/// The Kubernetes watch over each adapter's streamed exchange: one list, then changes as they
/// stream in (an event split over many chunks included), and a broken stream lists again.
pub fn kubernetes_watch_streams_changes<A: Adapter>() {
    let dir = Dir::new(&unique("k8s-watch"));
    make_certs(&dir, "api");
    let sa = service_account(&dir, Some("api"));
    let fake = Fake::start(&dir, Some("api"), json(slices(&["10.1.0.1"])));
    let t = options(&[
        ("kubernetes_node_basename", Value::str("app")),
        ("kubernetes_service_name", Value::str("myapp")),
        ("kubernetes_service_account_path", Value::str(sa.s())),
        ("polling_interval", Value::Int(200)),
        ("request_timeout", Value::Int(2000)),
    ]);
    let env = Environment::new()
        .set("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        .set("KUBERNETES_SERVICE_PORT", fake.addr.port().to_string());
    let mut o = Options::new("config", &t);
    let strategy = Registry::builtin()
        .with_env(env)
        .build("kubernetes", &mut o)
        .unwrap();
    o.finish().unwrap();
    let mut node = A::start(Setup {
        name: n("me@127.0.0.1"),
        topologies: vec![topology("k8s", strategy)],
        plumbing: Plumbing::Recording(RecordingConnector::new()),
    });
    let is_watch = |r: &Recorded| r.request_line.contains("watch=1");
    node.wait_members("the listed node", &mut |m| m == names(&["app@10.1.0.1"]));
    fake.wait_for_blocking(1, is_watch);
    fake.watch(WatchMsg::Event(slice_event(
        "ADDED",
        "extra",
        124,
        &["10.1.0.2"],
    )));
    let two = names(&["app@10.1.0.1", "app@10.1.0.2"]);
    node.wait_members("the added node", &mut |m| m == two);
    fake.watch(WatchMsg::Trickle(slice_event("DELETED", "extra", 125, &[])));
    node.wait_members("the deleted slice gone", &mut |m| {
        m == names(&["app@10.1.0.1"])
    });
    // A broken stream: listed again, watched again from the new list.
    fake.set(json(slices_at(300, &["10.1.0.3"])));
    fake.watch(WatchMsg::Drop);
    node.wait_members("the new list", &mut |m| m == names(&["app@10.1.0.3"]));
    let watches = fake.wait_for_blocking(2, is_watch);
    assert!(
        watches[1].request_line.contains("resourceVersion=300&"),
        "{:?}",
        watches[1]
    );
    node.shutdown();
}

/// A connect that fails is retried with growing delays, and succeeds once the connector
/// lets it.
pub fn connector_failure_and_backoff<A: Adapter>() {
    let rec = RecordingConnector::new();
    let b = n("b@h2");
    rec.set_outcome(
        &b,
        ConnectOutcome::Failed(Failure::new(FailureKind::Refused, "refused")),
    );
    let mut node = A::start(Setup {
        name: n("me@h0"),
        topologies: vec![topology(
            "static",
            static_hosts(vec![Node::new(n("a@h1")), Node::new(b.clone())]),
        )],
        plumbing: Plumbing::Recording(rec.clone()),
    });
    let mut delays = Vec::new();
    while delays.len() < 3 {
        let e = node.next_event(
            "connect_failed",
            &mut |e| matches!(e, Event::ConnectFailed { node, .. } if *node == b),
        );
        let Event::ConnectFailed {
            reason,
            attempt,
            retry_in,
            ..
        } = e
        else {
            unreachable!()
        };
        assert_eq!(reason.code(), "refused", "{reason}");
        assert_eq!(attempt as usize, delays.len() + 1);
        let delay = retry_in.expect("a retry");
        assert!(delay <= Duration::from_millis(400), "capped: {delay:?}");
        delays.push(delay);
    }
    assert_eq!(node.members(), vec![n("a@h1")]);
    let m = node.wait_metrics("the failures counted", &mut |m| m.connect_failed >= 3);
    assert_eq!(m.connected, 1, "a connected, b not");
    rec.set_outcome(&b, ConnectOutcome::Connected);
    node.wait_members("b after its backoff", &mut |m| m.len() == 2);
    node.shutdown();
}

/// Accepts connections on `listener`, holding each until told to stop.
fn serve(listener: TcpListener) -> std::thread::JoinHandle<Vec<std::net::TcpStream>> {
    std::thread::spawn(move || {
        let mut held = Vec::new();
        // One connection, then the next after the first is gone: the scenario's two.
        for _ in 0..1 {
            if let Ok((s, _)) = listener.accept() {
                held.push(s);
            }
        }
        held
    })
}

/// A peer that goes away is reported and its node dropped; when it comes back on the same
/// port, the node is connected again.
pub fn a_peer_going_away_and_coming_back<A: Adapter>() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let peer = n("svc@127.0.0.1");
    let accepting = serve(listener);
    let mut node = A::start(Setup {
        name: n("me@127.0.0.1"),
        topologies: vec![topology(
            "static",
            static_hosts(vec![Node::with_addr(peer.clone(), addr)]),
        )],
        plumbing: Plumbing::Tcp(addr.port()),
    });
    node.wait_members("the peer", &mut |m| m == [peer.clone()]);
    // The peer goes away: its connection closes and its port stops listening.
    drop(accepting.join().unwrap());
    node.wait_members("the peer gone", &mut |m| m.is_empty());
    node.next_event(
        "a failed reconnect",
        &mut |e| matches!(e, Event::ConnectFailed { node, .. } if *node == peer),
    );
    // It comes back on the same port.
    let listener = TcpListener::bind(addr).unwrap();
    let accepting = serve(listener);
    node.wait_members("the peer back", &mut |m| m == [peer.clone()]);
    node.shutdown();
    drop(accepting.join().unwrap());
}

/// Shutting down ends the event stream and releases the sockets; leaving disconnects every
/// node first.
pub fn clean_shutdown<A: Adapter>() {
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let start = |name: &str| {
        A::start(Setup {
            name: n(name),
            topologies: vec![topology("lan", gossip(port))],
            plumbing: Plumbing::None,
        })
    };
    let (mut a, b) = (start("a@127.0.0.1"), start("b@127.0.0.1"));
    // Both sockets are open once a has heard b.
    a.next_event("b discovered", &mut |e| {
        matches!(e, Event::Discovered { .. })
    });
    assert!(
        UdpSocket::bind(("0.0.0.0", port)).is_err(),
        "the port is in use"
    );
    a.shutdown();
    b.shutdown();
    // The port is free again: each adapter closed its socket before shutdown returned.
    UdpSocket::bind(("0.0.0.0", port)).expect("the gossip port released at shutdown");

    let rec = RecordingConnector::new();
    let mut node = A::start(Setup {
        name: n("me@h0"),
        topologies: vec![topology(
            "static",
            static_hosts(vec![Node::new(n("a@h1")), Node::new(n("b@h2"))]),
        )],
        plumbing: Plumbing::Recording(rec.clone()),
    });
    node.wait_members("both", &mut |m| m.len() == 2);
    node.leave();
    assert!(rec.connected().is_empty(), "{:?}", rec.connected());
}

/// The cluster as an Erlang node, against Erlang's own `epmd` and `erl`: LocalEpmd finds the
/// `erl` node, the cluster links to it with the cookie handshake, `erl` pings the Rust node
/// back (a connection the adapter accepts), and a killed `erl` node is reported gone.
pub fn erlang_distribution_against_real_erl<A: Adapter>() {
    let port = free_port();
    let _epmd = epmd(port);
    let cookie = "conformance";
    let e1 = erl(port, "e1", cookie);
    let _e2 = erl(port, "e2", cookie);
    let me = n("rust@127.0.0.1");
    let dist = DistConfig::new(me.clone(), cookie)
        .epmd_port(port)
        .listen("127.0.0.1:0".parse().unwrap());
    let mut node = A::start(Setup {
        name: me,
        topologies: vec![topology(
            "local",
            Box::new(LocalEpmd::new(LocalEpmdConfig::new(
                port,
                Duration::from_millis(200),
            ))),
        )],
        plumbing: Plumbing::Erlang(dist),
    });
    let both = names(&["e1@127.0.0.1", "e2@127.0.0.1"]);
    node.wait_members("both erl nodes", &mut |m| m == both);
    // The Rust node registered with EPMD, and answers a ping over a link erl opens.
    assert!(
        crate::support::erlang::names(port).contains(&"rust".to_owned()),
        "registered"
    );
    let pong = erl_eval(port, cookie, "net_adm:ping('rust@127.0.0.1')");
    assert_eq!(pong, "pong");
    drop(e1);
    node.wait_members("e1 gone", &mut |m| m == [n("e2@127.0.0.1")]);
    node.shutdown();
}

/// Rancher's metadata over plain HTTP (an exchange without TLS), then a server that stalls:
/// the request's deadline ends it and the nodes stay.
pub fn rancher_over_plain_http_and_a_stalled_server<A: Adapter>() {
    let dir = Dir::new(&unique("rancher"));
    let body = r#"{"name":"web","containers":[{"name":"web-1","ips":["10.42.0.5"]},{"name":"web-2","ips":[]},{"name":"web-3","ips":["10.42.0.7","10.42.0.8"]}]}"#;
    let fake = Fake::start(&dir, None, json(body.into()));
    let url = format!("http://127.0.0.1:{}/latest/self/service", fake.addr.port());
    let t = options(&[
        ("node_basename", Value::str("app")),
        ("metadata_url", Value::str(url)),
        ("polling_interval", Value::Int(200)),
        ("request_timeout", Value::Int(500)),
    ]);
    let mut o = Options::new("config", &t);
    let strategy = Registry::builtin().build("rancher", &mut o).unwrap();
    o.finish().unwrap();
    let mut node = A::start(Setup {
        name: n("me@127.0.0.1"),
        topologies: vec![topology("rancher", strategy)],
        plumbing: Plumbing::Recording(RecordingConnector::new()),
    });
    let want = names(&["app@10.42.0.5", "app@10.42.0.7"]);
    node.wait_members("the containers' nodes", &mut |m| m == want);
    fake.set(Behaviour::Stall);
    let e = node.next_event("discovery_failed", &mut |e| {
        matches!(e, Event::DiscoveryFailed { .. } | Event::Lost { .. })
    });
    match e {
        Event::DiscoveryFailed { reason, .. } => {
            assert_eq!(reason.code(), "timed_out", "{reason}");
            assert!(reason.to_string().contains("within 500 ms"), "{reason}")
        }
        other => panic!("unexpected {other}"),
    }
    assert_eq!(node.members(), want, "a stalled server keeps the nodes");
    node.shutdown();
}

/// More A records than a UDP answer holds: the resolver asks again over TCP (an exchange
/// with DNS's length-prefixed framing) and every record becomes a node.
pub fn a_truncated_dns_answer_is_completed_over_tcp<A: Adapter>() {
    let port = free_port();
    let records: Vec<String> = (1..=120)
        .map(|i| host("many.test", &format!("127.1.0.{i}")))
        .collect();
    let _dns = Dnsmasq::start(port, &records);
    let scratch = Scratch::new(&unique("tcp"));
    let opts = DnsOptions::default().resolv_conf(scratch.resolv_conf(port));
    let mut node = A::start(Setup {
        name: n("me@127.0.0.1"),
        topologies: vec![topology(
            "dns",
            Box::new(DnsPoll::new(
                DnsPollConfig::new("many.test", "node").with_dns(opts),
            )),
        )],
        plumbing: Plumbing::Recording(RecordingConnector::new()),
    });
    node.wait_members("all 120", &mut |m| m.len() == 120);
    assert!(node.members().contains(&n("node@127.1.0.120")));
    node.shutdown();
}

/// A strategy of the scenario's own that opens one TLS stream (negotiated in the clear
/// first, as PostgreSQL's is), writes `payload` once it is open, and closes it.
struct TlsWriter {
    to: std::net::SocketAddr,
    tls: muster::core::StreamTls,
    payload: Vec<bytes::Bytes>,
}

impl Strategy for TlsWriter {
    fn kind(&self) -> &'static str {
        "tls_writer"
    }

    fn start(&mut self, now: muster::core::Instant, cx: &mut muster::core::strategy::Context<'_>) {
        let to = muster::core::Endpoint::Addr(self.to);
        cx.open_stream(to, Some(self.tls.clone()), now + Duration::from_secs(30));
    }

    fn handle_timeout(
        &mut self,
        _: muster::core::Instant,
        _: &mut muster::core::strategy::Context<'_>,
    ) {
    }

    fn handle_stream(
        &mut self,
        _: muster::core::Instant,
        stream: muster::core::strategy::StreamId,
        event: muster::core::strategy::StreamEvent<'_>,
        cx: &mut muster::core::strategy::Context<'_>,
    ) {
        if let muster::core::strategy::StreamEvent::Opened(_) = event {
            for chunk in self.payload.drain(..) {
                cx.write(stream, chunk);
            }
            cx.close_stream(stream);
        }
    }

    fn poll_timeout(&self) -> Option<muster::core::Instant> {
        None
    }
}

/// A TLS stream negotiated in the clear carries everything written on it — a write larger
/// than TLS buffers at once, an empty one, a last one — and only then TLS's close_notify: a
/// real rustls server reads it all and a clean end. (On mio, an empty write once stalled every
/// write after it, and close_notify went out before what was still queued.)
pub fn a_tls_stream_carries_every_write_before_it_closes<A: Adapter>() {
    use std::io::{Read, Write};
    use std::sync::Arc;

    let dir = Dir::new(&unique("tls-stream"));
    make_certs(&dir, "srv");
    let config = crate::support::k8s::server_config(&dir, "srv");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let to = listener.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (mut tcp, _) = listener.accept().unwrap();
        tcp.set_read_timeout(Some(crate::harness::HANG)).unwrap();
        let mut ask = [0u8; 4];
        tcp.read_exact(&mut ask).unwrap();
        assert_eq!(&ask, b"TLS?");
        tcp.write_all(b"S").unwrap();
        let conn = rustls::ServerConnection::new(Arc::new(config)).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let mut got = Vec::new();
        // Ok at close_notify; UnexpectedEof when the stream ends without one.
        let end = tls.read_to_end(&mut got).map(|_| ());
        let _ = tx.send((got, end.map_err(|e| e.kind())));
    });
    let big: Vec<u8> = (0..200 * 1024).map(|i| (i % 251) as u8).collect();
    let payload = vec![
        bytes::Bytes::from(big.clone()),
        bytes::Bytes::new(),
        bytes::Bytes::from_static(b"end"),
    ];
    let ca = std::fs::read(dir.path("srv-ca.crt")).unwrap();
    let tls = muster::core::StreamTls::negotiated(
        muster::core::Tls::verified("localhost", bytes::Bytes::from(ca)),
        bytes::Bytes::from_static(b"TLS?"),
        b'S',
    );
    let node = A::start(Setup {
        name: n("me@127.0.0.1"),
        topologies: vec![topology("tls", Box::new(TlsWriter { to, tls, payload }))],
        plumbing: Plumbing::None,
    });
    let (got, end) = rx
        .recv_timeout(crate::harness::HANG)
        .expect("the server saw the stream end");
    let mut want = big;
    want.extend_from_slice(b"end");
    assert_eq!(got.len(), want.len(), "bytes the server read, then {end:?}");
    assert!(got == want, "the bytes differ");
    assert_eq!(end, Ok(()), "a clean end (close_notify)");
    node.shutdown();
}
