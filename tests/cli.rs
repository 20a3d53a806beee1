//! The `muster` tool from the outside: its exit codes, messages and event lines.
#![allow(clippy::unwrap_used)] // tests unwrap what they set up themselves

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn muster() -> Command {
    Command::new(env!("CARGO_BIN_EXE_muster"))
}

fn temp_config(name: &str, text: &str) -> String {
    let dir = std::env::temp_dir().join(format!("muster-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn check_prints_the_resolved_configuration() {
    let path = temp_config(
        "good.toml",
        "[node]\nname = \"a@127.0.0.1\"\nconnector = \"tcp\"\n[connector]\nport = 7000\n\
         [topologies.app]\nstrategy = \"epmd\"\nconfig = { hosts = [\"b@127.0.0.2\"] }\n",
    );
    let out = muster()
        .args(["check", "--config", &path])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    for want in [
        "connector = \"tcp\"",
        "port = 7000",
        "hosts = [\"b@127.0.0.2\"]",
        "backoff_max = 30000",
        "prune = true",
    ] {
        assert!(text.contains(want), "{want:?} in\n{text}");
    }
}

#[test]
fn check_warns_about_libclusters_poll_interval_and_reads_it() {
    let path = temp_config(
        "alias.toml",
        "[topologies.dns]\nstrategy = \"dns_poll\"\n[topologies.dns.config]\nquery = \"app.test\"\n\
         node_basename = \"app\"\npoll_interval = 2500\nnameservers = [\"127.0.0.1:5353\"]\n",
    );
    let out = muster()
        .args(["check", "--config", &path])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(
            "alias.toml:6: `topologies.dns.config.poll_interval`: accepted as `polling_interval`"
        ),
        "{err}"
    );
    let text = String::from_utf8(out.stdout).unwrap();
    for want in [
        "polling_interval = 2500",
        "nameservers = [\"127.0.0.1:5353\"]",
        "resolv_conf = \"/etc/resolv.conf\"",
    ] {
        assert!(text.contains(want), "{want:?} in\n{text}");
    }
}

#[test]
fn a_bad_file_exits_2_naming_file_line_and_key() {
    let cases = [
        (
            "unknown.toml",
            "[topologies.app]\nstrategy = \"epmd\"\nhostz = 1\n",
            ":3: `topologies.app.hostz`: unknown key",
        ),
        (
            "missing.toml",
            "[topologies.app]\nconfig = {}\n",
            ":1: `topologies.app.strategy`: missing required key",
        ),
        (
            "type.toml",
            "[topologies.app]\nstrategy = \"epmd\"\n[topologies.app.config]\ntimeout = \"soon\"\n",
            ":4: `topologies.app.config.timeout`: expected an integer",
        ),
        (
            "strategy.toml",
            "[topologies.app]\nstrategy = \"zookeeper\"\n",
            ":2: `topologies.app.strategy`: unknown strategy \"zookeeper\"",
        ),
    ];
    for (name, text, want) in cases {
        let path = temp_config(name, text);
        for cmd in ["check", "run"] {
            let out = muster().args([cmd, "--config", &path]).output().unwrap();
            assert_eq!(out.status.code(), Some(2), "{cmd} {name}");
            let err = String::from_utf8(out.stderr).unwrap();
            assert!(
                err.contains(&format!("{path}{want}")),
                "{cmd} {name}: {err}"
            );
        }
    }
    let out = muster()
        .args(["check", "--config", "/nonexistent/muster.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/muster.toml: cannot read"));
    let out = muster().args(["run", "--bogus"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// Reads the child's stdout lines on a thread, so the test can wait for the one it needs.
fn lines(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

fn wait_for(
    rx: &mpsc::Receiver<String>,
    seen: &mut Vec<serde_json::Value>,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    // Lines come in whatever order the tool's tasks finish: look at what came already first.
    if let Some(v) = seen.iter().find(|v| pred(v)) {
        return v.clone();
    }
    // A failsafe, not a synchronisation: a broken tool fails the test instead of hanging it.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            let tail: Vec<String> = seen.iter().rev().take(10).map(|v| v.to_string()).collect();
            panic!("the awaited event did not come; last lines: {tail:#?}");
        };
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}"));
        seen.push(v.clone());
        if pred(&v) {
            return v;
        }
    }
}

#[test]
fn run_prints_connects_failures_backoff_and_reconnection_then_stops_on_sigterm() {
    let up = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = up.local_addr().unwrap().port();
    let path = temp_config(
        "run.toml",
        &format!(
            "[node]\nname = \"me@127.0.0.1\"\nconnector = \"tcp\"\n[connector]\nport = {port}\n\
             [topologies.app]\nstrategy = \"epmd\"\n\
             [topologies.app.config]\nhosts = [\"up@127.0.0.1\", \"late@127.0.0.2\", \"me@127.0.0.1\"]\ntimeout = 1000\n\
             [topologies.app.connect]\nbackoff_base = 50\nbackoff_max = 400\n"
        ),
    );
    let mut child = muster()
        .args(["run", "--config", &path, "--format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = lines(&mut child);
    let mut seen = Vec::new();
    let c = wait_for(&rx, &mut seen, |v| v["event"] == "connected");
    assert_eq!(c["node"], "up@127.0.0.1");
    assert_eq!(c["topology"], "app");
    let f1 = wait_for(&rx, &mut seen, |v| {
        v["event"] == "connect_failed" && v["attempt"] == 1
    });
    assert_eq!(f1["node"], "late@127.0.0.2");
    assert!(
        f1["reason"]
            .as_str()
            .unwrap()
            .contains(&format!("127.0.0.2:{port}")),
        "{f1}"
    );
    let f2 = wait_for(&rx, &mut seen, |v| {
        v["event"] == "connect_failed" && v["attempt"] == 2
    });
    let (r1, r2) = (
        f1["retry_in_ms"].as_u64().unwrap(),
        f2["retry_in_ms"].as_u64().unwrap(),
    );
    assert!(
        (25..=50).contains(&r1) && (50..=100).contains(&r2),
        "backoff {r1} then {r2}"
    );
    // The listener comes back: the node is connected at its next retry.
    let late = TcpListener::bind(("127.0.0.2", port)).unwrap();
    wait_for(&rx, &mut seen, |v| {
        v["event"] == "connected" && v["node"] == "late@127.0.0.2"
    });
    assert!(
        seen.iter().all(|v| v["node"] != "me@127.0.0.1"),
        "never itself"
    );
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    drop((up, late));
}

#[test]
fn demo_forms_and_heals_an_erlang_distribution_cluster() {
    let out = muster().args(["demo", "--nodes", "3"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("full mesh: 3 nodes, 6 connections"), "{text}");
    assert!(text.contains("stopping demo2@127.0.0.1"), "{text}");
    assert!(text.contains("disconnected demo2@127.0.0.1"), "{text}");
    assert!(text.contains("lost demo2@127.0.0.1"), "{text}");
    assert!(text.contains("healed: full mesh again"), "{text}");
    assert!(
        text.contains("erl -name you@127.0.0.1 -setcookie muster-demo"),
        "{text}"
    );
    assert!(!text.contains("rejected"), "{text}");
}

#[test]
fn the_erlang_connector_is_configured_and_checked_with_its_cookie_hidden() {
    let path = temp_config(
        "erlang.toml",
        "[node]\nname = \"rust@127.0.0.1\"\nconnector = \"erlang\"\n[connector]\nepmd_port = 4370\n\
         [topologies.local]\nstrategy = \"local_epmd\"\n",
    );
    let out = muster()
        .args(["check", "--config", &path])
        .env("MUSTER_COOKIE", "s3cret")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("connector = \"erlang\""), "{text}");
    assert!(
        text.contains("# cookie: from MUSTER_COOKIE (not shown)"),
        "{text}"
    );
    assert!(!text.contains("s3cret"), "{text}");
    assert!(
        text.contains("epmd_port = 4370")
            && text.contains("hidden = true")
            && text.contains("tick_time = 60000"),
        "{text}"
    );
    // No cookie anywhere: an error naming the key.
    let out = muster()
        .args(["check", "--config", &path])
        .env_remove("MUSTER_COOKIE")
        .env("HOME", "/nonexistent")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`connector.cookie`: no cookie"), "{err}");
}

#[test]
fn run_refuses_an_erlang_listen_address_it_cannot_have() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let path = temp_config(
        "listen.toml",
        &format!(
            "[node]\nname = \"a@127.0.0.1\"\nconnector = \"erlang\"\n[connector]\n\
             cookie = \"c\"\nlisten = \"{addr}\"\nembedded_epmd = \"never\"\n\
             [topologies.app]\nstrategy = \"epmd\"\nconfig = {{ hosts = [\"b@127.0.0.1\"] }}\n"
        ),
    );
    let out = muster().args(["run", "--config", &path]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("listen = \"{addr}\"")) && err.contains("in use"),
        "{err}"
    );
}

fn simulate(path: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["simulate", "--config", path];
    args.extend_from_slice(extra);
    muster().args(&args).output().unwrap()
}

/// `muster simulate` runs the user's own file in virtual time: the same arguments print the
/// same bytes, another seed another run; the summary says when the mesh formed and healed.
#[test]
fn simulate_replays_a_gossip_erlang_cluster_through_faults_byte_for_byte() {
    let path = temp_config(
        "sim-gossip.toml",
        "[node]\nname = \"app@10.0.0.1\"\nconnector = \"erlang\"\n[connector]\ncookie = \"c\"\n\
         [topologies.lan]\nstrategy = \"gossip\"\n",
    );
    let args = [
        "--nodes",
        "6",
        "--duration",
        "60s",
        "--partition",
        "10s:10s",
        "--crash",
        "30s:5s",
        "--loss",
        "0.1",
    ];
    let a = simulate(&path, &args);
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    let b = simulate(&path, &args);
    assert_eq!(a.stdout, b.stdout, "same arguments, same bytes");
    let mut other = args.to_vec();
    other.extend(["--seed", "7"]);
    assert_ne!(simulate(&path, &other).stdout, a.stdout, "another seed");
    let text = String::from_utf8(a.stdout).unwrap();
    for want in [
        "app@10.0.0.6 [lan] connected app@10.0.0.1",
        "full mesh after",
        "after the partition ended at 20.000s",
        "after the crash ended at 35.000s",
        "no invariant violated",
    ] {
        assert!(text.contains(want), "{want:?} in:\n{text}");
    }
    assert!(!text.contains("not healed"), "{text}");
    // JSON: one object per event, then the summary.
    let json = simulate(&path, &["--format", "json", "--duration", "20s"]);
    let out = String::from_utf8(json.stdout).unwrap();
    let last: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(last["summary"]["nodes"], 5);
    assert!(last["summary"]["full_mesh_ms"].as_u64().is_some());
    assert_eq!(last["summary"]["connects"], 20);
}

/// Kubernetes and static topologies are simulated too; a strategy the simulator has no
/// service for is refused, naming the topology.
#[test]
fn simulate_serves_kubernetes_and_refuses_what_it_cannot_simulate() {
    let k8s = temp_config(
        "sim-k8s.toml",
        "[node]\nname = \"app@10.1.0.1\"\nconnector = \"tcp\"\n[connector]\nport = 4000\n\
         [topologies.k8s]\nstrategy = \"kubernetes\"\n\
         config = { kubernetes_node_basename = \"app\", kubernetes_service_name = \"app\", \
         kubernetes_namespace = \"prod\", kubernetes_master = \"10.96.0.1:443\" }\n",
    );
    let out = simulate(&k8s, &["--nodes", "4", "--crash", "10s:5s"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("[k8s] connected app@10.1.0.4"), "{text}");
    assert!(
        text.contains("[k8s] lost app@10.1.0.4"),
        "a crashed pod is not ready: {text}"
    );
    assert!(text.contains("healed"), "{text}");
    let hosts = temp_config(
        "sim-hosts.toml",
        "[node]\nname = \"a@h1\"\nconnector = \"erlang\"\n[connector]\ncookie = \"c\"\n\
         [topologies.erl]\nstrategy = \"erlang_hosts\"\n",
    );
    let out = simulate(&hosts, &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("topology erl: strategy erlang_hosts cannot be simulated"),
        "{err}"
    );
}

/// A postgres topology is simulated against a simulated PostgreSQL server at the configured
/// host and port; one that needs TLS is refused, naming the topology.
#[test]
fn simulate_serves_postgres_without_tls() {
    let pg = temp_config(
        "sim-pg.toml",
        "[node]\nname = \"app@10.2.0.1\"\nconnector = \"tcp\"\n[connector]\nport = 4000\n\
         [topologies.db]\nstrategy = \"postgres\"\n\
         config = { url = \"postgres://app@db.internal:5433/app?sslmode=disable\", \
         heartbeat_interval = 1000 }\n",
    );
    let out = simulate(&pg, &["--nodes", "3", "--crash", "10s:5s"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("[db] connected app@10.2.0.3"), "{text}");
    assert!(text.contains("full mesh after"), "{text}");
    assert!(text.contains("healed"), "{text}");
    let tls = temp_config(
        "sim-pg-tls.toml",
        "[node]\nname = \"app@10.2.0.1\"\nconnector = \"tcp\"\n[connector]\nport = 4000\n\
         [topologies.db]\nstrategy = \"postgres\"\n\
         config = { url = \"postgres://app@db.internal/app?sslmode=require\" }\n",
    );
    let out = simulate(&tls, &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("topology db: the simulated PostgreSQL server has no TLS"),
        "{err}"
    );
}

/// `ec2` and `ecs` topologies are simulated against simulated EC2 and ECS APIs at their
/// `http://` endpoint_url, which check the signatures with the environment's keys; an https
/// endpoint is refused, naming the topology.
#[test]
fn simulate_serves_ec2_and_ecs_over_http() {
    let path = temp_config(
        "sim-aws.toml",
        "[node]\nname = \"app@10.3.0.1\"\nconnector = \"tcp\"\n[connector]\nport = 4000\n\
         [topologies.ec2]\nstrategy = \"ec2\"\n\
         config = { ec2_tagname = \"cluster\", ec2_tagvalue = \"web\", region = \"us-east-1\", \
         endpoint_url = \"http://10.3.9.1:5000\", polling_interval = 2000, page_size = 5 }\n\
         [topologies.ecs]\nstrategy = \"ecs\"\n\
         config = { cluster = \"prod\", service_name = \"web\", region = \"us-east-1\", \
         endpoint_url = \"http://10.3.9.2\" }\n",
    );
    let out = muster()
        .args([
            "simulate", "--config", &path, "--nodes", "7", "--crash", "10s:5s",
        ])
        .env("AWS_ACCESS_KEY_ID", "AKIDSIM")
        .env("AWS_SECRET_ACCESS_KEY", "s3cr3t")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("[ec2] connected app@10.3.0.7"), "{text}");
    assert!(text.contains("[ecs] discovered app@10.3.0.7"), "{text}");
    assert!(text.contains("full mesh after"), "{text}");
    assert!(text.contains("healed"), "{text}");
    assert!(!text.contains("discovery_failed"), "{text}");
    let tls = path.replace("sim-aws.toml", "sim-aws-tls.toml");
    let source = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&tls, source.replace("http://10.3.9.2", "https://10.3.9.2")).unwrap();
    let out = muster()
        .args(["simulate", "--config", &tls])
        .env("AWS_ACCESS_KEY_ID", "AKIDSIM")
        .env("AWS_SECRET_ACCESS_KEY", "s3cr3t")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("topology ecs: the simulated ecs API has no TLS"),
        "{err}"
    );
}

#[test]
fn simulate_serves_etcd_without_tls() {
    let etcd = temp_config(
        "sim-etcd.toml",
        "[node]\nname = \"app@10.2.0.1\"\nconnector = \"tcp\"\n[connector]\nport = 4000\n\
         [topologies.kv]\nstrategy = \"etcd\"\n\
         config = { endpoints = [\"http://etcd.internal\"], ttl = 3 }\n",
    );
    let out = simulate(&etcd, &["--nodes", "3", "--crash", "10s:5s"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("[kv] connected app@10.2.0.3"), "{text}");
    // The crashed node's lease expired: the others lost it.
    assert!(text.contains("[kv] lost app@10.2.0.3"), "{text}");
    assert!(text.contains("full mesh after"), "{text}");
    assert!(text.contains("healed"), "{text}");
    let tls = temp_config(
        "sim-etcd-tls.toml",
        "[node]\nname = \"app@10.2.0.1\"\nconnector = \"tcp\"\n[connector]\nport = 4000\n\
         [topologies.kv]\nstrategy = \"etcd\"\n\
         config = { endpoints = [\"https://etcd.internal:2379\"] }\n",
    );
    let out = simulate(&tls, &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("topology kv: the simulated etcd has no TLS"),
        "{err}"
    );
}

/// Logs written to a file or a pipe (a container's log) carry no colour codes and no empty
/// fields.
#[test]
fn logs_off_a_terminal_have_no_colour_and_no_empty_fields() {
    let path = temp_config(
        "logs.toml",
        "[node]\nname = \"x@127.0.0.1\"\n[topologies.a]\nstrategy = \"epmd\"\n\
         config = { hosts = [\"b@127.0.0.9\"] }\n",
    );
    let mut child = muster()
        .args(["run", "--config", &path])
        .env("MUSTER_LOG", "info")
        .env_remove("NO_COLOR")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut line = String::new();
    // The first log line is the discovery, at once.
    BufReader::new(stderr).read_line(&mut line).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(line.contains("discovered b@127.0.0.9"), "{line:?}");
    assert!(!line.contains('\u{1b}'), "no ANSI codes: {line:?}");
    assert!(!line.contains("=\"\""), "no empty fields: {line:?}");
}

/// The node's name from the environment (`${POD_IP}`) or from `--name`; `--help` everywhere.
#[test]
fn the_name_comes_from_the_environment_or_the_command_line() {
    let path = temp_config(
        "env.toml",
        "[node]\nname = \"app@${POD_IP}\"\n[topologies.a]\nstrategy = \"epmd\"\n\
         config = { hosts = [\"b@127.0.0.9\"] }\n",
    );
    let out = muster()
        .args(["check", "--config", &path])
        .env("POD_IP", "10.1.2.3")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("name = \"app@10.1.2.3\""));
    let out = muster()
        .args(["check", "--config", &path, "--name", "x@10.9.9.9"])
        .env_remove("POD_IP")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("name = \"x@10.9.9.9\""));
    let out = muster()
        .args(["check", "--config", &path])
        .env_remove("POD_IP")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("POD_IP is not set"));
    for cmd in ["run", "check", "demo", "simulate"] {
        let out = muster().args([cmd, "--help"]).output().unwrap();
        assert!(out.status.success(), "{cmd} --help");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage:"),
            "{cmd}"
        );
    }
}

/// One request to the admin endpoint: the status code and the body.
fn get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: muster\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text[9..12].parse().unwrap();
    let body = text.split_once("\r\n\r\n").unwrap().1.to_owned();
    (status, body)
}

/// `[admin]`: /livez answers while the loop runs, /readyz says 503 (and why) until enough
/// members are connected and 200 then, /metrics is Prometheus' text format — read by a
/// Prometheus parser, not ours.
#[test]
fn the_admin_endpoint_answers_liveness_readiness_and_metrics() {
    let probe = TcpListener::bind("127.0.0.1:0").unwrap();
    let admin = probe.local_addr().unwrap().to_string();
    drop(probe);
    let free = TcpListener::bind("127.0.0.2:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let path = temp_config(
        "admin.toml",
        &format!(
            "[node]\nname = \"me@127.0.0.1\"\nconnector = \"tcp\"\n[connector]\nport = {port}\n\
             [admin]\nlisten = \"{admin}\"\nready_min_members = 1\n\
             [topologies.app]\nstrategy = \"epmd\"\n\
             [topologies.app.config]\nhosts = [\"late@127.0.0.2\"]\ntimeout = 1000\n\
             [topologies.app.connect]\nbackoff_base = 50\nbackoff_max = 200\n"
        ),
    );
    let mut child = muster()
        .args(["run", "--config", &path, "--format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let rx = lines(&mut child);
    let mut seen = Vec::new();
    wait_for(&rx, &mut seen, |v| v["event"] == "connect_failed");
    assert_eq!(get(&admin, "/livez"), (200, "ok\n".to_owned()));
    let (status, why) = get(&admin, "/readyz");
    assert_eq!(
        (status, why.as_str()),
        (503, "not ready: 0 of 1 members connected\n")
    );
    let late = TcpListener::bind(("127.0.0.2", port)).unwrap();
    wait_for(&rx, &mut seen, |v| v["event"] == "connected");
    assert_eq!(get(&admin, "/readyz").0, 200);
    let (status, text) = get(&admin, "/metrics");
    assert_eq!(status, 200);
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let value = |name: &str| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name)
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            })
            .unwrap_or_else(|| panic!("{name} in {text}"))
    };
    assert_eq!(value("muster_members"), 1.0);
    assert!(value("muster_connected_total") >= 1.0);
    assert!(value("muster_connect_failed_total") >= 1.0);
    assert_eq!(value("muster_build_info"), 1.0);
    assert!(
        scrape.docs.contains_key("muster_connected_total"),
        "HELP lines"
    );
    // Per topology and kind, and the connect latency as a histogram.
    let connected = scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == "muster_events_total"
                && s.labels.get("topology") == Some("app")
                && s.labels.get("event") == Some("connected")
        })
        .unwrap_or_else(|| panic!("per-topology connected in {text}"));
    assert!(matches!(connected.value, prometheus_parse::Value::Counter(v) if v == 1.0));
    let histogram = scrape
        .samples
        .iter()
        .find(|s| s.metric == "muster_connect_seconds")
        .unwrap_or_else(|| panic!("the histogram in {text}"));
    match &histogram.value {
        prometheus_parse::Value::Histogram(buckets) => {
            assert_eq!(buckets.last().map(|b| b.count), Some(1.0), "{text}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(get(&admin, "/nothing").0, 404);
    // Idle connections holding half a request cannot keep a probe out: one more than the cap
    // closes the oldest.
    let idle: Vec<std::net::TcpStream> = (0..40)
        .map(|_| {
            use std::io::Write;
            let mut s = std::net::TcpStream::connect(&admin).unwrap();
            s.write_all(b"GET /livez HTTP/1.1\r\n").unwrap();
            s
        })
        .collect();
    assert_eq!(get(&admin, "/livez").0, 200);
    drop(idle);
    child.kill().unwrap();
    child.wait().unwrap();
    drop(late);
}

/// A discovery that brings a hundred thousand nodes at once is printed whole: the tool holds
/// the events instead of dropping all but a few thousand (and would say `missed` if it could
/// not).
#[test]
fn a_hundred_thousand_nodes_at_once_are_all_printed() {
    const N: usize = 100_000;
    let hosts: Vec<String> = (0..N)
        .map(|i| format!("\"n{i}@10.{}.{}.{}\"", i >> 16, (i >> 8) & 255, i & 255))
        .collect();
    let path = temp_config(
        "many.toml",
        &format!(
            "[node]\nname = \"me@127.0.0.1\"\n[topologies.big]\nstrategy = \"epmd\"\n\
             [topologies.big.config]\nhosts = [{}]\n",
            hosts.join(", ")
        ),
    );
    let mut child = muster()
        .args(["run", "--config", &path, "--format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let rx = lines(&mut child);
    let mut discovered = 0;
    while discovered < N {
        let line = rx
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("only {discovered} of {N} discovered lines"));
        assert!(!line.contains("\"missed\""), "{line}");
        if line.contains("\"discovered\"") {
            discovered += 1;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Whether a thread of process `pid` is in a `write` to its stdout that has not returned: the
/// pipe is full and the writer waits for the reader.
#[cfg(target_os = "linux")]
fn blocked_writing_stdout(pid: u32) -> bool {
    // write and writev, by this architecture's numbers.
    let calls: &[&str] = if cfg!(target_arch = "aarch64") {
        &["64", "66"]
    } else {
        &["1", "20"]
    };
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.filter_map(Result::ok).any(|t| {
        let text = std::fs::read_to_string(t.path().join("syscall")).unwrap_or_default();
        let mut f = text.split_whitespace();
        matches!((f.next(), f.next()), (Some(n), Some("0x1")) if calls.contains(&n))
    })
}

/// A reader that stops reading stdout (a stalled log collector) stops only the output: the
/// node goes on serving (its admin endpoint answers) and leaves on SIGTERM, though nothing
/// it prints is ever read. Before, the node's one thread waited in `write` for good. The
/// leave timeout is an hour: a tool that did not leave (waiting for room in stdout instead)
/// would wait it out, and the failsafe below fails the test.
#[cfg(target_os = "linux")]
#[test]
fn a_stalled_stdout_stops_neither_the_node_nor_its_leave() {
    // Three thousand discovered lines are far more than a pipe holds.
    let hosts: Vec<String> = (0..3000)
        .map(|i| format!("\"n{i}@10.0.{}.{}\"", i >> 8, i & 255))
        .collect();
    let probe = TcpListener::bind("127.0.0.1:0").unwrap();
    let admin = probe.local_addr().unwrap().to_string();
    drop(probe);
    let path = temp_config(
        "stalled.toml",
        &format!(
            "[node]\nname = \"me@127.0.0.1\"\nleave_timeout = 3600000\n[admin]\nlisten = \"{admin}\"\n\
             [topologies.big]\nstrategy = \"epmd\"\n[topologies.big.config]\nhosts = [{}]\n",
            hosts.join(", ")
        ),
    );
    let mut child = muster()
        .args(["run", "--config", &path, "--format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Held and never read.
    let _stdout = child.stdout.take().unwrap();
    let pid = child.id();
    // A failing assertion must not leave the tool running.
    let mut child = KillOnDrop(child);
    // A failsafe, not a synchronisation: a broken tool fails the test instead of hanging it.
    let failsafe = std::time::Instant::now() + Duration::from_secs(60);
    while !blocked_writing_stdout(pid) {
        assert!(
            std::time::Instant::now() < failsafe,
            "the output never filled the pipe"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut s = std::net::TcpStream::connect(&admin).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    use std::io::{Read, Write};
    s.write_all(b"GET /livez HTTP/1.1\r\nHost: muster\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    let read = s.read_to_string(&mut text);
    assert!(
        text.starts_with("HTTP/1.1 200"),
        "no answer from /livez while stdout is stalled: {read:?} {text:?}"
    );
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > failsafe + Duration::from_secs(60) {
            panic!("no exit after SIGTERM while stdout is stalled");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success(), "{status:?}");
}

/// A child process killed (and reaped) when the test ends, however it ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
