//! Erlang's own `epmd` and `erl` (Debian's erlang-base, which scripts/test installs), started
//! and stopped by the tests, with blocking helpers.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A process that dies with the test.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Erlang's EPMD on `port`, until dropped.
pub fn epmd(port: u16) -> Proc {
    let child = Command::new("epmd")
        .args(["-port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run epmd ({e}): install Debian's erlang-base (scripts/test does)")
        });
    Proc(child)
}

/// The names registered with the EPMD on `port`, as `epmd -names` tells them.
pub fn names(port: u16) -> Vec<String> {
    let out = Command::new("epmd")
        .args(["-port", &port.to_string(), "-names"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            l.strip_prefix("name ")
                .and_then(|r| r.split(' ').next())
                .map(str::to_owned)
        })
        .collect()
}

/// Waits until `name` is registered with the EPMD on `port` (there is no event for that:
/// EPMD is asked again until it says so).
pub fn registered(port: u16, name: &str) {
    let give_up = Instant::now() + Duration::from_secs(30);
    while !names(port).iter().any(|n| n == name) {
        assert!(
            Instant::now() < give_up,
            "{name} never registered with EPMD on {port}"
        );
        std::thread::yield_now();
    }
}

/// An `erl` node `name@127.0.0.1` on the EPMD at `port`, registered when this returns; it
/// runs until dropped.
pub fn erl(port: u16, name: &str, cookie: &str) -> Proc {
    let child = Command::new("erl")
        .env("ERL_EPMD_PORT", port.to_string())
        .args([
            "-name",
            &format!("{name}@127.0.0.1"),
            "-setcookie",
            cookie,
            "-noshell",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run erl ({e}): install Debian's erlang-base (scripts/test does)")
        });
    let p = Proc(child);
    registered(port, name);
    p
}

/// Evaluates `expr` on a short-lived `erl` node and returns what it printed.
pub fn erl_eval(port: u16, cookie: &str, expr: &str) -> String {
    let name = format!("probe{}@127.0.0.1", super::dnsmasq::free_port());
    let out = Command::new("erl")
        .env("ERL_EPMD_PORT", port.to_string())
        .args(["-name", &name, "-setcookie", cookie, "-noshell", "-eval"])
        .arg(format!("io:format(\"~p~n\", [begin {expr} end]), halt()."))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
