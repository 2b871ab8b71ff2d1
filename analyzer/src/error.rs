//! [`Error`]: what the analyzer commands can fail with, each mapped to an exit code of
//! `docs/exit-codes.md`.

use crate::exit;

/// A command error: one line for the user, and the exit code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The trace cannot be read (exit 4).
    #[error(transparent)]
    Trace(#[from] trace::TraceError),
    /// A bad argument value found after parsing (exit 64), e.g. an unparsable time or regex.
    #[error("{0}")]
    Usage(String),
    /// Output could not be written (exit 5).
    #[error("cannot write output: {0}")]
    Output(#[source] std::io::Error),
    /// Any other runtime problem (exit 5).
    #[error("{0}")]
    Runtime(String),
}

impl Error {
    /// The exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Trace(trace::TraceError::Invalid(_)) => exit::RUNTIME,
            Error::Trace(_) => exit::UNREADABLE_TRACE,
            Error::Usage(_) => exit::USAGE,
            Error::Output(_) | Error::Runtime(_) => exit::RUNTIME,
        }
    }

    /// Wraps an output error.
    pub fn output(e: std::io::Error) -> Error {
        Error::Output(e)
    }

    /// True for a closed pipe (`analyzer events … | head`): not worth an error message.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Error::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

/// An error message on one line.
pub fn one_line(s: &str) -> String {
    s.split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}
