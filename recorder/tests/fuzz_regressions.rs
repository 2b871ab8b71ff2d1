//! Replays the seed corpus and every crash input of the recorder's `scenario` fuzz target
//! (`recorder/fuzz`) on stable, with the same harness as the target: each input must give a
//! scenario or located errors, never panic.

use std::path::Path;

use trace::testing::{mutate, replay};

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
    let n = replay("scenario", scenario);
    assert!(n >= 5, "only {n} scenario inputs");
}

/// A stable-toolchain mutation run over the corpus for machines without nightly (see
/// [`trace::testing::mutate`]): `FUZZ_SECS=120 cargo test -p recorder --test fuzz_regressions --
/// --ignored mutate`.
#[test]
#[ignore = "a timed mutation run; start it by hand"]
fn mutate_the_corpora() {
    mutate(&[("scenario", scenario)]);
}
