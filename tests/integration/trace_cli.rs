//! End-to-end tests of `analyzer info | events | finalize | generate` and of the exit codes and
//! one-line errors for bad input. The binary is found (and built if needed) by
//! `integration_tests::bin`.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;
use trace::{ReadOptions, Trace};

fn analyzer() -> PathBuf {
    integration_tests::bin("analyzer")
}

fn run(args: &[&str]) -> Output {
    integration_tests::run(&analyzer(), args)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn generate(dir: &Path, extra: &[&str]) {
    let d = dir.to_str().unwrap();
    let mut args = vec!["generate", d];
    args.extend_from_slice(extra);
    let o = run(&args);
    assert!(o.status.success(), "generate failed: {}", stderr(&o));
}

/// Asserts a one-line error naming `what`, with `code`, and no panic.
fn assert_error(o: &Output, code: i32, what: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(code), "stderr: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "want one line, got: {err}"
    );
    assert!(err.contains(what), "want {what:?} in: {err}");
}

#[test]
fn info_summarises_a_generated_trace() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t");
    generate(
        &dir,
        &[
            "--scenario",
            "split-brain",
            "--auto-down",
            "10",
            "--duration",
            "70",
            "--experiment",
            "X",
            "--packet-rate",
            "10",
        ],
    );
    let o = run(&["info", dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("finalized:  yes"), "{text}");
    assert!(text.contains("partition"), "{text}");
    let o = run(&["info", "--json", dir.to_str().unwrap()]);
    let j: Value = serde_json::from_slice(&o.stdout).unwrap();
    // Cross-check with the library reader.
    let t = Trace::open(&dir).unwrap();
    let mut n = 0u64;
    let mut faults = 0u64;
    for b in t.events(&ReadOptions::default()).unwrap() {
        for e in b.unwrap().iter() {
            n += 1;
            faults += (e.source == "fault") as u64;
        }
    }
    assert_eq!(j["events"], n);
    assert_eq!(j["by_source"]["fault"], faults);
    assert_eq!(j["faults"].as_array().unwrap().len() as u64, faults);
    assert!(j["packets"].as_u64().unwrap() > 0);
}

#[test]
fn events_filters_and_formats() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t");
    generate(&dir, &["--scenario", "gc-pause", "--duration", "40"]);
    let d = dir.to_str().unwrap();
    // JSON lines: filters by source, service and time; in order.
    let o = run(&[
        "events",
        d,
        "--source",
        "jmx",
        "--service",
        "left-a",
        "--since",
        "+10s",
        "--until",
        "+20s",
        "--format",
        "jsonl",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows: Vec<Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 10, "one poll per second");
    let start = Trace::open(&dir).unwrap().manifest().started_ns.unwrap();
    for r in &rows {
        assert_eq!(r["source"], "jmx");
        assert_eq!(r["service"], "left-a");
        let ts = r["ts_ns"].as_i64().unwrap();
        assert!(ts >= start + 10_000_000_000 && ts < start + 20_000_000_000);
        assert!(
            r["data"]["ClusterStatus"]["members"].is_array(),
            "data is parsed JSON"
        );
    }
    // --grep and --kind, CSV with a header.
    let o = run(&[
        "events",
        d,
        "--grep",
        "UNREACHABLE",
        "--kind",
        "stdout",
        "--format",
        "csv",
    ]);
    let out = stdout(&o);
    let mut lines = out.lines();
    assert_eq!(
        lines.next(),
        Some("ts_ns,time,seq,source,service,container,kind,message,data")
    );
    let body: Vec<&str> = lines.collect();
    assert_eq!(body.len(), 3, "three peers mark right-a unreachable: {out}");
    assert!(body
        .iter()
        .all(|l| l.contains("UNREACHABLE") && l.contains(",log,")));
    // --limit and the table.
    let o = run(&["events", d, "--limit", "5"]);
    assert_eq!(stdout(&o).lines().count(), 5);
    // --count agrees with the reader.
    let o = run(&["events", d, "--count", "--source", "fault"]);
    assert_eq!(stdout(&o).trim(), "2");
    // RFC 3339 times work like offsets.
    let o1 = run(&["events", d, "--count", "--since", "2026-01-01T00:00:10Z"]);
    let o2 = run(&["events", d, "--count", "--since", "+10s"]);
    assert_eq!(stdout(&o1), stdout(&o2));
    assert!(stdout(&o1).trim().parse::<u64>().unwrap() > 0);
}

#[test]
fn finalize_makes_a_killed_trace_finalized() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t");
    generate(&dir, &["--unfinalized", "--duration", "20"]);
    let d = dir.to_str().unwrap();
    let before = stdout(&run(&["events", d, "--format", "jsonl"]));
    assert!(stdout(&run(&["info", d])).contains("finalized:  NO"));
    let o = run(&["finalize", d]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("finalized ("), "{}", stdout(&o));
    assert!(stdout(&run(&["info", d])).contains("finalized:  yes"));
    assert_eq!(stdout(&run(&["events", d, "--format", "jsonl"])), before);
    let o = run(&["finalize", d]);
    assert!(stdout(&o).contains("already finalized"));
}

/// A recorder killed before its pcap sensor summarised the captures leaves pcap files and no
/// packets: `finalize` builds `packets.parquet` from them (services from the manifest).
#[test]
fn finalize_builds_packets_from_the_pcap_files_a_killed_recorder_left() {
    use sensor_protocols::pcapgen::{ethernet, ip_packet, PcapWriter, L4};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t");
    generate(&dir, &["--unfinalized", "--duration", "10"]);
    let d = dir.to_str().unwrap();
    // the manifest knows left-a's address
    let mpath = dir.join("manifest.json");
    let mut m: Value = serde_json::from_str(&std::fs::read_to_string(&mpath).unwrap()).unwrap();
    m["compose"]["services"]["left-a"]["containers"][0]["addresses"] =
        serde_json::json!({"middle": "10.9.0.2/24"});
    std::fs::write(&mpath, serde_json::to_string(&m).unwrap()).unwrap();
    std::fs::create_dir_all(dir.join("pcap")).unwrap();
    let t0 = Trace::open(&dir)
        .unwrap()
        .manifest()
        .started_ns
        .unwrap_or(0);
    for (file, n) in [("gen_left-a_1.pcap", 7), ("net-middle.pcap", 5)] {
        let f = std::fs::File::create(dir.join("pcap").join(file)).unwrap();
        let mut w = PcapWriter::new(f, 1, false, true, 65535).unwrap();
        for i in 0..n {
            let frame = ethernet(
                0x0800,
                &ip_packet(
                    "10.9.0.2".parse().unwrap(),
                    "10.9.0.3".parse().unwrap(),
                    L4::Udp {
                        sport: 4000,
                        dport: 7000,
                        payload: 10,
                    },
                ),
            );
            w.packet(
                t0 + (i as i64 + 1) * 100_000_000,
                frame.len() as u32,
                &frame,
            )
            .unwrap();
        }
    }
    let count = || stdout(&run(&["events", d, "--source", "packet", "--count"]));
    assert_eq!(count().trim(), "0");
    let o = run(&["finalize", d]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("12 packets summarised from 2 pcap files"),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains(", 12 packets)"), "{}", stdout(&o));
    assert!(dir.join("packets.parquet").exists());
    assert_eq!(count().trim(), "12");
    // services resolved from the manifest's addresses; seqs after every event's
    let o = run(&[
        "events", d, "--source", "packet", "--format", "jsonl", "--limit", "1",
    ]);
    let first: Value = serde_json::from_str(stdout(&o).lines().next().unwrap()).unwrap();
    assert_eq!(first["service"], "left-a", "{first}");
    // finalizing again changes nothing
    let o = run(&["finalize", d]);
    assert!(stdout(&o).contains("already finalized"), "{}", stdout(&o));
    assert_eq!(count().trim(), "12");
}

#[test]
fn bad_input_is_one_line_with_the_documented_code() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing");
    assert_error(
        &run(&["info", missing.to_str().unwrap()]),
        4,
        "missing: no such file or directory",
    );
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert_error(&run(&["events", empty.to_str().unwrap()]), 4, "not a trace");

    let dir = tmp.path().join("t");
    generate(&dir, &["--duration", "10"]);
    let d = dir.to_str().unwrap();
    let pq = dir.join("events.parquet");
    let bytes = std::fs::read(&pq).unwrap();
    std::fs::write(&pq, &bytes[..bytes.len() - 20]).unwrap();
    assert_error(&run(&["info", d]), 4, "events.parquet");
    std::fs::write(&pq, &bytes[..bytes.len() / 3]).unwrap();
    assert_error(&run(&["events", d]), 4, "events.parquet");
    std::fs::write(&pq, &bytes).unwrap();

    let manifest = dir.join("manifest.json");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let mut m: Value = serde_json::from_str(&text).unwrap();
    m["format_version"] = 99.into();
    std::fs::write(&manifest, m.to_string()).unwrap();
    assert_error(&run(&["info", d]), 4, "newer");
    std::fs::write(&manifest, "{").unwrap();
    assert_error(&run(&["info", d]), 4, "manifest.json");
    std::fs::write(&manifest, text).unwrap();

    // Usage errors: 64, not clap's 2.
    assert_eq!(
        run(&["events", d, "--no-such-flag"]).status.code(),
        Some(64)
    );
    assert_eq!(run(&["nope"]).status.code(), Some(64));
    assert_error(&run(&["events", d, "--since", "yesterday"]), 64, "--since");
    assert_error(&run(&["events", d, "--grep", "("]), 64, "--grep");
    assert_eq!(run(&["--help"]).status.code(), Some(0));
}
