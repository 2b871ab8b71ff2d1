//! `hog` mode: allocates and touches memory at a configured rate and/or spins CPU threads, for
//! the "container must die after resource faults" check under memory/CPU limits.

use crate::util::{self, Config};
use std::time::{Duration, Instant};

pub fn run(c: &Config) -> Result<i32, String> {
    let id = c
        .get_any(&["ID", "NODE_NAME", "HOSTNAME"])
        .unwrap_or_else(|| "hog".into());
    let mb_per_sec = c.f64("MEM_MB_PER_SEC", 0.0)?;
    let max_mb = c.u64("MEM_MAX_MB", 0)?;
    let cpu_threads = c.u64("CPU_THREADS", 0)?;
    let delay = c.duration("DELAY", Duration::ZERO)?;
    let report = c.duration("REPORT_INTERVAL", Duration::from_secs(1))?;
    util::out(&format!(
        "hog-start {id} mem_mb_per_sec={mb_per_sec} mem_max_mb={max_mb} cpu_threads={cpu_threads}"
    ));
    util::sleep_unless_stopping(delay);
    for t in 0..cpu_threads {
        std::thread::spawn(move || {
            let mut x: u64 = t;
            loop {
                for _ in 0..1_000_000 {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                }
                std::hint::black_box(x);
                if util::stopping() {
                    return;
                }
            }
        });
    }
    let mut held: Vec<Vec<u8>> = Vec::new();
    let mut allocated_mb = 0u64;
    let begin = Instant::now();
    let mut last_report = Instant::now();
    while !util::stopping() {
        let want = (begin.elapsed().as_secs_f64() * mb_per_sec) as u64;
        let want = if max_mb > 0 { want.min(max_mb) } else { want };
        while allocated_mb < want {
            // Touch every page so the memory is really resident and counted by the cgroup.
            let mut block = vec![0u8; 1 << 20];
            for i in (0..block.len()).step_by(4096) {
                block[i] = 1;
            }
            held.push(block);
            allocated_mb += 1;
        }
        if last_report.elapsed() >= report {
            last_report = Instant::now();
            util::out(&format!(
                "hog {id} allocated={allocated_mb}MB elapsed={:.1}s",
                begin.elapsed().as_secs_f64()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    util::out(&format!("hog-exit {id} allocated={allocated_mb}MB"));
    Ok(0)
}
