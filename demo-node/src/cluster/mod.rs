//! `cluster` mode: runs the pure membership state machine (membership.rs) on real sockets.
//! Gossip/heartbeats and joins are JSON datagrams over UDP on AKKA_PORT; peer host names are
//! re-resolved every couple of seconds (a restarted container may get a new address); the
//! Jolokia endpoint (jolokia.rs) serves the `akka:type=Cluster` MBean; log lines are Akka-like.

pub mod jolokia;
pub mod membership;
pub mod objectname;

use crate::util::{self, Config};
use membership::{Address, Message, Node, Phase, Settings, UniqueAddress, View};
use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Everything a cluster node needs to run (built from the environment, or by tests).
pub struct Options {
    pub settings: Settings,
    pub udp: UdpSocket,
    /// `None` disables the Jolokia endpoint.
    pub jolokia: Option<TcpListener>,
    /// Test hook: while set, the node neither sends nor receives (like a frozen container).
    pub muted: Option<Arc<AtomicBool>>,
}

type LogFn = Arc<dyn Fn(&str) + Send + Sync>;

/// A running node.
pub struct Handle {
    node: Arc<Mutex<Node>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

impl Handle {
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn view(&self) -> Option<View> {
        self.node.lock().ok().and_then(|n| n.view())
    }
    pub fn phase(&self) -> Phase {
        self.node
            .lock()
            .map(|n| n.phase())
            .unwrap_or(Phase::Shutdown)
    }
    pub fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Sends messages, resolving host names through a cache that a background thread refreshes.
struct Sender {
    udp: UdpSocket,
    cache: Mutex<HashMap<String, IpAddr>>,
    wanted: Mutex<BTreeSet<String>>,
    muted: Option<Arc<AtomicBool>>,
}

impl Sender {
    fn send(&self, to: &Address, msg: &Message) {
        if self
            .muted
            .as_ref()
            .is_some_and(|m| m.load(Ordering::SeqCst))
        {
            return;
        }
        let ip = match to.host.parse::<IpAddr>() {
            Ok(ip) => Some(ip),
            Err(_) => {
                let ip = self
                    .cache
                    .lock()
                    .ok()
                    .and_then(|c| c.get(&to.host).copied());
                if ip.is_none() {
                    if let Ok(mut w) = self.wanted.lock() {
                        w.insert(to.host.clone());
                    }
                }
                ip
            }
        };
        let (Some(ip), Ok(bytes)) = (ip, serde_json::to_vec(msg)) else {
            return;
        };
        let _ = self.udp.send_to(&bytes, SocketAddr::new(ip, to.port));
    }

    fn refresh(&self) {
        let hosts: Vec<String> = {
            let mut h: BTreeSet<String> = self.wanted.lock().map(|w| w.clone()).unwrap_or_default();
            if let Ok(c) = self.cache.lock() {
                h.extend(c.keys().cloned());
            }
            h.into_iter().collect()
        };
        for h in hosts {
            match util::resolve_host(&h) {
                Ok(ip) => {
                    if let Ok(mut c) = self.cache.lock() {
                        c.insert(h.clone(), ip);
                    }
                    if let Ok(mut w) = self.wanted.lock() {
                        w.remove(&h);
                    }
                }
                Err(_) => {
                    // Gone from DNS (container stopped or disconnected): stop sending to the old address.
                    if let Ok(mut c) = self.cache.lock() {
                        c.remove(&h);
                    }
                    if let Ok(mut w) = self.wanted.lock() {
                        w.insert(h.clone());
                    }
                }
            }
        }
    }
}

/// Starts a node's threads.
pub fn start(opts: Options, stop: Arc<AtomicBool>, log: LogFn) -> Result<Handle, String> {
    let clock = Instant::now();
    let now_ms = move || clock.elapsed().as_millis() as u64;
    let hb = Duration::from_millis(opts.settings.heartbeat_interval_ms.max(10));
    let node = Arc::new(Mutex::new(Node::new(opts.settings, now_ms())));
    opts.udp
        .set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(|e| format!("udp socket: {e}"))?;
    let recv_sock = opts
        .udp
        .try_clone()
        .map_err(|e| format!("udp socket: {e}"))?;
    let sender = Arc::new(Sender {
        udp: opts.udp,
        cache: Mutex::new(HashMap::new()),
        wanted: Mutex::new(BTreeSet::new()),
        muted: opts.muted.clone(),
    });
    let flush = {
        let log = log.clone();
        let sender = sender.clone();
        move |n: &mut Node, out: Vec<(Address, Message)>| {
            for l in n.take_logs() {
                log(&l);
            }
            for (to, m) in &out {
                sender.send(to, m);
            }
        }
    };
    if let Ok(mut n) = node.lock() {
        flush(&mut n, Vec::new());
    }
    let mut threads = Vec::new();
    {
        // Receiver.
        let node = node.clone();
        let stop = stop.clone();
        let flush = flush.clone();
        let muted = opts.muted.clone();
        threads.push(std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            while !stop.load(Ordering::SeqCst) {
                let Ok((n, _from)) = recv_sock.recv_from(&mut buf) else {
                    continue;
                };
                if muted.as_ref().is_some_and(|m| m.load(Ordering::SeqCst)) {
                    continue;
                }
                let Ok(msg) = serde_json::from_slice::<Message>(&buf[..n]) else {
                    continue;
                };
                if let Ok(mut node) = node.lock() {
                    let out = node.receive(msg, now_ms());
                    flush(&mut node, out);
                }
            }
        }));
    }
    {
        // Ticker: heartbeats/gossip, failure detection, leader actions.
        let node = node.clone();
        let stop = stop.clone();
        let muted = opts.muted.clone();
        threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                // A muted node is frozen: it does not tick at all (like `docker pause`).
                if !muted.as_ref().is_some_and(|m| m.load(Ordering::SeqCst)) {
                    if let Ok(mut node) = node.lock() {
                        let out = node.tick(now_ms());
                        flush(&mut node, out);
                    }
                }
                std::thread::sleep(hb);
            }
        }));
    }
    {
        // Resolver.
        let stop = stop.clone();
        let sender = sender.clone();
        threads.push(std::thread::spawn(move || {
            let mut last = None::<Instant>;
            while !stop.load(Ordering::SeqCst) {
                let pending = sender.wanted.lock().map(|w| !w.is_empty()).unwrap_or(false);
                if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(2)) || pending {
                    sender.refresh();
                    last = Some(Instant::now());
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }));
    }
    if let Some(l) = opts.jolokia {
        let node = node.clone();
        let stop = stop.clone();
        threads.push(std::thread::spawn(move || {
            jolokia::serve(
                l,
                stop,
                Arc::new(move || node.lock().ok().and_then(|n| n.view())),
            )
        }));
    }
    Ok(Handle {
        node,
        threads,
        stop,
    })
}

/// Akka-like log line: `[INFO] [time] [akka.cluster.Cluster(akka://Sys)] Cluster Node [...] - ...`.
fn akka_log(system: &str, line: &str) {
    let level = if line.contains("delayed") || line.contains("auto-down feature") {
        "WARN"
    } else {
        "INFO"
    };
    util::out(&format!(
        "[{level}] [{}] [akka.cluster.Cluster(akka://{system})] {line}",
        util::timestamp()
    ));
}

fn parse_seed(s: &str, system: &str, default_port: u16) -> Result<Address, String> {
    let mut a: Address = if s.contains(':') {
        s.parse()?
    } else {
        Address {
            host: s.to_string(),
            port: default_port,
            system: String::new(),
        }
    };
    if a.system.is_empty() {
        a.system = system.to_string();
    }
    Ok(a)
}

fn optional_ms(c: &Config, keys: &[&str]) -> Result<Option<u64>, String> {
    match c.get_any(keys) {
        None => Ok(None),
        Some(v) if v.eq_ignore_ascii_case("off") => Ok(None),
        Some(v) => util::parse_duration(&v)
            .map(|d| Some(d.as_millis() as u64))
            .map_err(|e| format!("{}: {e}", keys[0])),
    }
}

/// Settings from the environment (see docs/demo-node.md for the variables).
pub fn settings_from(c: &Config, uid: u64) -> Result<Settings, String> {
    let host = c
        .get_any(&["AKKA_HOST", "NODE_NAME", "HOST"])
        .unwrap_or_else(|| "127.0.0.1".into());
    let port = c
        .get_any(&["AKKA_PORT", "PORT"])
        .map(|p| {
            p.trim()
                .parse::<u16>()
                .map_err(|_| format!("AKKA_PORT: `{p}` is not a port"))
        })
        .transpose()?
        .unwrap_or(2552);
    let system = c
        .get_any(&["AKKA_SYSTEM", "SYSTEM"])
        .unwrap_or_else(|| "TestCluster".into());
    let mut seeds = Vec::new();
    for key in ["SEED_NODES", "CLUSTER_SEED_NODE", "CLUSTER_SEED_NODES"] {
        for s in c.list(key) {
            seeds.push(parse_seed(&s, &system, port).map_err(|e| format!("{key}: {e}"))?);
        }
    }
    let roles = {
        let r = c.list("ROLES");
        if r.is_empty() {
            vec!["dc-default".to_string()]
        } else {
            r
        }
    };
    let ms =
        |keys: &[&str], d: u64| -> Result<u64, String> { Ok(optional_ms(c, keys)?.unwrap_or(d)) };
    Ok(Settings {
        self_node: UniqueAddress {
            address: Address { host, port, system },
            uid,
        },
        roles,
        seeds,
        heartbeat_interval_ms: ms(&["HEARTBEAT_INTERVAL"], 250)?,
        failure_timeout_ms: ms(&["FAILURE_DETECTOR_TIMEOUT", "FD_TIMEOUT"], 2000)?,
        auto_down_ms: optional_ms(c, &["AUTO_DOWN", "AUTO_DOWN_UNREACHABLE_AFTER"])?,
        seed_timeout_ms: ms(&["SEED_NODE_TIMEOUT", "SEED_TIMEOUT"], 2000)?,
        join_retry_ms: ms(&["JOIN_RETRY"], 1000)?,
    })
}

fn random_uid() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mut x = t.as_nanos() as u64 ^ ((std::process::id() as u64) << 32);
    // splitmix64 finaliser
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d049bb133111eb);
    x ^ (x >> 31)
}

/// The `cluster` mode entry point.
pub fn run(c: &Config) -> Result<i32, String> {
    let settings = settings_from(c, random_uid())?;
    let bind = c.string("BIND", "0.0.0.0");
    let port = settings.self_node.address.port;
    let udp = UdpSocket::bind((bind.as_str(), port))
        .map_err(|e| format!("cannot bind udp {bind}:{port}: {e}"))?;
    let jport = c.u64("JOLOKIA_PORT", 8778)? as u16;
    let jolokia = if jport == 0 {
        None
    } else {
        let jbind = c.string("JOLOKIA_BIND", "0.0.0.0");
        Some(
            TcpListener::bind((jbind.as_str(), jport))
                .map_err(|e| format!("cannot bind jolokia {jbind}:{jport}: {e}"))?,
        )
    };
    let exit_on_shutdown = c.bool("EXIT_ON_SHUTDOWN", false)?;
    let system = settings.self_node.address.system.clone();
    util::out(&format!(
        "[INFO] [{}] [demo-node] cluster node {} (uid {}) seeds [{}] heartbeat {}ms failure-detector {}ms auto-down {} jolokia {}",
        util::timestamp(),
        settings.self_node.address,
        settings.self_node.uid,
        settings.seeds.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", "),
        settings.heartbeat_interval_ms,
        settings.failure_timeout_ms,
        settings.auto_down_ms.map(|m| format!("{m}ms")).unwrap_or_else(|| "off".into()),
        if jport == 0 { "off".to_string() } else { format!("{jport}") },
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let log: LogFn = Arc::new(move |l: &str| akka_log(&system, l));
    let h = start(
        Options {
            settings,
            udp,
            jolokia,
            muted: None,
        },
        stop.clone(),
        log,
    )?;
    while !util::stopping() {
        if exit_on_shutdown && h.phase() == Phase::Shutdown {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    util::out(&format!(
        "[INFO] [{}] [demo-node] stopping ({})",
        util::timestamp(),
        util::stop_signal_name().unwrap_or("cluster shutdown")
    ));
    h.stop();
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use membership::MemberStatus;
    use std::io::{Read, Write};

    fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
        let t = Instant::now();
        while t.elapsed() < limit {
            if f() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("timed out waiting for {what}");
    }

    fn up_count(h: &Handle) -> usize {
        h.view()
            .map(|v| {
                v.members
                    .iter()
                    .filter(|m| m.status == MemberStatus::Up)
                    .count()
            })
            .unwrap_or(0)
    }

    /// Four nodes as threads on loopback UDP sockets: the cluster forms, a muted ("paused") node
    /// is seen unreachable over Jolokia HTTP, is auto-downed and removed, and shuts itself down
    /// when it wakes up.
    #[test]
    fn loopback_cluster_forms_detects_failure_auto_downs_and_serves_jolokia() {
        let socks: Vec<UdpSocket> = (0..4)
            .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        let ports: Vec<u16> = socks
            .iter()
            .map(|s| s.local_addr().unwrap().port())
            .collect();
        let addr = |p: u16| Address {
            host: "127.0.0.1".into(),
            port: p,
            system: "TestCluster".into(),
        };
        // The seed is the lowest port so that it is also the expected leader.
        let seed = addr(*ports.iter().min().unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let mutes: Vec<Arc<AtomicBool>> =
            (0..4).map(|_| Arc::new(AtomicBool::new(false))).collect();
        let logs = Arc::new(Mutex::new(Vec::<String>::new()));
        let mut jolokia_addr = None;
        let handles: Vec<Handle> = socks
            .into_iter()
            .enumerate()
            .map(|(i, udp)| {
                // Jolokia on the seed (the observer below), never on the node that gets muted.
                let jolokia = if addr(ports[i]) == seed {
                    let l = TcpListener::bind("127.0.0.1:0").unwrap();
                    jolokia_addr = Some(l.local_addr().unwrap());
                    Some(l)
                } else {
                    None
                };
                let settings = Settings {
                    self_node: UniqueAddress {
                        address: addr(ports[i]),
                        uid: i as u64 + 1,
                    },
                    roles: vec!["dc-default".into()],
                    seeds: vec![seed.clone()],
                    heartbeat_interval_ms: 50,
                    failure_timeout_ms: 400,
                    auto_down_ms: Some(800),
                    seed_timeout_ms: 300,
                    join_retry_ms: 200,
                };
                let logs = logs.clone();
                start(
                    Options {
                        settings,
                        udp,
                        jolokia,
                        muted: Some(mutes[i].clone()),
                    },
                    stop.clone(),
                    Arc::new(move |l: &str| logs.lock().unwrap().push(l.to_string())),
                )
                .unwrap()
            })
            .collect();
        wait_for(
            "four Up members everywhere",
            Duration::from_secs(15),
            || handles.iter().all(|h| up_count(h) == 4),
        );
        let victim = (0..4).find(|i| addr(ports[*i]) != seed).unwrap();
        let observer = (0..4).find(|i| addr(ports[*i]) == seed).unwrap();
        let victim_addr = addr(ports[victim]).to_string();

        // Jolokia over real HTTP from the node that has the endpoint.
        let jolokia_read = || -> serde_json::Value {
            let mut c = std::net::TcpStream::connect(jolokia_addr.unwrap()).unwrap();
            let body = r#"[{"type":"read","mbean":"akka:type=Cluster","attribute":["ClusterStatus","Leader"]}]"#;
            write!(
                c,
                "POST /jolokia HTTP/1.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
            let mut s = String::new();
            c.read_to_string(&mut s).unwrap();
            let v: serde_json::Value =
                serde_json::from_str(s.split("\r\n\r\n").nth(1).unwrap()).unwrap();
            serde_json::from_str(v[0]["value"]["ClusterStatus"].as_str().unwrap()).unwrap()
        };
        assert!(jolokia_addr.is_some());
        let cs = jolokia_read();
        assert_eq!(cs["members"].as_array().unwrap().len(), 4);

        mutes[victim].store(true, Ordering::SeqCst);
        wait_for(
            "victim unreachable in Jolokia",
            Duration::from_secs(10),
            || {
                let cs = jolokia_read();
                cs["unreachable"]
                    .as_array()
                    .is_some_and(|u| u.iter().any(|x| x["node"] == victim_addr.as_str()))
            },
        );
        wait_for("victim removed", Duration::from_secs(10), || {
            handles[observer]
                .view()
                .is_some_and(|v| v.members.len() == 3 && v.unreachable.is_empty())
        });
        mutes[victim].store(false, Ordering::SeqCst);
        wait_for("victim shut down", Duration::from_secs(10), || {
            handles[victim].phase() == Phase::Shutdown
        });
        let logs = logs.lock().unwrap().clone();
        assert!(logs.iter().any(|l| l.contains(&format!(
            "Leader is auto-downing unreachable node [{victim_addr}]"
        ))));
        assert!(logs.iter().any(|l| l.contains(&format!(
            "Leader is removing unreachable node [{victim_addr}]"
        ))));
        stop.store(true, Ordering::SeqCst);
        for h in handles {
            h.stop();
        }
    }

    #[test]
    fn settings_come_from_akka_style_environment() {
        let env: HashMap<String, String> = [
            ("AKKA_HOST", "left-b"),
            ("AKKA_PORT", "2552"),
            ("SEED_NODES", "akka.tcp://TestCluster@left-a:2552, right-a"),
            ("AUTO_DOWN", "5s"),
            ("FAILURE_DETECTOR_TIMEOUT", "1500ms"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let s = settings_from(&Config::new(&[], env).unwrap(), 7).unwrap();
        assert_eq!(
            s.self_node.address.to_string(),
            "akka.tcp://TestCluster@left-b:2552"
        );
        assert_eq!(s.seeds[0].to_string(), "akka.tcp://TestCluster@left-a:2552");
        assert_eq!(
            s.seeds[1].to_string(),
            "akka.tcp://TestCluster@right-a:2552"
        );
        assert_eq!(s.auto_down_ms, Some(5000));
        assert_eq!(s.failure_timeout_ms, 1500);
        let env: HashMap<String, String> = [("AUTO_DOWN", "off")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(
            settings_from(&Config::new(&[], env).unwrap(), 1)
                .unwrap()
                .auto_down_ms,
            None
        );
        let env: HashMap<String, String> = [("AKKA_PORT", "x")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert!(settings_from(&Config::new(&[], env).unwrap(), 1).is_err());
    }
}
