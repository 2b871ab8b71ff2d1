//! Synthetic captures for tests and benchmarks: a pcap writer (either byte order, micro- or
//! nanosecond timestamps), a pcapng writer (several interfaces, any `if_tsresol`), and frame
//! builders for Ethernet / Linux SLL / SLL2 / raw IP carrying IPv4 or IPv6 with TCP, UDP, ICMP,
//! ICMPv6, or ARP. The frames are well formed (lengths and IPv4 header checksums right) so that
//! tshark decodes them the same way the summariser does.

use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr};

/// Writes a legacy pcap file.
#[derive(Debug)]
pub struct PcapWriter<W: Write> {
    w: W,
    big_endian: bool,
    nanos: bool,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the file header.
    pub fn new(
        mut w: W,
        linktype: u32,
        big_endian: bool,
        nanos: bool,
        snaplen: u32,
    ) -> io::Result<PcapWriter<W>> {
        let magic: u32 = if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 };
        let mut h = Vec::with_capacity(24);
        let u32b = |v: u32| {
            if big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let u16b = |v: u16| {
            if big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        h.extend_from_slice(&u32b(magic));
        h.extend_from_slice(&u16b(2));
        h.extend_from_slice(&u16b(4));
        h.extend_from_slice(&u32b(0));
        h.extend_from_slice(&u32b(0));
        h.extend_from_slice(&u32b(snaplen));
        h.extend_from_slice(&u32b(linktype));
        w.write_all(&h)?;
        Ok(PcapWriter {
            w,
            big_endian,
            nanos,
        })
    }

    /// Writes one record; `data` is what was captured, `orig_len` the length on the wire.
    pub fn packet(&mut self, ts_ns: i64, orig_len: u32, data: &[u8]) -> io::Result<()> {
        let secs = ts_ns.div_euclid(1_000_000_000) as u32;
        let frac = ts_ns.rem_euclid(1_000_000_000) as u32;
        let frac = if self.nanos { frac } else { frac / 1000 };
        let f = |v: u32| {
            if self.big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&f(secs));
        h[4..8].copy_from_slice(&f(frac));
        h[8..12].copy_from_slice(&f(data.len() as u32));
        h[12..16].copy_from_slice(&f(orig_len));
        self.w.write_all(&h)?;
        self.w.write_all(data)
    }

    pub fn into_inner(self) -> W {
        self.w
    }
}

/// Writes a little-endian pcapng file.
#[derive(Debug)]
pub struct PcapNgWriter<W: Write> {
    w: W,
    /// Units per second of each interface.
    resolutions: Vec<u64>,
}

fn pad4(v: &mut Vec<u8>) {
    while !v.len().is_multiple_of(4) {
        v.push(0);
    }
}

fn option(v: &mut Vec<u8>, code: u16, value: &[u8]) {
    v.extend_from_slice(&code.to_le_bytes());
    v.extend_from_slice(&(value.len() as u16).to_le_bytes());
    v.extend_from_slice(value);
    pad4(v);
}

impl<W: Write> PcapNgWriter<W> {
    /// Writes a section header block.
    pub fn new(mut w: W) -> io::Result<PcapNgWriter<W>> {
        let mut body = Vec::new();
        body.extend_from_slice(&0x1a2b_3c4du32.to_le_bytes());
        body.extend_from_slice(&1u16.to_le_bytes());
        body.extend_from_slice(&0u16.to_le_bytes());
        body.extend_from_slice(&(-1i64).to_le_bytes());
        write_block(&mut w, 0x0a0d_0d0a, &body)?;
        Ok(PcapNgWriter {
            w,
            resolutions: Vec::new(),
        })
    }

    /// Adds an interface; `tsresol` is the raw `if_tsresol` byte (6 = µs, 9 = ns, 0x80|n = 2^-n).
    /// Returns its interface id.
    pub fn interface(&mut self, linktype: u16, name: &str, tsresol: u8) -> io::Result<u32> {
        let mut body = Vec::new();
        body.extend_from_slice(&linktype.to_le_bytes());
        body.extend_from_slice(&0u16.to_le_bytes());
        body.extend_from_slice(&262_144u32.to_le_bytes());
        option(&mut body, 2, name.as_bytes());
        option(&mut body, 9, &[tsresol]);
        option(&mut body, 0, &[]);
        write_block(&mut self.w, 1, &body)?;
        let res = if tsresol & 0x80 == 0 {
            10u64.pow(tsresol as u32)
        } else {
            1u64 << (tsresol & 0x7f)
        };
        self.resolutions.push(res);
        Ok(self.resolutions.len() as u32 - 1)
    }

    /// Writes an enhanced packet block.
    pub fn packet(&mut self, if_id: u32, ts_ns: i64, orig_len: u32, data: &[u8]) -> io::Result<()> {
        let res = self
            .resolutions
            .get(if_id as usize)
            .copied()
            .unwrap_or(1_000_000);
        let ts = (ts_ns as i128 * res as i128 / 1_000_000_000) as u64;
        let mut body = Vec::with_capacity(20 + data.len() + 3);
        body.extend_from_slice(&if_id.to_le_bytes());
        body.extend_from_slice(&((ts >> 32) as u32).to_le_bytes());
        body.extend_from_slice(&(ts as u32).to_le_bytes());
        body.extend_from_slice(&(data.len() as u32).to_le_bytes());
        body.extend_from_slice(&orig_len.to_le_bytes());
        body.extend_from_slice(data);
        pad4(&mut body);
        write_block(&mut self.w, 6, &body)
    }

    pub fn into_inner(self) -> W {
        self.w
    }
}

fn write_block<W: Write>(w: &mut W, ty: u32, body: &[u8]) -> io::Result<()> {
    let total = (body.len() + 12) as u32;
    w.write_all(&ty.to_le_bytes())?;
    w.write_all(&total.to_le_bytes())?;
    w.write_all(body)?;
    w.write_all(&total.to_le_bytes())
}

/// Internet checksum of `data`.
fn checksum(data: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in data.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            (c[0] as u16) << 8
        };
        sum += w as u32;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A transport segment to put inside IP.
#[derive(Debug, Clone, Copy)]
pub enum L4 {
    Tcp {
        sport: u16,
        dport: u16,
        flags: u8,
        payload: usize,
    },
    Udp {
        sport: u16,
        dport: u16,
        payload: usize,
    },
    /// ICMP (v4) or ICMPv6 echo request.
    Echo { payload: usize },
}

fn l4_bytes(l4: L4, v6: bool) -> (u8, Vec<u8>) {
    match l4 {
        L4::Tcp {
            sport,
            dport,
            flags,
            payload,
        } => {
            let mut s = vec![0u8; 20 + payload];
            s[0..2].copy_from_slice(&sport.to_be_bytes());
            s[2..4].copy_from_slice(&dport.to_be_bytes());
            s[4..8].copy_from_slice(&1000u32.to_be_bytes());
            s[8..12].copy_from_slice(&(if flags & 0x10 != 0 { 2000u32 } else { 0 }).to_be_bytes());
            s[12] = 5 << 4;
            s[13] = flags;
            s[14..16].copy_from_slice(&65535u16.to_be_bytes());
            for (i, b) in s[20..].iter_mut().enumerate() {
                *b = b'a' + (i % 26) as u8;
            }
            (6, s)
        }
        L4::Udp {
            sport,
            dport,
            payload,
        } => {
            let mut s = vec![0u8; 8 + payload];
            s[0..2].copy_from_slice(&sport.to_be_bytes());
            s[2..4].copy_from_slice(&dport.to_be_bytes());
            s[4..6].copy_from_slice(&((8 + payload) as u16).to_be_bytes());
            for (i, b) in s[8..].iter_mut().enumerate() {
                *b = b'A' + (i % 26) as u8;
            }
            (17, s)
        }
        L4::Echo { payload } => {
            let mut s = vec![0u8; 8 + payload];
            s[0] = if v6 { 128 } else { 8 };
            s[4..6].copy_from_slice(&7u16.to_be_bytes());
            s[6..8].copy_from_slice(&1u16.to_be_bytes());
            if !v6 {
                let c = checksum(&s);
                s[2..4].copy_from_slice(&c.to_be_bytes());
            }
            (if v6 { 58 } else { 1 }, s)
        }
    }
}

/// An IPv4 or IPv6 packet (family from the addresses; both must be the same family).
pub fn ip_packet(src: IpAddr, dst: IpAddr, l4: L4) -> Vec<u8> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let (proto, seg) = l4_bytes(l4, false);
            let mut p = vec![0u8; 20];
            p[0] = 0x45;
            p[2..4].copy_from_slice(&((20 + seg.len()) as u16).to_be_bytes());
            p[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
            p[6] = 0x40; // don't fragment
            p[8] = 64;
            p[9] = proto;
            p[12..16].copy_from_slice(&s.octets());
            p[16..20].copy_from_slice(&d.octets());
            let c = checksum(&p);
            p[10..12].copy_from_slice(&c.to_be_bytes());
            p.extend_from_slice(&seg);
            p
        }
        (s, d) => {
            let to6 = |a: IpAddr| match a {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            let (proto, seg) = l4_bytes(l4, true);
            let mut p = vec![0u8; 40];
            p[0] = 0x60;
            p[4..6].copy_from_slice(&(seg.len() as u16).to_be_bytes());
            p[6] = proto;
            p[7] = 64;
            p[8..24].copy_from_slice(&to6(s).octets());
            p[24..40].copy_from_slice(&to6(d).octets());
            p.extend_from_slice(&seg);
            p
        }
    }
}

/// An ARP request (`who has target, tell sender`) as an Ethernet payload.
pub fn arp_request(sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut a = vec![0u8, 1, 8, 0, 6, 4, 0, 1];
    a.extend_from_slice(&[2, 0x42, 0xac, 0x12, 0, 2]);
    a.extend_from_slice(&sender.octets());
    a.extend_from_slice(&[0; 6]);
    a.extend_from_slice(&target.octets());
    a
}

/// Wraps a network-layer payload in an Ethernet header.
pub fn ethernet(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0x42, 0xac, 0x12, 0, 3, 0x02, 0x42, 0xac, 0x12, 0, 2];
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    // Ethernet minimum frame (without FCS) is 60 bytes: pad as a NIC would.
    while f.len() < 60 {
        f.push(0);
    }
    f
}

/// Wraps a payload in a Linux cooked v1 (SLL) header.
pub fn sll(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0, 0, 0, 1, 0, 6, 0x02, 0x42, 0xac, 0x12, 0, 2, 0, 0];
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Wraps a payload in a Linux cooked v2 (SLL2) header.
pub fn sll2(ethertype: u16, ifindex: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = ethertype.to_be_bytes().to_vec();
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&ifindex.to_be_bytes());
    f.extend_from_slice(&[0, 1, 4, 6, 0x02, 0x42, 0xac, 0x12, 0, 2, 0, 0]);
    f.extend_from_slice(payload);
    f
}

/// Ethertype for an IP packet.
pub fn ethertype_of(ip: &[u8]) -> u16 {
    if ip.first().map(|b| b >> 4) == Some(6) {
        0x86dd
    } else {
        0x0800
    }
}

/// A deterministic pseudo-random mix of frames for `linktype` (1 Ethernet, 113 SLL, 276 SLL2,
/// 101 raw IP): TCP handshakes and data, UDP, ICMP echo, IPv6 TCP/UDP/ICMPv6, and (on link types
/// that can carry it) ARP, between addresses in 172.30.0.0/24 and fd00::/64.
pub fn mixed_frames(seed: u64, n: usize, linktype: u32) -> Vec<Vec<u8>> {
    let mut x = seed | 1;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n)
        .map(|_| {
            let r = rnd();
            let a = 2 + (r % 4) as u8;
            let b = 2 + ((r >> 8) % 4) as u8;
            let v6 = (r >> 16) % 5 == 0;
            let (src, dst): (IpAddr, IpAddr) = if v6 {
                (
                    format!("fd00::{a}")
                        .parse()
                        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                    format!("fd00::{b}")
                        .parse()
                        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                )
            } else {
                (
                    IpAddr::V4(Ipv4Addr::new(172, 30, 0, a)),
                    IpAddr::V4(Ipv4Addr::new(172, 30, 0, b)),
                )
            };
            let payload = ((r >> 24) % 600) as usize;
            let kind = (r >> 40) % 10;
            let carries_arp = linktype != 101;
            let (et, inner) = if kind == 9 && carries_arp {
                (
                    0x0806,
                    arp_request(Ipv4Addr::new(172, 30, 0, a), Ipv4Addr::new(172, 30, 0, b)),
                )
            } else {
                let l4 = match kind {
                    0..=4 => {
                        let flags =
                            [0x02u8, 0x12, 0x10, 0x18, 0x11, 0x04][((r >> 48) % 6) as usize];
                        let pl = if flags == 0x18 { payload } else { 0 };
                        L4::Tcp {
                            sport: 40000 + (r % 1000) as u16,
                            dport: 2552,
                            flags,
                            payload: pl,
                        }
                    }
                    5..=7 => L4::Udp {
                        sport: 50000 + (r % 1000) as u16,
                        dport: 9999,
                        payload,
                    },
                    _ => L4::Echo {
                        payload: payload.min(100),
                    },
                };
                let ip = ip_packet(src, dst, l4);
                (ethertype_of(&ip), ip)
            };
            match linktype {
                113 => sll(et, &inner),
                276 => sll2(et, 2 + (r % 3) as u32, &inner),
                101 => inner,
                _ => ethernet(et, &inner),
            }
        })
        .collect()
}
