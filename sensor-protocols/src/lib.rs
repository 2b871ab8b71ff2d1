//! The protocols the recorder's sensors speak, with no Docker: Jolokia (JMX over HTTP), HTTP and
//! Prometheus probes, exec output parsing, tcpdump capture and the pcap summariser that fills
//! `packets.parquet`.
//!
//! Every protocol here turns what it observes into [`trace::Event`]s (or
//! [`trace::PacketRecord`]s) in the shapes docs/sensors.md describes; failures become error
//! events, never panics. The recorder's sensors (`recorder/src/sensors/`) supply addresses,
//! timing and the Docker calls.

pub mod capture;
pub mod http;
pub mod jolokia;
pub mod pcap;
pub mod pcapgen;
pub mod probe;
pub mod prom;

/// Now, as UTC nanoseconds since the epoch (the trace clock).
pub use trace::time::now_ns;
