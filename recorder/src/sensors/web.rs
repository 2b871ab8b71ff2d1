//! The `http` and `prom` sensors: GET `http://<container address>:<port><path>` of each container
//! of a service at an interval. `http` records status, latency and the body (JSON as data, else
//! an excerpt); `prom` parses the Prometheus text exposition and keeps the selected families as
//! one `prom` event per sample (bad lines are reported in a `prom`/`error` event, good ones kept).

use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use sensor_protocols::probe::http_get;
use sensor_protocols::prom;
use serde_json::json;
use trace::Event;

use super::poll::{
    address_of, at_least_10ms, check_service, error_event, interval, is_unreachable,
    ContainerProbe, Polling, NO_ADDRESS,
};
use super::{ConfigError, Sensor, SensorContext};
use crate::compose::ContainerFacts;
use crate::scenario::SensorsSection;
use crate::sink::now_ns;
use toml::Spanned;

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
    /// How long one probe may take.
    timeout: Duration,
    families: prom::Selector,
}

/// A probe's `timeout` (default: its interval).
fn probe_timeout(
    timeout: &Option<Spanned<String>>,
    every: &Option<Spanned<String>>,
) -> Result<Duration, ConfigError> {
    match timeout {
        None => interval(every),
        Some(s) => at_least_10ms("timeout", s.get_ref()),
    }
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
) -> Result<Vec<Box<dyn Sensor>>, ConfigError> {
    let mut out: Vec<Box<dyn Sensor>> = Vec::new();
    for h in &cfg.http {
        for service in h.service_names() {
            check_service(ctx, service.get_ref())?;
            out.push(Box::new(Polling(WebSensor {
                mode: Mode::Http,
                service: service.get_ref().clone(),
                port: *h.port.get_ref(),
                path: norm_path(&h.path),
                every: interval(&h.interval)?,
                timeout: probe_timeout(&h.timeout, &h.interval)?,
                families: prom::Selector::default(),
            })));
        }
    }
    Ok(out)
}

pub(crate) fn prom_factory(
    cfg: &SensorsSection,
    ctx: &SensorContext,
) -> Result<Vec<Box<dyn Sensor>>, ConfigError> {
    let mut out: Vec<Box<dyn Sensor>> = Vec::new();
    for p in &cfg.prom {
        for service in p.service_names() {
            check_service(ctx, service.get_ref())?;
            out.push(Box::new(Polling(WebSensor {
                mode: Mode::Prom,
                service: service.get_ref().clone(),
                port: *p.port.get_ref(),
                path: norm_path(&p.path),
                every: interval(&p.interval)?,
                timeout: probe_timeout(&p.timeout, &p.interval)?,
                families: prom::Selector(p.families.clone()),
            })));
        }
    }
    Ok(out)
}

impl ContainerProbe for WebSensor {
    fn name(&self) -> &str {
        match self.mode {
            Mode::Http => "http",
            Mode::Prom => "prom",
        }
    }

    fn service(&self) -> &str {
        &self.service
    }

    fn every(&self) -> Duration {
        self.every
    }

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
        let timeout = self.timeout;
        let ts = now_ns();
        let name = if self.mode == Mode::Http {
            trace::kinds::http::ERROR
        } else {
            trace::kinds::prom::ERROR
        };
        let error = |message: String, data: serde_json::Value| {
            error_event(ts, name, &self.service, &c.name, message, &data)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{HttpConfig, LoadedScenario};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A loopback HTTP server answering every request `200 ok` after `delay`; its port.
    async fn slow_server(delay: Duration) -> u16 {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = l.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let _ = s.read(&mut buf).await;
                    tokio::time::sleep(delay).await;
                    let _ = s
                        .write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                        )
                        .await;
                });
            }
        });
        port
    }

    fn sensor(h: &HttpConfig, port: u16) -> WebSensor {
        WebSensor {
            mode: Mode::Http,
            service: h.service_names()[0].get_ref().clone(),
            port,
            path: norm_path(&h.path),
            every: interval(&h.interval).expect("interval"),
            timeout: probe_timeout(&h.timeout, &h.interval).expect("timeout"),
            families: prom::Selector::default(),
        }
    }

    /// A probe waits for its `timeout`, not its interval: a server answering in 1 s is a
    /// response with `timeout = "3s"` and a timeout error without it (interval 300ms).
    #[tokio::test]
    async fn an_http_probe_waits_for_its_own_timeout() {
        let text = "[compose]\nfiles = [\"c.yml\"]\n\
                    [[sensors.http]]\nservice = \"web\"\nport = 80\ninterval = \"300ms\"\ntimeout = \"3s\"\n\
                    [[sensors.http]]\nservice = \"web\"\nport = 80\ninterval = \"300ms\"\n";
        let l = LoadedScenario::parse(std::path::Path::new("s.toml"), text).expect("parses");
        let http = &l.scenario.sensors.http;
        let port = slow_server(Duration::from_secs(1)).await;
        let c = ContainerFacts {
            id: "c1".into(),
            name: "p-web-1".into(),
            service: "web".into(),
            image: String::new(),
            image_id: String::new(),
            pid: 0,
            running: true,
            paused: false,
            tty: false,
            health: None,
            addresses: [("default".to_string(), "127.0.0.1".to_string())].into(),
            aliases: Vec::new(),
        };
        let (evs, _) = sensor(&http[0], port).probe_web(&c).await;
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].kind, "response", "{:?}", evs[0]);
        let (evs, _) = sensor(&http[1], port).probe_web(&c).await;
        assert_eq!(evs[0].kind, "error", "{:?}", evs[0]);
        assert!(
            evs[0].data.as_deref().unwrap_or("").contains("\"timeout\""),
            "{:?}",
            evs[0]
        );
        // a bad or too short timeout is a scenario error at its position
        let bad = "[compose]\nfiles = [\"c.yml\"]\n[[sensors.http]]\nservice = \"web\"\nport = 80\ntimeout = \"5ms\"\n";
        let e = LoadedScenario::parse(std::path::Path::new("s.toml"), bad)
            .expect("parses")
            .resolve()
            .expect_err("too short");
        let at = e.0.iter().find(|x| x.message.contains("timeout"));
        assert_eq!(at.map(|x| (x.line, x.col)), Some((6, 11)), "{e}");
    }
}
