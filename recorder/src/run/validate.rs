//! Validating a scenario before anything starts: the checks against the compose configuration
//! (`compose config`: services, networks, the fault scope), the schedule's faults, the
//! experiment's steps and the halt conditions. Every error is collected and rendered as a
//! diagnostic, so that `recorder check` and `recorder run` report them all at once.

use crate::compose::{self, ComposeCli};
use crate::experiment;
use crate::faults;
use crate::halt;
use crate::scenario::{self, LoadedScenario, Plan, Resolved, ScenarioError, ScheduledFault};

use super::schedule::schedule_request;

/// What validation learnt.
pub(super) struct Validated {
    /// The services `up` starts.
    pub services: Vec<String>,
    /// The resolved configuration (`compose config`, recorded in the manifest).
    pub config: String,
    pub compiled: Option<experiment::Compiled>,
    /// The halt conditions, compiled.
    pub halt: Option<Vec<halt::HaltMonitor>>,
    /// The fault scope (`[scope]`).
    pub scope: Option<faults::scope::Scope>,
}

/// Validates the scenario against the compose configuration. Every error is returned, rendered
/// as a diagnostic (`error: FILE:LINE:COL: message` and the source excerpt): `errs` (what
/// parsing and resolving found) with those of the checks here, the scenario's in file order,
/// then those of the spec files.
pub(super) async fn validate(
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
        other.extend(experiment_scope_errors(c, s, f, project));
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

/// The `do` steps of experiment `c` that name services, containers or networks outside the
/// fault scope `s` (`f`: what the compose configuration says), rendered at their place.
fn experiment_scope_errors(
    c: &experiment::Compiled,
    s: &faults::scope::Scope,
    f: &compose::ScopeFacts,
    project: &str,
) -> Vec<String> {
    let on_network = |n: &str| f.networks.get(n).cloned();
    let container = |c: &str| f.container_service(project, c);
    let mut out = Vec::new();
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
                out.push(experiment::diagnostic_at(
                    at,
                    text,
                    &format!("experiment {}, step {} `{text}`: {m}", c.name, i + 1),
                ));
            }
        }
    }
    out
}
