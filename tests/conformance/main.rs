//! One conformance suite for every adapter: each scenario is written once
//! (`scenarios.rs`) against a small blocking harness (`harness.rs`) and instantiated for
//! tokio, for async-io under async-std's executor and under smol's, and for the mio loop
//! (`adapters.rs`). Real peers where they exist: UDP multicast on loopback, dnsmasq, the
//! HTTPS fake of the Kubernetes API, real TCP listeners.
#![allow(clippy::unwrap_used)] // tests unwrap what they set up themselves

mod adapters;
mod harness;
mod scenarios;
#[path = "../support/mod.rs"]
mod support;

macro_rules! conformance {
    ($($module:ident => $adapter:ty),* $(,)?) => {$(
        mod $module {
            use crate::scenarios;
            type A = $adapter;

            #[test]
            fn gossip_nodes_find_each_other() {
                scenarios::gossip_nodes_find_each_other::<A>();
            }

            #[test]
            fn dns_poll_against_dnsmasq() {
                scenarios::dns_poll_against_dnsmasq::<A>();
            }

            #[test]
            fn kubernetes_against_the_https_api() {
                scenarios::kubernetes_against_the_https_api::<A>();
            }

            #[test]
            fn kubernetes_watch_streams_changes() {
                scenarios::kubernetes_watch_streams_changes::<A>();
            }

            #[test]
            fn rancher_over_plain_http_and_a_stalled_server() {
                scenarios::rancher_over_plain_http_and_a_stalled_server::<A>();
            }

            #[test]
            fn a_truncated_dns_answer_is_completed_over_tcp() {
                scenarios::a_truncated_dns_answer_is_completed_over_tcp::<A>();
            }

            #[test]
            fn connector_failure_and_backoff() {
                scenarios::connector_failure_and_backoff::<A>();
            }

            #[test]
            fn a_peer_going_away_and_coming_back() {
                scenarios::a_peer_going_away_and_coming_back::<A>();
            }

            #[test]
            fn erlang_distribution_against_real_erl() {
                scenarios::erlang_distribution_against_real_erl::<A>();
            }

            #[test]
            fn clean_shutdown() {
                scenarios::clean_shutdown::<A>();
            }

            #[test]
            fn a_tls_stream_carries_every_write_before_it_closes() {
                scenarios::a_tls_stream_carries_every_write_before_it_closes::<A>();
            }
        }
    )*};
}

conformance! {
    tokio => crate::adapters::Tokio,
    async_std => crate::adapters::AsyncIo<crate::adapters::AsyncStd>,
    smol => crate::adapters::AsyncIo<crate::adapters::Smol>,
    mio => crate::adapters::Mio,
}
