//! dnsmasq, a real DNS server, started and stopped by the tests.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use muster::core::proto::dns::{self, Kind};

/// A loopback port free for both UDP and TCP, as dnsmasq serves both.
pub fn free_port() -> u16 {
    loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A scratch directory removed at the end of the test.
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("muster-dns-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }

    /// A file named `name` in the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// A resolv.conf pointing at `port` on loopback, with one quick attempt per poll.
    pub fn resolv_conf(&self, port: u16) -> String {
        let path = self.0.join("resolv.conf");
        std::fs::write(
            &path,
            format!("nameserver 127.0.0.1:{port}\noptions timeout:1 attempts:1\n"),
        )
        .unwrap();
        path.to_string_lossy().into_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// dnsmasq serving the `test` domain on 127.0.0.1:`port`; stopped when dropped.
pub struct Dnsmasq {
    child: Child,
}

impl Dnsmasq {
    pub fn start(port: u16, records: &[String]) -> Dnsmasq {
        let program = ["dnsmasq", "/usr/sbin/dnsmasq"]
            .into_iter()
            .find(|p| {
                std::process::Command::new(p)
                    .arg("--version")
                    .output()
                    .is_ok()
            })
            .unwrap_or_else(|| {
                panic!("no dnsmasq: install Debian's dnsmasq-base (scripts/test does)")
            });
        let mut args: Vec<String> = [
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--local=/test/",
            "--local-ttl=1",
            "--pid-file",
            "--host-record=ready.test,127.0.0.1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push(format!("--port={port}"));
        args.extend(records.iter().cloned());
        let child = Command::new(program)
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let d = Dnsmasq { child };
        ready(port);
        d
    }

    /// Stops the server and waits until it has exited.
    pub fn stop(self) {}
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the server on `port` answers (there is no readiness event to await).
fn ready(port: u16) {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let q = dns::query(1, "ready.test", Kind::A, false).unwrap();
    let mut buf = [0u8; 512];
    for _ in 0..100 {
        sock.send_to(&q, ("127.0.0.1", port)).unwrap();
        if sock.recv(&mut buf).is_ok() {
            return;
        }
    }
    panic!("dnsmasq did not answer on port {port}");
}

/// A `--host-record` argument.
pub fn host(name: &str, ip: &str) -> String {
    format!("--host-record={name},{ip}")
}
