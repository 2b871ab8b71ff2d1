//! The analyzer library: the `info`, `events`, `finalize`, `generate`, `check` (one trace or a
//! fleet), `flaky` and `diff` commands and their reporters. The `analyzer` binary is a thin shell over it.

pub mod check;
pub mod diff;
pub mod error;
pub mod events;
pub mod exit;
pub mod flaky;
pub mod fleet;
pub mod generate;
pub mod info;
pub mod s3;
pub mod timearg;
pub mod verdicts;

pub use error::Error;

/// Runs `analyzer finalize TRACE`: sorts the logs of an unfinalized trace into Parquet files.
pub fn finalize_cmd(trace: &std::path::Path, out: &mut dyn std::io::Write) -> Result<i32, Error> {
    let s = trace::finalize(trace)?;
    let mut line = if s.already_finalized {
        format!(
            "{}: already finalized ({} events",
            trace.display(),
            s.events
        )
    } else {
        format!("{}: finalized ({} events", trace.display(), s.events)
    };
    if s.packets > 0 {
        line.push_str(&format!(", {} packets", s.packets));
    }
    line.push(')');
    if s.truncated_log {
        line.push_str(
            "; the log ended in an incomplete batch from a killed writer, which was dropped",
        );
    }
    writeln!(out, "{line}").map_err(Error::output)?;
    Ok(exit::OK)
}
