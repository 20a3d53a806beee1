//! # muster
//!
//! Automatic cluster formation for Rust: the Rust counterpart of Elixir's libcluster. Each
//! node finds its peers through a discovery strategy, asks its distribution layer (a
//! [connector](muster_tokio::Connector)) to connect to them, heals the cluster when nodes
//! come and go, and tells the application what happened.
//!
//! This crate is the facade: it re-exports the sans-IO core ([`core`], `muster-core`), the
//! tokio adapter ([`tokio`], `muster-tokio`), and reads the `muster` tool's configuration
//! files ([`config_file`]).
//!
//! ```no_run
//! use std::time::Duration;
//! use muster::core::strategy::epmd::{Epmd, EpmdConfig};
//! use muster::core::{ConnectPolicy, Node, TopologySpec};
//! use muster::tokio::{Builder, TcpConnector};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let hosts = ["app@10.0.0.2", "app@10.0.0.3"].map(|h| Node::new(h.parse().unwrap()));
//!     let epmd = EpmdConfig::new(hosts).reconnect_every(Duration::from_secs(5));
//!     let (cluster, mut events) = Builder::new(TcpConnector::new(7000))
//!         .this_node("app@10.0.0.1".parse()?)
//!         .topology(TopologySpec {
//!             name: "app".into(),
//!             strategy: Box::new(Epmd::new(epmd)),
//!             policy: ConnectPolicy::default(),
//!         })
//!         .spawn()?;
//!     while let Some(event) = events.recv().await {
//!         println!("{event}   members: {:?}", cluster.members());
//!     }
//!     Ok(())
//! }
//! ```

#![forbid(unsafe_code)]

pub mod config_file;
pub mod demo;
pub mod output;

pub use muster_core as core;
pub use muster_tokio as tokio;

/// The README's Rust example, compiled as a doc test so it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
