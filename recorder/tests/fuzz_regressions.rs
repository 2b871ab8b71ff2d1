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
