//! End-to-end tests of `analyzer report` and `analyzer check --html`: reports of the committed
//! sample trace (accepting and failing experiments) and of a hostile trace (HTML and script in
//! log lines, service names, messages and spec messages) are opened in headless Chromium, and
//! the page after its script ran is checked: no script errors, the failure marked and
//! explained, the hostile strings shown as text and none of them executed. Without Chromium the
//! browser part is skipped, unless REQUIRE_DOCKER=1 or REQUIRE_CHROMIUM=1 (CI) makes it fail.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use trace::{Event, Manifest, TraceWriter};

fn run(args: &[&str]) -> Output {
    integration_tests::run(&integration_tests::bin("analyzer"), args)
}

fn p(rel: &str) -> String {
    integration_tests::workspace_root()
        .join(rel)
        .to_string_lossy()
        .into_owned()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn chromium() -> Option<PathBuf> {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if let Ok(o) = Command::new("sh")
            .args(["-c", &format!("command -v {name}")])
            .output()
        {
            let s = String::from_utf8_lossy(&o.stdout).trim().to_string();
            if o.status.success() && !s.is_empty() {
                return Some(PathBuf::from(s));
            }
        }
    }
    let required = ["REQUIRE_DOCKER", "REQUIRE_CHROMIUM"]
        .iter()
        .any(|v| std::env::var(v).as_deref() == Ok("1"));
    assert!(
        !required,
        "REQUIRE_DOCKER/REQUIRE_CHROMIUM=1 but chromium is missing (scripts/setup.sh installs it)"
    );
    eprintln!("note: chromium missing; the browser part of the report test is skipped");
    None
}

/// The page's DOM after its script ran (`--dump-dom`), with a fresh profile directory.
fn dom(browser: &Path, page: &Path) -> String {
    let profile = tempfile::tempdir().expect("temporary profile directory");
    let o = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--virtual-time-budget=5000",
            &format!("--user-data-dir={}", profile.path().display()),
            "--dump-dom",
            &format!("file://{}", page.display()),
        ])
        .output()
        .expect("run chromium");
    assert!(o.status.success(), "chromium failed: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The rendered table rows as `(seq, [cells])`.
fn table_rows(dom: &str) -> Vec<(String, Vec<String>)> {
    let rows = dom
        .split("<div id=\"table-rows\"")
        .nth(1)
        .and_then(|s| s.split("<div id=\"detail\"").next())
        .unwrap_or("");
    rows.split("<div class=\"row")
        .skip(1)
        .map(|r| {
            let seq = r
                .split("data-seq=\"")
                .nth(1)
                .and_then(|s| s.split('"').next())
                .unwrap_or("")
                .to_string();
            let cells = r
                .split("<span>")
                .skip(1)
                .map(|c| c.split("</span>").next().unwrap_or("").to_string())
                .collect();
            (seq, cells)
        })
        .collect()
}

/// The page ran to its end without a script error.
fn assert_clean(dom: &str) {
    assert!(
        dom.contains("data-ready=\"1\""),
        "the page's script did not finish: {}",
        &dom[..dom.len().min(3000)]
    );
    assert!(
        dom.contains("<div id=\"errors\" hidden=\"\"></div>"),
        "script errors on the page: {}",
        dom.split("<div id=\"errors\"")
            .nth(1)
            .map(|s| &s[..s.len().min(800)])
            .unwrap_or("")
    );
}

fn report_sample(experiment: &str, out: &Path) -> Output {
    run(&[
        "report",
        &p("traces/sample-split-brain"),
        "--spec",
        &p("specs/akka.spec"),
        "--spec",
        &p("specs/split-brain.spec"),
        "--experiment",
        experiment,
        "-o",
        &out.to_string_lossy(),
    ])
}

/// The text report of `analyzer check -v` (accept reasons too) and the deciding event's seq it
/// names.
fn check_text(experiment: &str) -> (String, String) {
    let o = run(&[
        "check",
        "-v",
        &p("traces/sample-split-brain"),
        "--spec",
        &p("specs/akka.spec"),
        "--spec",
        &p("specs/split-brain.spec"),
        "--experiment",
        experiment,
    ]);
    let s = String::from_utf8_lossy(&o.stdout).into_owned();
    let line = s
        .lines()
        .find(|l| l.trim_start().starts_with("deciding event:"))
        .unwrap_or_else(|| panic!("no deciding event in {s}"));
    let after = line.split(" seq ").nth(1).expect("seq in the line");
    let seq = after.split_whitespace().next().unwrap_or("").to_string();
    (s, seq)
}

/// The data block of a report page.
fn page_data(html: &str) -> serde_json::Value {
    let block = html
        .split("<script type=\"application/json\" id=\"report-data\">")
        .nth(1)
        .and_then(|s| s.split("</script>").next())
        .expect("data block");
    serde_json::from_str(block).expect("data block is JSON")
}

#[test]
fn sample_trace_report_opens_without_errors_and_shows_the_run() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("ok.html");
    let o = report_sample("AutoDownSplitBrain", &out);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let html = std::fs::read_to_string(&out).expect("report written");
    // self-contained: no address to load anything from
    for remote in [
        "src=\"http",
        "href=\"http",
        "src=\"//",
        "url(http",
        "fetch(",
    ] {
        assert!(!html.contains(remote), "{remote} in the page");
    }
    let Some(browser) = chromium() else { return };
    let d = dom(&browser, &out);
    assert_clean(&d);
    // accepted: no failure shown, the verdict badge and the run's first event in the table
    assert!(d.contains("<span id=\"verdict\" class=\"badge accept\">accept</span>"));
    assert!(
        d.contains("<section id=\"failures\" hidden=\"\">"),
        "failures shown"
    );
    assert!(
        d.contains("of project ctk202611251328258611 started"),
        "table rows"
    );
    assert!(d.contains("AutoDownSplitBrain"), "steps named");
}

#[test]
fn failing_experiment_report_opens_on_its_failure_and_explains_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("fail.html");
    let o = report_sample("ClusterSurvivesPartition", &out);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let (check, seq) = check_text("ClusterSurvivesPartition");
    // the page judged the trace exactly as `check` does: the same text report
    let html = std::fs::read_to_string(&out).expect("report written");
    let data = page_data(&html);
    assert_eq!(data["text_report"].as_str(), Some(check.as_str()));
    assert_eq!(data["verdict"], "fail");
    // every state of every instance: the failing step's band ends in `holding` where it failed
    let bands = data["bands"].as_array().expect("bands");
    let failing: Vec<_> = bands.iter().filter(|b| b["verdict"] == "fail").collect();
    assert_eq!(failing.len(), 1, "{bands:?}");
    let states = failing[0]["states"].as_array().expect("states");
    assert_eq!(states.last().and_then(|s| s[0].as_str()), Some("holding"));
    assert_eq!(states.last().map(|s| &s[2]), Some(&failing[0]["decided"]));
    let Some(browser) = chromium() else { return };
    let d = dom(&browser, &out);
    assert_clean(&d);
    // the page opened on failure 1, whose item carries the deciding event's seq
    assert!(
        d.contains("data-failure=\"1\""),
        "not opened on the failure"
    );
    assert!(
        d.contains(&format!("<li class=\"fail selected\" data-seq=\"{seq}\">")),
        "failure item with seq {seq} missing"
    );
    // the explanation is the text report's: reason, state, deciding event, guard values
    let expl = d
        .split("<pre id=\"expl-text\">")
        .nth(1)
        .and_then(|s| s.split("</pre>").next())
        .unwrap_or("");
    assert!(
        expl.contains("reason: cluster did not stay whole"),
        "{expl}"
    );
    assert!(expl.contains(&format!("seq {seq} jmx left-a")), "{expl}");
    assert!(expl.contains("the guard saw:"), "{expl}");
    // the deciding event is selected in the table and shown in full
    assert!(
        d.contains(&format!(
            "<div class=\"row selected decisive\" data-seq=\"{seq}\">"
        )),
        "deciding event not selected in the table"
    );
    assert!(d.contains("<div id=\"detail\">"), "detail not shown");
    assert!(
        d.contains(&format!("seq {seq} · jmx · left-a")),
        "detail title"
    );
}

const HOSTILE_SVC: &str = "<img src=x onerror=\"document.body.dataset.pwned='svc'\">";
const HOSTILE_LOG: &str =
    "boom </script><script>document.body.dataset.pwned='log'</script><!-- \u{2028}";
const HOSTILE_SPEC: &str = r#"
monitor hostile {
  state watching {
    on log "stdout" where contains(message, "boom") => goto alarmed
  }
  state alarmed {
    on log "stdout" where contains(message, "again") => fail "<img src=x onerror=document.body.dataset.pwned=1> " + message
  }
}
"#;

fn hostile_trace(dir: &Path) {
    let mut w = TraceWriter::create(
        dir,
        Manifest {
            run_id: "<script>document.body.dataset.pwned='run'</script>".into(),
            started_ns: Some(1_000_000_000),
            ..Default::default()
        },
    )
    .expect("create trace");
    let t = |s: i64| 1_000_000_000 + s * 100_000_000;
    let events = [
        Event::new(t(1), "docker", "start").service(HOSTILE_SVC),
        Event::new(t(2), "log", "stdout")
            .service(HOSTILE_SVC)
            .message(HOSTILE_LOG),
        Event::new(t(3), "note", "</script>")
            .message("<svg onload=document.body.dataset.pwned='note'>")
            .data(&serde_json::json!({"html": "</script><script>document.body.dataset.pwned='data'</script>", "n": 1})),
        Event::new(t(4), "log", "stdout")
            .service(HOSTILE_SVC)
            .message("again <b onmouseover=x>bold</b> &amp; done"),
        Event::new(t(5), "stats", "stats")
            .service(HOSTILE_SVC)
            .data(&serde_json::json!({"cpu_percent": 1.5})),
        Event::new(t(6), "stats", "stats")
            .service(HOSTILE_SVC)
            .data(&serde_json::json!({"cpu_percent": 9.5})),
    ];
    for e in events {
        w.append(e).expect("append");
    }
    w.finish().expect("finish trace");
}

#[test]
fn hostile_trace_is_shown_as_text_and_runs_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let trace_dir = tmp
        .path()
        .join("hostile-<img src=x onerror=document.body.dataset.pwned=dir>");
    hostile_trace(&trace_dir);
    let spec = tmp.path().join("hostile.spec");
    std::fs::write(&spec, HOSTILE_SPEC).expect("write spec");
    let out = tmp.path().join("hostile.html");
    let o = run(&[
        "report",
        &trace_dir.to_string_lossy(),
        "--spec",
        &spec.to_string_lossy(),
        "-o",
        &out.to_string_lossy(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let html = std::fs::read_to_string(&out).expect("report written");
    // only the page's own two script elements: the data block and the code
    assert_eq!(
        html.matches("<script").count(),
        2,
        "script tags in the page"
    );
    assert_eq!(
        html.matches("</script>").count(),
        2,
        "script ends in the page"
    );
    assert!(!html.contains("<img src=x"), "raw payload in the page");
    let Some(browser) = chromium() else { return };
    let d = dom(&browser, &out);
    assert_clean(&d);
    assert!(!d.contains("data-pwned"), "a payload ran");
    // the payloads are there, as text: escaped in the DOM's serialisation
    let title_part = "&lt;img src=x onerror=document.body.dataset.pwned=1&gt; again &lt;b onmouseover=x&gt;bold&lt;/b&gt; &amp;amp; done";
    assert!(d.contains(title_part), "spec message not shown as text");
    assert!(
        d.contains("boom &lt;/script&gt;&lt;script&gt;document.body.dataset.pwned='log'&lt;/script&gt;&lt;!--"),
        "log line not shown as text"
    );
    assert!(
        d.contains("&lt;img src=x onerror=\"document.body.dataset.pwned='svc'\"&gt;"),
        "service name not shown as text"
    );
    assert!(
        d.contains("&lt;svg onload=document.body.dataset.pwned='note'&gt;"),
        "note not shown as text"
    );
    assert!(
        d.contains("data-failure=\"1\""),
        "not opened on the failure"
    );
}

#[test]
fn check_html_writes_one_report_per_trace() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    hostile_trace(&a);
    hostile_trace(&b);
    let spec = tmp.path().join("hostile.spec");
    std::fs::write(&spec, HOSTILE_SPEC).expect("write spec");
    // one trace: the file named
    let single = tmp.path().join("one.html");
    let o = run(&[
        "check",
        &a.to_string_lossy(),
        "--spec",
        &spec.to_string_lossy(),
        "--html",
        &single.to_string_lossy(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let one = std::fs::read_to_string(&single).expect("single report");
    assert!(one.contains("<script type=\"application/json\" id=\"report-data\">"));
    assert!(one.contains("\"verdict\":\"fail\""));
    // several: a directory of one file per trace
    let many = tmp.path().join("reports");
    let o = run(&[
        "check",
        &a.to_string_lossy(),
        &b.to_string_lossy(),
        "--spec",
        &spec.to_string_lossy(),
        "--html",
        &many.to_string_lossy(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    for name in ["a.html", "b.html"] {
        let h = std::fs::read_to_string(many.join(name)).expect(name);
        assert!(h.contains("\"verdict\":\"fail\""), "{name}");
    }
}

#[test]
fn table_filters_and_selection_follow_the_link() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("fail.html");
    let o = report_sample("ClusterSurvivesPartition", &out);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let Some(browser) = chromium() else { return };
    // every log line of right-a mentioning "Cluster Node", over the whole trace
    let page = PathBuf::from(format!(
        "{}#service=right-a&source=log&search=cluster%20node&all=1",
        out.display()
    ));
    let d = dom(&browser, &page);
    assert_clean(&d);
    let rows = table_rows(&d);
    assert!(!rows.is_empty(), "no rows");
    for (seq, cells) in &rows {
        // offset, time, seq, source, service, kind, message
        assert_eq!(cells[3], "log", "seq {seq}: {cells:?}");
        assert_eq!(cells[4], "right-a", "seq {seq}: {cells:?}");
        assert!(
            cells[6].to_lowercase().contains("cluster node"),
            "{cells:?}"
        );
    }
    // the count says how many of all matched; the sample's own log lines agree
    let html = std::fs::read_to_string(&out).expect("report");
    let data = page_data(&html);
    let expected = data["table"]
        .as_array()
        .expect("table")
        .iter()
        .filter(|r| {
            r["src"] == "log"
                && r["svc"] == "right-a"
                && r["msg"]
                    .as_str()
                    .is_some_and(|m| m.to_lowercase().contains("cluster node"))
        })
        .count();
    assert!(expected > 0);
    assert!(
        d.contains(&format!("<span id=\"f-count\">{expected} of ")),
        "count of {expected} not shown"
    );
    // a linked event is selected and shown in full instead of the failure's
    let (seq, _) = rows[0].clone();
    let d = dom(
        &browser,
        &PathBuf::from(format!("{}#all=1&seq={seq}", out.display())),
    );
    assert_clean(&d);
    assert!(d.contains(&format!("<div class=\"row selected\" data-seq=\"{seq}\">")));
    assert!(d.contains(&format!(
        "<h3 id=\"detail-title\">seq {seq} · log · right-a"
    )));
}
