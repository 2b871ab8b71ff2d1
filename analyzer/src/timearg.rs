//! Time arguments and time display: `--since`/`--until` accept RFC 3339 times
//! (`2026-01-01T00:00:05Z`), offsets from the trace start (`+5s`, `+1m30s`, `+250ms`, `+1.5s`),
//! or raw UTC nanoseconds; times print as RFC 3339 UTC with nanoseconds.

use chrono::{DateTime, SecondsFormat, Utc};

/// Parses a duration like `5s`, `1m30s`, `250ms`, `1.5s`, `2h`, `100us`, `10ns` into ns.
pub fn parse_duration_ns(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let bad = || format!("bad duration {s:?} (use e.g. 5s, 1m30s, 250ms)");
    let mut total: f64 = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_end == 0 {
            return Err(bad());
        }
        let n: f64 = rest[..num_end].parse().map_err(|_| bad())?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" | "min" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        rest = &rest[unit_end..];
        total += n * mult;
    }
    if total > i64::MAX as f64 {
        return Err(bad());
    }
    Ok(total.round() as i64)
}

/// Parses a time argument. `start_ns` is the trace start, for `+offset` forms.
pub fn parse_time(arg: &str, start_ns: Option<i64>) -> Result<i64, String> {
    let a = arg.trim();
    if let Some(off) = a.strip_prefix('+') {
        let start =
            start_ns.ok_or_else(|| format!("{a:?}: the trace has no start time to offset from"))?;
        return Ok(start + parse_duration_ns(off)?);
    }
    if !a.is_empty() && a.bytes().all(|b| b.is_ascii_digit()) {
        return a.parse().map_err(|_| format!("bad time {a:?}"));
    }
    let t = DateTime::parse_from_rfc3339(a).map_err(|_| {
        format!("bad time {a:?} (use RFC 3339 like 2026-01-01T00:00:05Z, an offset like +5s, or nanoseconds)")
    })?;
    t.timestamp_nanos_opt()
        .ok_or_else(|| format!("time {a:?} out of range"))
}

/// RFC 3339 UTC with nanoseconds, e.g. `2026-01-01T00:00:05.250000000Z`.
pub fn format_ts(ns: i64) -> String {
    DateTime::<Utc>::from_timestamp_nanos(ns).to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// RFC 3339 UTC with milliseconds, for compact tables.
pub fn format_ts_ms(ns: i64) -> String {
    DateTime::<Utc>::from_timestamp_nanos(ns).to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A duration for humans: `1h02m03.500s`, `5.250s`, `12ms`.
pub fn format_duration(ns: i64) -> String {
    let neg = ns < 0;
    let ns = ns.unsigned_abs();
    let s = if ns < 1_000_000_000 {
        format!("{}ms", ns / 1_000_000)
    } else {
        let secs = ns / 1_000_000_000;
        let ms = (ns % 1_000_000_000) / 1_000_000;
        let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
        if h > 0 {
            format!("{h}h{m:02}m{s:02}.{ms:03}s")
        } else if m > 0 {
            format!("{m}m{s:02}.{ms:03}s")
        } else {
            format!("{s}.{ms:03}s")
        }
    };
    if neg {
        format!("-{s}")
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ns("5s"), Ok(5_000_000_000));
        assert_eq!(parse_duration_ns("1m30s"), Ok(90_000_000_000));
        assert_eq!(parse_duration_ns("250ms"), Ok(250_000_000));
        assert_eq!(parse_duration_ns("1.5s"), Ok(1_500_000_000));
        assert!(parse_duration_ns("5x").is_err());
        assert!(parse_duration_ns("s").is_err());
    }

    #[test]
    fn times() {
        let t = parse_time("2026-01-01T00:00:05Z", None).unwrap();
        assert_eq!(t, 1_767_225_605_000_000_000);
        assert_eq!(parse_time("+5s", Some(10)), Ok(5_000_000_010));
        assert!(parse_time("+5s", None).is_err());
        assert_eq!(parse_time("123", None), Ok(123));
        assert!(parse_time("yesterday", None)
            .unwrap_err()
            .contains("RFC 3339"));
        assert_eq!(format_ts(t + 250_000_000), "2026-01-01T00:00:05.250000000Z");
        assert_eq!(format_duration(90_500_000_000), "1m30.500s");
    }
}
