//! The Kubernetes.DNSSRV strategy: the SRV records of a headless service, for StatefulSets
//! (libcluster's `Cluster.Strategy.Kubernetes.DNSSRV`).
//!
//! Options:
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `service` | required | the headless service's name |
//! | `namespace` | required | its namespace |
//! | `application_name` | required | the name part of every node: `application_name@<target>` |
//! | `polling_interval` | `5000` | ms between polls |
//! | `nameservers` | from `resolv_conf` | name servers to ask instead |
//! | `resolv_conf` | `/etc/resolv.conf` | the resolver configuration, re-read on every poll |
//!
//! The name asked is `<service>.<namespace>.svc.<CLUSTER_DOMAIN>`, with the environment
//! variable `CLUSTER_DOMAIN` defaulting to `cluster.local.` (absolute, as in libcluster). Each
//! SRV target, without its trailing dot, is a node's host:
//! `app@myapp-0.myapp-headless.default.svc.cluster.local`; such names need long names on the
//! Erlang side (libcluster issue #121). The SRV port, with the target's address when the
//! server sent it in the additional section, goes to the connector as the node's address
//! hint. A failed or NXDOMAIN lookup keeps the last good set and reports `discovery_failed`.

use std::net::SocketAddr;

use super::dns::{DnsOptions, PollResult, Poller, polled_strategy};
use super::dns_poll::{basename, required_string};
use super::{Context, Environment, Strategy};
use crate::config::{ConfigError, Options, Value};
use crate::proto::dns::{Found, Kind};
use crate::reason::DiscoveryError;
use core::fmt::Write as _;

/// The cluster domain when `CLUSTER_DOMAIN` is not set.
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local.";

/// The Kubernetes.DNSSRV strategy's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KubernetesDnsSrvConfig {
    /// `service`.
    pub service: String,
    /// `namespace`.
    pub namespace: String,
    /// `application_name`.
    pub application_name: String,
    /// The cluster domain (`CLUSTER_DOMAIN`).
    pub cluster_domain: String,
    /// The options every DNS strategy takes.
    pub dns: DnsOptions,
}

impl KubernetesDnsSrvConfig {
    /// Looks up `service` in `namespace` every 5 s in the default cluster domain.
    pub fn new(
        service: impl Into<String>,
        namespace: impl Into<String>,
        application_name: impl Into<String>,
    ) -> Self {
        KubernetesDnsSrvConfig {
            service: service.into(),
            namespace: namespace.into(),
            application_name: application_name.into(),
            cluster_domain: DEFAULT_CLUSTER_DOMAIN.to_owned(),
            dns: DnsOptions::default(),
        }
    }

    /// Sets the cluster domain (`CLUSTER_DOMAIN`).
    pub fn cluster_domain(mut self, domain: impl Into<String>) -> Self {
        self.cluster_domain = domain.into();
        self
    }

    /// Sets the options every DNS strategy takes.
    pub fn with_dns(mut self, dns: DnsOptions) -> Self {
        self.dns = dns;
        self
    }

    /// Reads the options; the cluster domain comes from `env`'s `CLUSTER_DOMAIN`.
    pub fn from_options(o: &mut Options<'_>, env: &Environment) -> Result<Self, ConfigError> {
        let service = required_string(o, "service")?;
        let namespace = required_string(o, "namespace")?;
        let application_name = required_string(o, "application_name")?;
        basename(o, "application_name", &application_name)?;
        Ok(KubernetesDnsSrvConfig {
            service,
            namespace,
            application_name,
            cluster_domain: env
                .get("CLUSTER_DOMAIN")
                .filter(|d| !d.is_empty())
                .unwrap_or(DEFAULT_CLUSTER_DOMAIN)
                .to_owned(),
            dns: DnsOptions::from_options(o)?,
        })
    }

    /// The name asked: `<service>.<namespace>.svc.<cluster domain>`.
    pub fn query(&self) -> String {
        format!(
            "{}.{}.svc.{}",
            self.service, self.namespace, self.cluster_domain
        )
    }
}

/// The Kubernetes.DNSSRV strategy; see the module documentation.
#[derive(Debug)]
pub struct KubernetesDnsSrv {
    config: KubernetesDnsSrvConfig,
    query: String,
    poller: Poller,
}

impl KubernetesDnsSrv {
    /// The strategy for `config`.
    pub fn new(config: KubernetesDnsSrvConfig) -> Self {
        let query = config.query();
        KubernetesDnsSrv {
            poller: Poller::new(config.dns.clone(), vec![(query.clone(), Kind::Srv)]),
            query,
            config,
        }
    }

    pub(crate) fn build(
        o: &mut Options<'_>,
        env: &Environment,
    ) -> Result<Box<dyn Strategy>, ConfigError> {
        Ok(Box::new(KubernetesDnsSrv::new(
            KubernetesDnsSrvConfig::from_options(o, env)?,
        )))
    }

    fn describe_config(&self) -> Vec<(String, Value)> {
        vec![
            ("service".into(), Value::str(&self.config.service)),
            ("namespace".into(), Value::str(&self.config.namespace)),
            (
                "application_name".into(),
                Value::str(&self.config.application_name),
            ),
            (
                "#cluster domain".into(),
                Value::str(format!("{} (CLUSTER_DOMAIN)", self.config.cluster_domain)),
            ),
        ]
    }

    fn report(&self, result: Option<PollResult>, cx: &mut Context<'_>) {
        let app = &self.config.application_name;
        match result {
            None => {}
            // One question: a poll is found or failed, never partly.
            Some(PollResult::Failed(why) | PollResult::Partial(_, why)) => cx.discovery_failed(
                DiscoveryError::request(format!("lookup of {}", self.query), why),
            ),
            Some(PollResult::Found(found)) => {
                let mut name = String::with_capacity(app.len() + 64);
                let mut round = cx.round();
                for f in &found {
                    let Found::Srv {
                        target, port, addr, ..
                    } = f
                    else {
                        continue;
                    };
                    name.clear();
                    let _ = write!(name, "{app}@{target}");
                    let hint = addr.map(|ip| SocketAddr::new(ip, *port));
                    if let Err(e) = round.add(&name, hint) {
                        return round.fail(DiscoveryError::invalid(
                            format!("lookup of {}", self.query),
                            format_args!("SRV target {target:?}: {e}"),
                        ));
                    }
                }
                round.commit();
            }
        }
    }
}

polled_strategy!(KubernetesDnsSrv, "kubernetes_dns_srv");
