//! Reporters of `analyzer check` (text, JSON, JUnit) and the context gathering they share: the
//! events around each deciding event, from the services involved plus faults and notes.

pub mod json;
pub mod junit;
pub mod text;

use monitor::{EventInfo, Explanation, MonitorResult, Report, Verdict};
use serde::Serialize;
use trace::{ReadOptions, Trace};

/// Events around one deciding event.
#[derive(Debug, Clone, Serialize)]
pub struct Context {
    /// The deciding event's `seq` and time (a packet's `seq` counts packets: the time tells it
    /// apart from an event with the same number).
    pub seq: u64,
    pub ts_ns: i64,
    pub services: Vec<String>,
    pub events: Vec<EventInfo>,
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

/// Reads, for each failing explanation with a deciding event, the `n` events nearest in trace
/// time before it and the `n` after it, from the services involved (and fault/note events).
/// Events are placed by `(ts_ns, seq)`; a packet (whose `seq` counts packets, not events) by its
/// time alone, so its context is the events around it, before and after.
pub fn gather_context(
    t: &Trace,
    report: &Report,
    n: usize,
) -> Result<Vec<Context>, trace::TraceError> {
    let mut out: Vec<Context> = Vec::new();
    if n == 0 {
        return Ok(out);
    }
    let mut seen: Vec<(i64, u64, String)> = Vec::new();
    for e in explanations(report) {
        let Some(d) = &e.deciding_event else { continue };
        let id = (d.ts_ns, d.seq, d.source.clone());
        if seen.contains(&id) || out.len() >= 20 {
            continue;
        }
        seen.push(id);
        let is_packet = d.source == "packet";
        let services = e.services.clone();
        let keep = |src: &str, svc: Option<&str>| {
            src == "fault" || src == "note" || svc.is_some_and(|s| services.iter().any(|x| x == s))
        };
        let opts = ReadOptions {
            since_ns: Some(d.ts_ns - 30_000_000_000),
            until_ns: Some(d.ts_ns + 30_000_000_001),
            ..Default::default()
        };
        let mut before: std::collections::VecDeque<EventInfo> = Default::default();
        let mut after = Vec::new();
        'outer: for b in t.events(&opts)? {
            let b = b?;
            for ev in b.iter() {
                if !is_packet && ev.seq == d.seq {
                    continue;
                }
                if !keep(ev.source, ev.service) {
                    continue;
                }
                let is_before = if is_packet {
                    ev.ts_ns < d.ts_ns
                } else {
                    (ev.ts_ns, ev.seq) < (d.ts_ns, d.seq)
                };
                if is_before {
                    before.push_back(EventInfo::of(&ev));
                    if before.len() > n {
                        before.pop_front();
                    }
                } else {
                    after.push(EventInfo::of(&ev));
                    if after.len() >= n {
                        break 'outer;
                    }
                }
            }
        }
        let mut events: Vec<EventInfo> = before.into_iter().collect();
        events.extend(after);
        out.push(Context {
            seq: d.seq,
            ts_ns: d.ts_ns,
            services,
            events,
        });
    }
    Ok(out)
}
