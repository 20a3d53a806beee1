//! Erlang distribution as state machines: a connection between two nodes ([`Link`]) and an
//! EPMD of our own ([`EpmdServer`]); and this node in distribution as the cluster's own
//! connector ([`DistConfig`], set with `ClusterConfig::erlang`), whose bytes move through
//! any adapter's streams.

mod distribution;
mod epmd_server;
mod link;

pub use distribution::DistConfig;
pub(crate) use distribution::{DistOutput, Distribution};
pub use epmd_server::{EpmdOutput, EpmdServer, EpmdStats, MAX_NAME, valid_name};
pub use link::{Admission, Link, LinkConfig, LinkEvent, MAX_FRAME};

/// EPMD's wire format, as far as asking an EPMD what it has registered goes.
pub mod epmd {
    pub use crate::proto::epmd::{DEFAULT_PORT, EpmdError, Names, names_request, parse_names};
}

/// The cookie in the text of an `.erlang.cookie` file: its first line, trimmed, as Erlang
/// reads it.
pub fn cookie_from_file(text: &str) -> Option<&str> {
    let c = text.lines().next()?.trim();
    (!c.is_empty()).then_some(c)
}
