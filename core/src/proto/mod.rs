//! Pure codecs: bytes in, values out, never a panic, no I/O.

pub mod etf;
pub mod gossip;
