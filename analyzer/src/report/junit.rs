//! `--junit FILE`: JUnit XML, one test suite per trace and one test case per monitor or
//! experiment step; a fail is a `<failure>` whose text is the explanation, an inconclusive is
//! `<skipped>` with the reason, a step never reached is `<skipped>`; a trace that could not be
//! read is a suite with one `<error>` case.

use super::text::explain;
use crate::fleet::Outcome;
use monitor::Verdict;

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => {}
            c => o.push(c),
        }
    }
    o
}

struct Case {
    class: String,
    name: String,
    verdict: Option<Verdict>,
    message: String,
    body: String,
}

pub fn render(results: &[Outcome]) -> String {
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n");
    for (path, r) in results {
        let j = match r {
            Ok(j) => j,
            Err(e) => {
                x.push_str(&format!(
                    "  <testsuite name=\"{}\" tests=\"1\" failures=\"0\" errors=\"1\" skipped=\"0\">\n    <testcase classname=\"trace\" name=\"read\">\n      <error message=\"{}\"/>\n    </testcase>\n  </testsuite>\n",
                    esc(&path.display().to_string()),
                    esc(&crate::fleet::one_line(&e.to_string()))
                ));
                continue;
            }
        };
        let start = j.origin_ns;
        let mut cases = Vec::new();
        for m in &j.report.monitors {
            let e = m.primary_explanation();
            cases.push(Case {
                class: "monitor".into(),
                name: m.name.clone(),
                verdict: Some(m.verdict),
                message: e.map(|e| e.reason.clone()).unwrap_or_default(),
                body: e
                    .map(|e| explain(e, start, &j.context, "").join("\n"))
                    .unwrap_or_default(),
            });
        }
        for e in &j.report.experiments {
            for s in &e.steps {
                let ex = s.monitor.as_ref().and_then(|m| m.primary_explanation());
                cases.push(Case {
                    class: format!("experiment.{}", e.name),
                    name: format!("{:02} {}", s.index + 1, s.text),
                    verdict: s.verdict,
                    message: s.reason.clone().unwrap_or_default(),
                    body: ex
                        .map(|e| explain(e, start, &j.context, "").join("\n"))
                        .unwrap_or_else(|| s.reason.clone().unwrap_or_default()),
                });
            }
        }
        let failures = cases
            .iter()
            .filter(|c| c.verdict == Some(Verdict::Fail))
            .count();
        let skipped = cases
            .iter()
            .filter(|c| c.verdict != Some(Verdict::Accept) && c.verdict != Some(Verdict::Fail))
            .count();
        x.push_str(&format!(
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\">\n",
            esc(&j.trace.display().to_string()),
            cases.len()
        ));
        for c in cases {
            x.push_str(&format!(
                "    <testcase classname=\"{}\" name=\"{}\"",
                esc(&c.class),
                esc(&c.name)
            ));
            match c.verdict {
                Some(Verdict::Accept) => x.push_str("/>\n"),
                Some(Verdict::Fail) => x.push_str(&format!(
                    ">\n      <failure message=\"{}\">{}</failure>\n    </testcase>\n",
                    esc(&c.message),
                    esc(&c.body)
                )),
                Some(Verdict::Inconclusive) => x.push_str(&format!(
                    ">\n      <skipped message=\"inconclusive: {}\"/>\n    </testcase>\n",
                    esc(&c.message)
                )),
                None => {
                    x.push_str(">\n      <skipped message=\"not reached\"/>\n    </testcase>\n")
                }
            }
        }
        x.push_str("  </testsuite>\n");
    }
    x.push_str("</testsuites>\n");
    x
}
