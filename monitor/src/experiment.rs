//! Experiments: [`LiveStep`] runs one `expect` step on incoming events (the recorder uses it
//! live, the analyzer offline), and [`ExperimentJudge`] reconstructs a recorded run from the
//! trace: expect windows, `do` steps matched to the recorder's fault events, notes.

use crate::eval::{Node, Outcome};
use crate::ir::{Bindings, ExpectStep, Experiment, FaultCall, FaultTarget, Step};
use crate::ops::JsonCell;
use crate::report::*;
use crate::states::{LogScope, StateLog};
use crate::value::{fmt_dur, fmt_ts, Value};
use serde_json::Value as J;
use trace::EventRef;

/// One `expect` step running on events as they come.
pub struct LiveStep {
    node: Node,
    text: String,
    within_ns: Option<i64>,
    start_ns: Option<i64>,
    timed_out: Option<Outcome>,
    services: Vec<String>,
}

impl LiveStep {
    pub fn new(step: &ExpectStep) -> LiveStep {
        LiveStep::new_logged(step, None)
    }

    /// [`LiveStep::new`] in recording mode: every state change goes to `log`.
    pub(crate) fn new_logged(step: &ExpectStep, log: Option<&LogScope>) -> LiveStep {
        LiveStep {
            node: Node::build_logged(&step.monitor, log),
            text: step.text.clone(),
            within_ns: step
                .within
                .map(|d| d.as_nanos().min(i64::MAX as u128) as i64),
            start_ns: None,
            timed_out: None,
            services: step.monitor.services(),
        }
    }

    /// Starts the step at `ts` (otherwise it starts at the first event or time it is given).
    pub fn start(&mut self, ts: i64) {
        if self.start_ns.is_none() {
            self.start_ns = Some(ts);
            self.node.start(ts);
        }
    }

    pub fn start_ns(&self) -> Option<i64> {
        self.start_ns
    }

    fn deadline(&self) -> Option<i64> {
        Some(self.start_ns?.saturating_add(self.within_ns?))
    }

    /// Advances trace time: fires timeouts due before `ts` and the `within` limit.
    pub fn advance_to(&mut self, ts: i64) {
        self.advance(ts, false);
    }

    fn advance(&mut self, ts: i64, inclusive: bool) {
        self.start(ts);
        if self.verdict().is_some() {
            return;
        }
        match self.deadline() {
            Some(dl) if dl < ts || (inclusive && dl == ts) => {
                self.node.advance_to(dl, true);
                if self.node.decided().is_none() {
                    let w = self.within_ns.unwrap_or(0);
                    self.timed_out = Some(Outcome {
                        verdict: Verdict::Fail,
                        at_ns: dl,
                        at_seq: None,
                        explanation: Explanation {
                            reason: format!("`{}` did not accept within {}", self.text, fmt_dur(w)),
                            monitor: self.text.clone(),
                            state: "within".into(),
                            decided_ns: Some(dl),
                            timeout: Some(TimeoutInfo {
                                state: "within".into(),
                                armed_ns: self.start_ns.unwrap_or(dl - w),
                                armed_by_seq: None,
                                deadline_ns: dl,
                            }),
                            services: self.services.clone(),
                            ..Default::default()
                        },
                        value: None,
                    });
                }
            }
            _ => self.node.advance_to(ts, inclusive),
        }
    }

    /// Offers one event (in trace order).
    pub fn observe(&mut self, ev: &EventRef<'_>) {
        let json = JsonCell::new();
        self.observe_with(ev, &json);
    }

    pub(crate) fn observe_with(&mut self, ev: &EventRef<'_>, json: &JsonCell) {
        self.advance(ev.ts_ns, false);
        if self.verdict().is_some() {
            return;
        }
        self.node.observe(ev, json);
    }

    /// The verdict as soon as it is decided.
    pub fn verdict(&self) -> Option<Verdict> {
        if let Some(t) = &self.timed_out {
            return Some(t.verdict);
        }
        self.node.decided().map(|o| o.verdict)
    }

    /// The value the step's monitor accepted with (`accept ... with V`), once it accepted.
    pub fn value(&self) -> Option<Value> {
        if self.timed_out.is_some() {
            return None;
        }
        self.node
            .decided()
            .filter(|o| o.verdict == Verdict::Accept)
            .and_then(|o| o.value.clone())
    }

    /// When (and by which event) the step decided.
    pub fn decided_at(&self) -> Option<(i64, Option<u64>)> {
        self.timed_out
            .as_ref()
            .or(self.node.decided())
            .map(|o| (o.at_ns, o.at_seq))
    }

    /// Ends the step at `end_ns` and explains the result.
    pub fn finish(&mut self, end_ns: i64) -> MonitorResult {
        self.advance(end_ns, true);
        let mut r = self.node.finish(end_ns, &self.text);
        if let Some(t) = &self.timed_out {
            r.verdict = Verdict::Fail;
            let mut e = t.explanation.clone();
            if let Some(inner) = r.primary_explanation() {
                if inner.pending.is_some() {
                    e.pending = inner.pending.clone();
                    e.path = inner.path.clone();
                    e.state = format!("within (monitor in state `{}`)", inner.state);
                }
            }
            r.explanation = Some(e);
        }
        r
    }
}

/// Does this fault event record the given `do` step? Returns the phase when it does.
///
/// Matches by action (`kind`) and target only; [`fault_matches_step`] prefers the
/// `data.experiment` / `data.step` identity the recorder writes.
pub fn fault_matches<'e>(call: &FaultCall, ev: &EventRef<'e>, data: Option<&J>) -> Option<String> {
    if ev.source != "fault" || ev.kind != call.action {
        return None;
    }
    let phase = fault_phase(data);
    let target = data.and_then(|d| d.get("target"));
    let list = |k: &str| -> Vec<String> {
        target
            .and_then(|t| t.get(k))
            .and_then(J::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let services = {
        let mut s = list("services");
        if let Some(x) = ev.service {
            s.push(x.to_string());
        }
        s
    };
    let has_all = |want: &[String]| want.iter().all(|w| services.contains(w));
    let ok = match &call.target {
        FaultTarget::Service(s) => services.contains(s),
        FaultTarget::Container(c) => {
            ev.container == Some(c.as_str()) || list("containers").contains(c)
        }
        FaultTarget::Network(n) => list("networks").contains(n),
        FaultTarget::Services(v) => has_all(v),
        FaultTarget::Random(v) => services.iter().any(|s| v.contains(s)),
        FaultTarget::Between(a, b) | FaultTarget::FromTo(a, b) => has_all(a) && has_all(b),
    };
    ok.then_some(phase)
}

/// What differs between the `do` step `call` and the fault event recorded for it: its target
/// (when the event does not match it by target, see [`fault_matches`]) and any argument the
/// record's `data.params` carries under the same name with another value. Empty when they agree
/// (or cannot be compared).
pub fn recorded_differences(call: &FaultCall, ev: &EventRef<'_>, data: Option<&J>) -> Vec<String> {
    let mut out = Vec::new();
    if ev.kind == call.action && fault_matches(call, ev, data).is_none() {
        let t = data.and_then(|d| d.get("target"));
        let names = |k: &str| -> Vec<String> {
            t.and_then(|t| t.get(k))
                .and_then(J::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut recorded = Vec::new();
        for (k, what) in [
            ("services", "services"),
            ("networks", "networks"),
            ("containers", "containers"),
        ] {
            let v = names(k);
            if !v.is_empty() {
                recorded.push(format!("{what} [{}]", v.join(", ")));
            }
        }
        out.push(format!(
            "the target differs (recorded: {})",
            if recorded.is_empty() {
                "none".to_string()
            } else {
                recorded.join(", ")
            }
        ));
    }
    let params = data.and_then(|d| d.get("params"));
    for (k, lit) in &call.args {
        let Some(rec) = params.and_then(|p| p.get(k)) else {
            continue;
        };
        let same = match (lit, rec) {
            (crate::ir::Literal::Int(a), J::Number(b)) => b.as_f64() == Some(*a as f64),
            (crate::ir::Literal::Float(a), J::Number(b)) => b.as_f64() == Some(*a),
            (crate::ir::Literal::Str(a), J::String(b)) => a == b,
            (crate::ir::Literal::Bool(a), J::Bool(b)) => a == b,
            // other shapes are recorded normalised: not comparable here
            _ => true,
        };
        if !same {
            out.push(format!("argument `{k}` differs (recorded: {rec})"));
        }
    }
    out
}

/// A recorded fault in a few words: `f3 pause`.
fn recorded_fault(ev: &EventRef<'_>, data: Option<&J>) -> String {
    match data.and_then(|d| d.get("fault_id")).and_then(J::as_str) {
        Some(id) => format!("{id} {}", ev.kind),
        None => ev.kind.to_string(),
    }
}

/// When a recorded fault was done: its `data.ended_ns` (the end of the apply), or the event's
/// own time (`started_ns`) when the record has none (older recorders) or an earlier one.
pub fn fault_done_ns(ev: &EventRef<'_>, data: Option<&J>) -> i64 {
    data.and_then(|d| d.get("ended_ns"))
        .and_then(J::as_i64)
        .map_or(ev.ts_ns, |e| e.max(ev.ts_ns))
}

fn fault_phase(data: Option<&J>) -> String {
    data.and_then(|d| d.get("phase"))
        .and_then(J::as_str)
        .unwrap_or("applied")
        .to_string()
}

/// Does this fault event record step `step` (0-based index in the experiment's steps) of
/// experiment `experiment`, which is `call`? When the recorder filled `data.experiment` with
/// this experiment and `data.step` equal to `step` (it does for every experiment step), the
/// identity decides: the event records this step when `kind` is the action, whatever its
/// target lists (e.g. a resolved random choice). Any other fault event (a scheduled fault, an
/// older recorder, another experiment, or another step index because the experiment was edited
/// since the trace was recorded) falls back to [`fault_matches`] (action + target), so old
/// traces can be re-judged against new experiments. Returns the phase when it matches.
pub fn fault_matches_step<'e>(
    experiment: &str,
    step: usize,
    call: &FaultCall,
    ev: &EventRef<'e>,
    data: Option<&J>,
) -> Option<String> {
    if ev.source != "fault" {
        return None;
    }
    let exp = data.and_then(|d| d.get("experiment")).and_then(J::as_str);
    let idx = data.and_then(|d| d.get("step")).and_then(J::as_u64);
    match (exp, idx) {
        (Some(e), Some(i)) if e == experiment && i == step as u64 => {
            (ev.kind == call.action).then(|| fault_phase(data))
        }
        // Another step's record, or one without step data: match by action and target, so a
        // trace recorded with an older version of the experiment can still be re-judged.
        _ => fault_matches(call, ev, data),
    }
}

enum Phase {
    Step(usize),
    Done,
}

/// Judges one experiment offline over a recorded trace, in one pass.
pub struct ExperimentJudge {
    exp: std::sync::Arc<Experiment>,
    /// The steps, each replaced by its resolved form once the bindings it uses are known.
    steps: std::sync::Arc<Vec<Step>>,
    /// Is step `i` ready to run (it uses no binding, or they are bound and it resolved)?
    resolved: Vec<bool>,
    /// Why step `i` could not be resolved with the bound values.
    resolve_err: Vec<Option<String>>,
    /// The values bound so far (`expect ... as NAME`), recomputed from the trace.
    bindings: Bindings,
    /// The values the recorder recorded for binding steps (step index -> value, seq).
    recorded: std::collections::HashMap<usize, (J, u64)>,
    /// Bindings recomputed with another value than the recorder's.
    mismatches: Vec<String>,
    phase: Phase,
    window_start: Option<i64>,
    live: Option<LiveStep>,
    results: Vec<StepResult>,
    stop_reason: Option<(Verdict, String)>,
    /// Waiting for the recorder's step-0 start event (see [`Self::start_at_recorded_start`]).
    await_recorded_start: bool,
    /// Recording mode: where the `expect` steps' monitors log every state change.
    log: Option<StateLog>,
}

impl ExperimentJudge {
    pub fn new(exp: &Experiment) -> ExperimentJudge {
        let results = exp
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| StepResult {
                index: i,
                kind: s.kind().into(),
                text: s.text(),
                verdict: None,
                start_ns: None,
                end_ns: None,
                reason: None,
                monitor: None,
                fault: None,
                warnings: Vec::new(),
                binding: None,
            })
            .collect();
        ExperimentJudge {
            exp: std::sync::Arc::new(exp.clone()),
            steps: std::sync::Arc::new(exp.steps.clone()),
            resolved: (0..exp.steps.len())
                .map(|i| !exp.uses_bindings(i))
                .collect(),
            resolve_err: vec![None; exp.steps.len()],
            bindings: Bindings::new(),
            recorded: std::collections::HashMap::new(),
            mismatches: Vec::new(),
            phase: Phase::Step(0),
            window_start: None,
            live: None,
            results,
            stop_reason: None,
            await_recorded_start: false,
            log: None,
        }
    }

    pub fn name(&self) -> &str {
        &self.exp.name
    }

    /// Recording mode: the monitors of the `expect` steps report every state change to `log`.
    pub fn record_states(&mut self, log: &StateLog) {
        self.log = Some(log.clone());
    }

    /// The `expect` step `i`'s monitors, logging when recording.
    fn live_step(&self, i: usize, e: &ExpectStep) -> LiveStep {
        let scope = self.log.as_ref().map(|log| LogScope {
            log: log.clone(),
            scope: format!("experiment {} step {}", self.exp.name, i + 1),
        });
        LiveStep::new_logged(e, scope.as_ref())
    }

    /// The trace was recorded running this experiment: judge it from the moment the recorder
    /// started it (its step-0 `start` event: `source = "recorder"`, `kind = "step"`,
    /// `data.experiment` = the name, `data.step = 0`, `data.phase = "start"`), as the recorder
    /// did live, instead of from the first event of the trace. Events before it (the system
    /// starting up) are ignored; without that event every step stays not run (inconclusive).
    pub fn start_at_recorded_start(&mut self) {
        self.await_recorded_start = true;
    }

    /// Is `ev` the recorder's start of this experiment's step 0?
    fn is_recorded_start(&self, ev: &EventRef<'_>, data: Option<&J>) -> bool {
        ev.source == "recorder"
            && ev.kind == "step"
            && data.is_some_and(|d| {
                d.get("experiment").and_then(J::as_str) == Some(self.exp.name.as_str())
                    && d.get("step").and_then(J::as_u64) == Some(0)
                    && d.get("phase").and_then(J::as_str) == Some("start")
            })
    }

    /// The next `do` step after step `i`, if any, with its index.
    fn next_do(steps: &[Step], i: usize) -> Option<(usize, &FaultCall)> {
        steps[i + 1..]
            .iter()
            .enumerate()
            .find_map(|(k, s)| match s {
                Step::Do(f) => Some((i + 1 + k, f)),
                _ => None,
            })
    }

    /// Does fault event `ev` record `do` step `i` (`call`)? A step whose bindings are not
    /// resolved yet matches only by the recorder's step identity (its target is not known).
    fn do_matches(
        &self,
        i: usize,
        call: &FaultCall,
        ev: &EventRef<'_>,
        data: Option<&J>,
    ) -> Option<String> {
        if self.resolved.get(i).copied().unwrap_or(true) {
            return fault_matches_step(&self.exp.name, i, call, ev, data);
        }
        let exp = data.and_then(|d| d.get("experiment")).and_then(J::as_str);
        let idx = data.and_then(|d| d.get("step")).and_then(J::as_u64);
        (ev.source == "fault"
            && ev.kind == call.action
            && exp == Some(self.exp.name.as_str())
            && idx == Some(i as u64))
        .then(|| fault_phase(data))
    }

    /// Step `i` accepted with `value`: binds it when the step binds a name (false, with the step
    /// made inconclusive, when it binds one but accepted without a value), compares it with the
    /// value the recorder recorded, and resolves the steps that can now run.
    fn bind(&mut self, i: usize, value: Option<Value>) -> bool {
        let Some(Step::Expect(e)) = self.steps.get(i) else {
            return true;
        };
        let Some(name) = e.binds.clone() else {
            return true;
        };
        let Some(value) = value else {
            let why = format!(
                "step {} `{}` accepted without a value for `{name}` (no `accept ... with VALUE` decided it)",
                i + 1,
                e.text
            );
            let res = &mut self.results[i];
            res.verdict = Some(Verdict::Inconclusive);
            res.reason = Some(why.clone());
            self.stop(Verdict::Inconclusive, why);
            return false;
        };
        self.results[i].binding = Some(StepBinding {
            name: name.clone(),
            value: value.to_json(),
        });
        self.bindings.insert(name, value);
        self.compare_recorded(i);
        for j in i + 1..self.steps.len() {
            if self.resolved[j] || self.resolve_err[j].is_some() {
                continue;
            }
            if !self.exp.uses[j]
                .iter()
                .all(|n| self.bindings.contains_key(n))
            {
                continue;
            }
            match self.exp.resolve(j, &self.bindings) {
                Ok(s) => {
                    std::sync::Arc::make_mut(&mut self.steps)[j] = s;
                    self.resolved[j] = true;
                }
                Err(errs) => self.resolve_err[j] = Some(errs.join("; ")),
            }
        }
        true
    }

    /// Reports a binding recomputed from the trace that differs from the one recorded live.
    fn compare_recorded(&mut self, i: usize) {
        let (Some(b), Some((rec, seq))) = (&self.results[i].binding, self.recorded.get(&i)) else {
            return;
        };
        if &b.value == rec {
            return;
        }
        let msg = format!(
            "step {} binds `{}` to {} recomputed from the trace, but the recorder bound {} (seq {seq}); the steps after it are judged with the recomputed value",
            i + 1,
            b.name,
            b.value,
            rec
        );
        self.results[i].warnings.push(msg.clone());
        self.mismatches.push(msg);
    }

    /// A recorder event ending a binding step of this experiment: keep its recorded value.
    fn note_recorded(&mut self, ev: &EventRef<'_>, data: Option<&J>) {
        let Some(d) = data else { return };
        if d.get("experiment").and_then(J::as_str) != Some(self.exp.name.as_str())
            || d.get("phase").and_then(J::as_str) != Some("end")
        {
            return;
        }
        let (Some(i), Some(v)) = (
            d.get("step").and_then(J::as_u64),
            d.get("binding").and_then(|b| b.get("value")),
        ) else {
            return;
        };
        let i = i as usize;
        if i >= self.results.len() || self.recorded.contains_key(&i) {
            return;
        }
        self.recorded.insert(i, (v.clone(), ev.seq));
        self.compare_recorded(i);
    }

    fn skip_notes(&mut self, ts: i64) {
        while let Phase::Step(i) = self.phase {
            if let Some(why) = self.resolve_err.get(i).cloned().flatten() {
                let why = format!(
                    "step {} `{}` cannot use the bound values: {why}",
                    i + 1,
                    self.steps[i].text()
                );
                let r = &mut self.results[i];
                r.verdict = Some(Verdict::Inconclusive);
                r.start_ns = self.window_start.or(Some(ts));
                r.reason = Some(why.clone());
                self.stop(Verdict::Inconclusive, why);
                return;
            }
            match self.steps.get(i) {
                None => {
                    self.phase = Phase::Done;
                }
                Some(Step::Note(_)) => {
                    let r = &mut self.results[i];
                    r.verdict = Some(Verdict::Accept);
                    r.start_ns = self.window_start.or(Some(ts));
                    r.end_ns = r.start_ns;
                    self.phase = Phase::Step(i + 1);
                }
                Some(_) => return,
            }
        }
    }

    pub fn advance_to(&mut self, ts: i64) {
        if self.await_recorded_start {
            return;
        }
        if self.window_start.is_none() {
            self.window_start = Some(ts);
        }
        if let Some(l) = &mut self.live {
            l.advance_to(ts);
        }
        self.check_live();
    }

    fn check_live(&mut self) {
        let Phase::Step(i) = self.phase else { return };
        let Some(l) = &mut self.live else { return };
        let Some(v) = l.verdict() else { return };
        let (at, _) = l.decided_at().unwrap_or((0, None));
        let value = l.value();
        let mut r = l.finish(at);
        r.verdict = v;
        let res = &mut self.results[i];
        res.verdict = Some(v);
        res.end_ns = Some(at);
        res.reason = r.primary_explanation().map(|e| e.reason.clone());
        res.monitor = Some(r);
        self.live = None;
        self.window_start = Some(at);
        if v == Verdict::Accept {
            if self.bind(i, value) {
                self.phase = Phase::Step(i + 1);
            }
        } else {
            self.stop(
                v,
                format!("step {} `{}` {}", i + 1, self.steps[i].text(), v),
            );
        }
    }

    fn stop(&mut self, v: Verdict, why: String) {
        self.stop_reason = Some((v, why));
        self.phase = Phase::Done;
    }

    pub fn observe(&mut self, ev: &EventRef<'_>) {
        let json = JsonCell::new();
        self.observe_with(ev, &json);
    }

    pub(crate) fn observe_with(&mut self, ev: &EventRef<'_>, json: &JsonCell) {
        if ev.source == "recorder" && ev.kind == "step" && ev.data.is_some() {
            let d = json
                .get_or_init(|| ev.data.and_then(|d| serde_json::from_str(d).ok()))
                .as_ref();
            self.note_recorded(ev, d);
        }
        if self.await_recorded_start {
            if ev.source != "recorder" {
                return;
            }
            let d = ev.data.and_then(|_| {
                json.get_or_init(|| ev.data.and_then(|d| serde_json::from_str(d).ok()))
                    .as_ref()
            });
            if !self.is_recorded_start(ev, d) {
                return;
            }
            self.await_recorded_start = false;
            self.window_start = Some(ev.ts_ns);
        }
        if self.window_start.is_none() {
            self.window_start = Some(ev.ts_ns);
        }
        self.skip_notes(ev.ts_ns);
        let Phase::Step(i) = self.phase else { return };
        let data = || -> Option<&J> {
            ev.data?;
            json.get_or_init(|| ev.data.and_then(|d| serde_json::from_str(d).ok()))
                .as_ref()
        };
        let steps = self.steps.clone();
        match &steps[i] {
            Step::Expect(e) => {
                // events from before the window (those of a fault still being applied when the
                // previous `do` was recorded) are not this step's
                if self.window_start.is_some_and(|w| ev.ts_ns < w) {
                    return;
                }
                if self.live.is_none() {
                    let mut l = self.live_step(i, e);
                    l.start(self.window_start.unwrap_or(ev.ts_ns));
                    self.live = Some(l);
                    self.results[i].start_ns = self.window_start;
                }
                // the fault of the next `do` closes this window (its `applied` or `failed`
                // record: the `reverted` record of an earlier fault with the same action and
                // target is not the next step's)
                if ev.source == "fault" {
                    if let Some((ni, next)) = Self::next_do(&steps, i) {
                        if matches!(
                            self.do_matches(ni, next, ev, data()).as_deref(),
                            Some("applied" | "failed")
                        ) {
                            if let Some(l) = &mut self.live {
                                l.advance_to(ev.ts_ns);
                            }
                            self.check_live();
                            if matches!(self.phase, Phase::Step(j) if j == i) {
                                if let Some(mut l) = self.live.take() {
                                    // still undecided when the next fault was injected
                                    let r = l.finish(ev.ts_ns);
                                    let res = &mut self.results[i];
                                    res.verdict = Some(r.verdict);
                                    res.end_ns = Some(ev.ts_ns);
                                    res.reason = Some(format!("undecided when the next fault `{}` was recorded at {} (seq {}): {}", next.text, fmt_ts(ev.ts_ns), ev.seq, r.primary_explanation().map(|e| e.reason.clone()).unwrap_or_default()));
                                    let v = r.verdict;
                                    res.monitor = Some(r);
                                    self.window_start = Some(ev.ts_ns);
                                    if v == Verdict::Accept {
                                        if !self.bind(i, l.value()) {
                                            return;
                                        }
                                        self.phase = Phase::Step(i + 1);
                                    } else {
                                        self.stop(v, format!("step {} `{}` {}", i + 1, e.text, v));
                                        return;
                                    }
                                }
                            }
                            // re-offer the fault event to the following steps
                            self.observe_with(ev, json);
                            return;
                        }
                    }
                }
                if let Some(l) = &mut self.live {
                    l.observe_with(ev, json);
                }
                self.check_live();
            }
            Step::Do(call) => {
                if self.results[i].start_ns.is_none() {
                    self.results[i].start_ns = self.window_start;
                }
                if let Some(phase) = self.do_matches(i, call, ev, data()) {
                    let res = &mut self.results[i];
                    match phase.as_str() {
                        "applied" => {
                            // the step is done when the fault is: the next step starts at the
                            // apply's end (`data.ended_ns`; the event's `ts_ns` is its start)
                            let done = fault_done_ns(ev, data());
                            res.verdict = Some(Verdict::Accept);
                            res.end_ns = Some(done);
                            res.fault = Some(EventInfo::of(ev));
                            let diffs = recorded_differences(call, ev, data());
                            if !diffs.is_empty() {
                                res.warnings.push(format!(
                                    "step {} `{}` differs from the fault recorded for it (seq {}: {}): {}; was the experiment edited since the trace was recorded?",
                                    i + 1,
                                    call.text,
                                    ev.seq,
                                    recorded_fault(ev, data()),
                                    diffs.join("; ")
                                ));
                            }
                            res.reason = Some(if done > ev.ts_ns {
                                format!(
                                    "fault recorded at {} (seq {}), applied by {}",
                                    fmt_ts(ev.ts_ns),
                                    ev.seq,
                                    fmt_ts(done)
                                )
                            } else {
                                format!("fault recorded at {} (seq {})", fmt_ts(ev.ts_ns), ev.seq)
                            });
                            self.window_start = Some(done);
                            self.phase = Phase::Step(i + 1);
                            self.skip_notes(done);
                        }
                        "failed" => {
                            let err = data()
                                .and_then(|d| d.get("error"))
                                .and_then(J::as_str)
                                .unwrap_or("unknown error")
                                .to_string();
                            res.verdict = Some(Verdict::Inconclusive);
                            res.end_ns = Some(ev.ts_ns);
                            res.fault = Some(EventInfo::of(ev));
                            let why = format!("`{}` was recorded as failed: {err}", call.text);
                            res.reason = Some(why.clone());
                            self.stop(Verdict::Inconclusive, why);
                        }
                        _ => {}
                    }
                }
            }
            Step::Note(_) => {}
        }
    }

    pub fn finish(&mut self, end_ns: i64) -> ExperimentResult {
        if self.await_recorded_start {
            self.stop(
                Verdict::Inconclusive,
                format!(
                    "the trace was recorded for experiment `{}` but holds no recorder event starting it (source=recorder, kind=step, step 0, phase=start)",
                    self.exp.name
                ),
            );
        }
        if self.window_start.is_none() {
            self.window_start = Some(end_ns);
        }
        self.skip_notes(end_ns);
        if let Phase::Step(i) = self.phase {
            let steps = self.steps.clone();
            match &steps[i] {
                Step::Expect(e) => {
                    if self.live.is_none() {
                        let mut l = self.live_step(i, e);
                        l.start(self.window_start.unwrap_or(end_ns));
                        self.live = Some(l);
                        self.results[i].start_ns = self.window_start;
                    }
                    if let Some(mut l) = self.live.take() {
                        let r = l.finish(end_ns);
                        let res = &mut self.results[i];
                        res.verdict = Some(r.verdict);
                        res.end_ns = Some(l.decided_at().map(|d| d.0).unwrap_or(end_ns));
                        res.reason = r.primary_explanation().map(|e| e.reason.clone());
                        let v = r.verdict;
                        res.monitor = Some(r);
                        if v != Verdict::Accept {
                            self.stop(v, format!("step {} `{}` {}", i + 1, e.text, v));
                        } else if self.bind(i, l.value()) {
                            self.phase = Phase::Step(i + 1);
                        }
                    }
                }
                Step::Do(call) => {
                    let why = format!("no fault record matching `{}` (source=fault, kind={}, phase=applied) after {}", call.text, call.action, self.window_start.map(fmt_ts).unwrap_or_default());
                    let res = &mut self.results[i];
                    res.verdict = Some(Verdict::Inconclusive);
                    res.reason = Some(why.clone());
                    res.start_ns = res.start_ns.or(self.window_start);
                    self.stop(Verdict::Inconclusive, why);
                }
                Step::Note(_) => {}
            }
            if let Phase::Step(j) = self.phase {
                if j < self.exp.steps.len() {
                    // the accepted last expect left steps behind: they were never reached
                    let why = format!(
                        "trace ended before step {} `{}`",
                        j + 1,
                        self.steps[j].text()
                    );
                    self.skip_notes(end_ns);
                    if let Phase::Step(k) = self.phase {
                        if k < self.exp.steps.len() {
                            self.stop(Verdict::Inconclusive, why);
                        }
                    }
                }
            }
        }
        let judged: Vec<Verdict> = self.results.iter().filter_map(|r| r.verdict).collect();
        let mut verdict = Verdict::combine(judged);
        if let Some((v, _)) = &self.stop_reason {
            verdict = verdict.max(*v);
        }
        // a binding that differs from the recorded one: the run cannot be reproduced offline
        if !self.mismatches.is_empty() {
            verdict = verdict.max(Verdict::Inconclusive);
            if self.stop_reason.is_none() {
                self.stop_reason = Some((Verdict::Inconclusive, self.mismatches.join("; ")));
            }
        }
        ExperimentResult {
            name: self.exp.name.clone(),
            verdict,
            reason: self.stop_reason.as_ref().map(|s| s.1.clone()),
            steps: self.results.clone(),
        }
    }
}
