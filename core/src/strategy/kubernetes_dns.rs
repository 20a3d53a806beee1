//! The Kubernetes.DNS strategy: the A records of a headless service (libcluster's
//! `Cluster.Strategy.Kubernetes.DNS`).
//!
//! Options:
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `service` | required | the headless service's name, looked up as given (the pod's search list applies) |
//! | `application_name` | required | the name part of every node: `application_name@<ip>` |
//! | `polling_interval` | `5000` | ms between polls |
//! | `ipv6` | `false` | also ask for AAAA records, for IPv6 and dual-stack clusters |
//! | `nameservers` | from `resolv_conf` | name servers to ask instead |
//! | `resolv_conf` | `/etc/resolv.conf` | the resolver configuration, re-read on every poll |
//!
//! Unlike libcluster, it polls once per interval (libcluster starts two timer chains), follows
//! a CNAME answer instead of crashing on it, and keeps the last good set when a lookup fails
//! or the name does not exist, reporting `discovery_failed`.

use super::dns::{DnsOptions, PollResult, Poller, polled_strategy};
use super::dns_poll::{basename, report_ips, required_string};
use super::{Context, Environment, Strategy};
use crate::config::{ConfigError, Options, Value};
use crate::proto::dns::Kind;

/// The Kubernetes.DNS strategy's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KubernetesDnsConfig {
    /// `service`.
    pub service: String,
    /// `application_name`.
    pub application_name: String,
    /// `ipv6`: ask for AAAA records too.
    pub ipv6: bool,
    /// The options every DNS strategy takes.
    pub dns: DnsOptions,
}

impl KubernetesDnsConfig {
    /// Looks `service` up every 5 s, naming nodes `application_name@<ip>`.
    pub fn new(service: impl Into<String>, application_name: impl Into<String>) -> Self {
        KubernetesDnsConfig {
            service: service.into(),
            application_name: application_name.into(),
            ipv6: false,
            dns: DnsOptions::default(),
        }
    }

    /// Also asks for AAAA records.
    pub fn ipv6(mut self, yes: bool) -> Self {
        self.ipv6 = yes;
        self
    }

    /// Sets the options every DNS strategy takes.
    pub fn with_dns(mut self, dns: DnsOptions) -> Self {
        self.dns = dns;
        self
    }

    /// Reads the options.
    pub fn from_options(o: &mut Options<'_>) -> Result<Self, ConfigError> {
        let service = required_string(o, "service")?;
        let application_name = required_string(o, "application_name")?;
        basename(o, "application_name", &application_name)?;
        Ok(KubernetesDnsConfig {
            service,
            application_name,
            ipv6: o.bool("ipv6")?.unwrap_or(false),
            dns: DnsOptions::from_options(o)?,
        })
    }
}

/// The Kubernetes.DNS strategy; see the module documentation.
#[derive(Debug)]
pub struct KubernetesDns {
    config: KubernetesDnsConfig,
    poller: Poller,
}

impl KubernetesDns {
    /// The strategy for `config`.
    pub fn new(config: KubernetesDnsConfig) -> Self {
        let mut questions = vec![(config.service.clone(), Kind::A)];
        if config.ipv6 {
            questions.push((config.service.clone(), Kind::Aaaa));
        }
        KubernetesDns {
            poller: Poller::new(config.dns.clone(), questions),
            config,
        }
    }

    pub(crate) fn build(
        o: &mut Options<'_>,
        _env: &Environment,
    ) -> Result<Box<dyn Strategy>, ConfigError> {
        Ok(Box::new(KubernetesDns::new(
            KubernetesDnsConfig::from_options(o)?,
        )))
    }

    fn report(&self, result: Option<PollResult>, cx: &mut Context<'_>) {
        report_ips(
            &self.config.application_name,
            &self.config.service,
            result,
            cx,
        );
    }

    fn describe_config(&self) -> Vec<(String, Value)> {
        vec![
            ("service".into(), Value::str(&self.config.service)),
            (
                "application_name".into(),
                Value::str(&self.config.application_name),
            ),
            ("ipv6".into(), Value::Bool(self.config.ipv6)),
        ]
    }
}

polled_strategy!(KubernetesDns, "kubernetes_dns");
