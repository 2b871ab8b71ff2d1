//! Running an experiment live: steps in order; `note` writes a note event, `do` asks the fault
//! injector (which writes the fault events) and schedules the revert after `for D`, `expect` runs
//! the step's monitors on the incoming events and the next step starts when they accept; a fail
//! or the `within` timeout ends the experiment. Every step is bracketed by `recorder`/`step`
//! events (phase start/end; the end carries the step's verdict: an `expect`'s verdict, `accept`
//! for a note and for an applied fault, `inconclusive` for a fault that could not be applied).
//!
//! Step windows follow the offline judge (`monitor::ExperimentJudge`, what `analyzer check
//! --experiment` runs) so that both reach the same verdicts on the same events: an `expect` is
//! judged on the events from the end of the previous step, which is the end of the fault's apply
//! after a `do` (the fault event's `data.ended_ns`: a `restart` is done when the container has
//! stopped and started again, not when the engine was asked), the deciding event's timestamp (or
//! the expired deadline) after an `expect`, and unchanged by a `note`. A `do X for D` is done
//! when X is applied; its revert runs in the background.
//!
//! An `expect ... as NAME` step binds the value its monitor accepted with (recorded in the step's
//! end event as `data.binding`); a later step that uses `NAME` is resolved with the bound values
//! when it starts, by [`resolve_step`] (the one place a bound target becomes services), and a
//! step that cannot be resolved ends the experiment inconclusive.
//!
//! The monitor crate provides compilation and the live judge; this module converts its steps into
//! [`ExpStep`]s and drives them. The live judge is behind the [`LiveJudge`] trait so the executor
//! does not depend on the engine's internals.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use monitor::Verdict;
use tokio::sync::mpsc;
use trace::{kinds, Event};

use crate::compose::ProjectState;
use crate::faults::FaultRequest;
use crate::plan::{PlanContext, PlanResult};
use crate::scenario::Target;
use crate::sink::now_ns;

/// A live judge of one `expect` step.
pub trait LiveJudge: Send {
    /// Feeds one appended event (with its seq).
    fn observe(&mut self, ev: &Event);
    /// Advances the judge's clock (timeouts fire).
    fn advance_to(&mut self, ts_ns: i64);
    /// `Some(Accept | Fail)` once decided.
    fn verdict(&self) -> Option<Verdict>;
    /// The trace time of the decision (the deciding event's timestamp, or the expired
    /// timeout's deadline), once decided.
    fn decided_ns(&self) -> Option<i64>;
    /// How long after the step's `within` the judge may still be waiting for events stamped
    /// before the deadline (the pipeline lag it allows for).
    fn lag(&self) -> Duration {
        Duration::ZERO
    }
    /// A one-line explanation of the verdict (ends the judge).
    fn explain(&mut self) -> String;
    /// The value the step's monitor accepted with (`accept ... with V`), as JSON.
    fn bound(&self) -> Option<serde_json::Value> {
        None
    }
}

/// Makes a fresh judge when the step starts; the argument is the start of the step's window (the
/// end of the previous step, UTC ns).
pub type JudgeFactory = Arc<dyn Fn(i64) -> Box<dyn LiveJudge> + Send + Sync>;

/// One experiment step, ready to run.
#[derive(Clone)]
pub enum ExpStep {
    Expect {
        text: String,
        within: Option<Duration>,
        judge: JudgeFactory,
        /// `as NAME`: the binding this step sets.
        binds: Option<String>,
    },
    Do {
        text: String,
        /// Where the step is written (`file:line:col`; empty when unknown).
        at: String,
        action: String,
        args: Vec<(String, serde_json::Value)>,
        target: Target,
        duration: Option<Duration>,
    },
    Note(String),
}

impl ExpStep {
    fn kind(&self) -> &'static str {
        match self {
            ExpStep::Expect { .. } => "expect",
            ExpStep::Do { .. } => "do",
            ExpStep::Note(_) => "note",
        }
    }
    fn text(&self) -> String {
        match self {
            ExpStep::Expect { text, .. } | ExpStep::Do { text, .. } => text.clone(),
            ExpStep::Note(n) => format!("note {n:?}"),
        }
    }
}

/// A compiled experiment.
#[derive(Clone)]
pub struct Compiled {
    pub name: String,
    /// The steps; one that uses a binding holds a placeholder until [`resolve_step`].
    pub steps: Vec<ExpStep>,
    /// The experiment as the monitor crate compiled it (resolves the steps using bindings).
    pub exp: Option<Arc<monitor::Experiment>>,
}

impl Compiled {
    /// Does step `i` use a binding (and so is resolved when it starts)?
    pub fn uses_bindings(&self, i: usize) -> bool {
        self.exp.as_ref().is_some_and(|e| e.uses_bindings(i))
    }
}

/// Why a step that uses bindings cannot run with the values bound so far.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// There is no step `i` (counted from 1).
    #[error("no step {0}")]
    NoStep(usize),
    /// The monitor crate could not resolve the step with the bound values.
    #[error("{}", .0.join("; "))]
    Unresolved(Vec<String>),
    /// The resolved `do` step is not a valid fault for the project.
    #[error("{0}")]
    Fault(String),
}

/// Step `i` of `c` ready to run with the values bound so far: a step that uses no binding as
/// compiled; one that does recompiled with the bound values, and a `do` checked as at compile
/// time against the project's `services` (a bound service that the project does not have is
/// an error). This is the one place a target taken from a binding becomes services; the fault
/// injector then checks the services it resolves against the scenario's `[scope]` when it
/// applies the fault, as for every target.
pub fn resolve_step(
    c: &Compiled,
    i: usize,
    bindings: &monitor::Bindings,
    services: &[String],
) -> Result<ExpStep, StepError> {
    let Some(step) = c.steps.get(i) else {
        return Err(StepError::NoStep(i + 1));
    };
    let Some(exp) = c.exp.as_ref().filter(|e| e.uses_bindings(i)) else {
        return Ok(step.clone());
    };
    let resolved = exp.resolve(i, bindings).map_err(StepError::Unresolved)?;
    let s = live::convert(&resolved);
    if let ExpStep::Do {
        action,
        args,
        target,
        duration,
        ..
    } = &s
    {
        let req = FaultRequest {
            action: action.clone(),
            args: args.clone(),
            target: target.clone(),
            duration: *duration,
            experiment: Some(c.name.clone()),
            step: Some(i),
            intended_ns: 0,
        };
        crate::faults::validate(&req, services).map_err(|e| StepError::Fault(e.to_string()))?;
    }
    Ok(s)
}

/// Compiles the experiment `name` from the spec files and checks every `do` step against the
/// compose services (`None`: not known, not checked) and the fault injector's validator. Every
/// error is returned, rendered as a diagnostic (`error: FILE:LINE:COL: message`, then the
/// source excerpt).
pub fn compile(
    specs: &[PathBuf],
    name: &str,
    services: Option<&[String]>,
    networks: Option<&[String]>,
) -> Result<Compiled, Vec<String>> {
    let c = live::compile(specs, name)?;
    let mut errs = Vec::new();
    for (i, s) in c.steps.iter().enumerate() {
        // people count steps from 1, as `analyzer check` prints them; the trace keeps `i`
        let n = i + 1;
        if c.uses_bindings(i) {
            // its target is known when the step starts (checked then, by `resolve_step`)
            continue;
        }
        if let ExpStep::Do {
            text,
            at,
            action,
            args,
            target,
            duration,
        } = s
        {
            let req = FaultRequest {
                action: action.clone(),
                args: args.clone(),
                target: target.clone(),
                duration: *duration,
                experiment: Some(name.to_string()),
                step: Some(i),
                intended_ns: 0,
            };
            // services unknown: the target's own names pass, the rest is still checked
            let named: Vec<String>;
            let services = match services {
                Some(s) => s,
                None => {
                    named = crate::faults::spec::target_services(target)
                        .into_iter()
                        .map(str::to_string)
                        .collect();
                    &named
                }
            };
            if let Err(e) = crate::faults::validate(&req, services) {
                errs.push(diagnostic_at(
                    at,
                    text,
                    &format!("experiment {name}, step {n} `{text}`: {e}"),
                ));
            }
            if let Some(networks) = networks {
                for e in step_network_errors(&req, networks) {
                    errs.push(diagnostic_at(
                        at,
                        text,
                        &format!("experiment {name}, step {n} `{text}`: {e}"),
                    ));
                }
            }
        }
    }
    if errs.is_empty() {
        Ok(c)
    } else {
        Err(errs)
    }
}

/// `message` as a diagnostic at `at` (`file:line:col` of a step written as `text`; empty when
/// unknown): `error: FILE:LINE:COL: message` and the source line, read from the file, with
/// the step marked (the format of `monitor::Diagnostic`).
pub(crate) fn diagnostic_at(at: &str, text: &str, message: &str) -> String {
    let mut parts = at.rsplitn(3, ':');
    let (col, line, file) = (parts.next(), parts.next(), parts.next());
    let (Some(col), Some(line), Some(file)) = (
        col.and_then(|c| c.parse::<usize>().ok()),
        line.and_then(|l| l.parse::<usize>().ok()),
        file,
    ) else {
        return if at.is_empty() {
            format!("error: {message}")
        } else {
            format!("error: {at}: {message}")
        };
    };
    let source_line = std::fs::read_to_string(file)
        .ok()
        .and_then(|t| t.lines().nth(line.saturating_sub(1)).map(str::to_string))
        .unwrap_or_default();
    let avail = source_line
        .chars()
        .count()
        .saturating_sub(col.saturating_sub(1));
    monitor::Diagnostic {
        message: message.to_string(),
        file: file.to_string(),
        line,
        column: col,
        width: text.chars().count().clamp(1, avail.max(1)),
        source_line,
        hint: None,
    }
    .to_string()
}

/// What is wrong with the network names of a `do` step (`on network NAME`, and the `network`
/// argument of `disconnect`/`connect`) given the compose project's `networks`.
pub fn step_network_errors(req: &FaultRequest, networks: &[String]) -> Vec<String> {
    let mut names: Vec<(&str, &str)> = Vec::new();
    if let Target::Network(n) = &req.target {
        names.push(("target", n));
    }
    for (k, v) in &req.args {
        if let (true, Some(n)) = (k == "network", v.as_str()) {
            names.push(("argument network", n));
        }
    }
    names
        .into_iter()
        .filter_map(|(what, n)| {
            crate::scenario::check_network_name(n, networks)
                .err()
                .map(|m| format!("fault `{}` {what}: {m}", req.action))
        })
        .collect()
}

fn step_event(
    exp: &str,
    index: usize,
    s: &ExpStep,
    phase: &str,
    verdict: Option<Verdict>,
    message: Option<String>,
) -> Event {
    step_event_with(exp, index, s, phase, verdict, message, None)
}

/// [`step_event`] with `extra` keys merged into its data (`binding` of an `expect ... as NAME`
/// at its end, `bindings` used by a step at its start).
fn step_event_with(
    exp: &str,
    index: usize,
    s: &ExpStep,
    phase: &str,
    verdict: Option<Verdict>,
    message: Option<String>,
    extra: Option<serde_json::Map<String, serde_json::Value>>,
) -> Event {
    let mut data = serde_json::json!({
        "experiment": exp,
        "step": index,
        "step_kind": s.kind(),
        "phase": phase,
        "verdict": verdict.map(Verdict::as_str),
        "text": s.text(),
    });
    if let (Some(d), Some(extra)) = (data.as_object_mut(), extra) {
        d.extend(extra);
    }
    let mut ev = kinds::recorder::STEP
        .at(now_ns())
        // people count steps from 1, as every other message does; `data.step` keeps the index
        .message(message.unwrap_or_else(|| format!("{phase} step {}: {}", index + 1, s.text())))
        .data(&data);
    ev.service = None;
    ev
}

/// How a step ended, for the executor: go on with the next step, or end the experiment with
/// this verdict (and, for a step that could not run, the run's error message).
enum StepEnd {
    Next,
    Stop(Verdict, Option<String>),
}

/// The state of an experiment being run.
struct Executor<'a> {
    ctx: &'a PlanContext,
    c: &'a Compiled,
    name: &'a str,
    live: Option<mpsc::UnboundedReceiver<Event>>,
    /// The project's services (sorted), for checking steps resolved from bindings.
    services: Vec<String>,
    /// The values the steps use.
    bindings: monitor::Bindings,
    /// The values this run's monitors accepted with: the same as `bindings` but in a replay,
    /// which uses the recorded run's values.
    live_bindings: monitor::Bindings,
    /// One line per judged step.
    verdicts: Vec<String>,
    /// The revert timers of `do X for D` steps.
    reverts: Vec<tokio::task::JoinHandle<()>>,
    /// Where the current step's window starts (UTC ns): the end of the previous step.
    window_start_ns: i64,
    /// Appended events received but not yet judged (they belong to a later step).
    backlog: Vec<Event>,
}

/// Runs the experiment; returns the combined verdict and one line per step.
pub async fn run(
    ctx: &PlanContext,
    c: Compiled,
    name: &str,
    live: Option<mpsc::UnboundedReceiver<Event>>,
    state: &ProjectState,
) -> PlanResult {
    let mut services: Vec<String> = state.containers.iter().map(|c| c.service.clone()).collect();
    services.sort();
    services.dedup();
    let mut x = Executor {
        ctx,
        c: &c,
        name,
        live,
        services,
        bindings: monitor::Bindings::new(),
        live_bindings: monitor::Bindings::new(),
        verdicts: Vec::new(),
        reverts: Vec::new(),
        window_start_ns: now_ns(),
        backlog: Vec::new(),
    };
    let mut overall = Verdict::Accept;
    let mut error = None;
    for i in 0..c.steps.len() {
        if let StepEnd::Stop(v, e) = x.step(i).await {
            overall = v;
            error = e;
            break;
        }
    }
    // a fault with `for D` is reverted on time even at the end of the experiment
    if overall == Verdict::Accept {
        for r in x.reverts.drain(..) {
            let _ = r.await;
        }
    }
    PlanResult {
        verdict: Some(overall),
        verdicts: x.verdicts,
        error,
    }
}

impl Executor<'_> {
    /// Runs step `i`: its start event, the step resolved with the bindings, the step itself.
    async fn step(&mut self, i: usize) -> StepEnd {
        let (c, name) = (self.c, self.name);
        // people count steps from 1, as `analyzer check` prints them; the trace keeps `i`
        let n = i + 1;
        let step = &c.steps[i];
        self.ctx
            .progress
            .set(format!("step {n}/{}: {}", c.steps.len(), step.text()));
        // the step with the values bound so far; in a replay a recorded value this run cannot
        // use ends the experiment, or with `--force` gives way to the live one (with a warning)
        let mut resolved =
            resolve_step(c, i, &self.bindings, &self.services).map_err(|e| e.to_string());
        if let (Err(e), Some(r)) = (&resolved, self.ctx.replay.clone()) {
            let e = e.clone();
            resolved = self.replay_fallback(i, step, &r, e);
        }
        // the bindings the step uses, recorded in its start event
        let used = c.uses_bindings(i).then(|| {
            let uses = c
                .exp
                .as_ref()
                .map(|e| e.uses[i].clone())
                .unwrap_or_default();
            let mut m = serde_json::Map::new();
            let b: serde_json::Map<String, serde_json::Value> = uses
                .iter()
                .filter_map(|u| self.bindings.get(u).map(|v| (u.clone(), v.to_json())))
                .collect();
            m.insert("bindings".into(), serde_json::Value::Object(b));
            m
        });
        let start = step_event_with(name, i, step, "start", None, None, used);
        if i == 0 {
            // the experiment's first window opens with its first step event
            self.window_start_ns = start.ts_ns;
        }
        self.ctx.sink.emit(start);
        let resolved = match resolved {
            Ok(s) => s,
            Err(e) => {
                let m = format!(
                    "step {n} `{}`: cannot use the bound values: {e}",
                    step.text()
                );
                let line = format!("step {n} {}: error: {e}", step.text());
                return self.cannot_run(i, step, m, line);
            }
        };
        match &resolved {
            ExpStep::Note(text) => {
                self.ctx
                    .sink
                    .emit(kinds::note::NOTE.at(now_ns()).message(text.clone()).data(
                        &serde_json::json!({
                            "experiment": name, "step": i
                        }),
                    ));
                // a note does not move the window (offline it is satisfied at once)
                self.ctx.sink.emit(step_event(
                    name,
                    i,
                    &resolved,
                    "end",
                    Some(Verdict::Accept),
                    None,
                ));
                StepEnd::Next
            }
            ExpStep::Do { .. } => self.do_step(i, &resolved).await,
            ExpStep::Expect { .. } => self.expect_step(i, &resolved).await,
        }
    }

    /// In a replay, step `i` could not be resolved (`e`) with the recorded run's bindings: where a
    /// recorded value differs from the one this run's monitor accepted with, `--force` uses the
    /// live value (a `recorder`/`replay_warning` event says so) and resolves the step again;
    /// without `--force` the error names the recorded value. Otherwise `e` stands.
    fn replay_fallback(
        &mut self,
        i: usize,
        step: &ExpStep,
        r: &crate::replay::Recorded,
        e: String,
    ) -> Result<ExpStep, String> {
        let c = self.c;
        let n = i + 1;
        type Swap = (String, serde_json::Value, serde_json::Value);
        let swapped: Vec<Swap> = c
            .exp
            .as_ref()
            .map(|x| x.uses[i].clone())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|u| {
                let used = self.bindings.get(&u)?.to_json();
                let live = self.live_bindings.get(&u)?.to_json();
                (used != live).then_some((u, used, live))
            })
            .collect();
        if swapped.is_empty() {
            return Err(e);
        }
        let list = |k: fn(&Swap) -> String| swapped.iter().map(k).collect::<Vec<_>>().join(", ");
        let recorded = list(|(u, v, _)| format!("{u} = {v}"));
        let live = list(|(u, _, l)| format!("{u} = {l}"));
        if !r.force {
            return Err(format!(
                "replay: the binding recorded in {} ({recorded}) cannot be used in this run: {e} (--force uses the live value, {live})",
                r.dir.display()
            ));
        }
        let m = format!(
            "replay: step {n} `{}` cannot use the binding recorded in {} ({recorded}): {e}; the live value is used instead ({live}, --force)",
            step.text(),
            r.dir.display()
        );
        self.ctx.sink.emit(
            kinds::recorder::REPLAY_WARNING
                .at(now_ns())
                .message(m)
                .data(&serde_json::json!({
                    "experiment": self.name,
                    "step": i,
                    "recorded": swapped.iter().map(|(u, v, _)| (u.clone(), v.clone())).collect::<serde_json::Map<_, _>>(),
                    "live": swapped.iter().map(|(u, _, l)| (u.clone(), l.clone())).collect::<serde_json::Map<_, _>>(),
                    "error": e,
                })),
        );
        for (u, _, _) in &swapped {
            if let Some(v) = self.live_bindings.get(u) {
                self.bindings.insert(u.clone(), v.clone());
            }
        }
        resolve_step(c, i, &self.bindings, &self.services).map_err(|e| e.to_string())
    }

    /// Ends the experiment inconclusive at step `i`, which could not run: `m` is its end
    /// message and the run's error, `line` its verdict line.
    fn cannot_run(&mut self, i: usize, step: &ExpStep, m: String, line: String) -> StepEnd {
        self.ctx.sink.emit(step_event(
            self.name,
            i,
            step,
            "end",
            Some(Verdict::Inconclusive),
            Some(m.clone()),
        ));
        self.verdicts.push(line);
        StepEnd::Stop(Verdict::Inconclusive, Some(m))
    }

    /// A `do` step: the fault applied (its revert scheduled after `for D`); the step is done
    /// when the fault is.
    async fn do_step(&mut self, i: usize, step: &ExpStep) -> StepEnd {
        let ExpStep::Do {
            action,
            args,
            target,
            duration,
            ..
        } = step
        else {
            return StepEnd::Next;
        };
        let n = i + 1;
        let Some(inj) = self.ctx.injector.clone() else {
            let m = format!(
                "fault injector unavailable: {}",
                self.ctx.injector_error.clone().unwrap_or_default()
            );
            let line = format!("step {n} {}: error: {m}", step.text());
            return self.cannot_run(i, step, m, line);
        };
        let req = FaultRequest {
            action: action.clone(),
            args: args.clone(),
            target: target.clone(),
            duration: *duration,
            experiment: Some(self.name.to_string()),
            step: Some(i),
            intended_ns: now_ns(),
        };
        let (applied, ended_ns) = {
            let mut g = inj.lock().await;
            let r = g.apply(&req).await;
            (r, g.last_ended_ns())
        };
        // the step is done when the fault is: the next expect is judged from the apply's end
        // (the fault event's `data.ended_ns`), as offline
        self.window_start_ns = ended_ns.unwrap_or_else(now_ns);
        match applied {
            Ok(id) => {
                if let Some(d) = *duration {
                    let inj2 = inj.clone();
                    self.reverts.push(tokio::spawn(async move {
                        tokio::time::sleep(d).await;
                        inj2.lock().await.revert(id).await;
                    }));
                }
                self.ctx.sink.emit(step_event(
                    self.name,
                    i,
                    step,
                    "end",
                    Some(Verdict::Accept),
                    None,
                ));
                StepEnd::Next
            }
            Err(e) => {
                let m = format!("step {n} `{}`: {e}", step.text());
                let line = format!("step {n} {}: error: {e}", step.text());
                self.cannot_run(i, step, m, line)
            }
        }
    }

    /// An `expect` step: its monitors judged on the events of its window until they decide or
    /// `within` expires; `as NAME` binds the value it accepted with.
    async fn expect_step(&mut self, i: usize, step: &ExpStep) -> StepEnd {
        let ExpStep::Expect {
            within,
            judge,
            binds,
            ..
        } = step
        else {
            return StepEnd::Next;
        };
        let n = i + 1;
        let mut j = judge(self.window_start_ns);
        let (verdict, deadline) = self.judge(&mut j, *within).await;
        // the next step's window starts where this one was decided, as offline
        self.window_start_ns = j.decided_ns().unwrap_or_else(now_ns);
        let bound = j.bound();
        let explain = j.explain();
        let timed_out =
            deadline.is_some_and(|d| tokio::time::Instant::now() >= d) && verdict == Verdict::Fail;
        let mut m = if timed_out {
            format!(
                "step {n} `{}`: fail (within {:?} expired): {explain}",
                step.text(),
                within.unwrap_or_default()
            )
        } else {
            format!("step {n} `{}`: {verdict}: {explain}", step.text())
        };
        // `expect ... as NAME`: the value it accepted with is bound (and recorded)
        let mut verdict = verdict;
        let mut extra = None;
        if let (Some(b), Verdict::Accept) = (binds, verdict) {
            match bound.as_ref() {
                Some(v) => {
                    self.live_bindings
                        .insert(b.clone(), monitor::Value::from_json(v));
                    let mut binding = serde_json::json!({ "name": b, "value": v });
                    // a replay binds the value the recorded run bound at this step
                    let recorded = self
                        .ctx
                        .replay
                        .as_ref()
                        .and_then(|r| r.bindings.get(&(self.name.to_string(), i)).map(|x| (r, x)))
                        .filter(|(_, x)| &x.name == b);
                    let used = match recorded {
                        Some((r, x)) => {
                            binding["value"] = x.value.clone();
                            binding["replayed_seq"] = x.seq.into();
                            if &x.value == v {
                                m = format!("{m} (bound {b} = {v}, as in the recorded run)");
                            } else {
                                binding["live"] = v.clone();
                                m = format!(
                                    "{m} (bound {b} = {}, the value the recorded run bound ({}, seq {}); this run's monitor accepted with {v})",
                                    x.value,
                                    r.dir.display(),
                                    x.seq
                                );
                            }
                            x.value.clone()
                        }
                        None => {
                            m = format!("{m} (bound {b} = {v})");
                            v.clone()
                        }
                    };
                    self.bindings
                        .insert(b.clone(), monitor::Value::from_json(&used));
                    let mut x = serde_json::Map::new();
                    x.insert("binding".into(), binding);
                    extra = Some(x);
                }
                None => {
                    verdict = Verdict::Inconclusive;
                    m = format!(
                        "step {n} `{}`: accepted without a value for `{b}` (no `accept ... with VALUE` decided it)",
                        step.text()
                    );
                }
            }
        }
        self.ctx.sink.emit(step_event_with(
            self.name,
            i,
            step,
            "end",
            Some(verdict),
            Some(m.clone()),
            extra,
        ));
        self.verdicts.push(m);
        if verdict == Verdict::Accept {
            StepEnd::Next
        } else {
            StepEnd::Stop(verdict, None)
        }
    }

    /// Feeds the appended events of the window to `j` until it decides or the wall-clock bound
    /// of `within` passes; returns the verdict (`fail` when nothing decided in time) and that
    /// bound.
    async fn judge(
        &mut self,
        j: &mut Box<dyn LiveJudge>,
        within: Option<Duration>,
    ) -> (Verdict, Option<tokio::time::Instant>) {
        let window_start_ns = self.window_start_ns;
        let (live, backlog) = (&mut self.live, &mut self.backlog);
        let started = tokio::time::Instant::now();
        // The judge decides `within` in trace time from the window start; the wall clock only
        // bounds the wait, a little past it so that events stamped before the deadline but
        // still in the pipeline are seen (as they are offline).
        let deadline = within.map(|w| {
            let behind = Duration::from_nanos(
                u64::try_from(now_ns().saturating_sub(window_start_ns)).unwrap_or(0),
            );
            started + w.saturating_sub(behind) + j.lag() + Duration::from_millis(50)
        });
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The step's window starts where the previous step ended (as offline): events queued
        // from before that belong to earlier steps. The rest are judged in trace order,
        // (ts, seq), like offline: events arrive in the order the sensors delivered them (log
        // streams, docker events and probes interleave loosely), so they wait in `backlog`
        // until the judge's clock (the wall clock minus its lag) has passed their timestamp,
        // and are then fed sorted, up to the deciding one; what follows it is the next step's.
        let lag_ns = i64::try_from(j.lag().as_nanos()).unwrap_or(0);
        backlog.retain(|e| e.ts_ns >= window_start_ns);
        let release = |j: &mut Box<dyn LiveJudge>, backlog: &mut Vec<Event>, horizon: i64| {
            backlog.sort_by_key(|e| (e.ts_ns, e.seq));
            let mut taken = 0;
            for ev in backlog.iter() {
                if ev.ts_ns > horizon || j.verdict().is_some() {
                    break;
                }
                j.observe(ev);
                taken += 1;
            }
            backlog.drain(..taken);
        };
        let verdict = loop {
            let ev = async {
                match live.as_mut() {
                    Some(l) => l.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                ev = ev => match ev {
                    Some(ev) => {
                        if ev.ts_ns >= window_start_ns {
                            backlog.push(ev);
                        }
                    }
                    None => *live = None,
                },
                // release, advance and look at the verdict on a short tick (the first one fires
                // at once)
                _ = tick.tick() => {
                    drain(live, backlog, window_start_ns);
                    let now = now_ns();
                    release(j, backlog, now - lag_ns);
                    if j.verdict().is_none() {
                        j.advance_to(now);
                    }
                    if let Some(v) = j.verdict() {
                        break v;
                    }
                }
                _ = async {
                    match deadline {
                        Some(d) => tokio::time::sleep_until(d).await,
                        None => std::future::pending().await,
                    }
                } => {
                    drain(live, backlog, window_start_ns);
                    let now = now_ns();
                    release(j, backlog, now - lag_ns);
                    if j.verdict().is_none() {
                        j.advance_to(now);
                    }
                    break j.verdict().unwrap_or(Verdict::Fail);
                }
            }
        };
        (verdict, deadline)
    }
}

/// Moves every event already queued on `live` into `backlog` (those of the current window).
fn drain(
    live: &mut Option<mpsc::UnboundedReceiver<Event>>,
    backlog: &mut Vec<Event>,
    window_start_ns: i64,
) {
    if let Some(l) = live.as_mut() {
        while let Ok(ev) = l.try_recv() {
            if ev.ts_ns >= window_start_ns {
                backlog.push(ev);
            }
        }
    }
}

/// The monitor-crate side: compiling spec files and the live judge.
mod live {
    use super::*;
    use monitor::{Literal, LiveStep, SourceFile, Step};

    /// How far behind the wall clock the judge's time runs, so events still in the pipeline
    /// (daemon timestamps are slightly older than their arrival) are not overtaken by timeouts.
    const LAG_NS: i64 = 250_000_000;

    struct Judge {
        step: LiveStep,
    }

    impl LiveJudge for Judge {
        fn observe(&mut self, ev: &Event) {
            self.step.observe(&ev.as_ref());
        }
        fn advance_to(&mut self, ts_ns: i64) {
            self.step.advance_to(ts_ns - LAG_NS);
        }
        fn decided_ns(&self) -> Option<i64> {
            self.step.decided_at().map(|d| d.0)
        }
        fn lag(&self) -> Duration {
            Duration::from_nanos(LAG_NS as u64)
        }
        fn verdict(&self) -> Option<Verdict> {
            self.step.verdict().filter(|v| *v != Verdict::Inconclusive)
        }
        fn bound(&self) -> Option<serde_json::Value> {
            self.step.value().map(|v| v.to_json())
        }
        fn explain(&mut self) -> String {
            let at = self
                .step
                .decided_at()
                .map(|d| d.0)
                .unwrap_or_else(|| now_ns() - LAG_NS);
            let r = self.step.finish(at);
            r.primary_explanation()
                .map(|e| e.reason.clone())
                .unwrap_or_else(|| r.verdict.as_str().to_string())
        }
    }

    fn literal(l: &Literal) -> serde_json::Value {
        match l {
            Literal::Null => serde_json::Value::Null,
            Literal::Bool(b) => (*b).into(),
            Literal::Int(i) => (*i).into(),
            Literal::Float(f) => serde_json::json!(f),
            Literal::Str(s) => s.clone().into(),
            Literal::Duration(d) => format!("{}ms", d.as_millis()).into(),
            Literal::List(v) => v.iter().map(literal).collect::<Vec<_>>().into(),
        }
    }

    /// Compiles the experiment with the monitor crate (imports resolved relative to the
    /// importing file).
    pub fn compile(specs: &[PathBuf], name: &str) -> Result<Compiled, Vec<String>> {
        let mut files = Vec::new();
        let mut errs = Vec::new();
        for p in specs {
            match std::fs::read_to_string(p) {
                Ok(t) => files.push(SourceFile::new(p.display().to_string(), t)),
                Err(e) => errs.push(format!("error: {}: cannot read spec: {e}", p.display())),
            }
        }
        if !errs.is_empty() {
            return Err(errs);
        }
        let resolver = |import: &str, from: &str| -> Option<SourceFile> {
            let base = std::path::Path::new(from)
                .parent()
                .unwrap_or(std::path::Path::new("."));
            let p = base.join(import);
            std::fs::read_to_string(&p)
                .ok()
                .map(|t| SourceFile::new(p.display().to_string(), t))
        };
        let spec = monitor::compile(&files, &resolver).map_err(|d| d.rendered())?;
        let Some(exp) = spec.experiment(name) else {
            let known: Vec<&str> = spec.experiments.iter().map(|e| e.name.as_str()).collect();
            return Err(vec![format!(
                "error: no experiment `{name}` in {} (experiments: {})",
                specs
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )]);
        };
        let steps = exp.steps.iter().map(convert).collect();
        Ok(Compiled {
            name: name.to_string(),
            steps,
            exp: Some(Arc::new(exp.clone())),
        })
    }

    /// One step of the monitor crate's experiment as the executor runs it.
    pub fn convert(s: &Step) -> ExpStep {
        match s {
            Step::Note(n) => ExpStep::Note(n.clone()),
            Step::Do(f) => ExpStep::Do {
                text: f.text.clone(),
                at: match (&f.span.file, f.span.line) {
                    (file, 0) => file.clone(),
                    (file, line) => format!("{file}:{line}:{}", f.span.column),
                },
                action: f.action.clone(),
                args: f
                    .args
                    .iter()
                    .map(|(k, v)| (k.clone(), literal(v)))
                    .collect(),
                target: f.target.clone(),
                duration: f.duration,
            },
            Step::Expect(e) => {
                let (text, within, binds) = (e.text.clone(), e.within, e.binds.clone());
                let e = Arc::new(e.clone());
                let judge: JudgeFactory = Arc::new(move |start_ns| {
                    let mut step = LiveStep::new(&e);
                    step.start(start_ns);
                    Box::new(Judge { step }) as Box<dyn LiveJudge>
                });
                ExpStep::Expect {
                    text,
                    within,
                    judge,
                    binds,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_names_of_do_steps_are_checked_with_their_location() {
        let d = tempfile::tempdir().expect("tempdir");
        let spec = d.path().join("x.spec");
        std::fs::write(
            &spec,
            "experiment E {\n  do loss(percent: 30) on network middle for 1s\n  note \"n\"\n  do disconnect(network: \"outer\") on a\n  do partition on network mid\n}\n",
        )
        .expect("write");
        let services = vec!["a".to_string()];
        let networks: Vec<String> = vec!["default".into(), "middle".into()];
        let e = match compile(
            std::slice::from_ref(&spec),
            "E",
            Some(&services),
            Some(&networks),
        ) {
            Ok(_) => panic!("unknown networks accepted"),
            Err(e) => e,
        };
        assert_eq!(e.len(), 2, "{e:?}");
        let at = |line: usize| format!("error: {}:{line}:", spec.display());
        assert!(e[0].starts_with(&at(4)), "{e:?}");
        assert!(
            e[0].contains("step 3 `do disconnect(network: \"outer\") on a`")
                && e[0].contains("argument network: no network `outer`"),
            "{e:?}"
        );
        assert!(e[1].starts_with(&at(5)), "{e:?}");
        assert!(
            e[1].contains("fault `partition` target: no network `mid` in the compose configuration (networks: default, middle)"),
            "{e:?}"
        );
        // every name known, or names not checkable: accepted
        let all: Vec<String> = vec!["middle".into(), "outer".into(), "mid".into()];
        assert!(compile(
            std::slice::from_ref(&spec),
            "E",
            Some(&services),
            Some(&all)
        )
        .is_ok());
        assert!(compile(std::slice::from_ref(&spec), "E", Some(&services), None).is_ok());
    }
}

#[cfg(test)]
mod step_messages {
    use super::*;

    #[test]
    fn step_event_messages_count_from_one_and_data_keeps_the_index() {
        let s = ExpStep::Note("partition next".into());
        let ev = step_event("E", 3, &s, "start", None, None);
        assert_eq!(
            ev.message.as_deref(),
            Some("start step 4: note \"partition next\"")
        );
        let d: serde_json::Value =
            serde_json::from_str(ev.data.as_deref().unwrap_or("null")).unwrap_or_default();
        assert_eq!(d["step"], 3, "{d}");
        let ev = step_event("E", 0, &s, "end", Some(Verdict::Accept), None);
        assert_eq!(
            ev.message.as_deref(),
            Some("end step 1: note \"partition next\"")
        );
    }
}
