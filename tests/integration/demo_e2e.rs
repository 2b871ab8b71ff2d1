//! The README's first command, as tests: the seed's split-brain experiment end to end. One
//! Docker test records `examples/split-brain/scenario.toml` with the recorder (four demo-node
//! cluster members, GC pause of right-a, partition of the middle network) and checks the live
//! verdicts, then judges the same trace offline twice: `AutoDownSplitBrain` must accept step by
//! step, and the deliberately wrong expectation `ClusterSurvivesPartition` ("the cluster stays
//! whole after the partition") must fail with an explanation naming the deciding poll (seq, time,
//! service) and the guard values, in text and in JSON. A test without Docker checks the same two
//! verdicts on the committed sample trace `traces/sample-split-brain`, so the sample stays valid
//! as the code evolves.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use integration_tests::{
    bin, ensure_images, project_containers, project_networks, require_docker, unique_project,
    workspace_root, ProjectGuard,
};
use serde_json::Value;
use trace::Event;

use crate::recorder_common::read_events;

const NODES: [&str; 4] = ["left-a", "left-b", "right-a", "right-b"];

fn spec_args() -> Vec<String> {
    let root = workspace_root();
    let mut v = Vec::new();
    for s in ["specs/akka.spec", "specs/split-brain.spec"] {
        v.push("--spec".to_string());
        v.push(root.join(s).to_string_lossy().into_owned());
    }
    v
}

/// `analyzer check TRACE --spec akka --spec split-brain --experiment NAME [--format json]`:
/// exit code and stdout.
fn check(trace: &Path, experiment: &str, json: bool) -> (i32, String) {
    let mut cmd = Command::new(bin("analyzer"));
    cmd.arg("check")
        .arg(trace)
        .args(spec_args())
        .args(["--experiment", experiment]);
    if json {
        cmd.args(["--format", "json"]);
    }
    let out = cmd.output().expect("run analyzer");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn data(e: &Event) -> Value {
    serde_json::from_str(e.data.as_deref().unwrap_or("null")).unwrap_or(Value::Null)
}

fn host(addr: &str) -> &str {
    addr.split('@')
        .nth(1)
        .and_then(|h| h.split(':').next())
        .unwrap_or("")
}

/// The first poll of left-a after the partition was applied whose view is not the whole cluster
/// (something unreachable, or not all four Up): what `ClusterSurvivesPartition` must name.
fn first_split_poll(events: &[Event]) -> Event {
    let cut = events
        .iter()
        .find(|e| e.source == "fault" && e.kind == "partition" && data(e)["phase"] == "applied")
        .expect("an applied partition fault in the trace");
    events
        .iter()
        .filter(|e| e.ts_ns >= cut.ts_ns && e.source == "jmx" && e.kind == "akka:type=Cluster")
        .filter(|e| e.service.as_deref() == Some("left-a"))
        .find(|e| {
            let cs = &data(e)["ClusterStatus"];
            let unreachable = cs["unreachable"].as_array().map_or(0, Vec::len);
            let up: Vec<&str> = cs["members"]
                .as_array()
                .map(|m| {
                    m.iter()
                        .filter(|m| m["status"] == "Up")
                        .filter_map(|m| m["address"].as_str().map(host))
                        .collect()
                })
                .unwrap_or_default();
            unreachable > 0 || !NODES.iter().all(|n| up.contains(n))
        })
        .cloned()
        .expect("a poll of left-a showing the split after the partition")
}

/// The offline judgement of a split-brain trace: AutoDownSplitBrain accepts every step (text
/// and JSON), ClusterSurvivesPartition fails at the first split poll of left-a with its seq,
/// time, service and the guard values in the explanation.
fn judge_split_brain_trace(trace: &Path) {
    // --- the experiment accepts, step by step
    let (code, text) = check(trace, "AutoDownSplitBrain", false);
    assert_eq!(code, 0, "AutoDownSplitBrain did not accept:\n{text}");
    let (code, json) = check(trace, "AutoDownSplitBrain", true);
    assert_eq!(code, 0, "{json}");
    let r: Value = serde_json::from_str(&json).expect("json report");
    let exp = &r["traces"][0]["report"]["experiments"][0];
    assert_eq!(exp["name"], "AutoDownSplitBrain");
    assert_eq!(exp["verdict"], "accept", "{exp:#}");
    let steps = exp["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 14, "{exp:#}");
    for s in steps {
        assert_eq!(s["verdict"], "accept", "step {}: {s:#}", s["text"]);
        assert!(
            text.contains(&format!(
                "ok {:>4}. ",
                s["index"].as_u64().unwrap_or(99) + 1
            )),
            "text report lacks an ok line for step {}:\n{text}",
            s["text"]
        );
    }
    let faults: Vec<&str> = steps
        .iter()
        .filter(|s| s["kind"] == "do")
        .filter_map(|s| s["fault"]["kind"].as_str())
        .collect();
    assert_eq!(faults, ["pause", "unpause", "partition"], "{exp:#}");

    // --- the deliberately wrong expectation fails, naming the deciding poll
    let events = read_events(trace);
    let bad = first_split_poll(&events);
    let (code, text) = check(trace, "ClusterSurvivesPartition", false);
    assert_eq!(code, 1, "ClusterSurvivesPartition did not fail:\n{text}");
    let time = monitor::fmt_ts(bad.ts_ns);
    // the nanoseconds of the poll's timestamp, whatever the date format
    let nanos = format!(".{:09}", bad.ts_ns.rem_euclid(1_000_000_000));
    let deciding = text
        .lines()
        .find(|l| l.trim_start().starts_with("deciding event:"))
        .unwrap_or_else(|| panic!("no deciding event in the explanation:\n{text}"));
    for want in [
        format!("seq {}", bad.seq),
        time,
        nanos,
        "jmx left-a akka:type=Cluster".to_string(),
    ] {
        assert!(
            deciding.contains(&want),
            "deciding event line lacks {want:?}: {deciding}\n{text}"
        );
    }
    assert!(text.contains("the guard saw:"), "{text}");
    assert!(text.contains("none_unreachable = false"), "{text}");
    assert!(text.contains("cluster did not stay whole"), "{text}");

    let (code, json) = check(trace, "ClusterSurvivesPartition", true);
    assert_eq!(code, 1, "{json}");
    let r: Value = serde_json::from_str(&json).expect("json report");
    let exp = &r["traces"][0]["report"]["experiments"][0];
    assert_eq!(exp["verdict"], "fail", "{exp:#}");
    let step = &exp["steps"][2];
    assert_eq!(
        (step["kind"].as_str(), step["verdict"].as_str()),
        (Some("expect"), Some("fail")),
        "{exp:#}"
    );
    let ex = &step["monitor"]["explanation"];
    let d = &ex["deciding_event"];
    assert_eq!(d["seq"].as_u64(), Some(bad.seq), "{ex:#}");
    assert_eq!(d["ts_ns"].as_i64(), Some(bad.ts_ns), "{ex:#}");
    assert_eq!(d["service"], "left-a", "{ex:#}");
    assert_eq!(d["source"], "jmx", "{ex:#}");
    let guards = ex["guard_values"].as_array().expect("guard values");
    let value_of = |expr: &str| {
        guards
            .iter()
            .find(|g| g["expr"] == expr)
            .map(|g| g["value"].clone())
    };
    assert_eq!(value_of("has_status"), Some(Value::from("true")), "{ex:#}");
    assert_eq!(
        value_of("none_unreachable"),
        Some(Value::from("false")),
        "{ex:#}"
    );
}

/// Runs `recorder run` with a deadline; returns the exit code and its output (stdout and stderr).
fn record(scenario: &Path, output: &Path, project: &str, limit: Duration) -> (i32, String) {
    let logs = output.with_extension("log");
    let stdout = std::fs::File::create(&logs).expect("stdout file");
    let stderr = stdout.try_clone().expect("stderr file");
    let mut child = Command::new(bin("recorder"))
        .args(["run", "--quiet", "--project", project, "--output"])
        .arg(output)
        .arg(scenario)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .expect("start recorder");
    let start = Instant::now();
    let code = loop {
        if let Some(st) = child.try_wait().expect("wait recorder") {
            break st.code().unwrap_or(-1);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("recorder run did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    (code, std::fs::read_to_string(&logs).unwrap_or_default())
}

/// demo.sh in CI: record the split-brain example with the recorder (live verdicts accept),
/// judge the trace offline (accept), and judge the wrong expectation on the same trace (fail,
/// naming the deciding event).
#[test]
fn split_brain_demo_records_and_judges() {
    require_docker!();
    ensure_images();
    let project = unique_project("demo");
    let _guard = ProjectGuard::new(&project);
    let dir = tempfile::tempdir().expect("tempdir");
    let trace_dir = dir.path().join("trace");
    let scenario: PathBuf = workspace_root().join("examples/split-brain/scenario.toml");
    // the scenario's own time limit is 110 s; teardown and finalizing come on top
    let (code, out) = record(&scenario, &trace_dir, &project, Duration::from_secs(170));
    assert_eq!(code, 0, "recorder run failed:\n{out}");
    assert!(out.contains("verdict: accept"), "{out}");
    assert!(
        project_containers(&project).is_empty() && project_networks(&project).is_empty(),
        "the recorder left containers or networks of {project} behind"
    );

    // live verdicts: every step ended with accept; four expect steps among them
    let events = read_events(&trace_dir);
    let ends: Vec<Value> = events
        .iter()
        .filter(|e| e.source == "recorder" && e.kind == "step")
        .map(data)
        .filter(|d| d["phase"] == "end" && d["experiment"] == "AutoDownSplitBrain")
        .collect();
    assert_eq!(ends.len(), 14, "{ends:#?}");
    for d in &ends {
        assert_eq!(d["verdict"], "accept", "{d}");
    }
    assert_eq!(
        ends.iter().filter(|d| d["step_kind"] == "expect").count(),
        4
    );
    // every node is polled at its left/right address, so the cut of `middle` (which drops the
    // host's bridge address on it too) costs no poll: no jmx error after the partition
    let cut = events
        .iter()
        .find(|e| e.source == "fault" && e.kind == "partition")
        .map(|e| e.ts_ns)
        .expect("partition fault");
    let errors: Vec<&Event> = events
        .iter()
        .filter(|e| e.source == "jmx" && e.kind == "error" && e.ts_ns >= cut)
        .collect();
    assert!(
        errors.is_empty(),
        "jmx polls failed after the partition: {errors:?}"
    );
    for n in NODES {
        assert!(
            events.iter().any(|e| e.ts_ns > cut
                && e.source == "jmx"
                && e.kind == "akka:type=Cluster"
                && e.service.as_deref() == Some(n)),
            "no poll of {n} after the partition"
        );
    }

    judge_split_brain_trace(&trace_dir);
}

/// The committed sample (what demo.sh judges without Docker) is a finalized recording of the same
/// experiment and still gives both verdicts.
#[test]
fn sample_split_brain_trace_still_judges() {
    let sample = workspace_root().join("traces/sample-split-brain");
    let t = trace::Trace::open(&sample).expect("open the sample trace");
    assert!(t.is_finalized(), "the sample trace is not finalized");
    judge_split_brain_trace(&sample);
}

/// Every example's scenario validates with `recorder check` (compose configuration, sensors'
/// services, the experiment compiled from its specs, fault actions known): no engine needed,
/// only the compose CLI.
#[test]
fn example_scenarios_validate() {
    let compose_ok = ["docker compose version", "docker-compose version"]
        .iter()
        .any(|c| {
            Command::new("sh")
                .args(["-c", &format!("{c} >/dev/null 2>&1")])
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        });
    if !compose_ok {
        eprintln!("note: no compose CLI; skipping the example scenario check");
        return;
    }
    let examples = workspace_root().join("examples");
    let mut scenarios: Vec<PathBuf> = std::fs::read_dir(&examples)
        .expect("examples/")
        .filter_map(|e| e.ok().map(|e| e.path().join("scenario.toml")))
        .filter(|p| p.is_file())
        .collect();
    scenarios.sort();
    let names: Vec<String> = scenarios
        .iter()
        .filter_map(|p| p.parent()?.file_name()?.to_str().map(str::to_string))
        .collect();
    for want in [
        "hello-world",
        "lossy-network",
        "resource-fault",
        "split-brain",
        "split-brain-2seed",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "no scenario for {want}: {names:?}"
        );
    }
    for s in &scenarios {
        let out = Command::new(bin("recorder"))
            .arg("check")
            .arg(s)
            .output()
            .expect("run recorder check");
        assert!(
            out.status.success(),
            "{} does not validate: {}{}",
            s.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
