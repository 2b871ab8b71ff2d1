//! Time, in one dialect for every crate: the trace clock ([`now_ns`]), the one duration syntax of
//! scenarios, fault arguments, analyzer arguments and demo-node settings ([`parse_duration`],
//! documented in docs/cli.md, Durations), and RFC 3339 UTC times as the analyzer prints and reads
//! them ([`format_rfc3339_nanos`], [`format_rfc3339_millis`], [`parse_rfc3339`]).
//!
//! This module is compiled without the `io` feature, so small binaries (demo-node) use it without
//! the Arrow and Parquet half of the crate.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};

/// A duration or time that does not parse. Every message names the bad value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    /// An empty (or all-blank) duration.
    #[error("empty duration")]
    EmptyDuration,
    /// A number without a unit, e.g. `5`.
    #[error("bad duration `{0}`: no unit (use ns, us, ms, s, m or h, e.g. 250ms, 1.5s, 1m30s)")]
    NoUnit(String),
    /// Something other than a number where one was expected, e.g. `s` or `1..5s`.
    #[error("bad duration `{0}`: expected a number")]
    ExpectedNumber(String),
    /// A unit that is not one of `ns`, `us`, `µs`, `ms`, `s`, `m`, `min`, `h`.
    #[error("bad duration `{value}`: unknown unit `{unit}` (use ns, us, ms, s, m or h)")]
    UnknownUnit {
        /// The whole duration as given.
        value: String,
        /// The unit that was not understood.
        unit: String,
    },
    /// A duration longer than an `i64` of nanoseconds holds (about 292 years).
    #[error("bad duration `{0}`: too long")]
    TooLong(String),
    /// Not an RFC 3339 time.
    #[error("bad time `{0}` (use RFC 3339 like 2026-01-01T00:00:05Z)")]
    BadTime(String),
    /// An RFC 3339 time outside the range of `i64` nanoseconds since the epoch (years 1677–2262).
    #[error("time `{0}` out of range")]
    TimeOutOfRange(String),
}

/// The current time as UTC nanoseconds since the Unix epoch (the trace clock); 0 before 1970,
/// `i64::MAX` after 2262.
pub fn now_ns() -> i64 {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}

/// Nanoseconds per unit, for the units of the duration syntax (matched case-insensitively).
fn unit_ns(unit: &str) -> Option<u128> {
    Some(match unit.to_ascii_lowercase().as_str() {
        "ns" => 1,
        "us" | "µs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" | "min" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return None,
    })
}

/// Parses the one duration syntax into nanoseconds: one or more `<number><unit>` parts, summed
/// (`250ms`, `1.5s`, `1m30s`, `2h`). Numbers are decimal with an optional fraction (`1.5`, `.5`,
/// `5.`); units are `ns`, `us` (or `µs`), `ms`, `s`, `m` (or `min`) and `h`, in any case; blanks
/// around and between the parts are allowed (`1m 30s`). Fractions are exact, rounded to the
/// nearest nanosecond. A bare number has no unit and is refused (callers that give bare numbers
/// a unit do so first).
pub fn parse_duration_ns(s: &str) -> Result<i64, TimeError> {
    let t = s.trim();
    if t.is_empty() {
        return Err(TimeError::EmptyDuration);
    }
    let mut total: u128 = 0;
    let mut rest = t;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..num_end];
        let (int, frac) = num.split_once('.').unwrap_or((num, ""));
        if (int.is_empty() && frac.is_empty()) || frac.contains('.') {
            return Err(TimeError::ExpectedNumber(t.to_string()));
        }
        let after = rest[num_end..].trim_start();
        let unit_end = after
            .find(|c: char| c.is_ascii_digit() || c == '.' || c.is_whitespace())
            .unwrap_or(after.len());
        let unit = &after[..unit_end];
        if unit.is_empty() {
            return Err(TimeError::NoUnit(t.to_string()));
        }
        let scale = unit_ns(unit).ok_or_else(|| TimeError::UnknownUnit {
            value: t.to_string(),
            unit: unit.to_string(),
        })?;
        total = total.saturating_add(part_ns(int, frac, scale));
        if total > i64::MAX as u128 {
            return Err(TimeError::TooLong(t.to_string()));
        }
        rest = after[unit_end..].trim_start();
    }
    Ok(total as i64)
}

/// `int.frac` (ASCII digits) times `scale` nanoseconds, rounded to the nearest nanosecond;
/// saturates far beyond `i64::MAX` so the caller can refuse it.
fn part_ns(int: &str, frac: &str, scale: u128) -> u128 {
    // 30 integer digits already exceed any accepted duration; the digits past 18 of a fraction
    // are below a nanosecond for every unit up to hours.
    if int.trim_start_matches('0').len() > 30 {
        return u128::MAX;
    }
    let int: u128 = if int.is_empty() {
        0
    } else {
        int.parse().unwrap_or(u128::MAX)
    };
    let frac = &frac[..frac.len().min(18)];
    let denom = 10u128.pow(frac.len() as u32);
    let num: u128 = if frac.is_empty() {
        0
    } else {
        frac.parse().unwrap_or(0)
    };
    let frac_ns = (num * scale + denom / 2) / denom;
    int.saturating_mul(scale).saturating_add(frac_ns)
}

/// [`parse_duration_ns`] as a [`Duration`].
pub fn parse_duration(s: &str) -> Result<Duration, TimeError> {
    parse_duration_ns(s).map(|ns| Duration::from_nanos(ns as u64))
}

/// RFC 3339 UTC with nanoseconds, e.g. `2026-01-01T00:00:05.250000000Z`.
pub fn format_rfc3339_nanos(ns: i64) -> String {
    DateTime::<Utc>::from_timestamp_nanos(ns).to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// RFC 3339 UTC with milliseconds (truncated), e.g. `2026-01-01T00:00:05.250Z`.
pub fn format_rfc3339_millis(ns: i64) -> String {
    DateTime::<Utc>::from_timestamp_nanos(ns).to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parses an RFC 3339 time with any offset (`2026-01-01T00:00:05Z`, `…05.25+02:00`) into UTC
/// nanoseconds since the epoch.
pub fn parse_rfc3339(s: &str) -> Result<i64, TimeError> {
    let t = DateTime::parse_from_rfc3339(s).map_err(|_| TimeError::BadTime(s.to_string()))?;
    t.timestamp_nanos_opt()
        .ok_or_else(|| TimeError::TimeOutOfRange(s.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn every_documented_duration_parses() {
        for (text, ns) in [
            ("250ms", 250_000_000),
            ("1.5s", 1_500_000_000),
            ("1m30s", 90 * S),
            ("2h", 7200 * S),
            ("5s", 5 * S),
            ("100us", 100_000),
            ("100µs", 100_000),
            ("10ns", 10),
            ("2min", 120 * S),
            ("1h02m03.5s", 3723 * S + S / 2),
            ("1m 30s", 90 * S),
            (" 1.5 s ", 1_500_000_000),
            ("150MS", 150_000_000),
            ("0s", 0),
            ("0.1s", 100_000_000),
            ("1.0000000005s", S + 1),
            ("1.5m30s", 120 * S),
            (".5s", S / 2),
            ("5.s", 5 * S),
        ] {
            assert_eq!(parse_duration_ns(text), Ok(ns), "{text}");
        }
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
    }

    #[test]
    fn bad_durations_are_refused_naming_the_value() {
        assert_eq!(parse_duration_ns(""), Err(TimeError::EmptyDuration));
        assert_eq!(parse_duration_ns("  "), Err(TimeError::EmptyDuration));
        assert_eq!(parse_duration_ns("5"), Err(TimeError::NoUnit("5".into())));
        assert_eq!(
            parse_duration_ns("1m30"),
            Err(TimeError::NoUnit("1m30".into()))
        );
        for bad in ["s", "fast", ".s", "1..5s", "1.2.3s", "-1s", "+1s"] {
            assert_eq!(
                parse_duration_ns(bad),
                Err(TimeError::ExpectedNumber(bad.into())),
                "{bad}"
            );
        }
        let e = parse_duration_ns("5 parsecs").unwrap_err();
        assert_eq!(
            e,
            TimeError::UnknownUnit {
                value: "5 parsecs".into(),
                unit: "parsecs".into()
            }
        );
        assert_eq!(
            e.to_string(),
            "bad duration `5 parsecs`: unknown unit `parsecs` (use ns, us, ms, s, m or h)"
        );
        assert!(matches!(
            parse_duration_ns("3 weeks"),
            Err(TimeError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_duration_ns("1d"),
            Err(TimeError::UnknownUnit { .. })
        ));
        assert_eq!(
            parse_duration_ns("300000000000h"),
            Err(TimeError::TooLong("300000000000h".into()))
        );
        assert_eq!(
            parse_duration_ns("99999999999999999999999999999999999999999999h"),
            Err(TimeError::TooLong(
                "99999999999999999999999999999999999999999999h".into()
            ))
        );
        assert_eq!(parse_duration_ns("2562047h"), Ok(2_562_047 * 3600 * S));
        for bad in ["5", "x", "1x"] {
            assert!(parse_duration_ns(bad)
                .unwrap_err()
                .to_string()
                .contains(&format!("`{bad}`")));
        }
    }

    #[test]
    fn rfc3339_round_trips_in_both_forms() {
        let t = parse_rfc3339("2026-01-01T00:00:05Z").unwrap();
        assert_eq!(t, 1_767_225_605 * S);
        assert_eq!(
            format_rfc3339_nanos(t + 250_000_000),
            "2026-01-01T00:00:05.250000000Z"
        );
        assert_eq!(
            format_rfc3339_millis(t + 250_999_999),
            "2026-01-01T00:00:05.250Z"
        );
        assert_eq!(format_rfc3339_nanos(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(parse_rfc3339("2026-01-01T02:00:05.25+02:00"), Ok(t + S / 4));
        assert_eq!(
            parse_rfc3339(&format_rfc3339_nanos(t + 123_456_789)),
            Ok(t + 123_456_789)
        );
        assert_eq!(
            parse_rfc3339("yesterday"),
            Err(TimeError::BadTime("yesterday".into()))
        );
        assert_eq!(
            parse_rfc3339("3000-01-01T00:00:00Z"),
            Err(TimeError::TimeOutOfRange("3000-01-01T00:00:00Z".into()))
        );
    }

    #[test]
    fn now_is_after_2020() {
        assert!(now_ns() > 1_577_836_800 * S);
    }
}
