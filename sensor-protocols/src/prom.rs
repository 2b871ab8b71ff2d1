//! Prometheus text exposition format (version 0.0.4) parser, and the `prom` events made from a
//! scrape: `# HELP` / `# TYPE` lines, label values with `\\`, `\"` and `\n` escapes, optional
//! millisecond timestamps, `NaN` / `+Inf` / `-Inf`, histograms and summaries kept as their sample
//! lines (`_bucket`, `_sum`, `_count`, quantiles) grouped under their family.
//!
//! The parser is lenient line by line: a bad line is reported (with its number) and skipped, so a
//! scrape keeps every good sample. [`parse_strict`] turns any bad line into an error.

use serde_json::{json, Map, Value};
use trace::Event;

/// The `# TYPE` of a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    Summary,
    Untyped,
}

impl MetricType {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::Summary => "summary",
            MetricType::Untyped => "untyped",
        }
    }

    fn parse(s: &str) -> Option<MetricType> {
        Some(match s {
            "counter" => MetricType::Counter,
            "gauge" => MetricType::Gauge,
            "histogram" => MetricType::Histogram,
            "summary" => MetricType::Summary,
            "untyped" | "unknown" => MetricType::Untyped,
            _ => return None,
        })
    }
}

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
    pub timestamp_ms: Option<i64>,
}

/// A metric family: its samples under one HELP/TYPE.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub name: String,
    pub kind: MetricType,
    pub help: Option<String>,
    pub samples: Vec<Sample>,
}

/// A bad line in an exposition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("prometheus exposition line {line}: {reason}")]
pub struct PromError {
    pub line: usize,
    pub reason: String,
}

/// Parses an exposition; any bad line is an error.
pub fn parse_strict(text: &str) -> Result<Vec<Family>, PromError> {
    let (fams, mut errs) = parse(text);
    if errs.is_empty() {
        Ok(fams)
    } else {
        Err(errs.swap_remove(0))
    }
}

/// Parses an exposition, skipping bad lines; returns the families and the errors.
pub fn parse(text: &str) -> (Vec<Family>, Vec<PromError>) {
    let mut fams: Vec<Family> = Vec::new();
    let mut errs = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.trim_matches(|c| c == ' ' || c == '\t' || c == '\r');
        if line.is_empty() {
            continue;
        }
        let r = if let Some(rest) = line.strip_prefix('#') {
            comment(rest, &mut fams)
        } else {
            sample_line(line).map(|s| add_sample(&mut fams, s))
        };
        if let Err(reason) = r {
            errs.push(PromError {
                line: line_no,
                reason,
            });
        }
    }
    (fams, errs)
}

fn family_for<'a>(fams: &'a mut Vec<Family>, name: &str) -> &'a mut Family {
    // A HELP and a TYPE for the same family may come in either order; they must be adjacent to
    // the family's samples, so only the last family is a candidate.
    let reuse = fams
        .last()
        .is_some_and(|f| f.name == name && f.samples.is_empty());
    if !reuse {
        fams.push(Family {
            name: name.to_string(),
            kind: MetricType::Untyped,
            help: None,
            samples: Vec::new(),
        });
    }
    let n = fams.len() - 1;
    &mut fams[n]
}

fn comment(rest: &str, fams: &mut Vec<Family>) -> Result<(), String> {
    let rest = rest.trim_start_matches([' ', '\t']);
    let (word, after) = split_ws(rest);
    match word {
        "HELP" => {
            let (name, help) = split_ws(after);
            check_metric_name(name)?;
            let help = unescape_help(help)?;
            let f = family_for(fams, name);
            f.help = Some(help);
        }
        "TYPE" => {
            let (name, ty) = split_ws(after);
            check_metric_name(name)?;
            let ty = ty.trim();
            let kind =
                MetricType::parse(ty).ok_or_else(|| format!("unknown metric type {ty:?}"))?;
            let f = family_for(fams, name);
            f.kind = kind;
        }
        _ => {} // Other comments are ignored.
    }
    Ok(())
}

fn split_ws(s: &str) -> (&str, &str) {
    match s.find([' ', '\t']) {
        Some(i) => (&s[..i], s[i..].trim_start_matches([' ', '\t'])),
        None => (s, ""),
    }
}

fn check_metric_name(n: &str) -> Result<(), String> {
    let mut cs = n.chars();
    let ok = cs
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
    if ok {
        Ok(())
    } else {
        Err(format!("bad metric name {n:?}"))
    }
}

fn check_label_name(n: &str) -> Result<(), String> {
    let mut cs = n.chars();
    let ok = cs
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!("bad label name {n:?}"))
    }
}

fn unescape_help(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '\\' {
            match it.next() {
                Some('\\') => out.push('\\'),
                Some('n') => out.push('\n'),
                // Unknown escapes in HELP are kept verbatim (the reference parser does the same).
                Some(o) => {
                    out.push('\\');
                    out.push(o);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

/// Parses a float as the exposition format writes it (Go's `ParseFloat`: `NaN`, `+Inf`, `-Inf`, …).
pub fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "NaN" => Ok(f64::NAN),
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ => {
            let lower = s.to_ascii_lowercase();
            if lower.contains("inf") || lower.contains("nan") {
                return Err(format!("bad value {s:?}"));
            }
            s.parse::<f64>().map_err(|_| format!("bad value {s:?}"))
        }
    }
}

fn sample_line(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ', '\t']).unwrap_or(line.len());
    let name = &line[..name_end];
    check_metric_name(name)?;
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        let (ls, remaining) = labels_block(after)?;
        labels = ls;
        rest = remaining;
    }
    let rest = rest.trim_start_matches([' ', '\t']);
    let mut parts = rest.split([' ', '\t']).filter(|p| !p.is_empty());
    let value = parse_value(parts.next().ok_or("missing value")?)?;
    let timestamp_ms = match parts.next() {
        Some(t) => Some(
            t.parse::<i64>()
                .map_err(|_| format!("bad timestamp {t:?}"))?,
        ),
        None => None,
    };
    if let Some(extra) = parts.next() {
        return Err(format!("unexpected {extra:?} after the timestamp"));
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
        timestamp_ms,
    })
}

type Labels = Vec<(String, String)>;

/// Parses `name="value",...}`; returns the labels and the text after `}`.
fn labels_block(s: &str) -> Result<(Labels, &str), String> {
    let mut labels = Vec::new();
    let mut rest = s;
    loop {
        rest = rest.trim_start_matches([' ', '\t']);
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let eq = rest.find('=').ok_or("label without '='")?;
        let lname = rest[..eq].trim_matches([' ', '\t']);
        check_label_name(lname)?;
        rest = rest[eq + 1..].trim_start_matches([' ', '\t']);
        rest = rest.strip_prefix('"').ok_or("label value not quoted")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err("unterminated label value".into()),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, o)) => return Err(format!("bad escape \\{o} in label value")),
                    None => return Err("unterminated label value".into()),
                },
                Some((_, c)) => value.push(c),
            }
        };
        if labels.iter().any(|(n, _): &(String, String)| n == lname) {
            return Err(format!("duplicate label {lname:?}"));
        }
        labels.push((lname.to_string(), value));
        rest = rest[end + 1..].trim_start_matches([' ', '\t']);
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
        } else if !rest.starts_with('}') {
            return Err("expected ',' or '}' after a label".into());
        }
    }
}

fn belongs(f: &Family, sample: &str) -> bool {
    if f.name == sample {
        return true;
    }
    let Some(suffix) = sample.strip_prefix(f.name.as_str()) else {
        return false;
    };
    match f.kind {
        MetricType::Histogram => matches!(suffix, "_bucket" | "_sum" | "_count" | "_created"),
        MetricType::Summary => matches!(suffix, "_sum" | "_count" | "_created"),
        MetricType::Counter => matches!(suffix, "_total" | "_created"),
        _ => false,
    }
}

fn add_sample(fams: &mut Vec<Family>, s: Sample) {
    match fams.last_mut() {
        Some(f) if belongs(f, &s.name) => f.samples.push(s),
        _ => fams.push(Family {
            name: s.name.clone(),
            kind: MetricType::Untyped,
            help: None,
            samples: vec![s],
        }),
    }
}

/// Escapes a label value for the exposition format (the inverse of the parser).
pub fn escape_label_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A float as JSON: a number when finite, else the exposition spelling (`NaN`, `+Inf`, `-Inf`).
pub fn value_json(v: f64) -> Value {
    if v.is_nan() {
        Value::from("NaN")
    } else if v == f64::INFINITY {
        Value::from("+Inf")
    } else if v == f64::NEG_INFINITY {
        Value::from("-Inf")
    } else {
        json!(v)
    }
}

/// Which families a scrape keeps: exact names, or prefixes ending in `*`; empty keeps all.
#[derive(Debug, Clone, Default)]
pub struct Selector(pub Vec<String>);

impl Selector {
    pub fn matches(&self, family: &str) -> bool {
        self.0.is_empty()
            || self.0.iter().any(|p| match p.strip_suffix('*') {
                Some(prefix) => family.starts_with(prefix),
                None => p == family,
            })
    }
}

/// The events of one scrape: one `prom` event per kept sample, `kind` = the sample name,
/// `data` = `{"family", "type", "labels": {..}, "value", "timestamp_ms", "url"}`.
pub fn scrape_events(
    ts_ns: i64,
    service: &str,
    container: Option<&str>,
    url: &str,
    fams: &[Family],
    sel: &Selector,
) -> Vec<Event> {
    let mut out = Vec::new();
    for f in fams.iter().filter(|f| sel.matches(&f.name)) {
        for s in &f.samples {
            let labels: Map<String, Value> = s
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), Value::from(v.clone())))
                .collect();
            let mut ev = Event::new(ts_ns, "prom", s.name.clone())
                .service(service)
                .data(&json!({
                    "family": f.name,
                    "type": f.kind.as_str(),
                    "labels": labels,
                    "value": value_json(s.value),
                    "timestamp_ms": s.timestamp_ms,
                    "url": url,
                }));
            ev.container = container.map(str::to_string);
            out.push(ev);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"# HELP http_requests_total The total number of HTTP requests.
# TYPE http_requests_total counter
http_requests_total{method="post",code="200"} 1027 1395066363000
http_requests_total{method="post",code="400"}    3 1395066363000

# Escaping in label values:
msdos_file_access_time_seconds{path="C:\\DIR\\FILE.TXT",error="Cannot find file:\n\"FILE.TXT\""} 1.458255915e9

# Minimalistic line:
metric_without_timestamp_and_labels 12.47

# A weird metric from before the epoch:
something_weird{problem="division by zero"} +Inf -3982045

# A histogram, which has a pretty complex representation in the text format:
# HELP http_request_duration_seconds A histogram of the request duration.
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{le="0.05"} 24054
http_request_duration_seconds_bucket{le="0.1"} 33444
http_request_duration_seconds_bucket{le="+Inf"} 144320
http_request_duration_seconds_sum 53423
http_request_duration_seconds_count 144320

# Finally a summary, which has a complex representation, too:
# HELP rpc_duration_seconds A summary of the RPC duration in seconds.
# TYPE rpc_duration_seconds summary
rpc_duration_seconds{quantile="0.01"} 3102
rpc_duration_seconds{quantile="0.99"} 76656
rpc_duration_seconds_sum 1.7560473e+07
rpc_duration_seconds_count 2693
go_gc_weird NaN
"#;

    #[test]
    fn the_reference_example() {
        let fams = parse_strict(SAMPLE).unwrap();
        let names: Vec<_> = fams
            .iter()
            .map(|f| (f.name.as_str(), f.kind, f.samples.len()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("http_requests_total", MetricType::Counter, 2),
                ("msdos_file_access_time_seconds", MetricType::Untyped, 1),
                (
                    "metric_without_timestamp_and_labels",
                    MetricType::Untyped,
                    1
                ),
                ("something_weird", MetricType::Untyped, 1),
                ("http_request_duration_seconds", MetricType::Histogram, 5),
                ("rpc_duration_seconds", MetricType::Summary, 4),
                ("go_gc_weird", MetricType::Untyped, 1),
            ]
        );
        assert_eq!(
            fams[0].help.as_deref(),
            Some("The total number of HTTP requests.")
        );
        assert_eq!(
            fams[0].samples[1].labels,
            vec![
                ("method".into(), "post".into()),
                ("code".into(), "400".into())
            ]
        );
        assert_eq!(fams[0].samples[1].timestamp_ms, Some(1395066363000));
        let ms = &fams[1].samples[0];
        assert_eq!(ms.labels[0].1, r"C:\DIR\FILE.TXT");
        assert_eq!(ms.labels[1].1, "Cannot find file:\n\"FILE.TXT\"");
        assert_eq!(fams[3].samples[0].value, f64::INFINITY);
        assert_eq!(fams[3].samples[0].timestamp_ms, Some(-3982045));
        assert_eq!(fams[4].samples[2].labels[0].1, "+Inf");
        assert!(fams[6].samples[0].value.is_nan());
    }

    #[test]
    fn bad_lines_are_reported_and_skipped() {
        let text = "ok 1\nbad{x=\"unterminated} 1\nno_value\n9starts_with_digit 1\nx{a=\"1\",a=\"2\"} 1\ny 1 notatime\nz{q=\"\\t\"} 1\nfine 2\n# TYPE t nonsense\n";
        let (fams, errs) = parse(text);
        assert_eq!(
            fams.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
            vec!["ok", "fine"]
        );
        assert_eq!(
            errs.iter().map(|e| e.line).collect::<Vec<_>>(),
            vec![2, 3, 4, 5, 6, 7, 9]
        );
        assert!(parse_strict(text).is_err());
    }

    #[test]
    fn events_and_selection() {
        let fams = parse_strict(SAMPLE).unwrap();
        let sel = Selector(vec!["http_request*".into(), "something_weird".into()]);
        let evs = scrape_events(5, "api", Some("api-1"), "http://x/metrics", &fams, &sel);
        assert_eq!(evs.len(), 2 + 5 + 1);
        let d: Value = serde_json::from_str(evs[0].data.as_deref().unwrap()).unwrap();
        assert_eq!(d["labels"]["code"], "200");
        assert_eq!(d["value"], 1027.0);
        assert_eq!(evs[0].kind, "http_requests_total");
        let weird = evs.iter().find(|e| e.kind == "something_weird").unwrap();
        let weird: Value = serde_json::from_str(weird.data.as_deref().unwrap()).unwrap();
        assert_eq!(weird["value"], "+Inf");
    }
}
