//! Strategies that talk HTTP, inside the simulator: the Kubernetes API and Rancher's metadata
//! service, simulated, following which nodes are up — and faults that must keep the last
//! good set.
#![allow(clippy::unwrap_used)] // tests unwrap what they set up themselves

mod common;

use common::*;
use muster_core::config::Options;
use muster_core::dist::DistConfig;
use muster_core::sim::{
    ApiFault, HttpReply, HttpRequest, KubernetesApi, RancherMetadata, Sim, SimConfig, World,
};
use muster_core::strategy::{Environment, Registry};
use muster_core::{ClusterConfig, Instant, NodeName, TopologySpec, Value};

const API: &str = "10.96.0.1:443";

fn strategy(kind: &str, entries: &[(&str, Value)], env: Environment) -> TopologySpec {
    let t: Vec<(String, Value)> = entries
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let mut o = Options::new("t", &t);
    let s = Registry::builtin()
        .with_env(env)
        .build(kind, &mut o)
        .unwrap();
    o.finish().unwrap();
    TopologySpec::boxed(kind, s).policy(quick())
}

fn pods(k: usize) -> Vec<NodeName> {
    (1..=k).map(|i| n(&format!("app@10.1.0.{i}"))).collect()
}

fn kubernetes(sim: &mut Sim, all: &[NodeName], lookup: &str, erlang: bool) {
    sim.write_file("/sa/token", "t0ken");
    sim.write_file("/sa/ca.crt", "-----BEGIN CERTIFICATE-----\n");
    sim.write_file("/sa/namespace", "prod");
    for me in all {
        let lookup = lookup.to_owned();
        let mut config = ClusterConfig::new();
        if erlang {
            config = config.erlang(DistConfig::new(me.clone(), "cookie"));
        }
        sim.add_node(me.clone(), config, move || {
            let env = Environment::new()
                .set("KUBERNETES_SERVICE_HOST", "10.96.0.1")
                .set("KUBERNETES_SERVICE_PORT", "443");
            vec![strategy(
                "kubernetes",
                &[
                    ("kubernetes_node_basename", Value::str("app")),
                    ("kubernetes_service_name", Value::str("myapp")),
                    ("kubernetes_selector", Value::str("app=myapp")),
                    ("kubernetes_ip_lookup_mode", Value::str(&lookup)),
                    ("kubernetes_service_account_path", Value::str("/sa")),
                    ("polling_interval", Value::Int(1000)),
                ],
                env,
            )]
        });
    }
}

fn meshed(sim: &Sim, all: &[NodeName]) -> bool {
    all.iter().all(|a| {
        all.iter()
            .all(|b| a == b || sim.linked(a.as_str(), b.as_str()))
    })
}

#[test]
fn kubernetes_nodes_find_each_other_through_the_simulated_api_in_every_lookup_mode() {
    for lookup in ["endpointslices", "endpoints", "pods"] {
        for erlang in [false, true] {
            let all = pods(4);
            let mut sim = Sim::new(1, SimConfig::default());
            sim.serve_http(API, KubernetesApi::new("prod", "myapp").pods(all.clone()));
            kubernetes(&mut sim, &all, lookup, erlang);
            assert!(
                sim.run_until_quiescent(ms(20_000)),
                "{lookup} erlang={erlang}"
            );
            assert!(meshed(&sim, &all), "{lookup} erlang={erlang}");
            assert!(sim.http_requests(API) >= 4);
        }
    }
}

#[test]
fn a_pod_that_goes_down_leaves_discovery_and_faults_keep_the_last_good_set() {
    let all = pods(4);
    let mut sim = Sim::new(2, SimConfig::default());
    sim.serve_http(API, KubernetesApi::new("prod", "myapp").pods(all.clone()));
    kubernetes(&mut sim, &all, "endpointslices", false);
    assert!(sim.run_until_quiescent(ms(20_000)));
    // A pod that is gone is not ready: the others lose it.
    sim.set_up(&all[3], false);
    sim.run_for(ms(3000));
    assert_eq!(
        times(sim.events("app@10.1.0.1"), "lost", "app@10.1.0.4").len(),
        1
    );
    // Every fault of the API keeps what was discovered: no node is lost or disconnected.
    for fault in [
        ApiFault::Forbidden,
        ApiFault::ServerError,
        ApiFault::Stall,
        ApiFault::Truncate,
    ] {
        sim.http_fault(API, fault);
        let before = count(sim.events("app@10.1.0.1"), "lost");
        let failed = count(sim.events("app@10.1.0.1"), "discovery_failed");
        sim.run_for(ms(40_000));
        assert_eq!(
            count(sim.events("app@10.1.0.1"), "lost"),
            before,
            "{fault:?}"
        );
        assert!(
            count(sim.events("app@10.1.0.1"), "discovery_failed") > failed,
            "{fault:?} is reported"
        );
        assert!(sim.linked("app@10.1.0.1", "app@10.1.0.2"), "{fault:?}");
    }
    sim.http_fault(API, ApiFault::None);
    sim.set_up(&all[3], true);
    // (Quiescence needs a poll first: until then nothing is wanted.)
    sim.run_for(ms(2000));
    assert!(sim.run_until_quiescent(ms(20_000)));
    assert!(meshed(&sim, &all));
}

#[test]
fn rancher_nodes_find_each_other_through_simulated_metadata() {
    let all: Vec<NodeName> = (1..=3).map(|i| n(&format!("web@10.42.0.{i}"))).collect();
    let mut sim = Sim::new(3, SimConfig::default());
    sim.serve_http(
        "rancher-metadata:80",
        RancherMetadata::new(all.iter().cloned()),
    );
    for me in &all {
        sim.add_node(me.clone(), ClusterConfig::new(), || {
            vec![strategy(
                "rancher",
                &[
                    ("node_basename", Value::str("web")),
                    ("polling_interval", Value::Int(1000)),
                ],
                Environment::new(),
            )]
        });
    }
    sim.run_for(ms(2000));
    assert!(sim.run_until_quiescent(ms(20_000)));
    assert!(meshed(&sim, &all));
}

/// A service of your own is any closure: here one that answers as Rancher's would, listing
/// only the hosts that are up.
#[test]
fn a_closure_is_an_http_service() {
    let all: Vec<NodeName> = (1..=3).map(|i| n(&format!("web@10.42.0.{i}"))).collect();
    let mut sim = Sim::new(4, SimConfig::default());
    sim.serve_http(
        "10.5.5.5:8080",
        |_now: Instant, r: &HttpRequest, w: &World<'_>| {
            assert_eq!((r.method.as_str(), r.path.as_str()), ("GET", "/members"));
            let ips: Vec<String> = w
                .hosts()
                .filter(|(_, _, up)| *up)
                .map(|(_, ip, _)| format!(r#"{{"ips":["{ip}"]}}"#))
                .collect();
            let body = format!(r#"{{"containers":[{}]}}"#, ips.join(","));
            HttpReply::json(body)
        },
    );
    for me in &all {
        sim.add_node(me.clone(), ClusterConfig::new(), || {
            vec![strategy(
                "rancher",
                &[
                    ("node_basename", Value::str("web")),
                    ("metadata_url", Value::str("http://10.5.5.5:8080/members")),
                    ("polling_interval", Value::Int(1000)),
                ],
                Environment::new(),
            )]
        });
    }
    sim.run_for(ms(2000));
    assert!(sim.run_until_quiescent(ms(20_000)));
    assert!(meshed(&sim, &all));
    sim.set_up(&all[2], false);
    sim.run_for(ms(3000));
    assert_eq!(
        times(sim.events("web@10.42.0.1"), "lost", "web@10.42.0.3").len(),
        1
    );
}
