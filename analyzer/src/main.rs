//! The `analyzer` command line: a thin shell over the analyzer library. Parses arguments (clap
//! usage errors exit 64, not clap's 2), runs the command, prints any error as one line on stderr
//! and exits with the code of `docs/exit-codes.md`.

use std::io::Write;

use analyzer::{check, diff, events, exit, flaky, generate, html, info};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "analyzer",
    version,
    about = "Inspect chaos traces and judge them against monitor specifications"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Summarise a trace: manifest, time span, counts per source and service, faults.
    Info(info::InfoArgs),
    /// List the events of a trace, filtered.
    Events(events::EventsArgs),
    /// Judge traces against monitor specifications.
    Check(check::CheckArgs),
    /// Find monitors and steps that accept in some runs of a scenario and fail in others.
    Flaky(flaky::FlakyArgs),
    /// Compare a passing and a failing run of one experiment, phase by phase.
    Diff(diff::DiffArgs),
    /// Write one self-contained HTML file showing a judged run (docs/report.md).
    Report(html::ReportArgs),
    /// Finalize a trace left by a killed recorder (sort the event log into Parquet).
    Finalize {
        /// The trace directory.
        trace: std::path::PathBuf,
        /// Repair a trace that breaks an invariant: sort its rows, drop rows with a null key
        /// column and exact duplicate rows, renumber seq when rows share one, skip damaged log
        /// records (docs/trace-format.md).
        #[arg(long)]
        repair: bool,
    },
    /// Write a synthetic trace (tests and benchmarks).
    #[command(hide = true)]
    Generate(generate::GenerateArgs),
}

/// Errors are printed on one line (`docs/exit-codes.md`).
fn one_line(s: &str) -> String {
    s.split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Prints `e` as one `error:` line (nothing for a closed pipe) and returns its exit code.
fn report(e: &analyzer::Error) -> i32 {
    if e.is_broken_pipe() {
        return exit::OK;
    }
    eprintln!("error: {}", one_line(&e.to_string()));
    e.exit_code()
}

fn run(cli: Cli) -> Result<i32, analyzer::Error> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let code = match cli.command {
        Command::Info(a) => info::run(&a, &mut out)?,
        Command::Events(a) => events::run(&a, &mut out)?,
        Command::Finalize { trace, repair } => {
            analyzer::finalize_cmd_with(&trace, repair, &mut out)?
        }
        Command::Generate(a) => generate::run(&a, &mut out)?,
        Command::Flaky(a) => flaky::run(&a, &mut out)?,
        Command::Diff(a) => diff::run(&a, &mut out)?,
        Command::Report(a) => {
            out.flush().ok();
            drop(out);
            return html::run(&a);
        }
        Command::Check(a) => {
            out.flush().ok();
            drop(out);
            return check::run(&a);
        }
    };
    out.flush().map_err(analyzer::Error::output)?;
    Ok(code)
}

/// At most two glibc malloc arenas: the threads that decode row groups and encode Parquet
/// columns would otherwise each get an arena of their own, and freed memory kept in them adds
/// about 50 MB to `finalize`'s peak (docs/performance.md, "Side by side with DuckDB and RTLola").
/// Blocks up to 32 MB come from the arenas, not from `mmap`, and an arena gives memory back to
/// the system only when more than 64 MB is free at its top: every decoded row group allocates
/// and frees column buffers of a few hundred kB to a few MB, which glibc's defaults returned to
/// the system and faulted back in, page by page, for the next (10-20 % of `check`'s time on the
/// regex and RTLola cases; docs/performance.md, "Fifth rerun").
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called first thing, before any thread
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
    }
}

fn main() {
    tune_malloc();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    let code = match run(cli) {
        Ok(c) => c,
        Err(e) => report(&e),
    };
    std::process::exit(code);
}
