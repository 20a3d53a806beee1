//! The Kubernetes and Rancher strategies at the sans-IO level: a hand-driven cluster whose
//! files and HTTP exchanges are answered by the test. libcluster's `kubernetes_test.exs`
//! (reference: libcluster.md §4) case by case, then what muster adds. The real HTTPS path is
//! in `tests/k8s_api.rs`.
#![allow(clippy::unwrap_used)] // tests unwrap what they set up themselves

use std::collections::BTreeMap;

use muster_core::config::Options;
use muster_core::strategy::{Environment, Registry};
use muster_core::{
    Answer, Cluster, ClusterConfig, ConnectPolicy, Event, Exchange, Input, Instant, Output,
    Request, Trust, Value,
};

const SA: &str = "/sa";

/// What the fake API answers.
enum Reply {
    Ok(String),
    Status(u16, String),
    Raw(Vec<u8>),
    Fail(&'static str),
    Silent,
}

struct Harness {
    cluster: Cluster,
    now: Instant,
    files: BTreeMap<String, Vec<u8>>,
    exchanges: Vec<Exchange>,
    connected: Vec<String>,
    events: Vec<Event>,
    started: bool,
}

fn config(entries: &[(&str, Value)]) -> Vec<(String, Value)> {
    entries
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

impl Harness {
    fn new(kind: &str, entries: &[(&str, Value)], env: Environment) -> Harness {
        let t = config(entries);
        let mut o = Options::new("c", &t);
        let strategy = Registry::builtin()
            .with_env(env)
            .build(kind, &mut o)
            .unwrap();
        o.finish().unwrap();
        let mut cluster = Cluster::new(
            ClusterConfig::new().this_node("me@10.9.9.9".parse().unwrap()),
            [7; 32],
        );
        cluster
            .add_topology(Instant::ZERO, "k8s", strategy, ConnectPolicy::default())
            .unwrap();
        let mut files = BTreeMap::new();
        files.insert(format!("{SA}/token"), b"tok123\n".to_vec());
        files.insert(
            format!("{SA}/ca.crt"),
            b"-----BEGIN CERTIFICATE-----\n...".to_vec(),
        );
        files.insert(format!("{SA}/namespace"), b"default".to_vec());
        Harness {
            cluster,
            now: Instant::ZERO,
            files,
            exchanges: Vec::new(),
            connected: Vec::new(),
            events: Vec::new(),
            started: false,
        }
    }

    /// Runs until nothing is left to do now, answering with `reply`.
    fn settle(&mut self, reply: &mut dyn FnMut(&Exchange) -> Reply) {
        loop {
            let mut answers: Vec<(muster_core::Token, Owned)> = Vec::new();
            while let Some(out) = self.cluster.poll_output() {
                match out {
                    Output::Event(e) => self.events.push(e),
                    Output::Request { token, request } => match request {
                        Request::ReadFile { path, .. } => answers.push((
                            token,
                            match self.files.get(&path) {
                                Some(d) => Owned::Data(d.clone()),
                                None => Owned::Failed(muster_core::Failure::new(
                                    muster_core::FailureKind::NotFound,
                                    format!("{path}: No such file or directory"),
                                )),
                            },
                        )),
                        Request::Exchange(x) => {
                            let data = match reply(&x) {
                                Reply::Ok(body) => Some(ok(200, "OK", &body)),
                                Reply::Status(code, body) => Some(ok(code, "Oops", &body)),
                                Reply::Raw(bytes) => Some(bytes),
                                Reply::Fail(why) => {
                                    answers.push((
                                        token,
                                        Owned::Failed(muster_core::Failure::other(why)),
                                    ));
                                    None
                                }
                                Reply::Silent => None,
                            };
                            if let Some(d) = data {
                                answers.push((token, Owned::Data(d)));
                                answers.push((token, Owned::Closed));
                            }
                            self.exchanges.push(x);
                        }
                        Request::ListNodes { .. } => answers.push((token, Owned::List)),
                        Request::Connect { node, .. } => {
                            self.connected.push(node.name.to_string());
                            answers.push((token, Owned::Connected));
                        }
                        Request::Disconnect { node, .. } => {
                            self.connected.retain(|n| *n != node.as_str());
                            answers.push((token, Owned::Disconnected));
                        }
                        _ => {}
                    },
                    _ => {}
                }
            }
            if answers.is_empty() {
                return;
            }
            for (token, a) in answers {
                let nodes: Vec<muster_core::NodeName> =
                    self.connected.iter().map(|n| n.parse().unwrap()).collect();
                let answer = match &a {
                    Owned::Data(d) => Answer::Data(d),
                    Owned::Failed(f) => Answer::Failed(f),
                    Owned::Closed => Answer::Closed,
                    Owned::List => Answer::Nodes(&nodes),
                    Owned::Connected => Answer::Connected,
                    Owned::Disconnected => Answer::Disconnected,
                };
                self.cluster
                    .handle_input(self.now, Input::Answer { token, answer });
            }
        }
    }

    /// One poll: the one at start, then at each call the next thing the cluster's timers
    /// hold (the next poll, or a request's deadline).
    fn poll(&mut self, reply: &mut dyn FnMut(&Exchange) -> Reply) {
        if !self.started {
            self.started = true;
            return self.settle(reply);
        }
        if let Some(at) = self.cluster.poll_timeout() {
            self.now = at.max(self.now);
            self.cluster.handle_timeout(self.now);
        }
        self.settle(reply);
    }

    fn failures(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::DiscoveryFailed { reason, .. } => Some(reason.to_string()),
                _ => None,
            })
            .collect()
    }

    fn count(&self, kind: &str) -> usize {
        self.events.iter().filter(|e| e.name() == kind).count()
    }

    fn request_text(&self, i: usize) -> String {
        String::from_utf8_lossy(&self.exchanges[i].send).into_owned()
    }
}

enum Owned {
    Data(Vec<u8>),
    Failed(muster_core::Failure),
    Closed,
    List,
    Connected,
    Disconnected,
}

fn ok(code: u16, reason: &str, body: &str) -> Vec<u8> {
    format!("HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).into_bytes()
}

/// libcluster's cassette: an EndpointsList of one address in another namespace.
fn endpoints(ip: &str) -> String {
    format!(
        r#"{{"kind":"EndpointsList","apiVersion":"v1","items":[{{"metadata":{{"name":"svc","namespace":"airatel-service-localization"}},"subsets":[{{"addresses":[{{"ip":"{ip}","hostname":"my-hostname-0","nodeName":"n1","targetRef":{{"kind":"Pod","namespace":"airatel-service-localization","name":"p0","uid":"u"}}}}],"ports":[{{"port":4369}}]}}]}}]}}"#
    )
}

fn pods() -> String {
    r#"{"kind":"PodList","apiVersion":"v1","items":[{"metadata":{"name":"p0","namespace":"airatel-service-localization"},"spec":{"hostname":"my-hostname-0"},"status":{"phase":"Running","podIP":"10.48.33.136"}}]}"#.to_owned()
}

fn slices(ips: &[&str]) -> String {
    let eps: Vec<String> = ips
        .iter()
        .enumerate()
        .map(|(i, ip)| format!(r#"{{"addresses":["{ip}"],"conditions":{{"ready":true}},"hostname":"myapp-{i}","targetRef":{{"kind":"Pod","namespace":"default","name":"myapp-{i}"}}}}"#))
        .collect();
    format!(
        r#"{{"kind":"EndpointSliceList","apiVersion":"discovery.k8s.io/v1","items":[{{"metadata":{{"name":"myapp-abc","namespace":"default"}},"addressType":"IPv4","endpoints":[{}]}}]}}"#,
        eps.join(",")
    )
}

fn base(mode: &str) -> Vec<(&'static str, Value)> {
    vec![
        ("kubernetes_node_basename", Value::str("test_basename")),
        ("kubernetes_selector", Value::str("app=test_selector")),
        ("kubernetes_master", Value::str("cluster.localhost.")),
        ("kubernetes_service_account_path", Value::str(SA)),
        ("kubernetes_ip_lookup_mode", Value::str(mode)),
    ]
}

fn run(entries: &[(&str, Value)], body: String) -> Harness {
    let mut h = Harness::new("kubernetes", entries, Environment::new());
    h.poll(&mut |_| Reply::Ok(body.clone()));
    h
}

/// kubernetes_test "calls right functions", "works with no cached resources": the Endpoints
/// list of the configured selector, with the token, names `test_basename@<ip>`.
#[test]
fn endpoints_connect_by_ip() {
    let h = run(&base("endpoints"), endpoints("10.48.33.136"));
    assert_eq!(
        h.connected,
        ["test_basename@10.48.33.136"],
        "{:?}",
        h.events
    );
    let req = h.request_text(0);
    assert!(
        req.starts_with("GET /api/v1/namespaces/default/endpoints?labelSelector=app%3Dtest_selector HTTP/1.1\r\nHost: cluster.localhost\r\n"),
        "{req}"
    );
    assert!(
        req.contains("\r\nAuthorization: Bearer tok123\r\n"),
        "the token, trimmed"
    );
    let x = &h.exchanges[0];
    let tls = x.tls.as_ref().unwrap();
    assert_eq!(tls.server_name, "cluster.localhost");
    assert!(matches!(tls.trust, Trust::CaPem(_)));
}

/// "connect nodes from different namespaces": the configured namespace is the URL's; the
/// node's namespace comes from the object.
#[test]
fn configured_namespace_is_the_urls() {
    let mut e = base("endpoints");
    e.push(("kubernetes_namespace", Value::str("airatel-service-test")));
    let h = run(&e, endpoints("10.48.33.134"));
    assert!(
        h.request_text(0)
            .starts_with("GET /api/v1/namespaces/airatel-service-test/endpoints?")
    );
    assert_eq!(h.connected, ["test_basename@10.48.33.134"]);
}

/// "works with cached resources" and "works with pods and cached resources".
#[test]
fn cached_resources_ask_for_resource_version_0() {
    for (mode, body) in [("endpoints", endpoints("10.48.33.136")), ("pods", pods())] {
        let mut e = base(mode);
        e.push(("kubernetes_use_cached_resources", Value::Bool(true)));
        let h = run(&e, body);
        let req = h.request_text(0);
        assert!(
            req.contains(&format!(
                "/{mode}?resourceVersion=0&labelSelector=app%3Dtest_selector "
            )),
            "{req}"
        );
        assert_eq!(h.connected, ["test_basename@10.48.33.136"]);
    }
}

/// "works with dns and cluster_name", "works with hostname and cluster_name" (Endpoints and
/// pods), "works with pods", "works with pods and dns".
#[test]
fn naming_modes_as_libcluster() {
    let cases: [(&str, &str, Option<&str>, &str); 5] = [
        (
            "endpoints",
            "dns",
            Some("my_cluster"),
            "test_basename@10-48-33-136.airatel-service-localization.pod.my_cluster.local",
        ),
        (
            "endpoints",
            "hostname",
            Some("my_cluster"),
            "test_basename@my-hostname-0.my_service.airatel-service-localization.svc.my_cluster.local",
        ),
        (
            "pods",
            "hostname",
            Some("my_cluster"),
            "test_basename@my-hostname-0.my_service.airatel-service-localization.svc.my_cluster.local",
        ),
        ("pods", "ip", None, "test_basename@10.48.33.136"),
        (
            "pods",
            "dns",
            None,
            "test_basename@10-48-33-136.airatel-service-localization.pod.cluster.local",
        ),
    ];
    for (lookup, mode, cluster, want) in cases {
        let mut e = base(lookup);
        e.push(("mode", Value::str(mode)));
        e.push(("kubernetes_service_name", Value::str("my_service")));
        if let Some(c) = cluster {
            e.push(("kubernetes_cluster_name", Value::str(c)));
        }
        let body = if lookup == "pods" {
            pods()
        } else {
            endpoints("10.48.33.136")
        };
        let h = run(&e, body);
        assert_eq!(h.connected, [want], "{lookup} {mode}: {:?}", h.events);
    }
}

fn slices_config() -> Vec<(&'static str, Value)> {
    vec![
        ("kubernetes_node_basename", Value::str("app")),
        ("kubernetes_service_name", Value::str("myapp")),
        ("kubernetes_service_account_path", Value::str(SA)),
        ("polling_interval", Value::Int(1000)),
    ]
}

fn in_pod() -> Environment {
    Environment::new()
        .set("KUBERNETES_SERVICE_HOST", "10.96.0.1")
        .set("KUBERNETES_SERVICE_PORT", "443")
}

/// The default: EndpointSlices of the Service, at the address the pod's environment gives,
/// verified as `kubernetes.default.svc`; one request per poll.
#[test]
fn endpoint_slices_by_default_one_request_per_poll() {
    let mut h = Harness::new("kubernetes", &slices_config(), in_pod());
    for _ in 0..10 {
        h.poll(&mut |_| Reply::Ok(slices(&["10.1.0.1", "10.1.0.2"])));
    }
    let mut connected = h.connected.clone();
    connected.sort();
    assert_eq!(connected, ["app@10.1.0.1", "app@10.1.0.2"]);
    assert!(h.request_text(0).starts_with(
        "GET /apis/discovery.k8s.io/v1/namespaces/default/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3Dmyapp HTTP/1.1\r\nHost: 10.96.0.1\r\n"
    ));
    let x = &h.exchanges[0];
    assert_eq!(x.to.to_string(), "10.96.0.1:443");
    assert_eq!(
        x.tls.as_ref().unwrap().server_name,
        "kubernetes.default.svc"
    );
    // Ten polls over nine intervals: ten requests, one each.
    assert_eq!(h.exchanges.len(), 10);
    assert!(h.now >= Instant::from_millis(9000) && h.now < Instant::from_millis(10_000));
}

/// The token is re-read on every poll; a failed read keeps the last good one.
#[test]
fn a_rotated_token_is_used_and_a_missing_one_keeps_the_last() {
    let mut h = Harness::new("kubernetes", &slices_config(), in_pod());
    let mut reply = |_: &Exchange| Reply::Ok(slices(&["10.1.0.1"]));
    h.poll(&mut reply);
    h.files.insert(format!("{SA}/token"), b"rotated".to_vec());
    h.poll(&mut reply);
    h.files.remove(&format!("{SA}/token"));
    h.poll(&mut reply);
    let tokens: Vec<bool> = (0..3)
        .map(|i| h.request_text(i).contains("Bearer rotated"))
        .collect();
    assert_eq!(tokens, [false, true, true]);
    assert!(h.request_text(0).contains("Bearer tok123"));
}

/// Without `ca.crt`, no request is made at all (so the token goes nowhere), and the failure
/// says why and what to do; with `insecure_skip_tls_verify` the request is made unverified.
#[test]
fn no_ca_no_token_sent_unless_insecure_is_said() {
    let mut h = Harness::new("kubernetes", &slices_config(), in_pod());
    h.files.remove(&format!("{SA}/ca.crt"));
    h.poll(&mut |_| Reply::Ok(slices(&["10.1.0.1"])));
    h.poll(&mut |_| Reply::Ok(slices(&["10.1.0.1"])));
    assert!(h.exchanges.is_empty());
    let f = h.failures();
    assert_eq!(f.len(), 2);
    assert!(
        f[0].contains("never sent over an unverified connection"),
        "{f:?}"
    );
    assert!(f[0].contains("insecure_skip_tls_verify"), "{f:?}");

    let mut e = slices_config();
    e.push(("insecure_skip_tls_verify", Value::Bool(true)));
    let mut h = Harness::new("kubernetes", &e, in_pod());
    h.files.remove(&format!("{SA}/ca.crt"));
    h.poll(&mut |_| Reply::Ok(slices(&["10.1.0.1"])));
    assert_eq!(h.connected, ["app@10.1.0.1"]);
    assert!(matches!(
        h.exchanges[0].tls.as_ref().unwrap().trust,
        Trust::InsecureSkipVerify
    ));
}

/// 401, 403, 500, a transport failure, a time-out, invalid JSON, a Status object, a
/// truncated body, a broken chunked body: each keeps the last good set and says why.
#[test]
fn every_failure_keeps_the_last_good_set() {
    let cases: Vec<(Reply, &str)> = vec![
        (Reply::Status(403, r#"{"kind":"Status","message":"endpointslices.discovery.k8s.io is forbidden: User \"system:serviceaccount:default:default\" cannot list"}"#.into()), "HTTP 403 Oops: endpointslices.discovery.k8s.io is forbidden"),
        (Reply::Status(401, r#"{"kind":"Status","message":"Unauthorized"}"#.into()), "HTTP 401 Oops: Unauthorized"),
        (Reply::Status(500, "<html>boom</html>".into()), "HTTP 500 Oops: <html>boom</html>"),
        (Reply::Fail("10.96.0.1:443: Connection refused"), "Connection refused"),
        (Reply::Silent, "no complete response within 15000 ms"),
        (Reply::Ok("{\"items\": [".into()), "invalid response"),
        (Reply::Ok(r#"{"kind":"Status","status":"Failure"}"#.into()), "expected a EndpointSliceList, got kind \"Status\""),
        (Reply::Raw(b"HTTP/1.1 200 OK\r\nContent-Length: 999\r\n\r\n{\"items\":[]".to_vec()), "connection closed after 11 bytes of the body"),
        (Reply::Raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n".to_vec()), "malformed chunked body"),
    ];
    for (fault, want) in cases {
        let mut h = Harness::new("kubernetes", &slices_config(), in_pod());
        h.poll(&mut |_| Reply::Ok(slices(&["10.1.0.1", "10.1.0.2"])));
        assert_eq!(h.connected.len(), 2);
        let mut fault = Some(fault);
        h.poll(&mut |_| fault.take().unwrap_or(Reply::Silent));
        // A silent server: the core's own deadline ends the request.
        while h.failures().is_empty() && h.now < Instant::from_millis(60_000) {
            h.poll(&mut |_| Reply::Silent);
        }
        let f = h.failures();
        assert!(f.first().is_some_and(|f| f.contains(want)), "{want}: {f:?}");
        assert_eq!((h.count("lost"), h.count("disconnected")), (0, 0), "{want}");
        assert_eq!(h.connected.len(), 2, "{want}");
    }
}

/// An API server's words reach the event escaped: a message with a terminal escape sequence
/// or a line break cannot clear a terminal or forge a log line.
#[test]
fn the_servers_words_are_escaped() {
    let mut h = Harness::new("kubernetes", &slices_config(), in_pod());
    h.poll(&mut |_| Reply::Ok(slices(&["10.1.0.1"])));
    let hostile = r#"{"kind":"Status","message":"no\u001b[2J\n[app] connected forged@10.6.6.6"}"#;
    let mut fault = Some(Reply::Status(403, hostile.into()));
    h.poll(&mut |_| fault.take().unwrap_or(Reply::Silent));
    let f = h.failures();
    let reason = f.first().expect("a discovery failure");
    assert!(!reason.chars().any(char::is_control), "{reason:?}");
    assert!(
        reason.contains(r"no\u{1b}[2J\n[app] connected forged"),
        "{reason}"
    );
    let mut body = Some(Reply::Status(
        500,
        "<html>\u{1b}]0;owned\u{7}</html>".into(),
    ));
    h.poll(&mut |_| body.take().unwrap_or(Reply::Silent));
    let f = h.failures();
    assert!(f.iter().all(|r| !r.chars().any(char::is_control)), "{f:?}");
}

/// A chunked response, in any split, is read whole; a 200 with a pod gone loses it.
#[test]
fn chunked_responses_and_leaving_pods() {
    let mut h = Harness::new("kubernetes", &slices_config(), in_pod());
    let body = slices(&["10.1.0.1", "10.1.0.2", "10.1.0.3"]);
    let mut chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for piece in body.as_bytes().chunks(37) {
        chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        chunked.extend_from_slice(piece);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    h.poll(&mut |_| Reply::Raw(chunked.clone()));
    assert_eq!(h.connected.len(), 3, "{:?}", h.failures());
    h.poll(&mut |_| Reply::Ok(slices(&["10.1.0.1", "10.1.0.2"])));
    assert_eq!(h.count("lost"), 1);
    assert_eq!(h.connected.len(), 2);
}

/// Configuration errors name the key.
#[test]
fn configuration_errors_name_the_key() {
    let build = |entries: Vec<(&str, Value)>, env: Environment| {
        let t = config(&entries);
        let mut o = Options::new("c", &t);
        Registry::builtin()
            .with_env(env)
            .build("kubernetes", &mut o)
            .map(|_| ())
            .unwrap_err()
    };
    let e = build(
        vec![("kubernetes_selector", Value::str("a=b"))],
        Environment::new(),
    );
    assert_eq!(e.key, "c.kubernetes_node_basename");
    let e = build(
        vec![("kubernetes_node_basename", Value::str("n"))],
        Environment::new(),
    );
    assert_eq!(e.key, "c.kubernetes_selector");
    assert!(e.to_string().contains("kubernetes_service_name"), "{e}");
    let e = build(
        vec![
            ("kubernetes_node_basename", Value::str("n")),
            ("kubernetes_selector", Value::str("a=b")),
            ("mode", Value::str("hostname")),
        ],
        Environment::new(),
    );
    assert_eq!(e.key, "c.kubernetes_service_name");
    let e = build(
        vec![
            ("kubernetes_node_basename", Value::str("n")),
            ("kubernetes_selector", Value::str("a=b")),
            ("kubernetes_ip_lookup_mode", Value::str("nodes")),
        ],
        Environment::new(),
    );
    assert_eq!(e.key, "c.kubernetes_ip_lookup_mode");
    let e = build(
        vec![
            ("kubernetes_node_basename", Value::str("n")),
            ("kubernetes_selector", Value::str("a=b")),
            ("kubernetes_master", Value::str("k8s:http")),
        ],
        Environment::new(),
    );
    assert_eq!(e.key, "c.kubernetes_master");
}

/// The API address: `kubernetes_master` (with libcluster's cluster-domain rule and an
/// optional port), else the pod's environment (IPv6 bracketed), else
/// `kubernetes.default.svc.<cluster domain>`.
#[test]
fn api_server_address_rules() {
    let target = |extra: Vec<(&'static str, Value)>, env: Environment| {
        let mut e = slices_config();
        e.extend(extra);
        let mut h = Harness::new("kubernetes", &e, env);
        h.poll(&mut |_| Reply::Ok(slices(&[])));
        let x = &h.exchanges[0];
        let host = h.request_text(0).lines().nth(1).unwrap().to_owned();
        (
            x.to.to_string(),
            x.tls.as_ref().unwrap().server_name.clone(),
            host,
        )
    };
    assert_eq!(
        target(vec![], Environment::new()),
        (
            "kubernetes.default.svc.cluster.local:443".into(),
            "kubernetes.default.svc.cluster.local".into(),
            "Host: kubernetes.default.svc.cluster.local".into()
        )
    );
    assert_eq!(
        target(
            vec![("kubernetes_cluster_name", Value::str("prod"))],
            Environment::new()
        )
        .0,
        "kubernetes.default.svc.prod.local:443"
    );
    assert_eq!(
        target(
            vec![],
            Environment::new().set("CLUSTER_DOMAIN", "corp.internal.")
        )
        .0,
        "kubernetes.default.svc.corp.internal:443"
    );
    assert_eq!(
        target(
            vec![("kubernetes_master", Value::str("k8s.test:6443"))],
            in_pod()
        ),
        (
            "k8s.test.cluster.local:6443".into(),
            "k8s.test.cluster.local".into(),
            "Host: k8s.test.cluster.local:6443".into()
        )
    );
    assert_eq!(
        target(
            vec![],
            Environment::new()
                .set("KUBERNETES_SERVICE_HOST", "fd00::1")
                .set("KUBERNETES_SERVICE_PORT", "6443")
        ),
        (
            "[fd00::1]:6443".into(),
            "kubernetes.default.svc".into(),
            "Host: [fd00::1]:6443".into()
        )
    );
}

/// The node-name cluster domain follows `CLUSTER_DOMAIN` too (libcluster uses it only for
/// the master).
#[test]
fn node_names_follow_cluster_domain() {
    let mut e = slices_config();
    e.push(("mode", Value::str("dns")));
    let mut h = Harness::new(
        "kubernetes",
        &e,
        in_pod().set("CLUSTER_DOMAIN", "corp.internal"),
    );
    h.poll(&mut |_| Reply::Ok(slices(&["10.1.0.1"])));
    assert_eq!(h.connected, ["app@10-1-0-1.default.pod.corp.internal"]);
}

/// Rancher: the first IP of each container, containers without one skipped, the JSON
/// `Accept` header, a deadline, and failures that keep the set.
#[test]
fn rancher_metadata() {
    let entries = [
        ("node_basename", Value::str("app")),
        (
            "metadata_url",
            Value::str("http://127.0.0.1:8080/latest/self/service"),
        ),
    ];
    let mut h = Harness::new("rancher", &entries, Environment::new());
    let body = r#"{"name":"web","containers":[{"name":"a","ips":["10.42.0.5","10.42.0.6"]},{"name":"b","ips":[]},{"name":"c","ips":["10.42.0.7"]}]}"#;
    h.poll(&mut |_| Reply::Ok(body.into()));
    let mut c = h.connected.clone();
    c.sort();
    assert_eq!(c, ["app@10.42.0.5", "app@10.42.0.7"]);
    let req = h.request_text(0);
    assert!(
        req.starts_with("GET /latest/self/service HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"),
        "{req}"
    );
    assert!(req.contains("\r\nAccept: application/json\r\n"));
    assert!(h.exchanges[0].tls.is_none());
    h.poll(&mut |_| Reply::Status(503, "down".into()));
    h.poll(&mut |_| Reply::Silent);
    while h.failures().len() < 2 && h.now < Instant::from_millis(60_000) {
        h.poll(&mut |_| Reply::Silent);
    }
    let f = h.failures();
    assert!(f[0].contains("HTTP 503"), "{f:?}");
    assert!(
        f[1].contains("no complete response within 5000 ms"),
        "{f:?}"
    );
    assert_eq!(h.connected.len(), 2);
}
