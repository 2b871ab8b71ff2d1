//! Traces kept elsewhere than a local directory (object storage): the two small traits a store
//! implements ([`RemoteTrace`] for the trace, [`RemoteFile`] for random access to one file), and
//! the Parquet [`ChunkReader`] over either a local file or a remote one, so the streaming reader
//! reads a remote `events.parquet` with few range requests instead of downloading it:
//!
//! - opening a file fetches its last [`TAIL_BYTES`] in one request (with its size): the footer and
//!   metadata, kept for the file's life, and the whole file when it is no larger;
//! - each read plans, from the footer, the byte ranges of the column chunks it needs (only the
//!   row groups in its time range, only its columns), coalesces neighbours closer than
//!   [`COALESCE_GAP`] into spans of up to [`MAX_SPAN`], and fetches a span whole (one request)
//!   when the Parquet reader first touches it;
//! - fetched spans stay in a per-file cache of [`CACHE_BYTES`] (spans of earlier row groups are
//!   dropped first), so the re-reads that follow judging (shown events, context) are served
//!   without another request when they fall in what was fetched.
//!
//! Every reader handed to the Parquet decoder (local or remote) turns a run of reads at the end of
//! the file into an error (`EofGuard`): parquet's page-header decoder skips unknown Thrift fields
//! without checking that bytes came, so a damaged header declaring a list of billions of elements
//! would otherwise read nothing billions of times (a v1 file, minutes; fuzz finding
//! `timeout-f1a8b446`).
//!
//! This crate knows no storage protocol: the analyzer implements the traits for `s3://`.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Read;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use bytes::{Buf, Bytes};
use parquet::errors::ParquetError;
use parquet::file::metadata::ParquetMetaData;
use parquet::file::reader::{ChunkReader, Length};

use crate::TraceError;

/// Random access to the bytes of one remote file.
pub trait RemoteFile: Send + Sync + std::fmt::Debug {
    /// The file's length in bytes.
    fn size(&self) -> u64;
    /// `len` bytes from `start` (one range request).
    fn read_range(&self, start: u64, len: usize) -> std::io::Result<Bytes>;
}

/// A remote file opened with its last bytes ([`RemoteTrace::open_with_tail`]).
pub type FileWithTail = (Arc<dyn RemoteFile>, Bytes);

/// A trace kept remotely: its files by name (`manifest.json`, `events.parquet`, ...).
pub trait RemoteTrace: Send + Sync + std::fmt::Debug {
    /// Where the trace is, for messages (e.g. `s3://bucket/runs/run-1`).
    fn location(&self) -> String;
    /// The whole content of a small file; `Ok(None)` when it does not exist.
    fn get(&self, name: &str) -> Result<Option<Vec<u8>>, TraceError>;
    /// A file for range reads; `Ok(None)` when it does not exist.
    fn open(&self, name: &str) -> Result<Option<Arc<dyn RemoteFile>>, TraceError>;
    /// A file for range reads with its last `tail` bytes (all of it when it is no larger);
    /// `Ok(None)` when it does not exist. A store that can answer both at once (an HTTP suffix
    /// range) should: the default opens the file and then reads its tail, two requests.
    fn open_with_tail(&self, name: &str, tail: usize) -> Result<Option<FileWithTail>, TraceError> {
        let Some(f) = self.open(name)? else {
            return Ok(None);
        };
        let size = f.size();
        let n = (tail as u64).min(size);
        let bytes = f
            .read_range(size - n, n as usize)
            .map_err(|e| TraceError::Invalid(format!("{}/{name}: {e}", self.location())))?;
        Ok(Some((f, bytes)))
    }
}

/// Bytes fetched from the end of a remote file when it is opened: the footer and metadata of
/// any trace file, and the whole of a file this small.
pub const TAIL_BYTES: usize = 512 * 1024;
/// Column chunks closer than this are fetched in one request (the bytes between are read too).
pub const COALESCE_GAP: u64 = 1024 * 1024;
/// A coalesced span grows to at most this (a single larger column chunk is one span).
pub const MAX_SPAN: u64 = 8 * 1024 * 1024;
/// Fetched spans kept per remote file (at least the one being read).
pub const CACHE_BYTES: usize = 8 * 1024 * 1024;
/// A column chunk larger than this is not fetched whole but read in blocks as the reader goes.
const MAX_CHUNK: u64 = 32 * 1024 * 1024;
/// Bytes fetched at least per request of a [`RangeReader`].
const READ_BLOCK: usize = 64 * 1024;

/// A remote Parquet file of an open trace: the file, its tail (fetched at open) and the spans
/// fetched since.
#[derive(Debug)]
pub(crate) struct RemoteParquet {
    file: Arc<dyn RemoteFile>,
    tail: Bytes,
    cache: Mutex<VecDeque<Block>>,
}

/// A fetched span: its first byte, its bytes, and the last row group it holds bytes of.
#[derive(Debug)]
struct Block {
    start: u64,
    bytes: Bytes,
    rg_hi: usize,
}

impl RemoteParquet {
    pub(crate) fn new(file: Arc<dyn RemoteFile>, tail: Bytes) -> RemoteParquet {
        RemoteParquet {
            file,
            tail,
            cache: Mutex::new(VecDeque::new()),
        }
    }

    fn size(&self) -> u64 {
        self.file.size()
    }

    fn tail_start(&self) -> u64 {
        self.size().saturating_sub(self.tail.len() as u64)
    }

    fn with_cache<R>(&self, f: impl FnOnce(&mut VecDeque<Block>) -> R) -> R {
        // a poisoned cache only means a reader panicked: its blocks are still whole
        let mut g = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    /// `start..end` if it is in the tail or a cached span.
    fn cached(&self, start: u64, end: u64) -> Option<Bytes> {
        let t = self.tail_start();
        if start >= t && end <= self.size() {
            return Some(self.tail.slice((start - t) as usize..(end - t) as usize));
        }
        self.with_cache(|c| {
            c.iter()
                .find(|b| start >= b.start && end <= b.start + b.bytes.len() as u64)
                .map(|b| {
                    b.bytes
                        .slice((start - b.start) as usize..(end - b.start) as usize)
                })
        })
    }

    /// Bytes from `start` to the end of the tail or cached span holding `start`.
    fn cached_from(&self, start: u64) -> Option<Bytes> {
        let t = self.tail_start();
        if start >= t && start < self.size() {
            return Some(self.tail.slice((start - t) as usize..));
        }
        self.with_cache(|c| {
            c.iter()
                .find(|b| start >= b.start && start < b.start + b.bytes.len() as u64)
                .map(|b| b.bytes.slice((start - b.start) as usize..))
        })
    }

    /// Fetches `span` (one request) and keeps it, dropping older spans beyond the budget:
    /// those of row groups before the span's first, then the oldest.
    fn fetch(&self, span: &Span) -> std::io::Result<Bytes> {
        let bytes = self
            .file
            .read_range(span.start, (span.end - span.start) as usize)?;
        self.with_cache(|c| {
            let mut total: usize = c.iter().map(|b| b.bytes.len()).sum::<usize>() + bytes.len();
            while total > CACHE_BYTES {
                let i = c.iter().position(|b| b.rg_hi < span.rg_lo).unwrap_or(0);
                match c.remove(i) {
                    Some(b) => total -= b.bytes.len(),
                    None => break,
                }
            }
            c.push_back(Block {
                start: span.start,
                bytes: bytes.clone(),
                rg_hi: span.rg_hi,
            });
        });
        Ok(bytes)
    }
}

/// A coalesced byte range of one read and the row groups it holds bytes of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Span {
    pub start: u64,
    pub end: u64,
    pub rg_lo: usize,
    pub rg_hi: usize,
}

/// Coalesces the byte ranges a read needs, `(row group, range)`, into spans: sorted, merged
/// when the gap is at most [`COALESCE_GAP`] and the span stays within [`MAX_SPAN`].
pub(crate) fn coalesce(mut need: Vec<(usize, Range<u64>)>) -> Vec<Span> {
    need.sort_by_key(|(_, r)| (r.start, r.end));
    let mut out: Vec<Span> = Vec::new();
    for (rg, r) in need {
        if r.start >= r.end {
            continue;
        }
        match out.last_mut() {
            Some(s)
                if r.start <= s.end + COALESCE_GAP && r.end.max(s.end) - s.start <= MAX_SPAN =>
            {
                s.end = s.end.max(r.end);
                s.rg_lo = s.rg_lo.min(rg);
                s.rg_hi = s.rg_hi.max(rg);
            }
            _ => out.push(Span {
                start: r.start,
                end: r.end,
                rg_lo: rg,
                rg_hi: rg,
            }),
        }
    }
    out
}

/// The spans a read of `row_groups` and the root columns `roots` (all when `None`) needs, less
/// what the tail and the cache already hold.
pub(crate) fn plan(
    src: &RemoteParquet,
    meta: &ParquetMetaData,
    row_groups: &[usize],
    roots: Option<&[usize]>,
) -> Vec<Span> {
    let descr = meta.file_metadata().schema_descr();
    let mut need = Vec::new();
    for &rg in row_groups {
        let Some(g) = meta.row_groups().get(rg) else {
            continue;
        };
        for (i, c) in g.columns().iter().enumerate() {
            if roots.is_some_and(|r| !r.contains(&descr.get_column_root_idx(i))) {
                continue;
            }
            let (start, len) = c.byte_range();
            if len > MAX_CHUNK || src.cached(start, start + len).is_some() {
                continue;
            }
            need.push((rg, start..start + len));
        }
    }
    coalesce(need)
}

/// A Parquet file of a trace, local or remote.
#[derive(Debug)]
pub(crate) enum Chunk {
    Local(File),
    /// A remote file and the spans the read on it will need.
    Remote(Arc<RemoteParquet>, Arc<Vec<Span>>),
}

impl Chunk {
    /// `start..end` of a remote file: from the tail or the cache, else by fetching the planned
    /// span holding it, else with one request for just that range.
    fn remote_bytes(
        src: &RemoteParquet,
        spans: &[Span],
        start: u64,
        end: u64,
    ) -> std::io::Result<Bytes> {
        if let Some(b) = src.cached(start, end) {
            return Ok(b);
        }
        if let Some(s) = spans.iter().find(|s| start >= s.start && end <= s.end) {
            let b = src.fetch(s)?;
            return Ok(b.slice((start - s.start) as usize..(end - s.start) as usize));
        }
        src.file.read_range(start, (end - start) as usize)
    }
}

/// A `Read` over a local file from a position, by positional reads: clones of one file handle
/// share its offset, so a seek-and-read would race between threads reading the same file.
struct AtReader {
    file: File,
    pos: u64,
}

impl Read for AtReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = std::os::unix::fs::FileExt::read_at(&self.file, buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// A `Read` over a remote file from a position, fetching blocks of [`READ_BLOCK`] bytes (or
/// what the caller asks for, if more) as it is read: the Parquet page reader reads page headers
/// through it without knowing how far it will go.
struct RangeReader {
    file: Arc<dyn RemoteFile>,
    pos: u64,
    buf: Bytes,
}

impl Read for RangeReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.buf.is_empty() {
            let left = self.file.size().saturating_sub(self.pos) as usize;
            if left == 0 || out.is_empty() {
                return Ok(0);
            }
            let want = out.len().max(READ_BLOCK).min(left);
            self.buf = self.file.read_range(self.pos, want)?;
            self.pos += self.buf.len() as u64;
            if self.buf.is_empty() {
                return Ok(0);
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf[..n]);
        let _ = self.buf.split_to(n);
        Ok(n)
    }
}

/// Reads that may return nothing (the end of the file) in a row before [`EofGuard`] fails: a
/// sound reader stops at the first.
const MAX_EMPTY_READS: u32 = 64;

/// A reader that fails once more than [`MAX_EMPTY_READS`] reads in a row returned nothing.
pub(crate) struct EofGuard<R> {
    inner: R,
    empty: u32,
}

impl<R> EofGuard<R> {
    pub(crate) fn new(inner: R) -> EofGuard<R> {
        EofGuard { inner, empty: 0 }
    }
}

impl<R: Read> Read for EofGuard<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(out)?;
        if n > 0 || out.is_empty() {
            self.empty = 0;
            return Ok(n);
        }
        self.empty += 1;
        if self.empty > MAX_EMPTY_READS {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "read past the end of the file again and again (a damaged page header)",
            ));
        }
        Ok(0)
    }
}

impl Length for Chunk {
    fn len(&self) -> u64 {
        match self {
            Chunk::Local(f) => f.len(),
            Chunk::Remote(r, _) => r.size(),
        }
    }
}

impl ChunkReader for Chunk {
    type T = Box<dyn Read + Send>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        match self {
            Chunk::Local(f) => Ok(Box::new(EofGuard::new(std::io::BufReader::new(AtReader {
                file: f.try_clone()?,
                pos: start,
            })))),
            Chunk::Remote(r, spans) => {
                // what is at hand, then the file goes on in blocks (a page header read never
                // leaves its column chunk, so the blocks are rarely needed)
                let held = match r.cached_from(start) {
                    Some(b) => b,
                    None => match spans.iter().find(|s| start >= s.start && start < s.end) {
                        Some(s) => r
                            .fetch(s)
                            .map_err(|e| ParquetError::External(Box::new(e)))?
                            .slice((start - s.start) as usize..),
                        None => Bytes::new(),
                    },
                };
                let next = start + held.len() as u64;
                Ok(Box::new(EofGuard::new(held.reader().chain(RangeReader {
                    file: r.file.clone(),
                    pos: next,
                    buf: Bytes::new(),
                }))))
            }
        }
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        match self {
            Chunk::Local(f) => {
                // a positional read: threads decoding row groups of the same file share it
                let mut buf = vec![0u8; length];
                let mut got = 0;
                while got < length {
                    match std::os::unix::fs::FileExt::read_at(
                        f,
                        &mut buf[got..],
                        start + got as u64,
                    ) {
                        Ok(0) => break,
                        Ok(n) => got += n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                if got != length {
                    return Err(ParquetError::EOF(format!(
                        "Expected to read {length} bytes, read only {got}"
                    )));
                }
                Ok(buf.into())
            }
            Chunk::Remote(r, spans) => {
                let end = start.saturating_add(length as u64).min(r.size());
                if start >= end {
                    return Ok(Bytes::new());
                }
                Chunk::remote_bytes(r, spans, start, end)
                    .map_err(|e| ParquetError::External(Box::new(e)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_at_the_end_fail_after_a_bounded_number() {
        use std::io::Read;
        let mut r = super::EofGuard::new(&b"ab"[..]);
        let mut buf = [0u8; 4];
        assert_eq!(r.read(&mut buf).unwrap(), 2);
        for _ in 0..super::MAX_EMPTY_READS {
            assert_eq!(r.read(&mut buf).unwrap(), 0);
        }
        let e = r.read(&mut buf).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
        // an empty buffer is not an end of file
        let mut r = super::EofGuard::new(&b""[..]);
        for _ in 0..2 * super::MAX_EMPTY_READS {
            assert_eq!(r.read(&mut []).unwrap(), 0);
        }
    }

    use super::*;
    use crate::{ReadOptions, Trace};
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A "remote" trace served from a local directory, counting the bytes fetched and the
    /// range requests.
    #[derive(Debug)]
    struct DirStore(PathBuf, Arc<AtomicUsize>, Arc<AtomicUsize>);

    #[derive(Debug)]
    struct DirFile(Vec<u8>, Arc<AtomicUsize>, Arc<AtomicUsize>);

    impl RemoteFile for DirFile {
        fn size(&self) -> u64 {
            self.0.len() as u64
        }
        fn read_range(&self, start: u64, len: usize) -> std::io::Result<Bytes> {
            let s = start as usize;
            let e = (s + len).min(self.0.len());
            self.1.fetch_add(e - s, Ordering::Relaxed);
            self.2.fetch_add(1, Ordering::Relaxed);
            Ok(Bytes::copy_from_slice(&self.0[s..e]))
        }
    }

    impl RemoteTrace for DirStore {
        fn location(&self) -> String {
            format!("mem://{}", self.0.display())
        }
        fn get(&self, name: &str) -> Result<Option<Vec<u8>>, TraceError> {
            Ok(std::fs::read(self.0.join(name)).ok())
        }
        fn open(&self, name: &str) -> Result<Option<Arc<dyn RemoteFile>>, TraceError> {
            Ok(std::fs::read(self.0.join(name)).ok().map(|b| {
                Arc::new(DirFile(b, self.1.clone(), self.2.clone())) as Arc<dyn RemoteFile>
            }))
        }
    }

    #[test]
    fn spans_coalesce_near_ranges_up_to_the_span_limit() {
        let mib = 1024 * 1024;
        let s = coalesce(vec![
            (1, 5 * mib..6 * mib),
            (0, 0..100),
            (0, 200..mib),
            (1, 2 * mib..3 * mib),
            (2, 6 * mib..12 * mib),
            (2, 12 * mib..14 * mib),
            (3, 20 * mib..30 * mib),
        ]);
        let spans: Vec<(u64, u64, usize, usize)> = s
            .iter()
            .map(|x| (x.start, x.end, x.rg_lo, x.rg_hi))
            .collect();
        assert_eq!(
            spans,
            vec![
                // gaps of at most 1 MiB merge, across row groups
                (0, 3 * mib, 0, 1),
                // 2 MiB apart: another span
                (5 * mib, 12 * mib, 1, 2),
                // a span stops growing at 8 MiB
                (12 * mib, 14 * mib, 2, 2),
                // a larger chunk is a span of its own
                (20 * mib, 30 * mib, 3, 3),
            ]
        );
    }

    #[test]
    fn a_remote_trace_reads_like_the_local_one_with_range_reads() {
        let d = tempfile::tempdir().unwrap();
        let cfg = crate::gen::GenConfig {
            max_events: Some(400_000),
            log_rate: 2_000.0,
            ..Default::default()
        };
        crate::gen::write_trace(d.path(), &cfg).unwrap();
        let fetched = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let remote = Trace::open_remote(Arc::new(DirStore(
            d.path().to_path_buf(),
            fetched.clone(),
            requests.clone(),
        )))
        .unwrap();
        let local = Trace::open(d.path()).unwrap();
        assert_eq!(remote.manifest(), local.manifest());
        assert_eq!(remote.parquet_facts(), local.parquet_facts());
        let seqs = |t: &Trace, o: &ReadOptions| -> Vec<(i64, u64, String)> {
            t.events(o)
                .unwrap()
                .flat_map(|b| {
                    b.unwrap()
                        .iter()
                        .map(|e| (e.ts_ns, e.seq, e.kind.to_string()))
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        // opening fetched each Parquet file's tail (footer and metadata) in one request
        let opened = requests.load(Ordering::Relaxed);
        assert!(opened <= 2, "{opened} requests to open");
        let all = ReadOptions::default();
        assert_eq!(seqs(&remote, &all), seqs(&local, &all));
        let (Some((_, Some(first), _, row_groups)), _) = (local.parquet_facts(), ()) else {
            panic!("no facts")
        };
        assert!(row_groups >= 6, "{row_groups} row groups");
        // the column chunks were fetched in coalesced spans: fewer requests than row groups
        // (one per page and page header before)
        let read = requests.load(Ordering::Relaxed) - opened;
        assert!(
            read >= 1 && read < row_groups,
            "{read} requests for {row_groups} row groups"
        );
        // a narrow time window fetches a fraction of the file, in one or two requests
        let size = std::fs::metadata(d.path().join(crate::files::EVENTS_PARQUET))
            .unwrap()
            .len() as usize;
        let remote = Trace::open_remote(Arc::new(DirStore(
            d.path().to_path_buf(),
            fetched.clone(),
            requests.clone(),
        )))
        .unwrap();
        fetched.store(0, Ordering::Relaxed);
        requests.store(0, Ordering::Relaxed);
        let window = ReadOptions {
            since_ns: Some(first),
            until_ns: Some(first + 1_000_000_000),
            columns: crate::Columns::NONE,
            ..Default::default()
        };
        assert_eq!(seqs(&remote, &window), seqs(&local, &window));
        let got = fetched.load(Ordering::Relaxed);
        assert!(got > 0 && got < size / 2, "fetched {got} of {size} bytes");
        let n = requests.load(Ordering::Relaxed);
        assert!(n <= 3, "{n} requests for a window");
        // reading the window again is served from the cache
        assert_eq!(seqs(&remote, &window), seqs(&local, &window));
        assert_eq!(requests.load(Ordering::Relaxed), n);
        // a missing trace names the location
        let e = Trace::open_remote(Arc::new(DirStore(d.path().join("nope"), fetched, requests)))
            .unwrap_err()
            .to_string();
        assert!(e.ends_with("nope: not a trace (no manifest.json)"), "{e}");
    }
}
