//! Executes the core's requests: each one a task that sends back owned answers.

use std::sync::Arc;

use muster_core::{Endpoint, Exchange, Request, Token};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant as TokioInstant;

use muster_core::connector::Connector;

pub(crate) use muster_core::OwnedAnswer as Owned;

pub(crate) type Answers = mpsc::Sender<(Token, Owned)>;

/// Runs `request` on its own task in `tasks`; `deadline` is the request's own when it has
/// one, else `fallback`. Returns the handle of a stream exchange, which the core may cancel.
pub(crate) fn spawn(
    tasks: &mut JoinSet<()>,
    connector: &Arc<dyn Connector>,
    answers: &Answers,
    token: Token,
    request: Request,
    deadline_of: impl Fn(muster_core::Instant) -> TokioInstant,
    fallback: TokioInstant,
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
        Request::Disconnect { node } => {
            let fut = connector.disconnect(node);
            tasks.spawn(async move {
                let a = match tokio::time::timeout_at(fallback, fut).await {
                    Ok(outcome) => outcome.into(),
                    Err(_) => Owned::TimedOut,
                };
                let _ = tx.send((token, a)).await;
            });
        }
        Request::ListNodes => {
            let fut = connector.list_nodes();
            tasks.spawn(async move {
                let a = match tokio::time::timeout_at(fallback, fut).await {
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
        Request::ReadFile { path } => {
            tasks.spawn(async move {
                let a = match tokio::fs::read(&path).await {
                    Ok(data) => Owned::Data(data),
                    Err(e) => Owned::Failed(format!("{path}: {e}")),
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
            let why = format!("this adapter cannot perform {other:?}");
            tasks.spawn(async move {
                let _ = tx.send((token, Owned::Failed(why))).await;
            });
        }
    }
    None
}

async fn exchange(x: Exchange, token: Token, tx: &Answers) -> Result<(), String> {
    let stream = match &x.to {
        Endpoint::Addr(a) => TcpStream::connect(a).await,
        Endpoint::Host { host, port } => TcpStream::connect((host.as_str(), *port)).await,
        other => return Err(format!("unsupported endpoint {other}")),
    }
    .map_err(|e| format!("{}: {e}", x.to))?;
    match &x.tls {
        None => pump(stream, &x, token, tx).await,
        Some(tls) => {
            let (config, name) =
                muster_net::tls::client_config(tls).map_err(|e| format!("{}: {e}", x.to))?;
            let stream = tokio_rustls::TlsConnector::from(config)
                .connect(name, stream)
                .await
                .map_err(|e| format!("{}: TLS with {:?}: {e}", x.to, tls.server_name))?;
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
            .send((token, Owned::Data(buf[..n].to_vec())))
            .await
            .is_err()
        {
            return Ok(());
        }
    }
}
