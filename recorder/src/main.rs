//! The `recorder` command line: a thin shell over the recorder library. `run` records a
//! scenario, `check` validates one without starting anything, `cleanup` removes what a killed
//! recorder left behind, `jmx` lists a running service's MBeans (attaching the agent if needed). Exit codes follow docs/exit-codes.md (clap's usage errors map to 64).

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use recorder::exit;
use recorder::run::{RunOptions, Status};

#[derive(Parser, Debug)]
#[command(
    name = "recorder",
    version,
    about = "Run a compose system under a fault schedule and record everything into a trace."
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Bring the project up, run the experiment or schedule, record a trace, tear down.
    Run {
        /// The scenario file (TOML, see docs/scenario.md); with `--replay`, default: the one the
        /// recorded trace's manifest names.
        #[arg(required_unless_present = "replay")]
        scenario: Option<PathBuf>,
        /// Trace directory (overrides the scenario's `output`; `{run_id}` is replaced).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Compose project name (overrides the scenario's).
        #[arg(short, long)]
        project: Option<String>,
        /// Random seed (overrides the scenario's).
        #[arg(long, conflicts_with = "replay")]
        seed: Option<u64>,
        /// No progress line, even on a terminal.
        #[arg(short, long)]
        quiet: bool,
        /// Run the recorded run of this trace again: its scenario and specs (checked against
        /// the manifest's hashes), its seed, its random targets, the same offsets.
        #[arg(long, value_name = "TRACE")]
        replay: Option<PathBuf>,
        /// With `--replay`: run even when the scenario or specs differ from the recorded ones.
        #[arg(long, requires = "replay")]
        force: bool,
    },
    /// Validate a scenario (and its specs) against the compose configuration; start nothing.
    Check {
        /// The scenario file (TOML; see docs/scenario.md).
        scenario: PathBuf,
    },
    /// List the MBeans and attributes of a running service's JVM (attaching the recorder's
    /// agent when nothing answers, and stopping it afterwards), for writing `[sensors.jmx]`.
    Jmx {
        /// The compose service.
        service: String,
        /// Object-name pattern (default every MBean: `*:*`).
        #[arg(default_value = "*:*")]
        pattern: String,
        /// Compose project the service runs in.
        #[arg(short, long)]
        project: String,
        /// The agent's port.
        #[arg(long, default_value_t = 8778)]
        port: u16,
        /// Compose network to reach the container on (default: its first).
        #[arg(long)]
        network: Option<String>,
        /// Only read an agent that already answers; never attach.
        #[arg(long)]
        no_attach: bool,
        /// Leave the agent this command attached running.
        #[arg(long)]
        keep_agent: bool,
    },
    /// Remove containers, networks and host rules left by a killed recorder.
    Cleanup {
        /// The compose project to clean.
        #[arg(short, long, conflicts_with = "all")]
        project: Option<String>,
        /// Every project a recorder left (names starting with `ctk`, or registered by a run).
        #[arg(long)]
        all: bool,
    },
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => 0,
                _ => exit::USAGE,
            };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(exit::ENV);
        }
    };
    let code = rt.block_on(async_main(cli));
    // sensor tasks may still be parked on Docker streams; do not wait for them
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    std::process::exit(code);
}

async fn async_main(cli: Cli) -> i32 {
    match cli.command {
        Cmd::Run {
            scenario,
            output,
            project,
            seed,
            quiet,
            replay,
            force,
        } => {
            let scenario = match (scenario, &replay) {
                (Some(s), _) => s,
                (None, Some(t)) => match recorder::replay::recorded_scenario(t) {
                    Ok(s) => s,
                    Err(e) => {
                        eprintln!("error: {e}");
                        return e.exit_code();
                    }
                },
                (None, None) => {
                    eprintln!("error: give a scenario or --replay TRACE");
                    return exit::USAGE;
                }
            };
            let o = recorder::run::run(RunOptions {
                scenario,
                output,
                project,
                seed,
                quiet,
                check_only: false,
                replay,
                force,
            })
            .await;
            report(&o);
            o.exit_code
        }
        Cmd::Check { scenario } => {
            let o = recorder::run::run(RunOptions {
                scenario,
                check_only: true,
                quiet: true,
                ..RunOptions::default()
            })
            .await;
            if o.exit_code == 0 {
                if let Some(m) = &o.message {
                    println!("{m}");
                }
            } else {
                report(&o);
            }
            o.exit_code
        }
        Cmd::Jmx {
            service,
            pattern,
            project,
            port,
            network,
            no_attach,
            keep_agent,
        } => {
            let o = recorder::sensors::attach::DiscoverOptions {
                project,
                service,
                pattern,
                port,
                network,
                attach: !no_attach,
                keep_agent,
            };
            match recorder::sensors::attach::discover(&o).await {
                Ok(text) => {
                    print!("{text}");
                    0
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    e.exit_code
                }
            }
        }
        Cmd::Cleanup { project, all } => {
            match recorder::run::cleanup(project.as_deref(), all).await {
                Ok(lines) => {
                    if lines.is_empty() {
                        println!("nothing to clean up");
                    }
                    for l in lines {
                        println!("{l}");
                    }
                    0
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    e.exit_code()
                }
            }
        }
    }
}

fn report(o: &recorder::run::RunOutcome) {
    let Some(dir) = &o.trace_dir else {
        if let Some(m) = &o.message {
            if o.status == Status::Invalid {
                // refused before anything started: every error, already rendered as a
                // diagnostic (`error: FILE:LINE:COL: message` and the source excerpt)
                eprintln!("{m}");
            } else {
                for l in m.lines() {
                    eprintln!("error: {l}");
                }
            }
        }
        return;
    };
    println!("trace: {}", dir.display());
    println!("status: {} (exit {})", o.status, o.exit_code);
    if let Some(v) = &o.verdict {
        println!("verdict: {v}");
    }
    for v in &o.verdicts {
        println!("  {v}");
    }
    let per: Vec<String> = o.events.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("events: {}", per.join(" "));
    if let Some(m) = &o.message {
        eprintln!("{}: {m}", if o.exit_code == 0 { "note" } else { "error" });
    }
}
