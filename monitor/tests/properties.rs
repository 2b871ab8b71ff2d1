//! Property tests: verdicts (and deciding events) do not change when irrelevant events are
//! interleaved, replaying the same trace twice gives the same report, and keyed monitors split by
//! key over threads report what one leaf reports.

mod common;
use common::*;
use proptest::prelude::*;

fn base_trace() -> Vec<trace::Event> {
    let all = ["left-a", "left-b", "right-a", "right-b"];
    let mut v = Vec::new();
    let mut seq = 0;
    for t in 0..8 {
        seq += 1;
        v.push(cluster(seq, t as f64, "left-a", &all, &[]));
    }
    seq += 1;
    v.push(fault(seq, 8.0, "partition", &[], &["middle"], "applied"));
    for t in 9..20 {
        seq += 1;
        let unr: &[&str] = if t < 12 { &["right-a", "right-b"] } else { &[] };
        let up: &[&str] = if t < 12 { &all } else { &["left-a", "left-b"] };
        v.push(cluster(seq, t as f64, "left-a", up, unr));
        seq += 1;
        v.push(log(
            seq,
            t as f64 + 0.5,
            "left-a",
            if t == 15 { "ERROR disk" } else { "ok" },
        ));
    }
    v
}

const SPEC: &str = r#"
def host_of(a) = split(split(a, "@")[1], ":")[0]
def up(n) = any m in data.ClusterStatus.members: host_of(m.address) == n and m.status == "Up"
monitor inC(nodes: str...) {
  state forming { on jmx "akka:type=Cluster" where len(data.ClusterStatus.unreachable) == 0 and all n in nodes: up(n) => goto stable timeout 2s }
  state stable {
    on jmx "akka:type=Cluster" where len(data.ClusterStatus.unreachable) > 0 => goto forming
    on timeout => accept
  }
}
monitor noErrors = never log from left-a where message ~ "ERROR"
monitor errs per service { window e = count(message ~ "ERROR") over last 5 events of log
  state s { on log where e > 0 => fail "error seen" on end => accept } }
experiment x {
  expect inC(left-a, left-b, right-a, right-b) at left-a within 10s
  do partition on network middle
  expect inC(left-a, left-b) at left-a within 10s
}
"#;

fn summary(r: &monitor::Report) -> Vec<(String, monitor::Verdict, Option<u64>)> {
    let mut v: Vec<_> = r
        .monitors
        .iter()
        .map(|m| {
            (
                m.name.clone(),
                m.verdict,
                m.primary_explanation()
                    .and_then(|e| e.deciding_event.as_ref())
                    .map(|d| d.seq),
            )
        })
        .collect();
    for e in &r.experiments {
        for s in &e.steps {
            v.push((
                s.text.clone(),
                s.verdict.unwrap_or(monitor::Verdict::Inconclusive),
                s.monitor
                    .as_ref()
                    .and_then(|m| m.primary_explanation())
                    .and_then(|e| e.deciding_event.as_ref())
                    .map(|d| d.seq),
            ));
        }
    }
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn irrelevant_events_do_not_change_verdicts(noise in prop::collection::vec((0u32..19_000, 0usize..4), 0..60)) {
        let spec = spec(SPEC);
        let sel = monitor::Selection::default();
        let base = base_trace();
        let end = base.last().map(|e| e.ts_ns);
        let want = summary(&run(&spec, sel.clone(), &base, end));
        let mut evs = base.clone();
        for (i, (ms, kind)) in noise.iter().enumerate() {
            let secs = *ms as f64 / 1000.0;
            let seq = 100_000 + i as u64;
            evs.push(match kind {
                0 => log(seq, secs, "noise", "all good from another service"),
                1 => ev(seq, secs, "stats", "stats").service("left-a").data(&serde_json::json!({"cpu": 3})),
                2 => cluster(seq, secs, "right-b", &["right-b"], &["left-a"]),
                _ => ev(seq, secs, "docker", "exec_start").service("left-b"),
            });
        }
        evs.sort_by_key(|e| (e.ts_ns, e.seq));
        let got = summary(&run(&spec, sel, &evs, end));
        prop_assert_eq!(want, got);
    }

    #[test]
    fn replay_is_deterministic(extra in prop::collection::vec(0u32..19_000, 0..40)) {
        let spec = spec(SPEC);
        let mut evs = base_trace();
        for (i, ms) in extra.iter().enumerate() {
            evs.push(log(200_000 + i as u64, *ms as f64 / 1000.0, "left-a", if i % 3 == 0 { "ERROR x" } else { "fine" }));
        }
        evs.sort_by_key(|e| (e.ts_ns, e.seq));
        let a = run(&spec, monitor::Selection::default(), &evs, None);
        let b = run(&spec, monitor::Selection::default(), &evs, None);
        prop_assert_eq!(serde_json::to_string(&a).unwrap_or_default(), serde_json::to_string(&b).unwrap_or_default());
    }
}

/// Keyed monitors whose instances fail by event, by timeout (ties at one deadline included), at
/// the end, accept and stay inconclusive: what a keyed monitor split by key over threads
/// (`Runner::set_threads`) must report exactly as one leaf does. The `per` keys have the shapes
/// read without the generic evaluator (an event field, `seq % N`, a `data` path); `KEYED_SLOW`
/// keys the same monitors by equal expressions the generic evaluator computes.
const KEYED: &str = r#"
monitor busy per service {
  state idle {
    on event where kind == "a" => goto busy timeout 2s
    on event where kind == "c" => accept "done"
  }
  state busy {
    on event where kind == "b" => goto idle
    on event where kind == "x" => fail "x while busy in " + service
    on timeout => fail "slow"
    on end => fail "still busy"
  }
}
monitor rounds per seq % 7 {
  var n = 0
  state s {
    on event where kind == "x" and n > 2 => inconclusive "unsure after " + str(n)
    on event where kind == "b" => set n = n + 1, goto t timeout 1s
  }
  state t {
    on timeout => goto s
    on event where kind == "c" => fail "c while waiting"
    on end => accept
  }
}
monitor lenient per message {
  state s { on event where kind == "a" => goto t timeout 500ms on end => accept }
  state t { on event => goto s on timeout => goto s on end => inconclusive "open" }
}
monitor shaped per data.k {
  state s { on event where kind == "x" => fail "x for " + str(data.k) on event => goto s }
}
"#;

fn keyed_slow() -> String {
    KEYED
        .replace("per service {", "per service + \"\" {")
        .replace("per seq % 7 {", "per (seq + 0) % 7 {")
        .replace("per message {", "per message + \"\" {")
        .replace("per data.k {", "per [data.k][0] {")
}

fn keyed_trace(raw: &[(u32, usize, usize)]) -> Vec<trace::Event> {
    let kinds = ["a", "b", "c", "x", "a", "b"];
    let services = ["s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8"];
    let mut evs: Vec<trace::Event> = raw
        .iter()
        .enumerate()
        .map(|(i, (ms, k, s))| {
            // times on a coarse grid: many events share a time, timeouts tie with events
            let secs = f64::from(ms / 250 * 250) / 1000.0;
            let data = match (s + k) % 4 {
                0 => serde_json::json!({"k": s % 3}),
                1 => serde_json::json!({"k": services[k % 3]}),
                2 => serde_json::json!({"k": [s % 2]}),
                _ => serde_json::json!({}),
            };
            let e = ev(i as u64 + 1, secs, "log", kinds[k % kinds.len()])
                .service(services[s % services.len()])
                .message(services[(s + k) % 4])
                .data(&data);
            // some events without a service: a null key makes no instance
            if *s == 8 {
                trace::Event { service: None, ..e }
            } else {
                e
            }
        })
        .collect();
    evs.sort_by_key(|e| (e.ts_ns, e.seq));
    evs
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn keyed_monitors_split_over_threads_report_what_one_leaf_reports(
        raw in prop::collection::vec((0u32..20_000, 0usize..6, 0usize..9), 0..160),
        threads in 2usize..6,
        batch in prop::sample::select(vec![1usize, 3, 16, 1_000]),
        tail_ms in 0i64..3_000,
    ) {
        let keyed = spec(KEYED);
        let evs = keyed_trace(&raw);
        let end = evs.last().map_or(T0, |e| e.ts_ns) + tail_ms * 1_000_000;
        let want = run(&keyed, monitor::Selection::default(), &evs, Some(end));
        let refs: Vec<trace::EventRef<'_>> = evs.iter().map(|e| e.as_ref()).collect();
        // event by event on the split monitors, then in batches on threads
        let mut seq = monitor::Runner::new(&keyed, &monitor::Selection::default()).expect("runner");
        seq.set_threads(threads);
        for e in &refs {
            seq.observe(e);
        }
        let mut par = monitor::Runner::new(&keyed, &monitor::Selection::default()).expect("runner");
        par.set_threads(threads);
        prop_assert!(par.parallel_parts() >= 3 * threads);
        for chunk in refs.chunks(batch) {
            par.observe_batch(chunk);
        }
        let want_json = serde_json::to_string(&want).expect("json");
        // the specialised keys give what the generic evaluator gives
        let slow = run(&spec(&keyed_slow()), monitor::Selection::default(), &evs, Some(end));
        prop_assert_eq!(&serde_json::to_string(&slow).expect("json"), &want_json);
        prop_assert_eq!(&serde_json::to_string(&seq.finish(end)).expect("json"), &want_json);
        prop_assert_eq!(&serde_json::to_string(&par.finish(end)).expect("json"), &want_json);
    }
}
