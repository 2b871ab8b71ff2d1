//! The receiver: two listeners (the gRPC port and the HTTP port of OTLP), each serving every
//! OTLP transport on one socket: gRPC (HTTP/2, `application/grpc`, the generated tonic services
//! of `opentelemetry-proto`), OTLP/HTTP with protobuf (`application/x-protobuf`) and with JSON
//! (`application/json`) at `/v1/traces`, `/v1/metrics` and `/v1/logs`, HTTP/1.1 or HTTP/2, gzip
//! request bodies. Decoded requests become events ([`crate::convert`]) handed to a bounded
//! [`Queue`]: when it is full the request is refused with the protocol's "try again" reply
//! (gRPC `UNAVAILABLE`, HTTP 503 with `Retry-After`) and its items are counted in
//! [`Stats`] as dropped. Bad requests get the protocol's error reply (gRPC status, HTTP 400, 404,
//! 405, 413, 415) and an `otel`/`error` event; nothing a sender does can stop the receiver.

use std::convert::Infallible;
use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::codec::CompressionEncoding;
use tonic::codegen::Service;
use trace::time::now_ns;
use trace::Event;

use crate::convert::{self, Received, SOURCE};

/// Default largest accepted request (after decompression): 4 MiB, gRPC's default message size.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 4 << 20;
/// Default capacity of the queue between the receiver and the trace, in events.
pub const DEFAULT_QUEUE_EVENTS: usize = 100_000;

/// Where and how the receiver listens.
#[derive(Debug, Clone)]
pub struct ReceiverConfig {
    /// The address both listeners bind.
    pub ip: IpAddr,
    /// The gRPC port (OTLP's 4317); 0 picks a free port.
    pub grpc_port: u16,
    /// The HTTP port (OTLP's 4318); 0 picks a free port.
    pub http_port: u16,
    /// Largest request body accepted, after decompression.
    pub max_request_bytes: usize,
    /// Events the queue holds before requests are refused.
    pub queue_events: usize,
}

impl ReceiverConfig {
    /// Both ports picked by the system, default limits.
    pub fn ephemeral(ip: IpAddr) -> ReceiverConfig {
        ReceiverConfig {
            ip,
            grpc_port: 0,
            http_port: 0,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            queue_events: DEFAULT_QUEUE_EVENTS,
        }
    }
}

/// Why the receiver could not start.
#[derive(Debug, thiserror::Error)]
pub enum ReceiverError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The events of one request, with the sender's address (to resolve the `service` column).
#[derive(Debug)]
pub struct Batch {
    pub peer: Option<IpAddr>,
    pub events: Vec<Event>,
}

/// Counters of the receiver (monotonic, except the dropped ones [`Stats::take_dropped`] resets).
#[derive(Debug, Default)]
pub struct Stats {
    pub requests: AtomicU64,
    pub spans: AtomicU64,
    pub points: AtomicU64,
    pub logs: AtomicU64,
    pub errors: AtomicU64,
    dropped_requests: AtomicU64,
    dropped_spans: AtomicU64,
    dropped_points: AtomicU64,
    dropped_logs: AtomicU64,
    dropped_total: AtomicU64,
}

/// Items refused because the queue was full.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dropped {
    pub requests: u64,
    pub spans: u64,
    pub points: u64,
    pub logs: u64,
}

impl Dropped {
    /// Whether anything was dropped.
    pub fn any(&self) -> bool {
        self.requests > 0
    }
}

impl Stats {
    /// The drops since the last call (and resets them).
    pub fn take_dropped(&self) -> Dropped {
        Dropped {
            requests: self.dropped_requests.swap(0, Ordering::Relaxed),
            spans: self.dropped_spans.swap(0, Ordering::Relaxed),
            points: self.dropped_points.swap(0, Ordering::Relaxed),
            logs: self.dropped_logs.swap(0, Ordering::Relaxed),
        }
    }

    /// Requests refused since the receiver started.
    pub fn dropped_requests_total(&self) -> u64 {
        self.dropped_total.load(Ordering::Relaxed)
    }
}

/// What kind of items a batch holds (for the counters).
#[derive(Debug, Clone, Copy)]
enum Signal {
    Traces,
    Metrics,
    Logs,
    Error,
}

impl Signal {
    fn name(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Metrics => "metrics",
            Signal::Logs => "logs",
            Signal::Error => "error",
        }
    }
}

/// State shared by the listeners and the queue.
struct Shared {
    tx: mpsc::Sender<Batch>,
    queued: Arc<AtomicUsize>,
    capacity: usize,
    max_request_bytes: usize,
    stats: Arc<Stats>,
}

impl Shared {
    /// Queues a batch; false (and the items counted as dropped) when the queue is full.
    fn offer(&self, peer: Option<IpAddr>, events: Vec<Event>, signal: Signal) -> bool {
        let n = events.len();
        let counter = match signal {
            Signal::Traces => Some((&self.stats.spans, &self.stats.dropped_spans)),
            Signal::Metrics => Some((&self.stats.points, &self.stats.dropped_points)),
            Signal::Logs => Some((&self.stats.logs, &self.stats.dropped_logs)),
            Signal::Error => None,
        };
        if n == 0 {
            return true;
        }
        let before = self.queued.fetch_add(n, Ordering::AcqRel);
        // a batch larger than the whole queue still goes in when the queue is empty
        let fits = before == 0 || before + n <= self.capacity;
        if fits && self.tx.try_send(Batch { peer, events }).is_ok() {
            if let Some((ok, _)) = counter {
                ok.fetch_add(n as u64, Ordering::Relaxed);
            }
            return true;
        }
        self.queued.fetch_sub(n, Ordering::AcqRel);
        self.stats.dropped_requests.fetch_add(1, Ordering::Relaxed);
        self.stats.dropped_total.fetch_add(1, Ordering::Relaxed);
        if let Some((_, dropped)) = counter {
            dropped.fetch_add(n as u64, Ordering::Relaxed);
        }
        false
    }

    /// Records a refused request: an `otel`/`error` event (dropped too when the queue is full).
    fn error(&self, peer: Option<IpAddr>, message: String, data: serde_json::Value) {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        let ev = Event::new(now_ns(), SOURCE, "error")
            .message(message)
            .data(&data);
        self.offer(peer, vec![ev], Signal::Error);
    }
}

/// The receiving end of the receiver's bounded queue.
pub struct Queue {
    rx: mpsc::Receiver<Batch>,
    queued: Arc<AtomicUsize>,
}

impl Queue {
    /// The next batch; `None` once the receiver has stopped and the queue is empty.
    pub async fn recv(&mut self) -> Option<Batch> {
        let b = self.rx.recv().await?;
        self.queued.fetch_sub(b.events.len(), Ordering::AcqRel);
        Some(b)
    }

    /// Events waiting in the queue.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }
}

/// The sender's address, put into each request's extensions.
#[derive(Debug, Clone, Copy)]
struct Peer(SocketAddr);

fn peer_of<T>(req: &tonic::Request<T>) -> Option<IpAddr> {
    req.extensions().get::<Peer>().map(|p| p.0.ip())
}

/// The gRPC services: decode is tonic's, conversion is [`crate::convert`].
#[derive(Clone)]
struct Grpc {
    shared: Arc<Shared>,
}

impl Grpc {
    fn received(peer: Option<IpAddr>) -> Received {
        Received {
            peer: peer.map(|p| p.to_string()),
            received_ns: now_ns(),
            protocol: "grpc",
        }
    }
}

const QUEUE_FULL: &str = "otlp receiver queue full, retry later";

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let peer = peer_of(&req);
        self.shared.stats.requests.fetch_add(1, Ordering::Relaxed);
        let events = convert::spans(req.get_ref(), &Grpc::received(peer));
        if self.shared.offer(peer, events, Signal::Traces) {
            Ok(tonic::Response::new(ExportTraceServiceResponse {
                partial_success: None,
            }))
        } else {
            Err(tonic::Status::unavailable(QUEUE_FULL))
        }
    }
}

#[tonic::async_trait]
impl MetricsService for Grpc {
    async fn export(
        &self,
        req: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let peer = peer_of(&req);
        self.shared.stats.requests.fetch_add(1, Ordering::Relaxed);
        let events = convert::metrics(req.get_ref(), &Grpc::received(peer));
        if self.shared.offer(peer, events, Signal::Metrics) {
            Ok(tonic::Response::new(ExportMetricsServiceResponse {
                partial_success: None,
            }))
        } else {
            Err(tonic::Status::unavailable(QUEUE_FULL))
        }
    }
}

#[tonic::async_trait]
impl LogsService for Grpc {
    async fn export(
        &self,
        req: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let peer = peer_of(&req);
        self.shared.stats.requests.fetch_add(1, Ordering::Relaxed);
        let events = convert::logs(req.get_ref(), &Grpc::received(peer));
        if self.shared.offer(peer, events, Signal::Logs) {
            Ok(tonic::Response::new(ExportLogsServiceResponse {
                partial_success: None,
            }))
        } else {
            Err(tonic::Status::unavailable(QUEUE_FULL))
        }
    }
}

/// `google.rpc.Status`, the body of an OTLP/HTTP error reply (details are not sent).
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// Request bodies as the content type says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Protobuf,
    Json,
}

impl Format {
    fn content_type(self) -> &'static str {
        match self {
            Format::Protobuf => "application/x-protobuf",
            Format::Json => "application/json",
        }
    }
    fn protocol(self) -> &'static str {
        match self {
            Format::Protobuf => "http/protobuf",
            Format::Json => "http/json",
        }
    }
}

type Body = tonic::body::Body;

/// One HTTP error: status, `error_type` of the event, message.
struct HttpError {
    status: StatusCode,
    error_type: &'static str,
    message: String,
}

impl HttpError {
    fn new(status: StatusCode, error_type: &'static str, message: impl Into<String>) -> HttpError {
        HttpError {
            status,
            error_type,
            message: message.into(),
        }
    }
}

/// Serves one connection's requests.
struct Handler {
    shared: Arc<Shared>,
    traces: TraceServiceServer<Grpc>,
    metrics: MetricsServiceServer<Grpc>,
    logs: LogsServiceServer<Grpc>,
}

impl Handler {
    fn new(shared: Arc<Shared>) -> Handler {
        let g = Grpc {
            shared: shared.clone(),
        };
        let max = shared.max_request_bytes;
        Handler {
            traces: TraceServiceServer::new(g.clone())
                .max_decoding_message_size(max)
                .accept_compressed(CompressionEncoding::Gzip),
            metrics: MetricsServiceServer::new(g.clone())
                .max_decoding_message_size(max)
                .accept_compressed(CompressionEncoding::Gzip),
            logs: LogsServiceServer::new(g)
                .max_decoding_message_size(max)
                .accept_compressed(CompressionEncoding::Gzip),
            shared,
        }
    }

    async fn handle(&self, mut req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let ct = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if ct.starts_with("application/grpc") {
            req.extensions_mut().insert(Peer(peer));
            let path = req.uri().path().to_string();
            let resp = if path.starts_with("/opentelemetry.proto.collector.trace.v1.TraceService/")
            {
                self.traces.clone().call(req).await
            } else if path.starts_with("/opentelemetry.proto.collector.metrics.v1.MetricsService/")
            {
                self.metrics.clone().call(req).await
            } else if path.starts_with("/opentelemetry.proto.collector.logs.v1.LogsService/") {
                self.logs.clone().call(req).await
            } else {
                Ok(tonic::Status::unimplemented(format!("no service at {path}")).into_http())
            };
            let resp = match resp {
                Ok(r) => r,
                Err(never) => match never {},
            };
            self.note_grpc_error(&resp, peer, &path, &ct);
            return resp;
        }
        let path = req.uri().path().to_string();
        match self.http(req, peer, &ct).await {
            Ok(r) => r,
            Err((e, fmt)) => {
                self.shared.error(
                    Some(peer.ip()),
                    format!("otlp/http {path}: {}", e.message),
                    json!({
                        "protocol": fmt.map(Format::protocol).unwrap_or("http"),
                        "error_type": e.error_type,
                        "status": e.status.as_u16(),
                        "path": path,
                        "content_type": ct,
                        "peer": peer.ip().to_string(),
                        "error": e.message,
                    }),
                );
                error_reply(e.status, &e.message, fmt.unwrap_or(Format::Json))
            }
        }
    }

    /// An `otel`/`error` event for a gRPC reply with an error status (tonic answers decode
    /// errors and oversized messages itself, before the service sees the request). Refusals
    /// for a full queue are counted as drops instead.
    fn note_grpc_error(&self, resp: &Response<Body>, peer: SocketAddr, path: &str, ct: &str) {
        let Some(code) = resp
            .headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<i32>().ok())
        else {
            return;
        };
        let code = tonic::Code::from_i32(code);
        if matches!(code, tonic::Code::Ok | tonic::Code::Unavailable) {
            return;
        }
        let message = resp
            .headers()
            .get("grpc-message")
            .and_then(|v| v.to_str().ok())
            .map(percent_decode)
            .unwrap_or_default();
        let error_type = match code {
            tonic::Code::OutOfRange | tonic::Code::ResourceExhausted => "too_large",
            tonic::Code::Unimplemented => "not_found",
            tonic::Code::Internal if message.contains("decode") => "malformed",
            _ => "grpc_error",
        };
        self.shared.error(
            Some(peer.ip()),
            format!("otlp/grpc {path}: {message}"),
            json!({
                "protocol": "grpc",
                "error_type": error_type,
                "status": code as i32,
                "grpc_code": format!("{code:?}"),
                "path": path,
                "content_type": ct,
                "peer": peer.ip().to_string(),
                "error": message,
            }),
        );
    }

    /// OTLP/HTTP: the path names the signal, the content type the encoding.
    async fn http(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
        ct: &str,
    ) -> Result<Response<Body>, (HttpError, Option<Format>)> {
        let signal = match req.uri().path() {
            "/v1/traces" => Signal::Traces,
            "/v1/metrics" => Signal::Metrics,
            "/v1/logs" => Signal::Logs,
            p => {
                return Err((
                    HttpError::new(
                        StatusCode::NOT_FOUND,
                        "not_found",
                        format!(
                            "no otlp endpoint at {p} (use /v1/traces, /v1/metrics or /v1/logs)"
                        ),
                    ),
                    None,
                ))
            }
        };
        let fmt = if ct.starts_with("application/x-protobuf")
            || ct.starts_with("application/protobuf")
        {
            Format::Protobuf
        } else if ct.starts_with("application/json") {
            Format::Json
        } else {
            return Err((
                HttpError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    format!("content type {ct:?} is neither application/x-protobuf nor application/json"),
                ),
                None,
            ));
        };
        let fail = |e: HttpError| Err((e, Some(fmt)));
        if req.method() != Method::POST {
            return fail(HttpError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("method {} (otlp/http takes POST)", req.method()),
            ));
        }
        let max = self.shared.max_request_bytes;
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max as u64) {
            return fail(HttpError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!(
                    "body of {} bytes is larger than {max} bytes",
                    declared.unwrap_or(0)
                ),
            ));
        }
        let gzip = match req
            .headers()
            .get(header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_ascii_lowercase())
        {
            None => false,
            Some(e) if e.is_empty() || e == "identity" => false,
            Some(e) if e == "gzip" => true,
            Some(e) => {
                return fail(HttpError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_encoding",
                    format!("content encoding {e:?} (gzip and identity are accepted)"),
                ))
            }
        };
        let body = match Limited::new(req.into_body(), max).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                return if e.is::<http_body_util::LengthLimitError>() {
                    fail(HttpError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "too_large",
                        format!("body is larger than {max} bytes"),
                    ))
                } else {
                    fail(HttpError::new(
                        StatusCode::BAD_REQUEST,
                        "read_failed",
                        format!("reading the body: {e}"),
                    ))
                };
            }
        };
        let body = if gzip {
            let mut out = Vec::new();
            let mut dec = flate2::read::GzDecoder::new(&body[..]).take(max as u64 + 1);
            if let Err(e) = dec.read_to_end(&mut out) {
                return fail(HttpError::new(
                    StatusCode::BAD_REQUEST,
                    "malformed",
                    format!("gzip body: {e}"),
                ));
            }
            if out.len() > max {
                return fail(HttpError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    format!("decompressed body is larger than {max} bytes"),
                ));
            }
            Bytes::from(out)
        } else {
            body
        };
        let rx = Received {
            peer: Some(peer.ip().to_string()),
            received_ns: now_ns(),
            protocol: fmt.protocol(),
        };
        let malformed = |what: &str, e: &dyn std::fmt::Display| {
            HttpError::new(
                StatusCode::BAD_REQUEST,
                "malformed",
                format!("{what} {}: {e}", signal.name()),
            )
        };
        self.shared.stats.requests.fetch_add(1, Ordering::Relaxed);
        let (events, reply): (Vec<Event>, Bytes) = match (signal, fmt) {
            (Signal::Traces, Format::Protobuf) => match ExportTraceServiceRequest::decode(body) {
                Ok(r) => (
                    convert::spans(&r, &rx),
                    ExportTraceServiceResponse::default().encode_to_vec().into(),
                ),
                Err(e) => return fail(malformed("protobuf", &e)),
            },
            (Signal::Metrics, Format::Protobuf) => {
                match ExportMetricsServiceRequest::decode(body) {
                    Ok(r) => (
                        convert::metrics(&r, &rx),
                        ExportMetricsServiceResponse::default()
                            .encode_to_vec()
                            .into(),
                    ),
                    Err(e) => return fail(malformed("protobuf", &e)),
                }
            }
            (Signal::Logs, Format::Protobuf) => match ExportLogsServiceRequest::decode(body) {
                Ok(r) => (
                    convert::logs(&r, &rx),
                    ExportLogsServiceResponse::default().encode_to_vec().into(),
                ),
                Err(e) => return fail(malformed("protobuf", &e)),
            },
            (Signal::Traces, Format::Json) => {
                match serde_json::from_slice::<ExportTraceServiceRequest>(&body) {
                    Ok(r) => (convert::spans(&r, &rx), Bytes::from_static(b"{}")),
                    Err(e) => return fail(malformed("json", &e)),
                }
            }
            (Signal::Metrics, Format::Json) => {
                match serde_json::from_slice::<ExportMetricsServiceRequest>(&body) {
                    Ok(r) => (convert::metrics(&r, &rx), Bytes::from_static(b"{}")),
                    Err(e) => return fail(malformed("json", &e)),
                }
            }
            (Signal::Logs, Format::Json) => {
                match serde_json::from_slice::<ExportLogsServiceRequest>(&body) {
                    Ok(r) => (convert::logs(&r, &rx), Bytes::from_static(b"{}")),
                    Err(e) => return fail(malformed("json", &e)),
                }
            }
            (Signal::Error, _) => (Vec::new(), Bytes::new()),
        };
        if !self.shared.offer(Some(peer.ip()), events, signal) {
            let mut r = error_reply(StatusCode::SERVICE_UNAVAILABLE, QUEUE_FULL, fmt);
            r.headers_mut()
                .insert(header::RETRY_AFTER, http::HeaderValue::from_static("1"));
            return Ok(r);
        }
        Ok(reply_with(StatusCode::OK, fmt, reply))
    }
}

/// Decodes the percent-encoding of a `grpc-message` header.
fn percent_decode(s: &str) -> String {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn reply_with(status: StatusCode, fmt: Format, body: Bytes) -> Response<Body> {
    let mut r = Response::new(Body::new(Full::new(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(fmt.content_type()),
    );
    r
}

/// An OTLP/HTTP error reply: a `google.rpc.Status` in the request's encoding.
fn error_reply(status: StatusCode, message: &str, fmt: Format) -> Response<Body> {
    // gRPC codes: INVALID_ARGUMENT, UNAVAILABLE, RESOURCE_EXHAUSTED, NOT_FOUND, UNIMPLEMENTED
    let code = match status {
        StatusCode::SERVICE_UNAVAILABLE => 14,
        StatusCode::PAYLOAD_TOO_LARGE => 8,
        StatusCode::NOT_FOUND => 5,
        StatusCode::METHOD_NOT_ALLOWED | StatusCode::UNSUPPORTED_MEDIA_TYPE => 12,
        _ => 3,
    };
    let body: Bytes = match fmt {
        Format::Protobuf => RpcStatus {
            code,
            message: message.to_string(),
        }
        .encode_to_vec()
        .into(),
        Format::Json => json!({"code": code, "message": message}).to_string().into(),
    };
    reply_with(status, fmt, body)
}

/// A running receiver. Dropping it does not stop it: call [`Receiver::stop`].
pub struct Receiver {
    grpc: SocketAddr,
    http: SocketAddr,
    stats: Arc<Stats>,
    stop: CancellationToken,
    tracker: TaskTracker,
}

impl Receiver {
    /// Binds both ports and starts serving; the [`Queue`] yields what arrives.
    pub async fn start(cfg: &ReceiverConfig) -> Result<(Receiver, Queue), ReceiverError> {
        let bind = |port: u16| {
            let addr = SocketAddr::new(cfg.ip, port);
            async move {
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| ReceiverError::Bind { addr, source })
            }
        };
        let grpc_l = bind(cfg.grpc_port).await?;
        let http_l = bind(cfg.http_port).await?;
        let local = |l: &TcpListener, port: u16| {
            l.local_addr().map_err(|source| ReceiverError::Bind {
                addr: SocketAddr::new(cfg.ip, port),
                source,
            })
        };
        let grpc = local(&grpc_l, cfg.grpc_port)?;
        let http = local(&http_l, cfg.http_port)?;
        let capacity = cfg.queue_events.max(1);
        let (tx, rx) = mpsc::channel(capacity);
        let stats = Arc::new(Stats::default());
        let queued = Arc::new(AtomicUsize::new(0));
        let shared = Arc::new(Shared {
            tx,
            queued: queued.clone(),
            capacity,
            max_request_bytes: cfg.max_request_bytes.max(1),
            stats: stats.clone(),
        });
        let handler = Arc::new(Handler::new(shared.clone()));
        let stop = CancellationToken::new();
        let tracker = TaskTracker::new();
        for l in [grpc_l, http_l] {
            tracker.spawn(accept_loop(
                l,
                handler.clone(),
                stop.clone(),
                tracker.clone(),
            ));
        }
        drop(handler);
        Ok((
            Receiver {
                grpc,
                http,
                stats,
                stop,
                tracker,
            },
            Queue { rx, queued },
        ))
    }

    /// The gRPC listener's address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc
    }

    /// The HTTP listener's address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http
    }

    /// The counters.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Stops accepting, lets open connections finish their requests (at most `grace`), then
    /// ends; the [`Queue`] ends once it is drained.
    pub async fn stop(self, grace: Duration) {
        self.stop.cancel();
        self.tracker.close();
        let _ = tokio::time::timeout(grace, self.tracker.wait()).await;
    }
}

async fn accept_loop(
    l: TcpListener,
    handler: Arc<Handler>,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => return,
            a = l.accept() => match a {
                Ok(a) => a,
                // out of file descriptors and the like: wait a little instead of spinning
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let h = handler.clone();
        let stop = stop.clone();
        tracker.spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let h = h.clone();
                async move { Ok::<_, Infallible>(h.handle(req, peer).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(2), conn.as_mut()).await;
                }
            }
        });
    }
}
