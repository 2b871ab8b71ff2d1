//! The receiver over real sockets on loopback: the generated tonic gRPC clients of
//! `opentelemetry-proto` and OTLP/HTTP requests (protobuf, JSON, gzip) become `otel` events with
//! the fields docs/sensors.md lists; malformed, oversized and mistyped requests get the
//! protocol's error reply and an `otel`/`error` event; a full queue refuses with the "retry"
//! reply and counts the drops.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::{Buf, BufMut};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span, status, ResourceSpans, ScopeSpans, Span, Status,
};
use otlp::{Batch, Queue, Receiver, ReceiverConfig};
use prost::Message;
use serde_json::Value;
use trace::Event;

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn kv(k: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

fn s(v: &str) -> any_value::Value {
    any_value::Value::StringValue(v.into())
}

fn resource(service: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![kv("service.name", s(service))],
        ..Default::default()
    })
}

fn span_request(service: &str, name: &str, error: bool, end_ns: u64) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource(service),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "shop".into(),
                    version: "1.0".into(),
                    ..Default::default()
                }),
                spans: vec![Span {
                    trace_id: (1u8..=16).collect(),
                    span_id: vec![0xaa; 8],
                    parent_span_id: vec![0xbb; 8],
                    name: name.into(),
                    kind: span::SpanKind::Server as i32,
                    start_time_unix_nano: end_ns - 2_500_000,
                    end_time_unix_nano: end_ns,
                    attributes: vec![
                        kv("http.route", s("/checkout")),
                        kv("http.status_code", any_value::Value::IntValue(500)),
                    ],
                    events: vec![span::Event {
                        time_unix_nano: end_ns - 1_000,
                        name: "exception".into(),
                        attributes: vec![kv("exception.message", s("boom"))],
                        ..Default::default()
                    }],
                    status: Some(Status {
                        message: if error { "boom".into() } else { String::new() },
                        code: if error {
                            status::StatusCode::Error as i32
                        } else {
                            status::StatusCode::Ok as i32
                        },
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn metric_request(t: u64) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource("shop"),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![
                    Metric {
                        name: "queue.depth".into(),
                        unit: "1".into(),
                        data: Some(metric::Data::Gauge(Gauge {
                            data_points: vec![NumberDataPoint {
                                time_unix_nano: t,
                                value: Some(number_data_point::Value::AsInt(7)),
                                attributes: vec![kv("queue", s("orders"))],
                                ..Default::default()
                            }],
                        })),
                        ..Default::default()
                    },
                    Metric {
                        name: "http.server.duration".into(),
                        unit: "ms".into(),
                        data: Some(metric::Data::Histogram(Histogram {
                            data_points: vec![HistogramDataPoint {
                                time_unix_nano: t,
                                count: 3,
                                sum: Some(42.5),
                                bucket_counts: vec![1, 2, 0],
                                explicit_bounds: vec![10.0, 100.0],
                                ..Default::default()
                            }],
                            aggregation_temporality: 2,
                        })),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn log_request(t: u64) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource("shop"),
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    time_unix_nano: t,
                    severity_number: 17,
                    severity_text: "ERROR".into(),
                    body: Some(AnyValue {
                        value: Some(s("payment failed")),
                    }),
                    trace_id: (1u8..=16).collect(),
                    span_id: vec![0xaa; 8],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

async fn start(max: usize, queue: usize) -> (Receiver, Queue) {
    let mut cfg = ReceiverConfig::ephemeral(LOCAL);
    cfg.max_request_bytes = max;
    cfg.queue_events = queue;
    Receiver::start(&cfg).await.expect("receiver starts")
}

async fn next(q: &mut Queue) -> Batch {
    tokio::time::timeout(Duration::from_secs(5), q.recv())
        .await
        .expect("a batch within 5s")
        .expect("queue open")
}

fn data(e: &Event) -> Value {
    serde_json::from_str(e.data.as_deref().expect("data")).expect("json data")
}

#[tokio::test]
async fn grpc_spans_metrics_and_logs_become_events() {
    let (rx, mut q) = start(otlp::DEFAULT_MAX_REQUEST_BYTES, 1000).await;
    let url = format!("http://{}", rx.grpc_addr());
    let end = 1_700_000_000_123_456_789u64;

    let mut tc = TraceServiceClient::connect(url.clone())
        .await
        .expect("connect");
    tc.export(span_request("claimed-shop", "GET /checkout", true, end))
        .await
        .expect("export spans");
    let b = next(&mut q).await;
    assert_eq!(b.peer, Some(LOCAL));
    assert_eq!(b.events.len(), 1);
    let e = &b.events[0];
    assert_eq!((e.source.as_str(), e.kind.as_str()), ("otel", "span"));
    assert_eq!(e.ts_ns, end as i64, "ts_ns is the span's end");
    assert_eq!(e.message.as_deref(), Some("GET /checkout"));
    let d = data(e);
    assert_eq!(d["trace_id"], "0102030405060708090a0b0c0d0e0f10");
    assert_eq!(d["span_id"], "aaaaaaaaaaaaaaaa");
    assert_eq!(d["parent_span_id"], "bbbbbbbbbbbbbbbb");
    assert_eq!(d["kind"], "server");
    assert_eq!(d["status"], "error");
    assert_eq!(d["status_message"], "boom");
    assert_eq!(d["error"], true);
    assert_eq!(d["duration_ms"], 2.5);
    assert_eq!(d["start_ns"], end as i64 - 2_500_000);
    assert_eq!(d["attributes"]["http.route"], "/checkout");
    assert_eq!(d["attributes"]["http.status_code"], 500);
    assert_eq!(d["events"][0]["name"], "exception");
    assert_eq!(d["resource"]["service.name"], "claimed-shop");
    assert_eq!(d["claimed_service"], "claimed-shop");
    assert_eq!(d["scope"]["name"], "shop");
    assert_eq!(d["peer"], "127.0.0.1");
    assert_eq!(d["protocol"], "grpc");
    let received = d["received_ns"].as_i64().expect("received_ns");
    assert!(
        received > end as i64,
        "receive time on the recorder's clock"
    );

    let mut mc = MetricsServiceClient::connect(url.clone())
        .await
        .expect("connect");
    mc.export(metric_request(end))
        .await
        .expect("export metrics");
    let b = next(&mut q).await;
    assert_eq!(b.events.len(), 2, "one event per data point");
    let g = data(&b.events[0]);
    assert_eq!(b.events[0].kind, "metric");
    assert_eq!(b.events[0].ts_ns, end as i64);
    assert_eq!(
        (g["name"].as_str(), g["type"].as_str()),
        (Some("queue.depth"), Some("gauge"))
    );
    assert_eq!(g["value"], 7);
    assert_eq!(g["attributes"]["queue"], "orders");
    let h = data(&b.events[1]);
    assert_eq!(h["type"], "histogram");
    assert_eq!(h["histogram"]["count"], 3);
    assert_eq!(h["histogram"]["sum"], 42.5);
    assert_eq!(h["histogram"]["bounds"], serde_json::json!([10.0, 100.0]));
    assert_eq!(h["histogram"]["counts"], serde_json::json!([1, 2, 0]));
    assert_eq!(h["temporality"], "cumulative");

    let mut lc = LogsServiceClient::connect(url).await.expect("connect");
    lc.export(log_request(end)).await.expect("export logs");
    let b = next(&mut q).await;
    let l = &b.events[0];
    assert_eq!((l.kind.as_str(), l.ts_ns), ("log", end as i64));
    assert_eq!(l.message.as_deref(), Some("payment failed"));
    let d = data(l);
    assert_eq!(d["severity"], "error");
    assert_eq!(d["severity_text"], "ERROR");
    assert_eq!(d["span_id"], "aaaaaaaaaaaaaaaa");
    let st = rx.stats();
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(
        (
            st.spans.load(Relaxed),
            st.points.load(Relaxed),
            st.logs.load(Relaxed)
        ),
        (1, 2, 1)
    );
    rx.stop(Duration::from_secs(1)).await;
    assert!(q.recv().await.is_none(), "the queue ends after stop");
}

/// One HTTP/1.1 request on a fresh connection; (status, headers and body as text).
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let mut c = std::net::TcpStream::connect(addr).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    c.write_all(req.as_bytes()).expect("write head");
    // a server may answer (413) before reading a large body: ignore a reset while writing
    let _ = c.write_all(body);
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response head");
    let head = String::from_utf8_lossy(&out[..split]).to_string();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    (status, head, out[split + 4..].to_vec())
}

async fn http_async(
    addr: SocketAddr,
    method: &'static str,
    path: &'static str,
    headers: Vec<(&'static str, &'static str)>,
    body: Vec<u8>,
) -> (u16, String, Vec<u8>) {
    tokio::task::spawn_blocking(move || http(addr, method, path, &headers, &body))
        .await
        .expect("client thread")
}

/// The example of the OTLP specification's JSON encoding (hex ids, enum numbers, strings for
/// 64-bit integers).
const SPEC_JSON: &str = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"my.service"}}]},
 "scopeSpans":[{"scope":{"name":"my.library","version":"1.0.0"},"spans":[{"traceId":"5b8efff798038103d269b633813fc60c",
 "spanId":"eee19b7ec3c1b174","parentSpanId":"eee19b7ec3c1b173","name":"I'm a server span","startTimeUnixNano":"1544712660000000000",
 "endTimeUnixNano":"1544712661000000000","kind":2,"attributes":[{"key":"my.span.attr","value":{"intValue":"42"}}],
 "status":{"code":2,"message":"failed"}}]}]}]}"#;

#[tokio::test]
async fn http_protobuf_json_and_gzip_become_events() {
    let (rx, mut q) = start(otlp::DEFAULT_MAX_REQUEST_BYTES, 1000).await;
    let addr = rx.http_addr();
    let end = 1_700_000_000_000_000_000u64;
    let body = span_request("shop", "POST /pay", false, end).encode_to_vec();
    let (st, head, reply) = http_async(
        addr,
        "POST",
        "/v1/traces",
        vec![("Content-Type", "application/x-protobuf")],
        body,
    )
    .await;
    assert_eq!(st, 200, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/x-protobuf"),
        "{head}"
    );
    assert!(
        opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse::decode(
            &reply[..]
        )
        .is_ok(),
        "the reply is an ExportTraceServiceResponse"
    );
    let d = data(&next(&mut q).await.events[0]);
    assert_eq!(
        (d["name"].as_str(), d["status"].as_str()),
        (Some("POST /pay"), Some("ok"))
    );
    assert_eq!(d["protocol"], "http/protobuf");

    let (st, _, reply) = http_async(
        addr,
        "POST",
        "/v1/traces",
        vec![("Content-Type", "application/json")],
        SPEC_JSON.into(),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(reply, b"{}");
    let e = next(&mut q).await.events.remove(0);
    assert_eq!(e.ts_ns, 1_544_712_661_000_000_000);
    let d = data(&e);
    assert_eq!(d["trace_id"], "5b8efff798038103d269b633813fc60c");
    assert_eq!(d["parent_span_id"], "eee19b7ec3c1b173");
    assert_eq!(d["kind"], "server");
    assert_eq!(d["status"], "error");
    assert_eq!(d["duration_ms"], 1000.0);
    assert_eq!(d["attributes"]["my.span.attr"], 42);
    assert_eq!(d["claimed_service"], "my.service");
    assert_eq!(d["protocol"], "http/json");

    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&log_request(end).encode_to_vec())
        .expect("gzip");
    let body = gz.finish().expect("gzip");
    let (st, _, _) = http_async(
        addr,
        "POST",
        "/v1/logs",
        vec![
            ("Content-Type", "application/x-protobuf"),
            ("Content-Encoding", "gzip"),
        ],
        body,
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(
        next(&mut q).await.events[0].message.as_deref(),
        Some("payment failed")
    );
    rx.stop(Duration::from_secs(1)).await;
}

/// Each refused request: its status, and the `otel`/`error` event's `error_type`.
async fn refused(q: &mut Queue, got: (u16, String, Vec<u8>), status: u16, error_type: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    let b = next(q).await;
    let e = &b.events[0];
    assert_eq!((e.source.as_str(), e.kind.as_str()), ("otel", "error"));
    let d = data(e);
    assert_eq!(d["error_type"], error_type, "{d}");
    assert_eq!(d["status"], status);
    assert_eq!(d["peer"], "127.0.0.1");
}

#[tokio::test]
async fn bad_http_requests_get_their_status_and_an_error_event() {
    let (rx, mut q) = start(4096, 1000).await;
    let a = rx.http_addr();
    let proto = vec![("Content-Type", "application/x-protobuf")];
    // a length-delimited field whose length runs past the end
    let got = http_async(
        a,
        "POST",
        "/v1/traces",
        proto.clone(),
        vec![0x0a, 0xff, 0x01, 0x02],
    )
    .await;
    let status = otlp_status(&got.2);
    assert!(status.0 == 3 && status.1.contains("protobuf"), "{status:?}");
    refused(&mut q, got, 400, "malformed").await;
    let got = http_async(
        a,
        "POST",
        "/v1/metrics",
        vec![("Content-Type", "application/json")],
        b"{\"resourceMetrics\": [".to_vec(),
    )
    .await;
    refused(&mut q, got, 400, "malformed").await;
    let got = http_async(a, "POST", "/v1/traces", proto.clone(), vec![0u8; 10_000]).await;
    refused(&mut q, got, 413, "too_large").await;
    // a gzip body that inflates past the limit
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&[0u8; 100_000]).expect("gzip");
    let got = http_async(
        a,
        "POST",
        "/v1/traces",
        vec![
            ("Content-Type", "application/x-protobuf"),
            ("Content-Encoding", "gzip"),
        ],
        gz.finish().expect("gzip"),
    )
    .await;
    refused(&mut q, got, 413, "too_large").await;
    let got = http_async(
        a,
        "POST",
        "/v1/traces",
        vec![("Content-Type", "text/plain")],
        b"hello".to_vec(),
    )
    .await;
    refused(&mut q, got, 415, "unsupported_media_type").await;
    let got = http_async(
        a,
        "POST",
        "/v1/traces",
        vec![
            ("Content-Type", "application/x-protobuf"),
            ("Content-Encoding", "br"),
        ],
        vec![],
    )
    .await;
    refused(&mut q, got, 415, "unsupported_encoding").await;
    let got = http_async(a, "POST", "/v2/spans", proto.clone(), vec![]).await;
    refused(&mut q, got, 404, "not_found").await;
    let got = http_async(a, "GET", "/v1/traces", proto.clone(), vec![]).await;
    refused(&mut q, got, 405, "method_not_allowed").await;
    // and the receiver still serves good requests
    let body = span_request("shop", "after", false, 1_700_000_000_000_000_000).encode_to_vec();
    let got = http_async(a, "POST", "/v1/traces", proto, body).await;
    assert_eq!(got.0, 200);
    assert_eq!(next(&mut q).await.events[0].kind, "span");
    rx.stop(Duration::from_secs(1)).await;
}

/// The `google.rpc.Status` of an error reply: (code, message).
fn otlp_status(body: &[u8]) -> (i32, String) {
    #[derive(Clone, PartialEq, prost::Message)]
    struct RpcStatus {
        #[prost(int32, tag = "1")]
        code: i32,
        #[prost(string, tag = "2")]
        message: String,
    }
    let s = RpcStatus::decode(body).expect("a google.rpc.Status body");
    (s.code, s.message)
}

/// A gRPC codec that sends raw bytes (to send what no generated client would).
#[derive(Clone, Default)]
struct Raw;

impl tonic::codec::Encoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        let n = src.remaining();
        Ok(Some(src.copy_to_bytes(n).to_vec()))
    }
}

impl tonic::codec::Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

async fn raw_grpc(url: String, path: &'static str, body: Vec<u8>) -> tonic::Status {
    let ch = tonic::transport::Endpoint::from_shared(url)
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut g = tonic::client::Grpc::new(ch);
    g.ready().await.expect("ready");
    g.unary::<Vec<u8>, Vec<u8>, Raw>(
        tonic::Request::new(body),
        http::uri::PathAndQuery::from_static(path),
        Raw,
    )
    .await
    .expect_err("refused")
}

#[tokio::test]
async fn bad_grpc_requests_get_a_status_and_an_error_event() {
    let (rx, mut q) = start(4096, 1000).await;
    let url = format!("http://{}", rx.grpc_addr());
    const EXPORT: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
    let st = raw_grpc(url.clone(), EXPORT, vec![0x0a, 0xff, 0x01, 0x02]).await;
    assert_eq!(st.code(), tonic::Code::Internal, "{st:?}");
    let d = data(&next(&mut q).await.events[0]);
    assert_eq!(
        (d["error_type"].as_str(), d["protocol"].as_str()),
        (Some("malformed"), Some("grpc")),
        "{d}"
    );
    let st = raw_grpc(url.clone(), EXPORT, vec![0u8; 10_000]).await;
    assert_eq!(st.code(), tonic::Code::OutOfRange, "{st:?}");
    let d = data(&next(&mut q).await.events[0]);
    assert_eq!(d["error_type"], "too_large", "{d}");
    let st = raw_grpc(
        url.clone(),
        "/opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export",
        vec![],
    )
    .await;
    assert_eq!(st.code(), tonic::Code::Unimplemented, "{st:?}");
    assert_eq!(
        data(&next(&mut q).await.events[0])["error_type"],
        "not_found"
    );
    // the connection and the receiver survive
    let mut tc = TraceServiceClient::connect(url).await.expect("connect");
    tc.export(span_request(
        "shop",
        "after",
        false,
        1_700_000_000_000_000_000,
    ))
    .await
    .expect("a good export after bad ones");
    assert_eq!(next(&mut q).await.events[0].kind, "span");
    rx.stop(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_full_queue_refuses_with_retry_and_counts_the_drops() {
    let (rx, mut q) = start(otlp::DEFAULT_MAX_REQUEST_BYTES, 2).await;
    let url = format!("http://{}", rx.grpc_addr());
    let mut tc = TraceServiceClient::connect(url).await.expect("connect");
    let end = 1_700_000_000_000_000_000u64;
    for i in 0..2 {
        tc.export(span_request("shop", &format!("s{i}"), false, end))
            .await
            .expect("room in the queue");
    }
    let st = tc
        .export(span_request("shop", "s2", false, end))
        .await
        .expect_err("queue full");
    assert_eq!(st.code(), tonic::Code::Unavailable);
    let (code, _, _) = http_async(
        rx.http_addr(),
        "POST",
        "/v1/traces",
        vec![("Content-Type", "application/x-protobuf")],
        span_request("shop", "s3", false, end).encode_to_vec(),
    )
    .await;
    assert_eq!(code, 503);
    let d = rx.stats().take_dropped();
    assert_eq!((d.requests, d.spans), (2, 2));
    assert_eq!(rx.stats().take_dropped().requests, 0, "take_dropped resets");
    // draining makes room again
    assert_eq!(next(&mut q).await.events.len(), 1);
    assert_eq!(next(&mut q).await.events.len(), 1);
    tc.export(span_request("shop", "s4", false, end))
        .await
        .expect("room again");
    assert_eq!(data(&next(&mut q).await.events[0])["name"], "s4");
    rx.stop(Duration::from_secs(1)).await;
}
