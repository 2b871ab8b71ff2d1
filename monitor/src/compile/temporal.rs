//! Temporal forms (`always`, `never`, `eventually ... within`, `after ... within`, `stable
//! for`) desugared into the state machines they stand for, with failure messages quoting the
//! form as written.

use super::Compiler;
use crate::ast::*;
use crate::diag::Span;
use crate::ir::*;

impl Compiler<'_> {
    /// The machine a temporal form stands for (`None` for a composition or on errors).
    pub(super) fn temporal(
        &mut self,
        name: &str,
        span: Span,
        params: Vec<ParamC>,
        per: Option<&Expr>,
        e: &MExpr,
    ) -> Option<Machine> {
        let b = Parts { span: e.span };
        let states = match &e.kind {
            MExprKind::Always(p) => self.always(&b, p)?,
            MExprKind::Never(p) => self.never(&b, p),
            MExprKind::Eventually(p, within) => self.eventually(&b, p, within),
            MExprKind::After(p, q, within) => self.after(&b, p, q, within),
            MExprKind::Stable(d, of) => self.stable(&b, d, of),
            _ => return None,
        };
        self.machine(name, span, params, per, &[], &[], &states)
    }

    /// `always P where C`: fails on the first event matching P where C does not hold.
    fn always(&mut self, b: &Parts, p: &Pattern) -> Option<Vec<StateDecl>> {
        let mut q = p.clone();
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
        Some(vec![b.state(
            "holding",
            None,
            vec![
                b.handler(
                    q,
                    Terminal::Fail(b.fail_msg(format!("always violated: {ptxt}"))),
                ),
                b.special(On::End, Terminal::Accept(None, None)),
            ],
        )])
    }

    /// `never P`: fails on the first event matching P.
    fn never(&mut self, b: &Parts, p: &Pattern) -> Vec<StateDecl> {
        let ptxt = self.text(p.span);
        vec![b.state(
            "watching",
            None,
            vec![
                b.handler(
                    p.clone(),
                    Terminal::Fail(b.fail_msg(format!("never violated: {ptxt}"))),
                ),
                b.special(On::End, Terminal::Accept(None, None)),
            ],
        )]
    }

    /// `eventually P [within D]`: accepts on the first P (fails at the timeout).
    fn eventually(&mut self, b: &Parts, p: &Pattern, within: &Option<Expr>) -> Vec<StateDecl> {
        let ptxt = self.text(p.span);
        let mut hs = vec![b.handler(p.clone(), Terminal::Accept(None, None))];
        if within.is_some() {
            hs.push(b.special(
                On::Timeout,
                Terminal::Fail(b.fail_msg(format!(
                        "no `{ptxt}` within {}",
                        within
                            .as_ref()
                            .map(|w| self.text(w.span))
                            .unwrap_or_default()
                    ))),
            ));
        }
        vec![b.state("waiting", within.clone(), hs)]
    }

    /// `after P expect Q [within D]`: every P is followed by Q (within D of P, or of the end of
    /// the fault P matched).
    fn after(
        &mut self,
        b: &Parts,
        p: &Pattern,
        q: &Pattern,
        within: &Option<Expr>,
    ) -> Vec<StateDecl> {
        let qtxt = self.text(q.span);
        let ptxt = self.text(p.span);
        let wtxt = within
            .as_ref()
            .map(|w| self.text(w.span))
            .unwrap_or_default();
        let mut waiting = vec![b.handler(
            q.clone(),
            Terminal::Goto {
                state: "idle".into(),
                state_span: b.span,
                timeout: None,
            },
        )];
        if within.is_some() {
            waiting.push(b.special(
                On::Timeout,
                Terminal::Fail(b.fail_msg(format!("no `{qtxt}` within {wtxt} after `{ptxt}`"))),
            ));
        }
        vec![
            b.state(
                "idle",
                None,
                vec![
                    b.handler(
                        p.clone(),
                        Terminal::Goto {
                            state: "waiting".into(),
                            state_span: b.span,
                            timeout: within.clone(),
                        },
                    ),
                    b.special(On::End, Terminal::Accept(None, None)),
                ],
            ),
            // `after fault ...`: the response window opens when the fault is done
            StateDecl {
                opens_when_fault_done: true,
                ..b.state("waiting", None, waiting)
            },
        ]
    }

    /// `stable for D [of P]`: no event (matching P) for D.
    fn stable(&mut self, b: &Parts, d: &Expr, of: &Option<Pattern>) -> Vec<StateDecl> {
        let p = of.clone().unwrap_or(Pattern {
            source: None,
            kind: None,
            from: None,
            guard: None,
            span: b.span,
        });
        let ptxt = if of.is_some() {
            self.text(p.span)
        } else {
            "any event".into()
        };
        let dtxt = self.text(d.span);
        vec![b.state(
            "quiet",
            Some(d.clone()),
            vec![
                b.handler(
                    p,
                    Terminal::Fail(b.fail_msg(format!("not stable for {dtxt}: {ptxt} happened"))),
                ),
                b.special(On::Timeout, Terminal::Accept(None, None)),
            ],
        )]
    }
}

/// Builds the parts of a desugared form's states, all at the form's span.
struct Parts {
    span: Span,
}

impl Parts {
    /// A failure message literal.
    fn fail_msg(&self, txt: String) -> Option<Expr> {
        Some(Expr::new(ExprKind::Lit(Lit::Str(txt)), self.span))
    }

    fn actions(&self, term: Terminal) -> Actions {
        Actions {
            sets: vec![],
            terminal: term,
            span: self.span,
        }
    }

    /// `on PATTERN => TERM`.
    fn handler(&self, p: Pattern, term: Terminal) -> Handler {
        self.special(On::Event(p), term)
    }

    /// `on timeout => TERM` or `on end => TERM` (or an event handler).
    fn special(&self, on: On, term: Terminal) -> Handler {
        Handler {
            on,
            actions: self.actions(term),
            span: self.span,
        }
    }

    fn state(&self, n: &str, timeout: Option<Expr>, handlers: Vec<Handler>) -> StateDecl {
        StateDecl {
            name: n.into(),
            span: self.span,
            timeout,
            handlers,
            opens_when_fault_done: false,
        }
    }
}
