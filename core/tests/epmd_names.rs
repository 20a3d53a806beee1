//! What an EPMD lists is untrusted: a name that is no node's (a line break, an escape, a
//! space) is skipped and reported once per interval; the other nodes are still discovered.
#![allow(clippy::unwrap_used)] // tests unwrap what they set up themselves

use std::time::Duration;

use muster_core::strategy::local_epmd::{LocalEpmd, LocalEpmdConfig};
use muster_core::{
    Answer, Cluster, ClusterConfig, Event, Input, Instant, Output, Request, Token, TopologySpec,
};

/// A `NAMES_RESP` as an EPMD writes it, for these names.
fn listing(names: &[&str]) -> Vec<u8> {
    let mut out = 4369u32.to_be_bytes().to_vec();
    for (i, n) in names.iter().enumerate() {
        out.extend_from_slice(format!("name {n} at port {}\n", 40000 + i).as_bytes());
    }
    out
}

/// Answers the cluster's EPMD exchange with `reply`, and its list request with nothing;
/// returns the events.
fn poll(c: &mut Cluster, now: Instant, reply: &[u8]) -> Vec<Event> {
    let mut events = Vec::new();
    let mut pending: Vec<(Token, Request)> = Vec::new();
    loop {
        while let Some(out) = c.poll_output() {
            match out {
                Output::Request { token, request } => pending.push((token, request)),
                Output::Event(e) => events.push(e),
                _ => {}
            }
        }
        let Some((token, request)) = pending.pop() else {
            return events;
        };
        match request {
            Request::Exchange(_) => {
                for answer in [Answer::Data(reply), Answer::Closed] {
                    c.handle_input(now, Input::Answer { token, answer });
                }
            }
            Request::ListNodes { .. } => c.handle_input(
                now,
                Input::Answer {
                    token,
                    answer: Answer::Nodes(&[]),
                },
            ),
            _ => {}
        }
    }
}

#[test]
fn a_bad_name_is_skipped_and_reported_once_per_interval() {
    let config = ClusterConfig::new()
        .this_node("me@127.0.0.1".parse().unwrap())
        .discovery_only(true);
    let mut c = Cluster::new(config, [5; 32]);
    let every = Duration::from_secs(5);
    let spec = TopologySpec::new("local", LocalEpmd::new(LocalEpmdConfig::new(4369, every)));
    let now = Instant::ZERO;
    c.add(now, spec).unwrap();
    // A name with an escape sequence, one that breaks its line, one with a space. (A line
    // break can also forge a whole line, which no listing can tell from a real one: that is
    // why muster's EPMD refuses such names at registration.)
    let reply = listing(&["good", "evil\u{1b}[2J", "broken\n", "two words", "other"]);
    let events = poll(&mut c, now, &reply);
    let discovered: Vec<String> = events
        .iter()
        .filter(|e| e.name() == "discovered")
        .map(|e| e.node().unwrap().to_string())
        .collect();
    assert_eq!(discovered, ["good@127.0.0.1", "other@127.0.0.1"]);
    assert!(
        !events.iter().any(|e| e.name() == "discovery_failed"),
        "{events:?}"
    );
    let rejected: Vec<String> = events
        .iter()
        .filter(|e| e.name() == "rejected")
        .map(|e| e.reason().unwrap())
        .collect();
    // The escape, "name broken", " at port 40002", "two words": each once, escaped.
    assert_eq!(rejected.len(), 4, "{rejected:?}");
    assert!(
        rejected.iter().all(|r| !r.chars().any(char::is_control)),
        "{rejected:?}"
    );
    // The next poll within the interval reports nothing again, but counts.
    let before = c.metrics().rejected;
    let at = c.poll_timeout().unwrap();
    c.handle_timeout(at);
    let events = poll(&mut c, at, &reply);
    assert!(!events.iter().any(|e| e.name() == "rejected"), "{events:?}");
    assert!(c.metrics().rejected >= before + 4);
    assert_eq!(c.discovered(c.topologies().next().unwrap().0).count(), 2);
}
