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
    fn open(node: Node, port: u16) -> BoxFuture<Result<TcpStream, muster_core::Failure>> {
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = match node.addr {
                Some(a) => vec![a],
                None => {
                    let host = node.name.host();
                    async_net::resolve((host, port))
                        .await
                        .map_err(|e| muster_core::Failure::io(host, &e))?
                }
            };
            let mut last = muster_net::held::no_address(node.name.host());
            for addr in addrs {
                match Async::<TcpStream>::connect(addr).await {
                    Ok(s) => {
                        return s
                            .into_inner()
                            .map_err(|e| muster_core::Failure::io(addr, &e));
                    }
                    Err(e) => last = muster_core::Failure::io(addr, &e),
                }
            }
            Err(last)
        })
    }
}
