//! The ECS strategy: the running tasks of one or more ECS services, from ECS's `ListTasks`
//! and `DescribeTasks` (the address of each task's network interface, `awsvpc` networking).
//!
//! Options:
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `cluster` | required | the ECS cluster's name or ARN (`cluster_name`, libcluster_ecs' key, is accepted too) |
//! | `service_name` | every task of the cluster | a service, or a list of services |
//! | `app_prefix` | `"app"` | the name part of every node: `app_prefix@<ip>` |
//! | `polling_interval` | `5000` | ms between polls |
//! | `region` | `AWS_REGION`, `AWS_DEFAULT_REGION`, else the instance metadata service | the region |
//! | `endpoint_url` | `https://ecs.<region>.amazonaws.com` | another endpoint (`http://127.0.0.1:5000` for moto) |
//! | `ca_file` | none; required for `https` | PEM CA certificates the endpoint is verified against |
//! | `request_timeout` | `10000` | ms a request may take |
//!
//! A poll is `ListTasks` (desired status `RUNNING`, 100 a page, every page, for each service),
//! then `DescribeTasks` for the tasks found, 100 a call; each task's ENI attachment's
//! `privateIPv4Address` names a node. Everything one poll reads becomes one round, committed
//! after the last call; any failed call abandons the round, the last good set stays and
//! `discovery_failed` says why. Throttling (`ThrottlingException`, HTTP 429 or 503) also
//! spaces the next polls out, exponentially with jitter, up to two minutes.
//!
//! Tasks on their way out (`lastStatus` `DEACTIVATING`, `STOPPING`, `DEPROVISIONING`,
//! `STOPPED`) are left out; so are tasks without an address (`bridge` or `host` networking),
//! which a `rejected` event reports when their number changes.
//!
//! Credentials (the environment, the container credentials endpoint, then IMDSv2) and the
//! region: see docs/aws.md.

use core::fmt::Write as _;
use std::net::IpAddr;

use super::aws::{self, AwsSetup, Outcome, Prep, Schedule, Session};
use super::ec2::with_note;
use super::{Context, Environment, ExchangeId, ReadId, Reply, Strategy};
use crate::config::{ConfigError, Options, Value};
use crate::proto::ecs::{self, Action, EcsError};
use crate::proto::http::Response;
use crate::reason::{DiscoveryError, Failure, Rejection};
use crate::time::Instant;

/// The most `ListTasks` pages one poll reads.
const MAX_PAGES: u32 = 10_000;

/// The ECS strategy's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EcsConfig {
    /// `cluster`.
    pub cluster: String,
    /// `service_name`; empty for every task of the cluster.
    pub services: Vec<String>,
    /// `app_prefix`.
    pub app_prefix: String,
    aws: AwsSetup,
}

impl EcsConfig {
    /// Reads the options; `env` gives the credentials, the region and the metadata service's
    /// settings.
    pub fn from_options(o: &mut Options<'_>, env: &Environment) -> Result<Self, ConfigError> {
        let cluster = match (o.string("cluster")?, o.string("cluster_name")?) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::invalid(
                    o.key_path("cluster_name"),
                    "set cluster or cluster_name, not both",
                ));
            }
            (Some(c), None) => ("cluster", c),
            (None, Some(c)) => ("cluster_name", c),
            (None, None) => {
                return Err(ConfigError::invalid(
                    o.key_path("cluster"),
                    "missing: the ECS cluster's name or ARN",
                ));
            }
        };
        if cluster.1.is_empty() {
            return Err(ConfigError::invalid(
                o.key_path(cluster.0),
                "must not be empty",
            ));
        }
        let services = aws::string_or_list(o, "service_name")?.unwrap_or_default();
        if o.has("service_name") && services.is_empty() {
            return Err(ConfigError::invalid(
                o.key_path("service_name"),
                "an empty list: leave the key out for every task of the cluster",
            ));
        }
        if services.iter().any(String::is_empty) {
            return Err(ConfigError::invalid(
                o.key_path("service_name"),
                "a service name must not be empty",
            ));
        }
        let app_prefix = aws::app_prefix(o)?;
        let aws = AwsSetup::from_options(o, env, "ecs")?;
        Ok(EcsConfig {
            cluster: cluster.1.to_owned(),
            services,
            app_prefix,
            aws,
        })
    }
}

/// Where a poll is.
#[derive(Debug, Default)]
struct Poll {
    /// The service being listed (an index into the services; 0 for the whole cluster).
    service: usize,
    /// The token of the `ListTasks` page to ask for next.
    token: Option<String>,
    pages: u32,
    arns: Vec<String>,
    /// The `DescribeTasks` bodies still to send, once listing is over.
    describe: Option<Vec<Vec<u8>>>,
    ips: Vec<IpAddr>,
    without_address: Vec<String>,
}

/// The ECS strategy; see the module documentation.
#[derive(Debug)]
pub struct Ecs {
    config: EcsConfig,
    session: Session,
    schedule: Schedule,
    poll: Option<Poll>,
    without_address: usize,
    unnamed: super::unnamed::Unnamed,
    name: String,
}

impl Ecs {
    /// The strategy for `config`.
    pub fn new(config: EcsConfig) -> Self {
        Ecs {
            session: Session::new(config.aws.clone()),
            schedule: Schedule::new(config.aws.polling_interval),
            config,
            poll: None,
            without_address: 0,
            unnamed: Default::default(),
            name: String::new(),
        }
    }

    pub(crate) fn build(
        o: &mut Options<'_>,
        env: &Environment,
    ) -> Result<Box<dyn Strategy>, ConfigError> {
        Ok(Box::new(Ecs::new(EcsConfig::from_options(o, env)?)))
    }

    fn source(&self, action: Action) -> String {
        let name = match action {
            Action::ListTasks => "ListTasks",
            Action::DescribeTasks => "DescribeTasks",
        };
        format!("ecs {name} at {}", self.session.api_text())
    }

    /// Takes the poll as far as it goes without an answer.
    fn advance(&mut self, now: Instant, cx: &mut Context<'_>) {
        match self.session.prepare(now, cx, false) {
            Prep::Busy => return,
            Prep::Failed(e) => return self.fail(now, e, false, cx),
            Prep::Ready => {}
        }
        let Some(poll) = self.poll.as_mut() else {
            return;
        };
        let (action, body) = match &mut poll.describe {
            Some(bodies) => match bodies.pop() {
                Some(body) => (Action::DescribeTasks, body),
                None => return self.commit(cx),
            },
            None => {
                let service = self.config.services.get(poll.service).map(String::as_str);
                let body = ecs::list_tasks_body(
                    Some(&self.config.cluster),
                    service,
                    Some(ecs::LIST_TASKS_MAX),
                    poll.token.as_deref(),
                );
                (Action::ListTasks, body)
            }
        };
        let sent = self.session.send(now, cx, |host, creds, region, date| {
            ecs::signed_request(host, action, &body, creds, region, date)
        });
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
        let Some(listing) = self.poll.as_ref().map(|p| p.describe.is_none()) else {
            return;
        };
        let action = if listing {
            Action::ListTasks
        } else {
            Action::DescribeTasks
        };
        let source = self.source(action);
        let r = match r {
            Ok(r) => r,
            Err(f) => return self.fail(now, DiscoveryError::request(source, f), false, cx),
        };
        let permission = if listing {
            "ecs:ListTasks"
        } else {
            "ecs:DescribeTasks"
        };
        if r.status != 200 {
            let api = ecs::parse_error(&r.body);
            let (e, throttled) = self.session.api_failure(source, &r, api, permission);
            return self.fail(now, e, throttled, cx);
        }
        if listing {
            let page = match ecs::parse_list_tasks(&r.body) {
                Ok(p) => p,
                Err(e) => return self.refused(now, source, &r, e, permission, cx),
            };
            let services = self.config.services.len();
            let cluster = self.config.cluster.clone();
            let Some(poll) = self.poll.as_mut() else {
                return;
            };
            poll.pages += 1;
            poll.arns.extend(page.task_arns);
            match page.next_token {
                Some(t) if poll.token.as_deref() == Some(t.as_str()) => {
                    let why = "the next page's token is this page's: pagination does not advance";
                    return self.fail(now, DiscoveryError::invalid(source, why), false, cx);
                }
                Some(_) if poll.pages >= MAX_PAGES => {
                    let why = format!("more than {MAX_PAGES} pages");
                    return self.fail(now, DiscoveryError::invalid(source, why), false, cx);
                }
                Some(t) => poll.token = Some(t),
                None => {
                    poll.token = None;
                    poll.service += 1;
                    if poll.service >= services {
                        poll.arns.sort_unstable();
                        poll.arns.dedup();
                        let arns: Vec<&str> = poll.arns.iter().map(String::as_str).collect();
                        let mut bodies = ecs::describe_tasks_bodies(Some(&cluster), &arns);
                        // Sent from the end: the first chunk first.
                        bodies.reverse();
                        poll.describe = Some(bodies);
                    }
                }
            }
            return self.advance(now, cx);
        }
        let described = match ecs::parse_describe_tasks(&r.body) {
            Ok(d) => d,
            Err(e) => return self.refused(now, source, &r, e, permission, cx),
        };
        let Some(poll) = self.poll.as_mut() else {
            return;
        };
        // Failures (a task that ended between the two calls: MISSING) are left out.
        for t in &described.tasks {
            let leaving = matches!(
                t.last_status.as_deref(),
                Some("DEACTIVATING" | "STOPPING" | "DEPROVISIONING" | "STOPPED")
            ) || t.desired_status.as_deref().is_some_and(|d| d != "RUNNING");
            if leaving {
                continue;
            }
            match t.private_ip {
                Some(ip) => poll.ips.push(ip),
                None => poll.without_address.push(t.task_arn.clone()),
            }
        }
        self.advance(now, cx);
    }

    /// A 200 answer that is an error document, or not an answer at all.
    fn refused(
        &mut self,
        now: Instant,
        source: String,
        r: &Response,
        e: EcsError,
        permission: &str,
        cx: &mut Context<'_>,
    ) {
        match e {
            EcsError::Api(api) => {
                let (e, throttled) = self.session.api_failure(source, r, Some(api), permission);
                self.fail(now, e, throttled, cx);
            }
            other => {
                let why = format!("invalid response: {other}");
                self.fail(now, DiscoveryError::invalid(source, why), false, cx);
            }
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
        self.unnamed.report(cx, "the tasks' addresses", &unnamed);
        let missing = poll.without_address.len();
        if missing != self.without_address && missing > 0 {
            cx.rejected(
                None,
                Rejection::InvalidNode(format!(
                    "{missing} running tasks have no ENI address (awsvpc networking is needed), \
                     e.g. {}",
                    crate::proto::aws_credentials::excerpt(&poll.without_address[0], 200)
                )),
            );
        }
        self.without_address = missing;
    }
}

impl Strategy for Ecs {
    fn kind(&self) -> &'static str {
        "ecs"
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
        let mut v = vec![("cluster".into(), Value::str(&c.cluster))];
        match c.services.as_slice() {
            [] => v.push((
                "#service_name".into(),
                Value::str("none: every running task of the cluster"),
            )),
            [one] => v.push(("service_name".into(), Value::str(one))),
            many => v.push((
                "service_name".into(),
                Value::List(many.iter().map(Value::str).collect()),
            )),
        }
        v.push(("app_prefix".into(), Value::str(&c.app_prefix)));
        self.session.setup().describe(&mut v);
        v
    }
}
