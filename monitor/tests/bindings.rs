//! Bindings (`accept ... with V`, `expect ... as NAME`, later steps using `NAME`) and state
//! across services (maps set by key, `latest(E) by K` windows, `values`, `filter`, list
//! difference): compile-time checks and offline judging on hand-made events.

mod common;
use common::*;
use monitor::Verdict::{self, *};
use monitor::{Bindings, FaultTarget, Step, Value};
use serde_json::json;
use trace::Event;

/// A leader-status poll of `service`: `{"is_leader": 0|1}`.
fn role(seq: u64, secs: f64, service: &str, leader: bool) -> Event {
    ev(seq, secs, "http", "response")
        .service(service)
        .data(&json!({ "body": { "is_leader": leader as i64 } }))
}

/// A fault event the recorder wrote for step `step` of experiment `e` (`None`: no identity).
fn fault(seq: u64, secs: f64, action: &str, services: &[&str], step: Option<u64>) -> Event {
    ev(seq, secs, "fault", action)
        .message(format!("{action} {}", services.join(",")))
        .data(&json!({
            "fault_id": format!("f{seq}"), "phase": "applied",
            "experiment": step.map(|_| "e"), "step": step,
            "target": {"services": services, "containers": [], "networks": []},
            "params": {}, "intended_ns": 0, "started_ns": 0, "ended_ns": 0, "error": null
        }))
}

/// The recorder's end event of step `step` of experiment `e`, binding `name` to `value`.
fn bound_event(seq: u64, secs: f64, step: u64, name: &str, value: serde_json::Value) -> Event {
    ev(seq, secs, "recorder", "step").data(&json!({
        "experiment": "e", "step": step, "step_kind": "expect", "phase": "end",
        "verdict": "accept", "binding": {"name": name, "value": value}
    }))
}

/// Exactly one of `members` reports `is_leader = 1` (the latest poll of each, polls older than
/// 5 s forgotten) for 2 s: accepts with that member.
const ONE_LEADER: &str = r#"
monitor oneLeader(members: str...) {
  window role = latest(data.body.is_leader) by service over last 5s of http where service in members
  state electing {
    on http where len(role) == len(members) and (count r in values(role): r == 1) == 1 => goto holding timeout 2s
  }
  state holding {
    on http where (count r in values(role): r == 1) != 1 => goto electing
    on timeout => accept with (filter s in keys(role): role[s] == 1)[0]
  }
}
monitor follower(node: str) = eventually http from node where data.body.is_leader == 0
"#;

fn judge(text: &str, events: &[Event]) -> monitor::ExperimentResult {
    let spec = spec(text);
    let r = run(&spec, experiment("e"), events, None);
    r.experiments[0].clone()
}

fn three_polls(seq: u64, secs: f64, leader: &str) -> Vec<Event> {
    ["e1", "e2", "e3"]
        .iter()
        .enumerate()
        .map(|(i, s)| role(seq + i as u64, secs, s, *s == leader))
        .collect()
}

#[test]
fn exactly_one_leader_for_two_seconds_accepts_with_the_leader() {
    let text = format!(
        "{ONE_LEADER}\nexperiment e {{\n  expect oneLeader(e1, e2, e3) as L within 10s\n}}"
    );
    let mut evs = Vec::new();
    for k in 0..5 {
        evs.extend(three_polls(10 * k + 1, k as f64, "e2"));
    }
    let x = judge(&text, &evs);
    assert_eq!(x.verdict, Accept, "{x:#?}");
    let b = x.steps[0].binding.clone().expect("a binding");
    assert_eq!((b.name.as_str(), b.value), ("L", json!("e2")));
    // decided by the 2 s timeout armed when all three had reported (at +0 s)
    assert_eq!(x.steps[0].end_ns, Some(T0 + 2 * S));
}

#[test]
fn two_leaders_or_a_missing_member_do_not_count_as_one_leader() {
    let text =
        format!("{ONE_LEADER}\nexperiment e {{\n  expect oneLeader(e1, e2, e3) as L within 6s\n}}");
    // e1 and e2 both claim leadership the whole time
    let mut evs = Vec::new();
    for k in 0..8 {
        evs.push(role(10 * k + 1, k as f64, "e1", true));
        evs.push(role(10 * k + 2, k as f64, "e2", true));
        evs.push(role(10 * k + 3, k as f64, "e3", false));
    }
    assert_eq!(judge(&text, &evs).verdict, Fail);
    // e3 never answers: only two members known
    let evs: Vec<Event> = (0..8)
        .flat_map(|k| {
            vec![
                role(10 * k + 1, k as f64, "e1", true),
                role(10 * k + 2, k as f64, "e2", false),
            ]
        })
        .collect();
    assert_eq!(judge(&text, &evs).verdict, Fail);
    // one leader, but a second one appears after 1 s: the hold restarts, then e1 alone for 2 s
    let mut evs = three_polls(1, 0.0, "e1");
    evs.push(role(10, 1.0, "e2", true));
    evs.push(role(11, 1.5, "e2", false));
    evs.extend(three_polls(20, 3.0, "e1"));
    evs.extend(three_polls(30, 3.9, "e1"));
    let x = judge(&text, &evs);
    assert_eq!(x.verdict, Accept, "{x:#?}");
    // the hold restarted at 1.5 s (the event that made it exactly one again)
    assert_eq!(x.steps[0].end_ns, Some(T0 + 3_500_000_000));
}

#[test]
fn a_latest_window_forgets_members_not_heard_from() {
    let text = r#"
monitor m {
  window role = latest(data.body.is_leader) by service over last 5s of http
  state s { on http where service == "e3" and len(role) == 1 => accept with keys(role) }
}
experiment e { expect m as K }
"#;
    // e1, e2 report at 0 s; e3 at 6 s: by then the others are older than 5 s
    let evs = vec![
        role(1, 0.0, "e1", true),
        role(2, 0.0, "e2", false),
        role(3, 6.0, "e3", false),
    ];
    let x = judge(text, &evs);
    assert_eq!(x.verdict, Accept, "{x:#?}");
    assert_eq!(
        x.steps[0].binding.clone().map(|b| b.value),
        Some(json!(["e3"]))
    );
}

#[test]
fn maps_set_by_key_hold_the_latest_value_per_service() {
    let text = r#"
monitor m {
  var seen = {}
  state s {
    on http where data.body.is_leader == 9 => set seen[service] = null
    on http => set seen[service] = data.body.is_leader, set n = len(seen), goto t
  }
  state t {
    on http where data.body.is_leader == 9 => set seen[service] = null
    on http where len(seen) == 3 and (count v in values(seen): v == 1) == 1 => accept with seen
    on http => set seen[service] = data.body.is_leader
  }
}
"#;
    // `n` is not declared: an error at its position
    let err = match compile_str(text) {
        Ok(_) => panic!("unknown variable accepted"),
        Err(e) => e.render(),
    };
    assert!(
        err.contains("test.spec:6:61: unknown variable `n`"),
        "{err}"
    );
    let text = text.replace(", set n = len(seen)", "") + "experiment e { expect m as S }";
    // the guard sees the map as the handlers before left it: the third report is set by the
    // `on http =>` handler, the fourth event finds three keys with one leader
    let evs = vec![
        role(1, 0.0, "e1", false),
        role(2, 0.1, "e2", true),
        role(3, 0.2, "e3", false),
        role(4, 0.3, "e3", false),
    ];
    let x = judge(&text, &evs);
    assert_eq!(x.verdict, Accept, "{x:#?}");
    assert_eq!(
        x.steps[0].binding.clone().map(|b| b.value),
        Some(json!({"e1": 0, "e2": 1, "e3": 0}))
    );
    // setting null removes the key: e2 is gone before e3's second report
    let mut evs = evs;
    evs.insert(
        3,
        ev(9, 0.25, "http", "response")
            .service("e2")
            .data(&json!({"body": {"is_leader": 9}})),
    );
    let x = judge(&text, &evs);
    assert_eq!(x.verdict, Inconclusive, "{x:#?}");
}

#[test]
fn list_difference_and_filter() {
    let text = r#"
let members = [e1, e2, e3]
monitor m(l: list) {
  state s { on http where l - [service] == (filter x in l: x != service) and len([1, 2] - [2]) == 1 => accept }
}
experiment e { expect m(members) }
"#;
    let x = judge(text, &[role(1, 0.0, "e2", true)]);
    assert_eq!(x.verdict, Accept, "{x:#?}");
}

/// The issue's experiment: find the leader, partition it from the others, expect a new leader
/// among the others, heal, expect the old leader back as a follower.
const FAILOVER: &str = r#"
let members = [e1, e2, e3]
experiment e {
  expect oneLeader(members) as L within 10s
  do partition between [L] and members - [L]
  expect oneLeader(members - [L]) as N within 10s
  do heal on members
  expect follower(L) within 5s
}
"#;

#[test]
fn a_bound_leader_is_the_target_of_later_steps() {
    let text = format!("{ONE_LEADER}{FAILOVER}");
    let spec = spec(&text);
    let exp = spec.experiment("e").expect("experiment");
    assert_eq!(
        exp.uses,
        vec![
            vec![],
            vec!["L".to_string()],
            vec!["L".to_string()],
            vec![],
            vec!["L".to_string()]
        ]
    );
    // resolved with L = e2: the partition's groups
    let mut b = Bindings::new();
    b.insert("L".into(), Value::str("e2"));
    match exp.resolve(1, &b) {
        Ok(Step::Do(f)) => assert_eq!(
            f.target,
            FaultTarget::Between(vec!["e2".into()], vec!["e1".into(), "e3".into()])
        ),
        other => panic!("{other:?}"),
    }
    match exp.resolve(4, &b) {
        Ok(Step::Expect(e)) => assert_eq!(e.monitor.display(), "follower(e2)"),
        other => panic!("{other:?}"),
    }
    // not bound yet
    let e = exp.resolve(1, &Bindings::new()).expect_err("unbound");
    assert_eq!(e, vec!["`L` is not bound".to_string()]);

    let mut evs = Vec::new();
    for k in 0..3 {
        evs.extend(three_polls(10 * k + 1, k as f64, "e2"));
    }
    // the partition the recorder applied for step 2 (identity), e1 then leads among e1, e3
    evs.push(fault(40, 3.0, "partition", &["e2", "e1", "e3"], Some(1)));
    for k in 0..3 {
        let t = 4.0 + k as f64;
        evs.push(role(50 + 10 * k, t, "e1", true));
        evs.push(role(51 + 10 * k, t, "e3", false));
    }
    evs.push(fault(90, 7.5, "heal", &["e1", "e2", "e3"], Some(3)));
    evs.push(role(91, 8.0, "e2", false));
    let x = judge(&text, &evs);
    assert_eq!(x.verdict, Accept, "{x:#?}");
    let bound: Vec<_> = x
        .steps
        .iter()
        .map(|s| {
            s.binding
                .as_ref()
                .map(|b| (b.name.clone(), b.value.clone()))
        })
        .collect();
    assert_eq!(bound[0], Some(("L".into(), json!("e2"))));
    assert_eq!(bound[2], Some(("N".into(), json!("e1"))));
    // without the recorder's identity, the partition matches by its resolved target
    let mut evs2 = evs.clone();
    evs2[9] = fault(40, 3.0, "partition", &["e2", "e1", "e3"], None);
    evs2.retain(|e| e.seq != 90);
    evs2.push(fault(90, 7.5, "heal", &["e1", "e2", "e3"], None));
    evs2.sort_by_key(|e| (e.ts_ns, e.seq));
    assert_eq!(judge(&text, &evs2).verdict, Accept);
    // the old leader never comes back as a follower: the last step fails
    evs.pop();
    evs.push(role(91, 8.0, "e2", true));
    evs.push(log(92, 13.0, "x", "later"));
    let x = judge(&text, &evs);
    assert_eq!(x.verdict, Fail, "{x:#?}");
    assert_eq!(x.steps[4].verdict, Some(Fail));
}

#[test]
fn a_binding_that_differs_from_the_recorded_one_is_reported() {
    let text = format!("{ONE_LEADER}\nexperiment e {{\n  expect oneLeader(e1, e2, e3) as L within 10s\n  note \"n\"\n}}");
    let mut evs = Vec::new();
    for k in 0..3 {
        evs.extend(three_polls(10 * k + 1, k as f64, "e2"));
    }
    let with = |v: serde_json::Value| {
        let mut e = evs.clone();
        e.push(bound_event(40, 2.3, 0, "L", v));
        e
    };
    // recorded as recomputed: no warning
    let x = judge(&text, &with(json!("e2")));
    assert_eq!(x.verdict, Accept, "{x:#?}");
    assert!(x.steps[0].warnings.is_empty(), "{x:#?}");
    // recorded another value: reported on the step, the experiment is inconclusive
    let x = judge(&text, &with(json!("e3")));
    assert_eq!(x.verdict, Inconclusive, "{x:#?}");
    let w = &x.steps[0].warnings;
    assert!(
        w.len() == 1 && w[0].contains("binds `L` to \"e2\" recomputed from the trace, but the recorder bound \"e3\" (seq 40)"),
        "{w:?}"
    );
    assert_eq!(
        x.steps[0].binding.clone().map(|b| b.value),
        Some(json!("e2")),
        "the recomputed value is kept"
    );
}

#[test]
fn accepting_without_a_value_leaves_the_binding_step_inconclusive() {
    let text = r#"
monitor m {
  state s {
    on log where message == "with" => accept with service
    on log => accept
  }
}
experiment e {
  expect m as X
  do pause on X
}
"#;
    let x = judge(text, &[log(1, 0.0, "a", "plain")]);
    assert_eq!(x.verdict, Inconclusive, "{x:#?}");
    assert!(
        x.steps[0]
            .reason
            .clone()
            .unwrap_or_default()
            .contains("accepted without a value for `X`"),
        "{x:#?}"
    );
    let x = judge(
        text,
        &[
            log(1, 0.0, "a", "with"),
            fault(2, 1.0, "pause", &["a"], None),
        ],
    );
    assert_eq!(x.verdict, Accept, "{x:#?}");
}

#[test]
fn a_value_that_cannot_be_a_target_makes_the_step_inconclusive() {
    let text = r#"
monitor m { state s { on log => accept with data.n } }
experiment e {
  expect m as X
  do pause on X
}
"#;
    let x = judge(text, &[log(1, 0.0, "a", "x").data(&json!({"n": 42}))]);
    assert_eq!(x.verdict, Inconclusive, "{x:#?}");
    let why = x.steps[1].reason.clone().unwrap_or_default();
    assert!(
        why.contains("cannot use the bound values")
            && why.contains("a fault target must be a name, found int"),
        "{why}"
    );
}

fn errors(text: &str) -> String {
    match compile_str(text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.render(),
    }
}

#[test]
fn bindings_are_checked_when_the_spec_compiles() {
    let base =
        "monitor m { state s { on log => accept with service } }\nmonitor plain = eventually log\n";
    // used before the step that binds it, and by that step itself
    let e = errors(&format!(
        "{base}experiment e {{\n  do pause on X\n  expect m at X as X\n}}"
    ));
    assert!(
        e.contains(
            "test.spec:4:15: `X` is used before it is bound: step 2 binds it, this is step 1"
        ),
        "{e}"
    );
    assert!(
        e.contains(
            "test.spec:5:15: `X` is used before it is bound: step 2 binds it, this is step 2"
        ),
        "{e}"
    );
    // a step that binds nothing
    let e = errors(&format!(
        "{base}experiment e {{\n  expect plain as X within 5s\n}}"
    ));
    assert!(
        e.contains("test.spec:4:19: step 1 binds nothing: `plain` never accepts with a value"),
        "{e}"
    );
    let e = errors(&format!("{base}experiment e {{\n  expect not m as X\n}}"));
    assert!(e.contains("step 1 binds nothing"), "{e}");
    // bound twice, and a name that is a constant
    let e = errors(&format!(
        "{base}let K = 1\nexperiment e {{\n  expect m as X\n  expect m as X\n  expect m as K\n}}"
    ));
    assert!(e.contains("test.spec:6:15: `X` is bound twice"), "{e}");
    assert!(
        e.contains("test.spec:7:15: binding `K` has the name of a constant, macro or monitor"),
        "{e}"
    );
    // `within` before `as` is the same step
    let s = spec(&format!(
        "{base}experiment e {{\n  expect m within 5s as X\n  do pause on X\n}}"
    ));
    assert!(s.experiment("e").is_some_and(|x| x.uses_bindings(1)));
}

#[test]
fn with_is_only_a_keyword_before_a_value() {
    // a variable called `with` still works as a message
    let text = r#"
monitor m {
  var with = "w"
  state s { on log => accept with }
}
"#;
    let r = run(
        &spec(text),
        monitors(&["m"]),
        &[log(1, 0.0, "a", "x")],
        None,
    );
    assert_eq!(r.monitors[0].verdict, Accept);
    assert_eq!(
        r.monitors[0].explanation.as_ref().map(|e| e.reason.clone()),
        Some("w".to_string())
    );
}

#[allow(dead_code)]
fn verdicts(x: &monitor::ExperimentResult) -> Vec<Option<Verdict>> {
    x.steps.iter().map(|s| s.verdict).collect()
}
