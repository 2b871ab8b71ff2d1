//! Property tests of the Prometheus exposition parser: rendering arbitrary families (with label
//! values full of `\`, `"` and newlines, special float values and timestamps) and parsing them
//! back gives the same families; arbitrary text never panics the parser.

use proptest::prelude::*;
use sensor_protocols::prom::{escape_label_value, parse, parse_strict, MetricType};

fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z_:][a-zA-Z0-9_:]{0,12}"
}

fn label_name() -> impl Strategy<Value = String> {
    "[a-zA-Z_][a-zA-Z0-9_]{0,8}"
}

fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        any::<f64>().prop_filter("finite", |v| v.is_finite()),
        (-1_000_000i64..1_000_000).prop_map(|v| v as f64),
    ]
}

fn render_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        // Rust's shortest round-trip representation (exponent form for large values is `1e300`).
        format!("{v:?}")
    }
}

type Sample = (Vec<(String, String)>, f64, Option<i64>);

fn samples() -> impl Strategy<Value = Vec<Sample>> {
    prop::collection::vec(
        (
            prop::collection::btree_map(label_name(), "[ -~\n\\\\\"é]{0,10}", 0..4)
                .prop_map(|m| m.into_iter().collect::<Vec<_>>()),
            value(),
            prop::option::of(any::<i64>()),
        ),
        1..5,
    )
}

proptest! {
    #[test]
    fn render_then_parse_round_trips(
        fams in prop::collection::vec((name(), prop::sample::select(vec!["counter", "gauge", "untyped"]), "[ -~]{0,20}", samples()), 1..5)
    ) {
        // Distinct family names, none a prefix-with-suffix of another.
        let mut seen = std::collections::HashSet::new();
        let fams: Vec<_> = fams.into_iter().filter(|f| seen.insert(f.0.clone())).collect();
        let mut text = String::new();
        for (n, ty, help, ss) in &fams {
            text.push_str(&format!("# HELP {n} {}\n# TYPE {n} {ty}\n", help.replace('\\', "\\\\")));
            for (labels, v, ts) in ss {
                text.push_str(n);
                if !labels.is_empty() {
                    let ls: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape_label_value(v))).collect();
                    text.push_str(&format!("{{{}}}", ls.join(",")));
                }
                text.push(' ');
                text.push_str(&render_value(*v));
                if let Some(t) = ts {
                    text.push_str(&format!(" {t}"));
                }
                text.push('\n');
            }
        }
        let parsed = parse_strict(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(parsed.len(), fams.len());
        for (p, (n, ty, help, ss)) in parsed.iter().zip(&fams) {
            prop_assert_eq!(&p.name, n);
            prop_assert_eq!(p.kind.as_str(), *ty);
            prop_assert_eq!(p.help.as_deref(), Some(help.trim_end_matches([' ', '\t']).trim_start_matches([' ', '\t'])));
            prop_assert_eq!(p.samples.len(), ss.len());
            for (ps, (labels, v, ts)) in p.samples.iter().zip(ss) {
                prop_assert_eq!(&ps.labels, labels);
                prop_assert_eq!(ps.timestamp_ms, *ts);
                prop_assert!(ps.value == *v || (ps.value.is_nan() && v.is_nan()), "{} vs {}", ps.value, v);
            }
        }
    }

    #[test]
    fn arbitrary_text_never_panics(text in "(?s).{0,400}") {
        let (fams, errs) = parse(&text);
        // Every non-comment, non-blank line is either a sample or an error.
        let lines = text.lines().filter(|l| { let t = l.trim_matches([' ', '\t', '\r']); !t.is_empty() && !t.starts_with('#') }).count();
        let samples: usize = fams.iter().map(|f| f.samples.len()).sum();
        let sample_errs = errs.len();
        prop_assert!(samples + sample_errs >= lines);
    }

    #[test]
    fn histogram_lines_stay_in_their_family(n in 1usize..6, name in "[a-z]{1,8}") {
        let mut text = format!("# TYPE {name} histogram\n");
        for i in 0..n {
            text.push_str(&format!("{name}_bucket{{le=\"{i}\"}} {i}\n"));
        }
        text.push_str(&format!("{name}_bucket{{le=\"+Inf\"}} {n}\n{name}_sum 3.5\n{name}_count {n}\n"));
        let fams = parse_strict(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(fams.len(), 1);
        prop_assert_eq!(fams[0].kind, MetricType::Histogram);
        prop_assert_eq!(fams[0].samples.len(), n + 3);
    }
}
