//! What the `ec2` and `ecs` strategies share: the options every AWS strategy takes, where
//! the credentials and the region come from, the instance metadata service (IMDSv2) and the
//! container credentials endpoint, signing, and the poll schedule with its backoff.
//!
//! Credentials, in this order (the AWS SDKs' order, without the shared files and web
//! identity):
//!
//! 1. `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (with `AWS_SESSION_TOKEN`), from the
//!    environment the strategy was built in;
//! 2. the container credentials endpoint: `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` (a path
//!    on `169.254.170.2`, ECS task roles) or `AWS_CONTAINER_CREDENTIALS_FULL_URI` (EKS Pod
//!    Identity), with the `Authorization` header from `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`
//!    (read at every fetch, so a rotated token is used) or `AWS_CONTAINER_AUTHORIZATION_TOKEN`;
//! 3. the instance's role through IMDSv2 (a session token `PUT`, the role's name, then its
//!    credentials), unless `AWS_EC2_METADATA_DISABLED=true`. `AWS_EC2_METADATA_SERVICE_ENDPOINT`
//!    moves the service (`http://[fd00:ec2::254]` on IPv6-only subnets).
//!
//! Temporary credentials are fetched again five minutes before they expire, and at once when
//! AWS refuses them. The region is the `region` option, else `AWS_REGION`, else
//! `AWS_DEFAULT_REGION`, else IMDS's `placement/region`.
//!
//! Every request needs the wall clock (SigV4 dates it); without one
//! ([`Context::unix_time`]) the poll fails and says so. HTTPS is verified against `ca_file`
//! when set, else against the host's CA bundle ([`Trust::System`](crate::Trust::System)).

use core::fmt::Write as _;
use core::time::Duration;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::Bytes;

use super::http_call::HttpCall;
use super::secret::Secret;
use super::{Context, Environment, ExchangeId, ReadId, Reply};
use crate::config::{ConfigError, Options, Problem, Value};
use crate::io::{Endpoint, Exchange, Tls};
use crate::proto::aws_credentials;
use crate::proto::ec2 as ec2p;
use crate::proto::ec2::ApiError;
use crate::proto::http::{self, DEFAULT_MAX_BODY, Response};
use crate::proto::sigv4::Credentials;
use crate::reason::{DiscoveryError, Failure, FailureKind, escape};
use crate::time::Instant;

/// The default `polling_interval`.
pub(crate) const DEFAULT_POLLING_INTERVAL: Duration = Duration::from_millis(5000);
/// The default `request_timeout`.
pub(crate) const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_millis(10_000);
/// How long an IMDS request may take. In a container on an instance whose metadata hop
/// limit is 1, the token `PUT` never answers: this bounds the wait.
pub(crate) const IMDS_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest wait between polls while AWS throttles.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(120);
/// Temporary credentials are fetched again this long before they expire.
const REFRESH_BEFORE_SECS: u64 = 300;
/// Temporary credentials whose document gives no expiry are fetched again after this long.
const UNDATED_CREDENTIALS_TTL: Duration = Duration::from_secs(900);
/// An IMDS session token is used for this long (and asked for with this lifetime plus a
/// minute).
const IMDS_TOKEN_USE: Duration = Duration::from_secs(21_600 - 60);
/// The most metadata and credential requests one poll makes before it gives up: a service
/// that keeps answering in a way that asks for one more cannot keep a poll going forever.
const MAX_SETUP_REQUESTS: u32 = 8;

/// An `http://` or `https://` URL taken apart: where to connect and what to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Url {
    /// Where to connect.
    pub(crate) endpoint: Endpoint,
    /// The `Host` header (`host`, or `host:port` for a port that is not the scheme's).
    pub(crate) host: String,
    /// The host alone, without brackets: the TLS server name.
    pub(crate) server_name: String,
    /// Whether the scheme is `https`.
    pub(crate) tls: bool,
    /// The path and query.
    pub(crate) path: String,
}

impl Url {
    /// `http://host[:port][/path]` or `https://...`; `None` for anything else.
    pub(crate) fn parse(url: &str) -> Option<Url> {
        let u = aws_credentials::split_full_uri(url)?;
        let endpoint = match u.host.parse::<IpAddr>() {
            Ok(ip) => Endpoint::Addr(SocketAddr::new(ip, u.port)),
            Err(_) => Endpoint::Host {
                host: u.host.clone(),
                port: u.port,
            },
        };
        Some(Url {
            endpoint,
            host: u.host_header,
            server_name: u.host,
            tls: u.tls,
            path: u.path,
        })
    }

    /// `https://host/`.
    fn https(host: String) -> Url {
        Url {
            endpoint: Endpoint::Host {
                host: host.clone(),
                port: 443,
            },
            server_name: host.clone(),
            host,
            tls: true,
            path: "/".into(),
        }
    }

    /// The URL of `path` on this service, for messages.
    pub(crate) fn text(&self, path: &str) -> String {
        format!(
            "{}://{}{path}",
            if self.tls { "https" } else { "http" },
            self.host
        )
    }
}

/// How the container credentials endpoint is authorised.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Auth {
    /// `AWS_CONTAINER_AUTHORIZATION_TOKEN`.
    Token(String),
    /// `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`, read at every fetch.
    File(String),
}

/// Where the credentials come from.
#[derive(Clone, PartialEq, Eq)]
enum Source {
    /// The environment's access key.
    Env(Credentials),
    /// A container credentials endpoint.
    Container { url: Url, auth: Option<Auth> },
    /// The instance's role, through IMDS.
    Imds,
}

impl core::fmt::Debug for Source {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Source::Env(c) => write!(f, "Env({c:?})"),
            Source::Container { url, auth } => {
                let auth = match auth {
                    None => "none",
                    Some(Auth::Token(_)) => "token <redacted>",
                    Some(Auth::File(_)) => "token file",
                };
                write!(f, "Container({}, {auth})", url.text(&url.path))
            }
            Source::Imds => f.write_str("Imds"),
        }
    }
}

/// The options every AWS strategy takes, and what the environment says about credentials,
/// region and IMDS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AwsSetup {
    /// `"ec2"` or `"ecs"`: the signing name and the endpoint's first label.
    service: &'static str,
    /// `region`, or the environment's.
    region: Option<String>,
    /// Where the region came from, for `muster check`.
    region_from: &'static str,
    /// `endpoint_url`, parsed.
    endpoint: Option<Url>,
    /// `endpoint_url` as written.
    endpoint_url: Option<String>,
    /// `ca_file`.
    ca_file: Option<String>,
    /// `polling_interval`.
    pub(crate) polling_interval: Duration,
    /// `request_timeout`.
    pub(crate) request_timeout: Duration,
    source: Source,
    /// IMDS, unless disabled.
    imds: Option<Url>,
}

fn valid_region(r: &str) -> bool {
    !r.is_empty()
        && r.len() <= 32
        && r.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn non_empty_env<'e>(env: &'e Environment, name: &str) -> Option<&'e str> {
    env.get(name).map(str::trim).filter(|v| !v.is_empty())
}

/// A plain-HTTP credentials endpoint must be one the SDKs accept: loopback, or the ECS and
/// EKS link-local addresses.
fn allowed_plain_host(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match host.parse::<IpAddr>() {
        Ok(ip) => {
            ip.is_loopback()
                || ip == IpAddr::V4(Ipv4Addr::new(169, 254, 170, 2))
                || ip == IpAddr::V4(Ipv4Addr::new(169, 254, 170, 23))
                || ip == IpAddr::V6(Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x23))
        }
        Err(_) => false,
    }
}

impl AwsSetup {
    /// Reads `region`, `endpoint_url`, `ca_file`, `polling_interval` and `request_timeout`,
    /// and the credential and region variables of `env`.
    pub(crate) fn from_options(
        o: &mut Options<'_>,
        env: &Environment,
        service: &'static str,
    ) -> Result<Self, ConfigError> {
        let imds_disabled = non_empty_env(env, "AWS_EC2_METADATA_DISABLED")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let imds = if imds_disabled {
            None
        } else {
            let url = non_empty_env(env, "AWS_EC2_METADATA_SERVICE_ENDPOINT")
                .unwrap_or("http://169.254.169.254");
            let u = Url::parse(url).filter(|u| !u.tls).ok_or_else(|| {
                ConfigError::invalid(
                    "AWS_EC2_METADATA_SERVICE_ENDPOINT",
                    format!("{url:?} is not an http://host[:port] URL"),
                )
            })?;
            Some(u)
        };

        let (region, region_from) = match o.string("region")? {
            Some(r) if !valid_region(r) => {
                return Err(ConfigError::invalid(
                    o.key_path("region"),
                    format!("{r:?} is not an AWS region (like \"eu-west-1\")"),
                ));
            }
            Some(r) => (Some(r.to_owned()), "region"),
            None => {
                let from_env = ["AWS_REGION", "AWS_DEFAULT_REGION"]
                    .into_iter()
                    .find_map(|name| non_empty_env(env, name).map(|v| (name, v)));
                match from_env {
                    Some((name, r)) if !valid_region(r) => {
                        return Err(ConfigError::invalid(
                            name,
                            format!("{r:?} is not an AWS region (like \"eu-west-1\")"),
                        ));
                    }
                    Some((name, r)) => (Some(r.to_owned()), name),
                    None if imds.is_none() => {
                        return Err(ConfigError::invalid(
                            o.key_path("region"),
                            "missing: set region, or AWS_REGION (the instance metadata service, \
                             which would say, is disabled)",
                        ));
                    }
                    None => (None, "IMDS"),
                }
            }
        };

        let endpoint_url = o.string("endpoint_url")?.map(str::to_owned);
        let endpoint = match &endpoint_url {
            None => None,
            Some(url) => {
                let u = Url::parse(url).filter(|u| u.path == "/").ok_or_else(|| {
                    ConfigError::invalid(
                        o.key_path("endpoint_url"),
                        format!("{url:?} is not an http(s)://host[:port] URL"),
                    )
                })?;
                Some(u)
            }
        };
        let ca_file = match o.string("ca_file")? {
            Some("") => {
                return Err(ConfigError::invalid(
                    o.key_path("ca_file"),
                    "must not be empty",
                ));
            }
            v => v.map(str::to_owned),
        };

        let source = match (
            non_empty_env(env, "AWS_ACCESS_KEY_ID"),
            non_empty_env(env, "AWS_SECRET_ACCESS_KEY"),
        ) {
            (Some(id), Some(secret)) => Source::Env(Credentials {
                access_key_id: id.to_owned(),
                secret_access_key: secret.to_owned(),
                session_token: non_empty_env(env, "AWS_SESSION_TOKEN").map(str::to_owned),
            }),
            (Some(_), None) => {
                return Err(ConfigError::invalid(
                    "AWS_SECRET_ACCESS_KEY",
                    "missing: AWS_ACCESS_KEY_ID is set without it",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::invalid(
                    "AWS_ACCESS_KEY_ID",
                    "missing: AWS_SECRET_ACCESS_KEY is set without it",
                ));
            }
            (None, None) => container_source(env)?.unwrap_or(Source::Imds),
        };
        if source == Source::Imds && imds.is_none() {
            return Err(ConfigError::invalid(
                "AWS_EC2_METADATA_DISABLED",
                "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, run with a \
                 container credentials endpoint, or enable the instance metadata service",
            ));
        }
        let polling_interval = o
            .positive_millis("polling_interval")?
            .unwrap_or(DEFAULT_POLLING_INTERVAL);
        let request_timeout = o
            .positive_millis("request_timeout")?
            .unwrap_or(DEFAULT_REQUEST_TIMEOUT);
        Ok(AwsSetup {
            service,
            region,
            region_from,
            endpoint,
            endpoint_url,
            ca_file,
            polling_interval,
            request_timeout,
            source,
            imds,
        })
    }

    /// The API's URL in `region`.
    fn api(&self, region: &str) -> Url {
        match &self.endpoint {
            Some(u) => u.clone(),
            None => Url::https(match self.service {
                "ecs" => crate::proto::ecs::endpoint_host(region),
                _ => ec2p::endpoint_host(region),
            }),
        }
    }

    /// What `muster check` shows.
    pub(crate) fn describe(&self, v: &mut Vec<(String, Value)>) {
        match (&self.region, self.region_from) {
            (Some(r), "region") => v.push(("region".into(), Value::str(r))),
            (Some(r), from) => v.push(("#region".into(), Value::str(format!("{r} (from {from})")))),
            (None, _) => v.push((
                "#region".into(),
                Value::str("read from the instance metadata service (placement/region)"),
            )),
        }
        match &self.endpoint_url {
            Some(u) => v.push(("endpoint_url".into(), Value::str(u))),
            None => v.push((
                "#endpoint".into(),
                Value::str(match &self.region {
                    Some(r) => self.api(r).text("/"),
                    None => format!("https://{}.<region>.amazonaws.com/", self.service),
                }),
            )),
        }
        if let Some(ca) = &self.ca_file {
            v.push(("ca_file".into(), Value::str(ca)));
        }
        v.push((
            "polling_interval".into(),
            Value::millis(self.polling_interval),
        ));
        v.push((
            "request_timeout".into(),
            Value::millis(self.request_timeout),
        ));
        let credentials = match &self.source {
            Source::Env(c) => format!(
                "from the environment (AWS_ACCESS_KEY_ID {})",
                c.access_key_id
            ),
            Source::Container { url, .. } => {
                format!("from the container endpoint {}", url.text(&url.path))
            }
            Source::Imds => format!(
                "the instance's role, from the instance metadata service {}",
                self.imds.as_ref().map(|u| u.text("/")).unwrap_or_default()
            ),
        };
        v.push(("#credentials".into(), Value::str(credentials)));
    }
}

/// The container credentials endpoint the environment names, if any.
fn container_source(env: &Environment) -> Result<Option<Source>, ConfigError> {
    let url = if let Some(rel) = non_empty_env(env, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") {
        let path = if rel.starts_with('/') {
            rel.to_owned()
        } else {
            format!("/{rel}")
        };
        if path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(ConfigError::invalid(
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                format!("{rel:?} is not a path"),
            ));
        }
        let mut u = Url::parse(&format!(
            "http://{}",
            aws_credentials::CONTAINER_CREDENTIALS_HOST
        ))
        .ok_or_else(|| {
            ConfigError::invalid("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "bad host")
        })?;
        u.path = path;
        u
    } else if let Some(full) = non_empty_env(env, "AWS_CONTAINER_CREDENTIALS_FULL_URI") {
        let u = Url::parse(full)
            .filter(|u| !u.path.bytes().any(|b| b.is_ascii_control() || b == b' '))
            .ok_or_else(|| {
                ConfigError::invalid(
                    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                    format!("{full:?} is not an http(s):// URL"),
                )
            })?;
        if !u.tls && !allowed_plain_host(&u.server_name) {
            return Err(ConfigError::invalid(
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                format!(
                    "{full:?}: plain http is accepted only for loopback, 169.254.170.2, \
                     169.254.170.23 and fd00:ec2::23"
                ),
            ));
        }
        u
    } else {
        return Ok(None);
    };
    let auth = if let Some(f) = non_empty_env(env, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE") {
        Some(Auth::File(f.to_owned()))
    } else {
        match non_empty_env(env, "AWS_CONTAINER_AUTHORIZATION_TOKEN") {
            Some(t) if t.bytes().any(|b| b.is_ascii_control()) => {
                return Err(ConfigError::invalid(
                    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
                    "holds a control character",
                ));
            }
            Some(t) => Some(Auth::Token(t.to_owned())),
            None => None,
        }
    };
    Ok(Some(Source::Container { url, auth }))
}

/// A string option that may also be a list of strings.
pub(crate) fn string_or_list(
    o: &mut Options<'_>,
    key: &'static str,
) -> Result<Option<Vec<String>>, ConfigError> {
    match o.get(key) {
        None => Ok(None),
        Some(Value::Str(s)) => Ok(Some(vec![s.clone()])),
        Some(Value::List(_)) => Ok(o
            .strings(key)?
            .map(|v| v.into_iter().map(|(_, s)| s.to_owned()).collect())),
        Some(v) => Err(ConfigError::new(
            o.key_path(key),
            Problem::WrongType {
                expected: "a string or a list of strings",
                found: v.type_name(),
            },
        )),
    }
}

/// `app_prefix`: the name part of every node, `app` unless set.
pub(crate) fn app_prefix(o: &mut Options<'_>) -> Result<String, ConfigError> {
    let prefix = match o.string("app_prefix")? {
        Some("") => {
            return Err(ConfigError::invalid(
                o.key_path("app_prefix"),
                "must not be empty",
            ));
        }
        Some(p) => p.to_owned(),
        None => "app".to_owned(),
    };
    super::dns_poll::basename(o, "app_prefix", &prefix)?;
    Ok(prefix)
}

/// What an IMDS `GET` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Metadata {
    Region,
    Role,
    Credentials,
    InstanceId,
}

/// The request in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    ImdsToken,
    Imds(Metadata),
    Container,
    /// The strategy's own API call.
    Api,
}

/// A file being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum File {
    Ca,
    AuthToken,
}

/// Credentials in use.
#[derive(Debug, Clone)]
struct Held {
    credentials: Credentials,
    /// Unix seconds.
    expires_at: Option<u64>,
    fetched: Instant,
    temporary: bool,
}

/// Whether the session is ready for the strategy's API call.
#[derive(Debug)]
pub(crate) enum Prep {
    /// Region and credentials are at hand: [`Session::send`] may go.
    Ready,
    /// A request or a read is in flight; its outcome comes back as [`Outcome::Setup`].
    Busy,
    /// The poll cannot go on.
    Failed(DiscoveryError),
}

/// What came back.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// A metadata or credentials request ended: on success the strategy calls
    /// [`Session::prepare`] again.
    Setup(Result<(), DiscoveryError>),
    /// The strategy's API call ended.
    Api(Result<Response, Failure>),
}

/// The credentials, region and metadata of one AWS strategy, and its one request in flight.
#[derive(Debug)]
pub(crate) struct Session {
    setup: AwsSetup,
    call: HttpCall,
    step: Option<Step>,
    reading: Option<(ReadId, File)>,
    ca: Option<Bytes>,
    region: Option<String>,
    creds: Option<Held>,
    imds_token: Option<(Secret<String>, Instant)>,
    role: Option<String>,
    instance_id: Option<String>,
    auth_token: Option<Secret<String>>,
    setup_requests: u32,
    fetched_this_poll: bool,
    auth_read_this_poll: bool,
}

impl Session {
    pub(crate) fn new(setup: AwsSetup) -> Self {
        Session {
            region: setup.region.clone(),
            setup,
            call: HttpCall::default(),
            step: None,
            reading: None,
            ca: None,
            creds: None,
            imds_token: None,
            role: None,
            instance_id: None,
            auth_token: None,
            setup_requests: 0,
            fetched_this_poll: false,
            auth_read_this_poll: false,
        }
    }

    /// The options.
    pub(crate) fn setup(&self) -> &AwsSetup {
        &self.setup
    }

    /// Whether a request or a read is in flight.
    pub(crate) fn busy(&self) -> bool {
        self.call.busy() || self.reading.is_some()
    }

    /// A new poll starts: what limits one poll starts again.
    pub(crate) fn begin_poll(&mut self) {
        self.setup_requests = 0;
        self.fetched_this_poll = false;
        self.auth_read_this_poll = false;
    }

    /// This instance's ID, once [`prepare`](Session::prepare) got it.
    pub(crate) fn instance_id(&self) -> Option<&str> {
        self.instance_id.as_deref()
    }

    /// The API's URL, for messages (the region is known once a poll got past
    /// [`prepare`](Session::prepare)).
    pub(crate) fn api_text(&self) -> String {
        match &self.region {
            Some(r) => self.setup.api(r).text("/"),
            None => match &self.setup.endpoint {
                Some(u) => u.text("/"),
                None => format!("https://{}.<region>.amazonaws.com/", self.setup.service),
            },
        }
    }

    /// Gets what the API call needs — the CA, the region, fresh credentials and, with
    /// `instance_id`, this instance's ID — one request at a time.
    pub(crate) fn prepare(
        &mut self,
        now: Instant,
        cx: &mut Context<'_>,
        instance_id: bool,
    ) -> Prep {
        if self.busy() {
            return Prep::Busy;
        }
        if let (Some(path), None) = (&self.setup.ca_file, &self.ca) {
            let read = cx.read_file(path.clone());
            self.reading = Some((read, File::Ca));
            return Prep::Busy;
        }
        let Some(unix) = cx.unix_time() else {
            return Prep::Failed(DiscoveryError::Setup(
                "no wall clock: AWS requests are signed with the time, and the adapter did not \
                 give the core one (Cluster::set_unix_time)"
                    .into(),
            ));
        };
        if self.setup_requests >= MAX_SETUP_REQUESTS {
            return Prep::Failed(DiscoveryError::Other(format!(
                "{MAX_SETUP_REQUESTS} metadata and credential requests in one poll, and still \
                 not ready"
            )));
        }
        if self.region.is_none() {
            return self.imds(now, cx, Metadata::Region);
        }
        if self.needs_credentials(now, unix) {
            match self.setup.source.clone() {
                Source::Env(c) => {
                    self.creds = Some(Held {
                        credentials: c,
                        expires_at: None,
                        fetched: now,
                        temporary: false,
                    });
                }
                Source::Container { url, auth } => {
                    if let (Some(Auth::File(path)), false) = (&auth, self.auth_read_this_poll) {
                        let read = cx.read_file(path.clone());
                        self.reading = Some((read, File::AuthToken));
                        return Prep::Busy;
                    }
                    let token = match &auth {
                        Some(Auth::Token(t)) => Some(t.as_str()),
                        Some(Auth::File(_)) => self.auth_token.as_ref().map(|t| t.0.as_str()),
                        None => None,
                    };
                    let request =
                        aws_credentials::container_credentials_request(&url.host, &url.path, token);
                    let x = self.exchange(&url, request, now);
                    let timeout = self.setup.request_timeout;
                    return self.start(
                        now,
                        Step::Container,
                        timeout,
                        aws_credentials::MAX_BODY,
                        x,
                        cx,
                    );
                }
                Source::Imds if self.role.is_none() => {
                    return self.imds(now, cx, Metadata::Role);
                }
                Source::Imds => return self.imds(now, cx, Metadata::Credentials),
            }
        }
        if instance_id && self.instance_id.is_none() {
            return self.imds(now, cx, Metadata::InstanceId);
        }
        Prep::Ready
    }

    fn needs_credentials(&self, now: Instant, unix: Duration) -> bool {
        let Some(h) = &self.creds else {
            return true;
        };
        if self.fetched_this_poll || !h.temporary {
            return false;
        }
        match h.expires_at {
            Some(t) => unix.as_secs().saturating_add(REFRESH_BEFORE_SECS) >= t,
            None => now >= h.fetched + UNDATED_CREDENTIALS_TTL,
        }
    }

    fn exchange(
        &self,
        url: &Url,
        request: Vec<u8>,
        now: Instant,
    ) -> Result<Exchange, DiscoveryError> {
        let x = Exchange::tcp(url.endpoint.clone(), Bytes::from(request), now);
        if !url.tls {
            return Ok(x);
        }
        Ok(match &self.ca {
            Some(ca) => x.tls(Tls::verified(url.server_name.clone(), ca.clone())),
            // No CA file: the host's bundle, as every AWS SDK does.
            None => x.tls(Tls::system(url.server_name.clone())),
        })
    }

    fn start(
        &mut self,
        now: Instant,
        step: Step,
        timeout: Duration,
        max_body: usize,
        x: Result<Exchange, DiscoveryError>,
        cx: &mut Context<'_>,
    ) -> Prep {
        match x {
            Ok(x) => {
                if step != Step::Api {
                    self.setup_requests += 1;
                }
                self.step = Some(step);
                self.call.start(now, timeout, max_body, x, cx);
                Prep::Busy
            }
            Err(e) => Prep::Failed(e),
        }
    }

    /// An IMDS request for `what`, after a session token if there is none.
    fn imds(&mut self, now: Instant, cx: &mut Context<'_>, what: Metadata) -> Prep {
        let Some(imds) = self.setup.imds.clone() else {
            let need = match what {
                Metadata::Region => "the region: set region or AWS_REGION",
                Metadata::InstanceId => "this instance's ID: set ec2_tagvalue",
                _ => "credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
            };
            return Prep::Failed(DiscoveryError::Setup(format!(
                "the instance metadata service is disabled (AWS_EC2_METADATA_DISABLED), and it \
                 would give {need}"
            )));
        };
        let request = match &self.imds_token {
            Some((token, until)) if *until > now => {
                let path = match what {
                    Metadata::Region => ec2p::IMDS_REGION_PATH.to_owned(),
                    Metadata::Role => ec2p::IMDS_CREDENTIALS_PATH.to_owned(),
                    Metadata::InstanceId => ec2p::IMDS_INSTANCE_ID_PATH.to_owned(),
                    Metadata::Credentials => {
                        match self.role.as_deref().and_then(ec2p::imds_credentials_path) {
                            Some(p) => p,
                            None => return self.imds(now, cx, Metadata::Role),
                        }
                    }
                };
                let request =
                    http::get(&imds.host, &path, &[("X-aws-ec2-metadata-token", &token.0)]);
                (Step::Imds(what), request)
            }
            _ => {
                let ttl = (IMDS_TOKEN_USE.as_secs() + 60).to_string();
                let request = http::request(
                    "PUT",
                    &imds.host,
                    ec2p::IMDS_TOKEN_PATH,
                    &[("X-aws-ec2-metadata-token-ttl-seconds", &ttl)],
                    b"",
                );
                (Step::ImdsToken, request)
            }
        };
        let (step, request) = request;
        let x = self.exchange(&imds, request, now);
        self.start(now, step, IMDS_TIMEOUT, aws_credentials::MAX_BODY, x, cx)
    }

    /// Sends the strategy's API call, built by `build(host, credentials, region, amz_date)`.
    /// Call it once [`prepare`](Session::prepare) said [`Prep::Ready`].
    pub(crate) fn send(
        &mut self,
        now: Instant,
        cx: &mut Context<'_>,
        build: impl FnOnce(&str, &Credentials, &str, &str) -> Vec<u8>,
    ) -> Result<(), DiscoveryError> {
        let (Some(region), Some(held)) = (&self.region, &self.creds) else {
            return Err(DiscoveryError::Other(
                "an AWS request before the credentials and the region".into(),
            ));
        };
        let Some(unix) = cx.unix_time() else {
            return Err(DiscoveryError::Setup("no wall clock".into()));
        };
        let url = self.setup.api(region);
        let date = crate::proto::sigv4::amz_date(unix);
        let request = build(&url.host, &held.credentials, region, &date);
        let x = self.exchange(&url, request, now);
        match self.start(
            now,
            Step::Api,
            self.setup.request_timeout,
            DEFAULT_MAX_BODY,
            x,
            cx,
        ) {
            Prep::Failed(e) => Err(e),
            _ => Ok(()),
        }
    }

    /// What came back on an exchange, if it is this session's and complete.
    pub(crate) fn handle_exchange(
        &mut self,
        exchange: ExchangeId,
        reply: Reply<'_>,
        cx: &mut Context<'_>,
    ) -> Option<Outcome> {
        let r = self.call.handle_exchange(exchange, reply, cx)?;
        Some(self.ended(r, cx))
    }

    /// Gives up on a request past its deadline.
    pub(crate) fn handle_timeout(&mut self, now: Instant, cx: &mut Context<'_>) -> Option<Outcome> {
        let r = self.call.handle_timeout(now, cx)?;
        Some(self.ended(r, cx))
    }

    /// The deadline of the request in flight.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.call.poll_timeout()
    }

    /// A file read ended.
    pub(crate) fn handle_file(
        &mut self,
        read: ReadId,
        result: Result<&[u8], &Failure>,
    ) -> Option<Outcome> {
        let (r, file) = self.reading?;
        if r != read {
            return None;
        }
        self.reading = None;
        let path = match file {
            File::Ca => self.setup.ca_file.clone().unwrap_or_default(),
            File::AuthToken => match &self.setup.source {
                Source::Container {
                    auth: Some(Auth::File(p)),
                    ..
                } => p.clone(),
                _ => String::new(),
            },
        };
        let bytes = match result {
            Ok(b) => b,
            Err(f) => {
                let what = match file {
                    File::Ca => format!("reading ca_file {path}"),
                    File::AuthToken => {
                        format!("reading AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE {path}")
                    }
                };
                return Some(Outcome::Setup(Err(DiscoveryError::request(
                    what,
                    f.clone(),
                ))));
            }
        };
        Some(Outcome::Setup(match file {
            File::Ca => {
                self.ca = Some(Bytes::copy_from_slice(bytes));
                Ok(())
            }
            File::AuthToken => {
                let token = core::str::from_utf8(bytes)
                    .ok()
                    .map(str::trim)
                    .filter(|t| !t.is_empty() && !t.bytes().any(|b| b.is_ascii_control()));
                match token {
                    Some(t) => {
                        self.auth_token = Some(Secret(t.to_owned()));
                        self.auth_read_this_poll = true;
                        Ok(())
                    }
                    None => Err(DiscoveryError::invalid(
                        format!("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE {path}"),
                        "not a token: empty, not UTF-8, or several lines",
                    )),
                }
            }
        }))
    }

    fn ended(&mut self, r: Result<Response, Failure>, cx: &mut Context<'_>) -> Outcome {
        match self.step.take() {
            None | Some(Step::Api) => Outcome::Api(r),
            Some(step) => Outcome::Setup(self.setup_answer(step, r, cx)),
        }
    }

    fn step_source(&self, step: Step) -> String {
        let imds = |path: &str| match &self.setup.imds {
            Some(u) => u.text(path),
            None => path.to_owned(),
        };
        match step {
            Step::ImdsToken => format!("IMDSv2 token (PUT {})", imds(ec2p::IMDS_TOKEN_PATH)),
            Step::Imds(Metadata::Region) => format!("region from {}", imds(ec2p::IMDS_REGION_PATH)),
            Step::Imds(Metadata::Role) => {
                format!("instance role from {}", imds(ec2p::IMDS_CREDENTIALS_PATH))
            }
            Step::Imds(Metadata::Credentials) => format!(
                "role credentials from {}",
                imds(&format!(
                    "{}{}",
                    ec2p::IMDS_CREDENTIALS_PATH,
                    self.role.as_deref().unwrap_or("")
                ))
            ),
            Step::Imds(Metadata::InstanceId) => {
                format!("instance ID from {}", imds(ec2p::IMDS_INSTANCE_ID_PATH))
            }
            Step::Container => match &self.setup.source {
                Source::Container { url, .. } => {
                    format!("credentials from {}", url.text(&url.path))
                }
                _ => "container credentials".into(),
            },
            Step::Api => self.api_text(),
        }
    }

    fn setup_answer(
        &mut self,
        step: Step,
        r: Result<Response, Failure>,
        cx: &mut Context<'_>,
    ) -> Result<(), DiscoveryError> {
        let now = cx.now();
        let source = self.step_source(step);
        let r = match r {
            Ok(r) => r,
            Err(f) => {
                let f = if step == Step::ImdsToken && f.kind() == FailureKind::TimedOut {
                    Failure::new(
                        f.kind(),
                        format!(
                            "{f} (in a container, the instance's metadata hop limit must be 2: \
                             see docs/aws.md)"
                        ),
                    )
                } else {
                    f
                };
                return Err(DiscoveryError::request(source, f));
            }
        };
        if r.status != 200 {
            let mut message = format!("{}: {}", escape(&r.reason), r.body_excerpt(200));
            match (step, r.status) {
                (Step::Imds(_), 401) => {
                    self.imds_token = None;
                    message.push_str(" (the IMDSv2 token was refused; a new one is asked for)");
                }
                (Step::Imds(Metadata::Role), 404) => {
                    message.push_str(" (no instance profile is attached to this instance)");
                }
                (Step::Imds(Metadata::Credentials), 404) => self.role = None,
                (Step::ImdsToken, 403) => {
                    message.push_str(" (IMDS is turned off for this instance)");
                }
                _ => {}
            }
            return Err(DiscoveryError::Status {
                source,
                status: r.status,
                message,
            });
        }
        let text = || ec2p::parse_imds_text(&r.body).map(str::to_owned);
        match step {
            Step::ImdsToken => {
                let token =
                    text().ok_or_else(|| DiscoveryError::invalid(&source, "not a token"))?;
                self.imds_token = Some((Secret(token), now + IMDS_TOKEN_USE));
            }
            Step::Imds(Metadata::Region) => {
                let region = text().filter(|r| valid_region(r)).ok_or_else(|| {
                    DiscoveryError::invalid(
                        &source,
                        format!("not a region: {}", r.body_excerpt(60)),
                    )
                })?;
                self.region = Some(region);
            }
            Step::Imds(Metadata::Role) => {
                let role = text()
                    .filter(|r| ec2p::imds_credentials_path(r).is_some())
                    .ok_or_else(|| {
                        DiscoveryError::invalid(
                            &source,
                            format!("not a role name: {}", r.body_excerpt(60)),
                        )
                    })?;
                self.role = Some(role);
            }
            Step::Imds(Metadata::InstanceId) => {
                let id = text()
                    .filter(|i| {
                        i.len() <= 64 && i.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    })
                    .ok_or_else(|| {
                        DiscoveryError::invalid(
                            &source,
                            format!("not an instance ID: {}", r.body_excerpt(60)),
                        )
                    })?;
                self.instance_id = Some(id);
            }
            Step::Imds(Metadata::Credentials) | Step::Container => {
                let t = aws_credentials::parse(&r.body)
                    .map_err(|e| DiscoveryError::invalid(&source, e))?;
                if let (Some(exp), Some(unix)) = (t.expires_at, cx.unix_time())
                    && exp <= unix.as_secs()
                {
                    return Err(DiscoveryError::invalid(
                        &source,
                        format!(
                            "the credentials expired {} s ago (is this host's clock right?)",
                            unix.as_secs() - exp
                        ),
                    ));
                }
                self.creds = Some(Held {
                    credentials: t.credentials,
                    expires_at: t.expires_at,
                    fetched: now,
                    temporary: true,
                });
                self.fetched_this_poll = true;
            }
            Step::Api => {}
        }
        Ok(())
    }

    /// A refusal from the API as a discovery error, and whether it asks to back off. A
    /// refusal of the credentials drops temporary ones, so the next poll fetches new ones.
    pub(crate) fn api_failure(
        &mut self,
        source: String,
        r: &Response,
        api: Option<ApiError>,
        permission: &str,
    ) -> (DiscoveryError, bool) {
        let throttled =
            matches!(r.status, 429 | 503) || api.as_ref().is_some_and(ApiError::is_throttling);
        let mut message = match &api {
            Some(e) => e.to_string(),
            None => format!("{}: {}", escape(&r.reason), r.body_excerpt(200)),
        };
        if let Some(e) = &api {
            if e.is_credentials_problem() {
                let from = match &self.setup.source {
                    Source::Env(c) => format!("AWS_ACCESS_KEY_ID {}", c.access_key_id),
                    Source::Container { url, .. } => {
                        format!("the container endpoint {}", url.text(&url.path))
                    }
                    Source::Imds => {
                        format!("the instance role {}", self.role.as_deref().unwrap_or(""))
                    }
                };
                let _ = write!(message, " (credentials from {from}");
                if matches!(e.code.as_str(), "RequestExpired" | "SignatureDoesNotMatch") {
                    message.push_str("; check that this host's clock is right");
                }
                message.push(')');
                if self.creds.as_ref().is_some_and(|h| h.temporary) {
                    self.creds = None;
                }
            } else if matches!(
                e.code.as_str(),
                "UnauthorizedOperation" | "AccessDeniedException" | "AccessDenied"
            ) {
                let _ = write!(message, " (the role needs {permission}; see docs/aws.md)");
            }
        }
        (
            DiscoveryError::Status {
                source,
                status: r.status,
                message,
            },
            throttled,
        )
    }
}

/// When a polling AWS strategy polls: every `polling_interval`, and further apart, with
/// jitter, while AWS throttles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Schedule {
    every: Duration,
    next: Option<Instant>,
    throttled: u32,
}

impl Schedule {
    pub(crate) fn new(every: Duration) -> Self {
        Schedule {
            every,
            next: None,
            throttled: 0,
        }
    }

    /// Whether a poll is due.
    pub(crate) fn due(&self, now: Instant) -> bool {
        self.next.is_none_or(|t| t <= now)
    }

    /// A poll starts now.
    pub(crate) fn start(&mut self, now: Instant) {
        self.next = Some(now + self.every);
    }

    /// A poll succeeded: no more backing off.
    pub(crate) fn succeeded(&mut self) {
        self.throttled = 0;
    }

    /// AWS throttled: the next poll waits between half and all of `every × 2^n` (capped at
    /// [`MAX_BACKOFF`]), n counting the throttled polls in a row. Returns the wait.
    pub(crate) fn throttled(&mut self, now: Instant, cx: &mut Context<'_>) -> Duration {
        self.throttled = self.throttled.saturating_add(1);
        let factor = 1u32 << self.throttled.min(16);
        let full = self
            .every
            .saturating_mul(factor)
            .min(MAX_BACKOFF)
            .max(self.every);
        let wait = cx.rng().duration_between(full / 2, full);
        let at = now + wait;
        self.next = Some(self.next.map_or(at, |n| n.max(at)));
        wait
    }

    /// When the next poll is due, once one has started.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(entries: &[(&str, Value)], env: Environment) -> Result<AwsSetup, ConfigError> {
        let t: Vec<(String, Value)> = entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        let mut o = Options::new("c", &t);
        AwsSetup::from_options(&mut o, &env, "ec2")
    }

    #[test]
    fn https_without_a_ca_file_is_verified_against_the_system_bundle() {
        // No ca_file needed: the default endpoint and an https one both set up.
        assert!(setup(&[("region", Value::str("eu-west-1"))], Environment::new()).is_ok());
        let s = setup(
            &[("endpoint_url", Value::str("https://ec2.example:8443"))],
            Environment::new(),
        )
        .unwrap();
        assert_eq!(s.ca_file, None);
        let s = setup(
            &[("endpoint_url", Value::str("http://127.0.0.1:5000"))],
            Environment::new(),
        )
        .unwrap();
        assert_eq!(
            s.endpoint.as_ref().map(|u| u.host.as_str()),
            Some("127.0.0.1:5000")
        );
        assert_eq!(s.source, Source::Imds);
        assert_eq!(s.region, None);
    }

    #[test]
    fn credentials_and_region_from_the_environment() {
        let env = Environment::new()
            .set("AWS_ACCESS_KEY_ID", "AKID")
            .set("AWS_SECRET_ACCESS_KEY", "secret")
            .set("AWS_DEFAULT_REGION", "us-west-2")
            .set("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/creds");
        let s = setup(&[("ca_file", Value::str("/ca.pem"))], env).unwrap();
        assert!(matches!(&s.source, Source::Env(c) if c.access_key_id == "AKID"));
        assert_eq!(s.region.as_deref(), Some("us-west-2"));
        assert_eq!(s.api("us-west-2").host, "ec2.us-west-2.amazonaws.com");

        let env = Environment::new().set("AWS_ACCESS_KEY_ID", "AKID");
        let e = setup(&[("ca_file", Value::str("/ca.pem"))], env).unwrap_err();
        assert_eq!(e.key, "AWS_SECRET_ACCESS_KEY");

        let env = Environment::new().set(
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "http://10.0.0.1/creds",
        );
        let e = setup(&[("ca_file", Value::str("/ca.pem"))], env).unwrap_err();
        assert_eq!(e.key, "AWS_CONTAINER_CREDENTIALS_FULL_URI");

        let env = Environment::new()
            .set(
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "http://169.254.170.23/v1/credentials",
            )
            .set("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "/var/run/token");
        let s = setup(&[("ca_file", Value::str("/ca.pem"))], env).unwrap();
        assert!(
            matches!(&s.source, Source::Container { auth: Some(Auth::File(_)), url } if url.path == "/v1/credentials")
        );

        let env = Environment::new().set("AWS_EC2_METADATA_DISABLED", "true");
        let e = setup(&[("ca_file", Value::str("/ca.pem"))], env.clone()).unwrap_err();
        assert_eq!(e.key, "c.region");
        let e = setup(
            &[
                ("ca_file", Value::str("/ca.pem")),
                ("region", Value::str("eu-west-1")),
            ],
            env,
        )
        .unwrap_err();
        assert_eq!(e.key, "AWS_EC2_METADATA_DISABLED");
        let e = setup(&[("region", Value::str("EU west"))], Environment::new()).unwrap_err();
        assert_eq!(e.key, "c.region");
    }
}
