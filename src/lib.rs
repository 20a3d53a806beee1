//! # muster
//!
//! Automatic cluster formation for Rust: the Rust counterpart of Elixir's libcluster. Each
//! node finds its peers through a discovery strategy, asks its distribution layer (a
//! [connector](muster_core::connector::Connector)) to connect to them, heals the cluster when nodes
//! come and go, and tells the application what happened.
//!
//! This crate is the facade, published as `muster-cluster` (its library is `muster`): it
//! re-exports the sans-IO core ([`core`], `muster-core`) and the adapter your program runs on,
//! by feature:
//!
//! | feature | module | runs on |
//! |---|---|---|
//! | `tokio` | `muster::tokio` (`muster-tokio`) | tokio |
//! | `async-io` (alias `async-std`) | `muster::async_io` (`muster-async-io`) | async-io: async-std's and smol's executors, or any other |
//! | `mio` | `muster::mio` (`muster-mio`) | a blocking loop on raw mio, on a thread of your own |
//! | `config` | `muster::config` | loads the `muster` tool's TOML configuration files |
//! | `sim` | `muster::core::sim` | the deterministic simulator, for testing your configuration |
//! | `cli` | — | the `muster` tool (the binary) |
//!
//! The default features are `tokio` and `cli`, so that `cargo install muster-cluster` gives
//! the tool. A program that embeds muster takes only what it runs on:
//!
//! ```toml
//! [dependencies]
//! muster-cluster = { version = "0.1", default-features = false, features = ["tokio"] }
//! ```
//!
#![cfg_attr(
    feature = "tokio",
    doc = r#"
On tokio:

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
#![warn(missing_docs, unreachable_pub)]

#[cfg(feature = "config")]
#[cfg_attr(docsrs, doc(cfg(feature = "config")))]
pub mod config;

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
