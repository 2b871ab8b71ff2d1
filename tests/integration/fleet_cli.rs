//! End-to-end tests of judging many traces: `analyzer check` over directories of traces, globs
//! and `--traces-from` lists, in parallel with output in a stable order, unreadable traces
//! counted without aborting the fleet (and the exit-code rule when they mix with fails), the
//! summary, `--junit` for many traces, `--shard K/N`; `analyzer flaky` and `analyzer diff`
//! (`--verdicts` is read back by pyarrow and DuckDB in tests/python/test_verdicts.py).

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

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

/// A fleet directory: runs/a/v1-split-brain (accepts AutoDownSplitBrain), runs/b/v1-healthy
/// (inconclusive: no pause fault), runs/b/v1-gc-pause, runs/c/broken (a bad manifest).
fn fleet(d: &Path) -> PathBuf {
    let runs = d.join("runs");
    copy_dir(
        &root().join("traces/fixtures/v1-split-brain"),
        &runs.join("a/v1-split-brain"),
    );
    copy_dir(
        &root().join("traces/fixtures/v1-healthy"),
        &runs.join("b/v1-healthy"),
    );
    copy_dir(
        &root().join("traces/fixtures/v1-gc-pause"),
        &runs.join("b/v1-gc-pause"),
    );
    std::fs::create_dir_all(runs.join("c/broken")).unwrap();
    std::fs::write(runs.join("c/broken/manifest.json"), "{").unwrap();
    runs
}

fn check(args: &[&str]) -> Output {
    let (a, s) = (p("specs/akka.spec"), p("specs/split-brain.spec"));
    let mut v = vec!["check"];
    v.extend_from_slice(args);
    v.extend_from_slice(&["--spec", &a, "--spec", &s]);
    run(&v)
}

/// The `trace ...` header lines, in output order.
fn trace_lines(s: &str) -> Vec<String> {
    s.lines()
        .filter(|l| l.starts_with("trace "))
        .map(|l| l.split(" (").next().unwrap_or(l).to_string())
        .collect()
}

#[test]
fn a_directory_of_traces_is_judged_in_parallel_in_a_stable_order() {
    let d = tempfile::tempdir().unwrap();
    let runs = fleet(d.path());
    let r = runs.to_string_lossy();
    let one = check(&[&r, "--experiment", "AutoDownSplitBrain", "-j", "1"]);
    let two = check(&[&r, "--experiment", "AutoDownSplitBrain", "-j", "3"]);
    let (s1, s2) = (out(&one), out(&two));
    let expected: Vec<String> = [
        "a/v1-split-brain",
        "b/v1-gc-pause",
        "b/v1-healthy",
        "c/broken",
    ]
    .iter()
    .map(|t| format!("trace {}", runs.join(t).display()))
    .collect();
    assert_eq!(trace_lines(&s1), expected, "{s1}");
    // same report whatever the parallelism (but for the timing in the summary line)
    let strip = |s: &str| {
        s.lines()
            .filter(|l| !l.starts_with("summary:"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(strip(&s1), strip(&s2));
    assert!(s2.contains("-j 3)"), "{s2}");
    // the broken trace is reported and counted, the others judged
    assert!(s1.contains("unreadable: "), "{s1}");
    assert!(
        err(&one).contains("broken/manifest.json: invalid manifest"),
        "{}",
        err(&one)
    );
    assert!(
        s1.contains("summary: 4 trace(s) x 1 monitor(s)/experiment(s): 1 accept, 0 fail, 2 inconclusive; 1 unreadable"),
        "{s1}"
    );
    assert!(s1.contains("unreadable traces:\n"), "{s1}");
    // unreadable beats inconclusive
    assert_eq!(one.status.code(), Some(4), "{s1}");
    assert_eq!(two.status.code(), Some(4));
}

/// One trace with every monitor of two specs: with spare cores (`-j 4`) its row groups are
/// decoded ahead and its monitors evaluated on several threads, batch by batch; the report is
/// the one-thread report, byte for byte, on every committed trace.
#[test]
fn one_trace_on_several_threads_reports_what_one_thread_reports() {
    for t in [
        "traces/fixtures/v1-split-brain",
        "traces/fixtures/v1-gc-pause",
        "traces/fixtures/v1-killed",
        "traces/sample-split-brain",
        "traces/sample-split-brain-fail",
    ] {
        let tr = p(t);
        for fmt in ["text", "json"] {
            let one = check(&[&tr, "--format", fmt, "-j", "1"]);
            let four = check(&[&tr, "--format", fmt, "-j", "4"]);
            assert_eq!(one.status.code(), four.status.code(), "{t}: {}", err(&four));
            assert!(!out(&one).is_empty(), "{t}: {}", err(&one));
            assert_eq!(out(&one), out(&four), "{t} ({fmt})");
        }
    }
}

#[test]
fn a_fail_wins_over_an_unreadable_trace_and_the_summary_names_the_deciding_event() {
    let d = tempfile::tempdir().unwrap();
    let runs = fleet(d.path());
    let o = check(&[
        &runs.to_string_lossy(),
        "--experiment",
        "ClusterSurvivesPartition",
    ]);
    let s = out(&o);
    assert_eq!(o.status.code(), Some(1), "{s}");
    let failing = s
        .split("failing traces:\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no failing list: {s}"));
    let first = failing.lines().next().unwrap_or_default();
    assert!(
        first.contains("a/v1-split-brain")
            && first.contains("experiment ClusterSurvivesPartition step 3")
            && first.contains("jmx left-a akka:type=Cluster"),
        "{first}"
    );
    assert!(s.ends_with("verdict: fail\n"), "{s}");
}

#[test]
fn globs_lists_and_shards_select_traces() {
    let d = tempfile::tempdir().unwrap();
    let runs = fleet(d.path());
    // a glob (quoted, not expanded by a shell) and a list file
    let glob = runs.join("b/*").to_string_lossy().into_owned();
    let list = d.path().join("list.txt");
    std::fs::write(
        &list,
        format!(
            "# traces\n{}\n\n{}\n",
            runs.join("a/v1-split-brain").display(),
            d.path().join("missing").display()
        ),
    )
    .unwrap();
    let o = check(&[
        &glob,
        "--traces-from",
        &list.to_string_lossy(),
        "--experiment",
        "AutoDownSplitBrain",
    ]);
    let s = out(&o);
    assert_eq!(
        trace_lines(&s),
        vec![
            format!("trace {}", runs.join("b/v1-gc-pause").display()),
            format!("trace {}", runs.join("b/v1-healthy").display()),
            format!("trace {}", runs.join("a/v1-split-brain").display()),
            format!("trace {}", d.path().join("missing").display()),
        ],
        "{s}"
    );
    assert!(s.contains("missing: no such file or directory"), "{s}");
    // shards: disjoint, together the whole fleet
    let mut seen = Vec::new();
    for k in 0..3 {
        let o = check(&[
            &runs.to_string_lossy(),
            "--experiment",
            "AutoDownSplitBrain",
            "--shard",
            &format!("{k}/3"),
        ]);
        seen.extend(trace_lines(&out(&o)));
    }
    seen.sort();
    let mut all = trace_lines(&out(&check(&[
        &runs.to_string_lossy(),
        "--experiment",
        "AutoDownSplitBrain",
    ])));
    all.sort();
    assert_eq!(seen, all);
    let bad = check(&[&runs.to_string_lossy(), "--shard", "3/3"]);
    assert_eq!(bad.status.code(), Some(64), "{}", err(&bad));
}

#[test]
fn junit_has_one_suite_per_trace_and_an_error_for_an_unreadable_one() {
    let d = tempfile::tempdir().unwrap();
    let runs = fleet(d.path());
    let x = d.path().join("junit.xml");
    let o = check(&[
        &runs.to_string_lossy(),
        "--experiment",
        "AutoDownSplitBrain",
        "--junit",
        &x.to_string_lossy(),
    ]);
    assert_eq!(o.status.code(), Some(4), "{}", err(&o));
    let xml = std::fs::read_to_string(&x).unwrap();
    assert_eq!(xml.matches("<testsuite ").count(), 4, "{xml}");
    assert_eq!(xml.matches("<testcase ").count(), 3 * 14 + 1, "{xml}");
    assert!(
        xml.contains(&format!(
            "<testsuite name=\"{}\" tests=\"1\" skipped=\"0\" errors=\"1\" failures=\"0\"",
            runs.join("c/broken").display()
        )),
        "{xml}"
    );
    assert!(xml.contains("<error message=\""), "{xml}");
}

#[test]
fn json_lists_unreadable_traces_and_the_summary() {
    let d = tempfile::tempdir().unwrap();
    let runs = fleet(d.path());
    let o = check(&[
        &runs.to_string_lossy(),
        "--experiment",
        "AutoDownSplitBrain",
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["traces"].as_array().map(Vec::len), Some(3));
    assert_eq!(
        v["unreadable"][0]["trace"],
        runs.join("c/broken").display().to_string()
    );
    assert_eq!(v["summary"]["unreadable"], 1);
    assert_eq!(v["summary"]["accept"], 1);
}

fn generate(dir: &Path, auto_down: &str, seed: &str) {
    let o = run(&[
        "generate",
        &dir.to_string_lossy(),
        "--scenario",
        "split-brain",
        "--duration",
        "100",
        "--auto-down",
        auto_down,
        "--experiment",
        "AutoDownSplitBrain",
        "--seed",
        seed,
    ]);
    assert!(o.status.success(), "{}", err(&o));
}

#[test]
fn diff_points_at_the_phase_where_the_failing_run_auto_downed() {
    let d = tempfile::tempdir().unwrap();
    let (good, bad) = (d.path().join("good"), d.path().join("bad"));
    generate(&good, "10", "4");
    // auto-down after 2 s: right-a is downed during its pause and never rejoins
    generate(&bad, "2", "3");
    let (a, s) = (p("specs/akka.spec"), p("specs/split-brain.spec"));
    let o = run(&[
        "diff",
        &good.to_string_lossy(),
        &bad.to_string_lossy(),
        "--spec",
        &a,
        "--spec",
        &s,
    ]);
    let t = out(&o);
    assert_eq!(o.status.code(), Some(0), "{t}{}", err(&o));
    assert!(t.contains("diff of experiment AutoDownSplitBrain"), "{t}");
    assert!(
        t.contains("first verdict divergence: step 9 `expect inCluster(left-a, left-b, right-a, right-b) at left-a within 30s`: GOOD accept after 4.497s, BAD inconclusive after"),
        "{t}"
    );
    // the state paths part in step 9: GOOD's monitor saw the whole cluster and went `stable`,
    // BAD's never left `forming`; the poll that moved GOOD had right-a as a member, BAD's did not
    assert!(
        t.contains("first divergence of monitor state paths: experiment AutoDownSplitBrain step 9, `inCluster(left-a, left-b, right-a, right-b) at left-a`, path step 1:\n  GOOD went `forming` -> `stable` at +1.497s into phase 9; BAD decided inconclusive in `forming`"),
        "{t}"
    );
    assert!(
        t.contains("    ClusterStatus.members[]: only in GOOD: {\"address\":\"akka.tcp://Sys@right-a:2552\""),
        "{t}"
    );
    assert!(
        t.contains("phase 7 (`do unpause on right-a`)") && t.contains("auto-downing unreachable node [akka.tcp://Sys@right-a:<n>]` lines in BAD, 0 in GOOD"),
        "{t}"
    );
    // JSON carries the same
    let o = run(&[
        "diff",
        &good.to_string_lossy(),
        &bad.to_string_lossy(),
        "--spec",
        &a,
        "--spec",
        &s,
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["divergence"]["step"], 9);
    assert_eq!(v["bad_verdict"], "inconclusive");
    let sd = &v["state_divergence"];
    assert_eq!(sd["scope"], "experiment AutoDownSplitBrain step 9", "{sd}");
    assert_eq!(sd["kind"], "differ");
    assert_eq!(sd["index"], 1);
    assert_eq!(sd["good"]["step"]["name"], "stable");
    assert_eq!(sd["good"]["step"]["phase"], 9);
    assert_eq!(sd["bad"]["step"]["what"], "verdict");
    assert_eq!(sd["events"]["moved"], "GOOD");
    assert!(
        sd["events"]["differences"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d.as_str().unwrap().contains("only in GOOD")
                && d.as_str().unwrap().contains("right-a")),
        "{sd}"
    );
    assert!(!sd["bad"]["events"].as_array().unwrap().is_empty(), "{sd}");
    let phase7 = &v["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["number"] == 7)
        .unwrap()["differences"];
    assert!(
        phase7
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["what"] == "log" && d["key"].as_str().unwrap().contains("auto-downing")),
        "{phase7}"
    );
}

/// Copies a committed sample as a run of scenario `sha` recorded at `started_ns`.
fn sample_run(sample: &str, to: &Path, sha: &str, started_ns: i64) {
    copy_dir(&root().join(sample), to);
    let path = to.join("manifest.json");
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    m["scenario"] = serde_json::json!({"name": "split-brain", "path": "", "sha256": sha});
    m["started_ns"] = started_ns.into();
    std::fs::write(&path, serde_json::to_string(&m).unwrap()).unwrap();
}

#[test]
fn diff_of_the_split_brain_samples_points_at_the_early_auto_down() {
    let (a, s) = (p("specs/akka.spec"), p("specs/split-brain.spec"));
    let (good, bad) = (
        p("traces/sample-split-brain"),
        p("traces/sample-split-brain-fail"),
    );
    let o = run(&["diff", &good, &bad, "--spec", &a, "--spec", &s]);
    let t = out(&o);
    assert_eq!(o.status.code(), Some(0), "{t}{}", err(&o));
    assert!(
        t.contains("first verdict divergence: step 9 `expect inCluster(left-a, left-b, right-a, right-b) at left-a within 30s`: GOOD accept after 3.467s, BAD fail after 30.000s"),
        "{t}"
    );
    // the state paths part half a second into step 9, where GOOD's left-a saw all four nodes
    // Up; BAD's left-a, at the same moment, no longer had right-a (downed while paused), whose
    // JMX endpoint answered errors
    let paths = t
        .split("first divergence of monitor state paths: ")
        .nth(1)
        .and_then(|x| x.split("first verdict divergence").next())
        .unwrap_or_else(|| panic!("{t}"));
    assert!(
        paths.starts_with("experiment AutoDownSplitBrain step 9, `inCluster(left-a, left-b, right-a, right-b) at left-a`, path step 1:\n  GOOD went `forming` -> `stable` at +0.467s into phase 9; BAD decided inconclusive in `forming` at +30.000s into phase 9\n"),
        "{paths}"
    );
    assert!(
        paths.contains("    GOOD forming [9 +0.000s] -> stable [9 +0.467s]\n    BAD  forming [9 +0.000s] -> inconclusive [9 +30.000s]\n"),
        "{paths}"
    );
    assert!(
        paths.contains("  they differ in:\n    ClusterStatus.members[]: only in GOOD: {\"address\":\"akka.tcp://TestCluster@right-a:2552\",\"roles\":[\"dc-default\"],\"status\":\"Up\"}\n"),
        "{paths}"
    );
    let bad_around = paths
        .split("  BAD around +0.467s into phase 9")
        .nth(1)
        .and_then(|x| x.split("  GOOD around").next())
        .unwrap_or_else(|| panic!("{paths}"));
    assert!(
        bad_around.contains("jmx right-a error jolokia read of akka:type=Cluster failed"),
        "{bad_around}"
    );
    let before = t
        .split("largest differences before step 9:\n")
        .nth(1)
        .and_then(|x| x.split("per phase:").next())
        .unwrap_or_else(|| panic!("{t}"));
    // the cause first: the leader auto-downed the paused node before it came back
    let first = before.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("  phase 7 (`do unpause on right-a`): left-a logged 1 `[WARN] [akka.cluster.Cluster(akka://TestCluster)] Cluster Node [akka.tcp://TestCluster@left-a:<n>] - Leader is auto-downing unreachable node [akka.tcp://TestCluster@right-a:<n>]."),
        "{before}"
    );
    assert!(first.ends_with("lines in BAD, 0 in GOOD"), "{first}");
    // the consequence in the failing step: right-a shut itself down, its JMX went away
    assert!(
        t.contains("phase 9 (`expect inCluster(left-a, left-b, right-a, right-b) at left-a within 30s`): right-a had 60 `jmx error` events in BAD, 0 in GOOD"),
        "{t}"
    );
    assert!(
        t.contains("Node has been marked as DOWN. Shutting down myself"),
        "{t}"
    );
}

#[test]
fn diff_of_a_run_with_itself_finds_no_divergence_of_state_paths() {
    let (a, s) = (p("specs/akka.spec"), p("specs/split-brain.spec"));
    let t = p("traces/sample-split-brain");
    let o = run(&[
        "diff", &t, &t, "--spec", &a, "--spec", &s, "--format", "json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert!(v["state_divergence"].is_null(), "{}", v["state_divergence"]);
    let o = run(&["diff", &t, &t, "--spec", &a, "--spec", &s]);
    assert!(
        out(&o).contains("the monitor state paths do not part\n"),
        "{}",
        out(&o)
    );
}

#[test]
fn flaky_finds_the_step_that_passes_in_some_runs_of_a_scenario() {
    let d = tempfile::tempdir().unwrap();
    let runs = d.path().join("runs");
    // four runs of "one" scenario (same hash) an hour apart, the third failed
    let base = 1_767_225_600_000_000_000i64;
    let hour = 3_600_000_000_000i64;
    for (i, sample) in [
        "traces/sample-split-brain",
        "traces/sample-split-brain",
        "traces/sample-split-brain-fail",
        "traces/sample-split-brain",
    ]
    .iter()
    .enumerate()
    {
        sample_run(
            sample,
            &runs.join(format!("run-{i}")),
            "same",
            base + i as i64 * hour,
        );
    }
    // a failing run of another scenario is not grouped with them
    sample_run(
        "traces/sample-split-brain-fail",
        &runs.join("other"),
        "other",
        base,
    );
    let (a, s) = (p("specs/akka.spec"), p("specs/split-brain.spec"));
    let o = run(&[
        "flaky",
        &runs.to_string_lossy(),
        "--spec",
        &a,
        "--spec",
        &s,
        "--experiment",
        "AutoDownSplitBrain",
    ]);
    let t = out(&o);
    assert_eq!(o.status.code(), Some(1), "{t}{}", err(&o));
    assert!(
        t.contains("scenario split-brain (same): experiment AutoDownSplitBrain step 9 `expect inCluster(left-a, left-b, right-a, right-b) at left-a within 30s`: passes 3/4 (75%)"),
        "{t}"
    );
    assert!(!t.contains("(other)"), "{t}");
    assert!(
        t.contains(&format!("      {} (run ", runs.join("run-2").display())),
        "{t}"
    );
    // run-1 and run-3 are an hour either side of run-2: the first found wins the tie
    assert!(
        t.contains(&format!(
            "closest in time: GOOD {}, BAD {}",
            runs.join("run-1").display(),
            runs.join("run-2").display()
        )),
        "{t}"
    );
    assert!(t.contains("first verdict divergence: step 9"), "{t}");
    assert!(
        t.contains("first divergence of monitor state paths: experiment AutoDownSplitBrain step 9"),
        "{t}"
    );
    // `check --flaky` prints the same section after the reports
    let o = check(&[
        &runs.to_string_lossy(),
        "--experiment",
        "AutoDownSplitBrain",
        "--flaky",
    ]);
    assert!(out(&o).contains("passes 3/4 (75%)"), "{}", out(&o));
    // nothing flaky: exit 0
    let o = run(&[
        "flaky",
        &runs.join("run-0").to_string_lossy(),
        &runs.join("run-1").to_string_lossy(),
        "--spec",
        &a,
        "--spec",
        &s,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    assert!(out(&o).contains("flaky: none"), "{}", out(&o));
}
