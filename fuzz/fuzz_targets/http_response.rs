//! HTTP/1.1 responses, split into chunks wherever the input says: the reader never panics,
//! stays within its limits, and agrees with itself however the bytes are split.
#![no_main]

use libfuzzer_sys::fuzz_target;
use muster_core::proto::http::ResponseReader;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, wire)) = data.split_first() else { return };
    let whole = {
        let mut r = ResponseReader::new(4096, 64 * 1024);
        r.feed(wire);
        r.finish()
    };
    let mut r = ResponseReader::new(4096, 64 * 1024);
    let step = usize::from(cut).max(1);
    for piece in wire.chunks(step) {
        r.feed(piece);
    }
    let split = r.finish();
    if let Ok(resp) = &whole {
        assert!(resp.body.len() <= 64 * 1024);
    }
    assert_eq!(whole, split, "the same bytes, split differently, read differently");
});
