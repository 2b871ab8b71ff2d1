//! `recorder run --replay TRACE` (docs/cli.md): what a replay takes from the recorded trace.
//! The scenario and spec files must be the ones recorded (their sha256 in the manifest) unless
//! forced; the seed is the recorded one; every random target takes the service the recorded
//! run chose for the same fault (`f<n>`, from the trace's `fault` events); every `expect ... as
//! NAME` step binds the value the recorded run bound at the same step (its `recorder`/`step` end
//! event's `data.binding`; `experiment::run` uses it); the new manifest's `replay_of` names the
//! recorded trace.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use trace::manifest::ReplayOf;
use trace::{Manifest, ReadOptions, Trace};

/// What is wrong with a replay request.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The recorded trace cannot be read.
    #[error("{0}")]
    Trace(#[from] trace::TraceError),
    /// The recorded trace names no scenario (recorded before the recorder wrote it).
    #[error("{0}: the manifest names no scenario file; give the scenario to replay")]
    NoScenario(PathBuf),
    /// The scenario or a spec file differs from the recorded one.
    #[error("{0} (use --force to replay anyway)")]
    Changed(String),
    /// A recorded fault event is malformed.
    #[error("{path}: fault event seq {seq}: {message}")]
    BadEvent {
        path: PathBuf,
        seq: u64,
        message: String,
    },
}

impl ReplayError {
    /// The exit code (docs/exit-codes.md): 3 for changed files (the scenario is refused as it
    /// is), 4 for a trace that cannot be read.
    pub fn exit_code(&self) -> i32 {
        match self {
            ReplayError::Changed(_) => crate::exit::BAD_SCENARIO,
            _ => crate::exit::TRACE,
        }
    }
}

/// The recorded run a replay repeats.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub dir: PathBuf,
    pub manifest: Manifest,
    /// Fault number (`f<n>`) → the service its random target chose.
    pub choices: BTreeMap<u64, String>,
    /// (experiment, step index) → the binding that step's end event recorded.
    pub bindings: BTreeMap<(String, usize), RecordedBinding>,
    /// Differences from the recorded scenario and specs, when forced.
    pub differences: Vec<String>,
    /// `--force`: a recorded binding this run cannot use gives way to the live one (with a
    /// warning event) instead of ending the experiment.
    pub force: bool,
}

/// A binding recorded by an `expect ... as NAME` step of the replayed run.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedBinding {
    pub name: String,
    pub value: serde_json::Value,
    /// The seq of the step's end event in the recorded trace.
    pub seq: u64,
}

impl Recorded {
    /// What the new trace's manifest records.
    pub fn replay_of(&self) -> ReplayOf {
        ReplayOf {
            run_id: self.manifest.run_id.clone(),
            path: self.dir.display().to_string(),
            forced: !self.differences.is_empty(),
            differences: self.differences.clone(),
        }
    }
}

fn sha256(p: &Path) -> Option<String> {
    crate::compose::file_sha256(p).ok()
}

/// The scenario a replay of `dir` runs when none is given: the manifest's path.
pub fn recorded_scenario(dir: &Path) -> Result<PathBuf, ReplayError> {
    let m = Manifest::read(dir)?;
    if m.scenario.path.is_empty() {
        return Err(ReplayError::NoScenario(dir.join(trace::files::MANIFEST)));
    }
    Ok(PathBuf::from(m.scenario.path))
}

/// Reads the recorded trace `dir` and checks `scenario` and `specs` (the current files) against
/// its hashes; a difference is an error unless `force`.
pub fn load(
    dir: &Path,
    scenario: &Path,
    specs: &[PathBuf],
    force: bool,
) -> Result<Recorded, ReplayError> {
    let manifest = Manifest::read(dir)?;
    manifest.check_version(dir)?;
    let mut differences = Vec::new();
    let recorded = &manifest.scenario;
    if recorded.sha256.is_empty() {
        differences.push(format!(
            "{}: the manifest records no scenario hash",
            dir.display()
        ));
    } else if sha256(scenario).as_deref() != Some(recorded.sha256.as_str()) {
        differences.push(format!(
            "scenario {} differs from the one recorded in {} (sha256 {}, recorded {})",
            scenario.display(),
            dir.display(),
            sha256(scenario).unwrap_or_else(|| "unreadable".into()),
            recorded.sha256
        ));
    }
    let name = |p: &str| {
        Path::new(p)
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default()
    };
    for s in specs {
        let now = sha256(s);
        let rec = manifest
            .specs
            .iter()
            .find(|r| Path::new(&r.path) == s.as_path())
            .or_else(|| {
                manifest
                    .specs
                    .iter()
                    .find(|r| name(&r.path) == name(&s.display().to_string()))
            });
        match rec {
            None => differences.push(format!(
                "spec {} is not among the specs recorded in {}",
                s.display(),
                dir.display()
            )),
            Some(r) if now.as_deref() != Some(r.sha256.as_str()) => differences.push(format!(
                "spec {} differs from the one recorded in {} (sha256 {}, recorded {})",
                s.display(),
                dir.display(),
                now.unwrap_or_else(|| "unreadable".into()),
                r.sha256
            )),
            Some(_) => {}
        }
    }
    for r in &manifest.specs {
        let listed = specs.iter().any(|s| {
            Path::new(&r.path) == s.as_path() || name(&r.path) == name(&s.display().to_string())
        });
        if !listed {
            differences.push(format!(
                "spec {} recorded in {} is not used by the scenario any more",
                r.path,
                dir.display()
            ));
        }
    }
    if !differences.is_empty() && !force {
        return Err(ReplayError::Changed(differences.join("; ")));
    }
    let (choices, bindings) = recorded_choices(dir)?;
    Ok(Recorded {
        dir: dir.to_path_buf(),
        manifest,
        choices,
        bindings,
        differences,
        force,
    })
}

/// What the recorded trace `dir` decided at run time: fault number → the service chosen for its
/// random target (from the `applied` and `failed` fault events), and (experiment, step) → the
/// value an `expect ... as NAME` step bound (from the `recorder`/`step` end events).
pub type RecordedChoices = (
    BTreeMap<u64, String>,
    BTreeMap<(String, usize), RecordedBinding>,
);

/// Reads the [`RecordedChoices`] of the trace `dir`.
pub fn recorded_choices(dir: &Path) -> Result<RecordedChoices, ReplayError> {
    let t = Trace::open(dir)?;
    let opts = ReadOptions {
        sources: Some(vec![
            trace::Source::Fault.as_str().to_string(),
            trace::Source::Recorder.as_str().to_string(),
        ]),
        ..ReadOptions::default()
    };
    let mut out = BTreeMap::new();
    let mut bindings = BTreeMap::new();
    for batch in t.events(&opts)? {
        let batch = batch?;
        for ev in batch.iter() {
            let Some(data) = ev.data else { continue };
            let bad = |message: String| ReplayError::BadEvent {
                path: dir.to_path_buf(),
                seq: ev.seq,
                message,
            };
            if ev.source == "recorder" {
                if ev.kind != "step" {
                    continue;
                }
                let Ok(d) = serde_json::from_str::<serde_json::Value>(data) else {
                    return Err(bad("step event data is not JSON".into()));
                };
                if let Some(b) = recorded_binding(&d, ev.seq) {
                    bindings.entry(b.0).or_insert(b.1);
                }
                continue;
            }
            let d: serde_json::Value =
                serde_json::from_str(data).map_err(|e| bad(format!("data is not JSON: {e}")))?;
            if !matches!(
                d.get("phase").and_then(|p| p.as_str()),
                Some("applied" | "failed")
            ) {
                continue;
            }
            let Some(chosen) = d
                .get("target")
                .and_then(|t| t.get("chosen"))
                .and_then(|c| c.as_str())
            else {
                continue;
            };
            let id = d
                .get("fault_id")
                .and_then(|f| f.as_str())
                .and_then(|f| f.strip_prefix('f'))
                .and_then(|n| n.parse::<u64>().ok())
                .ok_or_else(|| bad("a random choice without a fault_id `f<n>`".into()))?;
            out.insert(id, chosen.to_string());
        }
    }
    Ok((out, bindings))
}

/// The binding of a `recorder`/`step` end event's data (`experiment`, `step`, `binding.name`,
/// `binding.value`), if it has one.
fn recorded_binding(d: &serde_json::Value, seq: u64) -> Option<((String, usize), RecordedBinding)> {
    if d.get("phase").and_then(|p| p.as_str()) != Some("end") {
        return None;
    }
    let exp = d.get("experiment")?.as_str()?;
    let step = usize::try_from(d.get("step")?.as_u64()?).ok()?;
    let b = d.get("binding")?;
    let name = b.get("name")?.as_str()?;
    let value = b.get("value")?.clone();
    Some((
        (exp.to_string(), step),
        RecordedBinding {
            name: name.to_string(),
            value,
            seq,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_end_event_gives_its_binding_and_other_events_none() {
        let d = serde_json::json!({
            "experiment": "E", "step": 2, "phase": "end", "verdict": "accept",
            "binding": {"name": "T", "value": "b"}
        });
        let ((exp, step), b) = recorded_binding(&d, 41).expect("a binding");
        assert_eq!((exp.as_str(), step), ("E", 2));
        assert_eq!(b.name, "T");
        assert_eq!(b.value, serde_json::json!("b"));
        assert_eq!(b.seq, 41);
        let mut start = d.clone();
        start["phase"] = "start".into();
        assert!(recorded_binding(&start, 1).is_none());
        let mut none = d.clone();
        if let Some(o) = none.as_object_mut() {
            o.remove("binding");
        }
        assert!(recorded_binding(&none, 1).is_none());
    }
}
