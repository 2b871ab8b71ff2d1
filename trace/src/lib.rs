//! The trace: the contract between the recorder and the analyzer.
//!
//! A trace is a directory holding `manifest.json`, `events.parquet`, `packets.parquet` and `pcap/`
//! (see `docs/trace-format.md`). This crate owns the event model ([`Event`], [`EventRef`]), the
//! manifest types, the crash-safe writer ([`TraceWriter`]), finalization ([`finalize()`]), the
//! streaming reader ([`Trace`]), the synthetic generator ([`gen`]) used by tests and
//! benchmarks, and the event names writers use ([`kinds`]). It knows nothing about Docker or monitors.

pub mod checksum;
pub mod error;
pub mod event;
pub mod finalize;
pub mod framed;
pub mod gen;
pub mod kinds;
pub mod manifest;
pub mod packets;
pub mod reader;
pub mod remote;
pub mod schema;
mod sort;
pub mod writer;

pub use error::TraceError;
pub use event::{Event, EventRef, Source};
pub use finalize::{finalize, FinalizeSummary};
pub use manifest::Manifest;
pub use packets::PacketRecord;
pub use reader::{Columns, EventBatch, EventStream, ReadOptions, Trace};
pub use remote::{RemoteFile, RemoteTrace};
pub use writer::TraceWriter;

/// The trace format version this crate writes. Readers accept this and every older version.
pub const FORMAT_VERSION: u32 = 2;

/// File names inside a trace directory.
pub mod files {
    /// The manifest (JSON).
    pub const MANIFEST: &str = "manifest.json";
    /// The sorted events (written at finalization).
    pub const EVENTS_PARQUET: &str = "events.parquet";
    /// The append-only event log written while recording (Arrow IPC stream).
    pub const EVENTS_LOG: &str = "events.arrows";
    /// The sorted packet summaries (written at finalization, when there were packets).
    pub const PACKETS_PARQUET: &str = "packets.parquet";
    /// The append-only packet spool written while recording (Arrow IPC stream).
    pub const PACKETS_LOG: &str = "packets.arrows";
    /// Raw captures.
    pub const PCAP_DIR: &str = "pcap";
}

#[cfg(test)]
mod tests;
