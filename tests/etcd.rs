//! The etcd strategy against a real etcd (Debian's `etcd-server`, which `scripts/test`
//! installs), started by each test on private ports with a temporary data directory: three
//! nodes find each other and a node that leaves revokes its lease; a `muster run` killed with
//! SIGKILL is lost by every peer when its lease expires; etcd restarted under running nodes;
//! authentication with a wrong password; a watch cut mid-stream; TLS verified against a CA.
//!
//! The tests run on a multi-threaded runtime: the etcd helpers block (starting etcd, a
//! request), and the clusters must keep running meanwhile. Tests count events and never
//! assert timings. The kill test prints the time from the kill
//! to the last peer's `lost` (`ttl = 5`); `MUSTER_ETCD_KILL_RUNS=N` repeats it N times:
//! `cargo test --test etcd kill -- --nocapture`.
#![allow(clippy::unwrap_used)] // tests unwrap what they set up themselves

use std::process::Stdio;
use std::time::{Duration, Instant};

use muster::core::config::Options;
use muster::core::strategy::Registry;
use muster::core::{Event, NodeName, TopologySpec, Value};
use muster::tokio::{Builder, ClusterHandle, Events, RecordingConnector};

mod support;
use support::etcd::{Etcd, Proxy, TlsFiles};

const PREFIX: &str = "/muster/t/";

/// An in-process node named `name` with an etcd topology `t` of `options`.
fn node(name: &str, options: Vec<(&str, Value)>) -> (ClusterHandle, Events) {
    let t: Vec<(String, Value)> = options
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    let mut o = Options::new("config", &t);
    let strategy = Registry::builtin().build("etcd", &mut o).unwrap();
    o.finish().unwrap();
    Builder::new(RecordingConnector::new())
        .this_node(name.parse().unwrap())
        .topology(TopologySpec::boxed("t", strategy))
        .spawn()
        .unwrap()
}

fn endpoints(urls: &[String]) -> (&'static str, Value) {
    (
        "endpoints",
        Value::List(urls.iter().map(|u| Value::str(u.as_str())).collect()),
    )
}

fn names(v: &[&str]) -> Vec<NodeName> {
    let mut out: Vec<NodeName> = v.iter().map(|s| s.parse().unwrap()).collect();
    out.sort();
    out
}

async fn members(h: &ClusterHandle, want: &[&str]) {
    let want = names(want);
    let got =
        tokio::time::timeout(Duration::from_secs(30), h.wait_for_members(|m| m == want)).await;
    assert!(got.is_ok(), "wanted {want:?}, have {:?}", h.members());
}

/// Every event until `until` is seen (or 30 s pass).
async fn events_until(events: &mut Events, mut until: impl FnMut(&Event) -> bool) -> Vec<Event> {
    let mut seen = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let e = events.recv().await.expect("cluster stopped");
            let done = until(&e);
            seen.push(e);
            if done {
                return;
            }
        }
    })
    .await;
    assert!(r.is_ok(), "timed out; events so far: {seen:?}");
    seen
}

/// The events that came already, without waiting.
async fn drain(events: &mut Events) -> Vec<Event> {
    let mut seen = Vec::new();
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(1), events.recv()).await {
        seen.push(e);
    }
    seen
}

fn lost(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Lost { node, .. } => Some(node.to_string()),
            _ => None,
        })
        .collect()
}

fn failures(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::DiscoveryFailed { reason, .. } => Some(reason.to_string()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_discover_each_other_and_one_that_leaves_revokes_its_lease() {
    let etcd = Etcd::start("three");
    let o = || vec![endpoints(&[etcd.url()])];
    let (a, mut ea) = node("a@127.0.0.1", o());
    let (b, _eb) = node("b@127.0.0.2", o());
    let (c, _ec) = node("c@127.0.0.3", o());
    members(&a, &["b@127.0.0.2", "c@127.0.0.3"]).await;
    members(&b, &["a@127.0.0.1", "c@127.0.0.3"]).await;
    members(&c, &["a@127.0.0.1", "b@127.0.0.2"]).await;
    let keys = etcd.keys(PREFIX);
    assert_eq!(
        keys.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
        [
            "/muster/t/a@127.0.0.1",
            "/muster/t/b@127.0.0.2",
            "/muster/t/c@127.0.0.3"
        ]
    );
    assert!(keys.iter().all(|(_, lease)| *lease != 0), "{keys:?}");

    // Leaving revokes the lease before the cluster counts as left: the key is gone at once,
    // and the peers lose the node without waiting for its TTL.
    c.leave().await;
    assert_eq!(etcd.keys(PREFIX).len(), 2);
    let seen = events_until(&mut ea, |e| matches!(e, Event::Lost { .. })).await;
    assert_eq!(lost(&seen), ["c@127.0.0.3"]);
    members(&b, &["a@127.0.0.1"]).await;
    assert!(failures(&seen).is_empty(), "{seen:?}");
    a.shutdown().await;
    b.shutdown().await;
}

/// `muster run` with an etcd topology (`ttl` seconds), discovery only.
fn muster_run(dir: &std::path::Path, name: &str, url: &str, ttl: u64) -> tokio::process::Child {
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        format!(
            "[node]\nname = \"{name}\"\nconnector = \"none\"\n[topologies.t]\nstrategy = \"etcd\"\n\
             [topologies.t.config]\nendpoints = [\"{url}\"]\nttl = {ttl}\n"
        ),
    )
    .unwrap();
    tokio::process::Command::new(env!("CARGO_BIN_EXE_muster"))
        .args(["run", "--config", &config.to_string_lossy()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_node_is_lost_by_every_peer_when_its_lease_expires() {
    let etcd = Etcd::start("kill");
    let dir = support::k8s::Dir::new("etcd-kill");
    let o = || vec![endpoints(&[etcd.url()]), ("ttl", Value::Int(5))];
    let (a, mut ea) = node("a@127.0.0.1", o());
    let (b, mut eb) = node("b@127.0.0.2", o());
    members(&a, &["b@127.0.0.2"]).await;
    let runs: usize = std::env::var("MUSTER_ETCD_KILL_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    let mut figures = Vec::new();
    for run in 0..runs {
        let name = format!("k{run}@127.0.0.9");
        let mut child = muster_run(&dir.0, &name, &etcd.url(), 5);
        members(&a, &["b@127.0.0.2", &name]).await;
        members(&b, &["a@127.0.0.1", &name]).await;
        drain(&mut ea).await;
        drain(&mut eb).await;
        // SIGKILL: no leave, no revoke; only the lease's expiry tells.
        child.start_kill().unwrap();
        let killed = Instant::now();
        child.wait().await.unwrap();
        let mut last = Duration::ZERO;
        for events in [&mut ea, &mut eb] {
            let seen = events_until(events, |e| matches!(e, Event::Lost { .. })).await;
            last = last.max(killed.elapsed());
            assert_eq!(lost(&seen), [name.as_str()], "{seen:?}");
            assert!(failures(&seen).is_empty(), "{seen:?}");
        }
        println!(
            "etcd ttl = 5 s: kill -> every peer's lost in {} ms",
            last.as_millis()
        );
        figures.push(last);
    }
    figures.sort();
    println!(
        "etcd ttl = 5 s, {} kills: kill -> every peer's lost: min {} ms, median {} ms, max {} ms",
        figures.len(),
        figures[0].as_millis(),
        figures[figures.len() / 2].as_millis(),
        figures[figures.len() - 1].as_millis()
    );
    // Nothing else was lost.
    assert!(lost(&drain(&mut ea).await).is_empty());
    assert_eq!(a.members(), names(&["b@127.0.0.2"]));
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_ride_out_an_etcd_restart_and_keep_watching() {
    let mut etcd = Etcd::start("restart");
    let o = || vec![endpoints(&[etcd.url()]), ("ttl", Value::Int(5))];
    let (a, mut ea) = node("a@127.0.0.1", o());
    let (b, mut eb) = node("b@127.0.0.2", o());
    members(&a, &["b@127.0.0.2"]).await;
    members(&b, &["a@127.0.0.1"]).await;
    drain(&mut ea).await;
    etcd.kill();
    // Both notice (their watches break, and the way back is refused) and keep their set.
    let seen_a = events_until(&mut ea, |e| matches!(e, Event::DiscoveryFailed { .. })).await;
    events_until(&mut eb, |e| matches!(e, Event::DiscoveryFailed { .. })).await;
    etcd.restart();
    // A key written after the restart reaches both: they watch again.
    etcd.put("/muster/t/z@127.0.0.26", "z@127.0.0.26");
    members(&a, &["b@127.0.0.2", "z@127.0.0.26"]).await;
    members(&b, &["a@127.0.0.1", "z@127.0.0.26"]).await;
    let mut all = seen_a;
    all.extend(drain(&mut ea).await);
    assert!(lost(&all).is_empty(), "the set was kept: {all:?}");
    // Their registrations survived the restart (etcd keeps leases and renews them).
    let keys: Vec<String> = etcd.keys(PREFIX).into_iter().map(|(k, _)| k).collect();
    assert!(
        keys.contains(&"/muster/t/a@127.0.0.1".to_owned()),
        "{keys:?}"
    );
    assert!(
        keys.contains(&"/muster/t/b@127.0.0.2".to_owned()),
        "{keys:?}"
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_password_is_reported_and_registers_nothing() {
    let etcd = Etcd::start("auth");
    etcd.enable_auth("app", "app-pw", PREFIX);
    let o = |pw: &str| {
        vec![
            endpoints(&[etcd.url()]),
            ("username", Value::str("app")),
            ("password", Value::str(pw)),
        ]
    };
    let (w, mut ew) = node("w@127.0.0.9", o("not-the-password"));
    let (a, _ea) = node("a@127.0.0.1", o("app-pw"));
    let (b, _eb) = node("b@127.0.0.2", o("app-pw"));
    members(&a, &["b@127.0.0.2"]).await;
    members(&b, &["a@127.0.0.1"]).await;
    let seen = events_until(&mut ew, |e| matches!(e, Event::DiscoveryFailed { .. })).await;
    let f = failures(&seen);
    assert!(f[0].contains("authenticating as \"app\""), "{f:?}");
    assert!(f[0].contains("authentication failed"), "{f:?}");
    assert!(f[0].contains("check username and password"), "{f:?}");
    assert!(!f[0].contains("not-the-password"), "{f:?}");
    // It tries again (with a backoff), and fails again; nothing of it reaches etcd.
    events_until(&mut ew, |e| matches!(e, Event::DiscoveryFailed { .. })).await;
    assert!(w.members().is_empty());
    let keys: Vec<String> = etcd.keys(PREFIX).into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, ["/muster/t/a@127.0.0.1", "/muster/t/b@127.0.0.2"]);
    // The role's readwrite on the prefix is enough to revoke the lease on leaving.
    b.leave().await;
    let keys: Vec<String> = etcd.keys(PREFIX).into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, ["/muster/t/a@127.0.0.1"]);
    w.shutdown().await;
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_watch_cut_mid_stream_resumes_from_its_revision() {
    let etcd = Etcd::start("cut");
    let proxy = Proxy::start(etcd.client);
    etcd.put("/muster/t/b@127.0.0.2", "b@127.0.0.2");
    // A long TTL: no keep-alive goes through the proxy while the test runs, so the only
    // connection cut is the watch.
    let (a, mut ea) = node(
        "a@127.0.0.1",
        vec![endpoints(&[proxy.url()]), ("ttl", Value::Int(120))],
    );
    members(&a, &["b@127.0.0.2"]).await;
    proxy.wait_for(1, "/v3/watch");
    drain(&mut ea).await;
    proxy.cut();
    let seen = events_until(&mut ea, |e| matches!(e, Event::DiscoveryFailed { .. })).await;
    let f = failures(&seen);
    assert!(f[0].contains("resuming from revision"), "{f:?}");
    // Changes made while it was cut come with the resumed watch.
    etcd.put("/muster/t/c@127.0.0.3", "c@127.0.0.3");
    etcd.delete("/muster/t/b@127.0.0.2");
    members(&a, &["c@127.0.0.3"]).await;
    let mut all = seen;
    all.extend(drain(&mut ea).await);
    assert_eq!(lost(&all), ["b@127.0.0.2"], "{all:?}");
    let requests = proxy.requests();
    let count = |what: &str| requests.iter().filter(|r| r.contains(what)).count();
    assert_eq!(
        count("/v3/kv/range"),
        1,
        "resumed, not read again: {requests:?}"
    );
    assert_eq!(count("/v3/watch"), 2, "{requests:?}");
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tls_verified_against_the_ca_file() {
    let dir = support::k8s::Dir::new("etcd-tls");
    support::k8s::make_certs(&dir, "etcd");
    let etcd = Etcd::start_with(
        "tls",
        Some(TlsFiles {
            cert: dir.path("etcd.crt"),
            key: dir.path("etcd.key"),
            client_ca: None,
        }),
    );
    let ca = dir.path("etcd-ca.crt").to_string_lossy().into_owned();
    let o = || {
        vec![
            endpoints(&[etcd.url()]),
            ("ca_file", Value::str(ca.as_str())),
        ]
    };
    let (a, _ea) = node("a@127.0.0.1", o());
    let (b, _eb) = node("b@127.0.0.2", o());
    members(&a, &["b@127.0.0.2"]).await;
    members(&b, &["a@127.0.0.1"]).await;
    // Another CA: the server is not trusted, and nothing is discovered.
    support::k8s::make_certs(&dir, "other");
    let other = dir.path("other-ca.crt").to_string_lossy().into_owned();
    let (x, mut ex) = node(
        "x@127.0.0.9",
        vec![
            endpoints(&[etcd.url()]),
            ("ca_file", Value::str(other.as_str())),
        ],
    );
    let seen = events_until(&mut ex, |e| matches!(e, Event::DiscoveryFailed { .. })).await;
    assert_eq!(failures(&seen).len(), 1, "{seen:?}");
    assert!(x.members().is_empty());
    a.shutdown().await;
    b.shutdown().await;
    x.shutdown().await;
}

/// An etcd that authenticates clients by certificate (`--client-cert-auth`): nodes with a
/// certificate of its CA discover each other; one without a certificate, or with a key that
/// is not its certificate's, is refused and reports why.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_certificate_is_presented_to_an_etcd_that_requires_one() {
    let dir = support::k8s::Dir::new("etcd-mtls");
    support::k8s::make_certs(&dir, "etcd");
    support::k8s::make_client_cert(&dir, "etcd", "client");
    support::k8s::make_client_cert(&dir, "etcd", "stranger");
    let etcd = Etcd::start_with(
        "mtls",
        Some(TlsFiles {
            cert: dir.path("etcd.crt"),
            key: dir.path("etcd.key"),
            client_ca: Some(dir.path("etcd-ca.crt")),
        }),
    );
    let path = |f: &str| dir.path(f).to_string_lossy().into_owned();
    let with = |cert: Option<(&str, &str)>| {
        let mut o = vec![
            endpoints(&[etcd.url()]),
            ("ca_file", Value::str(path("etcd-ca.crt"))),
        ];
        if let Some((c, k)) = cert {
            o.push(("cert_file", Value::str(path(c))));
            o.push(("key_file", Value::str(path(k))));
        }
        o
    };
    let (a, _ea) = node("a@127.0.0.1", with(Some(("client.crt", "client.key"))));
    let (b, _eb) = node("b@127.0.0.2", with(Some(("client.crt", "client.key"))));
    members(&a, &["b@127.0.0.2"]).await;
    members(&b, &["a@127.0.0.1"]).await;
    // No certificate: the server ends the handshake.
    let (x, mut ex) = node("x@127.0.0.9", with(None));
    let seen = events_until(&mut ex, |e| matches!(e, Event::DiscoveryFailed { .. })).await;
    assert_eq!(failures(&seen).len(), 1, "{seen:?}");
    assert!(x.members().is_empty());
    // A certificate with another certificate's key: refused before anything is sent, and
    // the reason says so without showing the key.
    let (y, mut ey) = node("y@127.0.0.10", with(Some(("client.crt", "stranger.key"))));
    let seen = events_until(&mut ey, |e| matches!(e, Event::DiscoveryFailed { .. })).await;
    let why = failures(&seen);
    assert_eq!(why.len(), 1, "{seen:?}");
    assert!(why[0].contains("not usable together"), "{why:?}");
    assert!(!why[0].contains("PRIVATE KEY"), "{why:?}");
    assert!(y.members().is_empty());
    a.shutdown().await;
    b.shutdown().await;
    x.shutdown().await;
    y.shutdown().await;
}
