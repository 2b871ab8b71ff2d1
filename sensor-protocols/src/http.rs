//! A small HTTP/1.1 client over a tokio `TcpStream`, enough for the probes in this crate: one
//! request per connection (`Connection: close`), `Content-Length`, chunked and read-to-close
//! bodies, a body size cap, and one deadline covering connect, send and receive.
//!
//! It only speaks plain `http://` (the sensors reach containers on their compose networks, no TLS).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
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
    let mut stream = TcpStream::connect(&addr).await.map_err(|e| {
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
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: chaos-trace-sensors/{}\r\nAccept: */*\r\nConnection: close\r\n",
        req.method,
        url.path,
        url.host_header(),
        env!("CARGO_PKG_VERSION")
    );
    for (k, v) in req.headers {
        head.push_str(k);
        head.push_str(": ");
        head.push_str(v);
        head.push_str("\r\n");
    }
    if let Some(b) = req.body {
        head.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    head.push_str("\r\n");
    let io = |e| HttpError::Io {
        addr: addr.clone(),
        source: e,
    };
    stream.write_all(head.as_bytes()).await.map_err(io)?;
    if let Some(b) = req.body {
        stream.write_all(b).await.map_err(io)?;
    }
    stream.flush().await.map_err(io)?;

    let mut parser = ResponseParser::new(req.method == "HEAD", req.max_body);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = stream.read(&mut buf).await.map_err(|e| HttpError::Io {
            addr: addr.clone(),
            source: e,
        })?;
        let done = if n == 0 {
            parser.finish()
        } else {
            parser.feed(&buf[..n])
        };
        match done {
            Ok(Some(resp)) => return Ok(resp),
            Ok(None) if n == 0 => {
                return Err(HttpError::Malformed {
                    addr,
                    reason: "connection closed before the response was complete".into(),
                })
            }
            Ok(None) => {}
            Err(ParseError::TooLarge) => {
                return Err(HttpError::TooLarge {
                    addr,
                    limit: req.max_body,
                })
            }
            Err(ParseError::Bad(reason)) => return Err(HttpError::Malformed { addr, reason }),
        }
    }
}

/// Why a response could not be parsed.
#[derive(Debug, PartialEq, Eq)]
pub enum ParseError {
    Bad(String),
    TooLarge,
}

#[derive(Debug)]
enum BodyMode {
    Length(usize),
    Chunked,
    ToClose,
}

type Headers = Vec<(String, String)>;

/// Incremental HTTP/1.1 response parser (push bytes with `feed`, then `finish` at EOF).
#[derive(Debug)]
pub struct ResponseParser {
    buf: Vec<u8>,
    head_only: bool,
    max_body: usize,
    head: Option<(u16, String, Headers, BodyMode)>,
    /// Offset in `buf` where unparsed body bytes start.
    pos: usize,
    body: Vec<u8>,
    /// Remaining bytes of the current chunk (chunked mode), `None` when a size line is due.
    chunk_left: Option<usize>,
}

impl ResponseParser {
    pub fn new(head_only: bool, max_body: usize) -> ResponseParser {
        ResponseParser {
            buf: Vec::new(),
            head_only,
            max_body,
            head: None,
            pos: 0,
            body: Vec::new(),
            chunk_left: None,
        }
    }

    /// Adds bytes; returns the response once it is complete.
    pub fn feed(&mut self, data: &[u8]) -> Result<Option<Response>, ParseError> {
        self.buf.extend_from_slice(data);
        if self.buf.len() > self.max_body.saturating_add(64 * 1024) && self.head.is_none() {
            return Err(ParseError::Bad("response head too large".into()));
        }
        loop {
            if self.head.is_some() {
                return self.advance_body(false);
            }
            let Some(end) = find(&self.buf, b"\r\n\r\n") else {
                return Ok(None);
            };
            let (status, reason, headers) = parse_head(&self.buf[..end])?;
            self.pos = end + 4;
            if (100..200).contains(&status) {
                // Interim response (100 Continue): drop it and parse the next head.
                self.buf.drain(..self.pos);
                self.pos = 0;
                continue;
            }
            let get = |n: &str| {
                headers
                    .iter()
                    .find(|(k, _)| k == n)
                    .map(|(_, v)| v.as_str())
            };
            let mode = if self.head_only || status == 204 || status == 304 {
                BodyMode::Length(0)
            } else if get("transfer-encoding")
                .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
            {
                BodyMode::Chunked
            } else if let Some(cl) = get("content-length") {
                let n: usize = cl
                    .trim()
                    .parse()
                    .map_err(|_| ParseError::Bad(format!("bad content-length {cl:?}")))?;
                if n > self.max_body {
                    return Err(ParseError::TooLarge);
                }
                BodyMode::Length(n)
            } else {
                BodyMode::ToClose
            };
            self.head = Some((status, reason, headers, mode));
        }
    }

    /// Signals end of stream.
    pub fn finish(&mut self) -> Result<Option<Response>, ParseError> {
        if self.head.is_none() {
            return if self.buf.is_empty() {
                Err(ParseError::Bad("empty response".into()))
            } else {
                Err(ParseError::Bad("truncated response head".into()))
            };
        }
        self.advance_body(true)
    }

    fn advance_body(&mut self, eof: bool) -> Result<Option<Response>, ParseError> {
        let Some((_, _, _, mode)) = &self.head else {
            return Ok(None);
        };
        let complete = match mode {
            BodyMode::Length(n) => {
                let n = *n;
                if self.buf.len() - self.pos >= n {
                    self.body = self.buf[self.pos..self.pos + n].to_vec();
                    true
                } else {
                    false
                }
            }
            BodyMode::ToClose => {
                if self.buf.len() - self.pos > self.max_body {
                    return Err(ParseError::TooLarge);
                }
                if eof {
                    self.body = self.buf[self.pos..].to_vec();
                }
                eof
            }
            BodyMode::Chunked => self.advance_chunks()?,
        };
        if !complete {
            return Ok(None);
        }
        let (status, reason, headers, _) = self
            .head
            .take()
            .ok_or_else(|| ParseError::Bad("no head".into()))?;
        Ok(Some(Response {
            status,
            reason,
            headers,
            body: std::mem::take(&mut self.body),
        }))
    }

    fn advance_chunks(&mut self) -> Result<bool, ParseError> {
        loop {
            match self.chunk_left {
                None => {
                    let rest = &self.buf[self.pos..];
                    let Some(eol) = find(rest, b"\r\n") else {
                        return Ok(false);
                    };
                    let line = std::str::from_utf8(&rest[..eol])
                        .map_err(|_| ParseError::Bad("chunk size not ascii".into()))?;
                    let size_txt = line.split(';').next().unwrap_or("").trim();
                    let size = usize::from_str_radix(size_txt, 16)
                        .map_err(|_| ParseError::Bad(format!("bad chunk size {size_txt:?}")))?;
                    if size == 0 {
                        // Last chunk: skip trailers up to the empty line.
                        let after = &rest[eol + 2..];
                        if after.starts_with(b"\r\n") {
                            return Ok(true);
                        }
                        return Ok(find(after, b"\r\n\r\n").is_some());
                    }
                    if self.body.len().saturating_add(size) > self.max_body {
                        return Err(ParseError::TooLarge);
                    }
                    self.pos += eol + 2;
                    self.chunk_left = Some(size);
                }
                Some(left) => {
                    // Chunk data followed by CRLF.
                    if self.buf.len() - self.pos < left + 2 {
                        return Ok(false);
                    }
                    self.body
                        .extend_from_slice(&self.buf[self.pos..self.pos + left]);
                    if &self.buf[self.pos + left..self.pos + left + 2] != b"\r\n" {
                        return Err(ParseError::Bad("chunk not followed by crlf".into()));
                    }
                    self.pos += left + 2;
                    self.chunk_left = None;
                }
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

type Head = (u16, String, Vec<(String, String)>);

fn parse_head(head: &[u8]) -> Result<Head, ParseError> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(ParseError::Bad(format!(
            "not an http/1.x status line: {:?}",
            truncate(status_line, 80)
        )));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .filter(|s| (100..1000).contains(s))
        .ok_or_else(|| {
            ParseError::Bad(format!("bad status line {:?}", truncate(status_line, 80)))
        })?;
    let reason = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    for line in lines {
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| ParseError::Bad(format!("bad header line {:?}", truncate(line, 80))))?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    Ok((status, reason, headers))
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

    fn parse_all(chunks: &[&[u8]]) -> Result<Option<Response>, ParseError> {
        let mut p = ResponseParser::new(false, 1 << 20);
        for c in chunks {
            if let Some(r) = p.feed(c)? {
                return Ok(Some(r));
            }
        }
        p.finish()
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

    #[test]
    fn content_length_split_anywhere() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{\"a\":1}";
        for cut in 0..raw.len() {
            let r = parse_all(&[&raw[..cut], &raw[cut..]]).unwrap().unwrap();
            assert_eq!(r.status, 200);
            assert_eq!(r.body, b"{\"a\":1}");
            assert_eq!(r.header("content-type"), Some("application/json"));
        }
    }

    #[test]
    fn chunked_with_extensions_and_trailers() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nWiki\r\n6\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\nX-Trailer: y\r\n\r\n";
        for cut in 0..raw.len() {
            let r = parse_all(&[&raw[..cut], &raw[cut..]]).unwrap().unwrap();
            assert_eq!(
                String::from_utf8(r.body).unwrap(),
                "Wikipedia in \r\n\r\nchunks."
            );
        }
    }

    #[test]
    fn read_to_close_and_interim() {
        let raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 404 Not Found\r\n\r\nnope";
        let r = parse_all(&[raw]).unwrap().unwrap();
        assert_eq!(
            (r.status, r.reason.as_str(), r.body.as_slice()),
            (404, "Not Found", &b"nope"[..])
        );
    }

    #[test]
    fn garbage_and_truncation_are_errors() {
        assert!(parse_all(&[b"SSH-2.0-OpenSSH\r\n\r\n"]).is_err());
        assert!(
            parse_all(&[b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"])
                .unwrap()
                .is_none()
        );
        assert!(parse_all(&[b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"]).is_err());
        assert!(
            parse_all(&[b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"]).is_err()
        );
        assert!(parse_all(&[b""]).is_err());
        let mut p = ResponseParser::new(false, 4);
        assert_eq!(
            p.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
                .unwrap_err(),
            ParseError::TooLarge
        );
    }
}
