//! Container faults through the Docker API: one call per container concurrently, the network
//! endpoints of `disconnect` kept for `connect`, commands run with `exec`, and the update that
//! puts back what a `limits` fault changed.

use super::*;

impl FaultInjector {
    /// Runs one Docker call per container concurrently; the first error wins.
    pub(super) async fn each<F, Fut>(&self, ids: &[String], f: F) -> Result<(), FaultError>
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
    pub(super) fn close_matching(
        &mut self,
        ids: &[String],
        pred: impl Fn(&Undo) -> bool,
    ) -> Vec<FaultId> {
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
    pub(super) fn network_name(&self, view: &ProjectView, n: &str) -> Result<String, FaultError> {
        view.network(&self.project, n)
            .map(|x| x.name.clone())
            .ok_or_else(|| {
                FaultError::Target(format!("no network `{n}` in project {}", self.project))
            })
    }

    pub(super) async fn disconnect(
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

    pub(super) async fn reconnect(
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

    pub(super) async fn connect(
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

    pub(super) async fn exec(
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
}

/// The largest memory limit cgroup v1 takes (`PAGE_COUNTER_MAX` pages), i.e. "unlimited".
pub(super) const MEMORY_UNLIMITED: i64 = 9_223_372_036_854_771_712;

/// The update that puts back what a `limits` fault changes. Docker's update API reads 0 as "leave
/// unchanged", so a limit that was unset is restored as the widest value the kernel accepts:
/// memory 2^62 bytes with unlimited swap, all host CPUs, 1024 CPU shares, no pids limit.
pub(super) fn restore_body(
    hc: &bollard::models::HostConfig,
    changed: &Limits,
) -> ContainerUpdateBody {
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

impl FaultInjector {
    /// `limits`: updates every container's limits, keeping what puts each back; on error the
    /// containers already changed are put back.
    pub(super) async fn set_limits(
        &self,
        ids: &[String],
        l: &Limits,
    ) -> Result<Vec<(String, ContainerUpdateBody)>, FaultError> {
        let mut saved: Vec<(String, ContainerUpdateBody)> = Vec::new();
        for c in ids {
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
        Ok(saved)
    }
}
