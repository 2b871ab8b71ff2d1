//! Checker and compiler: resolves names, checks types and arity (accumulating every error),
//! expands macros, compiles regexes once, desugars temporal forms into state machines and
//! instantiates monitor references, producing a [`Spec`].

use crate::ast::*;
use crate::diag::{location, span_text, Diagnostics, Sink, SourceFile, Span};
use crate::ir::*;
use crate::parser::parse_file;
use crate::value::{fmt_dur, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Parses, checks and compiles spec files. `resolver(import_path, importing_file_name)` supplies
/// imported files (the library does no I/O). All errors are returned at once.
pub fn compile(
    files: &[SourceFile],
    resolver: &dyn Fn(&str, &str) -> Option<SourceFile>,
) -> Result<Spec, Diagnostics> {
    let mut sink = Sink::default();
    let mut table: Vec<SourceFile> = Vec::new();
    let mut items: Vec<(u32, Item)> = Vec::new();
    let mut queue: Vec<SourceFile> = files.to_vec();
    let mut qi = 0;
    while qi < queue.len() {
        let f = queue[qi].clone();
        qi += 1;
        if table.iter().any(|t| t.name == f.name) {
            continue;
        }
        let idx = table.len() as u32;
        table.push(f.clone());
        for it in parse_file(idx, &f.text, &mut sink) {
            if let Item::Import(path, sp) = &it {
                match resolver(path, &f.name) {
                    Some(imp) => queue.push(imp),
                    None => sink.hint(
                        *sp,
                        format!("cannot import `{path}`: file not found"),
                        "paths are relative to the importing file",
                    ),
                }
            }
            items.push((idx, it));
        }
    }
    let broken = std::mem::take(&mut sink.unparsed_monitors);
    let mut c = Compiler {
        files: &table,
        sink,
        lets: HashMap::new(),
        defs: HashMap::new(),
        monitors: BTreeMap::new(),
        let_cache: HashMap::new(),
        let_busy: Vec::new(),
        broken,
        work: 0,
        nest: 0,
        limit_reported: false,
        bind_tys: Vec::new(),
        deferred_steps: Vec::new(),
    };
    let mut spec = c.run(items);
    if c.sink.is_empty() {
        if !c.deferred_steps.is_empty() {
            let d = Arc::new(Deferred {
                files: table.clone(),
                lets: std::mem::take(&mut c.lets),
                defs: std::mem::take(&mut c.defs),
                monitors: std::mem::take(&mut c.monitors),
                let_cache: std::mem::take(&mut c.let_cache),
                steps: std::mem::take(&mut c.deferred_steps)
                    .into_iter()
                    .map(|(e, i, s)| ((e, i), s))
                    .collect(),
            });
            for e in &mut spec.experiments {
                if e.uses.iter().any(|u| !u.is_empty()) {
                    e.deferred = Some(d.clone());
                }
            }
        }
        Ok(spec)
    } else {
        Err(c.sink.into_diagnostics(&table))
    }
}

/// Only checks (same as [`compile`], discarding the result).
pub fn check(
    files: &[SourceFile],
    resolver: &dyn Fn(&str, &str) -> Option<SourceFile>,
) -> Result<(), Diagnostics> {
    compile(files, resolver).map(|_| ())
}

#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
enum MonDef {
    Machine(Arc<Machine>),
    Composite { params: Vec<ParamC>, body: MExpr },
}

struct Compiler<'f> {
    files: &'f [SourceFile],
    sink: Sink,
    lets: HashMap<String, Expr>,
    defs: HashMap<String, (Vec<String>, Expr)>,
    monitors: BTreeMap<String, (Span, MonDef)>,
    let_cache: HashMap<String, Value>,
    let_busy: Vec<String>,
    /// Monitors that had errors: references to them are not reported again.
    broken: Vec<String>,
    /// Expressions and monitor expressions compiled so far, macro and monitor expansions
    /// included: bounded by [`MAX_WORK`] so that definitions expanding each other fail fast.
    work: usize,
    /// Current recursion depth of [`Compiler::expr`], bounded by [`MAX_COMPILE_DEPTH`].
    nest: u32,
    /// A limit error was reported (once: the rest of the expansion is cut short).
    limit_reported: bool,
    /// Types of the `accept ... with V` values of the machine being compiled.
    bind_tys: Vec<Ty>,
    /// Steps that use bindings, as written (experiment, index, step): kept for
    /// [`Deferred::resolve`].
    deferred_steps: Vec<(String, usize, StepDecl)>,
}

/// The most expressions one compilation may produce after expanding `def` macros and monitor
/// references. Real specs stay far below (the seed specs compile to a few thousand); a file of
/// macros doubling each other reaches it in a few milliseconds and is refused.
pub(crate) const MAX_WORK: usize = 200_000;

/// The deepest an expression may nest after macro expansion (each expansion can put a macro
/// body under an argument position); the written text is bounded by [`MAX_DEPTH`] already.
pub(crate) const MAX_COMPILE_DEPTH: u32 = 2 * MAX_DEPTH;

/// The largest string or list a constant (`let`, parameter default) may compute.
const MAX_CONST_LEN: usize = 1 << 20;

const EVENT_FIELDS: &[&str] = &[
    "ts",
    "seq",
    "source",
    "service",
    "container",
    "kind",
    "message",
    "data",
    "here",
    "key",
];

/// Name scope while compiling a machine's expressions.
struct Scope {
    params: Vec<ParamC>,
    vars: Vec<String>,
    windows: Vec<String>,
    caps: Vec<String>,
    locals: Vec<String>,
    max_locals: usize,
    macro_depth: usize,
}

impl Scope {
    fn lookup(list: &[String], n: &str) -> Option<u16> {
        list.iter().position(|x| x == n).map(|i| i as u16)
    }
}

fn x(k: Ex) -> X {
    X { k, text: None }
}

fn num(t: Ty) -> bool {
    matches!(t, Ty::Int | Ty::Float | Ty::Dur | Ty::Any)
}

impl<'f> Compiler<'f> {
    fn text(&self, s: Span) -> String {
        span_text(self.files, s)
    }

    fn run(&mut self, items: Vec<(u32, Item)>) -> Spec {
        // 1. declarations
        let mut names: HashMap<String, Span> = HashMap::new();
        let mut decls = Vec::new();
        let mut exps = Vec::new();
        for (_, it) in items {
            let (name, sp) = match &it {
                Item::Import(..) => continue,
                Item::Let(n, sp, _) | Item::Def(n, sp, _, _) => (n.clone(), *sp),
                Item::Monitor(m) => (m.name.clone(), m.span),
                Item::Experiment { name, span, .. } => (name.clone(), *span),
            };
            if let Some(prev) = names.get(&name) {
                let loc = location(self.files, *prev);
                self.sink.hint(
                    sp,
                    format!("`{name}` is defined twice"),
                    format!("first defined at {}:{}:{}", loc.file, loc.line, loc.column),
                );
                continue;
            }
            if crate::ir_builtin(&name).is_some() || EVENT_FIELDS.contains(&name.as_str()) {
                self.sink.hint(
                    sp,
                    format!("`{name}` is a built-in name"),
                    "choose another name",
                );
            }
            names.insert(name.clone(), sp);
            match it {
                Item::Let(n, _, e) => {
                    self.lets.insert(n, e);
                }
                Item::Def(n, _, ps, e) => {
                    self.defs
                        .insert(n, (ps.into_iter().map(|p| p.0).collect(), e));
                }
                Item::Monitor(m) => decls.push(m),
                Item::Experiment { name, span, steps } => exps.push((name, span, steps)),
                Item::Import(..) => {}
            }
        }
        // 2. lets
        let let_names: Vec<String> = self.lets.keys().cloned().collect();
        for n in let_names {
            let _ = self.let_value(&n, Span::default());
        }
        // 3. monitors
        for m in decls {
            let params = self.params(&m.params);
            let def = match m.body {
                MonitorBody::Machine {
                    vars,
                    windows,
                    states,
                } => self
                    .machine(
                        &m.name,
                        m.span,
                        params,
                        m.per.as_ref(),
                        &vars,
                        &windows,
                        &states,
                    )
                    .map(|mc| MonDef::Machine(Arc::new(mc))),
                MonitorBody::Expr(e) => match &e.kind {
                    MExprKind::Ref { .. }
                    | MExprKind::And(..)
                    | MExprKind::Or(..)
                    | MExprKind::Not(..) => {
                        if let Some(p) = &m.per {
                            self.sink.hint(
                                p.span,
                                "`per` applies to state machines and temporal forms",
                                "put `per` on the monitors being composed",
                            );
                        }
                        Some(MonDef::Composite { params, body: e })
                    }
                    _ => self
                        .temporal(&m.name, m.span, params, m.per.as_ref(), &e)
                        .map(|mc| MonDef::Machine(Arc::new(mc))),
                },
            };
            match def {
                Some(d) => {
                    self.monitors.insert(m.name.clone(), (m.span, d));
                }
                None => self.broken.push(m.name.clone()),
            }
        }
        // 4. check composites by instantiating them with their defaults or placeholders
        let mut infos = Vec::new();
        let names: Vec<String> = self.monitors.keys().cloned().collect();
        for n in names {
            let (span, params) = match &self.monitors[&n] {
                (sp, MonDef::Machine(m)) => (*sp, m.params.clone()),
                (sp, MonDef::Composite { params, .. }) => (*sp, params.clone()),
            };
            let runnable = if params.iter().all(|p| p.default.is_some() || p.variadic) {
                let vals: Vec<Value> = params
                    .iter()
                    .map(|p| {
                        p.default
                            .clone()
                            .unwrap_or(Value::List(Arc::from(Vec::new())))
                    })
                    .collect();
                self.instantiate(&n, span, vals, None, 0)
            } else {
                // still check the body of composites with placeholder arguments
                if let (_, MonDef::Composite { params, body }) = &self.monitors[&n] {
                    let env: HashMap<String, Value> = params
                        .iter()
                        .map(|p| (p.name.clone(), placeholder(p.ty)))
                        .collect();
                    let body = body.clone();
                    let mut quiet = Sink::default();
                    std::mem::swap(&mut quiet, &mut self.sink);
                    let _ = self.mexpr(&body, &env, None, 1);
                    std::mem::swap(&mut quiet, &mut self.sink);
                    // keep only errors that are not about argument values
                    for e in quiet.errs {
                        if !e.1.contains("argument") {
                            self.sink.errs.push(e);
                        }
                    }
                }
                None
            };
            infos.push(MonitorInfo {
                name: n.clone(),
                params: params.iter().map(|p| p.name.clone()).collect(),
                location: location(self.files, span),
                runnable,
            });
        }
        // 5. experiments
        let mut experiments = Vec::new();
        for (name, span, steps) in exps {
            // the names the steps bind (`expect ... as NAME`), with the binding step
            let mut bound: HashMap<String, (usize, Span)> = HashMap::new();
            for (i, st) in steps.iter().enumerate() {
                if let StepDecl::Expect {
                    binds: Some((n, sp)),
                    ..
                } = st
                {
                    if let Some((k, _)) = bound.get(n) {
                        self.sink.hint(
                            *sp,
                            format!("`{n}` is bound twice in experiment `{name}`"),
                            format!("step {} binds it already; choose another name", k + 1),
                        );
                        continue;
                    }
                    if self.lets.contains_key(n)
                        || self.defs.contains_key(n)
                        || self.monitors.contains_key(n)
                    {
                        self.sink.hint(
                            *sp,
                            format!("binding `{n}` has the name of a constant, macro or monitor"),
                            "choose another name",
                        );
                    }
                    bound.insert(n.clone(), (i, *sp));
                }
            }
            let mut out = Vec::new();
            let mut uses = Vec::new();
            let mut bind_ty: HashMap<String, Ty> = HashMap::new();
            for (i, st) in steps.into_iter().enumerate() {
                // the bindings this step uses, each bound by an earlier step
                let mut used: Vec<String> = Vec::new();
                for (n, sp) in step_names(&st) {
                    let Some((k, _)) = bound.get(&n) else {
                        continue;
                    };
                    if *k >= i {
                        self.sink.hint(
                            sp,
                            format!(
                                "`{n}` is used before it is bound: step {} binds it, this is step {}",
                                k + 1,
                                i + 1
                            ),
                            "a binding can be used by the steps after the `expect ... as NAME` that binds it",
                        );
                    }
                    if !used.contains(&n) {
                        used.push(n);
                    }
                }
                let env: HashMap<String, Value> = used
                    .iter()
                    .map(|n| {
                        let t = bind_ty.get(n).copied().unwrap_or(Ty::Any);
                        (n.clone(), binding_placeholder(n, t))
                    })
                    .collect();
                let compiled = self.step(&st, &env);
                if let (
                    Some(Step::Expect(e)),
                    StepDecl::Expect {
                        binds: Some((n, sp)),
                        ..
                    },
                ) = (&compiled, &st)
                {
                    if !mon_binds(&e.monitor) {
                        self.sink.hint(
                            *sp,
                            format!(
                                "step {} binds nothing: `{}` never accepts with a value",
                                i + 1,
                                e.monitor.display()
                            ),
                            "give the monitor an `accept ... with VALUE` (e.g. `accept with service`)",
                        );
                    }
                    bind_ty.insert(n.clone(), mon_bind_ty(&e.monitor));
                }
                if let Some(s) = compiled {
                    out.push(s);
                }
                if !used.is_empty() {
                    self.deferred_steps.push((name.clone(), i, st));
                }
                uses.push(used);
            }
            experiments.push(Experiment {
                name,
                steps: out,
                location: location(self.files, span),
                uses,
                deferred: None,
            });
        }
        Spec {
            monitors: infos,
            experiments,
            _span_dummy: None,
        }
    }

    fn params(&mut self, ps: &[Param]) -> Vec<ParamC> {
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

    fn check_value_ty(&mut self, v: &Value, ty: Ty, span: Span, what: &str) -> bool {
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

    fn let_value(&mut self, name: &str, use_span: Span) -> Result<Value, ()> {
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
    fn const_eval(
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

    // ---------- machines ----------

    #[allow(clippy::too_many_arguments)]
    fn machine(
        &mut self,
        name: &str,
        span: Span,
        params: Vec<ParamC>,
        per: Option<&Expr>,
        vars: &[(String, Span, Expr)],
        windows: &[WindowDecl],
        states: &[StateDecl],
    ) -> Option<Machine> {
        let before = self.sink.errs.len();
        let outer_binds = std::mem::take(&mut self.bind_tys);
        if states.is_empty() {
            self.sink.hint(
                span,
                format!("monitor `{name}` has no states"),
                "add `state NAME { on ... => ... }`",
            );
        }
        // captures: named groups of every regex literal in the monitor
        let mut caps = Vec::new();
        let mut all_exprs: Vec<&Expr> = Vec::new();
        for s in states {
            if let Some(t) = &s.timeout {
                all_exprs.push(t);
            }
            for h in &s.handlers {
                if let On::Event(p) = &h.on {
                    all_exprs.extend(p.guard.iter());
                }
            }
        }
        for w in windows {
            if let Some(p) = &w.of {
                all_exprs.extend(p.guard.iter());
            }
        }
        for e in &all_exprs {
            collect_caps(e, &mut caps);
        }
        let mut sc = Scope {
            params,
            vars: Vec::new(),
            windows: Vec::new(),
            caps,
            locals: Vec::new(),
            max_locals: 0,
            macro_depth: 0,
        };
        for c in &sc.caps {
            if sc.params.iter().any(|p| &p.name == c) || vars.iter().any(|v| &v.0 == c) {
                self.sink.hint(
                    span,
                    format!("regex capture `{c}` has the name of a parameter or variable"),
                    "rename the capture group",
                );
            }
        }
        let per_c = per.map(|p| self.expr(p, &mut sc).0);
        let mut vars_c = Vec::new();
        for (n, sp, e) in vars {
            if sc.vars.contains(n) {
                self.sink
                    .err(*sp, format!("variable `{n}` is declared twice"));
            }
            let (xe, _) = self.expr(e, &mut sc);
            sc.vars.push(n.clone());
            vars_c.push((n.clone(), xe));
        }
        let mut wins = Vec::new();
        for w in windows {
            let expr = w.expr.as_ref().map(|e| {
                let (xe, t) = self.expr(e, &mut sc);
                if w.agg != Agg::Latest && !num(t) && t != Ty::Bool {
                    self.sink.hint(
                        e.span,
                        format!("window `{}` aggregates {} values", w.name, t.name()),
                        "aggregate numbers, e.g. mean(data.latency_ms) or mean(int(cond))",
                    );
                }
                xe
            });
            let size = match &w.size {
                WindowSize::Events(n) => WinSize::Events(*n as usize),
                WindowSize::Time(e) => {
                    let (xe, t) = self.expr(e, &mut sc);
                    self.refuse_negative(e, "a window length");
                    if !matches!(t, Ty::Dur | Ty::Any) {
                        self.sink.hint(
                            e.span,
                            format!("window length must be a duration, found {}", t.name()),
                            "e.g. `over last 30s` or `over last 10 events`",
                        );
                    }
                    WinSize::Time(xe)
                }
            };
            let of = w.of.as_ref().map(|p| self.pattern(p, &mut sc));
            let by = w.by.as_ref().map(|k| self.expr(k, &mut sc).0);
            if sc.windows.contains(&w.name) || sc.vars.contains(&w.name) {
                self.sink
                    .err(w.span, format!("`{}` is declared twice", w.name));
            }
            sc.windows.push(w.name.clone());
            wins.push(WindowC {
                agg: w.agg,
                expr,
                size,
                of,
                by,
            });
        }
        let state_names: Vec<String> = states.iter().map(|s| s.name.clone()).collect();
        let mut seen = Vec::new();
        for s in states {
            if seen.contains(&s.name) {
                self.sink
                    .err(s.span, format!("state `{}` is declared twice", s.name));
            }
            seen.push(s.name.clone());
        }
        let mut states_c = Vec::new();
        for s in states {
            let timeout = s.timeout.as_ref().map(|t| self.duration_expr(t, &mut sc));
            let mut handlers = Vec::new();
            let mut on_timeout = None;
            let mut on_end = None;
            for h in &s.handlers {
                let htext = self.text(h.span);
                match &h.on {
                    On::Event(p) => {
                        let pat = self.pattern(p, &mut sc);
                        let actions = self.actions(&h.actions, &mut sc, &state_names);
                        handlers.push(HandlerC {
                            pat,
                            actions,
                            text: htext,
                        });
                    }
                    On::Timeout => {
                        let a = self.actions(&h.actions, &mut sc, &state_names);
                        if on_timeout.is_some() {
                            self.sink
                                .err(h.span, "a state has at most one `on timeout` handler");
                        }
                        on_timeout = Some((a, htext));
                    }
                    On::End => {
                        let a = self.actions(&h.actions, &mut sc, &state_names);
                        if matches!(a.term, TermC::Goto(..) | TermC::Stay) {
                            self.sink.hint(
                                h.actions.span,
                                "`on end` must decide",
                                "use `accept`, `fail \"...\"` or `inconclusive \"...\"`",
                            );
                        }
                        if on_end.is_some() {
                            self.sink
                                .err(h.span, "a state has at most one `on end` handler");
                        }
                        on_end = Some((a, htext));
                    }
                }
            }
            states_c.push(StateC {
                name: s.name.clone(),
                timeout,
                handlers,
                on_timeout,
                on_end,
                opens_when_fault_done: s.opens_when_fault_done,
            });
        }
        let bind_tys = std::mem::replace(&mut self.bind_tys, outer_binds);
        if self.sink.errs.len() > before {
            return None;
        }
        let binds = bind_tys.first().map(|t| {
            if bind_tys.iter().all(|u| u == t) {
                *t
            } else {
                Ty::Any
            }
        });
        let mut sources: Option<Vec<Box<str>>> = Some(Vec::new());
        for s in &states_c {
            for h in &s.handlers {
                add_source(&mut sources, Some(&h.pat));
            }
        }
        for w in &wins {
            add_source(&mut sources, w.of.as_ref());
        }
        Some(Machine {
            params: sc.params,
            per: per_c,
            vars: vars_c,
            windows: wins,
            states: states_c,
            n_caps: sc.caps.len(),
            sources,
            binds,
        })
    }

    /// Refuses a duration known before the trace is read (literals, `let`s and arithmetic on
    /// them) that is negative: a negative window or timeout has no meaning and is not clamped.
    fn refuse_negative(&mut self, e: &Expr, what: &str) {
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

    fn duration_expr(&mut self, e: &Expr, sc: &mut Scope) -> X {
        self.refuse_negative(e, "a timeout");
        let (xe, t) = self.expr(e, sc);
        if !matches!(t, Ty::Dur | Ty::Any) {
            self.sink.hint(
                e.span,
                format!("expected a duration, found {}", t.name()),
                "write durations with a unit: `3s`, `500ms`, `2m`",
            );
        }
        xe
    }

    fn pattern(&mut self, p: &Pattern, sc: &mut Scope) -> PatternC {
        let from = p.from.as_ref().map(|f| self.value_expr(f, sc));
        let guard = p.guard.as_ref().map(|g| {
            let (xe, t) = self.expr(g, sc);
            if !matches!(t, Ty::Bool | Ty::Any) {
                self.sink.hint(
                    g.span,
                    format!("a guard must be a boolean, found {}", t.name()),
                    "compare it, e.g. `len(x) > 0`",
                );
            }
            xe
        });
        let fast = match from {
            None => crate::fast::specialise(guard.as_ref()),
            Some(_) => None,
        };
        PatternC {
            source: p.source.as_deref().map(Into::into),
            kind: p.kind.as_deref().map(Into::into),
            from,
            guard,
            fast,
        }
    }

    /// A value position where bare names stand for themselves (`from left-a`).
    fn value_expr(&mut self, e: &Expr, sc: &mut Scope) -> X {
        if let ExprKind::Name(n) = &e.kind {
            if self.resolve_name(n, sc).is_none() && !self.lets.contains_key(n) {
                return x(Ex::Const(Value::str(n)));
            }
        }
        self.expr(e, sc).0
    }

    fn actions(&mut self, a: &Actions, sc: &mut Scope, states: &[String]) -> ActionsC {
        let mut sets = Vec::new();
        for st in &a.sets {
            let key = st.key.as_ref().map(|k| self.expr(k, sc).0);
            let (xe, _) = self.expr(&st.value, sc);
            match Scope::lookup(&sc.vars, &st.name) {
                Some(i) => sets.push((i, key, xe)),
                None => self.sink.hint(
                    st.span,
                    format!("unknown variable `{}`", st.name),
                    "declare it in the monitor with `var NAME = VALUE`",
                ),
            }
        }
        let mut msg = |c: &mut Self, m: &Option<Expr>| {
            m.as_ref().map(|e| {
                let (xe, _) = c.expr(e, sc);
                xe
            })
        };
        let term = match &a.terminal {
            Terminal::Stay => TermC::Stay,
            Terminal::Goto {
                state,
                state_span,
                timeout,
            } => {
                let t = timeout.as_ref().map(|t| self.duration_expr(t, sc));
                match states.iter().position(|s| s == state) {
                    Some(i) => TermC::Goto(i as u16, t),
                    None => {
                        let hint = match closest(state, states) {
                            Some(c) => {
                                format!("did you mean `{c}`? states here: {}", states.join(", "))
                            }
                            None => format!("states here: {}", states.join(", ")),
                        };
                        self.sink
                            .hint(*state_span, format!("unknown state `{state}`"), hint);
                        TermC::Stay
                    }
                }
            }
            Terminal::Accept(m, with) => {
                let m = msg(self, m);
                let w = with.as_ref().map(|e| {
                    let (xe, t) = self.expr(e, sc);
                    self.bind_tys.push(t);
                    xe
                });
                TermC::Accept(m, w)
            }
            Terminal::Fail(m) => TermC::Fail(msg(self, m)),
            Terminal::Inconclusive(m) => TermC::Inconclusive(msg(self, m)),
        };
        ActionsC { sets, term }
    }

    fn resolve_name(&self, n: &str, sc: &Scope) -> Option<(Ex, Ty)> {
        if let Some(i) = sc.locals.iter().rposition(|l| l == n) {
            return Some((Ex::Local(i as u16), Ty::Any));
        }
        if let Some(i) = Scope::lookup(&sc.caps, n) {
            return Some((Ex::Cap(i), Ty::Str));
        }
        if let Some(i) = Scope::lookup(&sc.vars, n) {
            return Some((Ex::Var(i), Ty::Any));
        }
        if let Some(i) = Scope::lookup(&sc.windows, n) {
            return Some((Ex::Win(i), Ty::Any));
        }
        if let Some(i) = sc.params.iter().position(|p| p.name == n) {
            let p = &sc.params[i];
            return Some((
                Ex::Param(i as u16),
                if p.variadic { Ty::List } else { p.ty },
            ));
        }
        Some(match n {
            "ts" => (Ex::Ts, Ty::Int),
            "seq" => (Ex::Seq, Ty::Int),
            "source" => (Ex::Source, Ty::Str),
            "service" => (Ex::Service, Ty::Str),
            "container" => (Ex::Container, Ty::Str),
            "kind" => (Ex::Kind, Ty::Str),
            "message" => (Ex::Message, Ty::Str),
            "data" => (Ex::Data, Ty::Any),
            "here" => (Ex::Here, Ty::Str),
            "key" => (Ex::Key, Ty::Any),
            _ => return None,
        })
    }

    /// Compiles an expression in a machine scope, returning it and its static type.
    /// Counts one unit of work at `span`: false (with one error for the whole compilation) once
    /// the spec expands past [`MAX_WORK`].
    fn spend(&mut self, span: Span) -> bool {
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

    fn expr(&mut self, e: &Expr, sc: &mut Scope) -> (X, Ty) {
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

    fn expr_inner(&mut self, e: &Expr, sc: &mut Scope) -> (X, Ty) {
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
                None => {
                    if self.lets.contains_key(n) {
                        match self.let_value(n, e.span) {
                            Ok(v) => {
                                let t = value_ty(&v);
                                (Ex::Const(v), t, true)
                            }
                            Err(()) => (Ex::Const(Value::Null), Ty::Any, false),
                        }
                    } else {
                        let mut cands: Vec<String> =
                            EVENT_FIELDS.iter().map(|s| s.to_string()).collect();
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
                        self.sink.hint(e.span, format!("unknown name `{n}`"), hint);
                        (Ex::Const(Value::Null), Ty::Any, false)
                    }
                }
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
                    if ps.len() != args.len() {
                        self.sink.hint(
                            e.span,
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
                            e.span,
                            format!("macro `{name}` expands too deeply (is it recursive?)"),
                        );
                        return (x(Ex::Const(Value::Null)), Ty::Any);
                    }
                    let map: HashMap<&str, &Expr> =
                        ps.iter().map(|s| s.as_str()).zip(args.iter()).collect();
                    let expanded = substitute(&body, &map);
                    sc.macro_depth += 1;
                    let (mut r, t) = self.expr(&expanded, sc);
                    sc.macro_depth -= 1;
                    r.text = text;
                    return (r, t);
                }
                let Some((b, arity, rt)) = crate::ir_builtin(name) else {
                    let mut cands: Vec<String> =
                        crate::BUILTINS.iter().map(|s| s.to_string()).collect();
                    cands.extend(self.defs.keys().cloned());
                    let hint = match closest(name, &cands) {
                        Some(c) => format!("did you mean `{c}`?"),
                        None => format!("built-ins: {}", crate::BUILTINS.join(", ")),
                    };
                    self.sink
                        .hint(e.span, format!("unknown function `{name}`"), hint);
                    return (x(Ex::Const(Value::Null)), Ty::Any);
                };
                if arity != args.len() {
                    self.sink.err(
                        e.span,
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
                (Ex::Call(b, xs.into_iter().map(|a| a.0).collect()), rt, true)
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
            } => {
                let (lx, lt) = self.expr(lhs, sc);
                if !matches!(lt, Ty::Str | Ty::Any) {
                    self.sink.hint(
                        lhs.span,
                        format!("`~` matches strings, found {}", lt.name()),
                        "match `message` or a string field",
                    );
                }
                match regex::Regex::new(regex) {
                    Ok(re) => {
                        let caps = re
                            .capture_names()
                            .enumerate()
                            .filter_map(|(i, n)| {
                                n.and_then(|n| Scope::lookup(&sc.caps, n).map(|s| (i, s)))
                            })
                            .collect();
                        (
                            Ex::Match {
                                negated: *negated,
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
                            *regex_span,
                            format!("invalid regex: {}", last.trim_start_matches("error: ")),
                            "the syntax is Rust's regex crate; named groups are (?P<name>...)",
                        );
                        (Ex::Const(Value::Bool(false)), Ty::Bool, false)
                    }
                }
            }
            ExprKind::Quant { q, var, list, body } => {
                let (lx, lt) = self.expr(list, sc);
                if !matches!(lt, Ty::List | Ty::Any) {
                    self.sink.hint(
                        list.span,
                        format!(
                            "`{}` iterates over a list, found {}",
                            quant_name(*q),
                            lt.name()
                        ),
                        "e.g. `all n in nodes: ...`",
                    );
                }
                sc.locals.push(var.clone());
                let local = (sc.locals.len() - 1) as u16;
                sc.max_locals = sc.max_locals.max(sc.locals.len());
                let (bx, bt) = self.expr(body, sc);
                sc.locals.pop();
                if !matches!(bt, Ty::Bool | Ty::Any) {
                    self.sink.err(
                        body.span,
                        format!(
                            "the body of `{}` must be a boolean, found {}",
                            quant_name(*q),
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
                        q: *q,
                        local,
                        list: Box::new(lx),
                        body: Box::new(bx),
                    },
                    t,
                    false,
                )
            }
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

    fn bin_type(&mut self, op: BinOp, a: Ty, b: Ty, span: Span) -> Ty {
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

    // ---------- temporal sugar ----------

    fn temporal(
        &mut self,
        name: &str,
        span: Span,
        params: Vec<ParamC>,
        per: Option<&Expr>,
        e: &MExpr,
    ) -> Option<Machine> {
        let ps = |p: &Pattern| p.clone();
        let fail_msg = |txt: String| Some(Expr::new(ExprKind::Lit(Lit::Str(txt)), e.span));
        let handler = |p: Pattern, term: Terminal| Handler {
            on: On::Event(p),
            actions: Actions {
                sets: vec![],
                terminal: term,
                span: e.span,
            },
            span: e.span,
        };
        let special = |on: On, term: Terminal| Handler {
            on,
            actions: Actions {
                sets: vec![],
                terminal: term,
                span: e.span,
            },
            span: e.span,
        };
        let st = |n: &str, timeout: Option<Expr>, handlers: Vec<Handler>| StateDecl {
            name: n.into(),
            span: e.span,
            timeout,
            handlers,
            opens_when_fault_done: false,
        };
        let states = match &e.kind {
            MExprKind::Always(p) => {
                let mut q = ps(p);
                let ptxt = self.text(p.span);
                q.guard = Some(match &p.guard {
                    Some(g) => Expr::new(ExprKind::Not(Box::new(g.clone())), g.span),
                    None => {
                        self.sink.hint(
                            p.span,
                            "`always` needs a condition",
                            "write `always SOURCE where CONDITION`",
                        );
                        return None;
                    }
                });
                vec![st(
                    "holding",
                    None,
                    vec![
                        handler(
                            q,
                            Terminal::Fail(fail_msg(format!("always violated: {ptxt}"))),
                        ),
                        special(On::End, Terminal::Accept(None, None)),
                    ],
                )]
            }
            MExprKind::Never(p) => {
                let ptxt = self.text(p.span);
                vec![st(
                    "watching",
                    None,
                    vec![
                        handler(
                            ps(p),
                            Terminal::Fail(fail_msg(format!("never violated: {ptxt}"))),
                        ),
                        special(On::End, Terminal::Accept(None, None)),
                    ],
                )]
            }
            MExprKind::Eventually(p, within) => {
                let ptxt = self.text(p.span);
                let mut hs = vec![handler(ps(p), Terminal::Accept(None, None))];
                if within.is_some() {
                    hs.push(special(
                        On::Timeout,
                        Terminal::Fail(fail_msg(format!(
                            "no `{ptxt}` within {}",
                            within
                                .as_ref()
                                .map(|w| self.text(w.span))
                                .unwrap_or_default()
                        ))),
                    ));
                }
                vec![st("waiting", within.clone(), hs)]
            }
            MExprKind::After(p, q, within) => {
                let qtxt = self.text(q.span);
                let ptxt = self.text(p.span);
                let wtxt = within
                    .as_ref()
                    .map(|w| self.text(w.span))
                    .unwrap_or_default();
                let mut waiting = vec![handler(
                    ps(q),
                    Terminal::Goto {
                        state: "idle".into(),
                        state_span: e.span,
                        timeout: None,
                    },
                )];
                if within.is_some() {
                    waiting.push(special(
                        On::Timeout,
                        Terminal::Fail(fail_msg(format!(
                            "no `{qtxt}` within {wtxt} after `{ptxt}`"
                        ))),
                    ));
                }
                vec![
                    st(
                        "idle",
                        None,
                        vec![
                            handler(
                                ps(p),
                                Terminal::Goto {
                                    state: "waiting".into(),
                                    state_span: e.span,
                                    timeout: within.clone(),
                                },
                            ),
                            special(On::End, Terminal::Accept(None, None)),
                        ],
                    ),
                    // `after fault ...`: the response window opens when the fault is done
                    StateDecl {
                        opens_when_fault_done: true,
                        ..st("waiting", None, waiting)
                    },
                ]
            }
            MExprKind::Stable(d, of) => {
                let p = of.clone().unwrap_or(Pattern {
                    source: None,
                    kind: None,
                    from: None,
                    guard: None,
                    span: e.span,
                });
                let ptxt = if of.is_some() {
                    self.text(p.span)
                } else {
                    "any event".into()
                };
                let dtxt = self.text(d.span);
                vec![st(
                    "quiet",
                    Some(d.clone()),
                    vec![
                        handler(
                            p,
                            Terminal::Fail(fail_msg(format!(
                                "not stable for {dtxt}: {ptxt} happened"
                            ))),
                        ),
                        special(On::Timeout, Terminal::Accept(None, None)),
                    ],
                )]
            }
            _ => return None,
        };
        self.machine(name, span, params, per, &[], &[], &states)
    }

    // ---------- monitor expressions ----------

    /// Instantiates monitor `name` with argument values.
    fn instantiate(
        &mut self,
        name: &str,
        span: Span,
        args: Vec<Value>,
        at: Option<Arc<str>>,
        depth: usize,
    ) -> Option<MonExpr> {
        if depth > 16 {
            self.sink
                .err(span, format!("monitor `{name}` is composed of itself"));
            return None;
        }
        let disp = display_ref(name, &args, at.as_deref());
        match self.monitors.get(name) {
            Some((_, MonDef::Machine(m))) => Some(MonExpr::Ref(MonRef {
                machine: m.clone(),
                params: args.into(),
                at,
                display: disp,
            })),
            Some((_, MonDef::Composite { params, body })) => {
                let env: HashMap<String, Value> =
                    params.iter().map(|p| p.name.clone()).zip(args).collect();
                let body = body.clone();
                self.mexpr(&body, &env, at, depth + 1)
            }
            None => None,
        }
    }

    /// Binds argument expressions to parameters (with variadics and defaults) and checks types.
    fn bind_args(
        &mut self,
        name: &str,
        span: Span,
        params: &[ParamC],
        args: &[Expr],
        env: &HashMap<String, Value>,
    ) -> Option<Vec<Value>> {
        let mut vals = Vec::new();
        let mut ok = true;
        for a in args {
            match self.const_eval(a, env, true) {
                Ok(v) => vals.push((v, a.span)),
                Err(()) => ok = false,
            }
        }
        if !ok {
            return None;
        }
        let mut out = Vec::new();
        let sig = params
            .iter()
            .map(|p| {
                format!(
                    "{}: {}{}",
                    p.name,
                    p.ty.name(),
                    if p.variadic { "..." } else { "" }
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let mut i = 0;
        for p in params {
            if p.variadic {
                let rest: Vec<(Value, Span)> = vals[i.min(vals.len())..].to_vec();
                i = vals.len();
                if rest.len() == 1 && matches!(rest[0].0, Value::List(_)) {
                    if let Value::List(l) = &rest[0].0 {
                        for v in l.iter() {
                            self.check_value_ty(v, p.ty, rest[0].1, &p.name);
                        }
                    }
                    out.push(rest[0].0.clone());
                } else {
                    for (v, sp) in &rest {
                        self.check_value_ty(v, p.ty, *sp, &p.name);
                    }
                    if rest.is_empty() {
                        if let Some(d) = &p.default {
                            out.push(d.clone());
                            continue;
                        }
                    }
                    out.push(Value::List(rest.into_iter().map(|r| r.0).collect()));
                }
                continue;
            }
            if i < vals.len() {
                let (v, sp) = vals[i].clone();
                // a float parameter accepts ints
                let v = match (p.ty, v) {
                    (Ty::Float, Value::Int(n)) => Value::Float(n as f64),
                    (_, v) => v,
                };
                self.check_value_ty(&v, p.ty, sp, &p.name);
                out.push(v);
                i += 1;
            } else if let Some(d) = &p.default {
                out.push(d.clone());
            } else {
                self.sink.hint(
                    span,
                    format!("`{name}` needs an argument for `{}`", p.name),
                    format!("`{name}({sig})`"),
                );
                return None;
            }
        }
        if i < vals.len() {
            self.sink.hint(
                vals[i].1,
                format!(
                    "`{name}` takes {} argument(s), {} given",
                    params.len(),
                    vals.len()
                ),
                format!("`{name}({sig})`"),
            );
            return None;
        }
        Some(out)
    }

    fn mexpr(
        &mut self,
        e: &MExpr,
        env: &HashMap<String, Value>,
        at: Option<Arc<str>>,
        depth: usize,
    ) -> Option<MonExpr> {
        if !self.spend(e.span) {
            return None;
        }
        match &e.kind {
            MExprKind::And(a, b) => {
                let (a, b) = (
                    self.mexpr(a, env, at.clone(), depth),
                    self.mexpr(b, env, at, depth),
                );
                Some(MonExpr::And(Box::new(a?), Box::new(b?)))
            }
            MExprKind::Or(a, b) => {
                let (a, b) = (
                    self.mexpr(a, env, at.clone(), depth),
                    self.mexpr(b, env, at, depth),
                );
                Some(MonExpr::Or(Box::new(a?), Box::new(b?)))
            }
            MExprKind::Not(a) => Some(MonExpr::Not(Box::new(self.mexpr(a, env, at, depth)?))),
            MExprKind::Ref {
                name,
                name_span,
                args,
                at: inner_at,
            } => {
                let at = match inner_at {
                    Some(a) => match self.const_eval(a, env, true) {
                        Ok(Value::Str(s)) => Some(s),
                        Ok(v) => {
                            self.sink.hint(
                                a.span,
                                format!("`at` needs a service name, found {}", value_ty(&v).name()),
                                "e.g. `inCluster(left-a) at left-a`",
                            );
                            None
                        }
                        Err(()) => None,
                    },
                    None => at,
                };
                let params = match self.monitors.get(name) {
                    Some((_, MonDef::Machine(m))) => m.params.clone(),
                    Some((_, MonDef::Composite { params, .. })) => params.clone(),
                    None if self.broken.contains(name) => return None,
                    None => {
                        let cands: Vec<String> = self.monitors.keys().cloned().collect();
                        let hint = match closest(name, &cands) {
                            Some(c) => format!("did you mean `{c}`?"),
                            None => {
                                "declare it with `monitor NAME ...` or import the file that does"
                                    .into()
                            }
                        };
                        self.sink
                            .hint(*name_span, format!("unknown monitor `{name}`"), hint);
                        return None;
                    }
                };
                let vals = self.bind_args(name, e.span, &params, args, env)?;
                self.instantiate(name, *name_span, vals, at, depth)
            }
            _ => {
                // an inline temporal form: compile an anonymous machine closing over `env`
                let names: Vec<String> = env.keys().cloned().collect();
                let params: Vec<ParamC> = names
                    .iter()
                    .map(|n| ParamC {
                        name: n.clone(),
                        ty: value_ty(&env[n]),
                        variadic: false,
                        default: None,
                    })
                    .collect();
                let txt = self.text(e.span);
                let m = self.temporal(&txt, e.span, params, None, e)?;
                let vals: Vec<Value> = names.iter().map(|n| env[n].clone()).collect();
                let display = match &at {
                    Some(s) => format!("({txt}) at {s}"),
                    None => format!("({txt})"),
                };
                Some(MonExpr::Ref(MonRef {
                    machine: Arc::new(m),
                    params: vals.into(),
                    at,
                    display,
                }))
            }
        }
    }

    // ---------- experiments ----------

    /// Compiles one experiment step; `env` holds the values of the bindings it uses.
    fn step(&mut self, st: &StepDecl, env: &HashMap<String, Value>) -> Option<Step> {
        match st {
            StepDecl::Note(n) => Some(Step::Note(n.clone())),
            StepDecl::Expect {
                m,
                within,
                binds,
                span,
            } => {
                let w = within.as_ref().and_then(|w| self.const_duration(w));
                let monitor = self.mexpr(m, env, None, 0)?;
                Some(Step::Expect(ExpectStep {
                    monitor,
                    within: w,
                    span: location(self.files, *span),
                    text: self.text(*span),
                    binds: binds.as_ref().map(|b| b.0.clone()),
                }))
            }
            StepDecl::Do {
                action,
                args,
                target,
                dur,
                span,
            } => {
                let mut a = Vec::new();
                for (k, v) in args {
                    if let Ok(val) = self.const_eval(v, env, true) {
                        a.push((k.clone(), to_literal(&val)));
                    }
                }
                let name = |c: &mut Self, e: &Expr| -> Option<String> {
                    match c.const_eval(e, env, true) {
                        Ok(Value::Str(s)) => Some(s.to_string()),
                        Ok(v) => {
                            c.sink.hint(
                                e.span,
                                format!(
                                    "a fault target must be a name, found {}",
                                    value_ty(&v).name()
                                ),
                                "e.g. `do pause on right-a`",
                            );
                            None
                        }
                        Err(()) => None,
                    }
                };
                let names = |c: &mut Self, es: &[Expr]| -> Option<Vec<String>> {
                    let mut out = Vec::new();
                    for e in es {
                        // a `let` list inside brackets expands
                        match c.const_eval(e, env, true) {
                            Ok(Value::List(l)) => {
                                out.extend(l.iter().filter_map(|v| v.as_str().map(str::to_string)))
                            }
                            Ok(Value::Str(s)) => out.push(s.to_string()),
                            _ => {
                                c.sink.err(e.span, "a fault target must be a name");
                                return None;
                            }
                        }
                    }
                    Some(out)
                };
                let target = match target {
                    TargetDecl::Service(e) => match self.const_eval(e, env, true) {
                        Ok(Value::List(l)) => FaultTarget::Services(
                            l.iter()
                                .filter_map(|v| v.as_str().map(str::to_string))
                                .collect(),
                        ),
                        _ => FaultTarget::Service(name(self, e)?),
                    },
                    TargetDecl::Container(e) => FaultTarget::Container(name(self, e)?),
                    TargetDecl::Network(e) => FaultTarget::Network(name(self, e)?),
                    TargetDecl::Services(es) => FaultTarget::Services(names(self, es)?),
                    TargetDecl::Random(es) => FaultTarget::Random(names(self, es)?),
                    TargetDecl::Between(a, b) => {
                        FaultTarget::Between(names(self, a)?, names(self, b)?)
                    }
                    TargetDecl::FromTo(a, b) => {
                        FaultTarget::FromTo(names(self, a)?, names(self, b)?)
                    }
                };
                let duration = dur.as_ref().and_then(|d| self.const_duration(d));
                Some(Step::Do(FaultCall {
                    action: action.clone(),
                    args: a,
                    target,
                    duration,
                    span: location(self.files, *span),
                    text: self.text(*span),
                }))
            }
        }
    }

    fn const_duration(&mut self, e: &Expr) -> Option<std::time::Duration> {
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

/// Widens the source prefilter with one pattern (`None` pattern or source: any event).
fn add_source(sources: &mut Option<Vec<Box<str>>>, p: Option<&PatternC>) {
    match (sources.as_mut(), p.and_then(|p| p.source.as_ref())) {
        (Some(v), Some(s)) if !v.contains(s) => v.push(s.clone()),
        (Some(_), Some(_)) => {}
        (Some(_), None) => *sources = None,
        _ => {}
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

fn placeholder(t: Ty) -> Value {
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

pub(crate) fn lit_value(l: &Lit) -> Value {
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

fn value_ty(v: &Value) -> Ty {
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

fn to_literal(v: &Value) -> Literal {
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

fn display_ref(name: &str, args: &[Value], at: Option<&str>) -> String {
    let mut s = name.to_string();
    if !args.is_empty() {
        let parts: Vec<String> = args
            .iter()
            .map(|a| match a {
                Value::Str(x) => x.to_string(),
                Value::List(l) => l
                    .iter()
                    .map(|v| {
                        v.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| v.to_string())
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
                Value::Dur(d) => fmt_dur(*d),
                other => other.to_string(),
            })
            .collect();
        s.push_str(&format!("({})", parts.join(", ")));
    }
    if let Some(a) = at {
        s.push_str(&format!(" at {a}"));
    }
    s
}

fn collect_caps(e: &Expr, out: &mut Vec<String>) {
    match &e.kind {
        ExprKind::Match { lhs, regex, .. } => {
            collect_caps(lhs, out);
            if let Ok(re) = regex::Regex::new(regex) {
                for n in re.capture_names().flatten() {
                    if !out.iter().any(|o| o == n) {
                        out.push(n.to_string());
                    }
                }
            }
        }
        ExprKind::List(v) | ExprKind::Call(_, v) => v.iter().for_each(|i| collect_caps(i, out)),
        ExprKind::Field(a, _) | ExprKind::Neg(a) | ExprKind::Not(a) => collect_caps(a, out),
        ExprKind::Index(a, b) | ExprKind::Bin(_, a, b) => {
            collect_caps(a, out);
            collect_caps(b, out);
        }
        ExprKind::Quant { list, body, .. } => {
            collect_caps(list, out);
            collect_caps(body, out);
        }
        ExprKind::If(a, b, c) => {
            collect_caps(a, out);
            collect_caps(b, out);
            collect_caps(c, out);
        }
        ExprKind::Lit(_) | ExprKind::Name(_) => {}
    }
}

/// Every name an expression uses (with its span), except the variables its quantifiers bind.
fn collect_names(e: &Expr, out: &mut Vec<(String, Span)>) {
    match &e.kind {
        ExprKind::Name(n) => out.push((n.clone(), e.span)),
        ExprKind::Lit(_) => {}
        ExprKind::Match { lhs, .. } => collect_names(lhs, out),
        ExprKind::List(v) | ExprKind::Call(_, v) => v.iter().for_each(|i| collect_names(i, out)),
        ExprKind::Field(a, _) | ExprKind::Neg(a) | ExprKind::Not(a) => collect_names(a, out),
        ExprKind::Index(a, b) | ExprKind::Bin(_, a, b) => {
            collect_names(a, out);
            collect_names(b, out);
        }
        ExprKind::Quant {
            var, list, body, ..
        } => {
            collect_names(list, out);
            let mut inner = Vec::new();
            collect_names(body, &mut inner);
            out.extend(inner.into_iter().filter(|(n, _)| n != var));
        }
        ExprKind::If(a, b, c) => {
            collect_names(a, out);
            collect_names(b, out);
            collect_names(c, out);
        }
    }
}

fn collect_pattern_names(p: &Pattern, out: &mut Vec<(String, Span)>) {
    for e in p.from.iter().chain(p.guard.iter()) {
        collect_names(e, out);
    }
}

fn collect_mexpr_names(m: &MExpr, out: &mut Vec<(String, Span)>) {
    match &m.kind {
        MExprKind::And(a, b) | MExprKind::Or(a, b) => {
            collect_mexpr_names(a, out);
            collect_mexpr_names(b, out);
        }
        MExprKind::Not(a) => collect_mexpr_names(a, out),
        MExprKind::Ref { args, at, .. } => {
            for e in args.iter().chain(at.iter()) {
                collect_names(e, out);
            }
        }
        MExprKind::Always(p) | MExprKind::Never(p) => collect_pattern_names(p, out),
        MExprKind::Eventually(p, w) => {
            collect_pattern_names(p, out);
            w.iter().for_each(|e| collect_names(e, out));
        }
        MExprKind::After(p, q, w) => {
            collect_pattern_names(p, out);
            collect_pattern_names(q, out);
            w.iter().for_each(|e| collect_names(e, out));
        }
        MExprKind::Stable(d, p) => {
            collect_names(d, out);
            if let Some(p) = p {
                collect_pattern_names(p, out);
            }
        }
    }
}

/// Every name a step uses: in its monitor expression, its fault target, arguments, durations.
fn step_names(st: &StepDecl) -> Vec<(String, Span)> {
    let mut out = Vec::new();
    match st {
        StepDecl::Note(_) => {}
        StepDecl::Expect { m, within, .. } => {
            collect_mexpr_names(m, &mut out);
            within.iter().for_each(|e| collect_names(e, &mut out));
        }
        StepDecl::Do {
            args, target, dur, ..
        } => {
            for (_, e) in args {
                collect_names(e, &mut out);
            }
            dur.iter().for_each(|e| collect_names(e, &mut out));
            match target {
                TargetDecl::Service(e) | TargetDecl::Container(e) | TargetDecl::Network(e) => {
                    collect_names(e, &mut out)
                }
                TargetDecl::Services(v) | TargetDecl::Random(v) => {
                    v.iter().for_each(|e| collect_names(e, &mut out))
                }
                TargetDecl::Between(a, b) | TargetDecl::FromTo(a, b) => {
                    a.iter().chain(b).for_each(|e| collect_names(e, &mut out))
                }
            }
        }
    }
    out
}

/// Can the monitor expression accept with a value (`accept ... with V` in some machine)?
fn mon_binds(m: &MonExpr) -> bool {
    match m {
        MonExpr::Ref(r) => r.machine.binds.is_some(),
        MonExpr::And(a, b) | MonExpr::Or(a, b) => mon_binds(a) || mon_binds(b),
        MonExpr::Not(_) => false,
    }
}

/// The static type of the values a monitor expression accepts with (`any` when they differ).
fn mon_bind_ty(m: &MonExpr) -> Ty {
    match m {
        MonExpr::Ref(r) => r.machine.binds.unwrap_or(Ty::Any),
        MonExpr::And(a, b) | MonExpr::Or(a, b) => match (mon_binds(a), mon_binds(b)) {
            (true, false) => mon_bind_ty(a),
            (false, true) => mon_bind_ty(b),
            _ if mon_bind_ty(a) == mon_bind_ty(b) => mon_bind_ty(a),
            _ => Ty::Any,
        },
        MonExpr::Not(_) => Ty::Any,
    }
}

/// What an experiment step stands on while the spec is checked, before the run binds it: the
/// binding's name for a string (or a value of unknown type), a list of it for a list.
fn binding_placeholder(name: &str, t: Ty) -> Value {
    match t {
        Ty::Str | Ty::Any => Value::str(name),
        Ty::List => Value::List(Arc::from(vec![Value::str(name)])),
        other => placeholder(other),
    }
}

/// What resolving a step that uses bindings needs: the compiled monitors, constants and
/// macros, the source files (for messages) and the step as written. Built once per spec.
pub(crate) struct Deferred {
    files: Vec<SourceFile>,
    lets: HashMap<String, Expr>,
    defs: HashMap<String, (Vec<String>, Expr)>,
    monitors: BTreeMap<String, (Span, MonDef)>,
    let_cache: HashMap<String, Value>,
    steps: HashMap<(String, usize), StepDecl>,
}

impl std::fmt::Debug for Deferred {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deferred")
            .field("steps", &self.steps.len())
            .finish()
    }
}

impl Deferred {
    /// Step `i` of experiment `exp` compiled with the bindings' values.
    pub(crate) fn resolve(
        &self,
        exp: &str,
        i: usize,
        bindings: &Bindings,
    ) -> Result<Step, Vec<String>> {
        let Some(decl) = self.steps.get(&(exp.to_string(), i)) else {
            return Err(vec![format!("step {} uses no binding", i + 1)]);
        };
        let mut c = Compiler {
            files: &self.files,
            sink: Sink::default(),
            lets: self.lets.clone(),
            defs: self.defs.clone(),
            monitors: self.monitors.clone(),
            let_cache: self.let_cache.clone(),
            let_busy: Vec::new(),
            broken: Vec::new(),
            work: 0,
            nest: 0,
            limit_reported: false,
            bind_tys: Vec::new(),
            deferred_steps: Vec::new(),
        };
        let env: HashMap<String, Value> = bindings
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let step = c.step(decl, &env);
        if !c.sink.is_empty() {
            let d = c.sink.into_diagnostics(&self.files);
            return Err(d
                .0
                .iter()
                .map(|d| format!("{}:{}:{}: {}", d.file, d.line, d.column, d.message))
                .collect());
        }
        step.ok_or_else(|| vec![format!("step {} could not be compiled", i + 1)])
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

/// The closest candidate by edit distance (at most 2 edits, or a case-insensitive match).
fn closest(n: &str, cands: &[String]) -> Option<String> {
    let mut best: Option<(usize, &String)> = None;
    for c in cands {
        let d = if c.eq_ignore_ascii_case(n) {
            0
        } else {
            levenshtein(n, c)
        };
        if d <= 2 && d < n.len().max(1) && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|b| b.1.clone())
}

fn levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut cur = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            cur[j] = (prev[j] + 1)
                .min(cur[j - 1] + 1)
                .min(prev[j - 1] + usize::from(a[i - 1] != b[j - 1]));
        }
        prev = cur;
    }
    prev[b.len()]
}
