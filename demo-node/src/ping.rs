//! `ping` mode: a responder that answers `ping` with `pong` (UDP and TCP on LISTEN_PORT), and,
//! when TARGET is set, a pinger logging `ping seq=N rtt=X.XXXms` or `ping seq=N timeout` each
//! interval, for the seed's lossy-network check (loss injected with iptables `statistic`).

use crate::util::{self, Config};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

pub fn run(c: &Config) -> Result<i32, String> {
    let id = c
        .get_any(&["ID", "NODE_NAME", "HOSTNAME"])
        .unwrap_or_else(|| "ping".into());
    let port = c.u64("LISTEN_PORT", 7001)? as u16;
    let tcp = match c.string("PROTO", "udp").to_ascii_lowercase().as_str() {
        "udp" => false,
        "tcp" => true,
        other => return Err(format!("PROTO: `{other}` is not udp or tcp")),
    };
    let interval = c.duration("INTERVAL", Duration::from_secs(1))?;
    let timeout = c.duration("TIMEOUT", interval.min(Duration::from_secs(1)))?;
    let count = c.u64("COUNT", 0)?;
    let target = c.get("TARGET");

    start_responder(port)?;
    util::out(&format!(
        "ping-start {id} listen={port} proto={} target={}",
        if tcp { "tcp" } else { "udp" },
        target.as_deref().unwrap_or("-")
    ));
    let Some(target) = target else {
        while !util::stopping() {
            std::thread::sleep(Duration::from_millis(50));
        }
        util::out(&format!("ping-exit {id}"));
        return Ok(0);
    };

    let udp = UdpSocket::bind("0.0.0.0:0").map_err(|e| format!("cannot bind udp socket: {e}"))?;
    let mut conn: Option<BufReader<TcpStream>> = None;
    let (mut sent, mut received) = (0u64, 0u64);
    let begin = Instant::now();
    let mut seq = 0u64;
    while !util::stopping() && (count == 0 || seq < count) {
        seq += 1;
        sent += 1;
        let outcome = match util::resolve(&target, port) {
            Err(e) => Err(e),
            Ok(addr) if tcp => ping_tcp(&mut conn, addr, &id, seq, timeout),
            Ok(addr) => ping_udp(&udp, addr, &id, seq, timeout),
        };
        match outcome {
            Ok(Some(rtt)) => {
                received += 1;
                util::out(&format!(
                    "ping seq={seq} rtt={:.3}ms",
                    rtt.as_secs_f64() * 1000.0
                ));
            }
            Ok(None) => util::out(&format!("ping seq={seq} timeout")),
            Err(e) => util::out(&format!("ping seq={seq} error={e}")),
        }
        let due = begin + interval * (seq as u32);
        let now = Instant::now();
        if due > now {
            util::sleep_unless_stopping(due - now);
        }
    }
    let loss = if sent == 0 {
        0.0
    } else {
        100.0 * (sent - received) as f64 / sent as f64
    };
    util::out(&format!(
        "ping summary sent={sent} received={received} loss={loss:.1}%"
    ));
    Ok(0)
}

fn ping_udp(
    s: &UdpSocket,
    addr: std::net::SocketAddr,
    id: &str,
    seq: u64,
    timeout: Duration,
) -> Result<Option<Duration>, String> {
    let t0 = Instant::now();
    s.send_to(format!("ping {id} {seq}\n").as_bytes(), addr)
        .map_err(|e| format!("send: {e}"))?;
    let mut buf = [0u8; 512];
    loop {
        let left = timeout.saturating_sub(t0.elapsed());
        if left.is_zero() {
            return Ok(None);
        }
        let _ = s.set_read_timeout(Some(left));
        match s.recv_from(&mut buf) {
            Ok((n, _)) => {
                let msg = String::from_utf8_lossy(&buf[..n]);
                let mut p = msg.split_whitespace();
                if p.next() == Some("pong")
                    && p.nth(1).and_then(|x| x.parse::<u64>().ok()) == Some(seq)
                {
                    return Ok(Some(t0.elapsed()));
                }
            }
            Err(_) => return Ok(None),
        }
    }
}

fn ping_tcp(
    conn: &mut Option<BufReader<TcpStream>>,
    addr: std::net::SocketAddr,
    id: &str,
    seq: u64,
    timeout: Duration,
) -> Result<Option<Duration>, String> {
    let t0 = Instant::now();
    if conn.is_none() {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                *conn = Some(BufReader::new(s));
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return Ok(None),
            Err(e) => return Err(format!("connect: {e}")),
        }
    }
    let Some(r) = conn.as_mut() else {
        return Ok(None);
    };
    let left = timeout
        .saturating_sub(t0.elapsed())
        .max(Duration::from_millis(1));
    let _ = r.get_ref().set_read_timeout(Some(left));
    let _ = r.get_ref().set_write_timeout(Some(left));
    if r.get_mut()
        .write_all(format!("ping {id} {seq}\n").as_bytes())
        .is_err()
    {
        *conn = None;
        return Ok(None);
    }
    let mut line = String::new();
    loop {
        line.clear();
        match r.read_line(&mut line) {
            Ok(0) | Err(_) => {
                *conn = None;
                return Ok(None);
            }
            Ok(_) => {
                let mut p = line.split_whitespace();
                if p.next() == Some("pong")
                    && p.nth(1).and_then(|x| x.parse::<u64>().ok()) == Some(seq)
                {
                    return Ok(Some(t0.elapsed()));
                }
            }
        }
    }
}

/// Answers pings on UDP and TCP `port` from background threads.
fn start_responder(port: u16) -> Result<(), String> {
    let udp = UdpSocket::bind(("0.0.0.0", port))
        .map_err(|e| format!("cannot bind udp port {port}: {e}"))?;
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        loop {
            if let Ok((n, from)) = udp.recv_from(&mut buf) {
                if let Some(reply) = pong_for(&String::from_utf8_lossy(&buf[..n])) {
                    let _ = udp.send_to(reply.as_bytes(), from);
                }
            }
        }
    });
    let tcp = TcpListener::bind(("0.0.0.0", port))
        .map_err(|e| format!("cannot bind tcp port {port}: {e}"))?;
    std::thread::spawn(move || {
        for s in tcp.incoming().flatten() {
            std::thread::spawn(move || {
                let Ok(mut w) = s.try_clone() else { return };
                let mut r = BufReader::new(s);
                let mut line = String::new();
                while let Ok(n) = r.read_line(&mut line) {
                    if n == 0 {
                        return;
                    }
                    if let Some(reply) = pong_for(&line) {
                        if w.write_all(reply.as_bytes()).is_err() {
                            return;
                        }
                    }
                    line.clear();
                }
            });
        }
    });
    Ok(())
}

/// `ping <id> <seq>` -> `pong <id> <seq>`.
fn pong_for(msg: &str) -> Option<String> {
    let mut p = msg.split_whitespace();
    match (p.next(), p.next(), p.next()) {
        (Some("ping"), Some(id), Some(seq)) if seq.parse::<u64>().is_ok() => {
            Some(format!("pong {id} {seq}\n"))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pong_answers_only_well_formed_pings() {
        assert_eq!(pong_for("ping a 7\n").as_deref(), Some("pong a 7\n"));
        assert_eq!(pong_for("ping a x"), None);
        assert_eq!(pong_for("hello"), None);
    }

    #[test]
    fn udp_ping_gets_rtt_from_a_responder_and_times_out_without_one() {
        let responder = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = responder.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 100];
            let (n, from) = responder.recv_from(&mut buf).unwrap();
            let reply = pong_for(&String::from_utf8_lossy(&buf[..n])).unwrap();
            responder.send_to(reply.as_bytes(), from).unwrap();
        });
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let rtt = ping_udp(&s, addr, "t", 1, Duration::from_secs(2)).unwrap();
        assert!(rtt.is_some());
        // The responder thread answered once; the second ping gets no answer.
        let rtt = ping_udp(&s, addr, "t", 2, Duration::from_millis(100)).unwrap();
        assert!(rtt.is_none());
    }
}
