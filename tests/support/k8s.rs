//! A fake Kubernetes API server over HTTPS (rustls, with certificates made by `openssl`)
//! serving lists shaped exactly like real API responses, and recording what it is asked.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

pub struct Dir(pub PathBuf);

impl Dir {
    pub fn new(tag: &str) -> Dir {
        let p = std::env::temp_dir().join(format!("muster-k8s-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    pub fn write(&self, name: &str, data: impl AsRef<[u8]>) {
        std::fs::write(self.path(name), data).unwrap();
    }

    pub fn s(&self) -> String {
        self.0.to_string_lossy().into_owned()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn openssl(dir: &Path, args: &[String]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl ({e}): scripts/test installs it"));
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn args(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_owned).collect()
}

/// A CA (`<name>-ca.crt`) and a server certificate it signed (`<name>.crt`, `<name>.key`)
/// for kubernetes.default.svc, localhost and 127.0.0.1, on P-256 keys.
pub fn make_certs(dir: &Dir, name: &str) {
    let d = &dir.0;
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    openssl(
        d,
        &args(&format!(
            "req -x509 {ec} -keyout {name}-ca.key -out {name}-ca.crt -days 2 -subj /CN={name}-ca \
         -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign"
        )),
    );
    openssl(
        d,
        &args(&format!(
            "req {ec} -keyout {name}.key -out {name}.csr -subj /CN=kubernetes.default.svc"
        )),
    );
    std::fs::write(
        d.join(format!("{name}.ext")),
        "subjectAltName=DNS:kubernetes.default.svc,DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(
        d,
        &args(&format!(
            "x509 -req -in {name}.csr -CA {name}-ca.crt -CAkey {name}-ca.key -CAcreateserial \
         -out {name}.crt -days 2 -extfile {name}.ext"
        )),
    );
}

/// A rustls server configuration (ring) with the certificate `{name}.crt` and its key
/// `{name}.key` that [`make_certs`] made.
pub fn server_config(dir: &Dir, name: &str) -> rustls::ServerConfig {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(dir.path(&format!("{name}.crt")))
            .unwrap()
            .map(|c| c.unwrap())
            .collect();
    let key = PrivateKeyDer::from_pem_file(dir.path(&format!("{name}.key"))).unwrap();
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap()
}

/// A client certificate `{name}.crt` and its key `{name}.key` (PKCS#8), signed by the CA
/// `{ca}-ca` that [`make_certs`] made, for servers that authenticate clients by certificate.
pub fn make_client_cert(dir: &Dir, ca: &str, name: &str) {
    let d = &dir.0;
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    openssl(
        d,
        &args(&format!(
            "req {ec} -keyout {name}.key -out {name}.csr -subj /CN={name}"
        )),
    );
    std::fs::write(
        d.join(format!("{name}.ext")),
        "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    openssl(
        d,
        &args(&format!(
            "x509 -req -in {name}.csr -CA {ca}-ca.crt -CAkey {ca}-ca.key -CAcreateserial \
         -out {name}.crt -days 2 -extfile {name}.ext"
        )),
    );
}

/// What the fake server answers next.
#[derive(Clone, Debug)]
pub enum Behaviour {
    /// A JSON body with this status, framed by length or chunked.
    Json {
        status: u16,
        body: String,
        chunked: bool,
    },
    /// These bytes, then close.
    Raw(Vec<u8>),
    /// Reads the request and never answers.
    Stall,
}

/// What the fake answers a watch (`?watch=1`) with.
#[derive(Clone, Debug)]
pub enum WatchMode {
    /// A 200 chunked stream that carries what [`Fake::watch`] sends, until told to end.
    Stream,
    /// This status and body, as a refusal.
    Status(u16, String),
}

/// Something for the open watch streams to do.
#[derive(Clone, Debug)]
pub enum WatchMsg {
    /// One event: the line (a newline is added), in one chunk.
    Event(String),
    /// One event, one byte per chunk, each chunk written on its own.
    Trickle(String),
    /// A space every 20 ms, never a newline, until the client goes.
    TrickleForever,
    /// Close without the last chunk: a broken stream.
    Drop,
    /// The last chunk: the server ends the watch, as at its timeoutSeconds.
    End,
}

#[derive(Clone, Debug)]
pub struct Recorded {
    pub request_line: String,
    pub authorization: Option<String>,
    pub host: Option<String>,
    /// Whether the request came over a resumed TLS session.
    pub resumed: bool,
}

/// A fake Kubernetes API (or Rancher metadata service): HTTPS with a certificate of the
/// test's own CA, or plain HTTP, recording every request. It runs on a tokio runtime of its
/// own, on a thread of its own, until dropped, so that tests on any adapter can use it.
#[derive(Clone)]
pub struct Fake {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    behaviour: Arc<Mutex<Behaviour>>,
    watch_mode: Arc<Mutex<WatchMode>>,
    watch_tx: tokio::sync::broadcast::Sender<WatchMsg>,
    /// Signalled at every recorded request (for async waiters, and blocking ones).
    recorded: Arc<tokio::sync::Notify>,
    recorded_cv: Arc<std::sync::Condvar>,
    /// TLS handshakes that failed (a client refusing the certificate).
    handshake_failures: Arc<(Mutex<u32>, std::sync::Condvar)>,
    /// Dropping the last clone stops the server's runtime.
    _stop: Arc<StopOnDrop>,
}

pub struct StopOnDrop(Mutex<Option<std::sync::mpsc::Sender<()>>>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.lock().unwrap().take();
    }
}

impl Fake {
    /// Serves over TLS with `dir`'s `<cert>.crt`/`<cert>.key`, or plain HTTP when `cert` is
    /// `None`.
    pub fn start(dir: &Dir, cert: Option<&str>, behaviour: Behaviour) -> Fake {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let fake = Fake {
            addr: std_listener.local_addr().unwrap(),
            requests: Arc::default(),
            behaviour: Arc::new(Mutex::new(behaviour)),
            watch_mode: Arc::new(Mutex::new(WatchMode::Stream)),
            watch_tx: tokio::sync::broadcast::channel(64).0,
            recorded: Arc::default(),
            recorded_cv: Arc::default(),
            handshake_failures: Arc::default(),
            _stop: Arc::new(StopOnDrop(Mutex::new(Some(stop_tx)))),
        };
        let acceptor =
            cert.map(|c| tokio_rustls::TlsAcceptor::from(Arc::new(server_config(dir, c))));
        let f = fake.clone();
        let f = Fake {
            _stop: Arc::new(StopOnDrop(Mutex::new(None))),
            ..f
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        std::thread::spawn(move || {
            runtime.block_on(async move {
                let listener = TcpListener::from_std(std_listener).unwrap();
                let serve = async move {
                    loop {
                        let Ok((tcp, _)) = listener.accept().await else {
                            return;
                        };
                        let f = f.clone();
                        let acceptor = acceptor.clone();
                        tokio::spawn(async move {
                            match acceptor {
                                None => f.serve(tcp, false).await,
                                Some(a) => match a.accept(tcp).await {
                                    Ok(tls) => {
                                        let resumed = tls.get_ref().1.handshake_kind()
                                            == Some(rustls::HandshakeKind::Resumed);
                                        f.serve(tls, resumed).await
                                    }
                                    Err(_) => {
                                        *f.handshake_failures.0.lock().unwrap() += 1;
                                        f.handshake_failures.1.notify_all();
                                    }
                                },
                            }
                        });
                    }
                };
                // Runs until the last clone of the fake is dropped.
                let stopped = tokio::task::spawn_blocking(move || {
                    let _ = stop_rx.recv();
                });
                tokio::select! {
                    _ = serve => {}
                    _ = stopped => {}
                }
            });
        });
        fake
    }

    /// TLS handshakes that failed so far (clients refusing the certificate).
    pub fn handshake_failures(&self) -> u32 {
        *self.handshake_failures.0.lock().unwrap()
    }

    /// Waits until a TLS handshake has failed (the server learns it after the client).
    pub fn wait_for_handshake_failure(&self) {
        let (count, cv) = &*self.handshake_failures;
        let (n, timeout) = cv
            .wait_timeout_while(
                count.lock().unwrap(),
                std::time::Duration::from_secs(30),
                |n| *n == 0,
            )
            .unwrap();
        assert!(*n > 0 && !timeout.timed_out(), "no TLS handshake failed");
    }

    pub fn set(&self, b: Behaviour) {
        *self.behaviour.lock().unwrap() = b;
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    /// How watch requests are answered from now on.
    pub fn set_watch(&self, mode: WatchMode) {
        *self.watch_mode.lock().unwrap() = mode;
    }

    /// Sends `msg` to every open watch stream; returns how many got it.
    pub fn watch(&self, msg: WatchMsg) -> usize {
        self.watch_tx.send(msg).unwrap_or(0)
    }

    /// [`wait_for`](Fake::wait_for), blocking the thread (for tests on any adapter).
    pub fn wait_for_blocking(&self, n: usize, pred: impl Fn(&Recorded) -> bool) -> Vec<Recorded> {
        let guard = self.requests.lock().unwrap();
        let (guard, timeout) = self
            .recorded_cv
            .wait_timeout_while(guard, std::time::Duration::from_secs(20), |r| {
                r.iter().filter(|r| pred(r)).count() < n
            })
            .unwrap();
        let m: Vec<Recorded> = guard.iter().filter(|r| pred(r)).cloned().collect();
        assert!(
            !timeout.timed_out(),
            "{} of {n} requests came: {:?}",
            m.len(),
            *guard
        );
        m
    }

    /// Waits (up to 20 s) until `n` recorded requests satisfy `pred`; returns them.
    pub async fn wait_for(&self, n: usize, pred: impl Fn(&Recorded) -> bool) -> Vec<Recorded> {
        let matching = || -> Vec<Recorded> {
            let r = self.requests.lock().unwrap();
            r.iter().filter(|r| pred(r)).cloned().collect()
        };
        let waited = tokio::time::timeout(std::time::Duration::from_secs(20), async {
            loop {
                let notified = self.recorded.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if matching().len() >= n {
                    return;
                }
                notified.await;
            }
        })
        .await;
        let m = matching();
        assert!(
            waited.is_ok(),
            "{} of {n} requests came: {:?}",
            m.len(),
            self.requests()
        );
        m
    }

    async fn serve(&self, mut s: impl AsyncRead + AsyncWrite + Unpin, resumed: bool) {
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let text = String::from_utf8_lossy(&head).into_owned();
        let mut lines = text.lines();
        let request_line = lines.next().unwrap_or("").to_owned();
        let is_watch = request_line.contains("watch=1");
        // Subscribed before the request is recorded: whatever a test sends once it has seen
        // the request reaches this stream.
        let watch_rx = self.watch_tx.subscribe();
        let header = |name: &str| {
            text.lines().find_map(|l| {
                l.split_once(": ")
                    .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.to_owned())
            })
        };
        self.requests.lock().unwrap().push(Recorded {
            request_line,
            authorization: header("authorization"),
            host: header("host"),
            resumed,
        });
        self.recorded.notify_waiters();
        self.recorded_cv.notify_all();
        if is_watch {
            let mode = self.watch_mode.lock().unwrap().clone();
            match mode {
                WatchMode::Stream => return self.stream_watch(s, watch_rx).await,
                WatchMode::Status(status, body) => {
                    let reply = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = s.write_all(reply.as_bytes()).await;
                    let _ = s.shutdown().await;
                    return;
                }
            }
        }
        let behaviour = self.behaviour.lock().unwrap().clone();
        let reply = match behaviour {
            Behaviour::Stall => {
                // Hold the connection open, answering nothing, until the client gives up.
                let _ = s.read(&mut buf).await;
                return;
            }
            Behaviour::Raw(bytes) => bytes,
            Behaviour::Json { status, body, chunked: false } => format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .into_bytes(),
            Behaviour::Json { status, body, chunked: true } => {
                let mut out = format!("HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").into_bytes();
                for piece in body.as_bytes().chunks(100) {
                    out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                    out.extend_from_slice(piece);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"0\r\n\r\n");
                out
            }
        };
        let _ = s.write_all(&reply).await;
        let _ = s.shutdown().await;
    }
}

impl Fake {
    async fn stream_watch(
        &self,
        mut s: impl AsyncRead + AsyncWrite + Unpin,
        mut rx: tokio::sync::broadcast::Receiver<WatchMsg>,
    ) {
        let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
        if s.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let chunk = |data: &[u8]| {
            let mut out = format!("{:x}\r\n", data.len()).into_bytes();
            out.extend_from_slice(data);
            out.extend_from_slice(b"\r\n");
            out
        };
        let mut buf = [0u8; 1024];
        loop {
            let msg = tokio::select! {
                m = rx.recv() => match m { Ok(m) => m, Err(_) => return },
                // The client closed (or sent something): the stream is over.
                _ = s.read(&mut buf) => return,
            };
            match msg {
                WatchMsg::Event(line) => {
                    if s.write_all(&chunk(format!("{line}\n").as_bytes()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                WatchMsg::Trickle(line) => {
                    for b in format!("{line}\n").bytes() {
                        if s.write_all(&chunk(&[b])).await.is_err() || s.flush().await.is_err() {
                            return;
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                    }
                }
                WatchMsg::TrickleForever => loop {
                    tokio::select! {
                        _ = tokio::time::sleep(std::time::Duration::from_millis(20)) => {}
                        _ = s.read(&mut buf) => return,
                    }
                    if s.write_all(&chunk(b" ")).await.is_err() || s.flush().await.is_err() {
                        return;
                    }
                },
                WatchMsg::Drop => return,
                WatchMsg::End => {
                    let _ = s.write_all(b"0\r\n\r\n").await;
                    let _ = s.shutdown().await;
                    return;
                }
            }
            let _ = s.flush().await;
        }
    }
}

/// A watch event of `kind` for an EndpointSlice `name` with these addresses.
pub fn slice_event(kind: &str, name: &str, version: u32, ips: &[&str]) -> String {
    let eps: Vec<String> = ips
        .iter()
        .map(|ip| format!(r#"{{"addresses":["{ip}"],"conditions":{{"ready":true}}}}"#))
        .collect();
    format!(
        r#"{{"type":"{kind}","object":{{"kind":"EndpointSlice","apiVersion":"discovery.k8s.io/v1","metadata":{{"name":"{name}","namespace":"default","resourceVersion":"{version}","labels":{{"kubernetes.io/service-name":"myapp"}}}},"addressType":"IPv4","endpoints":[{}]}}}}"#,
        eps.join(",")
    )
}

pub fn json(body: String) -> Behaviour {
    Behaviour::Json {
        status: 200,
        body,
        chunked: false,
    }
}

pub fn slices(ips: &[&str]) -> String {
    slices_at(123, ips)
}

/// [`slices`] at `resourceVersion` `version`.
pub fn slices_at(version: u32, ips: &[&str]) -> String {
    let eps: Vec<String> = ips
        .iter()
        .enumerate()
        .map(|(i, ip)| {
            format!(
                r#"{{"addresses":["{ip}"],"conditions":{{"ready":true,"serving":true,"terminating":false}},"hostname":"myapp-{i}","targetRef":{{"kind":"Pod","namespace":"default","name":"myapp-{i}","uid":"u{i}"}},"nodeName":"node-1","zone":"z1"}}"#
            )
        })
        .collect();
    format!(
        r#"{{"kind":"EndpointSliceList","apiVersion":"discovery.k8s.io/v1","metadata":{{"resourceVersion":"{version}"}},"items":[{{"metadata":{{"name":"myapp-7x2kq","generateName":"myapp-","namespace":"default","labels":{{"endpointslice.kubernetes.io/managed-by":"endpointslice-controller.k8s.io","kubernetes.io/service-name":"myapp"}}}},"addressType":"IPv4","endpoints":[{}],"ports":[{{"name":"epmd","protocol":"TCP","port":4369}}]}}]}}"#,
        eps.join(",")
    )
}

/// Endpoints with one address carrying a `targetRef` and one without.
pub fn endpoints() -> String {
    r#"{"kind":"EndpointsList","apiVersion":"v1","metadata":{"resourceVersion":"9"},"items":[{"metadata":{"name":"myapp","namespace":"default","labels":{"app":"myapp"}},"subsets":[{"addresses":[{"ip":"10.1.0.1","hostname":"myapp-0","nodeName":"node-1","targetRef":{"kind":"Pod","namespace":"default","name":"myapp-0","uid":"u0"}},{"ip":"10.1.0.2"}],"notReadyAddresses":[{"ip":"10.1.0.9","targetRef":{"kind":"Pod","namespace":"default","name":"myapp-9"}}],"ports":[{"name":"epmd","port":4369,"protocol":"TCP"}]}]}]}"#.to_owned()
}

pub fn pods() -> String {
    r#"{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"7"},"items":[
      {"metadata":{"name":"myapp-0","namespace":"default","labels":{"app":"myapp"}},"spec":{"hostname":"myapp-0","subdomain":"myapp","containers":[{"name":"app","image":"x"}]},"status":{"phase":"Running","podIP":"10.1.0.1","podIPs":[{"ip":"10.1.0.1"}],"conditions":[{"type":"Ready","status":"True"}]}},
      {"metadata":{"name":"myapp-1","namespace":"default","deletionTimestamp":"2026-11-28T00:00:00Z"},"spec":{"hostname":"myapp-1"},"status":{"phase":"Running","podIP":"10.1.0.2"}},
      {"metadata":{"name":"myapp-2","namespace":"default"},"spec":{},"status":{"phase":"Pending"}}]}"#.to_owned()
}

/// A service-account directory for `ca` (or none).
pub fn service_account(dir: &Dir, ca: Option<&str>) -> Dir {
    let sa = Dir::new(&format!(
        "{}-sa",
        dir.0.file_name().unwrap().to_string_lossy()
    ));
    sa.write("token", "tok-1\n");
    sa.write("namespace", "default\n");
    if let Some(ca) = ca {
        std::fs::copy(dir.path(&format!("{ca}-ca.crt")), sa.path("ca.crt")).unwrap();
    }
    sa
}
