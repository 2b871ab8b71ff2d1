//! Fuzz target: Prometheus text exposition parsing. The input (as lossy UTF-8) goes through the
//! lenient and the strict parser, and the families through `scrape_events` with an empty and a
//! prefix selector. Must give families or errors, never panic. Crashes go to
//! `../regressions/prometheus/`, replayed by `sensor-protocols/tests/fuzz_regressions.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sensor_protocols::prom::{parse, parse_strict, scrape_events, Selector};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (fams, errs) = parse(&text);
    std::hint::black_box(errs);
    for sel in [Selector::default(), Selector(vec!["http_*".into()])] {
        std::hint::black_box(scrape_events(
            1,
            "svc",
            Some("c"),
            "http://x/metrics",
            &fams,
            &sel,
        ));
    }
    let _ = std::hint::black_box(parse_strict(&text));
});
