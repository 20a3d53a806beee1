//! The simulated UDP network: sockets, multicast groups, broadcast and unicast.

use std::net::{IpAddr, SocketAddr};

use crate::io::{Token, UdpOptions};

#[derive(Debug, Clone)]
struct SimSocket {
    node: usize,
    restarts: u32,
    token: Token,
    port: u16,
    reuse: bool,
    group: Option<IpAddr>,
    loopback: bool,
}

/// Every open simulated socket.
#[derive(Debug, Default)]
pub(crate) struct Udp {
    sockets: Vec<SimSocket>,
}

impl Udp {
    /// Opens a socket for `node` (in its `restarts`-th life), as `opts` says; fails like a
    /// real bind would when the port is taken without reuse.
    pub(crate) fn open(
        &mut self,
        node: usize,
        restarts: u32,
        token: Token,
        opts: &UdpOptions,
    ) -> Result<u16, String> {
        let mut port = opts.bind.port();
        if port == 0 {
            // An ephemeral port, as the OS picks one: the lowest free one of the node's.
            port = (32768..=u16::MAX)
                .find(|p| !self.sockets.iter().any(|s| s.node == node && s.port == *p))
                .ok_or_else(|| "no free ephemeral port (simulated)".to_owned())?;
        }
        let clash = self
            .sockets
            .iter()
            .any(|s| s.node == node && s.port == port && !(s.reuse && opts.reuse));
        if clash {
            return Err(format!(
                "cannot bind UDP {}: Address already in use (simulated)",
                opts.bind
            ));
        }
        self.sockets.push(SimSocket {
            node,
            restarts,
            token,
            port,
            reuse: opts.reuse,
            group: opts.multicast.as_ref().map(|m| m.group),
            loopback: opts.multicast.as_ref().is_some_and(|m| m.loopback),
        });
        Ok(port)
    }

    pub(crate) fn close(&mut self, node: usize, token: Token) {
        self.sockets
            .retain(|s| !(s.node == node && s.token == token));
    }

    /// Forgets every socket of `node` (it went down).
    pub(crate) fn drop_node(&mut self, node: usize) {
        self.sockets.retain(|s| s.node != node);
    }

    /// The port of `node`'s socket `token`, if it is open in that life.
    pub(crate) fn port_of(&self, node: usize, restarts: u32, token: Token) -> Option<u16> {
        self.sockets
            .iter()
            .find(|s| s.node == node && s.token == token && s.restarts == restarts)
            .map(|s| s.port)
    }

    /// The sockets a datagram from `from_node` to `to` reaches: members of a multicast group
    /// (the sender's own too when it loops back), every socket on the port for a broadcast,
    /// or one socket of the host `to_node` for unicast.
    pub(crate) fn recipients(
        &self,
        from_node: usize,
        to: SocketAddr,
        to_node: Option<usize>,
    ) -> Vec<(usize, u32, Token)> {
        let ip = to.ip();
        let broadcast = match ip {
            IpAddr::V4(a) => a.is_broadcast() || a.octets()[3] == 255,
            IpAddr::V6(_) => false,
        };
        let mut out: Vec<(usize, u32, Token)> = Vec::new();
        for s in &self.sockets {
            if s.port != to.port() {
                continue;
            }
            let hit = if ip.is_multicast() {
                s.group == Some(ip) && (s.node != from_node || s.loopback)
            } else if broadcast {
                true
            } else {
                Some(s.node) == to_node && !out.iter().any(|(n, _, _)| *n == s.node)
            };
            if hit {
                out.push((s.node, s.restarts, s.token));
            }
        }
        out
    }
}
