//! The HTTP/1.1 client of the probes in this crate, on hyper's connection-level client: one
//! request per connection (`Connection: close`), a body size cap, and one deadline covering
//! connect, send and receive. Failures keep short machine-readable names ([`HttpError::kind`])
//! for event data.
//!
//! It only speaks plain `http://` (the sensors reach containers on their compose networks, no TLS).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, ACCEPT, CONNECTION, CONTENT_LENGTH, HOST, USER_AGENT};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Errors of one HTTP exchange. `kind()` gives a short machine-readable name for event data.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("bad url {url:?}: {reason}")]
    BadUrl { url: String, reason: &'static str },
    #[error("connection refused by {addr}")]
    Refused { addr: String },
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("i/o error talking to {addr}: {source}")]
    Io {
        addr: String,
        source: std::io::Error,
    },
    #[error("malformed http response from {addr}: {reason}")]
    Malformed { addr: String, reason: String },
    #[error("response body from {addr} larger than {limit} bytes")]
    TooLarge { addr: String, limit: usize },
}

impl HttpError {
    /// Short name of the failure: `bad_url`, `connection_refused`, `connect`, `timeout`, `io`,
    /// `malformed_http`, `too_large`.
    pub fn kind(&self) -> &'static str {
        match self {
            HttpError::BadUrl { .. } => "bad_url",
            HttpError::Refused { .. } => "connection_refused",
            HttpError::Connect { .. } => "connect",
            HttpError::Timeout(_) => "timeout",
            HttpError::Io { .. } => "io",
            HttpError::Malformed { .. } => "malformed_http",
            HttpError::TooLarge { .. } => "too_large",
        }
    }
}

/// A parsed `http://host[:port]/path?query` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl Url {
    /// Parses an `http://` URL. IPv6 literals go in brackets (`http://[::1]:8080/`).
    pub fn parse(url: &str) -> Result<Url, HttpError> {
        let bad = |reason| HttpError::BadUrl {
            url: url.to_string(),
            reason,
        };
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| bad("only http:// is supported"))?;
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_string()),
        };
        let path = match path.find('#') {
            Some(i) => path[..i].to_string(),
            None => path,
        };
        if authority.contains('@') {
            return Err(bad("user info in urls is not supported"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let end = v6.find(']').ok_or_else(|| bad("unclosed [ in host"))?;
            let host = &v6[..end];
            let after = &v6[end + 1..];
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| bad("bad port"))?,
                None if after.is_empty() => 80,
                None => return Err(bad("garbage after ]")),
            };
            (host.to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), p.parse().map_err(|_| bad("bad port"))?),
                None => (authority.to_string(), 80),
            }
        };
        if host.is_empty() {
            return Err(bad("empty host"));
        }
        Ok(Url { host, port, path })
    }

    fn host_header(&self) -> String {
        let h = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == 80 {
            h
        } else {
            format!("{h}:{}", self.port)
        }
    }

    fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// A complete response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    /// Header names lowercased, in order.
    pub headers: Vec<(String, String)>,
    /// The decoded body (chunked encoding removed).
    pub body: Vec<u8>,
}

impl Response {
    /// First header with this (lowercase) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One request: method, url, extra headers, optional body.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub method: &'a str,
    pub url: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: Option<&'a [u8]>,
    /// Deadline for the whole exchange.
    pub timeout: Duration,
    /// Largest accepted body, in bytes.
    pub max_body: usize,
}

impl<'a> Request<'a> {
    /// A GET with a 5 s timeout and a 16 MiB body cap.
    pub fn get(url: &'a str) -> Request<'a> {
        Request {
            method: "GET",
            url,
            headers: &[],
            body: None,
            timeout: Duration::from_secs(5),
            max_body: 16 << 20,
        }
    }
}

/// Sends one request and reads the whole response.
pub async fn send(req: &Request<'_>) -> Result<Response, HttpError> {
    let url = Url::parse(req.url)?;
    match tokio::time::timeout(req.timeout, exchange(&url, req)).await {
        Ok(r) => r,
        Err(_) => Err(HttpError::Timeout(req.timeout)),
    }
}

async fn exchange(url: &Url, req: &Request<'_>) -> Result<Response, HttpError> {
    let addr = url.addr();
    let stream = TcpStream::connect(&addr).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::ConnectionRefused {
            HttpError::Refused { addr: addr.clone() }
        } else {
            HttpError::Connect {
                addr: addr.clone(),
                source: e,
            }
        }
    })?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| from_hyper(&addr, e))?;
    // Drives the connection; it ends with the exchange (or when `send` is dropped on timeout).
    tokio::spawn(async move {
        let _ = conn.await;
    });

    let bad_request = |reason: String| HttpError::Malformed {
        addr: addr.clone(),
        reason,
    };
    let mut builder = hyper::Request::builder()
        .method(req.method)
        .uri(url.path.as_str())
        .header(HOST, url.host_header())
        .header(
            USER_AGENT,
            concat!("chaos-trace-sensors/", env!("CARGO_PKG_VERSION")),
        )
        .header(ACCEPT, "*/*")
        .header(CONNECTION, "close");
    for (k, v) in req.headers {
        builder = builder.header(*k, *v);
    }
    if let Some(b) = req.body {
        builder = builder.header(CONTENT_LENGTH, HeaderValue::from(b.len()));
    }
    let request = builder
        .body(Full::new(Bytes::copy_from_slice(
            req.body.unwrap_or_default(),
        )))
        .map_err(|_| HttpError::BadUrl {
            url: req.url.to_string(),
            reason: "characters not allowed in a request path or header",
        })?;

    let resp = sender
        .send_request(request)
        .await
        .map_err(|e| from_hyper(&addr, e))?;
    let (parts, mut body) = resp.into_parts();
    let too_large = || HttpError::TooLarge {
        addr: addr.clone(),
        limit: req.max_body,
    };
    if let Some(n) = parts.headers.get(CONTENT_LENGTH) {
        let n: u64 = n
            .to_str()
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .ok_or_else(|| bad_request(format!("bad content-length {n:?}")))?;
        if n > req.max_body as u64 {
            return Err(too_large());
        }
    }
    let mut data = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| from_hyper(&addr, e))?;
        if let Ok(chunk) = frame.into_data() {
            if data.len().saturating_add(chunk.len()) > req.max_body {
                return Err(too_large());
            }
            data.extend_from_slice(&chunk);
        }
    }
    let reason = parts
        .extensions
        .get::<hyper::ext::ReasonPhrase>()
        .map(|r| String::from_utf8_lossy(r.as_bytes()).into_owned())
        .or_else(|| parts.status.canonical_reason().map(str::to_string))
        .unwrap_or_default();
    let headers = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).trim().to_string(),
            )
        })
        .collect();
    Ok(Response {
        status: parts.status.as_u16(),
        reason,
        headers,
        body: data,
    })
}

/// The error of a failed exchange: an early close or an unparseable response is `Malformed`, a
/// failed read or write `Io`.
fn from_hyper(addr: &str, e: hyper::Error) -> HttpError {
    const INCOMPLETE: &str = "connection closed before the response was complete";
    let malformed = |reason: String| HttpError::Malformed {
        addr: addr.to_string(),
        reason,
    };
    if e.is_incomplete_message() {
        return malformed(INCOMPLETE.into());
    }
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::UnexpectedEof => malformed(INCOMPLETE.into()),
                // hyper's decoder reports a bad chunk size or body this way
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput => {
                    malformed(format!("{e}: {io}"))
                }
                kind => HttpError::Io {
                    addr: addr.to_string(),
                    source: std::io::Error::new(kind, io.to_string()),
                },
            };
        }
        src = s.source();
    }
    malformed(e.to_string())
}

/// The first `max` characters of `s` (on a char boundary).
pub fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A loopback server that reads one request, answers with `pieces` (written separately,
    /// flushed in between) and closes; the URL to reach it.
    async fn serve(pieces: Vec<Vec<u8>>) -> String {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = l.local_addr().expect("addr").port();
        tokio::spawn(async move {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let mut buf = vec![0u8; 8192];
            let mut got = Vec::new();
            while find(&got, b"\r\n\r\n").is_none() {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            for p in pieces {
                if s.write_all(&p).await.is_err() || s.flush().await.is_err() {
                    return;
                }
                tokio::task::yield_now().await;
            }
        });
        format!("http://127.0.0.1:{port}/x")
    }

    fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
        hay.windows(needle.len()).position(|w| w == needle)
    }

    async fn get(pieces: &[&[u8]], max_body: usize) -> Result<Response, HttpError> {
        let url = serve(pieces.iter().map(|p| p.to_vec()).collect()).await;
        let req = Request {
            max_body,
            ..Request::get(&url)
        };
        send(&req).await
    }

    #[test]
    fn url_parsing() {
        let u = Url::parse("http://172.18.0.3:8778/jolokia/").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("172.18.0.3", 8778, "/jolokia/")
        );
        let u = Url::parse("http://svc?x=1").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("svc", 80, "/?x=1")
        );
        let u = Url::parse("http://[::1]:9/m").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.addr().as_str()),
            ("::1", 9, "[::1]:9")
        );
        assert!(Url::parse("https://x/").is_err());
        assert!(Url::parse("http://x:notaport/").is_err());
        assert!(Url::parse("http:///").is_err());
    }

    #[tokio::test]
    async fn content_length_split_anywhere() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{\"a\":1}";
        for cut in 0..raw.len() {
            let r = get(&[&raw[..cut], &raw[cut..]], 1 << 20).await.unwrap();
            assert_eq!(r.status, 200);
            assert_eq!(r.body, b"{\"a\":1}");
            assert_eq!(r.header("content-type"), Some("application/json"));
        }
    }

    #[tokio::test]
    async fn chunked_with_extensions_and_trailers() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nWiki\r\n6\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\nX-Trailer: y\r\n\r\n";
        for cut in 0..raw.len() {
            let r = get(&[&raw[..cut], &raw[cut..]], 1 << 20).await.unwrap();
            assert_eq!(
                String::from_utf8(r.body).unwrap(),
                "Wikipedia in \r\n\r\nchunks."
            );
        }
    }

    #[tokio::test]
    async fn read_to_close_and_interim() {
        let raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 404 Not Found\r\n\r\nnope";
        let r = get(&[raw], 1 << 20).await.unwrap();
        assert_eq!(
            (r.status, r.reason.as_str(), r.body.as_slice()),
            (404, "Not Found", &b"nope"[..])
        );
    }

    #[tokio::test]
    async fn garbage_and_truncation_are_errors() {
        let kind = |r: Result<Response, HttpError>| r.err().map(|e| e.kind());
        assert_eq!(
            kind(get(&[b"SSH-2.0-OpenSSH\r\n\r\n"], 1 << 20).await),
            Some("malformed_http")
        );
        let e = get(
            &[b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"],
            1 << 20,
        )
        .await
        .expect_err("truncated body");
        assert_eq!(e.kind(), "malformed_http");
        assert!(
            e.to_string()
                .contains("connection closed before the response was complete"),
            "{e}"
        );
        assert_eq!(
            kind(get(&[b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"], 1 << 20).await),
            Some("malformed_http")
        );
        assert_eq!(
            kind(
                get(
                    &[b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"],
                    1 << 20
                )
                .await
            ),
            Some("malformed_http")
        );
        assert_eq!(kind(get(&[b""], 1 << 20).await), Some("malformed_http"));
        assert_eq!(
            kind(get(&[b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"], 4).await),
            Some("too_large")
        );
        // a chunked or read-to-close body is cut at the cap too
        assert_eq!(
            kind(get(&[b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"], 4).await),
            Some("too_large")
        );
        assert_eq!(
            kind(get(&[b"HTTP/1.0 200 OK\r\n\r\nhello"], 4).await),
            Some("too_large")
        );
    }

    #[tokio::test]
    async fn refused_and_timeout_keep_their_kinds() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        drop(l);
        let url = format!("http://127.0.0.1:{port}/");
        let e = send(&Request::get(&url)).await.expect_err("refused");
        assert_eq!(e.kind(), "connection_refused");
        // a server that accepts and never answers
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = l.local_addr().expect("addr").port();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = l.accept().await {
                held.push(s);
            }
        });
        let url = format!("http://127.0.0.1:{port}/");
        let req = Request {
            timeout: Duration::from_millis(200),
            ..Request::get(&url)
        };
        let e = send(&req).await.expect_err("timeout");
        assert_eq!(
            (e.kind(), e.to_string()),
            ("timeout", "timed out after 200ms".to_string())
        );
    }
}
