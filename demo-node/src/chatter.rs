//! `chatter` mode: numbered log lines for the recorder's log-capture tests, and numbered
//! messages to peers (UDP or TCP) so tests can see partitions stop traffic, healing restore it,
//! and packet loss drop a share of messages. Every line it prints is documented in
//! docs/demo-node.md; the formats are part of what the recorder tests parse.

use crate::util::{self, Config};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Settings of one chatter run.
#[derive(Debug, Clone)]
pub struct Chatter {
    pub id: String,
    /// Number of numbered lines; 0 = until stopped.
    pub count: u64,
    /// Lines per second; 0 = as fast as possible.
    pub rate: f64,
    pub start: u64,
    /// Every Nth line goes to stderr (0 = none).
    pub stderr_every: u64,
    /// Length of one `long` line printed at exit (0 = none).
    pub long_line: usize,
    /// Print `partial <id>` without a newline at exit.
    pub partial: bool,
    /// File holding the last printed number, to continue numbering across restarts.
    pub resume_file: Option<String>,
    /// After the lines (and peer messages) are done: exit, or wait for a signal.
    pub wait: bool,
    pub exit_code: i32,
    pub peers: Vec<String>,
    pub tcp: bool,
    pub listen_port: u16,
    pub peer_interval: Duration,
    /// Messages per peer; 0 = until stopped.
    pub peer_count: u64,
}

impl Chatter {
    pub fn from_config(c: &Config) -> Result<Chatter, String> {
        let proto = c.string("PROTO", "udp").to_ascii_lowercase();
        if proto != "udp" && proto != "tcp" {
            return Err(format!("PROTO: `{proto}` is not udp or tcp"));
        }
        let then = c.string("THEN", "exit").to_ascii_lowercase();
        if then != "exit" && then != "wait" {
            return Err(format!("THEN: `{then}` is not exit or wait"));
        }
        Ok(Chatter {
            id: c
                .get_any(&["ID", "NODE_NAME", "HOSTNAME"])
                .unwrap_or_else(|| "chatter".into()),
            count: c.u64("COUNT", 0)?,
            rate: c.f64("RATE", 10.0)?,
            start: c.u64("START", 1)?,
            stderr_every: c.u64("STDERR_EVERY", 0)?,
            long_line: c.u64("LONG_LINE", 0)? as usize,
            partial: c.bool("PARTIAL", false)?,
            resume_file: c.get("RESUME_FILE"),
            wait: then == "wait",
            exit_code: c.u64("EXIT_CODE", 0)? as i32,
            peers: c.list("PEERS"),
            tcp: proto == "tcp",
            listen_port: c.u64("LISTEN_PORT", 7000)? as u16,
            peer_interval: c.duration("PEER_INTERVAL", Duration::from_millis(200))?,
            peer_count: c.u64("PEER_COUNT", 0)?,
        })
    }
}

/// Runs chatter until done or signalled; returns the process exit code.
pub fn run(cfg: Chatter) -> i32 {
    let id = cfg.id.clone();
    let first = match &cfg.resume_file {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(s) => s.trim().parse::<u64>().map(|n| n + 1).unwrap_or(cfg.start),
            Err(_) => cfg.start,
        },
        None => cfg.start,
    };
    util::out(&format!(
        "start {id} first={first} count={} rate={} peers={} proto={}",
        cfg.count,
        cfg.rate,
        cfg.peers.len(),
        if cfg.tcp { "tcp" } else { "udp" }
    ));

    let peers_done = Arc::new(AtomicBool::new(cfg.peers.is_empty()));
    let stop_peers = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    if !cfg.peers.is_empty() || cfg.listen_port != 0 {
        match start_listener(&cfg, stop_peers.clone()) {
            Ok(h) => threads.push(h),
            Err(e) => util::err(&format!(
                "listen-error {id} port={} error={e}",
                cfg.listen_port
            )),
        }
    }
    if !cfg.peers.is_empty() {
        let c = cfg.clone();
        let done = peers_done.clone();
        let stop = stop_peers.clone();
        threads.push(std::thread::spawn(move || {
            peer_sender(&c, &stop);
            done.store(true, Ordering::SeqCst);
        }));
    }

    let printed = print_lines(&cfg, first);

    let mut reason = "done";
    if cfg.count == 0 || cfg.wait {
        while !util::stopping() {
            std::thread::sleep(Duration::from_millis(50));
        }
    } else {
        while !util::stopping() && !peers_done.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    if let Some(sig) = util::stop_signal_name() {
        reason = sig;
    }
    stop_peers.store(true, Ordering::SeqCst);
    for t in threads {
        let _ = t.join();
    }
    if cfg.long_line > 0 {
        let mut l = format!("long {id} {} ", cfg.long_line);
        l.extend(std::iter::repeat_n('x', cfg.long_line));
        util::out(&l);
    }
    util::out(&format!("exit {id} lines={printed} reason={reason}"));
    if cfg.partial {
        let stdout = std::io::stdout();
        let mut lock = stdout.lock();
        let _ = write!(lock, "partial {id}");
        let _ = lock.flush();
    }
    if reason == "done" {
        cfg.exit_code
    } else {
        0
    }
}

/// Prints the numbered lines; returns how many were printed.
fn print_lines(cfg: &Chatter, first: u64) -> u64 {
    let id = &cfg.id;
    let begin = Instant::now();
    let mut printed = 0u64;
    let fast = cfg.rate <= 0.0;
    let stdout = std::io::stdout();
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    loop {
        if util::stopping() || (cfg.count > 0 && printed >= cfg.count) {
            break;
        }
        let n = first + printed;
        let to_stderr = cfg.stderr_every > 0 && n.is_multiple_of(cfg.stderr_every);
        if to_stderr {
            if !buf.is_empty() {
                let mut lock = stdout.lock();
                let _ = lock.write_all(&buf);
                let _ = lock.flush();
                buf.clear();
            }
            util::err(&format!("line {n} {id}"));
        } else if fast {
            let _ = writeln!(buf, "line {n} {id}");
            if buf.len() > 32 * 1024 {
                let mut lock = stdout.lock();
                let _ = lock.write_all(&buf);
                let _ = lock.flush();
                buf.clear();
            }
        } else {
            util::out(&format!("line {n} {id}"));
        }
        printed += 1;
        if let Some(path) = &cfg.resume_file {
            if !fast || printed.is_multiple_of(1000) {
                let _ = std::fs::write(path, n.to_string());
            }
        }
        if !fast {
            let due = begin + Duration::from_secs_f64(printed as f64 / cfg.rate);
            let now = Instant::now();
            if due > now {
                util::sleep_unless_stopping(due - now);
            }
        }
    }
    if !buf.is_empty() {
        let mut lock = stdout.lock();
        let _ = lock.write_all(&buf);
        let _ = lock.flush();
    }
    if let (Some(path), true) = (&cfg.resume_file, printed > 0) {
        let _ = std::fs::write(path, (first + printed - 1).to_string());
    }
    printed
}

/// Receives peer messages (UDP datagrams or TCP lines `chat <from> <seq>`) and logs them.
fn start_listener(
    cfg: &Chatter,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    // Listen on UDP and TCP alike, whatever PROTO the senders use.
    let id = cfg.id.clone();
    let port = cfg.listen_port;
    let l = TcpListener::bind(("0.0.0.0", port))?;
    l.set_nonblocking(true)?;
    let u = UdpSocket::bind(("0.0.0.0", port))?;
    u.set_read_timeout(Some(Duration::from_millis(100)))?;
    let (uid, ustop) = (id.clone(), stop.clone());
    let udp_thread = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while !ustop.load(Ordering::SeqCst) {
            if let Ok((n, addr)) = u.recv_from(&mut buf) {
                log_received(&uid, &String::from_utf8_lossy(&buf[..n]), addr);
            }
        }
    });
    Ok(std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            match l.accept() {
                Ok((s, addr)) => {
                    let id = id.clone();
                    let stop = stop.clone();
                    std::thread::spawn(move || tcp_reader(s, addr, &id, &stop));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        let _ = udp_thread.join();
    }))
}

fn tcp_reader(s: TcpStream, addr: SocketAddr, id: &str, stop: &AtomicBool) {
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    let mut r = BufReader::new(s);
    let mut line = String::new();
    while !stop.load(Ordering::SeqCst) {
        match r.read_line(&mut line) {
            Ok(0) => return,
            Ok(_) => {
                if line.ends_with('\n') {
                    log_received(id, &line, addr);
                    line.clear();
                }
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return,
        }
    }
}

fn log_received(id: &str, msg: &str, addr: SocketAddr) {
    let mut p = msg.split_whitespace();
    match (
        p.next(),
        p.next(),
        p.next().and_then(|s| s.parse::<u64>().ok()),
    ) {
        (Some("chat"), Some(from), Some(seq)) => {
            util::out(&format!("recv {id} seq={seq} from={from} addr={addr}"))
        }
        _ => util::out(&format!(
            "recv-garbage {id} addr={addr} bytes={}",
            msg.len()
        )),
    }
}

/// One peer's destination, re-resolved when sending fails.
struct Peer {
    name: String,
    addr: Option<SocketAddr>,
    last_resolve: Option<Instant>,
    resolve_error: Option<String>,
    tcp: Option<TcpStream>,
}

fn peer_sender(cfg: &Chatter, stop: &AtomicBool) {
    let id = &cfg.id;
    let udp = match UdpSocket::bind("0.0.0.0:0") {
        Ok(s) => s,
        Err(e) => {
            util::err(&format!(
                "send-error {id} error=cannot bind udp socket: {e}"
            ));
            return;
        }
    };
    let mut peers: Vec<Peer> = cfg
        .peers
        .iter()
        .map(|p| Peer {
            name: p.clone(),
            addr: None,
            last_resolve: None,
            resolve_error: None,
            tcp: None,
        })
        .collect();
    let seq = AtomicU64::new(0);
    let begin = Instant::now();
    loop {
        if stop.load(Ordering::SeqCst) || util::stopping() {
            return;
        }
        let n = seq.fetch_add(1, Ordering::SeqCst) + 1;
        if cfg.peer_count > 0 && n > cfg.peer_count {
            return;
        }
        for p in peers.iter_mut() {
            send_one(cfg, &udp, p, n);
        }
        let due = begin + cfg.peer_interval * (n as u32);
        let now = Instant::now();
        if due > now {
            let wait = due - now;
            let end = now + wait;
            while Instant::now() < end && !stop.load(Ordering::SeqCst) && !util::stopping() {
                std::thread::sleep((end - Instant::now()).min(Duration::from_millis(50)));
            }
        }
    }
}

fn send_one(cfg: &Chatter, udp: &UdpSocket, p: &mut Peer, seq: u64) {
    let id = &cfg.id;
    // Resolve at first use, then every 2 s (a restarted peer may have a new address), and at
    // most every 500 ms while it does not resolve.
    let due = match (p.addr, p.last_resolve) {
        (_, None) => true,
        (None, Some(t)) => t.elapsed() >= Duration::from_millis(500),
        (Some(_), Some(t)) => t.elapsed() >= Duration::from_secs(2),
    };
    if due {
        p.last_resolve = Some(Instant::now());
        match util::resolve(&p.name, cfg.listen_port) {
            Ok(a) => {
                if p.addr != Some(a) {
                    p.tcp = None;
                }
                p.addr = Some(a);
                p.resolve_error = None;
            }
            Err(e) => {
                p.addr = None;
                p.tcp = None;
                p.resolve_error = Some(e);
            }
        }
    }
    let Some(addr) = p.addr else {
        let e = p.resolve_error.as_deref().unwrap_or("unresolved");
        util::out(&format!(
            "send-error {id} seq={seq} to={} error={e}",
            p.name
        ));
        return;
    };
    let msg = format!("chat {id} {seq}\n");
    let res = if cfg.tcp {
        if p.tcp.is_none() {
            match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
                Ok(s) => {
                    let _ = s.set_write_timeout(Some(Duration::from_millis(300)));
                    let _ = s.set_nodelay(true);
                    p.tcp = Some(s);
                }
                Err(e) => {
                    util::out(&format!(
                        "send-error {id} seq={seq} to={} error={e}",
                        p.name
                    ));
                    return;
                }
            }
        }
        match p.tcp.as_mut() {
            Some(s) => s.write_all(msg.as_bytes()),
            None => Ok(()),
        }
    } else {
        udp.send_to(msg.as_bytes(), addr).map(|_| ())
    };
    match res {
        Ok(()) => util::out(&format!("send {id} seq={seq} to={}", p.name)),
        Err(e) => {
            // Reconnect (TCP) and re-resolve before the next message.
            p.tcp = None;
            p.last_resolve = None;
            util::out(&format!(
                "send-error {id} seq={seq} to={} error={e}",
                p.name
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Chatter, String> {
        let env: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Chatter::from_config(&Config::new(&[], env)?)
    }

    #[test]
    fn config_defaults_and_validation() {
        let c = cfg(&[("HOSTNAME", "abc")]).unwrap();
        assert_eq!(c.id, "abc");
        assert_eq!(c.count, 0);
        assert!(!c.tcp);
        assert_eq!(c.peer_interval, Duration::from_millis(200));
        let c = cfg(&[
            ("ID", "n1"),
            ("PEERS", "a:1, b:2"),
            ("PROTO", "TCP"),
            ("THEN", "wait"),
        ])
        .unwrap();
        assert_eq!(c.id, "n1");
        assert_eq!(c.peers, vec!["a:1".to_string(), "b:2".to_string()]);
        assert!(c.tcp && c.wait);
        assert!(cfg(&[("PROTO", "sctp")]).is_err());
        assert!(cfg(&[("RATE", "-1")]).is_err());
        assert!(cfg(&[("THEN", "later")]).is_err());
    }

    #[test]
    fn udp_messages_between_two_chatters_are_numbered() {
        // A listener on an ephemeral loopback port receives what a sender sends.
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let port = rx.local_addr().unwrap().port();
        let c = Chatter {
            peers: vec![format!("127.0.0.1:{port}")],
            peer_interval: Duration::from_millis(5),
            peer_count: 3,
            ..cfg(&[("ID", "s1")]).unwrap()
        };
        let stop = AtomicBool::new(false);
        peer_sender(&c, &stop);
        let mut got = Vec::new();
        let mut buf = [0u8; 100];
        for _ in 0..3 {
            let (n, _) = rx.recv_from(&mut buf).unwrap();
            got.push(String::from_utf8_lossy(&buf[..n]).to_string());
        }
        assert_eq!(got, vec!["chat s1 1\n", "chat s1 2\n", "chat s1 3\n"]);
    }
}
