//! # muster-async-io
//!
//! Runs a [muster](https://github.com/muster-rs/muster) cluster on **async-io**, the reactor
//! that async-std and smol both run on: muster's one async driver ([`muster_driver`]) over
//! async-io's sockets and timers. It does not depend on the `async-std` crate, which is
//! discontinued upstream (RUSTSEC-2025-0052): a program on async-std's executor, on smol's,
//! or on any other polls the same futures.
//!
//! The cluster runs as one future, the [`Driver`], which you spawn on your executor; every
//! request of the core runs concurrently inside it, each with its deadline. The adapter is
//! thin: what to connect, when to poll and how to parse all live in `muster-core`.
//!
//! - [`Builder`] configures a cluster; [`ClusterHandle`] watches and stops it; [`Events`]
//!   streams what happened.
//! - Connectors are `muster-core`'s [`Connector`]s:
//!   [`TcpConnector`] here, and the core's callback, recording and none connectors.
//! - Events are also logged through `tracing` (faults at `warn`, the rest at `info`).

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

mod builder;
mod runtime;
mod tcp;

pub use builder::{Builder, Driver};
pub use muster_core::connector::{
    BoxFuture, Call, CallbackConnector, ConnectOutcome, Connector, DisconnectOutcome,
    NoneConnector, Notice, Notices, RecordingConnector,
};
pub use muster_driver::{ClusterHandle, Events};
pub use runtime::AsyncIo;
pub use tcp::{AsyncOpen, TcpConnector};

pub use muster_core as core;
