//! Replays the seed corpora and every crash input of the sensor-protocols fuzz targets
//! (`fuzz/`: `pcap`, `jolokia`, `prometheus`) on stable, with the same harness as the
//! targets: each input must be parsed or refused, never panic.

use std::path::Path;

use trace::testing::{mutate, replay};

use sensor_protocols::jolokia::{
    parse_bulk_reply, parse_single_reply, parse_version_reply, MBeanRead,
};
use sensor_protocols::pcap::{AddressMap, PcapSummariser};
use sensor_protocols::prom::{parse, parse_strict, scrape_events, Selector};

fn pcap(data: &[u8]) {
    let mut addrs = AddressMap::default();
    addrs.insert([172, 18, 0, 2].into(), "left-a");
    addrs.insert([10, 0, 0, 1].into(), "recorder");
    let Ok(s) = PcapSummariser::from_reader(std::io::Cursor::new(data.to_vec()), "fuzz", addrs)
    else {
        return;
    };
    for rec in s {
        std::hint::black_box(rec.to_event());
    }
}

fn jolokia(data: &[u8]) {
    let reads = [
        MBeanRead::new("akka:type=Cluster", &["ClusterStatus", "Leader"]),
        MBeanRead::new("java.lang:type=Memory", &[]),
        MBeanRead::new("org.apache.ZooKeeperService:*", &["State"]),
    ];
    if let Ok(outs) = parse_bulk_reply(&reads, data) {
        for o in &outs {
            std::hint::black_box(o.to_events(1, "svc", Some("c")));
            std::hint::black_box(o.to_event(1, "svc", None));
        }
    }
    for r in &reads {
        if let Ok(o) = parse_single_reply(r, data) {
            std::hint::black_box(o.to_events(1, "svc", None));
        }
    }
    let _ = std::hint::black_box(parse_version_reply(data));
}

fn prometheus(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (fams, errs) = parse(&text);
    std::hint::black_box(errs);
    for sel in [Selector::default(), Selector(vec!["http_*".into()])] {
        std::hint::black_box(scrape_events(
            1,
            "svc",
            Some("c"),
            "http://x/metrics",
            &fams,
            &sel,
        ));
    }
    let _ = std::hint::black_box(parse_strict(&text));
}

#[test]
fn pcap_corpus_and_crashes_replay_without_panic() {
    assert!(replay("pcap", pcap) >= 3);
}

/// libFuzzer's pcap finding: a pcapng block (type 0x80000001) declaring a length of 4, which
/// pcap-parser 0.17 would take 12 from unchecked. The blocks before it are read, then reading
/// stops naming the byte offset.
#[test]
fn a_pcapng_block_shorter_than_its_header_stops_reading_at_its_offset() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/regressions/pcap/pcapng-short-block-crash-6ca7ec3c.pcapng");
    let data = std::fs::read(path).unwrap();
    let mut s =
        PcapSummariser::from_reader(std::io::Cursor::new(data), "fuzz", AddressMap::default())
            .unwrap();
    assert_eq!(s.by_ref().count(), 0);
    let sum = s.into_summary();
    assert_eq!(sum.format, "pcapng");
    assert_eq!(
        sum.stop_reason.as_deref(),
        Some("corrupt data at byte 28: pcapng block length 4 is shorter than the 12-byte minimum")
    );
}

#[test]
fn jolokia_corpus_and_crashes_replay_without_panic() {
    assert!(replay("jolokia", jolokia) >= 5);
}

#[test]
fn prometheus_corpus_and_crashes_replay_without_panic() {
    assert!(replay("prometheus", prometheus) >= 2);
}

/// A stable-toolchain mutation run over the corpora for machines without nightly (see
/// [`trace::testing::mutate`]): `FUZZ_SECS=120 cargo test -p sensor-protocols --test
/// fuzz_regressions -- --ignored mutate`.
#[test]
#[ignore = "a timed mutation run; start it by hand"]
fn mutate_the_corpora() {
    mutate(&[
        ("pcap", pcap),
        ("jolokia", jolokia),
        ("prometheus", prometheus),
    ]);
}
