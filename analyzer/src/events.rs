//! `analyzer events TRACE`: the events of a trace, filtered, as a table, JSON lines or CSV.

use std::io::Write;
use std::path::PathBuf;

use regex::Regex;
use trace::{Columns, EventRef, ReadOptions, Trace};

use crate::timearg::{format_duration, format_ts, format_ts_ms, parse_time};
use crate::{exit, Error};

/// Output format of `events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for a terminal.
    Table,
    /// One JSON object per line (`data` parsed when it is JSON).
    Jsonl,
    /// RFC 4180 CSV with a header.
    Csv,
}

/// Arguments of `analyzer events`.
#[derive(Debug, Clone, clap::Args)]
pub struct EventsArgs {
    /// The trace directory.
    pub trace: PathBuf,
    /// Only these sources (repeat or comma-separate: docker, log, jmx, fault, packet …).
    #[arg(long, value_delimiter = ',')]
    pub source: Vec<String>,
    /// Only these services.
    #[arg(long, value_delimiter = ',')]
    pub service: Vec<String>,
    /// Only these kinds (docker action, log stream, fault action, MBean …).
    #[arg(long, value_delimiter = ',')]
    pub kind: Vec<String>,
    /// Only events whose message or data matches this regular expression.
    #[arg(long)]
    pub grep: Option<String>,
    /// From this time: RFC 3339, an offset from the trace start like +5s, or UTC nanoseconds.
    #[arg(long)]
    pub since: Option<String>,
    /// Before this time (exclusive); same forms as --since.
    #[arg(long)]
    pub until: Option<String>,
    /// At most this many events.
    #[arg(long)]
    pub limit: Option<u64>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Merge the packet summaries (packets.parquet) into the stream as source=packet events.
    #[arg(long)]
    pub packets: bool,
    /// Print only the number of matching events.
    #[arg(long)]
    pub count: bool,
    /// With --count: read every column and sum the text bytes (a full-scan benchmark).
    #[arg(long, hide = true)]
    pub touch_all: bool,
}

/// The trace start used for `+offset` times and the offset column: the manifest's start, else
/// the first event.
pub fn trace_start(t: &Trace) -> Result<Option<i64>, Error> {
    if let Some(s) = t.manifest().started_ns {
        return Ok(Some(s));
    }
    if let Some((_, first, _, _)) = t.parquet_facts() {
        return Ok(first);
    }
    let opts = ReadOptions {
        columns: Columns::NONE,
        batch_size: 1,
        ..Default::default()
    };
    match t.events(&opts)?.next() {
        Some(b) => Ok(Some(b?.get(0).ts_ns)),
        None => Ok(None),
    }
}

fn json_escape(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

fn csv_field(s: Option<&str>) -> String {
    match s {
        None => String::new(),
        Some(s) if s.contains([',', '"', '\n', '\r']) => format!("\"{}\"", s.replace('"', "\"\"")),
        Some(s) => s.to_string(),
    }
}

fn one_line(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c == '\n' || c == '\r' || c == '\t' {
                ' '
            } else {
                c
            }
        })
        .collect();
    if out.chars().count() > max {
        out = out.chars().take(max.saturating_sub(1)).collect::<String>() + "…";
    }
    out
}

/// Writes one event in the chosen format.
fn write_event(
    out: &mut dyn Write,
    f: Format,
    e: &EventRef<'_>,
    start: Option<i64>,
) -> std::io::Result<()> {
    match f {
        Format::Table => {
            let off = start
                .map(|s| format!("+{}", format_duration(e.ts_ns - s)))
                .unwrap_or_default();
            let text = match (e.message, e.data) {
                (Some(m), _) => one_line(m, 400),
                (None, Some(d)) => one_line(d, 200),
                (None, None) => String::new(),
            };
            writeln!(
                out,
                "{}  {:>11}  {:>8}  {:<8} {:<10} {:<18} {}",
                format_ts_ms(e.ts_ns),
                off,
                e.seq,
                e.source,
                e.service.unwrap_or("-"),
                e.kind,
                text
            )
        }
        Format::Jsonl => {
            let data = match e.data {
                Some(d) => match serde_json::from_str::<serde_json::Value>(d) {
                    Ok(v) => v.to_string(),
                    Err(_) => json_escape(d),
                },
                None => "null".into(),
            };
            let opt = |s: Option<&str>| s.map(json_escape).unwrap_or_else(|| "null".into());
            writeln!(
                out,
                "{{\"ts_ns\":{},\"time\":{},\"seq\":{},\"source\":{},\"service\":{},\"container\":{},\"kind\":{},\"message\":{},\"data\":{}}}",
                e.ts_ns,
                json_escape(&format_ts(e.ts_ns)),
                e.seq,
                json_escape(e.source),
                opt(e.service),
                opt(e.container),
                json_escape(e.kind),
                opt(e.message),
                data
            )
        }
        Format::Csv => writeln!(
            out,
            "{},{},{},{},{},{},{},{},{}",
            e.ts_ns,
            format_ts(e.ts_ns),
            e.seq,
            csv_field(Some(e.source)),
            csv_field(e.service),
            csv_field(e.container),
            csv_field(Some(e.kind)),
            csv_field(e.message),
            csv_field(e.data)
        ),
    }
}

/// Runs `analyzer events`.
pub fn run(a: &EventsArgs, out: &mut dyn Write) -> Result<i32, Error> {
    let grep = a.grep.as_deref().map(Regex::new).transpose().map_err(|e| {
        // Regex syntax errors span several lines; the last one says what is wrong.
        let text = e.to_string();
        let why = text
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("invalid");
        let why = why.strip_prefix("error: ").unwrap_or(why);
        Error::Usage(format!(
            "--grep {:?}: invalid regular expression: {why}",
            a.grep.as_deref().unwrap_or_default()
        ))
    })?;
    let t = crate::s3::open_trace(&a.trace)?;
    let start = trace_start(&t)?;
    let since = a
        .since
        .as_deref()
        .map(|s| parse_time(s, start))
        .transpose()
        .map_err(|e| Error::Usage(format!("--since: {e}")))?;
    let until = a
        .until
        .as_deref()
        .map(|s| parse_time(s, start))
        .transpose()
        .map_err(|e| Error::Usage(format!("--until: {e}")))?;
    let sources = (!a.source.is_empty()).then(|| a.source.clone());
    let include_packets = a.packets || a.source.iter().any(|s| s == "packet");
    let columns = if a.count && grep.is_none() && !a.touch_all {
        Columns {
            service: !a.service.is_empty(),
            kind: !a.kind.is_empty(),
            ..Columns::NONE
        }
    } else {
        Columns::ALL
    };
    // row groups whose statistics rule out every listed source, kind or service are not read
    let row_groups = if a.touch_all {
        None
    } else {
        t.group_stats().map(|groups| {
            let any = |want: &[String], may: &dyn Fn(&str) -> bool| {
                want.is_empty() || want.iter().any(|w| may(w))
            };
            groups
                .iter()
                .map(|g| {
                    any(&a.source, &|w| g.may_read_source(w))
                        && any(&a.kind, &|w| g.may_read_kind(w))
                        && any(&a.service, &|w| g.service.may_equal(w, g.rows))
                })
                .collect::<std::sync::Arc<[bool]>>()
        })
    };
    let opts = ReadOptions {
        columns,
        sources,
        since_ns: since,
        until_ns: until,
        include_packets,
        batch_size: 0,
        read_ahead: 0,
        row_groups,
        prepare: None,
    };
    if a.format == Format::Csv && !a.count {
        writeln!(
            out,
            "ts_ns,time,seq,source,service,container,kind,message,data"
        )
        .map_err(Error::output)?;
    }
    let limit = a.limit.unwrap_or(u64::MAX);
    let mut n: u64 = 0;
    let mut bytes: usize = 0;
    'outer: for batch in t.events(&opts)? {
        let batch = batch?;
        for e in batch.iter() {
            if n >= limit {
                break 'outer;
            }
            if !a.service.is_empty() && !e.service.is_some_and(|s| a.service.iter().any(|x| x == s))
            {
                continue;
            }
            if !a.kind.is_empty() && !a.kind.iter().any(|k| k == e.kind) {
                continue;
            }
            if let Some(re) = &grep {
                if !(e.message.is_some_and(|m| re.is_match(m))
                    || e.data.is_some_and(|d| re.is_match(d)))
                {
                    continue;
                }
            }
            n += 1;
            if a.touch_all {
                bytes += e.source.len()
                    + e.kind.len()
                    + e.service.map_or(0, str::len)
                    + e.container.map_or(0, str::len)
                    + e.message.map_or(0, str::len)
                    + e.data.map_or(0, str::len);
            }
            if !a.count {
                write_event(out, a.format, &e, start).map_err(Error::output)?;
            }
        }
    }
    if a.count && a.touch_all {
        writeln!(out, "{n} events, {bytes} text bytes").map_err(Error::output)?;
    } else if a.count {
        writeln!(out, "{n}").map_err(Error::output)?;
    }
    out.flush().map_err(Error::output)?;
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quoting() {
        assert_eq!(csv_field(Some("a,b")), "\"a,b\"");
        assert_eq!(csv_field(Some("say \"hi\"")), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field(None), "");
        assert_eq!(one_line("a\nb", 10), "a b");
        assert_eq!(one_line("abcdef", 4), "abc…");
    }
}
