//! An EPMD as a state machine: real `erl` nodes register with it and ask it where other nodes
//! listen, exactly as they do with Erlang's own `epmd`.
//!
//! The adapter accepts TCP connections on the EPMD port, gives each an id, feeds its bytes to
//! [`handle_data`](EpmdServer::handle_data), reports its end with
//! [`handle_closed`](EpmdServer::handle_closed), and carries out
//! [`poll_output`](EpmdServer::poll_output). A node stays registered while the connection it
//! registered on stays open.

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::proto::epmd::{self, NodeEntry, Request};
use crate::rng::Rng;

/// The most a connection may send before its request is whole.
const MAX_REQUEST: usize = 64 * 1024;

/// What the adapter must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EpmdOutput {
    /// Write `data` to connection `conn`.
    Write {
        /// The connection.
        conn: u64,
        /// The bytes.
        data: Vec<u8>,
    },
    /// Close connection `conn` (after writing what was asked before).
    Close {
        /// The connection.
        conn: u64,
    },
}

#[derive(Debug, Default)]
struct Conn {
    buf: Vec<u8>,
    registered: Option<String>,
}

/// The embedded EPMD; see the module documentation.
#[derive(Debug)]
pub struct EpmdServer {
    port: u16,
    nodes: BTreeMap<String, (NodeEntry, u64)>,
    conns: HashMap<u64, Conn>,
    out: VecDeque<EpmdOutput>,
    next_creation: u32,
    requests: u64,
}

impl EpmdServer {
    /// An EPMD that reports it listens on `port`.
    pub fn new(port: u16, rng: &mut Rng) -> Self {
        EpmdServer {
            port,
            nodes: BTreeMap::new(),
            conns: HashMap::new(),
            out: VecDeque::new(),
            // Creations start anywhere, so a node that re-registers gets a new one.
            next_creation: (rng.next_u64() as u32) | 1,
            requests: 0,
        }
    }

    /// A connection was accepted.
    pub fn handle_open(&mut self, conn: u64) {
        self.conns.insert(conn, Conn::default());
    }

    /// Bytes arrived on `conn`.
    pub fn handle_data(&mut self, conn: u64, data: &[u8]) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.buf.extend_from_slice(data);
        if c.buf.len() > MAX_REQUEST {
            return self.close(conn);
        }
        loop {
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            match epmd::parse_request(&c.buf) {
                Ok(None) => return,
                Ok(Some((req, used))) => {
                    c.buf.drain(..used);
                    self.requests += 1;
                    self.serve(conn, req);
                }
                Err(_) => return self.close(conn),
            }
        }
    }

    /// `conn` closed (or failed): a node registered on it is unregistered.
    pub fn handle_closed(&mut self, conn: u64) {
        if let Some(c) = self.conns.remove(&conn)
            && let Some(name) = c.registered
            && self
                .nodes
                .get(&name)
                .is_some_and(|(_, owner)| *owner == conn)
        {
            self.nodes.remove(&name);
        }
    }

    fn close(&mut self, conn: u64) {
        self.out.push_back(EpmdOutput::Close { conn });
        self.handle_closed(conn);
    }

    fn reply_and_close(&mut self, conn: u64, data: Vec<u8>) {
        self.out.push_back(EpmdOutput::Write { conn, data });
        self.close(conn);
    }

    fn serve(&mut self, conn: u64, req: Request) {
        match req {
            Request::Alive2(entry) => {
                let taken = self.nodes.contains_key(&entry.name);
                let already = self
                    .conns
                    .get(&conn)
                    .is_some_and(|c| c.registered.is_some());
                if taken || already {
                    return self.reply_and_close(conn, epmd::alive2_reply(1, 0));
                }
                let creation = self.next_creation;
                self.next_creation = self.next_creation.wrapping_add(1).max(1);
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.registered = Some(entry.name.clone());
                }
                self.nodes.insert(entry.name.clone(), (entry, conn));
                self.out.push_back(EpmdOutput::Write {
                    conn,
                    data: epmd::alive2_reply(0, creation),
                });
            }
            Request::PortPlease2(name) => {
                let reply = epmd::port2_reply(self.nodes.get(&name).map(|(e, _)| e));
                self.reply_and_close(conn, reply);
            }
            Request::Names => {
                let reply = epmd::names_reply(
                    self.port,
                    self.nodes.values().map(|(e, _)| (e.name.as_str(), e.port)),
                );
                self.reply_and_close(conn, reply);
            }
            Request::Dump => {
                let mut out = u32::from(self.port).to_be_bytes().to_vec();
                for (e, fd) in self.nodes.values() {
                    out.extend_from_slice(
                        format!(
                            "active name     <{}> at port {}, fd = {fd}\n",
                            e.name, e.port
                        )
                        .as_bytes(),
                    );
                }
                self.reply_and_close(conn, out);
            }
            // Stopping is not ours to allow: the nodes registered here rely on it.
            Request::Kill => self.reply_and_close(conn, b"OK".to_vec()),
            Request::Stop(_) => self.reply_and_close(conn, b"NOEXIST".to_vec()),
        }
    }

    /// The next thing to do.
    pub fn poll_output(&mut self) -> Option<EpmdOutput> {
        self.out.pop_front()
    }

    /// The registered nodes: name and distribution port.
    pub fn names(&self) -> impl Iterator<Item = (&str, u16)> {
        self.nodes.values().map(|(e, _)| (e.name.as_str(), e.port))
    }

    /// Requests answered so far.
    pub fn requests(&self) -> u64 {
        self.requests
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(s: &mut EpmdServer) -> Vec<EpmdOutput> {
        std::iter::from_fn(|| s.poll_output()).collect()
    }

    #[test]
    fn registers_answers_and_forgets_when_the_connection_closes() {
        let mut s = EpmdServer::new(4369, &mut Rng::from_seed([1; 32]));
        s.handle_open(1);
        let req = epmd::alive2_request(&NodeEntry::new("a", 40000, false));
        // Byte by byte, as a slow client would send it.
        for b in &req {
            s.handle_data(1, &[*b]);
        }
        let out = drain(&mut s);
        let [EpmdOutput::Write { conn: 1, data }] = &out[..] else {
            panic!("{out:?}")
        };
        assert!(epmd::parse_alive2_reply(data).unwrap().is_some());
        // A second registration of the name is refused.
        s.handle_open(2);
        s.handle_data(2, &epmd::alive2_request(&NodeEntry::new("a", 40001, false)));
        let out = drain(&mut s);
        assert!(
            matches!(&out[..], [EpmdOutput::Write { conn: 2, data }, EpmdOutput::Close { conn: 2 }] if data == &[118, 1, 0, 0, 0, 0])
        );
        s.handle_open(3);
        s.handle_data(3, &epmd::port_please_request("a"));
        let out = drain(&mut s);
        let [
            EpmdOutput::Write { data, .. },
            EpmdOutput::Close { conn: 3 },
        ] = &out[..]
        else {
            panic!()
        };
        assert_eq!(epmd::parse_port2(data).unwrap().unwrap().port, 40000);
        s.handle_open(4);
        s.handle_data(4, &epmd::names_request());
        let [EpmdOutput::Write { data, .. }, _] = &drain(&mut s)[..] else {
            panic!()
        };
        assert_eq!(
            epmd::parse_names(data).unwrap().nodes,
            vec![("a".into(), 40000)]
        );
        s.handle_closed(1);
        assert_eq!(s.names().count(), 0);
        s.handle_open(5);
        s.handle_data(5, &epmd::port_please_request("a"));
        let [EpmdOutput::Write { data, .. }, _] = &drain(&mut s)[..] else {
            panic!()
        };
        assert_eq!(data, &[119, 1]);
    }

    #[test]
    fn garbage_closes_the_connection() {
        let mut s = EpmdServer::new(4369, &mut Rng::from_seed([1; 32]));
        s.handle_open(9);
        s.handle_data(9, &[0, 1, 250]);
        assert_eq!(drain(&mut s), vec![EpmdOutput::Close { conn: 9 }]);
        s.handle_open(8);
        s.handle_data(8, &vec![0xff; 70_000]);
        assert_eq!(drain(&mut s), vec![EpmdOutput::Close { conn: 8 }]);
    }
}
