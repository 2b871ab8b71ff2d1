//! `[sensors.otlp]` in a run: the OTLP receiver of the `otlp` crate started before `compose up`
//! on the host's address on Docker's default bridge, the compose override file that points the
//! configured services at it, the forwarder that moves the receiver's bounded queue into the
//! trace with the `service` column resolved from the sender's address, and the drop and
//! lifecycle events (`otel`/`receiver`, `otel`/`dropped`). docs/sensors.md (OpenTelemetry)
//! describes all of it.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use otlp::{Queue, Receiver, ReceiverConfig};
use serde_json::json;
use tokio::task::JoinHandle;
use trace::{kinds, Event};

use crate::compose;
use crate::scenario::OtlpConfig;
use crate::sink::{now_ns, EventSink};

/// The override file's name inside the trace directory.
pub const OVERRIDE_FILE: &str = "compose.otlp.yml";

/// Events the writer may have waiting before the forwarder pauses (the receiver's queue then
/// fills and senders are told to retry).
const WRITER_BACKLOG: u64 = 200_000;

/// Why the receiver of a run could not start (nothing was started).
#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    /// The default bridge network cannot be inspected.
    #[error("otlp sensor: docker network `bridge`: {0}")]
    Bridge(#[source] bollard::errors::Error),
    /// The default bridge network has no address the containers could reach the host on.
    #[error(
        "otlp sensor: docker network `bridge` has no IPv4 gateway or subnet (is the default bridge disabled?)"
    )]
    NoBridgeAddress,
    /// The receiver cannot listen.
    #[error("otlp sensor: {0}")]
    Receiver(#[from] otlp::ReceiverError),
    /// The compose override file cannot be written.
    #[error("otlp sensor: {}: {source}", .path.display())]
    Override {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A running receiver and its forwarder.
pub struct OtlpRun {
    receiver: Receiver,
    forwarder: JoinHandle<()>,
    sink: EventSink,
    /// The override file given to compose after the project's files.
    pub override_file: PathBuf,
    /// What `OTEL_EXPORTER_OTLP_ENDPOINT` is set to.
    pub endpoint: String,
}

/// The host's address on Docker's default bridge (`docker0`): the `bridge` network's gateway,
/// else the first address of its subnet. Containers on any bridge network reach it through the
/// host's routing, with their own address as the source.
pub async fn host_address(docker: &bollard::Docker) -> Result<IpAddr, OtlpError> {
    let net = docker
        .inspect_network(
            "bridge",
            None::<bollard::query_parameters::InspectNetworkOptions>,
        )
        .await
        .map_err(OtlpError::Bridge)?;
    let configs = net.ipam.and_then(|i| i.config).unwrap_or_default();
    for c in &configs {
        if let Some(ip) = c.gateway.as_deref().and_then(|g| g.parse::<IpAddr>().ok()) {
            return Ok(ip);
        }
    }
    for c in &configs {
        if let Some(ip) = c.subnet.as_deref().and_then(first_host) {
            return Ok(ip);
        }
    }
    Err(OtlpError::NoBridgeAddress)
}

/// The first host address of an IPv4 subnet (`172.17.0.0/16` → `172.17.0.1`).
fn first_host(subnet: &str) -> Option<IpAddr> {
    let (addr, _) = subnet.split_once('/')?;
    let a: Ipv4Addr = addr.parse().ok()?;
    Some(IpAddr::V4(Ipv4Addr::from(u32::from(a).checked_add(1)?)))
}

/// Environment variables a service already sets, from the resolved compose configuration
/// (`environment` as a map or as a list of `KEY=VALUE`).
fn service_env(config_yaml: &str, service: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Ok(v) = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(config_yaml) else {
        return out;
    };
    let env = &v["services"][service]["environment"];
    if let Some(m) = env.as_mapping() {
        for (k, v) in m {
            if let Some(k) = k.as_str() {
                let v = match v {
                    serde_yaml_ng::Value::String(s) => s.clone(),
                    serde_yaml_ng::Value::Null => String::new(),
                    other => serde_yaml_ng::to_string(other)
                        .map(|s| s.trim().to_string())
                        .unwrap_or_default(),
                };
                out.insert(k.to_string(), v);
            }
        }
    } else if let Some(l) = env.as_sequence() {
        for e in l.iter().filter_map(|e| e.as_str()) {
            let (k, v) = e.split_once('=').unwrap_or((e, ""));
            out.insert(k.to_string(), v.to_string());
        }
    }
    out
}

/// The override file's text: for each service, `OTEL_EXPORTER_OTLP_ENDPOINT`, and
/// `OTEL_SERVICE_NAME` = the service's name unless the service sets it (or sets `service.name`
/// in `OTEL_RESOURCE_ATTRIBUTES`). Also returns, per service, the signal-specific endpoint
/// variables it sets itself (they win over the general one, so that signal bypasses the
/// receiver).
pub fn override_yaml(
    config_yaml: &str,
    services: &[String],
    endpoint: &str,
) -> (String, BTreeMap<String, Vec<String>>) {
    let mut out = String::from(
        "# written by the recorder for [sensors.otlp]: points these services at its OTLP receiver\n\
         services:\n",
    );
    let mut bypass = BTreeMap::new();
    for s in services {
        let env = service_env(config_yaml, s);
        out.push_str(&format!("  {}:\n    environment:\n", yaml_str(s)));
        out.push_str(&format!(
            "      OTEL_EXPORTER_OTLP_ENDPOINT: {}\n",
            yaml_str(endpoint)
        ));
        let names_itself = env.contains_key("OTEL_SERVICE_NAME")
            || env.get("OTEL_RESOURCE_ATTRIBUTES").is_some_and(|a| {
                a.split(',')
                    .any(|kv| kv.trim().starts_with("service.name="))
            });
        if !names_itself {
            out.push_str(&format!("      OTEL_SERVICE_NAME: {}\n", yaml_str(s)));
        }
        let own: Vec<String> = [
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
            "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
        ]
        .iter()
        .filter(|k| env.contains_key(**k))
        .map(|k| k.to_string())
        .collect();
        if !own.is_empty() {
            bypass.insert(s.clone(), own);
        }
    }
    (out, bypass)
}

/// A YAML double-quoted string.
fn yaml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

/// Sender address → (service, container), refreshed from Docker when an unknown address sends.
struct Resolver {
    docker: bollard::Docker,
    project: String,
    map: HashMap<IpAddr, (String, String)>,
    last_refresh: Option<Instant>,
}

impl Resolver {
    async fn resolve(&mut self, ip: IpAddr) -> Option<(String, String)> {
        if let Some(v) = self.map.get(&ip) {
            return Some(v.clone());
        }
        // a new container (started, restarted, scaled): look again, at most twice a second
        if self
            .last_refresh
            .is_none_or(|t| t.elapsed() >= Duration::from_millis(500))
        {
            self.last_refresh = Some(Instant::now());
            if let Ok(state) = compose::discover(&self.docker, &self.project).await {
                for c in &state.containers {
                    for a in c.addresses.values() {
                        let a = a.split('/').next().unwrap_or(a);
                        if let Ok(ip) = a.parse::<IpAddr>() {
                            self.map.insert(ip, (c.service.clone(), c.name.clone()));
                        }
                    }
                }
            }
        }
        self.map.get(&ip).cloned()
    }
}

/// Starts the receiver and writes the override file into `trace_dir`. On `Err` nothing was
/// started.
pub async fn start(
    cfg: &OtlpConfig,
    docker: &bollard::Docker,
    project: &str,
    config_yaml: &str,
    trace_dir: &Path,
    sink: &EventSink,
) -> Result<OtlpRun, OtlpError> {
    let ip = host_address(docker).await?;
    let mut rc = ReceiverConfig::ephemeral(ip);
    rc.grpc_port = cfg.grpc_port;
    rc.http_port = cfg.http_port;
    if let Some(k) = &cfg.max_request_kib {
        rc.max_request_bytes = (*k.get_ref() as usize).saturating_mul(1024);
    }
    if let Some(q) = &cfg.queue {
        rc.queue_events = *q.get_ref() as usize;
    }
    let (receiver, queue) = Receiver::start(&rc).await?;
    let endpoint = format!("http://{}", receiver.grpc_addr());
    let services: Vec<String> = cfg.services.iter().map(|s| s.get_ref().clone()).collect();
    let (text, bypass) = override_yaml(config_yaml, &services, &endpoint);
    let override_file = trace_dir.join(OVERRIDE_FILE);
    if let Err(e) = std::fs::write(&override_file, text) {
        receiver.stop(Duration::from_millis(100)).await;
        return Err(OtlpError::Override {
            path: override_file,
            source: e,
        });
    }
    sink.emit(
        kinds::otel::RECEIVER
            .at(now_ns())
            .message(format!("otlp receiver listening, endpoint {endpoint}"))
            .data(&json!({
                "phase": "started",
                "grpc": receiver.grpc_addr().to_string(),
                "http": receiver.http_addr().to_string(),
                "endpoint": endpoint,
                "services": services,
                "override": override_file.display().to_string(),
                "max_request_bytes": rc.max_request_bytes,
                "queue_events": rc.queue_events,
                "own_signal_endpoints": bypass,
            })),
    );
    let resolver = Resolver {
        docker: docker.clone(),
        project: project.to_string(),
        map: HashMap::new(),
        last_refresh: None,
    };
    let forwarder = tokio::spawn(forward(
        queue,
        resolver,
        sink.clone(),
        receiver.stats().clone(),
    ));
    Ok(OtlpRun {
        receiver,
        forwarder,
        sink: sink.clone(),
        override_file,
        endpoint,
    })
}

/// A `otel`/`dropped` event for what the receiver refused since the last one.
fn dropped_event(d: otlp::Dropped) -> Event {
    kinds::otel::DROPPED.at(now_ns())
        .message(format!(
            "otlp receiver queue full: refused {} requests ({} spans, {} metric points, {} log records)",
            d.requests, d.spans, d.points, d.logs
        ))
        .data(&json!({
            "requests": d.requests, "spans": d.spans, "points": d.points, "logs": d.logs,
        }))
}

/// Moves batches from the receiver's queue into the trace, with `service` and `container`
/// resolved from the sender's address (else the service the sender claims); pauses while the
/// writer is far behind; records drops once a second.
async fn forward(
    mut queue: Queue,
    mut resolver: Resolver,
    sink: EventSink,
    stats: std::sync::Arc<otlp::Stats>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        let batch = tokio::select! {
            b = queue.recv() => match b {
                Some(b) => b,
                None => break,
            },
            _ = tick.tick() => {
                let d = stats.take_dropped();
                if d.any() {
                    sink.emit(dropped_event(d));
                }
                continue;
            }
        };
        while sink.stats().pending() > WRITER_BACKLOG && !sink.is_closed() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let origin = match batch.peer {
            Some(ip) => resolver.resolve(ip).await,
            None => None,
        };
        for mut ev in batch.events {
            match &origin {
                Some((service, container)) => {
                    ev.service = Some(service.clone());
                    ev.container = Some(container.clone());
                }
                None => ev.service = claimed_service(&ev),
            }
            sink.emit(ev);
        }
    }
    let d = stats.take_dropped();
    if d.any() {
        sink.emit(dropped_event(d));
    }
}

/// `data.claimed_service` of an event.
fn claimed_service(ev: &Event) -> Option<String> {
    let d: serde_json::Value = serde_json::from_str(ev.data.as_deref()?).ok()?;
    d.get("claimed_service")?.as_str().map(str::to_string)
}

impl OtlpRun {
    /// Stops the receiver (after `compose down`: the services' last exports are in), drains the
    /// queue into the trace and records the totals.
    pub async fn stop(self) {
        let stats = self.receiver.stats().clone();
        self.receiver.stop(Duration::from_secs(2)).await;
        let _ = tokio::time::timeout(Duration::from_secs(10), self.forwarder).await;
        use std::sync::atomic::Ordering::Relaxed;
        self.sink.emit(
            kinds::otel::RECEIVER
                .at(now_ns())
                .message("otlp receiver stopped")
                .data(&json!({
                    "phase": "stopped",
                    "requests": stats.requests.load(Relaxed),
                    "spans": stats.spans.load(Relaxed),
                    "points": stats.points.load(Relaxed),
                    "logs": stats.logs.load(Relaxed),
                    "errors": stats.errors.load(Relaxed),
                    "dropped_requests": stats.dropped_requests_total(),
                })),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn override_sets_the_endpoint_and_the_name_unless_given() {
        let config = r#"
services:
  shop:
    image: x
    environment:
      OTEL_SERVICE_NAME: checkout
      OTEL_EXPORTER_OTLP_LOGS_ENDPOINT: http://elsewhere:4318/v1/logs
  worker:
    image: x
    environment:
      - OTEL_RESOURCE_ATTRIBUTES=deployment.environment=test
  db:
    image: x
"#;
        let (text, bypass) = override_yaml(
            config,
            &["shop".into(), "worker".into()],
            "http://172.17.0.1:40001",
        );
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("valid yaml");
        let env = |s: &str, k: &str| {
            v["services"][s]["environment"][k]
                .as_str()
                .map(str::to_string)
        };
        assert_eq!(
            env("shop", "OTEL_EXPORTER_OTLP_ENDPOINT").as_deref(),
            Some("http://172.17.0.1:40001")
        );
        assert_eq!(
            env("shop", "OTEL_SERVICE_NAME"),
            None,
            "the service names itself"
        );
        assert_eq!(
            env("worker", "OTEL_SERVICE_NAME").as_deref(),
            Some("worker")
        );
        assert!(
            v["services"]["db"].is_null(),
            "only the configured services"
        );
        assert_eq!(
            bypass.get("shop").cloned(),
            Some(vec!["OTEL_EXPORTER_OTLP_LOGS_ENDPOINT".to_string()])
        );
        let named = "services:\n  w:\n    environment:\n      OTEL_RESOURCE_ATTRIBUTES: a=b,service.name=x\n";
        let (t, _) = override_yaml(named, &["w".into()], "http://h:1");
        assert!(!t.contains("OTEL_SERVICE_NAME"), "{t}");
    }

    #[test]
    fn first_host_of_a_subnet() {
        assert_eq!(
            first_host("172.17.0.0/16"),
            Some("172.17.0.1".parse().expect("ip"))
        );
        assert_eq!(first_host("nonsense"), None);
    }
}
