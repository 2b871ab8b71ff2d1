//! Container resource stats (CPU %, memory used/limit, network rx/tx, block I/O) about once per
//! interval, from the daemon's streaming stats endpoint, as `source = "stats"` events.

use std::time::{Duration, Instant};

use bollard::models::ContainerStatsResponse;
use bollard::query_parameters::StatsOptionsBuilder;
use bollard::Docker;
use futures_util::StreamExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::logs::FollowTarget;
use crate::sink::{now_ns, EventSink};

/// The figures recorded for one sample.
pub fn summarize(s: &ContainerStatsResponse) -> serde_json::Value {
    let cpu = s.cpu_stats.clone().unwrap_or_default();
    let pre = s.precpu_stats.clone().unwrap_or_default();
    let total = cpu
        .cpu_usage
        .as_ref()
        .and_then(|u| u.total_usage)
        .unwrap_or(0);
    let pre_total = pre
        .cpu_usage
        .as_ref()
        .and_then(|u| u.total_usage)
        .unwrap_or(0);
    let sys = cpu.system_cpu_usage.unwrap_or(0);
    let pre_sys = pre.system_cpu_usage.unwrap_or(0);
    let ncpu = cpu
        .online_cpus
        .map(u64::from)
        .or_else(|| {
            cpu.cpu_usage
                .as_ref()
                .and_then(|u| u.percpu_usage.as_ref())
                .map(|v| v.len() as u64)
        })
        .unwrap_or(1)
        .max(1);
    let cpu_percent = if sys > pre_sys && total >= pre_total && pre_sys > 0 {
        (total - pre_total) as f64 / (sys - pre_sys) as f64 * ncpu as f64 * 100.0
    } else {
        0.0
    };
    let mem = s.memory_stats.clone().unwrap_or_default();
    let usage = mem.usage.unwrap_or(0);
    // like `docker stats`: subtract the page cache
    let cache = mem
        .stats
        .as_ref()
        .and_then(|m| {
            m.get("inactive_file")
                .or_else(|| m.get("total_inactive_file"))
                .or_else(|| m.get("cache"))
                .copied()
        })
        .unwrap_or(0);
    let mem_used = usage.saturating_sub(cache);
    let (mut rx, mut tx) = (0u64, 0u64);
    for n in s
        .networks
        .as_ref()
        .map(|m| m.values().collect::<Vec<_>>())
        .unwrap_or_default()
    {
        rx += n.rx_bytes.unwrap_or(0);
        tx += n.tx_bytes.unwrap_or(0);
    }
    let (mut rd, mut wr) = (0u64, 0u64);
    for e in s
        .blkio_stats
        .as_ref()
        .and_then(|b| b.io_service_bytes_recursive.clone())
        .unwrap_or_default()
    {
        match e.op.as_deref().map(str::to_ascii_lowercase).as_deref() {
            Some("read") => rd += e.value.unwrap_or(0),
            Some("write") => wr += e.value.unwrap_or(0),
            _ => {}
        }
    }
    serde_json::json!({
        "cpu_percent": (cpu_percent * 100.0).round() / 100.0,
        "mem_used": mem_used,
        "mem_limit": mem.limit.unwrap_or(0),
        "net_rx_bytes": rx,
        "net_tx_bytes": tx,
        "blk_read_bytes": rd,
        "blk_write_bytes": wr,
        "pids": s.pids_stats.as_ref().and_then(|p| p.current).unwrap_or(0),
    })
}

/// Streams one container's stats until `stop`, one event per `interval` at most; resumes after
/// the container restarts.
pub async fn follow(
    docker: Docker,
    t: FollowTarget,
    sink: EventSink,
    interval: Duration,
    mut restarted: watch::Receiver<u64>,
    stop: CancellationToken,
) {
    let mut last_emit: Option<Instant> = None;
    while !stop.is_cancelled() {
        restarted.borrow_and_update();
        let opts = StatsOptionsBuilder::default().stream(true).build();
        let mut stream = docker.stats(&t.id, Some(opts));
        loop {
            let item = tokio::select! {
                _ = stop.cancelled() => return,
                item = stream.next() => item,
            };
            match item {
                Some(Ok(s)) => {
                    // a stopped container reports zeros without a read time; skip those
                    if s.pids_stats.as_ref().and_then(|p| p.current).unwrap_or(0) == 0
                        && s.memory_stats.as_ref().and_then(|m| m.usage).unwrap_or(0) == 0
                    {
                        continue;
                    }
                    let due = last_emit
                        .is_none_or(|l| l.elapsed() + Duration::from_millis(100) >= interval);
                    if due {
                        last_emit = Some(Instant::now());
                        sink.emit(
                            trace::kinds::stats::STATS
                                .at(now_ns())
                                .service(t.service.clone())
                                .container(t.name.clone())
                                .data(&summarize(&s)),
                        );
                    }
                }
                Some(Err(_)) | None => break,
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = restarted.changed() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{ContainerCpuStats, ContainerCpuUsage, ContainerMemoryStats};

    #[test]
    fn cpu_percent_from_deltas() {
        let s = ContainerStatsResponse {
            cpu_stats: Some(ContainerCpuStats {
                cpu_usage: Some(ContainerCpuUsage {
                    total_usage: Some(300),
                    ..Default::default()
                }),
                system_cpu_usage: Some(2000),
                online_cpus: Some(2),
                ..Default::default()
            }),
            precpu_stats: Some(ContainerCpuStats {
                cpu_usage: Some(ContainerCpuUsage {
                    total_usage: Some(100),
                    ..Default::default()
                }),
                system_cpu_usage: Some(1000),
                online_cpus: Some(2),
                ..Default::default()
            }),
            memory_stats: Some(ContainerMemoryStats {
                usage: Some(1000),
                limit: Some(4000),
                stats: Some(
                    [("inactive_file".to_string(), 200u64)]
                        .into_iter()
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        };
        let v = summarize(&s);
        assert_eq!(v["cpu_percent"], 40.0);
        assert_eq!(v["mem_used"], 800);
        assert_eq!(v["mem_limit"], 4000);
    }
}
