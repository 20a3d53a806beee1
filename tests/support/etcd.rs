//! etcd (Debian's `etcd-server`, 3.4), started by the tests on private loopback ports with a
//! temporary data directory, restarted on the same ports and data, and killed on drop; a
//! blocking client of its JSON gateway to set keys up and check them; and a TCP proxy that can
//! cut every connection through it (a watch broken mid-stream).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use muster::core::proto::base64;
use muster::core::proto::http::{ResponseReader, request};
use serde_json::{Value, json};

/// A loopback TCP port free now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn program() -> &'static str {
    ["etcd", "/usr/bin/etcd"]
        .into_iter()
        .find(|p| Command::new(p).arg("--version").output().is_ok())
        .unwrap_or_else(|| panic!("no etcd: install Debian's etcd-server (scripts/test does)"))
}

/// TLS files for the client port: the server's certificate and key, and the CA whose client
/// certificates it requires (`--client-cert-auth`), if it requires any.
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

/// One etcd member; killed when dropped.
pub struct Etcd {
    child: Option<Child>,
    dir: PathBuf,
    pub client: u16,
    peer: u16,
    tls: Option<TlsFiles>,
    /// The token requests are made with, once authentication is enabled.
    token: Mutex<Option<String>>,
}

impl Etcd {
    /// A fresh member on free ports, ready to serve.
    pub fn start(tag: &str) -> Etcd {
        Etcd::start_with(tag, None)
    }

    /// A fresh member whose client port speaks TLS with `tls` (the tests' own CA).
    pub fn start_with(tag: &str, tls: Option<TlsFiles>) -> Etcd {
        let dir = std::env::temp_dir().join(format!("muster-etcd-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut e = Etcd {
            child: None,
            dir,
            client: free_port(),
            peer: free_port(),
            tls,
            token: Mutex::new(None),
        };
        e.spawn();
        e
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// The client URL.
    pub fn url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme(), self.client)
    }

    fn spawn(&mut self) {
        let client = format!("{}://127.0.0.1:{}", self.scheme(), self.client);
        let peer = format!("http://127.0.0.1:{}", self.peer);
        let mut cmd = Command::new(program());
        cmd.args(["--name", "t", "--data-dir"])
            .arg(self.dir.join("data"))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("t={peer}")])
            // Leases are checked every 500 ms whatever this says; small WAL/snapshot work
            // keeps a test's etcd light.
            .args(["--snapshot-count", "1000", "--log-level", "error"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(t) = &self.tls {
            cmd.arg("--cert-file").arg(&t.cert);
            cmd.arg("--key-file").arg(&t.key);
            if let Some(ca) = &t.client_ca {
                cmd.arg("--client-cert-auth")
                    .arg("--trusted-ca-file")
                    .arg(ca);
            }
        }
        self.child = Some(cmd.spawn().unwrap());
        self.ready();
    }

    /// Waits until the member answers `/health` (it has no readiness event to await), or
    /// panics after 20 s.
    fn ready(&self) {
        for _ in 0..400 {
            if self.tls.is_some() {
                // The client port is TLS: that it accepts is enough here.
                if TcpStream::connect(("127.0.0.1", self.client)).is_ok() {
                    return;
                }
            } else if let Ok((200, body)) = self.raw("GET", "/health", b"")
                && body.contains("\"true\"")
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("etcd on port {} did not become healthy", self.client);
    }

    /// Kills the member (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the member again on the same ports and data.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// One plain-HTTP request; the status and the body.
    fn raw(&self, method: &str, path: &str, body: &[u8]) -> std::io::Result<(u16, String)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.client))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let host = format!("127.0.0.1:{}", self.client);
        let token = self.token.lock().unwrap().clone();
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(t) = &token {
            headers.push(("Authorization", t.as_str()));
        }
        s.write_all(&request(method, &host, path, &headers, body))?;
        let mut reader = ResponseReader::default();
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = s.read(&mut buf)?;
            if n == 0 {
                break;
            }
            reader.feed(&buf[..n]);
            if reader.is_done() {
                break;
            }
        }
        let r = reader
            .finish()
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok((r.status, String::from_utf8_lossy(&r.body).into_owned()))
    }

    /// `POST path` with `body` (plain HTTP only); the status and the JSON answer.
    pub fn call(&self, path: &str, body: Value) -> (u16, Value) {
        let (status, text) = self.raw("POST", path, body.to_string().as_bytes()).unwrap();
        let first = text.lines().next().unwrap_or("null");
        (status, serde_json::from_str(first).unwrap_or(Value::Null))
    }

    fn ok(&self, path: &str, body: Value) -> Value {
        let (status, v) = self.call(path, body);
        assert_eq!(status, 200, "{path}: {v}");
        v
    }

    /// Puts `key` = `value`, without a lease.
    pub fn put(&self, key: &str, value: &str) {
        self.ok(
            "/v3/kv/put",
            json!({"key": base64::encode(key.as_bytes()), "value": base64::encode(value.as_bytes())}),
        );
    }

    /// Deletes `key`.
    pub fn delete(&self, key: &str) {
        self.ok(
            "/v3/kv/deleterange",
            json!({"key": base64::encode(key.as_bytes())}),
        );
    }

    /// The keys under `prefix`, with their leases (0: none), in key order.
    pub fn keys(&self, prefix: &str) -> Vec<(String, i64)> {
        let end = muster::core::proto::etcd::prefix_end(prefix.as_bytes());
        let v = self.ok(
            "/v3/kv/range",
            json!({"key": base64::encode(prefix.as_bytes()), "range_end": base64::encode(&end)}),
        );
        let Some(kvs) = v["kvs"].as_array() else {
            return Vec::new();
        };
        kvs.iter()
            .map(|kv| {
                let key = base64::decode(kv["key"].as_str().unwrap(), 4096).unwrap();
                let lease = kv["lease"].as_str().unwrap_or("0").parse().unwrap();
                (String::from_utf8(key).unwrap(), lease)
            })
            .collect()
    }

    /// Turns authentication on: `root` (password `rootpw`), and `user` with `password`,
    /// whose role may read and write under `prefix` and nothing else. The helper's own
    /// requests authenticate as root from then on.
    pub fn enable_auth(&self, user: &str, password: &str, prefix: &str) {
        let end = muster::core::proto::etcd::prefix_end(prefix.as_bytes());
        self.ok(
            "/v3/auth/user/add",
            json!({"name": "root", "password": "rootpw"}),
        );
        self.ok(
            "/v3/auth/user/grant",
            json!({"user": "root", "role": "root"}),
        );
        self.ok("/v3/auth/role/add", json!({"name": "muster"}));
        self.ok(
            "/v3/auth/role/grant",
            json!({"name": "muster", "perm": {"permType": "READWRITE",
                "key": base64::encode(prefix.as_bytes()), "range_end": base64::encode(&end)}}),
        );
        self.ok(
            "/v3/auth/user/add",
            json!({"name": user, "password": password}),
        );
        self.ok(
            "/v3/auth/user/grant",
            json!({"user": user, "role": "muster"}),
        );
        self.ok("/v3/auth/enable", json!({}));
        let v = self.ok(
            "/v3/auth/authenticate",
            json!({"name": "root", "password": "rootpw"}),
        );
        *self.token.lock().unwrap() = Some(v["token"].as_str().unwrap().to_owned());
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[derive(Default)]
struct ProxyState {
    /// Both sides of every connection so far, to cut them.
    conns: Vec<(TcpStream, TcpStream)>,
    /// The request line of each connection, in order.
    requests: Vec<String>,
}

/// A TCP proxy to a port on loopback that records each connection's request line and can
/// cut every connection open through it.
pub struct Proxy {
    pub port: u16,
    state: Arc<(Mutex<ProxyState>, Condvar)>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    pub fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state: Arc<(Mutex<ProxyState>, Condvar)> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if sp.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                st.0.lock()
                    .unwrap()
                    .conns
                    .push((client.try_clone().unwrap(), server.try_clone().unwrap()));
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let st2 = st.clone();
                std::thread::spawn(move || pump(client, server, Some(st2)));
                std::thread::spawn(move || pump(s2, c2, None));
            }
        });
        Proxy { port, state, stop }
    }

    /// The URL of the proxy.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The request lines seen so far.
    pub fn requests(&self) -> Vec<String> {
        self.state.0.lock().unwrap().requests.clone()
    }

    /// Waits until `n` requests whose line contains `what` have gone through (or panics
    /// after 30 s).
    pub fn wait_for(&self, n: usize, what: &str) {
        let (m, cv) = &*self.state;
        let g = m.lock().unwrap();
        let (_g, t) = cv
            .wait_timeout_while(g, Duration::from_secs(30), |s| {
                s.requests.iter().filter(|r| r.contains(what)).count() < n
            })
            .unwrap();
        assert!(
            !t.timed_out(),
            "fewer than {n} {what} requests: {:?}",
            _g.requests
        );
    }

    /// Cuts every connection open through the proxy, both ways.
    pub fn cut(&self) {
        let mut state = self.state.0.lock().unwrap_or_else(|e| e.into_inner());
        for (c, s) in state.conns.drain(..) {
            let _ = c.shutdown(Shutdown::Both);
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accepting thread so that it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        self.cut();
    }
}

/// Copies `from` to `to` until either ends; the first line read is recorded in `state`.
fn pump(mut from: TcpStream, mut to: TcpStream, state: Option<Arc<(Mutex<ProxyState>, Condvar)>>) {
    let mut buf = [0u8; 16 * 1024];
    let mut first = state.is_some();
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if first && let Some(st) = &state {
            first = false;
            let line = String::from_utf8_lossy(&buf[..n])
                .lines()
                .next()
                .unwrap_or("")
                .to_owned();
            st.0.lock().unwrap().requests.push(line);
            st.1.notify_all();
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
