//! resolv.conf as glibc reads it: any text parses, within glibc's limits, and every name's
//! search candidates include the name itself.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use muster_core::proto::resolv_conf::{MAX_NAMESERVERS, ResolvConf};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let c = ResolvConf::parse(&text);
    assert!(c.nameservers.len() <= MAX_NAMESERVERS);
    assert!(!c.servers().is_empty());
    assert!(c.ndots <= 15);
    assert!((1..=5).contains(&c.attempts));
    assert!(c.timeout >= Duration::from_secs(1) && c.timeout <= Duration::from_secs(30));
    for name in ["app", "app.test", "a.b.c.d.e", "abs.example.", ""] {
        let cands = c.candidates(name);
        let bare = name.strip_suffix('.').unwrap_or(name);
        assert!(cands.iter().any(|x| x == bare), "{name:?}: {cands:?}");
        assert_eq!(cands.len(), if name.ends_with('.') { 1 } else { c.search.len() + 1 });
    }
});
