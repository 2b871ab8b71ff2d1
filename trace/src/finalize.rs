//! Finalization: turning the append-only logs of a trace into sorted Parquet files.
//!
//! `events.arrows` is sorted by `(ts_ns, seq)` with bounded memory and written to
//! `events.parquet` (dictionary-encoded low-cardinality columns, ZSTD on the chunks it shrinks,
//! statistics, [`ROW_GROUP_ROWS`] rows per row group, columns encoded in parallel: `encode`).
//! The log is nearly in order already, so it is sorted in one pass by merging sorted chunks in
//! memory (`sort::NearSorter`, [`SORT_RUN_BYTES`] held; the chunks are read and sorted
//! on a thread of their own, ahead of the merge). Rows are sorted and merged in the *sort
//! shape* (`schema::sort_shape`): the log's columns, those the table stores dictionary-encoded
//! already encoded when a chunk is sorted (each chunk one dictionary per column), so that the
//! sort, the merge and the row groups move 4-byte keys where the log has short strings, and the
//! table conversion passes them through. Rows that arrive too late for that are sorted
//! apart (spilled to a temporary directory inside the trace) and merged with the
//! written rows in a second pass. The Parquet file is written under a temporary name and renamed
//! into place, and only then is the log removed, so a finalization that is itself interrupted
//! can simply be rerun. The same happens for `packets.arrows` → `packets.parquet`. Every `seq`
//! written is checked unique across both tables (`seqs`).

pub(crate) mod encode;
mod seqs;

pub use encode::{GROUP_VALUES_KEY, MAX_GROUP_VALUES};
use seqs::SeqCheck;

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::sort::{merge_sorted, sort_rows, LogReader, NearSorter};
use crate::{files, schema, Manifest, TraceError};

/// Rows per Parquet row group: the unit of skipping by time range and the bound of reader memory.
pub const ROW_GROUP_ROWS: usize = 64 * 1024;

/// In-memory budget of the sort (bytes of Arrow data held before sorted rows are written, and
/// of one spilled run of late rows).
pub const SORT_RUN_BYTES: usize = 24 << 20;

/// What finalization wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct FinalizeSummary {
    /// Events in `events.parquet`.
    pub events: u64,
    /// Packets in `packets.parquet` (0 when there were none).
    pub packets: u64,
    /// First and last event timestamps (UTC ns), when there were events.
    pub first_ns: Option<i64>,
    pub last_ns: Option<i64>,
    /// Row groups in `events.parquet`.
    pub row_groups: usize,
    /// True when a log ended in an incomplete message (a killed writer); that message was dropped.
    pub truncated_log: bool,
    /// True when the trace was already finalized and nothing was rewritten.
    pub already_finalized: bool,
    /// What was cut or skipped from the logs, one line each naming the file.
    pub warnings: Vec<String>,
    /// With `--repair`: what the repair changed.
    pub repairs: Option<crate::manifest::Repairs>,
}

/// The ZSTD level of the trace's Parquet files. Level 1 rather than the usual 3: on the generated
/// 5 M-event trace it writes a smaller file (70.1 against 72.5 MB) with 4.5 % fewer
/// instructions for the whole finalization; the small committed sample traces, written again,
/// are within 3 % either way (docs/performance.md, fourteenth rerun). Reading is as fast.
pub const ZSTD_LEVEL: i32 = 1;

/// The integer columns of both Parquet files written with `DELTA_BINARY_PACKED`.
const DELTA_COLUMNS: [&str; 3] = ["ts_ns", "time", "seq"];

/// Writer properties of the trace's Parquet files.
pub fn writer_properties(dict_columns: &[&str], plain_columns: &[&str]) -> WriterProperties {
    let meta = vec![KeyValue::new(
        schema::FORMAT_VERSION_KEY.to_string(),
        crate::FORMAT_VERSION.to_string(),
    )];
    let mut b = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(ZSTD_LEVEL).unwrap_or_default(),
        ))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_data_page_row_count_limit(8192)
        .set_key_value_metadata(Some(meta))
        .set_created_by(format!(
            "chaos-trace {} (format v{})",
            env!("CARGO_PKG_VERSION"),
            crate::FORMAT_VERSION
        ));
    for c in dict_columns {
        b = b.set_column_dictionary_enabled(ColumnPath::from(*c), true);
    }
    for c in plain_columns {
        b = b.set_column_dictionary_enabled(ColumnPath::from(*c), false);
    }
    // times and seqs grow row by row: their deltas pack into a few bits each, which decodes
    // faster than ZSTD unpacks plain 8-byte values (and leaves ZSTD less to do)
    for c in DELTA_COLUMNS {
        b = b
            .set_column_dictionary_enabled(ColumnPath::from(c), false)
            .set_column_encoding(ColumnPath::from(c), Encoding::DELTA_BINARY_PACKED);
    }
    b.build()
}

struct Written {
    rows: u64,
    first: Option<i64>,
    last: Option<i64>,
    row_groups: usize,
    truncated: bool,
    warning: Option<String>,
    reordered: bool,
    duplicates_dropped: u64,
    null_key_rows_dropped: u64,
    records_skipped: u64,
    bytes_skipped: u64,
    max_seq: u64,
}

/// One of the two tables of a trace: its log, its Parquet file and their shapes.
struct Part {
    log_name: &'static str,
    out_name: &'static str,
    log_schema: SchemaRef,
    /// The log's shape with the table's dictionary columns encoded: what is sorted and merged
    /// (`schema::sort_shape`).
    sort_schema: SchemaRef,
    table_schema: SchemaRef,
    convert: fn(&RecordBatch) -> Result<RecordBatch, arrow_schema::ArrowError>,
    props: fn() -> WriterProperties,
    /// Key columns besides `ts_ns` and `seq` that must not be null.
    keys: &'static [&'static str],
}

fn events_part() -> Part {
    Part {
        log_name: files::EVENTS_LOG,
        out_name: files::EVENTS_PARQUET,
        log_schema: schema::event_log_schema(),
        sort_schema: schema::sort_shape(&schema::event_log_schema(), &schema::event_table_schema()),
        table_schema: schema::event_table_schema(),
        convert: schema::log_to_table_batch,
        // `message` plain: a log's lines are mostly distinct (a dictionary tried on every row
        // group fills up and falls back to plain), and ZSTD finds what repeats
        props: || {
            writer_properties(
                &schema::DICT_COLUMNS,
                &["ts_ns", "time", "seq", "message", "data"],
            )
        },
        keys: &["source", "kind"],
    }
}

fn packets_part() -> Part {
    Part {
        log_name: files::PACKETS_LOG,
        out_name: files::PACKETS_PARQUET,
        log_schema: crate::packets::packet_log_schema(),
        sort_schema: schema::sort_shape(
            &crate::packets::packet_log_schema(),
            &crate::packets::packet_table_schema(),
        ),
        table_schema: crate::packets::packet_table_schema(),
        convert: crate::packets::packet_log_to_table_batch,
        props: || {
            writer_properties(
                &crate::packets::PACKET_DICT_COLUMNS,
                &["ts_ns", "time", "seq"],
            )
        },
        keys: &[],
    }
}

fn tmp_name(out_name: &str) -> String {
    format!(".{out_name}.tmp")
}

/// Casts a batch of either shape (log or table) to `target` by column name.
fn to_shape(b: &RecordBatch, target: &SchemaRef) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let mut cols = Vec::with_capacity(target.fields().len());
    for f in target.fields() {
        let c = match b.column_by_name(f.name()) {
            Some(c) if c.data_type() == f.data_type() => c.clone(),
            Some(c) => arrow::compute::cast(c, f.data_type())?,
            None if f.is_nullable() => arrow_array::new_null_array(f.data_type(), b.num_rows()),
            None => {
                return Err(arrow_schema::ArrowError::SchemaError(format!(
                    "missing {} column",
                    f.name()
                )))
            }
        };
        cols.push(c);
    }
    RecordBatch::try_new_with_options(
        target.clone(),
        cols,
        &arrow_array::RecordBatchOptions::new().with_row_count(Some(b.num_rows())),
    )
}

/// The rows of `b` whose key columns are all non-null, and how many were dropped.
fn drop_null_keys(
    b: RecordBatch,
    keys: &[&str],
) -> Result<(RecordBatch, u64), arrow_schema::ArrowError> {
    let mut keep: Option<arrow_array::BooleanArray> = None;
    for k in ["ts_ns", "seq"].iter().chain(keys) {
        if let Some(c) = b.column_by_name(k) {
            if c.null_count() > 0 {
                let valid = arrow::compute::is_not_null(c)?;
                keep = Some(match keep {
                    None => valid,
                    Some(k) => arrow::compute::and(&k, &valid)?,
                });
            }
        }
    }
    match keep {
        None => Ok((b, 0)),
        Some(k) => {
            let out = arrow::compute::filter_record_batch(&b, &k)?;
            let dropped = (b.num_rows() - out.num_rows()) as u64;
            Ok((out, dropped))
        }
    }
}

/// Where the rows of a part come from: its log, or (for a repair of a finalized trace) its
/// Parquet file.
enum Input {
    Log(Box<LogReader>),
    Parquet(
        Box<dyn Iterator<Item = Result<RecordBatch, TraceError>> + Send>,
        PathBuf,
    ),
}

/// The end of finalization's pipeline: takes sorted batches (sort shape), drops exact
/// duplicates (with `repair`), keeps the figures of [`Written`], collects the seqs and writes
/// the Parquet file.
struct Sink<'a> {
    repair: bool,
    out_path: PathBuf,
    converter: arrow::row::RowConverter,
    last_row: Option<arrow::row::OwnedRow>,
    seqs: SeqCheck,
    writer: encode::ParallelWriter,
    _part: &'a Part,
}

impl<'a> Sink<'a> {
    fn new(dir: &Path, part: &'a Part, file: &Path, repair: bool) -> Result<Sink<'a>, TraceError> {
        let out_path = dir.join(part.out_name);
        let werr = |e: &dyn std::fmt::Display| {
            TraceError::corrupt(&out_path, format!("cannot write: {e}"))
        };
        let f = File::create(file).map_err(|e| TraceError::io(file, e))?;
        let writer = encode::ParallelWriter::try_new(
            f,
            part.table_schema.clone(),
            (part.props)(),
            part.convert,
            true,
        )
        .map_err(|e| werr(&e))?;
        let converter = arrow::row::RowConverter::new(
            part.sort_schema
                .fields()
                .iter()
                .map(|f| arrow::row::SortField::new(f.data_type().clone()))
                .collect(),
        )
        .map_err(|e| werr(&e))?;
        Ok(Sink {
            repair,
            out_path: out_path.clone(),
            converter,
            last_row: None,
            seqs: SeqCheck::new(dir),
            writer,
            _part: part,
        })
    }

    fn werr(&self, e: &dyn std::fmt::Display) -> TraceError {
        TraceError::corrupt(&self.out_path, format!("cannot write: {e}"))
    }

    fn write(&mut self, mut b: RecordBatch, w: &mut Written) -> Result<(), TraceError> {
        if b.num_rows() == 0 {
            return Ok(());
        }
        if self.repair {
            // sorted by (ts_ns, seq): exact duplicates are adjacent
            let rows = self
                .converter
                .convert_columns(b.columns())
                .map_err(|e| self.werr(&e))?;
            let mut keep = Vec::with_capacity(b.num_rows());
            for r in rows.iter() {
                let dup = self.last_row.as_ref().is_some_and(|l| l.row() == r);
                keep.push(!dup);
                if !dup {
                    self.last_row = Some(r.owned());
                }
            }
            let dropped = keep.iter().filter(|k| !**k).count();
            if dropped > 0 {
                w.duplicates_dropped += dropped as u64;
                let mask = arrow_array::BooleanArray::from(keep);
                b = arrow::compute::filter_record_batch(&b, &mask).map_err(|e| self.werr(&e))?;
                if b.num_rows() == 0 {
                    return Ok(());
                }
            }
        }
        if let Some(ts) = b
            .column_by_name("ts_ns")
            .and_then(|c| c.as_any().downcast_ref::<arrow_array::Int64Array>())
        {
            w.first = w.first.or(Some(ts.value(0)));
            w.last = Some(ts.value(ts.len() - 1));
        }
        if let Some(seq) = b
            .column_by_name("seq")
            .and_then(|c| c.as_any().downcast_ref::<arrow_array::UInt64Array>())
        {
            w.max_seq = w
                .max_seq
                .max(seq.values().iter().copied().max().unwrap_or(0));
        }
        self.seqs.push(&b)?;
        w.rows += b.num_rows() as u64;
        self.writer.write(&b).map_err(|e| self.werr(&e))
    }

    /// Writes the footer; returns the row groups written and the collected seqs.
    fn close(self) -> Result<(usize, SeqCheck), TraceError> {
        let out_path = self.out_path;
        let meta = self
            .writer
            .close()
            .map_err(|e| TraceError::corrupt(&out_path, format!("cannot write: {e}")))?;
        Ok((meta.num_row_groups(), self.seqs))
    }
}

/// What finalization's reading thread found besides the rows: rows dropped for a null key (with
/// `repair`), whether a Parquet input was out of order, and the log (how it ended).
#[derive(Default)]
struct ReadSide {
    null_key_rows_dropped: u64,
    reordered: bool,
    log: Option<LogReader>,
}

/// Sorts a part into `.<out>.tmp` and returns what was written and its seqs. With `repair`,
/// rows with a null key are dropped and exact duplicate rows are written once; without it,
/// either is an error.
fn write_sorted(
    dir: &Path,
    part: &Part,
    input: Input,
    repair: bool,
    budget: usize,
) -> Result<(Written, SeqCheck), TraceError> {
    let r = write_sorted_files(dir, part, input, repair, budget);
    if r.is_err() {
        // nothing half-written stays behind
        let _ = std::fs::remove_file(dir.join(tmp_name(part.out_name)));
        let _ = std::fs::remove_file(dir.join(merge_name(part.out_name)));
    }
    r
}

fn merge_name(out_name: &str) -> String {
    format!(".{out_name}.merge")
}

fn write_sorted_files(
    dir: &Path,
    part: &Part,
    input: Input,
    repair: bool,
    budget: usize,
) -> Result<(Written, SeqCheck), TraceError> {
    let tmp_path = dir.join(tmp_name(part.out_name));
    let origin = match &input {
        Input::Log(l) => l.path().to_path_buf(),
        Input::Parquet(_, p) => p.clone(),
    };
    let mut sorter = NearSorter::new(part.sort_schema.clone(), Some(dir), budget, &origin);
    let mut sink = Sink::new(dir, part, &tmp_path, repair)?;
    let mut w = Written {
        rows: 0,
        first: None,
        last: None,
        row_groups: 0,
        truncated: false,
        warning: None,
        reordered: false,
        duplicates_dropped: 0,
        null_key_rows_dropped: 0,
        records_skipped: 0,
        bytes_skipped: 0,
        max_seq: 0,
    };
    // a log is unsorted by nature; only a Parquet file's order is a finding
    let from_parquet = matches!(input, Input::Parquet(..));
    // The input is read, shaped and cut into sorted chunks on a thread of its own, ahead of
    // the merge on this one (and of the encoding on the writer's): at most two chunks wait.
    let (tx, rx) = std::sync::mpsc::sync_channel::<RecordBatch>(1);
    // the reader owns the sending end: the merge's loop ends when it returns
    let read = |input: Input,
                tx: std::sync::mpsc::SyncSender<RecordBatch>|
     -> Result<ReadSide, TraceError> {
        let mut side = ReadSide::default();
        let mut prev: Option<(i64, u64)> = None;
        let mut pending = Vec::new();
        let mut rows = 0usize;
        // false: the merge stopped (on an error of its own)
        let mut each = |b: RecordBatch, side: &mut ReadSide| -> Result<bool, TraceError> {
            let b = if repair {
                let (b, dropped) =
                    drop_null_keys(b, part.keys).map_err(|e| TraceError::corrupt(&origin, e))?;
                side.null_key_rows_dropped += dropped;
                b
            } else {
                b
            };
            let b = to_shape(&b, &part.log_schema).map_err(|e| TraceError::corrupt(&origin, e))?;
            if from_parquet {
                if let (Some(ts), Some(seq)) = (
                    b.column_by_name("ts_ns")
                        .and_then(|c| c.as_any().downcast_ref::<arrow_array::Int64Array>()),
                    b.column_by_name("seq")
                        .and_then(|c| c.as_any().downcast_ref::<arrow_array::UInt64Array>()),
                ) {
                    for i in 0..b.num_rows() {
                        let k = (ts.value(i), seq.value(i));
                        if prev.is_some_and(|p| k < p) {
                            side.reordered = true;
                        }
                        prev = Some(k);
                    }
                }
            }
            rows += b.num_rows();
            pending.push(b);
            if rows < crate::sort::CHUNK_ROWS {
                return Ok(true);
            }
            rows = 0;
            let chunk = sort_rows(&part.sort_schema, std::mem::take(&mut pending), &origin)?;
            Ok(tx.send(chunk).is_ok())
        };
        match input {
            Input::Log(mut l) => {
                for b in l.by_ref() {
                    if !each(b?, &mut side)? {
                        return Ok(side);
                    }
                }
                side.log = Some(*l);
            }
            Input::Parquet(it, _) => {
                for b in it {
                    if !each(b?, &mut side)? {
                        return Ok(side);
                    }
                }
            }
        }
        if !pending.is_empty() {
            let chunk = sort_rows(&part.sort_schema, pending, &origin)?;
            let _ = tx.send(chunk);
        }
        Ok(side)
    };
    let side = std::thread::scope(|s| -> Result<ReadSide, TraceError> {
        let reader = s.spawn(move || read(input, tx));
        let merged = (|| {
            for chunk in rx {
                sorter.push(chunk)?;
                while let Some(out) = sorter.pop()? {
                    sink.write(out, &mut w)?;
                }
            }
            Ok::<(), TraceError>(())
        })();
        let side = reader
            .join()
            .unwrap_or_else(|_| Err(TraceError::Invalid("the log reader failed".into())));
        merged?;
        side
    })?;
    w.null_key_rows_dropped = side.null_key_rows_dropped;
    w.reordered = side.reordered;
    if let Some(l) = &side.log {
        w.truncated = l.truncated;
        w.warning = l.warning();
        w.records_skipped = l.skipped.len() as u64;
        w.bytes_skipped = l.skipped.iter().map(|s| s.1).sum();
    }
    sorter.finish_input()?;
    while let Some(out) = sorter.pop()? {
        sink.write(out, &mut w)?;
    }
    let (mut row_groups, mut seqs) = sink.close()?;
    if sorter.late_rows() > 0 {
        // rows that came too late for the one-pass sort: merge them, sorted, with what was
        // written into a second file that replaces the first
        let late = sorter.late()?;
        let merge_path = dir.join(merge_name(part.out_name));
        let rerr = |e: &dyn std::fmt::Display| TraceError::corrupt(&tmp_path, e.to_string());
        let f = File::open(&tmp_path).map_err(|e| TraceError::io(&tmp_path, e))?;
        let written = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
            .map_err(|e| rerr(&e))?
            .with_batch_size(crate::sort::OUT_BATCH)
            .build()
            .map_err(|e| rerr(&e))?;
        let sort_schema = part.sort_schema.clone();
        let path = tmp_path.clone();
        let written = written.map(move |b| {
            b.and_then(|b| to_shape(&b, &sort_schema))
                .map_err(|e| TraceError::corrupt(&path, e.to_string()))
        });
        let mut streams: Vec<Box<dyn Iterator<Item = Result<RecordBatch, TraceError>> + Send>> =
            vec![Box::new(written)];
        streams.extend(late.map(|m| {
            Box::new(m) as Box<dyn Iterator<Item = Result<RecordBatch, TraceError>> + Send>
        }));
        // the figures of the written rows are those of the second file
        w.rows = 0;
        w.first = None;
        w.last = None;
        w.max_seq = 0;
        w.duplicates_dropped = 0;
        let mut sink = Sink::new(dir, part, &merge_path, repair)?;
        for b in merge_sorted(streams, &origin)? {
            sink.write(b?, &mut w)?;
        }
        (row_groups, seqs) = sink.close()?;
        std::fs::rename(&merge_path, &tmp_path).map_err(|e| TraceError::io(&tmp_path, e))?;
    }
    w.row_groups = row_groups;
    File::open(&tmp_path)
        .and_then(|f| f.sync_all())
        .map_err(|e| TraceError::io(&tmp_path, e))?;
    Ok((w, seqs))
}

/// Rewrites `.<out>.tmp` with `seq` renumbered from `first`; returns the next free seq.
fn renumber(dir: &Path, part: &Part, first: u64) -> Result<u64, TraceError> {
    let tmp_path = dir.join(tmp_name(part.out_name));
    let re_path = dir.join(format!(".{}.renumber", part.out_name));
    let f = File::open(&tmp_path).map_err(|e| TraceError::io(&tmp_path, e))?;
    let rerr = |e: &dyn std::fmt::Display| TraceError::corrupt(&tmp_path, e.to_string());
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
        .map_err(|e| rerr(&e))?;
    // the same rows in the same row groups: their distinct values stay what they were
    let values = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| {
            kv.iter()
                .find(|k| k.key == encode::GROUP_VALUES_KEY)
                .cloned()
        });
    let reader = builder.build().map_err(|e| rerr(&e))?;
    let out = File::create(&re_path).map_err(|e| TraceError::io(&re_path, e))?;
    let mut pw = ArrowWriter::try_new(out, part.table_schema.clone(), Some((part.props)()))
        .map_err(|e| rerr(&e))?;
    if let Some(kv) = values {
        pw.append_key_value_metadata(kv);
    }
    let mut next = first;
    for b in reader {
        let b = b.map_err(|e| rerr(&e))?;
        let n = b.num_rows() as u64;
        let seq: arrow_array::ArrayRef =
            std::sync::Arc::new(arrow_array::UInt64Array::from_iter_values(next..next + n));
        next += n;
        let idx = b.schema().index_of("seq").map_err(|e| rerr(&e))?;
        let mut cols = b.columns().to_vec();
        cols[idx] = seq;
        let b = RecordBatch::try_new(b.schema(), cols).map_err(|e| rerr(&e))?;
        pw.write(&b).map_err(|e| rerr(&e))?;
    }
    pw.close().map_err(|e| rerr(&e))?;
    File::open(&re_path)
        .and_then(|f| f.sync_all())
        .map_err(|e| TraceError::io(&re_path, e))?;
    std::fs::rename(&re_path, &tmp_path).map_err(|e| TraceError::io(&tmp_path, e))?;
    Ok(next)
}

/// How to finalize.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FinalizeOptions {
    /// Repair a trace that breaks an invariant (`analyzer finalize --repair`): rows are sorted,
    /// rows with a null key column dropped, exact duplicate rows written once, every row
    /// renumbered when distinct rows share a `seq`, and damaged log records skipped. Also runs on
    /// a finalized trace (its Parquet files are rewritten).
    pub repair: bool,
}

/// Finalizes a trace directory left by a writer (finished or killed): sorts the event and packet
/// logs with bounded memory and writes `events.parquet` / `packets.parquet`. A trace that is
/// already finalized is left as it is (its summary is returned with `already_finalized`).
pub fn finalize(dir: &Path) -> Result<FinalizeSummary, TraceError> {
    finalize_with(dir, FinalizeOptions::default())
}

/// [`finalize`] with options. Without `repair`, a log holding rows that share a `seq` is refused
/// (nothing is written and the log is kept). The Parquet files are written under temporary names,
/// their checksums and the checked invariants recorded in the manifest (which then says format
/// version 2), and only then are they renamed into place and the logs removed.
pub fn finalize_with(dir: &Path, opts: FinalizeOptions) -> Result<FinalizeSummary, TraceError> {
    finalize_budget(dir, opts, SORT_RUN_BYTES)
}

/// [`finalize_with`] holding `budget` bytes in the sort (tests use small ones).
pub(crate) fn finalize_budget(
    dir: &Path,
    opts: FinalizeOptions,
    budget: usize,
) -> Result<FinalizeSummary, TraceError> {
    if !dir.is_dir() {
        return Err(TraceError::NotFound {
            path: dir.to_path_buf(),
        });
    }
    let mut manifest = Manifest::read(dir)?;
    manifest.check_version(dir)?;
    let mut summary = FinalizeSummary::default();
    let events_log = dir.join(files::EVENTS_LOG);
    let events_parquet = dir.join(files::EVENTS_PARQUET);
    let repair = opts.repair;
    if !(events_log.exists() || repair && events_parquet.exists()) {
        if events_parquet.exists() && !dir.join(files::PACKETS_LOG).exists() {
            summary.already_finalized = true;
            let t = crate::Trace::open(dir)?;
            let (rows, first, last, groups) = t.parquet_facts().unwrap_or((0, None, None, 0));
            summary.events = rows;
            summary.first_ns = first;
            summary.last_ns = last;
            summary.row_groups = groups;
            if let Some(path) = dir
                .join(files::PACKETS_PARQUET)
                .exists()
                .then(|| dir.join(files::PACKETS_PARQUET))
            {
                let f = File::open(&path).map_err(|e| TraceError::io(&path, e))?;
                let m = parquet::file::metadata::ParquetMetaDataReader::new()
                    .parse_and_finish(&f)
                    .map_err(|e| TraceError::corrupt(&path, e))?;
                summary.packets = m.file_metadata().num_rows().max(0) as u64;
            }
            return Ok(summary);
        }
        if !events_parquet.exists() {
            return Err(TraceError::NotATrace {
                path: dir.to_path_buf(),
                reason: "no events.arrows or events.parquet".into(),
            });
        }
    }
    // a finalized trace being repaired is read through its verified Parquet files
    let finalized = if events_parquet.exists() && (repair || !events_log.exists()) {
        Some(crate::Trace::open(dir)?)
    } else {
        None
    };
    let mut seqs = Vec::new();
    let mut written: Vec<(&'static str, Written)> = Vec::new();
    for (part, is_packets) in [(events_part(), false), (packets_part(), true)] {
        let log_path = dir.join(part.log_name);
        let input = if log_path.exists() {
            // read once, and removed once the Parquet file is in place
            let l = LogReader::open(&log_path, part.log_schema.clone())?.drop_behind();
            Input::Log(Box::new(if repair { l.skip_damaged() } else { l }))
        } else if let (Some(t), true) = (&finalized, dir.join(part.out_name).exists()) {
            Input::Parquet(t.raw_batches(is_packets)?, dir.join(part.out_name))
        } else {
            continue;
        };
        let (w, s) = write_sorted(dir, &part, input, repair, budget)?;
        written.push((part.out_name, w));
        seqs.push(s);
    }
    let cleanup = |written: &[(&str, Written)]| {
        for (name, _) in written {
            let _ = std::fs::remove_file(dir.join(tmp_name(name)));
        }
    };
    let report = match SeqCheck::finish_all(seqs, dir) {
        Ok(r) => r,
        Err(e) => {
            cleanup(&written);
            return Err(e);
        }
    };
    let mut repairs = crate::manifest::Repairs::default();
    for (_, w) in &written {
        repairs.reordered |= w.reordered;
        repairs.duplicates_dropped += w.duplicates_dropped;
        repairs.null_key_rows_dropped += w.null_key_rows_dropped;
        repairs.log_records_skipped += w.records_skipped;
        repairs.log_bytes_skipped += w.bytes_skipped;
    }
    let mut max_seq = written.iter().map(|(_, w)| w.max_seq).max().unwrap_or(0);
    if report.duplicates > 0 {
        if !repair {
            cleanup(&written);
            return Err(TraceError::corrupt(
                &dir.join(files::EVENTS_LOG),
                format!(
                    "seq {} is shared by more than one row ({} rows repeat a seq); nothing was written; run `analyzer finalize --repair` to renumber",
                    report.first.unwrap_or(0),
                    report.duplicates
                ),
            ));
        }
        let mut next = 1;
        for part in [events_part(), packets_part()] {
            if written.iter().any(|(n, _)| *n == part.out_name) {
                next = match renumber(dir, &part, next) {
                    Ok(n) => n,
                    Err(e) => {
                        cleanup(&written);
                        return Err(e);
                    }
                };
            }
        }
        repairs.renumbered = true;
        max_seq = next - 1;
    }
    let mut invariants = crate::manifest::Invariants {
        sorted: true,
        unique_seq: true,
        events: 0,
        packets: 0,
        max_seq,
        repaired: repair.then_some(repairs.clone()),
    };
    for (name, w) in &written {
        let sums = match crate::checksum::compute(&dir.join(tmp_name(name))) {
            Ok(s) => s,
            Err(e) => {
                cleanup(&written);
                return Err(e);
            }
        };
        manifest.checksums.insert(name.to_string(), sums);
        if *name == files::EVENTS_PARQUET {
            invariants.events = w.rows;
            summary.events = w.rows;
            summary.first_ns = w.first;
            summary.last_ns = w.last;
            summary.row_groups = w.row_groups;
        } else {
            invariants.packets = w.rows;
            summary.packets = w.rows;
        }
        summary.truncated_log |= w.truncated;
        summary.warnings.extend(w.warning.clone());
    }
    if let Some(prev) = manifest.invariants.as_ref() {
        // a packets-only finalization keeps the event counts recorded before
        if !written.iter().any(|(n, _)| *n == files::EVENTS_PARQUET) {
            invariants.events = prev.events;
            summary.events = prev.events;
        }
    }
    manifest.format_version = crate::FORMAT_VERSION;
    manifest.invariants = Some(invariants);
    if let Err(e) = manifest.write_atomic(dir) {
        cleanup(&written);
        return Err(e);
    }
    for (name, _) in &written {
        let out = dir.join(name);
        std::fs::rename(dir.join(tmp_name(name)), &out).map_err(|e| TraceError::io(&out, e))?;
    }
    for part in [events_part(), packets_part()] {
        let log = dir.join(part.log_name);
        if log.exists() {
            std::fs::remove_file(&log).map_err(|e| TraceError::io(&log, e))?;
        }
    }
    summary.repairs = repair.then_some(repairs);
    Ok(summary)
}
