//! Replays the seed corpora and every crash input of the trace crate's fuzz targets
//! (`trace/fuzz`: `event_log`, `parquet_trace`) on stable, with the same harness as the targets:
//! each input must give events or an error, never panic.

use std::path::Path;

use trace::testing::{framed_log, mutate, replay};
use trace::{ReadOptions, Trace};

fn read_all(dir: &Path, opts: &ReadOptions) {
    if let Ok(t) = Trace::open(dir) {
        std::hint::black_box(t.parquet_facts());
        if let Ok(s) = t.events(opts) {
            for b in s {
                let Ok(b) = b else { break };
                for e in b.iter() {
                    std::hint::black_box(e);
                }
            }
        }
    }
}

/// The `event_log` target's body.
fn event_log(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let bytes = if mode & 1 == 0 {
        rest.to_vec()
    } else {
        framed_log(rest)
    };
    std::fs::write(dir.path().join("manifest.json"), br#"{"format_version":2}"#).unwrap();
    std::fs::write(dir.path().join("events.arrows"), &bytes).unwrap();
    read_all(dir.path(), &ReadOptions::default());
    if mode & 2 != 0 {
        let opts = trace::finalize::FinalizeOptions {
            repair: mode & 4 != 0,
        };
        if trace::finalize::finalize_with(dir.path(), opts).is_ok() {
            read_all(dir.path(), &ReadOptions::default());
        }
    }
}

/// The `parquet_trace` target's body.
fn parquet_trace(data: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("manifest.json"), br#"{"format_version":1}"#).unwrap();
    std::fs::write(dir.path().join("events.parquet"), data).unwrap();
    let filtered = ReadOptions {
        sources: Some(vec!["log".into()]),
        since_ns: Some(1),
        until_ns: Some(i64::MAX),
        ..Default::default()
    };
    read_all(dir.path(), &ReadOptions::default());
    read_all(dir.path(), &filtered);
}

#[test]
fn event_log_corpus_and_crashes_replay_without_panic() {
    let n = replay("event_log", event_log);
    assert!(n >= 4, "only {n} event_log inputs");
}

#[test]
fn parquet_trace_corpus_and_crashes_replay_without_panic() {
    let n = replay("parquet_trace", parquet_trace);
    assert!(n >= 3, "only {n} parquet_trace inputs");
}

/// libFuzzer's timeout: a v1 `events.parquet` whose `seq` page header is garbage Thrift with a
/// field parquet skips as a list of thousands of elements past the end of the file (each skip
/// read nothing and parquet went on: minutes in a debug build). Reading now stops with an
/// error naming the file; the footer is sound, so opening works.
#[test]
fn a_page_header_skipping_past_the_end_of_the_file_is_an_error() {
    let data = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/regressions/parquet_trace/page-header-skip-timeout-f1a8b446.parquet"),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("manifest.json"), br#"{"format_version":1}"#).unwrap();
    std::fs::write(dir.path().join("events.parquet"), &data).unwrap();
    let t = Trace::open(dir.path()).unwrap();
    assert_eq!(t.parquet_facts().map(|f| f.0), Some(651));
    // the events before the error, then the error (a reader stops there, as the analyzer does)
    let mut error = None;
    for b in t.events(&ReadOptions::default()).unwrap() {
        if let Err(e) = b {
            error = Some(e.to_string());
            break;
        }
    }
    let errors: Vec<String> = error.into_iter().collect();
    assert_eq!(errors.len(), 1, "no error");
    assert!(errors[0].contains("events.parquet"), "{errors:?}");
}

/// A stable-toolchain mutation run over the corpora for machines without nightly (see
/// [`trace::testing::mutate`]): `FUZZ_SECS=120 cargo test -p trace --release --test
/// fuzz_regressions -- --ignored mutate`.
#[test]
#[ignore = "a timed mutation run; start it by hand"]
fn mutate_the_corpora() {
    mutate(&[("event_log", event_log), ("parquet_trace", parquet_trace)]);
}
