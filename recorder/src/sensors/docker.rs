//! The supervisor of the Docker sensors ([`super::events`], [`super::logs`], [`super::stats`]).
//!
//! The events reader starts before `compose up` so container creation is recorded. Once the
//! project is ready, [`DockerSensors::attach`] starts a log follower and a stats follower per
//! container; the supervisor (which sees every container start through the events stream) starts
//! followers for containers that appear later and wakes existing ones when their container
//! restarts. Container starts are also forwarded to the run loop (the fault injector re-applies
//! impairments that a restart wiped).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::models::EventMessage;
use bollard::Docker;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::events::{self, ContainerSignal, EventDedup};
use super::logs::{self, FollowTarget};
use super::stats;
use crate::compose::{inspect_container, ContainerFacts};
use crate::sink::EventSink;

/// Which Docker sensors run.
#[derive(Debug, Clone)]
pub struct DockerSensorsConfig {
    pub events: bool,
    pub logs: bool,
    /// `None`: no stats.
    pub stats_interval: Option<Duration>,
    /// The recorder's own exec probes as (service, command as Docker shows it: words joined by
    /// spaces): their `exec_create`/`exec_start`/`exec_die` events get `data.recorder = true`.
    pub own_execs: Vec<(String, String)>,
}

struct Follower {
    restarted: watch::Sender<u64>,
}

struct Inner {
    docker: Docker,
    project: String,
    sink: EventSink,
    cfg: DockerSensorsConfig,
    followers: Mutex<HashMap<String, Follower>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// container id -> (name, service)
    names: Mutex<HashMap<String, (String, String)>>,
    /// Followers start only after `attach` (before that, discovery is not complete).
    attached: std::sync::atomic::AtomicBool,
    follow_stop: CancellationToken,
    signals: mpsc::UnboundedSender<ContainerSignal>,
}

/// Handle on the running Docker sensors.
pub struct DockerSensors {
    inner: Arc<Inner>,
    events_stop: CancellationToken,
    event_tasks: Vec<JoinHandle<()>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl DockerSensors {
    /// Starts the events sensor (if enabled) for the project. Container starts are sent to the
    /// returned receiver.
    pub fn start(
        docker: Docker,
        project: &str,
        sink: EventSink,
        cfg: DockerSensorsConfig,
        start_ns: i64,
    ) -> (DockerSensors, mpsc::UnboundedReceiver<ContainerSignal>) {
        let (sig_tx, sig_rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            docker: docker.clone(),
            project: project.to_string(),
            sink: sink.clone(),
            cfg: cfg.clone(),
            followers: Mutex::new(HashMap::new()),
            tasks: Mutex::new(Vec::new()),
            names: Mutex::new(HashMap::new()),
            attached: std::sync::atomic::AtomicBool::new(false),
            follow_stop: CancellationToken::new(),
            signals: sig_tx,
        });
        let events_stop = CancellationToken::new();
        let (raw_tx, raw_rx) = mpsc::unbounded_channel();
        // Always read events: the supervisor needs container starts even when they are not recorded.
        let event_tasks = vec![
            tokio::spawn(events::read_events(
                docker,
                raw_tx,
                sink.clone(),
                start_ns,
                events_stop.clone(),
            )),
            tokio::spawn(supervise(inner.clone(), raw_rx)),
        ];
        (
            DockerSensors {
                inner,
                events_stop,
                event_tasks,
            },
            sig_rx,
        )
    }

    /// Starts followers for the containers found after `up` (and, from now on, for every
    /// container that appears later).
    pub fn attach(&self, containers: &[ContainerFacts]) {
        self.inner
            .attached
            .store(true, std::sync::atomic::Ordering::SeqCst);
        for c in containers {
            ensure_followers(&self.inner, c);
        }
    }

    /// Stops the log and stats followers; each log follower reads its log to the end first.
    pub async fn stop_followers(&self) {
        self.inner.follow_stop.cancel();
        let tasks: Vec<JoinHandle<()>> = lock(&self.inner.tasks).drain(..).collect();
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(20), t).await;
        }
    }

    /// Stops the events sensor (after teardown, so its events are recorded too).
    pub async fn stop_events(mut self) {
        // give the daemon a moment to deliver the last events
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.events_stop.cancel();
        for t in self.event_tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }
}

fn ensure_followers(inner: &Arc<Inner>, c: &ContainerFacts) {
    lock(&inner.names).insert(c.id.clone(), (c.name.clone(), c.service.clone()));
    let mut f = lock(&inner.followers);
    if let Some(existing) = f.get(&c.id) {
        existing.restarted.send_modify(|g| *g += 1);
        return;
    }
    let (tx, rx) = watch::channel(0u64);
    f.insert(c.id.clone(), Follower { restarted: tx });
    drop(f);
    let t = FollowTarget {
        id: c.id.clone(),
        name: c.name.clone(),
        service: c.service.clone(),
        tty: c.tty,
    };
    let mut tasks = lock(&inner.tasks);
    if inner.cfg.logs {
        tasks.push(tokio::spawn(logs::follow(
            inner.docker.clone(),
            t.clone(),
            inner.sink.clone(),
            rx.clone(),
            inner.follow_stop.clone(),
        )));
    }
    if let Some(iv) = inner.cfg.stats_interval {
        tasks.push(tokio::spawn(stats::follow(
            inner.docker.clone(),
            t,
            inner.sink.clone(),
            iv,
            rx,
            inner.follow_stop.clone(),
        )));
    }
}

async fn supervise(inner: Arc<Inner>, mut raw: mpsc::UnboundedReceiver<EventMessage>) {
    let mut dedup = EventDedup::default();
    let mut networks = std::collections::HashSet::new();
    let mut own_execs = events::OwnExecs::default();
    while let Some(m) = raw.recv().await {
        let id = m
            .actor
            .as_ref()
            .and_then(|a| a.id.clone())
            .unwrap_or_default();
        let action = m.action.clone().unwrap_or_default();
        let t = m.time_nano.unwrap_or(0);
        if !dedup.admit(t, &id, &action) {
            continue;
        }
        if !events::belongs_to_project(&m, &inner.project, &networks) {
            continue;
        }
        if m.typ == Some(bollard::models::EventMessageTypeEnum::CONTAINER) {
            let attrs = m.actor.as_ref().and_then(|a| a.attributes.as_ref());
            let name = attrs.and_then(|a| a.get("name")).cloned();
            let service = attrs
                .and_then(|a| a.get(crate::compose::LABEL_SERVICE))
                .cloned();
            if let (Some(n), Some(s)) = (name, service) {
                lock(&inner.names).entry(id.clone()).or_insert((n, s));
            }
        }
        if m.typ == Some(bollard::models::EventMessageTypeEnum::NETWORK) {
            if let Some(nid) = m.actor.as_ref().and_then(|a| a.id.clone()) {
                networks.insert(nid);
            }
        }
        let own = own_execs.is_own(&m, &inner.cfg.own_execs);
        if inner.cfg.events {
            let names = lock(&inner.names).clone();
            let mut ev = events::to_trace_event(&m, &names);
            if own {
                events::mark_recorders_own(&mut ev);
            }
            inner.sink.emit(ev);
        }
        if events::is_container_start(&m) && !id.is_empty() {
            let _ = inner.signals.send(ContainerSignal {
                id: id.clone(),
                action: action.clone(),
                time_ns: t,
            });
            if inner.attached.load(std::sync::atomic::Ordering::SeqCst) {
                let known = lock(&inner.followers).contains_key(&id);
                if known {
                    if let Some(f) = lock(&inner.followers).get(&id) {
                        f.restarted.send_modify(|g| *g += 1);
                    }
                } else if let Ok(Some(c)) = inspect_container(&inner.docker, &id).await {
                    ensure_followers(&inner, &c);
                }
            }
        }
    }
}
