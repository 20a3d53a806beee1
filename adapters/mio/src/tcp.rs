//! The `tcp` connector for the mio loop: connections opened on a worker thread.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use muster_core::Node;
use muster_core::connector::BoxFuture;

/// How long one connect attempt may block its worker.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The `tcp` connector for the mio loop: one held TCP connection per node (see
/// [`muster_net::held::TcpConnector`]). Connects block a worker thread of the loop (at most
/// 10 s each).
pub type TcpConnector = muster_net::held::TcpConnector<BlockingOpen>;

/// Opens by blocking, as the loop's workers may: the host resolved, each address tried in
/// turn.
#[derive(Debug, Default, Clone, Copy)]
pub struct BlockingOpen;

impl muster_net::held::Open for BlockingOpen {
    fn open(node: Node, port: u16) -> BoxFuture<Result<TcpStream, muster_core::Failure>> {
        // The loop runs this on a worker thread: blocking here is what it is for.
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = match node.addr {
                Some(a) => vec![a],
                None => {
                    let host = node.name.host();
                    (host, port)
                        .to_socket_addrs()
                        .map_err(|e| muster_core::Failure::io(host, &e))?
                        .collect()
                }
            };
            let mut last = muster_net::held::no_address(node.name.host());
            for addr in addrs {
                match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
                    Ok(s) => return Ok(s),
                    Err(e) => last = muster_core::Failure::io(addr, &e),
                }
            }
            Err(last)
        })
    }
}
