//! The core's requests in flight: the tokens it issued, what each is for, and the UDP sockets
//! the strategies hold open.

use crate::hash::{KeyedMap, KeyedState};
use crate::io::Token;

/// What an outstanding token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pending {
    Connect(u32),
    Disconnect(u32),
    List,
    /// A topology's file read.
    Read(u8),
    /// A topology's exchange: several `Data` answers, then one that ends it.
    Exchange(u8),
    /// A topology's UDP socket, opening.
    Socket(u8),
    /// A topology's long-lived stream: opened, data, then how it ended.
    Stream(u8),
    /// A request a strategy made as the cluster left: awaited until it ends (so that leaving
    /// waits for it, within its deadline), its answers dropped.
    Farewell,
}

impl Pending {
    /// The topology whose strategy asked, for a strategy's request.
    pub(crate) fn topology(self) -> Option<u8> {
        match self {
            Pending::Read(t) | Pending::Exchange(t) | Pending::Socket(t) | Pending::Stream(t) => {
                Some(t)
            }
            _ => None,
        }
    }
}

/// Tokens, the requests waiting for an answer, and the open sockets by topology.
#[derive(Debug)]
pub(crate) struct Requests {
    next: u64,
    pending: KeyedMap<Token, Pending>,
    sockets: KeyedMap<Token, u8>,
}

impl Requests {
    /// No requests; the maps are keyed with `keys` (tokens are ours, not the network's).
    pub(crate) fn new(keys: KeyedState) -> Self {
        Requests {
            next: 1,
            pending: KeyedMap::with_hasher(keys),
            sockets: KeyedMap::with_hasher(keys),
        }
    }

    /// A new token, waited on as `pending` says (`None`: nobody waits for an answer).
    pub(crate) fn issue(&mut self, pending: Option<Pending>) -> Token {
        let t = Token(self.next);
        self.next += 1;
        if let Some(p) = pending {
            self.pending.insert(t, p);
        }
        t
    }

    /// What `token` was for; forgotten unless more answers are due (a chunk of an exchange).
    pub(crate) fn take(&mut self, token: Token, more_due: bool) -> Option<Pending> {
        match self.pending.get(&token).copied() {
            Some(p @ (Pending::Exchange(_) | Pending::Stream(_) | Pending::Farewell))
                if more_due =>
            {
                Some(p)
            }
            Some(p) => {
                self.pending.remove(&token);
                self.shrink();
                Some(p)
            }
            None => None,
        }
    }

    /// Stops waiting for `token`; whether it was awaited.
    pub(crate) fn forget(&mut self, token: Token) -> bool {
        self.pending.remove(&token).is_some()
    }

    /// Stops waiting for `token` if it is awaited as `what`; whether it was.
    pub(crate) fn forget_if(&mut self, token: Token, what: Pending) -> bool {
        if self.pending.get(&token) == Some(&what) {
            self.pending.remove(&token);
            return true;
        }
        false
    }

    /// Whether `token` is awaited as `what`.
    pub(crate) fn is_pending(&self, token: Token, what: Pending) -> bool {
        self.pending.get(&token) == Some(&what)
    }

    /// Whether `socket` is open (its opening answered) for topology `t`.
    pub(crate) fn socket_ready(&self, socket: Token, t: u8) -> bool {
        self.sockets.get(&socket) == Some(&t) && !self.pending.contains_key(&socket)
    }

    /// Forgets topology `t`'s requests; the exchanges among them, in token order, for the
    /// adapter to stop.
    pub(crate) fn forget_topology(&mut self, t: u8) -> Vec<Token> {
        let mut exchanges = Vec::new();
        self.pending.retain(|token, p| match p.topology() {
            Some(topology) if topology == t => {
                if matches!(p, Pending::Exchange(_) | Pending::Stream(_)) {
                    exchanges.push(*token);
                }
                false
            }
            _ => true,
        });
        exchanges.sort_unstable();
        exchanges
    }

    /// Nothing is awaited.
    pub(crate) fn is_idle(&self) -> bool {
        self.pending.is_empty()
    }

    /// Routes what arrives on `socket` to topology `t`.
    pub(crate) fn open_socket(&mut self, socket: Token, t: u8) {
        self.sockets.insert(socket, t);
    }

    pub(crate) fn socket_topology(&self, socket: Token) -> Option<u8> {
        self.sockets.get(&socket).copied()
    }

    /// Forgets `socket`; whether it was open.
    pub(crate) fn close_socket(&mut self, socket: Token) -> bool {
        self.sockets.remove(&socket).is_some()
    }

    /// Forgets topology `t`'s sockets; them, in token order, for the adapter to close.
    pub(crate) fn close_topology_sockets(&mut self, t: u8) -> Vec<Token> {
        let mut mine: Vec<Token> = self
            .sockets
            .iter()
            .filter(|(_, topo)| **topo == t)
            .map(|(tok, _)| *tok)
            .collect();
        mine.sort_unstable();
        for s in &mine {
            self.sockets.remove(s);
        }
        mine
    }

    /// Sockets open.
    pub(crate) fn sockets(&self) -> usize {
        self.sockets.len()
    }

    /// A burst of requests leaves the map large; give the memory back once most are done.
    fn shrink(&mut self) {
        const KEEP: usize = 1024;
        if self.pending.capacity() > KEEP && self.pending.len() < self.pending.capacity() / 4 {
            self.pending.shrink_to(KEEP.max(self.pending.len() * 2));
        }
    }
}
