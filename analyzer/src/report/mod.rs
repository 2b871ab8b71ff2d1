//! Reporters of `analyzer check` (text, JSON, JUnit) and the context gathering they share: the
//! events around each deciding event, from the services involved plus faults and notes; for a
//! timeout (no deciding event), around the end of the window and around the last transition.

pub mod json;
pub mod junit;
pub mod text;

use monitor::{EventInfo, Explanation, MonitorResult, Report, Verdict};
use serde::Serialize;
use trace::{ReadOptions, Trace};

/// Events around one deciding event (`seq`), or around a time (`at_ns`: the end of a window a
/// timeout closed; `seq` is then 0).
#[derive(Debug, Clone, Serialize)]
pub struct Context {
    pub seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at_ns: Option<i64>,
    pub services: Vec<String>,
    pub events: Vec<EventInfo>,
}

/// Where context is read for an explanation: its deciding event, else (a timeout) the end of
/// the window and the event of the last transition. `(seq, ts, at_ns)`.
pub fn context_anchors(e: &Explanation) -> Vec<(u64, i64, Option<i64>)> {
    if let Some(d) = &e.deciding_event {
        return vec![(d.seq, d.ts_ns, None)];
    }
    let mut out = Vec::new();
    if let Some(t) = &e.timeout {
        out.push((0, t.deadline_ns, Some(t.deadline_ns)));
    }
    if let Some(ev) = e.path.last().and_then(|t| t.event.as_ref()) {
        if e.timeout.is_some() {
            out.push((ev.seq, ev.ts_ns, None));
        }
    }
    out
}

/// The services whose events are context for `e`: its own, else those of its last transition.
fn context_services(e: &Explanation) -> Vec<String> {
    if !e.services.is_empty() {
        return e.services.clone();
    }
    e.path
        .last()
        .and_then(|t| t.event.as_ref())
        .and_then(|ev| ev.service.clone())
        .into_iter()
        .collect()
}

/// Every explanation of a failing (or inconclusive) result, depth first.
pub fn explanations(report: &Report) -> Vec<&Explanation> {
    fn walk<'a>(m: &'a MonitorResult, out: &mut Vec<&'a Explanation>) {
        if m.verdict == Verdict::Accept {
            return;
        }
        if let Some(e) = &m.explanation {
            out.push(e);
        }
        for c in &m.children {
            walk(c, out);
        }
    }
    let mut out = Vec::new();
    for m in &report.monitors {
        walk(m, &mut out);
    }
    for e in &report.experiments {
        for s in &e.steps {
            if let Some(m) = &s.monitor {
                walk(m, &mut out);
            }
        }
    }
    out
}

/// Reads, for each failing explanation with a deciding event, up to `n` events before and after
/// it from the services involved (and fault/note events).
pub fn gather_context(
    t: &Trace,
    report: &Report,
    n: usize,
) -> Result<Vec<Context>, trace::TraceError> {
    let mut out: Vec<Context> = Vec::new();
    if n == 0 {
        return Ok(out);
    }
    for e in explanations(report) {
        for (seq, ts, at_ns) in context_anchors(e) {
            let known = out.iter().any(|c| {
                if at_ns.is_some() {
                    c.at_ns == at_ns
                } else {
                    c.seq == seq && c.at_ns.is_none()
                }
            });
            if known || out.len() >= 20 {
                continue;
            }
            let services = context_services(e);
            let keep = |src: &str, svc: Option<&str>| {
                src == "fault"
                    || src == "note"
                    || svc.is_some_and(|s| services.iter().any(|x| x == s))
            };
            let opts = ReadOptions {
                since_ns: Some(ts - 30_000_000_000),
                until_ns: Some(ts + 30_000_000_001),
                ..Default::default()
            };
            let mut before: std::collections::VecDeque<EventInfo> = Default::default();
            let mut after = Vec::new();
            let mut passed = false;
            'outer: for b in t.events(&opts)? {
                let b = b?;
                for ev in b.iter() {
                    if at_ns.is_none() && ev.seq == seq {
                        passed = true;
                        continue;
                    }
                    // around a time: what is stamped after it comes after
                    if at_ns.is_some() && ev.ts_ns > ts {
                        passed = true;
                    }
                    if !keep(ev.source, ev.service) {
                        continue;
                    }
                    if !passed {
                        before.push_back(EventInfo::of(&ev));
                        if before.len() > n {
                            before.pop_front();
                        }
                    } else {
                        after.push(EventInfo::of(&ev));
                        if after.len() >= n.div_ceil(2) {
                            break 'outer;
                        }
                    }
                }
            }
            let mut events: Vec<EventInfo> = before.into_iter().collect();
            events.extend(after);
            out.push(Context {
                seq,
                at_ns,
                services,
                events,
            });
        }
    }
    Ok(out)
}
