//! Traces on object storage: `analyzer check`/`diff` on `s3://` URLs against a real S3-protocol
//! server (moto, started on 127.0.0.1 by the test, killed after), the same verdicts as from local
//! directories, Parquet read with range requests (the server's log shows only 206 answers for
//! `events.parquet`) and few of them (the requests per trace counted in the server's log), and
//! clear errors for a missing trace and for refused credentials (a second server that enforces
//! authentication).
//!
//! Needs `moto_server` (`pip install 'moto[server]'`, done by scripts/setup.sh) and boto3 (a moto
//! dependency). Without it the tests print a note and pass, unless REQUIRE_S3=1 or CI is set.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    integration_tests::workspace_root()
}

fn p(rel: &str) -> String {
    root().join(rel).to_string_lossy().into_owned()
}

fn moto_available() -> bool {
    let ok = Command::new("moto_server")
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let required = std::env::var_os("REQUIRE_S3").is_some() || std::env::var_os("CI").is_some();
        assert!(
            !required,
            "moto_server is not installed (scripts/setup.sh installs it)"
        );
        eprintln!("note: moto_server not installed; skipping the S3 test");
    }
    ok
}

/// A moto server on a free loopback port, killed (by its own pid) when dropped.
struct Moto {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Moto {
    fn start(enforce_auth: bool) -> Moto {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("moto.log");
        let mut cmd = Command::new("moto_server");
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::fs::File::create(dir.path().join("moto.out")).unwrap())
            .stderr(std::fs::File::create(&log).unwrap());
        if enforce_auth {
            // every request must be signed by a key moto's IAM knows: there is none
            cmd.env("INITIAL_NO_AUTH_ACTION_COUNT", "0");
        }
        let child = cmd.spawn().expect("moto_server starts");
        let m = Moto {
            child,
            port,
            log,
            _dir: dir,
        };
        let t0 = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "moto_server did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        m
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The server's request log.
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Creates `bucket` and uploads each local trace directory under its key prefix, with boto3.
fn upload(m: &Moto, bucket: &str, traces: &[(&str, &Path)]) {
    let pairs: Vec<String> = traces
        .iter()
        .map(|(k, d)| format!("({k:?}, {:?})", d.to_string_lossy()))
        .collect();
    let script = format!(
        r#"
import os, boto3
s3 = boto3.client("s3", endpoint_url={ep:?}, region_name="us-east-1",
                  aws_access_key_id="test", aws_secret_access_key="test")
s3.create_bucket(Bucket={bucket:?})
for prefix, d in [{pairs}]:
    for base, _, files in os.walk(d):
        for f in files:
            path = os.path.join(base, f)
            key = prefix + "/" + os.path.relpath(path, d)
            s3.upload_file(path, {bucket:?}, key)
"#,
        ep = m.endpoint(),
        pairs = pairs.join(", ")
    );
    let o = Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("python3 runs");
    assert!(
        o.status.success(),
        "upload failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn analyzer(m: &Moto, key_id: &str, args: &[&str]) -> Output {
    Command::new(integration_tests::bin("analyzer"))
        .args(args)
        .env("AWS_ACCESS_KEY_ID", key_id)
        .env("AWS_SECRET_ACCESS_KEY", "test-secret")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", m.endpoint())
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .output()
        .expect("analyzer runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Is the server up and answering HTTP at all (a plain GET of `/`)?
fn answers(m: &Moto) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", m.port)) else {
        return false;
    };
    let _ = s.write_all(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    let mut buf = [0u8; 12];
    s.read(&mut buf).is_ok_and(|n| n > 0)
}

#[test]
fn s3_traces_are_judged_like_local_ones_with_range_reads() {
    if !moto_available() {
        return;
    }
    let m = Moto::start(false);
    assert!(answers(&m));
    let (pass, fail) = (
        root().join("traces/sample-split-brain"),
        root().join("traces/sample-split-brain-fail"),
    );
    upload(&m, "fleet", &[("runs/pass", &pass), ("runs/fail", &fail)]);
    let (a, s) = (p("specs/akka.spec"), p("specs/split-brain.spec"));
    let spec = ["--spec", a.as_str(), "--spec", s.as_str()];
    let mut args = vec![
        "check",
        "s3://fleet/runs/",
        "--experiment",
        "AutoDownSplitBrain",
    ];
    args.extend_from_slice(&spec);
    let o = analyzer(&m, "test", &args);
    let remote = text(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{remote}{}", text(&o.stderr));
    // the same report as from the local directories, but for the names
    let mut args = vec![
        "check",
        fail.to_str().unwrap(),
        pass.to_str().unwrap(),
        "--experiment",
        "AutoDownSplitBrain",
    ];
    args.extend_from_slice(&spec);
    let local = text(&analyzer(&m, "test", &args).stdout);
    let norm = |s: &str| {
        s.replace("s3://fleet/runs/fail", "FAIL")
            .replace("s3://fleet/runs/pass", "PASS")
            .replace(fail.to_str().unwrap(), "FAIL")
            .replace(pass.to_str().unwrap(), "PASS")
            .lines()
            .filter(|l| !l.starts_with("summary:"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(norm(&remote), norm(&local));
    assert!(
        remote.contains("trace s3://fleet/runs/fail (474 events"),
        "{remote}"
    );
    // events.parquet was read with range requests, never downloaded whole
    let log = m.log();
    let parquet_gets: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("GET /fleet/runs/") && l.contains("events.parquet"))
        .collect();
    assert!(!parquet_gets.is_empty(), "{log}");
    assert!(
        parquet_gets.iter().all(|l| l.contains("\" 206 ")),
        "{}",
        parquet_gets.join("\n")
    );
    // diff works on URLs too
    let mut args = vec!["diff", "s3://fleet/runs/pass", "s3://fleet/runs/fail"];
    args.extend_from_slice(&spec);
    let o = analyzer(&m, "test", &args);
    let d = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{d}{}", text(&o.stderr));
    assert!(d.contains("Leader is auto-downing unreachable node"), "{d}");
    // a prefix with no trace: reported with the URL, exit 4
    let mut args = vec!["check", "s3://fleet/nothing-here/"];
    args.extend_from_slice(&spec);
    let o = analyzer(&m, "test", &args);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o.stdout));
    assert!(
        text(&o.stderr).contains("error: s3://fleet/nothing-here: not a trace (no manifest.json)"),
        "{}",
        text(&o.stderr)
    );
}

/// The server's request lines reading objects under `s3://fleet/{prefix}/` (GET and HEAD; the
/// upload's PUTs left out).
fn requests_under<'a>(log: &'a str, prefix: &str) -> Vec<&'a str> {
    let get = format!("\"GET /fleet/{prefix}/");
    let head = format!("\"HEAD /fleet/{prefix}/");
    log.lines()
        .filter(|l| l.contains(&get) || l.contains(&head))
        .collect()
}

#[test]
fn s3_traces_are_read_with_few_requests() {
    if !moto_available() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    // a fleet-sized trace (100,000 events, about 1.5 MB of events.parquet: several row groups)
    let big = d.path().join("big");
    let o = Command::new(integration_tests::bin("analyzer"))
        .args([
            "generate",
            big.to_str().unwrap(),
            "--scenario",
            "split-brain",
        ])
        .args(["--auto-down", "10", "--experiment", "AutoDownSplitBrain"])
        .args(["--events", "100000", "--duration", "70", "--seed", "1"])
        .output()
        .expect("analyzer generate runs");
    assert!(o.status.success(), "{}", text(&o.stderr));
    let size = std::fs::metadata(big.join("events.parquet")).unwrap().len();
    assert!(size > 1_000_000, "events.parquet is {size} bytes");
    let m = Moto::start(false);
    let small = root().join("traces/sample-split-brain");
    upload(&m, "fleet", &[("big", &big), ("small", &small)]);
    let (a, s) = (p("specs/akka.spec"), p("specs/split-brain.spec"));
    let check = |url: &str| {
        let o = analyzer(
            &m,
            "test",
            &[
                "check",
                url,
                "--spec",
                &a,
                "--spec",
                &s,
                "--experiment",
                "AutoDownSplitBrain",
            ],
        );
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}{}",
            text(&o.stdout),
            text(&o.stderr)
        );
    };
    check("s3://fleet/big");
    let log = m.log();
    let big_reqs = requests_under(&log, "big");
    // the manifest, each Parquet file's tail, the coalesced column chunks, the re-reads of the
    // shown events: a handful (about 580 before spans were planned and coalesced)
    assert!(
        (3..=10).contains(&big_reqs.len()),
        "{} requests:\n{}",
        big_reqs.len(),
        big_reqs.join("\n")
    );
    // the large events.parquet was still read in ranges, never whole
    let parquet: Vec<&&str> = big_reqs
        .iter()
        .filter(|l| l.contains("events.parquet"))
        .collect();
    assert!(!parquet.is_empty());
    assert!(
        parquet.iter().all(|l| l.contains("\" 206 ")),
        "{}",
        big_reqs.join("\n")
    );
    // a small trace: the manifest and one request per Parquet file, each read whole
    check("s3://fleet/small");
    let log = m.log();
    let small_reqs = requests_under(&log, "small");
    assert!(
        small_reqs.len() <= 3,
        "{} requests:\n{}",
        small_reqs.len(),
        small_reqs.join("\n")
    );
}

#[test]
fn refused_credentials_give_a_clear_error() {
    if !moto_available() {
        return;
    }
    let m = Moto::start(true);
    let (a, s) = (p("specs/akka.spec"), p("specs/split-brain.spec"));
    let o = analyzer(
        &m,
        "AKIANOTAREALKEY00000",
        &["check", "s3://fleet/runs/", "--spec", &a, "--spec", &s],
    );
    let e = text(&o.stderr);
    assert_eq!(o.status.code(), Some(4), "{e}{}", text(&o.stdout));
    assert!(
        e.starts_with(
            "error: s3://fleet/runs/: cannot list: access denied (check AWS_ACCESS_KEY_ID"
        ),
        "{e}"
    );
    assert_eq!(e.lines().count(), 1, "{e}");
}
