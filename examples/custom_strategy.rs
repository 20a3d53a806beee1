//! A strategy of your own, in your own crate: it asks a registry service for the node list
//! over TCP every few seconds, and plugs into muster exactly as the built-in strategies do.
//! The connector is a set of closures, as you would write for your own RPC mesh.
//!
//! `cargo run --example custom_strategy`

use std::time::Duration;

use muster::core::strategy::{Context, Strategy};
use muster::core::{
    Answer, ConnectPolicy, Endpoint, Event, Exchange, Instant, Request, Token, TopologySpec,
};
use muster::tokio::{Builder, CallbackConnector, ConnectOutcome, DisconnectOutcome};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Polls a registry that answers `LIST\n` with one node name per line.
struct Registry {
    at: Endpoint,
    every: Duration,
    next: Option<Instant>,
    asking: Option<Token>,
    reply: Vec<u8>,
}

impl Registry {
    fn poll(&mut self, now: Instant, cx: &mut Context<'_>) {
        let ask = Exchange::tcp(
            self.at.clone(),
            "LIST\n".into(),
            now + Duration::from_secs(2),
        )
        .max_reply(64 * 1024);
        self.reply.clear();
        self.asking = Some(cx.request(Request::Exchange(ask)));
        self.next = Some(now + self.every);
    }
}

impl Strategy for Registry {
    fn kind(&self) -> &'static str {
        "registry"
    }

    fn start(&mut self, now: Instant, cx: &mut Context<'_>) {
        self.poll(now, cx);
    }

    fn handle_timeout(&mut self, now: Instant, cx: &mut Context<'_>) {
        if self.next.is_some_and(|t| t <= now) {
            self.poll(now, cx);
        }
    }

    fn handle_answer(
        &mut self,
        _now: Instant,
        token: Token,
        answer: Answer<'_>,
        cx: &mut Context<'_>,
    ) {
        if self.asking != Some(token) {
            return;
        }
        match answer {
            Answer::Data(chunk) => self.reply.extend_from_slice(chunk),
            Answer::Closed => {
                self.asking = None;
                let text = String::from_utf8_lossy(&self.reply).into_owned();
                let mut round = cx.round();
                for line in text.lines().filter(|l| !l.is_empty()) {
                    if let Err(e) = round.add(line, None) {
                        // A bad answer is a failed discovery: keep the last good set.
                        drop(round);
                        cx.discovery_failed(format!("registry sent {line:?}: {e}"));
                        return;
                    }
                }
                round.commit();
            }
            other => {
                self.asking = None;
                cx.discovery_failed(format!("registry: {other:?}"));
            }
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.next
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
        every: Duration::from_secs(5),
        next: None,
        asking: None,
        reply: Vec::new(),
    };
    let (cluster, mut events) = Builder::new(connector)
        .topology(TopologySpec {
            name: "registry".into(),
            strategy: Box::new(strategy),
            policy: ConnectPolicy::default(),
        })
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
