//! The framed append-only log of format v2 (`events.arrows`, `packets.arrows`): records with a
//! length and CRC-32C checksums, so that a torn or zero-filled tail is cut at the last good record
//! and reported, and a damaged record in the middle is detected before any byte of it is decoded.
//!
//! Layout (all integers little-endian):
//!
//! ```text
//! file header  16 bytes  "CHAOSLOG" · u32 version (2) · u32 crc32c of the 12 bytes before
//! record       16 bytes  "REC2" · u32 payload length · u32 crc32c of the payload
//!                        · u32 crc32c of the 12 header bytes before
//!              payload   one self-contained Arrow IPC stream: schema, one batch, end marker
//! ```
//!
//! [`FramedLog`] reads records in order, several megabytes of the file at a time: a record's
//! bytes are a slice of that block, and the batch decoded from it points into it (no copy). A
//! record that fails its checks is classified by what
//! follows it: nothing but zeros (or nothing at all) means a tail the writer never completed
//! (power loss, a killed process, a file system that extended the file with zeros), which is cut
//! and reported in [`LogTail`]; anything else is corruption in the middle of the log, an error
//! naming the record's byte offset. Reading stops there: events after a damaged record are not
//! judged without the ones in it (`analyzer finalize --repair` skips the record instead, see
//! docs/trace-format.md).

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use arrow_ipc::writer::StreamWriter;
use arrow_schema::SchemaRef;

use crate::TraceError;

/// The first 8 bytes of a v2 log.
pub const FILE_MAGIC: &[u8; 8] = b"CHAOSLOG";
/// The first 4 bytes of every record header.
pub const RECORD_MAGIC: &[u8; 4] = b"REC2";
/// Size of the file header and of a record header.
pub const HEADER_LEN: u64 = 16;
/// The largest payload a record may declare (a writer batch is far smaller).
pub const MAX_RECORD: u64 = 1 << 30;
/// The buffer of [`FramedLog`]'s reads outside its blocks (the byte-by-byte search for a good
/// record after a damaged one, the check for zeros).
const READ_BUFFER: usize = 64 << 10;

/// The little-endian `u32` at byte `i` of a 16-byte header (`i` at most 12).
fn header_word(h: &[u8; 16], i: usize) -> u32 {
    u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]])
}

/// Whether `h` is an intact record header: the magic, and the checksum of its first 12 bytes.
fn record_header_ok(h: &[u8; 16]) -> bool {
    &h[..4] == RECORD_MAGIC && crc32c(&h[..12]) == header_word(h, 12)
}

/// CRC-32C (Castagnoli) of `buf`.
pub fn crc32c(buf: &[u8]) -> u32 {
    crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, buf) as u32
}

/// True when the file at `path` starts with the v2 log magic.
pub fn is_framed(path: &Path) -> Result<bool, TraceError> {
    let mut f = File::open(path).map_err(|e| TraceError::io(path, e))?;
    let mut head = [0u8; 8];
    let mut got = 0;
    while got < head.len() {
        match f.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) => return Err(TraceError::io(path, e)),
        }
    }
    Ok(got == head.len() && &head == FILE_MAGIC)
}

fn file_header() -> [u8; 16] {
    let mut h = [0u8; 16];
    h[..8].copy_from_slice(FILE_MAGIC);
    h[8..12].copy_from_slice(&2u32.to_le_bytes());
    let c = crc32c(&h[..12]);
    h[12..].copy_from_slice(&c.to_le_bytes());
    h
}

/// Encodes one record (header and payload) holding `batch`.
pub fn encode_record(batch: &RecordBatch) -> Result<Vec<u8>, arrow_schema::ArrowError> {
    let mut payload = Vec::with_capacity(4096);
    {
        let mut w = StreamWriter::try_new(&mut payload, &batch.schema())?;
        w.write(batch)?;
        w.finish()?;
    }
    let mut out = Vec::with_capacity(payload.len() + HEADER_LEN as usize);
    out.extend_from_slice(RECORD_MAGIC);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c(&payload).to_le_bytes());
    let hc = crc32c(&out[..12]);
    out.extend_from_slice(&hc.to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Appends records to a new v2 log. Every [`FramedWriter::write`] reaches the operating system
/// before it returns, so a killed process leaves only whole records (and at most one torn one).
pub struct FramedWriter {
    path: PathBuf,
    file: File,
}

impl FramedWriter {
    /// Creates the log (failing when it exists) and writes the file header.
    pub fn create(path: &Path) -> Result<FramedWriter, TraceError> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| TraceError::io(path, e))?;
        file.write_all(&file_header())
            .map_err(|e| TraceError::io(path, e))?;
        Ok(FramedWriter {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Appends one record holding `batch`.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), TraceError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let rec = encode_record(batch)
            .map_err(|e| TraceError::corrupt(&self.path, format!("cannot encode batch: {e}")))?;
        if rec.len() as u64 > MAX_RECORD + HEADER_LEN {
            return Err(TraceError::Invalid(format!(
                "{}: batch of {} bytes exceeds the record limit",
                self.path.display(),
                rec.len()
            )));
        }
        self.file
            .write_all(&rec)
            .map_err(|e| TraceError::io(&self.path, e))
    }

    /// Forces the log to stable storage.
    pub fn sync(&mut self) -> Result<(), TraceError> {
        self.file
            .sync_data()
            .map_err(|e| TraceError::io(&self.path, e))
    }
}

/// How a log ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogTail {
    /// Every byte belonged to a good record.
    #[default]
    Clean,
    /// The last record was incomplete or damaged and nothing but zeros followed it: `bytes`
    /// bytes from byte `offset` on were cut.
    Torn { offset: u64, bytes: u64 },
    /// The log ended in `bytes` zero bytes from `offset` (a file extended with zeros, e.g. by
    /// power loss): cut.
    ZeroFilled { offset: u64, bytes: u64 },
}

impl LogTail {
    /// Bytes cut from the end of the log.
    pub fn cut_bytes(&self) -> u64 {
        match self {
            LogTail::Clean => 0,
            LogTail::Torn { bytes, .. } | LogTail::ZeroFilled { bytes, .. } => *bytes,
        }
    }

    /// A one-line description for warnings, `None` when clean.
    pub fn describe(&self) -> Option<String> {
        match self {
            LogTail::Clean => None,
            LogTail::Torn { offset, bytes } => Some(format!(
                "the log ends in an incomplete record; {bytes} bytes from byte {offset} were cut"
            )),
            LogTail::ZeroFilled { offset, bytes } => Some(format!(
                "the log ends in {bytes} zero bytes from byte {offset}; they were cut"
            )),
        }
    }
}

/// What a damaged record looked like (for errors and `--repair`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRecord {
    /// Byte offset of the record header.
    pub offset: u64,
    /// What is wrong.
    pub problem: String,
    /// Where the next record starts when the header was intact (so the record can be skipped).
    pub next: Option<u64>,
}

/// Reads a v2 log record by record.
pub struct FramedLog {
    path: PathBuf,
    /// The file; records are read through `block`, the rest (the check for zeros after a
    /// damaged record, the search for the next good one, a short tail) through this buffer.
    file: BufReader<File>,
    /// Where `file` reads next (a read elsewhere seeks first).
    file_pos: u64,
    /// The bytes of the last record's schema message, found to be the log's schema.
    known_schema: Vec<u8>,
    len: u64,
    pos: u64,
    /// The expected schema of every batch.
    schema: SchemaRef,
    /// Set when reading reached a cut tail.
    pub tail: LogTail,
    /// Records read so far.
    pub records: u64,
    done: bool,
    /// With [`FramedLog::drop_behind`]: where the pages read and not yet dropped from the page
    /// cache start.
    drop_from: Option<u64>,
    /// The bytes from `block_at` on, read in one piece ([`BLOCK`] or one record when larger):
    /// records are sliced out of it, their batches' buffers point into it, nothing is copied.
    block: arrow::buffer::Buffer,
    block_at: u64,
}

/// How much of the log one read takes in (several hundred records of a recorder's log).
const BLOCK: u64 = 4 << 20;

/// How many bytes [`FramedLog::drop_behind`] lets pass between two advices.
const DROP_STEP: u64 = 8 << 20;

enum Step {
    Batch(RecordBatch),
    End,
    Bad(BadRecord),
}

impl FramedLog {
    /// Opens a v2 log and checks its file header.
    pub fn open(path: &Path, schema: SchemaRef) -> Result<FramedLog, TraceError> {
        let mut file = File::open(path).map_err(|e| TraceError::io(path, e))?;
        let len = file.metadata().map_err(|e| TraceError::io(path, e))?.len();
        let mut h = [0u8; 16];
        if len < HEADER_LEN {
            return Err(TraceError::corrupt(path, "log file header is incomplete"));
        }
        file.read_exact(&mut h)
            .map_err(|e| TraceError::io(path, e))?;
        if &h[..8] != FILE_MAGIC {
            return Err(TraceError::corrupt(path, "not a framed trace log"));
        }
        let stored = header_word(&h, 12);
        if crc32c(&h[..12]) != stored {
            return Err(TraceError::corrupt(
                path,
                "log file header checksum mismatch",
            ));
        }
        let version = header_word(&h, 8);
        if version != 2 {
            return Err(TraceError::corrupt(
                path,
                format!("unknown log framing version {version}"),
            ));
        }
        Ok(FramedLog {
            path: path.to_path_buf(),
            file: BufReader::with_capacity(READ_BUFFER, file),
            file_pos: HEADER_LEN,
            known_schema: Vec::new(),
            len,
            pos: HEADER_LEN,
            schema,
            tail: LogTail::Clean,
            records: 0,
            done: false,
            drop_from: None,
            block: arrow::buffer::Buffer::from_vec(Vec::<u8>::new()),
            block_at: 0,
        })
    }

    /// Tells the kernel, as the log is read, that the pages read will not be needed again, so
    /// that they leave the page cache while reading instead of all at once when the log is
    /// removed (finalization, which removes the log once the Parquet file is in place: dropping
    /// the pages of a 1 GB log took 0.2 s of one core, after everything else). The pages of
    /// a log synced to disk, as a recorder leaves it, are simply dropped; a dirty page is
    /// written back first. Advice only: without effect where the system has none.
    pub fn drop_behind(mut self) -> FramedLog {
        self.drop_from = Some(0);
        self
    }

    /// Drops the pages before `to` when at least [`DROP_STEP`] bytes were read since the last
    /// time (or, with `all`, whatever was read).
    fn advise_dropped(&mut self, to: u64, all: bool) {
        let Some(from) = self.drop_from else {
            return;
        };
        if to <= from || (!all && to - from < DROP_STEP) {
            return;
        }
        #[cfg(target_os = "linux")]
        {
            let _ = rustix::fs::fadvise(
                self.file.get_ref(),
                from,
                std::num::NonZeroU64::new(to - from),
                rustix::fs::Advice::DontNeed,
            );
        }
        self.drop_from = Some(to);
    }

    /// The expected schema.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read_at(&mut self, at: u64, buf: &mut [u8]) -> Result<(), TraceError> {
        let r = if at == self.file_pos {
            self.file.read_exact(buf)
        } else if self.file_pos != u64::MAX {
            // within the buffer (the byte-by-byte search for a good record after a damaged
            // one), the buffered bytes are kept
            self.file
                .seek_relative(at.wrapping_sub(self.file_pos) as i64)
                .and_then(|_| self.file.read_exact(buf))
        } else {
            self.file
                .seek(SeekFrom::Start(at))
                .and_then(|_| self.file.read_exact(buf))
        };
        // after a failed read the position is unknown: the next read seeks
        self.file_pos = match r {
            Ok(()) => at + buf.len() as u64,
            Err(_) => u64::MAX,
        };
        r.map_err(|e| TraceError::io(&self.path, e))
    }

    /// The `len` bytes at `at` (which the caller knows lie inside the file): a slice of the
    /// block read last when they are in it, else of a new block read from `at` on (into memory
    /// not zero-filled first: the whole log passes through here). The pages before a new block
    /// may leave the page cache ([`FramedLog::drop_behind`]).
    fn bytes_at(&mut self, at: u64, len: usize) -> Result<arrow::buffer::Buffer, TraceError> {
        let in_block = at
            .checked_sub(self.block_at)
            .map(|off| off as usize)
            .filter(|off| off.checked_add(len).is_some_and(|e| e <= self.block.len()));
        if let Some(off) = in_block {
            return Ok(self.block.slice_with_length(off, len));
        }
        let size = (len as u64)
            .max(BLOCK)
            .min(self.len.saturating_sub(at))
            .max(len as u64);
        let mut v = Vec::with_capacity(size as usize);
        let file = self.file.get_mut();
        let r = file.seek(SeekFrom::Start(at)).and_then(|_| {
            let n = file.take(size).read_to_end(&mut v)?;
            if n as u64 == size {
                Ok(())
            } else {
                Err(std::io::ErrorKind::UnexpectedEof.into())
            }
        });
        // the file moved under the buffered reader: its next read seeks
        self.file_pos = u64::MAX;
        r.map_err(|e| TraceError::io(&self.path, e))?;
        self.block = arrow::buffer::Buffer::from_vec(v);
        self.block_at = at;
        self.advise_dropped(at, false);
        Ok(self.block.slice_with_length(0, len))
    }

    /// True when every byte from `from` to the end of the file is zero.
    fn zeros_from(&mut self, from: u64) -> Result<bool, TraceError> {
        let mut at = from;
        let mut buf = vec![0u8; 64 << 10];
        while at < self.len {
            let n = ((self.len - at) as usize).min(buf.len());
            self.read_at(at, &mut buf[..n])?;
            if buf[..n].iter().any(|&b| b != 0) {
                return Ok(false);
            }
            at += n as u64;
        }
        Ok(true)
    }

    /// Reads the record at the current position.
    fn step(&mut self) -> Result<Step, TraceError> {
        let at = self.pos;
        if at >= self.len {
            return Ok(Step::End);
        }
        let rest = self.len - at;
        if rest < HEADER_LEN {
            let mut b = vec![0u8; rest as usize];
            self.read_at(at, &mut b)?;
            self.tail = if b.iter().all(|&x| x == 0) {
                LogTail::ZeroFilled {
                    offset: at,
                    bytes: rest,
                }
            } else {
                LogTail::Torn {
                    offset: at,
                    bytes: rest,
                }
            };
            return Ok(Step::End);
        }
        let mut h = [0u8; 16];
        h.copy_from_slice(&self.bytes_at(at, HEADER_LEN as usize)?);
        if !record_header_ok(&h) {
            if h.iter().all(|&x| x == 0) && self.zeros_from(at)? {
                self.tail = LogTail::ZeroFilled {
                    offset: at,
                    bytes: rest,
                };
                return Ok(Step::End);
            }
            if self.zeros_from(at + HEADER_LEN)? {
                self.tail = LogTail::Torn {
                    offset: at,
                    bytes: rest,
                };
                return Ok(Step::End);
            }
            return Ok(Step::Bad(BadRecord {
                offset: at,
                problem: "record header checksum mismatch".into(),
                next: None,
            }));
        }
        let plen = header_word(&h, 4) as u64;
        if plen > MAX_RECORD {
            return Ok(Step::Bad(BadRecord {
                offset: at,
                problem: format!("record declares {plen} bytes, more than the limit"),
                next: None,
            }));
        }
        let end = at + HEADER_LEN + plen;
        if end > self.len {
            // the writer died while writing this record's payload
            self.tail = LogTail::Torn {
                offset: at,
                bytes: rest,
            };
            return Ok(Step::End);
        }
        let payload = self.bytes_at(at + HEADER_LEN, plen as usize)?;
        if crc32c(&payload) != header_word(&h, 8) {
            if self.zeros_from(end)? {
                self.tail = LogTail::Torn {
                    offset: at,
                    bytes: rest,
                };
                return Ok(Step::End);
            }
            return Ok(Step::Bad(BadRecord {
                offset: at,
                problem: "record payload checksum mismatch".into(),
                next: Some(end),
            }));
        }
        match decode_payload(payload, &self.schema, &mut self.known_schema) {
            Ok(b) => {
                self.pos = end;
                self.records += 1;
                Ok(Step::Batch(b))
            }
            Err(m) => Ok(Step::Bad(BadRecord {
                offset: at,
                problem: m,
                next: Some(end),
            })),
        }
    }

    /// The next batch; `Ok(None)` at the end (check [`FramedLog::tail`]); an error naming the
    /// byte offset of a damaged record in the middle of the log.
    pub fn next_batch(&mut self) -> Result<Option<RecordBatch>, TraceError> {
        match self.next_or_bad()? {
            Ok(b) => Ok(b),
            Err(bad) => {
                self.done = true;
                Err(TraceError::corrupt(
                    &self.path,
                    format!(
                        "record at byte offset {}: {}; the log is damaged in the middle (run `analyzer finalize --repair` to drop the record)",
                        bad.offset, bad.problem
                    ),
                ))
            }
        }
    }

    /// Like [`FramedLog::next_batch`] but hands a damaged record back to the caller, who may
    /// [`FramedLog::skip`] it.
    pub fn next_or_bad(&mut self) -> Result<Result<Option<RecordBatch>, BadRecord>, TraceError> {
        if self.done {
            return Ok(Ok(None));
        }
        loop {
            match self.step()? {
                Step::Batch(b) if b.num_rows() == 0 => continue,
                Step::Batch(b) => return Ok(Ok(Some(b))),
                Step::End => {
                    self.done = true;
                    let len = self.len;
                    self.advise_dropped(len, true);
                    return Ok(Ok(None));
                }
                Step::Bad(bad) => return Ok(Err(bad)),
            }
        }
    }

    /// Continues after a damaged record: at the next record when its header was intact,
    /// otherwise at the next offset where a record with a good header starts (searched byte by
    /// byte). Returns the number of bytes skipped, or `None` when no good record follows (the
    /// rest of the log is dropped).
    pub fn skip(&mut self, bad: &BadRecord) -> Result<Option<u64>, TraceError> {
        if let Some(n) = bad.next {
            self.pos = n;
            return Ok(Some(n - bad.offset));
        }
        let mut at = bad.offset + 1;
        let mut h = [0u8; 16];
        while at + HEADER_LEN <= self.len {
            self.read_at(at, &mut h)?;
            if record_header_ok(&h) {
                self.pos = at;
                return Ok(Some(at - bad.offset));
            }
            at += 1;
        }
        self.done = true;
        Ok(None)
    }
}

/// Decodes a record's payload: exactly one IPC stream whose schema has the expected fields.
/// Arrow's IPC decoder panics on some malformed messages (slicing past a buffer); a payload that
/// passed its checksum can still be malformed when the file was crafted or the writer was
/// broken, so a panic is turned into an error naming the record.
fn decode_payload(
    payload: arrow::buffer::Buffer,
    schema: &SchemaRef,
    known: &mut Vec<u8>,
) -> Result<RecordBatch, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        decode_unchecked(payload, schema, known)
    }))
    .unwrap_or_else(|_| Err("record payload is a malformed arrow ipc message".into()))
}

/// The record's batches, their arrays slices of the payload itself (not copies: the payload
/// is read once, into memory the batch then owns). `known` holds the bytes of the last schema
/// message found to be the log's: a record whose schema message has the same bytes (every
/// record of one writer) is not parsed and compared again.
fn decode_unchecked(
    buf: arrow::buffer::Buffer,
    schema: &SchemaRef,
    known: &mut Vec<u8>,
) -> Result<RecordBatch, String> {
    let bad = |e: &dyn std::fmt::Display| format!("record payload is not an arrow stream: {e}");
    let mut at = 0usize;
    let mut out: Option<RecordBatch> = None;
    let mut first = true;
    let word = |i: usize| -> Result<u32, String> {
        buf.get(i..i.saturating_add(4))
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
            .ok_or_else(|| bad(&"cut in a message length"))
    };
    loop {
        // a message: [0xFFFFFFFF] · i32 length · flatbuffer `Message` · body
        let mut len = word(at)?;
        at += 4;
        if len == 0xFFFF_FFFF {
            len = word(at)?;
            at += 4;
        }
        if len == 0 {
            // the end-of-stream marker
            break;
        }
        let meta = buf
            .get(at..at.saturating_add(len as usize))
            .ok_or_else(|| bad(&"cut in a message"))?;
        at += len as usize;
        if first {
            first = false;
            if meta == known.as_slice() {
                continue;
            }
            let m = arrow_ipc::root_as_message(meta).map_err(|e| bad(&e))?;
            let fb = m
                .header_as_schema()
                .ok_or_else(|| bad(&"the first message is not a schema"))?;
            let s = arrow_ipc::convert::try_fb_to_schema(fb).map_err(|e| bad(&e))?;
            if s.fields() != schema.fields() {
                return Err("record schema differs from the log schema".into());
            }
            *known = meta.to_vec();
            continue;
        }
        let m = arrow_ipc::root_as_message(meta).map_err(|e| bad(&e))?;
        let body_len = usize::try_from(m.bodyLength()).map_err(|e| bad(&e))?;
        let end = at
            .checked_add(body_len)
            .filter(|e| *e <= buf.len())
            .ok_or_else(|| bad(&"cut in a message body"))?;
        let body = buf.slice_with_length(at, body_len);
        at = end;
        let fb = m
            .header_as_record_batch()
            .ok_or_else(|| bad(&"a message after the schema is not a record batch"))?;
        let b = arrow_ipc::reader::read_record_batch(
            &body,
            fb,
            schema.clone(),
            &std::collections::HashMap::new(),
            None,
            &m.version(),
        )
        .map_err(|e| format!("record payload: {e}"))?;
        out = Some(match out {
            None => b,
            Some(prev) => arrow::compute::concat_batches(&prev.schema(), [&prev, &b])
                .map_err(|e| format!("record payload: {e}"))?,
        });
    }
    if first {
        return Err(bad(&"no schema"));
    }
    Ok(out.unwrap_or_else(|| RecordBatch::new_empty(schema.clone())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{schema, Event};

    fn batch(n: usize, base: i64) -> RecordBatch {
        let evs: Vec<Event> = (0..n)
            .map(|i| {
                let mut e = Event::new(base + i as i64, "log", "stdout").message(format!("m{i}"));
                e.seq = (base as u64) + i as u64 + 1;
                e
            })
            .collect();
        schema::events_to_log_batch(evs.iter())
    }

    fn write_log(path: &Path, batches: usize) -> Vec<u64> {
        let mut w = FramedWriter::create(path).unwrap();
        let mut offsets = Vec::new();
        for i in 0..batches {
            offsets.push(std::fs::metadata(path).unwrap().len());
            w.write(&batch(10, i as i64 * 100)).unwrap();
        }
        offsets
    }

    fn read_all(path: &Path) -> (Result<usize, TraceError>, LogTail) {
        let mut r = FramedLog::open(path, schema::event_log_schema()).unwrap();
        let mut rows = 0;
        loop {
            match r.next_batch() {
                Ok(Some(b)) => rows += b.num_rows(),
                Ok(None) => return (Ok(rows), r.tail),
                Err(e) => return (Err(e), r.tail),
            }
        }
    }

    #[test]
    fn records_are_decoded_with_their_schema_checked_once_per_distinct_schema_message() {
        use arrow_array::cast::AsArray;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("log");
        let mut w = FramedWriter::create(&p).unwrap();
        w.write(&batch(3, 0)).unwrap();
        w.write(&batch(2, 100)).unwrap();
        // the same fields with schema metadata: other bytes, the same schema for the log
        let b = batch(4, 200);
        let meta: std::collections::HashMap<String, String> =
            [("k".to_string(), "v".to_string())].into_iter().collect();
        let with_meta = std::sync::Arc::new(b.schema().as_ref().clone().with_metadata(meta));
        w.write(&RecordBatch::try_new(with_meta, b.columns().to_vec()).unwrap())
            .unwrap();
        w.write(&batch(1, 300)).unwrap();
        // other fields after known ones
        let other = RecordBatch::try_from_iter([(
            "x",
            std::sync::Arc::new(arrow_array::Int64Array::from(vec![1i64])) as _,
        )])
        .unwrap();
        w.write(&other).unwrap();
        let mut r = FramedLog::open(&p, schema::event_log_schema()).unwrap();
        let mut messages = Vec::new();
        for _ in 0..4 {
            let b = r.next_batch().unwrap().unwrap();
            assert_eq!(b.schema().fields(), schema::event_log_schema().fields());
            let m = b.column_by_name("message").unwrap().as_string::<i32>();
            messages.extend((0..b.num_rows()).map(|i| m.value(i).to_string()));
        }
        let want: Vec<String> = [3, 2, 4, 1]
            .iter()
            .flat_map(|&n| (0..n).map(|i| format!("m{i}")))
            .collect();
        assert_eq!(messages, want);
        let e = r.next_batch().unwrap_err().to_string();
        assert!(
            e.contains("record schema differs from the log schema"),
            "{e}"
        );
    }

    #[test]
    fn round_trip_and_torn_and_zero_filled_tails() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("log");
        let offs = write_log(&p, 5);
        assert_eq!(read_all(&p).0.unwrap(), 50);
        let len = std::fs::metadata(&p).unwrap().len();
        // torn inside the last record's payload
        let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        f.set_len(len - 7).unwrap();
        let (rows, tail) = read_all(&p);
        assert_eq!(rows.unwrap(), 40);
        assert_eq!(
            tail,
            LogTail::Torn {
                offset: offs[4],
                bytes: len - 7 - offs[4]
            }
        );
        // zeros appended after a complete log
        f.set_len(len).unwrap();
        let mut bytes = std::fs::read(&p).unwrap();
        let last = offs[4] as usize;
        bytes.truncate(len as usize);
        let good = write_log(&d.path().join("again"), 5);
        assert_eq!(good, offs);
        let mut full = std::fs::read(d.path().join("again")).unwrap();
        full.extend(std::iter::repeat_n(0u8, 4096));
        std::fs::write(&p, &full).unwrap();
        let (rows, tail) = read_all(&p);
        assert_eq!(rows.unwrap(), 50);
        assert_eq!(
            tail,
            LogTail::ZeroFilled {
                offset: len,
                bytes: 4096
            }
        );
        // the last record's payload zeroed (its space allocated, its data never written)
        for b in &mut bytes[last + 16..] {
            *b = 0;
        }
        std::fs::write(&p, &bytes).unwrap();
        let (rows, tail) = read_all(&p);
        assert_eq!(rows.unwrap(), 40);
        assert!(matches!(tail, LogTail::Torn { offset, .. } if offset == offs[4]));
    }

    #[test]
    fn every_flipped_byte_before_the_last_record_is_an_error_naming_its_record() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("log");
        let offs = write_log(&p, 4);
        let bytes = std::fs::read(&p).unwrap();
        for pos in 16..offs[3] as usize {
            let mut b = bytes.clone();
            b[pos] ^= 0x20;
            std::fs::write(&p, &b).unwrap();
            let (r, _) = read_all(&p);
            let e = r.expect_err(&format!("flip at {pos} not detected"));
            let rec = offs.iter().rev().find(|&&o| o as usize <= pos).unwrap();
            assert!(
                e.to_string()
                    .contains(&format!("record at byte offset {rec}:")),
                "{pos}: {e}"
            );
        }
    }

    #[test]
    fn skip_resumes_after_a_damaged_record() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("log");
        let offs = write_log(&p, 4);
        let mut bytes = std::fs::read(&p).unwrap();
        // damage the header (length) of the second record: found again by scanning
        bytes[offs[1] as usize + 5] ^= 1;
        // and the payload of the third
        bytes[offs[2] as usize + 40] ^= 1;
        std::fs::write(&p, &bytes).unwrap();
        let mut r = FramedLog::open(&p, schema::event_log_schema()).unwrap();
        let (mut rows, mut skipped) = (0, 0);
        loop {
            match r.next_or_bad().unwrap() {
                Ok(Some(b)) => rows += b.num_rows(),
                Ok(None) => break,
                Err(bad) => {
                    skipped += 1;
                    r.skip(&bad).unwrap();
                }
            }
        }
        assert_eq!((rows, skipped), (20, 2));
    }

    /// A log of several read blocks: every row comes back in order, through records that
    /// straddle a block's end, with the pages dropped behind; a damaged payload across the
    /// first block's end and a damaged header further on are skipped as in a small log.
    #[test]
    fn records_across_read_blocks_read_whole_and_damage_among_them_is_skipped() {
        use arrow_array::cast::AsArray;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("log");
        let mut w = FramedWriter::create(&p).unwrap();
        let mut offs = Vec::new();
        let (records, rows) = (300u64, 150u64);
        for r in 0..records {
            offs.push(std::fs::metadata(&p).unwrap().len());
            let evs: Vec<Event> = (0..rows)
                .map(|i| {
                    let n = r * rows + i;
                    let mut e = Event::new(n as i64, "log", "stdout")
                        .message(format!("{n:>8} {}", "x".repeat((n % 300) as usize)));
                    e.seq = n + 1;
                    e
                })
                .collect();
            w.write(&schema::events_to_log_batch(evs.iter())).unwrap();
        }
        let len = std::fs::metadata(&p).unwrap().len();
        assert!(len > 2 * BLOCK, "{len} bytes");
        // which record holds the first block's end
        let across = offs.iter().rposition(|&o| o < BLOCK).unwrap();
        let read = |log: FramedLog| -> (Vec<u64>, usize) {
            let mut log = log;
            let (mut seqs, mut skipped) = (Vec::new(), 0);
            loop {
                match log.next_or_bad().unwrap() {
                    Ok(Some(b)) => {
                        let seq = b.column_by_name("seq").unwrap();
                        let seq = seq.as_primitive::<arrow_array::types::UInt64Type>();
                        let msg = b.column_by_name("message").unwrap().as_string::<i32>();
                        for i in 0..b.num_rows() {
                            let n = seq.value(i) - 1;
                            assert_eq!(
                                msg.value(i).trim_start().split(' ').next(),
                                Some(&*n.to_string())
                            );
                            assert_eq!(msg.value(i).len(), 9 + (n % 300) as usize);
                        }
                        seqs.extend(seq.values().iter().copied());
                    }
                    Ok(None) => return (seqs, skipped),
                    Err(bad) => {
                        skipped += 1;
                        log.skip(&bad).unwrap();
                    }
                }
            }
        };
        let all: Vec<u64> = (1..=records * rows).collect();
        let open = || FramedLog::open(&p, schema::event_log_schema()).unwrap();
        assert_eq!(read(open()), (all.clone(), 0));
        assert_eq!(read(open().drop_behind()), (all.clone(), 0));
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[BLOCK as usize + 3] ^= 1;
        let header = across + 30;
        bytes[offs[header] as usize + 5] ^= 1;
        std::fs::write(&p, &bytes).unwrap();
        let lost = |r: usize| (r as u64 * rows + 1)..=((r as u64 + 1) * rows);
        let want: Vec<u64> = all
            .iter()
            .copied()
            .filter(|s| !lost(across).contains(s) && !lost(header).contains(s))
            .collect();
        assert_eq!(read(open().drop_behind()), (want, 2));
    }
}
