//! Recorder log capture with real containers: every numbered line exactly once and in order
//! across a container restart, stdout and stderr apart, and a pause visible as a gap.

use integration_tests::{ensure_images, require_docker, unique_project, ProjectGuard};

use crate::recorder_common::{
    chatter_compose, numbered_lines, read_events, run_recorder, write_scenario,
};

#[test]
fn recorder_captures_every_line_once_across_restart_and_shows_pause_gap() {
    require_docker!();
    ensure_images();
    let project = unique_project("logs");
    let _guard = ProjectGuard::new(&project);
    let (dir, scenario) = write_scenario(
        &project,
        &chatter_compose(50),
        "time_limit = \"90s\"\nseed = 1\nduration = \"11s\"",
        r#"
[[schedule]]
at = "3s"
fault = "restart"
target = "a"

[[schedule]]
at = "5s"
fault = "pause"
target = "b"
duration = "2s"
"#,
    );
    let (code, out, err) = run_recorder(&scenario);
    assert_eq!(code, 0, "recorder failed\nstdout:\n{out}\nstderr:\n{err}");
    let events = read_events(&dir.path().join("trace"));

    // a: restarted once; numbering continues through the resume file
    let a = numbered_lines(&events, "a");
    assert!(a.len() > 200, "too few lines of a: {}", a.len());
    // Exactly once each; in order within each stream. (Across stdout and stderr the daemon
    // stamps lines when it reads each pipe, so two lines a few ms apart on different pipes may
    // swap under load: the trace keeps the daemon's timestamps.)
    let mut nums: Vec<u64> = a.iter().map(|x| x.0).collect();
    for kind in ["stdout", "stderr"] {
        let s: Vec<u64> = a.iter().filter(|x| x.2 == kind).map(|x| x.0).collect();
        assert!(
            s.windows(2).all(|w| w[0] < w[1]),
            "{kind} lines of a out of order: {s:?}"
        );
    }
    nums.sort_unstable();
    let expected: Vec<u64> = (1..=nums.len() as u64).collect();
    assert_eq!(nums, expected, "lines of a missing or duplicated");
    assert!(a.iter().any(|x| x.2 == "stderr") && a.iter().any(|x| x.2 == "stdout"));
    for (n, _, kind) in &a {
        let want = if n % 3 == 0 { "stderr" } else { "stdout" };
        assert_eq!(kind, want, "line {n} of a on the wrong stream");
    }
    let starts = events
        .iter()
        .filter(|e| {
            e.source == "log"
                && e.message
                    .as_deref()
                    .is_some_and(|m| m.starts_with("start a "))
        })
        .count();
    assert_eq!(starts, 2, "a should have started twice (restart)");
    assert!(events
        .iter()
        .any(|e| e.source == "docker" && e.kind == "restart"));

    // b: a gap of about the pause length around the pause fault
    let b = numbered_lines(&events, "b");
    let nums: Vec<u64> = b.iter().map(|x| x.0).collect();
    assert_eq!(
        nums,
        (1..=nums.len() as u64).collect::<Vec<_>>(),
        "lines of b"
    );
    let (gap, after) = b
        .windows(2)
        .map(|w| (w[1].1 - w[0].1, w[1].1))
        .max()
        .expect("lines of b");
    assert!(gap >= 1_500_000_000, "largest gap in b only {gap} ns");
    let pause = events
        .iter()
        .find(|e| e.source == "fault" && e.kind == "pause")
        .expect("pause fault event");
    assert!(
        pause.ts_ns <= after && after - pause.ts_ns < 3_000_000_000,
        "gap not at the pause"
    );

    // stats and the manifest
    assert!(events
        .iter()
        .any(|e| e.source == "stats" && e.service.as_deref() == Some("a")));
    let t = trace::Trace::open(&dir.path().join("trace")).expect("open");
    assert!(t.is_finalized());
    let m = t.manifest();
    assert_eq!(m.compose.project, project);
    assert_eq!(m.compose.services.len(), 2);
    assert!(!m.compose.services["a"].containers[0].id.is_empty());
    assert!(
        m.compose.resolved_config.contains("services:"),
        "no resolved configuration"
    );
    assert!(!m.compose.resolved_config.contains("do-not-record-me"));
    assert_eq!(
        m.outcome.as_ref().map(|o| o.status.as_str()),
        Some("completed")
    );
    // teardown left nothing
    assert!(integration_tests::project_containers(&project).is_empty());
    assert!(integration_tests::project_networks(&project).is_empty());
}
