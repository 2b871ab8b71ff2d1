//! Benchmark: pcap summarisation throughput (packets per second from a file on disk), for pcap
//! over Ethernet and pcapng over Linux cooked v2, with a realistic protocol mix.

use std::io::BufWriter;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sensor_protocols::pcap::{AddressMap, PcapSummariser};
use sensor_protocols::pcapgen::{mixed_frames, PcapNgWriter, PcapWriter};

const N: usize = 200_000;

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let eth = dir.path().join("eth.pcap");
    let ng = dir.path().join("sll2.pcapng");
    {
        let f = BufWriter::new(std::fs::File::create(&eth).expect("create"));
        let mut w = PcapWriter::new(f, 1, false, false, 262_144).expect("header");
        for (i, fr) in mixed_frames(7, N, 1).iter().enumerate() {
            w.packet(
                1_700_000_000_000_000_000 + i as i64 * 1000,
                fr.len() as u32,
                fr,
            )
            .expect("write");
        }
        let f = BufWriter::new(std::fs::File::create(&ng).expect("create"));
        let mut w = PcapNgWriter::new(f).expect("shb");
        w.interface(276, "any", 9).expect("idb");
        for (i, fr) in mixed_frames(8, N, 276).iter().enumerate() {
            w.packet(
                0,
                1_700_000_000_000_000_000 + i as i64 * 1000,
                fr.len() as u32,
                fr,
            )
            .expect("write");
        }
    }
    let mut addrs = AddressMap::default();
    for i in 2..6u8 {
        addrs.insert(
            format!("172.30.0.{i}").parse().expect("ip"),
            &format!("svc-{i}"),
        );
    }
    let mut g = c.benchmark_group("pcap_summarise");
    g.throughput(Throughput::Elements(N as u64));
    g.sample_size(10);
    for (name, path) in [("pcap_ethernet", &eth), ("pcapng_sll2", &ng)] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut s = PcapSummariser::open(path, "bench", addrs.clone()).expect("open");
                let n = s.by_ref().count();
                assert_eq!(n, N);
                n
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
