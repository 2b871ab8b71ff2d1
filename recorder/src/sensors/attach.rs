//! JMX for JVMs that ship no agent: finds the container's JVM (Docker's `top`), copies the
//! recorder's agent jar into the container (Docker's archive API), loads it with the HotSpot
//! attach mechanism through Debian's `jattach` on the host (`jattach <host pid> load instrument
//! false /tmp/chaos-jmx-agent.jar=<port>`; jattach enters the container's namespaces and takes the
//! JVM's user), waits for Jolokia to answer, and at teardown stops the agent's HTTP server with a
//! second attach (`…=stop`; an agent cannot be unloaded). An agent already answering on the port
//! (a second run, or an image that ships Jolokia) is reused. Every outcome is a `jmx`/`attach`
//! event (see docs/sensors.md).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bollard::query_parameters::UploadToContainerOptionsBuilder;
use sensor_protocols::jolokia::{JolokiaClient, MBeanRead, ReadOutcome};
use serde_json::{json, Value};
use trace::Event;

/// Where the agent jar goes inside a container (world-readable, any JVM user can load it).
pub(crate) const AGENT_DIR: &str = "/tmp";
pub(crate) const AGENT_FILE: &str = "chaos-jmx-agent.jar";
/// The `agentId` our agent reports in Jolokia's `version` reply.
pub(crate) const AGENT_ID: &str = "chaos-trace-jmx-agent";
/// How long to wait for the agent to answer after a successful attach.
const ANSWER_WAIT: Duration = Duration::from_secs(10);
/// Upper bound of one jattach run (an attach to a JVM with attach disabled takes about 6 s).
const JATTACH_TIMEOUT: Duration = Duration::from_secs(20);
/// The youngest JVM the recorder attaches to. jattach wakes the JVM with SIGQUIT, which kills a
/// process that has not installed the JVM's handler yet (the first instants of its start).
const MIN_JVM_AGE: Duration = Duration::from_secs(2);

/// How long the host process `pid` has been running (`/proc/<pid>/stat` start time against
/// `/proc/uptime`); `None` when unreadable.
pub(crate) fn process_age(pid: i64) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // the command may hold spaces and parentheses: fields start after the last ')'
    let rest = &stat[stat.rfind(')')? + 1..];
    let start_ticks: f64 = rest.split_whitespace().nth(19)?.parse().ok()?;
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz <= 0 {
        return None;
    }
    Some(Duration::from_secs_f64(
        (uptime - start_ticks / hz as f64).max(0.0),
    ))
}

/// Why an attach failed: a short `error_type` for event data and a message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct AttachError {
    /// `no_jvm`, `attach_disabled`, `jvm_too_old`, `agent_load_failed`, `agent_start_failed`,
    /// `attach_failed`, `jattach_missing`, `agent_jar_missing`, `copy_failed`,
    /// `agent_not_answering`.
    pub error_type: &'static str,
    pub message: String,
}

impl AttachError {
    pub(crate) fn new(error_type: &'static str, message: impl Into<String>) -> AttachError {
        AttachError {
            error_type,
            message: message.into(),
        }
    }
}

/// The agent jar: `configured` (the scenario's `agent_jar`), else `$CHAOS_JMX_AGENT_JAR`, else
/// `chaos-jmx-agent.jar` next to the recorder binary, else `jmx-agent/build/chaos-jmx-agent.jar`
/// of the source tree the recorder was built from (built by `jmx-agent/build.sh`).
pub fn find_agent_jar(configured: Option<&Path>) -> Result<PathBuf, AttachError> {
    let mut tried: Vec<PathBuf> = Vec::new();
    if let Some(p) = configured {
        if p.is_file() {
            return Ok(p.to_path_buf());
        }
        return Err(AttachError::new(
            "agent_jar_missing",
            format!("agent jar {} (agent_jar) not found", p.display()),
        ));
    }
    if let Some(p) = std::env::var_os("CHAOS_JMX_AGENT_JAR") {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        return Err(AttachError::new(
            "agent_jar_missing",
            format!("agent jar {} (CHAOS_JMX_AGENT_JAR) not found", p.display()),
        ));
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        tried.push(dir.join(AGENT_FILE));
    }
    tried.push(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("jmx-agent/build")
            .join(AGENT_FILE),
    );
    if let Some(p) = tried.iter().find(|p| p.is_file()) {
        return Ok(p.clone());
    }
    let list: Vec<String> = tried.iter().map(|p| p.display().to_string()).collect();
    Err(AttachError::new(
        "agent_jar_missing",
        format!(
            "agent jar not found (build it with jmx-agent/build.sh, or set agent_jar / CHAOS_JMX_AGENT_JAR); looked at {}",
            list.join(", ")
        ),
    ))
}

/// A JVM process of a container, as `docker top` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct JvmProcess {
    /// Host pid.
    pub pid: i64,
    pub command: String,
}

/// Whether a `ps` command line is a JVM launcher (`java`, `/usr/lib/jvm/…/bin/java`).
pub(crate) fn is_java_command(cmd: &str) -> bool {
    cmd.split_whitespace()
        .next()
        .map(|argv0| argv0.rsplit('/').next().unwrap_or(argv0) == "java")
        .unwrap_or(false)
}

/// Picks the JVM among `docker top` rows (`titles` and `processes` as Docker returns them): the
/// first process whose command is `java`.
pub(crate) fn pick_jvm(titles: &[String], processes: &[Vec<String>]) -> Option<JvmProcess> {
    let pid_col = titles.iter().position(|t| t == "PID")?;
    let cmd_col = titles
        .iter()
        .position(|t| t == "CMD" || t == "COMMAND")
        .unwrap_or(titles.len().saturating_sub(1));
    processes.iter().find_map(|row| {
        let cmd = row.get(cmd_col)?;
        if !is_java_command(cmd) {
            return None;
        }
        Some(JvmProcess {
            pid: row.get(pid_col)?.trim().parse().ok()?,
            command: cmd.clone(),
        })
    })
}

/// The JVM of a container (host pid), or `no_jvm`.
pub async fn find_jvm(
    docker: &bollard::Docker,
    container: &str,
) -> Result<JvmProcess, AttachError> {
    let top = docker
        .top_processes(container, None::<bollard::query_parameters::TopOptions>)
        .await
        .map_err(|e| AttachError::new("no_jvm", format!("docker top {container}: {e}")))?;
    let titles = top.titles.unwrap_or_default();
    let processes = top.processes.unwrap_or_default();
    pick_jvm(&titles, &processes).ok_or_else(|| {
        let cmds: Vec<String> = processes
            .iter()
            .filter_map(|r| r.last().cloned())
            .take(5)
            .collect();
        AttachError::new(
            "no_jvm",
            format!(
                "no JVM found in container {container} (processes: {})",
                if cmds.is_empty() {
                    "none".to_string()
                } else {
                    cmds.join("; ")
                }
            ),
        )
    })
}

/// A tar archive (ustar) holding one regular file `name` (mode 0644) with `data`.
pub(crate) fn single_file_tar(name: &str, data: &[u8]) -> Vec<u8> {
    let mut h = [0u8; 512];
    let nb = name.as_bytes();
    h[..nb.len().min(100)].copy_from_slice(&nb[..nb.len().min(100)]);
    let octal = |buf: &mut [u8], v: u64| {
        let s = format!("{:0width$o}\0", v, width = buf.len() - 1);
        buf.copy_from_slice(s.as_bytes());
    };
    octal(&mut h[100..108], 0o644);
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], data.len() as u64);
    let mtime = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    octal(&mut h[136..148], mtime);
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| b as u32).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    let mut out = Vec::with_capacity(512 + data.len() + 1536);
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out.resize(out.len() + 1024, 0);
    out
}

/// Copies the agent jar to `/tmp/chaos-jmx-agent.jar` in the container.
pub async fn upload_agent(
    docker: &bollard::Docker,
    container: &str,
    jar: &Path,
) -> Result<(), AttachError> {
    let data = tokio::fs::read(jar).await.map_err(|e| {
        AttachError::new(
            "agent_jar_missing",
            format!("cannot read agent jar {}: {e}", jar.display()),
        )
    })?;
    let tar = single_file_tar(AGENT_FILE, &data);
    let opts = UploadToContainerOptionsBuilder::default()
        .path(AGENT_DIR)
        .build();
    docker
        .upload_to_container(container, Some(opts), bollard::body_full(tar.into()))
        .await
        .map_err(|e| {
            AttachError::new(
                "copy_failed",
                format!("copying the agent into {container}:{AGENT_DIR}: {e}"),
            )
        })
}

/// Maps a failed jattach run (exit status and combined output) to an error.
pub(crate) fn classify_jattach(pid: i64, status: Option<i32>, output: &str) -> AttachError {
    let out = output.trim();
    let code = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("return code:"))
        .and_then(|c| c.trim().parse::<i64>().ok());
    let brief = sensor_protocols::http::truncate(out, 300).replace('\n', " | ");
    if out.contains("Could not start attach mechanism") {
        return AttachError::new(
            "attach_disabled",
            format!("the JVM (pid {pid}) does not accept attach (started with -XX:+DisableAttachMechanism, or not a HotSpot/OpenJ9 JVM): {brief}"),
        );
    }
    if out.contains("not found") && out.contains("Process") {
        return AttachError::new("no_jvm", format!("process {pid} is gone: {brief}"));
    }
    // the instrument agent's codes (JDK InvocationAdapter.c): 100 bad jar, 101 not on the class
    // path, 102 start failed (agentmain threw, no java.instrument, classes too new for the JVM)
    match code {
        Some(100) => AttachError::new(
            "agent_load_failed",
            format!("the JVM (pid {pid}) could not open the agent jar (unreadable by the JVM's user, or not an agent jar): {brief}"),
        ),
        Some(101) => AttachError::new(
            "agent_load_failed",
            format!("the JVM (pid {pid}) could not add the agent jar to its class path: {brief}"),
        ),
        Some(c) if c != 0 => AttachError::new(
            "agent_start_failed",
            format!("the agent did not start in the JVM (pid {pid}), return code {c}: the port taken by a program that is not Jolokia, a runtime without the java.instrument module, or a JVM older than Java 8 (the JVM's stderr says which): {brief}"),
        ),
        _ => AttachError::new(
            "attach_failed",
            format!("jattach {pid} failed (exit {}): {brief}", status.map_or("signal".to_string(), |s| s.to_string())),
        ),
    }
}

/// Runs `jattach <pid> load instrument false <jar in container>=<arg>`.
pub async fn jattach_load(pid: i64, arg: &str) -> Result<(), AttachError> {
    let agent = format!("{AGENT_DIR}/{AGENT_FILE}={arg}");
    jattach(pid, &["load", "instrument", "false", &agent])
        .await
        .map(|_| ())
}

/// The JVM's name and version from its system properties (`jattach <pid> properties`, which
/// loads nothing): `{VmName, VmVersion, SpecVersion}` (the keys of `java.lang:type=Runtime`).
pub async fn jvm_properties(pid: i64) -> Result<Value, AttachError> {
    let out = jattach(pid, &["properties"]).await?;
    Ok(parse_properties(&out))
}

/// `{VmName, VmVersion, SpecVersion}` from `key=value` lines (`null` for missing keys).
pub(crate) fn parse_properties(text: &str) -> Value {
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k)?.strip_prefix('='))
            .map(|v| Value::from(v.trim()))
            .unwrap_or(Value::Null)
    };
    json!({
        "VmName": get("java.vm.name"),
        "VmVersion": get("java.vm.version"),
        "SpecVersion": get("java.specification.version"),
    })
}

/// Whether a `java.specification.version` is older than Java 8 (`1.7`, `1.6` …), which the
/// agent's classes (`--release 8`) do not run on.
pub(crate) fn too_old(spec_version: &str) -> bool {
    match spec_version.strip_prefix("1.") {
        Some(minor) => minor.parse::<u32>().map(|m| m < 8).unwrap_or(false),
        None => false,
    }
}

/// Runs jattach with `args` on `pid`; its output when it reports success.
async fn jattach(pid: i64, args: &[&str]) -> Result<String, AttachError> {
    let mut cmd = tokio::process::Command::new("jattach");
    cmd.arg(pid.to_string())
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = match tokio::time::timeout(JATTACH_TIMEOUT, cmd.output()).await {
        Err(_) => {
            return Err(AttachError::new(
                "attach_failed",
                format!("jattach {pid} did not finish within {JATTACH_TIMEOUT:?}"),
            ))
        }
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(AttachError::new(
                "jattach_missing",
                "jattach not found on the host (apt-get install jattach, or scripts/setup.sh)",
            ))
        }
        Ok(Err(e)) => {
            return Err(AttachError::new(
                "attach_failed",
                format!("cannot run jattach: {e}"),
            ))
        }
        Ok(Ok(o)) => o,
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // `load` reports the agent's own result as `return code: N`; other commands have none
    let code_ok = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("return code:"))
        .map(|c| c.trim() == "0")
        .unwrap_or(true);
    if out.status.success() && code_ok {
        Ok(text)
    } else {
        Err(classify_jattach(pid, out.status.code(), &text))
    }
}

/// What answered on the agent port.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentInfo {
    /// Jolokia agent version.
    pub agent: String,
    /// The `agentId` of its configuration (ours: `chaos-trace-jmx-agent`).
    pub agent_id: Option<String>,
}

/// Asks the agent at `client` for its version.
pub async fn probe_agent(client: &JolokiaClient) -> Option<AgentInfo> {
    let v = client.version().await.ok()?;
    Some(AgentInfo {
        agent_id: v
            .value
            .pointer("/config/agentId")
            .and_then(Value::as_str)
            .map(str::to_string),
        agent: v.agent,
    })
}

/// The JVM's name and versions (`java.lang:type=Runtime`), `null` when unreadable.
pub async fn jvm_version(client: &JolokiaClient) -> Value {
    let read = MBeanRead::new(
        "java.lang:type=Runtime",
        &["VmName", "VmVendor", "VmVersion", "SpecVersion"],
    );
    match client.poll(std::slice::from_ref(&read)).await.pop() {
        Some(ReadOutcome::Values { attributes, .. }) => Value::Object(attributes),
        _ => Value::Null,
    }
}

/// The result of [`ensure_agent`].
#[derive(Debug, Clone)]
pub struct Attached {
    /// `attached` (we loaded the agent) or `reused` (an agent already answered).
    pub phase: &'static str,
    /// Host pid of the JVM when we attached (needed to stop the agent).
    pub pid: Option<i64>,
    /// Whether the agent is ours (then it is stopped at teardown).
    pub ours: bool,
    pub data: Value,
}

/// Makes sure an agent answers at `client`: reuses one that does, else finds the container's
/// JVM, copies the agent in, attaches and waits for it to answer.
pub async fn ensure_agent(
    docker: &bollard::Docker,
    container: &str,
    client: &JolokiaClient,
    port: u16,
    jar: Option<&Path>,
) -> Result<Attached, (AttachError, Value)> {
    let started = Instant::now();
    if let Some(info) = probe_agent(client).await {
        let ours = info.agent_id.as_deref() == Some(AGENT_ID);
        // Ours: find its JVM so that teardown can stop it.
        let pid = if ours {
            find_jvm(docker, container).await.ok().map(|j| j.pid)
        } else {
            None
        };
        let jvm = jvm_version(client).await;
        return Ok(Attached {
            phase: "reused",
            pid,
            ours,
            data: json!({
                "phase": "reused", "port": port, "pid": pid, "agent": info.agent,
                "agent_id": info.agent_id, "jvm": jvm,
                "elapsed_ms": started.elapsed().as_millis() as u64,
            }),
        });
    }
    let fail = |e: AttachError, pid: Option<i64>| {
        let d = json!({"phase": "failed", "port": port, "pid": pid, "error_type": e.error_type, "error": e.message});
        (e, d)
    };
    let jar = match jar {
        Some(j) => j.to_path_buf(),
        None => find_agent_jar(None).map_err(|e| fail(e, None))?,
    };
    let jvm = find_jvm(docker, container)
        .await
        .map_err(|e| fail(e, None))?;
    if let Some(age) = process_age(jvm.pid) {
        if age < MIN_JVM_AGE {
            tokio::time::sleep(MIN_JVM_AGE - age).await;
        }
    }
    let props = jvm_properties(jvm.pid)
        .await
        .map_err(|e| fail(e, Some(jvm.pid)))?;
    if let Some(v) = props["SpecVersion"].as_str().filter(|v| too_old(v)) {
        let e = AttachError::new(
            "jvm_too_old",
            format!(
                "the JVM (pid {}) is Java {v}: the agent needs Java 8 or later",
                jvm.pid
            ),
        );
        let (e, mut d) = fail(e, Some(jvm.pid));
        d["jvm"] = props;
        return Err((e, d));
    }
    upload_agent(docker, container, &jar)
        .await
        .map_err(|e| fail(e, Some(jvm.pid)))?;
    let attach_started = Instant::now();
    jattach_load(jvm.pid, &port.to_string())
        .await
        .map_err(|e| fail(e, Some(jvm.pid)))?;
    let attach_ms = attach_started.elapsed().as_millis() as u64;
    let deadline = Instant::now() + ANSWER_WAIT;
    let info = loop {
        if let Some(i) = probe_agent(client).await {
            break i;
        }
        if Instant::now() >= deadline {
            return Err(fail(
                AttachError::new(
                    "agent_not_answering",
                    format!(
                        "the agent was loaded into pid {} but {} did not answer within {ANSWER_WAIT:?}",
                        jvm.pid, client.url
                    ),
                ),
                Some(jvm.pid),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let version = jvm_version(client).await;
    Ok(Attached {
        phase: "attached",
        pid: Some(jvm.pid),
        ours: info.agent_id.as_deref() == Some(AGENT_ID),
        data: json!({
            "phase": "attached", "port": port, "pid": jvm.pid, "command": jvm.command,
            "agent": info.agent, "agent_id": info.agent_id, "jvm": version,
            "attach_ms": attach_ms, "elapsed_ms": started.elapsed().as_millis() as u64,
        }),
    })
}

/// Stops our agent's HTTP server in the JVM `pid` (a second attach with `stop`).
pub async fn stop_agent(pid: i64) -> Result<(), AttachError> {
    jattach_load(pid, "stop").await
}

/// A `jmx`/`attach` event.
pub fn attach_event(ts: i64, service: &str, container: &str, data: &Value) -> Event {
    let phase = data.get("phase").and_then(Value::as_str).unwrap_or("");
    let msg = match phase {
        "failed" | "stop_failed" => format!(
            "jmx attach to {container}: {}",
            data.get("error")
                .and_then(Value::as_str)
                .unwrap_or("failed")
        ),
        p => format!("jmx agent {p} in {container}"),
    };
    Event::new(ts, "jmx", "attach")
        .service(service)
        .container(container)
        .message(msg)
        .data(data)
}

/// One MBean as `recorder jmx` lists it: its name and, per attribute, type, access and current
/// value (`null` when unreadable).
#[derive(Debug, Clone, PartialEq)]
pub struct MBeanListing {
    pub name: String,
    /// (attribute, type, read-write, value)
    pub attributes: Vec<(String, String, bool, Value)>,
}

/// Lists the MBeans matching `pattern` at `client` with their attributes and current values
/// (`search`, then one `list` and one read per MBean).
pub async fn list_mbeans(
    client: &JolokiaClient,
    pattern: &str,
) -> Result<Vec<MBeanListing>, sensor_protocols::jolokia::JolokiaError> {
    let names = client.search(pattern).await?;
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let meta = client.list_mbean(&name).await.unwrap_or(Value::Null);
        let values = match client
            .poll(&[MBeanRead {
                mbean: name.clone(),
                attributes: Vec::new(),
                path: None,
            }])
            .await
            .pop()
        {
            Some(ReadOutcome::Values { attributes, .. }) => attributes,
            _ => serde_json::Map::new(),
        };
        let mut attributes: Vec<(String, String, bool, Value)> = meta
            .get("attr")
            .and_then(Value::as_object)
            .map(|attrs| {
                attrs
                    .iter()
                    .map(|(a, m)| {
                        (
                            a.clone(),
                            m.get("type")
                                .and_then(Value::as_str)
                                .unwrap_or("?")
                                .to_string(),
                            m.get("rw").and_then(Value::as_bool).unwrap_or(false),
                            values.get(a).cloned().unwrap_or(Value::Null),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        attributes.sort_by(|a, b| a.0.cmp(&b.0));
        out.push(MBeanListing { name, attributes });
    }
    Ok(out)
}

/// The text `recorder jmx` prints: per MBean its name, then one line per attribute
/// (`  Name  type  [rw]  value`, values cut to `width` characters).
pub fn format_listing(listing: &[MBeanListing], width: usize) -> String {
    let mut out = String::new();
    for m in listing {
        out.push_str(&m.name);
        out.push('\n');
        let short = |ty: &str| ty.rsplit('.').next().unwrap_or(ty).to_string();
        let w = m.attributes.iter().map(|a| a.0.len()).max().unwrap_or(0);
        let tw = m
            .attributes
            .iter()
            .map(|a| short(&a.1).len())
            .max()
            .unwrap_or(0);
        for (a, ty, rw, v) in &m.attributes {
            let mut text = match v {
                Value::String(s) => format!("{s:?}"),
                other => other.to_string(),
            };
            if text.chars().count() > width {
                text = text
                    .chars()
                    .take(width.saturating_sub(1))
                    .collect::<String>()
                    + "…";
            }
            let ty = short(ty);
            out.push_str(&format!(
                "  {a:<w$}  {ty:<tw$}  {}  {text}\n",
                if *rw { "rw" } else { "r " }
            ));
        }
    }
    out
}

/// What `recorder jmx` is asked.
#[derive(Debug, Clone)]
pub struct DiscoverOptions {
    pub project: String,
    pub service: String,
    pub pattern: String,
    pub port: u16,
    /// Preferred compose network to reach the container on.
    pub network: Option<String>,
    /// Attach the agent when nothing answers (default true).
    pub attach: bool,
    /// Leave an agent this command attached running (default: stop it afterwards).
    pub keep_agent: bool,
}

/// The failure of `recorder jmx`: a message and its exit code (docs/exit-codes.md).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct DiscoverError {
    pub message: String,
    pub exit_code: i32,
}

/// `recorder jmx`: lists the MBeans matching the pattern in every running container of the
/// service (attaching the agent first when needed, and stopping it again afterwards). Returns
/// the text to print: per container a `# <container> …` header, then the listing.
pub async fn discover(o: &DiscoverOptions) -> Result<String, DiscoverError> {
    use crate::exit;
    let env = |m: String| DiscoverError {
        message: m,
        exit_code: exit::ENV,
    };
    let docker = bollard::Docker::connect_with_local_defaults()
        .map_err(|e| env(format!("cannot connect to the Docker engine: {e}")))?;
    let state = crate::compose::discover(&docker, &o.project)
        .await
        .map_err(|e| env(format!("project {}: {e}", o.project)))?;
    let containers: Vec<_> = state
        .containers
        .iter()
        .filter(|c| c.service == o.service && c.running)
        .collect();
    if containers.is_empty() {
        let mut services: Vec<&str> = state
            .containers
            .iter()
            .map(|c| c.service.as_str())
            .collect();
        services.dedup();
        return Err(DiscoverError {
            message: format!(
                "no running container of service {:?} in project {:?} (services: {})",
                o.service,
                o.project,
                if services.is_empty() {
                    "none".to_string()
                } else {
                    services.join(", ")
                }
            ),
            exit_code: exit::USAGE,
        });
    }
    let mut out = String::new();
    let mut failures = Vec::new();
    for c in containers {
        let preferred: Vec<String> = o.network.iter().cloned().collect();
        let Some(addr) = super::poll::address_on(c, &preferred) else {
            failures.push(format!("{}: {}", c.name, super::poll::NO_ADDRESS));
            continue;
        };
        let client = JolokiaClient::for_host(&addr, o.port, Duration::from_secs(5));
        let attached = if o.attach {
            match ensure_agent(&docker, &c.id, &client, o.port, None).await {
                Ok(a) => Some(a),
                Err((e, _)) => {
                    failures.push(format!("{}: attach failed ({}): {e}", c.name, e.error_type));
                    continue;
                }
            }
        } else {
            None
        };
        let how = match &attached {
            Some(a) if a.phase == "attached" => "agent attached",
            Some(_) => "agent reused",
            None => "no attach",
        };
        out.push_str(&format!(
            "# {} ({}, {how}) {}\n",
            c.name, o.service, client.url
        ));
        match list_mbeans(&client, &o.pattern).await {
            Ok(l) if l.is_empty() => out.push_str(&format!("(no MBean matches {})\n", o.pattern)),
            Ok(l) => out.push_str(&format_listing(&l, 80)),
            Err(e) => failures.push(format!("{}: {e}", c.name)),
        }
        if let Some(Attached {
            phase: "attached",
            pid: Some(pid),
            ours: true,
            ..
        }) = attached
        {
            if !o.keep_agent {
                if let Err(e) = stop_agent(pid).await {
                    failures.push(format!("{}: stopping the agent: {e}", c.name));
                }
            }
        }
    }
    if failures.is_empty() {
        Ok(out)
    } else {
        Err(DiscoverError {
            message: format!("{out}{}", failures.join("\n")),
            exit_code: exit::ENV,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_java_process_from_docker_top() {
        let titles: Vec<String> = ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let row = |pid: &str, cmd: &str| -> Vec<String> {
            ["100", pid, "1", "0", "10:00", "?", "00:00:01", cmd]
                .iter()
                .map(|s| s.to_string())
                .collect()
        };
        let procs = vec![
            row("10", "/bin/sh /usr/local/bin/zk-start"),
            row("11", "javaish --not-a-jvm"),
            row(
                "12",
                "/usr/lib/jvm/java-17-openjdk-amd64/bin/java -Xmx128m -cp x Main",
            ),
            row("13", "java -cp y Other"),
        ];
        let j = pick_jvm(&titles, &procs).expect("jvm");
        assert_eq!(j.pid, 12);
        assert!(j.command.contains("Main"));
        assert_eq!(pick_jvm(&titles, &procs[..2]), None);
        assert_eq!(pick_jvm(&titles[1..], &procs), None, "no PID column");
    }

    #[test]
    fn listing_text() {
        let l = vec![MBeanListing {
            name: "java.lang:type=Runtime".into(),
            attributes: vec![
                (
                    "SpecVersion".into(),
                    "java.lang.String".into(),
                    false,
                    json!("17"),
                ),
                ("Uptime".into(), "long".into(), false, json!(1234)),
                (
                    "Verbose".into(),
                    "boolean".into(),
                    true,
                    json!("x".repeat(50)),
                ),
            ],
        }];
        let t = format_listing(&l, 20);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "java.lang:type=Runtime");
        assert_eq!(lines[1], "  SpecVersion  String   r   \"17\"");
        assert_eq!(lines[2], "  Uptime       long     r   1234");
        assert!(
            lines[3].starts_with("  Verbose      boolean  rw  \"xxx"),
            "{t}"
        );
        assert_eq!(
            lines[3].chars().count(),
            "  Verbose      boolean  rw  ".len() + 20
        );
    }

    #[test]
    fn process_age_of_this_process() {
        let me = std::process::id() as i64;
        let age = process_age(me).expect("own /proc entry");
        assert!(age < Duration::from_secs(3600), "{age:?}");
        std::thread::sleep(Duration::from_millis(50));
        assert!(process_age(me).expect("again") >= age);
        assert_eq!(process_age(i64::from(i32::MAX)), None);
    }

    #[test]
    fn jvm_properties_and_age() {
        let out = "Connected to remote JVM\nJVM response code = 0\n#Tue Dec 01 11:29:04 UTC 2026\njava.specification.version=17\njava.vm.name=OpenJDK 64-Bit Server VM\njava.vm.version=17.0.15+6-Debian-1deb12u1\n";
        assert_eq!(
            parse_properties(out),
            json!({"VmName": "OpenJDK 64-Bit Server VM", "VmVersion": "17.0.15+6-Debian-1deb12u1", "SpecVersion": "17"})
        );
        assert_eq!(parse_properties("")["SpecVersion"], Value::Null);
        for (v, old) in [
            ("1.6", true),
            ("1.7", true),
            ("1.8", false),
            ("9", false),
            ("17", false),
            ("", false),
        ] {
            assert_eq!(too_old(v), old, "{v}");
        }
    }

    #[test]
    fn classifies_jattach_failures() {
        let e = classify_jattach(
            42,
            Some(1),
            "Could not start attach mechanism: No such file or directory\n",
        );
        assert_eq!(e.error_type, "attach_disabled");
        assert!(e.message.contains("-XX:+DisableAttachMechanism"), "{e}");
        let e = classify_jattach(42, Some(1), "Process 42 not found\n");
        assert_eq!(e.error_type, "no_jvm");
        let out = "Connected to remote JVM\nJVM response code = 0\nreturn code: 100\n";
        assert_eq!(
            classify_jattach(42, Some(100), out).error_type,
            "agent_load_failed"
        );
        let out = "Connected to remote JVM\nJVM response code = 0\nreturn code: 102\n";
        let e = classify_jattach(42, Some(102), out);
        assert_eq!(e.error_type, "agent_start_failed");
        assert!(e.message.contains("return code 102"), "{e}");
        assert!(e.message.contains("java.instrument"), "{e}");
    }

    /// The archive is a valid ustar file that `tar` lists and extracts byte for byte.
    #[test]
    fn single_file_tar_extracts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data: Vec<u8> = (0..1500u32).map(|i| (i % 251) as u8).collect();
        let tar = single_file_tar("chaos-jmx-agent.jar", &data);
        assert_eq!(tar.len() % 512, 0);
        let path = dir.path().join("a.tar");
        std::fs::write(&path, &tar).expect("write");
        let Ok(out) = std::process::Command::new("tar")
            .arg("-xf")
            .arg(&path)
            .arg("-C")
            .arg(dir.path())
            .output()
        else {
            eprintln!("note: no tar on this machine; archive not extracted");
            return;
        };
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let back = std::fs::read(dir.path().join("chaos-jmx-agent.jar")).expect("extracted");
        assert_eq!(back, data);
    }
}
