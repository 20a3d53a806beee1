//! The admin endpoint of `muster run` (`[admin] listen`): `/livez`, `/readyz` and `/metrics`
//! in Prometheus' text format, over plain HTTP/1.1 — bounded like every other listener: at
//! most [`MAX_CONNECTIONS`] at once (one more closes the oldest), [`REQUEST_TIMEOUT`] and [`MAX_REQUEST`] bytes for a
//! request, one request per connection.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use muster::config::AdminSettings;
use muster::core::{Event, Metrics};
use muster::tokio::ClusterHandle;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Connections served at once; one more closes the oldest.
pub const MAX_CONNECTIONS: usize = 32;
/// How long a request may take to arrive.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest request read.
pub const MAX_REQUEST: usize = 8 * 1024;

/// The upper bounds of the connect-latency histogram, in seconds.
const BUCKETS: [f64; 9] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0];

/// What the tool saw go by: events per topology and kind, connect latencies, events missed.
#[derive(Debug, Default)]
pub struct Observed {
    inner: Mutex<Seen>,
    /// The node is leaving: not ready for anything new.
    leaving: std::sync::atomic::AtomicBool,
}

#[derive(Debug, Default)]
struct Seen {
    events: BTreeMap<(String, &'static str), u64>,
    buckets: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
    missed: u64,
}

impl Observed {
    /// Counts `e`.
    pub fn observe(&self, e: &Event) {
        let Ok(mut s) = self.inner.lock() else { return };
        *s.events
            .entry((e.topology().to_owned(), e.name()))
            .or_default() += 1;
        if let Event::Connected { took, .. } = e {
            let t = took.as_secs_f64();
            for (i, b) in BUCKETS.iter().enumerate() {
                if t <= *b {
                    s.buckets[i] += 1;
                }
            }
            s.sum += t;
            s.count += 1;
        }
    }

    /// The node has begun to leave: `/readyz` answers 503 from now on, so that a load
    /// balancer stops sending it work while it disconnects.
    pub fn set_leaving(&self) {
        self.leaving
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    fn is_leaving(&self) -> bool {
        self.leaving.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Sets how many events the output missed so far.
    pub fn set_missed(&self, n: u64) {
        if let Ok(mut s) = self.inner.lock() {
            s.missed = n;
        }
    }

    fn write(&self, out: &mut String) {
        let Ok(s) = self.inner.lock() else { return };
        let _ = writeln!(
            out,
            "# HELP muster_events_total Events, per topology and kind."
        );
        let _ = writeln!(out, "# TYPE muster_events_total counter");
        for ((topology, kind), n) in &s.events {
            let _ = writeln!(
                out,
                "muster_events_total{{topology=\"{}\",event=\"{kind}\"}} {n}",
                label(topology)
            );
        }
        let _ = writeln!(
            out,
            "# HELP muster_connect_seconds Time from a connect request to its success."
        );
        let _ = writeln!(out, "# TYPE muster_connect_seconds histogram");
        for (b, n) in BUCKETS.iter().zip(s.buckets) {
            let _ = writeln!(out, "muster_connect_seconds_bucket{{le=\"{b}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "muster_connect_seconds_bucket{{le=\"+Inf\"}} {}",
            s.count
        );
        let _ = writeln!(out, "muster_connect_seconds_sum {}", s.sum);
        let _ = writeln!(out, "muster_connect_seconds_count {}", s.count);
        let _ = writeln!(
            out,
            "# HELP muster_events_missed_total Events the output fell too far behind to print."
        );
        let _ = writeln!(out, "# TYPE muster_events_missed_total counter");
        let _ = writeln!(out, "muster_events_missed_total {}", s.missed);
    }
}

/// A label value as the text format wants it.
fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Serves the endpoint on `listener` until the task is dropped.
pub async fn serve(
    listener: TcpListener,
    handle: ClusterHandle,
    settings: AdminSettings,
    observed: Arc<Observed>,
) {
    // In flight, oldest first: one more than MAX_CONNECTIONS closes the oldest, so idle
    // connections cannot keep a probe out (as the EPMD and the Erlang node do).
    let mut live: std::collections::VecDeque<tokio::task::JoinHandle<()>> = Default::default();
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of descriptors, say: wait instead of spinning.
                tracing::warn!(reason = %e, "admin endpoint: cannot accept");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        live.retain(|h| !h.is_finished());
        if live.len() >= MAX_CONNECTIONS
            && let Some(oldest) = live.pop_front()
        {
            oldest.abort();
        }
        let handle = handle.clone();
        let settings = settings.clone();
        let observed = observed.clone();
        live.push_back(tokio::spawn(async move {
            let reply = answer(stream, &handle, &settings, &observed);
            let _ = tokio::time::timeout(REQUEST_TIMEOUT, reply).await;
        }));
    }
}

async fn answer(
    mut stream: TcpStream,
    handle: &ClusterHandle,
    settings: &AdminSettings,
    observed: &Observed,
) {
    let mut buf = vec![0u8; MAX_REQUEST];
    let mut len = 0;
    let head;
    let path = loop {
        let n = match stream.read(&mut buf[len..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        len += n;
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf[..len]) {
            Ok(httparse::Status::Complete(_)) => {
                if req.method != Some("GET") && req.method != Some("HEAD") {
                    return respond(&mut stream, false, 405, "text/plain", "GET only\n").await;
                }
                head = req.method == Some("HEAD");
                break req.path.unwrap_or("/").to_owned();
            }
            Ok(httparse::Status::Partial) if len < buf.len() => {}
            _ => return respond(&mut stream, false, 400, "text/plain", "bad request\n").await,
        }
    };
    match path.split('?').next().unwrap_or_default() {
        "/livez" => respond(&mut stream, head, 200, "text/plain", "ok\n").await,
        "/readyz" => {
            let members = handle.members().len();
            let want = settings.ready_min_members;
            if observed.is_leaving() {
                respond(&mut stream, head, 503, "text/plain", "not ready: leaving\n").await
            } else if members >= want {
                respond(&mut stream, head, 200, "text/plain", "ready\n").await
            } else {
                let why = format!("not ready: {members} of {want} members connected\n");
                respond(&mut stream, head, 503, "text/plain", &why).await
            }
        }
        "/metrics" => {
            let mut body = exposition(&handle.metrics(), handle.members().len());
            observed.write(&mut body);
            respond(&mut stream, head, 200, "text/plain; version=0.0.4", &body).await
        }
        _ => respond(&mut stream, head, 404, "text/plain", "not found\n").await,
    }
}

/// Writes the response; a `HEAD` request gets the head alone (with the body's length).
async fn respond(stream: &mut TcpStream, head: bool, status: u16, kind: &str, body: &str) {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let head_text = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head_text.as_bytes()).await;
    if !head {
        let _ = stream.write_all(body.as_bytes()).await;
    }
    let _ = stream.shutdown().await;
}

/// Every counter and gauge of `m`, the member count and the build, in Prometheus' text
/// exposition format.
pub fn exposition(m: &Metrics, members: usize) -> String {
    let counters: [(&str, u64, &str); 21] = [
        (
            "discovered",
            m.discovered,
            "Nodes newly discovered by some topology.",
        ),
        ("lost", m.lost, "Nodes that left some topology's discovery."),
        (
            "discovery_failed",
            m.discovery_failed,
            "Discovery attempts that failed (the last good set was kept).",
        ),
        ("rounds", m.rounds, "Discovery rounds committed."),
        (
            "rejected",
            m.rejected,
            "Inputs from the network rejected as malformed or unauthentic.",
        ),
        (
            "connects_started",
            m.connects_started,
            "Connect requests issued.",
        ),
        ("connected", m.connected, "Connects that succeeded."),
        (
            "connect_failed",
            m.connect_failed,
            "Connects that failed, were ignored or timed out.",
        ),
        (
            "connect_timeouts",
            m.connect_timeouts,
            "Connects that passed their deadline.",
        ),
        (
            "disconnects_started",
            m.disconnects_started,
            "Disconnect requests issued.",
        ),
        (
            "disconnected",
            m.disconnected,
            "Disconnects that succeeded or found the node gone.",
        ),
        (
            "disconnect_failed",
            m.disconnect_failed,
            "Disconnects that failed.",
        ),
        (
            "dropped",
            m.dropped,
            "Connections that went away without our asking.",
        ),
        (
            "list_requests",
            m.list_requests,
            "List requests issued to the connector.",
        ),
        (
            "list_failed",
            m.list_failed,
            "List requests that failed or timed out.",
        ),
        ("reconciles", m.reconciles, "Reconcile passes run."),
        (
            "self_skipped",
            m.self_skipped,
            "Times a strategy named this node itself.",
        ),
        (
            "stale_answers",
            m.stale_answers,
            "Answers nobody waited for any more.",
        ),
        (
            "events_dropped",
            m.events_dropped,
            "Events dropped because the event queue was full.",
        ),
        (
            "inbound_failed",
            m.inbound_failed,
            "Inbound Erlang distribution connections that failed their handshake.",
        ),
        (
            "accept_failed",
            m.accept_failed,
            "Accepts of Erlang distribution connections that failed.",
        ),
    ];
    let gauges: [(&str, u64, &str); 5] = [
        ("known_nodes", m.known_nodes, "Nodes the core tracks."),
        (
            "connected_nodes",
            m.connected_nodes,
            "Nodes connected, as far as the core knows.",
        ),
        (
            "in_flight",
            m.in_flight,
            "Connect and disconnect requests in flight.",
        ),
        ("sockets", m.sockets, "UDP sockets open for strategies."),
        (
            "members",
            members as u64,
            "Connected members besides this node.",
        ),
    ];
    let mut out = String::with_capacity(4096);
    for (name, v, help) in counters {
        let _ = writeln!(out, "# HELP muster_{name}_total {help}");
        let _ = writeln!(out, "# TYPE muster_{name}_total counter");
        let _ = writeln!(out, "muster_{name}_total {v}");
    }
    for (name, v, help) in gauges {
        let _ = writeln!(out, "# HELP muster_{name} {help}");
        let _ = writeln!(out, "# TYPE muster_{name} gauge");
        let _ = writeln!(out, "muster_{name} {v}");
    }
    let _ = writeln!(out, "# HELP muster_build_info The muster tool's version.");
    let _ = writeln!(out, "# TYPE muster_build_info gauge");
    let _ = writeln!(
        out,
        "muster_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests unwrap what they set up themselves
    use super::*;

    async fn ask(addr: std::net::SocketAddr, method: &str, path: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let req = format!("{method} {path} HTTP/1.1\r\nHost: muster\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).await.unwrap();
        text
    }

    /// HEAD gets the head alone; once the node leaves, /readyz is 503 whatever the members.
    #[tokio::test]
    async fn head_has_no_body_and_a_leaving_node_is_not_ready() {
        let (handle, _events) =
            muster::tokio::Builder::new(muster::tokio::RecordingConnector::new())
                .spawn()
                .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let settings = AdminSettings::new(addr);
        let observed = Arc::new(Observed::default());
        tokio::spawn(serve(listener, handle.clone(), settings, observed.clone()));
        let get = ask(addr, "GET", "/readyz").await;
        assert!(
            get.starts_with("HTTP/1.1 200") && get.ends_with("\r\n\r\nready\n"),
            "{get}"
        );
        let head = ask(addr, "HEAD", "/readyz").await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(
            head.contains("Content-Length: 6\r\n") && head.ends_with("\r\n\r\n"),
            "{head}"
        );
        observed.set_leaving();
        let leaving = ask(addr, "GET", "/readyz").await;
        assert!(
            leaving.starts_with("HTTP/1.1 503") && leaving.ends_with("leaving\n"),
            "{leaving}"
        );
        assert!(ask(addr, "GET", "/livez").await.starts_with("HTTP/1.1 200"));
        handle.shutdown().await;
    }
}
