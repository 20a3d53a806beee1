//! # muster-core
//!
//! The sans-IO core of [muster](https://github.com/muster-rs/muster): automatic cluster
//! formation for Rust services, the Rust counterpart of Elixir's libcluster.
//!
//! Everything here is a deterministic state machine. The core never opens a socket, reads a
//! file or a clock, spawns a thread or draws randomness of its own: an adapter (muster-tokio,
//! or your own loop) executes the [`Request`]s the core emits, feeds back the [`Answer`]s,
//! and tells it the time. The contract is documented on [`Cluster`].
//!
//! - [`Cluster`] holds several topologies and the reconciler;
//! - [`strategy`] has the [`Strategy`](strategy::Strategy) trait and the built-in strategies;
//! - [`connector`] has the [`Connector`](connector::Connector) trait every adapter runs, and
//!   the connectors that need no I/O;
//! - [`Event`]s say what happened; [`Metrics`] count it;
//! - with the `sim` feature, `sim` runs many clusters in virtual time over a seeded network.

#![forbid(unsafe_code)]
#![warn(missing_docs, unnameable_types, unreachable_pub)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod cluster;
pub mod config;
pub mod connector;
pub mod dist;
mod event;
mod hash;
mod io;
mod list;
mod metrics;
mod node;
mod outputs;
mod policy;
// The wire codecs are the core's own: their few types that the public API names are
// re-exported where they belong. The fuzz targets, tests and benches reach all of them
// through `--cfg fuzzing` (set by cargo-fuzz) or the internal `unstable-proto` feature,
// which no semver promise covers.
#[cfg(any(fuzzing, feature = "unstable-proto"))]
#[doc(hidden)]
pub mod proto;
#[cfg(not(any(fuzzing, feature = "unstable-proto")))]
// Its items are `pub` for the builds above; here a few serve only those.
#[allow(dead_code, unreachable_pub)]
mod proto;
pub mod reason;
mod reconcile;
mod requests;
pub mod resolver;
mod rng;
mod slab;
pub mod strategy;
mod table;
mod time;
mod timers;
mod topologies;
mod topology;

#[cfg(feature = "sim")]
#[cfg_attr(docsrs, doc(cfg(feature = "sim")))]
pub mod sim;

pub use cluster::{AddTopologyError, Cluster, ClusterConfig};
pub use config::{ConfigError, ConfigWarning, Problem, Value};
pub use event::{Event, TopologyName};
pub use io::{
    Answer, Endpoint, Exchange, Identity, Input, Multicast, MulticastInterface, Output,
    OwnedAnswer, Request, StreamTls, Tls, Token, Trust, UdpOptions, time_left,
};
pub use metrics::Metrics;
pub use node::{MAX_NODE_NAME_LEN, Node, NodeName, NodeNameError};
pub use policy::ConnectPolicy;
pub use reason::{ConnectError, DisconnectReason, DiscoveryError, Failure, FailureKind, Rejection};
pub use rng::Rng;
pub use time::Instant;
pub use topologies::MAX_TOPOLOGIES;
pub use topology::{TopologyId, TopologySpec};
