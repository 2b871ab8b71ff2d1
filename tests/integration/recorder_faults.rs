//! The recorder under its own faults, on real Docker: the Docker event and log streams cut by a
//! proxy in front of the daemon (gaps recorded, nothing lost that the daemon kept, nothing
//! duplicated), a container restarting in a loop, a container flooding its log, probe endpoints
//! that hang or answer garbage, and a disk that fills up during the run. Each test asserts what is
//! recorded in the trace and what is left on the host.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use integration_tests::{
    bin, ensure_images, project_containers, project_networks, require_docker, unique_project,
    ProjectGuard, DEMO_IMAGE,
};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use trace::Event;

use crate::recorder_common::{
    chatter_compose, numbered_lines, read_events, run_recorder, write_scenario,
};

fn data(e: &Event) -> Value {
    e.data
        .as_deref()
        .and_then(|d| serde_json::from_str(d).ok())
        .unwrap_or(Value::Null)
}

fn sh(cmd: &str, args: &[&str]) -> String {
    let o = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The container of a service of the project (its id), empty when there is none yet.
fn container_of(project: &str, service: &str) -> String {
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

/// Waits (bounded) until every service has a running container; panics otherwise.
fn wait_running(project: &str, services: &[&str], within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let all = services.iter().all(|s| {
            let id = container_of(project, s);
            !id.is_empty()
                && sh("docker", &["inspect", "-f", "{{.State.Running}}", &id]).trim() == "true"
        });
        if all {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the services {services:?} of {project} did not start"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Asserts that the numbered lines of chatter `id` are exactly `1..=n` (each once, none
/// missing); returns n.
fn assert_contiguous(events: &[Event], id: &str) -> u64 {
    let mut nums: Vec<u64> = numbered_lines(events, id).iter().map(|l| l.0).collect();
    let total = nums.len();
    nums.sort_unstable();
    nums.dedup();
    assert_eq!(nums.len(), total, "duplicated lines of {id}");
    let n = nums.last().copied().unwrap_or(0);
    let missing: Vec<u64> = (1..=n).filter(|i| nums.binary_search(i).is_err()).collect();
    assert!(
        missing.is_empty(),
        "{} lines of {id} missing (of {n}), first {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    n
}

/// A recorder process, killed when dropped (a failed assertion must not leave it running).
struct Reap(std::process::Child);

impl Reap {
    /// Waits (bounded) for the process to exit.
    fn wait_for(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(s)) = self.0.try_wait() {
                return s;
            }
            assert!(Instant::now() < deadline, "the recorder did not finish");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// a proxy on a Unix socket in front of the Docker daemon that can cut its long-lived streams

/// What the proxy has seen and done.
#[derive(Default)]
struct ProxyState {
    /// Streaming requests refused until then.
    blocked_until: Mutex<Option<Instant>>,
    /// Streaming connections forwarded, by kind (`events`, `logs`).
    streams: Mutex<BTreeMap<String, u64>>,
    /// Streaming connections cut or refused.
    cut: AtomicU64,
}

impl ProxyState {
    fn blocked(&self) -> bool {
        match self.blocked_until.lock() {
            Ok(g) => g.is_some_and(|t| Instant::now() < t),
            Err(p) => p.into_inner().is_some_and(|t| Instant::now() < t),
        }
    }
}

/// A proxy listening on `path` (its own runtime thread), forwarding every connection to
/// /var/run/docker.sock. `cut` closes the connections that carry a following `events` or
/// `logs` request and refuses new ones for a while.
struct DockerProxy {
    path: PathBuf,
    state: Arc<ProxyState>,
    generation: tokio::sync::watch::Sender<u64>,
    _rt: tokio::runtime::Runtime,
}

/// `events` or `logs` when a request in this chunk opens a long-lived stream.
fn stream_kind(chunk: &[u8]) -> Option<&'static str> {
    let text = String::from_utf8_lossy(chunk);
    text.lines()
        .filter(|l| l.starts_with("GET "))
        .find_map(|l| {
            let target = l.split_whitespace().nth(1).unwrap_or("");
            let path = target.split('?').next().unwrap_or("");
            if path.ends_with("/events") {
                Some("events")
            } else if path.ends_with("/logs") && target.contains("follow=true") {
                Some("logs")
            } else {
                None
            }
        })
}

impl DockerProxy {
    fn start(path: &Path) -> DockerProxy {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("proxy runtime");
        let state = Arc::new(ProxyState::default());
        let (generation, gen_rx) = tokio::sync::watch::channel(0u64);
        let listener = {
            let _g = rt.enter();
            tokio::net::UnixListener::bind(path).expect("bind the proxy socket")
        };
        let st = state.clone();
        rt.spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(proxy_connection(client, st.clone(), gen_rx.clone()));
            }
        });
        DockerProxy {
            path: path.to_path_buf(),
            state,
            generation,
            _rt: rt,
        }
    }

    /// `DOCKER_HOST` for clients of the proxy.
    fn docker_host(&self) -> String {
        format!("unix://{}", self.path.display())
    }

    /// Closes every open stream and refuses new ones for `block`.
    fn cut(&self, block: Duration) {
        if let Ok(mut g) = self.state.blocked_until.lock() {
            *g = Some(Instant::now() + block);
        }
        self.generation.send_modify(|g| *g += 1);
    }
}

async fn proxy_connection(
    client: tokio::net::UnixStream,
    st: Arc<ProxyState>,
    mut generation: tokio::sync::watch::Receiver<u64>,
) {
    let Ok(daemon) = tokio::net::UnixStream::connect("/var/run/docker.sock").await else {
        return;
    };
    let (mut cr, mut cw) = client.into_split();
    let (mut dr, mut dw) = daemon.into_split();
    let streaming = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let refused = Arc::new(tokio::sync::Notify::new());
    let up = {
        let st = st.clone();
        let streaming = streaming.clone();
        let refused = refused.clone();
        async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match cr.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if let Some(kind) = stream_kind(&buf[..n]) {
                    if st.blocked() {
                        st.cut.fetch_add(1, Ordering::SeqCst);
                        refused.notify_one();
                        return;
                    }
                    streaming.store(true, Ordering::SeqCst);
                    if let Ok(mut m) = st.streams.lock() {
                        *m.entry(kind.to_string()).or_default() += 1;
                    }
                }
                if dw.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
            let _ = dw.shutdown().await;
        }
    };
    let down = async move {
        let _ = tokio::io::copy(&mut dr, &mut cw).await;
        let _ = cw.shutdown().await;
    };
    let cut = {
        let st = st.clone();
        let streaming = streaming.clone();
        async move {
            generation.borrow_and_update();
            loop {
                if generation.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
                if streaming.load(Ordering::SeqCst) {
                    st.cut.fetch_add(1, Ordering::SeqCst);
                    return;
                }
            }
        }
    };
    tokio::select! {
        _ = async { tokio::join!(up, down) } => {}
        _ = cut => {}
        _ = refused.notified() => {}
    }
}

/// The `recorder`/`stream_gap` events of one sensor (and container), as data.
fn gaps(events: &[Event], sensor: &str, container: Option<&str>) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e.source == "recorder" && e.kind == "stream_gap")
        .filter(|e| container.is_none() || e.container.as_deref() == container)
        .map(data)
        .filter(|d| d["sensor"] == sensor)
        .collect()
}

#[test]
fn docker_streams_cut_mid_run_are_read_again_without_loss_or_duplicates() {
    require_docker!();
    ensure_images();
    let project = unique_project("streamcut");
    let _guard = ProjectGuard::new(&project);
    let (dir, scenario) = write_scenario(
        &project,
        &chatter_compose(20),
        "time_limit = \"120s\"\nduration = \"22s\"",
        "[sensors]\nstats = false\n",
    );
    let proxy = DockerProxy::start(&dir.path().join("docker.sock"));
    let log = std::fs::File::create(dir.path().join("recorder.log")).expect("log file");
    let mut child = Reap(
        Command::new(bin("recorder"))
            .args(["run", "--quiet"])
            .arg(&scenario)
            .env("DOCKER_HOST", proxy.docker_host())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start recorder"),
    );
    wait_running(&project, &["a", "b"], Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(4));
    let b = container_of(&project, "b");
    // first cut: streams refused for 3 s; b is paused and unpaused meanwhile (the daemon keeps
    // those events, the recorder must get them once it is back)
    let cut1 = Instant::now();
    proxy.cut(Duration::from_secs(3));
    std::thread::sleep(Duration::from_millis(500));
    sh("docker", &["pause", &b]);
    std::thread::sleep(Duration::from_millis(800));
    sh("docker", &["unpause", &b]);
    let blocked_for = cut1.elapsed();
    std::thread::sleep(Duration::from_secs(5));
    // second cut: closed, reconnecting at once
    proxy.cut(Duration::ZERO);
    let status = child.wait_for(Duration::from_secs(100));
    let stderr = std::fs::read_to_string(dir.path().join("recorder.log")).unwrap_or_default();
    assert!(status.success(), "recorder: {status:?}\n{stderr}");
    assert!(
        blocked_for < Duration::from_secs(3),
        "the pause fell outside the block"
    );
    let cut = proxy.state.cut.load(Ordering::SeqCst);
    let streams = proxy
        .state
        .streams
        .lock()
        .map(|m| m.clone())
        .unwrap_or_default();
    assert!(cut >= 4, "the proxy cut {cut} streams ({streams:?})");

    let ev = read_events(&dir.path().join("trace"));
    // every gap is recorded: the events stream twice, each container's log twice
    let eg = gaps(&ev, "events", None);
    assert!(eg.len() >= 2, "events gaps: {eg:?}");
    assert!(eg.iter().all(|g| g["from_ns"].is_i64()), "{eg:?}");
    assert!(
        eg[0]["to_ns"].is_i64(),
        "the events stream came back: {eg:?}"
    );
    assert!(eg[0]["since"].is_string(), "{eg:?}");
    for c in ["a", "b"] {
        let name = ev
            .iter()
            .find(|e| e.source == "log" && e.service.as_deref() == Some(c))
            .and_then(|e| e.container.clone())
            .unwrap_or_default();
        let lg = gaps(&ev, "logs", Some(&name));
        assert!(lg.len() >= 2, "log gaps of {c}: {lg:?}");
        assert!(lg.iter().all(|g| g["to_ns"].is_i64()), "{lg:?}");
    }
    // the daemon's events of the gap are there, once each
    let count = |kind: &str, service: &str| {
        ev.iter()
            .filter(|e| e.source == "docker" && e.kind == kind)
            .filter(|e| e.service.as_deref() == Some(service))
            .count()
    };
    assert_eq!(count("pause", "b"), 1, "pause of b");
    assert_eq!(count("unpause", "b"), 1, "unpause of b");
    assert_eq!(count("start", "a"), 1, "start of a");
    assert_eq!(count("start", "b"), 1, "start of b");
    // every log line, once: 20 lines/s for about 20 s
    for c in ["a", "b"] {
        let n = assert_contiguous(&ev, c);
        assert!(n >= 250, "only {n} lines of {c}");
    }
    // the lines written while the streams were refused are there (the daemon kept them)
    let t1 = eg[0]["from_ns"].as_i64().unwrap_or(0);
    let t2 = eg[0]["to_ns"].as_i64().unwrap_or(0);
    let during = numbered_lines(&ev, "a")
        .iter()
        .filter(|l| l.1 > t1 && l.1 < t2)
        .count();
    assert!(
        during >= 20,
        "{during} lines of a inside the gap {t1}..{t2}"
    );
    drop(proxy);
    assert!(project_containers(&project).is_empty());
    assert!(project_networks(&project).is_empty());
}

// ---------------------------------------------------------------------------------------------
// a container restarting in a loop; a container flooding its log

#[test]
fn a_container_restarting_in_a_loop_is_followed_run_by_run() {
    require_docker!();
    ensure_images();
    let project = unique_project("restartloop");
    let _guard = ProjectGuard::new(&project);
    // `crash` prints 10 numbered lines (numbering resumed across restarts) and exits 3; Docker
    // restarts it with a growing delay. `steady` chatters throughout.
    let compose = format!(
        r#"version: "2.4"
services:
  crash:
    image: {DEMO_IMAGE}
    command: ["chatter"]
    restart: always
    environment:
      ID: crash
      COUNT: "10"
      RATE: "50"
      EXIT_CODE: "3"
      RESUME_FILE: /resume
      LISTEN_PORT: "0"
    stop_grace_period: 1s
  steady:
    image: {DEMO_IMAGE}
    command: ["chatter", "--then", "wait"]
    environment:
      ID: steady
      RATE: "20"
      LISTEN_PORT: "0"
    stop_grace_period: 1s
"#
    );
    let (dir, scenario) = write_scenario(
        &project,
        &compose,
        "time_limit = \"120s\"\nduration = \"14s\"",
        "[sensors]\nstats_interval = \"1s\"\n",
    );
    let (code, stdout, stderr) = run_recorder(&scenario);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let ev = read_events(&dir.path().join("trace"));
    let docker = |kind: &str| -> Vec<Value> {
        ev.iter()
            .filter(|e| e.source == "docker" && e.kind == kind)
            .filter(|e| e.service.as_deref() == Some("crash"))
            .map(data)
            .collect()
    };
    let starts = docker("start").len();
    let crashes = docker("die")
        .iter()
        .filter(|d| d["attributes"]["exitCode"] == "3")
        .count();
    assert!(starts >= 4, "{starts} starts of crash");
    assert!(
        crashes + 1 >= starts,
        "{crashes} crashes for {starts} starts"
    );
    // every run's output is there: one `start` line per start, and every numbered line once
    let runs = ev
        .iter()
        .filter(|e| e.source == "log" && e.service.as_deref() == Some("crash"))
        .filter(|e| {
            e.message
                .as_deref()
                .is_some_and(|m| m.starts_with("start crash "))
        })
        .count();
    // every run that ran to its crash printed its `start` line; the last start may be stopped
    // by the teardown before it prints one
    assert!(
        runs >= crashes && runs <= starts,
        "{runs} start lines for {starts} starts and {crashes} crashes"
    );
    let n = assert_contiguous(&ev, "crash");
    assert!(n >= 10 * crashes as u64, "{n} lines for {crashes} crashes");
    // restarts are not stream gaps, and the other container is not disturbed
    let g: Vec<&Event> = ev.iter().filter(|e| e.kind == "stream_gap").collect();
    assert!(g.is_empty(), "restarts recorded as gaps: {g:?}");
    let steady = assert_contiguous(&ev, "steady");
    assert!(steady >= 200, "{steady} lines of steady");
    let stats = ev
        .iter()
        .filter(|e| e.source == "stats" && e.service.as_deref() == Some("steady"))
        .count();
    assert!(stats >= 8, "{stats} stats events of steady");
    assert!(project_containers(&project).is_empty());
}

/// The numbers of the `line N <id>` lines `docker logs` returns for a container (what the
/// daemon kept).
fn docker_kept_lines(container: &str, id: &str) -> Vec<u64> {
    let o = Command::new("docker")
        .args(["logs", container])
        .output()
        .expect("docker logs");
    let suffix = format!(" {id}");
    let mut v: Vec<u64> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("line ")?.strip_suffix(&suffix)?.parse().ok())
        .collect();
    v.sort_unstable();
    v
}

#[test]
fn a_log_flood_is_recorded_completely_through_the_bounded_log_lane() {
    require_docker!();
    ensure_images();
    let project = unique_project("logflood");
    let _guard = ProjectGuard::new(&project);
    // `flood` prints LINES numbered lines as fast as it can (a few seconds), then waits
    const LINES: u64 = 300_000;
    let compose = format!(
        r#"version: "2.4"
services:
  flood:
    image: {DEMO_IMAGE}
    command: ["chatter", "--then", "wait"]
    environment:
      ID: flood
      COUNT: "{LINES}"
      RATE: "0"
      LISTEN_PORT: "0"
    stop_grace_period: 1s
  steady:
    image: {DEMO_IMAGE}
    command: ["chatter", "--then", "wait"]
    environment:
      ID: steady
      RATE: "20"
      LISTEN_PORT: "0"
    stop_grace_period: 1s
"#
    );
    let (dir, scenario) = write_scenario(
        &project,
        &compose,
        "time_limit = \"300s\"\nduration = \"10s\"",
        "[sensors]\nstats = false\n",
    );
    let mut child = Reap(
        Command::new(bin("recorder"))
            .args(["run", "--quiet"])
            .arg(&scenario)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start recorder"),
    );
    wait_running(&project, &["flood"], Duration::from_secs(60));
    let flood = container_of(&project, "flood");
    // what the daemon kept, once the flood is over (a rotating log driver may drop some)
    let deadline = Instant::now() + Duration::from_secs(120);
    let kept = loop {
        let last = sh("docker", &["logs", "--tail", "1", &flood]);
        if last.contains(&format!("line {LINES} flood")) {
            break docker_kept_lines(&flood, "flood");
        }
        assert!(Instant::now() < deadline, "the flood did not end");
        std::thread::sleep(Duration::from_millis(500));
    };
    let status = child.wait_for(Duration::from_secs(280));
    assert!(status.success(), "recorder: {status:?}");
    let ev = read_events(&dir.path().join("trace"));
    let mut got: Vec<u64> = numbered_lines(&ev, "flood").iter().map(|l| l.0).collect();
    let total = got.len();
    got.sort_unstable();
    got.dedup();
    assert_eq!(got.len(), total, "duplicated lines of flood");
    let missing: Vec<u64> = kept
        .iter()
        .copied()
        .filter(|n| got.binary_search(n).is_err())
        .collect();
    assert!(
        missing.is_empty(),
        "{} of the {} lines the daemon kept are missing, first {:?}",
        missing.len(),
        kept.len(),
        &missing[..missing.len().min(10)]
    );
    if kept.len() as u64 == LINES {
        assert_eq!(assert_contiguous(&ev, "flood"), LINES);
    }
    let steady = assert_contiguous(&ev, "steady");
    assert!(steady >= 150, "{steady} lines of steady");
    let errors: Vec<&Event> = ev
        .iter()
        .filter(|e| e.kind == "sensor_error" || e.kind == "stream_gap")
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
}

/// A Debian image with a shell (the base of `chaos-zookeeper:latest`), built once per test
/// process by scripts/build-zookeeper-image.sh (cached by recipe).
fn debian_image() -> &'static str {
    static BUILT: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        let root = integration_tests::workspace_root();
        let status = Command::new("bash")
            .arg(root.join("scripts/build-zookeeper-image.sh"))
            .current_dir(&root)
            .stdout(Stdio::null())
            .status();
        assert!(
            matches!(status, Ok(s) if s.success()),
            "scripts/build-zookeeper-image.sh: {status:?}"
        );
    });
    "chaos-zookeeper-base:latest"
}

#[test]
fn an_endless_log_line_is_recorded_in_pieces() {
    require_docker!();
    let image = debian_image();
    let project = unique_project("longline");
    let _guard = ProjectGuard::new(&project);
    // one line, then 2.5 MiB (`1,2,3,…`) without a newline, then nothing until stopped
    const LEN: usize = 5 << 19;
    let compose = format!(
        r#"version: "2.4"
services:
  long:
    image: {image}
    entrypoint: ["/bin/sh", "-c"]
    command: ["echo before; seq 1 1000000 | tr '\\n' , | head -c {LEN}; exec sleep 600"]
    stop_grace_period: 1s
"#
    );
    let (dir, scenario) = write_scenario(
        &project,
        &compose,
        "time_limit = \"120s\"\nduration = \"6s\"",
        "[sensors]\nstats = false\n",
    );
    let (code, out, err) = run_recorder(&scenario);
    assert_eq!(code, 0, "recorder failed\nstdout:\n{out}\nstderr:\n{err}");
    let events = read_events(&dir.path().join("trace"));
    let lines: Vec<&Event> = events
        .iter()
        .filter(|e| e.source == "log" && e.service.as_deref() == Some("long"))
        .collect();
    assert_eq!(lines[0].message.as_deref(), Some("before"));
    assert_eq!(data(lines[0]), Value::Null, "a whole line has no data");
    let pieces = &lines[1..];
    let marks: Vec<Value> = pieces.iter().map(|e| data(e)).collect();
    assert_eq!(
        marks,
        vec![
            serde_json::json!({"part": 1, "continues": true}),
            serde_json::json!({"part": 2, "continues": true}),
            serde_json::json!({"part": 3, "continues": false}),
        ]
    );
    let sizes: Vec<usize> = pieces
        .iter()
        .map(|e| e.message.as_deref().map_or(0, str::len))
        .collect();
    assert_eq!(sizes, vec![1 << 20, 1 << 20, LEN - (2 << 20)]);
    let got: String = pieces.iter().filter_map(|e| e.message.as_deref()).collect();
    let mut want = String::new();
    let mut n = 1u64;
    while want.len() < LEN {
        want.push_str(&format!("{n},"));
        n += 1;
    }
    want.truncate(LEN);
    assert!(got == want, "the pieces do not join into the line written");
    assert!(pieces.iter().all(|e| e.kind == "stdout"));
}

// ---------------------------------------------------------------------------------------------
// probe endpoints that hang or answer garbage

#[test]
fn hanging_and_garbage_probe_endpoints_are_errors_and_the_run_goes_on() {
    require_docker!();
    ensure_images();
    let project = unique_project("badprobe");
    let _guard = ProjectGuard::new(&project);
    // `mute` accepts TCP connections on 7000 and never answers an HTTP request; `n1` is a
    // cluster node whose Jolokia JSON is garbage as a Prometheus exposition
    let compose = format!(
        r#"version: "2.4"
services:
  mute:
    image: {DEMO_IMAGE}
    command: ["chatter", "--then", "wait"]
    environment:
      ID: mute
      RATE: "20"
      LISTEN_PORT: "7000"
    stop_grace_period: 1s
  n1:
    image: {DEMO_IMAGE}
    command: ["cluster"]
    stop_grace_period: 1s
    environment:
      AKKA_HOST: n1
      SEED_NODES: "akka.tcp://Bad@n1:2552"
      AKKA_SYSTEM: Bad
      JOLOKIA_PORT: "8778"
"#
    );
    let (dir, scenario) = write_scenario(
        &project,
        &compose,
        "time_limit = \"90s\"\nduration = \"8s\"",
        r#"[sensors]
stats = false

[[sensors.http]]
service = "mute"
port = 7000
path = "/health"
interval = "500ms"
timeout = "1s"

[[sensors.prom]]
service = "n1"
port = 8778
path = "/jolokia/version"
interval = "500ms"

[[sensors.http]]
service = "n1"
port = 8778
path = "/jolokia/version"
interval = "500ms"
"#,
    );
    let started = Instant::now();
    let (code, stdout, stderr) = run_recorder(&scenario);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(started.elapsed() < Duration::from_secs(80));
    let ev = read_events(&dir.path().join("trace"));
    let of = |source: &str, service: &str, kind: &str| -> Vec<Value> {
        ev.iter()
            .filter(|e| e.source == source && e.kind == kind)
            .filter(|e| e.service.as_deref() == Some(service))
            .map(data)
            .collect()
    };
    let hung = of("http", "mute", "error");
    assert!(hung.len() >= 3, "{hung:?}");
    assert!(
        hung.iter().all(|d| d["error_type"] == "timeout"),
        "{hung:?}"
    );
    assert!(of("http", "mute", "response").is_empty());
    let garbage = of("prom", "n1", "error");
    assert!(garbage.len() >= 5, "{garbage:?}");
    assert!(
        garbage.iter().all(|d| d["error_type"] == "bad_exposition"),
        "{garbage:?}"
    );
    // the healthy probe of the same endpoint and the logs are not held up
    let ok = of("http", "n1", "response");
    assert!(ok.len() >= 10, "{} good responses", ok.len());
    assert!(ok.iter().all(|d| d["status"] == 200));
    let n = assert_contiguous(&ev, "mute");
    assert!(n >= 120, "{n} lines of mute");
    assert!(project_containers(&project).is_empty());
}

// ---------------------------------------------------------------------------------------------
// a disk that fills up during the run

/// A tmpfs of `size` mounted at `dir` for the life of the value (unmounted on drop, also when
/// the test fails).
struct SmallDisk {
    dir: PathBuf,
}

impl SmallDisk {
    fn mount(dir: &Path, size: &str) -> Option<SmallDisk> {
        std::fs::create_dir_all(dir).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| SmallDisk {
            dir: dir.to_path_buf(),
        })
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

#[test]
fn a_full_disk_ends_the_run_cleanly_with_a_readable_trace() {
    require_docker!();
    ensure_images();
    let project = unique_project("diskfull");
    let _guard = ProjectGuard::new(&project);
    let (dir, scenario) = write_scenario(
        &project,
        &crate::recorder_common::peer_compose(2000, 100),
        "time_limit = \"150s\"\nduration = \"60s\"",
        r#"[sensors]
stats = false

[[schedule]]
at = "1s"
fault = "partition"
target = { between = [["a"], ["b"]] }
duration = "100s"
"#,
    );
    let Some(disk) = SmallDisk::mount(&dir.path().join("disk"), "2m") else {
        eprintln!("note: cannot mount a tmpfs; test skipped");
        return;
    };
    let trace = disk.dir.join("trace");
    let tag = format!("ctk:{project}");
    let host_rules = || -> Vec<String> {
        sh("iptables", &["-w", "-S"])
            .lines()
            .filter(|l| l.contains(&tag))
            .map(str::to_string)
            .collect()
    };
    let started = Instant::now();
    let out = Command::new(bin("recorder"))
        .args(["run", "--quiet", "-o"])
        .arg(&trace)
        .arg(&scenario)
        .output()
        .expect("run recorder");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    // the run stopped long before its 60 s, with the trace error code and a clear message
    assert_eq!(
        out.status.code(),
        Some(4),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(55), "{stderr}");
    let all = format!("{stdout}{stderr}");
    assert!(all.contains("trace writer failed"), "{all}");
    assert!(all.contains("No space left on device"), "{all}");
    // torn down: no container, network or rule left
    assert!(project_containers(&project).is_empty(), "{all}");
    assert!(project_networks(&project).is_empty(), "{all}");
    assert!(host_rules().is_empty(), "{:?}", host_rules());
    // the trace is readable up to the failure: the partition is in it, and every line of a
    // up to the last one recorded
    let t = trace::Trace::open(&trace).unwrap_or_else(|e| panic!("{e}"));
    assert!(!t.is_finalized());
    let ev = read_events(&trace);
    assert!(ev
        .iter()
        .any(|e| e.source == "fault" && e.kind == "partition"));
    let n = assert_contiguous(&ev, "a");
    assert!(n >= 1000, "{n} lines of a");
    drop(disk);
}
