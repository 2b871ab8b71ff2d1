//! Every sensor of the recorder, in one module: the [`Sensor`] trait, the [`SensorContext`] every
//! sensor gets (the resolved project: containers with addresses and pids, networks, the
//! manifest, where pcap files go), the [`SensorRegistry`] that turns the scenario's `[sensors]`
//! section into sensors, and the sensors themselves.
//!
//! Module map: [`poll`] (the polling loop every probe shares and the checks their factories
//! use), `jmx` (Jolokia, attaching an agent with [`attach`]), `web` (`http` and `prom`),
//! `exec`, `pcap`; the Docker sensors [`docker`] (their supervisor), [`events`], [`logs`] and
//! [`stats`]. The protocols themselves (Jolokia, HTTP, Prometheus, pcap) are in the
//! `sensor-protocols` crate, which knows no Docker.
//!
//! The run loop starts the Docker events sensor before `compose up` and the log and stats
//! followers once the project is ready ([`docker::DockerSensors`]); it starts every registered
//! sensor after that, hands it an [`EventSink`] and a cancellation token, and awaits it (bounded)
//! at teardown, before the project goes down.

pub mod attach;
pub mod docker;
pub mod events;
mod exec;
mod jmx;
pub mod logs;
mod pcap;
pub mod poll;
pub mod stats;
mod web;

pub use pcap::stop_leftover_captures;

use std::path::PathBuf;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use trace::{Manifest, PacketRecord};

use crate::compose::{ContainerFacts, NetworkFacts};
use crate::scenario::SensorsSection;
use crate::sink::EventSink;

/// Cancellation signal handed to sensors: when cancelled, finish promptly (flush what you have).
pub type Stop = CancellationToken;

/// What a sensor knows about the run.
#[derive(Clone)]
pub struct SensorContext {
    pub docker: bollard::Docker,
    pub project: String,
    /// Every container of the project at start (service, name, id, host pid, addresses per
    /// compose network).
    pub containers: Vec<ContainerFacts>,
    pub networks: Vec<NetworkFacts>,
    /// The manifest as written after `up`.
    pub manifest: Arc<Manifest>,
    /// `<trace>/pcap`, for raw captures.
    pub pcap_dir: PathBuf,
    /// Packet summaries to add to `packets.parquet` (the writer assigns seqs).
    pub packets: PacketSink,
}

impl SensorContext {
    /// The containers of a service.
    pub fn containers_of<'a>(
        &'a self,
        service: &'a str,
    ) -> impl Iterator<Item = &'a ContainerFacts> + 'a {
        self.containers.iter().filter(move |c| c.service == service)
    }
}

/// Sends packet summaries to the writer task.
#[derive(Clone, Debug)]
pub struct PacketSink {
    tx: mpsc::UnboundedSender<Vec<PacketRecord>>,
}

impl PacketSink {
    /// A new packet sink and its receiving half (drained by the writer task).
    pub fn channel() -> (PacketSink, mpsc::UnboundedReceiver<Vec<PacketRecord>>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (PacketSink { tx }, rx)
    }

    /// Hands a batch to the writer; false when the writer has stopped.
    pub fn add(&self, packets: Vec<PacketRecord>) -> bool {
        self.tx.send(packets).is_ok()
    }
}

/// A sensor: runs until `stop` is cancelled, emitting events into `sink`. Errors are recorded as
/// events (`source = "recorder", kind = "sensor_error"`, or the sensor's own error kind), never
/// returned: a sensor failing must not stop the run.
pub trait Sensor: Send {
    /// Short name for progress and diagnostics, e.g. `jmx`.
    fn name(&self) -> &str;
    /// Runs the sensor until `stop`.
    fn run(
        self: Box<Self>,
        ctx: SensorContext,
        sink: EventSink,
        stop: Stop,
    ) -> BoxFuture<'static, ()>;
}

/// A configuration problem of a sensor found once the project is known (reported as a
/// `recorder`/`sensor_error` event).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown service {service:?} (the project has: {known})")]
    UnknownService { service: String, known: String },
    #[error("{}unknown network {network:?} (the project has: {known})", what.map(|w| format!("{w}: ")).unwrap_or_default())]
    UnknownNetwork {
        /// The setting that names it (`[sensors.jmx] networks`), if any.
        what: Option<&'static str>,
        network: String,
        known: String,
    },
    #[error("unknown container {0:?}")]
    UnknownContainer(String),
    #[error("network {0:?}: bridge interface unknown")]
    UnknownBridge(String),
    #[error("{what} {value:?}: {reason}")]
    BadDuration {
        what: &'static str,
        value: String,
        reason: String,
    },
    #[error("{what} {value:?} is shorter than 10ms")]
    TooShort { what: &'static str, value: String },
    #[error("[sensors.jmx] lists no mbeans")]
    NoMBeans,
    #[error("exec probe on {0:?} has an empty cmd")]
    EmptyCommand(String),
    #[error("[sensors.pcap] names no services, containers or networks")]
    NoCaptureTargets,
}

/// Builds sensors from the scenario's `[sensors]` section.
pub type SensorFactory =
    fn(&SensorsSection, &SensorContext) -> Result<Vec<Box<dyn Sensor>>, ConfigError>;

/// Named sensor factories.
#[derive(Default, Clone)]
pub struct SensorRegistry {
    factories: Vec<(&'static str, SensorFactory)>,
}

impl SensorRegistry {
    /// An empty registry.
    pub fn new() -> SensorRegistry {
        SensorRegistry::default()
    }

    /// The registry with every sensor this build knows: jmx, http, prom, exec and pcap.
    pub fn builtin() -> SensorRegistry {
        let mut r = SensorRegistry::new();
        r.register("jmx", jmx::factory);
        r.register("http", web::http_factory);
        r.register("prom", web::prom_factory);
        r.register("exec", exec::factory);
        r.register("pcap", pcap::factory);
        r
    }

    /// Adds a factory.
    pub fn register(&mut self, name: &'static str, f: SensorFactory) {
        self.factories.push((name, f));
    }

    /// Names of the registered factories.
    pub fn names(&self) -> Vec<&'static str> {
        self.factories.iter().map(|(n, _)| *n).collect()
    }

    /// Every sensor the configuration asks for; all errors, as messages prefixed with the factory
    /// name.
    pub fn build(
        &self,
        cfg: &SensorsSection,
        ctx: &SensorContext,
    ) -> Result<Vec<Box<dyn Sensor>>, Vec<String>> {
        let mut out = Vec::new();
        let mut errs = Vec::new();
        for (name, f) in &self.factories {
            match f(cfg, ctx) {
                Ok(mut v) => out.append(&mut v),
                Err(e) => errs.push(format!("{name} sensor: {e}")),
            }
        }
        if errs.is_empty() {
            Ok(out)
        } else {
            Err(errs)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::poll::{address_of, address_on};
    use super::*;

    fn container(service: &str, name: &str, addr: &str) -> ContainerFacts {
        let mut addresses = BTreeMap::new();
        addresses.insert("middle".to_string(), addr.to_string());
        ContainerFacts {
            id: format!("{name}-id-0123456789abcdef"),
            name: name.into(),
            service: service.into(),
            image: String::new(),
            image_id: String::new(),
            pid: 0,
            running: true,
            paused: false,
            tty: false,
            health: None,
            addresses,
            aliases: Vec::new(),
        }
    }

    fn ctx(containers: Vec<ContainerFacts>) -> SensorContext {
        let docker = bollard::Docker::connect_with_http(
            "http://127.0.0.1:1",
            1,
            bollard::API_DEFAULT_VERSION,
        )
        .expect("client construction does not connect");
        let net = trace::manifest::NetworkInfo {
            id: "0123456789abcdef0123".into(),
            ..Default::default()
        };
        SensorContext {
            docker,
            project: "p".into(),
            containers,
            networks: vec![NetworkFacts {
                name: "middle".into(),
                info: net,
            }],
            manifest: Arc::new(trace::Manifest::default()),
            pcap_dir: std::env::temp_dir(),
            packets: PacketSink::channel().0,
        }
    }

    fn section(toml_text: &str) -> SensorsSection {
        toml::from_str(toml_text).expect("sensors section")
    }

    #[test]
    fn factories_validate_configuration() {
        let reg = SensorRegistry::builtin();
        assert_eq!(reg.names(), vec!["jmx", "http", "prom", "exec", "pcap"]);
        let c = ctx(vec![container("left-a", "p_left-a_1", "172.30.0.2")]);
        let ok = section(
            r#"
            jmx = { services = ["left-a"], mbeans = [{ mbean = "akka:type=Cluster", attributes = ["ClusterStatus"] }], interval = "500ms" }
            http = [{ service = "left-a", port = 8080, path = "health" }]
            prom = [{ service = "left-a", port = 9100, families = ["process_*"] }]
            exec = [{ service = "left-a", cmd = ["true"] }]
            pcap = { services = ["left-a"], networks = ["middle"] }
            "#,
        );
        let sensors = reg.build(&ok, &c).expect("valid");
        let names: Vec<_> = sensors.iter().map(|s| s.name().to_string()).collect();
        assert_eq!(names, ["jmx", "http", "prom", "exec", "pcap"]);
        let bad = section(
            r#"
            jmx = { services = ["nope"], mbeans = [{ mbean = "a:b=c" }] }
            http = [{ service = "left-a", port = 1, interval = "1ms" }]
            exec = [{ service = "left-a", cmd = [] }]
            pcap = { networks = ["nowhere"] }
            "#,
        );
        let errs = reg.build(&bad, &c).err().expect("invalid");
        assert_eq!(errs.len(), 4, "{errs:?}");
        assert!(errs[0].contains("unknown service \"nope\""), "{errs:?}");
        assert!(errs[1].contains("shorter than 10ms"), "{errs:?}");
        assert!(errs[2].contains("empty cmd"), "{errs:?}");
        assert!(errs[3].contains("unknown network"), "{errs:?}");
    }

    #[test]
    fn preferred_networks_choose_the_polled_address() {
        let mut c = container("right-a", "p_right-a_1", "172.30.0.4");
        c.addresses.insert("right".into(), "172.31.0.2".into());
        // by name, `middle` comes first; a preference for left/right avoids it
        assert_eq!(address_of(&c).as_deref(), Some("172.30.0.4"));
        let pref = ["left".to_string(), "right".to_string()];
        assert_eq!(address_on(&c, &pref).as_deref(), Some("172.31.0.2"));
        // none of the preferred networks: the first address
        assert_eq!(
            address_on(&c, &["left".to_string()]).as_deref(),
            Some("172.30.0.4")
        );
        let reg = SensorRegistry::builtin();
        let cx = ctx(vec![c]);
        let ok = section(
            r#"jmx = { services = ["right-a"], networks = ["middle"], mbeans = [{ mbean = "a:b=c" }] }"#,
        );
        assert_eq!(reg.build(&ok, &cx).map(|v| v.len()).ok(), Some(1));
        let bad = section(
            r#"jmx = { services = ["right-a"], networks = ["nowhere"], mbeans = [{ mbean = "a:b=c" }] }"#,
        );
        let errs = reg.build(&bad, &cx).err().expect("unknown network refused");
        assert!(errs[0].contains("unknown network \"nowhere\""), "{errs:?}");
    }

    /// The jmx sensor against a tiny Jolokia-speaking server on loopback: one bulk POST per poll,
    /// one `jmx` event per MBean with ClusterStatus parsed, and an error event for the 404.
    #[tokio::test]
    async fn jmx_sensor_polls_over_loopback() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = l.local_addr().expect("addr").port();
        tokio::spawn(async move {
            for _ in 0..10 {
                let Ok((mut s, _)) = l.accept().await else {
                    return;
                };
                let mut buf = vec![0u8; 8192];
                let _ = s.read(&mut buf).await;
                let body = r#"[{"request":{"mbean":"akka:type=Cluster","attribute":"ClusterStatus","type":"read"},"value":"{\"members\":[],\"self-address\":\"akka.tcp://S@a:2552\",\"unreachable\":[]}","timestamp":1,"status":200},
                              {"request":{"mbean":"x:type=Missing","type":"read"},"error_type":"javax.management.InstanceNotFoundException","error":"javax.management.InstanceNotFoundException : x:type=Missing","status":404}]"#;
                let resp = format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}", body.len());
                let _ = s.write_all(resp.as_bytes()).await;
            }
        });
        let c = ctx(vec![container("left-a", "p_left-a_1", "127.0.0.1")]);
        let cfg = section(&format!(
            r#"jmx = {{ services = ["left-a"], port = {port}, interval = "200ms", mbeans = [{{ mbean = "akka:type=Cluster", attributes = ["ClusterStatus"] }}, {{ mbean = "x:type=Missing" }}] }}"#
        ));
        let reg = SensorRegistry::builtin();
        let mut sensors = reg.build(&cfg, &c).expect("valid");
        assert_eq!(sensors.len(), 1);
        let (sink, mut rx) = EventSink::channel();
        let stop = Stop::new();
        let task = tokio::spawn(sensors.remove(0).run(c.clone(), sink, stop.clone()));
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.cancel();
        task.await.expect("sensor task");
        let mut evs = Vec::new();
        while let Ok(Some(ev)) = tokio::time::timeout(Duration::from_millis(50), rx.recv()).await {
            evs.push(ev);
        }
        let polls = evs.iter().filter(|e| e.kind == "akka:type=Cluster").count();
        assert!(polls >= 2, "{evs:?}");
        assert_eq!(evs.iter().filter(|e| e.kind == "error").count(), polls);
        let first = evs
            .iter()
            .find(|e| e.kind == "akka:type=Cluster")
            .expect("jmx event");
        assert_eq!(
            (
                first.source.as_str(),
                first.service.as_deref(),
                first.container.as_deref()
            ),
            ("jmx", Some("left-a"), Some("p_left-a_1"))
        );
        let d: serde_json::Value =
            serde_json::from_str(first.data.as_deref().expect("data")).expect("json");
        assert_eq!(d["ClusterStatus"]["self-address"], "akka.tcp://S@a:2552");
    }
}
