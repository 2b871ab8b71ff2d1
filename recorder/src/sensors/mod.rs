//! Recorder glue for the protocol sensors of the `sensors` crate: turns the scenario's
//! `[sensors.jmx]`, `[[sensors.http]]`, `[[sensors.prom]]`, `[[sensors.exec]]` and
//! `[sensors.pcap]` sections into [`Sensor`]s. Containers are reached at their address on a
//! compose network (no published ports); exec and the capture's network namespace go through
//! Docker. Every failure is an event; a sensor never stops the run.

pub mod attach;
mod exec;
mod jmx;
mod pcap;
pub use pcap::stop_leftover_captures;
mod web;

use std::time::Duration;

use futures_util::future::{join_all, BoxFuture};
use toml::Spanned;
use trace::Event;

use crate::compose::ContainerFacts;
use crate::scenario::parse_duration;
use crate::sensor::{SensorContext, SensorRegistry, Stop};
use crate::sink::EventSink;

/// Adds the jmx, http, prom, exec and pcap factories.
pub fn register(registry: &mut SensorRegistry) {
    registry.register("jmx", jmx::factory);
    registry.register("http", web::http_factory);
    registry.register("prom", web::prom_factory);
    registry.register("exec", exec::factory);
    registry.register("pcap", pcap::factory);
}

/// Default poll interval of every probe.
pub(crate) const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

/// Parses an optional interval (default 1 s); must be at least 10 ms.
pub(crate) fn interval(v: &Option<Spanned<String>>) -> Result<Duration, String> {
    match v {
        None => Ok(DEFAULT_INTERVAL),
        Some(s) => {
            let d = parse_duration(s.get_ref())
                .map_err(|e| format!("interval {:?}: {e}", s.get_ref()))?;
            if d < Duration::from_millis(10) {
                return Err(format!("interval {:?} is shorter than 10ms", s.get_ref()));
            }
            Ok(d)
        }
    }
}

/// Checks that a service exists in the project.
pub(crate) fn check_service(ctx: &SensorContext, service: &str) -> Result<(), String> {
    if ctx.containers.iter().any(|c| c.service == service) {
        Ok(())
    } else {
        let mut known: Vec<&str> = ctx.containers.iter().map(|c| c.service.as_str()).collect();
        known.sort();
        known.dedup();
        Err(format!(
            "unknown service {service:?} (the project has: {})",
            known.join(", ")
        ))
    }
}

/// The address to reach a container at: its first address on a compose network.
pub(crate) fn address_of(c: &ContainerFacts) -> Option<String> {
    address_on(c, &[])
}

/// The address to reach a container at: on the first of `preferred` (compose network names) it
/// is attached to, else its first address on a compose network.
pub(crate) fn address_on(c: &ContainerFacts, preferred: &[String]) -> Option<String> {
    preferred
        .iter()
        .filter_map(|n| c.addresses.get(n))
        .chain(c.addresses.values())
        .find(|a| !a.is_empty())
        .map(|a| a.split('/').next().unwrap_or(a).to_string())
}

/// Checks that every network named by a sensor exists in the project.
pub(crate) fn check_networks(
    ctx: &SensorContext,
    what: &str,
    networks: &[String],
) -> Result<(), String> {
    for n in networks {
        if !ctx.networks.iter().any(|x| &x.name == n) {
            let known: Vec<&str> = ctx.networks.iter().map(|x| x.name.as_str()).collect();
            return Err(format!(
                "{what}: unknown network {n:?} (the project has: {})",
                known.join(", ")
            ));
        }
    }
    Ok(())
}

/// A ticker that skips missed ticks (a slow poll never causes a burst afterwards).
pub(crate) fn ticker(every: Duration) -> tokio::time::Interval {
    let mut t = tokio::time::interval(every);
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    t
}

/// Fresh facts of a container from Docker (after a restart its address and pid change).
pub(crate) async fn refresh(docker: &bollard::Docker, id: &str) -> Option<ContainerFacts> {
    crate::compose::inspect_container(docker, id)
        .await
        .ok()
        .flatten()
}

/// Whether an error type means the address may be stale.
pub(crate) fn is_unreachable(error_type: &str) -> bool {
    matches!(error_type, "connection_refused" | "connect" | "timeout")
}

/// What a container has no address for: the message of the `no_address` error.
pub(crate) const NO_ADDRESS: &str = "container has no address on a compose network";

/// An `error` event of a probe of one container.
pub(crate) fn error_event(
    ts: i64,
    source: &str,
    service: &str,
    container: &str,
    message: impl Into<String>,
    data: &serde_json::Value,
) -> Event {
    Event::new(ts, source, "error")
        .service(service)
        .container(container)
        .message(message)
        .data(data)
}

/// One poll of one container by a polling sensor.
pub(crate) trait ContainerProbe: Sync {
    /// The events of one poll of `c`, and `true` when its address may be stale (the container
    /// is then re-resolved from Docker before the next poll).
    fn probe<'a>(
        &'a self,
        ctx: &'a SensorContext,
        c: &'a ContainerFacts,
    ) -> BoxFuture<'a, (Vec<Event>, bool)>;
}

/// Polls every container of `service` at `every` until `stop`: all containers at once per tick,
/// their events emitted in container order, and a container whose poll said its address may be
/// stale re-resolved from Docker (after a restart its address changes).
pub(crate) async fn poll_containers(
    probe: &impl ContainerProbe,
    ctx: &SensorContext,
    service: &str,
    every: Duration,
    sink: &EventSink,
    stop: &Stop,
) {
    let mut targets: Vec<ContainerFacts> = ctx.containers_of(service).cloned().collect();
    let mut tick = ticker(every);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let results = join_all(targets.iter().map(|c| probe.probe(ctx, c))).await;
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::compose::NetworkFacts;
    use crate::scenario::SensorsSection;
    use crate::sensor::{PacketSink, SensorRegistry};
    use crate::sink::EventSink;

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
        let mut reg = SensorRegistry::new();
        register(&mut reg);
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
        let mut reg = SensorRegistry::new();
        register(&mut reg);
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
        let mut reg = SensorRegistry::new();
        register(&mut reg);
        let mut sensors = reg.build(&cfg, &c).expect("valid");
        assert_eq!(sensors.len(), 1);
        let (sink, mut rx) = EventSink::channel();
        let stop = crate::sensor::Stop::new();
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
