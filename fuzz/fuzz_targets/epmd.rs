//! Every EPMD message reader, both sides, and the embedded EPMD fed arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use muster_core::dist::EpmdServer;
use muster_core::{Instant, Rng};
use muster_core::proto::epmd;

fuzz_target!(|data: &[u8]| {
    let _ = epmd::parse_names(data);
    let _ = epmd::parse_port2(data);
    let _ = epmd::parse_alive2_reply(data);
    let _ = epmd::parse_request(data);
    let mut s = EpmdServer::new(4369, &mut Rng::from_seed([1; 32]));
    let mut now = Instant::ZERO;
    // Connections 0 and 1 from loopback, 2 from another host; each opened once, then fed
    // pieces of the input (a byte of length, a byte of which-and-when, the piece).
    for conn in 0..3u64 {
        let peer = if conn == 2 { "10.0.0.9:1" } else { "127.0.0.1:1" };
        s.handle_open(now, conn, peer.parse().unwrap());
    }
    let mut rest = data;
    while let [len, which, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (piece, tail) = tail.split_at(n);
        rest = tail;
        s.handle_data(u64::from(which % 3), piece);
        now = now + std::time::Duration::from_millis(u64::from(which / 3) * 100);
        s.handle_timeout(now);
        while s.poll_output().is_some() {}
        assert!(s.names().all(|(n, _)| muster_core::dist::valid_name(n)));
    }
    for conn in 0..3 {
        s.handle_closed(conn);
    }
    assert_eq!(s.names().count(), 0, "every registration ends with its connection");
});
