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

// ---------------------------------------------------------------------------------------------
// Storage: Arrow schemas, record batch conversion, and the packet-as-event view.

use std::sync::{Arc, OnceLock};

use arrow_array::builder::{
    Int64Builder, StringBuilder, UInt16Builder, UInt32Builder, UInt64Builder, UInt8Builder,
};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// Columns of `packets.parquet` that are dictionary-encoded.
pub const PACKET_DICT_COLUMNS: [&str; 6] = [
    "capture",
    "interface",
    "network",
    "protocol",
    "src_service",
    "dst_service",
];

fn packet_fields(table: bool) -> Vec<Field> {
    let s = |name: &str, nullable: bool| {
        if table && PACKET_DICT_COLUMNS.contains(&name) {
            Field::new(
                name,
                DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
                nullable,
            )
        } else {
            Field::new(name, DataType::Utf8, nullable)
        }
    };
    let mut f = vec![Field::new("ts_ns", DataType::Int64, false)];
    if table {
        f.push(Field::new(
            "time",
            DataType::Timestamp(TimeUnit::Nanosecond, None),
            false,
        ));
    }
    f.extend([
        Field::new("seq", DataType::UInt64, false),
        s("capture", false),
        s("interface", false),
        s("network", false),
        s("protocol", false),
        s("src_addr", true),
        s("dst_addr", true),
        Field::new("src_port", DataType::UInt16, true),
        Field::new("dst_port", DataType::UInt16, true),
        Field::new("length", DataType::UInt32, false),
        Field::new("captured_length", DataType::UInt32, false),
        Field::new("tcp_flags", DataType::UInt8, true),
        s("src_service", true),
        s("dst_service", true),
    ]);
    f
}

fn versioned(fields: Vec<Field>) -> SchemaRef {
    let meta: std::collections::HashMap<String, String> = [(
        crate::schema::FORMAT_VERSION_KEY.to_string(),
        crate::FORMAT_VERSION.to_string(),
    )]
    .into_iter()
    .collect();
    Arc::new(Schema::new_with_metadata(fields, meta))
}

/// Schema of the packet spool `packets.arrows` (plain strings, no `time`).
pub fn packet_log_schema() -> SchemaRef {
    static S: OnceLock<SchemaRef> = OnceLock::new();
    S.get_or_init(|| versioned(packet_fields(false))).clone()
}

/// Schema of `packets.parquet` (format v1).
pub fn packet_table_schema() -> SchemaRef {
    static S: OnceLock<SchemaRef> = OnceLock::new();
    S.get_or_init(|| versioned(packet_fields(true))).clone()
}

/// Builds a log-shaped batch from packet records (seqs already assigned).
pub fn packets_to_log_batch(packets: &[PacketRecord]) -> RecordBatch {
    let n = packets.len();
    let mut ts = Int64Builder::with_capacity(n);
    let mut seq = UInt64Builder::with_capacity(n);
    let mut strs: Vec<StringBuilder> = (0..8)
        .map(|_| StringBuilder::with_capacity(n, n * 8))
        .collect();
    let mut sp = UInt16Builder::with_capacity(n);
    let mut dp = UInt16Builder::with_capacity(n);
    let mut len = UInt32Builder::with_capacity(n);
    let mut clen = UInt32Builder::with_capacity(n);
    let mut flags = UInt8Builder::with_capacity(n);
    for p in packets {
        ts.append_value(p.ts_ns);
        seq.append_value(p.seq);
        strs[0].append_value(&p.capture);
        strs[1].append_value(&p.interface);
        strs[2].append_value(&p.network);
        strs[3].append_value(&p.protocol);
        strs[4].append_option(p.src_addr.as_deref());
        strs[5].append_option(p.dst_addr.as_deref());
        sp.append_option(p.src_port);
        dp.append_option(p.dst_port);
        len.append_value(p.length);
        clen.append_value(p.captured_length);
        flags.append_option(p.tcp_flags);
        strs[6].append_option(p.src_service.as_deref());
        strs[7].append_option(p.dst_service.as_deref());
    }
    let mut s = strs
        .into_iter()
        .map(|mut b| Arc::new(b.finish()) as ArrayRef);
    let mut next = || {
        s.next()
            .unwrap_or_else(|| unreachable!("eight string columns"))
    };
    let (capture, interface, network, protocol, src_addr, dst_addr) =
        (next(), next(), next(), next(), next(), next());
    let (src_service, dst_service) = (next(), next());
    let cols: Vec<ArrayRef> = vec![
        Arc::new(ts.finish()),
        Arc::new(seq.finish()),
        capture,
        interface,
        network,
        protocol,
        src_addr,
        dst_addr,
        Arc::new(sp.finish()),
        Arc::new(dp.finish()),
        Arc::new(len.finish()),
        Arc::new(clen.finish()),
        Arc::new(flags.finish()),
        src_service,
        dst_service,
    ];
    RecordBatch::try_new(packet_log_schema(), cols)
        .unwrap_or_else(|e| unreachable!("packet log batch: {e}"))
}

/// Converts a log-shaped packet batch into the `packets.parquet` shape.
pub fn packet_log_to_table_batch(
    batch: &RecordBatch,
) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let schema = packet_table_schema();
    let mut cols: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for f in schema.fields() {
        let c = if f.name() == "time" {
            let ts = batch
                .column_by_name("ts_ns")
                .and_then(|c| c.as_any().downcast_ref::<arrow_array::Int64Array>())
                .ok_or_else(|| {
                    arrow_schema::ArrowError::SchemaError("missing ts_ns column".into())
                })?;
            crate::schema::time_column(ts)
        } else {
            batch
                .column_by_name(f.name())
                .ok_or_else(|| {
                    arrow_schema::ArrowError::SchemaError(format!("missing {} column", f.name()))
                })?
                .clone()
        };
        cols.push(if c.data_type() == f.data_type() {
            c
        } else {
            arrow::compute::cast(&c, f.data_type())?
        });
    }
    RecordBatch::try_new(schema, cols)
}

/// Reads packet records out of a batch of either shape (columns found by name; strings of any
/// encoding). Fails with a message naming the column when a required column is missing.
pub fn packets_from_batch(batch: &RecordBatch) -> Result<Vec<PacketRecord>, String> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Int64Type, UInt16Type, UInt32Type, UInt64Type, UInt8Type};
    let col = |name: &str| {
        batch
            .column_by_name(name)
            .ok_or_else(|| format!("missing column {name}"))
    };
    let string = |name: &str, required: bool| -> Result<Option<arrow_array::StringArray>, String> {
        match batch.column_by_name(name) {
            Some(c) => arrow::compute::cast(c, &DataType::Utf8)
                .map(|a| Some(a.as_string::<i32>().clone()))
                .map_err(|e| format!("column {name}: {e}")),
            None if required => Err(format!("missing column {name}")),
            None => Ok(None),
        }
    };
    let prim = |name: &str, t: &DataType| -> Result<ArrayRef, String> {
        arrow::compute::cast(col(name)?, t).map_err(|e| format!("column {name}: {e}"))
    };
    let ts = prim("ts_ns", &DataType::Int64)?;
    let ts = ts.as_primitive::<Int64Type>();
    let seq = prim("seq", &DataType::UInt64)?;
    let seq = seq.as_primitive::<UInt64Type>();
    let sp = prim("src_port", &DataType::UInt16)?;
    let sp = sp.as_primitive::<UInt16Type>();
    let dp = prim("dst_port", &DataType::UInt16)?;
    let dp = dp.as_primitive::<UInt16Type>();
    let len = prim("length", &DataType::UInt32)?;
    let len = len.as_primitive::<UInt32Type>();
    let clen = prim("captured_length", &DataType::UInt32)?;
    let clen = clen.as_primitive::<UInt32Type>();
    let fl = prim("tcp_flags", &DataType::UInt8)?;
    let fl = fl.as_primitive::<UInt8Type>();
    let capture = string("capture", true)?;
    let interface = string("interface", false)?;
    let network = string("network", false)?;
    let protocol = string("protocol", true)?;
    let src_addr = string("src_addr", false)?;
    let dst_addr = string("dst_addr", false)?;
    let src_service = string("src_service", false)?;
    let dst_service = string("dst_service", false)?;
    let get = |a: &Option<arrow_array::StringArray>, i: usize| -> Option<String> {
        a.as_ref()
            .filter(|a| a.is_valid(i))
            .map(|a| a.value(i).to_string())
    };
    let opt = |a: &dyn Array, i: usize| a.is_valid(i);
    let mut out = Vec::with_capacity(batch.num_rows());
    for i in 0..batch.num_rows() {
        out.push(PacketRecord {
            ts_ns: ts.value(i),
            seq: seq.value(i),
            capture: get(&capture, i).unwrap_or_default(),
            interface: get(&interface, i).unwrap_or_default(),
            network: get(&network, i).unwrap_or_default(),
            protocol: get(&protocol, i).unwrap_or_default(),
            src_addr: get(&src_addr, i),
            dst_addr: get(&dst_addr, i),
            src_port: opt(sp, i).then(|| sp.value(i)),
            dst_port: opt(dp, i).then(|| dp.value(i)),
            length: len.value(i),
            captured_length: clen.value(i),
            tcp_flags: opt(fl, i).then(|| fl.value(i)),
            src_service: get(&src_service, i),
            dst_service: get(&dst_service, i),
        });
    }
    Ok(out)
}

impl PacketRecord {
    /// The packet as an event (`source = "packet"`, `kind` = protocol, `service` = src_service,
    /// `data` = every field plus `tcp_flags` rendered and `tcp_flags_bits`).
    pub fn to_event(&self) -> crate::Event {
        let data = serde_json::json!({
            "capture": self.capture,
            "interface": self.interface,
            "network": self.network,
            "protocol": self.protocol,
            "src_addr": self.src_addr,
            "dst_addr": self.dst_addr,
            "src_port": self.src_port,
            "dst_port": self.dst_port,
            "length": self.length,
            "captured_length": self.captured_length,
            "tcp_flags": self.tcp_flags.map(tcp_flags::render),
            "tcp_flags_bits": self.tcp_flags,
            "src_service": self.src_service,
            "dst_service": self.dst_service,
        });
        let mut e = crate::Event::new(self.ts_ns, "packet", self.protocol.clone()).data(&data);
        e.seq = self.seq;
        e.service = self.src_service.clone();
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(seq: u64) -> PacketRecord {
        PacketRecord {
            ts_ns: 10 + seq as i64,
            seq,
            capture: "net-middle".into(),
            interface: String::new(),
            network: "ipv4".into(),
            protocol: "tcp".into(),
            src_addr: Some("10.0.0.2".into()),
            dst_addr: Some("10.0.0.3".into()),
            src_port: Some(2552),
            dst_port: None,
            length: 74,
            captured_length: 74,
            tcp_flags: Some(tcp_flags::SYN | tcp_flags::ACK),
            src_service: Some("left-a".into()),
            dst_service: None,
        }
    }

    #[test]
    fn packets_round_trip_through_both_shapes() {
        let ps = vec![sample(1), sample(2)];
        let b = packets_to_log_batch(&ps);
        assert_eq!(packets_from_batch(&b).unwrap(), ps);
        let t = packet_log_to_table_batch(&b).unwrap();
        assert_eq!(t.schema(), packet_table_schema());
        assert_eq!(packets_from_batch(&t).unwrap(), ps);
    }

    #[test]
    fn packet_event_carries_flags_both_ways() {
        let e = sample(3).to_event();
        assert_eq!(
            (e.source.as_str(), e.kind.as_str(), e.service.as_deref()),
            ("packet", "tcp", Some("left-a"))
        );
        let d: serde_json::Value = serde_json::from_str(e.data.as_deref().unwrap()).unwrap();
        assert_eq!(d["tcp_flags"], "S.");
        assert_eq!(d["tcp_flags_bits"], 0x12);
        assert_eq!(d["dst_port"], serde_json::Value::Null);
        assert_eq!(tcp_flags::render(0), "none");
    }
}
