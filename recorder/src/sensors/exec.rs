//! The `exec` sensor: runs a command in each container of a service at an interval through the
//! Docker exec API, and records stdout (parsed as JSON when it is JSON), stderr and the exit code
//! as `exec` events (see `sensor_protocols::probe::ExecOutput`).

use std::time::{Duration, Instant};

use bollard::exec::{CreateExecOptions, StartExecResults};
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use sensor_protocols::probe::ExecOutput;

use trace::Event;

use super::poll::{check_service, interval, ContainerProbe, Polling};
use super::{ConfigError, Sensor, SensorContext};
use crate::compose::ContainerFacts;
use crate::scenario::SensorsSection;
use crate::sink::now_ns;

pub(crate) fn factory(
    cfg: &SensorsSection,
    ctx: &SensorContext,
) -> Result<Vec<Box<dyn Sensor>>, ConfigError> {
    let mut out: Vec<Box<dyn Sensor>> = Vec::new();
    for e in &cfg.exec {
        check_service(ctx, e.service.get_ref())?;
        if e.cmd.is_empty() {
            return Err(ConfigError::EmptyCommand(e.service.get_ref().clone()));
        }
        out.push(Box::new(Polling(ExecSensor {
            service: e.service.get_ref().clone(),
            cmd: e.cmd.clone(),
            every: interval(&e.interval)?,
        })));
    }
    Ok(out)
}

struct ExecSensor {
    service: String,
    cmd: Vec<String>,
    every: Duration,
}

/// Largest output kept per stream while reading (the event keeps less, see `sensor_protocols::probe`).
const MAX_READ: usize = 1 << 20;

async fn run_exec(
    docker: &bollard::Docker,
    container: &str,
    cmd: &[String],
    timeout: Duration,
) -> ExecOutput {
    let start = Instant::now();
    let mut out = ExecOutput {
        command: cmd.to_vec(),
        ..Default::default()
    };
    let created = match docker
        .create_exec(
            container,
            CreateExecOptions::<String> {
                cmd: Some(cmd.to_vec()),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            },
        )
        .await
    {
        Ok(c) => c,
        Err(e) => {
            out.error = Some(format!("exec create in {container}: {e}"));
            return out;
        }
    };
    let collect = async {
        match docker.start_exec(&created.id, None).await {
            Ok(StartExecResults::Attached { mut output, .. }) => {
                while let Some(chunk) = output.next().await {
                    match chunk {
                        Ok(bollard::container::LogOutput::StdErr { message }) => {
                            if out.stderr.len() < MAX_READ {
                                out.stderr.extend_from_slice(&message);
                            }
                        }
                        Ok(other) => {
                            if out.stdout.len() < MAX_READ {
                                out.stdout.extend_from_slice(&other.into_bytes());
                            }
                        }
                        Err(e) => {
                            out.error = Some(format!("exec output from {container}: {e}"));
                            break;
                        }
                    }
                }
            }
            Ok(StartExecResults::Detached) => out.error = Some("exec started detached".into()),
            Err(e) => out.error = Some(format!("exec start in {container}: {e}")),
        }
    };
    if tokio::time::timeout(timeout, collect).await.is_err() {
        out.error = Some(format!("command did not finish within {timeout:?}"));
    }
    // The exit code is set once the process is reaped; poll briefly.
    for _ in 0..25 {
        match docker.inspect_exec(&created.id).await {
            Ok(i) if i.running != Some(true) => {
                out.exit_code = i.exit_code;
                break;
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(_) => break,
        }
    }
    out.duration = start.elapsed();
    out
}

impl ContainerProbe for ExecSensor {
    fn name(&self) -> &str {
        "exec"
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
        let ts = now_ns();
        let timeout = self
            .every
            .clamp(Duration::from_secs(1), Duration::from_secs(30));
        async move {
            let out = run_exec(&ctx.docker, &c.id, &self.cmd, timeout).await;
            (vec![out.to_event(ts, &self.service, Some(&c.name))], false)
        }
        .boxed()
    }
}
