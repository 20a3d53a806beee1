//! Embedding muster in a tokio program: a static list of peers, the `tcp` connector, the
//! event stream, and a clean exit.
//!
//! The peers here are two TCP services this example starts itself, so it runs anywhere:
//! `cargo run --example embed_tokio`. In your program they are your other instances.

use std::time::Duration;

use muster::core::strategy::epmd::{Epmd, EpmdConfig};
use muster::core::{Event, Node, TopologySpec};
use muster::tokio::{Builder, TcpConnector};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Two services that accept connections (stand-ins for your peers).
    let mut peers = Vec::new();
    for name in ["orders@127.0.0.1", "billing@127.0.0.1"] {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        peers.push(Node::with_addr(name.parse()?, listener.local_addr()?));
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
    }

    // This node: the Epmd strategy over the peers, reconnecting every 5 s.
    let (cluster, mut events) = Builder::new(TcpConnector::new(7000))
        .this_node("web@127.0.0.1".parse()?)
        .topology(TopologySpec::new(
            "app",
            Epmd::new(EpmdConfig::new(peers).reconnect_every(Duration::from_secs(5))),
        ))
        .spawn()?;

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

    // Leave: disconnect what we connected, then stop.
    cluster.leave().await;
    Ok(())
}
