//! Node names (`name@host`) and nodes with an optional address hint.

use core::borrow::Borrow;
use core::fmt;
use core::str::FromStr;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

/// The longest node name Erlang accepts, in bytes.
pub const MAX_NODE_NAME_LEN: usize = 255;

/// A validated node name, `name@host`, as Erlang spells it.
///
/// - `name` is one or more of `A-Z a-z 0-9 _ -`;
/// - exactly one `@`;
/// - `host` is an IPv4 address, an IPv6 address (unbracketed, as Erlang writes it) or a
///   hostname made of dot-separated labels of `A-Z a-z 0-9 _ -` (each 1 to 63 bytes);
/// - at most 255 bytes in all.
///
/// Cloning is cheap (a reference count). Compares, hashes and orders as its text, and
/// borrows as `str`, so a table keyed by `NodeName` can be searched with a `&str`.
///
/// ```
/// use muster_core::NodeName;
/// let n: NodeName = "app@10.0.0.1".parse()?;
/// assert_eq!(n.name(), "app");
/// assert_eq!(n.host(), "10.0.0.1");
/// assert!(n.host_ip().is_some());
/// assert!("app@".parse::<NodeName>().is_err());
/// # Ok::<(), muster_core::NodeNameError>(())
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeName(Arc<str>);

/// Why a string is not a valid node name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NodeNameError {
    /// The text is empty.
    #[error("node name is empty")]
    Empty,
    /// Longer than [`MAX_NODE_NAME_LEN`] bytes.
    #[error("node name is {0} bytes long, the limit is 255")]
    TooLong(usize),
    /// No `@` separates name and host.
    #[error("node name has no '@' (expected name@host)")]
    MissingAt,
    /// More than one `@`.
    #[error("node name has more than one '@'")]
    ExtraAt,
    /// Nothing before the `@`.
    #[error("node name has an empty name part before '@'")]
    EmptyName,
    /// A byte outside `A-Z a-z 0-9 _ -` in the name part.
    #[error("invalid character {0:?} in the name part (allowed: A-Z a-z 0-9 _ -)")]
    BadNameChar(char),
    /// Nothing after the `@`.
    #[error("node name has an empty host part after '@'")]
    EmptyHost,
    /// The host is neither an IP address nor a valid hostname.
    #[error("invalid host {0:?} (expected an IPv4 or IPv6 address or a hostname)")]
    BadHost(String),
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

fn valid_hostname(host: &str) -> bool {
    host.split('.')
        .all(|label| !label.is_empty() && label.len() <= 63 && label.bytes().all(is_name_byte))
}

fn valid_host(host: &str) -> bool {
    if host.contains(':') {
        return host.parse::<Ipv6Addr>().is_ok();
    }
    host.parse::<Ipv4Addr>().is_ok() || valid_hostname(host)
}

impl NodeName {
    /// Validates `s` and makes a node name of it.
    pub fn new(s: &str) -> Result<NodeName, NodeNameError> {
        Self::validate(s)?;
        Ok(NodeName(Arc::from(s)))
    }

    /// Checks `s` without allocating.
    pub fn validate(s: &str) -> Result<(), NodeNameError> {
        if s.is_empty() {
            return Err(NodeNameError::Empty);
        }
        if s.len() > MAX_NODE_NAME_LEN {
            return Err(NodeNameError::TooLong(s.len()));
        }
        let at = s.find('@').ok_or(NodeNameError::MissingAt)?;
        let (name, host) = (&s[..at], &s[at + 1..]);
        if host.contains('@') {
            return Err(NodeNameError::ExtraAt);
        }
        if name.is_empty() {
            return Err(NodeNameError::EmptyName);
        }
        if let Some(c) = name
            .chars()
            .find(|c| !c.is_ascii() || !is_name_byte(*c as u8))
        {
            return Err(NodeNameError::BadNameChar(c));
        }
        if host.is_empty() {
            return Err(NodeNameError::EmptyHost);
        }
        if !valid_host(host) {
            return Err(NodeNameError::BadHost(host.to_owned()));
        }
        Ok(())
    }

    /// The node name built from a name part and an IP address, with the address written as
    /// Erlang's `inet:ntoa` writes it (IPv6 unbracketed, lower case, compressed).
    pub fn from_parts_ip(name: &str, ip: IpAddr) -> Result<NodeName, NodeNameError> {
        NodeName::new(&format!("{name}@{ip}"))
    }

    /// The whole name, `name@host`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn at(&self) -> usize {
        // Validated at construction: exactly one '@'.
        self.0.find('@').unwrap_or(0)
    }

    /// The part before the `@`.
    pub fn name(&self) -> &str {
        &self.0[..self.at()]
    }

    /// The part after the `@`.
    pub fn host(&self) -> &str {
        &self.0[self.at() + 1..]
    }

    /// The host as an IP address, when it is one.
    pub fn host_ip(&self) -> Option<IpAddr> {
        self.host().parse().ok()
    }

    /// True when both refer to the same allocation: a cheap first check before comparing text.
    pub(crate) fn ptr_eq(&self, other: &NodeName) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl FromStr for NodeName {
    type Err = NodeNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NodeName::new(s)
    }
}

impl TryFrom<&str> for NodeName {
    type Error = NodeNameError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        NodeName::new(s)
    }
}

impl Borrow<str> for NodeName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for NodeName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for NodeName {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for NodeName {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// A node to connect to: its name and, where the strategy knows one, the address to use.
///
/// A Kubernetes or DNS SRV strategy knows the pod's address and port; a connector uses the
/// hint instead of resolving the host part of the name.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Node {
    /// The node's name.
    pub name: NodeName,
    /// Where to reach it, if the strategy knows.
    pub addr: Option<SocketAddr>,
}

impl Node {
    /// A node with no address hint.
    pub fn new(name: NodeName) -> Self {
        Node { name, addr: None }
    }

    /// A node with an address hint.
    pub fn with_addr(name: NodeName, addr: SocketAddr) -> Self {
        Node {
            name,
            addr: Some(addr),
        }
    }
}

impl From<NodeName> for Node {
    fn from(name: NodeName) -> Self {
        Node::new(name)
    }
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.addr {
            Some(a) => write!(f, "{} ({a})", self.name),
            None => write!(f, "{}", self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_what_erlang_accepts() {
        for ok in [
            "a@b",
            "app@10.0.0.1",
            "node_1-x@my-host.example.com",
            "node@2a09:8280:1:a270:b8f5:b9f7:8891:f3",
            "n@::1",
            "A@HOST_name",
            "app@myapp-0.myapp-headless.default.svc.cluster.local",
        ] {
            let n = NodeName::new(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert_eq!(n.as_str(), ok);
            assert_eq!(format!("{}@{}", n.name(), n.host()), ok);
        }
    }

    #[test]
    fn rejects_with_the_reason() {
        use NodeNameError::*;
        let cases: &[(&str, NodeNameError)] = &[
            ("", Empty),
            ("ab", MissingAt),
            ("a@b@c", ExtraAt),
            ("@b", EmptyName),
            ("a b@c", BadNameChar(' ')),
            ("né@c", BadNameChar('é')),
            ("a@", EmptyHost),
            ("a@b..c", BadHost("b..c".into())),
            ("a@b.", BadHost("b.".into())),
            ("a@[::1]", BadHost("[::1]".into())),
            ("a@1:2", BadHost("1:2".into())),
            ("a@h st", BadHost("h st".into())),
        ];
        for (s, e) in cases {
            assert_eq!(NodeName::new(s).as_ref().err(), Some(e), "{s}");
        }
        let long = format!("a@{}", "h".repeat(254));
        assert_eq!(NodeName::new(&long), Err(TooLong(256)));
        let label = format!("a@{}", "h".repeat(64));
        assert!(matches!(NodeName::new(&label), Err(BadHost(_))));
    }

    #[test]
    fn host_ip_and_ip_constructor() {
        let n = NodeName::from_parts_ip(
            "node",
            "2a09:8280:1:a270:b8f5:b9f7:8891:f3".parse().unwrap(),
        )
        .unwrap();
        assert_eq!(n.as_str(), "node@2a09:8280:1:a270:b8f5:b9f7:8891:f3");
        assert!(n.host_ip().unwrap().is_ipv6());
        assert_eq!(NodeName::new("a@host").unwrap().host_ip(), None);
    }

    proptest! {
        #[test]
        fn never_panics_and_round_trips(s in ".{0,300}") {
            if let Ok(n) = NodeName::new(&s) {
                prop_assert_eq!(n.as_str(), s.as_str());
                prop_assert_eq!(n.to_string().parse::<NodeName>().unwrap(), n.clone());
                prop_assert!(n.as_str().len() <= MAX_NODE_NAME_LEN);
                prop_assert_eq!(n.as_str().matches('@').count(), 1);
            }
        }

        #[test]
        fn valid_shapes_are_accepted(
            name in "[A-Za-z0-9_-]{1,40}",
            host in "[a-z0-9-]{1,20}(\\.[a-z0-9_-]{1,20}){0,4}",
        ) {
            let s = format!("{name}@{host}");
            prop_assert!(NodeName::new(&s).is_ok(), "{}", s);
        }

        #[test]
        fn every_ip_is_a_valid_host(ip in any::<IpAddr>()) {
            prop_assert!(NodeName::from_parts_ip("n", ip).is_ok());
        }
    }
}
