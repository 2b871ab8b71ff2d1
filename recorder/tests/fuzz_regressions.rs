//! Replays the seed corpus and every crash input of the recorder's `scenario` fuzz target
//! (`recorder/fuzz`) on stable, with the same harness as the target: each input must give a
//! scenario or located errors, never panic.

use std::path::Path;

use recorder::scenario::LoadedScenario;

fn scenario(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let path = Path::new("/nonexistent-fuzz/scenario.toml");
    match LoadedScenario::parse_lenient(path, &text) {
        Ok((sc, errs)) => {
            for e in &errs {
                std::hint::black_box(e.render());
            }
            let (r, errs) = sc.resolve_partial();
            std::hint::black_box(r);
            for e in &errs {
                std::hint::black_box(e.render());
            }
        }
        Err(errs) => {
            for e in &errs.0 {
                std::hint::black_box(e.render());
            }
        }
    }
}

#[test]
fn scenario_corpus_and_crashes_replay_without_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut n = 0;
    for dir in ["corpus/scenario", "regressions/scenario"] {
        let Ok(rd) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        let mut paths: Vec<_> = rd.map(|e| e.unwrap().path()).collect();
        paths.sort();
        for p in paths {
            scenario(&std::fs::read(&p).unwrap());
            n += 1;
        }
    }
    assert!(n >= 5, "only {n} scenario inputs");
}

/// A stable-toolchain mutation run over the corpora (bit flips, byte overwrites, truncation,
/// duplication of a slice), for machines without nightly: `FUZZ_SECS=120 cargo test -p recorder
/// --test fuzz_regressions -- --ignored mutate`. Inputs that panic are written to
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
    let targets: [Target; 1] = [("scenario", scenario)];
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
