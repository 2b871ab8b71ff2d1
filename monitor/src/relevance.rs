//! Which events can change a selection's verdicts ([`Relevance`]), as a condition over an
//! event's fields computed from the compiled spec, and the row groups of a trace it rules out
//! by their statistics ([`Relevance::may_matter`]): `analyzer check` reads only the others.
//!
//! An event changes a monitor only through a handler whose pattern it matches (source, kind,
//! `at`, guard): the machine's instances, variables, captures and state path move nowhere else.
//! Two things look at every event of a machine's sources and make all of them relevant: a
//! `per` key (an instance is created on a new key's first event, matched or not) and windows
//! (every event evicts expired samples, and an unpatterned window counts it). An experiment's
//! own machinery reads the `fault` and `recorder` events; its `expect` monitors are monitors
//! like the others. Events that match nothing move trace time only, which the runner is given
//! without them ([`crate::Runner::advance_to`]); timeouts fire at their deadlines either way.
//! A guard that is not specialised ([`crate::fast`]) counts as true: the analysis only ever
//! rules out what the statistics prove.

use crate::ast::BinOp;
use crate::fast::{Fast, StrField, Tri};
use crate::ir::{Machine, MonExpr};
use trace::{GroupStats, StrStats};

/// The events a selection may react to: one of `alts` holds (`None`: any event).
#[derive(Debug, Clone)]
pub struct Relevance {
    alts: Option<Vec<Fast>>,
}

impl Relevance {
    /// Every event may matter.
    pub fn everything() -> Relevance {
        Relevance { alts: None }
    }

    /// No event matters (an empty selection).
    pub fn nothing() -> Relevance {
        Relevance {
            alts: Some(Vec::new()),
        }
    }

    /// True when no event can be ruled out.
    pub fn is_everything(&self) -> bool {
        self.alts.is_none()
    }

    /// Widens `self` by the events of `sources` (an experiment's own `fault` and `recorder`
    /// events; `None`: every event).
    pub(crate) fn add_sources(&mut self, sources: Option<&[&str]>) {
        match sources {
            Some(s) => self.push(Fast::StrIn {
                f: StrField::Source,
                vals: s.iter().map(|x| Box::from(*x)).collect(),
                negated: false,
            }),
            None => self.alts = None,
        }
    }

    fn push(&mut self, f: Fast) {
        if let Some(v) = &mut self.alts {
            if let Fast::Const(Tri::T) = f {
                self.alts = None;
            } else {
                v.push(f);
            }
        }
    }

    /// Widens `self` by the events the monitors of `e` may react to.
    pub(crate) fn add_expr(&mut self, e: &MonExpr) {
        match e {
            MonExpr::Ref(r) => {
                let mut base = Vec::new();
                if let Some(at) = &r.at {
                    base.push(Fast::StrEq {
                        f: StrField::Service,
                        val: Box::from(&**at),
                        ne: false,
                    });
                }
                self.add_machine(&r.machine, base);
            }
            MonExpr::And(a, b) | MonExpr::Or(a, b) => {
                self.add_expr(a);
                self.add_expr(b);
            }
            MonExpr::Not(a) => self.add_expr(a),
        }
    }

    fn add_machine(&mut self, m: &Machine, mut base: Vec<Fast>) {
        if let Some(srcs) = &m.sources {
            base.push(Fast::StrIn {
                f: StrField::Source,
                vals: srcs.clone().into_boxed_slice(),
                negated: false,
            });
        }
        if m.per.is_some() || !m.windows.is_empty() {
            // a key or a window looks at every event of the machine's sources
            self.push(all(base));
            return;
        }
        for h in m.states.iter().flat_map(|s| &s.handlers) {
            let mut c = base.clone();
            if let Some(s) = &h.pat.source {
                c.push(Fast::StrEq {
                    f: StrField::Source,
                    val: s.clone(),
                    ne: false,
                });
            }
            if let Some(k) = &h.pat.kind {
                c.push(Fast::StrEq {
                    f: StrField::Kind,
                    val: k.clone(),
                    ne: false,
                });
            }
            // a guard that is not specialised (or one with `from`) may hold on anything
            if let Some(f) = &h.pat.fast {
                c.push(f.clone());
            }
            self.push(all(c));
        }
    }

    /// May some event of a row group with statistics `g` matter? `false` only when, for every
    /// alternative, the statistics prove that no row of the group satisfies it.
    pub fn may_matter(&self, g: &GroupStats) -> bool {
        match &self.alts {
            None => true,
            Some(v) => g.rows > 0 && v.iter().any(|f| !never(f, g)),
        }
    }
}

/// The conjunction of `v` (true when empty).
fn all(v: Vec<Fast>) -> Fast {
    v.into_iter()
        .reduce(|a, b| Fast::And(Box::new(a), Box::new(b)))
        .unwrap_or(Fast::Const(Tri::T))
}

fn col(g: &GroupStats, f: StrField) -> &StrStats {
    match f {
        StrField::Source => &g.source,
        StrField::Service => &g.service,
        StrField::Container => &g.container,
        StrField::Kind => &g.kind,
        StrField::Message => &g.message,
    }
}

/// Can `f == v` hold on some row? A `source` or `kind` read as null is `""` to the evaluator.
fn may_equal(g: &GroupStats, f: StrField, v: &str) -> bool {
    match f {
        StrField::Source => g.may_read_source(v),
        StrField::Kind => g.may_read_kind(v),
        other => col(g, other).may_equal(v, g.rows),
    }
}

/// Is `f`'s value (as the evaluator reads it) never `true` on any row of `g`? A sound
/// under-approximation: `false` whenever the statistics do not prove it.
fn never(f: &Fast, g: &GroupStats) -> bool {
    match f {
        Fast::Const(t) => *t != Tri::T,
        Fast::StrEq { f, val, ne: false } => !may_equal(g, *f, val),
        // `!=` is false only where every row holds the value (a null reads as different)
        Fast::StrEq { f, val, ne: true } => col(g, *f).all_equal(val, g.rows),
        Fast::StrIn {
            f,
            vals,
            negated: false,
        } => vals.iter().all(|v| !may_equal(g, *f, v)),
        Fast::StrIn { negated: true, .. } => false,
        Fast::IntCmp { seq, op, val } => {
            let bounds = if *seq {
                // the evaluator compares `seq as i64`: only bounds below 2^63 keep their order
                g.seq
                    .filter(|(_, hi)| *hi <= i64::MAX as u64)
                    .map(|(lo, hi)| (lo as i64, hi as i64))
            } else {
                g.ts
            };
            let Some((lo, hi)) = bounds else {
                return false;
            };
            match op {
                BinOp::Eq => *val < lo || *val > hi,
                BinOp::Ne => lo == hi && *val == lo,
                BinOp::Lt => lo >= *val,
                BinOp::Le => lo > *val,
                BinOp::Gt => hi <= *val,
                BinOp::Ge => hi < *val,
                _ => false,
            }
        }
        Fast::Cmp { .. } | Fast::Regex { .. } => false,
        Fast::And(a, b) => never(a, g) || never(b, g),
        Fast::Or(a, b) => never(a, g) && never(b, g),
        Fast::Not(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::specialise::tests::{event, guard, try_pattern, Ev};
    use crate::ops::JsonCell;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1500, max_global_rejects: 100_000, ..ProptestConfig::default() })]
        /// A specialised guard is ruled out for a group only when it holds on none of the
        /// group's events.
        #[test]
        fn a_guard_ruled_out_holds_on_no_event_of_the_group(
            g in guard(),
            evs in prop::collection::vec(event(), 1..6),
            listed: bool,
        ) {
            let p = try_pattern(&g);
            prop_assume!(p.as_ref().is_some_and(|p| p.fast.is_some()));
            let f = p.and_then(|p| p.fast).unwrap_or(Fast::Const(Tri::T));
            if never(&f, &trace::testing::group_stats_of(evs.iter().map(Ev::r), listed)) {
                for e in &evs {
                    prop_assert!(!f.holds(&e.r(), &JsonCell::new(), &[]), "`{}` holds on {:?}", g, e);
                }
            }
        }
    }

    /// The rules of [`never`] on bounds: each comparison of `ts` at the edges of a group.
    #[test]
    fn comparisons_at_the_edges_of_the_bounds() {
        let g = GroupStats {
            rows: 3,
            ts: Some((10, 20)),
            seq: Some((5, u64::MAX)),
            ..Default::default()
        };
        let ts = |op, val| {
            never(
                &Fast::IntCmp {
                    seq: false,
                    op,
                    val,
                },
                &g,
            )
        };
        assert!(ts(BinOp::Lt, 10) && !ts(BinOp::Lt, 11));
        assert!(ts(BinOp::Le, 9) && !ts(BinOp::Le, 10));
        assert!(ts(BinOp::Gt, 20) && !ts(BinOp::Gt, 19));
        assert!(ts(BinOp::Ge, 21) && !ts(BinOp::Ge, 20));
        assert!(ts(BinOp::Eq, 9) && ts(BinOp::Eq, 21) && !ts(BinOp::Eq, 15));
        assert!(!ts(BinOp::Ne, 15));
        // a `seq` above 2^63 compares as a negative number: its bounds prove nothing
        let seq = |op, val| never(&Fast::IntCmp { seq: true, op, val }, &g);
        assert!(!seq(BinOp::Lt, 0) && !seq(BinOp::Gt, 100));
    }
}
