//! Reading append-only Arrow IPC logs, and the external sort of record batches by
//! `(ts_ns, seq)` with bounded memory.
//!
//! [`RunSorter`] buffers incoming batches up to a byte budget, sorts each buffer into a *run*
//! spilled to a temporary IPC file, and [`Merged`] k-way merges the runs back (holding one batch
//! per run). When everything fits in one buffer nothing is spilled. Reading an unfinalized trace
//! uses it, and finalization for what [`NearSorter`] cannot place.
//!
//! [`NearSorter`] is finalization's sort of a log that is nearly in order already (events reach
//! the writer close to time order): it sorts chunks of the input as they come and merges them
//! in memory, emitting the smallest rows once a byte budget is held, so the sorted stream leaves
//! in one pass with nothing spilled. A row that arrives after a larger key has been emitted is
//! *late*: it goes to a [`RunSorter`], and the caller merges the (sorted) late rows with the
//! emitted stream afterwards. Batches only need `ts_ns` (Int64) and `seq` (UInt64) columns.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::compute::interleave_record_batch;
use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, UInt64Type};
use arrow_array::{Int64Array, RecordBatch, UInt64Array};
use arrow_ipc::reader::StreamReader;
use arrow_ipc::writer::StreamWriter;
use arrow_schema::{DataType, SchemaRef};

use crate::framed::{self, FramedLog, LogTail};
use crate::TraceError;

/// Rows per batch produced by sorting and merging.
pub(crate) const OUT_BATCH: usize = 8192;

/// Rows per batch inside a spilled run: the merge holds one such batch per run, so smaller
/// batches keep the merge's memory low when there are many runs.
const RUN_BATCH: usize = 2048;

/// Reads an append-only log written by the trace writer: the framed log of format v2
/// ([`crate::framed`]) or the plain Arrow IPC stream of format v1. A truncated tail (a writer
/// killed mid-write) is dropped and `truncated` set; for v2 logs `tail` says how many bytes were
/// cut. A record damaged in the middle of a v2 log is an error, or, with
/// [`LogReader::skip_damaged`], skipped and counted in `skipped`.
pub(crate) struct LogReader {
    path: PathBuf,
    inner: Option<LogInner>,
    schema: SchemaRef,
    pub(crate) truncated: bool,
    /// How a v2 log ended.
    pub(crate) tail: LogTail,
    /// Damaged records skipped (only with `skip_damaged`): (byte offset, bytes skipped).
    pub(crate) skipped: Vec<(u64, u64)>,
    skip_damaged: bool,
}

enum LogInner {
    V1(Box<StreamReader<BufReader<File>>>),
    V2(Box<FramedLog>),
}

impl LogReader {
    /// Opens a log. An empty file (a writer killed before its first write reached the disk)
    /// reads as no rows of `default_schema`, marked truncated.
    pub(crate) fn open(path: &Path, default_schema: SchemaRef) -> Result<LogReader, TraceError> {
        let f = File::open(path).map_err(|e| TraceError::io(path, e))?;
        let len = f.metadata().map_err(|e| TraceError::io(path, e))?.len();
        let empty = |schema: SchemaRef| LogReader {
            path: path.to_path_buf(),
            inner: None,
            schema,
            truncated: true,
            tail: LogTail::Clean,
            skipped: Vec::new(),
            skip_damaged: false,
        };
        if len == 0 {
            return Ok(empty(default_schema));
        }
        if framed::is_framed(path)? {
            let log = FramedLog::open(path, default_schema.clone())?;
            return Ok(LogReader {
                path: path.to_path_buf(),
                inner: Some(LogInner::V2(Box::new(log))),
                schema: default_schema,
                truncated: false,
                tail: LogTail::Clean,
                skipped: Vec::new(),
                skip_damaged: false,
            });
        }
        if len < framed::HEADER_LEN {
            // a v2 file header cut short by a killed writer
            let head = std::fs::read(path).map_err(|e| TraceError::io(path, e))?;
            if framed::FILE_MAGIC.starts_with(&head[..head.len().min(8)]) {
                let mut r = empty(default_schema);
                r.tail = LogTail::Torn {
                    offset: 0,
                    bytes: len,
                };
                return Ok(r);
            }
        }
        let reader = catch(path, || {
            StreamReader::try_new(BufReader::with_capacity(1 << 20, f), None)
        })?
        .map_err(|e| TraceError::corrupt(path, format!("not an arrow ipc stream: {e}")))?;
        let schema = reader.schema();
        for need in ["ts_ns", "seq"] {
            if schema.column_with_name(need).is_none() {
                return Err(TraceError::corrupt(
                    path,
                    format!("log has no {need} column"),
                ));
            }
        }
        Ok(LogReader {
            path: path.to_path_buf(),
            inner: Some(LogInner::V1(Box::new(reader))),
            schema,
            truncated: false,
            tail: LogTail::Clean,
            skipped: Vec::new(),
            skip_damaged: false,
        })
    }

    /// Skips records damaged in the middle of a v2 log instead of failing (for repair).
    pub(crate) fn skip_damaged(mut self) -> LogReader {
        self.skip_damaged = true;
        self
    }

    /// Lets the pages of a v2 log leave the page cache as they are read
    /// ([`FramedLog::drop_behind`]): for a log read once and then removed.
    pub(crate) fn drop_behind(mut self) -> LogReader {
        self.inner = match self.inner.take() {
            Some(LogInner::V2(log)) => Some(LogInner::V2(Box::new(log.drop_behind()))),
            other => other,
        };
        self
    }

    pub(crate) fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// A warning describing what was cut or skipped, `None` when the log was read whole.
    pub(crate) fn warning(&self) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(t) = self.tail.describe() {
            parts.push(t);
        } else if self.truncated {
            parts.push(
                "the log ends in an incomplete batch from a killed writer, which was dropped"
                    .to_string(),
            );
        }
        if !self.skipped.is_empty() {
            let bytes: u64 = self.skipped.iter().map(|s| s.1).sum();
            parts.push(format!(
                "{} damaged record(s) skipped ({bytes} bytes, first at byte offset {})",
                self.skipped.len(),
                self.skipped[0].0
            ));
        }
        (!parts.is_empty()).then(|| format!("{}: {}", self.path.display(), parts.join("; ")))
    }
}

/// Runs arrow's IPC decoder, turning a panic on malformed input into an error naming the file.
fn catch<T>(path: &Path, f: impl FnOnce() -> T) -> Result<T, TraceError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .map_err(|_| TraceError::corrupt(path, "malformed arrow ipc message"))
}

impl Iterator for LogReader {
    type Item = Result<RecordBatch, TraceError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.inner.as_mut()? {
            LogInner::V1(r) => {
                let next = match catch(&self.path, || r.next()) {
                    Ok(n) => n,
                    Err(e) => {
                        self.inner = None;
                        return Some(Err(e));
                    }
                };
                match next {
                    Some(Ok(b)) => Some(Ok(b)),
                    Some(Err(_)) => {
                        // An incomplete message at the end of a log left by a killed writer.
                        self.truncated = true;
                        self.inner = None;
                        None
                    }
                    None => {
                        self.inner = None;
                        None
                    }
                }
            }
            LogInner::V2(log) => loop {
                match log.next_or_bad() {
                    Err(e) => {
                        self.inner = None;
                        return Some(Err(e));
                    }
                    Ok(Ok(Some(b))) => return Some(Ok(b)),
                    Ok(Ok(None)) => {
                        self.tail = log.tail;
                        self.truncated = log.tail != LogTail::Clean;
                        self.inner = None;
                        return None;
                    }
                    Ok(Err(bad)) if self.skip_damaged => match log.skip(&bad) {
                        Ok(Some(n)) => self.skipped.push((bad.offset, n)),
                        Ok(None) => {
                            let len = std::fs::metadata(&self.path).map_or(0, |m| m.len());
                            self.skipped
                                .push((bad.offset, len.saturating_sub(bad.offset)));
                            self.inner = None;
                            return None;
                        }
                        Err(e) => {
                            self.inner = None;
                            return Some(Err(e));
                        }
                    },
                    Ok(Err(bad)) => {
                        self.inner = None;
                        return Some(Err(TraceError::corrupt(
                            &self.path,
                            format!(
                                "record at byte offset {}: {}; the log is damaged in the middle (run `analyzer finalize --repair` to drop the record)",
                                bad.offset, bad.problem
                            ),
                        )));
                    }
                }
            },
        }
    }
}

fn key_cols(b: &RecordBatch, path: &Path) -> Result<(Int64Array, UInt64Array), TraceError> {
    let ts = b
        .column_by_name("ts_ns")
        .and_then(|c| c.as_primitive_opt::<Int64Type>())
        .ok_or_else(|| TraceError::corrupt(path, "ts_ns is not an int64 column"))?;
    let seq = b
        .column_by_name("seq")
        .and_then(|c| c.as_primitive_opt::<UInt64Type>())
        .ok_or_else(|| TraceError::corrupt(path, "seq is not a uint64 column"))?;
    Ok((ts.clone(), seq.clone()))
}

/// Bytes of data a batch holds. Not `get_array_memory_size`: batches decoded from IPC share one
/// message buffer between all their arrays, which that counts once per array.
fn logical_size(b: &RecordBatch) -> usize {
    fn data_size(d: &arrow::array::ArrayData) -> usize {
        d.buffers().iter().map(|x| x.len()).sum::<usize>()
            + d.nulls().map_or(0, |n| n.buffer().len())
            + d.child_data().iter().map(data_size).sum::<usize>()
    }
    b.columns().iter().map(|c| data_size(&c.to_data())).sum()
}

/// Sorts batches into runs within a memory budget.
pub(crate) struct RunSorter {
    schema: SchemaRef,
    /// Where runs are spilled (removed on drop).
    tmp: tempfile::TempDir,
    runs: Vec<PathBuf>,
    buffered: Vec<RecordBatch>,
    buffered_bytes: usize,
    budget: usize,
    /// Names the data in errors.
    origin: PathBuf,
}

impl RunSorter {
    /// A sorter spilling into a new temporary directory under `tmp_parent` (the system temporary
    /// directory when `None`), keeping at most about `budget` bytes of input in memory.
    pub(crate) fn new(
        schema: SchemaRef,
        tmp_parent: Option<&Path>,
        budget: usize,
        origin: &Path,
    ) -> Result<RunSorter, TraceError> {
        let tmp = match tmp_parent {
            Some(p) => tempfile::Builder::new()
                .prefix(".sort-")
                .tempdir_in(p)
                .map_err(|e| TraceError::io(p, e))?,
            None => tempfile::Builder::new()
                .prefix("trace-sort-")
                .tempdir()
                .map_err(|e| TraceError::io(&std::env::temp_dir(), e))?,
        };
        Ok(RunSorter {
            schema,
            tmp,
            runs: Vec::new(),
            buffered: Vec::new(),
            buffered_bytes: 0,
            budget,
            origin: origin.to_path_buf(),
        })
    }

    pub(crate) fn push(&mut self, batch: RecordBatch) -> Result<(), TraceError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if batch.schema().fields() != self.schema.fields() {
            return Err(TraceError::corrupt(
                &self.origin,
                "batch schema differs from the log schema",
            ));
        }
        self.buffered_bytes += logical_size(&batch);
        self.buffered.push(batch);
        if self.buffered_bytes >= self.budget {
            self.spill()?;
        }
        Ok(())
    }

    fn sorted_order(&self) -> Result<Vec<(usize, usize)>, TraceError> {
        let mut keys: Vec<(i64, u64, u32, u32)> = Vec::new();
        let mut sorted = true;
        let mut last = (i64::MIN, 0u64);
        for (bi, b) in self.buffered.iter().enumerate() {
            let (ts, seq) = key_cols(b, &self.origin)?;
            for r in 0..b.num_rows() {
                let k = (ts.value(r), seq.value(r));
                if k < last {
                    sorted = false;
                }
                last = k;
                keys.push((k.0, k.1, bi as u32, r as u32));
            }
        }
        if !sorted {
            keys.sort_unstable();
        }
        Ok(keys
            .into_iter()
            .map(|(_, _, b, r)| (b as usize, r as usize))
            .collect())
    }

    fn spill(&mut self) -> Result<(), TraceError> {
        if self.buffered.is_empty() {
            return Ok(());
        }
        let order = self.sorted_order()?;
        let path = self
            .tmp
            .path()
            .join(format!("run-{:05}.arrows", self.runs.len()));
        let f = File::create(&path).map_err(|e| TraceError::io(&path, e))?;
        let werr = |e: arrow_schema::ArrowError| {
            TraceError::corrupt(&path, format!("cannot write sort run: {e}"))
        };
        let mut w = StreamWriter::try_new(BufWriter::with_capacity(1 << 20, f), &self.schema)
            .map_err(werr)?;
        let refs: Vec<&RecordBatch> = self.buffered.iter().collect();
        for chunk in order.chunks(RUN_BATCH) {
            let b = interleave_record_batch(&refs, chunk).map_err(werr)?;
            w.write(&b).map_err(werr)?;
        }
        w.finish().map_err(werr)?;
        self.runs.push(path);
        self.buffered.clear();
        self.buffered_bytes = 0;
        Ok(())
    }

    /// The sorted stream of everything pushed.
    pub(crate) fn finish(mut self) -> Result<Merged, TraceError> {
        if self.runs.is_empty() {
            let order = self.sorted_order()?;
            return Ok(Merged {
                inner: MergedInner::Memory {
                    batches: std::mem::take(&mut self.buffered),
                    order,
                    pos: 0,
                },
                _tmp: Some(self.tmp),
            });
        }
        self.spill()?;
        let mut cursors = Vec::with_capacity(self.runs.len());
        for p in &self.runs {
            let f = File::open(p).map_err(|e| TraceError::io(p, e))?;
            let r = StreamReader::try_new(BufReader::with_capacity(64 << 10, f), None)
                .map_err(|e| TraceError::corrupt(p, format!("cannot read sort run: {e}")))?;
            let path = p.clone();
            let r = r.map(move |b| {
                b.map_err(|e| TraceError::corrupt(&path, format!("cannot read sort run: {e}")))
            });
            let mut c = Cursor {
                path: p.clone(),
                reader: Box::new(r),
                batch: None,
                ts: Int64Array::from(Vec::<i64>::new()),
                seq: UInt64Array::from(Vec::<u64>::new()),
                pos: 0,
            };
            if c.load()? {
                cursors.push(c);
            }
        }
        let mut heap = BinaryHeap::with_capacity(cursors.len());
        for (i, c) in cursors.iter().enumerate() {
            heap.push(Reverse((c.key(), i)));
        }
        Ok(Merged {
            inner: MergedInner::Runs {
                cursors,
                heap,
                done: false,
            },
            _tmp: Some(self.tmp),
        })
    }
}

struct Cursor {
    path: PathBuf,
    reader: Box<dyn Iterator<Item = Result<RecordBatch, TraceError>> + Send>,
    batch: Option<RecordBatch>,
    ts: Int64Array,
    seq: UInt64Array,
    pos: usize,
}

impl Cursor {
    /// Loads the next non-empty batch; false at the end of the run.
    fn load(&mut self) -> Result<bool, TraceError> {
        loop {
            match self.reader.next() {
                None => {
                    self.batch = None;
                    return Ok(false);
                }
                Some(Err(e)) => return Err(e),
                Some(Ok(b)) if b.num_rows() == 0 => continue,
                Some(Ok(b)) => {
                    let (ts, seq) = key_cols(&b, &self.path)?;
                    self.ts = ts;
                    self.seq = seq;
                    self.batch = Some(b);
                    self.pos = 0;
                    return Ok(true);
                }
            }
        }
    }

    fn key(&self) -> (i64, u64) {
        (self.ts.value(self.pos), self.seq.value(self.pos))
    }
}

enum MergedInner {
    Memory {
        batches: Vec<RecordBatch>,
        order: Vec<(usize, usize)>,
        pos: usize,
    },
    Runs {
        cursors: Vec<Cursor>,
        heap: BinaryHeap<Reverse<((i64, u64), usize)>>,
        done: bool,
    },
}

/// Sorted batches of [`OUT_BATCH`] rows (the last may be shorter).
pub(crate) struct Merged {
    inner: MergedInner,
    _tmp: Option<tempfile::TempDir>,
}

impl Merged {
    fn next_runs(
        cursors: &mut [Cursor],
        heap: &mut BinaryHeap<Reverse<((i64, u64), usize)>>,
    ) -> Result<Option<RecordBatch>, TraceError> {
        if heap.is_empty() {
            return Ok(None);
        }
        // Batches referenced by this output chunk: every cursor's current batch, plus batches
        // loaded while building the chunk.
        let mut batches: Vec<RecordBatch> = Vec::with_capacity(cursors.len() + 4);
        let mut slot: Vec<usize> = vec![usize::MAX; cursors.len()];
        for (i, c) in cursors.iter().enumerate() {
            if let Some(b) = &c.batch {
                slot[i] = batches.len();
                batches.push(b.clone());
            }
        }
        let mut idx: Vec<(usize, usize)> = Vec::with_capacity(OUT_BATCH);
        while idx.len() < OUT_BATCH {
            let Some(Reverse((_, ci))) = heap.pop() else {
                break;
            };
            let bound = heap.peek().map(|Reverse((k, _))| *k);
            let c = &mut cursors[ci];
            // Take consecutive rows of this run while they stay below every other run's head.
            loop {
                idx.push((slot[ci], c.pos));
                c.pos += 1;
                let n = c.batch.as_ref().map_or(0, |b| b.num_rows());
                if c.pos >= n {
                    if c.load()? {
                        slot[ci] = batches.len();
                        if let Some(b) = &c.batch {
                            batches.push(b.clone());
                        }
                        heap.push(Reverse((c.key(), ci)));
                    }
                    break;
                }
                if idx.len() >= OUT_BATCH || bound.is_some_and(|b| c.key() > b) {
                    heap.push(Reverse((c.key(), ci)));
                    break;
                }
            }
        }
        let refs: Vec<&RecordBatch> = batches.iter().collect();
        let out = interleave_record_batch(&refs, &idx)
            .map_err(|e| TraceError::Invalid(format!("merge failed: {e}")))?;
        Ok(Some(out))
    }
}

impl Iterator for Merged {
    type Item = Result<RecordBatch, TraceError>;

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.inner {
            MergedInner::Memory {
                batches,
                order,
                pos,
            } => {
                if *pos >= order.len() {
                    batches.clear();
                    return None;
                }
                let end = (*pos + OUT_BATCH).min(order.len());
                let refs: Vec<&RecordBatch> = batches.iter().collect();
                let r = interleave_record_batch(&refs, &order[*pos..end])
                    .map_err(|e| TraceError::Invalid(format!("sort failed: {e}")));
                *pos = end;
                Some(r)
            }
            MergedInner::Runs {
                cursors,
                heap,
                done,
            } => {
                if *done {
                    return None;
                }
                match Self::next_runs(cursors, heap) {
                    Ok(Some(b)) => Some(Ok(b)),
                    Ok(None) => {
                        *done = true;
                        None
                    }
                    Err(e) => {
                        *done = true;
                        Some(Err(e))
                    }
                }
            }
        }
    }
}

/// Rows of one chunk in a row, at least, that [`NearSorter::pop`] emits as a slice of the chunk
/// instead of copying them into a new batch.
const MIN_SLICE_RUN: usize = 1024;

/// Rows gathered from the input before [`NearSorter`] sorts them into a chunk.
pub(crate) const CHUNK_ROWS: usize = 64 * 1024;

/// One sorted chunk held by [`NearSorter`], consumed from `pos`.
struct Chunk {
    batch: RecordBatch,
    ts: Int64Array,
    seq: UInt64Array,
    pos: usize,
    /// Estimated bytes per row (for the budget).
    row_bytes: f64,
    /// Input order of the chunk: ties of equal keys leave in input order.
    no: u64,
}

impl Chunk {
    fn key(&self) -> (i64, u64) {
        (self.ts.value(self.pos), self.seq.value(self.pos))
    }

    fn held_bytes(&self) -> f64 {
        self.row_bytes * (self.batch.num_rows() - self.pos) as f64
    }
}

/// A merge-heap entry: the row's `(ts_ns, seq)` key, its row in the chunk, the chunk.
type HeapEntry = Reverse<((i64, u64), u64, usize)>;

/// The sort of a nearly sorted stream (see the module doc): push batches, pop sorted batches
/// as they become ready, [`NearSorter::finish_input`], pop the rest, then take the late rows.
pub(crate) struct NearSorter {
    schema: SchemaRef,
    budget: usize,
    origin: PathBuf,
    tmp_parent: Option<PathBuf>,
    pending: Vec<RecordBatch>,
    pending_rows: usize,
    /// Sorted chunks being merged; `None` once consumed.
    chunks: Vec<Option<Chunk>>,
    heap: BinaryHeap<HeapEntry>,
    chunks_made: u64,
    held: f64,
    /// The key of the last row emitted.
    last_out: Option<(i64, u64)>,
    late: Option<RunSorter>,
    late_rows: u64,
    input_done: bool,
}

impl NearSorter {
    /// A sorter holding about `budget` bytes of sorted rows before it emits; late rows are
    /// spilled under `tmp_parent` (the system temporary directory when `None`).
    pub(crate) fn new(
        schema: SchemaRef,
        tmp_parent: Option<&Path>,
        budget: usize,
        origin: &Path,
    ) -> NearSorter {
        NearSorter {
            schema,
            budget,
            origin: origin.to_path_buf(),
            tmp_parent: tmp_parent.map(Path::to_path_buf),
            pending: Vec::new(),
            pending_rows: 0,
            chunks: Vec::new(),
            heap: BinaryHeap::new(),
            chunks_made: 0,
            held: 0.0,
            last_out: None,
            late: None,
            late_rows: 0,
            input_done: false,
        }
    }

    pub(crate) fn push(&mut self, batch: RecordBatch) -> Result<(), TraceError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if batch.schema().fields() != self.schema.fields() {
            return Err(TraceError::corrupt(
                &self.origin,
                "batch schema differs from the log schema",
            ));
        }
        self.pending_rows += batch.num_rows();
        self.pending.push(batch);
        if self.pending_rows >= CHUNK_ROWS {
            self.make_chunk()?;
        }
        Ok(())
    }

    /// No more input: everything held can leave.
    pub(crate) fn finish_input(&mut self) -> Result<(), TraceError> {
        self.make_chunk()?;
        self.input_done = true;
        Ok(())
    }

    /// Rows that came too late to be emitted in order (0: the popped stream is the whole sort).
    pub(crate) fn late_rows(&self) -> u64 {
        self.late_rows
    }

    /// The late rows, sorted (call after the last [`NearSorter::pop`]).
    pub(crate) fn late(self) -> Result<Option<Merged>, TraceError> {
        self.late.map(RunSorter::finish).transpose()
    }

    /// Sorts the pending rows into a chunk; its rows below the last emitted key go to the late
    /// sorter.
    fn make_chunk(&mut self) -> Result<(), TraceError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let batches = std::mem::take(&mut self.pending);
        self.pending_rows = 0;
        let bytes: usize = batches.iter().map(logical_size).sum();
        let batch = sort_rows(&self.schema, batches, &self.origin)?;
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        let (ts, seq) = key_cols(&batch, &self.origin)?;
        let cut = match self.last_out {
            None => 0,
            Some(l) => {
                let (mut lo, mut hi) = (0, n);
                while lo < hi {
                    let mid = (lo + hi) / 2;
                    if (ts.value(mid), seq.value(mid)) < l {
                        lo = mid + 1;
                    } else {
                        hi = mid;
                    }
                }
                lo
            }
        };
        let row_bytes = bytes as f64 / n as f64;
        if cut > 0 {
            if self.late.is_none() {
                self.late = Some(RunSorter::new(
                    self.schema.clone(),
                    self.tmp_parent.as_deref(),
                    self.budget,
                    &self.origin,
                )?);
            }
            if let Some(late) = self.late.as_mut() {
                late.push(batch.slice(0, cut))?;
            }
            self.late_rows += cut as u64;
        }
        if cut == n {
            return Ok(());
        }
        let batch = if cut > 0 {
            batch.slice(cut, n - cut)
        } else {
            batch
        };
        let (ts, seq) = key_cols(&batch, &self.origin)?;
        let chunk = Chunk {
            batch,
            ts,
            seq,
            pos: 0,
            row_bytes,
            no: self.chunks_made,
        };
        self.chunks_made += 1;
        self.held += chunk.held_bytes();
        let slot = match self.chunks.iter().position(Option::is_none) {
            Some(i) => i,
            None => {
                self.chunks.push(None);
                self.chunks.len() - 1
            }
        };
        self.heap.push(Reverse((chunk.key(), chunk.no, slot)));
        self.chunks[slot] = Some(chunk);
        Ok(())
    }

    /// The next sorted batch of up to [`OUT_BATCH`] rows, when the budget is held or the input
    /// is done; `None` when more input is needed (or, after `finish_input`, at the end).
    pub(crate) fn pop(&mut self) -> Result<Option<RecordBatch>, TraceError> {
        if self.heap.is_empty() || !(self.input_done || self.held >= self.budget as f64) {
            return Ok(None);
        }
        let mut idx: Vec<(usize, usize)> = Vec::with_capacity(OUT_BATCH);
        let mut last = None;
        // a long run of one chunk leaves as a slice of it, not copied
        let mut run: Option<(usize, usize, usize)> = None;
        while idx.len() < OUT_BATCH {
            let Some(Reverse((_, no, slot))) = self.heap.pop() else {
                break;
            };
            let bound = self.heap.peek().map(|Reverse((k, n, _))| (*k, *n));
            let Some(c) = self.chunks[slot].as_mut() else {
                continue;
            };
            let before = c.pos;
            // consecutive rows of this chunk while they stay below every other chunk's head
            loop {
                idx.push((slot, c.pos));
                last = Some(c.key());
                c.pos += 1;
                if c.pos >= c.batch.num_rows() {
                    break;
                }
                if idx.len() >= OUT_BATCH || bound.is_some_and(|b| (c.key(), no) > b) {
                    self.heap.push(Reverse((c.key(), no, slot)));
                    break;
                }
            }
            self.held -= c.row_bytes * (c.pos - before) as f64;
            if idx.len() == c.pos - before && idx.len() >= MIN_SLICE_RUN {
                run = Some((slot, before, idx.len()));
                break;
            }
        }
        if let Some((slot, from, len)) = run {
            let out = self.chunks[slot]
                .as_ref()
                .map(|c| c.batch.slice(from, len))
                .ok_or_else(|| TraceError::Invalid("merge lost a chunk".into()))?;
            if self.chunks[slot]
                .as_ref()
                .is_some_and(|c| c.pos >= c.batch.num_rows())
            {
                self.chunks[slot] = None;
            }
            if self.heap.is_empty() {
                self.held = 0.0;
            }
            self.last_out = last.or(self.last_out);
            return Ok(Some(out));
        }
        let mut refs: Vec<&RecordBatch> = Vec::with_capacity(self.chunks.len());
        let empty = RecordBatch::new_empty(self.schema.clone());
        for c in &self.chunks {
            refs.push(c.as_ref().map_or(&empty, |c| &c.batch));
        }
        let out = interleave_record_batch(&refs, &idx)
            .map_err(|e| TraceError::Invalid(format!("merge failed: {e}")))?;
        for c in self.chunks.iter_mut() {
            if c.as_ref().is_some_and(|c| c.pos >= c.batch.num_rows()) {
                *c = None;
            }
        }
        if self.heap.is_empty() {
            self.held = 0.0;
        }
        self.last_out = last.or(self.last_out);
        Ok(Some(out))
    }
}

/// The rows of `batches` (one schema) in one batch sorted by `(ts_ns, seq)`: the batch itself
/// when there is one already in order, their concatenation when they are in order, else a
/// sorted copy. Finalization runs it on its reading thread, ahead of [`NearSorter`], which then
/// finds each chunk in order. A plain string column that `schema` has as `Dictionary(Int32,
/// Utf8)` (finalization's sort shape, `schema::sort_shape`) is encoded on the way, all the
/// batches' rows with one dictionary, so that only its keys are copied into order.
pub(crate) fn sort_rows(
    schema: &SchemaRef,
    batches: Vec<RecordBatch>,
    origin: &Path,
) -> Result<RecordBatch, TraceError> {
    let mut sorted = true;
    let mut last = (i64::MIN, 0u64);
    for b in &batches {
        if b.num_columns() != schema.fields().len() {
            return Err(TraceError::corrupt(
                origin,
                "batch schema differs from the log schema",
            ));
        }
        let (ts, seq) = key_cols(b, origin)?;
        for r in 0..b.num_rows() {
            let k = (ts.value(r), seq.value(r));
            sorted &= k >= last;
            last = k;
            if !sorted {
                break;
            }
        }
        if !sorted {
            break;
        }
    }
    let err = |e: arrow_schema::ArrowError| TraceError::Invalid(format!("sort failed: {e}"));
    let shaped = batches
        .first()
        .is_none_or(|b| b.schema().fields() == schema.fields());
    if sorted && shaped && batches.len() <= 1 {
        return Ok(batches
            .into_iter()
            .next()
            .unwrap_or_else(|| RecordBatch::new_empty(schema.clone())));
    }
    let order: Option<Vec<(usize, usize)>> = if sorted {
        None
    } else {
        Some(sorted_order(&batches, origin)?)
    };
    // the rows of one column's arrays in order
    let gather = |parts: &[&dyn arrow_array::Array]| match &order {
        Some(order) => arrow::compute::interleave(parts, order),
        None if parts.len() == 1 => Ok(parts[0].slice(0, parts[0].len())),
        None => arrow::compute::concat(parts),
    };
    let mut cols = Vec::with_capacity(schema.fields().len());
    for (i, f) in schema.fields().iter().enumerate() {
        let strings: Option<Vec<&arrow_array::StringArray>> = if matches!(f.data_type(), DataType::Dictionary(k, v) if **k == DataType::Int32 && **v == DataType::Utf8)
        {
            batches
                .iter()
                .map(|b| b.column(i).as_string_opt::<i32>())
                .collect()
        } else {
            None
        };
        let col = match strings {
            Some(strings) => {
                let (keys, values) = crate::schema::to_dictionaries(&strings).map_err(err)?;
                let keys: Vec<&dyn arrow_array::Array> =
                    keys.iter().map(|k| k as &dyn arrow_array::Array).collect();
                let keys = gather(&keys).map_err(err)?;
                let keys = keys
                    .as_primitive_opt::<arrow_array::types::Int32Type>()
                    .cloned()
                    .ok_or_else(|| TraceError::Invalid("sort failed: keys not int32".into()))?;
                Arc::new(
                    arrow_array::DictionaryArray::<arrow_array::types::Int32Type>::try_new(
                        keys, values,
                    )
                    .map_err(err)?,
                ) as arrow_array::ArrayRef
            }
            None => {
                let parts: Vec<&dyn arrow_array::Array> =
                    batches.iter().map(|b| b.column(i).as_ref()).collect();
                gather(&parts).map_err(err)?
            }
        };
        cols.push(col);
    }
    let rows = batches.iter().map(RecordBatch::num_rows).sum();
    RecordBatch::try_new_with_options(
        schema.clone(),
        cols,
        &arrow_array::RecordBatchOptions::new().with_row_count(Some(rows)),
    )
    .map_err(|e| TraceError::corrupt(origin, e))
}

/// The `(batch, row)` order of `batches`' rows by `(ts_ns, seq)`, ties in input order. When the
/// sequence numbers rise row by row through the batches (a log: the writer numbers events as
/// they are appended) the order by `(ts_ns, seq)` is the order by time and then position,
/// which is sorted as one integer per row (the time from the earliest, then the position);
/// otherwise the rows are sorted by their whole keys.
fn sorted_order(batches: &[RecordBatch], origin: &Path) -> Result<Vec<(usize, usize)>, TraceError> {
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let mut cols = Vec::with_capacity(batches.len());
    for b in batches {
        cols.push(key_cols(b, origin)?);
    }
    let mut rising = rows <= u32::MAX as usize;
    let (mut lo, mut hi) = (i64::MAX, i64::MIN);
    let mut prev: Option<u64> = None;
    for (ts, seq) in &cols {
        for &q in seq.values().iter() {
            rising &= prev.is_none_or(|p| q > p);
            prev = Some(q);
        }
        for &t in ts.values().iter() {
            lo = lo.min(t);
            hi = hi.max(t);
        }
    }
    let span = (hi as i128 - lo as i128).max(0);
    if rising && span < 1 << 32 {
        return Ok(by_time_then_position(batches, &cols, |t, i| {
            ((t.wrapping_sub(lo) as u64) << 32) | i
        }));
    }
    if rising {
        return Ok(by_time_then_position(batches, &cols, |t, i| {
            (u128::from(t.wrapping_sub(lo) as u64) << 32) | u128::from(i)
        }));
    }
    let mut keys: Vec<(i64, u64, u32, u32)> = Vec::with_capacity(rows);
    for (bi, (ts, seq)) in cols.iter().enumerate() {
        for r in 0..ts.len() {
            keys.push((ts.value(r), seq.value(r), bi as u32, r as u32));
        }
    }
    // (batch, row) makes every key distinct: an unstable sort gives the stable order
    keys.sort_unstable();
    Ok(keys.iter().map(|k| (k.2 as usize, k.3 as usize)).collect())
}

/// [`sorted_order`] by one integer per row, `key(ts_ns, position)` with the position in its
/// low 32 bits.
fn by_time_then_position<K: Ord + Copy + Into<u128>>(
    batches: &[RecordBatch],
    cols: &[(Int64Array, UInt64Array)],
    key: impl Fn(i64, u64) -> K,
) -> Vec<(usize, usize)> {
    let mut keys: Vec<K> = Vec::with_capacity(batches.iter().map(RecordBatch::num_rows).sum());
    for (ts, _) in cols {
        let base = keys.len() as u64;
        keys.extend(
            ts.values()
                .iter()
                .enumerate()
                .map(|(i, &t)| key(t, base + i as u64)),
        );
    }
    keys.sort_unstable();
    let mut at = Vec::with_capacity(keys.len());
    for (bi, b) in batches.iter().enumerate() {
        at.extend((0..b.num_rows()).map(|r| (bi, r)));
    }
    keys.iter()
        .map(|&k| at[(k.into() & 0xffff_ffff) as usize])
        .collect()
}

/// Merges sorted streams of record batches (each sorted by `(ts_ns, seq)`, one schema) into one
/// sorted stream of [`OUT_BATCH`]-row batches, holding one batch per stream.
pub(crate) fn merge_sorted(
    streams: Vec<Box<dyn Iterator<Item = Result<RecordBatch, TraceError>> + Send>>,
    origin: &Path,
) -> Result<Merged, TraceError> {
    let mut cursors = Vec::with_capacity(streams.len());
    for s in streams {
        let mut c = Cursor {
            path: origin.to_path_buf(),
            reader: s,
            batch: None,
            ts: Int64Array::from(Vec::<i64>::new()),
            seq: UInt64Array::from(Vec::<u64>::new()),
            pos: 0,
        };
        if c.load()? {
            cursors.push(c);
        }
    }
    let mut heap = BinaryHeap::with_capacity(cursors.len());
    for (i, c) in cursors.iter().enumerate() {
        heap.push(Reverse((c.key(), i)));
    }
    Ok(Merged {
        inner: MergedInner::Runs {
            cursors,
            heap,
            done: false,
        },
        _tmp: None,
    })
}

/// Sorts everything a log holds; `budget` bytes per in-memory run.
pub(crate) fn sort_log(
    log: &mut LogReader,
    tmp_parent: Option<&Path>,
    budget: usize,
) -> Result<Merged, TraceError> {
    let origin = log.path().to_path_buf();
    let mut s = RunSorter::new(log.schema(), tmp_parent, budget, &origin)?;
    for b in log.by_ref() {
        s.push(b?)?;
    }
    s.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{schema, Event};

    fn batch(keys: &[(i64, u64)]) -> RecordBatch {
        let evs: Vec<Event> = keys
            .iter()
            .map(|&(t, s)| {
                let mut e = Event::new(t, "log", "stdout").message(format!("{t}/{s}"));
                e.seq = s;
                e
            })
            .collect();
        schema::events_to_log_batch(evs.iter())
    }

    fn keys(m: Merged) -> Vec<(i64, u64)> {
        let mut out = Vec::new();
        for b in m {
            let b = b.unwrap();
            let (ts, seq) = key_cols(&b, Path::new("x")).unwrap();
            for i in 0..b.num_rows() {
                out.push((ts.value(i), seq.value(i)));
            }
        }
        out
    }

    fn pseudo_random_keys(n: usize, seed: u64) -> Vec<(i64, u64)> {
        let mut x = seed;
        (0..n as u64)
            .map(|s| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                ((x % 1000) as i64, s)
            })
            .collect()
    }

    #[test]
    fn in_memory_and_spilled_sorts_agree_with_a_plain_sort() {
        let input = pseudo_random_keys(50_000, 42);
        let mut expected = input.clone();
        expected.sort();
        for budget in [usize::MAX, 200_000] {
            let mut s =
                RunSorter::new(schema::event_log_schema(), None, budget, Path::new("x")).unwrap();
            for chunk in input.chunks(3000) {
                s.push(batch(chunk)).unwrap();
            }
            if budget != usize::MAX {
                assert!(
                    s.runs.len() > 3,
                    "expected spilled runs, got {}",
                    s.runs.len()
                );
            }
            assert_eq!(keys(s.finish().unwrap()), expected, "budget {budget}");
        }
    }

    /// Pushes `input` in chunks of `chunk` rows through a [`NearSorter`] of `budget` bytes and
    /// returns the sorted keys: the popped stream merged with the late rows, and how many rows
    /// were late.
    fn near_sort(input: &[(i64, u64)], chunk: usize, budget: usize) -> (Vec<(i64, u64)>, u64) {
        let mut s = NearSorter::new(schema::event_log_schema(), None, budget, Path::new("x"));
        let mut popped: Vec<RecordBatch> = Vec::new();
        for c in input.chunks(chunk) {
            s.push(batch(c)).unwrap();
            while let Some(b) = s.pop().unwrap() {
                popped.push(b);
            }
        }
        s.finish_input().unwrap();
        while let Some(b) = s.pop().unwrap() {
            popped.push(b);
        }
        let late_rows = s.late_rows();
        let popped_keys = keys(
            merge_sorted(
                vec![Box::new(popped.clone().into_iter().map(Ok))],
                Path::new("x"),
            )
            .unwrap(),
        );
        assert!(
            popped_keys.windows(2).all(|w| w[0] <= w[1]),
            "the popped stream is sorted"
        );
        let mut streams: Vec<Box<dyn Iterator<Item = Result<RecordBatch, TraceError>> + Send>> =
            vec![Box::new(popped.into_iter().map(Ok))];
        if let Some(late) = s.late().unwrap() {
            streams.push(Box::new(late));
        }
        (
            keys(merge_sorted(streams, Path::new("x")).unwrap()),
            late_rows,
        )
    }

    #[test]
    fn near_sort_of_a_nearly_sorted_stream_needs_no_second_pass() {
        // each key lags its arrival by up to 500 positions
        let mut x = 7u64;
        let mut input: Vec<(i64, u64)> = (0..300_000u64)
            .map(|s| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (s as i64 - (x % 500) as i64, s)
            })
            .collect();
        let mut expected = input.clone();
        expected.sort();
        let (got, late) = near_sort(&input, 777, 8 << 20);
        assert_eq!(late, 0);
        assert_eq!(got, expected);
        // a few very late rows: placed by the merge with the late sort
        input.push((-5, 1_000_000));
        input.push((100, 1_000_001));
        let mut expected = input.clone();
        expected.sort();
        let (got, late) = near_sort(&input, 777, 8 << 20);
        assert_eq!(late, 2);
        assert_eq!(got, expected);
    }

    #[test]
    fn near_sort_of_runs_in_order_leaves_them_as_slices_in_order() {
        // sorted stretches longer than MIN_SLICE_RUN, and a few rows out of place between them
        let mut input: Vec<(i64, u64)> = (0..200_000u64).map(|s| (s as i64, s)).collect();
        for i in (5_000..200_000).step_by(70_001) {
            input.swap(i, i + 3);
        }
        let mut expected = input.clone();
        expected.sort();
        for chunk in [64, 5_000, 100_000] {
            let (got, late) = near_sort(&input, chunk, 8 << 20);
            assert_eq!(late, 0);
            assert_eq!(got, expected, "chunk {chunk}");
        }
    }

    #[test]
    fn near_sort_of_a_random_stream_is_still_a_sort() {
        let input = pseudo_random_keys(100_000, 3);
        let mut expected = input.clone();
        expected.sort();
        for budget in [usize::MAX / 2, 1 << 20, 1] {
            let (got, late) = near_sort(&input, 3000, budget);
            assert_eq!(got, expected, "budget {budget}");
            if budget < 1 << 21 {
                assert!(late > 0);
            }
        }
    }

    #[test]
    fn merge_keeps_rows_together() {
        let input = pseudo_random_keys(20_000, 7);
        let mut s =
            RunSorter::new(schema::event_log_schema(), None, 100_000, Path::new("x")).unwrap();
        for chunk in input.chunks(1000) {
            s.push(batch(chunk)).unwrap();
        }
        for b in s.finish().unwrap() {
            let b = b.unwrap();
            let (ts, seq) = key_cols(&b, Path::new("x")).unwrap();
            let msg = b.column_by_name("message").unwrap().as_string::<i32>();
            for i in 0..b.num_rows() {
                assert_eq!(msg.value(i), format!("{}/{}", ts.value(i), seq.value(i)));
            }
        }
    }

    /// `sorted_order`'s three ways (sequence numbers rising with times spanning less than 2^32
    /// ns, rising with a wider span, not rising) give the order of a plain sort by `(ts_ns,
    /// seq)` with ties in input order; and `sort_rows` into finalization's sort shape carries
    /// every row's strings along, dictionary-encoded.
    #[test]
    fn rows_sort_by_time_and_seq_each_way_and_strings_follow_as_dictionaries() {
        let mut rng = crate::gen::Rng(5);
        let mut noise = move || rng.next();
        let spans: [(i64, i64); 3] = [(0, 3_000_000), (i64::MIN / 2, 1 << 40), (-5, 9)];
        for (base, width) in spans {
            for rising in [true, false] {
                let n = 20_000u64;
                let keys: Vec<(i64, u64)> = (0..n)
                    .map(|i| {
                        let t = base + (noise() % width as u64) as i64;
                        let q = if rising {
                            10 + i * 3
                        } else {
                            noise() % (4 * n)
                        };
                        (t, q)
                    })
                    .collect();
                // kinds that vary row by row, so that a key out of place shows
                let batches: Vec<RecordBatch> = keys
                    .chunks(777)
                    .map(|c| {
                        let evs: Vec<Event> = c
                            .iter()
                            .map(|&(t, q)| {
                                let kind = format!("k{}", t.rem_euclid(5));
                                let mut e = Event::new(t, "log", &kind).message(format!("{t}/{q}"));
                                e.seq = q;
                                e
                            })
                            .collect();
                        schema::events_to_log_batch(evs.iter())
                    })
                    .collect();
                let got = sorted_order(&batches, Path::new("x")).unwrap();
                let mut want: Vec<(i64, u64, usize, usize)> = Vec::new();
                for (bi, c) in keys.chunks(777).enumerate() {
                    want.extend(c.iter().enumerate().map(|(r, k)| (k.0, k.1, bi, r)));
                }
                want.sort();
                let want: Vec<(usize, usize)> = want.iter().map(|w| (w.2, w.3)).collect();
                assert_eq!(got, want, "base {base}, width {width}, rising {rising}");
                let shape =
                    schema::sort_shape(&schema::event_log_schema(), &schema::event_table_schema());
                let sorted = sort_rows(&shape, batches, Path::new("x")).unwrap();
                assert_eq!(sorted.schema().fields(), shape.fields());
                let (ts, seq) = key_cols(&sorted, Path::new("x")).unwrap();
                let msg = sorted.column_by_name("message").unwrap().as_string::<i32>();
                let kind = sorted
                    .column_by_name("kind")
                    .unwrap()
                    .as_dictionary::<arrow_array::types::Int32Type>();
                let kind = kind.downcast_dict::<arrow_array::StringArray>().unwrap();
                for (i, &(bi, r)) in want.iter().enumerate() {
                    let k = keys[bi * 777 + r];
                    assert_eq!((ts.value(i), seq.value(i)), k);
                    assert_eq!(msg.value(i), format!("{}/{}", k.0, k.1));
                    let want_kind = format!("k{}", k.0.rem_euclid(5));
                    assert_eq!(arrow_array::ArrayAccessor::value(&kind, i), want_kind);
                }
            }
        }
    }
}
