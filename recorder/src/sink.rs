//! The event sink: the one way sensors, the fault injector and the run loop hand events to the
//! trace writer task.
//!
//! [`EventSink`] is a cheap `Clone` (an `Arc` and a channel sender). `emit` never blocks and never
//! fails loudly: the channel is unbounded so a slow disk cannot stall a Docker stream (the daemon
//! drops events for slow readers); the writer task drains it continuously. Counters per source are
//! kept for the progress line and the final summary.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use trace::Event;

/// Counters shared by every clone of a sink.
#[derive(Debug, Default)]
pub struct SinkStats {
    emitted: AtomicU64,
    /// Events the writer has taken off the channel.
    taken: AtomicU64,
    dropped: AtomicU64,
    per_source: Mutex<BTreeMap<String, u64>>,
}

impl SinkStats {
    /// Events handed to the writer so far.
    pub fn emitted(&self) -> u64 {
        self.emitted.load(Ordering::Relaxed)
    }

    /// Events handed over and not yet taken by the writer (how far behind it is).
    pub fn pending(&self) -> u64 {
        self.emitted()
            .saturating_sub(self.taken.load(Ordering::Relaxed))
    }

    /// Events that could not be handed over because the writer had already stopped.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Events per source so far.
    pub fn per_source(&self) -> BTreeMap<String, u64> {
        match self.per_source.lock() {
            Ok(m) => m.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn count(&self, source: &str) {
        self.emitted.fetch_add(1, Ordering::Relaxed);
        let mut m = match self.per_source.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        match m.get_mut(source) {
            Some(n) => *n += 1,
            None => {
                m.insert(source.to_string(), 1);
            }
        }
    }
}

/// The sending half handed to sensors. Cheap to clone; `emit` never blocks.
#[derive(Debug, Clone)]
pub struct EventSink {
    tx: mpsc::UnboundedSender<Event>,
    stats: Arc<SinkStats>,
}

/// The receiving half, owned by the writer task.
#[derive(Debug)]
pub struct EventReceiver {
    rx: mpsc::UnboundedReceiver<Event>,
    stats: Arc<SinkStats>,
}

impl EventSink {
    /// A new sink and the receiver the writer task drains.
    pub fn channel() -> (EventSink, EventReceiver) {
        let (tx, rx) = mpsc::unbounded_channel();
        let stats = Arc::new(SinkStats::default());
        (
            EventSink {
                tx,
                stats: stats.clone(),
            },
            EventReceiver { rx, stats },
        )
    }

    /// Hands one event to the writer. `seq` is assigned by the writer; whatever the event carries
    /// is ignored. Returns false when the writer has stopped (the event is counted as dropped).
    pub fn emit(&self, ev: Event) -> bool {
        let source_counted = ev.source.clone();
        match self.tx.send(ev) {
            Ok(()) => {
                self.stats.count(&source_counted);
                true
            }
            Err(_) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Shared counters (per source, total, dropped).
    pub fn stats(&self) -> &Arc<SinkStats> {
        &self.stats
    }

    /// True when the writer task has gone away.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

impl EventReceiver {
    /// The next event, or `None` once every sink clone is dropped and the queue is empty.
    pub async fn recv(&mut self) -> Option<Event> {
        let ev = self.rx.recv().await;
        if ev.is_some() {
            self.stats.taken.fetch_add(1, Ordering::Relaxed);
        }
        ev
    }

    /// Takes up to `max` queued events without waiting; returns how many were appended to `out`.
    pub fn drain_into(&mut self, out: &mut Vec<Event>, max: usize) -> usize {
        let mut n = 0;
        while n < max {
            match self.rx.try_recv() {
                Ok(ev) => {
                    out.push(ev);
                    n += 1;
                }
                Err(_) => break,
            }
        }
        self.stats.taken.fetch_add(n as u64, Ordering::Relaxed);
        n
    }

    /// Receives up to `max` events, waiting for at least one; 0 means every sender is gone.
    pub async fn recv_many(&mut self, out: &mut Vec<Event>, max: usize) -> usize {
        let n = self.rx.recv_many(out, max).await;
        self.stats.taken.fetch_add(n as u64, Ordering::Relaxed);
        n
    }

    /// Stops accepting new events; queued ones can still be received.
    pub fn close(&mut self) {
        self.rx.close()
    }
}

/// The current time as UTC nanoseconds since the Unix epoch (the trace clock).
pub fn now_ns() -> i64 {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn emit_counts_per_source_and_reaches_receiver() {
        let (sink, mut rx) = EventSink::channel();
        let s2 = sink.clone();
        assert!(sink.emit(Event::new(1, "log", "stdout")));
        assert!(s2.emit(Event::new(2, "docker", "start")));
        assert!(s2.emit(Event::new(3, "log", "stderr")));
        assert_eq!(sink.stats().emitted(), 3);
        assert_eq!(sink.stats().per_source().get("log"), Some(&2));
        assert_eq!(sink.stats().pending(), 3);
        let a = rx.recv().await.map(|e| e.ts_ns);
        assert_eq!(a, Some(1));
        let mut rest = Vec::new();
        assert_eq!(rx.drain_into(&mut rest, 10), 2);
        assert_eq!(sink.stats().pending(), 0, "taken by the writer");
        drop(rx);
        assert!(!sink.emit(Event::new(4, "log", "stdout")));
        assert_eq!(sink.stats().dropped(), 1);
        assert!(sink.is_closed());
    }
}
