//! `analyzer flaky TRACES... --spec ...` (and `check --flaky`): groups judged traces by scenario
//! (name and content hash from the manifest) and finds the monitors and experiment steps that
//! accept in some runs of a group and fail in others; for each prints the pass rate, the failing
//! runs, and the `diff` of the passing and the failing run closest in time.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use monitor::Verdict;
use serde::Serialize;

use crate::fleet::{Outcome, Shard};
use crate::report::{CheckFormat, Judged};
use crate::{exit, Error};

/// Arguments of `analyzer flaky`.
#[derive(Debug, Clone, clap::Args)]
pub struct FlakyArgs {
    /// Traces (as for `check`: directories, directories of traces, globs, `s3://` URLs).
    pub traces: Vec<PathBuf>,
    /// Also the traces listed in this file, one path or URL a line (`-`: standard input).
    #[arg(long, value_name = "FILE")]
    pub traces_from: Option<PathBuf>,
    /// A spec file, one per `--spec` (repeatable).
    #[arg(long = "spec", value_name = "FILE", required = true)]
    pub spec: Vec<PathBuf>,
    /// Only these monitors (repeatable).
    #[arg(long)]
    pub monitor: Vec<String>,
    /// Only these experiments (repeatable).
    #[arg(long)]
    pub experiment: Vec<String>,
    /// Judge this many traces at a time (default: one per core).
    #[arg(short = 'j', long = "jobs", value_name = "N")]
    pub jobs: Option<usize>,
    /// Only the K-th of N slices of the trace list (as for `check`).
    #[arg(long, value_name = "K/N")]
    pub shard: Option<Shard>,
    /// Report format.
    #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
    pub format: CheckFormat,
    /// Differences shown in each diff.
    #[arg(long, default_value_t = 5)]
    pub top: usize,
}

/// One run of a flaky unit.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub trace: String,
    pub run_id: String,
    pub recorded_ns: Option<i64>,
    pub verdict: Option<Verdict>,
    /// For a failing run: the deciding event's one-line summary.
    pub why: Option<String>,
}

/// A monitor or step that both accepts and fails within one scenario.
#[derive(Debug, Clone, Serialize)]
pub struct Flaky {
    pub scenario: String,
    pub scenario_sha256: String,
    /// `monitor NAME`, or `experiment NAME step K `TEXT``.
    pub what: String,
    pub experiment: Option<String>,
    pub runs: usize,
    pub accepted: usize,
    pub failed: usize,
    pub pass_rate: f64,
    pub failing: Vec<Run>,
    /// The passing and the failing run closest in time.
    pub closest: Option<(String, String)>,
    pub diff: Option<crate::diff::Diff>,
}

/// The scenario key of a judged trace: (name, sha256). Older traces (no scenario in the
/// manifest) group by the experiment the recorder ran, or as `(unknown)`.
fn scenario_of(j: &Judged) -> (String, String) {
    match &j.manifest {
        Some(m) if !m.scenario.is_empty() => (m.scenario.name.clone(), m.scenario.sha256.clone()),
        Some(m) => (
            m.schedule
                .pointer("/experiment/name")
                .and_then(|n| n.as_str())
                .map_or("(unknown)".to_string(), |n| format!("(experiment {n})")),
            String::new(),
        ),
        None => ("(unknown)".into(), String::new()),
    }
}

fn run_of(j: &Judged, verdict: Option<Verdict>, why: Option<String>) -> Run {
    Run {
        trace: j.trace.display().to_string(),
        run_id: j
            .manifest
            .as_ref()
            .map(|m| m.run_id.clone())
            .unwrap_or_default(),
        recorded_ns: j
            .manifest
            .as_ref()
            .and_then(|m| m.started_ns)
            .or(j.origin_ns),
        verdict,
        why,
    }
}

/// Finds the flaky monitors and steps of judged traces (no diffs yet).
pub fn find(results: &[Outcome]) -> Vec<Flaky> {
    // (scenario, sha) -> unit -> (experiment, runs)
    type Units = BTreeMap<String, (Option<String>, Vec<Run>)>;
    let mut groups: BTreeMap<(String, String), Units> = BTreeMap::new();
    for (_, r) in results {
        let Ok(j) = r else { continue };
        let units = groups.entry(scenario_of(j)).or_default();
        for m in &j.report.monitors {
            let why = (m.verdict == Verdict::Fail)
                .then(|| crate::fleet::failure_line(j))
                .flatten();
            units
                .entry(format!("monitor {}", m.name))
                .or_default()
                .1
                .push(run_of(j, Some(m.verdict), why));
        }
        for x in &j.report.experiments {
            for s in &x.steps {
                if s.kind == "note" {
                    continue;
                }
                let why = (s.verdict == Some(Verdict::Fail))
                    .then(|| crate::fleet::failure_line(j))
                    .flatten();
                let e = units
                    .entry(format!(
                        "experiment {} step {} `{}`",
                        x.name,
                        s.index + 1,
                        s.text
                    ))
                    .or_default();
                e.0 = Some(x.name.clone());
                e.1.push(run_of(j, s.verdict, why));
            }
        }
    }
    let mut out = Vec::new();
    for ((scenario, sha), units) in groups {
        for (what, (experiment, runs)) in units {
            let accepted = runs
                .iter()
                .filter(|r| r.verdict == Some(Verdict::Accept))
                .count();
            let failed = runs
                .iter()
                .filter(|r| r.verdict == Some(Verdict::Fail))
                .count();
            if accepted == 0 || failed == 0 {
                continue;
            }
            // the pair of a passing and a failing run recorded closest together
            let mut closest: Option<(i64, String, String)> = None;
            for f in runs.iter().filter(|r| r.verdict == Some(Verdict::Fail)) {
                for p in runs.iter().filter(|r| r.verdict == Some(Verdict::Accept)) {
                    let gap = match (f.recorded_ns, p.recorded_ns) {
                        (Some(a), Some(b)) => (a - b).abs(),
                        _ => i64::MAX,
                    };
                    if closest.as_ref().is_none_or(|c| gap < c.0) {
                        closest = Some((gap, p.trace.clone(), f.trace.clone()));
                    }
                }
            }
            out.push(Flaky {
                scenario: scenario.clone(),
                scenario_sha256: sha.clone(),
                what,
                experiment,
                runs: runs.len(),
                accepted,
                failed,
                pass_rate: accepted as f64 / runs.len() as f64,
                failing: runs
                    .into_iter()
                    .filter(|r| r.verdict == Some(Verdict::Fail))
                    .collect(),
                closest: closest.map(|c| (c.1, c.2)),
                diff: None,
            });
        }
    }
    out
}

/// Adds to each flaky experiment step the diff of its closest passing and failing runs (one diff
/// per pair of runs and experiment).
pub fn add_diffs(flaky: &mut [Flaky], spec: &monitor::Spec, top: usize) {
    let mut done: BTreeMap<(String, String, String), Option<crate::diff::Diff>> = BTreeMap::new();
    for f in flaky.iter_mut() {
        let (Some((good, bad)), Some(exp)) = (&f.closest, &f.experiment) else {
            continue;
        };
        let key = (good.clone(), bad.clone(), exp.clone());
        let d = done.entry(key).or_insert_with(|| {
            let args = crate::diff::DiffArgs {
                good: PathBuf::from(good),
                bad: PathBuf::from(bad),
                spec: Vec::new(),
                experiment: Some(exp.clone()),
                format: CheckFormat::Text,
                top,
                context: 4,
                monitor: Vec::new(),
                lag: 2_000_000_000,
            };
            crate::diff::diff(&args, spec).ok()
        });
        f.diff = d.clone();
    }
}

/// Writes the flaky monitors and steps as text.
pub fn write_text(w: &mut dyn Write, flaky: &[Flaky]) -> std::io::Result<()> {
    if flaky.is_empty() {
        return writeln!(
            w,
            "flaky: none (no monitor or step both accepts and fails within a scenario)"
        );
    }
    writeln!(w, "flaky: {} monitor(s)/step(s)", flaky.len())?;
    for f in flaky {
        let sha: String = f.scenario_sha256.chars().take(12).collect();
        writeln!(
            w,
            "  scenario {}{}: {}: passes {}/{} ({:.0}%)",
            f.scenario,
            if sha.is_empty() {
                String::new()
            } else {
                format!(" ({sha})")
            },
            f.what,
            f.accepted,
            f.runs,
            f.pass_rate * 100.0
        )?;
        writeln!(w, "    failing runs:")?;
        for r in &f.failing {
            writeln!(
                w,
                "      {} (run {}, recorded {}){}",
                r.trace,
                r.run_id,
                crate::fleet::when(r.recorded_ns),
                r.why.as_ref().map(|y| format!(": {y}")).unwrap_or_default()
            )?;
        }
        if let Some((g, b)) = &f.closest {
            writeln!(w, "    closest in time: GOOD {g}, BAD {b}")?;
        }
        if let Some(d) = &f.diff {
            let mut buf = Vec::new();
            crate::diff::write_text(&mut buf, d)?;
            for l in String::from_utf8_lossy(&buf).lines() {
                writeln!(w, "      {l}")?;
            }
        }
    }
    Ok(())
}

/// The `check --flaky` section: finds the flaky units of the judged traces and prints them.
pub fn write(w: &mut dyn Write, results: &[Outcome], spec: &monitor::Spec) -> std::io::Result<()> {
    let mut f = find(results);
    add_diffs(&mut f, spec, 5);
    write_text(w, &f)
}

#[derive(Serialize)]
struct JsonOut<'a> {
    traces: usize,
    unreadable: Vec<(String, String)>,
    flaky: &'a [Flaky],
}

/// Runs `analyzer flaky`: exit 1 when something is flaky, else 0 (4 when a trace could not be
/// read and nothing is flaky).
pub fn run(args: &FlakyArgs, out: &mut dyn Write) -> Result<i32, Error> {
    let spec = match crate::judge::load_spec(&args.spec) {
        Ok(s) => s,
        Err((code, msg)) => {
            eprintln!("{msg}");
            return Ok(code);
        }
    };
    let sel = monitor::Selection {
        monitors: args.monitor.clone(),
        experiments: args.experiment.clone(),
    };
    let list = crate::fleet::trace_list(&args.traces, args.traces_from.as_deref(), args.shard)?;
    let results = crate::judge::judge_fleet(&spec, &sel, &list, crate::fleet::jobs(args.jobs), 0)?;
    for (_, r) in &results {
        if let Err(e) = r {
            eprintln!("error: {}", crate::fleet::one_line(&e.to_string()));
        }
    }
    let mut flaky = find(&results);
    add_diffs(&mut flaky, &spec, args.top);
    let unreadable: Vec<(String, String)> = results
        .iter()
        .filter_map(|(p, r)| {
            r.as_ref().err().map(|e| {
                (
                    p.display().to_string(),
                    crate::fleet::one_line(&e.to_string()),
                )
            })
        })
        .collect();
    match args.format {
        CheckFormat::Text => {
            writeln!(
                out,
                "{} trace(s) judged, {} unreadable",
                results.len() - unreadable.len(),
                unreadable.len()
            )
            .map_err(Error::output)?;
            write_text(out, &flaky).map_err(Error::output)?;
        }
        CheckFormat::Json => {
            let j = JsonOut {
                traces: results.len(),
                unreadable: unreadable.clone(),
                flaky: &flaky,
            };
            serde_json::to_writer_pretty(&mut *out, &j)
                .map_err(|e| Error::output(std::io::Error::other(e)))?;
            writeln!(out).map_err(Error::output)?;
        }
    }
    Ok(if !flaky.is_empty() {
        exit::FAIL
    } else if !unreadable.is_empty() {
        exit::UNREADABLE_TRACE
    } else {
        exit::OK
    })
}
