//! `web` and `client` modes: a small HTTP/1.1 service (every path answers 200 with a line of
//! text, keep-alive honoured) and an HTTP client calling it in a loop with retries and a circuit
//! breaker, printing one line per attempt, per call and per breaker transition. Together they are
//! the targets of the recorder's `http` and `dns` faults (examples/http-retries).

use crate::util::{self, Config};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// Serves `PORT` (8080): `GET /anything` → `200 ok <id> <path>`; `/status/N` answers status N.
pub fn run_web(c: &Config) -> Result<i32, String> {
    let port = c.u64("PORT", 8080)? as u16;
    let id = c.string("ID", &c.string("HOSTNAME", "web"));
    let log = c.bool("LOG", true)?;
    let listener =
        TcpListener::bind(("0.0.0.0", port)).map_err(|e| format!("bind port {port}: {e}"))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("listener: {e}"))?;
    util::out(&format!("web {id} listening port={port}"));
    while !util::stopping() {
        match listener.accept() {
            Ok((s, _)) => {
                let id = id.clone();
                std::thread::spawn(move || serve(s, &id, log));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => wait_readable(&listener),
            Err(e) => util::err(&format!("web {id} accept error={e}")),
        }
    }
    util::out(&format!("exit {id} reason=signal"));
    Ok(0)
}

/// Waits until the listener has a connection to accept, or 200 ms (to notice a stop signal).
fn wait_readable(l: &TcpListener) {
    use std::os::fd::AsRawFd;
    let mut p = libc::pollfd {
        fd: l.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll on one valid pollfd for at most 200 ms.
    unsafe {
        libc::poll(&mut p, 1, 200);
    }
}

/// One connection: requests are answered in order until the peer closes or asks to close.
fn serve(s: TcpStream, id: &str, log: bool) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(mut w) = s.try_clone() else { return };
    let mut r = BufReader::new(s);
    loop {
        let mut line = String::new();
        match r.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut parts = line.split_whitespace();
        let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
        let (method, path) = (method.to_string(), path.to_string());
        let mut len = 0usize;
        let mut chunked = false;
        let mut close = false;
        loop {
            let mut h = String::new();
            match r.read_line(&mut h) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let lower = h.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
            if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
                chunked = true;
            }
            if lower.starts_with("connection:") && lower.contains("close") {
                close = true;
            }
        }
        if chunked {
            if skip_chunked(&mut r).is_err() {
                return;
            }
        } else {
            let mut body = vec![0u8; len.min(1 << 20)];
            if r.read_exact(&mut body).is_err() {
                return;
            }
        }
        let status: u16 = path
            .strip_prefix("/status/")
            .and_then(|s| s.parse().ok())
            .filter(|s| (200..600).contains(s))
            .unwrap_or(200);
        let text = format!("ok {id} {path}\n");
        if log {
            util::out(&format!("web {id} {method} {path} status={status}"));
        }
        let resp = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n{}\r\n{text}",
            text.len(),
            if close { "connection: close\r\n" } else { "" }
        );
        if w.write_all(resp.as_bytes()).is_err() || close {
            return;
        }
    }
}

/// Reads a chunked request body (chunks, then the trailer section) and discards it.
fn skip_chunked(r: &mut BufReader<TcpStream>) -> std::io::Result<()> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    loop {
        let mut size = String::new();
        if r.read_line(&mut size)? == 0 {
            return Err(bad("closed in a chunked body"));
        }
        let hex = size.trim().split(';').next().unwrap_or("").trim();
        let n = usize::from_str_radix(hex, 16).map_err(|_| bad("bad chunk size"))?;
        if n == 0 {
            loop {
                let mut t = String::new();
                if r.read_line(&mut t)? == 0 || t.trim().is_empty() {
                    return Ok(());
                }
            }
        }
        let mut chunk = vec![0u8; n + 2];
        r.read_exact(&mut chunk)?;
    }
}

/// The outcome of one HTTP attempt.
enum Outcome {
    Status(u16),
    Error(String),
}

/// One GET on a fresh connection (`connection: close`), with a timeout.
fn get(host: &str, port: u16, path: &str, timeout: Duration) -> Outcome {
    let addr = match util::resolve(&format!("{host}:{port}"), port) {
        Ok(a) => a,
        Err(e) => return Outcome::Error(format!("resolve: {e}")),
    };
    let mut s = match TcpStream::connect_timeout(&addr, timeout) {
        Ok(s) => s,
        Err(e) => return Outcome::Error(format!("connect: {e}")),
    };
    let _ = s.set_read_timeout(Some(timeout));
    let _ = s.set_write_timeout(Some(timeout));
    let req = format!("GET {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n");
    if let Err(e) = s.write_all(req.as_bytes()) {
        return Outcome::Error(format!("write: {e}"));
    }
    let mut first = String::new();
    match BufReader::new(s).read_line(&mut first) {
        Ok(0) => Outcome::Error("closed".into()),
        Ok(_) => match first.split_whitespace().nth(1).and_then(|x| x.parse().ok()) {
            Some(code) => Outcome::Status(code),
            None => Outcome::Error(format!("bad status line {:?}", first.trim_end())),
        },
        Err(e) => Outcome::Error(format!("read: {e}")),
    }
}

/// Calls `URL` (`http://host:port/path`) every `INTERVAL`, `RETRIES` retries after `BACKOFF`;
/// `BREAKER_FAILS` failed calls in a row open the breaker for `BREAKER_OPEN` (calls are refused
/// without a request), then one trial call half-opens it.
pub fn run_client(c: &Config) -> Result<i32, String> {
    let id = c.string("ID", &c.string("HOSTNAME", "client"));
    let url = c.string("URL", "http://web:8080/pay");
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("URL must start with http://, got {url}"))?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = util::split_host_port(hostport, 80)?;
    let interval = c.duration("INTERVAL", Duration::from_millis(200))?;
    let retries = c.u64("RETRIES", 2)?;
    let backoff = c.duration("BACKOFF", Duration::from_millis(50))?;
    let timeout = c.duration("TIMEOUT", Duration::from_secs(2))?;
    let count = c.u64("COUNT", 0)?;
    let fails_to_open = c.u64("BREAKER_FAILS", 3)?;
    let open_for = c.duration("BREAKER_OPEN", Duration::from_secs(2))?;
    let delay = c.duration("DELAY", Duration::ZERO)?;
    util::out(&format!(
        "client {id} url={url} retries={retries} breaker_fails={fails_to_open}"
    ));
    util::sleep_unless_stopping(delay);
    let mut seq = 0u64;
    let mut failed_in_row = 0u64;
    let mut open_until: Option<Instant> = None;
    while !util::stopping() && (count == 0 || seq < count) {
        seq += 1;
        if let Some(t) = open_until {
            if Instant::now() < t {
                util::out(&format!("call {id} seq={seq} result=rejected breaker=open"));
                util::sleep_unless_stopping(interval);
                continue;
            }
            util::out(&format!("breaker {id} state=half-open"));
        }
        let started = Instant::now();
        let mut ok = false;
        let mut attempts = 0;
        for attempt in 1..=retries + 1 {
            attempts = attempt;
            let t0 = Instant::now();
            let out = get(&host, port, path, timeout);
            let ms = t0.elapsed().as_millis();
            match out {
                Outcome::Status(s) => {
                    util::out(&format!(
                        "attempt {id} seq={seq} n={attempt} status={s} ms={ms}"
                    ));
                    if s < 500 {
                        ok = true;
                        break;
                    }
                }
                Outcome::Error(e) => util::out(&format!(
                    "attempt {id} seq={seq} n={attempt} error={e} ms={ms}"
                )),
            }
            if attempt <= retries {
                util::sleep_unless_stopping(backoff);
            }
        }
        let ms = started.elapsed().as_millis();
        if ok {
            util::out(&format!(
                "call {id} seq={seq} result=ok attempts={attempts} ms={ms}"
            ));
            if open_until.take().is_some() || failed_in_row >= fails_to_open {
                util::out(&format!("breaker {id} state=closed"));
            }
            failed_in_row = 0;
        } else {
            util::out(&format!(
                "call {id} seq={seq} result=failed attempts={attempts} ms={ms}"
            ));
            failed_in_row += 1;
            if open_until.is_some() || (fails_to_open > 0 && failed_in_row >= fails_to_open) {
                open_until = Some(Instant::now() + open_for);
                util::out(&format!("breaker {id} state=open"));
            }
        }
        util::sleep_unless_stopping(interval);
    }
    util::out(&format!("exit {id} calls={seq}"));
    Ok(0)
}
