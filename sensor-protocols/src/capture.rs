//! Packet capture processes: runs `tcpdump -w FILE -U` either inside a process's network
//! namespace (`nsenter -t PID -n`, so container images need no tools or capabilities) or on a
//! host interface (a compose network's bridge), waits until it listens, stops it cleanly with
//! SIGINT and parses its closing statistics (packets captured, received by filter, dropped by
//! kernel / interface). A capture that cannot start is an `Err` the caller turns into an error
//! event; nothing here panics on tcpdump's output.
//!
//! Which container or bridge to capture on is resolved by the recorder's pcap sensor.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Where to capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaptureTarget {
    /// Inside the network namespace of process `pid` (a container's init), on `interface`
    /// (`any` for every interface of the namespace, or e.g. `eth0`).
    Netns { pid: u32, interface: String },
    /// On a host interface, e.g. a compose network's bridge `br-1a2b3c4d5e6f`.
    HostInterface(String),
}

/// How to run tcpdump.
#[derive(Debug, Clone)]
pub struct CaptureSpec {
    pub target: CaptureTarget,
    /// The pcap file to write.
    pub file: PathBuf,
    /// Snap length (`-s`); `None` keeps tcpdump's default (whole packets).
    pub snaplen: Option<u32>,
    /// Capture buffer size in KiB (`-B`); `None` keeps tcpdump's default (2 MiB on Linux).
    /// A bigger buffer lets bursts through that would otherwise be "dropped by kernel".
    pub buffer_kib: Option<u32>,
    /// A BPF filter expression, if any.
    pub filter: Option<String>,
    /// Programs to run (default `tcpdump` and `nsenter` from `PATH`).
    pub tcpdump: PathBuf,
    pub nsenter: PathBuf,
    /// How long to wait for tcpdump to report it is listening.
    pub start_timeout: Duration,
    /// How long `stop` waits before SIGINT so that packets still in libpcap's ring buffer
    /// (handed over when a block fills or its 1 s timeout expires) reach the file.
    pub flush_wait: Duration,
}

impl CaptureSpec {
    pub fn new(target: CaptureTarget, file: impl Into<PathBuf>) -> CaptureSpec {
        CaptureSpec {
            target,
            file: file.into(),
            snaplen: None,
            buffer_kib: None,
            filter: None,
            tcpdump: PathBuf::from("tcpdump"),
            nsenter: PathBuf::from("nsenter"),
            start_timeout: Duration::from_secs(5),
            flush_wait: Duration::from_millis(1200),
        }
    }

    /// The program and arguments this spec runs.
    pub fn command_line(&self) -> Vec<String> {
        let mut v = Vec::new();
        let iface = match &self.target {
            CaptureTarget::Netns { pid, interface } => {
                v.push(self.nsenter.display().to_string());
                v.extend(["-t".to_string(), pid.to_string(), "-n".to_string()]);
                interface.clone()
            }
            CaptureTarget::HostInterface(i) => i.clone(),
        };
        v.push(self.tcpdump.display().to_string());
        // -n: no name resolution; -U: flush per packet (a killed recorder keeps what was seen);
        // -Z root: do not drop privileges before opening the file (Debian builds would).
        // Not --immediate-mode: on this project's kernels it shrinks the ring so much that a
        // burst of a few hundred packets is mostly dropped (measured: 16 captured, 368 dropped);
        // instead `stop` waits for the ring's block timeout before sending SIGINT.
        v.extend(["-n", "-U", "-Z", "root", "-i"].map(String::from));
        v.push(iface);
        if let Some(s) = self.snaplen {
            v.extend(["-s".to_string(), s.to_string()]);
        }
        if let Some(b) = self.buffer_kib {
            v.extend(["-B".to_string(), b.to_string()]);
        }
        v.extend(["-w".to_string(), self.file.display().to_string()]);
        if let Some(f) = &self.filter {
            v.push(f.clone());
        }
        v
    }
}

/// Why a capture failed.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("tcpdump exited before listening (status {status}): {stderr}")]
    EarlyExit { status: String, stderr: String },
    #[error("tcpdump did not report listening within {0:?}")]
    StartTimeout(Duration),
    #[error("waiting for tcpdump failed: {0}")]
    Wait(std::io::Error),
}

/// tcpdump's closing statistics.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CaptureStats {
    pub captured: Option<u64>,
    pub received_by_filter: Option<u64>,
    pub dropped_by_kernel: Option<u64>,
    pub dropped_by_interface: Option<u64>,
    /// The `listening on …` line (interface, link type, snap length).
    pub listening: Option<String>,
    /// How tcpdump exited (`exit status: 0`, `signal: 9` …).
    pub exit: String,
}

/// Parses tcpdump's stderr (the `listening on` line and the closing counters).
pub fn parse_tcpdump_stderr(stderr: &str) -> CaptureStats {
    let mut s = CaptureStats::default();
    for line in stderr.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("tcpdump: ") {
            if rest.starts_with("listening on") {
                s.listening = Some(rest.to_string());
            }
            continue;
        }
        let mut parts = line.splitn(2, ' ');
        let (Some(n), Some(what)) = (parts.next(), parts.next()) else {
            continue;
        };
        let Ok(n) = n.parse::<u64>() else { continue };
        let what = what
            .trim_start_matches("packets ")
            .trim_start_matches("packet ");
        match what {
            "captured" => s.captured = Some(n),
            "received by filter" => s.received_by_filter = Some(n),
            "dropped by kernel" => s.dropped_by_kernel = Some(n),
            "dropped by interface" => s.dropped_by_interface = Some(n),
            _ => {}
        }
    }
    s
}

/// A running tcpdump.
#[derive(Debug)]
pub struct RunningCapture {
    child: Child,
    file: PathBuf,
    stderr_task: JoinHandle<String>,
    flush_wait: Duration,
}

impl RunningCapture {
    /// Starts tcpdump and waits until it reports listening (or fails).
    pub async fn start(spec: &CaptureSpec) -> Result<RunningCapture, CaptureError> {
        let argv = spec.command_line();
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| CaptureError::Spawn {
            program: argv[0].clone(),
            source: e,
        })?;
        let Some(stderr) = child.stderr.take() else {
            return Err(CaptureError::Spawn {
                program: argv[0].clone(),
                source: std::io::Error::other("no stderr pipe"),
            });
        };
        let (tx, mut rx) = watch::channel(false);
        let stderr_task = tokio::spawn(async move {
            let mut all = String::new();
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("listening on") {
                    let _ = tx.send(true);
                }
                if all.len() < 64 * 1024 {
                    all.push_str(&line);
                    all.push('\n');
                }
            }
            all
        });
        let listening = async {
            while !*rx.borrow() {
                if rx.changed().await.is_err() {
                    return false; // stderr closed: tcpdump exited
                }
            }
            true
        };
        match tokio::time::timeout(spec.start_timeout, listening).await {
            Ok(true) => Ok(RunningCapture {
                child,
                file: spec.file.clone(),
                stderr_task,
                flush_wait: spec.flush_wait,
            }),
            Ok(false) => {
                let status = child
                    .wait()
                    .await
                    .map(|s| s.to_string())
                    .unwrap_or_else(|e| e.to_string());
                let stderr = stderr_task.await.unwrap_or_default();
                Err(CaptureError::EarlyExit {
                    status,
                    stderr: stderr.trim().to_string(),
                })
            }
            Err(_) => {
                let _ = child.kill().await;
                Err(CaptureError::StartTimeout(spec.start_timeout))
            }
        }
    }

    /// The file being written.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// True once tcpdump has exited on its own (interface gone, container stopped …).
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Process id of tcpdump (or of nsenter, which execs tcpdump in place).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Stops tcpdump: waits `flush_wait` (packets still in the ring reach the file), sends
    /// SIGINT (tcpdump then closes the file and prints its statistics), and kills it if it has
    /// not exited after `grace`.
    pub async fn stop(mut self, grace: Duration) -> Result<CaptureStats, CaptureError> {
        if let Ok(Some(status)) = self.child.try_wait() {
            let stderr = self.stderr_task.await.unwrap_or_default();
            let mut stats = parse_tcpdump_stderr(&stderr);
            stats.exit = status.to_string();
            return Ok(stats);
        }
        tokio::time::sleep(self.flush_wait).await;
        if let Some(pid) = self.child.id() {
            // SAFETY: kill(2) on the pid of our own child process, which has not been reaped
            // (we still hold the Child), so the pid cannot have been reused.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGINT);
            }
        }
        let status = match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(r) => r.map_err(CaptureError::Wait)?,
            Err(_) => {
                let _ = self.child.kill().await;
                self.child.wait().await.map_err(CaptureError::Wait)?
            }
        };
        let stderr = self.stderr_task.await.unwrap_or_default();
        let mut stats = parse_tcpdump_stderr(&stderr);
        stats.exit = status.to_string();
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_parsing() {
        let err = "tcpdump: listening on any, link-type LINUX_SLL2 (Linux cooked v2), snapshot length 262144 bytes\n\
                   ^C12 packets captured\n14 packets received by filter\n2 packets dropped by kernel\n";
        let s = parse_tcpdump_stderr(err);
        assert_eq!(s.received_by_filter, Some(14));
        assert_eq!(s.dropped_by_kernel, Some(2));
        assert_eq!(s.dropped_by_interface, None);
        assert!(s.listening.as_deref().unwrap().contains("LINUX_SLL2"));
        // "^C" glued to the first counter by the terminal is not there in a pipe; without it:
        let s = parse_tcpdump_stderr("1 packet captured\n1 packet received by filter\n0 packets dropped by kernel\n0 packets dropped by interface\n");
        assert_eq!(
            (s.captured, s.dropped_by_kernel, s.dropped_by_interface),
            (Some(1), Some(0), Some(0))
        );
        assert_eq!(
            parse_tcpdump_stderr("garbage\n\u{0}\nx y z"),
            CaptureStats::default()
        );
    }

    #[test]
    fn command_lines() {
        let spec = CaptureSpec::new(
            CaptureTarget::Netns {
                pid: 42,
                interface: "any".into(),
            },
            "/t/pcap/a.pcap",
        );
        assert_eq!(
            spec.command_line().join(" "),
            "nsenter -t 42 -n tcpdump -n -U -Z root -i any -w /t/pcap/a.pcap"
        );
        let mut spec = CaptureSpec::new(CaptureTarget::HostInterface("br-1".into()), "/x.pcap");
        spec.filter = Some("tcp".into());
        spec.snaplen = Some(128);
        assert_eq!(
            spec.command_line().join(" "),
            "tcpdump -n -U -Z root -i br-1 -s 128 -w /x.pcap tcp"
        );
        spec.buffer_kib = Some(8192);
        let argv = spec.command_line();
        let b = argv.iter().position(|a| a == "-B").expect("-B present");
        assert_eq!(argv[b + 1], "8192");
        assert_eq!(
            argv.join(" "),
            "tcpdump -n -U -Z root -i br-1 -s 128 -B 8192 -w /x.pcap tcp"
        );
    }

    #[tokio::test]
    async fn a_capture_that_cannot_start_is_an_error() {
        let mut spec = CaptureSpec::new(
            CaptureTarget::HostInterface("lo".into()),
            "/nonexistent-dir/x.pcap",
        );
        spec.tcpdump = PathBuf::from("/nonexistent/tcpdump");
        assert!(matches!(
            RunningCapture::start(&spec).await,
            Err(CaptureError::Spawn { .. })
        ));
        if which("tcpdump") {
            let spec = CaptureSpec::new(
                CaptureTarget::HostInterface("no-such-iface0".into()),
                std::env::temp_dir().join("never.pcap"),
            );
            let r = RunningCapture::start(&spec).await;
            assert!(matches!(r, Err(CaptureError::EarlyExit { .. })), "{r:?}");
        }
    }

    fn which(p: &str) -> bool {
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(p).is_file()))
    }
}
