//! What a started run holds, and its teardown: the compose project, the Docker sensors, the
//! protocol sensors' tasks (started here from the scenario's `[sensors]`), the fault injector and
//! the OTLP receiver. `Session::teardown` reverts the faults, drains the sensors, takes the
//! project down, removes what `compose down` left and the host rules, and stops the receiver,
//! going on past every problem.

use std::path::PathBuf;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use trace::kinds::recorder;

use crate::compose::{self, ComposeCli};
use crate::faults;
use crate::plan::SharedInjector;
use crate::scenario::LoadedScenario;
use crate::sensors::docker::DockerSensors;
use crate::sensors::{SensorContext, SensorRegistry};
use crate::sink::EventSink;

use super::event;

pub(super) fn start_sensors(session: &mut Session, sc: &LoadedScenario, ctx: &SensorContext) {
    let reg = SensorRegistry::builtin();
    let cfg = &sc.scenario.sensors;
    let asked: Vec<&str> = [
        ("jmx", cfg.jmx.is_some()),
        ("http", !cfg.http.is_empty()),
        ("prom", !cfg.prom.is_empty()),
        ("exec", !cfg.exec.is_empty()),
        ("pcap", cfg.pcap.is_some()),
    ]
    .into_iter()
    .filter(|(_, on)| *on)
    .map(|(n, _)| n)
    .collect();
    let names = reg.names();
    for a in asked {
        if !names.contains(&a) {
            session.sink.emit(event(
                recorder::SENSOR_ERROR,
                format!("sensor `{a}` is configured but not available in this build"),
                serde_json::json!({"sensor": a, "error": "not available"}),
            ));
        }
    }
    match reg.build(cfg, ctx) {
        Ok(sensors) => {
            for s in sensors {
                let name = s.name().to_string();
                let fut = s.run(
                    ctx.clone(),
                    session.sink.clone(),
                    session.sensor_stop.clone(),
                );
                let sink = session.sink.clone();
                session.sensor_tasks.push(tokio::spawn(async move {
                    // a panicking sensor must not take the run down: record it
                    if let Err(e) = tokio::spawn(fut).await {
                        sink.emit(event(
                            recorder::SENSOR_ERROR,
                            format!("sensor {name} stopped: {e}"),
                            serde_json::json!({"sensor": name, "error": e.to_string()}),
                        ));
                    }
                }));
            }
        }
        Err(errs) => {
            for e in errs {
                session.sink.emit(event(
                    recorder::SENSOR_ERROR,
                    e.clone(),
                    serde_json::json!({"error": e}),
                ));
            }
        }
    }
}

/// What teardown needs; dropped after teardown.
pub(super) struct Session {
    pub docker: bollard::Docker,
    pub cli: ComposeCli,
    pub files: Vec<PathBuf>,
    pub project: String,
    pub sink: EventSink,
    pub docker_sensors: Option<DockerSensors>,
    pub injector: Option<SharedInjector>,
    pub sensor_stop: CancellationToken,
    pub sensor_tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The OTLP receiver: stopped after `compose down`, so the services' last exports are in.
    pub otlp: Option<crate::otlp::OtlpRun>,
}

impl Session {
    /// Reverts faults, drains sensors, takes the project down, removes leftovers. Returns the
    /// problems met (teardown goes on past each).
    pub async fn teardown(&mut self) -> Vec<String> {
        let mut errs = Vec::new();
        self.sink.emit(event(
            recorder::TEARDOWN,
            "teardown started",
            serde_json::json!({"phase": "start"}),
        ));
        if let Some(inj) = &self.injector {
            let revert = async { inj.lock().await.revert_all().await };
            if tokio::time::timeout(Duration::from_secs(60), revert)
                .await
                .is_err()
            {
                errs.push("reverting faults timed out".to_string());
            }
        }
        self.sensor_stop.cancel();
        for t in self.sensor_tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
        if let Some(ds) = &self.docker_sensors {
            ds.stop_followers().await;
        }
        match tokio::time::timeout(
            Duration::from_secs(120),
            self.cli.down(&self.files, &self.project),
        )
        .await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => errs.push(e.to_string()),
            Err(_) => errs.push("compose down timed out".into()),
        }
        // whatever down left (e.g. containers it did not know about)
        match compose::remove_project(&self.docker, &self.project).await {
            Ok(r) => {
                if !r.containers.is_empty() || !r.networks.is_empty() {
                    self.sink.emit(event(
                        recorder::CLEANUP,
                        format!("removed leftovers: {:?} {:?}", r.containers, r.networks),
                        serde_json::json!({"containers": r.containers, "networks": r.networks}),
                    ));
                }
                errs.extend(r.errors);
            }
            Err(e) => errs.push(format!("cleanup: {e}")),
        }
        if let Err(e) = faults::cleanup_host(&self.project).await {
            errs.push(format!("host rules cleanup: {e}"));
        }
        if let Some(o) = self.otlp.take() {
            o.stop().await;
        }
        if let Some(ds) = self.docker_sensors.take() {
            ds.stop_events().await;
        }
        self.sink.emit(event(
            recorder::TEARDOWN,
            "teardown done",
            serde_json::json!({"phase": "end", "errors": errs}),
        ));
        errs
    }
}
