//! Verdicts, explanations and reports: what the runner hands back, serialisable for
//! `--format json` and rendered by the analyzer's reporters.

use crate::value::excerpt_into;
use serde::Serialize;
use trace::EventRef;

/// The three verdicts. Ordered so that `max` combines them as fail > inconclusive > accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Accept,
    Inconclusive,
    Fail,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Accept => "accept",
            Verdict::Inconclusive => "inconclusive",
            Verdict::Fail => "fail",
        }
    }
    /// fail > inconclusive > accept; accept for nothing.
    pub fn combine(vs: impl IntoIterator<Item = Verdict>) -> Verdict {
        vs.into_iter().max().unwrap_or(Verdict::Accept)
    }
    pub fn negate(self) -> Verdict {
        match self {
            Verdict::Accept => Verdict::Fail,
            Verdict::Fail => Verdict::Accept,
            Verdict::Inconclusive => Verdict::Inconclusive,
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event as shown in explanations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventInfo {
    pub ts_ns: i64,
    pub seq: u64,
    pub source: String,
    pub service: Option<String>,
    pub container: Option<String>,
    pub kind: String,
    /// The message, or else an excerpt of `data`.
    pub excerpt: String,
}

impl EventInfo {
    /// A copy of no event yet (nothing allocated), to be [`EventInfo::refill`]ed.
    pub fn empty() -> EventInfo {
        EventInfo {
            ts_ns: 0,
            seq: 0,
            source: String::new(),
            service: None,
            container: None,
            kind: String::new(),
            excerpt: String::new(),
        }
    }

    pub fn of(ev: &EventRef<'_>) -> EventInfo {
        let mut e = EventInfo::empty();
        e.refill(ev);
        e
    }

    /// Overwrites this copy with `ev`, reusing its allocations (the runner keeps a bounded ring
    /// of these per instance, so steady state allocates nothing).
    pub fn refill(&mut self, ev: &EventRef<'_>) {
        fn opt(slot: &mut Option<String>, v: Option<&str>) {
            match (slot.as_mut(), v) {
                (Some(s), Some(v)) => {
                    s.clear();
                    s.push_str(v);
                }
                (None, Some(v)) => *slot = Some(v.to_string()),
                (_, None) => *slot = None,
            }
        }
        self.ts_ns = ev.ts_ns;
        self.seq = ev.seq;
        self.source.clear();
        self.source.push_str(ev.source);
        opt(&mut self.service, ev.service);
        opt(&mut self.container, ev.container);
        self.kind.clear();
        self.kind.push_str(ev.kind);
        match (ev.message, ev.data) {
            (Some(m), _) if !m.is_empty() => excerpt_into(&mut self.excerpt, m, EXCERPT_CHARS),
            (_, Some(d)) => excerpt_into(&mut self.excerpt, d, EXCERPT_CHARS),
            _ => self.excerpt.clear(),
        }
    }
}

/// Characters of message or `data` kept in an [`EventInfo`].
pub const EXCERPT_CHARS: usize = 200;

/// One state change of an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Transition {
    pub from: String,
    pub to: String,
    pub ts_ns: i64,
    /// The event that caused it (`None` for a timeout).
    pub seq: Option<u64>,
    /// The handler that fired (source text).
    pub handler: String,
    /// A compact copy of the event that caused it (time, source, service, kind, message or
    /// `data` excerpt); `None` for a timeout.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<EventInfo>,
}

/// A value a guard saw: the sub-expression as written and its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GuardValue {
    pub expr: String,
    pub value: String,
}

/// A timeout that decided or was pending.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TimeoutInfo {
    pub state: String,
    pub armed_ns: i64,
    /// The event whose handler armed it (`None` when armed at start).
    pub armed_by_seq: Option<u64>,
    pub deadline_ns: i64,
}

/// Why a monitor (or step) got its verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Explanation {
    pub reason: String,
    /// The monitor instance, e.g. `inCluster(left-a, left-b) at left-a`.
    pub monitor: String,
    /// The instance key for `per` monitors.
    pub key: Option<String>,
    /// The state the instance was in when it decided (or at the end).
    pub state: String,
    pub decided_ns: Option<i64>,
    pub deciding_event: Option<EventInfo>,
    /// The handler that decided, as written.
    pub handler: Option<String>,
    pub guard_values: Vec<GuardValue>,
    /// The last transitions (at most 32), oldest first.
    pub path: Vec<Transition>,
    pub timeout: Option<TimeoutInfo>,
    /// For inconclusive: what was still pending.
    pub pending: Option<String>,
    /// Services the explanation concerns (the `at` service and the deciding event's service).
    pub services: Vec<String>,
}

/// The verdict of one monitor expression (a composition has children).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MonitorResult {
    pub name: String,
    pub verdict: Verdict,
    pub explanation: Option<Explanation>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<MonitorResult>,
}

impl MonitorResult {
    /// The explanation that matters for this verdict: its own, or the first child's with the
    /// same verdict.
    pub fn primary_explanation(&self) -> Option<&Explanation> {
        if let Some(e) = &self.explanation {
            return Some(e);
        }
        self.children
            .iter()
            .filter(|c| c.verdict == self.verdict)
            .find_map(|c| c.primary_explanation())
    }
    /// Every service involved anywhere in the result.
    pub fn services(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .explanation
            .iter()
            .flat_map(|e| e.services.clone())
            .collect();
        for c in &self.children {
            v.extend(c.services());
        }
        v.sort();
        v.dedup();
        v
    }
}

/// One step of a judged experiment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepResult {
    pub index: usize,
    pub kind: String,
    pub text: String,
    /// `None` when the step was not reached.
    pub verdict: Option<Verdict>,
    pub start_ns: Option<i64>,
    pub end_ns: Option<i64>,
    pub reason: Option<String>,
    /// For `expect`: the monitors' result.
    pub monitor: Option<MonitorResult>,
    /// For `do`: the matched fault event.
    pub fault: Option<EventInfo>,
    /// What looks wrong without changing the verdict, e.g. a `do` whose target or arguments
    /// differ from the fault recorded for it (the experiment was edited since the recording).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// For `expect ... as NAME`: the name and the value the step bound.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub binding: Option<StepBinding>,
}

/// What an `expect ... as NAME` step bound.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepBinding {
    pub name: String,
    pub value: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExperimentResult {
    pub name: String,
    pub verdict: Verdict,
    pub reason: Option<String>,
    pub steps: Vec<StepResult>,
}

/// Everything `Runner::finish` returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub verdict: Verdict,
    pub monitors: Vec<MonitorResult>,
    pub experiments: Vec<ExperimentResult>,
    pub start_ns: Option<i64>,
    pub end_ns: i64,
    pub events: u64,
}

impl Report {
    /// The events the report shows (deciding events, the events of path transitions, matched
    /// faults) as `(ts_ns, seq, source)`, in trace order, without duplicates.
    pub fn shown_events(&self) -> Vec<(i64, u64, String)> {
        fn walk(m: &MonitorResult, v: &mut Vec<(i64, u64, String)>) {
            if let Some(x) = &m.explanation {
                let path = x.path.iter().filter_map(|t| t.event.as_ref());
                for e in x.deciding_event.iter().chain(path) {
                    v.push((e.ts_ns, e.seq, e.source.clone()));
                }
            }
            for c in &m.children {
                walk(c, v);
            }
        }
        let mut v = Vec::new();
        for m in &self.monitors {
            walk(m, &mut v);
        }
        for x in &self.experiments {
            for s in &x.steps {
                if let Some(m) = &s.monitor {
                    walk(m, &mut v);
                }
                if let Some(e) = &s.fault {
                    v.push((e.ts_ns, e.seq, e.source.clone()));
                }
            }
        }
        v.sort();
        v.dedup();
        v
    }

    /// Replaces every shown event with `full(seq)` when it gives one, e.g. a copy re-read with
    /// every column when the run read fewer (see [`crate::Needs`]). A refilled deciding event's
    /// service joins its explanation's `services`, as it would have when judged with every
    /// column, so the report is the same as one judged from full events.
    pub fn refill_events(&mut self, full: impl Fn(u64) -> Option<EventInfo>) {
        self.visit_events(&mut |e: &mut EventInfo, services: &mut Vec<String>| {
            if let Some(f) = full(e.seq) {
                *e = f;
            }
            if let Some(s) = &e.service {
                if !services.contains(s) {
                    services.push(s.clone());
                    services.sort();
                }
            }
        });
    }

    /// Calls `f` on every shown event; for a deciding event with its explanation's services,
    /// otherwise with a scratch list.
    fn visit_events(&mut self, f: &mut dyn FnMut(&mut EventInfo, &mut Vec<String>)) {
        fn walk(m: &mut MonitorResult, f: &mut dyn FnMut(&mut EventInfo, &mut Vec<String>)) {
            if let Some(x) = &mut m.explanation {
                if let Some(d) = &mut x.deciding_event {
                    f(d, &mut x.services);
                }
                for t in &mut x.path {
                    if let Some(e) = &mut t.event {
                        f(e, &mut Vec::new());
                    }
                }
            }
            for c in &mut m.children {
                walk(c, f);
            }
        }
        for m in &mut self.monitors {
            walk(m, f);
        }
        for x in &mut self.experiments {
            for s in &mut x.steps {
                if let Some(m) = &mut s.monitor {
                    walk(m, f);
                }
                if let Some(e) = &mut s.fault {
                    f(e, &mut Vec::new());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(seq: u64, service: Option<&str>, excerpt: &str) -> EventInfo {
        EventInfo {
            ts_ns: seq as i64 * 10,
            seq,
            source: "jmx".into(),
            service: service.map(Into::into),
            container: None,
            kind: String::new(),
            excerpt: excerpt.into(),
        }
    }

    #[test]
    fn refill_replaces_shown_events_and_restores_the_deciding_service() {
        let expl = Explanation {
            deciding_event: Some(info(7, None, "")),
            path: vec![Transition {
                from: "a".into(),
                to: "b".into(),
                ts_ns: 30,
                seq: Some(3),
                handler: String::new(),
                event: Some(info(3, None, "")),
            }],
            services: vec!["x".into()],
            ..Default::default()
        };
        let mut r = Report {
            verdict: Verdict::Fail,
            monitors: vec![MonitorResult {
                name: "m".into(),
                verdict: Verdict::Fail,
                explanation: Some(expl),
                children: vec![],
            }],
            experiments: vec![],
            start_ns: Some(0),
            end_ns: 100,
            events: 9,
        };
        assert_eq!(
            r.shown_events(),
            vec![(30, 3, "jmx".to_string()), (70, 7, "jmx".to_string())]
        );
        r.refill_events(|seq| (seq == 7 || seq == 3).then(|| info(seq, Some("left-a"), "full")));
        let e = r.monitors[0].explanation.as_ref().unwrap();
        assert_eq!(e.deciding_event, Some(info(7, Some("left-a"), "full")));
        assert_eq!(e.path[0].event, Some(info(3, Some("left-a"), "full")));
        // the deciding event's service joins, sorted; a path event's does not
        assert_eq!(e.services, vec!["left-a".to_string(), "x".to_string()]);
    }
}
