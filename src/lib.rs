//! # muster
//!
//! Automatic cluster formation for Rust: the Rust counterpart of Elixir's libcluster. Each
//! node finds its peers through a discovery strategy, asks its distribution layer (a
//! [connector](muster_core::connector::Connector)) to connect to them, heals the cluster when nodes
//! come and go, and tells the application what happened.
//!
//! This crate is the facade: it re-exports the sans-IO core ([`core`], `muster-core`) and
//! the adapter your program runs on, by feature:
//!
//! | feature | module | runs on |
//! |---|---|---|
//! | `tokio` (default) | `muster::tokio` (`muster-tokio`) | tokio; also the `muster` tool and its configuration files (`config_file`) |
//! | `async-std` | `muster::async_io` (`muster-async-std`) | async-io: async-std's and smol's executors, or any other |
//! | `mio` | `muster::mio` (`muster-mio`) | a blocking loop on raw mio, on a thread of your own |
//!
#![cfg_attr(
    feature = "tokio",
    doc = r#"
With the default feature, on tokio:

```no_run
use std::time::Duration;
use muster::core::strategy::epmd::{Epmd, EpmdConfig};
use muster::core::{Node, TopologySpec};
use muster::tokio::{Builder, TcpConnector};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let hosts = ["app@10.0.0.2", "app@10.0.0.3"].map(|h| Node::new(h.parse().unwrap()));
    let epmd = EpmdConfig::new(hosts).reconnect_every(Duration::from_secs(5));
    let (cluster, mut events) = Builder::new(TcpConnector::new(7000))
        .this_node("app@10.0.0.1".parse()?)
        .topology(TopologySpec::new("app", Epmd::new(epmd)))
        .spawn()?;
    while let Some(event) = events.recv().await {
        println!("{event}   members: {:?}", cluster.members());
    }
    Ok(())
}
```
"#
)]
#![forbid(unsafe_code)]

#[cfg(feature = "tokio")]
pub mod config_file;
#[cfg(feature = "tokio")]
pub mod demo;
#[cfg(feature = "tokio")]
pub mod output;

#[cfg(feature = "async-io")]
pub use muster_async_io as async_io;
pub use muster_core as core;
#[cfg(feature = "mio")]
pub use muster_mio as mio;
#[cfg(feature = "tokio")]
pub use muster_tokio as tokio;

/// The README's Rust example, compiled as a doc test so it cannot rot.
#[cfg(all(doctest, feature = "tokio"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
