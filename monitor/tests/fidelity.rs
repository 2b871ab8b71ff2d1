//! What explanations tell must be what happened: sequential `set` assignments (each right-hand
//! side and the message see the ones before), the children of an `or`/`and` decided early shown
//! as they stood at the decision, an accepted `and` (in an `expect` too) giving every part's
//! reason, and a long path's last transitions in order with their events.

mod common;
use common::*;
use monitor::Verdict;

#[test]
fn set_assignments_are_sequential_and_the_message_sees_them() {
    let s = spec(
        r#"
monitor m {
  var a = 0
  var b = 0
  state s {
    on log where message == "tick" => set a = a + 1, set b = a * 10, fail "a=" + str(a) + " b=" + str(b)
  }
}
"#,
    );
    let r = run(&s, monitors(&["m"]), &[log(1, 0.0, "x", "tick")], None);
    let e = r.monitors[0].explanation.as_ref().expect("explanation");
    assert_eq!(r.monitors[0].verdict, Verdict::Fail);
    assert_eq!(e.reason, "a=1 b=10");
}

#[test]
fn set_assignments_carry_to_the_next_event() {
    let s = spec(
        r#"
monitor m {
  var a = 0
  var b = 0
  state s {
    on log where message == "tick" => set a = a + 1, set b = b + a
    on log where message == "check" and b == 3 => accept "b=" + str(b)
    on log where message == "check" => fail "b=" + str(b)
  }
}
"#,
    );
    let evs = [
        log(1, 0.0, "x", "tick"),
        log(2, 1.0, "x", "tick"),
        log(3, 2.0, "x", "check"),
    ];
    let r = run(&s, monitors(&["m"]), &evs, None);
    // b = 1 after the first tick, 1 + 2 after the second
    assert_eq!(
        r.monitors[0].verdict,
        Verdict::Accept,
        "{:?}",
        r.monitors[0]
    );
}

const OR_SPEC: &str = r#"
monitor b = never log where message == "bad"
monitor c = eventually log where message == "good"
monitor both = b or c
monitor one = eventually log where message == "one"
monitor two = eventually log where message == "two"
monitor three = eventually log where message == "three"
monitor all3 = one and two and three
"#;

#[test]
fn or_children_show_their_state_at_the_decision() {
    let s = spec(OR_SPEC);
    let evs = [
        log(1, 0.0, "x", "good"),
        log(2, 5.0, "x", "bad"),
        log(3, 9.0, "x", "later"),
    ];
    let r = run(&s, monitors(&["both"]), &evs, None);
    let m = &r.monitors[0];
    assert_eq!(m.verdict, Verdict::Accept);
    let b = &m.children[0];
    let c = &m.children[1];
    assert_eq!(c.verdict, Verdict::Accept);
    // b had not decided at 0 s (the `bad` line came later, after judging stopped): it is not
    // "trace ended in state watching, which accepts at the end", nor a fail at seq 2.
    let e = b.explanation.as_ref().expect("b explained");
    assert_eq!(b.verdict, Verdict::Inconclusive, "{b:?}");
    assert!(!e.reason.contains("trace ended"), "{}", e.reason);
    assert!(e.reason.contains("had not decided when"), "{}", e.reason);
    assert_eq!(e.decided_ns, Some(T0), "{e:?}");
    assert!(e.deciding_event.is_none(), "{e:?}");
    assert!(
        e.pending
            .as_deref()
            .unwrap_or("")
            .contains("in state `watching`"),
        "{e:?}"
    );
}

#[test]
fn accepted_and_reports_every_parts_reason() {
    let s = spec(OR_SPEC);
    let evs = [
        log(1, 0.0, "x", "two"),
        log(2, 1.0, "x", "three"),
        log(3, 2.0, "x", "one"),
    ];
    let r = run(&s, monitors(&["all3"]), &evs, None);
    let m = &r.monitors[0];
    assert_eq!(m.verdict, Verdict::Accept);
    let e = m.primary_explanation().expect("explanation");
    // three parts, each with its own reason and deciding seq
    for w in ["one", "two", "three"] {
        assert!(e.reason.contains(&format!("`{w}`: ")), "{w}: {}", e.reason);
    }
    // the details are those of the part that decided last
    assert_eq!(e.deciding_event.as_ref().map(|d| d.seq), Some(3), "{e:?}");
}

#[test]
fn accepted_and_in_an_expect_reports_every_part() {
    let s = spec(&format!(
        "{OR_SPEC}\nexperiment E {{\n  expect one and two within 10s\n}}\n"
    ));
    let evs = [log(1, 0.0, "x", "two"), log(2, 1.0, "x", "one")];
    let r = run(&s, experiment("E"), &evs, None);
    let step = &r.experiments[0].steps[0];
    assert_eq!(step.verdict, Some(Verdict::Accept));
    let reason = step.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("`one`") && reason.contains("`two`"),
        "{reason}"
    );
}

#[test]
fn accepted_and_does_not_flatten_an_or_operand() {
    let s = spec(&format!(
        "{OR_SPEC}\nmonitor mixed = one and (two or three)\n"
    ));
    let evs = [log(1, 0.0, "x", "two"), log(2, 1.0, "x", "one")];
    let r = run(&s, monitors(&["mixed"]), &evs, None);
    let m = &r.monitors[0];
    assert_eq!(m.verdict, Verdict::Accept);
    let e = m.primary_explanation().expect("explanation");
    // two parts: `one`, and the `or` (with the reason of its accepting side)
    assert!(e.reason.starts_with("`one`: "), "{}", e.reason);
    assert!(e.reason.contains("; `(two or three)`: "), "{}", e.reason);
    assert!(!e.reason.contains("`three`"), "{}", e.reason);
}

/// A failing instance shows its last 32 transitions, oldest first, each with the event that
/// caused it, however many it made before: the ring of path entries wraps without losing its
/// order, and an instance's `set`s and moves on plain handlers are those of the generic
/// evaluator.
#[test]
fn a_long_path_shows_its_last_transitions_in_order_with_their_events() {
    let s = spec(
        r#"
monitor m per service {
  var n = 0
  state a {
    on log where message == "go" => set n = n + 1, goto b
    on log where message == "stop" => fail "n=" + str(n)
  }
  state b {
    on log where message == "go" => set n = n + 1, goto a
    on log where message == "stop" => fail "n=" + str(n)
  }
}
"#,
    );
    for moves in [3u64, 31, 32, 33, 70] {
        let mut events = Vec::new();
        let mut seq = 0;
        for i in 0..moves {
            // another key's events between, in their own instance
            seq += 1;
            events.push(log(seq, i as f64, "x", "go"));
            seq += 1;
            events.push(log(seq, i as f64 + 0.5, "y", "go"));
        }
        seq += 1;
        events.push(log(seq, moves as f64, "x", "stop"));
        let r = run(&s, Default::default(), &events, None);
        let m = &r.monitors[0];
        assert_eq!(m.verdict, Verdict::Fail, "{moves} moves");
        let x = m.explanation.as_ref().expect("explanation");
        assert_eq!(x.reason, format!("n={moves}"), "{moves} moves");
        let shown = moves.min(32);
        assert_eq!(x.path.len() as u64, shown, "{moves} moves");
        for (k, t) in x.path.iter().enumerate() {
            // x's i-th move is caused by event 2i+1 (seq), at +i s
            let i = moves - shown + k as u64;
            let (from, to) = if i.is_multiple_of(2) {
                ("a", "b")
            } else {
                ("b", "a")
            };
            assert_eq!(
                (t.from.as_str(), t.to.as_str()),
                (from, to),
                "{moves} moves, {k}"
            );
            assert_eq!(t.seq, Some(2 * i + 1), "{moves} moves, {k}");
            let e = t.event.as_ref().expect("the event of a move");
            assert_eq!(
                (e.seq, e.ts_ns, e.service.as_deref(), e.excerpt.as_str()),
                (2 * i + 1, T0 + i as i64 * S, Some("x"), "go"),
                "{moves} moves, {k}"
            );
        }
    }
}
