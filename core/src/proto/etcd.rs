//! etcd v3 through its JSON gateway (grpc-gateway, `/v3/...`, etcd 3.4 and later): the request
//! bodies the etcd strategy sends and the responses and watch-stream lines it reads.
//!
//! The gateway maps each gRPC call onto `POST /v3/<service>/<method>` with the request message
//! as protobuf's JSON: `bytes` fields (keys, values) are standard base64, and 64-bit integers
//! (revisions, lease IDs, TTLs) are decimal strings — both forms of integer are accepted when
//! reading. A unary call answers its response message, or, with an error status,
//! `{"error": "...", "message": "...", "code": <gRPC code>}`. A streaming call (the watch, the
//! lease keep-alive) answers one JSON object per line: `{"result": <message>}`, or
//! `{"error": {"grpc_code": .., "message": ..}}`.
//!
//! Only the fields discovery needs are decoded; values and every other field are skipped
//! unread. Keys are decoded
//! strictly and bounded ([`MAX_KEY`]); the body itself is bounded by the caller.

use core::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

use super::base64;

/// `POST` path: a token for a user name and password.
pub const AUTHENTICATE: &str = "/v3/auth/authenticate";
/// `POST` path: a new lease.
pub const LEASE_GRANT: &str = "/v3/lease/grant";
/// `POST` path: one keep-alive of a lease (a stream of one request and one answer).
pub const LEASE_KEEPALIVE: &str = "/v3/lease/keepalive";
/// `POST` path: ends a lease, deleting its keys.
pub const LEASE_REVOKE: &str = "/v3/lease/revoke";
/// `POST` path: writes a key.
pub const KV_PUT: &str = "/v3/kv/put";
/// `POST` path: reads a range of keys.
pub const KV_RANGE: &str = "/v3/kv/range";
/// `POST` path: a watch (a long-lived stream of JSON lines).
pub const WATCH: &str = "/v3/watch";

/// The longest key accepted in a response, decoded (etcd's own request limit is 1.5 MiB; a
/// node's key is a prefix and a node name).
pub const MAX_KEY: usize = 64 * 1024;

/// gRPC's status code `NOT_FOUND` (a lease that does not exist).
pub const CODE_NOT_FOUND: u32 = 5;
/// gRPC's status code `PERMISSION_DENIED`.
pub const CODE_PERMISSION_DENIED: u32 = 7;
/// gRPC's status code `OUT_OF_RANGE` (a compacted revision).
pub const CODE_OUT_OF_RANGE: u32 = 11;
/// gRPC's status code `UNAVAILABLE` (no leader, stopping).
pub const CODE_UNAVAILABLE: u32 = 14;
/// gRPC's status code `UNAUTHENTICATED` (a missing, expired or unknown token).
pub const CODE_UNAUTHENTICATED: u32 = 16;

// ----- requests ------------------------------------------------------------------------------

fn body(v: &impl Serialize) -> Vec<u8> {
    // Serialising plain structs of strings cannot fail; an empty body would be refused by the
    // server, never panic here.
    serde_json::to_vec(v).unwrap_or_default()
}

/// The `range_end` that makes a range (or a watch) cover every key starting with `prefix`:
/// the prefix with its last byte below 0xff incremented and what follows dropped; `[0]`
/// (every key) when there is no such byte.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// `AuthenticateRequest`.
pub fn authenticate(name: &str, password: &str) -> Vec<u8> {
    #[derive(Serialize)]
    struct R<'a> {
        name: &'a str,
        password: &'a str,
    }
    body(&R { name, password })
}

/// `LeaseGrantRequest` for a lease of `ttl` seconds, its ID chosen by the server.
pub fn lease_grant(ttl: i64) -> Vec<u8> {
    #[derive(Serialize)]
    struct R {
        #[serde(rename = "TTL")]
        ttl: String,
    }
    body(&R {
        ttl: ttl.to_string(),
    })
}

/// `LeaseKeepAliveRequest` for lease `id`.
pub fn lease_keepalive(id: i64) -> Vec<u8> {
    #[derive(Serialize)]
    struct R {
        #[serde(rename = "ID")]
        id: String,
    }
    body(&R { id: id.to_string() })
}

/// `LeaseRevokeRequest` for lease `id`.
pub fn lease_revoke(id: i64) -> Vec<u8> {
    lease_keepalive(id)
}

/// `PutRequest`: `key` = `value`, attached to lease `lease` (0: none).
pub fn put(key: &[u8], value: &[u8], lease: i64) -> Vec<u8> {
    #[derive(Serialize)]
    struct R {
        key: String,
        value: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        lease: Option<String>,
    }
    body(&R {
        key: base64::encode(key),
        value: base64::encode(value),
        lease: (lease != 0).then(|| lease.to_string()),
    })
}

/// `RangeRequest` of the keys in `[key, range_end)`, values included (linearizable).
pub fn range(key: &[u8], range_end: &[u8]) -> Vec<u8> {
    #[derive(Serialize)]
    struct R {
        key: String,
        range_end: String,
    }
    body(&R {
        key: base64::encode(key),
        range_end: base64::encode(range_end),
    })
}

/// `WatchRequest` creating a watch of `[key, range_end)` from `start_revision` (0: from the
/// next change), with progress notifications if `progress_notify`.
pub fn watch_create(
    key: &[u8],
    range_end: &[u8],
    start_revision: i64,
    progress_notify: bool,
) -> Vec<u8> {
    #[derive(Serialize)]
    struct Create {
        key: String,
        range_end: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        start_revision: Option<String>,
        #[serde(skip_serializing_if = "core::ops::Not::not")]
        progress_notify: bool,
    }
    #[derive(Serialize)]
    struct R {
        create_request: Create,
    }
    body(&R {
        create_request: Create {
            key: base64::encode(key),
            range_end: base64::encode(range_end),
            start_revision: (start_revision > 0).then(|| start_revision.to_string()),
            progress_notify,
        },
    })
}

// ----- responses -----------------------------------------------------------------------------

/// Why a response could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EtcdError {
    /// The server answered with an error.
    #[error("{0}")]
    Api(ApiError),
    /// The body is not what the call answers.
    #[error("{0}")]
    Malformed(String),
}

/// An error the server answered: its gRPC status code and message (as the server wrote it:
/// escape it before showing it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The gRPC status code (`CODE_*`); 0 when the server gave none.
    pub code: u32,
    /// The server's message, e.g. `etcdserver: permission denied`.
    pub message: String,
}

impl ApiError {
    /// A missing, expired or unknown token: authenticate again.
    pub fn is_unauthenticated(&self) -> bool {
        self.code == CODE_UNAUTHENTICATED || self.message.contains("invalid auth token")
    }

    /// The lease named does not exist (it expired, or was revoked).
    pub fn is_lease_not_found(&self) -> bool {
        self.message.contains("lease not found")
    }

    /// The revision asked for has been compacted away.
    pub fn is_compacted(&self) -> bool {
        self.code == CODE_OUT_OF_RANGE || self.message.contains("compacted")
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.code == 0 {
            f.write_str(&self.message)
        } else {
            write!(f, "{} (gRPC code {})", self.message, self.code)
        }
    }
}

fn malformed(e: impl fmt::Display) -> EtcdError {
    EtcdError::Malformed(e.to_string())
}

/// A 64-bit integer written as a JSON string (protobuf's JSON) or a number.
fn int64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = i64;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a 64-bit integer, as a string or a number")
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
            Ok(v)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
            i64::try_from(v).map_err(|_| E::custom(format!("{v} is out of range")))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<i64, E> {
            // Strictly decimal: no sign but '-', no spaces, no exponent.
            let digits = v.strip_prefix('-').unwrap_or(v);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(E::custom(format!("{v:?} is not an integer")));
            }
            v.parse()
                .map_err(|_| E::custom(format!("{v:?} is out of range")))
        }
    }
    d.deserialize_any(V)
}

/// A `bytes` field: strict base64 of at most [`MAX_KEY`] bytes.
fn key_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let s: std::borrow::Cow<'de, str> = Deserialize::deserialize(d)?;
    base64::decode(&s, MAX_KEY).ok_or_else(|| {
        de::Error::custom(format!(
            "a key is not strict base64 of at most {MAX_KEY} bytes"
        ))
    })
}

#[derive(Deserialize, Default)]
struct Header {
    #[serde(default, deserialize_with = "int64")]
    revision: i64,
}

/// A unary error answer: `{"error": "...", "message": "...", "code": N}`, or a stream's
/// `{"error": {"grpc_code": N, "message": "..."}}`.
#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error: Option<ErrorField>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    code: Option<u32>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ErrorField {
    Text(String),
    Object {
        #[serde(default)]
        grpc_code: Option<u32>,
        #[serde(default)]
        message: Option<String>,
    },
}

impl ErrorBody {
    fn into_api(self) -> Option<ApiError> {
        match self.error? {
            // A response message's own empty `error` field is no error.
            ErrorField::Text(t) if t.is_empty() && self.code.is_none() => None,
            ErrorField::Text(t) => Some(ApiError {
                code: self.code.unwrap_or(0),
                message: self.message.filter(|m| !m.is_empty()).unwrap_or(t),
            }),
            ErrorField::Object { grpc_code, message } => Some(ApiError {
                code: grpc_code.or(self.code).unwrap_or(0),
                message: message.or(self.message).unwrap_or_default(),
            }),
        }
    }
}

/// The error in an answer with an error status (or in a stream's error line), if it is one.
pub fn parse_error(body: &[u8]) -> Option<ApiError> {
    let line = first_line(body);
    serde_json::from_slice::<ErrorBody>(line)
        .ok()
        .and_then(ErrorBody::into_api)
}

/// The first non-blank line of a streamed body (a keep-alive's one answer).
fn first_line(body: &[u8]) -> &[u8] {
    body.split(|b| *b == b'\n')
        .find(|l| !l.iter().all(u8::is_ascii_whitespace))
        .unwrap_or(body)
}

/// The token of an `AuthenticateResponse`.
pub fn parse_authenticate(body: &[u8]) -> Result<String, EtcdError> {
    #[derive(Deserialize)]
    struct R {
        #[serde(default)]
        token: String,
    }
    if let Some(e) = parse_error(body) {
        return Err(EtcdError::Api(e));
    }
    let r: R = serde_json::from_slice(body).map_err(malformed)?;
    // The token goes into a header: it must be a header value.
    if r.token.is_empty() || !r.token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(malformed("the token is empty or not printable ASCII"));
    }
    Ok(r.token)
}

/// A lease granted: its ID and TTL (seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// The lease's ID (never 0).
    pub id: i64,
    /// Its TTL in seconds: 0 or less when it no longer exists.
    pub ttl: i64,
}

#[derive(Deserialize)]
struct LeaseBody {
    #[serde(rename = "ID", default, deserialize_with = "int64")]
    id: i64,
    #[serde(rename = "TTL", default, deserialize_with = "int64")]
    ttl: i64,
    #[serde(default)]
    error: Option<ErrorText>,
}

/// `LeaseGrantResponse`'s `error` string (empty when granted); anything but a string is
/// malformed.
#[derive(Deserialize)]
#[serde(transparent)]
struct ErrorText(String);

/// A `LeaseGrantResponse`.
pub fn parse_lease_grant(body: &[u8]) -> Result<Lease, EtcdError> {
    if let Some(e) = parse_error(body) {
        return Err(EtcdError::Api(e));
    }
    let r: LeaseBody = serde_json::from_slice(body).map_err(malformed)?;
    if let Some(ErrorText(e)) = r.error.filter(|e| !e.0.is_empty()) {
        return Err(EtcdError::Api(ApiError {
            code: 0,
            message: e,
        }));
    }
    if r.id == 0 || r.ttl <= 0 {
        return Err(malformed("no lease ID or TTL in the grant"));
    }
    Ok(Lease {
        id: r.id,
        ttl: r.ttl,
    })
}

/// The answer to one keep-alive: `{"result": LeaseKeepAliveResponse}` on its first line. A
/// lease that no longer exists answers a TTL of 0 (or an error "lease not found").
pub fn parse_lease_keepalive(body: &[u8]) -> Result<Lease, EtcdError> {
    #[derive(Deserialize)]
    struct R {
        result: Option<LeaseBody>,
    }
    let line = first_line(body);
    if let Some(e) = parse_error(line) {
        return Err(EtcdError::Api(e));
    }
    let r: R = serde_json::from_slice(line).map_err(malformed)?;
    let l = r
        .result
        .ok_or_else(|| malformed("no result in the keep-alive answer"))?;
    Ok(Lease {
        id: l.id,
        ttl: l.ttl,
    })
}

/// A `PutResponse`: the revision of the store after the put.
pub fn parse_put(body: &[u8]) -> Result<i64, EtcdError> {
    #[derive(Deserialize)]
    struct R {
        #[serde(default)]
        header: Header,
    }
    if let Some(e) = parse_error(body) {
        return Err(EtcdError::Api(e));
    }
    let r: R = serde_json::from_slice(body).map_err(malformed)?;
    Ok(r.header.revision)
}

/// One key of a range or a watch event.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct KeyValue {
    /// The key.
    #[serde(deserialize_with = "key_bytes")]
    pub key: Vec<u8>,
    /// The revision of its last change.
    #[serde(default, deserialize_with = "int64")]
    pub mod_revision: i64,
    /// The lease it is attached to (0: none).
    #[serde(default, deserialize_with = "int64")]
    pub lease: i64,
}

/// A `RangeResponse`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    /// The store's revision the range was read at: a watch continues from the next one.
    pub revision: i64,
    /// The keys, in key order.
    pub kvs: Vec<KeyValue>,
    /// Whether more keys matched than were returned (a limit).
    pub more: bool,
}

/// A `RangeResponse`. Values are skipped.
pub fn parse_range(body: &[u8]) -> Result<Range, EtcdError> {
    #[derive(Deserialize)]
    struct R {
        #[serde(default)]
        header: Header,
        #[serde(default)]
        kvs: Vec<KeyValue>,
        #[serde(default)]
        more: bool,
    }
    if let Some(e) = parse_error(body) {
        return Err(EtcdError::Api(e));
    }
    let r: R = serde_json::from_slice(body).map_err(malformed)?;
    if r.header.revision <= 0 {
        return Err(malformed("no revision in the range's header"));
    }
    Ok(Range {
        revision: r.header.revision,
        kvs: r.kvs,
        more: r.more,
    })
}

/// What a watch event did to its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// The key was written (created or changed).
    Put,
    /// The key was deleted (or its lease ended).
    Delete,
}

/// One event of a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// What happened.
    pub kind: ChangeKind,
    /// The key, its revision and lease.
    pub kv: KeyValue,
}

/// One line of a watch stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchMessage {
    /// The watch is in place (its header's revision is the store's now).
    Created,
    /// Changes, in revision order; `revision` is the header's.
    Changes {
        /// The header's revision.
        revision: i64,
        /// The events.
        changes: Vec<Change>,
    },
    /// A progress notification: every change up to `revision` has been sent.
    Progress {
        /// The header's revision.
        revision: i64,
    },
    /// The server ended the watch: the revision asked for was compacted
    /// (`compact_revision` > 0: read the keys again), or it may not watch (`reason`).
    Canceled {
        /// The oldest revision still kept, when the start revision was older; else 0.
        compact_revision: i64,
        /// The server's reason, as it wrote it.
        reason: String,
    },
    /// The stream reported an error.
    Error(ApiError),
}

/// Parses one line of a watch stream (not a blank one).
pub fn parse_watch_line(line: &[u8]) -> Result<WatchMessage, EtcdError> {
    #[derive(Deserialize)]
    struct Event {
        #[serde(rename = "type", default)]
        kind: Option<String>,
        kv: Option<KeyValue>,
    }
    #[derive(Deserialize)]
    struct Result_ {
        #[serde(default)]
        header: Header,
        #[serde(default)]
        created: bool,
        #[serde(default)]
        canceled: bool,
        #[serde(default, deserialize_with = "int64")]
        compact_revision: i64,
        #[serde(default)]
        cancel_reason: String,
        #[serde(default)]
        events: Vec<Event>,
    }
    #[derive(Deserialize)]
    struct Line {
        result: Option<Result_>,
    }
    if let Some(e) = parse_error(line) {
        return Ok(WatchMessage::Error(e));
    }
    let l: Line = serde_json::from_slice(line).map_err(malformed)?;
    let r = l
        .result
        .ok_or_else(|| malformed("neither a result nor an error"))?;
    if r.canceled {
        return Ok(WatchMessage::Canceled {
            compact_revision: r.compact_revision,
            reason: r.cancel_reason,
        });
    }
    if r.events.is_empty() {
        return Ok(if r.created {
            WatchMessage::Created
        } else {
            WatchMessage::Progress {
                revision: r.header.revision,
            }
        });
    }
    let mut changes = Vec::with_capacity(r.events.len());
    for e in r.events {
        // protobuf's JSON leaves out a field at its default: PUT (0) has no "type".
        let kind = match e.kind.as_deref() {
            None | Some("PUT") => ChangeKind::Put,
            Some("DELETE") => ChangeKind::Delete,
            Some(other) => {
                return Err(malformed(format!(
                    "unknown event type {:?}",
                    other.chars().take(32).collect::<String>()
                )));
            }
        };
        let kv = e.kv.ok_or_else(|| malformed("an event without its key"))?;
        changes.push(Change { kind, kv });
    }
    Ok(WatchMessage::Changes {
        revision: r.header.revision,
        changes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // Bodies as etcd 3.4.23's gateway wrote them.
    const GRANT: &str = r#"{"header":{"cluster_id":"7801232528081817440","member_id":"13458989633860879742","revision":"1","raft_term":"2"},"ID":"5007618160879243526","TTL":"5"}"#;
    const RANGE: &str = r#"{"header":{"cluster_id":"7801232528081817440","member_id":"13458989633860879742","revision":"2","raft_term":"2"},"kvs":[{"key":"L211c3Rlci90L2FAaA==","create_revision":"2","mod_revision":"2","version":"1","value":"YUBo","lease":"5007618160879243529"}],"count":"1"}"#;
    const EMPTY_RANGE: &str = r#"{"header":{"cluster_id":"7801232528081817440","member_id":"13458989633860879742","revision":"1","raft_term":"2"}}"#;
    const KEEPALIVE: &str = "{\"result\":{\"header\":{\"cluster_id\":\"7801232528081817440\",\"member_id\":\"13458989633860879742\",\"revision\":\"2\",\"raft_term\":\"2\"},\"ID\":\"5007618160879243529\",\"TTL\":\"30\"}}\n";
    const KEEPALIVE_GONE: &str = r#"{"result":{"header":{"cluster_id":"7801232528081817440","member_id":"13458989633860879742","revision":"2","raft_term":"2"},"ID":"123"}}"#;
    const AUTH_FAILED: &str = r#"{"error":"etcdserver: authentication failed, invalid user ID or password","message":"etcdserver: authentication failed, invalid user ID or password","code":3}"#;

    #[test]
    fn request_bodies() {
        assert_eq!(prefix_end(b"/muster/"), b"/muster0");
        assert_eq!(prefix_end(b"a\xff\xff"), b"b");
        assert_eq!(prefix_end(b"\xff"), b"\0");
        assert_eq!(prefix_end(b""), b"\0");
        assert_eq!(lease_grant(10), br#"{"TTL":"10"}"#);
        assert_eq!(lease_keepalive(-5), br#"{"ID":"-5"}"#);
        assert_eq!(
            put(b"/m/a@h", b"a@h", 7),
            br#"{"key":"L20vYUBo","value":"YUBo","lease":"7"}"#
        );
        assert_eq!(put(b"k", b"", 0), br#"{"key":"aw==","value":""}"#);
        assert_eq!(
            range(b"/muster/", b"/muster0"),
            br#"{"key":"L211c3Rlci8=","range_end":"L211c3RlcjA="}"#
        );
        assert_eq!(
            watch_create(b"/muster/", b"/muster0", 3, true),
            br#"{"create_request":{"key":"L211c3Rlci8=","range_end":"L211c3RlcjA=","start_revision":"3","progress_notify":true}}"#
        );
        assert_eq!(
            authenticate("app", "p\"w"),
            br#"{"name":"app","password":"p\"w"}"#
        );
    }

    #[test]
    fn unary_answers() {
        assert_eq!(
            parse_lease_grant(GRANT.as_bytes()),
            Ok(Lease {
                id: 5007618160879243526,
                ttl: 5
            })
        );
        let r = parse_range(RANGE.as_bytes()).unwrap();
        assert_eq!(r.revision, 2);
        assert_eq!(r.kvs.len(), 1);
        assert_eq!(r.kvs[0].key, b"/muster/t/a@h");
        assert_eq!(r.kvs[0].lease, 5007618160879243529);
        assert_eq!(r.kvs[0].mod_revision, 2);
        assert!(!r.more);
        assert_eq!(parse_range(EMPTY_RANGE.as_bytes()).unwrap().kvs, vec![]);
        assert_eq!(parse_put(EMPTY_RANGE.as_bytes()), Ok(1));
        assert_eq!(
            parse_authenticate(br#"{"header":{"revision":"8"},"token":"jXSgnLTzztlgUMPO.24"}"#),
            Ok("jXSgnLTzztlgUMPO.24".into())
        );
        assert!(parse_authenticate(br#"{"token":"a\r\nX-Evil: 1"}"#).is_err());
        let Err(EtcdError::Api(e)) = parse_authenticate(AUTH_FAILED.as_bytes()) else {
            panic!()
        };
        assert_eq!(e.code, 3);
        assert!(e.message.contains("authentication failed"));
        let e = parse_error(br#"{"error":"etcdserver: invalid auth token","message":"etcdserver: invalid auth token","code":16}"#).unwrap();
        assert!(e.is_unauthenticated());
        let e =
            parse_error(br#"{"error":"etcdserver: requested lease not found","code":5}"#).unwrap();
        assert!(e.is_lease_not_found());
        assert_eq!(parse_error(GRANT.as_bytes()), None);
    }

    #[test]
    fn keepalive_answers() {
        assert_eq!(
            parse_lease_keepalive(KEEPALIVE.as_bytes()),
            Ok(Lease {
                id: 5007618160879243529,
                ttl: 30
            })
        );
        assert_eq!(
            parse_lease_keepalive(KEEPALIVE_GONE.as_bytes()),
            Ok(Lease { id: 123, ttl: 0 })
        );
        let e = parse_lease_keepalive(
            br#"{"error":{"grpc_code":16,"http_code":401,"message":"etcdserver: invalid auth token","http_status":"Unauthorized"}}"#,
        );
        assert!(
            matches!(e, Err(EtcdError::Api(ref a)) if a.is_unauthenticated()),
            "{e:?}"
        );
    }

    #[test]
    fn watch_lines() {
        let created = r#"{"result":{"header":{"cluster_id":"1","member_id":"2","revision":"2","raft_term":"2"},"created":true}}"#;
        assert_eq!(
            parse_watch_line(created.as_bytes()),
            Ok(WatchMessage::Created)
        );
        let put = r#"{"result":{"header":{"revision":"3"},"events":[{"kv":{"key":"L211c3Rlci90L2JAaA==","create_revision":"3","mod_revision":"3","version":"1"}}]}}"#;
        let Ok(WatchMessage::Changes { revision, changes }) = parse_watch_line(put.as_bytes())
        else {
            panic!()
        };
        assert_eq!(revision, 3);
        assert_eq!(changes[0].kind, ChangeKind::Put);
        assert_eq!(changes[0].kv.key, b"/muster/t/b@h");
        let del = r#"{"result":{"header":{"revision":"4"},"events":[{"type":"DELETE","kv":{"key":"L211c3Rlci90L2JAaA==","mod_revision":"4"}}]}}"#;
        let Ok(WatchMessage::Changes { changes, .. }) = parse_watch_line(del.as_bytes()) else {
            panic!()
        };
        assert_eq!(changes[0].kind, ChangeKind::Delete);
        assert_eq!(changes[0].kv.mod_revision, 4);
        let compacted = r#"{"result":{"header":{"cluster_id":"1","member_id":"2","raft_term":"2"},"canceled":true,"compact_revision":"6"}}"#;
        assert_eq!(
            parse_watch_line(compacted.as_bytes()),
            Ok(WatchMessage::Canceled {
                compact_revision: 6,
                reason: String::new()
            })
        );
        let denied = r#"{"result":{"header":{"revision":"8"},"watch_id":"-1","created":true,"canceled":true,"cancel_reason":"rpc error: code = PermissionDenied desc = etcdserver: permission denied"}}"#;
        assert!(matches!(
            parse_watch_line(denied.as_bytes()),
            Ok(WatchMessage::Canceled { compact_revision: 0, reason }) if reason.contains("permission denied")
        ));
        assert_eq!(
            parse_watch_line(br#"{"result":{"header":{"revision":"9"}}}"#),
            Ok(WatchMessage::Progress { revision: 9 })
        );
        assert!(matches!(
            parse_watch_line(br#"{"error":{"grpc_code":14,"message":"no leader"}}"#),
            Ok(WatchMessage::Error(ApiError { code: 14, .. }))
        ));
        for bad in [
            &br#"{"result":{"events":[{"type":"MOVE","kv":{"key":"YQ=="}}]}}"#[..],
            br#"{"result":{"events":[{"kv":{"key":"not base64!"}}]}}"#,
            br#"{"result":{"events":[{"kv":{"key":"YQ==","mod_revision":"1e3"}}]}}"#,
            br#"{"result":{"events":[{"type":"PUT"}]}}"#,
            br#"{}"#,
            b"[1,2]",
            b"\xff",
        ] {
            assert!(
                parse_watch_line(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn integers_as_strings_or_numbers_and_nothing_else() {
        let r = parse_range(br#"{"header":{"revision":7},"kvs":[{"key":"YQ==","mod_revision":"-1","lease":9223372036854775807}]}"#).unwrap();
        assert_eq!(r.revision, 7);
        assert_eq!(r.kvs[0].lease, i64::MAX);
        for bad in [
            r#"{"header":{"revision":"+7"}}"#,
            r#"{"header":{"revision":" 7"}}"#,
            r#"{"header":{"revision":"9223372036854775808"}}"#,
            r#"{"header":{"revision":18446744073709551615}}"#,
            r#"{"header":{"revision":1.5}}"#,
            r#"{"header":{"revision":""}}"#,
        ] {
            assert!(parse_range(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn any_bytes_parse_or_fail_without_panic(data in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = parse_error(&data);
            let _ = parse_authenticate(&data);
            let _ = parse_lease_grant(&data);
            let _ = parse_lease_keepalive(&data);
            let _ = parse_put(&data);
            let _ = parse_range(&data);
            for line in data.split(|b| *b == b'\n') {
                let _ = parse_watch_line(line);
            }
        }

        #[test]
        fn keys_round_trip_through_a_range(keys in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..40), 0..8)) {
            let kvs: Vec<String> = keys
                .iter()
                .map(|k| format!(r#"{{"key":"{}","mod_revision":"3"}}"#, base64::encode(k)))
                .collect();
            let body = format!(r#"{{"header":{{"revision":"3"}},"kvs":[{}]}}"#, kvs.join(","));
            let r = parse_range(body.as_bytes()).unwrap();
            let got: Vec<Vec<u8>> = r.kvs.into_iter().map(|kv| kv.key).collect();
            prop_assert_eq!(got, keys);
        }

        #[test]
        fn prefix_end_bounds_exactly_the_prefix(prefix in proptest::collection::vec(any::<u8>(), 1..8), rest in proptest::collection::vec(any::<u8>(), 0..8)) {
            let end = prefix_end(&prefix);
            let mut key = prefix.clone();
            key.extend_from_slice(&rest);
            // Every key with the prefix is inside [prefix, end), unless the prefix is all 0xff
            // (then the end is "every key").
            if prefix.iter().any(|b| *b != 0xff) {
                prop_assert!(key.as_slice() < end.as_slice());
            }
            prop_assert!(key.as_slice() >= prefix.as_slice());
        }
    }
}
