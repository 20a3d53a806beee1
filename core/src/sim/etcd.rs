//! A simulated etcd (v3, one member, reached through its JSON gateway) for the `etcd`
//! strategy: see [`EtcdServer`].

use core::time::Duration;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;

use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::service::{ConnId, ServiceOutput, StreamService};
use crate::proto::base64;
use crate::time::Instant;

/// The longest request head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// The longest request body accepted (etcd's own request limit).
const MAX_BODY: usize = 1536 * 1024;
/// The shortest TTL granted, in seconds (etcd raises shorter ones to about 1.5 election
/// timeouts).
const MIN_TTL: i64 = 2;
/// The longest TTL granted, in seconds.
const MAX_TTL: i64 = 9_000_000_000;
/// The first lease ID handed out; the next ones follow it.
const FIRST_LEASE: i64 = 0x694d_7a0b_3c11_0000;
/// The header's fixed fields.
const CLUSTER_ID: &str = "14841639068965178418";
const MEMBER_ID: &str = "10276657743932975437";

/// What an [`EtcdServer`] did, for figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EtcdFigures {
    /// Connections opened to it.
    pub connections: u64,
    /// Requests read whole (each path counted below too).
    pub requests: u64,
    /// Tokens handed out.
    pub authentications: u64,
    /// Leases granted.
    pub grants: u64,
    /// Keys put.
    pub puts: u64,
    /// Ranges read.
    pub ranges: u64,
    /// Keep-alives answered (of a lease that exists or not).
    pub keepalives: u64,
    /// Leases revoked by a client.
    pub revokes: u64,
    /// Leases that expired.
    pub expired: u64,
    /// Watches created.
    pub watches: u64,
    /// Watches canceled for asking a compacted revision.
    pub compacted_watches: u64,
    /// Requests answered with an error.
    pub errors: u64,
    /// Restarts.
    pub restarts: u64,
}

#[derive(Debug, Clone)]
struct Entry {
    value: Vec<u8>,
    create_revision: i64,
    mod_revision: i64,
    version: i64,
    lease: i64,
}

#[derive(Debug, Clone)]
struct Lease {
    ttl: i64,
    expires: Instant,
    keys: BTreeSet<Vec<u8>>,
}

/// One change, as the history keeps it.
#[derive(Debug, Clone)]
struct Change {
    revision: i64,
    delete: bool,
    key: Vec<u8>,
    /// The key as it was after a put (unused for a delete).
    entry: Option<Entry>,
}

#[derive(Debug)]
struct Watch {
    key: Vec<u8>,
    range_end: Vec<u8>,
    /// The first revision it reports.
    start: i64,
}

#[derive(Debug)]
enum Conn {
    /// Reading a request.
    Reading(Vec<u8>),
    /// Answered: whatever comes next is ignored until the client closes.
    Done,
    /// A watch: changes are written as they happen.
    Watching(Watch),
}

/// A simulated etcd member, as much of one as the `etcd` strategy needs, served at an
/// address with [`Sim::serve_stream`](super::Sim::serve_stream) and spoken to through
/// etcd 3.4's JSON gateway: HTTP/1.1 `POST /v3/...` requests with protobuf-JSON bodies
/// (keys and values in base64, 64-bit integers as decimal strings, as the real gateway
/// writes them).
///
/// It keeps a revisioned key space (every put and delete makes a revision; `range` with
/// `range_end` reads a prefix, `"\0"` every key from `key` on), leases with their TTL
/// expiring in virtual time (the keys attached are deleted then, in one revision),
/// `lease/keepalive`, `lease/revoke`, and watches: `/v3/watch` answers a chunked stream of
/// JSON lines, first `created`, then the changes of the watched range from the start
/// revision on, as they happen. The changes are read from a bounded history
/// ([`history`](EtcdServer::history)); a watch starting before it is canceled with the
/// `compact_revision`, as etcd does for a compacted revision. Every other call answers
/// whole (`Content-Length`) and closes, as the strategy asks with `Connection: close`.
///
/// With [`auth`](EtcdServer::auth), `/v3/auth/authenticate` hands out simple tokens (a
/// wrong password is etcd's `authentication failed` error), and every other call needs a
/// token it knows in `Authorization`. A [restart](StreamService::restart) keeps the keys,
/// leases (renewed for a full TTL, as a new leader does) and history, as etcd persists them,
/// but breaks every connection (watches included) and forgets the tokens. Nothing a client
/// sends can make it panic; it buffers at most one bounded request per connection.
#[derive(Debug)]
pub struct EtcdServer {
    revision: i64,
    kv: BTreeMap<Vec<u8>, Entry>,
    leases: BTreeMap<i64, Lease>,
    next_lease: i64,
    history: VecDeque<Change>,
    max_history: usize,
    /// Changes up to this revision are gone from the history.
    compacted: i64,
    conns: BTreeMap<ConnId, Conn>,
    out: VecDeque<ServiceOutput>,
    auth: Option<(String, String)>,
    tokens: BTreeSet<String>,
    next_token: u64,
    now: Instant,
    figures: EtcdFigures,
}

impl Default for EtcdServer {
    fn default() -> Self {
        EtcdServer::new()
    }
}

/// A request's error answer: HTTP status, gRPC code, message.
type Failed = (u16, u32, String);

fn failed(status: u16, code: u32, message: &str) -> Failed {
    (status, code, message.to_owned())
}

fn invalid(message: &str) -> Failed {
    failed(400, 3, message)
}

fn lease_not_found() -> Failed {
    failed(404, 5, "etcdserver: requested lease not found")
}

fn auth_token_invalid() -> Failed {
    failed(401, 16, "etcdserver: invalid auth token")
}

/// A 64-bit integer field, as a string or a number; 0 when absent.
fn int_field(body: &Value, name: &str) -> Result<i64, Failed> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(0),
        Some(Value::Number(n)) => n
            .as_i64()
            .ok_or_else(|| invalid(&format!("bad number for field {name}"))),
        Some(Value::String(s)) => s
            .parse()
            .map_err(|_| invalid(&format!("bad number for field {name}"))),
        Some(_) => Err(invalid(&format!("bad type for field {name}"))),
    }
}

/// A `bytes` field (base64); empty when absent.
fn bytes_field(body: &Value, name: &str) -> Result<Vec<u8>, Failed> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => base64::decode(s, MAX_BODY)
            .ok_or_else(|| invalid(&format!("bad base64 for field {name}"))),
        Some(_) => Err(invalid(&format!("bad type for field {name}"))),
    }
}

fn bool_field(body: &Value, name: &str) -> bool {
    body.get(name).and_then(Value::as_bool).unwrap_or(false)
}

/// Whether `key` is in the range `[from, end)` as etcd reads one: no `end` is `from` alone,
/// `"\0"` is every key from `from` on.
fn in_range(key: &[u8], from: &[u8], end: &[u8]) -> bool {
    if end.is_empty() {
        key == from
    } else if end == [0] {
        key >= from
    } else {
        key >= from && key < end
    }
}

fn kv_json(key: &[u8], e: &Entry) -> Value {
    let mut m = Map::new();
    m.insert("key".into(), Value::String(base64::encode(key)));
    m.insert(
        "create_revision".into(),
        Value::String(e.create_revision.to_string()),
    );
    m.insert(
        "mod_revision".into(),
        Value::String(e.mod_revision.to_string()),
    );
    m.insert("version".into(), Value::String(e.version.to_string()));
    if !e.value.is_empty() {
        m.insert("value".into(), Value::String(base64::encode(&e.value)));
    }
    if e.lease != 0 {
        m.insert("lease".into(), Value::String(e.lease.to_string()));
    }
    Value::Object(m)
}

fn chunk(line: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", line.len() + 1).into_bytes();
    out.extend_from_slice(line);
    out.extend_from_slice(b"\n\r\n");
    out
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        412 => "Precondition Failed",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        _ => "Error",
    }
}

fn response(status: u16, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reason(status),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

impl EtcdServer {
    /// An empty member (revision 1, as a new etcd), without authentication, keeping the last
    /// 1000 changes for watches.
    pub fn new() -> Self {
        EtcdServer {
            revision: 1,
            kv: BTreeMap::new(),
            leases: BTreeMap::new(),
            next_lease: FIRST_LEASE,
            history: VecDeque::new(),
            max_history: 1000,
            compacted: 0,
            conns: BTreeMap::new(),
            out: VecDeque::new(),
            auth: None,
            tokens: BTreeSet::new(),
            next_token: 0,
            now: Instant::ZERO,
            figures: EtcdFigures::default(),
        }
    }

    /// Enables authentication: `user` with `password` (a root user, allowed everything).
    pub fn auth(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.auth = Some((user.into(), password.into()));
        self
    }

    /// Keeps the last `n` changes (at least 1) for watches; older ones are compacted away.
    pub fn history(mut self, n: usize) -> Self {
        self.max_history = n.max(1);
        self
    }

    /// What it did so far.
    pub fn figures(&self) -> EtcdFigures {
        self.figures
    }

    /// The store's revision now.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// The revision compaction has reached: a watch must start after it.
    pub fn compacted(&self) -> i64 {
        self.compacted
    }

    /// The keys starting with `prefix`, in order.
    pub fn keys(&self, prefix: &[u8]) -> Vec<Vec<u8>> {
        self.kv
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Leases that exist now.
    pub fn leases(&self) -> usize {
        self.leases.len()
    }

    /// Watches open now.
    pub fn watching(&self) -> usize {
        self.conns
            .values()
            .filter(|c| matches!(c, Conn::Watching(_)))
            .count()
    }

    /// Puts `key` = `value` without a lease, as another client would (watchers hear it).
    pub fn put(&mut self, key: &[u8], value: &[u8]) {
        self.revision += 1;
        self.set(key, value, 0);
        self.notify();
    }

    /// Deletes `key`, as another client would; whether it existed.
    pub fn delete(&mut self, key: &[u8]) -> bool {
        if !self.kv.contains_key(key) {
            return false;
        }
        self.revision += 1;
        self.remove(key);
        self.notify();
        true
    }

    /// Compacts the history up to `revision` (at most the current one): a watch must then
    /// start after it. Watches open now go on.
    pub fn compact(&mut self, revision: i64) {
        let revision = revision.min(self.revision);
        while self.history.front().is_some_and(|c| c.revision <= revision) {
            self.history.pop_front();
        }
        self.compacted = self.compacted.max(revision);
    }

    /// Loses every key, lease, token and change: the member comes back with an empty data
    /// directory (revision 1 again) at its next restart
    /// ([`Sim::restart_service`](super::Sim::restart_service)), which breaks the connections.
    pub fn lose_data(&mut self) {
        self.revision = 1;
        self.kv.clear();
        self.leases.clear();
        self.history.clear();
        self.compacted = 0;
        self.tokens.clear();
    }

    /// Cuts every watch short: its connection closes mid-stream, without the end of the
    /// chunked body (a proxy or load balancer dropping it).
    pub fn break_watches(&mut self) {
        let ids: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| matches!(c, Conn::Watching(_)))
            .map(|(id, _)| *id)
            .collect();
        for conn in ids {
            self.conns.insert(conn, Conn::Done);
            self.out.push_back(ServiceOutput::Close { conn });
        }
    }

    fn header(&self) -> Value {
        json!({
            "cluster_id": CLUSTER_ID,
            "member_id": MEMBER_ID,
            "revision": self.revision.to_string(),
            "raft_term": "2",
        })
    }

    fn write(&mut self, conn: ConnId, data: Vec<u8>) {
        if !data.is_empty() {
            self.out.push_back(ServiceOutput::Write {
                conn,
                data: Bytes::from(data),
            });
        }
    }

    /// A whole answer, then close.
    fn answer(&mut self, conn: ConnId, status: u16, body: &Value) {
        let body = serde_json::to_vec(body).unwrap_or_default();
        self.write(conn, response(status, &body));
        self.out.push_back(ServiceOutput::Close { conn });
        self.conns.insert(conn, Conn::Done);
    }

    fn answer_error(&mut self, conn: ConnId, (status, code, message): Failed) {
        self.figures.errors += 1;
        let body = json!({"error": message, "message": message, "code": code});
        self.answer(conn, status, &body);
    }

    /// Bytes that are no HTTP request: 400 and close.
    fn bad_request(&mut self, conn: ConnId, status: u16, why: &str) {
        self.figures.errors += 1;
        self.write(conn, response(status, why.as_bytes()));
        self.out.push_back(ServiceOutput::Close { conn });
        self.conns.insert(conn, Conn::Done);
    }

    /// Writes `key` in the current revision (the caller moved it on).
    fn set(&mut self, key: &[u8], value: &[u8], lease: i64) {
        let rev = self.revision;
        let entry = match self.kv.get(key) {
            Some(old) => {
                if old.lease != lease
                    && let Some(l) = self.leases.get_mut(&old.lease)
                {
                    l.keys.remove(key);
                }
                Entry {
                    value: value.to_vec(),
                    create_revision: old.create_revision,
                    mod_revision: rev,
                    version: old.version + 1,
                    lease,
                }
            }
            None => Entry {
                value: value.to_vec(),
                create_revision: rev,
                mod_revision: rev,
                version: 1,
                lease,
            },
        };
        if let Some(l) = self.leases.get_mut(&lease) {
            l.keys.insert(key.to_vec());
        }
        self.kv.insert(key.to_vec(), entry.clone());
        self.record(Change {
            revision: rev,
            delete: false,
            key: key.to_vec(),
            entry: Some(entry),
        });
    }

    /// Deletes `key` in the current revision (the caller moved it on).
    fn remove(&mut self, key: &[u8]) {
        let Some(old) = self.kv.remove(key) else {
            return;
        };
        if let Some(l) = self.leases.get_mut(&old.lease) {
            l.keys.remove(key);
        }
        self.record(Change {
            revision: self.revision,
            delete: true,
            key: key.to_vec(),
            entry: None,
        });
    }

    fn record(&mut self, c: Change) {
        self.history.push_back(c);
        while self.history.len() > self.max_history {
            // A revision goes whole: compaction is by revision.
            let Some(rev) = self.history.front().map(|c| c.revision) else {
                break;
            };
            while self.history.front().is_some_and(|c| c.revision == rev) {
                self.history.pop_front();
            }
            self.compacted = self.compacted.max(rev);
        }
    }

    /// Ends `lease`, deleting its keys in one revision.
    fn end_lease(&mut self, id: i64) {
        let Some(lease) = self.leases.remove(&id) else {
            return;
        };
        if lease.keys.is_empty() {
            return;
        }
        self.revision += 1;
        for key in &lease.keys {
            self.remove(key);
        }
        self.notify();
    }

    /// The events of the watched range with a revision from `from` on, one line per
    /// revision.
    fn lines_from(&self, w: &Watch, from: i64) -> Vec<u8> {
        let mut out = Vec::new();
        let mut events: Vec<Value> = Vec::new();
        let mut at = None;
        let flush = |events: &mut Vec<Value>, rev: i64, out: &mut Vec<u8>| {
            if events.is_empty() {
                return;
            }
            let mut header = self.header();
            header["revision"] = Value::String(rev.to_string());
            let line = json!({"result": {"header": header, "events": std::mem::take(events)}});
            out.extend_from_slice(&chunk(&serde_json::to_vec(&line).unwrap_or_default()));
        };
        for c in self.history.iter().filter(|c| c.revision >= from) {
            if !in_range(&c.key, &w.key, &w.range_end) {
                continue;
            }
            if at.is_some_and(|r| r != c.revision) {
                flush(&mut events, at.unwrap_or(0), &mut out);
            }
            at = Some(c.revision);
            events.push(match &c.entry {
                Some(e) if !c.delete => json!({"kv": kv_json(&c.key, e)}),
                _ => json!({"type": "DELETE", "kv": {
                    "key": base64::encode(&c.key),
                    "mod_revision": c.revision.to_string(),
                }}),
            });
        }
        if let Some(rev) = at {
            flush(&mut events, rev, &mut out);
        }
        out
    }

    /// The changes of the current revision go to every watch that covers them.
    fn notify(&mut self) {
        let rev = self.revision;
        let mut writes = Vec::new();
        for (conn, c) in &self.conns {
            if let Conn::Watching(w) = c {
                let lines = self.lines_from(w, rev.max(w.start));
                if !lines.is_empty() {
                    writes.push((*conn, lines));
                }
            }
        }
        for (conn, data) in writes {
            self.write(conn, data);
        }
    }

    /// Reads what `conn` sent so far; answers once a request is whole.
    fn read(&mut self, conn: ConnId) {
        let Some(Conn::Reading(buf)) = self.conns.get(&conn) else {
            return;
        };
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut r = httparse::Request::new(&mut headers);
        let n = match r.parse(buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD => return,
            Ok(httparse::Status::Partial) => {
                return self.bad_request(conn, 431, "request header too large");
            }
            Err(_) => return self.bad_request(conn, 400, "malformed HTTP request"),
        };
        let method = r.method.unwrap_or_default().to_owned();
        let path = r.path.unwrap_or_default();
        let path = path.split('?').next().unwrap_or_default().to_owned();
        let mut length = 0usize;
        let mut token = None;
        let mut chunked = false;
        for h in r.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                match core::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.trim().parse().ok())
                {
                    Some(l) => length = l,
                    None => return self.bad_request(conn, 400, "bad Content-Length"),
                }
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = true;
            } else if h.name.eq_ignore_ascii_case("authorization") {
                token = Some(String::from_utf8_lossy(h.value).into_owned());
            }
        }
        if chunked {
            return self.bad_request(conn, 400, "chunked request bodies are not supported");
        }
        if length > MAX_BODY {
            return self.bad_request(conn, 413, "request body too large");
        }
        let Some(body) = buf.get(n..n.saturating_add(length)) else {
            return; // the body is still coming
        };
        if body.len() < length {
            return;
        }
        let body = body.to_vec();
        self.conns.insert(conn, Conn::Done);
        self.figures.requests += 1;
        self.request(conn, &method, &path, token.as_deref(), &body);
    }

    fn request(
        &mut self,
        conn: ConnId,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &[u8],
    ) {
        let known = matches!(
            path,
            "/v3/auth/authenticate"
                | "/v3/lease/grant"
                | "/v3/lease/keepalive"
                | "/v3/lease/revoke"
                | "/v3/kv/put"
                | "/v3/kv/range"
                | "/v3/watch"
        );
        if !known {
            return self.bad_request(conn, 404, "Not Found\n");
        }
        if method != "POST" {
            return self.bad_request(conn, 405, "Method Not Allowed\n");
        }
        let body: Value = match serde_json::from_slice(body) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => return self.answer_error(conn, invalid("the body is not a JSON object")),
            Err(e) => return self.answer_error(conn, invalid(&e.to_string())),
        };
        if path == "/v3/auth/authenticate" {
            return self.authenticate(conn, &body);
        }
        let authorized = self.auth.is_none() || token.is_some_and(|t| self.tokens.contains(t));
        let result = match path {
            "/v3/lease/keepalive" => {
                if !authorized {
                    // A streamed call: the error is a line of the stream.
                    let (_, code, message) = auth_token_invalid();
                    self.figures.errors += 1;
                    let line = json!({"error": {"grpc_code": code, "http_code": 401,
                        "message": message, "http_status": "Unauthorized"}});
                    return self.stream_answer(conn, &line);
                }
                return self.keepalive(conn, &body);
            }
            "/v3/watch" => return self.watch(conn, &body, authorized),
            _ if !authorized => Err(auth_token_invalid()),
            "/v3/lease/grant" => self.grant(&body),
            "/v3/lease/revoke" => self.revoke(&body),
            "/v3/kv/put" => self.put_request(&body),
            _ => self.range(&body),
        };
        match result {
            Ok(v) => self.answer(conn, 200, &v),
            Err(f) => self.answer_error(conn, f),
        }
    }

    fn authenticate(&mut self, conn: ConnId, body: &Value) {
        let Some((user, password)) = self.auth.clone() else {
            return self.answer_error(
                conn,
                failed(412, 9, "etcdserver: authentication is not enabled"),
            );
        };
        let name = body.get("name").and_then(Value::as_str).unwrap_or_default();
        let pw = body
            .get("password")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if name != user || pw != password {
            return self.answer_error(
                conn,
                invalid("etcdserver: authentication failed, invalid user ID or password"),
            );
        }
        self.next_token += 1;
        let token = format!(
            "sImUlAtEdToKeN{:04}.{}",
            self.figures.restarts, self.next_token
        );
        self.tokens.insert(token.clone());
        self.figures.authentications += 1;
        let v = json!({"header": self.header(), "token": token});
        self.answer(conn, 200, &v);
    }

    fn grant(&mut self, body: &Value) -> Result<Value, Failed> {
        let ttl = int_field(body, "TTL")?;
        if ttl > MAX_TTL {
            return Err(failed(400, 11, "etcdserver: too large lease TTL"));
        }
        let ttl = ttl.max(MIN_TTL);
        let mut id = int_field(body, "ID")?;
        if id == 0 {
            id = self.next_lease;
            self.next_lease += 1;
        } else if self.leases.contains_key(&id) {
            return Err(failed(412, 9, "etcdserver: lease already exists"));
        }
        let expires = self.now + Duration::from_secs(ttl.unsigned_abs());
        self.leases.insert(
            id,
            Lease {
                ttl,
                expires,
                keys: BTreeSet::new(),
            },
        );
        self.figures.grants += 1;
        Ok(json!({"header": self.header(), "ID": id.to_string(), "TTL": ttl.to_string()}))
    }

    fn revoke(&mut self, body: &Value) -> Result<Value, Failed> {
        let id = int_field(body, "ID")?;
        if !self.leases.contains_key(&id) {
            return Err(lease_not_found());
        }
        self.end_lease(id);
        self.figures.revokes += 1;
        Ok(json!({"header": self.header()}))
    }

    fn put_request(&mut self, body: &Value) -> Result<Value, Failed> {
        let key = bytes_field(body, "key")?;
        let value = bytes_field(body, "value")?;
        let lease = int_field(body, "lease")?;
        if key.is_empty() {
            return Err(invalid("etcdserver: key is not provided"));
        }
        if lease != 0 && !self.leases.contains_key(&lease) {
            return Err(lease_not_found());
        }
        self.revision += 1;
        self.set(&key, &value, lease);
        self.notify();
        self.figures.puts += 1;
        Ok(json!({"header": self.header()}))
    }

    fn range(&mut self, body: &Value) -> Result<Value, Failed> {
        let key = bytes_field(body, "key")?;
        let end = bytes_field(body, "range_end")?;
        let limit = int_field(body, "limit")?;
        let count_only = bool_field(body, "count_only");
        if key.is_empty() {
            return Err(invalid("etcdserver: key is not provided"));
        }
        let all: Vec<(&Vec<u8>, &Entry)> = self
            .kv
            .range(key.clone()..)
            .take_while(|(k, _)| in_range(k, &key, &end))
            .collect();
        let count = all.len();
        let take = if limit > 0 {
            usize::try_from(limit).unwrap_or(usize::MAX).min(count)
        } else {
            count
        };
        let mut m = Map::new();
        m.insert("header".into(), self.header());
        if !count_only && take > 0 {
            let kvs: Vec<Value> = all[..take].iter().map(|(k, e)| kv_json(k, e)).collect();
            m.insert("kvs".into(), Value::Array(kvs));
        }
        if take < count {
            m.insert("more".into(), Value::Bool(true));
        }
        if count > 0 {
            m.insert("count".into(), Value::String(count.to_string()));
        }
        self.figures.ranges += 1;
        Ok(Value::Object(m))
    }

    /// A streamed call's one answer: a chunked body of one line, then close.
    fn stream_answer(&mut self, conn: ConnId, line: &Value) {
        let mut out = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        out.extend_from_slice(&chunk(&serde_json::to_vec(line).unwrap_or_default()));
        out.extend_from_slice(b"0\r\n\r\n");
        self.write(conn, out);
        self.out.push_back(ServiceOutput::Close { conn });
        self.conns.insert(conn, Conn::Done);
    }

    fn keepalive(&mut self, conn: ConnId, body: &Value) {
        let id = match int_field(body, "ID") {
            Ok(id) => id,
            Err(f) => return self.answer_error(conn, f),
        };
        self.figures.keepalives += 1;
        let now = self.now;
        let header = self.header();
        let result = match self.leases.get_mut(&id) {
            Some(l) => {
                l.expires = now + Duration::from_secs(l.ttl.unsigned_abs());
                json!({"header": header, "ID": id.to_string(), "TTL": l.ttl.to_string()})
            }
            // A lease that is gone answers a TTL of 0 (left out, as a default).
            None => json!({"header": header, "ID": id.to_string()}),
        };
        self.stream_answer(conn, &json!({ "result": result }));
    }

    fn watch(&mut self, conn: ConnId, body: &Value, authorized: bool) {
        let Some(create) = body.get("create_request") else {
            return self.answer_error(conn, invalid("only create_request is supported"));
        };
        let w = match (bytes_field(create, "key"), bytes_field(create, "range_end")) {
            (Ok(key), Ok(range_end)) => Watch {
                key,
                range_end,
                start: 0,
            },
            (Err(f), _) | (_, Err(f)) => return self.answer_error(conn, f),
        };
        let start = match int_field(create, "start_revision") {
            Ok(s) => s,
            Err(f) => return self.answer_error(conn, f),
        };
        let mut w = w;
        w.start = start;
        self.figures.watches += 1;
        let mut out = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        let header = self.header();
        if !authorized {
            self.figures.errors += 1;
            let line = json!({"result": {"header": header, "watch_id": "-1", "created": true,
                "canceled": true,
                "cancel_reason": "rpc error: code = Unauthenticated desc = etcdserver: invalid auth token"}});
            out.extend_from_slice(&chunk(&serde_json::to_vec(&line).unwrap_or_default()));
            out.extend_from_slice(b"0\r\n\r\n");
            self.write(conn, out);
            self.out.push_back(ServiceOutput::Close { conn });
            self.conns.insert(conn, Conn::Done);
            return;
        }
        let created = json!({"result": {"header": header, "created": true}});
        out.extend_from_slice(&chunk(&serde_json::to_vec(&created).unwrap_or_default()));
        if start > 0 && start <= self.compacted {
            self.figures.compacted_watches += 1;
            let line = json!({"result": {"header": self.header(), "canceled": true,
                "compact_revision": self.compacted.to_string()}});
            out.extend_from_slice(&chunk(&serde_json::to_vec(&line).unwrap_or_default()));
            out.extend_from_slice(b"0\r\n\r\n");
            self.write(conn, out);
            self.out.push_back(ServiceOutput::Close { conn });
            self.conns.insert(conn, Conn::Done);
            return;
        }
        if start > 0 {
            out.extend_from_slice(&self.lines_from(&w, start));
        }
        self.write(conn, out);
        self.conns.insert(conn, Conn::Watching(w));
    }
}

impl StreamService for EtcdServer {
    fn open(&mut self, now: Instant, conn: ConnId, _peer: SocketAddr) {
        self.now = self.now.max(now);
        self.figures.connections += 1;
        self.conns.insert(conn, Conn::Reading(Vec::new()));
    }

    fn data(&mut self, now: Instant, conn: ConnId, data: &[u8]) {
        self.now = self.now.max(now);
        // One request per connection: what follows it is not read.
        if let Some(Conn::Reading(buf)) = self.conns.get_mut(&conn) {
            // Bounded: a head of MAX_HEAD, a body of MAX_BODY, and the piece that went past
            // them (refused at once).
            buf.extend_from_slice(data);
            self.read(conn);
        }
    }

    fn closed(&mut self, now: Instant, conn: ConnId) {
        self.now = self.now.max(now);
        self.conns.remove(&conn);
    }

    fn poll_output(&mut self) -> Option<ServiceOutput> {
        self.out.pop_front()
    }

    fn restart(&mut self, now: Instant) {
        self.now = self.now.max(now);
        self.figures.restarts += 1;
        self.conns.clear();
        self.out.clear();
        self.tokens.clear();
        self.renew_leases();
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.leases.values().map(|l| l.expires).min()
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.now = self.now.max(now);
        let due: Vec<i64> = self
            .leases
            .iter()
            .filter(|(_, l)| l.expires <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.end_lease(id);
            self.figures.expired += 1;
        }
    }

    fn start(&mut self, now: Instant) {
        self.now = self.now.max(now);
        self.renew_leases();
    }
}

impl EtcdServer {
    /// A member that starts (or becomes leader) gives every lease a full TTL again.
    fn renew_leases(&mut self) {
        let now = self.now;
        for l in self.leases.values_mut() {
            l.expires = now + Duration::from_secs(l.ttl.unsigned_abs());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(path: &str, body: &str, token: Option<&str>) -> Vec<u8> {
        let mut h = vec![("Content-Type", "application/json")];
        if let Some(t) = token {
            h.push(("Authorization", t));
        }
        crate::proto::http::request("POST", "etcd:2379", path, &h, body.as_bytes())
    }

    /// Sends one request on a new connection, in pieces of `split` bytes; the bytes written.
    fn call(s: &mut EtcdServer, conn: u64, data: &[u8], split: usize) -> Vec<u8> {
        let c = ConnId(conn);
        s.open(Instant::ZERO, c, "10.0.0.1:4000".parse().unwrap());
        for piece in data.chunks(split.max(1)) {
            s.data(Instant::ZERO, c, piece);
        }
        let mut out = Vec::new();
        while let Some(o) = s.poll_output() {
            if let ServiceOutput::Write { conn, data } = o
                && conn == c
            {
                out.extend_from_slice(&data);
            }
        }
        out
    }

    fn text(b: &[u8]) -> String {
        String::from_utf8_lossy(b).into_owned()
    }

    #[test]
    fn grant_put_range_watch_and_expiry() {
        let mut s = EtcdServer::new();
        let g = text(&call(
            &mut s,
            1,
            &req("/v3/lease/grant", r#"{"TTL":"5"}"#, None),
            7,
        ));
        assert!(g.contains(r#""TTL":"5""#), "{g}");
        let id = FIRST_LEASE;
        let put = format!(r#"{{"key":"L20vYQ==","value":"YQ==","lease":"{id}"}}"#);
        let p = text(&call(&mut s, 2, &req("/v3/kv/put", &put, None), 3));
        assert!(p.starts_with("HTTP/1.1 200"), "{p}");
        let body = r#"{"key":"L20v","range_end":"L20w"}"#;
        let r = call(&mut s, 3, &req("/v3/kv/range", body, None), 100);
        let r = text(&r);
        let json = r.split("\r\n\r\n").nth(1).unwrap();
        let range = crate::proto::etcd::parse_range(json.as_bytes()).unwrap();
        assert_eq!(range.revision, 2);
        assert_eq!(range.kvs[0].key, b"/m/a");
        let w = r#"{"create_request":{"key":"L20v","range_end":"L20w","start_revision":"2"}}"#;
        let w = text(&call(&mut s, 4, &req("/v3/watch", w, None), 5));
        assert!(
            w.contains(r#""created":true"#) && w.contains("L20vYQ=="),
            "{w}"
        );
        assert_eq!(s.watching(), 1);
        assert_eq!(
            s.poll_timeout(),
            Some(Instant::ZERO + Duration::from_secs(5))
        );
        s.handle_timeout(Instant::ZERO + Duration::from_secs(5));
        let Some(ServiceOutput::Write { data, .. }) = s.poll_output() else {
            panic!()
        };
        assert!(text(&data).contains("DELETE"));
        assert_eq!(s.keys(b"/m/"), Vec::<Vec<u8>>::new());
        assert_eq!(s.figures().expired, 1);
    }

    #[test]
    fn compacted_watches_and_auth_errors() {
        let mut s = EtcdServer::new().history(2).auth("u", "p");
        let bad = text(&call(
            &mut s,
            1,
            &req(
                "/v3/auth/authenticate",
                r#"{"name":"u","password":"x"}"#,
                None,
            ),
            4,
        ));
        assert!(bad.contains("authentication failed"), "{bad}");
        let ok = call(
            &mut s,
            2,
            &req(
                "/v3/auth/authenticate",
                r#"{"name":"u","password":"p"}"#,
                None,
            ),
            4,
        );
        let ok = text(&ok);
        let token =
            crate::proto::etcd::parse_authenticate(ok.split("\r\n\r\n").nth(1).unwrap().as_bytes())
                .unwrap();
        let denied = text(&call(
            &mut s,
            3,
            &req("/v3/kv/range", r#"{"key":"YQ=="}"#, None),
            9,
        ));
        assert!(denied.contains("invalid auth token"), "{denied}");
        for k in [b"a", b"b", b"c"] {
            s.put(k, b"v");
        }
        assert_eq!(s.compacted(), 2);
        let w = r#"{"create_request":{"key":"YQ==","range_end":"AA==","start_revision":"2"}}"#;
        let w = text(&call(&mut s, 4, &req("/v3/watch", w, Some(&token)), 9));
        assert!(w.contains(r#""compact_revision":"2""#), "{w}");
        s.restart(Instant::ZERO);
        let r = text(&call(
            &mut s,
            5,
            &req("/v3/kv/range", r#"{"key":"YQ=="}"#, Some(&token)),
            9,
        ));
        assert!(r.contains("invalid auth token"), "{r}");
    }

    #[test]
    fn nonsense_never_panics() {
        let mut s = EtcdServer::new();
        let inputs: [&[u8]; 6] = [
            b"\xff\x00garbage\r\n\r\n",
            b"POST /v3/kv/put HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n",
            b"POST /v3/kv/put HTTP/1.1\r\nContent-Length: 3\r\n\r\n[1]",
            b"POST /v3/watch HTTP/1.1\r\nContent-Length: 28\r\n\r\n{\"create_request\":{\"key\":1}}",
            b"GET /health HTTP/1.1\r\n\r\n",
            b"POST /v3/lease/keepalive HTTP/1.1\r\nContent-Length: 10\r\n\r\n{\"ID\":\"x\"}",
        ];
        for (i, d) in inputs.iter().enumerate() {
            let out = call(&mut s, i as u64 + 1, d, 3);
            assert!(out.starts_with(b"HTTP/1.1 "), "{}", text(&out));
        }
        let big = vec![b'a'; MAX_HEAD + 10];
        assert!(call(&mut s, 99, &big, 1000).starts_with(b"HTTP/1.1 4"));
    }

    const PATHS: [&str; 8] = [
        "/v3/auth/authenticate",
        "/v3/lease/grant",
        "/v3/lease/keepalive",
        "/v3/lease/revoke",
        "/v3/kv/put",
        "/v3/kv/range",
        "/v3/watch",
        "/v3/nothing",
    ];

    proptest::proptest! {
        #[test]
        fn any_bytes_never_panic(
            raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
            split in 1usize..40,
        ) {
            let mut s = EtcdServer::new().history(3);
            let _ = call(&mut s, 1, &raw, split);
            s.handle_timeout(Instant::ZERO + Duration::from_secs(60));
        }

        #[test]
        fn any_fields_on_every_path_never_panic(
            calls in proptest::collection::vec(
                (0usize..8, proptest::prelude::any::<i64>(), "[A-Za-z0-9+/=]{0,12}", "[A-Za-z0-9+/=]{0,8}", proptest::prelude::any::<bool>()),
                1..12,
            ),
            auth in proptest::prelude::any::<bool>(),
        ) {
            let mut s = EtcdServer::new().history(2);
            if auth {
                s = s.auth("u", "p");
            }
            for (i, (path, n, key, end, as_number)) in calls.into_iter().enumerate() {
                let n = if as_number { n.to_string() } else { format!("{n:?}").replace('"', "") };
                let n = if as_number { n } else { format!("\"{n}\"") };
                let body = format!(
                    r#"{{"TTL":{n},"ID":{n},"lease":{n},"limit":{n},"key":"{key}","range_end":"{end}","value":"{key}","name":"u","password":"p","create_request":{{"key":"{key}","range_end":"{end}","start_revision":{n}}}}}"#
                );
                let out = call(&mut s, i as u64 + 1, &req(PATHS[path], &body, None), 7);
                proptest::prop_assert!(out.starts_with(b"HTTP/1.1 "));
                s.put(key.as_bytes(), b"v");
                s.handle_timeout(Instant::ZERO + Duration::from_secs((i as u64) * 3));
            }
        }
    }
}
