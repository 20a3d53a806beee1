//! `muster simulate` at scale: 100 nodes of a gossip configuration for 10 virtual minutes,
//! once with the `tcp` connector and once as Erlang nodes (an EPMD per host, distribution
//! links over simulated streams). Prints the wall time and how much faster than real time it
//! ran; asserts only that the run succeeded.
//!
//! `cargo bench --features cli --bench simulate`

#![allow(clippy::unwrap_used)] // a benchmark unwraps what it set up itself

use std::process::Command;
use std::time::{Duration, Instant};

const NODES: &str = "100";
const VIRTUAL: Duration = Duration::from_secs(600);

fn main() {
    let dir = std::env::temp_dir().join(format!("muster-bench-sim-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    println!(
        "muster simulate: {NODES} nodes x {} virtual minutes",
        VIRTUAL.as_secs() / 60
    );
    for (label, connector) in [
        (
            "gossip, tcp connector",
            "connector = \"tcp\"\n[connector]\nport = 4000\n",
        ),
        (
            "gossip, Erlang nodes",
            "connector = \"erlang\"\n[connector]\ncookie = \"c\"\n",
        ),
    ] {
        let path = dir.join("sim.toml");
        let text = format!(
            "[node]\nname = \"app@10.0.0.1\"\n{connector}[topologies.lan]\nstrategy = \"gossip\"\n"
        );
        std::fs::write(&path, text).unwrap();
        let wall = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_muster"))
            .args([
                "simulate",
                "--nodes",
                NODES,
                "--duration",
                "10m",
                "--config",
            ])
            .arg(&path)
            .output()
            .unwrap();
        let took = wall.elapsed();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let summary: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.starts_with("summary:"))
            .skip(1)
            .collect();
        println!(
            "  {label}: {:.1} s of wall time, {:.0}x real time; {}",
            took.as_secs_f64(),
            VIRTUAL.as_secs_f64() / took.as_secs_f64(),
            summary
                .iter()
                .map(|l| l.trim())
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
