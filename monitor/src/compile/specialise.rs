//! Guard specialisation: a compiled guard of a common shape (an event field, a `data` path or a
//! variable compared with a constant or matched by a regular expression without captures,
//! combined by `and`, `or`, `not`) turned into a [`Fast`] node, with
//! constant sub-guards folded; `None` for any other shape, which keeps the generic evaluator.
//! The tests check that both evaluators agree on random guards and events.

use crate::ast::BinOp;
use crate::fast::{not, Fast, FastKey, Operand, StrField, Tri};
use crate::ir::{Ex, X};
use crate::ops::binop;
use crate::value::{Value, V};

fn is_cmp(op: BinOp) -> bool {
    use BinOp::*;
    matches!(op, Eq | Ne | Lt | Le | Gt | Ge | In | NotIn)
}

/// The operand an expression reads, if it is an event field or a `data` path.
fn operand(x: &X) -> Option<Operand> {
    Some(match &x.k {
        Ex::Source => Operand::Str(StrField::Source),
        Ex::Service => Operand::Str(StrField::Service),
        Ex::Container => Operand::Str(StrField::Container),
        Ex::Kind => Operand::Str(StrField::Kind),
        Ex::Message => Operand::Str(StrField::Message),
        Ex::Ts => Operand::Ts,
        Ex::Seq => Operand::Seq,
        Ex::Data => Operand::Data(Box::new([])),
        Ex::Field(b, f) => match operand(b)? {
            Operand::Data(p) => {
                let mut v = p.into_vec();
                v.push(f.clone());
                Operand::Data(v.into())
            }
            _ => return None,
        },
        Ex::Index(b, i) => match (operand(b)?, &i.k) {
            (Operand::Data(p), Ex::Const(Value::Str(s))) => {
                let mut v = p.into_vec();
                v.push((**s).into());
                Operand::Data(v.into())
            }
            _ => return None,
        },
        _ => return None,
    })
}

/// What a guard's comparison reads: an operand, or a variable of the instance.
fn guard_operand(x: &X) -> Option<Operand> {
    match &x.k {
        Ex::Var(i) => Some(Operand::Var(*i)),
        _ => operand(x),
    }
}

/// The specialised form of a `per` key (an event field or `data` path, maybe `% N` with a
/// constant integer `N`), or `None` when it has another shape.
pub(super) fn specialise_key(per: &X) -> Option<FastKey> {
    match &per.k {
        Ex::Bin(BinOp::Rem, a, b) => match &b.k {
            Ex::Const(Value::Int(n)) => Some(FastKey::Mod(operand(a)?, *n)),
            _ => None,
        },
        _ => operand(per).map(FastKey::Operand),
    }
}

/// The specialised form of a guard, or `None` when it has another shape.
pub(super) fn specialise(guard: Option<&X>) -> Option<Fast> {
    match guard {
        None => Some(Fast::Const(Tri::T)),
        Some(g) => build(g),
    }
}

fn build(x: &X) -> Option<Fast> {
    Some(match &x.k {
        Ex::Const(Value::Bool(b)) => Fast::Const(Tri::of_bool(*b)),
        Ex::Const(Value::Null) => Fast::Const(Tri::N),
        Ex::Not(a) => match build(a)? {
            Fast::Const(t) => Fast::Const(not(t)),
            f => Fast::Not(Box::new(f)),
        },
        Ex::Bin(BinOp::And, a, b) => {
            let (l, r) = (build(a)?, build(b)?);
            match (l, r) {
                (Fast::Const(Tri::T), r) => r,
                (Fast::Const(t), _) => Fast::Const(t),
                (l, Fast::Const(Tri::T)) => l,
                (l, r) => Fast::And(Box::new(l), Box::new(r)),
            }
        }
        Ex::Bin(BinOp::Or, a, b) => {
            let (l, r) = (build(a)?, build(b)?);
            match (l, r) {
                (Fast::Const(Tri::T), _) => Fast::Const(Tri::T),
                (Fast::Const(_), r) => r,
                (_, Fast::Const(Tri::T)) => Fast::Const(Tri::T),
                (l, r) => Fast::Or(Box::new(l), Box::new(r)),
            }
        }
        Ex::Bin(op, a, b) if is_cmp(*op) => match (&a.k, &b.k) {
            (Ex::Const(l), Ex::Const(r)) => Fast::Const(match binop(*op, &V::of(l), &V::of(r)) {
                V::Bool(b) => Tri::of_bool(b),
                _ => return None,
            }),
            (_, Ex::Const(v)) => cmp(guard_operand(a)?, *op, v.clone(), false),
            (Ex::Const(v), _) => cmp(guard_operand(b)?, *op, v.clone(), true),
            _ => return None,
        },
        Ex::Match {
            negated,
            lhs,
            re,
            caps,
        } if caps.is_empty() => Fast::Regex {
            lhs: guard_operand(lhs)?,
            re: re.clone(),
            negated: *negated,
        },
        _ => return None,
    })
}

/// A comparison node, the dedicated one where the shape has one.
fn cmp(lhs: Operand, op: BinOp, val: Value, swapped: bool) -> Fast {
    use BinOp::*;
    match (&lhs, op, &val, swapped) {
        (Operand::Str(f), Eq | Ne, Value::Str(s), _) => Fast::StrEq {
            f: *f,
            val: (**s).into(),
            ne: op == Ne,
        },
        (Operand::Str(f), In | NotIn, Value::List(items), false)
            if items.iter().all(|i| matches!(i, Value::Str(_))) =>
        {
            Fast::StrIn {
                f: *f,
                vals: items
                    .iter()
                    .filter_map(|i| i.as_str().map(Into::into))
                    .collect(),
                negated: op == NotIn,
            }
        }
        (Operand::Ts | Operand::Seq, Eq | Ne | Lt | Le | Gt | Ge, Value::Int(i), _) => {
            // `c < x` is `x > c`
            let op = match (swapped, op) {
                (true, Lt) => Gt,
                (true, Le) => Ge,
                (true, Gt) => Lt,
                (true, Ge) => Le,
                (_, o) => o,
            };
            Fast::IntCmp {
                seq: lhs == Operand::Seq,
                op,
                val: *i,
            }
        }
        _ => Fast::Cmp {
            lhs,
            op,
            val,
            swapped,
        },
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::ir::{MonExpr, PatternC};
    use crate::ops::JsonCell;
    use crate::SourceFile;
    use proptest::prelude::*;
    use trace::EventRef;

    /// The variables of the test monitor, as its instances start: `v = 2`, `w = "a"`,
    /// `n = null`, `l = [1, 2]`.
    pub(crate) fn test_vars() -> Vec<Value> {
        vec![
            Value::Int(2),
            Value::Str("a".into()),
            Value::Null,
            Value::List(vec![Value::Int(1), Value::Int(2)].into()),
        ]
    }

    /// The compiled pattern of `on event where GUARD` in a monitor with the variables of
    /// [`test_vars`], if the spec compiles.
    pub(crate) fn try_pattern(guard: &str) -> Option<PatternC> {
        let text = format!(
            "monitor m {{\n  var v = 2\n  var w = \"a\"\n  var n = null\n  var l = [1, 2]\n  state s {{ on event where {guard} => fail \"x\" }}\n}}\n"
        );
        let spec = crate::compile(&[SourceFile::new("t.spec", &text)], &|_, _| None).ok()?;
        match spec.monitor("m").and_then(|m| m.runnable.clone()) {
            Some(MonExpr::Ref(r)) => Some(r.machine.states[0].handlers[0].pat.clone()),
            _ => None,
        }
    }

    fn pattern(guard: &str) -> PatternC {
        try_pattern(guard).unwrap_or_else(|| panic!("`{guard}` does not compile"))
    }

    /// The generic evaluator's verdict on a pattern (fast path disabled).
    fn generic(p: &PatternC, ev: &EventRef<'_>, json: &JsonCell) -> bool {
        let mut slow = p.clone();
        slow.fast = None;
        crate::eval::matches_generic(&slow, ev, json, &test_vars())
    }

    #[derive(Debug)]
    pub(crate) struct Ev {
        pub source: String,
        pub service: Option<String>,
        pub container: Option<String>,
        pub kind: String,
        pub message: Option<String>,
        pub data: Option<String>,
        pub ts: i64,
        pub seq: u64,
    }

    impl Ev {
        pub(crate) fn r(&self) -> EventRef<'_> {
            EventRef {
                ts_ns: self.ts,
                seq: self.seq,
                source: &self.source,
                service: self.service.as_deref(),
                container: self.container.as_deref(),
                kind: &self.kind,
                message: self.message.as_deref(),
                data: self.data.as_deref(),
            }
        }
    }

    fn word() -> impl Strategy<Value = String> {
        prop::sample::select(vec!["a", "b", "oom", "log", "", "B", "ab"]).prop_map(String::from)
    }

    fn scalar() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            "1",
            "2",
            "-3",
            "2.0",
            "2.5",
            "\"a\"",
            "\"b\"",
            "\"2\"",
            "true",
            "false",
            "null",
            "[1, 2]",
            "[\"a\"]",
            "{\"x\": 1}",
        ])
        .prop_map(String::from)
    }

    pub(crate) fn event() -> impl Strategy<Value = Ev> {
        let data = prop_oneof![
            Just(None),
            Just(Some("not json".to_string())),
            (scalar(), scalar(), scalar()).prop_map(|(a, b, c)| Some(format!(
                "{{\"x\": {a}, \"y\": {{\"z\": {b}}}, \"a\": {c}}}"
            ))),
            scalar().prop_map(Some),
        ];
        (
            (word(), prop::option::of(word()), prop::option::of(word())),
            (word(), prop::option::of(word()), data),
            (-3i64..4, 0u64..4),
        )
            .prop_map(
                |((source, service, container), (kind, message, data), (ts, seq))| Ev {
                    source,
                    service,
                    container,
                    kind,
                    message,
                    data,
                    ts,
                    seq,
                },
            )
    }

    fn atom() -> impl Strategy<Value = String> {
        let lhs = prop::sample::select(vec![
            "source",
            "service",
            "container",
            "kind",
            "message",
            "seq",
            "ts",
            "data",
            "data.x",
            "data.y.z",
            "data[\"a\"]",
            "data.x.nope",
            "v",
            "w",
            "n",
            "l",
        ]);
        let op = prop::sample::select(vec!["==", "!=", "<", "<=", ">", ">=", "in", "not in"]);
        let rhs = prop::sample::select(vec![
            "\"a\"",
            "\"oom\"",
            "\"\"",
            "\"2\"",
            "1",
            "2",
            "-3",
            "2.0",
            "2.5",
            "true",
            "null",
            "[\"a\", \"b\"]",
            "[\"oom\"]",
            "[1, 2]",
            "[\"a\", 2, null]",
            "[]",
        ]);
        let re = prop::sample::select(vec![
            "\"a\"",
            "\"^o\"",
            "\"^$\"",
            "\"[0-9]\"",
            "\"(?i)OOM\"",
        ]);
        let re_op = prop::sample::select(vec!["~", "!~"]);
        prop_oneof![
            (lhs.clone(), re_op, re).prop_map(|(l, o, r)| format!("{l} {o} {r}")),
            (lhs.clone(), op.clone(), rhs.clone()).prop_map(|(l, o, r)| format!("{l} {o} {r}")),
            (rhs.clone(), op, lhs).prop_map(|(r, o, l)| format!("{r} {o} {l}")),
            prop::sample::select(vec!["true", "false", "null", "1 < 2", "\"a\" == \"b\""])
                .prop_map(String::from),
        ]
    }

    pub(crate) fn guard() -> impl Strategy<Value = String> {
        atom().prop_recursive(4, 16, 2, |inner| {
            prop_oneof![
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) and ({b})")),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) or ({b})")),
                inner.prop_map(|a| format!("not ({a})")),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]
        /// Every guard the specialiser accepts agrees with the generic evaluator.
        #[test]
        fn fast_agrees_with_generic(g in guard(), evs in prop::collection::vec(event(), 12)) {
            let p = try_pattern(&g);
            prop_assume!(p.is_some(), "rejected by the checker");
            let p = p.unwrap_or_else(|| unreachable!());
            if let Some(f) = &p.fast {
                for e in &evs {
                    let ev = e.r();
                    let (j1, j2) = (JsonCell::new(), JsonCell::new());
                    prop_assert_eq!(f.holds(&ev, &j1, &test_vars()), generic(&p, &ev, &j2), "guard {} on {:?}", g, ev);
                }
            }
        }
    }

    fn ev0() -> Ev {
        Ev {
            source: "log".into(),
            service: Some("svc".into()),
            container: None,
            kind: "oom".into(),
            message: Some("hello".into()),
            data: Some(r#"{"x": 2, "y": {"z": "q"}}"#.into()),
            ts: 5,
            seq: 7,
        }
    }

    /// Each dedicated node is chosen for its shape and agrees with the generic evaluator on
    /// events where it holds and where it does not.
    fn check_node(g: &str, want: fn(&Fast) -> bool) {
        let p = pattern(g);
        let f = p
            .fast
            .clone()
            .unwrap_or_else(|| panic!("{g} not specialised"));
        assert!(want(&f), "{g}: unexpected node {f:?}");
        let a = ev0();
        let mut b = ev0();
        b.kind = "start".into();
        b.service = None;
        b.message = None;
        b.data = None;
        b.seq = 100;
        b.ts = -1;
        let mut seen = Vec::new();
        for e in [&a, &b] {
            let ev = e.r();
            let fast = f.holds(&ev, &JsonCell::new(), &test_vars());
            assert_eq!(fast, generic(&p, &ev, &JsonCell::new()), "{g} on {ev:?}");
            seen.push(fast);
        }
        assert_ne!(seen[0], seen[1], "{g}: both events give {}", seen[0]);
    }

    #[test]
    fn dedicated_nodes() {
        check_node("kind == \"oom\"", |f| {
            matches!(
                f,
                Fast::StrEq {
                    f: StrField::Kind,
                    ne: false,
                    ..
                }
            )
        });
        check_node("\"svc\" != service", |f| {
            matches!(
                f,
                Fast::StrEq {
                    f: StrField::Service,
                    ne: true,
                    ..
                }
            )
        });
        check_node("kind in [\"oom\", \"die\"]", |f| {
            matches!(f, Fast::StrIn { negated: false, .. })
        });
        check_node("kind not in [\"oom\", \"die\"]", |f| {
            matches!(f, Fast::StrIn { negated: true, .. })
        });
        check_node("seq < 10", |f| {
            matches!(
                f,
                Fast::IntCmp {
                    seq: true,
                    op: BinOp::Lt,
                    val: 10
                }
            )
        });
        check_node("0 <= ts", |f| {
            matches!(
                f,
                Fast::IntCmp {
                    seq: false,
                    op: BinOp::Ge,
                    val: 0
                }
            )
        });
        check_node("data.x >= 2", |f| {
            matches!(
                f,
                Fast::Cmp {
                    lhs: Operand::Data(_),
                    ..
                }
            )
        });
        check_node(
            "data.y[\"z\"] == \"q\"",
            |f| matches!(f, Fast::Cmp { lhs: Operand::Data(p), .. } if p.len() == 2),
        );
        check_node("message > \"a\"", |f| {
            matches!(
                f,
                Fast::Cmp {
                    lhs: Operand::Str(StrField::Message),
                    ..
                }
            )
        });
        check_node(
            "kind == \"oom\" and not (service == \"x\") or seq == 1",
            |f| matches!(f, Fast::Or(..)),
        );
        check_node("message ~ \"^hel+o$\"", |f| {
            matches!(
                f,
                Fast::Regex {
                    lhs: Operand::Str(StrField::Message),
                    negated: false,
                    ..
                }
            )
        });
        check_node("kind !~ \"o{2}\"", |f| {
            matches!(f, Fast::Regex { negated: true, .. })
        });
        check_node(
            "v > 1 and kind == \"oom\"",
            |f| matches!(f, Fast::And(a, _) if matches!(**a, Fast::Cmp { lhs: Operand::Var(0), .. })),
        );
    }

    /// A guard over the instance's variables reads them, not the event.
    #[test]
    fn variables_are_read_from_the_instance() {
        let p = pattern("v > 1 and w == \"a\"");
        let f = p.fast.clone().expect("specialised");
        let e = ev0();
        let j = JsonCell::new();
        assert!(f.holds(&e.r(), &j, &test_vars()));
        let mut vars = test_vars();
        vars[0] = Value::Int(1);
        assert!(!f.holds(&e.r(), &j, &vars));
        // an instance without the variable reads null: no match
        assert!(!f.holds(&e.r(), &j, &[]));
    }

    #[test]
    fn constants_fold() {
        assert_eq!(pattern("1 < 2").fast, Some(Fast::Const(Tri::T)));
        assert_eq!(
            pattern("true and kind == \"a\"").fast,
            pattern("kind == \"a\"").fast
        );
        assert_eq!(
            pattern("false and kind == \"a\"").fast,
            Some(Fast::Const(Tri::F))
        );
        assert_eq!(
            pattern("\"a\" == \"b\" or seq < 3").fast,
            pattern("seq < 3").fast
        );
        assert_eq!(pattern("not null").fast, Some(Fast::Const(Tri::N)));
    }

    #[test]
    fn other_shapes_stay_generic() {
        for g in [
            "message ~ \"(?P<x>[a-z]+)\"",
            "len(message) > 2",
            "kind == service",
            "data.x + 1 > 2",
        ] {
            assert!(pattern(g).fast.is_none(), "{g}");
        }
    }
}
