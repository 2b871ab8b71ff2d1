//! Bindings live: `recorder run` binds the service an `expect ... as T` step accepted with,
//! records it in the step's end event, pauses, unpauses and partitions that service through
//! the binding, and `analyzer check` recomputes the same binding and the same verdicts offline.

use std::process::Command;

use integration_tests::{
    bin, ensure_images, project_containers, project_networks, require_docker, unique_project,
    ProjectGuard,
};

use crate::recorder_common::{peer_compose, read_events, run_recorder, write_scenario};

const SPEC: &str = r#"
# the first of `svcs` to print a numbered line: accepts with that service
monitor firstTalker(svcs: str...) {
  state listening {
    on log where service in svcs and message ~ "^line " => accept with service
  }
}

monitor lineFrom(svc: str) = eventually log from svc where message ~ "^line " within 20s

# `svc` prints nothing for `d` (the timer restarts at each of its lines)
monitor gapOf(svc: str, d: duration) {
  state quiet timeout d {
    on log from svc => goto quiet
    on timeout => accept
  }
}

let pair = [a, b]

experiment Bound {
  expect firstTalker(pair) as T within 30s
  do pause on T
  expect gapOf(T, 1500ms) within 20s
  do unpause on T
  expect lineFrom(T) within 20s
  do partition between [T] and pair - [T]
  note "cut"
  do heal on pair
}
"#;

#[test]
fn a_bound_service_is_the_target_live_and_offline() {
    require_docker!();
    ensure_images();
    let project = unique_project("bindings");
    let _guard = ProjectGuard::new(&project);
    let (dir, scenario) = write_scenario(
        &project,
        &peer_compose(10, 50),
        "time_limit = \"150s\"\nseed = 3",
        "[sensors]\nstats = false\n\n[experiment]\nspecs = [\"exp.spec\"]\nname = \"Bound\"\nsettle = \"1s\"\n",
    );
    std::fs::write(dir.path().join("exp.spec"), SPEC).expect("write spec");
    let (code, out, err) = run_recorder(&scenario);
    assert!(project_containers(&project).is_empty(), "containers left");
    assert!(project_networks(&project).is_empty(), "networks left");
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");

    let trace = dir.path().join("trace");
    let events = read_events(&trace);
    let data = |e: &trace::Event| -> serde_json::Value {
        serde_json::from_str(e.data.as_deref().unwrap_or("null")).unwrap_or_default()
    };
    // the binding recorded live in step 1's end event
    let end0 = events
        .iter()
        .filter(|e| e.source == "recorder" && e.kind == "step")
        .map(data)
        .find(|d| d["phase"] == "end" && d["step"] == 0)
        .expect("step 1 end event");
    assert_eq!(end0["binding"]["name"], "T", "{end0}");
    let t = end0["binding"]["value"]
        .as_str()
        .expect("a bound service")
        .to_string();
    assert!(t == "a" || t == "b", "{end0}");
    let other = if t == "a" { "b" } else { "a" };
    // the steps using it record the value they started with, and the faults hit that service
    let start1 = events
        .iter()
        .filter(|e| e.source == "recorder" && e.kind == "step")
        .map(data)
        .find(|d| d["phase"] == "start" && d["step"] == 1)
        .expect("step 2 start event");
    assert_eq!(start1["bindings"]["T"], t.as_str(), "{start1}");
    let pause = events
        .iter()
        .filter(|e| e.source == "fault" && e.kind == "pause")
        .map(data)
        .find(|d| d["phase"] == "applied")
        .expect("an applied pause");
    assert_eq!(
        pause["target"]["services"],
        serde_json::json!([t]),
        "the pause hit the bound service"
    );
    let cut = format!("partition on between [{t}] and [{other}] applied");
    assert!(
        events
            .iter()
            .any(|e| e.source == "fault" && e.message.as_deref().is_some_and(|m| m.ends_with(&cut))),
        "no fault event `... {cut}`"
    );

    // offline: the same binding, the same verdicts, no warning
    let o = Command::new(bin("analyzer"))
        .arg("check")
        .arg(&trace)
        .arg("--spec")
        .arg(dir.path().join("exp.spec"))
        .args(["--experiment", "Bound", "--format", "json"])
        .output()
        .expect("run analyzer");
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json report");
    let steps = &v["traces"][0]["report"]["experiments"][0]["steps"];
    assert_eq!(steps[0]["binding"]["value"], t.as_str(), "{steps}");
    for (i, s) in steps.as_array().expect("steps").iter().enumerate() {
        assert_eq!(s["verdict"], "accept", "step {i}: {s}");
        assert!(s.get("warnings").is_none(), "step {i}: {s}");
    }
}
