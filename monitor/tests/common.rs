//! What the monitor tests share: building events, compiling inline specs and the seed
//! specs under `specs/`, running a spec over events.

#![allow(dead_code)]

use monitor::{compile, Report, Runner, Selection, SourceFile, Spec};
use serde_json::json;
use std::path::{Path, PathBuf};
use trace::Event;

pub const S: i64 = 1_000_000_000;
pub const T0: i64 = 1_700_000_000 * S;

/// An event at `T0 + secs`.
pub fn ev(seq: u64, secs: f64, source: &str, kind: &str) -> Event {
    let mut e = Event::new(T0 + (secs * S as f64) as i64, source, kind);
    e.seq = seq;
    e
}

pub fn log(seq: u64, secs: f64, service: &str, line: &str) -> Event {
    ev(seq, secs, "log", "stdout")
        .service(service)
        .message(line)
}

pub fn specs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../specs")
}

fn resolve(path: &str, from: &str) -> Option<SourceFile> {
    let base = Path::new(from).parent().unwrap_or(Path::new("."));
    let p = base.join(path);
    let text = std::fs::read_to_string(&p).ok()?;
    Some(SourceFile::new(p.to_string_lossy(), text))
}

pub fn compile_str(text: &str) -> Result<Spec, monitor::Diagnostics> {
    compile(&[SourceFile::new("test.spec", text)], &|_, _| None)
}

pub fn spec(text: &str) -> Spec {
    match compile_str(text) {
        Ok(s) => s,
        Err(d) => panic!("spec does not compile:\n{}", d.render()),
    }
}

pub fn seed_spec(file: &str) -> Spec {
    let p = specs_dir().join(file);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    match compile(&[SourceFile::new(p.to_string_lossy(), text)], &resolve) {
        Ok(s) => s,
        Err(d) => panic!("{file} does not compile:\n{}", d.render()),
    }
}

pub fn run(spec: &Spec, sel: Selection, events: &[Event], end: Option<i64>) -> Report {
    let mut r = Runner::new(spec, &sel).unwrap_or_else(|e| panic!("{e}"));
    for e in events {
        r.observe(&e.as_ref());
    }
    let end = end.unwrap_or_else(|| events.last().map(|e| e.ts_ns).unwrap_or(T0));
    r.finish(end)
}

pub fn monitors(names: &[&str]) -> Selection {
    Selection {
        monitors: names.iter().map(|s| s.to_string()).collect(),
        experiments: vec![],
    }
}

pub fn experiment(name: &str) -> Selection {
    Selection {
        monitors: vec![],
        experiments: vec![name.to_string()],
    }
}

/// Akka ClusterStatus JMX event as seen from `service`.
pub fn cluster(seq: u64, secs: f64, service: &str, up: &[&str], unreachable: &[&str]) -> Event {
    let addr = |h: &str| format!("akka.tcp://Sys@{h}:2552");
    let members: Vec<_> = up
        .iter()
        .map(|h| json!({"address": addr(h), "status": "Up", "roles": ["dc-default"]}))
        .collect();
    let unr: Vec<_> = unreachable
        .iter()
        .map(|h| json!({"node": addr(h), "observed-by": [addr(service)]}))
        .collect();
    ev(seq, secs, "jmx", "akka:type=Cluster")
        .service(service)
        .data(&json!({"ClusterStatus": {"members": members, "self-address": addr(service), "unreachable": unr}, "Leader": addr(up.first().copied().unwrap_or(""))}))
}

/// A recorder fault event.
pub fn fault(
    seq: u64,
    secs: f64,
    action: &str,
    services: &[&str],
    networks: &[&str],
    phase: &str,
) -> Event {
    let mut e = ev(seq, secs, "fault", action).data(&json!({
        "fault_id": format!("f{seq}"), "phase": phase, "experiment": null, "step": null,
        "target": {"services": services, "containers": [], "networks": networks},
        "params": {}, "intended_ns": 0, "started_ns": 0, "ended_ns": 0, "error": if phase == "failed" { json!("boom") } else { json!(null) }
    }));
    if services.len() == 1 {
        e = e.service(services[0]);
    }
    e.message(format!("{action} {services:?} {networks:?}"))
}

/// Compiles `src` as a file next to the seed specs, so it can `import "akka.spec"` etc.
pub fn with_seed_imports(src: &str) -> Spec {
    let dir = specs_dir();
    let file = dir.join("inline-test.spec");
    match compile(&[SourceFile::new(file.to_string_lossy(), src)], &resolve) {
        Ok(s) => s,
        Err(d) => panic!("inline spec does not compile:\n{}", d.render()),
    }
}

/// A packet event built the way the trace reader merges `packets.parquet` rows in
/// (`PacketRecord::to_event`). `flags`: tcpdump-style, e.g. "S", "S.", "P.".
#[allow(clippy::too_many_arguments)]
pub fn packet(
    seq: u64,
    secs: f64,
    src: &str,
    sport: u16,
    dst: &str,
    dport: u16,
    flags: &str,
) -> Event {
    use trace::packets::tcp_flags as f;
    let mut bits = 0u8;
    for c in flags.chars() {
        bits |= match c {
            'S' => f::SYN,
            'F' => f::FIN,
            'R' => f::RST,
            'P' => f::PSH,
            '.' => f::ACK,
            _ => 0,
        };
    }
    let rec = trace::PacketRecord {
        ts_ns: T0 + (secs * S as f64) as i64,
        seq,
        capture: "net-middle".into(),
        interface: "br-middle".into(),
        network: "ipv4".into(),
        protocol: "tcp".into(),
        src_addr: Some(format!("10.5.0.{}", src.len())),
        dst_addr: Some(format!("10.5.0.{}", dst.len() + 10)),
        src_port: Some(sport),
        dst_port: Some(dport),
        length: 74,
        captured_length: 74,
        tcp_flags: Some(bits),
        src_service: Some(src.into()),
        dst_service: Some(dst.into()),
    };
    rec.to_event()
}
