//! What a run's plan (record only, a timed schedule, an experiment) runs with and what it reports:
//! [`PlanContext`], [`PlanResult`], the [`SharedInjector`] and the [`Progress`] status. The run
//! loop ([`crate::run`]), the experiment executor ([`crate::experiment`]) and the halt watcher
//! ([`crate::halt`]) all use these; this module uses none of them.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use monitor::Verdict;
use tokio::sync::mpsc;
use trace::Event;

use crate::faults::FaultInjector;
use crate::sink::EventSink;

/// The fault injector shared by the plan, the revert timers, the restart watcher and the halt
/// watcher.
pub type SharedInjector = Arc<tokio::sync::Mutex<FaultInjector>>;

/// What the run is doing now, for the progress line.
#[derive(Default)]
pub struct Progress {
    step: Mutex<String>,
}

impl Progress {
    /// Sets the current step description.
    pub fn set(&self, s: impl Into<String>) {
        if let Ok(mut g) = self.step.lock() {
            *g = s.into();
        }
    }

    /// The current step description.
    pub fn get(&self) -> String {
        self.step.lock().map(|g| g.clone()).unwrap_or_default()
    }
}

/// Everything the plan needs while running.
pub struct PlanContext {
    pub sink: EventSink,
    pub injector: Option<SharedInjector>,
    /// Why there is no injector (the message of its construction error).
    pub injector_error: Option<String>,
    pub progress: Arc<Progress>,
    /// Appended events with seqs (experiment mode only).
    pub live: Option<mpsc::UnboundedReceiver<Event>>,
    /// The instant a schedule's offsets count from.
    pub start: Instant,
    /// The recorded run this one replays (`--replay`): its bindings are reused.
    pub replay: Option<Arc<crate::replay::Recorded>>,
}

/// What the plan execution reports.
#[derive(Debug, Clone, Default)]
pub struct PlanResult {
    /// The combined verdict of an experiment; `None` for a schedule or a record-only run.
    pub verdict: Option<Verdict>,
    /// One line per judged step.
    pub verdicts: Vec<String>,
    /// Set when a fault could not be applied (exit 5): the message.
    pub error: Option<String>,
}

impl PlanResult {
    /// A plan that could not go on: `message` is the run's error (exit 5).
    pub fn failed(verdict: Option<Verdict>, message: impl Into<String>) -> PlanResult {
        PlanResult {
            verdict,
            verdicts: Vec::new(),
            error: Some(message.into()),
        }
    }
}
