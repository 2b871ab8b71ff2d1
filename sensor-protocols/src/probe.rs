//! HTTP GET probes and exec-output parsing, and the `http` / `exec` events they produce.
//!
//! HTTP: status, latency, the body as JSON `data` when it is JSON, else a text excerpt; a failed
//! exchange (refused, timeout, malformed) is an `http`/`error` event. Exec: the Docker call lives
//! in the recorder; this module turns its output (stdout, stderr, exit code) into an `exec` event,
//! with stdout parsed as JSON when it is JSON.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use trace::Event;

use crate::http::{self, truncate, HttpError, Request};

/// Longest text excerpt kept in event data, in characters.
pub const EXCERPT_CHARS: usize = 2048;
/// Longest stdout/stderr kept in exec event data, in characters.
pub const EXEC_OUTPUT_CHARS: usize = 64 * 1024;

/// Result of one HTTP GET probe.
#[derive(Debug)]
pub struct HttpProbe {
    pub url: String,
    pub latency: Duration,
    pub result: Result<http::Response, HttpError>,
}

/// GETs `url` once with the given timeout.
pub async fn http_get(url: &str, timeout: Duration) -> HttpProbe {
    let start = Instant::now();
    let mut req = Request::get(url);
    req.timeout = timeout;
    let result = http::send(&req).await;
    HttpProbe {
        url: url.to_string(),
        latency: start.elapsed(),
        result,
    }
}

/// Body as JSON if it parses as JSON, else `None`.
pub fn body_json(body: &[u8]) -> Option<Value> {
    let t = body.iter().position(|b| !b.is_ascii_whitespace())?;
    if !matches!(
        body[t],
        b'{' | b'[' | b'"' | b't' | b'f' | b'n' | b'-' | b'0'..=b'9'
    ) {
        return None;
    }
    serde_json::from_slice(body).ok()
}

impl HttpProbe {
    /// The event: `http`/`response` with data `{"url", "status", "latency_ms", "content_type",
    /// "body" (JSON or null), "excerpt" (text when not JSON), "bytes"}`, or `http`/`error` with
    /// `{"url", "error_type", "latency_ms"}`.
    pub fn to_event(&self, ts_ns: i64, service: &str, container: Option<&str>) -> Event {
        let latency_ms = self.latency.as_secs_f64() * 1000.0;
        let mut ev = match &self.result {
            Ok(r) => {
                let json_body = body_json(&r.body);
                let excerpt = if json_body.is_some() {
                    Value::Null
                } else {
                    Value::from(
                        truncate(&String::from_utf8_lossy(&r.body), EXCERPT_CHARS).to_string(),
                    )
                };
                Event::new(ts_ns, "http", "response")
                    .service(service)
                    .message(format!(
                        "GET {} -> {} in {:.1} ms",
                        self.url, r.status, latency_ms
                    ))
                    .data(&json!({
                        "url": self.url,
                        "status": r.status,
                        "latency_ms": latency_ms,
                        "content_type": r.header("content-type"),
                        "bytes": r.body.len(),
                        "body": json_body,
                        "excerpt": excerpt,
                    }))
            }
            Err(e) => Event::new(ts_ns, "http", "error")
                .service(service)
                .message(format!("GET {} failed: {e}", self.url))
                .data(&json!({"url": self.url, "error_type": e.kind(), "latency_ms": latency_ms})),
        };
        ev.container = container.map(str::to_string);
        ev
    }
}

/// What an exec in a container produced (filled by the recorder's exec sensor).
#[derive(Debug, Clone, Default)]
pub struct ExecOutput {
    pub command: Vec<String>,
    /// `None` when the exit code could not be read (exec still running at the timeout, …).
    pub exit_code: Option<i64>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub duration: Duration,
    /// Set when the exec could not be run at all (container gone, Docker error, timeout).
    pub error: Option<String>,
}

impl ExecOutput {
    /// The event: `exec`/`result` with data `{"command", "exit_code", "stdout", "json", "stderr",
    /// "duration_ms", "truncated"}` (`json` = stdout parsed, when it is JSON), or `exec`/`error`
    /// with `{"command", "error"}` when the exec could not run.
    pub fn to_event(&self, ts_ns: i64, service: &str, container: Option<&str>) -> Event {
        let cmd = self.command.join(" ");
        let mut ev = if let Some(err) = &self.error {
            Event::new(ts_ns, "exec", "error")
                .service(service)
                .message(format!("exec {cmd:?} failed: {err}"))
                .data(&json!({"command": self.command, "error": err, "exit_code": self.exit_code}))
        } else {
            let stdout = String::from_utf8_lossy(&self.stdout);
            let stderr = String::from_utf8_lossy(&self.stderr);
            let out_kept = truncate(&stdout, EXEC_OUTPUT_CHARS);
            let err_kept = truncate(&stderr, EXEC_OUTPUT_CHARS);
            Event::new(ts_ns, "exec", "result")
                .service(service)
                .message(format!(
                    "exec {cmd:?} exited {}",
                    self.exit_code.map_or("?".to_string(), |c| c.to_string())
                ))
                .data(&json!({
                    "command": self.command,
                    "exit_code": self.exit_code,
                    "stdout": out_kept,
                    "json": body_json(&self.stdout),
                    "stderr": err_kept,
                    "duration_ms": self.duration.as_secs_f64() * 1000.0,
                    "truncated": out_kept.len() < stdout.len() || err_kept.len() < stderr.len(),
                }))
        };
        ev.container = container.map(str::to_string);
        ev
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(ev: &Event) -> Value {
        serde_json::from_str(ev.data.as_deref().unwrap()).unwrap()
    }

    #[test]
    fn exec_json_and_text() {
        let out = ExecOutput {
            command: vec![
                "etcdctl".into(),
                "endpoint".into(),
                "status".into(),
                "-w".into(),
                "json".into(),
            ],
            exit_code: Some(0),
            stdout: br#"[{"Endpoint":"127.0.0.1:2379","Status":{"leader":42}}]"#.to_vec(),
            ..Default::default()
        };
        let d = data(&out.to_event(1, "etcd", Some("etcd-1")));
        assert_eq!(d["json"][0]["Status"]["leader"], 42);
        assert_eq!(d["exit_code"], 0);
        let out = ExecOutput {
            command: vec!["redis-cli".into(), "info".into(), "replication".into()],
            exit_code: Some(1),
            stdout: b"# Replication\r\nrole:master\r\n".to_vec(),
            ..Default::default()
        };
        let ev = out.to_event(1, "redis", None);
        let d = data(&ev);
        assert_eq!(d["json"], Value::Null);
        assert_eq!(d["stdout"], "# Replication\r\nrole:master\r\n");
        assert_eq!(d["exit_code"], 1);
        assert_eq!(ev.kind, "result");
        let failed = ExecOutput {
            error: Some("no such container".into()),
            ..Default::default()
        };
        assert_eq!(failed.to_event(1, "x", None).kind, "error");
    }

    #[test]
    fn json_detection() {
        assert_eq!(body_json(b"  {\"a\": 1}\n"), Some(json!({"a":1})));
        assert_eq!(body_json(b"42"), Some(json!(42)));
        assert_eq!(body_json(b"OK"), None);
        assert_eq!(body_json(b""), None);
        assert_eq!(body_json(b"{broken"), None);
    }
}
