//! `manifest.json`: what was run, on what, with which sensors and faults, and how it ended.
//!
//! The manifest is written when the trace is created and rewritten (atomically, via a temporary
//! file and rename) as the run learns more: containers and addresses after `up`, the outcome at
//! the end. Every field is optional or defaulted on read so that older traces stay readable.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The whole manifest.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Manifest {
    /// Trace format version ([`crate::FORMAT_VERSION`] when written by this crate).
    pub format_version: u32,
    /// Unique id of the run (also the default trace directory name).
    pub run_id: String,
    /// When recording started / ended, UTC nanoseconds (ended is absent while recording, or when
    /// the recorder was killed).
    pub started_ns: Option<i64>,
    pub ended_ns: Option<i64>,
    /// Name and version of the program that wrote the trace, e.g. `recorder 0.1.0`.
    pub recorder_version: String,
    pub host: HostInfo,
    pub compose: ComposeInfo,
    /// The sensor configuration as given in the scenario (secrets redacted).
    pub sensors: serde_json::Value,
    /// The experiment or timed schedule that was run, as given in the scenario.
    pub schedule: serde_json::Value,
    /// Seed for every random choice the recorder made.
    pub seed: Option<u64>,
    /// The scenario file that was run: name, path and content hash (empty in traces recorded
    /// before the recorder wrote it).
    #[serde(skip_serializing_if = "ScenarioInfo::is_empty")]
    pub scenario: ScenarioInfo,
    /// The spec files of the scenario's experiment, with content hashes (empty in older traces
    /// and for runs without an experiment).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub specs: Vec<ComposeFile>,
    /// How the run ended; absent while recording or when the recorder was killed.
    pub outcome: Option<Outcome>,
    /// The recorded trace this run replays (`recorder run --replay`); absent otherwise and in
    /// older traces.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay_of: Option<ReplayOf>,
    /// Format v2: checksums of the Parquet files, by file name (written at finalization; empty
    /// in v1 traces and before finalization).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub checksums: BTreeMap<String, crate::checksum::FileChecksums>,
    /// Format v2: the invariants finalization checked (absent in v1 traces and before
    /// finalization).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invariants: Option<Invariants>,
    /// Free-form extra facts (for forward compatibility: readers keep unknown keys here).
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// Which recorded run a replay repeats.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReplayOf {
    /// The recorded run's `run_id`.
    pub run_id: String,
    /// The recorded trace's directory as given to `--replay`.
    pub path: String,
    /// True when the scenario or specs differed from the recorded ones and `--force` ran it.
    pub forced: bool,
    /// What differed (empty unless forced).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub differences: Vec<String>,
}

/// Facts about the machine that recorded the trace.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HostInfo {
    pub hostname: String,
    pub os: String,
    pub kernel: String,
    pub docker_version: String,
    pub docker_api_version: String,
    /// The compose command used: `docker compose` or `docker-compose`, with its version.
    pub compose_command: String,
    /// Kernel features the fault injector probed (e.g. `netem: false`).
    pub features: BTreeMap<String, bool>,
}

/// The compose project as run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ComposeInfo {
    pub project: String,
    pub files: Vec<ComposeFile>,
    /// Output of `compose config` (environment values that look like secrets redacted).
    pub resolved_config: String,
    /// Service name -> its containers.
    pub services: BTreeMap<String, ServiceInfo>,
    /// Compose network name (as in the compose file) -> facts.
    pub networks: BTreeMap<String, NetworkInfo>,
}

/// One compose file with the hash of its content.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ComposeFile {
    pub path: String,
    pub sha256: String,
}

/// The scenario file a run came from. `name` is the file's stem, or its directory's name for a
/// file called `scenario.toml` (`examples/split-brain/scenario.toml` is `split-brain`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ScenarioInfo {
    pub name: String,
    pub path: String,
    pub sha256: String,
}

impl ScenarioInfo {
    /// True for a trace recorded before scenarios were recorded.
    pub fn is_empty(&self) -> bool {
        self.name.is_empty() && self.path.is_empty() && self.sha256.is_empty()
    }

    /// The scenario name for a scenario file path.
    pub fn name_of(path: &std::path::Path) -> String {
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if stem == "scenario" {
            if let Some(dir) = path
                .canonicalize()
                .ok()
                .as_deref()
                .unwrap_or(path)
                .parent()
                .and_then(|d| d.file_name())
            {
                return dir.to_string_lossy().into_owned();
            }
        }
        stem
    }
}

/// A compose service.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServiceInfo {
    pub image: String,
    pub containers: Vec<ContainerInfo>,
}

/// A container of a service.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContainerInfo {
    pub id: String,
    pub name: String,
    pub image: String,
    pub image_id: String,
    /// Compose network name -> IPv4 address of the container on it.
    pub addresses: BTreeMap<String, String>,
    /// Hostname and aliases the container answers to.
    pub aliases: Vec<String>,
}

/// A network of the project.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkInfo {
    /// Docker's network id and full name (`<project>_<name>`).
    pub id: String,
    pub docker_name: String,
    pub driver: String,
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    /// The host bridge interface, when known (e.g. `br-1a2b3c4d5e6f`).
    pub bridge: Option<String>,
}

/// How the run ended.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Outcome {
    /// `completed`, `failed` (an expect step failed), `timeout`, `interrupted`, or `error`.
    pub status: String,
    pub message: Option<String>,
    /// Combined online verdict, when an experiment ran: `accept`, `fail`, `inconclusive`.
    pub verdict: Option<String>,
}

/// What finalization checked (and, with `--repair`, changed) about the rows of the trace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Invariants {
    /// Rows of `events.parquet` and `packets.parquet` are in `(ts_ns, seq)` order (always true
    /// for files written by finalization; readers check it again while streaming).
    pub sorted: bool,
    /// No two rows of the trace (events and packets) share a `seq`.
    pub unique_seq: bool,
    /// Rows checked.
    pub events: u64,
    pub packets: u64,
    /// The largest `seq`.
    pub max_seq: u64,
    /// What `analyzer finalize --repair` changed; absent when the trace was not repaired.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repaired: Option<Repairs>,
}

/// What a repair changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Repairs {
    /// Rows of a Parquet file were out of `(ts_ns, seq)` order (they were sorted; a log is
    /// unsorted by nature and always sorted).
    pub reordered: bool,
    /// Exact duplicate rows dropped.
    pub duplicates_dropped: u64,
    /// Rows dropped because `ts_ns`, `seq`, `source` or `kind` was null.
    pub null_key_rows_dropped: u64,
    /// True when rows shared a `seq` and every row was renumbered (events 1..E in trace order,
    /// then packets E+1..).
    pub renumbered: bool,
    /// Damaged records of the event or packet log skipped, and the bytes they held.
    pub log_records_skipped: u64,
    pub log_bytes_skipped: u64,
}

/// Names of environment variables whose values are redacted in the manifest.
pub fn is_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    ["PASSWORD", "SECRET", "TOKEN", "KEY"]
        .iter()
        .any(|w| upper.contains(w))
}

/// The value that replaces a redacted secret.
pub const REDACTED: &str = "<redacted>";

impl Manifest {
    /// Reads `manifest.json` from a trace directory (no version check; see [`Manifest::check_version`]).
    pub fn read(dir: &std::path::Path) -> Result<Manifest, crate::TraceError> {
        let path = dir.join(crate::files::MANIFEST);
        let text = std::fs::read(&path).map_err(|e| crate::TraceError::io(&path, e))?;
        serde_json::from_slice(&text).map_err(|source| crate::TraceError::Manifest { path, source })
    }

    /// Fails with [`crate::TraceError::NewerVersion`] when the manifest claims a format version
    /// newer than [`crate::FORMAT_VERSION`]. Version 0 (absent) is read as 1.
    pub fn check_version(&self, dir: &std::path::Path) -> Result<(), crate::TraceError> {
        if self.format_version > crate::FORMAT_VERSION {
            return Err(crate::TraceError::NewerVersion {
                path: dir.join(crate::files::MANIFEST),
                found: self.format_version,
                supported: crate::FORMAT_VERSION,
            });
        }
        Ok(())
    }

    /// Writes `manifest.json` atomically (temporary file, fsync, rename).
    pub fn write_atomic(&self, dir: &std::path::Path) -> Result<(), crate::TraceError> {
        use std::io::Write;
        let path = dir.join(crate::files::MANIFEST);
        let tmp = dir.join(".manifest.json.tmp");
        let text = serde_json::to_vec_pretty(self).map_err(|e| {
            crate::TraceError::Invalid(format!(
                "{}: cannot serialise manifest: {e}",
                path.display()
            ))
        })?;
        let mut f = std::fs::File::create(&tmp).map_err(|e| crate::TraceError::io(&tmp, e))?;
        f.write_all(&text)
            .and_then(|_| f.write_all(b"\n"))
            .and_then(|_| f.sync_all())
            .map_err(|e| crate::TraceError::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| crate::TraceError::io(&path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_and_unknown_fields_round_trip() {
        let m: Manifest =
            serde_json::from_str(r#"{"format_version":1,"run_id":"r","future_field":{"x":1}}"#)
                .unwrap();
        assert_eq!(m.run_id, "r");
        assert_eq!(m.extra["future_field"]["x"], 1);
        let back = serde_json::to_value(&m).unwrap();
        assert_eq!(back["future_field"]["x"], 1);
    }

    #[test]
    fn newer_version_is_refused_and_atomic_write_reads_back() {
        let d = tempfile::tempdir().unwrap();
        let m = Manifest {
            format_version: 99,
            ..Default::default()
        };
        m.write_atomic(d.path()).unwrap();
        let r = Manifest::read(d.path()).unwrap();
        let e = r.check_version(d.path()).unwrap_err().to_string();
        assert!(e.contains("format version 99 is newer"), "{e}");
        assert!(e.contains("manifest.json"), "{e}");
    }

    #[test]
    fn scenario_and_spec_hashes_are_optional_and_round_trip() {
        // a trace recorded before the recorder wrote them reads with both empty
        let old: Manifest = serde_json::from_str(r#"{"format_version":1,"run_id":"r"}"#).unwrap();
        assert!(old.scenario.is_empty() && old.specs.is_empty());
        assert!(!serde_json::to_string(&old).unwrap().contains("scenario"));
        let m = Manifest {
            scenario: ScenarioInfo {
                name: "split-brain".into(),
                path: "examples/split-brain/scenario.toml".into(),
                sha256: "ab".into(),
            },
            specs: vec![ComposeFile {
                path: "specs/akka.spec".into(),
                sha256: "cd".into(),
            }],
            ..Default::default()
        };
        let back: Manifest = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(back, m);
        assert!(back.extra.is_empty());
    }

    #[test]
    fn scenario_names() {
        let p = std::path::Path::new("examples/split-brain/scenario.toml");
        assert_eq!(ScenarioInfo::name_of(p), "split-brain");
        let p = std::path::Path::new("/x/lossy.toml");
        assert_eq!(ScenarioInfo::name_of(p), "lossy");
    }

    #[test]
    fn secret_names() {
        assert!(is_secret_name("db_password"));
        assert!(is_secret_name("API_KEY"));
        assert!(!is_secret_name("HOME"));
    }
}
