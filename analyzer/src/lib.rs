//! The analyzer library: the `info`, `events`, `finalize`, `generate`, `check` (one trace or a
//! fleet), `flaky`, `diff` and `report` commands and their reporters. The `analyzer` binary is a
//! thin shell over it.

pub mod check;
pub mod diff;
pub mod error;
pub mod events;
pub mod exit;
pub mod flaky;
pub mod fleet;
pub mod generate;
pub mod html;
pub mod info;
pub mod judge;
pub mod paths;
pub mod phases;
pub mod report;
pub mod s3;
pub mod timearg;
pub mod verdicts;

pub use error::Error;

/// Runs `analyzer finalize TRACE`: sorts the logs of an unfinalized trace into Parquet files,
/// and builds `packets.parquet` from the trace's pcap files when the recorder died before
/// summarising them.
pub fn finalize_cmd(trace: &std::path::Path, out: &mut dyn std::io::Write) -> Result<i32, Error> {
    finalize_cmd_with(trace, false, out)
}

/// `analyzer finalize [--repair] TRACE`: like [`finalize_cmd`]; with `repair`, a trace breaking
/// an invariant (order, unique seq, null keys, damaged log records) is rewritten and what changed
/// is printed. Warnings (a cut log tail, skipped records) go to stderr.
pub fn finalize_cmd_with(
    trace: &std::path::Path,
    repair: bool,
    out: &mut dyn std::io::Write,
) -> Result<i32, Error> {
    let had_packets = trace.join(trace::files::PACKETS_LOG).exists()
        || trace.join(trace::files::PACKETS_PARQUET).exists();
    let mut s = trace::finalize::finalize_with(trace, trace::finalize::FinalizeOptions { repair })?;
    for w in &s.warnings {
        eprintln!("warning: {w}");
    }
    if !had_packets {
        if let Some((files, packets)) = packets_from_pcap(trace)? {
            // sort the spooled packets into packets.parquet
            let p = trace::finalize(trace)?;
            s.packets = p.packets;
            s.already_finalized = false;
            writeln!(
                out,
                "{}: {packets} packets summarised from {files} pcap file{} a killed recorder left",
                trace.display(),
                if files == 1 { "" } else { "s" }
            )
            .map_err(Error::output)?;
        }
    }
    let mut line = if s.already_finalized {
        format!(
            "{}: already finalized ({} events",
            trace.display(),
            s.events
        )
    } else {
        format!("{}: finalized ({} events", trace.display(), s.events)
    };
    if s.packets > 0 {
        line.push_str(&format!(", {} packets", s.packets));
    }
    line.push(')');
    if s.truncated_log {
        line.push_str(
            "; the log ended in an incomplete batch from a killed writer, which was dropped",
        );
    }
    writeln!(out, "{line}").map_err(Error::output)?;
    if let Some(r) = &s.repairs {
        let mut done = Vec::new();
        if r.reordered {
            done.push("rows sorted into (ts_ns, seq) order".to_string());
        }
        if r.duplicates_dropped > 0 {
            done.push(format!(
                "{} exact duplicate rows dropped",
                r.duplicates_dropped
            ));
        }
        if r.null_key_rows_dropped > 0 {
            done.push(format!(
                "{} rows with a null key column dropped",
                r.null_key_rows_dropped
            ));
        }
        if r.renumbered {
            done.push("rows shared a seq: every row renumbered".to_string());
        }
        if r.log_records_skipped > 0 {
            done.push(format!(
                "{} damaged log records skipped ({} bytes)",
                r.log_records_skipped, r.log_bytes_skipped
            ));
        }
        if done.is_empty() {
            done.push("nothing needed repair".to_string());
        }
        writeln!(out, "{}: repaired: {}", trace.display(), done.join("; "))
            .map_err(Error::output)?;
    }
    Ok(exit::OK)
}

/// Summarises every `pcap/*.pcap` of a finalized trace that has no packets into
/// `packets.arrows`, numbered after its last event (as the recorder's pcap sensor does at the
/// end of a run, with services resolved from the manifest's addresses). `None` when there is no
/// capture file. A file that cannot be read is skipped (what it holds up to a cut is kept).
fn packets_from_pcap(dir: &std::path::Path) -> Result<Option<(usize, u64)>, Error> {
    let pcap_dir = dir.join(trace::files::PCAP_DIR);
    let Ok(rd) = std::fs::read_dir(&pcap_dir) else {
        return Ok(None);
    };
    let mut files: Vec<std::path::PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pcap" || x == "pcapng"))
        .collect();
    if files.is_empty() {
        return Ok(None);
    }
    files.sort();
    let t = trace::Trace::open(dir)?;
    let mut last_seq = 0;
    let opts = trace::ReadOptions {
        columns: trace::Columns::NONE,
        ..Default::default()
    };
    for b in t.events(&opts)? {
        let b = b?;
        for ev in b.iter() {
            last_seq = last_seq.max(ev.seq);
        }
    }
    let addrs = sensor_protocols::pcap::AddressMap::from_manifest(t.manifest());
    // streamed file by file: captures can be much larger than memory
    let mut records = files
        .iter()
        .filter_map(|f| {
            let stem = f
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            sensor_protocols::pcap::PcapSummariser::open(f, &stem, addrs.clone()).ok()
        })
        .flatten()
        .peekable();
    if records.peek().is_none() {
        return Ok(None);
    }
    let n = trace::writer::spool_packets(dir, last_seq + 1, records)?;
    Ok(Some((files.len(), n)))
}
