//! What `diff` and its state-path comparison share about a run: log lines masked to templates
//! ([`template`]), the phases an experiment's steps cut a run into (`Bounds`, `phase_of`),
//! and the events shown around a moment (`around`).

use std::sync::OnceLock;

use monitor::{EventInfo, Verdict};
use regex::Regex;
use trace::ReadOptions;

use crate::report::Judged;
use crate::Error;

/// Masks the variable parts of a log line: timestamps, addresses, ids and numbers.
pub fn template(line: &str) -> String {
    static RE: OnceLock<Vec<(Regex, &'static str)>> = OnceLock::new();
    let res = RE.get_or_init(|| {
        [
            // 2026-11-25 12:47:20.282, 2026-11-25T12:47:20Z
            (
                r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?",
                "<ts>",
            ),
            (
                r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b",
                "<id>",
            ),
            (r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b", "<ip>"),
            (r"\b(?:[0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}\b", "<mac>"),
            // hex ids (container ids, hashes): at least 8 hex digits with a digit and a letter
            (r"\b(?:0x)?[0-9a-f]*[0-9][0-9a-f]*[a-f][0-9a-f]*\b", "<hex>"),
            (r"\b(?:0x)?[0-9a-f]*[a-f][0-9a-f]*[0-9][0-9a-f]*\b", "<hex>"),
            (r"-?\b\d+(?:\.\d+)?", "<n>"),
        ]
        .into_iter()
        .filter_map(|(p, r)| Regex::new(p).ok().map(|re| (re, r)))
        .collect()
    });
    let mut s = line.trim().to_string();
    for (re, rep) in res {
        if *rep == "<hex>" {
            // only long runs are ids; `dc1` or `a1` stay
            s = re
                .replace_all(&s, |c: &regex::Captures<'_>| {
                    if c[0].len() >= 8 {
                        "<hex>".to_string()
                    } else {
                        c[0].to_string()
                    }
                })
                .into_owned();
        } else {
            s = re.replace_all(&s, *rep).into_owned();
        }
    }
    // a bracketed timestamp says nothing once masked
    let s = s.replace("[<ts>] ", "");
    let mut out: String = s.chars().take(240).collect();
    if s.chars().count() > 240 {
        out.push('…');
    }
    out
}

/// A run's phase boundaries: (number, label, start, end, verdict).
pub(crate) type Bounds = Vec<(usize, String, Option<i64>, Option<i64>, Option<Verdict>)>;

pub(crate) fn phase_of(b: &Bounds, ts: i64) -> Option<usize> {
    // the latest phase that has started and not ended (steps are sequential)
    b.iter()
        .enumerate()
        .rev()
        .find(|(_, p)| p.2.is_some_and(|s| ts >= s) && p.3.is_none_or(|e| ts < e))
        .map(|(i, _)| i)
}

/// Events of `services` (and faults, notes) around `at`: up to `n` before and `n` after.
pub(crate) fn around(
    j: &Judged,
    at: i64,
    services: &[String],
    n: usize,
) -> Result<Vec<EventInfo>, Error> {
    let t = crate::s3::open_trace(&j.trace)?;
    // not past where judging ended (the recorder's teardown)
    let opts = ReadOptions {
        since_ns: Some(at - 30_000_000_000),
        until_ns: Some((at + 30_000_000_000).min(j.report.end_ns.saturating_add(1))),
        ..Default::default()
    };
    let keep = |ev: &trace::EventRef<'_>| {
        let ours = ev.source == "fault"
            || ev.source == "note"
            || ev
                .service
                .is_some_and(|s| services.is_empty() || services.iter().any(|x| x == s));
        ours && ev.source != "packet"
    };
    Ok(crate::report::events_around(&t, &opts, n, keep, |ev| {
        ev.ts_ns <= at
    })?)
}
