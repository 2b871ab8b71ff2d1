//! Values known before the trace is read: monitor parameters and their defaults, `let`
//! constants (cycles refused), constant expressions (`const_eval`), durations that must be
//! positive, and the conversions between literals, values and static types.

use super::{Compiler, EVENT_FIELDS, MAX_CONST_LEN};
use crate::ast::*;
use crate::diag::Span;
use crate::ir::*;
use crate::value::{fmt_dur, Value};
use std::collections::HashMap;
use std::sync::Arc;

impl Compiler<'_> {
    pub(super) fn params(&mut self, ps: &[Param]) -> Vec<ParamC> {
        let mut out = Vec::new();
        for (i, p) in ps.iter().enumerate() {
            if p.variadic && i + 1 != ps.len() {
                self.sink.hint(
                    p.span,
                    "only the last parameter can be variadic",
                    "move it to the end",
                );
            }
            if EVENT_FIELDS.contains(&p.name.as_str()) {
                self.sink.hint(
                    p.span,
                    format!("parameter `{}` hides the event field of that name", p.name),
                    "choose another name",
                );
            }
            let default = p.default.as_ref().and_then(|d| {
                let v = self.const_eval(d, &HashMap::new(), false).ok()?;
                self.check_value_ty(
                    &v,
                    if p.variadic { Ty::List } else { p.ty },
                    d.span,
                    &p.name,
                );
                Some(v)
            });
            out.push(ParamC {
                name: p.name.clone(),
                ty: p.ty,
                variadic: p.variadic,
                default,
            });
        }
        out
    }

    pub(super) fn check_value_ty(&mut self, v: &Value, ty: Ty, span: Span, what: &str) -> bool {
        let ok = matches!(
            (ty, v),
            (Ty::Any, _)
                | (Ty::Str, Value::Str(_))
                | (Ty::Int, Value::Int(_))
                | (Ty::Float, Value::Int(_) | Value::Float(_))
                | (Ty::Bool, Value::Bool(_))
                | (Ty::Dur, Value::Dur(_))
                | (Ty::List, Value::List(_))
        );
        if !ok {
            self.sink.hint(
                span,
                format!(
                    "argument for `{what}` must be {}, found {}",
                    ty.name(),
                    value_ty(v).name()
                ),
                format!("`{what}` is declared as {}", ty.name()),
            );
        }
        ok
    }

    pub(super) fn let_value(&mut self, name: &str, use_span: Span) -> Result<Value, ()> {
        if let Some(v) = self.let_cache.get(name) {
            return Ok(v.clone());
        }
        if self.let_busy.iter().any(|b| b == name) {
            self.sink
                .err(use_span, format!("`{name}` is defined in terms of itself"));
            return Err(());
        }
        let Some(e) = self.lets.get(name).cloned() else {
            return Err(());
        };
        if self.let_busy.len() >= MAX_DEPTH as usize {
            self.sink.err(
                use_span,
                format!("`{name}` is defined through more than {MAX_DEPTH} other constants"),
            );
            return Err(());
        }
        self.let_busy.push(name.to_string());
        let r = self.const_eval(&e, &HashMap::new(), true);
        self.let_busy.pop();
        if let Ok(v) = &r {
            self.let_cache.insert(name.to_string(), v.clone());
        }
        r
    }

    /// Evaluates an expression that needs no event: literals, lists, lets, parameters in `env`,
    /// bare names (as strings, when `bare` is set), `+ - * /` and pure built-ins.
    pub(super) fn const_eval(
        &mut self,
        e: &Expr,
        env: &HashMap<String, Value>,
        bare: bool,
    ) -> Result<Value, ()> {
        Ok(match &e.kind {
            ExprKind::Lit(l) => lit_value(l),
            ExprKind::List(items) => {
                let mut v = Vec::new();
                for i in items {
                    v.push(self.const_eval(i, env, bare)?);
                }
                Value::List(v.into())
            }
            ExprKind::Name(n) => {
                if let Some(v) = env.get(n) {
                    v.clone()
                } else if self.lets.contains_key(n) {
                    self.let_value(n, e.span)?
                } else if bare {
                    Value::str(n)
                } else {
                    self.sink.hint(
                        e.span,
                        format!("unknown name `{n}`"),
                        "only literals, `let` constants and parameters can be used here",
                    );
                    return Err(());
                }
            }
            // integer overflow gives null, as at run time (docs/spec-language.md)
            ExprKind::Neg(a) => match self.const_eval(a, env, bare)? {
                Value::Int(i) => i.checked_neg().map(Value::Int).unwrap_or(Value::Null),
                Value::Float(f) => Value::Float(-f),
                Value::Dur(d) => d.checked_neg().map(Value::Dur).unwrap_or(Value::Null),
                _ => {
                    self.sink.err(e.span, "cannot negate a non-number");
                    return Err(());
                }
            },
            ExprKind::Bin(op, a, b) => {
                let a = self.const_eval(a, env, bare)?;
                let b = self.const_eval(b, env, bare)?;
                let too_big = match (&a, &b) {
                    (Value::Str(x), Value::Str(y)) => x.len() + y.len() > MAX_CONST_LEN,
                    (Value::List(x), Value::List(y)) => x.len() + y.len() > MAX_CONST_LEN,
                    _ => false,
                };
                if too_big && *op == BinOp::Add {
                    self.sink.err(
                        e.span,
                        format!("this constant grows past {MAX_CONST_LEN} characters or items"),
                    );
                    return Err(());
                }
                let int = |r: Option<i64>| r.map(Value::Int).unwrap_or(Value::Null);
                let dur = |r: Option<i64>| r.map(Value::Dur).unwrap_or(Value::Null);
                match (op, &a, &b) {
                    (BinOp::Add, Value::Str(x), Value::Str(y)) => Value::str(&format!("{x}{y}")),
                    (BinOp::Add, Value::List(x), Value::List(y)) => {
                        Value::List(x.iter().chain(y.iter()).cloned().collect())
                    }
                    (BinOp::Add, Value::Int(x), Value::Int(y)) => int(x.checked_add(*y)),
                    (BinOp::Add, Value::Dur(x), Value::Dur(y)) => dur(x.checked_add(*y)),
                    (BinOp::Sub, Value::Int(x), Value::Int(y)) => int(x.checked_sub(*y)),
                    (BinOp::Sub, Value::List(x), Value::List(y)) => {
                        Value::List(x.iter().filter(|v| !y.contains(v)).cloned().collect())
                    }
                    (BinOp::Sub, Value::Dur(x), Value::Dur(y)) => dur(x.checked_sub(*y)),
                    (BinOp::Mul, Value::Int(x), Value::Int(y)) => int(x.checked_mul(*y)),
                    (BinOp::Div, Value::Int(_), Value::Int(0)) => Value::Null,
                    (BinOp::Mul, Value::Dur(x), Value::Int(y))
                    | (BinOp::Mul, Value::Int(y), Value::Dur(x)) => dur(x.checked_mul(*y)),
                    (BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div, _, _)
                        if value_num(&a).is_some() && value_num(&b).is_some() =>
                    {
                        let (x, y) = (value_num(&a).unwrap_or(0.0), value_num(&b).unwrap_or(0.0));
                        Value::Float(match op {
                            BinOp::Add => x + y,
                            BinOp::Sub => x - y,
                            BinOp::Mul => x * y,
                            _ => x / y,
                        })
                    }
                    _ => {
                        self.sink.hint(
                            e.span,
                            "this expression cannot be computed before the trace is read",
                            "use literals, lists, `let` constants and parameters with + - * /",
                        );
                        return Err(());
                    }
                }
            }
            _ => {
                self.sink.hint(
                    e.span,
                    "this expression cannot be computed before the trace is read",
                    "use literals, lists, `let` constants and parameters",
                );
                return Err(());
            }
        })
    }

    /// Refuses a duration known before the trace is read (literals, `let`s and arithmetic on
    /// them) that is negative: a negative window or timeout has no meaning and is not clamped.
    pub(super) fn refuse_negative(&mut self, e: &Expr, what: &str) {
        let saved = std::mem::take(&mut self.sink.errs);
        let v = self.const_eval(e, &HashMap::new(), false);
        self.sink.errs = saved;
        if let Ok(Value::Dur(d)) = v {
            if d < 0 {
                self.sink.hint(
                    e.span,
                    format!("{what} cannot be negative, found {}", fmt_dur(d)),
                    "write a positive duration: `3s`, `500ms`, `2m`",
                );
            }
        }
    }

    pub(super) fn const_duration(&mut self, e: &Expr) -> Option<std::time::Duration> {
        match self.const_eval(e, &HashMap::new(), false) {
            Ok(Value::Dur(d)) if d >= 0 => Some(std::time::Duration::from_nanos(d as u64)),
            Ok(v) => {
                self.sink.hint(
                    e.span,
                    format!("expected a positive duration, found {v}"),
                    "write durations with a unit: `30s`, `2m`",
                );
                None
            }
            Err(()) => None,
        }
    }
}

pub(super) fn placeholder(t: Ty) -> Value {
    match t {
        Ty::Bool => Value::Bool(false),
        Ty::Int => Value::Int(0),
        Ty::Float => Value::Float(0.0),
        Ty::Str => Value::str(""),
        Ty::Dur => Value::Dur(0),
        Ty::List => Value::List(Arc::from(Vec::new())),
        Ty::Any => Value::Null,
    }
}

pub(super) fn lit_value(l: &Lit) -> Value {
    match l {
        Lit::Null => Value::Null,
        Lit::Bool(b) => Value::Bool(*b),
        Lit::Int(i) => Value::Int(*i),
        Lit::Float(f) => Value::Float(*f),
        Lit::Dur(d) => Value::Dur(*d),
        Lit::Str(s) => Value::str(s),
        Lit::Map => Value::Json(Arc::new(serde_json::Value::Object(Default::default()))),
    }
}

pub(super) fn value_ty(v: &Value) -> Ty {
    match v {
        Value::Null | Value::Json(_) => Ty::Any,
        Value::Bool(_) => Ty::Bool,
        Value::Int(_) => Ty::Int,
        Value::Float(_) => Ty::Float,
        Value::Dur(_) => Ty::Dur,
        Value::Str(_) => Ty::Str,
        Value::List(_) => Ty::List,
    }
}

fn value_num(v: &Value) -> Option<f64> {
    match v {
        Value::Int(i) | Value::Dur(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        _ => None,
    }
}

pub(super) fn to_literal(v: &Value) -> Literal {
    match v {
        Value::Null | Value::Json(_) => Literal::Null,
        Value::Bool(b) => Literal::Bool(*b),
        Value::Int(i) => Literal::Int(*i),
        Value::Float(f) => Literal::Float(*f),
        Value::Dur(d) => Literal::Duration(std::time::Duration::from_nanos((*d).max(0) as u64)),
        Value::Str(s) => Literal::Str(s.to_string()),
        Value::List(l) => Literal::List(l.iter().map(to_literal).collect()),
    }
}
