//! Writing finalization's Parquet files with their columns encoded in parallel.
//!
//! [`ParallelWriter`] takes sorted batches in finalization's sort shape (the log's columns, the
//! table's dictionary ones possibly encoded already) and gathers them into row groups
//! of the writer properties' row count; a background thread converts each row group to the
//! table's shape and encodes its columns on one thread per column (page encoding, dictionaries,
//! statistics and ZSTD are per column), then appends the column chunks in schema order. The file
//! is the one `ArrowWriter` writes from the same batches with the same properties: the same
//! column writers see the same values in the same slices. The caller merges the next row group
//! while one is encoded: at most three row groups are held (one gathering, one queued, one
//! encoding).
//!
//! Optionally ([`ParallelWriter::try_new`]'s `plain_when_incompressible`), a column chunk that
//! its codec does not shrink to [`KEEP_COMPRESSED`] of its size is encoded again uncompressed
//! and stored so (the codec is a property of each column chunk): times and sequence numbers whose
//! deltas are noise cost a reader a codec and a copy for nothing. The column's next chunks are
//! then encoded uncompressed straight away, but in every [`RECHECK`]-th row group, where the
//! codec is tried again.
//!
//! The footer also lists, for each row group, the distinct values of each dictionary-encoded
//! text column (the values its rows' dictionary keys point at; [`GROUP_VALUES_KEY`], read back by
//! [`crate::Trace::group_stats`]), so that a reader can rule a group out by a value it lacks.

use std::fs::File;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::thread::JoinHandle;

use arrow_array::RecordBatch;
use arrow_schema::{ArrowError, SchemaRef};
use parquet::arrow::arrow_writer::{compute_leaves, ArrowColumnChunk, ArrowColumnWriter};
use parquet::arrow::ArrowWriter;
use parquet::errors::ParquetError;
use parquet::file::metadata::{KeyValue, ParquetMetaData};
use parquet::file::properties::WriterProperties;

/// The footer metadata key of the row groups' distinct values (docs/trace-format.md): a JSON
/// object mapping each dictionary-encoded text column to one entry per row group, the sorted
/// distinct non-null values of the column in that group, or `null` where there are more than
/// [`MAX_GROUP_VALUES`].
pub const GROUP_VALUES_KEY: &str = "chaos_trace.group_values";

/// The most distinct values listed for one column of one row group.
pub const MAX_GROUP_VALUES: usize = 256;

/// A compressed column chunk is kept when its compressed size is at most this fraction of its
/// uncompressed size (numerator, denominator); otherwise, with `plain_when_incompressible`, the
/// chunk is stored uncompressed.
pub const KEEP_COMPRESSED: (u64, u64) = (7, 8);

/// How often a column stored uncompressed is tried compressed again (every this many row
/// groups, the first included).
pub const RECHECK: usize = 16;

/// Whether a chunk compressed from `uncompressed` to `compressed` bytes is stored so.
fn worth_compressing(compressed: i64, uncompressed: i64) -> bool {
    let (c, u) = (compressed.max(0) as u64, uncompressed.max(0) as u64);
    c.saturating_mul(KEEP_COMPRESSED.1) <= u.saturating_mul(KEEP_COMPRESSED.0)
}

/// The distinct values of each dictionary-encoded text column of one row group (`None`: too
/// many to list), in schema order of those columns.
type GroupValues = Vec<(String, Option<Vec<String>>)>;

fn group_values(schema: &SchemaRef, table: &[RecordBatch]) -> GroupValues {
    use arrow_array::cast::AsArray;
    use arrow_array::Array;
    use arrow_schema::DataType;
    let mut out = Vec::new();
    for (i, f) in schema.fields().iter().enumerate() {
        if !matches!(f.data_type(), DataType::Dictionary(_, v) if **v == DataType::Utf8) {
            continue;
        }
        let mut set = std::collections::BTreeSet::new();
        let mut listed = true;
        for b in table {
            let Some(d) = b.column(i).as_any_dictionary_opt() else {
                listed = false;
                break;
            };
            let Some(vals) = d.values().as_string_opt::<i32>() else {
                listed = false;
                break;
            };
            // a batch's dictionary may hold values none of its rows use (a slice of a sorted
            // chunk keeps the chunk's dictionary): only the values its keys point at count
            let mut used = vec![false; vals.len()];
            match b
                .column(i)
                .as_dictionary_opt::<arrow_array::types::Int32Type>()
            {
                Some(d) => {
                    for k in d.keys().iter().flatten() {
                        if let Some(u) = used.get_mut(k as usize) {
                            *u = true;
                        }
                    }
                }
                None => used.fill(true),
            }
            for (j, v) in vals.iter().enumerate() {
                let Some(v) = v.filter(|_| used[j]) else {
                    continue;
                };
                if !set.contains(v) {
                    set.insert(v.to_string());
                }
            }
            if set.len() > MAX_GROUP_VALUES {
                listed = false;
                break;
            }
        }
        out.push((f.name().clone(), listed.then(|| set.into_iter().collect())));
    }
    out
}

/// The footer entry of the distinct values of every row group (see [`GROUP_VALUES_KEY`]).
fn group_values_kv(groups: &[GroupValues]) -> KeyValue {
    let mut cols = serde_json::Map::new();
    for g in groups {
        for (name, vals) in g {
            let e = cols
                .entry(name.clone())
                .or_insert_with(|| serde_json::Value::Array(Vec::new()));
            if let serde_json::Value::Array(a) = e {
                a.push(serde_json::json!(vals));
            }
        }
    }
    KeyValue::new(
        GROUP_VALUES_KEY.to_string(),
        serde_json::Value::Object(cols).to_string(),
    )
}

/// Converts a batch of the sort shape to the table's.
pub(crate) type Convert = fn(&RecordBatch) -> Result<RecordBatch, ArrowError>;

/// A Parquet file writer encoding the columns of each row group in parallel.
pub(crate) struct ParallelWriter {
    tx: Option<SyncSender<Vec<RecordBatch>>>,
    encoder: Option<JoinHandle<Result<ParquetMetaData, ParquetError>>>,
    group: Vec<RecordBatch>,
    rows: usize,
    rows_per_group: usize,
}

impl ParallelWriter {
    /// A writer of `schema` (the table's shape) into `file`; batches given to
    /// [`ParallelWriter::write`] are in the sort shape and pass through `convert`. With
    /// `plain_when_incompressible`, a column chunk its codec does not shrink enough
    /// ([`KEEP_COMPRESSED`]) is stored uncompressed.
    pub(crate) fn try_new(
        file: File,
        schema: SchemaRef,
        props: WriterProperties,
        convert: Convert,
        plain_when_incompressible: bool,
    ) -> Result<ParallelWriter, ParquetError> {
        let rows_per_group = props.max_row_group_row_count().unwrap_or(usize::MAX).max(1);
        // the column writers of an uncompressed chunk: the same properties but the codec (from
        // a writer into nothing: only its column writers are used)
        let plain = if plain_when_incompressible {
            let p = props
                .clone()
                .into_builder()
                .set_compression(parquet::basic::Compression::UNCOMPRESSED)
                .build();
            Some(
                ArrowWriter::try_new(std::io::sink(), schema.clone(), Some(p))?
                    .into_serialized_writer()?
                    .1,
            )
        } else {
            None
        };
        let (mut fw, factory) =
            ArrowWriter::try_new(file, schema.clone(), Some(props))?.into_serialized_writer()?;
        let (tx, rx) = sync_channel::<Vec<RecordBatch>>(1);
        let encoder = std::thread::spawn(move || {
            let mut values = Vec::new();
            // the columns whose last chunk tried compressed was not worth it: encoded
            // uncompressed straight away but in every RECHECK-th row group
            let mut plain_cols = vec![false; schema.fields().len()];
            for (rg, group) in rx.into_iter().enumerate() {
                let table = group
                    .iter()
                    .map(convert)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| ParquetError::ArrowError(e.to_string()))?;
                drop(group);
                values.push(group_values(&schema, &table));
                let writers = factory.create_column_writers(rg)?;
                let mut plain_writers: Vec<Option<ArrowColumnWriter>> = match &plain {
                    Some(f) => f.create_column_writers(rg)?.into_iter().map(Some).collect(),
                    None => Vec::new(),
                };
                if writers.len() != schema.fields().len()
                    || (plain.is_some() && plain_writers.len() != writers.len())
                {
                    return Err(ParquetError::General(
                        "nested columns are not supported by the parallel writer".into(),
                    ));
                }
                let recheck = rg % RECHECK == 0;
                let chunks: Vec<Result<(ArrowColumnChunk, bool), ParquetError>> =
                    std::thread::scope(|s| {
                        let handles: Vec<_> = writers
                            .into_iter()
                            .enumerate()
                            .map(|(i, w)| {
                                let table = &table;
                                let field = schema.field(i);
                                let plain = plain_writers.get_mut(i).and_then(Option::take);
                                let straight =
                                    !recheck && plain_cols.get(i).copied().unwrap_or(false);
                                s.spawn(move || {
                                    let encode = |mut w: ArrowColumnWriter| {
                                        for b in table {
                                            for leaf in compute_leaves(field, b.column(i))? {
                                                w.write(&leaf)?;
                                            }
                                        }
                                        w.close()
                                    };
                                    let Some(p) = plain else {
                                        return Ok((encode(w)?, false));
                                    };
                                    if straight {
                                        return Ok((encode(p)?, true));
                                    }
                                    let chunk = encode(w)?;
                                    let m = &chunk.close().metadata;
                                    if m.compression() != parquet::basic::Compression::UNCOMPRESSED
                                        && !worth_compressing(
                                            m.compressed_size(),
                                            m.uncompressed_size(),
                                        )
                                    {
                                        drop(chunk);
                                        return Ok((encode(p)?, true));
                                    }
                                    Ok((chunk, false))
                                })
                            })
                            .collect();
                        handles
                            .into_iter()
                            .map(|h| {
                                h.join().unwrap_or_else(|_| {
                                    Err(ParquetError::General("a column encoder failed".into()))
                                })
                            })
                            .collect()
                    });
                let mut rgw = fw.next_row_group()?;
                for (c, was_plain) in chunks.into_iter().zip(plain_cols.iter_mut()) {
                    let (c, plain) = c?;
                    *was_plain = plain;
                    c.append_to_row_group(&mut rgw)?;
                }
                rgw.close()?;
            }
            if values.first().is_some_and(|v| !v.is_empty()) {
                fw.append_key_value_metadata(group_values_kv(&values));
            }
            fw.close()
        });
        Ok(ParallelWriter {
            tx: Some(tx),
            encoder: Some(encoder),
            group: Vec::new(),
            rows: 0,
            rows_per_group,
        })
    }

    /// Appends a batch (sort shape); a full row group goes to the encoder.
    pub(crate) fn write(&mut self, batch: &RecordBatch) -> Result<(), ParquetError> {
        let mut rest = batch.clone();
        while rest.num_rows() > 0 {
            let room = self.rows_per_group - self.rows;
            let take = room.min(rest.num_rows());
            self.group.push(rest.slice(0, take));
            self.rows += take;
            rest = rest.slice(take, rest.num_rows() - take);
            if self.rows >= self.rows_per_group {
                self.send()?;
            }
        }
        Ok(())
    }

    fn send(&mut self) -> Result<(), ParquetError> {
        let group = std::mem::take(&mut self.group);
        self.rows = 0;
        let sent = self.tx.as_ref().is_some_and(|tx| tx.send(group).is_ok());
        if sent {
            Ok(())
        } else {
            // the encoder stopped on an error: that error
            self.tx = None;
            Err(self
                .join()
                .err()
                .unwrap_or_else(|| ParquetError::General("the column encoder stopped".into())))
        }
    }

    fn join(&mut self) -> Result<ParquetMetaData, ParquetError> {
        match self.encoder.take() {
            Some(h) => h
                .join()
                .unwrap_or_else(|_| Err(ParquetError::General("the column encoder failed".into()))),
            None => Err(ParquetError::General("the column encoder stopped".into())),
        }
    }

    /// Writes the last row group and the footer.
    pub(crate) fn close(mut self) -> Result<ParquetMetaData, ParquetError> {
        if self.rows > 0 {
            self.send()?;
        }
        self.tx = None;
        self.join()
    }
}

impl Drop for ParallelWriter {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(h) = self.encoder.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gen::{self, GenConfig};

    /// The log-shaped batches (8,192 events each) of `events`.
    fn log_batches(events: &[crate::Event]) -> Vec<RecordBatch> {
        events
            .chunks(8192)
            .map(|c| crate::schema::events_to_log_batch(c.iter()))
            .collect()
    }

    /// The events table's writer properties, as finalize gives them.
    fn props() -> WriterProperties {
        (crate::finalize::events_part().props)()
    }

    /// `batches` written to `path` by a [`ParallelWriter`].
    fn write_parallel(
        path: &std::path::Path,
        batches: &[RecordBatch],
        plain_when_incompressible: bool,
    ) -> ParquetMetaData {
        let mut w = ParallelWriter::try_new(
            File::create(path).unwrap(),
            crate::schema::event_table_schema(),
            props(),
            crate::schema::log_to_table_batch,
            plain_when_incompressible,
        )
        .unwrap();
        for b in batches {
            w.write(b).unwrap();
        }
        w.close().unwrap()
    }

    #[test]
    fn the_file_is_the_one_arrow_writer_writes() {
        let cfg = GenConfig {
            duration: std::time::Duration::from_secs(60),
            log_rate: 600.0,
            ..Default::default()
        };
        let events: Vec<crate::Event> = gen::events(&cfg).collect();
        let batches = log_batches(&events);
        assert!(events.len() > 2 * crate::finalize::ROW_GROUP_ROWS);
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("parallel.parquet");
        let meta = write_parallel(&p, &batches, false);
        assert!(meta.num_row_groups() >= 3);
        // the same file, the row groups' distinct values appended to the footer
        let kv = meta
            .file_metadata()
            .key_value_metadata()
            .and_then(|kv| kv.iter().find(|k| k.key == GROUP_VALUES_KEY).cloned())
            .expect("the distinct values are listed");
        let a = d.path().join("arrow.parquet");
        let mut w = ArrowWriter::try_new(
            File::create(&a).unwrap(),
            crate::schema::event_table_schema(),
            Some(props()),
        )
        .unwrap();
        for b in &batches {
            w.write(&crate::schema::log_to_table_batch(b).unwrap())
                .unwrap();
        }
        w.append_key_value_metadata(kv);
        w.close().unwrap();
        assert!(std::fs::read(&a).unwrap() == std::fs::read(&p).unwrap());
    }

    /// With `plain_when_incompressible`, each column chunk is the compressed one where the codec
    /// shrinks it to 7/8 or less and an uncompressed one elsewhere (a column once stored
    /// uncompressed is tried compressed again every RECHECK-th row group); the file reads back
    /// the same.
    #[test]
    fn chunks_the_codec_does_not_shrink_are_stored_uncompressed() {
        use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        use parquet::basic::Compression;
        // noisy sequence numbers (incompressible deltas), repetitive text, times noisy in the
        // first three row groups and regular after them
        let mut rng = crate::gen::Rng(0x2545_f491_4f6c_dd1d);
        let noisy_rows = 3 * crate::finalize::ROW_GROUP_ROWS as u64;
        let events: Vec<crate::Event> = (0..(RECHECK as u64 + 2)
            * crate::finalize::ROW_GROUP_ROWS as u64)
            .map(|i| {
                let x = rng.next();
                let jitter = if i < noisy_rows {
                    x % 999_983
                } else {
                    i % 7 * 13_000
                };
                let mut e =
                    crate::Event::new(i as i64 * 1_000_000 + jitter as i64, "log", "stdout")
                        .service("a")
                        .message(format!("line {}", i % 10));
                e.seq = i * 4 + x % 3;
                e
            })
            .collect();
        let batches = log_batches(&events);
        let d = tempfile::tempdir().unwrap();
        let (zp, pp) = (
            d.path().join("zstd.parquet"),
            d.path().join("mixed.parquet"),
        );
        let zstd = write_parallel(&zp, &batches, false);
        let mixed = write_parallel(&pp, &batches, true);
        assert_eq!(zstd.num_row_groups(), mixed.num_row_groups());
        let (mut kept, mut plain, mut held) = (0, 0, 0);
        let mut was_plain = vec![false; zstd.row_group(0).num_columns()];
        for (rg, (z, m)) in zstd.row_groups().iter().zip(mixed.row_groups()).enumerate() {
            for (i, (z, m)) in z.columns().iter().zip(m.columns()).enumerate() {
                let name = z.column_path().string();
                // compressed where worth it, but a column stored uncompressed stays so until
                // the next row group where it is tried again
                let keep = if rg % RECHECK != 0 && was_plain[i] {
                    false
                } else {
                    worth_compressing(z.compressed_size(), z.uncompressed_size())
                };
                if !keep && worth_compressing(z.compressed_size(), z.uncompressed_size()) {
                    held += 1;
                }
                was_plain[i] = !keep;
                if keep {
                    assert!(matches!(m.compression(), Compression::ZSTD(_)), "{name}");
                    assert_eq!(m.compressed_size(), z.compressed_size(), "{name}");
                    kept += 1;
                } else {
                    assert_eq!(m.compression(), Compression::UNCOMPRESSED, "{name}");
                    assert_eq!(m.compressed_size(), m.uncompressed_size(), "{name}");
                    plain += 1;
                }
            }
        }
        assert!(kept > 0 && plain > 0, "{kept} kept, {plain} plain");
        // the times, compressible from the fourth row group on, stayed uncompressed until the
        // codec was tried again
        assert!(held > 0, "no chunk held uncompressed");
        let ts = |m: &ParquetMetaData, rg: usize| m.row_group(rg).column(0).compression();
        assert_eq!(ts(&mixed, 4), Compression::UNCOMPRESSED);
        assert!(matches!(ts(&mixed, RECHECK), Compression::ZSTD(_)));
        let read = |p: &std::path::Path| -> Vec<RecordBatch> {
            ParquetRecordBatchReaderBuilder::try_new(File::open(p).unwrap())
                .unwrap()
                .build()
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        assert_eq!(read(&zp), read(&pp));
    }
}
