//! Every gossip datagram goes through the Gossip strategy in each of its three modes:
//! whatever arrives, the cluster must not panic, must not discover itself, and must keep what
//! it remembers bounded.
#![no_main]

use std::net::SocketAddr;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use muster_core::strategy::gossip::{Gossip, GossipConfig};
use muster_core::{Answer, Cluster, ClusterConfig, ConnectPolicy, Input, Instant, Output, Request};

fn rig(secret: Option<&str>, compat: bool) -> (Cluster, muster_core::Token) {
    let mut c = Cluster::new(
        ClusterConfig::new().this_node("me@10.0.0.1".parse().unwrap()).discovery_only(true),
        [2; 32],
    );
    c.set_unix_time(Instant::ZERO, Duration::from_secs(1_700_000_000));
    let mut config = GossipConfig::default();
    config.secret = secret.map(|s| s.as_bytes().to_vec());
    config.compat = compat;
    config.max_nodes = 16;
    c.add_topology(Instant::ZERO, "g", Box::new(Gossip::new(config)), ConnectPolicy::default())
        .unwrap();
    let Some(Output::Request { token, request: Request::OpenUdp(_) }) = c.poll_output() else {
        unreachable!()
    };
    c.handle_input(Instant::ZERO, Input::Answer { token, answer: Answer::Opened("0.0.0.0:45892".parse().unwrap()) });
    while c.poll_output().is_some() {}
    (c, token)
}

fuzz_target!(|data: &[u8]| {
    let from: SocketAddr = "10.0.0.9:45892".parse().unwrap();
    for (secret, compat) in [(None, false), (Some("k"), true), (Some("k"), false)] {
        let (mut c, socket) = rig(secret, compat);
        // The input as one datagram, then split into several.
        c.handle_input(Instant::ZERO, Input::Datagram { socket, from, data });
        for chunk in data.chunks(61) {
            c.handle_input(Instant::from_millis(1), Input::Datagram { socket, from, data: chunk });
        }
        while c.poll_output().is_some() {}
        assert!(!c.is_wanted("me@10.0.0.1"));
        assert!(muster_core::sim::table_capacity(&c) <= 32);
    }
});
