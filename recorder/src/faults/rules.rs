//! Pure rule generation for network impairments: the names that tag everything the injector puts
//! into a container's network namespace with the compose project, and the `iptables`/`tc` argument
//! vectors that apply and remove each impairment. No I/O here, so every rule is unit-tested.
//!
//! Layout inside a target's network namespace (filter table):
//! `INPUT -j CTK-<hash>-I` and `OUTPUT -j CTK-<hash>-O` (both commented `ctk:<project>`), and in
//! those two chains one rule per impairment, commented `ctk:<hash>:<fault id>`. Traffic on the
//! loopback interface is never touched. Partitions and shaping (`tc`) share one `htb` tree per
//! interface whose root handle is derived from the same hash, so cleanup can tell ours from the
//! default: class `:1` (default, unlimited), class `:2` (drop: a `tbf` leaf with a one-byte limit,
//! for partitions, selected by `u32` destination filters at priority = fault number) and one
//! class per shaping fault (`:4000 + fault number`, selected by a catch-all filter).

use sha2::{Digest, Sha256};

/// Short, stable hash of a compose project name: 8 lowercase hex digits.
pub fn project_hash(project: &str) -> String {
    let d = Sha256::digest(project.as_bytes());
    hex::encode(&d[..4])
}

/// Which of the two per-project chains a rule lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dir {
    /// Packets leaving the container (hooked from `OUTPUT`).
    Egress,
    /// Packets arriving at the container (hooked from `INPUT`).
    Ingress,
}

impl Dir {
    /// The built-in chain the per-project chain hangs off.
    pub fn builtin(self) -> &'static str {
        match self {
            Dir::Egress => "OUTPUT",
            Dir::Ingress => "INPUT",
        }
    }
}

/// The names of everything a project's injector creates in a network namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tags {
    /// The project name, as given.
    pub project: String,
    /// [`project_hash`] of it.
    pub hash: String,
}

impl Tags {
    /// Tags for one compose project.
    pub fn new(project: &str) -> Tags {
        Tags {
            project: project.to_string(),
            hash: project_hash(project),
        }
    }

    /// Chain name for one direction, e.g. `CTK-1a2b3c4d-O` (iptables allows 28 characters).
    pub fn chain(&self, dir: Dir) -> String {
        match dir {
            Dir::Egress => format!("CTK-{}-O", self.hash),
            Dir::Ingress => format!("CTK-{}-I", self.hash),
        }
    }

    /// Comment on the jump rules (names the project for humans reading `iptables -S`).
    pub fn jump_comment(&self) -> String {
        // iptables comments are limited to 256 characters; project names are far shorter, but
        // cut anyway so a rule can never be refused for its comment.
        let mut c = format!("ctk:{}", self.project);
        c.truncate(250);
        c
    }

    /// Comment on one impairment rule.
    pub fn rule_comment(&self, fault_id: &str) -> String {
        format!("ctk:{}:{}", self.hash, fault_id)
    }

    /// The root qdisc handle major number for this project (never 0, never 0xffff, and not the
    /// kernel's automatic 0x8000-range handles).
    pub fn tc_handle(&self) -> u16 {
        let v = u16::from_str_radix(&self.hash[..4], 16).unwrap_or(0x7c7a);
        // Keep it in 0x1000..=0x7fff: clear of 0, of ffff and of the kernel's 8000+ autohandles.
        0x1000 + (v % 0x7000)
    }

    /// The handle as tc prints and takes it, e.g. `2c1f:`.
    pub fn tc_handle_str(&self) -> String {
        format!("{:x}:", self.tc_handle())
    }
}

/// One iptables invocation: the arguments after `iptables`.
pub type Args = Vec<String>;

fn s(v: &str) -> String {
    v.to_string()
}

/// `iptables -w -N CHAIN`: creates a per-project chain (an "already exists" error is fine).
pub fn new_chain(tags: &Tags, dir: Dir) -> Args {
    vec![s("-w"), s("-N"), tags.chain(dir)]
}

/// The jump from the built-in chain into the per-project chain, without the leading
/// `-I`/`-C`/`-D BUILTIN` (see [`with_op`]).
pub fn jump_spec(tags: &Tags, dir: Dir) -> Args {
    vec![
        s("-m"),
        s("comment"),
        s("--comment"),
        tags.jump_comment(),
        s("-j"),
        tags.chain(dir),
    ]
}

/// Prefixes a rule spec with an operation on a chain: `-w OP CHAIN spec...`.
pub fn with_op(op: &str, chain: &str, spec: &[String]) -> Args {
    let mut v = vec![s("-w"), s(op), s(chain)];
    v.extend(spec.iter().cloned());
    v
}

/// Flush and delete of a per-project chain (run after its jump has been removed).
pub fn drop_chain(tags: &Tags, dir: Dir) -> [Args; 2] {
    [
        vec![s("-w"), s("-F"), tags.chain(dir)],
        vec![s("-w"), s("-X"), tags.chain(dir)],
    ]
}

/// One impairment rule inside a per-project chain: its direction and its spec (everything after
/// `-A CHAIN`). Apply with `with_op("-A", chain, spec)`, remove with `with_op("-D", ...)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Rule {
    pub dir: Dir,
    pub spec: Args,
}

impl Rule {
    /// The `iptables` arguments that add this rule.
    pub fn add_args(&self, tags: &Tags) -> Args {
        with_op("-A", &tags.chain(self.dir), &self.spec)
    }

    /// The `iptables` arguments that remove this rule.
    pub fn del_args(&self, tags: &Tags) -> Args {
        with_op("-D", &tags.chain(self.dir), &self.spec)
    }
}

/// An `iptables-restore --noflush` script applying `op` (`-A` or `-D`) to every rule in one
/// transaction (one process per namespace instead of one per rule).
pub fn restore_script(tags: &Tags, op: &str, rules: &[Rule]) -> String {
    restore_script_with(tags, op, rules, false, false)
}

fn push_args(out: &mut String, args: &[String]) {
    for a in args {
        out.push(' ');
        if a.is_empty() || a.contains([' ', '"', '\\', '\'']) {
            out.push('"');
            out.push_str(&a.replace('\\', "\\\\").replace('"', "\\\""));
            out.push('"');
        } else {
            out.push_str(a);
        }
    }
}

/// [`restore_script`], optionally creating the project's two chains and the jumps into them
/// first (`setup`: the namespace has none yet; all in the same transaction), or removing the
/// jumps and the chains after the rules (`teardown`: these were the namespace's last rules).
/// Either way the whole script commits or fails as one.
pub fn restore_script_with(
    tags: &Tags,
    op: &str,
    rules: &[Rule],
    setup: bool,
    teardown: bool,
) -> String {
    let mut out = String::from("*filter\n");
    if setup {
        for dir in [Dir::Egress, Dir::Ingress] {
            out.push_str(&format!(":{} - [0:0]\n", tags.chain(dir)));
        }
        for dir in [Dir::Egress, Dir::Ingress] {
            out.push_str(&format!("-I {} 1", dir.builtin()));
            push_args(&mut out, &jump_spec(tags, dir));
            out.push('\n');
        }
    }
    for r in rules {
        out.push_str(op);
        out.push(' ');
        out.push_str(&tags.chain(r.dir));
        push_args(&mut out, &r.spec);
        out.push('\n');
    }
    if teardown {
        for dir in [Dir::Egress, Dir::Ingress] {
            out.push_str(&format!("-D {}", dir.builtin()));
            push_args(&mut out, &jump_spec(tags, dir));
            out.push('\n');
        }
        for dir in [Dir::Egress, Dir::Ingress] {
            out.push_str(&format!("-X {}\n", tags.chain(dir)));
        }
    }
    out.push_str("COMMIT\n");
    out
}

fn not_lo(dir: Dir) -> Args {
    match dir {
        Dir::Egress => vec![s("!"), s("-o"), s("lo")],
        Dir::Ingress => vec![s("!"), s("-i"), s("lo")],
    }
}

fn peer_match(dir: Dir, cidr: &str) -> Args {
    match dir {
        Dir::Egress => vec![s("-d"), s(cidr)],
        Dir::Ingress => vec![s("-s"), s(cidr)],
    }
}

fn comment(tags: &Tags, fault_id: &str) -> Args {
    vec![
        s("-m"),
        s("comment"),
        s("--comment"),
        tags.rule_comment(fault_id),
    ]
}

/// DROP everything exchanged with `peer` (an address or CIDR) in one direction.
pub fn drop_peer(tags: &Tags, fault_id: &str, dir: Dir, peer: &str) -> Rule {
    let mut spec = not_lo(dir);
    spec.extend(peer_match(dir, peer));
    spec.extend(comment(tags, fault_id));
    spec.extend([s("-j"), s("DROP")]);
    Rule { dir, spec }
}

/// Formats a probability the way the `statistic` match takes it (it keeps 11 decimals).
pub fn fmt_probability(p: f64) -> String {
    let p = p.clamp(0.0, 1.0);
    let mut t = format!("{p:.6}");
    while t.ends_with('0') && !t.ends_with(".0") {
        t.pop();
    }
    t
}

/// DROP a random share `p` (0..=1) of the packets in one direction, optionally only those
/// exchanged with `peer` (an address or CIDR, e.g. a compose network's subnet).
pub fn drop_random(tags: &Tags, fault_id: &str, dir: Dir, p: f64, peer: Option<&str>) -> Rule {
    let mut spec = not_lo(dir);
    if let Some(peer) = peer {
        spec.extend(peer_match(dir, peer));
    }
    spec.extend([
        s("-m"),
        s("statistic"),
        s("--mode"),
        s("random"),
        s("--probability"),
        fmt_probability(p),
    ]);
    spec.extend(comment(tags, fault_id));
    spec.extend([s("-j"), s("DROP")]);
    Rule { dir, spec }
}

/// Directions a `loss` fault can act in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Egress,
    Ingress,
    Both,
}

impl Direction {
    /// Parses `egress` / `ingress` / `both` (also `out` / `in`).
    pub fn parse(v: &str) -> Option<Direction> {
        match v {
            "egress" | "out" | "outgoing" => Some(Direction::Egress),
            "ingress" | "in" | "incoming" => Some(Direction::Ingress),
            "both" => Some(Direction::Both),
            _ => None,
        }
    }

    /// The chains this direction covers.
    pub fn dirs(self) -> &'static [Dir] {
        match self {
            Direction::Egress => &[Dir::Egress],
            Direction::Ingress => &[Dir::Ingress],
            Direction::Both => &[Dir::Egress, Dir::Ingress],
        }
    }

    /// The name used in fault parameters.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Egress => "egress",
            Direction::Ingress => "ingress",
            Direction::Both => "both",
        }
    }
}

/// Minor number of the tree's default class: unclassified traffic, unlimited.
pub const TC_DEFAULT_MINOR: u32 = 1;
/// Minor number of the tree's drop class (partitions): its leaf is a `tbf` with a one-byte queue
/// limit, which drops every packet it is given, silently for the sender.
pub const TC_DROP_MINOR: u32 = 2;
/// First minor number (and filter priority) of shaping classes: `0x4000 + fault number`.
/// Partition filters use the fault number itself as priority, so they are consulted first.
pub const TC_SHAPE_BASE: u32 = 0x4000;

/// The number of a fault id (`f12` → 12), kept in `1..0x4000` so it can serve as a filter
/// priority below [`TC_SHAPE_BASE`].
pub fn fault_number(fault_id: &str) -> u32 {
    let n: u64 = fault_id
        .trim_start_matches(|c: char| !c.is_ascii_digit())
        .parse()
        .unwrap_or(1);
    (n % 0x3fff).max(1) as u32
}

/// `tc class add` of an htb class `minor` under the project's root on `dev` that limits nothing
/// (the default class, and the class above a shaping fault's leaf).
fn unlimited_class(tags: &Tags, dev: &str, minor: u32) -> Vec<String> {
    [
        "class",
        "add",
        "dev",
        dev,
        "parent",
        &tags.tc_handle_str(),
        "classid",
        &class_id(tags, minor),
        "htb",
        "rate",
        "100gbit",
        "burst",
        "1mb",
        "cburst",
        "1mb",
        "quantum",
        "60000",
    ]
    .iter()
    .map(|x| x.to_string())
    .collect()
}

fn class_id(tags: &Tags, minor: u32) -> String {
    format!("{:x}:{:x}", tags.tc_handle(), minor)
}

/// The `tc` commands (arguments after `tc`) that create the project's tree on an interface's
/// egress: an `htb` root with the project's handle whose default class is unlimited, and the drop
/// class partitions steer packets to. Every fault on the interface shares this one tree.
pub fn tc_tree_add(tags: &Tags, dev: &str) -> Vec<Args> {
    let h = tags.tc_handle_str();
    vec![
        vec![
            s("qdisc"),
            s("add"),
            s("dev"),
            s(dev),
            s("root"),
            s("handle"),
            h.clone(),
            s("htb"),
            s("default"),
            format!("{TC_DEFAULT_MINOR:x}"),
        ],
        unlimited_class(tags, dev, TC_DEFAULT_MINOR),
        vec![
            s("class"),
            s("add"),
            s("dev"),
            s(dev),
            s("parent"),
            h,
            s("classid"),
            class_id(tags, TC_DROP_MINOR),
            s("htb"),
            s("rate"),
            s("8bit"),
            s("quantum"),
            s("1514"),
        ],
        vec![
            s("qdisc"),
            s("add"),
            s("dev"),
            s(dev),
            s("parent"),
            class_id(tags, TC_DROP_MINOR),
            s("tbf"),
            s("rate"),
            s("8bit"),
            s("burst"),
            s("1b"),
            s("limit"),
            s("1b"),
        ],
    ]
}

/// A peer address as a u32 `match ip dst` operand (a bare address becomes a /32).
fn cidr(peer: &str) -> String {
    if peer.contains('/') {
        peer.to_string()
    } else {
        format!("{peer}/32")
    }
}

/// The `u32` filter sending what the interface sends to `peer` (an address or CIDR) to the drop
/// class; its priority is the fault's number, so removing the fault is one `filter del`.
pub fn tc_partition_filter(tags: &Tags, dev: &str, fault_id: &str, peer: &str) -> Args {
    vec![
        s("filter"),
        s("add"),
        s("dev"),
        s(dev),
        s("parent"),
        tags.tc_handle_str(),
        s("protocol"),
        s("ip"),
        s("prio"),
        fault_number(fault_id).to_string(),
        s("u32"),
        s("match"),
        s("ip"),
        s("dst"),
        cidr(peer),
        s("flowid"),
        class_id(tags, TC_DROP_MINOR),
    ]
}

/// The priority of a fault's filters: its number for partitions, [`TC_SHAPE_BASE`] + its number
/// for shaping.
pub fn tc_prio(fault_id: &str, shaping: bool) -> u32 {
    let n = fault_number(fault_id);
    if shaping {
        TC_SHAPE_BASE + n
    } else {
        n
    }
}

/// The commands that shape everything an interface sends through `leaf` (a qdisc and its
/// parameters, e.g. `tbf rate ...` or `netem delay ...`): a class of the project's tree for this
/// fault, the leaf under it and a catch-all filter steering every packet there (partition filters
/// have lower priorities, so cut peers stay cut).
pub fn tc_shape_add(tags: &Tags, dev: &str, fault_id: &str, leaf: &[String]) -> Vec<Args> {
    let minor = tc_prio(fault_id, true);
    let mut q = vec![
        s("qdisc"),
        s("add"),
        s("dev"),
        s(dev),
        s("parent"),
        class_id(tags, minor),
    ];
    q.extend(leaf.iter().cloned());
    vec![
        unlimited_class(tags, dev, minor),
        q,
        vec![
            s("filter"),
            s("add"),
            s("dev"),
            s(dev),
            s("parent"),
            tags.tc_handle_str(),
            s("protocol"),
            s("all"),
            s("prio"),
            minor.to_string(),
            s("u32"),
            s("match"),
            s("u32"),
            s("0"),
            s("0"),
            s("flowid"),
            class_id(tags, minor),
        ],
    ]
}

/// The commands removing one fault's part of an interface's tree (when other faults still use
/// the tree; otherwise [`qdisc_del`] removes all of it).
pub fn tc_fault_del(tags: &Tags, dev: &str, fault_id: &str, shaping: bool) -> Vec<Args> {
    let prio = tc_prio(fault_id, shaping);
    let mut v = vec![vec![
        s("filter"),
        s("del"),
        s("dev"),
        s(dev),
        s("parent"),
        tags.tc_handle_str(),
        s("prio"),
        prio.to_string(),
    ]];
    if shaping {
        v.push(vec![
            s("class"),
            s("del"),
            s("dev"),
            s(dev),
            s("classid"),
            class_id(tags, prio),
        ]);
    }
    v
}

/// A `tc -batch -` script: one command per line (our arguments never contain spaces).
pub fn tc_batch_script(cmds: &[Args]) -> String {
    let mut out = String::new();
    for c in cmds {
        out.push_str(&c.join(" "));
        out.push('\n');
    }
    out
}

/// The leaf qdisc of a `bandwidth` fault: a token bucket.
pub fn tbf_leaf(rate_bps: u64, burst_bytes: u64, latency_ms: u64) -> Args {
    vec![
        s("tbf"),
        s("rate"),
        format!("{rate_bps}bit"),
        s("burst"),
        format!("{burst_bytes}b"),
        s("latency"),
        format!("{latency_ms}ms"),
    ]
}

/// Parameters of a netem qdisc (all optional; at least one must be set).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Netem {
    pub delay_ms: Option<f64>,
    pub jitter_ms: Option<f64>,
    pub loss_pct: Option<f64>,
    pub duplicate_pct: Option<f64>,
    pub corrupt_pct: Option<f64>,
    pub reorder_pct: Option<f64>,
}

/// The leaf qdisc of a netem fault.
pub fn netem_leaf(n: &Netem) -> Args {
    let mut v = vec![s("netem")];
    // Reordering needs a delay to act on; netem's own rule.
    let delay = match (n.delay_ms, n.reorder_pct) {
        (Some(d), _) => Some(d),
        (None, Some(_)) => Some(10.0),
        (None, None) => None,
    };
    if let Some(d) = delay {
        v.extend([s("delay"), format!("{d}ms")]);
        if let Some(j) = n.jitter_ms {
            v.push(format!("{j}ms"));
        }
    }
    if let Some(p) = n.loss_pct {
        v.extend([s("loss"), format!("{p}%")]);
    }
    if let Some(p) = n.duplicate_pct {
        v.extend([s("duplicate"), format!("{p}%")]);
    }
    if let Some(p) = n.corrupt_pct {
        v.extend([s("corrupt"), format!("{p}%")]);
    }
    if let Some(p) = n.reorder_pct {
        v.extend([s("reorder"), format!("{p}%")]);
    }
    v
}

/// `tc` arguments that remove the root qdisc of an interface (back to the default).
pub fn qdisc_del(dev: &str) -> Args {
    vec![s("qdisc"), s("del"), s("dev"), s(dev), s("root")]
}

/// Finds the root qdisc handle in `tc qdisc show dev X` output, e.g. `Some("2c1f:")`.
pub fn root_qdisc_handle(show: &str) -> Option<String> {
    for line in show.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        // qdisc KIND HANDLE root ...
        if f.len() >= 4 && f[0] == "qdisc" && f[3] == "root" {
            return Some(f[2].to_string());
        }
    }
    None
}

/// The interfaces whose root qdisc has `handle` in `tc qdisc show` output (all devices), e.g.
/// `qdisc htb 2c1f: dev eth0 root refcnt 2 ...`.
pub fn root_devs_with_handle(show: &str, handle: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in show.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        // qdisc KIND HANDLE dev DEV root ...
        if f.len() >= 6 && f[0] == "qdisc" && f[2] == handle && f[3] == "dev" && f[5] == "root" {
            out.push(f[4].to_string());
        }
    }
    out
}

/// Interface names from `/proc/<pid>/net/dev` (without `lo`).
pub fn interfaces_from_net_dev(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines().skip(2) {
        if let Some((name, _)) = line.split_once(':') {
            let name = name.trim();
            if !name.is_empty() && name != "lo" {
                out.push(name.to_string());
            }
        }
    }
    out
}

/// From `iptables -S` output of a namespace: the lines that belong to this project (its chains,
/// the jumps into them, and any rule carrying its comment).
pub fn project_lines<'a>(tags: &Tags, iptables_s: &'a str) -> Vec<&'a str> {
    let prefix = format!("CTK-{}", tags.hash);
    let c = format!("ctk:{}", tags.hash);
    iptables_s
        .lines()
        .filter(|l| l.contains(&prefix) || l.contains(&c))
        .collect()
}

/// Turns an `iptables -S` `-A CHAIN spec` line into the `-D CHAIN spec` arguments removing it.
/// Quoted comments are unquoted. `None` for lines that are not rule appends.
pub fn delete_args_for_line(line: &str) -> Option<Args> {
    let words = split_shell(line)?;
    if words.len() < 3 || words[0] != "-A" {
        return None;
    }
    let mut v = vec![s("-w"), s("-D")];
    v.extend(words.into_iter().skip(1));
    Some(v)
}

/// Splits a line like iptables prints it: words separated by spaces, `"..."` quoting with `\"`.
pub fn split_shell(line: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_q = false;
    let mut has = false;
    let mut it = line.chars();
    while let Some(c) = it.next() {
        match c {
            '"' => {
                in_q = !in_q;
                has = true;
            }
            '\\' if in_q => {
                if let Some(n) = it.next() {
                    cur.push(n);
                }
            }
            ' ' | '\t' if !in_q => {
                if has || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                    has = false;
                }
            }
            _ => cur.push(c),
        }
    }
    if in_q {
        return None;
    }
    if has || !cur.is_empty() {
        out.push(cur);
    }
    Some(out)
}

/// Parses a rate into bits per second: `1mbit`, `500kbit`, `10mbps` (bytes, tc style), `2gbit`,
/// `800bit`, or a bare number of bits per second.
pub fn parse_rate(v: &str) -> Option<u64> {
    let v = v.trim().to_ascii_lowercase();
    let split = v.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (num, unit) = v.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult: f64 = match unit {
        "bit" | "bps_bits" => 1.0,
        "kbit" => 1e3,
        "mbit" => 1e6,
        "gbit" => 1e9,
        "bps" => 8.0,
        "kbps" => 8e3,
        "mbps" => 8e6,
        "gbps" => 8e9,
        _ => return None,
    };
    let r = n * mult;
    if !(r.is_finite() && r >= 1.0) {
        return None;
    }
    Some(r as u64)
}

/// Parses a size into bytes: `256m`, `1g`, `512k`, `100b`, `64mb`, or a bare number of bytes.
pub fn parse_size(v: &str) -> Option<i64> {
    let v = v.trim().to_ascii_lowercase();
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult: f64 = match unit.trim_end_matches('b').trim_end_matches('i') {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let r = n * mult;
    if !(r.is_finite() && r >= 1.0 && r < i64::MAX as f64) {
        return None;
    }
    Some(r as i64)
}

/// Normalises a signal name or number for the Docker kill API: `KILL`, `sigterm`, `9` → `SIGKILL`,
/// `SIGTERM`, `9`. `None` for names that are not Linux signals.
pub fn normalize_signal(v: &str) -> Option<String> {
    const NAMES: [&str; 31] = [
        "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2",
        "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG",
        "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "PWR", "SYS",
    ];
    let t = v.trim();
    if let Ok(n) = t.parse::<u32>() {
        return (1..=64).contains(&n).then(|| n.to_string());
    }
    let up = t.to_ascii_uppercase();
    let bare = up.strip_prefix("SIG").unwrap_or(&up);
    if NAMES.contains(&bare) || bare.starts_with("RTMIN") || bare.starts_with("RTMAX") {
        Some(format!("SIG{bare}"))
    } else {
        None
    }
}

/// A `nat` redirect of an `http` or `dns` fault: which built-in chain, which packets, and the
/// local port of the proxy they go to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// `PREROUTING` (inbound connections) or `OUTPUT` (the container's own calls).
    pub chain: &'static str,
    /// `tcp` or `udp`.
    pub proto: &'static str,
    /// Only packets to this address (outbound peers, the resolver).
    pub dst: Option<String>,
    pub dport: u16,
    pub to_port: u16,
}

impl Redirect {
    fn spec(&self, tags: &Tags, fault_id: &str) -> Args {
        let mut v = vec![s("-p"), s(self.proto)];
        if let Some(d) = &self.dst {
            v.extend([s("-d"), cidr(d)]);
        }
        v.extend([s("--dport"), self.dport.to_string()]);
        // the proxies' own upstream traffic carries the mark and is never redirected
        v.extend([
            s("-m"),
            s("mark"),
            s("!"),
            s("--mark"),
            format!("{:#x}", super::netns::PROXY_MARK),
        ]);
        v.extend(comment(tags, fault_id));
        v.extend([
            s("-j"),
            s("REDIRECT"),
            s("--to-ports"),
            self.to_port.to_string(),
        ]);
        v
    }

    /// `iptables -t nat -I CHAIN 1 ...`: first in the chain, before Docker's own DNS rules.
    pub fn add_args(&self, tags: &Tags, fault_id: &str) -> Args {
        let mut v = vec![s("-w"), s("-t"), s("nat"), s("-I"), s(self.chain), s("1")];
        v.extend(self.spec(tags, fault_id));
        v
    }

    /// `iptables -t nat -D CHAIN ...`.
    pub fn del_args(&self, tags: &Tags, fault_id: &str) -> Args {
        let mut v = vec![s("-w"), s("-t"), s("nat"), s("-D"), s(self.chain)];
        v.extend(self.spec(tags, fault_id));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags() -> Tags {
        Tags::new("ctk-test-1")
    }

    #[test]
    fn chains_are_short_and_tagged_with_the_project_hash() {
        let t = tags();
        assert_eq!(t.hash.len(), 8);
        assert_eq!(t.hash, project_hash("ctk-test-1"));
        assert_ne!(t.hash, project_hash("ctk-test-2"));
        let c = t.chain(Dir::Egress);
        assert!(c.len() <= 28, "{c}");
        assert_eq!(c, format!("CTK-{}-O", t.hash));
        assert_eq!(t.chain(Dir::Ingress), format!("CTK-{}-I", t.hash));
        let h = t.tc_handle();
        assert!((0x1000..0x8000).contains(&h));
        assert!(t.tc_handle_str().ends_with(':'));
    }

    #[test]
    fn drop_peer_rules_match_direction_and_skip_loopback() {
        let t = tags();
        let r = drop_peer(&t, "f1", Dir::Egress, "172.20.0.3");
        assert_eq!(
            r.add_args(&t),
            vec![
                "-w",
                "-A",
                &t.chain(Dir::Egress),
                "!",
                "-o",
                "lo",
                "-d",
                "172.20.0.3",
                "-m",
                "comment",
                "--comment",
                &format!("ctk:{}:f1", t.hash),
                "-j",
                "DROP"
            ]
        );
        let r = drop_peer(&t, "f1", Dir::Ingress, "172.20.0.0/16");
        let a = r.del_args(&t);
        assert_eq!(a[1], "-D");
        assert_eq!(a[2], t.chain(Dir::Ingress));
        assert!(a
            .windows(2)
            .any(|w| w[0] == "-s" && w[1] == "172.20.0.0/16"));
        assert!(a.windows(2).any(|w| w[0] == "-i" && w[1] == "lo"));
    }

    #[test]
    fn restore_script_batches_rules() {
        let t = tags();
        let rs = vec![
            drop_peer(&t, "f1", Dir::Ingress, "10.0.0.2"),
            drop_random(&t, "f1", Dir::Egress, 0.25, None),
        ];
        let sc = restore_script(&t, "-A", &rs);
        let lines: Vec<&str> = sc.lines().collect();
        assert_eq!(lines[0], "*filter");
        assert_eq!(
            lines[1],
            format!(
                "-A {} ! -i lo -s 10.0.0.2 -m comment --comment ctk:{}:f1 -j DROP",
                t.chain(Dir::Ingress),
                t.hash
            )
        );
        assert!(lines[2].starts_with(&format!("-A {} ! -o lo -m statistic", t.chain(Dir::Egress))));
        assert_eq!(lines[3], "COMMIT");
        let d = restore_script(&t, "-D", &rs[..1]);
        assert!(d.contains("\n-D CTK-"), "{d}");
    }

    #[test]
    fn restore_script_sets_up_and_tears_down_chains_in_the_same_transaction() {
        let t = tags();
        let rs = vec![drop_peer(&t, "f4", Dir::Ingress, "10.0.0.9")];
        let (o, i) = (t.chain(Dir::Egress), t.chain(Dir::Ingress));
        let jump =
            |b: &str, c: &str| format!("{b} -m comment --comment {} -j {c}", t.jump_comment());
        let add = restore_script_with(&t, "-A", &rs, true, false);
        let lines: Vec<&str> = add.lines().collect();
        assert_eq!(lines[0], "*filter");
        assert_eq!(lines[1], format!(":{o} - [0:0]"));
        assert_eq!(lines[2], format!(":{i} - [0:0]"));
        assert_eq!(lines[3], format!("-I {}", jump("OUTPUT 1", &o)));
        assert_eq!(lines[4], format!("-I {}", jump("INPUT 1", &i)));
        assert!(lines[5].starts_with(&format!("-A {i} ")), "{add}");
        assert_eq!(lines[6], "COMMIT");
        assert_eq!(lines.len(), 7);
        // chains declared before the jumps that use them, rules after both
        let del = restore_script_with(&t, "-D", &rs, false, true);
        let lines: Vec<&str> = del.lines().collect();
        assert!(lines[1].starts_with(&format!("-D {i} ")), "{del}");
        assert_eq!(lines[2], format!("-D {}", jump("OUTPUT", &o)));
        assert_eq!(lines[3], format!("-D {}", jump("INPUT", &i)));
        assert_eq!(lines[4], format!("-X {o}"));
        assert_eq!(lines[5], format!("-X {i}"));
        assert_eq!(lines[6], "COMMIT");
        // without set-up or tear-down: the rules alone, as before
        assert_eq!(
            restore_script_with(&t, "-A", &rs, false, false),
            restore_script(&t, "-A", &rs)
        );
    }

    #[test]
    fn random_drop_uses_statistic_match() {
        let t = tags();
        let r = drop_random(&t, "f3", Dir::Egress, 0.5, Some("172.30.0.0/16"));
        let a = r.add_args(&t).join(" ");
        assert!(
            a.contains("-m statistic --mode random --probability 0.5 "),
            "{a}"
        );
        assert!(a.contains("-d 172.30.0.0/16"), "{a}");
        assert_eq!(fmt_probability(0.3), "0.3");
        assert_eq!(fmt_probability(1.5), "1.0");
        assert_eq!(fmt_probability(0.123456789), "0.123457");
    }

    #[test]
    fn tc_arguments() {
        let t = tags();
        let h = t.tc_handle_str();
        let hx = format!("{:x}", t.tc_handle());
        let tree: Vec<String> = tc_tree_add(&t, "eth0")
            .iter()
            .map(|a| a.join(" "))
            .collect();
        assert_eq!(
            tree[0],
            format!("qdisc add dev eth0 root handle {h} htb default 1")
        );
        assert!(tree[1].starts_with(&format!(
            "class add dev eth0 parent {h} classid {hx}:1 htb rate 100gbit"
        )));
        assert!(tree[2].starts_with(&format!("class add dev eth0 parent {h} classid {hx}:2 htb")));
        assert_eq!(
            tree[3],
            format!("qdisc add dev eth0 parent {hx}:2 tbf rate 8bit burst 1b limit 1b")
        );
        assert_eq!(
            tc_partition_filter(&t, "eth0", "f7", "172.20.0.3").join(" "),
            format!(
                "filter add dev eth0 parent {h} protocol ip prio 7 u32 match ip dst 172.20.0.3/32 flowid {hx}:2"
            )
        );
        assert!(tc_partition_filter(&t, "eth0", "f7", "172.20.0.0/16")
            .join(" ")
            .contains("match ip dst 172.20.0.0/16 "));
        let shape: Vec<String> = tc_shape_add(&t, "eth1", "f3", &tbf_leaf(1_000_000, 3200, 100))
            .iter()
            .map(|a| a.join(" "))
            .collect();
        assert!(shape[0].starts_with(&format!(
            "class add dev eth1 parent {h} classid {hx}:4003 htb"
        )));
        assert_eq!(
            shape[1],
            format!(
                "qdisc add dev eth1 parent {hx}:4003 tbf rate 1000000bit burst 3200b latency 100ms"
            )
        );
        assert_eq!(
            shape[2],
            format!(
                "filter add dev eth1 parent {h} protocol all prio 16387 u32 match u32 0 0 flowid {hx}:4003"
            )
        );
        // Partition filters are consulted before any shaping filter.
        assert!(tc_prio("f9999", false) < tc_prio("f1", true));
        assert_eq!(
            tc_fault_del(&t, "eth0", "f7", false)
                .iter()
                .map(|a| a.join(" "))
                .collect::<Vec<_>>(),
            vec![format!("filter del dev eth0 parent {h} prio 7")]
        );
        let d = tc_fault_del(&t, "eth1", "f3", true);
        assert_eq!(
            d[1].join(" "),
            format!("class del dev eth1 classid {hx}:4003")
        );
        assert_eq!(
            tc_batch_script(&d),
            format!(
                "filter del dev eth1 parent {h} prio 16387\nclass del dev eth1 classid {hx}:4003\n"
            )
        );
        assert_eq!(fault_number("f12"), 12);
        assert_eq!(fault_number("f0"), 1);
        let n = Netem {
            delay_ms: Some(100.0),
            jitter_ms: Some(20.0),
            duplicate_pct: Some(1.0),
            ..Default::default()
        };
        assert_eq!(
            netem_leaf(&n).join(" "),
            "netem delay 100ms 20ms duplicate 1%"
        );
        let n = Netem {
            reorder_pct: Some(25.0),
            ..Default::default()
        };
        assert_eq!(netem_leaf(&n).join(" "), "netem delay 10ms reorder 25%");
        assert_eq!(qdisc_del("eth0").join(" "), "qdisc del dev eth0 root");
    }

    #[test]
    fn parses_tc_and_proc_output() {
        let show = "qdisc tbf 2c1f: root refcnt 2 rate 1Mbit burst 4Kb lat 400ms \n";
        assert_eq!(root_qdisc_handle(show).as_deref(), Some("2c1f:"));
        assert_eq!(
            root_qdisc_handle("qdisc noqueue 0: root refcnt 2 \n").as_deref(),
            Some("0:")
        );
        assert_eq!(root_qdisc_handle(""), None);
        let all = "qdisc noqueue 0: dev lo root refcnt 2 \nqdisc htb 2c1f: dev eth0 root refcnt 2 r2q 10 default 0x1\nqdisc tbf 8001: dev eth0 parent 2c1f:2 rate 8bit\nqdisc htb 3c1f: dev eth1 root refcnt 2\n";
        assert_eq!(root_devs_with_handle(all, "2c1f:"), vec!["eth0"]);
        let dev = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0\n  eth0:    1000      10    0    0    0     0          0         0      500       5    0    0    0     0       0          0\n  eth1:    1000      10    0    0    0     0          0         0      500       5    0    0    0     0       0          0\n";
        assert_eq!(interfaces_from_net_dev(dev), vec!["eth0", "eth1"]);
    }

    #[test]
    fn finds_and_deletes_project_lines() {
        let t = tags();
        let other = Tags::new("someone-else");
        let text = format!(
            "-P INPUT ACCEPT\n-N {ci}\n-N {oo}\n-A INPUT -m comment --comment \"ctk:ctk-test-1\" -j {ci}\n-A {ci} ! -i lo -s 10.0.0.2/32 -m comment --comment \"ctk:{h}:f1\" -j DROP\n-A {oo} -j DROP\n",
            ci = t.chain(Dir::Ingress),
            oo = other.chain(Dir::Egress),
            h = t.hash
        );
        let lines = project_lines(&t, &text);
        assert_eq!(lines.len(), 3, "{lines:?}");
        let d = delete_args_for_line(lines[1]).unwrap_or_default();
        assert_eq!(
            d,
            vec![
                "-w",
                "-D",
                "INPUT",
                "-m",
                "comment",
                "--comment",
                "ctk:ctk-test-1",
                "-j",
                &t.chain(Dir::Ingress)
            ]
        );
        assert_eq!(delete_args_for_line(lines[0]), None);
        assert_eq!(
            split_shell("a \"b c\" \"d\\\"e\""),
            Some(vec!["a".into(), "b c".into(), "d\"e".into()])
        );
        assert_eq!(split_shell("a \"b"), None);
    }

    #[test]
    fn parses_units() {
        assert_eq!(parse_rate("1mbit"), Some(1_000_000));
        assert_eq!(parse_rate("500kbit"), Some(500_000));
        assert_eq!(parse_rate("1mbps"), Some(8_000_000));
        assert_eq!(parse_rate("1.5mbit"), Some(1_500_000));
        assert_eq!(parse_rate("fast"), None);
        assert_eq!(parse_rate("1parsec"), None);
        assert_eq!(parse_size("256m"), Some(256 * 1024 * 1024));
        assert_eq!(parse_size("1g"), Some(1 << 30));
        assert_eq!(parse_size("64MiB"), Some(64 << 20));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(normalize_signal("KILL").as_deref(), Some("SIGKILL"));
        assert_eq!(normalize_signal("sigterm").as_deref(), Some("SIGTERM"));
        assert_eq!(normalize_signal("9").as_deref(), Some("9"));
        assert_eq!(normalize_signal("SIGNOPE"), None);
        assert_eq!(normalize_signal("99"), None);
    }

    #[test]
    fn nat_redirects_are_tagged_exempt_the_proxy_mark_and_come_first() {
        let tags = Tags::new("proj");
        let r = Redirect {
            chain: "OUTPUT",
            proto: "udp",
            dst: Some("127.0.0.11".into()),
            dport: 53,
            to_port: 40000,
        };
        let add = r.add_args(&tags, "f2").join(" ");
        assert!(
            add.starts_with("-w -t nat -I OUTPUT 1 -p udp -d 127.0.0.11/32 --dport 53 -m mark ! --mark 0x43544b31"),
            "{add}"
        );
        assert!(add.contains(&tags.rule_comment("f2")), "{add}");
        assert!(add.ends_with("-j REDIRECT --to-ports 40000"), "{add}");
        let del = r.del_args(&tags, "f2").join(" ");
        assert!(del.starts_with("-w -t nat -D OUTPUT -p udp"), "{del}");
        // `iptables -t nat -S` prints the rule so that cleanup finds it by its comment
        let listed = format!(
            "-P OUTPUT ACCEPT\n-A OUTPUT -d 127.0.0.11/32 -p udp -m udp --dport 53 -m mark ! --mark 0x43544b31 -m comment --comment \"{}\" -j REDIRECT --to-ports 40000\n-A OUTPUT -d 127.0.0.11/32 -j DOCKER_OUTPUT\n",
            tags.rule_comment("f2")
        );
        let lines = project_lines(&tags, &listed);
        assert_eq!(lines.len(), 1);
        assert!(delete_args_for_line(lines[0]).is_some());
    }
}
