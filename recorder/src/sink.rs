//! The event sink: the one way sensors, the fault injector and the run loop hand events to the
//! trace writer task.
//!
//! [`EventSink`] is a cheap `Clone` (an `Arc` and two channel senders). It has two lanes:
//!
//! - `emit` never blocks and never fails loudly: its channel is unbounded so a slow disk cannot
//!   stall a Docker event stream (the daemon drops events for slow readers); the writer task
//!   drains it continuously.
//! - `emit_log` (container log lines) waits while [`LOG_QUEUE`] lines are queued: a container
//!   flooding its log faster than the trace can be written slows its follower down instead of
//!   filling memory. Nothing is lost by waiting: the daemon keeps the log, and the follower's
//!   stream simply lags behind it (the daemon stops reading the log file while the stream is not
//!   read).
//!
//! Counters per source are kept for the progress line and the final summary.

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

/// How many log lines may wait for the writer before [`EventSink::emit_log`] waits.
pub const LOG_QUEUE: usize = 4096;

/// The sending half handed to sensors. Cheap to clone; `emit` never blocks.
#[derive(Debug, Clone)]
pub struct EventSink {
    tx: mpsc::UnboundedSender<Event>,
    logs: mpsc::Sender<Event>,
    stats: Arc<SinkStats>,
}

/// The receiving half, owned by the writer task.
#[derive(Debug)]
pub struct EventReceiver {
    rx: mpsc::UnboundedReceiver<Event>,
    logs: mpsc::Receiver<Event>,
    events_done: bool,
    logs_done: bool,
    stats: Arc<SinkStats>,
}

impl EventSink {
    /// A new sink and the receiver the writer task drains.
    pub fn channel() -> (EventSink, EventReceiver) {
        Self::with_log_queue(LOG_QUEUE)
    }

    /// A new sink whose log lane holds at most `log_queue` lines (at least 1).
    pub fn with_log_queue(log_queue: usize) -> (EventSink, EventReceiver) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (ltx, lrx) = mpsc::channel(log_queue.max(1));
        let stats = Arc::new(SinkStats::default());
        (
            EventSink {
                tx,
                logs: ltx,
                stats: stats.clone(),
            },
            EventReceiver {
                rx,
                logs: lrx,
                events_done: false,
                logs_done: false,
                stats,
            },
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

    /// Hands one log line to the writer through the bounded log lane, waiting while it is full
    /// (backpressure on the log follower). Returns false when the writer has stopped.
    pub async fn emit_log(&self, ev: Event) -> bool {
        let source_counted = ev.source.clone();
        match self.logs.send(ev).await {
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

    /// Takes up to `max` queued events of each lane without waiting; returns how many were
    /// appended to `out`.
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
        let mut l = 0;
        while l < max {
            match self.logs.try_recv() {
                Ok(ev) => {
                    out.push(ev);
                    l += 1;
                }
                Err(_) => break,
            }
        }
        self.stats
            .taken
            .fetch_add((n + l) as u64, Ordering::Relaxed);
        n + l
    }

    /// Receives up to `max` events of each lane, waiting for at least one on either; 0 means
    /// every sender of both lanes is gone and both are empty.
    pub async fn recv_many(&mut self, out: &mut Vec<Event>, max: usize) -> usize {
        use std::task::Poll;
        let n = std::future::poll_fn(|cx| {
            let mut got = 0;
            if !self.events_done {
                match self.rx.poll_recv_many(cx, out, max) {
                    Poll::Ready(0) => self.events_done = true,
                    Poll::Ready(n) => got += n,
                    Poll::Pending => {}
                }
            }
            if !self.logs_done {
                match self.logs.poll_recv_many(cx, out, max) {
                    Poll::Ready(0) => self.logs_done = true,
                    Poll::Ready(n) => got += n,
                    Poll::Pending => {}
                }
            }
            if got > 0 || (self.events_done && self.logs_done) {
                Poll::Ready(got)
            } else {
                Poll::Pending
            }
        })
        .await;
        self.stats.taken.fetch_add(n as u64, Ordering::Relaxed);
        n
    }

    /// Stops accepting new events on both lanes; queued ones can still be received.
    pub fn close(&mut self) {
        self.rx.close();
        self.logs.close();
    }
}

/// The trace clock, for every event source of the recorder.
pub use trace::time::now_ns;

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

    #[tokio::test]
    async fn the_log_lane_waits_when_full_and_loses_nothing() {
        let (sink, mut rx) = EventSink::with_log_queue(4);
        for i in 0..4 {
            assert!(sink.emit_log(Event::new(i, "log", "stdout")).await);
        }
        // full: the fifth line waits until the writer takes some
        let s2 = sink.clone();
        let fifth = tokio::spawn(async move { s2.emit_log(Event::new(4, "log", "stdout")).await });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(
            !fifth.is_finished(),
            "a full log lane must make the sender wait"
        );
        // the unbounded lane is not held up by the full log lane
        assert!(sink.emit(Event::new(9, "docker", "start")));
        let mut out = Vec::new();
        assert_eq!(
            rx.recv_many(&mut out, 2).await,
            3,
            "2 log lines and the event"
        );
        assert!(matches!(fifth.await, Ok(true)));
        rx.drain_into(&mut out, 100);
        let mut ts: Vec<i64> = out.iter().map(|e| e.ts_ns).collect();
        ts.sort_unstable();
        assert_eq!(ts, vec![0, 1, 2, 3, 4, 9]);
        assert_eq!(sink.stats().emitted(), 6);
    }
}
