//! One pass over a trace that gathers what the HTML report draws: lanes, fault spans, Docker
//! markers, log ticks and per-bucket counts, packet rates per service pair, numeric series, and
//! the events of the table; the runner judges the same events in recording mode on the way.
//! What cannot be drawn one by one is aggregated into a fixed number of time buckets.

use serde::Serialize;
use serde_json::Value as J;
use std::collections::{BTreeMap, HashMap};
use trace::EventRef;

/// Time buckets across the trace (about one per pixel of a wide screen).
pub const BUCKETS: usize = 2000;
/// Individual log ticks kept per lane; beyond, the lane is drawn from its buckets.
pub const TICKS_PER_LANE: usize = 4000;
/// Docker markers kept in all.
pub const MAX_MARKERS: usize = 20_000;
/// Events of a trace small enough to put every event in the table.
pub const TABLE_ALL: u64 = 20_000;
/// Events of the table's other groups (faults, notes, recorder, docker) kept in a big trace.
pub const TABLE_IMPORTANT: usize = 5_000;
/// Characters of a message and of `data` kept per table event.
pub const MESSAGE_CHARS: usize = 2_000;
pub const DATA_CHARS: usize = 6_000;
/// Bytes of table events gathered while reading (the events around decisions have as much
/// again, [`AROUND_BYTES`]): with the rest of the page the file stays well under 20 MB.
pub const TABLE_BYTES: usize = 8_000_000;
pub const AROUND_BYTES: usize = 6_000_000;
/// Numeric series drawn at most.
pub const MAX_SERIES: usize = 120;

/// One event of the table, in full (message and `data` up to a length).
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub t: i64,
    pub seq: u64,
    pub src: String,
    pub svc: Option<String>,
    pub kind: String,
    pub msg: Option<String>,
    pub data: Option<String>,
}

fn cut(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((i, _)) => format!("{}… ({} bytes in all)", &s[..i], s.len()),
        None => s.to_string(),
    }
}

impl Row {
    /// About the bytes it takes in the page.
    pub fn size(&self) -> usize {
        64 + self.src.len()
            + self.kind.len()
            + self.svc.as_ref().map_or(0, String::len)
            + self.msg.as_ref().map_or(0, String::len)
            + self.data.as_ref().map_or(0, String::len)
    }

    pub fn of(ev: &EventRef<'_>) -> Row {
        Row {
            t: ev.ts_ns,
            seq: ev.seq,
            src: ev.source.to_string(),
            svc: ev.service.map(str::to_string),
            kind: ev.kind.to_string(),
            msg: ev.message.map(|m| cut(m, MESSAGE_CHARS)),
            data: ev.data.map(|d| cut(d, DATA_CHARS)),
        }
    }
}

/// A fault from applied to reverted (or to the end of the trace).
#[derive(Debug, Clone, Serialize)]
pub struct FaultSpan {
    pub id: String,
    pub action: String,
    pub label: String,
    pub lanes: Vec<usize>,
    pub start: i64,
    pub end: Option<i64>,
    /// `applied`, `failed`, …: the phase that opened it; `closed_by` the one that closed it.
    pub phase: String,
    pub closed_by: Option<String>,
    pub seq: u64,
}

/// A Docker event drawn as a marker.
#[derive(Debug, Clone, Serialize)]
pub struct Marker {
    pub lane: usize,
    pub t: i64,
    pub kind: String,
    pub seq: u64,
}

/// A numeric series, downsampled to `[bucket, min, max, last]` per bucket that has a value.
#[derive(Debug, Clone, Serialize)]
pub struct Series {
    pub lane: usize,
    pub name: String,
    pub points: Vec<(u32, f64, f64, f64)>,
    #[serde(skip)]
    pub changes: u64,
    #[serde(skip)]
    pub named: bool,
}

/// Everything gathered in the pass.
#[derive(Debug, Default, Serialize)]
pub struct Collected {
    pub lanes: Vec<String>,
    pub t0: i64,
    pub t1: i64,
    pub bucket_ns: f64,
    pub events: u64,
    pub faults: Vec<FaultSpan>,
    pub markers: Vec<Marker>,
    /// Docker events not drawn one by one (beyond MAX_MARKERS), per lane: `[bucket, count]`.
    pub marker_buckets: BTreeMap<usize, Vec<(u32, u32)>>,
    /// Log lines per lane and bucket: `[bucket, count]`.
    pub log_buckets: BTreeMap<usize, Vec<(u32, u32)>>,
    /// Individual log lines per lane `[ts, seq]` (empty when over TICKS_PER_LANE).
    pub log_ticks: BTreeMap<usize, Vec<(i64, u64)>>,
    /// Every event per lane and bucket.
    pub all_buckets: BTreeMap<usize, Vec<(u32, u32)>>,
    /// Packets per `src → dst` service pair and bucket.
    pub packets: BTreeMap<String, Vec<(u32, u32)>>,
    pub series: Vec<Series>,
    pub table: Vec<Row>,
    /// True when the table holds only part of the events.
    pub table_partial: bool,
}

/// Sparse bucket counts built densely, output as `[bucket, count]` pairs.
#[derive(Default)]
struct Counts(Vec<u32>);

impl Counts {
    fn add(&mut self, b: usize) {
        if self.0.len() <= b {
            self.0.resize(b + 1, 0);
        }
        self.0[b] = self.0[b].saturating_add(1);
    }
    fn sparse(&self) -> Vec<(u32, u32)> {
        self.0
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, c)| (i as u32, *c))
            .collect()
    }
}

struct SeriesAcc {
    lane: usize,
    name: String,
    named: bool,
    buckets: BTreeMap<u32, (f64, f64, f64)>,
    last: Option<f64>,
    changes: u64,
}

/// Gathers while the events stream by.
pub struct Collector {
    lanes: Vec<String>,
    lane_ix: HashMap<String, usize>,
    t0: i64,
    t1: i64,
    bucket_ns: f64,
    events: u64,
    faults: Vec<FaultSpan>,
    open_faults: HashMap<String, usize>,
    markers: Vec<Marker>,
    marker_buckets: HashMap<usize, Counts>,
    log_buckets: HashMap<usize, Counts>,
    log_ticks: HashMap<usize, Vec<(i64, u64)>>,
    all_buckets: HashMap<usize, Counts>,
    packets: HashMap<String, Counts>,
    series: HashMap<(usize, String), SeriesAcc>,
    named_series: Vec<regex::Regex>,
    table: Vec<Row>,
    table_bytes: usize,
    table_all: bool,
}

impl Collector {
    /// `services` are the manifest's (their lanes come first, in order); `t0..t1` the trace's
    /// time range; `expected_events` the trace's size (every event goes to the table when it
    /// is small); `named_series` the series the user asked for (regexes on `lane/name`).
    pub fn new(
        services: &[String],
        t0: i64,
        t1: i64,
        expected_events: u64,
        named_series: Vec<regex::Regex>,
    ) -> Collector {
        let mut c = Collector {
            lanes: Vec::new(),
            lane_ix: HashMap::new(),
            t0,
            t1: t1.max(t0 + 1),
            bucket_ns: (t1.max(t0 + 1) - t0) as f64 / BUCKETS as f64,
            events: 0,
            faults: Vec::new(),
            open_faults: HashMap::new(),
            markers: Vec::new(),
            marker_buckets: HashMap::new(),
            log_buckets: HashMap::new(),
            log_ticks: HashMap::new(),
            all_buckets: HashMap::new(),
            packets: HashMap::new(),
            series: HashMap::new(),
            named_series,
            table: Vec::new(),
            table_bytes: 0,
            table_all: expected_events <= TABLE_ALL,
        };
        c.lane("recorder · faults");
        for s in services {
            c.lane(s);
        }
        c
    }

    /// The lane of a service (created on first sight).
    pub fn lane(&mut self, name: &str) -> usize {
        if let Some(i) = self.lane_ix.get(name) {
            return *i;
        }
        self.lanes.push(name.to_string());
        self.lane_ix.insert(name.to_string(), self.lanes.len() - 1);
        self.lanes.len() - 1
    }

    fn bucket(&self, ts: i64) -> usize {
        let b = ((ts - self.t0) as f64 / self.bucket_ns).floor();
        (b.max(0.0) as usize).min(BUCKETS - 1)
    }

    /// Takes one event (packets included).
    pub fn add(&mut self, ev: &EventRef<'_>) {
        self.events += 1;
        let lane = match ev.service {
            Some(s) if !s.is_empty() => self.lane(s),
            _ => 0,
        };
        let b = self.bucket(ev.ts_ns);
        self.all_buckets.entry(lane).or_default().add(b);
        let important = matches!(ev.source, "fault" | "note" | "recorder" | "docker");
        if (self.table_all || (important && self.table.len() < TABLE_IMPORTANT))
            && self.table_bytes < TABLE_BYTES
        {
            let row = Row::of(ev);
            self.table_bytes += row.size();
            self.table.push(row);
            if self.table_bytes >= TABLE_BYTES {
                // too big to hold every event: the events around decisions are added instead
                self.table_all = false;
            }
        }
        match ev.source {
            "log" => {
                self.log_buckets.entry(lane).or_default().add(b);
                let ticks = self.log_ticks.entry(lane).or_default();
                if ticks.len() <= TICKS_PER_LANE {
                    ticks.push((ev.ts_ns, ev.seq));
                }
            }
            "docker" => {
                if self.markers.len() < MAX_MARKERS {
                    self.markers.push(Marker {
                        lane,
                        t: ev.ts_ns,
                        kind: ev.kind.to_string(),
                        seq: ev.seq,
                    });
                } else {
                    self.marker_buckets.entry(lane).or_default().add(b);
                }
            }
            "packet" => {
                let src = ev.service.unwrap_or("?");
                let dst = ev.data.and_then(dst_service).unwrap_or("?");
                let key = format!("{src} → {dst}");
                match self.packets.get_mut(&key) {
                    Some(c) => c.add(b),
                    None => {
                        let mut c = Counts::default();
                        c.add(b);
                        self.packets.insert(key, c);
                    }
                }
            }
            "fault" => self.fault(ev),
            "stats" | "jmx" | "prom" | "http" | "exec" => self.numbers(ev, lane, b),
            _ => {}
        }
    }

    fn fault(&mut self, ev: &EventRef<'_>) {
        let Some(d) = ev
            .data
            .and_then(|d| serde_json::from_str::<J>(d).ok())
            .filter(J::is_object)
        else {
            return;
        };
        let id = d["fault_id"].as_str().unwrap_or("").to_string();
        let phase = d["phase"].as_str().unwrap_or("").to_string();
        // an explicit counter-action closes the faults it reverts
        if let Some(rs) = d.pointer("/params/reverts").and_then(J::as_array) {
            for r in rs.iter().filter_map(J::as_str) {
                self.close(r, ev.ts_ns, ev.kind);
            }
        }
        match phase.as_str() {
            "reverted" | "cleared" if self.open_faults.contains_key(&id) => {
                self.close(&id, ev.ts_ns, &phase);
                return;
            }
            "reapplied" => return,
            _ => {}
        }
        let mut lanes = vec![0];
        if let Some(svcs) = d.pointer("/target/services").and_then(J::as_array) {
            for s in svcs.iter().filter_map(J::as_str) {
                let l = self.lane(s);
                lanes.push(l);
            }
        } else if let Some(s) = ev.service {
            let l = self.lane(s);
            lanes.push(l);
        }
        lanes.dedup();
        let label = ev
            .message
            .map(str::to_string)
            .unwrap_or_else(|| format!("{id} {} {phase}", ev.kind));
        // one-shot actions (and counter-actions) are instants; revertible faults stay open
        let one_shot = phase != "applied"
            || matches!(
                ev.kind,
                "unpause" | "connect" | "heal" | "start" | "restart" | "exec"
            )
            || d.pointer("/params/reverts").is_some();
        self.faults.push(FaultSpan {
            id: id.clone(),
            action: ev.kind.to_string(),
            label,
            lanes,
            start: ev.ts_ns,
            end: one_shot.then_some(ev.ts_ns),
            phase,
            closed_by: None,
            seq: ev.seq,
        });
        if !one_shot && !id.is_empty() {
            self.open_faults.insert(id, self.faults.len() - 1);
        }
    }

    fn close(&mut self, id: &str, ts: i64, by: &str) {
        if let Some(i) = self.open_faults.remove(id) {
            self.faults[i].end = Some(ts);
            self.faults[i].closed_by = Some(by.to_string());
        }
    }

    fn numbers(&mut self, ev: &EventRef<'_>, lane: usize, b: usize) {
        let Some(d) = ev.data.and_then(|d| serde_json::from_str::<J>(d).ok()) else {
            return;
        };
        let mut found: Vec<(String, f64)> = Vec::new();
        match ev.source {
            "prom" => {
                if let Some(v) = d["value"].as_f64() {
                    let labels = d["labels"]
                        .as_object()
                        .map(|m| {
                            m.iter()
                                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                                .collect::<Vec<_>>()
                                .join(",")
                        })
                        .unwrap_or_default();
                    let name = if labels.is_empty() {
                        ev.kind.to_string()
                    } else {
                        format!("{}{{{labels}}}", ev.kind)
                    };
                    found.push((name, v));
                }
            }
            "http" => {
                for k in ["latency_ms", "status"] {
                    if let Some(v) = d[k].as_f64() {
                        found.push((format!("http {k}"), v));
                    }
                }
            }
            "exec" => {
                for k in ["exit_code", "duration_ms"] {
                    if let Some(v) = d[k].as_f64() {
                        found.push((format!("exec {k}"), v));
                    }
                }
            }
            _ => {
                // stats fields, JMX attributes: numbers at the top level and one level down
                let prefix = if ev.source == "stats" {
                    String::new()
                } else {
                    format!("{} ", ev.kind)
                };
                if let Some(m) = d.as_object() {
                    for (k, v) in m {
                        if let Some(x) = v.as_f64() {
                            found.push((format!("{prefix}{k}"), x));
                        } else if let Some(inner) = v.as_object() {
                            for (k2, v2) in inner {
                                if let Some(x) = v2.as_f64() {
                                    found.push((format!("{prefix}{k}.{k2}"), x));
                                }
                            }
                        }
                    }
                }
            }
        }
        for (name, v) in found {
            if !v.is_finite() {
                continue;
            }
            let key = (lane, name);
            if !self.series.contains_key(&key) {
                if self.series.len() >= 4 * MAX_SERIES {
                    continue;
                }
                let full = format!("{}/{}", self.lanes[lane], key.1);
                let named = self.named_series.iter().any(|r| r.is_match(&full));
                self.series.insert(
                    key.clone(),
                    SeriesAcc {
                        lane,
                        name: key.1.clone(),
                        named,
                        buckets: BTreeMap::new(),
                        last: None,
                        changes: 0,
                    },
                );
            }
            let Some(s) = self.series.get_mut(&key) else {
                continue;
            };
            if s.last.is_some_and(|l| l != v) {
                s.changes += 1;
            }
            s.last = Some(v);
            let e = s.buckets.entry(b as u32).or_insert((v, v, v));
            e.0 = e.0.min(v);
            e.1 = e.1.max(v);
            e.2 = v;
        }
    }

    /// Adds events read again around decisions (big traces), keeping the table sorted and
    /// without duplicates.
    pub fn add_table_rows(&mut self, rows: Vec<Row>) {
        self.table.extend(rows);
        self.table.sort_by_key(|r| (r.t, r.seq));
        self.table.dedup_by_key(|r| r.seq);
    }

    pub fn table_is_complete(&self) -> bool {
        self.table_all
    }

    /// The service lanes as named (without the recorder lane).
    pub fn lane_names(&self) -> &[String] {
        &self.lanes
    }

    pub fn finish(self) -> Collected {
        let sparse = |m: HashMap<usize, Counts>| -> BTreeMap<usize, Vec<(u32, u32)>> {
            m.into_iter().map(|(k, v)| (k, v.sparse())).collect()
        };
        // series that change or that the user named, named first, then the most changing
        let mut series: Vec<Series> = self
            .series
            .into_values()
            .filter(|s| s.named || s.changes > 0)
            .map(|s| Series {
                lane: s.lane,
                name: s.name,
                points: s
                    .buckets
                    .into_iter()
                    .map(|(b, (lo, hi, last))| (b, lo, hi, last))
                    .collect(),
                changes: s.changes,
                named: s.named,
            })
            .collect();
        series.sort_by(|a, b| {
            b.named
                .cmp(&a.named)
                .then(b.changes.cmp(&a.changes))
                .then(a.lane.cmp(&b.lane))
                .then(a.name.cmp(&b.name))
        });
        series.truncate(MAX_SERIES);
        series.sort_by(|a, b| a.lane.cmp(&b.lane).then(a.name.cmp(&b.name)));
        let log_ticks = self
            .log_ticks
            .into_iter()
            .map(|(k, v)| (k, if v.len() > TICKS_PER_LANE { vec![] } else { v }))
            .collect();
        Collected {
            lanes: self.lanes,
            t0: self.t0,
            t1: self.t1,
            bucket_ns: self.bucket_ns,
            events: self.events,
            faults: self.faults,
            markers: self.markers,
            marker_buckets: sparse(self.marker_buckets),
            log_buckets: sparse(self.log_buckets),
            log_ticks,
            all_buckets: sparse(self.all_buckets),
            packets: self
                .packets
                .into_iter()
                .map(|(k, v)| (k, v.sparse()))
                .collect(),
            series,
            table_partial: !self.table_all,
            table: self.table,
        }
    }
}

/// `dst_service` of a packet event's `data` without parsing the whole JSON.
fn dst_service(data: &str) -> Option<&str> {
    let at = data.find("\"dst_service\":\"")? + "\"dst_service\":\"".len();
    let rest = &data[at..];
    let end = rest.find('"')?;
    Some(&rest[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use trace::Event;

    fn fault(ts: i64, kind: &str, data: J) -> Event {
        let mut e = Event::new(ts, "fault", kind).data(&data);
        e.seq = ts as u64;
        e
    }

    #[test]
    fn faults_become_spans_closed_by_their_revert_or_counter_action() {
        let mut c = Collector::new(&["a".into(), "b".into()], 0, 1000, 10, vec![]);
        for e in [
            fault(
                10,
                "pause",
                serde_json::json!({"fault_id":"f1","phase":"applied","target":{"services":["b"]}}),
            ),
            fault(
                20,
                "partition",
                serde_json::json!({"fault_id":"f2","phase":"applied","target":{"services":["a","b"]}}),
            ),
            fault(
                30,
                "unpause",
                serde_json::json!({"fault_id":"f3","phase":"applied","params":{"reverts":["f1"]},"target":{"services":["b"]}}),
            ),
            fault(
                40,
                "partition",
                serde_json::json!({"fault_id":"f2","phase":"reverted"}),
            ),
        ] {
            c.add(&e.as_ref());
        }
        let r = c.finish();
        let spans: Vec<(&str, i64, Option<i64>, Vec<usize>)> = r
            .faults
            .iter()
            .map(|f| (f.id.as_str(), f.start, f.end, f.lanes.clone()))
            .collect();
        assert_eq!(
            spans,
            vec![
                ("f1", 10, Some(30), vec![0, 2]),
                ("f2", 20, Some(40), vec![0, 1, 2]),
                ("f3", 30, Some(30), vec![0, 2]),
            ]
        );
    }

    #[test]
    fn series_keep_what_changes_or_is_named() {
        let re = regex::Regex::new("^a/pids$").ok().into_iter().collect();
        let mut c = Collector::new(&["a".into()], 0, 1000, 10, re);
        for (i, cpu) in [1.0, 1.0, 5.0].into_iter().enumerate() {
            let mut e = Event::new(i as i64 * 100, "stats", "stats")
                .service("a")
                .data(&serde_json::json!({"cpu_percent": cpu, "pids": 3, "mem_used": 7}));
            e.seq = i as u64;
            c.add(&e.as_ref());
        }
        let r = c.finish();
        let names: Vec<&str> = r.series.iter().map(|s| s.name.as_str()).collect();
        // `pids` is named, `cpu_percent` changes, `mem_used` neither
        assert_eq!(names, vec!["cpu_percent", "pids"]);
        let cpu = &r.series[0];
        assert_eq!(cpu.points.len(), 3);
        assert_eq!(cpu.points[2].3, 5.0);
    }

    #[test]
    fn the_table_stops_at_its_byte_budget_and_says_it_is_partial() {
        let n = 1_200;
        let mut c = Collector::new(&["a".into()], 0, 1_000_000, n, vec![]);
        let msg = "m".repeat(MESSAGE_CHARS * 2);
        let data = serde_json::json!({ "blob": "d".repeat(DATA_CHARS * 2) });
        for i in 0..n {
            let mut e = Event::new(i as i64, "log", "stdout")
                .service("a")
                .message(msg.clone())
                .data(&data);
            e.seq = i;
            c.add(&e.as_ref());
        }
        assert!(!c.table_is_complete());
        let r = c.finish();
        assert!(r.table_partial);
        let bytes: usize = r.table.iter().map(Row::size).sum();
        assert!(
            (TABLE_BYTES..TABLE_BYTES + 10_000).contains(&bytes),
            "{bytes}"
        );
        assert!(r.table.len() < n as usize);
        // every event still counts in the lanes
        assert_eq!(r.log_buckets[&1].iter().map(|b| b.1).sum::<u32>(), n as u32);
    }

    #[test]
    fn long_fields_are_cut_on_a_char_boundary() {
        let s = "é".repeat(MESSAGE_CHARS + 5);
        let c = cut(&s, MESSAGE_CHARS);
        assert!(c.starts_with(&"é".repeat(MESSAGE_CHARS)));
        assert!(c.ends_with(&format!("({} bytes in all)", s.len())));
    }
}
