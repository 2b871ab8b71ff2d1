//! Hostile spec files (issue 14, spec-file class): every input gives a diagnostic at
//! file:line:col or a working spec, never a panic, a stack overflow, exponential time or memory.
//! Deep inputs are checked on a 2 MiB thread (what the test harness gives) and an 8 MiB one (the
//! main thread of the binaries), in the debug build whose frames are the largest. Also replays
//! the fuzz corpus of `monitor/fuzz` through parse+check, so CI runs it on stable.

mod common;
use common::*;
use monitor::{compile, Diagnostics, SourceFile, Spec, Verdict};
use serde_json::json;
use std::path::Path;

fn compile_named(text: &str) -> Result<Spec, Diagnostics> {
    compile(&[SourceFile::new("h.spec", text)], &|_, _| None)
}

/// Runs `f` on a thread with `stack` bytes of stack; a stack overflow aborts the test binary.
fn on_stack<T: Send + 'static>(stack: usize, f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(stack)
        .spawn(f)
        .expect("spawn test thread")
        .join()
        .expect("test thread panicked")
}

const MIB: usize = 1 << 20;

/// Compiles `text` on a 2 MiB and an 8 MiB stack; returns the rendered errors (None: compiled)
/// and, when it compiled, runs it over one event on the 2 MiB stack as well.
fn check_both(text: String) -> Option<String> {
    let mut out = None;
    for stack in [2 * MIB, 8 * MIB] {
        let t = text.clone();
        out = on_stack(stack, move || match compile_named(&t) {
            Ok(s) => {
                let e = log(1, 1.0, "a", "x").data(&json!({"v": 1, "l": [1, 2]}));
                let _ = run(&s, monitors(&[]), &[e], None);
                None
            }
            Err(d) => Some(d.render()),
        });
    }
    out
}

fn guard_spec(guard: &str) -> String {
    format!("monitor m = never log where {guard}\n")
}

/// Each construct that nests, at `n` levels.
fn nested(kind: &str, n: usize) -> String {
    let rep = |s: &str| s.repeat(n);
    match kind {
        "parens" => guard_spec(&format!("{}true{}", rep("("), rep(")"))),
        "not" => guard_spec(&format!("{}true", rep("not "))),
        "neg" => guard_spec(&format!("{}data.v == 1", rep("- "))),
        "list" => guard_spec(&format!("1 in {}1{}", rep("["), rep("]"))),
        "if" => guard_spec(&format!(
            "{}true{}",
            rep("if true then "),
            rep(" else false")
        )),
        "call" => guard_spec(&format!("{}1{} == 1", rep("abs("), rep(")"))),
        "field" => guard_spec(&format!("data{} == 1", rep(".x"))),
        "index" => guard_spec(&format!("data{} == 1", rep("[0]"))),
        "and" => guard_spec(&format!("true{}", rep(" and true"))),
        "or" => guard_spec(&format!("false{}", rep(" or false"))),
        "plus" => guard_spec(&format!("data.v{} == 1", rep(" + 1"))),
        "times" => guard_spec(&format!("data.v{} == 1", rep(" * 1"))),
        "mand" => format!("monitor a = never log\nmonitor m = a{}\n", rep(" and a")),
        "mnot" => format!("monitor a = never log\nmonitor m = {}a\n", rep("not ")),
        "mparens" => format!(
            "monitor a = never log\nmonitor m = {}a{}\n",
            rep("("),
            rep(")")
        ),
        "type" => format!("monitor m(x: {}int{}) = never log\n", rep("["), rep("]")),
        other => panic!("no construct {other}"),
    }
}

const KINDS: &[&str] = &[
    "parens", "not", "neg", "list", "if", "call", "field", "index", "and", "or", "plus", "times",
    "mand", "mnot", "mparens", "type",
];

/// Monitor expressions have their own, smaller limit (32).
fn is_monitor_kind(k: &str) -> bool {
    matches!(k, "mand" | "mnot" | "mparens")
}

#[test]
fn nesting_below_the_limit_compiles_and_runs_on_small_stacks() {
    for k in KINDS {
        let n = if is_monitor_kind(k) { 30 } else { 60 };
        if let Some(err) = check_both(nested(k, n)) {
            panic!("{k} at {n} levels must compile:\n{err}");
        }
    }
}

#[test]
fn nesting_above_the_limit_is_refused_at_a_position() {
    for k in KINDS {
        let (above, msg) = if is_monitor_kind(k) {
            (34, "monitor expression nested more than 32 levels deep")
        } else {
            (66, "expression nested more than 64 levels deep")
        };
        for n in [above, 1_000, 20_000] {
            let err = check_both(nested(k, n))
                .unwrap_or_else(|| panic!("{k} at {n} levels must be refused"));
            assert!(err.contains(msg), "{k} at {n}: {err}");
            assert!(err.contains("error: h.spec:"), "{k} at {n}: {err}");
        }
    }
}

#[test]
fn the_depth_limit_is_exact_for_parentheses_and_chains() {
    // `true and true ...` with 63 `and`s is 64 levels; one more is refused, at the operand
    // that made the chain too deep (the 65th `true`, column 605 of line 1)
    assert_eq!(check_both(nested("and", 63)), None);
    let err = check_both(nested("and", 64)).expect("64 `and`s: 65 levels");
    assert!(err.contains("error: h.spec:1:605:"), "{err}");
    // the guard is one level of recursion, each parenthesis one more
    assert!(check_both(nested("parens", 63)).is_none());
    let err = check_both(nested("parens", 64)).expect("65 levels");
    assert!(err.contains("error: h.spec:1:93:"), "{err}");
}

#[test]
fn doubling_macros_are_refused_not_expanded() {
    let mut text = String::from("def f0(x) = x == 1\n");
    for i in 1..=22 {
        text.push_str(&format!("def f{i}(x) = f{}(x) and f{}(x)\n", i - 1, i - 1));
    }
    text.push_str("monitor m = never log where f22(data.v)\n");
    let err = check_both(text).expect("exponential expansion must be refused");
    assert!(err.contains("expands to more than"), "{err}");
}

#[test]
fn doubling_composite_monitors_are_refused() {
    let mut text = String::from("monitor m0 = never log\n");
    for i in 1..=24 {
        text.push_str(&format!("monitor m{i} = m{} and m{}\n", i - 1, i - 1));
    }
    let err = check_both(text).expect("exponential instantiation must be refused");
    assert!(err.contains("expands to more than"), "{err}");
}

#[test]
fn macros_nested_in_arguments_are_bounded_after_expansion() {
    // each macro puts its argument 50 levels down: 4 of them are 200 deep
    let mut text = format!("def d0(x) = {}x == 1\n", "not ".repeat(50));
    for i in 1..4 {
        text.push_str(&format!(
            "def d{i}(x) = {}d{}(x)\n",
            "not ".repeat(50),
            i - 1
        ));
    }
    text.push_str("monitor m = never log where d3(data.v)\n");
    let err = check_both(text).expect("too deep after expansion");
    assert!(err.contains("after macro expansion"), "{err}");
}

#[test]
fn doubling_constants_are_refused() {
    let mut text = String::from("let c0 = \"ab\"\n");
    for i in 1..=40 {
        text.push_str(&format!("let c{i} = c{} + c{}\n", i - 1, i - 1));
    }
    text.push_str("monitor m = never log where message == c40\n");
    let err = check_both(text).expect("a constant of 2^41 characters");
    assert!(err.contains("grows past"), "{err}");
}

#[test]
fn long_let_chains_are_refused_not_recursed() {
    let mut text = String::from("let c0 = 1\n");
    for i in 1..=500 {
        text.push_str(&format!("let c{i} = c{}\n", i - 1));
    }
    text.push_str("monitor m = never log where data.v == c500\n");
    let err = check_both(text).expect("500 chained constants");
    assert!(err.contains("is defined through more than"), "{err}");
}

#[test]
fn non_ascii_characters_never_panic_and_are_located() {
    // a byte-order mark at the start is skipped
    let ok = "\u{feff}monitor m = never log where message == \"é≠😀\"\n";
    assert_eq!(check_both(ok.to_string()), None);
    // and not counted in line 1's columns nor shown in its source line
    let err = check_both("\u{feff}monitor m = never log where nope == 1\n".into()).expect("bad");
    assert!(err.contains("h.spec:1:29: unknown name"), "{err}");
    assert!(!err.contains('\u{feff}'), "{err}");
    for (text, line_col) in [
        ("monitor ñame = never log\n", "h.spec:1:9"),
        (
            "monitor m = never log\nmonitor n = never log where data.v ≠ 1\n",
            "h.spec:2:36",
        ),
        ("monitor m = never log where 😀 == 1\n", "h.spec:1:29"),
        ("monitor m = never log where x =😀\n", "h.spec:1:32"),
        ("monitor m = never log\n\u{feff}", "h.spec:2:1"),
    ] {
        let err = check_both(text.to_string()).expect("non-ASCII outside a string");
        assert!(err.contains(line_col), "{text:?} -> {err}");
    }
    // every 2-, 3- and 4-byte character at every position of a spec: no panic
    let base = "monitor m(n: int = 3) { state s timeout 3s { on log \"x\" where data.v >= n => goto s } }\n";
    for ch in ['é', '≠', '😀', '\u{feff}', '\u{85}', '\u{2028}'] {
        for (i, _) in base.char_indices() {
            let mut t = base.to_string();
            t.insert(i, ch);
            let _ = compile_named(&t);
        }
    }
}

#[test]
fn cr_and_crlf_line_endings_are_line_breaks() {
    // old Mac: a comment ends at a lone CR, so the monitor on line 2 is read
    let cr = "# first\rmonitor m = never log where nope == 1\r";
    let err = check_both(cr.to_string()).expect("unknown name on line 2");
    assert!(
        err.contains("error: h.spec:2:29: unknown name `nope`"),
        "{err}"
    );
    let crlf = "# first\r\n\r\nmonitor m = never log where nope == 1\r\n";
    let err = check_both(crlf.to_string()).expect("unknown name on line 3");
    assert!(
        err.contains("error: h.spec:3:29: unknown name `nope`"),
        "{err}"
    );
    assert!(!err.contains('\r'), "{err:?}");
}

fn verdict(text: &str, v: i64) -> Verdict {
    let s = spec(text);
    let e = log(1, 1.0, "a", "x").data(&json!({ "v": v }));
    run(&s, monitors(&[]), &[e], None).monitors[0].verdict
}

#[test]
fn integer_overflow_is_null_everywhere() {
    let min = i64::MIN;
    for guard in [
        "is_null(-data.v)",
        "is_null(abs(data.v))",
        "is_null(data.v - 1)",
        "is_null(data.v * 2)",
        "is_null(data.v % -1)",
    ] {
        let text = guard_spec(guard);
        assert_eq!(verdict(&text, min), Verdict::Fail, "{guard} on i64::MIN");
        assert_eq!(verdict(&text, 5), Verdict::Accept, "{guard} on 5");
    }
    // by zero: null for every value
    for guard in ["is_null(data.v % 0)", "is_null(data.v / 0)"] {
        assert_eq!(verdict(&guard_spec(guard), 5), Verdict::Fail, "{guard}");
    }
    // `/` always divides as floats: i64::MIN / -1 is 2^63, not an overflow
    let text = guard_spec("data.v / -1 == 9223372036854775808.0");
    assert_eq!(verdict(&text, min), Verdict::Fail);
    // constants: overflow is null too, not a panic (debug) or a wrapped value (release)
    for c in [
        "9223372036854775807 + 1",
        "-9223372036854775807 - 2",
        "9223372036854775807 * 2",
        "-(-9223372036854775807 - 1)",
    ] {
        let text = format!("let c = {c}\nmonitor m = never log where is_null(c)\n");
        assert_eq!(verdict(&text, 0), Verdict::Fail, "{c}");
    }
}

#[test]
fn negative_durations_are_refused_at_check_time() {
    for (text, line_col, what) in [
        (
            "monitor m {\n  state s timeout -3s { on timeout => fail }\n}\n",
            "h.spec:2:19",
            "a timeout cannot be negative, found -3s",
        ),
        (
            "let t = 1s - 5s\nmonitor m {\n  state s { on log => goto s timeout t }\n}\n",
            "h.spec:3:38",
            "a timeout cannot be negative, found -4s",
        ),
        (
            "monitor m {\n  window w = count over last -10s\n  state s { on log where w > 1 => fail }\n}\n",
            "h.spec:2:30",
            "a window length cannot be negative, found -10s",
        ),
        (
            "monitor m = eventually log within -2s\n",
            "h.spec:1:35",
            "a timeout cannot be negative, found -2s",
        ),
    ] {
        let err = check_both(text.to_string()).expect("negative duration");
        assert!(err.contains(line_col), "{text}\n{err}");
        assert!(err.contains(what), "{text}\n{err}");
    }
    // zero stays allowed
    assert_eq!(
        check_both("monitor m {\n  state s timeout 0s { on timeout => fail }\n}\n".into()),
        None
    );
}

/// Every file of the fuzz corpus and of the crash regressions goes through parse+check
/// without a panic (the fuzz target does exactly this).
#[test]
fn fuzz_corpus_replays_without_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut n = 0;
    for dir in ["corpus/spec_check", "regressions/spec_check"] {
        let Ok(rd) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for f in rd {
            let p = f.expect("corpus entry").path();
            let bytes = std::fs::read(&p).expect("corpus file");
            let text = String::from_utf8_lossy(&bytes).into_owned();
            on_stack(2 * MIB, move || {
                let _ = compile_named(&text);
            });
            n += 1;
        }
    }
    assert!(n >= 10, "only {n} corpus files under {}", root.display());
}

#[test]
fn strings_doubled_on_every_event_stop_at_null() {
    // 30 doublings of 1 KiB would be 1 TiB: past 16 MiB the sum is null and the guard sees it
    let text = "monitor m {\n  var s = \"\"\n  state a {\n    on log where s == \"\" => set s = message\n    on log where is_null(s) => fail \"null\"\n    on log => set s = s + s\n  }\n}\n";
    let s = spec(text);
    let line = "x".repeat(1024);
    let events: Vec<_> = (1..=40).map(|i| log(i, i as f64, "a", &line)).collect();
    let r = run(&s, monitors(&[]), &events, None);
    assert_eq!(r.monitors[0].verdict, Verdict::Fail);
}
