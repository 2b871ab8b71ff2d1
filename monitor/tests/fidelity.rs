//! What explanations tell must be what happened: sequential `set` assignments (each right-hand
//! side and the message see the ones before), the children of an `or`/`and` decided early shown
//! as they stood at the decision, and an accepted `and` (in an `expect` too) giving every part's
//! reason.

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
