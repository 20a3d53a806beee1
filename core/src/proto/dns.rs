//! DNS messages, on hickory-proto: queries muster sends and the answers it accepts.

use std::net::IpAddr;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};

/// The EDNS0 UDP payload muster announces (the DNS flag day 2020 value).
pub const EDNS_PAYLOAD: u16 = 1232;

/// The record types muster asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// IPv4 addresses.
    A,
    /// IPv6 addresses.
    Aaaa,
    /// Services.
    Srv,
}

impl core::fmt::Display for Kind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Kind::A => "A",
            Kind::Aaaa => "AAAA",
            Kind::Srv => "SRV",
        })
    }
}

impl Kind {
    fn rtype(self) -> RecordType {
        match self {
            Kind::A => RecordType::A,
            Kind::Aaaa => RecordType::AAAA,
            Kind::Srv => RecordType::SRV,
        }
    }
}

/// A record muster uses.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Found {
    /// An address (A or AAAA).
    Ip(IpAddr),
    /// A service: its target (without the trailing dot), port, priority and weight, and the
    /// target's address when the additional section carried it.
    Srv {
        /// The target host.
        target: String,
        /// The port.
        port: u16,
        /// Priority.
        priority: u16,
        /// Weight.
        weight: u16,
        /// The target's address, from the additional section.
        addr: Option<IpAddr>,
    },
}

/// Why a query could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a valid DNS name")]
pub struct BadName(pub String);

/// A query for `name` (taken as absolute) of `kind`, with recursion desired.
pub fn query(id: u16, name: &str, kind: Kind, edns: bool) -> Result<Vec<u8>, BadName> {
    let mut n = Name::from_ascii(name).map_err(|_| BadName(name.to_owned()))?;
    n.set_fqdn(true);
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(n, kind.rtype()));
    if edns {
        let mut e = Edns::new();
        e.set_max_payload(EDNS_PAYLOAD);
        m.set_edns(e);
    }
    m.to_vec().map_err(|_| BadName(name.to_owned()))
}

/// What a reply says, once it is known to answer our question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// The answer was cut: ask again over TCP.
    Truncated,
    /// Records of the kind asked (after following CNAMEs within the answer).
    Records(Vec<Found>),
    /// The answer points (through CNAMEs) at another name it holds no records for.
    Alias(String),
    /// The name exists but has no records of the kind (NOERROR, empty).
    NoData,
    /// The name does not exist.
    NxDomain,
    /// The server refused to answer: try another.
    Refused,
    /// The server failed: try another.
    ServerError(String),
}

/// Why a reply is not one to accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Mismatch {
    /// Not a DNS message.
    #[error("malformed DNS message")]
    Malformed,
    /// A query, not a reply.
    #[error("not a DNS reply")]
    NotReply,
    /// Another ID: not the answer to our query (or forged).
    #[error("reply ID {0} does not match the query's")]
    Id(u16),
    /// Another question.
    #[error("the reply's question is not ours")]
    Question,
}

/// The longest chain of CNAMEs followed within one answer.
const MAX_CNAMES: usize = 8;

fn text(n: &Name) -> String {
    let s = n.to_ascii();
    s.strip_suffix('.').unwrap_or(&s).to_owned()
}

/// Reads a reply to the query `id` for `name` of `kind`.
pub fn read_reply(bytes: &[u8], id: u16, name: &str, kind: Kind) -> Result<Reply, Mismatch> {
    let m = Message::from_vec(bytes).map_err(|_| Mismatch::Malformed)?;
    if m.metadata.message_type != MessageType::Response {
        return Err(Mismatch::NotReply);
    }
    if m.metadata.id != id {
        return Err(Mismatch::Id(m.metadata.id));
    }
    let mut asked = Name::from_ascii(name).map_err(|_| Mismatch::Question)?;
    asked.set_fqdn(true);
    let ours = matches!(&m.queries[..], [q] if q.name() == &asked && q.query_type() == kind.rtype() && q.query_class() == DNSClass::IN);
    if !ours {
        return Err(Mismatch::Question);
    }
    if m.metadata.truncation {
        return Ok(Reply::Truncated);
    }
    match m.metadata.response_code {
        ResponseCode::NoError => {}
        ResponseCode::NXDomain => return Ok(Reply::NxDomain),
        ResponseCode::Refused => return Ok(Reply::Refused),
        other => return Ok(Reply::ServerError(other.to_string())),
    }
    // Follow CNAMEs from the asked name, within the answer section.
    let mut current = asked;
    for hops in 0..=MAX_CNAMES {
        let here: Vec<&RData> = m
            .answers
            .iter()
            .filter(|r| r.name == current)
            .map(|r| &r.data)
            .collect();
        let mut found = Vec::new();
        let mut alias = None;
        for data in here {
            match (data, kind) {
                (RData::A(a), Kind::A) => found.push(Found::Ip(IpAddr::V4(a.0))),
                (RData::AAAA(a), Kind::Aaaa) => found.push(Found::Ip(IpAddr::V6(a.0))),
                (RData::SRV(s), Kind::Srv) => {
                    let addr = m.additionals.iter().find_map(|r| match &r.data {
                        RData::A(a) if r.name == s.target => Some(IpAddr::V4(a.0)),
                        RData::AAAA(a) if r.name == s.target => Some(IpAddr::V6(a.0)),
                        _ => None,
                    });
                    found.push(Found::Srv {
                        target: text(&s.target),
                        port: s.port,
                        priority: s.priority,
                        weight: s.weight,
                        addr,
                    });
                }
                (RData::CNAME(c), _) => alias = Some(c.0.clone()),
                _ => {}
            }
        }
        if !found.is_empty() {
            found.sort();
            found.dedup();
            return Ok(Reply::Records(found));
        }
        match alias {
            Some(next) => current = next,
            None if hops == 0 => return Ok(Reply::NoData),
            None => return Ok(Reply::Alias(text(&current))),
        }
    }
    Ok(Reply::ServerError(format!("more than {MAX_CNAMES} CNAMEs")))
}

/// The ID of a DNS message, if it has a header.
pub fn id_of(bytes: &[u8]) -> Option<u16> {
    (bytes.len() >= 12).then(|| u16::from_be_bytes([bytes[0], bytes[1]]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::Record;
    use hickory_proto::rr::rdata::{A, AAAA, CNAME, SRV};
    use proptest::prelude::*;

    fn name(s: &str) -> Name {
        let mut n = Name::from_ascii(s).unwrap();
        n.set_fqdn(true);
        n
    }

    fn reply(
        id: u16,
        q: &str,
        kind: Kind,
        answers: Vec<Record>,
        additionals: Vec<Record>,
        rcode: ResponseCode,
        tc: bool,
    ) -> Vec<u8> {
        let mut m = Message::new(id, MessageType::Response, OpCode::Query);
        m.metadata.response_code = rcode;
        m.metadata.truncation = tc;
        m.add_query(Query::query(name(q), kind.rtype()));
        m.add_answers(answers);
        m.add_additionals(additionals);
        m.to_vec().unwrap()
    }

    fn rec(n: &str, data: RData) -> Record {
        Record::from_rdata(name(n), 30, data)
    }

    #[test]
    fn reads_addresses_services_cnames_and_failures() {
        let a = reply(
            7,
            "app.test",
            Kind::A,
            vec![
                rec("app.test", RData::A(A::new(10, 0, 0, 2))),
                rec("app.test", RData::A(A::new(10, 0, 0, 1))),
            ],
            vec![],
            ResponseCode::NoError,
            false,
        );
        assert_eq!(
            read_reply(&a, 7, "app.test", Kind::A),
            Ok(Reply::Records(vec![
                Found::Ip("10.0.0.1".parse().unwrap()),
                Found::Ip("10.0.0.2".parse().unwrap())
            ]))
        );
        assert_eq!(read_reply(&a, 8, "app.test", Kind::A), Err(Mismatch::Id(7)));
        assert_eq!(
            read_reply(&a, 7, "other.test", Kind::A),
            Err(Mismatch::Question)
        );
        assert_eq!(
            read_reply(&a, 7, "app.test", Kind::Aaaa),
            Err(Mismatch::Question)
        );
        let v6 = reply(
            1,
            "app.test",
            Kind::Aaaa,
            vec![rec(
                "app.test",
                RData::AAAA(AAAA::new(0xfd00, 0, 0, 0, 0, 0, 0, 1)),
            )],
            vec![],
            ResponseCode::NoError,
            false,
        );
        assert_eq!(
            read_reply(&v6, 1, "app.test", Kind::Aaaa),
            Ok(Reply::Records(vec![Found::Ip("fd00::1".parse().unwrap())]))
        );
        let cname = reply(
            2,
            "svc.test",
            Kind::A,
            vec![
                rec("svc.test", RData::CNAME(CNAME(name("real.test")))),
                rec("real.test", RData::A(A::new(10, 1, 1, 1))),
            ],
            vec![],
            ResponseCode::NoError,
            false,
        );
        assert_eq!(
            read_reply(&cname, 2, "svc.test", Kind::A),
            Ok(Reply::Records(vec![Found::Ip("10.1.1.1".parse().unwrap())]))
        );
        let dangling = reply(
            3,
            "svc.test",
            Kind::A,
            vec![rec("svc.test", RData::CNAME(CNAME(name("elsewhere.test"))))],
            vec![],
            ResponseCode::NoError,
            false,
        );
        assert_eq!(
            read_reply(&dangling, 3, "svc.test", Kind::A),
            Ok(Reply::Alias("elsewhere.test".into()))
        );
        let loop_ = reply(
            3,
            "x.test",
            Kind::A,
            vec![
                rec("x.test", RData::CNAME(CNAME(name("y.test")))),
                rec("y.test", RData::CNAME(CNAME(name("x.test")))),
            ],
            vec![],
            ResponseCode::NoError,
            false,
        );
        assert!(matches!(
            read_reply(&loop_, 3, "x.test", Kind::A),
            Ok(Reply::ServerError(_))
        ));
        let srv = reply(
            4,
            "_epmd._tcp.app.test",
            Kind::Srv,
            vec![rec(
                "_epmd._tcp.app.test",
                RData::SRV(SRV::new(0, 10, 4369, name("n1.app.test"))),
            )],
            vec![rec("n1.app.test", RData::A(A::new(127, 0, 0, 2)))],
            ResponseCode::NoError,
            false,
        );
        assert_eq!(
            read_reply(&srv, 4, "_epmd._tcp.app.test", Kind::Srv),
            Ok(Reply::Records(vec![Found::Srv {
                target: "n1.app.test".into(),
                port: 4369,
                priority: 0,
                weight: 10,
                addr: Some("127.0.0.2".parse().unwrap())
            }]))
        );
        for (rc, want) in [
            (ResponseCode::NXDomain, Reply::NxDomain),
            (
                ResponseCode::ServFail,
                Reply::ServerError(ResponseCode::ServFail.to_string()),
            ),
        ] {
            let r = reply(5, "no.test", Kind::A, vec![], vec![], rc, false);
            assert_eq!(read_reply(&r, 5, "no.test", Kind::A), Ok(want));
        }
        let empty = reply(
            6,
            "app.test",
            Kind::Aaaa,
            vec![],
            vec![],
            ResponseCode::NoError,
            false,
        );
        assert_eq!(
            read_reply(&empty, 6, "app.test", Kind::Aaaa),
            Ok(Reply::NoData)
        );
        let tc = reply(
            9,
            "big.test",
            Kind::A,
            vec![],
            vec![],
            ResponseCode::NoError,
            true,
        );
        assert_eq!(
            read_reply(&tc, 9, "big.test", Kind::A),
            Ok(Reply::Truncated)
        );
        let q = query(9, "big.test", Kind::A, true).unwrap();
        assert_eq!(
            read_reply(&q, 9, "big.test", Kind::A),
            Err(Mismatch::NotReply)
        );
        assert_eq!(id_of(&q), Some(9));
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = read_reply(&bytes, 1, "app.test", Kind::A);
            let _ = read_reply(&bytes, 1, "app.test", Kind::Srv);
        }

        #[test]
        fn queries_parse_back(id in any::<u16>(), label in "[a-z0-9][a-z0-9-]{0,19}", edns in any::<bool>()) {
            let q = query(id, &format!("{label}.test"), Kind::Srv, edns).unwrap();
            let m = Message::from_vec(&q).unwrap();
            prop_assert_eq!(m.metadata.id, id);
            prop_assert_eq!(m.queries.len(), 1);
            prop_assert_eq!(m.edns.is_some(), edns);
        }
    }
}
