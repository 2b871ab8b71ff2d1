//! A recorder killed with SIGKILL while capturing packets: its tcpdump keeps writing until
//! `recorder cleanup` stops it, and `analyzer finalize` then builds `packets.parquet` from the
//! pcap files it left (real Docker, real tcpdump).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use integration_tests::{
    bin, ensure_images, project_containers, require_docker, unique_project, ProjectGuard,
};

use crate::recorder_common::{peer_compose, write_scenario};

/// Pids of the tcpdump processes writing a file under `dir`.
fn tcpdumps_writing_into(dir: &Path) -> Vec<i32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            // a zombie has no command line
            let argv: Vec<String> = cmd
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            argv.first().is_some_and(|a| a.ends_with("tcpdump"))
                && argv
                    .windows(2)
                    .any(|w| w[0] == "-w" && Path::new(&w[1]).starts_with(dir))
        })
        .collect()
}

fn pcap_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "pcap"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn cleanup_stops_a_killed_recorders_tcpdump_and_finalize_builds_its_packets() {
    require_docker!();
    if !Path::new("/usr/bin/tcpdump").exists() && !Path::new("/usr/sbin/tcpdump").exists() {
        eprintln!("note: tcpdump missing; test skipped");
        return;
    }
    ensure_images();
    let project = unique_project("killedpcap");
    let _guard = ProjectGuard::new(&project);
    let (dir, scenario) = write_scenario(
        &project,
        &peer_compose(10, 50),
        "time_limit = \"120s\"\nduration = \"90s\"",
        "[sensors]\nstats = false\n\n[sensors.pcap]\nservices = [\"a\"]\n",
    );
    let trace = dir.path().join("trace");
    let pcap = trace.join("pcap");
    let mut child = Command::new(bin("recorder"))
        .args(["run", "--quiet"])
        .arg(&scenario)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start recorder");
    // wait until the capture has packets in its file
    let deadline = Instant::now() + Duration::from_secs(60);
    let captured = loop {
        let big = pcap_files(&pcap)
            .iter()
            .any(|f| std::fs::metadata(f).is_ok_and(|m| m.len() > 2000));
        if big || Instant::now() > deadline {
            break big;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    child.kill().expect("SIGKILL the recorder");
    child.wait().expect("reap the recorder");
    assert!(captured, "no packets captured into {}", pcap.display());
    // the recorder is gone; its tcpdump is still writing
    let left = tcpdumps_writing_into(&trace);
    assert!(
        !left.is_empty(),
        "no tcpdump left writing into {}",
        trace.display()
    );
    let out = Command::new(bin("recorder"))
        .args(["cleanup", "--project", &project])
        .output()
        .expect("recorder cleanup");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for pid in &left {
        assert!(
            stdout.contains(&format!("stopped tcpdump (pid {pid}) left writing ")),
            "{stdout}"
        );
    }
    assert!(tcpdumps_writing_into(&trace).is_empty(), "{stdout}");
    assert!(project_containers(&project).is_empty(), "{stdout}");
    // the trace is unfinalized and has no packets until finalize summarises the pcap files
    let analyzer = bin("analyzer");
    let count = || {
        let o = Command::new(&analyzer)
            .arg("events")
            .arg(&trace)
            .args(["--source", "packet", "--count"])
            .output()
            .expect("analyzer events");
        String::from_utf8_lossy(&o.stdout)
            .trim()
            .parse::<u64>()
            .unwrap_or_else(|e| panic!("count: {e}: {o:?}"))
    };
    assert_eq!(count(), 0);
    let o = Command::new(&analyzer)
        .arg("finalize")
        .arg(&trace)
        .output()
        .expect("analyzer finalize");
    let fin = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{fin}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(fin.contains("packets summarised from 1 pcap file"), "{fin}");
    assert!(count() > 10, "{fin}");
}

// ---------------------------------------------------------------------------------------------
// SIGKILL at several instants of a run with a partition and a pause

/// When the recorder is killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KillAt {
    /// While `compose up` creates the containers.
    BeforeUp,
    /// Recording, no fault yet.
    MidRun,
    /// The partition and the pause active.
    DuringFault,
    /// In teardown: `compose down` stopping the containers.
    InTeardown,
}

fn out_of(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn service_container(project: &str, service: &str) -> Option<String> {
    out_of(
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
    .map(str::to_string)
}

fn inspect(id: &str, fmt: &str) -> String {
    out_of("docker", &["inspect", "-f", fmt, id])
        .trim()
        .to_string()
}

/// The impairments in the container's network namespace: `iptables -S` lines beyond the
/// default policies and `tc qdisc` lines beyond the default `noqueue` (empty when it does not
/// run).
fn netns_impairments(id: &str) -> Vec<String> {
    let pid = inspect(id, "{{.State.Pid}}");
    if pid.is_empty() || pid == "0" {
        return Vec::new();
    }
    let mut v: Vec<String> = out_of("nsenter", &["-t", &pid, "-n", "iptables", "-w", "-S"])
        .lines()
        .filter(|l| !l.starts_with("-P "))
        .map(str::to_string)
        .collect();
    v.extend(
        out_of("nsenter", &["-t", &pid, "-n", "tc", "qdisc", "show"])
            .lines()
            .filter(|l| !l.starts_with("qdisc noqueue "))
            .map(str::to_string),
    );
    v
}

/// What the project leaves on the host: its containers (with their state), networks, the host
/// iptables rules naming it, and its registration as in use by a recorder.
fn host_state(project: &str) -> Vec<String> {
    let label = format!("label=com.docker.compose.project={project}");
    let mut v: Vec<String> = out_of(
        "docker",
        &[
            "ps",
            "-a",
            "--filter",
            &label,
            "--format",
            "{{.Names}} {{.State}}",
        ],
    )
    .lines()
    .map(|l| format!("container {l}"))
    .collect();
    v.extend(
        out_of(
            "docker",
            &["network", "ls", "--filter", &label, "--format", "{{.Name}}"],
        )
        .lines()
        .map(|l| format!("network {l}")),
    );
    let tag = format!("ctk:{project}");
    v.extend(
        out_of("iptables", &["-w", "-S"])
            .lines()
            .filter(|l| l.contains(&tag))
            .map(|l| format!("host rule {l}")),
    );
    if std::env::temp_dir()
        .join("chaos-recorder-projects")
        .join(project)
        .exists()
    {
        v.push("registered".into());
    }
    v
}

/// `(daemon timestamp, line)` of every line of a container's log, from `docker logs`.
fn docker_log_lines(id: &str) -> Vec<(i64, String)> {
    let o = Command::new("docker")
        .args(["logs", "--timestamps", id])
        .output()
        .expect("docker logs");
    let mut text = String::from_utf8_lossy(&o.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&o.stderr));
    text.lines()
        .filter_map(|l| {
            let (ts, rest) = l.split_once(' ')?;
            let ns = rfc3339_ns(ts)?;
            Some((ns, rest.to_string()))
        })
        .collect()
}

/// Parses `2026-12-01T13:15:16.123456789Z` to UTC nanoseconds (days from the civil date).
fn rfc3339_ns(ts: &str) -> Option<i64> {
    let ts = ts.strip_suffix('Z')?;
    let (date, time) = ts.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|x| x.parse::<i64>());
    let (hh, mm, ss) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    let nanos: i64 = format!("{frac:0<9}")[..9].parse().ok()?;
    // days from civil (Howard Hinnant's algorithm)
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1_000_000_000) + nanos)
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

fn kill_at(at: KillAt) {
    let project = unique_project(&format!("kill{at:?}"));
    let _guard = ProjectGuard::new(&project);
    let before = host_state(&project);
    let (dir, scenario) = write_scenario(
        &project,
        &peer_compose(20, 100),
        "time_limit = \"120s\"\nduration = \"12s\"",
        r#"[sensors]
stats = false

[[schedule]]
at = "3s"
fault = "partition"
target = { between = [["a"], ["b"]] }
duration = "4s"

[[schedule]]
at = "3s"
fault = "pause"
target = "b"
duration = "4s"
"#,
    );
    let trace = dir.path().join("trace");
    let mut child = Command::new(bin("recorder"))
        .args(["run", "--quiet"])
        .arg(&scenario)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start recorder");
    let deadline = Instant::now() + Duration::from_secs(90);
    // a's log as last seen while waiting (compose down may remove a before it is read below)
    let seen_log = std::cell::RefCell::new(Vec::<(i64, String)>::new());
    let wait = |what: &str, cond: &dyn Fn() -> bool| {
        while !cond() {
            assert!(Instant::now() < deadline, "{at:?}: waiting for {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let running = |s: &str| {
        service_container(&project, s)
            .is_some_and(|id| inspect(&id, "{{.State.Running}}") == "true")
    };
    let paused = || {
        service_container(&project, "b")
            .is_some_and(|id| inspect(&id, "{{.State.Paused}}") == "true")
    };
    let partitioned =
        || service_container(&project, "a").is_some_and(|id| !netns_impairments(&id).is_empty());
    match at {
        KillAt::BeforeUp => wait("a container", &|| {
            service_container(&project, "a").is_some() || service_container(&project, "b").is_some()
        }),
        KillAt::MidRun => {
            wait("running containers", &|| running("a") && running("b"));
            std::thread::sleep(Duration::from_millis(1500));
        }
        KillAt::DuringFault => {
            wait("the faults", &|| paused() && partitioned());
            std::thread::sleep(Duration::from_millis(400));
        }
        KillAt::InTeardown => {
            wait("the faults", &|| paused() && partitioned());
            // teardown stops the containers (`compose down`) after reverting the faults, and
            // removes them soon after: keep the last log a's container showed while it existed
            wait("teardown", &|| match service_container(&project, "a") {
                Some(id) => {
                    let lines = docker_log_lines(&id);
                    if lines.len() >= seen_log.borrow().len() {
                        *seen_log.borrow_mut() = lines;
                    }
                    inspect(&id, "{{.State.Running}}") != "true"
                }
                None => true,
            });
        }
    }
    let kill_ns = now_ns();
    child.kill().expect("SIGKILL the recorder");

    child.wait().expect("reap the recorder");
    // what the killed recorder left
    let left = host_state(&project);
    if at == KillAt::DuringFault {
        assert!(paused(), "b is left paused");
        assert!(partitioned(), "the partition is left in a's namespace");
    }
    // the ground truth of a's log before cleanup removes it
    let mut truth = service_container(&project, "a")
        .map(|id| docker_log_lines(&id))
        .unwrap_or_default();
    if truth.len() < seen_log.borrow().len() {
        truth = seen_log.take();
    }

    // the trace is readable up to (at most) the last flush interval before the kill
    let t = trace::Trace::open(&trace).unwrap_or_else(|e| panic!("{at:?}: {e}"));
    assert!(!t.is_finalized());
    let ev = crate::recorder_common::read_events(&trace);
    assert!(
        ev.iter().any(|e| e.source == "recorder" && e.kind == "run"),
        "{at:?}: no run event"
    );
    let recorded: std::collections::HashSet<&str> = ev
        .iter()
        .filter(|e| e.source == "log" && e.service.as_deref() == Some("a"))
        .filter_map(|e| e.message.as_deref())
        .collect();
    // 250 ms flush interval + the daemon's delivery to the follower on a loaded machine; the
    // followers stop reading at teardown (before `compose down`)
    let margin = 1_000_000_000;
    let teardown_ns = ev
        .iter()
        .find(|e| e.source == "recorder" && e.kind == "teardown")
        .map_or(kill_ns, |e| e.ts_ns);
    let cutoff = kill_ns.min(teardown_ns) - margin;
    let lost: Vec<&(i64, String)> = truth
        .iter()
        .filter(|(ts, line)| *ts < cutoff && !recorded.contains(line.as_str()))
        .collect();
    if at != KillAt::BeforeUp {
        assert!(!truth.is_empty(), "{at:?}: a printed nothing");
        assert!(
            lost.is_empty(),
            "{at:?}: {} of {} lines older than the flush interval lost, first {:?}",
            lost.len(),
            truth.len(),
            lost.first()
        );
    }
    if matches!(at, KillAt::DuringFault | KillAt::InTeardown) {
        let faults: Vec<&str> = ev
            .iter()
            .filter(|e| e.source == "fault")
            .map(|e| e.kind.as_str())
            .collect();
        assert!(faults.contains(&"partition"), "{at:?}: {faults:?}");
        assert!(faults.contains(&"pause"), "{at:?}: {faults:?}");
    }

    // cleanup returns the host to the state before the run
    let out = Command::new(bin("recorder"))
        .args(["cleanup", "--project", &project])
        .output()
        .expect("recorder cleanup");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{at:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // it says what the killed recorder's faults left (before removing the containers that held
    // it): the pause of b, the partition's rules in a's namespace
    if at == KillAt::DuringFault {
        assert!(
            stdout
                .lines()
                .any(|l| l.contains(": unpaused ") && (l.contains("_b_") || l.contains("-b-"))),
            "{at:?}: {stdout}"
        );
        assert!(
            stdout.lines().any(|l| l.contains(": removed ")
                && l.contains(" fault rules, ")
                && !l.contains(": removed 0 fault rules, 0 chains, 0 qdiscs")),
            "{at:?}: {stdout}"
        );
    }
    // a compose command of the recorder's that was still running (killed during `up` or
    // `down`) is gone: it would create or remove containers after this point
    let compose = out_of("pgrep", &["-af", &format!("compose .*-p {project} ")]);
    assert!(compose.trim().is_empty(), "{at:?}: {compose} ({stdout})");
    std::thread::sleep(Duration::from_secs(2));
    let after = host_state(&project);
    assert_eq!(
        after, before,
        "{at:?}: left {left:?}, cleanup said {stdout}"
    );
    // and the trace finalizes to the same events
    let o = Command::new(bin("analyzer"))
        .arg("finalize")
        .arg(&trace)
        .output()
        .expect("analyzer finalize");
    assert!(o.status.success(), "{at:?}: {o:?}");
    assert_eq!(crate::recorder_common::read_events(&trace).len(), ev.len());
}

#[test]
fn sigkill_at_each_instant_leaves_a_readable_trace_and_cleanup_restores_the_host() {
    require_docker!();
    ensure_images();
    for at in [
        KillAt::BeforeUp,
        KillAt::MidRun,
        KillAt::DuringFault,
        KillAt::InTeardown,
    ] {
        kill_at(at);
    }
}
