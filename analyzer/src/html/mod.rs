//! `analyzer report` and `analyzer check --html`: one self-contained HTML file that shows a
//! judged run (timeline of services, faults, experiment steps, monitor state bands, Docker
//! markers, log ticks, packet rates and numeric series; the failures with their explanations;
//! a table of the events). The trace is judged again with the runner in recording mode so every
//! state transition is known. The page's script and style are files of this module embedded at
//! build time; the data goes in a `<script type="application/json">` block, escaped so that
//! nothing in a trace can end that block or run as code.

pub mod collect;

use crate::judge::{load_spec, Judged};
use crate::report as reporters;
use crate::{exit, Error};
use collect::{Collector, Row, AROUND_BYTES};
use monitor::{InstanceHistory, Report, Runner, Selection, Spec, Verdict};
use serde::Serialize;
use std::path::{Path, PathBuf};
use trace::{ReadOptions, Trace};

const SCRIPT: &str = include_str!("assets/report.js");
const STYLE: &str = include_str!("assets/report.css");

/// Monitor instances drawn as bands at most (failing ones always are).
const MAX_BANDS: usize = 400;
/// Events read again before and after each decision of a big trace.
const AROUND: usize = 200;

/// Arguments of `analyzer report`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReportArgs {
    /// The trace directory.
    pub trace: PathBuf,
    /// A spec file, one per `--spec` (repeatable; imports are resolved relative to each file).
    #[arg(long = "spec", value_name = "FILE", required = true)]
    pub spec: Vec<PathBuf>,
    /// Only these monitors (repeatable).
    #[arg(long)]
    pub monitor: Vec<String>,
    /// Only these experiments (repeatable).
    #[arg(long)]
    pub experiment: Vec<String>,
    /// The HTML file to write.
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
    /// Numeric series to plot even when they do not change: regex on `SERVICE/NAME`, e.g.
    /// `left-a/cpu_percent` (repeatable). Series that change are plotted anyway.
    #[arg(long)]
    pub series: Vec<String>,
    /// Events of context shown around each deciding event in the explanations.
    #[arg(long, default_value_t = 5)]
    pub context: usize,
    /// Also judge the events of the recorder's teardown (as `check --include-teardown`).
    #[arg(long)]
    pub include_teardown: bool,
}

/// What to draw beyond the defaults.
#[derive(Debug, Clone, Default)]
pub struct HtmlOptions {
    pub series: Vec<regex::Regex>,
    pub context: usize,
    pub include_teardown: bool,
}

/// A state band: one monitor instance's states.
#[derive(Serialize)]
struct Band {
    scope: String,
    monitor: String,
    key: Option<String>,
    lane: Option<usize>,
    verdict: Option<Verdict>,
    decided: Option<i64>,
    decided_seq: Option<u64>,
    /// `[state, from, to]` (`to` null: in it at the end).
    states: Vec<(String, i64, Option<i64>)>,
}

/// An experiment step as a span.
#[derive(Serialize)]
struct StepSpan {
    experiment: String,
    index: usize,
    kind: String,
    text: String,
    verdict: Option<Verdict>,
    start: Option<i64>,
    end: Option<i64>,
    reason: Option<String>,
}

/// A failure (or inconclusive) with what the text report says about it.
#[derive(Serialize)]
struct Failure {
    title: String,
    verdict: Verdict,
    at: Option<i64>,
    seq: Option<u64>,
    lane: Option<usize>,
    lines: Vec<String>,
    /// Sequence numbers of the events the explanation shows (path, deciding event, context).
    seqs: Vec<u64>,
}

/// The data block of the page.
#[derive(Serialize)]
struct Page<'a> {
    title: String,
    trace: String,
    run_id: &'a str,
    origin: i64,
    verdict: Verdict,
    events: u64,
    judged_until: i64,
    #[serde(flatten)]
    collected: &'a collect::Collected,
    steps: Vec<StepSpan>,
    bands: Vec<Band>,
    bands_total: usize,
    failures: Vec<Failure>,
    text_report: String,
}

/// Writes the report of `args.trace`, returning the verdict's exit code.
pub fn run(args: &ReportArgs) -> Result<i32, Error> {
    let spec = match load_spec(&args.spec) {
        Ok(s) => s,
        Err((code, msg)) => {
            eprintln!("{msg}");
            return Ok(code);
        }
    };
    let sel = Selection {
        monitors: args.monitor.clone(),
        experiments: args.experiment.clone(),
    };
    let probe = Runner::new(&spec, &sel).map_err(|e| Error::Usage(e.to_string()))?;
    if probe.is_empty() {
        return Err(Error::Usage("nothing to judge: the specs have no experiment and no monitor without parameters; pick one with --monitor or --experiment".into()));
    }
    let opts = HtmlOptions {
        series: series_regexes(&args.series)?,
        context: args.context,
        include_teardown: args.include_teardown,
    };
    let verdict = write(&spec, &sel, &args.trace, &args.output, &opts)?;
    println!(
        "{}: {} ({verdict})",
        args.output.display(),
        describe_size(&args.output)
    );
    Ok(match verdict {
        Verdict::Accept => exit::OK,
        Verdict::Fail => exit::FAIL,
        Verdict::Inconclusive => exit::INCONCLUSIVE,
    })
}

fn describe_size(p: &Path) -> String {
    match std::fs::metadata(p) {
        Ok(m) => format!("{:.1} kB", m.len() as f64 / 1000.0),
        Err(_) => "written".into(),
    }
}

/// Compiles the `--series` patterns.
pub fn series_regexes(pats: &[String]) -> Result<Vec<regex::Regex>, Error> {
    pats.iter()
        .map(|p| regex::Regex::new(p).map_err(|e| Error::Usage(format!("--series `{p}`: {e}"))))
        .collect()
}

/// `check --html PATH`: one trace writes PATH; several write `PATH/<trace name>.html` each
/// (PATH is created as a directory).
pub fn write_for_check(
    spec: &Spec,
    sel: &Selection,
    traces: &[PathBuf],
    path: &Path,
    opts: &HtmlOptions,
) -> Result<(), Error> {
    if traces.len() == 1 {
        write(spec, sel, &traces[0], path, opts)?;
        return Ok(());
    }
    std::fs::create_dir_all(path).map_err(|e| {
        Error::Runtime(format!(
            "{}: cannot create the html report directory: {e}",
            path.display()
        ))
    })?;
    let mut used = std::collections::HashSet::new();
    for (i, t) in traces.iter().enumerate() {
        let base = t
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .filter(|n| !n.is_empty() && n != "." && n != "..")
            .unwrap_or_else(|| format!("trace-{}", i + 1));
        let mut name = format!("{base}.html");
        if !used.insert(name.clone()) {
            name = format!("{base}-{}.html", i + 1);
            used.insert(name.clone());
        }
        write(spec, sel, t, &path.join(name), opts)?;
    }
    Ok(())
}

/// Judges `dir` in recording mode and writes its report to `out`; returns the verdict.
pub fn write(
    spec: &Spec,
    sel: &Selection,
    dir: &Path,
    out: &Path,
    opts: &HtmlOptions,
) -> Result<Verdict, Error> {
    let (html, verdict) = render(spec, sel, dir, opts)?;
    std::fs::write(out, html)
        .map_err(|e| Error::Runtime(format!("{}: cannot write html report: {e}", out.display())))?;
    Ok(verdict)
}

/// The trace's time range and size, from the Parquet footer or a quick read of the times.
fn range(t: &Trace) -> Result<(i64, i64, u64), Error> {
    let m = t.manifest();
    let (mut lo, mut hi, mut n) = match t.parquet_facts() {
        Some((rows, Some(a), Some(b), _)) => (a, b, rows),
        _ => {
            let opts = ReadOptions {
                columns: trace::Columns::NONE,
                ..Default::default()
            };
            let (mut lo, mut hi, mut n) = (i64::MAX, i64::MIN, 0u64);
            for b in t.events(&opts)? {
                let b = b?;
                for ev in b.iter() {
                    lo = lo.min(ev.ts_ns);
                    hi = hi.max(ev.ts_ns);
                    n += 1;
                }
            }
            (lo, hi, n)
        }
    };
    if t.has_packets() {
        // packets add to the size (their time range is within the recording)
        for b in t.packets()? {
            n += b?.len() as u64;
        }
    }
    for x in [m.started_ns, m.ended_ns].into_iter().flatten() {
        lo = lo.min(x);
        hi = hi.max(x);
    }
    if lo > hi {
        lo = 0;
        hi = 1;
    }
    Ok((lo, hi, n))
}

/// Judges `dir` (every column read, so the verdicts are those of `check`) in recording mode,
/// gathering what the page draws on the way, and renders the page.
pub fn render(
    spec: &Spec,
    sel: &Selection,
    dir: &Path,
    opts: &HtmlOptions,
) -> Result<(String, Verdict), Error> {
    let (t, cutoff, mut runner) =
        crate::judge::open_judging(spec, sel, dir, opts.include_teardown)?;
    let log = runner.record_states();
    let (t0, t1, size) = range(&t)?;
    let services: Vec<String> = t.manifest().compose.services.keys().cloned().collect();
    let mut col = Collector::new(&services, t0, t1, size, opts.series.clone());
    let read = ReadOptions {
        include_packets: t.has_packets(),
        ..Default::default()
    };
    // packets are drawn always, judged only when a monitor can match them (as `check` does)
    let judge_packets = runner.may_observe("packet");
    let mut last = None;
    let mut judged = 0u64;
    for batch in t.events(&read)? {
        let batch = batch?;
        for ev in batch.iter() {
            col.add(&ev);
            if cutoff.is_none_or(|c| ev.ts_ns < c) && (judge_packets || ev.source != "packet") {
                runner.observe(&ev);
                judged += 1;
                last = Some(ev.ts_ns);
            }
        }
    }
    let m = t.manifest();
    let end = match (cutoff, last, m.ended_ns) {
        (Some(c), _, _) => c,
        (None, Some(a), Some(b)) => a.max(b),
        (None, a, b) => a.or(b).or(m.started_ns).unwrap_or(0),
    };
    let mut report = runner.finish(end);
    report.events = judged;
    let context = reporters::gather_context(&t, &report, opts.context)?;
    let origin = m.started_ns.or(report.start_ns).unwrap_or(t0);
    if !col.table_is_complete() {
        let rows = around_decisions(&t, &report)?;
        col.add_table_rows(rows);
    }
    let lanes: Vec<String> = col.lane_names().to_vec();
    let lane_of = |s: &str| lanes.iter().position(|l| l == s);
    let histories = log.histories();
    let bands_total = histories.len();
    let bands = bands(histories, &lane_of);
    let warnings = crate::judge::unknown_service_warnings(spec, &report, t.manifest());
    let judged = Judged {
        trace: dir.to_path_buf(),
        report,
        context,
        origin_ns: Some(origin),
        warnings,
        manifest: Some(t.manifest().clone()),
        halt: crate::judge::halt_note(&t)?,
    };
    let failures = failures(&judged, &lane_of);
    let steps = judged
        .report
        .experiments
        .iter()
        .flat_map(|e| {
            e.steps.iter().map(|s| StepSpan {
                experiment: e.name.clone(),
                index: s.index,
                kind: s.kind.clone(),
                text: s.text.clone(),
                verdict: s.verdict,
                start: s.start_ns,
                end: s.end_ns,
                reason: s.reason.clone(),
            })
        })
        .collect();
    let mut text = Vec::new();
    reporters::text::write_with(&mut text, std::slice::from_ref(&judged), true)
        .map_err(Error::output)?;
    let collected = col.finish();
    let verdict = judged.report.verdict;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| dir.display().to_string());
    let page = Page {
        title: format!("{name}: {verdict}"),
        trace: dir.display().to_string(),
        run_id: &m.run_id,
        origin,
        verdict,
        events: collected.events,
        judged_until: end,
        collected: &collected,
        steps,
        bands,
        bands_total,
        failures,
        text_report: String::from_utf8_lossy(&text).to_string(),
    };
    let json = serde_json::to_string(&page)
        .map_err(|e| Error::Runtime(format!("cannot serialise the report data: {e}")))?;
    Ok((page_html(&page.title, &json), verdict))
}

/// The bands to draw: every failing or inconclusive instance, then the others up to
/// [`MAX_BANDS`], in the order they started.
fn bands(hs: Vec<InstanceHistory>, lane_of: &dyn Fn(&str) -> Option<usize>) -> Vec<Band> {
    let bad = |h: &InstanceHistory| h.verdict.is_some_and(|v| v != Verdict::Accept);
    let n_bad = hs.iter().filter(|h| bad(h)).count();
    let mut room = MAX_BANDS.saturating_sub(n_bad);
    hs.into_iter()
        .filter(|h| {
            if bad(h) {
                return true;
            }
            if room > 0 {
                room -= 1;
                return true;
            }
            false
        })
        .map(|h| Band {
            lane: h.at.as_deref().and_then(lane_of),
            scope: h.scope,
            monitor: h.monitor,
            key: h.key,
            verdict: h.verdict,
            decided: h.decided_ns,
            decided_seq: h.decided_by_seq,
            states: h
                .states
                .into_iter()
                .map(|s| (s.state, s.from_ns, s.to_ns))
                .collect(),
        })
        .collect()
}

/// Every fail and inconclusive explanation, in the order the text report gives them, with
/// the text report's lines for it.
fn failures(j: &Judged, lane_of: &dyn Fn(&str) -> Option<usize>) -> Vec<Failure> {
    let mut out = Vec::new();
    let start = j.origin_ns;
    let r: &Report = &j.report;
    let mut push = |title: String, verdict: Verdict, e: &monitor::Explanation| {
        let lines = reporters::text::explain(e, start, &j.context, "");
        let d = e.deciding_event.as_ref();
        let mut seqs: Vec<u64> = e
            .path
            .iter()
            .filter_map(|t| t.seq)
            .chain(d.map(|d| d.seq))
            .collect();
        if let Some(c) = d.and_then(|d| j.context.iter().find(|c| c.seq == d.seq)) {
            seqs.extend(c.events.iter().map(|e| e.seq));
        }
        out.push(Failure {
            title,
            verdict,
            at: d.map(|d| d.ts_ns).or(e.decided_ns),
            seq: d.map(|d| d.seq),
            lane: d
                .and_then(|d| d.service.as_deref())
                .or(e.services.first().map(String::as_str))
                .and_then(lane_of),
            lines,
            seqs,
        });
    };
    for m in &r.monitors {
        if m.verdict != Verdict::Accept {
            if let Some(e) = m.primary_explanation() {
                push(format!("monitor {}", m.name), m.verdict, e);
            }
        }
    }
    for x in &r.experiments {
        for s in &x.steps {
            let Some(v) = s.verdict.filter(|v| *v != Verdict::Accept) else {
                continue;
            };
            let title = format!("experiment {} step {}: {}", x.name, s.index + 1, s.text);
            match s.monitor.as_ref().and_then(|m| m.primary_explanation()) {
                Some(e) => push(title, v, e),
                None => {
                    let e = monitor::Explanation {
                        reason: s.reason.clone().unwrap_or_default(),
                        monitor: s.text.clone(),
                        decided_ns: s.end_ns,
                        deciding_event: s.fault.clone(),
                        ..Default::default()
                    };
                    push(title, v, &e);
                }
            }
        }
    }
    // failures before inconclusives, each in time order
    out.sort_by_key(|f| (f.verdict != Verdict::Fail, f.at.unwrap_or(i64::MAX)));
    out
}

/// Big traces: the events just before and after each decision (deciding events, step ends,
/// the first failure), read again in full.
fn around_decisions(t: &Trace, r: &Report) -> Result<Vec<Row>, Error> {
    let mut times: Vec<i64> = r.shown_events().iter().map(|e| e.0).collect();
    for x in &r.experiments {
        for s in &x.steps {
            times.extend(s.start_ns);
            times.extend(s.end_ns);
        }
    }
    times.sort_unstable();
    times.dedup();
    times.truncate(200);
    let mut rows = Vec::new();
    let mut bytes = 0;
    for ts in times {
        if bytes >= AROUND_BYTES {
            break;
        }
        // before: the last AROUND events of the preceding seconds
        let before = ReadOptions {
            since_ns: Some(ts.saturating_sub(2_000_000_000)),
            until_ns: Some(ts),
            ..Default::default()
        };
        let mut ring = std::collections::VecDeque::with_capacity(AROUND + 1);
        for b in t.events(&before)? {
            let b = b?;
            for ev in b.iter() {
                ring.push_back(Row::of(&ev));
                if ring.len() > AROUND {
                    ring.pop_front();
                }
            }
        }
        bytes += ring.iter().map(Row::size).sum::<usize>();
        rows.extend(ring);
        let after = ReadOptions {
            since_ns: Some(ts),
            until_ns: Some(ts.saturating_add(2_000_000_000)),
            ..Default::default()
        };
        let mut n = 0;
        'after: for b in t.events(&after)? {
            let b = b?;
            for ev in b.iter() {
                let row = Row::of(&ev);
                bytes += row.size();
                rows.push(row);
                n += 1;
                if n >= AROUND {
                    break 'after;
                }
            }
        }
    }
    Ok(rows)
}

/// The data as JSON safe inside `<script type="application/json">`: `<`, `>` and `&` (so no
/// `</script>` or `<!--` can appear) and U+2028/U+2029 are written as `\uXXXX` escapes, which
/// only occur inside JSON strings, so the JSON means the same.
pub fn json_for_script(json: &str) -> String {
    let mut s = String::with_capacity(json.len() + json.len() / 16);
    for c in json.chars() {
        match c {
            '<' => s.push_str("\\u003c"),
            '>' => s.push_str("\\u003e"),
            '&' => s.push_str("\\u0026"),
            '\u{2028}' => s.push_str("\\u2028"),
            '\u{2029}' => s.push_str("\\u2029"),
            c => s.push(c),
        }
    }
    s
}

/// Text escaped for HTML element content and attribute values.
pub fn escape_html(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn page_html(title: &str, json: &str) -> String {
    let mut h = String::with_capacity(json.len() + SCRIPT.len() + STYLE.len() + 4096);
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    // nothing from the network: no fetch, no images, no fonts; inline code only
    h.push_str("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:\">\n");
    h.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    h.push_str(&format!(
        "<title>{} · chaos-trace report</title>\n",
        escape_html(title)
    ));
    h.push_str("<style>\n");
    h.push_str(STYLE);
    h.push_str("</style>\n</head>\n<body>\n");
    h.push_str(BODY);
    h.push_str("<script type=\"application/json\" id=\"report-data\">");
    h.push_str(&json_for_script(json));
    h.push_str("</script>\n<script>\n");
    h.push_str(SCRIPT);
    h.push_str("</script>\n</body>\n</html>\n");
    h
}

/// The page's fixed structure; the script fills it from the data block.
const BODY: &str = include_str!("assets/body.html");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_in_a_script_block_cannot_close_it_and_means_the_same() {
        let v = serde_json::json!({
            "log": "</script><script>alert(1)</script> <!-- & \u{2028}\u{2029}",
        });
        let raw = serde_json::to_string(&v).unwrap_or_default();
        let safe = json_for_script(&raw);
        for bad in ["<", ">", "&", "\u{2028}", "\u{2029}"] {
            assert!(!safe.contains(bad), "{bad:?} left in {safe}");
        }
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap_or_default();
        assert_eq!(back, v);
    }

    #[test]
    fn titles_are_escaped() {
        assert_eq!(
            escape_html("<img src=x onerror='a'>&\""),
            "&lt;img src=x onerror=&#39;a&#39;&gt;&amp;&quot;"
        );
    }

    #[test]
    fn the_page_embeds_its_script_and_style_and_loads_nothing() {
        let h = page_html("t", "{}");
        assert!(h.contains(SCRIPT) && h.contains(STYLE));
        for remote in [
            "src=\"http",
            "href=\"http",
            "src=\"//",
            "@import",
            "url(http",
        ] {
            assert!(!h.contains(remote), "{remote}");
        }
        // exactly one data block and one script
        assert_eq!(h.matches("<script").count(), 2);
    }
}
