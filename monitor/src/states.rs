//! The runner's recording mode: every state an instance went through, with when it entered and
//! left it and how the instance ended. The explanations keep only the last few transitions per
//! instance; a report that draws state bands needs all of them, so a [`StateLog`] given to the
//! runner ([`crate::Runner::record_states`]) receives every instance's whole history.

use crate::report::Verdict;
use serde::Serialize;
use std::sync::{Arc, Mutex};

/// One state an instance was in, from `from_ns` to `to_ns` (`None`: still in it at the end).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateSpan {
    pub state: String,
    pub from_ns: i64,
    pub to_ns: Option<i64>,
    /// The event that made the instance enter this state (`None`: start or timeout).
    pub entered_by_seq: Option<u64>,
}

/// The whole life of one monitor instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstanceHistory {
    /// What judged it: the monitor's name, or `experiment E step N` for an `expect` step.
    pub scope: String,
    /// The instance as explanations name it, e.g. `inCluster(left-a, left-b) at left-a`.
    pub monitor: String,
    /// The `per` key, for keyed monitors.
    pub key: Option<String>,
    /// The service of `at SERVICE`, when the monitor is placed on one.
    pub at: Option<String>,
    pub states: Vec<StateSpan>,
    /// How it ended: its verdict (`None` when the run ended before it decided, e.g. an
    /// `expect` step that was never finished).
    pub verdict: Option<Verdict>,
    pub decided_ns: Option<i64>,
    /// The event that decided it.
    pub decided_by_seq: Option<u64>,
}

/// Receives every instance history while the runner runs (cheap to clone: a shared handle).
#[derive(Debug, Clone, Default)]
pub struct StateLog(Arc<Mutex<Vec<InstanceHistory>>>);

impl StateLog {
    pub fn new() -> StateLog {
        StateLog::default()
    }

    fn with<R>(&self, f: impl FnOnce(&mut Vec<InstanceHistory>) -> R) -> R {
        // a poisoned log only means another recording panicked: its data is still usable
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    /// A new instance starts in `state` at `ts`; returns its id in the log.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn begin(
        &self,
        scope: &str,
        monitor: &str,
        key: Option<String>,
        at: Option<&str>,
        state: &str,
        ts: i64,
        seq: Option<u64>,
    ) -> usize {
        self.with(|v| {
            v.push(InstanceHistory {
                scope: scope.to_string(),
                monitor: monitor.to_string(),
                key,
                at: at.map(str::to_string),
                states: vec![StateSpan {
                    state: state.to_string(),
                    from_ns: ts,
                    to_ns: None,
                    entered_by_seq: seq,
                }],
                verdict: None,
                decided_ns: None,
                decided_by_seq: None,
            });
            v.len() - 1
        })
    }

    /// Instance `id` moved to `state` at `ts`.
    pub(crate) fn enter(&self, id: usize, state: &str, ts: i64, seq: Option<u64>) {
        self.with(|v| {
            if let Some(h) = v.get_mut(id) {
                if let Some(last) = h.states.last_mut() {
                    last.to_ns = Some(ts);
                }
                h.states.push(StateSpan {
                    state: state.to_string(),
                    from_ns: ts,
                    to_ns: None,
                    entered_by_seq: seq,
                });
            }
        })
    }

    /// Instance `id` decided `verdict` at `ts`.
    pub(crate) fn decide(&self, id: usize, verdict: Verdict, ts: i64, seq: Option<u64>) {
        self.with(|v| {
            if let Some(h) = v.get_mut(id) {
                if let Some(last) = h.states.last_mut() {
                    last.to_ns = Some(ts);
                }
                h.verdict = Some(verdict);
                h.decided_ns = Some(ts);
                h.decided_by_seq = seq;
            }
        })
    }

    /// Everything recorded so far, in the order instances started.
    pub fn histories(&self) -> Vec<InstanceHistory> {
        self.with(|v| v.clone())
    }
}

/// Where a leaf reports: the log and the scope its instances belong to.
#[derive(Debug, Clone)]
pub(crate) struct LogScope {
    pub log: StateLog,
    pub scope: String,
}
