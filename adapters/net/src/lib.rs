//! # muster-net
//!
//! The pieces of socket and TLS set-up that every muster adapter (tokio, async-io, mio)
//! does the same way, so that each adapter is left with only its runtime's loop. Nothing
//! here does I/O beyond creating sockets; nothing here holds cluster logic.
//!
//! - [`udp::open`]: a non-blocking UDP socket with the options the core asks for;
//! - [`tls::client_config`]: a rustls client configuration (ring) for an exchange's
//!   [`Tls`](muster_core::Tls): verified against its CA, or not at all when the core says so;
//! - [`held::Held`]: the connections a `tcp` connector holds, checked when it lists them;
//! - [`setup::Setup`] and [`builder_methods!`]: what every adapter's builder gathers, and the
//!   cluster made from it;
//! - [`view::View`]: the members and counters a cluster's handles read;
//! - [`seed`] and [`unix_time`]: the core's random seed and wall clock; [`log`]: events
//!   through `tracing`.

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod held;
pub mod setup;
pub mod tls;
pub mod udp;
pub mod view;

/// 32 bytes from the operating system's random source, to seed a cluster.
///
/// # Panics
///
/// If the operating system has no random source.
pub fn seed() -> [u8; 32] {
    try_seed().expect("the operating system's random source")
}

/// [`seed`], or the operating system's error.
pub fn try_seed() -> std::io::Result<[u8; 32]> {
    let mut s = [0u8; 32];
    getrandom::fill(&mut s).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(s)
}

/// Time since the Unix epoch by the system clock, if it is after it.
pub fn unix_time() -> Option<std::time::Duration> {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
}

/// Where `node` may be reached, as an endpoint: its address hint with `port`, else its host.
pub fn node_endpoint(node: &muster_core::Node, port: u16) -> muster_core::Endpoint {
    match node.addr {
        Some(a) => muster_core::Endpoint::Addr(std::net::SocketAddr::new(a.ip(), port)),
        None => muster_core::Endpoint::Host {
            host: node.name.host().to_owned(),
            port,
        },
    }
}

/// The failure of an exchange whose reply passed `max` bytes.
pub fn too_large(to: &muster_core::Endpoint, max: usize) -> muster_core::Failure {
    muster_core::Failure::new(
        muster_core::FailureKind::TooLarge,
        format!("{to}: reply larger than {max} bytes"),
    )
}

/// Logs `e` through `tracing`: faults at `warn`, everything else at `info`, with the event's
/// name, topology, node and the machine code of its reason as fields (the line itself says
/// the reason in words).
pub fn log(e: &muster_core::Event) {
    // Absent fields are left out, never printed empty.
    let node = e.node().map(|n| n.as_str());
    let code = e.code();
    let topology = Some(e.topology()).filter(|t| !t.is_empty());
    if e.is_fault() {
        tracing::warn!(event = e.name(), topology, node, code, "{e}");
    } else {
        tracing::info!(event = e.name(), topology, node, code, "{e}");
    }
}
