//! Compatibility of the committed fixture traces (`traces/fixtures/v1-*`): every later version
//! must read them with the same events. Each fixture has an `expected.json` recorded when it was
//! generated (counts per source, time span, a digest of every event); this test recomputes them
//! through the reader. Regenerate the expectations only when adding a fixture:
//! `TRACE_FIXTURES_BLESS=1 cargo test -p integration-tests --test integration trace_compat`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use trace::{ReadOptions, Trace};

fn fixtures() -> Vec<PathBuf> {
    let dir = integration_tests::workspace_root().join("traces/fixtures");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("manifest.json").exists())
        .collect();
    v.sort();
    assert!(
        v.len() >= 4,
        "expected the committed fixtures under {}",
        dir.display()
    );
    v
}

/// FNV-1a, 64 bit: a stable digest without extra dependencies.
fn fnv(h: &mut u64, bytes: &[u8]) {
    for b in bytes {
        *h ^= *b as u64;
        *h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
}

fn facts(dir: &Path, include_packets: bool) -> Value {
    let t = Trace::open(dir).unwrap_or_else(|e| panic!("{e}"));
    let mut by_source: BTreeMap<String, u64> = BTreeMap::new();
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    let (mut n, mut first, mut last) = (0u64, None, None);
    let mut prev: Option<(i64, u64)> = None;
    let opts = ReadOptions {
        include_packets,
        ..Default::default()
    };
    for b in t.events(&opts).unwrap_or_else(|e| panic!("{e}")) {
        let b = b.unwrap_or_else(|e| panic!("{e}"));
        for e in b.iter() {
            assert!(
                prev.is_none_or(|p| p < e.key()),
                "{}: events out of order at seq {}",
                dir.display(),
                e.seq
            );
            prev = Some(e.key());
            n += 1;
            first = first.or(Some(e.ts_ns));
            last = Some(e.ts_ns);
            *by_source.entry(e.source.to_string()).or_default() += 1;
            let line = format!(
                "{}|{}|{}|{:?}|{:?}|{}|{:?}|{:?}\n",
                e.ts_ns, e.seq, e.source, e.service, e.container, e.kind, e.message, e.data
            );
            fnv(&mut h, line.as_bytes());
        }
    }
    json!({
        "finalized": t.is_finalized(),
        "events": n,
        "first_ns": first,
        "last_ns": last,
        "by_source": by_source,
        "digest": format!("{h:016x}"),
        "run_id": t.manifest().run_id,
    })
}

fn expected_path(dir: &Path, include_packets: bool) -> PathBuf {
    dir.join(if include_packets {
        "expected-with-packets.json"
    } else {
        "expected.json"
    })
}

#[test]
fn committed_fixtures_read_back_exactly() {
    let bless = std::env::var("TRACE_FIXTURES_BLESS").as_deref() == Ok("1");
    for dir in fixtures() {
        for include_packets in [false, true] {
            let t = Trace::open(&dir).unwrap();
            if include_packets && !t.has_packets() {
                continue;
            }
            let got = facts(&dir, include_packets);
            let path = expected_path(&dir, include_packets);
            if bless {
                std::fs::write(&path, serde_json::to_string_pretty(&got).unwrap() + "\n").unwrap();
                continue;
            }
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let want: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(
                got,
                want,
                "{} no longer reads as recorded in {}",
                dir.display(),
                path.display()
            );
        }
    }
}

#[test]
fn the_killed_fixture_finalizes_to_the_same_events() {
    let src = integration_tests::workspace_root().join("traces/fixtures/v1-killed");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t");
    std::fs::create_dir(&dir).unwrap();
    for f in std::fs::read_dir(&src).unwrap() {
        let f = f.unwrap().path();
        if f.file_name().is_some_and(|n| n != "expected.json") {
            std::fs::copy(&f, dir.join(f.file_name().unwrap())).unwrap();
        }
    }
    let before = facts(&dir, false);
    assert_eq!(before["finalized"], false);
    let s = trace::finalize(&dir).unwrap();
    assert!(s.truncated_log, "the fixture's log ends in a cut batch");
    let mut after = facts(&dir, false);
    assert_eq!(after["finalized"], true);
    after["finalized"] = json!(false);
    assert_eq!(after, before);
    assert!(!dir.join("events.arrows").exists());
}
