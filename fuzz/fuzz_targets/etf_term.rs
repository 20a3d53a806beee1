//! The external term format reader: skipping any term, reading atoms and maps, and the
//! heartbeat term, on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use muster_core::proto::etf::Reader;
use muster_core::proto::gossip::read_heartbeat_term;

fuzz_target!(|data: &[u8]| {
    let mut r = Reader::new(data);
    if r.skip_term().is_ok() {
        assert!(r.remaining() <= data.len());
    }
    let _ = Reader::new(data).atom();
    let _ = Reader::new(data).map_header();
    if let Ok(node) = read_heartbeat_term(data) {
        // Whatever it accepts is text taken from the input.
        assert!(node.len() < data.len());
    }
});
