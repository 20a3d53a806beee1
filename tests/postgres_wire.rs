//! The PostgreSQL codec (`muster_core::proto::postgres`) against a real PostgreSQL server
//! (Debian's `postgresql`, which `scripts/test` installs), over plain blocking sockets: SCRAM
//! and MD5 logins, LISTEN/NOTIFY with muster's payloads, a wrong password, TLS with
//! verify-full, and a restart ending the sessions.
#![allow(clippy::unwrap_used)] // tests unwrap what they set up themselves

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use muster::core::NodeName;
use muster::core::proto::postgres::{
    self as pg, Backend, Decoder, Format, Kind, PayloadError, PayloadKey, SCRAM_SHA_256,
    ScramClient, ServerMessage, SslResponse, TransactionStatus,
};

mod support;
use support::postgres::{
    DATABASE, MD5_PASSWORD, MD5_USER, Options, Postgres, SCRAM_PASSWORD, SCRAM_USER,
};

trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// How the server had this client authenticate.
#[derive(Debug, PartialEq, Eq)]
enum Auth {
    Scram,
    Md5,
}

/// A session driven by the codec alone, the way a strategy will drive it.
struct Session {
    stream: Box<dyn Stream>,
    decoder: Decoder,
    pid: i32,
    auth: Auth,
    /// Notifications that arrived inside a query's answer.
    pending: std::collections::VecDeque<(i32, String, String)>,
}

fn tcp(pg: &Postgres) -> TcpStream {
    let s = TcpStream::connect(pg.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Sends SSLRequest and returns the server's judged answer.
fn ssl_request(s: &mut TcpStream) -> SslResponse {
    s.write_all(&pg::SSL_REQUEST).unwrap();
    let mut b = [0u8; 16];
    let n = s.read(&mut b).unwrap();
    pg::ssl_response(&b[..n]).unwrap()
}

fn read_message(stream: &mut dyn Stream, decoder: &mut Decoder) -> Option<Backend> {
    loop {
        if let Some(m) = decoder.next_message().unwrap() {
            return Some(m);
        }
        let mut buf = [0u8; 1024];
        match stream.read(&mut buf) {
            Ok(0) => return None,
            Ok(n) => decoder.push(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return None,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
            Err(e) => panic!("reading from PostgreSQL: {e}"),
        }
    }
}

/// Logs in as `user`; the server's error when it refuses.
fn login(
    mut stream: Box<dyn Stream>,
    user: &str,
    password: &str,
) -> Result<Session, ServerMessage> {
    let mut out = Vec::new();
    pg::startup(
        &mut out,
        user,
        Some(DATABASE),
        &[("application_name", "muster-test")],
    )
    .unwrap();
    stream.write_all(&out).unwrap();
    let mut decoder = Decoder::new();
    let mut scram: Option<ScramClient> = None;
    let mut auth = None;
    let mut pid = None;
    loop {
        let msg = read_message(&mut *stream, &mut decoder).expect("server closed during login");
        let mut out = Vec::new();
        match msg {
            Backend::AuthenticationSasl { mechanisms } => {
                assert!(
                    mechanisms.iter().any(|m| m == SCRAM_SHA_256),
                    "{mechanisms:?}"
                );
                let mut c = ScramClient::new(password, &pg::client_nonce(&[7; 18])).unwrap();
                pg::sasl_initial_response(&mut out, SCRAM_SHA_256, &c.client_first()).unwrap();
                scram = Some(c);
                auth = Some(Auth::Scram);
            }
            Backend::AuthenticationSaslContinue { data } => {
                let c = scram.as_mut().expect("SASLContinue before SASL");
                let reply = c.handle_server_first(&data).unwrap();
                pg::sasl_response(&mut out, &reply).unwrap();
            }
            Backend::AuthenticationSaslFinal { data } => {
                scram.as_mut().unwrap().handle_server_final(&data).unwrap();
            }
            Backend::AuthenticationMd5Password { salt } => {
                pg::password_md5(&mut out, user, password, salt).unwrap();
                auth = Some(Auth::Md5);
            }
            Backend::AuthenticationOk => {
                if let Some(c) = &scram {
                    assert!(
                        c.is_verified(),
                        "AuthenticationOk before the server's proof"
                    );
                }
            }
            Backend::BackendKeyData { pid: p, .. } => pid = Some(p),
            Backend::ParameterStatus { .. } | Backend::NoticeResponse(_) => {}
            Backend::ReadyForQuery { status } => {
                assert_eq!(status, TransactionStatus::Idle);
                return Ok(Session {
                    stream,
                    decoder,
                    pid: pid.expect("no BackendKeyData"),
                    auth: auth.expect("no authentication asked"),
                    pending: Default::default(),
                });
            }
            Backend::ErrorResponse(e) => return Err(e),
            other => panic!("unexpected during login: {other:?}"),
        }
        if !out.is_empty() {
            stream.write_all(&out).unwrap();
        }
    }
}

impl Session {
    fn recv(&mut self) -> Option<Backend> {
        read_message(&mut *self.stream, &mut self.decoder)
    }

    /// Runs `sql`; every message up to its ReadyForQuery but notifications, which are kept
    /// for [`notification`](Session::notification): they may come inside the answer (a
    /// session's own NOTIFY comes back before its ReadyForQuery).
    fn query(&mut self, sql: &str) -> Vec<Backend> {
        let mut out = Vec::new();
        pg::query(&mut out, sql).unwrap();
        self.stream.write_all(&out).unwrap();
        let mut got = Vec::new();
        loop {
            match self.recv().expect("closed during a query") {
                Backend::ReadyForQuery { .. } => return got,
                Backend::NotificationResponse {
                    pid,
                    channel,
                    payload,
                } => self.pending.push_back((pid, channel, payload)),
                m => got.push(m),
            }
        }
    }

    /// The next notification, skipping anything else.
    fn notification(&mut self) -> (i32, String, String) {
        if let Some(n) = self.pending.pop_front() {
            return n;
        }
        loop {
            match self.recv().expect("closed waiting for a notification") {
                Backend::NotificationResponse {
                    pid,
                    channel,
                    payload,
                } => return (pid, channel, payload),
                Backend::NoticeResponse(_) | Backend::ParameterStatus { .. } => {}
                other => panic!("waiting for a notification, got {other:?}"),
            }
        }
    }

    fn terminate(mut self) {
        let mut out = Vec::new();
        pg::terminate(&mut out);
        self.stream.write_all(&out).unwrap();
        assert_eq!(self.recv(), None, "the server closes after Terminate");
    }
}

fn complete(msgs: &[Backend], tag: &str) {
    assert_eq!(
        msgs,
        &[Backend::CommandComplete { tag: tag.into() }],
        "answer to {tag}"
    );
}

#[test]
fn scram_and_md5_logins_then_listen_and_notify() {
    let pg = Postgres::start();
    // No TLS here: the server says so, in one byte, and the same connection goes on in clear.
    let mut s = tcp(&pg);
    assert_eq!(ssl_request(&mut s), SslResponse::Refused);
    let mut listener = login(Box::new(s), SCRAM_USER, SCRAM_PASSWORD).unwrap();
    assert_eq!(listener.auth, Auth::Scram);
    let mut sender = login(Box::new(tcp(&pg)), MD5_USER, MD5_PASSWORD).unwrap();
    assert_eq!(sender.auth, Auth::Md5);

    // A channel name that needs its quotes: capitals, a space and a quote.
    let channel = "muster \"Test\" chan";
    complete(
        &listener.query(&pg::listen_query(channel).unwrap()),
        "LISTEN",
    );

    let key = PayloadKey::new(b"topology secret");
    let me: NodeName = "sender@10.0.0.7".parse().unwrap();
    let signed =
        pg::encode_signed_payload(&key, channel, Kind::Sync, &me, 1_700_000_000_000, [9; 8]);
    complete(
        &sender.query(&pg::notify_query(channel, &signed).unwrap()),
        "NOTIFY",
    );
    let (pid, ch, payload) = listener.notification();
    assert_eq!((pid, ch.as_str()), (sender.pid, channel));
    let notice = pg::decode_payload(&payload, &ch, Some(&key)).unwrap();
    assert_eq!(
        (notice.kind, &notice.node, notice.format),
        (Kind::Sync, &me, Format::Signed)
    );
    assert_eq!(notice.stamp.unwrap().unix_ms, 1_700_000_000_000);

    // The listener hears its own notifications too, with its own pid.
    let plain = pg::encode_payload(Kind::Heartbeat, &me);
    complete(
        &listener.query(&pg::notify_query(channel, &plain).unwrap()),
        "NOTIFY",
    );
    let (pid, _, payload) = listener.notification();
    assert_eq!(pid, listener.pid);
    assert_eq!(
        pg::decode_payload(&payload, channel, None).unwrap().kind,
        Kind::Heartbeat
    );

    // A forged notification from anyone who can reach the database (psql here): a topology
    // with a secret refuses it; a bare node name is libcluster_postgres' heartbeat.
    pg.psql(&format!(
        "NOTIFY {}, 'muster1 bye sender@10.0.0.7'",
        pg::quote_identifier(channel).unwrap()
    ));
    let (_, _, payload) = listener.notification();
    assert_eq!(
        pg::decode_payload(&payload, channel, Some(&key)),
        Err(PayloadError::Unsigned)
    );
    pg.psql(&format!(
        "SELECT pg_notify({}, 'app@10.0.0.9')",
        pg::quote_literal(channel).unwrap()
    ));
    let (_, _, payload) = listener.notification();
    let notice = pg::decode_payload(&payload, channel, None).unwrap();
    assert_eq!(notice.format, Format::Libcluster);
    assert_eq!(notice.node.as_str(), "app@10.0.0.9");

    // Quoting survives hostile text: the payload comes back exactly as sent.
    let nasty = "it's \\'; DROP TABLE x; --";
    complete(
        &sender.query(&pg::notify_query(channel, nasty).unwrap()),
        "NOTIFY",
    );
    assert_eq!(listener.notification().2, nasty);

    listener.terminate();
    sender.terminate();
}

#[test]
fn wrong_passwords_are_28p01() {
    let pg = Postgres::start();
    for (user, auth) in [(SCRAM_USER, "SCRAM"), (MD5_USER, "MD5")] {
        let Err(e) = login(Box::new(tcp(&pg)), user, "not the password") else {
            panic!("{auth} login with a wrong password succeeded");
        };
        assert_eq!(e.code, "28P01", "{auth}: {e}");
        assert!(e.is_fatal());
        assert!(e.to_string().starts_with("FATAL 28P01: "), "{e}");
    }
}

#[test]
fn tls_with_verify_full() {
    let pg = Postgres::start_with(Options {
        tls: true,
        hba: vec![format!("hostnossl all {SCRAM_USER} 127.0.0.1/32 reject")],
    });
    // In clear text this role is turned away by pg_hba.conf (28000).
    let mut s = tcp(&pg);
    assert_eq!(ssl_request(&mut s), SslResponse::Accepted);
    drop(s);
    let e = login(Box::new(tcp(&pg)), SCRAM_USER, SCRAM_PASSWORD)
        .err()
        .unwrap();
    assert_eq!(e.code, "28000", "{e}");

    let mut roots = rustls::RootCertStore::empty();
    use rustls_pki_types::pem::PemObject;
    let ca = rustls_pki_types::CertificateDer::from_pem_file(pg.ca_cert().unwrap()).unwrap();
    roots.add(ca).unwrap();
    let config = Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    for name in ["localhost", "127.0.0.1"] {
        let mut s = tcp(&pg);
        assert_eq!(ssl_request(&mut s), SslResponse::Accepted);
        let server_name = rustls_pki_types::ServerName::try_from(name.to_owned()).unwrap();
        let conn = rustls::ClientConnection::new(config.clone(), server_name).unwrap();
        let tls = rustls::StreamOwned::new(conn, s);
        let mut session = login(Box::new(tls), SCRAM_USER, SCRAM_PASSWORD).unwrap();
        complete(&session.query(&pg::listen_query("tls").unwrap()), "LISTEN");
        complete(
            &session.query(&pg::notify_query("tls", "over TLS").unwrap()),
            "NOTIFY",
        );
        assert_eq!(session.notification().2, "over TLS");
    }

    // A name the certificate does not carry fails verification.
    let mut s = tcp(&pg);
    assert_eq!(ssl_request(&mut s), SslResponse::Accepted);
    let server_name = rustls_pki_types::ServerName::try_from("elsewhere.test").unwrap();
    let conn = rustls::ClientConnection::new(config, server_name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, s);
    let mut out = Vec::new();
    pg::startup(&mut out, SCRAM_USER, Some(DATABASE), &[]).unwrap();
    assert!(tls.write_all(&out).and_then(|()| tls.flush()).is_err());
}

#[test]
fn restart_ends_sessions_with_57p01() {
    let mut pg = Postgres::start();
    let mut listener = login(Box::new(tcp(&pg)), SCRAM_USER, SCRAM_PASSWORD).unwrap();
    complete(&listener.query(&pg::listen_query("c").unwrap()), "LISTEN");
    let port = pg.port();
    pg.restart();
    assert_eq!(pg.port(), port);
    // Fast shutdown tells every session why before it closes it.
    match listener.recv() {
        Some(Backend::ErrorResponse(e)) => {
            assert_eq!(e.code, "57P01", "{e}");
            assert!(e.is_fatal());
        }
        other => panic!("expected FATAL 57P01, got {other:?}"),
    }
    assert_eq!(listener.recv(), None);
    // The roles and the database outlive the restart.
    let mut again = login(Box::new(tcp(&pg)), MD5_USER, MD5_PASSWORD).unwrap();
    complete(&again.query(&pg::listen_query("c").unwrap()), "LISTEN");
    assert_eq!(pg.psql("SELECT 1 + 1"), "2");
}

/// What a node sends in each `payload_format`, as a session listening on the channel reads
/// it: bare names for libcluster_postgres's BEAM nodes (which connect to the name they read,
/// and would try to connect to `muster1 hb ...` otherwise), Supabase Realtime's `sync::`
/// then `heartbeat::`, and muster's own.
#[test]
fn each_payload_format_is_what_its_peers_send() {
    use muster::core::Value;
    use muster::tokio::{Builder, RecordingConnector};
    use support::postgres::topology;

    let pg = Postgres::start();
    let mut listener = login(Box::new(tcp(&pg)), SCRAM_USER, SCRAM_PASSWORD).unwrap();
    complete(
        &listener.query(&pg::listen_query("cluster").unwrap()),
        "LISTEN",
    );
    let url = format!(
        "postgres://{SCRAM_USER}:{SCRAM_PASSWORD}@127.0.0.1:{}/{DATABASE}?sslmode=disable",
        pg.port()
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // The first two payloads `name` sends in `format`.
    let mut first_two = |name: &str, format: &str| -> Vec<String> {
        let spec = topology(vec![
            ("url", Value::str(url.as_str())),
            ("heartbeat_interval", Value::Int(200)),
            ("payload_format", Value::str(format)),
        ]);
        let (node, _events) = runtime.block_on(async {
            Builder::new(RecordingConnector::new())
                .this_node(name.parse().unwrap())
                .topology(spec)
                .spawn()
                .unwrap()
        });
        let mut got = Vec::new();
        while got.len() < 2 {
            let (_, _, payload) = listener.notification();
            if payload.contains(name) {
                got.push(payload);
            }
        }
        runtime.block_on(node.shutdown());
        got
    };
    assert_eq!(
        first_two("lc@127.0.0.1", "libcluster"),
        ["lc@127.0.0.1", "lc@127.0.0.1"]
    );
    assert_eq!(
        first_two("rt@127.0.0.1", "realtime"),
        ["sync::rt@127.0.0.1", "heartbeat::rt@127.0.0.1"]
    );
    assert_eq!(
        first_two("mu@127.0.0.1", "muster"),
        ["muster1 sync mu@127.0.0.1", "muster1 hb mu@127.0.0.1"]
    );
}
