//! `analyzer info TRACE`: manifest summary, time span, event counts per source and service,
//! faults injected, and whether the trace was finalized.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use serde::Serialize;
use trace::{Columns, ReadOptions, Trace};

use crate::timearg::{format_duration, format_ts};
use crate::{exit, Error};

/// Arguments of `analyzer info`.
#[derive(Debug, Clone, clap::Args)]
pub struct InfoArgs {
    /// The trace directory.
    pub trace: PathBuf,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// One fault event of the trace.
#[derive(Debug, Clone, Serialize)]
pub struct FaultLine {
    pub ts_ns: i64,
    pub seq: u64,
    pub action: String,
    pub phase: Option<String>,
    pub fault_id: Option<String>,
    pub target: String,
    pub error: Option<String>,
}

/// Everything `info` reports.
#[derive(Debug, Clone, Serialize)]
pub struct InfoReport {
    pub trace: String,
    pub format_version: u32,
    pub run_id: String,
    pub recorder_version: String,
    pub finalized: bool,
    pub started_ns: Option<i64>,
    pub ended_ns: Option<i64>,
    pub outcome: Option<trace::manifest::Outcome>,
    pub project: String,
    pub services: BTreeMap<String, Vec<String>>,
    pub seed: Option<u64>,
    pub events: u64,
    pub packets: u64,
    pub first_ns: Option<i64>,
    pub last_ns: Option<i64>,
    pub by_source: BTreeMap<String, u64>,
    pub by_service: BTreeMap<String, u64>,
    pub faults: Vec<FaultLine>,
}

/// Gathers the report (one scan of the keys, one of the fault events).
pub fn report(t: &Trace) -> Result<InfoReport, Error> {
    let m = t.manifest();
    let mut by_source: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_service: BTreeMap<String, u64> = BTreeMap::new();
    let (mut events, mut first, mut last) = (0u64, None, None);
    let opts = ReadOptions {
        columns: Columns {
            service: true,
            ..Columns::NONE
        },
        ..Default::default()
    };
    for b in t.events(&opts)? {
        let b = b?;
        for e in b.iter() {
            events += 1;
            first = first.or(Some(e.ts_ns));
            last = Some(e.ts_ns);
            // Avoid allocating per event: look up first.
            match by_source.get_mut(e.source) {
                Some(c) => *c += 1,
                None => {
                    by_source.insert(e.source.to_string(), 1);
                }
            }
            let svc = e.service.unwrap_or("-");
            match by_service.get_mut(svc) {
                Some(c) => *c += 1,
                None => {
                    by_service.insert(svc.to_string(), 1);
                }
            }
        }
    }
    let mut faults = Vec::new();
    if by_source.contains_key("fault") {
        let opts = ReadOptions {
            sources: Some(vec!["fault".into()]),
            ..Default::default()
        };
        for b in t.events(&opts)? {
            let b = b?;
            for e in b.iter() {
                let d: serde_json::Value = e
                    .data
                    .and_then(|d| serde_json::from_str(d).ok())
                    .unwrap_or_default();
                let s = |k: &str| d.get(k).and_then(|v| v.as_str()).map(str::to_string);
                let list = |k: &str| -> Vec<String> {
                    d.get("target")
                        .and_then(|t| t.get(k))
                        .and_then(|v| v.as_array())
                        .map(|a| {
                            a.iter()
                                .filter_map(|x| x.as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default()
                };
                let mut target = list("services");
                target.extend(list("networks").into_iter().map(|n| format!("network {n}")));
                if target.is_empty() {
                    target.extend(e.service.map(str::to_string));
                }
                faults.push(FaultLine {
                    ts_ns: e.ts_ns,
                    seq: e.seq,
                    action: e.kind.to_string(),
                    phase: s("phase"),
                    fault_id: s("fault_id"),
                    target: target.join(", "),
                    error: s("error"),
                });
            }
        }
    }
    let mut packets = 0u64;
    if t.has_packets() {
        for p in t.packets()? {
            packets += p?.len() as u64;
        }
    }
    Ok(InfoReport {
        trace: t.dir().display().to_string(),
        format_version: m.format_version.max(1),
        run_id: m.run_id.clone(),
        recorder_version: m.recorder_version.clone(),
        finalized: t.is_finalized(),
        started_ns: m.started_ns,
        ended_ns: m.ended_ns,
        outcome: m.outcome.clone(),
        project: m.compose.project.clone(),
        services: m
            .compose
            .services
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.containers.iter().map(|c| c.name.clone()).collect(),
                )
            })
            .collect(),
        seed: m.seed,
        events,
        packets,
        first_ns: first,
        last_ns: last,
        by_source,
        by_service,
        faults,
    })
}

fn print(r: &InfoReport, out: &mut dyn Write) -> std::io::Result<()> {
    let or = |s: &str, d: &str| {
        if s.is_empty() {
            d.to_string()
        } else {
            s.to_string()
        }
    };
    writeln!(out, "trace:      {}", r.trace)?;
    writeln!(out, "format:     v{}", r.format_version)?;
    if r.finalized {
        writeln!(out, "finalized:  yes")?;
    } else {
        writeln!(out, "finalized:  NO (the recorder is still running or was killed; read from the event log; run `analyzer finalize {}`)", r.trace)?;
    }
    writeln!(out, "run id:     {}", or(&r.run_id, "-"))?;
    writeln!(out, "recorder:   {}", or(&r.recorder_version, "-"))?;
    let t = |v: Option<i64>| v.map(format_ts).unwrap_or_else(|| "-".into());
    writeln!(out, "started:    {}", t(r.started_ns))?;
    writeln!(out, "ended:      {}", t(r.ended_ns))?;
    match &r.outcome {
        Some(o) => writeln!(
            out,
            "outcome:    {}{}{}",
            o.status,
            o.verdict
                .as_deref()
                .map(|v| format!(" (verdict {v})"))
                .unwrap_or_default(),
            o.message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        )?,
        None => writeln!(
            out,
            "outcome:    not recorded (the recorder did not finish)"
        )?,
    }
    if let Some(s) = r.seed {
        writeln!(out, "seed:       {s}")?;
    }
    if !r.project.is_empty() || !r.services.is_empty() {
        writeln!(out, "project:    {}", or(&r.project, "-"))?;
        for (s, cs) in &r.services {
            writeln!(
                out,
                "  service {s}: {}",
                if cs.is_empty() {
                    "-".to_string()
                } else {
                    cs.join(", ")
                }
            )?;
        }
    }
    match (r.first_ns, r.last_ns) {
        (Some(a), Some(b)) => writeln!(
            out,
            "events:     {} from {} to {} ({})",
            r.events,
            format_ts(a),
            format_ts(b),
            format_duration(b - a)
        )?,
        _ => writeln!(out, "events:     0")?,
    }
    if r.packets > 0 {
        writeln!(out, "packets:    {}", r.packets)?;
    }
    writeln!(out, "by source:")?;
    for (k, v) in &r.by_source {
        writeln!(out, "  {k:<12} {v:>10}")?;
    }
    writeln!(out, "by service:")?;
    for (k, v) in &r.by_service {
        writeln!(out, "  {k:<12} {v:>10}")?;
    }
    writeln!(out, "faults:     {}", r.faults.len())?;
    let start = r.started_ns.or(r.first_ns).unwrap_or(0);
    for f in &r.faults {
        writeln!(
            out,
            "  +{:<10} seq {:<8} {:<10} {:<9} {}{}{}",
            format_duration(f.ts_ns - start),
            f.seq,
            f.action,
            f.phase.as_deref().unwrap_or("-"),
            f.target,
            f.fault_id
                .as_deref()
                .map(|i| format!(" [{i}]"))
                .unwrap_or_default(),
            f.error
                .as_deref()
                .map(|e| format!(" error: {e}"))
                .unwrap_or_default()
        )?;
    }
    Ok(())
}

/// Runs `analyzer info`.
pub fn run(a: &InfoArgs, out: &mut dyn Write) -> Result<i32, Error> {
    let t = crate::s3::open_trace(&a.trace)?;
    let r = report(&t)?;
    if a.json {
        let s = serde_json::to_string_pretty(&r)
            .map_err(|e| Error::Runtime(format!("cannot serialise: {e}")))?;
        writeln!(out, "{s}").map_err(Error::output)?;
    } else {
        print(&r, out).map_err(Error::output)?;
    }
    Ok(exit::OK)
}
