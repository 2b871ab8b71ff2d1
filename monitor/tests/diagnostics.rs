//! Snapshot tests of diagnostics: every error of a spec at once, rendered like a compiler (file,
//! line, column, the source line with a marker, a hint). Golden files live in tests/snapshots;
//! run with UPDATE_SNAPSHOTS=1 to rewrite them after an intended change.

mod common;
use common::*;
use std::path::Path;

fn golden(name: &str, actual: &str) {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(name);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() || !p.exists() {
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, actual).expect("write snapshot");
        if std::env::var_os("UPDATE_SNAPSHOTS").is_none() {
            panic!(
                "snapshot {} was missing and has been written; check it and rerun",
                p.display()
            );
        }
    }
    let want = std::fs::read_to_string(&p).expect("read snapshot");
    assert_eq!(
        actual,
        want,
        "snapshot {} differs (UPDATE_SNAPSHOTS=1 to accept)",
        p.display()
    );
}

const BAD: &str = r#"# every line below has one mistake
let nodes = [left-a, left-b]
monitor m(n: int) {
  var count = 0
  state forming {
    on jmx where len(data.members) > "3" => goto stabel
    on log where messge ~ "x" => set cnt = 1
    on log where message ~ "(unclosed" => accept
    on docker where frobnicate(kind) => fail
  }
  state stable timeout 5 {
    on timeout => accept
  }
}
monitor ok = inClutser(left-a) at left-a
experiment e {
  expect m("three") within 10s
  do pause on right-a for 3
}
"#;

#[test]
fn all_errors_are_reported_at_once() {
    let d = compile_str(BAD).expect_err("the spec is wrong");
    golden("all_errors.txt", &d.render());
    assert!(d.0.len() >= 9, "{}", d.render());
}

#[test]
fn syntax_errors_recover_at_the_next_item() {
    let d = compile_str("monitor a { state s { on log => } }\nmonitor b = never log where\nmonitor c = never log where message == 1 +\n").expect_err("syntax errors");
    golden("syntax_errors.txt", &d.render());
    assert_eq!(d.0.len(), 3, "{}", d.render());
}

/// A monitor whose declaration does not parse is still declared: its uses are not reported as
/// unknown monitors, only its syntax error is.
#[test]
fn a_monitor_that_failed_to_parse_is_known_by_name() {
    let text = "monitor healthyFor(d: duration) { state s { on http where => accept } }\n\
                monitor both = healthyFor(5s) and healthyFor(10s)\n\
                experiment e {\n  expect healthyFor(5s)\n  expect healthyFor(1s) within 3s\n  expect healthyFor(2s) or both\n}\n";
    let d = compile_str(text).expect_err("syntax error");
    assert_eq!(d.0.len(), 1, "{}", d.render());
    assert_eq!(d.0[0].line, 1, "{}", d.render());
    assert!(d.0[0].message.starts_with("expected"), "{}", d.render());
    // a monitor never declared is still unknown
    let d =
        compile_str("monitor m = never log where\nmonitor n = nope and m\n").expect_err("errors");
    let msgs: Vec<&str> = d.0.iter().map(|x| x.message.as_str()).collect();
    assert_eq!(msgs.len(), 2, "{}", d.render());
    assert_eq!(msgs[1], "unknown monitor `nope`", "{}", d.render());
}

/// Every diagnostic has one format: `error: FILE:LINE:COL: message`, then the source excerpt.
#[test]
fn the_diagnostic_format() {
    let d = compile_str(
        "monitor m {\n  state a {\n    on log where mesage == \"x\" => accept\n  }\n}\n",
    )
    .expect_err("unknown name");
    assert_eq!(
        d.0[0].to_string(),
        "error: test.spec:3:18: unknown name `mesage`\n  |\n3 |     on log where mesage == \"x\" => accept\n  |                  ^^^^^^\n  = hint: did you mean `message`?"
    );
    assert_eq!(d.render().lines().last(), Some("1 error in spec"));
}

#[test]
fn explanation_snapshot() {
    let spec = spec("monitor m { state idle { on log where message ~ r\"start (?P<job>\\w+)\" => goto running timeout 5s } state running { on log where message ~ r\"error in (?P<place>\\w+)\" and place == job => fail \"job \" + job + \" failed\" on timeout => accept } }");
    let evs = vec![
        log(1, 0.0, "w", "start build"),
        log(2, 1.0, "w", "error in test"),
        log(3, 2.0, "w", "error in build"),
    ];
    let r = run(&spec, monitors(&["m"]), &evs, None);
    let json = serde_json::to_string_pretty(&r.monitors[0]).expect("json");
    golden("explanation.json", &json);
}
