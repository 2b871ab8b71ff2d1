//! Expressions: compiled with their static types (every type error reported), `def` macros
//! expanded by substitution, regexes compiled once, and the bounds on how far a spec may expand
//! ([`super::MAX_WORK`] expressions, [`super::MAX_COMPILE_DEPTH`] levels).

use super::consts::{lit_value, value_ty};
use super::{closest, num, x, Compiler, Scope, EVENT_FIELDS, MAX_COMPILE_DEPTH, MAX_WORK};
use crate::ast::*;
use crate::diag::Span;
use crate::ir::*;
use crate::value::Value;
use std::collections::HashMap;

impl Compiler<'_> {
    /// Counts one unit of work at `span`: false (with one error for the whole compilation) once
    /// the spec expands past [`MAX_WORK`].
    pub(super) fn spend(&mut self, span: Span) -> bool {
        self.work += 1;
        if self.work <= MAX_WORK {
            return true;
        }
        if !self.limit_reported {
            self.limit_reported = true;
            self.sink.hint(
                span,
                format!("the spec expands to more than {MAX_WORK} expressions"),
                "every use of a `def` macro or composite monitor copies its body: definitions that use each other twice grow exponentially",
            );
        }
        false
    }

    /// Compiles an expression in a machine scope, returning it and its static type.
    pub(super) fn expr(&mut self, e: &Expr, sc: &mut Scope) -> (X, Ty) {
        if !self.spend(e.span) {
            return (x(Ex::Const(Value::Null)), Ty::Any);
        }
        if self.nest >= MAX_COMPILE_DEPTH {
            if !self.limit_reported {
                self.limit_reported = true;
                self.sink.hint(
                    e.span,
                    format!(
                        "expression nested more than {MAX_COMPILE_DEPTH} levels deep after macro expansion"
                    ),
                    "a `def` body is copied where it is used: macros nested in macro arguments add up",
                );
            }
            return (x(Ex::Const(Value::Null)), Ty::Any);
        }
        self.nest += 1;
        let r = self.expr_inner(e, sc);
        self.nest -= 1;
        r
    }

    pub(super) fn expr_inner(&mut self, e: &Expr, sc: &mut Scope) -> (X, Ty) {
        let text = Some(self.text(e.span).into_boxed_str());
        let (k, t, keep) = match &e.kind {
            ExprKind::Lit(l) => {
                let v = lit_value(l);
                let t = value_ty(&v);
                (Ex::Const(v), t, false)
            }
            ExprKind::List(items) => {
                let xs: Vec<X> = items.iter().map(|i| self.expr(i, sc).0).collect();
                if xs.iter().all(|x| matches!(x.k, Ex::Const(_))) {
                    let vals: Vec<Value> = xs
                        .into_iter()
                        .map(|x| {
                            if let Ex::Const(v) = x.k {
                                v
                            } else {
                                Value::Null
                            }
                        })
                        .collect();
                    (Ex::Const(Value::List(vals.into())), Ty::List, false)
                } else {
                    (Ex::List(xs), Ty::List, false)
                }
            }
            ExprKind::Name(n) => match self.resolve_name(n, sc) {
                Some((k, t)) => (k, t, true),
                None if self.defs.get(n).is_some_and(|d| d.0.is_empty()) => {
                    let call = Expr::new(ExprKind::Call(n.clone(), vec![]), e.span);
                    return self.expr(&call, sc);
                }
                None => self.let_or_unknown(n, e.span, sc),
            },
            ExprKind::Field(b, f) => {
                let (bx, bt) = self.expr(b, sc);
                if !matches!(bt, Ty::Any) {
                    self.sink.hint(
                        e.span,
                        format!("a {} has no field `{f}`", bt.name()),
                        "fields exist on `data` and values from it",
                    );
                }
                (Ex::Field(Box::new(bx), f.as_str().into()), Ty::Any, true)
            }
            ExprKind::Index(b, i) => {
                let (bx, bt) = self.expr(b, sc);
                let (ix, it) = self.expr(i, sc);
                if !matches!(bt, Ty::Any | Ty::List) {
                    self.sink.hint(
                        b.span,
                        format!("cannot index a {}", bt.name()),
                        "index lists and `data` values",
                    );
                }
                if !matches!(it, Ty::Any | Ty::Int | Ty::Str) {
                    self.sink.err(
                        i.span,
                        format!("an index must be an int or a string, found {}", it.name()),
                    );
                }
                (Ex::Index(Box::new(bx), Box::new(ix)), Ty::Any, true)
            }
            ExprKind::Call(name, args) => {
                if let Some((ps, body)) = self.defs.get(name).cloned() {
                    return self.expand_macro(name, &ps, &body, args, e.span, sc, text);
                }
                match self.builtin_call(name, args, e.span, sc) {
                    Some(r) => r,
                    None => return (x(Ex::Const(Value::Null)), Ty::Any),
                }
            }
            ExprKind::Neg(a) => {
                let (ax, at) = self.expr(a, sc);
                if !num(at) {
                    self.sink
                        .err(e.span, format!("cannot negate a {}", at.name()));
                }
                (Ex::Neg(Box::new(ax)), at, false)
            }
            ExprKind::Not(a) => {
                let (ax, at) = self.expr(a, sc);
                if !matches!(at, Ty::Bool | Ty::Any) {
                    self.sink.err(
                        e.span,
                        format!("`not` needs a boolean, found {}", at.name()),
                    );
                }
                (Ex::Not(Box::new(ax)), Ty::Bool, false)
            }
            ExprKind::Bin(op, a, b) => {
                let (ax, at) = self.expr(a, sc);
                let (bx, bt) = self.expr(b, sc);
                let t = self.bin_type(*op, at, bt, e.span);
                (Ex::Bin(*op, Box::new(ax), Box::new(bx)), t, false)
            }
            ExprKind::Match {
                negated,
                lhs,
                regex,
                regex_span,
            } => self.match_expr(*negated, lhs, regex, *regex_span, sc),
            ExprKind::Quant { q, var, list, body } => self.quant_expr(*q, var, list, body, sc),
            ExprKind::If(c, a, b) => {
                let (cx, ct) = self.expr(c, sc);
                if !matches!(ct, Ty::Bool | Ty::Any) {
                    self.sink.err(
                        c.span,
                        format!("`if` needs a boolean condition, found {}", ct.name()),
                    );
                }
                let (ax, at) = self.expr(a, sc);
                let (bx, bt) = self.expr(b, sc);
                (
                    Ex::If(Box::new(cx), Box::new(ax), Box::new(bx)),
                    if at == bt { at } else { Ty::Any },
                    false,
                )
            }
        };
        (
            X {
                k,
                text: if keep { text } else { None },
            },
            t,
        )
    }

    /// A name that is no event field, parameter, variable, window, capture or local: a `let`
    /// constant, or an error with the closest known name.
    fn let_or_unknown(&mut self, n: &str, span: Span, sc: &Scope) -> (Ex, Ty, bool) {
        if self.lets.contains_key(n) {
            match self.let_value(n, span) {
                Ok(v) => {
                    let t = value_ty(&v);
                    (Ex::Const(v), t, true)
                }
                Err(()) => (Ex::Const(Value::Null), Ty::Any, false),
            }
        } else {
            let mut cands: Vec<String> = EVENT_FIELDS.iter().map(|s| s.to_string()).collect();
            cands.extend(sc.params.iter().map(|p| p.name.clone()));
            cands.extend(sc.vars.iter().cloned());
            cands.extend(sc.windows.iter().cloned());
            cands.extend(sc.caps.iter().cloned());
            cands.extend(sc.locals.iter().cloned());
            cands.extend(self.lets.keys().cloned());
            let hint = match closest(n, &cands) {
                Some(c) => format!("did you mean `{c}`?"),
                None if n.contains('-') => "a service name must be quoted inside a monitor (\"left-a\"), or passed as a parameter; `a - b` with spaces is a subtraction".to_string(),
                None => "names in guards are event fields (message, data, kind, service, ...), parameters, variables, windows, captures and `let` constants".to_string(),
            };
            self.sink.hint(span, format!("unknown name `{n}`"), hint);
            (Ex::Const(Value::Null), Ty::Any, false)
        }
    }

    /// A `def` macro call: its body with the arguments substituted, compiled in place.
    #[allow(clippy::too_many_arguments)]
    fn expand_macro(
        &mut self,
        name: &str,
        ps: &[String],
        body: &Expr,
        args: &[Expr],
        span: Span,
        sc: &mut Scope,
        text: Option<Box<str>>,
    ) -> (X, Ty) {
        if ps.len() != args.len() {
            self.sink.hint(
                span,
                format!(
                    "`{name}` takes {} argument(s), {} given",
                    ps.len(),
                    args.len()
                ),
                format!("defined as `def {name}({})`", ps.join(", ")),
            );
            return (x(Ex::Const(Value::Null)), Ty::Any);
        }
        if sc.macro_depth > 32 {
            self.sink.err(
                span,
                format!("macro `{name}` expands too deeply (is it recursive?)"),
            );
            return (x(Ex::Const(Value::Null)), Ty::Any);
        }
        let map: HashMap<&str, &Expr> = ps.iter().map(|s| s.as_str()).zip(args.iter()).collect();
        let expanded = substitute(body, &map);
        sc.macro_depth += 1;
        let (mut r, t) = self.expr(&expanded, sc);
        sc.macro_depth -= 1;
        r.text = text;
        (r, t)
    }

    /// A built-in call with its arity and argument types checked; `None` for an unknown name.
    fn builtin_call(
        &mut self,
        name: &str,
        args: &[Expr],
        span: Span,
        sc: &mut Scope,
    ) -> Option<(Ex, Ty, bool)> {
        let Some((b, arity, rt)) = builtin(name) else {
            let mut cands: Vec<String> = BUILTINS.iter().map(|s| s.to_string()).collect();
            cands.extend(self.defs.keys().cloned());
            let hint = match closest(name, &cands) {
                Some(c) => format!("did you mean `{c}`?"),
                None => format!("built-ins: {}", BUILTINS.join(", ")),
            };
            self.sink
                .hint(span, format!("unknown function `{name}`"), hint);
            return None;
        };
        if arity != args.len() {
            self.sink.err(
                span,
                format!("`{name}` takes {arity} argument(s), {} given", args.len()),
            );
        }
        let xs: Vec<(X, Ty)> = args.iter().map(|a| self.expr(a, sc)).collect();
        match b {
            Builtin::Len | Builtin::Keys | Builtin::Values => {
                if let Some((_, t)) = xs.first() {
                    if matches!(t, Ty::Int | Ty::Float | Ty::Bool | Ty::Dur) {
                        self.sink.hint(
                            args[0].span,
                            format!(
                                "`{name}` needs a string, list or object, found {}",
                                t.name()
                            ),
                            "len works on strings, lists and objects",
                        );
                    }
                }
            }
            Builtin::Lower
            | Builtin::Upper
            | Builtin::Split
            | Builtin::StartsWith
            | Builtin::EndsWith
            | Builtin::Contains => {
                for (i, (_, t)) in xs.iter().enumerate() {
                    if !matches!(t, Ty::Str | Ty::Any) {
                        self.sink.err(
                            args[i].span,
                            format!("`{name}` needs strings, found {}", t.name()),
                        );
                    }
                }
            }
            Builtin::Abs | Builtin::Min | Builtin::Max => {
                for (i, (_, t)) in xs.iter().enumerate() {
                    if !num(*t) {
                        self.sink.err(
                            args[i].span,
                            format!("`{name}` needs numbers, found {}", t.name()),
                        );
                    }
                }
            }
            _ => {}
        }
        let b = match (b, xs.first()) {
            (Builtin::Str, Some((_, Ty::Dur))) => Builtin::StrDur,
            (b, _) => b,
        };
        Some((Ex::Call(b, xs.into_iter().map(|a| a.0).collect()), rt, true))
    }

    /// `lhs ~ "regex"` (or `!~`): the regex compiled once, its named groups bound to captures.
    fn match_expr(
        &mut self,
        negated: bool,
        lhs: &Expr,
        regex: &str,
        regex_span: Span,
        sc: &mut Scope,
    ) -> (Ex, Ty, bool) {
        let (lx, lt) = self.expr(lhs, sc);
        if !matches!(lt, Ty::Str | Ty::Any) {
            self.sink.hint(
                lhs.span,
                format!("`~` matches strings, found {}", lt.name()),
                "match `message` or a string field",
            );
        }
        match crate::re::Re::new(regex) {
            Ok(re) => {
                let caps = re
                    .regex()
                    .capture_names()
                    .enumerate()
                    .filter_map(|(i, n)| n.and_then(|n| Scope::lookup(&sc.caps, n).map(|s| (i, s))))
                    .collect();
                (
                    Ex::Match {
                        negated,
                        lhs: Box::new(lx),
                        re,
                        caps,
                    },
                    Ty::Bool,
                    true,
                )
            }
            Err(err) => {
                let msg = err.to_string();
                let last = msg
                    .lines()
                    .last()
                    .unwrap_or("invalid regex")
                    .trim()
                    .to_string();
                self.sink.hint(
                    regex_span,
                    format!("invalid regex: {}", last.trim_start_matches("error: ")),
                    "the syntax is Rust's regex crate; named groups are (?P<name>...)",
                );
                (Ex::Const(Value::Bool(false)), Ty::Bool, false)
            }
        }
    }

    /// `all`/`any`/`count`/`filter` `var in list: body`, `var` a local of the body.
    fn quant_expr(
        &mut self,
        q: Quant,
        var: &str,
        list: &Expr,
        body: &Expr,
        sc: &mut Scope,
    ) -> (Ex, Ty, bool) {
        let (lx, lt) = self.expr(list, sc);
        if !matches!(lt, Ty::List | Ty::Any) {
            self.sink.hint(
                list.span,
                format!(
                    "`{}` iterates over a list, found {}",
                    quant_name(q),
                    lt.name()
                ),
                "e.g. `all n in nodes: ...`",
            );
        }
        sc.locals.push(var.to_string());
        let local = (sc.locals.len() - 1) as u16;
        sc.max_locals = sc.max_locals.max(sc.locals.len());
        let (bx, bt) = self.expr(body, sc);
        sc.locals.pop();
        if !matches!(bt, Ty::Bool | Ty::Any) {
            self.sink.err(
                body.span,
                format!(
                    "the body of `{}` must be a boolean, found {}",
                    quant_name(q),
                    bt.name()
                ),
            );
        }
        let t = match q {
            Quant::Count => Ty::Int,
            Quant::Filter => Ty::List,
            _ => Ty::Bool,
        };
        (
            Ex::Quant {
                q,
                local,
                list: Box::new(lx),
                body: Box::new(bx),
            },
            t,
            false,
        )
    }

    pub(super) fn bin_type(&mut self, op: BinOp, a: Ty, b: Ty, span: Span) -> Ty {
        use BinOp::*;
        let mismatch = |c: &mut Self, what: &str| {
            c.sink.hint(
                span,
                format!("cannot {what} {} and {}", a.name(), b.name()),
                "convert with int(), float() or str(), or compare values of the same type",
            );
            Ty::Any
        };
        match op {
            And | Or => {
                if !matches!(a, Ty::Bool | Ty::Any) || !matches!(b, Ty::Bool | Ty::Any) {
                    return mismatch(
                        self,
                        &format!("combine with `{}`", if op == And { "and" } else { "or" }),
                    );
                }
                Ty::Bool
            }
            Eq | Ne => {
                if a != Ty::Any && b != Ty::Any && !(num(a) && num(b)) && a != b {
                    return mismatch(self, "compare");
                }
                Ty::Bool
            }
            Lt | Le | Gt | Ge => {
                let ok = a == Ty::Any
                    || b == Ty::Any
                    || (num(a) && num(b))
                    || (a == Ty::Str && b == Ty::Str);
                if !ok {
                    return mismatch(self, "order");
                }
                Ty::Bool
            }
            In | NotIn => {
                if !matches!(b, Ty::List | Ty::Str | Ty::Any) {
                    self.sink.hint(
                        span,
                        format!(
                            "`in` needs a list or string on the right, found {}",
                            b.name()
                        ),
                        "e.g. `kind in [\"die\", \"kill\"]`",
                    );
                }
                Ty::Bool
            }
            Add => {
                if a == Ty::Str && b == Ty::Str {
                    Ty::Str
                } else if a == Ty::List && b == Ty::List {
                    Ty::List
                } else if num(a) && num(b) {
                    arith_ty(op, a, b)
                } else if a == Ty::Any || b == Ty::Any {
                    Ty::Any
                } else {
                    mismatch(self, "add")
                }
            }
            // list difference: the items of `a` that are not in `b`
            Sub if (a == Ty::List || b == Ty::List)
                && matches!(a, Ty::List | Ty::Any)
                && matches!(b, Ty::List | Ty::Any) =>
            {
                Ty::List
            }
            Sub | Mul | Div | Rem => {
                if num(a) && num(b) {
                    arith_ty(op, a, b)
                } else {
                    mismatch(self, "do arithmetic on")
                }
            }
        }
    }
}

fn quant_name(q: Quant) -> &'static str {
    match q {
        Quant::All => "all",
        Quant::Any => "any",
        Quant::Count => "count",
        Quant::Filter => "filter",
    }
}

fn arith_ty(op: BinOp, a: Ty, b: Ty) -> Ty {
    if op == BinOp::Div && a != Ty::Any && b != Ty::Any {
        return Ty::Float;
    }
    match (a, b) {
        (Ty::Int, Ty::Int) => Ty::Int,
        (Ty::Dur, Ty::Dur) | (Ty::Dur, Ty::Int) | (Ty::Int, Ty::Dur) => Ty::Dur,
        (Ty::Float, _) | (_, Ty::Float) => Ty::Float,
        _ => Ty::Any,
    }
}

/// Substitutes macro parameters; the expansion keeps the call's span for error messages inside
/// arguments (arguments keep their own spans).
fn substitute(e: &Expr, map: &HashMap<&str, &Expr>) -> Expr {
    let s = |x: &Expr| Box::new(substitute(x, map));
    let kind = match &e.kind {
        ExprKind::Name(n) => {
            if let Some(a) = map.get(n.as_str()) {
                return (*a).clone();
            }
            ExprKind::Name(n.clone())
        }
        ExprKind::Lit(l) => ExprKind::Lit(l.clone()),
        ExprKind::List(v) => ExprKind::List(v.iter().map(|i| substitute(i, map)).collect()),
        ExprKind::Field(a, f) => ExprKind::Field(s(a), f.clone()),
        ExprKind::Index(a, b) => ExprKind::Index(s(a), s(b)),
        ExprKind::Call(n, v) => {
            ExprKind::Call(n.clone(), v.iter().map(|i| substitute(i, map)).collect())
        }
        ExprKind::Neg(a) => ExprKind::Neg(s(a)),
        ExprKind::Not(a) => ExprKind::Not(s(a)),
        ExprKind::Bin(o, a, b) => ExprKind::Bin(*o, s(a), s(b)),
        ExprKind::Match {
            negated,
            lhs,
            regex,
            regex_span,
        } => ExprKind::Match {
            negated: *negated,
            lhs: s(lhs),
            regex: regex.clone(),
            regex_span: *regex_span,
        },
        ExprKind::Quant { q, var, list, body } => {
            // the bound variable shadows macro parameters of the same name
            let mut inner = map.clone();
            inner.remove(var.as_str());
            ExprKind::Quant {
                q: *q,
                var: var.clone(),
                list: s(list),
                body: Box::new(substitute(body, &inner)),
            }
        }
        ExprKind::If(a, b, c) => ExprKind::If(s(a), s(b), s(c)),
    };
    Expr::new(kind, e.span)
}
