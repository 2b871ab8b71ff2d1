//! The writer task of a run: a dedicated thread owning the [`TraceWriter`], fed by the
//! [`EventReceiver`] of the run's sink and by the packet channel, flushing on a 100 ms tick, and
//! handing every appended event (with its seq) to the live monitors. [`WriterHandle`] edits the
//! manifest, finishes the trace and reports the first write error.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use trace::{Event, FinalizeSummary, Manifest, PacketRecord, TraceError, TraceWriter};

use crate::sink::EventReceiver;

type ManifestEdit = Box<dyn FnOnce(&mut Manifest) + Send>;

enum WriterCmd {
    Manifest(ManifestEdit),
    Finish(oneshot::Sender<Result<FinalizeSummary, TraceError>>),
}

/// Why the trace could not be finished.
#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    /// Finalization failed.
    #[error(transparent)]
    Trace(#[from] TraceError),
    /// The writer thread is gone; with the first write error when there was one.
    #[error("{}", .0.as_deref().unwrap_or("trace writer stopped"))]
    Stopped(Option<String>),
}

/// Handle on the writer thread.
#[derive(Clone)]
pub struct WriterHandle {
    cmd: mpsc::UnboundedSender<WriterCmd>,
    error: FirstError,
}

impl WriterHandle {
    /// Applies an edit to the manifest (rewritten atomically by the writer).
    pub fn update_manifest(&self, f: impl FnOnce(&mut Manifest) + Send + 'static) {
        let _ = self.cmd.send(WriterCmd::Manifest(Box::new(f)));
    }

    /// Drains every queued event, then finalizes the trace.
    pub async fn finish(&self) -> Result<FinalizeSummary, WriterError> {
        let (tx, rx) = oneshot::channel();
        if self.cmd.send(WriterCmd::Finish(tx)).is_err() {
            return Err(WriterError::Stopped(self.first_error()));
        }
        match rx.await {
            Ok(r) => Ok(r?),
            Err(_) => Err(WriterError::Stopped(self.first_error())),
        }
    }

    /// Resolves once the writer has failed (see [`WriterHandle::first_error`]).
    pub async fn failed(&self) {
        self.error.failed.cancelled().await
    }

    /// The message of the first write error, if any.
    pub fn first_error(&self) -> Option<String> {
        self.error.get()
    }
}

/// The first write error: kept once, and a token cancelled when it happens (a full disk, a
/// removed directory): the writer then writes nothing more and the run ends.
#[derive(Clone, Default)]
struct FirstError {
    message: Arc<Mutex<Option<String>>>,
    failed: CancellationToken,
}

impl FirstError {
    fn note(&self, e: &dyn std::fmt::Display) {
        if let Ok(mut g) = self.message.lock() {
            if g.is_none() {
                *g = Some(e.to_string());
            }
        }
        self.failed.cancel();
    }

    fn get(&self) -> Option<String> {
        match self.message.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn broken(&self) -> bool {
        self.failed.is_cancelled()
    }
}

/// Starts the writer on its own thread. Each of `live` receives every appended event with its
/// seq (for the live monitors of `expect` steps and of halt conditions).
///
/// On the first write error the writer stops writing: it keeps the error, cancels
/// [`WriterHandle::failed`], discards what arrives afterwards and, at `finish`, returns the error
/// without finalizing. The event log then ends at the last record written before the error
/// (a torn record after it is cut by the reader), and nothing is written after a torn record.
pub fn spawn_writer(
    writer: TraceWriter,
    rx: EventReceiver,
    packets: mpsc::UnboundedReceiver<Vec<PacketRecord>>,
    live: Vec<mpsc::UnboundedSender<Event>>,
) -> std::io::Result<WriterHandle> {
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel::<WriterCmd>();
    let error = FirstError::default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    let task = WriterTask {
        writer,
        live,
        error: error.clone(),
        buf: Vec::with_capacity(4096),
    };
    std::thread::Builder::new()
        .name("trace-writer".into())
        .spawn(move || rt.block_on(task.run(rx, packets, cmd_rx)))?;
    Ok(WriterHandle { cmd: cmd_tx, error })
}

/// The state of the writer thread.
struct WriterTask {
    writer: TraceWriter,
    live: Vec<mpsc::UnboundedSender<Event>>,
    error: FirstError,
    buf: Vec<Event>,
}

impl WriterTask {
    async fn run(
        mut self,
        mut rx: EventReceiver,
        mut packets: mpsc::UnboundedReceiver<Vec<PacketRecord>>,
        mut cmd_rx: mpsc::UnboundedReceiver<WriterCmd>,
    ) {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut events_open = true;
        let mut packets_open = true;
        loop {
            tokio::select! {
                biased;
                cmd = cmd_rx.recv() => match cmd {
                    Some(WriterCmd::Manifest(f)) => {
                        if !self.error.broken() {
                            if let Err(e) = self.writer.update_manifest(f) {
                                self.error.note(&e);
                            }
                        }
                    }
                    Some(WriterCmd::Finish(done)) => return self.finish(rx, packets, done),
                    None => {
                        // every handle dropped without finish: flush and leave the log as is
                        if self.error.broken() {
                            std::mem::forget(self.writer);
                        } else {
                            let _ = self.writer.flush();
                        }
                        return;
                    }
                },
                // both lanes (events and the bounded log lane) at once
                n = rx.recv_many(&mut self.buf, 8192), if events_open => {
                    if n == 0 {
                        events_open = false;
                    } else {
                        self.append_all();
                    }
                }
                p = packets.recv(), if packets_open => match p {
                    Some(p) => self.add_packets(p),
                    None => packets_open = false,
                },
                _ = tick.tick() => {
                    if !self.error.broken() {
                        if let Err(e) = self.writer.flush() {
                            self.error.note(&e);
                        }
                    }
                }
            }
        }
    }

    /// Appends the buffered events and hands each, with its seq, to the live monitors.
    fn append_all(&mut self) {
        for ev in self.buf.drain(..) {
            if self.error.broken() {
                // a failed writer writes nothing more (see `spawn_writer`)
                continue;
            }
            if self.live.is_empty() {
                if let Err(e) = self.writer.append(ev) {
                    self.error.note(&e);
                }
                continue;
            }
            let mut copy = ev.clone();
            match self.writer.append(ev) {
                Ok(seq) => {
                    copy.seq = seq;
                    if let Some((last, rest)) = self.live.split_last() {
                        for l in rest {
                            let _ = l.send(copy.clone());
                        }
                        let _ = last.send(copy);
                    }
                }
                Err(e) => self.error.note(&e),
            }
        }
    }

    fn add_packets(&mut self, p: Vec<PacketRecord>) {
        if !self.error.broken() {
            if let Err(e) = self.writer.add_packets(p) {
                self.error.note(&e);
            }
        }
    }

    /// Drains both channels, then finalizes (or, after a write error, reports it).
    fn finish(
        mut self,
        mut rx: EventReceiver,
        mut packets: mpsc::UnboundedReceiver<Vec<PacketRecord>>,
        done: oneshot::Sender<Result<FinalizeSummary, TraceError>>,
    ) {
        rx.close();
        loop {
            self.buf.clear();
            if rx.drain_into(&mut self.buf, 65536) == 0 {
                break;
            }
            self.append_all();
        }
        while let Ok(p) = packets.try_recv() {
            self.add_packets(p);
        }
        if self.error.broken() {
            let _ = done.send(Err(TraceError::Invalid(format!(
                "trace writer failed: {}",
                self.error.get().unwrap_or_default()
            ))));
            // not flushed again on drop: after a failed write the log must end at its last
            // complete record
            std::mem::forget(self.writer);
        } else {
            let _ = done.send(self.writer.finish());
        }
    }
}
