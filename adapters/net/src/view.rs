//! What a cluster's handles read — the connected nodes and the counters — as the loop last
//! published them.

use muster_core::{Cluster, Metrics, NodeName};

/// The members (in name order) and counters of a cluster, brought up to date after each step
/// of its loop.
#[derive(Debug, Clone)]
pub struct View {
    /// The nodes connected, in name order.
    pub members: Vec<NodeName>,
    /// The counters.
    pub metrics: Metrics,
    version: u64,
}

impl View {
    /// The view of `cluster` now.
    pub fn new(cluster: &Cluster) -> View {
        let mut v = View {
            members: Vec::new(),
            metrics: cluster.metrics(),
            version: u64::MAX,
        };
        v.update(cluster);
        v
    }

    /// Brings the view up to date with `cluster`; whether anything changed. The members are
    /// copied only when the membership changed.
    pub fn update(&mut self, cluster: &Cluster) -> bool {
        let mut changed = false;
        if cluster.membership_version() != self.version {
            self.version = cluster.membership_version();
            self.members = cluster.members().cloned().collect();
            self.members.sort();
            changed = true;
        }
        let metrics = cluster.metrics();
        if self.metrics != metrics {
            self.metrics = metrics;
            changed = true;
        }
        changed
    }
}
