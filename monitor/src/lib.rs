//! The monitor specification language (see docs/spec-language.md): parser, checker/compiler
//! and evaluator as separate phases, with no I/O, so the analyzer runs it over recorded traces
//! and the recorder runs it live.
//!
//! ```text
//! let spec = monitor::compile(&[SourceFile::new("a.spec", text)], &|_, _| None)?;
//! let mut r = monitor::Runner::new(&spec, &Selection::default())?;
//! for ev in events { r.observe(&ev.as_ref()); }
//! let report = r.finish(end_ns);
//! ```

mod ast;
mod compile;
mod diag;
mod eval;
mod experiment;
mod fast;
mod ir;
mod lexer;
mod needs;
mod parser;
mod report;
mod runner;
mod states;
mod value;

pub use compile::{check, compile};
pub use diag::{Diagnostic, Diagnostics, Location, SourceFile};
pub use eval::fmt_ts;
pub use experiment::{fault_matches, fault_matches_step, ExperimentJudge, LiveStep};
pub use ir::{
    Bindings, ExpectStep, Experiment, FaultCall, FaultTarget, Literal, MonExpr, MonitorInfo, Spec,
    Step,
};
pub use needs::Needs;
pub use report::{
    EventInfo, ExperimentResult, Explanation, GuardValue, MonitorResult, Report, StepBinding,
    StepResult, TimeoutInfo, Transition, Verdict,
};
pub use runner::{Runner, SelectError, Selection};
pub use states::{InstanceHistory, StateLog, StateSpan};
pub use value::{fmt_dur, Value};

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
pub(crate) fn ir_builtin(name: &str) -> Option<(ir::Builtin, usize, ast::Ty)> {
    use ast::Ty;
    use ir::Builtin as B;
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
