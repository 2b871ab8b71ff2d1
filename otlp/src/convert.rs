//! OTLP export requests to trace events: one `otel`/`span` event per span, one `otel`/`metric`
//! event per metric data point, one `otel`/`log` event per log record (docs/sensors.md,
//! OpenTelemetry). `ts_ns` is the sender's time of the item (span end, data point time, log
//! time); the receive time is kept in `data.received_ns`, so the delay and any clock skew between
//! a container and the host can be read from the trace. The `service` column is left to the
//! caller, which resolves it from the sender's address; what the sender claims
//! (`service.name` of the resource) is `data.claimed_service`.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, HistogramDataPoint, NumberDataPoint,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use serde_json::{json, Map, Value};
use trace::Event;

/// The `source` of every event of the receiver.
pub const SOURCE: &str = "otel";

/// An OTLP attribute value as JSON: strings, booleans, integers and doubles as themselves (a
/// non-finite double as the string `"NaN"`, `"+Inf"` or `"-Inf"`), arrays as arrays, key-value
/// lists as objects, bytes as lowercase hex; an empty value is `null`.
pub fn any_value(v: &AnyValue) -> Value {
    match &v.value {
        None => Value::Null,
        Some(any_value::Value::StringValue(s)) => Value::String(s.clone()),
        Some(any_value::Value::BoolValue(b)) => Value::Bool(*b),
        Some(any_value::Value::IntValue(i)) => json!(i),
        Some(any_value::Value::DoubleValue(d)) => number(*d),
        Some(any_value::Value::ArrayValue(a)) => {
            Value::Array(a.values.iter().map(any_value).collect())
        }
        Some(any_value::Value::KvlistValue(l)) => Value::Object(attributes(&l.values)),
        Some(any_value::Value::BytesValue(b)) => Value::String(hex::encode(b)),
        Some(any_value::Value::StringValueStrindex(i)) => json!({ "string_index": i }),
    }
}

/// A double as JSON: finite values as numbers, the others as text (JSON has no NaN).
pub fn number(d: f64) -> Value {
    if d.is_finite() {
        json!(d)
    } else if d.is_nan() {
        Value::String("NaN".into())
    } else if d > 0.0 {
        Value::String("+Inf".into())
    } else {
        Value::String("-Inf".into())
    }
}

/// Attributes as one JSON object (a repeated key keeps its last value).
pub fn attributes(kvs: &[KeyValue]) -> Map<String, Value> {
    kvs.iter()
        .map(|kv| {
            (
                kv.key.clone(),
                kv.value.as_ref().map(any_value).unwrap_or(Value::Null),
            )
        })
        .collect()
}

/// Hex of an id; `null` when it is empty (no parent, no trace context).
fn id(b: &[u8]) -> Value {
    if b.is_empty() {
        Value::Null
    } else {
        Value::String(hex::encode(b))
    }
}

/// Nanoseconds as the trace's signed clock (a value beyond year 2262 saturates).
fn ns(t: u64) -> i64 {
    i64::try_from(t).unwrap_or(i64::MAX)
}

/// Where a batch came from and when it arrived.
#[derive(Debug, Clone, Default)]
pub struct Received {
    /// The sender's IP address as the receiver saw it.
    pub peer: Option<String>,
    /// Receive time on the recorder's clock.
    pub received_ns: i64,
    /// `grpc`, `http/protobuf` or `http/json`.
    pub protocol: &'static str,
}

/// What every item of one resource and scope shares.
struct Common {
    resource: Map<String, Value>,
    claimed: Option<String>,
    scope: Value,
}

impl Common {
    fn new(resource: Option<&Resource>, scope: Option<&InstrumentationScope>) -> Common {
        let resource = resource
            .map(|r| attributes(&r.attributes))
            .unwrap_or_default();
        let claimed = resource
            .get("service.name")
            .and_then(Value::as_str)
            .map(str::to_string);
        let scope = match scope {
            Some(s) => json!({"name": s.name, "version": s.version}),
            None => Value::Null,
        };
        Common {
            resource,
            claimed,
            scope,
        }
    }

    /// Adds the shared fields to an item's data and makes the event.
    fn event(
        &self,
        rx: &Received,
        ts: i64,
        kind: &str,
        message: String,
        mut data: Map<String, Value>,
    ) -> Event {
        data.insert("resource".into(), Value::Object(self.resource.clone()));
        data.insert("scope".into(), self.scope.clone());
        data.insert("claimed_service".into(), json!(self.claimed));
        data.insert("peer".into(), json!(rx.peer));
        data.insert("protocol".into(), json!(rx.protocol));
        data.insert("received_ns".into(), json!(rx.received_ns));
        // how long after the item's own time it reached the recorder (batching, retries, skew)
        data.insert(
            "delay_ms".into(),
            json!((rx.received_ns.saturating_sub(ts)) as f64 / 1e6),
        );
        Event::new(ts, SOURCE, kind)
            .message(message)
            .data(&Value::Object(data))
    }
}

/// The sender's time, or the receive time when the sender left it at 0.
fn time_or(t: u64, rx: &Received) -> i64 {
    if t == 0 {
        rx.received_ns
    } else {
        ns(t)
    }
}

fn span_kind(k: i32) -> &'static str {
    match k {
        1 => "internal",
        2 => "server",
        3 => "client",
        4 => "producer",
        5 => "consumer",
        _ => "unspecified",
    }
}

fn status_code(c: i32) -> &'static str {
    match c {
        1 => "ok",
        2 => "error",
        _ => "unset",
    }
}

/// One `otel`/`span` event per span. `data`: `trace_id`, `span_id`, `parent_span_id` (hex;
/// `null` for a root span), `name`, `kind` (`server`, `client`, …), `status` (`unset`, `ok`,
/// `error`), `status_message`, `error` (status is error), `start_ns`, `end_ns`, `duration_ms`,
/// `attributes`, `events` (span events: `name`, `ts_ns`, `attributes`), `links`, and the shared
/// fields (`resource`, `scope`, `claimed_service`, `peer`, `protocol`, `received_ns`,
/// `delay_ms`).
pub fn spans(req: &ExportTraceServiceRequest, rx: &Received) -> Vec<Event> {
    let mut out = Vec::new();
    for rs in &req.resource_spans {
        for ss in &rs.scope_spans {
            let common = Common::new(rs.resource.as_ref(), ss.scope.as_ref());
            for s in &ss.spans {
                let (code, msg) = s
                    .status
                    .as_ref()
                    .map(|st| (st.code, st.message.clone()))
                    .unwrap_or((0, String::new()));
                let start = ns(s.start_time_unix_nano);
                let end = ns(s.end_time_unix_nano);
                let mut d = Map::new();
                d.insert("trace_id".into(), id(&s.trace_id));
                d.insert("span_id".into(), id(&s.span_id));
                d.insert("parent_span_id".into(), id(&s.parent_span_id));
                d.insert("name".into(), json!(s.name));
                d.insert("kind".into(), json!(span_kind(s.kind)));
                d.insert("status".into(), json!(status_code(code)));
                d.insert("status_message".into(), json!(msg));
                d.insert("error".into(), json!(code == 2));
                d.insert("start_ns".into(), json!(start));
                d.insert("end_ns".into(), json!(end));
                d.insert(
                    "duration_ms".into(),
                    json!(end.saturating_sub(start) as f64 / 1e6),
                );
                d.insert(
                    "attributes".into(),
                    Value::Object(attributes(&s.attributes)),
                );
                d.insert(
                    "events".into(),
                    Value::Array(
                        s.events
                            .iter()
                            .map(|e| {
                                json!({
                                    "name": e.name,
                                    "ts_ns": ns(e.time_unix_nano),
                                    "attributes": attributes(&e.attributes),
                                })
                            })
                            .collect(),
                    ),
                );
                d.insert(
                    "links".into(),
                    Value::Array(
                        s.links
                            .iter()
                            .map(
                                |l| json!({"trace_id": id(&l.trace_id), "span_id": id(&l.span_id)}),
                            )
                            .collect(),
                    ),
                );
                let ts = time_or(s.end_time_unix_nano, rx);
                out.push(common.event(rx, ts, "span", s.name.clone(), d));
            }
        }
    }
    out
}

fn temporality(t: i32) -> &'static str {
    match t {
        1 => "delta",
        2 => "cumulative",
        _ => "unspecified",
    }
}

/// The fields every data point has.
fn point_base(
    m: &opentelemetry_proto::tonic::metrics::v1::Metric,
    kind: &str,
    attrs: &[KeyValue],
    start: u64,
    time: u64,
) -> Map<String, Value> {
    let mut d = Map::new();
    d.insert("name".into(), json!(m.name));
    d.insert("type".into(), json!(kind));
    d.insert("unit".into(), json!(m.unit));
    d.insert("description".into(), json!(m.description));
    d.insert("attributes".into(), Value::Object(attributes(attrs)));
    d.insert("start_ns".into(), json!(ns(start)));
    d.insert("time_ns".into(), json!(ns(time)));
    d
}

fn number_value(p: &NumberDataPoint) -> Value {
    match p.value {
        Some(number_data_point::Value::AsDouble(d)) => number(d),
        Some(number_data_point::Value::AsInt(i)) => json!(i),
        None => Value::Null,
    }
}

fn histogram(p: &HistogramDataPoint) -> Value {
    json!({
        "count": p.count,
        "sum": p.sum.map(number),
        "min": p.min.map(number),
        "max": p.max.map(number),
        "bounds": p.explicit_bounds.iter().map(|b| number(*b)).collect::<Vec<_>>(),
        "counts": p.bucket_counts,
    })
}

/// One `otel`/`metric` event per data point. `data`: `name`, `type` (`gauge`, `sum`,
/// `histogram`, `exponential_histogram`, `summary`), `unit`, `description`, `attributes`,
/// `start_ns`, `time_ns`, and by type: `value` (gauge, sum; with `monotonic` and `temporality`
/// for a sum), `histogram` (`count`, `sum`, `min`, `max`, `bounds`, `counts`), the exponential
/// histogram's `count`, `sum`, `scale`, `zero_count`, `positive`, `negative`, a summary's `count`,
/// `sum`, `quantiles` (`[{q, value}]`); plus the shared fields.
pub fn metrics(req: &ExportMetricsServiceRequest, rx: &Received) -> Vec<Event> {
    let mut out = Vec::new();
    for rm in &req.resource_metrics {
        for sm in &rm.scope_metrics {
            let common = Common::new(rm.resource.as_ref(), sm.scope.as_ref());
            for m in &sm.metrics {
                let mut push = |d: Map<String, Value>, time: u64| {
                    out.push(common.event(rx, time_or(time, rx), "metric", m.name.clone(), d));
                };
                match &m.data {
                    None => {}
                    Some(metric::Data::Gauge(g)) => {
                        for p in &g.data_points {
                            let mut d = point_base(
                                m,
                                "gauge",
                                &p.attributes,
                                p.start_time_unix_nano,
                                p.time_unix_nano,
                            );
                            d.insert("value".into(), number_value(p));
                            push(d, p.time_unix_nano);
                        }
                    }
                    Some(metric::Data::Sum(s)) => {
                        for p in &s.data_points {
                            let mut d = point_base(
                                m,
                                "sum",
                                &p.attributes,
                                p.start_time_unix_nano,
                                p.time_unix_nano,
                            );
                            d.insert("value".into(), number_value(p));
                            d.insert("monotonic".into(), json!(s.is_monotonic));
                            d.insert(
                                "temporality".into(),
                                json!(temporality(s.aggregation_temporality)),
                            );
                            push(d, p.time_unix_nano);
                        }
                    }
                    Some(metric::Data::Histogram(h)) => {
                        for p in &h.data_points {
                            let mut d = point_base(
                                m,
                                "histogram",
                                &p.attributes,
                                p.start_time_unix_nano,
                                p.time_unix_nano,
                            );
                            d.insert("histogram".into(), histogram(p));
                            d.insert(
                                "temporality".into(),
                                json!(temporality(h.aggregation_temporality)),
                            );
                            push(d, p.time_unix_nano);
                        }
                    }
                    Some(metric::Data::ExponentialHistogram(h)) => {
                        for p in &h.data_points {
                            let mut d = point_base(
                                m,
                                "exponential_histogram",
                                &p.attributes,
                                p.start_time_unix_nano,
                                p.time_unix_nano,
                            );
                            let buckets = |b: &Option<opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets>| {
                                b.as_ref().map(|b| json!({"offset": b.offset, "counts": b.bucket_counts}))
                            };
                            d.insert(
                                "exponential_histogram".into(),
                                json!({
                                    "count": p.count,
                                    "sum": p.sum.map(number),
                                    "min": p.min.map(number),
                                    "max": p.max.map(number),
                                    "scale": p.scale,
                                    "zero_count": p.zero_count,
                                    "positive": buckets(&p.positive),
                                    "negative": buckets(&p.negative),
                                }),
                            );
                            d.insert(
                                "temporality".into(),
                                json!(temporality(h.aggregation_temporality)),
                            );
                            push(d, p.time_unix_nano);
                        }
                    }
                    Some(metric::Data::Summary(s)) => {
                        for p in &s.data_points {
                            let mut d = point_base(
                                m,
                                "summary",
                                &p.attributes,
                                p.start_time_unix_nano,
                                p.time_unix_nano,
                            );
                            d.insert(
                                "summary".into(),
                                json!({
                                    "count": p.count,
                                    "sum": number(p.sum),
                                    "quantiles": p.quantile_values.iter()
                                        .map(|q| json!({"q": number(q.quantile), "value": number(q.value)}))
                                        .collect::<Vec<_>>(),
                                }),
                            );
                            push(d, p.time_unix_nano);
                        }
                    }
                }
            }
        }
    }
    out
}

fn severity(n: i32) -> &'static str {
    match n {
        1..=4 => "trace",
        5..=8 => "debug",
        9..=12 => "info",
        13..=16 => "warn",
        17..=20 => "error",
        21..=24 => "fatal",
        _ => "unspecified",
    }
}

/// One `otel`/`log` event per log record; `ts_ns` is its time, else its observed time, else the
/// receive time. `data`: `body` (a string body as text, structured bodies as JSON),
/// `severity_text`, `severity_number`, `severity` (`trace` … `fatal` from the number),
/// `trace_id`, `span_id`, `event_name`, `attributes`, `time_ns`, `observed_ns`, plus the shared
/// fields; `message` is the body when it is a string.
pub fn logs(req: &ExportLogsServiceRequest, rx: &Received) -> Vec<Event> {
    let mut out = Vec::new();
    for rl in &req.resource_logs {
        for sl in &rl.scope_logs {
            let common = Common::new(rl.resource.as_ref(), sl.scope.as_ref());
            for r in &sl.log_records {
                let body = r.body.as_ref().map(any_value).unwrap_or(Value::Null);
                let message = match &body {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                };
                let mut d = Map::new();
                d.insert("body".into(), body);
                d.insert("severity_text".into(), json!(r.severity_text));
                d.insert("severity_number".into(), json!(r.severity_number));
                d.insert("severity".into(), json!(severity(r.severity_number)));
                d.insert("trace_id".into(), id(&r.trace_id));
                d.insert("span_id".into(), id(&r.span_id));
                d.insert("event_name".into(), json!(r.event_name));
                d.insert(
                    "attributes".into(),
                    Value::Object(attributes(&r.attributes)),
                );
                d.insert("time_ns".into(), json!(ns(r.time_unix_nano)));
                d.insert("observed_ns".into(), json!(ns(r.observed_time_unix_nano)));
                let t = if r.time_unix_nano != 0 {
                    r.time_unix_nano
                } else {
                    r.observed_time_unix_nano
                };
                out.push(common.event(rx, time_or(t, rx), "log", message, d));
            }
        }
    }
    out
}
