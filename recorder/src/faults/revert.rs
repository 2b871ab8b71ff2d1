//! Reverting faults: one at a time (a `for D` timer, teardown), all at once when a halt
//! condition fails, and re-applying network impairments in namespaces a container restart
//! replaced.

use super::*;

impl FaultInjector {
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
    pub(super) fn record_revert(
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

    pub(super) async fn undo(&self, a: &Active) -> Result<(), FaultError> {
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
            Undo::Proxy(installs) => {
                let errors = self.remove_proxies(installs).await;
                if errors.is_empty() {
                    Ok(())
                } else {
                    Err(FaultError::Failed(errors.join("; ")))
                }
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

    pub(super) async fn reapply_for(&mut self, container: &str) {
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
