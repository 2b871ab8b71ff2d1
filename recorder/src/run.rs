//! `recorder run`: the run loop. Validates the scenario, creates the trace, starts the writer
//! task (a dedicated thread owning the [`trace::TraceWriter`], fed by the [`EventSink`] channel,
//! flushing on a 100 ms tick), brings the project up, starts the sensors, executes the plan (an
//! experiment or a timed schedule) under the time limit, and ALWAYS tears down: faults reverted,
//! sensors drained, `compose down`, leftovers removed, trace finalized — on success, on a failed
//! step, on an error, on Ctrl-C/SIGTERM, and when a task panics.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use trace::manifest::{ComposeFile, Outcome, ScenarioInfo};
use trace::{Event, FinalizeSummary, Manifest, PacketRecord, TraceError, TraceWriter};

use crate::compose::{self, ComposeCli, ProjectState};
use crate::experiment;
use crate::faults::{self, FaultInjector, FaultRequest};
use crate::halt;
use crate::replay;
use crate::scenario::{self, LoadedScenario, Plan, Resolved, ScenarioError, ScheduledFault};
use crate::sensors::docker::{DockerSensors, DockerSensorsConfig};
use crate::sensors::{PacketSink, SensorContext, SensorRegistry};
use crate::sink::{now_ns, EventReceiver, EventSink};

/// The fault injector shared by the plan, the revert timers and the restart watcher.
pub type SharedInjector = Arc<tokio::sync::Mutex<FaultInjector>>;

/// Exit codes (docs/exit-codes.md).
pub mod exit {
    pub const ACCEPT: i32 = 0;
    pub const FAIL: i32 = 1;
    pub const INCONCLUSIVE: i32 = 2;
    pub const BAD_SCENARIO: i32 = 3;
    pub const TRACE: i32 = 4;
    pub const ENV: i32 = 5;
    pub const HALTED: i32 = 6;
    pub const USAGE: i32 = 64;
    pub const INTERRUPTED: i32 = 130;
}

/// Options of `recorder run` beyond the scenario file.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub scenario: PathBuf,
    /// Overrides the scenario's output directory.
    pub output: Option<PathBuf>,
    /// Overrides the project name.
    pub project: Option<String>,
    /// Overrides the seed.
    pub seed: Option<u64>,
    /// Force the progress line off even on a terminal.
    pub quiet: bool,
    /// Only validate the scenario (needs the compose CLI for the service list), start nothing.
    pub check_only: bool,
    /// Replay the recorded run of this trace (`--replay`).
    pub replay: Option<PathBuf>,
    /// Replay even when the scenario or specs differ from the recorded ones (`--force`).
    pub force: bool,
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub exit_code: i32,
    pub status: String,
    pub message: Option<String>,
    pub trace_dir: Option<PathBuf>,
    pub verdict: Option<String>,
    /// One line per online verdict (experiment steps).
    pub verdicts: Vec<String>,
    pub events: BTreeMap<String, u64>,
}

impl RunOutcome {
    fn early(code: i32, status: &str, message: String) -> RunOutcome {
        RunOutcome {
            exit_code: code,
            status: status.into(),
            message: Some(message),
            trace_dir: None,
            verdict: None,
            verdicts: Vec::new(),
            events: BTreeMap::new(),
        }
    }
}

/// The outcome of a scenario refused before anything started: exit 3, every error rendered as
/// a diagnostic, separated by blank lines (printed as they are).
fn invalid(errors: Vec<String>) -> RunOutcome {
    RunOutcome::early(exit::BAD_SCENARIO, "invalid", errors.join("\n\n"))
}

/// A unique run id: UTC time plus pid and a few clock bits.
pub fn new_run_id() -> String {
    let now = chrono::Utc::now();
    let salt = (now_ns() as u64 ^ u64::from(std::process::id()).rotate_left(17)) & 0xffff;
    format!("{}-{:04x}", now.format("%Y%m%dT%H%M%S"), salt)
}

// ---------------------------------------------------------------------------------------------
// writer task

type ManifestEdit = Box<dyn FnOnce(&mut Manifest) + Send>;

enum WriterCmd {
    Manifest(ManifestEdit),
    Finish(oneshot::Sender<Result<FinalizeSummary, TraceError>>),
}

/// Handle on the writer thread.
#[derive(Clone)]
pub struct WriterHandle {
    cmd: mpsc::UnboundedSender<WriterCmd>,
    error: Arc<Mutex<Option<String>>>,
    /// Cancelled on the first write error (a full disk, a removed directory): the writer then
    /// writes nothing more and the run ends.
    failed: CancellationToken,
}

impl WriterHandle {
    /// Applies an edit to the manifest (rewritten atomically by the writer).
    pub fn update_manifest(&self, f: impl FnOnce(&mut Manifest) + Send + 'static) {
        let _ = self.cmd.send(WriterCmd::Manifest(Box::new(f)));
    }

    /// Drains every queued event, then finalizes the trace.
    pub async fn finish(&self) -> Result<FinalizeSummary, String> {
        let (tx, rx) = oneshot::channel();
        if self.cmd.send(WriterCmd::Finish(tx)).is_err() {
            return Err(self
                .first_error()
                .unwrap_or_else(|| "trace writer stopped".into()));
        }
        match rx.await {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(self
                .first_error()
                .unwrap_or_else(|| "trace writer stopped".into())),
        }
    }

    /// Resolves once the writer has failed (see [`WriterHandle::first_error`]).
    pub async fn failed(&self) {
        self.failed.cancelled().await
    }

    /// The first write error, if any.
    pub fn first_error(&self) -> Option<String> {
        match self.error.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
}

/// Starts the writer on its own thread. Each of `live` receives every appended event with its
/// seq (for the live monitors of `expect` steps and of halt conditions).
///
/// On the first write error the writer stops writing: it keeps the error, cancels
/// [`WriterHandle::failed`], discards what arrives afterwards and, at `finish`, returns the error
/// without finalizing. The event log then ends at the last record written before the error
/// (a torn record after it is cut by the reader), and nothing is written after a torn record.
pub fn spawn_writer(
    mut writer: TraceWriter,
    mut rx: EventReceiver,
    mut packets: mpsc::UnboundedReceiver<Vec<PacketRecord>>,
    live: Vec<mpsc::UnboundedSender<Event>>,
) -> std::io::Result<WriterHandle> {
    let (cmd_tx, mut cmd_rx) = mpsc::unbounded_channel::<WriterCmd>();
    let error = Arc::new(Mutex::new(None::<String>));
    let err2 = error.clone();
    let err3 = error.clone();
    let failed = CancellationToken::new();
    let failed2 = failed.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    std::thread::Builder::new()
        .name("trace-writer".into())
        .spawn(move || {
            let note_err = |e: &dyn std::fmt::Display| {
                if let Ok(mut g) = err2.lock() {
                    if g.is_none() {
                        *g = Some(e.to_string());
                    }
                }
                failed2.cancel();
            };
            let broken = || failed2.is_cancelled();
            rt.block_on(async move {
                let mut buf: Vec<Event> = Vec::with_capacity(4096);
                let mut tick = tokio::time::interval(Duration::from_millis(100));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut events_open = true;
                let mut packets_open = true;
                let append_all = |writer: &mut TraceWriter, buf: &mut Vec<Event>| {
                    for ev in buf.drain(..) {
                        if broken() {
                            // a failed writer writes nothing more (see above)
                            continue;
                        }
                        if live.is_empty() {
                            if let Err(e) = writer.append(ev) {
                                note_err(&e);
                            }
                            continue;
                        }
                        let mut copy = ev.clone();
                        match writer.append(ev) {
                            Ok(seq) => {
                                copy.seq = seq;
                                if let Some((last, rest)) = live.split_last() {
                                    for l in rest {
                                        let _ = l.send(copy.clone());
                                    }
                                    let _ = last.send(copy);
                                }
                            }
                            Err(e) => note_err(&e),
                        }
                    }
                };
                loop {
                    tokio::select! {
                        biased;
                        cmd = cmd_rx.recv() => match cmd {
                            Some(WriterCmd::Manifest(f)) => {
                                if !broken() {
                                    if let Err(e) = writer.update_manifest(f) {
                                        note_err(&e);
                                    }
                                }
                            }
                            Some(WriterCmd::Finish(done)) => {
                                rx.close();
                                loop {
                                    buf.clear();
                                    if rx.drain_into(&mut buf, 65536) == 0 {
                                        break;
                                    }
                                    append_all(&mut writer, &mut buf);
                                }
                                while let Ok(p) = packets.try_recv() {
                                    if broken() {
                                        continue;
                                    }
                                    if let Err(e) = writer.add_packets(p) {
                                        note_err(&e);
                                    }
                                }
                                if broken() {
                                    let e = match err3.lock() {
                                        Ok(g) => g.clone(),
                                        Err(p) => p.into_inner().clone(),
                                    };
                                    let _ = done.send(Err(TraceError::Invalid(format!(
                                        "trace writer failed: {}",
                                        e.unwrap_or_default()
                                    ))));
                                    // not flushed again on drop: after a failed write the log
                                    // must end at its last complete record
                                    std::mem::forget(writer);
                                } else {
                                    let _ = done.send(writer.finish());
                                }
                                return;
                            }
                            None => {
                                // every handle dropped without finish: flush and leave the log as is
                                if broken() {
                                    std::mem::forget(writer);
                                } else {
                                    let _ = writer.flush();
                                }
                                return;
                            }
                        },
                        // both lanes (events and the bounded log lane) at once
                        n = rx.recv_many(&mut buf, 8192), if events_open => {
                            if n == 0 {
                                events_open = false;
                            } else {
                                append_all(&mut writer, &mut buf);
                            }
                        }
                        p = packets.recv(), if packets_open => match p {
                            Some(p) => {
                                if !broken() {
                                    if let Err(e) = writer.add_packets(p) {
                                        note_err(&e);
                                    }
                                }
                            }
                            None => packets_open = false,
                        },
                        _ = tick.tick() => {
                            if !broken() {
                                if let Err(e) = writer.flush() {
                                    note_err(&e);
                                }
                            }
                        }
                    }
                }
            });
        })?;
    Ok(WriterHandle {
        cmd: cmd_tx,
        error,
        failed,
    })
}

// ---------------------------------------------------------------------------------------------
// helpers

fn schedule_request(f: &ScheduledFault, intended_ns: i64) -> FaultRequest {
    FaultRequest {
        action: f.action.clone(),
        args: f
            .params
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        target: f.target.clone(),
        duration: f.duration,
        experiment: None,
        step: None,
        intended_ns,
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Resolves `{run_id}` in the output pattern; default `traces/<run_id>`.
fn output_dir(opts: &RunOptions, sc: &LoadedScenario, run_id: &str) -> PathBuf {
    if let Some(o) = &opts.output {
        return PathBuf::from(o.to_string_lossy().replace("{run_id}", run_id));
    }
    match &sc.scenario.output {
        Some(o) => {
            let p = PathBuf::from(o.replace("{run_id}", run_id));
            if p.is_absolute() {
                p
            } else {
                sc.path.parent().map(|d| d.join(&p)).unwrap_or(p)
            }
        }
        None => PathBuf::from("traces").join(run_id),
    }
}

/// Whether progress goes to the terminal.
fn progress_enabled(opts: &RunOptions) -> bool {
    !opts.quiet && std::io::stderr().is_terminal()
}

/// Shared status for the progress line.
#[derive(Default)]
pub struct Progress {
    pub step: Mutex<String>,
}

impl Progress {
    /// Sets the current step description.
    pub fn set(&self, s: impl Into<String>) {
        if let Ok(mut g) = self.step.lock() {
            *g = s.into();
        }
    }
    fn get(&self) -> String {
        self.step.lock().map(|g| g.clone()).unwrap_or_default()
    }
}

fn spawn_progress(
    sink: &EventSink,
    progress: Arc<Progress>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let stats = sink.stats().clone();
    tokio::spawn(async move {
        let start = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            let per: Vec<String> = stats
                .per_source()
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            eprint!(
                "\r\x1b[K[{:>6.1}s] {} | {}",
                start.elapsed().as_secs_f64(),
                progress.get(),
                per.join(" ")
            );
        }
        eprint!("\r\x1b[K");
    })
}

fn recorder_event(kind: &str, message: impl Into<String>, data: serde_json::Value) -> Event {
    Event::new(now_ns(), "recorder", kind)
        .message(message)
        .data(&data)
}

/// Waits for Ctrl-C or SIGTERM and cancels `token`.
fn spawn_signal_watch(token: CancellationToken) {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(_) => {
                        let _ = tokio::signal::ctrl_c().await;
                        token.cancel();
                        return;
                    }
                };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        token.cancel();
    });
}

// ---------------------------------------------------------------------------------------------
// the run

/// What the plan execution reports.
#[derive(Debug, Clone)]
pub struct PlanResult {
    /// accept / fail / inconclusive for an experiment; `None` for a schedule or record-only run.
    pub verdict: Option<String>,
    /// One line per judged step.
    pub verdicts: Vec<String>,
    /// Set when a fault could not be applied (exit 5).
    pub error: Option<String>,
}

/// Everything the plan needs while running.
pub struct PlanContext {
    pub sink: EventSink,
    pub injector: Option<SharedInjector>,
    pub injector_error: Option<String>,
    pub progress: Arc<Progress>,
    /// Appended events with seqs (experiment mode only).
    pub live: Option<mpsc::UnboundedReceiver<Event>>,
    pub start: Instant,
    /// The recorded run this one replays (`--replay`): its bindings are reused.
    pub replay: Option<Arc<replay::Recorded>>,
}

/// What validation learnt.
struct Validated {
    /// The services `up` starts.
    services: Vec<String>,
    /// The resolved configuration (`compose config`, recorded in the manifest).
    config: String,
    compiled: Option<experiment::Compiled>,
    /// The halt conditions, compiled.
    halt: Option<Vec<halt::HaltMonitor>>,
    /// The fault scope (`[scope]`).
    scope: Option<faults::scope::Scope>,
}

/// Validates the scenario against the compose configuration. Every error is returned, rendered
/// as a diagnostic (`error: FILE:LINE:COL: message` and the source excerpt): `errs` (what
/// parsing and resolving found) with those of the checks here, the scenario's in file order,
/// then those of the spec files.
async fn validate(
    sc: &LoadedScenario,
    resolved: &Resolved,
    cli: &ComposeCli,
    project: &str,
    mut errs: Vec<ScenarioError>,
) -> Result<Validated, Vec<String>> {
    let mut other = Vec::new();
    let compose = if resolved.compose_files.iter().all(|p| p.is_file()) {
        match cli
            .services_and_config(&resolved.compose_files, project)
            .await
        {
            Ok(v) => Some(v),
            Err(e) => {
                other.push(format!(
                    "error: {}: compose configuration: {e}",
                    sc.path.display()
                ));
                None
            }
        }
    } else {
        // a compose file is missing (reported by resolve): nothing to check names against
        None
    };
    let (services, config) = compose.unwrap_or_default();
    // `None` (configuration not parsed): network names are then checked when used
    let networks = compose::project_networks(&config);
    let facts = compose::scope_facts(&config);
    let mut scope = None;
    if let (false, Some(f)) = (config.is_empty(), &facts) {
        let (s, mut e) = sc.resolve_scope(&services, f);
        errs.append(&mut e);
        if let Some(s) = &s {
            errs.extend(sc.check_scope(s, f, project));
        }
        scope = s;
    }
    if !config.is_empty() {
        let check = |f: &ScheduledFault| faults::validate(&schedule_request(f, 0), &services);
        if let Err(e) = sc.check_against(&services, &check) {
            errs.extend(e.0);
        }
        if let Some(n) = &networks {
            if let Err(e) = sc.check_networks(n) {
                errs.extend(e.0);
            }
        }
    }
    let mut compiled = None;
    if let Plan::Experiment { specs, name, .. } = &resolved.plan {
        if specs.iter().all(|p| p.is_file()) {
            let known = (!config.is_empty()).then_some(services.as_slice());
            match experiment::compile(specs, name, known, networks.as_deref()) {
                Ok(c) => compiled = Some(c),
                Err(mut e) => other.append(&mut e),
            }
        }
    }
    if let (Some(c), Some(s), Some(f)) = (&compiled, &scope, &facts) {
        let on_network = |n: &str| f.networks.get(n).cloned();
        let container = |c: &str| f.container_service(project, c);
        for (i, step) in c.steps.iter().enumerate() {
            if c.uses_bindings(i) {
                // a bound target is known when the step starts; the injector checks it against
                // the scope when it resolves it (`check_resolved`)
                continue;
            }
            if let experiment::ExpStep::Do {
                text, at, target, ..
            } = step
            {
                if let Err(m) = s.check_names(target, &on_network, &container) {
                    other.push(experiment::diagnostic_at(
                        at,
                        text,
                        &format!("experiment {}, step {} `{text}`: {m}", c.name, i + 1),
                    ));
                }
            }
        }
    }
    let mut halt_monitors = None;
    if let Some(h) = &resolved.halt {
        if !h.monitors.is_empty() && !h.specs.is_empty() && h.specs.iter().all(|p| p.is_file()) {
            match halt::compile(h, &sc.path, &sc.text) {
                Ok(m) => halt_monitors = Some(m),
                Err(mut e) => other.append(&mut e),
            }
        }
    }
    let mut errs = scenario::ScenarioErrors(errs);
    errs.sort();
    let mut all: Vec<String> = errs.0.iter().map(ScenarioError::render).collect();
    all.extend(other);
    if all.is_empty() {
        Ok(Validated {
            services,
            config,
            compiled,
            halt: halt_monitors,
            scope,
        })
    } else {
        Err(all)
    }
}

/// Runs a scenario to the end. Never panics on bad input; always tears down what it started.
pub async fn run(opts: RunOptions) -> RunOutcome {
    let interrupt = CancellationToken::new();
    spawn_signal_watch(interrupt.clone());

    // 1. scenario: every error is collected (unknown keys, values, then the checks against the
    // compose configuration and the specs) and reported at once
    let (sc, mut errs) = match LoadedScenario::load_lenient(&opts.scenario) {
        Ok(s) => s,
        Err(e) => return invalid(e.0.iter().map(ScenarioError::render).collect()),
    };
    let (resolved, mut resolve_errs) = sc.resolve_partial();
    errs.append(&mut resolve_errs);
    let run_id = new_run_id();
    let project = opts
        .project
        .clone()
        .or_else(|| resolved.project.clone())
        .unwrap_or_else(|| format!("ctk{}", run_id.replace(['T', '-'], "").to_lowercase()));
    // the spec files of the run (experiment and halt conditions), recorded with their hashes
    let mut spec_files: Vec<PathBuf> = match &resolved.plan {
        Plan::Experiment { specs, .. } => specs.clone(),
        _ => Vec::new(),
    };
    for p in resolved.halt.iter().flat_map(|h| h.specs.iter()) {
        if !spec_files.contains(p) {
            spec_files.push(p.clone());
        }
    }
    let recorded = match &opts.replay {
        None => None,
        Some(dir) => match replay::load(dir, &sc.path, &spec_files, opts.force) {
            Ok(r) => Some(r),
            Err(e @ replay::ReplayError::Changed(_)) => {
                return RunOutcome::early(exit::BAD_SCENARIO, "error", e.to_string())
            }
            Err(e) => return RunOutcome::early(exit::TRACE, "error", e.to_string()),
        },
    };
    let seed = opts
        .seed
        .or(recorded.as_ref().and_then(|r| r.manifest.seed))
        .or(sc.scenario.seed)
        .unwrap_or_else(|| now_ns() as u64);
    let replay_choices = recorded
        .as_ref()
        .map(|r| r.choices.clone())
        .unwrap_or_default();
    let replayed = recorded.clone().map(Arc::new);

    // 2. environment
    let cli = match ComposeCli::detect().await {
        Ok(c) => c,
        // what is known to be wrong with the scenario comes first
        Err(_) if !errs.is_empty() => {
            let mut e = scenario::ScenarioErrors(errs);
            e.sort();
            return invalid(e.0.iter().map(ScenarioError::render).collect());
        }
        Err(e) => return RunOutcome::early(exit::ENV, "error", e.to_string()),
    };
    let Validated {
        services,
        config,
        compiled,
        halt: halt_monitors,
        scope,
    } = match validate(&sc, &resolved, &cli, &project, errs).await {
        Ok(v) => v,
        Err(errs) => return invalid(errs),
    };
    if opts.check_only {
        return RunOutcome::early(
            exit::ACCEPT,
            "valid",
            format!("{}: scenario is valid", sc.path.display()),
        );
    }
    let docker = match bollard::Docker::connect_with_local_defaults() {
        Ok(d) => match d.negotiate_version().await {
            Ok(d) => d,
            Err(e) => return RunOutcome::early(exit::ENV, "error", format!("docker engine: {e}")),
        },
        Err(e) => return RunOutcome::early(exit::ENV, "error", format!("docker engine: {e}")),
    };

    // 3. trace
    let trace_dir = output_dir(&opts, &sc, &run_id);
    let mut manifest = Manifest {
        format_version: trace::FORMAT_VERSION,
        run_id: run_id.clone(),
        started_ns: Some(now_ns()),
        recorder_version: format!("recorder {}", env!("CARGO_PKG_VERSION")),
        seed: Some(seed),
        ..Manifest::default()
    };
    manifest.host.hostname = hostname();
    manifest.host.os = std::env::consts::OS.to_string();
    manifest.host.kernel = kernel();
    manifest.host.compose_command = cli.describe();
    let host_features = faults::host_features().await;
    manifest.host.features = host_features.clone();
    if let Ok(v) = docker.version().await {
        manifest.host.docker_version = v.version.unwrap_or_default();
        manifest.host.docker_api_version = v.api_version.unwrap_or_default();
    }
    manifest.compose.project = project.clone();
    manifest.compose.files = resolved
        .compose_files
        .iter()
        .map(|p| ComposeFile {
            path: p.display().to_string(),
            sha256: compose::file_sha256(p).unwrap_or_default(),
        })
        .collect();
    // which scenario and specs this run is a run of (`analyzer flaky` groups by them)
    manifest.scenario = ScenarioInfo {
        name: ScenarioInfo::name_of(&sc.path),
        path: sc.path.display().to_string(),
        sha256: compose::file_sha256(&sc.path).unwrap_or_default(),
    };
    manifest.specs = spec_files
        .iter()
        .map(|p| ComposeFile {
            path: p.display().to_string(),
            sha256: compose::file_sha256(p).unwrap_or_default(),
        })
        .collect();
    manifest.sensors = serde_json::to_value(&sc.scenario.sensors).unwrap_or_default();
    manifest.schedule = match (&sc.scenario.experiment, sc.scenario.schedule.is_empty()) {
        (Some(x), _) => serde_json::json!({"experiment": x}),
        (None, false) => serde_json::json!({"schedule": sc.scenario.schedule}),
        _ => serde_json::Value::Null,
    };
    // the halt conditions and the fault scope go with the plan
    for (key, v) in [
        ("halt", serde_json::to_value(&sc.scenario.halt).ok()),
        (
            "scope",
            scope
                .as_ref()
                .map(|s| serde_json::json!({"services": s.services()})),
        ),
    ] {
        if let Some(v) = v.filter(|v| !v.is_null()) {
            if !manifest.schedule.is_object() {
                manifest.schedule = serde_json::json!({});
            }
            if let Some(o) = manifest.schedule.as_object_mut() {
                o.insert(key.to_string(), v);
            }
        }
    }
    manifest.replay_of = recorded.as_ref().map(replay::Recorded::replay_of);
    if let Some(parent) = trace_dir.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let writer = match TraceWriter::create(&trace_dir, manifest) {
        Ok(w) => w,
        Err(e) => {
            return RunOutcome::early(
                exit::TRACE,
                "error",
                // trace errors name their file already
                e.to_string(),
            );
        }
    };
    let (sink, rx) = EventSink::channel();
    let (packet_sink, packet_rx) = PacketSink::channel();
    let mut live_txs = Vec::new();
    let live_rx = compiled.is_some().then(|| {
        let (a, b) = mpsc::unbounded_channel();
        live_txs.push(a);
        b
    });
    let halt_rx = halt_monitors.is_some().then(|| {
        let (a, b) = mpsc::unbounded_channel();
        live_txs.push(a);
        b
    });
    let cool_down = resolved
        .halt
        .as_ref()
        .map(|h| h.cool_down)
        .unwrap_or_default();
    let writer = match spawn_writer(writer, rx, packet_rx, live_txs) {
        Ok(w) => w,
        Err(e) => {
            return RunOutcome::early(
                exit::TRACE,
                "error",
                format!("{}: writer thread: {e}", trace_dir.display()),
            )
        }
    };

    // from here on, teardown always runs
    let progress = Arc::new(Progress::default());
    let progress_stop = CancellationToken::new();
    let progress_task = progress_enabled(&opts)
        .then(|| spawn_progress(&sink, progress.clone(), progress_stop.clone()));
    compose::register_project(&project);
    sink.emit(recorder_event(
        "run",
        format!("run {run_id} of project {project} started"),
        serde_json::json!({"phase": "start", "run_id": run_id, "project": project, "seed": seed}),
    ));

    let mut session = Session {
        docker: docker.clone(),
        cli: cli.clone(),
        files: resolved.compose_files.clone(),
        project: project.clone(),
        sink: sink.clone(),
        writer: writer.clone(),
        docker_sensors: None,
        injector: None,
        sensor_stop: CancellationToken::new(),
        sensor_tasks: Vec::new(),
        otlp: None,
    };

    let body = async {
        let start_ns = now_ns();
        let cfg = DockerSensorsConfig {
            events: sc.scenario.sensors.events,
            logs: sc.scenario.sensors.logs,
            stats_interval: resolved.stats_interval,
            own_execs: sc
                .scenario
                .sensors
                .exec
                .iter()
                .map(|e| (e.service.get_ref().clone(), e.cmd.join(" ")))
                .collect(),
        };
        let (ds, mut starts) =
            DockerSensors::start(docker.clone(), &project, sink.clone(), cfg, start_ns);
        session.docker_sensors = Some(ds);

        // the configuration validation read: compose config does not run twice
        let red = compose::redact_config(&config);
        writer.update_manifest(move |m| m.compose.resolved_config = red);
        // the OTLP receiver listens before the services start sending
        if let Some(o) = &sc.scenario.sensors.otlp {
            progress.set("otlp receiver");
            match crate::otlp::start(o, &docker, &project, &config, &trace_dir, &sink).await {
                Ok(run) => {
                    session.files.push(run.override_file.clone());
                    session.otlp = Some(run);
                }
                Err(e) => return Err((exit::ENV, "error", e)),
            }
        }
        progress.set("compose up");
        if let Err(e) = cli.up(&session.files, &project).await {
            return Err((exit::ENV, "error", e.to_string()));
        }
        progress.set("waiting for containers");
        let state =
            match compose::wait_ready(&docker, &project, &services, resolved.up_timeout).await {
                Ok(s) => s,
                Err(e) => return Err((exit::ENV, "error", e.to_string())),
            };
        let st2 = state.clone();
        writer.update_manifest(move |m| st2.fill(&mut m.compose));
        sink.emit(recorder_event(
            "ready",
            format!("{} containers ready", state.containers.len()),
            serde_json::json!({"containers": state.containers.iter().map(|c| &c.name).collect::<Vec<_>>()}),
        ));
        if let Some(ds) = &session.docker_sensors {
            ds.attach(&state.containers);
        }

        // protocol sensors
        let mut manifest_now = Manifest::default();
        manifest_now.compose.project = project.clone();
        state.fill(&mut manifest_now.compose);
        let ctx = SensorContext {
            docker: docker.clone(),
            project: project.clone(),
            containers: state.containers.clone(),
            networks: state.networks.clone(),
            manifest: Arc::new(manifest_now),
            pcap_dir: trace_dir.join(trace::files::PCAP_DIR),
            packets: packet_sink.clone(),
        };
        start_sensors(&mut session, &sc, &ctx);

        // faults
        let (injector, injector_error) =
            match FaultInjector::new(docker.clone(), &project, sink.clone(), seed) {
                Ok(mut i) => {
                    i.set_features(host_features.clone());
                    i.set_scope(scope.clone());
                    i.set_replay_choices(replay_choices.clone());
                    let inj = Arc::new(tokio::sync::Mutex::new(i));
                    // the first fault should not pay for inspecting the project; nor should the
                    // plan wait for it (a fault that comes first waits on the lock)
                    let warm = inj.clone();
                    tokio::spawn(async move {
                        let _ = warm.lock().await.prepare().await;
                    });
                    (Some(inj), None)
                }
                Err(e) => (None, Some(e.to_string())),
            };
        session.injector = injector.clone();
        if let Some(inj) = injector.clone() {
            // restarts wipe netns impairments: let the injector re-apply or record them
            tokio::spawn(async move {
                while let Some(s) = starts.recv().await {
                    inj.lock().await.on_container_restart(&s.id).await;
                }
            });
        }

        let halt_start_ns = now_ns();
        let pctx = PlanContext {
            sink: sink.clone(),
            injector: injector.clone(),
            injector_error,
            progress: progress.clone(),
            live: live_rx,
            start: Instant::now(),
            replay: replayed.clone(),
        };
        let plan = execute_plan(pctx, &resolved, compiled, &state);
        match (halt_monitors, halt_rx) {
            (Some(m), Some(rx)) => {
                let watch = halt::watch(m, rx, injector, sink.clone(), halt_start_ns, cool_down);
                tokio::select! {
                    biased;
                    h = watch => {
                        // the plan is dropped: nothing more is applied; the recovery is recorded
                        progress.set("halted: cool-down");
                        tokio::time::sleep(cool_down).await;
                        let p = PlanResult { verdict: None, verdicts: Vec::new(), error: None };
                        Ok((p, Some(h)))
                    }
                    p = plan => Ok((p, None)),
                }
            }
            _ => Ok((plan.await, None)),
        }
    };

    let limit = resolved.time_limit;
    // a panic anywhere in the body must still lead to teardown
    let body = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(body));
    let result = tokio::select! {
        r = body => Some(match r {
            Ok(r) => r,
            Err(_) => Err((exit::ENV, "error", "internal error: the run loop panicked".to_string())),
        }),
        _ = interrupt.cancelled() => None,
        _ = tokio::time::sleep(limit) => Some(Err((exit::INCONCLUSIVE, "timeout", format!("time limit of {limit:?} reached")))),
        // a full disk (or any write error) ends the run: nothing more can be recorded
        _ = writer.failed() => Some(Err((exit::TRACE, "error", format!(
            "{}: trace writer failed, run stopped: {}",
            trace_dir.display(),
            writer.first_error().unwrap_or_default()
        )))),
    };
    let (code, status, message, verdict, verdicts) = match result {
        None => (
            exit::INTERRUPTED,
            "interrupted".to_string(),
            Some("interrupted by signal".to_string()),
            None,
            Vec::new(),
        ),
        Some(Err((c, s, m))) => (c, s.to_string(), Some(m), None, Vec::new()),
        Some(Ok((_, Some(h)))) => {
            let m = format!(
                "halted: `{}` failed at {} (seq {}): {}; {} fault(s) reverted {:.1} ms after the deciding event",
                h.monitor,
                monitor::fmt_ts(h.deciding_ts_ns),
                h.deciding_seq
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "none, a timeout".into()),
                h.explanation,
                h.reverted.len(),
                h.latency_ns as f64 / 1e6
            );
            (
                exit::HALTED,
                "halted".into(),
                Some(m.clone()),
                None,
                vec![m],
            )
        }
        Some(Ok((p, None))) => {
            if let Some(e) = p.error {
                (exit::ENV, "error".into(), Some(e), p.verdict, p.verdicts)
            } else {
                let code = match p.verdict.as_deref() {
                    Some("fail") => exit::FAIL,
                    Some("inconclusive") => exit::INCONCLUSIVE,
                    _ => exit::ACCEPT,
                };
                let status = if code == exit::FAIL {
                    "failed"
                } else {
                    "completed"
                };
                (code, status.into(), None, p.verdict, p.verdicts)
            }
        }
    };

    progress.set("teardown");
    let teardown_errors = session.teardown().await;
    progress_stop.cancel();
    if let Some(t) = progress_task {
        let _ = t.await;
    }
    let ended = now_ns();
    let outcome = Outcome {
        status: status.clone(),
        message: message.clone(),
        verdict: verdict.clone(),
    };
    let td_err = teardown_errors.clone();
    writer.update_manifest(move |m| {
        m.ended_ns = Some(ended);
        m.outcome = Some(outcome);
        if !td_err.is_empty() {
            m.extra
                .insert("teardown_errors".into(), serde_json::json!(td_err));
        }
    });
    let events = sink.stats().per_source();
    drop(sink);
    drop(session);
    let fin = writer.finish().await;
    compose::unregister_project(&project);
    let mut out = RunOutcome {
        exit_code: code,
        status,
        message,
        trace_dir: Some(trace_dir.clone()),
        verdict,
        verdicts,
        events,
    };
    if !teardown_errors.is_empty() {
        let m = format!("teardown: {}", teardown_errors.join("; "));
        out.message = Some(match out.message {
            Some(x) => format!("{x}; {m}"),
            None => m,
        });
        if out.exit_code == exit::ACCEPT {
            out.exit_code = exit::ENV;
        }
    }
    if let Some(e) = writer.first_error() {
        // the log ends at the last record written before the error; finalize needs space
        out.message = Some(format!(
            "{}: trace writer failed: {e}; faults were reverted and the project torn down; the \
             event log keeps what was written before the failure (`analyzer finalize {}` once \
             the disk has room){}",
            trace_dir.display(),
            trace_dir.display(),
            if teardown_errors.is_empty() {
                String::new()
            } else {
                format!("; teardown: {}", teardown_errors.join("; "))
            }
        ));
        out.status = "error".into();
        if out.exit_code != exit::INTERRUPTED {
            out.exit_code = exit::TRACE;
        }
    } else if let Err(e) = fin {
        out.message = Some(format!(
            "{}: cannot finalize trace: {e}",
            trace_dir.display()
        ));
        if out.exit_code != exit::INTERRUPTED {
            out.exit_code = exit::TRACE;
        }
    }
    out
}

fn start_sensors(session: &mut Session, sc: &LoadedScenario, ctx: &SensorContext) {
    let reg = SensorRegistry::builtin();
    let cfg = &sc.scenario.sensors;
    let asked: Vec<&str> = [
        ("jmx", cfg.jmx.is_some()),
        ("http", !cfg.http.is_empty()),
        ("prom", !cfg.prom.is_empty()),
        ("exec", !cfg.exec.is_empty()),
        ("pcap", cfg.pcap.is_some()),
    ]
    .into_iter()
    .filter(|(_, on)| *on)
    .map(|(n, _)| n)
    .collect();
    let names = reg.names();
    for a in asked {
        if !names.contains(&a) {
            session.sink.emit(recorder_event(
                "sensor_error",
                format!("sensor `{a}` is configured but not available in this build"),
                serde_json::json!({"sensor": a, "error": "not available"}),
            ));
        }
    }
    match reg.build(cfg, ctx) {
        Ok(sensors) => {
            for s in sensors {
                let name = s.name().to_string();
                let fut = s.run(
                    ctx.clone(),
                    session.sink.clone(),
                    session.sensor_stop.clone(),
                );
                let sink = session.sink.clone();
                session.sensor_tasks.push(tokio::spawn(async move {
                    // a panicking sensor must not take the run down: record it
                    if let Err(e) = tokio::spawn(fut).await {
                        sink.emit(recorder_event(
                            "sensor_error",
                            format!("sensor {name} stopped: {e}"),
                            serde_json::json!({"sensor": name, "error": e.to_string()}),
                        ));
                    }
                }));
            }
        }
        Err(errs) => {
            for e in errs {
                session.sink.emit(recorder_event(
                    "sensor_error",
                    e.clone(),
                    serde_json::json!({"error": e}),
                ));
            }
        }
    }
}

/// What teardown needs; dropped after teardown.
struct Session {
    docker: bollard::Docker,
    cli: ComposeCli,
    files: Vec<PathBuf>,
    project: String,
    sink: EventSink,
    #[allow(dead_code)]
    writer: WriterHandle,
    docker_sensors: Option<DockerSensors>,
    injector: Option<SharedInjector>,
    sensor_stop: CancellationToken,
    sensor_tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The OTLP receiver: stopped after `compose down`, so the services' last exports are in.
    otlp: Option<crate::otlp::OtlpRun>,
}

impl Session {
    /// Reverts faults, drains sensors, takes the project down, removes leftovers. Returns the
    /// problems met (teardown goes on past each).
    async fn teardown(&mut self) -> Vec<String> {
        let mut errs = Vec::new();
        self.sink.emit(recorder_event(
            "teardown",
            "teardown started",
            serde_json::json!({"phase": "start"}),
        ));
        if let Some(inj) = &self.injector {
            let revert = async { inj.lock().await.revert_all().await };
            if tokio::time::timeout(Duration::from_secs(60), revert)
                .await
                .is_err()
            {
                errs.push("reverting faults timed out".to_string());
            }
        }
        self.sensor_stop.cancel();
        for t in self.sensor_tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
        if let Some(ds) = &self.docker_sensors {
            ds.stop_followers().await;
        }
        match tokio::time::timeout(
            Duration::from_secs(120),
            self.cli.down(&self.files, &self.project),
        )
        .await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => errs.push(e.to_string()),
            Err(_) => errs.push("compose down timed out".into()),
        }
        // whatever down left (e.g. containers it did not know about)
        match compose::remove_project(&self.docker, &self.project).await {
            Ok(r) => {
                if !r.containers.is_empty() || !r.networks.is_empty() {
                    self.sink.emit(recorder_event(
                        "cleanup",
                        format!("removed leftovers: {:?} {:?}", r.containers, r.networks),
                        serde_json::json!({"containers": r.containers, "networks": r.networks}),
                    ));
                }
                errs.extend(r.errors);
            }
            Err(e) => errs.push(format!("cleanup: {e}")),
        }
        if let Err(e) = faults::cleanup_host(&self.project).await {
            errs.push(format!("host rules cleanup: {e}"));
        }
        if let Some(o) = self.otlp.take() {
            o.stop().await;
        }
        if let Some(ds) = self.docker_sensors.take() {
            ds.stop_events().await;
        }
        self.sink.emit(recorder_event(
            "teardown",
            "teardown done",
            serde_json::json!({"phase": "end", "errors": errs}),
        ));
        errs
    }
}

/// Runs the plan: record only, a timed schedule, or an experiment.
async fn execute_plan(
    mut ctx: PlanContext,
    resolved: &Resolved,
    compiled: Option<experiment::Compiled>,
    state: &ProjectState,
) -> PlanResult {
    match &resolved.plan {
        Plan::RecordOnly => {
            ctx.progress.set("recording");
            let d = resolved.duration.unwrap_or(resolved.time_limit);
            tokio::time::sleep(d).await;
            PlanResult {
                verdict: None,
                verdicts: Vec::new(),
                error: None,
            }
        }
        Plan::Schedule(faults) => run_schedule(&ctx, faults, resolved.duration).await,
        Plan::Experiment { name, settle, .. } => {
            let Some(compiled) = compiled else {
                return PlanResult {
                    verdict: Some("inconclusive".into()),
                    verdicts: Vec::new(),
                    error: Some("experiment not compiled".into()),
                };
            };
            tokio::time::sleep(*settle).await;
            let live = ctx.live.take();
            experiment::run(&ctx, compiled, name, live, state).await
        }
    }
}

async fn run_schedule(
    ctx: &PlanContext,
    faults: &[ScheduledFault],
    duration: Option<Duration>,
) -> PlanResult {
    let mut last_end = Duration::ZERO;
    let mut reverts = Vec::new();
    // the wall-clock time of `ctx.start`, the instant the offsets count from
    let base_ns = now_ns() - i64::try_from(ctx.start.elapsed().as_nanos()).unwrap_or(0);
    for f in faults {
        let Some(inj) = ctx.injector.clone() else {
            return PlanResult {
                verdict: None,
                verdicts: Vec::new(),
                error: Some(format!(
                    "fault injector unavailable: {}",
                    ctx.injector_error.clone().unwrap_or_default()
                )),
            };
        };
        let due = ctx.start + f.at;
        ctx.progress.set(format!(
            "waiting for fault #{} ({}) at {:?}",
            f.index, f.action, f.at
        ));
        tokio::time::sleep_until(due.into()).await;
        ctx.progress.set(format!("fault #{} {}", f.index, f.action));
        let intended = base_ns + i64::try_from(f.at.as_nanos()).unwrap_or(i64::MAX);
        let req = schedule_request(f, intended);
        let applied = inj.lock().await.apply(&req).await;
        match applied {
            Ok(id) => {
                if let Some(d) = f.duration {
                    last_end = last_end.max(f.at + d);
                    let inj2 = inj.clone();
                    reverts.push(tokio::spawn(async move {
                        tokio::time::sleep_until((due + d).into()).await;
                        inj2.lock().await.revert(id).await;
                    }));
                } else {
                    last_end = last_end.max(f.at);
                }
            }
            Err(e) => {
                return PlanResult {
                    verdict: None,
                    verdicts: Vec::new(),
                    error: Some(format!("fault #{} `{}`: {e}", f.index, f.action)),
                };
            }
        }
    }
    for r in reverts {
        let _ = r.await;
    }
    let until = duration.unwrap_or(last_end + Duration::from_secs(2));
    ctx.progress.set("recording");
    tokio::time::sleep_until((ctx.start + until).into()).await;
    PlanResult {
        verdict: None,
        verdicts: Vec::new(),
        error: None,
    }
}

/// `recorder cleanup`: removes containers and networks of the given (or every leftover) project,
/// and the host rules the fault injector left.
pub async fn cleanup(project: Option<&str>, all: bool) -> Result<Vec<String>, String> {
    let docker = bollard::Docker::connect_with_local_defaults()
        .map_err(|e| format!("docker engine: {e}"))?
        .negotiate_version()
        .await
        .map_err(|e| format!("docker engine: {e}"))?;
    let projects: Vec<String> = match (project, all) {
        (Some(p), _) => vec![p.to_string()],
        (None, true) => compose::leftover_projects(&docker)
            .await
            .map_err(|e| e.to_string())?,
        (None, false) => return Err("give --project P or --all".into()),
    };
    let mut lines = Vec::new();
    for p in projects {
        // a killed recorder's compose command first (it would go on creating containers),
        // then its captures, so that their files are closed
        lines.extend(
            compose::stop_leftover_compose(&p)
                .await
                .into_iter()
                .map(|l| format!("{p}: {l}")),
        );
        lines.extend(crate::sensors::stop_leftover_captures(&p).await);
        // a syscall fault's tracer that is still alive (not a killed recorder: the kernel
        // detached its tracees when it died)
        match faults::traced_leftovers(&docker, &p).await {
            Ok(traced) => lines.extend(traced.into_iter().map(|t| format!("{p}: {t}"))),
            Err(e) => lines.push(format!("{p}: checking tracers: {e}")),
        }
        let r = compose::remove_project(&docker, &p)
            .await
            .map_err(|e| e.to_string())?;
        if let Err(e) = faults::cleanup_host(&p).await {
            lines.push(format!("{p}: host rules: {e}"));
        }
        compose::unregister_project(&p);
        lines.push(format!(
            "{p}: removed {} containers, {} networks{}",
            r.containers.len(),
            r.networks.len(),
            if r.errors.is_empty() {
                String::new()
            } else {
                format!(" (errors: {})", r.errors.join("; "))
            }
        ));
    }
    Ok(lines)
}

/// The relative or absolute path shown in the summary.
pub fn display_path(p: &Path) -> String {
    p.display().to_string()
}
