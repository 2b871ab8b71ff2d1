//! Crash safety of the trace writer: a writer process streaming events is killed with SIGKILL
//! at different moments; the trace it leaves must be readable and finalizable, with every event
//! intact and in order, losing at most what was appended after its last flush.
//!
//! The writer is this test binary itself, re-executed to run the ignored test
//! `trace_sigkill::sigkill_writer_child` with `TRACE_SIGKILL_CHILD_DIR` set. It prints
//! `flushed N` after every flush (N = events appended and flushed so far).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use trace::{Event, Manifest, ReadOptions, Trace, TraceWriter};

const CHILD_ENV: &str = "TRACE_SIGKILL_CHILD_DIR";
const BASE_NS: i64 = 1_767_225_600_000_000_000;

/// The event number `i` the child writes: timestamps slightly out of order (as from real
/// sensors), message carrying `i`.
fn child_event(i: u64) -> Event {
    let ts = BASE_NS + i as i64 * 10_000 - ((i * 7919) % 13) as i64 * 15_000;
    Event::new(
        ts,
        if i.is_multiple_of(5) { "jmx" } else { "log" },
        "stdout",
    )
    .service(format!("svc-{}", i % 3))
    .message(format!("line {i}"))
}

#[test]
#[ignore = "the writer process of sigkill_mid_stream; runs only when re-executed by it"]
fn sigkill_writer_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut w = TraceWriter::create(
        Path::new(&dir),
        Manifest {
            run_id: "sigkill".into(),
            ..Default::default()
        },
    )
    .unwrap();
    let start = Instant::now();
    let mut tick = Instant::now();
    let mut i: u64 = 0;
    // Bounded: the parent kills us long before this ends.
    while start.elapsed() < Duration::from_secs(60) {
        for _ in 0..500 {
            w.append(child_event(i)).unwrap();
            i += 1;
        }
        if tick.elapsed() >= Duration::from_millis(100) {
            w.flush().unwrap();
            println!("flushed {i}");
            tick = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn run_once(kill_after_flushes: usize, extra_delay: Duration) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("trace");
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            "trace_sigkill::sigkill_writer_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut last_flushed: u64 = 0;
    let mut flushes = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while flushes < kill_after_flushes && Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        if let Some(n) = line.strip_prefix("flushed ") {
            last_flushed = n.trim().parse().unwrap();
            flushes += 1;
        }
    }
    assert_eq!(
        flushes, kill_after_flushes,
        "the writer child did not report its flushes"
    );
    std::thread::sleep(extra_delay);
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    // Flushes reported before the kill landed are lower bounds too.
    for line in lines.map_while(Result::ok) {
        if let Some(n) = line.strip_prefix("flushed ") {
            last_flushed = n.trim().parse().unwrap();
        }
    }

    let read = |dir: &Path| -> Vec<Event> {
        let t = Trace::open(dir).unwrap_or_else(|e| panic!("{e}"));
        let mut v = Vec::new();
        for b in t.events(&ReadOptions::default()).unwrap() {
            v.extend(b.unwrap().iter().map(|e| e.to_owned()));
        }
        v
    };
    let t = Trace::open(&dir).unwrap();
    assert!(!t.is_finalized());
    let got = read(&dir);
    let n = got.len() as u64;
    assert!(
        n >= last_flushed,
        "lost flushed events: read {n}, the writer had flushed {last_flushed}"
    );
    // Nothing is lost before the end: exactly the events 0..n, each once, in (ts, seq) order.
    assert!(
        got.windows(2)
            .all(|w| (w[0].ts_ns, w[0].seq) < (w[1].ts_ns, w[1].seq)),
        "events out of order"
    );
    let mut ids: Vec<u64> = got
        .iter()
        .map(|e| e.message.as_deref().unwrap()[5..].parse().unwrap())
        .collect();
    ids.sort_unstable();
    assert!(ids.iter().copied().eq(0..n), "events missing or duplicated");
    for e in &got {
        let i: u64 = e.message.as_deref().unwrap()[5..].parse().unwrap();
        let want = child_event(i);
        assert_eq!(
            (e.ts_ns, e.source.as_str(), e.service.as_deref(), e.seq),
            (
                want.ts_ns,
                want.source.as_str(),
                want.service.as_deref(),
                i + 1
            )
        );
    }
    let s = trace::finalize(&dir).unwrap();
    assert_eq!(s.events, n);
    assert!(Trace::open(&dir).unwrap().is_finalized());
    assert_eq!(read(&dir), got, "finalized events differ from the log");
}

#[test]
fn sigkill_mid_stream_loses_at_most_the_unflushed_tail() {
    // Different kill moments: right after a flush is reported, and between flushes.
    for (flushes, delay_ms) in [(3, 0), (5, 37), (8, 71)] {
        run_once(flushes, Duration::from_millis(delay_ms));
    }
}
