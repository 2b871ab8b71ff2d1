//! Hand-written recursive-descent parser: tokens to [`crate::ast::Item`]s. On a syntax error it
//! records a diagnostic and resynchronises at the next top-level item, so one run reports the
//! errors of every item.

use crate::ast::*;
use crate::diag::{Sink, Span};
use crate::lexer::{is_keyword, lex, Tok, Token};

type P<T> = Result<T, ()>;

pub(crate) struct Parser<'s> {
    toks: Vec<Token>,
    pos: usize,
    sink: &'s mut Sink,
    /// Current recursion depth of the descent (see [`MAX_DEPTH`]).
    nest: u32,
    /// The same for monitor expressions (see [`MAX_MDEPTH`]).
    mnest: u32,
}

/// Parses one file. Errors go to `sink`; the items that parsed are returned.
pub(crate) fn parse_file(file: u32, text: &str, sink: &mut Sink) -> Vec<Item> {
    let toks = lex(file, text, sink);
    let mut p = Parser {
        toks,
        pos: 0,
        sink,
        nest: 0,
        mnest: 0,
    };
    let mut items = Vec::new();
    while !p.at_eof() {
        let start = p.pos;
        match p.item() {
            Ok(it) => items.push(it),
            Err(()) => {
                // a monitor that failed to parse is still declared: remember its name
                if let (Tok::Name(kw), Tok::Name(name)) = (
                    &p.toks[start].tok,
                    &p.toks[(start + 1).min(p.toks.len() - 1)].tok,
                ) {
                    if kw == "monitor" && !is_keyword(name) {
                        p.sink.unparsed_monitors.push(name.clone());
                    }
                }
                p.recover(start)
            }
        }
    }
    items
}

const DEPTH_HINT: &str = "each level of parentheses, `not`, `if`, list, call, `.field` and each operand of an `and`/`or`/`+` chain counts; test many values with `x in [..]` or split the expression into `let`s";

const TOP: &[&str] = &["monitor", "experiment", "let", "def", "import"];

impl Parser<'_> {
    fn peek(&self) -> &Tok {
        &self.toks[self.pos].tok
    }
    fn peek_at(&self, n: usize) -> &Tok {
        &self.toks[(self.pos + n).min(self.toks.len() - 1)].tok
    }
    fn span(&self) -> Span {
        self.toks[self.pos].span
    }
    fn prev_span(&self) -> Span {
        self.toks[self.pos.saturating_sub(1)].span
    }
    fn at_eof(&self) -> bool {
        matches!(self.peek(), Tok::Eof)
    }
    fn bump(&mut self) -> Token {
        let t = self.toks[self.pos].clone();
        if self.pos + 1 < self.toks.len() {
            self.pos += 1;
        }
        t
    }
    fn is_kw(&self, kw: &str) -> bool {
        matches!(self.peek(), Tok::Name(n) if n == kw)
    }
    fn is_kw_at(&self, n: usize, kw: &str) -> bool {
        matches!(self.peek_at(n), Tok::Name(x) if x == kw)
    }
    fn eat_kw(&mut self, kw: &str) -> bool {
        if self.is_kw(kw) {
            self.bump();
            true
        } else {
            false
        }
    }
    fn eat(&mut self, t: &Tok) -> bool {
        if self.peek() == t {
            self.bump();
            true
        } else {
            false
        }
    }
    fn error<T>(&mut self, what: &str) -> P<T> {
        let found = self.peek().describe();
        let sp = self.span();
        self.sink.err(sp, format!("expected {what}, found {found}"));
        Err(())
    }
    fn error_hint<T>(&mut self, what: &str, hint: &str) -> P<T> {
        let found = self.peek().describe();
        let sp = self.span();
        self.sink
            .hint(sp, format!("expected {what}, found {found}"), hint);
        Err(())
    }
    fn expect(&mut self, t: Tok, what: &str) -> P<Span> {
        if self.peek() == &t {
            Ok(self.bump().span)
        } else {
            self.error(what)
        }
    }
    fn expect_kw(&mut self, kw: &str) -> P<Span> {
        if self.is_kw(kw) {
            Ok(self.bump().span)
        } else {
            self.error(&format!("`{kw}`"))
        }
    }
    fn ident(&mut self, what: &str) -> P<(String, Span)> {
        match self.peek().clone() {
            Tok::Name(n) if !is_keyword(&n) => {
                let sp = self.bump().span;
                Ok((n, sp))
            }
            Tok::Name(n) => self.error_hint(what, &format!("`{n}` is a reserved word")),
            _ => self.error(what),
        }
    }
    /// Runs one level of recursive descent, refused past [`MAX_DEPTH`] levels so that no input
    /// can overflow the stack.
    fn nested<T>(&mut self, f: impl FnOnce(&mut Self) -> P<T>) -> P<T> {
        if self.nest >= MAX_DEPTH {
            let sp = self.span();
            self.sink.hint(
                sp,
                format!("expression nested more than {MAX_DEPTH} levels deep"),
                DEPTH_HINT,
            );
            return Err(());
        }
        self.nest += 1;
        let r = f(self);
        self.nest -= 1;
        r
    }
    /// Refuses a node deeper than [`MAX_DEPTH`] (binary chains grow one level per operand),
    /// before anything is built on top of it.
    fn deep(&mut self, e: Expr) -> P<Expr> {
        if e.depth > MAX_DEPTH {
            let sp = self.prev_span();
            self.sink.hint(
                sp,
                format!("expression nested more than {MAX_DEPTH} levels deep"),
                DEPTH_HINT,
            );
            return Err(());
        }
        Ok(e)
    }
    fn mdeep(&mut self, e: MExpr) -> P<MExpr> {
        if e.depth > MAX_MDEPTH {
            let sp = self.prev_span();
            self.mdepth_error(sp);
            return Err(());
        }
        Ok(e)
    }
    fn mdepth_error(&mut self, sp: Span) {
        self.sink.hint(
            sp,
            format!("monitor expression nested more than {MAX_MDEPTH} levels deep"),
            "each level of parentheses and `not` and each operand of an `and`/`or` chain of monitors counts: name parts of it with `monitor NAME = ...`",
        );
    }
    /// [`Parser::nested`] for monitor expressions.
    fn mnested(&mut self, f: impl FnOnce(&mut Self) -> P<MExpr>) -> P<MExpr> {
        if self.mnest >= MAX_MDEPTH {
            let sp = self.span();
            self.mdepth_error(sp);
            return Err(());
        }
        self.mnest += 1;
        let r = f(self);
        self.mnest -= 1;
        r
    }
    fn recover(&mut self, start: usize) {
        // resume at the next top-level item, always making progress
        let at_top = matches!(self.peek(), Tok::Name(n) if TOP.contains(&n.as_str()));
        if !(at_top && self.pos > start) {
            self.bump();
        }
        while !self.at_eof() {
            if let Tok::Name(n) = self.peek() {
                if TOP.contains(&n.as_str()) {
                    return;
                }
            }
            self.bump();
        }
    }

    fn item(&mut self) -> P<Item> {
        let start = self.span();
        if self.eat_kw("import") {
            return match self.peek().clone() {
                Tok::Str(s) => {
                    let sp = self.bump().span;
                    Ok(Item::Import(s, start.to(sp)))
                }
                _ => self.error("a file path string after `import`"),
            };
        }
        if self.eat_kw("let") {
            let (name, sp) = self.ident("a name after `let`")?;
            self.expect(Tok::Assign, "`=`")?;
            let e = self.expr()?;
            return Ok(Item::Let(name, sp, e));
        }
        if self.eat_kw("def") {
            let (name, sp) = self.ident("a macro name after `def`")?;
            let mut params = Vec::new();
            if self.eat(&Tok::LParen) && !self.eat(&Tok::RParen) {
                loop {
                    params.push(self.ident("a parameter name")?);
                    if self.eat(&Tok::Comma) {
                        continue;
                    }
                    self.expect(Tok::RParen, "`,` or `)`")?;
                    break;
                }
            }
            self.expect(Tok::Assign, "`=`")?;
            let e = self.expr()?;
            return Ok(Item::Def(name, sp, params, e));
        }
        if self.eat_kw("monitor") {
            return self.monitor().map(Item::Monitor);
        }
        if self.eat_kw("experiment") {
            let (name, span) = self.ident("an experiment name")?;
            self.expect(Tok::LBrace, "`{`")?;
            let mut steps = Vec::new();
            while !self.eat(&Tok::RBrace) {
                if self.at_eof() {
                    return self.error("`}` closing the experiment");
                }
                steps.push(self.step()?);
            }
            return Ok(Item::Experiment { name, span, steps });
        }
        self.error_hint(
            "an item",
            "a file holds `import`, `let`, `def`, `monitor` and `experiment` items",
        )
    }

    fn ty(&mut self) -> P<Ty> {
        if self.eat(&Tok::LBracket) {
            let _ = self.nested(|p| p.ty())?;
            self.expect(Tok::RBracket, "`]`")?;
            return Ok(Ty::List);
        }
        let (n, _) = match self.peek().clone() {
            Tok::Name(n) => (n, self.bump().span),
            _ => return self.error("a type"),
        };
        Ok(match n.as_str() {
            "str" | "string" => Ty::Str,
            "int" => Ty::Int,
            "float" | "num" => Ty::Float,
            "bool" => Ty::Bool,
            "duration" => Ty::Dur,
            "list" => Ty::List,
            "any" => Ty::Any,
            _ => {
                let sp = self.prev_span();
                self.sink.hint(
                    sp,
                    format!("unknown type `{n}`"),
                    "types are str, int, float, bool, duration, list, any",
                );
                return Err(());
            }
        })
    }

    fn monitor(&mut self) -> P<MonitorDecl> {
        let (name, span) = self.ident("a monitor name")?;
        let mut params = Vec::new();
        if self.eat(&Tok::LParen) && !self.eat(&Tok::RParen) {
            loop {
                let (pname, psp) = self.ident("a parameter name")?;
                let (ty, variadic) = if self.eat(&Tok::Colon) {
                    let t = self.ty()?;
                    (t, self.eat(&Tok::Ellipsis))
                } else {
                    (Ty::Any, self.eat(&Tok::Ellipsis))
                };
                let default = if self.eat(&Tok::Assign) {
                    Some(self.expr()?)
                } else {
                    None
                };
                params.push(Param {
                    name: pname,
                    span: psp,
                    ty,
                    variadic,
                    default,
                });
                if self.eat(&Tok::Comma) {
                    continue;
                }
                self.expect(Tok::RParen, "`,` or `)`")?;
                break;
            }
        }
        let per = if self.eat_kw("per") {
            Some(self.expr()?)
        } else {
            None
        };
        if self.eat(&Tok::Assign) {
            let m = self.mexpr()?;
            return Ok(MonitorDecl {
                name,
                span,
                params,
                per,
                body: MonitorBody::Expr(m),
            });
        }
        if !self.eat(&Tok::LBrace) {
            return self.error_hint(
                "`{` or `=`",
                "a monitor is `monitor NAME(...) { state ... }` or `monitor NAME = never ...`",
            );
        }
        let mut vars = Vec::new();
        let mut windows = Vec::new();
        let mut states = Vec::new();
        loop {
            if self.eat(&Tok::RBrace) {
                break;
            }
            if self.eat_kw("var") {
                let (n, sp) = self.ident("a variable name")?;
                self.expect(Tok::Assign, "`=`")?;
                vars.push((n, sp, self.expr()?));
            } else if self.eat_kw("window") {
                windows.push(self.window()?);
            } else if self.eat_kw("state") {
                states.push(self.state()?);
            } else {
                return self.error_hint(
                    "`state`, `var`, `window` or `}`",
                    "a monitor body declares variables, windows and states",
                );
            }
        }
        Ok(MonitorDecl {
            name,
            span,
            params,
            per,
            body: MonitorBody::Machine {
                vars,
                windows,
                states,
            },
        })
    }

    fn window(&mut self) -> P<WindowDecl> {
        let (name, span) = self.ident("a window name")?;
        self.expect(Tok::Assign, "`=`")?;
        let (aname, asp) = match self.peek().clone() {
            Tok::Name(n) => (n, self.bump().span),
            _ => return self.error("an aggregate (count, sum, mean, min, max, p50, p99 ...)"),
        };
        let agg = match aname.as_str() {
            "count" => Agg::Count,
            "sum" => Agg::Sum,
            "mean" | "avg" => Agg::Mean,
            "min" => Agg::Min,
            "max" => Agg::Max,
            "latest" => Agg::Latest,
            n if Agg::percentile_of(n).is_some() => {
                Agg::Percentile(Agg::percentile_of(n).unwrap_or(10_000))
            }
            _ => {
                self.sink.hint(
                    asp,
                    format!("unknown aggregate `{aname}`"),
                    "aggregates are count, sum(E), mean(E), min(E), max(E), latest(E) by K, and percentiles p50(E), p90(E), p99(E), p999(E)",
                );
                return Err(());
            }
        };
        let expr = if agg == Agg::Count && !matches!(self.peek(), Tok::LParen) {
            // bare `count`: every sample counts
            None
        } else {
            self.expect(Tok::LParen, "`(`")?;
            let e = self.expr()?;
            self.expect(Tok::RParen, "`)`")?;
            Some(e)
        };
        let by = if agg == Agg::Latest {
            if !self.eat_kw("by") {
                return self.error_hint(
                    "`by`",
                    "e.g. `window role = latest(data.role) by service over last 10s`",
                );
            }
            Some(self.unary()?)
        } else {
            None
        };
        if !self.eat_kw("over") {
            return self.error_hint(
                "`over`",
                "e.g. `window w = mean(data.x) over last 10 events`",
            );
        }
        if !self.eat_kw("last") {
            return self.error("`last`");
        }
        let size = match self.peek().clone() {
            Tok::Int(n) if self.is_kw_at(1, "events") => {
                self.bump();
                self.bump();
                if n <= 0 {
                    let sp = self.prev_span();
                    self.sink.err(sp, "a window needs at least one event");
                }
                WindowSize::Events(n.max(1) as u64)
            }
            _ => WindowSize::Time(self.unary()?),
        };
        let of = if self.eat_kw("of") {
            Some(self.pattern()?)
        } else {
            None
        };
        Ok(WindowDecl {
            name,
            span,
            agg,
            expr,
            size,
            of,
            by,
        })
    }

    fn state(&mut self) -> P<StateDecl> {
        let (name, span) = self.ident("a state name")?;
        let timeout = if self.eat_kw("timeout") {
            Some(self.expr()?)
        } else {
            None
        };
        self.expect(Tok::LBrace, "`{`")?;
        let mut handlers = Vec::new();
        while !self.eat(&Tok::RBrace) {
            let hs = self.span();
            if !self.eat_kw("on") {
                return self.error_hint(
                    "`on` or `}`",
                    "handlers are `on PATTERN => ACTIONS`, `on timeout => ...`, `on end => ...`",
                );
            }
            let on = if self.eat_kw("timeout") {
                On::Timeout
            } else if self.eat_kw("end") {
                On::End
            } else {
                On::Event(self.pattern()?)
            };
            if !self.eat(&Tok::Arrow) {
                return self.error("`=>`");
            }
            let actions = self.actions()?;
            let span = hs.to(actions.span);
            handlers.push(Handler { on, actions, span });
        }
        Ok(StateDecl {
            name,
            span,
            timeout,
            handlers,
            opens_when_fault_done: false,
        })
    }

    fn actions(&mut self) -> P<Actions> {
        let start = self.span();
        let mut sets = Vec::new();
        loop {
            if self.eat_kw("set") {
                let (name, span) = self.ident("a variable name")?;
                let key = if self.eat(&Tok::LBracket) {
                    let k = self.expr()?;
                    self.expect(Tok::RBracket, "`]`")?;
                    Some(k)
                } else {
                    None
                };
                self.expect(Tok::Assign, "`=`")?;
                let value = self.expr()?;
                sets.push(SetDecl {
                    name,
                    span,
                    key,
                    value,
                });
                if self.eat(&Tok::Comma) {
                    continue;
                }
                let sp = start.to(self.prev_span());
                return Ok(Actions {
                    sets,
                    terminal: Terminal::Stay,
                    span: sp,
                });
            }
            break;
        }
        let msg = |p: &mut Self| -> P<Option<Expr>> {
            if p.starts_expr() {
                Ok(Some(p.expr()?))
            } else {
                Ok(None)
            }
        };
        let terminal = if self.eat_kw("stay") {
            Terminal::Stay
        } else if self.eat_kw("goto") {
            let (state, state_span) = self.ident("a state name")?;
            let timeout = if self.eat_kw("timeout") {
                Some(self.expr()?)
            } else {
                None
            };
            Terminal::Goto {
                state,
                state_span,
                timeout,
            }
        } else if self.eat_kw("accept") {
            // `accept [MSG] [with VALUE]`; `with` is a word only there, before an expression
            let with_follows = |p: &Self| p.is_kw("with") && starts_expr_tok(p.peek_at(1));
            let m = if with_follows(self) { None } else { msg(self)? };
            let with = if with_follows(self) {
                self.bump();
                Some(self.expr()?)
            } else {
                None
            };
            Terminal::Accept(m, with)
        } else if self.eat_kw("fail") {
            Terminal::Fail(msg(self)?)
        } else if self.eat_kw("inconclusive") {
            Terminal::Inconclusive(msg(self)?)
        } else {
            return self.error_hint("an action", "actions are `set V = E`, `stay`, `goto S [timeout D]`, `accept`, `fail \"why\"`, `inconclusive`");
        };
        Ok(Actions {
            sets,
            terminal,
            span: start.to(self.prev_span()),
        })
    }

    fn starts_expr(&self) -> bool {
        starts_expr_tok(self.peek())
    }

    fn pattern(&mut self) -> P<Pattern> {
        let start = self.span();
        let source = match self.peek().clone() {
            Tok::Name(n) if n == "event" => {
                self.bump();
                None
            }
            Tok::Name(n) if !is_keyword(&n) => {
                self.bump();
                Some(n)
            }
            Tok::Str(s) => {
                self.bump();
                Some(s)
            }
            _ => {
                return self.error_hint(
                    "an event source",
                    "e.g. `jmx`, `log`, `docker`, `fault`, or `event` for any source",
                )
            }
        };
        let kind = match self.peek().clone() {
            Tok::Str(s) => {
                self.bump();
                Some(s)
            }
            _ => None,
        };
        let from = if self.eat_kw("from") {
            Some(self.unary()?)
        } else {
            None
        };
        let guard = if self.eat_kw("where") {
            Some(self.expr()?)
        } else {
            None
        };
        Ok(Pattern {
            source,
            kind,
            from,
            guard,
            span: start.to(self.prev_span()),
        })
    }

    // ---- monitor expressions ----
    pub(crate) fn mexpr(&mut self) -> P<MExpr> {
        self.mnested(|p| p.mexpr_inner())
    }
    fn mexpr_inner(&mut self) -> P<MExpr> {
        let mut l = self.mand()?;
        while self.eat_kw("or") {
            let r = self.mand()?;
            let span = l.span.to(r.span);
            l = self.mdeep(MExpr::new(MExprKind::Or(Box::new(l), Box::new(r)), span))?;
        }
        Ok(l)
    }
    fn mand(&mut self) -> P<MExpr> {
        let mut l = self.mnot()?;
        while self.eat_kw("and") {
            let r = self.mnot()?;
            let span = l.span.to(r.span);
            l = self.mdeep(MExpr::new(MExprKind::And(Box::new(l), Box::new(r)), span))?;
        }
        Ok(l)
    }
    fn mnot(&mut self) -> P<MExpr> {
        let start = self.span();
        if self.eat_kw("not") {
            let inner = self.mnested(|p| p.mnot())?;
            let span = start.to(inner.span);
            return self.mdeep(MExpr::new(MExprKind::Not(Box::new(inner)), span));
        }
        self.mprim()
    }
    fn mprim(&mut self) -> P<MExpr> {
        let start = self.span();
        let kind = if self.eat(&Tok::LParen) {
            let m = self.mexpr()?;
            self.expect(Tok::RParen, "`)`")?;
            return Ok(MExpr {
                span: start.to(self.prev_span()),
                ..m
            });
        } else if self.eat_kw("always") {
            MExprKind::Always(self.pattern()?)
        } else if self.eat_kw("never") {
            MExprKind::Never(self.pattern()?)
        } else if self.eat_kw("eventually") {
            let p = self.pattern()?;
            let w = if self.eat_kw("within") {
                Some(self.expr()?)
            } else {
                None
            };
            MExprKind::Eventually(p, w)
        } else if self.eat_kw("after") {
            let p = self.pattern()?;
            self.expect_kw("expect")?;
            let q = self.pattern()?;
            let w = if self.eat_kw("within") {
                Some(self.expr()?)
            } else {
                None
            };
            MExprKind::After(p, q, w)
        } else if self.is_kw("stable") && self.is_kw_at(1, "for") {
            self.bump();
            self.bump();
            let d = self.unary()?;
            let of = if self.eat_kw("of") {
                Some(self.pattern()?)
            } else {
                None
            };
            MExprKind::Stable(d, of)
        } else {
            let (name, name_span) =
                self.ident("a monitor name or `always`/`never`/`eventually`/`after`/`stable`")?;
            let mut args = Vec::new();
            if self.eat(&Tok::LParen) && !self.eat(&Tok::RParen) {
                loop {
                    args.push(self.expr()?);
                    if self.eat(&Tok::Comma) {
                        continue;
                    }
                    self.expect(Tok::RParen, "`,` or `)`")?;
                    break;
                }
            }
            let at = if self.eat_kw("at") {
                Some(self.unary()?)
            } else {
                None
            };
            MExprKind::Ref {
                name,
                name_span,
                args,
                at,
            }
        };
        Ok(MExpr::new(kind, start.to(self.prev_span())))
    }

    // ---- experiment steps ----
    fn step(&mut self) -> P<StepDecl> {
        let start = self.span();
        if self.eat_kw("expect") {
            let m = self.mexpr()?;
            // `as NAME` and `within D`, in either order
            let mut binds = None;
            let mut within = None;
            loop {
                if binds.is_none() && self.is_kw("as") {
                    self.bump();
                    binds = Some(self.ident("a name to bind after `as`")?);
                } else if within.is_none() && self.eat_kw("within") {
                    within = Some(self.expr()?);
                } else {
                    break;
                }
            }
            return Ok(StepDecl::Expect {
                m,
                within,
                binds,
                span: start.to(self.prev_span()),
            });
        }
        if self.eat_kw("note") {
            return match self.peek().clone() {
                Tok::Str(s) => {
                    self.bump();
                    Ok(StepDecl::Note(s))
                }
                _ => self.error("a string after `note`"),
            };
        }
        if self.eat_kw("do") {
            let action = match self.peek().clone() {
                Tok::Name(n) => {
                    self.bump();
                    n
                }
                _ => return self.error("a fault action after `do`"),
            };
            let mut args = Vec::new();
            if self.eat(&Tok::LParen) && !self.eat(&Tok::RParen) {
                loop {
                    let (k, _) = match self.peek().clone() {
                        Tok::Name(n) => (n, self.bump().span),
                        _ => return self.error("an argument name"),
                    };
                    self.expect(Tok::Colon, "`:`")?;
                    args.push((k, self.expr()?));
                    if self.eat(&Tok::Comma) {
                        continue;
                    }
                    self.expect(Tok::RParen, "`,` or `)`")?;
                    break;
                }
            }
            let target = if self.eat_kw("on") {
                self.target()?
            } else if self.eat_kw("between") {
                let a = self.name_list()?;
                self.expect_kw("and")?;
                TargetDecl::Between(a, self.name_list()?)
            } else if self.eat_kw("from") {
                let a = self.name_list()?;
                self.expect_kw("to")?;
                TargetDecl::FromTo(a, self.name_list()?)
            } else {
                return self.error_hint(
                    "`on`, `between` or `from`",
                    "e.g. `do pause on right-a`, `do partition between [a] and [b]`",
                );
            };
            let dur = if self.eat_kw("for") {
                Some(self.unary()?)
            } else {
                None
            };
            return Ok(StepDecl::Do {
                action,
                args,
                target,
                dur,
                span: start.to(self.prev_span()),
            });
        }
        self.error_hint(
            "a step",
            "experiment steps are `expect ...`, `do ... on ...` and `note \"...\"`",
        )
    }

    /// A group of fault targets: `[a, b]`, one name, or an expression giving a list or a
    /// name (`members - [L]`, with `+`/`-` on lists).
    fn name_list(&mut self) -> P<Vec<Expr>> {
        let e = self.add()?;
        Ok(match e.kind {
            ExprKind::List(v) => v,
            _ => vec![e],
        })
    }

    fn target(&mut self) -> P<TargetDecl> {
        if matches!(self.peek(), Tok::LBracket) {
            return Ok(TargetDecl::Services(self.name_list()?));
        }
        let contextual = ["service", "container", "network", "random"];
        if let Tok::Name(n) = self.peek().clone() {
            // `service X` etc. (but a service could itself be called `network`: then no operand follows)
            let operand_follows = matches!(self.peek_at(1), Tok::Name(x) if !is_keyword(x))
                || matches!(self.peek_at(1), Tok::Str(_) | Tok::LBracket);
            if contextual.contains(&n.as_str()) && operand_follows {
                self.bump();
                return Ok(match n.as_str() {
                    "service" => TargetDecl::Service(self.unary()?),
                    "container" => TargetDecl::Container(self.unary()?),
                    "network" => TargetDecl::Network(self.unary()?),
                    _ => TargetDecl::Random(self.name_list()?),
                });
            }
        }
        Ok(TargetDecl::Service(self.add()?))
    }

    // ---- expressions ----
    pub(crate) fn expr(&mut self) -> P<Expr> {
        self.nested(|p| p.expr_inner())
    }
    fn expr_inner(&mut self) -> P<Expr> {
        let start = self.span();
        let quant = if self.is_kw("all") {
            Some(Quant::All)
        } else if self.is_kw("any") {
            Some(Quant::Any)
        } else if self.is_kw("count")
            && matches!(self.peek_at(1), Tok::Name(_))
            && self.is_kw_at(2, "in")
        {
            Some(Quant::Count)
        } else if self.is_kw("filter")
            && matches!(self.peek_at(1), Tok::Name(_))
            && self.is_kw_at(2, "in")
        {
            Some(Quant::Filter)
        } else {
            None
        };
        if let Some(q) = quant {
            self.bump();
            let (var, _) = self.ident("a variable name")?;
            self.expect_kw("in")?;
            let list = self.add()?;
            self.expect(Tok::Colon, "`:` before the quantifier body")?;
            let body = self.expr()?;
            let span = start.to(body.span);
            return self.deep(Expr::new(
                ExprKind::Quant {
                    q,
                    var,
                    list: Box::new(list),
                    body: Box::new(body),
                },
                span,
            ));
        }
        if self.eat_kw("if") {
            let c = self.expr()?;
            self.expect_kw("then")?;
            let a = self.expr()?;
            self.expect_kw("else")?;
            let b = self.expr()?;
            let span = start.to(b.span);
            return self.deep(Expr::new(
                ExprKind::If(Box::new(c), Box::new(a), Box::new(b)),
                span,
            ));
        }
        self.or()
    }
    /// A binary node, refused (before the tree grows further) when it is too deep.
    fn bin(&mut self, l: Expr, op: BinOp, r: Expr) -> P<Expr> {
        let span = l.span.to(r.span);
        self.deep(Expr::new(ExprKind::Bin(op, Box::new(l), Box::new(r)), span))
    }
    fn or(&mut self) -> P<Expr> {
        let mut l = self.and()?;
        while self.eat_kw("or") {
            let r = self.and_or_quant()?;
            l = self.bin(l, BinOp::Or, r)?;
        }
        Ok(l)
    }
    /// At `count x in` or `filter x in` (words that are names elsewhere)?
    fn counted_quant(&self) -> bool {
        (self.is_kw("count") || self.is_kw("filter"))
            && matches!(self.peek_at(1), Tok::Name(_))
            && self.is_kw_at(2, "in")
    }
    fn and_or_quant(&mut self) -> P<Expr> {
        if self.is_kw("all") || self.is_kw("any") || self.is_kw("if") || self.counted_quant() {
            self.expr()
        } else {
            self.and()
        }
    }
    fn and(&mut self) -> P<Expr> {
        let mut l = self.not()?;
        while self.eat_kw("and") {
            let r = if self.is_kw("all")
                || self.is_kw("any")
                || self.is_kw("if")
                || self.counted_quant()
            {
                self.expr()?
            } else {
                self.not()?
            };
            l = self.bin(l, BinOp::And, r)?;
        }
        Ok(l)
    }
    fn not(&mut self) -> P<Expr> {
        let start = self.span();
        if self.is_kw("not") && !self.is_kw_at(1, "in") {
            self.bump();
            let e = if self.is_kw("all") || self.is_kw("any") {
                self.expr()?
            } else {
                self.nested(|p| p.not())?
            };
            let span = start.to(e.span);
            return self.deep(Expr::new(ExprKind::Not(Box::new(e)), span));
        }
        self.cmp()
    }
    fn cmp(&mut self) -> P<Expr> {
        let l = self.add()?;
        let op = match self.peek() {
            Tok::EqEq => BinOp::Eq,
            Tok::Ne => BinOp::Ne,
            Tok::Lt => BinOp::Lt,
            Tok::Le => BinOp::Le,
            Tok::Gt => BinOp::Gt,
            Tok::Ge => BinOp::Ge,
            Tok::Tilde | Tok::NotTilde => {
                let negated = matches!(self.peek(), Tok::NotTilde);
                self.bump();
                return match self.peek().clone() {
                    Tok::Str(re) => {
                        let rs = self.bump().span;
                        let span = l.span.to(rs);
                        self.deep(Expr::new(ExprKind::Match { negated, lhs: Box::new(l), regex: re, regex_span: rs }, span))
                    }
                    _ => self.error_hint("a regex string literal", "the right side of `~` must be a literal, e.g. r\"ERROR (?P<code>\\d+)\", so it is compiled once"),
                };
            }
            Tok::Name(n) if n == "in" => BinOp::In,
            Tok::Name(n) if n == "not" && self.is_kw_at(1, "in") => {
                self.bump();
                BinOp::NotIn
            }
            _ => return Ok(l),
        };
        self.bump();
        let r = self.add()?;
        self.bin(l, op, r)
    }
    fn add(&mut self) -> P<Expr> {
        let mut l = self.mul()?;
        loop {
            let op = match self.peek() {
                Tok::Plus => BinOp::Add,
                Tok::Minus => BinOp::Sub,
                _ => return Ok(l),
            };
            self.bump();
            let r = self.mul()?;
            l = self.bin(l, op, r)?;
        }
    }
    fn mul(&mut self) -> P<Expr> {
        let mut l = self.unary()?;
        loop {
            let op = match self.peek() {
                Tok::Star => BinOp::Mul,
                Tok::Slash => BinOp::Div,
                Tok::Percent => BinOp::Rem,
                _ => return Ok(l),
            };
            self.bump();
            let r = self.unary()?;
            l = self.bin(l, op, r)?;
        }
    }
    pub(crate) fn unary(&mut self) -> P<Expr> {
        let start = self.span();
        if self.eat(&Tok::Minus) {
            let e = self.nested(|p| p.unary())?;
            let span = start.to(e.span);
            return match e.kind {
                ExprKind::Lit(Lit::Int(i)) => Ok(Expr::new(ExprKind::Lit(Lit::Int(-i)), span)),
                ExprKind::Lit(Lit::Float(f)) => Ok(Expr::new(ExprKind::Lit(Lit::Float(-f)), span)),
                ExprKind::Lit(Lit::Dur(d)) => Ok(Expr::new(ExprKind::Lit(Lit::Dur(-d)), span)),
                _ => self.deep(Expr::new(ExprKind::Neg(Box::new(e)), span)),
            };
        }
        let mut e = self.primary()?;
        loop {
            if self.eat(&Tok::Dot) {
                let (f, fsp) = match self.peek().clone() {
                    Tok::Name(n) => (n, self.bump().span),
                    Tok::Int(i) => (i.to_string(), self.bump().span),
                    _ => return self.error("a field name after `.`"),
                };
                let span = e.span.to(fsp);
                e = self.deep(Expr::new(ExprKind::Field(Box::new(e), f), span))?;
            } else if self.eat(&Tok::LBracket) {
                let i = self.expr()?;
                let end = self.expect(Tok::RBracket, "`]`")?;
                let span = e.span.to(end);
                e = self.deep(Expr::new(ExprKind::Index(Box::new(e), Box::new(i)), span))?;
            } else {
                return Ok(e);
            }
        }
    }
    fn primary(&mut self) -> P<Expr> {
        if self.at_eof() {
            return self.error("an expression");
        }
        let t = self.bump();
        let lit = |k: Lit| Ok(Expr::new(ExprKind::Lit(k), t.span));
        match t.tok {
            Tok::Int(i) => lit(Lit::Int(i)),
            Tok::Float(f) => lit(Lit::Float(f)),
            Tok::Dur(d) => lit(Lit::Dur(d)),
            Tok::Str(s) => lit(Lit::Str(s)),
            Tok::LBrace => {
                let end = self.expect(Tok::RBrace, "`}` (`{}` is the empty map)")?;
                Ok(Expr::new(ExprKind::Lit(Lit::Map), t.span.to(end)))
            }
            Tok::LParen => {
                let e = self.expr()?;
                let end = self.expect(Tok::RParen, "`)`")?;
                Ok(Expr {
                    span: t.span.to(end),
                    ..e
                })
            }
            Tok::LBracket => {
                let mut v = Vec::new();
                if !self.eat(&Tok::RBracket) {
                    loop {
                        v.push(self.expr()?);
                        if self.eat(&Tok::Comma) {
                            continue;
                        }
                        self.expect(Tok::RBracket, "`,` or `]`")?;
                        break;
                    }
                }
                let span = t.span.to(self.prev_span());
                self.deep(Expr::new(ExprKind::List(v), span))
            }
            Tok::Name(n) => match n.as_str() {
                "true" => lit(Lit::Bool(true)),
                "false" => lit(Lit::Bool(false)),
                "null" => lit(Lit::Null),
                _ if is_keyword(&n) => {
                    self.pos -= 1;
                    self.error_hint("an expression", &format!("`{n}` is a reserved word"))
                }
                _ => {
                    if matches!(self.peek(), Tok::LParen) {
                        self.bump();
                        let mut args = Vec::new();
                        if !self.eat(&Tok::RParen) {
                            loop {
                                args.push(self.expr()?);
                                if self.eat(&Tok::Comma) {
                                    continue;
                                }
                                self.expect(Tok::RParen, "`,` or `)`")?;
                                break;
                            }
                        }
                        let span = t.span.to(self.prev_span());
                        self.deep(Expr::new(ExprKind::Call(n, args), span))
                    } else {
                        Ok(Expr::new(ExprKind::Name(n), t.span))
                    }
                }
            },
            _ => {
                self.pos -= 1;
                self.error("an expression")
            }
        }
    }
}

/// Can this token start an expression?
fn starts_expr_tok(t: &Tok) -> bool {
    match t {
        Tok::Str(_)
        | Tok::Int(_)
        | Tok::Float(_)
        | Tok::Dur(_)
        | Tok::LParen
        | Tok::LBracket
        | Tok::Minus => true,
        Tok::Name(n) => {
            !is_keyword(n)
                || matches!(
                    n.as_str(),
                    "not" | "if" | "true" | "false" | "null" | "all" | "any"
                )
        }
        _ => false,
    }
}
