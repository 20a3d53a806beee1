//! The postgres strategy against a real PostgreSQL server (Debian's `postgresql`): with 9
//! nodes formed, the time from a tenth node's start (its cluster spawned) to every one of
//! the ten knowing every other — the sync it sends on logging in, answered at once by each
//! member — against the heartbeat interval (5 s) that libcluster_postgres's nodes wait.
//!
//! `cargo bench --features cli --bench postgres`. Prints figures; asserts nothing about speed.

#![allow(clippy::unwrap_used)] // a benchmark unwraps what it set up itself

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant as Wall};

use muster::core::config::Options;
use muster::core::strategy::{Environment, Registry};
use muster::core::{NodeName, TopologySpec, Value};
use muster::tokio::{Builder, ClusterHandle, RecordingConnector};
use support::postgres::{DATABASE, Postgres, SCRAM_PASSWORD, SCRAM_USER};

fn node(name: &str, url: &str) -> ClusterHandle {
    let t: Vec<(String, Value)> = vec![("url".into(), Value::str(url))];
    let mut o = Options::new("config", &t);
    let strategy = Registry::builtin()
        .with_env(Environment::new())
        .build("postgres", &mut o)
        .unwrap();
    Builder::new(RecordingConnector::new())
        .this_node(name.parse().unwrap())
        .topology(TopologySpec::boxed("pg", strategy))
        .spawn()
        .unwrap()
        .0
}

async fn knows(h: &ClusterHandle, others: &[NodeName]) {
    let wait = h.wait_for_members(|m| others.iter().all(|o| m.contains(o)));
    tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .expect("the cluster did not form");
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let pg = tokio::task::spawn_blocking(Postgres::start).await.unwrap();
    let url = format!(
        "postgres://{SCRAM_USER}:{SCRAM_PASSWORD}@127.0.0.1:{}/{DATABASE}?sslmode=disable",
        pg.port()
    );
    let names: Vec<NodeName> = (1..=9)
        .map(|i| format!("n{i}@127.0.0.1").parse().unwrap())
        .collect();
    let nine: Vec<ClusterHandle> = names.iter().map(|n| node(n.as_str(), &url)).collect();
    for (h, me) in nine.iter().zip(&names) {
        let others: Vec<NodeName> = names.iter().filter(|n| *n != me).cloned().collect();
        knows(h, &others).await;
    }
    let mut times = Vec::new();
    for run in 0..7 {
        let name: NodeName = format!("new{run}@127.0.0.1").parse().unwrap();
        let start = Wall::now();
        let h = node(name.as_str(), &url);
        knows(&h, &names).await;
        for other in &nine {
            knows(other, std::slice::from_ref(&name)).await;
        }
        times.push(start.elapsed().as_secs_f64() * 1e3);
        h.leave().await;
    }
    times.sort_by(f64::total_cmp);
    println!(
        "postgres, 10 nodes: a node's start to all ten knowing each other: median {:.1} ms (min {:.1}, max {:.1}, {} runs; login with SCRAM-SHA-256 included); the heartbeat interval is 5000 ms",
        times[times.len() / 2],
        times[0],
        times[times.len() - 1],
        times.len()
    );
    for h in nine {
        h.shutdown().await;
    }
    drop(pg);
}
