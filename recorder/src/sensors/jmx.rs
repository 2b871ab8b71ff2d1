//! The `jmx` sensor: polls the Jolokia agent of each container of the configured services with
//! one bulk read per interval, at `http://<container address>:<port><path>`; one `jmx` event per
//! container and MBean per poll, errors as `jmx`/`error` events (see
//! `sensor_protocols::jolokia`). The address is the one on the first of the configured
//! `networks` the container is attached to.
//! A pattern MBean (`org.apache.ZooKeeperService:*`) gives one event per matching MBean. With
//! `attach = true`, a container whose port does not answer gets the recorder's agent attached
//! to its JVM first (`super::attach`), again after a restart, and the agent is stopped when the
//! sensor stops; every attach step is a `jmx`/`attach` event. A failed attach is retried every
//! 10 s (2 s while no JVM runs yet), except a refusal that cannot change for that JVM (attach
//! disabled, jar not loadable).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::future::{join_all, BoxFuture};
use futures_util::FutureExt;
use sensor_protocols::jolokia::{JolokiaClient, MBeanRead, ReadOutcome};

use trace::Event;

use super::attach::{attach_event, ensure_agent, stop_agent};
use super::poll::{
    address_on, check_networks, check_service, interval, is_unreachable, ContainerProbe, Polling,
    NO_ADDRESS,
};
use super::{ConfigError, Sensor, SensorContext};
use crate::compose::ContainerFacts;
use crate::scenario::SensorsSection;
use crate::sink::{now_ns, EventSink};

pub(crate) fn factory(
    cfg: &SensorsSection,
    ctx: &SensorContext,
) -> Result<Vec<Box<dyn Sensor>>, ConfigError> {
    let Some(j) = &cfg.jmx else {
        return Ok(Vec::new());
    };
    if j.mbeans.is_empty() {
        return Err(ConfigError::NoMBeans);
    }
    let every = interval(&j.interval)?;
    let reads: Vec<MBeanRead> = j
        .mbeans
        .iter()
        .map(|m| MBeanRead {
            mbean: m.mbean.clone(),
            attributes: m.attributes.clone(),
            path: None,
        })
        .collect();
    let path = if j.path.starts_with('/') {
        j.path.clone()
    } else {
        format!("/{}", j.path)
    };
    let networks: Vec<String> = j.networks.iter().map(|n| n.get_ref().clone()).collect();
    check_networks(ctx, Some("[sensors.jmx] networks"), &networks)?;
    let mut out: Vec<Box<dyn Sensor>> = Vec::new();
    for s in &j.services {
        check_service(ctx, s.get_ref())?;
        out.push(Box::new(Polling(JmxSensor {
            service: s.get_ref().clone(),
            port: j.port,
            path: path.clone(),
            every,
            reads: reads.clone(),
            networks: networks.clone(),
            attach: j.attach,
            attached: Mutex::new(HashMap::new()),
        })));
    }
    Ok(out)
}

struct JmxSensor {
    service: String,
    port: u16,
    path: String,
    every: Duration,
    reads: Vec<MBeanRead>,
    /// Preferred compose networks to reach the containers on.
    networks: Vec<String>,
    /// Attach the recorder's agent when nothing answers.
    attach: bool,
    /// Attach state per container id.
    attached: Mutex<HashMap<String, AttachState>>,
}

/// What the sensor knows about the agent of one container.
#[derive(Debug, Clone)]
struct AttachState {
    /// The container's init pid when this was decided (a restart changes it: attach again).
    init_pid: i64,
    /// An agent answers (attached or reused).
    ok: bool,
    /// JVM host pid of an agent of ours, to stop at the end.
    ours: Option<i64>,
    /// When the last attempt was made (failed attempts are retried after [`RETRY_ATTACH`]).
    at: Instant,
    /// The failure cannot change for this JVM (attach disabled, jar not loadable): no retry
    /// until the container restarts.
    fin: bool,
    /// When to try again after a failure.
    retry: Duration,
}

/// Attach failures that retrying the same JVM cannot fix.
fn is_final(error_type: &str) -> bool {
    matches!(
        error_type,
        "attach_disabled" | "agent_load_failed" | "jvm_too_old"
    )
}

/// How long after a failed attach the sensor tries again.
const RETRY_ATTACH: Duration = Duration::from_secs(10);
/// How long after `no_jvm` (the container's entrypoint has not started its JVM yet).
const RETRY_NO_JVM: Duration = Duration::from_secs(2);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl JmxSensor {
    fn client(&self, addr: &str) -> JolokiaClient {
        JolokiaClient {
            url: url(addr, self.port, &self.path),
            timeout: self
                .every
                .clamp(Duration::from_millis(200), Duration::from_secs(5)),
        }
    }

    /// With `attach`, makes sure an agent answers in `c` (attaching when needed); the
    /// `jmx`/`attach` event of what was done, if anything.
    async fn ensure(&self, ctx: &SensorContext, c: &ContainerFacts, addr: &str) -> Option<Event> {
        if !self.attach || !c.running || c.paused {
            return None;
        }
        let due = match lock(&self.attached).get(&c.id) {
            None => true,
            Some(s) if s.init_pid != c.pid => true,
            Some(s) => !s.ok && !s.fin && s.at.elapsed() >= s.retry,
        };
        if !due {
            return None;
        }
        let client = JolokiaClient {
            timeout: Duration::from_secs(2),
            ..self.client(addr)
        };
        let res = ensure_agent(&ctx.docker, &c.id, &client, self.port, None).await;
        let (state, data) = match res {
            Ok(a) => (
                AttachState {
                    init_pid: c.pid,
                    ok: true,
                    ours: if a.ours { a.pid } else { None },
                    at: Instant::now(),
                    fin: false,
                    retry: RETRY_ATTACH,
                },
                a.data,
            ),
            Err((e, data)) => (
                AttachState {
                    init_pid: c.pid,
                    ok: false,
                    ours: None,
                    at: Instant::now(),
                    fin: is_final(e.error_type),
                    retry: if e.error_type == "no_jvm" {
                        RETRY_NO_JVM
                    } else {
                        RETRY_ATTACH
                    },
                },
                data,
            ),
        };
        lock(&self.attached).insert(c.id.clone(), state);
        Some(attach_event(now_ns(), &self.service, &c.name, &data))
    }

    /// Stops every agent of ours this sensor attached or reused (`jmx`/`attach` events with
    /// phase `stopped` or `stop_failed`).
    async fn stop_agents(&self, ctx: &SensorContext, sink: &EventSink) {
        let ours: Vec<(String, i64)> = lock(&self.attached)
            .iter()
            .filter_map(|(id, s)| s.ours.map(|pid| (id.clone(), pid)))
            .collect();
        let results = join_all(ours.iter().map(|(_, pid)| stop_agent(*pid))).await;
        for ((id, pid), r) in ours.iter().zip(results) {
            let name = ctx
                .containers
                .iter()
                .find(|c| &c.id == id)
                .map(|c| c.name.clone())
                .unwrap_or_else(|| id.clone());
            let data = match r {
                Ok(()) => serde_json::json!({"phase": "stopped", "port": self.port, "pid": pid}),
                Err(e) => serde_json::json!({"phase": "stop_failed", "port": self.port, "pid": pid,
                    "error_type": e.error_type, "error": e.message}),
            };
            sink.emit(attach_event(now_ns(), &self.service, &name, &data));
        }
    }
}

fn url(addr: &str, port: u16, path: &str) -> String {
    format!("http://{addr}:{port}{path}")
}

impl ContainerProbe for JmxSensor {
    fn name(&self) -> &str {
        "jmx"
    }

    fn service(&self) -> &str {
        &self.service
    }

    fn every(&self) -> Duration {
        self.every
    }

    fn probe<'a>(
        &'a self,
        ctx: &'a SensorContext,
        c: &'a ContainerFacts,
    ) -> BoxFuture<'a, (Vec<Event>, bool)> {
        async move {
            let mut events = Vec::new();
            let addr = address_on(c, &self.networks);
            if let Some(a) = &addr {
                events.extend(self.ensure(ctx, c, a).await);
            }
            let ts = now_ns();
            let outcomes = match addr {
                Some(a) => self.client(&a).poll(&self.reads).await,
                None => self
                    .reads
                    .iter()
                    .map(|r| ReadOutcome::Error {
                        mbean: r.mbean.clone(),
                        status: None,
                        error_type: "no_address".into(),
                        error: NO_ADDRESS.into(),
                    })
                    .collect(),
            };
            let mut stale = false;
            for o in &outcomes {
                if let ReadOutcome::Error { error_type, .. } = o {
                    stale |= is_unreachable(error_type) || error_type == "no_address";
                }
                events.extend(o.to_events(ts, &self.service, Some(&c.name)));
            }
            (events, stale)
        }
        .boxed()
    }

    /// Stops the agents this sensor attached.
    fn finish<'a>(&'a self, ctx: &'a SensorContext, sink: &'a EventSink) -> BoxFuture<'a, ()> {
        self.stop_agents(ctx, sink).boxed()
    }
}
