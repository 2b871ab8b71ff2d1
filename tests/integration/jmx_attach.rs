//! JMX from JVMs that ship no agent, on real Docker and real JVMs (Debian's OpenJDK 17 and
//! ZooKeeper 3.8 in `chaos-zookeeper:latest`, built by scripts/build-zookeeper-image.sh): the
//! recorder attaches its agent (jmx-agent/, loaded through `jattach`) and reads
//! `java.lang:type=Runtime` and a pattern as one event per MBean; a JVM started with
//! `-XX:+DisableAttachMechanism` gives the documented `jmx`/`attach` failure event and the run
//! goes on; the agent refuses writes and operations; `recorder jmx` lists MBeans, stops the agent
//! it attached, reuses one that answers, and a stopped agent leaves the JVM running and can be
//! attached again. Needs `jattach`, `javac`/`jar` and Debian's jolokia/json-simple jars on the
//! host (scripts/setup.sh); without them the tests skip with a note, unless `REQUIRE_DOCKER=1`.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use integration_tests::{
    bin, ensure_images, require_docker, unique_project, workspace_root, ProjectGuard, DEMO_IMAGE,
};
use serde_json::Value;
use trace::Event;

use crate::recorder_common::{read_events, run_recorder, write_scenario};

pub const ZK_IMAGE: &str = "chaos-zookeeper:latest";

fn data(e: &Event) -> Value {
    serde_json::from_str(e.data.as_deref().unwrap_or("null")).unwrap_or(Value::Null)
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Builds the agent jar and the ZooKeeper image once per test process. `false` (with a note)
/// when the host lacks jattach or the JDK and `REQUIRE_DOCKER` is not 1.
pub fn jmx_prereqs() -> bool {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let r = READY.get_or_init(|| {
        let missing: Vec<&str> = ["jattach", "javac", "jar"]
            .into_iter()
            .filter(|t| !have(t))
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "{} missing on the host (scripts/setup.sh installs them)",
                missing.join(", ")
            ));
        }
        let root = workspace_root();
        for script in ["jmx-agent/build.sh", "scripts/build-zookeeper-image.sh"] {
            let out = Command::new("bash")
                .arg(root.join(script))
                .current_dir(&root)
                .output()
                .map_err(|e| format!("{script}: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "{script} failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
        Ok(())
    });
    match r {
        Ok(()) => true,
        Err(e) if std::env::var("REQUIRE_DOCKER").as_deref() == Ok("1") => {
            panic!("REQUIRE_DOCKER=1 but the JMX attach prerequisites are not there: {e}")
        }
        Err(e) => {
            eprintln!("note: skipping a JMX attach test: {e}");
            false
        }
    }
}

/// Two stock JVMs (a standalone ZooKeeper each): `jvm` accepts attach, `locked` runs with
/// `-XX:+DisableAttachMechanism`; and `served`, a demo node whose image serves Jolokia itself.
fn jvm_compose() -> String {
    format!(
        r#"version: "2.4"
services:
  served:
    image: {DEMO_IMAGE}
    command: ["cluster"]
    environment: {{ AKKA_HOST: served, AKKA_PORT: "2552", SEED_NODES: "akka.tcp://S@served:2552", JOLOKIA_PORT: "8778" }}
    stop_grace_period: 2s
  jvm:
    image: {ZK_IMAGE}
    environment: {{ ZK_ID: "1", ZK_SERVERS: "localhost", ZK_HEAP: "64m" }}
    stop_grace_period: 2s
  locked:
    image: {ZK_IMAGE}
    environment: {{ ZK_ID: "1", ZK_SERVERS: "localhost", ZK_HEAP: "64m", ZK_JAVA_OPTS: "-XX:+DisableAttachMechanism" }}
    stop_grace_period: 2s
"#
    )
}

/// `recorder run` with `attach = true` on both: `jvm` is attached (event with the JVM's version;
/// before it only `no_jvm` failures, while its entrypoint has not exec'd java yet),
/// polled (`java.lang:type=Runtime`, and `java.lang:type=MemoryPool,*` as one event per pool) and
/// its agent stopped at the end; `locked` gives one `attach_disabled` failure event (final for
/// that JVM: no retry) while the run goes on and completes; `served`, whose port already answers, is reused, not
/// attached, and its agent (not ours) is not stopped.
#[test]
fn attach_reads_a_stock_jvm_and_a_refused_attach_is_an_event() {
    require_docker!();
    if !jmx_prereqs() {
        return;
    }
    ensure_images();
    let project = unique_project("jmxattach");
    let _guard = ProjectGuard::new(&project);
    let (dir, scenario) = write_scenario(
        &project,
        &jvm_compose(),
        "time_limit = \"80s\"\nduration = \"25s\"",
        r#"
[sensors]
stats = false

[sensors.jmx]
services = ["jvm", "locked", "served"]
interval = "500ms"
attach = true
[[sensors.jmx.mbeans]]
mbean = "java.lang:type=Runtime"
attributes = ["VmName", "SpecVersion"]
[[sensors.jmx.mbeans]]
mbean = "java.lang:type=MemoryPool,*"
attributes = ["Usage"]
"#,
    );
    let (code, out, err) = run_recorder(&scenario);
    assert_eq!(code, 0, "recorder run failed:\n{out}\n{err}");
    let events = read_events(&dir.path().join("trace"));
    let of = |svc: &str| -> Vec<&Event> {
        events
            .iter()
            .filter(|e| e.source == "jmx" && e.service.as_deref() == Some(svc))
            .collect()
    };

    // --- jvm: attached, read, stopped
    let jvm = of("jvm");
    let attaches: Vec<Value> = jvm
        .iter()
        .filter(|e| e.kind == "attach")
        .map(|e| data(e))
        .collect();
    // an attempt before the entrypoint (`setpriv … java`) has exec'd the JVM is a `no_jvm`
    // failure, retried 2 s later (docs/sensors.md); nothing else may fail, and nothing after
    // the attach
    let first_ok = attaches
        .iter()
        .position(|d| d["phase"] != "failed")
        .unwrap_or(attaches.len());
    for d in &attaches[..first_ok] {
        assert_eq!(d["error_type"], "no_jvm", "{attaches:#?}");
    }
    let attaches = &attaches[first_ok..];
    assert_eq!(attaches.len(), 2, "attached then stopped: {attaches:#?}");
    let a = &attaches[0];
    assert_eq!(a["phase"], "attached", "{a:#}");
    assert_eq!(a["port"], 8778);
    assert_eq!(a["agent_id"], "chaos-trace-jmx-agent", "{a:#}");
    assert_eq!(a["jvm"]["SpecVersion"], "17", "{a:#}");
    assert!(a["pid"].as_i64().is_some_and(|p| p > 1), "{a:#}");
    assert!(
        a["command"]
            .as_str()
            .is_some_and(|c| c.contains("QuorumPeerMain")),
        "{a:#}"
    );
    assert_eq!(attaches[1]["phase"], "stopped", "{attaches:#?}");
    assert_eq!(attaches[1]["pid"], a["pid"]);
    let runtime: Vec<Value> = jvm
        .iter()
        .filter(|e| e.kind == "java.lang:type=Runtime")
        .map(|e| data(e))
        .collect();
    assert!(runtime.len() >= 5, "{} Runtime polls", runtime.len());
    assert!(
        runtime.iter().all(|d| d["SpecVersion"] == "17"
            && d["VmName"].as_str().is_some_and(|n| n.contains("OpenJDK"))),
        "{runtime:#?}"
    );
    // the pattern: one event per memory pool, kind = the pool's own name, Usage as data
    let mut pools: Vec<&str> = jvm
        .iter()
        .filter(|e| e.kind.starts_with("java.lang:") && e.kind.contains("type=MemoryPool"))
        .map(|e| e.kind.as_str())
        .collect();
    pools.sort();
    pools.dedup();
    assert!(pools.len() >= 3, "{pools:?}");
    assert!(
        pools.iter().all(|p| p.contains("name=")),
        "every pattern event names its MBean: {pools:?}"
    );
    let first_pool = jvm
        .iter()
        .find(|e| e.kind == pools[0])
        .expect("a pool event");
    assert!(
        data(first_pool)["Usage"]["used"].is_number(),
        "{first_pool:?}"
    );
    assert!(
        !jvm.iter().any(|e| e.kind == "error"),
        "no read of the attached JVM failed: {:#?}",
        jvm.iter()
            .filter(|e| e.kind == "error")
            .take(3)
            .collect::<Vec<_>>()
    );

    // --- locked: the documented failure, and the run went on
    let locked = of("locked");
    let fails: Vec<Value> = locked
        .iter()
        .filter(|e| e.kind == "attach")
        .map(|e| data(e))
        .collect();
    // refused attach is final for that JVM: one attempt, not one every 10 s (the run is long
    // enough for two retries)
    assert_eq!(fails.len(), 1, "{fails:#?}");
    for f in &fails {
        assert_eq!(f["phase"], "failed", "{f:#}");
        assert_eq!(f["error_type"], "attach_disabled", "{f:#}");
        assert!(
            f["error"]
                .as_str()
                .is_some_and(|m| m.contains("-XX:+DisableAttachMechanism")),
            "{f:#}"
        );
    }
    let failed_at = locked
        .iter()
        .find(|e| e.kind == "attach")
        .map(|e| e.ts_ns)
        .unwrap_or(i64::MAX);
    assert!(
        runtime.len() >= 5
            && jvm
                .iter()
                .any(|e| e.kind == "java.lang:type=Runtime" && e.ts_ns > failed_at + 2_000_000_000),
        "jvm was still polled seconds after the locked JVM refused the attach"
    );
    // --- served: an agent answered already: reused once, never stopped
    let served: Vec<Value> = of("served")
        .iter()
        .filter(|e| e.kind == "attach")
        .map(|e| data(e))
        .collect();
    assert_eq!(served.len(), 1, "{served:#?}");
    assert_eq!(served[0]["phase"], "reused", "{served:#?}");
    assert_ne!(
        served[0]["agent_id"], "chaos-trace-jmx-agent",
        "{served:#?}"
    );
    assert!(served[0]["pid"].is_null(), "{served:#?}");

    // the locked JVM's reads are errors (nothing listens), not a stopped sensor
    assert!(
        locked.iter().filter(|e| e.kind == "error").count() >= 5,
        "{}",
        locked.len()
    );
}

/// `docker run` of a stock JVM labelled as compose service `jvm` of `project`; its address.
fn start_labelled_jvm(project: &str) -> (String, String) {
    let name = format!("{project}-jvm-1");
    let out = Command::new("docker")
        .args(["run", "-d", "--name", &name])
        .args(["--label", &format!("com.docker.compose.project={project}")])
        .args(["--label", "com.docker.compose.service=jvm"])
        .args([
            "-e",
            "ZK_ID=1",
            "-e",
            "ZK_SERVERS=localhost",
            "-e",
            "ZK_HEAP=64m",
        ])
        .arg(ZK_IMAGE)
        .output()
        .expect("docker run");
    assert!(
        out.status.success(),
        "docker run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ip = Command::new("docker")
        .args([
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            &name,
        ])
        .output()
        .expect("docker inspect");
    (name, String::from_utf8_lossy(&ip.stdout).trim().to_string())
}

/// `recorder jmx jvm PATTERN -p PROJECT [extra]`: exit code, stdout, stderr.
fn recorder_jmx(project: &str, pattern: &str, extra: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin("recorder"))
        .args(["jmx", "jvm", pattern, "-p", project])
        .args(extra)
        .output()
        .expect("run recorder jmx");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The JVM's host pid (`docker top`), `None` when no java process runs.
fn java_pid(container: &str) -> Option<i64> {
    let out = Command::new("docker")
        .args(["top", container, "-o", "pid,args"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
        let mut it = l.split_whitespace();
        let pid = it.next()?.parse().ok()?;
        (it.next()? == "java").then_some(pid)
    })
}

/// Whether something listens on `port` inside the container (bash's /dev/tcp).
fn listens(container: &str, port: u16) -> bool {
    Command::new("docker")
        .args(["exec", container, "bash", "-c"])
        .arg(format!("exec 3<>/dev/tcp/127.0.0.1/{port}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// `recorder jmx` on a running JVM: lists MBeans with attribute types and values, stops the
/// agent it attached (the JVM keeps running), reports `agent_start_failed` for a port another
/// program holds, reuses an agent that answers (a second attach would find the port taken), and
/// the agent refuses a write and an exec.
#[test]
fn recorder_jmx_lists_mbeans_reuses_and_stops_the_agent() {
    require_docker!();
    if !jmx_prereqs() {
        return;
    }
    let project = unique_project("jmxlist");
    let _guard = ProjectGuard::new(&project);
    let (name, ip) = start_labelled_jvm(&project);
    // ZooKeeper's client port: the JVM is up
    let mut up = false;
    for _ in 0..60 {
        if listens(&name, 2181) {
            up = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(up, "the JVM in {name} never listened on 2181");
    let pid = java_pid(&name).expect("a java process");

    // --- list: attached, a listing with types and values, agent stopped again
    let (code, out, err) = recorder_jmx(&project, "java.lang:type=Runtime", &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("agent attached"), "{out}");
    assert!(out.lines().any(|l| l == "java.lang:type=Runtime"), "{out}");
    let spec = out
        .lines()
        .find(|l| l.trim_start().starts_with("SpecVersion "))
        .unwrap_or_else(|| panic!("no SpecVersion line:\n{out}"));
    assert!(spec.contains("String") && spec.contains("\"17\""), "{spec}");
    assert!(
        !listens(&name, 8778),
        "the agent still listens after `recorder jmx`"
    );
    assert_eq!(java_pid(&name), Some(pid), "the JVM must keep running");
    // a pattern over ZooKeeper's own MBeans
    let (code, out, err) = recorder_jmx(&project, "org.apache.ZooKeeperService:*", &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("org.apache.ZooKeeperService:name0=StandaloneServer_port2181")),
        "{out}"
    );
    assert!(out.contains("  ClientPort "), "{out}");

    // --- a port taken by something that is not Jolokia (ZooKeeper's client port): the agent
    // cannot start, the documented error, and the JVM runs on
    let (code, _, err) = recorder_jmx(&project, "java.lang:type=Runtime", &["--port", "2181"]);
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("agent_start_failed"), "{err}");
    assert!(err.contains("return code 102"), "{err}");
    assert_eq!(java_pid(&name), Some(pid));
    assert!(listens(&name, 2181), "ZooKeeper stopped serving");

    // --- without attach, nothing answers: an error naming the connection
    let (code, _, err) = recorder_jmx(&project, "java.lang:type=Runtime", &["--no-attach"]);
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("refused") || err.contains("connect"), "{err}");

    // --- keep the agent, then a second command reuses it
    let (code, out, err) = recorder_jmx(&project, "java.lang:type=Memory", &["--keep-agent"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("agent attached"), "{out}");
    assert!(listens(&name, 8778));
    let (code, out, err) = recorder_jmx(&project, "java.lang:type=Memory", &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("agent reused"), "{out}");
    assert!(out.contains("HeapMemoryUsage"), "{out}");

    // --- the restrictor: read yes, write and exec no
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let client =
        sensor_protocols::jolokia::JolokiaClient::for_host(&ip, 8778, Duration::from_secs(5));
    rt.block_on(async {
        let v = client
            .request(&serde_json::json!({"type": "read", "mbean": "java.lang:type=Memory", "attribute": "Verbose"}))
            .await
            .expect("read allowed");
        assert_eq!(v, Value::Bool(false));
        for req in [
            serde_json::json!({"type": "write", "mbean": "java.lang:type=Memory", "attribute": "Verbose", "value": true}),
            serde_json::json!({"type": "exec", "mbean": "java.lang:type=Memory", "operation": "gc"}),
            serde_json::json!({"type": "exec", "mbean": "java.lang:type=Runtime", "operation": "getSystemProperties"}),
        ] {
            match client.request(&req).await {
                Err(sensor_protocols::jolokia::JolokiaError::Agent { status, error, .. }) => {
                    assert_eq!(status, 403, "{req}: {error}");
                    assert!(error.contains("forbidden"), "{req}: {error}");
                }
                other => panic!("{req} was not refused: {other:?}"),
            }
        }
        // the write really did not happen
        let v = client
            .request(&serde_json::json!({"type": "read", "mbean": "java.lang:type=Memory", "attribute": "Verbose"}))
            .await
            .expect("read allowed");
        assert_eq!(v, Value::Bool(false));

        // --- stop: the port is free, the JVM runs on, and a new attach works
        recorder::sensors::attach::stop_agent(pid)
            .await
            .expect("stop the agent");
    });
    assert!(!listens(&name, 8778), "stopped agent still listens");
    assert_eq!(java_pid(&name), Some(pid));
    assert!(listens(&name, 2181), "ZooKeeper stopped serving");
    let (code, out, err) = recorder_jmx(&project, "java.lang:type=Runtime", &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("agent attached"), "{out}");
}

/// The committed sample trace of the ZooKeeper example: what `examples/README.md` shows.
pub fn sample_trace() -> std::path::PathBuf {
    workspace_root().join("traces/sample-zookeeper")
}

/// The sample trace judges `LeaderFailover` as accepted without Docker.
#[test]
fn zookeeper_sample_trace_accepts() {
    let trace = sample_trace();
    if !Path::new(&trace).join("manifest.json").exists() {
        panic!("missing sample trace {}", trace.display());
    }
    let out = Command::new(bin("analyzer"))
        .arg("check")
        .arg(&trace)
        .arg("--spec")
        .arg(workspace_root().join("specs/zookeeper.spec"))
        .args(["--experiment", "LeaderFailover"])
        .output()
        .expect("run analyzer");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("accept"), "{text}");
}
