//! etcd's JSON gateway answers: any bytes decode or fail with a message through every decoder
//! (errors, authenticate, lease grant and keep-alive, put, range, each line of a watch
//! stream), keys stay within their bound, and base64 is strict (what decodes encodes back to
//! the same text). Then the same bytes, cut at each 0x00, answer a live etcd topology's
//! requests in turn (a piece starting with 0x01 leaves its exchange open, as a watch's
//! stream): the strategy never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use muster_core::config::Options;
use muster_core::proto::{base64, etcd};
use muster_core::strategy::Registry;
use muster_core::{
    Answer, Cluster, ClusterConfig, ConnectPolicy, Input, Instant, NodeName, Output, Request, Value,
};

fn decoders(data: &[u8]) {
    let _ = etcd::parse_error(data);
    let _ = etcd::parse_authenticate(data);
    let _ = etcd::parse_lease_grant(data);
    let _ = etcd::parse_lease_keepalive(data);
    let _ = etcd::parse_put(data);
    if let Ok(r) = etcd::parse_range(data) {
        assert!(r.kvs.iter().all(|kv| kv.key.len() <= etcd::MAX_KEY));
    }
    for line in data.split(|b| *b == b'\n') {
        if let Ok(etcd::WatchMessage::Changes { changes, .. }) = etcd::parse_watch_line(line) {
            assert!(changes.iter().all(|c| c.kv.key.len() <= etcd::MAX_KEY));
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some(bytes) = base64::decode(text, data.len()) {
            assert_eq!(
                base64::encode(&bytes),
                text,
                "base64 decoding is not strict"
            );
        }
    }
}

fn strategy(data: &[u8]) {
    let entries = vec![
        (
            "endpoints".to_owned(),
            Value::List(vec![
                Value::str("http://10.0.0.1"),
                Value::str("http://e2.test:2390"),
            ]),
        ),
        ("username".to_owned(), Value::str("app")),
        ("password".to_owned(), Value::str("pw")),
        ("ttl".to_owned(), Value::Int(3)),
    ];
    let mut o = Options::new("c", &entries);
    let Ok(s) = Registry::builtin().build("etcd", &mut o) else {
        return;
    };
    let mut cluster = Cluster::new(
        ClusterConfig::new().this_node("me@10.0.0.9".parse().unwrap()),
        [1; 32],
    );
    let mut now = Instant::ZERO;
    if cluster
        .add_topology(now, "t", s, ConnectPolicy::default())
        .is_err()
    {
        return;
    }
    let mut pieces = data.split(|b| *b == 0);
    let mut exchanges = Vec::new();
    let none: Vec<NodeName> = Vec::new();
    for _ in 0..64 {
        while let Some(out) = cluster.poll_output() {
            if let Output::Request { token, request } = out {
                match request {
                    Request::Exchange(_) => exchanges.push(token),
                    Request::ListNodes { .. } => cluster.handle_input(
                        now,
                        Input::Answer {
                            token,
                            answer: Answer::Nodes(&none),
                        },
                    ),
                    Request::Connect { .. } => cluster.handle_input(
                        now,
                        Input::Answer {
                            token,
                            answer: Answer::Connected,
                        },
                    ),
                    _ => {}
                }
            }
        }
        match (exchanges.first().copied(), pieces.next()) {
            (Some(token), Some(piece)) => {
                // A piece starting with 0x01 leaves the exchange open (a watch streaming);
                // any other closes it after the piece.
                let (keep, piece) = match piece.split_first() {
                    Some((1, rest)) => (true, rest),
                    _ => (false, piece),
                };
                cluster.handle_input(
                    now,
                    Input::Answer {
                        token,
                        answer: Answer::Data(piece),
                    },
                );
                if !keep {
                    cluster.handle_input(
                        now,
                        Input::Answer {
                            token,
                            answer: Answer::Closed,
                        },
                    );
                    exchanges.remove(0);
                }
            }
            _ => match cluster.poll_timeout() {
                Some(at) => {
                    now = at.max(now);
                    cluster.handle_timeout(now);
                }
                None => return,
            },
        }
    }
}

fuzz_target!(|data: &[u8]| {
    decoders(data);
    strategy(data);
});
