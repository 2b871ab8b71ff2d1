//! `recorder run`: the run loop. Validates the scenario ([`validate`]), creates the trace and
//! starts the writer task ([`writer`]), brings the project up, starts the sensors, executes the
//! plan ([`schedule`], an experiment or a timed schedule) under the time limit and the halt
//! conditions, and ALWAYS tears down ([`session`]): faults reverted, sensors drained,
//! `compose down`, leftovers removed, trace finalized — on success, on a failed step, on an
//! error, on Ctrl-C/SIGTERM, and when a task panics. [`outcome`] says how it ended,
//! [`progress`] draws the progress line, [`mod@cleanup`] is `recorder cleanup`.

pub mod cleanup;
pub mod outcome;
pub mod progress;
pub mod schedule;
pub mod session;
pub mod validate;
pub mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use monitor::Verdict;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use trace::kinds::{self, recorder};
use trace::manifest::{ComposeFile, Outcome, ScenarioInfo};
use trace::{Event, Manifest, TraceWriter};

use crate::compose::{self, ComposeCli, ProjectState};
use crate::experiment;
use crate::faults::{self, FaultInjector};
use crate::halt::{self, Halted};
use crate::plan::{PlanContext, PlanResult, Progress, SharedInjector};
use crate::replay;
use crate::scenario::{self, LoadedScenario, Plan, Resolved, ScenarioError};
use crate::sensors::docker::{DockerSensors, DockerSensorsConfig};
use crate::sensors::events::ContainerSignal;
use crate::sensors::{PacketSink, SensorContext};
use crate::sink::{now_ns, EventSink};

pub use crate::exit;
pub use cleanup::{cleanup, CleanupError};
pub use outcome::{RunError, RunOutcome, Status};
use session::Session;
use validate::Validated;
use writer::{spawn_writer, WriterHandle};

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

/// A unique run id: UTC time plus pid and a few clock bits.
pub fn new_run_id() -> String {
    let now = now_ns();
    let salt = (now as u64 ^ u64::from(std::process::id()).rotate_left(17)) & 0xffff;
    // `2026-12-01T17:55:00.123Z` → `20261201T175500`
    let stamp: String = trace::time::format_rfc3339_millis(now)
        .chars()
        .take(19)
        .filter(|c| *c != '-' && *c != ':')
        .collect();
    format!("{stamp}-{salt:04x}")
}

/// The relative or absolute path shown in the summary.
pub fn display_path(p: &Path) -> String {
    p.display().to_string()
}

/// A `recorder` event of this name, now.
fn event(name: kinds::Name, message: impl Into<String>, data: serde_json::Value) -> Event {
    name.at(now_ns()).message(message).data(&data)
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

/// The scenario errors, in file order, rendered as diagnostics.
fn rendered(errs: Vec<ScenarioError>) -> Vec<String> {
    let mut e = scenario::ScenarioErrors(errs);
    e.sort();
    e.0.iter().map(ScenarioError::render).collect()
}

/// A scenario checked against its compose configuration, and what the run takes from it.
struct Prepared {
    sc: LoadedScenario,
    resolved: Resolved,
    run_id: String,
    project: String,
    /// The spec files of the run (experiment and halt conditions), recorded with their hashes.
    spec_files: Vec<PathBuf>,
    /// `--replay`: the recorded run.
    recorded: Option<replay::Recorded>,
    seed: u64,
    cli: ComposeCli,
    validated: Validated,
}

/// Loads, resolves and validates the scenario (and the recorded run of `--replay`). Every error
/// of the scenario is collected (unknown keys, values, then the checks against the compose
/// configuration and the specs) and reported at once.
async fn prepare(opts: &RunOptions) -> Result<Prepared, RunError> {
    let (sc, mut errs) = LoadedScenario::load_lenient(&opts.scenario)
        .map_err(|e| RunError::Invalid(e.0.iter().map(ScenarioError::render).collect()))?;
    let (resolved, mut resolve_errs) = sc.resolve_partial();
    errs.append(&mut resolve_errs);
    let run_id = new_run_id();
    let project = opts
        .project
        .clone()
        .or_else(|| resolved.project.clone())
        .unwrap_or_else(|| format!("ctk{}", run_id.replace(['T', '-'], "").to_lowercase()));
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
        Some(dir) => Some(replay::load(dir, &sc.path, &spec_files, opts.force)?),
    };
    let seed = opts
        .seed
        .or(recorded.as_ref().and_then(|r| r.manifest.seed))
        .or(sc.scenario.seed)
        .unwrap_or_else(|| now_ns() as u64);
    let cli = match ComposeCli::detect().await {
        Ok(c) => c,
        // what is known to be wrong with the scenario comes first
        Err(_) if !errs.is_empty() => return Err(RunError::Invalid(rendered(errs))),
        Err(e) => return Err(e.into()),
    };
    let validated = validate::validate(&sc, &resolved, &cli, &project, errs)
        .await
        .map_err(RunError::Invalid)?;
    Ok(Prepared {
        sc,
        resolved,
        run_id,
        project,
        spec_files,
        recorded,
        seed,
        cli,
        validated,
    })
}

/// The manifest the trace starts with: the run, the host, the compose files, the scenario and
/// specs with their hashes, the sensors and the plan.
async fn new_manifest(
    p: &Prepared,
    docker: &bollard::Docker,
    started_ns: i64,
    host_features: &std::collections::BTreeMap<String, bool>,
) -> Manifest {
    let sc = &p.sc;
    let mut manifest = Manifest {
        format_version: trace::FORMAT_VERSION,
        run_id: p.run_id.clone(),
        started_ns: Some(started_ns),
        recorder_version: format!("recorder {}", env!("CARGO_PKG_VERSION")),
        seed: Some(p.seed),
        ..Manifest::default()
    };
    manifest.host.hostname = hostname();
    manifest.host.os = std::env::consts::OS.to_string();
    manifest.host.kernel = kernel();
    manifest.host.compose_command = p.cli.describe();
    manifest.host.features = host_features.clone();
    if let Ok(v) = docker.version().await {
        manifest.host.docker_version = v.version.unwrap_or_default();
        manifest.host.docker_api_version = v.api_version.unwrap_or_default();
    }
    manifest.compose.project = p.project.clone();
    let hashed = |p: &PathBuf| ComposeFile {
        path: p.display().to_string(),
        sha256: compose::file_sha256(p).unwrap_or_default(),
    };
    manifest.compose.files = p.resolved.compose_files.iter().map(hashed).collect();
    // which scenario and specs this run is a run of (`analyzer flaky` groups by them)
    manifest.scenario = ScenarioInfo {
        name: ScenarioInfo::name_of(&sc.path),
        path: sc.path.display().to_string(),
        sha256: compose::file_sha256(&sc.path).unwrap_or_default(),
    };
    manifest.specs = p.spec_files.iter().map(hashed).collect();
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
            p.validated
                .scope
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
    manifest.replay_of = p.recorded.as_ref().map(replay::Recorded::replay_of);
    manifest
}

/// A trace being written: the writer task and the channels into it.
struct Recording {
    trace_dir: PathBuf,
    writer: WriterHandle,
    sink: EventSink,
    packet_sink: PacketSink,
    /// Appended events for the experiment's live judges, when an experiment runs.
    live_rx: Option<mpsc::UnboundedReceiver<Event>>,
    /// Appended events for the halt conditions, when there are any.
    halt_rx: Option<mpsc::UnboundedReceiver<Event>>,
    host_features: std::collections::BTreeMap<String, bool>,
}

/// Creates the trace directory with its manifest and starts the writer task.
async fn start_trace(
    opts: &RunOptions,
    p: &Prepared,
    docker: &bollard::Docker,
) -> Result<Recording, RunError> {
    let trace_dir = output_dir(opts, &p.sc, &p.run_id);
    let started_ns = now_ns();
    let host_features = faults::host_features().await;
    let manifest = new_manifest(p, docker, started_ns, &host_features).await;
    if let Some(parent) = trace_dir.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let writer = TraceWriter::create(&trace_dir, manifest)?;
    let (sink, rx) = EventSink::channel();
    let (packet_sink, packet_rx) = PacketSink::channel();
    let mut live_txs = Vec::new();
    let mut live_channel = |on: bool| {
        on.then(|| {
            let (a, b) = mpsc::unbounded_channel();
            live_txs.push(a);
            b
        })
    };
    let live_rx = live_channel(p.validated.compiled.is_some());
    let halt_rx = live_channel(p.validated.halt.is_some());
    let writer =
        spawn_writer(writer, rx, packet_rx, live_txs).map_err(|e| RunError::WriterThread {
            dir: trace_dir.clone(),
            source: e,
        })?;
    Ok(Recording {
        trace_dir,
        writer,
        sink,
        packet_sink,
        live_rx,
        halt_rx,
        host_features,
    })
}

/// Runs a scenario to the end. Never panics on bad input; always tears down what it started.
pub async fn run(opts: RunOptions) -> RunOutcome {
    let interrupt = CancellationToken::new();
    spawn_signal_watch(interrupt.clone());
    let mut p = match prepare(&opts).await {
        Ok(p) => p,
        Err(e) => return RunOutcome::early(&e),
    };
    if opts.check_only {
        return RunOutcome::without_trace(
            exit::ACCEPT,
            Status::Valid,
            format!("{}: scenario is valid", p.sc.path.display()),
        );
    }
    let docker = match connect_docker().await {
        Ok(d) => d,
        Err(e) => return RunOutcome::early(&e),
    };
    let mut rec = match start_trace(&opts, &p, &docker).await {
        Ok(r) => r,
        Err(e) => return RunOutcome::early(&e),
    };

    // from here on, teardown always runs
    let progress = Arc::new(Progress::default());
    let progress_stop = CancellationToken::new();
    let progress_task = progress::enabled(opts.quiet)
        .then(|| progress::spawn(&rec.sink, progress.clone(), progress_stop.clone()));
    let (run_id, project, seed) = (&p.run_id, &p.project, p.seed);
    compose::register_project(project);
    rec.sink.emit(event(
        recorder::RUN,
        format!("run {run_id} of project {project} started"),
        serde_json::json!({"phase": "start", "run_id": run_id, "project": project, "seed": seed}),
    ));
    let mut session = Session {
        docker: docker.clone(),
        cli: p.cli.clone(),
        files: p.resolved.compose_files.clone(),
        project: project.clone(),
        sink: rec.sink.clone(),
        docker_sensors: None,
        injector: None,
        sensor_stop: CancellationToken::new(),
        sensor_tasks: Vec::new(),
        otlp: None,
    };

    let limit = p.resolved.time_limit;
    let taken = Taken {
        compiled: p.validated.compiled.take(),
        halt: p.validated.halt.take(),
        live_rx: rec.live_rx.take(),
        halt_rx: rec.halt_rx.take(),
    };
    let body = record(&p, &rec, taken, &mut session, &docker, &progress);
    // a panic anywhere in the body must still lead to teardown
    let body = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(body));
    let result = tokio::select! {
        r = body => r.unwrap_or(Err(RunError::Panicked)),
        _ = interrupt.cancelled() => Err(RunError::Interrupted),
        _ = tokio::time::sleep(limit) => Err(RunError::TimeLimit(limit)),
        // a full disk (or any write error) ends the run: nothing more can be recorded
        _ = rec.writer.failed() => Err(RunError::WriterFailed {
            dir: rec.trace_dir.clone(),
            error: rec.writer.first_error().unwrap_or_default(),
        }),
    };
    let ended = Ended::from(result);

    progress.set("teardown");
    let teardown_errors = session.teardown().await;
    progress_stop.cancel();
    if let Some(t) = progress_task {
        let _ = t.await;
    }
    let events = rec.sink.stats().per_source();
    drop(session);
    let out = finish(ended, teardown_errors, &rec, events).await;
    compose::unregister_project(&p.project);
    out
}

async fn connect_docker() -> Result<bollard::Docker, RunError> {
    bollard::Docker::connect_with_local_defaults()
        .map_err(RunError::Docker)?
        .negotiate_version()
        .await
        .map_err(RunError::Docker)
}

/// What the body of a run takes over from the validation and the trace: the compiled experiment
/// and halt conditions, and the live event channels they read.
struct Taken {
    compiled: Option<experiment::Compiled>,
    halt: Option<Vec<halt::HaltMonitor>>,
    live_rx: Option<mpsc::UnboundedReceiver<Event>>,
    halt_rx: Option<mpsc::UnboundedReceiver<Event>>,
}

/// The body of a run: the project brought up and watched, the plan executed under the halt
/// conditions. Returns the plan's result and, when a halt condition failed, the halt.
async fn record(
    p: &Prepared,
    rec: &Recording,
    taken: Taken,
    session: &mut Session,
    docker: &bollard::Docker,
    progress: &Arc<Progress>,
) -> Result<(PlanResult, Option<Halted>), RunError> {
    let (state, starts) = bring_up(p, rec, session, docker, progress).await?;

    // protocol sensors
    let mut manifest_now = Manifest::default();
    manifest_now.compose.project = p.project.clone();
    state.fill(&mut manifest_now.compose);
    let ctx = SensorContext {
        docker: docker.clone(),
        project: p.project.clone(),
        containers: state.containers.clone(),
        networks: state.networks.clone(),
        manifest: Arc::new(manifest_now),
        pcap_dir: rec.trace_dir.join(trace::files::PCAP_DIR),
        packets: rec.packet_sink.clone(),
    };
    session::start_sensors(session, &p.sc, &ctx);

    let (injector, injector_error) = start_injector(p, rec, docker, starts);
    session.injector = injector.clone();

    let halt_start_ns = now_ns();
    let pctx = PlanContext {
        sink: rec.sink.clone(),
        injector: injector.clone(),
        injector_error,
        progress: progress.clone(),
        live: taken.live_rx,
        start: Instant::now(),
        replay: p.recorded.clone().map(Arc::new),
    };
    let plan = schedule::execute_plan(pctx, &p.resolved, taken.compiled, &state);
    let cool_down = p
        .resolved
        .halt
        .as_ref()
        .map(|h| h.cool_down)
        .unwrap_or_default();
    match (taken.halt, taken.halt_rx) {
        (Some(m), Some(rx)) => {
            let watch = halt::watch(m, rx, injector, rec.sink.clone(), halt_start_ns, cool_down);
            tokio::select! {
                biased;
                h = watch => {
                    // the plan is dropped: nothing more is applied; the recovery is recorded
                    progress.set("halted: cool-down");
                    tokio::time::sleep(cool_down).await;
                    Ok((PlanResult::default(), Some(h)))
                }
                p = plan => Ok((p, None)),
            }
        }
        _ => Ok((plan.await, None)),
    }
}

/// Starts the Docker sensors, the OTLP receiver (before the services start sending), brings the
/// project up and waits for its containers. Returns the project's state and the container
/// (re)starts the Docker sensors see.
async fn bring_up(
    p: &Prepared,
    rec: &Recording,
    session: &mut Session,
    docker: &bollard::Docker,
    progress: &Progress,
) -> Result<(ProjectState, mpsc::UnboundedReceiver<ContainerSignal>), RunError> {
    let (sc, project) = (&p.sc, &p.project);
    let start_ns = now_ns();
    let cfg = DockerSensorsConfig {
        events: sc.scenario.sensors.events,
        logs: sc.scenario.sensors.logs,
        stats_interval: p.resolved.stats_interval,
        own_execs: sc
            .scenario
            .sensors
            .exec
            .iter()
            .map(|e| (e.service.get_ref().clone(), e.cmd.join(" ")))
            .collect(),
    };
    let (ds, starts) =
        DockerSensors::start(docker.clone(), project, rec.sink.clone(), cfg, start_ns);
    session.docker_sensors = Some(ds);

    // the configuration validation read: compose config does not run twice
    let config = &p.validated.config;
    let red = compose::redact_config(config);
    rec.writer
        .update_manifest(move |m| m.compose.resolved_config = red);
    if let Some(o) = &sc.scenario.sensors.otlp {
        progress.set("otlp receiver");
        let run = crate::otlp::start(o, docker, project, config, &rec.trace_dir, &rec.sink).await?;
        session.files.push(run.override_file.clone());
        session.otlp = Some(run);
    }
    progress.set("compose up");
    p.cli.up(&session.files, project).await?;
    progress.set("waiting for containers");
    let state = compose::wait_ready(
        docker,
        project,
        &p.validated.services,
        p.resolved.up_timeout,
    )
    .await?;
    let st2 = state.clone();
    rec.writer
        .update_manifest(move |m| st2.fill(&mut m.compose));
    rec.sink.emit(event(
        recorder::READY,
        format!("{} containers ready", state.containers.len()),
        serde_json::json!({"containers": state.containers.iter().map(|c| &c.name).collect::<Vec<_>>()}),
    ));
    if let Some(ds) = &session.docker_sensors {
        ds.attach(&state.containers);
    }
    Ok((state, starts))
}

/// The run's fault injector (or why there is none), warmed up in the background, with a task
/// that lets it re-apply or record network impairments when a container restarts.
fn start_injector(
    p: &Prepared,
    rec: &Recording,
    docker: &bollard::Docker,
    mut starts: mpsc::UnboundedReceiver<ContainerSignal>,
) -> (Option<SharedInjector>, Option<String>) {
    let mut i = match FaultInjector::new(docker.clone(), &p.project, rec.sink.clone(), p.seed) {
        Ok(i) => i,
        Err(e) => return (None, Some(e.to_string())),
    };
    i.set_features(rec.host_features.clone());
    i.set_scope(p.validated.scope.clone());
    i.set_replay_choices(
        p.recorded
            .as_ref()
            .map(|r| r.choices.clone())
            .unwrap_or_default(),
    );
    let inj: SharedInjector = Arc::new(tokio::sync::Mutex::new(i));
    // the first fault should not pay for inspecting the project; nor should the plan wait for
    // it (a fault that comes first waits on the lock)
    let warm = inj.clone();
    tokio::spawn(async move {
        let _ = warm.lock().await.prepare().await;
    });
    // restarts wipe netns impairments: let the injector re-apply or record them
    let watcher = inj.clone();
    tokio::spawn(async move {
        while let Some(s) = starts.recv().await {
            watcher.lock().await.on_container_restart(&s.id).await;
        }
    });
    (Some(inj), None)
}

/// How the body of a run ended, before teardown.
struct Ended {
    exit_code: i32,
    status: Status,
    message: Option<String>,
    verdict: Option<Verdict>,
    verdicts: Vec<String>,
}

impl From<Result<(PlanResult, Option<Halted>), RunError>> for Ended {
    fn from(r: Result<(PlanResult, Option<Halted>), RunError>) -> Ended {
        match r {
            Err(e) => Ended {
                exit_code: e.exit_code(),
                status: e.status(),
                message: Some(e.to_string()),
                verdict: None,
                verdicts: Vec::new(),
            },
            Ok((_, Some(h))) => {
                let m = h.summary();
                Ended {
                    exit_code: exit::HALTED,
                    status: Status::Halted,
                    message: Some(m.clone()),
                    verdict: None,
                    verdicts: vec![m],
                }
            }
            Ok((p, None)) => {
                if let Some(e) = p.error {
                    let e = RunError::Plan(e);
                    return Ended {
                        exit_code: e.exit_code(),
                        status: e.status(),
                        message: Some(e.to_string()),
                        verdict: p.verdict,
                        verdicts: p.verdicts,
                    };
                }
                let (exit_code, status) = match p.verdict {
                    Some(Verdict::Fail) => (exit::FAIL, Status::Failed),
                    Some(Verdict::Inconclusive) => (exit::INCONCLUSIVE, Status::Completed),
                    _ => (exit::ACCEPT, Status::Completed),
                };
                Ended {
                    exit_code,
                    status,
                    message: None,
                    verdict: p.verdict,
                    verdicts: p.verdicts,
                }
            }
        }
    }
}

/// Records the outcome in the manifest, finishes the trace and says how the run ended: a
/// teardown problem turns an accepted run into exit 5, a trace that could not be written or
/// finalized into exit 4 (an interrupted run keeps 130).
async fn finish(
    ended: Ended,
    teardown_errors: Vec<String>,
    rec: &Recording,
    events: std::collections::BTreeMap<String, u64>,
) -> RunOutcome {
    let (writer, trace_dir) = (&rec.writer, &rec.trace_dir);
    let ended_ns = now_ns();
    let outcome = Outcome {
        status: ended.status.as_str().to_string(),
        message: ended.message.clone(),
        verdict: ended.verdict.map(|v| v.as_str().to_string()),
    };
    let td_err = teardown_errors.clone();
    writer.update_manifest(move |m| {
        m.ended_ns = Some(ended_ns);
        m.outcome = Some(outcome);
        if !td_err.is_empty() {
            m.extra
                .insert("teardown_errors".into(), serde_json::json!(td_err));
        }
    });
    let fin = writer.finish().await;
    let mut out = RunOutcome {
        exit_code: ended.exit_code,
        status: ended.status,
        message: ended.message,
        trace_dir: Some(trace_dir.clone()),
        verdict: ended.verdict,
        verdicts: ended.verdicts,
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
        out.status = Status::Error;
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
