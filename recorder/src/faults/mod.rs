//! Fault injection from the host (see docs/faults.md): container faults through the Docker API
//! (kill, stop, start, restart, pause, unpause, disconnect, connect, exec, limits) and network
//! impairments inside the containers' network namespaces with the host's `iptables` and `tc`
//! (partition, heal, loss, bandwidth, netem), and in-process syscall faults with a ptrace tracer
//! on the host (`syscall`, see [`syscall`]), and HTTP and DNS faults served by the recorder
//! inside the target's network namespace behind a `nat` redirect (`http`, `dns`, see [`http`],
//! [`dns`], [`netns`]). Target images need no tools and no capabilities.
//!
//! [`FaultInjector`] applies [`FaultRequest`]s, writes one `fault` event per phase (applied,
//! failed, reverted, and reapplied/cleared after a container restart), remembers what each fault
//! changed so it can be reverted, and tags every rule with the compose project so
//! [`cleanup_host`] can remove what a killed recorder left behind.
//!
//! This module holds the injector's state, its fault events and the request types; the work is
//! split by seam: `apply` (one fault, action by action), `container` (Docker API faults),
//! `net` (iptables/tc impairments), `proxy` (the servers of `http`/`dns` faults), `revert` (one,
//! all, a halt, re-application after a restart), `leftovers` (what a killed recorder left).

mod apply;
mod container;
pub mod dns;
pub mod host;
pub mod http;
mod leftovers;
mod net;
pub mod netns;
mod proxy;
pub mod resolve;
mod revert;
pub mod rules;
pub mod scope;
pub mod spec;
pub mod syscall;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::models::{
    ContainerUpdateBody, EndpointIpamConfig, EndpointSettings, NetworkConnectRequest,
    NetworkDisconnectRequest,
};
use bollard::query_parameters::{
    KillContainerOptions, RestartContainerOptions, StopContainerOptions,
};
use bollard::Docker;
use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::sink::{now_ns, EventSink};
pub use leftovers::{cleanup_host, cleanup_with, traced_leftovers};
use resolve::{ContainerInfo, ProjectView, Resolved, SeededRng};
use rules::{Rule, Tags};
pub use spec::{Action, InvalidFault, Limits};

use leftovers::stop_tracers;
use net::{shared_addresses, NetInstall};
use proxy::ProxyInstall;

/// Who a fault acts on: the spec language's target (`monitor::FaultTarget`), which scenario
/// files and experiments both resolve to. For `partition` on a network, every pair on it; a
/// `Random` target is one service chosen (seeded) among those listed.
pub use monitor::FaultTarget;

/// One fault to apply: an experiment's `do` step or a timed schedule entry.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultRequest {
    pub action: String,
    pub args: Vec<(String, Value)>,
    pub target: FaultTarget,
    /// After this long the caller reverts the fault (recorded in the event's params).
    pub duration: Option<Duration>,
    pub experiment: Option<String>,
    pub step: Option<usize>,
    /// When the schedule wanted the fault (UTC ns).
    pub intended_ns: i64,
}

/// The id of an applied fault, written as `f<n>` in events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FaultId(pub u64);

impl std::fmt::Display for FaultId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "f{}", self.0)
    }
}

/// What went wrong applying or reverting a fault.
#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    /// A Docker API call failed.
    #[error("docker: {what}: {message}")]
    Docker { what: String, message: String },
    /// A host command (nsenter, iptables, tc) failed.
    #[error("`{command}` failed: {message}")]
    Command { command: String, message: String },
    /// The host cannot do this fault (e.g. no netem in the kernel).
    #[error("unsupported fault: {0}")]
    Unsupported(String),
    /// The request itself is wrong (unknown action, bad arguments).
    #[error("invalid fault: {0}")]
    Invalid(#[from] InvalidFault),
    /// The target does not resolve to containers.
    #[error("fault target: {0}")]
    Target(String),
    /// The fault ran but did not do what was asked (e.g. an exec'd command exited non-zero).
    #[error("{0}")]
    Failed(String),
}

/// What [`cleanup_host`] found and removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanupReport {
    /// Running containers of the project whose namespaces were checked.
    pub containers_checked: usize,
    /// iptables rules removed (jumps and rules in the project's chains).
    pub rules_removed: usize,
    /// Per-project chains removed.
    pub chains_removed: usize,
    /// Root qdiscs (tbf/netem) removed.
    pub qdiscs_removed: usize,
    /// Containers that were left paused and have been unpaused.
    pub unpaused: Vec<String>,
    /// Problems that did not stop the cleanup (one line each).
    pub errors: Vec<String>,
}

/// Checks a request before anything starts (unknown action, bad arguments, unknown services,
/// target shapes the action does not take).
pub fn validate(req: &FaultRequest, services: &[String]) -> Result<(), InvalidFault> {
    spec::validate(req, services)
}

/// Probes the host for the kernel features faults need (for `HostInfo.features` in the
/// manifest): `nsenter`, `iptables`, `iptables_statistic`, `tc`, `tbf`, `netem`.
pub async fn host_features() -> BTreeMap<String, bool> {
    host::probe_features().await
}

/// How to undo a fault.
#[derive(Debug, Clone)]
enum Undo {
    Start(Vec<String>),
    Unpause(Vec<String>),
    Reconnect(Vec<(String, String, EndpointSettings)>),
    Net {
        installs: Vec<NetInstall>,
        /// Container id → (pid, addresses) of every container the rules depend on.
        involved: BTreeMap<String, (i64, Vec<String>)>,
    },
    Limits(Vec<(String, ContainerUpdateBody)>),
    Exec {
        containers: Vec<String>,
        cmd: Vec<String>,
        user: Option<String>,
        timeout_ms: u64,
    },
    /// The tracers injecting a `syscall` fault, one per container.
    Syscall(Vec<std::sync::Arc<syscall::Tracer>>),
    /// The proxies or DNS responders of an `http`/`dns` fault and their redirect rules.
    Proxy(Vec<ProxyInstall>),
}

#[derive(Debug, Clone)]
struct Active {
    req: FaultRequest,
    action: Action,
    /// The target as resolved (a random choice fixed), for re-application.
    fixed_target: FaultTarget,
    target_json: Value,
    params: Value,
    single: Option<(String, String)>,
    undo: Undo,
}

/// Applies and reverts faults for one compose project, writing fault events to the sink.
pub struct FaultInjector {
    docker: Docker,
    project: String,
    tags: Tags,
    sink: EventSink,
    seed: u64,
    rng: SeededRng,
    next_id: u64,
    active: BTreeMap<FaultId, Active>,
    features: Option<BTreeMap<String, bool>>,
    /// Namespaces (container id, PID) where the project's chains exist.
    chains: std::sync::Mutex<BTreeSet<(String, i64)>>,
    /// The project's containers and networks as last inspected: reused between faults (an
    /// inspection costs several engine round trips) and refreshed when it may be out of date
    /// (after the injector's own kill/stop/start/restart/disconnect/connect, a container restart,
    /// a PID that no longer belongs to its container, a target that resolves to nothing).
    view: Option<ProjectView>,
    view_stale: bool,
    /// `started_ns` of the last [`FaultInjector::apply`] (the fault event's timestamp).
    last_started_ns: Option<i64>,
    /// `ended_ns` of the last [`FaultInjector::apply`] (when the apply returned).
    last_ended_ns: Option<i64>,
    /// The services faults may touch (`[scope]`); `None`: every service.
    scope: Option<scope::Scope>,
    /// Set by [`FaultInjector::halt`]: no fault is applied any more.
    halted: bool,
    /// A replayed run's random choices: fault number → the service the recorded run chose.
    replay_choices: BTreeMap<u64, String>,
    /// The fault being applied (its random choice may come from `replay_choices`).
    applying: Option<FaultId>,
}

fn docker_err(what: impl Into<String>) -> impl FnOnce(bollard::errors::Error) -> FaultError {
    let what = what.into();
    move |e| FaultError::Docker {
        what,
        message: e.to_string(),
    }
}

fn target_json(r: &Resolved) -> Value {
    let all = r.all();
    json!({
        "services": r.services,
        "containers": all.iter().map(|c| c.name.clone()).collect::<Vec<_>>(),
        "networks": r.networks.iter().map(|n| n.compose_name.clone()).collect::<Vec<_>>(),
        "chosen": r.chosen,
    })
}

fn summary_target(t: &FaultTarget) -> String {
    let l = |v: &[String]| format!("[{}]", v.join(", "));
    match t {
        FaultTarget::Service(s) => s.clone(),
        FaultTarget::Container(c) => format!("container {c}"),
        FaultTarget::Network(n) => format!("network {n}"),
        FaultTarget::Services(v) => l(v),
        FaultTarget::Random(v) => format!("random {}", l(v)),
        FaultTarget::Between(a, b) => format!("between {} and {}", l(a), l(b)),
        FaultTarget::FromTo(a, b) => format!("from {} to {}", l(a), l(b)),
    }
}

impl FaultInjector {
    /// An injector for one compose project. `seed` drives `random [...]` target choices.
    pub fn new(
        docker: Docker,
        project: &str,
        sink: EventSink,
        seed: u64,
    ) -> Result<FaultInjector, FaultError> {
        if project.trim().is_empty() {
            return Err(FaultError::Invalid("empty compose project name".into()));
        }
        Ok(FaultInjector {
            docker,
            project: project.to_string(),
            tags: Tags::new(project),
            sink,
            seed,
            rng: SeededRng::new(seed),
            next_id: 1,
            active: BTreeMap::new(),
            features: None,
            chains: std::sync::Mutex::new(BTreeSet::new()),
            view: None,
            view_stale: true,
            last_started_ns: None,
            last_ended_ns: None,
            scope: None,
            halted: false,
            replay_choices: BTreeMap::new(),
            applying: None,
        })
    }

    /// Limits every fault to these services: a target that resolves to a container of another
    /// service is refused (a `failed` fault event, nothing changed).
    pub fn set_scope(&mut self, scope: Option<scope::Scope>) {
        self.scope = scope;
    }

    /// Replays a recorded run's random choices: fault `f<n>` of this run takes the service the
    /// recorded fault `f<n>` chose (see `replay::recorded_choices`).
    pub fn set_replay_choices(&mut self, choices: BTreeMap<u64, String>) {
        self.replay_choices = choices;
    }

    /// Whether [`Self::halt`] was called.
    pub fn is_halted(&self) -> bool {
        self.halted
    }

    /// Inspects the project once ahead of the first fault, so the first fault does not pay for
    /// it (faults reuse the inspection while it is current).
    pub async fn prepare(&mut self) -> Result<(), FaultError> {
        self.refresh_view().await.map(|_| ())
    }

    /// Gives the injector host features probed elsewhere (e.g. for the manifest), so it does not
    /// probe again.
    pub fn set_features(&mut self, features: BTreeMap<String, bool>) {
        if !features.is_empty() {
            self.features = Some(features);
        }
    }

    async fn refresh_view(&mut self) -> Result<ProjectView, FaultError> {
        let view = resolve::snapshot(&self.docker, &self.project).await?;
        self.view = Some(view.clone());
        self.view_stale = false;
        Ok(view)
    }

    /// Resolves a target against the cached project view when it is still current, else
    /// against a fresh inspection. `check_pids`: every container's PID must still belong to it
    /// (network faults act on namespaces by PID). The random choice is made once either way.
    async fn resolve_target(
        &mut self,
        target: &FaultTarget,
        check_pids: bool,
    ) -> Result<(ProjectView, Resolved), FaultError> {
        // a replayed run takes the recorded run's random choice for this fault
        let replayed = match (target, self.applying) {
            (FaultTarget::Random(options), Some(id)) => match self.replay_choices.get(&id.0) {
                Some(c) if options.contains(c) => Some(c.clone()),
                Some(c) => {
                    return Err(FaultError::Target(format!(
                        "replay: the recorded run chose `{c}` for {id}, which is not among {}",
                        options.join(", ")
                    )))
                }
                None => None,
            },
            _ => None,
        };
        let fixed;
        let target = match &replayed {
            Some(c) => {
                fixed = FaultTarget::Service(c.clone());
                &fixed
            }
            None => target,
        };
        let with_choice = |mut r: Resolved| {
            if replayed.is_some() {
                r.chosen = replayed.clone();
            }
            r
        };
        if let (Some(view), false) = (&self.view, self.view_stale) {
            let mut rng = self.rng.clone();
            if let Ok(r) = resolve::resolve(view, &self.project, target, &mut rng) {
                let current = !r.all().is_empty()
                    && (!check_pids
                        || view
                            .containers
                            .iter()
                            .all(|c| c.live_pid().is_some_and(|p| host::pid_belongs_to(p, &c.id))));
                if current {
                    if let Some(s) = &self.scope {
                        s.check_resolved(&r)?;
                    }
                    self.rng = rng;
                    return Ok((view.clone(), with_choice(r)));
                }
            }
        }
        let view = self.refresh_view().await?;
        let r = scope::resolve_in_scope(
            &view,
            &self.project,
            target,
            &mut self.rng,
            self.scope.as_ref(),
        )?;
        Ok((view, with_choice(r)))
    }

    /// Checks a request before anything starts (see [`validate`]).
    pub fn validate(req: &FaultRequest, services: &[String]) -> Result<(), InvalidFault> {
        spec::validate(req, services)
    }

    /// The host features (probed once, on first use).
    pub async fn features(&mut self) -> BTreeMap<String, bool> {
        if self.features.is_none() {
            self.features = Some(host::probe_features().await);
        }
        self.features.clone().unwrap_or_default()
    }

    /// When the last [`Self::apply`] started: the timestamp of its `applied`/`failed` event.
    pub fn last_started_ns(&self) -> Option<i64> {
        self.last_started_ns
    }

    /// When the last [`Self::apply`] was done: its events' `data.ended_ns`.
    pub fn last_ended_ns(&self) -> Option<i64> {
        self.last_ended_ns
    }

    /// Faults applied and not yet reverted.
    pub fn active(&self) -> Vec<FaultId> {
        self.active.keys().copied().collect()
    }

    /// The tag names used in namespaces (chains `CTK-<hash>-I/O`, comments `ctk:<hash>:fN`).
    pub fn tags(&self) -> &Tags {
        &self.tags
    }

    #[allow(clippy::too_many_arguments)]
    fn emit(
        &self,
        id: FaultId,
        req: &FaultRequest,
        phase: &str,
        target: &Value,
        params: &Value,
        single: &Option<(String, String)>,
        started_ns: i64,
        ended_ns: i64,
        error: Option<String>,
    ) {
        let verb = match phase {
            "applied" => "applied",
            "reverted" => "reverted",
            "reapplied" => "re-applied after a container restart",
            "cleared" => "cleared by a container restart",
            _ => "failed",
        };
        let mut message = format!(
            "{} {} on {} {verb}",
            id,
            req.action,
            summary_target(&req.target)
        );
        if let Some(e) = &error {
            message.push_str(": ");
            message.push_str(e);
        }
        let data = json!({
            "fault_id": id.to_string(),
            "phase": phase,
            "experiment": req.experiment,
            "step": req.step,
            "target": target,
            "params": params,
            "intended_ns": req.intended_ns,
            "started_ns": started_ns,
            "ended_ns": ended_ns,
            "error": error,
        });
        let mut ev = trace::kinds::fault::ACTION
            .at(started_ns, req.action.clone())
            .message(message)
            .data(&data);
        if let Some((svc, name)) = single {
            ev = ev.service(svc.clone()).container(name.clone());
        }
        self.sink.emit(ev);
    }

    /// Applies one fault and records it. On failure a `failed` event is written and whatever was
    /// partly applied is rolled back.
    pub async fn apply(&mut self, req: &FaultRequest) -> Result<FaultId, FaultError> {
        let started_ns = now_ns();
        self.last_started_ns = Some(started_ns);
        if self.halted {
            return Err(FaultError::Invalid(
                "the run was halted: no more faults are applied".into(),
            ));
        }
        let id = FaultId(self.next_id);
        self.next_id += 1;
        self.applying = Some(id);
        let attempt = self.apply_inner(id, req).await;
        self.applying = None;
        let ended_ns = now_ns();
        self.last_ended_ns = Some(ended_ns);
        let r = self.record_apply(id, req, attempt, started_ns, ended_ns);
        // Off the clock of this fault: bring the view up to date for the next one.
        if self.view_stale {
            let _ = self.refresh_view().await;
        }
        r
    }

    /// Writes the `applied` or `failed` event of an apply and keeps the fault when it is active.
    fn record_apply(
        &mut self,
        id: FaultId,
        req: &FaultRequest,
        attempt: apply::Attempt,
        started_ns: i64,
        ended_ns: i64,
    ) -> Result<FaultId, FaultError> {
        let d = &attempt.described;
        let (phase, error) = match &attempt.result {
            Ok(_) => ("applied", None),
            Err(e) => ("failed", Some(e.to_string())),
        };
        self.emit(
            id, req, phase, &d.target, &d.params, &d.single, started_ns, ended_ns, error,
        );
        match attempt.result {
            Ok(Some(active)) => {
                self.active.insert(id, active);
                Ok(id)
            }
            Ok(None) => Ok(id),
            Err(e) => Err(e),
        }
    }
}
