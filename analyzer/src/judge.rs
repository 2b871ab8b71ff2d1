//! Judging traces: the specs loaded and compiled ([`load_spec`]), one trace replayed through the
//! selected monitors and experiments ([`judge`], [`judge_reading`], [`judge_recording`] for the
//! state paths of `diff` and the HTML report), a fleet on worker threads ([`judge_fleet`]), and
//! what a report adds from the trace (halt note, teardown start, unknown services, the events
//! shown around each decision). `check`, `diff`, `flaky` and `report` all judge through here.

pub use crate::report::{HaltNote, Judged};
use crate::{exit, report};
use monitor::{
    EventInfo, InstanceHistory, Needs, Relevance, Report, Runner, Selection, SourceFile, Spec,
    StateLog,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use trace::{Columns, ReadOptions, Trace};

/// The row groups that may hold an event of `source` and `kind` (by their statistics); `None`
/// where the trace has no footer statistics.
fn groups_holding(t: &Trace, source: &str, kind: &str) -> Option<std::sync::Arc<[bool]>> {
    let groups = t.group_stats()?;
    Some(
        groups
            .iter()
            .map(|g| g.may_read_source(source) && g.may_read_kind(kind))
            .collect(),
    )
}

/// The recorder's `halt` event of the trace, if any.
pub(crate) fn halt_note(t: &Trace) -> Result<Option<HaltNote>, crate::Error> {
    let opts = ReadOptions {
        sources: Some(vec!["recorder".into()]),
        row_groups: groups_holding(t, "recorder", "halt"),
        ..Default::default()
    };
    for batch in t.events(&opts)? {
        let batch = batch?;
        for ev in batch.iter() {
            if ev.kind != "halt" {
                continue;
            }
            let d: serde_json::Value = ev
                .data
                .and_then(|d| serde_json::from_str(d).ok())
                .unwrap_or_default();
            let s = |k: &str| d[k].as_str().unwrap_or_default().to_string();
            return Ok(Some(HaltNote {
                ts_ns: ev.ts_ns,
                seq: ev.seq,
                monitor: s("monitor"),
                explanation: s("explanation"),
                deciding_ts_ns: d["deciding_ts_ns"].as_i64(),
                deciding_seq: d["deciding_seq"].as_u64(),
                reverted: d["reverted"]
                    .as_array()
                    .map(|v| {
                        v.iter()
                            .filter_map(|x| x.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default(),
                latency_ms: d["latency_ms"].as_f64(),
            }));
        }
    }
    Ok(None)
}

/// Experiment steps of `report` naming a service (a `do` target, an `at`) that is not one of
/// the trace's compose services (`manifest.compose.services`; nothing is checked when the
/// manifest lists none).
pub fn unknown_service_warnings(
    spec: &Spec,
    report: &Report,
    manifest: &trace::Manifest,
) -> Vec<String> {
    let known: Vec<&str> = manifest
        .compose
        .services
        .keys()
        .map(String::as_str)
        .collect();
    if known.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for r in &report.experiments {
        let Some(exp) = spec.experiment(&r.name) else {
            continue;
        };
        for (i, step) in exp.steps.iter().enumerate() {
            if exp.uses_bindings(i) {
                // its services come from a binding, known only when the step runs
                continue;
            }
            let names: Vec<String> = match step {
                monitor::Step::Do(f) => match &f.target {
                    monitor::FaultTarget::Service(s) => vec![s.clone()],
                    monitor::FaultTarget::Services(v) | monitor::FaultTarget::Random(v) => {
                        v.clone()
                    }
                    monitor::FaultTarget::Between(a, b) | monitor::FaultTarget::FromTo(a, b) => {
                        a.iter().chain(b).cloned().collect()
                    }
                    monitor::FaultTarget::Container(_) | monitor::FaultTarget::Network(_) => {
                        Vec::new()
                    }
                },
                monitor::Step::Expect(e) => e.monitor.services(),
                monitor::Step::Note(_) => Vec::new(),
            };
            for n in names {
                if !known.contains(&n.as_str()) {
                    out.push(format!(
                        "experiment {}, step {} `{}`: no service `{n}` in the trace's compose project (services: {})",
                        r.name,
                        i + 1,
                        step.text(),
                        known.join(", ")
                    ));
                }
            }
        }
    }
    out
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

/// Replays one trace through the runner, reading only what the selected monitors need.
pub fn judge(
    spec: &Spec,
    sel: &Selection,
    dir: &Path,
    context: usize,
) -> Result<Judged, crate::Error> {
    judge_reading(
        spec,
        sel,
        dir,
        &Reading {
            context,
            ..Reading::default()
        },
    )
}

/// How a trace is read for judging ([`judge_reading`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Reading {
    /// Events shown around each deciding event (`--context`).
    pub context: usize,
    /// Every column and row group, not only those the selection needs.
    pub read_all_columns: bool,
    /// Judge past where the recorder began its teardown.
    pub include_teardown: bool,
    /// Threads decoding row groups ahead of the evaluator (below 2: none).
    pub read_ahead: usize,
}

/// When the recorder started tearing the project down (its `teardown` event with
/// `data.phase = "start"`), if the trace records it.
pub(crate) fn teardown_start(t: &Trace) -> Result<Option<i64>, crate::Error> {
    let opts = ReadOptions {
        columns: Columns {
            kind: true,
            data: true,
            ..Columns::NONE
        },
        sources: Some(vec!["recorder".into()]),
        row_groups: groups_holding(t, "recorder", "teardown"),
        ..Default::default()
    };
    for batch in t.events(&opts)? {
        let batch = batch?;
        for ev in batch.iter() {
            if ev.kind == "teardown"
                && ev
                    .data
                    .and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok())
                    .is_some_and(|d| d["phase"] == "start")
            {
                return Ok(Some(ev.ts_ns));
            }
        }
    }
    Ok(None)
}

/// Replays one trace through the runner. Unless `read_all_columns` ([`Reading`]), a finalized trace is read
/// with the columns and sources the selection needs ([`Runner::needs`]), and without the row
/// groups whose statistics rule out every event the selection may react to
/// ([`Runner::relevance`], [`skipped_groups`]): the events not read only move trace time, which
/// the runner is given from the Parquet footer instead (first and last `ts_ns`, row count); the
/// events the report shows are then re-read with every column ([`refill_shown_events`]), so
/// the report is the same either way. With
/// `read_ahead` of 2 or more, the judging pass decodes row groups on that many threads ahead of
/// the evaluator ([`ReadOptions::read_ahead`]).
pub fn judge_reading(
    spec: &Spec,
    sel: &Selection,
    dir: &Path,
    reading: &Reading,
) -> Result<Judged, crate::Error> {
    judge_inner(spec, sel, dir, reading, false).map(|(j, _)| j)
}

/// [`judge_reading`] (columns projected, teardown cut off) in the runner's recording mode: also
/// every monitor instance's whole state path ([`Runner::record_states`]), for `diff`.
pub fn judge_recording(
    spec: &Spec,
    sel: &Selection,
    dir: &Path,
    context: usize,
) -> Result<(Judged, Vec<InstanceHistory>), crate::Error> {
    let reading = Reading {
        context,
        ..Reading::default()
    };
    judge_inner(spec, sel, dir, &reading, true)
        .map(|(j, log)| (j, log.map(|l| l.histories()).unwrap_or_default()))
}

/// Opens the trace at `dir` for judging: where judging ends (unless `include_teardown`, where
/// the recorder's teardown began) and a runner for the selection.
pub(crate) fn open_judging(
    spec: &Spec,
    sel: &Selection,
    dir: &Path,
    include_teardown: bool,
) -> Result<(Trace, Option<i64>, Runner), crate::Error> {
    let t = crate::s3::open_trace(dir)?;
    // the recorder's own teardown (`compose down` stops every container) is not the system's
    // behaviour: judging ends where it began
    let cutoff = if include_teardown {
        None
    } else {
        teardown_start(&t)?
    };
    let mut runner = Runner::new(spec, sel).map_err(|e| crate::Error::Usage(e.to_string()))?;
    // the experiment the recorder ran is judged from where the recorder started it
    if let Some(name) = t
        .manifest()
        .schedule
        .pointer("/experiment/name")
        .and_then(|n| n.as_str())
    {
        runner.recorded_experiment(name);
    }
    Ok((t, cutoff, runner))
}

/// [`judge_reading`], in the runner's recording mode when `record`.
fn judge_inner(
    spec: &Spec,
    sel: &Selection,
    dir: &Path,
    reading: &Reading,
    record: bool,
) -> Result<(Judged, Option<StateLog>), crate::Error> {
    let Reading {
        context,
        read_all_columns,
        include_teardown,
        read_ahead,
    } = *reading;
    let (t, cutoff, mut runner) = open_judging(spec, sel, dir, include_teardown)?;
    let log = record.then(|| runner.record_states());
    // an unfinalized trace is sorted on the fly from its log: projection would save little
    let needs = if read_all_columns || !t.is_finalized() {
        Needs::everything()
    } else {
        runner.needs()
    };
    // skipping sources needs the trace's first/last time and event count from the footer
    let facts = t.parquet_facts();
    // (footer facts count the whole trace: with a cut-off, read every needed row instead)
    let sources = match (&needs.sources, facts) {
        (Some(srcs), Some((_, Some(_), Some(_), _))) if cutoff.is_none() => {
            Some(srcs.iter().cloned().collect::<Vec<_>>())
        }
        _ => None,
    };
    // row groups whose statistics rule out every event the selection may react to
    let skipped = if read_all_columns {
        None
    } else {
        skipped_groups(&t, &runner.relevance(), cutoff)
    };
    // events not observed (other sources, skipped row groups) still count, and the trace's
    // first and last times come from the footer
    let bounds = match facts {
        Some((rows, Some(first), Some(last), _)) if sources.is_some() || skipped.is_some() => {
            Some((rows, first, last))
        }
        _ => None,
    };
    // packet summaries are merged into the stream only when some monitor can match them
    let include_packets = runner.may_observe("packet");
    let opts = ReadOptions {
        include_packets,
        columns: needs.columns(),
        sources,
        until_ns: cutoff,
        read_ahead,
        row_groups: skipped.as_ref().map(|s| s.keep.clone()),
        // a monitor fed columns copies its instances' recent events at most once per batch (one
        // whose guards read a row's text reads it in the cache in the default batches)
        batch_size: if runner.feeds_light_columns() {
            65_536
        } else {
            0
        },
        // a keyed monitor evaluated instance by instance gets each batch's rows grouped by
        // its key on the decoding threads, ahead of the evaluation
        prepare: runner.prepare(),
        ..Default::default()
    };
    // the cores that decode row groups ahead also evaluate them: each batch's monitors and
    // experiments, and the parts of a keyed monitor split by key, spread over the threads
    // (the same report)
    runner.set_threads(read_ahead.max(1));
    let mut last = None;
    let mut packets = 0u64;
    let mut started = bounds.is_none();
    for batch in t.events(&opts)? {
        let batch = batch?;
        let Some(first_ev) = batch.iter().next() else {
            continue;
        };
        if !started {
            // start at the trace's first event, observed or not
            if let Some((_, first, _)) = &bounds {
                runner.advance_to((*first).min(first_ev.ts_ns));
            }
            started = true;
        }
        // a monitor whose guards are all specialised is fed the columns
        runner.observe_events(&batch);
        if include_packets {
            packets += batch.count_source("packet") as u64;
        }
        // (in order: the reader refuses a trace that is not)
        let batch_last = match batch.columns() {
            Some(c) => c.ts.last().copied(),
            None => batch.iter().last().map(|e| e.ts_ns),
        };
        last = last.max(batch_last);
    }
    if let Some((_, first, trace_last)) = &bounds {
        if !started {
            runner.advance_to(*first);
        }
        last = Some(last.map_or(*trace_last, |l: i64| l.max(*trace_last)));
    }
    let m = t.manifest();
    let end = match (cutoff, last, m.ended_ns) {
        (Some(c), _, _) => c,
        (None, Some(a), Some(b)) => a.max(b),
        (None, a, b) => a.or(b).or(m.started_ns).unwrap_or(0),
    };
    let mut report = runner.finish(end);
    match (&bounds, cutoff) {
        // every event of the trace counts, observed or skipped
        (Some((rows, _, _)), None) => report.events = rows + packets,
        // every event before the cut-off: those observed and those of the groups skipped
        _ => report.events += skipped.as_ref().map_or(0, |s| s.rows),
    }
    if needs.columns() != Columns::ALL {
        refill_shown_events(&t, &mut report)?;
    }
    let ctx = report::gather_context(&t, &report, context)?;
    let origin_ns = t.manifest().started_ns.or(report.start_ns);
    let warnings = unknown_service_warnings(spec, &report, t.manifest());
    let halt = halt_note(&t)?;
    let judged = Judged {
        trace: dir.to_path_buf(),
        report,
        context: ctx,
        origin_ns,
        warnings,
        manifest: Some(t.manifest().clone()),
        halt,
    };
    Ok((judged, log))
}

/// The row groups of a finalized trace a judging pass may leave unread: those whose statistics
/// prove that none of their events is one the selection may react to ([`Relevance`]), and,
/// with a cut-off, that lie wholly before it (their events count; a group reaching the cut-off
/// is read). `None` when every group is read.
pub struct Skipped {
    /// Which row groups to read, by index.
    pub keep: std::sync::Arc<[bool]>,
    /// The events of the groups left unread.
    pub rows: u64,
}

pub fn skipped_groups(t: &Trace, relevance: &Relevance, cutoff: Option<i64>) -> Option<Skipped> {
    if relevance.is_everything() {
        return None;
    }
    let groups = t.group_stats()?;
    // the skipped events' times come from the footer: every group must record them
    if groups.iter().any(|g| g.ts.is_none()) {
        return None;
    }
    let mut rows = 0;
    let keep: Vec<bool> = groups
        .iter()
        .map(|g| {
            let before_cutoff = cutoff.is_none_or(|c| g.ts.is_some_and(|(_, hi)| hi < c));
            let read = !before_cutoff || relevance.may_matter(g);
            if !read {
                rows += g.rows;
            }
            read
        })
        .collect();
    keep.iter().any(|k| !k).then(|| Skipped {
        keep: keep.into(),
        rows,
    })
}

/// Re-reads, with every column, the events a report shows (deciding events, transitions,
/// matched faults) and puts them back into it: one targeted read per cluster of nearby times,
/// row groups outside each window skipped by their statistics. Packet events are merged in
/// whole by the reader and need no re-read.
pub fn refill_shown_events(t: &Trace, report: &mut Report) -> Result<(), trace::TraceError> {
    let shown: Vec<(i64, u64, String)> = report
        .shown_events()
        .into_iter()
        .filter(|e| e.2 != "packet")
        .collect();
    if shown.is_empty() {
        return Ok(());
    }
    // events closer than about one row group's time span are read in one window
    let gap = match t.parquet_facts() {
        Some((_, Some(a), Some(b), n)) if n > 0 => (b.saturating_sub(a) / n as i64).max(0),
        _ => 0,
    };
    let mut windows: Vec<(i64, i64, Vec<String>, Vec<u64>)> = Vec::new();
    for (ts, seq, src) in shown {
        match windows.last_mut() {
            Some(w) if ts.saturating_sub(w.1) <= gap => {
                w.1 = ts;
                if !w.2.contains(&src) {
                    w.2.push(src);
                }
                w.3.push(seq);
            }
            _ => windows.push((ts, ts, vec![src], vec![seq])),
        }
    }
    let mut full: HashMap<u64, EventInfo> = HashMap::new();
    for (lo, hi, sources, seqs) in windows {
        let opts = ReadOptions {
            since_ns: Some(lo),
            until_ns: Some(hi.saturating_add(1)),
            // (an event shown without its source, read without that column, may be of any)
            sources: (!sources.iter().any(String::is_empty)).then_some(sources),
            ..Default::default()
        };
        for b in t.events(&opts)? {
            let b = b?;
            for ev in b.iter() {
                if seqs.contains(&ev.seq) {
                    full.insert(ev.seq, EventInfo::of(&ev));
                }
            }
        }
    }
    report.refill_events(|seq| full.get(&seq).cloned());
    Ok(())
}

/// Judges every trace of `list` on `jobs` worker threads (one trace per worker at a time), with
/// a progress bar on stderr when it is a terminal; the results come back in list order, an
/// unreadable trace as its error.
pub fn judge_fleet(
    spec: &Spec,
    sel: &Selection,
    list: &[PathBuf],
    jobs: usize,
    context: usize,
) -> Result<Vec<crate::fleet::Outcome>, crate::Error> {
    Runner::new(spec, sel).map_err(|e| crate::Error::Usage(e.to_string()))?;
    Ok(judge_fleet_reading(
        spec,
        sel,
        list,
        jobs,
        Reading {
            context,
            ..Reading::default()
        },
    ))
}

/// [`judge_fleet`] read as `reading` says (its `read_ahead` is set from the jobs the fleet
/// leaves idle).
pub(crate) fn judge_fleet_reading(
    spec: &Spec,
    sel: &Selection,
    list: &[PathBuf],
    jobs: usize,
    reading: Reading,
) -> Vec<crate::fleet::Outcome> {
    // cores the fleet leaves idle decode each trace's row groups ahead of its evaluator (one
    // trace on every core; a fleet of at least as many traces as jobs reads each sequentially)
    let reading = Reading {
        read_ahead: jobs / list.len().max(1),
        ..reading
    };
    crate::fleet::par_map(list, jobs, true, |t| {
        (t.clone(), judge_reading(spec, sel, t, &reading))
    })
}
