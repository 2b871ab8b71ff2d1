//! `analyzer diff GOOD BAD --spec ...`: aligns two runs of one experiment by its steps (phases)
//! and reports what differs: each phase's duration in both runs, the first step where the runs'
//! verdicts part (with the explanation and the events around it in both traces), and per phase
//! the largest differences in event counts per service x source x kind, in log lines grouped into
//! templates (numbers, ids and addresses masked), and in fault timings; as text or JSON.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use monitor::{EventInfo, ExperimentResult, Selection, Verdict};
use serde::Serialize;
use trace::ReadOptions;

use crate::judge::{judge_recording, load_spec, Judged};
use crate::phases::{around, phase_of, template, Bounds};
use crate::report::text::event_line;
use crate::report::CheckFormat;
use crate::{exit, Error};

/// Arguments of `analyzer diff`.
#[derive(Debug, Clone, clap::Args)]
pub struct DiffArgs {
    /// The passing run (trace directory or `s3://` URL).
    pub good: PathBuf,
    /// The failing run.
    pub bad: PathBuf,
    /// A spec file, one per `--spec` (repeatable, as for `check`).
    #[arg(long = "spec", value_name = "FILE", required = true)]
    pub spec: Vec<PathBuf>,
    /// The experiment whose steps align the runs (default: the one the runs recorded, else the
    /// only experiment of the specs).
    #[arg(long)]
    pub experiment: Option<String>,
    /// Report format.
    #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
    pub format: CheckFormat,
    /// Differences shown per phase (and in the overall ranking).
    #[arg(long, default_value_t = 5)]
    pub top: usize,
    /// Events shown around the first divergence, in each run.
    #[arg(long, default_value_t = 6)]
    pub context: usize,
    /// Monitors whose state paths are compared besides the experiment's steps (repeatable;
    /// default: every monitor without parameters, as `check` judges them).
    #[arg(long)]
    pub monitor: Vec<String>,
    /// How much later one run may enter the same state in the same phase before the state
    /// paths count as parted there (e.g. `2s`, `500ms`).
    #[arg(long, default_value = "2s", value_parser = trace::time::parse_duration_ns)]
    pub lag: i64,
}

/// Distinct log templates kept per service; the rest count as one `<other>` template.
const MAX_TEMPLATES: usize = 5_000;

/// One phase of a run: the time before the experiment, a step, or the time after it.
#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    /// 0: before the first step; a step's number (from 1, as `check` numbers them); the last
    /// step's number + 1: after the experiment.
    pub number: usize,
    pub label: String,
    pub good_ns: Option<i64>,
    pub bad_ns: Option<i64>,
    pub good_verdict: Option<Verdict>,
    pub bad_verdict: Option<Verdict>,
    /// The ranked differences inside this phase.
    pub differences: Vec<Difference>,
}

/// One difference between the runs in one phase.
#[derive(Debug, Clone, Serialize)]
pub struct Difference {
    pub phase: usize,
    /// `events` (service x source x kind), `log` (a template), or `fault` (timing).
    pub what: String,
    pub service: Option<String>,
    pub key: String,
    pub good: f64,
    pub bad: f64,
    /// How unusual the difference is: |bad - good| / sqrt(bad + good) for counts (a Poisson
    /// z-score), seconds of shift for fault timings.
    pub score: f64,
    pub text: String,
}

/// Where the runs' step results first part.
#[derive(Debug, Clone, Serialize)]
pub struct Divergence {
    pub step: usize,
    pub text: String,
    pub good_verdict: Option<Verdict>,
    pub bad_verdict: Option<Verdict>,
    /// Time from the step's start to its end, per run.
    pub good_ns: Option<i64>,
    pub bad_ns: Option<i64>,
    pub good_explanation: Vec<String>,
    pub bad_explanation: Vec<String>,
    /// Events around the point of divergence (services involved, faults, notes).
    pub good_events: Vec<EventInfo>,
    pub bad_events: Vec<EventInfo>,
    /// The instants the events are centred on, as offsets from the step's start: the failing
    /// run's decision, and the same offset in the other run (at most its step's length).
    pub good_offset_ns: i64,
    pub bad_offset_ns: i64,
    /// The step's start in each run (the event lines count from it).
    pub good_start_ns: Option<i64>,
    pub bad_start_ns: Option<i64>,
}

/// The whole diff.
#[derive(Debug, Clone, Serialize)]
pub struct Diff {
    pub good: String,
    pub bad: String,
    pub experiment: String,
    pub good_verdict: Verdict,
    pub bad_verdict: Verdict,
    pub phases: Vec<Phase>,
    /// Where the monitor state paths first part (docs/cli.md says how it is chosen).
    pub state_divergence: Option<crate::paths::PathDivergence>,
    /// The first step whose verdicts differ (else the step whose duration differs most).
    pub divergence: Option<Divergence>,
    /// The largest differences over all phases.
    pub ranked: Vec<Difference>,
    /// The largest differences in the phases before the first divergence: where a cause (rather
    /// than a consequence) of the divergence shows.
    pub before_divergence: Vec<Difference>,
    /// When one run replays the other (`recorder run --replay`, the manifest's `replay_of`):
    /// which one, e.g. `BAD replays GOOD (run 20261201T…)`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay: Option<String>,
    /// The phase `before_divergence` stops at: where the state paths part, or the first step
    /// whose verdicts differ, whichever comes first.
    pub before_phase: Option<usize>,
}

/// Whether one of the runs replays the other, from their manifests' `replay_of`.
fn replay_relation(g: &Judged, b: &Judged) -> Option<String> {
    let (gm, bm) = (g.manifest.as_ref()?, b.manifest.as_ref()?);
    let forced = |m: &trace::Manifest| {
        if m.replay_of.as_ref().is_some_and(|r| r.forced) {
            ", forced: the scenario or specs differed"
        } else {
            ""
        }
    };
    if bm.replay_of.as_ref().is_some_and(|r| r.run_id == gm.run_id) {
        Some(format!(
            "BAD replays GOOD (run {}{})",
            gm.run_id,
            forced(bm)
        ))
    } else if gm.replay_of.as_ref().is_some_and(|r| r.run_id == bm.run_id) {
        Some(format!(
            "GOOD replays BAD (run {}{})",
            bm.run_id,
            forced(gm)
        ))
    } else {
        None
    }
}

fn bounds(j: &Judged, x: &ExperimentResult) -> Bounds {
    let start = j.origin_ns.or(j.report.start_ns).unwrap_or(0);
    let end = j.report.end_ns;
    let mut b: Bounds = Vec::new();
    let first = x.steps.iter().find_map(|s| s.start_ns);
    b.push((0, "before the experiment".into(), Some(start), first, None));
    let mut last = first;
    for s in &x.steps {
        if s.kind == "note" {
            continue;
        }
        let e = s.end_ns.or(s.start_ns.map(|_| end));
        b.push((s.index + 1, s.text.clone(), s.start_ns, e, s.verdict));
        if e.is_some() {
            last = e;
        }
    }
    let n = x.steps.len() + 1;
    // after the last step, when the run got there
    let finished = x
        .steps
        .iter()
        .all(|s| s.kind == "note" || s.end_ns.is_some());
    let (a, z) = if finished {
        (last, Some(end))
    } else {
        (None, None)
    };
    b.push((n, "after the experiment".into(), a, z, None));
    b
}

#[derive(Default)]
struct Counts {
    /// (phase slot, service, source, kind) -> events
    events: HashMap<(usize, String, String, String), u64>,
    /// (phase slot, service, template) -> lines
    logs: HashMap<(usize, String, String), u64>,
    templates: HashMap<String, usize>,
    /// (phase slot, fault kind, target, offset from the phase start)
    faults: Vec<(usize, String, String, i64)>,
}

fn count(dir: &Path, b: &Bounds, until: i64) -> Result<Counts, Error> {
    let t = crate::s3::open_trace(dir)?;
    let mut c = Counts::default();
    let opts = ReadOptions {
        until_ns: Some(until.saturating_add(1)),
        ..Default::default()
    };
    for batch in t.events(&opts)? {
        let batch = batch?;
        for ev in batch.iter() {
            let Some(slot) = phase_of(b, ev.ts_ns) else {
                continue;
            };
            let svc = ev.service.unwrap_or("-").to_string();
            *c.events
                .entry((
                    slot,
                    svc.clone(),
                    ev.source.to_string(),
                    ev.kind.to_string(),
                ))
                .or_default() += 1;
            if ev.source == "log" {
                if let Some(m) = ev.message {
                    let n = c.templates.entry(svc.clone()).or_default();
                    let mut tpl = template(m);
                    if *n >= MAX_TEMPLATES
                        && !c.logs.contains_key(&(slot, svc.clone(), tpl.clone()))
                    {
                        tpl = "<other>".into();
                    } else {
                        *n += 1;
                    }
                    *c.logs.entry((slot, svc.clone(), tpl)).or_default() += 1;
                }
            }
            if ev.source == "fault" {
                let start = b[slot].2.unwrap_or(ev.ts_ns);
                c.faults
                    .push((slot, ev.kind.to_string(), svc, ev.ts_ns - start));
            }
        }
    }
    Ok(c)
}

/// How unusual `b` events in `tb` seconds are against `g` in `tg` (a two-sample Poisson rate
/// z-score; raw counts when a phase has no length).
fn z(g: f64, tg: f64, b: f64, tb: f64) -> f64 {
    if g + b == 0.0 {
        return 0.0;
    }
    let (tg, tb) = if tg > 0.0 && tb > 0.0 {
        (tg, tb)
    } else {
        (1.0, 1.0)
    };
    let (rg, rb) = (g / tg, b / tb);
    (rb - rg).abs() / (g / (tg * tg) + b / (tb * tb)).sqrt()
}

fn secs(ns: i64) -> String {
    format!("{:.3}s", ns as f64 / 1e9)
}

fn phase_name(number: usize, label: &str) -> String {
    format!("phase {number} (`{label}`)")
}

/// Keys seen anywhere in a run (any phase): a difference in something the other run never did
/// at all ranks higher.
struct Seen {
    events: std::collections::HashSet<(String, String, String)>,
    logs: std::collections::HashSet<(String, String)>,
}

impl Seen {
    fn of(c: &Counts) -> Seen {
        Seen {
            events: c
                .events
                .keys()
                .map(|k| (k.1.clone(), k.2.clone(), k.3.clone()))
                .collect(),
            logs: c.logs.keys().map(|k| (k.1.clone(), k.2.clone())).collect(),
        }
    }
}

/// Weight of a log template's level: warnings and errors say more than routine lines.
fn level(tpl: &str) -> f64 {
    let head: String = tpl
        .chars()
        .take(24)
        .collect::<String>()
        .to_ascii_uppercase();
    if ["WARN", "ERROR", "FATAL", "PANIC"]
        .iter()
        .any(|l| head.contains(l))
    {
        1.5
    } else {
        1.0
    }
}

/// Weight of a difference: something one run never did at all counts three times, something one
/// run did not do in this phase twice.
fn weight(novel: bool, g: u64, b: u64) -> f64 {
    if novel {
        3.0
    } else if g == 0 || b == 0 {
        2.0
    } else {
        1.0
    }
}

/// Compares the counts of one phase slot (the same index in both runs' bounds); `tg`/`tb` are
/// the phase's lengths in seconds.
#[allow(clippy::too_many_arguments)]
fn differences(
    slot: usize,
    number: usize,
    label: &str,
    (g, gseen, tg): (&Counts, &Seen, f64),
    (b, bseen, tb): (&Counts, &Seen, f64),
) -> Vec<Difference> {
    let mut out = Vec::new();
    let mut ev: BTreeMap<(&str, &str, &str), (u64, u64)> = BTreeMap::new();
    for ((s, svc, src, kind), n) in &g.events {
        if *s == slot {
            ev.entry((svc, src, kind)).or_default().0 += n;
        }
    }
    for ((s, svc, src, kind), n) in &b.events {
        if *s == slot {
            ev.entry((svc, src, kind)).or_default().1 += n;
        }
    }
    let pn = phase_name(number, label);
    for ((svc, src, kind), (gn, bn)) in ev {
        if gn == bn || src == "log" {
            continue;
        }
        let k = (svc.to_string(), src.to_string(), kind.to_string());
        let novel = !gseen.events.contains(&k) || !bseen.events.contains(&k);
        out.push(Difference {
            phase: number,
            what: "events".into(),
            service: Some(svc.to_string()),
            key: format!("{src} {kind}"),
            good: gn as f64,
            bad: bn as f64,
            score: z(gn as f64, tg, bn as f64, tb) * weight(novel, gn, bn),
            text: format!("{pn}: {svc} had {bn} `{src} {kind}` events in BAD, {gn} in GOOD"),
        });
    }
    let mut logs: BTreeMap<(&str, &str), (u64, u64)> = BTreeMap::new();
    for ((s, svc, tpl), n) in &g.logs {
        if *s == slot {
            logs.entry((svc, tpl)).or_default().0 += n;
        }
    }
    for ((s, svc, tpl), n) in &b.logs {
        if *s == slot {
            logs.entry((svc, tpl)).or_default().1 += n;
        }
    }
    for ((svc, tpl), (gn, bn)) in logs {
        if gn == bn {
            continue;
        }
        let k = (svc.to_string(), tpl.to_string());
        let novel = !gseen.logs.contains(&k) || !bseen.logs.contains(&k);
        out.push(Difference {
            phase: number,
            what: "log".into(),
            service: Some(svc.to_string()),
            key: tpl.to_string(),
            good: gn as f64,
            bad: bn as f64,
            // a log template is more specific than a whole kind of events: first on a tie
            score: z(gn as f64, tg, bn as f64, tb) * 1.01 * weight(novel, gn, bn) * level(tpl),
            text: format!("{pn}: {svc} logged {bn} `{tpl}` lines in BAD, {gn} in GOOD"),
        });
    }
    // faults of the phase, paired in order by kind and target
    type F = (usize, String, String, i64);
    let gf: Vec<&F> = g.faults.iter().filter(|f| f.0 == slot).collect();
    let bf: Vec<&F> = b.faults.iter().filter(|f| f.0 == slot).collect();
    let on = |svc: &str| {
        if svc == "-" {
            String::new()
        } else {
            format!(" on {svc}")
        }
    };
    let mut used = vec![false; bf.len()];
    for x in &gf {
        let m = bf
            .iter()
            .enumerate()
            .find(|(i, y)| !used[*i] && y.1 == x.1 && y.2 == x.2);
        match m {
            Some((i, y)) => {
                used[i] = true;
                let shift = (y.3 - x.3) as f64 / 1e9;
                if shift.abs() >= 0.5 {
                    out.push(Difference {
                        phase: number,
                        what: "fault".into(),
                        service: Some(x.2.clone()),
                        key: x.1.clone(),
                        good: x.3 as f64 / 1e9,
                        bad: y.3 as f64 / 1e9,
                        score: shift.abs(),
                        text: format!(
                            "{pn}: fault `{}`{} at +{} into the phase in BAD, +{} in GOOD",
                            x.1,
                            on(&x.2),
                            secs(y.3),
                            secs(x.3)
                        ),
                    });
                }
            }
            None => out.push(Difference {
                phase: number,
                what: "fault".into(),
                service: Some(x.2.clone()),
                key: x.1.clone(),
                good: 1.0,
                bad: 0.0,
                score: 10.0,
                text: format!("{pn}: fault `{}`{} in GOOD only", x.1, on(&x.2)),
            }),
        }
    }
    for (i, y) in bf.iter().enumerate() {
        if !used[i] {
            out.push(Difference {
                phase: number,
                what: "fault".into(),
                service: Some(y.2.clone()),
                key: y.1.clone(),
                good: 0.0,
                bad: 1.0,
                score: 10.0,
                text: format!("{pn}: fault `{}`{} in BAD only", y.1, on(&y.2)),
            });
        }
    }
    // below this, a difference is what two runs of one system differ by anyway
    // (a single line ranks when the other run did not log it in this phase)
    // (kinds of events move between short phases by one: two or more)
    out.retain(|d| d.score >= 2.0 && (d.what != "events" || (d.bad - d.good).abs() >= 2.0));
    out.sort_by(|a, b| {
        b.score
            .partial_cmp(&a.score)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| a.text.cmp(&b.text))
    });
    out
}

fn experiment_name(args: &DiffArgs, spec: &monitor::Spec, good: &Path) -> Result<String, Error> {
    if let Some(e) = &args.experiment {
        return Ok(e.clone());
    }
    if let Ok(t) = crate::s3::open_trace(good) {
        if let Some(n) = t
            .manifest()
            .schedule
            .pointer("/experiment/name")
            .or_else(|| t.manifest().schedule.pointer("/experiment"))
            .and_then(|n| n.as_str())
        {
            if spec.experiment(n).is_some() {
                return Ok(n.to_string());
            }
        }
    }
    match spec.experiments.as_slice() {
        [one] => Ok(one.name.clone()),
        _ => Err(Error::Usage(
            "which experiment aligns the runs? the traces recorded none of the specs' experiments; name one with --experiment".into(),
        )),
    }
}

fn divergence(
    args: &DiffArgs,
    good: (&Judged, &ExperimentResult),
    bad: (&Judged, &ExperimentResult),
) -> Result<Option<Divergence>, Error> {
    let pairs = good.1.steps.iter().zip(bad.1.steps.iter());
    let Some((gs, bs)) = pairs
        .clone()
        .find(|(g, b)| g.verdict != b.verdict)
        .or_else(|| {
            // same verdicts throughout: the step whose duration differs most
            pairs
                .filter(|(g, b)| g.kind == "expect" && b.kind == "expect")
                .max_by_key(|(g, b)| {
                    let d = |s: &monitor::StepResult| s.end_ns.zip(s.start_ns).map(|(e, s)| e - s);
                    d(g).zip(d(b)).map_or(0, |(x, y)| (x - y).abs())
                })
        })
    else {
        return Ok(None);
    };
    let dur = |s: &monitor::StepResult| s.end_ns.zip(s.start_ns).map(|(e, s)| e - s);
    let expl = |j: &Judged, s: &monitor::StepResult| -> (Vec<String>, Option<i64>, Vec<String>) {
        match s.monitor.as_ref().and_then(|m| m.primary_explanation()) {
            Some(e) => (
                crate::report::text::explain(e, j.origin_ns, &[], ""),
                e.deciding_event.as_ref().map(|d| d.ts_ns).or(e.decided_ns),
                e.services.clone(),
            ),
            None => (
                s.reason.iter().map(|r| format!("reason: {r}")).collect(),
                None,
                Vec::new(),
            ),
        }
    };
    let (ge, g_at, g_svc) = expl(good.0, gs);
    let (be, b_at, b_svc) = expl(bad.0, bs);
    // centre on the failing run's decision, at the same offset into the step in the other run
    let offset = match (b_at, bs.start_ns, g_at, gs.start_ns) {
        (Some(a), Some(s), _, _) => a - s,
        (_, _, Some(a), Some(s)) => a - s,
        _ => dur(bs).or(dur(gs)).unwrap_or(0),
    };
    let mut services = b_svc;
    services.extend(g_svc);
    services.sort();
    services.dedup();
    let good_offset = dur(gs).map_or(offset, |d| offset.min(d));
    let good_events = match gs.start_ns {
        Some(s) => around(good.0, s + good_offset, &services, args.context)?,
        None => Vec::new(),
    };
    let bad_events = match bs.start_ns {
        Some(s) => around(bad.0, s + offset, &services, args.context)?,
        None => Vec::new(),
    };
    Ok(Some(Divergence {
        step: gs.index + 1,
        text: gs.text.clone(),
        good_verdict: gs.verdict,
        bad_verdict: bs.verdict,
        good_ns: dur(gs),
        bad_ns: dur(bs),
        good_explanation: ge,
        bad_explanation: be,
        good_events,
        bad_events,
        good_offset_ns: good_offset,
        bad_offset_ns: offset,
        good_start_ns: gs.start_ns,
        bad_start_ns: bs.start_ns,
    }))
}

/// The phase where the state paths part: the earlier of the two runs' points.
fn path_phase(p: &crate::paths::PathDivergence) -> usize {
    [&p.good.step, &p.bad.step]
        .into_iter()
        .flatten()
        .map(|s| s.phase)
        .min()
        .unwrap_or(p.good.around_phase)
}

/// Computes the diff of two runs.
pub fn diff(args: &DiffArgs, spec: &monitor::Spec) -> Result<Diff, Error> {
    let name = experiment_name(args, spec, &args.good)?;
    let monitors = if args.monitor.is_empty() {
        spec.monitors
            .iter()
            .filter(|m| m.params.is_empty() && m.runnable.is_some())
            .map(|m| m.name.clone())
            .collect()
    } else {
        args.monitor.clone()
    };
    let sel = Selection {
        monitors,
        experiments: vec![name.clone()],
    };
    let judge = |p: &Path| judge_recording(spec, &sel, p, 0);
    let (g, b) = std::thread::scope(|s| {
        let h = s.spawn(|| judge(&args.bad));
        (judge(&args.good), h.join())
    });
    let (g, g_paths) = g?;
    let (b, b_paths) = b.map_err(|_| Error::Runtime("judging the bad run panicked".into()))??;
    let find = |j: &Judged| -> Result<ExperimentResult, Error> {
        j.report
            .experiments
            .iter()
            .find(|x| x.name == name)
            .cloned()
            .ok_or_else(|| Error::Usage(format!("experiment {name} was not judged")))
    };
    let (gx, bx) = (find(&g)?, find(&b)?);
    let (gb, bb) = (bounds(&g, &gx), bounds(&b, &bx));
    let (gc, bc) = std::thread::scope(|s| {
        let h = s.spawn(|| count(&b.trace, &bb, b.report.end_ns));
        (count(&g.trace, &gb, g.report.end_ns), h.join())
    });
    let gc = gc?;
    let bc = bc.map_err(|_| Error::Runtime("reading the bad run panicked".into()))??;
    let mut phases = Vec::new();
    let mut ranked = Vec::new();
    let (gseen, bseen) = (Seen::of(&gc), Seen::of(&bc));
    for (slot, (gp, bp)) in gb.iter().zip(bb.iter()).enumerate() {
        let len = |p: &(usize, String, Option<i64>, Option<i64>, Option<Verdict>)| {
            p.2.zip(p.3).map(|(s, e)| e - s)
        };
        let (gl, bl) = (len(gp), len(bp));
        // a phase only one run reached has nothing to compare with
        let d = match (gl, bl) {
            (Some(tg), Some(tb)) => differences(
                slot,
                gp.0,
                &gp.1,
                (&gc, &gseen, tg as f64 / 1e9),
                (&bc, &bseen, tb as f64 / 1e9),
            ),
            _ => Vec::new(),
        };
        ranked.extend(d.iter().cloned());
        phases.push(Phase {
            number: gp.0,
            label: gp.1.clone(),
            good_ns: gl,
            bad_ns: bl,
            good_verdict: gp.4,
            bad_verdict: bp.4,
            differences: d.into_iter().take(args.top).collect(),
        });
    }
    ranked.sort_by(|a, b| {
        b.score
            .partial_cmp(&a.score)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| a.text.cmp(&b.text))
    });
    let divergence = divergence(args, (&g, &gx), (&b, &bx))?;
    let state_divergence = crate::paths::first_divergence(
        &name,
        (&g, &gb, g_paths),
        (&b, &bb, b_paths),
        args.lag,
        args.context,
    )?;
    // the differences before where the runs first part: the state paths, else the verdicts
    let cut = match (&state_divergence, &divergence) {
        (Some(s), Some(d)) => Some(path_phase(s).min(d.step)),
        (Some(s), None) => Some(path_phase(s)),
        (None, Some(d)) => Some(d.step),
        (None, None) => None,
    };
    let before_divergence: Vec<Difference> = match cut {
        Some(cut) => ranked
            .iter()
            .filter(|x| x.phase < cut)
            .take(args.top)
            .cloned()
            .collect(),
        None => Vec::new(),
    };
    ranked.truncate(args.top);
    Ok(Diff {
        good: args.good.display().to_string(),
        bad: args.bad.display().to_string(),
        experiment: name,
        good_verdict: gx.verdict,
        bad_verdict: bx.verdict,
        phases,
        state_divergence,
        divergence,
        ranked,
        before_divergence,
        replay: replay_relation(&g, &b),
        before_phase: cut,
    })
}

fn v(x: Option<Verdict>) -> &'static str {
    x.map_or("not reached", Verdict::as_str)
}

fn d(ns: Option<i64>) -> String {
    ns.map_or("-".into(), secs)
}

/// Writes the diff as text.
pub fn write_text(w: &mut dyn Write, x: &Diff) -> std::io::Result<()> {
    writeln!(w, "diff of experiment {}", x.experiment)?;
    writeln!(w, "  GOOD {}: {}", x.good, x.good_verdict)?;
    writeln!(w, "  BAD  {}: {}", x.bad, x.bad_verdict)?;
    if let Some(r) = &x.replay {
        writeln!(w, "  {r}")?;
    }
    writeln!(w, "phases (duration GOOD / BAD, verdict GOOD / BAD):")?;
    for p in &x.phases {
        let verdicts = if p.good_verdict.is_some() || p.bad_verdict.is_some() {
            format!("  {} / {}", v(p.good_verdict), v(p.bad_verdict))
        } else {
            String::new()
        };
        writeln!(
            w,
            "  {:>2}. {:<60} {:>9} / {:<9}{verdicts}",
            p.number,
            p.label.chars().take(60).collect::<String>(),
            d(p.good_ns),
            d(p.bad_ns)
        )?;
    }
    match &x.state_divergence {
        Some(p) => write_paths(w, p)?,
        None => writeln!(w, "the monitor state paths do not part")?,
    }
    match &x.divergence {
        Some(dv) => {
            let how = if dv.good_verdict == dv.bad_verdict {
                "no step verdict differs; the step whose duration differs most"
            } else {
                "first verdict divergence"
            };
            writeln!(
                w,
                "{how}: step {} `{}`: GOOD {} after {}, BAD {} after {}",
                dv.step,
                dv.text,
                v(dv.good_verdict),
                d(dv.good_ns),
                v(dv.bad_verdict),
                d(dv.bad_ns)
            )?;
            for (name, lines) in [("BAD", &dv.bad_explanation), ("GOOD", &dv.good_explanation)] {
                if !lines.is_empty() {
                    writeln!(w, "  {name}:")?;
                    for l in lines.iter().take(40) {
                        writeln!(w, "    {l}")?;
                    }
                }
            }
            for (name, evs, off, start) in [
                ("BAD", &dv.bad_events, dv.bad_offset_ns, dv.bad_start_ns),
                ("GOOD", &dv.good_events, dv.good_offset_ns, dv.good_start_ns),
            ] {
                writeln!(
                    w,
                    "  {name} around +{} into the step (times from the step's start):",
                    secs(off)
                )?;
                if evs.is_empty() {
                    writeln!(w, "    (no events)")?;
                }
                for e in evs {
                    writeln!(w, "    {}", event_line(e, start))?;
                }
            }
        }
        None => writeln!(w, "the runs have no step to compare")?,
    }
    writeln!(w, "largest differences:")?;
    if x.ranked.is_empty() {
        writeln!(w, "  (none)")?;
    }
    for r in &x.ranked {
        writeln!(w, "  {}", r.text)?;
    }
    if let Some(n) = x.before_phase {
        let last = x.phases.last().map_or(0, |p| p.number);
        if n == 0 || n == last {
            writeln!(w, "largest differences before phase {n}:")?;
        } else {
            writeln!(w, "largest differences before step {n}:")?;
        }
        if x.before_divergence.is_empty() {
            writeln!(w, "  (none)")?;
        }
        for r in &x.before_divergence {
            writeln!(w, "  {}", r.text)?;
        }
    }
    writeln!(w, "per phase:")?;
    for p in &x.phases {
        if p.differences.is_empty() {
            continue;
        }
        writeln!(w, "  {}:", phase_name(p.number, &p.label))?;
        for r in &p.differences {
            let t = r.text.split_once(": ").map_or(r.text.as_str(), |x| x.1);
            writeln!(w, "    {t}")?;
        }
    }
    Ok(())
}

/// Writes where the state paths part, both paths and the events around it in both runs.
fn write_paths(w: &mut dyn Write, p: &crate::paths::PathDivergence) -> std::io::Result<()> {
    let key = p
        .key
        .as_ref()
        .map_or(String::new(), |k| format!(" (key {k})"));
    writeln!(
        w,
        "first divergence of monitor state paths: {}, `{}`{key}, path step {}:",
        p.scope, p.monitor, p.index
    )?;
    writeln!(w, "  {}", p.text)?;
    writeln!(w, "  paths ([phase +time into it]):")?;
    for (name, s) in [("GOOD", &p.good), ("BAD ", &p.bad)] {
        if s.path.is_empty() {
            writeln!(w, "    {name} (no such instance)")?;
        } else {
            writeln!(
                w,
                "    {name} {}",
                crate::paths::render_path(&s.path, s.elided)
            )?;
        }
    }
    if let Some(c) = &p.events {
        let (other, start, ostart) = if c.moved == "GOOD" {
            ("BAD", p.good.phase_start_ns, p.bad.phase_start_ns)
        } else {
            ("GOOD", p.bad.phase_start_ns, p.good.phase_start_ns)
        };
        writeln!(w, "  {} moved on:", c.moved)?;
        writeln!(w, "    {}", event_line(&c.event, start))?;
        match &c.other {
            Some(o) => {
                writeln!(w, "  {other}'s nearest event of the same kind:")?;
                writeln!(w, "    {}", event_line(o, ostart))?;
                if c.differences.is_empty() {
                    writeln!(w, "  they do not differ")?;
                } else {
                    writeln!(w, "  they differ in:")?;
                    for d in c.differences.iter().take(12) {
                        writeln!(w, "    {d}")?;
                    }
                    if c.differences.len() > 12 {
                        writeln!(w, "    ({} more)", c.differences.len() - 12)?;
                    }
                }
            }
            None => writeln!(w, "  {other} had no event of that kind within 30s")?,
        }
    }
    for (name, s) in [("BAD", &p.bad), ("GOOD", &p.good)] {
        writeln!(
            w,
            "  {name} around +{} into phase {} (times from the phase's start):",
            secs(s.around_offset_ns),
            s.around_phase
        )?;
        if s.events.is_empty() {
            writeln!(w, "    (no events)")?;
        }
        for e in &s.events {
            writeln!(w, "    {}", event_line(e, s.phase_start_ns))?;
        }
    }
    Ok(())
}

/// Runs `analyzer diff`.
pub fn run(args: &DiffArgs, out: &mut dyn Write) -> Result<i32, Error> {
    let spec = match load_spec(&args.spec) {
        Ok(s) => s,
        Err((code, msg)) => {
            eprintln!("{msg}");
            return Ok(code);
        }
    };
    let x = diff(args, &spec)?;
    match args.format {
        CheckFormat::Text => write_text(out, &x).map_err(Error::output)?,
        CheckFormat::Json => {
            serde_json::to_writer_pretty(&mut *out, &x)
                .map_err(|e| Error::output(std::io::Error::other(e)))?;
            writeln!(out).map_err(Error::output)?;
        }
    }
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::template;

    #[test]
    fn templates_mask_numbers_ids_and_addresses() {
        assert_eq!(
            template("processed request 1234 in 56 us"),
            "processed request <n> in <n> us"
        );
        assert_eq!(
            template(
                "[INFO] [2026-11-25 12:47:20.282] heartbeat timeout 5316 from 172.20.0.3:2552"
            ),
            "[INFO] heartbeat timeout <n> from <ip>"
        );
        assert_eq!(
            template("container 3f2a9c81d0e4 of left-a restarted, dc1"),
            "container <hex> of left-a restarted, dc1"
        );
        assert_eq!(
            template("Node [akka.tcp://TestCluster@right-a:2552] is JOINING"),
            "Node [akka.tcp://TestCluster@right-a:<n>] is JOINING"
        );
        assert_eq!(
            template("id 6f1c2a3b-1111-2222-3333-444455556666 ok"),
            "id <id> ok"
        );
    }
}
