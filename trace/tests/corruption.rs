//! Corrupted and invariant-breaking traces (trace format v2, docs/trace-format.md): bit flips in
//! `events.parquet`, damaged, torn and zero-filled event logs, rows out of order, duplicate `seq`,
//! null key columns; what reading refuses, what it reports, and what `finalize --repair` fixes.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray, UInt64Array};
use arrow_schema::{DataType, Field, Schema};
use trace::finalize::{finalize_with, FinalizeOptions};
use trace::framed::FramedWriter;
use trace::gen::{self, GenConfig};
use trace::{files, schema, Event, Manifest, ReadOptions, Trace, TraceError};

fn read_all(dir: &Path) -> Result<Vec<Event>, TraceError> {
    let t = Trace::open(dir)?;
    let mut out = Vec::new();
    for b in t.events(&ReadOptions::default())? {
        out.extend(b?.iter().map(|e| e.to_owned()));
    }
    Ok(out)
}

fn small_trace(dir: &Path) {
    let c = GenConfig {
        duration: Duration::from_secs(4),
        max_events: Some(400),
        ..Default::default()
    };
    gen::write_trace(dir, &c).unwrap();
}

fn ev(ts: i64, seq: u64, msg: &str) -> Event {
    let mut e = Event::new(ts, "log", "stdout").service("a").message(msg);
    e.seq = seq;
    e
}

/// A trace whose event log holds `batches` as written (no writer: any seq, any order).
fn log_trace(dir: &Path, batches: &[Vec<Event>]) {
    std::fs::create_dir_all(dir).unwrap();
    Manifest {
        format_version: 2,
        run_id: "t".into(),
        ..Default::default()
    }
    .write_atomic(dir)
    .unwrap();
    let mut w = FramedWriter::create(&dir.join(files::EVENTS_LOG)).unwrap();
    for b in batches {
        w.write(&schema::events_to_log_batch(b.iter())).unwrap();
    }
}

/// A v1 trace whose `events.parquet` holds `cols` as given, written without this crate's checks.
fn parquet_trace(dir: &Path, schema: Arc<Schema>, cols: Vec<ArrayRef>) {
    std::fs::create_dir_all(dir).unwrap();
    Manifest {
        format_version: 1,
        ..Default::default()
    }
    .write_atomic(dir)
    .unwrap();
    let b = RecordBatch::try_new(schema.clone(), cols).unwrap();
    let f = std::fs::File::create(dir.join(files::EVENTS_PARQUET)).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(f, schema, None).unwrap();
    w.write(&b).unwrap();
    w.close().unwrap();
}

fn key_schema(source_nullable: bool) -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("ts_ns", DataType::Int64, false),
        Field::new("seq", DataType::UInt64, false),
        Field::new("source", DataType::Utf8, source_nullable),
        Field::new("kind", DataType::Utf8, false),
        Field::new("message", DataType::Utf8, true),
    ]))
}

#[test]
fn every_bit_flip_in_events_parquet_is_an_error() {
    let d = tempfile::tempdir().unwrap();
    let t = d.path().join("t");
    small_trace(&t);
    let good = read_all(&t).unwrap();
    let pq = t.join(files::EVENTS_PARQUET);
    let bytes = std::fs::read(&pq).unwrap();
    let mut refused = 0;
    // every third byte, a different bit each time, and every byte of the last 2 KiB (footer)
    let positions: Vec<usize> = (0..bytes.len())
        .filter(|&p| p % 3 == 0 || p + 2048 >= bytes.len())
        .collect();
    for &pos in &positions {
        let mut b = bytes.clone();
        b[pos] ^= 1 << (pos % 8);
        std::fs::write(&pq, &b).unwrap();
        match read_all(&t) {
            Err(e) => {
                let m = e.to_string();
                assert!(m.contains("events.parquet"), "{pos}: {m}");
                refused += 1;
            }
            Ok(got) => panic!(
                "flip at byte {pos} of {} read without error ({} events, same: {})",
                bytes.len(),
                got.len(),
                got == good
            ),
        }
    }
    assert_eq!(refused, positions.len());
    std::fs::write(&pq, &bytes).unwrap();
    assert_eq!(read_all(&t).unwrap(), good);
}

#[test]
fn a_flipped_column_chunk_names_the_row_group_and_column() {
    let d = tempfile::tempdir().unwrap();
    let t = d.path().join("t");
    small_trace(&t);
    let m = Manifest::read(&t).unwrap();
    let sums = &m.checksums[files::EVENTS_PARQUET];
    assert_eq!(sums.algorithm, "crc32c");
    let inv = m.invariants.unwrap();
    assert!(inv.sorted && inv.unique_seq && inv.events > 0);
    let pq = t.join(files::EVENTS_PARQUET);
    let mut bytes = std::fs::read(&pq).unwrap();
    bytes[10] ^= 0x10; // inside the first column chunk (ts_ns) of row group 0
    std::fs::write(&pq, &bytes).unwrap();
    // opening verifies the footer only; the damaged chunk is found when read
    let tr = Trace::open(&t).unwrap();
    let e = tr
        .events(&ReadOptions::default())
        .unwrap()
        .find_map(|b| b.err())
        .expect("an error");
    let e = e.to_string();
    assert!(
        e.contains("events.parquet") && e.contains("row group 0, column ts_ns: checksum mismatch"),
        "{e}"
    );
}

/// A read verifies the column chunks it fetches: a read of every column all of them, `time`
/// included though no read decodes it; a projected read only those it decodes, so a damaged
/// `time` or `message` chunk goes unseen by a read that takes neither and refused by one that
/// takes everything.
#[test]
fn a_read_verifies_the_chunks_it_fetches() {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let d = tempfile::tempdir().unwrap();
    let t = d.path().join("t");
    small_trace(&t);
    let pq = t.join(files::EVENTS_PARQUET);
    let bytes = std::fs::read(&pq).unwrap();
    let meta = SerializedFileReader::new(std::fs::File::open(&pq).unwrap())
        .unwrap()
        .metadata()
        .clone();
    let projected = ReadOptions {
        columns: trace::Columns {
            source: false,
            ..trace::Columns::NONE
        },
        ..Default::default()
    };
    let read = |o: &ReadOptions| -> Result<Vec<(i64, u64)>, TraceError> {
        let tr = Trace::open(&t)?;
        let mut v = Vec::new();
        for b in tr.events(o)? {
            v.extend(b?.iter().map(|e| (e.ts_ns, e.seq)));
        }
        Ok(v)
    };
    let good = read(&projected).unwrap();
    for column in ["time", "message"] {
        let rg = meta.row_group(0);
        let c = (0..rg.num_columns())
            .map(|i| rg.column(i))
            .find(|c| c.column_path().string() == column)
            .expect("column");
        let (start, len) = c.byte_range();
        let mut b = bytes.clone();
        b[(start + len / 2) as usize] ^= 0x10;
        std::fs::write(&pq, &b).unwrap();
        let e = read_all(&t).unwrap_err().to_string();
        assert!(
            e.contains(&format!("row group 0, column {column}: checksum mismatch")),
            "{e}"
        );
        assert_eq!(read(&projected).unwrap(), good, "{column}");
    }
    std::fs::write(&pq, &bytes).unwrap();
}

#[test]
fn a_truncated_or_extended_parquet_file_and_missing_checksums_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let t = d.path().join("t");
    small_trace(&t);
    let pq = t.join(files::EVENTS_PARQUET);
    let bytes = std::fs::read(&pq).unwrap();
    let mut longer = bytes.clone();
    longer.extend_from_slice(b"\0\0\0\0");
    std::fs::write(&pq, &longer).unwrap();
    let e = Trace::open(&t).unwrap_err().to_string();
    assert!(e.contains("the manifest records"), "{e}");
    std::fs::write(&pq, &bytes).unwrap();
    let mut m = Manifest::read(&t).unwrap();
    m.checksums.clear();
    m.write_atomic(&t).unwrap();
    let e = Trace::open(&t).unwrap_err().to_string();
    assert!(e.contains("records no checksums"), "{e}");
}

#[test]
fn a_zero_filled_log_tail_is_cut_and_reported() {
    let d = tempfile::tempdir().unwrap();
    let t = d.path();
    let batches: Vec<Vec<Event>> = (0..3)
        .map(|b| {
            (0..5)
                .map(|i| ev(b * 10 + i, (b * 10 + i) as u64 + 1, "x"))
                .collect()
        })
        .collect();
    log_trace(t, &batches);
    let log = t.join(files::EVENTS_LOG);
    let mut bytes = std::fs::read(&log).unwrap();
    let len = bytes.len();
    bytes.extend(std::iter::repeat_n(0u8, 8192));
    std::fs::write(&log, &bytes).unwrap();
    let tr = Trace::open(t).unwrap();
    assert_eq!(
        tr.warnings(),
        [format!(
            "{}: the log ends in 8192 zero bytes from byte {len}; they were cut",
            log.display()
        )]
    );
    let got = read_all(t).unwrap();
    assert_eq!(got.len(), 15);
    assert!(got.iter().all(|e| e.message.as_deref() == Some("x")));
    let s = finalize_with(t, FinalizeOptions::default()).unwrap();
    assert_eq!(s.events, 15);
    assert_eq!(s.warnings.len(), 1);
}

#[test]
fn a_flipped_byte_mid_log_stops_reading_and_repair_skips_the_record() {
    let d = tempfile::tempdir().unwrap();
    let t = d.path();
    let batches: Vec<Vec<Event>> = (0..3)
        .map(|b| {
            (0..5)
                .map(|i| ev(b * 10 + i, (b * 10 + i) as u64 + 1, "x"))
                .collect()
        })
        .collect();
    log_trace(t, &batches);
    let log = t.join(files::EVENTS_LOG);
    let mut bytes = std::fs::read(&log).unwrap();
    let second = {
        // the second record starts after the file header and the first record
        let first_len = u32::from_le_bytes(bytes[20..24].try_into().unwrap()) as usize;
        16 + 16 + first_len
    };
    bytes[second + 16 + 100] ^= 0x04;
    std::fs::write(&log, &bytes).unwrap();
    let e = Trace::open(t).unwrap_err().to_string();
    assert!(
        e.contains(&format!(
            "record at byte offset {second}: record payload checksum mismatch"
        )),
        "{e}"
    );
    let e = finalize_with(t, FinalizeOptions::default()).unwrap_err();
    assert!(e.to_string().contains("payload checksum mismatch"), "{e}");
    assert!(log.exists(), "the log is kept when finalize refuses it");
    let s = finalize_with(t, FinalizeOptions { repair: true }).unwrap();
    assert_eq!(s.events, 10);
    let r = s.repairs.unwrap();
    assert_eq!(r.log_records_skipped, 1);
    let got = read_all(t).unwrap();
    assert_eq!(
        got.iter().map(|e| e.ts_ns).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4, 20, 21, 22, 23, 24]
    );
    let m = Manifest::read(t).unwrap();
    assert_eq!(
        m.invariants.unwrap().repaired.unwrap().log_records_skipped,
        1
    );
}

#[test]
fn duplicate_seq_is_refused_at_finalize_and_repair_renumbers_and_drops_exact_copies() {
    let d = tempfile::tempdir().unwrap();
    let t = d.path();
    // seq 2 twice with different content; (ts 5, seq 3) twice identical; seq 0 on two rows
    let batches = vec![
        vec![ev(1, 1, "a"), ev(2, 2, "b"), ev(5, 3, "c")],
        vec![
            ev(3, 2, "other"),
            ev(5, 3, "c"),
            ev(9, 0, "z1"),
            ev(10, 0, "z2"),
        ],
    ];
    log_trace(t, &batches);
    let e = finalize_with(t, FinalizeOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("events.arrows") && e.contains("is shared by more than one row"),
        "{e}"
    );
    assert!(!t.join(files::EVENTS_PARQUET).exists());
    let s = finalize_with(t, FinalizeOptions { repair: true }).unwrap();
    let r = s.repairs.unwrap();
    assert_eq!(r.duplicates_dropped, 1);
    assert!(r.renumbered);
    let got = read_all(t).unwrap();
    let view: Vec<(i64, u64, &str)> = got
        .iter()
        .map(|e| (e.ts_ns, e.seq, e.message.as_deref().unwrap_or("")))
        .collect();
    assert_eq!(
        view,
        [
            (1, 1, "a"),
            (2, 2, "b"),
            (3, 3, "other"),
            (5, 4, "c"),
            (9, 5, "z1"),
            (10, 6, "z2")
        ]
    );
    let inv = Manifest::read(t).unwrap().invariants.unwrap();
    assert!(inv.unique_seq);
    assert_eq!((inv.events, inv.max_seq), (6, 6));
}

#[test]
fn rows_out_of_order_are_refused_naming_the_row_and_repair_sorts_them() {
    let d = tempfile::tempdir().unwrap();
    let t = d.path();
    let ts: Vec<i64> = vec![10, 20, 15, 30];
    let n = ts.len();
    parquet_trace(
        t,
        key_schema(false),
        vec![
            Arc::new(Int64Array::from(ts)),
            Arc::new(UInt64Array::from(vec![1u64, 2, 3, 4])),
            Arc::new(StringArray::from(vec!["log"; n])),
            Arc::new(StringArray::from(vec!["stdout"; n])),
            Arc::new(StringArray::from(vec!["a", "b", "c", "d"])),
        ],
    );
    let e = read_all(t).unwrap_err().to_string();
    assert!(
        e.contains("events.parquet")
            && e.contains("row 3 (ts_ns 15, seq 3) is out of (ts_ns, seq) order (ts_ns 20, seq 2)"),
        "{e}"
    );
    let s = finalize_with(t, FinalizeOptions { repair: true }).unwrap();
    assert!(s.repairs.unwrap().reordered);
    let got = read_all(t).unwrap();
    assert_eq!(
        got.iter().map(|e| e.ts_ns).collect::<Vec<_>>(),
        [10, 15, 20, 30]
    );
    assert_eq!(Manifest::read(t).unwrap().format_version, 2);
}

#[test]
fn a_null_source_is_refused_and_repair_drops_the_row() {
    let d = tempfile::tempdir().unwrap();
    let t = d.path();
    parquet_trace(
        t,
        key_schema(true),
        vec![
            Arc::new(Int64Array::from(vec![1i64, 2, 3])),
            Arc::new(UInt64Array::from(vec![1u64, 2, 3])),
            Arc::new(StringArray::from(vec![Some("log"), None, Some("log")])),
            Arc::new(StringArray::from(vec!["stdout"; 3])),
            Arc::new(StringArray::from(vec!["a", "b", "c"])),
        ],
    );
    let e = read_all(t).unwrap_err().to_string();
    assert!(
        e.contains("events.parquet") && e.contains("row 2: source is null"),
        "{e}"
    );
    let s = finalize_with(t, FinalizeOptions { repair: true }).unwrap();
    assert_eq!(s.repairs.unwrap().null_key_rows_dropped, 1);
    let got = read_all(t).unwrap();
    assert_eq!(got.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 3]);
}

#[test]
fn repair_of_a_sound_trace_changes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let t = d.path().join("t");
    small_trace(&t);
    let before = read_all(&t).unwrap();
    let s = finalize_with(&t, FinalizeOptions { repair: true }).unwrap();
    assert_eq!(s.repairs.unwrap(), Default::default());
    assert_eq!(read_all(&t).unwrap(), before);
}
