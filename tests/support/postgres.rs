//! A real PostgreSQL server (Debian's `postgresql` package, which `scripts/test` installs),
//! started by a test and stopped when dropped.
//!
//! Each server has a data directory of its own in a temporary directory, listens on a free
//! loopback port (and a Unix socket inside that directory), and has these roles, made at
//! start: [`ADMIN`] (the superuser), [`SCRAM_USER`] (a SCRAM-SHA-256 password) and
//! [`MD5_USER`] (an MD5 password, which pg_hba.conf asks for with `md5`), and the database
//! [`DATABASE`]. With [`Options::tls`] it also serves TLS with a certificate for `localhost`
//! and 127.0.0.1 signed by a CA of the test's own ([`Postgres::ca_cert`]).
//!
//! initdb refuses to run as root, so when the tests run as root (as CI does) initdb and the
//! server run as the `postgres` user the package creates, through `setpriv`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The superuser initdb makes.
pub const ADMIN: &str = "muster_admin";
/// Its password.
pub const ADMIN_PASSWORD: &str = "admin-pw";
/// A role whose password is stored as SCRAM-SHA-256 and asked for with `scram-sha-256`.
pub const SCRAM_USER: &str = "muster_scram";
/// Its password.
pub const SCRAM_PASSWORD: &str = "scram-pw";
/// A role whose password is stored as MD5 and asked for with `md5`.
pub const MD5_USER: &str = "muster_md5";
/// Its password.
pub const MD5_PASSWORD: &str = "md5-pw";
/// The database the roles connect to.
pub const DATABASE: &str = "muster";

/// How long the server may take to accept connections, at start and at restart.
const READY_WITHIN: Duration = Duration::from_secs(60);
/// How long a fast shutdown may take before the server is killed.
const STOP_WITHIN: Duration = Duration::from_secs(30);

/// What to start.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Serve TLS (`ssl=on`) with a certificate of a test CA.
    pub tls: bool,
    /// pg_hba.conf lines put before the harness's own (first match wins), e.g.
    /// `hostnossl all muster_scram 127.0.0.1/32 reject` to demand TLS of a role.
    pub hba: Vec<String>,
}

/// A running PostgreSQL server; stopped (fast shutdown) and its directory removed on drop.
pub struct Postgres {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    tls: bool,
    as_root: bool,
    child: Option<Child>,
}

/// The newest installed server's binaries (`/usr/lib/postgresql/<version>/bin`).
fn bin_dir() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).unwrap_or_else(|| {
        panic!(
            "no PostgreSQL server in /usr/lib/postgresql/*/bin: install Debian's postgresql \
             (scripts/test does)"
        )
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.trim_ascii() == b"0")
        .unwrap_or(false)
}

/// A loopback TCP port nobody holds right now.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn check(what: &str, out: std::io::Result<Output>) -> Output {
    let out = out.unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl Postgres {
    /// A plain-text server with the default roles.
    pub fn start() -> Postgres {
        Postgres::start_with(Options::default())
    }

    /// A server as `opts` says.
    pub fn start_with(opts: Options) -> Postgres {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("muster-pg-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sock")).unwrap();
        let as_root = is_root();
        let mut pg = Postgres {
            dir,
            bin: bin_dir(),
            port: 0,
            tls: opts.tls,
            as_root,
            child: None,
        };
        // The postgres user must be able to enter the directory, and nobody else to list it.
        set_mode(&pg.dir, 0o711);
        std::fs::write(pg.dir.join("pw"), ADMIN_PASSWORD).unwrap();
        if opts.tls {
            pg.make_certs(n);
        }
        pg.chown(&pg.dir);
        let data = pg.data().to_string_lossy().into_owned();
        let pwfile = format!("--pwfile={}", pg.dir.join("pw").display());
        let admin = format!("--username={ADMIN}");
        check(
            "initdb",
            pg.as_postgres(&pg.bin.join("initdb"))
                .args(["-D", &data, &admin, "--auth=scram-sha-256", &pwfile])
                .args(["-E", "UTF8", "--locale=C", "--no-sync"])
                .output(),
        );
        let mut hba = String::from("# written by the muster test harness\n");
        for line in &opts.hba {
            hba.push_str(line);
            hba.push('\n');
        }
        hba.push_str(&format!(
            "local all all scram-sha-256\n\
             host all {MD5_USER} 127.0.0.1/32 md5\n\
             host all all 127.0.0.1/32 scram-sha-256\n"
        ));
        std::fs::write(pg.data().join("pg_hba.conf"), hba).unwrap();
        pg.chown(&pg.data().join("pg_hba.conf"));

        // A port picked now may be taken before the server binds it: try a few.
        let mut last = String::new();
        for _ in 0..5 {
            pg.port = free_port();
            match pg.run() {
                Ok(()) => {
                    pg.setup_roles();
                    return pg;
                }
                Err(e) => last = e,
            }
        }
        panic!("PostgreSQL did not start: {last}");
    }

    /// The TCP port the server listens on (127.0.0.1 only).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// 127.0.0.1 and [`port`](Postgres::port).
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The PEM file of the CA that signed the server's certificate (for `localhost` and
    /// 127.0.0.1), when the server serves TLS.
    pub fn ca_cert(&self) -> Option<PathBuf> {
        self.tls.then(|| self.dir.join("tls/ca.crt"))
    }

    /// Runs `sql` through psql as the superuser on [`DATABASE`] and returns what it printed
    /// (unaligned, tuples only). Panics when psql fails.
    pub fn psql(&self, sql: &str) -> String {
        self.psql_as(ADMIN, ADMIN_PASSWORD, DATABASE, sql)
            .unwrap_or_else(|e| panic!("psql {sql:?}: {e}"))
    }

    /// Runs `sql` through psql as `user`, over TCP: its output, or its error text.
    pub fn psql_as(
        &self,
        user: &str,
        password: &str,
        database: &str,
        sql: &str,
    ) -> Result<String, String> {
        self.psql_args(user, password, database, &["-c", sql])
    }

    fn psql_args(
        &self,
        user: &str,
        password: &str,
        database: &str,
        args: &[&str],
    ) -> Result<String, String> {
        let psql = ["/usr/bin/psql"]
            .map(PathBuf::from)
            .into_iter()
            .find(|p| p.exists())
            .unwrap_or_else(|| self.bin.join("psql"));
        let port = self.port.to_string();
        let out = Command::new(psql)
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-p", &port, "-U", user, "-d", database])
            .args(args)
            .env("PGPASSWORD", password)
            .env("PGCONNECT_TIMEOUT", "10")
            .env_remove("PGSERVICE")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run psql: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Stops the server (fast shutdown: sessions get FATAL 57P01) and starts it again on
    /// the same port and data directory.
    pub fn restart(&mut self) {
        self.stop();
        self.run()
            .unwrap_or_else(|e| panic!("PostgreSQL did not restart: {e}"));
    }

    /// Stops the server with a fast shutdown (SIGINT to the postmaster) and waits for it.
    /// Dropping does this too.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + STOP_WITHIN;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// The server's log so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn as_postgres(&self, program: &Path) -> Command {
        let mut c = if self.as_root {
            let mut c = Command::new("setpriv");
            c.args([
                "--reuid=postgres",
                "--regid=postgres",
                "--clear-groups",
                "--",
            ])
            .arg(program);
            c
        } else {
            Command::new(program)
        };
        // The postgres user may not be able to enter the test's working directory.
        c.current_dir(&self.dir);
        c
    }

    fn chown(&self, path: &Path) {
        if self.as_root {
            check(
                "chown",
                Command::new("chown")
                    .args(["-R", "postgres:postgres"])
                    .arg(path)
                    .output(),
            );
        }
    }

    /// The server certificate of a CA made for this server, in `<dir>/tls`.
    fn make_certs(&self, n: u32) {
        let scratch = super::k8s::Dir::new(&format!("pg{n}"));
        super::k8s::make_certs(&scratch, "pg");
        let tls = self.dir.join("tls");
        std::fs::create_dir_all(&tls).unwrap();
        for (from, to) in [
            ("pg-ca.crt", "ca.crt"),
            ("pg.crt", "server.crt"),
            ("pg.key", "server.key"),
        ] {
            std::fs::copy(scratch.path(from), tls.join(to)).unwrap();
        }
        // The server refuses a key that others can read.
        set_mode(&tls.join("server.key"), 0o600);
    }

    /// Starts the postmaster on `self.port` and waits until it accepts connections.
    fn run(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("log"))
            .unwrap();
        let data = self.data().to_string_lossy().into_owned();
        let sock = self.dir.join("sock").to_string_lossy().into_owned();
        let port = self.port.to_string();
        let mut cmd = self.as_postgres(&self.bin.join("postgres"));
        cmd.args(["-D", &data, "-p", &port, "-k", &sock])
            .args(["-c", "listen_addresses=127.0.0.1"])
            // A test server keeps nothing: no need to wait for the disk.
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"]);
        if self.tls {
            let tls = self.dir.join("tls");
            cmd.args(["-c", "ssl=on"])
                .arg("-c")
                .arg(format!(
                    "ssl_cert_file={}",
                    tls.join("server.crt").display()
                ))
                .arg("-c")
                .arg(format!("ssl_key_file={}", tls.join("server.key").display()));
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot run postgres: {e}"))?;
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("postgres exited ({status}):\n{}", self.log()));
            }
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &port, "-t", "2"])
                .args(["-U", ADMIN, "-d", "postgres"])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ready {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "not ready within {READY_WITHIN:?}:\n{}",
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn setup_roles(&self) {
        let sql = [
            format!("CREATE ROLE {SCRAM_USER} LOGIN PASSWORD '{SCRAM_PASSWORD}'"),
            // The password is stored the way password_encryption says when it is set.
            "SET password_encryption = 'md5'".to_owned(),
            format!("CREATE ROLE {MD5_USER} LOGIN PASSWORD '{MD5_PASSWORD}'"),
            // CREATE DATABASE cannot run in the implicit transaction of a multi-statement query.
            format!("CREATE DATABASE {DATABASE}"),
        ];
        let mut args = Vec::new();
        for s in &sql {
            args.push("-c");
            args.push(s.as_str());
        }
        self.psql_args(ADMIN, ADMIN_PASSWORD, "postgres", &args)
            .unwrap_or_else(|e| panic!("setting up roles: {e}\n{}", self.log()));
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A topology `pg` of the `postgres` strategy with these options, as a configuration file's
/// `[topologies.pg.config]` would give them.
pub fn topology(entries: Vec<(&str, muster::core::Value)>) -> muster::core::TopologySpec {
    let t: Vec<(String, muster::core::Value)> = entries
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    let mut o = muster::core::config::Options::new("config", &t);
    let strategy = muster::core::strategy::Registry::builtin()
        .with_env(muster::core::strategy::Environment::new())
        .build("postgres", &mut o)
        .unwrap();
    o.finish().unwrap();
    muster::core::TopologySpec::boxed("pg", strategy)
}
