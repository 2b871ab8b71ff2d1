//! A leaf fed a batch's columns ([`Leaf::run_columns`]): for a machine whose guards are all
//! specialised (no `at`, no window, no state that opens when a fault is done), each row is
//! evaluated from the batch's columns in a loop of the leaf's own, the event built only for the
//! guards that read more than its time, sequence number and source; a handler whose plan is plain
//! (plain `set`s, stay or go to a state) is applied there, and a transition's path entry names its
//! row: the event is copied once the next batch is over (the leaf holds the batch's columns until
//! then) or before a path is read, only for the entries still in the instance's ring (a ring
//! overwritten in every batch copies nothing until the end). A row whose first matching handler is
//! not plain (it decides, or its actions need the generic evaluator) is offered as one event after
//! those copies, and every timeout fires after them too; the report is the one [`Leaf::observe`]
//! gives, event by event. A keyed machine's rows are first matched to the instances of keys seen
//! before, in a pass of their own, so the loop asks for an instance a few rows ahead while it
//! evaluates one; what a state's catch-all handler does is read once, when the plan is made, into a
//! [`Step`]; and the rare paths (a timeout due, a new key, handlers tried in turn, `set`s, a row
//! offered as one event) are calls of their own. A keyed machine whose handlers are all plain and
//! which sees every event has its batch evaluated instance by instance instead, where that gives
//! the same ([`Leaf::run_grouped`]: no timeout can fire within the batch, every key was seen
//! before): the batch's rows grouped by key (by the reader's decoding threads, ahead of the
//! evaluator, or here: [`super::keys`]), each instance's rows run in a loop that keeps its
//! state, timer entry and path ring's head in locals and reads a row's time only where it
//! matters (a guard, a timer entry to push; the path entries take theirs when their events are
//! copied).

use super::keys::{KeyGroups, RowKey, Ungrouped, SKIP, UNSEEN};
use super::{source_kind_match, Inst, Leaf};
use crate::eval::effects::Plain;
use crate::eval::explain::ROW_TAG;
use crate::eval::timers::Armed;
use crate::fast::{Fast, Tri};
use crate::ir::MonRef;
use crate::ir::StateC;
use crate::needs::Needs;
use crate::ops::JsonCell;
use crate::value::Value;
use trace::{EventBatch, EventColumns, EventRef};

/// How a leaf that can be fed columns reads a row.
#[derive(Debug, Clone)]
pub(super) struct ColumnPlan {
    /// The machine reads the event's source.
    source: bool,
    /// It reads a column besides `ts_ns`, `seq` and `source`: the paths that read an event build
    /// it from every column read ([`EventBatch::get`]).
    full: bool,
    /// Its `per` key, when it is an integer read from a row without the generic key path.
    key: Option<RowKey>,
    /// The machine looks at every event (no `at`, no sources): no check per row.
    sees_all: bool,
    /// Per state: what its first handler does when that one matches every event (`on event`,
    /// no guard), so no handler is tried; [`Step::TRIED`] for a state whose handlers are tried
    /// in turn.
    steps: Box<[Step]>,
    /// Every handler's plan is plain, so no row decides: a keyed machine's batch may be
    /// evaluated instance by instance when no timeout can fire within it
    /// ([`Leaf::run_grouped`]).
    all_plain: bool,
    /// The shortest timeout a handler arms (`i64::MAX`: none does).
    min_timeout: i64,
}

/// Buffers of [`Leaf::run_grouped`], kept for the next batch.
#[derive(Debug, Default)]
pub(in crate::eval) struct Groups {
    /// A batch's rows grouped by key, for a batch that comes without them.
    own: KeyGroups,
    /// Each group's instance.
    insts: Vec<u32>,
    /// The timer entries the instances were given, pushed in order once the batch is done.
    timers: Vec<Armed>,
}

/// What a plain handler does to an instance, read once from its [`Plain`] plan: the loop over
/// rows then follows a copy, not the plan.
#[derive(Debug, Clone, Copy)]
struct Step {
    /// The handler's index ([`Step::TRY`]: none matches every event, the handlers are tried).
    handler: u16,
    /// The state it goes to ([`Step::STAY`]: it stays).
    to: u16,
    /// It `set`s something ([`Plain::apply_in_place`]).
    sets: bool,
    /// The state it goes to has a timeout, of `timeout` ns.
    timed: bool,
    timeout: i64,
}

impl Step {
    const TRY: u16 = u16::MAX;
    const STAY: u16 = u16::MAX;
    /// A state whose handlers are tried in turn.
    const TRIED: Step = Step {
        handler: Step::TRY,
        to: Step::STAY,
        sets: false,
        timed: false,
        timeout: 0,
    };

    fn of(handler: u16, p: &Plain) -> Step {
        let (to, timeout) = p.goto().unwrap_or((Step::STAY, None));
        Step {
            handler,
            to,
            sets: p.has_sets(),
            timed: timeout.is_some(),
            timeout: timeout.unwrap_or(0),
        }
    }

    fn timeout(self) -> Option<i64> {
        self.timed.then_some(self.timeout)
    }
}

impl ColumnPlan {
    /// Row `i` (at `ts`, numbered `seq`) as the generic paths read it: built only for them.
    #[inline]
    fn event<'c>(
        &self,
        batch: &'c EventBatch,
        cols: &'c EventColumns<'_>,
        i: usize,
        ts: i64,
        seq: u64,
    ) -> EventRef<'c> {
        if self.full {
            return batch.get(i);
        }
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

/// What the handlers of a state tried in turn do with a row ([`Leaf::tried_step`]).
enum Tried {
    /// None matches.
    Nothing,
    /// The first that matches is plain.
    Plain(Step),
    /// The first that matches needs the generic evaluator (it decides, or its actions are
    /// not plain): the row is offered as [`Leaf::observe`] offers an event.
    Generic,
}

/// How many rows ahead the loop loads an instance.
const AHEAD: usize = 8;

/// What [`GroupCx::run_inst`] reads besides the instance.
struct GroupCx<'a, 'c> {
    plan: &'a ColumnPlan,
    /// The [`ROW_TAG`] bit of this batch's rows.
    tag: u32,
    states: &'a [StateC],
    plains: &'a [Vec<Option<Plain>>],
    batch: &'c EventBatch,
    cols: &'c EventColumns<'c>,
    /// The time of the batch's first row.
    first_ts: i64,
}

impl GroupCx<'_, '_> {
    /// Evaluates `rows`, all of instance `inst` (number `idx`) and in order, as the loop over
    /// every row would, with the instance's state, timer and timer entry kept in locals and
    /// written back once; a timer entry the instance is given goes to `timers`. Returns whether
    /// its path was not listed as naming rows of this batch before (the leaf lists it then).
    #[inline(never)]
    fn run_inst(&self, inst: &mut Inst, idx: u32, rows: &[u32], timers: &mut Vec<Armed>) -> bool {
        let ts_col = self.cols.ts;
        let steps = &*self.plan.steps;
        // a step as scalars (the state it goes to, the handler, whether the row takes the slow
        // way, whether it arms a timeout and of how long): what the loop chooses among
        let parts = |s: Step| {
            let slow = s.handler == Step::TRY || s.sets;
            (s.to, s.handler, slow, s.timed, s.timeout)
        };
        let p0 = parts(steps.first().copied().unwrap_or(Step::TRIED));
        let p1 = parts(steps.get(1).copied().unwrap_or(Step::TRIED));
        let tag = self.tag;
        let mut state = inst.state;
        let mut queued = inst.queued;
        let mut gen = inst.gen;
        // the rows before its state opens are passed over: the rows come in time order, and
        // a transition opens the next state at its own row's time, so every row after the
        // first that is not before the opening is not either
        let opens = inst.entered_ns;
        let first = rows
            .iter()
            .position(|&r| ts_col.get(r as usize).is_some_and(|&t| t >= opens))
            .unwrap_or(rows.len());
        // where in `rows` the last transition was, and the timeout it armed
        let mut last: Option<usize> = None;
        let mut last_timeout = None;
        let Inst { path, vars, .. } = inst;
        let mut ring = path.rows();
        // (a row's time is read only where it matters: a guard, a timer entry to push; the
        // path entries take theirs when their events are copied)
        for (j, &row) in rows.iter().enumerate().skip(first) {
            let from = state;
            // a catch-all first handler's step, or the first handler that matches (the first
            // two states' steps are in locals: each row's state depends on the row before,
            // and a step chosen among locals is not waited for as one loaded is)
            let (mut to, mut handler, slow, mut timed, mut timeout) = match from {
                0 => p0,
                1 => p1,
                _ => parts(steps.get(from as usize).copied().unwrap_or(Step::TRIED)),
            };
            if slow {
                let step = steps.get(from as usize).copied().unwrap_or(Step::TRIED);
                let ts = ts_col.get(row as usize).copied().unwrap_or(opens);
                let Some(s) = self.slow_step(step, from, vars, row, ts) else {
                    continue;
                };
                (to, handler, timed, timeout) = (s.to, s.handler, s.timed, s.timeout);
            }
            if to == Step::STAY {
                continue;
            }
            ring.push((from, to), handler, row | tag);
            state = to;
            last = Some(j);
            last_timeout = timed.then_some(timeout);
            // what `Inst::enter_state` and `Leaf::push_timer` do: a new entry when the one
            // there is due after this row's deadline (not when it is due by the deadline of
            // the batch's first row: every row's is no earlier)
            if timed
                && !matches!(queued, Some((q, _)) if q <= self.first_ts.saturating_add(timeout))
            {
                let ts = ts_col.get(row as usize).copied().unwrap_or(opens);
                let dl = ts.saturating_add(timeout);
                if !matches!(queued, Some((q, _)) if q <= dl) {
                    gen = gen.wrapping_add(1);
                    queued = Some((dl, gen));
                    timers.push((dl, idx, gen));
                }
            }
        }
        drop(ring);
        inst.state = state;
        inst.gen = gen;
        inst.queued = queued;
        let Some(&row) = last.and_then(|j| rows.get(j)) else {
            return false;
        };
        let row = row as usize;
        let ts = ts_col.get(row).copied().unwrap_or(opens);
        let seq = self.cols.seq.get(row).copied();
        inst.enter_state(state, last_timeout, ts, seq);
        inst.path.list(tag)
    }

    /// What a row does in state `from` when the state's handlers are tried in turn (`step` is
    /// [`Step::TRIED`]) or its catch-all handler `set`s something (applied to `vars` here):
    /// the matching handler's step, `None` for none.
    #[cold]
    #[inline(never)]
    fn slow_step(
        &self,
        mut step: Step,
        from: u16,
        vars: &mut [Value],
        row: u32,
        ts: i64,
    ) -> Option<Step> {
        if step.handler == Step::TRY {
            let i = row as usize;
            let seq = self.cols.seq.get(i).copied().unwrap_or(0);
            let ev = self.plan.event(self.batch, self.cols, i, ts, seq);
            step = tried_plain(self.states, self.plains, from, vars, &ev)?;
        }
        if step.sets {
            apply_sets(self.plains, from, step.handler, vars);
        }
        Some(step)
    }
}

/// The step of the first handler of state `state` that matches `ev` (over an instance's
/// variables `vars`), in a machine whose handlers are all plain ([`Leaf::run_grouped`]): what
/// [`Leaf::tried_step`] finds.
#[inline(never)]
fn tried_plain(
    states: &[StateC],
    plains: &[Vec<Option<Plain>>],
    state: u16,
    vars: &[Value],
    ev: &EventRef<'_>,
) -> Option<Step> {
    let st = states.get(state as usize)?;
    // (a cell of its own: a guard may read this event's `data`)
    let h = first_fast_match(st, ev, &JsonCell::new(), vars)?;
    let p = plains.get(state as usize)?.get(h)?.as_ref()?;
    Some(Step::of(h as u16, p))
}

/// Applies the `set`s of plain handler `handler` of state `state` (its plan among `plains`) to
/// an instance's variables `vars`.
fn apply_sets(plains: &[Vec<Option<Plain>>], state: u16, handler: u16, vars: &mut [Value]) {
    if let Some(Some(p)) = plains
        .get(state as usize)
        .and_then(|hs| hs.get(handler as usize))
    {
        p.apply_in_place(vars);
    }
}

/// The index of the first handler of `st` whose source, kind and specialised guard match `ev`
/// (over an instance's variables `vars`).
#[inline]
fn first_fast_match(
    st: &StateC,
    ev: &EventRef<'_>,
    json: &JsonCell,
    vars: &[Value],
) -> Option<usize> {
    st.handlers.iter().position(|h| {
        h.pat
            .fast
            .as_ref()
            .is_some_and(|f| source_kind_match(&h.pat, ev) && f.holds(ev, json, vars))
    })
}

/// Asks the CPU to load the start of `inst` into its cache (a hint: nothing on other targets).
#[inline(always)]
fn prefetch<T>(inst: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: SSE is part of every x86_64 target, and a prefetch is a hint that reads
        // nothing the program sees and never faults; the address is a live reference's.
        unsafe { _mm_prefetch::<_MM_HINT_T0>((inst as *const T).cast::<i8>()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = inst;
}

/// How a leaf of `r`, whose handlers have the plans `plains`, can be fed columns, if it can:
/// it has no `at` and no window, every guard of every state is specialised (tried without the
/// generic evaluator), and no state opens when a fault is done.
pub(super) fn plan(r: &MonRef, plains: &[Vec<Option<Plain>>]) -> Option<ColumnPlan> {
    let m = &r.machine;
    let n = Needs::of_machine(m);
    let can = r.at.is_none()
        && m.windows.is_empty()
        && m.states.iter().all(|s| !s.opens_when_fault_done)
        && m.states
            .iter()
            .all(|st| st.handlers.iter().all(|h| h.pat.fast.is_some()));
    // a handler with no source, no kind and a guard folded to true matches every event
    let steps = m
        .states
        .iter()
        .zip(plains)
        .map(|(st, ps)| match (st.handlers.first(), ps.first()) {
            (Some(h), Some(Some(p)))
                if h.pat.source.is_none()
                    && h.pat.kind.is_none()
                    && matches!(h.pat.fast, Some(Fast::Const(Tri::T))) =>
            {
                Step::of(0, p)
            }
            _ => Step::TRIED,
        })
        .collect();
    let all_plain = plains.iter().all(|hs| hs.iter().all(Option::is_some));
    let min_timeout = plains
        .iter()
        .flatten()
        .flatten()
        .filter_map(|p| p.goto().and_then(|(_, d)| d))
        .min()
        .unwrap_or(i64::MAX);
    can.then(|| ColumnPlan {
        all_plain,
        min_timeout,
        source: n.source,
        full: n.service || n.container || n.kind || n.message || n.data,
        key: m.per_fast.as_ref().and_then(RowKey::of),
        sees_all: r.at.is_none() && m.sources.is_none(),
        steps,
    })
}

impl Leaf {
    /// Whether [`Leaf::run_columns`] may be used (not in recording mode: the state log takes
    /// each event's copy as it comes).
    pub fn columnar(&self) -> bool {
        self.columns.is_some() && self.log.is_none()
    }

    /// The key a keyed [`Leaf::columnar`] leaf groups a batch's rows by to evaluate them
    /// instance by instance ([`Leaf::run_grouped`]), if it may: its handlers are all plain and
    /// it sees every event.
    pub(crate) fn group_key(&self) -> Option<RowKey> {
        let p = self.columns.as_ref().filter(|_| self.columnar())?;
        let grouped = self.r.machine.per.is_some() && p.all_plain && p.sees_all;
        p.key.filter(|_| grouped)
    }

    /// Whether a [`Leaf::columnar`] leaf's work per row is little more than finding the row's
    /// key: its guards read nothing but times, sequence numbers and sources.
    pub fn columnar_light(&self) -> bool {
        self.columnar() && self.columns.as_ref().is_some_and(|p| !p.full)
    }

    /// Feeds the rows of `batch` (whose columns are `cols`) as a run of [`Leaf::observe`] calls,
    /// each after the timeouts due before its time (`last_ts`: the time reached before the
    /// run). Only for a leaf that is [`Leaf::columnar`].
    pub fn run_columns(&mut self, batch: &EventBatch, cols: &EventColumns<'_>, last_ts: i64) {
        if cols.ts.len() >= (ROW_TAG - 1) as usize {
            // (the paths number rows in 31 bits: a batch this long is fed event by event)
            let mut last = last_ts;
            for ev in batch.iter() {
                if ev.ts_ns > last {
                    last = ev.ts_ns;
                    self.advance_to(ev.ts_ns, false);
                }
                self.observe(&ev, &JsonCell::new());
            }
            return;
        }
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
        // this batch's rows in the paths (the held batch's have the other tag)
        let tag = self.tag;
        // the earliest timer (kept here: a timer is only armed by `arm` and `advance_to`)
        let mut next_dl = self.next_deadline();
        // a keyed machine's rows instance by instance, where that gives the same
        if let (true, Some(k), true, true) = (keyed, plan.key, plan.all_plain, plan.sees_all) {
            if self.run_grouped(plan, k, batch, cols, next_dl) {
                self.hold(batch);
                return;
            }
        }
        // each row's instance when its key was seen before, found in a pass of its own: the
        // loop below then loads the instances of the rows ahead while it evaluates one
        let mut ids = std::mem::take(&mut self.row_insts);
        ids.clear();
        if let (true, Some(k)) = (keyed, plan.key) {
            let keys = &self.int_keys;
            ids.extend(
                cols.ts
                    .iter()
                    .zip(cols.seq)
                    .map(|(&ts, &seq)| k.id(ts, seq, keys)),
            );
        }
        // (the rare paths are calls of their own: the loop keeps its values in registers)
        for (i, (&ts, &seq)) in cols.ts.iter().zip(cols.seq).enumerate() {
            if ts > last_ts {
                last_ts = ts;
                if next_dl < ts {
                    if self.timeouts_before(ts, batch) {
                        break;
                    }
                    next_dl = self.next_deadline();
                }
            }
            // (a machine fed columns has no `at`: its sources alone say what it sees)
            if !plan.sees_all && !self.sees_source(cols.source(i)) {
                continue;
            }
            let idx = match (keyed, ids.get(i)) {
                (false, _) => 0,
                (true, Some(&SKIP)) => continue,
                (true, Some(&i)) if i != UNSEEN => i,
                // a key not seen before the batch (a new instance arms its first timeout)
                (true, _) => {
                    let new = self.new_key(&plan.event(batch, cols, i, ts, seq));
                    next_dl = self.next_deadline();
                    match new {
                        Some(i) => i,
                        None => continue,
                    }
                }
            };
            // the instance of a row a little ahead, loaded while this one is evaluated
            if let Some(ahead) = ids.get(i + AHEAD).and_then(|&a| self.insts.get(a as usize)) {
                prefetch(ahead);
            }
            let Some(inst) = self.insts.get(idx as usize) else {
                continue;
            };
            // decided, or the state has not opened yet
            if inst.done.is_some() || ts < inst.entered_ns {
                continue;
            }
            let from = inst.state;
            // a catch-all first handler's step, or the first handler that matches: plain, it
            // stays or moves here; otherwise the row is offered as one event
            let mut step = plan
                .steps
                .get(from as usize)
                .copied()
                .unwrap_or(Step::TRIED);
            if step.handler == Step::TRY {
                match self.tried_step(idx, &plan.event(batch, cols, i, ts, seq)) {
                    Tried::Nothing => continue,
                    Tried::Plain(s) => step = s,
                    Tried::Generic => {
                        if self.observe_row(batch, i) {
                            break;
                        }
                        next_dl = self.next_deadline();
                        continue;
                    }
                }
            }
            if step.sets {
                self.apply_sets(idx, from, step.handler);
            }
            if step.to == Step::STAY {
                continue;
            }
            let inst = &mut self.insts[idx as usize];
            if inst
                .path
                .push_row((from, step.to), ts, step.handler, i as u32 | tag)
            {
                self.dirty.push(idx);
            }
            if let Some(dl) = inst.enter_state(step.to, step.timeout(), ts, Some(seq)) {
                self.push_timer(idx, dl);
                next_dl = next_dl.min(dl);
            }
        }
        self.row_insts = ids;
        self.hold(batch);
    }

    /// Evaluates the rows of a keyed machine's batch instance by instance, when that gives
    /// what the rows one after the other give: every handler is plain (no row decides), no
    /// timeout can fire within the batch (none is due before its last row, `next_dl` the
    /// earliest, and none a row arms can be), and every row's key, found by `k`, was seen
    /// before. Instances of different keys share nothing then: each one's rows, in order,
    /// change only it, and the timer entries they are given are pushed in deadline order at the
    /// end (the timers pop in `(deadline, instance, tag)` order whatever order they were pushed
    /// in). The rows grouped by key come with the batch when the reader's threads grouped them
    /// ([`crate::Runner::prepare`]), or are grouped here; an instance's state, path and
    /// variables stay in the cache while its rows, one after the other, are evaluated. Returns
    /// whether it evaluated the batch (the loop over rows does otherwise).
    fn run_grouped(
        &mut self,
        plan: &ColumnPlan,
        k: RowKey,
        batch: &EventBatch,
        cols: &EventColumns<'_>,
        next_dl: i64,
    ) -> bool {
        let (Some(&first), Some(&last)) = (cols.ts.first(), cols.ts.last()) else {
            return false;
        };
        if next_dl < last || first.saturating_add(plan.min_timeout) < last {
            return false;
        }
        let Leaf {
            r,
            insts,
            plains,
            groups,
            dirty,
            int_keys,
            tag,
            ..
        } = self;
        let Groups {
            own,
            insts: of_group,
            timers,
        } = groups;
        let made = batch.prepared();
        let g = match made.and_then(|p| p.downcast_ref::<KeyGroups>()) {
            Some(g) if g.key == Some(k) => g,
            // (the reader's threads found too many keys: not looked for again)
            _ if made
                .and_then(|p| p.downcast_ref::<Ungrouped>())
                .is_some_and(|u| u.0 == k) =>
            {
                return false
            }
            // (grouping here is tried for as many instances as one batch may have keys: a
            // machine with many more is left to the loop over rows at once)
            _ if insts.len() <= KeyGroups::MAX && own.fill(k, cols) => &*own,
            _ => return false,
        };
        // each group's instance; a key not seen before (a new instance) leaves the batch to
        // the loop over rows
        of_group.clear();
        for (&key, &size) in g.keys.iter().zip(&g.sizes) {
            let id = if size == 0 { SKIP } else { int_keys.id(key) };
            if id != SKIP && id as usize >= insts.len() {
                return false;
            }
            of_group.push(id);
        }
        let cx = GroupCx {
            plan,
            tag: *tag,
            states: &r.machine.states,
            plains,
            batch,
            cols,
            first_ts: first,
        };
        timers.clear();
        for (gi, &id) in of_group.iter().enumerate() {
            let Some(inst) = insts.get_mut(id as usize) else {
                continue;
            };
            // (a decided instance stays decided: no row of the batch can change that)
            if inst.done.is_some() {
                continue;
            }
            if cx.run_inst(inst, id, g.rows(gi), timers) {
                dirty.push(id);
            }
        }
        timers.sort_unstable();
        for &t in timers.iter() {
            self.timers.push(t);
        }
        self.compact_timers();
        true
    }

    /// Fires the timeouts due before `ts`, the paths' rows copied first (a timeout may decide
    /// and explain). Returns whether the leaf has decided.
    #[cold]
    #[inline(never)]
    fn timeouts_before(&mut self, ts: i64, batch: &EventBatch) -> bool {
        self.fill_rows(batch);
        self.advance_to(ts, false);
        self.decided().is_some()
    }

    /// The instance of `ev`'s key, not seen before the batch, by the generic key path (every
    /// row of a key not of the fast shape: not marked cold).
    #[inline(never)]
    fn new_key(&mut self, ev: &EventRef<'_>) -> Option<u32> {
        // (a cell of its own: the key may read this event's `data`)
        self.key_inst(ev, &JsonCell::new())
    }

    /// What the first handler of instance `idx`'s state that matches `ev` does, in a state
    /// whose handlers are tried in turn (every row of such a state: not marked cold).
    #[inline(never)]
    fn tried_step(&self, idx: u32, ev: &EventRef<'_>) -> Tried {
        // (a cell of its own: a guard may read this event's `data`)
        let Some((state, h)) = self.plain_handler(idx, ev, &JsonCell::new()) else {
            return Tried::Nothing;
        };
        match self.plain(state, h) {
            Some(p) => Tried::Plain(Step::of(h, p)),
            None => Tried::Generic,
        }
    }

    /// Offers row `i` as [`Leaf::observe`] does, the paths' rows copied first (its handler may
    /// decide and explain). Returns whether the leaf has decided.
    #[cold]
    #[inline(never)]
    fn observe_row(&mut self, batch: &EventBatch, i: usize) -> bool {
        self.fill_rows(batch);
        self.observe(&batch.get(i), &JsonCell::new());
        self.decided().is_some()
    }

    /// Applies the `set`s of handler `handler` of state `state` to instance `idx`.
    #[inline(never)]
    fn apply_sets(&mut self, idx: u32, state: u16, handler: u16) {
        let Leaf { plains, insts, .. } = self;
        if let Some(inst) = insts.get_mut(idx as usize) {
            apply_sets(plains, state, handler, &mut inst.vars);
        }
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
        let hi = first_fast_match(st, ev, json, &inst.vars)?;
        Some((inst.state, hi as u16))
    }

    /// Copies the events of the rows the instances' paths name, of the held batch and of
    /// `batch`, the one being fed (see [`Leaf::run_columns`]).
    fn fill_rows(&mut self, batch: &EventBatch) {
        self.fill_held();
        let Leaf {
            dirty, insts, tag, ..
        } = self;
        for idx in dirty.drain(..) {
            if let Some(inst) = insts.get_mut(idx as usize) {
                inst.path.fill_tagged(*tag, |r| batch.get(r));
            }
        }
    }

    /// Copies the events of the rows of the held batch the instances' paths still name, and
    /// lets the batch go: before a path is read, and once the next batch is over (in steady
    /// state it overwrote most of those entries, whose rows are then never copied).
    pub(crate) fn fill_held(&mut self) {
        let Some(held) = self.held.take() else {
            return;
        };
        let Leaf {
            held_dirty,
            insts,
            tag,
            ..
        } = self;
        for idx in held_dirty.drain(..) {
            if let Some(inst) = insts.get_mut(idx as usize) {
                inst.path.fill_tagged(*tag ^ ROW_TAG, |r| held.get(r));
            }
        }
    }

    /// Ends the feeding of `batch`: the rows of the held batch the paths still name are copied,
    /// and `batch` is held in its place, its rows copied later (or now, for a batch that
    /// cannot be held).
    fn hold(&mut self, batch: &EventBatch) {
        self.fill_held();
        if self.dirty.is_empty() {
            return;
        }
        match batch.share() {
            Some(b) => {
                self.held = Some(b);
                std::mem::swap(&mut self.dirty, &mut self.held_dirty);
                self.tag ^= ROW_TAG;
            }
            None => self.fill_rows(batch),
        }
    }
}
