//! The `syscall` fault: chosen system calls of a container's processes fail with an errno or
//! wait, injected from the host with ptrace (x86_64 only), with no change to the image and no
//! restart (the seed's libfiu use case without LD_PRELOAD).
//!
//! One tracer thread per container ([`Tracer`]) seizes every thread of every process in the
//! container's cgroup (`PTRACE_SEIZE` with `TRACESYSGOOD | TRACECLONE | TRACEFORK | TRACEVFORK |
//! TRACEEXEC`), and polls the cgroup so processes started later (`docker exec`, a restart) are
//! seized too. On a matching syscall-entry stop it either replaces the call by an invalid one
//! (`orig_rax = -1`) and writes `-errno` into `rax` at the exit stop, or holds the thread stopped
//! for the delay. Reverting interrupts and detaches every tracee (the process keeps running,
//! `TracerPid: 0`); when the recorder dies the kernel detaches them itself.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, Once};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// What a matching call gets.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Fails with this errno (name as given, number).
    Error { name: String, errno: i32 },
    /// Runs normally after waiting this long.
    Delay { ms: f64 },
}

/// Which matching calls are injected.
#[derive(Debug, Clone, PartialEq)]
pub enum When {
    /// Every matching call.
    Always,
    /// The `nth` matching call, then every `every`th after it (`every` 0: only the nth).
    Nth { nth: u64, every: u64 },
    /// Each matching call with this probability, drawn from a generator seeded with `seed`.
    Probability { p: f64 },
}

/// A checked `syscall` fault.
#[derive(Debug, Clone, PartialEq)]
pub struct SyscallFault {
    /// The names and classes as given (e.g. `["writes", "fsync"]`).
    pub syscalls: Vec<String>,
    /// The syscall numbers they stand for (x86_64).
    pub numbers: BTreeSet<i64>,
    pub effect: Effect,
    /// Only calls touching this path or something under it.
    pub path: Option<String>,
    pub when: When,
    /// Only processes with this name (`comm` or executable's file name).
    pub process: Option<String>,
}

/// Syscall classes (names usable in `syscalls`) and the calls they stand for.
pub const CLASSES: &[(&str, &[&str])] = &[
    (
        "writes",
        &["write", "pwrite64", "writev", "pwritev", "pwritev2"],
    ),
    ("reads", &["read", "pread64", "readv", "preadv", "preadv2"]),
    ("opens", &["open", "openat", "openat2", "creat"]),
    ("memory", &["mmap", "mremap", "brk"]),
    ("connects", &["connect"]),
    ("threads", &["clone", "clone3", "fork", "vfork"]),
    ("syncs", &["fsync", "fdatasync", "sync_file_range"]),
];

/// x86_64 syscall numbers of the calls a fault can name.
const SYSCALLS: &[(&str, i64)] = &[
    ("read", 0),
    ("write", 1),
    ("open", 2),
    ("close", 3),
    ("stat", 4),
    ("fstat", 5),
    ("lstat", 6),
    ("poll", 7),
    ("lseek", 8),
    ("mmap", 9),
    ("mprotect", 10),
    ("munmap", 11),
    ("brk", 12),
    ("ioctl", 16),
    ("pread64", 17),
    ("pwrite64", 18),
    ("readv", 19),
    ("writev", 20),
    ("access", 21),
    ("pipe", 22),
    ("mremap", 25),
    ("dup", 32),
    ("dup2", 33),
    ("nanosleep", 35),
    ("sendfile", 40),
    ("socket", 41),
    ("connect", 42),
    ("accept", 43),
    ("sendto", 44),
    ("recvfrom", 45),
    ("sendmsg", 46),
    ("recvmsg", 47),
    ("shutdown", 48),
    ("bind", 49),
    ("listen", 50),
    ("clone", 56),
    ("fork", 57),
    ("vfork", 58),
    ("execve", 59),
    ("kill", 62),
    ("fcntl", 72),
    ("flock", 73),
    ("fsync", 74),
    ("fdatasync", 75),
    ("truncate", 76),
    ("ftruncate", 77),
    ("getdents", 78),
    ("rename", 82),
    ("mkdir", 83),
    ("rmdir", 84),
    ("creat", 85),
    ("link", 86),
    ("unlink", 87),
    ("symlink", 88),
    ("chmod", 90),
    ("fchmod", 91),
    ("chown", 92),
    ("statfs", 137),
    ("fstatfs", 138),
    ("getdents64", 217),
    ("fadvise64", 221),
    ("epoll_wait", 232),
    ("openat", 257),
    ("mkdirat", 258),
    ("newfstatat", 262),
    ("unlinkat", 263),
    ("renameat", 264),
    ("accept4", 288),
    ("epoll_create1", 291),
    ("pipe2", 293),
    ("preadv", 295),
    ("pwritev", 296),
    ("sync_file_range", 277),
    ("fallocate", 285),
    ("renameat2", 316),
    ("memfd_create", 319),
    ("statx", 332),
    ("preadv2", 327),
    ("pwritev2", 328),
    ("clone3", 435),
    ("openat2", 437),
];

/// How a call names the file it touches: a path in argument `i`, a path relative to the
/// directory fd in argument 0 (the `*at` calls, path in argument `i`), or an fd in argument 0.
#[derive(Debug, Clone, Copy, PartialEq)]
enum PathArg {
    Path(usize),
    DirFdPath(usize),
    Fd,
    None,
}

fn path_arg(nr: i64) -> PathArg {
    match nr {
        2 | 4 | 6 | 21 | 76 | 82 | 83 | 84 | 85 | 86 | 87 | 88 | 90 | 92 | 137 => PathArg::Path(0),
        257 | 258 | 262 | 263 | 264 | 316 | 332 | 437 => PathArg::DirFdPath(1),
        0 | 1 | 3 | 5 | 8 | 16 | 17 | 18 | 19 | 20 | 72 | 73 | 74 | 75 | 77 | 78 | 91 | 138
        | 217 | 221 | 277 | 285 | 295 | 296 | 327 | 328 => PathArg::Fd,
        _ => PathArg::None,
    }
}

/// Errno names a fault may return (Linux numbers).
const ERRNOS: &[(&str, i32)] = &[
    ("EPERM", 1),
    ("ENOENT", 2),
    ("EINTR", 4),
    ("EIO", 5),
    ("ENXIO", 6),
    ("E2BIG", 7),
    ("EBADF", 9),
    ("EAGAIN", 11),
    ("ENOMEM", 12),
    ("EACCES", 13),
    ("EFAULT", 14),
    ("EBUSY", 16),
    ("EEXIST", 17),
    ("ENODEV", 19),
    ("ENOTDIR", 20),
    ("EISDIR", 21),
    ("EINVAL", 22),
    ("ENFILE", 23),
    ("EMFILE", 24),
    ("ETXTBSY", 26),
    ("EFBIG", 27),
    ("ENOSPC", 28),
    ("ESPIPE", 29),
    ("EROFS", 30),
    ("EMLINK", 31),
    ("EPIPE", 32),
    ("ENAMETOOLONG", 36),
    ("ENOSYS", 38),
    ("ENOTEMPTY", 39),
    ("ENOBUFS", 105),
    ("EDQUOT", 122),
    ("EADDRINUSE", 98),
    ("EADDRNOTAVAIL", 99),
    ("ENETDOWN", 100),
    ("ENETUNREACH", 101),
    ("ECONNABORTED", 103),
    ("ECONNRESET", 104),
    ("ETIMEDOUT", 110),
    ("ECONNREFUSED", 111),
    ("EHOSTUNREACH", 113),
];

/// The Linux errno for a name (`ENOSPC`, `enospc`) or a number.
pub fn errno_from(s: &str) -> Option<(String, i32)> {
    let t = s.trim();
    if let Ok(n) = t.parse::<i32>() {
        let name = ERRNOS
            .iter()
            .find(|(_, v)| *v == n)
            .map(|(k, _)| k.to_string())
            .unwrap_or_else(|| n.to_string());
        return (1..4096).contains(&n).then_some((name, n));
    }
    let up = t.to_ascii_uppercase();
    ERRNOS
        .iter()
        .find(|(k, _)| *k == up)
        .map(|(k, v)| (k.to_string(), *v))
}

/// Syscall numbers for names and classes; unknown names are an error listing the classes.
pub fn syscall_numbers(names: &[String]) -> Result<BTreeSet<i64>, super::InvalidFault> {
    let mut out = BTreeSet::new();
    for n in names {
        let n = n.trim();
        if let Some((_, calls)) = CLASSES.iter().find(|(c, _)| *c == n) {
            for c in *calls {
                if let Some((_, nr)) = SYSCALLS.iter().find(|(k, _)| k == c) {
                    out.insert(*nr);
                }
            }
        } else if let Some((_, nr)) = SYSCALLS.iter().find(|(k, _)| *k == n) {
            out.insert(*nr);
        } else {
            let classes: Vec<&str> = CLASSES.iter().map(|(c, _)| *c).collect();
            return Err(format!(
                "unknown syscall `{n}` (give x86_64 names like write, openat, connect, or a class: {})",
                classes.join(", ")
            )
            .into());
        }
    }
    if out.is_empty() {
        return Err("argument `syscalls` is empty".into());
    }
    Ok(out)
}

impl SyscallFault {
    /// The fault's parameters for its events (the seed is added by the injector).
    pub fn params(&self) -> Value {
        let (error, delay_ms) = match &self.effect {
            Effect::Error { name, errno } => (json!({"name": name, "errno": errno}), Value::Null),
            Effect::Delay { ms } => (Value::Null, json!(ms)),
        };
        let when = match &self.when {
            When::Always => json!({"mode": "always"}),
            When::Nth { nth, every } => json!({"mode": "nth", "nth": nth, "every": every}),
            When::Probability { p } => json!({"mode": "probability", "probability": p}),
        };
        json!({
            "syscalls": self.syscalls,
            "numbers": self.numbers,
            "error": error,
            "delay_ms": delay_ms,
            "path": self.path,
            "when": when,
            "process": self.process,
        })
    }
}

/// Why a tracer could not start.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// ptrace refused (restrictions, an existing tracer, missing capability).
    #[error("{0}")]
    Attach(String),
    /// No process to trace.
    #[error("{0}")]
    NoProcess(String),
    /// This host cannot run the tracer (architecture, thread).
    #[error("{0}")]
    Unsupported(String),
}

/// Counters shared between a tracer thread and its handle.
#[derive(Debug, Default)]
struct Counters {
    matched: AtomicU64,
    injected: AtomicU64,
    attached: AtomicU64,
}

/// A running tracer for one container; stops (detaching everything) on [`Tracer::stop`] or drop.
pub struct Tracer {
    container: String,
    stop: Arc<AtomicBool>,
    tid: Arc<AtomicI32>,
    counters: Arc<Counters>,
    join: Mutex<Option<std::thread::JoinHandle<Vec<String>>>>,
    /// Processes seized when the fault was applied.
    pub initial_pids: Vec<i32>,
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracer")
            .field("container", &self.container)
            .field("initial_pids", &self.initial_pids)
            .finish()
    }
}

/// What a stopped tracer did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceCounts {
    /// Calls that matched syscall, process and path.
    pub matched: u64,
    /// Calls that got the error or the delay.
    pub injected: u64,
    /// Threads ever seized.
    pub attached_threads: u64,
    /// Problems detaching (one line each).
    pub errors: Vec<String>,
}

static HANDLER: Once = Once::new();

/// The signal that interrupts the tracer's blocking `waitpid` (a no-op handler without
/// `SA_RESTART`, sent only to the tracer thread).
fn wake_signal() -> i32 {
    libc::SIGRTMIN() + 5
}

extern "C" fn noop_handler(_: libc::c_int) {}

fn install_handler() {
    HANDLER.call_once(|| unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = noop_handler as *const () as usize;
        sa.sa_flags = 0;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(wake_signal(), &sa, std::ptr::null_mut());
    });
}

fn gettid() -> i32 {
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

/// `TracerPid` of a thread or process (0: untraced; else the tracing *thread*'s id); `None` when
/// it is gone.
pub fn tracer_pid(pid: i32) -> Option<i32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("TracerPid:"))
        .and_then(|v| v.trim().parse().ok())
}

fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn exe_name(pid: i32) -> String {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .and_then(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()))
        .unwrap_or_default()
}

/// The cgroup membership line set of a process (equal for every process of a container).
fn cgroup_of(pid: i32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()
}

/// Every process whose cgroups are exactly `cg` (the container's processes, `docker exec`
/// included).
fn processes_in(cg: &str) -> Vec<i32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if cgroup_of(pid).as_deref() == Some(cg) {
            out.push(pid);
        }
    }
    out.sort_unstable();
    out
}

/// Every processes' threads in the container whose main process is `pid`.
pub fn container_threads(pid: i32) -> Vec<i32> {
    let Some(cg) = cgroup_of(pid) else {
        return Vec::new();
    };
    processes_in(&cg).into_iter().flat_map(threads_of).collect()
}

fn threads_of(pid: i32) -> Vec<i32> {
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
        .collect()
}

fn yama_scope() -> Option<u32> {
    std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope")
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// A clear message for a refused `PTRACE_SEIZE`.
fn attach_error(tid: i32, container: &str, errno: i32) -> String {
    let who = format!("thread {tid} ({}) of {container}", comm(tid));
    let tracer = tracer_pid(tid).filter(|t| *t != 0).map(|t| (t, comm(t)));
    attach_message(&who, tracer, yama_scope(), errno)
}

/// The message for a refused attach to `who`: an existing tracer (pid, name), the Yama
/// `ptrace_scope`, or the errno with what usually causes it.
fn attach_message(
    who: &str,
    tracer: Option<(i32, String)>,
    yama: Option<u32>,
    errno: i32,
) -> String {
    if let Some((t, name)) = tracer {
        return format!(
            "{who} is already traced by pid {t} ({name}): a process has one tracer at a time (a debugger, strace or another syscall fault)"
        );
    }
    match yama {
        Some(3) => {
            return format!(
                "cannot trace {who}: kernel.yama.ptrace_scope is 3 (ptrace attach disabled until reboot)"
            )
        }
        Some(2) if errno == libc::EPERM => {
            return format!(
                "cannot trace {who}: kernel.yama.ptrace_scope is 2 (only CAP_SYS_PTRACE may attach; run the recorder as root)"
            )
        }
        _ => {}
    }
    format!(
        "cannot trace {who}: ptrace attach failed: {} (the recorder needs CAP_SYS_PTRACE, and a seccomp or LSM policy may forbid ptrace)",
        std::io::Error::from_raw_os_error(errno)
    )
}

const EVENT_STOP: i32 = 128;
/// `__WALL | __WNOTHREAD`: this thread's tracees only, never the recorder's other children
/// (tc, tcpdump, ...) nor another fault's tracees.
const WAIT_FLAGS: i32 = libc::__WALL | 0x2000_0000;
const SYSCALL_TRAP: i32 = libc::SIGTRAP | 0x80;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopKind {
    Entry,
    Exit,
}

/// Whether a syscall stop is an entry or an exit, from `PTRACE_GET_SYSCALL_INFO` (Linux 5.3+);
/// `None` when the kernel cannot tell.
fn syscall_stop_kind(tid: i32) -> Option<StopKind> {
    // struct ptrace_syscall_info: `op` is the first byte (1 entry, 2 exit, 3 seccomp).
    let mut buf = [0u64; 12];
    let n = ptrace(
        libc::PTRACE_GET_SYSCALL_INFO,
        tid,
        std::mem::size_of_val(&buf),
        buf.as_mut_ptr() as usize,
    )
    .ok()?;
    if n <= 0 {
        return None;
    }
    match buf[0] & 0xff {
        1 => Some(StopKind::Entry),
        2 => Some(StopKind::Exit),
        _ => None,
    }
}

/// Per-thread state of the tracer.
#[derive(Debug, Default, Clone)]
struct Tracee {
    /// Between a syscall-entry stop and its exit stop.
    in_syscall: bool,
    /// The errno to put in `rax` at the exit stop of the current (cancelled) call.
    pending_errno: Option<i32>,
    /// Held stopped at an entry until this instant (a delay).
    held_until: Option<Instant>,
    /// A stop we have not resumed (held, or waiting for detach).
    stopped: bool,
}

struct Engine {
    fault: SyscallFault,
    container: String,
    cg: String,
    picker: Picker,
    tracees: HashMap<i32, Tracee>,
    counters: Arc<Counters>,
    /// Threads that exited or could not be seized: never seized again.
    gone: BTreeSet<i32>,
}

fn ptrace(req: libc::c_uint, pid: i32, addr: usize, data: usize) -> Result<i64, i32> {
    // SAFETY: the requests used here take integer or pointer-to-local arguments.
    let r = unsafe { libc::ptrace(req, pid, addr, data) };
    if r == -1 {
        let e = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        if e != 0 {
            return Err(e);
        }
    }
    Ok(r)
}

fn get_regs(tid: i32) -> Option<libc::user_regs_struct> {
    // SAFETY: PTRACE_GETREGS writes a user_regs_struct to the pointer.
    let mut regs: libc::user_regs_struct = unsafe { std::mem::zeroed() };
    ptrace(libc::PTRACE_GETREGS, tid, 0, &mut regs as *mut _ as usize).ok()?;
    Some(regs)
}

fn set_regs(tid: i32, regs: &libc::user_regs_struct) -> bool {
    ptrace(libc::PTRACE_SETREGS, tid, 0, regs as *const _ as usize).is_ok()
}

/// Reads a NUL-terminated string (at most 4 KiB) from the tracee's memory.
fn read_string(tid: i32, addr: u64) -> Option<String> {
    if addr == 0 {
        return None;
    }
    let mut buf = vec![0u8; 4096];
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // A page boundary may end the readable part: read up to the end of the first page first.
    let first = 4096 - (addr as usize % 4096);
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: first,
    };
    // SAFETY: the local buffer outlives the call; the remote range is only read.
    let n = unsafe { libc::process_vm_readv(tid, &local, 1, &remote, 1, 0) };
    if n <= 0 {
        return None;
    }
    let mut got = buf[..n as usize].to_vec();
    if !got.contains(&0) && (n as usize) == first {
        let remote2 = libc::iovec {
            iov_base: (addr as usize + first) as *mut libc::c_void,
            iov_len: 4096 - first.min(4096),
        };
        let mut buf2 = vec![0u8; 4096];
        let local2 = libc::iovec {
            iov_base: buf2.as_mut_ptr() as *mut libc::c_void,
            iov_len: buf2.len(),
        };
        // SAFETY: as above.
        let n2 = unsafe { libc::process_vm_readv(tid, &local2, 1, &remote2, 1, 0) };
        if n2 > 0 {
            got.extend_from_slice(&buf2[..n2 as usize]);
        }
    }
    let end = got.iter().position(|b| *b == 0)?;
    Some(String::from_utf8_lossy(&got[..end]).into_owned())
}

fn fd_path(tid: i32, fd: i64) -> Option<String> {
    std::fs::read_link(format!("/proc/{tid}/fd/{fd}"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// `p` is `prefix` or lies under it.
fn under(p: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    if prefix.is_empty() {
        return p.starts_with('/');
    }
    p == prefix || p.strip_prefix(prefix).is_some_and(|r| r.starts_with('/'))
}

/// Joins a relative path to a directory and removes `.` and `..` components.
fn normalize(dir: &str, p: &str) -> String {
    let joined = if p.starts_with('/') {
        p.to_string()
    } else {
        format!("{dir}/{p}")
    };
    let mut parts: Vec<&str> = Vec::new();
    for c in joined.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Picks which matching calls get the fault: counts them and, for a probability, draws from a
/// SplitMix64 generator seeded per container (the same seed picks the same calls).
#[derive(Debug, Clone)]
pub struct Picker {
    when: When,
    rng: u64,
    seen: u64,
}

impl Picker {
    pub fn new(when: When, seed: u64) -> Picker {
        Picker {
            when,
            rng: seed,
            seen: 0,
        }
    }

    fn next_unit(&mut self) -> f64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Whether the next matching call gets the fault.
    pub fn pick(&mut self) -> bool {
        self.seen += 1;
        let n = self.seen;
        match self.when {
            When::Always => true,
            When::Nth { nth, every } => {
                n == nth || (every > 0 && n > nth && (n - nth).is_multiple_of(every))
            }
            When::Probability { p } => self.next_unit() < p,
        }
    }
}

impl Engine {
    /// The path a call touches, as the process sees it.
    fn call_path(&self, tid: i32, regs: &libc::user_regs_struct) -> Option<String> {
        let args = [regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8, regs.r9];
        match path_arg(regs.orig_rax as i64) {
            PathArg::Fd => fd_path(tid, args[0] as i64),
            PathArg::Path(i) => {
                let p = read_string(tid, args[i])?;
                let cwd = fd_path_cwd(tid);
                Some(normalize(&cwd, &p))
            }
            PathArg::DirFdPath(i) => {
                let p = read_string(tid, args[i])?;
                let dirfd = args[0] as i32;
                let dir = if p.starts_with('/') {
                    String::new()
                } else if dirfd == libc::AT_FDCWD {
                    fd_path_cwd(tid)
                } else {
                    fd_path(tid, dirfd as i64)?
                };
                Some(normalize(&dir, &p))
            }
            PathArg::None => None,
        }
    }

    /// Whether this syscall entry gets the fault.
    fn decide(&mut self, tid: i32, regs: &libc::user_regs_struct) -> bool {
        let nr = regs.orig_rax as i64;
        if !self.fault.numbers.contains(&nr) {
            return false;
        }
        if let Some(name) = &self.fault.process {
            if comm(tid) != *name && exe_name(tid) != *name {
                return false;
            }
        }
        if let Some(prefix) = &self.fault.path {
            match self.call_path(tid, regs) {
                Some(p) if under(&p, prefix) => {}
                _ => return false,
            }
        }
        self.counters.matched.fetch_add(1, Ordering::Relaxed);
        let hit = self.picker.pick();
        if hit {
            self.counters.injected.fetch_add(1, Ordering::Relaxed);
        }
        hit
    }

    fn options() -> usize {
        (libc::PTRACE_O_TRACESYSGOOD
            | libc::PTRACE_O_TRACECLONE
            | libc::PTRACE_O_TRACEFORK
            | libc::PTRACE_O_TRACEVFORK
            | libc::PTRACE_O_TRACEEXEC) as usize
    }

    /// Seizes a thread and asks it to stop (its first stop starts the syscall tracing).
    fn seize(&mut self, tid: i32) -> Result<(), String> {
        match ptrace(libc::PTRACE_SEIZE, tid, 0, Self::options()) {
            Ok(_) => {
                self.tracees.insert(tid, Tracee::default());
                self.counters.attached.fetch_add(1, Ordering::Relaxed);
                let _ = ptrace(libc::PTRACE_INTERRUPT, tid, 0, 0);
                Ok(())
            }
            Err(libc::ESRCH) => {
                self.gone.insert(tid);
                Ok(())
            }
            // A thread or child a traced thread just created: already ours (auto-attached), its
            // first stop is on its way.
            Err(libc::EPERM) if tracer_pid(tid) == Some(gettid()) => Ok(()),
            Err(e) => {
                self.gone.insert(tid);
                Err(attach_error(tid, &self.container, e))
            }
        }
    }

    /// Seizes every thread of the container's processes not traced yet (the process filter
    /// decides which processes). Returns the processes newly seized.
    fn seize_new(&mut self) -> (Vec<i32>, Vec<String>) {
        let mut pids = Vec::new();
        let mut errors = Vec::new();
        for pid in processes_in(&self.cg) {
            if let Some(name) = &self.fault.process {
                if comm(pid) != *name && exe_name(pid) != *name {
                    continue;
                }
            }
            let mut new = false;
            for tid in threads_of(pid) {
                if self.tracees.contains_key(&tid) || self.gone.contains(&tid) {
                    continue;
                }
                match self.seize(tid) {
                    Ok(()) => new = true,
                    Err(e) => errors.push(e),
                }
            }
            if new {
                pids.push(pid);
            }
        }
        (pids, errors)
    }

    fn resume(&mut self, tid: i32, sig: i32) {
        if ptrace(libc::PTRACE_SYSCALL, tid, 0, sig as usize).is_err() {
            // Gone (killed while stopped): its exit is reported by waitpid.
        }
        if let Some(t) = self.tracees.get_mut(&tid) {
            t.stopped = false;
        }
    }

    /// Handles one stop while injecting.
    fn on_stop(&mut self, tid: i32, status: i32) {
        if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
            self.tracees.remove(&tid);
            self.gone.insert(tid);
            return;
        }
        if !libc::WIFSTOPPED(status) {
            return;
        }
        if let std::collections::hash_map::Entry::Vacant(e) = self.tracees.entry(tid) {
            // A new child or thread (auto-attached) reporting before its parent's event.
            e.insert(Tracee::default());
            self.counters.attached.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(t) = self.tracees.get_mut(&tid) {
            t.stopped = true;
        }
        let sig = libc::WSTOPSIG(status);
        let event = status >> 16;
        if sig == SYSCALL_TRAP {
            let Some(mut regs) = get_regs(tid) else {
                self.resume(tid, 0);
                return;
            };
            // The kernel says which stop this is (5.3+); the entry/exit toggle is the fallback.
            // (rax == -ENOSYS is no proof of an entry: a call refused by the container's seccomp
            // profile, e.g. clone3, exits with ENOSYS.)
            let entering = match syscall_stop_kind(tid) {
                Some(k) => k == StopKind::Entry,
                None => self.tracees.get(&tid).is_none_or(|t| !t.in_syscall),
            };
            if entering {
                let inject = self.decide(tid, &regs);
                let t = self.tracees.entry(tid).or_default();
                t.in_syscall = true;
                if inject {
                    match self.fault.effect.clone() {
                        Effect::Error { errno, .. } => {
                            regs.orig_rax = u64::MAX; // -1: no such call, skipped by the kernel
                            if set_regs(tid, &regs) {
                                if let Some(t) = self.tracees.get_mut(&tid) {
                                    t.pending_errno = Some(errno);
                                }
                            }
                        }
                        Effect::Delay { ms } => {
                            if let Some(t) = self.tracees.get_mut(&tid) {
                                t.held_until =
                                    Some(Instant::now() + Duration::from_secs_f64(ms / 1000.0));
                            }
                            return; // resumed by the loop when due
                        }
                    }
                }
            } else {
                let pending = self.tracees.get_mut(&tid).and_then(|t| {
                    t.in_syscall = false;
                    t.pending_errno.take()
                });
                if let Some(errno) = pending {
                    regs.rax = (-(errno as i64)) as u64;
                    let _ = set_regs(tid, &regs);
                }
            }
            self.resume(tid, 0);
        } else if event == EVENT_STOP {
            // Our interrupt, a new tracee's first stop, or a group-stop (SIGSTOP & co).
            if matches!(
                sig,
                libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU
            ) {
                let _ = ptrace(libc::PTRACE_LISTEN, tid, 0, 0);
                if let Some(t) = self.tracees.get_mut(&tid) {
                    t.stopped = false;
                }
            } else {
                self.resume(tid, 0);
            }
        } else if sig == libc::SIGTRAP && event != 0 {
            // clone/fork/vfork/exec events: the new tracee reports its own stop.
            if event == libc::PTRACE_EVENT_EXEC {
                if let Some(t) = self.tracees.get_mut(&tid) {
                    t.in_syscall = true; // execve's exit stop follows
                }
            }
            self.resume(tid, 0);
        } else {
            // Signal-delivery stop: deliver it.
            self.resume(tid, sig);
        }
    }

    fn pending(&self, tid: i32) -> Option<i32> {
        self.tracees.get(&tid).and_then(|t| t.pending_errno)
    }

    /// Resumes held threads whose delay is over; returns when the next one is due.
    fn release_due(&mut self) -> Option<Instant> {
        let now = Instant::now();
        let due: Vec<i32> = self
            .tracees
            .iter()
            .filter(|(_, t)| t.held_until.is_some_and(|u| u <= now))
            .map(|(k, _)| *k)
            .collect();
        for tid in due {
            if let Some(t) = self.tracees.get_mut(&tid) {
                t.held_until = None;
            }
            self.resume(tid, 0);
        }
        self.tracees.values().filter_map(|t| t.held_until).min()
    }

    /// Detaches every tracee: running ones are interrupted first; a cancelled call gets its
    /// errno before the thread is let go.
    fn detach_all(&mut self) -> Vec<String> {
        let mut errors = Vec::new();
        let tids: Vec<i32> = self.tracees.keys().copied().collect();
        for tid in &tids {
            let t = self.tracees.get(tid).cloned().unwrap_or_default();
            if t.stopped && t.pending_errno.is_none() {
                self.detach(*tid, 0);
            } else if !t.stopped {
                let _ = ptrace(libc::PTRACE_INTERRUPT, *tid, 0, 0);
            } else {
                // Stopped at the entry of a cancelled call: run it to its exit stop first.
                self.resume(*tid, 0);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.tracees.is_empty() && Instant::now() < deadline {
            let mut status = 0;
            // SAFETY: plain waitpid on our tracees.
            let tid = unsafe { libc::waitpid(-1, &mut status, WAIT_FLAGS | libc::WNOHANG) };
            if tid <= 0 {
                if tid < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD) {
                    self.tracees.clear();
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
                self.tracees.remove(&tid);
                continue;
            }
            if !self.tracees.contains_key(&tid) {
                // Auto-attached just now: let it go too.
                let _ = ptrace(libc::PTRACE_DETACH, tid, 0, 0);
                continue;
            }
            let sig = libc::WSTOPSIG(status);
            let event = status >> 16;
            if sig == SYSCALL_TRAP {
                if let Some(errno) = self.pending(tid) {
                    let entering = match syscall_stop_kind(tid) {
                        Some(k) => k == StopKind::Entry,
                        None => self.tracees.get(&tid).is_some_and(|t| !t.in_syscall),
                    };
                    if !entering {
                        if let Some(mut regs) = get_regs(tid) {
                            regs.rax = (-(errno as i64)) as u64;
                            let _ = set_regs(tid, &regs);
                        }
                        self.detach(tid, 0);
                    } else {
                        self.resume(tid, 0);
                    }
                } else {
                    self.detach(tid, 0);
                }
            } else if event == EVENT_STOP || (sig == libc::SIGTRAP && event != 0) {
                if self.pending(tid).is_some() {
                    self.resume(tid, 0);
                } else {
                    self.detach(tid, 0);
                }
            } else {
                self.detach(tid, sig);
            }
        }
        for tid in self.tracees.keys() {
            errors.push(format!(
                "thread {tid} of {} did not stop for detaching within 5s (paused?); the kernel detached it as the tracer ended",
                self.container
            ));
        }
        errors
    }

    fn detach(&mut self, tid: i32, sig: i32) {
        let _ = ptrace(libc::PTRACE_DETACH, tid, 0, sig as usize);
        self.tracees.remove(&tid);
    }
}

fn fd_path_cwd(tid: i32) -> String {
    std::fs::read_link(format!("/proc/{tid}/cwd"))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "/".into())
}

impl Tracer {
    /// Starts tracing every process of the container whose main process is `pid`. Returns once
    /// the processes present now are seized (or with the error that stopped it).
    pub fn start(
        container: &str,
        pid: i32,
        fault: SyscallFault,
        seed: u64,
    ) -> Result<Tracer, TraceError> {
        if !cfg!(target_arch = "x86_64") {
            return Err(TraceError::Unsupported(
                "the syscall fault is implemented for x86_64 hosts only".into(),
            ));
        }
        let cg = cgroup_of(pid).ok_or_else(|| {
            TraceError::NoProcess(format!("{container}: main process {pid} is gone"))
        })?;
        install_handler();
        let stop = Arc::new(AtomicBool::new(false));
        let tid = Arc::new(AtomicI32::new(0));
        let counters = Arc::new(Counters::default());
        let (tx, rx) = mpsc::channel::<Result<Vec<i32>, String>>();
        let name = container.to_string();
        let (stop2, tid2, counters2) = (stop.clone(), tid.clone(), counters.clone());
        let join = std::thread::Builder::new()
            .name(format!(
                "ctk-trace-{}",
                &container.chars().take(6).collect::<String>()
            ))
            .spawn(move || {
                tid2.store(gettid(), Ordering::SeqCst);
                let mut eng = Engine {
                    picker: Picker::new(fault.when.clone(), seed),
                    fault,
                    container: name,
                    cg,
                    tracees: HashMap::new(),
                    counters: counters2,
                    gone: BTreeSet::new(),
                };
                let (pids, errors) = eng.seize_new();
                if let Some(e) = errors.into_iter().next() {
                    let mut errs = eng.detach_all();
                    errs.insert(0, e);
                    tid2.store(0, Ordering::SeqCst);
                    let _ = tx.send(Err(errs.join("; ")));
                    return Vec::new();
                }
                if pids.is_empty() {
                    let what = match &eng.fault.process {
                        Some(p) => format!("no process named `{p}` in {}", eng.container),
                        None => format!("no process in {}", eng.container),
                    };
                    tid2.store(0, Ordering::SeqCst);
                    let _ = tx.send(Err(what));
                    return Vec::new();
                }
                let _ = tx.send(Ok(pids));
                let mut last_poll = Instant::now();
                loop {
                    if stop2.load(Ordering::SeqCst) {
                        let errors = eng.detach_all();
                        tid2.store(0, Ordering::SeqCst);
                        return errors;
                    }
                    let next_due = eng.release_due();
                    if last_poll.elapsed() >= Duration::from_millis(200) {
                        last_poll = Instant::now();
                        let _ = eng.seize_new();
                    }
                    let mut status = 0;
                    let flags = if next_due.is_some() {
                        WAIT_FLAGS | libc::WNOHANG
                    } else {
                        WAIT_FLAGS
                    };
                    // SAFETY: plain waitpid; interrupted by the wake signal every ~100ms.
                    let t = unsafe { libc::waitpid(-1, &mut status, flags) };
                    if t > 0 {
                        eng.on_stop(t, status);
                    } else if t == 0 {
                        std::thread::sleep(Duration::from_micros(200));
                    } else if std::io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD) {
                        // Nothing traced right now (every process exited): wait for new ones.
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            })
            .map_err(|e| TraceError::Unsupported(format!("starting the tracer thread: {e}")))?;
        // Wakes the tracer's blocking waitpid so it can poll for new processes and see `stop`.
        let (stop3, tid3) = (stop.clone(), tid.clone());
        let _ = std::thread::Builder::new()
            .name("ctk-trace-tick".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_millis(100));
                // Keeps ticking after `stop` until the tracer thread is done: a tracer whose
                // tracees make no syscalls (paused, blocked) only wakes up from this signal.
                let t = tid3.load(Ordering::SeqCst);
                if t == 0 {
                    if stop3.load(Ordering::SeqCst) {
                        return;
                    }
                    continue;
                }
                // SAFETY: signals only the tracer thread of this process; stops once it is gone.
                let r =
                    unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), t, wake_signal()) };
                if r != 0 {
                    return;
                }
            });
        let initial = match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                let _ = join.join();
                stop.store(true, Ordering::SeqCst);
                return Err(if e.starts_with("no process") {
                    TraceError::NoProcess(e)
                } else {
                    TraceError::Attach(e)
                });
            }
            Err(_) => {
                // the tracer detaches what it seized once it sees `stop` (the tick wakes it)
                stop.store(true, Ordering::SeqCst);
                return Err(TraceError::Attach(format!(
                    "{container}: attaching the tracer took more than 10s"
                )));
            }
        };
        Ok(Tracer {
            container: container.to_string(),
            stop,
            tid,
            counters,
            join: Mutex::new(Some(join)),
            initial_pids: initial,
        })
    }

    /// Calls matched and injected so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.counters.matched.load(Ordering::Relaxed),
            self.counters.injected.load(Ordering::Relaxed),
        )
    }

    /// Detaches every tracee and ends the tracer thread (blocking; a few ms). Idempotent.
    pub fn stop(&self) -> TraceCounts {
        self.stop.store(true, Ordering::SeqCst);
        let join = self.join.lock().ok().and_then(|mut j| j.take());
        let errors = match join {
            Some(j) => j.join().unwrap_or_else(|_| {
                vec![format!("the tracer thread of {} panicked", self.container)]
            }),
            None => Vec::new(),
        };
        self.tid.store(0, Ordering::SeqCst);
        TraceCounts {
            matched: self.counters.matched.load(Ordering::Relaxed),
            injected: self.counters.injected.load(Ordering::Relaxed),
            attached_threads: self.counters.attached.load(Ordering::Relaxed),
            errors,
        }
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Threads of the container (main process `pid`) that some process traces:
/// (thread, tracer pid, tracer name).
pub fn traced_threads(pid: i32) -> Vec<(i32, i32, String)> {
    container_threads(pid)
        .into_iter()
        .filter_map(|t| tracer_pid(t).filter(|x| *x != 0).map(|x| (t, x, comm(x))))
        .collect()
}

/// The syscall numbers by name, for the docs and tests.
pub fn known_syscalls() -> BTreeMap<&'static str, i64> {
    SYSCALLS.iter().copied().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_and_names_resolve_to_x86_64_numbers() {
        let n = syscall_numbers(&["writes".into(), "openat".into()]).unwrap();
        assert!(n.contains(&1) && n.contains(&18) && n.contains(&20) && n.contains(&257));
        assert!(!n.contains(&0));
        let e = syscall_numbers(&["wrte".into()]).unwrap_err().to_string();
        assert!(
            e.contains("unknown syscall `wrte`") && e.contains("writes"),
            "{e}"
        );
        // every class member is in the table
        for (c, calls) in CLASSES {
            for call in *calls {
                assert!(known_syscalls().contains_key(call), "{c}: {call}");
            }
        }
    }

    #[test]
    fn errno_names_and_numbers() {
        assert_eq!(errno_from("ENOSPC"), Some(("ENOSPC".into(), 28)));
        assert_eq!(
            errno_from("econnrefused"),
            Some(("ECONNREFUSED".into(), 111))
        );
        assert_eq!(errno_from("5"), Some(("EIO".into(), 5)));
        assert_eq!(errno_from("EWHAT"), None);
        assert_eq!(errno_from("0"), None);
    }

    #[test]
    fn picker_nth_every_and_seeded_probability() {
        let picks = |when: When, seed: u64, n: usize| -> Vec<bool> {
            let mut p = Picker::new(when, seed);
            (0..n).map(|_| p.pick()).collect()
        };
        let nth = picks(When::Nth { nth: 3, every: 10 }, 0, 30);
        let hits: Vec<usize> = (0..30).filter(|i| nth[*i]).map(|i| i + 1).collect();
        assert_eq!(hits, vec![3, 13, 23]);
        let once = picks(When::Nth { nth: 2, every: 0 }, 0, 10);
        assert_eq!(once.iter().filter(|x| **x).count(), 1);
        assert!(picks(When::Always, 0, 5).iter().all(|x| *x));
        let p = When::Probability { p: 0.3 };
        let a = picks(p.clone(), 42, 10_000);
        // the same seed picks the same calls, another seed others
        assert_eq!(a, picks(p.clone(), 42, 10_000));
        assert_ne!(a, picks(p, 43, 10_000));
        let share = a.iter().filter(|x| **x).count() as f64 / 10_000.0;
        assert!((0.27..0.33).contains(&share), "{share}");
        assert!(!picks(When::Probability { p: 0.0 }, 1, 100)
            .iter()
            .any(|x| *x));
    }

    #[test]
    fn refused_attach_names_the_cause() {
        let who = "thread 7 (java) of p_app_1";
        let m = attach_message(who, Some((99, "gdb".into())), Some(1), libc::EPERM);
        assert!(m.contains("already traced by pid 99 (gdb)"), "{m}");
        let m = attach_message(who, None, Some(3), libc::EPERM);
        assert!(m.contains("ptrace_scope is 3"), "{m}");
        let m = attach_message(who, None, Some(2), libc::EPERM);
        assert!(
            m.contains("ptrace_scope is 2") && m.contains("CAP_SYS_PTRACE"),
            "{m}"
        );
        let m = attach_message(who, None, None, libc::EPERM);
        assert!(
            m.starts_with("cannot trace thread 7 (java) of p_app_1: ptrace attach failed: Operation not permitted"),
            "{m}"
        );
    }

    #[test]
    fn path_prefix_is_matched_on_components() {
        assert!(under("/data", "/data"));
        assert!(under("/data/x.log", "/data/"));
        assert!(!under("/database/x", "/data"));
        assert_eq!(normalize("/data/sub", "../x"), "/data/x");
        assert_eq!(normalize("/", "data/./y"), "/data/y");
    }
}
