//! `check --verdicts FILE.parquet`: one row per trace x monitor, experiment and experiment step
//! (and one row for each trace that could not be read), with what the trace's manifest says about
//! the run (run id, start, recorder version, scenario and spec hashes) and the hashes of the spec
//! files it was judged with, so a fleet's verdicts can be queried with DuckDB, pyarrow or pandas.
//! The columns are documented in docs/fleet.md.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{
    Int32Builder, Int64Builder, ListBuilder, StringBuilder, TimestampNanosecondBuilder,
    UInt64Builder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use monitor::{MonitorResult, Verdict};

use crate::fleet::Outcome;
use crate::Error;

/// The schema of the verdicts file.
pub fn schema() -> Schema {
    let s = |n: &str, null: bool| Field::new(n, DataType::Utf8, null);
    Schema::new(vec![
        s("trace", false),
        s("run_id", true),
        Field::new(
            "recorded_at",
            DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
            true,
        ),
        s("recorder_version", true),
        s("scenario", true),
        s("scenario_sha256", true),
        Field::new(
            "spec_sha256",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            true,
        ),
        Field::new(
            "checked_spec_sha256",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            true,
        ),
        s("kind", false),
        s("name", false),
        Field::new("step", DataType::Int32, true),
        s("step_text", true),
        s("verdict", true),
        Field::new("deciding_ts_ns", DataType::Int64, true),
        Field::new("deciding_seq", DataType::UInt64, true),
        s("message", true),
        Field::new("time_to_decision_ns", DataType::Int64, true),
    ])
}

struct Cols {
    trace: StringBuilder,
    run_id: StringBuilder,
    recorded_at: TimestampNanosecondBuilder,
    recorder_version: StringBuilder,
    scenario: StringBuilder,
    scenario_sha256: StringBuilder,
    spec_sha256: ListBuilder<StringBuilder>,
    checked_spec_sha256: ListBuilder<StringBuilder>,
    kind: StringBuilder,
    name: StringBuilder,
    step: Int32Builder,
    step_text: StringBuilder,
    verdict: StringBuilder,
    deciding_ts_ns: Int64Builder,
    deciding_seq: UInt64Builder,
    message: StringBuilder,
    time_to_decision_ns: Int64Builder,
}

/// What every row of one trace repeats.
struct TraceFacts<'a> {
    trace: String,
    manifest: Option<&'a trace::Manifest>,
}

/// One row's own values.
#[derive(Default)]
struct Row<'a> {
    kind: &'a str,
    name: &'a str,
    step: Option<i32>,
    step_text: Option<&'a str>,
    verdict: Option<&'a str>,
    deciding: Option<(i64, u64)>,
    message: Option<String>,
    time_to_decision_ns: Option<i64>,
}

fn opt_str(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

impl Cols {
    fn new() -> Cols {
        Cols {
            trace: StringBuilder::new(),
            run_id: StringBuilder::new(),
            recorded_at: TimestampNanosecondBuilder::new().with_timezone("UTC"),
            recorder_version: StringBuilder::new(),
            scenario: StringBuilder::new(),
            scenario_sha256: StringBuilder::new(),
            spec_sha256: ListBuilder::new(StringBuilder::new()),
            checked_spec_sha256: ListBuilder::new(StringBuilder::new()),
            kind: StringBuilder::new(),
            name: StringBuilder::new(),
            step: Int32Builder::new(),
            step_text: StringBuilder::new(),
            verdict: StringBuilder::new(),
            deciding_ts_ns: Int64Builder::new(),
            deciding_seq: UInt64Builder::new(),
            message: StringBuilder::new(),
            time_to_decision_ns: Int64Builder::new(),
        }
    }

    fn push(&mut self, t: &TraceFacts<'_>, checked: &[String], r: Row<'_>) {
        self.trace.append_value(&t.trace);
        let m = t.manifest;
        self.run_id
            .append_option(m.and_then(|m| opt_str(&m.run_id)));
        self.recorded_at.append_option(m.and_then(|m| m.started_ns));
        self.recorder_version
            .append_option(m.and_then(|m| opt_str(&m.recorder_version)));
        self.scenario
            .append_option(m.and_then(|m| opt_str(&m.scenario.name)));
        self.scenario_sha256
            .append_option(m.and_then(|m| opt_str(&m.scenario.sha256)));
        match m {
            Some(m) => {
                for f in &m.specs {
                    self.spec_sha256.values().append_value(&f.sha256);
                }
                self.spec_sha256.append(true);
            }
            None => self.spec_sha256.append(false),
        }
        for h in checked {
            self.checked_spec_sha256.values().append_value(h);
        }
        self.checked_spec_sha256.append(true);
        self.kind.append_value(r.kind);
        self.name.append_value(r.name);
        self.step.append_option(r.step);
        self.step_text.append_option(r.step_text);
        self.verdict.append_option(r.verdict);
        self.deciding_ts_ns.append_option(r.deciding.map(|d| d.0));
        self.deciding_seq.append_option(r.deciding.map(|d| d.1));
        self.message.append_option(r.message.as_deref());
        self.time_to_decision_ns
            .append_option(r.time_to_decision_ns);
    }

    fn finish(mut self) -> Result<RecordBatch, arrow_schema::ArrowError> {
        let cols: Vec<ArrayRef> = vec![
            Arc::new(self.trace.finish()),
            Arc::new(self.run_id.finish()),
            Arc::new(self.recorded_at.finish()),
            Arc::new(self.recorder_version.finish()),
            Arc::new(self.scenario.finish()),
            Arc::new(self.scenario_sha256.finish()),
            Arc::new(self.spec_sha256.finish()),
            Arc::new(self.checked_spec_sha256.finish()),
            Arc::new(self.kind.finish()),
            Arc::new(self.name.finish()),
            Arc::new(self.step.finish()),
            Arc::new(self.step_text.finish()),
            Arc::new(self.verdict.finish()),
            Arc::new(self.deciding_ts_ns.finish()),
            Arc::new(self.deciding_seq.finish()),
            Arc::new(self.message.finish()),
            Arc::new(self.time_to_decision_ns.finish()),
        ];
        RecordBatch::try_new(Arc::new(schema()), cols)
    }
}

/// The deciding event (or decision time) and the reason of a monitor result.
fn decision(m: &MonitorResult) -> (Option<(i64, u64)>, Option<i64>, Option<String>) {
    match m.primary_explanation() {
        Some(e) => (
            e.deciding_event.as_ref().map(|d| (d.ts_ns, d.seq)),
            e.decided_ns
                .or_else(|| e.deciding_event.as_ref().map(|d| d.ts_ns)),
            Some(e.reason.clone()),
        ),
        None => (None, None, None),
    }
}

/// SHA-256 of each spec file given to `check`, in order.
pub fn spec_hashes(specs: &[PathBuf]) -> Vec<String> {
    use sha2::Digest;
    specs
        .iter()
        .map(|p| {
            std::fs::read(p)
                .map(|b| hex::encode(sha2::Sha256::digest(&b)))
                .unwrap_or_default()
        })
        .collect()
}

/// Writes the verdicts of `results` to `path` (Parquet, zstd).
pub fn write(path: &Path, results: &[Outcome], specs: &[PathBuf]) -> Result<(), Error> {
    let checked = spec_hashes(specs);
    let mut c = Cols::new();
    for (p, r) in results {
        let j = match r {
            Ok(j) => j,
            Err(e) => {
                let facts = TraceFacts {
                    trace: p.display().to_string(),
                    manifest: None,
                };
                c.push(
                    &facts,
                    &checked,
                    Row {
                        kind: "trace",
                        name: "",
                        verdict: Some("unreadable"),
                        message: Some(crate::fleet::one_line(&e.to_string())),
                        ..Default::default()
                    },
                );
                continue;
            }
        };
        let facts = TraceFacts {
            trace: p.display().to_string(),
            manifest: j.manifest.as_ref(),
        };
        let origin = j.origin_ns;
        for m in &j.report.monitors {
            let (deciding, at, message) = decision(m);
            c.push(
                &facts,
                &checked,
                Row {
                    kind: "monitor",
                    name: &m.name,
                    verdict: Some(m.verdict.as_str()),
                    deciding,
                    message,
                    time_to_decision_ns: at.zip(origin).map(|(a, o)| a - o),
                    ..Default::default()
                },
            );
        }
        for x in &j.report.experiments {
            let first = x.steps.iter().find_map(|s| s.start_ns).or(origin);
            let last = x
                .steps
                .iter()
                .filter(|s| s.verdict.is_some())
                .filter_map(|s| s.end_ns)
                .max();
            let failing = x.steps.iter().find(|s| s.verdict == Some(x.verdict));
            let decided_by = if x.verdict == Verdict::Accept {
                None
            } else {
                failing
            };
            c.push(
                &facts,
                &checked,
                Row {
                    kind: "experiment",
                    name: &x.name,
                    verdict: Some(x.verdict.as_str()),
                    deciding: decided_by
                        .and_then(|s| s.monitor.as_ref())
                        .and_then(|m| decision(m).0),
                    message: x
                        .reason
                        .clone()
                        .or_else(|| decided_by.and_then(|s| s.reason.clone())),
                    time_to_decision_ns: decided_by
                        .and_then(|s| s.end_ns)
                        .or(last)
                        .zip(first)
                        .map(|(a, o)| a - o),
                    ..Default::default()
                },
            );
            for s in &x.steps {
                let (deciding, _, why) = s.monitor.as_ref().map_or((None, None, None), decision);
                let deciding = deciding.or(s.fault.as_ref().map(|f| (f.ts_ns, f.seq)));
                c.push(
                    &facts,
                    &checked,
                    Row {
                        kind: "step",
                        name: &x.name,
                        step: Some(s.index as i32 + 1),
                        step_text: Some(&s.text),
                        verdict: s.verdict.map(Verdict::as_str),
                        deciding,
                        message: s.reason.clone().or(why),
                        time_to_decision_ns: s.end_ns.zip(s.start_ns).map(|(a, o)| a - o),
                    },
                );
            }
        }
    }
    let batch = c
        .finish()
        .map_err(|e| Error::Runtime(format!("{}: cannot build verdicts: {e}", path.display())))?;
    let werr = |e: &dyn std::fmt::Display| {
        Error::Runtime(format!("{}: cannot write verdicts: {e}", path.display()))
    };
    let f = std::fs::File::create(path).map_err(|e| werr(&e))?;
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
        .build();
    let mut w = parquet::arrow::ArrowWriter::try_new(f, batch.schema(), Some(props))
        .map_err(|e| werr(&e))?;
    w.write(&batch).map_err(|e| werr(&e))?;
    w.close().map_err(|e| werr(&e))?;
    Ok(())
}
