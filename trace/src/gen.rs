//! The deterministic synthetic trace generator, for tests and benchmarks.
//!
//! [`events`] yields the events of a simulated run of an Akka-like cluster (services such as
//! `left-a`, `left-b`, `right-a`, `right-b`) under a [`Scenario`] of faults: container log lines,
//! periodic JMX polls of `akka:type=Cluster` with Akka's `ClusterStatus` structure (members,
//! self-address, unreachable with observed-by, computed from the faults: a paused, killed or
//! partitioned node becomes unreachable after [`GenConfig::unreachable_after`], reachable again
//! after it answers, auto-downed after [`GenConfig::auto_down_after`] when set), poll errors for
//! paused or killed nodes, docker events, stats, fault events, notes and recorder step events in
//! the shapes the recorder writes (docs/trace-format.md, docs/sensors.md, docs/faults.md). The
//! same config always gives the same events. Events are yielded in *arrival* order: with
//! [`GenConfig::disorder`] > 0 timestamps lag arrival by up to that much, so the writer sees
//! slightly unsorted input as it does from real sensors.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::manifest::{ComposeInfo, ContainerInfo, Outcome, ScenarioInfo, ServiceInfo};
use crate::{Event, FinalizeSummary, Manifest, PacketRecord, TraceError, TraceWriter};

/// 2026-01-01T00:00:00Z in ns: the default start of generated traces.
pub const DEFAULT_START_NS: i64 = 1_767_225_600_000_000_000;

/// What a scenario step does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GenAction {
    /// Freeze a service (docker pause): it stops answering; peers mark it unreachable.
    Pause(String),
    /// Unfreeze a paused service.
    Unpause(String),
    /// Kill a service (SIGKILL): it never answers again.
    Kill(String),
    /// Cut the network between groups (services in different groups cannot talk; services not
    /// listed keep talking to everyone).
    Partition(Vec<Vec<String>>),
    /// Remove every partition.
    Heal,
    /// A free-text note (`note "…"` step).
    Note(String),
}

impl GenAction {
    fn kind(&self) -> &'static str {
        match self {
            GenAction::Pause(_) => "pause",
            GenAction::Unpause(_) => "unpause",
            GenAction::Kill(_) => "kill",
            GenAction::Partition(_) => "partition",
            GenAction::Heal => "heal",
            GenAction::Note(_) => "note",
        }
    }
}

/// One scheduled step, `at` after the trace start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenStep {
    pub at: Duration,
    pub action: GenAction,
}

/// The faults of a generated run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scenario {
    pub steps: Vec<GenStep>,
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

impl Scenario {
    /// No faults: the cluster forms and stays whole.
    pub fn healthy() -> Scenario {
        Scenario::default()
    }

    /// A "GC pause": `node` paused at `at` for `for_`, then unpaused.
    pub fn gc_pause(node: &str, at: Duration, for_: Duration) -> Scenario {
        Scenario {
            steps: vec![
                GenStep {
                    at,
                    action: GenAction::Pause(node.into()),
                },
                GenStep {
                    at: at + for_,
                    action: GenAction::Unpause(node.into()),
                },
            ],
        }
    }

    /// `node` killed at `at` (it stays unreachable, or is downed with auto-down).
    pub fn node_lost(node: &str, at: Duration) -> Scenario {
        Scenario {
            steps: vec![GenStep {
                at,
                action: GenAction::Kill(node.into()),
            }],
        }
    }

    /// The seed's AutoDownSplitBrain run over left-a, left-b, right-a, right-b: a note, right-a
    /// paused at 20 s for 6 s (unreachable, then back), then at 45 s the middle network is cut so the cluster splits
    /// into {left-a, left-b}, {right-a}, {right-b} (use with `auto_down_after` of about 10 s and a
    /// duration of 70 s so the split completes).
    pub fn split_brain() -> Scenario {
        Scenario {
            steps: vec![
                GenStep {
                    at: Duration::from_secs(15),
                    action: GenAction::Note("cluster formed, pausing right-a".into()),
                },
                GenStep {
                    at: Duration::from_secs(20),
                    action: GenAction::Pause("right-a".into()),
                },
                GenStep {
                    at: Duration::from_secs(26),
                    action: GenAction::Unpause("right-a".into()),
                },
                GenStep {
                    at: Duration::from_secs(45),
                    action: GenAction::Partition(vec![
                        names(&["left-a", "left-b"]),
                        names(&["right-a"]),
                        names(&["right-b"]),
                    ]),
                },
            ],
        }
    }
}

/// Generator configuration. Build from `Default` and change what matters.
#[derive(Debug, Clone)]
pub struct GenConfig {
    pub seed: u64,
    /// Service names (one container each, named `<project>_<service>_1`).
    pub services: Vec<String>,
    /// Length of the run.
    pub duration: Duration,
    /// Trace start, UTC ns.
    pub start_ns: i64,
    /// Compose project name.
    pub project: String,
    /// Filler log lines per second per service.
    pub log_rate: f64,
    /// JMX poll interval (zero: no polls).
    pub jmx_interval: Duration,
    /// Stats interval (zero: no stats).
    pub stats_interval: Duration,
    /// Packets per second in total between services (zero: no packets), written to
    /// `packets.parquet` by [`write_trace`].
    pub packet_rate: f64,
    /// Stop after this many events.
    pub max_events: Option<u64>,
    /// Timestamps lag arrival by up to this much (unsorted writer input).
    pub disorder: Duration,
    /// The faults.
    pub scenario: Scenario,
    /// When set, the steps are recorded as an experiment of this name (recorder step events,
    /// fault `experiment`/`step` fields), with an `expect` step before each fault.
    pub experiment: Option<String>,
    /// Services join one after another this far apart, starting at 1 s.
    pub join_interval: Duration,
    /// A silent peer is marked unreachable after this long.
    pub unreachable_after: Duration,
    /// An unreachable peer is downed and removed after this long (None: never).
    pub auto_down_after: Option<Duration>,
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            seed: 1,
            services: names(&["left-a", "left-b", "right-a", "right-b"]),
            duration: Duration::from_secs(60),
            start_ns: DEFAULT_START_NS,
            project: "gen".into(),
            log_rate: 5.0,
            jmx_interval: Duration::from_secs(1),
            stats_interval: Duration::from_secs(1),
            packet_rate: 0.0,
            max_events: None,
            disorder: Duration::from_millis(50),
            scenario: Scenario::healthy(),
            experiment: None,
            join_interval: Duration::from_millis(500),
            unreachable_after: Duration::from_secs(3),
            auto_down_after: None,
        }
    }
}

impl GenConfig {
    /// Sizes the run for about `n` events (exactly `n` with `max_events`): the duration grows
    /// with `n` (at least 60 s) and the filler log rate makes up the rest.
    pub fn with_event_count(mut self, n: u64) -> GenConfig {
        let k = self.services.len().max(1) as f64;
        let secs = (n as f64 / 20_000.0).max(60.0);
        self.duration = Duration::from_secs_f64(secs);
        let periodic = |d: Duration| {
            if d.is_zero() {
                0.0
            } else {
                1.0 / d.as_secs_f64()
            }
        };
        let other = periodic(self.jmx_interval) + periodic(self.stats_interval);
        self.log_rate = (n as f64 / secs / k - other).max(0.0) * 1.05;
        self.max_events = Some(n);
        self
    }

    fn container(&self, svc: &str) -> String {
        format!("{}_{}_1", self.project, svc)
    }

    fn ns(&self, d: Duration) -> i64 {
        self.start_ns + d.as_nanos() as i64
    }
}

/// The Akka address of a generated service: `akka.tcp://Sys@<service>:2552`.
pub fn akka_address(service: &str) -> String {
    format!("akka.tcp://Sys@{service}:2552")
}

/// SplitMix64: small, fast, deterministic (also the crate's tests' source of noise).
#[derive(Debug, Clone)]
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

const NEVER: i64 = i64::MAX / 4;

/// The cluster model: who is silent to whom and when, derived from the scenario.
struct Model {
    svcs: Vec<String>,
    join_ns: Vec<i64>,
    up_delay: i64,
    unreachable_after: i64,
    recover_after: i64,
    auto_down_after: Option<i64>,
    /// silence[x][y]: intervals [a, b) during which y does not answer x.
    silence: Vec<Vec<Vec<(i64, i64)>>>,
    /// Paused or killed intervals per service (it does not answer polls).
    frozen: Vec<Vec<(i64, i64, bool /*killed*/)>>,
}

impl Model {
    fn new(cfg: &GenConfig) -> Model {
        let svcs = cfg.services.clone();
        let n = svcs.len();
        let idx = |s: &str| svcs.iter().position(|x| x == s);
        let join_ns = (0..n)
            .map(|i| cfg.ns(Duration::from_secs(1) + cfg.join_interval * i as u32))
            .collect();
        // Walk the steps keeping the current state; close intervals when it changes.
        let mut steps = cfg.scenario.steps.clone();
        steps.sort_by_key(|s| s.at);
        let mut paused = vec![None::<i64>; n];
        let mut killed = vec![None::<i64>; n];
        let mut groups: Option<Vec<Vec<String>>> = None;
        let mut frozen = vec![Vec::new(); n];
        let mut cut_since = vec![vec![None::<i64>; n]; n];
        let mut silence = vec![vec![Vec::new(); n]; n];
        let separated = |g: &Option<Vec<Vec<String>>>, a: &str, b: &str| -> bool {
            let Some(g) = g else { return false };
            let ga = g.iter().position(|grp| grp.iter().any(|s| s == a));
            let gb = g.iter().position(|grp| grp.iter().any(|s| s == b));
            matches!((ga, gb), (Some(x), Some(y)) if x != y)
        };
        let silent_now = |paused: &[Option<i64>],
                          killed: &[Option<i64>],
                          g: &Option<Vec<Vec<String>>>,
                          x: usize,
                          y: usize| {
            x != y
                && (paused[y].is_some() || killed[y].is_some() || separated(g, &svcs[x], &svcs[y]))
        };
        let mut apply = |t: i64,
                         act: &GenAction,
                         paused: &mut Vec<Option<i64>>,
                         killed: &mut Vec<Option<i64>>,
                         groups: &mut Option<Vec<Vec<String>>>| {
            let before: Vec<Vec<bool>> = (0..n)
                .map(|x| {
                    (0..n)
                        .map(|y| silent_now(paused, killed, groups, x, y))
                        .collect()
                })
                .collect();
            match act {
                GenAction::Pause(s) => {
                    if let Some(i) = idx(s) {
                        paused[i].get_or_insert(t);
                    }
                }
                GenAction::Unpause(s) => {
                    if let Some(i) = idx(s) {
                        if let Some(a) = paused[i].take() {
                            frozen[i].push((a, t, false));
                        }
                    }
                }
                GenAction::Kill(s) => {
                    if let Some(i) = idx(s) {
                        killed[i].get_or_insert(t);
                    }
                }
                GenAction::Partition(g) => *groups = Some(g.clone()),
                GenAction::Heal => *groups = None,
                GenAction::Note(_) => {}
            }
            for x in 0..n {
                for y in 0..n {
                    let now = silent_now(paused, killed, groups, x, y);
                    if now && !before[x][y] {
                        cut_since[x][y] = Some(t);
                    } else if !now && before[x][y] {
                        if let Some(a) = cut_since[x][y].take() {
                            silence[x][y].push((a, t));
                        }
                    }
                }
            }
        };
        for s in &steps {
            apply(
                cfg.ns(s.at),
                &s.action,
                &mut paused,
                &mut killed,
                &mut groups,
            );
        }
        for i in 0..n {
            if let Some(a) = paused[i] {
                frozen[i].push((a, NEVER, false));
            }
            if let Some(a) = killed[i] {
                frozen[i].push((a, NEVER, true));
            }
        }
        for x in 0..n {
            for y in 0..n {
                if let Some(a) = cut_since[x][y] {
                    silence[x][y].push((a, NEVER));
                }
            }
        }
        Model {
            svcs,
            join_ns,
            up_delay: 1_000_000_000,
            unreachable_after: cfg.unreachable_after.as_nanos() as i64,
            recover_after: 1_000_000_000,
            auto_down_after: cfg.auto_down_after.map(|d| d.as_nanos() as i64),
            silence,
            frozen,
        }
    }

    /// Whether `x` sees `y` unreachable at `t`, and since when (the marking time).
    fn unreachable_since(&self, x: usize, y: usize, t: i64) -> Option<i64> {
        self.silence[x][y].iter().find_map(|&(a, b)| {
            let mark = a + self.unreachable_after;
            let clear = if b >= NEVER {
                NEVER
            } else {
                b + self.recover_after
            };
            (b - a >= self.unreachable_after && t >= mark && t < clear).then_some(mark)
        })
    }

    /// When `x` downs `y` (auto-down), if ever by `t`.
    fn downed_at(&self, x: usize, y: usize) -> Option<i64> {
        let ad = self.auto_down_after?;
        self.silence[x][y].iter().find_map(|&(a, b)| {
            let mark = a + self.unreachable_after;
            let down = mark + ad;
            (b > down).then_some(down)
        })
    }

    fn frozen_at(&self, x: usize, t: i64) -> Option<bool> {
        self.frozen[x]
            .iter()
            .find(|&&(a, b, _)| t >= a && t < b)
            .map(|&(_, _, k)| k)
    }

    /// The ClusterStatus (and derived attributes) `x` reports at `t`.
    fn jmx(&self, x: usize, t: i64) -> Value {
        let me = akka_address(&self.svcs[x]);
        let mut members = Vec::new();
        let mut up = Vec::new();
        let joined_self = t >= self.join_ns[x];
        for y in 0..self.svcs.len() {
            let visible = if y == x {
                true
            } else {
                joined_self && t >= self.join_ns[y]
            };
            if !visible {
                continue;
            }
            let status = match self.downed_at(x, y) {
                Some(d) if t >= d + 1_000_000_000 => continue,
                Some(d) if t >= d => "Down",
                _ if t < self.join_ns[y] + self.up_delay => "Joining",
                _ => "Up",
            };
            if status == "Up" {
                up.push(y);
            }
            members.push(json!({"address": akka_address(&self.svcs[y]), "status": status, "roles": ["dc-default"]}));
        }
        let mut unreachable = Vec::new();
        for y in 0..self.svcs.len() {
            if y == x
                || self.downed_at(x, y).is_some_and(|d| t >= d + 1_000_000_000)
                || !joined_self
                || t < self.join_ns[y]
            {
                continue;
            }
            if self.unreachable_since(x, y, t).is_some() {
                let observers: Vec<String> = (0..self.svcs.len())
                    .filter(|&z| {
                        z != y
                            && (z == x
                                || (self.unreachable_since(x, z, t).is_none()
                                    && t >= self.join_ns[z]))
                    })
                    .filter(|&z| self.unreachable_since(z, y, t).is_some())
                    .map(|z| akka_address(&self.svcs[z]))
                    .collect();
                unreachable
                    .push(json!({"node": akka_address(&self.svcs[y]), "observed-by": observers}));
            }
        }
        let reachable_up: Vec<usize> = up
            .iter()
            .copied()
            .filter(|&y| y == x || self.unreachable_since(x, y, t).is_none())
            .collect();
        let leader = reachable_up
            .iter()
            .map(|&y| akka_address(&self.svcs[y]))
            .min();
        let my_status = members
            .iter()
            .find(|m| m["address"] == me.as_str())
            .and_then(|m| m["status"].as_str())
            .unwrap_or("Removed")
            .to_string();
        let member_list: Vec<String> = members
            .iter()
            .filter_map(|m| m["address"].as_str().map(str::to_string))
            .collect();
        let unreachable_list: Vec<String> = unreachable
            .iter()
            .filter_map(|u| u["node"].as_str().map(str::to_string))
            .collect();
        json!({
            "ClusterStatus": {"members": members, "self-address": me, "unreachable": unreachable},
            "Members": member_list.join(","),
            "Unreachable": unreachable_list.join(","),
            "Leader": leader.unwrap_or_default(),
            "MemberStatus": my_status,
            "Available": my_status == "Up",
        })
    }
}

/// Precomputes the discrete (non-periodic) events: docker lifecycle, faults, notes, recorder
/// steps and the cluster's transition log lines.
fn discrete(cfg: &GenConfig, m: &Model) -> Vec<Event> {
    let mut out = Vec::new();
    let n = cfg.services.len();
    for (i, s) in cfg.services.iter().enumerate() {
        let c = cfg.container(s);
        let attrs = json!({"name": c, "image": format!("{}-{}:latest", cfg.project, "node"), "com.docker.compose.service": s, "com.docker.compose.project": cfg.project});
        out.push(
            Event::new(cfg.start_ns + 1_000_000 * i as i64, "docker", "create")
                .service(s)
                .container(&c)
                .data(&attrs),
        );
        out.push(
            Event::new(
                cfg.start_ns + 200_000_000 + 1_000_000 * i as i64,
                "docker",
                "start",
            )
            .service(s)
            .container(&c)
            .data(&attrs),
        );
        out.push(
            Event::new(m.join_ns[i], "log", "stdout")
                .service(s)
                .container(&c)
                .message(format!(
                    "[INFO] Cluster Node [{}] - Starting up, Akka version [2.5.32] ...",
                    akka_address(s)
                )),
        );
        // Leader (lowest address) moves each joining node to Up.
        let leader = cfg.services.iter().min().cloned().unwrap_or_default();
        out.push(
            Event::new(m.join_ns[i] + m.up_delay, "log", "stdout")
                .service(&leader)
                .container(cfg.container(&leader))
                .message(format!(
                    "[INFO] Cluster Node [{}] - Leader is moving node [{}] to [Up]",
                    akka_address(&leader),
                    akka_address(s)
                )),
        );
    }
    // Transitions of reachability, as logged by each observer.
    for x in 0..n {
        for y in 0..n {
            for &(a, b) in &m.silence[x][y] {
                if b - a < m.unreachable_after || m.frozen_at(x, a + m.unreachable_after).is_some()
                {
                    continue;
                }
                let (sx, sy) = (&cfg.services[x], &cfg.services[y]);
                let c = cfg.container(sx);
                out.push(Event::new(a + m.unreachable_after, "log", "stdout").service(sx).container(&c).message(format!(
                    "[WARN] Cluster Node [{}] - Marking node(s) as UNREACHABLE [Member(address = {}, status = Up)]. Node roles [dc-default]",
                    akka_address(sx),
                    akka_address(sy)
                )));
                if let Some(d) = m.downed_at(x, y) {
                    out.push(
                        Event::new(d, "log", "stdout")
                            .service(sx)
                            .container(&c)
                            .message(format!(
                                "[INFO] Cluster Node [{}] - auto-downing unreachable node [{}]",
                                akka_address(sx),
                                akka_address(sy)
                            )),
                    );
                } else if b < NEVER {
                    out.push(Event::new(b + m.recover_after, "log", "stdout").service(sx).container(&c).message(format!(
                        "[INFO] Cluster Node [{}] - Marking node(s) as REACHABLE [Member(address = {}, status = Up)]. Node roles [dc-default]",
                        akka_address(sx),
                        akka_address(sy)
                    )));
                }
            }
        }
    }
    // Faults, notes, experiment steps.
    let mut steps = cfg.scenario.steps.clone();
    steps.sort_by_key(|s| s.at);
    let mut prev_end = cfg.start_ns;
    let mut step_ix = 0usize;
    for (k, s) in steps.iter().enumerate() {
        let t = cfg.ns(s.at);
        let exp = cfg.experiment.clone();
        let step_event = |out: &mut Vec<Event>,
                          ix: usize,
                          kind: &str,
                          phase: &str,
                          ts: i64,
                          verdict: Option<&str>| {
            if let Some(e) = &exp {
                out.push(Event::new(ts, "recorder", "step").data(&json!({
                    "experiment": e, "step": ix, "step_kind": kind, "phase": phase, "verdict": verdict
                })));
            }
        };
        if !matches!(s.action, GenAction::Note(_)) {
            // An expect step before each fault.
            step_event(&mut out, step_ix, "expect", "start", prev_end, None);
            step_event(
                &mut out,
                step_ix,
                "expect",
                "end",
                t - 1_000_000,
                Some("accept"),
            );
            step_ix += 1;
        }
        match &s.action {
            GenAction::Note(text) => {
                step_event(&mut out, step_ix, "note", "start", t, None);
                out.push(Event::new(t, "note", "note").message(text.clone()));
                step_event(&mut out, step_ix, "note", "end", t, None);
                step_ix += 1;
                prev_end = t;
            }
            act => {
                let (services, networks): (Vec<String>, Vec<String>) = match act {
                    GenAction::Pause(x) | GenAction::Unpause(x) | GenAction::Kill(x) => {
                        (vec![x.clone()], vec![])
                    }
                    GenAction::Partition(g) => (g.concat(), vec!["middle".into()]),
                    _ => (vec![], vec!["middle".into()]),
                };
                let single = (services.len() == 1).then(|| services[0].clone());
                let containers: Vec<String> = services.iter().map(|s| cfg.container(s)).collect();
                let params = match act {
                    GenAction::Kill(_) => json!({"signal": "SIGKILL"}),
                    GenAction::Partition(g) => json!({"groups": g}),
                    _ => json!({}),
                };
                let ended = t + 3_000_000;
                step_event(&mut out, step_ix, "do", "start", t, None);
                let mut ev = Event::new(t, "fault", act.kind())
                    .message(format!("{} {}", act.kind(), if services.is_empty() { "network middle".to_string() } else { services.join(", ") }))
                    .data(&json!({
                        "fault_id": format!("f{}", k + 1),
                        "phase": "applied",
                        "experiment": cfg.experiment,
                        "step": cfg.experiment.as_ref().map(|_| step_ix),
                        "target": {"services": services, "containers": containers, "networks": networks},
                        "params": params,
                        "intended_ns": t,
                        "started_ns": t,
                        "ended_ns": ended,
                        "error": null
                    }));
                if let Some(s) = single {
                    ev = ev.service(&s).container(cfg.container(&s));
                }
                out.push(ev);
                step_event(&mut out, step_ix, "do", "end", ended, Some("accept"));
                step_ix += 1;
                prev_end = ended;
                // Docker's view of the fault.
                let docker: &[&str] = match act {
                    GenAction::Pause(_) => &["pause"],
                    GenAction::Unpause(_) => &["unpause"],
                    GenAction::Kill(_) => &["kill", "die"],
                    _ => &[],
                };
                for (j, action) in docker.iter().enumerate() {
                    for s in services.iter() {
                        let c = cfg.container(s);
                        let mut attrs = json!({"name": c, "com.docker.compose.service": s});
                        if *action == "kill" {
                            attrs["signal"] = json!("9");
                        }
                        if *action == "die" {
                            attrs["exitCode"] = json!("137");
                        }
                        out.push(
                            Event::new(t + 1_000_000 * (j as i64 + 1), "docker", *action)
                                .service(s)
                                .container(c)
                                .data(&attrs),
                        );
                    }
                }
            }
        }
    }
    if let Some(e) = &cfg.experiment {
        let end = cfg.ns(cfg.duration) - 1_000_000;
        if end > prev_end {
            out.push(Event::new(prev_end, "recorder", "step").data(&json!({"experiment": e, "step": step_ix, "step_kind": "expect", "phase": "start", "verdict": null})));
            out.push(Event::new(end, "recorder", "step").data(&json!({"experiment": e, "step": step_ix, "step_kind": "expect", "phase": "end", "verdict": "accept"})));
        }
    }
    let end = cfg.ns(cfg.duration);
    out.retain(|e| e.ts_ns < end);
    out.sort_by_key(|e| e.ts_ns);
    out
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stream {
    Discrete,
    Log(usize),
    Jmx(usize),
    Stats(usize),
}

/// The iterator behind [`events`].
pub struct Events {
    cfg: GenConfig,
    model: Model,
    rng: Rng,
    discrete: std::vec::IntoIter<Event>,
    next_discrete: Option<Event>,
    heap: BinaryHeap<Reverse<(i64, Stream)>>,
    end_ns: i64,
    emitted: u64,
    log_counter: Vec<u64>,
    disorder_ns: i64,
}

impl Events {
    fn interval(&mut self, mean_ns: f64) -> i64 {
        // Jittered around the mean (uniform 0.5x..1.5x), at least 1 ns.
        ((mean_ns * (0.5 + self.rng.unit())) as i64).max(1)
    }

    fn filler(&mut self, i: usize, ts: i64) -> Event {
        let svc = &self.cfg.services[i];
        self.log_counter[i] += 1;
        let k = self.log_counter[i];
        let peer = &self.cfg.services[(i
            + 1
            + (k as usize % self.cfg.services.len().max(2).saturating_sub(1)))
            % self.cfg.services.len()];
        let r = self.rng.below(100);
        let (kind, msg) = match r {
            0..=1 => ("stderr", format!("[WARN] [Sys-akka.actor.default-dispatcher-{}] heartbeat interval is growing too large for address {}: {} millis", k % 16, akka_address(peer), 1000 + self.rng.below(3000))),
            2..=9 => ("stdout", format!("[DEBUG] [akka.tcp://Sys@{svc}:2552/system/cluster/core/daemon] Cluster Node [{}] - Receiving gossip from [{}]", akka_address(svc), akka_address(peer))),
            _ => ("stdout", format!("[INFO] [akka.tcp://Sys@{svc}:2552/user/worker] processed request {k} in {} us", 50 + self.rng.below(950))),
        };
        Event::new(ts, "log", kind)
            .service(svc)
            .container(self.cfg.container(svc))
            .message(msg)
    }

    fn stats(&mut self, i: usize, ts: i64) -> Event {
        let svc = self.cfg.services[i].clone();
        let secs = ((ts - self.cfg.start_ns) / 1_000_000_000).max(0) as u64;
        let data = json!({
            "cpu_percent": (self.rng.unit() * 400.0).round() / 10.0,
            "mem_used": 200_000_000 + self.rng.below(50_000_000),
            "mem_limit": 1_073_741_824u64,
            "net_rx_bytes": secs * 12_000 + self.rng.below(1000),
            "net_tx_bytes": secs * 11_000 + self.rng.below(1000),
            "blk_read_bytes": 4096 * secs,
            "blk_write_bytes": 8192 * secs,
            "pids": 30
        });
        Event::new(ts, "stats", "stats")
            .service(&svc)
            .container(self.cfg.container(&svc))
            .data(&data)
    }

    fn jmx(&mut self, i: usize, ts: i64) -> Event {
        let svc = self.cfg.services[i].clone();
        let c = self.cfg.container(&svc);
        match self.model.frozen_at(i, ts) {
            Some(killed) => {
                let (msg, ty) = if killed {
                    (
                        format!("connect to {svc}:8778 failed: connection refused"),
                        "connection_refused",
                    )
                } else {
                    (
                        format!("read from {svc}:8778 timed out after 2s"),
                        "timeout",
                    )
                };
                Event::new(ts, "jmx", "error")
                    .service(&svc)
                    .container(c)
                    .message(msg)
                    .data(&json!({"mbean": "akka:type=Cluster", "error_type": ty}))
            }
            None => {
                let d = self.model.jmx(i, ts);
                Event::new(ts, "jmx", "akka:type=Cluster")
                    .service(&svc)
                    .container(c)
                    .data(&d)
            }
        }
    }
}

impl Iterator for Events {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        if self.cfg.max_events.is_some_and(|m| self.emitted >= m) {
            return None;
        }
        let Reverse((arrival, stream)) = self.heap.pop()?;
        if arrival >= self.end_ns {
            self.heap.clear();
            return None;
        }
        let lag = if self.disorder_ns > 0 {
            self.rng.below(self.disorder_ns as u64) as i64
        } else {
            0
        };
        let ts = (arrival - lag).max(self.cfg.start_ns);
        let ev = match stream {
            Stream::Discrete => {
                let e = self.next_discrete.take()?;
                self.next_discrete = self.discrete.next();
                if let Some(n) = &self.next_discrete {
                    self.heap.push(Reverse((n.ts_ns, Stream::Discrete)));
                }
                e
            }
            Stream::Log(i) => {
                let mean = 1e9 / self.cfg.log_rate;
                let next = arrival + self.interval(mean);
                let e = self.filler(i, ts);
                if self.model.frozen_at(i, next).is_none() {
                    self.heap.push(Reverse((next, stream)));
                } else if let Some(&(_, b, _)) = self.model.frozen[i]
                    .iter()
                    .find(|&&(a, b, _)| next >= a && next < b)
                {
                    // Silent while paused; resumes after.
                    if b < NEVER {
                        self.heap.push(Reverse((b + 1, stream)));
                    }
                }
                e
            }
            Stream::Jmx(i) => {
                self.heap.push(Reverse((
                    arrival + self.cfg.jmx_interval.as_nanos() as i64,
                    stream,
                )));
                self.jmx(i, arrival)
            }
            Stream::Stats(i) => {
                self.heap.push(Reverse((
                    arrival + self.cfg.stats_interval.as_nanos() as i64,
                    stream,
                )));
                if self.model.frozen_at(i, arrival) == Some(true) {
                    return self.next();
                }
                self.stats(i, ts)
            }
        };
        self.emitted += 1;
        Some(ev)
    }
}

/// The events of the configured synthetic run, in arrival order (see the module docs).
pub fn events(cfg: &GenConfig) -> Events {
    let model = Model::new(cfg);
    let disc = discrete(cfg, &model);
    let mut it = disc.into_iter();
    let next_discrete = it.next();
    let mut rng = Rng(cfg.seed ^ 0x5EED_0FC0_FFEE);
    let mut heap = BinaryHeap::new();
    if let Some(e) = &next_discrete {
        heap.push(Reverse((e.ts_ns, Stream::Discrete)));
    }
    for (i, _) in cfg.services.iter().enumerate() {
        let join = model.join_ns[i];
        if cfg.log_rate > 0.0 {
            heap.push(Reverse((
                join + 1 + rng.below(100_000_000) as i64,
                Stream::Log(i),
            )));
        }
        if !cfg.jmx_interval.is_zero() {
            heap.push(Reverse((
                cfg.start_ns + 500_000_000 + 10_000_000 * i as i64,
                Stream::Jmx(i),
            )));
        }
        if !cfg.stats_interval.is_zero() {
            heap.push(Reverse((
                cfg.start_ns + 700_000_000 + 10_000_000 * i as i64,
                Stream::Stats(i),
            )));
        }
    }
    Events {
        end_ns: cfg.ns(cfg.duration),
        log_counter: vec![0; cfg.services.len()],
        disorder_ns: cfg.disorder.as_nanos() as i64,
        cfg: cfg.clone(),
        model,
        rng,
        discrete: it,
        next_discrete,
        heap,
        emitted: 0,
    }
}

/// Synthetic packet summaries between the services (TCP on port 2552), none across a cut.
pub fn packets(cfg: &GenConfig) -> impl Iterator<Item = PacketRecord> {
    let model = Model::new(cfg);
    let mut rng = Rng(cfg.seed ^ 0xFACE);
    let n = cfg.services.len();
    let mean = if cfg.packet_rate > 0.0 {
        1e9 / cfg.packet_rate
    } else {
        f64::INFINITY
    };
    let end = cfg.ns(cfg.duration);
    let mut t = cfg.start_ns + 1_000_000_000;
    let cfg = cfg.clone();
    std::iter::from_fn(move || loop {
        if !mean.is_finite() || n < 2 {
            return None;
        }
        t += ((mean * (0.5 + rng.unit())) as i64).max(1);
        if t >= end {
            return None;
        }
        let x = rng.below(n as u64) as usize;
        let y = (x + 1 + rng.below(n as u64 - 1) as usize) % n;
        if model.silence[x][y].iter().any(|&(a, b)| t >= a && t < b)
            || model.frozen_at(x, t).is_some()
        {
            continue;
        }
        let flags = [0x02u8, 0x12, 0x10, 0x18, 0x11][rng.below(5) as usize];
        return Some(PacketRecord {
            ts_ns: t,
            seq: 0,
            capture: "net-middle".into(),
            interface: String::new(),
            network: "ipv4".into(),
            protocol: "tcp".into(),
            src_addr: Some(format!("172.20.0.{}", x + 2)),
            dst_addr: Some(format!("172.20.0.{}", y + 2)),
            src_port: Some(40000 + rng.below(20000) as u16),
            dst_port: Some(2552),
            length: 66 + rng.below(1400) as u32,
            captured_length: 66,
            tcp_flags: Some(flags),
            src_service: Some(cfg.services[x].clone()),
            dst_service: Some(cfg.services[y].clone()),
        });
    })
}

/// The manifest of a generated trace.
pub fn manifest(cfg: &GenConfig) -> Manifest {
    let mut services = BTreeMap::new();
    for (i, s) in cfg.services.iter().enumerate() {
        let mut addresses = BTreeMap::new();
        addresses.insert("middle".to_string(), format!("172.20.0.{}", i + 2));
        services.insert(
            s.clone(),
            ServiceInfo {
                image: format!("{}-node:latest", cfg.project),
                containers: vec![ContainerInfo {
                    id: format!("{:064x}", i + 1),
                    name: cfg.container(s),
                    image: format!("{}-node:latest", cfg.project),
                    image_id: format!("sha256:{:064x}", 0xABCD + i),
                    addresses,
                    aliases: vec![s.clone()],
                }],
            },
        );
    }
    let schedule: Vec<Value> = cfg
        .scenario
        .steps
        .iter()
        .map(|s| json!({"at_ms": s.at.as_millis() as u64, "action": s.action.kind(), "detail": format!("{:?}", s.action)}))
        .collect();
    // the generated "scenario": its faults, services and timings (not the seed), hashed like a
    // scenario file, so runs of one configuration group together (`analyzer flaky`)
    let what = json!({"steps": schedule, "services": cfg.services, "experiment": cfg.experiment,
        "auto_down_ms": cfg.auto_down_after.map(|d| d.as_millis() as u64),
        "unreachable_ms": cfg.unreachable_after.as_millis() as u64});
    let sha256 = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(what.to_string().as_bytes()))
    };
    Manifest {
        format_version: crate::FORMAT_VERSION,
        run_id: format!("gen-{}", cfg.seed),
        scenario: ScenarioInfo {
            name: format!("generated-{}", cfg.experiment.as_deref().unwrap_or("run")),
            path: String::new(),
            sha256,
        },
        started_ns: Some(cfg.start_ns),
        ended_ns: Some(cfg.ns(cfg.duration)),
        recorder_version: format!("trace-gen {}", env!("CARGO_PKG_VERSION")),
        compose: ComposeInfo {
            project: cfg.project.clone(),
            services,
            ..Default::default()
        },
        sensors: json!({"generated": true, "jmx_interval_ms": cfg.jmx_interval.as_millis() as u64}),
        schedule: json!({"experiment": cfg.experiment, "steps": schedule}),
        seed: Some(cfg.seed),
        outcome: Some(Outcome {
            status: "completed".into(),
            message: Some("synthetic run".into()),
            verdict: None,
        }),
        ..Default::default()
    }
}

/// Writes a synthetic trace to `dir` through the real writer (and packets when
/// `packet_rate > 0`), then finalizes it.
pub fn write_trace(dir: &Path, cfg: &GenConfig) -> Result<FinalizeSummary, TraceError> {
    let mut w = TraceWriter::create(dir, manifest(cfg))?;
    for e in events(cfg) {
        w.append(e)?;
    }
    if cfg.packet_rate > 0.0 {
        w.add_packets(packets(cfg))?;
    }
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> GenConfig {
        GenConfig {
            duration: Duration::from_secs(40),
            ..Default::default()
        }
    }

    #[test]
    fn deterministic_per_seed() {
        let a: Vec<Event> = events(&small()).collect();
        let b: Vec<Event> = events(&small()).collect();
        assert_eq!(a, b);
        let c: Vec<Event> = events(&GenConfig { seed: 2, ..small() }).collect();
        assert_ne!(a, c);
    }

    #[test]
    fn event_count_target_is_met() {
        let cfg = GenConfig::default().with_event_count(12_345);
        assert_eq!(events(&cfg).count(), 12_345);
    }

    fn status_at(evs: &[Event], svc: &str, after_ns: i64) -> Value {
        let e = evs
            .iter()
            .filter(|e| {
                e.source == "jmx"
                    && e.kind == "akka:type=Cluster"
                    && e.service.as_deref() == Some(svc)
                    && e.ts_ns >= after_ns
            })
            .min_by_key(|e| e.ts_ns)
            .expect("a poll");
        serde_json::from_str(e.data.as_deref().unwrap()).unwrap()
    }

    #[test]
    fn cluster_forms_and_pause_makes_a_node_unreachable_then_back() {
        let cfg = GenConfig {
            scenario: Scenario::gc_pause(
                "right-a",
                Duration::from_secs(10),
                Duration::from_secs(10),
            ),
            ..small()
        };
        let evs: Vec<Event> = events(&cfg).collect();
        let at = |s: u64| cfg.start_ns + s as i64 * 1_000_000_000;
        let formed = status_at(&evs, "left-a", at(8));
        let members = formed["ClusterStatus"]["members"].as_array().unwrap();
        assert_eq!(members.len(), 4);
        assert!(members.iter().all(|m| m["status"] == "Up"));
        assert_eq!(
            formed["ClusterStatus"]["self-address"],
            "akka.tcp://Sys@left-a:2552"
        );
        let during = status_at(&evs, "left-a", at(15));
        let un = during["ClusterStatus"]["unreachable"].as_array().unwrap();
        assert_eq!(un.len(), 1);
        assert_eq!(un[0]["node"], "akka.tcp://Sys@right-a:2552");
        assert_eq!(un[0]["observed-by"].as_array().unwrap().len(), 3);
        // right-a's own polls fail while paused.
        assert!(evs.iter().any(|e| e.kind == "error"
            && e.service.as_deref() == Some("right-a")
            && e.ts_ns > at(10)
            && e.ts_ns < at(20)));
        let after = status_at(&evs, "left-a", at(23));
        assert!(after["ClusterStatus"]["unreachable"]
            .as_array()
            .unwrap()
            .is_empty());
        assert_eq!(evs.iter().filter(|e| e.source == "fault").count(), 2);
        assert!(evs
            .iter()
            .any(|e| e.source == "docker" && e.kind == "pause"));
    }

    #[test]
    fn split_brain_with_auto_down_splits_the_cluster() {
        let cfg = GenConfig {
            scenario: Scenario::split_brain(),
            auto_down_after: Some(Duration::from_secs(10)),
            duration: Duration::from_secs(70),
            experiment: Some("AutoDownSplitBrain".into()),
            ..Default::default()
        };
        let evs: Vec<Event> = events(&cfg).collect();
        let at = |s: u64| cfg.start_ns + s as i64 * 1_000_000_000;
        let view = |svc: &str| -> Vec<String> {
            let v = status_at(&evs, svc, at(65));
            v["ClusterStatus"]["members"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["address"].as_str().unwrap().to_string())
                .collect()
        };
        // The pause: right-a unreachable from left-a, then back before the partition.
        let during = status_at(&evs, "left-a", at(24));
        assert_eq!(
            during["ClusterStatus"]["unreachable"][0]["node"],
            akka_address("right-a")
        );
        let back = status_at(&evs, "left-a", at(30));
        assert!(back["ClusterStatus"]["unreachable"]
            .as_array()
            .unwrap()
            .is_empty());
        assert_eq!(
            back["ClusterStatus"]["members"].as_array().unwrap().len(),
            4
        );
        assert_eq!(
            view("left-a"),
            vec![akka_address("left-a"), akka_address("left-b")]
        );
        assert_eq!(view("right-a"), vec![akka_address("right-a")]);
        assert_eq!(view("right-b"), vec![akka_address("right-b")]);
        assert!(evs
            .iter()
            .any(|e| e.source == "recorder" && e.kind == "step"));
        assert!(evs.iter().any(|e| e.source == "note"));
        assert!(evs.iter().any(|e| e
            .message
            .as_deref()
            .is_some_and(|m| m.contains("auto-downing"))));
    }

    #[test]
    fn disorder_is_bounded() {
        let cfg = GenConfig {
            disorder: Duration::from_millis(20),
            ..small()
        };
        let mut max_ts = i64::MIN;
        let mut unsorted = 0;
        for e in events(&cfg) {
            if e.ts_ns < max_ts {
                unsorted += 1;
                assert!(
                    max_ts - e.ts_ns <= 20_000_000 + 1_000_000_000,
                    "lag {}",
                    max_ts - e.ts_ns
                );
            }
            max_ts = max_ts.max(e.ts_ns);
        }
        assert!(unsorted > 0, "expected some out-of-order arrivals");
    }
}
