//! The pcap summariser: streams a pcap or pcapng file (pcap-parser, bounded buffer, never the whole
//! file in memory) and turns every frame into a [`trace::PacketRecord`].
//!
//! Formats: legacy pcap in both byte orders with micro- or nanosecond timestamps; pcapng with
//! several sections and interfaces, per-interface `if_tsresol` / `if_tsoffset`. Link types:
//! Ethernet (with 802.1Q/802.1ad tags), Linux cooked SLL and SLL2 (`tcpdump -i any`), raw IP
//! (101, 12, 228, 229) and BSD loopback (0). IPv4 / IPv6 (extension headers skipped) / ARP / TCP /
//! UDP / ICMP / ICMPv6 headers are parsed by hand, every access bounds-checked: garbage frames
//! become `other`, never a panic. Addresses are mapped to compose services through an
//! [`AddressMap`] built from the trace manifest. A truncated or corrupt file is read up to the
//! last whole packet and the [`CaptureSummary`] says why it stopped. pcapng block lengths below
//! the 12-byte minimum are refused before pcap-parser sees the block (0.17 subtracts 12 from them
//! unchecked: a panic with overflow checks, garbage without).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::sync::Arc;

use pcap_parser::traits::PcapReaderIterator;
use pcap_parser::{Block, Linktype, PcapBlockOwned, PcapError};
use trace::{Manifest, PacketRecord};

/// Buffer size of the streaming reader (grown up to [`MAX_BUFFER`] for jumbo blocks).
const BUFFER: usize = 1 << 20;
const MAX_BUFFER: usize = 64 << 20;

/// Errors opening a capture (reading it never fails: it stops and says so in the summary).
#[derive(Debug, thiserror::Error)]
pub enum PcapFileError {
    #[error("cannot open capture {path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a pcap or pcapng file: {reason}")]
    NotACapture { path: String, reason: String },
}

/// IP address -> compose service (and the address rendered once, reused for every packet).
#[derive(Debug, Clone, Default)]
pub struct AddressMap {
    services: HashMap<IpAddr, Arc<str>>,
}

/// The `src_service`/`dst_service` of the host's address on a project network (its gateway):
/// the recorder's own probes (HTTP, Prometheus, Jolokia) come from there.
pub const RECORDER_SERVICE: &str = "recorder";

impl AddressMap {
    /// Every container address of every service in the manifest, and the host's address on each
    /// project network (the network's gateway) as [`RECORDER_SERVICE`].
    pub fn from_manifest(m: &Manifest) -> AddressMap {
        let mut a = AddressMap::default();
        for (service, info) in &m.compose.services {
            for c in &info.containers {
                for addr in c.addresses.values() {
                    // An address without its prefix length, or with `/nn` as `docker inspect` may give.
                    let ip = addr.split('/').next().unwrap_or("");
                    if let Ok(ip) = ip.parse::<IpAddr>() {
                        a.insert(ip, service);
                    }
                }
            }
        }
        for n in m.compose.networks.values() {
            let gw = n.gateway.as_deref().unwrap_or("");
            if let Ok(ip) = gw.split('/').next().unwrap_or("").parse::<IpAddr>() {
                a.insert(ip, RECORDER_SERVICE);
            }
        }
        a
    }

    /// Maps `ip` to `service` (the first mapping of an address wins).
    pub fn insert(&mut self, ip: IpAddr, service: &str) {
        self.services
            .entry(ip)
            .or_insert_with(|| Arc::from(service));
    }

    pub fn service(&self, ip: &IpAddr) -> Option<&str> {
        self.services.get(ip).map(|s| &**s)
    }

    pub fn len(&self) -> usize {
        self.services.len()
    }

    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }
}

/// Packet and byte counts of one protocol.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    pub packets: u64,
    /// Sum of on-the-wire frame lengths.
    pub bytes: u64,
}

/// What reading a capture found.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct CaptureSummary {
    pub capture: String,
    /// `pcap` or `pcapng`.
    pub format: String,
    pub packets: u64,
    /// Sum of on-the-wire lengths, and of captured lengths.
    pub bytes: u64,
    pub captured_bytes: u64,
    /// Per `protocol` value of the records.
    pub protocols: BTreeMap<String, Counts>,
    pub first_ts_ns: Option<i64>,
    pub last_ts_ns: Option<i64>,
    /// Link types met (pcap-parser's names).
    pub link_types: Vec<String>,
    /// True when the file ended inside a packet or a block (read up to the last whole one).
    pub truncated: bool,
    /// Why reading stopped before a clean end of file (truncation or corrupt data), if it did.
    pub stop_reason: Option<String>,
    /// Packets whose interface id had no interface description, or unknown link types.
    pub undecodable: u64,
    /// Kernel/interface drop counts from pcapng interface statistics blocks, when present.
    pub if_drops: Option<u64>,
}

#[derive(Debug, Clone)]
struct Iface {
    linktype: Linktype,
    /// Units per second of the timestamps.
    resolution: u64,
    offset_s: i64,
    name: String,
}

/// Streams one capture file as [`PacketRecord`]s (an `Iterator`); the [`CaptureSummary`] is
/// complete once the iterator is exhausted.
pub struct PcapSummariser {
    reader: Box<dyn PcapReaderIterator + Send>,
    ifaces: Vec<Iface>,
    legacy_nanos: bool,
    addrs: AddressMap,
    addr_text: HashMap<IpAddr, String>,
    summary: CaptureSummary,
    done: bool,
    /// Blocks read at the last `Incomplete`, to detect no progress.
    last_incomplete: Option<u64>,
    blocks: u64,
    /// Byte order of the current pcapng section (from its section header block).
    ng_big_endian: bool,
}

impl std::fmt::Debug for PcapSummariser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcapSummariser")
            .field("summary", &self.summary)
            .finish_non_exhaustive()
    }
}

impl PcapSummariser {
    /// Opens a file. `capture` names it in the records (the file stem under `pcap/`).
    pub fn open(
        path: &Path,
        capture: &str,
        addrs: AddressMap,
    ) -> Result<PcapSummariser, PcapFileError> {
        let f = File::open(path).map_err(|e| PcapFileError::Open {
            path: path.display().to_string(),
            source: e,
        })?;
        Self::from_reader(f, capture, addrs).map_err(|e| match e {
            PcapFileError::NotACapture { reason, .. } => PcapFileError::NotACapture {
                path: path.display().to_string(),
                reason,
            },
            other => other,
        })
    }

    /// Reads from any byte stream.
    pub fn from_reader<R: Read + Send + 'static>(
        r: R,
        capture: &str,
        addrs: AddressMap,
    ) -> Result<PcapSummariser, PcapFileError> {
        let reader =
            pcap_parser::create_reader(BUFFER, r).map_err(|e| PcapFileError::NotACapture {
                path: capture.to_string(),
                reason: match e {
                    PcapError::Eof => "empty file".into(),
                    PcapError::Incomplete(_) => "file shorter than a capture header".into(),
                    PcapError::HeaderNotRecognized => "unknown magic number".into(),
                    other => format!("{other:?}"),
                },
            })?;
        Ok(PcapSummariser {
            reader,
            ifaces: Vec::new(),
            legacy_nanos: false,
            addrs,
            addr_text: HashMap::new(),
            summary: CaptureSummary {
                capture: capture.to_string(),
                ..Default::default()
            },
            done: false,
            last_incomplete: None,
            blocks: 0,
            ng_big_endian: false,
        })
    }

    pub fn summary(&self) -> &CaptureSummary {
        &self.summary
    }

    pub fn into_summary(self) -> CaptureSummary {
        self.summary
    }

    fn stop(&mut self, truncated: bool, reason: String) {
        self.done = true;
        self.summary.truncated |= truncated;
        self.summary.stop_reason = Some(reason);
    }

    fn note_linktype(summary: &mut CaptureSummary, l: Linktype) {
        let name = format!("{l}");
        if !summary.link_types.contains(&name) {
            summary.link_types.push(name);
        }
    }
}

impl Iterator for PcapSummariser {
    type Item = PacketRecord;

    fn next(&mut self) -> Option<PacketRecord> {
        while !self.done {
            let consumed = self.reader.consumed();
            if self.summary.format == "pcapng" {
                if let Some(len) = short_ng_block(self.reader.data(), self.ng_big_endian) {
                    let msg = format!(
                        "corrupt data at byte {consumed}: pcapng block length {len} is shorter than \
                         the 12-byte minimum"
                    );
                    self.stop(false, msg);
                    return None;
                }
            }
            let (offset, rec) = match self.reader.next() {
                Ok((offset, block)) => {
                    self.blocks += 1;
                    let rec = match block {
                        PcapBlockOwned::LegacyHeader(h) => {
                            self.summary.format = "pcap".into();
                            self.legacy_nanos = h.is_nanosecond_precision();
                            self.ifaces = vec![Iface {
                                linktype: h.network,
                                resolution: if self.legacy_nanos {
                                    1_000_000_000
                                } else {
                                    1_000_000
                                },
                                offset_s: 0,
                                name: String::new(),
                            }];
                            Self::note_linktype(&mut self.summary, h.network);
                            None
                        }
                        PcapBlockOwned::Legacy(b) => {
                            let ns_frac = if self.legacy_nanos {
                                b.ts_usec as i64
                            } else {
                                b.ts_usec as i64 * 1000
                            };
                            let ts = b.ts_sec as i64 * 1_000_000_000 + ns_frac;
                            let data = &b.data[..(b.caplen as usize).min(b.data.len())];
                            let linktype = self.ifaces.first().map_or(Linktype(-1), |i| i.linktype);
                            Some(build(
                                &mut self.summary,
                                &self.addrs,
                                &mut self.addr_text,
                                linktype,
                                "",
                                ts,
                                b.origlen,
                                data,
                            ))
                        }
                        PcapBlockOwned::NG(Block::SectionHeader(shb)) => {
                            self.summary.format = "pcapng".into();
                            self.ng_big_endian = shb.big_endian();
                            self.ifaces.clear();
                            None
                        }
                        PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                            let name = idb.if_name().and_then(|r| r.ok()).unwrap_or("").to_string();
                            // An invalid if_tsresol falls back to the default (microseconds).
                            let resolution = ts_resolution(idb.if_tsresol).unwrap_or(1_000_000);
                            Self::note_linktype(&mut self.summary, idb.linktype);
                            self.ifaces.push(Iface {
                                linktype: idb.linktype,
                                resolution,
                                offset_s: idb.ts_offset(),
                                name,
                            });
                            None
                        }
                        PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                            match self.ifaces.get(epb.if_id as usize) {
                                Some(iface) => {
                                    let raw = ((epb.ts_high as u64) << 32) | epb.ts_low as u64;
                                    let ts = ng_ts_ns(raw, iface.resolution, iface.offset_s);
                                    let data =
                                        &epb.data[..(epb.caplen as usize).min(epb.data.len())];
                                    Some(build(
                                        &mut self.summary,
                                        &self.addrs,
                                        &mut self.addr_text,
                                        iface.linktype,
                                        &iface.name,
                                        ts,
                                        epb.origlen,
                                        data,
                                    ))
                                }
                                None => {
                                    self.summary.undecodable += 1;
                                    None
                                }
                            }
                        }
                        PcapBlockOwned::NG(Block::SimplePacket(spb)) => match self.ifaces.first() {
                            Some(iface) => {
                                // No timestamp in a simple packet block: keep the last one seen.
                                let ts = self.summary.last_ts_ns.unwrap_or(0);
                                let data = &spb.data[..(spb.origlen as usize).min(spb.data.len())];
                                Some(build(
                                    &mut self.summary,
                                    &self.addrs,
                                    &mut self.addr_text,
                                    iface.linktype,
                                    &iface.name,
                                    ts,
                                    spb.origlen,
                                    data,
                                ))
                            }
                            None => {
                                self.summary.undecodable += 1;
                                None
                            }
                        },
                        PcapBlockOwned::NG(Block::InterfaceStatistics(isb)) => {
                            if let Some(d) = isb
                                .options
                                .iter()
                                .find(|o| o.code == pcap_parser::OptionCode(5))
                                .and_then(|o| o.as_u64_le().ok())
                            {
                                *self.summary.if_drops.get_or_insert(0) += d;
                            }
                            None
                        }
                        PcapBlockOwned::NG(_) => None,
                    };
                    (offset, rec)
                }
                Err(PcapError::Eof) => {
                    self.done = true;
                    return None;
                }
                Err(PcapError::Incomplete(_)) => {
                    if self.last_incomplete == Some(self.blocks) && self.reader.reader_exhausted() {
                        self.stop(
                            true,
                            format!("file ends inside a block after byte {consumed}"),
                        );
                        return None;
                    }
                    self.last_incomplete = Some(self.blocks);
                    if let Err(e) = self.reader.refill() {
                        let msg = format!("read error after byte {consumed}: {e:?}");
                        self.stop(false, msg);
                        return None;
                    }
                    continue;
                }
                Err(PcapError::UnexpectedEof) => {
                    self.stop(
                        true,
                        format!("file ends inside a block after byte {consumed}"),
                    );
                    return None;
                }
                Err(PcapError::BufferTooSmall) => {
                    let cap = self.reader.data().len().max(BUFFER) * 2;
                    if cap > MAX_BUFFER || !self.reader.grow(cap) {
                        self.stop(
                            false,
                            format!("block after byte {consumed} larger than {MAX_BUFFER} bytes"),
                        );
                        return None;
                    }
                    if let Err(e) = self.reader.refill() {
                        let msg = format!("read error after byte {consumed}: {e:?}");
                        self.stop(false, msg);
                        return None;
                    }
                    continue;
                }
                Err(e) => {
                    let msg = format!("corrupt data after byte {consumed}: {e:?}");
                    self.stop(false, msg);
                    return None;
                }
            };
            self.reader.consume(offset);
            if rec.is_some() {
                return rec;
            }
        }
        None
    }
}

/// The length field of the pcapng block at the start of `data` when it is below the 12 bytes
/// every block has (type, length, trailing length). Section header blocks are skipped: their
/// byte order is their own and pcap-parser checks their length against a larger minimum.
fn short_ng_block(data: &[u8], big_endian: bool) -> Option<u32> {
    let ty: [u8; 4] = data.get(0..4)?.try_into().ok()?;
    let len: [u8; 4] = data.get(4..8)?.try_into().ok()?;
    if ty == [0x0a, 0x0d, 0x0d, 0x0a] {
        return None;
    }
    let len = if big_endian {
        u32::from_be_bytes(len)
    } else {
        u32::from_le_bytes(len)
    };
    (len < 12).then_some(len)
}

/// Units per second of a pcapng `if_tsresol` byte: `10^n`, or `2^n` when the high bit is set.
/// (pcap-parser 0.17's own helper rejects every binary resolution: it range-checks the byte
/// before masking the flag bit.)
fn ts_resolution(tsresol: u8) -> Option<u64> {
    let n = (tsresol & 0x7f) as u32;
    if tsresol & 0x80 == 0 {
        10u64.checked_pow(n)
    } else if n <= 63 {
        Some(1u64 << n)
    } else {
        None
    }
}

/// Nanoseconds since the epoch of a pcapng timestamp in `resolution` units per second.
fn ng_ts_ns(raw: u64, resolution: u64, offset_s: i64) -> i64 {
    let secs = raw / resolution;
    let frac = raw % resolution;
    let frac_ns = (frac as u128 * 1_000_000_000 / resolution as u128) as i64;
    (secs as i64)
        .saturating_add(offset_s)
        .saturating_mul(1_000_000_000)
        .saturating_add(frac_ns)
}

/// Network and transport facts of one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Decoded {
    pub network: Network,
    pub protocol: Protocol,
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    pub src_port: Option<u16>,
    pub dst_port: Option<u16>,
    pub tcp_flags: Option<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    Ipv4,
    Ipv6,
    Arp,
    #[default]
    Other,
}

impl Network {
    pub fn as_str(self) -> &'static str {
        match self {
            Network::Ipv4 => "ipv4",
            Network::Ipv6 => "ipv6",
            Network::Arp => "arp",
            Network::Other => "other",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    Tcp,
    Udp,
    Icmp,
    Icmpv6,
    Arp,
    #[default]
    Other,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Icmp => "icmp",
            Protocol::Icmpv6 => "icmpv6",
            Protocol::Arp => "arp",
            Protocol::Other => "other",
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn build(
    summary: &mut CaptureSummary,
    addrs: &AddressMap,
    addr_text: &mut HashMap<IpAddr, String>,
    linktype: Linktype,
    iface: &str,
    ts_ns: i64,
    orig_len: u32,
    data: &[u8],
) -> PacketRecord {
    let d = decode_frame(linktype, data);
    if !is_known_linktype(linktype) {
        summary.undecodable += 1;
    }
    let length = orig_len.max(data.len() as u32);
    summary.packets += 1;
    summary.bytes += length as u64;
    summary.captured_bytes += data.len() as u64;
    let proto = d.protocol.as_str();
    match summary.protocols.get_mut(proto) {
        Some(c) => {
            c.packets += 1;
            c.bytes += length as u64;
        }
        None => {
            summary.protocols.insert(
                proto.to_string(),
                Counts {
                    packets: 1,
                    bytes: length as u64,
                },
            );
        }
    }
    if summary.first_ts_ns.is_none() {
        summary.first_ts_ns = Some(ts_ns);
    }
    summary.last_ts_ns = Some(summary.last_ts_ns.map_or(ts_ns, |t| t.max(ts_ns)));
    let mut text = |ip: IpAddr| -> String {
        if let Some(s) = addr_text.get(&ip) {
            return s.clone();
        }
        let s = ip.to_string();
        if addr_text.len() < 65_536 {
            addr_text.insert(ip, s.clone());
        }
        s
    };
    PacketRecord {
        ts_ns,
        seq: 0,
        capture: summary.capture.clone(),
        interface: iface.to_string(),
        network: d.network.as_str().to_string(),
        protocol: proto.to_string(),
        src_addr: d.src.map(&mut text),
        dst_addr: d.dst.map(&mut text),
        src_port: d.src_port,
        dst_port: d.dst_port,
        length,
        captured_length: data.len() as u32,
        tcp_flags: d.tcp_flags,
        src_service: d.src.and_then(|ip| addrs.service(&ip)).map(str::to_string),
        dst_service: d.dst.and_then(|ip| addrs.service(&ip)).map(str::to_string),
    }
}

fn is_known_linktype(l: Linktype) -> bool {
    matches!(l.0, 0 | 1 | 12 | 101 | 108 | 113 | 228 | 229 | 276)
}

#[inline]
fn be16(d: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*d.get(at)?, *d.get(at + 1)?]))
}

/// Decodes the link, network and transport headers of one frame. Never panics.
pub fn decode_frame(linktype: Linktype, data: &[u8]) -> Decoded {
    match linktype.0 {
        1 => decode_ethernet(data),
        113 => match (be16(data, 14), data.get(16..)) {
            (Some(et), Some(rest)) => decode_ethertype(et, rest),
            _ => Decoded::default(),
        },
        276 => match (be16(data, 0), data.get(20..)) {
            (Some(et), Some(rest)) => decode_ethertype(et, rest),
            _ => Decoded::default(),
        },
        12 | 101 => decode_raw_ip(data),
        228 => decode_ipv4(data),
        229 => decode_ipv6(data),
        0 | 108 => {
            // 4-byte address family, host byte order for NULL (either order accepted), network
            // order for LOOP. AF_INET is 2 everywhere; AF_INET6 is 10, 24, 28 or 30.
            let Some(h) = data.get(..4) else {
                return Decoded::default();
            };
            let fam = if h[0] == 0 && h[1] == 0 {
                u32::from_be_bytes([h[0], h[1], h[2], h[3]])
            } else {
                u32::from_le_bytes([h[0], h[1], h[2], h[3]])
            };
            match fam {
                2 => decode_ipv4(&data[4..]),
                10 | 24 | 28 | 30 => decode_ipv6(&data[4..]),
                _ => Decoded::default(),
            }
        }
        _ => Decoded::default(),
    }
}

fn decode_ethernet(data: &[u8]) -> Decoded {
    let mut off = 12;
    let mut et = match be16(data, off) {
        Some(e) => e,
        None => return Decoded::default(),
    };
    // Up to two VLAN tags (802.1Q 0x8100, 802.1ad 0x88a8, old QinQ 0x9100).
    for _ in 0..2 {
        if matches!(et, 0x8100 | 0x88a8 | 0x9100) {
            off += 4;
            et = match be16(data, off) {
                Some(e) => e,
                None => return Decoded::default(),
            };
        }
    }
    match data.get(off + 2..) {
        Some(rest) => decode_ethertype(et, rest),
        None => Decoded::default(),
    }
}

fn decode_ethertype(et: u16, rest: &[u8]) -> Decoded {
    match et {
        0x0800 => decode_ipv4(rest),
        0x86dd => decode_ipv6(rest),
        0x0806 => decode_arp(rest),
        _ => Decoded::default(),
    }
}

fn decode_raw_ip(data: &[u8]) -> Decoded {
    match data.first().map(|b| b >> 4) {
        Some(4) => decode_ipv4(data),
        Some(6) => decode_ipv6(data),
        _ => Decoded::default(),
    }
}

fn decode_arp(d: &[u8]) -> Decoded {
    let mut out = Decoded {
        network: Network::Arp,
        protocol: Protocol::Arp,
        ..Default::default()
    };
    // htype(2) ptype(2) hlen(1) plen(1) oper(2) sha spa tha tpa
    let (Some(ptype), Some(&hlen), Some(&plen)) = (be16(d, 2), d.get(4), d.get(5)) else {
        return out;
    };
    if ptype == 0x0800 && plen == 4 {
        let h = hlen as usize;
        let spa = 8 + h;
        let tpa = 8 + 2 * h + 4;
        if let (Some(s), Some(t)) = (d.get(spa..spa + 4), d.get(tpa..tpa + 4)) {
            out.src = Some(IpAddr::V4(Ipv4Addr::new(s[0], s[1], s[2], s[3])));
            out.dst = Some(IpAddr::V4(Ipv4Addr::new(t[0], t[1], t[2], t[3])));
        }
    }
    out
}

/// The fixed header (`len` bytes) of an IP packet of `version`; `None` when `d` is not one.
fn ip_header(d: &[u8], len: usize, version: u8) -> Option<&[u8]> {
    d.get(..len).filter(|h| h[0] >> 4 == version)
}

fn decode_ipv4(d: &[u8]) -> Decoded {
    let Some(h) = ip_header(d, 20, 4) else {
        return Decoded::default();
    };
    let ihl = ((h[0] & 0x0f) as usize) * 4;
    let mut out = Decoded {
        network: Network::Ipv4,
        src: Some(IpAddr::V4(Ipv4Addr::new(h[12], h[13], h[14], h[15]))),
        dst: Some(IpAddr::V4(Ipv4Addr::new(h[16], h[17], h[18], h[19]))),
        ..Default::default()
    };
    let frag_offset = u16::from_be_bytes([h[6], h[7]]) & 0x1fff;
    let proto = h[9];
    let payload = if ihl >= 20 && frag_offset == 0 {
        d.get(ihl..)
    } else {
        None
    };
    transport(&mut out, proto, payload, false);
    out
}

fn decode_ipv6(d: &[u8]) -> Decoded {
    let Some(h) = ip_header(d, 40, 6) else {
        return Decoded::default();
    };
    let mut s = [0u8; 16];
    s.copy_from_slice(&h[8..24]);
    let mut t = [0u8; 16];
    t.copy_from_slice(&h[24..40]);
    let mut out = Decoded {
        network: Network::Ipv6,
        src: Some(IpAddr::V6(Ipv6Addr::from(s))),
        dst: Some(IpAddr::V6(Ipv6Addr::from(t))),
        ..Default::default()
    };
    let mut next = h[6];
    let mut off = 40usize;
    let mut first_fragment = true;
    // Skip extension headers (bounded: at most 8).
    for _ in 0..8 {
        match next {
            0 | 43 | 60 => {
                let (Some(&nh), Some(&len)) = (d.get(off), d.get(off + 1)) else {
                    return out;
                };
                next = nh;
                off += (len as usize + 1) * 8;
            }
            44 => {
                let (Some(&nh), Some(fo)) = (d.get(off), be16(d, off + 2)) else {
                    return out;
                };
                next = nh;
                first_fragment = fo >> 3 == 0;
                off += 8;
            }
            51 => {
                let (Some(&nh), Some(&len)) = (d.get(off), d.get(off + 1)) else {
                    return out;
                };
                next = nh;
                off += (len as usize + 2) * 4;
            }
            _ => break,
        }
    }
    let payload = if first_fragment { d.get(off..) } else { None };
    transport(&mut out, next, payload, true);
    out
}

fn transport(out: &mut Decoded, proto: u8, payload: Option<&[u8]>, v6: bool) {
    out.protocol = match proto {
        6 => Protocol::Tcp,
        17 => Protocol::Udp,
        1 if !v6 => Protocol::Icmp,
        58 if v6 => Protocol::Icmpv6,
        _ => Protocol::Other,
    };
    let Some(p) = payload else { return };
    if matches!(out.protocol, Protocol::Tcp | Protocol::Udp) {
        out.src_port = be16(p, 0);
        out.dst_port = be16(p, 2);
    }
    if out.protocol == Protocol::Tcp {
        out.tcp_flags = p.get(13).copied();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hosts_address_on_a_project_network_is_the_recorder() {
        let mut m = Manifest::default();
        let mut c = trace::manifest::ContainerInfo::default();
        c.addresses.insert("net".into(), "172.30.0.2".into());
        m.compose.services.insert(
            "a".into(),
            trace::manifest::ServiceInfo {
                containers: vec![c],
                ..Default::default()
            },
        );
        m.compose.networks.insert(
            "net".into(),
            trace::manifest::NetworkInfo {
                gateway: Some("172.30.0.1".into()),
                ..Default::default()
            },
        );
        let a = AddressMap::from_manifest(&m);
        let ip = |s: &str| {
            s.parse::<IpAddr>()
                .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
        };
        assert_eq!(a.service(&ip("172.30.0.2")), Some("a"));
        assert_eq!(a.service(&ip("172.30.0.1")), Some(RECORDER_SERVICE));
        assert_eq!(a.service(&ip("172.30.0.9")), None);
    }

    #[test]
    fn ng_timestamps() {
        assert_eq!(
            ng_ts_ns(1_500_000_000_123_456, 1_000_000, 0),
            1_500_000_000_123_456_000
        );
        assert_eq!(
            ng_ts_ns(1_500_000_000_123_456_789, 1_000_000_000, 0),
            1_500_000_000_123_456_789
        );
        // 2^-10 s units (if_tsresol = 0x8a): 1024 units = 1 s.
        assert_eq!(ng_ts_ns(1024 * 10 + 512, 1024, 5), 15_500_000_000);
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 0x1234_5678_9abc_def0u64;
        for len in 0..300 {
            let buf: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            for lt in [0, 1, 12, 101, 108, 113, 228, 229, 276, 999] {
                let _ = decode_frame(Linktype(lt), &buf);
            }
        }
    }

    #[test]
    fn arp_addresses() {
        let mut f = vec![0xffu8; 6];
        f.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x08, 0x06]);
        f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
        f.extend_from_slice(&[2, 0, 0, 0, 0, 1, 172, 18, 0, 2]);
        f.extend_from_slice(&[0, 0, 0, 0, 0, 0, 172, 18, 0, 3]);
        let d = decode_frame(Linktype::ETHERNET, &f);
        assert_eq!(d.protocol, Protocol::Arp);
        assert_eq!(d.src, Some("172.18.0.2".parse().unwrap()));
        assert_eq!(d.dst, Some("172.18.0.3".parse().unwrap()));
    }
}
