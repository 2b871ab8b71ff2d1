//! Fuzz target: the Parquet trace reader. The input is `events.parquet` of a format-v1 trace
//! (no checksums, so every byte reaches the parquet decoder), opened with `Trace::open`, its
//! footer facts read as `analyzer info` does, and every event streamed with every column, then
//! again with a source filter and a time range (the row-filter and row-group skipping paths). Must
//! give events or an error, never panic or allocate without bound. Crashes go to
//! `../regressions/parquet_trace/`, replayed by `trace/tests/fuzz_regressions.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// The trace crate turns arrow's and parquet's panics on malformed data into errors
/// (`catch_unwind`); libFuzzer's panic hook would abort on those caught panics, so the default
/// hook is put back. A panic that escapes the target still aborts (libfuzzer-sys does that).
static HOOK: std::sync::Once = std::sync::Once::new();

fuzz_target!(|data: &[u8]| {
    HOOK.call_once(|| drop(std::panic::take_hook()));
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    if std::fs::write(dir.path().join("manifest.json"), br#"{"format_version":1}"#).is_err()
        || std::fs::write(dir.path().join("events.parquet"), data).is_err()
    {
        return;
    }
    let Ok(t) = trace::Trace::open(dir.path()) else {
        return;
    };
    std::hint::black_box(t.parquet_facts());
    let filtered = trace::ReadOptions {
        sources: Some(vec!["log".into()]),
        since_ns: Some(1),
        until_ns: Some(i64::MAX),
        ..Default::default()
    };
    for opts in [trace::ReadOptions::default(), filtered] {
        if let Ok(s) = t.events(&opts) {
            for b in s {
                let Ok(b) = b else { break };
                for e in b.iter() {
                    std::hint::black_box(e);
                }
            }
        }
    }
});
