//! The recorder's OTLP receiver (docs/sensors.md, OpenTelemetry): gRPC and OTLP/HTTP (protobuf and
//! JSON) on the official protocol definitions of the `opentelemetry-proto` crate, on two ports
//! picked per run, turning spans, metric data points and log records into trace events
//! (`source = "otel"`). This crate knows nothing of Docker: the recorder resolves the sender's
//! address to a compose service and hands the events to its writer.

pub mod convert;
pub mod server;

pub use convert::{Received, SOURCE};
pub use server::{
    Batch, Dropped, Queue, Receiver, ReceiverConfig, ReceiverError, Stats,
    DEFAULT_MAX_REQUEST_BYTES, DEFAULT_QUEUE_EVENTS,
};
