//! Checker and compiler: resolves names, checks types and arity (accumulating every error),
//! expands macros, compiles regexes once, desugars temporal forms into state machines and
//! instantiates monitor references, producing a [`Spec`].
//!
//! This module owns the entry points, the [`Compiler`] state and the declaration phase; the
//! phases live in submodules: `consts` (values known before the trace: `let`s, parameters,
//! defaults), `machine` (state machines, patterns, actions, names), `expr` (expressions and their
//! static types, macro expansion), `specialise` (guards to [`crate::fast::Fast`] nodes),
//! `temporal` (temporal forms desugared to machines), `monexpr` (monitor references and
//! compositions), `experiment` (experiment steps, bindings and [`Deferred`] steps).

mod consts;
mod experiment;
mod expr;
mod machine;
mod monexpr;
pub(crate) mod specialise;
mod temporal;

use crate::ast::*;
use crate::diag::{location, span_text, Diagnostics, Sink, SourceFile, Span};
use crate::ir::*;
use crate::parser::parse_file;
use crate::value::Value;
use experiment::Deferred;
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
            let d: Arc<dyn ResolveStep> = Arc::new(Deferred {
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
    /// [`Deferred`] (its [`ResolveStep::resolve`]).
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

    /// Declarations, then constants, monitors, the monitors' infos (composites checked) and
    /// experiments, in that order.
    fn run(&mut self, items: Vec<(u32, Item)>) -> Spec {
        let (decls, exps) = self.declare(items);
        let let_names: Vec<String> = self.lets.keys().cloned().collect();
        for n in let_names {
            let _ = self.let_value(&n, Span::default());
        }
        for m in decls {
            self.declare_monitor(m);
        }
        let monitors = self.monitor_infos();
        let experiments = exps
            .into_iter()
            .map(|(name, span, steps)| self.experiment(name, span, steps))
            .collect();
        Spec {
            monitors,
            experiments,
            _span_dummy: None,
        }
    }

    /// Registers `let`s and `def`s, refusing names defined twice or built in; returns the
    /// monitors and experiments to compile.
    #[allow(clippy::type_complexity)]
    fn declare(
        &mut self,
        items: Vec<(u32, Item)>,
    ) -> (Vec<MonitorDecl>, Vec<(String, Span, Vec<StepDecl>)>) {
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
            if builtin(&name).is_some() || EVENT_FIELDS.contains(&name.as_str()) {
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
        (decls, exps)
    }

    /// Compiles one monitor declaration into a machine or a composite (or records it as broken).
    fn declare_monitor(&mut self, m: MonitorDecl) {
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
}

/// The closest candidate by edit distance (at most 2 edits, or a case-insensitive match).
/// The distance is `strsim`'s Levenshtein over chars.
fn closest(n: &str, cands: &[String]) -> Option<String> {
    let mut best: Option<(usize, &String)> = None;
    for c in cands {
        let d = if c.eq_ignore_ascii_case(n) {
            0
        } else {
            strsim::levenshtein(n, c)
        };
        if d <= 2 && d < n.len().max(1) && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|b| b.1.clone())
}
