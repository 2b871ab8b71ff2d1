//! A leaf fed a batch's columns ([`Leaf::run_columns`]): for a machine that reads nothing of an
//! event but its time, sequence number and source, and whose handlers are all plain (a
//! specialised guard, plain `set`s, stay or go to a state, never a decision), each row is
//! evaluated without building the event from every column, and a transition's path entry
//! names its row: the event is copied once the run is over, only for the entries still in
//! the instance's ring (a ring overwritten many times in a run copies the rows it keeps once).
//! Every decision (a timeout's) and explanation comes after those copies; the report is the
//! one [`Leaf::observe`] gives, event by event.

use super::{source_kind_match, Leaf};
use crate::eval::effects::Plain;
use crate::fast::{Fast, FastKey, Operand, Tri};
use crate::ir::MonRef;
use crate::needs::Needs;
use crate::ops::JsonCell;
use trace::{EventBatch, EventColumns, EventRef};

/// How a leaf that can be fed columns reads a row.
#[derive(Debug, Clone)]
pub(super) struct ColumnPlan {
    /// The machine reads the event's source.
    source: bool,
    /// Its `per` key, when it is an integer read from a row without the generic key path.
    key: Option<RowKey>,
    /// The machine looks at every event (no `at`, no sources): no check per row.
    sees_all: bool,
    /// Per state: its first handler when that one matches every event (`on event`, no guard),
    /// so no handler is tried; [`NO_HANDLER`] for a state whose handlers are tried in turn.
    first: Box<[u16]>,
}

impl ColumnPlan {
    /// Row `i` (at `ts`, numbered `seq`) as the generic paths read it: built only for them.
    #[inline]
    fn event<'c>(&self, cols: &'c EventColumns<'_>, i: usize, ts: i64, seq: u64) -> EventRef<'c> {
        EventRef {
            ts_ns: ts,
            seq,
            source: if self.source { cols.source(i) } else { "" },
            service: None,
            container: None,
            kind: "",
            message: None,
            data: None,
        }
    }
}

/// A state of [`ColumnPlan::first`] without a handler that matches every event.
const NO_HANDLER: u16 = u16::MAX;

/// A `per` key of `seq` or `ts_ns`, or one of them `% n`.
#[derive(Debug, Clone, Copy)]
struct RowKey {
    seq: bool,
    rem: Option<FastRem>,
}

/// `x % n` for a constant `n > 0`: for `x` and `n` below 2^32 by a multiplication (Lemire,
/// Kaser and Kurz, "Faster remainder by direct computation", 2019), not a division.
#[derive(Debug, Clone, Copy)]
struct FastRem {
    n: u64,
    /// `⌊(2^64 - 1) / n⌋ + 1` (wrapping: 0 for `n = 1`, whose remainders are all 0).
    m: u64,
}

impl FastRem {
    fn new(n: i64) -> Option<FastRem> {
        let n = u64::try_from(n).ok().filter(|&n| n > 0)?;
        Some(FastRem {
            n,
            m: (u64::MAX / n).wrapping_add(1),
        })
    }

    /// `x % n` for `x >= 0` (the generic rules' remainder for a non-negative `x`).
    #[inline]
    fn rem(self, x: u64) -> u64 {
        if x <= u64::from(u32::MAX) && self.n <= u64::from(u32::MAX) {
            let low = self.m.wrapping_mul(x);
            ((u128::from(low) * u128::from(self.n)) >> 64) as u64
        } else {
            x % self.n
        }
    }
}

impl RowKey {
    fn of(k: &FastKey) -> Option<RowKey> {
        let field = |o: &Operand| match o {
            Operand::Seq => Some(true),
            Operand::Ts => Some(false),
            _ => None,
        };
        match k {
            FastKey::Operand(o) => Some(RowKey {
                seq: field(o)?,
                rem: None,
            }),
            FastKey::Mod(o, n) => Some(RowKey {
                seq: field(o)?,
                rem: Some(FastRem::new(*n)?),
            }),
        }
    }

    /// The key of a row, when the fast way gives it (a non-negative value for `% n`; the
    /// generic key path decides the others).
    #[inline]
    fn get(self, ts: i64, seq: u64) -> Option<i64> {
        let x = if self.seq { seq as i64 } else { ts };
        match self.rem {
            None => Some(x),
            Some(r) if x >= 0 => Some(r.rem(x as u64) as i64),
            Some(_) => None,
        }
    }
}

/// How a leaf of `r`, whose handlers have the plans `plains`, can be fed columns, if it can:
/// its machine (and `at`) reads no column but `ts_ns`, `seq` and `source`, it has no window,
/// every handler of every state has a plain plan, and no state opens when a fault is done
/// (that reads `data`).
pub(super) fn plan(r: &MonRef, plains: &[Vec<Option<Plain>>]) -> Option<ColumnPlan> {
    let m = &r.machine;
    let n = Needs::of_machine(m);
    let can = r.at.is_none()
        && !(n.service || n.container || n.kind || n.message || n.data)
        && m.windows.is_empty()
        && m.states.iter().all(|s| !s.opens_when_fault_done)
        && plains.iter().all(|st| st.iter().all(Option::is_some));
    // a handler with no source, no kind and a guard folded to true matches every event
    let first = m
        .states
        .iter()
        .map(|st| match st.handlers.first() {
            Some(h)
                if h.pat.source.is_none()
                    && h.pat.kind.is_none()
                    && matches!(h.pat.fast, Some(Fast::Const(Tri::T))) =>
            {
                0
            }
            _ => NO_HANDLER,
        })
        .collect();
    can.then(|| ColumnPlan {
        source: n.source,
        key: m.per_fast.as_ref().and_then(RowKey::of),
        sees_all: r.at.is_none() && m.sources.is_none(),
        first,
    })
}

impl Leaf {
    /// Whether [`Leaf::run_columns`] may be used (not in recording mode: the state log takes
    /// each event's copy as it comes).
    pub fn columnar(&self) -> bool {
        self.columns.is_some() && self.log.is_none()
    }

    /// Feeds the rows of `batch` (whose columns are `cols`) as a run of [`Leaf::observe`] calls,
    /// each after the timeouts due before its time (`last_ts`: the time reached before the
    /// run). Only for a leaf that is [`Leaf::columnar`].
    pub fn run_columns(&mut self, batch: &EventBatch, cols: &EventColumns<'_>, last_ts: i64) {
        let Some(plan) = self.columns.take() else {
            return;
        };
        if self.log.is_none() && self.decided().is_none() {
            self.run_plan(&plan, batch, cols, last_ts);
        }
        self.columns = Some(plan);
    }

    fn run_plan(
        &mut self,
        plan: &ColumnPlan,
        batch: &EventBatch,
        cols: &EventColumns<'_>,
        mut last_ts: i64,
    ) {
        let keyed = self.r.machine.per.is_some();
        // the machine reads no `data`: one empty cell serves every row
        let json = JsonCell::new();
        for (i, (&ts, &seq)) in cols.ts.iter().zip(cols.seq).enumerate() {
            if ts > last_ts {
                last_ts = ts;
                if self.timers.peek().is_some_and(|(dl, _, _)| dl < ts) {
                    // a timeout may decide and explain: the paths first
                    self.fill_rows(batch);
                    self.advance_to(ts, false);
                    if self.decided().is_some() {
                        return;
                    }
                }
            }
            if !plan.sees_all && !self.sees(&plan.event(cols, i, ts, seq)) {
                continue;
            }
            let idx = if keyed {
                // a key seen before, found without the generic key path
                let seen = plan
                    .key
                    .and_then(|k| k.get(ts, seq))
                    .and_then(|k| self.int_keys.get(k));
                match seen.or_else(|| Some(self.key_inst(&plan.event(cols, i, ts, seq), &json))) {
                    Some(Some(i)) => i,
                    _ => continue,
                }
            } else {
                0
            };
            let Some(inst) = self.insts.get(idx as usize) else {
                continue;
            };
            // decided, or the state has not opened yet
            if inst.done.is_some() || ts < inst.entered_ns {
                continue;
            }
            let state = inst.state;
            // every handler is plain: the first that matches stays or moves, never decides
            let hi = match plan.first.get(state as usize) {
                Some(&h) if h != NO_HANDLER => h,
                _ => match self.plain_handler(idx, &plan.event(cols, i, ts, seq), &json) {
                    Some((_, h)) => h,
                    None => continue,
                },
            };
            let Some(p) = self.plains[state as usize][hi as usize].as_ref() else {
                continue;
            };
            let goto = p.goto();
            if p.has_sets() {
                p.apply_in_place(&mut self.insts[idx as usize].vars);
            }
            if let Some((to, timeout)) = goto {
                let inst = &mut self.insts[idx as usize];
                if inst.path.push_row((inst.state, to), ts, hi, i as u32) {
                    self.dirty.push(idx);
                }
                self.arm(idx, to, timeout, ts, Some(seq));
            }
        }
        self.fill_rows(batch);
    }

    /// The first handler (state, index) of undecided instance `idx`'s state that matches `ev`,
    /// as [`Leaf::observe`] finds it for a leaf whose handlers are all specialised.
    #[inline]
    fn plain_handler(&self, idx: u32, ev: &EventRef<'_>, json: &JsonCell) -> Option<(u16, u16)> {
        let inst = self.insts.get(idx as usize)?;
        // decided, or the state has not opened yet
        if inst.done.is_some() || ev.ts_ns < inst.entered_ns {
            return None;
        }
        let st = self.r.machine.states.get(inst.state as usize)?;
        let hi = st.handlers.iter().position(|h| {
            h.pat
                .fast
                .as_ref()
                .is_some_and(|f| source_kind_match(&h.pat, ev) && f.holds(ev, json, &inst.vars))
        })?;
        Some((inst.state, hi as u16))
    }

    /// Copies the events of the rows the instances' paths name (see [`Leaf::run_columns`]).
    fn fill_rows(&mut self, batch: &EventBatch) {
        let Leaf { dirty, insts, .. } = self;
        for idx in dirty.drain(..) {
            if let Some(inst) = insts.get_mut(idx as usize) {
                inst.path.fill_rows(|r| batch.get(r));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::FastRem;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn the_remainder_by_multiplication_is_the_remainder(
            x in prop_oneof![0u64..1000, 0u64..=u64::from(u32::MAX), any::<u64>()],
            n in prop_oneof![1i64..200, 1i64..=i64::from(u32::MAX), 1i64..=i64::MAX],
        ) {
            let r = FastRem::new(n).expect("n > 0");
            prop_assert_eq!(r.rem(x), x % n as u64);
        }
    }

    #[test]
    fn edges_of_the_remainder_by_multiplication() {
        for n in [
            1i64,
            2,
            3,
            7,
            100,
            1 << 16,
            u32::MAX as i64 - 1,
            u32::MAX as i64,
        ] {
            let r = FastRem::new(n).expect("n > 0");
            for x in [
                0u64,
                1,
                n as u64 - 1,
                n as u64,
                n as u64 + 1,
                u32::MAX as u64 - 1,
                u32::MAX as u64,
            ] {
                assert_eq!(r.rem(x), x % n as u64, "{x} % {n}");
            }
        }
        assert!(FastRem::new(0).is_none());
        assert!(FastRem::new(-3).is_none());
    }
}
