//! Embedding muster in a program with no async runtime, through the mio adapter: the loop
//! runs on a thread of its own; the program watches events and stops it through a handle.
//! `cargo run --features mio --example embed_mio`.

use std::net::TcpListener;
use std::time::Duration;

use muster::core::strategy::epmd::{Epmd, EpmdConfig};
use muster::core::{Event, Node, TopologySpec};
use muster::mio::{Builder, TcpConnector};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Two services that accept connections (stand-ins for your peers).
    let mut peers = Vec::new();
    for name in ["orders@127.0.0.1", "billing@127.0.0.1"] {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        peers.push(Node::with_addr(name.parse()?, listener.local_addr()?));
        std::thread::spawn(move || {
            let held: Vec<_> = listener.incoming().collect();
            drop(held);
        });
    }

    // This node: the Epmd strategy over the peers, reconnecting every 5 s. Connects run on
    // the loop's worker threads, so the connector may block.
    let (cluster, events, event_loop) = Builder::new(TcpConnector::new(7000))
        .this_node("web@127.0.0.1".parse()?)
        .topology(TopologySpec::new(
            "app",
            Epmd::new(EpmdConfig::new(peers).reconnect_every(Duration::from_secs(5))),
        ))
        .build()?;
    let running = std::thread::spawn(move || event_loop.run());

    // Watch what happens (events are read by blocking) until both peers are connected.
    let mut connected = 0;
    for event in events {
        println!("{event}");
        if let Event::Connected { .. } = event {
            connected += 1;
            if connected == 2 {
                break;
            }
        }
    }
    println!("members: {:?}", cluster.members());
    println!("metrics: {:?}", cluster.metrics());

    // Leave: disconnect what we connected, then stop; the loop's thread then returns.
    cluster.leave();
    running.join().map_err(|_| "the loop panicked")??;
    Ok(())
}
