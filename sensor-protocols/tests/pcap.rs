//! pcap summariser tests: every container format variant (pcap in both byte orders, micro and
//! nanosecond; pcapng with several interfaces and `if_tsresol`), every link type we decode,
//! address-to-service mapping, truncated and corrupt files, a comparison against `tshark` for the
//! same files (packet count, per-protocol counts and byte totals), and a real loopback capture
//! with `tcpdump` through the capture runner.
//!
//! The tshark/tcpdump parts skip (saying so) when the tools are missing, unless
//! `REQUIRE_TSHARK=1` (CI installs them, see `.ci/run`).

use std::collections::BTreeMap;
use std::io::BufWriter;
use std::net::IpAddr;
use std::path::Path;
use std::process::Command;

use sensor_protocols::pcap::{AddressMap, PcapFileError, PcapSummariser};
use sensor_protocols::pcapgen::{
    arp_request, ethernet, ethertype_of, ip_packet, mixed_frames, sll, sll2, PcapNgWriter,
    PcapWriter, L4,
};
use trace::manifest::{ContainerInfo, ServiceInfo};
use trace::{Manifest, PacketRecord};

const T0: i64 = 1_700_000_000_123_456_789;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip literal")
}

fn manifest_addrs() -> AddressMap {
    let mut m = Manifest::default();
    for (svc, addr) in [("left-a", "172.30.0.2"), ("right-a", "172.30.0.3")] {
        let mut c = ContainerInfo {
            name: format!("p_{svc}_1"),
            ..Default::default()
        };
        c.addresses.insert("middle".into(), addr.into());
        m.compose.services.insert(
            svc.into(),
            ServiceInfo {
                containers: vec![c],
                ..Default::default()
            },
        );
    }
    AddressMap::from_manifest(&m)
}

fn read_all(path: &Path) -> (Vec<PacketRecord>, sensor_protocols::pcap::CaptureSummary) {
    let mut s = PcapSummariser::open(path, "cap", manifest_addrs()).expect("open");
    let recs: Vec<_> = s.by_ref().collect();
    (recs, s.into_summary())
}

/// A handful of known frames (as network-layer payload + ethertype).
fn known() -> Vec<(u16, Vec<u8>)> {
    let syn = ip_packet(
        ip("172.30.0.2"),
        ip("172.30.0.3"),
        L4::Tcp {
            sport: 40001,
            dport: 2552,
            flags: 0x02,
            payload: 0,
        },
    );
    let synack = ip_packet(
        ip("172.30.0.3"),
        ip("172.30.0.2"),
        L4::Tcp {
            sport: 2552,
            dport: 40001,
            flags: 0x12,
            payload: 0,
        },
    );
    let udp6 = ip_packet(
        ip("fd00::2"),
        ip("fd00::3"),
        L4::Udp {
            sport: 5353,
            dport: 53,
            payload: 30,
        },
    );
    let icmp = ip_packet(ip("172.30.0.2"), ip("8.8.8.8"), L4::Echo { payload: 56 });
    let icmp6 = ip_packet(ip("fd00::2"), ip("fd00::3"), L4::Echo { payload: 8 });
    vec![
        (ethertype_of(&syn), syn),
        (ethertype_of(&synack), synack),
        (ethertype_of(&udp6), udp6),
        (ethertype_of(&icmp), icmp),
        (ethertype_of(&icmp6), icmp6),
        (
            0x0806,
            arp_request(
                "172.30.0.2".parse().expect("v4"),
                "172.30.0.3".parse().expect("v4"),
            ),
        ),
    ]
}

fn check_known(recs: &[PacketRecord], ts_step: i64, ts_exact: bool) {
    assert_eq!(recs.len(), 6);
    let protos: Vec<_> = recs.iter().map(|r| r.protocol.as_str()).collect();
    assert_eq!(protos, ["tcp", "tcp", "udp", "icmp", "icmpv6", "arp"]);
    let nets: Vec<_> = recs.iter().map(|r| r.network.as_str()).collect();
    assert_eq!(nets, ["ipv4", "ipv4", "ipv6", "ipv4", "ipv6", "arp"]);
    let syn = &recs[0];
    assert_eq!(syn.src_addr.as_deref(), Some("172.30.0.2"));
    assert_eq!(syn.dst_addr.as_deref(), Some("172.30.0.3"));
    assert_eq!((syn.src_port, syn.dst_port), (Some(40001), Some(2552)));
    assert_eq!(syn.tcp_flags, Some(0x02));
    assert_eq!(
        trace::packets::tcp_flags::render(recs[1].tcp_flags.unwrap_or(0)),
        "S."
    );
    assert_eq!(
        (syn.src_service.as_deref(), syn.dst_service.as_deref()),
        (Some("left-a"), Some("right-a"))
    );
    assert_eq!(recs[3].dst_service, None, "8.8.8.8 is no service");
    assert_eq!(recs[2].src_addr.as_deref(), Some("fd00::2"));
    assert_eq!((recs[2].src_port, recs[2].dst_port), (Some(5353), Some(53)));
    assert_eq!(recs[5].src_service.as_deref(), Some("left-a"));
    assert_eq!(recs[3].tcp_flags, None);
    // The packet event the monitors see (brief: source "packet", kind = protocol, service = src).
    let ev = syn.to_event();
    assert_eq!(
        (ev.source.as_str(), ev.kind.as_str(), ev.service.as_deref()),
        ("packet", "tcp", Some("left-a"))
    );
    let d: serde_json::Value =
        serde_json::from_str(ev.data.as_deref().expect("data")).expect("json");
    assert_eq!(
        (d["tcp_flags"].as_str(), d["tcp_flags_bits"].as_u64()),
        (Some("S"), Some(2))
    );
    assert_eq!(
        (d["dst_service"].as_str(), d["dst_port"].as_u64()),
        (Some("right-a"), Some(2552))
    );
    for (i, r) in recs.iter().enumerate() {
        let want = T0 + i as i64 * ts_step;
        if ts_exact {
            assert_eq!(r.ts_ns, want);
        } else {
            assert_eq!(
                r.ts_ns,
                want - want.rem_euclid(1000),
                "microsecond precision truncates"
            );
        }
        assert_eq!(r.capture, "cap");
        assert!(r.length >= r.captured_length);
    }
}

#[test]
fn legacy_pcap_all_variants() {
    let dir = tempfile::tempdir().expect("tmp");
    for big_endian in [false, true] {
        for nanos in [false, true] {
            for linktype in [1u32, 113, 276] {
                let path = dir
                    .path()
                    .join(format!("v-{big_endian}-{nanos}-{linktype}.pcap"));
                let f = BufWriter::new(std::fs::File::create(&path).expect("create"));
                let mut w = PcapWriter::new(f, linktype, big_endian, nanos, 65535).expect("hdr");
                for (i, (et, p)) in known().iter().enumerate() {
                    let frame = match linktype {
                        113 => sll(*et, p),
                        276 => sll2(*et, 3, p),
                        _ => ethernet(*et, p),
                    };
                    w.packet(T0 + i as i64 * 1_000_001, frame.len() as u32, &frame)
                        .expect("write");
                }
                drop(w.into_inner());
                let (recs, sum) = read_all(&path);
                check_known(&recs, 1_000_001, nanos);
                assert_eq!(sum.format, "pcap");
                assert!(!sum.truncated && sum.stop_reason.is_none(), "{sum:?}");
                assert_eq!(sum.packets, 6);
                assert_eq!(sum.protocols["tcp"].packets, 2);
            }
        }
    }
}

#[test]
fn raw_ip_and_snaplen() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("raw.pcap");
    let f = BufWriter::new(std::fs::File::create(&path).expect("create"));
    let mut w = PcapWriter::new(f, 101, false, true, 96).expect("hdr");
    let big = ip_packet(
        ip("172.30.0.2"),
        ip("172.30.0.3"),
        L4::Tcp {
            sport: 1,
            dport: 2,
            flags: 0x18,
            payload: 1000,
        },
    );
    w.packet(T0, big.len() as u32, &big[..96]).expect("write");
    drop(w.into_inner());
    let (recs, sum) = read_all(&path);
    assert_eq!(recs.len(), 1);
    assert_eq!((recs[0].length, recs[0].captured_length), (1040, 96));
    assert_eq!(recs[0].tcp_flags, Some(0x18));
    assert_eq!((sum.bytes, sum.captured_bytes), (1040, 96));
}

#[test]
fn pcapng_several_interfaces_and_resolutions() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("multi.pcapng");
    let f = BufWriter::new(std::fs::File::create(&path).expect("create"));
    let mut w = PcapNgWriter::new(f).expect("shb");
    let eth = w.interface(1, "eth0", 6).expect("idb");
    let any = w.interface(276, "any", 9).expect("idb");
    let bin = w.interface(113, "br-x", 0x80 | 20).expect("idb"); // 2^-20 s units
    let k = known();
    for (i, (et, p)) in k.iter().enumerate() {
        let (ifc, frame) = match i % 3 {
            0 => (eth, ethernet(*et, p)),
            1 => (any, sll2(*et, 7, p)),
            _ => (bin, sll(*et, p)),
        };
        w.packet(
            ifc,
            T0 + i as i64 * 1_000_000_000,
            frame.len() as u32,
            &frame,
        )
        .expect("write");
    }
    drop(w.into_inner());
    let (recs, sum) = read_all(&path);
    assert_eq!(sum.format, "pcapng");
    assert_eq!(recs.len(), 6);
    let ifaces: Vec<_> = recs.iter().map(|r| r.interface.as_str()).collect();
    assert_eq!(ifaces, ["eth0", "any", "br-x", "eth0", "any", "br-x"]);
    for (i, r) in recs.iter().enumerate() {
        let want = T0 + i as i64 * 1_000_000_000;
        let tol = match i % 3 {
            0 => 1000, // microseconds
            1 => 0,
            _ => 954, // 2^-20 s ≈ 954 ns
        };
        assert!(
            (want - r.ts_ns).abs() <= tol && r.ts_ns <= want,
            "packet {i}: {} vs {want}",
            r.ts_ns
        );
    }
    assert_eq!(recs[0].protocol, "tcp");
    assert_eq!(recs[5].protocol, "arp");
}

#[test]
fn truncated_files_read_up_to_the_last_whole_packet() {
    let dir = tempfile::tempdir().expect("tmp");
    for ng in [false, true] {
        let path = dir.path().join(if ng { "t.pcapng" } else { "t.pcap" });
        let frames = mixed_frames(3, 50, 1);
        let f = BufWriter::new(std::fs::File::create(&path).expect("create"));
        // Remember where each packet ends.
        let mut ends = Vec::new();
        if ng {
            let mut w = PcapNgWriter::new(f).expect("shb");
            w.interface(1, "eth0", 6).expect("idb");
            for (i, fr) in frames.iter().enumerate() {
                w.packet(0, T0 + i as i64, fr.len() as u32, fr)
                    .expect("write");
            }
            drop(w.into_inner());
        } else {
            let mut w = PcapWriter::new(f, 1, false, false, 65535).expect("hdr");
            for (i, fr) in frames.iter().enumerate() {
                w.packet(T0 + i as i64, fr.len() as u32, fr).expect("write");
            }
            drop(w.into_inner());
        }
        let full = std::fs::read(&path).expect("read");
        // Packet end offsets, computed from the format.
        let mut off = if ng {
            full.len()
                - frames
                    .iter()
                    .map(|f| 32 + f.len().div_ceil(4) * 4)
                    .sum::<usize>()
        } else {
            24
        };
        for fr in &frames {
            off += if ng {
                32 + fr.len().div_ceil(4) * 4
            } else {
                16 + fr.len()
            };
            ends.push(off);
        }
        assert_eq!(*ends.last().expect("ends"), full.len());
        for cut in [full.len() - 1, ends[20] + 7, ends[20], ends[0] + 1] {
            let p = dir.path().join("cut");
            std::fs::write(&p, &full[..cut]).expect("write cut");
            let (recs, sum) = read_all(&p);
            let whole = ends.iter().filter(|e| **e <= cut).count();
            assert_eq!(recs.len(), whole, "ng={ng} cut={cut}");
            assert_eq!(sum.truncated, cut != ends[20], "ng={ng} cut={cut}: {sum:?}");
            if sum.truncated {
                assert!(
                    sum.stop_reason
                        .as_deref()
                        .is_some_and(|r| r.contains("ends inside")),
                    "{sum:?}"
                );
            }
        }
    }
}

#[test]
fn not_a_capture_and_corrupt_data() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = dir.path().join("junk");
    std::fs::write(
        &p,
        b"this is not a capture file at all, just text............",
    )
    .expect("write");
    assert!(matches!(
        PcapSummariser::open(&p, "x", AddressMap::default()),
        Err(PcapFileError::NotACapture { .. })
    ));
    std::fs::write(&p, b"").expect("write");
    assert!(matches!(
        PcapSummariser::open(&p, "x", AddressMap::default()),
        Err(PcapFileError::NotACapture { .. })
    ));
    assert!(matches!(
        PcapSummariser::open(&dir.path().join("missing"), "x", AddressMap::default()),
        Err(PcapFileError::Open { .. })
    ));
    // A pcapng whose third block has a garbage length: the first packet is kept, then it stops.
    let p = dir.path().join("corrupt.pcapng");
    let f = BufWriter::new(std::fs::File::create(&p).expect("create"));
    let mut w = PcapNgWriter::new(f).expect("shb");
    w.interface(1, "eth0", 6).expect("idb");
    let fr = &mixed_frames(1, 1, 1)[0];
    w.packet(0, T0, fr.len() as u32, fr).expect("write");
    drop(w.into_inner());
    let mut bytes = std::fs::read(&p).expect("read");
    bytes.extend_from_slice(&[6, 0, 0, 0, 3, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef]);
    bytes.extend_from_slice(&[0u8; 64]);
    std::fs::write(&p, &bytes).expect("write");
    let (recs, sum) = read_all(&p);
    assert_eq!(recs.len(), 1);
    assert!(sum.stop_reason.is_some(), "{sum:?}");
}

// ---- reference comparison with tshark -------------------------------------------------------

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn require_tools() -> bool {
    std::env::var("REQUIRE_TSHARK").is_ok_and(|v| v == "1")
}

/// Per-protocol (packets, bytes) as tshark sees the file, plus the total.
fn tshark_counts(path: &Path) -> (u64, u64, BTreeMap<String, (u64, u64)>) {
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(path)
        .args([
            "-T",
            "fields",
            "-E",
            "separator=\t",
            "-e",
            "frame.len",
            "-e",
            "frame.protocols",
        ])
        .output()
        .expect("run tshark");
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut per = BTreeMap::new();
    let (mut n, mut bytes) = (0, 0);
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut parts = line.split('\t');
        let len: u64 = parts
            .next()
            .and_then(|l| l.trim().parse().ok())
            .expect("frame.len");
        let protos = parts.next().unwrap_or("");
        // The first transport-level protocol in the dissection chain (an ICMP error carries an
        // inner ip:udp after icmp: the outer one counts).
        let proto = protos
            .split(':')
            .find(|p| matches!(*p, "tcp" | "udp" | "icmp" | "icmpv6" | "arp"))
            .unwrap_or("other");
        let e = per.entry(proto.to_string()).or_insert((0, 0));
        e.0 += 1;
        e.1 += len;
        n += 1;
        bytes += len;
    }
    (n, bytes, per)
}

fn ours(path: &Path) -> (u64, u64, BTreeMap<String, (u64, u64)>) {
    let (recs, sum) = read_all(path);
    assert!(sum.stop_reason.is_none(), "{sum:?}");
    let mut per = BTreeMap::new();
    for r in &recs {
        let e = per.entry(r.protocol.clone()).or_insert((0, 0));
        e.0 += 1;
        e.1 += r.length as u64;
    }
    // The summary's counters agree with the records.
    assert_eq!(
        per,
        sum.protocols
            .iter()
            .map(|(k, c)| (k.clone(), (c.packets, c.bytes)))
            .collect::<BTreeMap<_, _>>()
    );
    (recs.len() as u64, sum.bytes, per)
}

#[test]
fn agrees_with_tshark_on_crafted_captures() {
    if !have("tshark") {
        assert!(
            !require_tools(),
            "REQUIRE_TSHARK=1 but tshark is not installed"
        );
        eprintln!("SKIP agrees_with_tshark_on_crafted_captures: tshark not installed");
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let mut files = Vec::new();
    for (i, linktype) in [1u32, 113, 276, 101].into_iter().enumerate() {
        let frames = mixed_frames(100 + i as u64, 3000, linktype);
        let p = dir.path().join(format!("mix-{linktype}.pcap"));
        let f = BufWriter::new(std::fs::File::create(&p).expect("create"));
        let mut w = PcapWriter::new(f, linktype, i % 2 == 1, i >= 2, 262_144).expect("hdr");
        for (j, fr) in frames.iter().enumerate() {
            w.packet(T0 + j as i64 * 10_000, fr.len() as u32, fr)
                .expect("write");
        }
        drop(w.into_inner());
        files.push(p);
    }
    // pcapng with two interfaces of different link types.
    let p = dir.path().join("mix.pcapng");
    let f = BufWriter::new(std::fs::File::create(&p).expect("create"));
    let mut w = PcapNgWriter::new(f).expect("shb");
    let a = w.interface(1, "eth0", 6).expect("idb");
    let b = w.interface(276, "any", 9).expect("idb");
    for (j, (fa, fb)) in mixed_frames(7, 2000, 1)
        .iter()
        .zip(mixed_frames(8, 2000, 276).iter())
        .enumerate()
    {
        w.packet(a, T0 + j as i64 * 2000, fa.len() as u32, fa)
            .expect("write");
        w.packet(b, T0 + j as i64 * 2000 + 1000, fb.len() as u32, fb)
            .expect("write");
    }
    drop(w.into_inner());
    files.push(p);
    for p in &files {
        let theirs = tshark_counts(p);
        let mine = ours(p);
        assert_eq!(mine, theirs, "{}", p.display());
        // The mix really is varied.
        for proto in ["tcp", "udp", "icmp", "icmpv6"] {
            assert!(
                mine.2.get(proto).is_some_and(|c| c.0 > 10),
                "{proto} missing in {}",
                p.display()
            );
        }
    }
}

#[tokio::test]
async fn real_loopback_capture_with_tcpdump() {
    use sensor_protocols::capture::{CaptureSpec, CaptureTarget, RunningCapture};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !have("tcpdump") || !root {
        assert!(
            !require_tools(),
            "REQUIRE_TSHARK=1 but tcpdump is missing or we are not root"
        );
        eprintln!("SKIP real_loopback_capture_with_tcpdump: needs tcpdump and root");
        return;
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("lo.pcap");
    let mut spec = CaptureSpec::new(CaptureTarget::HostInterface("lo".into()), &file);
    spec.filter = Some(format!("tcp port {port}"));
    let cap = RunningCapture::start(&spec).await.expect("tcpdump starts");
    // Bounded traffic: 20 short connections, each sending and echoing 100 bytes.
    let server = tokio::spawn(async move {
        for _ in 0..20 {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let mut b = [0u8; 100];
            if s.read_exact(&mut b).await.is_ok() {
                let _ = s.write_all(&b).await;
            }
        }
    });
    for _ in 0..20 {
        let mut c = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        c.write_all(&[7u8; 100]).await.expect("send");
        let mut b = [0u8; 100];
        c.read_exact(&mut b).await.expect("echo");
    }
    server.await.expect("server");
    let stats = cap
        .stop(std::time::Duration::from_secs(5))
        .await
        .expect("stop");
    let (recs, sum) = read_all(&file);
    assert!(sum.stop_reason.is_none(), "{sum:?}");
    // Every connection: at least SYN, SYN-ACK, ACK, data both ways, and FINs.
    assert!(
        recs.len() >= 20 * 6,
        "{} packets; {stats:?} {sum:?}",
        recs.len()
    );
    assert!(recs
        .iter()
        .all(|r| r.protocol == "tcp" && (r.src_port == Some(port) || r.dst_port == Some(port))));
    let syns = recs.iter().filter(|r| r.tcp_flags == Some(0x02)).count();
    assert_eq!(syns, 20);
    assert_eq!(stats.captured, Some(recs.len() as u64), "{stats:?}");
    assert_eq!(stats.dropped_by_kernel, Some(0), "{stats:?}");
    if have("tshark") {
        assert_eq!(ours(&file), tshark_counts(&file));
    }
}
