//! Finalization: turning the append-only logs of a trace into sorted Parquet files.
//!
//! `events.arrows` is sorted by `(ts_ns, seq)` with bounded memory (sorted runs spilled to a
//! temporary directory inside the trace, then a k-way merge) and written to `events.parquet`
//! (dictionary-encoded low-cardinality columns, ZSTD, statistics, [`ROW_GROUP_ROWS`] rows per row
//! group). The Parquet file is written under a temporary name and renamed into place, and only
//! then is the log removed, so a finalization that is itself interrupted can simply be rerun.
//! The same happens for `packets.arrows` → `packets.parquet`.

use std::fs::File;
use std::path::Path;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::sort::{sort_log, LogReader};
use crate::{files, schema, Manifest, TraceError};

/// Rows per Parquet row group: the unit of skipping by time range and the bound of reader memory.
pub const ROW_GROUP_ROWS: usize = 64 * 1024;

/// In-memory budget of one sort run (bytes of Arrow data).
pub const SORT_RUN_BYTES: usize = 48 << 20;

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
}

/// Writer properties of the trace's Parquet files.
pub fn writer_properties(dict_columns: &[&str], plain_columns: &[&str]) -> WriterProperties {
    let meta = vec![KeyValue::new(
        schema::FORMAT_VERSION_KEY.to_string(),
        crate::FORMAT_VERSION.to_string(),
    )];
    let mut b = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()))
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
    b.build()
}

struct Written {
    rows: u64,
    first: Option<i64>,
    last: Option<i64>,
    row_groups: usize,
    truncated: bool,
}

/// Sorts `log` into `out` (via a temporary file and rename), then removes the log.
fn write_sorted(
    dir: &Path,
    log_name: &str,
    out_name: &str,
    log_schema: SchemaRef,
    table_schema: SchemaRef,
    convert: fn(&RecordBatch) -> Result<RecordBatch, arrow_schema::ArrowError>,
    props: WriterProperties,
) -> Result<Written, TraceError> {
    let log_path = dir.join(log_name);
    let out_path = dir.join(out_name);
    let tmp_path = dir.join(format!(".{out_name}.tmp"));
    let mut log = LogReader::open(&log_path, log_schema)?;
    let merged = sort_log(&mut log, Some(dir), SORT_RUN_BYTES)?;
    let f = File::create(&tmp_path).map_err(|e| TraceError::io(&tmp_path, e))?;
    let werr =
        |e: &dyn std::fmt::Display| TraceError::corrupt(&out_path, format!("cannot write: {e}"));
    let mut w = ArrowWriter::try_new(f, table_schema, Some(props)).map_err(|e| werr(&e))?;
    let (mut rows, mut first, mut last) = (0u64, None, None);
    for b in merged {
        let b = b?;
        if b.num_rows() == 0 {
            continue;
        }
        if let Some(ts) = b
            .column_by_name("ts_ns")
            .and_then(|c| c.as_any().downcast_ref::<arrow_array::Int64Array>())
        {
            first = first.or(Some(ts.value(0)));
            last = Some(ts.value(ts.len() - 1));
        }
        rows += b.num_rows() as u64;
        let t = convert(&b).map_err(|e| werr(&e))?;
        w.write(&t).map_err(|e| werr(&e))?;
    }
    let meta = w.close().map_err(|e| werr(&e))?;
    let row_groups = meta.num_row_groups();
    File::open(&tmp_path)
        .and_then(|f| f.sync_all())
        .map_err(|e| TraceError::io(&tmp_path, e))?;
    std::fs::rename(&tmp_path, &out_path).map_err(|e| TraceError::io(&out_path, e))?;
    std::fs::remove_file(&log_path).map_err(|e| TraceError::io(&log_path, e))?;
    Ok(Written {
        rows,
        first,
        last,
        row_groups,
        truncated: log.truncated,
    })
}

/// Finalizes a trace directory left by a writer (finished or killed): sorts the event and packet
/// logs with bounded memory and writes `events.parquet` / `packets.parquet`. A trace that is
/// already finalized is left as it is (its summary is returned with `already_finalized`).
pub fn finalize(dir: &Path) -> Result<FinalizeSummary, TraceError> {
    if !dir.is_dir() {
        return Err(TraceError::NotFound {
            path: dir.to_path_buf(),
        });
    }
    let manifest = Manifest::read(dir)?;
    manifest.check_version(dir)?;
    let mut summary = FinalizeSummary::default();
    let events_log = dir.join(files::EVENTS_LOG);
    let events_parquet = dir.join(files::EVENTS_PARQUET);
    if events_log.exists() {
        let w = write_sorted(
            dir,
            files::EVENTS_LOG,
            files::EVENTS_PARQUET,
            schema::event_log_schema(),
            schema::event_table_schema(),
            schema::log_to_table_batch,
            writer_properties(&schema::DICT_COLUMNS, &["ts_ns", "time", "seq", "data"]),
        )?;
        summary.events = w.rows;
        summary.first_ns = w.first;
        summary.last_ns = w.last;
        summary.row_groups = w.row_groups;
        summary.truncated_log |= w.truncated;
    } else if events_parquet.exists() {
        summary.already_finalized = true;
        let t = crate::Trace::open(dir)?;
        let (rows, first, last, groups) = t.parquet_facts().unwrap_or((0, None, None, 0));
        summary.events = rows;
        summary.first_ns = first;
        summary.last_ns = last;
        summary.row_groups = groups;
    } else {
        return Err(TraceError::NotATrace {
            path: dir.to_path_buf(),
            reason: "no events.arrows or events.parquet".into(),
        });
    }
    if dir.join(files::PACKETS_LOG).exists() {
        let w = write_sorted(
            dir,
            files::PACKETS_LOG,
            files::PACKETS_PARQUET,
            crate::packets::packet_log_schema(),
            crate::packets::packet_table_schema(),
            crate::packets::packet_log_to_table_batch,
            writer_properties(
                &crate::packets::PACKET_DICT_COLUMNS,
                &["ts_ns", "time", "seq"],
            ),
        )?;
        summary.packets = w.rows;
        summary.truncated_log |= w.truncated;
        summary.already_finalized = false;
    } else if dir.join(files::PACKETS_PARQUET).exists() {
        let path = dir.join(files::PACKETS_PARQUET);
        let f = File::open(&path).map_err(|e| TraceError::io(&path, e))?;
        let m = parquet::file::metadata::ParquetMetaDataReader::new()
            .parse_and_finish(&f)
            .map_err(|e| TraceError::corrupt(&path, e))?;
        summary.packets = m.file_metadata().num_rows().max(0) as u64;
    }
    Ok(summary)
}
