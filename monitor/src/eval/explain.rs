//! What explanations are made of: the [`Outcome`] of an instance or a leaf, the armed
//! [`Timer`] and the [`Path`] ring of recent transitions an instance keeps, rendered into
//! report [`Transition`]s, and the outcome of a leaf that never saw an instance.

use super::PATH_MAX;
use crate::ir::Machine;
use crate::report::{EventInfo, Explanation, Transition, Verdict};
use crate::value::Value;
use trace::EventRef;

// (the ring's head moves on by a mask: [`overwrite`])
const _: () = assert!(PATH_MAX.is_power_of_two());

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
    /// ([`Path::push_row`], [`Path::fill_tagged`]); [`NO_ROW`] when the copy is up to date.
    row: u32,
    /// An event caused the transition (its copy is the entry's slot of [`Path`]'s events);
    /// `false` for a timeout or the end, whose slot keeps an older copy's allocations.
    caused: bool,
}

/// A [`PathEntry`] whose event copy is up to date.
const NO_ROW: u32 = u32::MAX;

/// The last [`PATH_MAX`] transitions of an instance: a ring whose entries, once it is full, are
/// overwritten in place (the oldest first), their event copies' allocations reused, so a
/// transition moves no entry and, in steady state, allocates nothing. The entries and the
/// copies of the events that caused them are kept apart: a transition writes a small entry,
/// and a copy only when it is made (a timeout's entry leaves its slot's copy as it was, so the
/// slot's allocations serve the next event).
#[derive(Debug, Default)]
pub(super) struct Path {
    entries: Vec<PathEntry>,
    events: Vec<EventInfo>,
    /// Where the oldest entry is once the ring is full.
    head: usize,
    /// How many of the newest entries may still name a row to copy ([`Path::push_row`]): those
    /// added since the last [`Path::fill_tagged`] once one of them named a row (0: none does).
    unfilled: u8,
    /// The leaf lists this path as naming rows of a batch (see [`Path::push_row`]): 0 for
    /// none, 1 for the batch whose rows have no [`ROW_TAG`] bit, 2 for the other.
    listed: u8,
}

/// [`Path::push_row`]s of a run of one batch's rows on one path ([`Path::rows`]): the ring's
/// head and its count of entries to copy are kept here, not read from the path and written back
/// at each push (for the compiler, a store into the ring may change them: each transition
/// waited for the last one's write), and written back when the ring is dropped; a full ring is
/// held as a slice (its place and length in locals too).
pub(super) struct RowRing<'a> {
    head: usize,
    unfilled: u8,
    slots: Slots<'a>,
    head_at: &'a mut usize,
    unfilled_at: &'a mut u8,
}

/// A path's entries as [`RowRing`] holds them.
enum Slots<'a> {
    /// [`PATH_MAX`] of them.
    Full(&'a mut [PathEntry]),
    /// Fewer (when the run starts): entries and their event copies.
    Filling(&'a mut Vec<PathEntry>, &'a mut Vec<EventInfo>),
}

impl RowRing<'_> {
    /// [`Path::push_row`] but for the listing ([`Path::list`], once the run is over) and the
    /// entry's time, which [`Path::fill_tagged`] takes from the row's event when it copies it
    /// (the loop that pushes rows then reads no row's time).
    #[inline]
    pub(super) fn push(&mut self, (from, to): (u16, u16), handler: u16, row: u32) {
        let entry = PathEntry {
            from,
            to,
            handler,
            ts: i64::MIN,
            row,
            caused: true,
        };
        // (the write over the oldest entry is [`overwrite`]'s, spelt out in each arm: through
        // it, the loop of `GroupCx::run_inst` ran 4 % more instructions)
        match &mut self.slots {
            Slots::Full(ring) => {
                if let Some(e) = ring.get_mut(self.head) {
                    *e = entry;
                }
                self.head = (self.head + 1) & (PATH_MAX - 1);
            }
            Slots::Filling(entries, events) if entries.len() < PATH_MAX => {
                entries.push(entry);
                events.push(EventInfo::empty());
            }
            Slots::Filling(entries, _) => {
                if let Some(e) = entries.get_mut(self.head) {
                    *e = entry;
                }
                self.head = (self.head + 1) & (PATH_MAX - 1);
            }
        }
        self.unfilled = (self.unfilled + 1).min(PATH_MAX as u8);
    }
}

impl Drop for RowRing<'_> {
    fn drop(&mut self) {
        *self.head_at = self.head;
        *self.unfilled_at = self.unfilled;
    }
}

/// The bit of a row number [`Path::push_row`] is given that tells the batch it is a row of
/// (the leaf alternates two tags; see `Leaf::run_columns`).
pub(super) const ROW_TAG: u32 = 1 << 31;

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
        let Some(i) = self.next_entry((from, to), ts, handler, NO_ROW, ev.is_some()) else {
            return;
        };
        if self.unfilled > 0 {
            // (an older entry still names a row: the range to look through grows)
            self.unfilled = (self.unfilled + 1).min(PATH_MAX as u8);
        }
        if let (Some(ev), Some(info)) = (ev, self.events.get_mut(i)) {
            info.refill(ev);
        }
    }

    /// Adds the transition `from` → `to` at `ts` by `handler`, caused by row `row` of a batch
    /// (its [`ROW_TAG`] bit telling which of two): its event is copied by
    /// [`Path::fill_tagged`], later, only if the entry is still in the ring then (a ring
    /// overwritten many times copies each row it keeps once). Returns whether the path was not
    /// listed as naming rows of that batch before (the leaf lists it then).
    #[inline]
    pub(super) fn push_row(
        &mut self,
        (from, to): (u16, u16),
        ts: i64,
        handler: u16,
        row: u32,
    ) -> bool {
        let new = self.list(row);
        self.unfilled = (self.unfilled + 1).min(PATH_MAX as u8);
        self.next_entry((from, to), ts, handler, row, true);
        new
    }

    /// [`Path::push_row`] for a run of rows of one batch: see [`RowRing`]. Once the run is
    /// over (the ring dropped), [`Path::list`] the path if a row was pushed.
    #[inline]
    pub(super) fn rows(&mut self) -> RowRing<'_> {
        let Path {
            entries,
            events,
            head,
            unfilled,
            ..
        } = self;
        let slots = if entries.len() < PATH_MAX {
            Slots::Filling(entries, events)
        } else {
            Slots::Full(entries)
        };
        RowRing {
            head: *head,
            unfilled: *unfilled,
            slots,
            head_at: head,
            unfilled_at: unfilled,
        }
    }

    /// Marks the path as naming rows of the batch tagged `tag` (what [`Path::push_row`] does
    /// with each row's tag). Returns whether it was not before (the leaf lists it then).
    pub(super) fn list(&mut self, tag: u32) -> bool {
        let listed = listed_as(tag & ROW_TAG);
        let new = self.listed != listed;
        self.listed = listed;
        new
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
        caused: bool,
    ) -> Option<usize> {
        let entry = PathEntry {
            from,
            to,
            handler,
            ts,
            row,
            caused,
        };
        if self.entries.len() < PATH_MAX {
            self.entries.push(entry);
            self.events.push(EventInfo::empty());
            return Some(self.entries.len() - 1);
        }
        let i = self.head;
        self.head = overwrite(&mut self.entries, i, entry)?;
        Some(i)
    }

    /// Copies the events of the entries [`Path::push_row`] added naming rows of the batch
    /// tagged `tag` (the [`ROW_TAG`] bit of their rows: 0 or `ROW_TAG`), `event(row)` giving
    /// the event of a row (without the bit): only the newest entries, those added since the
    /// last copy (a run that fires timeouts between rows copies a few entries each time, not
    /// the whole ring); the other batch's stay to copy.
    pub(super) fn fill_tagged<'a>(&mut self, tag: u32, event: impl Fn(usize) -> EventRef<'a>) {
        let n = self.entries.len();
        let k = (self.unfilled as usize).min(n);
        if self.listed == listed_as(tag) {
            self.listed = 0;
        }
        // (entries of the other batch stay to copy: the newest `k` are looked at again then)
        let mut left = false;
        // the newest entry is the last one until the ring is full, then the one before `head`
        let newest = if n < PATH_MAX { n } else { self.head + n };
        for j in newest - k..newest {
            let i = j % n;
            let (Some(e), Some(info)) = (self.entries.get_mut(i), self.events.get_mut(i)) else {
                continue;
            };
            if e.row == NO_ROW {
                continue;
            }
            if e.row & ROW_TAG != tag {
                left = true;
                continue;
            }
            let ev = event((e.row & !ROW_TAG) as usize);
            // (an entry a [`RowRing`] wrote has its time from the event)
            e.ts = ev.ts_ns;
            info.refill(&ev);
            e.row = NO_ROW;
        }
        if !left {
            self.unfilled = 0;
        }
    }

    /// The entries with their events, oldest first.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&PathEntry, Option<&EventInfo>)> + '_ {
        debug_assert!(
            self.unfilled == 0,
            "a path read before its rows were copied"
        );
        let pairs = self
            .entries
            .iter()
            .zip(&self.events)
            .map(|(e, info)| (e, e.caused.then_some(info)));
        let (newer, older) = (pairs.clone().take(self.head), pairs.skip(self.head));
        older.chain(newer)
    }
}

/// Writes `entry` over the oldest entry of a full ring, the one at `head`; returns where the
/// oldest is then (`None`: `head` is not in the ring).
#[inline]
fn overwrite(ring: &mut [PathEntry], head: usize, entry: PathEntry) -> Option<usize> {
    *ring.get_mut(head)? = entry;
    Some((head + 1) & (PATH_MAX - 1))
}

/// [`Path`]'s `listed` for rows whose [`ROW_TAG`] bit is `tag`.
fn listed_as(tag: u32) -> u8 {
    if tag == 0 {
        1
    } else {
        2
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

#[cfg(test)]
mod tests {
    use super::{Path, NO_ROW, PATH_MAX};
    use proptest::prelude::*;
    use std::collections::VecDeque;
    use trace::EventRef;

    /// The event of row `r` in these tests: its `seq` is the row, and odd rows another source.
    fn row_event(r: usize) -> EventRef<'static> {
        EventRef {
            ts_ns: r as i64 * 10,
            seq: r as u64,
            source: if r.is_multiple_of(2) { "log" } else { "docker" },
            service: None,
            container: None,
            kind: "",
            message: None,
            data: None,
        }
    }

    proptest! {
        /// Rows, timeouts and events pushed in any order, copied at any points: after each
        /// copy every entry holds what was pushed (the event of its row, or none), oldest first,
        /// as a ring of the last `PATH_MAX` pushes keeps them.
        #[test]
        fn the_newest_rows_are_copied_and_the_ring_keeps_the_last_pushes(
            ops in prop::collection::vec((0u8..5, 0usize..500), 0..300)
        ) {
            let mut p = Path::default();
            // what each kept entry's event is: `Some(seq)`, or `None` for a timeout
            let mut want: VecDeque<Option<u64>> = VecDeque::new();
            let keep = |want: &mut VecDeque<Option<u64>>, e: Option<u64>| {
                want.push_back(e);
                if want.len() > PATH_MAX {
                    want.pop_front();
                }
            };
            for (op, r) in ops {
                match op {
                    0 | 1 => {
                        p.push_row((0, 1), r as i64 * 10, 0, r as u32);
                        keep(&mut want, Some(r as u64));
                    }
                    2 => {
                        p.push((1, 0), 0, u16::MAX, None);
                        keep(&mut want, None);
                    }
                    3 => {
                        p.push((1, 0), 0, 0, Some(&row_event(r)));
                        keep(&mut want, Some(r as u64));
                    }
                    _ => {
                        p.fill_tagged(0, row_event);
                        let got: Vec<Option<u64>> = p
                            .iter()
                            .map(|(e, info)| {
                                assert_eq!(e.row, NO_ROW);
                                info.map(|i| i.seq)
                            })
                            .collect();
                        prop_assert_eq!(got, want.iter().copied().collect::<Vec<_>>());
                        for (e, info) in p.iter() {
                            if let Some(i) = info {
                                let r = i.seq as usize;
                                prop_assert_eq!(i.ts_ns, r as i64 * 10);
                                prop_assert_eq!(&i.source, row_event(r).source);
                                prop_assert!(e.handler == 0 || e.handler == u16::MAX);
                            }
                        }
                    }
                }
            }
        }
    }
}
