//! Jolokia client tests against replies recorded from the real Jolokia request handler
//! (jolokia-core 1.7.1, `fixtures/jolokia/recorded/`, see the README there for how), and a loopback
//! exchange with a tiny in-test HTTP server serving those recorded bodies (chunked and
//! Content-Length replies, refused connections, timeouts, malformed replies). The live agent test
//! is `jolokia_real.rs`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sensor_protocols::jolokia::{
    parse_bulk_reply, parse_single_reply, parse_version_reply, JolokiaClient, JolokiaError,
    MBeanRead, ReadOutcome,
};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn fixture(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/jolokia/recorded")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

fn fixture_json(name: &str) -> Value {
    serde_json::from_slice(&fixture(name)).unwrap_or_else(|e| panic!("{name} is not json: {e}"))
}

const CLUSTER_ATTRS: [&str; 6] = [
    "ClusterStatus",
    "Leader",
    "Members",
    "Unreachable",
    "MemberStatus",
    "Available",
];

/// The reads of `recorded/bulk_read.json`, in order (see `jolokia-agent/record.sh`).
fn reads() -> Vec<MBeanRead> {
    vec![
        MBeanRead::new("akka:type=Cluster", &CLUSTER_ATTRS),
        MBeanRead::new("java.lang:type=Memory", &["HeapMemoryUsage"]),
        MBeanRead::new("com.example:type=NotYetRegistered", &["State"]),
        MBeanRead::new("akka:type=Cluster", &["NoSuchAttribute"]),
    ]
}

fn data(ev: &trace::Event) -> Value {
    serde_json::from_str(ev.data.as_deref().expect("data")).expect("data is json")
}

/// The cluster state JolokiaAgent.java's `akka:type=Cluster` MBean reports, parsed from the
/// `ClusterStatus` JSON text into structure.
fn check_cluster_status(cs: &Value) {
    assert_eq!(cs["self-address"], "akka.tcp://Sys@left-a:2552");
    let members = cs["members"].as_array().expect("members is a list");
    let addrs: Vec<&str> = members
        .iter()
        .map(|m| m["address"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        addrs,
        [
            "akka.tcp://Sys@left-a:2552",
            "akka.tcp://Sys@left-b:2552",
            "akka.tcp://Sys@right-a:2552",
            "akka.tcp://Sys@right-b:2552"
        ]
    );
    assert!(members
        .iter()
        .all(|m| m["status"] == "Up" && m["roles"] == json!(["dc-default"])));
    assert_eq!(
        cs["unreachable"],
        json!([{"node": "akka.tcp://Sys@right-a:2552",
                "observed-by": ["akka.tcp://Sys@left-a:2552", "akka.tcp://Sys@left-b:2552"]}])
    );
}

/// Checks the four outcomes of `reads()` against the raw bulk reply they were parsed from: every
/// per-request status and error type is the agent's own.
fn check_bulk_outcomes(out: &[ReadOutcome], raw: &Value) {
    let raw = raw.as_array().expect("bulk reply is an array");
    assert_eq!((out.len(), raw.len()), (4, 4));
    for (o, r) in out.iter().zip(raw) {
        let status = r["status"].as_i64().expect("per-request status");
        match o {
            ReadOutcome::Values { .. } => assert_eq!(status, 200, "{r}"),
            ReadOutcome::Error {
                status: s,
                error_type,
                error,
                ..
            } => {
                assert_eq!(*s, Some(status));
                assert_eq!(error_type, r["error_type"].as_str().expect("error_type"));
                assert_eq!(error, r["error"].as_str().expect("error"));
            }
        }
    }
    let ev = out[0].to_event(10, "left-a", Some("proj_left-a_1"));
    assert_eq!(
        (ev.source.as_str(), ev.kind.as_str(), ev.service.as_deref()),
        ("jmx", "akka:type=Cluster", Some("left-a"))
    );
    let d = data(&ev);
    // ClusterStatus arrives as JSON text and is parsed into structure.
    assert!(raw[0]["value"]["ClusterStatus"].is_string());
    check_cluster_status(&d["ClusterStatus"]);
    assert_eq!(d["Leader"], "akka.tcp://Sys@left-a:2552");
    assert_eq!(d["Available"], true);
    assert_eq!(d["MemberStatus"], "Up");
    assert_eq!(d["Unreachable"], "akka.tcp://Sys@right-a:2552");
    // Plain strings stay strings.
    assert!(d["Members"]
        .as_str()
        .is_some_and(|m| m.split(',').count() == 4));
    assert_eq!(
        d.as_object().map(|m| m.len()),
        Some(CLUSTER_ATTRS.len()),
        "{d}"
    );

    // A single attribute given as a string: the value is keyed by that attribute.
    let d = data(&out[1].to_event(10, "left-a", None));
    let heap = &d["HeapMemoryUsage"];
    for k in ["init", "used", "committed", "max"] {
        assert!(heap[k].is_i64(), "{k} in {heap}");
    }
    assert!(heap["used"].as_i64() <= heap["committed"].as_i64());

    let ev = out[2].to_event(10, "left-a", None);
    assert_eq!((ev.source.as_str(), ev.kind.as_str()), ("jmx", "error"));
    let d = data(&ev);
    assert_eq!(d["mbean"], "com.example:type=NotYetRegistered");
    assert_eq!(
        d["error_type"],
        "javax.management.InstanceNotFoundException"
    );
    assert_eq!(d["status"], 404);
    assert!(ev
        .message
        .as_deref()
        .is_some_and(|m| m.contains("NotYetRegistered")));

    let d = data(&out[3].to_event(10, "left-a", None));
    assert_eq!(
        (d["mbean"].as_str(), d["status"].as_i64()),
        (Some("akka:type=Cluster"), Some(404))
    );
    assert_eq!(
        d["error_type"],
        "javax.management.AttributeNotFoundException"
    );
}

#[test]
fn recorded_bulk_read_with_per_request_errors() {
    let out = parse_bulk_reply(&reads(), &fixture("bulk_read.json")).expect("parses");
    check_bulk_outcomes(&out, &fixture_json("bulk_read.json"));
}

#[test]
fn recorded_single_reads() {
    // A request sent alone gets one object back, not an array.
    let r = MBeanRead::new("akka:type=Cluster", &["Leader"]);
    let reply = fixture("read_single.json");
    let expect = ReadOutcome::Values {
        mbean: "akka:type=Cluster".into(),
        attributes: json!({"Leader": "akka.tcp://Sys@left-a:2552"})
            .as_object()
            .cloned()
            .expect("object"),
        agent_timestamp: fixture_json("read_single.json")["timestamp"].as_i64(),
    };
    assert!(
        matches!(&expect, ReadOutcome::Values { agent_timestamp: Some(t), .. } if *t > 1_600_000_000)
    );
    assert_eq!(parse_single_reply(&r, &reply).expect("parses"), expect);
    assert_eq!(
        parse_bulk_reply(std::slice::from_ref(&r), &reply).expect("parses"),
        vec![expect]
    );

    let r = MBeanRead::new("akka:type=Cluster", &["ClusterStatus"]);
    let out = parse_single_reply(&r, &fixture("read_cluster_status.json")).expect("parses");
    let d = data(&out.to_event(1, "left-a", None));
    check_cluster_status(&d["ClusterStatus"]);
}

#[test]
fn recorded_get_reads_with_escaping() {
    // JolokiaAgent.java registers `demo:type=Escaping,name=jmx/rmi!x y`; record.sh read it with
    // the GET paths the client builds (asserted here), and the agent echoes what it unescaped.
    let r = MBeanRead {
        mbean: "demo:type=Escaping,name=jmx/rmi!x y".into(),
        attributes: vec!["Labels".into()],
        path: Some("a!/b".into()),
    };
    assert_eq!(
        r.get_path(),
        "/read/demo:type=Escaping,name=jmx!/rmi!!x%20y/Labels/a!/b"
    );
    let raw = fixture_json("get_read_escaped.json");
    assert_eq!(
        raw["request"]["mbean"],
        "demo:name=jmx/rmi!x y,type=Escaping"
    );
    assert_eq!(raw["request"]["path"], "a!/b");
    let out = parse_single_reply(&r, &fixture("get_read_escaped.json")).expect("parses");
    assert_eq!(
        data(&out.to_event(1, "s", None)),
        json!({"Labels/a!/b": "slash"})
    );

    let r = MBeanRead::new("demo:type=Escaping,name=jmx/rmi!x y", &["Labels", "Url"]);
    assert_eq!(
        r.get_path(),
        "/read/demo:type=Escaping,name=jmx!/rmi!!x%20y/Labels,Url"
    );
    let out = parse_single_reply(&r, &fixture("get_read_escaped_multi.json")).expect("parses");
    assert_eq!(
        data(&out.to_event(1, "s", None)),
        json!({"Labels": {"a/b": "slash", "bang!": "exclamation", "plain": "x"},
               "Url": "http://left-a:8778/jolokia/"})
    );
}

#[test]
fn recorded_pattern_read_is_keyed_by_object_name() {
    let r = MBeanRead::new("akka:type=*", &["Leader"]);
    let out = parse_single_reply(&r, &fixture("read_pattern.json")).expect("parses");
    assert_eq!(
        data(&out.to_event(1, "s", None)),
        json!({"akka:type=Cluster": {"Leader": "akka.tcp://Sys@left-a:2552"}})
    );
}

#[test]
fn recorded_version_reply() {
    let v = parse_version_reply(&fixture("version.json")).expect("version");
    assert_eq!((v.agent.as_str(), v.protocol.as_str()), ("1.7.1", "7.2"));
    assert_eq!(v.value["config"]["agentContext"], "/jolokia");
    assert!(matches!(
        parse_version_reply(&fixture("whole_request_error.json")),
        Err(JolokiaError::Agent { status: 400, .. })
    ));
}

#[test]
fn recorded_whole_request_error_is_an_agent_error() {
    // One invalid object name in a bulk POST makes Jolokia reject the whole request with a
    // single error object instead of the array.
    let reads = [
        MBeanRead::new("akka:type=Cluster", &["Leader"]),
        MBeanRead::new("not an object name", &[]),
    ];
    match parse_bulk_reply(&reads, &fixture("whole_request_error.json")) {
        Err(JolokiaError::Agent {
            status,
            error_type,
            error,
        }) => {
            assert_eq!(status, 400);
            assert_eq!(error_type, "java.lang.IllegalArgumentException");
            assert!(error.contains("Invalid object name"), "{error}");
        }
        other => panic!("expected an agent error, got {other:?}"),
    }
}

/// What the in-test server does with a connection.
#[derive(Clone, Copy)]
enum Reply {
    Chunked(&'static str),
    Length(&'static str),
    Html500,
    Silent,
}

/// Serves every connection with `reply`; records the request bodies it received.
async fn server(reply: Reply) -> (String, Arc<Mutex<Vec<(String, Vec<u8>)>>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    tokio::spawn(async move {
        // Bounded: a test makes at most a few requests.
        for _ in 0..8 {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let seen = seen2.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut tmp = [0u8; 4096];
                // Read the head, then Content-Length bytes of body.
                let (head_end, cl) = loop {
                    let n = s.read(&mut tmp).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&tmp[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                        let cl = head
                            .lines()
                            .find_map(|l| {
                                l.strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        break (i + 4, cl);
                    }
                };
                while buf.len() < head_end + cl {
                    let n = s.read(&mut tmp).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&tmp[..n]);
                }
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                seen.lock()
                    .expect("lock")
                    .push((head, buf[head_end..].to_vec()));
                let resp: Vec<u8> = match reply {
                    Reply::Chunked(name) => {
                        let body = fixture(name);
                        let mut r = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain;charset=utf-8\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
                        for c in body.chunks(97) {
                            r.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
                            r.extend_from_slice(c);
                            r.extend_from_slice(b"\r\n");
                        }
                        r.extend_from_slice(b"0\r\n\r\n");
                        r
                    }
                    Reply::Length(name) => {
                        let body = fixture(name);
                        let mut r = format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
                        r.extend_from_slice(&body);
                        r
                    }
                    Reply::Html500 => b"HTTP/1.1 500 Server Error\r\nContent-Type: text/html\r\nContent-Length: 21\r\n\r\n<h1>Server Error</h1>".to_vec(),
                    Reply::Silent => {
                        tokio::time::sleep(Duration::from_secs(5)).await;
                        return;
                    }
                };
                // Write in two pieces so the client sees a split response.
                let mid = resp.len() / 2;
                let _ = s.write_all(&resp[..mid]).await;
                let _ = s.flush().await;
                tokio::time::sleep(Duration::from_millis(5)).await;
                let _ = s.write_all(&resp[mid..]).await;
                let _ = s.shutdown().await;
            });
        }
    });
    (format!("http://{addr}/jolokia"), seen)
}

#[tokio::test]
async fn loopback_bulk_post_chunked() {
    let (url, seen) = server(Reply::Chunked("bulk_read.json")).await;
    let client = JolokiaClient {
        url,
        timeout: Duration::from_secs(5),
    };
    let out = client.poll(&reads()).await;
    check_bulk_outcomes(&out, &fixture_json("bulk_read.json"));
    let seen = seen.lock().expect("lock");
    assert_eq!(seen.len(), 1, "one bulk POST per poll");
    let (head, body) = &seen[0];
    assert!(head.starts_with("POST /jolokia/ HTTP/1.1\r\n"), "{head}");
    assert!(head
        .to_ascii_lowercase()
        .contains("content-type: application/json"));
    let sent: Value = serde_json::from_slice(body).expect("json body");
    assert_eq!(
        sent,
        json!([
            {"type": "read", "mbean": "akka:type=Cluster", "attribute": ["ClusterStatus", "Leader", "Members", "Unreachable", "MemberStatus", "Available"]},
            {"type": "read", "mbean": "java.lang:type=Memory", "attribute": "HeapMemoryUsage"},
            {"type": "read", "mbean": "com.example:type=NotYetRegistered", "attribute": "State"},
            {"type": "read", "mbean": "akka:type=Cluster", "attribute": "NoSuchAttribute"}
        ])
    );
}

#[tokio::test]
async fn loopback_version_content_length() {
    let (url, _) = server(Reply::Length("version.json")).await;
    let client = JolokiaClient {
        url,
        timeout: Duration::from_secs(5),
    };
    let v = client.version().await.expect("version");
    assert_eq!(v.agent, "1.7.1");
}

fn error_types(out: &[ReadOutcome]) -> Vec<String> {
    out.iter()
        .map(|o| {
            let ev = o.to_event(1, "svc", None);
            assert_eq!((ev.source.as_str(), ev.kind.as_str()), ("jmx", "error"));
            data(&ev)["error_type"].as_str().unwrap_or("").to_string()
        })
        .collect()
}

#[tokio::test]
async fn refused_timeout_and_malformed_become_error_events() {
    // Refused: bind, note the port, close.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let c = JolokiaClient::for_host("127.0.0.1", port, Duration::from_secs(2));
    assert_eq!(
        error_types(&c.poll(&reads()).await),
        vec!["connection_refused"; 4]
    );

    let (url, _) = server(Reply::Silent).await;
    let c = JolokiaClient {
        url,
        timeout: Duration::from_millis(300),
    };
    assert_eq!(error_types(&c.poll(&reads()).await), vec!["timeout"; 4]);

    let (url, _) = server(Reply::Html500).await;
    let c = JolokiaClient {
        url,
        timeout: Duration::from_secs(2),
    };
    let out = c.poll(&reads()).await;
    assert_eq!(error_types(&out), vec!["http_500"; 4]);
    assert!(matches!(
        &out[0],
        ReadOutcome::Error {
            status: Some(500),
            ..
        }
    ));
}
