//! Simulated HTTP services: the Kubernetes API, Rancher's metadata service, and any service
//! of your own that a custom strategy talks to.
//!
//! A service is registered at an endpoint ([`Sim::serve_http`](super::Sim::serve_http)) and
//! answers each request a cluster sends there (one request per connection, as the core's
//! exchanges make them) with an [`HttpReply`]. It sees the simulated world — which nodes are
//! up — so the built-in services follow the cluster: a pod is ready while its host is up.

use std::fmt::Write as _;
use std::net::IpAddr;

use crate::node::NodeName;
use crate::time::Instant;

/// One request, as the service sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpRequest {
    /// `GET`, `PUT`, …
    pub method: String,
    /// The path with its query string.
    pub path: String,
    /// Header names (as sent) and values.
    pub headers: Vec<(String, String)>,
    /// The body, if any came with the request.
    pub body: Vec<u8>,
}

impl HttpRequest {
    /// Parses one request; `None` for bytes that are not one.
    pub(crate) fn parse(data: &[u8]) -> Option<HttpRequest> {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut r = httparse::Request::new(&mut headers);
        let httparse::Status::Complete(n) = r.parse(data).ok()? else {
            return None;
        };
        Some(HttpRequest {
            method: r.method?.to_owned(),
            path: r.path?.to_owned(),
            headers: r
                .headers
                .iter()
                .map(|h| {
                    let v = String::from_utf8_lossy(h.value).into_owned();
                    (h.name.to_owned(), v)
                })
                .collect(),
            body: data.get(n..).unwrap_or_default().to_vec(),
        })
    }

    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What a simulated service answers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HttpReply {
    /// A whole response: status, body, sent with `Content-Length` or chunked.
    Response {
        /// The status code.
        status: u16,
        /// The body.
        body: Vec<u8>,
        /// Send it chunked.
        chunked: bool,
    },
    /// Accept the connection and never answer (the client's deadline fires).
    Stall,
    /// These bytes, then close: a response cut short, or nonsense.
    Raw(Vec<u8>),
}

impl HttpReply {
    /// A `200 OK` with a JSON body.
    pub fn json(body: impl Into<Vec<u8>>) -> HttpReply {
        HttpReply::Response {
            status: 200,
            body: body.into(),
            chunked: false,
        }
    }

    /// A response with `status` and a JSON body.
    pub fn status(status: u16, body: impl Into<Vec<u8>>) -> HttpReply {
        HttpReply::Response {
            status,
            body: body.into(),
            chunked: false,
        }
    }

    /// The bytes that go on the wire (`None` for [`HttpReply::Stall`]).
    pub(crate) fn encode(&self) -> Option<Vec<u8>> {
        match self {
            HttpReply::Stall => None,
            HttpReply::Raw(b) => Some(b.clone()),
            HttpReply::Response {
                status,
                body,
                chunked,
            } => {
                let mut out = format!(
                    "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nConnection: close\r\n",
                    reason(*status)
                );
                if *chunked {
                    out.push_str("Transfer-Encoding: chunked\r\n\r\n");
                    let mut out = out.into_bytes();
                    // Pieces of a few hundred bytes, so that a chunk boundary falls anywhere.
                    for piece in body.chunks(397) {
                        out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                        out.extend_from_slice(piece);
                        out.extend_from_slice(b"\r\n");
                    }
                    out.extend_from_slice(b"0\r\n\r\n");
                    Some(out)
                } else {
                    let _ = write!(out, "Content-Length: {}\r\n\r\n", body.len());
                    let mut out = out.into_bytes();
                    out.extend_from_slice(body);
                    Some(out)
                }
            }
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        410 => "Gone",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// What a service may see of the simulated world.
#[derive(Debug)]
pub struct World<'a> {
    pub(crate) hosts: Vec<(&'a NodeName, IpAddr, bool)>,
}

impl World<'_> {
    /// Every host: its name, its address, whether it is up.
    pub fn hosts(&self) -> impl Iterator<Item = (&NodeName, IpAddr, bool)> + '_ {
        self.hosts.iter().map(|(n, ip, up)| (*n, *ip, *up))
    }

    /// Whether the host `name` is up.
    pub fn is_up(&self, name: &NodeName) -> bool {
        self.hosts.iter().any(|(n, _, up)| *n == name && *up)
    }

    /// The address of the host `name`.
    pub fn ip_of(&self, name: &NodeName) -> Option<IpAddr> {
        self.hosts
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, ip, _)| *ip)
    }
}

/// A simulated HTTP service. Closures `FnMut(Instant, &HttpRequest, &World) -> HttpReply` are
/// services.
pub trait HttpService {
    /// Answers one request at virtual time `now`.
    fn respond(&mut self, now: Instant, request: &HttpRequest, world: &World<'_>) -> HttpReply;

    /// Requests answered so far (for figures; 0 if the service does not count).
    fn requests(&self) -> u64 {
        0
    }

    /// Shows `fault` from now on (services without faults ignore it).
    fn set_fault(&mut self, fault: ApiFault) {
        let _ = fault;
    }
}

impl<F> HttpService for F
where
    F: FnMut(Instant, &HttpRequest, &World<'_>) -> HttpReply,
{
    fn respond(&mut self, now: Instant, request: &HttpRequest, world: &World<'_>) -> HttpReply {
        self(now, request, world)
    }
}

/// A fault a simulated HTTP service (the Kubernetes API, Rancher, the AWS APIs) can show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApiFault {
    /// Answer as a healthy server does.
    None,
    /// `403 Forbidden`, as when the role lacks the permission.
    Forbidden,
    /// `500 Internal Server Error`.
    ServerError,
    /// Accept and never answer.
    Stall,
    /// Cut the response off half-way.
    Truncate,
    /// Refuse for the rate of requests: `429 Too Many Requests` (the AWS APIs answer
    /// `RequestLimitExceeded` or `ThrottlingException`).
    Throttled,
}

impl ApiFault {
    fn reply(self, good: HttpReply) -> HttpReply {
        let status = |code: u16, message: &str| {
            let body = format!(
                r#"{{"kind":"Status","apiVersion":"v1","status":"Failure","message":"{message}","code":{code}}}"#
            );
            HttpReply::status(code, body)
        };
        match self {
            ApiFault::None => good,
            ApiFault::Forbidden => status(403, "forbidden: the service account cannot list"),
            ApiFault::ServerError => status(500, "etcdserver: request timed out"),
            ApiFault::Throttled => status(429, "too many requests, please try again later"),
            ApiFault::Stall => HttpReply::Stall,
            ApiFault::Truncate => {
                let mut bytes = good.encode().unwrap_or_default();
                bytes.truncate(bytes.len() / 2);
                HttpReply::Raw(bytes)
            }
        }
    }
}

/// A simulated Kubernetes API server: the pods of one service, each a simulated host, ready
/// while that host is up. It answers lists of EndpointSlices, Endpoints and Pods in the
/// namespace (whichever the strategy asks for), chunked or not at random, and watches of
/// them: the changes since the watch's `resourceVersion` (the objects as they are now), a
/// bookmark, and the end of the watch — as a server whose watches time out at once, so a
/// watching strategy is exercised without holding virtual streams open.
#[derive(Debug, Clone)]
pub struct KubernetesApi {
    namespace: String,
    service: String,
    pods: Vec<NodeName>,
    fault: ApiFault,
    requests: u64,
    /// The `resourceVersion`: bumped whenever the pods' state changes.
    version: u64,
    last: Vec<(usize, IpAddr, bool)>,
}

impl KubernetesApi {
    /// The API for `service` in `namespace`, with no pods yet.
    pub fn new(namespace: &str, service: &str) -> Self {
        KubernetesApi {
            namespace: namespace.to_owned(),
            service: service.to_owned(),
            pods: Vec::new(),
            fault: ApiFault::None,
            requests: 0,
            version: 1,
            last: Vec::new(),
        }
    }

    /// Sets the service's pods: simulated hosts, each named `basename@<its address>`.
    pub fn pods(mut self, pods: impl IntoIterator<Item = NodeName>) -> Self {
        self.pods = pods.into_iter().collect();
        self
    }

    fn items(&self, world: &World<'_>) -> Vec<(usize, IpAddr, bool)> {
        self.pods
            .iter()
            .enumerate()
            .filter_map(|(i, p)| Some((i, world.ip_of(p)?, world.is_up(p))))
            .collect()
    }

    /// The objects of a lookup mode, as JSON.
    fn objects(&self, world: &World<'_>, kind: &str) -> Vec<String> {
        match kind {
            "EndpointSliceList" => vec![self.slice(world)],
            "EndpointsList" => vec![self.endpoints(world)],
            _ => self.pods_json(world),
        }
    }

    fn list(&self, world: &World<'_>, kind: &str) -> String {
        let api = if kind == "EndpointSliceList" {
            "discovery.k8s.io/v1"
        } else {
            "v1"
        };
        format!(
            r#"{{"kind":"{kind}","apiVersion":"{api}","metadata":{{"resourceVersion":"{}"}},"items":[{}]}}"#,
            self.version,
            self.objects(world, kind).join(",")
        )
    }

    /// A watch from `from`: what changed since, then a bookmark; `410 Gone` as an event for
    /// a version this server never had.
    fn watch(&self, world: &World<'_>, kind: &str, from: Option<u64>) -> String {
        let mut out = String::new();
        match from {
            Some(v) if v <= self.version => {
                if v < self.version {
                    for o in self.objects(world, kind) {
                        let _ = writeln!(out, r#"{{"type":"MODIFIED","object":{o}}}"#);
                    }
                }
                let _ = writeln!(
                    out,
                    r#"{{"type":"BOOKMARK","object":{{"metadata":{{"resourceVersion":"{}"}}}}}}"#,
                    self.version
                );
            }
            _ => {
                let _ = writeln!(
                    out,
                    r#"{{"type":"ERROR","object":{{"kind":"Status","apiVersion":"v1","status":"Failure","message":"too old resource version","reason":"Expired","code":410}}}}"#
                );
            }
        }
        out
    }

    fn slice(&self, world: &World<'_>) -> String {
        let (ns, svc) = (&self.namespace, &self.service);
        let eps: Vec<String> = self
            .items(world)
            .into_iter()
            .map(|(i, ip, ready)| {
                format!(
                    r#"{{"addresses":["{ip}"],"conditions":{{"ready":{ready},"serving":{ready},"terminating":false}},"hostname":"{svc}-{i}","targetRef":{{"kind":"Pod","namespace":"{ns}","name":"{svc}-{i}"}}}}"#
                )
            })
            .collect();
        format!(
            r#"{{"metadata":{{"name":"{svc}-x","namespace":"{ns}","resourceVersion":"{}","labels":{{"kubernetes.io/service-name":"{svc}"}}}},"addressType":"IPv4","endpoints":[{}]}}"#,
            self.version,
            eps.join(",")
        )
    }

    fn endpoints(&self, world: &World<'_>) -> String {
        let (ns, svc) = (&self.namespace, &self.service);
        let addr = |(i, ip, _): &(usize, IpAddr, bool)| {
            format!(
                r#"{{"ip":"{ip}","hostname":"{svc}-{i}","targetRef":{{"kind":"Pod","namespace":"{ns}","name":"{svc}-{i}"}}}}"#
            )
        };
        let items = self.items(world);
        let ready: Vec<String> = items.iter().filter(|x| x.2).map(addr).collect();
        let not_ready: Vec<String> = items.iter().filter(|x| !x.2).map(addr).collect();
        format!(
            r#"{{"metadata":{{"name":"{svc}","namespace":"{ns}","resourceVersion":"{}"}},"subsets":[{{"addresses":[{}],"notReadyAddresses":[{}],"ports":[{{"port":4369}}]}}]}}"#,
            self.version,
            ready.join(","),
            not_ready.join(",")
        )
    }

    fn pods_json(&self, world: &World<'_>) -> Vec<String> {
        let (ns, svc) = (&self.namespace, &self.service);
        self.items(world)
            .into_iter()
            .map(|(i, ip, ready)| {
                let status = if ready { "True" } else { "False" };
                format!(
                    r#"{{"metadata":{{"name":"{svc}-{i}","namespace":"{ns}","resourceVersion":"{}"}},"spec":{{"hostname":"{svc}-{i}"}},"status":{{"phase":"Running","podIP":"{ip}","conditions":[{{"type":"Ready","status":"{status}"}}]}}}}"#,
                    self.version
                )
            })
            .collect()
    }
}

impl HttpService for KubernetesApi {
    fn respond(&mut self, _now: Instant, request: &HttpRequest, world: &World<'_>) -> HttpReply {
        self.requests += 1;
        let items = self.items(world);
        if items != self.last {
            self.version += 1;
            self.last = items;
        }
        let (path, query) = request.path.split_once('?').unwrap_or((&request.path, ""));
        let ns = &self.namespace;
        let kind = if path == format!("/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices") {
            "EndpointSliceList"
        } else if path == format!("/api/v1/namespaces/{ns}/endpoints") {
            "EndpointsList"
        } else if path == format!("/api/v1/namespaces/{ns}/pods") {
            "PodList"
        } else {
            let body = r#"{"kind":"Status","status":"Failure","message":"the server could not find the requested resource","code":404}"#;
            return HttpReply::status(404, body);
        };
        let param = |name: &str| {
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        };
        if param("watch").is_some_and(|w| w == "1" || w == "true") {
            let from = param("resourceVersion").and_then(|v| v.parse().ok());
            return self.fault.reply(HttpReply::Response {
                status: 200,
                body: self.watch(world, kind, from).into_bytes(),
                chunked: true,
            });
        }
        let body = self.list(world, kind);
        let chunked = self.requests.is_multiple_of(2);
        self.fault.reply(HttpReply::Response {
            status: 200,
            body: body.into_bytes(),
            chunked,
        })
    }

    fn requests(&self) -> u64 {
        self.requests
    }

    fn set_fault(&mut self, fault: ApiFault) {
        self.fault = fault;
    }
}

/// Rancher's simulated metadata service: one service whose containers are simulated hosts
/// (each named `basename@<its address>`), listed while their host is up.
#[derive(Debug, Clone)]
pub struct RancherMetadata {
    containers: Vec<NodeName>,
    fault: ApiFault,
    requests: u64,
}

impl RancherMetadata {
    /// A service with these containers.
    pub fn new(containers: impl IntoIterator<Item = NodeName>) -> Self {
        RancherMetadata {
            containers: containers.into_iter().collect(),
            fault: ApiFault::None,
            requests: 0,
        }
    }
}

impl HttpService for RancherMetadata {
    fn respond(&mut self, _now: Instant, _request: &HttpRequest, world: &World<'_>) -> HttpReply {
        self.requests += 1;
        let containers: Vec<String> = self
            .containers
            .iter()
            .enumerate()
            .filter(|(_, c)| world.is_up(c))
            .filter_map(|(i, c)| {
                let ip = world.ip_of(c)?;
                Some(format!(r#"{{"name":"c{i}","ips":["{ip}"]}}"#))
            })
            .collect();
        let body = format!(
            r#"{{"name":"service","containers":[{}]}}"#,
            containers.join(",")
        );
        self.fault.reply(HttpReply::json(body))
    }

    fn requests(&self) -> u64 {
        self.requests
    }

    fn set_fault(&mut self, fault: ApiFault) {
        self.fault = fault;
    }
}
