//! The cluster membership state machine, pure: no sockets, no clocks. Time comes in as
//! milliseconds on a monotonic clock; messages come in and go out as values; log lines are
//! collected for the caller. It follows Akka Cluster closely enough for the seed's monitors:
//! join through seed nodes, gossip of members (status only moves forward) and of per-observer
//! reachability records, a deadline failure detector, the leader (lowest address among members
//! reachable from here, preferring Up/Leaving), leader actions under reachability convergence
//! (Joining -> Up, removal of Down members), auto-downing of members unreachable for longer than
//! a configured time, and a node that learns it was downed or removed shuts itself down.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

/// An Akka address `akka.tcp://System@host:port`; ordered by host then port, like Akka's
/// `Member.addressOrdering`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Address {
    pub host: String,
    pub port: u16,
    pub system: String,
}

impl Ord for Address {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (&self.host, self.port, &self.system).cmp(&(&o.host, o.port, &o.system))
    }
}
impl PartialOrd for Address {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "akka.tcp://{}@{}:{}", self.system, self.host, self.port)
    }
}

impl FromStr for Address {
    type Err = String;
    /// Accepts `akka.tcp://Sys@host:port`, `akka://Sys@host:port` or `host:port` (system left empty).
    fn from_str(s: &str) -> Result<Address, String> {
        let t = s.trim();
        let (system, hp) = match t.split_once("://") {
            Some((_, rest)) => match rest.split_once('@') {
                Some((sys, hp)) => (sys.to_string(), hp),
                None => return Err(format!("`{t}` is not an akka address (no `@`)")),
            },
            None => (String::new(), t),
        };
        let (host, port) = hp
            .rsplit_once(':')
            .ok_or_else(|| format!("`{t}` has no port"))?;
        let port = port
            .trim_end_matches('/')
            .parse()
            .map_err(|_| format!("`{t}`: port `{port}` is not a number"))?;
        if host.is_empty() {
            return Err(format!("`{t}` has no host"));
        }
        Ok(Address {
            host: host.to_string(),
            port,
            system,
        })
    }
}

impl Serialize for Address {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}
impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Address, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One incarnation of a node: its address and a random uid chosen at start.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct UniqueAddress {
    pub address: Address,
    pub uid: u64,
}

/// Akka's member status; only ever moves forward (the derive order is the lifecycle order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum MemberStatus {
    Joining,
    WeaklyUp,
    Up,
    Leaving,
    Exiting,
    Down,
    Removed,
}

impl fmt::Display for MemberStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub node: UniqueAddress,
    pub status: MemberStatus,
    pub roles: Vec<String>,
}

/// What one observer currently considers unreachable; the observer bumps the version on change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub observer: UniqueAddress,
    pub version: u64,
    pub unreachable: BTreeSet<UniqueAddress>,
}

/// The messages nodes exchange (JSON over UDP).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Message {
    /// Sent to every seed node by a node that wants to join; members answer `InitJoinAck`.
    InitJoin {
        from: UniqueAddress,
    },
    InitJoinAck {
        from: UniqueAddress,
    },
    /// Sent to the first seed that acknowledged, until a gossip containing the sender arrives.
    Join {
        from: UniqueAddress,
        roles: Vec<String>,
    },
    /// The full membership state; doubles as the heartbeat.
    Gossip {
        from: UniqueAddress,
        members: Vec<Member>,
        removed: Vec<UniqueAddress>,
        reachability: Vec<Record>,
    },
}

impl Message {
    pub fn from(&self) -> &UniqueAddress {
        match self {
            Message::InitJoin { from }
            | Message::InitJoinAck { from }
            | Message::Join { from, .. }
            | Message::Gossip { from, .. } => from,
        }
    }
}

/// Timing and identity settings of a node (times in ms).
#[derive(Clone, Debug)]
pub struct Settings {
    pub self_node: UniqueAddress,
    pub roles: Vec<String>,
    pub seeds: Vec<Address>,
    pub heartbeat_interval_ms: u64,
    pub failure_timeout_ms: u64,
    /// `None` disables auto-downing.
    pub auto_down_ms: Option<u64>,
    /// How long the first seed waits for other seeds before forming a cluster alone.
    pub seed_timeout_ms: u64,
    pub join_retry_ms: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Not a member yet: sending Join to the seeds.
    Joining,
    Member,
    /// Downed or removed by the others (or never got in): no longer part of any cluster.
    Shutdown,
}

/// The state one node has, and the view served over Jolokia.
#[derive(Debug)]
pub struct Node {
    pub settings: Settings,
    phase: Phase,
    started_ms: u64,
    members: BTreeMap<Address, Member>,
    removed: BTreeSet<UniqueAddress>,
    records: BTreeMap<UniqueAddress, Record>,
    last_heard: BTreeMap<UniqueAddress, u64>,
    unreachable_since: BTreeMap<UniqueAddress, u64>,
    last_tick: Option<u64>,
    last_join_sent: Option<u64>,
    /// The seed that acknowledged our InitJoin (Akka's JoinSeedNodeProcess), and since when.
    join_target: Option<(Address, u64)>,
    leader: Option<Address>,
    duties_msg: Option<String>,
    logs: Vec<String>,
}

/// A snapshot for the Jolokia MBean.
#[derive(Clone, Debug, PartialEq)]
pub struct View {
    pub self_address: Address,
    pub self_status: MemberStatus,
    pub members: Vec<Member>,
    /// Unreachable members with their observers (sorted).
    pub unreachable: Vec<(Address, Vec<Address>)>,
    pub leader: Option<Address>,
}

impl Node {
    pub fn new(settings: Settings, now: u64) -> Node {
        let mut n = Node {
            settings,
            phase: Phase::Joining,
            started_ms: now,
            members: BTreeMap::new(),
            removed: BTreeSet::new(),
            records: BTreeMap::new(),
            last_heard: BTreeMap::new(),
            unreachable_since: BTreeMap::new(),
            last_tick: None,
            last_join_sent: None,
            join_target: None,
            leader: None,
            duties_msg: None,
            logs: Vec::new(),
        };
        let me = n.me().address.clone();
        let first_seed = n.settings.seeds.first().is_none_or(|s| *s == me);
        let other_seeds = n.settings.seeds.iter().any(|s| *s != me);
        n.log(format!(
            "Starting up, Akka version [demo-node {}] ...",
            env!("CARGO_PKG_VERSION")
        ));
        n.log("Registered cluster JMX MBean [akka:type=Cluster]".into());
        n.log("Started up successfully".into());
        if first_seed && !other_seeds {
            n.form_cluster();
        }
        n
    }

    fn me(&self) -> &UniqueAddress {
        &self.settings.self_node
    }

    fn log(&mut self, msg: String) {
        let me = self.settings.self_node.address.to_string();
        self.logs.push(format!("Cluster Node [{me}] - {msg}"));
    }

    /// Log lines produced since the last call.
    pub fn take_logs(&mut self) -> Vec<String> {
        std::mem::take(&mut self.logs)
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    fn form_cluster(&mut self) {
        let me = self.me().clone();
        let roles = self.settings.roles.clone();
        self.log(format!(
            "Node [{}] is JOINING itself (with roles [{}]) and forming new cluster",
            me.address,
            roles.join(", ")
        ));
        self.members.insert(
            me.address.clone(),
            Member {
                node: me.clone(),
                status: MemberStatus::Joining,
                roles,
            },
        );
        self.records.insert(
            me.clone(),
            Record {
                observer: me,
                version: 0,
                unreachable: BTreeSet::new(),
            },
        );
        self.phase = Phase::Member;
    }

    fn gossip(&self) -> Message {
        Message::Gossip {
            from: self.me().clone(),
            members: self.members.values().cloned().collect(),
            removed: self.removed.iter().cloned().collect(),
            reachability: self.records.values().cloned().collect(),
        }
    }

    /// Advances time: failure detection, leader actions, and the messages to send now
    /// (join requests, or gossip to every member but ourselves).
    pub fn tick(&mut self, now: u64) -> Vec<(Address, Message)> {
        let mut out = Vec::new();
        let hb = self.settings.heartbeat_interval_ms;
        if let Some(prev) = self.last_tick {
            let gap = now.saturating_sub(prev);
            if gap > (self.settings.failure_timeout_ms / 2).max(3 * hb) {
                // We were frozen (e.g. `docker pause`): give everybody a fresh deadline instead of
                // declaring the whole cluster dead.
                self.log(format!(
                    "Scheduled sending of heartbeat was delayed. Previous heartbeat was sent [{gap}] ms ago, expected interval is [{hb}] ms. This may cause failure detection to mark members as unreachable."
                ));
                for t in self.last_heard.values_mut() {
                    *t = now;
                }
            }
        }
        self.last_tick = Some(now);
        match self.phase {
            Phase::Shutdown => {}
            Phase::Joining => {
                let me = self.me().address.clone();
                let first_seed = self.settings.seeds.first() == Some(&me);
                let retry = self.settings.join_retry_ms;
                if let Some((_, since)) = &self.join_target {
                    if now.saturating_sub(*since) >= 5 * retry {
                        // The acknowledged seed never welcomed us: start over.
                        self.join_target = None;
                    }
                }
                if first_seed
                    && self.join_target.is_none()
                    && now.saturating_sub(self.started_ms) >= self.settings.seed_timeout_ms
                {
                    self.form_cluster();
                } else if self
                    .last_join_sent
                    .is_none_or(|t| now.saturating_sub(t) >= retry)
                {
                    self.last_join_sent = Some(now);
                    let me_node = self.me().clone();
                    match &self.join_target {
                        Some((target, _)) => out.push((
                            target.clone(),
                            Message::Join {
                                from: me_node,
                                roles: self.settings.roles.clone(),
                            },
                        )),
                        None => {
                            for s in self.settings.seeds.iter().filter(|s| **s != me) {
                                out.push((
                                    s.clone(),
                                    Message::InitJoin {
                                        from: me_node.clone(),
                                    },
                                ));
                            }
                        }
                    }
                }
            }
            Phase::Member => {
                self.failure_detector(now);
                self.leader_actions(now);
                if self.phase == Phase::Member {
                    let g = self.gossip();
                    let me = self.me().address.clone();
                    for a in self.members.keys().filter(|a| **a != me) {
                        out.push((a.clone(), g.clone()));
                    }
                }
            }
        }
        out
    }

    /// Handles one message; returns immediate replies.
    pub fn receive(&mut self, msg: Message, now: u64) -> Vec<(Address, Message)> {
        if self.phase == Phase::Shutdown {
            return Vec::new();
        }
        let from = msg.from().clone();
        if from == *self.me() {
            return Vec::new();
        }
        if self.removed.contains(&from) {
            // A removed incarnation still talks to us: tell it (it will shut itself down).
            return if self.phase == Phase::Member {
                vec![(from.address, self.gossip())]
            } else {
                Vec::new()
            };
        }
        match msg {
            Message::InitJoin { from } => {
                if self.phase == Phase::Member {
                    let ack = Message::InitJoinAck {
                        from: self.me().clone(),
                    };
                    vec![(from.address, ack)]
                } else {
                    Vec::new()
                }
            }
            Message::InitJoinAck { from } => {
                if self.phase == Phase::Joining && self.join_target.is_none() {
                    self.join_target = Some((from.address.clone(), now));
                    self.last_join_sent = Some(now);
                    let join = Message::Join {
                        from: self.me().clone(),
                        roles: self.settings.roles.clone(),
                    };
                    vec![(from.address, join)]
                } else {
                    Vec::new()
                }
            }
            Message::Join { from, roles } => self.on_join(from, roles, now),
            Message::Gossip {
                from,
                members,
                removed,
                reachability,
            } => {
                self.on_gossip(from, members, removed, reachability, now);
                Vec::new()
            }
        }
    }

    fn on_join(
        &mut self,
        from: UniqueAddress,
        roles: Vec<String>,
        now: u64,
    ) -> Vec<(Address, Message)> {
        if self.phase != Phase::Member {
            return Vec::new();
        }
        match self.members.get(&from.address).cloned() {
            Some(m) if m.node.uid != from.uid => {
                if m.status < MemberStatus::Down {
                    self.log(format!(
                        "New incarnation of existing member [{}] is trying to join. Existing will be removed from the cluster and then new member will be allowed to join.",
                        from.address
                    ));
                    self.set_status(&from.address, MemberStatus::Down);
                }
                Vec::new()
            }
            Some(_) => vec![(from.address, self.gossip())],
            None => {
                self.log(format!(
                    "Node [{}] is JOINING, roles [{}]",
                    from.address,
                    roles.join(", ")
                ));
                self.last_heard.insert(from.clone(), now);
                self.members.insert(
                    from.address.clone(),
                    Member {
                        node: from.clone(),
                        status: MemberStatus::Joining,
                        roles,
                    },
                );
                vec![(from.address, self.gossip())]
            }
        }
    }

    fn on_gossip(
        &mut self,
        from: UniqueAddress,
        members: Vec<Member>,
        removed: Vec<UniqueAddress>,
        reachability: Vec<Record>,
        now: u64,
    ) {
        let me = self.me().clone();
        let downed_me = removed.contains(&me)
            || members
                .iter()
                .any(|m| m.node == me && m.status >= MemberStatus::Down);
        if downed_me && self.phase == Phase::Member {
            self.log("Node has been marked as DOWN. Shutting down myself".into());
            self.shutdown();
            return;
        }
        if self.phase == Phase::Joining {
            if !members.iter().any(|m| m.node == me) {
                return;
            }
            self.log(format!("Welcome from [{}]", from.address));
            self.phase = Phase::Member;
            self.records.insert(
                me.clone(),
                Record {
                    observer: me.clone(),
                    version: 0,
                    unreachable: BTreeSet::new(),
                },
            );
        } else if !self.members.contains_key(&from.address) && !members.iter().any(|m| m.node == me)
        {
            // Gossip from a different cluster we are not part of.
            return;
        }
        self.last_heard.insert(from.clone(), now);
        // Merge removals first: they win over any member entry.
        for r in removed {
            if self.removed.insert(r.clone()) {
                if self.members.get(&r.address).is_some_and(|m| m.node == r) {
                    self.members.remove(&r.address);
                }
                self.forget(&r);
            }
        }
        for m in members {
            if self.removed.contains(&m.node) {
                continue;
            }
            match self.members.get_mut(&m.node.address) {
                None => {
                    self.last_heard.entry(m.node.clone()).or_insert(now);
                    self.members.insert(m.node.address.clone(), m);
                }
                Some(ours) if ours.node == m.node => {
                    if m.status > ours.status {
                        ours.status = m.status;
                    }
                    if ours.roles.is_empty() {
                        ours.roles = m.roles;
                    }
                }
                Some(ours) => {
                    // Two incarnations at one address: the older one is on its way out.
                    if m.status >= MemberStatus::Down && ours.status < MemberStatus::Down {
                        // theirs is the old one being downed; keep ours
                    } else if ours.status >= MemberStatus::Down {
                        *ours = m;
                    }
                }
            }
        }
        for r in reachability {
            if r.observer == me {
                if let Some(mine) = self.records.get_mut(&me) {
                    if r.version > mine.version {
                        mine.version = r.version + 1;
                    }
                }
                continue;
            }
            let is_member = self
                .members
                .get(&r.observer.address)
                .is_some_and(|m| m.node == r.observer);
            if !is_member {
                continue;
            }
            match self.records.get(&r.observer) {
                Some(ours) if ours.version >= r.version => {}
                _ => {
                    self.records.insert(r.observer.clone(), r);
                }
            }
        }
    }

    fn forget(&mut self, n: &UniqueAddress) {
        self.records.remove(n);
        self.last_heard.remove(n);
        self.unreachable_since.remove(n);
        for r in self.records.values_mut() {
            if r.unreachable.remove(n) {
                r.version += 1;
            }
        }
    }

    fn shutdown(&mut self) {
        self.phase = Phase::Shutdown;
        self.members.clear();
        self.records.clear();
        self.leader = None;
        self.log("Shutting down...".into());
    }

    fn set_status(&mut self, a: &Address, s: MemberStatus) {
        if let Some(m) = self.members.get_mut(a) {
            if s > m.status {
                m.status = s;
            }
        }
    }

    fn member_desc(&self, n: &UniqueAddress) -> String {
        let st = self
            .members
            .get(&n.address)
            .map(|m| m.status)
            .unwrap_or(MemberStatus::Removed);
        format!("Member(address = {}, status = {st})", n.address)
    }

    fn failure_detector(&mut self, now: u64) {
        let me = self.me().clone();
        let timeout = self.settings.failure_timeout_ms;
        let mut newly_unreachable = Vec::new();
        let mut newly_reachable = Vec::new();
        let mine = self.records.get(&me).cloned().unwrap_or(Record {
            observer: me.clone(),
            version: 0,
            unreachable: BTreeSet::new(),
        });
        let mut set = mine.unreachable.clone();
        for m in self.members.values() {
            if m.node == me {
                continue;
            }
            let last = *self.last_heard.entry(m.node.clone()).or_insert(now);
            let silent = now.saturating_sub(last) > timeout;
            if silent && !set.contains(&m.node) {
                newly_unreachable.push(m.node.clone());
            } else if !silent && set.contains(&m.node) {
                newly_reachable.push(m.node.clone());
            }
        }
        // Drop entries about nodes that are no longer members.
        set.retain(|n| self.members.get(&n.address).is_some_and(|m| m.node == *n));
        for n in &newly_unreachable {
            set.insert(n.clone());
        }
        for n in &newly_reachable {
            set.remove(n);
        }
        if set != mine.unreachable {
            self.records.insert(
                me.clone(),
                Record {
                    observer: me,
                    version: mine.version + 1,
                    unreachable: set,
                },
            );
        }
        if !newly_unreachable.is_empty() {
            let d: Vec<String> = newly_unreachable
                .iter()
                .map(|n| self.member_desc(n))
                .collect();
            let roles = self.settings.roles.join(", ");
            self.log(format!(
                "Marking node(s) as UNREACHABLE [{}]. Node roles [{roles}]",
                d.join(", ")
            ));
        }
        if !newly_reachable.is_empty() {
            let d: Vec<String> = newly_reachable
                .iter()
                .map(|n| self.member_desc(n))
                .collect();
            let roles = self.settings.roles.join(", ");
            self.log(format!(
                "Marking node(s) as REACHABLE [{}]. Node roles [{roles}]",
                d.join(", ")
            ));
        }
    }

    /// Unreachable members (merged over all observers that are members) with their observers.
    fn unreachable_map(&self) -> BTreeMap<UniqueAddress, BTreeSet<UniqueAddress>> {
        let mut out: BTreeMap<UniqueAddress, BTreeSet<UniqueAddress>> = BTreeMap::new();
        for r in self.records.values() {
            let observer_is_member = self
                .members
                .get(&r.observer.address)
                .is_some_and(|m| m.node == r.observer);
            if !observer_is_member {
                continue;
            }
            for s in &r.unreachable {
                if self.members.get(&s.address).is_some_and(|m| m.node == *s) {
                    out.entry(s.clone()).or_default().insert(r.observer.clone());
                }
            }
        }
        out
    }

    /// Akka's `leaderOf`: among non-Down members reachable from everybody's view (or self),
    /// the lowest address with status Up/Leaving, else the lowest by status then address.
    fn compute_leader(&self) -> Option<Address> {
        let unreachable = self.unreachable_map();
        let me = self.me();
        let candidates: Vec<&Member> = self
            .members
            .values()
            .filter(|m| m.status != MemberStatus::Down && m.status != MemberStatus::Removed)
            .filter(|m| m.node == *me || !unreachable.contains_key(&m.node))
            .collect();
        candidates
            .iter()
            .filter(|m| matches!(m.status, MemberStatus::Up | MemberStatus::Leaving))
            .map(|m| m.node.address.clone())
            .min()
            .or_else(|| {
                candidates
                    .iter()
                    .min_by(|a, b| (a.status, &a.node.address).cmp(&(b.status, &b.node.address)))
                    .map(|m| m.node.address.clone())
            })
    }

    fn leader_actions(&mut self, now: u64) {
        let unreachable = self.unreachable_map();
        // Auto-down timers run on every node (as Akka's AutoDown actor does); only the leader acts.
        self.unreachable_since
            .retain(|n, _| unreachable.contains_key(n));
        for n in unreachable.keys() {
            self.unreachable_since.entry(n.clone()).or_insert(now);
        }
        let leader = self.compute_leader();
        let me = self.me().address.clone();
        if leader != self.leader {
            if leader.as_ref() == Some(&me) {
                self.log("is the new leader among reachable nodes (more leaders may exist)".into());
            } else if self.leader.as_ref() == Some(&me) {
                self.log(format!(
                    "is no longer leader, new leader is [{}]",
                    leader.as_ref().map(|l| l.to_string()).unwrap_or_default()
                ));
            }
            self.leader = leader.clone();
        }
        if leader.as_ref() != Some(&me) {
            self.duties_msg = None;
            return;
        }
        if let Some(limit) = self.settings.auto_down_ms {
            let due: Vec<UniqueAddress> = self
                .unreachable_since
                .iter()
                .filter(|(n, since)| {
                    now.saturating_sub(**since) >= limit
                        && n.address != me
                        && self
                            .members
                            .get(&n.address)
                            .is_some_and(|m| m.node == **n && m.status < MemberStatus::Down)
                })
                .map(|(n, _)| n.clone())
                .collect();
            for n in due {
                self.log(format!(
                    "Leader is auto-downing unreachable node [{}]. Don't use auto-down feature of Akka Cluster in production. See 'Auto-downing (DO NOT USE)' section of Akka Cluster documentation.",
                    n.address
                ));
                self.log(format!(
                    "Marking unreachable node [{}] as [Down]",
                    n.address
                ));
                self.set_status(&n.address, MemberStatus::Down);
            }
        }
        // Convergence (reachability part): every unreachable member is Down or Exiting.
        let blocking: Vec<(&UniqueAddress, &BTreeSet<UniqueAddress>)> = unreachable
            .iter()
            .filter(|(n, _)| {
                self.members.get(&n.address).is_some_and(|m| {
                    m.status != MemberStatus::Down && m.status != MemberStatus::Exiting
                })
            })
            .collect();
        if !blocking.is_empty() {
            let reach: Vec<String> = blocking
                .iter()
                .flat_map(|(s, obs)| {
                    obs.iter().map(move |o| {
                        format!("{} -> {}: Unreachable [Unreachable]", o.address, s.address)
                    })
                })
                .collect();
            let status: Vec<String> = self
                .members
                .values()
                .map(|m| format!("{} {}", m.node.address, m.status))
                .collect();
            let msg = format!(
                "Leader can currently not perform its duties, reachability status: [{}], member status: [{}]",
                reach.join(", "),
                status.join(", ")
            );
            if self.duties_msg.as_ref() != Some(&msg) {
                self.log(msg.clone());
                self.duties_msg = Some(msg);
            }
            return;
        }
        self.duties_msg = None;
        let joining: Vec<Address> = self
            .members
            .values()
            .filter(|m| matches!(m.status, MemberStatus::Joining | MemberStatus::WeaklyUp))
            .map(|m| m.node.address.clone())
            .collect();
        for a in joining {
            self.log(format!("Leader is moving node [{a}] to [Up]"));
            self.set_status(&a, MemberStatus::Up);
        }
        let downed: Vec<UniqueAddress> = self
            .members
            .values()
            .filter(|m| m.status == MemberStatus::Down && m.node.address != me)
            .map(|m| m.node.clone())
            .collect();
        for n in downed {
            if unreachable.contains_key(&n) {
                self.log(format!(
                    "Leader is removing unreachable node [{}]",
                    n.address
                ));
            } else {
                self.log(format!("Leader is removing downed node [{}]", n.address));
            }
            self.members.remove(&n.address);
            self.removed.insert(n.clone());
            self.forget(&n);
        }
    }

    /// The state as the JMX MBean shows it; `None` once shut down (MBean unregistered).
    pub fn view(&self) -> Option<View> {
        if self.phase == Phase::Shutdown {
            return None;
        }
        let me = self.me();
        let self_status = self
            .members
            .get(&me.address)
            .filter(|m| m.node == *me)
            .map(|m| m.status)
            .unwrap_or(MemberStatus::Removed);
        let unreachable = self
            .unreachable_map()
            .into_iter()
            .map(|(n, obs)| (n.address, obs.into_iter().map(|o| o.address).collect()))
            .collect();
        Some(View {
            self_address: me.address.clone(),
            self_status,
            members: self.members.values().cloned().collect(),
            unreachable,
            leader: if self.phase == Phase::Member {
                self.compute_leader()
            } else {
                None
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(h: &str) -> Address {
        Address {
            host: h.into(),
            port: 2552,
            system: "TestCluster".into(),
        }
    }

    fn settings(h: &str, uid: u64, seeds: &[&str]) -> Settings {
        Settings {
            self_node: UniqueAddress {
                address: addr(h),
                uid,
            },
            roles: vec!["dc-default".into()],
            seeds: seeds.iter().map(|s| addr(s)).collect(),
            heartbeat_interval_ms: 200,
            failure_timeout_ms: 1000,
            auto_down_ms: Some(3000),
            seed_timeout_ms: 1000,
            join_retry_ms: 500,
        }
    }

    /// A simulated network of pure nodes with a cut relation and paused nodes.
    struct Sim {
        nodes: Vec<Node>,
        now: u64,
        cut: BTreeSet<(String, String)>,
        paused: BTreeSet<String>,
        logs: Vec<String>,
    }

    impl Sim {
        fn new(names: &[&str], seeds: &[&str]) -> Sim {
            let nodes = names
                .iter()
                .enumerate()
                .map(|(i, n)| Node::new(settings(n, 100 + i as u64, seeds), 0))
                .collect();
            Sim {
                nodes,
                now: 0,
                cut: BTreeSet::new(),
                paused: BTreeSet::new(),
                logs: Vec::new(),
            }
        }
        fn idx(&self, h: &str) -> usize {
            self.nodes
                .iter()
                .position(|n| n.settings.self_node.address.host == h)
                .unwrap()
        }
        fn blocked(&self, a: &str, b: &str) -> bool {
            self.cut.contains(&(a.to_string(), b.to_string()))
                || self.paused.contains(a)
                || self.paused.contains(b)
        }
        fn deliver(&mut self, from: &str, msgs: Vec<(Address, Message)>) {
            let mut queue: Vec<(String, Address, Message)> = msgs
                .into_iter()
                .map(|(a, m)| (from.to_string(), a, m))
                .collect();
            while let Some((src, dst, m)) = queue.pop() {
                if self.blocked(&src, &dst.host) {
                    continue;
                }
                let Some(i) = self
                    .nodes
                    .iter()
                    .position(|n| n.settings.self_node.address == dst)
                else {
                    continue;
                };
                let replies = self.nodes[i].receive(m, self.now);
                for (a, r) in replies {
                    queue.push((dst.host.clone(), a, r));
                }
            }
        }
        fn step(&mut self, ms: u64) {
            let end = self.now + ms;
            while self.now < end {
                self.now += 100;
                for i in 0..self.nodes.len() {
                    let h = self.nodes[i].settings.self_node.address.host.clone();
                    if self.paused.contains(&h) {
                        continue;
                    }
                    let out = self.nodes[i].tick(self.now);
                    self.deliver(&h, out);
                }
                for n in self.nodes.iter_mut() {
                    self.logs.extend(n.take_logs());
                }
            }
        }
        fn view(&self, h: &str) -> Option<View> {
            self.nodes[self.idx(h)].view()
        }
        fn up_members(&self, h: &str) -> Vec<String> {
            self.view(h)
                .map(|v| {
                    v.members
                        .iter()
                        .filter(|m| m.status == MemberStatus::Up)
                        .map(|m| m.node.address.host.clone())
                        .collect()
                })
                .unwrap_or_default()
        }
        fn unreachable(&self, h: &str) -> Vec<(String, Vec<String>)> {
            self.view(h)
                .map(|v| {
                    v.unreachable
                        .iter()
                        .map(|(n, o)| (n.host.clone(), o.iter().map(|x| x.host.clone()).collect()))
                        .collect()
                })
                .unwrap_or_default()
        }
        fn cut_between(&mut self, a: &[&str], b: &[&str]) {
            for x in a {
                for y in b {
                    self.cut.insert((x.to_string(), y.to_string()));
                    self.cut.insert((y.to_string(), x.to_string()));
                }
            }
        }
    }

    const ALL: [&str; 4] = ["left-a", "left-b", "right-a", "right-b"];

    #[test]
    fn addresses_parse_print_and_order_like_akka() {
        let a: Address = "akka.tcp://TestCluster@left-a:2552".parse().unwrap();
        assert_eq!(a, addr("left-a"));
        assert_eq!(a.to_string(), "akka.tcp://TestCluster@left-a:2552");
        assert!(addr("left-b") < addr("right-a"));
        let b: Address = "127.0.0.1:9".parse().unwrap();
        assert_eq!((b.host.as_str(), b.port), ("127.0.0.1", 9));
        let c: Address = "127.0.0.1:10".parse().unwrap();
        assert!(b < c);
        assert!("akka.tcp://x".parse::<Address>().is_err());
        assert!("host:notaport".parse::<Address>().is_err());
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(json, "\"akka.tcp://TestCluster@left-a:2552\"");
    }

    #[test]
    fn cluster_forms_through_the_seed_and_leader_moves_joiners_up() {
        let mut s = Sim::new(&ALL, &["left-a"]);
        s.step(3000);
        for h in ALL {
            assert_eq!(s.up_members(h), ALL.to_vec(), "members seen from {h}");
            assert!(s.unreachable(h).is_empty());
            assert_eq!(s.view(h).unwrap().leader, Some(addr("left-a")));
            assert_eq!(s.view(h).unwrap().self_status, MemberStatus::Up);
        }
        assert!(s
            .logs
            .iter()
            .any(|l| l
                .contains("Leader is moving node [akka.tcp://TestCluster@right-a:2552] to [Up]")));
        assert!(s
            .logs
            .iter()
            .any(|l| l.contains("Node [akka.tcp://TestCluster@right-b:2552] is JOINING")));
        assert!(s
            .logs
            .iter()
            .any(|l| l
                .starts_with("Cluster Node [akka.tcp://TestCluster@right-b:2552] - Welcome from")));
    }

    #[test]
    fn a_paused_node_becomes_unreachable_then_reachable_without_being_downed() {
        let mut s = Sim::new(&ALL, &["left-a"]);
        s.step(3000);
        s.paused.insert("right-a".into());
        s.step(1500);
        let u = s.unreachable("left-a");
        assert_eq!(
            u,
            vec![(
                "right-a".to_string(),
                vec![
                    "left-a".to_string(),
                    "left-b".to_string(),
                    "right-b".to_string()
                ]
            )]
        );
        assert!(s.logs.iter().any(|l| l.contains("Marking node(s) as UNREACHABLE [Member(address = akka.tcp://TestCluster@right-a:2552, status = Up)]")));
        assert!(s
            .logs
            .iter()
            .any(|l| l.contains("Leader can currently not perform its duties")));
        s.paused.clear();
        s.step(1000);
        assert!(s.unreachable("left-a").is_empty());
        assert_eq!(s.up_members("left-a"), ALL.to_vec());
        assert_eq!(s.up_members("right-a"), ALL.to_vec());
        assert!(
            s.unreachable("right-a").is_empty(),
            "the frozen node must not mark others unreachable"
        );
        assert!(s
            .logs
            .iter()
            .any(|l| l.contains("Marking node(s) as REACHABLE")));
        assert!(!s.logs.iter().any(|l| l.contains("auto-downing")));
    }

    #[test]
    fn partition_of_the_middle_network_splits_into_three_clusters_with_auto_down() {
        let mut s = Sim::new(&ALL, &["left-a"]);
        s.step(3000);
        // Only left-a <-> left-b keep a path (their shared `left` network); right nodes talk over middle.
        s.cut_between(&["left-a", "left-b"], &["right-a", "right-b"]);
        s.cut_between(&["right-a"], &["right-b"]);
        s.step(1500);
        assert_eq!(s.unreachable("left-a").len(), 2);
        s.step(4000);
        assert_eq!(s.up_members("left-a"), vec!["left-a", "left-b"]);
        assert_eq!(s.up_members("left-b"), vec!["left-a", "left-b"]);
        assert_eq!(s.up_members("right-a"), vec!["right-a"]);
        assert_eq!(s.up_members("right-b"), vec!["right-b"]);
        for h in ALL {
            assert!(
                s.unreachable(h).is_empty(),
                "{h} still sees unreachable nodes"
            );
        }
        assert_eq!(s.view("right-b").unwrap().leader, Some(addr("right-b")));
        assert_eq!(s.view("left-b").unwrap().leader, Some(addr("left-a")));
        assert!(s.logs.iter().any(|l| l.starts_with("Cluster Node [akka.tcp://TestCluster@left-a:2552] - Leader is auto-downing unreachable node [akka.tcp://TestCluster@right-a:2552]")));
        assert!(s.logs.iter().any(|l| l.contains(
            "Leader is removing unreachable node [akka.tcp://TestCluster@right-b:2552]"
        )));
        // Healing the network does not merge the clusters back (removed nodes stay removed).
        s.cut.clear();
        s.step(2000);
        assert_eq!(s.up_members("left-a"), vec!["left-a", "left-b"]);
    }

    #[test]
    fn a_node_paused_past_auto_down_is_removed_and_shuts_itself_down_when_it_wakes() {
        let mut s = Sim::new(&ALL, &["left-a"]);
        s.step(3000);
        s.paused.insert("right-b".into());
        s.step(5000);
        assert_eq!(s.up_members("left-a"), vec!["left-a", "left-b", "right-a"]);
        s.paused.clear();
        s.step(1000);
        assert!(
            s.view("right-b").is_none(),
            "right-b must have left (MBean gone)"
        );
        assert_eq!(s.nodes[s.idx("right-b")].phase(), Phase::Shutdown);
        assert!(s
            .logs
            .iter()
            .any(|l| l.contains("Node has been marked as DOWN. Shutting down myself")));
        assert_eq!(s.up_members("left-a"), vec!["left-a", "left-b", "right-a"]);
    }

    #[test]
    fn without_auto_down_unreachable_nodes_stay_members() {
        let mut s = Sim::new(&ALL, &["left-a"]);
        for n in s.nodes.iter_mut() {
            n.settings.auto_down_ms = None;
        }
        s.step(3000);
        s.cut_between(&["left-a", "left-b"], &["right-a", "right-b"]);
        s.step(6000);
        assert_eq!(s.up_members("left-a"), ALL.to_vec());
        assert_eq!(s.unreachable("left-a").len(), 2);
    }

    #[test]
    fn first_seed_waits_for_other_seeds_then_forms_alone() {
        let mut s = Sim::new(&["left-a", "right-a"], &["left-a", "right-a"]);
        s.paused.insert("right-a".into());
        s.step(500);
        assert_eq!(s.nodes[0].phase(), Phase::Joining);
        s.step(1000);
        assert_eq!(s.nodes[0].phase(), Phase::Member);
        s.paused.clear();
        s.step(2000);
        assert_eq!(s.up_members("right-a"), vec!["left-a", "right-a"]);
    }

    #[test]
    fn inconsistent_seed_order_forms_two_clusters() {
        // SplitBrain2Seed: the left nodes list left-a first, the right nodes right-a first.
        let mut nodes = Vec::new();
        let order = [
            ("left-a", ["left-a", "right-a"]),
            ("left-b", ["left-a", "right-a"]),
            ("right-a", ["right-a", "left-a"]),
            ("right-b", ["right-a", "left-a"]),
        ];
        for (i, (h, seeds)) in order.iter().enumerate() {
            nodes.push(Node::new(settings(h, 10 + i as u64, seeds), 0));
        }
        let mut s = Sim {
            nodes,
            now: 0,
            cut: BTreeSet::new(),
            paused: BTreeSet::new(),
            logs: Vec::new(),
        };
        s.step(5000);
        // Each first seed forms its own cluster; a joiner joins whichever seed acknowledges first,
        // so the two clusters are disjoint and together hold all four nodes.
        let left = s.up_members("left-a");
        let right = s.up_members("right-a");
        assert!(left.contains(&"left-a".to_string()) && !left.contains(&"right-a".to_string()));
        assert!(right.contains(&"right-a".to_string()) && !right.contains(&"left-a".to_string()));
        let mut all: Vec<String> = left.iter().chain(right.iter()).cloned().collect();
        all.sort();
        assert_eq!(all, ALL.to_vec());
        for h in ["left-b", "right-b"] {
            let theirs = s.up_members(h);
            assert!(theirs == left || theirs == right, "{h} sees {theirs:?}");
        }
        assert!(s
            .logs
            .iter()
            .any(|l| l
                == "Cluster Node [akka.tcp://TestCluster@left-a:2552] - Started up successfully"));
    }

    #[test]
    fn a_restarted_node_with_a_new_uid_replaces_its_old_incarnation() {
        let mut s = Sim::new(&ALL, &["left-a"]);
        s.step(3000);
        let i = s.idx("right-a");
        s.nodes[i] = Node::new(settings("right-a", 999, &["left-a"]), s.now);
        s.step(3000);
        assert_eq!(s.up_members("left-a"), ALL.to_vec());
        let v = s.view("left-a").unwrap();
        let ra = v
            .members
            .iter()
            .find(|m| m.node.address.host == "right-a")
            .unwrap();
        assert_eq!(ra.node.uid, 999);
        assert!(s
            .logs
            .iter()
            .any(|l| l.contains("New incarnation of existing member")));
    }
}
