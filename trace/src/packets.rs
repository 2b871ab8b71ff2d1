//! The packet model: one captured frame, summarised, as stored in `packets.parquet`.
//!
//! The pcap summariser (in the `sensors` crate) produces [`PacketRecord`]s; this crate owns how
//! they are written to and read from `packets.parquet` and how they are merged into the event
//! stream (as events with `source = "packet"`).

use serde::{Deserialize, Serialize};

/// TCP flag bits as in the TCP header (FIN = 0x01 … CWR = 0x80).
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;

    /// Renders flag bits the way tcpdump does: `S`, `S.`, `P.`, `F.`, `R` … (`.` is ACK).
    pub fn render(bits: u8) -> String {
        let mut s = String::new();
        for (bit, c) in [
            (FIN, 'F'),
            (SYN, 'S'),
            (RST, 'R'),
            (PSH, 'P'),
            (URG, 'U'),
            (ECE, 'E'),
            (CWR, 'W'),
        ] {
            if bits & bit != 0 {
                s.push(c);
            }
        }
        if bits & ACK != 0 {
            s.push('.');
        }
        if s.is_empty() {
            s.push_str("none");
        }
        s
    }
}

/// One captured frame, summarised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PacketRecord {
    /// Capture timestamp, UTC nanoseconds since the epoch (the trace clock).
    pub ts_ns: i64,
    /// Unique within the trace, shared with the event `seq` space (assigned when written).
    pub seq: u64,
    /// The capture this frame came from: the pcap file stem under `pcap/` (e.g. `left-a` or
    /// `net-middle`).
    pub capture: String,
    /// Interface name inside the capture, when the link type records it (pcapng), else empty.
    pub interface: String,
    /// Network-layer protocol family: `ipv4`, `ipv6`, `arp`, or `other`.
    pub network: String,
    /// Transport protocol: `tcp`, `udp`, `icmp`, `icmpv6`, `arp`, or `other`.
    pub protocol: String,
    pub src_addr: Option<String>,
    pub dst_addr: Option<String>,
    pub src_port: Option<u16>,
    pub dst_port: Option<u16>,
    /// Length of the frame on the wire (bytes).
    pub length: u32,
    /// Bytes actually captured (may be less than `length` with a snap length).
    pub captured_length: u32,
    /// TCP flag bits (see [`tcp_flags`]), for TCP only.
    pub tcp_flags: Option<u8>,
    /// Compose service owning `src_addr` / `dst_addr`, resolved from the manifest's networks.
    pub src_service: Option<String>,
    pub dst_service: Option<String>,
}
