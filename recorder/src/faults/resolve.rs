//! Target resolution: a snapshot of the compose project's containers (found by the compose labels
//! `com.docker.compose.project` / `com.docker.compose.service`, never by parsing names), their
//! PIDs and network endpoints, the project's networks and subnets, and the seeded random choice
//! for `random [...]` targets.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bollard::models::EndpointSettings;
use bollard::query_parameters::{InspectNetworkOptions, ListContainersOptions};
use bollard::Docker;

use super::{FaultError, FaultTarget};

/// Compose label naming the project.
pub const LABEL_PROJECT: &str = "com.docker.compose.project";
/// Compose label naming the service.
pub const LABEL_SERVICE: &str = "com.docker.compose.service";
/// Compose label naming a network (as written in the compose file).
pub const LABEL_NETWORK: &str = "com.docker.compose.network";

/// One container of the project, as inspected.
#[derive(Debug, Clone)]
pub struct ContainerInfo {
    pub id: String,
    /// Name without the leading `/`.
    pub name: String,
    pub service: String,
    pub running: bool,
    pub paused: bool,
    /// Main process PID on the host (0 or `None` when not running).
    pub pid: Option<i64>,
    /// Docker network name → endpoint.
    pub networks: BTreeMap<String, EndpointSettings>,
}

impl ContainerInfo {
    /// IPv4 addresses on every network.
    pub fn addresses(&self) -> Vec<(String, String)> {
        self.networks
            .iter()
            .filter_map(|(n, e)| {
                e.ip_address
                    .as_ref()
                    .filter(|ip| !ip.is_empty())
                    .map(|ip| (n.clone(), ip.clone()))
            })
            .collect()
    }

    /// A usable PID: the container runs and the daemon reported a PID.
    pub fn live_pid(&self) -> Option<i64> {
        self.pid.filter(|p| *p > 0 && self.running)
    }
}

/// One Docker network used by the project.
#[derive(Debug, Clone)]
pub struct NetworkInfo {
    /// Docker's name, e.g. `proj_middle`.
    pub name: String,
    /// The name in the compose file, e.g. `middle` (from the label, else the name itself).
    pub compose_name: String,
    pub subnets: Vec<String>,
}

/// Everything the injector needs to know about the project at one moment.
#[derive(Debug, Clone, Default)]
pub struct ProjectView {
    pub containers: Vec<ContainerInfo>,
    pub networks: Vec<NetworkInfo>,
}

fn bollard_err(what: impl Into<String>) -> impl FnOnce(bollard::errors::Error) -> FaultError {
    let what = what.into();
    move |e| FaultError::Docker {
        what,
        message: e.to_string(),
    }
}

/// Inspects the project's containers (running or not) and networks.
pub async fn snapshot(docker: &Docker, project: &str) -> Result<ProjectView, FaultError> {
    let mut filters = HashMap::new();
    filters.insert(
        "label".to_string(),
        vec![format!("{LABEL_PROJECT}={project}")],
    );
    let list = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        }))
        .await
        .map_err(bollard_err(format!(
            "listing containers of project {project}"
        )))?;
    let mut view = ProjectView::default();
    let mut net_names = BTreeSet::new();
    // Inspect every container concurrently: this runs on every fault, so it is on the clock.
    let inspections = futures_util::future::join_all(list.into_iter().filter_map(|c| {
        let id = c.id?;
        let service = c
            .labels
            .as_ref()
            .and_then(|l| l.get(LABEL_SERVICE))
            .cloned()
            .unwrap_or_default();
        Some(async move {
            let r = docker.inspect_container(&id, None).await;
            (id, service, r)
        })
    }))
    .await;
    for (id, service, r) in inspections {
        let info = match r {
            Ok(i) => i,
            // Removed between list and inspect: skip it.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => continue,
            Err(e) => return Err(bollard_err(format!("inspecting container {id}"))(e)),
        };
        let state = info.state.unwrap_or_default();
        let networks: BTreeMap<String, EndpointSettings> = info
            .network_settings
            .and_then(|n| n.networks)
            .map(|m| m.into_iter().collect())
            .unwrap_or_default();
        net_names.extend(networks.keys().cloned());
        view.containers.push(ContainerInfo {
            id,
            name: info
                .name
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_string(),
            service,
            running: state.running.unwrap_or(false),
            paused: state.paused.unwrap_or(false),
            pid: state.pid,
            networks,
        });
    }
    view.containers.sort_by(|a, b| a.name.cmp(&b.name));
    for n in net_names {
        match docker
            .inspect_network(&n, None::<InspectNetworkOptions>)
            .await
        {
            Ok(info) => {
                let compose_name = info
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(LABEL_NETWORK))
                    .cloned()
                    .unwrap_or_else(|| n.clone());
                let subnets = info
                    .ipam
                    .and_then(|i| i.config)
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|c| c.subnet)
                    .filter(|s| s.contains('.'))
                    .collect();
                view.networks.push(NetworkInfo {
                    name: n,
                    compose_name,
                    subnets,
                });
            }
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {}
            Err(e) => return Err(bollard_err(format!("inspecting network {n}"))(e)),
        }
    }
    Ok(view)
}

impl ProjectView {
    /// The project's network called `name`: its compose name, its Docker name, or
    /// `<project>_<name>`.
    pub fn network(&self, project: &str, name: &str) -> Option<&NetworkInfo> {
        let full = format!("{project}_{name}");
        self.networks
            .iter()
            .find(|n| n.compose_name == name || n.name == name || n.name == full)
    }

    /// Containers of one service.
    pub fn of_service(&self, service: &str) -> Vec<&ContainerInfo> {
        self.containers
            .iter()
            .filter(|c| c.service == service)
            .collect()
    }

    /// The container with this name or id (prefix of at least 6 characters).
    pub fn container(&self, name_or_id: &str) -> Option<&ContainerInfo> {
        let n = name_or_id.trim_start_matches('/');
        self.containers.iter().find(|c| c.name == n).or_else(|| {
            (n.len() >= 6)
                .then(|| self.containers.iter().find(|c| c.id.starts_with(n)))
                .flatten()
        })
    }

    /// Containers attached to a Docker network.
    pub fn on_network(&self, network: &str) -> Vec<&ContainerInfo> {
        self.containers
            .iter()
            .filter(|c| c.networks.contains_key(network))
            .collect()
    }

    /// Services in the project.
    pub fn services(&self) -> Vec<String> {
        let s: BTreeSet<String> = self.containers.iter().map(|c| c.service.clone()).collect();
        s.into_iter().collect()
    }
}

/// A target turned into containers.
#[derive(Debug, Clone, Default)]
pub struct Resolved {
    /// For partitions: the two sides (container ids); for everything else `a` holds the targets.
    pub a: Vec<ContainerInfo>,
    pub b: Vec<ContainerInfo>,
    /// Docker network names when the target is a network.
    pub networks: Vec<NetworkInfo>,
    /// The service picked for a `random [...]` target.
    pub chosen: Option<String>,
    /// Target description for the fault event.
    pub services: Vec<String>,
    /// True for `from A to B` (one-way partition).
    pub one_way: bool,
}

impl Resolved {
    /// Every container involved, deduplicated.
    pub fn all(&self) -> Vec<&ContainerInfo> {
        let mut seen = BTreeSet::new();
        self.a
            .iter()
            .chain(self.b.iter())
            .filter(|c| seen.insert(c.id.clone()))
            .collect()
    }
}

/// SplitMix64: a tiny, seeded, reproducible generator for random target choices.
#[derive(Debug, Clone)]
pub struct SeededRng(u64);

impl SeededRng {
    pub fn new(seed: u64) -> SeededRng {
        SeededRng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// An index in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

fn services_containers(
    view: &ProjectView,
    services: &[String],
) -> Result<Vec<ContainerInfo>, FaultError> {
    let mut out = Vec::new();
    for s in services {
        let cs = view.of_service(s);
        if cs.is_empty() {
            return Err(FaultError::Target(format!(
                "service `{s}` has no container in the project (services: {})",
                view.services().join(", ")
            )));
        }
        out.extend(cs.into_iter().cloned());
    }
    Ok(out)
}

/// Resolves a target against a snapshot; `rng` makes the `random` choice.
pub fn resolve(
    view: &ProjectView,
    project: &str,
    target: &FaultTarget,
    rng: &mut SeededRng,
) -> Result<Resolved, FaultError> {
    let mut r = Resolved::default();
    match target {
        FaultTarget::Service(s) => {
            r.a = services_containers(view, std::slice::from_ref(s))?;
            r.services = vec![s.clone()];
        }
        FaultTarget::Services(v) => {
            r.a = services_containers(view, v)?;
            r.services = v.clone();
        }
        FaultTarget::Random(v) => {
            if v.is_empty() {
                return Err(FaultError::Target("empty random choice".into()));
            }
            let pick = v[rng.below(v.len())].clone();
            r.a = services_containers(view, std::slice::from_ref(&pick))?;
            r.services = vec![pick.clone()];
            r.chosen = Some(pick);
        }
        FaultTarget::Container(c) => {
            let info = view.container(c).ok_or_else(|| {
                FaultError::Target(format!(
                    "no container `{c}` in project {project} (containers: {})",
                    view.containers
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
            r.services = vec![info.service.clone()];
            r.a = vec![info.clone()];
        }
        FaultTarget::Network(n) => {
            let net = view.network(project, n).ok_or_else(|| {
                FaultError::Target(format!(
                    "no network `{n}` in project {project} (networks: {})",
                    view.networks
                        .iter()
                        .map(|n| n.compose_name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
            r.a = view.on_network(&net.name).into_iter().cloned().collect();
            let s: BTreeSet<String> = r.a.iter().map(|c| c.service.clone()).collect();
            r.services = s.into_iter().collect();
            r.networks = vec![net.clone()];
        }
        FaultTarget::Between(a, b) | FaultTarget::FromTo(a, b) => {
            r.a = services_containers(view, a)?;
            r.b = services_containers(view, b)?;
            r.services = a.iter().chain(b.iter()).cloned().collect();
            r.one_way = matches!(target, FaultTarget::FromTo(..));
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_choice_is_reproducible_and_spread() {
        let mut a = SeededRng::new(42);
        let mut b = SeededRng::new(42);
        let xs: Vec<usize> = (0..50).map(|_| a.below(4)).collect();
        let ys: Vec<usize> = (0..50).map(|_| b.below(4)).collect();
        assert_eq!(xs, ys);
        for k in 0..4 {
            assert!(xs.contains(&k), "{xs:?}");
        }
        let mut c = SeededRng::new(43);
        let zs: Vec<usize> = (0..50).map(|_| c.below(4)).collect();
        assert_ne!(xs, zs);
    }

    fn view() -> ProjectView {
        let c = |name: &str, svc: &str, net: &str, ip: &str| ContainerInfo {
            id: format!("{name}-id-0123456789"),
            name: name.into(),
            service: svc.into(),
            running: true,
            paused: false,
            pid: Some(100),
            networks: [(
                net.to_string(),
                EndpointSettings {
                    ip_address: Some(ip.into()),
                    ..Default::default()
                },
            )]
            .into_iter()
            .collect(),
        };
        ProjectView {
            containers: vec![
                c("p_a_1", "a", "p_left", "10.1.0.2"),
                c("p_b_1", "b", "p_left", "10.1.0.3"),
                c("p_c_1", "c", "p_right", "10.2.0.2"),
            ],
            networks: vec![NetworkInfo {
                name: "p_left".into(),
                compose_name: "left".into(),
                subnets: vec!["10.1.0.0/16".into()],
            }],
        }
    }

    #[test]
    fn resolves_targets() {
        let v = view();
        let mut rng = SeededRng::new(1);
        let r = resolve(&v, "p", &FaultTarget::Service("a".into()), &mut rng).unwrap();
        assert_eq!(r.a.len(), 1);
        assert_eq!(r.a[0].name, "p_a_1");
        let r = resolve(&v, "p", &FaultTarget::Network("left".into()), &mut rng).unwrap();
        assert_eq!(r.a.len(), 2);
        assert_eq!(r.services, vec!["a", "b"]);
        let r = resolve(&v, "p", &FaultTarget::Container("p_c_1".into()), &mut rng).unwrap();
        assert_eq!(r.services, vec!["c"]);
        let r = resolve(
            &v,
            "p",
            &FaultTarget::Between(vec!["a".into()], vec!["b".into(), "c".into()]),
            &mut rng,
        )
        .unwrap();
        assert_eq!((r.a.len(), r.b.len(), r.all().len()), (1, 2, 3));
        let r = resolve(
            &v,
            "p",
            &FaultTarget::Random(vec!["a".into(), "b".into(), "c".into()]),
            &mut rng,
        )
        .unwrap();
        assert!(r.chosen.is_some());
        let e = resolve(&v, "p", &FaultTarget::Service("zz".into()), &mut rng).unwrap_err();
        assert!(e.to_string().contains("service `zz`"), "{e}");
        let e = resolve(&v, "p", &FaultTarget::Network("mid".into()), &mut rng).unwrap_err();
        assert!(e.to_string().contains("no network `mid`"), "{e}");
    }
}
