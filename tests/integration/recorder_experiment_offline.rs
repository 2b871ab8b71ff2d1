//! Live versus offline: `recorder run` judges an experiment's `expect` steps live and writes its
//! verdicts into `recorder`/`step` events; `analyzer check --experiment` judges the same steps
//! offline from the recorded trace. Both must agree on every step, for an experiment that
//! accepts (pause → gap → unpause → lines resume → partition → silence → heal → traffic resumes)
//! and for one that fails (both exit 1, on the same step).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use integration_tests::{
    bin, ensure_images, project_containers, project_networks, require_docker, unique_project,
    ProjectGuard,
};

use crate::recorder_common::{peer_compose, read_events, run_recorder, write_scenario};

const SPEC: &str = r#"
# a line of `svc` appears
monitor lineFrom(svc: str) = eventually log from svc where message ~ "^line " within 20s

# `svc` prints nothing for `d` (the timer restarts at each of its lines): a pause's gap
monitor gapOf(svc: str, d: duration) {
  state quiet timeout d {
    on log from svc => goto quiet
    on timeout => accept
  }
}

# b hears nothing from a for `d` (restarting at each reception)
monitor deafToA(d: duration) {
  state quiet timeout d {
    on log from b where message ~ "^recv b seq=[0-9]+ from=a " => goto quiet
    on timeout => accept
  }
}

# b hears a again
monitor hearsA = eventually log from b where message ~ "^recv b seq=[0-9]+ from=a " within 20s

experiment Agree {
  expect lineFrom(a) within 30s
  note "pausing a"
  do pause on a
  expect gapOf(a, 1500ms) within 20s
  do unpause on a
  expect lineFrom(a) within 20s
  do partition between [a] and [b]
  expect deafToA(1500ms) within 20s
  do heal on [a, b]
  expect hearsA within 30s
  note "done"
}

# `n` lines of `svc` counted from the start of the step
monitor linesFrom(svc: str, n: int) {
  var seen = 0
  state counting {
    on log from svc where message ~ "^line " and seen + 1 >= n => accept
    on log from svc where message ~ "^line " => set seen = seen + 1
  }
}

# a fault that takes 2.5 s to apply (an exec of a second chatter printing 25 lines at 10/s)
# while a keeps logging 10 lines a second: the next step starts when it is done, so 1.5 s see
# about 15 lines, not the 40 logged since the fault started
experiment SlowFault {
  expect lineFrom(a) within 30s
  do exec(cmd: "/demo-node chatter --count 25 --rate 10 --listen-port 0 --peer-count 1 --then exit") on a
  expect linesFrom(a, 20) within 1500ms
}

experiment Fails {
  expect hearsA within 30s
  do pause on a for 30s
  note "b keeps talking: it cannot be silent for 2s"
  expect gapOf(b, 2s) within 4s
  note "not reached"
}
"#;

/// `step → verdict` of the recorder's `step` end events (the live verdicts).
fn live_verdicts(dir: &Path, experiment: &str) -> BTreeMap<u64, Option<String>> {
    read_events(dir)
        .iter()
        .filter(|e| e.source == "recorder" && e.kind == "step")
        .filter_map(|e| serde_json::from_str::<serde_json::Value>(e.data.as_deref()?).ok())
        .filter(|d| d["phase"] == "end" && d["experiment"] == experiment)
        .map(|d| {
            (
                d["step"].as_u64().expect("step index"),
                d["verdict"].as_str().map(str::to_string),
            )
        })
        .collect()
}

/// `analyzer check TRACE --spec SPEC --experiment NAME --format json`: exit code and the verdict
/// of every step (`None`: not run).
fn offline_verdicts(trace: &Path, spec: &Path, experiment: &str) -> (i32, Vec<Option<String>>) {
    let out = Command::new(bin("analyzer"))
        .arg("check")
        .arg(trace)
        .arg("--spec")
        .arg(spec)
        .args(["--experiment", experiment, "--format", "json"])
        .output()
        .expect("run analyzer");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "analyzer json: {e}\nstdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let exp = &v["traces"][0]["report"]["experiments"][0];
    assert_eq!(exp["name"], experiment, "{v}");
    let steps = exp["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s["verdict"].as_str().map(str::to_string))
        .collect();
    (out.status.code().unwrap_or(-1), steps)
}

/// Runs one experiment through `recorder run`; returns the temp dir (trace in `trace/`), the
/// recorder's exit code, and its output for messages.
fn record(tag: &str, experiment: &str) -> (tempfile::TempDir, i32, String) {
    let project = unique_project(tag);
    let _guard = ProjectGuard::new(&project);
    let (dir, scenario) = write_scenario(
        &project,
        &peer_compose(10, 50),
        "time_limit = \"150s\"\nseed = 3",
        &format!(
            "[sensors]\nstats = false\n\n[experiment]\nspecs = [\"exp.spec\"]\nname = \"{experiment}\"\nsettle = \"1s\"\n"
        ),
    );
    std::fs::write(dir.path().join("exp.spec"), SPEC).expect("write spec");
    let (code, out, err) = run_recorder(&scenario);
    assert!(project_containers(&project).is_empty(), "containers left");
    assert!(project_networks(&project).is_empty(), "networks left");
    (dir, code, format!("stdout:\n{out}\nstderr:\n{err}"))
}

fn compare(dir: &Path, experiment: &str, n_steps: usize) -> (i32, Vec<Option<String>>) {
    let trace = dir.join("trace");
    let live = live_verdicts(&trace, experiment);
    let (code, offline) = offline_verdicts(&trace, &dir.join("exp.spec"), experiment);
    assert_eq!(offline.len(), n_steps);
    for (i, off) in offline.iter().enumerate() {
        match live.get(&(i as u64)) {
            // a step the recorder ran: the same verdict offline
            Some(v) => assert_eq!(
                off, v,
                "step {i}: offline {off:?}, live {v:?} (live {live:?}, offline {offline:?})"
            ),
            // a step the recorder never reached is not run offline either
            None => assert_eq!(off, &None, "step {i} not run live but judged offline"),
        }
    }
    (code, offline)
}

/// The step after a `do` starts when the fault is done (the apply's end, `data.ended_ns`),
/// live and offline alike.
#[test]
fn the_step_after_a_slow_fault_starts_when_it_is_done() {
    require_docker!();
    ensure_images();
    let (dir, code, out) = record("slowfault", "SlowFault");
    assert_eq!(code, 1, "{out}");
    let (acode, offline) = compare(dir.path(), "SlowFault", 3);
    assert_eq!(acode, 1, "{offline:?}");
    assert_eq!(offline[2].as_deref(), Some("fail"), "{offline:?}");
    let events = read_events(&dir.path().join("trace"));
    let fault = events
        .iter()
        .find(|e| e.source == "fault" && e.kind == "exec")
        .expect("the exec fault event");
    let data: serde_json::Value =
        serde_json::from_str(fault.data.as_deref().expect("fault data")).expect("json");
    assert_eq!(data["phase"], "applied", "{data}");
    let ended = data["ended_ns"].as_i64().expect("ended_ns");
    assert!(ended - fault.ts_ns >= 2_000_000_000, "{data}");
    // the live verdict says why: 20 lines were not seen within 1.5 s of the fault's end
    let live_end = events
        .iter()
        .filter(|e| e.source == "recorder" && e.kind == "step")
        .filter_map(|e| serde_json::from_str::<serde_json::Value>(e.data.as_deref()?).ok())
        .find(|d| d["phase"] == "end" && d["step"] == 2)
        .expect("step 2 end");
    assert_eq!(live_end["verdict"], "fail", "{live_end}");
    // offline, the `do` ends and the next step starts at the fault's end
    let o = Command::new(bin("analyzer"))
        .arg("check")
        .arg(dir.path().join("trace"))
        .arg("--spec")
        .arg(dir.path().join("exp.spec"))
        .args(["--experiment", "SlowFault", "--format", "json"])
        .output()
        .expect("run analyzer");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json report");
    let steps = &v["traces"][0]["report"]["experiments"][0]["steps"];
    assert_eq!(steps[1]["end_ns"].as_i64(), Some(ended), "{steps}");
    assert_eq!(steps[2]["start_ns"].as_i64(), Some(ended), "{steps}");
}

#[test]
fn live_and_offline_verdicts_agree_on_every_step() {
    require_docker!();
    ensure_images();
    let (dir, code, out) = record("agree", "Agree");
    assert_eq!(code, 0, "{out}");
    let (acode, offline) = compare(dir.path(), "Agree", 11);
    assert_eq!(acode, 0, "{offline:?}");
    assert!(
        offline.iter().all(|v| v.as_deref() == Some("accept")),
        "{offline:?}"
    );

    let (dir, code, out) = record("fails", "Fails");
    assert_eq!(code, 1, "{out}");
    let (acode, offline) = compare(dir.path(), "Fails", 5);
    assert_eq!(acode, 1, "{offline:?}");
    let failed: Vec<usize> = offline
        .iter()
        .enumerate()
        .filter(|(_, v)| v.as_deref() == Some("fail"))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(failed, vec![3], "{offline:?}");
    assert_eq!(offline[4], None, "{offline:?}");
}
