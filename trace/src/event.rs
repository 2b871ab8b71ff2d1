//! The event model: one observation or action on the trace clock.
//!
//! [`Event`] is the owned form the writer takes; [`EventRef`] is the borrowed view the reader hands
//! out (pointing into Arrow buffers) and the monitor engine evaluates. Both are ordered by
//! `(ts_ns, seq)`, the one ordering key of a trace.

use serde::{Deserialize, Serialize};

/// Well-known values of the `source` column. The column is free text: sensors added later may use
/// other names, and readers must accept them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// Docker engine events (`kind` = the action: start, die, pause, network:connect …).
    Docker,
    /// Container log lines (`kind` = `stdout` or `stderr`, `message` = the line).
    Log,
    /// Container resource stats (`data` = cpu/memory/network/block figures).
    Stats,
    /// JMX state read over Jolokia (`kind` = the MBean, `data` = attributes).
    Jmx,
    /// HTTP probe results.
    Http,
    /// Prometheus scrapes.
    Prom,
    /// Exec probe results.
    Exec,
    /// Faults the recorder injected (`kind` = the fault action).
    Fault,
    /// Free-text notes (the `note "…"` step of an experiment).
    Note,
    /// The recorder's own lifecycle and diagnostics (step start/end, sensor errors …).
    Recorder,
    /// Packet summaries merged in from `packets.parquet`.
    Packet,
    /// OpenTelemetry spans, metric points and log records the run's OTLP receiver took in, and
    /// the receiver's own lifecycle (`kind` = `span`, `metric`, `log`, `receiver` …).
    Otel,
    /// Requests and DNS queries an `http` or `dns` fault matched (`kind` = `http` or `dns`).
    Proxy,
}

impl Source {
    /// Every well-known source, in documentation order.
    pub const ALL: [Source; 13] = [
        Source::Docker,
        Source::Log,
        Source::Stats,
        Source::Jmx,
        Source::Http,
        Source::Prom,
        Source::Exec,
        Source::Fault,
        Source::Note,
        Source::Recorder,
        Source::Packet,
        Source::Otel,
        Source::Proxy,
    ];

    /// The value stored in the `source` column.
    pub const fn as_str(self) -> &'static str {
        match self {
            Source::Docker => "docker",
            Source::Log => "log",
            Source::Stats => "stats",
            Source::Jmx => "jmx",
            Source::Http => "http",
            Source::Prom => "prom",
            Source::Exec => "exec",
            Source::Fault => "fault",
            Source::Note => "note",
            Source::Recorder => "recorder",
            Source::Packet => "packet",
            Source::Otel => "otel",
            Source::Proxy => "proxy",
        }
    }

    /// Parses a `source` column value; `None` for sources this version does not know.
    pub fn parse(s: &str) -> Option<Source> {
        Source::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One event, owned. This is what sensors hand to the writer.
///
/// `data` is JSON text (not a parsed value) so that writing and reading never pay for JSON unless a
/// consumer looks inside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// UTC nanoseconds since the Unix epoch: the trace clock.
    pub ts_ns: i64,
    /// Unique within a trace; the tie-breaker for equal timestamps. Assigned by the writer.
    pub seq: u64,
    /// See [`Source`].
    pub source: String,
    /// The compose service the event concerns, if any.
    pub service: Option<String>,
    /// The container name the event concerns, if any.
    pub container: Option<String>,
    /// Source-specific kind: docker action, log stream, fault action, MBean …
    pub kind: String,
    /// Human text: the log line, the note, an error message.
    pub message: Option<String>,
    /// Structured payload as JSON text.
    pub data: Option<String>,
}

impl Event {
    /// A new event with no service, container, message or data; `seq` is 0 until the writer
    /// assigns one.
    pub fn new(ts_ns: i64, source: impl Into<String>, kind: impl Into<String>) -> Event {
        Event {
            ts_ns,
            seq: 0,
            source: source.into(),
            service: None,
            container: None,
            kind: kind.into(),
            message: None,
            data: None,
        }
    }

    /// Sets the service.
    pub fn service(mut self, s: impl Into<String>) -> Event {
        self.service = Some(s.into());
        self
    }

    /// Sets the container.
    pub fn container(mut self, c: impl Into<String>) -> Event {
        self.container = Some(c.into());
        self
    }

    /// Sets the message.
    pub fn message(mut self, m: impl Into<String>) -> Event {
        self.message = Some(m.into());
        self
    }

    /// Sets the data payload from a JSON value.
    pub fn data(mut self, v: &serde_json::Value) -> Event {
        self.data = Some(v.to_string());
        self
    }

    /// The borrowed view of this event.
    pub fn as_ref(&self) -> EventRef<'_> {
        EventRef {
            ts_ns: self.ts_ns,
            seq: self.seq,
            source: &self.source,
            service: self.service.as_deref(),
            container: self.container.as_deref(),
            kind: &self.kind,
            message: self.message.as_deref(),
            data: self.data.as_deref(),
        }
    }
}

/// One event, borrowed: what the reader yields and the monitor engine consumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventRef<'a> {
    pub ts_ns: i64,
    pub seq: u64,
    pub source: &'a str,
    pub service: Option<&'a str>,
    pub container: Option<&'a str>,
    pub kind: &'a str,
    pub message: Option<&'a str>,
    pub data: Option<&'a str>,
}

impl EventRef<'_> {
    /// The owned copy of this event.
    pub fn to_owned(&self) -> Event {
        Event {
            ts_ns: self.ts_ns,
            seq: self.seq,
            source: self.source.to_string(),
            service: self.service.map(str::to_string),
            container: self.container.map(str::to_string),
            kind: self.kind.to_string(),
            message: self.message.map(str::to_string),
            data: self.data.map(str::to_string),
        }
    }

    /// The ordering key of a trace.
    pub fn key(&self) -> (i64, u64) {
        (self.ts_ns, self.seq)
    }
}
