//! Fault injection from the host (see docs/faults.md): container faults through the Docker API
//! (kill, stop, start, restart, pause, unpause, disconnect, connect, exec, limits) and network
//! impairments inside the containers' network namespaces with the host's `iptables` and `tc`
//! (partition, heal, loss, bandwidth, netem), and in-process syscall faults with a ptrace tracer
//! on the host (`syscall`, see [`syscall`]). Target images need no tools and no capabilities.
//!
//! [`FaultInjector`] applies [`FaultRequest`]s, writes one `fault` event per phase (applied,
//! failed, reverted, and reapplied/cleared after a container restart), remembers what each fault
//! changed so it can be reverted, and tags every rule with the compose project so
//! [`cleanup_host`] can remove what a killed recorder left behind.

pub mod host;
pub mod resolve;
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
use resolve::{ContainerInfo, ProjectView, Resolved, SeededRng};
use rules::{Rule, Tags};
pub use spec::{Action, Limits};

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
    Invalid(String),
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
pub fn validate(req: &FaultRequest, services: &[String]) -> Result<(), String> {
    spec::validate(req, services)
}

/// Probes the host for the kernel features faults need (for `HostInfo.features` in the
/// manifest): `nsenter`, `iptables`, `iptables_statistic`, `tc`, `tbf`, `netem`.
pub async fn host_features() -> BTreeMap<String, bool> {
    host::probe_features().await
}

/// One container's share of a network fault: its iptables rules and, per interface, its part of
/// the project's tc tree (whether it is a shaping class, and the `tc` commands adding it).
type NetPlan<'a> = (&'a ContainerInfo, Vec<Rule>, Vec<TcPlan>);

/// A fault's `tc` commands for one interface: (device, shaping, commands).
type TcPlan = (String, bool, Vec<rules::Args>);

/// A fault's part of the tc tree of one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TcPart {
    dev: String,
    /// A shaping class (bandwidth, netem) rather than partition filters.
    shaping: bool,
}

/// What was installed in one container's namespace for one fault.
#[derive(Debug, Clone)]
struct NetInstall {
    fault_id: String,
    container_id: String,
    pid: i64,
    rules: Vec<Rule>,
    tc: Vec<TcPart>,
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

/// The partition filters of container `c` dropping what it sends to `peers` (addresses or
/// CIDRs), on every interface of its namespace (a destination match only ever sees packets on
/// the interface routing there).
fn partition_tc(
    tags: &Tags,
    fid: &str,
    c: &ContainerInfo,
    peers: &[String],
) -> Result<Vec<TcPlan>, FaultError> {
    if peers.is_empty() {
        return Ok(Vec::new());
    }
    let Some(pid) = c.live_pid() else {
        return Err(FaultError::Target(format!(
            "{} is not running (no network namespace to change)",
            c.name
        )));
    };
    Ok(host::interfaces(pid)?
        .into_iter()
        .map(|dev| {
            let cmds = peers
                .iter()
                .map(|p| rules::tc_partition_filter(tags, &dev, fid, p))
                .collect();
            (dev, false, cmds)
        })
        .collect())
}

/// Addresses of `peer` on the networks it shares with `c`.
fn shared_addresses(c: &ContainerInfo, peer: &ContainerInfo) -> Vec<String> {
    peer.networks
        .iter()
        .filter(|(n, _)| c.networks.contains_key(*n))
        .filter_map(|(_, e)| e.ip_address.clone().filter(|ip| !ip.is_empty()))
        .collect()
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
    pub fn validate(req: &FaultRequest, services: &[String]) -> Result<(), String> {
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
        let mut ev = trace::Event::new(started_ns, "fault", req.action.clone())
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
        let mut params = json!({});
        let mut target = json!({"services": [], "containers": [], "networks": []});
        let mut single = None;
        self.applying = Some(id);
        let result = self
            .apply_inner(id, req, &mut params, &mut target, &mut single)
            .await;
        self.applying = None;
        let ended_ns = now_ns();
        self.last_ended_ns = Some(ended_ns);
        let r = self.record_apply(
            id, req, result, &target, &params, &single, started_ns, ended_ns,
        );
        // Off the clock of this fault: bring the view up to date for the next one.
        if self.view_stale {
            let _ = self.refresh_view().await;
        }
        r
    }

    #[allow(clippy::too_many_arguments)]
    fn record_apply(
        &mut self,
        id: FaultId,
        req: &FaultRequest,
        result: Result<Option<Active>, FaultError>,
        target: &Value,
        params: &Value,
        single: &Option<(String, String)>,
        started_ns: i64,
        ended_ns: i64,
    ) -> Result<FaultId, FaultError> {
        match result {
            Ok(Some(active)) => {
                self.emit(
                    id, req, "applied", target, params, single, started_ns, ended_ns, None,
                );
                self.active.insert(id, active);
                Ok(id)
            }
            Ok(None) => {
                self.emit(
                    id, req, "applied", target, params, single, started_ns, ended_ns, None,
                );
                Ok(id)
            }
            Err(e) => {
                let msg = e.to_string();
                self.emit(
                    id,
                    req,
                    "failed",
                    target,
                    params,
                    single,
                    started_ns,
                    ended_ns,
                    Some(msg),
                );
                Err(e)
            }
        }
    }

    async fn apply_inner(
        &mut self,
        id: FaultId,
        req: &FaultRequest,
        params: &mut Value,
        target: &mut Value,
        single: &mut Option<(String, String)>,
    ) -> Result<Option<Active>, FaultError> {
        let action = spec::parse_action(&req.action, &req.args).map_err(FaultError::Invalid)?;
        *params = spec::params_json(&action);
        if let Some(d) = req.duration {
            params["duration_ms"] = json!(d.as_millis() as u64);
        }
        if matches!(req.target, FaultTarget::Random(_)) {
            params["seed"] = json!(self.seed);
        }
        if let Action::Netem(_) = action {
            // Refuse early with the clear error, before touching any container.
            if !self.features().await.get("netem").copied().unwrap_or(false) {
                return Err(host::netem_unsupported(
                    "probe: `tc qdisc add dev lo root netem` in a scratch namespace failed",
                ));
            }
        }
        let is_net = matches!(
            action,
            Action::Partition | Action::Loss { .. } | Action::Bandwidth { .. } | Action::Netem(_)
        );
        let (view, resolved) = self.resolve_target(&req.target, is_net).await?;
        // Actions that change containers' PIDs, addresses or endpoints outdate the view.
        if matches!(
            action,
            Action::Kill { .. }
                | Action::Stop { .. }
                | Action::Start
                | Action::Restart { .. }
                | Action::Disconnect { .. }
                | Action::Connect { .. }
        ) {
            self.view_stale = true;
        }
        *target = target_json(&resolved);
        let all = resolved.all();
        if all.len() == 1 {
            *single = Some((all[0].service.clone(), all[0].name.clone()));
        }
        if all.is_empty() {
            return Err(FaultError::Target(format!(
                "{} resolves to no container",
                summary_target(&req.target)
            )));
        }
        let fixed_target = match (&req.target, &resolved.chosen) {
            (FaultTarget::Random(_), Some(c)) => FaultTarget::Service(c.clone()),
            (t, _) => t.clone(),
        };
        let ids: Vec<String> = resolved.a.iter().map(|c| c.id.clone()).collect();
        let timed = req.duration.is_some();
        let mut reverts: Vec<FaultId> = Vec::new();
        let undo: Option<Undo> = match &action {
            Action::Kill { signal } => {
                self.each(&ids, |d, c| {
                    let signal = signal.clone();
                    async move {
                        d.kill_container(&c, Some(KillContainerOptions { signal }))
                            .await
                            .map_err(docker_err(format!("kill {c}")))
                    }
                })
                .await?;
                timed.then(|| Undo::Start(ids.clone()))
            }
            Action::Stop { timeout_s } => {
                let t = *timeout_s;
                self.each(&ids, |d, c| async move {
                    d.stop_container(&c, Some(StopContainerOptions { t, signal: None }))
                        .await
                        .map_err(docker_err(format!("stop {c}")))
                })
                .await?;
                timed.then(|| Undo::Start(ids.clone()))
            }
            Action::Start => {
                self.each(&ids, |d, c| async move {
                    d.start_container(&c, None)
                        .await
                        .map_err(docker_err(format!("start {c}")))
                })
                .await?;
                reverts = self.close_matching(&ids, |u| matches!(u, Undo::Start(_)));
                for c in &ids {
                    self.reapply_for(c).await;
                }
                None
            }
            Action::Restart { timeout_s } => {
                let t = *timeout_s;
                self.each(&ids, |d, c| async move {
                    d.restart_container(&c, Some(RestartContainerOptions { t, signal: None }))
                        .await
                        .map_err(docker_err(format!("restart {c}")))
                })
                .await?;
                for c in &ids {
                    self.reapply_for(c).await;
                }
                None
            }
            Action::Pause => {
                self.each(&ids, |d, c| async move {
                    d.pause_container(&c)
                        .await
                        .map_err(docker_err(format!("pause {c}")))
                })
                .await?;
                Some(Undo::Unpause(ids.clone()))
            }
            Action::Unpause => {
                self.each(&ids, |d, c| async move {
                    d.unpause_container(&c)
                        .await
                        .map_err(docker_err(format!("unpause {c}")))
                })
                .await?;
                reverts = self.close_matching(&ids, |u| matches!(u, Undo::Unpause(_)));
                None
            }
            Action::Disconnect { network } => {
                let items = self
                    .disconnect(&view, &resolved, req, network.as_deref())
                    .await?;
                Some(Undo::Reconnect(items))
            }
            Action::Connect { network } => {
                reverts = self.connect(&view, &resolved, network.as_deref()).await?;
                None
            }
            Action::Heal => {
                let involved: BTreeSet<String> = all.iter().map(|c| c.id.clone()).collect();
                let heal: Vec<FaultId> = self
                    .active
                    .iter()
                    .filter(|(_, a)| matches!(a.action, Action::Partition))
                    .filter(|(_, a)| match &a.undo {
                        Undo::Net { involved: inv, .. } => inv.keys().any(|k| involved.contains(k)),
                        _ => false,
                    })
                    .map(|(k, _)| *k)
                    .collect();
                for f in &heal {
                    if let Some(a) = self.active.remove(f) {
                        if let Undo::Net { installs, .. } = &a.undo {
                            self.remove_installs(installs).await?;
                        }
                    }
                }
                self.drop_empty_chains(&involved.into_iter().collect::<Vec<_>>())
                    .await;
                reverts = heal;
                None
            }
            Action::Partition
            | Action::Loss { .. }
            | Action::Bandwidth { .. }
            | Action::Netem(_) => {
                let (installs, involved) = self.install_net(id, &action, &view, &resolved).await?;
                // what was installed: iptables rules (loss) and interfaces whose tc tree got this
                // fault's filters or class (partition, bandwidth, netem)
                params["rules"] = json!(installs.iter().map(|i| i.rules.len()).sum::<usize>());
                params["tc_interfaces"] = json!(installs.iter().map(|i| i.tc.len()).sum::<usize>());
                Some(Undo::Net { installs, involved })
            }
            Action::Exec {
                cmd,
                user,
                detach,
                timeout_ms,
                undo,
            } => {
                let mut results = Vec::new();
                for c in &resolved.a {
                    let r = self
                        .exec(&c.id, cmd, user.as_deref(), *detach, *timeout_ms)
                        .await?;
                    results.push(json!({"container": c.name, "exit_code": r.0, "output": r.1}));
                    if let Some(code) = r.0.filter(|code| *code != 0) {
                        params["results"] = json!(results);
                        return Err(FaultError::Failed(format!(
                            "command {:?} in {} exited with {code}",
                            cmd.join(" "),
                            c.name
                        )));
                    }
                }
                params["results"] = json!(results);
                undo.as_ref().map(|u| Undo::Exec {
                    containers: ids.clone(),
                    cmd: u.clone(),
                    user: user.clone(),
                    timeout_ms: *timeout_ms,
                })
            }
            Action::Limits(l) => {
                let mut saved: Vec<(String, ContainerUpdateBody)> = Vec::new();
                for c in &ids {
                    let info = self
                        .docker
                        .inspect_container(c, None)
                        .await
                        .map_err(docker_err(format!("inspect {c}")))?;
                    let hc = info.host_config.unwrap_or_default();
                    let orig = restore_body(&hc, l);
                    let upd = ContainerUpdateBody {
                        memory: l.memory,
                        memory_swap: l.memory_swap.or(l.memory),
                        nano_cpus: l.nano_cpus,
                        cpu_shares: l.cpu_shares,
                        pids_limit: l.pids_limit,
                        ..Default::default()
                    };
                    if let Err(e) = self.docker.update_container(c, upd).await {
                        // Put back what was already changed.
                        for (cid, o) in &saved {
                            let _ = self.docker.update_container(cid, o.clone()).await;
                        }
                        return Err(docker_err(format!("update {c}"))(e));
                    }
                    saved.push((c.clone(), orig));
                }
                Some(Undo::Limits(saved))
            }
            Action::Syscall(f) => {
                params["seed"] = json!(self.seed);
                let mut tracers: Vec<std::sync::Arc<syscall::Tracer>> = Vec::new();
                let mut pids = serde_json::Map::new();
                for (i, c) in resolved.a.iter().enumerate() {
                    let Some(pid) = c.live_pid() else {
                        stop_tracers(&tracers).await;
                        return Err(FaultError::Target(format!(
                            "{} is not running (no process to trace)",
                            c.name
                        )));
                    };
                    // One generator per container, derived from the scenario seed, the fault
                    // number and the container's place in the target (repeatable runs).
                    let seed = self
                        .seed
                        .wrapping_add(id.0.wrapping_mul(0x9E37_79B9_7F4A_7C15))
                        .wrapping_add(i as u64);
                    let (name, fault) = (c.name.clone(), f.clone());
                    let started = tokio::task::spawn_blocking(move || {
                        syscall::Tracer::start(&name, pid as i32, fault, seed)
                    })
                    .await
                    .map_err(|e| FaultError::Failed(format!("tracer task: {e}")))
                    .and_then(|r| {
                        r.map_err(|e| match e {
                            syscall::TraceError::Unsupported(m) => FaultError::Unsupported(m),
                            syscall::TraceError::NoProcess(m) => FaultError::Target(m),
                            syscall::TraceError::Attach(m) => FaultError::Failed(m),
                        })
                    });
                    match started {
                        Ok(t) => {
                            pids.insert(c.name.clone(), json!(t.initial_pids));
                            tracers.push(std::sync::Arc::new(t));
                        }
                        Err(e) => {
                            stop_tracers(&tracers).await;
                            return Err(e);
                        }
                    }
                }
                params["pids"] = Value::Object(pids);
                Some(Undo::Syscall(tracers))
            }
        };
        if !reverts.is_empty() {
            params["reverts"] = json!(reverts.iter().map(|f| f.to_string()).collect::<Vec<_>>());
        }
        Ok(undo.map(|undo| Active {
            req: req.clone(),
            action,
            fixed_target,
            target_json: target.clone(),
            params: params.clone(),
            single: single.clone(),
            undo,
        }))
    }

    /// Runs one Docker call per container concurrently; the first error wins.
    async fn each<F, Fut>(&self, ids: &[String], f: F) -> Result<(), FaultError>
    where
        F: Fn(Docker, String) -> Fut,
        Fut: std::future::Future<Output = Result<(), FaultError>>,
    {
        let futs = ids.iter().map(|c| f(self.docker.clone(), c.clone()));
        for r in futures_util::future::join_all(futs).await {
            r?;
        }
        Ok(())
    }

    /// Removes active faults whose undo matches `pred` and that touch one of `ids` (an explicit
    /// unpause/start/... supersedes them). Returns their ids.
    fn close_matching(&mut self, ids: &[String], pred: impl Fn(&Undo) -> bool) -> Vec<FaultId> {
        let hits: Vec<FaultId> = self
            .active
            .iter()
            .filter(|(_, a)| pred(&a.undo))
            .filter(|(_, a)| match &a.undo {
                Undo::Start(v) | Undo::Unpause(v) => v.iter().any(|c| ids.contains(c)),
                Undo::Reconnect(v) => v.iter().any(|(c, _, _)| ids.contains(c)),
                _ => false,
            })
            .map(|(k, _)| *k)
            .collect();
        for h in &hits {
            self.active.remove(h);
        }
        hits
    }

    /// The Docker name of the project's network `n` (as written in compose or in full).
    fn network_name(&self, view: &ProjectView, n: &str) -> Result<String, FaultError> {
        view.network(&self.project, n)
            .map(|x| x.name.clone())
            .ok_or_else(|| {
                FaultError::Target(format!("no network `{n}` in project {}", self.project))
            })
    }

    async fn disconnect(
        &self,
        view: &ProjectView,
        resolved: &Resolved,
        req: &FaultRequest,
        network: Option<&str>,
    ) -> Result<Vec<(String, String, EndpointSettings)>, FaultError> {
        let asked: Option<&str> = match (network, &req.target) {
            (Some(n), _) => Some(n),
            (None, FaultTarget::Network(n)) => Some(n.as_str()),
            _ => None,
        };
        let only = asked.map(|n| self.network_name(view, n)).transpose()?;
        let mut done: Vec<(String, String, EndpointSettings)> = Vec::new();
        for c in &resolved.a {
            for (net, ep) in &c.networks {
                if only.as_ref().is_some_and(|o| o != net) {
                    continue;
                }
                let r = self
                    .docker
                    .disconnect_network(
                        net,
                        NetworkDisconnectRequest {
                            container: c.id.clone(),
                            force: Some(true),
                        },
                    )
                    .await;
                if let Err(e) = r {
                    for (cid, n, ep) in &done {
                        let _ = self.reconnect(cid, n, ep).await;
                    }
                    return Err(docker_err(format!("disconnect {} from {net}", c.name))(e));
                }
                done.push((c.id.clone(), net.clone(), ep.clone()));
            }
        }
        if done.is_empty() {
            return Err(FaultError::Target(format!(
                "{} is not attached to {}",
                summary_target(&req.target),
                only.as_deref().unwrap_or("any network")
            )));
        }
        Ok(done)
    }

    async fn reconnect(
        &self,
        container: &str,
        network: &str,
        ep: &EndpointSettings,
    ) -> Result<(), FaultError> {
        // Keep the aliases (service name DNS) and a fixed address if compose had set one.
        let ipam = ep
            .ipam_config
            .as_ref()
            .filter(|c| c.ipv4_address.as_deref().is_some_and(|a| !a.is_empty()))
            .map(|c| EndpointIpamConfig {
                ipv4_address: c.ipv4_address.clone(),
                ..Default::default()
            });
        let cfg = NetworkConnectRequest {
            container: container.to_string(),
            endpoint_config: Some(EndpointSettings {
                aliases: ep.aliases.clone(),
                links: ep.links.clone(),
                ipam_config: ipam,
                ..Default::default()
            }),
        };
        self.docker
            .connect_network(network, cfg)
            .await
            .map_err(docker_err(format!("connect {container} to {network}")))
    }

    async fn connect(
        &mut self,
        view: &ProjectView,
        resolved: &Resolved,
        network: Option<&str>,
    ) -> Result<Vec<FaultId>, FaultError> {
        let ids: Vec<String> = resolved.a.iter().map(|c| c.id.clone()).collect();
        let wanted = network.map(|n| self.network_name(view, n)).transpose()?;
        // Endpoints recorded by active disconnects of these containers.
        let mut plan: Vec<(FaultId, String, String, EndpointSettings)> = Vec::new();
        for (fid, a) in &self.active {
            if let Undo::Reconnect(items) = &a.undo {
                for (c, n, ep) in items {
                    if ids.contains(c) && wanted.as_ref().is_none_or(|w| w == n) {
                        plan.push((*fid, c.clone(), n.clone(), ep.clone()));
                    }
                }
            }
        }
        if plan.is_empty() {
            let Some(net) = wanted else {
                return Err(FaultError::Invalid(
                    "connect needs `network` when no disconnect of the target is active".into(),
                ));
            };
            for c in &resolved.a {
                let ep = EndpointSettings {
                    aliases: Some(vec![c.service.clone()]),
                    ..Default::default()
                };
                self.reconnect(&c.id, &net, &ep).await?;
            }
            return Ok(Vec::new());
        }
        let mut closed = BTreeSet::new();
        for (fid, c, n, ep) in &plan {
            self.reconnect(c, n, ep).await?;
            closed.insert(*fid);
        }
        // A disconnect is closed when all its endpoints are back; otherwise keep the rest.
        for fid in &closed {
            let mut drop_it = false;
            if let Some(Active {
                undo: Undo::Reconnect(items),
                ..
            }) = self.active.get_mut(fid)
            {
                items.retain(|(c, n, _)| !plan.iter().any(|(_, pc, pn, _)| pc == c && pn == n));
                drop_it = items.is_empty();
            }
            if drop_it {
                self.active.remove(fid);
            }
        }
        Ok(closed.into_iter().collect())
    }

    /// Builds and installs the iptables/tc state of a network fault. On error, everything
    /// installed so far is removed.
    async fn install_net(
        &self,
        id: FaultId,
        action: &Action,
        view: &ProjectView,
        resolved: &Resolved,
    ) -> Result<(Vec<NetInstall>, BTreeMap<String, (i64, Vec<String>)>), FaultError> {
        let fid = id.to_string();
        let tags = &self.tags;
        // (container, rules, tc args per device)
        let mut plan: Vec<NetPlan<'_>> = Vec::new();
        let mut involved: Vec<&ContainerInfo> = resolved.all();
        match action {
            Action::Partition => {
                // Packets are dropped on the sender's egress, by its tc tree (see rules.rs), before
                // they leave the namespace: nothing crosses the bridge, and the sender sees no
                // error (the socket accepted the packet; TCP retransmits and connect times out).
                let (a, b): (Vec<&ContainerInfo>, Vec<&ContainerInfo>) = if let Some(net) =
                    resolved.networks.first()
                {
                    // Isolate a whole network: every member drops what it sends to its subnet.
                    for c in &resolved.a {
                        plan.push((c, Vec::new(), partition_tc(tags, &fid, c, &net.subnets)?));
                    }
                    (Vec::new(), Vec::new())
                } else if !resolved.b.is_empty() {
                    (resolved.a.iter().collect(), resolved.b.iter().collect())
                } else {
                    // Isolate the target from every other container of the project.
                    let ids: BTreeSet<&str> = resolved.a.iter().map(|c| c.id.as_str()).collect();
                    let rest: Vec<&ContainerInfo> = view
                        .containers
                        .iter()
                        .filter(|c| !ids.contains(c.id.as_str()))
                        .collect();
                    involved.extend(rest.iter().copied());
                    (resolved.a.iter().collect(), rest)
                };
                for c in &a {
                    let peers: Vec<String> =
                        b.iter().flat_map(|p| shared_addresses(c, p)).collect();
                    plan.push((c, Vec::new(), partition_tc(tags, &fid, c, &peers)?));
                }
                // One-way (`from A to B`): only A's egress to B; B still talks to A.
                if !resolved.one_way {
                    for c in &b {
                        let peers: Vec<String> =
                            a.iter().flat_map(|p| shared_addresses(c, p)).collect();
                        plan.push((c, Vec::new(), partition_tc(tags, &fid, c, &peers)?));
                    }
                }
            }
            Action::Loss {
                probability,
                direction,
            } => {
                for c in &resolved.a {
                    let mut rs = Vec::new();
                    for &d in direction.dirs() {
                        match resolved.networks.first() {
                            Some(net) => {
                                for s in &net.subnets {
                                    rs.push(rules::drop_random(
                                        tags,
                                        &fid,
                                        d,
                                        *probability,
                                        Some(s),
                                    ));
                                }
                            }
                            None => rs.push(rules::drop_random(tags, &fid, d, *probability, None)),
                        }
                    }
                    plan.push((c, rs, Vec::new()));
                }
            }
            Action::Bandwidth { .. } | Action::Netem(_) => {
                for c in &resolved.a {
                    let Some(pid) = c.live_pid() else {
                        return Err(FaultError::Target(format!("{} is not running", c.name)));
                    };
                    let devs = match resolved.networks.first() {
                        Some(net) => {
                            let mac = c
                                .networks
                                .get(&net.name)
                                .and_then(|e| e.mac_address.clone())
                                .unwrap_or_default();
                            match host::interface_for_mac(pid, &mac).await? {
                                Some(d) => vec![d],
                                None => {
                                    return Err(FaultError::Target(format!(
                                        "no interface of {} on network {}",
                                        c.name, net.compose_name
                                    )))
                                }
                            }
                        }
                        None => host::interfaces(pid)?,
                    };
                    let leaf = match action {
                        Action::Bandwidth {
                            rate_bps,
                            burst_bytes,
                            latency_ms,
                        } => rules::tbf_leaf(*rate_bps, *burst_bytes, *latency_ms),
                        Action::Netem(n) => rules::netem_leaf(n),
                        _ => Vec::new(),
                    };
                    let mut cmds = Vec::new();
                    for d in &devs {
                        // One shaping class per interface at a time: a second would never see
                        // a packet (the first catch-all filter takes them all).
                        if let Some(other) = self.shaping_on(&c.id, d) {
                            return Err(FaultError::Target(format!(
                                "interface {d} of {} is already shaped by fault {other}; \
                                 revert it first (partitions combine with shaping, two shapings \
                                 on one interface do not)",
                                c.name
                            )));
                        }
                        cmds.push((d.clone(), true, rules::tc_shape_add(tags, d, &fid, &leaf)));
                    }
                    plan.push((c, Vec::new(), cmds));
                }
            }
            _ => {}
        }
        // One entry per container (a container named twice gets one transaction).
        let mut merged: Vec<NetPlan<'_>> = Vec::new();
        for (c, rs, tcs) in plan {
            match merged.iter_mut().find(|(m, _, _)| m.id == c.id) {
                Some((_, mrs, mtcs)) => {
                    mrs.extend(rs);
                    for (dev, shaping, cmds) in tcs {
                        match mtcs
                            .iter_mut()
                            .find(|(d, sh, _)| *d == dev && *sh == shaping)
                        {
                            Some((_, _, mc)) => mc.extend(cmds),
                            None => mtcs.push((dev, shaping, cmds)),
                        }
                    }
                }
                None => merged.push((c, rs, tcs)),
            }
        }
        // Every namespace is changed concurrently: one iptables-restore (creating the project's
        // chains in the same transaction the first time) and one tc per interface per container.
        let mut jobs = Vec::new();
        for (c, rs, tcs) in merged {
            if rs.is_empty() && tcs.is_empty() {
                continue;
            }
            let Some(pid) = c.live_pid() else {
                return Err(FaultError::Target(format!(
                    "{} is not running (no network namespace to change)",
                    c.name
                )));
            };
            let id = c.id.clone();
            let fid = fid.clone();
            jobs.push(async move {
                let mut inst = NetInstall {
                    fault_id: fid,
                    container_id: id,
                    pid,
                    rules: Vec::new(),
                    tc: Vec::new(),
                };
                let r: Result<(), FaultError> = async {
                    if !rs.is_empty() {
                        let setup = !self.has_chains(&inst.container_id, pid);
                        let script = rules::restore_script_with(tags, "-A", &rs, setup, false);
                        host::iptables_batch(pid, &script).await?;
                        if setup {
                            self.set_chains(&inst.container_id, pid, true);
                        }
                        inst.rules = rs;
                    }
                    let tcs: Vec<TcPlan> = tcs.into_iter().filter(|t| !t.2.is_empty()).collect();
                    if !tcs.is_empty() {
                        // One tc process: the tree where the interface has none yet, then this
                        // fault's classes and filters. Recorded before running, so a failure
                        // halfway is rolled back like a success.
                        let have = host::project_tree_devs(pid, tags).await?;
                        let mut cmds = Vec::new();
                        for (dev, shaping, c) in &tcs {
                            if !have.contains(dev) && !inst.tc.iter().any(|p| p.dev == *dev) {
                                cmds.extend(rules::tc_tree_add(tags, dev));
                            }
                            cmds.extend(c.iter().cloned());
                            inst.tc.push(TcPart {
                                dev: dev.clone(),
                                shaping: *shaping,
                            });
                        }
                        host::tc_batch(pid, &rules::tc_batch_script(&cmds)).await?;
                    }
                    Ok(())
                }
                .await;
                (inst, r)
            });
        }
        let mut installs: Vec<NetInstall> = Vec::new();
        let mut first_err = None;
        for (inst, r) in futures_util::future::join_all(jobs).await {
            installs.push(inst);
            if let Err(e) = r {
                first_err.get_or_insert(e);
            }
        }
        if let Some(e) = first_err {
            self.remove_installs(&installs).await.ok();
            let ids: Vec<String> = installs.iter().map(|i| i.container_id.clone()).collect();
            self.drop_empty_chains(&ids).await;
            return Err(e);
        }
        let mut inv = BTreeMap::new();
        for c in involved {
            let ips = c.addresses().into_iter().map(|(_, ip)| ip).collect();
            inv.insert(c.id.clone(), (c.live_pid().unwrap_or(0), ips));
        }
        Ok((installs, inv))
    }

    /// Removes installed rules and qdiscs from namespaces that still exist (same PID); rules in
    /// namespaces that died with a restart are gone already. Where no active fault keeps rules
    /// in a namespace, the project's chains go in the same transaction as the last rules.
    async fn remove_installs(&self, installs: &[NetInstall]) -> Result<(), FaultError> {
        let jobs = installs.iter().map(|inst| async move {
            if !self.namespace_alive(&inst.container_id, inst.pid).await {
                self.set_chains(&inst.container_id, inst.pid, false);
                return Ok(());
            }
            let mut first_err = None;
            if !inst.rules.is_empty() {
                let teardown = self.has_chains(&inst.container_id, inst.pid)
                    && !self.rules_kept(&inst.container_id)
                    && installs
                        .iter()
                        .filter(|o| o.container_id == inst.container_id && !o.rules.is_empty())
                        .count()
                        == 1;
                let script =
                    rules::restore_script_with(&self.tags, "-D", &inst.rules, false, teardown);
                match host::iptables_batch(inst.pid, &script).await {
                    Ok(_) if teardown => self.set_chains(&inst.container_id, inst.pid, false),
                    Ok(_) => {}
                    Err(e) if teardown => {
                        // e.g. a duplicated jump: delete the rules alone, then the chains the
                        // slow way (every copy of the jump).
                        let script = rules::restore_script(&self.tags, "-D", &inst.rules);
                        match host::iptables_batch(inst.pid, &script).await {
                            Ok(_) => {
                                host::drop_chains(inst.pid, &self.tags).await;
                                self.set_chains(&inst.container_id, inst.pid, false);
                            }
                            Err(_) => {
                                first_err.get_or_insert(e);
                            }
                        }
                    }
                    Err(e) => {
                        first_err.get_or_insert(e);
                    }
                }
            }
            if !inst.tc.is_empty() {
                // This fault's classes and filters; the whole tree where no other active fault
                // uses the interface (the root's removal takes everything under it).
                let mut cmds = Vec::new();
                for part in &inst.tc {
                    if self.tc_kept(&inst.container_id, &part.dev) {
                        cmds.extend(rules::tc_fault_del(
                            &self.tags,
                            &part.dev,
                            &inst.fault_id,
                            part.shaping,
                        ));
                    } else if !cmds.contains(&rules::qdisc_del(&part.dev)) {
                        cmds.push(rules::qdisc_del(&part.dev));
                    }
                }
                if let Err(e) = host::tc_batch(inst.pid, &rules::tc_batch_script(&cmds)).await {
                    first_err.get_or_insert(e);
                }
            }
            match first_err {
                Some(e) => Err(e),
                None => Ok(()),
            }
        });
        let mut first = Ok(());
        for r in futures_util::future::join_all(jobs).await {
            if let (Err(e), true) = (r, first.is_ok()) {
                first = Err(e);
            }
        }
        first
    }

    /// Whether the project's chains were created in this namespace.
    fn has_chains(&self, container: &str, pid: i64) -> bool {
        self.chains
            .lock()
            .map(|s| s.contains(&(container.to_string(), pid)))
            .unwrap_or(false)
    }

    fn set_chains(&self, container: &str, pid: i64, present: bool) {
        if let Ok(mut s) = self.chains.lock() {
            let key = (container.to_string(), pid);
            if present {
                s.insert(key);
            } else {
                s.remove(&key);
            }
        }
    }

    /// Whether an active fault keeps iptables rules in this container's namespace.
    fn rules_kept(&self, container: &str) -> bool {
        self.active.values().any(|a| match &a.undo {
            Undo::Net { installs, .. } => installs
                .iter()
                .any(|i| i.container_id == container && !i.rules.is_empty()),
            _ => false,
        })
    }

    /// Whether an active fault keeps a part of the tc tree on this interface of this container.
    fn tc_kept(&self, container: &str, dev: &str) -> bool {
        self.active.values().any(|a| match &a.undo {
            Undo::Net { installs, .. } => installs
                .iter()
                .any(|i| i.container_id == container && i.tc.iter().any(|p| p.dev == dev)),
            _ => false,
        })
    }

    /// The active fault shaping this interface of this container, if any.
    fn shaping_on(&self, container: &str, dev: &str) -> Option<FaultId> {
        self.active.iter().find_map(|(k, a)| match &a.undo {
            Undo::Net { installs, .. } => installs
                .iter()
                .any(|i| {
                    i.container_id == container && i.tc.iter().any(|p| p.dev == dev && p.shaping)
                })
                .then_some(*k),
            _ => None,
        })
    }

    /// Whether process `pid` is still the main process of `container` (read from `/proc`;
    /// asks the engine only when `/proc` does not say so).
    async fn namespace_alive(&self, container: &str, pid: i64) -> bool {
        host::pid_belongs_to(pid, container) || self.current_pid(container).await == Some(pid)
    }

    async fn current_pid(&self, container: &str) -> Option<i64> {
        let info = self.docker.inspect_container(container, None).await.ok()?;
        let st = info.state?;
        if st.running != Some(true) {
            return None;
        }
        st.pid.filter(|p| *p > 0)
    }

    /// Drops the project's chains from these containers' namespaces when no active fault has
    /// rules there any more (what [`Self::remove_installs`] could not remove with the rules).
    async fn drop_empty_chains(&self, container_ids: &[String]) {
        for c in container_ids {
            if self.rules_kept(c) {
                continue;
            }
            let pids: Vec<i64> = self
                .chains
                .lock()
                .map(|s| {
                    s.iter()
                        .filter(|(id, _)| id == c)
                        .map(|(_, p)| *p)
                        .collect()
                })
                .unwrap_or_default();
            for pid in pids {
                if self.namespace_alive(c, pid).await {
                    host::drop_chains(pid, &self.tags).await;
                }
                self.set_chains(c, pid, false);
            }
        }
    }

    async fn exec(
        &self,
        container: &str,
        cmd: &[String],
        user: Option<&str>,
        detach: bool,
        timeout_ms: u64,
    ) -> Result<(Option<i64>, String), FaultError> {
        let created = self
            .docker
            .create_exec(
                container,
                CreateExecOptions::<String> {
                    cmd: Some(cmd.to_vec()),
                    user: user.map(str::to_string),
                    attach_stdout: Some(!detach),
                    attach_stderr: Some(!detach),
                    ..Default::default()
                },
            )
            .await
            .map_err(docker_err(format!("exec create in {container}")))?;
        let started = self
            .docker
            .start_exec(
                &created.id,
                Some(StartExecOptions {
                    detach,
                    ..Default::default()
                }),
            )
            .await
            .map_err(docker_err(format!("exec start in {container}")))?;
        let mut out = String::new();
        if let StartExecResults::Attached { mut output, .. } = started {
            let collect = async {
                while let Some(chunk) = output.next().await {
                    match chunk {
                        Ok(c) => {
                            if out.len() < 4096 {
                                out.push_str(&String::from_utf8_lossy(&c.into_bytes()));
                            }
                        }
                        Err(_) => break,
                    }
                }
            };
            if tokio::time::timeout(Duration::from_millis(timeout_ms), collect)
                .await
                .is_err()
            {
                return Err(FaultError::Failed(format!(
                    "command {:?} in {container} did not finish within {timeout_ms} ms",
                    cmd.join(" ")
                )));
            }
            out.truncate(4096);
        }
        if detach {
            return Ok((None, out));
        }
        // The exit code is set once the process is reaped; poll briefly.
        for _ in 0..50 {
            let i = self
                .docker
                .inspect_exec(&created.id)
                .await
                .map_err(docker_err(format!("exec inspect in {container}")))?;
            if i.running != Some(true) {
                return Ok((i.exit_code, out));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok((None, out))
    }

    /// Reverts one fault (writes a `reverted` event, with `error` set if the undo failed).
    /// Unknown or already reverted ids are ignored.
    pub async fn revert(&mut self, id: FaultId) {
        let Some(a) = self.active.remove(&id) else {
            return;
        };
        let started_ns = now_ns();
        let r = self.undo(&a).await;
        let ended_ns = now_ns();
        self.record_revert(id, &a, started_ns, ended_ns, r.err().map(|e| e.to_string()));
    }

    /// Writes the `reverted` event of fault `id`.
    fn record_revert(
        &self,
        id: FaultId,
        a: &Active,
        started_ns: i64,
        ended_ns: i64,
        error: Option<String>,
    ) {
        let mut params = a.params.clone();
        if let Undo::Syscall(tracers) = &a.undo {
            // what the fault did: calls that matched, and those that got the error or delay
            let (m, i) = tracers.iter().fold((0, 0), |(m, i), t| {
                let (a, b) = t.counts();
                (m + a, i + b)
            });
            params["matched"] = json!(m);
            params["injected"] = json!(i);
        }
        self.emit(
            id,
            &a.req,
            "reverted",
            &a.target_json,
            &params,
            &a.single,
            started_ns,
            ended_ns,
            error,
        );
    }

    /// Halts fault injection: no fault is applied from now on, and every active fault is
    /// reverted at once, all in parallel (the network impairments of every fault merged into
    /// one batch per namespace, so that faults sharing a namespace do not race on its rules).
    /// Writes one `reverted` event per fault; returns the faults reverted, newest first.
    pub async fn halt(&mut self) -> Vec<FaultId> {
        self.halted = true;
        let actives: Vec<(FaultId, Active)> =
            std::mem::take(&mut self.active).into_iter().rev().collect();
        let mut merged: BTreeMap<(String, i64), NetInstall> = BTreeMap::new();
        for (_, a) in &actives {
            if let Undo::Net { installs, .. } = &a.undo {
                for i in installs {
                    let m = merged
                        .entry((i.container_id.clone(), i.pid))
                        .or_insert_with(|| NetInstall {
                            fault_id: i.fault_id.clone(),
                            container_id: i.container_id.clone(),
                            pid: i.pid,
                            rules: Vec::new(),
                            tc: Vec::new(),
                        });
                    m.rules.extend(i.rules.iter().cloned());
                    m.tc.extend(i.tc.iter().cloned());
                }
            }
        }
        let merged: Vec<NetInstall> = merged.into_values().collect();
        let this: &FaultInjector = self;
        let net = async {
            if merged.is_empty() {
                return (now_ns(), now_ns(), None);
            }
            let started = now_ns();
            let r = this.remove_installs(&merged).await;
            let ids: Vec<String> = merged.iter().map(|i| i.container_id.clone()).collect();
            this.drop_empty_chains(&ids).await;
            (started, now_ns(), r.err().map(|e| e.to_string()))
        };
        let others = futures_util::future::join_all(
            actives
                .iter()
                .filter(|(_, a)| !matches!(a.undo, Undo::Net { .. }))
                .map(|(id, a)| async move {
                    let started = now_ns();
                    let r = this.undo(a).await;
                    (*id, started, now_ns(), r.err().map(|e| e.to_string()))
                }),
        );
        let ((net_started, net_ended, net_err), others) = futures_util::join!(net, others);
        for (id, a) in &actives {
            if matches!(a.undo, Undo::Net { .. }) {
                self.record_revert(*id, a, net_started, net_ended, net_err.clone());
            } else if let Some((_, started, ended, err)) = others.iter().find(|o| o.0 == *id) {
                self.record_revert(*id, a, *started, *ended, err.clone());
            }
        }
        actives.into_iter().map(|(id, _)| id).collect()
    }

    async fn undo(&self, a: &Active) -> Result<(), FaultError> {
        match &a.undo {
            Undo::Start(ids) => {
                self.each(ids, |d, c| async move {
                    d.start_container(&c, None)
                        .await
                        .map_err(docker_err(format!("start {c}")))
                })
                .await
            }
            Undo::Unpause(ids) => {
                self.each(ids, |d, c| async move {
                    d.unpause_container(&c)
                        .await
                        .map_err(docker_err(format!("unpause {c}")))
                })
                .await
            }
            Undo::Reconnect(items) => {
                let mut first = Ok(());
                for (c, n, ep) in items {
                    if let Err(e) = self.reconnect(c, n, ep).await {
                        if first.is_ok() {
                            first = Err(e);
                        }
                    }
                }
                first
            }
            Undo::Net { installs, .. } => {
                let r = self.remove_installs(installs).await;
                let ids: Vec<String> = installs.iter().map(|i| i.container_id.clone()).collect();
                self.drop_empty_chains(&ids).await;
                r
            }
            Undo::Limits(saved) => {
                let mut first = Ok(());
                for (c, o) in saved {
                    if let Err(e) = self.docker.update_container(c, o.clone()).await {
                        if first.is_ok() {
                            first = Err(docker_err(format!("update {c}"))(e));
                        }
                    }
                }
                first
            }
            Undo::Exec {
                containers,
                cmd,
                user,
                timeout_ms,
            } => {
                for c in containers {
                    let (code, _) = self
                        .exec(c, cmd, user.as_deref(), false, *timeout_ms)
                        .await?;
                    if let Some(code) = code.filter(|x| *x != 0) {
                        return Err(FaultError::Failed(format!(
                            "undo command {:?} exited with {code}",
                            cmd.join(" ")
                        )));
                    }
                }
                Ok(())
            }
            Undo::Syscall(tracers) => {
                let errors = stop_tracers(tracers).await;
                if errors.is_empty() {
                    Ok(())
                } else {
                    Err(FaultError::Failed(errors.join("; ")))
                }
            }
        }
    }

    /// Reverts every active fault, newest first (called before teardown).
    pub async fn revert_all(&mut self) {
        let ids: Vec<FaultId> = self.active.keys().rev().copied().collect();
        for id in ids {
            self.revert(id).await;
        }
    }

    /// Call when a container (re)started: network impairments in namespaces the restart replaced
    /// are applied again (`reapplied` event), or recorded as `cleared` when that fails.
    pub async fn on_container_restart(&mut self, container_id: &str) {
        self.view_stale = true;
        self.reapply_for(container_id).await;
        if self.view_stale {
            let _ = self.refresh_view().await;
        }
    }

    async fn reapply_for(&mut self, container: &str) {
        let Ok(info) = self.docker.inspect_container(container, None).await else {
            return;
        };
        let Some(cid) = info.id.clone() else { return };
        let st = info.state.unwrap_or_default();
        let pid = st.pid.filter(|p| *p > 0 && st.running == Some(true));
        let ips: Vec<String> = info
            .network_settings
            .and_then(|n| n.networks)
            .map(|m| {
                m.into_values()
                    .filter_map(|e| e.ip_address.filter(|ip| !ip.is_empty()))
                    .collect()
            })
            .unwrap_or_default();
        let Some(pid) = pid else { return };
        let stale: Vec<FaultId> = self
            .active
            .iter()
            .filter_map(|(k, a)| match &a.undo {
                Undo::Net { involved, .. } => match involved.get(&cid) {
                    Some((p, old_ips))
                        if *p != pid || {
                            let mut x = old_ips.clone();
                            let mut y = ips.clone();
                            x.sort();
                            y.sort();
                            x != y
                        } =>
                    {
                        Some(*k)
                    }
                    _ => None,
                },
                _ => None,
            })
            .collect();
        for id in stale {
            let Some(mut a) = self.active.remove(&id) else {
                continue;
            };
            let started_ns = now_ns();
            let r: Result<Active, FaultError> = async {
                if let Undo::Net { installs, .. } = &a.undo {
                    // Rules in surviving namespaces (peers) point at old addresses: redo all.
                    self.remove_installs(installs).await.ok();
                }
                let view = resolve::snapshot(&self.docker, &self.project).await?;
                self.view = Some(view.clone());
                self.view_stale = false;
                let mut rng = SeededRng::new(self.seed);
                let resolved = resolve::resolve(&view, &self.project, &a.fixed_target, &mut rng)?;
                let (installs, involved) =
                    self.install_net(id, &a.action, &view, &resolved).await?;
                a.target_json = target_json(&resolved);
                a.undo = Undo::Net { installs, involved };
                Ok(a.clone())
            }
            .await;
            let ended_ns = now_ns();
            match r {
                Ok(a) => {
                    self.emit(
                        id,
                        &a.req,
                        "reapplied",
                        &a.target_json,
                        &a.params,
                        &a.single,
                        started_ns,
                        ended_ns,
                        None,
                    );
                    self.active.insert(id, a);
                }
                Err(e) => {
                    self.emit(
                        id,
                        &a.req,
                        "cleared",
                        &a.target_json,
                        &a.params,
                        &a.single,
                        started_ns,
                        ended_ns,
                        Some(e.to_string()),
                    );
                }
            }
        }
    }
}

/// The largest memory limit cgroup v1 takes (`PAGE_COUNTER_MAX` pages), i.e. "unlimited".
const MEMORY_UNLIMITED: i64 = 9_223_372_036_854_771_712;

/// The update that puts back what a `limits` fault changes. Docker's update API reads 0 as "leave
/// unchanged", so a limit that was unset is restored as the widest value the kernel accepts:
/// memory 2^62 bytes with unlimited swap, all host CPUs, 1024 CPU shares, no pids limit.
fn restore_body(hc: &bollard::models::HostConfig, changed: &Limits) -> ContainerUpdateBody {
    let pos = |v: Option<i64>| v.filter(|x| *x > 0);
    let mut b = ContainerUpdateBody::default();
    if changed.memory.is_some() || changed.memory_swap.is_some() {
        b.memory = Some(pos(hc.memory).unwrap_or(1 << 62));
        b.memory_swap = Some(pos(hc.memory_swap).unwrap_or(MEMORY_UNLIMITED));
    }
    if changed.nano_cpus.is_some() {
        let ncpu = std::thread::available_parallelism()
            .map(|n| n.get() as i64)
            .unwrap_or(1);
        b.nano_cpus = Some(pos(hc.nano_cpus).unwrap_or(ncpu * 1_000_000_000));
    }
    if changed.cpu_shares.is_some() {
        b.cpu_shares = Some(pos(hc.cpu_shares).unwrap_or(1024));
    }
    if changed.pids_limit.is_some() {
        b.pids_limit = Some(pos(hc.pids_limit).unwrap_or(-1));
    }
    b
}

/// One line per thread of a container that some process still traces (ptrace: only the tracer
/// can detach; a killed recorder's tracees were detached by the kernel when it died).
fn traced_lines(container: &str, pid: i64) -> Vec<String> {
    let Ok(pid) = i32::try_from(pid) else {
        return Vec::new();
    };
    syscall::traced_threads(pid)
        .into_iter()
        .map(|(t, by, name)| {
            format!("{container}: thread {t} is still traced by pid {by} ({name}); stop that process to detach it")
        })
        .collect()
}

/// Threads of the project's running containers that some process traces (a syscall fault's
/// tracer that is still alive, a debugger): one line each, empty when none. `recorder cleanup`
/// reports them before it removes the containers.
pub async fn traced_leftovers(docker: &Docker, project: &str) -> Result<Vec<String>, FaultError> {
    let view = resolve::snapshot(docker, project).await?;
    Ok(view
        .containers
        .iter()
        .filter_map(|c| c.live_pid().map(|p| traced_lines(&c.name, p)))
        .flatten()
        .collect())
}

/// Stops tracers (detaching every traced thread) off the async runtime; returns their errors.
async fn stop_tracers(tracers: &[std::sync::Arc<syscall::Tracer>]) -> Vec<String> {
    let ts: Vec<_> = tracers.to_vec();
    tokio::task::spawn_blocking(move || {
        ts.iter()
            .flat_map(|t| t.stop().errors)
            .collect::<Vec<String>>()
    })
    .await
    .unwrap_or_else(|e| vec![format!("tracer task: {e}")])
}

/// Removes everything a (possibly killed) recorder left in the project's containers: iptables
/// rules and chains tagged with the project, root qdiscs with the project's handle, and paused
/// containers are unpaused. Connects to Docker with the local defaults.
pub async fn cleanup_host(project: &str) -> Result<CleanupReport, FaultError> {
    let docker = Docker::connect_with_local_defaults()
        .map_err(docker_err("connecting to the docker daemon"))?
        .negotiate_version()
        .await
        .map_err(docker_err("negotiating the API version"))?;
    cleanup_with(&docker, project).await
}

/// [`cleanup_host`] with a given Docker client.
pub async fn cleanup_with(docker: &Docker, project: &str) -> Result<CleanupReport, FaultError> {
    let tags = Tags::new(project);
    let view = resolve::snapshot(docker, project).await?;
    let mut rep = CleanupReport::default();
    for c in &view.containers {
        if c.paused {
            match docker.unpause_container(&c.id).await {
                Ok(()) => rep.unpaused.push(c.name.clone()),
                Err(e) => rep.errors.push(format!("unpause {}: {e}", c.name)),
            }
        }
        let Some(pid) = c.live_pid() else { continue };
        rep.containers_checked += 1;
        rep.errors.extend(traced_lines(&c.name, pid));
        match host::purge_netns(pid, &tags).await {
            Ok(p) => {
                rep.rules_removed += p.rules;
                rep.chains_removed += p.chains;
                rep.qdiscs_removed += p.qdiscs;
            }
            Err(e) => rep.errors.push(format!("{}: {e}", c.name)),
        }
    }
    Ok(rep)
}
