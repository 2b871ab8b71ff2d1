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

#[derive(Debug, Clone, Copy)]
pub(super) struct PathEntry {
    pub(super) from: u16,
    pub(super) to: u16,
    /// handler index, or u16::MAX for `on timeout`
    pub(super) handler: u16,
    pub(super) ts: i64,
    /// The row of the columns being evaluated whose copy the entry's event is still to become
    /// ([`Path::push_row`], [`Path::fill_rows`]); [`NO_ROW`] when the copy is up to date.
    row: u32,
}

/// A [`PathEntry`] whose event copy is up to date.
const NO_ROW: u32 = u32::MAX;

/// The last [`PATH_MAX`] transitions of an instance: a ring whose entries, once it is full, are
/// overwritten in place (the oldest first), their event copies' allocations reused, so a
/// transition moves no entry and, in steady state, allocates nothing. The entries and the
/// copies of the events that caused them (`None` for a timeout) are kept apart: a transition
/// writes a small entry, and a copy only when it is made.
#[derive(Debug, Default)]
pub(super) struct Path {
    entries: Vec<PathEntry>,
    events: Vec<Option<EventInfo>>,
    /// Where the oldest entry is once the ring is full.
    head: usize,
    /// Some entry's event is still a row to copy ([`Path::push_row`]).
    pending: bool,
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
        let Some(i) = self.next_entry((from, to), ts, handler, NO_ROW) else {
            return;
        };
        let Some(slot) = self.events.get_mut(i) else {
            return;
        };
        match (ev, slot) {
            (Some(ev), Some(info)) => info.refill(ev),
            (Some(ev), slot) => *slot = Some(EventInfo::of(ev)),
            (None, slot) => *slot = None,
        }
    }

    /// Adds the transition `from` → `to` at `ts` by `handler`, caused by row `row` of the
    /// columns being evaluated: its event is copied by [`Path::fill_rows`], once the run is
    /// over, only if the entry is still in the ring then (a ring overwritten many times in a
    /// run copies each row it keeps once). Returns whether the path had no such entry before.
    #[inline]
    pub(super) fn push_row(
        &mut self,
        (from, to): (u16, u16),
        ts: i64,
        handler: u16,
        row: u32,
    ) -> bool {
        let clean = !self.pending;
        self.pending = true;
        self.next_entry((from, to), ts, handler, row);
        clean
    }

    /// The index of the entry a new transition takes (a new one, or the oldest once the ring
    /// is full), written but for its event copy.
    #[inline]
    fn next_entry(
        &mut self,
        (from, to): (u16, u16),
        ts: i64,
        handler: u16,
        row: u32,
    ) -> Option<usize> {
        let entry = PathEntry {
            from,
            to,
            handler,
            ts,
            row,
        };
        if self.entries.len() < PATH_MAX {
            self.entries.push(entry);
            self.events.push(None);
            return Some(self.entries.len() - 1);
        }
        let i = self.head;
        *self.entries.get_mut(i)? = entry;
        self.head = (i + 1) % PATH_MAX;
        Some(i)
    }

    /// Copies the events of the entries [`Path::push_row`] added, `event(row)` giving the event
    /// of a row.
    pub(super) fn fill_rows<'a>(&mut self, event: impl Fn(usize) -> EventRef<'a>) {
        if !self.pending {
            return;
        }
        self.pending = false;
        for (e, slot) in self.entries.iter_mut().zip(&mut self.events) {
            if e.row == NO_ROW {
                continue;
            }
            let ev = event(e.row as usize);
            match slot {
                Some(info) => info.refill(&ev),
                slot => *slot = Some(EventInfo::of(&ev)),
            }
            e.row = NO_ROW;
        }
    }

    /// The entries with their events, oldest first.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&PathEntry, Option<&EventInfo>)> + '_ {
        debug_assert!(!self.pending, "a path read before its rows were copied");
        let pairs = self
            .entries
            .iter()
            .zip(self.events.iter().map(Option::as_ref));
        let (newer, older) = (pairs.clone().take(self.head), pairs.skip(self.head));
        older.chain(newer)
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
        .map(|(e, event)| {
            let from = &m.states[e.from as usize];
            Transition {
                from: from.name.clone(),
                to: m.states[e.to as usize].name.clone(),
                ts_ns: e.ts,
                seq: event.map(|x| x.seq),
                event: event.cloned(),
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
