//! Temporary AWS credentials as the instance metadata service
//! (`/latest/meta-data/iam/security-credentials/<role>`) and the container credentials
//! endpoint (ECS task roles, EKS Pod Identity) hand them out: one JSON object with
//! `AccessKeyId`, `SecretAccessKey`, `Token` and `Expiration`.

use std::borrow::Cow;

use serde::Deserialize;

use super::sigv4::{Credentials, days_from_civil};

/// The most bytes a credentials document may have (real ones are about 1.5 KiB).
pub const MAX_BODY: usize = 64 * 1024;

/// The container credentials endpoint that `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` is a
/// path on (ECS task roles).
pub const CONTAINER_CREDENTIALS_HOST: &str = "169.254.170.2";

/// Credentials with the time they stop working.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemporaryCredentials {
    /// The key, secret and session token.
    pub credentials: Credentials,
    /// When they expire, as a Unix time in seconds; `None` when the document does not say.
    pub expires_at: Option<u64>,
}

/// Why a credentials document was refused. Text from the document is escaped and shortened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialsError {
    /// The document is larger than [`MAX_BODY`].
    #[error("credentials document larger than {MAX_BODY} bytes")]
    TooLarge,
    /// The document is not the JSON object expected (serde_json's message, with the line and
    /// column).
    #[error("malformed credentials document: {0}")]
    Json(String),
    /// The metadata service said it has no credentials to give (its `Code` is not `Success`).
    #[error("the metadata service answered {code}: {message}")]
    NotSuccess {
        /// The `Code`.
        code: String,
        /// The `Message`, if any.
        message: String,
    },
    /// A required field is missing or empty.
    #[error("credentials document without {0}")]
    Missing(&'static str),
    /// `Expiration` is not an RFC 3339 time.
    #[error("credentials document with an unreadable Expiration {0:?}")]
    BadExpiration(String),
}

#[derive(Deserialize)]
struct Document<'a> {
    #[serde(rename = "Code", borrow, default)]
    code: Option<Cow<'a, str>>,
    #[serde(rename = "Message", borrow, default)]
    message: Option<Cow<'a, str>>,
    #[serde(rename = "AccessKeyId", borrow, default)]
    access_key_id: Option<Cow<'a, str>>,
    #[serde(rename = "SecretAccessKey", borrow, default)]
    secret_access_key: Option<Cow<'a, str>>,
    #[serde(rename = "Token", borrow, default)]
    token: Option<Cow<'a, str>>,
    #[serde(rename = "Expiration", borrow, default)]
    expiration: Option<Cow<'a, str>>,
}

/// Reads a credentials document from the instance metadata service or a container
/// credentials endpoint.
pub fn parse(body: &[u8]) -> Result<TemporaryCredentials, CredentialsError> {
    if body.len() > MAX_BODY {
        return Err(CredentialsError::TooLarge);
    }
    let doc: Document<'_> =
        serde_json::from_slice(body).map_err(|e| CredentialsError::Json(e.to_string()))?;
    if let Some(code) = doc.code.as_deref().filter(|c| *c != "Success") {
        return Err(CredentialsError::NotSuccess {
            code: excerpt(code, 100),
            message: excerpt(doc.message.as_deref().unwrap_or(""), 300),
        });
    }
    let non_empty = |v: Option<Cow<'_, str>>, what| match v {
        Some(s) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
        _ => Err(CredentialsError::Missing(what)),
    };
    let access_key_id = non_empty(doc.access_key_id, "AccessKeyId")?;
    let secret_access_key = non_empty(doc.secret_access_key, "SecretAccessKey")?;
    let session_token = non_empty(doc.token, "Token").ok();
    let expires_at = match doc.expiration.as_deref() {
        None => None,
        Some(e) => Some(
            parse_timestamp(e).ok_or_else(|| CredentialsError::BadExpiration(excerpt(e, 60)))?,
        ),
    };
    Ok(TemporaryCredentials {
        credentials: Credentials {
            access_key_id,
            secret_access_key,
            session_token,
        },
        expires_at,
    })
}

/// Reads an RFC 3339 time (`2026-12-01T12:00:00Z`, with an optional fraction of a second,
/// which is dropped, and `Z` or a `+hh:mm`/`-hh:mm` offset) as a Unix time in seconds;
/// `None` if it is malformed or before 1970.
pub fn parse_timestamp(s: &str) -> Option<u64> {
    let b = s.trim().as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<u32> {
        let digits = b.get(range)?;
        let mut n = 0u32;
        for d in digits {
            if !d.is_ascii_digit() {
                return None;
            }
            n = n * 10 + u32::from(d - b'0');
        }
        Some(n)
    };
    let sep = |i: usize, allowed: &[u8]| b.get(i).is_some_and(|c| allowed.contains(c));
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt ") && sep(13, b":") && sep(16, b":")) {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || d == 0 || d > days_in_month(y, mo) || h > 23 || mi > 59 {
        return None;
    }
    // 60 is a leap second.
    if sec > 60 {
        return None;
    }
    let mut rest = b.get(19..)?;
    if let Some((b'.', frac)) = rest.split_first() {
        let digits = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        rest = &frac[digits..];
    }
    let offset: i64 = match rest {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let two = |a: u8, b: u8| -> Option<i64> {
                (a.is_ascii_digit() && b.is_ascii_digit())
                    .then(|| i64::from(a - b'0') * 10 + i64::from(b - b'0'))
            };
            let (oh, om) = (two(*h1, *h2)?, two(*m1, *m2)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let secs = oh * 3600 + om * 60;
            if *sign == b'+' { secs } else { -secs }
        }
        _ => return None,
    };
    let days = days_from_civil(i64::from(y), mo, d);
    let t = days * 86_400 + i64::from(h) * 3600 + i64::from(mi) * 60 + i64::from(sec) - offset;
    u64::try_from(t).ok()
}

fn days_in_month(y: u32, m: u32) -> u32 {
    match m {
        2 if y.is_multiple_of(4) && (!y.is_multiple_of(100) || y.is_multiple_of(400)) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// The request for a container credentials endpoint: `host` is [`CONTAINER_CREDENTIALS_HOST`]
/// and `path` the value of `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`, or both come from
/// `AWS_CONTAINER_CREDENTIALS_FULL_URI` (see [`split_full_uri`]); `authorization` is
/// `AWS_CONTAINER_AUTHORIZATION_TOKEN` (or the content of the file
/// `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` names), which EKS Pod Identity requires.
pub fn container_credentials_request(
    host: &str,
    path: &str,
    authorization: Option<&str>,
) -> Vec<u8> {
    let mut headers = vec![("Accept", "application/json")];
    if let Some(token) = authorization {
        headers.push(("Authorization", token.trim()));
    }
    super::http::get(host, path, &headers)
}

/// `AWS_CONTAINER_CREDENTIALS_FULL_URI` taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FullUri {
    /// Whether the scheme is `https`.
    pub tls: bool,
    /// The host name or address, without brackets around an IPv6 address.
    pub host: String,
    /// The port, explicit or the scheme's.
    pub port: u16,
    /// The `Host` header to send (`host`, or `host:port` for a non-default port).
    pub host_header: String,
    /// The path and query, `/` at least.
    pub path: String,
}

/// Takes apart an `http://` or `https://` URI as `AWS_CONTAINER_CREDENTIALS_FULL_URI` holds
/// it (`http://169.254.170.23/v1/credentials`); `None` for another scheme or a malformed
/// authority. The SDKs accept plain `http` only for loopback and the link-local endpoints:
/// that check is the caller's, once the host is resolved.
pub fn split_full_uri(uri: &str) -> Option<FullUri> {
    let uri = uri.trim();
    let (tls, rest) = if let Some(r) = strip_prefix_ignore_case(uri, "http://") {
        (false, r)
    } else {
        (true, strip_prefix_ignore_case(uri, "https://")?)
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.contains('@') || authority.is_empty() {
        return None;
    }
    let default_port = if tls { 443 } else { 80 };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']')?;
        match after {
            "" => (h, default_port),
            p => (h, p.strip_prefix(':')?.parse().ok()?),
        }
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, p.parse().ok()?),
            None => (authority, default_port),
        }
    };
    if host.is_empty() {
        return None;
    }
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_owned()
    };
    let bracketed = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    let host_header = if port == default_port {
        bracketed
    } else {
        format!("{bracketed}:{port}")
    };
    Some(FullUri {
        tls,
        host: host.to_owned(),
        port,
        host_header,
        path,
    })
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// Text from a response, escaped for logs and events and cut to `max` characters.
pub(crate) fn excerpt(text: &str, max: usize) -> String {
    let text = text.trim();
    let cut = match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    };
    crate::reason::escape(&cut).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_metadata_document() {
        let body = br#"{
  "Code" : "Success",
  "LastUpdated" : "2026-11-30T11:54:50Z",
  "Type" : "AWS-HMAC",
  "AccessKeyId" : "ASIAIOSFODNN7EXAMPLE",
  "SecretAccessKey" : "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
  "Token" : "IQoJb3JpZ2luX2VjEXAMPLE==",
  "Expiration" : "2026-12-01T12:00:00Z"
}"#;
        let c = parse(body).unwrap();
        assert_eq!(c.credentials.access_key_id, "ASIAIOSFODNN7EXAMPLE");
        assert_eq!(
            c.credentials.secret_access_key,
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
        );
        assert_eq!(
            c.credentials.session_token.as_deref(),
            Some("IQoJb3JpZ2luX2VjEXAMPLE==")
        );
        // date -u -d 2026-12-01T12:00:00Z +%s
        assert_eq!(c.expires_at, Some(1_796_126_400));
    }

    #[test]
    fn container_document_has_no_code() {
        let body = br#"{"RoleArn":"arn:aws:iam::123456789012:role/app","AccessKeyId":"ASIAX","SecretAccessKey":"s","Token":"t","Expiration":"2026-12-01T12:00:00.123+01:00"}"#;
        let c = parse(body).unwrap();
        assert_eq!(c.expires_at, Some(1_796_126_400 - 3600));
        assert_eq!(c.credentials.session_token.as_deref(), Some("t"));
    }

    #[test]
    fn refusals() {
        assert!(matches!(
            parse(br#"{"Code":"AssumeRoleUnauthorizedAccess","Message":"no\u001b[31m"}"#),
            Err(CredentialsError::NotSuccess { code, message })
                if code == "AssumeRoleUnauthorizedAccess" && !message.contains('\u{1b}')
        ));
        assert_eq!(
            parse(br#"{"AccessKeyId":"","SecretAccessKey":"s"}"#),
            Err(CredentialsError::Missing("AccessKeyId"))
        );
        assert_eq!(
            parse(br#"{"AccessKeyId":"a"}"#),
            Err(CredentialsError::Missing("SecretAccessKey"))
        );
        assert!(matches!(
            parse(br#"{"AccessKeyId":"a","SecretAccessKey":"s","Expiration":"tomorrow"}"#),
            Err(CredentialsError::BadExpiration(_))
        ));
        assert!(matches!(parse(b"<html>"), Err(CredentialsError::Json(m)) if m.contains("line 1")));
        assert!(parse(b"[]").is_err());
        assert!(parse(b"null").is_err());
        assert_eq!(
            parse(&vec![b' '; MAX_BODY + 1]),
            Err(CredentialsError::TooLarge)
        );
        let long_term = parse(br#"{"AccessKeyId":"a","SecretAccessKey":"s"}"#).unwrap();
        assert_eq!(long_term.credentials.session_token, None);
        assert_eq!(long_term.expires_at, None);
    }

    #[test]
    fn timestamps() {
        assert_eq!(parse_timestamp("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_timestamp("2015-08-30T12:36:00Z"), Some(1_440_938_160));
        assert_eq!(parse_timestamp("2000-02-29T00:00:00Z"), Some(951_782_400));
        assert_eq!(
            parse_timestamp("2015-08-30T12:36:00-00:30"),
            Some(1_440_939_960)
        );
        assert_eq!(
            parse_timestamp("2015-08-30 12:36:00.5Z"),
            Some(1_440_938_160)
        );
        for bad in [
            "",
            "2015-08-30",
            "2015-08-30T12:36:00",
            "2015-02-29T00:00:00Z",
            "2100-02-29T00:00:00Z",
            "2015-13-01T00:00:00Z",
            "2015-08-30T24:00:00Z",
            "2015-08-30T12:36:00.Z",
            "2015-08-30T12:36:00+0100",
            "1969-12-31T23:59:59Z",
            "１９７０-01-01T00:00:00Z",
            "2015-08-30T12:36:00ZZ",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
    }

    #[test]
    fn container_requests_and_full_uris() {
        let r = container_credentials_request(
            CONTAINER_CREDENTIALS_HOST,
            "/v2/credentials/abc",
            Some("tok\n"),
        );
        let text = String::from_utf8(r).unwrap();
        assert!(text.starts_with("GET /v2/credentials/abc HTTP/1.1\r\nHost: 169.254.170.2\r\n"));
        assert!(text.contains("\r\nAuthorization: tok\r\n"));

        let u = split_full_uri("http://169.254.170.23/v1/credentials").unwrap();
        assert_eq!(
            (
                u.tls,
                u.host.as_str(),
                u.port,
                u.host_header.as_str(),
                u.path.as_str()
            ),
            (
                false,
                "169.254.170.23",
                80,
                "169.254.170.23",
                "/v1/credentials"
            )
        );
        let u = split_full_uri("HTTPS://[fd00:ec2::23]:8443?x=1").unwrap();
        assert_eq!(
            (
                u.tls,
                u.host.as_str(),
                u.port,
                u.host_header.as_str(),
                u.path.as_str()
            ),
            (true, "fd00:ec2::23", 8443, "[fd00:ec2::23]:8443", "/?x=1")
        );
        for bad in [
            "ftp://x/",
            "http://",
            "http://u@h/",
            "http://h:99999/",
            "http://[::1/",
        ] {
            assert_eq!(split_full_uri(bad), None, "{bad}");
        }
    }
}
