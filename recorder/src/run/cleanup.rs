//! `recorder cleanup`: what a killed recorder left behind, removed: its compose command and
//! captures, syscall tracers still attached (reported), the project's containers and networks,
//! and the host rules of its faults.

use crate::compose::{self, ComposeError};
use crate::exit;
use crate::faults;

/// Why `recorder cleanup` could not clean up.
#[derive(Debug, thiserror::Error)]
pub enum CleanupError {
    /// Neither a project nor `--all` was given (a usage error).
    #[error("give --project P or --all")]
    NoProject,
    /// The Docker engine cannot be reached.
    #[error("docker engine: {0}")]
    Docker(#[source] bollard::errors::Error),
    /// Listing or removing the project's containers and networks failed.
    #[error(transparent)]
    Compose(#[from] ComposeError),
}

impl CleanupError {
    /// The exit code (docs/exit-codes.md): 64 for a usage error, else 5.
    pub fn exit_code(&self) -> i32 {
        match self {
            CleanupError::NoProject => exit::USAGE,
            CleanupError::Docker(_) | CleanupError::Compose(_) => exit::ENV,
        }
    }
}

/// `recorder cleanup`: removes containers and networks of the given (or every leftover) project,
/// and the host rules the fault injector left.
pub async fn cleanup(project: Option<&str>, all: bool) -> Result<Vec<String>, CleanupError> {
    let docker = bollard::Docker::connect_with_local_defaults()
        .map_err(CleanupError::Docker)?
        .negotiate_version()
        .await
        .map_err(CleanupError::Docker)?;
    let projects: Vec<String> = match (project, all) {
        (Some(p), _) => vec![p.to_string()],
        (None, true) => compose::leftover_projects(&docker).await?,
        (None, false) => return Err(CleanupError::NoProject),
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
        let traced = match faults::traced_leftovers(&docker, &p).await {
            Ok(traced) => traced,
            Err(e) => {
                lines.push(format!("{p}: checking tracers: {e}"));
                Vec::new()
            }
        };
        lines.extend(traced.iter().map(|t| format!("{p}: {t}")));
        // the fault injector's rules and pauses, while the containers whose namespaces hold
        // them are still there to be looked into (and so that the lines say what was left)
        match faults::cleanup_with(&docker, &p).await {
            Ok(mut h) => {
                // the traced threads it finds again are reported above
                h.errors.retain(|e| !traced.contains(e));
                lines.extend(host_lines(&p, &h));
            }
            Err(e) => lines.push(format!("{p}: host rules: {e}")),
        }
        let r = compose::remove_project(&docker, &p).await?;
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

/// What [`faults::cleanup_with`] undid in project `p`, one line each (none when nothing was left).
fn host_lines(p: &str, h: &faults::CleanupReport) -> Vec<String> {
    let mut lines = Vec::new();
    if !h.unpaused.is_empty() {
        lines.push(format!("{p}: unpaused {}", h.unpaused.join(", ")));
    }
    if h.rules_removed + h.chains_removed + h.qdiscs_removed > 0 {
        lines.push(format!(
            "{p}: removed {} fault rules, {} chains, {} qdiscs left in {} containers",
            h.rules_removed, h.chains_removed, h.qdiscs_removed, h.containers_checked
        ));
    }
    lines.extend(h.errors.iter().map(|e| format!("{p}: host rules: {e}")));
    lines
}
