//! `--junit FILE`: JUnit XML, written with `quick-junit`: one test suite per trace and one test
//! case per monitor or experiment step; a fail is a `<failure>` whose text is the explanation, an
//! inconclusive is `<skipped>` with the reason, a step never reached is `<skipped>`; a trace that
//! could not be read is a suite with one `<error>` case.

use monitor::Verdict;
use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use super::text::explain;
use crate::fleet::Outcome;

/// One test case: its verdict (`None`: never reached), the one-line reason and the explanation.
fn case(class: &str, name: &str, verdict: Option<Verdict>, message: &str, body: &str) -> TestCase {
    let status = match verdict {
        Some(Verdict::Accept) => TestCaseStatus::success(),
        Some(Verdict::Fail) => {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
            s.set_message(message).set_description(body);
            s
        }
        Some(Verdict::Inconclusive) => {
            let mut s = TestCaseStatus::skipped();
            s.set_message(format!("inconclusive: {message}"));
            s
        }
        None => {
            let mut s = TestCaseStatus::skipped();
            s.set_message("not reached");
            s
        }
    };
    let mut c = TestCase::new(name, status);
    c.set_classname(class);
    c
}

/// The JUnit XML document for the judged traces, in their order.
pub fn render(results: &[Outcome]) -> Result<String, quick_junit::SerializeError> {
    let mut report = Report::new("analyzer check");
    for (path, r) in results {
        let j = match r {
            Ok(j) => j,
            Err(e) => {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
                s.set_message(crate::fleet::one_line(&e.to_string()));
                let mut c = TestCase::new("read", s);
                c.set_classname("trace");
                let mut suite = TestSuite::new(path.display().to_string());
                suite.add_test_case(c);
                report.add_test_suite(suite);
                continue;
            }
        };
        let start = j.origin_ns;
        let mut suite = TestSuite::new(j.trace.display().to_string());
        for m in &j.report.monitors {
            let e = m.primary_explanation();
            suite.add_test_case(case(
                "monitor",
                &m.name,
                Some(m.verdict),
                &e.map(|e| e.reason.clone()).unwrap_or_default(),
                &e.map(|e| explain(e, start, &j.context, "").join("\n"))
                    .unwrap_or_default(),
            ));
        }
        for e in &j.report.experiments {
            for s in &e.steps {
                let ex = s.monitor.as_ref().and_then(|m| m.primary_explanation());
                suite.add_test_case(case(
                    &format!("experiment.{}", e.name),
                    &format!("{:02} {}", s.index + 1, s.text),
                    s.verdict,
                    s.reason.as_deref().unwrap_or_default(),
                    &ex.map(|e| explain(e, start, &j.context, "").join("\n"))
                        .unwrap_or_else(|| s.reason.clone().unwrap_or_default()),
                ));
            }
        }
        report.add_test_suite(suite);
    }
    report.to_string()
}
