//! `muster run` leaves as a node should on SIGTERM: it disconnects the nodes it connected
//! (saying so), unregisters from EPMD and exits 0 — seen from a real `erl` peer and Erlang's
//! own `epmd`, which the test starts and stops.
#![allow(clippy::unwrap_used)] // tests unwrap what they set up themselves

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use support::dnsmasq::free_port;
use support::erlang::{Proc, epmd, names, registered};

/// A line from `rx` that satisfies `pred`; panics (a failsafe, not a synchronisation) if none
/// comes within a minute.
fn await_line(rx: &mpsc::Receiver<String>, what: &str, pred: impl Fn(&str) -> bool) -> String {
    loop {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(l) if pred(&l) => return l,
            Ok(_) => {}
            Err(_) => panic!("never saw {what}"),
        }
    }
}

fn lines_of(r: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(r).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                return;
            }
        }
    });
    rx
}

#[test]
fn sigterm_disconnects_unregisters_and_exits_0() {
    let port = free_port();
    let _epmd = epmd(port);
    // An erl node that prints every node that comes and goes, hidden ones too.
    let mut erl = Command::new("erl")
        .env("ERL_EPMD_PORT", port.to_string())
        .args([
            "-name",
            "watcher@127.0.0.1",
            "-setcookie",
            "c",
            "-noshell",
            "-eval",
        ])
        .arg(
            "net_kernel:monitor_nodes(true, [{node_type, all}]), io:format(\"ready~n\"), \
             F = fun L() -> receive {nodeup, N, _} -> io:format(\"up ~s~n\", [N]), L(); \
             {nodedown, N, _} -> io:format(\"down ~s~n\", [N]), L() end end, F().",
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let erl_out = lines_of(erl.stdout.take().unwrap());
    let _erl = Proc(erl);
    registered(port, "watcher");
    // EPMD lists it before its -eval runs: wait until it watches.
    await_line(&erl_out, "the watcher ready", |l| l == "ready");
    let dir = std::env::temp_dir().join(format!("muster-leave-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("m.toml");
    std::fs::write(
        &config,
        format!(
            "[node]\nname = \"leaver@127.0.0.1\"\nconnector = \"erlang\"\n\
             [connector]\ncookie = \"c\"\nepmd_port = {port}\nembedded_epmd = \"never\"\n\
             [topologies.erl]\nstrategy = \"epmd\"\nconfig = {{ hosts = [\"watcher@127.0.0.1\"] }}\n"
        ),
    )
    .unwrap();
    let mut muster = Command::new(env!("CARGO_BIN_EXE_muster"))
        .args(["run", "--format", "json", "--config"])
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = lines_of(muster.stdout.take().unwrap());
    await_line(&out, "connected", |l| l.contains("\"connected\""));
    await_line(&erl_out, "the watcher's nodeup", |l| {
        l == "up leaver@127.0.0.1"
    });
    assert!(names(port).iter().any(|n| n == "leaver"));
    let ok = Command::new("kill")
        .args(["-TERM", &muster.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let left = await_line(&out, "the disconnect", |l| l.contains("\"disconnected\""));
    let v: serde_json::Value = serde_json::from_str(&left).unwrap();
    assert_eq!(v["node"], "watcher@127.0.0.1");
    assert_eq!(v["code"], "leaving", "{left}");
    let status = muster.wait().unwrap();
    assert!(status.success(), "{status:?}");
    await_line(&erl_out, "the watcher's nodedown", |l| {
        l == "down leaver@127.0.0.1"
    });
    assert!(!names(port).iter().any(|n| n == "leaver"), "unregistered");
    let _ = std::fs::remove_dir_all(&dir);
}
