//! Helpers shared by the adapter's integration tests.
#![allow(clippy::unwrap_used, dead_code)] // tests unwrap what they set up themselves

use std::time::Duration;

use muster_core::{Event, NodeName};
use muster_tokio::Events;

pub fn n(s: &str) -> NodeName {
    s.parse().unwrap()
}

/// A failsafe around awaits that should complete: a hung test fails instead of hanging CI.
pub async fn within<T>(fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), fut)
        .await
        .expect("timed out waiting")
}

/// The next event that satisfies `f`.
pub async fn next_where(events: &mut Events, f: impl Fn(&Event) -> bool) -> Event {
    within(async {
        loop {
            let e = events.recv().await.expect("cluster stopped");
            if f(&e) {
                return e;
            }
        }
    })
    .await
}
