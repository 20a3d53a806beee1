//! The Kubernetes and Rancher strategies over real sockets: a fake Kubernetes API server of
//! the tests' own (HTTPS on rustls, with a CA and server certificate made by `openssl` in the
//! test) serving EndpointSliceList, EndpointsList and PodList shaped as real API responses,
//! and recording every request it gets; a plain-HTTP fake of Rancher's metadata service; and
//! the real `muster` binary against the fake API.
#![allow(clippy::unwrap_used)] // tests unwrap what they set up themselves

use std::process::Stdio;
use std::time::Duration;

use muster::core::config::Options;
use muster::core::strategy::{Environment, Registry};
use muster::core::{Event, NodeName, TopologySpec, Value};
use muster::tokio::{Builder, ClusterHandle, Events, RecordingConnector};
use tokio::io::AsyncBufReadExt;

mod support;
use support::k8s::{
    Behaviour, Dir, Fake, endpoints, json, make_certs, pods, service_account, slices,
};

fn env_for(fake: &Fake) -> Environment {
    Environment::new()
        .set("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        .set("KUBERNETES_SERVICE_PORT", fake.addr.port().to_string())
}

fn start(kind: &str, entries: Vec<(&str, Value)>, env: Environment) -> (ClusterHandle, Events) {
    let t: Vec<(String, Value)> = entries
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    let mut o = Options::new("config", &t);
    let strategy = Registry::builtin()
        .with_env(env)
        .build(kind, &mut o)
        .unwrap();
    o.finish().unwrap();
    Builder::new(RecordingConnector::new())
        .this_node("me@127.0.0.1".parse().unwrap())
        .topology(TopologySpec::boxed(kind, strategy))
        .spawn()
        .unwrap()
}

fn k8s(sa: &Dir, extra: Vec<(&'static str, Value)>) -> Vec<(&'static str, Value)> {
    let mut e = vec![
        ("kubernetes_node_basename", Value::str("app")),
        ("kubernetes_service_name", Value::str("myapp")),
        ("kubernetes_selector", Value::str("app=myapp")),
        ("kubernetes_service_account_path", Value::str(sa.s())),
        ("polling_interval", Value::Int(200)),
        ("request_timeout", Value::Int(1000)),
    ];
    e.extend(extra);
    e
}

fn names(v: &[&str]) -> Vec<NodeName> {
    let mut out: Vec<NodeName> = v.iter().map(|s| s.parse().unwrap()).collect();
    out.sort();
    out
}

async fn members(h: &ClusterHandle, want: &[NodeName]) {
    let got =
        tokio::time::timeout(Duration::from_secs(20), h.wait_for_members(|m| m == want)).await;
    assert!(got.is_ok(), "wanted {want:?}, have {:?}", h.members());
}

async fn next_failure(events: &mut Events) -> String {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match events.recv().await.expect("cluster stopped") {
                Event::DiscoveryFailed { reason, .. } => return reason.to_string(),
                e @ (Event::Lost { .. } | Event::Disconnected { .. }) => panic!("unexpected {e}"),
                _ => {}
            }
        }
    })
    .await
    .expect("timed out waiting for discovery_failed")
}

#[tokio::test]
async fn every_lookup_and_naming_mode_gives_the_right_nodes_with_the_token() {
    let dir = Dir::new("modes");
    make_certs(&dir, "api");
    let sa = service_account(&dir, Some("api"));
    let fake = Fake::start(&dir, Some("api"), json(slices(&["10.1.0.1", "10.1.0.2"])));
    let cases: Vec<(&str, &str, String, Vec<&str>, &str)> = vec![
        (
            "endpointslices",
            "ip",
            slices(&["10.1.0.1", "10.1.0.2"]),
            vec!["app@10.1.0.1", "app@10.1.0.2"],
            "GET /apis/discovery.k8s.io/v1/namespaces/default/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3Dmyapp HTTP/1.1",
        ),
        (
            "endpointslices",
            "hostname",
            slices(&["10.1.0.1"]),
            vec!["app@myapp-0.myapp.default.svc.cluster.local"],
            "",
        ),
        (
            "endpoints",
            "ip",
            endpoints(),
            vec!["app@10.1.0.1", "app@10.1.0.2"],
            "GET /api/v1/namespaces/default/endpoints?labelSelector=app%3Dmyapp HTTP/1.1",
        ),
        (
            "endpoints",
            "dns",
            endpoints(),
            vec![
                "app@10-1-0-1.default.pod.cluster.local",
                "app@10-1-0-2.default.pod.cluster.local",
            ],
            "",
        ),
        (
            "pods",
            "ip",
            pods(),
            vec!["app@10.1.0.1"],
            "GET /api/v1/namespaces/default/pods?labelSelector=app%3Dmyapp HTTP/1.1",
        ),
        (
            "pods",
            "hostname",
            pods(),
            vec!["app@myapp-0.myapp.default.svc.cluster.local"],
            "",
        ),
    ];
    for (lookup, mode, body, want, request_line) in cases {
        fake.set(json(body));
        let before = fake.requests().len();
        let (h, _events) = start(
            "kubernetes",
            k8s(
                &sa,
                vec![
                    ("kubernetes_ip_lookup_mode", Value::str(lookup)),
                    ("mode", Value::str(mode)),
                ],
            ),
            env_for(&fake),
        );
        members(&h, &names(&want)).await;
        h.shutdown().await;
        let r = &fake.requests()[before];
        if !request_line.is_empty() {
            assert_eq!(r.request_line, request_line, "{lookup} {mode}");
        }
        assert_eq!(
            r.authorization.as_deref(),
            Some("Bearer tok-1"),
            "{lookup} {mode}"
        );
        assert_eq!(
            r.host.as_deref(),
            Some(format!("127.0.0.1:{}", fake.addr.port()).as_str())
        );
    }
}

#[tokio::test]
async fn a_rotated_token_is_picked_up_and_faults_keep_the_last_good_set() {
    let dir = Dir::new("faults");
    make_certs(&dir, "api");
    let sa = service_account(&dir, Some("api"));
    let fake = Fake::start(
        &dir,
        Some("api"),
        Behaviour::Json {
            status: 200,
            body: slices(&["10.1.0.1", "10.1.0.2"]),
            chunked: true,
        },
    );
    let (h, mut events) = start("kubernetes", k8s(&sa, vec![]), env_for(&fake));
    let want = names(&["app@10.1.0.1", "app@10.1.0.2"]);
    members(&h, &want).await;

    sa.write("token", "tok-2\n");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !fake
        .requests()
        .iter()
        .any(|r| r.authorization.as_deref() == Some("Bearer tok-2"))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the rotated token never came"
        );
        // The next poll is 200 ms away: wait for its request to be recorded.
        let n = h.metrics().rounds;
        let _ = h.wait_for_metrics(|m| m.rounds > n).await;
    }

    let faults: Vec<(Behaviour, &str)> = vec![
        (Behaviour::Json { status: 403, body: r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"endpointslices.discovery.k8s.io is forbidden","reason":"Forbidden","code":403}"#.into(), chunked: false }, "HTTP 403"),
        (Behaviour::Json { status: 500, body: "internal error".into(), chunked: false }, "HTTP 500"),
        (json("{\"kind\":\"EndpointSliceList\",\"items\":[{".into()), "invalid response"),
        (Behaviour::Raw(b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n{\"kind\":\"EndpointSliceList\"".to_vec()), "connection closed after"),
        (Behaviour::Stall, "no complete response within 1000 ms"),
    ];
    for (fault, want_reason) in faults {
        fake.set(fault);
        let reason = next_failure(&mut events).await;
        assert!(reason.contains(want_reason), "{want_reason}: {reason}");
        assert_eq!(h.members(), want);
        let m = h.metrics();
        assert_eq!((m.lost, m.disconnects_started), (0, 0));
    }
    h.shutdown().await;
}

#[tokio::test]
async fn without_a_ca_no_request_carries_the_token_and_another_ca_is_refused() {
    let dir = Dir::new("trust");
    make_certs(&dir, "api");
    make_certs(&dir, "other");
    let fake = Fake::start(&dir, Some("api"), json(slices(&["10.1.0.1"])));

    // No ca.crt: nothing is sent at all.
    let sa = service_account(&dir, None);
    let (h, mut events) = start("kubernetes", k8s(&sa, vec![]), env_for(&fake));
    let reason = next_failure(&mut events).await;
    assert!(
        reason.contains("never sent over an unverified connection"),
        "{reason}"
    );
    let _ = next_failure(&mut events).await;
    h.shutdown().await;
    assert!(fake.requests().is_empty());
    assert_eq!(fake.handshake_failures(), 0, "not even a connection");

    // A CA that did not sign the server's certificate: the handshake fails, nothing is sent.
    let sa = service_account(&dir, Some("other"));
    let (h, mut events) = start("kubernetes", k8s(&sa, vec![]), env_for(&fake));
    let reason = next_failure(&mut events).await;
    assert!(reason.contains("TLS"), "{reason}");
    h.shutdown().await;
    assert!(fake.requests().is_empty());
    fake.wait_for_handshake_failure();

    // Said in so many words: connects without verifying.
    let sa = service_account(&dir, None);
    let (h, _events) = start(
        "kubernetes",
        k8s(&sa, vec![("insecure_skip_tls_verify", Value::Bool(true))]),
        env_for(&fake),
    );
    members(&h, &names(&["app@10.1.0.1"])).await;
    h.shutdown().await;
    assert!(!fake.requests().is_empty());
}

#[tokio::test]
async fn rancher_metadata_over_plain_http() {
    let dir = Dir::new("rancher");
    let body = r#"{"name":"web","stack_name":"s","containers":[{"name":"web-1","ips":["10.42.0.5"],"primary_ip":"10.42.0.5"},{"name":"web-2","ips":[]},{"name":"web-3","ips":["10.42.0.7","10.42.0.8"]}]}"#;
    let fake = Fake::start(&dir, None, json(body.into()));
    let url = format!("http://127.0.0.1:{}/latest/self/service", fake.addr.port());
    let (h, mut events) = start(
        "rancher",
        vec![
            ("node_basename", Value::str("app")),
            ("metadata_url", Value::str(url)),
            ("polling_interval", Value::Int(200)),
            ("request_timeout", Value::Int(500)),
        ],
        Environment::new(),
    );
    let want = names(&["app@10.42.0.5", "app@10.42.0.7"]);
    members(&h, &want).await;
    assert_eq!(
        fake.requests()[0].request_line,
        "GET /latest/self/service HTTP/1.1"
    );
    fake.set(Behaviour::Stall);
    let reason = next_failure(&mut events).await;
    assert!(
        reason.contains("no complete response within 500 ms"),
        "{reason}"
    );
    assert_eq!(h.members(), want);
    h.shutdown().await;
}

/// `muster run` with a service-account directory and the pod's environment discovers the
/// nodes the fake API lists.
#[tokio::test]
async fn muster_run_discovers_from_the_api() {
    let dir = Dir::new("cli");
    make_certs(&dir, "api");
    let sa = service_account(&dir, Some("api"));
    let fake = Fake::start(&dir, Some("api"), json(slices(&["10.1.0.1", "10.1.0.2"])));
    dir.write(
        "muster.toml",
        format!(
            "[topologies.k8s]\nstrategy = \"kubernetes\"\n[topologies.k8s.config]\nkubernetes_node_basename = \"app\"\n\
             kubernetes_service_name = \"myapp\"\nkubernetes_service_account_path = \"{}\"\npolling_interval = 500\n",
            sa.s()
        ),
    );
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_muster"))
        .args([
            "run",
            "--config",
            &dir.path("muster.toml").to_string_lossy(),
        ])
        .env("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        .env("KUBERNETES_SERVICE_PORT", fake.addr.port().to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stdout);
    let mut seen = Vec::new();
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        let mut line = String::new();
        while seen.len() < 2 {
            line.clear();
            if lines.read_line(&mut line).await.unwrap() == 0 {
                return false;
            }
            if line.contains("discovered") {
                seen.push(line.trim().to_owned());
            }
        }
        true
    })
    .await;
    let _ = child.kill().await;
    assert_eq!(found, Ok(true), "{seen:?}");
    assert!(seen.iter().any(|l| l.contains("app@10.1.0.1")), "{seen:?}");
    assert!(seen.iter().any(|l| l.contains("app@10.1.0.2")), "{seen:?}");
    assert_eq!(
        fake.requests()[0].authorization.as_deref(),
        Some("Bearer tok-1")
    );
}
