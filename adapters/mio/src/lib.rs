//! # muster-mio
//!
//! Runs a [muster](https://github.com/muster-rs/muster) cluster on a blocking event loop on
//! raw mio, for programs with no async runtime at all. The [`Driver`] runs on a thread of
//! your own; you talk to it through a [`ClusterHandle`] (members, counters, topologies,
//! shutdown) and read [`Events`] by blocking, from any thread.
//!
//! The loop is thin: one `mio::Poll` holds every UDP socket and stream exchange (TLS driven
//! by hand with rustls, ring provider), its timeout is the core's next timer, and datagrams
//! are handed to the core straight from one buffer. Connector calls, file reads and name
//! lookups run on a few worker threads ([`Builder::workers`]), each call driven to
//! completion there with [`block_on`], so a connector may block. What to connect, when to
//! poll and how to parse all live in `muster-core`.
//!
//! Connectors are `muster-core`'s [`Connector`]s:
//! [`TcpConnector`] here, and the core's callback, recording and none connectors.

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

mod event_loop;
mod exchange;
mod handle;
mod hub;
mod stream;
mod tcp;
mod udp;
mod workers;

pub use event_loop::Driver;
pub use handle::{BuildError, Builder, ClusterHandle};
pub use hub::Events;
pub use muster_core::connector::{
    BoxFuture, Call, CallbackConnector, ConnectOutcome, Connector, DisconnectOutcome,
    NoneConnector, Notice, Notices, RecordingConnector,
};
pub use tcp::{BlockingOpen, TcpConnector};
pub use workers::block_on;

pub use muster_core as core;
