//! The generic expression evaluator: [`Ctx`] holds what an expression can read (the event, its
//! lazily parsed `data`, the instance's parameters, variables, windows and captures) and
//! evaluates compiled expressions, built-in calls and patterns to borrowed values. It is the
//! reference the specialised guards (`crate::fast`) must agree with, and the one that records
//! guard values for explanations.

use super::window::{win_value, WinState};
use super::TRACE_MAX;
use crate::ast::{BinOp, Quant};
use crate::ir::*;
use crate::ops::{binop, data_of, JsonCell};
use crate::re::Re;
use crate::report::GuardValue;
use crate::value::{fmt_dur, fmt_ts, Value, V};
use serde_json::Value as J;
use std::rc::Rc;
use trace::EventRef;

pub(crate) struct Ctx<'a> {
    pub(super) ev: Option<EventRef<'a>>,
    pub(super) json: &'a JsonCell,
    pub(super) params: &'a [Value],
    pub(super) vars: &'a [Value],
    pub(super) wins: &'a [WinState],
    pub(super) win_defs: &'a [WindowC],
    pub(super) caps_saved: &'a [Value],
    pub(super) caps_now: Vec<Option<V<'a>>>,
    /// Values assigned by the `set`s of the handler being applied, read before `vars`: the
    /// assignments are sequential (each right-hand side and the terminal action's message see
    /// the ones before it).
    pub(super) vars_now: Vec<Option<V<'a>>>,
    pub(super) locals: Vec<V<'a>>,
    pub(super) here: Option<&'a str>,
    pub(super) key: &'a Value,
    pub(super) trace: Option<Vec<GuardValue>>,
}

fn s<'a>(o: Option<&'a str>) -> V<'a> {
    o.map(V::Str).unwrap_or(V::Null)
}

impl<'a> Ctx<'a> {
    /// A context without instance state (no variables, windows or captures): for `per` keys and
    /// the initial values of a new instance, on `ev` when there is one.
    pub(super) fn bare(
        ev: Option<EventRef<'a>>,
        json: &'a JsonCell,
        params: &'a [Value],
        here: Option<&'a str>,
        key: &'a Value,
    ) -> Ctx<'a> {
        Ctx {
            ev,
            json,
            params,
            vars: &[],
            wins: &[],
            win_defs: &[],
            caps_saved: &[],
            caps_now: Vec::new(),
            vars_now: Vec::new(),
            locals: Vec::new(),
            here,
            key,
            trace: None,
        }
    }

    fn data(&self) -> V<'a> {
        match &self.ev {
            Some(ev) => data_of(ev, self.json),
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
            } => self.regex_match(*negated, lhs, re, caps),
            Ex::Quant {
                q,
                local,
                list,
                body,
            } => self.quant(*q, *local, list, body),
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

    /// `lhs ~ re` (or `!~` when `negated`): captures named in `caps` (group, slot) are set.
    fn regex_match(
        &mut self,
        negated: bool,
        lhs: &'a X,
        re: &'a Re,
        caps: &'a [(usize, u16)],
    ) -> V<'a> {
        let l = self.eval(lhs);
        let r = match &l {
            V::Str(hay) => {
                if caps.is_empty() {
                    re.is_match(hay)
                } else {
                    let hay: &'a str = hay;
                    re.captures(hay, caps, |slot, r| self.set_cap(slot, V::Str(&hay[r])))
                }
            }
            V::S(hay) => re.captures(hay, caps, |slot, r| {
                self.set_cap(slot, V::S(Rc::from(&hay[r])))
            }),
            _ => return V::Bool(negated),
        };
        V::Bool(r != negated)
    }

    /// `all`/`any`/`count`/`filter` `local in list: body`.
    fn quant(&mut self, q: Quant, local: u16, list: &'a X, body: &'a X) -> V<'a> {
        let l = self.eval(list);
        let Some(n) = l.list_len() else {
            return if matches!(q, Quant::Count | Quant::Filter) {
                V::Null
            } else {
                V::Bool(false)
            };
        };
        let li = local as usize;
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
            Builtin::Int | Builtin::Float | Builtin::Str | Builtin::StrDur | Builtin::Bool => {
                convert(b, a0)
            }
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

    pub(super) fn matches(&mut self, p: &'a PatternC) -> bool {
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
            return f.holds(&ev, self.json, self.vars);
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

/// The conversions `int`, `float`, `str` (`StrDur`: of a duration) and `bool`.
fn convert(b: Builtin, a0: V<'_>) -> V<'_> {
    match b {
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
            V::Int(ns) => V::S(Rc::from(fmt_dur(*ns).as_str())),
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
        _ => V::Null,
    }
}

/// The generic evaluator's verdict on a pattern (its `fast` form not used when `None`) for an
/// instance whose variables are `vars`.
#[cfg(test)]
pub(crate) fn matches_generic(
    p: &PatternC,
    ev: &EventRef<'_>,
    json: &JsonCell,
    vars: &[Value],
) -> bool {
    let key = Value::Null;
    let mut c = Ctx::bare(Some(*ev), json, &[], None, &key);
    c.vars = vars;
    c.matches(p)
}
