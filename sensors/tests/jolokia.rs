//! Jolokia client tests: reply fixtures modelled on the Jolokia reference documentation and
//! Akka's JMX output (see `fixtures/jolokia/README.md`), and a loopback exchange with a tiny
//! in-test HTTP server (chunked and Content-Length replies, refused connections, timeouts,
//! malformed replies).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sensors::jolokia::{
    parse_bulk_reply, parse_version_reply, JolokiaClient, JolokiaError, MBeanRead, ReadOutcome,
};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn fixture(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/jolokia")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

fn reads() -> Vec<MBeanRead> {
    vec![
        MBeanRead::new(
            "akka:type=Cluster",
            &[
                "ClusterStatus",
                "Leader",
                "Members",
                "Unreachable",
                "MemberStatus",
                "Available",
            ],
        ),
        MBeanRead::new("java.lang:type=Memory", &["HeapMemoryUsage"]),
        MBeanRead::new("com.example:type=NotYetRegistered", &["State"]),
    ]
}

fn data(ev: &trace::Event) -> Value {
    serde_json::from_str(ev.data.as_deref().expect("data")).expect("data is json")
}

fn check_bulk_outcomes(out: &[ReadOutcome]) {
    assert_eq!(out.len(), 3);
    let ev = out[0].to_event(10, "left-a", Some("proj_left-a_1"));
    assert_eq!(
        (ev.source.as_str(), ev.kind.as_str(), ev.service.as_deref()),
        ("jmx", "akka:type=Cluster", Some("left-a"))
    );
    let d = data(&ev);
    // ClusterStatus arrives as JSON text and is parsed into structure.
    assert_eq!(
        d["ClusterStatus"]["self-address"],
        "akka.tcp://Sys@left-a:2552"
    );
    assert_eq!(
        d["ClusterStatus"]["members"].as_array().map(Vec::len),
        Some(4)
    );
    assert_eq!(d["ClusterStatus"]["members"][3]["status"], "Joining");
    assert_eq!(d["ClusterStatus"]["unreachable"], json!([]));
    assert_eq!(d["Leader"], "akka.tcp://Sys@left-a:2552");
    assert_eq!(d["Available"], true);
    // Plain strings stay strings.
    assert!(d["Members"]
        .as_str()
        .is_some_and(|m| m.split(',').count() == 4));

    let d = data(&out[1].to_event(10, "left-a", None));
    assert_eq!(d["HeapMemoryUsage"]["used"], 28427104);

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
}

#[test]
fn bulk_read_fixture_with_one_error() {
    let out = parse_bulk_reply(&reads(), &fixture("bulk_read.json")).expect("parses");
    check_bulk_outcomes(&out);
}

#[test]
fn unreachable_cluster_status_has_observed_by() {
    let r = [MBeanRead::new(
        "akka:type=Cluster",
        &["ClusterStatus", "Leader", "Unreachable"],
    )];
    let out = parse_bulk_reply(&r, &fixture("bulk_read_unreachable.json")).expect("parses");
    let d = data(&out[0].to_event(1, "left-a", None));
    assert_eq!(
        d["ClusterStatus"]["unreachable"][0]["node"],
        "akka.tcp://Sys@right-a:2552"
    );
    assert_eq!(
        d["ClusterStatus"]["unreachable"][0]["observed-by"],
        json!(["akka.tcp://Sys@left-a:2552", "akka.tcp://Sys@left-b:2552"])
    );
}

#[test]
fn version_replies() {
    let v = parse_version_reply(&fixture("version.json")).expect("2.x");
    assert_eq!((v.agent.as_str(), v.protocol.as_str()), ("2.1.1", "7.2"));
    let v = parse_version_reply(&fixture("version_1x.json")).expect("1.x");
    assert_eq!(
        (v.agent.as_str(), v.value["info"]["product"].as_str()),
        ("1.7.2", Some("jetty"))
    );
    assert!(matches!(
        parse_version_reply(&fixture("whole_request_error.json")),
        Err(JolokiaError::Agent { status: 400, .. })
    ));
}

#[test]
fn whole_request_error_is_an_agent_error() {
    match parse_bulk_reply(&reads(), &fixture("whole_request_error.json")) {
        Err(JolokiaError::Agent {
            status, error_type, ..
        }) => {
            assert_eq!(status, 400);
            assert_eq!(error_type, "java.lang.IllegalArgumentException");
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
    check_bulk_outcomes(&out);
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
            {"type": "read", "mbean": "com.example:type=NotYetRegistered", "attribute": "State"}
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
    assert_eq!(v.agent, "2.1.1");
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
        vec!["connection_refused"; 3]
    );

    let (url, _) = server(Reply::Silent).await;
    let c = JolokiaClient {
        url,
        timeout: Duration::from_millis(300),
    };
    assert_eq!(error_types(&c.poll(&reads()).await), vec!["timeout"; 3]);

    let (url, _) = server(Reply::Html500).await;
    let c = JolokiaClient {
        url,
        timeout: Duration::from_secs(2),
    };
    let out = c.poll(&reads()).await;
    assert_eq!(error_types(&out), vec!["http_500"; 3]);
    assert!(matches!(
        &out[0],
        ReadOutcome::Error {
            status: Some(500),
            ..
        }
    ));
}
