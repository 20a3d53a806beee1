//! Events: everything that happened, for the application, its logs and its metrics.

use core::fmt;
use core::time::Duration;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::node::NodeName;
use crate::reason::{ConnectError, DisconnectReason, DiscoveryError, Failure, Rejection, escape};

/// The name of a topology, shared by every event it emits.
pub type TopologyName = Arc<str>;

/// One thing that happened. Connection events name the topology that owns the node: the
/// first topology, in the order they were added, that wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A topology's strategy found a node it had not reported before.
    Discovered {
        /// The topology.
        topology: TopologyName,
        /// The node.
        node: NodeName,
    },
    /// A node left a topology's discovery (a successful poll no longer lists it, or gossip
    /// expired it). It is disconnected only if the policy prunes and no topology wants it.
    Lost {
        /// The topology.
        topology: TopologyName,
        /// The node.
        node: NodeName,
    },
    /// The connector connected the node (or reported it connected).
    Connected {
        /// The owning topology.
        topology: TopologyName,
        /// The node.
        node: NodeName,
        /// From the connect request to its answer; zero when the connector reported the
        /// connection on its own.
        took: Duration,
    },
    /// A connect failed; the node is retried after `retry_in` when that is set.
    ConnectFailed {
        /// The owning topology.
        topology: TopologyName,
        /// The node.
        node: NodeName,
        /// Why.
        reason: ConnectError,
        /// Consecutive failures of this node, this one included.
        attempt: u32,
        /// When the next attempt comes, if one is planned.
        retry_in: Option<Duration>,
    },
    /// The node is no longer connected: pruned by us, or dropped.
    Disconnected {
        /// The owning topology (the last one that wanted it).
        topology: TopologyName,
        /// The node.
        node: NodeName,
        /// Why.
        reason: DisconnectReason,
    },
    /// A disconnect failed; it is tried again at the next reconcile.
    DisconnectFailed {
        /// The owning topology.
        topology: TopologyName,
        /// The node.
        node: NodeName,
        /// The connector's failure, or a timeout.
        reason: Failure,
    },
    /// A discovery attempt failed; the topology keeps its last good set.
    DiscoveryFailed {
        /// The topology.
        topology: TopologyName,
        /// Why.
        reason: DiscoveryError,
    },
    /// A node that no topology wants connected to this node on its own (a peer's own
    /// discovery, libcluster's Epmd strategy, a `net_adm:ping`). If a topology discovers it
    /// later, that topology reports it `connected` then. Its `topology()` is empty.
    PeerConnected {
        /// The node.
        node: NodeName,
    },
    /// A node that no topology wants, connected on its own, is no longer connected.
    PeerDisconnected {
        /// The node.
        node: NodeName,
        /// Why.
        reason: DisconnectReason,
    },
    /// Bad input from the network was dropped (a malformed packet, an invalid node name).
    Rejected {
        /// The topology.
        topology: TopologyName,
        /// Who sent it, when known.
        from: Option<SocketAddr>,
        /// Why.
        reason: Rejection,
    },
}

impl Event {
    /// The event's name as the `muster` tool prints it: `discovered`, `lost`, `connected`,
    /// `connect_failed`, `disconnected`, `disconnect_failed`, `discovery_failed`, `rejected`,
    /// `peer_connected`, `peer_disconnected`.
    pub fn name(&self) -> &'static str {
        match self {
            Event::Discovered { .. } => "discovered",
            Event::Lost { .. } => "lost",
            Event::Connected { .. } => "connected",
            Event::ConnectFailed { .. } => "connect_failed",
            Event::Disconnected { .. } => "disconnected",
            Event::DisconnectFailed { .. } => "disconnect_failed",
            Event::DiscoveryFailed { .. } => "discovery_failed",
            Event::Rejected { .. } => "rejected",
            Event::PeerConnected { .. } => "peer_connected",
            Event::PeerDisconnected { .. } => "peer_disconnected",
        }
    }

    /// The topology the event belongs to (empty for `peer_connected` and
    /// `peer_disconnected`: no topology wants the node).
    pub fn topology(&self) -> &str {
        match self {
            Event::Discovered { topology, .. }
            | Event::Lost { topology, .. }
            | Event::Connected { topology, .. }
            | Event::ConnectFailed { topology, .. }
            | Event::Disconnected { topology, .. }
            | Event::DisconnectFailed { topology, .. }
            | Event::DiscoveryFailed { topology, .. }
            | Event::Rejected { topology, .. } => topology,
            Event::PeerConnected { .. } | Event::PeerDisconnected { .. } => "",
        }
    }

    /// The node the event is about, if any.
    pub fn node(&self) -> Option<&NodeName> {
        match self {
            Event::Discovered { node, .. }
            | Event::Lost { node, .. }
            | Event::Connected { node, .. }
            | Event::ConnectFailed { node, .. }
            | Event::Disconnected { node, .. }
            | Event::DisconnectFailed { node, .. }
            | Event::PeerConnected { node }
            | Event::PeerDisconnected { node, .. } => Some(node),
            Event::DiscoveryFailed { .. } | Event::Rejected { .. } => None,
        }
    }

    /// Why, as readable text, for the events that have a reason; what came from the network
    /// in it is escaped (see [`escape`]), so it cannot forge a line or drive a terminal.
    pub fn reason(&self) -> Option<String> {
        let text = match self {
            Event::ConnectFailed { reason, .. } => reason.to_string(),
            Event::Disconnected { reason, .. } | Event::PeerDisconnected { reason, .. } => {
                reason.to_string()
            }
            Event::DisconnectFailed { reason, .. } => reason.to_string(),
            Event::DiscoveryFailed { reason, .. } => reason.to_string(),
            Event::Rejected { reason, .. } => reason.to_string(),
            _ => return None,
        };
        Some(escape(&text).into_owned())
    }

    /// The stable machine code of the reason, for the events that have one (see
    /// [`reason`](crate::reason)).
    pub fn code(&self) -> Option<&'static str> {
        match self {
            Event::ConnectFailed { reason, .. } => Some(reason.code()),
            Event::Disconnected { reason, .. } | Event::PeerDisconnected { reason, .. } => {
                Some(reason.code())
            }
            Event::DisconnectFailed { reason, .. } => Some(reason.code()),
            Event::DiscoveryFailed { reason, .. } => Some(reason.code()),
            Event::Rejected { reason, .. } => Some(reason.code()),
            _ => None,
        }
    }

    /// True for events that report a fault (failures and rejections).
    pub fn is_fault(&self) -> bool {
        matches!(
            self,
            Event::ConnectFailed { .. }
                | Event::DisconnectFailed { .. }
                | Event::DiscoveryFailed { .. }
                | Event::Rejected { .. }
        )
    }
}

fn millis(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{}ms", d.as_millis())
    }
}

impl fmt::Display for Event {
    /// One readable line, e.g. `[app] connect_failed b@10.0.0.2: connection refused (attempt 3,
    /// retry in 2.1s)`; control characters in a reason are escaped, so it stays one line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reason = self.reason().unwrap_or_default();
        match self {
            Event::PeerConnected { node } => {
                return write!(
                    f,
                    "peer_connected {node} (it connected to us; no topology wants it)"
                );
            }
            Event::PeerDisconnected { node, .. } => {
                return write!(f, "peer_disconnected {node}: {reason}");
            }
            _ => {}
        }
        write!(f, "[{}] {}", self.topology(), self.name())?;
        match self {
            Event::Discovered { node, .. } | Event::Lost { node, .. } => write!(f, " {node}"),
            Event::Connected { node, took, .. } => write!(f, " {node} in {}", millis(*took)),
            Event::ConnectFailed {
                node,
                attempt,
                retry_in,
                ..
            } => {
                write!(f, " {node}: {reason} (attempt {attempt}")?;
                match retry_in {
                    Some(d) => write!(f, ", retry in {})", millis(*d)),
                    None => write!(f, ", no retry)"),
                }
            }
            Event::Disconnected { node, .. } | Event::DisconnectFailed { node, .. } => {
                write!(f, " {node}: {reason}")
            }
            Event::DiscoveryFailed { .. } => write!(f, ": {reason}"),
            Event::Rejected { from, .. } => match from {
                Some(a) => write!(f, " from {a}: {reason}"),
                None => write!(f, ": {reason}"),
            },
            Event::PeerConnected { .. } | Event::PeerDisconnected { .. } => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_one_readable_line() {
        let t: TopologyName = Arc::from("app");
        let node = NodeName::new("b@10.0.0.2").unwrap();
        let e = Event::ConnectFailed {
            topology: t.clone(),
            node: node.clone(),
            reason: ConnectError::Failed(Failure::new(
                crate::reason::FailureKind::Refused,
                "connection refused",
            )),
            attempt: 3,
            retry_in: Some(Duration::from_millis(2100)),
        };
        assert_eq!(
            e.to_string(),
            "[app] connect_failed b@10.0.0.2: connection refused (attempt 3, retry in 2.1s)"
        );
        assert_eq!(e.name(), "connect_failed");
        assert_eq!(e.node(), Some(&node));
        assert_eq!(e.reason().as_deref(), Some("connection refused"));
        assert_eq!(e.code(), Some("refused"));
        let c = Event::Connected {
            topology: t,
            node,
            took: Duration::from_millis(12),
        };
        assert_eq!(c.to_string(), "[app] connected b@10.0.0.2 in 12ms");
        assert!(!c.is_fault());
    }

    /// Whatever a reason quotes, the line stays one line with no terminal escapes, in the
    /// text and in `reason()` (which the JSON output uses).
    #[test]
    fn a_reason_from_the_network_cannot_forge_a_line() {
        let e = Event::Rejected {
            topology: Arc::from("lan"),
            from: None,
            reason: Rejection::Malformed("bad\n[lan] connected x@h\u{1b}[2J".into()),
        };
        let line = e.to_string();
        assert!(!line.chars().any(char::is_control), "{line:?}");
        assert_eq!(line, "[lan] rejected: bad\\n[lan] connected x@h\\u{1b}[2J");
        assert!(!e.reason().unwrap().chars().any(char::is_control));
    }
}
