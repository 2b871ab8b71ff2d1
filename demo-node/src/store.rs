//! `store` mode: a tiny record store on disk, the workload of the disk-full example (a syscall
//! fault makes its writes fail with ENOSPC). Every `INTERVAL` it appends a record to
//! `DATA_DIR/store.log`, reads the file back, and optionally appends to a second file under
//! `SCRATCH_DIR` (outside the faulted path); each operation logs one line with its outcome and
//! duration, and the store logs when it degrades and when it recovers. With `LOOP` it instead
//! writes small records as fast as it can and logs the rate every second (overhead measurements).

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::util::{self, Config};

/// One append: open, write, close. Returns the error's message and errno on failure.
fn append(path: &Path, line: &str) -> Result<(), (String, i32)> {
    let r = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    r.map_err(|e| (e.to_string(), e.raw_os_error().unwrap_or(0)))
}

fn read_records(path: &Path) -> Result<usize, String> {
    let mut s = String::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_string(&mut s))
        .map_err(|e| e.to_string())?;
    Ok(s.lines().count())
}

fn quote(s: &str) -> String {
    format!("{s:?}")
}

pub fn run(c: &Config) -> Result<i32, String> {
    let id = c.string("ID", "store");
    let dir = PathBuf::from(c.string("DATA_DIR", "/data"));
    let scratch = c.get("SCRATCH_DIR").map(PathBuf::from);
    let interval = c.duration("INTERVAL", Duration::from_millis(200))?;
    let count = c.u64("COUNT", 0)?;
    if c.bool("LOOP", false)? {
        return bench(&id, &dir);
    }
    let data = dir.join("store.log");
    let mut failing: u64 = 0;
    let mut n: u64 = 0;
    util::out(&format!("store {id} ready dir={}", dir.display()));
    while !util::stopping() && (count == 0 || n < count) {
        n += 1;
        let t = Instant::now();
        let r = append(&data, &format!("record {n}\n"));
        let us = t.elapsed().as_micros();
        match r {
            Ok(()) => {
                util::out(&format!("store {id} write n={n} ok us={us}"));
                if failing > 0 {
                    util::out(&format!(
                        "store {id} recovered after {failing} failed writes"
                    ));
                    failing = 0;
                }
            }
            Err((e, errno)) => {
                util::out(&format!(
                    "store {id} write n={n} error={} errno={errno} us={us}",
                    quote(&e)
                ));
                if failing == 0 {
                    util::out(&format!(
                        "store {id} degraded: writes failing, serving reads only"
                    ));
                }
                failing += 1;
            }
        }
        match read_records(&data) {
            Ok(k) => util::out(&format!("store {id} read n={n} ok records={k}")),
            Err(e) => util::out(&format!("store {id} read n={n} error={}", quote(&e))),
        }
        if let Some(s) = &scratch {
            let t = Instant::now();
            let r = append(&s.join("scratch.log"), &format!("scratch {n}\n"));
            let us = t.elapsed().as_micros();
            match r {
                Ok(()) => util::out(&format!("store {id} scratch n={n} ok us={us}")),
                Err((e, errno)) => util::out(&format!(
                    "store {id} scratch n={n} error={} errno={errno} us={us}",
                    quote(&e)
                )),
            }
        }
        util::sleep_unless_stopping(interval);
    }
    Ok(0)
}

/// Writes 64-byte records to one open file as fast as possible; logs the rate every second.
fn bench(id: &str, dir: &Path) -> Result<i32, String> {
    let path = dir.join("bench.dat");
    let mut f = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&path)
        .map_err(|e| format!("opening {}: {e}", path.display()))?;
    let rec = [b'x'; 64];
    while !util::stopping() {
        let t = Instant::now();
        let (mut ok, mut failed, mut since_trunc) = (0u64, 0u64, 0u64);
        while t.elapsed() < Duration::from_secs(1) {
            for _ in 0..64 {
                match f.write_all(&rec) {
                    Ok(_) => {
                        ok += 1;
                        since_trunc += 1;
                    }
                    Err(_) => failed += 1,
                }
            }
            if since_trunc > 100_000 {
                // keep the file small (the offset stays: a sparse file)
                let _ = f.set_len(0);
                since_trunc = 0;
            }
        }
        let secs = t.elapsed().as_secs_f64();
        util::out(&format!(
            "store {id} loop rate={:.0} failed={failed}",
            (ok + failed) as f64 / secs
        ));
    }
    Ok(0)
}
