//! The fault scope (blast radius, `[scope]` in a scenario, docs/scenario.md): the compose
//! services faults may touch. [`Scope::check_names`] judges a target as written, before anything
//! starts (services named, services on a named network, the service a container name belongs
//! to); [`resolve_in_scope`] resolves a target at run time and refuses it when any container it
//! reaches is outside the scope (a random choice, a network whose members changed, a binding).

use std::collections::BTreeSet;

use super::resolve::{self, ProjectView, Resolved, SeededRng};
use super::{FaultError, FaultTarget};

/// The services faults may touch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    services: BTreeSet<String>,
}

/// A target as written that reaches services outside the scope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "fault target outside the scope: {what} {} (scope: {scope})",
    services.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ")
)]
pub struct OutsideScope {
    /// How the target reaches them (`target names`, `network `n` joins` …).
    pub what: String,
    /// The services outside the scope.
    pub services: Vec<String>,
    /// The scope, as listed in messages.
    pub scope: String,
}

impl Scope {
    /// A scope of these services.
    pub fn new(services: impl IntoIterator<Item = String>) -> Scope {
        Scope {
            services: services.into_iter().collect(),
        }
    }

    /// Whether a fault may touch `service`.
    pub fn allows(&self, service: &str) -> bool {
        self.services.contains(service)
    }

    /// The services in scope, sorted.
    pub fn services(&self) -> Vec<String> {
        self.services.iter().cloned().collect()
    }

    fn listed(&self) -> String {
        if self.services.is_empty() {
            "none".to_string()
        } else {
            self.services().join(", ")
        }
    }

    /// Checks a target as written: every service it names (all options of a `random` choice,
    /// both sides of a partition), every service `on_network` says joins a named network, and
    /// the service `container_service` says a named container belongs to must be in scope.
    /// `None` from either lookup: not known before the run, checked when the target is resolved.
    pub fn check_names(
        &self,
        target: &FaultTarget,
        on_network: &dyn Fn(&str) -> Option<Vec<String>>,
        container_service: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), OutsideScope> {
        let mut outside: Vec<String> = Vec::new();
        let push = |s: &str, outside: &mut Vec<String>| {
            if !self.allows(s) && !outside.iter().any(|x| x == s) {
                outside.push(s.to_string());
            }
        };
        let what = match target {
            FaultTarget::Network(n) => {
                for s in on_network(n).unwrap_or_default() {
                    push(&s, &mut outside);
                }
                format!("network `{n}` joins")
            }
            FaultTarget::Container(c) => {
                if let Some(s) = container_service(c) {
                    push(&s, &mut outside);
                }
                format!("container `{c}` belongs to")
            }
            t => {
                for s in super::spec::target_services(t) {
                    push(s, &mut outside);
                }
                "target names".to_string()
            }
        };
        if outside.is_empty() {
            Ok(())
        } else {
            Err(OutsideScope {
                what,
                services: outside,
                scope: self.listed(),
            })
        }
    }

    /// Checks a resolved target: every container it reaches must belong to a service in scope.
    pub fn check_resolved(&self, r: &Resolved) -> Result<(), FaultError> {
        let mut outside: Vec<String> = Vec::new();
        for c in r.all() {
            if !self.allows(&c.service) {
                outside.push(format!("{} (service `{}`)", c.name, c.service));
            }
        }
        if outside.is_empty() {
            Ok(())
        } else {
            Err(FaultError::Target(format!(
                "outside the scope: resolved to {} (scope: {})",
                outside.join(", "),
                self.listed()
            )))
        }
    }
}

/// Resolves `target` against `view` (see [`resolve::resolve`]; `rng` makes a `random` choice)
/// and, with a scope, refuses it when the result reaches a container outside it. The one check
/// every run-time resolution goes through (schedule entries, experiment steps, random choices,
/// bound targets).
pub fn resolve_in_scope(
    view: &ProjectView,
    project: &str,
    target: &FaultTarget,
    rng: &mut SeededRng,
    scope: Option<&Scope>,
) -> Result<Resolved, FaultError> {
    let r = resolve::resolve(view, project, target, rng)?;
    if let Some(s) = scope {
        s.check_resolved(&r)?;
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none(_: &str) -> Option<Vec<String>> {
        None
    }
    fn no_container(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn names_outside_the_scope_are_refused_with_the_scope_listed() {
        let s = Scope::new(["a".to_string(), "b".to_string()]);
        assert!(s
            .check_names(&FaultTarget::Service("a".into()), &none, &no_container)
            .is_ok());
        let e = s
            .check_names(
                &FaultTarget::Random(vec!["a".into(), "c".into()]),
                &none,
                &no_container,
            )
            .expect_err("c is outside")
            .to_string();
        assert_eq!(
            e,
            "fault target outside the scope: target names `c` (scope: a, b)"
        );
        let e = s
            .check_names(
                &FaultTarget::Between(vec!["a".into()], vec!["d".into(), "c".into()]),
                &none,
                &no_container,
            )
            .expect_err("c, d are outside")
            .to_string();
        assert!(e.contains("`d`, `c`"), "{e}");
        let net = |n: &str| (n == "mid").then(|| vec!["a".to_string(), "z".to_string()]);
        let e = s
            .check_names(&FaultTarget::Network("mid".into()), &net, &no_container)
            .expect_err("z joins mid")
            .to_string();
        assert!(e.contains("network `mid` joins `z`"), "{e}");
        // not known before the run: left to the run-time check
        assert!(s
            .check_names(&FaultTarget::Network("other".into()), &net, &no_container)
            .is_ok());
        let cont = |c: &str| (c == "p-z-1").then(|| "z".to_string());
        assert!(s
            .check_names(&FaultTarget::Container("p-z-1".into()), &none, &cont)
            .is_err());
        assert!(s
            .check_names(&FaultTarget::Container("p-a-1".into()), &none, &cont)
            .is_ok());
    }

    #[test]
    fn resolved_containers_outside_the_scope_are_refused() {
        let c = |name: &str, service: &str| resolve::ContainerInfo {
            id: name.into(),
            name: name.into(),
            service: service.into(),
            running: true,
            paused: false,
            pid: Some(1),
            networks: Default::default(),
        };
        let view = ProjectView {
            containers: vec![c("p-a-1", "a"), c("p-b-1", "b")],
            networks: Vec::new(),
        };
        let scope = Scope::new(["a".to_string()]);
        let mut rng = SeededRng::new(1);
        let ok = resolve_in_scope(
            &view,
            "p",
            &FaultTarget::Service("a".into()),
            &mut rng,
            Some(&scope),
        );
        assert!(ok.is_ok());
        let err = resolve_in_scope(
            &view,
            "p",
            &FaultTarget::Services(vec!["a".into(), "b".into()]),
            &mut rng,
            Some(&scope),
        )
        .expect_err("b is outside")
        .to_string();
        assert_eq!(
            err.to_string(),
            "fault target: outside the scope: resolved to p-b-1 (service `b`) (scope: a)"
        );
        // no scope: everything resolves
        assert!(resolve_in_scope(
            &view,
            "p",
            &FaultTarget::Service("b".into()),
            &mut rng,
            None
        )
        .is_ok());
    }
}
