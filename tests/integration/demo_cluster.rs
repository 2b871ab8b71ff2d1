//! The demo cluster on real Docker: brings up examples/split-brain (four demo-node cluster
//! members on networks left/middle/right), reads Jolokia from the host at the containers' bridge
//! addresses, pauses right-a ("GC pause") and checks left-a reports it unreachable, unpauses and
//! checks the cluster is whole again. Bounded: every wait has a deadline, total well under 90 s.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use integration_tests::{
    compose_command, ensure_images, project_containers, require_docker, unique_project,
    workspace_root, ProjectGuard,
};
use serde_json::Value;

const NODES: [&str; 4] = ["left-a", "left-b", "right-a", "right-b"];

fn addr(node: &str) -> String {
    format!("akka.tcp://TestCluster@{node}:2552")
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run docker {args:?}: {e}"));
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The container id of a compose service, found by labels.
fn container(project: &str, service: &str) -> String {
    let id = docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=com.docker.compose.project={project}"),
        "--filter",
        &format!("label=com.docker.compose.service={service}"),
    ]);
    assert!(!id.is_empty(), "no container for service {service}");
    id
}

/// The container's address on its non-middle network (left or right), reachable from the host.
fn jolokia_addr(project: &str, service: &str) -> SocketAddr {
    let id = container(project, service);
    let nets = docker(&[
        "inspect",
        "-f",
        "{{range $k, $v := .NetworkSettings.Networks}}{{$k}}={{$v.IPAddress}} {{end}}",
        &id,
    ]);
    let ip = nets
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, v)| !k.ends_with("_middle") && !v.is_empty())
        .map(|(_, v)| v.to_string())
        .unwrap_or_else(|| panic!("no left/right address for {service}: {nets}"));
    format!("{ip}:8778").parse().expect("socket address")
}

/// One bulk Jolokia read; returns the parsed ClusterStatus, or an error text.
fn cluster_status(at: SocketAddr) -> Result<Value, String> {
    let mut c =
        TcpStream::connect_timeout(&at, Duration::from_secs(1)).map_err(|e| e.to_string())?;
    c.set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    let body =
        r#"[{"type":"read","mbean":"akka:type=Cluster","attribute":["ClusterStatus","Leader"]}]"#;
    write!(
        c,
        "POST /jolokia HTTP/1.1\r\nHost: {at}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| e.to_string())?;
    let mut resp = String::new();
    c.read_to_string(&mut resp).map_err(|e| e.to_string())?;
    let json = resp.split("\r\n\r\n").nth(1).ok_or("no http body")?;
    let v: Value = serde_json::from_str(json).map_err(|e| format!("{e}: {json}"))?;
    let r = &v[0];
    if r["status"] != 200 {
        return Err(format!("jolokia status {}: {}", r["status"], r["error"]));
    }
    let text = r["value"]["ClusterStatus"]
        .as_str()
        .ok_or("ClusterStatus is not a string")?;
    serde_json::from_str(text).map_err(|e| e.to_string())
}

fn up_members(cs: &Value) -> Vec<String> {
    let mut v: Vec<String> = cs["members"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|m| m["status"] == "Up")
                .filter_map(|m| m["address"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn unreachable(cs: &Value) -> Vec<String> {
    cs["unreachable"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|u| u["node"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Polls `f` every 200 ms until it returns Some or the deadline passes (then panics with the last state).
fn wait_until<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < limit {
        match f() {
            Ok(v) => return v,
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out after {limit:?} waiting for {what}; last: {last}");
}

fn whole_cluster(cs: &Value) -> Result<(), String> {
    let all: Vec<String> = NODES.iter().map(|n| addr(n)).collect();
    if up_members(cs) == all && unreachable(cs).is_empty() {
        Ok(())
    } else {
        Err(format!(
            "members {:?} unreachable {:?}",
            up_members(cs),
            unreachable(cs)
        ))
    }
}

#[test]
fn demo_cluster_forms_and_survives_a_pause_of_right_a() {
    require_docker!();
    ensure_images();
    let project = unique_project("cluster");
    let guard = ProjectGuard::new(project.clone());
    let file = workspace_root().join("examples/split-brain/docker-compose.yml");
    let compose = compose_command();
    let mut cmd = Command::new(&compose[0]);
    cmd.args(&compose[1..])
        .arg("-f")
        .arg(&file)
        .args(["-p", &project, "up", "-d"]);
    let out = cmd.output().expect("run compose");
    assert!(
        out.status.success(),
        "compose up failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let left_a = jolokia_addr(&project, "left-a");
    let right_a = jolokia_addr(&project, "right-a");

    // The cluster forms: left-a sees all four Up, nothing unreachable, itself as leader.
    wait_until("all four Up at left-a", Duration::from_secs(30), || {
        whole_cluster(&cluster_status(left_a)?)
    });
    let cs = cluster_status(left_a).expect("jolokia at left-a");
    assert_eq!(cs["self-address"], addr("left-a"));

    // "GC pause" of right-a: left-a marks it unreachable itself (other observers' records may
    // reach left-a a moment earlier, so wait for left-a's own observation too).
    let ra = container(&project, "right-a");
    docker(&["pause", &ra]);
    let cs = wait_until(
        "right-a unreachable at left-a, observed by left-a",
        Duration::from_secs(15),
        || {
            let cs = cluster_status(left_a)?;
            let observers: Vec<&str> = cs["unreachable"][0]["observed-by"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if unreachable(&cs) == vec![addr("right-a")]
                && observers.contains(&addr("left-a").as_str())
            {
                Ok(cs.clone())
            } else {
                Err(format!(
                    "unreachable {:?} observed-by {observers:?}",
                    unreachable(&cs)
                ))
            }
        },
    );
    assert_eq!(
        up_members(&cs).len(),
        4,
        "a short pause must not remove right-a"
    );
    docker(&["unpause", &ra]);

    // Back to a whole cluster, seen from both sides.
    wait_until(
        "cluster whole again at left-a",
        Duration::from_secs(20),
        || whole_cluster(&cluster_status(left_a)?),
    );
    wait_until(
        "cluster whole again at right-a",
        Duration::from_secs(10),
        || whole_cluster(&cluster_status(right_a)?),
    );

    let mut down = Command::new(&compose[0]);
    down.args(&compose[1..]).arg("-f").arg(&file).args([
        "-p",
        &project,
        "down",
        "-v",
        "--remove-orphans",
        "-t",
        "2",
    ]);
    let out = down.output().expect("run compose down");
    assert!(
        out.status.success(),
        "compose down failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(project_containers(&project).is_empty());
    drop(guard);
}
