//! Everything that comes back to the driver from its tasks, its sockets and the connector.

use std::net::SocketAddr;

use muster_core::connector::Notice;
use muster_core::{OwnedAnswer, Token};

/// One thing for the driver to hand to the core.
pub(crate) enum Inbox {
    /// An answer to a request.
    Answer(Token, OwnedAnswer),
    /// A datagram on the socket of this token.
    Datagram(Token, SocketAddr, Vec<u8>),
    /// Something the connector noticed on its own.
    Notice(Notice),
}

pub(crate) type InboxTx = async_channel::Sender<Inbox>;
