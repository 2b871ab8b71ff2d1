//! Fuzz target: Jolokia reply parsing. The input is an HTTP body given to the bulk, single and
//! version reply parsers (as an agent or anything on its port could answer), and every outcome
//! turned into events. Must give outcomes or an error, never panic. Crashes go to
//! `../regressions/jolokia/`, replayed by `sensor-protocols/tests/fuzz_regressions.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sensor_protocols::jolokia::{
    parse_bulk_reply, parse_single_reply, parse_version_reply, MBeanRead,
};

fuzz_target!(|data: &[u8]| {
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
});
