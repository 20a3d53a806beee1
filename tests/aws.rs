//! The `ec2` and `ecs` strategies end to end, on the tokio adapter: against moto's EC2 and
//! ECS (support/moto, a real `moto_server` started per test), through a counting proxy that
//! tells how many requests a poll makes; against small HTTP servers of the tests' own for
//! what moto cannot do (refuse credentials, throttle, fail one page, paginate ListTasks) and
//! for the instance metadata service and the container credentials endpoint; and the real
//! `muster` binary against moto.
#![allow(clippy::unwrap_used)] // tests unwrap what they set up themselves

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime};

use muster::core::config::Options;
use muster::core::proto::{ec2, ecs};
use muster::core::strategy::{Environment, Registry};
use muster::core::{Event, NodeName, TopologySpec, Value};
use muster::tokio::{Builder, ClusterHandle, Events, RecordingConnector};
use tokio::io::AsyncBufReadExt;

mod support;
use support::moto::Moto;

// ----- set-up ------------------------------------------------------------------------------

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

/// An access key in the environment, and no instance metadata service.
fn key_env() -> Environment {
    Environment::new()
        .set("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
        .set(
            "AWS_SECRET_ACCESS_KEY",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        )
        .set("AWS_EC2_METADATA_DISABLED", "true")
}

fn names(prefix: &str, ips: &[String]) -> Vec<NodeName> {
    let mut out: Vec<NodeName> = ips
        .iter()
        .map(|ip| format!("{prefix}@{ip}").parse().unwrap())
        .collect();
    out.sort();
    out
}

async fn members(h: &ClusterHandle, want: &[NodeName]) {
    let got =
        tokio::time::timeout(Duration::from_secs(30), h.wait_for_members(|m| m == want)).await;
    assert!(got.is_ok(), "wanted {want:?}, have {:?}", h.members());
}

/// The next `discovery_failed` reason; a node lost meanwhile fails the test.
async fn next_failure(events: &mut Events) -> String {
    tokio::time::timeout(Duration::from_secs(30), async {
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

/// The private addresses of these moto instances.
fn instance_ips(moto: &Moto, ids: &[String]) -> Vec<String> {
    let params: Vec<(String, String)> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (format!("InstanceId.{}", i + 1), id.clone()))
        .collect();
    let params: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let r = moto.ec2("DescribeInstances", &params);
    assert_eq!(r.status, 200, "{}", r.body_excerpt(300));
    let page = ec2::parse_describe_instances(&r.body).unwrap();
    page.instances
        .iter()
        .map(|i| i.private_ip.unwrap().to_string())
        .collect()
}

/// The ENI addresses of these moto tasks.
fn task_ips(moto: &Moto, cluster: &str, arns: &[String]) -> Vec<String> {
    let r = moto.ecs(
        "DescribeTasks",
        &serde_json::json!({ "cluster": cluster, "tasks": arns }),
    );
    assert_eq!(r.status, 200, "{}", r.body_excerpt(300));
    ecs::parse_describe_tasks(&r.body)
        .unwrap()
        .tasks
        .iter()
        .map(|t| t.private_ip.unwrap().to_string())
        .collect()
}

// ----- a counting proxy ------------------------------------------------------------------

/// Forwards every connection to `to`, recording the request line of each: one exchange is
/// one connection (the strategies send `Connection: close`).
struct Proxy {
    addr: SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Proxy {
    fn start(to: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let l = lines.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(mut client) = client else { return };
                let l = l.clone();
                std::thread::spawn(move || {
                    let Ok(mut upstream) = TcpStream::connect(to) else {
                        return;
                    };
                    let mut buf = vec![0u8; 64 * 1024];
                    let Ok(n) = client.read(&mut buf) else { return };
                    let head = String::from_utf8_lossy(&buf[..n]);
                    let line = head.lines().next().unwrap_or("").to_owned();
                    l.lock().unwrap().push(line);
                    if upstream.write_all(&buf[..n]).is_err() {
                        return;
                    }
                    let (mut c2, mut u2) =
                        (client.try_clone().unwrap(), upstream.try_clone().unwrap());
                    let up = std::thread::spawn(move || {
                        let _ = std::io::copy(&mut c2, &mut u2);
                        let _ = u2.shutdown(std::net::Shutdown::Write);
                    });
                    let _ = std::io::copy(&mut upstream, &mut client);
                    let _ = client.shutdown(std::net::Shutdown::Both);
                    let _ = up.join();
                });
            }
        });
        Proxy { addr, lines }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn count(&self) -> usize {
        self.lines.lock().unwrap().len()
    }
}

// ----- a scripted HTTP server ------------------------------------------------------------

/// A request as the scripted server read it.
#[derive(Debug, Clone)]
struct Req {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Req {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    fn target(&self) -> &str {
        self.header("X-Amz-Target").unwrap_or("")
    }
}

/// What the scripted server answers.
enum Answer {
    /// This status and body, then close.
    With(u16, String),
    /// Read the request and never answer.
    Stall,
}

type Handler = Box<dyn FnMut(&Req) -> Answer + Send>;

/// A plain-HTTP server whose answers the test writes, recording every request.
struct Server {
    addr: SocketAddr,
    log: Arc<(Mutex<Vec<Req>>, Condvar)>,
    handler: Arc<Mutex<Handler>>,
    stop: Arc<AtomicBool>,
    stalled: Arc<Mutex<Vec<TcpStream>>>,
}

fn read_request(s: &mut TcpStream) -> Option<Req> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, path) = (first.next()?.to_owned(), first.next()?.to_owned());
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Req {
        method,
        path,
        headers,
        body,
    })
}

impl Server {
    fn start(handler: impl FnMut(&Req) -> Answer + Send + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let server = Server {
            addr: listener.local_addr().unwrap(),
            log: Arc::default(),
            handler: Arc::new(Mutex::new(Box::new(handler))),
            stop: Arc::default(),
            stalled: Arc::default(),
        };
        let (log, handler, stop, stalled) = (
            server.log.clone(),
            server.handler.clone(),
            server.stop.clone(),
            server.stalled.clone(),
        );
        std::thread::spawn(move || {
            for s in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut s) = s else { continue };
                let Some(req) = read_request(&mut s) else {
                    continue;
                };
                let answer = (handler.lock().unwrap())(&req);
                {
                    let (l, cv) = &*log;
                    l.lock().unwrap().push(req);
                    cv.notify_all();
                }
                match answer {
                    Answer::With(status, body) => {
                        let _ = write!(
                            s,
                            "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        );
                    }
                    Answer::Stall => stalled.lock().unwrap().push(s),
                }
            }
        });
        server
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn set(&self, handler: impl FnMut(&Req) -> Answer + Send + 'static) {
        *self.handler.lock().unwrap() = Box::new(handler);
    }

    fn requests(&self) -> Vec<Req> {
        self.log.0.lock().unwrap().clone()
    }

    /// Waits (at most 30 s) until `pred` holds of the requests so far, off the runtime's
    /// thread (the cluster runs on it).
    async fn wait_until(
        &self,
        what: &str,
        pred: impl Fn(&[Req]) -> bool + Send + 'static,
    ) -> Vec<Req> {
        let log = self.log.clone();
        let (got, timed_out) = tokio::task::spawn_blocking(move || {
            let (l, cv) = &*log;
            let guard = l.lock().unwrap();
            let (guard, timeout) = cv
                .wait_timeout_while(guard, Duration::from_secs(30), |r| !pred(r))
                .unwrap();
            (guard.clone(), timeout.timed_out())
        })
        .await
        .unwrap();
        assert!(!timed_out, "timed out waiting for {what}: {got:?}");
        got
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

/// A `DescribeInstancesResponse` of running instances at these addresses.
fn instances_xml(ips: &[&str], next_token: Option<&str>) -> String {
    let items: String = ips
        .iter()
        .enumerate()
        .map(|(i, ip)| {
            format!(
                "<item><instanceId>i-{i:017x}</instanceId><instanceState><code>16</code><name>running</name></instanceState>\
                 <privateIpAddress>{ip}</privateIpAddress><tagSet><item><key>app</key><value>web</value></item></tagSet></item>"
            )
        })
        .collect();
    let token = next_token
        .map(|t| format!("<nextToken>{t}</nextToken>"))
        .unwrap_or_default();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DescribeInstancesResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">\
         <requestId>req-1</requestId><reservationSet><item><reservationId>r-1</reservationId><instancesSet>{items}</instancesSet></item></reservationSet>{token}</DescribeInstancesResponse>"
    )
}

fn ec2_error_xml(code: &str, message: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>e-1</RequestID></Response>"
    )
}

/// A credentials document expiring `secs` from now.
fn credentials_json(key: &str, secs: u64) -> String {
    let unix = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + secs;
    // Unix seconds to RFC 3339, by the days-from-civil algorithm in reverse.
    let (days, rem) = (unix / 86_400, unix % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        r#"{{"Code":"Success","Type":"AWS-HMAC","AccessKeyId":"{key}","SecretAccessKey":"s3cr3t","Token":"tok-{key}","Expiration":"{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z"}}"#,
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

fn ec2_config(endpoint: &str, extra: Vec<(&'static str, Value)>) -> Vec<(&'static str, Value)> {
    let mut e = vec![
        ("ec2_tagname", Value::str("app")),
        ("ec2_tagvalue", Value::str("web")),
        ("region", Value::str("us-east-1")),
        ("endpoint_url", Value::str(endpoint)),
        ("polling_interval", Value::Int(300)),
        ("request_timeout", Value::Int(5000)),
    ];
    for (k, v) in extra {
        e.retain(|(key, _)| *key != k);
        e.push((k, v));
    }
    e
}

// ----- EC2 against moto ------------------------------------------------------------------

#[tokio::test]
async fn ec2_discovers_tagged_running_instances_and_loses_a_stopped_one() {
    let moto = Moto::start();
    let web = moto.run_instances(2, &[("app", "web")]);
    let db = moto.run_instances(1, &[("app", "db")]);
    moto.run_instances(1, &[("Name", "untagged")]);
    let web_ips = instance_ips(&moto, &web);
    assert_eq!(web_ips.len(), 2);
    let proxy = Proxy::start(moto.addr);
    let (h, _events) = start("ec2", ec2_config(&proxy.url(), vec![]), key_env());
    members(&h, &names("app", &web_ips)).await;
    assert!(
        !h.members()
            .iter()
            .any(|m| m.to_string().contains(&instance_ips(&moto, &db)[0]))
    );

    let r = moto.ec2("StopInstances", &[("InstanceId.1", &web[0])]);
    assert_eq!(r.status, 200, "{}", r.body_excerpt(300));
    let still = instance_ips(&moto, &web[1..]);
    members(&h, &names("app", &still)).await;
    h.shutdown().await;
}

#[tokio::test]
async fn ec2_pages_through_many_instances_and_commits_one_round() {
    let moto = Moto::start();
    let mut ids = Vec::new();
    // One reservation each: moto pages by reservation.
    for _ in 0..25 {
        ids.extend(moto.run_instances(1, &[("app", "web")]));
    }
    let ips = instance_ips(&moto, &ids);
    assert_eq!(ips.len(), 25);
    let proxy = Proxy::start(moto.addr);
    // One poll only: every request the proxy sees is that poll's.
    let (h, _events) = start(
        "ec2",
        ec2_config(
            &proxy.url(),
            vec![
                ("page_size", Value::Int(5)),
                ("polling_interval", Value::Int(600_000)),
            ],
        ),
        key_env(),
    );
    // The first member appears only once the last page is in: one round for the whole poll.
    let at_first_member = tokio::time::timeout(
        Duration::from_secs(30),
        h.wait_for_members(|m| !m.is_empty()),
    )
    .await;
    assert!(at_first_member.is_ok());
    let pages_then = proxy.count();
    members(&h, &names("app", &ips)).await;
    let pages = proxy.count();
    assert_eq!(pages_then, pages, "a member appeared before the last page");
    assert!(pages >= 5, "25 instances 5 a page: {pages} requests");
    let lines = proxy.lines.lock().unwrap().clone();
    assert!(lines[0].contains("MaxResults=5"), "{lines:?}");
    assert!(!lines[0].contains("NextToken"), "{lines:?}");
    assert!(
        lines[1..].iter().all(|l| l.contains("NextToken=")),
        "{lines:?}"
    );
    eprintln!("ec2: 25 instances, page_size 5: {pages} requests per poll");
    h.shutdown().await;

    // At the default page size, one request.
    let proxy = Proxy::start(moto.addr);
    let (h, _events) = start(
        "ec2",
        ec2_config(
            &proxy.url(),
            vec![("polling_interval", Value::Int(600_000))],
        ),
        key_env(),
    );
    members(&h, &names("app", &ips)).await;
    assert_eq!(proxy.count(), 1);
    eprintln!("ec2: 25 instances, page_size 1000: 1 request per poll");
    h.shutdown().await;
}

/// Without `ec2_tagvalue`: this instance's ID from IMDS, its tags from EC2, then the
/// instances with its value.
#[tokio::test]
async fn ec2_without_a_tag_value_uses_this_instances_own() {
    let moto = Moto::start();
    let blue = moto.run_instances(2, &[("env", "blue")]);
    moto.run_instances(1, &[("env", "green")]);
    let blue_ips = instance_ips(&moto, &blue);
    let me = blue[0].clone();
    let imds = Server::start(move |r| match (r.method.as_str(), r.path.as_str()) {
        ("PUT", "/latest/api/token") => Answer::With(200, "imds-token".into()),
        ("GET", "/latest/meta-data/instance-id")
            if r.header("X-aws-ec2-metadata-token") == Some("imds-token") =>
        {
            Answer::With(200, me.clone())
        }
        _ => Answer::With(401, String::new()),
    });
    let env = Environment::new()
        .set("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
        .set("AWS_SECRET_ACCESS_KEY", "secret")
        .set("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.url());
    let config = vec![
        ("ec2_tagname", Value::str("env")),
        ("region", Value::str("us-east-1")),
        ("endpoint_url", Value::str(format!("http://{}", moto.addr))),
        ("polling_interval", Value::Int(300)),
    ];
    let (h, _events) = start("ec2", config, env);
    members(&h, &names("app", &blue_ips)).await;
    let reqs = imds.requests();
    assert_eq!(reqs[0].method, "PUT");
    assert_eq!(
        reqs[0].header("X-aws-ec2-metadata-token-ttl-seconds"),
        Some("21600")
    );
    assert_eq!(reqs[1].path, "/latest/meta-data/instance-id");
    // Looked up once, not at every poll.
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    h.shutdown().await;
}

// ----- ECS against moto ------------------------------------------------------------------

#[tokio::test]
async fn ecs_discovers_task_addresses_and_loses_a_stopped_task() {
    let moto = Moto::start();
    moto.hold_task_states();
    let arns = moto.run_fargate_tasks("prod", "web", 3);
    let ips = task_ips(&moto, "prod", &arns);
    assert_eq!(ips.len(), 3);
    let ecs_config = |endpoint: String, every: i64| {
        vec![
            ("cluster", Value::str("prod")),
            // moto ignores the service in ListTasks: every task of the cluster is listed.
            ("service_name", Value::str("web")),
            ("region", Value::str("us-east-1")),
            ("endpoint_url", Value::str(endpoint)),
            ("polling_interval", Value::Int(every)),
        ]
    };
    let want = names("app", &ips);
    // One poll only, through the proxy: one ListTasks page and one DescribeTasks call.
    let proxy = Proxy::start(moto.addr);
    let (h, _events) = start("ecs", ecs_config(proxy.url(), 600_000), key_env());
    members(&h, &want).await;
    assert_eq!(proxy.count(), 2);
    let lines = proxy.lines.lock().unwrap().clone();
    assert!(lines.iter().all(|l| l.starts_with("POST / ")), "{lines:?}");
    eprintln!("ecs: 3 tasks, 1 service: 2 requests per poll (ListTasks, DescribeTasks)");
    h.shutdown().await;

    let (h, _events) = start(
        "ecs",
        ecs_config(format!("http://{}", moto.addr), 300),
        key_env(),
    );
    members(&h, &want).await;
    let r = moto.ecs(
        "StopTask",
        &serde_json::json!({ "cluster": "prod", "task": arns[0], "reason": "test" }),
    );
    assert_eq!(r.status, 200, "{}", r.body_excerpt(300));
    let still = task_ips(&moto, "prod", &arns[1..]);
    members(&h, &names("app", &still)).await;
    h.shutdown().await;
}

// ----- faults keep the set ---------------------------------------------------------------

#[tokio::test]
async fn refused_credentials_throttling_and_a_failed_page_keep_the_last_good_set() {
    let api = Server::start(|_| Answer::With(200, instances_xml(&["10.0.0.1", "10.0.0.2"], None)));
    let (h, mut events) = start("ec2", ec2_config(&api.url(), vec![]), key_env());
    let want = names("app", &["10.0.0.1".into(), "10.0.0.2".into()]);
    members(&h, &want).await;

    api.set(|_| {
        Answer::With(
            401,
            ec2_error_xml(
                "AuthFailure",
                "AWS was not able to validate the provided access credentials",
            ),
        )
    });
    let reason = next_failure(&mut events).await;
    assert!(reason.contains("AuthFailure"), "{reason}");
    assert!(reason.contains("AWS_ACCESS_KEY_ID AKIDEXAMPLE"), "{reason}");
    assert_eq!(h.members(), want);

    api.set(|_| {
        Answer::With(
            503,
            ec2_error_xml("RequestLimitExceeded", "Request limit exceeded."),
        )
    });
    let reason = loop {
        let r = next_failure(&mut events).await;
        if r.contains("RequestLimitExceeded") {
            break r;
        }
    };
    assert!(reason.contains("throttled: next poll in"), "{reason}");
    assert_eq!(h.members(), want);

    // Plain 503 without an error document is throttling too.
    api.set(|_| Answer::With(503, "Service Unavailable".into()));
    let reason = loop {
        let r = next_failure(&mut events).await;
        if r.contains("Service Unavailable") {
            break r;
        }
    };
    assert!(reason.contains("throttled"), "{reason}");

    // Page one answers with a token, page two fails: nothing of page one is committed.
    api.set(|r| {
        if r.path.contains("NextToken") {
            Answer::With(500, ec2_error_xml("InternalError", "page two broke"))
        } else {
            Answer::With(200, instances_xml(&["10.0.0.9"], Some("page-2")))
        }
    });
    let reason = loop {
        let r = next_failure(&mut events).await;
        if r.contains("page two broke") {
            break r;
        }
    };
    assert!(reason.contains("InternalError"), "{reason}");
    assert_eq!(h.members(), want);

    // And once AWS answers again, the set follows.
    api.set(|_| Answer::With(200, instances_xml(&["10.0.0.3"], None)));
    members(&h, &names("app", &["10.0.0.3".into()])).await;
    h.shutdown().await;
}

// ----- IMDS and the container credentials endpoint ---------------------------------------

/// No key in the environment and no region: IMDSv2 gives both (token, region, role,
/// credentials), and the API calls are signed with them. Credentials that expire within
/// five minutes are fetched again at the next poll.
#[tokio::test]
async fn imds_gives_the_region_and_role_credentials_the_requests_are_signed_with() {
    let imds = Server::start(|r| {
        let token_ok = r.header("X-aws-ec2-metadata-token") == Some("tok-imds");
        match (r.method.as_str(), r.path.as_str()) {
            ("PUT", "/latest/api/token") => Answer::With(200, "tok-imds".into()),
            (_, _) if !token_ok => Answer::With(401, String::new()),
            ("GET", "/latest/meta-data/placement/region") => Answer::With(200, "eu-north-1".into()),
            ("GET", "/latest/meta-data/iam/security-credentials/") => {
                Answer::With(200, "web-role\n".into())
            }
            ("GET", "/latest/meta-data/iam/security-credentials/web-role") => {
                Answer::With(200, credentials_json("ASIAIMDS", 240))
            }
            _ => Answer::With(404, String::new()),
        }
    });
    let api = Server::start(|_| Answer::With(200, instances_xml(&["10.0.0.1"], None)));
    let env = Environment::new().set("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.url());
    let mut config = ec2_config(&api.url(), vec![]);
    config.retain(|(k, _)| *k != "region");
    let (h, _events) = start("ec2", config, env);
    members(&h, &names("app", &["10.0.0.1".into()])).await;
    let calls = api.wait_until("two polls", |r| r.len() >= 2).await;
    let auth = calls[0].header("Authorization").unwrap();
    assert!(
        auth.starts_with("AWS4-HMAC-SHA256 Credential=ASIAIMDS/")
            && auth.contains("/eu-north-1/ec2/aws4_request"),
        "{auth}"
    );
    assert_eq!(
        calls[0].header("X-Amz-Security-Token"),
        Some("tok-ASIAIMDS")
    );
    let fetched = imds
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/web-role"))
        .count();
    assert!(
        fetched >= 2,
        "credentials expiring within 5 min are fetched at each poll"
    );
    // One token, one region, one role name.
    let reqs = imds.requests();
    assert_eq!(reqs.iter().filter(|r| r.method == "PUT").count(), 1);
    assert_eq!(
        reqs.iter().filter(|r| r.path.ends_with("/region")).count(),
        1
    );
    h.shutdown().await;
}

/// A token `PUT` that never answers (a container behind a hop limit of 1): the poll fails
/// and names the fix.
#[tokio::test]
async fn an_unanswered_imds_token_names_the_hop_limit() {
    let imds = Server::start(|_| Answer::Stall);
    let env = Environment::new().set("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.url());
    let (_h, mut events) = start("ec2", ec2_config("http://127.0.0.1:9", vec![]), env);
    let reason = next_failure(&mut events).await;
    assert!(reason.contains("hop limit must be 2"), "{reason}");
    assert!(reason.contains("/latest/api/token"), "{reason}");
}

/// ECS with credentials from `AWS_CONTAINER_CREDENTIALS_FULL_URI` and the token file (read
/// at each fetch: a rotated token is sent), two services, ListTasks over two pages.
#[tokio::test]
async fn ecs_with_container_credentials_pages_and_services() {
    let dir = support::k8s::Dir::new("aws-container");
    dir.write("token", "secret-token-1\n");
    let creds = Server::start(|r| match r.header("Authorization") {
        Some(t) if t.starts_with("secret-token-") => {
            Answer::With(200, credentials_json("ASIATASK", 120))
        }
        _ => Answer::With(403, r#"{"Code":"AccessDenied"}"#.into()),
    });
    let task = |n: u32, ip: &str, last: &str| {
        format!(
            r#"{{"taskArn":"arn:aws:ecs:eu-west-1:1:task/prod/t{n}","lastStatus":"{last}","desiredStatus":"RUNNING","attachments":[{{"type":"ElasticNetworkInterface","details":[{{"name":"subnetId","value":"subnet-1"}},{{"name":"privateIPv4Address","value":"{ip}"}}]}}]}}"#
        )
    };
    let (t1, t2, t3, t4) = (
        task(1, "10.1.0.1", "RUNNING"),
        task(2, "10.1.0.2", "PENDING"),
        task(3, "10.1.0.3", "RUNNING"),
        task(4, "10.1.0.4", "STOPPING"),
    );
    let api = Server::start(move |r| {
        let b = r.json();
        if r.target().ends_with(".ListTasks") {
            assert_eq!(b["cluster"], "prod");
            assert_eq!(b["desiredStatus"], "RUNNING");
            let body = match (b["serviceName"].as_str(), b["nextToken"].as_str()) {
                (Some("web"), None) => {
                    r#"{"taskArns":["arn:aws:ecs:eu-west-1:1:task/prod/t1"],"nextToken":"p2"}"#
                }
                (Some("web"), Some("p2")) => {
                    r#"{"taskArns":["arn:aws:ecs:eu-west-1:1:task/prod/t2"]}"#
                }
                (Some("worker"), None) => {
                    r#"{"taskArns":["arn:aws:ecs:eu-west-1:1:task/prod/t3","arn:aws:ecs:eu-west-1:1:task/prod/t4"]}"#
                }
                other => panic!("unexpected ListTasks {other:?}"),
            };
            Answer::With(200, body.into())
        } else {
            assert_eq!(b["tasks"].as_array().unwrap().len(), 4);
            Answer::With(
                200,
                format!(r#"{{"tasks":[{t1},{t2},{t3},{t4}],"failures":[]}}"#),
            )
        }
    });
    let env = Environment::new()
        .set(
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            format!("{}/v1/credentials", creds.url()),
        )
        .set(
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
            dir.path("token").to_string_lossy(),
        )
        .set("AWS_REGION", "eu-west-1")
        .set("AWS_EC2_METADATA_DISABLED", "true");
    let (h, _events) = start(
        "ecs",
        vec![
            ("cluster", Value::str("prod")),
            (
                "service_name",
                Value::List(vec![Value::str("web"), Value::str("worker")]),
            ),
            ("app_prefix", Value::str("svc")),
            ("endpoint_url", Value::str(api.url())),
            ("polling_interval", Value::Int(300)),
        ],
        env,
    );
    // The stopping task is left out; the pending one is in.
    let want = names(
        "svc",
        &["10.1.0.1".into(), "10.1.0.2".into(), "10.1.0.3".into()],
    );
    members(&h, &want).await;
    let calls = api.wait_until("a whole poll", |r| r.len() >= 4).await;
    let targets: Vec<&str> = calls[..4].iter().map(|r| r.target()).collect();
    assert_eq!(
        targets,
        [
            "AmazonEC2ContainerServiceV20141113.ListTasks",
            "AmazonEC2ContainerServiceV20141113.ListTasks",
            "AmazonEC2ContainerServiceV20141113.ListTasks",
            "AmazonEC2ContainerServiceV20141113.DescribeTasks"
        ]
    );
    let auth = calls[0].header("Authorization").unwrap();
    assert!(
        auth.contains("Credential=ASIATASK/") && auth.contains("/eu-west-1/ecs/"),
        "{auth}"
    );
    assert_eq!(
        calls[0].header("X-Amz-Security-Token"),
        Some("tok-ASIATASK")
    );
    eprintln!("ecs: 2 services (2 + 1 ListTasks pages), 4 tasks: 4 requests per poll");

    // The token file rotates: the next fetch sends the new token.
    dir.write("token", "secret-token-2\n");
    let seen = creds
        .wait_until("the rotated token", |r| {
            r.iter()
                .any(|r| r.header("Authorization") == Some("secret-token-2"))
        })
        .await;
    assert_eq!(seen[0].header("Authorization"), Some("secret-token-1"));
    assert_eq!(seen[0].path, "/v1/credentials");
    assert_eq!(h.members(), want);
    h.shutdown().await;
}

// ----- the real binary -------------------------------------------------------------------

/// `muster run` with an ec2 topology against moto discovers both tagged instances.
/// `muster run` with `config` (a topology section) until it has discovered every one of
/// `want`, reading its event lines.
async fn muster_run_discovers(tag: &str, config: String, want: &[String]) {
    let dir = support::k8s::Dir::new(tag);
    dir.write("muster.toml", config);
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_muster"))
        .args([
            "run",
            "--config",
            &dir.path("muster.toml").to_string_lossy(),
        ])
        .env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
        .env("AWS_SECRET_ACCESS_KEY", "secret")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stdout);
    let mut seen = Vec::new();
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        let mut line = String::new();
        while seen.len() < want.len() {
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
    for name in want {
        assert!(
            seen.iter().any(|l| l.contains(name.as_str())),
            "{name}: {seen:?}"
        );
    }
}

#[tokio::test]
async fn muster_run_discovers_ec2_instances_from_moto() {
    let moto = Moto::start();
    let ids = moto.run_instances(2, &[("cluster", "demo")]);
    let ips: BTreeSet<String> = instance_ips(&moto, &ids).into_iter().collect();
    let config = format!(
        "[topologies.aws]\nstrategy = \"ec2\"\n[topologies.aws.config]\nec2_tagname = \"cluster\"\n\
         ec2_tagvalue = \"demo\"\napp_prefix = \"demo\"\nregion = \"us-east-1\"\n\
         endpoint_url = \"http://{}\"\npolling_interval = 500\n",
        moto.addr
    );
    let want: Vec<String> = ips.iter().map(|ip| format!("demo@{ip}")).collect();
    muster_run_discovers("aws-cli", config, &want).await;
}

#[tokio::test]
async fn muster_run_discovers_ecs_tasks_from_moto() {
    let moto = Moto::start();
    moto.hold_task_states();
    let arns = moto.run_fargate_tasks("prod", "web", 2);
    let ips = task_ips(&moto, "prod", &arns);
    let config = format!(
        "[topologies.tasks]\nstrategy = \"ecs\"\n[topologies.tasks.config]\ncluster = \"prod\"\n\
         service_name = \"web\"\napp_prefix = \"web\"\nregion = \"us-east-1\"\n\
         endpoint_url = \"http://{}\"\npolling_interval = 500\n",
        moto.addr
    );
    let want: Vec<String> = ips.iter().map(|ip| format!("web@{ip}")).collect();
    muster_run_discovers("ecs-cli", config, &want).await;
}
