//! # muster-tokio
//!
//! Runs a [muster](https://github.com/muster-rs/muster) cluster on tokio. The adapter is
//! thin: muster's one async driver ([`muster_driver`]) over tokio's timers, sockets and
//! tasks. It executes the requests the sans-IO core emits (each on a task of its own, with
//! its deadline), feeds the answers back, and sleeps until the core's next timer. It holds no
//! cluster logic: what to connect, when to poll and how to parse all live in `muster-core`.
//!
//! - [`Builder`] configures and starts a cluster; [`ClusterHandle`] watches and stops it;
//!   [`Events`] streams what happened.
//! - A [`Connector`] is the plumbing: [`TcpConnector`] holds a TCP connection per node,
//!   [`CallbackConnector`] calls your closures, [`NoneConnector`] discovers only, and
//!   [`RecordingConnector`] records calls for tests.
//! - Exchanges run over TCP, or TLS on rustls (ring), verified against the CA the core gives.
//! - Events are also logged through `tracing` (faults at `warn`, the rest at `info`).

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

mod driver;
mod epmd;
mod runtime;
mod tcp;

pub use driver::{Builder, Driver};
pub use epmd::{EpmdHandle, epmd_names, epmd_running, run_epmd};
pub use muster_core::connector::{
    BoxFuture, Call, CallbackConnector, ConnectOutcome, Connector, DisconnectOutcome,
    NoneConnector, Notice, Notices, RecordingConnector,
};
pub use muster_driver::{ClusterHandle, Events};
pub use runtime::{Stream, Tokio};
pub use tcp::TcpConnector;

pub use muster_core as core;
