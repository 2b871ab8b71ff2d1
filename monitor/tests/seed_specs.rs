//! The seed specs under `specs/` compile, and the split-brain experiment judges synthetic traces
//! of the seed's scenario: the good run accepts, a broken run fails at the deviating event, a
//! run without the fault record is inconclusive.

mod common;
use common::*;
use monitor::{Runner, Selection, Verdict};

#[test]
fn every_seed_spec_compiles() {
    for f in [
        "akka.spec",
        "split-brain.spec",
        "hello-world.spec",
        "network.spec",
        "stable.spec",
    ] {
        let _ = seed_spec(f);
    }
}

/// A synthetic trace of the seed scenario. `partition_ok`: after the partition each side sees
/// only itself (true) or right-a never leaves left-a's view (false). `with_fault`: whether the
/// recorder's partition fault event is present.
fn split_brain_trace(partition_ok: bool, with_pause_fault: bool) -> Vec<trace::Event> {
    let all = ["left-a", "left-b", "right-a", "right-b"];
    let mut v = Vec::new();
    let mut seq = 0;
    let mut next = || {
        seq += 1;
        seq
    };
    for t in 0..6 {
        v.push(cluster(next(), t as f64, "left-a", &all, &[]));
    }
    if with_pause_fault {
        v.push(fault(next(), 6.0, "pause", &["right-a"], &[], "applied"));
    }
    for t in 7..10 {
        v.push(cluster(next(), t as f64, "left-a", &all, &["right-a"]));
    }
    v.push(fault(next(), 10.0, "unpause", &["right-a"], &[], "applied"));
    for t in 11..16 {
        v.push(cluster(next(), t as f64, "left-a", &all, &[]));
    }
    v.push(fault(
        next(),
        16.0,
        "partition",
        &[],
        &["middle"],
        "applied",
    ));
    for t in 17..30 {
        let ts = t as f64;
        if t < 20 {
            v.push(cluster(next(), ts, "left-a", &all, &["right-a", "right-b"]));
            v.push(cluster(
                next(),
                ts + 0.1,
                "left-b",
                &all,
                &["right-a", "right-b"],
            ));
            v.push(cluster(
                next(),
                ts + 0.2,
                "right-a",
                &all,
                &["left-a", "left-b", "right-b"],
            ));
            v.push(cluster(
                next(),
                ts + 0.3,
                "right-b",
                &all,
                &["left-a", "left-b", "right-a"],
            ));
        } else if partition_ok {
            v.push(cluster(next(), ts, "left-a", &["left-a", "left-b"], &[]));
            v.push(cluster(
                next(),
                ts + 0.1,
                "left-b",
                &["left-a", "left-b"],
                &[],
            ));
            v.push(cluster(next(), ts + 0.2, "right-a", &["right-a"], &[]));
            v.push(cluster(next(), ts + 0.3, "right-b", &["right-b"], &[]));
        } else {
            v.push(cluster(next(), ts, "left-a", &all, &["right-b"]));
            v.push(cluster(
                next(),
                ts + 0.1,
                "left-b",
                &["left-a", "left-b"],
                &[],
            ));
        }
        v.push(log(next(), ts + 0.5, "left-a", "some unrelated chatter"));
    }
    v
}

/// The seed's `AutoDownSplitBrain` experiment of `split-brain.spec` judged over `events`.
fn run_auto_down(events: &[trace::Event], end: Option<i64>) -> monitor::Report {
    run(
        &seed_spec("split-brain.spec"),
        experiment("AutoDownSplitBrain"),
        events,
        end,
    )
}

/// The last step of an experiment that got a verdict.
fn last_judged_step(e: &monitor::ExperimentResult) -> &monitor::StepResult {
    e.steps
        .iter()
        .rev()
        .find(|s| s.verdict.is_some())
        .expect("a judged step")
}

#[test]
fn split_brain_experiment_accepts_the_seed_scenario() {
    let r = run_auto_down(&split_brain_trace(true, true), None);
    let e = &r.experiments[0];
    assert_eq!(e.verdict, Verdict::Accept, "{:#?}", e);
    let kinds: Vec<_> = e
        .steps
        .iter()
        .map(|s| (s.kind.as_str(), s.verdict))
        .collect();
    assert!(
        kinds.iter().all(|(_, v)| *v == Some(Verdict::Accept)),
        "{kinds:?}"
    );
    // the first expect accepted 3s after the first complete view (settle), at trace time T0+3s
    assert_eq!(e.steps[0].end_ns, Some(T0 + 3 * S));
    // the pause step was matched to the recorded fault event at 6s
    assert_eq!(e.steps[2].fault.as_ref().map(|f| f.ts_ns), Some(T0 + 6 * S));
    // the last expect accepted once all four views settled: right-b's view at 20.3s + 3s
    let last = e
        .steps
        .iter()
        .rev()
        .find(|s| s.kind == "expect")
        .and_then(|s| s.end_ns);
    assert_eq!(last, Some(T0 + 23 * S + 300_000_000));
}

/// A partition that changes nothing (every view stays whole) must not pass for a split: the
/// views still hold all four nodes, so `inCluster(left-a, left-b)` never accepts and the last step
/// fails at its `within` limit.
#[test]
fn split_brain_partition_without_effect_fails() {
    let mut events = split_brain_trace(true, true);
    let cut = events
        .iter()
        .position(|e| e.source == "fault" && e.kind == "partition")
        .expect("partition fault");
    let all = ["left-a", "left-b", "right-a", "right-b"];
    events.truncate(cut + 1);
    let mut seq = events.last().map_or(0, |e| e.seq);
    for t in 17..40 {
        for (i, n) in all.iter().enumerate() {
            seq += 1;
            events.push(cluster(seq, t as f64 + i as f64 / 10.0, n, &all, &[]));
        }
    }
    let r = run_auto_down(&events, Some(T0 + 200 * S));
    let e = &r.experiments[0];
    assert_eq!(e.verdict, Verdict::Fail, "{e:#?}");
    let last = last_judged_step(e);
    assert_eq!((last.kind.as_str(), last.index), ("expect", 12), "{e:#?}");
}

#[test]
fn split_brain_without_fault_record_is_inconclusive() {
    let r = run_auto_down(&split_brain_trace(true, false), None);
    let e = &r.experiments[0];
    assert_eq!(e.verdict, Verdict::Inconclusive);
    let reason = e.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("no fault record matching `do pause on right-a`"),
        "{reason}"
    );
}

#[test]
fn split_brain_with_a_stuck_node_fails_at_the_deviating_poll() {
    let r = run_auto_down(&split_brain_trace(false, true), Some(T0 + 200 * S));
    let e = &r.experiments[0];
    assert_eq!(e.verdict, Verdict::Fail, "{e:#?}");
    let last = last_judged_step(e);
    assert_eq!(last.kind, "expect");
    let m = last.monitor.as_ref().expect("monitor result");
    let ex = m.primary_explanation().expect("explanation");
    assert!(
        ex.reason.contains("did not accept within 1m"),
        "{}",
        ex.reason
    );
    // the within limit is measured from the partition fault at 16s
    assert_eq!(
        ex.timeout.as_ref().map(|t| t.deadline_ns),
        Some(T0 + 76 * S)
    );
}

#[test]
fn wrong_expectation_fails_naming_the_deciding_event() {
    let spec = seed_spec("split-brain.spec");
    let events = split_brain_trace(true, true);
    let r = run(&spec, experiment("ClusterSurvivesPartition"), &events, None);
    let e = &r.experiments[0];
    assert_eq!(e.verdict, Verdict::Fail, "{e:#?}");
    let ex = e.steps[2]
        .monitor
        .as_ref()
        .and_then(|m| m.primary_explanation())
        .expect("explanation");
    let first_bad = events
        .iter()
        .find(|x| {
            x.ts_ns >= T0 + 17 * S && x.service.as_deref() == Some("left-a") && x.source == "jmx"
        })
        .expect("event");
    assert_eq!(
        ex.deciding_event.as_ref().map(|d| d.seq),
        Some(first_bad.seq)
    );
    assert!(
        ex.guard_values
            .iter()
            .any(|g| g.expr.contains("none_unreachable") || g.expr.contains("unreachable")),
        "{:?}",
        ex.guard_values
    );
}

#[test]
fn seed_cluster_monitors_judge_views() {
    let spec = seed_spec("akka.spec");
    let all = ["left-a", "left-b", "right-a", "right-b"];
    let evs = vec![
        cluster(1, 0.0, "left-a", &all, &[]),
        cluster(2, 1.0, "left-a", &all, &["right-a"]),
        cluster(3, 2.0, "left-a", &["left-a", "left-b"], &[]),
    ];
    let src = "import \"akka.spec\"\nmonitor u = unreachable(right-a) at left-a\nmonitor n = notInCluster(right-a) at left-a\nmonitor o = observedClusterMembers(2)\nmonitor i = inCluster(left-a, left-b) at left-a\n";
    let dir = specs_dir();
    let spec2 = monitor::compile(
        &[monitor::SourceFile::new(
            dir.join("t.spec").to_string_lossy(),
            src,
        )],
        &|p, _| {
            std::fs::read_to_string(dir.join(p))
                .ok()
                .map(|t| monitor::SourceFile::new(dir.join(p).to_string_lossy(), t))
        },
    )
    .unwrap_or_else(|d| panic!("{}", d.render()));
    let _ = spec;
    let r = run(
        &spec2,
        monitors(&["u", "n", "o", "i"]),
        &evs,
        Some(T0 + 10 * S),
    );
    let v: Vec<_> = r
        .monitors
        .iter()
        .map(|m| {
            (
                m.name.as_str(),
                m.verdict,
                m.explanation
                    .as_ref()
                    .and_then(|e| e.deciding_event.as_ref())
                    .map(|d| d.seq),
            )
        })
        .collect();
    assert_eq!(v[0], ("u", Verdict::Accept, Some(2)));
    assert_eq!(v[1], ("n", Verdict::Accept, Some(3)));
    assert_eq!(v[2], ("o", Verdict::Accept, Some(3)));
    // inCluster(left-a, left-b): seq 1 and 2 still hold right-a and right-b (not exactly the
    // two nodes), the view at seq 3 holds until the end (+10s): accepted by the settle timeout
    assert_eq!(v[3], ("i", Verdict::Accept, None));
    let path = &r.monitors[3]
        .explanation
        .as_ref()
        .expect("explanation")
        .path;
    let states: Vec<_> = path
        .iter()
        .map(|t| (t.from.as_str(), t.to.as_str(), t.seq))
        .collect();
    assert_eq!(states, vec![("forming", "stable", Some(3))]);
}

/// Generated traces of the seed scenarios (healthy, a GC pause, the split-brain run recorded as
/// experiment `splitBrain`), in `(ts_ns, seq)` order with writer-assigned sequence numbers.
fn generated_traces() -> Vec<Vec<trace::Event>> {
    use std::time::Duration;
    use trace::gen::{self, GenConfig, Scenario};
    let scenarios = [
        (Scenario::healthy(), None),
        (
            Scenario::gc_pause("right-a", Duration::from_secs(20), Duration::from_secs(8)),
            None,
        ),
        (
            Scenario::split_brain(),
            Some("AutoDownSplitBrain".to_string()),
        ),
    ];
    scenarios
        .into_iter()
        .map(|(scenario, experiment)| {
            let cfg = GenConfig {
                scenario,
                experiment,
                duration: Duration::from_secs(70),
                auto_down_after: Some(Duration::from_secs(10)),
                ..GenConfig::default()
            };
            let mut v: Vec<trace::Event> = gen::events(&cfg).collect();
            v.sort_by_key(|e| (e.ts_ns, e.seq));
            for (i, e) in v.iter_mut().enumerate() {
                e.seq = i as u64 + 1;
            }
            v
        })
        .collect()
}

/// `Runner::observe_batch` on several threads gives the report one thread gives, event by event:
/// same verdicts, explanations and order, for every seed spec and generated trace, whatever the
/// batch size.
#[test]
fn parallel_batches_report_what_one_thread_reports() {
    let traces = generated_traces();
    let specs = [
        "akka.spec",
        "network.spec",
        "stable.spec",
        "hello-world.spec",
        "split-brain.spec",
    ];
    let mut compared = 0;
    for file in specs {
        let spec = seed_spec(file);
        for evs in &traces {
            let refs: Vec<trace::EventRef<'_>> = evs.iter().map(|e| e.as_ref()).collect();
            let end = evs.last().map_or(T0, |e| e.ts_ns + S);
            let sequential = run(&spec, Selection::default(), evs, Some(end));
            for (threads, batch) in [(2, 1), (2, 97), (3, 4096), (8, 100_000)] {
                let mut r = Runner::new(&spec, &Selection::default()).expect("runner");
                r.set_threads(threads);
                for chunk in refs.chunks(batch) {
                    r.observe_batch(chunk);
                }
                let parallel = r.finish(end);
                assert_eq!(
                    serde_json::to_string(&parallel).expect("json"),
                    serde_json::to_string(&sequential).expect("json"),
                    "{file}: {threads} threads, batches of {batch}"
                );
                assert_eq!(parallel, sequential);
            }
            compared += 1;
        }
    }
    assert_eq!(compared, specs.len() * traces.len());
}
