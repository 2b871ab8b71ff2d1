//! Live conformance test against the real Jolokia request handler: compiles
//! `tests/jolokia-agent/JolokiaAgent.java` against Debian's jolokia-core jar, starts it on loopback
//! with a real `akka:type=Cluster` MBean, and points the Rust client at it (bulk POST poll with a
//! bogus MBean, version, GET reads with `!` escaping, pattern read, whole-request rejection).
//! Expected statuses and error types are taken from the agent's own raw replies, not hard-coded
//! alone. Skips with a note when `java`, `javac` or the jar are missing, unless
//! `REQUIRE_JOLOKIA=1` (then it fails). The Java process is killed by a drop guard; every wait is
//! bounded.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sensor_protocols::http::{self, Request};
use sensor_protocols::jolokia::{JolokiaClient, MBeanRead, ReadOutcome};
use serde_json::{json, Value};

const JAR: &str = "/usr/share/java/jolokia-core.jar";
const JSON_SIMPLE_JAR: &str = "/usr/share/java/json-simple.jar";

/// Kills and reaps the agent however the test ends.
struct AgentGuard(Child);

impl Drop for AgentGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tool_runs(name: &str) -> bool {
    Command::new(name)
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `None` (with the reason) when the environment cannot run the agent.
fn missing_prerequisite() -> Option<String> {
    for tool in ["java", "javac"] {
        if !tool_runs(tool) {
            return Some(format!("`{tool}` does not run"));
        }
    }
    if !Path::new(JAR).is_file() {
        return Some(format!(
            "{JAR} missing (apt-get install -y libjolokia-core-java)"
        ));
    }
    None
}

fn classpath(extra: &Path) -> String {
    let mut cp = vec![extra.display().to_string(), JAR.to_string()];
    if Path::new(JSON_SIMPLE_JAR).is_file() {
        cp.push(JSON_SIMPLE_JAR.to_string());
    }
    cp.join(":")
}

/// Waits for `child` at most `limit`; kills it and panics on overrun.
fn wait_bounded(mut child: Child, limit: Duration, what: &str) -> std::process::Output {
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return child.wait_with_output().expect("collecting output"),
            Ok(None) if start.elapsed() < limit => std::thread::sleep(Duration::from_millis(100)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{what} did not finish within {limit:?}");
            }
        }
    }
}

/// Compiles and starts the agent; returns the guard, the base URL and the Jolokia version the
/// jar reports.
fn start_agent(dir: &Path) -> (AgentGuard, String, String) {
    let src =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/jolokia-agent/JolokiaAgent.java");
    let classes = dir.join("classes");
    std::fs::create_dir_all(&classes).expect("classes dir");
    let javac = Command::new("javac")
        .arg("-d")
        .arg(&classes)
        .arg("-cp")
        .arg(classpath(&classes))
        .arg(&src)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning javac");
    let out = wait_bounded(javac, Duration::from_secs(240), "javac");
    assert!(
        out.status.success(),
        "javac failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let stderr = std::fs::File::create(dir.join("agent.stderr")).expect("stderr file");
    let mut child = Command::new("java")
        .arg("-Xmx64m")
        .arg("-cp")
        .arg(classpath(&classes))
        .arg("JolokiaAgent")
        .arg("0")
        .stdin(Stdio::piped()) // the agent exits when this closes, should the guard never run
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("spawning java");
    let stdout = child.stdout.take().expect("stdout piped");
    let guard = AgentGuard(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let banner = rx
        .recv_timeout(Duration::from_secs(120))
        .unwrap_or_else(|_| {
            panic!(
                "agent did not report LISTENING within 120 s; stderr: {}",
                std::fs::read_to_string(dir.join("agent.stderr")).unwrap_or_default()
            )
        });
    // "LISTENING <url> jolokia=<version> protocol=<version>"
    let mut parts = banner.split_whitespace();
    assert_eq!(parts.next(), Some("LISTENING"), "banner {banner:?}");
    let url = parts.next().expect("url in banner").to_string();
    let version = parts
        .find_map(|p| p.strip_prefix("jolokia="))
        .expect("version in banner")
        .to_string();
    (guard, url, version)
}

/// The raw JSON reply to a POST, as the agent sent it.
async fn raw_post(url: &str, body: &Value) -> Value {
    let body = body.to_string();
    let u = format!("{url}/");
    let req = Request {
        method: "POST",
        url: &u,
        headers: &[("Content-Type", "application/json")],
        body: Some(body.as_bytes()),
        timeout: Duration::from_secs(20),
        max_body: 1 << 20,
    };
    let resp = http::send(&req).await.expect("raw POST");
    assert_eq!(
        resp.status, 200,
        "Jolokia answers HTTP 200 and puts the status in the body"
    );
    serde_json::from_slice(&resp.body).expect("raw reply is json")
}

fn data(o: &ReadOutcome) -> Value {
    let ev = o.to_event(1, "left-a", Some("ctk_left-a_1"));
    serde_json::from_str(ev.data.as_deref().expect("data")).expect("data is json")
}

#[test]
fn real_jolokia_agent_conformance() {
    if let Some(why) = missing_prerequisite() {
        if std::env::var("REQUIRE_JOLOKIA").as_deref() == Ok("1") {
            panic!("REQUIRE_JOLOKIA=1 but {why}");
        }
        eprintln!("skipping the live Jolokia test: {why}");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (_guard, url, jar_version) = start_agent(dir.path());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let client = JolokiaClient {
            url: url.clone(),
            timeout: Duration::from_secs(20),
        };

        let v = client.version().await.expect("version");
        assert_eq!(v.agent, jar_version);
        assert_eq!(v.protocol, "7.2");

        // The sensor's poll: one bulk POST with the cluster MBean and one that does not exist.
        let cluster_attrs = [
            "ClusterStatus",
            "Leader",
            "Members",
            "Unreachable",
            "MemberStatus",
            "Available",
        ];
        let reads = [
            MBeanRead::new("akka:type=Cluster", &cluster_attrs),
            MBeanRead::new("com.example:type=Bogus,name=nope", &["State"]),
        ];
        let out = client.poll(&reads).await;
        assert_eq!(out.len(), 2);
        let ev = out[0].to_event(1, "left-a", None);
        assert_eq!(
            (ev.source.as_str(), ev.kind.as_str()),
            ("jmx", "akka:type=Cluster")
        );
        let d = data(&out[0]);
        let cs = &d["ClusterStatus"];
        assert_eq!(cs["self-address"], "akka.tcp://Sys@left-a:2552");
        assert_eq!(cs["members"].as_array().map(Vec::len), Some(4));
        assert!(cs["members"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|m| m["status"] == "Up"));
        assert_eq!(
            cs["unreachable"],
            json!([{"node": "akka.tcp://Sys@right-a:2552",
                    "observed-by": ["akka.tcp://Sys@left-a:2552", "akka.tcp://Sys@left-b:2552"]}])
        );
        assert_eq!(d["Leader"], "akka.tcp://Sys@left-a:2552");
        assert_eq!(d["Available"], true);
        assert_eq!(d["MemberStatus"], "Up");
        assert_eq!(d["Members"].as_str().map(|m| m.split(',').count()), Some(4));

        // The error event carries what Jolokia itself said about the bogus MBean.
        let raw = raw_post(&url, &sensor_protocols::jolokia::bulk_request(&reads)).await;
        let raw_err = &raw[1];
        assert_eq!(raw_err["status"], 404);
        assert_eq!(
            raw_err["error_type"],
            "javax.management.InstanceNotFoundException"
        );
        let ev = out[1].to_event(1, "left-a", None);
        assert_eq!((ev.source.as_str(), ev.kind.as_str()), ("jmx", "error"));
        assert!(ev
            .message
            .as_deref()
            .is_some_and(|m| m.contains("com.example:type=Bogus,name=nope")));
        let d = data(&out[1]);
        assert_eq!(d["mbean"], "com.example:type=Bogus,name=nope");
        assert_eq!(d["status"], raw_err["status"]);
        assert_eq!(d["error_type"], raw_err["error_type"]);
        assert_eq!(d["error"], raw_err["error"]);

        // GET reads built by `get_path`: `/` and `!` in the object name and `/` in the inner path
        // are `!`-escaped, the space percent-encoded; the agent must find the MBean and the key.
        let r = MBeanRead {
            mbean: "demo:type=Escaping,name=jmx/rmi!x y".into(),
            attributes: vec!["Labels".into()],
            path: Some("a!/b".into()),
        };
        let o = client.read_get(&r).await.expect("GET read with a path");
        assert_eq!(data(&o), json!({"Labels/a!/b": "slash"}));
        let r = MBeanRead::new("demo:type=Escaping,name=jmx/rmi!x y", &["Labels", "Url"]);
        let o = client
            .read_get(&r)
            .await
            .expect("GET read of two attributes");
        assert_eq!(
            data(&o),
            json!({"Labels": {"a/b": "slash", "bang!": "exclamation", "plain": "x"},
                   "Url": "http://left-a:8778/jolokia/"})
        );
        let o = client
            .read_get(&MBeanRead::new("akka:type=Cluster", &["ClusterStatus"]))
            .await
            .expect("GET read of ClusterStatus");
        assert_eq!(
            data(&o)["ClusterStatus"]["self-address"],
            "akka.tcp://Sys@left-a:2552"
        );
        // A GET read of a missing MBean is that read's 404, not a failed exchange.
        let o = client
            .read_get(&MBeanRead::new(
                "com.example:type=Bogus,name=nope",
                &["State"],
            ))
            .await
            .expect("GET read of a missing MBean");
        assert!(
            matches!(&o, ReadOutcome::Error { status: Some(404), error_type, .. }
                if error_type == "javax.management.InstanceNotFoundException"),
            "{o:?}"
        );

        // A pattern read is keyed by the matching object names.
        let out = client
            .poll(&[MBeanRead::new("akka:type=*", &["Leader"])])
            .await;
        assert_eq!(
            data(&out[0]),
            json!({"akka:type=Cluster": {"Leader": "akka.tcp://Sys@left-a:2552"}})
        );

        // An invalid object name makes the agent reject the whole bulk request: every read gets
        // that error, with the agent's status and type.
        let bad = [
            MBeanRead::new("akka:type=Cluster", &["Leader"]),
            MBeanRead::new("not an object name", &[]),
        ];
        let raw = raw_post(&url, &sensor_protocols::jolokia::bulk_request(&bad)).await;
        assert!(raw.is_object(), "whole-request error is one object: {raw}");
        let out = client.poll(&bad).await;
        assert_eq!(out.len(), 2);
        for o in &out {
            let d = data(o);
            assert_eq!(d["status"], raw["status"]);
            assert_eq!(d["error_type"], raw["error_type"]);
        }
        assert_eq!(data(&out[0])["status"], 400);
    });
}
