//! Container logs: the pure line logic (daemon timestamps, partial lines, de-duplication across
//! re-attachments) and the follower task that streams one container's logs into the sink,
//! re-attaching after a restart with nothing lost and nothing duplicated.
//!
//! With `timestamps=true` every log entry the daemon returns starts with its RFC 3339 nanosecond
//! timestamp and a space. A non-TTY container's stream is multiplexed into stdout and stderr
//! frames, one entry each; an entry without a trailing newline is a partial line (the daemon
//! splits long lines, or the program had not finished the line) and is buffered until the rest
//! arrives or the stream ends. A TTY container's stream is raw (kind `tty`), lines end in `\r\n`.
//!
//! A line is buffered up to [`MAX_LINE_BYTES`] per stream: a longer one (or one that never ends)
//! is emitted in pieces of at most that size as it arrives, each piece's event carrying
//! `data = {"part": n, "continues": bool}` (docs/sensors.md, *Long lines*); no byte is dropped.
//!
//! Re-attaching uses `since` (whole seconds in this API) and then skips entries already seen:
//! every entry older than the last one seen, and as many entries stamped exactly like the last one
//! as were seen before.
//!
//! A stream that breaks or closes while its container still runs (a daemon restart, a proxy
//! cutting long-lived connections) is a gap: the follower reads the log again from `since` (the
//! daemon kept what was written meanwhile) and records one `recorder`/`stream_gap` event per gap
//! when the stream delivers again (see [`StreamGap`]).
//!
//! Lines go to the sink's bounded log lane ([`EventSink::emit_log`]): when the writer falls
//! behind, the follower waits and the daemon keeps the rest.

use std::time::Duration;

use bollard::container::LogOutput;
use bollard::query_parameters::LogsOptionsBuilder;
use bollard::Docker;
use futures_util::StreamExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use trace::Event;

use crate::sink::{now_ns, EventSink};

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamKind {
    Stdout,
    Stderr,
    /// A TTY container: one raw stream, no stdout/stderr split.
    Tty,
}

impl StreamKind {
    /// The event `kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            StreamKind::Stdout => "stdout",
            StreamKind::Stderr => "stderr",
            StreamKind::Tty => "tty",
        }
    }

    fn index(self) -> usize {
        match self {
            StreamKind::Stdout => 0,
            StreamKind::Stderr => 1,
            StreamKind::Tty => 2,
        }
    }
}

/// The most bytes of one log line buffered per stream, and so the longest piece one event
/// carries: 1 MiB. A longer line is emitted in pieces.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// One complete log line, or one piece of a line longer than the limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// The daemon's timestamp of the (first part of the) line or piece.
    pub ts_ns: i64,
    pub kind: StreamKind,
    pub line: String,
    /// 0 for a whole line; the number of the piece (from 1) of a line emitted in pieces.
    pub part: u32,
    /// More pieces of the same line follow.
    pub continues: bool,
}

impl LogLine {
    /// The event's `data`: the piece marker of a line emitted in pieces, `None` for a whole line.
    pub fn data(&self) -> Option<serde_json::Value> {
        (self.part > 0).then(|| serde_json::json!({"part": self.part, "continues": self.continues}))
    }
}

/// The line being assembled on one stream.
#[derive(Debug)]
struct Pending {
    /// Timestamp of the bytes at the start of `buf`.
    ts: i64,
    buf: Vec<u8>,
    /// Pieces of this line already emitted.
    parts: u32,
}

/// Parses the daemon's RFC 3339 timestamp at the start of an entry; returns it and the rest
/// (after the separating space).
pub fn split_timestamp(entry: &[u8]) -> Option<(i64, &[u8])> {
    let sp = entry.iter().take(40).position(|b| *b == b' ')?;
    let ts = std::str::from_utf8(&entry[..sp]).ok()?;
    if !ts.as_bytes().first().is_some_and(u8::is_ascii_digit) {
        return None;
    }
    let ns = trace::time::parse_rfc3339(ts).ok()?;
    Some((ns, &entry[sp + 1..]))
}

/// Where a follower is in a container's log: the timestamp of the last entry taken and how many
/// entries carried exactly that timestamp. Survives re-attachments.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogPosition {
    pub last_ts: i64,
    pub count_at_last: u64,
}

impl LogPosition {
    /// The `since` to ask for when re-attaching (whole seconds, rounded down).
    pub fn since_secs(&self) -> i32 {
        if self.last_ts <= 0 {
            0
        } else {
            i32::try_from(self.last_ts.div_euclid(1_000_000_000)).unwrap_or(i32::MAX)
        }
    }

    fn advance(&mut self, ts: i64) {
        if ts == self.last_ts {
            self.count_at_last += 1;
        } else if ts > self.last_ts {
            self.last_ts = ts;
            self.count_at_last = 1;
        }
    }
}

/// De-duplication for one attachment: skips entries the previous attachments already took.
#[derive(Debug, Clone)]
pub struct Replay {
    skip_ts: i64,
    skip_n: u64,
    seen_at_skip_ts: u64,
}

impl Replay {
    /// Starts a new attachment from a position.
    pub fn new(pos: &LogPosition) -> Replay {
        Replay {
            skip_ts: pos.last_ts,
            skip_n: pos.count_at_last,
            seen_at_skip_ts: 0,
        }
    }

    /// Whether an entry with this timestamp is new (and then the position advances).
    pub fn admit(&mut self, ts: i64, pos: &mut LogPosition) -> bool {
        if ts < self.skip_ts {
            return false;
        }
        if ts == self.skip_ts {
            self.seen_at_skip_ts += 1;
            if self.seen_at_skip_ts <= self.skip_n {
                return false;
            }
        }
        pos.advance(ts);
        true
    }
}

/// Turns frames into complete lines: strips timestamps, joins partial entries (up to
/// `max_line` bytes, then in pieces), de-duplicates.
#[derive(Debug)]
pub struct LineAssembler {
    pending: [Option<Pending>; 3],
    /// The last piece of this stream ended without a newline and may continue in raw bytes
    /// (a raw TTY stream cut at an arbitrary byte).
    open: [bool; 3],
    /// Bytes of a raw piece too short to tell whether it starts with a timestamp.
    raw: [Vec<u8>; 3],
    pub position: LogPosition,
    replay: Option<Replay>,
    /// The most bytes of a line kept before a piece is emitted.
    max_line: usize,
}

impl Default for LineAssembler {
    fn default() -> LineAssembler {
        LineAssembler::with_max_line(MAX_LINE_BYTES)
    }
}

impl LineAssembler {
    /// A new assembler starting at the beginning of the log.
    pub fn new() -> LineAssembler {
        LineAssembler::default()
    }

    /// A new assembler that emits lines longer than `max_line` bytes (at least 4) in pieces.
    pub fn with_max_line(max_line: usize) -> LineAssembler {
        LineAssembler {
            pending: Default::default(),
            open: [false; 3],
            raw: Default::default(),
            position: LogPosition::default(),
            replay: None,
            max_line: max_line.max(4),
        }
    }

    /// Appends `bytes` (stamped `ts`) to the line pending on stream `kind`, emitting a piece into
    /// `out` whenever the line is at `max_line` bytes and more follow.
    fn append(&mut self, kind: StreamKind, ts: i64, mut bytes: &[u8], out: &mut Vec<LogLine>) {
        let max = self.max_line;
        let p = self.pending[kind.index()].get_or_insert_with(|| Pending {
            ts,
            buf: Vec::new(),
            parts: 0,
        });
        loop {
            let take = (max - p.buf.len().min(max)).min(bytes.len());
            p.buf.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if bytes.is_empty() {
                return;
            }
            // full, and the line goes on: emit what is buffered, cut at a UTF-8 boundary
            let cut = utf8_cut(&p.buf);
            let rest = p.buf.split_off(cut);
            p.parts += 1;
            let piece = std::mem::replace(&mut p.buf, rest);
            out.push(LogLine {
                ts_ns: p.ts,
                kind,
                line: lossy(piece),
                part: p.parts,
                continues: true,
            });
            p.ts = ts;
        }
    }

    /// Emits the line pending on stream `kind` (its last piece when it was emitted in pieces).
    fn finish_line(&mut self, kind: StreamKind, out: &mut Vec<LogLine>) {
        if let Some(p) = self.pending[kind.index()].take() {
            let part = if p.parts > 0 { p.parts + 1 } else { 0 };
            out.push(make_line(p.ts, kind, p.buf, part));
        }
    }

    /// Begins a new attachment: flushes what is pending (the old stream ended) into `out` and arms
    /// de-duplication against everything taken so far.
    pub fn reattach(&mut self, out: &mut Vec<LogLine>) {
        self.flush(out);
        self.replay = Some(Replay::new(&self.position));
    }

    /// Feeds one frame of the given stream. `fallback_ts` stamps entries without a timestamp.
    pub fn push(
        &mut self,
        kind: StreamKind,
        frame: &[u8],
        fallback_ts: i64,
        out: &mut Vec<LogLine>,
    ) {
        let i = kind.index();
        for piece in frame.split_inclusive(|b| *b == b'\n') {
            let joined;
            let piece: &[u8] = if self.raw[i].is_empty() {
                piece
            } else {
                let mut v = std::mem::take(&mut self.raw[i]);
                v.extend_from_slice(piece);
                joined = v;
                &joined
            };
            let complete = piece.last() == Some(&b'\n');
            let body = if complete {
                &piece[..piece.len() - 1]
            } else {
                piece
            };
            let stamped = split_timestamp(body);
            let continuation = self.open[i] && self.pending[i].is_some();
            if stamped.is_none() && !complete && !continuation && body.len() < 40 {
                // a raw stream cut inside the timestamp: wait for the rest
                self.raw[i] = body.to_vec();
                continue;
            }
            match stamped {
                None if continuation => {
                    let ts = self.pending[i].as_ref().map_or(fallback_ts, |p| p.ts);
                    self.append(kind, ts, body, out);
                }
                _ => {
                    let (ts, text) = stamped.unwrap_or((fallback_ts, body));
                    let admitted = match self.replay.as_mut() {
                        Some(r) => r.admit(ts, &mut self.position),
                        None => {
                            self.position.advance(ts);
                            true
                        }
                    };
                    if !admitted {
                        self.open[i] = false;
                        continue;
                    }
                    self.append(kind, ts, text, out);
                }
            }
            self.open[i] = !complete;
            if complete {
                self.finish_line(kind, out);
            }
        }
    }

    /// Emits every pending partial line (the stream ended).
    pub fn flush(&mut self, out: &mut Vec<LogLine>) {
        for kind in [StreamKind::Stdout, StreamKind::Stderr, StreamKind::Tty] {
            let i = kind.index();
            self.open[i] = false;
            let raw = std::mem::take(&mut self.raw[i]);
            if !raw.is_empty() {
                let ts = self.pending[i].as_ref().map_or_else(now_ns, |p| p.ts);
                self.append(kind, ts, &raw, out);
            }
            self.finish_line(kind, out);
        }
    }
}

/// The last line or piece of a line (`part` 0: a whole line), its `\r` line ending removed.
fn make_line(ts_ns: i64, kind: StreamKind, mut buf: Vec<u8>, part: u32) -> LogLine {
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    LogLine {
        ts_ns,
        kind,
        line: lossy(buf),
        part,
        continues: false,
    }
}

fn lossy(buf: Vec<u8>) -> String {
    match String::from_utf8(buf) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

/// Where to cut a full buffer so that a UTF-8 character is not split: before the start of a
/// multi-byte character whose last bytes are missing (at most 3 bytes back), else at the end.
fn utf8_cut(buf: &[u8]) -> usize {
    let n = buf.len();
    for back in 1..=3.min(n) {
        let b = buf[n - back];
        if b & 0xC0 == 0x80 {
            continue; // a continuation byte: look further back for the lead byte
        }
        let len = match b {
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => 1,
        };
        return if len > back && n - back > 0 {
            n - back
        } else {
            n
        };
    }
    n
}

/// Identity of the container a follower serves.
#[derive(Debug, Clone)]
pub struct FollowTarget {
    pub id: String,
    pub name: String,
    pub service: String,
    pub tty: bool,
}

async fn emit_lines(sink: &EventSink, t: &FollowTarget, lines: &mut Vec<LogLine>) {
    for l in lines.drain(..) {
        let data = l.data();
        let mut ev = Event::new(l.ts_ns, "log", l.kind.as_str())
            .service(t.service.clone())
            .container(t.name.clone())
            .message(l.line);
        if let Some(d) = data {
            ev = ev.data(&d);
        }
        sink.emit_log(ev).await;
    }
}

/// A break in a long-lived Docker stream (logs or events), from the moment the recorder noticed
/// it to the first item read after reconnecting. Recorded as one `recorder`/`stream_gap` event
/// (docs/sensors.md, *Stream gaps*).
#[derive(Debug, Clone)]
pub struct StreamGap {
    /// When the break was noticed.
    pub from_ns: i64,
    /// The time of the last item taken before the break (0: none).
    pub last_ns: i64,
    /// Reconnection attempts that failed (0: the first one worked).
    pub failed_attempts: u32,
    /// The last error, or `None` when the stream was closed cleanly.
    pub error: Option<String>,
}

impl StreamGap {
    /// A gap starting now.
    pub fn new(last_ns: i64, error: Option<String>) -> StreamGap {
        StreamGap {
            from_ns: now_ns(),
            last_ns,
            failed_attempts: 0,
            error,
        }
    }

    /// The `recorder`/`stream_gap` event, stamped at the start of the gap. `to_ns` is the
    /// first item read again (`None`: the stream did not deliver again before the run ended);
    /// `since` is what the reconnection asked the daemon for.
    pub fn event(&self, sensor: &str, to_ns: Option<i64>, since: &str) -> Event {
        let what = match to_ns {
            Some(t) => format!(
                "read again after {:.3}s",
                (t - self.from_ns).max(0) as f64 / 1e9
            ),
            None => "not read again before the end of the run".to_string(),
        };
        let cause = self.error.as_deref().unwrap_or("stream closed");
        Event::new(self.from_ns, "recorder", "stream_gap")
            .message(format!("docker {sensor} stream: {cause}; {what}"))
            .data(&serde_json::json!({
                "sensor": sensor,
                "from_ns": self.from_ns,
                "to_ns": to_ns,
                "last_ns": (self.last_ns > 0).then_some(self.last_ns),
                "since": since,
                "failed_attempts": self.failed_attempts,
                "error": self.error,
            }))
    }
}

fn gap_event(t: &FollowTarget, gap: &StreamGap, to_ns: Option<i64>, since: i32) -> Event {
    gap.event("logs", to_ns, &since.to_string())
        .service(t.service.clone())
        .container(t.name.clone())
}

/// Reads the container's log from the current position: following when `follow`, to the current
/// end otherwise. Returns when the stream ends (container stopped), on error, or on `stop`. An
/// open `gap` is recorded and closed at the first item read.
async fn attach(
    docker: &Docker,
    t: &FollowTarget,
    asm: &mut LineAssembler,
    sink: &EventSink,
    follow: bool,
    stop: &CancellationToken,
    gap: &mut Option<StreamGap>,
) -> Result<(), bollard::errors::Error> {
    let mut out = Vec::new();
    asm.reattach(&mut out);
    emit_lines(sink, t, &mut out).await;
    let since = asm.position.since_secs();
    let opts = LogsOptionsBuilder::default()
        .follow(follow)
        .stdout(true)
        .stderr(true)
        .timestamps(true)
        .since(since)
        .build();
    let mut stream = docker.logs(&t.id, Some(opts));
    loop {
        let item = tokio::select! {
            biased;
            _ = stop.cancelled(), if follow => break,
            item = stream.next() => item,
        };
        let Some(item) = item else { break };
        let item = item?;
        if let Some(g) = gap.take() {
            sink.emit(gap_event(t, &g, Some(now_ns()), since));
        }
        let (kind, bytes) = match item {
            LogOutput::StdOut { message } => (StreamKind::Stdout, message),
            LogOutput::StdErr { message } => (StreamKind::Stderr, message),
            LogOutput::Console { message } => (StreamKind::Tty, message),
            LogOutput::StdIn { .. } => continue,
        };
        let kind = if t.tty { StreamKind::Tty } else { kind };
        asm.push(kind, &bytes, now_ns(), &mut out);
        emit_lines(sink, t, &mut out).await;
    }
    asm.flush(&mut out);
    emit_lines(sink, t, &mut out).await;
    Ok(())
}

/// Follows one container's logs until `stop`, re-attaching whenever `restarted` changes (the
/// supervisor bumps it on every start of the container) or the stream breaks while the container
/// still runs (a gap, recorded when the stream delivers again). On `stop` it reads the log once
/// more to its end, so lines printed just before the stop are not lost.
pub async fn follow(
    docker: Docker,
    t: FollowTarget,
    sink: EventSink,
    mut restarted: watch::Receiver<u64>,
    stop: CancellationToken,
) {
    let mut asm = LineAssembler::new();
    let mut failures = 0u32;
    let mut gap: Option<StreamGap> = None;
    while !stop.is_cancelled() {
        restarted.borrow_and_update();
        let attached_ns = now_ns();
        let broke = match attach(&docker, &t, &mut asm, &sink, true, &stop, &mut gap).await {
            Ok(()) => {
                failures = 0;
                None
            }
            Err(e) => {
                failures += 1;
                if failures == 1 || failures.is_multiple_of(20) {
                    sink.emit(
                        Event::new(now_ns(), "recorder", "sensor_error")
                            .service(t.service.clone())
                            .container(t.name.clone())
                            .message(format!("logs of {}: {e}", t.name))
                            .data(&serde_json::json!({"sensor": "logs", "error": e.to_string()})),
                    );
                }
                Some(e.to_string())
            }
        };
        if stop.is_cancelled() {
            break;
        }
        // The stream ended: the container stopped or restarted, or the connection broke. Wait
        // for a restart signal, or re-check on a short tick.
        let signalled = tokio::select! {
            _ = stop.cancelled() => break,
            _ = restarted.changed() => true,
            _ = tokio::time::sleep(Duration::from_millis(500)) => false,
        };
        let (running, started_ns) = container_state(&docker, &t.id).await;
        // a container started since the attachment restarted (its stream ended with the old
        // process); one running since before it had its stream cut: a gap (the signal may be
        // an unpause, or late)
        if running && started_ns <= attached_ns {
            match gap.as_mut() {
                Some(g) => {
                    g.failed_attempts += 1;
                    if broke.is_some() {
                        g.error = broke;
                    }
                }
                None => gap = Some(StreamGap::new(asm.position.last_ts, broke)),
            }
        } else if !running && !signalled {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = restarted.changed() => {}
            }
        }
    }
    // Final read to the current end of the log.
    if let Err(e) = attach(&docker, &t, &mut asm, &sink, false, &stop, &mut gap).await {
        sink.emit(
            Event::new(now_ns(), "recorder", "sensor_error")
                .service(t.service.clone())
                .container(t.name.clone())
                .message(format!("final read of the logs of {}: {e}", t.name))
                .data(&serde_json::json!({"sensor": "logs", "error": e.to_string()})),
        );
    }
    if let Some(g) = gap.take() {
        sink.emit(gap_event(&t, &g, None, asm.position.since_secs()));
    }
}

/// Whether the container runs (not waiting to be restarted), and when it was last started (UTC
/// ns, 0 when unknown).
async fn container_state(docker: &Docker, id: &str) -> (bool, i64) {
    match docker.inspect_container(id, None).await {
        Ok(c) => {
            let st = c.state.unwrap_or_default();
            let started = st
                .started_at
                .as_deref()
                .and_then(|s| trace::time::parse_rfc3339(s).ok())
                .unwrap_or(0);
            // Docker reports a container waiting for its restart policy as running (and
            // restarting): its log stream has ended with the old process, it is not a gap
            let running = st.running.unwrap_or(false) && !st.restarting.unwrap_or(false);
            (running, started)
        }
        Err(_) => (false, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T1: &str = "2024-05-01T10:00:00.000000001Z";
    const T2: &str = "2024-05-01T10:00:00.000000002Z";
    const T3: &str = "2024-05-01T10:00:01.5Z";

    fn ns(t: &str) -> i64 {
        split_timestamp(format!("{t} x").as_bytes())
            .map(|x| x.0)
            .unwrap_or(-1)
    }

    fn lines(out: &[LogLine]) -> Vec<(i64, &str, &str)> {
        out.iter()
            .map(|l| (l.ts_ns, l.kind.as_str(), l.line.as_str()))
            .collect()
    }

    #[test]
    fn timestamps_parse_to_nanoseconds() {
        assert_eq!(ns(T1), 1_714_557_600_000_000_001);
        assert_eq!(ns(T3), 1_714_557_601_500_000_000);
        assert!(split_timestamp(b"hello world").is_none());
        assert!(split_timestamp(b"2024-13-01T00:00:00Z x").is_none());
    }

    #[test]
    fn complete_entries_become_lines_per_stream() {
        let mut a = LineAssembler::new();
        let mut out = Vec::new();
        a.push(
            StreamKind::Stdout,
            format!("{T1} line 1\n").as_bytes(),
            0,
            &mut out,
        );
        a.push(
            StreamKind::Stderr,
            format!("{T2} oops\n").as_bytes(),
            0,
            &mut out,
        );
        assert_eq!(
            lines(&out),
            vec![(ns(T1), "stdout", "line 1"), (ns(T2), "stderr", "oops")]
        );
    }

    #[test]
    fn partial_entries_are_joined_with_the_first_timestamp() {
        let mut a = LineAssembler::new();
        let mut out = Vec::new();
        a.push(
            StreamKind::Stdout,
            format!("{T1} hello ").as_bytes(),
            0,
            &mut out,
        );
        // another stream interleaves; must not disturb the partial stdout line
        a.push(
            StreamKind::Stderr,
            format!("{T2} err\n").as_bytes(),
            0,
            &mut out,
        );
        assert_eq!(out.len(), 1);
        a.push(
            StreamKind::Stdout,
            format!("{T2} world\n").as_bytes(),
            0,
            &mut out,
        );
        assert_eq!(lines(&out)[1], (ns(T1), "stdout", "hello world"));
    }

    #[test]
    fn partial_line_at_stream_end_is_flushed() {
        let mut a = LineAssembler::new();
        let mut out = Vec::new();
        a.push(
            StreamKind::Stdout,
            format!("{T1} no newline").as_bytes(),
            0,
            &mut out,
        );
        assert!(out.is_empty());
        a.flush(&mut out);
        assert_eq!(lines(&out), vec![(ns(T1), "stdout", "no newline")]);
    }

    #[test]
    fn tty_raw_bytes_split_anywhere_and_crlf() {
        let mut a = LineAssembler::new();
        let mut out = Vec::new();
        let all = format!("{T1} first\r\n{T2} second\r\n{T3} thi");
        let (x, y) = all.as_bytes().split_at(20);
        a.push(StreamKind::Tty, x, 0, &mut out);
        a.push(StreamKind::Tty, y, 0, &mut out);
        a.push(StreamKind::Tty, b"rd\r\n", 0, &mut out);
        assert_eq!(
            lines(&out),
            vec![
                (ns(T1), "tty", "first"),
                (ns(T2), "tty", "second"),
                (ns(T3), "tty", "third")
            ]
        );
    }

    #[test]
    fn reattach_skips_what_was_seen_including_equal_timestamps() {
        let mut a = LineAssembler::new();
        let mut out = Vec::new();
        a.push(
            StreamKind::Stdout,
            format!("{T1} a\n{T2} b\n{T2} c\n").as_bytes(),
            0,
            &mut out,
        );
        assert_eq!(out.len(), 3);
        // the daemon replays from the whole second: everything again plus new lines
        a.reattach(&mut out);
        a.push(
            StreamKind::Stdout,
            format!("{T1} a\n").as_bytes(),
            0,
            &mut out,
        );
        a.push(
            StreamKind::Stdout,
            format!("{T2} b\n").as_bytes(),
            0,
            &mut out,
        );
        a.push(
            StreamKind::Stderr,
            format!("{T2} c\n").as_bytes(),
            0,
            &mut out,
        );
        a.push(
            StreamKind::Stdout,
            format!("{T2} d\n").as_bytes(),
            0,
            &mut out,
        );
        a.push(
            StreamKind::Stdout,
            format!("{T3} e\n").as_bytes(),
            0,
            &mut out,
        );
        let got: Vec<&str> = out.iter().map(|l| l.line.as_str()).collect();
        assert_eq!(got, vec!["a", "b", "c", "d", "e"]);
        // and again: nothing new
        a.reattach(&mut out);
        a.push(
            StreamKind::Stdout,
            format!("{T1} a\n{T2} b\n{T2} c\n{T2} d\n{T3} e\n").as_bytes(),
            0,
            &mut out,
        );
        assert_eq!(out.len(), 5);
        assert_eq!(a.position.since_secs(), 1_714_557_601);
    }

    /// Bytes held for unfinished lines, over every stream.
    fn buffered(a: &LineAssembler) -> usize {
        a.pending
            .iter()
            .flatten()
            .map(|p| p.buf.len())
            .sum::<usize>()
            + a.raw.iter().map(Vec::len).sum::<usize>()
    }

    #[test]
    fn an_endless_line_is_emitted_in_pieces_within_the_limit() {
        let mut a = LineAssembler::with_max_line(16);
        let mut out = Vec::new();
        // the daemon hands a line without newline over as stamped partial entries
        let mut sent = String::new();
        for i in 0..10 {
            let chunk = format!("chunk{i}-");
            sent.push_str(&chunk);
            a.push(
                StreamKind::Stdout,
                format!("{T1} {chunk}").as_bytes(),
                0,
                &mut out,
            );
            assert!(buffered(&a) <= 16, "{} bytes buffered", buffered(&a));
        }
        // pieces come out while the line goes on, full, numbered, marked as continuing
        assert_eq!(out.len(), sent.len() / 16, "{out:?}");
        for (n, l) in out.iter().enumerate() {
            assert_eq!(
                (l.part, l.continues, l.line.len()),
                (n as u32 + 1, true, 16)
            );
            assert_eq!(
                l.data(),
                Some(serde_json::json!({"part": n + 1, "continues": true}))
            );
        }
        // the stream ends: the rest is the last piece
        a.flush(&mut out);
        let last = out.last().expect("last piece");
        assert_eq!((last.part as usize, last.continues), (out.len(), false));
        let joined: String = out.iter().map(|l| l.line.as_str()).collect();
        assert_eq!(joined, sent, "bytes lost or duplicated");
        // a newline ends a line emitted in pieces the same way, and the next line is whole
        a.push(
            StreamKind::Stdout,
            format!("{T2} 0123456789abcdefXYZ\n{T2} short\n").as_bytes(),
            0,
            &mut out,
        );
        let tail: Vec<(&str, u32, bool)> = out[out.len() - 3..]
            .iter()
            .map(|l| (l.line.as_str(), l.part, l.continues))
            .collect();
        assert_eq!(
            tail,
            vec![
                ("0123456789abcdef", 1, true),
                ("XYZ", 2, false),
                ("short", 0, false)
            ]
        );
        assert_eq!(out.last().and_then(LogLine::data), None);
    }

    #[test]
    fn a_line_of_exactly_the_limit_is_whole_and_pieces_keep_characters_whole() {
        let mut a = LineAssembler::with_max_line(8);
        let mut out = Vec::new();
        a.push(
            StreamKind::Stderr,
            format!("{T1} 12345678\n").as_bytes(),
            0,
            &mut out,
        );
        assert_eq!(lines(&out), vec![(ns(T1), "stderr", "12345678")]);
        assert_eq!(out[0].part, 0);
        out.clear();
        // "é" is 2 bytes, "€" 3: no piece may end inside one
        let text = "aéé€€é€b€";
        let bytes = format!("{T1} {text}\n");
        let b = bytes.as_bytes();
        // raw TTY bytes split at every position
        for cut in 0..b.len() {
            let mut a = LineAssembler::with_max_line(8);
            let mut out = Vec::new();
            a.push(StreamKind::Tty, &b[..cut], 0, &mut out);
            a.push(StreamKind::Tty, &b[cut..], 0, &mut out);
            let joined: String = out.iter().map(|l| l.line.as_str()).collect();
            assert_eq!(joined, text, "cut at {cut}: {out:?}");
            assert!(out.iter().all(|l| l.line.len() <= 8 && l.ts_ns == ns(T1)));
            assert!(out.len() > 1);
        }
    }

    #[test]
    fn entries_without_timestamp_use_the_fallback() {
        let mut a = LineAssembler::new();
        let mut out = Vec::new();
        a.push(StreamKind::Stdout, b"plain\n", 42, &mut out);
        assert_eq!(lines(&out), vec![(42, "stdout", "plain")]);
    }
}
