//! The crash-safe trace writer.
//!
//! While recording, events are buffered briefly and appended as checksummed records (one Arrow
//! IPC stream each, see [`crate::framed`]) to `events.arrows` (packets to `packets.arrows`). A buffer is written and flushed to the file when
//! its oldest event is 250 ms old (checked on every append), when it holds
//! [`TraceWriter::MAX_BUFFERED`] events, or when the owner calls [`TraceWriter::flush`] on its
//! tick. A process killed at any instant leaves a log whose complete records are all readable;
//! [`TraceWriter::finish`] (or [`crate::finalize()`] for a killed writer) sorts the log and writes
//! the Parquet files.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::finalize::FinalizeSummary;
use crate::framed::FramedWriter;
use crate::{files, schema, Event, Manifest, PacketRecord, TraceError};

type LogWriter = FramedWriter;

/// Writes one trace directory. Owned by a single task.
pub struct TraceWriter {
    dir: PathBuf,
    manifest: Manifest,
    log: Option<LogWriter>,
    packets: Option<LogWriter>,
    buf: Vec<Event>,
    oldest: Option<Instant>,
    next_seq: u64,
    flush_interval: Duration,
}

fn open_log(path: &Path) -> Result<LogWriter, TraceError> {
    FramedWriter::create(path)
}

/// Writes packet summaries to `<dir>/packets.arrows` outside a running writer, numbering them
/// from `first_seq` (above every event's `seq`), so that [`crate::finalize()`] sorts them into
/// `packets.parquet`. For a trace whose writer died before summarising its captures
/// (`analyzer finalize` summarises the pcap files it finds). Fails if the log already exists.
/// Returns the number of packets written.
pub fn spool_packets(
    dir: &Path,
    first_seq: u64,
    packets: impl IntoIterator<Item = PacketRecord>,
) -> Result<u64, TraceError> {
    let path = dir.join(files::PACKETS_LOG);
    let mut log = open_log(&path)?;
    let mut seq = first_seq;
    let mut chunk: Vec<PacketRecord> = Vec::with_capacity(4096);
    let mut it = packets.into_iter().peekable();
    while it.peek().is_some() {
        chunk.clear();
        for mut p in it.by_ref().take(65536) {
            p.seq = seq;
            seq += 1;
            chunk.push(p);
        }
        let batch = crate::packets::packets_to_log_batch(&chunk);
        log.write(&batch)?;
    }
    Ok(seq - first_seq)
}

impl TraceWriter {
    /// The largest number of events buffered before a write.
    pub const MAX_BUFFERED: usize = 8192;
    /// The longest an event stays buffered (checked on append; call [`TraceWriter::flush`] on a
    /// timer to bound it when events stop arriving).
    pub const FLUSH_INTERVAL: Duration = Duration::from_millis(250);

    /// Creates the trace directory (and parents), writes the manifest and starts the event log.
    /// Fails if the directory already holds a trace.
    pub fn create(dir: &Path, mut manifest: Manifest) -> Result<TraceWriter, TraceError> {
        std::fs::create_dir_all(dir).map_err(|e| TraceError::io(dir, e))?;
        for existing in [files::EVENTS_LOG, files::EVENTS_PARQUET] {
            let p = dir.join(existing);
            if p.exists() {
                return Err(TraceError::Invalid(format!(
                    "{}: a trace already exists here",
                    p.display()
                )));
            }
        }
        if manifest.format_version == 0 {
            manifest.format_version = crate::FORMAT_VERSION;
        }
        manifest.check_version(dir)?;
        manifest.write_atomic(dir)?;
        let log = open_log(&dir.join(files::EVENTS_LOG))?;
        Ok(TraceWriter {
            dir: dir.to_path_buf(),
            manifest,
            log: Some(log),
            packets: None,
            buf: Vec::with_capacity(1024),
            oldest: None,
            next_seq: 1,
            flush_interval: Self::FLUSH_INTERVAL,
        })
    }

    /// The trace directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The manifest as last written.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Appends an event, assigning and returning its `seq`. Writes the buffer out when its oldest
    /// event is [`Self::FLUSH_INTERVAL`] old or it is full.
    pub fn append(&mut self, mut ev: Event) -> Result<u64, TraceError> {
        let seq = self.next_seq;
        self.next_seq += 1;
        ev.seq = seq;
        if self.buf.is_empty() {
            self.oldest = Some(Instant::now());
        }
        self.buf.push(ev);
        let old = self
            .oldest
            .is_some_and(|t| t.elapsed() >= self.flush_interval);
        if old || self.buf.len() >= Self::MAX_BUFFERED {
            self.flush()?;
        }
        Ok(seq)
    }

    /// Writes buffered events to the log and flushes it to the operating system.
    pub fn flush(&mut self) -> Result<(), TraceError> {
        let path = self.dir.join(files::EVENTS_LOG);
        let Some(log) = self.log.as_mut() else {
            return Err(TraceError::Invalid(format!(
                "{}: writer already finished",
                path.display()
            )));
        };
        if !self.buf.is_empty() {
            let batch = schema::events_to_log_batch(self.buf.iter());
            log.write(&batch)?;
            self.buf.clear();
            self.oldest = None;
        }
        Ok(())
    }

    /// Number of events appended so far.
    pub fn appended(&self) -> u64 {
        self.next_seq - 1
    }

    /// Applies `f` to the manifest and rewrites `manifest.json` atomically.
    pub fn update_manifest(&mut self, f: impl FnOnce(&mut Manifest)) -> Result<(), TraceError> {
        f(&mut self.manifest);
        self.manifest.write_atomic(&self.dir)
    }

    /// Spools packet summaries (assigning their `seq`s from the event sequence) to
    /// `packets.arrows`; they are sorted into `packets.parquet` when the trace is finalized.
    pub fn add_packets(
        &mut self,
        packets: impl IntoIterator<Item = PacketRecord>,
    ) -> Result<(), TraceError> {
        let path = self.dir.join(files::PACKETS_LOG);
        let mut chunk: Vec<PacketRecord> = Vec::with_capacity(4096);
        let mut it = packets.into_iter().peekable();
        while it.peek().is_some() {
            chunk.clear();
            for mut p in it.by_ref().take(65536) {
                p.seq = self.next_seq;
                self.next_seq += 1;
                chunk.push(p);
            }
            if self.packets.is_none() {
                self.packets = Some(open_log(&path)?);
            }
            if let Some(w) = self.packets.as_mut() {
                let batch = crate::packets::packets_to_log_batch(&chunk);
                w.write(&batch)?;
            }
        }
        Ok(())
    }

    /// `<trace>/pcap`, created on demand.
    pub fn pcap_dir(&self) -> PathBuf {
        let p = self.dir.join(files::PCAP_DIR);
        // Creation errors surface when the caller writes into it, naming the file.
        let _ = std::fs::create_dir_all(&p);
        p
    }

    /// Flushes, closes the logs and finalizes the trace: sorts events and packets and writes the
    /// Parquet files (removing the logs once the Parquet files are complete).
    pub fn finish(mut self) -> Result<FinalizeSummary, TraceError> {
        self.close_logs()?;
        crate::finalize::finalize(&self.dir)
    }

    fn close_logs(&mut self) -> Result<(), TraceError> {
        self.flush()?;
        // every record reached the file when it was written; make them durable before sorting
        if let Some(mut log) = self.log.take() {
            log.sync()?;
        }
        if let Some(mut w) = self.packets.take() {
            w.sync()?;
        }
        Ok(())
    }
}

impl Drop for TraceWriter {
    /// A writer dropped without `finish` (an error path, a panic) still writes what it buffered,
    /// leaving an unfinalized but complete log.
    fn drop(&mut self) {
        if self.log.is_some() {
            let _ = self.close_logs();
        }
    }
}
