//! Building strategies by name from configuration: the [`Registry`] and the [`Environment`]
//! strategies are built in.

use super::{
    Strategy, dns_poll, epmd, erlang_hosts, etcd, gossip, kubernetes, kubernetes_dns,
    kubernetes_dns_srv, local_epmd, rancher,
};
use crate::config::{ConfigError, Options, Problem};

/// Builds a strategy from its options and the process environment.
pub type Builder = fn(&mut Options<'_>, &Environment) -> Result<Box<dyn Strategy>, ConfigError>;

/// The environment variables a strategy may consult when it is built (`CLUSTER_DOMAIN`,
/// `HOME`, `ERL_EPMD_PORT`, ...). The core never reads the process environment itself: the
/// front end takes a snapshot and hands it over, so builds are reproducible and testable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Environment {
    vars: std::collections::BTreeMap<String, String>,
}

impl Environment {
    /// An empty environment.
    pub fn new() -> Self {
        Environment::default()
    }

    /// An environment holding `vars` (an adapter or the tool passes the process's own).
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        Environment {
            vars: vars.into_iter().collect(),
        }
    }

    /// Sets one variable.
    pub fn set(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.vars.insert(name.into(), value.into());
        self
    }

    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }
}

/// The strategies a configuration can name, by name, and the environment they are built in.
#[derive(Clone)]
pub struct Registry {
    builders: Vec<(&'static str, Builder)>,
    env: Environment,
}

impl core::fmt::Debug for Registry {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_list()
            .entries(self.builders.iter().map(|(n, _)| n))
            .finish()
    }
}

/// muster's name of the strategy libcluster's module `name` is (`Cluster.Strategy.Gossip`,
/// with or without `Elixir.`), if it is one.
pub fn libcluster_alias(name: &str) -> Option<&'static str> {
    let module = name.strip_prefix("Elixir.").unwrap_or(name);
    if module == "ClusterEC2.Strategy.Tags" {
        return Some("ec2"); // libcluster_ec2
    }
    Some(match module.strip_prefix("Cluster.Strategy.")? {
        "Epmd" => "epmd",
        "LocalEpmd" => "local_epmd",
        "ErlangHosts" => "erlang_hosts",
        "Gossip" => "gossip",
        "DNSPoll" => "dns_poll",
        "Kubernetes" => "kubernetes",
        "Kubernetes.DNS" => "kubernetes_dns",
        "Kubernetes.DNSSRV" => "kubernetes_dns_srv",
        "Rancher" => "rancher",
        _ => return None,
    })
}

impl Default for Registry {
    fn default() -> Self {
        Registry::builtin()
    }
}

impl Registry {
    /// The built-in strategies, in an empty environment.
    pub fn builtin() -> Self {
        Registry {
            builders: vec![
                ("epmd", epmd::Epmd::build),
                ("local_epmd", local_epmd::LocalEpmd::build),
                ("erlang_hosts", erlang_hosts::ErlangHosts::build),
                ("gossip", gossip::Gossip::build),
                ("dns_poll", dns_poll::DnsPoll::build),
                ("kubernetes_dns", kubernetes_dns::KubernetesDns::build),
                (
                    "kubernetes_dns_srv",
                    kubernetes_dns_srv::KubernetesDnsSrv::build,
                ),
                ("kubernetes", kubernetes::Kubernetes::build),
                ("rancher", rancher::Rancher::build),
                ("etcd", etcd::Etcd::build),
                ("postgres", super::postgres::Postgres::build),
                ("ec2", super::ec2::Ec2::build),
                ("ecs", super::ecs::Ecs::build),
            ],
            env: Environment::new(),
        }
    }

    /// Builds strategies in `env` from now on.
    pub fn with_env(mut self, env: Environment) -> Self {
        self.env = env;
        self
    }

    /// The environment strategies are built in.
    pub fn env(&self) -> &Environment {
        &self.env
    }

    /// Adds (or replaces) a strategy under `name`.
    pub fn register(&mut self, name: &'static str, builder: Builder) -> &mut Self {
        self.builders.retain(|(n, _)| *n != name);
        self.builders.push((name, builder));
        self
    }

    /// The names this registry knows.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.builders.iter().map(|(n, _)| *n)
    }

    /// Builds the strategy `kind` from `options`. Unknown options are left for the caller's
    /// [`Options::finish`].
    pub fn build(
        &self,
        kind: &str,
        options: &mut Options<'_>,
    ) -> Result<Box<dyn Strategy>, ConfigError> {
        match self.builders.iter().find(|(n, _)| *n == kind) {
            Some((_, b)) => b(options, &self.env),
            None => {
                let known: Vec<&str> = self.names().collect();
                Err(ConfigError::new(
                    options.path().to_owned(),
                    Problem::UnknownStrategy(kind.to_owned(), known.join(", ")),
                ))
            }
        }
    }
}
