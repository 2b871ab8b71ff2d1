//! Fault injection against real containers (the project's chatter image, FROM scratch, no tools
//! inside): partitions stop traffic and healing restores it, loss drops about the asked share,
//! pause/unpause, kill with a signal, the clear netem error on kernels without it, exec and
//! limits, cleanup of rules a dropped injector left behind, and no rules after `revert_all`.
//! Also an (ignored) injector-level timing benchmark; the end-to-end one (through `recorder run`)
//! is scripts/bench-faults.sh.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use integration_tests::{require_docker, DEMO_IMAGE};
use recorder::faults::{
    cleanup_host, FaultError, FaultId, FaultInjector, FaultRequest, FaultTarget,
};
use recorder::sink::{EventReceiver, EventSink};
use serde_json::{json, Value};

use crate::recorder_common::up;

/// Two chatters `a` and `b` on network `middle` sending each other numbered UDP messages every
/// `interval_ms`, plus `c` (also on `middle`, sending to nobody) when `with_c`.
fn compose_yaml(interval_ms: u64, with_c: bool) -> String {
    let svc = |id: &str, peers: &str| {
        format!(
            r#"  {id}:
    image: {DEMO_IMAGE}
    command: ["chatter", "--then", "wait"]
    environment:
      ID: {id}
      RATE: "1"
      PEERS: "{peers}"
      PEER_INTERVAL: "{interval_ms}ms"
      LISTEN_PORT: "7000"
    networks: [middle]
    stop_grace_period: 1s
"#
        )
    };
    let mut y = String::from("version: \"2.4\"\nservices:\n");
    y.push_str(&svc("a", "b:7000"));
    y.push_str(&svc("b", "a:7000"));
    if with_c {
        y.push_str(&svc("c", ""));
    }
    y.push_str("networks:\n  middle: {}\n");
    y
}

fn sh(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The container id of a service (by compose labels).
fn container(project: &str, service: &str) -> String {
    let out = sh(
        "docker",
        &[
            "ps",
            "-aq",
            "--no-trunc",
            "--filter",
            &format!("label=com.docker.compose.project={project}"),
            "--filter",
            &format!("label=com.docker.compose.service={service}"),
        ],
    );
    let id = out
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    assert!(!id.is_empty(), "no container for service {service}");
    id
}

/// `<memory> <nano cpus>` of a container's host config, as `docker inspect` prints them.
fn memory_and_cpus(container: &str) -> String {
    sh(
        "docker",
        &[
            "inspect",
            "-f",
            "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}}",
            container,
        ],
    )
}

fn pid(container: &str) -> String {
    sh("docker", &["inspect", "-f", "{{.State.Pid}}", container])
        .trim()
        .to_string()
}

/// `iptables -S` inside the container's network namespace, from the host.
fn netns_iptables(container: &str) -> String {
    sh(
        "nsenter",
        &["-t", &pid(container), "-n", "iptables", "-w", "-S"],
    )
}

/// Lines of `iptables -S` beyond the default policies.
fn extra_rules(container: &str) -> Vec<String> {
    netns_iptables(container)
        .lines()
        .filter(|l| !l.starts_with("-P "))
        .map(str::to_string)
        .collect()
}

fn netns_qdiscs(container: &str) -> String {
    sh(
        "nsenter",
        &["-t", &pid(container), "-n", "tc", "qdisc", "show"],
    )
}

/// `tc filter show` on every interface of the container's namespace, from the host.
fn netns_filters(container: &str) -> String {
    let pid = pid(container);
    let mut out = String::new();
    let net_dev = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap_or_default();
    let devs: Vec<&str> = net_dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split_once(':').map(|(d, _)| d.trim()))
        .collect();
    for dev in devs {
        if dev == "lo" {
            continue;
        }
        out.push_str(&sh(
            "nsenter",
            &["-t", &pid, "-n", "tc", "filter", "show", "dev", dev],
        ));
    }
    out
}

/// Whether the container's namespace has the project's tc tree (root qdisc with its handle).
fn has_tree(container: &str, inj: &FaultInjector) -> bool {
    let h = inj.tags().tc_handle_str();
    netns_qdiscs(container)
        .lines()
        .any(|l| l.contains(&format!(" {h} ")) && l.contains(" root "))
}

/// The container's IPv4 address (its only network).
fn ip(container: &str) -> String {
    sh(
        "docker",
        &[
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            container,
        ],
    )
    .trim()
    .to_string()
}

/// The Linux bridge of a compose network (`br-` + the first 12 hex digits of its id).
fn bridge(project: &str, network: &str) -> String {
    let id = sh(
        "docker",
        &[
            "network",
            "inspect",
            "-f",
            "{{.Id}}",
            &format!("{project}_{network}"),
        ],
    );
    let id = id.trim();
    assert!(id.len() >= 12, "no network {project}_{network}");
    format!("br-{}", &id[..12])
}

/// tcpdump on a bridge, started by the test (the host's tcpdump), killed when dropped.
struct Capture {
    child: std::process::Child,
    out: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Capture {
    /// Captures IPv4 packets between `x` and `y` on `dev`, one line per packet, with the
    /// kernel's capture time.
    fn start(dev: &str, x: &str, y: &str) -> Capture {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("capture.txt");
        let file = std::fs::File::create(&out).expect("capture file");
        let child = Command::new("tcpdump")
            .args(["-i", dev, "-n", "-tt", "-l", "--immediate-mode"])
            .args(["ip", "and", "host", x, "and", "host", y])
            .stdout(file)
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("run tcpdump");
        Capture {
            child,
            out,
            _dir: dir,
        }
    }

    /// `(ts_ns, src, dst)` of every packet captured so far.
    fn packets(&self) -> Vec<(i64, String, String)> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        let host = |a: &str| {
            // "172.20.0.2.7000" or "172.20.0.2.7000:" → "172.20.0.2"
            let a = a.trim_end_matches(':');
            let parts: Vec<&str> = a.split('.').collect();
            parts[..parts.len().min(4)].join(".")
        };
        text.lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                // 1764583200.123456 IP 172.20.0.2.7000 > 172.20.0.3.7000: UDP, length 30
                if f.len() < 5 || f[1] != "IP" || f[3] != ">" {
                    return None;
                }
                let (sec, usec) = f[0].split_once('.')?;
                let ts =
                    sec.parse::<i64>().ok()? * 1_000_000_000 + usec.parse::<i64>().ok()? * 1000;
                Some((ts, host(f[2]), host(f[4])))
            })
            .collect()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How a TCP connect from inside `container`'s namespace to `addr:port` ended within `secs`:
/// `timeout`, `refused`, `eperm`, `connected` or the error text (the host's bash `/dev/tcp` in
/// the namespace).
fn tcp_connect_from(container: &str, addr: &str, port: u16, secs: u64) -> String {
    let out = Command::new("nsenter")
        .args(["-t", &pid(container), "-n", "timeout", &secs.to_string()])
        .args(["bash", "-c", &format!("exec 3<>/dev/tcp/{addr}/{port}")])
        .output()
        .expect("run nsenter bash");
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    match out.status.code() {
        Some(124) => "timeout".into(),
        Some(0) => "connected".into(),
        _ if err.contains("refused") => "refused".into(),
        _ if err.contains("not permitted") => "eperm".into(),
        _ => err,
    }
}

/// The `ended_ns` of the last `applied` and the `started_ns`/`ended_ns` of the last `reverted`
/// event of fault `id`.
fn applied_reverted(evs: &[(String, Value, trace::Event)], id: FaultId) -> (i64, i64, i64) {
    let f = |phase: &str, key: &str| {
        evs.iter()
            .rev()
            .find(|(_, d, _)| d["fault_id"] == id.to_string() && d["phase"] == phase)
            .and_then(|(_, d, _)| d[key].as_i64())
            .unwrap_or_else(|| panic!("no {phase} event of {id}: {evs:?}"))
    };
    (
        f("applied", "ended_ns"),
        f("reverted", "started_ns"),
        f("reverted", "ended_ns"),
    )
}

fn logs(container: &str) -> String {
    let out = Command::new("docker")
        .args(["logs", container])
        .output()
        .expect("docker logs");
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    s
}

/// Sequence numbers of `recv <me> seq=N from=<from>` lines.
fn received(container: &str, me: &str, from: &str) -> BTreeSet<u64> {
    let prefix = format!("recv {me} seq=");
    let from = format!("from={from}");
    logs(container)
        .lines()
        .filter(|l| l.starts_with(&prefix) && l.split_whitespace().any(|w| w == from))
        .filter_map(|l| l[prefix.len()..].split_whitespace().next()?.parse().ok())
        .collect()
}

/// Sequence numbers of `send <me> seq=N to=<to>` lines.
fn sent(container: &str, me: &str, to: &str) -> BTreeSet<u64> {
    let prefix = format!("send {me} seq=");
    let to = format!("to={to}");
    logs(container)
        .lines()
        .filter(|l| l.starts_with(&prefix) && l.split_whitespace().any(|w| w.starts_with(&to)))
        .filter_map(|l| l[prefix.len()..].split_whitespace().next()?.parse().ok())
        .collect()
}

/// Waits until `f` holds (bounded), panicking with `what` otherwise.
async fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while t0.elapsed() < timeout {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn injector(project: &str, seed: u64) -> (FaultInjector, EventReceiver) {
    let docker = bollard::Docker::connect_with_local_defaults()
        .expect("docker client")
        .negotiate_version()
        .await
        .expect("docker version negotiation");
    let (sink, rx) = EventSink::channel();
    let inj = FaultInjector::new(docker, project, sink, seed).expect("injector");
    (inj, rx)
}

fn req(action: &str, args: Value, target: FaultTarget) -> FaultRequest {
    let args = match args {
        Value::Object(m) => m.into_iter().collect(),
        _ => Vec::new(),
    };
    FaultRequest {
        action: action.into(),
        args,
        target,
        duration: None,
        experiment: Some("faults-test".into()),
        step: Some(1),
        intended_ns: recorder::sink::now_ns(),
    }
}

fn svc(s: &str) -> FaultTarget {
    FaultTarget::Service(s.into())
}

/// The symmetric partition between services `a` and `b`.
fn a_between_b() -> FaultTarget {
    FaultTarget::Between(vec!["a".into()], vec!["b".into()])
}

fn drain(rx: &mut EventReceiver) -> Vec<(String, Value, trace::Event)> {
    let mut v = Vec::new();
    rx.drain_into(&mut v, usize::MAX);
    v.into_iter()
        .filter(|e| e.source == "fault")
        .map(|e| {
            let d: Value = serde_json::from_str(e.data.as_deref().unwrap_or("null")).expect("json");
            (e.kind.clone(), d, e)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_stops_traffic_and_heal_restores_it() {
    require_docker!();
    let p = up("fpart", &compose_yaml(20, true));
    let [a, b, c] = ["a", "b", "c"].map(|s| container(&p.name, s));
    wait_for(
        "a and b to exchange messages",
        Duration::from_secs(20),
        || received(&a, "a", "b").len() > 5 && received(&b, "b", "a").len() > 5,
    )
    .await;
    let (mut inj, mut rx) = injector(&p.name, 7).await;

    let id = inj
        .apply(&req("partition", json!({}), a_between_b()))
        .await
        .expect("partition applied");
    // a drops what it sends to b and b what it sends to a, in their egress tc trees
    let hx = format!("{:x}", inj.tags().tc_handle());
    for (x, peer) in [(&a, &b), (&b, &a)] {
        let f = netns_filters(x);
        assert!(f.contains(&format!("flowid {hx}:2")), "{f}");
        let hexip: String = ip(peer)
            .split('.')
            .map(|o| format!("{:02x}", o.parse::<u8>().unwrap_or(0)))
            .collect();
        assert!(f.contains(&format!("match {hexip}/ffffffff at 16")), "{f}");
        assert!(
            extra_rules(x).is_empty(),
            "no iptables rules for a partition"
        );
    }
    assert!(!has_tree(&c, &inj), "c is not in the partition");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (ra, rb) = (received(&a, "a", "b").len(), received(&b, "b", "a").len());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (ra2, rb2) = (received(&a, "a", "b").len(), received(&b, "b", "a").len());
    assert_eq!((ra2, rb2), (ra, rb), "messages crossed the partition");
    // The senders kept trying (so the silence is the partition, not a dead sender).
    assert!(sent(&a, "a", "b").len() > 50);

    inj.revert(id).await;
    assert!(!has_tree(&a, &inj), "{}", netns_qdiscs(&a));
    assert!(!has_tree(&b, &inj), "{}", netns_qdiscs(&b));
    wait_for(
        "traffic to resume after healing",
        Duration::from_secs(10),
        || received(&a, "a", "b").len() > ra + 10 && received(&b, "b", "a").len() > rb + 10,
    )
    .await;

    // Isolating the whole network, then healing it with `heal`.
    let id2 = inj
        .apply(&req(
            "partition",
            json!({}),
            FaultTarget::Network("middle".into()),
        ))
        .await
        .expect("network partition");
    assert!(has_tree(&c, &inj), "c is on middle");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ra = received(&a, "a", "b").len();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        received(&a, "a", "b").len(),
        ra,
        "messages crossed the network partition"
    );
    let heal = inj
        .apply(&req(
            "heal",
            json!({}),
            FaultTarget::Network("middle".into()),
        ))
        .await
        .expect("heal");
    assert!(inj.active().is_empty(), "heal closed the partition");
    for x in [&a, &b, &c] {
        assert!(!has_tree(x, &inj), "{}", netns_qdiscs(x));
        assert!(extra_rules(x).is_empty(), "{:?}", extra_rules(x));
    }
    wait_for("traffic after heal", Duration::from_secs(10), || {
        received(&a, "a", "b").len() > ra + 10
    })
    .await;

    let evs = drain(&mut rx);
    let phases: Vec<(String, String, String)> = evs
        .iter()
        .map(|(k, d, _)| {
            (
                k.clone(),
                d["fault_id"].as_str().unwrap_or("").to_string(),
                d["phase"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        phases,
        vec![
            ("partition".into(), id.to_string(), "applied".into()),
            ("partition".into(), id.to_string(), "reverted".into()),
            ("partition".into(), id2.to_string(), "applied".into()),
            ("heal".into(), heal.to_string(), "applied".into()),
        ]
    );
    let (_, d, ev) = &evs[0];
    assert_eq!(d["experiment"], "faults-test");
    assert_eq!(d["step"], 1);
    assert_eq!(d["target"]["services"], json!(["a", "b"]));
    assert_eq!(d["target"]["containers"].as_array().map(Vec::len), Some(2));
    assert_eq!(d["error"], Value::Null);
    let (i, s, e) = (
        d["intended_ns"].as_i64().unwrap_or(0),
        d["started_ns"].as_i64().unwrap_or(0),
        d["ended_ns"].as_i64().unwrap_or(0),
    );
    assert!(i <= s && s <= e, "{i} {s} {e}");
    assert_eq!(ev.ts_ns, s);
    assert_eq!(evs[3].1["params"]["reverts"], json!([id2.to_string()]));
    assert_eq!(evs[2].1["target"]["networks"], json!(["middle"]));
}

/// Packets between `x` and `y` in `(from, to)`, each way: `(x → y, y → x)`.
fn between(pk: &[(i64, String, String)], x: &str, y: &str, from: i64, to: i64) -> (usize, usize) {
    let inn = pk.iter().filter(|p| p.0 > from && p.0 < to);
    let xy = inn.clone().filter(|p| p.1 == x && p.2 == y).count();
    let yx = inn.filter(|p| p.1 == y && p.2 == x).count();
    (xy, yx)
}

const MS: i64 = 1_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_cuts_the_wire_and_senders_see_no_error() {
    require_docker!();
    let p = up("fwire", &compose_yaml(20, false));
    let (a, b) = (container(&p.name, "a"), container(&p.name, "b"));
    let (ia, ib) = (ip(&a), ip(&b));
    wait_for(
        "a and b to exchange messages",
        Duration::from_secs(20),
        || received(&a, "a", "b").len() > 5 && received(&b, "b", "a").len() > 5,
    )
    .await;
    let cap = Capture::start(&bridge(&p.name, "middle"), &ia, &ib);
    tokio::time::sleep(Duration::from_millis(800)).await;
    // Before any fault a TCP connect to a closed port is refused at once (b answers RST).
    assert_eq!(tcp_connect_from(&a, &ib, 7999, 3), "refused");
    let (mut inj, mut rx) = injector(&p.name, 5).await;

    // Symmetric cut.
    let id = inj
        .apply(&req("partition", json!({}), a_between_b()))
        .await
        .expect("partition applied");
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The sender sees no local error: the SYN leaves the socket and is never answered.
    assert_eq!(tcp_connect_from(&a, &ib, 7999, 3), "timeout");
    assert_eq!(tcp_connect_from(&b, &ia, 7999, 2), "timeout");
    let sent_a = sent(&a, "a", "b").len();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(sent(&a, "a", "b").len() > sent_a + 10, "a kept sending");
    assert!(
        !logs(&a).contains("error"),
        "a's sends failed: {}",
        logs(&a)
    );
    inj.revert(id).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(tcp_connect_from(&a, &ib, 7999, 3), "refused");

    // One way: a → b cut, b → a passes.
    let one = inj
        .apply(&req(
            "partition",
            json!({}),
            FaultTarget::FromTo(vec!["a".into()], vec!["b".into()]),
        ))
        .await
        .expect("one-way partition");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (ra, rb) = (received(&a, "a", "b").len(), received(&b, "b", "a").len());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(received(&a, "a", "b").len() > ra + 20, "b → a still passes");
    assert_eq!(received(&b, "b", "a").len(), rb, "a → b is cut");
    inj.revert(one).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;

    let evs = drain(&mut rx);
    let pk = cap.packets();
    drop(cap);
    // The events say what was installed: a tc tree entry on one interface each side, or one
    // side only for the one-way cut; no iptables rules.
    let params = |f: FaultId| {
        evs.iter()
            .find(|(_, d, _)| d["fault_id"] == f.to_string() && d["phase"] == "applied")
            .map(|(_, d, _)| d["params"].clone())
            .unwrap_or_default()
    };
    assert_eq!(params(id)["tc_interfaces"], 2, "{}", params(id));
    assert_eq!(params(id)["rules"], 0, "{}", params(id));
    assert_eq!(params(one)["tc_interfaces"], 1, "{}", params(one));
    let (applied, reverted, back) = applied_reverted(&evs, id);
    // Before: both ways.
    let (xy, yx) = between(&pk, &ia, &ib, applied - 700 * MS, applied);
    assert!(xy > 10 && yx > 10, "before the partition: {xy} {yx}");
    // While it holds: not one packet between them crosses the bridge, either way.
    let (xy, yx) = between(&pk, &ia, &ib, applied + 100 * MS, reverted);
    assert_eq!((xy, yx), (0, 0), "packets crossed the partition");
    // After the revert: traffic again, both ways.
    let (xy, yx) = between(&pk, &ia, &ib, back, back + 900 * MS);
    assert!(xy > 10 && yx > 10, "after the partition: {xy} {yx}");
    // One way: nothing from a to b, b's messages to a keep flowing.
    let (applied, reverted, _) = applied_reverted(&evs, one);
    let (xy, yx) = between(&pk, &ia, &ib, applied + 100 * MS, reverted);
    assert_eq!(xy, 0, "a → b crossed the one-way cut");
    assert!(yx > 30, "b → a during the one-way cut: {yx}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_partition_and_bandwidth_share_one_tree() {
    require_docker!();
    let p = up("ftree", &compose_yaml(20, true));
    let [a, b, c] = ["a", "b", "c"].map(|s| container(&p.name, s));
    let (ia, ib) = (ip(&a), ip(&b));
    wait_for(
        "a and b to exchange messages",
        Duration::from_secs(20),
        || received(&a, "a", "b").len() > 5 && received(&b, "b", "a").len() > 5,
    )
    .await;
    let cap = Capture::start(&bridge(&p.name, "middle"), &ia, &ib);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (mut inj, mut rx) = injector(&p.name, 5).await;
    // A bandwidth limit on a first, then the partition of the whole network on top of it.
    let bw = inj
        .apply(&req("bandwidth", json!({"rate": "10mbit"}), svc("a")))
        .await
        .expect("bandwidth");
    let q = netns_qdiscs(&a);
    assert!(q.contains("htb") && q.contains("rate 10Mbit"), "{q}");
    let second = inj
        .apply(&req("bandwidth", json!({"rate": "1mbit"}), svc("a")))
        .await
        .expect_err("a second shaping on the same interface is refused");
    assert!(second.to_string().contains("already shaped"), "{second}");
    let part = inj
        .apply(&req(
            "partition",
            json!({}),
            FaultTarget::Network("middle".into()),
        ))
        .await
        .expect("network partition");
    for x in [&a, &b, &c] {
        assert!(has_tree(x, &inj), "{}", netns_qdiscs(x));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Reverting the partition keeps the bandwidth class on a; b and c lose their trees.
    inj.revert(part).await;
    assert!(
        netns_qdiscs(&a).contains("rate 10Mbit"),
        "{}",
        netns_qdiscs(&a)
    );
    assert!(!netns_filters(&a).contains(&format!("{:x}:2", inj.tags().tc_handle())));
    assert!(!has_tree(&b, &inj) && !has_tree(&c, &inj));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    inj.revert(bw).await;
    assert!(!has_tree(&a, &inj), "{}", netns_qdiscs(&a));

    let evs = drain(&mut rx);
    let pk = cap.packets();
    drop(cap);
    let (applied, reverted, back) = applied_reverted(&evs, part);
    let (xy, yx) = between(&pk, &ia, &ib, applied + 100 * MS, reverted);
    assert_eq!((xy, yx), (0, 0), "packets crossed the network partition");
    let (xy, yx) = between(&pk, &ia, &ib, back, back + 900 * MS);
    assert!(xy > 10 && yx > 10, "after the partition: {xy} {yx}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loss_drops_about_the_asked_share_and_revert_all_leaves_nothing() {
    require_docker!();
    let p = up("floss", &compose_yaml(8, false));
    let (a, b) = (container(&p.name, "a"), container(&p.name, "b"));
    wait_for("b to hear a", Duration::from_secs(20), || {
        received(&b, "b", "a").len() > 5
    })
    .await;
    let (mut inj, mut rx) = injector(&p.name, 1).await;
    // Ingress loss at b: what a sends to b arrives about half the time (a sees no error).
    inj.apply(&req("loss", json!({"percent": 50}), svc("b")))
        .await
        .expect("loss applied");
    let r = netns_iptables(&b);
    assert!(r.contains("--mode random --probability 0.5"), "{r}");
    // Also a bandwidth limit (tbf) on b's egress, to see revert_all take it away too.
    inj.apply(&req("bandwidth", json!({"rate": "10mbit"}), svc("b")))
        .await
        .expect("bandwidth applied");
    let q = netns_qdiscs(&b);
    assert!(
        q.contains("tbf") && q.contains(&inj.tags().tc_handle_str()),
        "{q}"
    );

    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = sent(&a, "a", "b");
    let lo = before.iter().next_back().copied().unwrap_or(0) + 1;
    wait_for("300 messages under loss", Duration::from_secs(30), || {
        sent(&a, "a", "b").range(lo..).count() >= 300
    })
    .await;
    let window: Vec<u64> = sent(&a, "a", "b").range(lo..).copied().collect();
    let hi = window[window.len() - 1];
    // Let the last messages arrive before counting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = received(&b, "b", "a").range(lo..=hi).count();
    let n = window.len() as f64;
    let share = got as f64 / n;
    // 50% drop: received share ~ Binomial(n, 0.5)/n; sd = 0.5/sqrt(n) <= 0.029 for n >= 300.
    // Accept +-0.15 (more than 5 sd): a broken rule gives ~1.0 or ~0.0.
    assert!(
        (0.35..=0.65).contains(&share),
        "received {got} of {n} messages ({share:.3}), expected about half"
    );

    inj.revert_all().await;
    assert!(inj.active().is_empty());
    assert!(extra_rules(&a).is_empty(), "{:?}", extra_rules(&a));
    assert!(extra_rules(&b).is_empty(), "{:?}", extra_rules(&b));
    let q = netns_qdiscs(&a);
    assert!(!q.contains("tbf"), "{q}");
    let evs = drain(&mut rx);
    let reverted = evs
        .iter()
        .filter(|(_, d, _)| d["phase"] == "reverted")
        .count();
    assert_eq!(reverted, 2, "{evs:?}");
    assert!(evs.iter().all(|(_, d, _)| d["error"].is_null()), "{evs:?}");
    assert_eq!(evs[0].1["params"]["probability"], json!(0.5));
    assert_eq!(evs[0].1["params"]["direction"], "ingress");
    assert_eq!(evs[0].2.service.as_deref(), Some("b"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_unpause_and_kill_with_a_signal() {
    require_docker!();
    let p = up("fpause", &compose_yaml(20, false));
    let (a, b) = (container(&p.name, "a"), container(&p.name, "b"));
    wait_for("b to hear a", Duration::from_secs(20), || {
        received(&b, "b", "a").len() > 5
    })
    .await;
    let since = sh("date", &["+%s"]).trim().to_string();
    let (mut inj, mut rx) = injector(&p.name, 3).await;
    let pause = inj
        .apply(&req("pause", json!({}), svc("a")))
        .await
        .expect("pause");
    assert_eq!(
        sh("docker", &["inspect", "-f", "{{.State.Paused}}", &a]).trim(),
        "true"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let n = received(&b, "b", "a").len();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(received(&b, "b", "a").len(), n, "a sent while paused");
    let unpause = inj
        .apply(&req("unpause", json!({}), svc("a")))
        .await
        .expect("unpause");
    assert_eq!(
        sh("docker", &["inspect", "-f", "{{.State.Paused}}", &a]).trim(),
        "false"
    );
    assert!(inj.active().is_empty(), "unpause closed the pause");
    wait_for("a to talk again", Duration::from_secs(10), || {
        received(&b, "b", "a").len() > n + 5
    })
    .await;

    // kill with SIGTERM and a duration: revert starts it again.
    let mut k = req("kill", json!({"signal": "TERM"}), svc("b"));
    k.duration = Some(Duration::from_secs(1));
    let kill = inj.apply(&k).await.expect("kill");
    wait_for("b to exit", Duration::from_secs(10), || {
        sh("docker", &["inspect", "-f", "{{.State.Running}}", &b]).trim() == "false"
    })
    .await;
    inj.revert(kill).await;
    assert_eq!(
        sh("docker", &["inspect", "-f", "{{.State.Running}}", &b]).trim(),
        "true"
    );
    let until = (sh("date", &["+%s"]).trim().parse::<u64>().unwrap_or(0) + 1).to_string();
    let events = sh(
        "docker",
        &[
            "events",
            "--since",
            &since,
            "--until",
            &until,
            "--filter",
            &format!("container={b}"),
            "--format",
            "{{.Action}} {{index .Actor.Attributes \"signal\"}}",
        ],
    );
    let actions: Vec<&str> = events.lines().map(str::trim).collect();
    assert!(actions.contains(&"kill 15"), "{events}");
    assert!(actions.iter().any(|l| l.starts_with("die")), "{events}");
    assert!(actions.iter().any(|l| l.starts_with("start")), "{events}");

    let evs = drain(&mut rx);
    let ids: Vec<String> = evs
        .iter()
        .map(|(k, d, _)| {
            format!(
                "{k} {} {}",
                d["fault_id"].as_str().unwrap_or(""),
                d["phase"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        ids,
        vec![
            format!("pause {pause} applied"),
            format!("unpause {unpause} applied"),
            format!("kill {kill} applied"),
            format!("kill {kill} reverted"),
        ]
    );
    assert_eq!(evs[2].1["params"]["signal"], "SIGTERM");
    assert_eq!(evs[2].1["params"]["duration_ms"], 1000);
    assert_eq!(evs[1].1["params"]["reverts"], json!([pause.to_string()]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netem_is_a_clear_error_where_the_kernel_lacks_it() {
    require_docker!();
    let p = up("fnetem", &compose_yaml(200, false));
    let a = container(&p.name, "a");
    let (mut inj, mut rx) = injector(&p.name, 1).await;
    let has_netem = inj.features().await.get("netem").copied().unwrap_or(false);
    let r = inj
        .apply(&req(
            "delay",
            json!({"delay": "100ms", "jitter": "10ms"}),
            svc("a"),
        ))
        .await;
    let evs = drain(&mut rx);
    assert_eq!(evs.len(), 1);
    if has_netem {
        let id: FaultId = r.expect("netem applies where the kernel has it");
        assert!(netns_qdiscs(&a).contains("netem"));
        inj.revert(id).await;
        assert!(!netns_qdiscs(&a).contains("netem"));
    } else {
        let e = r.expect_err("no netem on this kernel");
        assert!(matches!(e, FaultError::Unsupported(_)), "{e:?}");
        let msg = e.to_string();
        assert!(msg.contains("sch_netem"), "{msg}");
        assert!(msg.contains("netem"), "{msg}");
        let (k, d, _) = &evs[0];
        assert_eq!(k, "delay");
        assert_eq!(d["phase"], "failed");
        assert!(
            d["error"].as_str().unwrap_or("").contains("sch_netem"),
            "{d}"
        );
        // Nothing was left in the namespace.
        assert!(!netns_qdiscs(&a).contains(&inj.tags().tc_handle_str()));
        assert!(inj.active().is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_host_removes_rules_a_dropped_injector_left() {
    require_docker!();
    let p = up("fclean", &compose_yaml(200, true));
    let [a, b, c] = ["a", "b", "c"].map(|s| container(&p.name, s));
    {
        let (mut inj, _rx) = injector(&p.name, 1).await;
        inj.apply(&req(
            "partition",
            json!({}),
            FaultTarget::FromTo(vec!["a".into()], vec!["b".into()]),
        ))
        .await
        .expect("one-way partition");
        inj.apply(&req(
            "loss",
            json!({"probability": 0.2, "direction": "both"}),
            svc("c"),
        ))
        .await
        .expect("loss");
        inj.apply(&req("bandwidth", json!({"rate": "1mbit"}), svc("c")))
            .await
            .expect("bandwidth");
        inj.apply(&req("pause", json!({}), svc("b")))
            .await
            .expect("pause");
        // Dropped here without reverting, like a killed recorder.
    }
    // One-way: a drops its egress to b (a tc tree in a), b is untouched.
    assert!(netns_qdiscs(&a).contains("htb"), "{}", netns_qdiscs(&a));
    assert!(extra_rules(&b).is_empty() && !netns_qdiscs(&b).contains("htb"));
    assert!(netns_qdiscs(&c).contains("tbf"));
    let rep = cleanup_host(&p.name).await.expect("cleanup");
    assert_eq!(rep.containers_checked, 3, "{rep:?}");
    assert_eq!(rep.chains_removed, 2, "{rep:?}");
    // The trees of a (partition) and c (bandwidth).
    assert_eq!(rep.qdiscs_removed, 2, "{rep:?}");
    // Jumps: 2 in c; rules: 2 in c (loss in both directions).
    assert_eq!(rep.rules_removed, 4, "{rep:?}");
    assert_eq!(rep.unpaused.len(), 1, "{rep:?}");
    assert!(rep.errors.is_empty(), "{rep:?}");
    for x in [&a, &b, &c] {
        assert!(extra_rules(x).is_empty(), "{:?}", extra_rules(x));
        assert!(!netns_qdiscs(x).contains("tbf"));
        assert!(!netns_qdiscs(x).contains("htb"));
    }
    // A second run finds nothing.
    let again = cleanup_host(&p.name).await.expect("cleanup again");
    assert_eq!(
        (
            again.rules_removed,
            again.chains_removed,
            again.qdiscs_removed
        ),
        (0, 0, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_limits_restart_and_random_choice() {
    require_docker!();
    let p = up("fexec", &compose_yaml(50, false));
    let a = container(&p.name, "a");
    let b = container(&p.name, "b");
    let (mut inj, mut rx) = injector(&p.name, 11).await;

    // exec with a binary that exists in the FROM scratch image.
    inj.apply(&req(
        "exec",
        json!({"cmd": ["/demo-node", "version"]}),
        svc("a"),
    ))
    .await
    .expect("exec");
    let e = inj
        .apply(&req(
            "exec",
            json!({"cmd": "/demo-node no-such-mode"}),
            svc("a"),
        ))
        .await
        .expect_err("non-zero exit is a failure");
    assert!(e.to_string().contains("exited with"), "{e}");

    // limits: applied, then restored on revert.
    let id = inj
        .apply(&req(
            "limits",
            json!({"memory": "64m", "cpus": 0.5}),
            svc("a"),
        ))
        .await
        .expect("limits");
    let hc = memory_and_cpus(&a);
    assert_eq!(hc.trim(), "67108864 500000000");
    inj.revert(id).await;
    let hc = memory_and_cpus(&a);
    let v: Vec<i64> = hc
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    assert!(
        v.len() == 2 && v[0] > 1 << 40 && v[1] >= 1_000_000_000,
        "{hc}"
    );

    // A partition survives a restart of one side: re-applied in the new namespace.
    let part = inj
        .apply(&req("partition", json!({}), a_between_b()))
        .await
        .expect("partition");
    let old_pid = pid(&b);
    inj.apply(&req("restart", json!({"timeout": 1}), svc("b")))
        .await
        .expect("restart");
    assert_ne!(pid(&b), old_pid);
    assert!(
        has_tree(&b, &inj)
            && netns_filters(&b).contains(
                &ip(&a)
                    .split('.')
                    .map(|o| format!("{:02x}", o.parse::<u8>().unwrap_or(0)))
                    .collect::<String>()
            ),
        "partition re-applied in b's new namespace: {}",
        netns_filters(&b)
    );
    // Idempotent: a second notification for the same start changes nothing.
    inj.on_container_restart(&b).await;
    inj.revert(part).await;
    assert!(!has_tree(&a, &inj) && !has_tree(&b, &inj));

    // Random choice: recorded, and the same seed picks the same service.
    let pick = |seed: u64| {
        let name = p.name.clone();
        async move {
            let (mut inj, mut rx) = injector(&name, seed).await;
            inj.apply(&req(
                "exec",
                json!({"cmd": ["/demo-node", "version"]}),
                FaultTarget::Random(vec!["a".into(), "b".into()]),
            ))
            .await
            .expect("random exec");
            let evs = drain(&mut rx);
            (
                evs[0].1["target"]["chosen"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                evs[0].1["params"]["seed"].clone(),
            )
        }
    };
    let (c1, s1) = pick(99).await;
    let (c2, _) = pick(99).await;
    assert!(c1 == "a" || c1 == "b", "{c1}");
    assert_eq!(c1, c2);
    assert_eq!(s1, json!(99));

    let evs = drain(&mut rx);
    let phases: Vec<String> = evs
        .iter()
        .map(|(k, d, _)| format!("{k} {}", d["phase"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(
        phases,
        vec![
            "exec applied",
            "exec failed",
            "limits applied",
            "limits reverted",
            "partition applied",
            "partition reapplied",
            "restart applied",
            "partition reverted",
        ]
    );
    assert_eq!(evs[0].1["params"]["results"][0]["exit_code"], 0);
    assert!(evs
        .iter()
        .all(|(_, d, _)| d["phase"] == "failed" || d["error"].is_null()));
}

/// Fault timing accuracy of the injector alone (no run loop, no sensors): faults scheduled on a
/// timer, measured from the intended instant to the start and to the end of the apply. Prints
/// p50/p99. Run: `cargo test -p integration-tests --test integration -- --ignored --exact
/// faults::bench_fault_timing --nocapture` (BENCH_ROUNDS, default 100). The end-to-end figures in
/// docs/performance.md come from scripts/bench-faults.sh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: cargo test ... -- --ignored faults::bench_fault_timing"]
async fn bench_fault_timing() {
    require_docker!();
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let p = up("fbench", &compose_yaml(100, false));
    let (mut inj, mut rx) = injector(&p.name, 1).await;
    let plan: Vec<(&str, Value, FaultTarget)> = vec![
        ("pause", json!({}), svc("a")),
        ("unpause", json!({}), svc("a")),
        ("loss", json!({"percent": 10}), svc("a")),
        ("partition", json!({}), a_between_b()),
        ("bandwidth", json!({"rate": "10mbit"}), svc("b")),
    ];
    // One fault (and its revert) per slot; a slot is long enough that a slow apply does not
    // delay the next one, so "start" measures the scheduler and "end" the apply itself.
    const SLOT_MS: u64 = 250;
    let t0 = tokio::time::Instant::now() + Duration::from_millis(500);
    let wall0 = recorder::sink::now_ns() + 500_000_000;
    let mut k = 0u64;
    for _ in 0..rounds {
        for (action, args, target) in &plan {
            let at = t0 + Duration::from_millis(SLOT_MS * k);
            let mut r = req(action, args.clone(), target.clone());
            r.intended_ns = wall0 + (SLOT_MS * 1_000_000 * k) as i64;
            tokio::time::sleep_until(at).await;
            let id = inj.apply(&r).await.expect("apply");
            if !matches!(*action, "pause" | "unpause") {
                inj.revert(id).await;
            }
            k += 1;
        }
    }
    inj.revert_all().await;
    let evs = drain(&mut rx);
    let mut by: std::collections::BTreeMap<String, (Vec<f64>, Vec<f64>)> = Default::default();
    for (kind, d, _) in &evs {
        let phase = d["phase"].as_str().unwrap_or("");
        if phase != "applied" {
            continue;
        }
        let i = d["intended_ns"].as_i64().unwrap_or(0);
        let s = d["started_ns"].as_i64().unwrap_or(0);
        let e = d["ended_ns"].as_i64().unwrap_or(0);
        for key in [kind.clone(), "all".to_string()] {
            let ent = by.entry(key).or_default();
            ent.0.push((s - i) as f64 / 1e6);
            ent.1.push((e - i) as f64 / 1e6);
        }
    }
    let q = |v: &mut Vec<f64>, p: f64| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[((v.len() as f64 - 1.0) * p).round() as usize]
    };
    println!("fault timing over {rounds} rounds (ms from intended time)");
    println!(
        "{:<10} {:>5} {:>10} {:>10} {:>10} {:>10}",
        "action", "n", "start p50", "start p99", "end p50", "end p99"
    );
    for (kind, (mut s, mut e)) in by {
        let n = s.len();
        println!(
            "{kind:<10} {n:>5} {:>10.2} {:>10.2} {:>10.2} {:>10.2}",
            q(&mut s, 0.5),
            q(&mut s, 0.99),
            q(&mut e, 0.5),
            q(&mut e, 0.99)
        );
    }
}
