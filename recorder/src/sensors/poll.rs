//! The polling loop the probes (jmx, http, prom, exec) share, and the checks their factories
//! make: a probe implements `ContainerProbe` (one poll of one container) and is run as a
//! [`Sensor`] by `Polling`, which polls every container of its service at its interval until
//! the run stops and then lets the probe finish (the jmx probe stops the agents it attached).

use std::time::Duration;

use futures_util::future::{join_all, BoxFuture};
use futures_util::FutureExt;
use toml::Spanned;
use trace::Event;

use super::{ConfigError, Sensor, SensorContext, Stop};
use crate::compose::ContainerFacts;
use crate::scenario::parse_duration;
use crate::sink::EventSink;

/// Default poll interval of every probe.
pub(crate) const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

/// Parses an optional interval (default 1 s); must be at least 10 ms.
pub(crate) fn interval(v: &Option<Spanned<String>>) -> Result<Duration, ConfigError> {
    match v {
        None => Ok(DEFAULT_INTERVAL),
        Some(s) => at_least_10ms("interval", s.get_ref()),
    }
}

/// Parses a duration setting (`what` names it in errors) that must be at least 10 ms.
pub(crate) fn at_least_10ms(what: &'static str, value: &str) -> Result<Duration, ConfigError> {
    let d = parse_duration(value).map_err(|reason| ConfigError::BadDuration {
        what,
        value: value.to_string(),
        reason: reason.to_string(),
    })?;
    if d < Duration::from_millis(10) {
        return Err(ConfigError::TooShort {
            what,
            value: value.to_string(),
        });
    }
    Ok(d)
}

/// Checks that a service exists in the project.
pub(crate) fn check_service(ctx: &SensorContext, service: &str) -> Result<(), ConfigError> {
    if ctx.containers.iter().any(|c| c.service == service) {
        Ok(())
    } else {
        let mut known: Vec<&str> = ctx.containers.iter().map(|c| c.service.as_str()).collect();
        known.sort();
        known.dedup();
        Err(ConfigError::UnknownService {
            service: service.to_string(),
            known: known.join(", "),
        })
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

/// Checks that every network named by a sensor exists in the project; `what` names the setting.
pub(crate) fn check_networks(
    ctx: &SensorContext,
    what: Option<&'static str>,
    networks: &[String],
) -> Result<(), ConfigError> {
    for n in networks {
        if !ctx.networks.iter().any(|x| &x.name == n) {
            return Err(unknown_network(ctx, what, n));
        }
    }
    Ok(())
}

/// The error for a network the project does not have.
pub(crate) fn unknown_network(
    ctx: &SensorContext,
    what: Option<&'static str>,
    network: &str,
) -> ConfigError {
    let known: Vec<&str> = ctx.networks.iter().map(|x| x.name.as_str()).collect();
    ConfigError::UnknownNetwork {
        what,
        network: network.to_string(),
        known: known.join(", "),
    }
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

/// An `error` event (`name`: the probe's) of a probe of one container.
pub(crate) fn error_event(
    ts: i64,
    name: trace::kinds::Name,
    service: &str,
    container: &str,
    message: impl Into<String>,
    data: &serde_json::Value,
) -> Event {
    name.at(ts)
        .service(service)
        .container(container)
        .message(message)
        .data(data)
}

/// A probe of every container of one service at an interval; run as a [`Sensor`] by
/// [`Polling`].
pub(crate) trait ContainerProbe: Send + Sync + 'static {
    /// Short name of the sensor, e.g. `jmx`.
    fn name(&self) -> &str;
    /// The service whose containers are polled.
    fn service(&self) -> &str;
    /// The poll interval.
    fn every(&self) -> Duration;
    /// The events of one poll of `c`, and `true` when its address may be stale (the container
    /// is then re-resolved from Docker before the next poll).
    fn probe<'a>(
        &'a self,
        ctx: &'a SensorContext,
        c: &'a ContainerFacts,
    ) -> BoxFuture<'a, (Vec<Event>, bool)>;
    /// Runs once after the last poll; nothing by default.
    fn finish<'a>(&'a self, _ctx: &'a SensorContext, _sink: &'a EventSink) -> BoxFuture<'a, ()> {
        async {}.boxed()
    }
}

/// A [`ContainerProbe`] run as a [`Sensor`]: [`poll_containers`] until stopped, then
/// [`ContainerProbe::finish`].
pub(crate) struct Polling<P>(pub P);

impl<P: ContainerProbe> Sensor for Polling<P> {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn run(
        self: Box<Self>,
        ctx: SensorContext,
        sink: EventSink,
        stop: Stop,
    ) -> BoxFuture<'static, ()> {
        async move {
            let p = &self.0;
            poll_containers(p, &ctx, &sink, &stop).await;
            p.finish(&ctx, &sink).await;
        }
        .boxed()
    }
}

/// Polls every container of the probe's service at its interval until `stop`: all containers at
/// once per tick, their events emitted in container order, and a container whose poll said its
/// address may be stale re-resolved from Docker (after a restart its address changes).
async fn poll_containers(
    probe: &impl ContainerProbe,
    ctx: &SensorContext,
    sink: &EventSink,
    stop: &Stop,
) {
    let mut targets: Vec<ContainerFacts> = ctx.containers_of(probe.service()).cloned().collect();
    let mut tick = ticker(probe.every());
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
