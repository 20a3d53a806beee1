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
use cli::lines::{Lines, LogWriter};
use cli::output::{Format, event_line};
use cli::simulate::SimulateOptions;
use muster::config::ConfigFile;
use muster::core::strategy::{Environment, Registry};
use tracing_subscriber::fmt::writer::BoxMakeWriter;

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

/// Logs on stderr, through `to` when given (`muster run`'s queued stderr).
fn init_logging(to: Option<LogWriter>) {
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
        .with_writer(match to {
            Some(w) => BoxMakeWriter::new(w),
            None => BoxMakeWriter::new(std::io::stderr),
        })
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

async fn run(config: ConfigFile, format: Format, out: Lines, err: Lines) -> ExitCode {
    let path = config.path.clone();
    let leave_timeout = config.leave_timeout;
    let admin = config.admin.clone();
    let started = match cli::start::start(config).await {
        Ok(s) => s,
        Err(e) => {
            err.try_send(format!("muster: {path}: {e}"));
            return exit(out, err, ExitCode::FAILURE).await;
        }
    };
    if let Some(epmd) = &started.epmd {
        err.try_send(format!(
            "muster: muster's own EPMD answers on {} (nodes of this host only may register)",
            epmd.local_addr()
        ));
    }
    let _epmd = started.epmd;
    let (handle, mut events) = match started.builder.spawn() {
        Ok(x) => x,
        Err(e) => {
            err.try_send(format!("muster: {path}: {e}"));
            return exit(out, err, ExitCode::from(2)).await;
        }
    };
    let observed = std::sync::Arc::new(cli::admin::Observed::default());
    let _admin = match &admin {
        Some(a) => match tokio::net::TcpListener::bind(a.listen).await {
            Ok(l) => {
                err.try_send(format!(
                    "muster: admin endpoint on http://{} (/livez, /readyz, /metrics)",
                    a.listen
                ));
                let serve = cli::admin::serve(l, handle.clone(), a.clone(), observed.clone());
                Some(tokio::spawn(serve))
            }
            Err(e) => {
                err.try_send(format!(
                    "muster: {path}: [admin] listen = {}: {e}",
                    a.listen
                ));
                return exit(out, err, ExitCode::FAILURE).await;
            }
        },
        None => None,
    };
    let start = Instant::now();
    let mut missed = 0;
    let mut line = |e: &muster::core::Event, events: &muster::tokio::Events| {
        event_text(e, events, &mut missed, &observed, format, start)
    };
    // Until a signal: each event waits for room in stdout's queue, and while it waits the
    // driver's own queue holds (or counts as missed) what comes next; the node runs on.
    let signal = wait_for_signal();
    tokio::pin!(signal);
    let mut pending = None;
    let stop = loop {
        let e = tokio::select! {
            s = &mut signal => break s,
            e = events.recv() => match e {
                Some(e) => e,
                None => break Ok("the node stopped"),
            },
        };
        let text = line(&e, &events);
        tokio::select! {
            s = &mut signal => {
                pending = Some(text);
                break s;
            }
            p = out.room() => if let Some(p) = p { p.send(text) },
        }
    };
    match stop {
        Ok(name) => err.try_send(format!("muster: {name}: stopping")),
        Err(e) => err.try_send(format!("muster: cannot wait for signals: {e}; stopping")),
    }
    // Leave as a node should: disconnect what this node connected, unregister from EPMD,
    // close the listeners — within leave_timeout, printing what happens; a second signal
    // exits at once. The leave runs on its own, whatever the output does.
    observed.set_leaving();
    let leave = tokio::spawn(handle.leave());
    let deadline = tokio::time::sleep(leave_timeout);
    let again = wait_for_signal();
    tokio::pin!(leave, deadline, again);
    let mut left = false;
    let mut cut = false;
    loop {
        tokio::select! {
            biased;
            s = &mut again => {
                if let Ok(name) = s {
                    err.try_send(format!("muster: {name} again: exiting at once"));
                }
                cut = true;
                break;
            }
            _ = &mut leave => {
                left = true;
                break;
            }
            _ = &mut deadline => {
                err.try_send(format!(
                    "muster: leaving took longer than {} ms (leave_timeout): exiting",
                    leave_timeout.as_millis()
                ));
                break;
            }
            p = out.room(), if pending.is_some() => {
                if let (Some(p), Some(text)) = (p, pending.take()) {
                    p.send(text);
                }
            }
            e = events.recv(), if pending.is_none() => match e {
                Some(e) => pending = Some(line(&e, &events)),
                None => break,
            },
        }
    }
    // Left: what the leave said last, for as long as the output takes it.
    if left {
        loop {
            if pending.is_none() {
                match tokio::time::timeout(Duration::ZERO, events.recv()).await {
                    Ok(Some(e)) => pending = Some(line(&e, &events)),
                    _ => break,
                }
            }
            match tokio::time::timeout(OUTPUT_GRACE, out.room()).await {
                Ok(Some(p)) => p.send(pending.take().unwrap_or_default()),
                _ => break,
            }
        }
    }
    if !cut {
        // Whatever is ready and fits, without waiting.
        while let Some(p) = out.try_room() {
            let text = match pending.take() {
                Some(text) => text,
                None => match tokio::time::timeout(Duration::ZERO, events.recv()).await {
                    Ok(Some(e)) => line(&e, &events),
                    _ => break,
                },
            };
            p.send(text);
        }
    }
    let code = ExitCode::SUCCESS;
    if cut {
        return tokio::select! {
            c = exit(out, err, code) => c,
            _ = tokio::time::sleep(OUTPUT_GRACE) => code,
        };
    }
    // A second signal while the output drains ends the wait (it is not said: stderr may be
    // the stream that stalled).
    tokio::select! {
        c = exit(out, err, code) => c,
        _ = &mut again => code,
    }
}

/// Lets the output threads write what is queued — as long as they make progress, and at
/// most [`OUTPUT_GRACE`] without any — then exits with `code`.
async fn exit(out: Lines, err: Lines, code: ExitCode) -> ExitCode {
    if !out.finish(OUTPUT_GRACE).await {
        err.try_send("muster: stdout did not take the last events in time".into());
    }
    err.finish(OUTPUT_GRACE).await;
    code
}

/// Lines `muster run` queues for stdout (events; the driver's queue holds the rest) and for
/// stderr (logs; dropped and counted beyond it).
const STDOUT_QUEUE: usize = 1024;
const STDERR_QUEUE: usize = 256;

/// How long an exiting `muster run` waits for its output when it makes no progress.
const OUTPUT_GRACE: Duration = Duration::from_secs(1);

/// The line(s) for `e` (after a `missed` line if events were missed before it), counted.
fn event_text(
    e: &muster::core::Event,
    events: &muster::tokio::Events,
    missed: &mut u64,
    observed: &cli::admin::Observed,
    format: Format,
    start: Instant,
) -> String {
    let t = start.elapsed();
    let mut text = missed_line(events, missed, format, t).unwrap_or_default();
    observed.set_missed(*missed);
    observed.observe(e);
    text.push_str(&event_line(e, format, t, None));
    text
}

/// Says how many events the output missed since it last said so: a `missed` line, and its
/// newline.
fn missed_line(
    events: &muster::tokio::Events,
    said: &mut u64,
    format: Format,
    t: Duration,
) -> Option<String> {
    let now = events.missed();
    if now <= *said {
        return None;
    }
    let n = now - *said;
    *said = now;
    Some(match format {
        Format::Text => format!(
            "{:>9.3}s missed {n} events (the output fell behind; see muster_events_missed_total)\n",
            t.as_secs_f64()
        ),
        Format::Json => format!(
            "{}\n",
            serde_json::json!({"t": t.as_secs_f64(), "event": "missed", "count": n})
        ),
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `run` serves a node: its output must never stop it (see cli::lines).
    let queued = match cli.command {
        Command::Run { .. } => {
            match (
                Lines::spawn(std::io::stdout(), STDOUT_QUEUE, "stdout"),
                Lines::spawn(std::io::stderr(), STDERR_QUEUE, "stderr"),
            ) {
                (Ok(out), Ok(err)) => Some((out, err)),
                (Err(e), _) | (_, Err(e)) => {
                    eprintln!("muster: cannot start the output threads: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        _ => None,
    };
    init_logging(queued.as_ref().map(|(_, err)| err.log_writer()));
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
            Ok(c) => match queued {
                Some((out, err)) => runtime.block_on(run(c, format, out, err)),
                None => ExitCode::FAILURE,
            },
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
