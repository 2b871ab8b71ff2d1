//! Applying one fault: the action and its arguments parsed, the target resolved (a random choice
//! fixed, the scope checked), the action performed, and what the fault event records about it
//! ([`Described`]) returned with the outcome ([`Attempt`]).

use super::*;

/// What a fault event says about the fault: its parameters (with what the apply did: rules,
/// results, ports …), its resolved target, and the one service and container it concerns when
/// there is exactly one.
#[derive(Debug, Clone)]
pub(super) struct Described {
    pub params: Value,
    pub target: Value,
    pub single: Option<(String, String)>,
}

impl Default for Described {
    fn default() -> Described {
        Described {
            params: json!({}),
            target: json!({"services": [], "containers": [], "networks": []}),
            single: None,
        }
    }
}

/// One apply: what the fault event records, and the fault to keep active (`None`: nothing to
/// revert) or the error. Whatever was partly applied has been rolled back on error.
pub(super) struct Attempt {
    pub described: Described,
    pub result: Result<Option<Active>, FaultError>,
}

impl FaultInjector {
    /// Parses, resolves and performs `req` as fault `id`.
    pub(super) async fn apply_inner(&mut self, id: FaultId, req: &FaultRequest) -> Attempt {
        let mut described = Described::default();
        let result = match spec::parse_action(&req.action, &req.args) {
            Ok(action) => {
                described.params = self.params_of(&action, req);
                self.apply_action(id, req, action, &mut described).await
            }
            Err(e) => Err(FaultError::Invalid(e)),
        };
        Attempt { described, result }
    }

    /// The parameters recorded for `action`: its arguments, the duration, the seed of a random
    /// target.
    fn params_of(&self, action: &Action, req: &FaultRequest) -> Value {
        let mut params = spec::params_json(action);
        if let Some(d) = req.duration {
            params["duration_ms"] = json!(d.as_millis() as u64);
        }
        if matches!(req.target, FaultTarget::Random(_)) {
            params["seed"] = json!(self.seed);
        }
        params
    }

    /// Resolves the target of `req` (recording it in `d`), performs `action` on it and returns
    /// the fault to keep active.
    async fn apply_action(
        &mut self,
        id: FaultId,
        req: &FaultRequest,
        action: Action,
        d: &mut Described,
    ) -> Result<Option<Active>, FaultError> {
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
        d.target = target_json(&resolved);
        let all = resolved.all();
        if all.len() == 1 {
            d.single = Some((all[0].service.clone(), all[0].name.clone()));
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
        let (undo, reverts) = self
            .perform(id, req, &action, &view, &resolved, &mut d.params)
            .await?;
        if !reverts.is_empty() {
            d.params["reverts"] = json!(reverts.iter().map(|f| f.to_string()).collect::<Vec<_>>());
        }
        Ok(undo.map(|undo| Active {
            req: req.clone(),
            action,
            fixed_target,
            target_json: d.target.clone(),
            params: d.params.clone(),
            single: d.single.clone(),
            undo,
        }))
    }

    /// Does what `action` asks on the resolved target. Returns how to undo it (`None`: nothing
    /// to revert) and the active faults it superseded (an `unpause` closes a `pause` …). What it
    /// did is added to `params` (rules, results, ports …), also when it fails.
    async fn perform(
        &mut self,
        id: FaultId,
        req: &FaultRequest,
        action: &Action,
        view: &ProjectView,
        resolved: &Resolved,
        params: &mut Value,
    ) -> Result<(Option<Undo>, Vec<FaultId>), FaultError> {
        let all = resolved.all();
        let ids: Vec<String> = resolved.a.iter().map(|c| c.id.clone()).collect();
        let timed = req.duration.is_some();
        let mut reverts: Vec<FaultId> = Vec::new();
        let undo: Option<Undo> = match action {
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
                    .disconnect(view, resolved, req, network.as_deref())
                    .await?;
                Some(Undo::Reconnect(items))
            }
            Action::Connect { network } => {
                reverts = self.connect(view, resolved, network.as_deref()).await?;
                None
            }
            Action::Heal => {
                reverts = self.heal(&all).await?;
                None
            }
            Action::Partition
            | Action::Loss { .. }
            | Action::Bandwidth { .. }
            | Action::Netem(_) => {
                let (installs, involved) = self.install_net(id, action, view, resolved).await?;
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
                let exec = ExecArgs {
                    cmd,
                    user: user.as_deref(),
                    detach: *detach,
                    timeout_ms: *timeout_ms,
                };
                self.exec_all(resolved, &exec, params).await?;
                undo.as_ref().map(|u| Undo::Exec {
                    containers: ids.clone(),
                    cmd: u.clone(),
                    user: user.clone(),
                    timeout_ms: *timeout_ms,
                })
            }
            Action::Limits(l) => Some(Undo::Limits(self.set_limits(&ids, l).await?)),
            Action::Syscall(f) => Some(Undo::Syscall(
                self.start_tracers(id, resolved, f, params).await?,
            )),
            Action::Http(_) | Action::Dns(_) => {
                let installs = self
                    .install_proxies(id, action, view, resolved, params)
                    .await?;
                Some(Undo::Proxy(installs))
            }
        };
        Ok((undo, reverts))
    }

    /// `heal`: removes the partitions that involve any of `all`; returns them.
    async fn heal(&mut self, all: &[&ContainerInfo]) -> Result<Vec<FaultId>, FaultError> {
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
        Ok(heal)
    }

    /// `exec`: runs the command in every target container, in turn; a non-zero exit code is
    /// the fault's error. The results go to `params.results`.
    async fn exec_all(
        &self,
        resolved: &Resolved,
        e: &ExecArgs<'_>,
        params: &mut Value,
    ) -> Result<(), FaultError> {
        let mut results = Vec::new();
        for c in &resolved.a {
            let r = self
                .exec(&c.id, e.cmd, e.user, e.detach, e.timeout_ms)
                .await?;
            results.push(json!({"container": c.name, "exit_code": r.0, "output": r.1}));
            if let Some(code) = r.0.filter(|code| *code != 0) {
                params["results"] = json!(results);
                return Err(FaultError::Failed(format!(
                    "command {:?} in {} exited with {code}",
                    e.cmd.join(" "),
                    c.name
                )));
            }
        }
        params["results"] = json!(results);
        Ok(())
    }

    /// `syscall`: starts one tracer per target container (each with its own generator, seeded
    /// from the run's seed, the fault and the container's place); on error the tracers started
    /// are stopped. The seed and the traced processes go to `params`.
    async fn start_tracers(
        &self,
        id: FaultId,
        resolved: &Resolved,
        f: &syscall::SyscallFault,
        params: &mut Value,
    ) -> Result<Vec<std::sync::Arc<syscall::Tracer>>, FaultError> {
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
        Ok(tracers)
    }
}

/// The arguments of an `exec` fault's command.
struct ExecArgs<'a> {
    cmd: &'a [String],
    user: Option<&'a str>,
    detach: bool,
    timeout_ms: u64,
}
