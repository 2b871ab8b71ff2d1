//! `analyzer check TRACE... --spec FILE [--spec FILE]...`, the subcommand: compiles the specs
//! (reporting every error like a compiler), replays each trace through the selected monitors and
//! experiments ([`crate::judge`]), prints one line per monitor/step with explanations for every
//! fail (plus the surrounding events of the services involved), writes JSON or JUnit, and exits
//! with the combined verdict's code.

use crate::{exit, report};
use monitor::{Runner, Selection};
use std::io::Write;
use std::path::PathBuf;

use crate::judge::{judge_fleet_reading, load_spec, Reading};
pub use crate::report::CheckFormat;

/// Arguments of `analyzer check`.
#[derive(Debug, Clone, clap::Args)]
pub struct CheckArgs {
    /// Traces to judge: trace directories, directories that contain traces (searched
    /// recursively for `manifest.json`), globs, `s3://bucket/prefix` URLs (none: only validate
    /// the specs).
    pub traces: Vec<PathBuf>,
    /// Also judge the traces listed in this file, one path or URL a line (`-`: standard input).
    #[arg(long, value_name = "FILE")]
    pub traces_from: Option<PathBuf>,
    /// Judge this many traces at a time (default: one per core).
    #[arg(short = 'j', long = "jobs", value_name = "N")]
    pub jobs: Option<usize>,
    /// Judge only the K-th of N deterministic slices of the trace list (K from 0), e.g. one
    /// machine of N: `--shard 0/4` .. `--shard 3/4`.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<crate::fleet::Shard>,
    /// Also write one row per trace x monitor, experiment and step to this Parquet file.
    #[arg(long, value_name = "FILE")]
    pub verdicts: Option<PathBuf>,
    /// After the reports, group the traces by scenario and print flaky monitors and steps (as
    /// `analyzer flaky`).
    #[arg(long)]
    pub flaky: bool,
    /// A spec file, one per `--spec` (repeatable; imports are resolved relative to each file).
    #[arg(long = "spec", value_name = "FILE", required = true)]
    pub spec: Vec<PathBuf>,
    /// Only these monitors (repeatable).
    #[arg(long)]
    pub monitor: Vec<String>,
    /// Only these experiments (repeatable).
    #[arg(long)]
    pub experiment: Vec<String>,
    /// Report format.
    #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
    pub format: CheckFormat,
    /// Also write JUnit XML here (one test case per monitor or experiment step).
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// Events of context shown before and after each deciding event.
    #[arg(long, default_value_t = 5)]
    pub context: usize,
    /// Text report: also say why each accepted monitor and step accepted.
    #[arg(short, long)]
    pub verbose: bool,
    /// Debugging aid: read every column of every event instead of only what the selected
    /// monitors need (the report must be the same; tests compare the two).
    #[arg(long, hide = true)]
    pub read_all_columns: bool,
    /// Also judge the events of the recorder's teardown (`compose down` stopping every
    /// container). By default judging ends where the recorder started tearing the project down.
    #[arg(long)]
    pub include_teardown: bool,
    /// Also write an HTML report (docs/report.md): one trace writes PATH, several write
    /// `PATH/<trace name>.html` each.
    #[arg(long, value_name = "PATH")]
    pub html: Option<PathBuf>,
}

/// Runs `analyzer check`, returning the exit code.
pub fn run(args: &CheckArgs) -> Result<i32, crate::Error> {
    let spec = match load_spec(&args.spec) {
        Ok(s) => s,
        Err((code, msg)) => {
            eprintln!("{msg}");
            return Ok(code);
        }
    };
    let sel = Selection {
        monitors: args.monitor.clone(),
        experiments: args.experiment.clone(),
    };
    // validate the selection before reading anything
    let probe = Runner::new(&spec, &sel).map_err(|e| crate::Error::Usage(e.to_string()))?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.traces.is_empty() && args.traces_from.is_none() {
        let n_m = spec.monitors.len();
        let n_e = spec.experiments.len();
        writeln!(
            out,
            "spec ok: {n_m} monitor(s), {n_e} experiment(s); {} would be judged",
            probe.len()
        )
        .map_err(crate::Error::output)?;
        for m in &spec.monitors {
            let params = if m.params.is_empty() {
                String::new()
            } else {
                format!("({})", m.params.join(", "))
            };
            writeln!(
                out,
                "  monitor    {}{params}  ({}:{})",
                m.name, m.location.file, m.location.line
            )
            .map_err(crate::Error::output)?;
        }
        for e in &spec.experiments {
            writeln!(
                out,
                "  experiment {} ({} steps)  ({}:{})",
                e.name,
                e.steps.len(),
                e.location.file,
                e.location.line
            )
            .map_err(crate::Error::output)?;
        }
        return Ok(exit::OK);
    }
    if probe.is_empty() {
        return Err(crate::Error::Usage("nothing to judge: the specs have no experiment and no monitor without parameters; pick one with --monitor or --experiment".into()));
    }
    let list = crate::fleet::trace_list(&args.traces, args.traces_from.as_deref(), args.shard)?;
    let jobs = crate::fleet::jobs(args.jobs);
    let started = std::time::Instant::now();
    let results = judge_fleet_reading(
        &spec,
        &sel,
        &list,
        jobs,
        Reading {
            context: args.context,
            read_all_columns: args.read_all_columns,
            include_teardown: args.include_teardown,
            read_ahead: 0,
        },
    );
    let elapsed = started.elapsed();
    // every unreadable trace is named on stderr too, one line each
    for (_, r) in &results {
        if let Err(e) = r {
            eprintln!("error: {}", crate::fleet::one_line(&e.to_string()));
        }
    }
    match args.format {
        CheckFormat::Text => {
            for (p, r) in &results {
                match r {
                    Ok(j) => {
                        report::text::write_with(&mut out, std::slice::from_ref(j), args.verbose)
                    }
                    Err(e) => writeln!(
                        out,
                        "trace {}\n  unreadable: {}",
                        p.display(),
                        crate::fleet::one_line(&e.to_string())
                    ),
                }
                .map_err(crate::Error::output)?;
            }
            if results.len() > 1 {
                crate::fleet::write_summary(&mut out, &results, elapsed, jobs)
                    .map_err(crate::Error::output)?;
            }
        }
        CheckFormat::Json => {
            report::json::write(&mut out, &results).map_err(crate::Error::output)?
        }
    }
    if args.flaky && args.format == CheckFormat::Text {
        crate::flaky::write(&mut out, &results, &spec).map_err(crate::Error::output)?;
    }
    out.flush().map_err(crate::Error::output)?;
    if let Some(path) = &args.junit {
        let xml = report::junit::render(&results).map_err(|e| {
            crate::Error::Runtime(format!(
                "{}: cannot render junit report: {e}",
                path.display()
            ))
        })?;
        std::fs::write(path, xml).map_err(|e| {
            crate::Error::Runtime(format!(
                "{}: cannot write junit report: {e}",
                path.display()
            ))
        })?;
    }
    if let Some(path) = &args.verdicts {
        crate::verdicts::write(path, &results, &args.spec)?;
    }
    if let Some(path) = &args.html {
        // one report per trace that could be read (an unreadable one is reported above)
        let readable: Vec<PathBuf> = results
            .iter()
            .filter(|(_, r)| r.is_ok())
            .map(|(p, _)| p.clone())
            .collect();
        let opts = crate::html::HtmlOptions {
            context: args.context,
            include_teardown: args.include_teardown,
            ..Default::default()
        };
        crate::html::write_for_check(&spec, &sel, &readable, path, &opts)?;
    }
    Ok(crate::fleet::exit_code(&results))
}
