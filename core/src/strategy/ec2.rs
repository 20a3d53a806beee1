//! The EC2 strategy: the running instances that carry a tag, from EC2's `DescribeInstances`
//! (libcluster_ec2's `ClusterEC2.Strategy.Tags`).
//!
//! Options (libcluster_ec2's names and defaults, plus muster's):
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `ec2_tagname` | required | the tag's key |
//! | `ec2_tagvalue` | this instance's own value of the tag | the value (or a list of values) instances must carry |
//! | `app_prefix` | `"app"` | the name part of every node: `app_prefix@<ip>` |
//! | `ip_type` | `"private"` | or `"public"`: which address names a node |
//! | `polling_interval` | `5000` | ms between polls |
//! | `region` | `AWS_REGION`, `AWS_DEFAULT_REGION`, else the instance metadata service | the region |
//! | `endpoint_url` | `https://ec2.<region>.amazonaws.com` | another endpoint (`http://127.0.0.1:5000` for moto) |
//! | `ca_file` | none; required for `https` | PEM CA certificates the endpoint is verified against |
//! | `request_timeout` | `10000` | ms a request may take |
//! | `page_size` | `1000` | instances a page (`MaxResults`, 5 to 1000) |
//!
//! A poll is `DescribeInstances` filtered by `tag:<ec2_tagname>` and
//! `instance-state-name=running`, page after page (`NextToken`); the addresses of every page
//! become one round, committed after the last page. A failed page abandons the round: the
//! last good set stays and `discovery_failed` says why. Throttling (`RequestLimitExceeded`,
//! HTTP 429 or 503) also spaces the next polls out, exponentially with jitter, up to two
//! minutes.
//!
//! Without `ec2_tagvalue`, the strategy asks the instance metadata service for this
//! instance's ID, then EC2 for this instance's tags (libcluster_ec2's
//! `local_instance_tag_value`), once: the value is kept for the life of the topology.
//! Instances without the address `ip_type` asks for (no public IP) are left out.
//!
//! Credentials (the environment, the container credentials endpoint, then IMDSv2) and the
//! region: see docs/aws.md.

use core::fmt::Write as _;
use std::net::IpAddr;

use super::aws::{self, AwsSetup, Outcome, Prep, Schedule, Session};
use super::{Context, Environment, ExchangeId, ReadId, Reply, Strategy};
use crate::config::{ConfigError, Options, Value};
use crate::proto::ec2::{self, DescribeInstances, Ec2Error};
use crate::proto::http::Response;
use crate::proto::sigv4::{self, Credentials, SignRequest};
use crate::reason::{DiscoveryError, Failure};
use crate::time::Instant;

/// The most pages one poll reads.
const MAX_PAGES: u32 = 10_000;

/// Which address names a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IpType {
    /// `privateIpAddress`.
    Private,
    /// `ipAddress`, the public IPv4 address.
    Public,
}

impl IpType {
    /// The option's value.
    pub fn name(self) -> &'static str {
        match self {
            IpType::Private => "private",
            IpType::Public => "public",
        }
    }
}

/// The EC2 strategy's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Ec2Config {
    /// `ec2_tagname`.
    pub tag_name: String,
    /// `ec2_tagvalue`; empty for this instance's own value.
    pub tag_values: Vec<String>,
    /// `app_prefix`.
    pub app_prefix: String,
    /// `ip_type`.
    pub ip_type: IpType,
    /// `page_size`.
    pub page_size: u32,
    aws: AwsSetup,
}

impl Ec2Config {
    /// Reads the options; `env` gives the credentials, the region and the metadata service's
    /// settings.
    pub fn from_options(o: &mut Options<'_>, env: &Environment) -> Result<Self, ConfigError> {
        let tag_name = super::dns_poll::required_string(o, "ec2_tagname")?;
        let tag_values = aws::string_or_list(o, "ec2_tagvalue")?.unwrap_or_default();
        if o.has("ec2_tagvalue") && tag_values.is_empty() {
            return Err(ConfigError::invalid(
                o.key_path("ec2_tagvalue"),
                "an empty list: leave the key out to use this instance's own value",
            ));
        }
        let app_prefix = aws::app_prefix(o)?;
        let ip_type = match o.string("ip_type")? {
            None | Some("private") => IpType::Private,
            Some("public") => IpType::Public,
            Some(other) => {
                return Err(ConfigError::invalid(
                    o.key_path("ip_type"),
                    format!("{other:?} is not one of \"private\", \"public\""),
                ));
            }
        };
        let page_size = match o.u64("page_size")? {
            None => ec2::MAX_RESULTS,
            Some(n) if (5..=u64::from(ec2::MAX_RESULTS)).contains(&n) => n as u32,
            Some(n) => {
                return Err(ConfigError::invalid(
                    o.key_path("page_size"),
                    format!("{n} is not between 5 and {}", ec2::MAX_RESULTS),
                ));
            }
        };
        let aws = AwsSetup::from_options(o, env, "ec2")?;
        Ok(Ec2Config {
            tag_name,
            tag_values,
            app_prefix,
            ip_type,
            page_size,
            aws,
        })
    }
}

/// Where a poll is.
#[derive(Debug, Default)]
struct Poll {
    /// The self-lookup is in flight.
    own_tags: bool,
    /// The token of the page to ask for next.
    token: Option<String>,
    pages: u32,
    ips: Vec<IpAddr>,
}

/// The EC2 strategy; see the module documentation.
#[derive(Debug)]
pub struct Ec2 {
    config: Ec2Config,
    session: Session,
    schedule: Schedule,
    poll: Option<Poll>,
    /// This instance's own value of the tag, once looked up.
    own_value: Option<String>,
    unnamed: super::unnamed::Unnamed,
    name: String,
}

impl Ec2 {
    /// The strategy for `config`.
    pub fn new(config: Ec2Config) -> Self {
        Ec2 {
            session: Session::new(config.aws.clone()),
            schedule: Schedule::new(config.aws.polling_interval),
            config,
            poll: None,
            own_value: None,
            unnamed: Default::default(),
            name: String::new(),
        }
    }

    pub(crate) fn build(
        o: &mut Options<'_>,
        env: &Environment,
    ) -> Result<Box<dyn Strategy>, ConfigError> {
        Ok(Box::new(Ec2::new(Ec2Config::from_options(o, env)?)))
    }

    fn source(&self) -> String {
        format!("ec2 DescribeInstances at {}", self.session.api_text())
    }

    /// Takes the poll as far as it goes without an answer.
    fn advance(&mut self, now: Instant, cx: &mut Context<'_>) {
        if self.poll.is_none() {
            return;
        }
        let own = self.config.tag_values.is_empty() && self.own_value.is_none();
        match self.session.prepare(now, cx, own) {
            Prep::Busy => return,
            Prep::Failed(e) => return self.fail(now, e, false, cx),
            Prep::Ready => {}
        }
        let sent = if own {
            let Some(id) = self.session.instance_id().map(str::to_owned) else {
                return;
            };
            if let Some(p) = self.poll.as_mut() {
                p.own_tags = true;
            }
            self.session.send(now, cx, |host, creds, region, date| {
                own_tags_request(host, &id, creds, region, date)
            })
        } else {
            let values: Vec<&str> = if self.config.tag_values.is_empty() {
                self.own_value.iter().map(String::as_str).collect()
            } else {
                self.config.tag_values.iter().map(String::as_str).collect()
            };
            let token = self.poll.as_ref().and_then(|p| p.token.clone());
            let call = DescribeInstances {
                tag_key: &self.config.tag_name,
                tag_values: &values,
                running_only: true,
                max_results: Some(self.config.page_size),
                next_token: token.as_deref(),
            };
            self.session.send(now, cx, |host, creds, region, date| {
                call.signed_request(host, creds, region, date)
            })
        };
        if let Err(e) = sent {
            self.fail(now, e, false, cx);
        }
    }

    fn outcome(&mut self, now: Instant, o: Outcome, cx: &mut Context<'_>) {
        match o {
            Outcome::Setup(Ok(())) => self.advance(now, cx),
            Outcome::Setup(Err(e)) => self.fail(now, e, false, cx),
            Outcome::Api(r) => self.answer(now, r, cx),
        }
    }

    fn answer(&mut self, now: Instant, r: Result<Response, Failure>, cx: &mut Context<'_>) {
        let Some(own_tags) = self.poll.as_ref().map(|p| p.own_tags) else {
            return;
        };
        let source = self.source();
        let r = match r {
            Ok(r) => r,
            Err(f) => return self.fail(now, DiscoveryError::request(source, f), false, cx),
        };
        if r.status != 200 {
            let api = ec2::parse_error(&r.body);
            let (e, throttled) = self
                .session
                .api_failure(source, &r, api, "ec2:DescribeInstances");
            return self.fail(now, e, throttled, cx);
        }
        let page = match ec2::parse_describe_instances(&r.body) {
            Ok(p) => p,
            Err(Ec2Error::Api(api)) => {
                let (e, throttled) =
                    self.session
                        .api_failure(source, &r, Some(api), "ec2:DescribeInstances");
                return self.fail(now, e, throttled, cx);
            }
            Err(e) => {
                let why = format!("invalid response: {e}");
                return self.fail(now, DiscoveryError::invalid(source, why), false, cx);
            }
        };
        if own_tags {
            let id = self.session.instance_id().unwrap_or_default().to_owned();
            let me = page.instances.iter().find(|i| i.instance_id == id);
            let Some(me) = me else {
                let why = format!("this instance ({id}) is not in the answer");
                return self.fail(now, DiscoveryError::invalid(source, why), false, cx);
            };
            let Some(value) = me.tag(&self.config.tag_name) else {
                let why = format!(
                    "this instance ({id}) has no tag {:?}: tag it, or set ec2_tagvalue",
                    self.config.tag_name
                );
                return self.fail(now, DiscoveryError::Setup(why), false, cx);
            };
            self.own_value = Some(value.to_owned());
            if let Some(p) = self.poll.as_mut() {
                p.own_tags = false;
            }
            return self.advance(now, cx);
        }
        let Some(poll) = self.poll.as_mut() else {
            return;
        };
        poll.pages += 1;
        for i in &page.instances {
            let ip = match self.config.ip_type {
                IpType::Private => i.private_ip,
                IpType::Public => i.public_ip,
            };
            if let Some(ip) = ip.filter(|_| i.is_running()) {
                poll.ips.push(ip);
            }
        }
        match page.next_token {
            Some(t) if poll.token.as_deref() == Some(t.as_str()) => {
                let why = "the next page's token is this page's: pagination does not advance";
                self.fail(now, DiscoveryError::invalid(source, why), false, cx)
            }
            Some(_) if poll.pages >= MAX_PAGES => {
                let why = format!("more than {MAX_PAGES} pages");
                self.fail(now, DiscoveryError::invalid(source, why), false, cx)
            }
            Some(t) => {
                poll.token = Some(t);
                self.advance(now, cx);
            }
            None => self.commit(cx),
        }
    }

    fn fail(&mut self, now: Instant, e: DiscoveryError, throttled: bool, cx: &mut Context<'_>) {
        self.poll = None;
        let e = if throttled {
            let wait = self.schedule.throttled(now, cx);
            with_note(
                e,
                format!("throttled: next poll in {} ms", wait.as_millis()),
            )
        } else {
            e
        };
        cx.discovery_failed(e);
    }

    fn commit(&mut self, cx: &mut Context<'_>) {
        let Some(mut poll) = self.poll.take() else {
            return;
        };
        self.schedule.succeeded();
        poll.ips.sort_unstable();
        poll.ips.dedup();
        let mut unnamed: Vec<(String, String)> = Vec::new();
        let mut round = cx.round();
        for ip in &poll.ips {
            self.name.clear();
            let _ = write!(self.name, "{}@{ip}", self.config.app_prefix);
            if let Err(e) = round.add(&self.name, None) {
                unnamed.push((self.name.clone(), e.to_string()));
            }
        }
        round.commit();
        self.unnamed
            .report(cx, "the instances' addresses", &unnamed);
    }
}

/// `DescribeInstances` of one instance: this one, for its tags.
fn own_tags_request(
    host: &str,
    instance_id: &str,
    creds: &Credentials,
    region: &str,
    date: &str,
) -> Vec<u8> {
    let query: Vec<(String, String)> = vec![
        ("Action".into(), "DescribeInstances".into()),
        ("Version".into(), ec2::API_VERSION.into()),
        ("InstanceId.1".into(), instance_id.into()),
    ];
    let signing = SignRequest {
        method: "GET",
        host,
        path: "/",
        query: &query,
        ..SignRequest::default()
    };
    let headers = sigv4::sign(&signing, creds, region, "ec2", date);
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    crate::proto::http::request(
        "GET",
        host,
        &sigv4::request_target("/", &query),
        &headers,
        b"",
    )
}

/// `e` with a note at the end of its text.
pub(crate) fn with_note(e: DiscoveryError, note: String) -> DiscoveryError {
    match e {
        DiscoveryError::Status {
            source,
            status,
            message,
        } => DiscoveryError::Status {
            source,
            status,
            message: format!("{message}; {note}"),
        },
        DiscoveryError::Request { source, failure } => DiscoveryError::Request {
            source,
            failure: Failure::new(failure.kind(), format!("{failure}; {note}")),
        },
        DiscoveryError::Invalid { source, detail } => DiscoveryError::Invalid {
            source,
            detail: format!("{detail}; {note}"),
        },
        DiscoveryError::Setup(s) => DiscoveryError::Setup(format!("{s}; {note}")),
        DiscoveryError::Other(s) => DiscoveryError::Other(format!("{s}; {note}")),
        other => other,
    }
}

impl Strategy for Ec2 {
    fn kind(&self) -> &'static str {
        "ec2"
    }

    fn handle_timeout(&mut self, now: Instant, cx: &mut Context<'_>) {
        if let Some(o) = self.session.handle_timeout(now, cx) {
            self.outcome(now, o, cx);
        }
        if self.poll.is_none() && self.schedule.due(now) {
            self.schedule.start(now);
            self.session.begin_poll();
            self.poll = Some(Poll::default());
            self.advance(now, cx);
        }
    }

    fn handle_file(
        &mut self,
        now: Instant,
        read: ReadId,
        result: Result<&[u8], &Failure>,
        cx: &mut Context<'_>,
    ) {
        if let Some(o) = self.session.handle_file(read, result) {
            self.outcome(now, o, cx);
        }
    }

    fn handle_exchange(
        &mut self,
        now: Instant,
        exchange: ExchangeId,
        reply: Reply<'_>,
        cx: &mut Context<'_>,
    ) {
        if let Some(o) = self.session.handle_exchange(exchange, reply, cx) {
            self.outcome(now, o, cx);
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let next = if self.poll.is_some() {
            None
        } else {
            self.schedule.next()
        };
        crate::time::earliest(next, self.session.poll_timeout())
    }

    fn describe(&self) -> Vec<(String, Value)> {
        let c = &self.config;
        let mut v = vec![("ec2_tagname".into(), Value::str(&c.tag_name))];
        match c.tag_values.as_slice() {
            [] => v.push((
                "#ec2_tagvalue".into(),
                Value::str("this instance's own value of the tag (instance ID from IMDS, then DescribeInstances)"),
            )),
            [one] => v.push(("ec2_tagvalue".into(), Value::str(one))),
            many => v.push((
                "ec2_tagvalue".into(),
                Value::List(many.iter().map(Value::str).collect()),
            )),
        }
        v.extend([
            ("app_prefix".into(), Value::str(&c.app_prefix)),
            ("ip_type".into(), Value::str(c.ip_type.name())),
            ("page_size".into(), Value::Int(i64::from(c.page_size))),
        ]);
        self.session.setup().describe(&mut v);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::{Answer, Input, Output, Request};
    use crate::{Cluster, ClusterConfig, ConnectPolicy, Event};
    use core::time::Duration;

    fn cluster(unix: Option<u64>) -> Cluster {
        let t: Vec<(String, Value)> = vec![
            ("ec2_tagname".into(), Value::str("app")),
            ("ec2_tagvalue".into(), Value::str("web")),
            ("region".into(), Value::str("eu-west-1")),
            ("endpoint_url".into(), Value::str("http://10.0.0.9:5000")),
        ];
        let mut o = Options::new("c", &t);
        let env = Environment::new()
            .set("AWS_ACCESS_KEY_ID", "AKID")
            .set("AWS_SECRET_ACCESS_KEY", "secret");
        let s = Ec2::build(&mut o, &env).unwrap();
        o.finish().unwrap();
        let mut c = Cluster::new(ClusterConfig::new(), [3; 32]);
        if let Some(u) = unix {
            c.set_unix_time(Instant::ZERO, Duration::from_secs(u));
        }
        c.add_topology(Instant::ZERO, "aws", s, ConnectPolicy::default())
            .unwrap();
        c
    }

    /// Drains the outputs: the exchanges asked for, and the events.
    fn drain(c: &mut Cluster) -> (Vec<(crate::io::Token, Vec<u8>)>, Vec<Event>) {
        let (mut x, mut e) = (Vec::new(), Vec::new());
        while let Some(out) = c.poll_output() {
            match out {
                Output::Request {
                    token,
                    request: Request::Exchange(ex),
                } => x.push((token, ex.send.to_vec())),
                Output::Event(ev) => e.push(ev),
                _ => {}
            }
        }
        (x, e)
    }

    #[test]
    fn without_a_wall_clock_the_poll_fails_and_says_why() {
        let mut c = cluster(None);
        let (x, e) = drain(&mut c);
        assert!(x.is_empty());
        let reasons: Vec<String> = e.iter().filter_map(Event::reason).collect();
        assert!(
            reasons.iter().any(|r| r.contains("no wall clock")),
            "{reasons:?}"
        );
    }

    #[test]
    fn throttling_spaces_the_polls_out_and_signs_with_the_wall_clock() {
        let mut c = cluster(Some(1_764_547_200)); // 2025-12-01T00:00:00Z
        let (x, _) = drain(&mut c);
        assert_eq!(x.len(), 1);
        let request = String::from_utf8_lossy(&x[0].1).into_owned();
        assert!(
            request.starts_with("GET /?Action=DescribeInstances"),
            "{request}"
        );
        assert!(
            request.contains("X-Amz-Date: 20251201T000000Z"),
            "{request}"
        );
        assert!(
            request.contains("Credential=AKID/20251201/eu-west-1/ec2/aws4_request"),
            "{request}"
        );
        let throttle = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n";
        let mut now = Instant::ZERO;
        let mut waits = Vec::new();
        let mut token = x[0].0;
        for _ in 0..8 {
            c.handle_input(
                now,
                Input::Answer {
                    token,
                    answer: Answer::Data(throttle),
                },
            );
            c.handle_input(
                now,
                Input::Answer {
                    token,
                    answer: Answer::Closed,
                },
            );
            let (x, e) = drain(&mut c);
            assert!(x.is_empty());
            assert!(e.iter().any(|e| matches!(e, Event::DiscoveryFailed { .. })));
            let next = c.poll_timeout().unwrap();
            waits.push(next.saturating_duration_since(now));
            now = next;
            c.handle_timeout(now);
            let (x, _) = drain(&mut c);
            assert_eq!(x.len(), 1);
            token = x[0].0;
        }
        // Half to all of 5 s × 2^n, capped at two minutes.
        for (i, w) in waits.iter().enumerate() {
            let full = (Duration::from_secs(5) * (1 << (i + 1))).min(aws::MAX_BACKOFF);
            assert!(*w >= full / 2 && *w <= full, "wait {i}: {w:?}");
        }
        assert!(waits[7] >= Duration::from_secs(60));
    }
}
