//! The compose lifecycle: the compose CLI (`docker compose` v2 or `docker-compose` v1) for
//! `config`, `up -d` and `down -v --remove-orphans`, and everything about the running project that
//! is read through the Docker API (bollard): containers found by the compose labels (never by
//! parsing names), readiness (running, and healthy where a health check exists), addresses and
//! networks for the manifest, and the cleanup of what a killed recorder left behind.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bollard::query_parameters::{
    InspectNetworkOptions, ListContainersOptionsBuilder, ListNetworksOptionsBuilder,
    RemoveContainerOptionsBuilder,
};
use bollard::Docker;
use tokio::process::Command;
use trace::manifest::{ComposeInfo, ContainerInfo, NetworkInfo, ServiceInfo};

/// Compose label naming the project of a container or network.
pub const LABEL_PROJECT: &str = "com.docker.compose.project";
/// Compose label naming the service of a container.
pub const LABEL_SERVICE: &str = "com.docker.compose.service";
/// Compose label naming a network as written in the compose file.
pub const LABEL_NETWORK: &str = "com.docker.compose.network";

/// Errors of the compose lifecycle.
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error("no compose command found (tried `docker compose` and `docker-compose`)")]
    NoCompose,
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Command {
        cmd: String,
        status: String,
        stderr: String,
    },
    #[error("cannot run `{cmd}`: {source}")]
    Spawn { cmd: String, source: std::io::Error },
    #[error("docker api: {0}")]
    Docker(#[from] bollard::errors::Error),
    #[error("containers not ready after {timeout:?}: {what}")]
    NotReady { timeout: Duration, what: String },
}

/// The compose command line found on this machine.
#[derive(Debug, Clone)]
pub struct ComposeCli {
    /// Program and leading args: `["docker", "compose"]` or `["docker-compose"]`.
    argv: Vec<String>,
    /// Version text as printed by `version --short` (or the first line of `version`).
    pub version: String,
}

impl ComposeCli {
    /// Finds `docker compose` (v2) or `docker-compose` (v1), in that order.
    pub async fn detect() -> Result<ComposeCli, ComposeError> {
        for argv in [vec!["docker", "compose"], vec!["docker-compose"]] {
            let mut c = Command::new(argv[0]);
            c.args(&argv[1..]).arg("version").kill_on_drop(true);
            if let Ok(out) = c.output().await {
                if out.status.success() {
                    let text = String::from_utf8_lossy(&out.stdout);
                    let version = text.lines().next().unwrap_or("").trim().to_string();
                    return Ok(ComposeCli {
                        argv: argv.iter().map(|s| s.to_string()).collect(),
                        version,
                    });
                }
            }
        }
        Err(ComposeError::NoCompose)
    }

    /// `docker compose` or `docker-compose`, with the version.
    pub fn describe(&self) -> String {
        format!("{} ({})", self.argv.join(" "), self.version)
    }

    fn command(&self, files: &[PathBuf], project: &str) -> Command {
        let mut c = Command::new(&self.argv[0]);
        c.args(&self.argv[1..]);
        for f in files {
            c.arg("-f").arg(f);
        }
        c.arg("-p").arg(project);
        c.kill_on_drop(true);
        c.stdin(std::process::Stdio::null());
        c
    }

    async fn run(
        &self,
        files: &[PathBuf],
        project: &str,
        args: &[&str],
    ) -> Result<String, ComposeError> {
        let mut c = self.command(files, project);
        c.args(args);
        let cmd = format!("{} {}", self.argv.join(" "), args.join(" "));
        let out = c.output().await.map_err(|source| ComposeError::Spawn {
            cmd: cmd.clone(),
            source,
        })?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let stderr = stderr.trim();
            let tail: Vec<&str> = stderr.lines().rev().take(6).collect();
            Err(ComposeError::Command {
                cmd,
                status: out.status.to_string(),
                stderr: tail.into_iter().rev().collect::<Vec<_>>().join(" | "),
            })
        }
    }

    /// `config`: the resolved configuration.
    pub async fn config(&self, files: &[PathBuf], project: &str) -> Result<String, ComposeError> {
        self.run(files, project, &["config"]).await
    }

    /// `config --services`: the service names `up` starts. Compose v1 lists services of
    /// profiles that are not enabled too (v2 does not); they are dropped here using the
    /// resolved configuration and `COMPOSE_PROFILES`, so the recorder never waits for a service
    /// that `up` does not create.
    pub async fn services(
        &self,
        files: &[PathBuf],
        project: &str,
    ) -> Result<Vec<String>, ComposeError> {
        self.services_and_config(files, project)
            .await
            .map(|(services, _)| services)
    }

    /// [`Self::services`] together with the resolved configuration (`config`) it was computed
    /// from, for callers that also need e.g. the networks ([`project_networks`]).
    pub async fn services_and_config(
        &self,
        files: &[PathBuf],
        project: &str,
    ) -> Result<(Vec<String>, String), ComposeError> {
        let out = self.run(files, project, &["config", "--services"]).await?;
        let config = self.config(files, project).await?;
        let profiles = std::env::var("COMPOSE_PROFILES").unwrap_or_default();
        let inactive = inactive_profile_services(&config, &profiles);
        let services = out
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !inactive.iter().any(|s| s == l))
            .map(str::to_string)
            .collect();
        Ok((services, config))
    }

    /// `up -d`.
    pub async fn up(&self, files: &[PathBuf], project: &str) -> Result<(), ComposeError> {
        self.run(files, project, &["up", "-d", "--no-build"])
            .await
            .map(|_| ())
    }

    /// `down -v --remove-orphans`.
    pub async fn down(&self, files: &[PathBuf], project: &str) -> Result<(), ComposeError> {
        self.run(
            files,
            project,
            &["down", "-v", "--remove-orphans", "-t", "3"],
        )
        .await
        .map(|_| ())
    }
}

/// Services of the resolved configuration `config_yaml` that declare `profiles`, none of which
/// is enabled in `enabled` (the comma-separated `COMPOSE_PROFILES` value; `*` enables all).
/// A configuration that does not parse yields no services: the caller then waits for all.
pub fn inactive_profile_services(config_yaml: &str, enabled: &str) -> Vec<String> {
    let enabled: Vec<&str> = enabled
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    if enabled.contains(&"*") {
        return Vec::new();
    }
    let Ok(doc) = serde_yaml_ng::from_str::<serde_json::Value>(config_yaml) else {
        return Vec::new();
    };
    let Some(services) = doc.get("services").and_then(|s| s.as_object()) else {
        return Vec::new();
    };
    services
        .iter()
        .filter(|(_, svc)| {
            svc.get("profiles")
                .and_then(|p| p.as_array())
                .is_some_and(|ps| {
                    !ps.is_empty()
                        && !ps
                            .iter()
                            .filter_map(|p| p.as_str())
                            .any(|p| enabled.contains(&p))
                })
        })
        .map(|(name, _)| name.clone())
        .collect()
}

/// The compose networks of the resolved configuration `config_yaml`, by their compose name (the
/// key in the file, which is also the `com.docker.compose.network` label the recorder finds them
/// by), sorted: the top-level `networks` keys, the networks services join, and `default` when a
/// service joins no network explicitly and has no `network_mode` (compose then creates the
/// implicit `<project>_default`; v2 writes it into `config`, v1 does not). `None` when the
/// configuration does not parse as a mapping (the caller then cannot check network names).
pub fn project_networks(config_yaml: &str) -> Option<Vec<String>> {
    let doc = serde_yaml_ng::from_str::<serde_json::Value>(config_yaml).ok()?;
    let doc = doc.as_object()?;
    let mut out: Vec<String> = doc
        .get("networks")
        .and_then(|n| n.as_object())
        .map(|n| n.keys().cloned().collect())
        .unwrap_or_default();
    let services = doc.get("services").and_then(|s| s.as_object());
    for svc in services.into_iter().flat_map(|s| s.values()) {
        match svc.get("networks") {
            Some(serde_json::Value::Object(m)) => out.extend(m.keys().cloned()),
            Some(serde_json::Value::Array(v)) => {
                out.extend(v.iter().filter_map(|n| n.as_str()).map(str::to_string))
            }
            _ if svc.get("network_mode").is_none() => out.push("default".to_string()),
            _ => {}
        }
    }
    out.sort();
    out.dedup();
    Some(out)
}

/// What the fault scope needs from the resolved compose configuration (`compose config`
/// YAML): each service's labels, the services on each network (compose names; `default` for
/// a service naming none, as [`project_networks`]), and fixed container names
/// (`container_name`). `None` when the configuration does not parse.
pub fn scope_facts(config_yaml: &str) -> Option<ScopeFacts> {
    let doc = serde_yaml_ng::from_str::<serde_json::Value>(config_yaml).ok()?;
    let services = doc.as_object()?.get("services")?.as_object()?;
    let mut f = ScopeFacts::default();
    for (name, svc) in services {
        let labels: BTreeMap<String, String> = match svc.get("labels") {
            Some(serde_json::Value::Object(m)) => m
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        serde_json::Value::String(s) => s.clone(),
                        serde_json::Value::Null => String::new(),
                        other => other.to_string(),
                    };
                    (k.clone(), v)
                })
                .collect(),
            Some(serde_json::Value::Array(v)) => v
                .iter()
                .filter_map(|x| x.as_str())
                .map(|x| match x.split_once('=') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => (x.to_string(), String::new()),
                })
                .collect(),
            _ => BTreeMap::new(),
        };
        f.labels.insert(name.clone(), labels);
        let nets: Vec<String> = match svc.get("networks") {
            Some(serde_json::Value::Object(m)) => m.keys().cloned().collect(),
            Some(serde_json::Value::Array(v)) => v
                .iter()
                .filter_map(|n| n.as_str())
                .map(str::to_string)
                .collect(),
            _ if svc.get("network_mode").is_none() => vec!["default".to_string()],
            _ => Vec::new(),
        };
        for n in nets {
            f.networks.entry(n).or_default().push(name.clone());
        }
        if let Some(c) = svc.get("container_name").and_then(|c| c.as_str()) {
            f.container_names.insert(c.to_string(), name.clone());
        }
    }
    Some(f)
}

/// See [`scope_facts`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeFacts {
    /// Service → its labels (a label without a value maps to "").
    pub labels: BTreeMap<String, BTreeMap<String, String>>,
    /// Network (compose name) → the services on it.
    pub networks: BTreeMap<String, Vec<String>>,
    /// `container_name` → service.
    pub container_names: BTreeMap<String, String>,
}

impl ScopeFacts {
    /// The service a container name belongs to: a fixed `container_name`, or compose's
    /// generated `<project>-<service>-<n>` / `<project>_<service>_<n>`.
    pub fn container_service(&self, project: &str, name: &str) -> Option<String> {
        if let Some(s) = self.container_names.get(name) {
            return Some(s.clone());
        }
        self.labels
            .keys()
            .find(|svc| {
                ['-', '_'].iter().any(|sep| {
                    name.strip_prefix(&format!("{project}{sep}{svc}{sep}"))
                        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
                })
            })
            .cloned()
    }
}

/// Redacts values of environment variables whose names look like secrets (see
/// [`trace::manifest::is_secret_name`]) in `compose config` YAML output. Handles the map form
/// (`NAME: value`) and the list form (`- NAME=value`).
pub fn redact_config(yaml: &str) -> String {
    let mut out = String::with_capacity(yaml.len());
    for line in yaml.lines() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        let redacted = if let Some(item) = trimmed.strip_prefix("- ") {
            match item.split_once('=') {
                Some((k, _)) if is_env_name(k) && trace::manifest::is_secret_name(k) => {
                    Some(format!("{indent}- {k}={}", trace::manifest::REDACTED))
                }
                _ => None,
            }
        } else {
            match trimmed.split_once(':') {
                Some((k, v))
                    if !v.trim().is_empty()
                        && is_env_name(k.trim_matches(|c| c == '"' || c == '\''))
                        && trace::manifest::is_secret_name(k) =>
                {
                    Some(format!("{indent}{k}: {}", trace::manifest::REDACTED))
                }
                _ => None,
            }
        };
        out.push_str(redacted.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

fn is_env_name(k: &str) -> bool {
    !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// SHA-256 of a file's content, hex.
pub fn file_sha256(p: &Path) -> std::io::Result<String> {
    use sha2::Digest;
    let bytes = std::fs::read(p)?;
    Ok(hex::encode(sha2::Sha256::digest(&bytes)))
}

/// What the recorder knows about one running container of the project.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerFacts {
    pub id: String,
    /// Name without the leading `/`.
    pub name: String,
    pub service: String,
    pub image: String,
    pub image_id: String,
    /// Host pid of the container's init process (0 when not running).
    pub pid: i64,
    pub running: bool,
    pub paused: bool,
    pub tty: bool,
    /// `None`: no health check; otherwise docker's health status (starting, healthy, unhealthy).
    pub health: Option<String>,
    /// Compose network name -> IPv4 address.
    pub addresses: BTreeMap<String, String>,
    pub aliases: Vec<String>,
}

/// A network of the project.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkFacts {
    /// Name as in the compose file.
    pub name: String,
    pub info: NetworkInfo,
}

/// The project as seen through the Docker API.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProjectState {
    pub containers: Vec<ContainerFacts>,
    pub networks: Vec<NetworkFacts>,
}

impl ProjectState {
    /// The manifest's compose section (services, containers, networks); project, files and
    /// config are filled by the caller.
    pub fn fill(&self, c: &mut ComposeInfo) {
        c.services.clear();
        for f in &self.containers {
            let s = c
                .services
                .entry(f.service.clone())
                .or_insert_with(|| ServiceInfo {
                    image: f.image.clone(),
                    containers: Vec::new(),
                });
            s.containers.push(ContainerInfo {
                id: f.id.clone(),
                name: f.name.clone(),
                image: f.image.clone(),
                image_id: f.image_id.clone(),
                addresses: f.addresses.clone(),
                aliases: f.aliases.clone(),
            });
        }
        c.networks = self
            .networks
            .iter()
            .map(|n| (n.name.clone(), n.info.clone()))
            .collect();
    }

    /// The container with this id.
    pub fn by_id(&self, id: &str) -> Option<&ContainerFacts> {
        self.containers.iter().find(|c| c.id == id)
    }
}

fn project_filter(project: &str) -> std::collections::HashMap<String, Vec<String>> {
    let mut f = std::collections::HashMap::new();
    f.insert(
        "label".to_string(),
        vec![format!("{LABEL_PROJECT}={project}")],
    );
    f
}

/// Ids of every container (running or not) labelled with the project.
pub async fn container_ids(docker: &Docker, project: &str) -> Result<Vec<String>, ComposeError> {
    let opts = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&project_filter(project))
        .build();
    let list = docker.list_containers(Some(opts)).await?;
    Ok(list.into_iter().filter_map(|c| c.id).collect())
}

/// Inspects one container into [`ContainerFacts`]; `None` when it is gone or not of a compose
/// service.
pub async fn inspect_container(
    docker: &Docker,
    id: &str,
) -> Result<Option<ContainerFacts>, ComposeError> {
    let c = match docker.inspect_container(id, None).await {
        Ok(c) => c,
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let config = c.config.unwrap_or_default();
    let labels = config.labels.clone().unwrap_or_default();
    let Some(service) = labels.get(LABEL_SERVICE).cloned() else {
        return Ok(None);
    };
    let state = c.state.unwrap_or_default();
    let mut addresses = BTreeMap::new();
    let mut aliases = Vec::new();
    let nets = c
        .network_settings
        .and_then(|n| n.networks)
        .unwrap_or_default();
    for (docker_net, ep) in nets {
        // Compose names networks `<project>_<name>`; the manifest keys them by the compose name.
        let project = labels.get(LABEL_PROJECT).map(String::as_str).unwrap_or("");
        let name = docker_net
            .strip_prefix(&format!("{project}_"))
            .unwrap_or(&docker_net)
            .to_string();
        if let Some(ip) = ep.ip_address.filter(|s| !s.is_empty()) {
            addresses.insert(name, ip);
        }
        for a in ep.aliases.unwrap_or_default() {
            if !aliases.contains(&a) {
                aliases.push(a);
            }
        }
    }
    Ok(Some(ContainerFacts {
        id: c.id.unwrap_or_else(|| id.to_string()),
        name: c
            .name
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string(),
        service,
        image: config.image.unwrap_or_default(),
        image_id: c.image.unwrap_or_default(),
        pid: state.pid.unwrap_or(0),
        running: state.running.unwrap_or(false),
        paused: state.paused.unwrap_or(false),
        tty: config.tty.unwrap_or(false),
        health: state
            .health
            .and_then(|h| h.status)
            .map(|s| s.to_string())
            .filter(|s| !s.is_empty() && s != "none"),
        addresses,
        aliases,
    }))
}

/// Every container and network of the project, from the compose labels.
pub async fn discover(docker: &Docker, project: &str) -> Result<ProjectState, ComposeError> {
    let mut containers = Vec::new();
    for id in container_ids(docker, project).await? {
        if let Some(f) = inspect_container(docker, &id).await? {
            containers.push(f);
        }
    }
    containers.sort_by(|a, b| (&a.service, &a.name).cmp(&(&b.service, &b.name)));
    let opts = ListNetworksOptionsBuilder::default()
        .filters(&project_filter(project))
        .build();
    let mut networks = Vec::new();
    for n in docker.list_networks(Some(opts)).await? {
        let Some(id) = n.id.clone() else { continue };
        let full = match docker
            .inspect_network(&id, None::<InspectNetworkOptions>)
            .await
        {
            Ok(x) => x,
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => continue,
            Err(e) => return Err(e.into()),
        };
        let docker_name = full.name.clone().unwrap_or_default();
        let labels = full.labels.clone().unwrap_or_default();
        let name = labels.get(LABEL_NETWORK).cloned().unwrap_or_else(|| {
            docker_name
                .strip_prefix(&format!("{project}_"))
                .unwrap_or(&docker_name)
                .to_string()
        });
        let ipam = full.ipam.and_then(|i| i.config).unwrap_or_default();
        let first = ipam
            .into_iter()
            .find(|c| c.subnet.as_deref().is_some_and(|s| s.contains('.')));
        let options = full.options.unwrap_or_default();
        let bridge = options
            .get("com.docker.network.bridge.name")
            .cloned()
            .or_else(|| {
                (full.driver.as_deref() == Some("bridge"))
                    .then(|| format!("br-{}", &id[..id.len().min(12)]))
            });
        networks.push(NetworkFacts {
            name,
            info: NetworkInfo {
                id: id.clone(),
                docker_name,
                driver: full.driver.unwrap_or_default(),
                subnet: first.as_ref().and_then(|c| c.subnet.clone()),
                gateway: first.and_then(|c| c.gateway),
                bridge,
            },
        });
    }
    networks.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(ProjectState {
        containers,
        networks,
    })
}

/// Waits until every service has at least one container, all running, and healthy where a health
/// check exists. Returns the project state at that moment.
pub async fn wait_ready(
    docker: &Docker,
    project: &str,
    services: &[String],
    timeout: Duration,
) -> Result<ProjectState, ComposeError> {
    let start = Instant::now();
    loop {
        let st = discover(docker, project).await?;
        let mut missing = Vec::new();
        for s in services {
            let cs: Vec<&ContainerFacts> =
                st.containers.iter().filter(|c| &c.service == s).collect();
            if cs.is_empty() {
                missing.push(format!("{s}: no container"));
            }
            for c in cs {
                if !c.running {
                    missing.push(format!("{}: not running", c.name));
                } else if let Some(h) = &c.health {
                    if h != "healthy" {
                        missing.push(format!("{}: {h}", c.name));
                    }
                }
            }
        }
        if missing.is_empty() {
            return Ok(st);
        }
        if start.elapsed() >= timeout {
            return Err(ComposeError::NotReady {
                timeout,
                what: missing.join(", "),
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Directory where running recorders register their project names, so `recorder cleanup --all`
/// finds projects with custom names too.
pub fn registry_dir() -> PathBuf {
    std::env::temp_dir().join("chaos-recorder-projects")
}

/// Registers a project as in use by this recorder.
pub fn register_project(project: &str) {
    let d = registry_dir();
    let _ = std::fs::create_dir_all(&d);
    let _ = std::fs::write(d.join(project), std::process::id().to_string());
}

/// Unregisters a project after teardown.
pub fn unregister_project(project: &str) {
    let _ = std::fs::remove_file(registry_dir().join(project));
}

/// Whether a command line (`/proc/PID/cmdline` split at NULs) is a compose CLI (`docker-compose`
/// or `docker compose`) working on `project` (`-p PROJECT`).
pub fn is_compose_of(argv: &[String], project: &str) -> bool {
    let compose = argv.iter().any(|a| {
        Path::new(a)
            .file_name()
            .is_some_and(|n| n == "docker-compose")
    }) || argv
        .windows(2)
        .any(|w| Path::new(&w[0]).file_name().is_some_and(|n| n == "docker") && w[1] == "compose");
    compose
        && argv
            .windows(2)
            .any(|w| (w[0] == "-p" || w[0] == "--project-name") && w[1] == project)
}

/// Kills the compose processes still working on `project` (a recorder killed during `up` leaves
/// its `docker-compose up` running, which would create containers after a cleanup). Returns one
/// line per process killed.
pub async fn stop_leftover_compose(project: &str) -> Vec<String> {
    let me = std::process::id() as i32;
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut lines = Vec::new();
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let argv: Vec<String> = raw
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if !is_compose_of(&argv, project) {
            continue;
        }
        // SAFETY: kill(2) with a pid read from /proc just now; no memory is involved.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let mut waited = Duration::ZERO;
        while Path::new(&format!("/proc/{pid}/cmdline")).exists()
            && std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty())
            && waited < Duration::from_secs(3)
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
            waited += Duration::from_millis(50);
        }
        lines.push(format!(
            "killed `{}` (pid {pid}) left running",
            argv.join(" ")
        ));
    }
    lines
}

/// Projects with leftovers: labelled containers or networks whose project is registered or
/// starts with `ctk` (the default prefix).
pub async fn leftover_projects(docker: &Docker) -> Result<Vec<String>, ComposeError> {
    let registered: Vec<String> = std::fs::read_dir(registry_dir())
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    let mut f = std::collections::HashMap::new();
    f.insert("label".to_string(), vec![LABEL_PROJECT.to_string()]);
    let mut found = std::collections::BTreeSet::new();
    let cs = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::default()
                .all(true)
                .filters(&f)
                .build(),
        ))
        .await?;
    for c in cs {
        if let Some(p) = c.labels.as_ref().and_then(|l| l.get(LABEL_PROJECT)) {
            found.insert(p.clone());
        }
    }
    for n in docker
        .list_networks(Some(
            ListNetworksOptionsBuilder::default().filters(&f).build(),
        ))
        .await?
    {
        if let Some(p) = n.labels.as_ref().and_then(|l| l.get(LABEL_PROJECT)) {
            found.insert(p.clone());
        }
    }
    let mut out: Vec<String> = found
        .into_iter()
        .filter(|p| p.starts_with("ctk") || registered.contains(p))
        .collect();
    for r in registered {
        if !out.contains(&r) {
            out.push(r);
        }
    }
    Ok(out)
}

/// What a cleanup removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CleanupReport {
    pub containers: Vec<String>,
    pub networks: Vec<String>,
    pub errors: Vec<String>,
}

/// Removes every container (forced, with anonymous volumes) and network labelled with the project.
pub async fn remove_project(docker: &Docker, project: &str) -> Result<CleanupReport, ComposeError> {
    let mut rep = CleanupReport::default();
    let opts = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&project_filter(project))
        .build();
    for c in docker.list_containers(Some(opts)).await? {
        let Some(id) = c.id else { continue };
        let name = c
            .names
            .and_then(|n| n.first().cloned())
            .unwrap_or_else(|| id.clone())
            .trim_start_matches('/')
            .to_string();
        let ro = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        match docker.remove_container(&id, Some(ro)).await {
            Ok(()) => rep.containers.push(name),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {}
            Err(e) => rep.errors.push(format!("container {name}: {e}")),
        }
    }
    let nopts = ListNetworksOptionsBuilder::default()
        .filters(&project_filter(project))
        .build();
    for n in docker.list_networks(Some(nopts)).await? {
        let Some(id) = n.id else { continue };
        let name = n.name.unwrap_or_else(|| id.clone());
        match docker.remove_network(&id).await {
            Ok(()) => rep.networks.push(name),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {}
            Err(e) => rep.errors.push(format!("network {name}: {e}")),
        }
    }
    Ok(rep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compose_processes_are_recognised_by_cli_and_project() {
        let argv = |s: &str| -> Vec<String> { s.split(' ').map(str::to_string).collect() };
        assert!(is_compose_of(
            &argv("/usr/bin/python3 /usr/bin/docker-compose -f c.yml -p ctkx up -d"),
            "ctkx"
        ));
        assert!(is_compose_of(
            &argv("docker compose -f c.yml -p ctkx down"),
            "ctkx"
        ));
        assert!(!is_compose_of(&argv("docker-compose -p ctkxy up"), "ctkx"));
        assert!(!is_compose_of(&argv("docker run -p ctkx img"), "ctkx"));
        assert!(!is_compose_of(&argv("tcpdump -p ctkx"), "ctkx"));
    }

    #[test]
    fn services_of_disabled_profiles_are_not_waited_for() {
        let y = "services:\n  hog:\n    image: x\n  greedy:\n    image: x\n    profiles:\n    - greedy\n  dbg:\n    image: x\n    profiles: [debug, greedy]\n";
        assert_eq!(inactive_profile_services(y, ""), vec!["greedy", "dbg"]);
        assert_eq!(inactive_profile_services(y, "debug"), vec!["greedy"]);
        assert!(inactive_profile_services(y, "greedy").is_empty());
        assert!(inactive_profile_services(y, "*").is_empty());
        assert!(inactive_profile_services("not: [yaml", "").is_empty());
    }

    #[test]
    fn project_networks_include_the_implicit_default() {
        // v1 style: no top-level networks, a service without `networks` joins `default`
        let y = "services:\n  a:\n    image: x\n  b:\n    image: x\n    networks: [left]\nnetworks:\n  left: {}\n  middle:\n    driver: bridge\n";
        assert_eq!(
            project_networks(y),
            Some(vec!["default".into(), "left".into(), "middle".into()])
        );
        // every service names its networks (map form): no implicit default
        let y = "services:\n  a:\n    networks:\n      left:\n        aliases: [x]\n      right: null\nnetworks:\n  left: {}\n  right: {}\n";
        assert_eq!(
            project_networks(y),
            Some(vec!["left".into(), "right".into()])
        );
        // v2 style: the default network is written out; network_mode services join none
        let y = "name: p\nservices:\n  a:\n    networks:\n      default: null\n  h:\n    network_mode: host\nnetworks:\n  default:\n    name: p_default\n";
        assert_eq!(project_networks(y), Some(vec!["default".into()]));
        let y = "services:\n  h:\n    network_mode: host\n";
        assert_eq!(project_networks(y), Some(Vec::new()));
        assert_eq!(project_networks("not: [yaml"), None);
        assert_eq!(project_networks("- a list"), None);
    }

    #[test]
    fn redacts_secret_env_values_in_both_forms() {
        let y = "services:\n  db:\n    environment:\n      POSTGRES_PASSWORD: hunter2\n      MODE: fast\n    command:\n    - API_TOKEN=abc\n    - PLAIN=1\n";
        let r = redact_config(y);
        assert!(!r.contains("hunter2"), "{r}");
        assert!(!r.contains("abc"), "{r}");
        assert!(r.contains("POSTGRES_PASSWORD: <redacted>"), "{r}");
        assert!(r.contains("- API_TOKEN=<redacted>"), "{r}");
        assert!(r.contains("MODE: fast"), "{r}");
        assert!(r.contains("- PLAIN=1"), "{r}");
    }
}
