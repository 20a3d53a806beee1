//! Node names arrive from the network (gossip, DNS, the Kubernetes API, a connector's list):
//! parsing must never panic, and what it accepts must satisfy every documented rule.
#![no_main]

use libfuzzer_sys::fuzz_target;
use muster_core::{MAX_NODE_NAME_LEN, NodeName};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(n) = NodeName::new(s) {
        assert_eq!(n.as_str(), s);
        assert!(s.len() <= MAX_NODE_NAME_LEN);
        assert_eq!(s.matches('@').count(), 1);
        assert!(!n.name().is_empty() && !n.host().is_empty());
        assert!(n.name().bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'));
        assert_eq!(format!("{}@{}", n.name(), n.host()), s);
        assert_eq!(n.to_string().parse::<NodeName>().ok(), Some(n));
    }
});
