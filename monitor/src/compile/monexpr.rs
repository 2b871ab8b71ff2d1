//! Monitor expressions: references to declared monitors instantiated with argument values
//! (variadics, defaults and types checked), `and`/`or`/`not` compositions, inline temporal
//! forms closing over their environment, and the monitors' infos.

use super::consts::{placeholder, value_ty};
use super::{closest, Compiler, MonDef};
use crate::ast::*;
use crate::diag::{location, Sink, Span};
use crate::ir::*;
use crate::value::{fmt_dur, Value};
use std::collections::HashMap;
use std::sync::Arc;

impl Compiler<'_> {
    /// The declared monitors' infos, in name order; composites are checked by instantiating
    /// them with their defaults, or (when a parameter has none) with placeholders.
    pub(super) fn monitor_infos(&mut self) -> Vec<MonitorInfo> {
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
        infos
    }

    /// Instantiates monitor `name` with argument values.
    pub(super) fn instantiate(
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
    pub(super) fn bind_args(
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

    pub(super) fn mexpr(
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

/// Can the monitor expression accept with a value (`accept ... with V` in some machine)?
pub(super) fn mon_binds(m: &MonExpr) -> bool {
    match m {
        MonExpr::Ref(r) => r.machine.binds.is_some(),
        MonExpr::And(a, b) | MonExpr::Or(a, b) => mon_binds(a) || mon_binds(b),
        MonExpr::Not(_) => false,
    }
}

/// The static type of the values a monitor expression accepts with (`any` when they differ).
pub(super) fn mon_bind_ty(m: &MonExpr) -> Ty {
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
