//! The `muster` command-line tool.
//!
//! ```text
//! muster demo [--nodes N] [--stay] [--format text|json]
//! muster run --config FILE [--name NAME] [--format text|json]
//! muster check --config FILE [--name NAME]
//! muster simulate --config FILE [--nodes N] [--seed S] [--duration D] [--loss P]
//!                 [--partition AT:FOR] [--crash AT:FOR] [--format text|json]
//! ```
//!
//! Exit status: 0 on success, 1 on a runtime failure, 2 on a bad command line or a bad
//! configuration file (the message names the file, the line and the key).

use std::process::ExitCode;
use std::time::{Duration, Instant};

mod cli;

use clap::{Parser, Subcommand};
use cli::demo::{self, DemoOptions};
use cli::output::{Format, event_line};
use cli::simulate::SimulateOptions;
use muster::config::ConfigFile;
use muster::core::strategy::{Environment, Registry};

const AFTER_HELP: &str = "\
environment:
  MUSTER_LOG        log level on stderr: error (default), warn, info, debug, trace
  MUSTER_NODE_NAME  this node's name, over [node] name
  NO_COLOR          no colour in logs (there is none off a terminal anyway)

exit status: 0 on success, 1 on a runtime failure (or a violated invariant in simulate),
2 on a bad command line or a bad configuration file";

/// muster: automatic cluster formation
#[derive(Debug, Parser)]
#[command(name = "muster", version, after_help = AFTER_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// A real Erlang-distribution cluster forming on this host, losing a node and healing
    Demo {
        /// Nodes in the cluster
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(2..=64))]
        nodes: u16,
        /// Keep it running, for a real erl shell to join
        #[arg(long)]
        stay: bool,
        /// text or json
        #[arg(long, default_value = "text")]
        format: Format,
    },
    /// Run the topologies of FILE until SIGINT or SIGTERM (which leave), one line per event.
    /// String values in FILE may use ${VAR} and ${VAR:-default} (name = "app@${POD_IP}")
    Run {
        /// The configuration file
        #[arg(short, long, value_name = "FILE")]
        config: String,
        /// This node's name, over [node] name (also MUSTER_NODE_NAME)
        #[arg(long)]
        name: Option<String>,
        /// text or json
        #[arg(long, default_value = "text")]
        format: Format,
    },
    /// Validate FILE and print it resolved, with every default filled in (itself a valid
    /// configuration)
    Check {
        /// The configuration file
        #[arg(short, long, value_name = "FILE")]
        config: String,
        /// This node's name, over [node] name (also MUSTER_NODE_NAME)
        #[arg(long)]
        name: Option<String>,
    },
    /// Run N nodes of FILE in virtual time over a simulated network and simulated discovery
    /// services; print their events and a summary. Same arguments, same bytes
    Simulate(SimulateOptions),
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

fn load(path: &str, name: Option<&str>) -> Result<ConfigFile, ExitCode> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        eprintln!("muster: {path}: cannot read: {e}");
        ExitCode::from(2)
    })?;
    let mut env = Environment::from_vars(std::env::vars_os().map(|(k, v)| {
        (
            k.to_string_lossy().into_owned(),
            v.to_string_lossy().into_owned(),
        )
    }));
    if let Some(name) = name {
        env = env.set(muster::config::NAME_VAR, name);
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
    let observed = std::sync::Arc::new(cli::admin::Observed::default());
    let _admin = match &admin {
        Some(a) => match tokio::net::TcpListener::bind(a.listen).await {
            Ok(l) => {
                eprintln!(
                    "muster: admin endpoint on http://{} (/livez, /readyz, /metrics)",
                    a.listen
                );
                let serve = cli::admin::serve(l, handle.clone(), a.clone(), observed.clone());
                Some(tokio::spawn(serve))
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
                Some(e) => print_event(&e, &events, &mut missed, &observed, format, start),
                None => break,
            },
        }
    }
    // Leave as a node should: disconnect what this node connected, unregister from EPMD,
    // close the listeners — within leave_timeout, printing what happens; a second signal
    // exits at once.
    observed.set_leaving();
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
                Some(e) => print_event(&e, &events, &mut missed, &observed, format, start),
                None => break,
            },
        }
    }
    // What the leave said last.
    while let Ok(Some(e)) = tokio::time::timeout(Duration::ZERO, events.recv()).await {
        print_event(&e, &events, &mut missed, &observed, format, start);
    }
    ExitCode::SUCCESS
}

/// Prints `e` (after a `missed` line if events were missed before it) and counts it.
fn print_event(
    e: &muster::core::Event,
    events: &muster::tokio::Events,
    missed: &mut u64,
    observed: &cli::admin::Observed,
    format: Format,
    start: Instant,
) {
    report_missed(events, missed, format, start.elapsed());
    observed.set_missed(*missed);
    observed.observe(e);
    // A closed or failing stdout must not take the node down (nor cut its leave short).
    use std::io::Write as _;
    let _ = writeln!(
        std::io::stdout(),
        "{}",
        event_line(e, format, start.elapsed(), None)
    );
}

/// Says how many events the output missed since it last said so: a `missed` line.
fn report_missed(events: &muster::tokio::Events, said: &mut u64, format: Format, t: Duration) {
    use std::io::Write as _;
    let now = events.missed();
    if now > *said {
        let n = now - *said;
        *said = now;
        let _ = match format {
            Format::Text => writeln!(
                std::io::stdout(),
                "{:>9.3}s missed {n} events (the output fell behind; see muster_events_missed_total)",
                t.as_secs_f64()
            ),
            Format::Json => writeln!(
                std::io::stdout(),
                "{}",
                serde_json::json!({"t": t.as_secs_f64(), "event": "missed", "count": n})
            ),
        };
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    // `run` is one node: one thread serves it, and its memory stays in one allocator arena
    // (what a flood of connections took is given back, not kept in per-thread arenas). The
    // demo runs many nodes and uses every core.
    let mut builder = if matches!(cli.command, Command::Run { .. }) {
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
    match cli.command {
        Command::Check { config, name } => match load(&config, name.as_deref()) {
            Ok(c) => {
                print!("{}", c.describe());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Run {
            config,
            name,
            format,
        } => match load(&config, name.as_deref()) {
            Ok(c) => runtime.block_on(run(c, format)),
            Err(code) => code,
        },
        Command::Demo {
            nodes,
            stay,
            format,
        } => {
            let opts = DemoOptions {
                nodes: usize::from(nodes),
                format,
                stay,
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
        Command::Simulate(opts) => match cli::simulate::run(&opts) {
            Ok(code) => ExitCode::from(code),
            Err(e) => {
                eprintln!("muster simulate: {e}");
                ExitCode::from(2)
            }
        },
    }
}
