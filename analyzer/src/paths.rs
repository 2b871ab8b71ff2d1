//! `analyzer diff`'s first divergence of monitor state paths. Both runs are judged in the
//! runner's recording mode, which gives every monitor instance's whole state path (each state it
//! entered, when, by which event, and how it ended); the instances are paired across the runs
//! (same scope, monitor, key and `at`, the k-th with the k-th), each pair's paths are compared
//! step by step, and the earliest place where a pair parts is the runs' first divergence:
//!
//! - a path is the states an instance entered, in order (entering the state it is already in
//!   does not count), then its verdict, or `undecided` when its step or the run ended first;
//! - the two paths of a pair part at their first step that differs: a different state or
//!   verdict; the same one entered in a different phase; or the same one entered in the same
//!   phase but more than `lag` later into it in one run than in the other; an instance that
//!   only one run had parts where it started;
//! - of all pairs that part, the first is the one whose earlier point (phase, then offset into
//!   the phase) comes first. An `expect` step's instances belong to that step's phase.
//!
//! When the earlier point is a transition an event caused, that event is compared with the
//! other run's event of the same source, service and kind nearest the same time into the phase:
//! what differs in their `data` (or message) is usually why one run moved and the other did not.

use std::collections::BTreeMap;

use monitor::{EventInfo, InstanceHistory};
use serde::Serialize;

use crate::phases::Bounds;
use crate::report::Judged;
use crate::Error;

/// One step of an instance's state path in one run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathStep {
    /// `state`: the instance entered the state `name`; `verdict`: it decided `name` (`accept`,
    /// `fail`, `inconclusive`); `end`: its step or the run ended first (`name` is `undecided`).
    pub what: String,
    pub name: String,
    pub ts_ns: i64,
    /// The event that caused it (none for the start, a timeout, the end).
    pub seq: Option<u64>,
    /// The phase it happened in (numbered as the diff's phases) and the time from that
    /// phase's start.
    pub phase: usize,
    pub offset_ns: i64,
}

/// One run's side of a divergence.
#[derive(Debug, Clone, Serialize)]
pub struct PathSide {
    /// The path's step where the paths part (`None`: the instance did not run in this run).
    pub step: Option<PathStep>,
    /// The state the instance was in just before `step` (`None` at the start).
    pub previous: Option<String>,
    /// The path up to and including `step` (at most the last 8 steps).
    pub path: Vec<PathStep>,
    /// Steps of the path left out before `path`.
    pub elided: usize,
    /// The events around the moment the paths part, in this run.
    pub events: Vec<EventInfo>,
    /// That moment in this run, and the phase and offset it is at.
    pub around_ns: i64,
    pub around_phase: usize,
    pub around_offset_ns: i64,
    /// The phase's start in this run (event lines count from it).
    pub phase_start_ns: Option<i64>,
}

/// Where the monitor state paths of the two runs first part.
#[derive(Debug, Clone, Serialize)]
pub struct PathDivergence {
    /// What judged the instance: a monitor's name, or `experiment E step N`.
    pub scope: String,
    /// The instance as explanations name it.
    pub monitor: String,
    pub key: Option<String>,
    pub at: Option<String>,
    /// The index of the step in the path where the paths part (0: the start state).
    pub index: usize,
    /// `differ` (another state or verdict), `phase` (the same one in another phase), `later`
    /// (the same one in the same phase, more than the lag later), `only_good`, `only_bad`.
    pub kind: String,
    pub text: String,
    pub good: PathSide,
    pub bad: PathSide,
    /// The event that moved one run at the earlier point, against the other run's nearest
    /// event of the same kind.
    pub events: Option<EventComparison>,
}

/// The event behind the earlier point of a divergence and its counterpart in the other run.
#[derive(Debug, Clone, Serialize)]
pub struct EventComparison {
    /// `GOOD` or `BAD`: the run whose path moved on this event.
    pub moved: String,
    pub event: EventInfo,
    /// The other run's event of the same source, service and kind nearest the same time into
    /// the phase (within 30 s), if it had one.
    pub other: Option<EventInfo>,
    /// What differs between them: `path: GOOD value, BAD value`, `path: only in GOOD: value`.
    pub differences: Vec<String>,
}

/// An event with its whole `data` and message, for comparing.
struct Full {
    info: EventInfo,
    message: Option<String>,
    data: Option<String>,
}

impl Full {
    fn of(ev: &trace::EventRef<'_>) -> Full {
        Full {
            info: EventInfo::of(ev),
            message: ev.message.map(str::to_string),
            data: ev.data.map(str::to_string),
        }
    }
}

/// Events of `j`'s trace within 30 s of `at` whose source is `source`.
fn scan(
    j: &Judged,
    at: i64,
    source: &str,
    mut f: impl FnMut(&trace::EventRef<'_>) -> bool,
) -> Result<(), Error> {
    let t = crate::s3::open_trace(&j.trace)?;
    let opts = trace::ReadOptions {
        since_ns: Some(at.saturating_sub(30_000_000_000)),
        until_ns: Some(at.saturating_add(30_000_000_001)),
        sources: Some(vec![source.to_string()]),
        include_packets: source == "packet",
        ..Default::default()
    };
    for b in t.events(&opts)? {
        for ev in b?.iter() {
            if !f(&ev) {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// The event `seq` at `ts` of `j`'s trace.
fn event_at(j: &Judged, ts: i64, seq: u64) -> Result<Option<Full>, Error> {
    let t = crate::s3::open_trace(&j.trace)?;
    let opts = trace::ReadOptions {
        since_ns: Some(ts),
        until_ns: Some(ts.saturating_add(1)),
        include_packets: true,
        ..Default::default()
    };
    for b in t.events(&opts)? {
        for ev in b?.iter() {
            if ev.seq == seq {
                return Ok(Some(Full::of(&ev)));
            }
        }
    }
    Ok(None)
}

/// The event of `like`'s source, service and kind in `j`'s trace nearest `at` (within 30 s).
fn nearest(j: &Judged, at: i64, like: &EventInfo) -> Result<Option<Full>, Error> {
    let mut best: Option<Full> = None;
    scan(j, at, &like.source, |ev| {
        if let Some(b) = &best {
            if ev.ts_ns - at > (b.info.ts_ns - at).abs() {
                return false;
            }
        }
        if ev.service == like.service.as_deref() && ev.kind == like.kind {
            let closer = best
                .as_ref()
                .is_none_or(|b| (ev.ts_ns - at).abs() < (b.info.ts_ns - at).abs());
            if closer {
                best = Some(Full::of(ev));
            }
        }
        true
    })?;
    Ok(best)
}

/// A value as compact JSON, cut to 160 characters.
fn show(v: &serde_json::Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 160 {
        let mut c: String = s.chars().take(160).collect();
        c.push('…');
        c
    } else {
        s
    }
}

/// Where two JSON values differ, as `path: ...` lines (arrays compared as multisets: an
/// element one run has and the other does not).
fn json_diff(path: &str, g: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value as J;
    let at = if path.is_empty() { "data" } else { path };
    match (g, b) {
        (J::Object(x), J::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match (x.get(k), y.get(k)) {
                    (Some(a), Some(c)) => json_diff(&p, a, c, out),
                    (Some(a), None) => out.push(format!("{p}: only in GOOD: {}", show(a))),
                    (None, Some(c)) => out.push(format!("{p}: only in BAD: {}", show(c))),
                    (None, None) => {}
                }
            }
        }
        (J::Array(x), J::Array(y)) => {
            let mut left: Vec<&J> = y.iter().collect();
            let mut only_g = Vec::new();
            for a in x {
                match left.iter().position(|c| *c == a) {
                    Some(i) => {
                        left.remove(i);
                    }
                    None => only_g.push(a),
                }
            }
            for a in only_g {
                out.push(format!("{at}[]: only in GOOD: {}", show(a)));
            }
            for c in left {
                out.push(format!("{at}[]: only in BAD: {}", show(c)));
            }
        }
        _ if g != b => out.push(format!("{at}: GOOD {}, BAD {}", show(g), show(b))),
        _ => {}
    }
}

/// What differs between the GOOD and the BAD event: their `data` (as JSON when both are),
/// else their messages.
fn event_differences(g: &Full, b: &Full) -> Vec<String> {
    let mut out = Vec::new();
    let parse = |d: &Option<String>| {
        d.as_deref()
            .and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok())
    };
    match (parse(&g.data), parse(&b.data)) {
        (Some(x), Some(y)) => json_diff("", &x, &y, &mut out),
        _ if g.data != b.data => out.push(format!(
            "data: GOOD {}, BAD {}",
            g.data.as_deref().unwrap_or("-"),
            b.data.as_deref().unwrap_or("-")
        )),
        _ => {}
    }
    if g.message != b.message {
        let (x, y) = (
            g.message.as_deref().map(crate::phases::template),
            b.message.as_deref().map(crate::phases::template),
        );
        if x != y {
            out.push(format!(
                "message: GOOD {}, BAD {}",
                x.as_deref().unwrap_or("-"),
                y.as_deref().unwrap_or("-")
            ));
        }
    }
    out
}

/// The event behind the earlier point (when an event caused it) against the other run's
/// nearest event of the same kind at the same time into the phase.
fn compare_events(
    f: &Found,
    g: (&Judged, &PathSide),
    b: (&Judged, &PathSide),
) -> Result<Option<EventComparison>, Error> {
    let mover = [("GOOD", g, b), ("BAD", b, g)]
        .into_iter()
        .find(|(_, s, _)| {
            s.1.step
                .as_ref()
                .is_some_and(|x| x.seq.is_some() && (x.phase, x.offset_ns) == f.first)
        });
    let Some((name, (mj, ms), (oj, os))) = mover else {
        return Ok(None);
    };
    let Some((ts, seq)) = ms.step.as_ref().and_then(|x| Some((x.ts_ns, x.seq?))) else {
        return Ok(None);
    };
    let Some(ev) = event_at(mj, ts, seq)? else {
        return Ok(None);
    };
    let other = nearest(oj, os.around_ns, &ev.info)?;
    let differences = match &other {
        Some(o) if name == "GOOD" => event_differences(&ev, o),
        Some(o) => event_differences(o, &ev),
        None => Vec::new(),
    };
    Ok(Some(EventComparison {
        moved: name.to_string(),
        event: ev.info,
        other: other.map(|o| o.info),
        differences,
    }))
}

/// A path with where its steps fall.
struct Path {
    h: InstanceHistory,
    steps: Vec<PathStep>,
}

/// Where `ts` falls in a run: the phase's slot in the bounds (`fixed` for an `expect` step's
/// instance) and the offset from its start.
fn place(b: &Bounds, ts: i64, fixed: Option<usize>) -> (usize, i64) {
    // past every phase's end (the end of what was judged): the last phase that had begun
    let slot = fixed
        .or_else(|| crate::phases::phase_of(b, ts))
        .or_else(|| b.iter().rposition(|p| p.2.is_some_and(|s| s <= ts)))
        .unwrap_or(0);
    let start = b.get(slot).and_then(|p| p.2).unwrap_or(ts);
    (slot, ts - start)
}

/// The experiment step number of a scope `experiment E step N` of experiment `exp`.
fn step_of(scope: &str, exp: &str) -> Option<usize> {
    scope
        .strip_prefix("experiment ")?
        .strip_prefix(exp)?
        .strip_prefix(" step ")?
        .parse()
        .ok()
}

/// An instance's path: the states it entered (re-entering the current one left out), then its
/// verdict or `undecided` at the end of its step (or of the run).
fn path_of(h: InstanceHistory, b: &Bounds, j: &Judged, exp: &str) -> Path {
    let step = step_of(&h.scope, exp);
    let slot = step.and_then(|n| b.iter().position(|p| p.0 == n));
    let num = |slot: usize| b.get(slot).map_or(0, |p| p.0);
    let mut steps: Vec<PathStep> = Vec::new();
    for s in &h.states {
        if steps.last().is_some_and(|l| l.name == s.state) {
            continue;
        }
        let (sl, off) = place(b, s.from_ns, slot);
        steps.push(PathStep {
            what: "state".into(),
            name: s.state.clone(),
            ts_ns: s.from_ns,
            seq: s.entered_by_seq,
            phase: num(sl),
            offset_ns: off,
        });
    }
    match (h.verdict, h.decided_ns) {
        (Some(v), Some(ts)) => {
            let (sl, off) = place(b, ts, slot);
            steps.push(PathStep {
                what: "verdict".into(),
                name: v.as_str().into(),
                ts_ns: ts,
                seq: h.decided_by_seq,
                phase: num(sl),
                offset_ns: off,
            });
        }
        _ => {
            // the end of its step, else of what was judged
            let end = slot
                .and_then(|s| b.get(s))
                .and_then(|p| p.3)
                .unwrap_or(j.report.end_ns);
            let (sl, off) = place(b, end, slot);
            steps.push(PathStep {
                what: "end".into(),
                name: "undecided".into(),
                ts_ns: end,
                seq: None,
                phase: num(sl),
                offset_ns: off,
            });
        }
    }
    Path { h, steps }
}

/// Where a divergence happens in one run: (phase number, offset), for ordering.
type Point = (usize, i64);

struct Found {
    g: Option<usize>,
    b: Option<usize>,
    index: usize,
    kind: &'static str,
    first: Point,
}

/// The first step where two paths part, if they do.
fn compare(g: &Path, b: &Path, lag_ns: i64) -> Option<(usize, &'static str)> {
    for (i, (x, y)) in g.steps.iter().zip(&b.steps).enumerate() {
        if x.what != y.what || x.name != y.name {
            return Some((i, "differ"));
        }
        if x.phase != y.phase {
            return Some((i, "phase"));
        }
        if (x.offset_ns - y.offset_ns).abs() > lag_ns {
            return Some((i, "later"));
        }
    }
    // every path ends with a verdict or `undecided`: equal ends mean equal lengths
    (g.steps.len() != b.steps.len()).then(|| {
        let i = g.steps.len().min(b.steps.len());
        (i, "differ")
    })
}

fn point(s: Option<&PathStep>) -> Point {
    s.map_or((usize::MAX, i64::MAX), |s| (s.phase, s.offset_ns))
}

fn describe(s: &PathStep, previous: Option<&str>) -> String {
    let at = format!("+{} into phase {}", secs(s.offset_ns), s.phase);
    match s.what.as_str() {
        "state" => match previous {
            Some(p) => format!("went `{p}` -> `{}` at {at}", s.name),
            None => format!("started in `{}` at {at}", s.name),
        },
        "verdict" => match previous {
            Some(p) => format!("decided {} in `{p}` at {at}", s.name),
            None => format!("decided {} at {at}", s.name),
        },
        _ => match previous {
            Some(p) => format!("was still in `{p}` when it ended undecided at {at}"),
            None => format!("ended undecided at {at}"),
        },
    }
}

fn secs(ns: i64) -> String {
    format!("{:.3}s", ns as f64 / 1e9)
}

/// One line of a path: `forming [9 +0.000s] -> stable [9 +2.012s]`.
pub fn render_path(p: &[PathStep], elided: usize) -> String {
    let mut out = if elided > 0 {
        format!("… ({elided} earlier) -> ")
    } else {
        String::new()
    };
    let items: Vec<String> = p
        .iter()
        .map(|s| format!("{} [{} +{}]", s.name, s.phase, secs(s.offset_ns)))
        .collect();
    out.push_str(&items.join(" -> "));
    out
}

/// The side of one run: the path up to `idx`, and the events around `(slot, offset)`.
#[allow(clippy::too_many_arguments)]
fn side(
    p: Option<&Path>,
    idx: usize,
    j: &Judged,
    b: &Bounds,
    centre: Point,
    services: &[String],
    context: usize,
) -> Result<PathSide, Error> {
    let step = p.and_then(|p| p.steps.get(idx)).cloned();
    let previous = p
        .and_then(|p| idx.checked_sub(1).and_then(|i| p.steps.get(i)))
        .map(|s| s.name.clone());
    let (path, elided) = match p {
        Some(p) => {
            let end = (idx + 1).min(p.steps.len());
            let from = end.saturating_sub(8);
            (p.steps[from..end].to_vec(), from)
        }
        None => (Vec::new(), 0),
    };
    // the same phase and offset in this run, within the phase (the end of what was judged
    // when this run never reached it)
    let slot = b.iter().position(|x| x.0 == centre.0);
    let (at, phase, start) = match slot.and_then(|s| b.get(s)) {
        Some(&(n, _, Some(s), e, _)) => {
            let len = e.unwrap_or(j.report.end_ns) - s;
            let off = centre.1.clamp(0, len.max(0));
            (s + off, n, Some(s))
        }
        _ => {
            let last = b
                .iter()
                .rev()
                .find(|x| x.2.is_some())
                .map_or((0, None), |x| (x.0, x.2));
            (j.report.end_ns, last.0, last.1)
        }
    };
    let events = crate::phases::around(j, at, services, context)?;
    Ok(PathSide {
        step,
        previous,
        path,
        elided,
        events,
        around_ns: at,
        around_phase: phase,
        around_offset_ns: start.map_or(0, |s| at - s),
        phase_start_ns: start,
    })
}

/// The services a scope involves in either run (from the judged results), the instance's `at`,
/// and the trace's compose services its name mentions (`inCluster(left-a, right-a)`).
fn services(
    scope: &str,
    exp: &str,
    at: Option<&str>,
    display: &str,
    runs: [&Judged; 2],
) -> Vec<String> {
    let mut out: Vec<String> = at.into_iter().map(str::to_string).collect();
    let words: Vec<&str> = display
        .split(|c: char| !(c.is_alphanumeric() || c == '-' || c == '_' || c == '.'))
        .filter(|w| !w.is_empty())
        .collect();
    for j in runs {
        if let Some(m) = &j.manifest {
            out.extend(
                words
                    .iter()
                    .filter(|w| m.compose.services.contains_key(**w))
                    .map(|w| w.to_string()),
            );
        }
        match step_of(scope, exp) {
            Some(n) => {
                for x in j.report.experiments.iter().filter(|x| x.name == exp) {
                    if let Some(m) = x.steps.get(n - 1).and_then(|s| s.monitor.as_ref()) {
                        out.extend(m.services());
                    }
                }
            }
            None => {
                for m in j.report.monitors.iter().filter(|m| m.name == scope) {
                    out.extend(m.services());
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

type Ident = (String, String, Option<String>, Option<String>);

fn ident(h: &InstanceHistory) -> Ident {
    (
        h.scope.clone(),
        h.monitor.clone(),
        h.key.clone(),
        h.at.clone(),
    )
}

/// The first divergence of the two runs' monitor state paths (`None`: every path is the same).
#[allow(clippy::too_many_arguments)]
pub fn first_divergence(
    exp: &str,
    good: (&Judged, &Bounds, Vec<InstanceHistory>),
    bad: (&Judged, &Bounds, Vec<InstanceHistory>),
    lag_ns: i64,
    context: usize,
) -> Result<Option<PathDivergence>, Error> {
    let group = |hs: Vec<InstanceHistory>, b: &Bounds, j: &Judged| {
        let mut m: BTreeMap<Ident, Vec<Path>> = BTreeMap::new();
        for h in hs {
            m.entry(ident(&h)).or_default().push(path_of(h, b, j, exp));
        }
        m
    };
    let gp = group(good.2, good.1, good.0);
    let bp = group(bad.2, bad.1, bad.0);
    let mut keys: Vec<&Ident> = gp.keys().chain(bp.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut best: Option<(Ident, usize, Found)> = None;
    for k in keys {
        let (gs, bs) = (
            gp.get(k).map_or(&[][..], |v| v.as_slice()),
            bp.get(k).map_or(&[][..], |v| v.as_slice()),
        );
        for n in 0..gs.len().max(bs.len()) {
            let found = match (gs.get(n), bs.get(n)) {
                (Some(g), Some(b)) => compare(g, b, lag_ns).map(|(i, kind)| Found {
                    g: Some(n),
                    b: Some(n),
                    index: i,
                    kind,
                    first: point(g.steps.get(i)).min(point(b.steps.get(i))),
                }),
                (Some(g), None) => Some(Found {
                    g: Some(n),
                    b: None,
                    index: 0,
                    kind: "only_good",
                    first: point(g.steps.first()),
                }),
                (None, Some(b)) => Some(Found {
                    g: None,
                    b: Some(n),
                    index: 0,
                    kind: "only_bad",
                    first: point(b.steps.first()),
                }),
                (None, None) => None,
            };
            if let Some(f) = found {
                if best.as_ref().is_none_or(|(_, _, x)| f.first < x.first) {
                    best = Some((k.clone(), n, f));
                }
            }
        }
    }
    let Some((k, _, f)) = best else {
        return Ok(None);
    };
    let g = f.g.and_then(|n| gp.get(&k).and_then(|v| v.get(n)));
    let b = f.b.and_then(|n| bp.get(&k).and_then(|v| v.get(n)));
    let display = g.or(b).map_or(k.1.as_str(), |p| p.h.monitor.as_str());
    let svc = services(&k.0, exp, k.3.as_deref(), display, [good.0, bad.0]);
    let gside = side(g, f.index, good.0, good.1, f.first, &svc, context)?;
    let bside = side(b, f.index, bad.0, bad.1, f.first, &svc, context)?;
    let text = summary(&f, &gside, &bside, lag_ns);
    let events = compare_events(&f, (good.0, &gside), (bad.0, &bside))?;
    let h = g.or(b).map(|p| &p.h);
    Ok(Some(PathDivergence {
        scope: k.0.clone(),
        monitor: h.map_or(k.1.clone(), |h| h.monitor.clone()),
        key: k.2.clone(),
        at: k.3.clone(),
        index: f.index,
        kind: f.kind.to_string(),
        text,
        good: gside,
        bad: bside,
        events,
    }))
}

/// One sentence saying how the paths part.
fn summary(f: &Found, g: &PathSide, b: &PathSide, lag_ns: i64) -> String {
    let d = |s: &PathSide| s.step.as_ref().map(|x| describe(x, s.previous.as_deref()));
    match (f.kind, d(g), d(b)) {
        ("only_good", Some(x), _) => format!("it ran in GOOD only: GOOD {x}"),
        ("only_bad", _, Some(y)) => format!("it ran in BAD only: BAD {y}"),
        ("later", Some(x), Some(y)) => {
            let shift = match (&g.step, &b.step) {
                (Some(a), Some(c)) => c.offset_ns - a.offset_ns,
                _ => 0,
            };
            let (who, by) = if shift > 0 {
                ("BAD", shift)
            } else {
                ("GOOD", -shift)
            };
            format!(
                "GOOD {x}; BAD {y}: {who} {} later (more than the lag, {})",
                secs(by),
                secs(lag_ns)
            )
        }
        (_, Some(x), Some(y)) => format!("GOOD {x}; BAD {y}"),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use monitor::{StateSpan, Verdict};

    fn hist(states: &[(&str, i64)], verdict: Option<(Verdict, i64)>) -> InstanceHistory {
        InstanceHistory {
            scope: "experiment E step 3".into(),
            monitor: "m at a".into(),
            key: None,
            at: Some("a".into()),
            states: states
                .iter()
                .enumerate()
                .map(|(i, (s, t))| StateSpan {
                    state: s.to_string(),
                    from_ns: *t,
                    to_ns: states.get(i + 1).map(|x| x.1),
                    entered_by_seq: Some(i as u64),
                })
                .collect(),
            verdict: verdict.map(|v| v.0),
            decided_ns: verdict.map(|v| v.1),
            decided_by_seq: None,
        }
    }

    fn judged(end: i64) -> Judged {
        Judged {
            trace: "t".into(),
            report: monitor::Report {
                verdict: Verdict::Accept,
                events: 0,
                start_ns: Some(0),
                end_ns: end,
                monitors: Vec::new(),
                experiments: Vec::new(),
            },
            context: Vec::new(),
            origin_ns: Some(0),
            warnings: Vec::new(),
            manifest: None,
            halt: None,
        }
    }

    /// Phases 0 (0..10), 3 (10..50), 4 (50..end).
    fn bounds() -> Bounds {
        vec![
            (0, "before".into(), Some(0), Some(10), None),
            (3, "expect m".into(), Some(10), Some(50), None),
            (4, "after".into(), Some(50), Some(100), None),
        ]
    }

    #[test]
    fn paths_collapse_self_loops_and_end_with_the_verdict_or_undecided() {
        let j = judged(100);
        let p = path_of(
            hist(
                &[("a", 10), ("a", 12), ("b", 20)],
                Some((Verdict::Accept, 30)),
            ),
            &bounds(),
            &j,
            "E",
        );
        let names: Vec<(&str, &str, usize, i64)> = p
            .steps
            .iter()
            .map(|s| (s.what.as_str(), s.name.as_str(), s.phase, s.offset_ns))
            .collect();
        assert_eq!(
            names,
            vec![
                ("state", "a", 3, 0),
                ("state", "b", 3, 10),
                ("verdict", "accept", 3, 20)
            ]
        );
        // undecided: the path ends where its step ended, in the step's phase
        let p = path_of(hist(&[("a", 10)], None), &bounds(), &j, "E");
        assert_eq!(p.steps[1].what, "end");
        assert_eq!((p.steps[1].phase, p.steps[1].offset_ns), (3, 40));
    }

    #[test]
    fn paths_part_at_another_state_a_later_entry_or_not_at_all() {
        let j = judged(100);
        let b = bounds();
        let mk = |s: &[(&str, i64)], v| path_of(hist(s, v), &b, &j, "E");
        let good = mk(&[("a", 10), ("b", 20)], Some((Verdict::Accept, 30)));
        let stuck = mk(&[("a", 10)], None);
        assert_eq!(compare(&good, &stuck, 5), Some((1, "differ")));
        let late = mk(&[("a", 10), ("b", 27)], Some((Verdict::Accept, 37)));
        assert_eq!(compare(&good, &late, 5), Some((1, "later")));
        assert_eq!(compare(&good, &late, 7), None);
        let same = mk(&[("a", 10), ("b", 21)], Some((Verdict::Accept, 31)));
        assert_eq!(compare(&good, &same, 5), None);
    }
}
