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
