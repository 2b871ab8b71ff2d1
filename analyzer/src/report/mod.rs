//! Reporters of `analyzer check` (text, JSON, JUnit) and the context gathering they share: the
//! events around each deciding event, from the services involved plus faults and notes; for a
//! timeout (no deciding event), around the end of the window and around the last transition.

pub mod json;
pub mod junit;
pub mod text;

use monitor::{EventInfo, Explanation, MonitorResult, Report, Verdict};
use serde::Serialize;
use std::path::PathBuf;
use trace::{ReadOptions, Trace};

/// Report format of `check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CheckFormat {
    Text,
    Json,
}

/// One judged trace with the context events of its failures.
pub struct Judged {
    pub trace: PathBuf,
    pub report: Report,
    /// Per deciding event seq: the surrounding events of the services involved.
    pub context: Vec<Context>,
    /// Where `+offsets` count from: the recording's start (manifest `started_ns`), as in
    /// `analyzer info` and `events`, else the first event.
    pub origin_ns: Option<i64>,
    /// What looks wrong without changing a verdict: experiment steps naming services the
    /// trace's compose project does not have (the step warnings are in the report).
    pub warnings: Vec<String>,
    /// The trace's manifest (run id, scenario, recorder; `--verdicts`, `flaky`, `diff`).
    pub manifest: Option<trace::Manifest>,
    /// Where and why the recorder halted the run (its `halt` event), if it did.
    pub halt: Option<HaltNote>,
}

/// The recorder's `halt` event (a halt condition failed, docs/scenario.md): where the run was
/// halted and why.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct HaltNote {
    /// The halt event (written when every fault was reverted).
    pub ts_ns: i64,
    pub seq: u64,
    /// The halt condition that failed, as written in the scenario.
    pub monitor: String,
    pub explanation: String,
    /// The event that decided the failure (its time, and seq unless a timeout decided).
    pub deciding_ts_ns: Option<i64>,
    pub deciding_seq: Option<u64>,
    /// Faults reverted by the halt.
    pub reverted: Vec<String>,
    /// Deciding event → every fault reverted.
    pub latency_ms: Option<f64>,
}

/// Events around one deciding event (`seq`), or around a time (`at_ns`: the end of a window a
/// timeout closed; `seq` is then 0).
#[derive(Debug, Clone, Serialize)]
pub struct Context {
    /// The deciding event's `seq` and time (a packet's `seq` counts packets: the time tells it
    /// apart from an event with the same number).
    pub seq: u64,
    pub ts_ns: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at_ns: Option<i64>,
    pub services: Vec<String>,
    pub events: Vec<EventInfo>,
}

/// One place context is read around: a deciding event (or the event of a timeout's last
/// transition), or a time (`at_ns`: the end of a window a timeout closed; `seq` is then 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Anchor {
    pub seq: u64,
    pub ts_ns: i64,
    pub at_ns: Option<i64>,
    /// The anchor is a packet: its `seq` numbers packets, so only its time places it among the
    /// events.
    pub is_packet: bool,
}

/// Where context is read for an explanation: its deciding event, else (a timeout) the end of
/// the window and the event of the last transition.
pub fn context_anchors(e: &Explanation) -> Vec<Anchor> {
    if let Some(d) = &e.deciding_event {
        return vec![Anchor {
            seq: d.seq,
            ts_ns: d.ts_ns,
            at_ns: None,
            is_packet: d.source == "packet",
        }];
    }
    let mut out = Vec::new();
    let Some(t) = &e.timeout else { return out };
    out.push(Anchor {
        seq: 0,
        ts_ns: t.deadline_ns,
        at_ns: Some(t.deadline_ns),
        is_packet: false,
    });
    if let Some(ev) = e.path.last().and_then(|t| t.event.as_ref()) {
        out.push(Anchor {
            seq: ev.seq,
            ts_ns: ev.ts_ns,
            at_ns: None,
            is_packet: ev.source == "packet",
        });
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
    for e in explanations(report) {
        for a in context_anchors(e) {
            let known = out.iter().any(|c| {
                c.at_ns == a.at_ns && (a.at_ns.is_some() || (c.seq, c.ts_ns) == (a.seq, a.ts_ns))
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
                since_ns: Some(a.ts_ns - 30_000_000_000),
                until_ns: Some(a.ts_ns + 30_000_000_001),
                ..Default::default()
            };
            let by_event = a.at_ns.is_none() && !a.is_packet;
            let events = events_around(
                t,
                &opts,
                n,
                |ev| keep(ev.source, ev.service) && !(by_event && ev.seq == a.seq),
                // A packet or a time is placed among the events by time alone (what is stamped
                // at the same time comes before it); an event by (ts_ns, seq).
                |ev| {
                    if by_event {
                        (ev.ts_ns, ev.seq) < (a.ts_ns, a.seq)
                    } else {
                        ev.ts_ns <= a.ts_ns
                    }
                },
            )?;
            out.push(Context {
                seq: a.seq,
                ts_ns: a.ts_ns,
                at_ns: a.at_ns,
                services,
                events,
            });
        }
    }
    Ok(out)
}

/// Up to `n` kept events before an anchor and `n` after it, in trace order, from the events
/// `opts` selects: `keep` chooses the events, `is_before` places each against the anchor (the
/// events are read in order, so the read stops at the `n`th after).
pub fn events_around(
    t: &Trace,
    opts: &ReadOptions,
    n: usize,
    keep: impl Fn(&trace::EventRef<'_>) -> bool,
    is_before: impl Fn(&trace::EventRef<'_>) -> bool,
) -> Result<Vec<EventInfo>, trace::TraceError> {
    let mut before: std::collections::VecDeque<EventInfo> = Default::default();
    let mut after = Vec::new();
    'outer: for b in t.events(opts)? {
        let b = b?;
        for ev in b.iter() {
            if !keep(&ev) {
                continue;
            }
            if is_before(&ev) {
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
    Ok(events)
}
