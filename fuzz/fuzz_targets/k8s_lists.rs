//! Kubernetes list bodies (EndpointSlices, Endpoints, Pods), watch events (each line of a
//! watch stream) and Rancher's metadata: any bytes decode or fail with a message, and every
//! target found can be named in every mode without a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use muster_core::proto::k8s::{self, LookupMode, NameMode};
use muster_core::proto::rancher;

fuzz_target!(|data: &[u8]| {
    let mut host = String::new();
    for mode in [LookupMode::EndpointSlices, LookupMode::Endpoints, LookupMode::Pods] {
        for include_not_ready in [false, true] {
            if let Ok(p) = k8s::parse(data, mode, include_not_ready) {
                for t in &p.targets {
                    for naming in [NameMode::Ip, NameMode::Dns, NameMode::Hostname] {
                        let _ = k8s::write_host(&mut host, t, naming, "svc", "cluster.local");
                    }
                }
            }
            // A watch stream as the strategy reads it: line by line, objects merged.
            let mut objects = std::collections::BTreeMap::new();
            for line in data.split(|b| *b == b'\n') {
                match k8s::parse_watch_event(line, mode, include_not_ready) {
                    Ok(k8s::WatchEvent::Upsert(o)) => {
                        objects.insert(o.key.clone(), o);
                    }
                    Ok(k8s::WatchEvent::Deleted { key, .. }) => {
                        objects.remove(&key);
                    }
                    _ => {}
                }
            }
            for t in &k8s::merge(objects.into_values()).targets {
                let _ = k8s::write_host(&mut host, t, NameMode::Hostname, "svc", "cluster.local");
            }
        }
    }
    let _ = rancher::parse(data);
});
