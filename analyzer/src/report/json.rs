//! `--format json`: the reports of every trace as one JSON document (the same content as text),
//! plus the traces that could not be read and the fleet summary.

use super::Context;
use crate::fleet::{Outcome, Summary};
use monitor::{Report, Verdict};
use serde::Serialize;
use std::io::Write;

#[derive(Serialize)]
struct TraceOut<'a> {
    trace: String,
    report: &'a Report,
    context: &'a [Context],
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    warnings: &'a [String],
    /// Where and why the recorder halted the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    halt: Option<&'a crate::report::HaltNote>,
}

#[derive(Serialize)]
struct Unreadable {
    trace: String,
    error: String,
}

#[derive(Serialize)]
struct Out<'a> {
    /// The combined verdict of the traces that could be read.
    verdict: Verdict,
    traces: Vec<TraceOut<'a>>,
    unreadable: Vec<Unreadable>,
    summary: Summary,
}

pub fn write(w: &mut dyn Write, results: &[Outcome]) -> std::io::Result<()> {
    let judged = results.iter().filter_map(|(_, r)| r.as_ref().ok());
    let out = Out {
        verdict: Verdict::combine(judged.clone().map(|j| j.report.verdict)),
        traces: judged
            .map(|j| TraceOut {
                trace: j.trace.display().to_string(),
                report: &j.report,
                context: &j.context,
                warnings: &j.warnings,
                halt: j.halt.as_ref(),
            })
            .collect(),
        unreadable: results
            .iter()
            .filter_map(|(p, r)| {
                r.as_ref().err().map(|e| Unreadable {
                    trace: p.display().to_string(),
                    error: crate::fleet::one_line(&e.to_string()),
                })
            })
            .collect(),
        summary: Summary::of(results),
    };
    serde_json::to_writer_pretty(&mut *w, &out).map_err(std::io::Error::other)?;
    writeln!(w)
}
