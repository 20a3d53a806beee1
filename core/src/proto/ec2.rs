//! EC2 for the `ec2` strategy: the Query API's `DescribeInstances` request (a signed `GET`
//! with its parameters in the query string), its XML response decoded into the instances and
//! the next page's token, EC2's XML error document, and the instance metadata service
//! (IMDSv2) requests that give a node its instance ID, region and role credentials.
//!
//! The XML is read by a small reader of this module's own: it takes exactly what EC2 sends
//! (one UTF-8 document, elements, text with entities and character references, CDATA,
//! comments, processing instructions, attributes skipped) within a size and a depth limit,
//! and refuses a DTD outright, so there is no entity expansion to bound.

use std::net::IpAddr;

use super::aws_credentials::excerpt;
use super::sigv4::{self, Credentials, SignRequest};

pub use xml::XmlError;

/// The deepest nesting of elements the XML reader accepts (a `DescribeInstancesResponse` is
/// about 10 deep).
pub const MAX_DEPTH: usize = 32;
/// The largest XML document accepted: the HTTP layer's body limit.
pub const MAX_INPUT: usize = super::http::DEFAULT_MAX_BODY;

/// The Query API version the request names and the decoder reads.
pub const API_VERSION: &str = "2016-11-15";

/// The most instances EC2 returns in one page (`MaxResults`' upper bound); the lower is 5.
pub const MAX_RESULTS: u32 = 1000;

/// The regional EC2 endpoint's host (`ec2.eu-west-1.amazonaws.com`, with `.com.cn` in the
/// China regions).
pub fn endpoint_host(region: &str) -> String {
    if region.starts_with("cn-") {
        format!("ec2.{region}.amazonaws.com.cn")
    } else {
        format!("ec2.{region}.amazonaws.com")
    }
}

/// One `DescribeInstances` call: the instances carrying a tag, optionally only the running
/// ones, one page at a time.
#[derive(Debug, Clone, Copy, Default)]
pub struct DescribeInstances<'a> {
    /// The tag's key.
    pub tag_key: &'a str,
    /// The values accepted (any of them); empty to accept any value of the key (a
    /// `tag-key` filter).
    pub tag_values: &'a [&'a str],
    /// Whether to ask only for instances in the `running` state.
    pub running_only: bool,
    /// The page size, clamped to 5..=[`MAX_RESULTS`]; `None` for EC2's default (all, up to
    /// its own limit, which makes large responses).
    pub max_results: Option<u32>,
    /// The previous page's [`DescribeInstancesPage::next_token`].
    pub next_token: Option<&'a str>,
}

impl DescribeInstances<'_> {
    /// The Query API parameters, not yet percent-encoded: what [`sigv4::SignRequest::query`]
    /// takes and [`sigv4::request_target`] writes.
    pub fn query(&self) -> Vec<(String, String)> {
        let mut q: Vec<(String, String)> = vec![
            ("Action".into(), "DescribeInstances".into()),
            ("Version".into(), API_VERSION.into()),
        ];
        if self.tag_values.is_empty() {
            q.push(("Filter.1.Name".into(), "tag-key".into()));
            q.push(("Filter.1.Value.1".into(), self.tag_key.into()));
        } else {
            q.push(("Filter.1.Name".into(), format!("tag:{}", self.tag_key)));
            for (i, v) in self.tag_values.iter().enumerate() {
                q.push((format!("Filter.1.Value.{}", i + 1), (*v).into()));
            }
        }
        if self.running_only {
            q.push(("Filter.2.Name".into(), "instance-state-name".into()));
            q.push(("Filter.2.Value.1".into(), "running".into()));
        }
        if let Some(n) = self.max_results {
            q.push(("MaxResults".into(), n.clamp(5, MAX_RESULTS).to_string()));
        }
        if let Some(t) = self.next_token {
            q.push(("NextToken".into(), t.into()));
        }
        q
    }

    /// The whole HTTP request to `host` ([`endpoint_host`], or a test server's `host:port`),
    /// signed for `region` at `amz_date` ([`sigv4::amz_date`] of the wall clock).
    pub fn signed_request(
        &self,
        host: &str,
        creds: &Credentials,
        region: &str,
        amz_date: &str,
    ) -> Vec<u8> {
        let query = self.query();
        let signing = SignRequest {
            method: "GET",
            host,
            path: "/",
            query: &query,
            ..SignRequest::default()
        };
        let headers = sigv4::sign(&signing, creds, region, "ec2", amz_date);
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        super::http::request(
            "GET",
            host,
            &sigv4::request_target("/", &query),
            &headers,
            b"",
        )
    }
}

/// One instance of a `DescribeInstances` page.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Instance {
    /// `instanceId` (`i-0123456789abcdef0`); empty if the response left it out.
    pub instance_id: String,
    /// `instanceState/name` (`pending`, `running`, `stopping`, ...).
    pub state: Option<String>,
    /// `privateIpAddress`, the primary private IPv4 address; `None` when absent or not an
    /// address.
    pub private_ip: Option<IpAddr>,
    /// `ipAddress`, the public IPv4 address, if it has one.
    pub public_ip: Option<IpAddr>,
    /// `privateDnsName` (`ip-10-0-0-5.eu-west-1.compute.internal`), if not empty.
    pub private_dns_name: Option<String>,
    /// The `tagSet`: keys and values in the response's order.
    pub tags: Vec<(String, String)>,
}

impl Instance {
    /// The value of the tag `key`, if the instance has it.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the state is `running`.
    pub fn is_running(&self) -> bool {
        self.state.as_deref() == Some("running")
    }
}

/// A decoded `DescribeInstancesResponse`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DescribeInstancesPage {
    /// The instances of every reservation, in order.
    pub instances: Vec<Instance>,
    /// The token of the next page; `None` on the last.
    pub next_token: Option<String>,
    /// The `requestId`, for support cases and logs.
    pub request_id: Option<String>,
}

/// An error an AWS API answered (EC2's `<Response><Errors><Error>`, the Query APIs'
/// `<ErrorResponse><Error>`, or the JSON APIs' `__type` and `message`). Its text is escaped
/// and shortened, so it can go into an event as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    /// The error code (`RequestLimitExceeded`, `UnauthorizedOperation`, ...), without the
    /// JSON APIs' namespace.
    pub code: String,
    /// The message, possibly empty.
    pub message: String,
    /// The request ID, when the document carries one.
    pub request_id: Option<String>,
}

/// Error codes that mean "slow down", from the AWS SDKs' retry rules.
const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
];

/// Error codes that mean the credentials (or the clock they are signed with) are at fault.
const CREDENTIAL_CODES: &[&str] = &[
    "AuthFailure",
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "RequestExpired",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "InvalidSignatureException",
    "MissingAuthenticationToken",
];

impl ApiError {
    /// Whether AWS asks to back off: retry later, more slowly, with the last good set kept.
    pub fn is_throttling(&self) -> bool {
        THROTTLING_CODES.contains(&self.code.as_str())
    }

    /// Whether the credentials are refused, expired, or signed with a clock too far off
    /// (`RequestExpired`, `SignatureDoesNotMatch`): fetch fresh ones, check the clock.
    pub fn is_credentials_problem(&self) -> bool {
        CREDENTIAL_CODES.contains(&self.code.as_str())
    }
}

/// Why a `DescribeInstances` response could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Ec2Error {
    /// The body is not well-formed XML (or too large, or too deep).
    #[error(transparent)]
    Xml(#[from] XmlError),
    /// The body is an error document.
    #[error("EC2 answered {0}")]
    Api(ApiError),
    /// The body is XML with another root element.
    #[error("expected a DescribeInstancesResponse, got <{0}>")]
    UnexpectedRoot(String),
}

/// Decodes a `DescribeInstancesResponse`; an error document (whatever the HTTP status) comes
/// back as [`Ec2Error::Api`].
pub fn parse_describe_instances(body: &[u8]) -> Result<DescribeInstancesPage, Ec2Error> {
    let mut reader = xml::Reader::new(body)?;
    let mut stack: Vec<&str> = Vec::with_capacity(16);
    let mut page = DescribeInstancesPage::default();
    let mut instance: Option<Instance> = None;
    let mut tag: Option<(String, String)> = None;
    let mut text = String::new();
    let mut capture = false;
    while let Some(event) = reader.next_event()? {
        match event {
            xml::Event::Start(name) => {
                let name = xml::local(name);
                if stack.is_empty() && name != "DescribeInstancesResponse" {
                    return Err(match error_document(body) {
                        Some(e) => Ec2Error::Api(e),
                        None => Ec2Error::UnexpectedRoot(excerpt(name, 64)),
                    });
                }
                stack.push(name);
                text.clear();
                capture = false;
                match stack.as_slice() {
                    [_, "reservationSet", "item", "instancesSet", "item"] => {
                        instance = Some(Instance::default());
                    }
                    [
                        _,
                        "reservationSet",
                        "item",
                        "instancesSet",
                        "item",
                        "tagSet",
                        "item",
                    ] => {
                        tag = Some((String::new(), String::new()));
                    }
                    [_, "nextToken" | "requestId"]
                    | [
                        _,
                        "reservationSet",
                        "item",
                        "instancesSet",
                        "item",
                        "instanceId" | "privateIpAddress" | "ipAddress" | "privateDnsName",
                    ]
                    | [
                        _,
                        "reservationSet",
                        "item",
                        "instancesSet",
                        "item",
                        "instanceState",
                        "name",
                    ]
                    | [
                        _,
                        "reservationSet",
                        "item",
                        "instancesSet",
                        "item",
                        "tagSet",
                        "item",
                        "key" | "value",
                    ] => capture = true,
                    _ => {}
                }
            }
            xml::Event::Text(t) => {
                if capture {
                    text.push_str(&t);
                }
            }
            xml::Event::End => {
                if capture {
                    let value = text.trim();
                    match stack.as_slice() {
                        [_, "nextToken"] => {
                            page.next_token = Some(value.to_owned()).filter(|t| !t.is_empty());
                        }
                        [_, "requestId"] => page.request_id = Some(value.to_owned()),
                        [.., "instancesSet", "item", field] => {
                            if let Some(i) = instance.as_mut() {
                                match *field {
                                    "instanceId" => i.instance_id = value.to_owned(),
                                    "privateIpAddress" => i.private_ip = value.parse().ok(),
                                    "ipAddress" => i.public_ip = value.parse().ok(),
                                    _ => {
                                        i.private_dns_name =
                                            Some(value.to_owned()).filter(|n| !n.is_empty());
                                    }
                                }
                            }
                        }
                        [.., "instanceState", "name"] => {
                            if let Some(i) = instance.as_mut() {
                                i.state = Some(value.to_owned());
                            }
                        }
                        // Tag keys and values keep their spaces: they are compared exactly.
                        [.., "tagSet", "item", "key"] => {
                            if let Some(t) = tag.as_mut() {
                                t.0 = std::mem::take(&mut text);
                            }
                        }
                        [.., "tagSet", "item", "value"] => {
                            if let Some(t) = tag.as_mut() {
                                t.1 = std::mem::take(&mut text);
                            }
                        }
                        _ => {}
                    }
                    capture = false;
                } else {
                    match stack.as_slice() {
                        [_, "reservationSet", "item", "instancesSet", "item"] => {
                            if let Some(i) = instance.take() {
                                page.instances.push(i);
                            }
                        }
                        [
                            _,
                            "reservationSet",
                            "item",
                            "instancesSet",
                            "item",
                            "tagSet",
                            "item",
                        ] => {
                            if let (Some(i), Some(t)) = (instance.as_mut(), tag.take()) {
                                i.tags.push(t);
                            }
                        }
                        _ => {}
                    }
                }
                stack.pop();
            }
        }
    }
    Ok(page)
}

/// Decodes an error document (EC2's `<Response><Errors><Error>` or the Query APIs'
/// `<ErrorResponse><Error>`), as sent with a 4xx or 5xx status; `None` if the body is not
/// one.
pub fn parse_error(body: &[u8]) -> Option<ApiError> {
    error_document(body)
}

fn error_document(body: &[u8]) -> Option<ApiError> {
    let mut reader = xml::Reader::new(body).ok()?;
    let mut stack: Vec<&str> = Vec::with_capacity(8);
    let (mut code, mut message, mut request_id) = (None::<String>, None::<String>, None);
    let mut errors_seen = 0usize;
    let mut text = String::new();
    while let Some(event) = reader.next_event().ok()? {
        match event {
            xml::Event::Start(name) => {
                let name = xml::local(name);
                if stack.is_empty() && !matches!(name, "Response" | "ErrorResponse") {
                    return None;
                }
                stack.push(name);
                text.clear();
                if matches!(stack.as_slice(), [_, "Errors", "Error"] | [_, "Error"]) {
                    errors_seen += 1;
                }
            }
            xml::Event::Text(t) => text.push_str(&t),
            xml::Event::End => {
                // Only the first error counts: EC2 sends one, and the rest would only
                // overwrite it.
                let first = errors_seen == 1;
                match stack.as_slice() {
                    [_, "Errors", "Error", "Code"] | [_, "Error", "Code"] if first => {
                        code = Some(excerpt(&text, 100));
                    }
                    [_, "Errors", "Error", "Message"] | [_, "Error", "Message"] if first => {
                        message = Some(excerpt(&text, 500));
                    }
                    [_, "RequestID" | "RequestId"] => request_id = Some(excerpt(&text, 100)),
                    _ => {}
                }
                text.clear();
                stack.pop();
            }
        }
    }
    Some(ApiError {
        code: code.filter(|c| !c.is_empty())?,
        message: message.unwrap_or_default(),
        request_id,
    })
}

/// The instance metadata service's IPv4 address (`[fd00:ec2::254]` on IPv6-only subnets).
pub const IMDS_HOST: &str = "169.254.169.254";
/// Where IMDSv2 hands out a session token (`PUT`).
pub const IMDS_TOKEN_PATH: &str = "/latest/api/token";
/// The instance's ID.
pub const IMDS_INSTANCE_ID_PATH: &str = "/latest/meta-data/instance-id";
/// The instance's region (`eu-west-1`).
pub const IMDS_REGION_PATH: &str = "/latest/meta-data/placement/region";
/// The instance profile's role name (a one-line listing); the role's credentials are under
/// it, see [`imds_credentials_path`].
pub const IMDS_CREDENTIALS_PATH: &str = "/latest/meta-data/iam/security-credentials/";
/// The longest session token lifetime IMDSv2 grants, in seconds (6 hours).
pub const IMDS_MAX_TOKEN_TTL: u32 = 21_600;
/// The most bytes a metadata text answer (ID, region, role, token) is read from.
const MAX_IMDS_TEXT: usize = 4096;

/// The IMDSv2 session token request: `PUT /latest/api/token` with the token's lifetime in
/// seconds (clamped to 1..=[`IMDS_MAX_TOKEN_TTL`]). Its answer's body, read with
/// [`parse_imds_text`], goes with every metadata request. In a container on an instance
/// whose metadata hop limit is 1 (the default), this answer never arrives: the request times
/// out.
pub fn imds_token_request(ttl_secs: u32) -> Vec<u8> {
    let ttl = ttl_secs.clamp(1, IMDS_MAX_TOKEN_TTL).to_string();
    super::http::request(
        "PUT",
        IMDS_HOST,
        IMDS_TOKEN_PATH,
        &[("X-aws-ec2-metadata-token-ttl-seconds", &ttl)],
        b"",
    )
}

/// A metadata `GET` for `path` (one of the `IMDS_*_PATH` constants, or
/// [`imds_credentials_path`]) with the session token.
pub fn imds_get_request(path: &str, token: &str) -> Vec<u8> {
    super::http::get(
        IMDS_HOST,
        path,
        &[("X-aws-ec2-metadata-token", token.trim())],
    )
}

/// The path of a role's credentials (a JSON document for
/// [`super::aws_credentials::parse`]); `None` if `role` has characters IAM role names never
/// have, so a hostile answer cannot steer the request elsewhere.
pub fn imds_credentials_path(role: &str) -> Option<String> {
    let ok = !role.is_empty()
        && role.len() <= 128
        && role
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b));
    ok.then(|| format!("{IMDS_CREDENTIALS_PATH}{role}"))
}

/// A metadata text answer (token, instance ID, region, role name): its first line, trimmed;
/// `None` if empty, not UTF-8, or longer than a metadata value can be.
pub fn parse_imds_text(body: &[u8]) -> Option<&str> {
    if body.len() > MAX_IMDS_TEXT {
        return None;
    }
    let line = std::str::from_utf8(body).ok()?.lines().next()?.trim();
    (!line.is_empty() && !line.chars().any(char::is_control)).then_some(line)
}

/// The XML reader: a pull parser over a whole document in memory, yielding start tags
/// (self-closing ones as a start and an end), end tags and text runs.
mod xml {
    use std::borrow::Cow;
    use std::fmt;

    use super::{MAX_DEPTH, MAX_INPUT};

    /// Why a document was refused, and where.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct XmlError {
        /// The byte offset of the fault.
        pub offset: usize,
        /// Its line, from 1.
        pub line: usize,
        /// What is wrong.
        pub what: &'static str,
    }

    impl fmt::Display for XmlError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(
                f,
                "malformed XML at line {} (byte {}): {}",
                self.line, self.offset, self.what
            )
        }
    }

    impl std::error::Error for XmlError {}

    /// One step of the document.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(super) enum Event<'a> {
        /// An element opens; its qualified name (`prefix:local` or `local`).
        Start(&'a str),
        /// The innermost open element closes.
        End,
        /// Character data, entities and references decoded; a run may come in several
        /// pieces (around comments and CDATA sections).
        Text(Cow<'a, str>),
    }

    /// The name without its namespace prefix.
    pub(super) fn local(name: &str) -> &str {
        name.rsplit_once(':').map_or(name, |(_, l)| l)
    }

    /// The reader's place in one document, and the elements open there.
    pub(super) struct Reader<'a> {
        src: &'a str,
        pos: usize,
        open: Vec<&'a str>,
        pending_end: bool,
        seen_root: bool,
    }

    impl<'a> Reader<'a> {
        /// A reader of `input`, which must be UTF-8 (a byte-order mark is skipped) and at
        /// most [`MAX_INPUT`] bytes.
        pub(super) fn new(input: &'a [u8]) -> Result<Self, XmlError> {
            if input.len() > MAX_INPUT {
                return Err(XmlError {
                    offset: MAX_INPUT,
                    line: 0,
                    what: "document larger than the limit",
                });
            }
            let src = match std::str::from_utf8(input) {
                Ok(s) => s,
                Err(e) => {
                    let offset = e.valid_up_to();
                    return Err(XmlError {
                        offset,
                        line: line_of(&input[..offset]),
                        what: "not UTF-8",
                    });
                }
            };
            let pos = if src.starts_with('\u{feff}') { 3 } else { 0 };
            Ok(Reader {
                src,
                pos,
                open: Vec::new(),
                pending_end: false,
                seen_root: false,
            })
        }

        fn err(&self, offset: usize, what: &'static str) -> XmlError {
            let offset = offset.min(self.src.len());
            XmlError {
                offset,
                line: line_of(&self.src.as_bytes()[..offset]),
                what,
            }
        }

        /// The position just after `pat`, searched from `from`.
        fn after(&self, from: usize, pat: &str, what: &'static str) -> Result<usize, XmlError> {
            match self.src.get(from..).and_then(|rest| rest.find(pat)) {
                Some(i) => Ok(from + i + pat.len()),
                None => Err(self.err(from, what)),
            }
        }

        /// The next event; `None` at the end of a complete document.
        pub(super) fn next_event(&mut self) -> Result<Option<Event<'a>>, XmlError> {
            if self.pending_end {
                self.pending_end = false;
                self.open.pop();
                return Ok(Some(Event::End));
            }
            let src = self.src;
            let bytes = src.as_bytes();
            loop {
                let start = self.pos;
                let Some(&b) = bytes.get(start) else {
                    return if !self.open.is_empty() {
                        Err(self.err(start, "document ends inside an element"))
                    } else if !self.seen_root {
                        Err(self.err(start, "no root element"))
                    } else {
                        Ok(None)
                    };
                };
                if b != b'<' {
                    let end = src[start..].find('<').map_or(src.len(), |i| start + i);
                    self.pos = end;
                    let raw = &src[start..end];
                    if self.open.is_empty() {
                        if raw.bytes().all(|c| c.is_ascii_whitespace()) {
                            continue;
                        }
                        return Err(self.err(start, "text outside the root element"));
                    }
                    return decode(raw)
                        .map(|t| Some(Event::Text(t)))
                        .map_err(|(i, what)| self.err(start + i, what));
                }
                let rest = &src[start..];
                if rest.starts_with("<?") {
                    self.pos =
                        self.after(start + 2, "?>", "unterminated processing instruction")?;
                } else if rest.starts_with("<!--") {
                    self.pos = self.after(start + 4, "-->", "unterminated comment")?;
                } else if rest.starts_with("<![CDATA[") {
                    if self.open.is_empty() {
                        return Err(self.err(start, "CDATA outside the root element"));
                    }
                    let end = self.after(start + 9, "]]>", "unterminated CDATA section")?;
                    self.pos = end;
                    return Ok(Some(Event::Text(Cow::Borrowed(&src[start + 9..end - 3]))));
                } else if rest.starts_with("<!") {
                    return Err(self.err(start, "DTDs and declarations are not accepted"));
                } else if rest.starts_with("</") {
                    let end = self.after(start + 2, ">", "unterminated end tag")?;
                    let name = src[start + 2..end - 1].trim_end_matches([' ', '\t', '\r', '\n']);
                    if self.open.last() != Some(&name) {
                        return Err(self.err(start, "end tag does not match the open element"));
                    }
                    self.pos = end;
                    self.open.pop();
                    return Ok(Some(Event::End));
                } else {
                    return self.start_tag(start).map(Some);
                }
            }
        }

        fn start_tag(&mut self, start: usize) -> Result<Event<'a>, XmlError> {
            let src = self.src;
            let bytes = src.as_bytes();
            let name_end = bytes[start + 1..]
                .iter()
                .position(|c| c.is_ascii_whitespace() || matches!(c, b'/' | b'>'))
                .map_or(bytes.len(), |i| start + 1 + i);
            let name = &src[start + 1..name_end];
            if !valid_name(name) {
                return Err(self.err(start + 1, "bad element name"));
            }
            if self.open.is_empty() && self.seen_root {
                return Err(self.err(start, "a second root element"));
            }
            if self.open.len() >= MAX_DEPTH {
                return Err(self.err(start, "elements nested too deep"));
            }
            // Attributes are skipped, but read exactly, so that a `>` inside a quoted value
            // does not end the tag.
            let mut i = name_end;
            let self_closing = loop {
                while bytes.get(i).is_some_and(u8::is_ascii_whitespace) {
                    i += 1;
                }
                match bytes.get(i) {
                    None => return Err(self.err(start, "unterminated start tag")),
                    Some(b'>') => {
                        i += 1;
                        break false;
                    }
                    Some(b'/') => {
                        if bytes.get(i + 1) != Some(&b'>') {
                            return Err(self.err(i, "'/' not followed by '>'"));
                        }
                        i += 2;
                        break true;
                    }
                    Some(_) => {}
                }
                if !bytes[i - 1].is_ascii_whitespace() {
                    return Err(self.err(i, "no space before an attribute"));
                }
                let attr = i;
                while bytes
                    .get(i)
                    .is_some_and(|c| !c.is_ascii_whitespace() && !matches!(c, b'=' | b'>' | b'/'))
                {
                    i += 1;
                }
                if !valid_name(&src[attr..i]) {
                    return Err(self.err(attr, "bad attribute name"));
                }
                while bytes.get(i).is_some_and(u8::is_ascii_whitespace) {
                    i += 1;
                }
                if bytes.get(i) != Some(&b'=') {
                    return Err(self.err(i, "attribute without '='"));
                }
                i += 1;
                while bytes.get(i).is_some_and(u8::is_ascii_whitespace) {
                    i += 1;
                }
                let quote = match bytes.get(i) {
                    Some(q @ (b'"' | b'\'')) => *q,
                    _ => return Err(self.err(i, "attribute value not quoted")),
                };
                let value_start = i + 1;
                let Some(len) = bytes[value_start..].iter().position(|c| *c == quote) else {
                    return Err(self.err(i, "unterminated attribute value"));
                };
                let value = &src[value_start..value_start + len];
                if value.contains('<') {
                    return Err(self.err(value_start, "'<' in an attribute value"));
                }
                decode(value).map_err(|(j, what)| self.err(value_start + j, what))?;
                i = value_start + len + 1;
            };
            self.pos = i;
            self.seen_root = true;
            self.open.push(name);
            self.pending_end = self_closing;
            Ok(Event::Start(name))
        }
    }

    fn valid_name(name: &str) -> bool {
        let mut chars = name.chars();
        chars
            .next()
            .is_some_and(|c| c.is_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_alphanumeric() || matches!(c, '_' | ':' | '-' | '.'))
    }

    fn line_of(bytes: &[u8]) -> usize {
        1 + bytes.iter().filter(|&&b| b == b'\n').count()
    }

    /// Text with its five predefined entities and numeric character references decoded;
    /// borrowed when it has none. The error is the offset within `raw` and what is wrong.
    fn decode(raw: &str) -> Result<Cow<'_, str>, (usize, &'static str)> {
        let Some(first) = raw.find('&') else {
            return Ok(Cow::Borrowed(raw));
        };
        let mut out = String::with_capacity(raw.len());
        out.push_str(&raw[..first]);
        let mut i = first;
        while i < raw.len() {
            let rest = &raw[i..];
            if !rest.starts_with('&') {
                let next = rest.find('&').map_or(raw.len(), |j| i + j);
                out.push_str(&raw[i..next]);
                i = next;
                continue;
            }
            // The longest reference is `&#x10FFFF;` or `&#1114111;`, ten bytes.
            let Some(semi) = rest.bytes().take(12).position(|c| c == b';') else {
                return Err((i, "'&' not starting an entity or reference"));
            };
            let entity = &rest[1..semi];
            let c = match entity {
                "lt" => '<',
                "gt" => '>',
                "amp" => '&',
                "quot" => '"',
                "apos" => '\'',
                _ => {
                    let code = if let Some(hex) = entity.strip_prefix("#x") {
                        u32::from_str_radix(hex, 16)
                            .ok()
                            .filter(|_| !hex.starts_with('+'))
                    } else if let Some(dec) = entity.strip_prefix('#') {
                        dec.parse::<u32>().ok().filter(|_| !dec.starts_with('+'))
                    } else {
                        return Err((i, "unknown entity"));
                    };
                    match code.and_then(char::from_u32) {
                        Some(c) if c != '\0' => c,
                        _ => return Err((i, "bad character reference")),
                    }
                }
            };
            out.push(c);
            i += semi + 1;
        }
        Ok(Cow::Owned(out))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn events(doc: &str) -> Result<Vec<Event<'_>>, XmlError> {
            let mut r = Reader::new(doc.as_bytes())?;
            let mut out = Vec::new();
            while let Some(e) = r.next_event()? {
                out.push(e);
            }
            Ok(out)
        }

        #[test]
        fn well_formed_documents() {
            let doc = "\u{feff}<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!-- c --><a:r xmlns:a='u' x=\"1 > 0\"><b/><c k = 'v'>x &amp;&lt;&gt;&quot;&apos;&#65;&#x42;<![CDATA[<&>]]><!--in-->y</c></a:r>\n";
            let ev = events(doc).unwrap();
            assert_eq!(
                ev,
                [
                    Event::Start("a:r"),
                    Event::Start("b"),
                    Event::End,
                    Event::Start("c"),
                    Event::Text(Cow::Owned("x &<>\"'AB".into())),
                    Event::Text(Cow::Borrowed("<&>")),
                    Event::Text(Cow::Borrowed("y")),
                    Event::End,
                    Event::End,
                ]
            );
            assert_eq!(local("a:r"), "r");
        }

        #[test]
        fn malformed_documents_name_their_place() {
            for (doc, what, line) in [
                ("", "no root element", 1),
                ("<a>\n<b></a>", "end tag does not match the open element", 2),
                ("<a>\n\n<b>", "document ends inside an element", 3),
                ("<a/><b/>", "a second root element", 1),
                ("x<a/>", "text outside the root element", 1),
                ("<a>&foo;</a>", "unknown entity", 1),
                ("<a>&#0;</a>", "bad character reference", 1),
                ("<a>&#xD800;</a>", "bad character reference", 1),
                ("<a>AT&T</a>", "'&' not starting an entity or reference", 1),
                (
                    "<!DOCTYPE a [<!ENTITY x 'y'>]><a/>",
                    "DTDs and declarations are not accepted",
                    1,
                ),
                ("<a b=c/>", "attribute value not quoted", 1),
                ("<a b='<'/>", "'<' in an attribute value", 1),
                ("<a b='1'c='2'/>", "no space before an attribute", 1),
                ("<1a/>", "bad element name", 1),
                ("<a><!-- x</a>", "unterminated comment", 1),
                ("<a><![CDATA[x</a>", "unterminated CDATA section", 1),
                ("<a", "unterminated start tag", 1),
            ] {
                let e = events(doc).unwrap_err();
                assert_eq!((e.what, e.line), (what, line), "{doc}");
            }
            let deep = "<a>".repeat(MAX_DEPTH + 1);
            assert_eq!(events(&deep).unwrap_err().what, "elements nested too deep");
            let ok = format!("{}{}", "<a>".repeat(MAX_DEPTH), "</a>".repeat(MAX_DEPTH));
            assert!(events(&ok).is_ok());
            let e = Reader::new(b"<a>\n\xff</a>").err().unwrap();
            assert_eq!((e.offset, e.line, e.what), (4, 2, "not UTF-8"));
            assert!(e.to_string().contains("line 2 (byte 4)"));
        }
    }
}

/// A DescribeInstances page of `n` running instances shaped like EC2's (about 3 KB each,
/// tagged `app = web`), for tests and benchmarks.
#[cfg(any(test, feature = "unstable-proto"))]
#[doc(hidden)]
pub fn sample_page(n: usize) -> String {
    let mut s = String::from(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>r</requestId><reservationSet>"#,
    );
    for i in 0..n {
        let (a, b) = (i / 250, i % 250);
        s.push_str(&format!(
            r#"
<item><reservationId>r-{i:017x}</reservationId><ownerId>123456789012</ownerId><groupSet/><instancesSet><item>
<instanceId>i-{i:017x}</instanceId><imageId>ami-0abcdef1234567890</imageId>
<instanceState><code>16</code><name>running</name></instanceState>
<privateDnsName>ip-10-1-{a}-{b}.eu-west-1.compute.internal</privateDnsName><dnsName/><reason/>
<keyName>ops</keyName><amiLaunchIndex>0</amiLaunchIndex><productCodes/><instanceType>m6i.large</instanceType>
<launchTime>2026-05-08T16:46:19.000Z</launchTime>
<placement><availabilityZone>eu-west-1a</availabilityZone><groupName/><tenancy>default</tenancy></placement>
<monitoring><state>disabled</state></monitoring><subnetId>subnet-0123456789abcdef0</subnetId><vpcId>vpc-0123456789abcdef0</vpcId>
<privateIpAddress>10.1.{a}.{b}</privateIpAddress><sourceDestCheck>true</sourceDestCheck>
<groupSet><item><groupId>sg-0123456789abcdef0</groupId><groupName>app</groupName></item></groupSet>
<architecture>x86_64</architecture><rootDeviceType>ebs</rootDeviceType><rootDeviceName>/dev/xvda</rootDeviceName>
<blockDeviceMapping><item><deviceName>/dev/xvda</deviceName><ebs><volumeId>vol-{i:017x}</volumeId><status>attached</status>
<attachTime>2026-05-08T16:46:20.000Z</attachTime><deleteOnTermination>true</deleteOnTermination></ebs></item></blockDeviceMapping>
<virtualizationType>hvm</virtualizationType><clientToken/>
<tagSet><item><key>app</key><value>web</value></item><item><key>Name</key><value>web-{i}</value></item>
<item><key>aws:autoscaling:groupName</key><value>web-asg</value></item></tagSet><hypervisor>xen</hypervisor>
<networkInterfaceSet><item><networkInterfaceId>eni-{i:017x}</networkInterfaceId><subnetId>subnet-0123456789abcdef0</subnetId>
<vpcId>vpc-0123456789abcdef0</vpcId><description/><ownerId>123456789012</ownerId><status>in-use</status>
<macAddress>02:dd:2c:5e:01:69</macAddress><privateIpAddress>10.1.{a}.{b}</privateIpAddress>
<privateDnsName>ip-10-1-{a}-{b}.eu-west-1.compute.internal</privateDnsName><sourceDestCheck>true</sourceDestCheck>
<groupSet><item><groupId>sg-0123456789abcdef0</groupId><groupName>app</groupName></item></groupSet>
<attachment><attachmentId>eni-attach-{i:017x}</attachmentId><deviceIndex>0</deviceIndex><status>attached</status>
<attachTime>2026-05-08T16:46:19.000Z</attachTime><deleteOnTermination>true</deleteOnTermination></attachment>
<privateIpAddressesSet><item><privateIpAddress>10.1.{a}.{b}</privateIpAddress><privateDnsName>ip-10-1-{a}-{b}.eu-west-1.compute.internal</privateDnsName>
<primary>true</primary></item></privateIpAddressesSet><ipv6AddressesSet/><interfaceType>interface</interfaceType></item></networkInterfaceSet>
<ebsOptimized>false</ebsOptimized><enaSupport>true</enaSupport>
<cpuOptions><coreCount>1</coreCount><threadsPerCore>2</threadsPerCore></cpuOptions>
<metadataOptions><state>applied</state><httpTokens>required</httpTokens><httpPutResponseHopLimit>2</httpPutResponseHopLimit>
<httpEndpoint>enabled</httpEndpoint></metadataOptions>
</item></instancesSet></item>"#
        ));
    }
    s.push_str("\n</reservationSet></DescribeInstancesResponse>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of AWS's documented response (and moto's), with a second network interface
    /// whose addresses must not be taken for the instance's own.
    const RESPONSE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
    <requestId>8f7724cf-496f-496e-8fe3-example</requestId>
    <reservationSet>
        <item>
            <reservationId>r-1234567890abcdef0</reservationId>
            <ownerId>123456789012</ownerId>
            <groupSet/>
            <instancesSet>
                <item>
                    <instanceId>i-1</instanceId>
                    <imageId>ami-bff32ccc</imageId>
                    <instanceState>
                        <code>16</code>
                        <name>running</name>
                    </instanceState>
                    <privateDnsName>ip-10-0-0-5.eu-west-1.compute.internal</privateDnsName>
                    <dnsName>ec2-54-194-252-215.eu-west-1.compute.amazonaws.com</dnsName>
                    <reason/>
                    <keyName>my_keypair</keyName>
                    <amiLaunchIndex>0</amiLaunchIndex>
                    <productCodes/>
                    <instanceType>t3.micro</instanceType>
                    <launchTime>2026-05-08T16:46:19.000Z</launchTime>
                    <placement>
                        <availabilityZone>eu-west-1c</availabilityZone>
                        <groupName/>
                        <tenancy>default</tenancy>
                    </placement>
                    <monitoring><state>disabled</state></monitoring>
                    <subnetId>subnet-56f5f633</subnetId>
                    <vpcId>vpc-11112222</vpcId>
                    <privateIpAddress>10.0.0.5</privateIpAddress>
                    <ipAddress>54.194.252.215</ipAddress>
                    <sourceDestCheck>true</sourceDestCheck>
                    <groupSet>
                        <item><groupId>sg-e4076980</groupId><groupName>web</groupName></item>
                    </groupSet>
                    <architecture>x86_64</architecture>
                    <rootDeviceType>ebs</rootDeviceType>
                    <rootDeviceName>/dev/xvda</rootDeviceName>
                    <blockDeviceMapping>
                        <item>
                            <deviceName>/dev/xvda</deviceName>
                            <ebs>
                                <volumeId>vol-1234567890abcdef0</volumeId>
                                <status>attached</status>
                                <attachTime>2026-05-08T16:46:20.000Z</attachTime>
                                <deleteOnTermination>true</deleteOnTermination>
                            </ebs>
                        </item>
                    </blockDeviceMapping>
                    <virtualizationType>hvm</virtualizationType>
                    <clientToken/>
                    <tagSet>
                        <item><key>app</key><value>web</value></item>
                        <item><key>Name</key><value>web &amp; api &#x2014; &lt;1&gt;</value></item>
                        <item><key>empty</key><value/></item>
                    </tagSet>
                    <hypervisor>xen</hypervisor>
                    <networkInterfaceSet>
                        <item>
                            <networkInterfaceId>eni-551ba033</networkInterfaceId>
                            <privateIpAddress>10.0.0.5</privateIpAddress>
                            <association><publicIp>54.194.252.215</publicIp></association>
                            <privateIpAddressesSet>
                                <item>
                                    <privateIpAddress>10.0.0.5</privateIpAddress>
                                    <primary>true</primary>
                                </item>
                            </privateIpAddressesSet>
                        </item>
                        <item>
                            <networkInterfaceId>eni-2</networkInterfaceId>
                            <privateIpAddress>10.0.9.9</privateIpAddress>
                            <privateDnsName>ip-10-0-9-9.eu-west-1.compute.internal</privateDnsName>
                            <tagSet><item><key>app</key><value>not-this</value></item></tagSet>
                        </item>
                    </networkInterfaceSet>
                    <ebsOptimized>false</ebsOptimized>
                </item>
                <item>
                    <instanceId>i-2</instanceId>
                    <tagSet><item><key>app</key><value>web</value></item></tagSet>
                    <instanceState><code>0</code><name>pending</name></instanceState>
                    <privateIpAddress>10.0.0.6</privateIpAddress>
                </item>
            </instancesSet>
        </item>
        <item>
            <reservationId>r-2</reservationId>
            <instancesSet>
                <item>
                    <instanceId>i-3</instanceId>
                    <instanceState><code>16</code><name>running</name></instanceState>
                    <privateIpAddress><![CDATA[10.0.1.7]]></privateIpAddress>
                    <!-- no public address, no tags -->
                </item>
            </instancesSet>
        </item>
    </reservationSet>
    <nextToken>eyJ2IjoiMiIsImMiOiJ0b2tlbiJ9</nextToken>
</DescribeInstancesResponse>
"#;

    #[test]
    fn decodes_a_describe_instances_page() {
        let page = parse_describe_instances(RESPONSE.as_bytes()).unwrap();
        assert_eq!(
            page.next_token.as_deref(),
            Some("eyJ2IjoiMiIsImMiOiJ0b2tlbiJ9")
        );
        assert_eq!(
            page.request_id.as_deref(),
            Some("8f7724cf-496f-496e-8fe3-example")
        );
        assert_eq!(page.instances.len(), 3);
        let i1 = &page.instances[0];
        assert_eq!(i1.instance_id, "i-1");
        assert!(i1.is_running());
        assert_eq!(i1.private_ip, Some("10.0.0.5".parse().unwrap()));
        assert_eq!(i1.public_ip, Some("54.194.252.215".parse().unwrap()));
        assert_eq!(
            i1.private_dns_name.as_deref(),
            Some("ip-10-0-0-5.eu-west-1.compute.internal")
        );
        assert_eq!(
            i1.tags,
            [
                ("app".to_owned(), "web".to_owned()),
                ("Name".to_owned(), "web & api \u{2014} <1>".to_owned()),
                ("empty".to_owned(), String::new()),
            ]
        );
        assert_eq!(i1.tag("app"), Some("web"));
        let i2 = &page.instances[1];
        assert_eq!(
            (i2.instance_id.as_str(), i2.state.as_deref()),
            ("i-2", Some("pending"))
        );
        assert_eq!(i2.tag("app"), Some("web"));
        assert!(!i2.is_running());
        let i3 = &page.instances[2];
        assert_eq!(i3.private_ip, Some("10.0.1.7".parse().unwrap()));
        assert_eq!((i3.public_ip, i3.tags.len()), (None, 0));
    }

    #[test]
    fn last_page_and_empty_results() {
        let last = r#"<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>x</requestId><reservationSet/><nextToken/></DescribeInstancesResponse>"#;
        let page = parse_describe_instances(last.as_bytes()).unwrap();
        assert_eq!(page.instances, []);
        assert_eq!(page.next_token, None);
        // A prefixed namespace is read the same.
        let prefixed = r#"<e:DescribeInstancesResponse xmlns:e="http://ec2.amazonaws.com/doc/2016-11-15/"><e:reservationSet><e:item><e:instancesSet><e:item><e:instanceId>i-9</e:instanceId><e:privateIpAddress>not-an-ip</e:privateIpAddress></e:item></e:instancesSet></e:item></e:reservationSet></e:DescribeInstancesResponse>"#;
        let page = parse_describe_instances(prefixed.as_bytes()).unwrap();
        assert_eq!(page.instances[0].instance_id, "i-9");
        assert_eq!(page.instances[0].private_ip, None);
    }

    #[test]
    fn error_documents() {
        let throttled = br#"<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error></Errors><RequestID>a8d4f1e0-5b0c-4c0e-9a6a-example</RequestID></Response>"#;
        let e = parse_error(throttled).unwrap();
        assert_eq!(e.code, "RequestLimitExceeded");
        assert_eq!(e.message, "Request limit exceeded.");
        assert_eq!(
            e.request_id.as_deref(),
            Some("a8d4f1e0-5b0c-4c0e-9a6a-example")
        );
        assert!(e.is_throttling() && !e.is_credentials_problem());
        assert_eq!(
            parse_describe_instances(throttled),
            Err(Ec2Error::Api(e.clone()))
        );

        let auth = br#"<Response><Errors><Error><Code>AuthFailure</Code><Message>AWS was not able to validate the provided access credentials &#x1b;[2J</Message></Error><Error><Code>Second</Code></Error></Errors><RequestID>r</RequestID></Response>"#;
        let e = parse_error(auth).unwrap();
        assert_eq!(e.code, "AuthFailure");
        assert!(e.is_credentials_problem() && !e.is_throttling());
        assert!(!e.message.contains('\u{1b}'), "escaped: {}", e.message);

        let query_api = br#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>q</RequestId></ErrorResponse>"#;
        let e = parse_error(query_api).unwrap();
        assert_eq!(
            (e.code.as_str(), e.request_id.as_deref()),
            ("Throttling", Some("q"))
        );
        assert!(e.is_throttling());

        assert_eq!(parse_error(b"<Response><Errors/></Response>"), None);
        assert_eq!(parse_error(b"<html>"), None);
        assert_eq!(parse_error(RESPONSE.as_bytes()), None);
        assert_eq!(
            parse_describe_instances(b"<html><body>503</body></html>"),
            Err(Ec2Error::UnexpectedRoot("html".into()))
        );
        assert!(matches!(
            parse_describe_instances(b"<DescribeInstancesResponse>"),
            Err(Ec2Error::Xml(XmlError {
                what: "document ends inside an element",
                ..
            }))
        ));
    }

    #[test]
    fn request_query_and_signature() {
        let q = DescribeInstances {
            tag_key: "app",
            tag_values: &["web", "api"],
            running_only: true,
            max_results: Some(1),
            next_token: Some("tok+/="),
        }
        .query();
        assert_eq!(
            sigv4::canonical_query(&q),
            "Action=DescribeInstances&Filter.1.Name=tag%3Aapp&Filter.1.Value.1=web&Filter.1.Value.2=api\
             &Filter.2.Name=instance-state-name&Filter.2.Value.1=running&MaxResults=5\
             &NextToken=tok%2B%2F%3D&Version=2016-11-15"
        );
        let q = DescribeInstances {
            tag_key: "cluster",
            ..DescribeInstances::default()
        }
        .query();
        assert_eq!(
            sigv4::canonical_query(&q),
            "Action=DescribeInstances&Filter.1.Name=tag-key&Filter.1.Value.1=cluster&Version=2016-11-15"
        );

        let creds = Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "secret".into(),
            session_token: Some("tok".into()),
        };
        let r = DescribeInstances {
            tag_key: "app",
            tag_values: &["web"],
            running_only: true,
            ..DescribeInstances::default()
        }
        .signed_request(
            &endpoint_host("eu-west-1"),
            &creds,
            "eu-west-1",
            "20260101T000000Z",
        );
        let text = String::from_utf8(r).unwrap();
        assert!(
            text.starts_with("GET /?Action=DescribeInstances&Filter.1.Name=tag%3Aapp&"),
            "{text}"
        );
        assert!(text.contains("\r\nHost: ec2.eu-west-1.amazonaws.com\r\n"));
        assert!(text.contains("\r\nX-Amz-Date: 20260101T000000Z\r\n"));
        assert!(text.contains("\r\nX-Amz-Security-Token: tok\r\n"));
        assert!(text.contains(
            "\r\nAuthorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/eu-west-1/ec2/aws4_request, SignedHeaders=host;x-amz-date;x-amz-security-token, Signature="
        ));
        assert!(text.ends_with("\r\n\r\n"));
        assert_eq!(
            endpoint_host("cn-north-1"),
            "ec2.cn-north-1.amazonaws.com.cn"
        );
    }

    #[test]
    fn imds_requests() {
        let t = String::from_utf8(imds_token_request(0)).unwrap();
        assert!(t.starts_with("PUT /latest/api/token HTTP/1.1\r\nHost: 169.254.169.254\r\n"));
        assert!(t.contains("\r\nX-aws-ec2-metadata-token-ttl-seconds: 1\r\n"));
        assert!(t.contains("\r\nContent-Length: 0\r\n"));
        let g = String::from_utf8(imds_get_request(IMDS_REGION_PATH, "AQAE\n")).unwrap();
        assert!(g.starts_with("GET /latest/meta-data/placement/region HTTP/1.1\r\n"));
        assert!(g.contains("\r\nX-aws-ec2-metadata-token: AQAE\r\n"));
        assert_eq!(
            imds_credentials_path("my-role@x.y+z").as_deref(),
            Some("/latest/meta-data/iam/security-credentials/my-role@x.y+z")
        );
        for bad in ["", "../../user-data", "a b", "r\r\nX: y"] {
            assert_eq!(imds_credentials_path(bad), None, "{bad}");
        }
        assert_eq!(parse_imds_text(b"web-role\nother\n"), Some("web-role"));
        assert_eq!(parse_imds_text(b" eu-west-1 "), Some("eu-west-1"));
        assert_eq!(parse_imds_text(b""), None);
        assert_eq!(parse_imds_text(b"\xff"), None);
        assert_eq!(parse_imds_text(&[b'a'; 5000]), None);
    }

    /// All 1,000 instances of a full page are decoded (its speed: `cargo bench --bench aws`).
    #[test]
    fn thousand_instances() {
        let body = sample_page(1000);
        let page = parse_describe_instances(body.as_bytes()).unwrap();
        assert_eq!(page.instances.len(), 1000);
        assert!(
            page.instances
                .iter()
                .all(|i| i.is_running() && i.tag("app") == Some("web"))
        );
        assert_eq!(
            page.instances[999].private_ip,
            Some("10.1.3.249".parse().unwrap())
        );
        assert_eq!(page.instances[999].tag("Name"), Some("web-999"));
    }

    proptest::proptest! {
        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = parse_describe_instances(&data);
            let _ = parse_error(&data);
        }

        #[test]
        fn mangled_responses_never_panic(cut in 0usize..4000, byte in proptest::num::u8::ANY, at in 0usize..4000) {
            let mut doc = RESPONSE.as_bytes().to_vec();
            doc.truncate(cut.min(doc.len()));
            if let Some(b) = doc.get_mut(at) {
                *b = byte;
            }
            let _ = parse_describe_instances(&doc);
            let _ = parse_error(&doc);
        }

        #[test]
        fn xmlish_text_never_panics(s in "(<[a-z:/!?\\[]{0,3}|[a-z ='\"&;#x0-9]{0,4}|>|\\]\\]>|CDATA\\[|--){0,40}") {
            let _ = parse_describe_instances(s.as_bytes());
            let _ = parse_error(s.as_bytes());
        }
    }
}
