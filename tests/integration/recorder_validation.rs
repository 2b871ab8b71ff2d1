//! `recorder check` reports every mistake of a scenario and its specs at once, in file order, in
//! the one diagnostic format of both binaries (`error: FILE:LINE:COL: message` and the source
//! excerpt). Needs the compose CLI (it reads the compose configuration), not running containers.

use integration_tests::{bin, require_docker, unique_project, DEMO_IMAGE};

#[test]
fn recorder_check_reports_every_error_once_in_file_order() {
    require_docker!();
    let d = tempfile::tempdir().expect("tempdir");
    let compose = format!(
        "services:\n  app:\n    image: {DEMO_IMAGE}\n    networks: [front]\n  db:\n    image: {DEMO_IMAGE}\n    networks: [front]\nnetworks:\n  front: {{}}\n"
    );
    std::fs::write(d.path().join("compose.yml"), compose).expect("write compose");
    // a monitor with a syntax error, used three times (the spec does not compile, so its `do`
    // steps are not checked)
    std::fs::write(
        d.path().join("x.spec"),
        "monitor healthyFor(d: duration) { state s { on http where => accept } }\nexperiment E {\n  expect healthyFor(5s)\n  do pause on dbx\n  expect healthyFor(1s) within 3s\n  expect healthyFor(2s)\n}\n",
    )
    .expect("write spec");
    let project = unique_project("validation");
    let text = format!(
        r#"# a user's first scenario
time_limit = "1x"

[compose]
files = ["compose.yml"]
project = "{project}"

[experiment]
specs = ["x.spec"]
name = "E"

[[sensors.http]]
service = "app"
port = 8080
interval = "1s"
intervall = "2s"

[[sensors.exec]]
service = "web"
cmd = ["true"]

[sensors.pcap]
services = ["db"]
networks = ["frnt"]
snaplen = 96
filter = "tcp"
"#
    );
    let scenario = d.path().join("scenario.toml");
    std::fs::write(&scenario, text).expect("write scenario");
    let out = std::process::Command::new(bin("recorder"))
        .arg("check")
        .arg(&scenario)
        .output()
        .expect("run recorder check");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(3), "{err}");
    let s = scenario.display().to_string();
    let spec = d.path().join("x.spec").display().to_string();
    // every diagnostic's first line, in order
    let heads: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    let want = [
        format!("error: {s}:2:14: bad duration `1x`"),
        format!("error: {s}:16:1: unknown field `intervall`"),
        format!("error: {s}:19:11: exec sensor: no service `web`"),
        format!("error: {s}:24:13: pcap sensor: no network `frnt`"),
        format!("error: {s}:26:1: unknown field `filter`"),
        format!("error: {spec}:1:59: expected an expression, found `=>`"),
    ];
    assert_eq!(heads.len(), want.len(), "{err}");
    for (h, w) in heads.iter().zip(&want) {
        assert!(
            h.starts_with(w.as_str()),
            "`{h}` should start with `{w}`:\n{err}"
        );
    }
    // one prefix, and each diagnostic shows its source line
    assert!(!err.contains("error: error:"), "{err}");
    assert!(!err.contains("unknown monitor"), "{err}");
    assert!(err.contains("26 | filter = \"tcp\"\n   | ^^^^^^"), "{err}");
}
