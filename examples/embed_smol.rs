//! Embedding muster in a smol (or async-std) program through the async-io adapter: a static
//! list of peers, the `tcp` connector, the event stream, and a clean exit.
//!
//! The cluster is one future, the driver, spawned on the executor the program already has:
//! `smol::spawn(driver)` here, `async_std::task::spawn(driver)` on async-std.
//! `cargo run --features async-std --example embed_smol`.

use std::net::TcpListener;
use std::time::Duration;

use muster::async_io::{Builder, TcpConnector};
use muster::core::strategy::epmd::{Epmd, EpmdConfig};
use muster::core::{Event, Node, TopologySpec};

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

    smol::block_on(async {
        // This node: the Epmd strategy over the peers, reconnecting every 5 s.
        let (cluster, mut events, driver) = Builder::new(TcpConnector::new(7000))
            .this_node("web@127.0.0.1".parse()?)
            .topology(TopologySpec::new(
                "app",
                Epmd::new(EpmdConfig::new(peers).reconnect_every(Duration::from_secs(5))),
            ))
            .build()?;
        let running = smol::spawn(driver);

        // Watch what happens until both peers are connected.
        let mut connected = 0;
        while let Some(event) = events.recv().await {
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

        // Leave: disconnect what we connected, then stop; the driver future then ends.
        cluster.leave().await;
        running.await;
        Ok(())
    })
}
