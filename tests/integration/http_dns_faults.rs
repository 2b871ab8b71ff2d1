//! The `http` and `dns` faults against real containers (the project's FROM scratch image in
//! `web` and `client` mode, nothing added to it): a route answered 503 while another passes on
//! the same keep-alive connection (pipelined too), a delay measured from the host, a reset, the
//! outbound direction seen in the client's own calls, a name resolved to another address and back
//! after the revert with the namespace's nat table restored exactly, and a SIGKILLed recorder
//! whose redirect cuts the service off until `cleanup` removes it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use integration_tests::{
    bin, ensure_images, require_docker, unique_project, ProjectGuard, DEMO_IMAGE,
};
use recorder::faults::{FaultInjector, FaultRequest, FaultTarget};
use recorder::sink::{EventReceiver, EventSink};
use serde_json::{json, Value};

use crate::recorder_common::up;

/// The demo image: `DEMO_NODE_IMAGE` when set (scripts/build-images.sh builds that tag then),
/// else the shared `chaos-demo-node:latest`.
fn image() -> String {
    std::env::var("DEMO_NODE_IMAGE").unwrap_or_else(|_| DEMO_IMAGE.to_string())
}

fn compose_yaml() -> String {
    let image = image();
    format!(
        r#"services:
  web:
    image: {image}
    command: ["web", "--id", "w1", "--port", "8080"]
    stop_grace_period: 1s
  client:
    image: {image}
    command: ["client", "--id", "c1", "--url", "http://web:8080/pay", "--interval", "100ms",
              "--retries", "2", "--backoff", "20ms", "--breaker-fails", "0"]
    stop_grace_period: 1s
"#
    )
}

fn sh(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

fn container(project: &str, service: &str) -> String {
    let out = sh(
        "docker",
        &[
            "ps",
            "-q",
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
    assert!(!id.is_empty(), "no {service} container in {project}");
    id
}

fn ip(c: &str) -> String {
    sh(
        "docker",
        &[
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            c,
        ],
    )
    .trim()
    .to_string()
}

fn pid(c: &str) -> String {
    sh("docker", &["inspect", "-f", "{{.State.Pid}}", c])
        .trim()
        .to_string()
}

/// `iptables -t nat -S` inside the container's namespace.
fn nat_rules(c: &str) -> String {
    sh(
        "nsenter",
        &["-t", &pid(c), "-n", "iptables", "-w", "-t", "nat", "-S"],
    )
}

fn logs(c: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args(["logs", c])
        .output()
        .expect("docker logs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
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

fn req(action: &str, args: Value, service: &str) -> FaultRequest {
    let args = match args {
        Value::Object(m) => m.into_iter().collect(),
        _ => Vec::new(),
    };
    FaultRequest {
        action: action.into(),
        args,
        target: FaultTarget::Service(service.into()),
        duration: None,
        experiment: None,
        step: None,
        intended_ns: recorder::sink::now_ns(),
    }
}

/// Every event so far: (source, kind, data).
fn drain(rx: &mut EventReceiver) -> Vec<(String, String, Value)> {
    let mut v = Vec::new();
    rx.drain_into(&mut v, usize::MAX);
    v.into_iter()
        .map(|e| {
            let d = serde_json::from_str(e.data.as_deref().unwrap_or("null")).expect("json");
            (e.source.clone(), e.kind.clone(), d)
        })
        .collect()
}

/// Reads one HTTP/1.1 response (content-length framed) from `s`: (status, body).
fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<(u16, String)> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let status: u16 = head
                .split_whitespace()
                .nth(1)
                .and_then(|x| x.parse().ok())
                .unwrap_or(0);
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap_or(0))
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).to_string();
                buf.drain(..end + 4 + len);
                return Ok((status, body));
            }
        }
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "closed",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr.parse().expect("addr"), Duration::from_secs(3))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    s
}

fn get(s: &mut TcpStream, path: &str) {
    let r = format!("GET {path} HTTP/1.1\r\nhost: web\r\n\r\n");
    s.write_all(r.as_bytes()).expect("write request");
}

/// One GET on a fresh connection: (status, body, elapsed) or the error.
fn get_once(addr: &str, path: &str) -> Result<(u16, String, Duration), String> {
    let t = Instant::now();
    let sa: std::net::SocketAddr = addr.parse().map_err(|e| format!("address {addr}: {e}"))?;
    let mut s = TcpStream::connect_timeout(&sa, Duration::from_secs(3))
        .map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    get(&mut s, path);
    let mut buf = Vec::new();
    read_response(&mut s, &mut buf)
        .map(|(st, b)| (st, b, t.elapsed()))
        .map_err(|e| format!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_route_aborted_while_another_passes_then_delay_and_reset() {
    require_docker!();
    let p = up("httpabort", &compose_yaml());
    // only this test's requests reach the web service
    sh(
        "docker",
        &["stop", "-t", "1", &container(&p.name, "client")],
    );
    let web = container(&p.name, "web");
    let addr = format!("{}:8080", ip(&web));
    let nat_before = nat_rules(&web);
    // the service answers before the fault
    let deadline = Instant::now() + Duration::from_secs(20);
    while get_once(&addr, "/health").is_err() {
        assert!(Instant::now() < deadline, "web never answered");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (mut inj, mut rx) = injector(&p.name, 3).await;
    let id = inj
        .apply(&req(
            "http",
            json!({"port": 8080, "path": "/pay", "status": 503, "body": "no payments\n"}),
            "web",
        ))
        .await
        .expect("apply http fault");
    let ev = drain(&mut rx);
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!((ev[0].0.as_str(), ev[0].1.as_str()), ("fault", "http"));
    assert_eq!(ev[0].2["phase"], "applied");
    assert_eq!(ev[0].2["params"]["direction"], "inbound");
    assert!(nat_rules(&web).contains("REDIRECT"), "{}", nat_rules(&web));
    let logged_before = logs(&web).len();

    // one keep-alive connection, requests one by one, then three pipelined in one write
    let mut s = connect(&addr);
    let mut buf = Vec::new();
    get(&mut s, "/pay");
    assert_eq!(
        read_response(&mut s, &mut buf).expect("pay"),
        (503, "no payments\n".to_string())
    );
    get(&mut s, "/health");
    assert_eq!(
        read_response(&mut s, &mut buf).expect("health"),
        (200, "ok w1 /health\n".to_string())
    );
    s.write_all(
        b"GET /a HTTP/1.1\r\nhost: web\r\n\r\nGET /pay/7 HTTP/1.1\r\nhost: web\r\n\r\nPOST /b HTTP/1.1\r\nhost: web\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    )
    .expect("pipelined");
    let r: Vec<(u16, String)> = (0..3)
        .map(|_| read_response(&mut s, &mut buf).expect("pipelined response"))
        .collect();
    assert_eq!(
        r,
        [
            (200, "ok w1 /a\n".to_string()),
            (503, "no payments\n".to_string()),
            (200, "ok w1 /b\n".to_string())
        ]
    );
    drop(s);
    // the service saw only the requests that passed
    let seen: Vec<String> = logs(&web)
        .into_iter()
        .skip(logged_before)
        .filter(|l| l.starts_with("web w1 "))
        .collect();
    assert!(!seen.iter().any(|l| l.contains("/pay")), "{seen:#?}");
    assert!(seen.iter().any(|l| l.contains("POST /b")), "{seen:#?}");

    // each matched request is a proxy event, and no further fault event was written
    let ev = drain(&mut rx);
    assert!(ev.iter().all(|(s, _, _)| s == "proxy"), "{ev:?}");
    let lines: Vec<&str> = ev
        .iter()
        .filter_map(|(_, _, d)| d["request"].as_str())
        .collect();
    assert_eq!(
        lines,
        ["GET /pay HTTP/1.1", "GET /pay/7 HTTP/1.1"],
        "{ev:?}"
    );
    assert!(ev
        .iter()
        .all(|(_, k, d)| k == "http" && d["action"] == "respond" && d["status"] == 503));
    assert!(ev.iter().all(|(_, _, d)| d["fault_id"] == id.to_string()));

    inj.revert(id).await;
    let ev = drain(&mut rx);
    assert_eq!(ev[0].2["phase"], "reverted", "{ev:?}");
    assert_eq!(ev[0].2["error"], Value::Null, "{ev:?}");
    assert_eq!(
        nat_rules(&web),
        nat_before,
        "the nat table was not restored"
    );
    assert_eq!(get_once(&addr, "/pay").expect("pay after").0, 200);

    // a delay on one route, measured from the host; another route is not delayed
    let id = inj
        .apply(&req(
            "http",
            json!({"port": 8080, "path_regex": "^/slow", "delay": "400ms", "method": "GET"}),
            "web",
        ))
        .await
        .expect("apply delay");
    let (st, body, slow) = get_once(&addr, "/slow").expect("slow");
    assert_eq!((st, body.as_str()), (200, "ok w1 /slow\n"));
    let (_, _, fast) = get_once(&addr, "/fast").expect("fast");
    assert!(slow >= Duration::from_millis(400), "{slow:?}");
    assert!(fast < Duration::from_millis(300), "{fast:?}");
    inj.revert(id).await;
    let ev = drain(&mut rx);
    let delays: Vec<&Value> = ev
        .iter()
        .filter(|(s, _, _)| s == "proxy")
        .map(|(_, _, d)| d)
        .collect();
    assert_eq!(delays.len(), 1, "{ev:?}");
    assert_eq!(delays[0]["action"], "delay");
    assert_eq!(delays[0]["delay_ms"], 400.0);

    // a reset: the client's connection is torn down, no response
    let id = inj
        .apply(&req(
            "http",
            json!({"port": 8080, "header": "x-kill: yes", "reset": true}),
            "web",
        ))
        .await
        .expect("apply reset");
    let mut s = connect(&addr);
    s.write_all(b"GET /x HTTP/1.1\r\nhost: web\r\nx-kill: yes\r\n\r\n")
        .expect("write");
    let mut b = [0u8; 64];
    let r = s.read(&mut b);
    assert!(
        matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "{r:?}"
    );
    assert_eq!(get_once(&addr, "/x").expect("without header").0, 200);
    inj.revert(id).await;
    assert_eq!(nat_rules(&web), nat_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_http_fault_is_seen_by_the_clients_retries() {
    require_docker!();
    let p = up("httpout", &compose_yaml());
    let client = container(&p.name, "client");
    let web = container(&p.name, "web");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !logs(&client).iter().any(|l| l.contains("result=ok")) {
        assert!(Instant::now() < deadline, "the client never succeeded");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (mut inj, mut rx) = injector(&p.name, 11).await;
    let id = inj
        .apply(&req(
            "http",
            json!({"port": 8080, "to": "web", "path": "/pay", "status": 503, "percent": 50}),
            "client",
        ))
        .await
        .expect("apply outbound http fault");
    let from = logs(&client).len();
    std::thread::sleep(Duration::from_secs(3));
    inj.revert(id).await;
    let lines: Vec<String> = logs(&client).into_iter().skip(from).collect();
    // some attempts got the injected 503, and calls recovered by retrying
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("attempt c1 ") && l.contains(" status=503 ")),
        "{lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("call c1 ")
            && l.contains("result=ok")
            && !l.contains("attempts=1 ")),
        "{lines:#?}"
    );
    let ev = drain(&mut rx);
    let proxy: Vec<&Value> = ev
        .iter()
        .filter(|(s, _, _)| s == "proxy")
        .map(|(_, _, d)| d)
        .collect();
    let responded = proxy.iter().filter(|d| d["action"] == "respond").count();
    let passed = proxy.iter().filter(|d| d["action"] == "pass").count();
    assert!(responded >= 3 && passed >= 3, "{proxy:#?}");
    assert!(proxy.iter().all(|d| d["direction"] == "outbound"));
    // the 503s the client logged are the ones the proxy answered (none reached the service)
    let logged_503 = lines
        .iter()
        .filter(|l| l.starts_with("attempt c1 ") && l.contains(" status=503 "))
        .count();
    assert!(
        logged_503 <= responded && logged_503 + 2 >= responded,
        "{logged_503} vs {responded}"
    );
    assert!(!logs(&web).iter().any(|l| l.contains("status=503")));
}

/// `demo-node resolve --host NAME` inside the container.
fn resolve_in(c: &str, name: &str) -> String {
    sh(
        "docker",
        &["exec", c, "/demo-node", "resolve", "--host", name],
    )
    .trim()
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_name_resolves_to_another_address_and_back_after_revert() {
    require_docker!();
    let p = up("dnsover", &compose_yaml());
    let client = container(&p.name, "client");
    let web_ip = ip(&container(&p.name, "web"));
    assert_eq!(resolve_in(&client, "web"), format!("resolve web {web_ip}"));
    let nat_before = nat_rules(&client);
    assert!(
        nat_before.contains("DOCKER_OUTPUT"),
        "docker's embedded DNS rules: {nat_before}"
    );
    let (mut inj, mut rx) = injector(&p.name, 5).await;
    let id = inj
        .apply(&req(
            "dns",
            json!({"name": ["web", "*.example.test"], "address": "10.9.8.7"}),
            "client",
        ))
        .await
        .expect("apply dns fault");
    let ev = drain(&mut rx);
    assert_eq!(ev[0].2["phase"], "applied", "{ev:?}");
    assert_eq!(ev[0].2["params"]["resolver"], "127.0.0.11");
    assert_eq!(resolve_in(&client, "web"), "resolve web 10.9.8.7");
    assert_eq!(
        resolve_in(&client, "api.example.test"),
        "resolve api.example.test 10.9.8.7"
    );
    // other names are forwarded to Docker's resolver
    let other = resolve_in(&client, "client");
    assert!(
        other.starts_with("resolve client 1") && !other.contains("10.9.8.7"),
        "{other}"
    );
    let ev = drain(&mut rx);
    let names: Vec<&str> = ev
        .iter()
        .filter(|(s, k, d)| s == "proxy" && k == "dns" && d["type"] == "A")
        .filter_map(|(_, _, d)| d["name"].as_str())
        .collect();
    // the client's own calls resolve `web` too
    assert!(
        names
            .iter()
            .all(|n| *n == "web" || *n == "api.example.test"),
        "{ev:?}"
    );
    assert_eq!(
        names.iter().filter(|n| **n == "api.example.test").count(),
        1
    );
    assert!(names.contains(&"web"), "{ev:?}");
    inj.revert(id).await;
    let ev = drain(&mut rx);
    // the client keeps resolving `web`: a query answered just before the revert may come first
    let reverted = ev
        .iter()
        .find(|(s, _, _)| s == "fault")
        .unwrap_or_else(|| panic!("no fault event after the revert: {ev:?}"));
    assert_eq!(reverted.2["phase"], "reverted", "{ev:?}");
    assert_eq!(reverted.2["error"], Value::Null, "{ev:?}");
    assert_eq!(
        nat_rules(&client),
        nat_before,
        "docker's rules not restored"
    );
    assert_eq!(resolve_in(&client, "web"), format!("resolve web {web_ip}"));

    // NXDOMAIN, then a delay that still forwards
    let id = inj
        .apply(&req(
            "dns",
            json!({"name": "web", "error": "nxdomain"}),
            "client",
        ))
        .await
        .expect("apply nxdomain");
    let r = resolve_in(&client, "web");
    assert!(r.starts_with("resolve web error="), "{r}");
    inj.revert(id).await;
    let id = inj
        .apply(&req(
            "dns",
            json!({"name": "web", "delay": "600ms"}),
            "client",
        ))
        .await
        .expect("apply dns delay");
    let t = Instant::now();
    assert_eq!(resolve_in(&client, "web"), format!("resolve web {web_ip}"));
    assert!(
        t.elapsed() >= Duration::from_millis(600),
        "{:?}",
        t.elapsed()
    );
    inj.revert(id).await;
    assert_eq!(nat_rules(&client), nat_before);
}

/// The recorder under test, killed if the test fails before it does.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const SIGKILL_SPEC: &str = r#"
monitor serving = eventually log where message ~ r"^web w1 GET /pay status=200" within 30s
monitor noSuchLine = eventually log where message == "no such line" within 120s

experiment HeldHttpFault {
  expect serving
  do http(port: 8080, path: "/", status: 503) on web for 120s
  expect noSuchLine
}
"#;

/// A recorder killed with SIGKILL while its proxy serves the web's port: the redirect stays and
/// points at nothing, so the service is cut off; `cleanup` removes the redirect and the service
/// answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_recorder_cuts_the_service_off_until_cleanup() {
    use crate::recorder_common::write_scenario;
    require_docker!();
    ensure_images();
    let project = unique_project("httpkill");
    let _guard = ProjectGuard::new(&project);
    let (dir, scenario) = write_scenario(
        &project,
        &compose_yaml(),
        "time_limit = \"150s\"",
        "[experiment]\nspecs = [\"exp.spec\"]\nname = \"HeldHttpFault\"\n",
    );
    std::fs::write(dir.path().join("exp.spec"), SIGKILL_SPEC).expect("write spec");
    let mut child = KillOnDrop(
        Command::new(bin("recorder"))
            .args(["run", "--quiet"])
            .arg(&scenario)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn recorder"),
    );
    let start = Instant::now();
    let (web, addr) = loop {
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "the fault never held"
        );
        std::thread::sleep(Duration::from_millis(300));
        let ps = sh(
            "docker",
            &[
                "ps",
                "-q",
                "--filter",
                &format!("label=com.docker.compose.project={project}"),
                "--filter",
                "label=com.docker.compose.service=web",
            ],
        );
        if ps.trim().is_empty() {
            continue;
        }
        let web = container(&project, "web");
        let addr = format!("{}:8080", ip(&web));
        if matches!(get_once(&addr, "/pay"), Ok((503, _, _))) {
            break (web, addr);
        }
    };
    let st = Command::new("kill")
        .args(["-KILL", &child.0.id().to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
    let _ = child.0.wait();
    // the redirect outlived the proxy: connections to the port are refused
    assert!(nat_rules(&web).contains("REDIRECT"));
    let r = get_once(&addr, "/pay");
    assert!(
        matches!(&r, Err(e) if e.contains("refused")),
        "the service should be cut off: {r:?}"
    );
    let docker = bollard::Docker::connect_with_local_defaults()
        .expect("docker client")
        .negotiate_version()
        .await
        .expect("docker version negotiation");
    let rep = recorder::faults::cleanup_with(&docker, &project)
        .await
        .expect("cleanup");
    assert_eq!(rep.rules_removed, 1, "{rep:?}");
    assert!(rep.errors.is_empty(), "{rep:?}");
    assert!(!nat_rules(&web).contains("REDIRECT"));
    let r = get_once(&addr, "/pay").expect("served again");
    assert_eq!(r.0, 200);
}

/// examples/http-retries recorded and judged: the client's retries hide a /pay route failing
/// half the time, its breaker opens when every call fails and closes after; every 503 the client
/// saw is one the proxy answered (a `proxy` event), and the proxy events are not fault events.
#[test]
fn http_retries_example_records_and_judges() {
    use crate::demo_e2e::{judge_example, record_example};
    require_docker!();
    let rec = record_example("http-retries", "PayRetries", Duration::from_secs(150));
    judge_example(&rec.trace, &["specs/http-retries.spec"], "PayRetries");
    let data = |e: &trace::Event| -> Value {
        serde_json::from_str(e.data.as_deref().unwrap_or("null")).expect("json")
    };
    let phases: Vec<String> = rec
        .events
        .iter()
        .filter(|e| e.source == "fault")
        .map(|e| format!("{} {}", e.kind, data(e)["phase"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(
        phases,
        [
            "http applied",
            "http reverted",
            "http applied",
            "http reverted"
        ]
    );
    let proxy: Vec<Value> = rec
        .events
        .iter()
        .filter(|e| e.source == "proxy" && e.kind == "http")
        .map(data)
        .collect();
    let responded = proxy.iter().filter(|d| d["action"] == "respond").count();
    assert!(
        responded >= 5 && proxy.iter().any(|d| d["action"] == "pass"),
        "{proxy:#?}"
    );
    let client_503 = rec
        .events
        .iter()
        .filter(|e| {
            e.source == "log"
                && e.message
                    .as_deref()
                    .is_some_and(|m| m.starts_with("attempt shop ") && m.contains(" status=503 "))
        })
        .count();
    assert_eq!(client_503, responded);
}

/// Sequential requests from the host to the web service: `n` on one keep-alive connection and
/// `n / 4` on a new connection each; returns (keep-alive requests/s, µs per keep-alive request,
/// µs per request on a new connection).
fn measure(addr: &str, n: usize) -> (f64, f64, f64) {
    let mut s = connect(addr);
    let mut buf = Vec::new();
    let t = Instant::now();
    for _ in 0..n {
        get(&mut s, "/bench");
        let (st, _) = read_response(&mut s, &mut buf).expect("response");
        assert_eq!(st, 200);
    }
    let ka = t.elapsed();
    let m = n / 4;
    let t = Instant::now();
    for _ in 0..m {
        assert_eq!(get_once(addr, "/bench").expect("response").0, 200);
    }
    let fresh = t.elapsed();
    (
        n as f64 / ka.as_secs_f64(),
        ka.as_secs_f64() * 1e6 / n as f64,
        fresh.as_secs_f64() * 1e6 / m as f64,
    )
}

/// The cost of the pass-through path of an `http` fault (no request matches): requests/s and
/// latency per request from the host, without and with the proxy. Run by
/// scripts/bench-http-fault.sh; prints the table of docs/performance.md.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run by scripts/bench-http-fault.sh"]
async fn bench_http_passthrough_overhead() {
    require_docker!();
    let p = up("httpbench", &compose_yaml());
    sh(
        "docker",
        &["stop", "-t", "1", &container(&p.name, "client")],
    );
    let web = container(&p.name, "web");
    let addr = format!("{}:8080", ip(&web));
    let deadline = Instant::now() + Duration::from_secs(20);
    while get_once(&addr, "/health").is_err() {
        assert!(Instant::now() < deadline, "web never answered");
        std::thread::sleep(Duration::from_millis(100));
    }
    let n: usize = std::env::var("BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4000);
    let (mut inj, _rx) = injector(&p.name, 1).await;
    measure(&addr, n / 10);
    let direct = measure(&addr, n);
    let id = inj
        .apply(&req(
            "http",
            json!({"port": 8080, "path": "/never", "status": 503}),
            "web",
        ))
        .await
        .expect("apply");
    measure(&addr, n / 10);
    let proxied = measure(&addr, n);
    inj.revert(id).await;
    let direct2 = measure(&addr, n);
    println!("| path | keep-alive req/s | µs per keep-alive request | µs per request on a new connection |");
    println!("| --- | ---: | ---: | ---: |");
    for (name, r) in [
        ("direct (before)", direct),
        ("through the proxy, no match", proxied),
        ("direct (after the revert)", direct2),
    ] {
        println!("| {name} | {:.0} | {:.0} | {:.0} |", r.0, r.1, r.2);
    }
}
