//! Shared plumbing for every mode: configuration from `--key value` flags and environment
//! variables, SIGTERM/SIGINT handling (PID 1 in a `FROM scratch` image has no init), timestamped
//! logging to stdout, and name resolution that works in a static binary without NSS libraries
//! (IP literal, /etc/hosts, then a tiny DNS A query to the resolv.conf nameserver, e.g. Docker's
//! embedded DNS at 127.0.0.11).

use std::collections::HashMap;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Configuration lookup: command-line flags (`--rate 5`, `--rate=5`) win over environment
/// variables; a flag `--foo-bar` is the same key as the variable `FOO_BAR`.
#[derive(Debug, Clone, Default)]
pub struct Config {
    flags: HashMap<String, String>,
    env: HashMap<String, String>,
}

impl Config {
    /// Reads flags from `args` (after the mode) and the process environment.
    pub fn from_args(args: &[String]) -> Result<Config, String> {
        Config::new(args, std::env::vars().collect())
    }

    /// Builds a configuration from explicit flags and an explicit environment (used by tests).
    pub fn new(args: &[String], env: HashMap<String, String>) -> Result<Config, String> {
        let mut flags = HashMap::new();
        let mut i = 0;
        while i < args.len() {
            let a = &args[i];
            let Some(name) = a.strip_prefix("--") else {
                return Err(format!(
                    "unexpected argument `{a}` (flags look like --key value)"
                ));
            };
            let (key, value) = match name.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => {
                    let v = args
                        .get(i + 1)
                        .ok_or_else(|| format!("flag `--{name}` needs a value"))?;
                    i += 1;
                    (name.to_string(), v.clone())
                }
            };
            flags.insert(key.replace('-', "_").to_ascii_uppercase(), value);
            i += 1;
        }
        Ok(Config { flags, env })
    }

    /// The raw value of `key` (flag first, then environment), empty strings count as unset.
    pub fn get(&self, key: &str) -> Option<String> {
        self.flags
            .get(key)
            .or_else(|| self.env.get(key))
            .filter(|v| !v.trim().is_empty())
            .cloned()
    }

    /// The first of several alternative keys that is set.
    pub fn get_any(&self, keys: &[&str]) -> Option<String> {
        keys.iter().find_map(|k| self.get(k))
    }

    pub fn string(&self, key: &str, default: &str) -> String {
        self.get(key).unwrap_or_else(|| default.to_string())
    }

    pub fn u64(&self, key: &str, default: u64) -> Result<u64, String> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| format!("{key}: `{v}` is not a whole number")),
        }
    }

    pub fn f64(&self, key: &str, default: f64) -> Result<f64, String> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .ok_or_else(|| format!("{key}: `{v}` is not a non-negative number")),
        }
    }

    pub fn bool(&self, key: &str, default: bool) -> Result<bool, String> {
        match self.get(key).map(|v| v.trim().to_ascii_lowercase()) {
            None => Ok(default),
            Some(v) => match v.as_str() {
                "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" => Ok(false),
                _ => Err(format!("{key}: `{v}` is not a boolean")),
            },
        }
    }

    pub fn duration(&self, key: &str, default: Duration) -> Result<Duration, String> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => parse_duration(&v).map_err(|e| format!("{key}: {e}")),
        }
    }

    /// A comma-separated list (empty when unset).
    pub fn list(&self, key: &str) -> Vec<String> {
        self.get(key)
            .map(|v| {
                v.split([',', ' '])
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Parses a demo-node duration setting: the one duration syntax (docs/cli.md, Durations: `250ms`,
/// `2s`, `1.5s`, `1m30s`), or a bare number of milliseconds (`40`, `2.5`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return match t.parse::<f64>() {
            Ok(ms) => Duration::try_from_secs_f64(ms / 1000.0)
                .map_err(|_| format!("`{s}` is not a duration (e.g. 250ms, 2s)")),
            Err(_) => Err(format!("`{s}` is not a duration (e.g. 250ms, 2s)")),
        };
    }
    trace::time::parse_duration(t).map_err(|e| e.to_string())
}

static STOP: AtomicBool = AtomicBool::new(false);
static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    STOP_SIGNAL.store(sig, Ordering::SeqCst);
    STOP.store(true, Ordering::SeqCst);
}

/// Installs handlers for SIGTERM, SIGINT and SIGHUP that only set a flag; loops poll `stopping()`.
pub fn install_signal_handlers() {
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: the handler only stores into atomics, which is async-signal-safe.
        unsafe {
            libc::signal(sig, on_signal as *const () as libc::sighandler_t);
        }
    }
}

/// True once a termination signal arrived.
pub fn stopping() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Name of the signal that asked us to stop, if any.
pub fn stop_signal_name() -> Option<&'static str> {
    match STOP_SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        libc::SIGTERM => Some("TERM"),
        libc::SIGINT => Some("INT"),
        libc::SIGHUP => Some("HUP"),
        _ => Some("other"),
    }
}

/// Sleeps up to `d`, waking early when a stop signal arrives (50 ms granularity).
pub fn sleep_unless_stopping(d: Duration) {
    let end = std::time::Instant::now() + d;
    loop {
        if stopping() {
            return;
        }
        let now = std::time::Instant::now();
        if now >= end {
            return;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(50)));
    }
}

/// Wall-clock time as `YYYY-MM-DD HH:MM:SS.mmm` (UTC).
pub fn timestamp() -> String {
    let t = trace::time::format_rfc3339_millis(trace::time::now_ns());
    t.trim_end_matches('Z').replacen('T', " ", 1)
}

/// Seconds since the Unix epoch.
pub fn epoch_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// Writes one line to stdout and flushes it (the recorder reads container logs line by line).
pub fn out(line: &str) {
    let stdout = std::io::stdout();
    let mut lock = stdout.lock();
    let _ = writeln!(lock, "{line}");
    let _ = lock.flush();
}

/// Writes one line to stderr.
pub fn err(line: &str) {
    let stderr = std::io::stderr();
    let mut lock = stderr.lock();
    let _ = writeln!(lock, "{line}");
    let _ = lock.flush();
}

/// Resolves `host:port` (or `host` with `default_port`) to one socket address.
pub fn resolve(target: &str, default_port: u16) -> Result<SocketAddr, String> {
    let (host, port) = split_host_port(target, default_port)?;
    let ip = resolve_host(&host)?;
    Ok(SocketAddr::new(ip, port))
}

/// Splits `host:port`; a bare host gets `default_port`.
pub fn split_host_port(target: &str, default_port: u16) -> Result<(String, u16), String> {
    let t = target.trim();
    if let Ok(sa) = t.parse::<SocketAddr>() {
        return Ok((sa.ip().to_string(), sa.port()));
    }
    match t.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => {
            let port = p
                .parse()
                .map_err(|_| format!("`{t}`: port `{p}` is not a number"))?;
            Ok((h.to_string(), port))
        }
        _ => Ok((t.to_string(), default_port)),
    }
}

/// Resolves a host name to an IPv4 (preferred) or IPv6 address.
pub fn resolve_host(host: &str) -> Result<IpAddr, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ip);
    }
    if host == "localhost" {
        return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    if let Some(ip) = hosts_file_lookup(host) {
        return Ok(ip);
    }
    if let Some(ns) = resolv_conf_nameserver() {
        match dns_query_a(ns, host, Duration::from_millis(800)) {
            Ok(ips) if !ips.is_empty() => return Ok(IpAddr::V4(ips[0])),
            Ok(_) => return Err(format!("cannot resolve `{host}`: no address")),
            Err(_) => {}
        }
    }
    (host, 0)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve `{host}`: {e}"))?
        .map(|sa| sa.ip())
        .min_by_key(|ip| ip.is_ipv6())
        .ok_or_else(|| format!("cannot resolve `{host}`: no address"))
}

fn hosts_file_lookup(host: &str) -> Option<IpAddr> {
    let text = std::fs::read_to_string("/etc/hosts").ok()?;
    parse_hosts(&text, host)
}

fn parse_hosts(text: &str, host: &str) -> Option<IpAddr> {
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut parts = line.split_whitespace();
        let Some(ip) = parts.next().and_then(|s| s.parse::<IpAddr>().ok()) else {
            continue;
        };
        if ip.is_ipv6() {
            continue;
        }
        if parts.any(|n| n.eq_ignore_ascii_case(host)) {
            return Some(ip);
        }
    }
    None
}

fn resolv_conf_nameserver() -> Option<SocketAddr> {
    let text = std::fs::read_to_string("/etc/resolv.conf").ok()?;
    text.lines().find_map(|l| {
        let mut p = l.split_whitespace();
        if p.next() == Some("nameserver") {
            p.next()
                .and_then(|s| s.parse::<IpAddr>().ok())
                .map(|ip| SocketAddr::new(ip, 53))
        } else {
            None
        }
    })
}

/// Sends one DNS A query over UDP and returns the addresses in the answer section.
pub fn dns_query_a(
    server: SocketAddr,
    name: &str,
    timeout: Duration,
) -> Result<Vec<Ipv4Addr>, String> {
    let bind: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0"
            .parse()
            .map_err(|_| "bad bind address".to_string())?
    } else {
        "[::]:0"
            .parse()
            .map_err(|_| "bad bind address".to_string())?
    };
    let sock = UdpSocket::bind(bind).map_err(|e| format!("dns socket: {e}"))?;
    sock.set_read_timeout(Some(timeout))
        .map_err(|e| format!("dns socket: {e}"))?;
    let id = (std::process::id() as u16)
        ^ (SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos() as u16);
    let q = build_dns_query(id, name)?;
    sock.send_to(&q, server)
        .map_err(|e| format!("dns send: {e}"))?;
    let mut buf = [0u8; 1500];
    loop {
        let (n, _) = sock
            .recv_from(&mut buf)
            .map_err(|e| format!("dns recv: {e}"))?;
        if n >= 2 && u16::from_be_bytes([buf[0], buf[1]]) == id {
            return parse_dns_answer(&buf[..n]);
        }
    }
}

fn build_dns_query(id: u16, name: &str) -> Result<Vec<u8>, String> {
    let mut q = Vec::with_capacity(32 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("`{name}` is not a valid host name"));
        }
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&[0, 1, 0, 1]);
    Ok(q)
}

fn skip_name(msg: &[u8], mut i: usize) -> Result<usize, String> {
    loop {
        let len = *msg.get(i).ok_or("truncated dns name")? as usize;
        if len == 0 {
            return Ok(i + 1);
        }
        if len & 0xC0 == 0xC0 {
            return Ok(i + 2);
        }
        i += 1 + len;
    }
}

fn parse_dns_answer(msg: &[u8]) -> Result<Vec<Ipv4Addr>, String> {
    if msg.len() < 12 {
        return Err("short dns reply".into());
    }
    let rcode = msg[3] & 0x0F;
    if rcode != 0 {
        return Ok(Vec::new());
    }
    let qd = u16::from_be_bytes([msg[4], msg[5]]) as usize;
    let an = u16::from_be_bytes([msg[6], msg[7]]) as usize;
    let mut i = 12;
    for _ in 0..qd {
        i = skip_name(msg, i)? + 4;
    }
    let mut out = Vec::new();
    for _ in 0..an {
        i = skip_name(msg, i)?;
        let h = msg.get(i..i + 10).ok_or("truncated dns answer")?;
        let rtype = u16::from_be_bytes([h[0], h[1]]);
        let rdlen = u16::from_be_bytes([h[8], h[9]]) as usize;
        i += 10;
        let rdata = msg.get(i..i + rdlen).ok_or("truncated dns rdata")?;
        if rtype == 1 && rdlen == 4 {
            out.push(Ipv4Addr::new(rdata[0], rdata[1], rdata[2], rdata[3]));
        }
        i += rdlen;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_env_and_normalise_names() {
        let env: HashMap<String, String> = [
            ("RATE".to_string(), "3".to_string()),
            ("ID".to_string(), "x".to_string()),
        ]
        .into();
        let args: Vec<String> = ["--rate", "7", "--stderr-every=2"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let c = Config::new(&args, env).unwrap();
        assert_eq!(c.u64("RATE", 0).unwrap(), 7);
        assert_eq!(c.u64("STDERR_EVERY", 0).unwrap(), 2);
        assert_eq!(c.string("ID", "d"), "x");
        assert!(Config::new(&["stray".to_string()], HashMap::new()).is_err());
        assert!(Config::new(&["--rate".to_string()], HashMap::new()).is_err());
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("40").unwrap(), Duration::from_millis(40));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("3 weeks").is_err());
        assert!(parse_duration("-5").is_err());
        assert!(parse_duration("1.2.3").is_err());
        assert!(parse_duration("99999999999999999999999999").is_err());
    }

    #[test]
    fn timestamps_are_utc_with_milliseconds() {
        let t = timestamp();
        let b = t.as_bytes();
        assert_eq!(t.len(), "2026-01-01 00:00:05.250".len(), "{t}");
        assert_eq!(
            (b[4], b[7], b[10], b[13], b[16], b[19]),
            (b'-', b'-', b' ', b':', b':', b'.'),
            "{t}"
        );
        assert!(t.starts_with("20"), "{t}");
    }

    #[test]
    fn host_port_splitting() {
        assert_eq!(split_host_port("a:1", 9).unwrap(), ("a".into(), 1));
        assert_eq!(split_host_port("a", 9).unwrap(), ("a".into(), 9));
        assert!(split_host_port("a:x", 9).is_err());
        assert_eq!(
            resolve("127.0.0.3:5", 1).unwrap(),
            "127.0.0.3:5".parse().unwrap()
        );
    }

    #[test]
    fn hosts_file_and_dns_wire_format() {
        let hosts = "127.0.0.1 localhost\n::1 localhost ip6\n172.18.0.3\tleft-a abc123 # c\n";
        assert_eq!(
            parse_hosts(hosts, "left-a"),
            Some("172.18.0.3".parse().unwrap())
        );
        assert_eq!(parse_hosts(hosts, "right-a"), None);
        let q = build_dns_query(0x1234, "left-a").unwrap();
        assert_eq!(&q[12..20], b"\x06left-a\x00");
        // A reply: the question echoed, one answer with a name pointer to offset 12.
        let mut r = q.clone();
        r[2] = 0x81;
        r[3] = 0x80;
        r[7] = 1;
        r.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 2, 88, 0, 4, 172, 18, 0, 3]);
        assert_eq!(
            parse_dns_answer(&r).unwrap(),
            vec![Ipv4Addr::new(172, 18, 0, 3)]
        );
        r[3] = 0x83; // NXDOMAIN
        assert!(parse_dns_answer(&r).unwrap().is_empty());
        r[3] = 0x80;
        assert!(parse_dns_answer(&r[..r.len() - 3]).is_err());
    }
}
