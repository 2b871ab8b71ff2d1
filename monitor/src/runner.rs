//! The [`Runner`]: every selected monitor and experiment of a [`Spec`], fed one trace in order,
//! one event at a time, a run of events at a time ([`Runner::observe_batch`]) or a batch's
//! columns ([`Runner::observe_events`]: the monitors that read only times, sequence numbers and
//! sources take the columns), the independent monitors and experiments of a run then evaluated
//! one after the other or on several threads.

use crate::eval::{Node, NodePart};
use crate::experiment::ExperimentJudge;
use crate::ir::{MonExpr, Spec, Step};
use crate::needs::Needs;
use crate::ops::JsonCell;
use crate::relevance::Relevance;
use crate::report::{Report, Verdict};
use crate::states::{LogScope, StateLog};
use trace::{EventBatch, EventColumns, EventRef};

/// What to judge. Empty lists and `all == false`: every experiment and every monitor without
/// parameters.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub monitors: Vec<String>,
    pub experiments: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    #[error("no monitor named `{0}` in the spec (known: {1})")]
    UnknownMonitor(String, String),
    #[error("no experiment named `{0}` in the spec (known: {1})")]
    UnknownExperiment(String, String),
    #[error("monitor `{0}` needs arguments ({1}); use it from an experiment or a composition")]
    NeedsArguments(String, String),
}

fn expects(e: &crate::ir::Experiment) -> impl Iterator<Item = MonExpr> + '_ {
    e.steps.iter().filter_map(|s| match s {
        Step::Expect(x) => Some(x.monitor.clone()),
        _ => None,
    })
}

pub struct Runner {
    /// The selected monitor expressions (for [`Runner::may_observe`]).
    exprs: Vec<MonExpr>,
    /// The selected monitors' expressions, in the order of `monitors`.
    mexprs: Vec<MonExpr>,
    monitors: Vec<(String, Node)>,
    experiments: Vec<ExperimentJudge>,
    start: Option<i64>,
    last_ts: i64,
    events: u64,
    /// How many threads [`Runner::observe_batch`] may use (1: the calling thread only).
    threads: usize,
    /// Recording mode: the state log's order is the sequential one, so batches stay on one thread.
    recording: bool,
}

/// One independently evaluated part of a run: a selected monitor (or one part of a keyed
/// monitor split by key) or an experiment.
enum Unit<'r> {
    Monitor(NodePart<'r>),
    Experiment(&'r mut ExperimentJudge),
}

impl Unit<'_> {
    /// Can this unit be fed a batch's columns ([`Unit::run_columns`])?
    fn columnar(&mut self) -> bool {
        match self {
            Unit::Monitor(n) => n.columnar_leaf().is_some(),
            Unit::Experiment(_) => false,
        }
    }

    /// Feeds the rows of `batch` as [`Unit::run`] feeds events: a columnar leaf reads the
    /// columns `cols`, any other unit the events `evs` built from them.
    fn run_columns(
        &mut self,
        batch: &EventBatch,
        cols: &EventColumns<'_>,
        evs: &[EventRef<'_>],
        last_ts: i64,
    ) {
        if let Unit::Monitor(n) = self {
            if let Some(l) = n.columnar_leaf() {
                return l.run_columns(batch, cols, last_ts);
            }
        }
        self.run(evs, last_ts)
    }

    /// Feeds `evs` as [`Runner::observe`] feeds each event: timeouts due before an event's time
    /// fire first (`last_ts`: the time the runner had advanced to before the run).
    fn run(&mut self, evs: &[EventRef<'_>], mut last_ts: i64) {
        for ev in evs {
            let json = JsonCell::new();
            match self {
                Unit::Monitor(n) => {
                    if ev.ts_ns > last_ts {
                        last_ts = ev.ts_ns;
                        n.advance_to(ev.ts_ns, false);
                    }
                    n.observe(ev, &json);
                }
                Unit::Experiment(e) => {
                    if ev.ts_ns > last_ts {
                        last_ts = ev.ts_ns;
                        e.advance_to(ev.ts_ns);
                    }
                    e.observe_with(ev, &json);
                }
            }
        }
    }
}

impl Runner {
    pub fn new(spec: &Spec, sel: &Selection) -> Result<Runner, SelectError> {
        let mut monitors = Vec::new();
        let mut experiments = Vec::new();
        let mut exprs = Vec::new();
        let mut mexprs = Vec::new();
        let default = sel.monitors.is_empty() && sel.experiments.is_empty();
        let known_m = || {
            spec.monitors
                .iter()
                .map(|m| m.name.clone())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let known_e = || {
            spec.experiments
                .iter()
                .map(|m| m.name.clone())
                .collect::<Vec<_>>()
                .join(", ")
        };
        if default {
            for m in &spec.monitors {
                if m.params.is_empty() {
                    if let Some(e) = &m.runnable {
                        exprs.push(e.clone());
                        monitors.push((m.name.clone(), Node::build(e)));
                        mexprs.push(e.clone());
                    }
                }
            }
            for e in &spec.experiments {
                exprs.extend(expects(e));
                experiments.push(ExperimentJudge::new(e));
            }
        } else {
            for n in &sel.monitors {
                let m = spec
                    .monitor(n)
                    .ok_or_else(|| SelectError::UnknownMonitor(n.clone(), known_m()))?;
                let e = m
                    .runnable
                    .as_ref()
                    .ok_or_else(|| SelectError::NeedsArguments(n.clone(), m.params.join(", ")))?;
                exprs.push(e.clone());
                monitors.push((m.name.clone(), Node::build(e)));
                mexprs.push(e.clone());
            }
            for n in &sel.experiments {
                let e = spec
                    .experiment(n)
                    .ok_or_else(|| SelectError::UnknownExperiment(n.clone(), known_e()))?;
                exprs.extend(expects(e));
                experiments.push(ExperimentJudge::new(e));
            }
        }
        Ok(Runner {
            exprs,
            mexprs,
            monitors,
            experiments,
            start: None,
            last_ts: i64::MIN,
            events: 0,
            threads: 1,
            recording: false,
        })
    }

    /// Could any selected monitor or experiment react to events of `source`? A caller may skip
    /// reading sources nobody observes (e.g. the analyzer merges packet events in only when
    /// this is true for `packet`). Experiments always observe `fault` events.
    pub fn may_observe(&self, source: &str) -> bool {
        (source == "fault" && !self.experiments.is_empty())
            || self.exprs.iter().any(|e| e.may_observe(source))
    }

    /// The event columns and sources the selected monitors and experiments read (see
    /// [`Needs`]; the events kept for explanations are not counted: re-read them with
    /// [`Report::refill_events`] when reading fewer columns). Events of other sources change
    /// nothing but trace time, which [`Runner::advance_to`] gives without them.
    pub fn needs(&self) -> Needs {
        let mut n = Needs::nothing();
        for e in &self.exprs {
            n.merge(&Needs::of_expr(e));
        }
        if !self.experiments.is_empty() {
            n.merge(&Needs::experiment());
        }
        n
    }

    /// The events the selected monitors and experiments may react to ([`Relevance`]): a reader
    /// may skip the row groups whose statistics rule all of them out (see [`Runner::needs`] for
    /// what the skipped events still count for).
    pub fn relevance(&self) -> Relevance {
        let mut r = Relevance::nothing();
        for e in &self.exprs {
            r.add_expr(e);
        }
        if !self.experiments.is_empty() {
            r.add_sources(Some(&["fault", "recorder"]));
        }
        r
    }

    /// The trace was recorded running experiment `name` (the manifest's
    /// `schedule.experiment.name`): its judge starts at the recorder's start of the experiment,
    /// as the recorder judged it live (see [`ExperimentJudge::start_at_recorded_start`]).
    /// Other experiments are judged from the start of the trace. Call before the first event.
    pub fn recorded_experiment(&mut self, name: &str) {
        for e in &mut self.experiments {
            if e.name() == name {
                e.start_at_recorded_start();
            }
        }
    }

    /// Recording mode: every state change of every monitor instance (of the selected monitors
    /// and of the experiments' `expect` steps) goes to the returned log, not only the last few
    /// kept for explanations. Call before the first event; the verdicts are the same.
    pub fn record_states(&mut self) -> StateLog {
        self.recording = true;
        let log = StateLog::new();
        for ((name, n), e) in self.monitors.iter_mut().zip(&self.mexprs) {
            let scope = LogScope {
                log: log.clone(),
                scope: name.clone(),
            };
            *n = Node::build_logged(e, Some(&scope));
        }
        for e in &mut self.experiments {
            e.record_states(&log);
        }
        log
    }

    /// Number of monitors and experiments being judged.
    pub fn len(&self) -> usize {
        self.monitors.len() + self.experiments.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn start(&mut self, ts: i64) {
        if self.start.is_none() {
            self.start = Some(ts);
            for (_, n) in &mut self.monitors {
                n.start(ts);
            }
            for e in &mut self.experiments {
                e.advance_to(ts);
            }
        }
    }

    /// Fires every timeout due before `ts`.
    pub fn advance_to(&mut self, ts: i64) {
        self.start(ts);
        if ts <= self.last_ts {
            return;
        }
        self.last_ts = ts;
        for (_, n) in &mut self.monitors {
            n.advance_to(ts, false);
        }
        for e in &mut self.experiments {
            e.advance_to(ts);
        }
    }

    /// Offers one event; events must come in `(ts_ns, seq)` order.
    pub fn observe(&mut self, ev: &EventRef<'_>) {
        self.advance_to(ev.ts_ns);
        self.events += 1;
        let json = JsonCell::new();
        for (_, n) in &mut self.monitors {
            n.observe(ev, &json);
        }
        for e in &mut self.experiments {
            e.observe_with(ev, &json);
        }
    }

    /// Lets [`Runner::observe_batch`] evaluate independent monitors and experiments on up to
    /// `threads` threads (the default is 1). The report is the same for any number of threads.
    /// Called before the first event (and not in recording mode), it also splits each selected
    /// keyed (`per`) monitor into `threads` parts by a hash of the key, evaluated in parallel,
    /// but for one fed columns whose guards read nothing but times, sequence numbers and
    /// sources (see [`Runner::feeds_columns`]): its work per row is mostly finding the key,
    /// which every part would repeat.
    pub fn set_threads(&mut self, threads: usize) {
        self.threads = threads.max(1);
        if self.threads > 1 && !self.recording && self.start.is_none() {
            for (_, n) in &mut self.monitors {
                n.split_by_key(self.threads);
            }
        }
    }

    /// The parts [`Runner::observe_batch`] would evaluate on their own threads: every selected
    /// monitor (each part of a split keyed one) and experiment; 1 when batches stay on one thread
    /// (one thread set, or recording mode).
    pub fn parallel_parts(&self) -> usize {
        if self.threads <= 1 || self.recording {
            return 1;
        }
        let apart = self.searched_apart();
        let monitors: usize = self
            .monitors
            .iter()
            .map(|(_, n)| match first_match_leaf(n) {
                // searched on every thread
                Some(_) if apart => self.threads,
                _ => n.parts(),
            })
            .sum();
        monitors + self.experiments.len()
    }

    /// Are the monitors that decide on their first match searched on every thread, each in
    /// turn ([`Runner::observe_batch`])? Only when they are fewer than the threads: more of them
    /// keep the threads busy as units of their own, without a search per monitor and batch.
    fn searched_apart(&self) -> bool {
        let n = self
            .monitors
            .iter()
            .filter(|(_, n)| first_match_leaf(n).is_some())
            .count();
        n > 0 && n < self.threads
    }

    /// The units of a run, but for the monitors searched apart (see [`Runner::observe_batch`]).
    fn units(&mut self) -> Vec<Unit<'_>> {
        let apart = self.searched_apart();
        self.monitors
            .iter_mut()
            .filter(|(_, n)| !apart || first_match_leaf(n).is_none())
            .flat_map(|(_, n)| n.parts_mut())
            .map(Unit::Monitor)
            .chain(self.experiments.iter_mut().map(Unit::Experiment))
            .collect()
    }

    /// Offers a run of events in `(ts_ns, seq)` order, after those offered before: the same as
    /// [`Runner::observe`] on each in turn. With [`Runner::set_threads`] above 1, the selected
    /// monitors and experiments (each independent of the others) are split over that many
    /// threads, each thread feeding the whole run to its share; not in recording mode, whose
    /// state log keeps the order of one thread.
    pub fn observe_batch(&mut self, evs: &[EventRef<'_>]) {
        let Some(first) = evs.first() else { return };
        let threads = self.threads.min(self.parallel_parts());
        if threads <= 1 {
            for ev in evs {
                self.observe(ev);
            }
            return;
        }
        self.start(first.ts_ns);
        let last_ts = self.last_ts;
        // a monitor that decides on its first match (`never`, `always`, `eventually` without
        // `within` …) sees its events independently of each other until then: the run is
        // searched for that event on every thread, and the leaf is offered only it (it has no
        // timer for the events before to fire)
        let apart = self.searched_apart();
        for (_, n) in &mut self.monitors {
            if apart && first_match_leaf(n).is_some() {
                if let Node::Leaf(l) = n {
                    if let Some(i) = first_match_on_threads(l, evs, threads) {
                        l.observe(&evs[i], &JsonCell::new());
                    }
                }
            }
        }
        spread(self.units(), threads, |u| u.run(evs, last_ts));
        self.ran(evs.iter().map(|e| e.ts_ns).max(), last_ts, evs.len());
    }

    /// After a run of `n` events whose latest time is `latest` (`last_ts`: the time before):
    /// a split keyed monitor takes the earliest failure of its parts, and the run counts.
    fn ran(&mut self, latest: Option<i64>, last_ts: i64, n: usize) {
        for (_, n) in &mut self.monitors {
            n.update();
        }
        self.last_ts = latest.map_or(last_ts, |t| t.max(last_ts));
        self.events += n as u64;
    }

    /// Is some selected monitor fed a batch's columns by [`Runner::observe_events`] (its guards
    /// are all specialised; no `at`, no window)? Such a monitor copies each instance's recent
    /// events at most once per batch (those the next batch did not overwrite): larger batches
    /// copy fewer.
    pub fn feeds_columns(&mut self) -> bool {
        !self.recording
            && self.monitors.iter_mut().any(|(_, n)| {
                n.parts_mut()
                    .iter_mut()
                    .any(|p| p.columnar_leaf().is_some())
            })
    }

    /// Is every monitor fed columns ([`Runner::feeds_columns`]) one whose guards read nothing
    /// but times, sequence numbers and sources (and is there one)? Those copy their instances'
    /// recent events at most once per batch and read little else of a row, so they gain from large
    /// batches; a monitor whose guards read a row's text reads it while it is still in the
    /// cache only in batches of a few thousand rows.
    pub fn feeds_light_columns(&mut self) -> bool {
        let mut light = false;
        for (_, n) in &mut self.monitors {
            for p in n.parts_mut().iter_mut() {
                if let Some(l) = p.columnar_leaf() {
                    if !l.columnar_light() {
                        return false;
                    }
                    light = true;
                }
            }
        }
        light && !self.recording
    }

    /// Work for the trace reader on each batch where it is decoded
    /// ([`trace::ReadOptions::prepare`]), if some selected monitor gains from it: a keyed
    /// monitor fed columns that evaluates a batch instance by instance gets the batch's rows
    /// grouped by its key (by the reader's threads, ahead of the evaluation) instead of grouping
    /// them itself. Only the first such monitor's key is grouped for; the report is the same
    /// with or without it.
    pub fn prepare(&mut self) -> Option<trace::Prepare> {
        if self.recording {
            return None;
        }
        let key = self.monitors.iter_mut().find_map(|(_, n)| {
            n.parts_mut()
                .iter_mut()
                .find_map(|p| p.columnar_leaf().and_then(|l| l.group_key()))
        })?;
        Some(crate::eval::prepare_groups(key))
    }

    /// Offers a batch of events in `(ts_ns, seq)` order, after those offered before: the same
    /// as [`Runner::observe_batch`] on its events. A monitor whose guards are all specialised
    /// is fed the batch's columns, each event built only where a guard reads more than its
    /// time, sequence number and source (see `Leaf::run_columns`); it and the other monitors and
    /// experiments, each independent of the others, are then fed the batch one after the other
    /// (on one thread) or spread over the threads of [`Runner::set_threads`]. Not in recording
    /// mode, nor when a monitor is searched on every thread (as [`Runner::observe_batch`]).
    pub fn observe_events(&mut self, batch: &EventBatch) {
        let apart = self.threads > 1 && self.searched_apart();
        let cols = match batch.columns() {
            // (`feeds_columns` is false in recording mode)
            Some(c) if !c.is_empty() && !apart && self.feeds_columns() => c,
            // on one thread the events are offered as they are built, not gathered first
            _ if self.threads.min(self.parallel_parts()) <= 1 => {
                return batch.iter().for_each(|ev| self.observe(&ev));
            }
            _ => return self.observe_batch(&batch.iter().collect::<Vec<_>>()),
        };
        self.start(cols.ts[0]);
        let last_ts = self.last_ts;
        let threads = self.threads;
        let mut units = self.units();
        // the events, built once, for the units that are not fed columns
        let evs: Vec<EventRef<'_>> = if units.iter_mut().all(Unit::columnar) {
            Vec::new()
        } else {
            batch.iter().collect()
        };
        let (cols, evs) = (&cols, &evs[..]);
        spread(units, threads, |u| u.run_columns(batch, cols, evs, last_ts));
        self.ran(cols.ts.last().copied(), last_ts, cols.len());
    }

    /// True when every monitor and experiment step has decided (a live caller may stop early).
    pub fn all_monitors_decided(&self) -> bool {
        self.monitors.iter().all(|(_, n)| n.decided().is_some())
    }

    /// Ends the run at `end_ns` (the trace end) and returns the report.
    pub fn finish(mut self, end_ns: i64) -> Report {
        self.start(end_ns);
        let monitors: Vec<_> = self
            .monitors
            .iter_mut()
            .map(|(name, n)| n.finish(end_ns, name))
            .collect();
        let experiments: Vec<_> = self
            .experiments
            .iter_mut()
            .map(|e| e.finish(end_ns))
            .collect();
        let verdict = Verdict::combine(
            monitors
                .iter()
                .map(|m| m.verdict)
                .chain(experiments.iter().map(|e| e.verdict)),
        );
        Report {
            verdict,
            monitors,
            experiments,
            start_ns: self.start,
            end_ns,
            events: self.events,
        }
    }
}

/// Runs `f` on every unit, the units dealt over `threads` threads in turn (the calling thread
/// is the first).
fn spread<'u>(units: Vec<Unit<'u>>, threads: usize, f: impl Fn(&mut Unit<'u>) + Sync) {
    let threads = threads.min(units.len()).max(1);
    let mut shares: Vec<Vec<Unit<'u>>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, u) in units.into_iter().enumerate() {
        shares[i % threads].push(u);
    }
    let mut shares = shares.into_iter();
    let mine = shares.next().unwrap_or_default();
    let f = &f;
    std::thread::scope(|s| {
        for mut share in shares {
            s.spawn(move || share.iter_mut().for_each(f));
        }
        mine.into_iter().for_each(|mut u| f(&mut u));
    });
}

/// The leaf of a top-level monitor that decides on its first match (see
/// [`crate::eval::Leaf::decides_on_first_match`]).
fn first_match_leaf(n: &Node) -> Option<&crate::eval::Leaf> {
    match n {
        Node::Leaf(l) if l.decides_on_first_match() => Some(l),
        _ => None,
    }
}

/// Most events in one slice of a run searched by [`first_match_on_threads`].
const SEARCH_SLICE: usize = 2048;

/// The first event of `evs` the leaf decides on, searched on `threads` threads (the calling
/// one among them). The run is cut into consecutive slices that the threads take in order as
/// they come free, so a thread the scheduler holds back (the reader's decoding threads share
/// the cores) does not hold up the others; no slice after one with a match is started.
fn first_match_on_threads(
    l: &crate::eval::Leaf,
    evs: &[EventRef<'_>],
    threads: usize,
) -> Option<usize> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    if threads <= 1 || evs.len() < 2 * threads {
        return l.first_match(evs);
    }
    // slices of at most SEARCH_SLICE events, about 8 per thread in a shorter run
    let size = evs.len().div_ceil(8 * threads).clamp(1, SEARCH_SLICE);
    let slices = evs.len().div_ceil(size);
    let next = AtomicUsize::new(0);
    // the smallest index of a matching event found so far (usize::MAX: none)
    let found = AtomicUsize::new(usize::MAX);
    let search = || loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let from = i * size;
        if i >= slices || from > found.load(Ordering::Relaxed) {
            return;
        }
        let part = &evs[from..(from + size).min(evs.len())];
        if let Some(j) = l.first_match(part) {
            found.fetch_min(from + j, Ordering::Relaxed);
        }
    };
    std::thread::scope(|s| {
        for _ in 1..threads {
            s.spawn(search);
        }
        search();
    });
    match found.into_inner() {
        usize::MAX => None,
        i => Some(i),
    }
}
