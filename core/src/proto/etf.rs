//! Erlang's external term format: the parts muster reads and writes.
//!
//! Reading borrows from the input and never allocates; every length is checked against what
//! is left before it is used, nesting is bounded, and unknown tags are errors, so no input can
//! make it panic, loop or allocate.

use core::fmt;

/// The version byte that starts every encoded term.
pub const VERSION: u8 = 131;

/// Term tags (erts `external.h`).
pub mod tag {
    #![allow(missing_docs)]
    pub const NEW_FLOAT: u8 = 70;
    pub const BIT_BINARY: u8 = 77;
    pub const NEW_PID: u8 = 88;
    pub const NEW_PORT: u8 = 89;
    pub const NEWER_REFERENCE: u8 = 90;
    pub const SMALL_INTEGER: u8 = 97;
    pub const INTEGER: u8 = 98;
    pub const FLOAT: u8 = 99;
    pub const ATOM: u8 = 100;
    pub const REFERENCE: u8 = 101;
    pub const PORT: u8 = 102;
    pub const PID: u8 = 103;
    pub const SMALL_TUPLE: u8 = 104;
    pub const LARGE_TUPLE: u8 = 105;
    pub const NIL: u8 = 106;
    pub const STRING: u8 = 107;
    pub const LIST: u8 = 108;
    pub const BINARY: u8 = 109;
    pub const SMALL_BIG: u8 = 110;
    pub const LARGE_BIG: u8 = 111;
    pub const EXPORT: u8 = 113;
    pub const NEW_REFERENCE: u8 = 114;
    pub const SMALL_ATOM: u8 = 115;
    pub const MAP: u8 = 116;
    pub const ATOM_UTF8: u8 = 118;
    pub const SMALL_ATOM_UTF8: u8 = 119;
    pub const V4_PORT: u8 = 120;
}

/// How deep terms may nest before the reader gives up.
pub const MAX_DEPTH: usize = 32;

/// Why a term could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EtfError {
    /// The input ended inside a term.
    #[error("truncated term")]
    Truncated,
    /// The first byte is not 131.
    #[error("not an external term (version byte {0})")]
    BadVersion(u8),
    /// A tag this reader does not accept here.
    #[error("unexpected term tag {0}")]
    UnexpectedTag(u8),
    /// Terms nested deeper than [`MAX_DEPTH`].
    #[error("terms nested too deep")]
    TooDeep,
    /// An atom that is not valid text in its encoding.
    #[error("atom is not valid text")]
    BadAtom,
    /// Bytes left over after the term.
    #[error("{0} bytes after the term")]
    Trailing(usize),
}

/// An atom's text. Latin-1 atoms are returned as text only when they are ASCII (all node
/// names are); others are reported as [`EtfError::BadAtom`] by [`Reader::atom`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Atom<'a>(pub &'a str);

impl fmt::Display for Atom<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// A cursor over encoded terms.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// A reader past the version byte, which must be 131.
    pub fn versioned(buf: &'a [u8]) -> Result<Self, EtfError> {
        let mut r = Reader::new(buf);
        match r.u8()? {
            VERSION => Ok(r),
            v => Err(EtfError::BadVersion(v)),
        }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Fails unless everything was read.
    pub fn finish(&self) -> Result<(), EtfError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(EtfError::Trailing(n)),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], EtfError> {
        if n > self.remaining() {
            return Err(EtfError::Truncated);
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn skip(&mut self, n: usize) -> Result<(), EtfError> {
        self.take(n).map(|_| ())
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8, EtfError> {
        Ok(self.take(1)?[0])
    }

    /// A big-endian `u16`.
    pub fn u16(&mut self) -> Result<u16, EtfError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// A big-endian `u32`.
    pub fn u32(&mut self) -> Result<u32, EtfError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// The next tag, without consuming it.
    pub fn peek_tag(&self) -> Result<u8, EtfError> {
        self.buf.get(self.pos).copied().ok_or(EtfError::Truncated)
    }

    fn atom_body(&mut self, t: u8) -> Result<Atom<'a>, EtfError> {
        let len = match t {
            tag::ATOM | tag::ATOM_UTF8 => usize::from(self.u16()?),
            tag::SMALL_ATOM | tag::SMALL_ATOM_UTF8 => usize::from(self.u8()?),
            other => return Err(EtfError::UnexpectedTag(other)),
        };
        let bytes = self.take(len)?;
        let latin1 = matches!(t, tag::ATOM | tag::SMALL_ATOM);
        if latin1 && !bytes.is_ascii() {
            return Err(EtfError::BadAtom);
        }
        core::str::from_utf8(bytes)
            .map(Atom)
            .map_err(|_| EtfError::BadAtom)
    }

    /// An atom in any of its four encodings (tags 100, 115, 118, 119).
    pub fn atom(&mut self) -> Result<Atom<'a>, EtfError> {
        let t = self.u8()?;
        self.atom_body(t)
    }

    /// The arity of a map (tag 116).
    pub fn map_header(&mut self) -> Result<u32, EtfError> {
        match self.u8()? {
            tag::MAP => self.u32(),
            other => Err(EtfError::UnexpectedTag(other)),
        }
    }

    /// Skips one whole term of any kind this reader knows, however nested (up to
    /// [`MAX_DEPTH`]).
    pub fn skip_term(&mut self) -> Result<(), EtfError> {
        self.skip_at(0)
    }

    fn skip_at(&mut self, depth: usize) -> Result<(), EtfError> {
        if depth > MAX_DEPTH {
            return Err(EtfError::TooDeep);
        }
        let t = self.u8()?;
        match t {
            tag::SMALL_INTEGER => self.skip(1),
            tag::INTEGER => self.skip(4),
            tag::FLOAT => self.skip(31),
            tag::NEW_FLOAT => self.skip(8),
            tag::ATOM | tag::ATOM_UTF8 | tag::SMALL_ATOM | tag::SMALL_ATOM_UTF8 => {
                // Skipped atoms need not be valid text.
                let len = if matches!(t, tag::ATOM | tag::ATOM_UTF8) {
                    usize::from(self.u16()?)
                } else {
                    usize::from(self.u8()?)
                };
                self.skip(len)
            }
            tag::NIL => Ok(()),
            tag::STRING => {
                let n = usize::from(self.u16()?);
                self.skip(n)
            }
            tag::BINARY => {
                let n = self.u32()? as usize;
                self.skip(n)
            }
            tag::BIT_BINARY => {
                let n = self.u32()? as usize;
                self.skip(1 + n)
            }
            tag::SMALL_BIG => {
                let n = usize::from(self.u8()?);
                self.skip(1 + n)
            }
            tag::LARGE_BIG => {
                let n = self.u32()? as usize;
                self.skip(1 + n)
            }
            tag::SMALL_TUPLE | tag::LARGE_TUPLE => {
                let n = if t == tag::SMALL_TUPLE {
                    u32::from(self.u8()?)
                } else {
                    self.u32()?
                };
                for _ in 0..n {
                    self.skip_at(depth + 1)?;
                }
                Ok(())
            }
            tag::LIST => {
                let n = self.u32()?;
                for _ in 0..n {
                    self.skip_at(depth + 1)?;
                }
                // The tail (NIL for a proper list).
                self.skip_at(depth + 1)
            }
            tag::MAP => {
                let n = self.u32()?;
                for _ in 0..n {
                    self.skip_at(depth + 1)?;
                    self.skip_at(depth + 1)?;
                }
                Ok(())
            }
            tag::NEW_PID | tag::PID => {
                self.skip_at(depth + 1)?;
                self.skip(if t == tag::NEW_PID { 12 } else { 9 })
            }
            tag::NEW_PORT | tag::PORT | tag::V4_PORT => {
                self.skip_at(depth + 1)?;
                self.skip(match t {
                    tag::NEW_PORT => 8,
                    tag::PORT => 5,
                    _ => 12,
                })
            }
            tag::NEW_REFERENCE | tag::NEWER_REFERENCE => {
                let n = usize::from(self.u16()?);
                self.skip_at(depth + 1)?;
                let creation = if t == tag::NEWER_REFERENCE { 4 } else { 1 };
                self.skip(creation + 4 * n)
            }
            tag::REFERENCE => {
                self.skip_at(depth + 1)?;
                self.skip(5)
            }
            tag::EXPORT => {
                for _ in 0..3 {
                    self.skip_at(depth + 1)?;
                }
                Ok(())
            }
            other => Err(EtfError::UnexpectedTag(other)),
        }
    }
}

/// Appends an atom as OTP 25's `term_to_binary` writes it: `ATOM_EXT` (100) with a 16-bit
/// length for Latin-1 text, `ATOM_UTF8_EXT` (118) otherwise. `text` must be at most 255
/// characters (OTP's limit), which every node name is.
pub fn write_atom(out: &mut Vec<u8>, text: &str) {
    let t = if text.is_ascii() {
        tag::ATOM
    } else {
        tag::ATOM_UTF8
    };
    out.push(t);
    let len = u16::try_from(text.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&text.as_bytes()[..usize::from(len)]);
}

/// Appends a map header (tag 116) for `arity` pairs.
pub fn write_map_header(out: &mut Vec<u8>, arity: u32) {
    out.push(tag::MAP);
    out.extend_from_slice(&arity.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_all_four_atom_encodings() {
        for bytes in [
            &[100, 0, 3, b'a', b'@', b'h'][..],
            &[115, 3, b'a', b'@', b'h'],
            &[118, 0, 3, b'a', b'@', b'h'],
            &[119, 3, b'a', b'@', b'h'],
        ] {
            let mut r = Reader::new(bytes);
            assert_eq!(r.atom(), Ok(Atom("a@h")));
            assert_eq!(r.finish(), Ok(()));
        }
        assert_eq!(
            Reader::new(&[100, 0, 1, 0xe9]).atom(),
            Err(EtfError::BadAtom)
        );
        assert_eq!(Reader::new(&[119, 1, 0xff]).atom(), Err(EtfError::BadAtom));
        assert_eq!(
            Reader::new(&[100, 0, 9, b'a']).atom(),
            Err(EtfError::Truncated)
        );
        assert_eq!(
            Reader::new(&[97, 1]).atom(),
            Err(EtfError::UnexpectedTag(97))
        );
    }

    #[test]
    fn skips_nested_terms_and_refuses_unknown_tags_and_depth() {
        // {1, [a, "x"], #{b => <<1,2>>}, 3.0}
        let term = [
            104, 4, 97, 1, 108, 0, 0, 0, 2, 119, 1, b'a', 107, 0, 1, b'x', 106, 116, 0, 0, 0, 1,
            119, 1, b'b', 109, 0, 0, 0, 2, 1, 2, 70, 64, 8, 0, 0, 0, 0, 0, 0,
        ];
        let mut r = Reader::new(&term);
        assert_eq!(r.skip_term(), Ok(()));
        assert_eq!(r.finish(), Ok(()));
        assert_eq!(
            Reader::new(&[82, 0]).skip_term(),
            Err(EtfError::UnexpectedTag(82))
        );
        let deep: Vec<u8> = std::iter::repeat_n([104u8, 1], 40)
            .flatten()
            .chain([106])
            .collect();
        assert_eq!(Reader::new(&deep).skip_term(), Err(EtfError::TooDeep));
        // A length that claims more than there is.
        assert_eq!(
            Reader::new(&[109, 0xff, 0xff, 0xff, 0xff]).skip_term(),
            Err(EtfError::Truncated)
        );
    }

    #[test]
    fn writes_what_otp_25_writes() {
        let mut out = Vec::new();
        write_atom(&mut out, "node");
        assert_eq!(out, [100, 0, 4, b'n', b'o', b'd', b'e']);
    }

    proptest! {
        #[test]
        fn never_panics_on_any_input(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Reader::new(&bytes).skip_term();
            let _ = Reader::new(&bytes).atom();
            let _ = Reader::new(&bytes).map_header();
        }

        #[test]
        fn atoms_round_trip(text in "[a-zA-Z0-9_@.-]{0,255}") {
            let mut out = Vec::new();
            write_atom(&mut out, &text);
            let mut r = Reader::new(&out);
            prop_assert_eq!(r.atom(), Ok(Atom(&text)));
            prop_assert_eq!(r.finish(), Ok(()));
        }
    }
}
