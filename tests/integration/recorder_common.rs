//! Helpers shared by the recorder's end-to-end tests: a chatter compose project and scenario in a
//! temporary directory, running `recorder run`, and reading the resulting trace.

use std::path::{Path, PathBuf};
use std::process::Command;

use integration_tests::{
    bin, compose_command, ensure_images, unique_project, ProjectGuard, DEMO_IMAGE,
};
use trace::{Event, ReadOptions, Trace};

/// A compose file with chatter services `a` and `b` (numbered lines, every 3rd on stderr,
/// numbering resumed across restarts through a file in the container).
pub fn chatter_compose(rate: u32) -> String {
    format!(
        r#"version: "2.4"
services:
  a:
    image: {DEMO_IMAGE}
    command: ["chatter", "--then", "wait"]
    environment:
      ID: a
      RATE: "{rate}"
      STDERR_EVERY: "3"
      RESUME_FILE: /resume
      LISTEN_PORT: "0"
    stop_grace_period: 2s
  b:
    image: {DEMO_IMAGE}
    command: ["chatter", "--then", "wait"]
    environment:
      ID: b
      RATE: "{rate}"
      LISTEN_PORT: "0"
      API_TOKEN: do-not-record-me
    stop_grace_period: 2s
"#
    )
}

/// Writes `compose.yml` and `scenario.toml` into a fresh temp dir; returns it and the scenario
/// path. `body` is appended after the `[compose]` section.
pub fn write_scenario(
    project: &str,
    compose: &str,
    top: &str,
    body: &str,
) -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().expect("tempdir");
    std::fs::write(d.path().join("compose.yml"), compose).expect("write compose");
    let text = format!(
        "{top}\noutput = \"trace\"\n\n[compose]\nfiles = [\"compose.yml\"]\nproject = \"{project}\"\nup_timeout = \"60s\"\n\n{body}\n"
    );
    let p = d.path().join("scenario.toml");
    std::fs::write(&p, text).expect("write scenario");
    (d, p)
}

/// `recorder run --quiet --replay TRACE --output OUTPUT EXTRA…`: its exit code and its stdout
/// and stderr together.
pub fn replay(trace: &Path, output: &Path, extra: &[&str]) -> (i32, String) {
    let out = Command::new(bin("recorder"))
        .args(["run", "--quiet", "--replay"])
        .arg(trace)
        .arg("--output")
        .arg(output)
        .args(extra)
        .output()
        .expect("recorder run --replay");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Runs `recorder run SCENARIO`; returns the exit code, stdout and stderr.
pub fn run_recorder(scenario: &Path) -> (i32, String, String) {
    let out = std::process::Command::new(bin("recorder"))
        .args(["run", "--quiet"])
        .arg(scenario)
        .output()
        .expect("run recorder");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every event of a trace, in trace order.
pub fn read_events(dir: &Path) -> Vec<Event> {
    let t = Trace::open(dir).unwrap_or_else(|e| panic!("open trace {}: {e}", dir.display()));
    let mut v = Vec::new();
    for b in t.events(&ReadOptions::default()).expect("events") {
        let b = b.expect("batch");
        v.extend(b.iter().map(|e| e.to_owned()));
    }
    v
}

/// The numbers of `line N <id>` log lines of one chatter, in trace order, with their timestamps
/// and streams.
pub fn numbered_lines(events: &[Event], id: &str) -> Vec<(u64, i64, String)> {
    let suffix = format!(" {id}");
    events
        .iter()
        .filter(|e| e.source == "log")
        .filter_map(|e| {
            let m = e.message.as_deref()?;
            let rest = m.strip_prefix("line ")?.strip_suffix(&suffix)?;
            Some((rest.parse().ok()?, e.ts_ns, e.kind.clone()))
        })
        .collect()
}

/// A compose file with chatter services `a` and `b` on network `middle`, printing `rate` numbered
/// lines per second and sending each other numbered UDP messages every `peer_interval_ms`
/// (`send <me> seq=N to=<peer>` / `recv <me> seq=N from=<peer>` log lines).
pub fn peer_compose(rate: u32, peer_interval_ms: u64) -> String {
    let svc = |id: &str, peer: &str| {
        format!(
            r#"  {id}:
    image: {DEMO_IMAGE}
    command: ["chatter", "--then", "wait"]
    environment:
      ID: {id}
      RATE: "{rate}"
      PEERS: "{peer}:7000"
      PEER_INTERVAL: "{peer_interval_ms}ms"
      LISTEN_PORT: "7000"
    networks: [middle]
    stop_grace_period: 1s
"#
        )
    };
    format!(
        "version: \"2.4\"\nservices:\n{}{}networks:\n  middle: {{}}\n",
        svc("a", "b"),
        svc("b", "a")
    )
}

/// `(seq, ts_ns)` of the log lines `<verb> <me> seq=N <dir>=<peer>` of service `me`, in trace
/// order (`verb` is `send` with `dir` `to`, or `recv` with `dir` `from`).
pub fn peer_messages(events: &[Event], verb: &str, me: &str, peer: &str) -> Vec<(u64, i64)> {
    let prefix = format!("{verb} {me} seq=");
    let dir = if verb == "send" { "to" } else { "from" };
    let tag = format!("{dir}={peer}");
    events
        .iter()
        .filter(|e| e.source == "log" && e.service.as_deref() == Some(me))
        .filter_map(|e| {
            let m = e.message.as_deref()?;
            let rest = m.strip_prefix(&prefix)?;
            let mut words = rest.split_whitespace();
            let seq = words.next()?.parse().ok()?;
            // `to=b:7000` (the peer as configured) or `from=b` (its id)
            words
                .any(|w| {
                    w == tag
                        || w.strip_prefix(tag.as_str())
                            .is_some_and(|r| r.starts_with(':'))
                })
                .then_some((seq, e.ts_ns))
        })
        .collect()
}

/// The fault events of a trace as `(kind, data)`.
pub fn fault_events(events: &[Event]) -> Vec<(String, serde_json::Value)> {
    events
        .iter()
        .filter(|e| e.source == "fault")
        .filter_map(|e| {
            let d = serde_json::from_str(e.data.as_deref()?).ok()?;
            Some((e.kind.clone(), d))
        })
        .collect()
}

/// A running compose project; torn down (with its rules) when dropped.
pub struct Project {
    pub name: String,
    _dir: tempfile::TempDir,
    _guard: ProjectGuard,
}

/// Starts `yaml` as a compose project with a unique name made from `tag` (`up -d`).
pub fn up(tag: &str, yaml: &str) -> Project {
    ensure_images();
    let name = unique_project(tag);
    let guard = ProjectGuard::new(name.clone());
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("compose.yml");
    std::fs::write(&file, yaml).expect("write compose file");
    let cmd = compose_command();
    let out = Command::new(&cmd[0])
        .args(&cmd[1..])
        .args(["-p", &name, "-f"])
        .arg(&file)
        .args(["up", "-d"])
        .output()
        .expect("run compose");
    assert!(
        out.status.success(),
        "compose up failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Project {
        name,
        _dir: dir,
        _guard: guard,
    }
}
