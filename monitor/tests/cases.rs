//! The data-driven table: for each language construct, a spec snippet, a small hand-made event
//! list, the expected verdict and the seq of the deciding event (None: decided without one, e.g.
//! a timeout or the end of the trace).

mod common;
use common::*;
use monitor::Verdict::{self, *};
use serde_json::json;
use trace::Event;

struct Case {
    name: &'static str,
    spec: &'static str,
    events: Vec<Event>,
    end: Option<f64>,
    verdict: Verdict,
    seq: Option<u64>,
}

fn d(seq: u64, secs: f64, kind: &str, data: serde_json::Value) -> Event {
    ev(seq, secs, "http", kind).service("api").data(&data)
}

fn cases() -> Vec<Case> {
    let c = |name, spec, events, end, verdict, seq| Case {
        name,
        spec,
        events,
        end,
        verdict,
        seq,
    };
    vec![
        c("str of a duration renders its unit", "monitor m = eventually log where message == \"waited \" + str(2500ms) and str(3s) == \"3s\"",
          vec![log(1, 0.0, "a", "waited 2500000000"), log(2, 1.0, "a", "waited 2500ms")], None, Accept, Some(2)),
        c("field comparison", "monitor m = never docker \"die\" where service == \"db\"",
          vec![ev(1, 0.0, "docker", "die").service("web"), ev(2, 1.0, "docker", "die").service("db")], None, Fail, Some(2)),
        c("kind and source filter", "monitor m = never docker \"die\"",
          vec![ev(1, 0.0, "log", "die"), ev(2, 1.0, "docker", "start")], None, Accept, None),
        c("from filter", "monitor m = never log from db where message ~ \"ERROR\"",
          vec![log(1, 0.0, "web", "ERROR x"), log(2, 1.0, "db", "ERROR y")], None, Fail, Some(2)),
        c("nested data and array index", "monitor m = eventually http where data.items[1].name == \"b\" and data.items[-1].n > 2",
          vec![d(1, 0.0, "get", json!({"items": [{"name": "a"}, {"name": "b", "n": 1}]})), d(2, 1.0, "get", json!({"items": [{"name": "a"}, {"name": "b", "n": 3}]}))], None, Accept, Some(2)),
        c("missing field is null", "monitor m = never http where data.nothing.deeper > 0 or data.x == null",
          vec![d(1, 0.0, "get", json!({"x": 1})), d(2, 1.0, "get", json!({"y": 1}))], None, Fail, Some(2)),
        c("index with string key", "monitor m = eventually http where data[\"self-address\"] == \"a\"",
          vec![d(1, 0.0, "get", json!({"self-address": "a"}))], None, Accept, Some(1)),
        c("hyphenated field", "monitor m = eventually http where data.self-address == \"a\"",
          vec![d(1, 0.0, "get", json!({"self-address": "b"})), d(2, 0.5, "get", json!({"self-address": "a"}))], None, Accept, Some(2)),
        c("arithmetic", "monitor m = eventually http where data.a * 2 + 1 == 7 and data.b / 2 == 1.5 and data.a % 2 == 1",
          vec![d(1, 0.0, "get", json!({"a": 2, "b": 3})), d(2, 1.0, "get", json!({"a": 3, "b": 3}))], None, Accept, Some(2)),
        c("in list and not in", "monitor m = never docker where kind in [\"die\", \"kill\"] and service not in [\"batch\"]",
          vec![ev(1, 0.0, "docker", "kill").service("batch"), ev(2, 1.0, "docker", "kill").service("db")], None, Fail, Some(2)),
        c("substring in", "monitor m = eventually log where \"timeout\" in message",
          vec![log(1, 0.0, "a", "ok"), log(2, 1.0, "a", "got a timeout")], None, Accept, Some(2)),
        c("len", "monitor m = eventually http where len(data.xs) == 3 and len(message) == 2",
          vec![d(1, 0.0, "get", json!({"xs": [1, 2, 3]})).message("hi")], None, Accept, Some(1)),
        c("all quantifier", "monitor m = never http where all x in data.xs: x > 1",
          vec![d(1, 0.0, "get", json!({"xs": [1, 2]})), d(2, 1.0, "get", json!({"xs": [2, 3]}))], None, Fail, Some(2)),
        c("any quantifier", "monitor m = eventually http where any x in data.xs: x.ok",
          vec![d(1, 0.0, "get", json!({"xs": [{"ok": false}]})), d(2, 1.0, "get", json!({"xs": [{"ok": false}, {"ok": true}]}))], None, Accept, Some(2)),
        c("count quantifier", "monitor m = eventually http where (count x in data.xs: x > 1) == 2",
          vec![d(1, 0.0, "get", json!({"xs": [1, 2]})), d(2, 1.0, "get", json!({"xs": [1, 2, 3]}))], None, Accept, Some(2)),
        c("if then else", "monitor m = eventually http where (if data.a > 1 then \"big\" else \"small\") == \"big\"",
          vec![d(1, 0.0, "get", json!({"a": 1})), d(2, 1.0, "get", json!({"a": 2}))], None, Accept, Some(2)),
        c("regex", "monitor m = eventually log where message ~ r\"^moving node \\[\\w+\\]\"",
          vec![log(1, 0.0, "a", "moving node [x-y]"), log(2, 1.0, "a", "moving node [xy] now")], None, Accept, Some(2)),
        c("negated regex", "monitor m = always log where message !~ \"ERROR\"",
          vec![log(1, 0.0, "a", "fine"), log(2, 1.0, "a", "ERROR bad")], None, Fail, Some(2)),
        c("capture used in the same guard", "monitor m = eventually log where message ~ r\"code=(?P<code>\\d+)\" and int(code) >= 500",
          vec![log(1, 0.0, "a", "code=404"), log(2, 1.0, "a", "code=503")], None, Accept, Some(2)),
        c("capture used in a later guard",
          "monitor m { state a { on log where message ~ r\"leader is (?P<leader>\\w+)\" => goto b } state b { on log where message ~ r\"leaving: (?P<who>\\w+)\" and who == leader => fail \"the leader left\" } }",
          vec![log(1, 0.0, "a", "leader is n1"), log(2, 1.0, "a", "leaving: n2"), log(3, 2.0, "a", "leaving: n1")], None, Fail, Some(3)),
        c("builtins", "monitor m = eventually log where lower(message) == \"hello world\" and starts_with(message, \"He\") and ends_with(message, \"ld\") and split(message, \" \")[1] == \"World\" and contains(message, \"o W\") and abs(-3) == 3 and max(1, 2) == 2 and min(1, 2) == 1 and str(3) == \"3\" and float(\"1.5\") == 1.5 and bool(\"true\") and is_null(data)",
          vec![log(1, 0.0, "a", "Hello World")], None, Accept, Some(1)),
        c("keys of an object", "monitor m = eventually http where \"b\" in keys(data)",
          vec![d(1, 0.0, "get", json!({"a": 1})), d(2, 1.0, "get", json!({"b": 1}))], None, Accept, Some(2)),
        c("parameter with default and let", "let limit = 3\nmonitor m(n: int = 2) = never http where data.v > n + limit",
          vec![d(1, 0.0, "get", json!({"v": 5})), d(2, 1.0, "get", json!({"v": 6}))], None, Fail, Some(2)),
        c("macro", "def big(x) = x > 10\ndef v = data.v\nmonitor m = eventually http where big(v)",
          vec![d(1, 0.0, "get", json!({"v": 5})), d(2, 1.0, "get", json!({"v": 11}))], None, Accept, Some(2)),
        c("goto with timeout, timeout accepts", "monitor m { state a { on log => goto b timeout 2s } state b { on log where message == \"bad\" => fail on timeout => accept } }",
          vec![log(1, 0.0, "a", "x"), log(2, 1.0, "a", "ok"), log(3, 5.0, "a", "bad")], None, Accept, None),
        c("event exactly at the deadline comes before the timeout", "monitor m { state a { on log => goto b timeout 2s } state b { on log where message == \"bad\" => fail on timeout => accept } }",
          vec![log(1, 0.0, "a", "x"), log(2, 2.0, "a", "bad")], None, Fail, Some(2)),
        c("unhandled timeout fails", "monitor m { state a { on log => goto b timeout 1s } state b { on log where message == \"never\" => accept } }",
          vec![log(1, 0.0, "a", "x"), log(2, 3.0, "a", "y")], None, Fail, None),
        c("state default timeout", "monitor m { state a timeout 1s { on log => accept on timeout => fail \"too slow\" } }",
          vec![ev(1, 0.0, "docker", "x"), log(2, 2.0, "a", "x")], None, Fail, None),
        c("end of trace is inconclusive", "monitor m { state a { on log where message == \"go\" => accept } }",
          vec![log(1, 0.0, "a", "x")], None, Inconclusive, None),
        c("on end accepts", "monitor m { state a { on log where message == \"bad\" => fail on end => accept } }",
          vec![log(1, 0.0, "a", "x")], None, Accept, None),
        c("variables", "monitor m { var n = 0\n state a { on log where n >= 2 => fail \"third line\" on log => set n = n + 1 } }",
          vec![log(1, 0.0, "a", "x"), log(2, 1.0, "a", "y"), log(3, 2.0, "a", "z")], None, Fail, Some(3)),
        c("count window over events", "monitor m { window errs = count(message ~ \"E\") over last 3 events of log\n state a { on log where errs >= 2 => fail on end => accept } }",
          vec![log(1, 0.0, "a", "E1"), log(2, 1.0, "a", "ok"), log(3, 2.0, "a", "ok"), log(4, 3.0, "a", "E2"), log(5, 4.0, "a", "E3")], None, Fail, Some(5)),
        c("mean window", "monitor m { window lat = mean(data.ms) over last 2 events of http\n state a { on http where lat > 100 => fail on end => accept } }",
          vec![d(1, 0.0, "get", json!({"ms": 50})), d(2, 1.0, "get", json!({"ms": 140})), d(3, 2.0, "get", json!({"ms": 170}))], None, Fail, Some(3)),
        c("max and min windows over time", "monitor m { window hi = max(data.ms) over last 2s of http\n window lo = min(data.ms) over last 2s of http\n state a { on http where hi - lo > 50 => fail on end => accept } }",
          vec![d(1, 0.0, "get", json!({"ms": 10})), d(2, 3.0, "get", json!({"ms": 100})), d(3, 4.0, "get", json!({"ms": 120})), d(4, 5.5, "get", json!({"ms": 20}))], None, Fail, Some(4)),
        c("percentile windows", "monitor m { window med = p50(data.ms) over last 4 events of http\n window tail = p999(data.ms) over last 4 events of http\n state a { on http where tail < 1000 and med > 25 => fail on end => accept } }",
          vec![d(1, 0.0, "get", json!({"ms": 10})), d(2, 1.0, "get", json!({"ms": 20})), d(3, 2.0, "get", json!({"ms": 30})), d(4, 3.0, "get", json!({"ms": 1000})), d(5, 4.0, "get", json!({"ms": 40})), d(6, 5.0, "get", json!({"ms": 50})), d(7, 6.0, "get", json!({"ms": 60})), d(8, 7.0, "get", json!({"ms": 70}))], None, Fail, Some(8)),
        c("per-key instances", "monitor m per container = after docker \"die\" expect docker \"start\" within 5s",
          vec![ev(1, 0.0, "docker", "die").container("c1"), ev(2, 1.0, "docker", "die").container("c2"), ev(3, 2.0, "docker", "start").container("c1"), ev(4, 10.0, "docker", "start").container("c2")], None, Fail, None),
        c("per-key all accept", "monitor m per container = after docker \"die\" expect docker \"start\" within 5s",
          vec![ev(1, 0.0, "docker", "die").container("c1"), ev(2, 1.0, "docker", "die").container("c2"), ev(3, 2.0, "docker", "start").container("c1"), ev(4, 3.0, "docker", "start").container("c2")], None, Accept, None),
        c("per key using key", "monitor m per service { state a { on log where message != key => fail \"foreign line\" on end => accept } }",
          vec![log(1, 0.0, "a", "a"), log(2, 1.0, "b", "b"), log(3, 2.0, "b", "a")], None, Fail, Some(3)),
        c("always", "monitor m = always http where data.ok",
          vec![d(1, 0.0, "get", json!({"ok": true})), d(2, 1.0, "get", json!({"ok": false}))], None, Fail, Some(2)),
        c("never accepts at end", "monitor m = never log where message ~ \"panic\"",
          vec![log(1, 0.0, "a", "fine")], None, Accept, None),
        c("eventually within times out", "monitor m = eventually log where message == \"up\" within 2s",
          vec![log(1, 0.0, "a", "x"), log(2, 5.0, "a", "up")], None, Fail, None),
        c("eventually without within is inconclusive", "monitor m = eventually log where message == \"up\"",
          vec![log(1, 0.0, "a", "x")], None, Inconclusive, None),
        c("after expect within", "monitor m = after fault \"pause\" expect log where message ~ \"UNREACHABLE\" within 5s",
          vec![ev(1, 0.0, "fault", "pause"), log(2, 2.0, "a", "Marking node(s) as UNREACHABLE"), ev(3, 10.0, "fault", "pause"), log(4, 20.0, "a", "late UNREACHABLE")], None, Fail, None),
        c("after expect pending at end is inconclusive", "monitor m = after fault \"pause\" expect log where message ~ \"UNREACHABLE\"",
          vec![ev(1, 0.0, "fault", "pause")], None, Inconclusive, None),
        c("stable for", "monitor m = stable for 5s of log",
          vec![ev(1, 0.0, "docker", "x"), log(2, 2.0, "a", "x")], None, Fail, Some(2)),
        c("stable for accepts", "monitor m = stable for 5s of log",
          vec![ev(1, 0.0, "docker", "x"), log(2, 6.0, "a", "x")], None, Accept, None),
        c("not (inversion)", "monitor s(d: duration) = stable for d\nmonitor m = not s(5s)",
          vec![ev(1, 0.0, "docker", "x"), log(2, 2.0, "a", "x")], None, Accept, Some(1)),
        c("and fails with the failing side", "monitor a = never log where message == \"a\"\nmonitor b = never log where message == \"b\"\nmonitor m = a and b",
          vec![log(1, 0.0, "x", "b"), log(2, 1.0, "x", "a")], None, Fail, Some(1)),
        c("or accepts with one side", "monitor a = eventually log where message == \"a\"\nmonitor b = eventually log where message == \"b\"\nmonitor m = a or b",
          vec![log(1, 0.0, "x", "b")], None, Accept, Some(1)),
        c("or of fails fails", "monitor a = never log where message == \"a\"\nmonitor b = never log where message == \"b\"\nmonitor m = a or b",
          vec![log(1, 0.0, "x", "b"), log(2, 1.0, "x", "a")], None, Fail, Some(2)),
        c("at service restricts events", "monitor e(n: str) = eventually log where message == n\nmonitor m = e(\"hi\") at left-a",
          vec![log(1, 0.0, "right-a", "hi"), log(2, 1.0, "left-a", "hi")], None, Accept, Some(2)),
        c("here is the at service", "monitor e = eventually log where message == here\nmonitor m = e at left-a",
          vec![log(1, 0.0, "left-a", "right-a"), log(2, 1.0, "left-a", "left-a")], None, Accept, Some(2)),
        c("variadic parameters", "monitor e(xs: str...) = eventually log where all x in xs: x in message\nmonitor m = e(a, b)",
          vec![log(1, 0.0, "s", "a"), log(2, 1.0, "s", "a b")], None, Accept, Some(2)),
        c("fail message from an expression", "monitor m { state a { on log => fail \"saw \" + message } }",
          vec![log(7, 0.0, "s", "x")], None, Fail, Some(7)),
        c("inconclusive action", "monitor m { state a { on log where message == \"?\" => inconclusive \"cannot tell\" } }",
          vec![log(1, 0.0, "s", "?")], None, Inconclusive, Some(1)),
        c("ts arithmetic with durations", "monitor m { var t0 = null\n state a { on log where message == \"start\" => set t0 = ts, goto b } state b { on log where ts - t0 > 2s => fail \"too late\" on log => accept } }",
          vec![log(1, 0.0, "s", "start"), log(2, 3.0, "s", "x")], None, Fail, Some(2)),
        c("empty trace: never accepts", "monitor m = never log", vec![], Some(0.0), Accept, None),
    ]
}

#[test]
fn table_of_constructs() {
    let mut failures = Vec::new();
    for c in cases() {
        let spec = match compile_str(c.spec) {
            Ok(s) => s,
            Err(e) => {
                failures.push(format!("{}: does not compile:\n{}", c.name, e.render()));
                continue;
            }
        };
        let r = run(
            &spec,
            monitors(&["m"]),
            &c.events,
            c.end.map(|e| T0 + (e * S as f64) as i64),
        );
        let m = &r.monitors[0];
        let seq = m
            .primary_explanation()
            .and_then(|e| e.deciding_event.as_ref())
            .map(|d| d.seq);
        if m.verdict != c.verdict || seq != c.seq {
            failures.push(format!(
                "{}: expected {:?} at seq {:?}, got {:?} at seq {:?}: {:?}",
                c.name,
                c.verdict,
                c.seq,
                m.verdict,
                seq,
                m.primary_explanation().map(|e| &e.reason)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn timeouts_fire_in_trace_time_not_at_event_time() {
    let spec = spec("monitor m { state a { on log => goto b timeout 2s } state b { on timeout => fail \"slow\" } }");
    let r = run(
        &spec,
        monitors(&["m"]),
        &[log(1, 0.0, "a", "x"), log(2, 9.0, "a", "y")],
        None,
    );
    let e = r.monitors[0].explanation.as_ref().expect("explanation");
    assert_eq!(e.decided_ns, Some(T0 + 2 * S));
    let t = e.timeout.as_ref().expect("timeout info");
    assert_eq!(
        (t.state.as_str(), t.armed_ns, t.armed_by_seq),
        ("b", T0, Some(1))
    );
}

/// A timeout re-armed after an earlier one fires at its own deadline, not the earlier one, and
/// a shorter one armed after a longer fires first; the same event by event and fed columns.
#[test]
fn re_armed_timeouts_fire_at_the_last_deadline_armed() {
    let spec = spec(
        r#"
monitor later per seq % 1 {
  state a { on log => goto b timeout 2s }
  state b { on log => goto a  on timeout => fail "slow" }
}
monitor shorter {
  state a { on docker => goto b timeout 5s  on log => goto c timeout 1s }
  state b { on log => goto a  on timeout => fail "long" }
  state c { on timeout => fail "short" }
}
"#,
    );
    let evs = [
        ev(1, 0.0, "docker", "x"),
        log(2, 0.5, "a", "x"),
        log(3, 1.0, "a", "x"),
        log(4, 1.5, "a", "x"),
        log(5, 9.0, "a", "x"),
    ];
    let by_event = run(&spec, monitors(&[]), &evs, None);
    let mut r = monitor::Runner::new(&spec, &monitors(&[])).expect("runner");
    assert!(r.feeds_columns());
    let b = trace::schema::events_to_log_batch(evs.iter());
    r.observe_events(&trace::EventBatch::from_arrow(&b).expect("batch"));
    let by_columns = r.finish(T0 + 9 * S);
    for report in [&by_event, &by_columns] {
        let got: Vec<_> = report
            .monitors
            .iter()
            .map(|m| {
                let e = m.explanation.as_ref().expect("explanation");
                let t = e.timeout.as_ref().expect("a timeout decided");
                (
                    m.name.as_str(),
                    m.verdict,
                    e.reason.as_str(),
                    e.decided_ns,
                    t.armed_ns,
                    t.armed_by_seq,
                )
            })
            .collect();
        // `later` (logs only): b entered at 0.5 (seq 2), left at 1.0, entered again at 1.5
        // (seq 4): the timeout armed first (due at 2.5) is gone, the one of 1.5 fires at 3.5
        // `shorter`: b's 5 s timeout (from 0.0) is gone at 0.5, c's 1 s one (from 1.0) fires
        assert_eq!(
            got,
            vec![
                (
                    "later",
                    Fail,
                    "slow",
                    Some(T0 + 7 * S / 2),
                    T0 + 3 * S / 2,
                    Some(4)
                ),
                ("shorter", Fail, "short", Some(T0 + 2 * S), T0 + S, Some(3)),
            ]
        );
    }
}

#[test]
fn experiment_do_steps_are_exposed_as_data() {
    let spec = spec(
        "monitor up = eventually log\nexperiment x {\n expect up at a within 5s\n do kill(signal: \"SIGKILL\") on random [left-b, right-b]\n do loss(percent: 30) on network middle for 10s\n do partition between [a, b] and [c]\n do partition from [a] to [b]\n do pause on container c1\n note \"hi\"\n}",
    );
    let e = spec.experiment("x").expect("experiment");
    use monitor::{FaultTarget, Literal, Step};
    let calls: Vec<_> = e
        .steps
        .iter()
        .filter_map(|s| if let Step::Do(f) = s { Some(f) } else { None })
        .collect();
    assert_eq!(calls[0].action, "kill");
    assert_eq!(
        calls[0].args,
        vec![("signal".to_string(), Literal::Str("SIGKILL".into()))]
    );
    assert_eq!(
        calls[0].target,
        FaultTarget::Random(vec!["left-b".into(), "right-b".into()])
    );
    assert_eq!(calls[1].target, FaultTarget::Network("middle".into()));
    assert_eq!(calls[1].duration, Some(std::time::Duration::from_secs(10)));
    assert_eq!(
        calls[1].args,
        vec![("percent".to_string(), Literal::Int(30))]
    );
    assert_eq!(
        calls[2].target,
        FaultTarget::Between(vec!["a".into(), "b".into()], vec!["c".into()])
    );
    assert_eq!(
        calls[3].target,
        FaultTarget::FromTo(vec!["a".into()], vec!["b".into()])
    );
    assert_eq!(calls[4].target, FaultTarget::Container("c1".into()));
    assert_eq!(calls[0].span.line, 4);
    assert!(
        matches!(&e.steps[0], Step::Expect(x) if x.within == Some(std::time::Duration::from_secs(5)))
    );
    assert!(matches!(&e.steps[6], Step::Note(n) if n == "hi"));
}

#[test]
fn live_step_decides_as_soon_as_possible_and_times_out() {
    let spec = spec("monitor up = eventually log where message == \"up\"\nexperiment x { expect up at a within 5s }");
    let monitor::Step::Expect(step) = &spec.experiment("x").expect("x").steps[0] else {
        panic!("not an expect step")
    };
    let mut live = monitor::LiveStep::new(step);
    live.start(T0);
    live.observe(&log(1, 1.0, "b", "up").as_ref());
    assert_eq!(live.verdict(), None);
    live.observe(&log(2, 2.0, "a", "up").as_ref());
    assert_eq!(live.verdict(), Some(Accept));
    let mut late = monitor::LiveStep::new(step);
    late.start(T0);
    late.advance_to(T0 + 5 * S);
    assert_eq!(late.verdict(), None, "the limit is reached, not passed");
    late.advance_to(T0 + 5 * S + 1);
    assert_eq!(late.verdict(), Some(Fail));
}

#[test]
fn an_earlier_faults_revert_does_not_close_the_window_before_the_same_fault_again() {
    let spec = spec("monitor saw(x: str) = eventually log where message == x\nexperiment e {\n do pause on s1 for 1s\n expect saw(\"a\")\n do pause on s1\n expect saw(\"b\")\n}");
    // the first pause is reverted while `saw("a")` waits; the second pause comes after "a"
    let evs = vec![
        fault(1, 0.0, "pause", &["s1"], &[], "applied"),
        fault(2, 1.0, "pause", &["s1"], &[], "reverted"),
        log(3, 2.0, "s", "a"),
        fault(4, 3.0, "pause", &["s1"], &[], "applied"),
        log(5, 4.0, "s", "b"),
    ];
    let r = run(&spec, experiment("e"), &evs, None);
    assert_eq!(
        r.experiments[0].verdict, Accept,
        "{:?}",
        r.experiments[0].steps
    );
}

#[test]
fn expect_window_ends_at_the_next_recorded_fault() {
    let spec = spec("monitor saw(x: str) = eventually log where message == x\nexperiment e {\n expect saw(\"a\")\n do pause on s1\n expect saw(\"b\")\n}");
    // "a" only after the pause: the first window closes undecided at the fault -> inconclusive
    let evs = vec![
        log(1, 0.0, "s", "z"),
        fault(2, 1.0, "pause", &["s1"], &[], "applied"),
        log(3, 2.0, "s", "a"),
    ];
    let r = run(&spec, experiment("e"), &evs, None);
    assert_eq!(r.experiments[0].verdict, Inconclusive);
    assert!(r.experiments[0].steps[0]
        .reason
        .as_deref()
        .unwrap_or("")
        .contains("undecided when the next fault"));
    // in order: accepted, fault matched, accepted
    let evs = vec![
        log(1, 0.0, "s", "a"),
        fault(2, 1.0, "pause", &["s1"], &[], "applied"),
        log(3, 2.0, "s", "b"),
    ];
    let r = run(&spec, experiment("e"), &evs, None);
    assert_eq!(r.experiments[0].verdict, Accept);
    // "b" before the fault does not count for the step after it
    let evs = vec![
        log(1, 0.0, "s", "a"),
        log(2, 0.5, "s", "b"),
        fault(3, 1.0, "pause", &["s1"], &[], "applied"),
    ];
    let r = run(&spec, experiment("e"), &evs, None);
    assert_eq!(r.experiments[0].verdict, Inconclusive);
    // a fault recorded as failed makes the experiment inconclusive
    let evs = vec![
        log(1, 0.0, "s", "a"),
        fault(2, 1.0, "pause", &["s1"], &[], "failed"),
    ];
    let r = run(&spec, experiment("e"), &evs, None);
    assert_eq!(r.experiments[0].verdict, Inconclusive);
    assert!(r.experiments[0]
        .reason
        .as_deref()
        .unwrap_or("")
        .contains("failed: boom"));
    // a fault on another target does not match
    let evs = vec![
        log(1, 0.0, "s", "a"),
        fault(2, 1.0, "pause", &["s2"], &[], "applied"),
        log(3, 2.0, "s", "b"),
    ];
    let r = run(&spec, experiment("e"), &evs, None);
    assert_eq!(r.experiments[0].verdict, Inconclusive);
}

/// A `restart` whose apply took 2 s (the stop waited out the grace period): recorded at its
/// start (`ts_ns` = `started_ns`, 1 s), done at `ended_ns` (3 s).
fn slow_restart(seq: u64) -> Event {
    ev(seq, 1.0, "fault", "restart")
        .service("app")
        .message("f1 restart on app applied")
        .data(&json!({
            "fault_id": "f1", "phase": "applied", "experiment": "e", "step": 0,
            "target": {"services": ["app"], "containers": ["p-app-1"], "networks": []},
            "params": {}, "intended_ns": T0 + S, "started_ns": T0 + S, "ended_ns": T0 + 3 * S,
            "error": null
        }))
}

/// The step after a `do` starts when the fault is done (its `ended_ns`), not when it started:
/// the old process answering while the restart waited for it to stop is not the system after
/// the restart.
#[test]
fn the_step_after_a_do_starts_when_the_fault_is_done() {
    let spec = spec(
        "monitor firstAnswer = eventually http where data.status == 200
         monitor downFirst { state s { on http where data.status != 200 => accept  on http => fail \"answered before going down\" } }
         experiment e {
 do restart on app
 expect downFirst
 expect firstAnswer within 3s
}",
    );
    let http = |seq: u64, secs: f64, status: i64| {
        ev(seq, secs, "http", "probe")
            .service("app")
            .data(&json!({ "status": status }))
    };
    let evs = vec![
        slow_restart(1),
        http(2, 1.5, 200), // the old process, still answering during the stop
        http(3, 2.5, 200),
        http(4, 3.5, 0), // down after the restart
        http(5, 5.0, 200),
    ];
    let r = run(&spec, experiment("e"), &evs, None);
    let x = &r.experiments[0];
    assert_eq!(x.verdict, Accept, "{x:#?}");
    // the `do` ends, and the next step starts, at the fault's end
    assert_eq!(x.steps[0].end_ns, Some(T0 + 3 * S));
    assert_eq!(x.steps[1].start_ns, Some(T0 + 3 * S));
    assert!(
        x.steps[0]
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("applied by"),
        "{:?}",
        x.steps[0].reason
    );
    // `within` counts from the end too: an answer 2.9 s after the start but 4 s after the
    // fault event is in time
    let evs = vec![slow_restart(1), http(2, 3.2, 0), http(3, 5.0, 200)];
    let r = run(&spec, experiment("e"), &evs, None);
    assert_eq!(r.experiments[0].verdict, Accept, "{:#?}", r.experiments[0]);
    // a record without `ended_ns` (older recorders): the step starts at the event
    let mut old = slow_restart(1);
    old.data = Some(
        old.data
            .unwrap_or_default()
            .replace(&format!("\"ended_ns\":{}", T0 + 3 * S), "\"ended_ns\":null"),
    );
    let r = run(&spec, experiment("e"), &[old, http(2, 1.5, 200)], None);
    assert_eq!(r.experiments[0].verdict, Fail, "{:#?}", r.experiments[0]);
}

/// `after fault ... expect Q within D`: the window opens when the fault is done, so what the old
/// process did while the restart waited for it cannot satisfy Q, and `D` counts from the end.
#[test]
fn after_a_fault_the_response_window_opens_when_the_fault_is_done() {
    let spec = spec(
        "monitor answersAfterRestart = after fault \"restart\" expect http where data.status == 200 within 2s",
    );
    let http = |seq: u64, secs: f64, status: i64| {
        ev(seq, secs, "http", "probe")
            .service("app")
            .data(&json!({ "status": status }))
    };
    // only the old process answered (at 1.5 s, during the apply): no answer by 3 s + 2 s
    let evs = vec![
        slow_restart(1),
        http(2, 1.5, 200),
        http(3, 3.5, 0),
        http(4, 6.0, 200),
    ];
    let r = run(&spec, monitors(&["answersAfterRestart"]), &evs, None);
    let m = &r.monitors[0];
    assert_eq!(m.verdict, Fail, "{m:#?}");
    let t = m
        .explanation
        .as_ref()
        .and_then(|e| e.timeout.clone())
        .expect("a timeout decided");
    assert_eq!((t.armed_ns, t.deadline_ns), (T0 + 3 * S, T0 + 5 * S));
    // an answer 4 s after the fault event but 1.5 s after it was done is in time
    let evs = vec![slow_restart(1), http(2, 4.5, 200), http(3, 8.0, 0)];
    let r = run(&spec, monitors(&["answersAfterRestart"]), &evs, None);
    assert_eq!(r.monitors[0].verdict, Accept, "{:#?}", r.monitors[0]);
}

/// A fault event the recorder wrote for step `step` of experiment `exp` (`None`: a scheduled
/// fault, `experiment` and `step` null).
fn step_fault(seq: u64, secs: f64, action: &str, service: &str, id: Option<(&str, u64)>) -> Event {
    ev(seq, secs, "fault", action)
        .service(service)
        .message(format!("{action} {service}"))
        .data(&json!({
            "fault_id": format!("f{seq}"), "phase": "applied",
            "experiment": id.map(|i| i.0), "step": id.map(|i| i.1),
            "target": {"services": [service], "containers": [], "networks": []},
            "params": {}, "intended_ns": 0, "started_ns": 0, "ended_ns": 0, "error": null
        }))
}

/// A `do` matched to its recorded fault by its identity (experiment, step) whose arguments or
/// target differ from the record is accepted with a warning saying what differs.
#[test]
fn an_edited_do_step_is_accepted_with_a_warning() {
    let loss = |seq: u64, percent: f64| {
        ev(seq, 1.0, "fault", "loss").data(&json!({
            "fault_id": "f1", "phase": "applied", "experiment": "e", "step": 0,
            "target": {"services": ["s1", "s2"], "containers": [], "networks": ["middle"]},
            "params": {"probability": percent / 100.0, "percent": percent, "direction": "egress"},
            "intended_ns": 0, "started_ns": T0 + S, "ended_ns": T0 + S, "error": null
        }))
    };
    let judge = |text: &str| {
        let spec = spec(text);
        let r = run(&spec, experiment("e"), &[loss(1, 30.0)], None);
        let x = r.experiments[0].clone();
        assert_eq!(x.verdict, Accept, "{x:#?}");
        x.steps[0].warnings.clone()
    };
    // as recorded: no warning
    assert!(judge("experiment e {\n do loss(percent: 30) on network middle\n}").is_empty());
    let w =
        judge("experiment e {\n do loss(percent: 50, direction: \"egress\") on network middle\n}");
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("argument `percent` differs (recorded: 30.0)"),
        "{w:?}"
    );
    assert!(w[0].contains("(seq 1: f1 loss)"), "{w:?}");
    let w = judge("experiment e {\n do loss(percent: 30) on network outer\n}");
    assert!(
        w.len() == 1
            && w[0].contains("the target differs (recorded: services [s1, s2], networks [middle])"),
        "{w:?}"
    );
}

#[test]
fn do_steps_match_faults_by_experiment_and_step_first() {
    let spec = spec("monitor saw(x: str) = eventually log where message == x\nexperiment e {\n expect saw(\"a\")\n do pause on s1\n expect saw(\"b\")\n do pause on s1\n expect saw(\"c\")\n}");
    let judge = |evs: Vec<Event>| {
        let r = run(&spec, experiment("e"), &evs, None);
        let x = &r.experiments[0];
        let faults: Vec<Option<u64>> = x
            .steps
            .iter()
            .filter(|s| s.kind == "do")
            .map(|s| s.fault.as_ref().map(|f| f.seq))
            .collect();
        (x.verdict, faults)
    };
    // identity filled by the recorder: steps 1 and 3 (0-based) matched to their own records
    assert_eq!(
        judge(vec![
            log(1, 0.0, "s", "a"),
            step_fault(2, 1.0, "pause", "s1", Some(("e", 1))),
            log(3, 2.0, "s", "b"),
            step_fault(4, 3.0, "pause", "s1", Some(("e", 3))),
            log(5, 4.0, "s", "c"),
        ]),
        (Accept, vec![Some(2), Some(4)])
    );
    // a record of another experiment (a trace re-judged against a different experiment) is
    // matched by action and target: the pause of s1 is this step's, a pause of s2 is not
    assert_eq!(
        judge(vec![
            log(1, 0.0, "s", "a"),
            step_fault(2, 1.0, "pause", "s2", Some(("other", 1))),
            step_fault(3, 1.5, "pause", "s1", Some(("other", 4))),
            log(4, 2.0, "s", "b"),
        ]),
        (Inconclusive, vec![Some(3), None])
    );
    // a record naming another step of this experiment (the experiment was edited since the
    // trace was recorded, shifting step indices) falls back to action + target: it satisfies
    // step 1, and step 3 then has no record of its own
    assert_eq!(
        judge(vec![
            log(1, 0.0, "s", "a"),
            step_fault(2, 1.0, "pause", "s1", Some(("e", 3))),
            log(3, 2.0, "s", "b"),
        ]),
        (Inconclusive, vec![Some(2), None])
    );
    // ... but not when its target differs: then it is no record of step 1
    assert_eq!(
        judge(vec![
            log(1, 0.0, "s", "a"),
            step_fault(2, 1.0, "pause", "s2", Some(("e", 3))),
            log(3, 2.0, "s", "b"),
        ]),
        (Inconclusive, vec![None, None])
    );
    // the identity wins over the target: the recorder's record of step 1 matches even if its
    // target lists other services (e.g. a resolved random target)
    assert_eq!(
        judge(vec![
            log(1, 0.0, "s", "a"),
            step_fault(2, 1.0, "pause", "s9", Some(("e", 1))),
            log(3, 2.0, "s", "b"),
            step_fault(4, 3.0, "pause", "s1", None),
            log(5, 4.0, "s", "c"),
        ]),
        (Accept, vec![Some(2), Some(4)])
    );
    // no identity (null experiment/step): falls back to action + target
    assert_eq!(
        judge(vec![
            log(1, 0.0, "s", "a"),
            step_fault(2, 1.0, "pause", "s2", None),
            step_fault(3, 1.5, "pause", "s1", None),
            log(4, 2.0, "s", "b"),
            step_fault(5, 3.0, "unpause", "s1", None),
            step_fault(6, 3.5, "pause", "s1", None),
            log(7, 4.0, "s", "c"),
        ]),
        (Accept, vec![Some(3), Some(6)])
    );
}

#[test]
fn fault_matches_step_prefers_identity() {
    let spec = spec("experiment e {\n do pause on s1\n}");
    let monitor::Step::Do(call) = &spec.experiment("e").expect("e").steps[0] else {
        panic!("not a do step")
    };
    let check = |e: &Event| {
        let data: Option<serde_json::Value> =
            e.data.as_deref().and_then(|d| serde_json::from_str(d).ok());
        monitor::fault_matches_step("e", 0, call, &e.as_ref(), data.as_ref())
    };
    assert_eq!(
        check(&step_fault(1, 0.0, "pause", "s1", Some(("e", 0)))).as_deref(),
        Some("applied")
    );
    assert_eq!(
        check(&step_fault(1, 0.0, "pause", "zz", Some(("e", 0)))).as_deref(),
        Some("applied")
    );
    // another step's record: action + target decide
    assert_eq!(
        check(&step_fault(1, 0.0, "pause", "s1", Some(("e", 1)))).as_deref(),
        Some("applied")
    );
    assert_eq!(
        check(&step_fault(1, 0.0, "pause", "s2", Some(("e", 1)))),
        None
    );
    // recorded for another experiment: action + target
    assert_eq!(
        check(&step_fault(1, 0.0, "pause", "s1", Some(("f", 7)))).as_deref(),
        Some("applied")
    );
    assert_eq!(
        check(&step_fault(1, 0.0, "pause", "s2", Some(("f", 0)))),
        None
    );
    assert_eq!(
        check(&step_fault(1, 0.0, "kill", "s1", Some(("e", 0)))),
        None
    );
    assert_eq!(
        check(&step_fault(1, 0.0, "pause", "s1", None)).as_deref(),
        Some("applied")
    );
    assert_eq!(check(&step_fault(1, 0.0, "pause", "s2", None)), None);
}

/// A recorder step event for experiment `e`.
fn step_event(seq: u64, secs: f64, step: u64, phase: &str) -> Event {
    ev(seq, secs, "recorder", "step").data(&json!({
        "experiment": "e", "step": step, "step_kind": "expect", "phase": phase, "verdict": null
    }))
}

#[test]
fn recorded_experiment_is_judged_from_the_recorders_start() {
    let spec = spec(
        "monitor saw(x: str) = eventually log where message == x\nexperiment e {\n expect saw(\"go\") within 2s\n}",
    );
    let judge = |events: &[Event], recorded: bool| {
        let mut r = monitor::Runner::new(&spec, &experiment("e")).expect("runner");
        if recorded {
            r.recorded_experiment("e");
        }
        for e in events {
            r.observe(&e.as_ref());
        }
        let end = events.last().map(|e| e.ts_ns).unwrap_or(T0);
        let x = r.finish(end);
        let x = &x.experiments[0];
        (x.verdict, x.steps[0].start_ns, x.reason.clone())
    };
    // `go` printed while the system came up, before the recorder started the experiment; the
    // expectation is not met afterwards within 2s: live this failed, offline it must too
    let evs = vec![
        log(1, 0.0, "a", "go"),
        log(2, 5.0, "a", "booting"),
        step_event(3, 10.0, 0, "start"),
        log(4, 11.0, "a", "other"),
        log(5, 13.0, "a", "late"),
    ];
    let (v, start, _) = judge(&evs, true);
    assert_eq!((v, start), (Fail, Some(T0 + 10 * S)));
    // judged from the first event of the trace (a trace of another experiment), `go` counts
    let (v, start, _) = judge(&evs, false);
    assert_eq!((v, start), (Accept, Some(T0)));
    // recorded for this experiment but the start event is missing: nothing is judged
    let (v, _, why) = judge(&evs[..2], true);
    assert_eq!(v, Inconclusive);
    assert!(why
        .unwrap_or_default()
        .contains("no recorder event starting it"));
}
