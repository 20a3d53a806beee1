//! The gossip heartbeat, in its three wire forms.
//!
//! **Compat, plain** (libcluster's, byte for byte): `heartbeat::` followed by
//! `term_to_binary(%{node: Name})`.
//!
//! **Compat, with a secret** (libcluster's): a random 16-byte IV, then AES-256-CBC with key
//! `SHA-256(secret)` over the plain packet padded with PKCS#7. No integrity: libcluster's own
//! format.
//!
//! **Secure** (muster's default when a secret is set):
//!
//! ```text
//! "MSTR"  version=1  kind=1  timestamp:u64be  iv:16  ciphertext:16k  tag:32
//! ```
//!
//! `timestamp` is the sender's wall clock in Unix milliseconds, strictly increasing per
//! sender; `ciphertext` is AES-256-CBC of the node name (PKCS#7) under a key derived from the
//! secret with HKDF-SHA256; `tag` is HMAC-SHA256, under a second derived key, of everything
//! before it (encrypt-then-MAC). The receiver checks, in this order: size, magic and version,
//! the tag (in constant time), then decrypts and decodes; the replay window is the strategy's.
//!
//! Nothing here allocates on the receive path: decryption works in a caller's stack buffer.

use aes::Aes256;
use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use super::etf::{self, EtfError, Reader};

type HmacSha256 = Hmac<Sha256>;

/// libcluster's prelude.
pub const PRELUDE: &[u8] = b"heartbeat::";
/// The secure format's magic.
pub const MAGIC: &[u8; 4] = b"MSTR";
/// The secure format's version this code speaks.
pub const VERSION: u8 = 1;
/// The only kind of secure packet so far.
const KIND_HEARTBEAT: u8 = 1;
/// Bytes before the IV in a secure packet.
const SECURE_HEADER: usize = 4 + 1 + 1 + 8;
/// HMAC-SHA256 tag length.
const TAG: usize = 32;
/// The largest packet accepted or sent: a 255-byte node name fits every form with room to
/// spare. Checked before anything else.
pub const MAX_PACKET: usize = 512;

/// Why a packet was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GossipError {
    /// Larger than [`MAX_PACKET`].
    #[error("packet of {0} bytes is larger than {MAX_PACKET}")]
    TooLarge(usize),
    /// Too short for its form.
    #[error("packet of {0} bytes is too short")]
    TooShort(usize),
    /// A plain packet without libcluster's prelude.
    #[error("not a heartbeat (no \"heartbeat::\" prelude)")]
    NoPrelude,
    /// A secure-mode packet arrived at a node in compat mode.
    #[error("a muster secure-mode packet, but this topology runs in compat mode")]
    SecureInCompat,
    /// A libcluster plaintext packet arrived at a node in secure mode.
    #[error("a libcluster plaintext heartbeat, but this topology runs in secure mode")]
    PlainInSecure,
    /// Neither form this node expects (e.g. libcluster with a secret, at a secure node).
    #[error(
        "not a muster secure-mode packet (a libcluster node with a secret, or another protocol)"
    )]
    NotSecure,
    /// A secure packet of a version this node does not speak.
    #[error("secure-mode version {0}, this node speaks version 1")]
    Version(u8),
    /// The tag does not match: forged, corrupted, or another secret.
    #[error("authentication failed (forged, corrupted, or another secret)")]
    BadTag,
    /// The ciphertext is not whole blocks, or its padding is wrong (compat with a secret:
    /// usually another secret, or a plain packet).
    #[error("decryption failed (another secret, or not encrypted)")]
    Decrypt,
    /// The heartbeat's term is malformed.
    #[error("bad term: {0}")]
    Term(EtfError),
    /// The term is not a map with an atom under `node`.
    #[error("the term is not a map with a node atom")]
    NoNode,
    /// The node name is not UTF-8 text.
    #[error("the node name is not text")]
    NotText,
}

impl From<EtfError> for GossipError {
    fn from(e: EtfError) -> Self {
        GossipError::Term(e)
    }
}

/// Reads the node name out of `term_to_binary(%{node: Name, ...})`: any atom encoding, extra
/// keys ignored (they are libcluster's extension point), nothing after the term.
pub fn read_heartbeat_term(term: &[u8]) -> Result<&str, GossipError> {
    let mut r = Reader::versioned(term)?;
    let arity = r.map_header().map_err(|_| GossipError::NoNode)?;
    let mut node = None;
    for _ in 0..arity {
        let is_node_key = match r.peek_tag()? {
            etf::tag::ATOM
            | etf::tag::SMALL_ATOM
            | etf::tag::ATOM_UTF8
            | etf::tag::SMALL_ATOM_UTF8 => r.atom()?.0 == "node",
            _ => {
                r.skip_term()?;
                false
            }
        };
        if is_node_key && node.is_none() {
            node = Some(r.atom().map_err(|e| match e {
                EtfError::UnexpectedTag(_) => GossipError::NoNode,
                other => GossipError::Term(other),
            })?);
        } else {
            r.skip_term()?;
        }
    }
    r.finish()?;
    node.map(|a| a.0).ok_or(GossipError::NoNode)
}

/// Appends `heartbeat::` and `term_to_binary(%{node: node})` exactly as OTP 25 writes them.
pub fn write_plain(out: &mut Vec<u8>, node: &str) {
    out.extend_from_slice(PRELUDE);
    out.push(etf::VERSION);
    etf::write_map_header(out, 1);
    etf::write_atom(out, "node");
    etf::write_atom(out, node);
}

/// Reads a compat plain packet.
pub fn read_plain(packet: &[u8]) -> Result<&str, GossipError> {
    if packet.len() > MAX_PACKET {
        return Err(GossipError::TooLarge(packet.len()));
    }
    if packet.starts_with(MAGIC) {
        return Err(GossipError::SecureInCompat);
    }
    let term = packet.strip_prefix(PRELUDE).ok_or(GossipError::NoPrelude)?;
    read_heartbeat_term(term)
}

/// libcluster's key for a secret: `SHA-256(secret)`.
pub fn compat_key(secret: &[u8]) -> [u8; 32] {
    Sha256::digest(secret).into()
}

/// Appends a compat packet with a secret: `iv` then AES-256-CBC(key, PKCS#7(plain packet)).
pub fn write_compat_secret(out: &mut Vec<u8>, key: &[u8; 32], iv: [u8; 16], node: &str) {
    let mut plain = Vec::with_capacity(64);
    write_plain(&mut plain, node);
    out.extend_from_slice(&iv);
    let start = out.len();
    let padded = (plain.len() / 16 + 1) * 16;
    out.resize(start + padded, 0);
    out[start..start + plain.len()].copy_from_slice(&plain);
    let enc = cbc::Encryptor::<Aes256>::new(key.into(), &iv.into());
    // The buffer is sized for the padding, so this cannot fail.
    let _ = enc.encrypt_padded::<Pkcs7>(&mut out[start..], plain.len());
}

/// Reads a compat packet with a secret, decrypting in `scratch`.
pub fn read_compat_secret<'s>(
    packet: &[u8],
    key: &[u8; 32],
    scratch: &'s mut [u8; MAX_PACKET],
) -> Result<&'s str, GossipError> {
    let n = packet.len();
    if n > MAX_PACKET {
        return Err(GossipError::TooLarge(n));
    }
    if n < 32 {
        return Err(GossipError::TooShort(n));
    }
    if packet.starts_with(MAGIC) {
        return Err(GossipError::SecureInCompat);
    }
    if !(n - 16).is_multiple_of(16) {
        return Err(GossipError::Decrypt);
    }
    let mut iv = [0u8; 16];
    iv.copy_from_slice(&packet[..16]);
    let body = &mut scratch[..n - 16];
    body.copy_from_slice(&packet[16..]);
    let dec = cbc::Decryptor::<Aes256>::new(key.into(), &iv.into());
    let plain = dec
        .decrypt_padded::<Pkcs7>(body)
        .map_err(|_| GossipError::Decrypt)?;
    let term = plain.strip_prefix(PRELUDE).ok_or(GossipError::NoPrelude)?;
    read_heartbeat_term(term)
}

/// The two keys of secure mode, derived from the secret with HKDF-SHA256 (RFC 5869).
#[derive(Clone)]
pub struct SecureKeys {
    enc: [u8; 32],
    mac: [u8; 32],
}

impl core::fmt::Debug for SecureKeys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("SecureKeys { .. }")
    }
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut m = <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

impl SecureKeys {
    /// HKDF-SHA256 with salt `muster-gossip` and one `info` string per key.
    pub fn derive(secret: &[u8]) -> Self {
        let prk = hmac(b"muster-gossip", &[secret]);
        SecureKeys {
            enc: hmac(&prk, &[b"muster gossip v1 encryption", &[1]]),
            mac: hmac(&prk, &[b"muster gossip v1 authentication", &[1]]),
        }
    }

    fn tag(&self, data: &[u8]) -> [u8; 32] {
        hmac(&self.mac, &[data])
    }
}

/// Appends a secure heartbeat.
pub fn write_secure(
    out: &mut Vec<u8>,
    keys: &SecureKeys,
    timestamp_ms: u64,
    iv: [u8; 16],
    node: &str,
) {
    let start = out.len();
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.push(KIND_HEARTBEAT);
    out.extend_from_slice(&timestamp_ms.to_be_bytes());
    out.extend_from_slice(&iv);
    let ct = out.len();
    let padded = (node.len() / 16 + 1) * 16;
    out.resize(ct + padded, 0);
    out[ct..ct + node.len()].copy_from_slice(node.as_bytes());
    let enc = cbc::Encryptor::<Aes256>::new((&keys.enc).into(), &iv.into());
    let _ = enc.encrypt_padded::<Pkcs7>(&mut out[ct..], node.len());
    let tag = keys.tag(&out[start..]);
    out.extend_from_slice(&tag);
}

/// A secure heartbeat, authenticated and decrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Secure<'s> {
    /// The sender's clock, Unix milliseconds.
    pub timestamp_ms: u64,
    /// The sender's node name.
    pub node: &'s str,
}

/// Reads a secure packet: size, then magic and version, then the tag, then decryption in
/// `scratch`.
pub fn read_secure<'s>(
    packet: &[u8],
    keys: &SecureKeys,
    scratch: &'s mut [u8; MAX_PACKET],
) -> Result<Secure<'s>, GossipError> {
    let n = packet.len();
    if n > MAX_PACKET {
        return Err(GossipError::TooLarge(n));
    }
    if !packet.starts_with(MAGIC) {
        return Err(if packet.starts_with(PRELUDE) {
            GossipError::PlainInSecure
        } else {
            GossipError::NotSecure
        });
    }
    if n < SECURE_HEADER {
        return Err(GossipError::TooShort(n));
    }
    if packet[4] != VERSION {
        return Err(GossipError::Version(packet[4]));
    }
    if n < SECURE_HEADER + 16 + 16 + TAG || !(n - SECURE_HEADER - 16 - TAG).is_multiple_of(16) {
        return Err(GossipError::TooShort(n));
    }
    let (signed, tag) = packet.split_at(n - TAG);
    let mut m =
        <HmacSha256 as KeyInit>::new_from_slice(&keys.mac).expect("HMAC takes any key length");
    m.update(signed);
    m.verify_slice(tag).map_err(|_| GossipError::BadTag)?;
    if packet[5] != KIND_HEARTBEAT {
        return Err(GossipError::NoNode);
    }
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&packet[6..14]);
    let mut iv = [0u8; 16];
    iv.copy_from_slice(&packet[14..30]);
    let ct = &signed[30..];
    let body = &mut scratch[..ct.len()];
    body.copy_from_slice(ct);
    let dec = cbc::Decryptor::<Aes256>::new((&keys.enc).into(), &iv.into());
    let plain = dec
        .decrypt_padded::<Pkcs7>(body)
        .map_err(|_| GossipError::Decrypt)?;
    let node = core::str::from_utf8(plain).map_err(|_| GossipError::NotText)?;
    Ok(Secure {
        timestamp_ms: u64::from_be_bytes(ts),
        node,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Captured from a real libcluster 3.5.0 node on OTP 25 (environment.md §2).
    const CAPTURED_PLAIN: &str =
        "6865617274626561743a3a 8374000000016400046e6f646564000b61403132372e302e302e31";

    #[test]
    fn writes_libclusters_packet_byte_for_byte() {
        let mut out = Vec::new();
        write_plain(&mut out, "a@127.0.0.1");
        assert_eq!(out, hex(CAPTURED_PLAIN));
        assert_eq!(out.len(), 38);
    }

    #[test]
    fn reads_libcluster_packets_in_every_atom_encoding_with_extra_keys() {
        assert_eq!(read_plain(&hex(CAPTURED_PLAIN)), Ok("a@127.0.0.1"));
        // OTP 26+: SMALL_ATOM_UTF8_EXT (from environment.md §1).
        let mut p = PRELUDE.to_vec();
        p.extend(hex("8374000000017704 6e6f6465 770b 61403132372e302e302e31"));
        assert_eq!(read_plain(&p), Ok("a@127.0.0.1"));
        // Extra keys, before and after, of other types: ignored.
        let mut p = PRELUDE.to_vec();
        p.extend([131, 116, 0, 0, 0, 3]);
        p.extend([119, 3, b'v', b's', b'n', 97, 2]);
        p.extend([115, 4, b'n', b'o', b'd', b'e', 115, 3, b'x', b'@', b'y']);
        p.extend([109, 0, 0, 0, 1, 7, 104, 0]);
        assert_eq!(read_plain(&p), Ok("x@y"));
    }

    #[test]
    fn rejects_what_is_not_a_heartbeat() {
        assert_eq!(read_plain(b"hello"), Err(GossipError::NoPrelude));
        assert_eq!(read_plain(&[0u8; 600]), Err(GossipError::TooLarge(600)));
        let mut p = PRELUDE.to_vec();
        p.extend([131, 116, 0, 0, 0, 1, 119, 4, b'n', b'o', b'd', b'e', 97, 1]);
        assert_eq!(read_plain(&p), Err(GossipError::NoNode));
        let mut p = PRELUDE.to_vec();
        p.extend([131, 106]);
        assert_eq!(read_plain(&p), Err(GossipError::NoNode));
        let mut good = hex(CAPTURED_PLAIN);
        good.push(0);
        assert_eq!(
            read_plain(&good),
            Err(GossipError::Term(EtfError::Trailing(1)))
        );
        let mut secure = Vec::new();
        write_secure(&mut secure, &SecureKeys::derive(b"x"), 1, [0; 16], "a@h");
        assert_eq!(read_plain(&secure), Err(GossipError::SecureInCompat));
    }

    #[test]
    fn compat_secret_matches_openssl_and_round_trips() {
        // AES-256-CBC under SHA-256("x") with IV 00..0f, checked with
        // `openssl enc -aes-256-cbc -K $(printf x | sha256sum) -iv 000102..0f`.
        let key = compat_key(b"x");
        assert_eq!(
            key,
            <[u8; 32]>::try_from(hex(
                "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"
            ))
            .unwrap()
        );
        let iv: [u8; 16] = core::array::from_fn(|i| i as u8);
        let mut out = Vec::new();
        write_compat_secret(&mut out, &key, iv, "a@127.0.0.1");
        assert_eq!(out.len(), 16 + 48);
        assert_eq!(&out[..16], &iv);
        assert_eq!(
            &out[16..],
            &hex(
                "e59b500252129c9d6afcd8b702b91998d00fc2d009ae907bc31bda3e6a5aa7858ca666cf72f6177a22b1fd60b87e36cb"
            )[..]
        );
        let mut scratch = [0u8; MAX_PACKET];
        assert_eq!(
            read_compat_secret(&out, &key, &mut scratch),
            Ok("a@127.0.0.1")
        );
        let other = compat_key(b"y");
        assert!(read_compat_secret(&out, &other, &mut scratch).is_err());
        assert_eq!(
            read_compat_secret(&out[..40], &key, &mut scratch),
            Err(GossipError::Decrypt)
        );
        assert_eq!(
            read_compat_secret(&out[..20], &key, &mut scratch),
            Err(GossipError::TooShort(20))
        );
    }

    #[test]
    fn secure_rejects_forged_flipped_truncated_and_other_modes() {
        let keys = SecureKeys::derive(b"s3cret");
        let mut p = Vec::new();
        write_secure(&mut p, &keys, 1_700_000_000_000, [7; 16], "a@10.0.0.1");
        let mut scratch = [0u8; MAX_PACKET];
        let ok = read_secure(&p, &keys, &mut scratch).unwrap();
        assert_eq!(
            ok,
            Secure {
                timestamp_ms: 1_700_000_000_000,
                node: "a@10.0.0.1"
            }
        );
        for i in 0..p.len() {
            for bit in [0x01u8, 0x80] {
                let mut f = p.clone();
                f[i] ^= bit;
                let e = read_secure(&f, &keys, &mut scratch).unwrap_err();
                assert!(
                    matches!(
                        e,
                        GossipError::BadTag | GossipError::Version(_) | GossipError::NotSecure
                    ),
                    "byte {i}: {e:?}"
                );
            }
        }
        let forged = {
            let mut f = Vec::new();
            write_secure(
                &mut f,
                &SecureKeys::derive(b"guess"),
                1_700_000_000_000,
                [7; 16],
                "evil@h",
            );
            f
        };
        assert_eq!(
            read_secure(&forged, &keys, &mut scratch),
            Err(GossipError::BadTag)
        );
        assert_eq!(
            read_secure(&hex(CAPTURED_PLAIN), &keys, &mut scratch),
            Err(GossipError::PlainInSecure)
        );
        let mut compat = Vec::new();
        write_compat_secret(&mut compat, &compat_key(b"s3cret"), [1; 16], "a@h");
        assert_eq!(
            read_secure(&compat, &keys, &mut scratch),
            Err(GossipError::NotSecure)
        );
        let mut v2 = p.clone();
        v2[4] = 2;
        assert_eq!(
            read_secure(&v2, &keys, &mut scratch),
            Err(GossipError::Version(2))
        );
        assert_eq!(
            read_secure(&p[..40], &keys, &mut scratch),
            Err(GossipError::TooShort(40))
        );
    }

    /// A secure packet built independently of this code, with Python's hmac and hashlib
    /// (HKDF as RFC 5869 writes it) and `openssl enc -aes-256-cbc`: secret "k", IV 00..0f,
    /// node "peer@10.0.0.2", timestamp 1,700,000,000,005.
    #[test]
    fn reads_a_secure_packet_built_by_another_implementation() {
        let packet = hex(
            "4d53545201010000018bcfe56805000102030405060708090a0b0c0d0e0f4cf71ff658b712f4eaf3221871d6432715bf309269fc0b3ef2fd375c629ce3a36a24f0bdd936d58b2cee1ace5e8685c2",
        );
        let mut scratch = [0u8; MAX_PACKET];
        let got = read_secure(&packet, &SecureKeys::derive(b"k"), &mut scratch).unwrap();
        assert_eq!(
            got,
            Secure {
                timestamp_ms: 1_700_000_000_005,
                node: "peer@10.0.0.2"
            }
        );
        let mut ours = Vec::new();
        let iv: [u8; 16] = core::array::from_fn(|i| i as u8);
        write_secure(
            &mut ours,
            &SecureKeys::derive(b"k"),
            1_700_000_000_005,
            iv,
            "peer@10.0.0.2",
        );
        assert_eq!(ours, packet);
    }

    proptest! {
        #[test]
        fn no_reader_panics_on_any_input(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut scratch = [0u8; MAX_PACKET];
            let _ = read_plain(&bytes);
            let _ = read_compat_secret(&bytes, &compat_key(b"k"), &mut scratch);
            let _ = read_secure(&bytes, &SecureKeys::derive(b"k"), &mut scratch);
        }

        #[test]
        fn every_form_round_trips(name in "[a-z0-9_-]{1,40}@[a-z0-9.-]{1,60}", ts in any::<u64>(), iv in any::<[u8; 16]>()) {
            let mut scratch = [0u8; MAX_PACKET];
            let mut p = Vec::new();
            write_plain(&mut p, &name);
            prop_assert_eq!(read_plain(&p), Ok(name.as_str()));
            let key = compat_key(b"k");
            let mut c = Vec::new();
            write_compat_secret(&mut c, &key, iv, &name);
            prop_assert_eq!(read_compat_secret(&c, &key, &mut scratch), Ok(name.as_str()));
            let keys = SecureKeys::derive(b"k");
            let mut s = Vec::new();
            write_secure(&mut s, &keys, ts, iv, &name);
            prop_assert!(s.len() <= MAX_PACKET);
            let got = read_secure(&s, &keys, &mut scratch).unwrap();
            prop_assert_eq!(got.node, name.as_str());
            prop_assert_eq!(got.timestamp_ms, ts);
        }
    }
}
