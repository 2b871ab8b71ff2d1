//! End-to-end tests of `analyzer check`: the seed split-brain experiment over the committed
//! fixture trace and generated traces, exit codes (0/1/2/3/4/64), spec validation with compiler
//! style diagnostics, `--format json` and `--junit`.

use std::path::{Path, PathBuf};
use std::process::Output;

fn run(args: &[&str]) -> Output {
    integration_tests::run(&integration_tests::bin("analyzer"), args)
}

fn root() -> PathBuf {
    integration_tests::workspace_root()
}

fn p(rel: &str) -> String {
    root().join(rel).to_string_lossy().into_owned()
}

/// A committed fixture trace.
fn fixture(name: &str) -> String {
    p(&format!("traces/fixtures/{name}"))
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `analyzer check TRACE --spec specs/split-brain.spec EXTRA...`.
fn check_split_brain(trace: &str, extra: &[&str]) -> Output {
    let spec = p("specs/split-brain.spec");
    let mut args = vec!["check", trace, "--spec", &spec];
    args.extend_from_slice(extra);
    run(&args)
}

fn generate(dir: &Path, scenario: &str) {
    let o = run(&["generate", &dir.to_string_lossy(), "--scenario", scenario]);
    assert!(o.status.success(), "generate failed: {}", err(&o));
}

/// `--spec` takes one file: traces may follow it (`check --spec S TRACE` judges TRACE, it does
/// not read it as a second spec), and several specs are given by repeating the flag.
#[test]
fn traces_may_follow_a_spec_and_specs_are_given_one_per_flag() {
    let (a, s, t) = (
        p("specs/akka.spec"),
        p("specs/split-brain.spec"),
        fixture("v1-split-brain"),
    );
    let after = run(&["check", &t, "--spec", &a, "--spec", &s]);
    let before = run(&["check", "--spec", &a, "--spec", &s, &t]);
    assert!(
        out(&after).contains("experiment AutoDownSplitBrain"),
        "{}",
        err(&after)
    );
    assert_eq!(
        before.status.code(),
        after.status.code(),
        "{}",
        err(&before)
    );
    assert_eq!(out(&before), out(&after));
    // a second file after one `--spec` is a trace, and a spec file is not a trace
    let o = run(&["check", "--spec", &s, &a]);
    assert_eq!(o.status.code(), Some(4), "{}{}", out(&o), err(&o));
}

#[test]
fn split_brain_fixture_accepts_the_seed_experiment() {
    let o = check_split_brain(
        &fixture("v1-split-brain"),
        &["--experiment", "AutoDownSplitBrain"],
    );
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));
    let s = out(&o);
    assert!(s.contains("ok   experiment AutoDownSplitBrain"), "{s}");
    assert!(s.contains("do partition on network middle"), "{s}");
    assert_eq!(
        s.lines()
            .filter(|l| l.trim_start().starts_with("ok "))
            .count(),
        15,
        "{s}"
    );
}

#[test]
fn wrong_expectation_fails_with_the_deciding_event_and_context() {
    let o = check_split_brain(
        &fixture("v1-split-brain"),
        &["--experiment", "ClusterSurvivesPartition"],
    );
    assert_eq!(o.status.code(), Some(1), "{}{}", out(&o), err(&o));
    let s = out(&o);
    assert!(
        s.contains("FAIL  3. expect staysInCluster(cluster_nodes) at left-a"),
        "{s}"
    );
    assert!(
        s.contains("deciding event:") && s.contains("jmx left-a akka:type=Cluster"),
        "{s}"
    );
    assert!(
        s.contains("the guard saw:") && s.contains("none_unreachable = false"),
        "{s}"
    );
    assert!(s.contains("around it (left-a, faults, notes):"), "{s}");
    // the same as JSON, with the deciding event's seq
    let o = check_split_brain(
        &fixture("v1-split-brain"),
        &[
            "--experiment",
            "ClusterSurvivesPartition",
            "--format",
            "json",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json output");
    assert_eq!(v["verdict"], "fail");
    let step = &v["traces"][0]["report"]["experiments"][0]["steps"][2];
    assert_eq!(step["verdict"], "fail");
    let seq = step["monitor"]["explanation"]["deciding_event"]["seq"]
        .as_u64()
        .expect("seq");
    // that event is a left-a ClusterStatus poll showing unreachable members
    let ev = run(&[
        "events",
        &fixture("v1-split-brain"),
        "--source",
        "jmx",
        "--service",
        "left-a",
        "--format",
        "jsonl",
    ]);
    let line = out(&ev)
        .lines()
        .find(|l| l.contains(&format!("\"seq\":{seq},")))
        .map(str::to_string)
        .expect("deciding event in trace");
    assert!(line.contains("\"unreachable\":[{"), "{line}");
}

#[test]
fn junit_has_one_case_per_step_with_the_explanation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let junit = dir.path().join("out.xml");
    let o = check_split_brain(
        &fixture("v1-split-brain"),
        &["--junit", &junit.to_string_lossy()],
    );
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    let x = std::fs::read_to_string(&junit).expect("junit written");
    assert!(x.starts_with("<?xml"));
    assert_eq!(x.matches("<testcase ").count(), 14 + 3, "{x}");
    assert_eq!(x.matches("<failure ").count(), 1, "{x}");
    assert!(x.contains("deciding event:"), "{x}");
    let r = quick_junit::Report::deserialize_from_str(&x).expect("well-formed JUnit XML");
    assert_eq!(
        (r.test_suites.len(), r.tests, r.failures),
        (1, 17, 1),
        "{x}"
    );
    let failed = r.test_suites[0]
        .test_cases
        .iter()
        .find(|c| matches!(c.status, quick_junit::TestCaseStatus::NonSuccess { .. }))
        .expect("a failed case");
    assert_eq!(
        failed.classname.as_ref().map(|c| c.as_str()),
        Some("experiment.ClusterSurvivesPartition"),
        "{x}"
    );
}

#[test]
fn inconclusive_when_the_fault_was_never_recorded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = dir.path().join("healthy");
    generate(&t, "healthy");
    let o = check_split_brain(
        &t.to_string_lossy(),
        &["--experiment", "AutoDownSplitBrain"],
    );
    assert_eq!(o.status.code(), Some(2), "{}{}", out(&o), err(&o));
    assert!(
        out(&o).contains("no fault record matching `do pause on right-a`"),
        "{}",
        out(&o)
    );
}

#[test]
fn spec_errors_are_reported_like_a_compiler_with_exit_3() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("bad.spec");
    std::fs::write(
        &f,
        "monitor m {\n  state a {\n    on log where mesage ~ \"x\" => goto b\n  }\n}\n",
    )
    .expect("write");
    let o = run(&["check", "--spec", &f.to_string_lossy()]);
    assert_eq!(o.status.code(), Some(3));
    let e = err(&o);
    // one format: `error: FILE:LINE:COL: message`, then the source excerpt and the hint
    let at = f.display().to_string();
    assert!(
        e.contains(&format!("error: {at}:3:18: unknown name `mesage`\n  |\n3 |     on log where mesage ~ \"x\" => goto b\n  |                  ^^^^^^\n  = hint: did you mean `message`?")),
        "{e}"
    );
    assert!(
        e.contains(&format!("error: {at}:3:39: unknown state `b`")),
        "{e}"
    );
    assert!(!e.contains("error: error:"), "{e}");
    // a valid spec alone validates with exit 0
    let o = run(&["check", "--spec", &p("specs/split-brain.spec")]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(out(&o).contains("spec ok"));
}

/// A step that timed out (no deciding event) shows the events around the end of its window.
#[test]
fn a_timeout_failure_shows_the_events_around_the_window_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("t.spec");
    std::fs::write(
        &f,
        "monitor nope = eventually log where message == \"nope\"\nexperiment E {\n  do pause on right-a\n  expect nope at left-a within 2s\n}\n",
    )
    .expect("write");
    let o = run(&[
        "check",
        &fixture("v1-gc-pause"),
        "--spec",
        &f.to_string_lossy(),
        "--experiment",
        "E",
        "--context",
        "4",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}{}", out(&o), err(&o));
    let s = out(&o);
    assert!(s.contains("did not accept within 2s"), "{s}");
    let lines: Vec<&str> = s.lines().collect();
    let at = lines
        .iter()
        .position(|l| {
            l.trim_start()
                .starts_with("around the window's end at +22.003s (left-a, faults, notes):")
        })
        .unwrap_or_else(|| panic!("no context of the window's end:\n{s}"));
    let ctx: Vec<&str> = lines[at + 1..]
        .iter()
        .take_while(|l| {
            l.trim_start().starts_with("before ") || l.trim_start().starts_with("after ")
        })
        .copied()
        .collect();
    // `--context 4`: the 4 events nearest before the window's end and the 4 after it
    assert_eq!(ctx.len(), 8, "{s}");
    assert!(
        ctx[..4]
            .iter()
            .all(|l| l.trim_start().starts_with("before ")),
        "{s}"
    );
    assert!(
        ctx[4..]
            .iter()
            .all(|l| l.trim_start().starts_with("after ")),
        "{s}"
    );
    assert!(ctx.iter().all(|l| l.contains(" left-a ")), "{s}");
    // a state machine's timeout: around the window's end and around the last transition
    let m = dir.path().join("m.spec");
    std::fs::write(
        &m,
        "monitor m {\n  state a {\n    on log from left-a => goto b timeout 1s\n  }\n  state b {\n    on log where message == \"nope\" => accept\n    on timeout => fail\n  }\n}\n",
    )
    .expect("write");
    let o = run(&[
        "check",
        &fixture("v1-gc-pause"),
        "--spec",
        &m.to_string_lossy(),
        "--context",
        "2",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}{}", out(&o), err(&o));
    let s = out(&o);
    assert!(
        s.contains("around the window's end at +2.000s (left-a, faults, notes):"),
        "{s}"
    );
    assert!(
        s.contains("around the last transition (seq 18) (left-a, faults, notes):"),
        "{s}"
    );
    // JSON carries it too, anchored at the window's end
    let o = run(&[
        "check",
        &fixture("v1-gc-pause"),
        "--spec",
        &f.to_string_lossy(),
        "--experiment",
        "E",
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let ctxs = v["traces"][0]["context"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        ctxs.iter()
            .any(|c| c["at_ns"].is_i64() && !c["events"].as_array().is_none_or(|e| e.is_empty())),
        "{v}"
    );
}

/// Re-judging a trace with an edited experiment: a `do` matched to its recorded fault by
/// position but with another target is accepted with a warning, and names the trace's compose
/// project does not have are reported.
#[test]
fn edited_steps_and_unknown_services_are_warned_about() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = std::fs::read_to_string(root().join("specs/split-brain.spec")).expect("spec");
    assert!(text.contains("do pause on right-a\n"));
    std::fs::copy(root().join("specs/akka.spec"), dir.path().join("akka.spec")).expect("copy");
    let edited = dir.path().join("split-brain.spec");
    std::fs::write(
        &edited,
        text.replace("do pause on right-a\n", "do pause on right-ax\n"),
    )
    .expect("write");
    let judge = |spec: &str| {
        run(&[
            "check",
            &p("traces/sample-split-brain"),
            "--spec",
            spec,
            "--experiment",
            "AutoDownSplitBrain",
        ])
    };
    let o = judge(&p("specs/split-brain.spec"));
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));
    assert!(!out(&o).contains("warning:"), "{}", out(&o));
    let o = judge(&edited.to_string_lossy());
    let s = out(&o);
    assert_eq!(o.status.code(), Some(0), "{s}{}", err(&o));
    let warnings: Vec<&str> = s
        .lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with("warning: "))
        .collect();
    assert_eq!(warnings.len(), 2, "{s}");
    assert!(
        warnings[0].starts_with("warning: experiment AutoDownSplitBrain, step 3 `do pause on right-ax`: no service `right-ax` in the trace's compose project (services: left-a, left-b, right-a, right-b)"),
        "{s}"
    );
    assert!(
        warnings[1].starts_with(
            "warning: step 3 `do pause on right-ax` differs from the fault recorded for it (seq "
        ) && warnings[1].contains("the target differs (recorded: services [right-a]"),
        "{s}"
    );
    // JSON carries both
    let o = run(&[
        "check",
        &p("traces/sample-split-brain"),
        "--spec",
        &edited.to_string_lossy(),
        "--experiment",
        "AutoDownSplitBrain",
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(
        v["traces"][0]["warnings"].as_array().map(Vec::len),
        Some(1),
        "{v}"
    );
    assert_eq!(
        v["traces"][0]["report"]["experiments"][0]["steps"][2]["warnings"]
            .as_array()
            .map(Vec::len),
        Some(1),
        "{v}"
    );
}

/// `-v` prints why every monitor and step accepted; temporal sugar says what it observed.
#[test]
fn verbose_text_report_gives_accept_reasons() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("seen.spec");
    std::fs::write(
        &f,
        "monitor logSeen = eventually log within 60s\nexperiment E {\n  do pause on right-a\n  expect logSeen\n}\n",
    )
    .expect("write");
    let args = |v: bool| {
        let mut a = vec![
            "check".to_string(),
            fixture("v1-gc-pause"),
            "--spec".into(),
            f.to_string_lossy().into_owned(),
            "--monitor".into(),
            "logSeen".into(),
            "--experiment".into(),
            "E".into(),
        ];
        if v {
            a.push("-v".into());
        }
        a
    };
    let quiet = args(false);
    let o = run(&quiet.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));
    assert!(!out(&o).contains("reason:"), "{}", out(&o));
    let verbose = args(true);
    let o = run(&verbose.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));
    let s = out(&o);
    // the monitor, the `do` (its fault record) and the `expect` each say why
    let reasons: Vec<&str> = s
        .lines()
        .filter(|l| l.trim_start().starts_with("reason: "))
        .collect();
    assert_eq!(reasons.len(), 3, "{s}");
    assert!(
        reasons[0].contains("reason: `eventually log within 60s`: matched at +")
            && reasons[0].contains(", seq "),
        "{s}"
    );
    assert!(reasons[1].contains("reason: fault recorded at "), "{s}");
    assert!(
        reasons[2].contains("reason: `eventually log within 60s`: matched at +"),
        "{s}"
    );
    assert!(!s.contains("accept in state"), "{s}");
}

#[test]
fn unreadable_trace_and_bad_selection_exit_codes() {
    let o = check_split_brain("/nonexistent/trace", &[]);
    assert_eq!(o.status.code(), Some(4), "{}", err(&o));
    assert!(!err(&o).contains("panicked"));
    let o = check_split_brain(&fixture("v1-healthy"), &["--monitor", "nope"]);
    assert_eq!(o.status.code(), Some(64), "{}", err(&o));
    assert!(err(&o).contains("no monitor named `nope`"), "{}", err(&o));
}

/// `check` reads only the columns and sources the selected monitors need (and re-reads the
/// events its report shows); `--read-all-columns` reads everything. Both must give the same
/// bytes: every spec of `specs/` over every fixture trace and a generated split-brain trace,
/// and the benchmark specs (source skipping; keyed instances whose explanation shows events
/// from all over the trace) over the generated trace.
#[test]
fn reading_only_needed_columns_gives_the_same_report() {
    let mut fixtures: Vec<PathBuf> = std::fs::read_dir(root().join("traces/fixtures"))
        .expect("traces/fixtures")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("manifest.json").exists())
        .collect();
    fixtures.sort();
    let mut specs: Vec<PathBuf> = std::fs::read_dir(root().join("specs"))
        .expect("specs")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "spec"))
        .collect();
    specs.sort();
    let dir = tempfile::tempdir().expect("tempdir");
    let gen = dir.path().join("gen");
    generate(&gen, "split-brain");
    let mut cases: Vec<(PathBuf, PathBuf)> = Vec::new();
    for f in fixtures.iter().chain([&gen]) {
        for s in &specs {
            cases.push((f.clone(), s.clone()));
        }
    }
    for c in ["baseline", "guards", "regex", "keyed"] {
        let s = root().join(format!("monitor/benches/specs/{c}.spec"));
        cases.push((gen.clone(), s));
    }
    // a response window that opens when the fault that led to it is done (`data.ended_ns`),
    // though its patterns read neither source nor data; a keyed monitor reading no source
    let extra = dir.path().join("extra.spec");
    std::fs::write(
        &extra,
        "monitor afterPause = after fault \"pause\" expect event where seq < 0 within 1ms\n\
         monitor afterAny = after event where kind == \"partition\" expect event where seq < 0 within 1ms\n\
         monitor perKind per kind = never event where seq < 0\n",
    )
    .expect("spec");
    for f in fixtures.iter().chain([&gen]) {
        cases.push((f.clone(), extra.clone()));
    }
    let mut judged = 0;
    for (trace, spec) in &cases {
        let (t, s) = (trace.to_string_lossy(), spec.to_string_lossy());
        let args = ["check", &t, "--spec", &s, "--format", "json"];
        let narrow = run(&args);
        let mut all_args = args.to_vec();
        all_args.push("--read-all-columns");
        let wide = run(&all_args);
        let what = format!("{t} with {s}");
        assert_eq!(narrow.status.code(), wide.status.code(), "{what}");
        for (a, b) in [(out(&narrow), out(&wide)), (err(&narrow), err(&wide))] {
            if a != b {
                let line = a.lines().zip(b.lines()).position(|(x, y)| x != y);
                let at = line.unwrap_or(a.lines().count().min(b.lines().count()));
                panic!(
                    "{what}: reports differ at line {}:\n  projected: {}\n  all columns: {}",
                    at + 1,
                    a.lines().nth(at).unwrap_or("(end)"),
                    b.lines().nth(at).unwrap_or("(end)")
                );
            }
        }
        if out(&narrow).contains("\"verdict\"") {
            judged += 1;
        }
    }
    // most pairs judge something (a spec of only parameterised monitors judges nothing)
    assert!(
        judged * 2 > cases.len(),
        "{judged} of {} judged",
        cases.len()
    );
}

/// A trace of several row groups, mostly quiet log lines and stats samples, with a few rare
/// events where a monitor reacts: a `start` in the second row group (no `stop`: its timeout
/// fires in a quiet stretch), an `oom` in the third, the recorder's teardown in the fourth and
/// last, and a `kill` after it.
fn rare_events_trace(dir: &Path) -> PathBuf {
    use trace::{Event, Manifest, TraceWriter};
    const T0: i64 = 1_700_000_000_000_000_000;
    let trace = dir.join("rare");
    let mut w = TraceWriter::create(
        &trace,
        Manifest {
            run_id: "rare-events".into(),
            started_ns: Some(T0),
            ..Default::default()
        },
    )
    .expect("create trace");
    let n = 200_000u64;
    let at = |i: u64| T0 + i as i64 * 1_000_000;
    for i in 0..n {
        let svc = ["s0", "s1", "s2"][(i % 3) as usize];
        let e = match i {
            70_000 => Event::new(at(i), "docker", "start").service("s1"),
            150_000 => Event::new(at(i), "docker", "oom").service("s2"),
            197_000 => Event::new(at(i), "recorder", "teardown")
                .data(&serde_json::json!({"phase": "start"})),
            198_000 => Event::new(at(i), "docker", "kill").service("s0"),
            _ if i % 10 == 0 => Event::new(at(i), "stats", "sample")
                .service(svc)
                .data(&serde_json::json!({"cpu": i % 100})),
            _ => Event::new(at(i), "log", "stdout")
                .service(svc)
                .message(format!("line {i}")),
        };
        w.append(e).expect("append");
    }
    w.finish().expect("finish trace");
    trace
}

const RARE_SPEC: &str = r#"
monitor noOom = never docker "oom"
monitor noKill = never docker "kill"
monitor startStop {
  state idle { on docker "start" => goto up timeout 2s }
  state up {
    on docker "stop" => goto idle
    on timeout => fail "no stop within 2s"
  }
}
monitor done = eventually docker "done"
monitor quietS1 = never log where service == "s1" and seq < 0
"#;

/// `check` leaves unread the row groups whose statistics rule out every event its monitors
/// react to; the report is the one reading everything gives (text with context, JSON), with
/// and without the teardown cut-off, and some groups are ruled out.
#[test]
fn row_groups_ruled_out_by_their_statistics_give_the_same_report() {
    let dir = tempfile::tempdir().expect("tempdir");
    let trace = rare_events_trace(dir.path());
    let spec = dir.path().join("rare.spec");
    std::fs::write(&spec, RARE_SPEC).expect("spec");
    // what the analyzer computes: the monitors' relevance against the footer's statistics
    let compiled = monitor::compile(
        &[monitor::SourceFile::new("rare.spec", RARE_SPEC)],
        &|_, _| None,
    )
    .expect("spec compiles");
    let rel = monitor::Runner::new(&compiled, &monitor::Selection::default())
        .expect("runner")
        .relevance();
    let opened = trace::Trace::open(&trace).expect("open");
    let groups = opened.group_stats().expect("finalized");
    let ruled_out = groups.iter().filter(|g| !rel.may_matter(g)).count();
    assert!(groups.len() >= 4, "{} row groups", groups.len());
    assert!(
        ruled_out >= 1 && ruled_out < groups.len(),
        "{ruled_out} of {}",
        groups.len()
    );
    let (t, s) = (trace.to_string_lossy(), spec.to_string_lossy());
    for extra in [
        &["--context", "3"][..],
        &["--format", "json"],
        &["--include-teardown"],
        &["--include-teardown", "--format", "json", "-j", "2"],
    ] {
        let mut args = vec!["check", &*t, "--spec", &*s];
        args.extend_from_slice(extra);
        let narrow = run(&args);
        args.push("--read-all-columns");
        let wide = run(&args);
        assert_eq!(
            narrow.status.code(),
            Some(1),
            "{}{}",
            out(&narrow),
            err(&narrow)
        );
        assert_eq!(wide.status.code(), Some(1), "{extra:?}");
        assert_eq!(out(&narrow), out(&wide), "{extra:?}");
        assert_eq!(err(&narrow), err(&wide), "{extra:?}");
    }
    // what the report says: the oom and the timeout found, the kill only with the teardown
    let o = run(&["check", &t, "--spec", &s, "--format", "json"]);
    let j: serde_json::Value = serde_json::from_str(&out(&o)).expect("json");
    let j = &j["traces"][0]["report"];
    let verdict = |name: &str| {
        j["monitors"]
            .as_array()
            .and_then(|m| m.iter().find(|m| m["name"] == name))
            .map(|m| m["verdict"].as_str().unwrap_or_default().to_string())
    };
    assert_eq!(verdict("noOom").as_deref(), Some("fail"));
    assert_eq!(verdict("startStop").as_deref(), Some("fail"));
    assert_eq!(verdict("noKill").as_deref(), Some("accept"));
    assert_eq!(verdict("quietS1").as_deref(), Some("accept"));
    // every event before the teardown counts, read or not
    assert_eq!(j["events"], 197_000, "{}", j["events"]);
}

#[test]
fn judging_ends_where_the_recorder_started_teardown() {
    // the committed sample is a real recording: `compose down` stops every container after the
    // recorder's teardown event, which is not the system's behaviour
    let args = [
        "check",
        &p("traces/sample-split-brain"),
        "--spec",
        &p("specs/stable.spec"),
        "--monitor",
        "noContainerDies",
    ];
    let o = run(&args);
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));
    let mut all = args.to_vec();
    all.push("--include-teardown");
    let o = run(&all);
    assert_eq!(o.status.code(), Some(1), "{}{}", out(&o), err(&o));
    let s = out(&o);
    assert!(s.contains("docker") && s.contains("die"), "{s}");
}

#[test]
fn context_of_a_deciding_packet_is_the_events_nearest_in_time() {
    // Fails on the first TCP packet left-a sends (at +1.175 s in the fixture); packets' seqs
    // are above every event's, so a lookup by seq would show the end of the window instead.
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = dir.path().join("p.spec");
    std::fs::write(
        &spec,
        "monitor noTcp = never packet \"tcp\" where data.src_service == \"left-a\"\n",
    )
    .expect("write spec");
    let o = run(&[
        "check",
        &fixture("v1-split-brain"),
        "--spec",
        &spec.to_string_lossy(),
        "--context",
        "3",
        "--format",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}{}", out(&o), err(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json output");
    let t = &v["traces"][0];
    let d = &t["report"]["monitors"][0]["explanation"]["deciding_event"];
    assert_eq!(d["source"], "packet", "{d}");
    let ts = d["ts_ns"].as_i64().expect("ts_ns");
    let ctx = &t["context"][0];
    assert_eq!(ctx["seq"], d["seq"]);
    let times: Vec<i64> = ctx["events"]
        .as_array()
        .expect("context events")
        .iter()
        .map(|e| e["ts_ns"].as_i64().expect("ts_ns"))
        .collect();
    let before = times.iter().filter(|x| **x < ts).count();
    let after = times.iter().filter(|x| **x >= ts).count();
    // 3 before (the trace has events before +1.175 s) and 3 after, in order, all near it
    assert_eq!((before, after), (3, 3), "{times:?} around {ts}");
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    assert!(
        times.iter().all(|x| (x - ts).abs() < 5_000_000_000),
        "{times:?} around {ts}"
    );
    assert_eq!(ctx["ts_ns"].as_i64(), Some(ts));
    // the text report shows them under the packet
    let o = run(&[
        "check",
        &fixture("v1-split-brain"),
        "--spec",
        &spec.to_string_lossy(),
        "--context",
        "3",
    ]);
    let s = out(&o);
    assert!(s.contains("around it (left-a, faults, notes):"), "{s}");
}
