//! One instantiated machine ([`Leaf`]): its instances (one, or one per `per` key, created on
//! first sight of the key), the timers that fire timeouts in trace time, the handlers
//! offered each event (specialised guards first, the generic evaluator otherwise), state changes
//! with their bounded path, decisions with their explanations, and the end of the trace.

use super::ctx::Ctx;
use super::effects::{effects, Decision, Effects, Plain, Sets};
use super::explain::{inconclusive, path_of, show_key, Outcome, Path, Timer};
use super::fx::{push_int, FxBuild, IntKeys};
use super::timers::Timers;
use super::window::WinState;
use crate::ir::*;
use crate::ops::JsonCell;
use crate::report::*;
use crate::states::LogScope;
use crate::value::{fmt_ts, Value, V};
use serde_json::Value as J;
use std::collections::HashMap;
use trace::EventRef;

mod columns;
pub(super) mod keys;

/// When the fault recorded by `ev` was done: `data.ended_ns` of a `fault` event (its `ts_ns` is
/// the apply's start), else the event's time.
fn fault_done_ns(ev: &EventRef<'_>) -> i64 {
    if ev.source != "fault" {
        return ev.ts_ns;
    }
    ev.data
        .and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .and_then(|d| d.get("ended_ns").and_then(serde_json::Value::as_i64))
        .map_or(ev.ts_ns, |e| e.max(ev.ts_ns))
}

/// An instance of the machine. `repr(C)`, the fields a row of [`Leaf::run_columns`] reads and
/// writes first: they share the instance's first cache lines (declared in the order Rust would
/// pick, they spread over all of its lines).
#[derive(Debug)]
#[repr(C)]
struct Inst {
    state: u16,
    /// The tag of the instance's last entry in the leaf's timers.
    gen: u32,
    entered_ns: i64,
    /// Its outcome once decided (boxed: the instance stays small for the per-event path).
    done: Option<Box<Outcome>>,
    timer: Option<Timer>,
    /// Its one live entry in the leaf's timers, `(deadline, tag)`: no later than its timer's
    /// deadline; an entry popped before the timer is due is pushed again at the deadline, so
    /// re-arming a later timeout pushes nothing while an earlier entry is pending.
    queued: Option<(i64, u32)>,
    entered_seq: Option<u64>,
    path: Path,
    vars: Vec<Value>,
    caps: Vec<Value>,
    wins: Vec<WinState>,
    key: Value,
    /// When it was created: `(ts_ns, seq)` of the event that first had its key (`u64::MAX` for
    /// no event): the order instances are created in, across the parts of [`super::Shards`].
    born: (i64, u64),
    /// Its id in the state log (recording mode, see [`crate::StateLog`]).
    log_id: Option<usize>,
}

impl Inst {
    /// In state `to` from `opens` (entered by event `seq`, if any), the timer armed for
    /// `timeout` from then. Returns the deadline of the entry the leaf's timers must be given
    /// ([`Leaf::push_timer`]), if they need one.
    #[inline]
    fn enter_state(
        &mut self,
        to: u16,
        timeout: Option<i64>,
        opens: i64,
        seq: Option<u64>,
    ) -> Option<i64> {
        self.state = to;
        self.entered_ns = opens;
        self.entered_seq = seq;
        self.timer = timeout.map(|d| Timer {
            deadline: opens.saturating_add(d),
            armed_ns: opens,
            armed_seq: seq,
        });
        self.unscheduled()
    }

    /// The deadline of its timer when no entry of the leaf's timers is due by then: re-arming
    /// a later timeout pushes nothing while an earlier entry is pending.
    #[inline]
    fn unscheduled(&self) -> Option<i64> {
        let tm = self.timer?;
        match self.queued {
            Some((q, _)) if q <= tm.deadline => None,
            _ => Some(tm.deadline),
        }
    }
}

/// What the first matching handler of an event does ([`Leaf::fire`]): nothing matched, the
/// handler (state, index) has a [`Plain`] plan, or the generic evaluator's effects.
enum Fired {
    Nothing,
    Plain(u16, u16),
    Generic(u16, Effects, String),
}

/// Where an event's key stands in a leaf: a known instance, none (a null key, another part's),
/// or a new instance for this key.
enum KeySlot {
    Found(u32),
    None,
    New(Value),
}

pub(crate) struct Leaf {
    pub r: MonRef,
    insts: Vec<Inst>,
    keys: HashMap<Box<str>, u32, FxBuild>,
    /// Integer keys seen before and what they came to (their instance, or `None` for another
    /// part's key): an integer key is looked up without writing it out as text.
    int_keys: IntKeys,
    timers: Timers,
    started: Option<i64>,
    keybuf: String,
    failed: Option<u32>,
    no_key: Value,
    /// Recording mode: where every state change goes.
    pub(crate) log: Option<LogScope>,
    /// One part `(i, n)` of a keyed monitor split over threads ([`super::Shards`]): only the
    /// keys whose hash falls in part `i` of `n` get an instance here.
    shard: Option<(u32, u32)>,
    /// For each state, for each handler: its [`Plain`] plan when its guard is specialised and
    /// its actions need no evaluation context.
    plains: std::sync::Arc<[Vec<Option<Plain>>]>,
    /// How the leaf can be fed a batch's columns, if it can ([`Leaf::run_columns`]).
    columns: Option<columns::ColumnPlan>,
    /// The instances whose paths hold rows still to copy ([`Leaf::run_columns`]).
    dirty: Vec<u32>,
    /// Each row's instance in a batch fed columns (a buffer kept for the next batch).
    row_insts: Vec<u32>,
    /// A batch's rows grouped by instance ([`Leaf::run_columns`]; buffers kept for the next).
    groups: columns::Groups,
    /// The last batch fed columns, while paths may name rows of it: its rows are copied when
    /// the next batch is over, for the entries it did not overwrite, or before a path is read.
    held: Option<trace::EventBatch>,
    /// The instances whose paths may name rows of `held`.
    held_dirty: Vec<u32>,
    /// The tag of the rows of the batch being fed in the paths: 0 or
    /// [`ROW_TAG`](super::explain::ROW_TAG) (`held`'s is the other).
    tag: u32,
}

impl Leaf {
    pub fn new(r: MonRef) -> Leaf {
        let m = &r.machine;
        let plains = m
            .states
            .iter()
            .map(|st| {
                st.handlers
                    .iter()
                    .map(|h| h.pat.fast.as_ref().and_then(|_| Plain::of(m, &h.actions)))
                    .collect()
            })
            .collect::<Vec<_>>();
        let plains: std::sync::Arc<[Vec<Option<Plain>>]> = plains.into();
        Leaf {
            columns: columns::plan(&r, &plains),
            dirty: Vec::new(),
            row_insts: Vec::new(),
            groups: columns::Groups::default(),
            held: None,
            held_dirty: Vec::new(),
            tag: 0,
            plains,
            r,
            insts: Vec::new(),
            keys: HashMap::default(),
            int_keys: IntKeys::default(),
            timers: Timers::default(),
            started: None,
            keybuf: String::new(),
            failed: None,
            no_key: Value::Null,
            log: None,
            shard: None,
        }
    }

    /// Part `i` of `n` of the keyed machine `r` (see [`super::Shards`]).
    pub fn new_shard(r: MonRef, i: u32, n: u32) -> Leaf {
        let mut l = Leaf::new(r);
        l.shard = Some((i, n));
        l
    }

    fn m(&self) -> &Machine {
        &self.r.machine
    }

    pub fn start(&mut self, ts: i64) {
        if self.started.is_some() {
            return;
        }
        self.started = Some(ts);
        if self.m().per.is_none() {
            self.new_inst(Value::Null, ts, None);
        }
    }

    fn new_inst(&mut self, key: Value, ts: i64, seq: Option<u64>) -> u32 {
        let m = self.r.machine.clone();
        let json = JsonCell::new();
        let mut vars = Vec::with_capacity(m.vars.len());
        let mut wins = Vec::with_capacity(m.windows.len());
        let timeout;
        {
            let mut ctx = Ctx::bare(None, &json, &self.r.params, self.r.at.as_deref(), &key);
            for (_, e) in &m.vars {
                let v = ctx.eval(e).to_value();
                vars.push(v);
            }
            for w in &m.windows {
                let (cap, span_ns) = match &w.size {
                    WinSize::Events(n) => (*n, None),
                    WinSize::Time(e) => (
                        0,
                        match ctx.eval(e) {
                            V::Int(d) => Some(d),
                            _ => Some(0),
                        },
                    ),
                };
                wins.push(WinState::new(cap, span_ns));
            }
            timeout = m
                .states
                .first()
                .and_then(|s| s.timeout.as_ref())
                .and_then(|t| match ctx.eval(t) {
                    V::Int(d) => Some(d),
                    _ => None,
                });
        }
        let idx = self.insts.len() as u32;
        let mut inst = Inst {
            state: 0,
            vars,
            caps: vec![Value::Null; m.n_caps],
            wins,
            timer: None,
            gen: 0,
            queued: None,
            done: None,
            path: Path::default(),
            entered_ns: ts,
            entered_seq: seq,
            born: (ts, seq.unwrap_or(u64::MAX)),
            log_id: None,
            key,
        };
        if let Some(l) = &self.log {
            let key = m.per.is_some().then(|| show_key(&inst.key));
            let first = m.states.first().map(|s| s.name.as_str()).unwrap_or("?");
            inst.log_id = Some(l.log.begin(
                &l.scope,
                &self.r.display,
                key,
                self.r.at.as_deref(),
                first,
                ts,
                seq,
            ));
        }
        self.insts.push(inst);
        // in the first state from its first event, that state's timeout armed
        self.arm(idx, 0, timeout, ts, seq);
        idx
    }

    /// Makes sure instance `idx`'s timer, if it has one, is due in the timers: an entry no
    /// later than its deadline is pending (popped early, it is pushed again at the deadline).
    #[inline]
    fn schedule(&mut self, idx: u32) {
        if let Some(dl) = self.insts[idx as usize].unscheduled() {
            self.push_timer(idx, dl);
        }
    }

    /// Pushes instance `idx`'s entry for `deadline` (see [`Leaf::schedule`]).
    #[inline(never)]
    fn push_timer(&mut self, idx: u32, deadline: i64) {
        let inst = &mut self.insts[idx as usize];
        inst.gen = inst.gen.wrapping_add(1);
        inst.queued = Some((deadline, inst.gen));
        self.timers.push((deadline, idx, inst.gen));
        self.compact_timers();
    }

    /// The earliest deadline in the timers (`i64::MAX` for none).
    pub(super) fn next_deadline(&self) -> i64 {
        self.timers.peek().map_or(i64::MAX, |(dl, _, _)| dl)
    }

    /// Entries superseded by an earlier deadline stay until popped (lazy deletion); when they
    /// outnumber the instances (each has at most one live entry) they are dropped, so the
    /// timers stay bounded by live monitor state, not by how many were armed.
    fn compact_timers(&mut self) {
        if self.timers.len() > 2 * self.insts.len() + 64 {
            let insts = &self.insts;
            self.timers.retain(|&(dl, idx, tag)| {
                insts
                    .get(idx as usize)
                    .is_some_and(|i| i.queued == Some((dl, tag)) && i.done.is_none())
            });
        }
    }

    pub fn decided(&self) -> Option<&Outcome> {
        if self.m().per.is_none() {
            self.insts.first().and_then(|i| i.done.as_deref())
        } else {
            self.failed
                .and_then(|i| self.insts[i as usize].done.as_deref())
        }
    }

    /// Fires every timeout due strictly before `ts` (or at/before it when `inclusive`).
    pub fn advance_to(&mut self, ts: i64, inclusive: bool) {
        // (the paths may still name rows of the last batch fed columns)
        self.fill_held();
        while let Some((dl, idx, tag)) = self.timers.peek() {
            if dl > ts || (!inclusive && dl == ts) {
                break;
            }
            self.timers.pop();
            if self.decided().is_some() {
                self.timers.clear();
                for i in &mut self.insts {
                    i.queued = None;
                }
                return;
            }
            let inst = &mut self.insts[idx as usize];
            if inst.queued != Some((dl, tag)) {
                continue;
            }
            inst.queued = None;
            let (timer, done) = (inst.timer, inst.done.is_some());
            match timer {
                _ if done => {}
                // entered again since: due later
                Some(tm) if tm.deadline > dl => self.schedule(idx),
                Some(_) => self.fire_timeout(idx, dl),
                None => {}
            }
        }
    }

    fn fire_timeout(&mut self, idx: u32, now: i64) {
        let m = self.r.machine.clone();
        let inst = &self.insts[idx as usize];
        let timer = inst.timer;
        let st = &m.states[inst.state as usize];
        let json = JsonCell::new();
        let eff = match &st.on_timeout {
            Some((acts, _)) => {
                let mut ctx = inst_ctx(&self.r, &m, inst, None, &json, None);
                effects(&mut ctx, &m, acts, now)
            }
            None => Effects {
                sets: Sets::default(),
                caps: Vec::new(),
                value: None,
                term: Decision::Decide(
                    Verdict::Fail,
                    Some(format!("timeout in state `{}`", st.name)),
                    Vec::new(),
                ),
            },
        };
        let handler_text = st
            .on_timeout
            .as_ref()
            .map(|h| h.1.clone())
            .unwrap_or_else(|| format!("(no `on timeout` in state `{}`)", st.name));
        self.insts[idx as usize].timer = None;
        self.apply(idx, eff, now, None, u16::MAX, handler_text, timer);
    }

    /// Does the machine look at `ev` at all (its `at` service, its sources)?
    fn sees(&self, ev: &EventRef<'_>) -> bool {
        self.r
            .at
            .as_deref()
            .is_none_or(|at| ev.service.is_some_and(|s| same(s, at)))
            && self.sees_source(ev.source)
    }

    /// The [`Plain`] plan of handler `handler` of state `state`, if it has one.
    #[inline]
    fn plain(&self, state: u16, handler: u16) -> Option<&Plain> {
        self.plains
            .get(state as usize)?
            .get(handler as usize)?
            .as_ref()
    }

    /// Does the machine look at events of `source` (its sources)?
    #[inline]
    fn sees_source(&self, source: &str) -> bool {
        self.r
            .machine
            .sources
            .as_ref()
            .is_none_or(|srcs| srcs.iter().any(|s| same(s, source)))
    }

    /// Offers one event. `json` is the event's shared lazily parsed `data`.
    pub fn observe(&mut self, ev: &EventRef<'_>, json: &JsonCell) {
        // (the paths may still name rows of the last batch fed columns)
        self.fill_held();
        if self.decided().is_some() || !self.sees(ev) {
            return;
        }
        let idx = if self.r.machine.per.is_some() {
            match self.key_inst(ev, json) {
                Some(i) => i,
                None => return,
            }
        } else {
            0
        };
        if self
            .insts
            .get(idx as usize)
            .is_none_or(|i| i.done.is_some())
        {
            return;
        }
        self.feed_windows(idx, ev, json);
        match self.fire(idx, ev, json) {
            Fired::Nothing => {}
            Fired::Plain(state, hi) => {
                // what `apply` does with the plan's effects, without building them
                let Some(p) = self.plains[state as usize][hi as usize].as_ref() else {
                    return;
                };
                let goto = p.goto();
                p.apply_in_place(&mut self.insts[idx as usize].vars);
                if let Some((to, timeout)) = goto {
                    self.enter(idx, to, timeout, ev.ts_ns, Some(ev), hi);
                }
            }
            Fired::Generic(hi, eff, text) => {
                let timer = self.insts[idx as usize].timer;
                self.apply(idx, eff, ev.ts_ns, Some(ev), hi, text, timer);
            }
        }
    }

    /// The first handler of instance `idx`'s state that matches `ev`, with what it does: a plain
    /// plan, or the effects the generic evaluator computed (its evaluation context, built on
    /// first need, is dropped here).
    fn fire(&self, idx: u32, ev: &EventRef<'_>, json: &JsonCell) -> Fired {
        // the machine is borrowed field by field, not cloned, on the per-event path
        let m: &Machine = &self.r.machine;
        // handlers: a specialised pattern rejects the event without building a context
        let inst = &self.insts[idx as usize];
        if ev.ts_ns < inst.entered_ns {
            // the state has not opened yet (it opens when the fault that entered it is done)
            return Fired::Nothing;
        }
        let st = &m.states[inst.state as usize];
        let plains = &self.plains[inst.state as usize];
        let mut ctx: Option<Ctx<'_>> = None;
        for (hi, h) in st.handlers.iter().enumerate() {
            if !handler_matches(&self.r, m, inst, h, ev, json, &mut ctx) {
                continue;
            }
            // a handler that only sets plain values (and stays or moves on) needs no context
            if plains[hi].is_some() {
                return Fired::Plain(inst.state, hi as u16);
            }
            let c = ctx.get_or_insert_with(|| inst_ctx(&self.r, m, inst, Some(*ev), json, None));
            if h.pat.fast.is_some() {
                // an earlier handler's generic match may have set captures
                c.caps_now.iter_mut().for_each(|c| *c = None);
            }
            let mut eff = effects(c, m, &h.actions, ev.ts_ns);
            if let Decision::Decide(_, _, gv) = &mut eff.term {
                // re-run the pattern with tracing to show what the guard saw
                let mut t = inst_ctx(&self.r, m, inst, Some(*ev), json, Some(Vec::new()));
                t.matches(&h.pat);
                *gv = t.trace.take().unwrap_or_default();
            }
            // the handler's text is only shown for decisions (path entries name
            // the handler by index): no copy per transition
            let text = match eff.term {
                Decision::Decide(..) => h.text.clone(),
                _ => String::new(),
            };
            return Fired::Generic(hi as u16, eff, text);
        }
        Fired::Nothing
    }

    /// Whether the machine changes only by deciding on the first event a handler matches: one
    /// instance (no `per`), no window, variable or timeout, one state whose every handler decides
    /// (accept, fail, inconclusive) and sets nothing. Its events are independent until then, so
    /// a run of events can be searched for that one on several threads ([`Leaf::first_match`]).
    pub fn decides_on_first_match(&self) -> bool {
        let m = self.m();
        m.per.is_none()
            && m.windows.is_empty()
            && m.vars.is_empty()
            && m.states.len() == 1
            && m.states[0].timeout.is_none()
            && m.states[0].on_timeout.is_none()
            && m.states[0].handlers.iter().all(|h| {
                h.actions.sets.is_empty()
                    && matches!(
                        h.actions.term,
                        TermC::Accept(..) | TermC::Fail(_) | TermC::Inconclusive(_)
                    )
            })
    }

    /// The first event of `evs` that [`Leaf::observe`] would decide on, for a leaf that
    /// [`Leaf::decides_on_first_match`] and has not decided: the same filters (`at`, sources,
    /// the state's opening) and handlers, nothing changed.
    pub fn first_match(&self, evs: &[EventRef<'_>]) -> Option<usize> {
        if self.decided().is_some() {
            return None;
        }
        let m: &Machine = &self.r.machine;
        let inst = self.insts.first().filter(|i| i.done.is_none())?;
        let st = &m.states[inst.state as usize];
        evs.iter().position(|ev| {
            if !self.sees(ev) || ev.ts_ns < inst.entered_ns {
                return false;
            }
            let json = JsonCell::new();
            let mut ctx: Option<Ctx<'_>> = None;
            st.handlers
                .iter()
                .any(|h| handler_matches(&self.r, m, inst, h, ev, &json, &mut ctx))
        })
    }

    /// Evicts expired samples from instance `idx`'s windows and adds the event's samples.
    fn feed_windows(&mut self, idx: u32, ev: &EventRef<'_>, json: &JsonCell) {
        let m: &Machine = &self.r.machine;
        for (wi, wd) in m.windows.iter().enumerate() {
            self.insts[idx as usize].wins[wi].evict(ev.ts_ns);
            if let Some(by) = &wd.by {
                // `latest(E) by K`: the event's key and value (a null key or value: no sample)
                let sample = {
                    let inst = &self.insts[idx as usize];
                    let mut ctx = inst_ctx(&self.r, m, inst, Some(*ev), json, None);
                    let ok = match &wd.of {
                        Some(p) => ctx.matches(p),
                        None => true,
                    };
                    if !ok {
                        None
                    } else {
                        let k = ctx.eval(by);
                        let k = match k.as_str() {
                            Some(s) => Some(s.to_string()),
                            None if k.is_null() => None,
                            None => Some(k.show()),
                        };
                        let v = wd
                            .expr
                            .as_ref()
                            .map(|e| ctx.eval(e).to_value().to_json())
                            .unwrap_or(J::Null);
                        k.filter(|_| !v.is_null()).map(|k| (k, v))
                    }
                };
                if let Some((k, v)) = sample {
                    self.insts[idx as usize].wins[wi].push_keyed(ev.ts_ns, &k, v);
                }
                continue;
            }
            let sample = {
                let inst = &self.insts[idx as usize];
                let mut ctx = inst_ctx(&self.r, m, inst, Some(*ev), json, None);
                let ok = match &wd.of {
                    Some(p) => ctx.matches(p),
                    None => true,
                };
                if !ok {
                    None
                } else {
                    match &wd.expr {
                        None => Some(1.0),
                        Some(e) => match ctx.eval(e) {
                            V::Bool(b) => Some(b as i64 as f64),
                            v => v.as_f64(),
                        },
                    }
                }
            };
            if let Some(x) = sample {
                self.insts[idx as usize].wins[wi].push(ev.ts_ns, x);
            }
        }
    }

    /// The instance of the event's `per` key, created on first sight; `None` when the key is
    /// null (or, in a part of a split monitor, another part's).
    fn key_inst(&mut self, ev: &EventRef<'_>, json: &JsonCell) -> Option<u32> {
        let (slot, int_key) = {
            let Some(kx) = &self.r.machine.per else {
                return Some(0);
            };
            let k = match &self.r.machine.per_fast {
                Some(fk) => fk.get(ev, json),
                None => generic_key(&self.r, &self.no_key, kx, ev, json),
            };
            let int_key = match k {
                V::Int(i) => {
                    if let Some(slot) = self.int_keys.get(i) {
                        return slot;
                    }
                    Some(i)
                }
                _ => None,
            };
            (
                slot_of_key(&mut self.keybuf, &self.keys, self.shard, &k),
                int_key,
            )
        };
        let slot = match slot {
            KeySlot::Found(i) => Some(i),
            KeySlot::None => None,
            KeySlot::New(key) => {
                let i = self.new_inst(key, ev.ts_ns, Some(ev.seq));
                self.keys.insert(self.keybuf.clone().into_boxed_str(), i);
                Some(i)
            }
        };
        if let Some(i) = int_key {
            self.int_keys.set(i, slot);
        }
        slot
    }

    /// Applies what a handler (`handler`: its index, or `u16::MAX` for `on timeout` and `on
    /// end`) decided for instance `idx` at `now`: assignments, captures, then the terminal
    /// action. `timer` is the instance's timer before the handler ran.
    #[allow(clippy::too_many_arguments)]
    fn apply(
        &mut self,
        idx: u32,
        eff: Effects,
        now: i64,
        ev: Option<&EventRef<'_>>,
        handler: u16,
        handler_text: String,
        timer: Option<Timer>,
    ) {
        let inst = &mut self.insts[idx as usize];
        for (i, v) in eff.sets {
            inst.vars[i as usize] = v;
        }
        for (i, v) in eff.caps {
            inst.caps[i as usize] = v;
        }
        match eff.term {
            Decision::Stay => {}
            Decision::Goto(to, t) => self.enter(idx, to, t, now, ev, handler),
            Decision::Decide(verdict, msg, guard_values) => {
                let explanation = self.explanation(
                    idx,
                    verdict,
                    msg,
                    guard_values,
                    now,
                    ev,
                    handler_text,
                    timer,
                );
                let inst = &mut self.insts[idx as usize];
                inst.timer = None;
                if let (Some(l), Some(id)) = (&self.log, inst.log_id) {
                    l.log.decide(id, verdict, now, ev.map(|e| e.seq));
                }
                inst.done = Some(Box::new(Outcome {
                    verdict,
                    at_ns: now,
                    at_seq: ev.map(|e| e.seq),
                    explanation,
                    value: if verdict == Verdict::Accept {
                        eff.value
                    } else {
                        None
                    },
                }));
                if verdict == Verdict::Fail && self.r.machine.per.is_some() && self.failed.is_none()
                {
                    self.failed = Some(idx);
                }
            }
        }
    }

    /// Instance `idx` goes to state `to` (by handler `handler`, at `now`), its timer armed for
    /// `timeout` from when the state opens; the transition joins the instance's path.
    fn enter(
        &mut self,
        idx: u32,
        to: u16,
        timeout: Option<i64>,
        now: i64,
        ev: Option<&EventRef<'_>>,
        handler: u16,
    ) {
        let m: &Machine = &self.r.machine;
        let inst = &mut self.insts[idx as usize];
        inst.path.push((inst.state, to), now, handler, ev);
        // a state that opens when the fault entering it is done starts then
        let opens = match ev {
            Some(e) if m.states[to as usize].opens_when_fault_done => fault_done_ns(e),
            _ => now,
        };
        if let (Some(l), Some(id)) = (&self.log, inst.log_id) {
            let name = &m.states[to as usize].name;
            l.log.enter(id, name, now, ev.map(|e| e.seq));
        }
        self.arm(idx, to, timeout, opens, ev.map(|e| e.seq));
    }

    /// Instance `idx` is in state `to` from `opens` (entered by event `seq`, if any), its timer
    /// armed for `timeout` from then.
    #[inline]
    fn arm(&mut self, idx: u32, to: u16, timeout: Option<i64>, opens: i64, seq: Option<u64>) {
        if let Some(dl) = self.insts[idx as usize].enter_state(to, timeout, opens, seq) {
            self.push_timer(idx, dl);
        }
    }

    /// The explanation of instance `idx` deciding `verdict` at `now` (on event `ev`, or at a
    /// timeout or the end when `None`), with the handler's message `msg` if it has one.
    #[allow(clippy::too_many_arguments)]
    fn explanation(
        &self,
        idx: u32,
        verdict: Verdict,
        msg: Option<String>,
        guard_values: Vec<GuardValue>,
        now: i64,
        ev: Option<&EventRef<'_>>,
        handler_text: String,
        timer: Option<Timer>,
    ) -> Explanation {
        let m: &Machine = &self.r.machine;
        let inst = &self.insts[idx as usize];
        let st = &m.states[inst.state as usize];
        // since the monitor started (for an experiment step: its window)
        let rel = |ts: i64| {
            let s = self.started.unwrap_or(ts);
            format!("+{:.3}s", (ts - s) as f64 / 1e9)
        };
        let reason = msg.unwrap_or_else(|| match (verdict, ev) {
            (Verdict::Fail, None) => format!("timeout in state `{}`", st.name),
            // an accept says what was observed (temporal sugar: the form as written)
            (Verdict::Accept, Some(e)) if !handler_text.is_empty() => format!(
                "`{}`: matched at {}, seq {}",
                handler_text,
                rel(e.ts_ns),
                e.seq
            ),
            (Verdict::Accept, None) if !handler_text.is_empty() => format!(
                "`{}`: held until its timeout at {} in state `{}`",
                handler_text,
                rel(now),
                st.name
            ),
            (v, _) => format!("{v} in state `{}`", st.name),
        });
        let mut services: Vec<String> = self.r.at.iter().map(|s| s.to_string()).collect();
        if let Some(s) = ev.and_then(|e| e.service) {
            services.push(s.to_string());
        }
        services.sort();
        services.dedup();
        Explanation {
            reason,
            monitor: self.r.display.clone(),
            key: if m.per.is_some() {
                Some(show_key(&inst.key))
            } else {
                None
            },
            state: st.name.clone(),
            decided_ns: Some(now),
            deciding_event: ev.map(EventInfo::of),
            handler: Some(handler_text),
            guard_values,
            path: path_of(m, &inst.path),
            timeout: if ev.is_none() {
                timer.map(|t| TimeoutInfo {
                    state: st.name.clone(),
                    armed_ns: t.armed_ns,
                    armed_by_seq: t.armed_seq,
                    deadline_ns: t.deadline,
                })
            } else {
                None
            },
            pending: None,
            services,
        }
    }

    /// Ends the run: due timeouts fire, undecided instances take their `on end` verdict or are
    /// inconclusive. Returns the leaf's outcome.
    pub fn finish(&mut self, end_ns: i64) -> Outcome {
        // (the paths may still name rows of the last batch fed columns)
        self.fill_held();
        self.settle(end_ns);
        if let Some(o) = self.decided() {
            return o.clone();
        }
        self.end_all(end_ns);
        if self.insts.is_empty() {
            // no key ever seen: judge a fresh instance at the end
            let m = self.r.machine.clone();
            let idx = self.new_inst(Value::Null, end_ns, None);
            self.end_inst(idx, end_ns);
            let mut o = self.insts[idx as usize]
                .done
                .as_deref()
                .cloned()
                .unwrap_or_else(|| inconclusive(&self.r.display, "no event", end_ns));
            o.explanation.key = None;
            if o.verdict == Verdict::Inconclusive {
                o.explanation.pending = Some(format!(
                    "no event produced a `per` key; initial state `{}` undecided",
                    m.states.first().map(|s| s.name.as_str()).unwrap_or("?")
                ));
            }
            return o;
        }
        combine(
            &self.r,
            self.insts.iter().filter_map(|i| i.done.as_deref()),
            end_ns,
        )
    }

    /// Starts the leaf if no event did and fires every timeout due by `end_ns` (inclusive).
    pub fn settle(&mut self, end_ns: i64) {
        // (the paths may still name rows of the last batch fed columns)
        self.fill_held();
        if self.started.is_none() {
            self.start(end_ns);
        }
        self.advance_to(end_ns, true);
    }

    /// Ends every undecided instance at `end_ns` (its `on end` handler, or inconclusive).
    pub fn end_all(&mut self, end_ns: i64) {
        // (the paths may still name rows of the last batch fed columns)
        self.fill_held();
        for idx in 0..self.insts.len() {
            if self.insts[idx].done.is_none() {
                self.end_inst(idx as u32, end_ns);
            }
        }
    }

    /// How many instances the leaf has.
    pub fn instances(&self) -> usize {
        self.insts.len()
    }

    /// Every decided instance's outcome with when the instance was created.
    pub fn outcomes(&self) -> impl Iterator<Item = ((i64, u64), &Outcome)> + '_ {
        self.insts
            .iter()
            .filter_map(|i| i.done.as_deref().map(|o| (i.born, o)))
    }

    /// Where the failure that decided a keyed leaf stands in the order one leaf decides in:
    /// its time, its event (a timeout after every event of its time), then instance creation.
    pub fn fail_order(&self) -> Option<(i64, u64, (i64, u64))> {
        let inst = &self.insts[self.failed? as usize];
        let o = inst.done.as_deref()?;
        Some((o.at_ns, o.at_seq.unwrap_or(u64::MAX), inst.born))
    }

    /// The undecided instance created first, with when it was created.
    pub fn first_pending(&self) -> Option<((i64, u64), u32)> {
        self.insts
            .iter()
            .position(|i| i.done.is_none())
            .map(|i| (self.insts[i].born, i as u32))
    }

    fn end_inst(&mut self, idx: u32, end_ns: i64) {
        let m = self.r.machine.clone();
        let inst = &self.insts[idx as usize];
        let st = &m.states[inst.state as usize];
        match &st.on_end {
            Some((acts, text)) => {
                let json = JsonCell::new();
                let mut ctx = inst_ctx(&self.r, &m, inst, None, &json, None);
                let eff = effects(&mut ctx, &m, acts, end_ns);
                let eff = match eff.term {
                    Decision::Decide(v, msg, g) => Effects {
                        sets: eff.sets,
                        caps: eff.caps,
                        value: eff.value,
                        term: Decision::Decide(
                            v,
                            Some(msg.unwrap_or_else(|| {
                                format!(
                                    "trace ended in state `{}`, which {}s at the end",
                                    st.name, v
                                )
                            })),
                            g,
                        ),
                    },
                    other => Effects {
                        sets: eff.sets,
                        caps: eff.caps,
                        value: eff.value,
                        term: other,
                    },
                };
                let text = text.clone();
                self.apply(idx, eff, end_ns, None, u16::MAX, text, None);
                if let Some(o) = &mut self.insts[idx as usize].done {
                    o.explanation.timeout = None;
                }
            }
            None => {
                let reason = format!("`{}` had not decided when its window ended", self.r.display);
                let o = self.pending_outcome(idx, end_ns, reason);
                let inst = &mut self.insts[idx as usize];
                if let (Some(l), Some(id)) = (&self.log, inst.log_id) {
                    l.log.decide(id, Verdict::Inconclusive, end_ns, None);
                }
                inst.done = Some(Box::new(o));
            }
        }
    }

    /// The outcome of an instance that has not decided at `at_ns`: inconclusive, with its state,
    /// its armed timeout and the handlers it was waiting for.
    pub fn pending_outcome(&self, idx: u32, at_ns: i64, reason: String) -> Outcome {
        let m = self.r.machine.clone();
        let inst = &self.insts[idx as usize];
        let st = &m.states[inst.state as usize];
        let mut pending = format!("in state `{}` since {}", st.name, fmt_ts(inst.entered_ns));
        if let Some(seq) = inst.entered_seq {
            pending.push_str(&format!(" (event seq {seq})"));
        }
        if let Some(t) = inst.timer {
            if t.deadline > at_ns {
                pending.push_str(&format!(
                    "; timeout armed at {} due at {} (after {})",
                    fmt_ts(t.armed_ns),
                    fmt_ts(t.deadline),
                    fmt_ts(at_ns)
                ));
            }
        }
        let waiting: Vec<String> = st
            .handlers
            .iter()
            .filter(|h| !matches!(h.actions.term, TermC::Stay))
            .map(|h| format!("`{}`", h.text))
            .collect();
        if !waiting.is_empty() {
            pending.push_str(&format!("; waiting for {}", waiting.join(" or ")));
        }
        let mut services: Vec<String> = self.r.at.iter().map(|s| s.to_string()).collect();
        services.sort();
        let explanation = Explanation {
            reason,
            monitor: self.r.display.clone(),
            key: if m.per.is_some() {
                Some(show_key(&inst.key))
            } else {
                None
            },
            state: st.name.clone(),
            decided_ns: Some(at_ns),
            path: path_of(&m, &inst.path),
            timeout: inst.timer.map(|t| TimeoutInfo {
                state: st.name.clone(),
                armed_ns: t.armed_ns,
                armed_by_seq: t.armed_seq,
                deadline_ns: t.deadline,
            }),
            pending: Some(pending),
            services,
            ..Default::default()
        };
        Outcome {
            verdict: Verdict::Inconclusive,
            at_ns,
            at_seq: None,
            explanation,
            value: None,
        }
    }

    /// This monitor as it stood at `at_ns`, when the composition it is part of decided without
    /// it (`why` says so): no end handlers run and no later timeout fires. Its verdict if it had
    /// decided by then, otherwise inconclusive with the state it was in.
    pub fn frozen(&mut self, at_ns: i64, why: &str) -> Outcome {
        // (the paths may still name rows of the last batch fed columns)
        self.fill_held();
        if let Some(o) = self.decided() {
            return o.clone();
        }
        match (0..self.insts.len()).find(|i| self.insts[*i].done.is_none()) {
            Some(i) => self.pending_outcome(i as u32, at_ns, why.to_string()),
            None => inconclusive(&self.r.display, why, at_ns),
        }
    }
}

/// Where key `k` stands among a leaf's `keys`, by its text (left in `keybuf`); `shard`: the
/// leaf's part of a split monitor.
fn slot_of_key(
    keybuf: &mut String,
    keys: &HashMap<Box<str>, u32, FxBuild>,
    shard: Option<(u32, u32)>,
    k: &V<'_>,
) -> KeySlot {
    keybuf.clear();
    match k {
        V::Null => return KeySlot::None,
        V::Str(s) => keybuf.push_str(s),
        V::S(s) => keybuf.push_str(s),
        V::Int(i) => push_int(keybuf, *i),
        other => keybuf.push_str(&other.to_value().to_string()),
    }
    if let Some((part, parts)) = shard {
        // another part's key (multiply-shift: the hash's high bits pick the part)
        let h = std::hash::BuildHasher::hash_one(&FxBuild, keybuf.as_bytes());
        if ((u128::from(h) * u128::from(parts)) >> 64) as u32 != part {
            return KeySlot::None;
        }
    }
    // one lookup for a known key; the owned key is built only for a new instance
    match keys.get(keybuf.as_str()) {
        Some(i) => KeySlot::Found(*i),
        None => KeySlot::New(k.to_value()),
    }
}

/// The `per` key of an event by the generic evaluator.
fn generic_key<'a>(
    r: &'a MonRef,
    no_key: &'a Value,
    kx: &'a X,
    ev: &EventRef<'a>,
    json: &'a JsonCell,
) -> V<'a> {
    Ctx::bare(Some(*ev), json, &r.params, r.at.as_deref(), no_key).eval(kx)
}

/// The evaluation context of an instance: on an event, or (`ev = None`) at a timeout or the
/// end of the trace.
fn inst_ctx<'a>(
    r: &'a MonRef,
    m: &'a Machine,
    inst: &'a Inst,
    ev: Option<EventRef<'a>>,
    json: &'a JsonCell,
    trace: Option<Vec<GuardValue>>,
) -> Ctx<'a> {
    Ctx {
        ev,
        json,
        params: &r.params,
        vars: &inst.vars,
        wins: &inst.wins,
        win_defs: &m.windows,
        caps_saved: &inst.caps,
        caps_now: Vec::new(),
        vars_now: Vec::new(),
        locals: Vec::new(),
        here: r.at.as_deref(),
        key: &inst.key,
        trace,
    }
}

/// Does handler `h`'s pattern match `ev` for instance `inst`, as [`Leaf::observe`] offers the
/// handlers of a state in turn? A specialised pattern is checked without a context; a generic
/// one in `ctx` (built on first need and shared by the handlers of one event), its captures
/// cleared first so that an earlier handler's do not leak into this one's.
fn handler_matches<'a>(
    r: &'a MonRef,
    m: &'a Machine,
    inst: &'a Inst,
    h: &'a HandlerC,
    ev: &EventRef<'a>,
    json: &'a JsonCell,
    ctx: &mut Option<Ctx<'a>>,
) -> bool {
    match &h.pat.fast {
        Some(f) => source_kind_match(&h.pat, ev) && f.holds(ev, json, &inst.vars),
        None => {
            let c = ctx.get_or_insert_with(|| inst_ctx(r, m, inst, Some(*ev), json, None));
            c.caps_now.iter_mut().for_each(|c| *c = None);
            c.matches(&h.pat)
        }
    }
}

/// The pattern's source and kind, checked before its guard.
#[inline]
fn source_kind_match(p: &PatternC, ev: &EventRef<'_>) -> bool {
    p.source.as_deref().is_none_or(|s| same(s, ev.source))
        && p.kind.as_deref().is_none_or(|k| same(k, ev.kind))
}

/// `a == b` for the short names of sources, kinds and services, compared in line: a call to
/// `memcmp` for each of an event's handlers was 2 % of a regex check's instructions.
#[inline]
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| x == y)
}

/// The verdict of a keyed leaf's instances (`outcomes` in creation order) at the end: fail >
/// inconclusive > accept, with the explanation of the first worst; all accepted says how many.
pub(super) fn combine<'o>(
    r: &MonRef,
    outcomes: impl Iterator<Item = &'o Outcome>,
    end_ns: i64,
) -> Outcome {
    let mut best: Option<&Outcome> = None;
    let mut n_acc = 0;
    for o in outcomes {
        if o.verdict == Verdict::Accept {
            n_acc += 1;
        }
        if best.is_none_or(|b| o.verdict > b.verdict) {
            best = Some(o);
        }
    }
    let mut o = best
        .cloned()
        .unwrap_or_else(|| inconclusive(&r.display, "no instance", end_ns));
    if r.machine.per.is_some() && o.verdict == Verdict::Accept {
        o.explanation.reason = format!("all {n_acc} instance(s) accepted");
        o.explanation.key = None;
    }
    o
}
