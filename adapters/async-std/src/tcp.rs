//! The `tcp` connector on async-io: connections opened with async-net.

use std::net::{SocketAddr, TcpStream};

use async_io::Async;
use muster_core::Node;
use muster_core::connector::BoxFuture;

/// The `tcp` connector on async-io: one held TCP connection per node (see
/// [`muster_net::held::TcpConnector`]), opened without blocking.
pub type TcpConnector = muster_net::held::TcpConnector<AsyncOpen>;

/// Opens with async-net: the host resolved, each address tried in turn.
#[derive(Debug, Default, Clone, Copy)]
pub struct AsyncOpen;

impl muster_net::held::Open for AsyncOpen {
    fn open(node: Node, port: u16) -> BoxFuture<Result<TcpStream, String>> {
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = match node.addr {
                Some(a) => vec![a],
                None => {
                    let host = node.name.host();
                    async_net::resolve((host, port))
                        .await
                        .map_err(|e| format!("{host}: {e}"))?
                }
            };
            let mut last = format!("{}: no address", node.name.host());
            for addr in addrs {
                match Async::<TcpStream>::connect(addr).await {
                    Ok(s) => return s.into_inner().map_err(|e| format!("{addr}: {e}")),
                    Err(e) => last = format!("{addr}: {e}"),
                }
            }
            Err(last)
        })
    }
}
