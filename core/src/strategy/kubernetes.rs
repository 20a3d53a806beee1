//! The Kubernetes strategy: the pods behind a Service, from the Kubernetes API (libcluster's
//! `Cluster.Strategy.Kubernetes`, with EndpointSlices).
//!
//! With `watch = true` (the default) the strategy lists once, then watches the objects from
//! the list's `resourceVersion` (with `allowWatchBookmarks`), applying each change as it
//! comes: the API server's load is proportional to changes, not to the cluster's size times
//! the poll rate. A watch the server ends is opened again from the last version seen; a `410
//! Gone` or a broken stream lists again; a watch the role may not make (403) falls back to
//! polling, and says so once.
//!
//! Every poll (and every watch) reads the service account's token (so a rotated token is used at once), its
//! `ca.crt` and, unless `kubernetes_namespace` is set, its `namespace`; then makes one
//! request: a list of EndpointSlices (the default), Endpoints or Pods, over TLS verified
//! against `ca.crt`. Without a CA the token is never sent: the poll fails and says why,
//! unless the configuration sets `insecure_skip_tls_verify = true`.
//!
//! Options (libcluster's names and defaults, plus muster's):
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `kubernetes_node_basename` | required | the name part of every node |
//! | `kubernetes_selector` | required, except with `endpointslices` and a service name | label selector of the objects listed |
//! | `kubernetes_service_name` | none | the Service: selects its EndpointSlices (`kubernetes.io/service-name`), and names nodes in `hostname` mode |
//! | `kubernetes_namespace` | the service account's `namespace` file | where to list |
//! | `kubernetes_ip_lookup_mode` | `"endpointslices"` | or `"endpoints"`, `"pods"` |
//! | `mode` | `"ip"` | node hosts: `"ip"`, `"dns"`, `"hostname"` |
//! | `kubernetes_cluster_name` | `"cluster"` | the cluster domain is `<this>.local` unless `CLUSTER_DOMAIN` is set |
//! | `kubernetes_master` | `KUBERNETES_SERVICE_HOST`:`KUBERNETES_SERVICE_PORT`, else `"kubernetes.default.svc"` | the API server, `host[:port]` |
//! | `kubernetes_service_account_path` | `/var/run/secrets/kubernetes.io/serviceaccount` | token, ca.crt, namespace |
//! | `kubernetes_use_cached_resources` | `false` | `resourceVersion=0`: served from the API server's cache |
//! | `kubernetes_field_selector` | none | a field selector, e.g. `status.phase=Running` |
//! | `include_not_ready` | `false` | also addresses and pods that are not ready |
//! | `insecure_skip_tls_verify` | `false` | connect without verifying the API server's certificate |
//! | `watch` | `true` | after the first list, watch for changes (`false`: poll, as libcluster does) |
//! | `watch_timeout` | `300000` | ms a watch lasts before it is opened again (the server's `timeoutSeconds`) |
//! | `polling_interval` | `5000` | ms between polls (and at least between two watches, or a list after a broken watch) |
//! | `request_timeout` | `15000` | ms a request may take |
//! | `max_response_bytes` | `33554432` | the largest response body accepted |

use core::time::Duration;
use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;

use std::collections::BTreeMap;

use super::http_call::{HttpCall, authority, host_port};
use super::http_stream::{HttpStream, StreamEnd};
use super::{Context, Environment, ExchangeId, Periodic, ReadId, Reply, Strategy};
use crate::config::{ConfigError, Options, Value};
use crate::io::{Endpoint, Exchange, Tls};
use crate::proto::http::{self, DEFAULT_MAX_BODY, Response};
use crate::proto::k8s::{self, WatchEvent};

pub use crate::proto::k8s::{LookupMode, NameMode};
use crate::reason::{DiscoveryError, Failure, escape};
use crate::time::Instant;

/// Where the service account's files are unless configured.
pub const DEFAULT_SERVICE_ACCOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The TLS name the API server's certificate carries when it is reached by IP address.
pub const API_SERVER_NAME: &str = "kubernetes.default.svc";

/// Where the API server is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiServer {
    /// Where to connect.
    pub endpoint: Endpoint,
    /// The `Host` header.
    pub authority: String,
    /// The name its certificate must carry.
    pub server_name: String,
}

impl ApiServer {
    fn new(host: &str, port: u16) -> Self {
        match host.parse::<IpAddr>() {
            Ok(ip) => ApiServer {
                endpoint: Endpoint::Addr(SocketAddr::new(ip, port)),
                authority: authority(host, port, 443),
                server_name: API_SERVER_NAME.to_owned(),
            },
            Err(_) => {
                let host = host.trim_end_matches('.');
                ApiServer {
                    endpoint: Endpoint::Host {
                        host: host.to_owned(),
                        port,
                    },
                    authority: authority(host, port, 443),
                    server_name: host.to_owned(),
                }
            }
        }
    }
}

/// The Kubernetes strategy's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KubernetesConfig {
    /// `kubernetes_node_basename`.
    pub basename: String,
    /// `kubernetes_selector`.
    pub selector: Option<String>,
    /// `kubernetes_service_name`.
    pub service_name: Option<String>,
    /// `kubernetes_namespace`; `None` reads the service account's.
    pub namespace: Option<String>,
    /// `kubernetes_ip_lookup_mode`.
    pub lookup: LookupMode,
    /// `mode`.
    pub naming: NameMode,
    /// The cluster domain of node names, without a trailing dot.
    pub cluster_domain: String,
    /// The API server.
    pub api: ApiServer,
    /// `kubernetes_service_account_path`.
    pub service_account_path: String,
    /// `kubernetes_use_cached_resources`.
    pub use_cached_resources: bool,
    /// `kubernetes_field_selector`.
    pub field_selector: Option<String>,
    /// `include_not_ready`.
    pub include_not_ready: bool,
    /// `insecure_skip_tls_verify`.
    pub insecure_skip_tls_verify: bool,
    /// `watch`.
    pub watch: bool,
    /// `watch_timeout`.
    pub watch_timeout: Duration,
    /// `polling_interval`.
    pub polling_interval: Duration,
    /// `request_timeout`.
    pub request_timeout: Duration,
    /// `max_response_bytes`.
    pub max_response_bytes: usize,
}

impl KubernetesConfig {
    /// Reads the options; `env` gives `CLUSTER_DOMAIN`, `KUBERNETES_SERVICE_HOST` and
    /// `KUBERNETES_SERVICE_PORT`.
    pub fn from_options(o: &mut Options<'_>, env: &Environment) -> Result<Self, ConfigError> {
        let basename = o.string("kubernetes_node_basename")?;
        let basename = o.required("kubernetes_node_basename", basename)?.to_owned();
        super::dns_poll::basename(o, "kubernetes_node_basename", &basename)?;
        let non_empty =
            |o: &mut Options<'_>, key: &'static str| -> Result<Option<String>, ConfigError> {
                match o.string(key)? {
                    Some("") => Err(ConfigError::invalid(o.key_path(key), "must not be empty")),
                    v => Ok(v.map(str::to_owned)),
                }
            };
        let selector = non_empty(o, "kubernetes_selector")?;
        let service_name = non_empty(o, "kubernetes_service_name")?;
        let namespace = non_empty(o, "kubernetes_namespace")?;
        let lookup = match o.string("kubernetes_ip_lookup_mode")? {
            None | Some("endpointslices") => LookupMode::EndpointSlices,
            Some("endpoints") => LookupMode::Endpoints,
            Some("pods") => LookupMode::Pods,
            Some(other) => {
                return Err(ConfigError::invalid(
                    o.key_path("kubernetes_ip_lookup_mode"),
                    format!("{other:?} is not one of \"endpointslices\", \"endpoints\", \"pods\""),
                ));
            }
        };
        let naming = match o.string("mode")? {
            None | Some("ip") => NameMode::Ip,
            Some("dns") => NameMode::Dns,
            Some("hostname") => NameMode::Hostname,
            Some(other) => {
                return Err(ConfigError::invalid(
                    o.key_path("mode"),
                    format!("{other:?} is not one of \"ip\", \"dns\", \"hostname\""),
                ));
            }
        };
        if selector.is_none() && !(lookup == LookupMode::EndpointSlices && service_name.is_some()) {
            let why = if lookup == LookupMode::EndpointSlices {
                "missing: set kubernetes_selector, or kubernetes_service_name to list the Service's EndpointSlices"
            } else {
                "missing: the label selector of the objects to list"
            };
            return Err(ConfigError::invalid(o.key_path("kubernetes_selector"), why));
        }
        if naming == NameMode::Hostname && service_name.is_none() {
            return Err(ConfigError::invalid(
                o.key_path("kubernetes_service_name"),
                "missing: mode = \"hostname\" names nodes <hostname>.<service>.<namespace>.svc.<domain>",
            ));
        }
        let cluster_name =
            non_empty(o, "kubernetes_cluster_name")?.unwrap_or_else(|| "cluster".into());
        let cluster_domain = env
            .get("CLUSTER_DOMAIN")
            .map(|d| d.trim_end_matches('.'))
            .filter(|d| !d.is_empty())
            .map(str::to_owned)
            .unwrap_or_else(|| format!("{cluster_name}.local"));
        let api = match o.string("kubernetes_master")? {
            Some(m) => {
                let (host, port) = host_port(m, 443)
                    .filter(|(h, _)| !h.is_empty())
                    .ok_or_else(|| {
                        ConfigError::invalid(
                            o.key_path("kubernetes_master"),
                            format!("{m:?} is not host[:port]"),
                        )
                    })?;
                ApiServer::new(&master_host(&host, &cluster_domain), port)
            }
            None => match env.get("KUBERNETES_SERVICE_HOST").filter(|h| !h.is_empty()) {
                Some(host) => {
                    let port = match env.get("KUBERNETES_SERVICE_PORT") {
                        None | Some("") => 443,
                        Some(p) => p.parse().map_err(|_| {
                            ConfigError::invalid(
                                "KUBERNETES_SERVICE_PORT",
                                format!("{p:?} is not a port"),
                            )
                        })?,
                    };
                    ApiServer::new(host.trim_start_matches('[').trim_end_matches(']'), port)
                }
                None => ApiServer::new(&master_host(API_SERVER_NAME, &cluster_domain), 443),
            },
        };
        let service_account_path = non_empty(o, "kubernetes_service_account_path")?
            .unwrap_or_else(|| DEFAULT_SERVICE_ACCOUNT_PATH.into());
        let max = o
            .u64("max_response_bytes")?
            .unwrap_or(DEFAULT_MAX_BODY as u64);
        if max == 0 {
            return Err(ConfigError::invalid(
                o.key_path("max_response_bytes"),
                "must be greater than zero",
            ));
        }
        Ok(KubernetesConfig {
            basename,
            selector,
            service_name,
            namespace,
            lookup,
            naming,
            cluster_domain,
            api,
            service_account_path: service_account_path.trim_end_matches('/').to_owned(),
            use_cached_resources: o.bool("kubernetes_use_cached_resources")?.unwrap_or(false),
            field_selector: non_empty(o, "kubernetes_field_selector")?,
            include_not_ready: o.bool("include_not_ready")?.unwrap_or(false),
            insecure_skip_tls_verify: o.bool("insecure_skip_tls_verify")?.unwrap_or(false),
            watch: o.bool("watch")?.unwrap_or(true),
            watch_timeout: match o.positive_millis("watch_timeout")? {
                Some(t) if t < Duration::from_secs(1) => {
                    return Err(ConfigError::invalid(
                        o.key_path("watch_timeout"),
                        "must be at least 1000 ms (the server counts it in seconds)",
                    ));
                }
                t => t.unwrap_or(Duration::from_secs(300)),
            },
            polling_interval: o
                .positive_millis("polling_interval")?
                .unwrap_or(Duration::from_millis(5000)),
            request_timeout: o
                .positive_millis("request_timeout")?
                .unwrap_or(Duration::from_millis(15_000)),
            max_response_bytes: usize::try_from(max).unwrap_or(usize::MAX),
        })
    }

    /// The request path and query for `namespace`.
    pub fn path(&self, namespace: &str) -> String {
        let mut q = Vec::new();
        if self.use_cached_resources {
            q.push("resourceVersion=0".to_owned());
        }
        self.path_with(namespace, q)
    }

    /// The path and query of a watch in `namespace` from `resource_version`.
    pub fn watch_path(&self, namespace: &str, resource_version: &str) -> String {
        let q = vec![
            "watch=1".to_owned(),
            format!(
                "resourceVersion={}",
                http::encode_query_value(resource_version)
            ),
            "allowWatchBookmarks=true".to_owned(),
            format!("timeoutSeconds={}", self.watch_timeout.as_secs().max(1)),
        ];
        self.path_with(namespace, q)
    }

    fn path_with(&self, namespace: &str, mut q: Vec<String>) -> String {
        let selector = match (&self.lookup, &self.service_name, &self.selector) {
            (LookupMode::EndpointSlices, Some(svc), _) => {
                Some(format!("kubernetes.io/service-name={svc}"))
            }
            (_, _, s) => s.clone(),
        };
        if let Some(s) = selector {
            q.push(format!("labelSelector={}", http::encode_query_value(&s)));
        }
        if let Some(f) = &self.field_selector {
            q.push(format!("fieldSelector={}", http::encode_query_value(f)));
        }
        let mut path = self.lookup.path(namespace);
        if !q.is_empty() {
            path.push('?');
            path.push_str(&q.join("&"));
        }
        path
    }
}

/// libcluster's rule: a master name ending with the cluster domain or a dot stays as it is;
/// any other gets the cluster domain appended.
fn master_host(host: &str, cluster_domain: &str) -> String {
    if host.parse::<IpAddr>().is_ok() || host.ends_with(cluster_domain) || host.ends_with('.') {
        host.to_owned()
    } else {
        format!("{host}.{cluster_domain}")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum File {
    Token,
    Ca,
    Namespace,
}

/// The Kubernetes strategy; see the module documentation.
#[derive(Debug)]
pub struct Kubernetes {
    config: KubernetesConfig,
    every: Periodic,
    reading: Vec<(ReadId, File)>,
    token: Option<String>,
    token_error: Option<String>,
    ca: Option<Bytes>,
    ca_error: Option<String>,
    namespace: Option<String>,
    namespace_error: Option<String>,
    call: HttpCall,
    /// The watch, while one is open.
    stream: HttpStream,
    /// The objects listed and watched, by `namespace/name` (kept only to watch).
    objects: BTreeMap<String, k8s::Object<'static>>,
    /// Where the next watch starts; `None` lists first.
    version: Option<String>,
    /// The server refused to let us watch: poll.
    watch_refused: bool,
    /// How many addresses could not be named at the last poll (reported when it changes).
    unnamed: super::unnamed::Unnamed,
    name: String,
}

impl Kubernetes {
    /// The strategy for `config`.
    pub fn new(config: KubernetesConfig) -> Self {
        Kubernetes {
            every: Periodic::new(config.polling_interval),
            reading: Vec::new(),
            token: None,
            token_error: None,
            ca: None,
            ca_error: None,
            namespace: config.namespace.clone(),
            namespace_error: None,
            call: HttpCall::default(),
            stream: HttpStream::default(),
            objects: BTreeMap::new(),
            version: None,
            watch_refused: false,
            unnamed: Default::default(),
            name: String::new(),
            config,
        }
    }

    pub(crate) fn build(
        o: &mut Options<'_>,
        env: &Environment,
    ) -> Result<Box<dyn Strategy>, ConfigError> {
        Ok(Box::new(Kubernetes::new(KubernetesConfig::from_options(
            o, env,
        )?)))
    }

    fn file(&self, f: File) -> String {
        let name = match f {
            File::Token => "token",
            File::Ca => "ca.crt",
            File::Namespace => "namespace",
        };
        format!("{}/{name}", self.config.service_account_path)
    }

    fn poll(&mut self, cx: &mut Context<'_>) {
        let mut files = vec![File::Token];
        if !self.config.insecure_skip_tls_verify {
            files.push(File::Ca);
        }
        if self.config.namespace.is_none() {
            files.push(File::Namespace);
        }
        for f in files {
            let read = cx.read_file(self.file(f));
            self.reading.push((read, f));
        }
    }

    fn busy(&self) -> bool {
        !self.reading.is_empty() || self.call.busy() || self.stream.busy()
    }

    /// Whether the next request is a watch.
    fn watching(&self) -> bool {
        self.config.watch && !self.watch_refused && self.version.is_some()
    }

    /// A file arrived (or could not be read): keep what is good, remember why not.
    fn file_read(&mut self, f: File, result: Result<&[u8], &Failure>) {
        let why = match result {
            Ok(d) => {
                match f {
                    File::Token => {
                        self.token = Some(String::from_utf8_lossy(d).trim().to_owned());
                        self.token_error = None;
                    }
                    File::Ca => {
                        self.ca = Some(Bytes::copy_from_slice(d));
                        self.ca_error = None;
                    }
                    File::Namespace => {
                        let ns = String::from_utf8_lossy(d).trim().to_owned();
                        if ns.is_empty() {
                            self.namespace_error = Some(format!("{} is empty", self.file(f)));
                        } else {
                            self.namespace = Some(ns);
                            self.namespace_error = None;
                        }
                    }
                }
                return;
            }
            Err(e) => e.to_string(),
        };
        // A file that could not be read now leaves the last good contents in use.
        match f {
            File::Token => self.token_error = Some(why),
            File::Ca => self.ca_error = Some(why),
            File::Namespace => self.namespace_error = Some(why),
        }
    }

    /// Every file is in: make the request, or say why not.
    fn request(&mut self, now: Instant, cx: &mut Context<'_>) {
        let Some(namespace) = self.namespace.clone() else {
            let why = self.namespace_error.clone().unwrap_or_default();
            return cx.discovery_failed(DiscoveryError::Setup(format!(
                "no namespace to list in: {why}; set kubernetes_namespace"
            )));
        };
        let tls = if self.config.insecure_skip_tls_verify {
            Tls::insecure(self.config.api.server_name.clone())
        } else {
            match &self.ca {
                Some(ca) => Tls::verified(self.config.api.server_name.clone(), ca.clone()),
                None => {
                    let why = self.ca_error.clone().unwrap_or_default();
                    return cx.discovery_failed(DiscoveryError::Setup(format!(
                        "no CA to verify the API server with ({why}): the service account token \
                         is never sent over an unverified connection; set \
                         insecure_skip_tls_verify = true to connect anyway"
                    )));
                }
            }
        };
        let bearer;
        let mut headers = vec![("Accept", "application/json")];
        if let Some(t) = self.token.as_deref().filter(|t| !t.is_empty()) {
            bearer = format!("Bearer {t}");
            headers.push(("Authorization", &bearer));
        }
        if let (true, Some(version)) = (self.watching(), &self.version) {
            let path = self.config.watch_path(&namespace, version);
            let request = http::get(&self.config.api.authority, &path, &headers);
            let x =
                Exchange::tcp(self.config.api.endpoint.clone(), Bytes::from(request), now).tls(tls);
            let c = &self.config;
            // The server ends the watch at timeoutSeconds; a stream still open well after
            // that is stuck, or trickling.
            let lasting = c.watch_timeout + c.request_timeout;
            self.stream
                .start(now, c.request_timeout, lasting, c.max_response_bytes, x, cx);
            return;
        }
        let request = http::get(
            &self.config.api.authority,
            &self.config.path(&namespace),
            &headers,
        );
        let x = Exchange::tcp(self.config.api.endpoint.clone(), Bytes::from(request), now).tls(tls);
        self.call.start(
            now,
            self.config.request_timeout,
            self.config.max_response_bytes,
            x,
            cx,
        );
    }

    fn what(&self) -> String {
        format!(
            "{} from {}",
            self.config.lookup.name(),
            self.config.api.authority
        )
    }

    /// A refusal from the API server, with what it said and what may help.
    fn status_failure(&self, source: String, r: &Response) -> DiscoveryError {
        let message = serde_json::from_slice::<serde_json::Value>(&r.body)
            .ok()
            .and_then(|v| {
                let m = v.get("message").and_then(|m| m.as_str())?;
                Some(escape(m).into_owned())
            })
            .unwrap_or_else(|| r.body_excerpt(200));
        let mut why = format!("{}: {message}", escape(&r.reason));
        if matches!(r.status, 401 | 403) {
            if let Some(e) = &self.token_error {
                why.push_str(&format!(" (the token could not be read: {e})"));
            } else if r.status == 403 {
                why.push_str(" (the service account needs the RBAC permission to list them)");
            }
        }
        DiscoveryError::Status {
            source,
            status: r.status,
            message: why,
        }
    }

    fn response(&mut self, now: Instant, r: Result<Response, Failure>, cx: &mut Context<'_>) {
        let source = format!("listing {}", self.what());
        let r = match r {
            Ok(r) => r,
            Err(e) => return cx.discovery_failed(DiscoveryError::request(source, e)),
        };
        if r.status != 200 {
            return cx.discovery_failed(self.status_failure(source, &r));
        }
        if self.config.watch && !self.watch_refused {
            let list =
                match k8s::parse_list(&r.body, self.config.lookup, self.config.include_not_ready) {
                    Ok(l) => l,
                    Err(e) => {
                        let why = format!("invalid response: {e}");
                        return cx.discovery_failed(DiscoveryError::invalid(source, why));
                    }
                };
            self.objects = list
                .objects
                .into_iter()
                .map(|o| (o.key.clone(), o.into_owned()))
                .collect();
            self.version = list.resource_version.filter(|v| !v.is_empty());
            self.commit_objects(cx);
            // Watch from here at once, with the files just read.
            if self.version.is_some() {
                self.request(now, cx);
            }
            return;
        }
        let parsed = match k8s::parse(&r.body, self.config.lookup, self.config.include_not_ready) {
            Ok(p) => p,
            Err(e) => {
                let why = format!("invalid response: {e}");
                return cx.discovery_failed(DiscoveryError::invalid(source, why));
            }
        };
        self.commit(&parsed, cx);
    }

    /// The watched objects' addresses become the discovered set.
    fn commit_objects(&mut self, cx: &mut Context<'_>) {
        let parsed = k8s::merge(self.objects.values().cloned());
        self.commit(&parsed, cx);
    }

    /// Watch events arrived (`lines`), or the watch ended (`end`).
    fn watched(&mut self, lines: Vec<Vec<u8>>, end: Option<StreamEnd>, cx: &mut Context<'_>) {
        let source = format!("watching {}", self.what());
        let mut changed = false;
        let mut broken = None;
        for line in lines
            .iter()
            .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        {
            match k8s::parse_watch_event(line, self.config.lookup, self.config.include_not_ready) {
                Ok(WatchEvent::Upsert(o)) => {
                    if o.resource_version.is_some() {
                        self.version.clone_from(&o.resource_version);
                    }
                    self.objects.insert(o.key.clone(), o);
                    changed = true;
                }
                Ok(WatchEvent::Deleted {
                    key,
                    resource_version,
                }) => {
                    if resource_version.is_some() {
                        self.version = resource_version;
                    }
                    changed |= self.objects.remove(&key).is_some();
                }
                Ok(WatchEvent::Bookmark { resource_version }) => {
                    if resource_version.is_some() {
                        self.version = resource_version;
                    }
                }
                Ok(WatchEvent::Error { code, message }) => {
                    // 410: the version is too old to resume from. Either way the watch is
                    // over: list again.
                    broken = Some(if code == 410 {
                        None
                    } else {
                        Some(DiscoveryError::Status {
                            source: source.clone(),
                            status: code,
                            message,
                        })
                    });
                    break;
                }
                Err(e) => {
                    let why = format!("invalid watch event: {e}");
                    broken = Some(Some(DiscoveryError::invalid(source.clone(), why)));
                    break;
                }
            }
        }
        if changed {
            self.commit_objects(cx);
        }
        if let Some(why) = broken {
            self.stream.stop(cx);
            self.version = None;
            if let Some(why) = why {
                cx.discovery_failed(why);
            }
            return;
        }
        match end {
            None | Some(StreamEnd::Ended) => {}
            Some(StreamEnd::Status(r)) if matches!(r.status, 403 | 405) => {
                // Listing is allowed (it just worked) but watching is not: poll.
                self.watch_refused = true;
                let mut why = self.status_failure(source.clone(), &r);
                if let DiscoveryError::Status { message, .. } = &mut why {
                    *message = format!(
                        "{message}; polling every {} ms instead (grant the `watch` verb to watch)",
                        self.config.polling_interval.as_millis()
                    );
                }
                cx.discovery_failed(why);
            }
            Some(StreamEnd::Status(r)) => {
                self.version = None;
                if r.status != 410 {
                    cx.discovery_failed(self.status_failure(source.clone(), &r));
                }
            }
            Some(StreamEnd::Broken(f)) => {
                self.version = None;
                cx.discovery_failed(DiscoveryError::request(source, f));
            }
        }
    }

    /// `parsed` becomes the discovered set.
    fn commit(&mut self, parsed: &k8s::Parsed<'_>, cx: &mut Context<'_>) {
        let service = self.config.service_name.as_deref().unwrap_or("");
        let mut host = String::new();
        let mut unnamed: Vec<(String, String)> = Vec::new();
        let mut round = cx.round();
        for t in &parsed.targets {
            if let Err(e) = k8s::write_host(
                &mut host,
                t,
                self.config.naming,
                service,
                &self.config.cluster_domain,
            ) {
                unnamed.push((format!("{:?}", t.address), e.to_string()));
                continue;
            }
            self.name.clear();
            self.name.push_str(&self.config.basename);
            self.name.push('@');
            self.name.push_str(&host);
            if let Err(e) = round.add(&self.name, None) {
                unnamed.push((self.name.clone(), e.to_string()));
            }
        }
        round.commit();
        self.unnamed.report(cx, "the listed addresses", &unnamed);
    }
}

impl Strategy for Kubernetes {
    fn kind(&self) -> &'static str {
        "kubernetes"
    }

    fn handle_timeout(&mut self, now: Instant, cx: &mut Context<'_>) {
        if let Some(r) = self.call.handle_timeout(now, cx) {
            self.response(now, r, cx);
        }
        if let Some(end) = self.stream.handle_timeout(now, cx) {
            self.watched(Vec::new(), Some(end), cx);
        }
        if !self.busy() && self.every.fire(now) {
            self.poll(cx);
        }
    }

    fn handle_file(
        &mut self,
        now: Instant,
        read: ReadId,
        result: Result<&[u8], &Failure>,
        cx: &mut Context<'_>,
    ) {
        if let Some(i) = self.reading.iter().position(|(r, _)| *r == read) {
            let (_, f) = self.reading.swap_remove(i);
            self.file_read(f, result);
            if self.reading.is_empty() {
                self.request(now, cx);
            }
        }
    }

    fn handle_exchange(
        &mut self,
        now: Instant,
        exchange: ExchangeId,
        reply: Reply<'_>,
        cx: &mut Context<'_>,
    ) {
        if let Some(r) = self.call.handle_exchange(exchange, reply, cx) {
            return self.response(now, r, cx);
        }
        let mut lines = Vec::new();
        let end = self
            .stream
            .handle_exchange(exchange, reply, cx, |l| lines.push(l.to_vec()));
        if !lines.is_empty() || end.is_some() {
            self.watched(lines, end, cx);
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let next = if self.busy() { None } else { self.every.next() };
        let call = crate::time::earliest(self.call.poll_timeout(), self.stream.poll_timeout());
        crate::time::earliest(next, call)
    }

    fn describe(&self) -> Vec<(String, Value)> {
        let c = &self.config;
        // Keys starting with '#' are comments: what is derived, or read at run time, is said
        // without becoming a value that would read back differently.
        let mut v = vec![("kubernetes_node_basename".into(), Value::str(&c.basename))];
        if let Some(s) = &c.selector {
            v.push(("kubernetes_selector".into(), Value::str(s)));
        }
        if let Some(s) = &c.service_name {
            v.push(("kubernetes_service_name".into(), Value::str(s)));
        }
        match &c.namespace {
            Some(n) => v.push(("kubernetes_namespace".into(), Value::str(n))),
            None => v.push((
                "#kubernetes_namespace".into(),
                Value::str(format!(
                    "read from {}/namespace at every poll",
                    c.service_account_path
                )),
            )),
        }
        v.extend([
            (
                "kubernetes_ip_lookup_mode".into(),
                Value::str(c.lookup.name()),
            ),
            ("mode".into(), Value::str(c.naming.name())),
            (
                "#cluster domain".into(),
                Value::str(format!(
                    "{} (kubernetes_cluster_name, or CLUSTER_DOMAIN)",
                    c.cluster_domain
                )),
            ),
            ("kubernetes_master".into(), Value::str(&c.api.authority)),
            (
                "#TLS server name".into(),
                Value::str(format!("{} (from kubernetes_master)", c.api.server_name)),
            ),
            (
                "kubernetes_service_account_path".into(),
                Value::str(&c.service_account_path),
            ),
            (
                "kubernetes_use_cached_resources".into(),
                Value::Bool(c.use_cached_resources),
            ),
            ("include_not_ready".into(), Value::Bool(c.include_not_ready)),
            (
                "insecure_skip_tls_verify".into(),
                Value::Bool(c.insecure_skip_tls_verify),
            ),
            ("watch".into(), Value::Bool(c.watch)),
            ("watch_timeout".into(), Value::millis(c.watch_timeout)),
            ("polling_interval".into(), Value::millis(c.polling_interval)),
            ("request_timeout".into(), Value::millis(c.request_timeout)),
            (
                "max_response_bytes".into(),
                Value::Int(c.max_response_bytes as i64),
            ),
        ]);
        if let Some(f) = &c.field_selector {
            v.push(("kubernetes_field_selector".into(), Value::str(f)));
        }
        v
    }
}
