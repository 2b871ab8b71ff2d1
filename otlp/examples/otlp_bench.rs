//! Throughput of the OTLP receiver into a trace, without loss: `CLIENTS` exporters (the generated
//! tonic gRPC client, or OTLP/HTTP protobuf over HTTP/1.1 keep-alive) each send batches of
//! `BATCH` spans, one request in flight per exporter as an SDK's batch processor does, retrying
//! a refused request (queue full) after 10 ms as an SDK retries; the receiver's queue is drained
//! into a `trace::TraceWriter` on its own thread, as the recorder's writer does. Prints spans/s
//! from the first request to the last span appended to the event log, the refusals, and checks
//! that the finalized trace holds exactly the spans sent. Run by scripts/bench-otlp.sh.
//!
//! Usage: otlp_bench [--spans N] [--batch B] [--clients C] [--protocol grpc|http] [--queue Q]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{status, ResourceSpans, ScopeSpans, Span, Status};
use otlp::{Receiver, ReceiverConfig};
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_string())
}

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

/// One request of `n` spans, like a Python or Java SDK's batch: a resource, one scope, spans with
/// a few attributes, one in 50 with status error.
fn batch(client: u64, seq: u64, n: usize) -> ExportTraceServiceRequest {
    let now = trace::time::now_ns() as u64;
    let spans = (0..n as u64)
        .map(|i| {
            let id = (client << 48) | (seq << 16) | i;
            Span {
                trace_id: [id.to_be_bytes(), id.to_le_bytes()].concat(),
                span_id: id.to_be_bytes().to_vec(),
                parent_span_id: (id ^ 1).to_be_bytes().to_vec(),
                name: "GET /checkout".into(),
                kind: 2,
                start_time_unix_nano: now - 2_000_000,
                end_time_unix_nano: now,
                attributes: vec![
                    kv("http.route", "/checkout"),
                    kv("http.request.method", "GET"),
                    kv("server.address", "shop"),
                    kv("user_agent.original", "bench"),
                ],
                status: Some(Status {
                    message: String::new(),
                    code: if id.is_multiple_of(50) {
                        status::StatusCode::Error as i32
                    } else {
                        status::StatusCode::Ok as i32
                    },
                }),
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", "shop"), kv("service.version", "1.0")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// One OTLP/HTTP POST on a keep-alive connection; the response status.
async fn post(conn: &mut tokio::net::TcpStream, body: &[u8]) -> std::io::Result<u16> {
    let head = format!(
        "POST /v1/traces HTTP/1.1\r\nHost: bench\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await?;
    conn.write_all(body).await?;
    // read the head, then exactly Content-Length bytes
    let mut buf = Vec::with_capacity(512);
    let mut b = [0u8; 512];
    let end = loop {
        let n = conn.read(&mut b).await?;
        if n == 0 {
            return Err(std::io::Error::other("connection closed"));
        }
        buf.extend_from_slice(&b[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut have = buf.len() - end;
    while have < len {
        let n = conn.read(&mut b).await?;
        if n == 0 {
            break;
        }
        have += n;
    }
    Ok(status)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let total: u64 = arg(&args, "--spans", "1000000")
        .parse()
        .unwrap_or(1_000_000);
    let size: usize = arg(&args, "--batch", "512").parse().unwrap_or(512);
    let clients: u64 = arg(&args, "--clients", "4").parse().unwrap_or(4);
    let protocol = arg(&args, "--protocol", "grpc");
    let queue: usize = arg(&args, "--queue", "100000").parse().unwrap_or(100_000);
    let per_client = total / clients / size as u64;
    let sent_total = per_client * clients * size as u64;

    let mut cfg = ReceiverConfig::ephemeral(IpAddr::V4(Ipv4Addr::LOCALHOST));
    cfg.queue_events = queue;
    let (rx, mut q) = Receiver::start(&cfg).await.expect("receiver");
    let dir = std::env::temp_dir().join(format!("otlp-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let writer = trace::TraceWriter::create(&dir, trace::Manifest::default()).expect("trace");
    let (wtx, wrx) = std::sync::mpsc::channel::<Vec<trace::Event>>();
    let appended = Arc::new(AtomicU64::new(0));
    let app2 = appended.clone();
    let wthread = std::thread::spawn(move || {
        let mut w = writer;
        for b in wrx {
            let n = b.len() as u64;
            for ev in b {
                w.append(ev).expect("append");
            }
            app2.fetch_add(n, Ordering::Relaxed);
        }
        w
    });
    let forward = tokio::spawn(async move {
        while let Some(b) = q.recv().await {
            if wtx.send(b.events).is_err() {
                break;
            }
        }
    });

    let refused = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let refused = refused.clone();
        let grpc = format!("http://{}", rx.grpc_addr());
        let http = rx.http_addr();
        let protocol = protocol.clone();
        tasks.push(tokio::spawn(async move {
            if protocol == "grpc" {
                let mut client = TraceServiceClient::connect(grpc).await.expect("connect");
                for s in 0..per_client {
                    let req = batch(c, s, size);
                    loop {
                        match client.export(req.clone()).await {
                            Ok(_) => break,
                            Err(st) if st.code() == tonic::Code::Unavailable => {
                                refused.fetch_add(1, Ordering::Relaxed);
                                tokio::time::sleep(Duration::from_millis(10)).await;
                            }
                            Err(st) => panic!("export: {st}"),
                        }
                    }
                }
            } else {
                let mut conn = tokio::net::TcpStream::connect(http).await.expect("connect");
                conn.set_nodelay(true).expect("nodelay");
                for s in 0..per_client {
                    let body = batch(c, s, size).encode_to_vec();
                    loop {
                        match post(&mut conn, &body).await.expect("post") {
                            200 => break,
                            503 => {
                                refused.fetch_add(1, Ordering::Relaxed);
                                tokio::time::sleep(Duration::from_millis(10)).await;
                            }
                            other => panic!("status {other}"),
                        }
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("client");
    }
    let sent_at = start.elapsed();
    while appended.load(Ordering::Relaxed) < sent_total {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let all_in = start.elapsed();
    let stats = rx.stats().clone();
    rx.stop(Duration::from_secs(2)).await;
    let _ = forward.await;
    let w = wthread.join().expect("writer thread");
    let fin_start = Instant::now();
    let summary = w.finish().expect("finalize");
    let fin = fin_start.elapsed();
    let _ = std::fs::remove_dir_all(&dir);
    let spans = stats.spans.load(Ordering::Relaxed);
    println!(
        "protocol={protocol} clients={clients} batch={size} spans_sent={sent_total} spans_accepted={spans} \
         in_trace={} lost={} refused_requests={} send_s={:.3} appended_s={:.3} spans_per_s={:.0} finalize_s={:.3}",
        summary.events,
        sent_total.saturating_sub(summary.events),
        refused.load(Ordering::Relaxed),
        sent_at.as_secs_f64(),
        all_in.as_secs_f64(),
        sent_total as f64 / all_in.as_secs_f64(),
        fin.as_secs_f64(),
    );
    if summary.events != sent_total {
        std::process::exit(1);
    }
}
