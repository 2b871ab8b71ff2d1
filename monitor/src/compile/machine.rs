//! State machines: a monitor's variables, windows, states and handlers compiled in one name
//! scope (parameters, variables, windows, regex captures, quantifier locals, event fields), its
//! patterns (with their specialised guards), actions, and the source prefilter.

use super::specialise::{specialise, specialise_key};
use super::{closest, num, x, Compiler, Scope};
use crate::ast::*;
use crate::diag::Span;
use crate::ir::*;
use crate::value::Value;

impl Compiler<'_> {
    /// Compiles a state machine (`None` when it has errors, all reported).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn machine(
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
        let caps = machine_caps(states, windows);
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
        let wins = self.windows(windows, &mut sc);
        let states_c = self.states(states, &mut sc);
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
            per_fast: per_c.as_ref().and_then(specialise_key),
            per: per_c,
            vars: vars_c,
            windows: wins,
            states: states_c,
            n_caps: sc.caps.len(),
            sources,
            binds,
        })
    }

    /// A machine's windows, compiled in its scope (each name declared once).
    fn windows(&mut self, windows: &[WindowDecl], sc: &mut Scope) -> Vec<WindowC> {
        let mut wins = Vec::new();
        for w in windows {
            let expr = w.expr.as_ref().map(|e| {
                let (xe, t) = self.expr(e, sc);
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
                    let (xe, t) = self.expr(e, sc);
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
            let of = w.of.as_ref().map(|p| self.pattern(p, sc));
            let by = w.by.as_ref().map(|k| self.expr(k, sc).0);
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
        wins
    }

    /// A machine's states and their handlers, compiled in its scope.
    fn states(&mut self, states: &[StateDecl], sc: &mut Scope) -> Vec<StateC> {
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
            let timeout = s.timeout.as_ref().map(|t| self.duration_expr(t, sc));
            let mut handlers = Vec::new();
            let mut on_timeout = None;
            let mut on_end = None;
            for h in &s.handlers {
                let htext = self.text(h.span);
                match &h.on {
                    On::Event(p) => {
                        let pat = self.pattern(p, sc);
                        let actions = self.actions(&h.actions, sc, &state_names);
                        handlers.push(HandlerC {
                            pat,
                            actions,
                            text: htext,
                        });
                    }
                    On::Timeout => {
                        let a = self.actions(&h.actions, sc, &state_names);
                        if on_timeout.is_some() {
                            self.sink
                                .err(h.span, "a state has at most one `on timeout` handler");
                        }
                        on_timeout = Some((a, htext));
                    }
                    On::End => {
                        let a = self.actions(&h.actions, sc, &state_names);
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
        states_c
    }

    /// A timeout: a duration expression, refused when negative.
    pub(super) fn duration_expr(&mut self, e: &Expr, sc: &mut Scope) -> X {
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

    pub(super) fn pattern(&mut self, p: &Pattern, sc: &mut Scope) -> PatternC {
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
            None => specialise(guard.as_ref()),
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
    pub(super) fn value_expr(&mut self, e: &Expr, sc: &mut Scope) -> X {
        if let ExprKind::Name(n) = &e.kind {
            if self.resolve_name(n, sc).is_none() && !self.lets.contains_key(n) {
                return x(Ex::Const(Value::str(n)));
            }
        }
        self.expr(e, sc).0
    }

    pub(super) fn actions(&mut self, a: &Actions, sc: &mut Scope, states: &[String]) -> ActionsC {
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

    pub(super) fn resolve_name(&self, n: &str, sc: &Scope) -> Option<(Ex, Ty)> {
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

/// The named groups of every regex literal in a machine's guards and timeouts (its captures).
fn machine_caps(states: &[StateDecl], windows: &[WindowDecl]) -> Vec<String> {
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
    caps
}
