//! Fuzz target: pcap/pcapng ingestion. The input is a capture file streamed through
//! `PcapSummariser` (with an address map, so service lookups run) and every record turned into an
//! event as the packet merge does. Must summarise or stop with a reason, never panic, loop or
//! allocate without bound. Crashes go to `../regressions/pcap/`, replayed by
//! `sensor-protocols/tests/fuzz_regressions.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sensor_protocols::pcap::{AddressMap, PcapSummariser};

fuzz_target!(|data: &[u8]| {
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
});
