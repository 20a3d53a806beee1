//! Every EPMD message reader, both sides, and the embedded EPMD fed arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use muster_core::Rng;
use muster_core::dist::EpmdServer;
use muster_core::proto::epmd;

fuzz_target!(|data: &[u8]| {
    let _ = epmd::parse_names(data);
    let _ = epmd::parse_port2(data);
    let _ = epmd::parse_alive2_reply(data);
    let _ = epmd::parse_request(data);
    let mut s = EpmdServer::new(4369, &mut Rng::from_seed([1; 32]));
    for (conn, chunk) in data.chunks(7).enumerate() {
        let conn = (conn % 3) as u64;
        s.handle_open(conn);
        s.handle_data(conn, chunk);
        while s.poll_output().is_some() {}
    }
    for conn in 0..3 {
        s.handle_closed(conn);
    }
    assert_eq!(s.names().count(), 0, "every registration ends with its connection");
});
