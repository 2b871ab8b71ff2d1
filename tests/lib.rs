//! Shared helpers for the integration tests: locating the built binaries, Docker availability
//! (`REQUIRE_DOCKER`), building the project's images once per test run, unique compose project
//! names, and guards that tear compose projects down even when a test panics.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The directory holding the built binaries of this profile (`target/debug`), found from the
/// running test executable (`target/debug/deps/integration-…`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

/// Path to a workspace binary (`analyzer`, `recorder`), building it first if it is missing.
///
/// `cargo test` does not build binaries of other packages, so the first call runs
/// `cargo build -p <package>` once per process.
pub fn bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", "analyzer", "-p", "recorder"])
            .current_dir(workspace_root())
            .status();
        assert!(
            matches!(status, Ok(s) if s.success()),
            "building the analyzer and recorder binaries failed: {status:?}"
        );
    });
    bin_dir().join(name)
}

/// Runs a binary with arguments and returns its output (never panics on a non-zero exit).
pub fn run(bin_path: &Path, args: &[&str]) -> Output {
    Command::new(bin_path)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin_path.display()))
}

/// Whether Docker tests should run. With `REQUIRE_DOCKER=1` a missing engine is a test failure;
/// without it, Docker tests print a note and return early.
pub fn docker_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    let ok = *AVAILABLE.get_or_init(|| {
        Command::new("docker")
            .args(["version", "--format", "{{.Server.Version}}"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    });
    if !ok && std::env::var("REQUIRE_DOCKER").as_deref() == Ok("1") {
        panic!("REQUIRE_DOCKER=1 but no Docker engine answers `docker version`");
    }
    if !ok {
        eprintln!(
            "note: no Docker engine; skipping a Docker test (set REQUIRE_DOCKER=1 to fail instead)"
        );
    }
    ok
}

/// Skips the calling test (returns early) when Docker is not available and not required.
#[macro_export]
macro_rules! require_docker {
    () => {
        if !$crate::docker_available() {
            return;
        }
    };
}

/// The image every Docker test uses: the project's demo node, built FROM scratch.
pub const DEMO_IMAGE: &str = "chaos-demo-node:latest";

/// Builds the project's images once per test process (`scripts/build-images.sh`).
pub fn ensure_images() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let script = workspace_root().join("scripts/build-images.sh");
        let status = Command::new("bash")
            .arg(&script)
            .current_dir(workspace_root())
            .status();
        assert!(
            matches!(status, Ok(s) if s.success()),
            "{} failed: {status:?}",
            script.display()
        );
    });
}

/// A compose project name unique to this test and run: `ctkt<tag><pid><nanos>`, lowercase.
pub fn unique_project(tag: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let tag: String = tag
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    format!("ctkt{tag}{}{nanos:x}", std::process::id())
}

/// The compose command on this machine: `docker compose` (v2) if present, else `docker-compose`.
pub fn compose_command() -> Vec<String> {
    let v2 = Command::new("docker")
        .args(["compose", "version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if v2 {
        vec!["docker".into(), "compose".into()]
    } else {
        vec!["docker-compose".into()]
    }
}

/// Tears a compose project down when dropped (also on panic): removes its containers, networks
/// and volumes by project label, so a failing test leaves nothing behind.
pub struct ProjectGuard {
    pub project: String,
}

impl ProjectGuard {
    pub fn new(project: impl Into<String>) -> ProjectGuard {
        ProjectGuard {
            project: project.into(),
        }
    }
}

impl Drop for ProjectGuard {
    fn drop(&mut self) {
        remove_project(&self.project);
    }
}

/// Removes every container and network carrying the compose project label `project`.
pub fn remove_project(project: &str) {
    let label = format!("label=com.docker.compose.project={project}");
    if let Ok(out) = Command::new("docker")
        .args(["ps", "-aq", "--filter", &label])
        .output()
    {
        let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect();
        if !ids.is_empty() {
            let _ = Command::new("docker")
                .args(["rm", "-fv"])
                .args(&ids)
                .output();
        }
    }
    if let Ok(out) = Command::new("docker")
        .args(["network", "ls", "-q", "--filter", &label])
        .output()
    {
        for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = Command::new("docker").args(["network", "rm", id]).output();
        }
    }
}

/// Containers (ids) still carrying the project label.
pub fn project_containers(project: &str) -> Vec<String> {
    let label = format!("label=com.docker.compose.project={project}");
    Command::new("docker")
        .args(["ps", "-aq", "--filter", &label])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Networks (ids) still carrying the project label.
pub fn project_networks(project: &str) -> Vec<String> {
    let label = format!("label=com.docker.compose.project={project}");
    Command::new("docker")
        .args(["network", "ls", "-q", "--filter", &label])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}
