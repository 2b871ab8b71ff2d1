//! Network impairments of faults (`partition`, `loss`, `bandwidth`, `netem`): the iptables
//! rules and the share of the project's tc tree each container's namespace gets, installed in one
//! transaction per namespace, removed again (with the project's chains once no fault keeps rules
//! there), and the bookkeeping of which namespaces hold the project's chains.

use super::*;

/// One container's share of a network fault: its iptables rules and, per interface, its part of
/// the project's tc tree (whether it is a shaping class, and the `tc` commands adding it).
pub(super) type NetPlan<'a> = (&'a ContainerInfo, Vec<Rule>, Vec<TcPlan>);

/// A fault's `tc` commands for one interface: (device, shaping, commands).
pub(super) type TcPlan = (String, bool, Vec<rules::Args>);

/// A fault's part of the tc tree of one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TcPart {
    pub(super) dev: String,
    /// A shaping class (bandwidth, netem) rather than partition filters.
    pub(super) shaping: bool,
}

/// What was installed in one container's namespace for one fault.
#[derive(Debug, Clone)]
pub(super) struct NetInstall {
    pub(super) fault_id: String,
    pub(super) container_id: String,
    pub(super) pid: i64,
    pub(super) rules: Vec<Rule>,
    pub(super) tc: Vec<TcPart>,
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
pub(super) fn shared_addresses(c: &ContainerInfo, peer: &ContainerInfo) -> Vec<String> {
    peer.networks
        .iter()
        .filter(|(n, _)| c.networks.contains_key(*n))
        .filter_map(|(_, e)| e.ip_address.clone().filter(|ip| !ip.is_empty()))
        .collect()
}

impl FaultInjector {
    /// Builds and installs the iptables/tc state of a network fault. On error, everything
    /// installed so far is removed.
    pub(super) async fn install_net(
        &self,
        id: FaultId,
        action: &Action,
        view: &ProjectView,
        resolved: &Resolved,
    ) -> Result<(Vec<NetInstall>, BTreeMap<String, (i64, Vec<String>)>), FaultError> {
        let fid = id.to_string();
        let tags = &self.tags;
        let (plan, involved) = self.net_plan(&fid, action, view, resolved).await?;
        let merged = merge_plans(plan);
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

    /// What fault `fid` (`action` on `resolved`) installs in each container's namespace, and
    /// every container whose address the rules depend on.
    async fn net_plan<'a>(
        &self,
        fid: &str,
        action: &Action,
        view: &'a ProjectView,
        resolved: &'a Resolved,
    ) -> Result<(Vec<NetPlan<'a>>, Vec<&'a ContainerInfo>), FaultError> {
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
                        plan.push((c, Vec::new(), partition_tc(tags, fid, c, &net.subnets)?));
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
                    plan.push((c, Vec::new(), partition_tc(tags, fid, c, &peers)?));
                }
                // One-way (`from A to B`): only A's egress to B; B still talks to A.
                if !resolved.one_way {
                    for c in &b {
                        let peers: Vec<String> =
                            a.iter().flat_map(|p| shared_addresses(c, p)).collect();
                        plan.push((c, Vec::new(), partition_tc(tags, fid, c, &peers)?));
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
                                        fid,
                                        d,
                                        *probability,
                                        Some(s),
                                    ));
                                }
                            }
                            None => rs.push(rules::drop_random(tags, fid, d, *probability, None)),
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
                        cmds.push((d.clone(), true, rules::tc_shape_add(tags, d, fid, &leaf)));
                    }
                    plan.push((c, Vec::new(), cmds));
                }
            }
            _ => {}
        }
        Ok((plan, involved))
    }

    /// Removes installed rules and qdiscs from namespaces that still exist (same PID); rules in
    /// namespaces that died with a restart are gone already. Where no active fault keeps rules
    /// in a namespace, the project's chains go in the same transaction as the last rules.
    pub(super) async fn remove_installs(&self, installs: &[NetInstall]) -> Result<(), FaultError> {
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
    pub(super) fn has_chains(&self, container: &str, pid: i64) -> bool {
        self.chains
            .lock()
            .map(|s| s.contains(&(container.to_string(), pid)))
            .unwrap_or(false)
    }

    pub(super) fn set_chains(&self, container: &str, pid: i64, present: bool) {
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
    pub(super) fn rules_kept(&self, container: &str) -> bool {
        self.active.values().any(|a| match &a.undo {
            Undo::Net { installs, .. } => installs
                .iter()
                .any(|i| i.container_id == container && !i.rules.is_empty()),
            _ => false,
        })
    }

    /// Whether an active fault keeps a part of the tc tree on this interface of this container.
    pub(super) fn tc_kept(&self, container: &str, dev: &str) -> bool {
        self.active.values().any(|a| match &a.undo {
            Undo::Net { installs, .. } => installs
                .iter()
                .any(|i| i.container_id == container && i.tc.iter().any(|p| p.dev == dev)),
            _ => false,
        })
    }

    /// The active fault shaping this interface of this container, if any.
    pub(super) fn shaping_on(&self, container: &str, dev: &str) -> Option<FaultId> {
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
    pub(super) async fn namespace_alive(&self, container: &str, pid: i64) -> bool {
        host::pid_belongs_to(pid, container) || self.current_pid(container).await == Some(pid)
    }

    pub(super) async fn current_pid(&self, container: &str) -> Option<i64> {
        let info = self.docker.inspect_container(container, None).await.ok()?;
        let st = info.state?;
        if st.running != Some(true) {
            return None;
        }
        st.pid.filter(|p| *p > 0)
    }

    /// Drops the project's chains from these containers' namespaces when no active fault has
    /// rules there any more (what [`Self::remove_installs`] could not remove with the rules).
    pub(super) async fn drop_empty_chains(&self, container_ids: &[String]) {
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
}

/// One entry per container (a container named twice gets one transaction).
fn merge_plans(plan: Vec<NetPlan<'_>>) -> Vec<NetPlan<'_>> {
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
    merged
}
