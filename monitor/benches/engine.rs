//! Engine-only throughput: the bench specs of `monitor/benches/specs/` run over in-memory
//! `EventRef`s (a generated trace held in a `Vec<Event>`), so the evaluator's own speed is
//! visible apart from the Parquet reader. Cases: (a) guard-only machine, (b) regex guard with
//! captures over log lines, (c) 100 per-key instances with timeouts, the dispatch baseline, the
//! RTLola counting property (`rtlola-count`), and the four first specs as one spec of four
//! monitors, evaluated event by event (`all-1`) and in batches on two threads (`all-2`).
//! `cargo bench -p monitor --bench engine`; figures in docs/performance.md.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use monitor::{compile, Runner, Selection, SourceFile};
use std::hint::black_box;
use trace::gen::{self, GenConfig};
use trace::Event;

const EVENTS: u64 = 200_000;

fn events() -> Vec<Event> {
    let mut v: Vec<Event> = gen::events(&GenConfig::default().with_event_count(EVENTS)).collect();
    v.sort_by_key(|e| e.ts_ns);
    for (i, e) in v.iter_mut().enumerate() {
        e.seq = i as u64 + 1;
    }
    v
}

fn bench(c: &mut Criterion) {
    let evs = events();
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(evs.len() as u64));
    g.sample_size(10);
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/specs");
    let source = |case: &str| {
        let p = dir.join(format!("{case}.spec"));
        let text = std::fs::read_to_string(&p).expect("bench spec");
        SourceFile::new(p.to_string_lossy(), text)
    };
    let end = evs.last().map(|e| e.ts_ns).unwrap_or(0);
    for case in ["baseline", "guards", "regex", "keyed", "rtlola-count"] {
        let spec = match compile(&[source(case)], &|_, _| None) {
            Ok(s) => s,
            Err(d) => panic!("{}", d.render()),
        };
        g.bench_function(case, |b| {
            b.iter(|| {
                let mut r = Runner::new(&spec, &Selection::default()).expect("runner");
                for e in &evs {
                    r.observe(&e.as_ref());
                }
                black_box(r.finish(end))
            })
        });
    }
    let four: Vec<SourceFile> = ["baseline", "guards", "regex", "keyed"]
        .into_iter()
        .map(source)
        .collect();
    let spec = match compile(&four, &|_, _| None) {
        Ok(s) => s,
        Err(d) => panic!("{}", d.render()),
    };
    let refs: Vec<trace::EventRef<'_>> = evs.iter().map(|e| e.as_ref()).collect();
    for threads in [1, 2] {
        g.bench_function(format!("all-{threads}"), |b| {
            b.iter(|| {
                let mut r = Runner::new(&spec, &Selection::default()).expect("runner");
                r.set_threads(threads);
                for chunk in refs.chunks(8192) {
                    r.observe_batch(chunk);
                }
                black_box(r.finish(end))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
