//! Halt conditions, the fault scope and replay on real Docker (issue 19): a halt condition that
//! fails mid-fault reverts every fault (host state checked during the cool-down), records the
//! cool-down and exits 6, and `analyzer check` shows the halt; targets outside `[scope]` are
//! refused before anything starts (with their position) and when a target resolves at run
//! time; `recorder run --replay` repeats a schedule's offsets and random targets, refuses a
//! changed scenario unless `--force`, and `analyzer diff` compares an experiment's replay with
//! the original.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use integration_tests::{
    bin, compose_command, ensure_images, project_containers, project_networks, require_docker,
    unique_project, ProjectGuard,
};
use recorder::faults::scope::Scope;
use recorder::faults::{FaultInjector, FaultRequest, FaultTarget};
use recorder::sink::EventSink;
use serde_json::Value;
use trace::Event;

use crate::recorder_common::{peer_compose, read_events, replay, run_recorder, write_scenario};

fn sh(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().expect("run command");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The container id of `service` in `project` ("" when there is none).
fn container(project: &str, service: &str) -> String {
    sh(
        "docker",
        &[
            "ps",
            "-aq",
            "--filter",
            &format!("label=com.docker.compose.project={project}"),
            "--filter",
            &format!("label=com.docker.compose.service={service}"),
        ],
    )
    .split_whitespace()
    .next()
    .unwrap_or_default()
    .to_string()
}

fn paused(c: &str) -> bool {
    sh("docker", &["inspect", "-f", "{{.State.Paused}}", c]).trim() == "true"
}

/// `iptables -S` and `tc qdisc show` inside the container's network namespace.
fn netns_state(c: &str) -> (String, String) {
    let pid = sh("docker", &["inspect", "-f", "{{.State.Pid}}", c])
        .trim()
        .to_string();
    (
        sh("nsenter", &["-t", &pid, "-n", "iptables", "-w", "-S"]),
        sh("nsenter", &["-t", &pid, "-n", "tc", "qdisc", "show"]),
    )
}

fn data(e: &Event) -> Value {
    serde_json::from_str(e.data.as_deref().unwrap_or("null")).unwrap_or(Value::Null)
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while t0.elapsed() < timeout {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

const HALT_SPEC: &str = r#"
monitor notPaused(svc: str) {
  state up {
    on docker "pause" from svc => fail "the service was paused"
    on end => accept
  }
}
"#;

#[test]
fn halt_reverts_every_fault_records_the_cool_down_and_exits_6() {
    require_docker!();
    ensure_images();
    let project = unique_project("halt");
    let _guard = ProjectGuard::new(&project);
    let (dir, scenario) = write_scenario(
        &project,
        &peer_compose(10, 200),
        "time_limit = \"120s\"\nduration = \"40s\"",
        r#"[[schedule]]
at = "1s"
fault = "partition"
target = { between = [["a"], ["b"]] }

[[schedule]]
at = "3s"
fault = "pause"
target = "b"

[[schedule]]
at = "25s"
fault = "kill"
target = "a"

[halt]
specs = ["halt.spec"]
monitors = ["notPaused(b)"]
cool_down = "8s"
"#,
    );
    std::fs::write(dir.path().join("halt.spec"), HALT_SPEC).expect("write spec");
    let child = Command::new(bin("recorder"))
        .args(["run", "--quiet"])
        .arg(&scenario)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn recorder");
    // the faults are applied, then the halt reverts them; the containers still run in the
    // cool-down, so the host state can be read then
    wait_until("b to exist", Duration::from_secs(60), || {
        !container(&project, "b").is_empty()
    });
    let (a, b) = (container(&project, "a"), container(&project, "b"));
    wait_until("b paused by the schedule", Duration::from_secs(60), || {
        paused(&b)
    });
    wait_until("b unpaused by the halt", Duration::from_secs(5), || {
        !paused(&b)
    });
    // the partition's rules went with it (no duration: only the halt or teardown reverts it)
    wait_until(
        "partition reverted in a's namespace",
        Duration::from_secs(3),
        || {
            let (ipt, tc) = netns_state(&a);
            !ipt.contains("CTK-") && !tc.contains("htb")
        },
    );
    assert!(
        !project_containers(&project).is_empty(),
        "the project must still run during the cool-down"
    );
    let out = child.wait_with_output().expect("wait recorder");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(6), "{stdout}\n{stderr}");
    assert!(stdout.contains("status: halted (exit 6)"), "{stdout}");
    assert!(stderr.contains("halted: `notPaused(b)` failed"), "{stderr}");
    assert!(project_containers(&project).is_empty(), "containers left");
    assert!(project_networks(&project).is_empty(), "networks left");

    let trace_dir = dir.path().join("trace");
    let t = trace::Trace::open(&trace_dir).expect("trace");
    assert_eq!(
        t.manifest().outcome.as_ref().map(|o| o.status.as_str()),
        Some("halted")
    );
    let ev = read_events(&trace_dir);
    let halt: Vec<&Event> = ev
        .iter()
        .filter(|e| e.source == "recorder" && e.kind == "halt")
        .collect();
    assert_eq!(halt.len(), 1, "one halt event");
    let h = halt[0];
    let d = data(h);
    assert_eq!(d["monitor"], "notPaused(b)", "{d}");
    assert!(
        d["explanation"]
            .as_str()
            .is_some_and(|x| x.contains("the service was paused")),
        "{d}"
    );
    // the deciding event is the pause of b
    let seq = d["deciding_seq"].as_u64().expect("deciding seq");
    let deciding = ev.iter().find(|e| e.seq == seq).expect("deciding event");
    assert_eq!(
        (deciding.source.as_str(), deciding.kind.as_str()),
        ("docker", "pause")
    );
    assert_eq!(d["deciding_ts_ns"].as_i64(), Some(deciding.ts_ns));
    let latency = d["latency_ms"].as_f64().expect("latency");
    assert!(latency > 0.0 && latency < 5000.0, "latency {latency} ms");
    // both faults reverted by the halt, before its event; the kill at 25s never applied
    let faults: Vec<(&Event, Value)> = ev
        .iter()
        .filter(|e| e.source == "fault")
        .map(|e| (e, data(e)))
        .collect();
    let applied: Vec<&str> = faults
        .iter()
        .filter(|(_, d)| d["phase"] == "applied")
        .map(|(e, _)| e.kind.as_str())
        .collect();
    assert_eq!(applied, ["partition", "pause"], "{applied:?}");
    let reverted: Vec<&(&Event, Value)> = faults
        .iter()
        .filter(|(_, d)| d["phase"] == "reverted")
        .collect();
    assert_eq!(reverted.len(), 2);
    for (e, d) in &reverted {
        assert!(e.ts_ns <= h.ts_ns, "reverted after the halt event: {d}");
        assert!(d["error"].is_null(), "{d}");
    }
    assert_eq!(d["reverted"].as_array().map(Vec::len), Some(2), "{d}");
    // the cool-down is recorded: the system's events between the halt and teardown
    let teardown = ev
        .iter()
        .find(|e| e.source == "recorder" && e.kind == "teardown")
        .expect("teardown event");
    let cool = (teardown.ts_ns - h.ts_ns) as f64 / 1e9;
    assert!((7.5..20.0).contains(&cool), "cool-down {cool}s");
    let during = ev
        .iter()
        .filter(|e| {
            e.source == "log"
                && e.service.as_deref() == Some("b")
                && e.ts_ns > h.ts_ns
                && e.ts_ns < teardown.ts_ns
        })
        .count();
    assert!(during > 10, "b's recovery is in the trace ({during} lines)");

    // offline: `analyzer check` says where and why the run was halted
    let spec = dir.path().join("check.spec");
    std::fs::write(
        &spec,
        format!("{HALT_SPEC}\nmonitor bNotPaused = notPaused(b)\n"),
    )
    .expect("write check spec");
    let out = Command::new(bin("analyzer"))
        .arg("check")
        .arg(&trace_dir)
        .arg("--spec")
        .arg(&spec)
        .output()
        .expect("analyzer check");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("HALTED at +")
            && text.contains(&format!("(seq {})", h.seq))
            && text.contains("halt condition `notPaused(b)` failed: ")
            && text.contains(&format!("deciding event seq {seq}")),
        "{text}"
    );
    let out = Command::new(bin("analyzer"))
        .arg("check")
        .arg(&trace_dir)
        .arg("--spec")
        .arg(&spec)
        .args(["--format", "json"])
        .output()
        .expect("analyzer check json");
    let j: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(j["traces"][0]["halt"]["monitor"], "notPaused(b)", "{j}");
    assert_eq!(j["traces"][0]["halt"]["deciding_seq"].as_u64(), Some(seq));
}

/// A scenario whose targets leave the scope is refused with their positions; nothing starts.
#[test]
fn scope_refuses_targets_outside_it_before_anything_starts() {
    require_docker!();
    let project = unique_project("scope");
    let _guard = ProjectGuard::new(&project);
    let compose = peer_compose(10, 200).replace("  b:\n", "  b:\n    labels:\n      tier: back\n");
    let (dir, scenario) = write_scenario(
        &project,
        &compose,
        "time_limit = \"60s\"",
        r#"[scope]
services = ["a"]

[[schedule]]
at = "1s"
fault = "pause"
target = "a"

[[schedule]]
at = "2s"
fault = "pause"
target = { random = ["a", "b"] }

[[schedule]]
at = "3s"
fault = "loss"
target = { network = "middle" }
params = { percent = 10 }
"#,
    );
    let (code, _, stderr) = run_recorder(&scenario);
    assert_eq!(code, 3, "{stderr}");
    let text = std::fs::read_to_string(&scenario).expect("read");
    let line_of = |needle: &str| {
        text.lines()
            .position(|l| l.contains(needle))
            .map(|i| i + 1)
            .expect("line")
    };
    let random = format!(
        "scenario.toml:{}:10: fault target outside the scope: target names `b` (scope: a)",
        line_of("random = [")
    );
    let network = format!(
        "scenario.toml:{}:10: fault target outside the scope: network `middle` joins `b` (scope: a)",
        line_of("network = \"middle\"")
    );
    assert!(stderr.contains(&random), "{stderr}");
    assert!(stderr.contains(&network), "{stderr}");
    assert_eq!(stderr.matches("outside the scope").count(), 2, "{stderr}");
    assert!(project_containers(&project).is_empty(), "nothing may start");
    assert!(!dir.path().join("trace").exists(), "no trace");

    // an experiment's `do` step is refused at its place in the spec; labels widen the scope
    let spec = dir.path().join("exp.spec");
    std::fs::write(
        &spec,
        "experiment E {\n  do pause on a for 1s\n  do pause on b for 1s\n  do kill on random [a, b]\n}\n",
    )
    .expect("write spec");
    let exp = format!(
        "time_limit = \"60s\"\noutput = \"trace\"\n\n[compose]\nfiles = [\"compose.yml\"]\nproject = \"{project}\"\n\n[scope]\nservices = [\"a\"]\n\n[experiment]\nspecs = [\"exp.spec\"]\nname = \"E\"\n"
    );
    std::fs::write(&scenario, &exp).expect("write scenario");
    let (code, _, stderr) = run_recorder(&scenario);
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("exp.spec:3:3: experiment E, step 2 `do pause on b for 1s`: fault target outside the scope: target names `b` (scope: a)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("exp.spec:4:3: experiment E, step 3"),
        "{stderr}"
    );
    std::fs::write(
        &scenario,
        exp.replace(
            "services = [\"a\"]",
            "services = [\"a\"]\nlabels = [\"tier=back\"]",
        ),
    )
    .expect("write scenario");
    let out = Command::new(bin("recorder"))
        .arg("check")
        .arg(&scenario)
        .output()
        .expect("recorder check");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // a label no service has is an error at the label
    std::fs::write(
        &scenario,
        exp.replace("services = [\"a\"]", "labels = [\"tier=front\"]"),
    )
    .expect("write scenario");
    let out = Command::new(bin("recorder"))
        .arg("check")
        .arg(&scenario)
        .output()
        .expect("recorder check");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("scenario.toml:9:11: scope: no service has the label `tier=front`"),
        "{stderr}"
    );
    assert!(project_containers(&project).is_empty(), "nothing may start");
}

/// The run-time check: a target that resolves outside the scope is refused (a `failed` fault
/// event, nothing changed), one inside it is applied; a halt reverts it and refuses more; a
/// replay's recorded random choice replaces the seeded one.
#[test]
fn scope_refuses_a_target_resolved_outside_it_at_run_time() {
    require_docker!();
    ensure_images();
    let project = unique_project("scoperun");
    let _guard = ProjectGuard::new(&project);
    let d = tempfile::tempdir().expect("tempdir");
    let file = d.path().join("compose.yml");
    std::fs::write(&file, peer_compose(10, 200)).expect("write compose");
    let cmd = compose_command();
    let out = Command::new(&cmd[0])
        .args(&cmd[1..])
        .args(["-p", &project, "-f"])
        .arg(&file)
        .args(["up", "-d"])
        .output()
        .expect("compose up");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let docker = bollard::Docker::connect_with_local_defaults()
            .expect("docker")
            .negotiate_version()
            .await
            .expect("negotiate");
        let (sink, mut rx) = EventSink::channel();
        let mut inj = FaultInjector::new(docker.clone(), &project, sink, 3).expect("injector");
        inj.set_scope(Some(Scope::new(["a".to_string()])));
        let req = |t: FaultTarget| FaultRequest {
            action: "pause".into(),
            args: Vec::new(),
            target: t,
            duration: None,
            experiment: None,
            step: None,
            intended_ns: recorder::sink::now_ns(),
        };
        // a target reaching both services is refused whole
        let err = inj
            .apply(&req(FaultTarget::Services(vec!["a".into(), "b".into()])))
            .await
            .expect_err("b is outside the scope");
        assert!(
            err.to_string().contains("outside the scope: resolved to ")
                && err.to_string().contains("(service `b`) (scope: a)"),
            "{err}"
        );
        assert!(!paused(&container(&project, "a")), "nothing applied");
        assert!(!paused(&container(&project, "b")), "nothing applied");
        let id = inj
            .apply(&req(FaultTarget::Service("a".into())))
            .await
            .expect("a is in scope");
        assert!(paused(&container(&project, "a")));
        let reverted = inj.halt().await;
        assert_eq!(reverted, vec![id]);
        assert!(!paused(&container(&project, "a")), "halt reverted it");
        // after a halt nothing is applied
        assert!(inj
            .apply(&req(FaultTarget::Service("a".into())))
            .await
            .is_err());
        assert!(!paused(&container(&project, "a")));
        let mut evs = Vec::new();
        rx.drain_into(&mut evs, usize::MAX);
        let phases: Vec<String> = evs
            .iter()
            .filter(|e| e.source == "fault")
            .map(|e| data(e)["phase"].as_str().unwrap_or_default().to_string())
            .collect();
        assert_eq!(phases, ["failed", "applied", "reverted"], "{phases:?}");

        // a replay's recorded random choice wins over the seeded one; one that is not among
        // the options is refused
        let chosen = |choices: Vec<(u64, &'static str)>| {
            let docker = docker.clone();
            let project = project.clone();
            async move {
                let (sink, mut rx) = EventSink::channel();
                let mut inj = FaultInjector::new(docker, &project, sink, 3).expect("injector");
                inj.set_replay_choices(
                    choices
                        .into_iter()
                        .map(|(n, s)| (n, s.to_string()))
                        .collect(),
                );
                let r = inj
                    .apply(&req(FaultTarget::Random(vec!["a".into(), "b".into()])))
                    .await;
                inj.halt().await;
                let mut evs = Vec::new();
                rx.drain_into(&mut evs, usize::MAX);
                let first = evs.iter().find(|e| e.source == "fault").map(data);
                (
                    r.map_err(|e| e.to_string()),
                    first.and_then(|d| d["target"]["chosen"].as_str().map(str::to_string)),
                )
            }
        };
        let (r, seeded) = chosen(Vec::new()).await;
        assert!(r.is_ok(), "{r:?}");
        let seeded = seeded.expect("a seeded choice");
        let other = if seeded == "a" { "b" } else { "a" };
        let (r, replayed) = chosen(vec![(1, other)]).await;
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(replayed.as_deref(), Some(other));
        let (r, _) = chosen(vec![(1, "c")]).await;
        assert!(
            r.as_ref()
                .is_err_and(|e| e.contains("the recorded run chose `c` for f1")),
            "{r:?}"
        );
    });
}

/// `(fault kind, offset from the ready event in seconds, chosen service)` of every applied fault.
fn applied_offsets(dir: &Path) -> Vec<(String, f64, Option<String>)> {
    let ev = read_events(dir);
    let ready = ev
        .iter()
        .find(|e| e.source == "recorder" && e.kind == "ready")
        .map(|e| e.ts_ns)
        .expect("ready event");
    ev.iter()
        .filter(|e| e.source == "fault")
        .map(|e| (e, data(e)))
        .filter(|(_, d)| d["phase"] == "applied")
        .map(|(e, d)| {
            (
                e.kind.clone(),
                (e.ts_ns - ready) as f64 / 1e9,
                d["target"]["chosen"].as_str().map(str::to_string),
            )
        })
        .collect()
}

#[test]
fn replay_repeats_offsets_and_random_targets_and_refuses_a_changed_scenario() {
    require_docker!();
    ensure_images();
    let project = unique_project("replay");
    let _guard = ProjectGuard::new(&project);
    // a different seed each time the scenario runs without replay; the replay takes the trace's
    let (dir, scenario) = write_scenario(
        &project,
        &peer_compose(10, 200),
        "time_limit = \"90s\"\nduration = \"7s\"",
        r#"[[schedule]]
at = "1s"
fault = "pause"
target = { random = ["a", "b"] }
duration = "1s"

[[schedule]]
at = "3s"
fault = "pause"
target = { random = ["a", "b"] }
duration = "1s"

[[schedule]]
at = "5s"
fault = "pause"
target = { random = ["a", "b"] }
duration = "1s"
"#,
    );
    let (code, out, err) = run_recorder(&scenario);
    assert_eq!(code, 0, "{out}{err}");
    let original = dir.path().join("trace");
    let first = applied_offsets(&original);
    assert_eq!(first.len(), 3, "{first:?}");
    let replayed = dir.path().join("replayed");
    // the scenario given by the manifest (the path it was recorded from)
    let (code, out) = replay(&original, &replayed, &[]);
    assert_eq!(code, 0, "{out}");
    let second = applied_offsets(&replayed);
    assert_eq!(second.len(), 3, "{second:?}");
    for ((k1, o1, c1), (k2, o2, c2)) in first.iter().zip(&second) {
        assert_eq!(k1, k2);
        assert_eq!(c1, c2, "random targets differ: {first:?} {second:?}");
        assert!(
            (o1 - o2).abs() < 0.5,
            "offsets differ: {first:?} {second:?}"
        );
    }
    let m = trace::Manifest::read(&replayed).expect("manifest");
    let orig = trace::Manifest::read(&original).expect("manifest");
    let r = m.replay_of.expect("replay_of");
    assert_eq!(r.run_id, orig.run_id);
    assert!(!r.forced);
    assert_eq!(m.seed, orig.seed);

    // a changed scenario is refused, then run with --force (and the difference recorded)
    let text = std::fs::read_to_string(&scenario).expect("read");
    std::fs::write(&scenario, text.replace("at = \"5s\"", "at = \"4.5s\"")).expect("write");
    let refused = dir.path().join("refused");
    let (code, out) = replay(&original, &refused, &[]);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("differs from the one recorded in") && out.contains("use --force"),
        "{out}"
    );
    assert!(!refused.exists(), "nothing recorded when refused");
    assert!(project_containers(&project).is_empty());
    let forced = dir.path().join("forced");
    let (code, out) = replay(&original, &forced, &["--force"]);
    assert_eq!(code, 0, "{out}");
    let third = applied_offsets(&forced);
    assert_eq!(
        third.iter().map(|x| x.2.clone()).collect::<Vec<_>>(),
        first.iter().map(|x| x.2.clone()).collect::<Vec<_>>()
    );
    let m = trace::Manifest::read(&forced).expect("manifest");
    let r = m.replay_of.expect("replay_of");
    assert!(r.forced && !r.differences.is_empty(), "{r:?}");
}

#[test]
fn replay_of_an_experiment_gates_live_and_diffs_with_the_original() {
    require_docker!();
    ensure_images();
    let project = unique_project("replayx");
    let _guard = ProjectGuard::new(&project);
    let (dir, scenario) = write_scenario(
        &project,
        &peer_compose(10, 200),
        "time_limit = \"90s\"",
        "[experiment]\nspecs = [\"exp.spec\"]\nname = \"Pauses\"\n",
    );
    std::fs::write(
        dir.path().join("exp.spec"),
        r#"
monitor talking(svc: str) {
  state waiting {
    on log from svc where message ~ "^recv" => accept
  }
}
experiment Pauses {
  expect talking(a) within 20s
  do pause on random [a, b] for 1s
  expect talking(b) within 20s
}
"#,
    )
    .expect("write spec");
    let (code, out, err) = run_recorder(&scenario);
    assert_eq!(code, 0, "{out}{err}");
    let original = dir.path().join("trace");
    let replayed: PathBuf = dir.path().join("replayed");
    let (code, out) = replay(&original, &replayed, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("verdict: accept"), "{out}");
    let c1: Vec<_> = applied_offsets(&original)
        .into_iter()
        .map(|x| x.2)
        .collect();
    let c2: Vec<_> = applied_offsets(&replayed)
        .into_iter()
        .map(|x| x.2)
        .collect();
    assert_eq!(c1, c2);
    let out = Command::new(bin("analyzer"))
        .arg("diff")
        .arg(&original)
        .arg(&replayed)
        .arg("--spec")
        .arg(dir.path().join("exp.spec"))
        .output()
        .expect("analyzer diff");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("diff of experiment Pauses"), "{text}");
    let run_id = trace::Manifest::read(&original).expect("manifest").run_id;
    assert!(
        text.contains(&format!("  BAD replays GOOD (run {run_id})")),
        "{text}"
    );
    assert!(text.contains("phases"), "{text}");
}
