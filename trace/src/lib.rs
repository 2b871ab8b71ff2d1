//! The trace: the contract between the recorder and the analyzer.
//!
//! A trace is a directory holding `manifest.json`, `events.parquet`, `packets.parquet` and `pcap/`
//! (see `docs/trace-format.md`). This crate owns the event model ([`Event`], [`EventRef`]), the
//! manifest types, the crash-safe writer, the streaming reader and the synthetic generator used by
//! tests and benchmarks. It knows nothing about Docker or monitors.

pub mod event;
pub mod manifest;
pub mod packets;

pub use event::{Event, EventRef, Source};
pub use manifest::Manifest;
pub use packets::PacketRecord;

/// The trace format version this crate writes. Readers accept this and every older version.
pub const FORMAT_VERSION: u32 = 1;
