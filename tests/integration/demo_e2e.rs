//! The README's first command, as tests: the seed's split-brain experiment end to end. One
//! Docker test records `examples/split-brain/scenario.toml` with the recorder (four demo-node
//! cluster members, GC pause of right-a, partition of the middle network) and checks the live
//! verdicts, then judges the same trace offline twice: `AutoDownSplitBrain` must accept step by
//! step, and the deliberately wrong expectation `ClusterSurvivesPartition` ("the cluster stays
//! whole after the partition") must fail with an explanation naming the deciding poll (seq, time,
//! service) and the guard values, in text and in JSON. A test without Docker checks the same two
//! verdicts on the committed sample trace `traces/sample-split-brain`, so the sample stays valid
//! as the code evolves. The seed's other ported examples (hello-world, lossy-network,
//! resource-fault, split-brain-2seed) are recorded the same way, one Docker test each: the live
//! verdict accepts, `analyzer check` accepts every step of the example's experiment, and one fact
//! the example is about is read from the trace itself.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use integration_tests::{
    bin, ensure_images, project_containers, project_networks, require_docker, unique_project,
    workspace_root, ProjectGuard,
};
use serde_json::Value;
use tempfile::TempDir;
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
    check_with(trace, &spec_args(), experiment, json)
}

/// `analyzer check TRACE SPEC_ARGS --experiment NAME [--format json]`: exit code and stdout.
fn check_with(trace: &Path, spec_args: &[String], experiment: &str, json: bool) -> (i32, String) {
    let mut cmd = Command::new(bin("analyzer"));
    cmd.arg("check")
        .arg(trace)
        .args(spec_args)
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
    // the scenario's own time limit is 110 s; teardown and finalizing come on top
    let rec = record_example(
        "split-brain",
        "AutoDownSplitBrain",
        Duration::from_secs(170),
    );
    let events = &rec.events;

    // live verdicts (each accepted, checked by record_example): all 14 steps ended, four
    // expect steps among them
    let ends: Vec<Value> = events
        .iter()
        .filter(|e| e.source == "recorder" && e.kind == "step")
        .map(data)
        .filter(|d| d["phase"] == "end" && d["experiment"] == "AutoDownSplitBrain")
        .collect();
    assert_eq!(ends.len(), 14, "{ends:#?}");
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

    judge_split_brain_trace(&rec.trace);
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
        "disk-full",
        "hello-world",
        "http-retries",
        "lossy-network",
        "resource-fault",
        "split-brain",
        "split-brain-2seed",
        "zookeeper",
        "redis-sentinel",
        "otel",
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

/// One example recorded by `recorder run` under a unique project name: the trace (in a temporary
/// directory that lives as long as this) and its events. The project is removed when dropped.
pub(crate) struct Recorded {
    pub(crate) trace: PathBuf,
    pub(crate) events: Vec<Event>,
    _dir: TempDir,
    _guard: ProjectGuard,
}

/// Records `examples/<example>/scenario.toml` (project `ctkt<tag>...`, bounded by `limit`) and
/// checks the live judgement: exit 0, `verdict: accept`, every step of `experiment` ended with
/// accept, and nothing of the project left behind.
pub(crate) fn record_example(example: &str, experiment: &str, limit: Duration) -> Recorded {
    ensure_images();
    let project = unique_project(example);
    let guard = ProjectGuard::new(&project);
    let dir = tempfile::tempdir().expect("tempdir");
    let trace_dir = dir.path().join("trace");
    let scenario = workspace_root()
        .join("examples")
        .join(example)
        .join("scenario.toml");
    let (code, out) = record(&scenario, &trace_dir, &project, limit);
    assert_eq!(code, 0, "recorder run of {example} failed:\n{out}");
    assert!(out.contains("verdict: accept"), "{example}:\n{out}");
    assert!(
        project_containers(&project).is_empty() && project_networks(&project).is_empty(),
        "the recorder left containers or networks of {project} behind"
    );
    // the manifest says which scenario and specs this is a run of (`analyzer flaky` groups by it)
    let m = trace::Manifest::read(&trace_dir).expect("manifest");
    let sha = |p: &Path| recorder::compose::file_sha256(p).expect("hashable");
    assert_eq!(m.scenario.name, example);
    assert_eq!(m.scenario.sha256, sha(&scenario));
    assert!(
        !m.specs.is_empty() && m.specs.iter().all(|s| s.sha256 == sha(Path::new(&s.path))),
        "{:?}",
        m.specs
    );
    let events = read_events(&trace_dir);
    let ends: Vec<Value> = events
        .iter()
        .filter(|e| e.source == "recorder" && e.kind == "step")
        .map(data)
        .filter(|d| d["phase"] == "end" && d["experiment"] == experiment)
        .collect();
    assert!(!ends.is_empty(), "{example}: no step ended live:\n{out}");
    for d in &ends {
        assert_eq!(d["verdict"], "accept", "{example}: {d}\n{out}");
    }
    Recorded {
        trace: trace_dir,
        events,
        _dir: dir,
        _guard: guard,
    }
}

/// `analyzer check` of a recorded example with its specs: exit 0 and every step `ok` (text) and
/// `accept` (JSON), as many steps in both.
pub(crate) fn judge_example(trace: &Path, specs: &[&str], experiment: &str) {
    let root = workspace_root();
    let args: Vec<String> = specs
        .iter()
        .flat_map(|s| {
            [
                "--spec".to_string(),
                root.join(s).to_string_lossy().into_owned(),
            ]
        })
        .collect();
    let (code, text) = check_with(trace, &args, experiment, false);
    assert_eq!(code, 0, "{experiment} did not accept:\n{text}");
    let (code, json) = check_with(trace, &args, experiment, true);
    assert_eq!(code, 0, "{json}");
    let r: Value = serde_json::from_str(&json).expect("json report");
    let exp = &r["traces"][0]["report"]["experiments"][0];
    assert_eq!(exp["name"], experiment, "{exp:#}");
    assert_eq!(exp["verdict"], "accept", "{exp:#}");
    let steps = exp["steps"].as_array().expect("steps");
    assert!(!steps.is_empty(), "{exp:#}");
    for s in steps {
        assert_eq!(s["verdict"], "accept", "step {}: {s:#}", s["text"]);
    }
    // the step lines of the text report (`ok    1. expect ...`): one per step, all ok
    let step_lines: Vec<&str> = text
        .lines()
        .map(str::trim_start)
        .filter(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|n| n.strip_suffix('.'))
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .collect();
    assert_eq!(step_lines.len(), steps.len(), "{text}");
    for l in &step_lines {
        assert!(l.starts_with("ok "), "a step is not ok: {l}\n{text}");
    }
}

/// The seed's HelloWorld: the greeting and the numbered lines, in order, then exit 0.
#[test]
fn hello_world_example_records_and_judges() {
    require_docker!();
    // the scenario's own time limit is 60 s
    let rec = record_example("hello-world", "HelloWorld", Duration::from_secs(110));
    judge_example(&rec.trace, &["specs/hello-world.spec"], "HelloWorld");

    let lines: Vec<&str> = rec
        .events
        .iter()
        .filter(|e| {
            e.source == "log" && e.kind == "stdout" && e.service.as_deref() == Some("basic")
        })
        .map(|e| e.message.as_deref().unwrap_or(""))
        .collect();
    let want = [
        "Hello from Docker!",
        "This message shows that your installation appears to be working correctly.",
        "1. ",
        "2. ",
        "3. ",
        "4. ",
    ];
    assert_eq!(lines.len(), want.len(), "{lines:#?}");
    for (got, want) in lines.iter().zip(want) {
        assert!(
            got.starts_with(want),
            "{got:?} where {want:?} was expected: {lines:#?}"
        );
    }
    let exits: Vec<Value> = rec
        .events
        .iter()
        .filter(|e| {
            e.source == "docker" && e.kind == "die" && e.service.as_deref() == Some("basic")
        })
        .map(|e| data(e)["attributes"]["exitCode"].clone())
        .collect();
    assert_eq!(exits, [Value::from("0")], "the die events of basic");
}

/// The seed's LossyNetwork: while the iptables loss holds, a share of the client's probes time
/// out (30% per direction: about half), and the experiment's three windows accept.
#[test]
fn lossy_network_example_records_and_judges() {
    require_docker!();
    // the scenario's own time limit is 100 s
    let rec = record_example("lossy-network", "LossyNetwork", Duration::from_secs(160));
    judge_example(&rec.trace, &["specs/network.spec"], "LossyNetwork");

    let phase_ns = |phase: &str, field: &str| {
        rec.events
            .iter()
            .find(|e| e.source == "fault" && e.kind == "loss" && data(e)["phase"] == phase)
            .and_then(|e| data(e)[field].as_i64())
            .unwrap_or_else(|| panic!("no {phase} loss fault with {field} in the trace"))
    };
    // from when the loss was in place to when its revert began
    let (from, until) = (
        phase_ns("applied", "ended_ns"),
        phase_ns("reverted", "started_ns"),
    );
    assert!(from < until, "loss window {from}..{until}");
    let probes: Vec<&str> = rec
        .events
        .iter()
        .filter(|e| e.source == "log" && e.service.as_deref() == Some("client"))
        .filter(|e| e.ts_ns >= from && e.ts_ns <= until)
        .filter_map(|e| e.message.as_deref())
        .filter(|m| m.starts_with("ping seq="))
        .collect();
    assert!(
        probes.len() >= 20,
        "too few probes in the lossy window: {probes:#?}"
    );
    let lost = probes.iter().filter(|m| !m.contains(" rtt=")).count();
    let share = lost as f64 / probes.len() as f64;
    assert!(
        (0.1..=0.9).contains(&share),
        "{lost} of {} probes lost in the lossy window ({share:.2}): {probes:#?}",
        probes.len()
    );
}

/// The seed's resource fault: lowering hog's memory limit gets it killed (exit code 137).
#[test]
fn resource_fault_example_records_and_judges() {
    require_docker!();
    // the scenario's own time limit is 90 s
    let rec = record_example("resource-fault", "ResourceFault", Duration::from_secs(150));
    judge_example(&rec.trace, &["specs/resource.spec"], "ResourceFault");

    let limits = rec
        .events
        .iter()
        .find(|e| e.source == "fault" && e.kind == "limits" && data(e)["phase"] == "applied")
        .map(|e| e.ts_ns)
        .expect("an applied limits fault in the trace");
    let killed: Vec<&Event> = rec
        .events
        .iter()
        .filter(|e| {
            e.ts_ns >= limits && e.source == "docker" && e.service.as_deref() == Some("hog")
        })
        .filter(|e| e.kind == "oom" || e.kind == "die")
        .filter(|e| data(e)["attributes"]["exitCode"] == "137")
        .collect();
    assert!(
        !killed.is_empty(),
        "no docker oom/die event of hog with exit code 137 after the limits fault"
    );
}

/// The seed's disk-full use case (libfiu, without LD_PRELOAD): the `syscall` fault makes writes
/// under /data fail with ENOSPC for 4 s; the store logs it, keeps serving reads and recovers.
#[test]
fn disk_full_example_records_and_judges() {
    require_docker!();
    // the scenario's own time limit is 90 s
    let rec = record_example("disk-full", "DiskFull", Duration::from_secs(150));
    judge_example(&rec.trace, &["specs/disk-full.spec"], "DiskFull");
    let faults: Vec<Value> = rec
        .events
        .iter()
        .filter(|e| e.source == "fault" && e.kind == "syscall")
        .map(data)
        .collect();
    let phases: Vec<&str> = faults.iter().filter_map(|d| d["phase"].as_str()).collect();
    assert_eq!(phases, ["applied", "reverted"], "{faults:#?}");
    let reverted = &faults[1];
    assert_eq!(reverted["error"], Value::Null, "{reverted:#}");
    let injected = reverted["params"]["injected"].as_u64().unwrap_or(0);
    let failed = rec
        .events
        .iter()
        .filter(|e| {
            e.source == "log" && e.message.as_deref().is_some_and(|m| m.contains("errno=28"))
        })
        .count() as u64;
    // each failed append is one injected write (the trace may miss none of them)
    assert!(
        failed >= 5 && injected == failed,
        "injected {injected}, logged {failed}"
    );
}

/// The seed's SplitBrain2Seed: left-a's and right-a's views are two disjoint clusters that hold
/// all four nodes between them.
#[test]
fn split_brain_2seed_example_records_and_judges() {
    require_docker!();
    // the scenario's own time limit is 100 s
    let rec = record_example(
        "split-brain-2seed",
        "SplitBrain2Seed",
        Duration::from_secs(160),
    );
    judge_example(
        &rec.trace,
        &["specs/split-brain-2seed.spec"],
        "SplitBrain2Seed",
    );

    // the Up members of the last poll of `node`
    let last_view = |node: &str| -> Vec<String> {
        let poll = rec
            .events
            .iter()
            .rev()
            .find(|e| {
                e.source == "jmx"
                    && e.kind == "akka:type=Cluster"
                    && e.service.as_deref() == Some(node)
            })
            .unwrap_or_else(|| panic!("no poll of {node}"));
        let mut up: Vec<String> = data(poll)["ClusterStatus"]["members"]
            .as_array()
            .map(|m| {
                m.iter()
                    .filter(|m| m["status"] == "Up")
                    .filter_map(|m| m["address"].as_str().map(|a| host(a).to_string()))
                    .collect()
            })
            .unwrap_or_default();
        up.sort();
        up
    };
    let left = last_view("left-a");
    let right = last_view("right-a");
    assert!(
        left.iter().any(|n| n == "left-a") && right.iter().any(|n| n == "right-a"),
        "left-a: {left:?}, right-a: {right:?}"
    );
    assert!(
        left.iter().all(|n| !right.contains(n)),
        "one cluster, not two: left-a sees {left:?}, right-a sees {right:?}"
    );
    let mut all: Vec<String> = left.iter().chain(&right).cloned().collect();
    all.sort();
    assert_eq!(all, NODES, "left-a sees {left:?}, right-a sees {right:?}");
}

/// The ZooKeeper ensemble (examples/zookeeper): a real JVM system read through the agent the
/// recorder attaches. LeaderFailover accepts live and offline, and the trace shows it: the agent
/// attached in all three servers and stopped at the end, zk3 leading before the partition, a new
/// leader among zk1/zk2 and zk3 looking while cut off, zk3 following after the heal, quorum size
/// 3 and the heap read from every server.
#[test]
fn zookeeper_example_records_and_judges() {
    require_docker!();
    if !crate::jmx_attach::jmx_prereqs() {
        return;
    }
    // the scenario's own time limit is 150 s
    let rec = record_example("zookeeper", "LeaderFailover", Duration::from_secs(220));
    judge_example(&rec.trace, &["specs/zookeeper.spec"], "LeaderFailover");

    let servers = ["zk1", "zk2", "zk3"];
    let jmx_of = |svc: &str| -> Vec<&Event> {
        rec.events
            .iter()
            .filter(|e| e.source == "jmx" && e.service.as_deref() == Some(svc))
            .collect()
    };
    for s in servers {
        // attached once and stopped at the end; an attempt before the entrypoint started the
        // JVM is a `no_jvm` failure, retried
        let attaches: Vec<Value> = jmx_of(s)
            .iter()
            .filter(|e| e.kind == "attach")
            .map(|e| data(e))
            .collect();
        let phases: Vec<&str> = attaches
            .iter()
            .map(|d| d["phase"].as_str().unwrap_or(""))
            .filter(|p| *p != "failed")
            .collect();
        assert_eq!(phases, ["attached", "stopped"], "{s}: {attaches:#?}");
        for d in attaches.iter().filter(|d| d["phase"] == "failed") {
            assert_eq!(d["error_type"], "no_jvm", "{s}: {d:#}");
        }
        let quorum = jmx_of(s)
            .into_iter()
            .find(|e| {
                e.kind
                    .starts_with("org.apache.ZooKeeperService:name0=ReplicatedServer_id")
                    && !e.kind.contains(",name1=")
            })
            .unwrap_or_else(|| panic!("no quorum bean of {s}"));
        assert_eq!(data(quorum)["QuorumSize"], 3, "{quorum:?}");
        assert!(
            jmx_of(s).iter().any(|e| e.kind == "java.lang:type=Memory"
                && data(e)["HeapMemoryUsage"]["used"].is_number()),
            "no heap reading of {s}"
        );
    }
    // the servers' states (their own peer bean) around the fault
    let fault_ts = |kind: &str| -> i64 {
        rec.events
            .iter()
            .find(|e| e.source == "fault" && e.kind == kind && data(e)["phase"] == "applied")
            .map(|e| e.ts_ns)
            .unwrap_or_else(|| panic!("no applied {kind} fault"))
    };
    let (cut, heal) = (fault_ts("partition"), fault_ts("heal"));
    let state = |svc: &str, from: i64, to: i64| -> Vec<String> {
        jmx_of(svc)
            .into_iter()
            .filter(|e| e.ts_ns >= from && e.ts_ns < to)
            .filter_map(|e| data(e)["State"].as_str().map(str::to_string))
            .collect()
    };
    assert_eq!(
        state("zk3", 0, cut).last().map(String::as_str),
        Some("leading")
    );
    let new_leaders: Vec<&str> = ["zk1", "zk2"]
        .into_iter()
        .filter(|s| state(s, cut, heal).iter().any(|st| st == "leading"))
        .collect();
    assert_eq!(
        new_leaders.len(),
        1,
        "one new leader between the cut and the heal: {new_leaders:?}"
    );
    assert!(
        state("zk3", cut, heal)
            .iter()
            .any(|st| st == "leaderelection" || st == "looking"),
        "zk3 never lost its leadership while cut off"
    );
    assert_eq!(
        state("zk3", heal, i64::MAX).last().map(String::as_str),
        Some("following")
    );
}

/// Redis with Sentinel (examples/redis-sentinel), Debian's packages: the experiment binds the
/// master, partitions it from the replicas and sentinels (the client still reaches it), a
/// replica is promoted, the old master keeps acknowledging writes, and after the heal it comes
/// back as a replica. The experiment accepts live and offline; of the monitors, one master
/// outside the failover window and the failover within 15 s accept, and "acknowledged writes
/// are never lost" fails, naming the lost writes with the node and time of their
/// acknowledgement (Redis replicates asynchronously: what the cut-off master acknowledged is
/// dropped when it rejoins as a replica).
#[test]
fn redis_sentinel_example_loses_acknowledged_writes() {
    require_docker!();
    let status = Command::new("bash")
        .arg(workspace_root().join("scripts/build-redis-image.sh"))
        .status();
    assert!(
        matches!(status, Ok(s) if s.success()),
        "scripts/build-redis-image.sh failed: {status:?}"
    );
    // the scenario's own time limit is 5 min
    let rec = record_example(
        "redis-sentinel",
        "SentinelFailover",
        Duration::from_secs(360),
    );
    judge_example(
        &rec.trace,
        &["specs/redis-sentinel.spec"],
        "SentinelFailover",
    );

    // the binding recorded live: the master the partition cut off
    let bound = |step: u64| -> String {
        rec.events
            .iter()
            .filter(|e| e.source == "recorder" && e.kind == "step")
            .map(data)
            .find(|d| d["phase"] == "end" && d["step"] == step)
            .and_then(|d| d["binding"]["value"].as_str().map(str::to_string))
            .unwrap_or_else(|| panic!("no binding recorded by step {}", step + 1))
    };
    let (m, n) = (bound(0), bound(2));
    assert_eq!(m, "redis-1", "the initial master");
    assert!(n == "redis-2" || n == "redis-3", "promoted: {n}");

    let spec = workspace_root().join("specs/redis-sentinel.spec");
    let o = Command::new(bin("analyzer"))
        .arg("check")
        .arg(&rec.trace)
        .arg("--spec")
        .arg(&spec)
        .args([
            "--monitor",
            "ackedWritesKept",
            "--monitor",
            "oneMaster",
            "--monitor",
            "failoverWithin15s",
            "--format",
            "json",
        ])
        .output()
        .expect("run analyzer");
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let r: Value = serde_json::from_slice(&o.stdout).expect("json report");
    let monitors = r["traces"][0]["report"]["monitors"]
        .as_array()
        .expect("monitors");
    let verdict = |name: &str| -> &Value {
        monitors
            .iter()
            .find(|x| x["name"] == name)
            .unwrap_or_else(|| panic!("no monitor {name}: {monitors:#?}"))
    };
    assert_eq!(
        verdict("oneMaster")["verdict"],
        "accept",
        "{:#}",
        verdict("oneMaster")
    );
    assert_eq!(
        verdict("failoverWithin15s")["verdict"],
        "accept",
        "{:#}",
        verdict("failoverWithin15s")
    );
    let lost = verdict("ackedWritesKept");
    assert_eq!(lost["verdict"], "fail", "{lost:#}");
    let reason = lost["explanation"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("acknowledged writes lost: [")
            && reason.contains(&format!("(acknowledged by {m} at ")),
        "{reason}"
    );
    // the deciding event is the client's read-back summary
    let deciding = lost["explanation"]["deciding_event"]["excerpt"]
        .as_str()
        .unwrap_or_default();
    assert!(
        deciding.starts_with(&format!("readback from {n}: ")),
        "{lost:#}"
    );
    // every write the client logged as lost was acknowledged by the old master, after the cut
    let cut = rec
        .events
        .iter()
        .find(|e| e.source == "fault" && e.kind == "partition" && data(e)["phase"] == "applied")
        .map(|e| e.ts_ns)
        .expect("the partition");
    let logs: Vec<&Event> = rec
        .events
        .iter()
        .filter(|e| e.source == "log" && e.service.as_deref() == Some("client"))
        .collect();
    let lost_lines: Vec<&str> = logs
        .iter()
        .filter_map(|e| e.message.as_deref()?.strip_prefix("lost "))
        .collect();
    assert!(lost_lines.len() >= 10, "{lost_lines:?}");
    for l in &lost_lines {
        let w = l.split(' ').next().unwrap_or_default();
        let ack = logs
            .iter()
            .find(|e| e.message.as_deref() == Some(&format!("ack {w} by {m}")))
            .unwrap_or_else(|| panic!("{w} lost but not acknowledged by {m}"));
        assert!(ack.ts_ns > cut, "{w} acknowledged before the partition");
    }
}
