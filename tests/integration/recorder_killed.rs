//! A recorder killed with SIGKILL while capturing packets: its tcpdump keeps writing until
//! `recorder cleanup` stops it, and `analyzer finalize` then builds `packets.parquet` from the
//! pcap files it left (real Docker, real tcpdump).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use integration_tests::{
    bin, ensure_images, project_containers, require_docker, unique_project, ProjectGuard,
};

use crate::recorder_common::{peer_compose, write_scenario};

/// Pids of the tcpdump processes writing a file under `dir`.
fn tcpdumps_writing_into(dir: &Path) -> Vec<i32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            // a zombie has no command line
            let argv: Vec<String> = cmd
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            argv.first().is_some_and(|a| a.ends_with("tcpdump"))
                && argv
                    .windows(2)
                    .any(|w| w[0] == "-w" && Path::new(&w[1]).starts_with(dir))
        })
        .collect()
}

fn pcap_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "pcap"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn cleanup_stops_a_killed_recorders_tcpdump_and_finalize_builds_its_packets() {
    require_docker!();
    if !Path::new("/usr/bin/tcpdump").exists() && !Path::new("/usr/sbin/tcpdump").exists() {
        eprintln!("note: tcpdump missing; test skipped");
        return;
    }
    ensure_images();
    let project = unique_project("killedpcap");
    let _guard = ProjectGuard::new(&project);
    let (dir, scenario) = write_scenario(
        &project,
        &peer_compose(10, 50),
        "time_limit = \"120s\"\nduration = \"90s\"",
        "[sensors]\nstats = false\n\n[sensors.pcap]\nservices = [\"a\"]\n",
    );
    let trace = dir.path().join("trace");
    let pcap = trace.join("pcap");
    let mut child = Command::new(bin("recorder"))
        .args(["run", "--quiet"])
        .arg(&scenario)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start recorder");
    // wait until the capture has packets in its file
    let deadline = Instant::now() + Duration::from_secs(60);
    let captured = loop {
        let big = pcap_files(&pcap)
            .iter()
            .any(|f| std::fs::metadata(f).is_ok_and(|m| m.len() > 2000));
        if big || Instant::now() > deadline {
            break big;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    child.kill().expect("SIGKILL the recorder");
    child.wait().expect("reap the recorder");
    assert!(captured, "no packets captured into {}", pcap.display());
    // the recorder is gone; its tcpdump is still writing
    let left = tcpdumps_writing_into(&trace);
    assert!(
        !left.is_empty(),
        "no tcpdump left writing into {}",
        trace.display()
    );
    let out = Command::new(bin("recorder"))
        .args(["cleanup", "--project", &project])
        .output()
        .expect("recorder cleanup");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for pid in &left {
        assert!(
            stdout.contains(&format!("stopped tcpdump (pid {pid}) left writing ")),
            "{stdout}"
        );
    }
    assert!(tcpdumps_writing_into(&trace).is_empty(), "{stdout}");
    assert!(project_containers(&project).is_empty(), "{stdout}");
    // the trace is unfinalized and has no packets until finalize summarises the pcap files
    let analyzer = bin("analyzer");
    let count = || {
        let o = Command::new(&analyzer)
            .arg("events")
            .arg(&trace)
            .args(["--source", "packet", "--count"])
            .output()
            .expect("analyzer events");
        String::from_utf8_lossy(&o.stdout)
            .trim()
            .parse::<u64>()
            .unwrap_or_else(|e| panic!("count: {e}: {o:?}"))
    };
    assert_eq!(count(), 0);
    let o = Command::new(&analyzer)
        .arg("finalize")
        .arg(&trace)
        .output()
        .expect("analyzer finalize");
    let fin = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{fin}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(fin.contains("packets summarised from 1 pcap file"), "{fin}");
    assert!(count() > 10, "{fin}");
}
