//! Property tests: verdicts (and deciding events) do not change when irrelevant events are
//! interleaved, and replaying the same trace twice gives the same report.

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
