//! Specialised guards: [`Fast`] nodes for the common guard shapes (an event field, a
//! `data.path` or a monitor variable compared with a constant by `==`, `!=`, `<`, `<=`, `>`,
//! `>=`, `in`, `not in`, or matched by a regular expression without captures, combined by `and`,
//! `or`, `not`) that read the event directly instead of walking the generic expression tree, and
//! their evaluation; likewise [`FastKey`] for `per` keys of those shapes
//! (or one of them `% N`). The compiler builds them (`compile::specialise`, with
//! constants folded); a guard of any other shape keeps the generic evaluator (`eval`), which
//! stays the reference: explanations re-run it with tracing, and the tests of
//! `compile::specialise` check that both agree on random guards and events.

use crate::ast::BinOp;
use crate::ops::{binop, data_of, int_arith, order_holds, JsonCell};
use crate::re::Re;
use crate::value::{Value, V};
use trace::EventRef;

/// A guard's three outcomes as the generic evaluator combines them: `and`/`or`/`not` over
/// comparisons only ever see `true`, `false` or `null`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tri {
    T,
    F,
    N,
}

impl Tri {
    pub(crate) fn of_bool(b: bool) -> Tri {
        if b {
            Tri::T
        } else {
            Tri::F
        }
    }
}

/// An optional text field of the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StrField {
    Source,
    Service,
    Container,
    Kind,
    Message,
}

impl StrField {
    #[inline]
    fn get<'a>(self, ev: &EventRef<'a>) -> Option<&'a str> {
        match self {
            StrField::Source => Some(ev.source),
            StrField::Service => ev.service,
            StrField::Container => ev.container,
            StrField::Kind => Some(ev.kind),
            StrField::Message => ev.message,
        }
    }
}

/// What a generic comparison reads from the event.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Operand {
    Str(StrField),
    Ts,
    Seq,
    /// `data.a.b` / `data["a"]`: the path of object fields under `data` (empty: `data` itself).
    Data(Box<[Box<str>]>),
    /// A variable of the monitor instance (guards only; a `per` key has no instance yet).
    Var(u16),
}

impl Operand {
    // in line wherever a guard or key reads an operand: a call per event was more than reading
    // `seq` or `ts_ns` costs
    #[inline(always)]
    fn get<'a>(&self, ev: &EventRef<'a>, json: &'a JsonCell, vars: &'a [Value]) -> V<'a> {
        match self {
            Operand::Var(i) => vars.get(*i as usize).map(V::of).unwrap_or(V::Null),
            Operand::Str(f) => f.get(ev).map(V::Str).unwrap_or(V::Null),
            Operand::Ts => V::Int(ev.ts_ns),
            Operand::Seq => V::Int(ev.seq as i64),
            Operand::Data(path) => {
                let mut v = data_of(ev, json);
                for f in path.iter() {
                    if v.is_null() {
                        break;
                    }
                    v = v.field(f);
                }
                v
            }
        }
    }
}

/// A specialised `per` key: an event field or `data` path, or one of them `% N` (`seq % 100`),
/// read without building an evaluation context; the value is the generic evaluator's.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum FastKey {
    Operand(Operand),
    Mod(Operand, i64),
}

impl FastKey {
    #[inline]
    pub(crate) fn get<'a>(&self, ev: &EventRef<'a>, json: &'a JsonCell) -> V<'a> {
        match self {
            FastKey::Operand(o) => o.get(ev, json, &[]),
            FastKey::Mod(o, n) => {
                match o.get(ev, json, &[]) {
                    // an integer by `binop`'s own rules, without its dispatch
                    V::Int(x) => int_arith(BinOp::Rem, x, *n)
                        .unwrap_or_else(|| binop(BinOp::Rem, &V::Int(x), &V::Int(*n))),
                    other => binop(BinOp::Rem, &other, &V::Int(*n)),
                }
            }
        }
    }
}

/// A specialised guard.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Fast {
    /// A folded constant.
    Const(Tri),
    /// `FIELD == "text"` (or `!=` when `ne`).
    StrEq {
        f: StrField,
        val: Box<str>,
        ne: bool,
    },
    /// `FIELD in ["a", "b"]` (or `not in` when `negated`), every item a string.
    StrIn {
        f: StrField,
        vals: Box<[Box<str>]>,
        negated: bool,
    },
    /// `ts`/`seq` compared with an integer (`seq` when `seq`), op in `== != < <= > >=`.
    IntCmp {
        seq: bool,
        op: BinOp,
        val: i64,
    },
    /// Any other comparison of an operand with a constant, with the generic comparison rules;
    /// `swapped`: the constant is on the left.
    Cmp {
        lhs: Operand,
        op: BinOp,
        val: Value,
        swapped: bool,
    },
    /// `OPERAND ~ re` (`!~` when `negated`) for a regular expression without named captures:
    /// a text operand is searched, anything else is no match.
    Regex {
        lhs: Operand,
        re: Re,
        negated: bool,
    },
    And(Box<Fast>, Box<Fast>),
    Or(Box<Fast>, Box<Fast>),
    Not(Box<Fast>),
}

/// Three-valued `not` (null stays null).
pub(crate) fn not(t: Tri) -> Tri {
    match t {
        Tri::T => Tri::F,
        Tri::F => Tri::T,
        Tri::N => Tri::N,
    }
}

impl Fast {
    /// Does the guard hold on this event, for an instance whose variables are `vars` (the
    /// generic evaluator's `truthy`)?
    #[inline]
    pub(crate) fn holds(&self, ev: &EventRef<'_>, json: &JsonCell, vars: &[Value]) -> bool {
        // a pattern without a guard (`on event`, `on log`) has a constant one: no call
        if let Fast::Const(t) = self {
            return *t == Tri::T;
        }
        self.eval(ev, json, vars) == Tri::T
    }

    pub(crate) fn eval(&self, ev: &EventRef<'_>, json: &JsonCell, vars: &[Value]) -> Tri {
        match self {
            Fast::Const(t) => *t,
            Fast::StrEq { f, val, ne } => {
                Tri::of_bool(f.get(ev).is_some_and(|s| s == &**val) != *ne)
            }
            Fast::StrIn { f, vals, negated } => {
                Tri::of_bool(f.get(ev).is_some_and(|s| vals.iter().any(|v| &**v == s)) != *negated)
            }
            Fast::IntCmp { seq, op, val } => {
                let x = if *seq { ev.seq as i64 } else { ev.ts_ns };
                // the compiler builds it only for comparison operators
                Tri::of_bool(order_holds(*op, x.cmp(val)) == Some(true))
            }
            Fast::Cmp {
                lhs,
                op,
                val,
                swapped,
            } => {
                // a variable holding an integer against an integer: the comparison `binop`
                // makes of two integers, without building values
                if let (Operand::Var(i), Value::Int(c) | Value::Dur(c)) = (lhs, val) {
                    if let Some(Value::Int(x) | Value::Dur(x)) = vars.get(*i as usize) {
                        let o = if *swapped { c.cmp(x) } else { x.cmp(c) };
                        if let Some(b) = order_holds(*op, o) {
                            return Tri::of_bool(b);
                        }
                    }
                }
                let x = lhs.get(ev, json, vars);
                let c = V::of(val);
                let r = if *swapped {
                    binop(*op, &c, &x)
                } else {
                    binop(*op, &x, &c)
                };
                match r {
                    V::Bool(b) => Tri::of_bool(b),
                    _ => Tri::N,
                }
            }
            Fast::Regex { lhs, re, negated } => match lhs.get(ev, json, vars) {
                V::Str(h) => Tri::of_bool(re.is_match(h) != *negated),
                V::S(h) => Tri::of_bool(re.is_match(&h) != *negated),
                _ => Tri::of_bool(*negated),
            },
            Fast::And(a, b) => match a.eval(ev, json, vars) {
                Tri::T => b.eval(ev, json, vars),
                t => t,
            },
            Fast::Or(a, b) => match a.eval(ev, json, vars) {
                Tri::T => Tri::T,
                _ => b.eval(ev, json, vars),
            },
            Fast::Not(a) => not(a.eval(ev, json, vars)),
        }
    }
}
