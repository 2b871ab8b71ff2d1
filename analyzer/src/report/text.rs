//! Text report: one line per monitor and experiment step with its verdict, then the explanation
//! of every fail and inconclusive (deciding event, guard values, path, timeout, pending, context)
//! and, verbose (`-v`), the reason of every accept.

use super::Context;
use crate::report::Judged;
use monitor::{EventInfo, Explanation, MonitorResult, Verdict};
use std::io::Write;
use trace::time::format_rfc3339_nanos as fmt_ts;

fn tag(v: Option<Verdict>) -> &'static str {
    match v {
        Some(Verdict::Accept) => "ok  ",
        Some(Verdict::Fail) => "FAIL",
        Some(Verdict::Inconclusive) => "INCO",
        None => "----",
    }
}

fn rel(ts: i64, start: Option<i64>) -> String {
    match start {
        Some(s) => format!("+{:.3}s", (ts - s) as f64 / 1e9),
        None => fmt_ts(ts),
    }
}

/// Where and why the recorder halted the run, as one line.
pub fn halt_line(h: &crate::report::HaltNote, start: Option<i64>) -> String {
    let deciding = match (h.deciding_ts_ns, h.deciding_seq) {
        (Some(t), Some(s)) => format!("; deciding event seq {s} at {}", rel(t, start)),
        (Some(t), None) => format!("; decided by a timeout at {}", rel(t, start)),
        _ => String::new(),
    };
    let latency = h
        .latency_ms
        .map(|l| format!(", {l:.1} ms after the deciding event"))
        .unwrap_or_default();
    format!(
        "HALTED at {} (seq {}): halt condition `{}` failed: {}{deciding}; {} fault(s) reverted{latency}",
        rel(h.ts_ns, start),
        h.seq,
        h.monitor,
        h.explanation,
        h.reverted.len()
    )
}

/// One event as a line.
pub fn event_line(e: &EventInfo, start: Option<i64>) -> String {
    format!(
        "{} {} seq {} {} {} {} {}",
        rel(e.ts_ns, start),
        fmt_ts(e.ts_ns),
        e.seq,
        e.source,
        e.service.as_deref().unwrap_or("-"),
        e.kind,
        e.excerpt
    )
}

/// The explanation as indented lines.
pub fn explain(e: &Explanation, start: Option<i64>, ctx: &[Context], indent: &str) -> Vec<String> {
    let mut l = Vec::new();
    l.push(format!("{indent}reason: {}", e.reason));
    let mut what = format!("{indent}monitor: {} in state `{}`", e.monitor, e.state);
    if let Some(k) = &e.key {
        what.push_str(&format!(" (key {k})"));
    }
    l.push(what);
    if let Some(d) = &e.deciding_event {
        l.push(format!("{indent}deciding event: {}", event_line(d, start)));
    }
    if let Some(h) = &e.handler {
        l.push(format!("{indent}handler: {h}"));
    }
    if !e.guard_values.is_empty() {
        l.push(format!("{indent}the guard saw:"));
        for g in &e.guard_values {
            l.push(format!("{indent}  {} = {}", g.expr, g.value));
        }
    }
    if let Some(t) = &e.timeout {
        let by = t
            .armed_by_seq
            .map(|s| format!(" by seq {s}"))
            .unwrap_or_default();
        l.push(format!(
            "{indent}timeout: state `{}` armed at {}{by}, due at {}",
            t.state,
            rel(t.armed_ns, start),
            rel(t.deadline_ns, start)
        ));
    }
    if let Some(p) = &e.pending {
        l.push(format!("{indent}pending: {p}"));
    }
    if !e.path.is_empty() {
        l.push(format!("{indent}path:"));
        for t in &e.path {
            let by = t
                .seq
                .map(|s| format!("seq {s}"))
                .unwrap_or_else(|| "timeout".into());
            l.push(format!(
                "{indent}  {} -> {} at {} ({by}) by `{}`",
                t.from,
                t.to,
                rel(t.ts_ns, start),
                t.handler
            ));
            if let Some(ev) = &t.event {
                l.push(format!("{indent}      event: {}", event_line(ev, start)));
            }
        }
    }
    if let Some(d) = &e.deciding_event {
        let packet = d.source == "packet";
        let found = ctx
            .iter()
            .find(|c| c.at_ns.is_none() && (c.seq, c.ts_ns) == (d.seq, d.ts_ns));
        if let Some(c) = found {
            // a packet's seq numbers packets: only its time places it among the events
            let seq = (!packet).then_some(d.seq);
            context_lines(&mut l, c, "around it", d.ts_ns, seq, start, indent);
        }
    } else if let Some(t) = &e.timeout {
        // a timeout: what happened up to the end of the window, and around the last transition
        if let Some(c) = ctx.iter().find(|c| c.at_ns == Some(t.deadline_ns)) {
            let what = format!("around the window's end at {}", rel(t.deadline_ns, start));
            context_lines(&mut l, c, &what, t.deadline_ns, None, start, indent);
        }
        if let Some(ev) = e.path.last().and_then(|t| t.event.as_ref()) {
            let found = ctx
                .iter()
                .find(|c| c.at_ns.is_none() && (c.seq, c.ts_ns) == (ev.seq, ev.ts_ns));
            if let Some(c) = found {
                let what = format!("around the last transition (seq {})", ev.seq);
                let seq = (ev.source != "packet").then_some(ev.seq);
                context_lines(&mut l, c, &what, ev.ts_ns, seq, start, indent);
            }
        }
    }
    l
}

/// The context events of `c` marked before/after the anchor (`ts`, and `seq` for an event).
fn context_lines(
    l: &mut Vec<String>,
    c: &Context,
    what: &str,
    ts: i64,
    seq: Option<u64>,
    start: Option<i64>,
    indent: &str,
) {
    if c.events.is_empty() {
        return;
    }
    let mut who = c.services.clone();
    who.extend(["faults".to_string(), "notes".to_string()]);
    l.push(format!("{indent}{what} ({}):", who.join(", ")));
    for ev in &c.events {
        let after = ev.ts_ns > ts || (ev.ts_ns == ts && seq.is_some_and(|s| ev.seq > s));
        let mark = if after { "after " } else { "before" };
        l.push(format!("{indent}  {mark} {}", event_line(ev, start)));
    }
}

/// Verbose: the reason of an accepted monitor (and of its accepted parts), one line each.
fn accept_lines(w: &mut dyn Write, m: &MonitorResult, indent: &str) -> std::io::Result<()> {
    if m.verdict != Verdict::Accept {
        return Ok(());
    }
    if let Some(e) = &m.explanation {
        writeln!(w, "{indent}reason: {}", e.reason)?;
    }
    for c in &m.children {
        writeln!(w, "{indent}{} {}", tag(Some(c.verdict)), c.name)?;
        accept_lines(w, c, &format!("{indent}  "))?;
    }
    Ok(())
}

fn monitor_lines(
    w: &mut dyn Write,
    m: &MonitorResult,
    start: Option<i64>,
    ctx: &[Context],
    indent: &str,
) -> std::io::Result<()> {
    if m.verdict == Verdict::Accept {
        return Ok(());
    }
    if !m.children.is_empty() {
        for c in &m.children {
            writeln!(w, "{indent}{} {}", tag(Some(c.verdict)), c.name)?;
            monitor_lines(w, c, start, ctx, &format!("{indent}  "))?;
        }
        if let Some(e) = &m.explanation {
            for line in explain(e, start, ctx, indent) {
                writeln!(w, "{line}")?;
            }
        }
        return Ok(());
    }
    if let Some(e) = &m.explanation {
        for line in explain(e, start, ctx, indent) {
            writeln!(w, "{line}")?;
        }
    }
    Ok(())
}

pub fn write(w: &mut dyn Write, judged: &[Judged]) -> std::io::Result<()> {
    write_with(w, judged, false)
}

/// The report; `verbose` adds the reason of every accepted monitor and step.
pub fn write_with(w: &mut dyn Write, judged: &[Judged], verbose: bool) -> std::io::Result<()> {
    for j in judged {
        let r = &j.report;
        let start = j.origin_ns;
        writeln!(
            w,
            "trace {} ({} events, {} .. {})",
            j.trace.display(),
            r.events,
            r.start_ns.map(fmt_ts).unwrap_or_default(),
            fmt_ts(r.end_ns)
        )?;
        for x in &j.warnings {
            writeln!(w, "  warning: {x}")?;
        }
        if let Some(h) = &j.halt {
            writeln!(w, "  {}", halt_line(h, start))?;
        }
        for m in &r.monitors {
            writeln!(w, "  {} monitor {}", tag(Some(m.verdict)), m.name)?;
            monitor_lines(w, m, start, &j.context, "      ")?;
            if verbose {
                accept_lines(w, m, "      ")?;
            }
        }
        for e in &r.experiments {
            writeln!(w, "  {} experiment {}", tag(Some(e.verdict)), e.name)?;
            for s in &e.steps {
                let when = s
                    .end_ns
                    .map(|t| format!("  [{}]", rel(t, start)))
                    .unwrap_or_default();
                writeln!(
                    w,
                    "    {} {:>2}. {}{when}",
                    tag(s.verdict),
                    s.index + 1,
                    s.text
                )?;
                for x in &s.warnings {
                    writeln!(w, "          warning: {x}")?;
                }
                if let Some(b) = &s.binding {
                    writeln!(w, "          bound: {} = {}", b.name, b.value)?;
                }
                if s.verdict.is_some_and(|v| v != Verdict::Accept) {
                    if let Some(m) = &s.monitor {
                        monitor_lines(w, m, start, &j.context, "          ")?;
                    } else if let Some(rs) = &s.reason {
                        writeln!(w, "          reason: {rs}")?;
                    }
                } else if verbose && s.verdict == Some(Verdict::Accept) {
                    match &s.monitor {
                        Some(m) => accept_lines(w, m, "          ")?,
                        None => {
                            if let Some(rs) = &s.reason {
                                writeln!(w, "          reason: {rs}")?;
                            }
                        }
                    }
                }
            }
            if let Some(rs) = &e.reason {
                writeln!(w, "    => {rs}")?;
            }
        }
        writeln!(w, "  verdict: {}", r.verdict)?;
    }
    if judged.len() > 1 {
        writeln!(
            w,
            "verdict: {}",
            Verdict::combine(judged.iter().map(|j| j.report.verdict))
        )?;
    }
    Ok(())
}
