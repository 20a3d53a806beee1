//! The `.hosts.erlang` parser on any text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use muster_core::proto::hosts_file;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(hosts) = hosts_file::parse(text)
    {
        assert!(hosts.iter().all(|h| !h.is_empty()));
    }
});
