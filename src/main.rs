//! The `muster` command-line tool.
//!
//! ```text
//! muster demo [--nodes N] [--format text|json]
//! muster run --config FILE [--format text|json]
//! muster check --config FILE
//! muster simulate --config FILE [--nodes N] [--seed S] [--duration D] [--loss P]
//!                 [--partition AT:FOR] [--crash AT:FOR] [--format text|json]
//! ```
//!
//! Exit status: 0 on success, 1 on a runtime failure, 2 on a bad command line or a bad
//! configuration file (the message names the file, the line and the key).

use std::process::ExitCode;
use std::time::{Duration, Instant};

mod cli;

use cli::demo::{self, DemoOptions};
use cli::output::{Format, event_line};
use cli::simulate::{SimulateOptions, parse_duration, parse_window};
use muster::config::ConfigFile;
use muster::core::strategy::{Environment, Registry};

const USAGE: &str = "\
muster: automatic cluster formation

usage:
  muster demo [--nodes N] [--stay] [--format text|json]
      a real Erlang-distribution cluster of N nodes (default 5) forming on this host,
      losing a node and healing; --stay keeps it running for a real erl shell to join
  muster run --config FILE [--name NAME] [--format text|json]
      run the topologies of FILE until SIGINT or SIGTERM, one line per event; --name (or
      MUSTER_NODE_NAME) overrides [node] name. String values in FILE may use ${VAR} and
      ${VAR:-default} (e.g. name = \"app@${POD_IP}\")
  muster check --config FILE
      validate FILE and print it resolved, with every default filled in
  muster simulate --config FILE [--nodes N] [--seed S] [--duration D] [--loss P]
                  [--partition AT:FOR] [--crash AT:FOR] [--format text|json]
      run N nodes (default 5) of FILE in virtual time (default 60s, seed 0) over a
      simulated network and simulated discovery services; print their events and a
      summary (exit 1 if an invariant was violated). --loss: datagram loss (0..1);
      --partition: split the nodes in halves at AT for FOR; --crash: the last node down
      at AT for FOR. Durations: 500ms, 30s, 10m, 1h. Same arguments, same bytes.

environment:
  MUSTER_LOG        log level on stderr: error (default), warn, info, debug, trace
  MUSTER_NODE_NAME  this node's name, over [node] name
  NO_COLOR          no colour in logs (there is none off a terminal anyway)
";

struct Args {
    command: String,
    config: Option<String>,
    format: Format,
    nodes: Option<usize>,
    stay: bool,
    help: bool,
    name: Option<String>,
    sim: SimulateOptions,
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let command = it.next().ok_or("no command given")?;
    let mut args = Args {
        command,
        config: None,
        format: Format::Text,
        nodes: None,
        stay: false,
        help: false,
        name: None,
        sim: SimulateOptions::default(),
    };
    let max_nodes = if args.command == "simulate" { 1000 } else { 64 };
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (a.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "--config" | "-c" => args.config = Some(value("--config")?),
            "--name" => args.name = Some(value("--name")?),
            "--format" => args.format = value("--format")?.parse()?,
            "--stay" => args.stay = true,
            "-h" | "--help" => args.help = true,
            "--nodes" => {
                let v = value("--nodes")?;
                let n: usize = v
                    .parse()
                    .map_err(|_| format!("--nodes: {v:?} is not a number"))?;
                if !(2..=max_nodes).contains(&n) {
                    return Err(format!("--nodes: {n} is not between 2 and {max_nodes}"));
                }
                args.nodes = Some(n);
            }
            "--seed" => {
                let v = value("--seed")?;
                args.sim.seed = v
                    .parse()
                    .map_err(|_| format!("--seed: {v:?} is not a number"))?;
            }
            "--duration" => {
                let v = value("--duration")?;
                args.sim.duration = parse_duration(&v).map_err(|e| format!("--duration: {e}"))?;
            }
            "--loss" => {
                let v = value("--loss")?;
                args.sim.loss = v
                    .parse::<f64>()
                    .ok()
                    .filter(|p| (0.0..=1.0).contains(p))
                    .ok_or_else(|| format!("--loss: {v:?} is not a probability (0 to 1)"))?;
            }
            "--partition" => {
                let v = value("--partition")?;
                args.sim.partition =
                    Some(parse_window(&v).map_err(|e| format!("--partition: {e}"))?);
            }
            "--crash" => {
                let v = value("--crash")?;
                args.sim.crash = Some(parse_window(&v).map_err(|e| format!("--crash: {e}"))?);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

fn init_logging() {
    let level = match std::env::var("MUSTER_LOG").as_deref() {
        Ok("trace") => tracing::Level::TRACE,
        Ok("debug") => tracing::Level::DEBUG,
        Ok("info") => tracing::Level::INFO,
        Ok("warn") => tracing::Level::WARN,
        _ => tracing::Level::ERROR,
    };
    // Colour only on a terminal (container logs are files), and never with NO_COLOR.
    use std::io::IsTerminal;
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .init();
}

fn load(args: &Args) -> Result<ConfigFile, ExitCode> {
    let Some(path) = &args.config else {
        eprintln!(
            "muster {}: --config FILE is required\n\n{USAGE}",
            args.command
        );
        return Err(ExitCode::from(2));
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        eprintln!("muster: {path}: cannot read: {e}");
        ExitCode::from(2)
    })?;
    let mut env = Environment::from_vars(std::env::vars());
    if let Some(name) = &args.name {
        env = env.set(muster::config::NAME_VAR, name.clone());
    }
    let file =
        ConfigFile::parse_with(path, &text, &Registry::builtin().with_env(env)).map_err(|e| {
            eprintln!("muster: {e}");
            ExitCode::from(2)
        })?;
    for w in &file.warnings {
        eprintln!("muster: warning: {w}");
    }
    Ok(file)
}

async fn wait_for_signal() -> std::io::Result<&'static str> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::select! {
            _ = term.recv() => Ok("SIGTERM"),
            _ = int.recv() => Ok("SIGINT"),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await?;
        Ok("Ctrl-C")
    }
}

async fn run(config: ConfigFile, format: Format) -> ExitCode {
    let path = config.path.clone();
    let leave_timeout = config.leave_timeout;
    let admin = config.admin.clone();
    let started = match cli::start::start(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("muster: {path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(epmd) = &started.epmd {
        eprintln!(
            "muster: muster's own EPMD answers on {} (nodes of this host only may register)",
            epmd.local_addr()
        );
    }
    let _epmd = started.epmd;
    let (handle, mut events) = match started.builder.spawn() {
        Ok(x) => x,
        Err(e) => {
            eprintln!("muster: {path}: {e}");
            return ExitCode::from(2);
        }
    };
    let _admin = match &admin {
        Some(a) => match tokio::net::TcpListener::bind(a.listen).await {
            Ok(l) => {
                eprintln!(
                    "muster: admin endpoint on http://{} (/livez, /readyz, /metrics)",
                    a.listen
                );
                Some(tokio::spawn(cli::admin::serve(
                    l,
                    handle.clone(),
                    a.clone(),
                )))
            }
            Err(e) => {
                eprintln!("muster: {path}: [admin] listen = {}: {e}", a.listen);
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let start = Instant::now();
    let mut missed = 0;
    let signal = wait_for_signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            s = &mut signal => {
                match s {
                    Ok(name) => eprintln!("muster: {name}: stopping"),
                    Err(e) => eprintln!("muster: cannot wait for signals: {e}; stopping"),
                }
                break;
            }
            e = events.recv() => match e {
                Some(e) => println!("{}", event_line(&e, format, start.elapsed(), None)),
                None => break,
            },
        }
    }
    // Leave as a node should: disconnect what this node connected, unregister from EPMD,
    // close the listeners — within leave_timeout, printing what happens; a second signal
    // exits at once.
    let leave = handle.leave();
    let deadline = tokio::time::sleep(leave_timeout);
    let again = wait_for_signal();
    tokio::pin!(leave, deadline, again);
    loop {
        tokio::select! {
            _ = &mut leave => break,
            _ = &mut deadline => {
                eprintln!(
                    "muster: leaving took longer than {} ms (leave_timeout): exiting",
                    leave_timeout.as_millis()
                );
                break;
            }
            s = &mut again => {
                if let Ok(name) = s {
                    eprintln!("muster: {name} again: exiting at once");
                }
                break;
            }
            e = events.recv() => match e {
                Some(e) => {
                    report_missed(&events, &mut missed, format, start.elapsed());
                    println!("{}", event_line(&e, format, start.elapsed(), None));
                }
                None => break,
            },
        }
    }
    // What the leave said last.
    while let Ok(Some(e)) = tokio::time::timeout(Duration::ZERO, events.recv()).await {
        println!("{}", event_line(&e, format, start.elapsed(), None));
    }
    ExitCode::SUCCESS
}

/// Says how many events the output missed since it last said so: a `missed` line.
fn report_missed(events: &muster::tokio::Events, said: &mut u64, format: Format, t: Duration) {
    let now = events.missed();
    if now > *said {
        let n = now - *said;
        *said = now;
        match format {
            Format::Text => println!(
                "{:>9.3}s missed {n} events (the output fell behind; they are counted in the metrics)",
                t.as_secs_f64()
            ),
            Format::Json => println!(
                "{}",
                serde_json::json!({"t": t.as_secs_f64(), "event": "missed", "count": n})
            ),
        }
    }
}

fn main() -> ExitCode {
    let mut raw = std::env::args().skip(1).peekable();
    match raw.peek().map(String::as_str) {
        None | Some("-h" | "--help" | "help") => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some("-V" | "--version") => {
            println!("muster {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    let args = match parse_args(raw) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("muster: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if args.help {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    init_logging();
    // `run` is one node: one thread serves it, and its memory stays in one allocator arena
    // (what a flood of connections took is given back, not kept in per-thread arenas). The
    // demo runs many nodes and uses every core.
    let mut builder = if args.command == "run" {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("muster: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match args.command.as_str() {
        "check" => match load(&args) {
            Ok(c) => {
                print!("{}", c.describe());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        "run" => match load(&args) {
            Ok(c) => runtime.block_on(run(c, args.format)),
            Err(code) => code,
        },
        "demo" => {
            let opts = DemoOptions {
                nodes: args.nodes.unwrap_or(5),
                format: args.format,
                stay: args.stay,
                ..DemoOptions::default()
            };
            match runtime.block_on(demo::run(opts)) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("muster demo: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        "simulate" => {
            let Some(config) = args.config.clone() else {
                eprintln!("muster simulate: --config FILE is required\n\n{USAGE}");
                return ExitCode::from(2);
            };
            let opts = SimulateOptions {
                config,
                nodes: args.nodes.unwrap_or(5),
                format: args.format,
                ..args.sim.clone()
            };
            match cli::simulate::run(&opts) {
                Ok(code) => ExitCode::from(code),
                Err(e) => {
                    eprintln!("muster simulate: {e}");
                    ExitCode::from(2)
                }
            }
        }
        other => {
            eprintln!("muster: unknown command {other:?}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}
