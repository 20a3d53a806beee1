//! Network namespaces as hosts (environment.md §3): a [`Lab`] makes them, runs the real
//! `muster` tool and other programs in them, and on drop kills everything that runs in them
//! (an `epmd` that `erl` started on its own included) and deletes them. No packet reaches the
//! host's real interfaces. Needs root, as CI has.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

/// Runs `ip ARGS`; fails the test with ip's own words when it fails.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("iproute2's ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn require_root() {
    let out = Command::new("id").arg("-u").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "0",
        "the namespace tests need root for `ip netns` (CI runs as root)"
    );
}

/// A JSON event line of a `muster run`, with the name the test gave that run.
pub type Line = (String, serde_json::Value);

/// Namespaces this test made; dropping it kills what runs in them and deletes them.
pub struct Lab {
    /// A prefix unique to this test run, for namespace and file names.
    pub tag: String,
    namespaces: Vec<String>,
    processes: Vec<Child>,
}

impl Lab {
    /// A lab for the test `test` (a short tag, unique among the tests of one binary).
    pub fn new(test: &str) -> Lab {
        require_root();
        Lab {
            tag: format!("mst{}{test}", std::process::id() % 100_000),
            namespaces: Vec::new(),
            processes: Vec::new(),
        }
    }

    /// A new namespace with loopback up.
    pub fn netns(&mut self, suffix: &str) -> String {
        let name = format!("{}{suffix}", self.tag);
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        ip(&["netns", "add", &name]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        self.namespaces.push(name.clone());
        name
    }

    /// Two namespaces joined by a veth pair, `10.77.0.1/24` and `10.77.0.2/24`.
    pub fn pair(&mut self) -> (String, String) {
        let a = self.netns("a");
        let b = self.netns("b");
        ip(&[
            "link", "add", "va", "netns", &a, "type", "veth", "peer", "name", "vb", "netns", &b,
        ]);
        for (ns, dev, addr) in [(&a, "va", "10.77.0.1/24"), (&b, "vb", "10.77.0.2/24")] {
            ip(&["-n", ns, "addr", "add", addr, "dev", dev]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
        }
        (a, b)
    }

    /// Runs `program ARGS` in `ns` until the lab is dropped; its stdout is piped.
    pub fn spawn(&mut self, ns: &str, program: &str, args: &[&str]) -> &mut Child {
        let child = Command::new("ip")
            .args(["netns", "exec", ns, program])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        self.processes.push(child);
        self.processes.last_mut().unwrap()
    }

    /// Runs `muster run` with `config` inside `ns`; its event lines go to `events`.
    pub fn muster(&mut self, ns: &str, node: &str, config: &str, events: &mpsc::Sender<Line>) {
        self.muster_under(ns, &[], node, config, events);
    }

    /// As [`Lab::muster`], under `wrapper` (a command that runs the rest, such as
    /// `prlimit --nofile=256:256 --`); returns the process id of `muster` itself.
    pub fn muster_under(
        &mut self,
        ns: &str,
        wrapper: &[&str],
        node: &str,
        config: &str,
        events: &mpsc::Sender<Line>,
    ) -> u32 {
        let path = std::env::temp_dir().join(format!(
            "{}-{}.toml",
            self.tag,
            node.replace([':', '@'], "_")
        ));
        std::fs::write(&path, config).unwrap();
        let path = path.to_str().unwrap().to_owned();
        let mut args: Vec<&str> = wrapper.iter().skip(1).copied().collect();
        // MUSTER_BIN runs the suite against another build (a release, an older commit).
        let bin =
            std::env::var("MUSTER_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_muster").into());
        args.extend([bin.as_str(), "run", "--format", "json", "--config", &path]);
        let program = match wrapper.first() {
            Some(w) => *w,
            None => args.remove(0),
        };
        let child = self.spawn(ns, program, &args);
        let out = child.stdout.take().unwrap();
        let pid = child.id();
        let tx = events.clone();
        let node = node.to_owned();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                let v: serde_json::Value =
                    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}"));
                if tx.send((node.clone(), v)).is_err() {
                    return;
                }
            }
        });
        // `ip netns exec` and any wrapper exec what they run: the pid is muster's.
        pid
    }

    /// Runs `bash -c script` in `ns` to its end and returns what it printed.
    pub fn bash(&self, ns: &str, script: &str) -> String {
        self.try_bash(ns, script)
            .unwrap_or_else(|e| panic!("{script}: {e}"))
    }

    /// As [`Lab::bash`]; a failure is what the script wrote to stderr.
    pub fn try_bash(&self, ns: &str, script: &str) -> Result<String, String> {
        let out = Command::new("ip")
            .args(["netns", "exec", ns, "bash", "-c", script])
            .output()
            .unwrap();
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for p in &mut self.processes {
            let _ = p.kill();
            let _ = p.wait();
        }
        // What the processes started on their own (erl's epmd) runs on in the namespace.
        for ns in &self.namespaces {
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).output();
                }
            }
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}
