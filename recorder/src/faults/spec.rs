//! Fault actions as data: the table of known actions, their arguments and defaults, and the
//! parsing of a [`FaultRequest`]'s `(name, value)` arguments into a typed [`Action`]. Validation
//! of a whole request ([`validate`]) lives here too, so a scenario is refused before anything
//! starts.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::dns::{normalize_name, DnsAnswer, DnsFault};
use super::http::{HttpEffect, HttpFault};
use super::rules::{normalize_signal, parse_rate, parse_size, Direction, Netem};
use super::syscall::{errno_from, syscall_numbers, Effect, SyscallFault, When};
use super::{FaultRequest, FaultTarget};

/// What is wrong with a fault request as written: the action, an argument or the target. The
/// messages name the action and the argument.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidFault {
    /// A problem of one action's arguments or target (`fault `ACTION`: …`).
    #[error("fault `{action}`: {problem}")]
    Fault {
        action: String,
        problem: Box<InvalidFault>,
    },
    /// What is wrong, naming the argument (`argument `percent` must be …`) or the action.
    #[error("{0}")]
    Invalid(String),
}

impl From<String> for InvalidFault {
    fn from(m: String) -> InvalidFault {
        InvalidFault::Invalid(m)
    }
}

impl From<&str> for InvalidFault {
    fn from(m: &str) -> InvalidFault {
        InvalidFault::Invalid(m.to_string())
    }
}

/// An [`InvalidFault`] with a formatted message.
macro_rules! bad {
    ($($t:tt)*) => {
        InvalidFault::Invalid(format!($($t)*))
    };
}

/// A fault action with its arguments checked and defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send a signal to the container's main process (`docker kill -s`).
    Kill { signal: String },
    /// Stop (SIGTERM, then SIGKILL after `timeout_s`).
    Stop { timeout_s: Option<i32> },
    /// Start a stopped container.
    Start,
    /// Restart (stop with `timeout_s`, then start).
    Restart { timeout_s: Option<i32> },
    /// Freeze every process of the container (cgroup freezer).
    Pause,
    /// Thaw a paused container.
    Unpause,
    /// Disconnect from one compose network (or from every network when `network` is `None`).
    Disconnect { network: Option<String> },
    /// Connect (back) to one compose network (or to every network a recorded disconnect removed).
    Connect { network: Option<String> },
    /// Cut traffic with iptables DROP rules inside the network namespaces.
    Partition,
    /// Remove the partitions touching the target.
    Heal,
    /// Drop a random share of packets (`probability` 0..=1).
    Loss {
        probability: f64,
        direction: Direction,
    },
    /// Token-bucket rate limit on the egress of the target's interfaces.
    Bandwidth {
        rate_bps: u64,
        burst_bytes: u64,
        latency_ms: u64,
    },
    /// netem: delay/jitter/duplicate/corrupt/reorder (needs `sch_netem` in the kernel).
    Netem(Netem),
    /// Run a command inside the container through the Docker exec API.
    Exec {
        cmd: Vec<String>,
        user: Option<String>,
        detach: bool,
        timeout_ms: u64,
        undo: Option<Vec<String>>,
    },
    /// Change memory/CPU limits (`docker update`); restored on revert.
    Limits(Limits),
    /// Make chosen syscalls fail or wait (ptrace from the host, see `syscall.rs`).
    Syscall(SyscallFault),
    /// Answer, delay or reset chosen HTTP requests (a proxy in the target's namespace, see
    /// `http.rs`).
    Http(HttpFault),
    /// Answer chosen DNS names with an address or an error, or delay them (a responder in the
    /// target's namespace, see `dns.rs`).
    Dns(DnsFault),
}

/// New resource limits; `None` fields stay as they are.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limits {
    pub memory: Option<i64>,
    pub memory_swap: Option<i64>,
    pub nano_cpus: Option<i64>,
    pub cpu_shares: Option<i64>,
    pub pids_limit: Option<i64>,
}

/// Every action name the injector knows, with the arguments it takes.
pub const ACTIONS: &[(&str, &[&str])] = &[
    ("kill", &["signal"]),
    ("stop", &["timeout"]),
    ("start", &[]),
    ("restart", &["timeout"]),
    ("pause", &[]),
    ("unpause", &[]),
    ("disconnect", &["network"]),
    ("connect", &["network"]),
    ("partition", &[]),
    ("heal", &[]),
    ("loss", &["percent", "probability", "direction"]),
    ("bandwidth", &["rate", "burst", "latency"]),
    (
        "netem",
        &["delay", "jitter", "loss", "duplicate", "corrupt", "reorder"],
    ),
    ("delay", &["delay", "jitter"]),
    ("jitter", &["delay", "jitter"]),
    ("duplicate", &["percent"]),
    ("corrupt", &["percent"]),
    ("reorder", &["percent", "delay"]),
    ("exec", &["cmd", "user", "detach", "timeout", "undo"]),
    (
        "limits",
        &["memory", "memory_swap", "cpus", "cpu_shares", "pids"],
    ),
    (
        "syscall",
        &[
            "calls",
            "error",
            "delay",
            "path",
            "nth",
            "every",
            "probability",
            "percent",
            "process",
        ],
    ),
    (
        "http",
        &[
            "port",
            "to",
            "method",
            "path",
            "path_regex",
            "header",
            "status",
            "body",
            "delay",
            "jitter",
            "reset",
            "percent",
            "probability",
        ],
    ),
    ("dns", &["name", "address", "error", "delay", "ttl"]),
];

/// True for actions that act on network namespaces (iptables or tc).
pub fn is_netns_action(a: &Action) -> bool {
    matches!(
        a,
        Action::Partition | Action::Loss { .. } | Action::Bandwidth { .. } | Action::Netem(_)
    )
}

fn get<'a>(args: &'a [(String, Value)], name: &str) -> Option<&'a Value> {
    args.iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

fn as_str(name: &str, v: &Value) -> Result<String, InvalidFault> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(bad!("argument `{name}` must be a string, got {other}")),
    }
}

fn as_f64(name: &str, v: &Value) -> Result<f64, InvalidFault> {
    match v {
        Value::Number(n) => n
            .as_f64()
            .ok_or_else(|| bad!("argument `{name}` is not a number: {n}")),
        Value::String(s) => s
            .trim()
            .trim_end_matches('%')
            .parse::<f64>()
            .map_err(|_| bad!("argument `{name}` must be a number, got {s:?}")),
        other => Err(bad!("argument `{name}` must be a number, got {other}")),
    }
}

fn as_bool(name: &str, v: &Value) -> Result<bool, InvalidFault> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s == "true" => Ok(true),
        Value::String(s) if s == "false" => Ok(false),
        other => Err(bad!("argument `{name}` must be true or false, got {other}")),
    }
}

/// A duration argument in milliseconds: a string with a unit (`100ms`, `2s`), a `{"ns": n}`
/// object, or a bare number taken in `bare_unit_ms` milliseconds.
fn as_ms(name: &str, v: &Value, bare_unit_ms: f64) -> Result<f64, InvalidFault> {
    match v {
        Value::Number(n) => n
            .as_f64()
            .filter(|x| x.is_finite() && *x >= 0.0)
            .map(|x| x * bare_unit_ms)
            .ok_or_else(|| bad!("argument `{name}` must be a non-negative duration: {n}")),
        Value::String(s) => trace::time::parse_duration(s)
            .map(|d| d.as_secs_f64() * 1000.0)
            .map_err(|e| bad!("argument `{name}`: {e}")),
        Value::Object(o) => match o.get("ns").and_then(Value::as_f64) {
            Some(ns) if ns >= 0.0 => Ok(ns / 1e6),
            _ => Err(bad!("argument `{name}` must be a duration, got {v}")),
        },
        other => Err(bad!("argument `{name}` must be a duration, got {other}")),
    }
}

fn percent(name: &str, v: &Value) -> Result<f64, InvalidFault> {
    let p = as_f64(name, v)?;
    if !(0.0..=100.0).contains(&p) {
        return Err(bad!("argument `{name}` must be between 0 and 100, got {p}"));
    }
    Ok(p)
}

fn command(name: &str, v: &Value) -> Result<Vec<String>, InvalidFault> {
    let cmd: Vec<String> = match v {
        Value::String(s) => s.split_whitespace().map(str::to_string).collect(),
        Value::Array(a) => a
            .iter()
            .map(|x| match x {
                Value::String(s) => Ok(s.clone()),
                Value::Number(n) => Ok(n.to_string()),
                other => Err(bad!("argument `{name}` holds a non-string: {other}")),
            })
            .collect::<Result<_, _>>()?,
        other => {
            return Err(bad!(
                "argument `{name}` must be a command string or a list of strings, got {other}"
            ))
        }
    };
    if cmd.is_empty() {
        return Err(bad!("argument `{name}` is an empty command"));
    }
    Ok(cmd)
}

fn timeout_s(args: &[(String, Value)]) -> Result<Option<i32>, InvalidFault> {
    match get(args, "timeout") {
        None => Ok(None),
        Some(v) => {
            let ms = as_ms("timeout", v, 1000.0)?;
            Ok(Some((ms / 1000.0).ceil().min(3600.0) as i32))
        }
    }
}

/// Parses an action and its arguments. Unknown actions, unknown argument names and bad values are
/// errors naming the action and the argument.
pub fn parse_action(action: &str, args: &[(String, Value)]) -> Result<Action, InvalidFault> {
    let Some((_, known)) = ACTIONS.iter().find(|(n, _)| *n == action) else {
        let names: Vec<&str> = ACTIONS.iter().map(|(n, _)| *n).collect();
        return Err(bad!(
            "unknown fault action `{action}` (known: {})",
            names.join(", ")
        ));
    };
    let mut seen = BTreeSet::new();
    for (k, _) in args {
        if !known.contains(&k.as_str()) {
            return Err(if known.is_empty() {
                bad!("fault `{action}` takes no arguments, got `{k}`")
            } else {
                bad!(
                    "fault `{action}` has no argument `{k}` (it takes: {})",
                    known.join(", ")
                )
            });
        }
        if !seen.insert(k.as_str()) {
            return Err(bad!("fault `{action}`: argument `{k}` given twice"));
        }
    }
    let ctx = |e: InvalidFault| InvalidFault::Fault {
        action: action.to_string(),
        problem: Box::new(e),
    };
    let a = match action {
        "kill" => {
            let signal = match get(args, "signal") {
                None => "SIGKILL".to_string(),
                Some(v) => {
                    let s = as_str("signal", v).map_err(ctx)?;
                    normalize_signal(&s).ok_or_else(|| ctx(bad!("`{s}` is not a Linux signal")))?
                }
            };
            Action::Kill { signal }
        }
        "stop" => Action::Stop {
            timeout_s: timeout_s(args).map_err(ctx)?,
        },
        "start" => Action::Start,
        "restart" => Action::Restart {
            timeout_s: timeout_s(args).map_err(ctx)?,
        },
        "pause" => Action::Pause,
        "unpause" => Action::Unpause,
        "disconnect" | "connect" => {
            let network = match get(args, "network") {
                None => None,
                Some(v) => Some(as_str("network", v).map_err(ctx)?),
            };
            if action == "disconnect" {
                Action::Disconnect { network }
            } else {
                Action::Connect { network }
            }
        }
        "partition" => Action::Partition,
        "heal" => Action::Heal,
        "loss" => {
            let probability = match (get(args, "percent"), get(args, "probability")) {
                (Some(_), Some(_)) => {
                    return Err(ctx("give `percent` or `probability`, not both".into()))
                }
                (Some(v), None) => percent("percent", v).map_err(ctx)? / 100.0,
                (None, Some(v)) => {
                    let p = as_f64("probability", v).map_err(ctx)?;
                    if !(0.0..=1.0).contains(&p) {
                        return Err(ctx(bad!(
                            "argument `probability` must be between 0 and 1, got {p}"
                        )));
                    }
                    p
                }
                (None, None) => {
                    return Err(ctx("needs `percent` (0-100) or `probability` (0-1)".into()))
                }
            };
            let direction = match get(args, "direction") {
                None => Direction::Ingress,
                Some(v) => {
                    let s = as_str("direction", v).map_err(ctx)?;
                    Direction::parse(&s).ok_or_else(|| {
                        ctx(bad!(
                            "argument `direction` must be egress, ingress or both, got {s:?}"
                        ))
                    })?
                }
            };
            Action::Loss {
                probability,
                direction,
            }
        }
        "bandwidth" => {
            let rate_bps = match get(args, "rate") {
                None => return Err(ctx("needs `rate` (e.g. \"1mbit\")".into())),
                Some(Value::Number(n)) => n
                    .as_f64()
                    .filter(|x| *x >= 1.0)
                    .map(|x| x as u64)
                    .ok_or_else(|| ctx(bad!("argument `rate` must be positive, got {n}")))?,
                Some(v) => {
                    let s = as_str("rate", v).map_err(ctx)?;
                    parse_rate(&s).ok_or_else(|| {
                        ctx(bad!(
                            "argument `rate` must look like \"1mbit\", \"500kbit\" or \"1mbps\", got {s:?}"
                        ))
                    })?
                }
            };
            let burst_bytes = match get(args, "burst") {
                None => (rate_bps / 8 / 100).max(3028),
                Some(Value::Number(n)) => n
                    .as_u64()
                    .filter(|x| *x > 0)
                    .ok_or_else(|| ctx(bad!("argument `burst` must be positive bytes, got {n}")))?,
                Some(v) => {
                    let s = as_str("burst", v).map_err(ctx)?;
                    parse_size(&s)
                        .map(|x| x as u64)
                        .ok_or_else(|| ctx(bad!("argument `burst` must be a size, got {s:?}")))?
                }
            };
            let latency_ms = match get(args, "latency") {
                None => 100,
                Some(v) => as_ms("latency", v, 1.0).map_err(ctx)?.max(1.0) as u64,
            };
            Action::Bandwidth {
                rate_bps,
                burst_bytes,
                latency_ms,
            }
        }
        "netem" | "delay" | "jitter" | "duplicate" | "corrupt" | "reorder" => {
            let mut n = Netem::default();
            if let Some(v) = get(args, "delay") {
                n.delay_ms = Some(as_ms("delay", v, 1.0).map_err(ctx)?);
            }
            if let Some(v) = get(args, "jitter") {
                n.jitter_ms = Some(as_ms("jitter", v, 1.0).map_err(ctx)?);
            }
            let pct = |key: &str| -> Result<Option<f64>, InvalidFault> {
                match get(args, key) {
                    None => Ok(None),
                    Some(v) => percent(key, v).map(Some),
                }
            };
            match action {
                "netem" => {
                    n.loss_pct = pct("loss").map_err(ctx)?;
                    n.duplicate_pct = pct("duplicate").map_err(ctx)?;
                    n.corrupt_pct = pct("corrupt").map_err(ctx)?;
                    n.reorder_pct = pct("reorder").map_err(ctx)?;
                }
                "duplicate" => n.duplicate_pct = pct("percent").map_err(ctx)?,
                "corrupt" => n.corrupt_pct = pct("percent").map_err(ctx)?,
                "reorder" => n.reorder_pct = pct("percent").map_err(ctx)?,
                _ => {}
            }
            let required = match action {
                "delay" => n.delay_ms.is_some(),
                "jitter" => n.jitter_ms.is_some(),
                "duplicate" => n.duplicate_pct.is_some(),
                "corrupt" => n.corrupt_pct.is_some(),
                "reorder" => n.reorder_pct.is_some(),
                _ => n != Netem::default(),
            };
            if !required {
                let need = match action {
                    "delay" => "`delay` (e.g. \"100ms\")",
                    "jitter" => "`jitter` (e.g. \"10ms\")",
                    "duplicate" | "corrupt" | "reorder" => "`percent`",
                    _ => "at least one of delay, jitter, loss, duplicate, corrupt, reorder",
                };
                return Err(ctx(bad!("needs {need}")));
            }
            if action == "jitter" && n.delay_ms.is_none() {
                // Jitter varies a delay; without one, use the jitter itself as the base delay.
                n.delay_ms = n.jitter_ms;
            }
            Action::Netem(n)
        }
        "exec" => {
            let cmd = match get(args, "cmd") {
                None => return Err(ctx("needs `cmd` (a string or a list of strings)".into())),
                Some(v) => command("cmd", v).map_err(ctx)?,
            };
            let user = match get(args, "user") {
                None => None,
                Some(v) => Some(as_str("user", v).map_err(ctx)?),
            };
            let detach = match get(args, "detach") {
                None => false,
                Some(v) => as_bool("detach", v).map_err(ctx)?,
            };
            let timeout_ms = match get(args, "timeout") {
                None => 30_000,
                Some(v) => as_ms("timeout", v, 1000.0).map_err(ctx)?.max(1.0) as u64,
            };
            let undo = match get(args, "undo") {
                None => None,
                Some(v) => Some(command("undo", v).map_err(ctx)?),
            };
            Action::Exec {
                cmd,
                user,
                detach,
                timeout_ms,
                undo,
            }
        }
        "limits" => {
            let size = |key: &str| -> Result<Option<i64>, InvalidFault> {
                match get(args, key) {
                    None => Ok(None),
                    Some(Value::Number(n)) => n
                        .as_i64()
                        .filter(|x| *x > 0 || key == "memory_swap" && *x == -1)
                        .map(Some)
                        .ok_or_else(|| bad!("argument `{key}` must be positive bytes, got {n}")),
                    Some(v) => {
                        let s = as_str(key, v)?;
                        if key == "memory_swap" && s.trim() == "-1" {
                            return Ok(Some(-1));
                        }
                        parse_size(&s).map(Some).ok_or_else(|| {
                            bad!("argument `{key}` must be a size like \"256m\", got {s:?}")
                        })
                    }
                }
            };
            let mut l = Limits {
                memory: size("memory").map_err(ctx)?,
                memory_swap: size("memory_swap").map_err(ctx)?,
                ..Default::default()
            };
            if let Some(v) = get(args, "cpus") {
                let c = as_f64("cpus", v).map_err(ctx)?;
                if !(c > 0.0 && c <= 1024.0) {
                    return Err(ctx(bad!("argument `cpus` must be > 0, got {c}")));
                }
                l.nano_cpus = Some((c * 1e9) as i64);
            }
            if let Some(v) = get(args, "cpu_shares") {
                let c = as_f64("cpu_shares", v).map_err(ctx)?;
                if !(2.0..=262144.0).contains(&c) {
                    return Err(ctx(bad!(
                        "argument `cpu_shares` must be between 2 and 262144, got {c}"
                    )));
                }
                l.cpu_shares = Some(c as i64);
            }
            if let Some(v) = get(args, "pids") {
                let c = as_f64("pids", v).map_err(ctx)?;
                if c < 1.0 {
                    return Err(ctx(bad!("argument `pids` must be >= 1, got {c}")));
                }
                l.pids_limit = Some(c as i64);
            }
            if l == Limits::default() {
                return Err(ctx(
                    "needs at least one of memory, memory_swap, cpus, cpu_shares, pids".into(),
                ));
            }
            Action::Limits(l)
        }
        "syscall" => Action::Syscall(syscall_fault(args).map_err(ctx)?),
        "http" => Action::Http(http_fault(args).map_err(ctx)?),
        "dns" => Action::Dns(dns_fault(args).map_err(ctx)?),
        _ => return Err(bad!("unknown fault action `{action}`")),
    };
    Ok(a)
}

/// A TCP/UDP port argument (1..=65535).
fn port(name: &str, v: &Value) -> Result<u16, InvalidFault> {
    let p = as_f64(name, v)?;
    if !(1.0..=65535.0).contains(&p) || p.fract() != 0.0 {
        return Err(bad!("argument `{name}` must be a port (1-65535), got {v}"));
    }
    Ok(p as u16)
}

/// The arguments of an `http` fault.
fn http_fault(args: &[(String, Value)]) -> Result<HttpFault, InvalidFault> {
    let port = match get(args, "port") {
        None => return Err("needs `port` (the service's port, or the peer's with `to`)".into()),
        Some(v) => port("port", v)?,
    };
    let opt = |k: &str| get(args, k).map(|v| as_str(k, v)).transpose();
    let to = opt("to")?;
    let method = opt("method")?;
    if let Some(m) = &method {
        if m.is_empty() || !m.chars().all(|c| c.is_ascii_alphabetic()) {
            return Err(bad!(
                "argument `method` must be a method like GET, got {m:?}"
            ));
        }
    }
    let path = opt("path")?;
    if let Some(p) = &path {
        if !p.starts_with('/') {
            return Err(bad!("argument `path` must start with `/`, got {p:?}"));
        }
    }
    let path_regex = opt("path_regex")?;
    if let Some(r) = &path_regex {
        regex::Regex::new(r).map_err(|e| bad!("argument `path_regex`: {e}"))?;
    }
    let header = match opt("header")? {
        None => None,
        Some(h) => {
            let (n, v) = match h.split_once(':') {
                Some((n, v)) => (n.trim(), Some(v.trim().to_string())),
                None => (h.trim(), None),
            };
            if hyper::header::HeaderName::from_bytes(n.as_bytes()).is_err() {
                return Err(bad!(
                    "argument `header` must be \"Name\" or \"Name: value\", got {h:?}"
                ));
            }
            Some((n.to_ascii_lowercase(), v))
        }
    };
    let delay_ms = match get(args, "delay") {
        None => 0.0,
        Some(v) => as_ms("delay", v, 1.0)?,
    };
    let jitter_ms = match get(args, "jitter") {
        None => 0.0,
        Some(v) => as_ms("jitter", v, 1.0)?,
    };
    let reset = match get(args, "reset") {
        None => false,
        Some(v) => as_bool("reset", v)?,
    };
    let status = match get(args, "status") {
        None => None,
        Some(v) => {
            let s = as_f64("status", v)?;
            if !(100.0..=599.0).contains(&s) || s.fract() != 0.0 {
                return Err(bad!("argument `status` must be 100-599, got {v}"));
            }
            Some(s as u16)
        }
    };
    let body = opt("body")?;
    if body.is_some() && status.is_none() {
        return Err("argument `body` goes with `status`".into());
    }
    let effect = match (status, reset) {
        (Some(_), true) => return Err("give `status` or `reset`, not both".into()),
        (Some(status), false) => HttpEffect::Respond {
            status,
            body: body.unwrap_or_else(|| format!("injected {status}\n")),
        },
        (None, true) => HttpEffect::Reset,
        (None, false) if delay_ms > 0.0 => HttpEffect::Forward,
        (None, false) => {
            return Err(
                "needs `status` (e.g. 503), `reset: true` or `delay` (e.g. \"500ms\")".into(),
            )
        }
    };
    if jitter_ms > 0.0 && delay_ms == 0.0 {
        return Err("argument `jitter` varies a `delay`; give `delay` too".into());
    }
    let probability = match (get(args, "probability"), get(args, "percent")) {
        (Some(_), Some(_)) => return Err("give `probability` or `percent`, not both".into()),
        (Some(v), None) => {
            let p = as_f64("probability", v)?;
            if !(0.0..=1.0).contains(&p) {
                return Err(bad!(
                    "argument `probability` must be between 0 and 1, got {p}"
                ));
            }
            p
        }
        (None, Some(v)) => percent("percent", v)? / 100.0,
        (None, None) => 1.0,
    };
    Ok(HttpFault {
        port,
        to,
        method,
        path,
        path_regex,
        header,
        effect,
        delay_ms,
        jitter_ms,
        probability,
    })
}

/// The arguments of a `dns` fault.
fn dns_fault(args: &[(String, Value)]) -> Result<DnsFault, InvalidFault> {
    let names = match get(args, "name") {
        None => return Err("needs `name` (e.g. \"web\" or \"*.example.com\")".into()),
        Some(v) => names("name", v)?
            .iter()
            .map(|n| normalize_name(n))
            .collect::<Result<Vec<_>, _>>()?,
    };
    let delay_ms = match get(args, "delay") {
        None => 0.0,
        Some(v) => as_ms("delay", v, 1.0)?,
    };
    let answer = match (get(args, "address"), get(args, "error")) {
        (Some(_), Some(_)) => return Err("give `address` or `error`, not both".into()),
        (Some(v), None) => {
            let a = as_str("address", v)?;
            DnsAnswer::Address(
                a.trim()
                    .parse()
                    .map_err(|_| bad!("argument `address` must be an IPv4 address, got {a:?}"))?,
            )
        }
        (None, Some(v)) => match as_str("error", v)?.to_ascii_lowercase().as_str() {
            "nxdomain" => DnsAnswer::NxDomain,
            "servfail" => DnsAnswer::ServFail,
            other => {
                return Err(bad!(
                    "argument `error` must be nxdomain or servfail, got {other:?}"
                ))
            }
        },
        (None, None) if delay_ms > 0.0 => DnsAnswer::Forward,
        (None, None) => {
            return Err(
                "needs `address` (an IPv4 address), `error` (nxdomain, servfail) or `delay`".into(),
            )
        }
    };
    let ttl = match get(args, "ttl") {
        None => 0,
        Some(v) => (as_ms("ttl", v, 1000.0)? / 1000.0)
            .round()
            .min(u32::MAX as f64) as u32,
    };
    Ok(DnsFault {
        names,
        answer,
        delay_ms,
        ttl,
    })
}

/// A list-or-comma-separated-string argument (`"writes, fsync"` or `["writes", "fsync"]`).
fn names(name: &str, v: &Value) -> Result<Vec<String>, InvalidFault> {
    let out: Vec<String> = match v {
        Value::String(s) => s
            .split([',', ' '])
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(str::to_string)
            .collect(),
        Value::Array(a) => a
            .iter()
            .map(|x| as_str(name, x))
            .collect::<Result<_, _>>()?,
        other => {
            return Err(bad!(
                "argument `{name}` must be a name, a comma-separated string or a list, got {other}"
            ))
        }
    };
    if out.is_empty() {
        return Err(bad!("argument `{name}` is empty"));
    }
    Ok(out)
}

fn count(name: &str, v: &Value) -> Result<u64, InvalidFault> {
    let x = as_f64(name, v)?;
    if x < 1.0 || x.fract() != 0.0 {
        return Err(bad!(
            "argument `{name}` must be a whole number >= 1, got {x}"
        ));
    }
    Ok(x as u64)
}

/// The `syscall` fault's arguments: `calls` (required), `error` or `delay` (one required),
/// `path`, how often (`nth`/`every` or `probability`/`percent`; default every call), `process`.
fn syscall_fault(args: &[(String, Value)]) -> Result<SyscallFault, InvalidFault> {
    let calls = match get(args, "calls") {
        None => {
            return Err(
                "needs `calls` (syscall names or classes, e.g. \"writes\" or [\"openat\", \"connect\"])"
                    .into(),
            )
        }
        Some(v) => names("calls", v)?,
    };
    let numbers = syscall_numbers(&calls)?;
    let effect = match (get(args, "error"), get(args, "delay")) {
        (Some(_), Some(_)) => return Err("give `error` or `delay`, not both".into()),
        (Some(v), None) => {
            let s = as_str("error", v)?;
            let (name, errno) = errno_from(&s).ok_or_else(|| {
                bad!("argument `error` must be an errno name like ENOSPC, EIO, EMFILE, ENOMEM, ECONNREFUSED (or a number), got {s:?}")
            })?;
            Effect::Error { name, errno }
        }
        (None, Some(v)) => {
            let ms = as_ms("delay", v, 1.0)?;
            if ms <= 0.0 || ms > 600_000.0 {
                return Err(bad!(
                    "argument `delay` must be between 0 and 10m, got {ms}ms"
                ));
            }
            Effect::Delay { ms }
        }
        (None, None) => {
            return Err("needs `error` (e.g. \"ENOSPC\") or `delay` (e.g. \"200ms\")".into())
        }
    };
    let path = match get(args, "path") {
        None => None,
        Some(v) => {
            let p = as_str("path", v)?;
            if !p.starts_with('/') {
                return Err(bad!("argument `path` must be absolute, got {p:?}"));
            }
            Some(p)
        }
    };
    let prob = match (get(args, "probability"), get(args, "percent")) {
        (Some(_), Some(_)) => return Err("give `probability` or `percent`, not both".into()),
        (Some(v), None) => {
            let p = as_f64("probability", v)?;
            if !(0.0..=1.0).contains(&p) {
                return Err(bad!(
                    "argument `probability` must be between 0 and 1, got {p}"
                ));
            }
            Some(p)
        }
        (None, Some(v)) => Some(percent("percent", v)? / 100.0),
        (None, None) => None,
    };
    let nth = get(args, "nth").map(|v| count("nth", v)).transpose()?;
    let every = get(args, "every").map(|v| count("every", v)).transpose()?;
    let when = match (prob, nth, every) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            return Err("give `nth`/`every` or `probability`/`percent`, not both".into())
        }
        (Some(p), None, None) => When::Probability { p },
        (None, None, None) => When::Always,
        (None, Some(n), e) => When::Nth {
            nth: n,
            every: e.unwrap_or(0),
        },
        (None, None, Some(e)) => When::Nth { nth: e, every: e },
    };
    let process = get(args, "process")
        .map(|v| as_str("process", v))
        .transpose()?;
    Ok(SyscallFault {
        syscalls: calls,
        numbers,
        effect,
        path,
        when,
        process,
    })
}

/// The parameters recorded in a fault event for an action (defaults filled in).
pub fn params_json(a: &Action) -> Value {
    match a {
        Action::Kill { signal } => json!({ "signal": signal }),
        Action::Stop { timeout_s } | Action::Restart { timeout_s } => {
            json!({ "timeout_s": timeout_s })
        }
        Action::Start | Action::Pause | Action::Unpause | Action::Partition | Action::Heal => {
            json!({})
        }
        Action::Disconnect { network } | Action::Connect { network } => {
            json!({ "network": network })
        }
        Action::Loss {
            probability,
            direction,
        } => json!({
            "probability": probability,
            "percent": probability * 100.0,
            "direction": direction.as_str(),
        }),
        Action::Bandwidth {
            rate_bps,
            burst_bytes,
            latency_ms,
        } => json!({ "rate_bps": rate_bps, "burst_bytes": burst_bytes, "latency_ms": latency_ms }),
        Action::Netem(n) => json!({
            "delay_ms": n.delay_ms, "jitter_ms": n.jitter_ms, "loss_pct": n.loss_pct,
            "duplicate_pct": n.duplicate_pct, "corrupt_pct": n.corrupt_pct,
            "reorder_pct": n.reorder_pct,
        }),
        Action::Exec {
            cmd,
            user,
            detach,
            timeout_ms,
            undo,
        } => json!({
            "cmd": cmd, "user": user, "detach": detach, "timeout_ms": timeout_ms, "undo": undo,
        }),
        Action::Limits(l) => json!({
            "memory": l.memory, "memory_swap": l.memory_swap, "nano_cpus": l.nano_cpus,
            "cpu_shares": l.cpu_shares, "pids_limit": l.pids_limit,
        }),
        Action::Syscall(f) => f.params(),
        Action::Http(f) => f.params(),
        Action::Dns(f) => f.params(),
    }
}

/// The service names a target mentions.
pub fn target_services(t: &FaultTarget) -> Vec<&str> {
    match t {
        FaultTarget::Service(s) => vec![s.as_str()],
        FaultTarget::Services(v) | FaultTarget::Random(v) => v.iter().map(String::as_str).collect(),
        FaultTarget::Between(a, b) | FaultTarget::FromTo(a, b) => {
            a.iter().chain(b.iter()).map(String::as_str).collect()
        }
        FaultTarget::Container(_) | FaultTarget::Network(_) => Vec::new(),
    }
}

/// Checks a request before anything starts: the action is known, its arguments are valid, the
/// target names known services and has a shape the action accepts.
pub fn validate(req: &FaultRequest, services: &[String]) -> Result<(), InvalidFault> {
    let action = parse_action(&req.action, &req.args)?;
    if let Action::Http(HttpFault { to: Some(peer), .. }) = &action {
        if !services.iter().any(|x| x == peer) {
            let mut known: Vec<&str> = services.iter().map(String::as_str).collect();
            known.sort();
            return Err(bad!(
                "fault `{}`: argument `to` names unknown service `{peer}` (the compose project has: {})",
                req.action,
                known.join(", ")
            ));
        }
    }
    for s in target_services(&req.target) {
        if !services.iter().any(|x| x == s) {
            let mut known: Vec<&str> = services.iter().map(String::as_str).collect();
            known.sort();
            return Err(bad!(
                "fault `{}`: unknown service `{s}` (the compose project has: {})",
                req.action,
                known.join(", ")
            ));
        }
    }
    match &req.target {
        FaultTarget::Services(v) | FaultTarget::Random(v) if v.is_empty() => {
            return Err(bad!("fault `{}`: the target list is empty", req.action));
        }
        FaultTarget::Between(a, b) | FaultTarget::FromTo(a, b) => {
            if !matches!(action, Action::Partition) {
                return Err(bad!(
                    "fault `{}`: `between`/`from ... to` targets are for `partition` only",
                    req.action
                ));
            }
            if a.is_empty() || b.is_empty() {
                return Err(bad!(
                    "fault `{}`: both sides of a partition need at least one service",
                    req.action
                ));
            }
            if let Some(s) = a.iter().find(|s| b.contains(s)) {
                return Err(bad!(
                    "fault `{}`: service `{s}` is on both sides of the partition",
                    req.action
                ));
            }
        }
        FaultTarget::Container(c) if c.trim().is_empty() => {
            return Err(bad!("fault `{}`: empty container name", req.action));
        }
        FaultTarget::Network(n) if n.trim().is_empty() => {
            return Err(bad!("fault `{}`: empty network name", req.action));
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::syscall::{Effect, When};

    fn a(k: &str, v: Value) -> (String, Value) {
        (k.to_string(), v)
    }

    fn req(action: &str, args: Vec<(String, Value)>, target: FaultTarget) -> FaultRequest {
        FaultRequest {
            action: action.into(),
            args,
            target,
            duration: None,
            experiment: None,
            step: None,
            intended_ns: 0,
        }
    }

    fn svcs() -> Vec<String> {
        vec!["left-a".into(), "left-b".into(), "right-a".into()]
    }

    #[test]
    fn parses_actions_with_defaults() {
        assert_eq!(
            parse_action("kill", &[]),
            Ok(Action::Kill {
                signal: "SIGKILL".into()
            })
        );
        assert_eq!(
            parse_action("kill", &[a("signal", json!("term"))]),
            Ok(Action::Kill {
                signal: "SIGTERM".into()
            })
        );
        assert_eq!(
            parse_action("loss", &[a("percent", json!(30))]),
            Ok(Action::Loss {
                probability: 0.3,
                direction: Direction::Ingress
            })
        );
        assert_eq!(
            parse_action("stop", &[a("timeout", json!("2s"))]),
            Ok(Action::Stop { timeout_s: Some(2) })
        );
        assert_eq!(
            parse_action("bandwidth", &[a("rate", json!("1mbit"))]),
            Ok(Action::Bandwidth {
                rate_bps: 1_000_000,
                burst_bytes: 3028,
                latency_ms: 100
            })
        );
        match parse_action(
            "delay",
            &[a("delay", json!("100ms")), a("jitter", json!(10))],
        ) {
            Ok(Action::Netem(n)) => {
                assert_eq!(n.delay_ms, Some(100.0));
                assert_eq!(n.jitter_ms, Some(10.0));
            }
            other => panic!("unexpected {other:?}"),
        }
        match parse_action("exec", &[a("cmd", json!("/demo-node --version"))]) {
            Ok(Action::Exec {
                cmd, timeout_ms, ..
            }) => {
                assert_eq!(cmd, vec!["/demo-node", "--version"]);
                assert_eq!(timeout_ms, 30_000);
            }
            other => panic!("unexpected {other:?}"),
        }
        match parse_action(
            "limits",
            &[a("memory", json!("64m")), a("cpus", json!(0.5))],
        ) {
            Ok(Action::Limits(l)) => {
                assert_eq!(l.memory, Some(64 << 20));
                assert_eq!(l.nano_cpus, Some(500_000_000));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn refuses_bad_actions_and_arguments_with_clear_messages() {
        let e = parse_action("explode", &[]).unwrap_err().to_string();
        assert!(e.contains("unknown fault action `explode`"), "{e}");
        let e = parse_action("pause", &[a("hard", json!(true))])
            .unwrap_err()
            .to_string();
        assert!(e.contains("takes no arguments"), "{e}");
        let e = parse_action("loss", &[a("percnt", json!(3))])
            .unwrap_err()
            .to_string();
        assert!(e.contains("no argument `percnt`"), "{e}");
        let e = parse_action("loss", &[a("percent", json!(130))])
            .unwrap_err()
            .to_string();
        assert!(e.contains("between 0 and 100"), "{e}");
        let e = parse_action("loss", &[]).unwrap_err().to_string();
        assert!(e.contains("needs `percent`"), "{e}");
        let e = parse_action("kill", &[a("signal", json!("SIGFOO"))])
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a Linux signal"), "{e}");
        let e = parse_action("bandwidth", &[a("rate", json!("quick"))])
            .unwrap_err()
            .to_string();
        assert!(e.contains("argument `rate`"), "{e}");
        let e = parse_action("delay", &[]).unwrap_err().to_string();
        assert!(e.contains("needs `delay`"), "{e}");
        let e = parse_action("limits", &[]).unwrap_err().to_string();
        assert!(e.contains("at least one"), "{e}");
        let e = parse_action("exec", &[a("cmd", json!([]))])
            .unwrap_err()
            .to_string();
        assert!(e.contains("empty command"), "{e}");
    }

    #[test]
    fn validate_checks_services_and_target_shapes() {
        let s = svcs();
        assert_eq!(
            validate(
                &req("pause", vec![], FaultTarget::Service("left-a".into())),
                &s
            ),
            Ok(())
        );
        let e = validate(
            &req("pause", vec![], FaultTarget::Service("nope".into())),
            &s,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("unknown service `nope`"), "{e}");
        assert!(e.contains("left-a, left-b, right-a"), "{e}");
        let between = FaultTarget::Between(vec!["left-a".into()], vec!["right-a".into()]);
        assert_eq!(
            validate(&req("partition", vec![], between.clone()), &s),
            Ok(())
        );
        let e = validate(&req("pause", vec![], between), &s)
            .unwrap_err()
            .to_string();
        assert!(e.contains("for `partition` only"), "{e}");
        let both = FaultTarget::FromTo(vec!["left-a".into()], vec!["left-a".into()]);
        let e = validate(&req("partition", vec![], both), &s)
            .unwrap_err()
            .to_string();
        assert!(e.contains("both sides"), "{e}");
        let e = validate(&req("kill", vec![], FaultTarget::Random(vec![])), &s)
            .unwrap_err()
            .to_string();
        assert!(e.contains("empty"), "{e}");
        assert_eq!(
            validate(
                &req(
                    "loss",
                    vec![a("percent", json!(30))],
                    FaultTarget::Network("middle".into())
                ),
                &s
            ),
            Ok(())
        );
    }

    #[test]
    fn syscall_fault_arguments() {
        match parse_action(
            "syscall",
            &[
                a("calls", json!("writes, fsync")),
                a("error", json!("enospc")),
                a("path", json!("/data")),
            ],
        ) {
            Ok(Action::Syscall(f)) => {
                assert_eq!(f.syscalls, vec!["writes", "fsync"]);
                assert!(f.numbers.contains(&1) && f.numbers.contains(&74));
                assert_eq!(
                    f.effect,
                    Effect::Error {
                        name: "ENOSPC".into(),
                        errno: 28
                    }
                );
                assert_eq!(f.path.as_deref(), Some("/data"));
                assert_eq!(f.when, When::Always);
            }
            other => panic!("unexpected {other:?}"),
        }
        match parse_action(
            "syscall",
            &[
                a("calls", json!(["connect"])),
                a("delay", json!("250ms")),
                a("percent", json!(25)),
                a("process", json!("demo-node")),
            ],
        ) {
            Ok(Action::Syscall(f)) => {
                assert_eq!(f.effect, Effect::Delay { ms: 250.0 });
                assert_eq!(f.when, When::Probability { p: 0.25 });
                assert_eq!(f.process.as_deref(), Some("demo-node"));
                let p = params_json(&Action::Syscall(f));
                assert_eq!(p["when"]["mode"], "probability");
                assert_eq!(p["delay_ms"], 250.0);
            }
            other => panic!("unexpected {other:?}"),
        }
        match parse_action(
            "syscall",
            &[
                a("calls", json!("openat")),
                a("error", json!("EMFILE")),
                a("nth", json!(3)),
                a("every", json!(2)),
            ],
        ) {
            Ok(Action::Syscall(f)) => assert_eq!(f.when, When::Nth { nth: 3, every: 2 }),
            other => panic!("unexpected {other:?}"),
        }
        let e =
            |args: Vec<(String, Value)>| parse_action("syscall", &args).unwrap_err().to_string();
        assert!(e(vec![]).contains("needs `calls`"));
        assert!(e(vec![a("calls", json!("write"))]).contains("needs `error`"));
        let m = e(vec![a("calls", json!("write")), a("error", json!("ENOPE"))]);
        assert!(m.contains("errno name"), "{m}");
        let m = e(vec![a("calls", json!("wirte")), a("error", json!("EIO"))]);
        assert!(m.contains("unknown syscall `wirte`"), "{m}");
        let m = e(vec![
            a("calls", json!("write")),
            a("error", json!("EIO")),
            a("delay", json!("1s")),
        ]);
        assert!(m.contains("not both"), "{m}");
        let m = e(vec![
            a("calls", json!("write")),
            a("error", json!("EIO")),
            a("path", json!("data")),
        ]);
        assert!(m.contains("absolute"), "{m}");
        let m = e(vec![
            a("calls", json!("write")),
            a("error", json!("EIO")),
            a("nth", json!(2)),
            a("probability", json!(0.5)),
        ]);
        assert!(m.contains("not both"), "{m}");
    }

    #[test]
    fn http_and_dns_fault_arguments() {
        match parse_action(
            "http",
            &[
                a("port", json!(8080)),
                a("path", json!("/pay")),
                a("status", json!(503)),
                a("percent", json!(50)),
            ],
        ) {
            Ok(Action::Http(f)) => {
                assert_eq!(f.port, 8080);
                assert_eq!(f.path.as_deref(), Some("/pay"));
                assert_eq!(
                    f.effect,
                    HttpEffect::Respond {
                        status: 503,
                        body: "injected 503\n".into()
                    }
                );
                assert_eq!(f.probability, 0.5);
                let p = params_json(&Action::Http(f));
                assert_eq!(p["direction"], "inbound");
                assert_eq!(p["action"], "respond");
            }
            other => panic!("unexpected {other:?}"),
        }
        match parse_action(
            "http",
            &[
                a("port", json!("80")),
                a("to", json!("web")),
                a("header", json!("X-User: alice")),
                a("delay", json!("200ms")),
                a("jitter", json!("50ms")),
            ],
        ) {
            Ok(Action::Http(f)) => {
                assert_eq!(f.effect, HttpEffect::Forward);
                assert_eq!(f.header, Some(("x-user".into(), Some("alice".into()))));
                assert_eq!((f.delay_ms, f.jitter_ms), (200.0, 50.0));
                assert_eq!(f.to.as_deref(), Some("web"));
            }
            other => panic!("unexpected {other:?}"),
        }
        let e = |args: Vec<(String, Value)>| parse_action("http", &args).unwrap_err().to_string();
        assert!(e(vec![a("status", json!(503))]).contains("needs `port`"));
        assert!(e(vec![a("port", json!(8080))]).contains("needs `status`"));
        assert!(e(vec![a("port", json!(70000)), a("reset", json!(true))]).contains("port"));
        let m = e(vec![
            a("port", json!(1)),
            a("status", json!(503)),
            a("reset", json!(true)),
        ]);
        assert!(m.contains("not both"), "{m}");
        let m = e(vec![
            a("port", json!(1)),
            a("path_regex", json!("(")),
            a("reset", json!(true)),
        ]);
        assert!(m.contains("path_regex"), "{m}");
        let m = e(vec![
            a("port", json!(1)),
            a("path", json!("pay")),
            a("reset", json!(true)),
        ]);
        assert!(m.contains("start with `/`"), "{m}");
        let m = e(vec![
            a("port", json!(1)),
            a("body", json!("x")),
            a("reset", json!(true)),
        ]);
        assert!(m.contains("goes with `status`"), "{m}");

        match parse_action(
            "dns",
            &[
                a("name", json!("web, *.example.test")),
                a("address", json!("10.0.0.9")),
            ],
        ) {
            Ok(Action::Dns(f)) => {
                assert_eq!(f.names, vec!["web", "*.example.test"]);
                assert_eq!(f.answer, DnsAnswer::Address("10.0.0.9".parse().unwrap()));
            }
            other => panic!("unexpected {other:?}"),
        }
        match parse_action(
            "dns",
            &[a("name", json!(["db"])), a("error", json!("SERVFAIL"))],
        ) {
            Ok(Action::Dns(f)) => assert_eq!(f.answer, DnsAnswer::ServFail),
            other => panic!("unexpected {other:?}"),
        }
        let e = |args: Vec<(String, Value)>| parse_action("dns", &args).unwrap_err().to_string();
        assert!(e(vec![a("address", json!("1.2.3.4"))]).contains("needs `name`"));
        assert!(e(vec![a("name", json!("web"))]).contains("needs `address`"));
        assert!(e(vec![a("name", json!("web")), a("address", json!("nope"))]).contains("IPv4"));
        assert!(
            e(vec![a("name", json!("web")), a("error", json!("refused"))]).contains("nxdomain")
        );

        // `to` must name a service of the project
        let r = req(
            "http",
            vec![
                a("port", json!(80)),
                a("to", json!("nope")),
                a("reset", json!(true)),
            ],
            FaultTarget::Service("left-a".into()),
        );
        let m = validate(&r, &svcs()).unwrap_err().to_string();
        assert!(m.contains("unknown service `nope`"), "{m}");
    }
}
