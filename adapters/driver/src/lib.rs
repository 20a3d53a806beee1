//! # muster-driver
//!
//! The one async driver of [muster](https://github.com/muster-rs/muster)'s tokio and
//! async-io adapters, generic over a small [`Runtime`] trait (spawn, a timer, TCP connect
//! and listen, UDP, file reads), as quinn's driver is. It executes the requests the sans-IO
//! core emits — each concurrently, within its own deadline —, feeds the answers back,
//! publishes what changed, and sleeps until the core's next timer. TLS runs on rustls with
//! the ring provider, through futures-rustls, whatever the runtime.
//!
//! Applications do not use this crate directly: `muster-tokio` and `muster-async-io`
//! implement [`Runtime`] and re-export the [`ClusterHandle`] and [`Events`] defined here, so a
//! handle looks the same on every runtime. A runtime of your own needs only a [`Runtime`]
//! implementation and [`build`].

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

mod driver;
mod events;
mod exec;
mod handle;
mod inbox;
mod runtime;
mod streams;
mod tasks;
mod udp;

pub use driver::{Driver, build};
pub use events::Events;
pub use handle::ClusterHandle;
pub use runtime::Runtime;
