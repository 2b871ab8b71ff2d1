//! The scenario file (TOML, see docs/scenario.md): what to bring up, what to watch, what to do to
//! it, for how long, with which seed, and where the trace goes.
//!
//! Parsing rejects unknown keys and reports `file:line:col: message`; [`LoadedScenario::resolve`],
//! [`LoadedScenario::check_against`] and [`LoadedScenario::check_networks`] check everything
//! that can be checked before anything starts (files exist, durations parse, named services and
//! networks exist in the compose configuration, fault actions are known to the injector).
//! Nothing here touches Docker: the caller passes the compose service and network lists in.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::faults::InvalidFault;
/// The one duration syntax (docs/cli.md, Durations), re-exported for the scenario's sections.
pub use trace::time::parse_duration;

/// A scenario error with its location (file, 1-based line and column) when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioError {
    pub file: PathBuf,
    pub line: usize,
    pub col: usize,
    pub message: String,
    /// The source line the error is on (empty without a location) and the width of the
    /// offending text on it, for [`ScenarioError::render`].
    pub source_line: String,
    pub width: usize,
}

impl ScenarioError {
    /// An error about the whole file (no position).
    pub fn whole_file(file: &Path, message: impl Into<String>) -> ScenarioError {
        ScenarioError {
            file: file.to_path_buf(),
            line: 0,
            col: 0,
            message: message.into(),
            source_line: String::new(),
            width: 0,
        }
    }

    /// An error at the byte range `span` of `text` (the file's contents).
    pub fn at(file: &Path, text: &str, span: Range<usize>, message: impl Into<String>) -> Self {
        let (line, col) = line_col(text, span.start);
        let start = span.start.min(text.len());
        let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
        let source_line = text[line_start..line_end]
            .trim_end_matches('\r')
            .to_string();
        let end = span.end.clamp(start, line_end);
        ScenarioError {
            file: file.to_path_buf(),
            line,
            col,
            message: message.into(),
            source_line,
            width: text[start..end].chars().count().max(1),
        }
    }

    /// The error in the diagnostic format both binaries use (`error: FILE:LINE:COL: message`,
    /// then the source line with a `^` marker; see `monitor::Diagnostic`).
    pub fn render(&self) -> String {
        monitor::Diagnostic {
            message: self.message.clone(),
            file: self.file.display().to_string(),
            line: self.line,
            column: self.col,
            source_line: self.source_line.clone(),
            width: self.width.max(1),
            hint: None,
        }
        .to_string()
    }
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file.display(),
                self.line,
                self.col,
                self.message
            )
        } else {
            write!(f, "{}: {}", self.file.display(), self.message)
        }
    }
}

impl std::error::Error for ScenarioError {}

/// All errors found in a scenario (validation reports every problem, not only the first).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", display_errors(.0))]
pub struct ScenarioErrors(pub Vec<ScenarioError>);

fn display_errors(v: &[ScenarioError]) -> String {
    v.iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

impl ScenarioErrors {
    /// Puts the errors in file order (errors without a position first), dropping repeats.
    pub fn sort(&mut self) {
        self.0.sort_by_key(|e| (e.line, e.col));
        self.0.dedup();
    }
}

/// The whole scenario as written.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Overall time limit of the run, e.g. "5m" (default 10m).
    #[serde(default)]
    pub time_limit: Option<Spanned<String>>,
    /// Seed for every random choice (random targets); default: derived from the clock, recorded.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Trace directory; `{run_id}` is replaced by the run id. Default `traces/{run_id}`.
    #[serde(default)]
    pub output: Option<String>,
    pub compose: ComposeSection,
    #[serde(default)]
    pub sensors: SensorsSection,
    /// Run an experiment from spec files.
    #[serde(default)]
    pub experiment: Option<ExperimentSection>,
    /// Or a plain timed schedule of faults.
    #[serde(default)]
    pub schedule: Vec<ScheduleEntry>,
    /// For a plain schedule: how long to keep recording after start (default: until the last
    /// fault has been reverted plus 2s).
    #[serde(default)]
    pub duration: Option<Spanned<String>>,
    /// Halt conditions: monitors judged live during the run; the first that fails halts it.
    #[serde(default)]
    pub halt: Option<HaltSection>,
    /// The services faults may touch (blast radius).
    #[serde(default)]
    pub scope: Option<ScopeSection>,
}

/// `[halt]`: monitors judged live during any run (schedule, experiment, record only); when one
/// fails every active fault is reverted at once, a `recorder`/`halt` event is written, the
/// recording goes on for `cool_down`, and the run ends with exit code 6.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HaltSection {
    /// Monitor expressions as in an `expect` step: `name`, `name(args)`, `name at svc`,
    /// `a and b` ...
    pub monitors: Vec<Spanned<String>>,
    /// Spec files defining them, relative to the scenario file (default: the experiment's).
    #[serde(default)]
    pub specs: Vec<Spanned<String>>,
    /// How long to keep recording after the faults were reverted (default "5s").
    #[serde(default)]
    pub cool_down: Option<Spanned<String>>,
}

/// `[scope]`: the services faults may touch: those listed, and those whose compose labels
/// match one of `labels` (`key=value`, or `key` for any value). Every fault target outside it
/// is refused before the run, and again at run time when a target is resolved.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeSection {
    #[serde(default)]
    pub services: Vec<Spanned<String>>,
    #[serde(default)]
    pub labels: Vec<Spanned<String>>,
}

/// `[halt]`, resolved.
#[derive(Debug, Clone)]
pub struct HaltPlan {
    pub specs: Vec<PathBuf>,
    /// Each monitor expression with its byte range in the scenario file.
    pub monitors: Vec<(String, Range<usize>)>,
    pub cool_down: Duration,
}

/// `[compose]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ComposeSection {
    /// Compose files, relative to the scenario file.
    pub files: Vec<Spanned<String>>,
    /// Project name; default `ctk<run-id>`.
    #[serde(default)]
    pub project: Option<String>,
    /// Seconds to wait for containers to run (and be healthy); default 120.
    #[serde(default)]
    pub up_timeout: Option<Spanned<String>>,
}

/// `[sensors]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SensorsSection {
    /// Container logs (default true).
    #[serde(default = "yes")]
    pub logs: bool,
    /// Docker events (default true).
    #[serde(default = "yes")]
    pub events: bool,
    /// Container stats (default true) and their interval (default "1s").
    #[serde(default = "yes")]
    pub stats: bool,
    #[serde(default)]
    pub stats_interval: Option<Spanned<String>>,
    #[serde(default)]
    pub jmx: Option<JmxConfig>,
    #[serde(default)]
    pub http: Vec<HttpConfig>,
    #[serde(default)]
    pub prom: Vec<PromConfig>,
    #[serde(default)]
    pub exec: Vec<ExecConfig>,
    #[serde(default)]
    pub pcap: Option<PcapConfig>,
    #[serde(default)]
    pub otlp: Option<OtlpConfig>,
}

fn yes() -> bool {
    true
}

impl Default for SensorsSection {
    fn default() -> Self {
        SensorsSection {
            logs: true,
            events: true,
            stats: true,
            stats_interval: None,
            jmx: None,
            http: Vec::new(),
            prom: Vec::new(),
            exec: Vec::new(),
            pcap: None,
            otlp: None,
        }
    }
}

/// `[sensors.jmx]`: Jolokia polling of MBeans.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JmxConfig {
    pub services: Vec<Spanned<String>>,
    #[serde(default = "jmx_port")]
    pub port: u16,
    #[serde(default = "jmx_path")]
    pub path: String,
    #[serde(default)]
    pub interval: Option<Spanned<String>>,
    #[serde(default)]
    pub mbeans: Vec<MBeanConfig>,
    /// Compose networks to reach the containers on, in order of preference (a container is
    /// polled at its address on the first of these it is attached to, else on its first
    /// network by name). Keeps the sensor off a network that a fault cuts.
    #[serde(default)]
    pub networks: Vec<Spanned<String>>,
    /// When no agent answers on `port`, attach the recorder's agent to the container's JVM
    /// (HotSpot attach through `jattach`; see docs/sensors.md). Default false.
    #[serde(default)]
    pub attach: bool,
}

fn jmx_port() -> u16 {
    8778
}
fn jmx_path() -> String {
    "/jolokia".to_string()
}

/// One MBean to read, with the attributes wanted (empty: all).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MBeanConfig {
    pub mbean: String,
    #[serde(default)]
    pub attributes: Vec<String>,
}

/// `[[sensors.http]]`: an HTTP GET probe.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// The service probed, and/or `services` (like `[sensors.jmx] services`): every container
    /// of each is probed.
    #[serde(default)]
    pub service: Option<Spanned<String>>,
    #[serde(default)]
    pub services: Vec<Spanned<String>>,
    pub port: Spanned<u16>,
    #[serde(default = "root_path")]
    pub path: String,
    #[serde(default)]
    pub interval: Option<Spanned<String>>,
    /// How long one probe may take before it is an `http`/`error` event with `error_type`
    /// `timeout` (default: the interval).
    #[serde(default)]
    pub timeout: Option<Spanned<String>>,
}

fn root_path() -> String {
    "/".to_string()
}

/// `[[sensors.prom]]`: a Prometheus scrape.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PromConfig {
    /// As for [`HttpConfig`]: `service` and/or `services`.
    #[serde(default)]
    pub service: Option<Spanned<String>>,
    #[serde(default)]
    pub services: Vec<Spanned<String>>,
    pub port: Spanned<u16>,
    #[serde(default = "metrics_path")]
    pub path: String,
    #[serde(default)]
    pub interval: Option<Spanned<String>>,
    /// Metric families to keep (empty: all).
    #[serde(default)]
    pub families: Vec<String>,
    /// How long one scrape may take (default: the interval).
    #[serde(default)]
    pub timeout: Option<Spanned<String>>,
}

impl HttpConfig {
    /// `service` and `services`, in that order.
    pub fn service_names(&self) -> Vec<&Spanned<String>> {
        self.service.iter().chain(&self.services).collect()
    }
}

impl PromConfig {
    /// `service` and `services`, in that order.
    pub fn service_names(&self) -> Vec<&Spanned<String>> {
        self.service.iter().chain(&self.services).collect()
    }
}

fn metrics_path() -> String {
    "/metrics".to_string()
}

/// `[[sensors.exec]]`: a command run in a container periodically.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExecConfig {
    pub service: Spanned<String>,
    pub cmd: Vec<String>,
    #[serde(default)]
    pub interval: Option<Spanned<String>>,
}

/// `[sensors.pcap]`: packet capture.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PcapConfig {
    #[serde(default)]
    pub services: Vec<Spanned<String>>,
    #[serde(default)]
    pub containers: Vec<String>,
    #[serde(default)]
    pub networks: Vec<Spanned<String>>,
    #[serde(default = "snaplen")]
    pub snaplen: u32,
    /// tcpdump's capture buffer size in KiB (`-B`); default: tcpdump's own (2 MiB on Linux).
    /// Raise it when the capture statistics report packets dropped by the kernel.
    #[serde(default)]
    pub buffer_kib: Option<Spanned<u32>>,
}

fn snaplen() -> u32 {
    128
}

/// `[sensors.otlp]`: the OTLP receiver (docs/sensors.md, OpenTelemetry).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpConfig {
    /// Services pointed at the receiver: `OTEL_EXPORTER_OTLP_ENDPOINT` (and `OTEL_SERVICE_NAME`
    /// when they do not set it) added through a generated compose override file.
    #[serde(default)]
    pub services: Vec<Spanned<String>>,
    /// The gRPC port; default 0: picked per run (4317 is OTLP's usual one).
    #[serde(default)]
    pub grpc_port: u16,
    /// The HTTP port; default 0: picked per run (4318 is OTLP's usual one).
    #[serde(default)]
    pub http_port: u16,
    /// Largest request accepted, in KiB after decompression (default 4096).
    #[serde(default)]
    pub max_request_kib: Option<Spanned<u32>>,
    /// Events held between the receiver and the trace before senders are told to retry
    /// (default 100000).
    #[serde(default)]
    pub queue: Option<Spanned<u32>>,
}

/// `[experiment]`: run a named experiment from spec files.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentSection {
    /// Spec files, relative to the scenario file.
    pub specs: Vec<Spanned<String>>,
    pub name: Spanned<String>,
    /// Time to wait after `up` before the first step (default "0s").
    #[serde(default)]
    pub settle: Option<Spanned<String>>,
}

/// One `[[schedule]]` entry.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleEntry {
    /// Offset from the start of the schedule (after `up`), e.g. "5s".
    pub at: Spanned<String>,
    /// The fault action (pause, kill, partition, loss …).
    pub fault: Spanned<String>,
    pub target: Spanned<TargetSpec>,
    #[serde(default)]
    pub params: BTreeMap<String, serde_json::Value>,
    /// Revert after this long (optional).
    #[serde(default)]
    pub duration: Option<Spanned<String>>,
}

/// A fault target as written in a schedule entry: a string names a service; tables name the other
/// forms.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum TargetSpec {
    Service(String),
    Table(TargetTable),
}

/// The table forms of a target; exactly one form must be given.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TargetTable {
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default)]
    pub container: Option<String>,
    #[serde(default)]
    pub network: Option<String>,
    #[serde(default)]
    pub services: Option<Vec<String>>,
    #[serde(default)]
    pub random: Option<Vec<String>>,
    /// Symmetric partition: `between = [["a"], ["b", "c"]]`.
    #[serde(default)]
    pub between: Option<(Vec<String>, Vec<String>)>,
    /// One-way partition: `from = ["a"], to = ["b"]`.
    #[serde(default)]
    pub from: Option<Vec<String>>,
    #[serde(default)]
    pub to: Option<Vec<String>>,
}

/// A resolved fault target: the fault injector's (the spec language's) target.
pub use crate::faults::FaultTarget as Target;

/// What is wrong with a target table of the scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("random target needs at least one service")]
    EmptyRandom,
    #[error("a one-way partition target needs both `from` and `to`")]
    OneWayIncomplete,
    #[error(
        "empty target: give one of service, container, network, services, random, between, from/to"
    )]
    Empty,
    #[error("target has more than one form; give exactly one")]
    Ambiguous,
}

impl TargetSpec {
    /// The resolved target, or what is wrong with the table.
    pub fn resolve(&self) -> Result<Target, TargetError> {
        let t = match self {
            TargetSpec::Service(s) => return Ok(Target::Service(s.clone())),
            TargetSpec::Table(t) => t,
        };
        let mut forms = Vec::new();
        if let Some(s) = &t.service {
            forms.push(Target::Service(s.clone()));
        }
        if let Some(s) = &t.container {
            forms.push(Target::Container(s.clone()));
        }
        if let Some(s) = &t.network {
            forms.push(Target::Network(s.clone()));
        }
        if let Some(s) = &t.services {
            forms.push(Target::Services(s.clone()));
        }
        if let Some(s) = &t.random {
            if s.is_empty() {
                return Err(TargetError::EmptyRandom);
            }
            forms.push(Target::Random(s.clone()));
        }
        if let Some((a, b)) = &t.between {
            forms.push(Target::Between(a.clone(), b.clone()));
        }
        match (&t.from, &t.to) {
            (Some(a), Some(b)) => forms.push(Target::FromTo(a.clone(), b.clone())),
            (None, None) => {}
            _ => return Err(TargetError::OneWayIncomplete),
        }
        match forms.len() {
            1 => Ok(forms.remove(0)),
            0 => Err(TargetError::Empty),
            _ => Err(TargetError::Ambiguous),
        }
    }
}

/// Removes the entry whose key starts at byte `start` from `table` or any table below it;
/// whether one was found.
fn remove_key_at(table: &mut toml::de::DeTable<'_>, start: usize) -> bool {
    if let Some(k) = table.keys().find(|k| k.span().start == start).cloned() {
        return table.remove(&k).is_some();
    }
    table
        .iter_mut()
        .any(|(_, v)| remove_in_value(v.get_mut(), start))
}

fn remove_in_value(v: &mut toml::de::DeValue<'_>, start: usize) -> bool {
    match v {
        toml::de::DeValue::Table(t) => remove_key_at(t, start),
        toml::de::DeValue::Array(a) => a.iter_mut().any(|x| remove_in_value(x.get_mut(), start)),
        _ => false,
    }
}

/// 1-based line and column of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let off = offset.min(text.len());
    let before = &text[..off];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, col)
}

/// A loaded scenario: the parsed text plus where it came from, so errors can point into it.
#[derive(Debug, Clone)]
pub struct LoadedScenario {
    pub path: PathBuf,
    pub text: String,
    pub scenario: Scenario,
}

/// The experiment/schedule part, resolved.
#[derive(Debug, Clone)]
pub enum Plan {
    /// Just record until the time limit or `duration`.
    RecordOnly,
    /// A timed fault schedule.
    Schedule(Vec<ScheduledFault>),
    /// An experiment from spec files (compiled by the run loop).
    Experiment {
        specs: Vec<PathBuf>,
        name: String,
        settle: Duration,
    },
}

/// One resolved entry of a timed schedule.
#[derive(Debug, Clone)]
pub struct ScheduledFault {
    pub index: usize,
    pub at: Duration,
    pub action: String,
    pub target: Target,
    pub params: BTreeMap<String, serde_json::Value>,
    pub duration: Option<Duration>,
}

/// Everything [`LoadedScenario::resolve`] computes: absolute paths and parsed durations.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub compose_files: Vec<PathBuf>,
    pub project: Option<String>,
    pub up_timeout: Duration,
    pub time_limit: Duration,
    pub duration: Option<Duration>,
    pub stats_interval: Option<Duration>,
    pub plan: Plan,
    /// `[halt]`, when given.
    pub halt: Option<HaltPlan>,
}

impl LoadedScenario {
    /// Reads and parses a scenario file.
    pub fn load(path: &Path) -> Result<LoadedScenario, ScenarioErrors> {
        let (sc, errs) = Self::load_lenient(path)?;
        if errs.is_empty() {
            Ok(sc)
        } else {
            Err(ScenarioErrors(errs))
        }
    }

    /// Reads and parses a scenario file, keeping going past unknown keys (see
    /// [`Self::parse_lenient`]).
    pub fn load_lenient(
        path: &Path,
    ) -> Result<(LoadedScenario, Vec<ScenarioError>), ScenarioErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ScenarioErrors(vec![ScenarioError::whole_file(
                path,
                format!("cannot read scenario: {e}"),
            )])
        })?;
        Self::parse_lenient(path, &text)
    }

    /// Parses scenario text; `path` is used for error locations and relative paths. Any error
    /// (an unknown key included) is returned.
    pub fn parse(path: &Path, text: &str) -> Result<LoadedScenario, ScenarioErrors> {
        let (sc, errs) = Self::parse_lenient(path, text)?;
        if errs.is_empty() {
            Ok(sc)
        } else {
            Err(ScenarioErrors(errs))
        }
    }

    /// Parses scenario text, reporting every unknown key: each is an error, and the scenario
    /// without them is returned with those errors so that validation can go on and report the
    /// rest too. Any other error (TOML syntax, a wrong type, a missing key) ends parsing: it is
    /// returned with the unknown keys found before it, in file order.
    pub fn parse_lenient(
        path: &Path,
        text: &str,
    ) -> Result<(LoadedScenario, Vec<ScenarioError>), ScenarioErrors> {
        let at = |e: &toml::de::Error| match e.span() {
            Some(s) => ScenarioError::at(path, text, s, e.message().trim()),
            None => ScenarioError::whole_file(path, e.message().trim()),
        };
        let mut table = toml::de::DeTable::parse(text).map_err(|e| ScenarioErrors(vec![at(&e)]))?;
        let mut errs = Vec::new();
        loop {
            match Scenario::deserialize(toml::de::Deserializer::from(table.clone())) {
                Ok(scenario) => {
                    let mut e = ScenarioErrors(errs);
                    e.sort();
                    return Ok((
                        LoadedScenario {
                            path: path.to_path_buf(),
                            text: text.to_string(),
                            scenario,
                        },
                        e.0,
                    ));
                }
                Err(e) => {
                    errs.push(at(&e));
                    // an unknown key: drop it and parse again for the next error
                    let removed = e.message().starts_with("unknown field")
                        && e.span()
                            .is_some_and(|s| remove_key_at(table.get_mut(), s.start));
                    if !removed {
                        let mut e = ScenarioErrors(errs);
                        e.sort();
                        return Err(e);
                    }
                }
            }
        }
    }

    fn err_at(&self, span: Range<usize>, message: impl Into<String>) -> ScenarioError {
        ScenarioError::at(&self.path, &self.text, span, message)
    }

    fn base_dir(&self) -> PathBuf {
        self.path
            .parent()
            .map(Path::to_path_buf)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."))
    }

    fn dur(
        &self,
        v: &Option<Spanned<String>>,
        default: Option<Duration>,
        errs: &mut Vec<ScenarioError>,
    ) -> Option<Duration> {
        match v {
            None => default,
            Some(s) => match parse_duration(s.get_ref()) {
                Ok(d) => Some(d),
                Err(m) => {
                    errs.push(self.err_at(s.span(), m.to_string()));
                    default
                }
            },
        }
    }

    /// Checks a probe's `timeout`: a duration of at least 10ms.
    fn probe_timeout(&self, v: &Option<Spanned<String>>, errs: &mut Vec<ScenarioError>) {
        if let (Some(s), Some(d)) = (v, self.dur(v, None, errs)) {
            if d < Duration::from_millis(10) {
                errs.push(self.err_at(
                    s.span(),
                    format!("timeout {:?} is shorter than 10ms", s.get_ref()),
                ));
            }
        }
    }

    /// Resolves paths and durations and checks what needs no outside knowledge. Collects every
    /// error.
    pub fn resolve(&self) -> Result<Resolved, ScenarioErrors> {
        let (r, errs) = self.resolve_partial();
        if errs.is_empty() {
            Ok(r)
        } else {
            Err(ScenarioErrors(errs))
        }
    }

    /// [`Self::resolve`], returning what could be resolved (defaults in place of bad values,
    /// schedule entries with a bad target left out) along with every error, so that validation
    /// can go on checking the rest.
    pub fn resolve_partial(&self) -> (Resolved, Vec<ScenarioError>) {
        let sc = &self.scenario;
        let mut errs = Vec::new();
        let base = self.base_dir();
        if sc.compose.files.is_empty() {
            errs.push(ScenarioError::whole_file(
                &self.path,
                "[compose] files is empty",
            ));
        }
        let mut compose_files = Vec::new();
        for f in &sc.compose.files {
            let p = base.join(f.get_ref());
            if !p.is_file() {
                errs.push(self.err_at(f.span(), format!("compose file {} not found", p.display())));
            }
            compose_files.push(p);
        }
        if let Some(p) = &sc.compose.project {
            let ok = !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
                && p.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
            if !ok {
                errs.push(ScenarioError::whole_file(
                    &self.path,
                    format!("bad project name `{p}`: use lowercase letters, digits, - and _"),
                ));
            }
        }
        let up_timeout = self
            .dur(
                &sc.compose.up_timeout,
                Some(Duration::from_secs(120)),
                &mut errs,
            )
            .unwrap_or(Duration::from_secs(120));
        let time_limit = self
            .dur(&sc.time_limit, Some(Duration::from_secs(600)), &mut errs)
            .unwrap_or(Duration::from_secs(600));
        let duration = self.dur(&sc.duration, None, &mut errs);
        let stats_interval = if sc.sensors.stats {
            self.dur(
                &sc.sensors.stats_interval,
                Some(Duration::from_secs(1)),
                &mut errs,
            )
        } else {
            None
        };
        if let Some(j) = &sc.sensors.jmx {
            self.dur(&j.interval, None, &mut errs);
        }
        for h in &sc.sensors.http {
            self.dur(&h.interval, None, &mut errs);
            self.probe_timeout(&h.timeout, &mut errs);
        }
        for h in &sc.sensors.prom {
            self.dur(&h.interval, None, &mut errs);
            self.probe_timeout(&h.timeout, &mut errs);
        }
        for h in &sc.sensors.exec {
            self.dur(&h.interval, None, &mut errs);
            if h.cmd.is_empty() {
                errs.push(self.err_at(h.service.span(), "exec sensor has an empty cmd"));
            }
        }
        if let Some(b) = sc.sensors.pcap.as_ref().and_then(|p| p.buffer_kib.as_ref()) {
            if *b.get_ref() == 0 {
                errs.push(self.err_at(b.span(), "pcap sensor: buffer_kib must be at least 1"));
            }
        }
        if let Some(o) = &sc.sensors.otlp {
            for (what, v) in [("max_request_kib", &o.max_request_kib), ("queue", &o.queue)] {
                if let Some(v) = v.as_ref().filter(|v| *v.get_ref() == 0) {
                    errs.push(
                        self.err_at(v.span(), format!("otlp sensor: {what} must be at least 1")),
                    );
                }
            }
            if o.grpc_port != 0 && o.grpc_port == o.http_port {
                errs.push(ScenarioError::whole_file(
                    &self.path,
                    format!(
                        "otlp sensor: grpc_port and http_port are both {}",
                        o.grpc_port
                    ),
                ));
            }
        }

        let plan = match (&sc.experiment, sc.schedule.is_empty()) {
            (Some(_), false) => {
                errs.push(ScenarioError::whole_file(
                    &self.path,
                    "give either [experiment] or [[schedule]], not both",
                ));
                Plan::RecordOnly
            }
            (Some(x), true) => {
                let mut specs = Vec::new();
                for s in &x.specs {
                    let p = base.join(s.get_ref());
                    if !p.is_file() {
                        errs.push(
                            self.err_at(s.span(), format!("spec file {} not found", p.display())),
                        );
                    }
                    specs.push(p);
                }
                if x.specs.is_empty() {
                    errs.push(self.err_at(x.name.span(), "[experiment] specs is empty"));
                }
                let settle = self
                    .dur(&x.settle, Some(Duration::ZERO), &mut errs)
                    .unwrap_or_default();
                Plan::Experiment {
                    specs,
                    name: x.name.get_ref().clone(),
                    settle,
                }
            }
            (None, true) => Plan::RecordOnly,
            (None, false) => {
                let mut out = Vec::new();
                for (index, e) in sc.schedule.iter().enumerate() {
                    let at = self
                        .dur(&Some(e.at.clone()), None, &mut errs)
                        .unwrap_or_default();
                    let duration = self.dur(&e.duration, None, &mut errs);
                    let target = match e.target.get_ref().resolve() {
                        Ok(t) => t,
                        Err(m) => {
                            errs.push(self.err_at(e.target.span(), m.to_string()));
                            continue;
                        }
                    };
                    out.push(ScheduledFault {
                        index,
                        at,
                        action: e.fault.get_ref().clone(),
                        target,
                        params: e.params.clone(),
                        duration,
                    });
                }
                out.sort_by_key(|f| (f.at, f.index));
                Plan::Schedule(out)
            }
        };
        let halt = sc.halt.as_ref().map(|h| {
            let mut specs: Vec<PathBuf> = Vec::new();
            for s in &h.specs {
                let p = base.join(s.get_ref());
                if !p.is_file() {
                    errs.push(self.err_at(s.span(), format!("spec file {} not found", p.display())));
                }
                specs.push(p);
            }
            if specs.is_empty() {
                match &plan {
                    Plan::Experiment { specs: e, .. } => specs = e.clone(),
                    _ => errs.push(ScenarioError::whole_file(
                        &self.path,
                        "[halt] needs `specs` (the spec files defining its monitors) when there is no [experiment]",
                    )),
                }
            }
            if h.monitors.is_empty() {
                errs.push(ScenarioError::whole_file(&self.path, "[halt] monitors is empty"));
            }
            for m in &h.monitors {
                if m.get_ref().trim().is_empty() {
                    errs.push(self.err_at(m.span(), "[halt] monitors: empty monitor expression"));
                }
            }
            let cool_down = self
                .dur(&h.cool_down, Some(Duration::from_secs(5)), &mut errs)
                .unwrap_or(Duration::from_secs(5));
            HaltPlan {
                specs,
                monitors: h
                    .monitors
                    .iter()
                    .map(|m| (m.get_ref().clone(), m.span()))
                    .collect(),
                cool_down,
            }
        });
        (
            Resolved {
                compose_files,
                project: sc.compose.project.clone(),
                up_timeout,
                time_limit,
                duration,
                stats_interval,
                plan,
                halt,
            },
            errs,
        )
    }

    /// Checks every service name the scenario mentions against the compose services, and every
    /// scheduled fault with `check_fault` (the fault injector's validator: action known, params
    /// valid). Collects every error.
    pub fn check_against(
        &self,
        services: &[String],
        check_fault: &dyn Fn(&ScheduledFault) -> Result<(), InvalidFault>,
    ) -> Result<(), ScenarioErrors> {
        let sc = &self.scenario;
        let mut errs = Vec::new();
        let known = |s: &str| services.iter().any(|x| x == s);
        let check_svc = |s: &Spanned<String>, what: &str, errs: &mut Vec<ScenarioError>| {
            if !known(s.get_ref()) {
                errs.push(self.err_at(
                    s.span(),
                    format!(
                        "{what}: no service `{}` in the compose configuration (services: {})",
                        s.get_ref(),
                        services.join(", ")
                    ),
                ));
            }
        };
        if let Some(j) = &sc.sensors.jmx {
            for s in &j.services {
                check_svc(s, "jmx sensor", &mut errs);
            }
        }
        let probes = sc
            .sensors
            .http
            .iter()
            .map(|h| ("http", h.service_names(), &h.port));
        let probes = probes.chain(
            sc.sensors
                .prom
                .iter()
                .map(|h| ("prom", h.service_names(), &h.port)),
        );
        for (what, names, port) in probes {
            if names.is_empty() {
                errs.push(self.err_at(
                    port.span(),
                    format!("{what} sensor: give `service` or `services`"),
                ));
            }
            for s in names {
                check_svc(s, &format!("{what} sensor"), &mut errs);
            }
        }
        for h in &sc.sensors.exec {
            check_svc(&h.service, "exec sensor", &mut errs);
        }
        if let Some(p) = &sc.sensors.pcap {
            for s in &p.services {
                check_svc(s, "pcap sensor", &mut errs);
            }
        }
        if let Some(o) = &sc.sensors.otlp {
            for s in &o.services {
                check_svc(s, "otlp sensor", &mut errs);
            }
        }
        if let (
            Resolved {
                plan: Plan::Schedule(faults),
                ..
            },
            _,
        ) = self.resolve_partial()
        {
            for f in &faults {
                let entry = &sc.schedule[f.index];
                for s in crate::faults::spec::target_services(&f.target) {
                    if !known(s) {
                        errs.push(self.err_at(
                            entry.target.span(),
                            format!(
                                "fault target: no service `{s}` in the compose configuration (services: {})",
                                services.join(", ")
                            ),
                        ));
                    }
                }
                if let Err(m) = check_fault(f) {
                    errs.push(self.err_at(entry.fault.span(), m.to_string()));
                }
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(ScenarioErrors(errs))
        }
    }
}

impl LoadedScenario {
    /// Checks every network name the scenario mentions (`[sensors.jmx] networks`,
    /// `[sensors.pcap] networks`, schedule targets `{ network = "..." }` and `network`
    /// parameters of `disconnect`/`connect`) against `networks`, the compose networks of the
    /// project (see `compose::project_networks`). Experiment steps are checked where the spec is
    /// compiled (`experiment::compile`). Collects every error.
    pub fn check_networks(&self, networks: &[String]) -> Result<(), ScenarioErrors> {
        let sc = &self.scenario;
        let mut errs = Vec::new();
        let check = |n: &str, span: Range<usize>, what: &str, errs: &mut Vec<ScenarioError>| {
            if let Err(m) = check_network_name(n, networks) {
                errs.push(self.err_at(span, format!("{what}: {m}")));
            }
        };
        if let Some(j) = &sc.sensors.jmx {
            for n in &j.networks {
                check(n.get_ref(), n.span(), "jmx sensor", &mut errs);
            }
        }
        if let Some(p) = &sc.sensors.pcap {
            for n in &p.networks {
                check(n.get_ref(), n.span(), "pcap sensor", &mut errs);
            }
        }
        for e in &sc.schedule {
            if let Ok(Target::Network(n)) = e.target.get_ref().resolve() {
                check(&n, e.target.span(), "fault target", &mut errs);
            }
            if let Some(serde_json::Value::String(n)) = e.params.get("network") {
                let what = format!("fault `{}` parameter network", e.fault.get_ref());
                check(n, e.fault.span(), &what, &mut errs);
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(ScenarioErrors(errs))
        }
    }
}

impl LoadedScenario {
    /// The fault scope of `[scope]` (`None` without the section): its services, checked against
    /// the compose `services`, and the services whose labels (`facts`) match one of its
    /// `labels`. A label that matches no service is an error too.
    pub fn resolve_scope(
        &self,
        services: &[String],
        facts: &crate::compose::ScopeFacts,
    ) -> (Option<crate::faults::scope::Scope>, Vec<ScenarioError>) {
        let Some(sc) = &self.scenario.scope else {
            return (None, Vec::new());
        };
        let mut errs = Vec::new();
        let mut set: Vec<String> = Vec::new();
        for s in &sc.services {
            if services.iter().any(|x| x == s.get_ref()) {
                set.push(s.get_ref().clone());
            } else {
                errs.push(self.err_at(
                    s.span(),
                    format!(
                        "scope: no service `{}` in the compose configuration (services: {})",
                        s.get_ref(),
                        services.join(", ")
                    ),
                ));
            }
        }
        for l in &sc.labels {
            let (k, v) = match l.get_ref().split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (l.get_ref().as_str(), None),
            };
            let matching: Vec<&String> = facts
                .labels
                .iter()
                .filter(|(_, ls)| ls.get(k).is_some_and(|x| v.is_none_or(|v| v == x)))
                .map(|(svc, _)| svc)
                .collect();
            if matching.is_empty() {
                errs.push(self.err_at(
                    l.span(),
                    format!("scope: no service has the label `{}`", l.get_ref()),
                ));
            }
            set.extend(matching.into_iter().cloned());
        }
        if sc.services.is_empty() && sc.labels.is_empty() {
            errs.push(ScenarioError::whole_file(
                &self.path,
                "[scope] lists no services and no labels (faults could touch nothing)",
            ));
        }
        (Some(crate::faults::scope::Scope::new(set)), errs)
    }

    /// Checks every schedule entry's target against the scope (at the entry's target); network
    /// and container targets through `facts` (`project`: for generated container names).
    pub fn check_scope(
        &self,
        scope: &crate::faults::scope::Scope,
        facts: &crate::compose::ScopeFacts,
        project: &str,
    ) -> Vec<ScenarioError> {
        let on_network = |n: &str| facts.networks.get(n).cloned();
        let container = |c: &str| facts.container_service(project, c);
        let mut errs = Vec::new();
        for e in &self.scenario.schedule {
            if let Ok(t) = e.target.get_ref().resolve() {
                if let Err(m) = scope.check_names(&t, &on_network, &container) {
                    errs.push(self.err_at(e.target.span(), m.to_string()));
                }
            }
        }
        errs
    }
}

/// A network name the compose project does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "no network `{name}` in the compose configuration (networks: {})",
    if known.is_empty() { "none".to_string() } else { known.join(", ") }
)]
pub struct UnknownNetwork {
    pub name: String,
    /// The project's networks, sorted.
    pub known: Vec<String>,
}

/// Whether `name` is one of the compose project's `networks`; the error lists the known ones.
pub fn check_network_name(name: &str, networks: &[String]) -> Result<(), UnknownNetwork> {
    if networks.iter().any(|n| n == name) {
        return Ok(());
    }
    let mut known = networks.to_vec();
    known.sort();
    Err(UnknownNetwork {
        name: name.to_string(),
        known,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with_compose() -> tempfile::TempDir {
        let d = tempfile::tempdir().expect("tempdir");
        std::fs::write(d.path().join("compose.yml"), "services: {}\n").expect("write");
        std::fs::write(d.path().join("x.spec"), "").expect("write");
        d
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn full_scenario_parses_and_resolves() {
        let d = dir_with_compose();
        let text = r#"
time_limit = "2m"
seed = 7
output = "out/{run_id}"

[compose]
files = ["compose.yml"]
project = "ctk-test"

[sensors]
stats_interval = "2s"

[sensors.jmx]
services = ["a"]
interval = "1s"
[[sensors.jmx.mbeans]]
mbean = "akka:type=Cluster"
attributes = ["ClusterStatus"]

[[sensors.http]]
service = "a"
port = 8080
path = "/health"

[[schedule]]
at = "5s"
fault = "pause"
target = "a"
duration = "3s"

[[schedule]]
at = "1s"
fault = "partition"
target = { between = [["a"], ["b"]] }
"#;
        let p = d.path().join("s.toml");
        let l = LoadedScenario::parse(&p, text).expect("parses");
        let r = l.resolve().expect("resolves");
        assert_eq!(r.time_limit, Duration::from_secs(120));
        assert_eq!(r.stats_interval, Some(Duration::from_secs(2)));
        assert_eq!(l.scenario.sensors.jmx.as_ref().map(|j| j.port), Some(8778));
        match r.plan {
            Plan::Schedule(f) => {
                assert_eq!(f.len(), 2);
                assert_eq!(f[0].action, "partition");
                assert_eq!(
                    f[0].target,
                    Target::Between(vec!["a".into()], vec!["b".into()])
                );
                assert_eq!(f[1].duration, Some(Duration::from_secs(3)));
            }
            other => panic!("unexpected plan {other:?}"),
        }
        let ok = |_: &ScheduledFault| Ok(());
        assert!(l.check_against(&["a".into(), "b".into()], &ok).is_ok());
        let e = l
            .check_against(&["a".into()], &ok)
            .expect_err("b is unknown");
        assert_eq!(e.0.len(), 1);
        assert_eq!((e.0[0].line, e.0[0].col), (34, 10));
        assert!(
            e.0[0].message.contains("no service `b`"),
            "{}",
            e.0[0].message
        );
        let bad = |f: &ScheduledFault| {
            if f.action == "pause" {
                Err(InvalidFault::from("unknown fault action `pause`"))
            } else {
                Ok(())
            }
        };
        let e = l
            .check_against(&["a".into(), "b".into()], &bad)
            .expect_err("pause refused");
        assert_eq!((e.0[0].line, e.0[0].col), (27, 9));
    }

    #[test]
    fn unknown_key_points_at_line_and_column() {
        let text = "[compose]\nfiles = [\"c.yml\"]\nprojet = \"x\"\n";
        let e = LoadedScenario::parse(Path::new("s.toml"), text).expect_err("unknown key");
        assert_eq!((e.0[0].line, e.0[0].col), (3, 1));
        assert!(
            e.0[0].message.contains("unknown field `projet`"),
            "{}",
            e.0[0].message
        );
        assert!(e.to_string().starts_with("s.toml:3:1: "), "{e}");
    }

    /// Every mistake is reported, in file order: unknown keys anywhere (not only the first),
    /// with the value and name errors found by resolving and checking what is left.
    #[test]
    fn every_mistake_is_reported_in_file_order() {
        let d = dir_with_compose();
        let text = r#"
time_limit = "1x"
[compose]
files = ["compose.yml"]
[sensors]
stats = true
[[sensors.http]]
service = "a"
port = 80
interval = "1s"
[sensors.pcap]
services = ["a"]
networks = ["frnt"]
buffer_kib = 64
snaplen = 96
bogus = 1
[[schedule]]
at = "1s"
fault = "pause"
target = "a"
durration = "2s"
[sensors.htp]
x = 1
"#;
        let p = d.path().join("s.toml");
        assert!(LoadedScenario::parse(&p, text).is_err());
        let (l, mut errs) = LoadedScenario::parse_lenient(&p, text).expect("parses leniently");
        let (_, mut r) = l.resolve_partial();
        errs.append(&mut r);
        let n = ["default".to_string(), "front".to_string()];
        if let Err(e) = l.check_networks(&n) {
            errs.extend(e.0);
        }
        let mut all = ScenarioErrors(errs);
        all.sort();
        let got: Vec<String> = all
            .0
            .iter()
            .map(|x| format!("{}:{} {}", x.line, x.col, x.message))
            .collect();
        assert_eq!(got.len(), 5, "{got:#?}");
        assert!(got[0].starts_with("2:14 bad duration `1x`"), "{got:#?}");
        assert!(
            got[1].starts_with("13:13 pcap sensor: no network `frnt`"),
            "{got:#?}"
        );
        assert!(got[2].starts_with("16:1 unknown field `bogus`"), "{got:#?}");
        assert!(
            got[3].starts_with("21:1 unknown field `durration`"),
            "{got:#?}"
        );
        assert!(got[4].starts_with("22:10 unknown field `htp`"), "{got:#?}");
        // what was valid around the unknown keys is kept
        assert_eq!(
            l.scenario.sensors.pcap.as_ref().map(|p| p.snaplen),
            Some(96)
        );
        assert_eq!(l.scenario.schedule.len(), 1);
        // rendered as a diagnostic: position, message, source line, marker
        assert_eq!(
            all.0[2].render(),
            format!(
                "error: {}:16:1: unknown field `bogus`, expected one of `services`, `containers`, `networks`, `snaplen`, `buffer_kib`\n   |\n16 | bogus = 1\n   | ^^^^^",
                p.display()
            )
        );
    }

    #[test]
    fn a_syntax_error_is_reported_with_the_unknown_keys_before_it() {
        let text = "[compose]\nfiles = [\"c.yml\"]\nprojet = \"x\"\nup_timeout = 5\n";
        let e = LoadedScenario::parse_lenient(Path::new("s.toml"), text).expect_err("bad type");
        let got: Vec<(usize, usize)> = e.0.iter().map(|x| (x.line, x.col)).collect();
        assert_eq!(got, vec![(3, 1), (4, 14)], "{e}");
    }

    #[test]
    fn missing_files_and_bad_durations_are_all_reported() {
        let d = dir_with_compose();
        let text = r#"
time_limit = "ten minutes"
[compose]
files = ["compose.yml", "missing.yml"]
[[schedule]]
at = "5"
fault = "kill"
target = { service = "a", network = "n" }
"#;
        let l = LoadedScenario::parse(&d.path().join("s.toml"), text).expect("parses");
        let e = l.resolve().expect_err("invalid");
        let msgs: Vec<String> =
            e.0.iter()
                .map(|x| format!("{}:{} {}", x.line, x.col, x.message))
                .collect();
        assert_eq!(e.0.len(), 4, "{msgs:?}");
        assert!(msgs[0].starts_with("4:25 compose file"), "{msgs:?}");
        assert!(
            msgs.iter()
                .any(|m| m.starts_with("2:14 ") && m.contains("ten minutes")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter()
                .any(|m| m.starts_with("6:6 ") && m.contains("no unit")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter().any(|m| m.contains("more than one form")),
            "{msgs:?}"
        );
    }

    #[test]
    fn network_names_are_checked_with_their_locations() {
        let d = dir_with_compose();
        let text = r#"
[compose]
files = ["compose.yml"]
[sensors.jmx]
services = ["a"]
networks = ["middle", "outer"]
[sensors.pcap]
services = ["a"]
networks = ["left", "midle"]
buffer_kib = 4096
[[schedule]]
at = "1s"
fault = "loss"
target = { network = "nowhere" }
params = { percent = 30 }
[[schedule]]
at = "2s"
fault = "disconnect"
target = "a"
params = { network = "rigth" }
[[schedule]]
at = "3s"
fault = "partition"
target = { network = "middle" }
"#;
        let l = LoadedScenario::parse(&d.path().join("s.toml"), text).expect("parses");
        assert!(l.resolve().is_ok());
        assert_eq!(
            l.scenario
                .sensors
                .pcap
                .as_ref()
                .and_then(|p| p.buffer_kib.as_ref())
                .map(|b| *b.get_ref()),
            Some(4096)
        );
        let known: Vec<String> = ["default", "left", "middle", "right"]
            .map(String::from)
            .to_vec();
        let e = l.check_networks(&known).expect_err("four unknown networks");
        let msgs: Vec<String> =
            e.0.iter()
                .map(|x| format!("{}:{} {}", x.line, x.col, x.message))
                .collect();
        assert_eq!(msgs.len(), 4, "{msgs:?}");
        assert!(
            msgs[0].starts_with("6:23 jmx sensor: no network `outer`"),
            "{msgs:?}"
        );
        assert!(
            msgs[0].ends_with("(networks: default, left, middle, right)"),
            "{msgs:?}"
        );
        assert!(
            msgs[1].starts_with("9:21 pcap sensor: no network `midle`"),
            "{msgs:?}"
        );
        assert!(
            msgs[2].starts_with("14:10 fault target: no network `nowhere`"),
            "{msgs:?}"
        );
        assert!(
            msgs[3].starts_with("18:9 fault `disconnect` parameter network: no network `rigth`"),
            "{msgs:?}"
        );
        let all: Vec<String> = ["middle", "outer", "left", "midle", "nowhere", "rigth"]
            .map(String::from)
            .to_vec();
        assert!(l.check_networks(&all).is_ok());
        assert_eq!(
            check_network_name("x", &[]).map_err(|e| e.to_string()),
            Err("no network `x` in the compose configuration (networks: none)".to_string())
        );
    }

    #[test]
    fn http_and_prom_probes_take_a_list_of_services() {
        let d = dir_with_compose();
        let text = r#"
[compose]
files = ["compose.yml"]
[[sensors.http]]
services = ["a", "b", "c"]
port = 8080
[[sensors.prom]]
service = "a"
services = ["d"]
port = 9100
[[sensors.prom]]
port = 9101
"#;
        let l = LoadedScenario::parse(&d.path().join("s.toml"), text).expect("parses");
        let names = |v: Vec<&Spanned<String>>| -> Vec<String> {
            v.into_iter().map(|s| s.get_ref().clone()).collect()
        };
        assert_eq!(
            names(l.scenario.sensors.http[0].service_names()),
            vec!["a", "b", "c"]
        );
        assert_eq!(
            names(l.scenario.sensors.prom[0].service_names()),
            vec!["a", "d"]
        );
        let known: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let e = l
            .check_against(&known, &|_| Ok(()))
            .expect_err("unknown d, no service at all");
        let msgs: Vec<String> =
            e.0.iter()
                .map(|x| format!("{}:{} {}", x.line, x.col, x.message))
                .collect();
        assert_eq!(msgs.len(), 2, "{msgs:?}");
        assert!(
            msgs.iter()
                .any(|m| m.starts_with("9:13 prom sensor: no service `d`")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter()
                .any(|m| m == "12:8 prom sensor: give `service` or `services`"),
            "{msgs:?}"
        );
    }

    #[test]
    fn otlp_section_is_checked() {
        let d = dir_with_compose();
        let text = "[compose]\nfiles = [\"compose.yml\"]\n[sensors.otlp]\nservices = [\"a\", \"nope\"]\nqueue = 0\n";
        let l = LoadedScenario::parse(&d.path().join("s.toml"), text).expect("parses");
        let o = l.scenario.sensors.otlp.as_ref().expect("otlp section");
        assert_eq!(
            (o.grpc_port, o.http_port),
            (0, 0),
            "ports are picked per run by default"
        );
        let e = l.resolve().expect_err("zero queue");
        assert_eq!((e.0[0].line, e.0[0].col), (5, 9));
        assert!(e.0[0].message.contains("otlp sensor: queue"), "{e}");
        let e = l
            .check_against(&["a".into()], &|_| Ok(()))
            .expect_err("unknown service");
        assert!(
            e.0[0].message.contains("otlp sensor: no service `nope`"),
            "{e}"
        );
        let same = "[compose]\nfiles = [\"compose.yml\"]\n[sensors.otlp]\ngrpc_port = 4317\nhttp_port = 4317\n";
        let l = LoadedScenario::parse(&d.path().join("s.toml"), same).expect("parses");
        let e = l.resolve().expect_err("one port for both");
        assert!(e.0[0].message.contains("both 4317"), "{e}");
        let bad = "[compose]\nfiles = [\"compose.yml\"]\n[sensors.otlp]\nendpoint = \"x\"\n";
        assert!(
            LoadedScenario::parse(&d.path().join("s.toml"), bad).is_err(),
            "unknown key"
        );
    }

    #[test]
    fn pcap_buffer_of_zero_is_refused() {
        let d = dir_with_compose();
        let text = "[compose]\nfiles = [\"compose.yml\"]\n[sensors.pcap]\nservices = [\"a\"]\nbuffer_kib = 0\n";
        let l = LoadedScenario::parse(&d.path().join("s.toml"), text).expect("parses");
        let e = l.resolve().expect_err("zero buffer");
        assert_eq!((e.0[0].line, e.0[0].col), (5, 14));
        assert!(e.0[0].message.contains("buffer_kib"), "{e}");
    }

    #[test]
    fn experiment_and_schedule_are_exclusive() {
        let d = dir_with_compose();
        let text = r#"
[compose]
files = ["compose.yml"]
[experiment]
specs = ["x.spec"]
name = "E"
[[schedule]]
at = "1s"
fault = "pause"
target = "a"
"#;
        let l = LoadedScenario::parse(&d.path().join("s.toml"), text).expect("parses");
        let e = l.resolve().expect_err("both");
        assert!(e.to_string().contains("not both"), "{e}");
    }

    #[test]
    fn experiment_resolves_spec_paths() {
        let d = dir_with_compose();
        let text = "[compose]\nfiles = [\"compose.yml\"]\n[experiment]\nspecs = [\"x.spec\"]\nname = \"E\"\nsettle = \"2s\"\n";
        let l = LoadedScenario::parse(&d.path().join("s.toml"), text).expect("parses");
        match l.resolve().expect("ok").plan {
            Plan::Experiment {
                specs,
                name,
                settle,
            } => {
                assert_eq!(specs, vec![d.path().join("x.spec")]);
                assert_eq!(name, "E");
                assert_eq!(settle, Duration::from_secs(2));
            }
            other => panic!("unexpected plan {other:?}"),
        }
    }

    #[test]
    fn halt_conditions_resolve_and_their_mistakes_are_located() {
        let d = dir_with_compose();
        let p = d.path().join("s.toml");
        // the experiment's specs by default, cool-down 5s by default
        let text = "[compose]\nfiles = [\"compose.yml\"]\n[experiment]\nspecs = [\"x.spec\"]\nname = \"E\"\n[halt]\nmonitors = [\"m\"]\n";
        let l = LoadedScenario::parse(&p, text).expect("parses");
        let h = l.resolve().expect("ok").halt.expect("halt");
        assert_eq!(h.specs, vec![d.path().join("x.spec")]);
        assert_eq!(h.cool_down, Duration::from_secs(5));
        assert_eq!(h.monitors[0].0, "m");
        // a schedule run needs `specs`; a bad cool-down and an empty entry are located
        let text = "[compose]\nfiles = [\"compose.yml\"]\n[halt]\nmonitors = [\" \"]\ncool_down = \"5 parsecs\"\n";
        let l = LoadedScenario::parse(&p, text).expect("parses");
        let e = l.resolve().expect_err("three errors").0;
        let msgs: Vec<String> = e.iter().map(|e| e.to_string()).collect();
        assert_eq!(msgs.len(), 3, "{msgs:?}");
        assert!(
            msgs.iter().any(|m| m.contains("[halt] needs `specs`")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter()
                .any(|m| m.contains("s.toml:4:13: [halt] monitors: empty monitor expression")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter().any(|m| m.contains("s.toml:5:13: bad duration")),
            "{msgs:?}"
        );
        // unknown keys are refused as everywhere
        let text = "[compose]\nfiles = [\"compose.yml\"]\n[scope]\nservice = [\"a\"]\n";
        let e = LoadedScenario::parse(&p, text).expect_err("unknown key").0;
        assert!(
            e[0].to_string()
                .contains("s.toml:4:1: unknown field `service`"),
            "{e:?}"
        );
    }

    #[test]
    fn scope_resolves_services_and_labels_and_refuses_targets_outside() {
        let d = dir_with_compose();
        let p = d.path().join("s.toml");
        let text = "[compose]\nfiles = [\"compose.yml\"]\n[scope]\nservices = [\"a\", \"zz\"]\nlabels = [\"tier=back\", \"nope\"]\n[[schedule]]\nat = \"1s\"\nfault = \"pause\"\ntarget = \"c\"\n[[schedule]]\nat = \"1s\"\nfault = \"pause\"\ntarget = { container = \"p-b-1\" }\n";
        let l = LoadedScenario::parse(&p, text).expect("parses");
        let config = "services:\n  a:\n    image: x\n  b:\n    image: x\n    labels:\n      tier: back\n  c:\n    image: x\n    networks: [mid]\n";
        let facts = crate::compose::scope_facts(config).expect("facts");
        assert_eq!(facts.networks.get("mid"), Some(&vec!["c".to_string()]));
        let services: Vec<String> = vec!["a".into(), "b".into(), "c".into()];
        let (scope, errs) = l.resolve_scope(&services, &facts);
        let scope = scope.expect("scope");
        assert_eq!(scope.services(), vec!["a".to_string(), "b".to_string()]);
        let msgs: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            msgs,
            vec![
                format!("{}:4:18: scope: no service `zz` in the compose configuration (services: a, b, c)", p.display()),
                format!("{}:5:24: scope: no service has the label `nope`", p.display()),
            ]
        );
        let errs = l.check_scope(&scope, &facts, "p");
        let msgs: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            msgs,
            vec![format!(
                "{}:9:10: fault target outside the scope: target names `c` (scope: a, b)",
                p.display()
            )],
            "the container p-b-1 is b's: in scope"
        );
    }
}
