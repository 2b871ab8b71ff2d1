//! `--format json`: the reports of every trace as one JSON document (the same content as text).

use super::Context;
use crate::check::Judged;
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
}

#[derive(Serialize)]
struct Out<'a> {
    verdict: Verdict,
    traces: Vec<TraceOut<'a>>,
}

pub fn write(w: &mut dyn Write, judged: &[Judged]) -> std::io::Result<()> {
    let out = Out {
        verdict: Verdict::combine(judged.iter().map(|j| j.report.verdict)),
        traces: judged
            .iter()
            .map(|j| TraceOut {
                trace: j.trace.display().to_string(),
                report: &j.report,
                context: &j.context,
                warnings: &j.warnings,
            })
            .collect(),
    };
    serde_json::to_writer_pretty(&mut *w, &out).map_err(std::io::Error::other)?;
    writeln!(w)
}
