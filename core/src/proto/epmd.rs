//! EPMD, the Erlang Port Mapper Daemon protocol: both sides (muster asks real EPMDs, and runs
//! its own).
//!
//! Every request is a 2-byte big-endian length and the request; replies are unframed, and
//! except for `ALIVE2` the EPMD closes the connection after replying.

use core::fmt;

/// The EPMD port when `ERL_EPMD_PORT` does not say otherwise.
pub const DEFAULT_PORT: u16 = 4369;

/// Request and reply tags.
pub mod tag {
    #![allow(missing_docs)]
    pub const ALIVE2_REQ: u8 = 120;
    pub const ALIVE2_X_RESP: u8 = 118;
    pub const ALIVE2_RESP: u8 = 121;
    pub const PORT_PLEASE2_REQ: u8 = 122;
    pub const PORT2_RESP: u8 = 119;
    pub const NAMES_REQ: u8 = 110;
    pub const DUMP_REQ: u8 = 100;
    pub const KILL_REQ: u8 = 107;
    pub const STOP_REQ: u8 = 115;
}

/// Node type in `ALIVE2_REQ` and `PORT2_RESP`: a normal Erlang node.
pub const NODE_TYPE_NORMAL: u8 = 77;
/// Node type: a hidden node.
pub const NODE_TYPE_HIDDEN: u8 = 72;

/// Why an EPMD message could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EpmdError {
    /// The message ended early.
    #[error("truncated EPMD message")]
    Truncated,
    /// A tag that is not the one expected.
    #[error("unexpected EPMD message tag {0}")]
    Tag(u8),
    /// A field that is not what the protocol allows.
    #[error("malformed EPMD message: {0}")]
    Malformed(&'static str),
    /// EPMD refused the request (`Result` > 0).
    #[error("EPMD refused the request (result {0})")]
    Refused(u8),
}

/// What a node registers, and what `PORT_PLEASE2` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeEntry {
    /// The name part of the node name (before the `@`).
    pub name: String,
    /// The distribution port.
    pub port: u16,
    /// 77 normal, 72 hidden.
    pub node_type: u8,
    /// 0 = TCP/IPv4.
    pub protocol: u8,
    /// The highest distribution version the node speaks.
    pub highest: u16,
    /// The lowest distribution version the node speaks.
    pub lowest: u16,
    /// Extra data.
    pub extra: Vec<u8>,
}

impl NodeEntry {
    /// A node of this library: distribution versions 5 to 6 over TCP.
    pub fn new(name: &str, port: u16, hidden: bool) -> Self {
        NodeEntry {
            name: name.to_owned(),
            port,
            node_type: if hidden {
                NODE_TYPE_HIDDEN
            } else {
                NODE_TYPE_NORMAL
            },
            protocol: 0,
            highest: 6,
            lowest: 5,
            extra: Vec::new(),
        }
    }
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn new(b: &'a [u8]) -> Self {
        Cursor { b, at: 0 }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], EpmdError> {
        let s = self
            .b
            .get(self.at..self.at + n)
            .ok_or(EpmdError::Truncated)?;
        self.at += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, EpmdError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, EpmdError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, EpmdError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn text(&mut self, n: usize) -> Result<String, EpmdError> {
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| EpmdError::Malformed("name is not UTF-8"))
    }
    fn rest(&self) -> &'a [u8] {
        &self.b[self.at.min(self.b.len())..]
    }
}

fn framed(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 2);
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn entry_body(out: &mut Vec<u8>, e: &NodeEntry) {
    out.extend_from_slice(&e.port.to_be_bytes());
    out.push(e.node_type);
    out.push(e.protocol);
    out.extend_from_slice(&e.highest.to_be_bytes());
    out.extend_from_slice(&e.lowest.to_be_bytes());
    out.extend_from_slice(&(e.name.len() as u16).to_be_bytes());
    out.extend_from_slice(e.name.as_bytes());
    out.extend_from_slice(&(e.extra.len() as u16).to_be_bytes());
    out.extend_from_slice(&e.extra);
}

fn read_entry(c: &mut Cursor<'_>) -> Result<NodeEntry, EpmdError> {
    let port = c.u16()?;
    let node_type = c.u8()?;
    let protocol = c.u8()?;
    let highest = c.u16()?;
    let lowest = c.u16()?;
    let nlen = usize::from(c.u16()?);
    let name = c.text(nlen)?;
    let elen = usize::from(c.u16()?);
    let extra = c.take(elen)?.to_vec();
    Ok(NodeEntry {
        name,
        port,
        node_type,
        protocol,
        highest,
        lowest,
        extra,
    })
}

// ----- the client side ---------------------------------------------------------------------

/// `NAMES_REQ`, framed.
pub fn names_request() -> Vec<u8> {
    framed(&[tag::NAMES_REQ])
}

/// The registered names and ports in a whole `NAMES_RESP` (the EPMD closes after it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// The port the EPMD said it listens on.
    pub epmd_port: u32,
    /// `(name, port)` of each registered node.
    pub nodes: Vec<(String, u16)>,
    /// Lines that are not `name NAME at port PORT`, as they came (a name with a line break
    /// in it makes such lines): skipped, for the caller to report.
    pub skipped: Vec<String>,
}

/// Reads a whole `NAMES_RESP`: the EPMD's port, then `name NAME at port PORT\n` lines. A line
/// of another shape is skipped and kept in [`Names::skipped`], never fatal to the others.
pub fn parse_names(reply: &[u8]) -> Result<Names, EpmdError> {
    let mut c = Cursor::new(reply);
    let epmd_port = c.u32()?;
    let text = String::from_utf8_lossy(c.rest());
    let mut nodes = Vec::new();
    let mut skipped = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let entry = line
            .strip_prefix("name ")
            .and_then(|rest| rest.rsplit_once(" at port "))
            .and_then(|(name, port)| Some((name, port.trim().parse::<u16>().ok()?)));
        match entry {
            Some((name, port)) => nodes.push((name.to_owned(), port)),
            None => skipped.push(line.to_owned()),
        }
    }
    Ok(Names {
        epmd_port,
        nodes,
        skipped,
    })
}

/// `PORT_PLEASE2_REQ` for `name` (the part before the `@`), framed.
pub fn port_please_request(name: &str) -> Vec<u8> {
    let mut body = vec![tag::PORT_PLEASE2_REQ];
    body.extend_from_slice(name.as_bytes());
    framed(&body)
}

/// Reads a whole `PORT2_RESP`: `Ok(None)` when the node is not registered.
pub fn parse_port2(reply: &[u8]) -> Result<Option<NodeEntry>, EpmdError> {
    let mut c = Cursor::new(reply);
    match c.u8()? {
        tag::PORT2_RESP => {}
        t => return Err(EpmdError::Tag(t)),
    }
    match c.u8()? {
        0 => read_entry(&mut c).map(Some),
        _ => Ok(None),
    }
}

/// `ALIVE2_REQ` registering `entry`, framed.
pub fn alive2_request(entry: &NodeEntry) -> Vec<u8> {
    let mut body = vec![tag::ALIVE2_REQ];
    entry_body(&mut body, entry);
    framed(&body)
}

/// The reply to `ALIVE2_REQ`: the creation on success. `Ok(None)` until the bytes so far
/// hold a whole reply.
pub fn parse_alive2_reply(reply: &[u8]) -> Result<Option<u32>, EpmdError> {
    let mut c = Cursor::new(reply);
    let Ok(t) = c.u8() else { return Ok(None) };
    let Ok(result) = c.u8() else { return Ok(None) };
    if result != 0 {
        return Err(EpmdError::Refused(result));
    }
    match t {
        tag::ALIVE2_X_RESP => Ok(c.u32().ok()),
        tag::ALIVE2_RESP => Ok(c.u16().ok().map(u32::from)),
        t => Err(EpmdError::Tag(t)),
    }
}

// ----- the server side ---------------------------------------------------------------------

/// A request as an EPMD receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Request {
    /// Register a node (the connection stays open for as long as it is registered).
    Alive2(NodeEntry),
    /// Where does node `name` listen?
    PortPlease2(String),
    /// All registered names.
    Names,
    /// All registered names, in the debug format.
    Dump,
    /// Stop the EPMD.
    Kill,
    /// Stop a node (unused by OTP).
    Stop(String),
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Request::Alive2(e) => write!(f, "ALIVE2 {} port {}", e.name, e.port),
            Request::PortPlease2(n) => write!(f, "PORT_PLEASE2 {n}"),
            Request::Names => f.write_str("NAMES"),
            Request::Dump => f.write_str("DUMP"),
            Request::Kill => f.write_str("KILL"),
            Request::Stop(n) => write!(f, "STOP {n}"),
        }
    }
}

/// Reads one framed request from the start of `buf`: `Ok(None)` until it is whole, else the
/// request and how many bytes it took.
pub fn parse_request(buf: &[u8]) -> Result<Option<(Request, usize)>, EpmdError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let len = usize::from(u16::from_be_bytes([buf[0], buf[1]]));
    if len == 0 {
        return Err(EpmdError::Malformed("empty request"));
    }
    let Some(body) = buf.get(2..2 + len) else {
        return Ok(None);
    };
    let mut c = Cursor::new(body);
    let req = match c.u8()? {
        tag::ALIVE2_REQ => Request::Alive2(read_entry(&mut c)?),
        tag::PORT_PLEASE2_REQ => Request::PortPlease2(c.text(len - 1)?),
        tag::NAMES_REQ => Request::Names,
        tag::DUMP_REQ => Request::Dump,
        tag::KILL_REQ => Request::Kill,
        tag::STOP_REQ => Request::Stop(c.text(len - 1)?),
        t => return Err(EpmdError::Tag(t)),
    };
    Ok(Some((req, 2 + len)))
}

/// `ALIVE2_X_RESP`.
pub fn alive2_reply(result: u8, creation: u32) -> Vec<u8> {
    let mut out = vec![tag::ALIVE2_X_RESP, result];
    out.extend_from_slice(&creation.to_be_bytes());
    out
}

/// `PORT2_RESP`: the entry, or "not found".
pub fn port2_reply(entry: Option<&NodeEntry>) -> Vec<u8> {
    match entry {
        Some(e) => {
            let mut out = vec![tag::PORT2_RESP, 0];
            entry_body(&mut out, e);
            out
        }
        None => vec![tag::PORT2_RESP, 1],
    }
}

/// `NAMES_RESP`.
pub fn names_reply<'a>(epmd_port: u16, nodes: impl IntoIterator<Item = (&'a str, u16)>) -> Vec<u8> {
    let mut out = u32::from(epmd_port).to_be_bytes().to_vec();
    for (name, port) in nodes {
        out.extend_from_slice(format!("name {name} at port {port}\n").as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_what_a_real_epmd_answered() {
        // From environment.md §1, captured against Erlang's own epmd.
        let names = [0, 0, 0x11, 0x11]
            .iter()
            .copied()
            .chain(*b"name b at port 43451\nname a at port 39483\n")
            .collect::<Vec<u8>>();
        let n = parse_names(&names).unwrap();
        assert_eq!(n.epmd_port, 4369);
        assert_eq!(n.nodes, vec![("b".into(), 43451), ("a".into(), 39483)]);
        let port2 = [119, 0, 154, 59, 77, 0, 0, 6, 0, 5, 0, 1, 97, 0, 0];
        let e = parse_port2(&port2).unwrap().unwrap();
        assert_eq!(
            (e.name.as_str(), e.port, e.node_type, e.highest, e.lowest),
            ("a", 39483, 77, 6, 5)
        );
        assert_eq!(parse_port2(&[119, 1]), Ok(None));
        assert_eq!(port_please_request("a"), vec![0, 2, b'z', b'a']);
        assert_eq!(names_request(), vec![0, 1, b'n']);
    }

    #[test]
    fn server_and_client_agree() {
        let e = NodeEntry::new("rust", 40000, true);
        let req = alive2_request(&e);
        let (got, used) = parse_request(&req).unwrap().unwrap();
        assert_eq!(got, Request::Alive2(e.clone()));
        assert_eq!(used, req.len());
        assert_eq!(parse_request(&req[..5]), Ok(None));
        assert_eq!(parse_alive2_reply(&alive2_reply(0, 77)), Ok(Some(77)));
        assert_eq!(parse_alive2_reply(&[118, 0, 0]), Ok(None));
        assert_eq!(parse_alive2_reply(&[121, 0, 0, 3]), Ok(Some(3)));
        assert_eq!(parse_alive2_reply(&[118, 1]), Err(EpmdError::Refused(1)));
        assert_eq!(parse_port2(&port2_reply(Some(&e))), Ok(Some(e)));
        let names = names_reply(4369, [("a", 1), ("b", 2)]);
        assert_eq!(
            parse_names(&names).unwrap().nodes,
            vec![("a".into(), 1), ("b".into(), 2)]
        );
        let (req, _) = parse_request(&port_please_request("zed")).unwrap().unwrap();
        assert_eq!(req, Request::PortPlease2("zed".into()));
    }

    proptest! {
        #[test]
        fn no_reader_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_names(&bytes);
            let _ = parse_port2(&bytes);
            let _ = parse_alive2_reply(&bytes);
            let _ = parse_request(&bytes);
        }
    }
}
