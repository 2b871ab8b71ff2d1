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

#[cfg(test)]
mod tests {
    use crate::{compile, Runner, Selection, SourceFile, Verdict};
    use trace::Event;

    const SPEC: &str = r#"
monitor flip {
  state a { on log "stdout" where message == "x" => goto b }
  state b {
    on log "stdout" where message == "x" => goto a
    on log "stdout" where message == "stop" => fail "stopped"
  }
}
experiment E {
  expect flip within 1h
}
"#;

    fn run(record: bool) -> (crate::Report, Vec<super::InstanceHistory>) {
        let spec = compile(&[SourceFile::new("t.spec", SPEC)], &|_, _| None)
            .unwrap_or_else(|d| panic!("{}", d.render()));
        let mut r = Runner::new(&spec, &Selection::default()).unwrap_or_else(|e| panic!("{e}"));
        let log = record.then(|| r.record_states());
        let mut seq = 0;
        for i in 0..50 {
            let msg = if i == 49 { "stop" } else { "x" };
            let mut e = Event::new(1_000 + i * 10, "log", "stdout").message(msg);
            seq += 1;
            e.seq = seq;
            r.observe(&e.as_ref());
        }
        let rep = r.finish(10_000);
        (rep, log.map(|l| l.histories()).unwrap_or_default())
    }

    #[test]
    fn recording_keeps_every_state_the_explanation_path_does_not() {
        let (rep, hs) = run(true);
        // the monitor `flip` and the experiment's expect step each ran one instance
        assert_eq!(hs.len(), 2, "{hs:?}");
        let m = hs
            .iter()
            .find(|h| h.scope == "flip")
            .expect("flip recorded");
        // 49 flips: the initial state and 49 more, beyond the explanation's 32
        assert_eq!(m.states.len(), 50);
        assert_eq!(m.states[0].state, "a");
        assert_eq!(m.states[0].from_ns, 1_000);
        assert_eq!(m.states[1].from_ns, 1_000);
        assert_eq!(m.states[48].state, "a");
        assert_eq!(m.states[49].state, "b");
        // every span ends where the next begins; the last where the instance decided
        for w in m.states.windows(2) {
            assert_eq!(w[0].to_ns, Some(w[1].from_ns));
        }
        assert_eq!(m.states[49].to_ns, Some(1_490));
        assert_eq!(m.verdict, Some(Verdict::Fail));
        assert_eq!(m.decided_ns, Some(1_490));
        let e = hs
            .iter()
            .find(|h| h.scope == "experiment E step 1")
            .expect("step recorded");
        assert_eq!(e.states.len(), 50);
        assert_eq!(e.verdict, Some(Verdict::Fail));
        let path = rep.monitors[0]
            .explanation
            .as_ref()
            .map(|x| x.path.len())
            .unwrap_or(0);
        assert!(path < 49, "the explanation path is bounded ({path})");
    }

    #[test]
    fn recording_does_not_change_the_verdicts() {
        let (with, _) = run(true);
        let (without, hs) = run(false);
        assert!(hs.is_empty());
        assert_eq!(with, without);
    }

    #[test]
    fn a_decision_ends_the_last_state_with_its_verdict() {
        let spec = compile(&[SourceFile::new("t.spec", SPEC)], &|_, _| None)
            .unwrap_or_else(|d| panic!("{}", d.render()));
        let sel = Selection {
            monitors: vec!["flip".into()],
            experiments: vec![],
        };
        let mut r = Runner::new(&spec, &sel).unwrap_or_else(|e| panic!("{e}"));
        let log = r.record_states();
        for (i, msg) in ["x", "stop"].into_iter().enumerate() {
            let mut e = Event::new(100 + i as i64, "log", "stdout").message(msg);
            e.seq = 7 + i as u64;
            r.observe(&e.as_ref());
        }
        let rep = r.finish(1_000);
        assert_eq!(rep.verdict, Verdict::Fail);
        let hs = log.histories();
        assert_eq!(hs.len(), 1);
        let h = &hs[0];
        assert_eq!(h.verdict, Some(Verdict::Fail));
        assert_eq!(h.decided_ns, Some(101));
        assert_eq!(h.decided_by_seq, Some(8));
        let spans: Vec<(&str, i64, Option<i64>, Option<u64>)> = h
            .states
            .iter()
            .map(|s| (s.state.as_str(), s.from_ns, s.to_ns, s.entered_by_seq))
            .collect();
        assert_eq!(
            spans,
            vec![("a", 100, Some(100), None), ("b", 100, Some(101), Some(7))]
        );
    }
}
