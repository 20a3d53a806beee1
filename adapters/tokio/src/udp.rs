//! UDP sockets for the core: opened with the options it asks for, each with a task that hands
//! arriving datagrams to the driver.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use muster_core::{Endpoint, Multicast, MulticastInterface, Token, UdpOptions};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

/// A datagram that arrived, for the driver.
pub(crate) type Arrival = (Token, SocketAddr, Vec<u8>);

/// The largest datagram read; longer ones arrive truncated (and the core rejects them on
/// size before anything else).
const READ_BUF: usize = 2048;

struct Open {
    socket: Arc<UdpSocket>,
    reader: AbortHandle,
}

/// The sockets the core opened, by the token of their `OpenUdp` request.
#[derive(Default)]
pub(crate) struct Sockets {
    open: HashMap<Token, Open>,
}

fn interface_index(name: &str) -> io::Result<u32> {
    // The kernel's own table; no libc call needed on Linux.
    let path = format!("/sys/class/net/{name}/ifindex");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| io::Error::new(e.kind(), format!("no interface {name:?} ({e})")))?;
    text.trim()
        .parse()
        .map_err(|_| io::Error::other(format!("{path}: not an index")))
}

fn join(socket: &Socket, m: &Multicast) -> io::Result<()> {
    match m.group {
        IpAddr::V4(group) => {
            let iface = match &m.interface {
                MulticastInterface::V4(a) => *a,
                _ => Ipv4Addr::UNSPECIFIED,
            };
            socket.join_multicast_v4(&group, &iface)?;
            if !iface.is_unspecified() {
                socket.set_multicast_if_v4(&iface)?;
            }
            socket.set_multicast_ttl_v4(m.ttl)?;
            socket.set_multicast_loop_v4(m.loopback)
        }
        IpAddr::V6(group) => {
            let index = match &m.interface {
                MulticastInterface::Index(i) => *i,
                MulticastInterface::Name(n) => interface_index(n)?,
                _ => 0,
            };
            socket.join_multicast_v6(&group, index)?;
            if index != 0 {
                socket.set_multicast_if_v6(index)?;
            }
            socket.set_multicast_hops_v6(m.ttl)?;
            socket.set_multicast_loop_v6(m.loopback)
        }
    }
}

/// Opens a socket as `opts` says; the error names the address, the interface and the OS
/// error (libcluster crashes instead: its issues #94, #189, #206).
fn open(opts: &UdpOptions) -> Result<std::net::UdpSocket, String> {
    let bind = opts.bind;
    let domain = Domain::for_address(bind);
    let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))
        .map_err(|e| format!("cannot create a UDP socket for {bind}: {e}"))?;
    let step =
        |what: &str, r: io::Result<()>| r.map_err(|e| format!("cannot {what} on UDP {bind}: {e}"));
    if opts.reuse {
        step("set SO_REUSEADDR", socket.set_reuse_address(true))?;
        #[cfg(unix)]
        step("set SO_REUSEPORT", socket.set_reuse_port(true))?;
    }
    if opts.broadcast {
        step("set SO_BROADCAST", socket.set_broadcast(true))?;
    }
    if bind.is_ipv6() {
        step("set IPV6_V6ONLY", socket.set_only_v6(true))?;
    }
    step("set non-blocking mode", socket.set_nonblocking(true))?;
    socket
        .bind(&bind.into())
        .map_err(|e| format!("cannot bind UDP {bind}: {e}"))?;
    if let Some(m) = &opts.multicast {
        join(&socket, m).map_err(|e| {
            format!(
                "cannot join multicast group {} on {}: {e}",
                m.group, m.interface
            )
        })?;
    }
    Ok(socket.into())
}

impl Sockets {
    /// Opens the socket for `token` and starts its reader. Returns the bound address.
    pub(crate) fn open(
        &mut self,
        token: Token,
        opts: &UdpOptions,
        arrivals: &mpsc::Sender<Arrival>,
    ) -> Result<SocketAddr, String> {
        let std_socket = open(opts)?;
        let socket = UdpSocket::from_std(std_socket)
            .map_err(|e| format!("cannot register UDP {}: {e}", opts.bind))?;
        let local = socket.local_addr().unwrap_or(opts.bind);
        let socket = Arc::new(socket);
        let reader_socket = socket.clone();
        let tx = arrivals.clone();
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; READ_BUF];
            loop {
                match reader_socket.recv_from(&mut buf).await {
                    Ok((n, from)) => {
                        if tx.send((token, from, buf[..n].to_vec())).await.is_err() {
                            return;
                        }
                    }
                    // ICMP errors from earlier sends surface here on some systems; the
                    // socket is still good.
                    Err(e) => tracing::debug!(%e, "UDP receive error"),
                }
            }
        });
        self.open.insert(
            token,
            Open {
                socket,
                reader: reader.abort_handle(),
            },
        );
        Ok(local)
    }

    /// Sends `data` on socket `token`. Returns a failure to report on the socket's token, or
    /// `None` when the send went out or continues on a task (which reports through
    /// `failures`).
    pub(crate) fn send(
        &self,
        token: Token,
        to: Endpoint,
        data: Bytes,
        failures: &mpsc::Sender<(Token, String)>,
    ) -> Option<String> {
        let open = self.open.get(&token)?;
        let socket = open.socket.clone();
        if let Endpoint::Addr(addr) = &to {
            match socket.try_send_to(&data, *addr) {
                Ok(_) => return None,
                Err(e) if e.kind() != io::ErrorKind::WouldBlock => {
                    return Some(format!("sending to {addr}: {e}"));
                }
                Err(_) => {}
            }
        }
        // A host name to resolve, or a full send buffer: finish on a task.
        let failures = failures.clone();
        tokio::spawn(async move {
            let result = match &to {
                Endpoint::Addr(a) => socket.send_to(&data, *a).await.map(|_| ()),
                Endpoint::Host { host, port } => {
                    match tokio::net::lookup_host((host.as_str(), *port)).await {
                        Ok(mut addrs) => match addrs.find(|a| {
                            a.is_ipv4() == socket.local_addr().map(|l| l.is_ipv4()).unwrap_or(true)
                        }) {
                            Some(a) => socket.send_to(&data, a).await.map(|_| ()),
                            None => Err(io::Error::other("no address of the socket's family")),
                        },
                        Err(e) => Err(e),
                    }
                }
                other => Err(io::Error::other(format!("cannot send to {other}"))),
            };
            if let Err(e) = result {
                let _ = failures.try_send((token, format!("sending to {to}: {e}")));
            }
        });
        None
    }

    /// Closes socket `token`.
    pub(crate) fn close(&mut self, token: Token) {
        if let Some(o) = self.open.remove(&token) {
            o.reader.abort();
        }
    }

    /// Closes every socket.
    pub(crate) fn close_all(&mut self) {
        for (_, o) in self.open.drain() {
            o.reader.abort();
        }
    }
}
