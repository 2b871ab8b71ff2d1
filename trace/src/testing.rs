//! The fuzz-corpus runner shared by the `tests/fuzz_regressions.rs` of the trace, sensors and
//! recorder crates (feature `testing`, for dev-dependencies only): [`replay`] feeds every seed
//! and crash input of a cargo-fuzz target under `fuzz/corpus/<target>/` and
//! `fuzz/regressions/<target>/` to the target's body on the stable toolchain; [`mutate`] is a
//! timed mutation run over those inputs for machines without nightly; [`framed_log`] builds the
//! checksummed log the `event_log` target feeds; [`group_stats_of`] gives the row-group
//! statistics a footer would record for some events. The bodies themselves stay
//! in each crate's test file, beside the fuzz target they copy.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A fuzz target: its corpus directory name and its body (which must never panic).
pub type Target = (&'static str, fn(&[u8]));

/// An `events.arrows` file of format v2 built from `rest`, a list of `u16`-length-prefixed
/// payloads (a length past the end takes what is left), each framed with valid checksums: the
/// `event_log` fuzz target and its stable replay use it so that Arrow IPC decoding of a record
/// that passes its checksum is reached.
#[cfg(feature = "io")]
pub fn framed_log(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rest.len() + 64);
    out.extend_from_slice(crate::framed::FILE_MAGIC);
    out.extend_from_slice(&2u32.to_le_bytes());
    let c = crate::framed::crc32c(&out[..12]);
    out.extend_from_slice(&c.to_le_bytes());
    while rest.len() >= 2 {
        let n = (u16::from_le_bytes([rest[0], rest[1]]) as usize).min(rest.len() - 2);
        let payload = &rest[2..2 + n];
        let start = out.len();
        out.extend_from_slice(crate::framed::RECORD_MAGIC);
        out.extend_from_slice(&(n as u32).to_le_bytes());
        out.extend_from_slice(&crate::framed::crc32c(payload).to_le_bytes());
        let h = crate::framed::crc32c(&out[start..start + 12]);
        out.extend_from_slice(&h.to_le_bytes());
        out.extend_from_slice(payload);
        rest = &rest[2 + n..];
    }
    out
}

/// The workspace's `fuzz/` directory.
pub fn fuzz_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The inputs of `target`: its seed corpus, then its crash regressions, each directory in name
/// order (a missing directory has none).
pub fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let root = fuzz_root();
    let mut out = Vec::new();
    for dir in ["corpus", "regressions"] {
        let Ok(rd) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = rd
            .map(|e| {
                e.unwrap_or_else(|e| panic!("list {dir}/{target}: {e}"))
                    .path()
            })
            .collect();
        paths.sort();
        for p in paths {
            let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
            out.push((p, bytes));
        }
    }
    out
}

/// Runs `f` on every input of `target` (a panic fails the calling test); how many there were.
pub fn replay(target: &str, f: fn(&[u8])) -> usize {
    let inputs = inputs(target);
    for (_, bytes) in &inputs {
        f(bytes);
    }
    inputs.len()
}

/// A small xorshift generator: the same mutations on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// One to four mutations of `b`: bit flips, byte overwrites with edge values, truncation,
/// duplication of a slice.
fn mutate_once(b: &mut Vec<u8>, rnd: &mut Rng) {
    for _ in 0..1 + rnd.next() % 4 {
        if b.len() < 2 {
            break;
        }
        let p = (rnd.next() as usize) % b.len();
        match rnd.next() % 5 {
            0 | 1 => b[p] ^= 1 << (rnd.next() % 8),
            2 => b[p] = [0, 0xff, 0x7f, 0x80][(rnd.next() % 4) as usize],
            3 => b.truncate(p.max(1)),
            _ => {
                let n = ((rnd.next() as usize) % 64).min(b.len() - p);
                let s = b[p..p + n].to_vec();
                b.splice(p..p, s);
            }
        }
    }
}

/// A stable-toolchain mutation run over the inputs of each target, `FUZZ_SECS` seconds per target
/// (default 30), e.g. `FUZZ_SECS=120 cargo test -p trace --release --test fuzz_regressions --
/// --ignored mutate`. Inputs that panic are written to `fuzz/artifacts/<target>/crash-<n>` and
/// fail the run once every target has had its time.
pub fn mutate(targets: &[Target]) {
    let secs: u64 = std::env::var("FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let root = fuzz_root();
    let mut rnd = Rng(0x9e37_79b9_7f4a_7c15);
    let mut panics = 0;
    for &(target, f) in targets {
        let seeds: Vec<Vec<u8>> = inputs(target).into_iter().map(|(_, b)| b).collect();
        assert!(!seeds.is_empty(), "no inputs for fuzz target {target}");
        let end = Instant::now() + Duration::from_secs(secs);
        let mut runs = 0u64;
        while Instant::now() < end {
            let mut b = seeds[(rnd.next() as usize) % seeds.len()].clone();
            mutate_once(&mut b, &mut rnd);
            if std::panic::catch_unwind(|| f(&b)).is_err() {
                let out = root.join("artifacts").join(target);
                let file = out.join(format!("crash-{runs}"));
                std::fs::create_dir_all(&out)
                    .and_then(|()| std::fs::write(&file, &b))
                    .unwrap_or_else(|e| panic!("write {}: {e}", file.display()));
                panics += 1;
            }
            runs += 1;
        }
        eprintln!("{target}: {runs} inputs in {secs} s, {panics} panics so far");
    }
    assert_eq!(panics, 0, "inputs that panic are under fuzz/artifacts/");
}

/// The statistics a finalized trace's footer records for a row group holding `evs`: exact bounds
/// and null counts, and, when `listed`, the distinct values finalize lists for the
/// dictionary-encoded columns (`source`, `service`, `container`, `kind`). Tests of row-group
/// skipping feed these instead of writing a file.
#[cfg(feature = "io")]
pub fn group_stats_of<'a>(
    evs: impl IntoIterator<Item = crate::EventRef<'a>>,
    listed: bool,
) -> crate::GroupStats {
    let evs: Vec<crate::EventRef<'a>> = evs.into_iter().collect();
    let col = |vals: Vec<Option<&str>>, dict: bool| {
        let mut d: Vec<&str> = vals.iter().flatten().copied().collect();
        d.sort_unstable();
        d.dedup();
        crate::StrStats {
            min: d.first().map(|v| v.as_bytes().into()),
            max: d.last().map(|v| v.as_bytes().into()),
            exact: true,
            nulls: Some(vals.iter().filter(|v| v.is_none()).count() as u64),
            values: (dict && listed).then(|| d.iter().map(|v| Box::from(*v)).collect()),
        }
    };
    let ts = evs.iter().map(|e| e.ts_ns);
    let seq = evs.iter().map(|e| e.seq);
    crate::GroupStats {
        rows: evs.len() as u64,
        ts: ts.clone().min().zip(ts.max()),
        seq: seq.clone().min().zip(seq.max()),
        source: col(evs.iter().map(|e| Some(e.source)).collect(), true),
        service: col(evs.iter().map(|e| e.service).collect(), true),
        container: col(evs.iter().map(|e| e.container).collect(), true),
        kind: col(evs.iter().map(|e| Some(e.kind)).collect(), true),
        message: col(evs.iter().map(|e| e.message).collect(), false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_change_inputs_and_stay_non_empty() {
        let mut rnd = Rng(1);
        let seed = b"0123456789abcdef".to_vec();
        let mut changed = 0;
        for _ in 0..200 {
            let mut b = seed.clone();
            mutate_once(&mut b, &mut rnd);
            assert!(!b.is_empty());
            changed += usize::from(b != seed);
        }
        assert!(changed > 150, "only {changed} of 200 mutated");
    }
}
