//! Replays the seed corpora and every crash input of the trace crate's fuzz targets
//! (`trace/fuzz`: `event_log`, `parquet_trace`) on stable, with the same harness as the targets:
//! each input must give events or an error, never panic.

use std::path::Path;

use trace::framed::{crc32c, FILE_MAGIC, RECORD_MAGIC};
use trace::{ReadOptions, Trace};

fn framed(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rest.len() + 64);
    out.extend_from_slice(FILE_MAGIC);
    out.extend_from_slice(&2u32.to_le_bytes());
    let c = crc32c(&out[..12]);
    out.extend_from_slice(&c.to_le_bytes());
    while rest.len() >= 2 {
        let n = (u16::from_le_bytes([rest[0], rest[1]]) as usize).min(rest.len() - 2);
        let payload = &rest[2..2 + n];
        let start = out.len();
        out.extend_from_slice(RECORD_MAGIC);
        out.extend_from_slice(&(n as u32).to_le_bytes());
        out.extend_from_slice(&crc32c(payload).to_le_bytes());
        let h = crc32c(&out[start..start + 12]);
        out.extend_from_slice(&h.to_le_bytes());
        out.extend_from_slice(payload);
        rest = &rest[2 + n..];
    }
    out
}

fn read_all(dir: &Path, opts: &ReadOptions) {
    if let Ok(t) = Trace::open(dir) {
        std::hint::black_box(t.parquet_facts());
        if let Ok(s) = t.events(opts) {
            for b in s {
                let Ok(b) = b else { break };
                for e in b.iter() {
                    std::hint::black_box(e);
                }
            }
        }
    }
}

/// The `event_log` target's body.
fn event_log(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let bytes = if mode & 1 == 0 {
        rest.to_vec()
    } else {
        framed(rest)
    };
    std::fs::write(dir.path().join("manifest.json"), br#"{"format_version":2}"#).unwrap();
    std::fs::write(dir.path().join("events.arrows"), &bytes).unwrap();
    read_all(dir.path(), &ReadOptions::default());
    if mode & 2 != 0 {
        let opts = trace::finalize::FinalizeOptions {
            repair: mode & 4 != 0,
        };
        if trace::finalize::finalize_with(dir.path(), opts).is_ok() {
            read_all(dir.path(), &ReadOptions::default());
        }
    }
}

/// The `parquet_trace` target's body.
fn parquet_trace(data: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("manifest.json"), br#"{"format_version":1}"#).unwrap();
    std::fs::write(dir.path().join("events.parquet"), data).unwrap();
    let filtered = ReadOptions {
        sources: Some(vec!["log".into()]),
        since_ns: Some(1),
        until_ns: Some(i64::MAX),
        ..Default::default()
    };
    read_all(dir.path(), &ReadOptions::default());
    read_all(dir.path(), &filtered);
}

fn replay(target: &str, f: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut n = 0;
    for dir in ["corpus", "regressions"] {
        let Ok(rd) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        let mut paths: Vec<_> = rd.map(|e| e.unwrap().path()).collect();
        paths.sort();
        for p in paths {
            let bytes = std::fs::read(&p).unwrap();
            f(&bytes);
            n += 1;
        }
    }
    n
}

#[test]
fn event_log_corpus_and_crashes_replay_without_panic() {
    let n = replay("event_log", event_log);
    assert!(n >= 4, "only {n} event_log inputs");
}

#[test]
fn parquet_trace_corpus_and_crashes_replay_without_panic() {
    let n = replay("parquet_trace", parquet_trace);
    assert!(n >= 3, "only {n} parquet_trace inputs");
}

/// libFuzzer's timeout: a v1 `events.parquet` whose `seq` page header is garbage Thrift with a
/// field parquet skips as a list of thousands of elements past the end of the file (each skip
/// read nothing and parquet went on: minutes in a debug build). Reading now stops with an
/// error naming the file; the footer is sound, so opening works.
#[test]
fn a_page_header_skipping_past_the_end_of_the_file_is_an_error() {
    let data = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/regressions/parquet_trace/page-header-skip-timeout-f1a8b446.parquet"),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("manifest.json"), br#"{"format_version":1}"#).unwrap();
    std::fs::write(dir.path().join("events.parquet"), &data).unwrap();
    let t = Trace::open(dir.path()).unwrap();
    assert_eq!(t.parquet_facts().map(|f| f.0), Some(651));
    // the events before the error, then the error (a reader stops there, as the analyzer does)
    let mut error = None;
    for b in t.events(&ReadOptions::default()).unwrap() {
        if let Err(e) = b {
            error = Some(e.to_string());
            break;
        }
    }
    let errors: Vec<String> = error.into_iter().collect();
    assert_eq!(errors.len(), 1, "no error");
    assert!(errors[0].contains("events.parquet"), "{errors:?}");
}

/// A stable-toolchain mutation run over the corpora (bit flips, byte overwrites, truncation,
/// duplication of a slice), for machines without nightly: `FUZZ_SECS=120 cargo test -p trace
/// --release --test fuzz_regressions -- --ignored mutate`. Inputs that panic are written to
/// `fuzz/artifacts/<target>/` and fail the run.
/// A fuzz target: its corpus directory name and its body.
type Target = (&'static str, fn(&[u8]));

#[test]
#[ignore = "a timed mutation run; start it by hand"]
fn mutate_the_corpora() {
    let secs: u64 = std::env::var("FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let targets: [Target; 2] = [("event_log", event_log), ("parquet_trace", parquet_trace)];
    let mut panics = 0;
    for (target, f) in targets {
        let mut seeds = Vec::new();
        for dir in ["corpus", "regressions"] {
            if let Ok(rd) = std::fs::read_dir(root.join(dir).join(target)) {
                for e in rd {
                    seeds.push(std::fs::read(e.unwrap().path()).unwrap());
                }
            }
        }
        let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        let mut runs = 0u64;
        while std::time::Instant::now() < end {
            let mut b = seeds[(rnd() as usize) % seeds.len()].clone();
            for _ in 0..1 + rnd() % 4 {
                if b.len() < 2 {
                    break;
                }
                let p = (rnd() as usize) % b.len();
                match rnd() % 5 {
                    0 | 1 => b[p] ^= 1 << (rnd() % 8),
                    2 => b[p] = [0, 0xff, 0x7f, 0x80][(rnd() % 4) as usize],
                    3 => b.truncate(p.max(1)),
                    _ => {
                        let n = ((rnd() as usize) % 64).min(b.len() - p);
                        let s = b[p..p + n].to_vec();
                        b.splice(p..p, s);
                    }
                }
            }
            let input = b.clone();
            if std::panic::catch_unwind(|| f(&input)).is_err() {
                let out = root.join("artifacts").join(target);
                std::fs::create_dir_all(&out).unwrap();
                std::fs::write(out.join(format!("crash-{runs}")), &b).unwrap();
                panics += 1;
            }
            runs += 1;
        }
        eprintln!("{target}: {runs} inputs in {secs} s, {panics} panics so far");
    }
    assert_eq!(panics, 0, "inputs that panic are under fuzz/artifacts/");
}
