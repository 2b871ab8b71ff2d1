//! Fleets of traces: expanding `check`'s inputs (trace directories, directories that contain
//! traces, globs, `--traces-from` lists, `s3://` prefixes) into a trace list, the deterministic
//! `--shard K/N` slice of it, judging the list on a pool of worker threads with the results
//! handed back in input order (and a progress bar when stderr is a terminal), and the summary
//! printed after the per-trace reports.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use monitor::Verdict;
use trace::time::format_rfc3339_nanos as fmt_ts;

pub use crate::error::one_line;
use crate::report::Judged;
pub use crate::s3::is_url;
use crate::{exit, Error};

/// `--shard K/N`: the K-th of N disjoint slices of the trace list (K counts from 0, as a
/// Kubernetes Indexed Job's `JOB_COMPLETION_INDEX` does). A trace belongs to the slice its path's
/// SHA-256 (first 8 bytes, big-endian, modulo N) names, so every machine agrees whatever order it
/// lists the traces in, and a trace added to the fleet lands in exactly one slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl std::str::FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Shard, String> {
        let bad = || format!("bad shard {s:?}: expected K/N with 0 <= K < N, e.g. 0/4");
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let index: u64 = k.trim().parse().map_err(|_| bad())?;
        let count: u64 = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl Shard {
    /// True when `trace` (as listed) belongs to this shard.
    pub fn keeps(&self, trace: &Path) -> bool {
        use sha2::Digest;
        let h = sha2::Sha256::digest(trace.to_string_lossy().as_bytes());
        let mut b = [0u8; 8];
        b.copy_from_slice(&h[..8]);
        u64::from_be_bytes(b) % self.count == self.index
    }
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Every trace directory under `dir` (a directory holding `manifest.json`), in path order; the
/// search does not descend into a trace.
fn find_traces(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), Error> {
    if dir.join(trace::files::MANIFEST).is_file() {
        out.push(dir.to_path_buf());
        return Ok(());
    }
    let rd = std::fs::read_dir(dir)
        .map_err(|e| Error::Runtime(format!("{}: cannot list directory: {e}", dir.display())))?;
    let mut subdirs: Vec<PathBuf> = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| {
            Error::Runtime(format!("{}: cannot list directory: {e}", dir.display()))
        })?;
        // symlinked directories are not followed (no cycles); name them to judge them
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            subdirs.push(entry.path());
        }
    }
    subdirs.sort();
    for d in subdirs {
        find_traces(&d, out)?;
    }
    Ok(())
}

/// Expands one input: a URL lists the traces under it, a glob its matches, a directory the traces
/// in it. An input that is none of these (a missing path, a directory with no trace) is kept as
/// it is, so judging reports it as unreadable.
fn expand_one(arg: &Path, out: &mut Vec<PathBuf>) -> Result<(), Error> {
    if is_url(arg) {
        let found = crate::s3::list_traces(&arg.to_string_lossy())?;
        if found.is_empty() {
            out.push(arg.to_path_buf());
        }
        out.extend(found.into_iter().map(PathBuf::from));
        return Ok(());
    }
    let s = arg.to_string_lossy();
    if !arg.exists() && has_glob(&s) {
        let paths = glob::glob(&s).map_err(|e| Error::Usage(format!("bad glob {s:?}: {e}")))?;
        let mut matched: Vec<PathBuf> = paths.filter_map(Result::ok).collect();
        matched.sort();
        if matched.is_empty() {
            out.push(arg.to_path_buf());
        }
        for m in matched {
            if m.is_dir() {
                expand_dir(&m, out)?;
            }
        }
        return Ok(());
    }
    if arg.is_dir() {
        return expand_dir(arg, out);
    }
    out.push(arg.to_path_buf());
    Ok(())
}

fn expand_dir(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), Error> {
    let before = out.len();
    find_traces(dir, out)?;
    if out.len() == before {
        // no trace inside: judging says why (`not a trace (no manifest.json)`)
        out.push(dir.to_path_buf());
    }
    Ok(())
}

/// Reads a `--traces-from` list: one path or URL a line; blank lines and `#` comments skipped;
/// `-` reads standard input.
pub fn read_list(path: &Path) -> Result<Vec<PathBuf>, Error> {
    let lines: Vec<String> = if path == Path::new("-") {
        std::io::stdin()
            .lock()
            .lines()
            .collect::<Result<_, _>>()
            .map_err(|e| Error::Runtime(format!("standard input: cannot read trace list: {e}")))?
    } else {
        std::fs::read_to_string(path)
            .map_err(|e| {
                Error::Runtime(format!("{}: cannot read trace list: {e}", path.display()))
            })?
            .lines()
            .map(str::to_string)
            .collect()
    };
    Ok(lines
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(PathBuf::from)
        .collect())
}

/// The trace list of `check`/`flaky`: every input expanded in order (duplicates dropped), then
/// the shard's slice of it.
pub fn trace_list(
    inputs: &[PathBuf],
    from: Option<&Path>,
    shard: Option<Shard>,
) -> Result<Vec<PathBuf>, Error> {
    let mut all: Vec<PathBuf> = inputs.to_vec();
    if let Some(f) = from {
        all.extend(read_list(f)?);
    }
    let mut out = Vec::new();
    for a in &all {
        expand_one(a, &mut out)?;
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|p| seen.insert(p.clone()));
    if let Some(s) = shard {
        out.retain(|p| s.keeps(p));
    }
    Ok(out)
}

/// Worker threads for `-j N` (0 or absent: every core).
pub fn jobs(j: Option<usize>) -> usize {
    match j {
        Some(n) if n > 0 => n,
        _ => std::thread::available_parallelism().map_or(1, |n| n.get()),
    }
}

/// Runs `f` on every item on `jobs` worker threads and returns the results in input order. Each
/// worker holds one trace at a time, so memory is `jobs` times one trace's. With `progress`
/// (and stderr a terminal), a progress bar counts the finished items on stderr.
pub fn par_map<I: Sync, T: Send>(
    items: &[I],
    jobs: usize,
    progress: bool,
    f: impl Fn(&I) -> T + Sync,
) -> Vec<T> {
    let bar = if progress && items.len() > 1 && std::io::stderr().is_terminal() {
        let b = indicatif::ProgressBar::new(items.len() as u64);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} traces  {elapsed} (eta {eta})",
        ) {
            b.set_style(style);
        }
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let next = AtomicUsize::new(0);
    let mut out: Vec<Option<T>> = (0..items.len()).map(|_| None).collect();
    let workers = jobs.clamp(1, items.len().max(1));
    std::thread::scope(|s| {
        let (tx, rx) = mpsc::channel::<(usize, T)>();
        for _ in 0..workers {
            let tx = tx.clone();
            let (next, f) = (&next, &f);
            s.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = items.get(i) else { break };
                if tx.send((i, f(item))).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        for (i, r) in rx {
            out[i] = Some(r);
            bar.inc(1);
        }
    });
    bar.finish_and_clear();
    out.into_iter().flatten().collect()
}

/// One judged input: its report, or why it could not be judged.
pub type Outcome = (PathBuf, Result<Judged, Error>);

/// The exit code of a fleet: fail (1) wins, then an unreadable trace (4, or 5 for another
/// error), then inconclusive (2), else 0. A fail is a finding about the system and is reported
/// whatever else happened; a trace that could not be read makes the fleet's accept incomplete,
/// which matters more than an undecided monitor.
pub fn exit_code(results: &[Outcome]) -> i32 {
    let verdict = Verdict::combine(
        results
            .iter()
            .filter_map(|(_, r)| r.as_ref().ok())
            .map(|j| j.report.verdict),
    );
    if verdict == Verdict::Fail {
        return exit::FAIL;
    }
    if let Some(code) = results
        .iter()
        .filter_map(|(_, r)| r.as_ref().err())
        .map(|e| e.exit_code())
        .max()
    {
        return code;
    }
    match verdict {
        Verdict::Accept => exit::OK,
        Verdict::Inconclusive => exit::INCONCLUSIVE,
        Verdict::Fail => exit::FAIL,
    }
}

/// The one-line reason a judged trace failed: the first failing monitor or experiment step, and
/// its deciding event (`+offset seq source service kind excerpt`) or reason.
pub fn failure_line(j: &Judged) -> Option<String> {
    let event = |e: &monitor::Explanation| match &e.deciding_event {
        Some(d) => format!(
            "{}: {}",
            e.reason,
            crate::report::text::event_line(d, j.origin_ns)
        ),
        None => e.reason.clone(),
    };
    for m in &j.report.monitors {
        if m.verdict == Verdict::Fail {
            let why = m
                .primary_explanation()
                .map(event)
                .unwrap_or_else(|| "failed".into());
            return Some(format!("monitor {}: {why}", m.name));
        }
    }
    for x in &j.report.experiments {
        if x.verdict != Verdict::Fail {
            continue;
        }
        for s in &x.steps {
            if s.verdict == Some(Verdict::Fail) {
                let why = s
                    .monitor
                    .as_ref()
                    .and_then(|m| m.primary_explanation())
                    .map(event)
                    .or_else(|| s.reason.clone())
                    .unwrap_or_else(|| "failed".into());
                return Some(format!(
                    "experiment {} step {} `{}`: {why}",
                    x.name,
                    s.index + 1,
                    s.text
                ));
            }
        }
        return Some(format!(
            "experiment {}: {}",
            x.name,
            x.reason.as_deref().unwrap_or("failed")
        ));
    }
    None
}

/// Counts of a fleet's results.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    pub traces: usize,
    /// Monitors and experiments judged per trace.
    pub judged_per_trace: usize,
    pub accept: usize,
    pub fail: usize,
    pub inconclusive: usize,
    pub unreadable: usize,
}

impl Summary {
    pub fn of(results: &[Outcome]) -> Summary {
        let mut s = Summary {
            traces: results.len(),
            ..Default::default()
        };
        for (_, r) in results {
            match r {
                Ok(j) => {
                    let vs: Vec<Verdict> = j
                        .report
                        .monitors
                        .iter()
                        .map(|m| m.verdict)
                        .chain(j.report.experiments.iter().map(|x| x.verdict))
                        .collect();
                    s.judged_per_trace = s.judged_per_trace.max(vs.len());
                    for v in vs {
                        match v {
                            Verdict::Accept => s.accept += 1,
                            Verdict::Fail => s.fail += 1,
                            Verdict::Inconclusive => s.inconclusive += 1,
                        }
                    }
                }
                Err(_) => s.unreadable += 1,
            }
        }
        s
    }
}

/// The text summary after the per-trace reports: counts, the failing traces with the event that
/// decided, the unreadable traces with why, and the fleet's verdict.
pub fn write_summary(
    w: &mut dyn Write,
    results: &[Outcome],
    elapsed: std::time::Duration,
    jobs: usize,
) -> std::io::Result<()> {
    let s = Summary::of(results);
    let events: u64 = results
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .map(|j| j.report.events)
        .sum();
    writeln!(
        w,
        "summary: {} trace(s) x {} monitor(s)/experiment(s): {} accept, {} fail, {} inconclusive; {} unreadable ({} events in {:.2}s, -j {jobs})",
        s.traces,
        s.judged_per_trace,
        s.accept,
        s.fail,
        s.inconclusive,
        s.unreadable,
        events,
        elapsed.as_secs_f64()
    )?;
    let failing: Vec<(&PathBuf, String)> = results
        .iter()
        .filter_map(|(p, r)| r.as_ref().ok().and_then(failure_line).map(|l| (p, l)))
        .collect();
    if !failing.is_empty() {
        writeln!(w, "failing traces:")?;
        for (p, l) in failing {
            writeln!(w, "  {}  {l}", p.display())?;
        }
    }
    let bad: Vec<(&PathBuf, &Error)> = results
        .iter()
        .filter_map(|(p, r)| r.as_ref().err().map(|e| (p, e)))
        .collect();
    if !bad.is_empty() {
        writeln!(w, "unreadable traces:")?;
        for (p, e) in bad {
            writeln!(w, "  {}: {}", p.display(), one_line(&e.to_string()))?;
        }
    }
    let word = match exit_code(results) {
        exit::OK => "accept",
        exit::FAIL => "fail",
        exit::INCONCLUSIVE => "inconclusive",
        _ => "unreadable",
    };
    writeln!(w, "verdict: {word}")
}

/// `YYYY-MM-DDTHH:MM:SSZ` of a manifest time, for listings.
pub fn when(ns: Option<i64>) -> String {
    ns.map(fmt_ts).unwrap_or_else(|| "-".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_the_list_whatever_its_order() {
        let list: Vec<PathBuf> = (0..200)
            .map(|i| PathBuf::from(format!("t/run-{i}")))
            .collect();
        let shards: Vec<Shard> = (0..3).map(|k| format!("{k}/3").parse().unwrap()).collect();
        let mut counts = [0usize; 3];
        for p in &list {
            let owners: Vec<usize> = (0..3).filter(|&k| shards[k].keeps(p)).collect();
            assert_eq!(owners.len(), 1, "{p:?} in {owners:?}");
            counts[owners[0]] += 1;
        }
        // about a third each
        assert!(counts.iter().all(|&c| (40..=95).contains(&c)), "{counts:?}");
        assert!("3/3".parse::<Shard>().is_err());
        assert!("1/0".parse::<Shard>().is_err());
        assert!("x".parse::<Shard>().is_err());
    }

    #[test]
    fn par_map_keeps_input_order() {
        let items: Vec<u64> = (0..50).collect();
        let out = par_map(&items, 4, false, |&i| {
            // later items finish first
            std::thread::sleep(std::time::Duration::from_millis(50 - i));
            i * 2
        });
        assert_eq!(out, items.iter().map(|i| i * 2).collect::<Vec<_>>());
    }

    #[test]
    fn directories_are_searched_for_traces_by_their_manifest() {
        let d = tempfile::tempdir().unwrap();
        for t in ["b/run-2", "a/run-1", "a/run-1/nested-not-searched", "c"] {
            std::fs::create_dir_all(d.path().join(t)).unwrap();
        }
        for t in ["b/run-2", "a/run-1", "a/run-1/nested-not-searched"] {
            std::fs::write(d.path().join(t).join("manifest.json"), "{}").unwrap();
        }
        let got = trace_list(&[d.path().to_path_buf()], None, None).unwrap();
        assert_eq!(
            got,
            vec![d.path().join("a/run-1"), d.path().join("b/run-2")]
        );
        // a glob, a list file with a comment, duplicates dropped, a missing path kept
        let list = d.path().join("list.txt");
        std::fs::write(
            &list,
            format!(
                "# fleet\n{}\n\n/nonexistent/x\n",
                d.path().join("b/run-2").display()
            ),
        )
        .unwrap();
        let glob = d.path().join("*/run-*");
        let got = trace_list(&[glob], Some(&list), None).unwrap();
        assert_eq!(
            got,
            vec![
                d.path().join("a/run-1"),
                d.path().join("b/run-2"),
                PathBuf::from("/nonexistent/x")
            ]
        );
        // a directory with no trace is kept, to be reported
        let got = trace_list(&[d.path().join("c")], None, None).unwrap();
        assert_eq!(got, vec![d.path().join("c")]);
    }
}
