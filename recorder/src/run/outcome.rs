//! How a run ends: its [`Status`] (the manifest's `outcome.status` and the summary's `status:`
//! line), [`RunError`] (every way a run stops short, each with its exit code and status) and the
//! [`RunOutcome`] the binary prints.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use monitor::Verdict;

use crate::compose::ComposeError;
use crate::exit;
use crate::otlp::OtlpError;
use crate::replay::ReplayError;

/// How a run ended, as the manifest's `outcome.status` and the summary's `status:` line say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// `recorder check`: the scenario is valid.
    Valid,
    /// Refused before anything started (exit 3).
    Invalid,
    /// The plan ran to its end (the experiment's verdict accept or inconclusive).
    Completed,
    /// An `expect` step failed.
    Failed,
    /// A halt condition failed.
    Halted,
    /// The time limit was reached.
    Timeout,
    /// Ctrl-C or SIGTERM.
    Interrupted,
    /// The environment, the trace or a fault stopped the run.
    Error,
}

impl Status {
    /// The word written to the manifest and printed.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Valid => "valid",
            Status::Invalid => "invalid",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::Halted => "halted",
            Status::Timeout => "timeout",
            Status::Interrupted => "interrupted",
            Status::Error => "error",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a run stopped short of its plan's end.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The scenario was refused before anything started: every error, each rendered as a
    /// diagnostic (`error: FILE:LINE:COL: message` and the source excerpt).
    #[error("{}", .0.join("\n\n"))]
    Invalid(Vec<String>),
    /// `--replay`: the recorded trace cannot be replayed.
    #[error(transparent)]
    Replay(#[from] ReplayError),
    /// The compose CLI is missing, or `up` or the wait for the containers failed.
    #[error(transparent)]
    Compose(#[from] ComposeError),
    /// The Docker engine cannot be reached.
    #[error("docker engine: {0}")]
    Docker(#[source] bollard::errors::Error),
    /// The OTLP receiver could not start.
    #[error(transparent)]
    Otlp(#[from] OtlpError),
    /// The trace directory cannot be created (trace errors name their file).
    #[error(transparent)]
    CreateTrace(#[from] trace::TraceError),
    /// The writer thread could not start.
    #[error("{}: writer thread: {source}", .dir.display())]
    WriterThread {
        dir: PathBuf,
        source: std::io::Error,
    },
    /// A write to the trace failed while recording (a full disk …): the run was stopped.
    #[error("{}: trace writer failed, run stopped: {error}", .dir.display())]
    WriterFailed { dir: PathBuf, error: String },
    /// The plan could not go on (a fault could not be applied …): its message.
    #[error("{0}")]
    Plan(String),
    /// A task of the run loop panicked.
    #[error("internal error: the run loop panicked")]
    Panicked,
    /// The scenario's time limit was reached.
    #[error("time limit of {0:?} reached")]
    TimeLimit(Duration),
    /// Ctrl-C or SIGTERM.
    #[error("interrupted by signal")]
    Interrupted,
}

impl RunError {
    /// The exit code (docs/exit-codes.md).
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::Invalid(_) => exit::BAD_SCENARIO,
            RunError::Replay(e) => e.exit_code(),
            RunError::CreateTrace(_)
            | RunError::WriterThread { .. }
            | RunError::WriterFailed { .. } => exit::TRACE,
            RunError::Compose(_)
            | RunError::Docker(_)
            | RunError::Otlp(_)
            | RunError::Plan(_)
            | RunError::Panicked => exit::ENV,
            RunError::TimeLimit(_) => exit::INCONCLUSIVE,
            RunError::Interrupted => exit::INTERRUPTED,
        }
    }

    /// The run's status.
    pub fn status(&self) -> Status {
        match self {
            RunError::Invalid(_) => Status::Invalid,
            RunError::TimeLimit(_) => Status::Timeout,
            RunError::Interrupted => Status::Interrupted,
            _ => Status::Error,
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub exit_code: i32,
    pub status: Status,
    pub message: Option<String>,
    pub trace_dir: Option<PathBuf>,
    /// The experiment's combined verdict, when one ran.
    pub verdict: Option<Verdict>,
    /// One line per online verdict (experiment steps).
    pub verdicts: Vec<String>,
    pub events: BTreeMap<String, u64>,
}

impl RunOutcome {
    /// A run that ended before it created a trace.
    pub fn early(e: &RunError) -> RunOutcome {
        RunOutcome::without_trace(e.exit_code(), e.status(), e.to_string())
    }

    /// A run that ended before it created a trace, with this code, status and message.
    pub fn without_trace(exit_code: i32, status: Status, message: String) -> RunOutcome {
        RunOutcome {
            exit_code,
            status,
            message: Some(message),
            trace_dir: None,
            verdict: None,
            verdicts: Vec::new(),
            events: BTreeMap::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_the_documented_exit_codes_and_statuses() {
        let cases = [
            (
                RunError::Invalid(vec!["a".into(), "b".into()]),
                3,
                "invalid",
                "a\n\nb",
            ),
            (
                RunError::Replay(ReplayError::Changed("x".into())),
                3,
                "error",
                "x (use --force to replay anyway)",
            ),
            (
                RunError::Replay(ReplayError::NoScenario("t".into())),
                4,
                "error",
                "t: the manifest names no scenario file; give the scenario to replay",
            ),
            (
                RunError::Compose(ComposeError::NoCompose),
                5,
                "error",
                "no compose command found (tried `docker compose` and `docker-compose`)",
            ),
            (
                RunError::WriterFailed {
                    dir: "t".into(),
                    error: "disk full".into(),
                },
                4,
                "error",
                "t: trace writer failed, run stopped: disk full",
            ),
            (
                RunError::Plan("fault #1 `kill`: x".into()),
                5,
                "error",
                "fault #1 `kill`: x",
            ),
            (
                RunError::Panicked,
                5,
                "error",
                "internal error: the run loop panicked",
            ),
            (
                RunError::TimeLimit(Duration::from_secs(3)),
                2,
                "timeout",
                "time limit of 3s reached",
            ),
            (
                RunError::Interrupted,
                130,
                "interrupted",
                "interrupted by signal",
            ),
        ];
        for (e, code, status, message) in cases {
            let o = RunOutcome::early(&e);
            assert_eq!(
                (o.exit_code, o.status.as_str(), o.message.as_deref()),
                (code, status, Some(message)),
                "{e:?}"
            );
        }
    }
}
