//! Docker engine events for the project's containers and networks.
//!
//! The daemon drops events for slow readers, so the reading task does nothing but read and hand
//! each event to an unbounded channel; a second task converts them into trace events. When the
//! stream breaks or is closed it resubscribes with `since` = the last event's time and drops the
//! events it already had (keyed by time, actor id and action); the break is recorded as one
//! `recorder`/`stream_gap` event when the new subscription delivers (or at the end of the run).

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use bollard::models::{EventMessage, EventMessageTypeEnum};
use bollard::query_parameters::EventsOptionsBuilder;
use bollard::Docker;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use trace::Event;

use super::logs::StreamGap;
use crate::compose::{LABEL_PROJECT, LABEL_SERVICE};
use crate::sink::{now_ns, EventSink};

/// A container lifecycle signal for the supervisor (start of a new or restarted container …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSignal {
    pub id: String,
    pub action: String,
    pub time_ns: i64,
}

/// De-duplicates events across resubscriptions by (time_nano, actor id, action).
#[derive(Debug, Default)]
pub struct EventDedup {
    seen: HashSet<(i64, String, String)>,
    order: VecDeque<(i64, String, String)>,
    /// Latest event time seen, for `since` when resubscribing.
    pub last_ns: i64,
}

impl EventDedup {
    /// Keeps at most this many keys (older ones cannot be replayed by a `since` at `last_ns`
    /// anyway unless they share its second).
    const KEEP: usize = 4096;

    /// True if the event is new (and remembers it).
    pub fn admit(&mut self, time_ns: i64, id: &str, action: &str) -> bool {
        let key = (time_ns, id.to_string(), action.to_string());
        if self.seen.contains(&key) {
            return false;
        }
        self.seen.insert(key.clone());
        self.order.push_back(key);
        while self.order.len() > Self::KEEP {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        self.last_ns = self.last_ns.max(time_ns);
        true
    }

    /// The `since` parameter for a resubscription: the last event's time (seconds.nanoseconds),
    /// so events of that very instant are replayed and de-duplicated rather than lost.
    pub fn since(&self) -> Option<String> {
        (self.last_ns > 0).then(|| {
            format!(
                "{}.{:09}",
                self.last_ns.div_euclid(1_000_000_000),
                self.last_ns.rem_euclid(1_000_000_000)
            )
        })
    }
}

fn time_ns(m: &EventMessage) -> i64 {
    m.time_nano
        .or_else(|| m.time.map(|t| t.saturating_mul(1_000_000_000)))
        .unwrap_or_else(now_ns)
}

fn since_of(ns: i64) -> String {
    format!(
        "{}.{:09}",
        ns.div_euclid(1_000_000_000),
        ns.rem_euclid(1_000_000_000)
    )
}

/// Reads the daemon's event stream for the project into `tx` until `stop`; resubscribes after a
/// broken or closed stream, recording the gap into `sink`. Never does anything slow between
/// reads.
pub async fn read_events(
    docker: Docker,
    tx: mpsc::UnboundedSender<EventMessage>,
    sink: EventSink,
    start_ns: i64,
    stop: CancellationToken,
) {
    let mut since = since_of(start_ns);
    let mut last_ns = 0i64;
    let mut backoff = Duration::from_millis(100);
    let mut gap: Option<StreamGap> = None;
    while !stop.is_cancelled() {
        // No label filter: network events carry no labels in their attributes (API 1.41), so
        // the project filter is applied by the supervisor ([`belongs_to_project`]).
        let mut filters = HashMap::new();
        filters.insert(
            "type".to_string(),
            vec!["container".to_string(), "network".to_string()],
        );
        let b = EventsOptionsBuilder::default()
            .filters(&filters)
            .since(&since);
        let mut stream = docker.events(Some(b.build()));
        let error = loop {
            let item = tokio::select! {
                _ = stop.cancelled() => break None,
                item = stream.next() => item,
            };
            match item {
                Some(Ok(m)) => {
                    backoff = Duration::from_millis(100);
                    if let Some(g) = gap.take() {
                        sink.emit(g.event("events", Some(now_ns()), &since));
                    }
                    last_ns = last_ns.max(time_ns(&m));
                    if tx.send(m).is_err() {
                        return;
                    }
                }
                Some(Err(e)) => break Some(e.to_string()),
                None => break None,
            }
        };
        if stop.is_cancelled() {
            break;
        }
        match gap.as_mut() {
            Some(g) => {
                g.failed_attempts += 1;
                if error.is_some() {
                    g.error = error;
                }
            }
            None => gap = Some(StreamGap::new(last_ns, error)),
        }
        if last_ns > 0 {
            since = since_of(last_ns);
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
    if let Some(g) = gap.take() {
        sink.emit(g.event("events", None, &since));
    }
}

/// Converts one daemon event into a trace event. `names` maps container ids to names (for
/// network events, whose attributes carry the container id).
pub fn to_trace_event(m: &EventMessage, names: &HashMap<String, (String, String)>) -> Event {
    let typ = m.typ.map(|t| t.to_string()).unwrap_or_default();
    let action = m.action.clone().unwrap_or_default();
    let actor = m.actor.clone().unwrap_or_default();
    let id = actor.id.clone().unwrap_or_default();
    let attrs = actor.attributes.clone().unwrap_or_default();
    // `exec_start: sh -c …`, `health_status: healthy`: the kind is the verb
    let verb = action.split(':').next().unwrap_or("").trim().to_string();
    let kind = if m.typ == Some(EventMessageTypeEnum::NETWORK) {
        format!("network:{verb}")
    } else {
        verb
    };
    let mut ev = Event::new(time_ns(m), "docker", kind);
    let mut data = serde_json::Map::new();
    data.insert("type".into(), typ.into());
    data.insert("action".into(), action.clone().into());
    data.insert("id".into(), id.clone().into());
    let mut sorted: Vec<(&String, &String)> = attrs.iter().collect();
    sorted.sort();
    let mut a = serde_json::Map::new();
    for (k, v) in sorted {
        a.insert(k.clone(), v.clone().into());
    }
    data.insert("attributes".into(), a.into());
    if m.typ == Some(EventMessageTypeEnum::NETWORK) {
        if let Some(cid) = attrs.get("container") {
            if let Some((name, service)) = names.get(cid) {
                ev = ev.container(name.clone()).service(service.clone());
            }
            data.insert("container_id".into(), cid.clone().into());
        }
        if let Some(n) = attrs.get("name") {
            data.insert("network".into(), n.clone().into());
        }
        ev.message = Some(format!(
            "{action} {}",
            attrs.get("name").cloned().unwrap_or_default()
        ));
    } else {
        if let Some(n) = attrs.get("name") {
            ev = ev.container(n.clone());
        }
        if let Some(s) = attrs.get(LABEL_SERVICE) {
            ev = ev.service(s.clone());
        }
        ev.message = Some(action.clone());
    }
    ev.data = Some(serde_json::Value::Object(data).to_string());
    ev
}

/// Recognises the Docker events of the recorder's own exec probes: `exec_create` and
/// `exec_start` by their service and command (Docker writes `exec_create: CMD ARGS...`), and
/// `exec_die` by the exec id an own `exec_create`/`exec_start` carried.
#[derive(Debug, Default)]
pub struct OwnExecs {
    ids: HashSet<String>,
}

impl OwnExecs {
    /// Whether `m` is an exec event of one of `probes` ((service, command) pairs).
    pub fn is_own(&mut self, m: &EventMessage, probes: &[(String, String)]) -> bool {
        if m.typ != Some(EventMessageTypeEnum::CONTAINER) || probes.is_empty() {
            return false;
        }
        let action = m.action.as_deref().unwrap_or("");
        let attrs = m.actor.as_ref().and_then(|a| a.attributes.as_ref());
        let exec_id = attrs.and_then(|a| a.get("execID")).cloned();
        let (verb, cmd) = match action.split_once(':') {
            Some((v, c)) => (v.trim(), c.trim()),
            None => (action.trim(), ""),
        };
        match verb {
            "exec_create" | "exec_start" => {
                let service = attrs.and_then(|a| a.get(LABEL_SERVICE));
                let own =
                    service.is_some_and(|s| probes.iter().any(|(ps, pc)| ps == s && pc == cmd));
                if own {
                    if let Some(id) = exec_id {
                        if self.ids.len() > 10_000 {
                            self.ids.clear();
                        }
                        self.ids.insert(id);
                    }
                }
                own
            }
            "exec_die" => exec_id.is_some_and(|id| self.ids.remove(&id)),
            _ => false,
        }
    }
}

/// Marks a trace event as caused by the recorder itself (`data.recorder = true`).
pub fn mark_recorders_own(ev: &mut Event) {
    let mut d: serde_json::Map<String, serde_json::Value> = ev
        .data
        .as_deref()
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_default();
    d.insert("recorder".into(), true.into());
    ev.data = Some(serde_json::Value::Object(d).to_string());
}

/// Whether a daemon event concerns the project: containers by their compose project label,
/// networks by their name (`<project>_<name>`) or by an id the project is known to use.
pub fn belongs_to_project(
    m: &EventMessage,
    project: &str,
    known_networks: &HashSet<String>,
) -> bool {
    let attrs = m.actor.as_ref().and_then(|a| a.attributes.as_ref());
    match m.typ {
        Some(EventMessageTypeEnum::CONTAINER) => attrs
            .and_then(|a| a.get(LABEL_PROJECT))
            .is_some_and(|p| p == project),
        Some(EventMessageTypeEnum::NETWORK) => {
            let id = m.actor.as_ref().and_then(|a| a.id.as_deref()).unwrap_or("");
            known_networks.contains(id)
                || attrs
                    .and_then(|a| a.get("name"))
                    .is_some_and(|n| n.strip_prefix(project).is_some_and(|r| r.starts_with('_')))
        }
        _ => false,
    }
}

/// Whether the event starts (or restarts) a container: the supervisor (re-)attaches sensors.
pub fn is_container_start(m: &EventMessage) -> bool {
    m.typ == Some(EventMessageTypeEnum::CONTAINER)
        && matches!(
            m.action.as_deref(),
            Some("start") | Some("restart") | Some("unpause")
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::EventActor;

    fn msg(
        typ: EventMessageTypeEnum,
        action: &str,
        t: i64,
        attrs: &[(&str, &str)],
    ) -> EventMessage {
        EventMessage {
            typ: Some(typ),
            action: Some(action.into()),
            actor: Some(EventActor {
                id: Some("abc".into()),
                attributes: Some(
                    attrs
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
            }),
            scope: None,
            time: Some(t / 1_000_000_000),
            time_nano: Some(t),
        }
    }

    #[test]
    fn own_exec_probe_events_are_recognised_by_service_command_and_id() {
        let probes = vec![("a".to_string(), "/demo-node probe --x 1".to_string())];
        let ev = |action: &str, service: &str, exec: &str| {
            msg(
                EventMessageTypeEnum::CONTAINER,
                action,
                1,
                &[(LABEL_SERVICE, service), ("execID", exec)],
            )
        };
        let mut own = OwnExecs::default();
        assert!(own.is_own(
            &ev("exec_create: /demo-node probe --x 1", "a", "e1"),
            &probes
        ));
        assert!(own.is_own(
            &ev("exec_start: /demo-node probe --x 1", "a", "e1"),
            &probes
        ));
        // the user's exec (another command, or the same command in another service) is not
        assert!(!own.is_own(&ev("exec_create: /bin/sh -c x", "a", "e2"), &probes));
        assert!(!own.is_own(
            &ev("exec_create: /demo-node probe --x 1", "b", "e3"),
            &probes
        ));
        assert!(!own.is_own(&ev("exec_die", "a", "e2"), &probes));
        assert!(own.is_own(&ev("exec_die", "a", "e1"), &probes));
        let mut t = to_trace_event(&ev("exec_die", "a", "e1"), &HashMap::new());
        mark_recorders_own(&mut t);
        let d: serde_json::Value =
            serde_json::from_str(t.data.as_deref().unwrap_or("null")).unwrap_or_default();
        assert_eq!(d["recorder"], true);
        assert_eq!(d["action"], "exec_die");
    }

    #[test]
    fn dedup_drops_replayed_events_and_tracks_since() {
        let mut d = EventDedup::default();
        assert!(d.admit(5_000_000_001, "a", "start"));
        assert!(d.admit(5_000_000_001, "a", "attach"));
        assert!(!d.admit(5_000_000_001, "a", "start"));
        assert!(d.admit(5_000_000_001, "b", "start"));
        assert_eq!(d.since().as_deref(), Some("5.000000001"));
    }

    #[test]
    fn converts_container_and_network_events() {
        let names: HashMap<String, (String, String)> =
            [("c1".to_string(), ("p_a_1".to_string(), "a".to_string()))]
                .into_iter()
                .collect();
        let e = to_trace_event(
            &msg(
                EventMessageTypeEnum::CONTAINER,
                "exec_start: sh -c x",
                7,
                &[("name", "p_a_1"), (LABEL_SERVICE, "a")],
            ),
            &names,
        );
        assert_eq!(
            (
                e.kind.as_str(),
                e.container.as_deref(),
                e.service.as_deref()
            ),
            ("exec_start", Some("p_a_1"), Some("a"))
        );
        let n = to_trace_event(
            &msg(
                EventMessageTypeEnum::NETWORK,
                "disconnect",
                9,
                &[("container", "c1"), ("name", "p_net")],
            ),
            &names,
        );
        assert_eq!(n.kind, "network:disconnect");
        assert_eq!(n.container.as_deref(), Some("p_a_1"));
        let d: serde_json::Value =
            serde_json::from_str(n.data.as_deref().unwrap_or("null")).unwrap_or_default();
        assert_eq!(d["network"], "p_net");
        assert_eq!(n.ts_ns, 9);
    }
}
