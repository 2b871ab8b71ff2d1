//! The `pcap` sensor: captures the traffic of chosen services/containers inside their network
//! namespace (`nsenter -t <pid> -n tcpdump -i any`) and of chosen compose networks on their host
//! bridge, into `<trace>/pcap/<name>.pcap`. At the end it stops every tcpdump (SIGINT), records
//! its statistics (kernel drops) and summarises each file into `packets.parquet`
//! (`sensor_protocols::pcap::PcapSummariser`, services resolved from the manifest's addresses).
//! A capture that cannot start, or dies, is an event; the run goes on. A capture whose container
//! restarted (new network namespace) is resumed into `<name>-2.pcap`, `-3` …. A killed recorder
//! leaves its tcpdumps running: [`stop_leftover_captures`] (`recorder cleanup`) finds and stops
//! them.

use std::path::PathBuf;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use sensor_protocols::capture::{CaptureSpec, CaptureTarget, RunningCapture};
use sensor_protocols::pcap::{AddressMap, PcapSummariser};
use serde_json::json;
use trace::{kinds, Event};

use super::poll::{check_service, refresh, unknown_network};
use super::{ConfigError, PacketSink, Sensor, SensorContext, Stop};
use crate::scenario::SensorsSection;
use crate::sink::{now_ns, EventSink};

/// One thing to capture.
#[derive(Debug, Clone)]
enum Target {
    /// A container (id, name, service), captured in its network namespace.
    Container {
        id: String,
        name: String,
        service: String,
    },
    /// A compose network, captured on its host bridge.
    Network { name: String, bridge: String },
}

impl Target {
    fn stem(&self) -> String {
        match self {
            Target::Container { name, .. } => sanitize(name),
            Target::Network { name, .. } => format!("net-{}", sanitize(name)),
        }
    }
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

pub(crate) fn factory(
    cfg: &SensorsSection,
    ctx: &SensorContext,
) -> Result<Vec<Box<dyn Sensor>>, ConfigError> {
    let Some(p) = &cfg.pcap else {
        return Ok(Vec::new());
    };
    let mut targets = Vec::new();
    for s in &p.services {
        check_service(ctx, s.get_ref())?;
        for c in ctx.containers_of(s.get_ref()) {
            targets.push(Target::Container {
                id: c.id.clone(),
                name: c.name.clone(),
                service: c.service.clone(),
            });
        }
    }
    for n in &p.containers {
        let c = ctx
            .containers
            .iter()
            .find(|c| &c.name == n || c.id.starts_with(n.as_str()))
            .ok_or_else(|| ConfigError::UnknownContainer(n.clone()))?;
        targets.push(Target::Container {
            id: c.id.clone(),
            name: c.name.clone(),
            service: c.service.clone(),
        });
    }
    for n in &p.networks {
        let n = n.get_ref();
        let net = ctx
            .networks
            .iter()
            .find(|x| &x.name == n)
            .ok_or_else(|| unknown_network(ctx, None, n))?;
        // Docker names a user-defined bridge network's interface br-<first 12 hex of its id>.
        let bridge = match &net.info.bridge {
            Some(b) if !b.is_empty() => b.clone(),
            _ if net.info.id.len() >= 12 => format!("br-{}", &net.info.id[..12]),
            _ => return Err(ConfigError::UnknownBridge(n.clone())),
        };
        targets.push(Target::Network {
            name: n.clone(),
            bridge,
        });
    }
    if targets.is_empty() {
        return Err(ConfigError::NoCaptureTargets);
    }
    Ok(vec![Box::new(PcapSensor {
        targets,
        opts: CaptureOpts {
            snaplen: p.snaplen,
            buffer_kib: p.buffer_kib.as_ref().map(|b| *b.get_ref()),
        },
    })])
}

/// tcpdump options shared by every capture of the sensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CaptureOpts {
    /// `-s`
    snaplen: u32,
    /// `-B` (KiB), tcpdump's default when `None`.
    buffer_kib: Option<u32>,
}

impl CaptureOpts {
    fn spec(&self, target: CaptureTarget, file: &std::path::Path) -> CaptureSpec {
        let mut spec = CaptureSpec::new(target, file);
        spec.snaplen = Some(self.snaplen);
        spec.buffer_kib = self.buffer_kib;
        spec
    }
}

struct PcapSensor {
    targets: Vec<Target>,
    opts: CaptureOpts,
}

struct Live {
    target: Target,
    /// Files written so far for this target (one more after each resume).
    files: Vec<PathBuf>,
    running: Option<RunningCapture>,
}

fn event(name: kinds::Name, target: &Target, message: String, data: serde_json::Value) -> Event {
    let mut ev = name.at(now_ns()).message(message).data(&data);
    if let Target::Container { name, service, .. } = target {
        ev.service = Some(service.clone());
        ev.container = Some(name.clone());
    }
    ev
}

async fn start_one(
    ctx: &SensorContext,
    t: &Target,
    file: PathBuf,
    opts: CaptureOpts,
    sink: &EventSink,
) -> Option<RunningCapture> {
    let target = match t {
        Target::Container { id, name, .. } => match refresh(&ctx.docker, id).await {
            Some(f) if f.running && f.pid > 0 => CaptureTarget::Netns {
                pid: f.pid as u32,
                interface: "any".into(),
            },
            _ => {
                sink.emit(event(kinds::recorder::SENSOR_ERROR,
                    t,
                    format!("pcap: cannot capture {name}: container not running"),
                    json!({"sensor": "pcap", "capture": t.stem(), "error": "container not running"}),
                ));
                return None;
            }
        },
        Target::Network { bridge, .. } => CaptureTarget::HostInterface(bridge.clone()),
    };
    let spec = opts.spec(target, &file);
    let cmd = spec.command_line().join(" ");
    match RunningCapture::start(&spec).await {
        Ok(r) => {
            sink.emit(event(kinds::recorder::CAPTURE,
                t,
                format!("pcap: capturing into {}", file.display()),
                json!({"phase": "started", "capture": file.file_stem().map(|s| s.to_string_lossy().to_string()), "file": file.display().to_string(), "command": cmd}),
            ));
            Some(r)
        }
        Err(e) => {
            sink.emit(event(kinds::recorder::SENSOR_ERROR,
                t,
                format!("pcap: capture {} cannot start: {e}", t.stem()),
                json!({"sensor": "pcap", "capture": t.stem(), "error": e.to_string(), "command": cmd}),
            ));
            None
        }
    }
}

/// Summarises one file into the packet sink in batches; returns the summary as JSON.
fn summarise(path: PathBuf, addrs: AddressMap, packets: PacketSink) -> serde_json::Value {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    let mut s = match PcapSummariser::open(&path, &stem, addrs) {
        Ok(s) => s,
        Err(e) => return json!({"capture": stem, "error": e.to_string()}),
    };
    let mut batch = Vec::with_capacity(50_000);
    for rec in s.by_ref() {
        batch.push(rec);
        if batch.len() == 50_000 {
            packets.add(std::mem::replace(&mut batch, Vec::with_capacity(50_000)));
        }
    }
    if !batch.is_empty() {
        packets.add(batch);
    }
    serde_json::to_value(s.into_summary()).unwrap_or_default()
}

impl Sensor for PcapSensor {
    fn name(&self) -> &str {
        "pcap"
    }

    fn run(
        self: Box<Self>,
        ctx: SensorContext,
        sink: EventSink,
        stop: Stop,
    ) -> BoxFuture<'static, ()> {
        async move {
            if let Err(e) = std::fs::create_dir_all(&ctx.pcap_dir) {
                sink.emit(Event::new(now_ns(), "recorder", "sensor_error")
                    .message(format!("pcap: cannot create {}: {e}", ctx.pcap_dir.display()))
                    .data(&json!({"sensor": "pcap", "error": e.to_string()})));
                return;
            }
            let mut live = Vec::new();
            for t in &self.targets {
                let file = ctx.pcap_dir.join(format!("{}.pcap", t.stem()));
                let running = start_one(&ctx, t, file.clone(), self.opts, &sink).await;
                let files = if running.is_some() { vec![file] } else { Vec::new() };
                live.push(Live { target: t.clone(), files, running });
            }
            // Watch for captures that die (container restarted: new namespace) and resume them.
            let mut tick = super::poll::ticker(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => {}
                }
                for l in live.iter_mut() {
                    let dead = l.running.as_mut().is_none_or(|r| r.exited());
                    if !dead || !matches!(l.target, Target::Container { .. }) {
                        continue;
                    }
                    if let Some(r) = l.running.take() {
                        let stats = r.stop(Duration::from_secs(1)).await.ok();
                        sink.emit(event(kinds::recorder::CAPTURE, &l.target, format!("pcap: capture {} ended early", l.target.stem()),
                            json!({"phase": "ended", "capture": l.target.stem(), "stats": stats})));
                    }
                    let file = ctx.pcap_dir.join(format!("{}-{}.pcap", l.target.stem(), l.files.len() + 1));
                    if let Some(r) = start_one(&ctx, &l.target, file.clone(), self.opts, &sink).await {
                        l.running = Some(r);
                        l.files.push(file);
                    }
                }
            }
            // Stop every tcpdump at once, then summarise the files.
            let stops = live.iter_mut().filter_map(|l| l.running.take().map(|r| (l.target.clone(), r))).map(|(t, r)| async move {
                (t, r.stop(Duration::from_secs(3)).await)
            });
            for (t, res) in futures_util::future::join_all(stops).await {
                match res {
                    Ok(stats) => sink.emit(event(kinds::recorder::CAPTURE,
                        &t,
                        format!("pcap: capture {} stopped, {} packets dropped by kernel", t.stem(), stats.dropped_by_kernel.map_or("?".into(), |d| d.to_string())),
                        json!({"phase": "stopped", "capture": t.stem(), "stats": stats}),
                    )),
                    Err(e) => sink.emit(event(kinds::recorder::SENSOR_ERROR, &t, format!("pcap: stopping {}: {e}", t.stem()), json!({"sensor": "pcap", "capture": t.stem(), "error": e.to_string()}))),
                };
            }
            let addrs = AddressMap::from_manifest(&ctx.manifest);
            for l in &live {
                for f in &l.files {
                    let (f2, a, p) = (f.clone(), addrs.clone(), ctx.packets.clone());
                    let summary = tokio::task::spawn_blocking(move || summarise(f2, a, p)).await.unwrap_or_else(|e| json!({"error": e.to_string()}));
                    let truncated = summary.get("truncated").and_then(|v| v.as_bool()).unwrap_or(false);
                    sink.emit(event(kinds::recorder::CAPTURE,
                        &l.target,
                        format!("pcap: {} summarised: {} packets{}", f.display(), summary.get("packets").and_then(|v| v.as_u64()).unwrap_or(0), if truncated { " (truncated file, read up to the last whole packet)" } else { "" }),
                        json!({"phase": "summarised", "capture": f.file_stem().map(|s| s.to_string_lossy().to_string()), "summary": summary}),
                    ));
                }
            }
        }
        .boxed()
    }
}

/// The file a tcpdump process writes (`-w FILE`, made absolute with its working directory), if
/// process `pid` is a tcpdump.
fn tcpdump_output(pid: i32) -> Option<PathBuf> {
    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let argv: Vec<String> = cmd
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let prog = std::path::Path::new(argv.first()?).file_name()?;
    if prog != "tcpdump" {
        return None;
    }
    let file = PathBuf::from(&argv.windows(2).find(|w| w[0] == "-w")?[1]);
    if file.is_absolute() {
        Some(file)
    } else {
        Some(
            std::fs::read_link(format!("/proc/{pid}/cwd"))
                .ok()?
                .join(file),
        )
    }
}

/// Whether process `pid` is gone (or a zombie waiting for its parent).
fn process_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

/// Stops the tcpdumps a killed recorder of compose project `project` left writing into a
/// trace: every `tcpdump` process whose `-w` file is `<trace>/pcap/<name>` of a trace whose
/// manifest names the project. Each gets SIGINT (it flushes and closes the file, as at the end
/// of a run), then SIGKILL if it is still there after 3 s. One line per process stopped.
pub async fn stop_leftover_captures(project: &str) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Some(file) = tcpdump_output(pid) else {
            continue;
        };
        let Some(trace_dir) = file
            .parent()
            .filter(|p| p.file_name().is_some_and(|n| n == trace::files::PCAP_DIR))
            .and_then(std::path::Path::parent)
        else {
            continue;
        };
        match trace::Manifest::read(trace_dir) {
            Ok(m) if m.compose.project == project => found.push((pid, file)),
            _ => {}
        }
    }
    let mut lines = Vec::new();
    for (pid, file) in found {
        // SAFETY: kill(2) with a pid read from /proc just now; no memory is involved.
        unsafe { libc::kill(pid, libc::SIGINT) };
        let mut waited = Duration::ZERO;
        while !process_gone(pid) && waited < Duration::from_secs(3) {
            tokio::time::sleep(Duration::from_millis(50)).await;
            waited += Duration::from_millis(50);
        }
        let how = if process_gone(pid) {
            "stopped"
        } else {
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            "killed"
        };
        lines.push(format!(
            "{project}: {how} tcpdump (pid {pid}) left writing {}",
            file.display()
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::LoadedScenario;

    fn opts_of(pcap_section: &str) -> CaptureOpts {
        let text = format!("[compose]\nfiles = [\"c.yml\"]\n[sensors.pcap]\n{pcap_section}");
        let l = LoadedScenario::parse(std::path::Path::new("s.toml"), &text).expect("parses");
        let p = l.scenario.sensors.pcap.expect("pcap section");
        CaptureOpts {
            snaplen: p.snaplen,
            buffer_kib: p.buffer_kib.map(|b| b.into_inner()),
        }
    }

    #[test]
    fn buffer_kib_reaches_the_tcpdump_argument_vector() {
        let o = opts_of("services = [\"a\"]\nbuffer_kib = 16384\nsnaplen = 96\n");
        let argv = o
            .spec(
                CaptureTarget::Netns {
                    pid: 7,
                    interface: "any".into(),
                },
                std::path::Path::new("/t/pcap/a.pcap"),
            )
            .command_line();
        let at = |flag: &str| {
            argv.iter()
                .position(|a| a == flag)
                .and_then(|i| argv.get(i + 1))
                .cloned()
        };
        assert_eq!(at("-B").as_deref(), Some("16384"), "{argv:?}");
        assert_eq!(at("-s").as_deref(), Some("96"), "{argv:?}");
        // not given: no -B, tcpdump keeps its default
        let o = opts_of("services = [\"a\"]\n");
        let argv = o
            .spec(
                CaptureTarget::HostInterface("br-1".into()),
                std::path::Path::new("/x.pcap"),
            )
            .command_line();
        assert!(!argv.iter().any(|a| a == "-B"), "{argv:?}");
        assert!(argv.iter().any(|a| a == "-s"), "{argv:?}");
    }
}
