//! The `http` and `prom` sensors: GET `http://<container address>:<port><path>` of each container
//! of a service at an interval. `http` records status, latency and the body (JSON as data, else
//! an excerpt); `prom` parses the Prometheus text exposition and keeps the selected families as
//! one `prom` event per sample (bad lines are reported in a `prom`/`error` event, good ones kept).

use std::time::Duration;

use futures_util::future::{join_all, BoxFuture};
use futures_util::FutureExt;
use sensors::probe::http_get;
use sensors::prom;
use serde_json::json;
use trace::Event;

use super::{address_of, check_service, interval, is_unreachable, refresh, ticker};
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
        check_service(ctx, h.service.get_ref())?;
        out.push(Box::new(WebSensor {
            mode: Mode::Http,
            service: h.service.get_ref().clone(),
            port: h.port,
            path: norm_path(&h.path),
            every: interval(&h.interval)?,
            families: prom::Selector::default(),
        }));
    }
    Ok(out)
}

pub(crate) fn prom_factory(
    cfg: &SensorsSection,
    ctx: &SensorContext,
) -> Result<Vec<Box<dyn Sensor>>, String> {
    let mut out: Vec<Box<dyn Sensor>> = Vec::new();
    for p in &cfg.prom {
        check_service(ctx, p.service.get_ref())?;
        out.push(Box::new(WebSensor {
            mode: Mode::Prom,
            service: p.service.get_ref().clone(),
            port: p.port,
            path: norm_path(&p.path),
            every: interval(&p.interval)?,
            families: prom::Selector(p.families.clone()),
        }));
    }
    Ok(out)
}

impl WebSensor {
    /// The events of one probe of one container; `true` when the address may be stale.
    async fn probe(&self, c: &ContainerFacts, timeout: Duration) -> (Vec<Event>, bool) {
        let ts = now_ns();
        let source = if self.mode == Mode::Http {
            "http"
        } else {
            "prom"
        };
        let Some(addr) = address_of(c) else {
            let ev = Event::new(ts, source, "error")
                .service(&self.service)
                .container(&c.name)
                .message("container has no address on a compose network")
                .data(&json!({"error_type": "no_address"}));
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
                    evs.push(
                        Event::new(ts, "prom", "error")
                            .service(&self.service)
                            .container(&c.name)
                            .message(format!("{} bad exposition lines from {url}; first: {}", errs.len(), errs[0]))
                            .data(&json!({"url": url, "error_type": "bad_exposition", "bad_lines": errs.iter().map(|e| e.line).take(20).collect::<Vec<_>>()})),
                    );
                }
                (evs, false)
            }
            Ok(r) => (
                vec![Event::new(ts, "prom", "error")
                    .service(&self.service)
                    .container(&c.name)
                    .message(format!("scrape of {url} answered {}", r.status))
                    .data(&json!({"url": url, "error_type": "http_status", "status": r.status}))],
                false,
            ),
            Err(e) => (
                vec![Event::new(ts, "prom", "error")
                    .service(&self.service)
                    .container(&c.name)
                    .message(format!("scrape of {url} failed: {e}"))
                    .data(&json!({"url": url, "error_type": e.kind()}))],
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
        async move {
            let mut targets: Vec<ContainerFacts> =
                ctx.containers_of(&self.service).cloned().collect();
            let timeout = self
                .every
                .clamp(Duration::from_millis(200), Duration::from_secs(5));
            let mut tick = ticker(self.every);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let results = join_all(targets.iter().map(|c| self.probe(c, timeout))).await;
                for (c, (evs, stale)) in targets.iter_mut().zip(results) {
                    for ev in evs {
                        sink.emit(ev);
                    }
                    if stale {
                        if let Some(f) = refresh(&ctx.docker, &c.id).await {
                            *c = f;
                        }
                    }
                }
            }
        }
        .boxed()
    }
}
