//! UDP sockets opened as the core asks: address and port reuse, broadcast, multicast
//! membership on the configured interface, IPv6-only for IPv6 binds, non-blocking.

use std::io;
use std::net::{IpAddr, Ipv4Addr};

use muster_core::{Failure, Multicast, MulticastInterface, UdpOptions};
use socket2::{Domain, Protocol, Socket, Type};

/// The largest datagram an adapter reads; longer ones arrive truncated (and the core rejects
/// them on size before anything else).
pub const READ_BUF: usize = 2048;

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

/// Opens a non-blocking socket as `opts` says; the error names the address, the interface and the OS
/// error (libcluster crashes instead: its issues #94, #189, #206).
pub fn open(opts: &UdpOptions) -> Result<std::net::UdpSocket, Failure> {
    let bind = opts.bind;
    let domain = Domain::for_address(bind);
    let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))
        .map_err(|e| Failure::io(format_args!("cannot create a UDP socket for {bind}"), &e))?;
    let step = |what: &str, r: io::Result<()>| {
        r.map_err(|e| Failure::io(format_args!("cannot {what} on UDP {bind}"), &e))
    };
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
        .map_err(|e| Failure::io(format_args!("cannot bind UDP {bind}"), &e))?;
    if let Some(m) = &opts.multicast {
        join(&socket, m).map_err(|e| {
            let what = format!("cannot join multicast group {} on {}", m.group, m.interface);
            Failure::io(what, &e)
        })?;
    }
    if let Some(peer) = opts.connect {
        // Connected, the socket hears the peer's ICMP port-unreachable as ECONNREFUSED.
        socket
            .connect(&peer.into())
            .map_err(|e| Failure::io(format_args!("cannot connect UDP {bind} to {peer}"), &e))?;
    }
    Ok(socket.into())
}
