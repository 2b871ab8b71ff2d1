//! `scripts/ci-record.sh`, the one step behind `action.yml` and `ci/gitlab-ci.yml`, run here on
//! real Docker with the already-built binaries (`RECORDER`/`ANALYZER`): it records
//! examples/hello-world, judges it offline, leaves the trace, the JUnit XML and the HTML report in
//! the artifacts directory and exits with the offline verdict's code (1 on fail, inconclusive
//! 0 or 2 with `FAIL_ON_INCONCLUSIVE=1`, the recorder's code when nothing was recorded).

use std::path::Path;
use std::process::Command;

use integration_tests::{
    bin, ensure_images, project_containers, require_docker, unique_project, workspace_root,
    ProjectGuard,
};

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs the script from the workspace root with the built binaries and `extra` environment.
fn ci_record(args: &[&str], env: &[(&str, &str)]) -> Run {
    ci_record_with(args, env, true)
}

/// As `ci_record`; without `given`, the script builds the binaries itself (`CI_PROFILE=dev` into
/// this test's target directory, where they are already built, so cargo has nothing to do).
fn ci_record_with(args: &[&str], env: &[(&str, &str)], given: bool) -> Run {
    let root = workspace_root();
    let mut cmd = Command::new("bash");
    cmd.arg(root.join("scripts/ci-record.sh")).args(args);
    if given {
        cmd.env("RECORDER", bin("recorder"))
            .env("ANALYZER", bin("analyzer"));
    } else {
        let target = bin("recorder")
            .parent()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .expect("target directory");
        cmd.env_remove("RECORDER")
            .env_remove("ANALYZER")
            .env("CI_PROFILE", "dev")
            .env("CARGO_TARGET_DIR", target);
    }
    let out = cmd
        .env_remove("FAIL_ON_INCONCLUSIVE")
        .env_remove("GITHUB_OUTPUT")
        .envs(env.iter().copied())
        .current_dir(&root)
        .output()
        .expect("run scripts/ci-record.sh");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The one-line summary: the script's last stdout line.
fn summary(r: &Run) -> &str {
    r.stdout.lines().last().unwrap_or("")
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// The JUnit file: an XML document with one `<testsuite>` whose `tests`/`failures`/`skipped`
/// counts match its test cases; returns the test cases' names and the file's text.
fn junit_cases(p: &Path) -> (Vec<String>, String) {
    let x = read(p);
    assert!(x.starts_with("<?xml"), "not XML: {x}");
    assert_eq!(x.matches("<testsuite ").count(), 1, "{x}");
    assert!(x.trim_end().ends_with("</testsuites>"), "{x}");
    let names: Vec<String> = x
        .split("<testcase ")
        .skip(1)
        .filter_map(|c| {
            let c = format!(" {c}");
            Some(c.split(" name=\"").nth(1)?.split('"').next()?.to_string())
        })
        .map(|n| n.replace("&quot;", "\""))
        .collect();
    let attr = |a: &str| -> usize {
        x.split(&format!(" {a}=\""))
            .nth(1)
            .and_then(|s| s.split('"').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no {a} count in {x}"))
    };
    assert_eq!(attr("tests"), names.len(), "{x}");
    assert_eq!(attr("failures"), x.matches("<failure ").count(), "{x}");
    assert_eq!(attr("skipped"), x.matches("<skipped").count(), "{x}");
    (names, x)
}

/// Asserts the artifacts directory holds a finalized trace of `project` and the two reports,
/// the HTML one titled with `verdict`.
fn assert_artifacts(out: &Path, project: &str, verdict: &str) {
    let manifest = read(&out.join("trace/manifest.json"));
    let m: serde_json::Value = serde_json::from_str(&manifest).expect("manifest is JSON");
    assert!(
        manifest.contains(project),
        "manifest does not name project {project}: {m}"
    );
    assert!(
        out.join("trace/events.parquet").is_file(),
        "trace not finalized"
    );
    let html = read(&out.join("report.html"));
    let title = format!("<title>trace: {verdict} ");
    assert!(html.contains(&title), "report.html lacks {title:?}");
    assert!(out.join("junit.xml").is_file());
}

#[test]
fn ci_script_passes_an_accepted_run_and_fails_a_failed_one_with_artifacts() {
    require_docker!();
    ensure_images();
    let tmp = tempfile::tempdir().expect("tempdir");

    // 1. the example as documented: accept, exit 0
    let project = unique_project("ciok");
    let _guard = ProjectGuard::new(&project);
    let out = tmp.path().join("ok");
    let out_s = out.to_string_lossy().into_owned();
    let r = ci_record(
        &[
            "examples/hello-world/scenario.toml",
            "--spec",
            "specs/hello-world.spec",
            "--experiment",
            "HelloWorld",
            "--out",
            &out_s,
            "--project",
            &project,
        ],
        &[],
    );
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert!(
        summary(&r).starts_with("ci-record: accept: examples/hello-world/scenario.toml"),
        "{}",
        r.stdout
    );
    assert_artifacts(&out, &project, "accept");
    let (names, x) = junit_cases(&out.join("junit.xml"));
    assert_eq!(
        names,
        [
            "01 expect helloWorld at basic within 30s",
            "02 note \"hello-world printed its lines in order\"",
            "03 expect exitsWith(\"0\") at basic within 10s"
        ],
        "{x}"
    );
    assert!(!x.contains("<failure"), "{x}");
    assert!(
        project_containers(&project).is_empty(),
        "project left running"
    );

    // 2. the same run judged with a wrong expectation: exit 1, artifacts still written; the
    //    recorder's live verdict (its scenario's HelloWorld accepts) does not decide the job
    let spec = tmp.path().join("wrong.spec");
    let hello = workspace_root().join("specs/hello-world.spec");
    std::fs::write(
        &spec,
        format!(
            "import {:?}\nexperiment WrongExit {{\n  expect exitsWith(\"7\") at basic within 10s\n}}\n",
            hello.to_string_lossy()
        ),
    )
    .expect("write wrong.spec");
    let project2 = unique_project("cifail");
    let _guard2 = ProjectGuard::new(&project2);
    let out2 = tmp.path().join("fail");
    let out2_s = out2.to_string_lossy().into_owned();
    let r = ci_record(
        &[
            "examples/hello-world/scenario.toml",
            "--out",
            &out2_s,
            "--project",
            &project2,
        ],
        &[
            ("SPECS", &spec.to_string_lossy()),
            ("EXPERIMENTS", "WrongExit"),
        ],
    );
    assert_eq!(r.code, 1, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert!(
        summary(&r).starts_with("ci-record: fail: ")
            && summary(&r).contains("recorder exit 0, analyzer check exit 1, job exit 1"),
        "{}",
        r.stdout
    );
    assert_artifacts(&out2, &project2, "fail");
    let (names, x) = junit_cases(&out2.join("junit.xml"));
    assert_eq!(names, ["01 expect exitsWith(\"7\") at basic within 10s"]);
    assert!(
        x.contains("<failure message=\"exited 0, expected 7\""),
        "{x}"
    );
}

#[test]
fn ci_script_inconclusive_passes_unless_configured_to_fail() {
    require_docker!();
    ensure_images();
    let tmp = tempfile::tempdir().expect("tempdir");
    // a monitor that never decides on hello-world: inconclusive at the end of the trace
    let spec = tmp.path().join("undecided.spec");
    std::fs::write(
        &spec,
        "monitor saysGoodbye {\n  state waiting {\n    on log \"stdout\" where message == \"Goodbye\" => accept\n  }\n}\n",
    )
    .expect("write spec");
    let spec_s = spec.to_string_lossy().into_owned();
    for (flag, want) in [(false, 0), (true, 2)] {
        let project = unique_project("ciinc");
        let _guard = ProjectGuard::new(&project);
        let out = tmp.path().join(format!("inc-{flag}"));
        let out_s = out.to_string_lossy().into_owned();
        let mut args = vec![
            "examples/hello-world/scenario.toml",
            "--spec",
            &spec_s,
            "--monitor",
            "saysGoodbye",
            "--out",
            &out_s,
            "--project",
            &project,
        ];
        if flag {
            args.push("--fail-on-inconclusive");
        }
        let r = ci_record(&args, &[]);
        assert_eq!(r.code, want, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
        assert!(
            summary(&r).starts_with("ci-record: inconclusive: ")
                && summary(&r).contains(&format!("analyzer check exit 2, job exit {want}")),
            "{}",
            r.stdout
        );
        assert_artifacts(&out, &project, "inconclusive");
        let (names, x) = junit_cases(&out.join("junit.xml"));
        assert_eq!(names.len(), 1, "{x}");
        assert!(x.contains("<skipped"), "{x}");
    }
}

/// Also the path of the script that builds the binaries with cargo.
#[test]
fn ci_script_fails_with_the_recorders_code_when_nothing_is_recorded() {
    require_docker!();
    let tmp = tempfile::tempdir().expect("tempdir");
    let scenario = tmp.path().join("scenario.toml");
    // no compose file: refused at validation (exit 3) before anything starts
    std::fs::write(&scenario, "[compose]\nfiles = [\"missing.yml\"]\n").expect("write");
    let out = tmp.path().join("art");
    // the script builds the binaries itself here (cargo finds them up to date)
    let r = ci_record_with(
        &[
            &scenario.to_string_lossy(),
            "--spec",
            "specs/hello-world.spec",
            "--out",
            &out.to_string_lossy(),
        ],
        &[],
        false,
    );
    assert!(
        r.stderr
            .contains("ci-record: building recorder and analyzer (cargo, profile dev)"),
        "{}",
        r.stderr
    );
    assert_eq!(r.code, 3, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert!(
        summary(&r).starts_with("ci-record: error (recorder exit 3)"),
        "{}",
        r.stdout
    );
    assert!(!out.join("junit.xml").exists(), "judged nothing recorded");
}

/// The `NAME` of every `NAME: value` line indented by exactly `indent` spaces in the block that
/// follows the line `header` (up to the first line indented less).
fn block_keys(yaml: &str, header: &str, indent: usize) -> Vec<String> {
    let mut lines = yaml.lines().skip_while(|l| l.trim_end() != header).skip(1);
    let mut keys = Vec::new();
    for l in lines.by_ref() {
        let depth = l.len() - l.trim_start().len();
        if !l.trim().is_empty() && depth < indent {
            break;
        }
        if depth == indent {
            if let Some((k, _)) = l.trim().split_once(':') {
                keys.push(k.to_string());
            }
        }
    }
    keys
}

#[test]
fn action_and_gitlab_template_only_pass_what_the_script_reads() {
    let root = workspace_root();
    let script = read(&root.join("scripts/ci-record.sh"));
    let action = read(&root.join("action.yml"));
    let gitlab = read(&root.join("ci/gitlab-ci.yml"));
    assert!(action.contains("run: bash \"$GITHUB_ACTION_PATH/scripts/ci-record.sh\""));
    assert!(gitlab.contains("bash \"$CHAOS_TRACE_DIR/scripts/ci-record.sh\" \"$CHAOS_SCENARIO\""));
    // the action's step environment and the template's variables, apart from the ones the
    // wrapper itself uses, are all read by the script
    let env = block_keys(&action, "      env:", 8);
    let vars = block_keys(&gitlab, "  variables:", 4);
    assert!(env.len() >= 10 && vars.len() >= 8, "{env:?} {vars:?}");
    for k in env.iter().chain(&vars) {
        if [
            "SCENARIO",
            "CHAOS_SCENARIO",
            "CHAOS_TRACE_DIR",
            "CHAOS_TRACE_REPO",
        ]
        .contains(&k.as_str())
        {
            continue;
        }
        assert!(
            script.contains(&format!("${{{k}:-")),
            "{k} is passed by action.yml or ci/gitlab-ci.yml but scripts/ci-record.sh never reads it"
        );
    }
    // every action input is used by a step
    for input in block_keys(&action, "inputs:", 2) {
        assert!(
            action.contains(&format!("inputs.{input} }}}}")),
            "action input {input} is never used"
        );
    }
    // the GitLab artifacts are the script's output directory, kept whatever the verdict
    assert!(gitlab.contains("when: always") && gitlab.contains("junit: $OUT/junit.xml"));
    assert!(action.contains("if: always()") && action.contains("path: ${{ inputs.out }}"));
}
