//! DNS replies through the whole path: a cluster running the DNSPoll strategy, whose resolver
//! has asked for A and AAAA records, gets the input as a UDP reply (its ID patched to the
//! query's, so that the fuzzer reaches past the cheapest rejection) or, after a truncated
//! reply, as the bytes of the TCP stream. Whatever comes, nothing panics, this node is never
//! discovered, and once time runs on every lookup ends.
#![no_main]

use std::net::SocketAddr;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use muster_core::sim::{DnsRecord, DnsServer};
use muster_core::strategy::dns_poll::{DnsPoll, DnsPollConfig};
use muster_core::strategy::dns::DnsOptions;
use muster_core::{
    Answer, Cluster, ClusterConfig, ConnectPolicy, Input, Instant, Output, Request, Token,
};

const SERVER: &str = "10.53.0.53:53";

#[derive(Default)]
struct Seen {
    read: Option<Token>,
    open: Option<Token>,
    queries: Vec<(Token, Vec<u8>)>,
    exchanges: Vec<Token>,
}

fn drain(c: &mut Cluster, seen: &mut Seen) {
    while let Some(out) = c.poll_output() {
        if let Output::Request { token, request } = out {
            match request {
                Request::ReadFile { .. } => seen.read = Some(token),
                Request::OpenUdp(_) => seen.open = Some(token),
                Request::SendDatagram { socket, data, .. } => seen.queries.push((socket, data.to_vec())),
                Request::Exchange(_) => seen.exchanges.push(token),
                _ => {}
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else { return };
    let server: SocketAddr = SERVER.parse().unwrap();
    let mut c = Cluster::new(
        ClusterConfig::new().this_node("me@10.0.0.1".parse().unwrap()).discovery_only(true),
        [3; 32],
    );
    let config = DnsPollConfig::new("app.test", "node")
        .with_dns(DnsOptions::default().nameservers([server]));
    c.add_topology(Instant::ZERO, "dns", Box::new(DnsPoll::new(config)), ConnectPolicy::default())
        .unwrap();
    let mut seen = Seen::default();
    drain(&mut c, &mut seen);
    let t = Instant::from_millis(1);
    c.handle_input(t, Input::Answer { token: seen.read.unwrap(), answer: Answer::Failed(&muster_core::Failure::other("none")) });
    drain(&mut c, &mut seen);
    let socket = seen.open.unwrap();
    c.handle_input(t, Input::Answer { token: socket, answer: Answer::Opened("0.0.0.0:40000".parse().unwrap()) });
    drain(&mut c, &mut seen);
    let Some((_, query)) = seen.queries.get(usize::from(mode & 1)).cloned() else { return };
    if mode & 2 == 0 {
        let mut reply = body.to_vec();
        if reply.len() >= 2 {
            reply[..2].copy_from_slice(&query[..2]);
        }
        c.handle_input(t, Input::Datagram { socket, from: server, data: &reply });
    } else {
        // A zone too large for UDP: the real reply comes truncated, and the resolver asks
        // again over TCP, where the fuzzer's bytes arrive.
        let mut zone = DnsServer::new();
        zone.set("app.test", {
            let mut v: Vec<DnsRecord> = (0..100u8).map(|i| DnsRecord::A([10, 1, 0, i].into())).collect();
            v.extend((0..100u16).map(|i| DnsRecord::Aaaa([0xfd00, 0, 0, 0, 0, 0, 0, i].into())));
            v
        });
        let truncated = zone.answer(&query, false).unwrap();
        c.handle_input(t, Input::Datagram { socket, from: server, data: &truncated });
        drain(&mut c, &mut seen);
        let Some(&token) = seen.exchanges.first() else { return };
        let mut stream = body.to_vec();
        if stream.len() >= 4 {
            stream[2..4].copy_from_slice(&query[..2]);
        }
        let cut = usize::from(mode >> 2).min(stream.len());
        for chunk in [&stream[..cut], &stream[cut..]] {
            c.handle_input(t, Input::Answer { token, answer: Answer::Data(chunk) });
        }
        c.handle_input(t, Input::Answer { token, answer: Answer::Closed });
    }
    drain(&mut c, &mut seen);
    assert!(!c.is_wanted("me@10.0.0.1"));
    // Time runs on: every lookup ends (answered, failed over or timed out) and polls go on.
    let mut now = t;
    for _ in 0..8 {
        now = now + Duration::from_secs(6);
        c.handle_timeout(now);
        drain(&mut c, &mut seen);
    }
    assert!(c.metrics().in_flight <= 8, "{:?}", c.metrics());
});
