//! Recorder teardown: nothing left behind after SIGINT or a fault that fails; a scenario with
//! errors refused before anything starts; `recorder cleanup` removes a killed run's leftovers.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use integration_tests::{
    bin, compose_command, ensure_images, project_containers, project_networks, require_docker,
    unique_project, ProjectGuard,
};

use crate::recorder_common::{chatter_compose, read_events, run_recorder, write_scenario};

#[test]
fn sigint_tears_down_and_finalizes() {
    require_docker!();
    ensure_images();
    let project = unique_project("sigint");
    let _guard = ProjectGuard::new(&project);
    let (dir, scenario) =
        write_scenario(&project, &chatter_compose(20), "time_limit = \"120s\"", "");
    let mut child = Command::new(bin("recorder"))
        .args(["run", "--quiet"])
        .arg(&scenario)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn recorder");
    // wait until the project runs and logs are being recorded
    let start = Instant::now();
    while project_containers(&project).len() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "containers never came up"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(3));
    let st = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "recorder did not exit after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status.code(), Some(130));
    assert!(project_containers(&project).is_empty(), "containers left");
    assert!(project_networks(&project).is_empty(), "networks left");
    let t = trace::Trace::open(&dir.path().join("trace")).expect("trace");
    assert!(t.is_finalized());
    assert_eq!(
        t.manifest().outcome.as_ref().map(|o| o.status.as_str()),
        Some("interrupted")
    );
    let ev = read_events(&dir.path().join("trace"));
    assert!(ev.iter().any(|e| e.source == "log"
        && e.message
            .as_deref()
            .is_some_and(|m| m.starts_with("line 1 "))));
}

#[test]
fn failing_fault_tears_down_with_exit_5() {
    require_docker!();
    ensure_images();
    let project = unique_project("failstep");
    let _guard = ProjectGuard::new(&project);
    let (dir, scenario) = write_scenario(
        &project,
        &chatter_compose(20),
        "time_limit = \"60s\"",
        r#"
[[schedule]]
at = "1s"
fault = "pause"
target = "b"
duration = "30s"

[[schedule]]
at = "2s"
fault = "exec"
target = "a"
params = { cmd = ["/no-such-program"] }
"#,
    );
    let (code, out, err) = run_recorder(&scenario);
    assert_eq!(code, 5, "stdout:\n{out}\nstderr:\n{err}");
    assert!(project_containers(&project).is_empty(), "containers left");
    assert!(project_networks(&project).is_empty(), "networks left");
    let ev = read_events(&dir.path().join("trace"));
    // the pause applied before the failure was reverted before teardown
    assert_eq!(fault_phases(&ev, "pause"), vec!["applied", "reverted"]);
}

#[test]
fn invalid_scenario_is_refused_before_anything_starts() {
    require_docker!();
    let project = unique_project("invalid");
    let _guard = ProjectGuard::new(&project);
    let (dir, scenario) = write_scenario(
        &project,
        &chatter_compose(20),
        "time_limit = \"60s\"",
        r#"
[[schedule]]
at = "1s"
fault = "pause"
target = "no-such-service"

[[schedule]]
at = "2s"
fault = "levitate"
target = "a"
"#,
    );
    let (code, _out, err) = run_recorder(&scenario);
    assert_eq!(code, 3, "stderr:\n{err}");
    assert!(err.contains("no-such-service"), "{err}");
    assert!(err.contains("levitate"), "{err}");
    assert!(
        err.contains("scenario.toml:"),
        "errors must point into the file: {err}"
    );
    assert!(project_containers(&project).is_empty());
    assert!(project_networks(&project).is_empty());
    assert!(
        !dir.path().join("trace").exists(),
        "no trace for a refused scenario"
    );

    // an unknown key, with line and column
    std::fs::write(
        &scenario,
        "[compose]\nfiles = [\"compose.yml\"]\nprojekt = \"x\"\n",
    )
    .expect("write");
    let (code, _out, err) = run_recorder(&scenario);
    assert_eq!(code, 3);
    assert!(err.contains("scenario.toml:3:1:"), "{err}");
}

#[test]
fn cleanup_removes_leftovers_by_project_label() {
    require_docker!();
    ensure_images();
    let project = unique_project("cleanup");
    let _guard = ProjectGuard::new(&project);
    let d = tempfile::tempdir().expect("tempdir");
    std::fs::write(d.path().join("compose.yml"), chatter_compose(5)).expect("write");
    let cc = compose_command();
    let st = Command::new(&cc[0])
        .args(&cc[1..])
        .args(["-f", "compose.yml", "-p", &project, "up", "-d"])
        .current_dir(d.path())
        .output()
        .expect("compose up");
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    assert_eq!(project_containers(&project).len(), 2);
    let out = Command::new(bin("recorder"))
        .args(["cleanup", "--project", &project])
        .output()
        .expect("cleanup");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("removed 2 containers"));
    assert!(project_containers(&project).is_empty());
    assert!(project_networks(&project).is_empty());
    // usage error without a project
    let out = Command::new(bin("recorder"))
        .args(["cleanup"])
        .output()
        .expect("cleanup");
    assert_eq!(out.status.code(), Some(64));
}

const EXPERIMENT_SPEC: &str = r#"
monitor sawLine(n: int) = eventually log where message == "line " + str(n) + " a" within 30s
# the step after `do restart` starts when the restart is done: the new process's own
# `start a first=N` line is printed while the engine is still finishing the restart (before the
# step's window, docs/faults.md), so the step waits for its numbered lines
monitor resumed = eventually log where message ~ "^line [0-9]+ a$" within 30s
monitor neverSeen = eventually log where message == "no such line" within 2s

experiment Gated {
  expect sawLine(100)
  note "about to restart a"
  do restart on a
  expect resumed
}

experiment Failing {
  expect sawLine(100)
  do pause on b for 60s
  expect neverSeen
  note "not reached"
}
"#;

/// The `phase` of every `fault` event of kind `kind`, in trace order.
fn fault_phases(ev: &[trace::Event], kind: &str) -> Vec<String> {
    ev.iter()
        .filter(|e| e.source == "fault" && e.kind == kind)
        .filter_map(|e| serde_json::from_str::<serde_json::Value>(e.data.as_deref()?).ok())
        .filter_map(|d| d["phase"].as_str().map(str::to_string))
        .collect()
}

/// Runs experiment `name` of [`EXPERIMENT_SPEC`] on a fresh chatter project (named after it);
/// returns the project, its guard (keep it alive), the scenario's directory and the recorder's
/// exit code, stdout and stderr.
fn run_experiment(
    name: &str,
) -> (
    String,
    ProjectGuard,
    tempfile::TempDir,
    (i32, String, String),
) {
    let project = unique_project(&name.to_lowercase());
    let guard = ProjectGuard::new(&project);
    let (dir, scenario) = write_scenario(
        &project,
        &chatter_compose(50),
        "time_limit = \"120s\"",
        &format!("[experiment]\nspecs = [\"exp.spec\"]\nname = \"{name}\"\n"),
    );
    std::fs::write(dir.path().join("exp.spec"), EXPERIMENT_SPEC).expect("write spec");
    let run = run_recorder(&scenario);
    (project, guard, dir, run)
}

fn step_events(ev: &[trace::Event]) -> Vec<(u64, String, String, Option<String>)> {
    ev.iter()
        .filter(|e| e.source == "recorder" && e.kind == "step")
        .filter_map(|e| serde_json::from_str::<serde_json::Value>(e.data.as_deref()?).ok())
        .map(|d| {
            (
                d["step"].as_u64().unwrap_or(99),
                d["step_kind"].as_str().unwrap_or("").to_string(),
                d["phase"].as_str().unwrap_or("").to_string(),
                d["verdict"].as_str().map(str::to_string),
            )
        })
        .collect()
}

#[test]
fn experiment_steps_are_gated_live_and_a_failing_step_tears_down() {
    require_docker!();
    ensure_images();
    // gated: every step runs, in order, and the run accepts
    let (project, _guard, dir, (code, out, err)) = run_experiment("Gated");
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("verdict: accept"), "{out}");
    let ev = read_events(&dir.path().join("trace"));
    let steps = step_events(&ev);
    let ends: Vec<(u64, Option<String>)> = steps
        .iter()
        .filter(|s| s.2 == "end")
        .map(|s| (s.0, s.3.clone()))
        .collect();
    assert_eq!(
        ends,
        vec![
            (0, Some("accept".into())),
            (1, Some("accept".into())),
            (2, Some("accept".into())),
            (3, Some("accept".into()))
        ]
    );
    assert!(ev
        .iter()
        .any(|e| e.source == "note" && e.message.as_deref() == Some("about to restart a")));
    // the restart came after step 0 accepted, i.e. after line 100 of a
    let line100 = ev
        .iter()
        .position(|e| e.message.as_deref() == Some("line 100 a"))
        .expect("line 100");
    let restart = ev
        .iter()
        .position(|e| e.source == "fault" && e.kind == "restart")
        .expect("restart fault");
    assert!(line100 < restart);
    // the restarted a resumed its numbering
    assert!(
        ev.iter().skip(restart).any(|e| e
            .message
            .as_deref()
            .and_then(|m| m.strip_prefix("start a first="))
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| n > 100)),
        "no resumed start line after the restart"
    );
    assert!(project_containers(&project).is_empty());

    // failing: exit 1, later steps not run, the pause reverted, nothing left
    let (project, _guard2, dir, (code, out, err)) = run_experiment("Failing");
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    let ev = read_events(&dir.path().join("trace"));
    let steps = step_events(&ev);
    assert!(
        steps
            .iter()
            .any(|s| s.0 == 2 && s.2 == "end" && s.3.as_deref() == Some("fail")),
        "{steps:?}\n{out}"
    );
    assert!(
        !steps.iter().any(|s| s.0 == 3),
        "step after the failure ran"
    );
    assert!(!ev.iter().any(|e| e.source == "note"));
    assert_eq!(fault_phases(&ev, "pause"), vec!["applied", "reverted"]);
    assert!(project_containers(&project).is_empty(), "containers left");
    assert!(project_networks(&project).is_empty(), "networks left");
    let t = trace::Trace::open(&dir.path().join("trace")).expect("trace");
    assert_eq!(
        t.manifest()
            .outcome
            .as_ref()
            .and_then(|o| o.verdict.as_deref()),
        Some("fail")
    );
}

/// 1-based `line:col` of the first occurrence of `needle` in `text`.
fn line_col_of(text: &str, needle: &str) -> String {
    let off = text.find(needle).expect("needle in text");
    let before = &text[..off];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("{line}:{col}")
}

/// Runs `recorder check SCENARIO`; returns the exit code, stdout and stderr.
fn check_scenario(scenario: &std::path::Path) -> (i32, String, String) {
    let out = Command::new(bin("recorder"))
        .arg("check")
        .arg(scenario)
        .output()
        .expect("run recorder check");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn unknown_network_names_are_refused_before_anything_starts() {
    require_docker!();
    let project = unique_project("badnet");
    let _guard = ProjectGuard::new(&project);
    // `a` joins `left` and `middle`; `b` names no network, so compose adds `default`
    let compose = chatter_compose(20).replace(
        "      LISTEN_PORT: \"0\"\n    stop_grace_period: 2s\n  b:",
        "      LISTEN_PORT: \"0\"\n    stop_grace_period: 2s\n    networks: [left, middle]\n  b:",
    ) + "networks:\n  left: {}\n  middle: {}\n";
    assert!(compose.contains("networks: [left, middle]"), "{compose}");
    let (dir, scenario) = write_scenario(
        &project,
        &compose,
        "time_limit = \"60s\"",
        r#"
[sensors.jmx]
services = ["a"]
networks = ["middle", "outer"]

[sensors.pcap]
services = ["a"]
networks = ["default", "lfet"]
buffer_kib = 4096

[[schedule]]
at = "1s"
fault = "loss"
target = { network = "nowhere" }
params = { percent = 30 }

[[schedule]]
at = "2s"
fault = "disconnect"
target = "a"
params = { network = "rigth" }
"#,
    );
    let text = std::fs::read_to_string(&scenario).expect("read scenario");
    let (code, _out, err) = check_scenario(&scenario);
    assert_eq!(code, 3, "stderr:\n{err}");
    for (needle, name) in [
        ("\"outer\"", "outer"),
        ("\"lfet\"", "lfet"),
        ("{ network = \"nowhere\" }", "nowhere"),
        ("\"disconnect\"", "rigth"),
    ] {
        let at = format!("scenario.toml:{}: ", line_col_of(&text, needle));
        assert!(
            err.lines()
                .any(|l| l.contains(&at) && l.contains(&format!("no network `{name}`"))),
            "expected an error at {at} for `{name}`:\n{err}"
        );
    }
    assert!(
        err.contains("(networks: default, left, middle)"),
        "the known networks are listed: {err}"
    );
    assert_eq!(err.matches("no network").count(), 4, "{err}");

    // an experiment step `on network NAME`, pointed at in the spec file
    std::fs::write(
        dir.path().join("exp.spec"),
        "experiment E {\n  note \"start\"\n  do loss(percent: 30) on network midle for 1s\n}\n",
    )
    .expect("write spec");
    let head = text.split("[sensors.jmx]").next().expect("head");
    std::fs::write(
        &scenario,
        format!("{head}[experiment]\nspecs = [\"exp.spec\"]\nname = \"E\"\n"),
    )
    .expect("write scenario");
    let (code, _out, err) = check_scenario(&scenario);
    assert_eq!(code, 3, "stderr:\n{err}");
    assert!(
        err.contains("exp.spec:3:3: ") && err.contains("no network `midle`"),
        "{err}"
    );

    // the same names spelled right: valid, and nothing was started by any of the checks
    std::fs::write(
        dir.path().join("exp.spec"),
        "experiment E {\n  note \"start\"\n  do loss(percent: 30) on network middle for 1s\n}\n",
    )
    .expect("write spec");
    let (code, out, err) = check_scenario(&scenario);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("scenario is valid"), "{out}");
    let fixed = text
        .replace("\"outer\"", "\"left\"")
        .replace("\"lfet\"", "\"left\"")
        .replace("\"nowhere\"", "\"middle\"")
        .replace("\"rigth\"", "\"middle\"");
    std::fs::write(&scenario, fixed).expect("write scenario");
    let (code, out, err) = check_scenario(&scenario);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(project_containers(&project).is_empty());
    assert!(project_networks(&project).is_empty());
    assert!(
        !dir.path().join("trace").exists(),
        "no trace for a checked scenario"
    );
}
