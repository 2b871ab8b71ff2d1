//! The `http` and `prom` sensors: GET `http://<container address>:<port><path>` of each container
//! of a service at an interval. `http` records status, latency and the body (JSON as data, else
//! an excerpt); `prom` parses the Prometheus text exposition and keeps the selected families as
//! one `prom` event per sample (bad lines are reported in a `prom`/`error` event, good ones kept).

use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use sensors::probe::http_get;
use sensors::prom;
use serde_json::json;
use trace::Event;

use super::{
    address_of, check_service, error_event, interval, is_unreachable, poll_containers,
    ContainerProbe, NO_ADDRESS,
};
use crate::compose::ContainerFacts;
use crate::scenario::SensorsSection;
use crate::sensor::{Sensor, SensorContext, Stop};
use crate::sink::{now_ns, EventSink};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Http,
    Prom,
}

struct WebSensor {
    mode: Mode,
    service: String,
    port: u16,
    path: String,
    every: Duration,
    families: prom::Selector,
}

fn norm_path(p: &str) -> String {
    if p.starts_with('/') {
        p.to_string()
    } else {
        format!("/{p}")
    }
}

pub(crate) fn http_factory(
    cfg: &SensorsSection,
    ctx: &SensorContext,
) -> Result<Vec<Box<dyn Sensor>>, String> {
    let mut out: Vec<Box<dyn Sensor>> = Vec::new();
    for h in &cfg.http {
        for service in h.service_names() {
            check_service(ctx, service.get_ref())?;
            out.push(Box::new(WebSensor {
                mode: Mode::Http,
                service: service.get_ref().clone(),
                port: *h.port.get_ref(),
                path: norm_path(&h.path),
                every: interval(&h.interval)?,
                families: prom::Selector::default(),
            }));
        }
    }
    Ok(out)
}

pub(crate) fn prom_factory(
    cfg: &SensorsSection,
    ctx: &SensorContext,
) -> Result<Vec<Box<dyn Sensor>>, String> {
    let mut out: Vec<Box<dyn Sensor>> = Vec::new();
    for p in &cfg.prom {
        for service in p.service_names() {
            check_service(ctx, service.get_ref())?;
            out.push(Box::new(WebSensor {
                mode: Mode::Prom,
                service: service.get_ref().clone(),
                port: *p.port.get_ref(),
                path: norm_path(&p.path),
                every: interval(&p.interval)?,
                families: prom::Selector(p.families.clone()),
            }));
        }
    }
    Ok(out)
}

impl ContainerProbe for WebSensor {
    fn probe<'a>(
        &'a self,
        _ctx: &'a SensorContext,
        c: &'a ContainerFacts,
    ) -> BoxFuture<'a, (Vec<Event>, bool)> {
        self.probe_web(c).boxed()
    }
}

impl WebSensor {
    /// The events of one probe of one container; `true` when the address may be stale.
    async fn probe_web(&self, c: &ContainerFacts) -> (Vec<Event>, bool) {
        let timeout = self
            .every
            .clamp(Duration::from_millis(200), Duration::from_secs(5));
        let ts = now_ns();
        let source = if self.mode == Mode::Http {
            "http"
        } else {
            "prom"
        };
        let error = |message: String, data: serde_json::Value| {
            error_event(ts, source, &self.service, &c.name, message, &data)
        };
        let Some(addr) = address_of(c) else {
            let ev = error(NO_ADDRESS.into(), json!({"error_type": "no_address"}));
            return (vec![ev], true);
        };
        let url = format!("http://{addr}:{}{}", self.port, self.path);
        let p = http_get(&url, timeout).await;
        let stale = p
            .result
            .as_ref()
            .err()
            .is_some_and(|e| is_unreachable(e.kind()));
        if self.mode == Mode::Http {
            return (vec![p.to_event(ts, &self.service, Some(&c.name))], stale);
        }
        match &p.result {
            Ok(r) if r.status == 200 => {
                let text = String::from_utf8_lossy(&r.body);
                let (fams, errs) = prom::parse(&text);
                let mut evs = prom::scrape_events(
                    ts,
                    &self.service,
                    Some(&c.name),
                    &url,
                    &fams,
                    &self.families,
                );
                if !errs.is_empty() {
                    evs.push(error(
                        format!("{} bad exposition lines from {url}; first: {}", errs.len(), errs[0]),
                        json!({"url": url, "error_type": "bad_exposition", "bad_lines": errs.iter().map(|e| e.line).take(20).collect::<Vec<_>>()}),
                    ));
                }
                (evs, false)
            }
            Ok(r) => (
                vec![error(
                    format!("scrape of {url} answered {}", r.status),
                    json!({"url": url, "error_type": "http_status", "status": r.status}),
                )],
                false,
            ),
            Err(e) => (
                vec![error(
                    format!("scrape of {url} failed: {e}"),
                    json!({"url": url, "error_type": e.kind()}),
                )],
                stale,
            ),
        }
    }
}

impl Sensor for WebSensor {
    fn name(&self) -> &str {
        match self.mode {
            Mode::Http => "http",
            Mode::Prom => "prom",
        }
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
