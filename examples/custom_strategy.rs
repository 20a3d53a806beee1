//! A strategy of your own, in your own crate: it asks a registry service for the node list
//! over TCP every few seconds, and plugs into muster exactly as the built-in strategies do.
//! The connector is a set of closures, as you would write for your own RPC mesh.
//!
//! `cargo run --example custom_strategy`

use std::time::Duration;

use muster::core::strategy::{Context, ExchangeId, Periodic, Reply, Strategy};
use muster::core::{DiscoveryError, Endpoint, Event, Exchange, Instant, TopologySpec};
use muster::tokio::{Builder, CallbackConnector, ConnectOutcome, DisconnectOutcome};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Polls a registry that answers `LIST\n` with one node name per line.
struct Registry {
    at: Endpoint,
    every: Periodic,
    asking: Option<ExchangeId>,
    reply: Vec<u8>,
}

impl Strategy for Registry {
    fn kind(&self) -> &'static str {
        "registry"
    }

    // `start` is `handle_timeout` unless a strategy says otherwise: the first poll is at once.
    fn handle_timeout(&mut self, now: Instant, cx: &mut Context<'_>) {
        if !self.every.fire(now) {
            return;
        }
        if let Some(late) = self.asking.take() {
            cx.cancel_exchange(late);
        }
        let ask = Exchange::tcp(
            self.at.clone(),
            "LIST\n".into(),
            now + Duration::from_secs(2),
        )
        .max_reply(64 * 1024);
        self.reply.clear();
        self.asking = Some(cx.exchange(ask));
    }

    fn handle_exchange(
        &mut self,
        _now: Instant,
        exchange: ExchangeId,
        reply: Reply<'_>,
        cx: &mut Context<'_>,
    ) {
        if self.asking != Some(exchange) {
            return;
        }
        let source = format!("registry at {}", self.at);
        match reply {
            Reply::Data(chunk) => self.reply.extend_from_slice(chunk),
            Reply::Closed => {
                self.asking = None;
                let text = String::from_utf8_lossy(&self.reply).into_owned();
                let mut round = cx.round();
                for line in text.lines().filter(|l| !l.is_empty()) {
                    if let Err(e) = round.add(line, None) {
                        // A bad answer is a failed discovery: the last good set stays.
                        let why = format!("it sent {line:?}: {e}");
                        return round.fail(DiscoveryError::invalid(source, why));
                    }
                }
                round.commit();
            }
            Reply::Failed(why) => {
                self.asking = None;
                cx.discovery_failed(DiscoveryError::request(source, why.clone()));
            }
            _ => {
                self.asking = None;
                cx.discovery_failed(format!("{source}: no answer in time"));
            }
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.every.next()
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The registry service.
    let registry = TcpListener::bind("127.0.0.1:0").await?;
    let at = Endpoint::Addr(registry.local_addr()?);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = registry.accept().await {
            let mut ask = [0u8; 5];
            if s.read_exact(&mut ask).await.is_ok() {
                let _ = s.write_all(b"a@10.0.0.1\nb@10.0.0.2\n").await;
            }
        }
    });

    // Your plumbing.
    let connector = CallbackConnector::new(
        |node| async move {
            println!("  (your mesh connects to {})", node.name);
            ConnectOutcome::Connected
        },
        |name| async move {
            println!("  (your mesh drops {name})");
            DisconnectOutcome::Disconnected
        },
        || async { Ok(Vec::new()) },
    );

    let strategy = Registry {
        at,
        every: Periodic::new(Duration::from_secs(5)),
        asking: None,
        reply: Vec::new(),
    };
    let (cluster, mut events) = Builder::new(connector)
        .topology(TopologySpec::new("registry", strategy))
        .spawn()?;
    let mut connected = 0;
    while let Some(event) = events.recv().await {
        println!("{event}");
        if matches!(event, Event::Connected { .. }) {
            connected += 1;
            if connected == 2 {
                break;
            }
        }
    }
    cluster.shutdown().await;
    Ok(())
}
