//! The `http` fault: an HTTP/1.1 proxy served inside the target container's network namespace
//! (see [`super::netns`]) that a `nat` `REDIRECT` rule sends the service's inbound connections
//! (PREROUTING, to its port) or its outbound calls to a peer (OUTPUT, to the peer's addresses and
//! port) to. Requests matching the fault's method, path (prefix or regex) and header are answered
//! with a status and body, delayed, or reset, on a seeded share of them; everything else is
//! forwarded unchanged to the connection's original destination by hyper (keep-alive,
//! pipelining and chunked bodies are hyper's). Connections that do not start like HTTP/1 (TLS,
//! other protocols) are relayed byte for byte. Every matched request is a `proxy`/`http` event,
//! apart from the fault's own `fault` events.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};

use super::netns::{connect_marked, original_dst, set_reset_on_close, NetnsRuntime};
use super::resolve::SeededRng;
use super::FaultError;
use crate::sink::{now_ns, EventSink};

/// What a matching request gets.
#[derive(Debug, Clone, PartialEq)]
pub enum HttpEffect {
    /// Answer with this status and body (after the delay, if any); the service never sees it.
    Respond { status: u16, body: String },
    /// Reset the client's connection (after the delay, if any).
    Reset,
    /// Only the delay, then forward.
    Forward,
}

/// An `http` fault's arguments, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpFault {
    /// The service's port (inbound) or the peer's port (outbound).
    pub port: u16,
    /// Outbound: the peer service whose calls are intercepted; inbound when `None`.
    pub to: Option<String>,
    pub method: Option<String>,
    pub path: Option<String>,
    pub path_regex: Option<String>,
    /// Header name (lowercase) and, optionally, the value it must have.
    pub header: Option<(String, Option<String>)>,
    pub effect: HttpEffect,
    pub delay_ms: f64,
    pub jitter_ms: f64,
    /// Share of matching requests acted on (1.0: all).
    pub probability: f64,
}

impl HttpFault {
    /// The parameters recorded in the fault's events.
    pub fn params(&self) -> Value {
        let (action, status, body) = match &self.effect {
            HttpEffect::Respond { status, body } => ("respond", Some(*status), Some(body.clone())),
            HttpEffect::Reset => ("reset", None, None),
            HttpEffect::Forward => ("delay", None, None),
        };
        json!({
            "port": self.port,
            "direction": if self.to.is_some() { "outbound" } else { "inbound" },
            "to": self.to,
            "method": self.method,
            "path": self.path,
            "path_regex": self.path_regex,
            "header": self.header.as_ref().map(|(n, v)| match v {
                Some(v) => format!("{n}: {v}"),
                None => n.clone(),
            }),
            "action": action,
            "status": status,
            "body": body,
            "delay_ms": self.delay_ms,
            "jitter_ms": self.jitter_ms,
            "probability": self.probability,
        })
    }
}

/// A compiled request matcher.
#[derive(Debug, Clone)]
pub struct Matcher {
    method: Option<String>,
    path: Option<String>,
    regex: Option<regex::Regex>,
    header: Option<(String, Option<String>)>,
}

impl Matcher {
    pub fn new(f: &HttpFault) -> Result<Matcher, super::InvalidFault> {
        let regex = f
            .path_regex
            .as_deref()
            .map(regex::Regex::new)
            .transpose()
            .map_err(|e| format!("argument `path_regex`: {e}"))?;
        Ok(Matcher {
            method: f.method.as_ref().map(|m| m.to_ascii_uppercase()),
            path: f.path.clone(),
            regex,
            header: f.header.clone(),
        })
    }

    /// True when a request with this method, path (with query) and headers matches.
    pub fn matches(&self, method: &str, path: &str, headers: &hyper::HeaderMap) -> bool {
        if let Some(m) = &self.method {
            if !m.eq_ignore_ascii_case(method) {
                return false;
            }
        }
        if let Some(p) = &self.path {
            if !path.starts_with(p.as_str()) {
                return false;
            }
        }
        if let Some(r) = &self.regex {
            if !r.is_match(path) {
                return false;
            }
        }
        if let Some((name, value)) = &self.header {
            let found = headers.get_all(name.as_str()).iter().any(|v| match value {
                None => true,
                Some(want) => v.to_str().map(|s| s.trim() == want).unwrap_or(false),
            });
            if !found {
                return false;
            }
        }
        true
    }
}

/// What the proxy of one container shares between its connections.
struct Shared {
    fault_id: String,
    fault: HttpFault,
    matcher: Matcher,
    rng: Mutex<SeededRng>,
    sink: EventSink,
    service: String,
    container: String,
}

impl Shared {
    /// Draws whether a matching request is acted on and the delay it gets.
    fn draw(&self) -> (bool, f64) {
        let Ok(mut rng) = self.rng.lock() else {
            return (true, self.fault.delay_ms);
        };
        let u = |r: &mut SeededRng| (r.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let hit = self.fault.probability >= 1.0 || u(&mut rng) < self.fault.probability;
        let jitter = if self.fault.jitter_ms > 0.0 {
            (u(&mut rng) * 2.0 - 1.0) * self.fault.jitter_ms
        } else {
            0.0
        };
        (hit, (self.fault.delay_ms + jitter).max(0.0))
    }

    #[allow(clippy::too_many_arguments)]
    fn event(
        &self,
        ts: i64,
        line: &str,
        method: &str,
        path: &str,
        action: &str,
        status: Option<u16>,
        delay_ms: f64,
        peer: SocketAddr,
        dst: SocketAddr,
    ) {
        let message = match status {
            Some(s) => format!("{} {line} → {action} {s}", self.fault_id),
            None => format!("{} {line} → {action}", self.fault_id),
        };
        let data = json!({
            "fault_id": self.fault_id,
            "request": line,
            "method": method,
            "path": path,
            "action": action,
            "status": status,
            "delay_ms": delay_ms,
            "client": peer.to_string(),
            "destination": dst.to_string(),
            "direction": if self.fault.to.is_some() { "outbound" } else { "inbound" },
        });
        self.sink.emit(
            trace::kinds::proxy::HTTP
                .at(ts)
                .service(self.service.clone())
                .container(self.container.clone())
                .message(message)
                .data(&data),
        );
    }
}

/// One running proxy (one per target container).
#[derive(Debug)]
pub struct HttpProxy {
    pub container: String,
    pub port: u16,
    runtime: NetnsRuntime,
}

impl HttpProxy {
    /// Starts the proxy in the namespace of `pid`, listening on an ephemeral port of every
    /// address there; returns once it accepts.
    #[allow(clippy::too_many_arguments)]
    pub async fn start(
        pid: i64,
        service: &str,
        container: &str,
        fault_id: &str,
        fault: &HttpFault,
        seed: u64,
        sink: EventSink,
    ) -> Result<HttpProxy, FaultError> {
        let matcher = Matcher::new(fault).map_err(FaultError::Invalid)?;
        let runtime = NetnsRuntime::start(pid, &format!("http-{fault_id}"))?;
        let shared = Arc::new(Shared {
            fault_id: fault_id.to_string(),
            fault: fault.clone(),
            matcher,
            rng: Mutex::new(SeededRng::new(seed)),
            sink,
            service: service.to_string(),
            container: container.to_string(),
        });
        let listener = runtime
            .run(|| async { TcpListener::bind(("0.0.0.0", 0)).await })
            .await?
            .map_err(|e| FaultError::Failed(format!("proxy listener in {container}: {e}")))?;
        let port = listener
            .local_addr()
            .map_err(|e| FaultError::Failed(format!("proxy listener in {container}: {e}")))?
            .port();
        runtime.spawn(accept_loop(listener, shared));
        Ok(HttpProxy {
            container: container.to_string(),
            port,
            runtime,
        })
    }

    /// Stops the proxy: every connection through it is closed.
    pub fn stop(&mut self) {
        self.runtime.stop();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        tokio::spawn(handle(stream, peer, shared.clone()));
    }
}

/// True when the first bytes are an HTTP/1 request line's method followed by a space.
pub fn looks_like_http(head: &[u8]) -> bool {
    const METHODS: [&[u8]; 9] = [
        b"GET ",
        b"POST ",
        b"PUT ",
        b"DELETE ",
        b"HEAD ",
        b"OPTIONS ",
        b"PATCH ",
        b"CONNECT ",
        b"TRACE ",
    ];
    METHODS
        .iter()
        .any(|m| head.len() >= m.len() && head.starts_with(m))
        || METHODS
            .iter()
            .any(|m| head.len() < m.len() && !head.is_empty() && m.starts_with(head))
}

async fn handle(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let fd = stream.as_raw_fd();
    let Ok(dst) = original_dst(fd) else {
        return; // not redirected (someone connected to the proxy port directly)
    };
    // Sniff: a server-speaks-first protocol sends nothing, so wait only briefly.
    let mut head = [0u8; 8];
    let n = match tokio::time::timeout(Duration::from_millis(500), stream.peek(&mut head)).await {
        Ok(Ok(n)) => n,
        Ok(Err(_)) => return,
        Err(_) => 0,
    };
    let Ok(upstream) = connect_marked(dst).await else {
        set_reset_on_close(fd);
        return;
    };
    if n == 0 || !looks_like_http(&head[..n]) {
        relay(stream, upstream).await;
        return;
    }
    let Ok((sender, conn)) = hyper::client::conn::http1::Builder::new()
        .preserve_header_case(true)
        .handshake::<_, Incoming>(TokioIo::new(upstream))
        .await
    else {
        return;
    };
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let sender = Arc::new(tokio::sync::Mutex::new(Some(sender)));
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let shared = shared.clone();
        let sender = sender.clone();
        async move { serve(req, shared, sender, peer, dst, fd).await }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .preserve_header_case(true)
        .pipeline_flush(true)
        .serve_connection(TokioIo::new(stream), svc)
        .await;
}

type Body = BoxBody<Bytes, hyper::Error>;
type Sender = Arc<tokio::sync::Mutex<Option<hyper::client::conn::http1::SendRequest<Incoming>>>>;

/// The error that makes hyper drop the client's connection (after `SO_LINGER` 0: a reset).
#[derive(Debug)]
struct ResetConnection;

impl std::fmt::Display for ResetConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection reset by the http fault")
    }
}

impl std::error::Error for ResetConnection {}

fn full(status: u16, body: String) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::SERVICE_UNAVAILABLE);
    r
}

async fn serve(
    req: Request<Incoming>,
    shared: Arc<Shared>,
    sender: Sender,
    peer: SocketAddr,
    dst: SocketAddr,
    fd: std::os::fd::RawFd,
) -> Result<Response<Body>, ResetConnection> {
    let ts = now_ns();
    let method = req.method().as_str().to_string();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| req.uri().to_string());
    let line = format!("{method} {path} {:?}", req.version());
    if shared.matcher.matches(&method, &path, req.headers()) {
        let (hit, delay_ms) = shared.draw();
        if !hit {
            shared.event(ts, &line, &method, &path, "pass", None, 0.0, peer, dst);
        } else {
            let (action, status) = match &shared.fault.effect {
                HttpEffect::Respond { status, .. } => ("respond", Some(*status)),
                HttpEffect::Reset => ("reset", None),
                HttpEffect::Forward => ("delay", None),
            };
            shared.event(
                ts, &line, &method, &path, action, status, delay_ms, peer, dst,
            );
            if delay_ms > 0.0 {
                tokio::time::sleep(Duration::from_secs_f64(delay_ms / 1000.0)).await;
            }
            match &shared.fault.effect {
                HttpEffect::Respond { status, body } => {
                    // the request body is not needed; hyper drains or closes as required
                    return Ok(full(*status, body.clone()));
                }
                HttpEffect::Reset => {
                    set_reset_on_close(fd);
                    return Err(ResetConnection);
                }
                HttpEffect::Forward => {}
            }
        }
    }
    forward(req, sender, dst).await
}

/// Sends the request upstream on the connection's own upstream connection (reconnecting when the
/// service closed it) and returns the service's response as it streams.
async fn forward(
    req: Request<Incoming>,
    sender: Sender,
    dst: SocketAddr,
) -> Result<Response<Body>, ResetConnection> {
    let mut guard = sender.lock().await;
    let usable = match guard.as_mut() {
        Some(s) => s.ready().await.is_ok(),
        None => false,
    };
    if !usable {
        let Ok(up) = connect_marked(dst).await else {
            return Ok(full(502, "upstream connection failed\n".into()));
        };
        let Ok((s, conn)) = hyper::client::conn::http1::Builder::new()
            .preserve_header_case(true)
            .handshake::<_, Incoming>(TokioIo::new(up))
            .await
        else {
            return Ok(full(502, "upstream handshake failed\n".into()));
        };
        tokio::spawn(async move {
            let _ = conn.await;
        });
        *guard = Some(s);
    }
    let Some(s) = guard.as_mut() else {
        return Ok(full(502, "no upstream connection\n".into()));
    };
    match s.send_request(req).await {
        Ok(resp) => Ok(resp.map(|b| b.boxed())),
        Err(_) => {
            *guard = None;
            Err(ResetConnection)
        }
    }
}

/// Copies bytes both ways until both sides are done (non-HTTP traffic on the port).
async fn relay(mut a: TcpStream, mut b: TcpStream) {
    let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault() -> HttpFault {
        HttpFault {
            port: 80,
            to: None,
            method: None,
            path: None,
            path_regex: None,
            header: None,
            effect: HttpEffect::Reset,
            delay_ms: 0.0,
            jitter_ms: 0.0,
            probability: 1.0,
        }
    }

    #[test]
    fn sniffs_http_request_lines_only() {
        assert!(looks_like_http(b"GET / HTTP/1.1"));
        assert!(looks_like_http(b"POST /pay"));
        assert!(looks_like_http(b"DEL"));
        assert!(!looks_like_http(b"\x16\x03\x01\x02\x00"));
        assert!(!looks_like_http(b"SSH-2.0-OpenSSH"));
        assert!(!looks_like_http(b"get / HTTP/1.1"));
        assert!(!looks_like_http(b""));
    }

    #[test]
    fn matcher_combines_method_path_regex_and_header() {
        let mut h = hyper::HeaderMap::new();
        h.insert("x-user", "alice".parse().unwrap());
        let m = Matcher::new(&HttpFault {
            method: Some("post".into()),
            path: Some("/pay".into()),
            ..fault()
        })
        .unwrap();
        assert!(m.matches("POST", "/pay/42?x=1", &h));
        assert!(!m.matches("GET", "/pay", &h));
        assert!(!m.matches("POST", "/health", &h));
        let m = Matcher::new(&HttpFault {
            path_regex: Some("^/orders/[0-9]+$".into()),
            header: Some(("x-user".into(), Some("alice".into()))),
            ..fault()
        })
        .unwrap();
        assert!(m.matches("GET", "/orders/7", &h));
        assert!(!m.matches("GET", "/orders/x", &h));
        assert!(!m.matches("GET", "/orders/7", &hyper::HeaderMap::new()));
        let m = Matcher::new(&HttpFault {
            header: Some(("x-user".into(), None)),
            ..fault()
        })
        .unwrap();
        assert!(m.matches("GET", "/", &h));
        assert!(Matcher::new(&HttpFault {
            path_regex: Some("(".into()),
            ..fault()
        })
        .is_err());
    }

    #[test]
    fn seeded_share_is_repeatable_and_close_to_the_probability() {
        let (sink, _rx) = EventSink::channel();
        let mk = || Shared {
            fault_id: "f1".into(),
            fault: HttpFault {
                probability: 0.5,
                delay_ms: 100.0,
                jitter_ms: 20.0,
                ..fault()
            },
            matcher: Matcher::new(&fault()).unwrap(),
            rng: Mutex::new(SeededRng::new(7)),
            sink: sink.clone(),
            service: "s".into(),
            container: "c".into(),
        };
        let (a, b) = (mk(), mk());
        let da: Vec<(bool, f64)> = (0..1000).map(|_| a.draw()).collect();
        let db: Vec<(bool, f64)> = (0..1000).map(|_| b.draw()).collect();
        assert_eq!(da, db);
        let hits = da.iter().filter(|(h, _)| *h).count();
        assert!((400..600).contains(&hits), "{hits}");
        assert!(da.iter().all(|(_, d)| (80.0..=120.0).contains(d)));
        assert!(da.iter().any(|(_, d)| *d < 95.0) && da.iter().any(|(_, d)| *d > 105.0));
    }
}
