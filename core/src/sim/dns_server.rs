//! A name server for the simulator: it answers queries from its zone over UDP and TCP, as an
//! authoritative server would, and can be told to misbehave.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};

/// A record in a [`DnsServer`]'s zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsRecord {
    /// An IPv4 address.
    A(Ipv4Addr),
    /// An IPv6 address.
    Aaaa(Ipv6Addr),
    /// An alias for another name.
    Cname(String),
    /// A service.
    Srv {
        /// Priority.
        priority: u16,
        /// Weight.
        weight: u16,
        /// Port.
        port: u16,
        /// Target host.
        target: String,
    },
}

/// How a [`DnsServer`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum DnsBehaviour {
    /// From its zone.
    #[default]
    Answer,
    /// SERVFAIL to everything.
    ServFail,
    /// REFUSED to everything.
    Refused,
    /// Nothing at all (a server that is down).
    Silent,
    /// A reply with another ID (a forgery, or a late reply to something else).
    WrongId,
    /// A reply to another question, with the right ID.
    WrongQuestion,
}

/// A simulated name server; add it with [`Sim::add_dns_server`](super::Sim::add_dns_server).
#[derive(Debug, Clone, Default)]
pub struct DnsServer {
    zone: BTreeMap<String, Vec<DnsRecord>>,
    /// What every name outside the zone has, if anything.
    wildcard: Option<Vec<DnsRecord>>,
    behaviour: DnsBehaviour,
    queries: u64,
    tcp_queries: u64,
}

fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn fqdn(name: &str) -> Option<Name> {
    let mut n = Name::from_ascii(name).ok()?;
    n.set_fqdn(true);
    Some(n)
}

impl DnsServer {
    /// A server with an empty zone.
    pub fn new() -> Self {
        DnsServer::default()
    }

    /// Sets the records of `name`, replacing any it had.
    pub fn set(&mut self, name: &str, records: Vec<DnsRecord>) -> &mut Self {
        self.zone.insert(key(name), records);
        self
    }

    /// Gives every name outside the zone these records (else such a name is NXDOMAIN): a
    /// server that answers whatever a configuration asks, as `muster simulate` needs.
    pub fn wildcard(&mut self, records: Vec<DnsRecord>) -> &mut Self {
        self.wildcard = Some(records);
        self
    }

    /// Removes `name` from the zone: it becomes NXDOMAIN.
    pub fn remove(&mut self, name: &str) -> &mut Self {
        self.zone.remove(&key(name));
        self
    }

    /// Sets how the server answers from now on.
    pub fn behave(&mut self, b: DnsBehaviour) -> &mut Self {
        self.behaviour = b;
        self
    }

    /// Queries received so far, over both transports.
    pub fn queries(&self) -> u64 {
        self.queries
    }

    /// Queries received over TCP so far.
    pub fn tcp_queries(&self) -> u64 {
        self.tcp_queries
    }

    fn records(&self, name: &Name, rtype: RecordType, out: &mut Vec<Record>, depth: u8) {
        let Some(rs) = self
            .zone
            .get(&key(&name.to_ascii()))
            .or(self.wildcard.as_ref())
        else {
            return;
        };
        for r in rs {
            let data = match (r, rtype) {
                (DnsRecord::A(a), RecordType::A) => RData::A(A(*a)),
                (DnsRecord::Aaaa(a), RecordType::AAAA) => RData::AAAA(AAAA(*a)),
                (
                    DnsRecord::Srv {
                        priority,
                        weight,
                        port,
                        target,
                    },
                    RecordType::SRV,
                ) => {
                    let Some(t) = fqdn(target) else { continue };
                    RData::SRV(SRV::new(*priority, *weight, *port, t))
                }
                (DnsRecord::Cname(c), _) if depth < 16 => {
                    let Some(t) = fqdn(c) else { continue };
                    out.push(Record::from_rdata(
                        name.clone(),
                        30,
                        RData::CNAME(CNAME(t.clone())),
                    ));
                    self.records(&t, rtype, out, depth + 1);
                    continue;
                }
                _ => continue,
            };
            out.push(Record::from_rdata(name.clone(), 30, data));
        }
    }

    /// The reply to `query`, or `None` when the server stays silent (or `query` is not a DNS
    /// query). Over UDP a reply larger than the client's EDNS payload (512 bytes without
    /// EDNS) is sent truncated, as servers do.
    pub fn answer(&mut self, query: &[u8], tcp: bool) -> Option<Vec<u8>> {
        let q = Message::from_vec(query).ok()?;
        if q.metadata.message_type != MessageType::Query {
            return None;
        }
        self.queries += 1;
        self.tcp_queries += u64::from(tcp);
        let question = q.queries.first()?.clone();
        let mut m = Message::new(q.metadata.id, MessageType::Response, OpCode::Query);
        m.metadata.recursion_desired = q.metadata.recursion_desired;
        m.metadata.authoritative = true;
        let limit = match &q.edns {
            Some(e) => {
                let mut edns = Edns::new();
                edns.set_max_payload(e.max_payload());
                m.set_edns(edns);
                usize::from(e.max_payload().max(512))
            }
            None => 512,
        };
        match self.behaviour {
            DnsBehaviour::Silent => return None,
            DnsBehaviour::ServFail => m.metadata.response_code = ResponseCode::ServFail,
            DnsBehaviour::Refused => m.metadata.response_code = ResponseCode::Refused,
            DnsBehaviour::WrongId => m.metadata.id = q.metadata.id.wrapping_add(1),
            DnsBehaviour::Answer | DnsBehaviour::WrongQuestion => {}
        }
        let mut asked = question.clone();
        if self.behaviour == DnsBehaviour::WrongQuestion {
            let other = fqdn("other.invalid")?;
            asked.set_name(other);
        }
        m.add_query(asked);
        if m.metadata.response_code == ResponseCode::NoError {
            let name = question.name().clone();
            if !self.zone.contains_key(&key(&name.to_ascii())) && self.wildcard.is_none() {
                m.metadata.response_code = ResponseCode::NXDomain;
            } else {
                let mut answers = Vec::new();
                self.records(&name, question.query_type(), &mut answers, 0);
                let mut extra = Vec::new();
                for r in &answers {
                    if let RData::SRV(s) = &r.data {
                        self.records(&s.target, RecordType::A, &mut extra, 16);
                        self.records(&s.target, RecordType::AAAA, &mut extra, 16);
                    }
                }
                m.add_answers(answers);
                m.add_additionals(extra);
            }
        }
        let bytes = m.to_vec().ok()?;
        if tcp || bytes.len() <= limit {
            return Some(bytes);
        }
        m.answers.clear();
        m.additionals.clear();
        m.metadata.truncation = true;
        m.to_vec().ok()
    }
}
