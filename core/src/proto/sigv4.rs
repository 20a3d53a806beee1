//! AWS Signature Version 4 (`AWS4-HMAC-SHA256`) for the requests the EC2 and ECS strategies
//! send, and the calendar arithmetic it needs.
//!
//! The core has no clock: the caller passes the wall-clock time as a Unix time and
//! [`amz_date`] writes it the way SigV4 wants it. AWS refuses a signature whose time is more
//! than five minutes away from its own, so that time must come from the system clock, not from
//! the core's monotonic `now`.
//!
//! Paths are signed as given, segment by segment, without removing `.` or `..` segments or
//! doubled slashes: the requests built here only ever use `/`.

use std::fmt;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// The signing algorithm's name, as the `Authorization` header and the string to sign write it.
const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// The headers [`sign`] writes itself; a caller's copy of one of them is left out of the
/// signature so that it cannot contradict the signer's.
const OWN_HEADERS: [&str; 5] = [
    "host",
    "x-amz-date",
    "x-amz-security-token",
    "x-amz-content-sha256",
    "authorization",
];

/// An access key, with the session token that temporary credentials (an instance role, a
/// task role) come with.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The access key ID (`AKIA...` for a user, `ASIA...` for temporary credentials).
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: String,
    /// The session token of temporary credentials, sent as `X-Amz-Security-Token`.
    pub session_token: Option<String>,
}

// Secrets end up in logs through `{:?}` more often than any other way: only the key ID, which
// AWS itself treats as an identifier, is shown.
impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// The parts of a request that are signed.
#[derive(Debug, Clone, Copy, Default)]
pub struct SignRequest<'a> {
    /// The method, `GET` or `POST`.
    pub method: &'a str,
    /// The `Host` header exactly as the request sends it (`ec2.eu-west-1.amazonaws.com`, or
    /// `host:port` for a non-default port).
    pub host: &'a str,
    /// The path, not yet percent-encoded (`/`); see [`canonical_uri`].
    pub path: &'a str,
    /// The query parameters, not yet percent-encoded, in any order; see [`canonical_query`].
    pub query: &'a [(String, String)],
    /// Further headers to sign and send (`Content-Type`, `X-Amz-Target`), in any order and
    /// case. Names that [`sign`] writes itself (`Host`, `X-Amz-Date`, ...) are ignored.
    pub headers: &'a [(&'a str, &'a str)],
    /// The body.
    pub body: &'a [u8],
    /// Whether to send and sign `X-Amz-Content-Sha256` (S3 needs it; EC2 and ECS do not).
    pub content_sha256_header: bool,
}

/// Signs `request` for `service` in `region` at `amz_date` (`YYYYMMDDTHHMMSSZ`, from
/// [`amz_date`]) and returns the headers to add to it: `X-Amz-Date`, `X-Amz-Security-Token`
/// when the credentials have a session token, `X-Amz-Content-Sha256` when asked for, and
/// `Authorization`.
///
/// The request must then be sent with exactly the signed host, path (as [`request_target`]
/// writes it), headers and body.
pub fn sign(
    request: &SignRequest<'_>,
    creds: &Credentials,
    region: &str,
    service: &str,
    amz_date: &str,
) -> Vec<(String, String)> {
    let payload_hash = hex(&Sha256::digest(request.body));
    let mut added = vec![("X-Amz-Date".to_owned(), amz_date.to_owned())];
    if let Some(token) = &creds.session_token {
        added.push(("X-Amz-Security-Token".to_owned(), token.clone()));
    }
    if request.content_sha256_header {
        added.push(("X-Amz-Content-Sha256".to_owned(), payload_hash.clone()));
    }
    let (creq, signed_headers) = canonical_request(request, &added, &payload_hash);
    let date = amz_date.get(..8).unwrap_or(amz_date);
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let to_sign = format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(creq.as_bytes()))
    );
    let key = signing_key(&creds.secret_access_key, date, region, service);
    let signature = hex(&hmac(&key, to_sign.as_bytes()));
    added.push((
        "Authorization".to_owned(),
        format!(
            "{ALGORITHM} Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
            creds.access_key_id
        ),
    ));
    added
}

/// The path and query as the request line must send them for the signature to hold:
/// [`canonical_uri`], then `?` and [`canonical_query`] when there is a query.
pub fn request_target(path: &str, query: &[(String, String)]) -> String {
    let mut target = canonical_uri(path);
    if !query.is_empty() {
        target.push('?');
        target.push_str(&canonical_query(query));
    }
    target
}

/// The path with each segment percent-encoded (everything but RFC 3986's unreserved
/// characters), `/` for an empty path.
pub fn canonical_uri(path: &str) -> String {
    if path.is_empty() {
        return "/".to_owned();
    }
    let mut out = String::with_capacity(path.len() + 1);
    if !path.starts_with('/') {
        out.push('/');
    }
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        encode_into(&mut out, segment);
    }
    out
}

/// The query parameters percent-encoded and sorted by encoded name, then encoded value (the
/// order SigV4 signs, and a valid query string as it is).
pub fn canonical_query(query: &[(String, String)]) -> String {
    let mut pairs: Vec<(String, String)> =
        query.iter().map(|(k, v)| (encode(k), encode(v))).collect();
    pairs.sort();
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

/// The canonical request and its signed-headers list.
fn canonical_request(
    request: &SignRequest<'_>,
    added: &[(String, String)],
    payload_hash: &str,
) -> (String, String) {
    let mut headers: Vec<(String, String)> = Vec::with_capacity(request.headers.len() + 4);
    headers.push(("host".to_owned(), normalize_value(request.host)));
    for (name, value) in added {
        headers.push((name.to_ascii_lowercase(), normalize_value(value)));
    }
    for (name, value) in request.headers {
        let name = name.trim().to_ascii_lowercase();
        if OWN_HEADERS.contains(&name.as_str()) {
            continue;
        }
        headers.push((name, normalize_value(value)));
    }
    // A stable sort keeps the values of a repeated header in the order they were given, which
    // is the order they are joined in.
    headers.sort_by(|a, b| a.0.cmp(&b.0));

    let mut canonical_headers = String::new();
    let mut signed_headers = String::new();
    let mut previous: Option<&str> = None;
    for (name, value) in &headers {
        if previous == Some(name.as_str()) {
            canonical_headers.pop(); // the newline: the value joins the line before
            canonical_headers.push(',');
        } else {
            if previous.is_some() {
                signed_headers.push(';');
            }
            signed_headers.push_str(name);
            canonical_headers.push_str(name);
            canonical_headers.push(':');
        }
        canonical_headers.push_str(value);
        canonical_headers.push('\n');
        previous = Some(name);
    }

    let creq = format!(
        "{}\n{}\n{}\n{canonical_headers}\n{signed_headers}\n{payload_hash}",
        request.method,
        canonical_uri(request.path),
        canonical_query(request.query),
    );
    (creq, signed_headers)
}

/// A header value trimmed, with each inner run of spaces and tabs written as one space.
fn normalize_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for word in value.split([' ', '\t']).filter(|w| !w.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// The key derived from the secret for one day, region and service.
fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k = hmac(&k, region.as_bytes());
    let k = hmac(&k, service.as_bytes());
    hmac(&k, b"aws4_request")
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut m = <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(data);
    m.finalize().into_bytes().into()
}

/// Lower-case hexadecimal.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}

/// RFC 3986 percent-encoding with upper-case digits, everything but the unreserved set
/// (`A-Z a-z 0-9 - . _ ~`) encoded, as SigV4 requires (so a space is `%20`, never `+`).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    encode_into(&mut out, s);
    out
}

fn encode_into(out: &mut String, s: &str) {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(DIGITS[usize::from(b >> 4)]));
            out.push(char::from(DIGITS[usize::from(b & 15)]));
        }
    }
}

/// The latest time [`amz_date`] writes: 9999-12-31T23:59:59Z, as the format has four digits
/// for the year.
const MAX_UNIX_SECS: u64 = 253_402_300_799;

/// Writes a Unix time (the time since 1970-01-01T00:00:00Z) as SigV4's `X-Amz-Date`,
/// `YYYYMMDDTHHMMSSZ` in UTC; fractions of a second are dropped and times after the year 9999
/// are written as its last second.
pub fn amz_date(since_epoch: Duration) -> String {
    let secs = since_epoch.as_secs().min(MAX_UNIX_SECS);
    // Both fit an i64 with room to spare after the clamp above.
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// The proleptic Gregorian date of a day number (days since 1970-01-01), after Howard
/// Hinnant's `civil_from_days`: a year is counted from March so that the leap day is last.
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days.saturating_add(719_468);
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March first
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32; // [1, 31]
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32; // [1, 12]
    let y = era.saturating_mul(400).saturating_add(yoe) + i64::from(m <= 2);
    (y, m, d)
}

/// The day number (days since 1970-01-01) of a proleptic Gregorian date, the inverse of
/// [`civil_from_days`]; `m` is 1 to 12 and `d` 1 to 31, checked by the caller.
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400); // [0, 399]
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 }; // [0, 11]
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATE: &str = "20150830T123600Z";
    const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn suite_creds() -> Credentials {
        Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
        }
    }

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// Checks one vector of AWS's SigV4 test suite (region us-east-1, service `service`):
    /// the canonical request and the `Authorization` header.
    fn check(request: SignRequest<'_>, creds: &Credentials, creq: &str, authz: &str) {
        let headers = sign(&request, creds, "us-east-1", "service", DATE);
        let mut added = vec![("X-Amz-Date".to_owned(), DATE.to_owned())];
        if let Some(t) = &creds.session_token {
            added.push(("X-Amz-Security-Token".to_owned(), t.clone()));
        }
        let hash = hex(&Sha256::digest(request.body));
        assert_eq!(canonical_request(&request, &added, &hash).0, creq);
        let got = headers
            .iter()
            .find(|(k, _)| k == "Authorization")
            .map(|(_, v)| v.as_str());
        assert_eq!(got, Some(authz));
        assert_eq!(headers[0], ("X-Amz-Date".to_owned(), DATE.to_owned()));
    }

    fn get<'a>(
        query: &'a [(String, String)],
        headers: &'a [(&'a str, &'a str)],
    ) -> SignRequest<'a> {
        SignRequest {
            method: "GET",
            host: "example.amazonaws.com",
            path: "/",
            query,
            headers,
            ..SignRequest::default()
        }
    }

    #[test]
    fn get_vanilla() {
        check(
            get(&[], &[]),
            &suite_creds(),
            &format!(
                "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:{DATE}\n\nhost;x-amz-date\n{EMPTY_SHA256}"
            ),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        );
    }

    #[test]
    fn get_vanilla_query_order_key_case() {
        let query = q(&[("Param2", "value2"), ("Param1", "value1")]);
        check(
            get(&query, &[]),
            &suite_creds(),
            &format!(
                "GET\n/\nParam1=value1&Param2=value2\nhost:example.amazonaws.com\nx-amz-date:{DATE}\n\nhost;x-amz-date\n{EMPTY_SHA256}"
            ),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
        );
    }

    #[test]
    fn get_vanilla_query_order_key_and_value() {
        let query = q(&[("Param1", "value2"), ("Param1", "Value1")]);
        check(
            get(&query, &[]),
            &suite_creds(),
            &format!(
                "GET\n/\nParam1=Value1&Param1=value2\nhost:example.amazonaws.com\nx-amz-date:{DATE}\n\nhost;x-amz-date\n{EMPTY_SHA256}"
            ),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=eedbc4e291e521cf13422ffca22be7d2eb8146eecf653089df300a15b2382bd1",
        );
    }

    #[test]
    fn get_vanilla_utf8_query_and_unreserved() {
        let query = q(&[("\u{1234}", "bar")]);
        check(
            get(&query, &[]),
            &suite_creds(),
            &format!(
                "GET\n/\n%E1%88%B4=bar\nhost:example.amazonaws.com\nx-amz-date:{DATE}\n\nhost;x-amz-date\n{EMPTY_SHA256}"
            ),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04",
        );
        let unreserved = "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        let path = format!("/{unreserved}");
        check(
            SignRequest {
                path: &path,
                ..get(&[], &[])
            },
            &suite_creds(),
            &format!(
                "GET\n/{unreserved}\n\nhost:example.amazonaws.com\nx-amz-date:{DATE}\n\nhost;x-amz-date\n{EMPTY_SHA256}"
            ),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f",
        );
    }

    #[test]
    fn get_header_value_trim() {
        check(
            get(
                &[],
                &[("My-Header1", " value1"), ("My-Header2", " \"a   b   c\"")],
            ),
            &suite_creds(),
            &format!(
                "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value1\nmy-header2:\"a b c\"\nx-amz-date:{DATE}\n\nhost;my-header1;my-header2;x-amz-date\n{EMPTY_SHA256}"
            ),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;my-header1;my-header2;x-amz-date, Signature=acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736",
        );
    }

    #[test]
    fn get_header_key_duplicate_joins_values_in_order() {
        check(
            get(
                &[],
                &[
                    ("My-Header1", "value2"),
                    ("My-Header1", "value2"),
                    ("My-Header1", "value1"),
                ],
            ),
            &suite_creds(),
            &format!(
                "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value2,value2,value1\nx-amz-date:{DATE}\n\nhost;my-header1;x-amz-date\n{EMPTY_SHA256}"
            ),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;my-header1;x-amz-date, Signature=c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea",
        );
    }

    #[test]
    fn post_x_www_form_urlencoded() {
        // The suite's .creq file for this case also lists content-length, but its .authz
        // signs only the three headers below; the signature is the one AWS checks against.
        let body = b"Param1=value1";
        check(
            SignRequest {
                method: "POST",
                body,
                ..get(
                    &[],
                    &[("Content-Type", "application/x-www-form-urlencoded")],
                )
            },
            &suite_creds(),
            "POST\n/\n\ncontent-type:application/x-www-form-urlencoded\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\ncontent-type;host;x-amz-date\n9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a",
        );
    }

    #[test]
    fn post_sts_header_before_signs_the_session_token() {
        let token = "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==";
        let creds = Credentials {
            session_token: Some(token.into()),
            ..suite_creds()
        };
        check(
            SignRequest {
                method: "POST",
                ..get(&[], &[])
            },
            &creds,
            &format!(
                "POST\n/\n\nhost:example.amazonaws.com\nx-amz-date:{DATE}\nx-amz-security-token:{token}\n\nhost;x-amz-date;x-amz-security-token\n{EMPTY_SHA256}"
            ),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date;x-amz-security-token, Signature=85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead",
        );
        let headers = sign(
            &SignRequest {
                method: "POST",
                ..get(&[], &[])
            },
            &creds,
            "us-east-1",
            "service",
            DATE,
        );
        assert_eq!(
            headers[1],
            ("X-Amz-Security-Token".to_owned(), token.to_owned())
        );
    }

    /// The IAM guide's "example signature calculation": `GET
    /// https://iam.amazonaws.com/?Action=ListUsers&Version=2010-05-08`.
    #[test]
    fn iam_list_users_example() {
        let query = q(&[("Version", "2010-05-08"), ("Action", "ListUsers")]);
        let request = SignRequest {
            method: "GET",
            host: "iam.amazonaws.com",
            path: "/",
            query: &query,
            headers: &[(
                "Content-Type",
                "application/x-www-form-urlencoded; charset=utf-8",
            )],
            ..SignRequest::default()
        };
        let headers = sign(&request, &suite_creds(), "us-east-1", "iam", DATE);
        assert_eq!(
            headers.last().map(|(_, v)| v.as_str()),
            Some(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
            )
        );
        assert_eq!(
            request_target("/", &query),
            "/?Action=ListUsers&Version=2010-05-08"
        );
    }

    #[test]
    fn own_headers_from_the_caller_are_ignored_and_content_hash_is_optional() {
        let plain = sign(&get(&[], &[]), &suite_creds(), "us-east-1", "service", DATE);
        let doubled = sign(
            &get(
                &[],
                &[("HOST", "evil.example"), ("x-amz-date", "19700101T000000Z")],
            ),
            &suite_creds(),
            "us-east-1",
            "service",
            DATE,
        );
        assert_eq!(plain, doubled);
        let with_hash = sign(
            &SignRequest {
                content_sha256_header: true,
                ..get(&[], &[])
            },
            &suite_creds(),
            "us-east-1",
            "service",
            DATE,
        );
        assert_eq!(
            with_hash[1],
            ("X-Amz-Content-Sha256".to_owned(), EMPTY_SHA256.to_owned())
        );
        assert!(
            with_hash[2]
                .1
                .contains("SignedHeaders=host;x-amz-content-sha256;x-amz-date,")
        );
    }

    #[test]
    fn uri_and_query_encoding() {
        assert_eq!(canonical_uri(""), "/");
        assert_eq!(canonical_uri("/example space/"), "/example%20space/");
        assert_eq!(canonical_uri("a/b+c"), "/a/b%2Bc");
        assert_eq!(
            canonical_query(&q(&[("b", "x y"), ("a", ""), ("a=", "/")])),
            "a=&a%3D=%2F&b=x%20y"
        );
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let creds = Credentials {
            session_token: Some("TOKENSECRET".into()),
            ..suite_creds()
        };
        let shown = format!("{creds:?}");
        assert!(shown.contains("AKIDEXAMPLE"));
        assert!(!shown.contains("EXAMPLEKEY") && !shown.contains("TOKENSECRET"));
    }

    #[test]
    fn amz_dates() {
        assert_eq!(amz_date(Duration::ZERO), "19700101T000000Z");
        assert_eq!(amz_date(Duration::from_secs(1_440_938_160)), DATE);
        // 2000-02-29 (a leap day of a century divisible by 400) and the day after.
        assert_eq!(
            amz_date(Duration::from_secs(951_782_400)),
            "20000229T000000Z"
        );
        assert_eq!(
            amz_date(Duration::from_secs(951_868_799)),
            "20000229T235959Z"
        );
        // 2100 is not a leap year: February's last day is the 28th.
        assert_eq!(
            amz_date(Duration::from_secs(4_107_542_399)),
            "21000228T235959Z"
        );
        assert_eq!(
            amz_date(Duration::from_secs(4_107_542_400)),
            "21000301T000000Z"
        );
        assert_eq!(
            amz_date(Duration::from_millis(1_440_938_160_999)),
            DATE,
            "fractions are dropped"
        );
        assert_eq!(amz_date(Duration::MAX), "99991231T235959Z");
    }

    #[test]
    fn calendar_round_trips() {
        for days in (-800_000..3_000_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert!((1..=12).contains(&m) && (1..=31).contains(&d));
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }
}
