//! PostgreSQL: the backend stream split into chunks wherever the input says (the decoder
//! never panics, stays within its cap, and reads the same however the bytes are split), the
//! SCRAM client's server-first and server-final handlers, and muster's notification payloads.
//!
//! Input: one byte of chunk size, then the stream. The same bytes, cut at their first
//! newline, are also a SCRAM server-first and server-final (for the client nonce
//! `rOprNGfwEbeRWgbNEkqO` of RFC 7677, so a seed can reach the final step), and as text a
//! notification payload, read with and without a key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use muster_core::proto::postgres::{
    Backend, DecodeError, Decoder, MAX_ITERATIONS, PayloadKey, ScramClient, decode_payload,
    ssl_response,
};

const CAP: usize = 4096;

fn drain(d: &mut Decoder, out: &mut Vec<Backend>) -> Option<DecodeError> {
    loop {
        match d.next_message() {
            Ok(Some(m)) => out.push(m),
            Ok(None) => return None,
            Err(e) => return Some(e),
        }
    }
}

/// The iteration count a server-first asks for, so that the target skips the costly ones:
/// each PBKDF2 round is cheap, but a million of them per input would stall the fuzzer on
/// one path that is the same code whatever the count.
fn iterations(first: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(first).ok()?;
    let i = text.split(',').find_map(|a| a.strip_prefix("i="))?;
    i.parse().ok()
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, wire)) = data.split_first() else {
        return;
    };
    let _ = ssl_response(wire);

    // The decoder: whole, then in pieces, draining after every piece as a strategy does.
    let mut whole = Decoder::with_max_message(CAP);
    whole.push(wire);
    let mut a = Vec::new();
    let ea = drain(&mut whole, &mut a);
    let mut split = Decoder::with_max_message(CAP);
    let mut b = Vec::new();
    let mut eb = None;
    for piece in wire.chunks(usize::from(cut).max(1)) {
        split.push(piece);
        assert!(split.buffered() <= CAP + 1 + piece.len());
        eb = drain(&mut split, &mut b);
        if eb.is_some() {
            break;
        }
    }
    assert_eq!(a, b, "the same bytes, split differently, read differently");
    assert_eq!(ea, eb);

    // SCRAM: the first line as server-first, the rest as server-final.
    let (first, last) = match wire.iter().position(|&c| c == b'\n') {
        Some(i) => (&wire[..i], &wire[i + 1..]),
        None => (wire, &[][..]),
    };
    if iterations(first).is_none_or(|i| i <= 8192 || i > u64::from(MAX_ITERATIONS)) {
        let mut c = ScramClient::new("pencil", "rOprNGfwEbeRWgbNEkqO").expect("a valid nonce");
        c.client_first();
        if c.handle_server_first(first).is_ok() {
            let verified = c.handle_server_final(last).is_ok();
            assert_eq!(verified, c.is_verified());
        }
    }

    // Payloads, as the decoder would hand them over.
    let text = String::from_utf8_lossy(wire);
    let _ = decode_payload(&text, "muster", None);
    let _ = decode_payload(&text, "muster", Some(&PayloadKey::new(b"secret")));
});
