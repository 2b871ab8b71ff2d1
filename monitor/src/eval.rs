//! The evaluator: instances of compiled machines fed events in trace order, timeouts in trace
//! time, per-key instances, windows, compositions, and the explanations of every decision.
//! The hot path (an event that matches nothing or a guard over borrowed fields) allocates
//! nothing.

use crate::ast::{Agg, BinOp, Quant};
use crate::ir::*;
use crate::report::*;
use crate::states::LogScope;
use crate::value::{Value, V};
use serde_json::Value as J;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::rc::Rc;
use trace::EventRef;

/// The longest string (bytes) or list (items) `+` builds at run time; longer is `null`.
pub(crate) const MAX_CONCAT: usize = 1 << 24;

const PATH_MAX: usize = 32;
const TRACE_MAX: usize = 24;

/// The per-event lazily parsed `data`.
pub(crate) use crate::fast::JsonCell;

pub(crate) struct Ctx<'a> {
    ev: Option<EventRef<'a>>,
    json: &'a JsonCell,
    params: &'a [Value],
    vars: &'a [Value],
    wins: &'a [WinState],
    win_defs: &'a [WindowC],
    caps_saved: &'a [Value],
    caps_now: Vec<Option<V<'a>>>,
    /// Values assigned by the `set`s of the handler being applied, read before `vars`: the
    /// assignments are sequential (each right-hand side and the terminal action's message see
    /// the ones before it).
    vars_now: Vec<Option<V<'a>>>,
    locals: Vec<V<'a>>,
    here: Option<&'a str>,
    key: &'a Value,
    trace: Option<Vec<GuardValue>>,
}

fn s<'a>(o: Option<&'a str>) -> V<'a> {
    o.map(V::Str).unwrap_or(V::Null)
}

impl<'a> Ctx<'a> {
    fn data(&self) -> V<'a> {
        match &self.ev {
            Some(ev) => crate::fast::data_of(ev, self.json),
            None => V::Null,
        }
    }

    pub(crate) fn eval(&mut self, x: &'a X) -> V<'a> {
        let v = self.eval_inner(x);
        if let (Some(t), Some(text)) = (&mut self.trace, &x.text) {
            if t.len() < TRACE_MAX && !t.iter().any(|g| *g.expr == **text) {
                t.push(GuardValue {
                    expr: text.to_string(),
                    value: v.show(),
                });
            }
        }
        v
    }

    fn eval_inner(&mut self, x: &'a X) -> V<'a> {
        match &x.k {
            Ex::Const(v) => V::of(v),
            Ex::Ts => self.ev.map(|e| V::Int(e.ts_ns)).unwrap_or(V::Null),
            Ex::Seq => self.ev.map(|e| V::Int(e.seq as i64)).unwrap_or(V::Null),
            Ex::Source => s(self.ev.map(|e| e.source)),
            Ex::Service => s(self.ev.and_then(|e| e.service)),
            Ex::Container => s(self.ev.and_then(|e| e.container)),
            Ex::Kind => s(self.ev.map(|e| e.kind)),
            Ex::Message => s(self.ev.and_then(|e| e.message)),
            Ex::Data => self.data(),
            Ex::Here => s(self.here),
            Ex::Key => V::of(self.key),
            Ex::Param(i) => self.params.get(*i as usize).map(V::of).unwrap_or(V::Null),
            Ex::Var(i) => {
                if let Some(Some(v)) = self.vars_now.get(*i as usize) {
                    return v.clone();
                }
                self.vars.get(*i as usize).map(V::of).unwrap_or(V::Null)
            }
            Ex::Win(i) => win_value(&self.win_defs[*i as usize], &self.wins[*i as usize]),
            Ex::Cap(i) => {
                if let Some(Some(v)) = self.caps_now.get(*i as usize) {
                    return v.clone();
                }
                self.caps_saved
                    .get(*i as usize)
                    .map(V::of)
                    .unwrap_or(V::Null)
            }
            Ex::Local(i) => self.locals.get(*i as usize).cloned().unwrap_or(V::Null),
            Ex::Field(b, f) => self.eval(b).field(f),
            Ex::Index(b, i) => {
                let bv = self.eval(b);
                let iv = self.eval(i);
                bv.index(&iv)
            }
            Ex::List(items) => V::L(Rc::new(items.iter().map(|i| self.eval(i)).collect())),
            Ex::Neg(a) => match self.eval(a) {
                // overflow gives null, like `+` and `*` (docs/spec-language.md)
                V::Int(i) => i.checked_neg().map(V::Int).unwrap_or(V::Null),
                V::Float(f) => V::Float(-f),
                _ => V::Null,
            },
            Ex::Not(a) => match self.eval(a) {
                V::Bool(b) => V::Bool(!b),
                _ => V::Null,
            },
            Ex::Bin(op, a, b) => self.bin(*op, a, b),
            Ex::Match {
                negated,
                lhs,
                re,
                caps,
            } => {
                let l = self.eval(lhs);
                let r = match &l {
                    V::Str(hay) => {
                        if caps.is_empty() {
                            re.is_match(hay)
                        } else {
                            match re.captures(hay) {
                                Some(c) => {
                                    for (g, slot) in caps {
                                        if let Some(m) = c.get(*g) {
                                            self.set_cap(*slot, V::Str(&hay[m.range()]));
                                        }
                                    }
                                    true
                                }
                                None => false,
                            }
                        }
                    }
                    V::S(hay) => match re.captures(hay) {
                        Some(c) => {
                            for (g, slot) in caps {
                                if let Some(m) = c.get(*g) {
                                    self.set_cap(*slot, V::S(Rc::from(m.as_str())));
                                }
                            }
                            true
                        }
                        None => false,
                    },
                    _ => return V::Bool(*negated),
                };
                V::Bool(r != *negated)
            }
            Ex::Quant {
                q,
                local,
                list,
                body,
            } => {
                let l = self.eval(list);
                let Some(n) = l.list_len() else {
                    return if matches!(q, Quant::Count | Quant::Filter) {
                        V::Null
                    } else {
                        V::Bool(false)
                    };
                };
                let li = *local as usize;
                if self.locals.len() <= li {
                    self.locals.resize(li + 1, V::Null);
                }
                let mut count = 0i64;
                let mut kept = Vec::new();
                for i in 0..n {
                    self.locals[li] = l.list_get(i);
                    let b = self.eval(body).truthy();
                    match q {
                        Quant::All if !b => return V::Bool(false),
                        Quant::Any if b => return V::Bool(true),
                        Quant::Count if b => count += 1,
                        Quant::Filter if b => kept.push(l.list_get(i)),
                        _ => {}
                    }
                }
                match q {
                    Quant::All => V::Bool(true),
                    Quant::Any => V::Bool(false),
                    Quant::Count => V::Int(count),
                    Quant::Filter => V::L(Rc::new(kept)),
                }
            }
            Ex::If(c, a, b) => {
                if self.eval(c).truthy() {
                    self.eval(a)
                } else {
                    self.eval(b)
                }
            }
            Ex::Call(b, args) => self.call(*b, args),
        }
    }

    fn set_cap(&mut self, slot: u16, v: V<'a>) {
        let i = slot as usize;
        if self.caps_now.len() <= i {
            self.caps_now.resize(self.caps_saved.len().max(i + 1), None);
        }
        self.caps_now[i] = Some(v);
    }

    fn bin(&mut self, op: BinOp, a: &'a X, b: &'a X) -> V<'a> {
        use BinOp::*;
        match op {
            And => {
                let l = self.eval(a);
                if !l.truthy() {
                    return if l.is_null() { V::Null } else { V::Bool(false) };
                }
                let r = self.eval(b);
                if let V::Bool(x) = r {
                    V::Bool(x)
                } else {
                    V::Null
                }
            }
            Or => {
                let l = self.eval(a);
                if l.truthy() {
                    return V::Bool(true);
                }
                match self.eval(b) {
                    V::Bool(x) => V::Bool(x),
                    _ => V::Null,
                }
            }
            _ => {
                let l = self.eval(a);
                let r = self.eval(b);
                binop(op, &l, &r)
            }
        }
    }

    fn call(&mut self, b: Builtin, args: &'a [X]) -> V<'a> {
        let a0 = args.first().map(|a| self.eval(a)).unwrap_or(V::Null);
        let a1 = args.get(1).map(|a| self.eval(a)).unwrap_or(V::Null);
        match b {
            Builtin::Len => a0.len().map(V::Int).unwrap_or(V::Null),
            Builtin::Int => match &a0 {
                V::Int(i) => V::Int(*i),
                V::Float(f) => V::Int(*f as i64),
                V::Bool(b) => V::Int(*b as i64),
                other => other
                    .as_str()
                    .and_then(|s| s.trim().parse::<i64>().ok())
                    .map(V::Int)
                    .unwrap_or(V::Null),
            },
            Builtin::Float => match &a0 {
                V::Int(i) => V::Float(*i as f64),
                V::Float(f) => V::Float(*f),
                V::Bool(b) => V::Float(*b as i64 as f64),
                other => other
                    .as_str()
                    .and_then(|s| s.trim().parse::<f64>().ok())
                    .map(V::Float)
                    .unwrap_or(V::Null),
            },
            Builtin::Str => match &a0 {
                V::Str(_) | V::S(_) => a0,
                V::Null => V::Null,
                other => V::S(Rc::from(other.to_value().to_string().trim_matches('"'))),
            },
            Builtin::StrDur => match &a0 {
                V::Int(ns) => V::S(Rc::from(crate::value::fmt_dur(*ns).as_str())),
                _ => V::Null,
            },
            Builtin::Bool => match &a0 {
                V::Bool(b) => V::Bool(*b),
                V::Null => V::Bool(false),
                V::Int(i) => V::Bool(*i != 0),
                other => match other.as_str() {
                    Some("true") => V::Bool(true),
                    Some("false") => V::Bool(false),
                    _ => V::Null,
                },
            },
            Builtin::Lower => a0
                .as_str()
                .map(|s| V::S(Rc::from(s.to_lowercase())))
                .unwrap_or(V::Null),
            Builtin::Upper => a0
                .as_str()
                .map(|s| V::S(Rc::from(s.to_uppercase())))
                .unwrap_or(V::Null),
            Builtin::Split => match (&a0, a1.as_str()) {
                (V::Str(s), Some(sep)) if !sep.is_empty() => {
                    V::L(Rc::new(s.split(sep).map(V::Str).collect()))
                }
                (V::S(s), Some(sep)) if !sep.is_empty() => {
                    V::L(Rc::new(s.split(sep).map(|p| V::S(Rc::from(p))).collect()))
                }
                _ => V::Null,
            },
            Builtin::StartsWith => match (a0.as_str(), a1.as_str()) {
                (Some(x), Some(y)) => V::Bool(x.starts_with(y)),
                _ => V::Null,
            },
            Builtin::EndsWith => match (a0.as_str(), a1.as_str()) {
                (Some(x), Some(y)) => V::Bool(x.ends_with(y)),
                _ => V::Null,
            },
            Builtin::Contains => match (&a0, &a1) {
                (V::Null, _) | (_, V::Null) => V::Null,
                _ => V::Bool(a0.contains(&a1)),
            },
            Builtin::Keys => match &a0 {
                V::J(J::Object(m)) => V::L(Rc::new(m.keys().map(|k| V::Str(k.as_str())).collect())),
                V::M(j) => match j.as_object() {
                    Some(m) => V::L(Rc::new(
                        m.keys().map(|k| V::S(Rc::from(k.as_str()))).collect(),
                    )),
                    None => V::Null,
                },
                _ => V::Null,
            },
            Builtin::Values => match &a0 {
                V::J(J::Object(m)) => V::L(Rc::new(m.values().map(V::of_json).collect())),
                V::M(j) => match j.as_object() {
                    Some(m) => V::L(Rc::new(m.values().map(V::of_json_owned).collect())),
                    None => V::Null,
                },
                _ => V::Null,
            },
            Builtin::Abs => match a0 {
                V::Int(i) => i.checked_abs().map(V::Int).unwrap_or(V::Null),
                V::Float(f) => V::Float(f.abs()),
                _ => V::Null,
            },
            Builtin::Min | Builtin::Max => match a0.cmp(&a1) {
                Some(o) => {
                    let first = (o != std::cmp::Ordering::Greater) == (b == Builtin::Min);
                    if first {
                        a0
                    } else {
                        a1
                    }
                }
                None => V::Null,
            },
            Builtin::IsNull => V::Bool(a0.is_null()),
            Builtin::Time => match a0 {
                V::Int(ns) => V::S(Rc::from(fmt_ts(ns).as_str())),
                _ => V::Null,
            },
        }
    }

    fn matches(&mut self, p: &'a PatternC) -> bool {
        let Some(ev) = self.ev else { return false };
        if let Some(src) = &p.source {
            if **src != *ev.source {
                return false;
            }
        }
        if let Some(k) = &p.kind {
            if **k != *ev.kind {
                return false;
            }
        }
        // the specialised guard, unless the guard's values are being traced
        if let (Some(f), None) = (&p.fast, &self.trace) {
            return f.holds(&ev, self.json);
        }
        if let Some(f) = &p.from {
            let want = self.eval(f);
            match (want.as_str(), ev.service) {
                (Some(w), Some(s)) if w == s => {}
                _ => return false,
            }
        }
        match &p.guard {
            Some(g) => self.eval(g).truthy(),
            None => true,
        }
    }
}

/// The generic evaluator's verdict on a pattern (its `fast` form not used when `None`).
#[cfg(test)]
pub(crate) fn matches_generic(p: &PatternC, ev: &EventRef<'_>, json: &JsonCell) -> bool {
    let key = Value::Null;
    let mut ctx = Ctx {
        ev: Some(*ev),
        json,
        params: &[],
        vars: &[],
        wins: &[],
        win_defs: &[],
        caps_saved: &[],
        caps_now: Vec::new(),
        vars_now: Vec::new(),
        locals: Vec::new(),
        here: None,
        key: &key,
        trace: None,
    };
    ctx.matches(p)
}

pub(crate) fn binop<'a>(op: BinOp, l: &V<'a>, r: &V<'a>) -> V<'a> {
    use std::cmp::Ordering::*;
    use BinOp::*;
    match op {
        Eq => V::Bool(l.eq(r)),
        Ne => V::Bool(!l.eq(r)),
        Lt | Le | Gt | Ge => match l.cmp(r) {
            Some(o) => V::Bool(match op {
                Lt => o == Less,
                Le => o != Greater,
                Gt => o == Greater,
                _ => o != Less,
            }),
            None => V::Bool(false),
        },
        In => V::Bool(r.contains(l)),
        NotIn => V::Bool(!r.contains(l)),
        Add | Sub | Mul | Div | Rem => {
            if let (V::Int(a), V::Int(b)) = (l, r) {
                return match op {
                    Add => a.checked_add(*b).map(V::Int).unwrap_or(V::Null),
                    Sub => a.checked_sub(*b).map(V::Int).unwrap_or(V::Null),
                    Mul => a.checked_mul(*b).map(V::Int).unwrap_or(V::Null),
                    Div if *b == 0 => V::Null,
                    Div => V::Float(*a as f64 / *b as f64),
                    _ => a.checked_rem(*b).map(V::Int).unwrap_or(V::Null),
                };
            }
            if let (Some(a), Some(b)) = (l.as_f64(), r.as_f64()) {
                return match op {
                    Add => V::Float(a + b),
                    Sub => V::Float(a - b),
                    Mul => V::Float(a * b),
                    Div if b == 0.0 => V::Null,
                    Div => V::Float(a / b),
                    _ if b == 0.0 => V::Null,
                    _ => V::Float(a % b),
                };
            }
            if op == Sub {
                // list difference: the items of the left list that are not in the right one
                if let (Some(n), Some(_)) = (l.list_len(), r.list_len()) {
                    let v: Vec<V<'a>> = (0..n)
                        .map(|i| l.list_get(i))
                        .filter(|x| !r.contains(x))
                        .collect();
                    return V::L(Rc::new(v));
                }
            }
            if op == Add {
                // concatenation past MAX_CONCAT is null, like integer overflow: a variable
                // doubled on every event (`set s = s + s`) must not exhaust memory
                if let (Some(a), Some(b)) = (l.as_str(), r.as_str()) {
                    if a.len() + b.len() > MAX_CONCAT {
                        return V::Null;
                    }
                    return V::S(Rc::from(format!("{a}{b}")));
                }
                if let (Some(n), Some(m)) = (l.list_len(), r.list_len()) {
                    if n + m > MAX_CONCAT {
                        return V::Null;
                    }
                    let mut v = Vec::with_capacity(n + m);
                    v.extend((0..n).map(|i| l.list_get(i)));
                    v.extend((0..m).map(|i| r.list_get(i)));
                    return V::L(Rc::new(v));
                }
            }
            V::Null
        }
        And | Or => V::Null,
    }
}

// ---------------- windows ----------------

#[derive(Debug, Clone, Default)]
pub(crate) struct WinState {
    samples: VecDeque<(i64, f64)>,
    sum: f64,
    cap: usize,
    span_ns: Option<i64>,
    /// A `latest(E) by K` window: its samples (time, key, value), oldest first ...
    keyed: VecDeque<(i64, Box<str>, J)>,
    /// ... and the map from each key to its latest value, rebuilt when they change.
    map: J,
}

impl WinState {
    fn new(cap: usize, span_ns: Option<i64>) -> WinState {
        WinState {
            samples: VecDeque::new(),
            sum: 0.0,
            cap,
            span_ns,
            keyed: VecDeque::new(),
            map: J::Object(Default::default()),
        }
    }
    fn rebuild_map(&mut self) {
        let mut m = serde_json::Map::new();
        for (_, k, v) in &self.keyed {
            m.insert(k.to_string(), v.clone());
        }
        self.map = J::Object(m);
    }
    /// A `latest ... by` sample: `key`'s value is now `v`.
    fn push_keyed(&mut self, ts: i64, key: &str, v: J) {
        if self.span_ns.is_none() && self.keyed.len() >= self.cap {
            self.keyed.pop_front();
        }
        self.keyed.push_back((ts, key.into(), v));
        self.rebuild_map();
    }
    fn evict(&mut self, now: i64) {
        if let (Some(d), Some((t, _, _))) = (self.span_ns, self.keyed.front()) {
            if *t <= now - d {
                while self.keyed.front().is_some_and(|(t, _, _)| *t <= now - d) {
                    self.keyed.pop_front();
                }
                self.rebuild_map();
            }
        }
        if let Some(d) = self.span_ns {
            while let Some(&(t, v)) = self.samples.front() {
                if t > now - d {
                    break;
                }
                self.samples.pop_front();
                self.sum -= v;
            }
            if self.samples.is_empty() {
                self.sum = 0.0;
            }
        }
    }
    fn push(&mut self, ts: i64, v: f64) {
        if self.span_ns.is_none() && self.samples.len() >= self.cap {
            if let Some((_, old)) = self.samples.pop_front() {
                self.sum -= old;
            }
        }
        self.samples.push_back((ts, v));
        self.sum += v;
    }
}

fn win_value<'a>(d: &WindowC, w: &'a WinState) -> V<'a> {
    let n = w.samples.len();
    match d.agg {
        Agg::Latest => V::J(&w.map),
        Agg::Count => V::Int(w.sum.round() as i64),
        Agg::Sum => V::Float(w.sum),
        _ if n == 0 => V::Null,
        Agg::Mean => V::Float(w.sum / n as f64),
        Agg::Min => V::Float(w.samples.iter().map(|s| s.1).fold(f64::INFINITY, f64::min)),
        Agg::Max => V::Float(
            w.samples
                .iter()
                .map(|s| s.1)
                .fold(f64::NEG_INFINITY, f64::max),
        ),
        Agg::Percentile(p) => V::Float(percentile(w.samples.iter().map(|s| s.1), p)),
    }
}

/// The nearest-rank percentile (`p` in hundredths of a percent) of a non-empty set of samples:
/// the smallest sample with at least `p` % of the samples at or below it.
fn percentile(samples: impl Iterator<Item = f64>, p: u16) -> f64 {
    let mut v: Vec<f64> = samples.collect();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    // rank = ceil(p/10000 * n), in integers
    let rank = (u64::from(p) * n as u64).div_ceil(10_000) as usize;
    v[rank.clamp(1, n) - 1]
}

// ---------------- instances and leaves ----------------

/// A small fast hasher for per-key instance lookup (keys are short strings; no untrusted-input
/// DoS concern worth SipHash's cost on the per-event path). FxHash's multiply-rotate.
#[derive(Default, Clone, Copy)]
pub(crate) struct FxBuild;

pub(crate) struct Fx(u64);

impl std::hash::BuildHasher for FxBuild {
    type Hasher = Fx;
    fn build_hasher(&self) -> Fx {
        Fx(0)
    }
}

impl std::hash::Hasher for Fx {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(b)).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ b as u64).wrapping_mul(K);
        }
    }
}

/// When the fault recorded by `ev` was done: `data.ended_ns` of a `fault` event (its `ts_ns` is
/// the apply's start), else the event's time.
pub(crate) fn fault_done_ns(ev: &EventRef<'_>) -> i64 {
    if ev.source != "fault" {
        return ev.ts_ns;
    }
    ev.data
        .and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .and_then(|d| d.get("ended_ns").and_then(serde_json::Value::as_i64))
        .map_or(ev.ts_ns, |e| e.max(ev.ts_ns))
}

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
struct Timer {
    deadline: i64,
    armed_ns: i64,
    armed_seq: Option<u64>,
}

#[derive(Debug, Clone)]
struct PathEntry {
    from: u16,
    to: u16,
    ts: i64,
    /// handler index, or u16::MAX for `on timeout`
    handler: u16,
    /// Compact copy of the event that caused it (`None` for a timeout). The ring of entries is
    /// bounded (PATH_MAX) and its allocations are reused.
    event: Option<EventInfo>,
}

#[derive(Debug)]
struct Inst {
    state: u16,
    vars: Vec<Value>,
    caps: Vec<Value>,
    wins: Vec<WinState>,
    timer: Option<Timer>,
    gen: u32,
    done: Option<Outcome>,
    path: VecDeque<PathEntry>,
    entered_ns: i64,
    entered_seq: Option<u64>,
    key: Value,
    /// Its id in the state log (recording mode, see [`crate::StateLog`]).
    log_id: Option<usize>,
}

/// What a fired handler decided, computed while the context borrows the instance.
struct Effects {
    sets: Vec<(u16, Value)>,
    caps: Vec<(u16, Value)>,
    term: Decision,
    /// The value of `accept ... with V`.
    value: Option<Value>,
}

enum Decision {
    Stay,
    Goto(u16, Option<i64>),
    Decide(Verdict, Option<String>, Vec<GuardValue>),
}

pub(crate) struct Leaf {
    pub r: MonRef,
    insts: Vec<Inst>,
    keys: HashMap<Box<str>, u32, FxBuild>,
    heap: BinaryHeap<Reverse<(i64, u32, u32)>>,
    started: Option<i64>,
    keybuf: String,
    failed: Option<u32>,
    no_key: Value,
    /// Recording mode: where every state change goes.
    pub(crate) log: Option<LogScope>,
}

impl Leaf {
    pub fn new(r: MonRef) -> Leaf {
        Leaf {
            r,
            insts: Vec::new(),
            keys: HashMap::default(),
            heap: BinaryHeap::new(),
            started: None,
            keybuf: String::new(),
            failed: None,
            no_key: Value::Null,
            log: None,
        }
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
        let empty: [Value; 0] = [];
        let mut vars = Vec::with_capacity(m.vars.len());
        let mut wins = Vec::with_capacity(m.windows.len());
        let timeout;
        {
            let mut ctx = Ctx {
                ev: None,
                json: &json,
                params: &self.r.params,
                vars: &empty,
                wins: &[],
                win_defs: &[],
                caps_saved: &empty,
                caps_now: Vec::new(),
                vars_now: Vec::new(),
                locals: Vec::new(),
                here: self.r.at.as_deref(),
                key: &key,
                trace: None,
            };
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
            done: None,
            path: VecDeque::new(),
            entered_ns: ts,
            entered_seq: seq,
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
        if let Some(d) = timeout {
            inst.timer = Some(Timer {
                deadline: ts.saturating_add(d),
                armed_ns: ts,
                armed_seq: seq,
            });
            self.heap.push(Reverse((ts.saturating_add(d), idx, 0)));
        }
        self.insts.push(inst);
        idx
    }

    /// Timers superseded by a state change stay in the heap until popped (lazy deletion);
    /// when they outnumber the instances (each has at most one live timer) they are dropped,
    /// so the heap stays bounded by live monitor state, not by how many timers were armed.
    fn compact_timers(&mut self) {
        if self.heap.len() > 2 * self.insts.len() + 64 {
            let insts = &self.insts;
            self.heap.retain(|Reverse((_, idx, gen))| {
                insts
                    .get(*idx as usize)
                    .is_some_and(|i| i.gen == *gen && i.timer.is_some() && i.done.is_none())
            });
        }
    }

    pub fn decided(&self) -> Option<&Outcome> {
        if self.m().per.is_none() {
            self.insts.first().and_then(|i| i.done.as_ref())
        } else {
            self.failed
                .and_then(|i| self.insts[i as usize].done.as_ref())
        }
    }

    /// Fires every timeout due strictly before `ts` (or at/before it when `inclusive`).
    pub fn advance_to(&mut self, ts: i64, inclusive: bool) {
        while let Some(&Reverse((dl, idx, gen))) = self.heap.peek() {
            if dl > ts || (!inclusive && dl == ts) {
                break;
            }
            self.heap.pop();
            if self.decided().is_some() {
                self.heap.clear();
                return;
            }
            let inst = &self.insts[idx as usize];
            if inst.gen != gen || inst.done.is_some() || inst.timer.is_none() {
                continue;
            }
            self.fire_timeout(idx, dl);
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
                sets: Vec::new(),
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

    /// Offers one event. `json` is the event's shared lazily parsed `data`.
    pub fn observe(&mut self, ev: &EventRef<'_>, json: &JsonCell) {
        if self.decided().is_some() {
            return;
        }
        if let Some(at) = &self.r.at {
            if ev.service != Some(&**at) {
                return;
            }
        }
        if let Some(srcs) = &self.r.machine.sources {
            if !srcs.iter().any(|s| **s == *ev.source) {
                return;
            }
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
        // the machine is borrowed field by field, not cloned, on the per-event path
        let m: &Machine = &self.r.machine;
        // windows
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
        // handlers: a specialised pattern rejects the event without building a context
        let inst = &self.insts[idx as usize];
        if ev.ts_ns < inst.entered_ns {
            // the state has not opened yet (it opens when the fault that entered it is done)
            return;
        }
        let st = &m.states[inst.state as usize];
        let mut ctx: Option<Ctx<'_>> = None;
        let mut fired = None;
        for (hi, h) in st.handlers.iter().enumerate() {
            let hit_fast = match &h.pat.fast {
                Some(f) => {
                    if !source_kind_match(&h.pat, ev) || !f.holds(ev, json) {
                        continue;
                    }
                    true
                }
                None => false,
            };
            let c = ctx.get_or_insert_with(|| inst_ctx(&self.r, m, inst, Some(*ev), json, None));
            c.caps_now.iter_mut().for_each(|c| *c = None);
            if !hit_fast && !c.matches(&h.pat) {
                continue;
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
            fired = Some((hi as u16, eff, text));
            break;
        }
        drop(ctx);
        if let Some((hi, eff, text)) = fired {
            let timer = self.insts[idx as usize].timer;
            self.apply(idx, eff, ev.ts_ns, Some(ev), hi, text, timer);
        }
    }

    /// The instance of the event's `per` key, created on first sight; `None` when the key is
    /// null.
    fn key_inst(&mut self, ev: &EventRef<'_>, json: &JsonCell) -> Option<u32> {
        let key = {
            let Some(kx) = &self.r.machine.per else {
                return Some(0);
            };
            let mut ctx = Ctx {
                ev: Some(*ev),
                json,
                params: &self.r.params,
                vars: &[],
                wins: &[],
                win_defs: &[],
                caps_saved: &[],
                caps_now: Vec::new(),
                vars_now: Vec::new(),
                locals: Vec::new(),
                here: self.r.at.as_deref(),
                key: &self.no_key,
                trace: None,
            };
            let k = ctx.eval(kx);
            self.keybuf.clear();
            match &k {
                V::Null => return None,
                V::Str(s) => self.keybuf.push_str(s),
                V::S(s) => self.keybuf.push_str(s),
                V::Int(i) => push_int(&mut self.keybuf, *i),
                other => self.keybuf.push_str(&other.to_value().to_string()),
            }
            // one lookup for a known key; the owned key is built only for a new instance
            if let Some(i) = self.keys.get(self.keybuf.as_str()) {
                return Some(*i);
            }
            k.to_value()
        };
        let i = self.new_inst(key, ev.ts_ns, Some(ev.seq));
        self.keys.insert(self.keybuf.clone().into_boxed_str(), i);
        Some(i)
    }

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
        let m = self.r.machine.clone();
        let inst = &mut self.insts[idx as usize];
        for (i, v) in eff.sets {
            inst.vars[i as usize] = v;
        }
        for (i, v) in eff.caps {
            inst.caps[i as usize] = v;
        }
        match eff.term {
            Decision::Stay => {}
            Decision::Goto(to, t) => {
                let mut reuse = None;
                if inst.path.len() == PATH_MAX {
                    reuse = inst.path.pop_front().and_then(|p| p.event);
                }
                let event = ev.map(|e| match reuse {
                    Some(mut info) => {
                        info.refill(e);
                        info
                    }
                    None => EventInfo::of(e),
                });
                inst.path.push_back(PathEntry {
                    from: inst.state,
                    to,
                    ts: now,
                    handler,
                    event,
                });
                // a state that opens when the fault entering it is done starts then
                let opens = match ev {
                    Some(e) if m.states[to as usize].opens_when_fault_done => fault_done_ns(e),
                    _ => now,
                };
                inst.state = to;
                if let (Some(l), Some(id)) = (&self.log, inst.log_id) {
                    let name = &m.states[to as usize].name;
                    l.log.enter(id, name, now, ev.map(|e| e.seq));
                }
                inst.gen = inst.gen.wrapping_add(1);
                inst.entered_ns = opens;
                inst.entered_seq = ev.map(|e| e.seq);
                inst.timer = t.map(|d| Timer {
                    deadline: opens.saturating_add(d),
                    armed_ns: opens,
                    armed_seq: ev.map(|e| e.seq),
                });
                if let Some(tm) = inst.timer {
                    self.heap.push(Reverse((tm.deadline, idx, inst.gen)));
                    self.compact_timers();
                }
            }
            Decision::Decide(verdict, msg, guard_values) => {
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
                let explanation = Explanation {
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
                    path: path_of(&m, &inst.path),
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
                };
                inst.timer = None;
                inst.gen = inst.gen.wrapping_add(1);
                if let (Some(l), Some(id)) = (&self.log, inst.log_id) {
                    l.log.decide(id, verdict, now, ev.map(|e| e.seq));
                }
                inst.done = Some(Outcome {
                    verdict,
                    at_ns: now,
                    at_seq: ev.map(|e| e.seq),
                    explanation,
                    value: if verdict == Verdict::Accept {
                        eff.value
                    } else {
                        None
                    },
                });
                if verdict == Verdict::Fail && m.per.is_some() && self.failed.is_none() {
                    self.failed = Some(idx);
                }
            }
        }
    }

    /// Ends the run: due timeouts fire, undecided instances take their `on end` verdict or are
    /// inconclusive. Returns the leaf's outcome.
    pub fn finish(&mut self, end_ns: i64) -> Outcome {
        if self.started.is_none() {
            self.start(end_ns);
        }
        self.advance_to(end_ns, true);
        if let Some(o) = self.decided() {
            return o.clone();
        }
        let m = self.r.machine.clone();
        for idx in 0..self.insts.len() {
            if self.insts[idx].done.is_some() {
                continue;
            }
            self.end_inst(idx as u32, end_ns);
        }
        if self.insts.is_empty() {
            // no key ever seen: judge a fresh instance at the end
            let idx = self.new_inst(Value::Null, end_ns, None);
            self.end_inst(idx, end_ns);
            let mut o = self.insts[idx as usize]
                .done
                .clone()
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
        // combine instances: fail > inconclusive > accept; the explanation of the first worst
        let mut best: Option<&Outcome> = None;
        let mut n_acc = 0;
        for i in &self.insts {
            if let Some(o) = &i.done {
                if o.verdict == Verdict::Accept {
                    n_acc += 1;
                }
                if best.is_none_or(|b| o.verdict > b.verdict) {
                    best = Some(o);
                }
            }
        }
        let mut o = best
            .cloned()
            .unwrap_or_else(|| inconclusive(&self.r.display, "no instance", end_ns));
        if m.per.is_some() && o.verdict == Verdict::Accept {
            o.explanation.reason = format!("all {n_acc} instance(s) accepted");
            o.explanation.key = None;
        }
        o
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
                inst.done = Some(o);
            }
        }
    }

    /// The outcome of an instance that has not decided at `at_ns`: inconclusive, with its state,
    /// its armed timeout and the handlers it was waiting for.
    fn pending_outcome(&self, idx: u32, at_ns: i64, reason: String) -> Outcome {
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
        if let Some(o) = self.decided() {
            return o.clone();
        }
        match (0..self.insts.len()).find(|i| self.insts[*i].done.is_none()) {
            Some(i) => self.pending_outcome(i as u32, at_ns, why.to_string()),
            None => inconclusive(&self.r.display, why, at_ns),
        }
    }
}

/// Appends the decimal form of `i` (as `{i}` formats it) without the formatting machinery.
fn push_int(buf: &mut String, i: i64) {
    let mut digits = [0u8; 20];
    let mut n = i.unsigned_abs();
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if i < 0 {
        buf.push('-');
    }
    for &d in &digits[at..] {
        buf.push(d as char);
    }
}

fn show_key(v: &Value) -> String {
    match v {
        Value::Str(s) => s.to_string(),
        other => other.to_string(),
    }
}

fn inconclusive(display: &str, why: &str, end_ns: i64) -> Outcome {
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

/// Renders trace time (UTC, RFC 3339 with nanoseconds).
pub fn fmt_ts(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let nanos = ns.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // civil from days (Howard Hinnant)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if mo <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:09}Z",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60,
        nanos
    )
}

fn path_of(m: &Machine, p: &VecDeque<PathEntry>) -> Vec<Transition> {
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

/// The pattern's source and kind, checked before its guard.
#[inline]
fn source_kind_match(p: &PatternC, ev: &EventRef<'_>) -> bool {
    p.source.as_deref().is_none_or(|s| s == ev.source)
        && p.kind.as_deref().is_none_or(|k| k == ev.kind)
}

fn effects<'a>(ctx: &mut Ctx<'a>, m: &'a Machine, acts: &'a ActionsC, _now: i64) -> Effects {
    // Sequential: each right-hand side sees the assignments before it, the message all of them.
    let mut sets: Vec<(u16, Value)> = Vec::with_capacity(acts.sets.len());
    for (i, key, e) in &acts.sets {
        let mut v = ctx.eval(e);
        if let Some(k) = key {
            // `set m[k] = v`: the map in `m` (a new one when it holds no map) with key `k` set
            // to `v`, or removed when `v` is null; a null key changes nothing
            let k = ctx.eval(k);
            let cur = match ctx.vars_now.get(*i as usize) {
                Some(Some(c)) => c.clone(),
                _ => ctx.vars.get(*i as usize).map(V::of).unwrap_or(V::Null),
            };
            let mut map = cur.as_map().cloned().unwrap_or_default();
            let k = match &k {
                V::Null => None,
                other => Some(match other.as_str() {
                    Some(s) => s.to_string(),
                    None => other.show(),
                }),
            };
            if let Some(k) = k {
                if v.is_null() {
                    map.remove(&k);
                } else {
                    map.insert(k, v.to_value().to_json());
                }
            }
            v = V::M(Rc::new(J::Object(map)));
        }
        sets.push((*i, v.to_value()));
        let slot = *i as usize;
        if ctx.vars_now.len() <= slot {
            ctx.vars_now.resize(slot + 1, None);
        }
        ctx.vars_now[slot] = Some(v);
    }
    let mut caps = Vec::new();
    for (i, c) in ctx.caps_now.iter().enumerate() {
        if let Some(v) = c {
            caps.push((i as u16, v.to_value()));
        }
    }
    let msg = |ctx: &mut Ctx<'a>, e: &'a Option<X>| {
        e.as_ref().map(|x| match ctx.eval(x) {
            V::Str(s) => s.to_string(),
            V::S(s) => s.to_string(),
            other => other.show(),
        })
    };
    let term = match &acts.term {
        TermC::Stay => Decision::Stay,
        TermC::Goto(to, t) => {
            let d = match t {
                Some(t) => dur(ctx.eval(t)),
                None => m.states[*to as usize]
                    .timeout
                    .as_ref()
                    .and_then(|t| dur(ctx.eval(t))),
            };
            Decision::Goto(*to, d)
        }
        TermC::Accept(x, _) => Decision::Decide(Verdict::Accept, msg(ctx, x), Vec::new()),
        TermC::Fail(x) => Decision::Decide(Verdict::Fail, msg(ctx, x), Vec::new()),
        TermC::Inconclusive(x) => Decision::Decide(Verdict::Inconclusive, msg(ctx, x), Vec::new()),
    };
    let value = match &acts.term {
        TermC::Accept(_, Some(w)) => Some(ctx.eval(w).to_value()),
        _ => None,
    };
    Effects {
        sets,
        caps,
        term,
        value,
    }
}

fn dur(v: V<'_>) -> Option<i64> {
    match v {
        V::Int(d) => Some(d.max(0)),
        V::Float(f) => Some(f.max(0.0) as i64),
        _ => None,
    }
}

// ---------------- composition ----------------

pub(crate) enum Node {
    Leaf(Box<Leaf>),
    And(Box<Node>, Box<Node>, Option<Outcome>),
    Or(Box<Node>, Box<Node>, Option<Outcome>),
    Not(Box<Node>, Option<Outcome>),
}

fn earliest(a: &Outcome, b: &Outcome) -> bool {
    (a.at_ns, a.at_seq.unwrap_or(u64::MAX)) <= (b.at_ns, b.at_seq.unwrap_or(u64::MAX))
}

impl Node {
    pub fn build(e: &MonExpr) -> Node {
        Node::build_logged(e, None)
    }

    /// [`Node::build`], its leaves reporting every state change to `log` (recording mode).
    pub fn build_logged(e: &MonExpr, log: Option<&LogScope>) -> Node {
        let b = |x: &MonExpr| Box::new(Node::build_logged(x, log));
        match e {
            MonExpr::Ref(r) => {
                let mut l = Leaf::new(r.clone());
                l.log = log.cloned();
                Node::Leaf(Box::new(l))
            }
            MonExpr::And(x, y) => Node::And(b(x), b(y), None),
            MonExpr::Or(x, y) => Node::Or(b(x), b(y), None),
            MonExpr::Not(x) => Node::Not(b(x), None),
        }
    }

    pub fn decided(&self) -> Option<&Outcome> {
        match self {
            Node::Leaf(l) => l.decided(),
            Node::And(_, _, o) | Node::Or(_, _, o) | Node::Not(_, o) => o.as_ref(),
        }
    }

    pub fn start(&mut self, ts: i64) {
        match self {
            Node::Leaf(l) => l.start(ts),
            Node::And(a, b, _) | Node::Or(a, b, _) => {
                a.start(ts);
                b.start(ts);
            }
            Node::Not(a, _) => a.start(ts),
        }
    }

    pub fn observe(&mut self, ev: &EventRef<'_>, json: &JsonCell) {
        if self.decided().is_some() {
            return;
        }
        match self {
            Node::Leaf(l) => l.observe(ev, json),
            Node::And(a, b, _) | Node::Or(a, b, _) => {
                a.observe(ev, json);
                b.observe(ev, json);
            }
            Node::Not(a, _) => a.observe(ev, json),
        }
        self.update();
    }

    pub fn advance_to(&mut self, ts: i64, inclusive: bool) {
        if self.decided().is_some() {
            return;
        }
        match self {
            Node::Leaf(l) => l.advance_to(ts, inclusive),
            Node::And(a, b, _) | Node::Or(a, b, _) => {
                a.advance_to(ts, inclusive);
                b.advance_to(ts, inclusive);
            }
            Node::Not(a, _) => a.advance_to(ts, inclusive),
        }
        self.update();
    }

    fn update(&mut self) {
        match self {
            Node::Leaf(_) => {}
            Node::And(a, b, o) if o.is_none() => {
                *o = combine_early(true, a.decided().cloned(), b.decided().cloned())
            }
            Node::Or(a, b, o) if o.is_none() => {
                *o = combine_early(false, a.decided().cloned(), b.decided().cloned())
            }
            Node::Not(a, o) if o.is_none() => {
                if let Some(x) = a.decided() {
                    *o = Some(negate(x));
                }
            }
            _ => {}
        }
    }

    /// Final outcome and the result tree.
    pub fn finish(&mut self, end_ns: i64, name: &str) -> MonitorResult {
        match self {
            Node::Leaf(l) => {
                let o = l.finish(end_ns);
                MonitorResult {
                    name: name.to_string(),
                    verdict: o.verdict,
                    explanation: Some(o.explanation),
                    children: vec![],
                }
            }
            Node::And(a, b, o) => finish_bin(true, a, b, o, end_ns, name),
            Node::Or(a, b, o) => finish_bin(false, a, b, o, end_ns, name),
            Node::Not(a, o) => {
                let ra = a.finish(end_ns, &a.name());
                let verdict = o.as_ref().map(|x| x.verdict).unwrap_or(ra.verdict.negate());
                let expl = ra.primary_explanation().map(|e| Explanation {
                    reason: format!("negated: {} ({})", e.reason, ra.verdict),
                    ..e.clone()
                });
                MonitorResult {
                    name: name.to_string(),
                    verdict,
                    explanation: expl,
                    children: vec![ra],
                }
            }
        }
    }

    /// The result of a node that had not decided at `at_ns`, when its parent decided (see
    /// [`Leaf::frozen`]); decided descendants keep their verdicts.
    fn frozen(&mut self, at_ns: i64, why: &str) -> MonitorResult {
        let name = self.name();
        match self {
            Node::Leaf(l) => {
                let o = l.frozen(at_ns, why);
                MonitorResult {
                    name,
                    verdict: o.verdict,
                    explanation: Some(o.explanation),
                    children: vec![],
                }
            }
            Node::And(a, b, _) | Node::Or(a, b, _) => MonitorResult {
                explanation: Some(Explanation {
                    reason: why.to_string(),
                    monitor: name.clone(),
                    decided_ns: Some(at_ns),
                    ..Default::default()
                }),
                name,
                verdict: Verdict::Inconclusive,
                children: vec![a.frozen(at_ns, why), b.frozen(at_ns, why)],
            },
            Node::Not(a, _) => MonitorResult {
                name,
                verdict: Verdict::Inconclusive,
                explanation: None,
                children: vec![a.frozen(at_ns, why)],
            },
        }
    }

    fn name(&self) -> String {
        match self {
            Node::Leaf(l) => l.r.display.clone(),
            Node::And(a, b, _) => format!("{} and {}", a.name(), b.name()),
            Node::Or(a, b, _) => format!("({} or {})", a.name(), b.name()),
            Node::Not(a, _) => format!("not {}", a.name()),
        }
    }
}

fn finish_bin(
    is_and: bool,
    a: &mut Node,
    b: &mut Node,
    o: &Option<Outcome>,
    end_ns: i64,
    name: &str,
) -> MonitorResult {
    // Decided early: a child that had not decided then is shown as it stood at the decision,
    // not run on to the end of the trace.
    let child = |c: &mut Node| match o {
        Some(x) if c.decided().is_none() => {
            let why = format!(
                "`{}` had not decided when `{name}` was decided at {}",
                c.name(),
                fmt_ts(x.at_ns)
            );
            c.frozen(x.at_ns, &why)
        }
        _ => c.finish(end_ns, &c.name()),
    };
    let ra = child(a);
    let rb = child(b);
    let verdict = match o {
        Some(x) => x.verdict,
        None if is_and => ra.verdict.max(rb.verdict),
        None => or_verdict(ra.verdict, rb.verdict),
    };
    // Every part of an accepted `and` (a failed `or`) counts: its explanation gives each part's
    // reason, not only the first one's.
    let all_count = if is_and {
        Verdict::Accept
    } else {
        Verdict::Fail
    };
    let explanation = if verdict == all_count && ra.verdict == verdict && rb.verdict == verdict {
        let mut parts = Vec::new();
        bin_parts(is_and, &ra, &mut parts);
        bin_parts(is_and, &rb, &mut parts);
        // the details (deciding event, path) of the part that decided last
        let last = [&ra, &rb]
            .into_iter()
            .filter_map(|r| r.primary_explanation())
            .max_by_key(|e| e.decided_ns.unwrap_or(i64::MIN))
            .cloned();
        last.map(|mut e| {
            e.reason = parts.join("; ");
            let mut services: Vec<String> = [&ra, &rb]
                .into_iter()
                .flat_map(|r| r.primary_explanation())
                .flat_map(|x| x.services.iter().cloned())
                .collect();
            services.sort();
            services.dedup();
            e.services = services;
            e
        })
    } else {
        None
    };
    MonitorResult {
        name: name.to_string(),
        verdict,
        explanation,
        children: vec![ra, rb],
    }
}

/// `` `part`: reason `` of every operand of a chain of `and`s (`or`s), flattened.
fn bin_parts(is_and: bool, r: &MonitorResult, out: &mut Vec<String>) {
    // the same operator: its name is how `Node::name` writes that operator over the children
    let same_op = match r.children.as_slice() {
        [a, b] if is_and => r.name == format!("{} and {}", a.name, b.name),
        [a, b] => r.name == format!("({} or {})", a.name, b.name),
        _ => false,
    };
    if same_op {
        for c in &r.children {
            bin_parts(is_and, c, out);
        }
        return;
    }
    let reason = r
        .primary_explanation()
        .map(|e| e.reason.clone())
        .unwrap_or_default();
    out.push(format!("`{}`: {reason}", r.name));
}

fn or_verdict(a: Verdict, b: Verdict) -> Verdict {
    use Verdict::*;
    match (a, b) {
        (Accept, _) | (_, Accept) => Accept,
        (Inconclusive, _) | (_, Inconclusive) => Inconclusive,
        _ => Fail,
    }
}

fn combine_early(is_and: bool, a: Option<Outcome>, b: Option<Outcome>) -> Option<Outcome> {
    let (short, full) = if is_and {
        (Verdict::Fail, Verdict::Accept)
    } else {
        (Verdict::Accept, Verdict::Fail)
    };
    match (a, b) {
        (Some(x), Some(y)) if x.verdict == short && y.verdict == short => {
            Some(if earliest(&x, &y) { x } else { y })
        }
        (Some(x), _) if x.verdict == short => Some(x),
        (_, Some(y)) if y.verdict == short => Some(y),
        (Some(x), Some(y)) if x.verdict == full && y.verdict == full => {
            Some(if earliest(&x, &y) { y } else { x })
        }
        _ => None,
    }
}

fn negate(o: &Outcome) -> Outcome {
    let mut n = o.clone();
    n.value = None;
    n.verdict = o.verdict.negate();
    n.explanation.reason = format!("negated: {} ({})", o.explanation.reason, o.verdict);
    n
}

#[cfg(test)]
mod tests {
    #[test]
    fn per_keys_format_integers_as_display_does() {
        for i in [0, 7, -7, 10, 99, 100, -100, 123_456_789, i64::MAX, i64::MIN] {
            let mut b = String::from("x");
            super::push_int(&mut b, i);
            assert_eq!(b, format!("x{i}"));
        }
    }
}
