//! Executes the core's requests: each one a future, run concurrently inside the driver, that
//! sends back owned answers.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant as StdInstant;

use async_io::Timer;
use async_net::TcpStream;
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, FutureExt};
use muster_core::connector::Connector;
use muster_core::{Endpoint, Exchange, OwnedAnswer, Request, Token};

use crate::driver::{Inbox, InboxTx};

/// A request's future, and whether the core may cancel it (a stream exchange).
pub(crate) struct Job {
    pub(crate) future: Pin<Box<dyn Future<Output = ()> + Send>>,
    pub(crate) stream: bool,
}

/// `work`, or `TimedOut` when `at` passes first.
async fn deadline(at: StdInstant, work: impl Future<Output = OwnedAnswer>) -> OwnedAnswer {
    work.or(async {
        Timer::at(at).await;
        OwnedAnswer::TimedOut
    })
    .await
}

/// The future that performs `request` and answers `token`; `deadline_of` maps the core's
/// deadlines, `fallback` is the deadline of a request without one.
pub(crate) fn run(
    connector: &Arc<dyn Connector>,
    tx: InboxTx,
    token: Token,
    request: Request,
    deadline_of: impl Fn(muster_core::Instant) -> StdInstant,
    fallback: StdInstant,
) -> Job {
    let answer = move |tx: InboxTx, a: OwnedAnswer| async move {
        let _ = tx.send(Inbox::Answer(token, a)).await;
    };
    let future: Pin<Box<dyn Future<Output = ()> + Send>> = match request {
        Request::Connect { node, deadline: at } => {
            let fut = connector.connect(node);
            let at = deadline_of(at);
            Box::pin(async move {
                let a = deadline(at, async { fut.await.into() }).await;
                answer(tx, a).await;
            })
        }
        Request::Disconnect { node } => {
            let fut = connector.disconnect(node);
            Box::pin(async move {
                let a = deadline(fallback, async { fut.await.into() }).await;
                answer(tx, a).await;
            })
        }
        Request::ListNodes => {
            let fut = connector.list_nodes();
            Box::pin(async move {
                let a = deadline(fallback, async { fut.await.into() }).await;
                match &a {
                    OwnedAnswer::Failed(e) => {
                        tracing::warn!(reason = %e, "the connector could not list its nodes")
                    }
                    OwnedAnswer::TimedOut => {
                        tracing::warn!("the connector did not list its nodes in time")
                    }
                    _ => {}
                }
                answer(tx, a).await;
            })
        }
        // Small local files (a token, a CA, resolv.conf): read on blocking's thread pool, as
        // async-fs does.
        Request::ReadFile { path } => Box::pin(async move {
            let read = blocking::unblock({
                let path = path.clone();
                move || std::fs::read(path)
            })
            .await;
            let a = match read {
                Ok(data) => OwnedAnswer::Data(data),
                Err(e) => OwnedAnswer::Failed(format!("{path}: {e}")),
            };
            answer(tx, a).await;
        }),
        Request::Exchange(x) => {
            let at = deadline_of(x.deadline);
            return Job {
                future: Box::pin(async move {
                    let a = deadline(at, async {
                        match exchange(&x, token, &tx).await {
                            Ok(()) => OwnedAnswer::Closed,
                            Err(e) => OwnedAnswer::Failed(e),
                        }
                    })
                    .await;
                    answer(tx, a).await;
                }),
                stream: true,
            };
        }
        other => {
            let why = format!("this adapter cannot perform {other:?}");
            Box::pin(answer(tx, OwnedAnswer::Failed(why)))
        }
    };
    Job {
        future,
        stream: false,
    }
}

async fn exchange(x: &Exchange, token: Token, tx: &InboxTx) -> Result<(), String> {
    let stream = match &x.to {
        Endpoint::Addr(a) => TcpStream::connect(*a).await,
        Endpoint::Host { host, port } => TcpStream::connect((host.as_str(), *port)).await,
        other => return Err(format!("unsupported endpoint {other}")),
    }
    .map_err(|e| format!("{}: {e}", x.to))?;
    match &x.tls {
        None => pump(stream, x, token, tx).await,
        Some(tls) => {
            let (config, name) =
                muster_net::tls::client_config(tls).map_err(|e| format!("{}: {e}", x.to))?;
            let stream = futures_rustls::TlsConnector::from(config)
                .connect(name, stream)
                .await
                .map_err(|e| format!("{}: TLS with {:?}: {e}", x.to, tls.server_name))?;
            pump(stream, x, token, tx).await
        }
    }
}

/// Writes the request, then passes on what comes back until the peer closes.
async fn pump(
    mut stream: impl AsyncRead + AsyncWrite + Unpin,
    x: &Exchange,
    token: Token,
    tx: &InboxTx,
) -> Result<(), String> {
    stream
        .write_all(&x.send)
        .await
        .map_err(|e| format!("{}: {e}", x.to))?;
    stream.flush().await.map_err(|e| format!("{}: {e}", x.to))?;
    let mut total = 0usize;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(n) => n,
            // A TLS peer that closes without close_notify: the core's framing decides
            // whether what came is whole.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
            Err(e) => return Err(format!("{}: {e}", x.to)),
        };
        if n == 0 {
            return Ok(());
        }
        total += n;
        if total > x.max_reply {
            return Err(format!("{}: reply larger than {} bytes", x.to, x.max_reply));
        }
        if tx
            .send(Inbox::Answer(token, OwnedAnswer::Data(buf[..n].to_vec())))
            .await
            .is_err()
        {
            return Ok(());
        }
    }
}
