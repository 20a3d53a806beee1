//! Real peers the integration tests start and stop themselves, with blocking APIs so that
//! tests on any adapter (tokio, async-io, mio) can use them.
#![allow(clippy::unwrap_used, dead_code)] // tests unwrap what they set up themselves

pub mod dnsmasq;
pub mod erlang;
pub mod etcd;
pub mod k8s;
pub mod moto;
pub mod netns;
pub mod postgres;
