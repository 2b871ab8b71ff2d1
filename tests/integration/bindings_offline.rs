//! `analyzer check` of an experiment with bindings on generated traces: the leader of three
//! separately polled members is found (`specs/leader.spec`: a `latest ... by service` map,
//! exactly one leader for 2 s, `accept with` the leader), partitioned through the binding,
//! another is elected, and the old one comes back as a follower. The bound values are printed,
//! compared with those the recorder recorded, and a difference is reported.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::json;
use trace::{Event, Manifest, TraceWriter};

const T0: i64 = 1_700_000_000_000_000_000;
const EXP: &str = "LeaderFailover";

fn at(secs: f64) -> i64 {
    T0 + (secs * 1e9) as i64
}

fn spec() -> String {
    integration_tests::workspace_root()
        .join("specs/leader.spec")
        .to_string_lossy()
        .into_owned()
}

fn check(trace: &Path) -> Output {
    integration_tests::run(
        &integration_tests::bin("analyzer"),
        &[
            "check",
            &trace.to_string_lossy(),
            "--spec",
            &spec(),
            "--experiment",
            EXP,
        ],
    )
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// How a generated run goes.
struct Run {
    /// The value the recorder recorded for `L` (the leader before the partition).
    recorded_l: &'static str,
    /// Does the old leader come back as a follower after the heal?
    old_leader_follows: bool,
}

/// A fault the recorder applied for step `step` of the experiment.
fn fault(secs: f64, action: &str, step: u64, services: &[&str]) -> Event {
    Event::new(at(secs), "fault", action)
        .message(format!("{action} {}", services.join(", ")))
        .data(&json!({
            "fault_id": format!("f{step}"), "phase": "applied",
            "experiment": EXP, "step": step,
            "target": {"services": services, "containers": [], "networks": []},
            "params": {}, "intended_ns": at(secs), "started_ns": at(secs), "ended_ns": at(secs),
            "error": null
        }))
}

/// The recorder's end event of a binding step.
fn bound(secs: f64, step: u64, name: &str, value: &str) -> Event {
    Event::new(at(secs), "recorder", "step")
        .message(format!("end step {}", step + 1))
        .data(&json!({
            "experiment": EXP, "step": step, "step_kind": "expect", "phase": "end",
            "verdict": "accept", "binding": {"name": name, "value": value}
        }))
}

/// Three members polled every 500 ms for 31 s: e2 leads until the partition at 3 s (and, cut
/// off, keeps saying so), e1 is elected at 6 s, the heal comes at 9 s, and e2 then follows
/// (or keeps claiming leadership).
fn generate(dir: &Path, run: &Run) -> PathBuf {
    let trace = dir.join("trace");
    let mut w = TraceWriter::create(
        &trace,
        Manifest {
            run_id: "bindings-offline".into(),
            started_ns: Some(T0),
            ..Default::default()
        },
    )
    .expect("create trace");
    let mut events = Vec::new();
    for k in 0..=62 {
        let t = k as f64 * 0.5;
        for (i, m) in ["e1", "e2", "e3"].iter().enumerate() {
            let leader = match *m {
                "e1" => t >= 6.0,
                "e2" => t < 9.5 || !run.old_leader_follows,
                _ => false,
            };
            // members answer a few milliseconds apart
            events.push(
                Event::new(at(t + i as f64 * 0.003), "http", "response")
                    .service(*m)
                    .data(&json!({"url": format!("http://{m}/leader"), "status": 200, "body": {"is_leader": leader as i64}})),
            );
        }
    }
    events.push(bound(2.3, 0, "L", run.recorded_l));
    events.push(fault(3.0, "partition", 1, &["e2", "e1", "e3"]));
    events.push(bound(8.3, 2, "N", "e1"));
    events.push(fault(9.0, "heal", 3, &["e2", "e1", "e3"]));
    events.sort_by_key(|e| e.ts_ns);
    for e in events {
        w.append(e).expect("append");
    }
    w.finish().expect("finish trace");
    trace
}

#[test]
fn the_bound_leader_is_partitioned_and_comes_back_as_a_follower() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let trace = generate(
        tmp.path(),
        &Run {
            recorded_l: "e2",
            old_leader_follows: true,
        },
    );
    let o = check(&trace);
    let s = text(&o);
    assert_eq!(o.status.code(), Some(0), "{s}");
    assert!(s.contains("ok   experiment LeaderFailover"), "{s}");
    assert!(s.contains("bound: L = \"e2\""), "{s}");
    assert!(s.contains("bound: N = \"e1\""), "{s}");
    assert!(
        s.contains("2. do partition between [L] and members - [L]"),
        "{s}"
    );
    assert!(!s.contains("warning"), "{s}");
}

#[test]
fn a_binding_that_differs_from_the_recorded_one_is_reported() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let trace = generate(
        tmp.path(),
        &Run {
            recorded_l: "e3",
            old_leader_follows: true,
        },
    );
    let o = check(&trace);
    let s = text(&o);
    assert_eq!(o.status.code(), Some(2), "{s}");
    assert!(
        s.contains("warning: step 1 binds `L` to \"e2\" recomputed from the trace, but the recorder bound \"e3\""),
        "{s}"
    );
    assert!(
        s.contains("INCONCLUSIVE experiment LeaderFailover")
            || s.contains("experiment LeaderFailover"),
        "{s}"
    );
}

#[test]
fn an_old_leader_that_still_leads_fails_the_last_step() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let trace = generate(
        tmp.path(),
        &Run {
            recorded_l: "e2",
            old_leader_follows: false,
        },
    );
    let o = check(&trace);
    let s = text(&o);
    assert_eq!(o.status.code(), Some(1), "{s}");
    assert!(s.contains("5. expect follower(L) within 20s"), "{s}");
    assert!(
        s.contains("`expect follower(L) within 20s` did not accept within 20s"),
        "{s}"
    );
}

/// The committed Redis Sentinel recording (`traces/sample-redis-sentinel`, see
/// examples/README.md) judged without Docker: the experiment accepts with the master and the
/// promoted replica bound, one master outside the failover window and the failover in time
/// accept, and the acknowledged writes the old master took while cut off are reported lost.
#[test]
fn the_redis_sentinel_sample_loses_acknowledged_writes() {
    let root = integration_tests::workspace_root();
    let o = integration_tests::run(
        &integration_tests::bin("analyzer"),
        &[
            "check",
            &root.join("traces/sample-redis-sentinel").to_string_lossy(),
            "--spec",
            &root.join("specs/redis-sentinel.spec").to_string_lossy(),
        ],
    );
    let s = text(&o);
    assert_eq!(o.status.code(), Some(1), "{s}");
    for ok in [
        "ok   monitor failoverWithin15s",
        "ok   monitor oneMaster",
        "ok   experiment SentinelFailover",
        "bound: M = \"redis-1\"",
        "bound: N = \"redis-3\"",
    ] {
        assert!(s.contains(ok), "no `{ok}` in:\n{s}");
    }
    assert!(s.contains("FAIL monitor ackedWritesKept"), "{s}");
    assert!(
        s.contains("126 acknowledged writes lost: [\"w48 (acknowledged by redis-1 at 2026-12-01T15:12:55.658345976Z)\""),
        "{s}"
    );
    assert!(
        s.contains("deciding event: +25.223s 2026-12-01T15:13:12.730937567Z seq 842 log client stdout readback from redis-3: 193 acknowledged, 126 lost"),
        "{s}"
    );
}
