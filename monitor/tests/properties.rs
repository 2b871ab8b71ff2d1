//! Property tests: verdicts (and deciding events) do not change when irrelevant events are
//! interleaved, replaying the same trace twice gives the same report, and keyed monitors split by
//! key over threads report what one leaf reports.

mod common;
use common::*;
use proptest::prelude::*;

fn base_trace() -> Vec<trace::Event> {
    let all = ["left-a", "left-b", "right-a", "right-b"];
    let mut v = Vec::new();
    let mut seq = 0;
    for t in 0..8 {
        seq += 1;
        v.push(cluster(seq, t as f64, "left-a", &all, &[]));
    }
    seq += 1;
    v.push(fault(seq, 8.0, "partition", &[], &["middle"], "applied"));
    for t in 9..20 {
        seq += 1;
        let unr: &[&str] = if t < 12 { &["right-a", "right-b"] } else { &[] };
        let up: &[&str] = if t < 12 { &all } else { &["left-a", "left-b"] };
        v.push(cluster(seq, t as f64, "left-a", up, unr));
        seq += 1;
        v.push(log(
            seq,
            t as f64 + 0.5,
            "left-a",
            if t == 15 { "ERROR disk" } else { "ok" },
        ));
    }
    v
}

const SPEC: &str = r#"
def host_of(a) = split(split(a, "@")[1], ":")[0]
def up(n) = any m in data.ClusterStatus.members: host_of(m.address) == n and m.status == "Up"
monitor inC(nodes: str...) {
  state forming { on jmx "akka:type=Cluster" where len(data.ClusterStatus.unreachable) == 0 and all n in nodes: up(n) => goto stable timeout 2s }
  state stable {
    on jmx "akka:type=Cluster" where len(data.ClusterStatus.unreachable) > 0 => goto forming
    on timeout => accept
  }
}
monitor noErrors = never log from left-a where message ~ "ERROR"
monitor errs per service { window e = count(message ~ "ERROR") over last 5 events of log
  state s { on log where e > 0 => fail "error seen" on end => accept } }
experiment x {
  expect inC(left-a, left-b, right-a, right-b) at left-a within 10s
  do partition on network middle
  expect inC(left-a, left-b) at left-a within 10s
}
"#;

fn summary(r: &monitor::Report) -> Vec<(String, monitor::Verdict, Option<u64>)> {
    let mut v: Vec<_> = r
        .monitors
        .iter()
        .map(|m| {
            (
                m.name.clone(),
                m.verdict,
                m.primary_explanation()
                    .and_then(|e| e.deciding_event.as_ref())
                    .map(|d| d.seq),
            )
        })
        .collect();
    for e in &r.experiments {
        for s in &e.steps {
            v.push((
                s.text.clone(),
                s.verdict.unwrap_or(monitor::Verdict::Inconclusive),
                s.monitor
                    .as_ref()
                    .and_then(|m| m.primary_explanation())
                    .and_then(|e| e.deciding_event.as_ref())
                    .map(|d| d.seq),
            ));
        }
    }
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn irrelevant_events_do_not_change_verdicts(noise in prop::collection::vec((0u32..19_000, 0usize..4), 0..60)) {
        let spec = spec(SPEC);
        let sel = monitor::Selection::default();
        let base = base_trace();
        let end = base.last().map(|e| e.ts_ns);
        let want = summary(&run(&spec, sel.clone(), &base, end));
        let mut evs = base.clone();
        for (i, (ms, kind)) in noise.iter().enumerate() {
            let secs = *ms as f64 / 1000.0;
            let seq = 100_000 + i as u64;
            evs.push(match kind {
                0 => log(seq, secs, "noise", "all good from another service"),
                1 => ev(seq, secs, "stats", "stats").service("left-a").data(&serde_json::json!({"cpu": 3})),
                2 => cluster(seq, secs, "right-b", &["right-b"], &["left-a"]),
                _ => ev(seq, secs, "docker", "exec_start").service("left-b"),
            });
        }
        evs.sort_by_key(|e| (e.ts_ns, e.seq));
        let got = summary(&run(&spec, sel, &evs, end));
        prop_assert_eq!(want, got);
    }

    #[test]
    fn replay_is_deterministic(extra in prop::collection::vec(0u32..19_000, 0..40)) {
        let spec = spec(SPEC);
        let mut evs = base_trace();
        for (i, ms) in extra.iter().enumerate() {
            evs.push(log(200_000 + i as u64, *ms as f64 / 1000.0, "left-a", if i % 3 == 0 { "ERROR x" } else { "fine" }));
        }
        evs.sort_by_key(|e| (e.ts_ns, e.seq));
        let a = run(&spec, monitor::Selection::default(), &evs, None);
        let b = run(&spec, monitor::Selection::default(), &evs, None);
        prop_assert_eq!(serde_json::to_string(&a).unwrap_or_default(), serde_json::to_string(&b).unwrap_or_default());
    }
}

/// Keyed monitors whose instances fail by event, by timeout (ties at one deadline included), at
/// the end, accept and stay inconclusive: what a keyed monitor split by key over threads
/// (`Runner::set_threads`) must report exactly as one leaf does. The `per` keys have the shapes
/// read without the generic evaluator (an event field, `seq % N`, a `data` path); `KEYED_SLOW`
/// keys the same monitors by equal expressions the generic evaluator computes.
const KEYED: &str = r#"
monitor busy per service {
  state idle {
    on event where kind == "a" => goto busy timeout 2s
    on event where kind == "c" => accept "done"
  }
  state busy {
    on event where kind == "b" => goto idle
    on event where kind == "x" => fail "x while busy in " + service
    on timeout => fail "slow"
    on end => fail "still busy"
  }
}
monitor rounds per seq % 7 {
  var n = 0
  state s {
    on event where kind == "x" and n > 2 => inconclusive "unsure after " + str(n)
    on event where kind == "b" => set n = n + 1, goto t timeout 1s
  }
  state t {
    on timeout => goto s
    on event where kind == "c" => fail "c while waiting"
    on end => accept
  }
}
monitor lenient per message {
  state s { on event where kind == "a" => goto t timeout 500ms on end => accept }
  state t { on event => goto s on timeout => goto s on end => inconclusive "open" }
}
monitor shaped per data.k {
  state s { on event where kind == "x" => fail "x for " + str(data.k) on event => goto s }
}
"#;

fn keyed_slow() -> String {
    KEYED
        .replace("per service {", "per service + \"\" {")
        .replace("per seq % 7 {", "per (seq + 0) % 7 {")
        .replace("per message {", "per message + \"\" {")
        .replace("per data.k {", "per [data.k][0] {")
}

fn keyed_trace(raw: &[(u32, usize, usize)]) -> Vec<trace::Event> {
    let kinds = ["a", "b", "c", "x", "a", "b"];
    let services = ["s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8"];
    let mut evs: Vec<trace::Event> = raw
        .iter()
        .enumerate()
        .map(|(i, (ms, k, s))| {
            // times on a coarse grid: many events share a time, timeouts tie with events
            let secs = f64::from(ms / 250 * 250) / 1000.0;
            let data = match (s + k) % 4 {
                0 => serde_json::json!({"k": s % 3}),
                1 => serde_json::json!({"k": services[k % 3]}),
                2 => serde_json::json!({"k": [s % 2]}),
                _ => serde_json::json!({}),
            };
            let e = ev(i as u64 + 1, secs, "log", kinds[k % kinds.len()])
                .service(services[s % services.len()])
                .message(services[(s + k) % 4])
                .data(&data);
            // some events without a service: a null key makes no instance
            if *s == 8 {
                trace::Event { service: None, ..e }
            } else {
                e
            }
        })
        .collect();
    evs.sort_by_key(|e| (e.ts_ns, e.seq));
    evs
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn keyed_monitors_split_over_threads_report_what_one_leaf_reports(
        raw in prop::collection::vec((0u32..20_000, 0usize..6, 0usize..9), 0..160),
        threads in 2usize..6,
        batch in prop::sample::select(vec![1usize, 3, 16, 1_000]),
        tail_ms in 0i64..3_000,
    ) {
        let keyed = spec(KEYED);
        let evs = keyed_trace(&raw);
        let end = evs.last().map_or(T0, |e| e.ts_ns) + tail_ms * 1_000_000;
        let want = run(&keyed, monitor::Selection::default(), &evs, Some(end));
        let refs: Vec<trace::EventRef<'_>> = evs.iter().map(|e| e.as_ref()).collect();
        // event by event on the split monitors, then in batches on threads
        let mut seq = monitor::Runner::new(&keyed, &monitor::Selection::default()).expect("runner");
        seq.set_threads(threads);
        for e in &refs {
            seq.observe(e);
        }
        let mut par = monitor::Runner::new(&keyed, &monitor::Selection::default()).expect("runner");
        par.set_threads(threads);
        prop_assert!(par.parallel_parts() >= 3 * threads);
        for chunk in refs.chunks(batch) {
            par.observe_batch(chunk);
        }
        let want_json = serde_json::to_string(&want).expect("json");
        // the specialised keys give what the generic evaluator gives
        let slow = run(&spec(&keyed_slow()), monitor::Selection::default(), &evs, Some(end));
        prop_assert_eq!(&serde_json::to_string(&slow).expect("json"), &want_json);
        prop_assert_eq!(&serde_json::to_string(&seq.finish(end)).expect("json"), &want_json);
        prop_assert_eq!(&serde_json::to_string(&par.finish(end)).expect("json"), &want_json);
    }
}

/// Monitors of every shape the relevance analysis distinguishes: specialised guards over
/// fields, `seq` and `ts`; a regex guard (not specialised); timeouts; a response; keyed and
/// windowed machines (every event of their sources matters); `at`; compositions.
const RELEVANCE: &str = r#"
monitor oom = never event where kind == "oom" and service != "nobody" and seq < 1000000
monitor errors = never log where message ~ "ERROR"
monitor startStop {
  state idle { on docker "start" => goto up timeout 2s }
  state up {
    on docker "stop" => goto idle
    on timeout => fail "no stop within 2s"
  }
}
monitor late = eventually event where kind == "done" and ts > 1700000005000000000
monitor resp = after docker "start" expect log where kind == "ready" within 3s
monitor keyed per service { state s { on stats where kind == "x" => fail "x on " + service } }
monitor win {
  window w = count(kind == "x") over last 2s of jmx
  state s {
    on jmx where kind == "y" and w > 1 => fail "two x, then y"
    on end => accept
  }
}
monitor boom = never event where kind == "boom" or kind == "q" and service in ["s1", "s2"]
monitor atS1 = boom at s1
monitor either = (never event where kind == "q") or eventually event where kind == "done"
monitor notOom = not oom
"#;

const KINDS: [&str; 10] = [
    "stdout", "start", "stop", "oom", "x", "y", "done", "ready", "boom", "q",
];

/// Events in chunks: each chunk draws its kinds and sources from its own palette (so that row
/// groups made of chunks have statistics that rule some monitors out), times moving on.
/// A chunk: its events (milliseconds after the previous one, kind and source picks) and its
/// palettes of kinds and sources (bit masks over [`KINDS`] and the four sources).
type Chunk = (Vec<(u32, usize, usize)>, u16, u8);

fn chunked_trace(chunks: &[Chunk]) -> Vec<Vec<trace::Event>> {
    let sources = ["log", "docker", "stats", "jmx"];
    let services = ["s0", "s1", "s2", "nobody"];
    let mut t_ms = 0u64;
    let mut seq = 0;
    let mut out = Vec::new();
    for (evs, kinds, srcs) in chunks {
        let ks: Vec<&str> = (0..KINDS.len())
            .filter(|i| kinds & (1 << i) != 0)
            .map(|i| KINDS[i])
            .collect();
        let ss: Vec<&str> = (0..sources.len())
            .filter(|i| srcs & (1 << i) != 0)
            .map(|i| sources[i])
            .collect();
        let mut chunk = Vec::new();
        for (dt, k, s) in evs {
            t_ms += u64::from(*dt);
            seq += 1;
            let secs = t_ms as f64 / 1000.0;
            let kind = ks[k % ks.len().max(1)];
            let source = ss[s % ss.len().max(1)];
            let mut e = ev(seq, secs, source, kind);
            if s % 5 != 4 {
                e = e.service(services[(k + s) % services.len()]);
            }
            if source == "log" {
                e = e.message(if k % 4 == 0 { "ERROR bad" } else { "ok" });
            }
            chunk.push(e);
        }
        if !chunk.is_empty() {
            out.push(chunk);
        }
    }
    out
}

/// The statistics a Parquet footer records for `evs`, with the distinct values finalize lists
/// when `listed`.
fn group_stats_as(evs: &[trace::Event], listed: bool) -> trace::GroupStats {
    trace::testing::group_stats_of(evs.iter().map(|e| e.as_ref()), listed)
}

fn group_stats(evs: &[trace::Event]) -> trace::GroupStats {
    group_stats_as(evs, true)
}

/// Runs `spec` over the groups of `groups` that its relevance does not rule out, as
/// `analyzer check` does (trace time from the first event of all; the skipped events counted):
/// the report and how many groups were skipped.
fn run_skipping(
    spec: &monitor::Spec,
    groups: &[Vec<trace::Event>],
    end: i64,
    listed: bool,
) -> (monitor::Report, usize) {
    let sel = monitor::Selection::default();
    let mut r = monitor::Runner::new(spec, &sel).expect("runner");
    let rel = r.relevance();
    if let Some(first) = groups.iter().flatten().map(|e| e.ts_ns).min() {
        r.advance_to(first);
    }
    let (mut skipped, mut rows) = (0, 0);
    for g in groups {
        if rel.may_matter(&group_stats_as(g, listed)) {
            for e in g {
                r.observe(&e.as_ref());
            }
        } else {
            skipped += 1;
            rows += g.len() as u64;
        }
    }
    let mut report = r.finish(end);
    report.events += rows;
    (report, skipped)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn row_groups_whose_statistics_rule_out_every_handler_change_nothing(
        chunks in prop::collection::vec(
            (prop::collection::vec((0u32..700, 0usize..10, 0usize..10), 0..12), 1u16..1024, 1u8..16),
            1..24,
        ),
        tail_ms in 0i64..4_000,
        listed: bool,
    ) {
        let spec = spec(RELEVANCE);
        let groups = chunked_trace(&chunks);
        let all: Vec<trace::Event> = groups.iter().flatten().cloned().collect();
        let end = all.last().map_or(T0, |e| e.ts_ns) + tail_ms * 1_000_000;
        let want = run(&spec, monitor::Selection::default(), &all, Some(end));
        let (got, _) = run_skipping(&spec, &groups, end, listed);
        prop_assert_eq!(
            serde_json::to_string(&got).expect("json"),
            serde_json::to_string(&want).expect("json")
        );
    }
}

/// The analysis does rule groups out: groups of only `stdout` events from `log` and `docker`
/// are skipped by the field guards, and the report is the same; a regex guard on log lines
/// rules nothing out; a keyed machine reads every event of its sources, whatever its handlers
/// match, and a windowed one too.
#[test]
fn relevance_rules_out_groups_no_handler_can_match() {
    let quiet: Vec<(u32, usize, usize)> = (0..8).map(|i| (100, 0, i % 2)).collect();
    let busy: Vec<(u32, usize, usize)> = (0..8).map(|i| (300, i, i)).collect();
    let chunks = vec![
        (busy.clone(), 0b11_1111_1111u16, 0b1111u8),
        // kind `stdout` from `log` or `docker`
        (quiet.clone(), 0b1, 0b0011),
        (busy, 0b11_1111_1111, 0b1111),
        // kind `stdout` from `stats` or `jmx`
        (quiet, 0b1, 0b1100),
    ];
    let groups = chunked_trace(&chunks);
    let all: Vec<trace::Event> = groups.iter().flatten().cloned().collect();
    let end = all.last().map_or(T0, |e| e.ts_ns) + S;
    let s = spec(RELEVANCE);
    let skipped = |names: &[&str]| -> Vec<bool> {
        let rel = monitor::Runner::new(&s, &monitors(names))
            .expect("runner")
            .relevance();
        groups
            .iter()
            .map(|g| !rel.may_matter(&group_stats(g)))
            .collect()
    };
    let guards = [
        "oom",
        "startStop",
        "late",
        "boom",
        "atS1",
        "either",
        "notOom",
    ];
    assert_eq!(skipped(&guards), [false, true, false, true]);
    let sel = monitors(&guards);
    let want = run(&s, sel.clone(), &all, Some(end));
    let mut r = monitor::Runner::new(&s, &sel).expect("runner");
    let rel = r.relevance();
    r.advance_to(all[0].ts_ns);
    for g in groups.iter().filter(|g| rel.may_matter(&group_stats(g))) {
        for e in g {
            r.observe(&e.as_ref());
        }
    }
    let mut got = r.finish(end);
    assert_eq!(got.events, want.events - 16);
    got.events = want.events;
    assert_eq!(
        serde_json::to_string(&got).expect("json"),
        serde_json::to_string(&want).expect("json")
    );
    assert_eq!(skipped(&["errors"]), [false, false, false, true]);
    // by their bounds only, `log` lies between `jmx` and `stats`: nothing is ruled out
    let rel = monitor::Runner::new(&s, &monitors(&["errors"]))
        .expect("runner")
        .relevance();
    assert!(groups
        .iter()
        .all(|g| rel.may_matter(&group_stats_as(g, false))));
    // `keyed` reads `stats`, `win` reads `jmx`: the last quiet group holds both
    assert_eq!(skipped(&["keyed"]), [false, true, false, false]);
    assert_eq!(skipped(&["win"]), [false, true, false, false]);
    // with an experiment, its `fault` and `recorder` events matter too
    assert_eq!(skipped(&[]), [false, false, false, false]);
}

/// Monitors that decide on their first match (searched on every thread of a batch) beside one
/// that counts (evaluated whole on one thread).
const FIRST_MATCH: &str = r#"
monitor err = never log where message ~ r"ERR(?P<code>[0-9])" and int(code) > 3
monitor fine = always log where service != "x"
monitor done = eventually event where kind == "done"
monitor odd = never event where kind == "q" or message ~ "zz"
monitor errS1 = err at s1
monitor first {
  state s {
    on event where kind == "a" => accept "a came first"
    on event where kind == "b" => fail "b came first"
  }
}
monitor counter {
  var n = 0
  state s {
    on log => set n = n + 1
    on end => accept "counted " + str(n)
  }
}
"#;

fn first_match_trace(raw: &[(u32, usize, usize, usize)]) -> Vec<trace::Event> {
    let kinds = ["stdout", "a", "b", "q", "done", "stdout", "stdout"];
    let services = ["s0", "s1", "x", "s0"];
    let messages = ["ok", "ERR5 bad", "ERR2 meh", "zz top", "fine", "ERR9"];
    let mut t = 0u64;
    raw.iter()
        .enumerate()
        .map(|(i, (dt, k, s, m))| {
            t += u64::from(*dt);
            let source = if k % 3 == 0 { "stats" } else { "log" };
            ev(
                i as u64 + 1,
                t as f64 / 1000.0,
                source,
                kinds[k % kinds.len()],
            )
            .service(services[s % services.len()])
            .message(messages[m % messages.len()])
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn monitors_deciding_on_their_first_match_searched_on_threads_report_what_one_thread_reports(
        raw in prop::collection::vec((0u32..400, 0usize..7, 0usize..4, 0usize..6), 0..300),
        threads in 2usize..5,
        batch in prop::sample::select(vec![1usize, 5, 64, 1_000]),
        searched in prop::sample::subsequence(vec!["err", "fine", "done", "odd", "errS1", "first"], 1..4),
    ) {
        let s = spec(FIRST_MATCH);
        let evs = first_match_trace(&raw);
        let end = evs.last().map_or(T0, |e| e.ts_ns) + S;
        // fewer monitors deciding on their first match than threads: each searched on all of
        // them; as many or more: each a unit of its own
        let mut names = searched.clone();
        names.push("counter");
        let sel = monitors(&names);
        let want = run(&s, sel.clone(), &evs, Some(end));
        let refs: Vec<trace::EventRef<'_>> = evs.iter().map(|e| e.as_ref()).collect();
        let mut par = monitor::Runner::new(&s, &sel).expect("runner");
        par.set_threads(threads);
        let apart = searched.len() < threads;
        prop_assert_eq!(par.parallel_parts(), if apart { searched.len() * threads + 1 } else { searched.len() + 1 });
        for chunk in refs.chunks(batch) {
            par.observe_batch(chunk);
        }
        prop_assert_eq!(
            serde_json::to_string(&par.finish(end)).expect("json"),
            serde_json::to_string(&want).expect("json")
        );
    }
}

/// The assignments a handler may make, for [`plain_sets_give_what_the_generic_evaluator_gives`]:
/// constants, variables and operators over them (overflow and division by zero included), and
/// one the specialised path leaves to the generic evaluator (a call).
const SETS: &[&str] = &[
    "set n = n + 1",
    "set n = n * 3",
    "set n = m - n",
    "set m = n / 2",
    "set m = 7",
    "set n = m % 0",
    "set n = n + 4611686018427387904",
    "set m = n == m",
    "set n = m",
    "set s = s + \"x\"",
    "set m = len(s)",
    "set n = n + 1, set m = n * 10",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A handler with a specialised guard applies plain `set`s without an evaluation context
    /// (`eval::effects::Plain`); the same machine with a guard the generic evaluator
    /// takes must end with the same variables and report.
    #[test]
    fn plain_sets_give_what_the_generic_evaluator_gives(
        picks in prop::collection::vec((0usize..SETS.len(), any::<bool>(), 0i64..60), 1..4),
        kinds in prop::collection::vec(0usize..3, 0..40),
    ) {
        // each handler stays or goes to its own state again; its guard also compares a variable
        let handlers: String = picks
            .iter()
            .enumerate()
            .map(|(i, (p, goto, lim))| {
                format!(
                    "on log where kind == \"k{i}\" and n < {lim} GUARD => {}{}\n",
                    SETS[*p],
                    if *goto { ", goto a" } else { "" }
                )
            })
            .collect();
        let machine = |name: &str, guard: &str| {
            format!(
                "monitor {name} {{ var n = 1 var m = 2 var s = \"\"\n state a {{\n{}\
                 on end => accept \"n=\" + str(n) + \" m=\" + str(m) + \" s=\" + s }} }}\n",
                handlers.replace("GUARD", guard)
            )
        };
        let text = machine("plainM", "") + &machine("genericM", "and len(kind) > 0");
        let s = spec(&text);
        let evs: Vec<trace::Event> = kinds
            .iter()
            .enumerate()
            .map(|(i, k)| ev(i as u64 + 1, i as f64, "log", &format!("k{k}")))
            .collect();
        let end = Some(T0 + 100 * S);
        let plain = run(&s, monitors(&["plainM"]), &evs, end);
        let generic = run(&s, monitors(&["genericM"]), &evs, end);
        // the paths name the handlers by their text, which differs by the guard's tail
        let json = |r: &monitor::Report, name: &str| {
            serde_json::to_string(&r.monitors)
                .expect("json")
                .replace(name, "M")
                .replace(" and len(kind) > 0", "")
        };
        prop_assert_eq!(json(&plain, "plainM"), json(&generic, "genericM"));
    }
}

/// Machines fed a batch's columns (`Runner::observe_events`: every guard specialised, no `at`
/// nor window) beside one that is not (a generic guard): keys of every fast shape and the
/// generic one, timeouts that fire (ties with events at one time included), decide and move,
/// instances created late, variables, sources, guards over `kind`, `message` and `data`,
/// handlers that decide on an event (offered as one event), paths longer than the ring, whose
/// events are copied only when the batch is over, and keyed machines whose batches are
/// evaluated instance by instance (`grouped`, `byTime`, `byKind`: every handler plain), some of
/// whose instances accept on a timeout between batches.
const COLUMNAR: &str = r#"
monitor pulse per seq % 5 {
  state idle { on log => goto busy timeout 700ms on end => accept }
  state busy {
    on docker => goto idle
    on log where seq > 40 => goto busy timeout 400ms
    on timeout => fail "no docker in time"
  }
}
monitor counter {
  var n = 0
  state s {
    on log where ts > 1700000002000000000 => set n = n + 1, goto t timeout 300ms
    on end => accept
  }
  state t {
    on log => set n = n + 1, goto t timeout 300ms
    on docker where source == "docker" => set n = 0
    on timeout => goto s
  }
}
monitor byTime per ts % 3 {
  state a { on event => goto b timeout 2s }
  state b { on event where seq < 100 => goto a on timeout => inconclusive "quiet" }
}
monitor bySeq per seq {
  state a { on event => goto b }
  state b { on end => accept }
}
monitor generic per (seq + 1) % 4 {
  state a { on event => goto b timeout 1s }
  state b { on event => goto a on timeout => fail "slow" }
}
monitor byKind per seq % 3 {
  state a { on event where kind == "a" => goto b timeout 1s }
  state b { on event where kind == "b" => goto a on timeout => fail "no b" }
}
monitor decides per seq % 4 {
  var n = 0
  state a {
    on log where message == "line 37" => fail "thirty-seven"
    on log where kind == "b" => set n = n + 1
    on docker => goto b timeout 500ms
  }
  state b {
    on event where n > 3 => accept
    on log where message == "line 5" => inconclusive "five"
    on timeout => goto a
  }
}
monitor byData per seq % 3 {
  state a {
    on log where data.n == 3 => goto b timeout 300ms
    on docker where data.n == 5 => fail "five"
  }
  state b { on log where data.n == 4 => goto a on timeout => accept }
}
monitor grouped per seq % 6 {
  var n = 0
  state a {
    on event where seq > 50 => set n = n + 1, goto b timeout 1500ms
    on event => set n = n + 2
  }
  state b {
    on event where n > 6 => goto a
    on event => goto b timeout 900ms
    on timeout => accept
  }
}
monitor notFed {
  state a { on log where len(message) > 7 => goto b timeout 1s }
  state b { on docker => goto a on timeout => fail "no docker" }
}
"#;

fn columnar_trace(raw: &[(u32, bool, bool)]) -> Vec<trace::Event> {
    let mut evs: Vec<trace::Event> = raw
        .iter()
        .enumerate()
        .map(|(i, (ms, docker, b))| {
            // times on a coarse grid: many events share a time, timeouts tie with events
            let secs = f64::from(ms / 100 * 100) / 1000.0;
            let src = if *docker { "docker" } else { "log" };
            let e = ev(i as u64 + 1, secs, src, if *b { "b" } else { "a" })
                .service(["s0", "s1"][i % 2])
                .message(format!("line {i}"));
            // `data` on two events of three
            if i % 3 == 2 {
                e
            } else {
                e.data(&serde_json::json!({ "n": i % 7 }))
            }
        })
        .collect();
    evs.sort_by_key(|e| (e.ts_ns, e.seq));
    evs
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn monitors_fed_columns_report_what_event_by_event_reports(
        raw in prop::collection::vec((0u32..6_000, any::<bool>(), any::<bool>()), 0..300),
        threads in 1usize..4,
        batch in prop::sample::select(vec![1usize, 7, 64, 1_000]),
        tail_ms in 0i64..3_000,
        grouped in any::<bool>(),
    ) {
        let s = spec(COLUMNAR);
        let evs = columnar_trace(&raw);
        let end = evs.last().map_or(T0, |e| e.ts_ns) + tail_ms * 1_000_000;
        let want = run(&s, monitor::Selection::default(), &evs, Some(end));
        let mut cols = monitor::Runner::new(&s, &monitor::Selection::default()).expect("runner");
        cols.set_threads(threads);
        prop_assert!(cols.feeds_columns());
        // (the rows grouped beforehand by the first keyed monitor's key, as the reader's
        // threads group them: the others' keys differ)
        let prepare = cols.prepare().filter(|_| grouped);
        for chunk in evs.chunks(batch) {
            let b = trace::schema::events_to_log_batch(chunk.iter());
            let mut b = trace::EventBatch::from_arrow(&b).expect("batch");
            prop_assert!(b.columns().is_some());
            if let Some(p) = &prepare {
                b.prepare_with(p);
            }
            cols.observe_events(&b);
        }
        prop_assert_eq!(
            serde_json::to_string(&cols.finish(end)).expect("json"),
            serde_json::to_string(&want).expect("json")
        );
    }
}

/// Keyed machines whose batches are evaluated instance by instance, the rows grouped by key
/// where they are evaluated or beforehand (as the reader's threads group them,
/// `Runner::prepare`): keys first seen in the middle of a batch (the loop over rows takes that
/// batch), variables, handlers tried in turn, paths that wrap their ring many times, and a
/// timeout that fires once the run ends. Every split of the rows into batches, on one thread
/// or two, grouped beforehand or not, reports what event-by-event evaluation reports.
#[test]
fn keyed_batches_by_instance_report_what_event_by_event_reports() {
    let s = spec(
        r#"
monitor big per seq % 1000 {
  var n = 0
  state idle { on event => set n = n + 1, goto waiting timeout 20s }
  state waiting {
    on event where n > 30 => goto idle
    on event => set n = n + 1
    on timeout => fail "slow"
  }
}
monitor quiet per seq % 1000 {
  state a { on event => goto b timeout 1h }
  state b { on event => goto a timeout 2h on timeout => inconclusive "quiet" }
}
monitor late per seq % 1000 {
  state a { on event => goto b timeout 15s }
  state b { on event => goto b timeout 15s on timeout => fail "late" }
}
monitor gaps per seq % 1000 {
  state a { on event where seq > 55999 => goto b timeout 500ms }
  state b { on event => goto b timeout 500ms on timeout => fail "gap" }
}
"#,
    );
    // rows 0..10000 have keys 0..99 (`seq % 1000`), rows 10000.. keys 100..199, one event a
    // millisecond: key 0 is last seen at 9.9 s, and `late` fails on its timeout at 24.9 s; key
    // 5 is quiet from 5.905 s to 7.005 s, so `gaps` (whose instances arm no timer before 5.6 s)
    // fails on its timeout at 6.405 s, within batches that begin with no timer armed and whose
    // rows would otherwise be evaluated by instance
    let evs: Vec<trace::Event> = (0..15_000u64)
        .filter(|i| !(i % 100 == 5 && (6_000..7_000).contains(i)))
        .map(|i| {
            let key = if i < 10_000 { i % 100 } else { 100 + i % 100 };
            ev(1_000 * (i / 100) + key, i as f64 / 1000.0, "log", "a")
        })
        .collect();
    let end = T0 + 40 * common::S;
    let want = run(&s, monitor::Selection::default(), &evs, Some(end));
    let late = want
        .monitors
        .iter()
        .find(|m| m.name == "late")
        .expect("late");
    assert_eq!(late.verdict, monitor::Verdict::Fail);
    let x = late.explanation.as_ref().expect("explained");
    assert_eq!(
        (x.key.as_deref(), x.decided_ns),
        (Some("0"), Some(T0 + 24_900 * 1_000_000))
    );
    let gaps = want
        .monitors
        .iter()
        .find(|m| m.name == "gaps")
        .expect("gaps");
    let x = gaps.explanation.as_ref().expect("explained");
    assert_eq!(
        (x.key.as_deref(), x.decided_ns),
        (Some("5"), Some(T0 + 6_405 * 1_000_000))
    );
    assert_eq!(evs.len(), 14_990);
    for sizes in [
        &[5_000, 9_990][..],
        &[14_990],
        &[4_096, 4_096, 6_798],
        &[9_989, 1, 5_000],
    ] {
        for (threads, grouped) in [(1, false), (2, false), (1, true), (2, true)] {
            let mut cols =
                monitor::Runner::new(&s, &monitor::Selection::default()).expect("runner");
            cols.set_threads(threads);
            assert!(cols.feeds_columns());
            let prepare = cols.prepare().filter(|_| grouped);
            assert_eq!(prepare.is_some(), grouped);
            let mut at = 0;
            for &n in sizes {
                let b = trace::schema::events_to_log_batch(evs[at..at + n].iter());
                let mut b = trace::EventBatch::from_arrow(&b).expect("batch");
                if let Some(p) = &prepare {
                    b.prepare_with(p);
                    assert!(b.prepared().is_some());
                }
                cols.observe_events(&b);
                at += n;
            }
            assert_eq!(
                serde_json::to_string(&cols.finish(end)).expect("json"),
                serde_json::to_string(&want).expect("json"),
                "batches {sizes:?}, {threads} threads, grouped beforehand: {grouped}"
            );
        }
    }
}

/// A keyed machine with more keys in a batch than are grouped: the reader's threads give up on
/// its batches (and the evaluator does not try again), another machine's rows are grouped where
/// they are evaluated; both report what event-by-event evaluation reports.
#[test]
fn batches_with_too_many_keys_to_group_report_what_event_by_event_reports() {
    let s = spec(
        r#"
monitor many per seq % 3000 {
  state a { on event => goto b timeout 1h }
  state b { on event => goto a on timeout => fail "slow" }
}
monitor few per seq % 10 {
  state a { on event => goto b timeout 1h }
  state b { on event => goto a on timeout => fail "slow" }
}
"#,
    );
    let evs: Vec<trace::Event> = (0..9_000u64)
        .map(|i| ev(i, i as f64 / 1000.0, "log", "a"))
        .collect();
    let end = T0 + 20 * common::S;
    let want = run(&s, monitor::Selection::default(), &evs, Some(end));
    let mut cols = monitor::Runner::new(&s, &monitor::Selection::default()).expect("runner");
    assert!(cols.feeds_columns());
    let prepare = cols.prepare().expect("a keyed monitor to group for");
    for chunk in evs.chunks(3_000) {
        let b = trace::schema::events_to_log_batch(chunk.iter());
        let mut b = trace::EventBatch::from_arrow(&b).expect("batch");
        b.prepare_with(&prepare);
        assert!(b.prepared().is_some());
        cols.observe_events(&b);
    }
    assert_eq!(
        serde_json::to_string(&cols.finish(end)).expect("json"),
        serde_json::to_string(&want).expect("json")
    );
}
