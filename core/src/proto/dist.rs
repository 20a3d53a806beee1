//! The Erlang distribution handshake (version 6, as OTP 23 and later speak it, plus the old
//! version 5 name and challenge that OTP 23/24 still send without EPMD) and the framing of a
//! connection afterwards.
//!
//! Handshake messages are framed with a 2-byte length; once the handshake is done, with a
//! 4-byte length, and an empty frame is a tick.

use md5::{Digest, Md5};

/// Capability flags (erl_dist_protocol, "Distribution Flags").
pub mod flags {
    #![allow(missing_docs)]
    pub const PUBLISHED: u64 = 0x1;
    pub const EXTENDED_REFERENCES: u64 = 0x4;
    pub const DIST_MONITOR: u64 = 0x8;
    pub const FUN_TAGS: u64 = 0x10;
    pub const NEW_FUN_TAGS: u64 = 0x80;
    pub const EXTENDED_PIDS_PORTS: u64 = 0x100;
    pub const EXPORT_PTR_TAG: u64 = 0x200;
    pub const BIT_BINARIES: u64 = 0x400;
    pub const NEW_FLOATS: u64 = 0x800;
    pub const DIST_HDR_ATOM_CACHE: u64 = 0x2000;
    pub const UTF8_ATOMS: u64 = 0x10000;
    pub const MAP_TAG: u64 = 0x20000;
    pub const BIG_CREATION: u64 = 0x40000;
    pub const HANDSHAKE_23: u64 = 0x100_0000;
    pub const UNLINK_ID: u64 = 0x200_0000;
    pub const SPAWN: u64 = 1 << 32;
    pub const NAME_ME: u64 = 1 << 33;
    pub const V4_NC: u64 = 1 << 34;
    pub const ALIAS: u64 = 1 << 35;
    pub const MANDATORY_25_DIGEST: u64 = 1 << 36;

    /// What OTP 25 refuses to connect without.
    pub const MANDATORY: u64 = EXTENDED_REFERENCES
        | FUN_TAGS
        | NEW_FUN_TAGS
        | EXTENDED_PIDS_PORTS
        | EXPORT_PTR_TAG
        | BIT_BINARIES
        | NEW_FLOATS
        | UTF8_ATOMS
        | MAP_TAG
        | BIG_CREATION
        | HANDSHAKE_23;

    /// The flags muster's nodes announce: everything OTP 25 and 26 require, and aliases (so
    /// a `gen:call` reply goes back as `ALIAS_SEND`); published unless hidden.
    pub fn ours(hidden: bool) -> u64 {
        let f = MANDATORY | UNLINK_ID | V4_NC | ALIAS | MANDATORY_25_DIGEST;
        if hidden { f } else { f | PUBLISHED }
    }
}

/// Why a handshake message could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DistError {
    /// Shorter than its fields.
    #[error("truncated handshake message")]
    Truncated,
    /// Another message than the one expected at this point.
    #[error("unexpected handshake message {0:?}")]
    Unexpected(char),
    /// A field the protocol does not allow.
    #[error("malformed handshake message: {0}")]
    Malformed(&'static str),
}

/// The name message (`'N'`, or the old `'n'`) an initiator sends first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name {
    /// Capability flags (the old form carries only the low 32 bits).
    pub flags: u64,
    /// The node's incarnation (0 in the old form, until its complement).
    pub creation: u32,
    /// The full node name.
    pub name: String,
    /// Whether it was the old (version 5) form.
    pub old: bool,
}

/// The challenge (`'N'`, or the old `'n'`) the acceptor sends back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The acceptor's flags.
    pub flags: u64,
    /// The 32-bit challenge.
    pub challenge: u32,
    /// The acceptor's incarnation.
    pub creation: u32,
    /// The acceptor's full node name.
    pub name: String,
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DistError> {
        let s = self
            .b
            .get(self.at..self.at + n)
            .ok_or(DistError::Truncated)?;
        self.at += n;
        Ok(s)
    }
    fn u16(&mut self) -> Result<u16, DistError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, DistError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, DistError> {
        Ok(u64::from(self.u32()?) << 32 | u64::from(self.u32()?))
    }
    fn rest(&mut self) -> &'a [u8] {
        let r = &self.b[self.at.min(self.b.len())..];
        self.at = self.b.len();
        r
    }
}

fn text(b: &[u8]) -> Result<String, DistError> {
    String::from_utf8(b.to_vec()).map_err(|_| DistError::Malformed("node name is not UTF-8"))
}

fn tag_of(msg: &[u8]) -> Result<u8, DistError> {
    msg.first().copied().ok_or(DistError::Truncated)
}

/// The digest that proves knowledge of the cookie: `MD5(cookie ++ decimal(challenge))`.
pub fn digest(challenge: u32, cookie: &str) -> [u8; 16] {
    let mut h = Md5::new();
    h.update(cookie.as_bytes());
    h.update(challenge.to_string().as_bytes());
    h.finalize().into()
}

/// Frames a handshake message with its 2-byte length.
fn framed(body: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 2);
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// The version 6 name message, framed.
pub fn write_name(flags: u64, creation: u32, name: &str) -> Vec<u8> {
    let mut b = vec![b'N'];
    b.extend_from_slice(&flags.to_be_bytes());
    b.extend_from_slice(&creation.to_be_bytes());
    b.extend_from_slice(&(name.len() as u16).to_be_bytes());
    b.extend_from_slice(name.as_bytes());
    framed(b)
}

/// Reads a name message, either form.
pub fn read_name(msg: &[u8]) -> Result<Name, DistError> {
    let mut c = Cursor { b: msg, at: 1 };
    match tag_of(msg)? {
        b'N' => {
            let flags = c.u64()?;
            let creation = c.u32()?;
            let n = usize::from(c.u16()?);
            let name = text(c.take(n)?)?;
            Ok(Name {
                flags,
                creation,
                name,
                old: false,
            })
        }
        b'n' => {
            let _version = c.u16()?;
            let flags = u64::from(c.u32()?);
            let name = text(c.rest())?;
            Ok(Name {
                flags,
                creation: 0,
                name,
                old: true,
            })
        }
        t => Err(DistError::Unexpected(char::from(t))),
    }
}

/// A status message (`ok`, `ok_simultaneous`, `nok`, `not_allowed`, `alive`), framed.
pub fn write_status(status: &str) -> Vec<u8> {
    let mut b = vec![b's'];
    b.extend_from_slice(status.as_bytes());
    framed(b)
}

/// Reads a status message.
pub fn read_status(msg: &[u8]) -> Result<String, DistError> {
    match tag_of(msg)? {
        b's' => text(&msg[1..]),
        t => Err(DistError::Unexpected(char::from(t))),
    }
}

/// The version 6 challenge, framed.
pub fn write_challenge(c: &Challenge) -> Vec<u8> {
    let mut b = vec![b'N'];
    b.extend_from_slice(&c.flags.to_be_bytes());
    b.extend_from_slice(&c.challenge.to_be_bytes());
    b.extend_from_slice(&c.creation.to_be_bytes());
    b.extend_from_slice(&(c.name.len() as u16).to_be_bytes());
    b.extend_from_slice(c.name.as_bytes());
    framed(b)
}

/// The old (version 5) challenge, framed: for an initiator that sent the old name.
pub fn write_old_challenge(c: &Challenge) -> Vec<u8> {
    let mut b = vec![b'n'];
    b.extend_from_slice(&5u16.to_be_bytes());
    b.extend_from_slice(&(c.flags as u32).to_be_bytes());
    b.extend_from_slice(&c.challenge.to_be_bytes());
    b.extend_from_slice(c.name.as_bytes());
    framed(b)
}

/// Reads a challenge, either form.
pub fn read_challenge(msg: &[u8]) -> Result<Challenge, DistError> {
    let mut c = Cursor { b: msg, at: 1 };
    match tag_of(msg)? {
        b'N' => {
            let flags = c.u64()?;
            let challenge = c.u32()?;
            let creation = c.u32()?;
            let n = usize::from(c.u16()?);
            let name = text(c.take(n)?)?;
            Ok(Challenge {
                flags,
                challenge,
                creation,
                name,
            })
        }
        b'n' => {
            let _version = c.u16()?;
            let flags = u64::from(c.u32()?);
            let challenge = c.u32()?;
            let name = text(c.rest())?;
            Ok(Challenge {
                flags,
                challenge,
                creation: 0,
                name,
            })
        }
        t => Err(DistError::Unexpected(char::from(t))),
    }
}

/// Reads the complement (`'c'`) an old-name initiator sends after the challenge: the high
/// flags and its creation.
pub fn read_complement(msg: &[u8]) -> Result<(u64, u32), DistError> {
    let mut c = Cursor { b: msg, at: 1 };
    match tag_of(msg)? {
        b'c' => Ok((u64::from(c.u32()?) << 32, c.u32()?)),
        t => Err(DistError::Unexpected(char::from(t))),
    }
}

/// The challenge reply: our challenge and the digest of theirs, framed.
pub fn write_reply(challenge: u32, digest: &[u8; 16]) -> Vec<u8> {
    let mut b = vec![b'r'];
    b.extend_from_slice(&challenge.to_be_bytes());
    b.extend_from_slice(digest);
    framed(b)
}

/// Reads a challenge reply.
pub fn read_reply(msg: &[u8]) -> Result<(u32, [u8; 16]), DistError> {
    let mut c = Cursor { b: msg, at: 1 };
    match tag_of(msg)? {
        b'r' => {
            let ch = c.u32()?;
            let mut d = [0u8; 16];
            d.copy_from_slice(c.take(16)?);
            Ok((ch, d))
        }
        t => Err(DistError::Unexpected(char::from(t))),
    }
}

/// The challenge acknowledgement, framed.
pub fn write_ack(digest: &[u8; 16]) -> Vec<u8> {
    let mut b = vec![b'a'];
    b.extend_from_slice(digest);
    framed(b)
}

/// Reads a challenge acknowledgement.
pub fn read_ack(msg: &[u8]) -> Result<[u8; 16], DistError> {
    let mut c = Cursor { b: msg, at: 1 };
    match tag_of(msg)? {
        b'a' => {
            let mut d = [0u8; 16];
            d.copy_from_slice(c.take(16)?);
            Ok(d)
        }
        t => Err(DistError::Unexpected(char::from(t))),
    }
}

/// Splits one frame off the front of `buf`, given the length prefix size (2 during the
/// handshake, 4 after): `Some((frame, consumed))` once it is whole.
pub fn split_frame(buf: &[u8], prefix: usize) -> Option<(&[u8], usize)> {
    if buf.len() < prefix {
        return None;
    }
    let len = match prefix {
        2 => usize::from(u16::from_be_bytes([buf[0], buf[1]])),
        _ => u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize,
    };
    let frame = buf.get(prefix..prefix + len)?;
    Some((frame, prefix + len))
}

/// Compares digests without an early exit.
pub fn digest_eq(a: &[u8; 16], b: &[u8; 16]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn digest_is_md5_of_cookie_then_decimal_challenge() {
        // printf secret1234 | md5sum
        let d = digest(1234, "secret");
        let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "bdfc2db0aa599f5919e565c328216a51");
        assert_eq!(digest(1234, "secret"), digest(1234, "secret"));
        assert_ne!(digest(1234, "secret"), digest(1235, "secret"));
        assert!(digest_eq(&d, &d));
        assert!(!digest_eq(&d, &digest(1, "secret")));
    }

    #[test]
    fn every_message_round_trips() {
        let n = write_name(flags::ours(true), 7, "rust@127.0.0.1");
        let (frame, used) = split_frame(&n, 2).unwrap();
        assert_eq!(used, n.len());
        assert_eq!(
            read_name(frame).unwrap(),
            Name {
                flags: flags::ours(true),
                creation: 7,
                name: "rust@127.0.0.1".into(),
                old: false
            }
        );
        let c = Challenge {
            flags: flags::ours(false),
            challenge: 99,
            creation: 3,
            name: "a@h".into(),
        };
        assert_eq!(
            read_challenge(split_frame(&write_challenge(&c), 2).unwrap().0).unwrap(),
            c
        );
        let old = read_challenge(split_frame(&write_old_challenge(&c), 2).unwrap().0).unwrap();
        assert_eq!(
            (old.challenge, old.name.as_str(), old.flags),
            (99, "a@h", c.flags & 0xffff_ffff)
        );
        assert_eq!(
            read_status(split_frame(&write_status("ok"), 2).unwrap().0).unwrap(),
            "ok"
        );
        let d = digest(5, "c");
        assert_eq!(
            read_reply(split_frame(&write_reply(42, &d), 2).unwrap().0).unwrap(),
            (42, d)
        );
        assert_eq!(
            read_ack(split_frame(&write_ack(&d), 2).unwrap().0).unwrap(),
            d
        );
        assert_eq!(
            read_complement(&[b'c', 0, 0, 0, 1, 0, 0, 0, 9]).unwrap(),
            (1 << 32, 9)
        );
        let mut old_name = vec![b'n', 0, 5];
        old_name.extend_from_slice(&(flags::MANDATORY as u32).to_be_bytes());
        old_name.extend_from_slice(b"x@h");
        assert_eq!(read_name(&old_name).unwrap().name, "x@h");
        assert!(read_name(&old_name).unwrap().old);
    }

    proptest! {
        #[test]
        fn no_reader_panics(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = read_name(&bytes);
            let _ = read_status(&bytes);
            let _ = read_challenge(&bytes);
            let _ = read_complement(&bytes);
            let _ = read_reply(&bytes);
            let _ = read_ack(&bytes);
            let _ = split_frame(&bytes, 2);
            let _ = split_frame(&bytes, 4);
        }
    }
}
