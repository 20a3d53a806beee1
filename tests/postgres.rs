//! The `postgres` strategy against a real PostgreSQL server (Debian's `postgresql`, started
//! and stopped by each test): nodes discover each other through LISTEN/NOTIFY with SCRAM and
//! MD5 roles, a node that leaves is lost at once and one that stops after `node_timeout`, a
//! server restart keeps the set and the nodes listen again, a wrong password says what the
//! server said, TLS verified against the test's CA, and a forged NOTIFY refused under a
//! secret. Tests wait for events, never for time: where a loss must come from a goodbye, the
//! node timeout is far longer than the test.
#![allow(clippy::unwrap_used)] // tests unwrap what they set up themselves

use std::process::Stdio;
use std::time::Duration;

use muster::core::{Event, NodeName, Value};
use muster::tokio::{Builder, ClusterHandle, Events, RecordingConnector};
use tokio::io::AsyncBufReadExt;

mod support;
use support::postgres::{
    DATABASE, MD5_PASSWORD, MD5_USER, Options, Postgres, SCRAM_PASSWORD, SCRAM_USER, topology,
};

const WAIT: Duration = Duration::from_secs(30);

fn url(pg: &Postgres, user: &str, password: &str) -> String {
    format!(
        "postgres://{user}:{password}@127.0.0.1:{}/{DATABASE}?sslmode=disable",
        pg.port()
    )
}

fn node(name: &str, entries: Vec<(&str, Value)>) -> (ClusterHandle, Events) {
    Builder::new(RecordingConnector::new())
        .this_node(name.parse().unwrap())
        .topology(topology(entries))
        .spawn()
        .unwrap()
}

/// A role's options for a server that wants TLS: `verify-full` against `ca`, and a node
/// timeout longer than any test.
fn verify_full(pg: &Postgres, ca: &str) -> Vec<(&'static str, Value)> {
    vec![
        ("hostname", Value::str("localhost")),
        ("port", Value::Int(i64::from(pg.port()))),
        ("username", Value::str(SCRAM_USER)),
        ("password", Value::str(SCRAM_PASSWORD)),
        ("database", Value::str(DATABASE)),
        ("sslmode", Value::str("verify-full")),
        ("sslrootcert", Value::str(ca)),
        ("heartbeat_interval", Value::Int(1000)),
        ("node_timeout", Value::Int(600_000)),
    ]
}

fn n(s: &str) -> NodeName {
    s.parse().unwrap()
}

async fn members(h: &ClusterHandle, want: &[&str]) {
    let mut want: Vec<NodeName> = want.iter().map(|s| n(s)).collect();
    want.sort();
    let got = tokio::time::timeout(WAIT, h.wait_for_members(|m| m == want)).await;
    assert!(got.is_ok(), "wanted {want:?}, have {:?}", h.members());
}

/// The next event `pick` takes, failing on any `Lost` it does not.
async fn next<T>(events: &mut Events, mut pick: impl FnMut(&Event) -> Option<T>) -> T {
    tokio::time::timeout(WAIT, async {
        loop {
            let e = events.recv().await.expect("cluster stopped");
            if let Some(t) = pick(&e) {
                return t;
            }
            assert!(!matches!(e, Event::Lost { .. }), "unexpected {e}");
        }
    })
    .await
    .expect("timed out waiting for an event")
}

fn failure(e: &Event) -> Option<String> {
    match e {
        Event::DiscoveryFailed { reason, .. } => Some(reason.to_string()),
        _ => None,
    }
}

fn lost(who: &str) -> impl FnMut(&Event) -> Option<()> + '_ {
    move |e| match e {
        Event::Lost { node, .. } if node.as_str() == who => Some(()),
        _ => None,
    }
}

/// Options that never lose a node by its timeout within a test.
fn slow(url: String) -> Vec<(&'static str, Value)> {
    vec![
        ("url", Value::str(url)),
        ("heartbeat_interval", Value::Int(1000)),
        ("node_timeout", Value::Int(600_000)),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_discover_each_other_and_one_that_leaves_is_lost_at_once() {
    let pg = tokio::task::spawn_blocking(Postgres::start).await.unwrap();
    let scram = url(&pg, SCRAM_USER, SCRAM_PASSWORD);
    let md5 = url(&pg, MD5_USER, MD5_PASSWORD);
    let (a, mut a_events) = node("a@127.0.0.1", slow(scram.clone()));
    let (b, _) = node("b@127.0.0.1", slow(md5));
    let (c, _) = node("c@127.0.0.1", slow(scram));
    members(&a, &["b@127.0.0.1", "c@127.0.0.1"]).await;
    members(&b, &["a@127.0.0.1", "c@127.0.0.1"]).await;
    members(&c, &["a@127.0.0.1", "b@127.0.0.1"]).await;
    // Known from the answers to each one's sync, not from a heartbeat interval later: the
    // heartbeat interval is a second, and every node knew the others after its sync.
    c.leave().await;
    next(&mut a_events, lost("c@127.0.0.1")).await;
    members(&a, &["b@127.0.0.1"]).await;
    members(&b, &["a@127.0.0.1"]).await;
    assert_eq!(a.metrics().discovery_failed, 0);
    a.shutdown().await;
    b.shutdown().await;
}

/// `muster run` as a node: killed (no goodbye), it is lost after `node_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn muster_run_joins_and_a_killed_node_is_lost_after_its_timeout() {
    let pg = tokio::task::spawn_blocking(Postgres::start).await.unwrap();
    let url = url(&pg, SCRAM_USER, SCRAM_PASSWORD);
    let dir = std::env::temp_dir().join(format!("muster-pg-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("muster.toml");
    std::fs::write(
        &config,
        format!(
            "[node]\nname = \"runner@127.0.0.1\"\nconnector = \"none\"\n\
             [topologies.pg]\nstrategy = \"postgres\"\n[topologies.pg.config]\n\
             url = \"{url}\"\nheartbeat_interval = 300\nnode_timeout = 1000\n"
        ),
    )
    .unwrap();
    let (a, mut a_events) = node(
        "a@127.0.0.1",
        vec![
            ("url", Value::str(url)),
            ("heartbeat_interval", Value::Int(300)),
            ("node_timeout", Value::Int(1000)),
        ],
    );
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_muster"))
        .args(["run", "--config", &config.to_string_lossy()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let discovered = tokio::time::timeout(WAIT, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("discovered") && line.contains("a@127.0.0.1") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(discovered, Ok(true), "muster run never discovered a");
    next(&mut a_events, |e| match e {
        Event::Discovered { node, .. } if node.as_str() == "runner@127.0.0.1" => Some(()),
        _ => None,
    })
    .await;
    child.start_kill().unwrap();
    let _ = child.wait().await;
    next(&mut a_events, lost("runner@127.0.0.1")).await;
    a.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_keeps_the_set_and_the_nodes_listen_again() {
    let mut pg = tokio::task::spawn_blocking(Postgres::start).await.unwrap();
    let url = url(&pg, SCRAM_USER, SCRAM_PASSWORD);
    let (a, mut a_events) = node("a@127.0.0.1", slow(url.clone()));
    let (b, _) = node("b@127.0.0.1", slow(url.clone()));
    members(&a, &["b@127.0.0.1"]).await;
    let pg = tokio::task::spawn_blocking(move || {
        pg.restart();
        pg
    })
    .await
    .unwrap();
    // The session ended (57P01, or the stream closed): said, and the set kept.
    let why = next(&mut a_events, failure).await;
    assert!(why.contains("postgres 127.0.0.1"), "{why}");
    assert_eq!(a.members(), vec![n("b@127.0.0.1")]);
    // Both listen again: a newcomer is heard by both.
    let (d, _) = node("d@127.0.0.1", slow(url));
    members(&a, &["b@127.0.0.1", "d@127.0.0.1"]).await;
    members(&b, &["a@127.0.0.1", "d@127.0.0.1"]).await;
    assert_eq!(a.metrics().lost, 0);
    for h in [a, b, d] {
        h.shutdown().await;
    }
    drop(pg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_says_what_the_server_said() {
    let pg = tokio::task::spawn_blocking(Postgres::start).await.unwrap();
    for user in [SCRAM_USER, MD5_USER] {
        let (a, mut events) = node("a@127.0.0.1", slow(url(&pg, user, "wrong")));
        let why = next(&mut events, failure).await;
        assert!(why.contains("28P01") && why.contains(user), "{user}: {why}");
        a.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_verified_against_the_ca_and_required_by_the_server() {
    let pg = tokio::task::spawn_blocking(|| {
        Postgres::start_with(Options {
            tls: true,
            // Plain text is refused to this role: only TLS gets in.
            hba: vec![format!("hostnossl all {SCRAM_USER} 127.0.0.1/32 reject")],
        })
    })
    .await
    .unwrap();
    let ca = pg.ca_cert().unwrap().to_string_lossy().into_owned();
    let verified = |name: &str| node(name, verify_full(&pg, &ca));
    let (a, _) = verified("a@127.0.0.1");
    let (b, _) = verified("b@127.0.0.1");
    members(&a, &["b@127.0.0.1"]).await;
    members(&b, &["a@127.0.0.1"]).await;
    // Without TLS the server turns the role away, and says so.
    let (c, mut events) = node("c@127.0.0.1", slow(url(&pg, SCRAM_USER, SCRAM_PASSWORD)));
    let why = next(&mut events, failure).await;
    assert!(why.contains("28000"), "{why}");
    for h in [a, b, c] {
        h.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_notify_is_rejected_when_a_secret_is_set() {
    let pg = tokio::task::spawn_blocking(Postgres::start).await.unwrap();
    let mut o = slow(url(&pg, SCRAM_USER, SCRAM_PASSWORD));
    o.push(("secret", Value::str("s3cret")));
    let (a, mut events) = node("a@127.0.0.1", o.clone());
    let (b, _) = node("b@127.0.0.1", o);
    members(&a, &["b@127.0.0.1"]).await;
    // Anyone who may NOTIFY on the channel: an unsigned announcement, and a signed one
    // with another secret.
    let forged = [
        "muster1 hb evil@10.6.6.6",
        "muster1s hb evil@10.6.6.6 1 0000000000000000 AAAA",
    ];
    for payload in forged {
        pg.psql(&format!("NOTIFY cluster, '{payload}'"));
    }
    let why = next(&mut events, |e| match e {
        Event::Rejected { reason, .. } => Some(reason.to_string()),
        _ => None,
    })
    .await;
    assert!(
        why.contains("unsigned") || why.contains("authentication"),
        "{why}"
    );
    // Both were counted, neither was discovered.
    let m = a.wait_for_metrics(|m| m.rejected >= 2).await.unwrap();
    assert_eq!(m.discovered, 1);
    assert_eq!(a.members(), vec![n("b@127.0.0.1")]);
    a.shutdown().await;
    b.shutdown().await;
}

/// Without a secret anyone may announce nodes: at most `max_nodes` are remembered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announcements_beyond_max_nodes_are_rejected() {
    let pg = tokio::task::spawn_blocking(Postgres::start).await.unwrap();
    let mut o = slow(url(&pg, SCRAM_USER, SCRAM_PASSWORD));
    o.push(("max_nodes", Value::Int(2)));
    let (a, _) = node("a@127.0.0.1", o.clone());
    let (b, _) = node("b@127.0.0.1", o);
    members(&a, &["b@127.0.0.1"]).await;
    for name in ["x@10.0.0.1", "y@10.0.0.2", "z@10.0.0.3"] {
        pg.psql(&format!("NOTIFY cluster, 'muster1 hb {name}'"));
    }
    let m = a.wait_for_metrics(|m| m.rejected >= 2).await.unwrap();
    assert_eq!(m.discovered, 2, "b and x");
    a.shutdown().await;
    b.shutdown().await;
}

/// Nodes sending libcluster_postgres's bare names, Supabase Realtime's payloads and muster's
/// own on one channel all know each other: every format is read whatever one sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_of_every_payload_format_know_each_other() {
    let pg = tokio::task::spawn_blocking(Postgres::start).await.unwrap();
    let with = |format: &str| {
        let mut o = slow(url(&pg, SCRAM_USER, SCRAM_PASSWORD));
        o.push(("payload_format", Value::str(format)));
        o
    };
    let (a, _) = node("a@127.0.0.1", with("libcluster"));
    let (b, _) = node("b@127.0.0.1", with("realtime"));
    let (c, _) = node("c@127.0.0.1", with("muster"));
    members(&a, &["b@127.0.0.1", "c@127.0.0.1"]).await;
    members(&b, &["a@127.0.0.1", "c@127.0.0.1"]).await;
    members(&c, &["a@127.0.0.1", "b@127.0.0.1"]).await;
    a.shutdown().await;
    b.shutdown().await;
    c.shutdown().await;
}

/// The mio adapter holds the connection through TLS too (negotiated in the clear, rustls by
/// hand): a node on it and one on tokio, both `verify-full` against the test CA, know each
/// other through a server that turns plain connections of the role away. Before, the mio
/// adapter answered every TLS stream `Unsupported`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mio_adapter_speaks_tls_to_the_server_too() {
    let pg = tokio::task::spawn_blocking(|| {
        Postgres::start_with(Options {
            tls: true,
            hba: vec![format!("hostnossl all {SCRAM_USER} 127.0.0.1/32 reject")],
        })
    })
    .await
    .unwrap();
    let ca = pg.ca_cert().unwrap().to_string_lossy().into_owned();
    let (m, _events, driver) = muster::mio::Builder::new(muster::mio::RecordingConnector::new())
        .this_node(n("m@127.0.0.1"))
        .topology(topology(verify_full(&pg, &ca)))
        .build()
        .unwrap();
    let looping = std::thread::spawn(move || driver.run());
    let (t, _) = node("t@127.0.0.1", verify_full(&pg, &ca));
    members(&t, &["m@127.0.0.1"]).await;
    let m = tokio::task::spawn_blocking(move || {
        let got = m.wait_for_members(WAIT, |have| have == [n("t@127.0.0.1")]);
        assert!(got.is_some(), "the mio node has {:?}", m.members());
        assert_eq!(m.metrics().discovery_failed, 0);
        m
    })
    .await
    .unwrap();
    m.shutdown();
    looping.join().unwrap().unwrap();
    t.shutdown().await;
}
