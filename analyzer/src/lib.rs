//! The analyzer library: the `info`, `events`, `finalize`, `generate`, `check` and `report`
//! commands and their reporters. The `analyzer` binary is a thin shell over it.

pub mod check;
pub mod error;
pub mod events;
pub mod exit;
pub mod generate;
pub mod html;
pub mod info;
pub mod timearg;

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
