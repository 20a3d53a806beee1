//! The Erlang node and muster's own EPMD under a hostile network: the real `muster` tool runs
//! in one network namespace (the victim, 10.77.0.1) and an attacker in another (10.77.0.2)
//! does what a hostile peer can — registers, kills and dumps from afar, registers names that
//! forge lines, floods both ports with idle connections at the descriptor limit, connects
//! with a wrong cookie — while real Erlang nodes check that the victim still serves them.
//!
//! Needs root (for `ip netns`), as CI has, and Debian's erlang-base (scripts/test installs it).
#![allow(clippy::unwrap_used)] // tests unwrap what they set up themselves

mod support;

use std::fmt::Write as _;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use muster_core::proto::epmd::{self, NodeEntry};
use support::netns::{Lab, Line};

const VICTIM: &str = "victim@10.77.0.1";
const COOKIE: &str = "hostile-test-cookie";
const DIST_PORT: u16 = 9100;

fn victim_config() -> String {
    format!(
        "[node]\nname = \"{VICTIM}\"\nconnector = \"erlang\"\n\n[connector]\ncookie = \"{COOKIE}\"\n\
         listen = \"0.0.0.0:{DIST_PORT}\"\nembedded_epmd = \"always\"\nepmd_port = 4369\n\n\
         [topologies.local]\nstrategy = \"local_epmd\"\n\n[topologies.local.config]\n\
         polling_interval = 500\n"
    )
}

/// `bytes` as a `printf` format that writes them.
fn printf(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "\\x{b:02x}");
        s
    })
}

/// Sends `request` to the EPMD at `host` from namespace `ns` and returns the reply: the first
/// `take` bytes, or everything up to the close when `take` is `None`. A connection closed
/// without an answer is an empty reply.
fn ask(lab: &Lab, ns: &str, host: &str, request: &[u8], take: Option<usize>) -> Vec<u8> {
    try_ask(lab, ns, host, request, take).unwrap_or_else(|e| panic!("{host}: {e}"))
}

/// As [`ask`]; a connection that cannot be made is an error.
fn try_ask(
    lab: &Lab,
    ns: &str,
    host: &str,
    request: &[u8],
    take: Option<usize>,
) -> Result<Vec<u8>, String> {
    let read = take.map_or_else(|| "cat".to_owned(), |n| format!("head -c {n}"));
    // `timeout` only keeps a wrong answer from hanging the test.
    let hex = lab.try_bash(
        ns,
        &format!(
            "exec 3<>/dev/tcp/{host}/4369 && printf '{}' >&3 && timeout 30 {read} <&3 | od -An -v -tx1",
            printf(request)
        ),
    )?;
    Ok(hex
        .split_whitespace()
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect())
}

/// The names the EPMD at `host` lists, asked from `ns` (anyone may ask, as with Erlang's).
fn names(lab: &Lab, ns: &str, host: &str) -> Vec<String> {
    let reply = ask(lab, ns, host, &epmd::names_request(), None);
    let listing = epmd::parse_names(&reply).unwrap();
    listing.nodes.into_iter().map(|(n, _)| n).collect()
}

/// Waits until the EPMD at 10.77.0.1 lists `name` (there is no event for a registration:
/// EPMD is asked again, once it listens, until it says so).
fn await_registered(lab: &Lab, ns: &str, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(reply) = try_ask(lab, ns, "10.77.0.1", &epmd::names_request(), None)
            && epmd::parse_names(&reply)
                .unwrap()
                .nodes
                .iter()
                .any(|(n, _)| n == name)
        {
            return;
        }
        assert!(Instant::now() < deadline, "{name} never registered");
    }
}

/// Waits for the first event line that `pick` accepts; fails on a deadline.
fn await_event(rx: &mpsc::Receiver<Line>, what: &str, pick: impl Fn(&serde_json::Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let (_, v) = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no {what} event"));
        if pick(&v) {
            return;
        }
    }
}

/// Runs a short-lived Erlang node in `ns` that pings the victim and halts; what it printed:
/// `pong`, `pang`, or nothing when it could not start (its EPMD busy).
fn ping(ns: &str, probe: &str, cookie: &str) -> String {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "erl",
            "-name",
            probe,
            "-setcookie",
            cookie,
            "-noshell",
            "-eval",
        ])
        .arg(format!(
            "io:format(\"~p~n\", [net_adm:ping('{VICTIM}')]), halt()."
        ))
        .env("ERL_EPMD_PORT", "4369")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Pings until the victim answers `pong` (each probe boots a BEAM node; one that could not
/// register with a busy EPMD, or whose connect waited out a flood, tries again).
fn await_pong(ns: &str, probe: &str) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut tries = 0;
    loop {
        tries += 1;
        if ping(ns, probe, COOKIE) == "pong" {
            return tries;
        }
        assert!(
            Instant::now() < deadline,
            "{probe}: the victim never answered"
        );
    }
}

/// CPU time process `pid` has used, user and system.
fn cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // After the command name (in parentheses), utime and stime are the 12th and 13th fields,
    // in clock ticks of 1/100 s.
    let f: Vec<u64> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|v| v.parse().unwrap())
        .collect();
    Duration::from_millis((f[0] + f[1]) * 10)
}

/// Resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

fn alive2(name: &[u8]) -> Vec<u8> {
    // Built by hand: a hostile name is not a `&str` the codec would take.
    let mut body = vec![b'x'];
    body.extend_from_slice(&DIST_PORT.to_be_bytes());
    body.extend_from_slice(&[72, 0, 0, 6, 0, 5]);
    body.extend_from_slice(&(name.len() as u16).to_be_bytes());
    body.extend_from_slice(name);
    body.extend_from_slice(&[0, 0]);
    let mut framed = (body.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&body);
    framed
}

/// Another host may ask where nodes are, but may not register, kill, stop or dump; this host
/// may, but not under a name that is no node's; and a wrong cookie from another host is a
/// `rejected` event with its address.
#[test]
fn another_host_may_look_up_but_not_register_kill_stop_or_dump() {
    let mut lab = Lab::new("rm");
    let (v, a) = lab.pair();
    let (tx, rx) = mpsc::channel();
    lab.muster(&v, VICTIM, &victim_config(), &tx);
    await_registered(&lab, &a, "victim");

    // Lookups from afar work, as with Erlang's epmd.
    let reply = ask(
        &lab,
        &a,
        "10.77.0.1",
        &epmd::port_please_request("victim"),
        None,
    );
    let entry = epmd::parse_port2(&reply).unwrap().unwrap();
    assert_eq!(entry.port, DIST_PORT);

    // Registering, killing, stopping and dumping from afar get no answer at all.
    let squat = epmd::alive2_request(&NodeEntry::new("squat", 1, true));
    for (what, request, take) in [
        ("ALIVE2", squat, Some(2)),
        ("KILL", vec![0, 1, b'k'], Some(2)),
        ("STOP", [&[0, 7, b's'][..], b"victim"].concat(), Some(7)),
        ("DUMP", vec![0, 1, b'd'], None),
    ] {
        let reply = ask(&lab, &a, "10.77.0.1", &request, take);
        assert!(reply.is_empty(), "{what} from another host: {reply:?}");
    }
    assert_eq!(names(&lab, &a, "10.77.0.1"), ["victim"]);

    // On this host: a name that is no node's is refused, and forges no line in the listing.
    for bad in [
        &b"forged\nname victim2 at port 1"[..],
        b"esc\x1bape",
        b"sp ace",
    ] {
        let reply = ask(&lab, &v, "127.0.0.1", &alive2(bad), Some(2));
        assert_eq!(
            reply.get(1).copied().map(|r| r != 0),
            Some(true),
            "{bad:?}: {reply:?}"
        );
    }
    assert_eq!(names(&lab, &v, "127.0.0.1"), ["victim"]);
    // KILL from this host while a node is registered: `NO`, as Erlang's; it keeps serving.
    assert_eq!(ask(&lab, &v, "127.0.0.1", &[0, 1, b'k'], Some(2)), b"NO");
    let dump = ask(&lab, &v, "127.0.0.1", &[0, 1, b'd'], None);
    assert!(
        String::from_utf8_lossy(&dump).contains("victim"),
        "{dump:?}"
    );

    // The name the attacker tried to take is a real node's to have; the victim finds it.
    let _squat = lab.spawn(
        &v,
        "erl",
        &["-name", "squat@10.77.0.1", "-setcookie", COOKIE, "-noshell"],
    );
    await_event(&rx, "connected squat", |e| {
        e["event"] == "connected" && e["node"] == "squat@10.77.0.1"
    });

    // A wrong cookie from another host: pang there, a rejected event with its address here.
    assert_eq!(ping(&a, "intruder@10.77.0.2", "wrong-cookie"), "pang");
    await_event(&rx, "rejected", |e| {
        e["event"] == "rejected"
            && e["topology"] == "erlang"
            && e["code"] == "unauthenticated"
            && e["from"]
                .as_str()
                .is_some_and(|f| f.starts_with("10.77.0.2:"))
    });
}

/// At a descriptor limit of 256, 300 idle connections to the EPMD port and 300 to the
/// distribution port neither spin the victim nor grow it, and a real Erlang node still
/// connects, during the flood and after it.
#[test]
fn an_idle_flood_at_the_descriptor_limit_is_survived() {
    let mut lab = Lab::new("fl");
    let (v, a) = lab.pair();
    let (tx, _rx) = mpsc::channel();
    let pid = lab.muster_under(
        &v,
        &["prlimit", "--nofile=256:256", "--"],
        VICTIM,
        &victim_config(),
        &tx,
    );
    await_registered(&lab, &a, "victim");
    let before = rss_kib(pid);
    let (cpu_before, started) = (cpu(pid), Instant::now());

    let flood = format!(
        "ulimit -n 4096; for port in 4369 {DIST_PORT}; do for i in $(seq 300); do \
         exec {{fd}}<>/dev/tcp/10.77.0.1/$port || exit 1; done; done; echo opened; read"
    );
    let attacker = lab.spawn(&a, "bash", &["-c", &flood]);
    let mut out = std::io::BufReader::new(attacker.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert_eq!(
        line.trim(),
        "opened",
        "the attacker could not open its connections"
    );

    let tries = await_pong(&v, "during@10.77.0.1");
    let during = rss_kib(pid);
    // The attacker leaves (its stdin closes, `read` ends, its connections with it).
    drop(attacker.stdin.take());
    drop(out);
    await_pong(&v, "after@10.77.0.1");
    let after = rss_kib(pid);
    let (used, wall) = (cpu(pid) - cpu_before, started.elapsed());
    eprintln!(
        "victim: RSS {before} KiB idle, {during} KiB under the flood ({tries} probes to a pong), \
         {after} KiB after; CPU {used:?} over {wall:?}"
    );
    // Generous multiples: a few KiB per connection, not megabytes; no spin on a full
    // descriptor table (which burnt more than a core, and gigabytes, before).
    for (when, kib) in [("during", during), ("after", after)] {
        assert!(
            kib < before * 4,
            "RSS {when} the flood: {kib} KiB, from {before} KiB"
        );
    }
    assert!(
        used < wall / 2,
        "the victim used {used:?} of CPU in {wall:?}: it spins"
    );
}
