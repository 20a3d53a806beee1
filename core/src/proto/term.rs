//! Erlang terms as values: what the distribution's control messages are made of.
//!
//! Decoding is bounded like [`etf::Reader`]: every length is checked
//! against the input before anything is allocated for it, nesting is limited, and unknown
//! tags are errors.

use super::etf::{self, EtfError, MAX_DEPTH, Reader, tag};

/// A process identifier.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pid {
    /// The node the process lives on.
    pub node: String,
    /// Process number.
    pub id: u32,
    /// Serial.
    pub serial: u32,
    /// The node's incarnation.
    pub creation: u32,
}

/// A reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Ref {
    /// The node that made it.
    pub node: String,
    /// The node's incarnation.
    pub creation: u32,
    /// The identifier words.
    pub ids: Vec<u32>,
}

/// A term.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Term {
    /// An atom.
    Atom(String),
    /// An integer that fits 64 bits.
    Int(i64),
    /// A float.
    Float(f64),
    /// A pid.
    Pid(Pid),
    /// A reference.
    Ref(Ref),
    /// A tuple.
    Tuple(Vec<Term>),
    /// A proper or improper list: elements and tail (`Nil` for a proper list).
    List(Vec<Term>, Box<Term>),
    /// The empty list.
    Nil,
    /// A binary.
    Binary(Vec<u8>),
    /// A map, in the order its pairs came.
    Map(Vec<(Term, Term)>),
    /// Something this decoder keeps opaque (a port, a fun, a big integer...): its tag.
    Other(u8),
}

impl Term {
    /// An atom.
    pub fn atom(s: &str) -> Term {
        Term::Atom(s.to_owned())
    }

    /// The atom's text, if this is an atom.
    pub fn as_atom(&self) -> Option<&str> {
        match self {
            Term::Atom(a) => Some(a),
            _ => None,
        }
    }

    /// The elements, if this is a tuple.
    pub fn as_tuple(&self) -> Option<&[Term]> {
        match self {
            Term::Tuple(t) => Some(t),
            _ => None,
        }
    }

    /// Decodes one term (without the version byte) from `r`.
    pub fn read(r: &mut Reader<'_>) -> Result<Term, EtfError> {
        read_at(r, 0)
    }

    /// Decodes `131` followed by one term, and nothing after it.
    pub fn decode(bytes: &[u8]) -> Result<Term, EtfError> {
        let mut r = Reader::versioned(bytes)?;
        let t = read_at(&mut r, 0)?;
        r.finish()?;
        Ok(t)
    }

    /// Appends the term (without the version byte).
    pub fn write(&self, out: &mut Vec<u8>) {
        match self {
            Term::Atom(a) => etf::write_atom(out, a),
            Term::Int(i) => match u8::try_from(*i) {
                Ok(b) => {
                    out.push(tag::SMALL_INTEGER);
                    out.push(b);
                }
                Err(_) => match i32::try_from(*i) {
                    Ok(v) => {
                        out.push(tag::INTEGER);
                        out.extend_from_slice(&v.to_be_bytes());
                    }
                    Err(_) => {
                        out.push(tag::SMALL_BIG);
                        out.push(8);
                        out.push(u8::from(*i < 0));
                        out.extend_from_slice(&i.unsigned_abs().to_le_bytes());
                    }
                },
            },
            Term::Float(f) => {
                out.push(tag::NEW_FLOAT);
                out.extend_from_slice(&f.to_bits().to_be_bytes());
            }
            Term::Pid(p) => {
                out.push(tag::NEW_PID);
                etf::write_atom(out, &p.node);
                out.extend_from_slice(&p.id.to_be_bytes());
                out.extend_from_slice(&p.serial.to_be_bytes());
                out.extend_from_slice(&p.creation.to_be_bytes());
            }
            Term::Ref(r) => {
                out.push(tag::NEWER_REFERENCE);
                out.extend_from_slice(&(r.ids.len() as u16).to_be_bytes());
                etf::write_atom(out, &r.node);
                out.extend_from_slice(&r.creation.to_be_bytes());
                for id in &r.ids {
                    out.extend_from_slice(&id.to_be_bytes());
                }
            }
            Term::Tuple(items) => {
                match u8::try_from(items.len()) {
                    Ok(n) => {
                        out.push(tag::SMALL_TUPLE);
                        out.push(n);
                    }
                    Err(_) => {
                        out.push(tag::LARGE_TUPLE);
                        out.extend_from_slice(&(items.len() as u32).to_be_bytes());
                    }
                }
                for t in items {
                    t.write(out);
                }
            }
            // A proper list of bytes is a STRING_EXT, as OTP's term_to_binary writes it.
            Term::List(items, tail)
                if **tail == Term::Nil
                    && !items.is_empty()
                    && items.len() <= usize::from(u16::MAX)
                    && items
                        .iter()
                        .all(|t| matches!(t, Term::Int(i) if u8::try_from(*i).is_ok())) =>
            {
                out.push(tag::STRING);
                out.extend_from_slice(&(items.len() as u16).to_be_bytes());
                for t in items {
                    if let Term::Int(i) = t {
                        out.push(*i as u8);
                    }
                }
            }
            Term::List(items, tail) => {
                out.push(tag::LIST);
                out.extend_from_slice(&(items.len() as u32).to_be_bytes());
                for t in items {
                    t.write(out);
                }
                tail.write(out);
            }
            Term::Nil => out.push(tag::NIL),
            Term::Binary(b) => {
                out.push(tag::BINARY);
                out.extend_from_slice(&(b.len() as u32).to_be_bytes());
                out.extend_from_slice(b);
            }
            Term::Map(pairs) => {
                etf::write_map_header(out, pairs.len() as u32);
                for (k, v) in pairs {
                    k.write(out);
                    v.write(out);
                }
            }
            // Opaque terms are only ever read, never written back.
            Term::Other(_) => etf::write_atom(out, "undefined"),
        }
    }

    /// `131` followed by the term.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![etf::VERSION];
        self.write(&mut out);
        out
    }
}

fn atom_text(r: &mut Reader<'_>) -> Result<String, EtfError> {
    Ok(r.atom()?.0.to_owned())
}

/// A `SMALL_BIG_EXT` of at most eight digit bytes, which an `i64` may hold.
fn small_big_fits(r: &Reader<'_>) -> bool {
    let mut probe = r.clone();
    probe.u8().is_ok() && probe.u8().is_ok_and(|n| n <= 8)
}

fn read_at(r: &mut Reader<'_>, depth: usize) -> Result<Term, EtfError> {
    let t = r.peek_tag()?;
    // Nesting is counted on containers only, and a string counts as the list it is, so a
    // term and its own encoding are as deep as each other.
    let container = matches!(
        t,
        tag::SMALL_TUPLE | tag::LARGE_TUPLE | tag::STRING | tag::LIST | tag::MAP
    );
    if container && depth > MAX_DEPTH {
        return Err(EtfError::TooDeep);
    }
    Ok(match t {
        tag::ATOM | tag::SMALL_ATOM | tag::ATOM_UTF8 | tag::SMALL_ATOM_UTF8 => {
            Term::Atom(atom_text(r)?)
        }
        tag::SMALL_INTEGER => {
            r.u8()?;
            Term::Int(i64::from(r.u8()?))
        }
        tag::INTEGER => {
            r.u8()?;
            Term::Int(i64::from(r.u32()? as i32))
        }
        tag::NEW_FLOAT => {
            r.u8()?;
            let hi = u64::from(r.u32()?);
            let lo = u64::from(r.u32()?);
            Term::Float(f64::from_bits(hi << 32 | lo))
        }
        tag::NEW_PID | tag::PID => {
            r.u8()?;
            let node = atom_text(r)?;
            let id = r.u32()?;
            let serial = r.u32()?;
            let creation = if t == tag::NEW_PID {
                r.u32()?
            } else {
                u32::from(r.u8()?)
            };
            Term::Pid(Pid {
                node,
                id,
                serial,
                creation,
            })
        }
        tag::NEW_REFERENCE | tag::NEWER_REFERENCE => {
            r.u8()?;
            let n = usize::from(r.u16()?);
            let node = atom_text(r)?;
            let creation = if t == tag::NEWER_REFERENCE {
                r.u32()?
            } else {
                u32::from(r.u8()?)
            };
            if n * 4 > r.remaining() {
                return Err(EtfError::Truncated);
            }
            let mut ids = Vec::with_capacity(n);
            for _ in 0..n {
                ids.push(r.u32()?);
            }
            Term::Ref(Ref {
                node,
                creation,
                ids,
            })
        }
        tag::SMALL_TUPLE | tag::LARGE_TUPLE => {
            r.u8()?;
            let n = if t == tag::SMALL_TUPLE {
                r.u8()? as usize
            } else {
                r.u32()? as usize
            };
            // Each element takes at least one byte: a count beyond that is a lie.
            if n > r.remaining() {
                return Err(EtfError::Truncated);
            }
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                items.push(read_at(r, depth + 1)?);
            }
            Term::Tuple(items)
        }
        tag::NIL => {
            r.u8()?;
            Term::Nil
        }
        tag::STRING => {
            r.u8()?;
            let n = usize::from(r.u16()?);
            if n > r.remaining() {
                return Err(EtfError::Truncated);
            }
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                items.push(Term::Int(i64::from(r.u8()?)));
            }
            Term::List(items, Box::new(Term::Nil))
        }
        tag::LIST => {
            r.u8()?;
            let n = r.u32()? as usize;
            if n > r.remaining() {
                return Err(EtfError::Truncated);
            }
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                items.push(read_at(r, depth + 1)?);
            }
            let tail = read_at(r, depth + 1)?;
            Term::List(items, Box::new(tail))
        }
        tag::BINARY => {
            r.u8()?;
            let n = r.u32()? as usize;
            if n > r.remaining() {
                return Err(EtfError::Truncated);
            }
            let mut b = Vec::with_capacity(n);
            for _ in 0..n {
                b.push(r.u8()?);
            }
            Term::Binary(b)
        }
        tag::MAP => {
            r.u8()?;
            let n = r.u32()? as usize;
            if n > r.remaining() / 2 {
                return Err(EtfError::Truncated);
            }
            let mut pairs = Vec::with_capacity(n);
            for _ in 0..n {
                let k = read_at(r, depth + 1)?;
                let v = read_at(r, depth + 1)?;
                pairs.push((k, v));
            }
            Term::Map(pairs)
        }
        tag::SMALL_BIG if small_big_fits(r) => {
            r.u8()?;
            let n = usize::from(r.u8()?);
            let negative = r.u8()? != 0;
            let mut magnitude: u64 = 0;
            for i in 0..n {
                magnitude |= u64::from(r.u8()?) << (8 * i);
            }
            let v = if negative {
                0i64.checked_sub_unsigned(magnitude)
            } else {
                i64::try_from(magnitude).ok()
            };
            v.map_or(Term::Other(tag::SMALL_BIG), Term::Int)
        }
        other => {
            r.skip_term()?;
            Term::Other(other)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes_a_gen_call_as_otp_sends_it() {
        // {'$gen_call', {Pid, [alias | Ref]}, {is_auth, 'a@h'}}
        let pid = Term::Pid(Pid {
            node: "a@h".into(),
            id: 80,
            serial: 0,
            creation: 1_700_000_001,
        });
        let r = Term::Ref(Ref {
            node: "a@h".into(),
            creation: 1_700_000_001,
            ids: vec![1, 2, 3],
        });
        let t = Term::Tuple(vec![
            Term::atom("$gen_call"),
            Term::Tuple(vec![
                pid,
                Term::List(vec![Term::atom("alias")], Box::new(r)),
            ]),
            Term::Tuple(vec![Term::atom("is_auth"), Term::atom("a@h")]),
        ]);
        assert_eq!(Term::decode(&t.encode()), Ok(t));
    }

    #[test]
    fn refuses_lying_lengths_without_allocating_for_them() {
        assert_eq!(
            Term::decode(&[131, 108, 0xff, 0xff, 0xff, 0xff]),
            Err(EtfError::Truncated)
        );
        assert_eq!(
            Term::decode(&[131, 116, 0xff, 0xff, 0xff, 0xff]),
            Err(EtfError::Truncated)
        );
        assert_eq!(
            Term::decode(&[131, 105, 0xff, 0xff, 0xff, 0xff]),
            Err(EtfError::Truncated)
        );
        assert_eq!(
            Term::decode(&[131, 109, 0xff, 0xff, 0xff, 0xff]),
            Err(EtfError::Truncated)
        );
    }

    #[test]
    fn a_list_of_bytes_is_written_as_otp_writes_it_and_reads_back_at_any_depth() {
        let bytes = Term::List(vec![Term::Int(104), Term::Int(105)], Box::new(Term::Nil));
        assert_eq!(bytes.encode(), vec![131, 107, 0, 2, 104, 105]);
        // As deep as a term may be, a string at the bottom and its own encoding agree.
        let mut t = Term::List(vec![Term::Int(1), Term::Int(2)], Box::new(Term::Nil));
        for _ in 0..MAX_DEPTH {
            t = Term::Tuple(vec![t]);
        }
        let decoded = Term::decode(&t.encode()).unwrap();
        assert_eq!(Term::decode(&decoded.encode()), Ok(decoded));
    }

    #[test]
    fn the_fuzzers_finding_round_trips() {
        let found = include_bytes!("../../../fuzz/seeds/term/roundtrip-too-deep");
        if let Ok(t) = Term::decode(found) {
            assert_eq!(Term::decode(&t.encode()), Ok(t));
        }
    }

    fn term() -> impl Strategy<Value = Term> {
        let leaf = prop_oneof![
            "[a-z_@.]{0,20}".prop_map(Term::Atom),
            any::<i64>().prop_map(Term::Int),
            Just(Term::Nil),
            proptest::collection::vec(any::<u8>(), 0..20).prop_map(Term::Binary),
            (
                "[a-z]{1,5}@[a-z]{1,5}",
                any::<u32>(),
                any::<u32>(),
                any::<u32>()
            )
                .prop_map(|(node, id, serial, creation)| Term::Pid(Pid {
                    node,
                    id,
                    serial,
                    creation
                })),
            (
                "[a-z]{1,5}@[a-z]{1,5}",
                any::<u32>(),
                proptest::collection::vec(any::<u32>(), 0..5)
            )
                .prop_map(|(node, creation, ids)| Term::Ref(Ref {
                    node,
                    creation,
                    ids
                })),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Term::Tuple),
                (
                    proptest::collection::vec(inner.clone(), 1..6),
                    inner.clone()
                )
                    .prop_map(|(items, tail)| Term::List(items, Box::new(tail))),
                proptest::collection::vec((inner.clone(), inner), 0..4).prop_map(Term::Map),
            ]
        })
    }

    proptest! {
        #[test]
        fn round_trips(t in term()) {
            prop_assert_eq!(Term::decode(&t.encode()), Ok(t));
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Term::decode(&bytes);
            let mut with_version = vec![131];
            with_version.extend(bytes);
            let _ = Term::decode(&with_version);
        }
    }
}
