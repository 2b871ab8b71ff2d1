//! `analyzer check TRACE... --spec FILE...`: compiles the specs (reporting every error like a
//! compiler), replays each trace through the selected monitors and experiments, prints one line
//! per monitor/step with explanations for every fail (plus the surrounding events of the
//! services involved), writes JSON or JUnit, and exits with the combined verdict's code.

#[path = "report/mod.rs"]
pub mod report;

use crate::exit;
use monitor::{Report, Runner, Selection, SourceFile, Spec, Verdict};
use std::io::Write;
use std::path::{Path, PathBuf};
use trace::{ReadOptions, Trace};

/// Report format of `check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CheckFormat {
    Text,
    Json,
}

/// Arguments of `analyzer check`.
#[derive(Debug, Clone, clap::Args)]
pub struct CheckArgs {
    /// Trace directories to judge (none: only validate the specs).
    pub traces: Vec<PathBuf>,
    /// Spec files (imports are resolved relative to each file).
    #[arg(long = "spec", required = true, num_args = 1..)]
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
}

/// One judged trace with the context events of its failures.
pub struct Judged {
    pub trace: PathBuf,
    pub report: Report,
    /// Per deciding event seq: the surrounding events of the services involved.
    pub context: Vec<report::Context>,
}

fn resolver(path: &str, from: &str) -> Option<SourceFile> {
    let base = Path::new(from).parent().unwrap_or(Path::new("."));
    let p = base.join(path);
    let text = std::fs::read_to_string(&p).ok()?;
    Some(SourceFile::new(p.to_string_lossy(), text))
}

/// Reads and compiles the spec files. `Err(code)` after printing the problem.
pub fn load_spec(paths: &[PathBuf]) -> Result<Spec, (i32, String)> {
    let mut files = Vec::new();
    for p in paths {
        match std::fs::read_to_string(p) {
            Ok(t) => files.push(SourceFile::new(p.to_string_lossy(), t)),
            Err(e) => {
                return Err((
                    exit::BAD_SPEC,
                    format!("error: {}: cannot read spec: {e}", p.display()),
                ))
            }
        }
    }
    monitor::compile(&files, &resolver).map_err(|d| (exit::BAD_SPEC, d.render()))
}

/// Replays one trace through the runner.
pub fn judge(
    spec: &Spec,
    sel: &Selection,
    dir: &Path,
    context: usize,
) -> Result<Judged, crate::Error> {
    let t = Trace::open(dir)?;
    let mut runner = Runner::new(spec, sel).map_err(|e| crate::Error::Usage(e.to_string()))?;
    let mut last = None;
    // packet summaries are merged into the stream only when some monitor can match them
    let opts = ReadOptions {
        include_packets: runner.may_observe("packet"),
        ..Default::default()
    };
    for batch in t.events(&opts)? {
        let batch = batch?;
        for ev in batch.iter() {
            runner.observe(&ev);
            last = Some(ev.ts_ns);
        }
    }
    let m = t.manifest();
    let end = match (last, m.ended_ns) {
        (Some(a), Some(b)) => a.max(b),
        (a, b) => a.or(b).or(m.started_ns).unwrap_or(0),
    };
    let report = runner.finish(end);
    let ctx = report::gather_context(&t, &report, context)?;
    Ok(Judged {
        trace: dir.to_path_buf(),
        report,
        context: ctx,
    })
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
    if args.traces.is_empty() {
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
    let mut judged = Vec::new();
    for t in &args.traces {
        judged.push(judge(&spec, &sel, t, args.context)?);
    }
    match args.format {
        CheckFormat::Text => {
            report::text::write(&mut out, &judged).map_err(crate::Error::output)?
        }
        CheckFormat::Json => {
            report::json::write(&mut out, &judged).map_err(crate::Error::output)?
        }
    }
    out.flush().map_err(crate::Error::output)?;
    if let Some(path) = &args.junit {
        let xml = report::junit::render(&judged);
        std::fs::write(path, xml).map_err(|e| {
            crate::Error::Runtime(format!(
                "{}: cannot write junit report: {e}",
                path.display()
            ))
        })?;
    }
    let verdict = Verdict::combine(judged.iter().map(|j| j.report.verdict));
    Ok(match verdict {
        Verdict::Accept => exit::OK,
        Verdict::Fail => exit::FAIL,
        Verdict::Inconclusive => exit::INCONCLUSIVE,
    })
}
