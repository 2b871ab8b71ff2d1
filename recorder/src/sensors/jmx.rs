//! The `jmx` sensor: polls the Jolokia agent of each container of the configured services with
//! one bulk read per interval, at `http://<container address>:<port><path>`; one `jmx` event per
//! container and MBean per poll, errors as `jmx`/`error` events (see `sensors::jolokia`). The
//! address is the one on the first of the configured `networks` the container is attached to.

use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use sensors::jolokia::{JolokiaClient, MBeanRead, ReadOutcome};

use trace::Event;

use super::{
    address_on, check_networks, check_service, interval, is_unreachable, poll_containers,
    ContainerProbe, NO_ADDRESS,
};
use crate::compose::ContainerFacts;
use crate::scenario::SensorsSection;
use crate::sensor::{Sensor, SensorContext, Stop};
use crate::sink::{now_ns, EventSink};

pub(crate) fn factory(
    cfg: &SensorsSection,
    ctx: &SensorContext,
) -> Result<Vec<Box<dyn Sensor>>, String> {
    let Some(j) = &cfg.jmx else {
        return Ok(Vec::new());
    };
    if j.mbeans.is_empty() {
        return Err("[sensors.jmx] lists no mbeans".into());
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
    check_networks(ctx, "[sensors.jmx] networks", &networks)?;
    let mut out: Vec<Box<dyn Sensor>> = Vec::new();
    for s in &j.services {
        check_service(ctx, s.get_ref())?;
        out.push(Box::new(JmxSensor {
            service: s.get_ref().clone(),
            port: j.port,
            path: path.clone(),
            every,
            reads: reads.clone(),
            networks: networks.clone(),
        }));
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
}

fn url(addr: &str, port: u16, path: &str) -> String {
    format!("http://{addr}:{port}{path}")
}

impl ContainerProbe for JmxSensor {
    fn probe<'a>(
        &'a self,
        _ctx: &'a SensorContext,
        c: &'a ContainerFacts,
    ) -> BoxFuture<'a, (Vec<Event>, bool)> {
        async move {
            let ts = now_ns();
            let outcomes = match address_on(c, &self.networks) {
                Some(a) => {
                    JolokiaClient {
                        url: url(&a, self.port, &self.path),
                        timeout: self
                            .every
                            .clamp(Duration::from_millis(200), Duration::from_secs(5)),
                    }
                    .poll(&self.reads)
                    .await
                }
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
            let mut events = Vec::with_capacity(outcomes.len());
            for o in &outcomes {
                if let ReadOutcome::Error { error_type, .. } = o {
                    stale |= is_unreachable(error_type) || error_type == "no_address";
                }
                events.push(o.to_event(ts, &self.service, Some(&c.name)));
            }
            (events, stale)
        }
        .boxed()
    }
}

impl Sensor for JmxSensor {
    fn name(&self) -> &str {
        "jmx"
    }

    fn run(
        self: Box<Self>,
        ctx: SensorContext,
        sink: EventSink,
        stop: Stop,
    ) -> BoxFuture<'static, ()> {
        async move { poll_containers(&*self, &ctx, &self.service, self.every, &sink, &stop).await }
            .boxed()
    }
}
