//! What explanations are made of: the [`Outcome`] of an instance or a leaf, the armed
//! [`Timer`] and the [`Path`] ring of recent transitions an instance keeps, rendered into
//! report [`Transition`]s, and the outcome of a leaf that never saw an instance.

use super::PATH_MAX;
use crate::ir::Machine;
use crate::report::{EventInfo, Explanation, Transition, Verdict};
use crate::value::Value;
use trace::EventRef;

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
    /// bounded ([`Path`]) and its allocations are reused.
    pub(super) event: Option<EventInfo>,
}

/// The last [`PATH_MAX`] transitions of an instance: a ring whose entries, once it is full, are
/// overwritten in place (the oldest first), their event copies' allocations reused, so a
/// transition moves no entry and, in steady state, allocates nothing.
#[derive(Debug, Default)]
pub(super) struct Path {
    entries: Vec<PathEntry>,
    /// Where the oldest entry is once the ring is full.
    head: usize,
}

impl Path {
    /// Adds the transition `from` → `to` at `ts` by `handler`, caused by `ev` (`None`: a timeout
    /// or the end), dropping the oldest when full.
    pub(super) fn push(
        &mut self,
        (from, to): (u16, u16),
        ts: i64,
        handler: u16,
        ev: Option<&EventRef<'_>>,
    ) {
        if self.entries.len() < PATH_MAX {
            self.entries.push(PathEntry {
                from,
                to,
                ts,
                handler,
                event: ev.map(EventInfo::of),
            });
            return;
        }
        let Some(e) = self.entries.get_mut(self.head) else {
            return;
        };
        self.head = (self.head + 1) % PATH_MAX;
        e.from = from;
        e.to = to;
        e.ts = ts;
        e.handler = handler;
        match (ev, &mut e.event) {
            (Some(ev), Some(info)) => info.refill(ev),
            (Some(ev), slot) => *slot = Some(EventInfo::of(ev)),
            (None, slot) => *slot = None,
        }
    }

    /// The entries, oldest first.
    pub(super) fn iter(&self) -> impl Iterator<Item = &PathEntry> + '_ {
        let (newer, older) = self.entries.split_at(self.head);
        older.iter().chain(newer)
    }
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
pub(super) fn path_of(m: &Machine, p: &Path) -> Vec<Transition> {
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
