//! Plain counters: a `Copy` snapshot of everything the core counted.

/// A snapshot of the core's counters (monotonic, since construction) and gauges (current).
///
/// Every fault from the outside world increments one of these as well as raising an event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Metrics {
    /// Nodes newly discovered by some topology.
    pub discovered: u64,
    /// Nodes that left some topology's discovery.
    pub lost: u64,
    /// Discovery attempts that failed (the last good set was kept).
    pub discovery_failed: u64,
    /// Discovery rounds committed: polls that succeeded, whatever they found.
    pub rounds: u64,
    /// Inputs from the network rejected as malformed or unauthentic.
    pub rejected: u64,
    /// Connect requests issued.
    pub connects_started: u64,
    /// Connects that succeeded (including connections the connector reported on its own).
    pub connected: u64,
    /// Connects that failed, were ignored or timed out.
    pub connect_failed: u64,
    /// Of those, connects that passed their deadline.
    pub connect_timeouts: u64,
    /// Disconnect requests issued.
    pub disconnects_started: u64,
    /// Disconnects that succeeded or found the node already gone.
    pub disconnected: u64,
    /// Disconnects that failed.
    pub disconnect_failed: u64,
    /// Connections that went away without our asking.
    pub dropped: u64,
    /// `ListNodes` requests issued.
    pub list_requests: u64,
    /// `ListNodes` requests that failed or timed out (the cached view was used).
    pub list_failed: u64,
    /// Reconcile passes run.
    pub reconciles: u64,
    /// Times the strategy named this node itself; never connected.
    pub self_skipped: u64,
    /// Answers whose token nobody waited for any more.
    pub stale_answers: u64,
    /// Events dropped because the event queue was full (the adapter did not drain it).
    pub events_dropped: u64,
    /// Inbound Erlang distribution connections that failed their handshake (a wrong cookie,
    /// nonsense, too slow).
    pub inbound_failed: u64,
    /// Accepts of Erlang distribution connections that failed (out of descriptors, say).
    pub accept_failed: u64,
    /// Gauge: nodes the core tracks.
    pub known_nodes: u64,
    /// Gauge: nodes connected, as far as the core knows.
    pub connected_nodes: u64,
    /// Gauge: connect and disconnect requests in flight.
    pub in_flight: u64,
    /// Gauge: UDP sockets open (or being opened) for strategies.
    pub sockets: u64,
}
