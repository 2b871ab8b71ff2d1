//! Host side of network faults: running the host's `iptables` and `tc` binaries inside a
//! container's network namespace (the child joins `/proc/PID/ns/net` with `setns` between fork
//! and exec, so no `nsenter` process is spawned), checking that a PID still belongs to a container
//! (without asking the Docker engine), probing which kernel features exist (netem, tbf, the
//! iptables `statistic` match), and removing everything a project left in a namespace. Target
//! images need no tools: every binary here is the host's.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use super::rules::{self, Args, Dir, Tags};
use super::FaultError;

/// How long one host command may take before it is treated as hung.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(15);

/// Runs a host program, returning stdout; a non-zero exit is an error carrying stderr.
pub async fn run(program: &str, args: &[String]) -> Result<String, FaultError> {
    run_input(program, args, None).await
}

/// [`run`] with `input` written to the program's stdin.
pub async fn run_input(
    program: &str,
    args: &[String],
    input: Option<&str>,
) -> Result<String, FaultError> {
    run_in(None, program, args, input).await
}

/// Opens the network namespace of process `pid` (`/proc/PID/ns/net`).
fn open_netns(pid: i64) -> Result<std::fs::File, FaultError> {
    let path = format!("/proc/{pid}/ns/net");
    std::fs::File::open(&path).map_err(|e| FaultError::Command {
        command: format!("open {path}"),
        message: if e.kind() == std::io::ErrorKind::NotFound {
            format!("process {pid} is gone (the container stopped or restarted)")
        } else {
            e.to_string()
        },
    })
}

/// Runs `program` (in the network namespace of `netns_pid` when given), with optional stdin;
/// returns stdout, a non-zero exit is an error carrying stderr.
async fn run_in(
    netns_pid: Option<i64>,
    program: &str,
    args: &[String],
    input: Option<&str>,
) -> Result<String, FaultError> {
    let shown = match netns_pid {
        Some(pid) => format!("{program} {} (in the netns of pid {pid})", args.join(" ")),
        None => format!("{program} {}", args.join(" ")),
    };
    let mut cmd = Command::new(program);
    // Kept open until the child has been spawned (its fd is used between fork and exec).
    let ns = netns_pid.map(open_netns).transpose()?;
    if let Some(f) = &ns {
        use std::os::fd::AsRawFd;
        let fd = f.as_raw_fd();
        // SAFETY: the closure runs in the forked child before exec and only makes the
        // async-signal-safe `setns` system call on a descriptor the parent keeps open.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let spawned = cmd
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    drop(ns);
    let mut child = spawned.map_err(|e| FaultError::Command {
            command: shown.clone(),
            message: if e.kind() == std::io::ErrorKind::NotFound {
                format!(
                    "`{program}` is not installed on the host (apt-get install iptables iproute2 util-linux)"
                )
            } else {
                e.to_string()
            },
        })?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        use tokio::io::AsyncWriteExt;
        let w = stdin.write_all(text.as_bytes()).await;
        drop(stdin);
        if let Err(e) = w {
            return Err(FaultError::Command {
                command: shown,
                message: format!("writing stdin: {e}"),
            });
        }
    }
    let out = match tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output()).await {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => {
            return Err(FaultError::Command {
                command: shown,
                message: e.to_string(),
            })
        }
        Err(_) => {
            return Err(FaultError::Command {
                command: shown,
                message: format!("timed out after {}s", COMMAND_TIMEOUT.as_secs()),
            })
        }
    };
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let mut msg = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if msg.is_empty() {
            msg = format!("exited with {}", out.status);
        }
        Err(FaultError::Command {
            command: shown,
            message: msg,
        })
    }
}

/// Runs a host program inside the network namespace of process `pid` (like `nsenter -t PID -n`,
/// without the extra process).
pub async fn in_netns(pid: i64, program: &str, args: &[String]) -> Result<String, FaultError> {
    run_in(Some(pid), program, args, None).await
}

/// True when process `pid` still runs inside container `container_id` (its cgroup path names
/// the container), read from `/proc` without asking the engine. False when the process is gone
/// or belongs to something else (a restarted container has a new PID).
pub fn pid_belongs_to(pid: i64, container_id: &str) -> bool {
    if pid <= 0 || container_id.len() < 12 {
        return false;
    }
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .map(|t| t.contains(container_id))
        .unwrap_or(false)
}

/// `iptables ARGS` in the namespace of `pid`.
pub async fn iptables(pid: i64, args: &[String]) -> Result<String, FaultError> {
    in_netns(pid, "iptables", args).await
}

/// Applies an `iptables-restore --noflush` script (see [`rules::restore_script`]) in the
/// namespace of `pid`: all rules in one transaction.
pub async fn iptables_batch(pid: i64, script: &str) -> Result<String, FaultError> {
    let args = ["--noflush".to_string(), "-w".to_string()];
    run_in(Some(pid), "iptables-restore", &args, Some(script)).await
}

/// `tc ARGS` in the namespace of `pid`, with netem's "unknown qdisc" turned into a clear error.
pub async fn tc(pid: i64, args: &[String]) -> Result<String, FaultError> {
    match in_netns(pid, "tc", args).await {
        Err(FaultError::Command { command, message })
            if args.iter().any(|a| a == "netem") && is_unknown_qdisc(&message) =>
        {
            Err(netem_unsupported(&format!("{command}: {message}")))
        }
        other => other,
    }
}

/// Runs a `tc -batch -` script (see [`rules::tc_batch_script`]) in the namespace of `pid`: one
/// process for every command; tc stops at the first failing command. A missing netem qdisc is
/// turned into the clear error.
pub async fn tc_batch(pid: i64, script: &str) -> Result<String, FaultError> {
    let args = ["-batch".to_string(), "-".to_string()];
    match run_in(Some(pid), "tc", &args, Some(script)).await {
        Err(FaultError::Command { command, message })
            if script.contains(" netem") && is_unknown_qdisc(&message) =>
        {
            Err(netem_unsupported(&format!("{command}: {message}")))
        }
        other => other,
    }
}

/// The interfaces of the namespace of `pid` whose root qdisc is this project's tree (from one
/// `tc qdisc show`).
pub async fn project_tree_devs(pid: i64, tags: &Tags) -> Result<Vec<String>, FaultError> {
    let show = in_netns(pid, "tc", &["qdisc".into(), "show".into()]).await?;
    Ok(rules::root_devs_with_handle(&show, &tags.tc_handle_str()))
}

/// True when tc says the qdisc kind does not exist in this kernel.
pub fn is_unknown_qdisc(stderr: &str) -> bool {
    let l = stderr.to_ascii_lowercase();
    l.contains("specified qdisc kind is unknown")
        || l.contains("unknown qdisc")
        || l.contains("no such file or directory") && l.contains("netem")
}

/// The error for a netem fault on a kernel without `sch_netem`.
pub fn netem_unsupported(detail: &str) -> FaultError {
    FaultError::Unsupported(format!(
        "the host kernel has no netem qdisc (module sch_netem is not available), so delay, jitter, \
         duplicate, corrupt and reorder faults cannot be applied; use loss (iptables statistic) or \
         bandwidth (tbf) instead, or run on a kernel with CONFIG_NET_SCH_NETEM ({detail})"
    ))
}

/// Non-loopback interfaces of the namespace of `pid`, read from `/proc/PID/net/dev`.
pub fn interfaces(pid: i64) -> Result<Vec<String>, FaultError> {
    let path = format!("/proc/{pid}/net/dev");
    let text = std::fs::read_to_string(&path).map_err(|e| FaultError::Command {
        command: format!("read {path}"),
        message: e.to_string(),
    })?;
    Ok(rules::interfaces_from_net_dev(&text))
}

/// The interface of the namespace of `pid` carrying MAC address `mac`, from `/sys` as seen
/// inside the namespace (`ip -o link`).
pub async fn interface_for_mac(pid: i64, mac: &str) -> Result<Option<String>, FaultError> {
    let out = in_netns(pid, "ip", &["-o".into(), "link".into()]).await?;
    let mac = mac.to_ascii_lowercase();
    for line in out.lines() {
        // "2: eth0@if7: <...> mtu 1500 ... link/ether 02:42:ac:14:00:02 brd ..."
        if line
            .to_ascii_lowercase()
            .contains(&format!("link/ether {mac} "))
        {
            if let Some(name) = line.split(':').nth(1) {
                let name = name.trim();
                let name = name.split('@').next().unwrap_or(name);
                return Ok(Some(name.to_string()));
            }
        }
    }
    Ok(None)
}

/// Creates the project's two chains and the jumps into them (idempotent).
pub async fn ensure_chains(pid: i64, tags: &Tags) -> Result<(), FaultError> {
    for dir in [Dir::Egress, Dir::Ingress] {
        if let Err(e) = iptables(pid, &rules::new_chain(tags, dir)).await {
            if !e.to_string().contains("already exists") {
                return Err(e);
            }
        }
        let jump = rules::jump_spec(tags, dir);
        if iptables(pid, &rules::with_op("-C", dir.builtin(), &jump))
            .await
            .is_err()
        {
            iptables(pid, &rules::with_op("-I", dir.builtin(), &jump)).await?;
        }
    }
    Ok(())
}

/// What [`purge_netns`] removed from one namespace.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Purged {
    pub rules: usize,
    pub chains: usize,
    pub qdiscs: usize,
}

/// Removes every iptables rule (filter and nat tables), chain and root qdisc of this project from
/// the namespace of `pid`.
pub async fn purge_netns(pid: i64, tags: &Tags) -> Result<Purged, FaultError> {
    let mut p = Purged::default();
    let listing = iptables(pid, &["-w".into(), "-S".into()]).await?;
    let lines = rules::project_lines(tags, &listing);
    // Jumps in built-in chains first, then the chains themselves.
    let chains: Vec<String> = [Dir::Egress, Dir::Ingress]
        .iter()
        .map(|d| tags.chain(*d))
        .collect();
    for line in &lines {
        let Some(args) = rules::delete_args_for_line(line) else {
            continue;
        };
        let in_own_chain = chains.iter().any(|c| args.get(2) == Some(c));
        if in_own_chain {
            continue; // flushed below
        }
        iptables(pid, &args).await?;
        p.rules += 1;
    }
    // The redirects of `http` and `dns` faults, in the nat table.
    let nat = iptables(pid, &["-w".into(), "-t".into(), "nat".into(), "-S".into()]).await?;
    for line in rules::project_lines(tags, &nat) {
        if let Some(mut args) = rules::delete_args_for_line(line) {
            args.splice(0..0, ["-t".to_string(), "nat".to_string()]);
            iptables(pid, &args).await?;
            p.rules += 1;
        }
    }
    for c in &chains {
        if lines.iter().any(|l| *l == format!("-N {c}")) {
            let n = lines
                .iter()
                .filter(|l| l.starts_with(&format!("-A {c} ")))
                .count();
            iptables(pid, &["-w".into(), "-F".into(), c.clone()]).await?;
            iptables(pid, &["-w".into(), "-X".into(), c.clone()]).await?;
            p.rules += n;
            p.chains += 1;
        }
    }
    for dev in interfaces(pid)? {
        let show = in_netns(
            pid,
            "tc",
            &["qdisc".into(), "show".into(), "dev".into(), dev.clone()],
        )
        .await?;
        if rules::root_qdisc_handle(&show).as_deref() == Some(tags.tc_handle_str().as_str()) {
            tc(pid, &rules::qdisc_del(&dev)).await?;
            p.qdiscs += 1;
        }
    }
    Ok(p)
}

/// Removes the project's chains (and the jumps into them) from a namespace whose chains hold no
/// more rules. Errors are ignored: the namespace may be gone.
pub async fn drop_chains(pid: i64, tags: &Tags) {
    for dir in [Dir::Egress, Dir::Ingress] {
        let jump = rules::jump_spec(tags, dir);
        // Remove every copy of the jump (there should be one).
        for _ in 0..4 {
            if iptables(pid, &rules::with_op("-D", dir.builtin(), &jump))
                .await
                .is_err()
            {
                break;
            }
        }
        for a in rules::drop_chain(tags, dir) {
            let _ = iptables(pid, &a).await;
        }
    }
}

/// Host feature probes, run in a scratch network namespace (`unshare -n`), so nothing on the host
/// or in any container is touched. Keys: `nsenter`, `iptables`, `iptables_statistic`, `tc`,
/// `tbf`, `netem`.
pub async fn probe_features() -> BTreeMap<String, bool> {
    let mut f = BTreeMap::new();
    let sh = |script: &str| {
        vec![
            "-n".to_string(),
            "sh".into(),
            "-c".into(),
            script.to_string(),
        ]
    };
    let ok = |r: &Result<String, FaultError>| r.is_ok();
    f.insert(
        "nsenter".to_string(),
        ok(&run("nsenter", &["--version".into()]).await),
    );
    f.insert(
        "iptables".to_string(),
        ok(&run("unshare", &sh("iptables -w -S >/dev/null")).await),
    );
    f.insert(
        "iptables_statistic".to_string(),
        ok(&run(
            "unshare",
            &sh("iptables -w -A OUTPUT -m statistic --mode random --probability 0.5 -j DROP"),
        )
        .await),
    );
    f.insert(
        "tc".to_string(),
        ok(&run("unshare", &sh("tc qdisc show dev lo >/dev/null")).await),
    );
    f.insert(
        "tbf".to_string(),
        ok(&run(
            "unshare",
            &sh("tc qdisc add dev lo root tbf rate 1mbit burst 4k latency 50ms"),
        )
        .await),
    );
    f.insert(
        "netem".to_string(),
        ok(&run("unshare", &sh("tc qdisc add dev lo root netem delay 1ms")).await),
    );
    f
}

/// Arguments helper for callers building `tc qdisc show`.
pub fn qdisc_show(dev: &str) -> Args {
    vec!["qdisc".into(), "show".into(), "dev".into(), dev.to_string()]
}
