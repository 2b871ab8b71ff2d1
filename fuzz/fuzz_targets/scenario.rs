//! Fuzz target: scenario files. The input (as lossy UTF-8) is parsed as `scenario.toml` and
//! resolved (paths, durations, fault targets, schedule, experiment) the way `recorder check` does
//! before it knows the compose project, and every error rendered with its source line. Must give a
//! scenario or located errors, never panic. Crashes go to `../regressions/scenario/`, replayed by
//! `recorder/tests/fuzz_regressions.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use recorder::scenario::LoadedScenario;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let path = std::path::Path::new("/nonexistent-fuzz/scenario.toml");
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
});
