//! Time arguments and time display: `--since`/`--until` accept RFC 3339 times
//! (`2026-01-01T00:00:05Z`), offsets from the trace start (`+5s`, `+1m30s`, `+250ms`, `+1.5s`),
//! or raw UTC nanoseconds; times print as RFC 3339 UTC with nanoseconds. Durations, RFC 3339 and
//! the formats are `trace::time`'s (docs/cli.md, Durations).

use trace::time::{parse_duration_ns, parse_rfc3339, TimeError};

/// Times print as RFC 3339 UTC with nanoseconds (`2026-01-01T00:00:05.250000000Z`) or, for
/// compact tables, milliseconds.
pub use trace::time::{format_rfc3339_millis as format_ts_ms, format_rfc3339_nanos as format_ts};

/// Parses a time argument. `start_ns` is the trace start, for `+offset` forms.
pub fn parse_time(arg: &str, start_ns: Option<i64>) -> Result<i64, String> {
    let a = arg.trim();
    if let Some(off) = a.strip_prefix('+') {
        let start =
            start_ns.ok_or_else(|| format!("{a:?}: the trace has no start time to offset from"))?;
        return Ok(start + parse_duration_ns(off).map_err(|e| e.to_string())?);
    }
    if !a.is_empty() && a.bytes().all(|b| b.is_ascii_digit()) {
        return a.parse().map_err(|_| format!("bad time {a:?}"));
    }
    parse_rfc3339(a).map_err(|e| match e {
        TimeError::BadTime(_) => format!(
            "bad time {a:?} (use RFC 3339 like 2026-01-01T00:00:05Z, an offset like +5s, or nanoseconds)"
        ),
        e => e.to_string(),
    })
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
    fn offsets_take_the_one_duration_syntax() {
        assert_eq!(parse_time("+1m30s", Some(0)), Ok(90_000_000_000));
        assert_eq!(parse_time("+1.5s", Some(10)), Ok(1_500_000_010));
        assert_eq!(parse_time("+250ms", Some(0)), Ok(250_000_000));
        let e = parse_time("+5x", Some(0)).unwrap_err();
        assert!(e.contains("`5x`"), "{e}");
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
