//! What a killed recorder's faults leave behind, found and removed: the project's iptables rules
//! and chains and root qdiscs in every container namespace, paused containers, and threads that
//! a syscall fault's tracer still traces.

use super::*;

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
pub(super) async fn stop_tracers(tracers: &[std::sync::Arc<syscall::Tracer>]) -> Vec<String> {
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
