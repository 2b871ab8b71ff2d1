//! Experiments: steps compiled (`expect` monitors, `do` fault calls with their targets and
//! arguments, notes), bindings checked (`expect ... as NAME` bound once, used only after), and
//! the steps that use bindings kept as written ([`Deferred`]) to be recompiled with the bound
//! values when a run reaches them.

use super::consts::{placeholder, to_literal, value_ty};
use super::monexpr::{mon_bind_ty, mon_binds};
use super::{Compiler, MonDef};
use crate::ast::*;
use crate::diag::{location, Sink, SourceFile, Span};
use crate::ir::*;
use crate::value::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

impl Compiler<'_> {
    /// Compiles experiment `name`: checks its bindings (each bound once, before its uses) and
    /// compiles its steps, those that use bindings with placeholders (kept for [`Deferred`]).
    pub(super) fn experiment(
        &mut self,
        name: String,
        span: Span,
        steps: Vec<StepDecl>,
    ) -> Experiment {
        let bound = self.bound_names(&name, &steps);
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
        Experiment {
            name,
            steps: out,
            location: location(self.files, span),
            uses,
            deferred: None,
        }
    }

    /// The names the steps bind (`expect ... as NAME`), with the binding step.
    fn bound_names(&mut self, name: &str, steps: &[StepDecl]) -> HashMap<String, (usize, Span)> {
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
        bound
    }

    /// Compiles one experiment step; `env` holds the values of the bindings it uses.
    pub(super) fn step(&mut self, st: &StepDecl, env: &HashMap<String, Value>) -> Option<Step> {
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
pub(super) struct Deferred {
    pub(super) files: Vec<SourceFile>,
    pub(super) lets: HashMap<String, Expr>,
    pub(super) defs: HashMap<String, (Vec<String>, Expr)>,
    pub(super) monitors: BTreeMap<String, (Span, MonDef)>,
    pub(super) let_cache: HashMap<String, Value>,
    pub(super) steps: HashMap<(String, usize), StepDecl>,
}

impl std::fmt::Debug for Deferred {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deferred")
            .field("steps", &self.steps.len())
            .finish()
    }
}

impl ResolveStep for Deferred {
    /// Step `i` of experiment `exp` compiled with the bindings' values.
    fn resolve(&self, exp: &str, i: usize, bindings: &Bindings) -> Result<Step, Vec<String>> {
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
