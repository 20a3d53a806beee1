//! The list protocol: asking the connector which nodes are connected, one list at a time,
//! each numbered so that what the core learned since it was asked wins over it.

use crate::io::Token;
use crate::time::Instant;

#[derive(Debug)]
struct InFlight {
    token: Token,
    seq: u32,
    deadline: Instant,
}

/// The list in flight, its sequence number, and where each position of the last list
/// resolved to.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    in_flight: Option<InFlight>,
    seq: u32,
    /// Slot index each position of the previous list resolved to: connectors tend to list in
    /// a stable order, so most names resolve without hashing.
    hint: Vec<u32>,
}

impl Listing {
    /// The sequence number of the latest list asked for.
    pub(crate) fn seq(&self) -> u32 {
        self.seq
    }

    pub(crate) fn busy(&self) -> bool {
        self.in_flight.is_some()
    }

    /// A new list is asked for with `token`, answered by `deadline`; its sequence number.
    pub(crate) fn start(&mut self, token: Token, deadline: Instant) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.in_flight = Some(InFlight {
            token,
            seq: self.seq,
            deadline,
        });
        self.seq
    }

    /// The sequence number of the list `token` answers, if it is the one in flight.
    pub(crate) fn answered(&mut self, token: Token) -> Option<u32> {
        self.in_flight.take_if(|l| l.token == token).map(|l| l.seq)
    }

    /// The deadline of the list in flight.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.in_flight.as_ref().map(|l| l.deadline)
    }

    /// Gives up on a list past its deadline at `now`; its token.
    pub(crate) fn expire(&mut self, now: Instant) -> Option<Token> {
        self.in_flight
            .take_if(|l| l.deadline <= now)
            .map(|l| l.token)
    }

    /// Where position `pos` resolved last time.
    pub(crate) fn hint(&self, pos: usize) -> Option<u32> {
        self.hint.get(pos).copied()
    }

    /// Remembers that position `pos` resolved to slot `i`.
    pub(crate) fn remember(&mut self, pos: usize, i: u32) {
        match self.hint.get_mut(pos) {
            Some(h) => *h = i,
            None => self.hint.push(i),
        }
    }

    /// A list of `n` names: older hints past its end are dropped.
    pub(crate) fn truncate(&mut self, n: usize) {
        self.hint.truncate(n);
    }
}
