//! `analyzer generate OUT_DIR` (hidden): writes a synthetic trace with the `trace::gen`
//! generator through the real writer, for Python compatibility tests and benchmarks, and prints
//! the writer and finalize timings.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use trace::gen::{self, GenConfig, Scenario};
use trace::TraceWriter;

use crate::{exit, Error};

/// Fault scenarios of the generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ScenarioName {
    /// The cluster forms and stays whole.
    Healthy,
    /// right-a paused at 20 s for 6 s.
    GcPause,
    /// The seed's AutoDownSplitBrain run (use --auto-down 10 and --duration 70).
    SplitBrain,
    /// right-b killed at 20 s.
    NodeLost,
}

/// Arguments of `analyzer generate`.
#[derive(Debug, Clone, clap::Args)]
pub struct GenerateArgs {
    /// Output trace directory (must not hold a trace yet).
    pub out: PathBuf,
    /// About this many events (sets duration and log rate); default: a 60 s run.
    #[arg(long)]
    pub events: Option<u64>,
    /// Random seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Run length in seconds (overrides the length derived from --events).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Services, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "left-a,left-b,right-a,right-b"
    )]
    pub services: Vec<String>,
    /// Fault scenario.
    #[arg(long, value_enum, default_value_t = ScenarioName::Healthy)]
    pub scenario: ScenarioName,
    /// Auto-down unreachable nodes after this many seconds.
    #[arg(long)]
    pub auto_down: Option<f64>,
    /// Record the steps as an experiment of this name.
    #[arg(long)]
    pub experiment: Option<String>,
    /// Packets per second (written to packets.parquet).
    #[arg(long, default_value_t = 0.0)]
    pub packet_rate: f64,
    /// Filler log lines per second per service (ignored with --events).
    #[arg(long)]
    pub log_rate: Option<f64>,
    /// Leave the trace unfinalized (only the event log, flushed every 64 events, no outcome in
    /// the manifest), as a killed recorder would.
    #[arg(long)]
    pub unfinalized: bool,
    /// Also time the generator alone, to report the writer's own throughput.
    #[arg(long)]
    pub bench: bool,
}

/// The generator config the arguments describe.
pub fn config(a: &GenerateArgs) -> GenConfig {
    let at = Duration::from_secs;
    let mut c = GenConfig {
        seed: a.seed,
        services: a.services.clone(),
        scenario: match a.scenario {
            ScenarioName::Healthy => Scenario::healthy(),
            ScenarioName::GcPause => Scenario::gc_pause("right-a", at(20), at(6)),
            ScenarioName::SplitBrain => Scenario::split_brain(),
            ScenarioName::NodeLost => Scenario::node_lost("right-b", at(20)),
        },
        auto_down_after: a.auto_down.map(Duration::from_secs_f64),
        experiment: a.experiment.clone(),
        packet_rate: a.packet_rate,
        ..Default::default()
    };
    if let Some(r) = a.log_rate {
        c.log_rate = r;
    }
    if let Some(n) = a.events {
        c = c.with_event_count(n);
    }
    if let Some(d) = a.duration {
        c.duration = Duration::from_secs_f64(d.max(0.0));
    }
    c
}

/// Runs `analyzer generate`.
pub fn run(a: &GenerateArgs, out: &mut dyn Write) -> Result<i32, Error> {
    let cfg = config(a);
    if a.bench {
        let t0 = Instant::now();
        let n = gen::events(&cfg).count();
        let s = t0.elapsed().as_secs_f64();
        writeln!(
            out,
            "generator alone: {n} events in {s:.3} s ({:.0} events/s)",
            n as f64 / s
        )
        .map_err(Error::output)?;
    }
    let t0 = Instant::now();
    let mut manifest = gen::manifest(&cfg);
    if a.unfinalized {
        // As a killed recorder leaves it: no end, no outcome.
        manifest.ended_ns = None;
        manifest.outcome = None;
    }
    let mut w = TraceWriter::create(&a.out, manifest)?;
    let mut n = 0u64;
    for e in gen::events(&cfg) {
        w.append(e)?;
        n += 1;
        if a.unfinalized && n.is_multiple_of(64) {
            // Small batches, like a live recorder flushing on its 250 ms tick.
            w.flush()?;
        }
    }
    if cfg.packet_rate > 0.0 {
        w.add_packets(gen::packets(&cfg))?;
    }
    w.flush()?;
    let write_s = t0.elapsed().as_secs_f64();
    writeln!(
        out,
        "generated and logged {n} events in {write_s:.3} s ({:.0} events/s)",
        n as f64 / write_s
    )
    .map_err(Error::output)?;
    if a.unfinalized {
        // Leave without finishing or closing the stream, as a killed recorder does.
        std::mem::forget(w);
        writeln!(out, "left unfinalized: {}", a.out.display()).map_err(Error::output)?;
        return Ok(exit::OK);
    }
    let t1 = Instant::now();
    let s = w.finish()?;
    let fin = t1.elapsed().as_secs_f64();
    writeln!(
        out,
        "finalized {} events ({} packets, {} row groups) in {fin:.3} s ({:.2} s per million events)",
        s.events,
        s.packets,
        s.row_groups,
        if s.events > 0 { fin * 1e6 / s.events as f64 } else { 0.0 }
    )
    .map_err(Error::output)?;
    Ok(exit::OK)
}
