//! The event names of a trace: one constant per (`source`, `kind`) pair the recorder writes, grouped
//! by source (`kinds::recorder::STEP`, `kinds::fault::ACTION` …). Writers build their events from
//! these ([`Name::at`], [`OpenName::at`]) instead of spelling the strings, and spec authors match
//! the same strings: [`ALL`] is the one list, and the "Event names" table of
//! docs/trace-format.md is [`markdown_table`] (a test keeps the two equal).
//!
//! A [`Name`] has a fixed kind; an [`OpenName`] has one kind per value of what it names (the fault
//! action, the Docker action, the MBean …), written `<what>` in the table.

use crate::{Event, Source};

/// An event name with a fixed kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Name {
    pub source: Source,
    pub kind: &'static str,
}

impl Name {
    /// A new event of this name at `ts_ns` (UTC ns), with nothing else set.
    pub fn at(self, ts_ns: i64) -> Event {
        Event::new(ts_ns, self.source.as_str(), self.kind)
    }

    /// Whether `source` and `kind` are this name's.
    pub fn is(self, source: &str, kind: &str) -> bool {
        source == self.source.as_str() && kind == self.kind
    }
}

/// An event name whose kind is chosen per event (`what` says what the kind names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenName {
    pub source: Source,
    pub what: &'static str,
}

impl OpenName {
    /// A new event of this source and `kind` at `ts_ns` (UTC ns), with nothing else set.
    pub fn at(self, ts_ns: i64, kind: impl Into<String>) -> Event {
        Event::new(ts_ns, self.source.as_str(), kind)
    }
}

/// One row of the table: a name, fixed or open, and what its events record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listed {
    pub source: Source,
    /// The kind, or `<what>` for an open name.
    pub kind: &'static str,
    /// Who writes it and what it records (one line; the payloads are in the docs it names).
    pub about: &'static str,
}

const fn fixed(source: Source, kind: &'static str) -> Name {
    Name { source, kind }
}

const fn open(source: Source, what: &'static str) -> OpenName {
    OpenName { source, what }
}

/// Source `recorder`: the recorder's own lifecycle and diagnostics.
pub mod recorder {
    use super::{fixed, Name};
    use crate::Source::Recorder;

    /// The run started (`data.phase = "start"`, `run_id`, `project`, `seed`).
    pub const RUN: Name = fixed(Recorder, "run");
    /// Every container of the project is ready (`data.containers`).
    pub const READY: Name = fixed(Recorder, "ready");
    /// An experiment step started or ended (`data.phase`, `step`, `verdict` …).
    pub const STEP: Name = fixed(Recorder, "step");
    /// A halt condition failed and every fault was reverted.
    pub const HALT: Name = fixed(Recorder, "halt");
    /// Teardown started (`data.phase = "start"`) or ended (`"end"`, `errors`).
    pub const TEARDOWN: Name = fixed(Recorder, "teardown");
    /// Teardown removed containers or networks `compose down` left.
    pub const CLEANUP: Name = fixed(Recorder, "cleanup");
    /// A sensor could not start or stopped.
    pub const SENSOR_ERROR: Name = fixed(Recorder, "sensor_error");
    /// A Docker event or log stream was cut and read again.
    pub const STREAM_GAP: Name = fixed(Recorder, "stream_gap");
    /// A packet capture started, ended, stopped or was summarised.
    pub const CAPTURE: Name = fixed(Recorder, "capture");
    /// A replayed run could not use a binding the recorded run bound and, with `--force`, used
    /// the live value (`data.recorded`, `live`, `error`).
    pub const REPLAY_WARNING: Name = fixed(Recorder, "replay_warning");
}

/// Source `fault`: the faults the recorder injected.
pub mod fault {
    use super::{open, OpenName};

    /// One event per phase of a fault (`data.phase`: applied, failed, reverted, reapplied,
    /// cleared); the kind is the fault action (`kill`, `partition` …).
    pub const ACTION: OpenName = open(crate::Source::Fault, "action");
}

/// Source `note`.
pub mod note {
    use super::{fixed, Name};

    /// An experiment's `note "…"` step.
    pub const NOTE: Name = fixed(crate::Source::Note, "note");
}

/// Source `proxy`: what the servers of `http` and `dns` faults matched.
pub mod proxy {
    use super::{fixed, Name};
    use crate::Source::Proxy;

    /// A request an `http` fault matched.
    pub const HTTP: Name = fixed(Proxy, "http");
    /// A DNS query a `dns` fault matched.
    pub const DNS: Name = fixed(Proxy, "dns");
}

/// Source `otel`: the run's OTLP receiver.
pub mod otel {
    use super::{fixed, Name};
    use crate::Source::Otel;

    /// A span.
    pub const SPAN: Name = fixed(Otel, "span");
    /// A metric point.
    pub const METRIC: Name = fixed(Otel, "metric");
    /// A log record.
    pub const LOG: Name = fixed(Otel, "log");
    /// The receiver started or stopped.
    pub const RECEIVER: Name = fixed(Otel, "receiver");
    /// Items the full queue dropped.
    pub const DROPPED: Name = fixed(Otel, "dropped");
    /// A request the receiver refused.
    pub const ERROR: Name = fixed(Otel, "error");
}

/// Source `docker`: the engine's events.
pub mod docker {
    use super::{open, OpenName};

    /// The kind is the event's action (`start`, `die`, `pause`, `network:connect` …).
    pub const ACTION: OpenName = open(crate::Source::Docker, "action");
}

/// Source `log`: container log lines.
pub mod log {
    use super::{fixed, Name};
    use crate::Source::Log;

    /// A line the container wrote to standard output.
    pub const STDOUT: Name = fixed(Log, "stdout");
    /// A line the container wrote to standard error.
    pub const STDERR: Name = fixed(Log, "stderr");
}

/// Source `stats`.
pub mod stats {
    use super::{fixed, Name};

    /// One sample of a container's resource use.
    pub const STATS: Name = fixed(crate::Source::Stats, "stats");
}

/// Source `jmx`.
pub mod jmx {
    use super::{fixed, open, Name, OpenName};
    use crate::Source::Jmx;

    /// The attributes of one MBean read over Jolokia; the kind is the MBean.
    pub const MBEAN: OpenName = open(Jmx, "mbean");
    /// A read that failed.
    pub const ERROR: Name = fixed(Jmx, "error");
    /// The recorder's agent was attached to a JVM (or attaching failed).
    pub const ATTACH: Name = fixed(Jmx, "attach");
}

/// Source `http`: HTTP probes.
pub mod http {
    use super::{fixed, Name};
    use crate::Source::Http;

    /// A probe's response.
    pub const RESPONSE: Name = fixed(Http, "response");
    /// A probe that got no response.
    pub const ERROR: Name = fixed(Http, "error");
}

/// Source `prom`: Prometheus scrapes.
pub mod prom {
    use super::{fixed, open, Name, OpenName};
    use crate::Source::Prom;

    /// One kept sample; the kind is the sample name.
    pub const SAMPLE: OpenName = open(Prom, "sample name");
    /// A scrape that failed.
    pub const ERROR: Name = fixed(Prom, "error");
}

/// Source `exec`: exec probes.
pub mod exec {
    use super::{fixed, Name};
    use crate::Source::Exec;

    /// A probe command's exit code and output.
    pub const RESULT: Name = fixed(Exec, "result");
    /// A probe command that could not run.
    pub const ERROR: Name = fixed(Exec, "error");
}

/// Source `packet`: packet summaries, read from `packets.parquet` as events.
pub mod packet {
    use super::{open, OpenName};

    /// The kind is the protocol.
    pub const PROTOCOL: OpenName = open(crate::Source::Packet, "protocol");
}

const fn row(n: Name, about: &'static str) -> Listed {
    Listed {
        source: n.source,
        kind: n.kind,
        about,
    }
}

const fn open_row(n: OpenName, kind: &'static str, about: &'static str) -> Listed {
    Listed {
        source: n.source,
        kind,
        about,
    }
}

/// Every event name, in the order of [`Source::ALL`], with what it records. An open name's row
/// spells its kind `<what>` (a test checks the spelling against the name).
pub const ALL: &[Listed] = &[
    open_row(
        docker::ACTION,
        "<action>",
        "a Docker engine event of a project container",
    ),
    row(log::STDOUT, "a line of a container's standard output"),
    row(log::STDERR, "a line of a container's standard error"),
    row(
        stats::STATS,
        "a sample of a container's CPU, memory, network and block I/O",
    ),
    open_row(
        jmx::MBEAN,
        "<mbean>",
        "the attributes of one MBean read over Jolokia",
    ),
    row(jmx::ERROR, "a JMX read that failed"),
    row(
        jmx::ATTACH,
        "the recorder's JMX agent attached to a JVM, or the attach failed",
    ),
    row(http::RESPONSE, "an HTTP probe's response"),
    row(http::ERROR, "an HTTP probe that got no response"),
    open_row(
        prom::SAMPLE,
        "<sample name>",
        "one kept sample of a Prometheus scrape",
    ),
    row(prom::ERROR, "a Prometheus scrape that failed"),
    row(exec::RESULT, "an exec probe's exit code and output"),
    row(exec::ERROR, "an exec probe that could not run"),
    open_row(
        fault::ACTION,
        "<action>",
        "a phase of an injected fault (docs/faults.md)",
    ),
    row(note::NOTE, "an experiment's `note` step"),
    row(recorder::RUN, "the run started"),
    row(recorder::READY, "every container of the project is ready"),
    row(
        recorder::STEP,
        "an experiment step started or ended (docs/scenario.md)",
    ),
    row(
        recorder::HALT,
        "a halt condition failed (docs/scenario.md, \"Halt conditions\")",
    ),
    row(recorder::TEARDOWN, "teardown started or ended"),
    row(
        recorder::CLEANUP,
        "teardown removed what `compose down` left",
    ),
    row(
        recorder::SENSOR_ERROR,
        "a sensor could not start or stopped",
    ),
    row(
        recorder::STREAM_GAP,
        "a Docker event or log stream was cut and read again (docs/sensors.md)",
    ),
    row(
        recorder::CAPTURE,
        "a packet capture started, ended, stopped or was summarised (docs/sensors.md)",
    ),
    row(
        recorder::REPLAY_WARNING,
        "a replay used a live value instead of a recorded binding (`--force`, docs/cli.md)",
    ),
    open_row(
        packet::PROTOCOL,
        "<protocol>",
        "a packet summary, read from `packets.parquet`",
    ),
    row(otel::SPAN, "an OpenTelemetry span"),
    row(otel::METRIC, "an OpenTelemetry metric point"),
    row(otel::LOG, "an OpenTelemetry log record"),
    row(otel::RECEIVER, "the OTLP receiver started or stopped"),
    row(otel::DROPPED, "OTLP items dropped by the full queue"),
    row(otel::ERROR, "an OTLP request the receiver refused"),
    row(
        proxy::HTTP,
        "a request an `http` fault matched (docs/faults.md)",
    ),
    row(
        proxy::DNS,
        "a DNS query a `dns` fault matched (docs/faults.md)",
    ),
];

/// The "Event names" table of docs/trace-format.md: one row per entry of [`ALL`].
pub fn markdown_table() -> String {
    let mut out = String::from("| source | kind | what |\n| --- | --- | --- |\n");
    for l in ALL {
        out.push_str(&format!(
            "| `{}` | `{}` | {} |\n",
            l.source.as_str(),
            l.kind,
            l.about
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The open names, each with its row's kind.
    const OPEN: [OpenName; 5] = [
        docker::ACTION,
        jmx::MBEAN,
        prom::SAMPLE,
        fault::ACTION,
        packet::PROTOCOL,
    ];

    #[test]
    fn every_source_has_a_name_and_every_open_row_is_spelled_from_its_name() {
        for s in Source::ALL {
            assert!(ALL.iter().any(|l| l.source == s), "no event name of {s}");
        }
        // rows grouped by source, in the order of `Source::ALL`
        let order: Vec<usize> = ALL
            .iter()
            .map(|l| {
                Source::ALL
                    .iter()
                    .position(|s| *s == l.source)
                    .unwrap_or(99)
            })
            .collect();
        assert!(order.windows(2).all(|w| w[0] <= w[1]), "{order:?}");
        for o in OPEN {
            let kind = format!("<{}>", o.what);
            assert!(
                ALL.iter().any(|l| l.source == o.source && l.kind == kind),
                "no row `{}` `{kind}`",
                o.source
            );
        }
        let open_rows = ALL.iter().filter(|l| l.kind.starts_with('<')).count();
        assert_eq!(open_rows, OPEN.len());
        let mut pairs: Vec<(Source, &str)> = ALL.iter().map(|l| (l.source, l.kind)).collect();
        let n = pairs.len();
        pairs.sort_by_key(|(s, k)| (s.as_str(), *k));
        pairs.dedup();
        assert_eq!(pairs.len(), n, "a name listed twice");
    }

    #[test]
    fn names_build_events_with_their_source_and_kind() {
        let ev = recorder::STEP.at(7);
        assert_eq!(
            (ev.ts_ns, ev.source.as_str(), ev.kind.as_str()),
            (7, "recorder", "step")
        );
        assert!(recorder::STEP.is(&ev.source, &ev.kind));
        assert!(!recorder::HALT.is(&ev.source, &ev.kind));
        let ev = fault::ACTION.at(9, "kill");
        assert_eq!((ev.source.as_str(), ev.kind.as_str()), ("fault", "kill"));
    }

    #[test]
    fn the_trace_format_doc_lists_exactly_these_names() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/trace-format.md");
        let doc = std::fs::read_to_string(path).expect("docs/trace-format.md");
        let table = markdown_table();
        let header = table.lines().next().unwrap_or_default();
        let Some(start) = doc.find(header) else {
            panic!("docs/trace-format.md has no event-name table; add:\n\n{table}");
        };
        let listed: String = doc[start..]
            .lines()
            .take_while(|l| l.starts_with('|'))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(
            listed == table,
            "the event-name table of docs/trace-format.md differs from trace::kinds::ALL; \
             it should read:\n\n{table}"
        );
    }
}
