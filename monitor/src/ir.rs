//! The compiled form: expressions with resolved slots, built-in functions, state machines,
//! monitor expressions and experiment steps. Produced by `compile`, consumed by `eval` and
//! `experiment`.

use crate::ast::{Agg, BinOp, Quant};
use crate::diag::{Location, Span};
use crate::fast::{Fast, FastKey};
use crate::re::Re;
use crate::value::Value;
use serde::Serialize;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Builtin {
    Len,
    Int,
    Float,
    Str,
    /// `str(d)` of a duration: rendered as `3s`, `250ms` (chosen by the checker from the type).
    StrDur,
    Bool,
    Lower,
    Upper,
    Split,
    StartsWith,
    EndsWith,
    Contains,
    Keys,
    /// `values(map)`: the values of an object (a map), in key order.
    Values,
    Abs,
    Min,
    Max,
    IsNull,
    /// `time(ns)`: a trace time rendered as UTC, RFC 3339 with nanoseconds.
    Time,
}

/// Names of the built-in functions.
pub(crate) const BUILTINS: &[&str] = &[
    "len",
    "int",
    "float",
    "str",
    "bool",
    "lower",
    "upper",
    "split",
    "starts_with",
    "ends_with",
    "contains",
    "keys",
    "values",
    "abs",
    "min",
    "max",
    "is_null",
    "time",
];

/// Built-in function, arity and result type by name.
pub(crate) fn builtin(name: &str) -> Option<(Builtin, usize, crate::ast::Ty)> {
    use crate::ast::Ty;
    use Builtin as B;
    Some(match name {
        "len" => (B::Len, 1, Ty::Int),
        "int" => (B::Int, 1, Ty::Int),
        "float" => (B::Float, 1, Ty::Float),
        "str" => (B::Str, 1, Ty::Str),
        "bool" => (B::Bool, 1, Ty::Bool),
        "lower" => (B::Lower, 1, Ty::Str),
        "upper" => (B::Upper, 1, Ty::Str),
        "split" => (B::Split, 2, Ty::List),
        "starts_with" => (B::StartsWith, 2, Ty::Bool),
        "ends_with" => (B::EndsWith, 2, Ty::Bool),
        "contains" => (B::Contains, 2, Ty::Bool),
        "keys" => (B::Keys, 1, Ty::List),
        "values" => (B::Values, 1, Ty::List),
        "abs" => (B::Abs, 1, Ty::Any),
        "min" => (B::Min, 2, Ty::Any),
        "max" => (B::Max, 2, Ty::Any),
        "is_null" => (B::IsNull, 1, Ty::Bool),
        "time" => (B::Time, 1, Ty::Str),
        _ => return None,
    })
}

#[derive(Debug, Clone)]
pub(crate) struct X {
    pub k: Ex,
    /// Source text, kept for the nodes whose values explanations show.
    pub text: Option<Box<str>>,
}

#[derive(Debug, Clone)]
pub(crate) enum Ex {
    Const(Value),
    Ts,
    Seq,
    Source,
    Service,
    Container,
    Kind,
    Message,
    Data,
    Here,
    Key,
    Param(u16),
    Var(u16),
    Win(u16),
    Cap(u16),
    Local(u16),
    Field(Box<X>, Box<str>),
    Index(Box<X>, Box<X>),
    List(Vec<X>),
    Call(Builtin, Vec<X>),
    Neg(Box<X>),
    Not(Box<X>),
    Bin(BinOp, Box<X>, Box<X>),
    Match {
        negated: bool,
        lhs: Box<X>,
        re: Re,
        caps: Vec<(usize, u16)>,
    },
    Quant {
        q: Quant,
        local: u16,
        list: Box<X>,
        body: Box<X>,
    },
    If(Box<X>, Box<X>, Box<X>),
}

#[derive(Debug, Clone)]
pub(crate) struct PatternC {
    pub source: Option<Box<str>>,
    pub kind: Option<Box<str>>,
    pub from: Option<X>,
    pub guard: Option<X>,
    /// The guard specialised (see [`crate::fast`]) when it has a common shape and there is no
    /// `from`; evaluated instead of `guard` except when tracing guard values.
    pub fast: Option<Fast>,
}

#[derive(Debug, Clone)]
pub(crate) enum TermC {
    Stay,
    Goto(u16, Option<X>),
    /// The message and the `with` value.
    Accept(Option<X>, Option<X>),
    Fail(Option<X>),
    Inconclusive(Option<X>),
}

#[derive(Debug, Clone)]
pub(crate) struct ActionsC {
    /// `set VAR = VALUE` (no key) or `set VAR[KEY] = VALUE`.
    pub sets: Vec<(u16, Option<X>, X)>,
    pub term: TermC,
}

#[derive(Debug, Clone)]
pub(crate) struct HandlerC {
    pub pat: PatternC,
    pub actions: ActionsC,
    pub text: String,
}

#[derive(Debug, Clone)]
pub(crate) struct StateC {
    pub name: String,
    pub timeout: Option<X>,
    pub handlers: Vec<HandlerC>,
    pub on_timeout: Option<(ActionsC, String)>,
    pub on_end: Option<(ActionsC, String)>,
    /// See `ast::StateDecl::opens_when_fault_done`.
    pub opens_when_fault_done: bool,
}

#[derive(Debug, Clone)]
pub(crate) enum WinSize {
    Events(usize),
    Time(X),
}

#[derive(Debug, Clone)]
pub(crate) struct WindowC {
    pub agg: Agg,
    pub expr: Option<X>,
    pub size: WinSize,
    pub of: Option<PatternC>,
    /// The key of a `latest(EXPR) by KEY` window.
    pub by: Option<X>,
}

#[derive(Debug, Clone)]
pub(crate) struct ParamC {
    pub name: String,
    pub ty: crate::ast::Ty,
    pub variadic: bool,
    pub default: Option<Value>,
}

/// One compiled state machine (a `monitor` with states, or a temporal form).
#[derive(Debug)]
pub struct Machine {
    pub(crate) params: Vec<ParamC>,
    pub(crate) per: Option<X>,
    /// `per` specialised (see [`crate::fast::FastKey`]) when it has a common shape.
    pub(crate) per_fast: Option<FastKey>,
    pub(crate) vars: Vec<(String, X)>,
    pub(crate) windows: Vec<WindowC>,
    pub(crate) states: Vec<StateC>,
    pub(crate) n_caps: usize,
    /// A prefilter: if every handler of every state and every window names a source, the set
    /// of sources; events from other sources are skipped before any instance work.
    pub(crate) sources: Option<Vec<Box<str>>>,
    /// Some `accept` of the machine carries a value (`accept ... with V`): the type of those
    /// values when they all agree, else `any`.
    pub(crate) binds: Option<crate::ast::Ty>,
}

/// A monitor instantiated with argument values (and optionally restricted to one service).
#[derive(Debug, Clone)]
pub struct MonRef {
    pub(crate) machine: Arc<Machine>,
    pub(crate) params: Arc<[Value]>,
    pub(crate) at: Option<Arc<str>>,
    pub display: String,
}

/// A monitor expression: an instantiated monitor or a composition.
#[derive(Debug, Clone)]
pub enum MonExpr {
    Ref(MonRef),
    And(Box<MonExpr>, Box<MonExpr>),
    Or(Box<MonExpr>, Box<MonExpr>),
    Not(Box<MonExpr>),
}

impl MonExpr {
    /// The readable form, e.g. `inCluster(left-a, left-b) at left-a and not stable(10s)`.
    pub fn display(&self) -> String {
        match self {
            MonExpr::Ref(r) => r.display.clone(),
            MonExpr::And(a, b) => format!("{} and {}", a.display_inner(), b.display_inner()),
            MonExpr::Or(a, b) => format!("{} or {}", a.display_inner(), b.display_inner()),
            MonExpr::Not(a) => format!("not {}", a.display_inner()),
        }
    }
    fn display_inner(&self) -> String {
        match self {
            MonExpr::Ref(r) => r.display.clone(),
            MonExpr::Not(_) => self.display(),
            _ => format!("({})", self.display()),
        }
    }
    /// Could any monitor in the expression react to an event of `source`? (False only when
    /// every machine's handlers and windows name other sources.)
    pub fn may_observe(&self, source: &str) -> bool {
        match self {
            MonExpr::Ref(r) => r
                .machine
                .sources
                .as_ref()
                .is_none_or(|v| v.iter().any(|s| &**s == source)),
            MonExpr::And(a, b) | MonExpr::Or(a, b) => {
                a.may_observe(source) || b.may_observe(source)
            }
            MonExpr::Not(a) => a.may_observe(source),
        }
    }
    /// The services named by `at` anywhere in the expression.
    pub fn services(&self) -> Vec<String> {
        let mut v = Vec::new();
        self.collect_services(&mut v);
        v.sort();
        v.dedup();
        v
    }
    fn collect_services(&self, v: &mut Vec<String>) {
        match self {
            MonExpr::Ref(r) => v.extend(r.at.as_deref().map(str::to_string)),
            MonExpr::And(a, b) | MonExpr::Or(a, b) => {
                a.collect_services(v);
                b.collect_services(v);
            }
            MonExpr::Not(a) => a.collect_services(v),
        }
    }
}

/// A literal value in a fault call's arguments.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Literal {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Duration(std::time::Duration),
    List(Vec<Literal>),
}

/// The target of a fault step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum FaultTarget {
    Service(String),
    Container(String),
    Network(String),
    Services(Vec<String>),
    Random(Vec<String>),
    /// Symmetric partition between two groups of services.
    Between(Vec<String>, Vec<String>),
    /// One-way partition: traffic from the first group to the second is cut.
    FromTo(Vec<String>, Vec<String>),
}

/// A `do` step: what the recorder must inject.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaultCall {
    pub action: String,
    pub args: Vec<(String, Literal)>,
    pub target: FaultTarget,
    pub duration: Option<std::time::Duration>,
    /// Where the step is written.
    pub span: Location,
    /// The step as written, e.g. `do pause on right-a`.
    pub text: String,
}

/// An `expect` step.
#[derive(Debug, Clone)]
pub struct ExpectStep {
    pub monitor: MonExpr,
    pub within: Option<std::time::Duration>,
    pub span: Location,
    pub text: String,
    /// `as NAME`: the binding this step sets to the value its monitor accepted with.
    pub binds: Option<String>,
}

/// One step of an experiment.
#[derive(Debug, Clone)]
pub enum Step {
    Expect(ExpectStep),
    Do(FaultCall),
    Note(String),
}

impl Step {
    pub fn kind(&self) -> &'static str {
        match self {
            Step::Expect(_) => "expect",
            Step::Do(_) => "do",
            Step::Note(_) => "note",
        }
    }
    pub fn text(&self) -> String {
        match self {
            Step::Expect(e) => e.text.clone(),
            Step::Do(f) => f.text.clone(),
            Step::Note(n) => format!("note {n:?}"),
        }
    }
}

/// A compiled experiment.
#[derive(Debug, Clone)]
pub struct Experiment {
    pub name: String,
    /// The steps. A step that uses a binding (`do pause on L` after `expect M as L`) is
    /// compiled here with a placeholder for it (the binding's name as a string) so that it can
    /// be shown and checked; [`Experiment::resolve`] gives the step with the bound values.
    pub steps: Vec<Step>,
    pub location: Location,
    /// For every step, the bindings it uses (empty for most steps).
    pub uses: Vec<Vec<String>>,
    /// What [`Experiment::resolve`] recompiles a step with (`None` when no step uses a binding).
    pub(crate) deferred: Option<Arc<dyn ResolveStep>>,
}

/// Recompiles an experiment step that uses bindings with their values (the compiler implements
/// it, keeping what that needs: monitors, constants, macros and the step as written).
pub(crate) trait ResolveStep: std::fmt::Debug + Send + Sync {
    /// Step `i` of experiment `exp` compiled with the bindings' values.
    fn resolve(&self, exp: &str, i: usize, bindings: &Bindings) -> Result<Step, Vec<String>>;
}

/// Values bound by `expect ... as NAME` steps, by name.
pub type Bindings = std::collections::BTreeMap<String, Value>;

impl Experiment {
    /// Does step `i` use a binding (so [`Experiment::resolve`] must be called to run it)?
    pub fn uses_bindings(&self, i: usize) -> bool {
        self.uses.get(i).is_some_and(|u| !u.is_empty())
    }

    /// Step `i` with the values of the bindings it uses. A step that uses none is returned as
    /// compiled. Errors (a binding not bound yet, a value that cannot stand where it is used,
    /// e.g. a number as a fault target) are returned as one message each.
    pub fn resolve(&self, i: usize, bindings: &Bindings) -> Result<Step, Vec<String>> {
        let Some(step) = self.steps.get(i) else {
            return Err(vec![format!("no step {}", i + 1)]);
        };
        if !self.uses_bindings(i) {
            return Ok(step.clone());
        }
        let missing: Vec<String> = self.uses[i]
            .iter()
            .filter(|n| !bindings.contains_key(*n))
            .map(|n| format!("`{n}` is not bound"))
            .collect();
        if !missing.is_empty() {
            return Err(missing);
        }
        match &self.deferred {
            Some(d) => d.resolve(&self.name, i, bindings),
            None => Err(vec![format!("step {} cannot be resolved", i + 1)]),
        }
    }
}

/// A monitor name as declared, with what is needed to run it at the top level.
#[derive(Debug, Clone)]
pub struct MonitorInfo {
    pub name: String,
    pub params: Vec<String>,
    pub location: Location,
    /// Set when every parameter has a default, so the monitor can be judged on its own.
    pub runnable: Option<MonExpr>,
}

/// A compiled, checked specification: everything the runner needs.
#[derive(Debug, Clone)]
pub struct Spec {
    pub monitors: Vec<MonitorInfo>,
    pub experiments: Vec<Experiment>,
    pub(crate) _span_dummy: Option<Span>,
}

impl Spec {
    pub fn monitor(&self, name: &str) -> Option<&MonitorInfo> {
        self.monitors.iter().find(|m| m.name == name)
    }
    pub fn experiment(&self, name: &str) -> Option<&Experiment> {
        self.experiments.iter().find(|e| e.name == name)
    }
}
