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
    Behaviour, Dir, Fake, WatchMode, WatchMsg, endpoints, json, make_certs, pods, service_account,
    slice_event, slices, slices_at,
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
    // Polling, as libcluster does, unless the test watches.
    if !extra.iter().any(|(k, _)| *k == "watch") {
        e.push(("watch", Value::Bool(false)));
    }
    e.extend(extra);
    e
}

fn is_watch(r: &support::k8s::Recorded) -> bool {
    r.request_line.contains("watch=1")
}

fn is_list(r: &support::k8s::Recorded) -> bool {
    !is_watch(r)
}

/// Starts a watching Kubernetes topology against a fake listing `ips` at version 123, and
/// waits for its members and its first watch.
async fn watching(
    tag: &str,
    ips: &[&str],
    extra: Vec<(&'static str, Value)>,
) -> (Dir, Dir, Fake, ClusterHandle, Events) {
    let dir = Dir::new(tag);
    make_certs(&dir, "api");
    let sa = service_account(&dir, Some("api"));
    let fake = Fake::start(&dir, Some("api"), json(slices(ips)));
    let mut extra = extra;
    extra.push(("watch", Value::Bool(true)));
    let (h, events) = start("kubernetes", k8s(&sa, extra), env_for(&fake));
    let want: Vec<String> = ips.iter().map(|ip| format!("app@{ip}")).collect();
    members(
        &h,
        &names(&want.iter().map(String::as_str).collect::<Vec<_>>()),
    )
    .await;
    fake.wait_for(1, is_watch).await;
    (dir, sa, fake, h, events)
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

#[tokio::test]
async fn a_watch_applies_each_change_without_polling_and_resumes_from_its_bookmark() {
    let (_dir, _sa, fake, h, _events) = watching("watch", &["10.1.0.1", "10.1.0.2"], vec![]).await;
    let w = &fake.wait_for(1, is_watch).await[0];
    assert_eq!(
        w.request_line,
        "GET /apis/discovery.k8s.io/v1/namespaces/default/endpointslices?watch=1&resourceVersion=123&allowWatchBookmarks=true&timeoutSeconds=300&labelSelector=kubernetes.io%2Fservice-name%3Dmyapp HTTP/1.1"
    );
    assert_eq!(w.authorization.as_deref(), Some("Bearer tok-1"));

    // A second slice appears, the first loses a pod, the second goes.
    assert_eq!(
        fake.watch(WatchMsg::Event(slice_event(
            "ADDED",
            "myapp-extra",
            124,
            &["10.1.0.3"]
        ))),
        1
    );
    members(
        &h,
        &names(&["app@10.1.0.1", "app@10.1.0.2", "app@10.1.0.3"]),
    )
    .await;
    fake.watch(WatchMsg::Event(slice_event(
        "MODIFIED",
        "myapp-7x2kq",
        125,
        &["10.1.0.1"],
    )));
    members(&h, &names(&["app@10.1.0.1", "app@10.1.0.3"])).await;
    // An event split over many chunks is applied once whole.
    fake.watch(WatchMsg::Trickle(slice_event(
        "DELETED",
        "myapp-extra",
        126,
        &[],
    )));
    members(&h, &names(&["app@10.1.0.1"])).await;

    // The server ends the watch after a bookmark: the next watch starts from it, no list.
    fake.watch(WatchMsg::Event(
        r#"{"type":"BOOKMARK","object":{"kind":"EndpointSlice","metadata":{"resourceVersion":"200"}}}"#.into(),
    ));
    fake.watch(WatchMsg::End);
    let watches = fake.wait_for(2, is_watch).await;
    assert!(
        watches[1].request_line.contains("resourceVersion=200&"),
        "{:?}",
        watches[1]
    );
    assert_eq!(
        fake.requests().iter().filter(|r| is_list(r)).count(),
        1,
        "listed once"
    );
    // Two pods left: each lost (and disconnected, as a polling strategy's nodes are).
    let m = h.metrics();
    assert_eq!((m.discovery_failed, m.lost), (0, 2));
    h.shutdown().await;
}

#[tokio::test]
async fn a_410_or_a_broken_stream_lists_again_and_keeps_the_set_meanwhile() {
    let (_dir, _sa, fake, h, mut events) =
        watching("relist", &["10.1.0.1", "10.1.0.2"], vec![]).await;

    // 410 as an event (the API server's way): list again, watch from the new list.
    fake.set(json(slices_at(200, &["10.1.0.1", "10.1.0.2", "10.1.0.3"])));
    fake.watch(WatchMsg::Event(
        r#"{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","status":"Failure","message":"too old resource version: 123 (199)","reason":"Expired","code":410}}"#.into(),
    ));
    members(
        &h,
        &names(&["app@10.1.0.1", "app@10.1.0.2", "app@10.1.0.3"]),
    )
    .await;
    let watches = fake.wait_for(2, is_watch).await;
    assert!(
        watches[1].request_line.contains("resourceVersion=200&"),
        "{:?}",
        watches[1]
    );

    // A stream cut mid-way: said, the set kept, listed again.
    fake.set(json(slices_at(300, &["10.1.0.1"])));
    fake.watch(WatchMsg::Drop);
    let reason = next_failure(&mut events).await;
    assert!(reason.contains("watching endpointslices"), "{reason}");
    members(&h, &names(&["app@10.1.0.1"])).await;
    let watches = fake.wait_for(3, is_watch).await;
    assert!(
        watches[2].request_line.contains("resourceVersion=300&"),
        "{:?}",
        watches[2]
    );

    // 410 as the answer to the watch itself.
    fake.set(json(slices_at(400, &["10.1.0.2"])));
    fake.set_watch(WatchMode::Status(
        410,
        r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"too old resource version","reason":"Expired","code":410}"#.into(),
    ));
    fake.watch(WatchMsg::End);
    members(&h, &names(&["app@10.1.0.2"])).await;
    assert_eq!(fake.requests().iter().filter(|r| is_list(r)).count(), 4);
    let m = h.metrics();
    assert_eq!(m.discovery_failed, 1, "only the broken stream is a failure");
    h.shutdown().await;
}

#[tokio::test]
async fn a_trickling_watch_is_cut_at_its_deadline_and_an_oversized_event_breaks_it() {
    let (_dir, _sa, fake, h, mut events) = watching(
        "trickle",
        &["10.1.0.1"],
        vec![
            ("watch_timeout", Value::Int(1000)),
            ("max_response_bytes", Value::Int(4096)),
        ],
    )
    .await;
    // Bytes that never make a line: the stream ends at watch_timeout + request_timeout.
    fake.watch(WatchMsg::TrickleForever);
    let reason = next_failure(&mut events).await;
    assert!(reason.contains("still open after 2000 ms"), "{reason}");
    fake.wait_for(2, is_watch).await;
    assert_eq!(fake.requests().iter().filter(|r| is_list(r)).count(), 2);

    // One event larger than max_response_bytes: the stream fails, the set stays.
    let many: Vec<String> = (0..200)
        .map(|i| format!("10.2.{}.{}", i / 250, i % 250))
        .collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    fake.watch(WatchMsg::Event(slice_event("ADDED", "huge", 500, &many)));
    let reason = next_failure(&mut events).await;
    assert!(reason.contains("larger than 4096 bytes"), "{reason}");
    assert_eq!(h.members(), names(&["app@10.1.0.1"]));
    fake.wait_for(3, is_watch).await;
    let m = h.metrics();
    assert_eq!((m.lost, m.disconnects_started), (0, 0));
    h.shutdown().await;
}

#[tokio::test]
async fn a_forbidden_watch_falls_back_to_polling_and_says_so_once() {
    let dir = Dir::new("nowatch");
    make_certs(&dir, "api");
    let sa = service_account(&dir, Some("api"));
    let fake = Fake::start(&dir, Some("api"), json(slices(&["10.1.0.1"])));
    fake.set_watch(WatchMode::Status(
        403,
        r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"endpointslices.discovery.k8s.io is forbidden: cannot watch","reason":"Forbidden","code":403}"#.into(),
    ));
    let (h, mut events) = start(
        "kubernetes",
        k8s(&sa, vec![("watch", Value::Bool(true))]),
        env_for(&fake),
    );
    let reason = next_failure(&mut events).await;
    assert!(
        reason.contains("cannot watch") && reason.contains("polling every 200 ms"),
        "{reason}"
    );
    fake.set(json(slices(&["10.1.0.2"])));
    members(&h, &names(&["app@10.1.0.2"])).await;
    fake.wait_for(4, is_list).await;
    assert_eq!(
        fake.requests().iter().filter(|r| is_watch(r)).count(),
        1,
        "never asked again"
    );
    assert_eq!(h.metrics().discovery_failed, 1);
    h.shutdown().await;
}
