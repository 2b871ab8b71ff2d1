//! Checksums of the Parquet files of a format-v2 trace, and reading their column chunks only
//! after verifying them.
//!
//! The parquet crate verifies page CRCs when they are present but does not write them, so a
//! trace keeps checksums of its own in `manifest.json` ([`FileChecksums`]): a CRC-32C of every
//! column chunk (per row group, per column) and one of the file's *tail* (everything after the
//! last column chunk: page indexes and the footer), plus the file size. `verify_tail` runs at
//! open, before the footer is parsed, so a damaged footer is never decoded; `VerifiedChunk`
//! fetches the column chunks a read needs, verifies each and serves the reader from the verified
//! bytes, so no damaged byte is ever decoded.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use parquet::errors::ParquetError;
use parquet::file::metadata::ParquetMetaData;
use parquet::file::reader::{ChunkReader, Length};
use serde::{Deserialize, Serialize};

use crate::framed::crc32c;
use crate::remote::Chunk;
use crate::TraceError;

/// The checksums of one Parquet file of the trace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FileChecksums {
    /// `crc32c`.
    pub algorithm: String,
    /// File size in bytes.
    pub size: u64,
    /// Byte offset where the tail (page indexes, footer) starts: the end of the last column chunk.
    pub tail_offset: u64,
    /// CRC-32C of the bytes from `tail_offset` to the end of the file.
    pub tail_crc32c: u32,
    /// CRC-32C of each column chunk, per row group, in schema column order.
    pub row_groups: Vec<Vec<u32>>,
}

/// The algorithm name recorded in [`FileChecksums::algorithm`].
pub const ALGORITHM: &str = "crc32c";

/// The largest file region read in one piece to compute or verify a checksum.
const PIECE: u64 = 8 << 20;

fn crc_of_range(f: &Chunk, start: u64, len: u64) -> Result<u32, ParquetError> {
    let mut d = crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc32Iscsi);
    let mut at = start;
    while at < start + len {
        let n = (start + len - at).min(PIECE);
        let b = f.get_bytes(at, n as usize)?;
        d.update(&b);
        at += n;
    }
    Ok(d.finalize() as u32)
}

/// Byte range `(start, len)` of a column chunk, or `None` when the metadata holds a negative
/// offset or size (parquet's own `byte_range` panics on those).
pub(crate) fn checked_range(
    c: &parquet::file::metadata::ColumnChunkMetaData,
) -> Option<(u64, u64)> {
    let start = match c.dictionary_page_offset() {
        Some(d) => d,
        None => c.data_page_offset(),
    };
    let len = c.compressed_size();
    (start >= 0 && len >= 0 && c.data_page_offset() >= 0).then_some((start as u64, len as u64))
}

/// Byte range `(start, len)` of a column chunk; (0, 0) for one with a negative offset or size
/// (which then fails its checksum or the layout check).
fn chunk_range(md: &ParquetMetaData, rg: usize, col: usize) -> (u64, u64) {
    checked_range(md.row_group(rg).column(col)).unwrap_or((0, 0))
}

/// Computes the checksums of a Parquet file this crate has just written.
pub fn compute(path: &Path) -> Result<FileChecksums, TraceError> {
    let f = std::fs::File::open(path).map_err(|e| TraceError::io(path, e))?;
    let size = f.metadata().map_err(|e| TraceError::io(path, e))?.len();
    let md = parquet::file::metadata::ParquetMetaDataReader::new()
        .parse_and_finish(&f)
        .map_err(|e| TraceError::corrupt(path, e))?;
    let chunk = Chunk::Local(f);
    let err = |e: ParquetError| TraceError::corrupt(path, format!("cannot checksum: {e}"));
    let mut tail_offset = 4u64;
    let mut row_groups = Vec::with_capacity(md.num_row_groups());
    for rg in 0..md.num_row_groups() {
        let mut cols = Vec::with_capacity(md.row_group(rg).num_columns());
        for c in 0..md.row_group(rg).num_columns() {
            let (start, len) = chunk_range(&md, rg, c);
            cols.push(crc_of_range(&chunk, start, len).map_err(err)?);
            tail_offset = tail_offset.max(start + len);
        }
        row_groups.push(cols);
    }
    let tail_crc32c = crc_of_range(&chunk, tail_offset, size - tail_offset).map_err(err)?;
    Ok(FileChecksums {
        algorithm: ALGORITHM.into(),
        size,
        tail_offset,
        tail_crc32c,
        row_groups,
    })
}

/// Checks size, leading magic and the tail checksum before the footer is parsed.
pub(crate) fn verify_tail(f: &Chunk, path: &Path, sums: &FileChecksums) -> Result<(), TraceError> {
    if sums.algorithm != ALGORITHM {
        return Err(TraceError::corrupt(
            path,
            format!(
                "unknown checksum algorithm {:?} in the manifest",
                sums.algorithm
            ),
        ));
    }
    let size = f.len();
    if size != sums.size {
        return Err(TraceError::corrupt(
            path,
            format!(
                "file is {size} bytes, the manifest records {} (truncated or extended)",
                sums.size
            ),
        ));
    }
    if sums.tail_offset < 4 || sums.tail_offset > size {
        return Err(TraceError::corrupt(
            path,
            "the manifest's checksum record does not fit the file",
        ));
    }
    let head = f
        .get_bytes(0, 4)
        .map_err(|e| TraceError::corrupt(path, e))?;
    if &head[..] != b"PAR1" {
        return Err(TraceError::corrupt(
            path,
            "not a parquet file (bad leading magic)",
        ));
    }
    let crc = crc_of_range(f, sums.tail_offset, size - sums.tail_offset)
        .map_err(|e| TraceError::corrupt(path, e))?;
    if crc != sums.tail_crc32c {
        return Err(TraceError::corrupt(
            path,
            format!(
                "checksum mismatch in the footer (bytes {}..{size}): the file is damaged",
                sums.tail_offset
            ),
        ));
    }
    Ok(())
}

/// Checks that the (verified) footer describes the row groups and column chunks the checksums
/// were computed for.
pub(crate) fn verify_layout(
    md: &ParquetMetaData,
    path: &Path,
    sums: &FileChecksums,
) -> Result<(), TraceError> {
    if md.num_row_groups() != sums.row_groups.len() {
        return Err(TraceError::corrupt(
            path,
            format!(
                "{} row groups, the manifest records {}",
                md.num_row_groups(),
                sums.row_groups.len()
            ),
        ));
    }
    for (rg, cols) in sums.row_groups.iter().enumerate() {
        if md.row_group(rg).num_columns() != cols.len() {
            return Err(TraceError::corrupt(
                path,
                format!("row group {rg}: column count differs from the manifest"),
            ));
        }
        for c in 0..cols.len() {
            let (start, len) = chunk_range(md, rg, c);
            if start.checked_add(len).is_none_or(|e| e > sums.tail_offset) {
                return Err(TraceError::corrupt(
                    path,
                    format!("row group {rg}: column chunk {c} lies outside the data"),
                ));
            }
        }
    }
    Ok(())
}

/// A [`ChunkReader`] over the verified column chunks of one row group: reads inside them are
/// served from memory; anything else goes to the file.
#[derive(Clone)]
pub(crate) struct VerifiedChunk {
    base: Arc<Chunk>,
    /// (start, bytes), sorted by start.
    ranges: Vec<(u64, Bytes)>,
}

impl VerifiedChunk {
    /// Fetches and verifies the chunks of `columns` (schema column indexes) of row group `rg`.
    pub(crate) fn fetch(
        base: Arc<Chunk>,
        md: &ParquetMetaData,
        path: &Path,
        sums: &FileChecksums,
        rg: usize,
        columns: &[usize],
    ) -> Result<VerifiedChunk, TraceError> {
        let mut ranges = Vec::with_capacity(columns.len());
        let names = md.file_metadata().schema_descr();
        for &c in columns {
            let (start, len) = chunk_range(md, rg, c);
            let expected = sums
                .row_groups
                .get(rg)
                .and_then(|r| r.get(c))
                .copied()
                .ok_or_else(|| {
                    TraceError::corrupt(path, format!("row group {rg}: no checksum for column {c}"))
                })?;
            let b = base
                .get_bytes(start, len as usize)
                .map_err(|e| TraceError::corrupt(path, e))?;
            if crc32c(&b) != expected {
                return Err(TraceError::corrupt(
                    path,
                    format!(
                        "row group {rg}, column {}: checksum mismatch (bytes {start}..{}): the file is damaged",
                        names.column(c).name(),
                        start + len
                    ),
                ));
            }
            ranges.push((start, b));
        }
        ranges.sort_by_key(|r| r.0);
        Ok(VerifiedChunk { base, ranges })
    }

    /// A reader of one row group of a file without checksums (format v1): every read goes to
    /// the file.
    pub(crate) fn unverified(base: Arc<Chunk>) -> VerifiedChunk {
        VerifiedChunk {
            base,
            ranges: Vec::new(),
        }
    }

    fn find(&self, start: u64) -> Option<&(u64, Bytes)> {
        self.ranges
            .iter()
            .find(|(s, b)| start >= *s && start < s + b.len() as u64)
    }
}

impl Length for VerifiedChunk {
    fn len(&self) -> u64 {
        self.base.len()
    }
}

impl ChunkReader for VerifiedChunk {
    type T = Box<dyn Read + Send>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        match self.find(start) {
            Some((s, b)) => Ok(Box::new(std::io::Cursor::new(
                b.slice((start - s) as usize..),
            ))),
            None => self.base.get_read(start),
        }
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        if let Some((s, b)) = self.find(start) {
            let off = (start - s) as usize;
            if off + length <= b.len() {
                return Ok(b.slice(off..off + length));
            }
        }
        self.base.get_bytes(start, length)
    }
}
