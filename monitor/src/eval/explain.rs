//! What explanations are made of: the [`Outcome`] of an instance or a leaf, the armed
//! [`Timer`] and the [`PathEntry`] ring of recent transitions an instance keeps, rendered into
//! report [`Transition`]s, and the outcome of a leaf that never saw an instance.

use crate::ir::Machine;
use crate::report::{EventInfo, Explanation, Transition, Verdict};
use crate::value::Value;
use std::collections::VecDeque;

#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    pub verdict: Verdict,
    pub at_ns: i64,
    pub at_seq: Option<u64>,
    pub explanation: Explanation,
    /// The value an `accept ... with V` accepted with (what `expect ... as NAME` binds).
    pub value: Option<Value>,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Timer {
    pub(super) deadline: i64,
    pub(super) armed_ns: i64,
    pub(super) armed_seq: Option<u64>,
}

#[derive(Debug, Clone)]
pub(super) struct PathEntry {
    pub(super) from: u16,
    pub(super) to: u16,
    pub(super) ts: i64,
    /// handler index, or u16::MAX for `on timeout`
    pub(super) handler: u16,
    /// Compact copy of the event that caused it (`None` for a timeout). The ring of entries is
    /// bounded (PATH_MAX) and its allocations are reused.
    pub(super) event: Option<EventInfo>,
}

/// A `per` key as explanations show it (a string without quotes).
pub(super) fn show_key(v: &Value) -> String {
    match v {
        Value::Str(s) => s.to_string(),
        other => other.to_string(),
    }
}

/// An inconclusive outcome of monitor `display` at `end_ns`, for reason `why`.
pub(super) fn inconclusive(display: &str, why: &str, end_ns: i64) -> Outcome {
    Outcome {
        verdict: Verdict::Inconclusive,
        at_ns: end_ns,
        at_seq: None,
        explanation: Explanation {
            reason: format!("{display}: {why}"),
            monitor: display.to_string(),
            decided_ns: Some(end_ns),
            ..Default::default()
        },
        value: None,
    }
}

/// The transitions an instance kept, as the report shows them.
pub(super) fn path_of(m: &Machine, p: &VecDeque<PathEntry>) -> Vec<Transition> {
    p.iter()
        .map(|e| {
            let from = &m.states[e.from as usize];
            Transition {
                from: from.name.clone(),
                to: m.states[e.to as usize].name.clone(),
                ts_ns: e.ts,
                seq: e.event.as_ref().map(|x| x.seq),
                event: e.event.clone(),
                handler: if e.handler == u16::MAX {
                    from.on_timeout
                        .as_ref()
                        .map(|h| h.1.clone())
                        .unwrap_or_else(|| "on timeout".into())
                } else {
                    from.handlers
                        .get(e.handler as usize)
                        .map(|h| h.text.clone())
                        .unwrap_or_default()
                },
            }
        })
        .collect()
}
