//! The streaming reader: [`Trace::open`] and [`Trace::events`].
//!
//! A finalized trace is read from `events.parquet` row group by row group, with column
//! projection, row groups outside `since/until` skipped by their `ts_ns` statistics (and, in a
//! row group a bound cuts, the other columns decoded only for the rows in range), so memory is
//! bounded by a row group whatever the trace size. An unfinalized trace (a recorder still running
//! or killed) is read from its `events.arrows` log, sorted on the fly with the bounded-memory
//! external sort (runs spilled to the system temporary directory). With `include_packets`, the
//! rows of `packets.parquet` are merged into the stream as `source = "packet"` events. A trace on
//! object storage ([`Trace::open_remote`]) is read the same way through range requests; it must be
//! finalized.
//!
//! With [`ReadOptions::read_ahead`], the row groups of `events.parquet` are decoded on
//! `read_ahead` threads, the consumer's one of them, ahead of the consumer (`ahead`): the same
//! events in the same order, at most `read_ahead + 1` row groups decoded ahead of the one being
//! consumed. A caller's [`ReadOptions::prepare`] runs on each batch where it is decoded (on
//! those threads, ahead of the consumer) and its result rides with the batch
//! ([`EventBatch::prepared`]).

mod ahead;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type, UInt64Type};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Int32Array, Int64Array, RecordBatch, StringArray, UInt64Array,
};
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::{
    ArrowPredicateFn, ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
    RowFilter, RowSelection, RowSelector,
};
use parquet::arrow::ProjectionMask;
use parquet::file::statistics::Statistics;

use crate::checksum::{self, FileChecksums, VerifiedChunk};
use crate::remote::{Chunk, RemoteParquet, RemoteTrace, TAIL_BYTES};
use crate::sort::{sort_log, LogReader};
use crate::{files, schema, Event, EventRef, Manifest, PacketRecord, TraceError};

/// Which optional columns to read. `ts_ns` and `seq` are always read; a column not read shows
/// as `None` (or `""` for `source` and `kind`) in the [`EventRef`]s. `source` is also read, and
/// shown, whenever packets are merged into the stream; a source filter
/// ([`ReadOptions::sources`]) reads it to filter without showing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Columns {
    pub source: bool,
    pub service: bool,
    pub container: bool,
    pub kind: bool,
    pub message: bool,
    pub data: bool,
}

impl Columns {
    /// Every column.
    pub const ALL: Columns = Columns {
        source: true,
        service: true,
        container: true,
        kind: true,
        message: true,
        data: true,
    };
    /// Only `ts_ns`, `seq` and `source`.
    pub const NONE: Columns = Columns {
        source: true,
        service: false,
        container: false,
        kind: false,
        message: false,
        data: false,
    };

    fn names(&self) -> Vec<&'static str> {
        let mut v = vec!["ts_ns", "seq"];
        for (on, name) in [
            (self.source, "source"),
            (self.service, "service"),
            (self.container, "container"),
            (self.kind, "kind"),
            (self.message, "message"),
            (self.data, "data"),
        ] {
            if on {
                v.push(name);
            }
        }
        v
    }
}

impl Default for Columns {
    fn default() -> Self {
        Columns::ALL
    }
}

/// What to read. `Default` reads every event (no packets) with every column.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    /// Column projection.
    pub columns: Columns,
    /// Only events whose `source` is one of these (`None`: all).
    pub sources: Option<Vec<String>>,
    /// Only events with `ts_ns >= since_ns`.
    pub since_ns: Option<i64>,
    /// Only events with `ts_ns < until_ns` (exclusive).
    pub until_ns: Option<i64>,
    /// Merge the rows of `packets.parquet` into the stream as `source = "packet"` events.
    pub include_packets: bool,
    /// Rows per batch (0: the default, 8192).
    pub batch_size: usize,
    /// Decode the row groups of `events.parquet` on this many threads ahead of the consumer:
    /// `read_ahead - 1` workers, and the calling thread whenever it would wait for them (0 or
    /// 1: in the calling thread, one after the other). The events are the same
    /// either way (and, for a format v2 file, the batches); memory grows to at most
    /// `read_ahead + 2` decoded row groups (one being consumed, `read_ahead + 1` ready or
    /// decoding).
    pub read_ahead: usize,
    /// Only the row groups of `events.parquet` marked `true` here, by index (`None`, or an
    /// index past the end: read). A caller that proves from [`Trace::group_stats`] that no
    /// event of a group matters to it skips the group without fetching or decoding it. Ignored
    /// for a trace that is not finalized.
    pub row_groups: Option<Arc<[bool]>>,
    /// Work on each batch of `events.parquet` done where the batch is decoded: with
    /// `read_ahead`, on the decoding threads ahead of the consumer. What it returns rides with
    /// the batch ([`EventBatch::prepared`]); it sees the batch the consumer gets (the same rows
    /// and columns). Not run on the batches of an unfinalized log nor on those that merge packets.
    pub prepare: Option<Prepare>,
}

/// A record batch of `events.parquet` as [`Trace::events`] gets it from where it was decoded:
/// what [`ReadOptions::prepare`] made of it, and whether its rows are in order among themselves.
type Decoded = (RecordBatch, Option<Prepared>, Option<bool>);

/// What [`ReadOptions::prepare`] made of a batch.
pub type Prepared = Arc<dyn std::any::Any + Send + Sync>;

/// Work on each decoded batch ([`ReadOptions::prepare`]): a caller's function of the batch.
#[derive(Clone)]
pub struct Prepare(Arc<PrepareFn>);

/// The function a [`Prepare`] holds.
type PrepareFn = dyn Fn(&EventBatch) -> Option<Prepared> + Send + Sync;

impl Prepare {
    /// Wraps `f`, run on each batch.
    pub fn new(f: impl Fn(&EventBatch) -> Option<Prepared> + Send + Sync + 'static) -> Prepare {
        Prepare(Arc::new(f))
    }
}

impl std::fmt::Debug for Prepare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Prepare(..)")
    }
}

impl ReadOptions {
    fn batch_size(&self) -> usize {
        if self.batch_size == 0 {
            8192
        } else {
            self.batch_size
        }
    }

    fn keeps_source(&self, s: &str) -> bool {
        self.sources
            .as_ref()
            .is_none_or(|v| v.iter().any(|x| x == s))
    }

    fn in_range(&self, ts: i64) -> bool {
        in_range(self.since_ns, self.until_ns, ts)
    }
}

/// Whether `ts` is in `[since, until)` (an absent bound: no bound).
fn in_range(since: Option<i64>, until: Option<i64>, ts: i64) -> bool {
    since.is_none_or(|s| ts >= s) && until.is_none_or(|u| ts < u)
}

/// An open trace: a local directory, or a remote trace ([`Trace::open_remote`]).
#[derive(Debug)]
pub struct Trace {
    dir: PathBuf,
    manifest: Manifest,
    events: Option<ArrowReaderMetadata>,
    packets: Option<ArrowReaderMetadata>,
    /// For a remote trace: its `events.parquet` and `packets.parquet`.
    remote: Option<RemoteFiles>,
    /// What opening found and tolerated (a cut log tail), one line each.
    warnings: Vec<String>,
    /// [`Trace::group_stats`], read from the footer once.
    group_stats: std::sync::OnceLock<Option<Vec<crate::GroupStats>>>,
}

/// The `events.parquet` and (when there is one) `packets.parquet` of a remote trace.
type RemoteFiles = (Arc<RemoteParquet>, Option<Arc<RemoteParquet>>);

/// The checksums a trace records for one of its Parquet files: `None` for a v1 trace, an error
/// for a v2 trace that lacks them.
fn sums_for<'a>(
    manifest: &'a Manifest,
    name: &str,
    path: &Path,
) -> Result<Option<&'a FileChecksums>, TraceError> {
    match manifest.checksums.get(name) {
        Some(s) => Ok(Some(s)),
        None if manifest.format_version >= 2 => Err(TraceError::corrupt(
            path,
            "the manifest records no checksums for this file (a format v2 trace must)",
        )),
        None => Ok(None),
    }
}

fn load_parquet(
    path: &Path,
    required: &[&str],
    sums: Option<&FileChecksums>,
) -> Result<ArrowReaderMetadata, TraceError> {
    let f = File::open(path).map_err(|e| TraceError::io(path, e))?;
    load_parquet_from(&Chunk::Local(f), path, required, sums)
}

/// Largest footer accepted from a file without checksums (a v1 trace): a footer of a trace with
/// millions of rows is a few megabytes; a damaged length field must not make us allocate more.
const MAX_V1_FOOTER: u64 = 256 << 20;

fn load_parquet_from(
    f: &Chunk,
    path: &Path,
    required: &[&str],
    sums: Option<&FileChecksums>,
) -> Result<ArrowReaderMetadata, TraceError> {
    use parquet::file::reader::{ChunkReader, Length};
    match sums {
        Some(s) => checksum::verify_tail(f, path, s)?,
        None => {
            let len = f.len();
            if len < 12 {
                return Err(TraceError::corrupt(path, "file too small to be parquet"));
            }
            let tail = f
                .get_bytes(len - 8, 8)
                .map_err(|e| TraceError::corrupt(path, e))?;
            let footer = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]) as u64;
            if footer > MAX_V1_FOOTER || footer + 8 > len {
                return Err(TraceError::corrupt(
                    path,
                    format!("footer length {footer} does not fit the file ({len} bytes)"),
                ));
            }
        }
    }
    let meta = guard(path, || {
        ArrowReaderMetadata::load(f, ArrowReaderOptions::new())
    })?
    .map_err(|e| TraceError::corrupt(path, e))?;
    if let Some(s) = sums {
        checksum::verify_layout(meta.metadata(), path, s)?;
    }
    bound_metadata(meta.metadata(), path, f.len())?;
    let version = meta
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|k| k.key == schema::FORMAT_VERSION_KEY))
        .and_then(|k| k.value.as_deref())
        .map(|v| {
            v.trim()
                .parse::<u32>()
                .map_err(|_| TraceError::corrupt(path, format!("bad format version {v:?}")))
        })
        .transpose()?;
    if let Some(v) = version {
        if v > crate::FORMAT_VERSION {
            return Err(TraceError::NewerVersion {
                path: path.to_path_buf(),
                found: v,
                supported: crate::FORMAT_VERSION,
            });
        }
    }
    for c in required {
        if meta.schema().column_with_name(c).is_none() {
            return Err(TraceError::corrupt(path, format!("missing column {c}")));
        }
    }
    Ok(meta)
}

/// Refuses metadata whose sizes cannot be true of a file of `len` bytes, before anything is
/// allocated from them: row counts, column chunk ranges.
fn bound_metadata(
    md: &parquet::file::metadata::ParquetMetaData,
    path: &Path,
    len: u64,
) -> Result<(), TraceError> {
    let mut total: i64 = 0;
    for rg in 0..md.num_row_groups() {
        let g = md.row_group(rg);
        if g.num_rows() < 0 {
            return Err(TraceError::corrupt(
                path,
                format!("row group {rg}: negative row count"),
            ));
        }
        total = total.saturating_add(g.num_rows());
        for c in 0..g.num_columns() {
            let col = g.column(c);
            let range = checksum::checked_range(col);
            if col.num_values() < 0
                || range.is_none_or(|(start, size)| start.checked_add(size).is_none_or(|e| e > len))
            {
                return Err(TraceError::corrupt(
                    path,
                    format!("row group {rg}, column {c}: chunk size or offset out of the file"),
                ));
            }
        }
    }
    if md.file_metadata().num_rows() != total {
        return Err(TraceError::corrupt(
            path,
            format!(
                "footer says {} rows, its row groups {total}",
                md.file_metadata().num_rows()
            ),
        ));
    }
    Ok(())
}

fn ts_stats(meta: &ArrowReaderMetadata, rg: usize) -> Option<(i64, i64)> {
    let descr = meta.metadata().file_metadata().schema_descr();
    let idx = (0..descr.num_columns()).find(|&i| descr.column(i).name() == "ts_ns")?;
    match meta.metadata().row_group(rg).column(idx).statistics()? {
        Statistics::Int64(s) => Some((*s.min_opt()?, *s.max_opt()?)),
        _ => None,
    }
}

impl Trace {
    /// Opens a trace directory: reads and version-checks the manifest and the Parquet footers.
    pub fn open(dir: &Path) -> Result<Trace, TraceError> {
        if !dir.exists() {
            return Err(TraceError::NotFound {
                path: dir.to_path_buf(),
            });
        }
        if !dir.is_dir() {
            return Err(TraceError::NotATrace {
                path: dir.to_path_buf(),
                reason: "not a directory".into(),
            });
        }
        let manifest_path = dir.join(files::MANIFEST);
        if !manifest_path.exists() {
            return Err(TraceError::NotATrace {
                path: dir.to_path_buf(),
                reason: "no manifest.json".into(),
            });
        }
        let manifest = Manifest::read(dir)?;
        manifest.check_version(dir)?;
        let ev_path = dir.join(files::EVENTS_PARQUET);
        let log_path = dir.join(files::EVENTS_LOG);
        let mut warnings = Vec::new();
        let events = if ev_path.exists() {
            let sums = sums_for(&manifest, files::EVENTS_PARQUET, &ev_path)?;
            Some(load_parquet(
                &ev_path,
                &["ts_ns", "seq", "source", "kind"],
                sums,
            )?)
        } else if log_path.exists() {
            // Read the log through once now, so damage surfaces at open and a cut tail is known.
            warnings.extend(scan_log(&log_path, schema::event_log_schema())?);
            None
        } else {
            return Err(TraceError::NotATrace {
                path: dir.to_path_buf(),
                reason: "no events.parquet or events.arrows".into(),
            });
        };
        let pk_path = dir.join(files::PACKETS_PARQUET);
        let packets = if pk_path.exists() {
            let sums = sums_for(&manifest, files::PACKETS_PARQUET, &pk_path)?;
            Some(load_parquet(&pk_path, &["ts_ns", "seq", "protocol"], sums)?)
        } else {
            let pk_log = dir.join(files::PACKETS_LOG);
            if pk_log.exists() {
                warnings.extend(scan_log(&pk_log, crate::packets::packet_log_schema())?);
            }
            None
        };
        Ok(Trace {
            dir: dir.to_path_buf(),
            manifest,
            events,
            packets,
            remote: None,
            warnings,
            group_stats: std::sync::OnceLock::new(),
        })
    }

    /// Opens a finalized trace kept remotely: reads and version-checks the manifest and the
    /// Parquet footers (range requests); the events are read on demand like a local trace's.
    /// [`Trace::dir`] is then the remote location.
    pub fn open_remote(store: Arc<dyn RemoteTrace>) -> Result<Trace, TraceError> {
        let loc = PathBuf::from(store.location());
        let manifest_path = loc.join(files::MANIFEST);
        let text = store
            .get(files::MANIFEST)?
            .ok_or_else(|| TraceError::NotATrace {
                path: loc.clone(),
                reason: "no manifest.json".into(),
            })?;
        let manifest: Manifest =
            serde_json::from_slice(&text).map_err(|source| TraceError::Manifest {
                path: manifest_path,
                source,
            })?;
        manifest.check_version(&loc)?;
        let open = |name: &str| -> Result<Option<Arc<RemoteParquet>>, TraceError> {
            Ok(store
                .open_with_tail(name, TAIL_BYTES)?
                .map(|(f, tail)| Arc::new(RemoteParquet::new(f, tail))))
        };
        let Some(ev) = open(files::EVENTS_PARQUET)? else {
            let reason = if store.get(files::EVENTS_LOG)?.is_some() {
                "not finalized: run `analyzer finalize` on a local copy and upload events.parquet"
            } else {
                "no events.parquet"
            };
            return Err(TraceError::NotATrace {
                path: loc,
                reason: reason.into(),
            });
        };
        let ev_path = loc.join(files::EVENTS_PARQUET);
        let events = load_parquet_from(
            &Chunk::Remote(ev.clone(), Arc::default()),
            &ev_path,
            &["ts_ns", "seq", "source", "kind"],
            sums_for(&manifest, files::EVENTS_PARQUET, &ev_path)?,
        )?;
        let pk = open(files::PACKETS_PARQUET)?;
        let packets = match &pk {
            Some(p) => {
                let pk_path = loc.join(files::PACKETS_PARQUET);
                Some(load_parquet_from(
                    &Chunk::Remote(p.clone(), Arc::default()),
                    &pk_path,
                    &["ts_ns", "seq", "protocol"],
                    sums_for(&manifest, files::PACKETS_PARQUET, &pk_path)?,
                )?)
            }
            None => None,
        };
        Ok(Trace {
            dir: loc,
            manifest,
            events: Some(events),
            packets,
            remote: Some((ev, pk)),
            warnings: Vec::new(),
            group_stats: std::sync::OnceLock::new(),
        })
    }

    /// The `events.parquet` (or `packets.parquet`) to read: the local file or the remote one.
    fn chunk(&self, packets: bool) -> Result<Chunk, TraceError> {
        match (&self.remote, packets) {
            (Some((ev, _)), false) => Ok(Chunk::Remote(ev.clone(), Arc::default())),
            (Some((_, Some(pk))), true) => Ok(Chunk::Remote(pk.clone(), Arc::default())),
            (Some((_, None)), true) => Err(TraceError::NotFound {
                path: self.dir.join(files::PACKETS_PARQUET),
            }),
            (None, _) => {
                let p = self.dir.join(if packets {
                    files::PACKETS_PARQUET
                } else {
                    files::EVENTS_PARQUET
                });
                File::open(&p)
                    .map(Chunk::Local)
                    .map_err(|e| TraceError::io(&p, e))
            }
        }
    }

    /// The trace directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// What opening found and tolerated, one line each naming the file: a cut log tail (torn or
    /// zero-filled). Empty for an intact trace.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// True when `events.parquet` exists (the writer finished or the trace was finalized).
    pub fn is_finalized(&self) -> bool {
        self.events.is_some()
    }

    /// True when the trace holds packets (finalized or still in the spool).
    pub fn has_packets(&self) -> bool {
        self.packets.is_some()
            || (self.remote.is_none() && self.dir.join(files::PACKETS_LOG).exists())
    }

    /// For a finalized trace: (rows, first ts, last ts, row groups) from the Parquet footer.
    pub fn parquet_facts(&self) -> Option<(u64, Option<i64>, Option<i64>, usize)> {
        let m = self.events.as_ref()?;
        let md = m.metadata();
        let n = md.num_row_groups();
        let mut first = None;
        let mut last = None;
        for rg in 0..n {
            if let Some((lo, hi)) = ts_stats(m, rg) {
                first = Some(first.map_or(lo, |f: i64| f.min(lo)));
                last = Some(last.map_or(hi, |l: i64| l.max(hi)));
            }
        }
        Some((md.file_metadata().num_rows().max(0) as u64, first, last, n))
    }

    /// For a finalized trace: the footer's statistics of each row group of `events.parquet`,
    /// in order (read from the footer on the first call).
    pub fn group_stats(&self) -> Option<&[crate::GroupStats]> {
        self.group_stats
            .get_or_init(|| self.read_group_stats())
            .as_deref()
    }

    fn read_group_stats(&self) -> Option<Vec<crate::GroupStats>> {
        let md = self.events.as_ref()?.metadata();
        let descr = md.file_metadata().schema_descr();
        let names: Vec<String> = (0..descr.num_columns())
            .map(|i| descr.column(i).name().to_string())
            .collect();
        let mut groups: Vec<crate::GroupStats> = md
            .row_groups()
            .iter()
            .map(|rg| crate::GroupStats::of(rg, &names))
            .collect();
        if let Some(kv) = md.file_metadata().key_value_metadata().and_then(|kv| {
            kv.iter()
                .find(|k| k.key == crate::finalize::GROUP_VALUES_KEY)
        }) {
            crate::stats::apply_group_values(&mut groups, kv.value.as_deref().unwrap_or(""));
        }
        Some(groups)
    }

    /// Streams events in `(ts_ns, seq)` order.
    pub fn events(&self, opts: &ReadOptions) -> Result<EventStream, TraceError> {
        // the Parquet row filter has already kept only the wanted sources (see parquet_batches)
        let sources_done = self
            .events
            .as_ref()
            .is_some_and(|m| opts.sources.is_some() && m.schema().index_of("source").is_ok());
        let merges_packets =
            opts.include_packets && opts.keeps_source("packet") && self.has_packets();
        // merged packets are told from events by their source: every row shows it
        let with_source;
        let opts = if merges_packets && !opts.columns.source {
            with_source = ReadOptions {
                columns: Columns {
                    source: true,
                    ..opts.columns
                },
                ..opts.clone()
            };
            &with_source
        } else {
            opts
        };
        // the caller's work on each batch, done where it is decoded, on the batch the consumer
        // gets (built here the same way as below, to be built again there: a few handles)
        let prepare = opts.prepare.clone().filter(|_| !merges_packets).map(|p| {
            let o = ReadOptions {
                prepare: None,
                ..opts.clone()
            };
            move |b: &RecordBatch| {
                let (batch, _) = EventBatch::from_record_batch(b, &o, sources_done).ok()?;
                (p.0)(&batch)
            }
        });
        // each batch, what `prepare` made of it, and whether its rows are in order among
        // themselves (told where it was decoded)
        let raw: Box<dyn Iterator<Item = Result<Decoded, TraceError>> + Send> = match &self.events {
            Some(meta) => self.parquet_batches(
                meta,
                self.chunk(false)?,
                &self.dir.join(files::EVENTS_PARQUET),
                &opts.columns.names(),
                opts,
                self.manifest.checksums.get(files::EVENTS_PARQUET),
                move |b| {
                    let p = prepare.as_ref().and_then(|f| f(&b));
                    let ordered = rows_in_order(&b);
                    (b, p, ordered)
                },
            )?,
            None => {
                let mut log = LogReader::open(
                    &self.dir.join(files::EVENTS_LOG),
                    schema::event_log_schema(),
                )?;
                let sorted = sort_log(&mut log, None, crate::finalize::SORT_RUN_BYTES)?;
                Box::new(sorted.map(|b| b.map(|b| (b, None, None))))
            }
        };
        let path = self.dir.join(if self.events.is_some() {
            files::EVENTS_PARQUET
        } else {
            files::EVENTS_LOG
        });
        let mut order = OrderCheck::new(&path, &["source", "kind"]);
        let raw = raw.map(move |b| b.and_then(|b| order.check(&b.0, b.2).map(|_| b)));
        let o = opts.clone();
        let mut past_end = false;
        let events = raw.filter_map(move |b| {
            if past_end {
                return None;
            }
            let (b, prepared, _) = match b {
                Ok(b) => b,
                Err(e) => return Some(Err(e)),
            };
            match EventBatch::from_record_batch(&b, &o, sources_done) {
                Ok((mut batch, last_ts)) => {
                    batch.prepared = prepared;
                    if o.until_ns.is_some_and(|u| last_ts.is_some_and(|t| t >= u)) {
                        past_end = true;
                    }
                    (!batch.is_empty()).then_some(Ok(batch))
                }
                Err(m) => Some(Err(TraceError::corrupt(&path, m))),
            }
        });
        if !merges_packets {
            return Ok(EventStream {
                inner: Box::new(events),
            });
        }
        let o = opts.clone();
        let packets = self.packets()?.map(move |r| {
            r.map(|ps| {
                ps.into_iter()
                    .filter(|p| o.in_range(p.ts_ns))
                    .map(|p| p.to_event())
                    .collect::<Vec<_>>()
            })
        });
        Ok(EventStream {
            inner: Box::new(MergeWithPackets::new(
                Box::new(events),
                Box::new(packets),
                opts.batch_size(),
            )),
        })
    }

    /// The record batches of `events.parquet` (or `packets.parquet`) as stored, every column,
    /// verified against the checksums but without the order and null checks: the input of
    /// `finalize --repair`.
    pub(crate) fn raw_batches(
        &self,
        packets: bool,
    ) -> Result<Box<dyn Iterator<Item = Result<RecordBatch, TraceError>> + Send>, TraceError> {
        let (meta, name) = match (packets, &self.events, &self.packets) {
            (false, Some(m), _) => (m, files::EVENTS_PARQUET),
            (true, _, Some(m)) => (m, files::PACKETS_PARQUET),
            _ => return Ok(Box::new(std::iter::empty())),
        };
        self.parquet_batches(
            meta,
            self.chunk(packets)?,
            &self.dir.join(name),
            &[],
            &ReadOptions::default(),
            self.manifest.checksums.get(name),
            |b| b,
        )
    }

    /// Streams the packet records in `(ts_ns, seq)` order (empty when the trace has none).
    pub fn packets(&self) -> Result<PacketStream, TraceError> {
        let (raw, path): (
            Box<dyn Iterator<Item = Result<RecordBatch, TraceError>> + Send>,
            PathBuf,
        ) = match &self.packets {
            Some(meta) => {
                let p = self.dir.join(files::PACKETS_PARQUET);
                (
                    self.parquet_batches(
                        meta,
                        self.chunk(true)?,
                        &p,
                        &[],
                        &ReadOptions::default(),
                        self.manifest.checksums.get(files::PACKETS_PARQUET),
                        |b| b,
                    )?,
                    p,
                )
            }
            None => {
                let p = self.dir.join(files::PACKETS_LOG);
                if self.remote.is_some() || !p.exists() {
                    return Ok(PacketStream {
                        inner: Box::new(std::iter::empty()),
                    });
                }
                let mut log = LogReader::open(&p, crate::packets::packet_log_schema())?;
                (
                    Box::new(sort_log(&mut log, None, crate::finalize::SORT_RUN_BYTES)?),
                    p,
                )
            }
        };
        let mut order = OrderCheck::new(&path, &[]);
        Ok(PacketStream {
            inner: Box::new(raw.map(move |b| {
                b.and_then(|b| {
                    order.check(&b, None)?;
                    crate::packets::packets_from_batch(&b)
                        .map_err(|m| TraceError::corrupt(&path, m))
                })
            })),
        })
    }

    /// Record batches of a Parquet file: only row groups overlapping the time range, only the
    /// named columns (all when empty). With checksums, each row group's column chunks are
    /// fetched and verified before they are decoded. Each batch is handed to `post` where it is
    /// decoded (with `read_ahead`, on a decoding thread), and the stream yields what `post` gives.
    #[allow(clippy::too_many_arguments)]
    fn parquet_batches<T: Send + 'static>(
        &self,
        meta: &ArrowReaderMetadata,
        f: Chunk,
        path: &Path,
        columns: &[&str],
        opts: &ReadOptions,
        sums: Option<&FileChecksums>,
        post: impl Fn(RecordBatch) -> T + Send + Sync + 'static,
    ) -> Result<Box<dyn Iterator<Item = Result<T, TraceError>> + Send>, TraceError> {
        let n = meta.metadata().num_row_groups();
        let groups: Vec<usize> = (0..n)
            .filter(|&rg| {
                opts.row_groups
                    .as_ref()
                    .is_none_or(|m| m.get(rg).copied().unwrap_or(true))
            })
            .filter(|&rg| match ts_stats(meta, rg) {
                Some((lo, hi)) => {
                    opts.since_ns.is_none_or(|s| hi >= s) && opts.until_ns.is_none_or(|u| lo < u)
                }
                None => true,
            })
            .collect();
        let schema = meta.schema();
        let projection: Option<Vec<usize>> = (!columns.is_empty()).then(|| {
            columns
                .iter()
                .filter_map(|c| schema.index_of(c).ok())
                .collect()
        });
        let source_idx = schema.index_of("source").ok();
        // `time` (which no read decodes: `ts_ns` holds the same instant) is fetched and
        // verified by a read of every other column, so that such a read covers every byte of
        // the file; a projected read fetches only what it decodes
        let time_idx = schema.index_of("time").ok();
        let full = projection.as_ref().is_none_or(|p| {
            (0..schema.fields().len()).all(|i| p.contains(&i) || Some(i) == time_idx)
        });
        // a remote file: plan the spans of the column chunks this read needs (the projected
        // columns, the one the row filter reads and, with checksums and every other column,
        // `time`, of the row groups in range), so that they are fetched in a few coalesced
        // requests
        let f = match f {
            Chunk::Remote(r, _) => {
                let roots: Option<Vec<usize>> = projection.as_ref().map(|p| {
                    let mut v = p.clone();
                    if opts.sources.is_some() {
                        v.extend(source_idx);
                    }
                    if sums.is_some() && full {
                        v.extend(time_idx);
                    }
                    v
                });
                let spans = crate::remote::plan(&r, meta.metadata(), &groups, roots.as_deref());
                Chunk::Remote(r, Arc::new(spans))
            }
            local => local,
        };
        let configure = ReadConfig {
            meta: meta.clone(),
            projection: projection.clone(),
            sources: opts.sources.clone(),
            source_idx,
            batch_size: opts.batch_size(),
        };
        let path = path.to_path_buf();
        let sums = sums.cloned();
        let threads = opts.read_ahead;
        // a row group holding a bound of the time range is read in two steps when the read
        // decodes more than the keys: its `ts_ns` alone, then the other columns of the rows in
        // range only (pages wholly outside are skipped undecoded)
        let bounds = Bounds::of(meta, opts, projection.as_deref());
        let base = Arc::new(f);
        if sums.is_none() && threads < 2 {
            // one reader over every row group: one selection across them
            let mut selection = None;
            if let Some(b) = &bounds {
                let mut selectors = Vec::new();
                for &rg in &groups {
                    match b.select(&VerifiedChunk::unverified(base.clone()), rg, &path)? {
                        Some(cut) => selectors.extend(Vec::<RowSelector>::from(cut)),
                        None => selectors.push(RowSelector::select(
                            meta.metadata().row_group(rg).num_rows().max(0) as usize,
                        )),
                    }
                }
                selection = Some(RowSelection::from(selectors));
            }
            let mut b = configure.apply(
                ParquetRecordBatchReaderBuilder::new_with_metadata(
                    VerifiedChunk::unverified(base),
                    meta.clone(),
                )
                .with_row_groups(groups),
            );
            if let Some(s) = selection {
                b = b.with_row_selection(s);
            }
            let reader = guard(&path, || b.build())?.map_err(|e| TraceError::corrupt(&path, e))?;
            let it = Guarded {
                inner: reader,
                path,
                done: false,
            };
            return Ok(Box::new(it.map(move |r| r.map(&post))));
        }
        // the leaf columns each row group read fetches and verifies: the projected ones and the
        // filter's (and `time` for a read of every other column, see above)
        let wanted: Vec<usize> = match &projection {
            None => (0..meta.parquet_schema().num_columns()).collect(),
            Some(p) => {
                let mut v = p.clone();
                if opts.sources.is_some() {
                    v.extend(source_idx);
                }
                if full {
                    v.extend(time_idx);
                }
                v.sort_unstable();
                v.dedup();
                v.into_iter()
                    .filter_map(|root| leaf_of(meta, root))
                    .collect()
            }
        };
        let meta = meta.clone();
        let group_path = path.clone();
        // one row group: its column chunks fetched (and verified, with checksums), then decoded
        let group =
            move |rg: usize| -> Box<dyn Iterator<Item = Result<RecordBatch, TraceError>> + Send> {
                let path = &group_path;
                let chunk = match &sums {
                    Some(sums) => {
                        match VerifiedChunk::fetch(
                            base.clone(),
                            meta.metadata(),
                            path,
                            sums,
                            rg,
                            &wanted,
                        ) {
                            Ok(c) => c,
                            Err(e) => return Box::new(std::iter::once(Err(e))),
                        }
                    }
                    None => VerifiedChunk::unverified(base.clone()),
                };
                let selection = match bounds.as_ref().map(|b| b.select(&chunk, rg, path)) {
                    Some(Err(e)) => return Box::new(std::iter::once(Err(e))),
                    Some(Ok(s)) => s,
                    None => None,
                };
                let mut b = configure.apply(
                    ParquetRecordBatchReaderBuilder::new_with_metadata(chunk, meta.clone())
                        .with_row_groups(vec![rg]),
                );
                if let Some(s) = selection {
                    b = b.with_row_selection(s);
                }
                match guard(path, || b.build()) {
                    Ok(Ok(r)) => Box::new(Guarded {
                        inner: r,
                        path: path.clone(),
                        done: false,
                    }),
                    Ok(Err(e)) => Box::new(std::iter::once(Err(TraceError::corrupt(path, e)))),
                    Err(e) => Box::new(std::iter::once(Err(e))),
                }
            };
        if threads >= 2 && groups.len() > 1 {
            let jobs = groups.len();
            // (the consumer decodes too when it would wait: `threads` decoders in all when
            // the evaluation is light, the workers alone when it is busy)
            let it = ahead::ReadAhead::new(
                jobs,
                threads - 1,
                threads + 1,
                move |j| group(groups[j]).map(|r| r.map(&post)).collect(),
                move || {
                    Err(TraceError::corrupt(
                        &path,
                        "malformed parquet data (the decoder failed)",
                    ))
                },
            );
            return Ok(Box::new(it));
        }
        let it = groups
            .into_iter()
            .flat_map(group)
            .map(move |r| r.map(&post));
        Ok(Box::new(it))
    }
}

/// The time range of a read that decodes more than the keys, for the row groups it cuts: their
/// rows in range are found from `ts_ns` alone so that the other columns are decoded for those
/// rows only.
struct Bounds {
    meta: ArrowReaderMetadata,
    /// Root index of `ts_ns`.
    ts: usize,
    since: Option<i64>,
    until: Option<i64>,
}

impl Bounds {
    /// `None` when the read has no time bound, or reads nothing but `ts_ns` and `seq` (the two
    /// steps would decode `ts_ns` twice to save nothing).
    fn of(
        meta: &ArrowReaderMetadata,
        opts: &ReadOptions,
        projection: Option<&[usize]>,
    ) -> Option<Bounds> {
        if opts.since_ns.is_none() && opts.until_ns.is_none() {
            return None;
        }
        let schema = meta.schema();
        let ts = schema.index_of("ts_ns").ok()?;
        if !matches!(schema.field(ts).data_type(), DataType::Int64) {
            return None;
        }
        let seq = schema.index_of("seq").ok();
        if projection.is_some_and(|p| p.iter().all(|&i| i == ts || Some(i) == seq)) {
            return None;
        }
        Some(Bounds {
            meta: meta.clone(),
            ts,
            since: opts.since_ns,
            until: opts.until_ns,
        })
    }

    /// Whether row group `rg` may hold rows on both sides of a bound (by its statistics; a
    /// group without them may).
    fn cuts(&self, rg: usize) -> bool {
        match ts_stats(&self.meta, rg) {
            Some((lo, hi)) => {
                self.since.is_some_and(|s| lo < s) || self.until.is_some_and(|u| hi >= u)
            }
            None => true,
        }
    }

    /// The rows of row group `rg` to decode, where a bound cuts it: those whose `ts_ns` is in
    /// range, and any null one (for the read to refuse it as it would otherwise); `None` when
    /// that is every row.
    fn select(
        &self,
        chunk: &VerifiedChunk,
        rg: usize,
        path: &Path,
    ) -> Result<Option<RowSelection>, TraceError> {
        if !self.cuts(rg) {
            return Ok(None);
        }
        let rows = self.meta.metadata().row_group(rg).num_rows().max(0) as usize;
        let b =
            ParquetRecordBatchReaderBuilder::new_with_metadata(chunk.clone(), self.meta.clone())
                .with_row_groups(vec![rg])
                .with_projection(ProjectionMask::roots(self.meta.parquet_schema(), [self.ts]))
                .with_batch_size(rows.clamp(1, 1 << 20));
        let reader = guard(path, || b.build())?.map_err(|e| TraceError::corrupt(path, e))?;
        let mut keep: Vec<BooleanArray> = Vec::new();
        for b in (Guarded {
            inner: reader,
            path: path.to_path_buf(),
            done: false,
        }) {
            let b = b?;
            let Some(ts) = b.column(0).as_primitive_opt::<Int64Type>() else {
                return Ok(None);
            };
            keep.push(
                ts.iter()
                    .map(|t| Some(t.is_none_or(|t| in_range(self.since, self.until, t))))
                    .collect(),
            );
        }
        let selection = RowSelection::from_filters(&keep);
        if selection.row_count() + selection.skipped_row_count() != rows
            || selection.skipped_row_count() == 0
        {
            return Ok(None);
        }
        Ok(Some(selection))
    }
}

/// Runs parquet's decoder, turning a panic on malformed input (the parquet crate indexes past
/// buffers on some damaged pages and footers) into an error naming the file. Only a file without
/// checksums (v1), or one crafted to match them, reaches the decoder damaged.
fn guard<T>(path: &Path, f: impl FnOnce() -> T) -> Result<T, TraceError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .map_err(|_| TraceError::corrupt(path, "malformed parquet data (the decoder failed)"))
}

/// A Parquet batch reader whose panics become one error, after which it ends.
struct Guarded<R> {
    inner: R,
    path: PathBuf,
    done: bool,
}

impl<R: Iterator<Item = Result<RecordBatch, arrow_schema::ArrowError>>> Iterator for Guarded<R> {
    type Item = Result<RecordBatch, TraceError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match guard(&self.path, || self.inner.next()) {
            Ok(r) => r.map(|r| r.map_err(|e| TraceError::corrupt(&self.path, e))),
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// How every Parquet read of one `events()` call is set up: batch size, source filter,
/// projection.
struct ReadConfig {
    meta: ArrowReaderMetadata,
    projection: Option<Vec<usize>>,
    sources: Option<Vec<String>>,
    source_idx: Option<usize>,
    batch_size: usize,
}

impl ReadConfig {
    fn apply<T: parquet::file::reader::ChunkReader + 'static>(
        &self,
        mut b: ParquetRecordBatchReaderBuilder<T>,
    ) -> ParquetRecordBatchReaderBuilder<T> {
        b = b.with_batch_size(self.batch_size);
        if let (Some(sources), Some(idx)) = (self.sources.clone(), self.source_idx) {
            b = b.with_row_filter(source_filter(&self.meta, idx, sources));
        }
        if let Some(idx) = &self.projection {
            b = b.with_projection(ProjectionMask::roots(
                self.meta.parquet_schema(),
                idx.iter().copied(),
            ));
        }
        b
    }
}

/// The leaf column index of root column `root` (the trace schemas are flat: one leaf each).
fn leaf_of(meta: &ArrowReaderMetadata, root: usize) -> Option<usize> {
    let descr = meta.parquet_schema();
    (0..descr.num_columns()).find(|&i| descr.get_column_root_idx(i) == root)
}

/// The row filter keeping rows whose `source` (root column `idx`) is one of `sources`: `source`
/// is decoded first and the other columns only for the rows that pass.
fn source_filter(meta: &ArrowReaderMetadata, idx: usize, sources: Vec<String>) -> RowFilter {
    let mask = ProjectionMask::roots(meta.parquet_schema(), [idx]);
    let pred = ArrowPredicateFn::new(mask, move |b: RecordBatch| {
        let col = b.column(0);
        let keep = |s: &str| sources.iter().any(|x| x == s);
        let out: BooleanArray = match col.data_type() {
            DataType::Dictionary(k, _) if **k == DataType::Int32 => {
                let d = col.as_dictionary::<Int32Type>();
                let vals = arrow::compute::cast(d.values(), &DataType::Utf8)?;
                let vals = vals.as_string::<i32>();
                let hit: Vec<bool> = (0..vals.len())
                    .map(|i| vals.is_valid(i) && keep(vals.value(i)))
                    .collect();
                d.keys()
                    .iter()
                    .map(|k| Some(k.is_some_and(|k| hit.get(k as usize).copied().unwrap_or(false))))
                    .collect()
            }
            _ => {
                let c = arrow::compute::cast(col, &DataType::Utf8)?;
                c.as_string::<i32>()
                    .iter()
                    .map(|v| Some(v.is_some_and(keep)))
                    .collect()
            }
        };
        Ok(out)
    });
    RowFilter::new(vec![Box::new(pred)])
}

/// Reads a log through once: the warning for a cut tail, or the error for a damaged record.
fn scan_log(path: &Path, schema: arrow_schema::SchemaRef) -> Result<Option<String>, TraceError> {
    let mut log = LogReader::open(path, schema)?;
    for b in log.by_ref() {
        b?;
    }
    Ok(log.warning())
}

/// Checks, while streaming, that rows come in `(ts_ns, seq)` order and that the key columns
/// hold no null. Rows are counted from 1 in the order read.
struct OrderCheck {
    path: PathBuf,
    keys: &'static [&'static str],
    last: Option<(i64, u64)>,
    row: u64,
}

impl OrderCheck {
    fn new(path: &Path, keys: &'static [&'static str]) -> OrderCheck {
        OrderCheck {
            path: path.to_path_buf(),
            keys,
            last: None,
            row: 0,
        }
    }

    /// Checks `b`, the batch after the last one checked. `rows_ok`: whether its rows are in
    /// order among themselves, when [`rows_in_order`] already told (on a decoding thread).
    fn check(&mut self, b: &RecordBatch, rows_ok: Option<bool>) -> Result<(), TraceError> {
        let err = |m: String| TraceError::corrupt(&self.path, m);
        let ts = b
            .column_by_name("ts_ns")
            .and_then(|c| c.as_primitive_opt::<Int64Type>())
            .ok_or_else(|| err("ts_ns is not an int64 column".into()))?;
        let seq = b
            .column_by_name("seq")
            .and_then(|c| c.as_primitive_opt::<UInt64Type>())
            .ok_or_else(|| err("seq is not a uint64 column".into()))?;
        let mut nullable: Vec<(&str, &dyn Array)> = vec![("ts_ns", ts), ("seq", seq)];
        for k in self.keys {
            if let Some(c) = b.column_by_name(k) {
                nullable.push((k, c.as_ref()));
            }
        }
        for (name, c) in nullable {
            if c.null_count() > 0 {
                let i = (0..c.len()).find(|&i| c.is_null(i)).unwrap_or(0);
                return Err(err(format!(
                    "row {}: {name} is null (a key column); the trace is refused",
                    self.row + 1 + i as u64
                )));
            }
        }
        let (tv, sv) = (ts.values(), seq.values());
        let first_ok = match (self.last, tv.first().zip(sv.first())) {
            (Some(last), Some((&t, &s))) => in_order(last, (t, s)),
            _ => true,
        };
        let rest_ok = rows_ok.unwrap_or_else(|| values_in_order(tv, sv));
        if !(first_ok && rest_ok) {
            let mut last = self.last;
            for (i, k) in tv.iter().copied().zip(sv.iter().copied()).enumerate() {
                if let Some(last) = last.filter(|&l| !in_order(l, k)) {
                    let what = if k == last {
                        "repeats the (ts_ns, seq) of the row before"
                    } else {
                        "is out of (ts_ns, seq) order"
                    };
                    return Err(err(format!(
                        "row {} (ts_ns {}, seq {}) {what} (ts_ns {}, seq {}); run `analyzer finalize --repair`",
                        self.row + 1 + i as u64,
                        k.0,
                        k.1,
                        last.0,
                        last.1
                    )));
                }
                last = Some(k);
            }
        }
        if let Some(k) = tv.last().zip(sv.last()) {
            self.last = Some((*k.0, *k.1));
        }
        self.row += b.num_rows() as u64;
        Ok(())
    }
}

/// Whether row `b` comes after row `a` in `(ts_ns, seq)` order.
#[inline]
fn in_order(a: (i64, u64), b: (i64, u64)) -> bool {
    (b.0 > a.0) | ((b.0 == a.0) & (b.1 > a.1))
}

/// Whether every row of these columns comes after the one before it: one pass without a branch
/// per row (the rows are looked at one by one only to name the first that is not).
fn values_in_order(tv: &[i64], sv: &[u64]) -> bool {
    tv.windows(2)
        .zip(sv.windows(2))
        .fold(true, |ok, (t, s)| ok & in_order((t[0], s[0]), (t[1], s[1])))
}

/// [`OrderCheck`]'s pass over the rows of `b` among themselves, done where the batch is decoded
/// (`None` for a batch without its `ts_ns` and `seq` columns: the check tells what is wrong).
fn rows_in_order(b: &RecordBatch) -> Option<bool> {
    let ts = b.column_by_name("ts_ns")?.as_primitive_opt::<Int64Type>()?;
    let seq = b.column_by_name("seq")?.as_primitive_opt::<UInt64Type>()?;
    Some(values_in_order(ts.values(), seq.values()))
}

/// Batches of events in `(ts_ns, seq)` order.
pub struct EventStream {
    inner: Box<dyn Iterator<Item = Result<EventBatch, TraceError>> + Send>,
}

impl Iterator for EventStream {
    type Item = Result<EventBatch, TraceError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.inner.next()
    }
}

/// Batches of packet records in `(ts_ns, seq)` order.
pub struct PacketStream {
    inner: Box<dyn Iterator<Item = Result<Vec<PacketRecord>, TraceError>> + Send>,
}

impl Iterator for PacketStream {
    type Item = Result<Vec<PacketRecord>, TraceError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.inner.next()
    }
}

/// A string column as stored: plain, dictionary-encoded, or not read.
#[derive(Clone)]
enum StrCol {
    Absent,
    Plain(StringArray),
    Dict(Int32Array, StringArray),
}

impl StrCol {
    fn from(c: Option<&ArrayRef>, name: &str) -> Result<StrCol, String> {
        let Some(c) = c else {
            return Ok(StrCol::Absent);
        };
        match c.data_type() {
            DataType::Utf8 => Ok(StrCol::Plain(c.as_string::<i32>().clone())),
            DataType::Dictionary(k, v) if **k == DataType::Int32 && **v == DataType::Utf8 => {
                let d = c.as_dictionary::<Int32Type>();
                Ok(StrCol::Dict(
                    d.keys().clone(),
                    d.values().as_string::<i32>().clone(),
                ))
            }
            _ => arrow::compute::cast(c, &DataType::Utf8)
                .map(|a| StrCol::Plain(a.as_string::<i32>().clone()))
                .map_err(|e| format!("column {name}: {e}")),
        }
    }

    // inlined into `EventBatch::get`, six times per event: a column left out is a branch
    #[inline(always)]
    fn get(&self, i: usize) -> Option<&str> {
        match self {
            StrCol::Absent => None,
            StrCol::Plain(a) => a.is_valid(i).then(|| a.value(i)),
            StrCol::Dict(k, v) => {
                if k.is_valid(i) {
                    let j = k.value(i);
                    (j >= 0 && (j as usize) < v.len()).then(|| v.value(j as usize))
                } else {
                    None
                }
            }
        }
    }
}

#[derive(Clone)]
struct ArrowCols {
    ts: Int64Array,
    seq: UInt64Array,
    source: StrCol,
    service: StrCol,
    container: StrCol,
    kind: StrCol,
    message: StrCol,
    data: StrCol,
}

enum Rows {
    Arrow {
        cols: Box<ArrowCols>,
        sel: Option<Vec<u32>>,
    },
    Owned(Vec<Event>),
}

/// A batch of events, in order. Borrow events with [`EventBatch::get`] or [`EventBatch::iter`].
pub struct EventBatch {
    rows: Rows,
    /// What [`ReadOptions::prepare`] made of it.
    prepared: Option<Prepared>,
}

impl EventBatch {
    /// Wraps owned events (assumed in order).
    pub fn from_events(events: Vec<Event>) -> EventBatch {
        EventBatch {
            rows: Rows::Owned(events),
            prepared: None,
        }
    }

    /// A batch over the columns of `b`, a record batch of either trace shape (the framed log's
    /// or `events.parquet`'s), every column read, no row filtered out.
    pub fn from_arrow(b: &RecordBatch) -> Result<EventBatch, TraceError> {
        EventBatch::from_record_batch(b, &ReadOptions::default(), true)
            .map(|(batch, _)| batch)
            .map_err(|e| TraceError::Invalid(format!("record batch: {e}")))
    }

    /// Builds a batch from a record batch of either trace shape, applying the source and time
    /// filters and the column projection of `opts`. Also returns the batch's last `ts_ns`.
    /// `sources_done`: the rows already passed the source filter (no per-row re-check).
    fn from_record_batch(
        b: &RecordBatch,
        opts: &ReadOptions,
        sources_done: bool,
    ) -> Result<(EventBatch, Option<i64>), String> {
        let prim = |name: &str| {
            b.column_by_name(name)
                .ok_or_else(|| format!("missing column {name}"))
        };
        let ts = prim("ts_ns")?
            .as_primitive_opt::<Int64Type>()
            .ok_or("ts_ns is not int64")?
            .clone();
        let seq = prim("seq")?
            .as_primitive_opt::<UInt64Type>()
            .ok_or("seq is not uint64")?
            .clone();
        let c = &opts.columns;
        let opt = |on: bool, name: &str| {
            if on {
                StrCol::from(b.column_by_name(name), name)
            } else {
                Ok(StrCol::Absent)
            }
        };
        // (a source filter not yet applied reads the column too)
        let check_source = opts.sources.is_some() && !sources_done;
        let cols = ArrowCols {
            source: if c.source || check_source {
                StrCol::from(Some(prim("source")?), "source")?
            } else {
                StrCol::Absent
            },
            service: opt(c.service, "service")?,
            container: opt(c.container, "container")?,
            kind: opt(c.kind, "kind")?,
            message: opt(c.message, "message")?,
            data: opt(c.data, "data")?,
            ts,
            seq,
        };
        let n = cols.ts.len();
        let last = (n > 0).then(|| cols.ts.value(n - 1));
        // rows come in ts order: when the first and last are in the range, all are
        let check_time = (opts.since_ns.is_some() || opts.until_ns.is_some())
            && n > 0
            && !(opts.in_range(cols.ts.value(0)) && opts.in_range(cols.ts.value(n - 1)));
        let sel = match (check_source, check_time) {
            (false, false) => None,
            (true, false) => select(n, |i| {
                cols.source.get(i).is_some_and(|s| opts.keeps_source(s))
            }),
            (false, true) => select(n, |i| opts.in_range(cols.ts.value(i))),
            (true, true) => select(n, |i| {
                opts.in_range(cols.ts.value(i))
                    && cols.source.get(i).is_some_and(|s| opts.keeps_source(s))
            }),
        };
        Ok((
            EventBatch {
                rows: Rows::Arrow {
                    cols: Box::new(cols),
                    sel,
                },
                prepared: None,
            },
            last,
        ))
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        match &self.rows {
            Rows::Arrow { cols, sel } => sel.as_ref().map_or(cols.ts.len(), |s| s.len()),
            Rows::Owned(v) => v.len(),
        }
    }

    /// True when the batch holds no event.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `i`-th event. Panics when `i >= len()` (like slice indexing).
    #[inline]
    pub fn get(&self, i: usize) -> EventRef<'_> {
        match &self.rows {
            Rows::Arrow { cols, sel } => {
                let r = sel.as_ref().map_or(i, |s| s[i] as usize);
                EventRef {
                    ts_ns: cols.ts.value(r),
                    seq: cols.seq.value(r),
                    source: cols.source.get(r).unwrap_or(""),
                    service: cols.service.get(r),
                    container: cols.container.get(r),
                    kind: cols.kind.get(r).unwrap_or(""),
                    message: cols.message.get(r),
                    data: cols.data.get(r),
                }
            }
            Rows::Owned(v) => v[i].as_ref(),
        }
    }

    /// The events in order.
    pub fn iter(&self) -> impl Iterator<Item = EventRef<'_>> + '_ {
        (0..self.len()).map(move |i| self.get(i))
    }

    /// Another handle on the batch's decoded columns, sharing their buffers (no copy), for a
    /// caller that reads rows of it after the batch is dropped (without what
    /// [`ReadOptions::prepare`] made of it); `None` for a batch of owned events (a copy of
    /// those would not be cheap).
    pub fn share(&self) -> Option<EventBatch> {
        match &self.rows {
            Rows::Arrow { cols, sel } => Some(EventBatch {
                rows: Rows::Arrow {
                    cols: cols.clone(),
                    sel: sel.clone(),
                },
                prepared: None,
            }),
            Rows::Owned(_) => None,
        }
    }

    /// What [`ReadOptions::prepare`] made of the batch, if it ran and gave something.
    pub fn prepared(&self) -> Option<&(dyn std::any::Any + Send + Sync)> {
        self.prepared.as_deref()
    }

    /// Runs `p` on the batch and keeps what it made, as a read with [`ReadOptions::prepare`]
    /// does (for a batch built, not read).
    pub fn prepare_with(&mut self, p: &Prepare) {
        self.prepared = (p.0)(self);
    }

    /// The batch as columns, for an evaluator that reads `ts_ns`, `seq` and `source` without
    /// building each event (and the rest of a row, where it needs it, by [`EventBatch::get`]):
    /// `Some` when the batch holds its decoded columns whole (no row
    /// filtered out, no null time or sequence number). Row `i` of the columns is
    /// [`EventBatch::get`]`(i)`.
    pub fn columns(&self) -> Option<EventColumns<'_>> {
        match &self.rows {
            Rows::Arrow { cols, sel: None }
                if cols.ts.null_count() == 0 && cols.seq.null_count() == 0 =>
            {
                Some(EventColumns {
                    ts: cols.ts.values(),
                    seq: cols.seq.values(),
                    source: &cols.source,
                })
            }
            _ => None,
        }
    }

    /// How many events of the batch have `source == s` (a dictionary column is counted by its
    /// key for `s`, without reading each row's text; a batch read without its source shows
    /// every row's as `""`).
    pub fn count_source(&self, s: &str) -> usize {
        if let Rows::Arrow { cols, .. } = &self.rows {
            if let StrCol::Absent = &cols.source {
                return if s.is_empty() { self.len() } else { 0 };
            }
        }
        if let Rows::Arrow { cols, sel: None } = &self.rows {
            if let StrCol::Dict(keys, values) = &cols.source {
                let wanted: Vec<i32> = (0..values.len())
                    .filter(|&j| values.is_valid(j) && values.value(j) == s)
                    .map(|j| j as i32)
                    .collect();
                if wanted.is_empty() {
                    return 0;
                }
                return (0..keys.len())
                    .filter(|&i| keys.is_valid(i) && wanted.contains(&keys.value(i)))
                    .count();
            }
        }
        self.iter().filter(|e| e.source == s).count()
    }
}

/// A batch's columns ([`EventBatch::columns`]): every row's time and sequence number as slices,
/// its source by row.
pub struct EventColumns<'a> {
    pub ts: &'a [i64],
    pub seq: &'a [u64],
    source: &'a StrCol,
}

impl EventColumns<'_> {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.ts.len().min(self.seq.len())
    }

    /// True when there is no row.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The source of row `i` (as [`EventBatch::get`] gives it: empty when null).
    #[inline]
    pub fn source(&self, i: usize) -> &str {
        self.source.get(i).unwrap_or("")
    }
}

/// The rows `0..n` that pass `keep`, or `None` when all do.
fn select(n: usize, keep: impl Fn(usize) -> bool) -> Option<Vec<u32>> {
    let v: Vec<u32> = (0..n).filter(|&i| keep(i)).map(|i| i as u32).collect();
    (v.len() < n).then_some(v)
}

/// Merges the event stream with packet events by `(ts_ns, seq)` into owned batches.
struct MergeWithPackets {
    events: Box<dyn Iterator<Item = Result<EventBatch, TraceError>> + Send>,
    packets: Box<dyn Iterator<Item = Result<Vec<Event>, TraceError>> + Send>,
    ev_buf: std::collections::VecDeque<Event>,
    pk_buf: std::collections::VecDeque<Event>,
    ev_done: bool,
    pk_done: bool,
    batch: usize,
}

impl MergeWithPackets {
    fn new(
        events: Box<dyn Iterator<Item = Result<EventBatch, TraceError>> + Send>,
        packets: Box<dyn Iterator<Item = Result<Vec<Event>, TraceError>> + Send>,
        batch: usize,
    ) -> Self {
        MergeWithPackets {
            events,
            packets,
            ev_buf: Default::default(),
            pk_buf: Default::default(),
            ev_done: false,
            pk_done: false,
            batch,
        }
    }

    fn refill(&mut self) -> Result<(), TraceError> {
        while self.ev_buf.is_empty() && !self.ev_done {
            match self.events.next() {
                Some(b) => self.ev_buf.extend(b?.iter().map(|e| e.to_owned())),
                None => self.ev_done = true,
            }
        }
        while self.pk_buf.is_empty() && !self.pk_done {
            match self.packets.next() {
                Some(b) => self.pk_buf.extend(b?),
                None => self.pk_done = true,
            }
        }
        Ok(())
    }
}

impl Iterator for MergeWithPackets {
    type Item = Result<EventBatch, TraceError>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut out = Vec::with_capacity(self.batch);
        while out.len() < self.batch {
            if let Err(e) = self.refill() {
                self.ev_done = true;
                self.pk_done = true;
                return Some(Err(e));
            }
            let take_ev = match (self.ev_buf.front(), self.pk_buf.front()) {
                (None, None) => break,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some(a), Some(b)) => (a.ts_ns, a.seq) <= (b.ts_ns, b.seq),
            };
            let e = if take_ev {
                self.ev_buf.pop_front()
            } else {
                self.pk_buf.pop_front()
            };
            out.extend(e);
        }
        (!out.is_empty()).then(|| Ok(EventBatch::from_events(out)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{events_to_log_batch, log_to_table_batch};

    fn events() -> Vec<Event> {
        (0..50u64)
            .map(|i| {
                let src = ["log", "docker", "packet"][(i % 7 % 3) as usize];
                let mut e = Event::new(1_000 + i as i64 / 3, src, "k");
                e.seq = i;
                e
            })
            .collect()
    }

    /// The order check over batches names the first row (counted across batches) that does
    /// not come after the one before it, as a row-by-row comparison does, in every batching.
    #[test]
    fn the_order_check_names_the_first_row_out_of_order_across_batches() {
        let mut rng = crate::gen::Rng(0x2545_f491_4f6c_dd1du64);
        let mut next = move || rng.next();
        for case in 0..400 {
            let n = 1 + (next() % 40) as usize;
            let mut rows: Vec<(i64, u64)> = (0..n).map(|i| (i as i64 / 2, i as u64)).collect();
            // a repeat, a row out of order, or none
            match case % 3 {
                0 if n > 1 => {
                    let i = 1 + (next() as usize) % (n - 1);
                    rows[i] = rows[i - 1];
                }
                1 if n > 1 => {
                    let i = 1 + (next() as usize) % (n - 1);
                    rows[i].0 -= 1;
                }
                _ => {}
            }
            let want = (1..n).find(|&i| rows[i] <= rows[i - 1]);
            // split into batches at random
            let mut check = OrderCheck::new(Path::new("t"), &[]);
            let mut at = 0;
            let mut got = None;
            while at < n && got.is_none() {
                let len = (1 + (next() % 8) as usize).min(n - at);
                let part = &rows[at..at + len];
                let b = RecordBatch::try_from_iter([
                    (
                        "ts_ns",
                        Arc::new(Int64Array::from_iter_values(part.iter().map(|r| r.0)))
                            as ArrayRef,
                    ),
                    (
                        "seq",
                        Arc::new(UInt64Array::from_iter_values(part.iter().map(|r| r.1))),
                    ),
                ])
                .expect("batch");
                if let Err(e) = check.check(&b, None) {
                    got = Some(e.to_string());
                }
                at += len;
            }
            match (want, got) {
                (None, None) => {}
                (Some(i), Some(e)) => {
                    let (k, last) = (rows[i], rows[i - 1]);
                    let what = if k == last { "repeats" } else { "is out of" };
                    let head = format!("row {} (ts_ns {}, seq {}) {what}", i + 1, k.0, k.1);
                    assert!(e.contains(&head), "case {case}: {e} lacks {head}");
                }
                (w, g) => panic!("case {case}: want {w:?}, got {g:?} for {rows:?}"),
            }
        }
    }

    /// The pass over a batch's rows among themselves says what comparing each row with the one
    /// before says, for batches long enough to be vectorised and their ends: rows in order, a
    /// repeat, a time going back, a sequence number going back at the same time, anywhere.
    #[test]
    fn the_pass_over_a_batch_agrees_with_row_by_row_comparison() {
        let mut rng = crate::gen::Rng(0x9e37_79b9_7f4a_7c15u64);
        let mut next = move || rng.next();
        for case in 0..2000 {
            let n = (next() % 300) as usize;
            // times that repeat, sequence numbers across the whole u64 range
            let mut rows: Vec<(i64, u64)> = Vec::with_capacity(n);
            let (mut t, mut s) = (next() as i64 >> 2, next() >> 1);
            for _ in 0..n {
                rows.push((t, s));
                if next() % 3 == 0 {
                    t += 1 + (next() % 5) as i64;
                }
                s = s.wrapping_add(1 + next() % 3);
            }
            if n > 1 {
                let i = 1 + (next() as usize) % (n - 1);
                match case % 4 {
                    0 => rows[i] = rows[i - 1],
                    1 => rows[i].0 = rows[i - 1].0 - 1,
                    2 => rows[i] = (rows[i - 1].0, rows[i - 1].1.wrapping_sub(1)),
                    _ => {}
                }
            }
            let want = rows.windows(2).all(|w| w[0] < w[1]);
            let (tv, sv): (Vec<i64>, Vec<u64>) = rows.iter().copied().unzip();
            assert_eq!(values_in_order(&tv, &sv), want, "case {case}: {rows:?}");
        }
    }

    #[test]
    fn columns_and_source_counts_are_those_of_the_rows_in_both_shapes() {
        let evs = events();
        let log = events_to_log_batch(evs.iter());
        let table = log_to_table_batch(&log).expect("table shape");
        for b in [&log, &table] {
            let batch = EventBatch::from_arrow(b).expect("batch");
            // a shared handle reads the same rows once the batch is gone
            let shared = batch.share().expect("columns shared");
            let seen: Vec<String> = batch.iter().map(|e| format!("{e:?}")).collect();
            drop(batch);
            let again: Vec<String> = shared.iter().map(|e| format!("{e:?}")).collect();
            assert_eq!(again, seen);
            let batch = shared;
            let cols = batch.columns().expect("whole columns");
            assert_eq!(cols.len(), evs.len());
            for (i, ev) in batch.iter().enumerate() {
                assert_eq!(
                    (cols.ts[i], cols.seq[i], cols.source(i)),
                    (ev.ts_ns, ev.seq, ev.source)
                );
            }
            for s in ["log", "docker", "packet", "fault"] {
                let want = evs.iter().filter(|e| e.source == s).count();
                assert_eq!(batch.count_source(s), want, "{s}");
            }
        }
        // the table shape's source is a dictionary column: counted by its key
        assert!(matches!(
            table
                .column_by_name("source")
                .map(|c| c.data_type().clone()),
            Some(DataType::Dictionary(..))
        ));
    }

    #[test]
    fn a_batch_with_rows_filtered_out_or_owned_rows_has_no_columns() {
        let evs = events();
        let log = events_to_log_batch(evs.iter());
        let opts = ReadOptions {
            sources: Some(vec!["log".to_string()]),
            ..Default::default()
        };
        let (filtered, _) = EventBatch::from_record_batch(&log, &opts, false).expect("batch");
        assert!(filtered.columns().is_none());
        assert_eq!(
            filtered.count_source("log"),
            evs.iter().filter(|e| e.source == "log").count()
        );
        assert_eq!(filtered.count_source("docker"), 0);
        let owned = EventBatch::from_events(evs.clone());
        assert!(owned.columns().is_none());
        assert!(owned.share().is_none());
        assert_eq!(
            owned.count_source("packet"),
            evs.iter().filter(|e| e.source == "packet").count()
        );
    }
}
