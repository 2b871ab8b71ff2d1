//! The hook for sensors beyond the built-in Docker ones (JMX over Jolokia, HTTP, Prometheus, exec
//! probes, pcap): the [`Sensor`] trait, the [`SensorContext`] every sensor gets (the resolved
//! project: containers with addresses and pids, networks, the manifest, where pcap files go) and
//! the [`SensorRegistry`] that turns the scenario's `[sensors]` section into sensors.
//!
//! The run loop starts every sensor after the project is up and ready, hands it an
//! [`EventSink`] and a cancellation token, and awaits it (bounded) at teardown, before the
//! project goes down. The protocol sensors themselves are registered in `crate::probes`.

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

/// Builds sensors from the scenario's `[sensors]` section. `Err` is a configuration problem
/// found once the project is known (reported, and the run refused before faults start).
pub type SensorFactory =
    fn(&SensorsSection, &SensorContext) -> Result<Vec<Box<dyn Sensor>>, String>;

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

    /// The registry with every sensor this build knows (see `crate::probes::register`).
    pub fn builtin() -> SensorRegistry {
        let mut r = SensorRegistry::new();
        crate::probes::register(&mut r);
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

    /// Every sensor the configuration asks for; all errors, prefixed with the factory name.
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
