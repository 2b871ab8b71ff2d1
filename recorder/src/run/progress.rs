//! The progress line of `recorder run` on a terminal: every 500 ms, the elapsed time, what the
//! run is doing ([`Progress`]) and the events recorded per source, on one line of stderr.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::plan::Progress;
use crate::sink::EventSink;

/// Whether progress goes to the terminal: not `--quiet`, and stderr is a terminal.
pub fn enabled(quiet: bool) -> bool {
    !quiet && std::io::stderr().is_terminal()
}

/// Redraws the progress line until `stop` is cancelled, then clears it.
pub fn spawn(
    sink: &EventSink,
    progress: Arc<Progress>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let stats = sink.stats().clone();
    tokio::spawn(async move {
        let start = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            let per: Vec<String> = stats
                .per_source()
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            eprint!(
                "\r\x1b[K[{:>6.1}s] {} | {}",
                start.elapsed().as_secs_f64(),
                progress.get(),
                per.join(" ")
            );
        }
        eprint!("\r\x1b[K");
    })
}
