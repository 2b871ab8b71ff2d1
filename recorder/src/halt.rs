//! Halt conditions (`[halt]` in a scenario, docs/scenario.md "Halt conditions"): monitor
//! expressions from the scenario's spec files, compiled with the monitor library as `expect`
//! steps and judged live on the recorded events during the whole run, in trace order with the
//! same 250 ms lag as an experiment's `expect`. When one fails, [`watch`] halts the fault
//! injector (no fault applied any more, every active fault reverted at once, in parallel) and
//! writes a `recorder`/`halt` event naming the monitor, its explanation, the deciding event and
//! the halt latency (deciding event's timestamp → every fault reverted).

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use monitor::{LiveStep, SourceFile, Step, Verdict};
use tokio::sync::mpsc;
use trace::{kinds, Event};

use crate::plan::SharedInjector;
use crate::scenario::{HaltPlan, ScenarioError};
use crate::sink::{now_ns, EventSink};

/// How far behind the wall clock the judges' time runs (as for an experiment's `expect`), so
/// events still in the pipeline are not overtaken by timeouts.
const LAG_NS: i64 = 250_000_000;

/// One compiled halt condition.
#[derive(Clone)]
pub struct HaltMonitor {
    /// The monitor expression as written in the scenario.
    pub text: String,
    step: monitor::ExpectStep,
}

/// What a halt did, for the run's outcome.
#[derive(Debug, Clone)]
pub struct Halted {
    pub monitor: String,
    pub explanation: String,
    /// The deciding event's timestamp (or the expired timeout's deadline).
    pub deciding_ts_ns: i64,
    pub deciding_seq: Option<u64>,
    /// Deciding event → every fault reverted.
    pub latency_ns: i64,
    pub reverted: Vec<String>,
}

impl Halted {
    /// The run's message and its one verdict line: which condition failed, when, why, and how
    /// soon the faults were reverted.
    pub fn summary(&self) -> String {
        format!(
            "halted: `{}` failed at {} (seq {}): {}; {} fault(s) reverted {:.1} ms after the deciding event",
            self.monitor,
            monitor::fmt_ts(self.deciding_ts_ns),
            self.deciding_seq
                .map(|s| s.to_string())
                .unwrap_or_else(|| "none, a timeout".into()),
            self.explanation,
            self.reverted.len(),
            self.latency_ns as f64 / 1e6
        )
    }
}

/// The name of the synthetic spec source holding the halt conditions of `scenario`.
fn source_name(scenario: &Path) -> String {
    format!("{} [halt]", scenario.display())
}

/// Compiles every halt condition of `plan` with the spec files. A spec file's errors are
/// returned as rendered; an error in a condition itself is reported at its place in the
/// scenario file (`scenario`, whose text is `text`).
pub fn compile(
    plan: &HaltPlan,
    scenario: &Path,
    text: &str,
) -> Result<Vec<HaltMonitor>, Vec<String>> {
    let mut files = Vec::new();
    let mut errs = Vec::new();
    for p in &plan.specs {
        match std::fs::read_to_string(p) {
            Ok(t) => files.push(SourceFile::new(p.display().to_string(), t)),
            Err(e) => errs.push(format!("error: {}: cannot read spec: {e}", p.display())),
        }
    }
    if !errs.is_empty() {
        return Err(errs);
    }
    // each condition is the one `expect` step of its own experiment, three lines apiece
    let name = source_name(scenario);
    let mut synthetic = String::new();
    for (i, (m, _)) in plan.monitors.iter().enumerate() {
        let m = m.replace(['\n', '\r'], " ");
        synthetic.push_str(&format!("experiment __halt_{i} {{\n  expect {m}\n}}\n"));
    }
    files.push(SourceFile::new(name.clone(), synthetic));
    let resolver = |import: &str, from: &str| -> Option<SourceFile> {
        let base = Path::new(from).parent().unwrap_or(Path::new("."));
        let p: PathBuf = base.join(import);
        std::fs::read_to_string(&p)
            .ok()
            .map(|t| SourceFile::new(p.display().to_string(), t))
    };
    let spec = match monitor::compile(&files, &resolver) {
        Ok(s) => s,
        Err(d) => {
            let mut out = Vec::new();
            let mut at_scenario = Vec::new();
            for diag in &d.0 {
                if diag.file == name {
                    let i = diag.line.saturating_sub(1) / 3;
                    let (m, span) = plan
                        .monitors
                        .get(i)
                        .cloned()
                        .unwrap_or_else(|| (String::new(), Range { start: 0, end: 0 }));
                    at_scenario.push(ScenarioError::at(
                        scenario,
                        text,
                        span,
                        format!("[halt] monitor `{m}`: {}", diag.message),
                    ));
                } else {
                    out.push(diag.to_string());
                }
            }
            at_scenario.dedup();
            let mut all: Vec<String> = at_scenario.iter().map(ScenarioError::render).collect();
            all.extend(out);
            return Err(all);
        }
    };
    let mut monitors = Vec::new();
    for (i, (m, _)) in plan.monitors.iter().enumerate() {
        let step = spec
            .experiment(&format!("__halt_{i}"))
            .and_then(|e| e.steps.first())
            .and_then(|s| match s {
                Step::Expect(e) => Some(e.clone()),
                _ => None,
            });
        match step {
            Some(step) => monitors.push(HaltMonitor {
                text: m.clone(),
                step,
            }),
            None => errs.push(format!("error: [halt] monitor `{m}` did not compile")),
        }
    }
    if errs.is_empty() {
        Ok(monitors)
    } else {
        Err(errs)
    }
}

/// Judges the halt conditions on the appended events of `live` from `start_ns` on; returns
/// (after halting the injector and writing the `halt` event) when one fails, and never
/// otherwise (the caller drops it when the run ends).
pub async fn watch(
    monitors: Vec<HaltMonitor>,
    mut live: mpsc::UnboundedReceiver<Event>,
    injector: Option<SharedInjector>,
    sink: EventSink,
    start_ns: i64,
    cool_down: Duration,
) -> Halted {
    let mut judges: Vec<(String, LiveStep)> = monitors
        .into_iter()
        .map(|m| {
            let mut s = LiveStep::new(&m.step);
            s.start(start_ns);
            (m.text, s)
        })
        .collect();
    let mut backlog: Vec<Event> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut open = true;
    let failed = loop {
        tokio::select! {
            ev = live.recv(), if open => match ev {
                Some(ev) => if ev.ts_ns >= start_ns { backlog.push(ev) },
                None => open = false,
            },
            _ = tick.tick() => {
                while let Ok(ev) = live.try_recv() {
                    if ev.ts_ns >= start_ns {
                        backlog.push(ev);
                    }
                }
                let horizon = now_ns() - LAG_NS;
                backlog.sort_by_key(|e| (e.ts_ns, e.seq));
                let taken = backlog.partition_point(|e| e.ts_ns <= horizon);
                let mut failed = None;
                'events: for ev in backlog.drain(..taken) {
                    let r = ev.as_ref();
                    for (i, (_, j)) in judges.iter_mut().enumerate() {
                        if j.verdict().is_none() {
                            j.observe(&r);
                            if j.verdict() == Some(Verdict::Fail) {
                                failed = Some(i);
                                break 'events;
                            }
                        }
                    }
                }
                if failed.is_none() {
                    for (i, (_, j)) in judges.iter_mut().enumerate() {
                        if j.verdict().is_none() {
                            j.advance_to(horizon);
                            if j.verdict() == Some(Verdict::Fail) {
                                failed = Some(i);
                                break;
                            }
                        }
                    }
                }
                if let Some(i) = failed {
                    break i;
                }
            }
        }
    };
    let (monitor, judge) = &mut judges[failed];
    let (deciding_ts_ns, deciding_seq) = judge.decided_at().unwrap_or((now_ns() - LAG_NS, None));
    let decided_wall_ns = now_ns();
    // revert first: everything else waits
    let reverted: Vec<String> = match &injector {
        Some(inj) => inj
            .lock()
            .await
            .halt()
            .await
            .into_iter()
            .map(|f| f.to_string())
            .collect(),
        None => Vec::new(),
    };
    let reverted_ns = now_ns();
    let result = judge.finish(deciding_ts_ns);
    let explanation = result
        .primary_explanation()
        .map(|e| e.reason.clone())
        .unwrap_or_else(|| result.verdict.as_str().to_string());
    let latency_ns = reverted_ns - deciding_ts_ns;
    let ms = |ns: i64| ns as f64 / 1e6;
    sink.emit(
        kinds::recorder::HALT
            .at(reverted_ns)
            .message(format!(
                "halted: `{monitor}` failed: {explanation}; {} fault(s) reverted {:.1} ms after the deciding event",
                reverted.len(),
                ms(latency_ns)
            ))
            .data(&serde_json::json!({
                "monitor": monitor,
                "explanation": explanation,
                "deciding_ts_ns": deciding_ts_ns,
                "deciding_seq": deciding_seq,
                "decided_ns": decided_wall_ns,
                "reverted_ns": reverted_ns,
                "reverted": reverted,
                "latency_ms": ms(latency_ns),
                "revert_ms": ms(reverted_ns - decided_wall_ns),
                "cool_down_ms": cool_down.as_millis() as u64,
            })),
    );
    Halted {
        monitor: monitor.clone(),
        explanation,
        deciding_ts_ns,
        deciding_seq,
        latency_ns,
        reverted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::LoadedScenario;

    #[test]
    fn conditions_compile_and_a_bad_one_is_reported_at_its_place_in_the_scenario() {
        let d = tempfile::tempdir().expect("tempdir");
        std::fs::write(d.path().join("compose.yml"), "services: {}\n").expect("write");
        std::fs::write(
            d.path().join("h.spec"),
            "monitor notPaused(svc: str) {\n  state up {\n    on docker \"pause\" from svc => fail \"paused\"\n  }\n}\n",
        )
        .expect("write");
        let p = d.path().join("s.toml");
        let text = "[compose]\nfiles = [\"compose.yml\"]\n[halt]\nspecs = [\"h.spec\"]\nmonitors = [\"notPaused(b)\", \"nosuch\"]\n";
        let l = LoadedScenario::parse(&p, text).expect("parses");
        let plan = l.resolve().expect("resolves").halt.expect("halt");
        let errs = match compile(&plan, &p, text) {
            Ok(_) => panic!("an unknown monitor compiled"),
            Err(e) => e,
        };
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with(&format!(
                "error: {}:5:29: [halt] monitor `nosuch`: unknown monitor `nosuch`",
                p.display()
            )),
            "{errs:?}"
        );
        // fixed, both compile; the first fails on b's pause, not on a's
        let text = text.replace(", \"nosuch\"", "");
        let plan = LoadedScenario::parse(&p, &text)
            .expect("parses")
            .resolve()
            .expect("resolves")
            .halt
            .expect("halt");
        let m = match compile(&plan, &p, &text) {
            Ok(m) => m,
            Err(e) => panic!("{e:?}"),
        };
        assert_eq!(m.len(), 1);
        let mut step = LiveStep::new(&m[0].step);
        step.start(0);
        let pause = |svc: &str, ts: i64| Event::new(ts, "docker", "pause").service(svc.to_string());
        step.observe(&pause("a", 10).as_ref());
        assert_eq!(step.verdict(), None);
        step.observe(&pause("b", 20).as_ref());
        assert_eq!(step.verdict(), Some(Verdict::Fail));
        assert_eq!(step.decided_at().map(|d| d.0), Some(20));
    }
}
