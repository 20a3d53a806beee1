//! The core's one-shot requests — connector calls, file reads, exchanges — each a task that
//! answers with owned values, within the request's own deadline.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant as StdInstant;

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, FutureExt};
use muster_core::connector::Connector;
use muster_core::{Endpoint, Exchange, Failure, FailureKind, OwnedAnswer, Token};

use crate::Runtime;
use crate::inbox::{Inbox, InboxTx};

/// `work`, or `TimedOut` once `at` has passed.
pub(crate) async fn within<R: Runtime>(
    runtime: &R,
    at: StdInstant,
    work: impl Future<Output = OwnedAnswer>,
) -> OwnedAnswer {
    let timer = runtime.sleep_until(at);
    work.or(async move {
        timer.await;
        OwnedAnswer::TimedOut
    })
    .await
}

/// Sends `answer` for `token`; false once the driver is gone.
pub(crate) async fn answer(tx: &InboxTx, token: Token, answer: OwnedAnswer) -> bool {
    tx.send(Inbox::Answer(token, answer)).await.is_ok()
}

/// A connect through the connector.
pub(crate) fn connect<R: Runtime>(
    runtime: R,
    connector: &Arc<dyn Connector>,
    tx: InboxTx,
    token: Token,
    node: muster_core::Node,
    at: StdInstant,
) -> impl Future<Output = ()> + Send + 'static {
    let call = connector.connect(node);
    async move {
        let a = within(&runtime, at, async { call.await.into() }).await;
        answer(&tx, token, a).await;
    }
}

/// A disconnect through the connector.
pub(crate) fn disconnect<R: Runtime>(
    runtime: R,
    connector: &Arc<dyn Connector>,
    tx: InboxTx,
    token: Token,
    node: muster_core::NodeName,
    at: StdInstant,
) -> impl Future<Output = ()> + Send + 'static {
    let call = connector.disconnect(node);
    async move {
        let a = within(&runtime, at, async { call.await.into() }).await;
        answer(&tx, token, a).await;
    }
}

/// The connector's list of connected nodes.
pub(crate) fn list<R: Runtime>(
    runtime: R,
    connector: &Arc<dyn Connector>,
    tx: InboxTx,
    token: Token,
    at: StdInstant,
) -> impl Future<Output = ()> + Send + 'static {
    let call = connector.list_nodes();
    async move {
        let a = within(&runtime, at, async { call.await.into() }).await;
        match &a {
            OwnedAnswer::Failed(e) => {
                tracing::warn!(reason = %e, "the connector could not list its nodes")
            }
            OwnedAnswer::TimedOut => tracing::warn!("the connector did not list its nodes in time"),
            _ => {}
        }
        answer(&tx, token, a).await;
    }
}

/// A whole file.
pub(crate) async fn read_file<R: Runtime>(
    runtime: R,
    tx: InboxTx,
    token: Token,
    path: String,
    at: StdInstant,
) {
    let read = runtime.read_file(path.clone());
    let a = within(&runtime, at, async {
        match read.await {
            Ok(data) => OwnedAnswer::Data(data),
            Err(e) => OwnedAnswer::Failed(Failure::io(&path, &e)),
        }
    })
    .await;
    answer(&tx, token, a).await;
}

/// An exchange: connect (TLS if asked), write, pass on what comes back until the peer
/// closes.
pub(crate) async fn exchange<R: Runtime>(
    runtime: R,
    tx: InboxTx,
    token: Token,
    x: Exchange,
    at: StdInstant,
) {
    let a = within(&runtime, at, async {
        match run_exchange(&runtime, &x, token, &tx).await {
            Ok(()) => OwnedAnswer::Closed,
            Err(e) => OwnedAnswer::Failed(e),
        }
    })
    .await;
    answer(&tx, token, a).await;
}

/// Connects to `to`: its address, or each address of its host in turn. The stream, and the
/// address it is connected to.
pub(crate) async fn connect_endpoint<R: Runtime>(
    runtime: &R,
    to: &Endpoint,
) -> Result<(R::Tcp, std::net::SocketAddr), Failure> {
    let addrs = match to {
        Endpoint::Addr(a) => vec![*a],
        Endpoint::Host { host, port } => runtime
            .resolve(host.clone(), *port)
            .await
            .map_err(|e| Failure::io(to, &e))?,
        other => {
            let why = format!("unsupported endpoint {other}");
            return Err(Failure::new(FailureKind::Unsupported, why));
        }
    };
    let mut last = Failure::new(FailureKind::NotFound, format!("{to}: no address"));
    for addr in addrs {
        match runtime.connect(addr).await {
            Ok(s) => return Ok((s, addr)),
            Err(e) => last = Failure::io(to, &e),
        }
    }
    Err(last)
}

async fn run_exchange<R: Runtime>(
    runtime: &R,
    x: &Exchange,
    token: Token,
    tx: &InboxTx,
) -> Result<(), Failure> {
    let (stream, _) = connect_endpoint(runtime, &x.to).await?;
    match &x.tls {
        None => pump(stream, x, token, tx).await,
        Some(tls) => {
            let (config, name) = muster_net::tls::client_config(tls)
                .map_err(|e| Failure::new(FailureKind::Tls, format!("{}: {e}", x.to)))?;
            let stream = futures_rustls::TlsConnector::from(config)
                .connect(name, stream)
                .await
                .map_err(|e| muster_net::tls::handshake_failure(&x.to, tls, &e))?;
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
        if !answer(tx, token, OwnedAnswer::Data(buf[..n].to_vec())).await {
            return Ok(());
        }
    }
}
