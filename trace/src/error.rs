//! [`TraceError`]: every way reading or writing a trace can fail, each naming the file and the
//! problem as a lowercase fragment (`<path>: <problem>`), so the binaries can print it on one line.

use std::path::{Path, PathBuf};

/// An error reading, writing or finalizing a trace. `Display` gives `<path>: <problem>`.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The trace directory (or a file in it) does not exist.
    #[error("{}: no such file or directory", path.display())]
    NotFound { path: PathBuf },
    /// The directory exists but holds no trace (no manifest, no event log).
    #[error("{}: not a trace ({reason})", path.display())]
    NotATrace { path: PathBuf, reason: String },
    /// An I/O error on a file of the trace.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `manifest.json` is not valid JSON or has the wrong shape.
    #[error("{}: invalid manifest: {source}", path.display())]
    Manifest {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// The trace was written by a newer format version than this program reads.
    #[error("{}: trace format version {found} is newer than this program supports (up to {supported}); upgrade the analyzer", path.display())]
    NewerVersion {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    /// A Parquet or Arrow file is corrupt, truncated or has an unexpected schema.
    #[error("{}: {message}", path.display())]
    Corrupt { path: PathBuf, message: String },
    /// The writer or reader was used wrongly (e.g. an option out of range).
    #[error("{0}")]
    Invalid(String),
}

impl TraceError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> TraceError {
        if source.kind() == std::io::ErrorKind::NotFound {
            TraceError::NotFound {
                path: path.to_path_buf(),
            }
        } else {
            TraceError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    }

    pub(crate) fn corrupt(path: &Path, message: impl std::fmt::Display) -> TraceError {
        let mut m = message.to_string();
        // Arrow and parquet errors start with a capitalised category ("Parquet error: ...").
        if let Some(first) = m.get(..1) {
            if m.chars().nth(1).is_some_and(|c| c.is_lowercase()) {
                m = first.to_lowercase() + &m[1..];
            }
        }
        TraceError::Corrupt {
            path: path.to_path_buf(),
            message: m,
        }
    }

    /// The file the error concerns, when there is one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            TraceError::NotFound { path }
            | TraceError::NotATrace { path, .. }
            | TraceError::Io { path, .. }
            | TraceError::Manifest { path, .. }
            | TraceError::NewerVersion { path, .. }
            | TraceError::Corrupt { path, .. } => Some(path),
            TraceError::Invalid(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_file_and_are_lowercase() {
        let e = TraceError::corrupt(Path::new("t/events.parquet"), "Parquet error: bad magic");
        assert_eq!(e.to_string(), "t/events.parquet: parquet error: bad magic");
        let e = TraceError::io(
            Path::new("x"),
            std::io::Error::from(std::io::ErrorKind::NotFound),
        );
        assert_eq!(e.to_string(), "x: no such file or directory");
        assert_eq!(e.path(), Some(Path::new("x")));
    }
}
