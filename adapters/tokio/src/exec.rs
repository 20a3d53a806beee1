//! Executes the core's requests: each one a task that sends back owned answers.

use std::sync::Arc;

use muster_core::{Endpoint, Exchange, Failure, FailureKind, Request, Token};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant as TokioInstant;

use muster_core::connector::Connector;

pub(crate) use muster_core::OwnedAnswer as Owned;

pub(crate) type Answers = mpsc::Sender<(Token, Owned)>;

/// Runs `request` on its own task in `tasks`, within its deadline. Returns the handle of a
/// stream exchange, which the core may cancel.
pub(crate) fn spawn(
    tasks: &mut JoinSet<()>,
    connector: &Arc<dyn Connector>,
    answers: &Answers,
    token: Token,
    request: Request,
    deadline_of: impl Fn(muster_core::Instant) -> TokioInstant,
) -> Option<AbortHandle> {
    let tx = answers.clone();
    match request {
        Request::Connect { node, deadline } => {
            let fut = connector.connect(node);
            let at = deadline_of(deadline);
            tasks.spawn(async move {
                let a = match tokio::time::timeout_at(at, fut).await {
                    Ok(outcome) => outcome.into(),
                    Err(_) => Owned::TimedOut,
                };
                let _ = tx.send((token, a)).await;
            });
        }
        Request::Disconnect { node, deadline } => {
            let fut = connector.disconnect(node);
            let at = deadline_of(deadline);
            tasks.spawn(async move {
                let a = match tokio::time::timeout_at(at, fut).await {
                    Ok(outcome) => outcome.into(),
                    Err(_) => Owned::TimedOut,
                };
                let _ = tx.send((token, a)).await;
            });
        }
        Request::ListNodes { deadline } => {
            let fut = connector.list_nodes();
            let at = deadline_of(deadline);
            tasks.spawn(async move {
                let a = match tokio::time::timeout_at(at, fut).await {
                    Ok(Ok(nodes)) => Owned::Nodes(nodes),
                    Ok(Err(e)) => {
                        tracing::warn!(reason = %e, "the connector could not list its nodes");
                        Owned::Failed(e)
                    }
                    Err(_) => {
                        tracing::warn!("the connector did not list its nodes in time");
                        Owned::TimedOut
                    }
                };
                let _ = tx.send((token, a)).await;
            });
        }
        Request::ReadFile { path, deadline } => {
            let at = deadline_of(deadline);
            tasks.spawn(async move {
                let a = match tokio::time::timeout_at(at, tokio::fs::read(&path)).await {
                    Ok(Ok(data)) => Owned::Data(data),
                    Ok(Err(e)) => Owned::Failed(Failure::io(&path, &e)),
                    Err(_) => Owned::TimedOut,
                };
                let _ = tx.send((token, a)).await;
            });
        }
        Request::Exchange(x) => {
            let at = deadline_of(x.deadline);
            return Some(tasks.spawn(async move {
                let tx2 = tx.clone();
                let last = match tokio::time::timeout_at(at, exchange(x, token, &tx2)).await {
                    Ok(Ok(())) => Owned::Closed,
                    Ok(Err(e)) => Owned::Failed(e),
                    Err(_) => Owned::TimedOut,
                };
                let _ = tx.send((token, last)).await;
            }));
        }
        other => {
            let why = Failure::new(
                FailureKind::Unsupported,
                format!("this adapter cannot perform {other:?}"),
            );
            tasks.spawn(async move {
                let _ = tx.send((token, Owned::Failed(why))).await;
            });
        }
    }
    None
}

async fn exchange(x: Exchange, token: Token, tx: &Answers) -> Result<(), Failure> {
    let stream = match &x.to {
        Endpoint::Addr(a) => TcpStream::connect(a).await,
        Endpoint::Host { host, port } => TcpStream::connect((host.as_str(), *port)).await,
        other => {
            let why = format!("unsupported endpoint {other}");
            return Err(Failure::new(FailureKind::Unsupported, why));
        }
    }
    .map_err(|e| Failure::io(&x.to, &e))?;
    match &x.tls {
        None => pump(stream, &x, token, tx).await,
        Some(tls) => {
            let (config, name) = muster_net::tls::client_config(tls)
                .map_err(|e| Failure::new(FailureKind::Tls, format!("{}: {e}", x.to)))?;
            let stream = tokio_rustls::TlsConnector::from(config)
                .connect(name, stream)
                .await
                .map_err(|e| muster_net::tls::handshake_failure(&x.to, tls, &e))?;
            pump(stream, &x, token, tx).await
        }
    }
}

/// Writes the request, then passes on what comes back until the peer closes.
async fn pump(
    mut stream: impl AsyncRead + AsyncWrite + Unpin,
    x: &Exchange,
    token: Token,
    tx: &Answers,
) -> Result<(), Failure> {
    stream
        .write_all(&x.send)
        .await
        .map_err(|e| Failure::io(&x.to, &e))?;
    stream.flush().await.map_err(|e| Failure::io(&x.to, &e))?;
    let mut total = 0usize;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(n) => n,
            // A TLS peer that closes without close_notify: the core's framing decides
            // whether what came is whole.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
            Err(e) => return Err(Failure::io(&x.to, &e)),
        };
        if n == 0 {
            return Ok(());
        }
        total += n;
        if total > x.max_reply {
            return Err(muster_net::too_large(&x.to, x.max_reply));
        }
        if tx
            .send((token, Owned::Data(buf[..n].to_vec())))
            .await
            .is_err()
        {
            return Ok(());
        }
    }
}
