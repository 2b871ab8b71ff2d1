//! Traces kept elsewhere than a local directory (object storage): the two small traits a store
//! implements ([`RemoteTrace`] for the trace, [`RemoteFile`] for random access to one file), and
//! the Parquet [`ChunkReader`] over either a local file or a remote one, so the streaming reader
//! reads a remote `events.parquet` with range requests (footer, then only the column chunks of the
//! row groups it needs) instead of downloading it. This crate knows no storage protocol: the
//! analyzer implements the traits for `s3://`.

use std::fs::File;
use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;
use parquet::errors::ParquetError;
use parquet::file::reader::{ChunkReader, Length};

use crate::TraceError;

/// Random access to the bytes of one remote file.
pub trait RemoteFile: Send + Sync + std::fmt::Debug {
    /// The file's length in bytes.
    fn size(&self) -> u64;
    /// `len` bytes from `start` (one range request).
    fn read_range(&self, start: u64, len: usize) -> std::io::Result<Bytes>;
}

/// A trace kept remotely: its files by name (`manifest.json`, `events.parquet`, ...).
pub trait RemoteTrace: Send + Sync + std::fmt::Debug {
    /// Where the trace is, for messages (e.g. `s3://bucket/runs/run-1`).
    fn location(&self) -> String;
    /// The whole content of a small file; `Ok(None)` when it does not exist.
    fn get(&self, name: &str) -> Result<Option<Vec<u8>>, TraceError>;
    /// A file for range reads; `Ok(None)` when it does not exist.
    fn open(&self, name: &str) -> Result<Option<Arc<dyn RemoteFile>>, TraceError>;
}

/// A Parquet file of a trace, local or remote.
#[derive(Debug)]
pub(crate) enum Chunk {
    Local(File),
    Remote(Arc<dyn RemoteFile>),
}

/// Bytes fetched at least per request of a [`RangeReader`].
const READ_BLOCK: usize = 64 * 1024;

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

impl Length for Chunk {
    fn len(&self) -> u64 {
        match self {
            Chunk::Local(f) => f.len(),
            Chunk::Remote(r) => r.size(),
        }
    }
}

impl ChunkReader for Chunk {
    type T = Box<dyn Read + Send>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        match self {
            Chunk::Local(f) => Ok(Box::new(f.get_read(start)?)),
            Chunk::Remote(r) => Ok(Box::new(RangeReader {
                file: r.clone(),
                pos: start,
                buf: Bytes::new(),
            })),
        }
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        match self {
            Chunk::Local(f) => f.get_bytes(start, length),
            Chunk::Remote(r) => r
                .read_range(start, length)
                .map_err(|e| ParquetError::External(Box::new(e))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ReadOptions, Trace};
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A "remote" trace served from a local directory, counting the bytes fetched.
    #[derive(Debug)]
    struct DirStore(PathBuf, Arc<AtomicUsize>);

    #[derive(Debug)]
    struct DirFile(Vec<u8>, Arc<AtomicUsize>);

    impl RemoteFile for DirFile {
        fn size(&self) -> u64 {
            self.0.len() as u64
        }
        fn read_range(&self, start: u64, len: usize) -> std::io::Result<Bytes> {
            let s = start as usize;
            let e = (s + len).min(self.0.len());
            self.1.fetch_add(e - s, Ordering::Relaxed);
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
            Ok(std::fs::read(self.0.join(name))
                .ok()
                .map(|b| Arc::new(DirFile(b, self.1.clone())) as Arc<dyn RemoteFile>))
        }
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
        let remote =
            Trace::open_remote(Arc::new(DirStore(d.path().to_path_buf(), fetched.clone())))
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
        let all = ReadOptions::default();
        assert_eq!(seqs(&remote, &all), seqs(&local, &all));
        // a narrow time window fetches a fraction of the file
        let size = std::fs::metadata(d.path().join(crate::files::EVENTS_PARQUET))
            .unwrap()
            .len() as usize;
        fetched.store(0, Ordering::Relaxed);
        let (Some((_, Some(first), _, _)), _) = (local.parquet_facts(), ()) else {
            panic!("no facts")
        };
        let window = ReadOptions {
            since_ns: Some(first),
            until_ns: Some(first + 1_000_000_000),
            columns: crate::Columns::NONE,
            ..Default::default()
        };
        assert_eq!(seqs(&remote, &window), seqs(&local, &window));
        let got = fetched.load(Ordering::Relaxed);
        assert!(got > 0 && got < size / 2, "fetched {got} of {size} bytes");
        // a missing trace names the location
        let e = Trace::open_remote(Arc::new(DirStore(d.path().join("nope"), fetched)))
            .unwrap_err()
            .to_string();
        assert!(e.ends_with("nope: not a trace (no manifest.json)"), "{e}");
    }
}
