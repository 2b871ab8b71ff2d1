//! A replayed experiment reuses the recorded run's bindings, and a fault target that a binding
//! resolves outside `[scope]` is refused through a whole `recorder run`, on real Docker (issue
//! 19). The bound service is whichever container prints `recv` lines, so the compose file
//! decides it: the tests change it between the recording and the replay.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use integration_tests::{
    bin, ensure_images, project_containers, require_docker, unique_project, ProjectGuard,
    DEMO_IMAGE,
};
use serde_json::Value;
use trace::Event;

use crate::recorder_common::{read_events, replay, run_recorder, write_scenario};

/// Services `sender` and `receivers`, on one network: `sender` sends datagrams to the first
/// receiver, which prints `recv ...` lines; the others only listen.
fn compose(sender: &str, receivers: &[&str]) -> String {
    let svc = |id: &str, peers: &str| {
        format!(
            r#"  {id}:
    image: {DEMO_IMAGE}
    command: ["chatter", "--then", "wait"]
    environment:
      ID: {id}
      RATE: "5"
      PEERS: "{peers}"
      PEER_INTERVAL: "200ms"
      LISTEN_PORT: "7000"
    networks: [middle]
    stop_grace_period: 1s
"#
        )
    };
    let mut s = String::from("version: \"2.4\"\nservices:\n");
    s += &svc(sender, &format!("{}:7000", receivers[0]));
    for r in receivers {
        s += &svc(r, "");
    }
    s + "networks:\n  middle: {}\n"
}

/// Binds `T` to the service that receives, then faults it.
fn spec(fault: &str) -> String {
    format!(
        r#"
monitor receiver {{
  state listening {{
    on log where message ~ "^recv " => accept with service
  }}
}}

experiment Bound {{
  expect receiver as T within 30s
  {fault}
}}
"#
    )
}

fn data(e: &Event) -> Value {
    serde_json::from_str(e.data.as_deref().unwrap_or("null")).unwrap_or_default()
}

/// The data of the `recorder`/`step` event of `step` (0-based) in `phase`.
fn step_event(events: &[Event], step: u64, phase: &str) -> Option<(u64, Value)> {
    events
        .iter()
        .filter(|e| e.source == "recorder" && e.kind == "step")
        .map(|e| (e.seq, data(e)))
        .find(|(_, d)| d["phase"] == phase && d["step"] == step)
}

/// The services of every applied fault.
fn applied(events: &[Event]) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e.source == "fault")
        .map(data)
        .filter(|d| d["phase"] == "applied")
        .map(|d| d["target"]["services"].clone())
        .collect()
}

#[test]
fn a_replay_binds_the_recorded_values_and_refuses_one_the_project_lost() {
    require_docker!();
    ensure_images();
    let project = unique_project("replayb");
    let _guard = ProjectGuard::new(&project);
    let (dir, scenario) = write_scenario(
        &project,
        &compose("a", &["b"]),
        "time_limit = \"90s\"",
        "[sensors]\nstats = false\n\n[experiment]\nspecs = [\"exp.spec\"]\nname = \"Bound\"\n",
    );
    std::fs::write(dir.path().join("exp.spec"), spec("do pause on T for 1s")).expect("spec");
    let (code, out, err) = run_recorder(&scenario);
    assert_eq!(code, 0, "{out}{err}");
    let original = dir.path().join("trace");
    let events = read_events(&original);
    let (rec_seq, end) = step_event(&events, 0, "end").expect("step 1 end");
    assert_eq!(
        end["binding"],
        serde_json::json!({"name": "T", "value": "b"})
    );
    assert_eq!(applied(&events), [serde_json::json!(["b"])]);

    // now `a` receives: the replay still binds `b`, as recorded, and pauses it
    let compose_file = dir.path().join("compose.yml");
    std::fs::write(&compose_file, compose("b", &["a"])).expect("compose");
    let replayed = dir.path().join("replayed");
    let (code, out) = replay(&original, &replayed, &[]);
    assert_eq!(code, 0, "{out}");
    let events = read_events(&replayed);
    let (_, end) = step_event(&events, 0, "end").expect("step 1 end");
    assert_eq!(end["binding"]["value"], "b", "{end}");
    assert_eq!(end["binding"]["live"], "a", "{end}");
    assert_eq!(end["binding"]["replayed_seq"], rec_seq, "{end}");
    let (_, start) = step_event(&events, 1, "start").expect("step 2 start");
    assert_eq!(start["bindings"]["T"], "b", "{start}");
    assert_eq!(applied(&events), [serde_json::json!(["b"])]);

    // `b` is gone (`a` sends to `c`): refused at the step using it, nothing applied, exit 5
    std::fs::write(&compose_file, compose("a", &["c"])).expect("compose");
    let lost = dir.path().join("lost");
    let (code, out) = replay(&original, &lost, &[]);
    assert_eq!(code, 5, "{out}");
    assert!(
        out.contains("step 2 `do pause on ")
            && out.contains("cannot use the bound values: replay: the binding recorded in")
            && out.contains("(T = \"b\") cannot be used in this run: ")
            && out.contains("(--force uses the live value, T = \"c\")"),
        "{out}"
    );
    let events = read_events(&lost);
    let (_, end) = step_event(&events, 1, "end").expect("step 2 end");
    assert_eq!(end["verdict"], "inconclusive", "{end}");
    assert!(applied(&events).is_empty(), "nothing applied");
    assert!(
        !events.iter().any(|e| e.source == "fault"),
        "no fault event"
    );

    // with --force: a warning event, and the live value is used
    let forced = dir.path().join("forced");
    let (code, out) = replay(&original, &forced, &["--force"]);
    assert_eq!(code, 0, "{out}");
    let events = read_events(&forced);
    let warn = events
        .iter()
        .find(|e| e.source == "recorder" && e.kind == "replay_warning")
        .expect("a replay_warning event");
    let d = data(warn);
    assert_eq!(d["recorded"], serde_json::json!({"T": "b"}), "{d}");
    assert_eq!(d["live"], serde_json::json!({"T": "c"}), "{d}");
    assert_eq!(d["step"], 1, "{d}");
    assert!(
        warn.message
            .as_deref()
            .is_some_and(|m| m.contains("the live value is used instead (T = \"c\", --force)")),
        "{warn:?}"
    );
    assert_eq!(applied(&events), [serde_json::json!(["c"])]);
    assert!(project_containers(&project).is_empty(), "containers left");
}

/// `iptables -S` and `tc qdisc show` in the network namespace of `service`'s container, once
/// it runs.
fn netns_state(project: &str, service: &str) -> Option<String> {
    let sh = |cmd: &str, args: &[&str]| -> String {
        Command::new(cmd)
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    let id = sh(
        "docker",
        &[
            "ps",
            "-q",
            "--filter",
            &format!("label=com.docker.compose.project={project}"),
            "--filter",
            &format!("label=com.docker.compose.service={service}"),
        ],
    );
    let id = id.split_whitespace().next()?.to_string();
    let pid = sh("docker", &["inspect", "-f", "{{.State.Pid}}", &id]);
    let pid = pid.trim();
    if pid.is_empty() || pid == "0" {
        return None;
    }
    let rules = sh("nsenter", &["-t", pid, "-n", "iptables", "-w", "-S"]);
    let qdisc = sh("nsenter", &["-t", pid, "-n", "tc", "qdisc", "show"]);
    (!rules.is_empty() && !qdisc.is_empty()).then(|| format!("{rules}{qdisc}"))
}

/// A binding that resolves outside `[scope]` at run time: the partition is refused (a `failed`
/// fault event naming the scope), nothing reaches the target's namespace, the experiment ends
/// and `recorder run` exits 5 (docs/exit-codes.md).
#[test]
fn a_binding_resolved_outside_the_scope_is_refused_by_the_run() {
    require_docker!();
    ensure_images();
    let project = unique_project("scopebind");
    let _guard = ProjectGuard::new(&project);
    let (dir, scenario) = write_scenario(
        &project,
        &compose("a", &["b"]),
        "time_limit = \"90s\"",
        "[sensors]\nstats = false\n\n[scope]\nservices = [\"a\"]\n\n[experiment]\nspecs = [\"exp.spec\"]\nname = \"Bound\"\n",
    );
    std::fs::write(
        dir.path().join("exp.spec"),
        spec("do partition between [T] and [a] for 2s\n  note \"not reached\""),
    )
    .expect("spec");
    // `recorder check` cannot know what `T` will be: the scenario is valid
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
    // the network state of `b` while the recorder runs
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (stop, project) = (stop.clone(), project.clone());
        std::thread::spawn(move || {
            let mut seen: Vec<String> = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                if let Some(s) = netns_state(&project, "b") {
                    if !seen.contains(&s) {
                        seen.push(s);
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            seen
        })
    };
    let (code, out, err) = run_recorder(&scenario);
    stop.store(true, Ordering::SeqCst);
    let seen = watcher.join().expect("watcher");
    assert_eq!(code, 5, "{out}{err}");
    assert!(
        err.contains("step 2 `do partition between [")
            && err.contains("outside the scope")
            && err.contains("(service `b`) (scope: a)"),
        "{err}"
    );
    assert!(!seen.is_empty(), "b's namespace was never seen");
    assert_eq!(seen.len(), 1, "b's rules or qdiscs changed: {seen:#?}");
    assert!(!seen[0].contains("DROP"), "{}", seen[0]);

    let events = read_events(&dir.path().join("trace"));
    let (_, end) = step_event(&events, 0, "end").expect("step 1 end");
    assert_eq!(end["binding"]["value"], "b", "{end}");
    let faults: Vec<Value> = events
        .iter()
        .filter(|e| e.source == "fault")
        .map(data)
        .collect();
    assert_eq!(faults.len(), 1, "{faults:?}");
    assert_eq!(faults[0]["phase"], "failed", "{faults:?}");
    let (_, end) = step_event(&events, 1, "end").expect("step 2 end");
    assert_eq!(end["verdict"], "inconclusive", "{end}");
    assert!(step_event(&events, 2, "start").is_none(), "step 3 ran");
    assert!(project_containers(&project).is_empty(), "containers left");
}
