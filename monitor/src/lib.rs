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
mod ops;
mod parser;
mod re;
mod re_plan;
mod relevance;
mod report;
mod runner;
mod states;
mod value;

pub use compile::{check, compile};
pub use diag::{Diagnostic, Diagnostics, Location, SourceFile};
pub use experiment::{fault_matches, fault_matches_step, ExperimentJudge, LiveStep};
pub use ir::{
    Bindings, ExpectStep, Experiment, FaultCall, FaultTarget, Literal, MonExpr, MonitorInfo, Spec,
    Step,
};
pub use needs::Needs;
pub use relevance::Relevance;
pub use report::{
    EventInfo, ExperimentResult, Explanation, GuardValue, MonitorResult, Report, StepBinding,
    StepResult, TimeoutInfo, Transition, Verdict,
};
pub use runner::{Runner, SelectError, Selection};
pub use states::{InstanceHistory, StateLog, StateSpan};
pub use value::{fmt_dur, fmt_ts, Value};
