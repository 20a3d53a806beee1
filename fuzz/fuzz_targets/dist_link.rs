//! Whatever a peer sends on a distribution connection — during the handshake, as acceptor or
//! initiator, or after it — the link must not panic, and must end up or stay consistent.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use muster_core::dist::{Admission, Link, LinkConfig, LinkEvent};
use muster_core::proto::dist;
use muster_core::{Instant, Rng};

fn cfg() -> LinkConfig {
    LinkConfig::new("me@h".parse().unwrap(), "cookie", 1)
}

fuzz_target!(|data: &[u8]| {
    let mut rng = Rng::from_seed([5; 32]);
    let now = Instant::ZERO;
    // As acceptor: the raw bytes, in two pieces, admitting whoever says hello.
    let mut a = Link::accept(cfg(), now, &mut rng);
    let (x, y) = data.split_at(data.len() / 2);
    for piece in [x, y] {
        a.handle_data(now, piece);
        while let Some(e) = a.poll_event() {
            if let LinkEvent::Hello { .. } = e {
                a.admit(now, Admission::Ok);
            }
        }
        while a.poll_transmit().is_some() {}
    }
    a.handle_timeout(now + Duration::from_secs(100));
    // As initiator: a valid status, then the bytes.
    let mut b = Link::connect(cfg(), "peer@h".parse().unwrap(), now, &mut rng);
    b.handle_data(now, &dist::write_status("ok"));
    b.handle_data(now, data);
    while b.poll_event().is_some() {}
    while b.poll_transmit().is_some() {}
    b.handle_timeout(now + Duration::from_secs(100));
    assert!(b.is_closed() || b.is_up() || b.poll_timeout().is_some());
});
