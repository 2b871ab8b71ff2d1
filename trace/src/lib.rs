//! The trace: the contract between the recorder and the analyzer.
//!
//! A trace is a directory holding `manifest.json`, `events.parquet`, `packets.parquet` and `pcap/`
//! (see `docs/trace-format.md`). This crate owns the event model ([`Event`], [`EventRef`]), the
//! manifest types, the crash-safe writer ([`TraceWriter`]), finalization ([`finalize()`]), the
//! streaming reader ([`Trace`]), the synthetic generator ([`gen`]) used by tests and
//! benchmarks, and the event names writers use ([`kinds`]). It knows nothing about Docker or
//! monitors.
//!
//! It also owns [`time`], the one time dialect of the workspace (trace clock, durations, RFC
//! 3339), which is all that is left without the default `io` feature, and, behind the `testing`
//! feature, `testing`, the fuzz-corpus runner of the crates' `tests/fuzz_regressions.rs`.

#[cfg(feature = "testing")]
pub mod testing;
pub mod time;

#[cfg(feature = "io")]
pub mod checksum;
#[cfg(feature = "io")]
pub mod error;
#[cfg(feature = "io")]
pub mod event;
#[cfg(feature = "io")]
pub mod finalize;
#[cfg(feature = "io")]
pub mod framed;
#[cfg(feature = "io")]
pub mod gen;
#[cfg(feature = "io")]
pub mod kinds;
#[cfg(feature = "io")]
pub mod manifest;
#[cfg(feature = "io")]
pub mod packets;
#[cfg(feature = "io")]
pub mod reader;
#[cfg(feature = "io")]
pub mod remote;
#[cfg(feature = "io")]
pub mod schema;
#[cfg(feature = "io")]
mod sort;
#[cfg(feature = "io")]
pub mod stats;
#[cfg(feature = "io")]
pub mod writer;

#[cfg(feature = "io")]
pub use error::TraceError;
#[cfg(feature = "io")]
pub use event::{Event, EventRef, Source};
#[cfg(feature = "io")]
pub use finalize::{finalize, FinalizeSummary};
#[cfg(feature = "io")]
pub use manifest::Manifest;
#[cfg(feature = "io")]
pub use packets::PacketRecord;
#[cfg(feature = "io")]
pub use reader::{
    Columns, EventBatch, EventColumns, EventStream, Prepare, Prepared, ReadOptions, Trace,
};
#[cfg(feature = "io")]
pub use remote::{RemoteFile, RemoteTrace};
#[cfg(feature = "io")]
pub use stats::{GroupStats, StrStats};
#[cfg(feature = "io")]
pub use writer::TraceWriter;

/// The trace format version this crate writes. Readers accept this and every older version.
#[cfg(feature = "io")]
pub const FORMAT_VERSION: u32 = 2;

/// File names inside a trace directory.
#[cfg(feature = "io")]
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

#[cfg(all(test, feature = "io"))]
mod tests;
