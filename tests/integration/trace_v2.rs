//! Trace format v2 through the `analyzer` binary: corrupted and invariant-breaking traces give
//! the documented one-line error and exit code 4 (or a warning and exit 0 for a cut log tail),
//! `finalize --repair` fixes what it says it fixes, and the v1 fixtures still judge identically.

use std::path::{Path, PathBuf};
use std::process::Output;

fn analyzer() -> PathBuf {
    integration_tests::bin("analyzer")
}

fn run(args: &[&str]) -> Output {
    integration_tests::run(&analyzer(), args)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn generate(dir: &Path, extra: &[&str]) {
    let mut args = vec!["generate", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    let o = run(&args);
    assert!(o.status.success(), "generate failed: {}", stderr(&o));
}

/// Asserts exit 4 with one error line (no panic) containing every fragment.
fn assert_refused(o: &Output, what: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(4), "stderr: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "want one line: {err}");
    for w in what {
        assert!(err.contains(w), "want {w:?} in: {err}");
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn flipped_bits_in_events_parquet_exit_4_for_info_events_and_check() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path().join("t");
    generate(&t, &["--events", "300"]);
    let d = t.to_str().unwrap();
    let pq = t.join("events.parquet");
    let bytes = std::fs::read(&pq).unwrap();
    let spec = root().join("specs/akka.spec");
    // a byte in the data, one in the footer, the last byte (footer magic)
    for pos in [40, bytes.len() - 100, bytes.len() - 1] {
        let mut b = bytes.clone();
        b[pos] ^= 0x08;
        std::fs::write(&pq, &b).unwrap();
        let o = run(&["events", d]);
        assert_refused(&o, &["events.parquet", "checksum mismatch"]);
        let o = run(&[
            "check",
            d,
            "--spec",
            spec.to_str().unwrap(),
            "--monitor",
            "jmxResponsive",
        ]);
        assert_eq!(o.status.code(), Some(4), "check: {}", stderr(&o));
        if pos + 100 >= bytes.len() {
            // the footer is verified at open: even `info` refuses
            let o = run(&["info", d]);
            assert_refused(&o, &["events.parquet", "checksum mismatch in the footer"]);
        }
    }
}

#[test]
fn a_zero_filled_log_tail_warns_and_a_damaged_record_exits_4_until_repaired() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path().join("t");
    generate(&t, &["--events", "3000", "--unfinalized"]);
    let d = t.to_str().unwrap();
    let log = t.join("events.arrows");
    let bytes = std::fs::read(&log).unwrap();
    let mut zeros = bytes.clone();
    zeros.extend(std::iter::repeat_n(0u8, 4096));
    std::fs::write(&log, &zeros).unwrap();
    let o = run(&["info", d]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.starts_with("warning: ")
            && err.contains(&format!(
                "events.arrows: the log ends in 4096 zero bytes from byte {}; they were cut",
                bytes.len()
            )),
        "{err}"
    );
    // a flipped byte inside the first record, with good records after it
    let mut flipped = bytes.clone();
    flipped[200] ^= 0x01;
    std::fs::write(&log, &flipped).unwrap();
    let o = run(&["events", d]);
    assert_refused(
        &o,
        &[
            "events.arrows",
            "record at byte offset 16:",
            "checksum mismatch",
        ],
    );
    let o = run(&["finalize", d]);
    assert_refused(&o, &["record at byte offset 16:"]);
    let o = run(&["finalize", "--repair", d]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("repaired: 1 damaged log records skipped"),
        "{}",
        stdout(&o)
    );
    let o = run(&["info", d]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("format:     v2"), "{}", stdout(&o));
}

#[test]
fn out_of_order_rows_are_refused_and_finalize_repair_sorts_them() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path().join("t");
    generate(&t, &["--events", "500"]);
    let d = t.to_str().unwrap();
    // rewrite events.parquet with two rows swapped, as a v1 trace (no checksums)
    let path = t.join("events.parquet");
    let f = std::fs::File::open(&path).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<_> = reader.map(|b| b.unwrap()).collect();
    let schema = batches[0].schema();
    let all = arrow::compute::concat_batches(&schema, &batches).unwrap();
    let n = all.num_rows() as u64;
    let mut idx: Vec<u64> = (0..n).collect();
    idx.swap(10, 11);
    let idx = arrow_array::UInt64Array::from(idx);
    let cols: Vec<_> = all
        .columns()
        .iter()
        .map(|c| arrow::compute::take(c, &idx, None).unwrap())
        .collect();
    let swapped = arrow_array::RecordBatch::try_new(schema.clone(), cols).unwrap();
    let out = std::fs::File::create(&path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(out, schema, None).unwrap();
    w.write(&swapped).unwrap();
    w.close().unwrap();
    let mut m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(t.join("manifest.json")).unwrap()).unwrap();
    m["format_version"] = 1.into();
    m.as_object_mut().unwrap().remove("checksums");
    std::fs::write(t.join("manifest.json"), m.to_string()).unwrap();
    let o = run(&["events", d]);
    assert_refused(
        &o,
        &[
            "events.parquet",
            "row 12 ",
            "out of (ts_ns, seq) order",
            "--repair",
        ],
    );
    let o = run(&["finalize", "--repair", d]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("repaired: rows sorted into (ts_ns, seq) order"),
        "{}",
        stdout(&o)
    );
    let o = run(&["events", d]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o).lines().count() as u64, n);
}

#[test]
fn v1_fixtures_judge_the_same_as_before() {
    let spec = root().join("specs/akka.spec");
    let split = root().join("specs/split-brain.spec");
    let sample = root().join("traces/sample-split-brain");
    // the committed sample (v1) judges as documented: the wrong expectation fails, exit 1
    let o = run(&[
        "check",
        sample.to_str().unwrap(),
        "--spec",
        spec.to_str().unwrap(),
        "--spec",
        split.to_str().unwrap(),
        "--experiment",
        "ClusterSurvivesPartition",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let o = run(&[
        "check",
        sample.to_str().unwrap(),
        "--spec",
        spec.to_str().unwrap(),
        "--spec",
        split.to_str().unwrap(),
        "--experiment",
        "AutoDownSplitBrain",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // a v1 fixture judged before and after `finalize --repair` turned it into v2
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path().join("sb");
    std::fs::create_dir_all(&copy).unwrap();
    for f in ["manifest.json", "events.parquet", "packets.parquet"] {
        std::fs::copy(
            root().join("traces/fixtures/v1-split-brain").join(f),
            copy.join(f),
        )
        .unwrap();
    }
    let judge = |dir: &Path| {
        let o = run(&[
            "check",
            dir.to_str().unwrap(),
            "--spec",
            spec.to_str().unwrap(),
            "--monitor",
            "jmxResponsive",
        ]);
        assert!(o.status.code().is_some_and(|c| c <= 2), "{}", stderr(&o));
        (o.status.code(), stdout(&o))
    };
    let before = judge(&copy);
    let o = run(&["finalize", "--repair", copy.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("nothing needed repair"),
        "{}",
        stdout(&o)
    );
    let o = run(&["info", copy.to_str().unwrap()]);
    assert!(stdout(&o).contains("format:     v2"), "{}", stdout(&o));
    assert_eq!(judge(&copy), before);
}
