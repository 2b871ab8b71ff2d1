//! What a fired handler decides ([`Effects`]): its `set` assignments (sequential: each
//! right-hand side sees the ones before it), the captures to keep, and its terminal action (stay,
//! go to a state with a timeout, or decide), computed while the context borrows the instance.
//!
//! A handler whose guard is specialised and whose actions are plain (constants, variables and
//! operators over two of those, a constant timeout) has a [`Plain`] plan instead, worked out
//! once per machine and applied from the instance's variables without a context.

use super::ctx::Ctx;
use crate::ast::BinOp;
use crate::ir::{ActionsC, Ex, Machine, TermC, X};
use crate::ops::{binop, int_arith};
use crate::report::{GuardValue, Verdict};
use crate::value::{Value, V};
use serde_json::Value as J;
use std::rc::Rc;

/// What a fired handler decided, computed while the context borrows the instance.
pub(super) struct Effects {
    pub(super) sets: Sets,
    pub(super) caps: Vec<(u16, Value)>,
    pub(super) term: Decision,
    /// The value of `accept ... with V`.
    pub(super) value: Option<Value>,
}

/// The `set` assignments of a fired handler, (variable, value) in order. The first is kept
/// inline: a handler usually sets one variable, and the per-event path then allocates nothing.
#[derive(Default)]
pub(super) struct Sets {
    first: Option<(u16, Value)>,
    rest: Vec<(u16, Value)>,
}

impl Sets {
    fn push(&mut self, s: (u16, Value)) {
        if self.first.is_none() {
            self.first = Some(s);
        } else {
            self.rest.push(s);
        }
    }
}

impl IntoIterator for Sets {
    type Item = (u16, Value);
    type IntoIter =
        std::iter::Chain<std::option::IntoIter<(u16, Value)>, std::vec::IntoIter<(u16, Value)>>;
    fn into_iter(self) -> Self::IntoIter {
        self.first.into_iter().chain(self.rest)
    }
}

/// The terminal action of a fired handler.
pub(super) enum Decision {
    Stay,
    Goto(u16, Option<i64>),
    Decide(Verdict, Option<String>, Vec<GuardValue>),
}

pub(super) fn effects<'a>(
    ctx: &mut Ctx<'a>,
    m: &'a Machine,
    acts: &'a ActionsC,
    _now: i64,
) -> Effects {
    // Sequential: each right-hand side sees the assignments before it, the message all of them.
    let mut sets = Sets::default();
    // after the last assignment of a handler that stays, nothing reads the variables
    let stays = matches!(acts.term, TermC::Stay);
    for (n, (i, key, e)) in acts.sets.iter().enumerate() {
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
        if stays && n + 1 == acts.sets.len() {
            break;
        }
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

/// A handler's `set`s and terminal action when they need no evaluation context, worked out
/// once per machine: it stays or goes to a state with a constant (or no) timeout, and each of
/// its `set`s (none, or any number without a key) assigns a constant, a variable, or a binary
/// operator other than `and`/`or` over two of those (`set hits = hits + 1`). Evaluated from the
/// instance's variables by the same operators and conversions as [`effects`]; only for a handler
/// whose pattern bound no capture (a specialised guard binds none).
#[derive(Debug)]
pub(super) struct Plain {
    sets: Vec<(u16, PlainX)>,
    term: PlainTerm,
}

#[derive(Debug)]
enum PlainX {
    Leaf(PlainLeaf),
    Bin(BinOp, PlainLeaf, PlainLeaf),
}

#[derive(Debug)]
enum PlainLeaf {
    Const(Value),
    Var(u16),
}

#[derive(Debug, Clone, Copy)]
enum PlainTerm {
    Stay,
    Goto(u16, Option<i64>),
}

impl PlainLeaf {
    fn of(x: &X) -> Option<PlainLeaf> {
        match &x.k {
            Ex::Const(c) => Some(PlainLeaf::Const(c.clone())),
            Ex::Var(j) => Some(PlainLeaf::Var(*j)),
            _ => None,
        }
    }

    fn get<'a>(&'a self, vars: &'a [Value]) -> V<'a> {
        match self {
            PlainLeaf::Const(c) => V::of(c),
            PlainLeaf::Var(j) => vars.get(*j as usize).map(V::of).unwrap_or(V::Null),
        }
    }
}

impl Plain {
    /// The plan of `acts` in machine `m`, when they have the shape above.
    pub(super) fn of(m: &Machine, acts: &ActionsC) -> Option<Plain> {
        let konst = |x: &X| match &x.k {
            Ex::Const(c) => dur(V::of(c)),
            _ => None,
        };
        let term = match &acts.term {
            TermC::Stay => PlainTerm::Stay,
            TermC::Goto(to, t) => {
                let d = match t {
                    Some(t) => Some(konst(t)?),
                    None => match &m.states.get(*to as usize)?.timeout {
                        Some(t) => Some(konst(t)?),
                        None => None,
                    },
                };
                PlainTerm::Goto(*to, d)
            }
            _ => return None,
        };
        let mut sets = Vec::with_capacity(acts.sets.len());
        for (i, key, e) in &acts.sets {
            if key.is_some() {
                return None;
            }
            let x = match &e.k {
                Ex::Bin(op, a, b) if !matches!(op, BinOp::And | BinOp::Or) => {
                    PlainX::Bin(*op, PlainLeaf::of(a)?, PlainLeaf::of(b)?)
                }
                _ => PlainX::Leaf(PlainLeaf::of(e)?),
            };
            sets.push((*i, x));
        }
        Some(Plain { sets, term })
    }

    /// The value the `set` of `x` assigns, the variables as the `set`s before it left them.
    fn value(x: &PlainX, vars: &[Value]) -> Value {
        match x {
            PlainX::Leaf(l) => l.get(vars).to_value(),
            PlainX::Bin(op, a, b) => {
                let (l, r) = (a.get(vars), b.get(vars));
                if let (V::Int(x), V::Int(y)) = (&l, &r) {
                    if let Some(v) = int_value(*op, *x, *y) {
                        return v;
                    }
                }
                binop(*op, &l, &r).to_value()
            }
        }
    }

    /// Where the handler goes, with the timeout it arms: `None` when it stays.
    pub(super) fn goto(&self) -> Option<(u16, Option<i64>)> {
        match self.term {
            PlainTerm::Stay => None,
            PlainTerm::Goto(to, d) => Some((to, d)),
        }
    }

    /// Whether the handler `set`s anything ([`Plain::apply_in_place`]).
    #[inline]
    pub(super) fn has_sets(&self) -> bool {
        !self.sets.is_empty()
    }

    /// Applies the `set`s in place, in order (each sees the ones before it): what the handler
    /// changes before it stays or goes on ([`Plain::goto`]).
    pub(super) fn apply_in_place(&self, vars: &mut [Value]) {
        for (i, x) in &self.sets {
            // a counter (`set n = n + 1`): integer arithmetic on the variable where it is
            if let PlainX::Bin(op, PlainLeaf::Var(a), PlainLeaf::Const(Value::Int(c))) = x {
                if *a == *i {
                    if let Some(slot) = vars.get_mut(*i as usize) {
                        if let Value::Int(cur) = slot {
                            if let Some(v) = int_value(*op, *cur, *c) {
                                *slot = v;
                                continue;
                            }
                        }
                    }
                }
            }
            let v = Plain::value(x, vars);
            if let Some(slot) = vars.get_mut(*i as usize) {
                *slot = v;
            }
        }
    }
}

/// An integer operation's result by `binop`'s own rules (overflow and division by zero give
/// null), without its dispatch or the general conversion; `None` when the result is not an
/// integer or null (`/` divides as floats).
fn int_value(op: BinOp, x: i64, y: i64) -> Option<Value> {
    match int_arith(op, x, y) {
        Some(V::Int(i)) => Some(Value::Int(i)),
        Some(V::Null) => Some(Value::Null),
        _ => None,
    }
}

fn dur(v: V<'_>) -> Option<i64> {
    match v {
        V::Int(d) => Some(d.max(0)),
        V::Float(f) => Some(f.max(0.0) as i64),
        _ => None,
    }
}
