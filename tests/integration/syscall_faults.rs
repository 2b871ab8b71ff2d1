//! The `syscall` fault against real containers (the project's FROM scratch image in `store` or
//! `ping` mode, nothing added to it): an injected ENOSPC is seen by the process and logged, the
//! path filter leaves writes elsewhere alone, a delay shows in the measured write time, nth/every
//! and a seeded probability pick the calls, processes started later by `docker exec` and threads
//! created later are traced too, a second tracer is refused with a clear error, reverting (by
//! hand or at teardown) leaves every process running and untraced, a SIGKILLed recorder leaves
//! nothing attached and `recorder cleanup` reports live tracers. Also an (ignored) overhead
//! benchmark, run by scripts/bench-syscall-fault.sh.

use std::process::Command;
use std::time::{Duration, Instant};

use integration_tests::{ensure_images, require_docker, unique_project, ProjectGuard, DEMO_IMAGE};
use recorder::faults::syscall::{container_threads, tracer_pid};
use recorder::faults::{FaultInjector, FaultRequest, FaultTarget};
use recorder::sink::{EventReceiver, EventSink};
use serde_json::{json, Value};

use crate::recorder_common::up;

fn compose_yaml() -> String {
    format!(
        r#"services:
  store:
    image: {DEMO_IMAGE}
    command: ["store"]
    environment:
      ID: s1
      INTERVAL: "100ms"
      DATA_DIR: /data
      SCRATCH_DIR: /scratch
    tmpfs: [/data, /scratch]
    stop_grace_period: 1s
"#
    )
}

fn sh(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

fn container(project: &str) -> String {
    let out = sh(
        "docker",
        &[
            "ps",
            "-q",
            "--no-trunc",
            "--filter",
            &format!("label=com.docker.compose.project={project}"),
        ],
    );
    let id = out
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    assert!(!id.is_empty(), "no container in {project}");
    id
}

fn main_pid(c: &str) -> i32 {
    sh("docker", &["inspect", "-f", "{{.State.Pid}}", c])
        .trim()
        .parse()
        .expect("container pid")
}

fn running(c: &str) -> bool {
    sh("docker", &["inspect", "-f", "{{.State.Running}}", c]).trim() == "true"
}

/// The container's log lines (stdout).
fn logs(c: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args(["logs", c])
        .output()
        .expect("docker logs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Waits until the container has logged `n` more lines than `from`, returns the new ones.
fn new_lines(c: &str, from: usize, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let l = logs(c);
        if l.len() >= from + n || Instant::now() > deadline {
            return l.into_iter().skip(from).collect();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `us=` of a log line.
fn micros(line: &str) -> u64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("us="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no us= in {line:?}"))
}

async fn injector(project: &str, seed: u64) -> (FaultInjector, EventReceiver) {
    let docker = bollard::Docker::connect_with_local_defaults()
        .expect("docker client")
        .negotiate_version()
        .await
        .expect("docker version negotiation");
    let (sink, rx) = EventSink::channel();
    let inj = FaultInjector::new(docker, project, sink, seed).expect("injector");
    (inj, rx)
}

fn req(args: Value) -> FaultRequest {
    let args = match args {
        Value::Object(m) => m.into_iter().collect(),
        _ => Vec::new(),
    };
    FaultRequest {
        action: "syscall".into(),
        args,
        target: FaultTarget::Service("store".into()),
        duration: None,
        experiment: Some("syscall-test".into()),
        step: Some(1),
        intended_ns: recorder::sink::now_ns(),
    }
}

fn fault_events(rx: &mut EventReceiver) -> Vec<Value> {
    let mut v = Vec::new();
    rx.drain_into(&mut v, usize::MAX);
    v.into_iter()
        .filter(|e| e.source == "fault")
        .map(|e| serde_json::from_str(e.data.as_deref().unwrap_or("null")).expect("json"))
        .collect()
}

/// Tracer pids of every thread of the container (0: untraced).
fn tracers(c: &str) -> Vec<(i32, i32)> {
    container_threads(main_pid(c))
        .into_iter()
        .filter_map(|t| tracer_pid(t).map(|p| (t, p)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enospc_on_the_data_path_is_seen_by_the_process_and_revert_leaves_it_untraced() {
    require_docker!();
    let p = up("sysenospc", &compose_yaml());
    let c = container(&p.name);
    let (mut inj, mut rx) = injector(&p.name, 7).await;
    let me = std::process::id() as i32;
    assert!(
        tracers(&c).iter().all(|(_, t)| *t == 0),
        "traced before the fault"
    );

    let from = new_lines(&c, 0, 6).len();
    let id = inj
        .apply(&req(
            json!({"calls": "writes", "error": "ENOSPC", "path": "/data"}),
        ))
        .await
        .expect("apply syscall fault");
    let ev = fault_events(&mut rx);
    assert_eq!(ev[0]["phase"], "applied", "{ev:?}");
    assert_eq!(ev[0]["params"]["error"]["name"], "ENOSPC");
    assert_eq!(ev[0]["params"]["path"], "/data");
    assert!(
        ev[0]["params"]["pids"].as_object().is_some_and(|m| m
            .values()
            .any(|v| v.as_array().is_some_and(|a| !a.is_empty()))),
        "{ev:?}"
    );
    // every thread of the container is traced, by this process (the tracer thread is ours)
    let t = tracers(&c);
    assert!(!t.is_empty() && t.iter().all(|(_, p)| *p != 0), "{t:?}");
    assert!(
        t.iter().all(|(_, p)| tracer_pid(*p).is_some()
            && sh("cat", &[&format!("/proc/{p}/status")]).contains(&format!("Tgid:\t{me}"))),
        "tracer is not this process: {t:?}"
    );

    let lines = new_lines(&c, from, 30);
    let data_err: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains(" write n=") && l.contains("errno=28"))
        .collect();
    assert!(
        data_err.len() >= 5,
        "writes under /data did not fail with ENOSPC: {lines:#?}"
    );
    assert!(
        data_err[0].contains("No space left on device"),
        "{data_err:?}"
    );
    assert!(lines.iter().any(|l| l.contains("degraded: writes failing")));
    // the path filter: writes under /scratch (and stdout) go through
    let scratch: Vec<&String> = lines.iter().filter(|l| l.contains(" scratch n=")).collect();
    assert!(scratch.len() >= 5, "{lines:#?}");
    assert!(
        scratch.iter().all(|l| l.contains(" ok ")),
        "scratch writes were injected: {scratch:?}"
    );
    // reads keep being served
    assert!(
        lines
            .iter()
            .filter(|l| l.contains(" read n=") && l.contains(" ok "))
            .count()
            >= 5
    );

    inj.revert(id).await;
    let ev = fault_events(&mut rx);
    assert_eq!(ev[0]["phase"], "reverted", "{ev:?}");
    assert_eq!(ev[0]["error"], Value::Null, "{ev:?}");
    let injected = ev[0]["params"]["injected"]
        .as_u64()
        .expect("injected count");
    let matched = ev[0]["params"]["matched"].as_u64().expect("matched count");
    assert!(
        injected >= data_err.len() as u64 && matched == injected,
        "{ev:?}"
    );

    // running, untraced, and writing again
    assert!(running(&c));
    let t = tracers(&c);
    assert!(
        !t.is_empty() && t.iter().all(|(_, p)| *p == 0),
        "still traced: {t:?}"
    );
    let from = logs(&c).len();
    let lines = new_lines(&c, from, 12);
    assert!(
        lines
            .iter()
            .any(|l| l.contains(" write n=") && l.contains(" ok ")),
        "{lines:#?}"
    );
    assert!(!lines.iter().any(|l| l.contains("errno=28")), "{lines:#?}");
    let all = logs(&c);
    assert!(
        all.iter().any(|l| l.contains("recovered after")),
        "{all:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_shows_in_the_write_time_and_nth_every_picks_calls() {
    require_docker!();
    let p = up("sysdelay", &compose_yaml());
    let c = container(&p.name);
    let (mut inj, mut rx) = injector(&p.name, 7).await;
    let from = new_lines(&c, 0, 6).len();
    let id = inj
        .apply(&req(
            json!({"calls": ["write"], "delay": "150ms", "path": "/data"}),
        ))
        .await
        .expect("apply delay");
    let lines = new_lines(&c, from, 20);
    let data: Vec<u64> = lines
        .iter()
        .filter(|l| l.contains(" write n=") && l.contains(" ok "))
        .map(|l| micros(l))
        .collect();
    let scratch: Vec<u64> = lines
        .iter()
        .filter(|l| l.contains(" scratch n="))
        .map(|l| micros(l))
        .collect();
    // the first logged write may have started before the fault
    assert!(data.len() >= 3, "{lines:#?}");
    assert!(
        data[1..].iter().all(|us| *us >= 150_000),
        "data writes not delayed by 150ms: {data:?}"
    );
    assert!(
        scratch[1..].iter().all(|us| *us < 100_000),
        "scratch writes delayed: {scratch:?}"
    );
    inj.revert(id).await;

    // nth/every: the 2nd matching write, then every 2nd: failures alternate with successes
    let from = logs(&c).len();
    let id = inj
        .apply(&req(
            json!({"calls": "writes", "error": "EIO", "path": "/data", "nth": 2, "every": 2}),
        ))
        .await
        .expect("apply nth/every");
    let lines = new_lines(&c, from, 40);
    inj.revert(id).await;
    let ev = fault_events(&mut rx);
    let applied = ev
        .iter()
        .rev()
        .find(|e| e["phase"] == "applied")
        .expect("applied");
    assert_eq!(
        applied["params"]["when"],
        json!({"mode": "nth", "nth": 2, "every": 2})
    );
    let outcomes: Vec<bool> = lines
        .iter()
        .filter(|l| l.contains(" write n="))
        .map(|l| l.contains("errno=5"))
        .collect();
    assert!(outcomes.iter().filter(|x| **x).count() >= 3, "{lines:#?}");
    assert!(
        outcomes.windows(2).all(|w| !(w[0] && w[1])),
        "two failures in a row with every=2: {lines:#?}"
    );
    let reverted = ev
        .iter()
        .rev()
        .find(|e| e["phase"] == "reverted")
        .expect("reverted");
    let (m, i) = (
        reverted["params"]["matched"].as_u64().unwrap_or(0),
        reverted["params"]["injected"].as_u64().unwrap_or(0),
    );
    assert!(i == m / 2, "matched {m}, injected {i}");
    assert!(tracers(&c).iter().all(|(_, p)| *p == 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_started_later_are_traced_and_a_second_tracer_is_refused() {
    require_docker!();
    let p = up("syslater", &compose_yaml());
    let c = container(&p.name);
    let (mut inj, mut rx) = injector(&p.name, 7).await;
    new_lines(&c, 0, 3);
    let id = inj
        .apply(&req(
            json!({"calls": "writes", "error": "ENOSPC", "path": "/data"}),
        ))
        .await
        .expect("apply");
    // a process started by `docker exec` after the fault: not a child of a traced process
    let out = sh(
        "docker",
        &[
            "exec",
            &c,
            "/demo-node",
            "store",
            "--id",
            "late",
            "--count",
            "15",
            "--interval",
            "100ms",
            "--data-dir",
            "/data",
        ],
    );
    assert!(
        out.contains("store late write n=") && out.contains("errno=28"),
        "the exec'd process was not injected: {out}"
    );
    // one tracer per process: a second syscall fault on the same container fails clearly
    let e = inj
        .apply(&req(json!({"calls": "openat", "error": "EMFILE"})))
        .await
        .expect_err("second tracer");
    let msg = e.to_string();
    assert!(msg.contains("already traced by pid"), "{msg}");
    let ev = fault_events(&mut rx);
    assert!(ev.iter().any(|e| e["phase"] == "failed"), "{ev:?}");
    // the first fault is intact and reverts cleanly
    inj.revert(id).await;
    let ev = fault_events(&mut rx);
    assert_eq!(ev[0]["phase"], "reverted");
    assert_eq!(ev[0]["error"], Value::Null, "{ev:?}");
    assert!(running(&c));
    assert!(tracers(&c).iter().all(|(_, p)| *p == 0));
}

const SIGKILL_SPEC: &str = r#"
monitor wroteFine = eventually log where message ~ r"^store \S+ write n=\d+ ok " within 30s
monitor diskFull = eventually log where message ~ r"errno=28 " within 10s
monitor noSuchLine = eventually log where message == "no such line" within 120s

experiment HeldFault {
  expect wroteFine
  do syscall(calls: "writes", error: "ENOSPC", path: "/data") on store for 120s
  expect diskFull
  expect noSuchLine
}
"#;

/// A recorder killed with SIGKILL while its tracer holds the container: the kernel detaches
/// every tracee (the process keeps running, untraced, and writes again); `recorder cleanup`
/// then finds nothing traced and removes the project.
#[test]
fn sigkilled_recorder_leaves_the_process_running_and_untraced() {
    use crate::recorder_common::write_scenario;
    use integration_tests::{bin, project_containers};
    require_docker!();
    ensure_images();
    let project = unique_project("syskill");
    let _guard = ProjectGuard::new(&project);
    let (dir, scenario) = write_scenario(
        &project,
        &compose_yaml(),
        "time_limit = \"150s\"",
        "[experiment]\nspecs = [\"exp.spec\"]\nname = \"HeldFault\"\n",
    );
    std::fs::write(dir.path().join("exp.spec"), SIGKILL_SPEC).expect("write spec");
    let mut child = Command::new(bin("recorder"))
        .args(["run", "--quiet"])
        .arg(&scenario)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn recorder");
    let rec_pid = child.id() as i32;
    // wait until the fault holds: the store's threads are traced by the recorder and it logs
    // ENOSPC
    let start = Instant::now();
    let c = loop {
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "the fault never held"
        );
        std::thread::sleep(Duration::from_millis(300));
        if project_containers(&project).is_empty()
            || sh(
                "docker",
                &[
                    "ps",
                    "-q",
                    "--filter",
                    &format!("label=com.docker.compose.project={project}"),
                ],
            )
            .trim()
            .is_empty()
        {
            continue;
        }
        let c = container(&project);
        let t = tracers(&c);
        let by_recorder = !t.is_empty()
            && t.iter().all(|(_, p)| {
                std::fs::read_to_string(format!("/proc/{p}/status"))
                    .is_ok_and(|s| s.contains(&format!("Tgid:\t{rec_pid}\n")))
            });
        if by_recorder && logs(&c).iter().any(|l| l.contains("errno=28")) {
            break c;
        }
    };
    let st = Command::new("kill")
        .args(["-KILL", &rec_pid.to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
    let _ = child.wait();
    // the kernel detached every tracee; the process runs and its writes succeed again
    std::thread::sleep(Duration::from_millis(300));
    assert!(running(&c), "the store died with its tracer");
    let t = tracers(&c);
    assert!(
        !t.is_empty() && t.iter().all(|(_, p)| *p == 0),
        "still traced: {t:?}"
    );
    let from = logs(&c).len();
    let lines = new_lines(&c, from, 9);
    assert!(
        lines
            .iter()
            .any(|l| l.contains(" write n=") && l.contains(" ok ")),
        "{lines:#?}"
    );
    assert!(!lines.iter().any(|l| l.contains("errno=28")), "{lines:#?}");
    let out = Command::new(bin("recorder"))
        .args(["cleanup", "--project", &project])
        .output()
        .expect("cleanup");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    assert!(!text.contains("still traced"), "{text}");
    assert!(text.contains("removed 1 containers"), "{text}");
    assert!(project_containers(&project).is_empty());
}

/// `recorder cleanup` names a tracer that is still alive (here: this test's own injector).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_reports_threads_still_traced() {
    require_docker!();
    let p = up("systraced", &compose_yaml());
    let c = container(&p.name);
    let (mut inj, _rx) = injector(&p.name, 7).await;
    new_lines(&c, 0, 3);
    let id = inj
        .apply(&req(json!({"calls": "fsync", "delay": "10ms"})))
        .await
        .expect("apply");
    let docker = bollard::Docker::connect_with_local_defaults()
        .expect("docker client")
        .negotiate_version()
        .await
        .expect("docker version negotiation");
    let lines = recorder::faults::traced_leftovers(&docker, &p.name)
        .await
        .expect("traced leftovers");
    let me = std::process::id();
    assert!(!lines.is_empty(), "no traced thread reported");
    assert!(
        lines.iter().all(|l| l.contains("still traced by pid")),
        "{lines:?}"
    );
    assert!(
        lines.iter().all(|l| {
            l.split("by pid ")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .and_then(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
                .is_some_and(|s| s.contains(&format!("Tgid:\t{me}\n")))
        }),
        "{lines:?}"
    );
    inj.revert(id).await;
    let lines = recorder::faults::traced_leftovers(&docker, &p.name)
        .await
        .expect("traced leftovers");
    assert!(lines.is_empty(), "{lines:?}");
}

/// The median `rate=` of the next `n` `loop` lines of the container.
fn loop_rate(c: &str, n: usize) -> f64 {
    let from = logs(c).len();
    let lines = new_lines(c, from, n);
    let mut r: Vec<f64> = lines
        .iter()
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("rate="))
                .and_then(|v| v.parse().ok())
        })
        .collect();
    assert!(!r.is_empty(), "no rate lines: {lines:?}");
    r.sort_by(f64::total_cmp);
    r[r.len() / 2]
}

/// The slowdown of a traced process (not a pass/fail test; run by scripts/bench-syscall-fault.sh):
/// demo-node `store --loop true` writes 64-byte records to a tmpfs file as fast as it can; its
/// write rate untraced, traced by a fault that matches none of its calls (`fsync`: every syscall
/// still stops twice), traced with a path filter that must look up each write's file but
/// matches none, and delayed by 1ms on each write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: scripts/bench-syscall-fault.sh"]
async fn syscall_overhead_benchmark() {
    require_docker!();
    let p = up(
        "sysbench",
        &compose_yaml().replace("INTERVAL: \"100ms\"", "LOOP: \"true\""),
    );
    let name = p.name.clone();
    let c = container(&name);
    let (mut inj, _rx) = injector(&name, 7).await;
    new_lines(&c, 0, 2);
    let base = loop_rate(&c, 5);
    let mut rows = vec![("untraced".to_string(), base)];
    for (label, args) in [
        (
            "traced, no call matches (calls: fsync)",
            json!({"calls": "fsync", "error": "EIO"}),
        ),
        (
            "traced, path filter matches no write (calls: writes, path: /elsewhere)",
            json!({"calls": "writes", "error": "EIO", "path": "/elsewhere"}),
        ),
        (
            "every write delayed 1ms",
            json!({"calls": "writes", "delay": "1ms", "path": "/data"}),
        ),
    ] {
        let id = inj.apply(&req(args)).await.expect("apply");
        let r = loop_rate(&c, 5);
        inj.revert(id).await;
        rows.push((label.to_string(), r));
    }
    println!("write loop (64-byte write(2) calls on tmpfs), median of 5 one-second windows:");
    for (label, r) in &rows {
        println!(
            "  {label:<72} {r:>10.0} writes/s  ({:.1}x slower)",
            base / r
        );
    }
}

/// Threads created after the fault was applied (demo-node `ping`'s responder starts one per TCP
/// connection) are traced from their first instruction and get the fault; after the revert the
/// process keeps answering, untraced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threads_created_later_get_the_fault() {
    use std::io::{BufRead, BufReader, Write};
    require_docker!();
    let p = up(
        "systhreads",
        &format!(
            "services:\n  store:\n    image: {DEMO_IMAGE}\n    command: [\"ping\", \"--listen-port\", \"7001\"]\n    stop_grace_period: 1s\n"
        ),
    );
    let name = p.name.clone();
    let c = container(&name);
    let ip = sh(
        "docker",
        &[
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            &c,
        ],
    )
    .trim()
    .to_string();
    // one round trip on a new connection (a new responder thread); returns its duration
    let round_trip = |seq: u32| -> Duration {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut s = loop {
            match std::net::TcpStream::connect((ip.as_str(), 7001)) {
                Ok(s) => break s,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("connect {ip}:7001: {e}"),
            }
        };
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let t = Instant::now();
        s.write_all(format!("ping t {seq}\n").as_bytes())
            .expect("send");
        let mut line = String::new();
        BufReader::new(&s).read_line(&mut line).expect("pong");
        assert_eq!(line.trim(), format!("pong t {seq}"));
        t.elapsed()
    };
    round_trip(0);
    let (mut inj, _rx) = injector(&name, 7).await;
    let id = inj
        .apply(&req(json!({"calls": "sendto", "delay": "300ms"})))
        .await
        .expect("apply");
    let before = container_threads(main_pid(&c)).len();
    for seq in 1..=3 {
        let d = round_trip(seq);
        assert!(
            d >= Duration::from_millis(300),
            "reply {seq} not delayed: {d:?}"
        );
    }
    let t = tracers(&c);
    assert!(t.iter().all(|(_, p)| *p != 0), "{t:?}");
    inj.revert(id).await;
    assert!(running(&c));
    let t = tracers(&c);
    assert!(t.len() >= before && t.iter().all(|(_, p)| *p == 0), "{t:?}");
    let d = round_trip(4);
    assert!(
        d < Duration::from_millis(300),
        "still delayed after the revert: {d:?}"
    );
}

/// `probability`: about that share of the matching calls fail, drawn with the scenario's seed
/// (recorded in the event), both outcomes seen by the process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probability_injects_a_share_with_the_recorded_seed() {
    require_docker!();
    let p = up("sysprob", &compose_yaml());
    let c = container(&p.name);
    let (mut inj, mut rx) = injector(&p.name, 1234).await;
    let from = new_lines(&c, 0, 3).len();
    let id = inj
        .apply(&req(
            json!({"calls": "writes", "error": "EIO", "path": "/data", "probability": 0.5}),
        ))
        .await
        .expect("apply");
    let lines = new_lines(&c, from, 90);
    inj.revert(id).await;
    let ev = fault_events(&mut rx);
    assert_eq!(ev[0]["params"]["seed"], 1234, "{ev:?}");
    assert_eq!(
        ev[0]["params"]["when"],
        json!({"mode": "probability", "probability": 0.5})
    );
    let writes: Vec<&String> = lines.iter().filter(|l| l.contains(" write n=")).collect();
    let failed = writes.iter().filter(|l| l.contains("errno=5 ")).count();
    assert!(writes.len() >= 20, "{lines:#?}");
    assert!(
        failed >= writes.len() / 5 && failed <= writes.len() * 4 / 5,
        "{failed} of {} writes failed with p=0.5",
        writes.len()
    );
    let m = ev[1]["params"]["matched"].as_u64().unwrap_or(0);
    let i = ev[1]["params"]["injected"].as_u64().unwrap_or(0);
    assert!(i > 0 && i < m, "matched {m}, injected {i}");
}

/// A `for` longer than the run: the time limit ends the run and teardown reverts the fault
/// (a `reverted` event with its counts, no error) before the project goes down.
#[test]
fn teardown_reverts_an_active_syscall_fault() {
    use crate::recorder_common::{read_events, run_recorder, write_scenario};
    require_docker!();
    ensure_images();
    let project = unique_project("systeardown");
    let _guard = ProjectGuard::new(&project);
    let (dir, scenario) = write_scenario(
        &project,
        &compose_yaml(),
        "time_limit = \"15s\"",
        "[experiment]\nspecs = [\"exp.spec\"]\nname = \"HeldFault\"\n",
    );
    std::fs::write(dir.path().join("exp.spec"), SIGKILL_SPEC).expect("write spec");
    let (code, out, err) = run_recorder(&scenario);
    assert_eq!(code, 2, "expected the time limit: {out}\n{err}");
    let ev = read_events(&dir.path().join("trace"));
    let phases: Vec<Value> = ev
        .iter()
        .filter(|e| e.source == "fault" && e.kind == "syscall")
        .filter_map(|e| serde_json::from_str(e.data.as_deref()?).ok())
        .collect();
    assert_eq!(phases.len(), 2, "{phases:#?}");
    assert_eq!(phases[1]["phase"], "reverted");
    assert_eq!(phases[1]["error"], Value::Null);
    assert!(
        phases[1]["params"]["injected"].as_u64().unwrap_or(0) > 0,
        "{phases:#?}"
    );
}

/// A revert while the container is paused (cgroup freezer): its threads cannot stop for the
/// detach; after 5 s the revert gives up with an error naming them, the tracer thread ends and the
/// kernel detaches them, so the process is untraced (already while paused) and runs on once
/// unpaused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revert_while_paused_detaches_when_the_tracer_ends() {
    require_docker!();
    let p = up("syspaused", &compose_yaml());
    let c = container(&p.name);
    let (mut inj, mut rx) = injector(&p.name, 7).await;
    new_lines(&c, 0, 3);
    let id = inj
        .apply(&req(
            json!({"calls": "writes", "error": "ENOSPC", "path": "/data"}),
        ))
        .await
        .expect("apply");
    sh("docker", &["pause", &c]);
    let t = Instant::now();
    inj.revert(id).await;
    let took = t.elapsed();
    let ev = fault_events(&mut rx);
    let paused = tracers(&c);
    sh("docker", &["unpause", &c]);
    assert!(took < Duration::from_secs(10), "revert took {took:?}");
    assert_eq!(ev[1]["phase"], "reverted");
    let err = ev[1]["error"].as_str().unwrap_or_default();
    assert!(
        err.contains("did not stop for detaching within 5s"),
        "{ev:?}"
    );
    assert!(
        !paused.is_empty() && paused.iter().all(|(_, p)| *p == 0),
        "{paused:?}"
    );
    assert!(running(&c));
    let from = logs(&c).len();
    let lines = new_lines(&c, from, 6);
    assert!(
        lines
            .iter()
            .any(|l| l.contains(" write n=") && l.contains(" ok ")),
        "{lines:#?}"
    );
}
