//! # muster-async-std
//!
//! Runs a [muster](https://github.com/muster-rs/muster) cluster on **async-io**, the reactor
//! that async-std and smol both run on, with async-net sockets, futures-lite and, for TLS,
//! futures-rustls (rustls with the ring provider). It does not depend on the `async-std`
//! crate, which is discontinued upstream (RUSTSEC-2025-0052): a program on async-std's
//! executor, on smol's, or on any other polls the same futures.
//!
//! The cluster runs as one future, the [`Driver`], which you spawn on your executor; every
//! request of the core runs concurrently inside it, each with its deadline. The adapter is
//! thin: it executes the core's requests and feeds back the answers; what to connect, when
//! to poll and how to parse all live in `muster-core`.
//!
//! - [`Builder`] configures a cluster; [`ClusterHandle`] watches and stops it; [`Events`]
//!   streams what happened.
//! - Connectors are `muster-core`'s [`Connector`]s:
//!   [`TcpConnector`] here, and the core's callback, recording and none connectors.
//! - Events are also logged through `tracing` (faults at `warn`, the rest at `info`).

#![forbid(unsafe_code)]

mod driver;
mod exec;
mod stream;
mod tcp;
mod udp;

pub use driver::{Builder, ClusterHandle, Driver, Events};
pub use muster_core::connector::{
    BoxFuture, Call, CallbackConnector, ConnectOutcome, Connector, DisconnectOutcome,
    NoneConnector, Notice, Notices, RecordingConnector,
};
pub use tcp::{AsyncOpen, TcpConnector};

pub use muster_core as core;
