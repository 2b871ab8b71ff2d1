//! Compositions ([`Node`]): a monitor expression's tree of leaves under `and`, `or` and `not`,
//! decided early when one side settles it (the other side then shown as it stood), the combined
//! verdicts and the explanations that name every part that counted.

use super::explain::Outcome;
use super::leaf::Leaf;
use super::shards::Shards;
use crate::ir::MonExpr;
use crate::ops::JsonCell;
use crate::report::{Explanation, MonitorResult, Verdict};
use crate::states::LogScope;
use crate::value::fmt_ts;
use trace::EventRef;

/// One node of a composition: a leaf or an operator with its early outcome.
pub(crate) enum Node {
    Leaf(Box<Leaf>),
    /// A keyed leaf split over threads by key (built by the runner, only at the top).
    Shards(Box<Shards>),
    And(Box<Node>, Box<Node>, Option<Outcome>),
    Or(Box<Node>, Box<Node>, Option<Outcome>),
    Not(Box<Node>, Option<Outcome>),
}

/// A part of a [`Node`] fed events on its own: the node, or one part of its split keyed leaf.
pub(crate) enum NodePart<'n> {
    Node(&'n mut Node),
    Leaf(&'n mut Leaf),
}

impl NodePart<'_> {
    pub fn advance_to(&mut self, ts: i64, inclusive: bool) {
        match self {
            NodePart::Node(n) => n.advance_to(ts, inclusive),
            NodePart::Leaf(l) => l.advance_to(ts, inclusive),
        }
    }

    pub fn observe(&mut self, ev: &EventRef<'_>, json: &JsonCell) {
        match self {
            NodePart::Node(n) => n.observe(ev, json),
            NodePart::Leaf(l) => l.observe(ev, json),
        }
    }

    /// The leaf of this part when it can be fed columns ([`Leaf::run_columns`]).
    pub fn columnar_leaf(&mut self) -> Option<&mut Leaf> {
        let l = match self {
            NodePart::Node(Node::Leaf(l)) => &mut **l,
            NodePart::Leaf(l) => &mut **l,
            NodePart::Node(_) => return None,
        };
        l.columnar().then_some(l)
    }
}

fn earliest(a: &Outcome, b: &Outcome) -> bool {
    (a.at_ns, a.at_seq.unwrap_or(u64::MAX)) <= (b.at_ns, b.at_seq.unwrap_or(u64::MAX))
}

impl Node {
    pub fn build(e: &MonExpr) -> Node {
        Node::build_logged(e, None)
    }

    /// [`Node::build`], its leaves reporting every state change to `log` (recording mode).
    pub fn build_logged(e: &MonExpr, log: Option<&LogScope>) -> Node {
        let b = |x: &MonExpr| Box::new(Node::build_logged(x, log));
        match e {
            MonExpr::Ref(r) => {
                let mut l = Leaf::new(r.clone());
                l.log = log.cloned();
                Node::Leaf(Box::new(l))
            }
            MonExpr::And(x, y) => Node::And(b(x), b(y), None),
            MonExpr::Or(x, y) => Node::Or(b(x), b(y), None),
            MonExpr::Not(x) => Node::Not(b(x), None),
        }
    }

    /// A keyed leaf that has seen no event becomes `parts` [`Shards`] (more than one part);
    /// anything else stays as it is. A leaf fed columns whose guards read nothing but times,
    /// sequence numbers and sources ([`Leaf::columnar_light`]) is not split: its work per row
    /// is little more than finding the row's key, which every part would do for every row (on
    /// two cores, with the reading threads beside them, the split monitor took 0.14 s where one
    /// part took 0.10 s).
    pub fn split_by_key(&mut self, parts: usize) {
        if let Node::Leaf(l) = self {
            if parts > 1
                && l.r.machine.per.is_some()
                && l.log.is_none()
                && !l.columnar_light()
                && l.instances() == 0
            {
                *self = Node::Shards(Box::new(Shards::new(&l.r, parts)));
            }
        }
    }

    /// How many parts [`Node::parts_mut`] gives.
    pub fn parts(&self) -> usize {
        match self {
            Node::Shards(s) if s.decided().is_none() => s.parts.len(),
            _ => 1,
        }
    }

    /// The parts evaluated on their own threads: a split keyed leaf's parts, or the whole node.
    pub fn parts_mut(&mut self) -> Vec<NodePart<'_>> {
        if self.parts() > 1 {
            if let Node::Shards(s) = self {
                return s.parts.iter_mut().map(NodePart::Leaf).collect();
            }
        }
        vec![NodePart::Node(self)]
    }

    pub fn decided(&self) -> Option<&Outcome> {
        match self {
            Node::Leaf(l) => l.decided(),
            Node::Shards(s) => s.decided(),
            Node::And(_, _, o) | Node::Or(_, _, o) | Node::Not(_, o) => o.as_ref(),
        }
    }

    pub fn start(&mut self, ts: i64) {
        match self {
            Node::Leaf(l) => l.start(ts),
            Node::Shards(s) => s.start(ts),
            Node::And(a, b, _) | Node::Or(a, b, _) => {
                a.start(ts);
                b.start(ts);
            }
            Node::Not(a, _) => a.start(ts),
        }
    }

    pub fn observe(&mut self, ev: &EventRef<'_>, json: &JsonCell) {
        if let Node::Leaf(l) = self {
            // a leaf ignores events once decided, and has nothing to update
            return l.observe(ev, json);
        }
        if self.decided().is_some() {
            return;
        }
        match self {
            Node::Leaf(l) => l.observe(ev, json),
            Node::Shards(s) => s.observe(ev, json),
            Node::And(a, b, _) | Node::Or(a, b, _) => {
                a.observe(ev, json);
                b.observe(ev, json);
            }
            Node::Not(a, _) => a.observe(ev, json),
        }
        self.update();
    }

    pub fn advance_to(&mut self, ts: i64, inclusive: bool) {
        if let Node::Leaf(l) = self {
            // a decided leaf fires no timeout, and has nothing to update
            return l.advance_to(ts, inclusive);
        }
        if self.decided().is_some() {
            return;
        }
        match self {
            Node::Leaf(l) => l.advance_to(ts, inclusive),
            Node::Shards(s) => s.advance_to(ts, inclusive),
            Node::And(a, b, _) | Node::Or(a, b, _) => {
                a.advance_to(ts, inclusive);
                b.advance_to(ts, inclusive);
            }
            Node::Not(a, _) => a.advance_to(ts, inclusive),
        }
        self.update();
    }

    /// Recomputes the node's early outcome from its children's (after they were fed).
    pub fn update(&mut self) {
        match self {
            Node::Leaf(_) => {}
            Node::Shards(s) => s.update(),
            Node::And(a, b, o) if o.is_none() => {
                *o = combine_early(true, a.decided().cloned(), b.decided().cloned())
            }
            Node::Or(a, b, o) if o.is_none() => {
                *o = combine_early(false, a.decided().cloned(), b.decided().cloned())
            }
            Node::Not(a, o) if o.is_none() => {
                if let Some(x) = a.decided() {
                    *o = Some(negate(x));
                }
            }
            _ => {}
        }
    }

    /// Final outcome and the result tree.
    pub fn finish(&mut self, end_ns: i64, name: &str) -> MonitorResult {
        match self {
            Node::Leaf(l) => leaf_result(name.to_string(), l.finish(end_ns)),
            Node::Shards(s) => leaf_result(name.to_string(), s.finish(end_ns)),
            Node::And(a, b, o) => finish_bin(true, a, b, o, end_ns, name),
            Node::Or(a, b, o) => finish_bin(false, a, b, o, end_ns, name),
            Node::Not(a, o) => {
                let ra = a.finish(end_ns, &a.name());
                let verdict = o.as_ref().map(|x| x.verdict).unwrap_or(ra.verdict.negate());
                let expl = ra.primary_explanation().map(|e| Explanation {
                    reason: format!("negated: {} ({})", e.reason, ra.verdict),
                    ..e.clone()
                });
                MonitorResult {
                    name: name.to_string(),
                    verdict,
                    explanation: expl,
                    children: vec![ra],
                }
            }
        }
    }

    /// The result of a node that had not decided at `at_ns`, when its parent decided (see
    /// [`Leaf::frozen`]); decided descendants keep their verdicts.
    fn frozen(&mut self, at_ns: i64, why: &str) -> MonitorResult {
        let name = self.name();
        match self {
            Node::Leaf(l) => leaf_result(name, l.frozen(at_ns, why)),
            Node::Shards(s) => leaf_result(name, s.frozen(at_ns, why)),
            Node::And(a, b, _) | Node::Or(a, b, _) => MonitorResult {
                explanation: Some(Explanation {
                    reason: why.to_string(),
                    monitor: name.clone(),
                    decided_ns: Some(at_ns),
                    ..Default::default()
                }),
                name,
                verdict: Verdict::Inconclusive,
                children: vec![a.frozen(at_ns, why), b.frozen(at_ns, why)],
            },
            Node::Not(a, _) => MonitorResult {
                name,
                verdict: Verdict::Inconclusive,
                explanation: None,
                children: vec![a.frozen(at_ns, why)],
            },
        }
    }

    fn name(&self) -> String {
        match self {
            Node::Leaf(l) => l.r.display.clone(),
            Node::Shards(s) => s.display().to_string(),
            Node::And(a, b, _) => format!("{} and {}", a.name(), b.name()),
            Node::Or(a, b, _) => format!("({} or {})", a.name(), b.name()),
            Node::Not(a, _) => format!("not {}", a.name()),
        }
    }
}

/// The result of a leaf (or of a keyed leaf split over threads) from its outcome.
fn leaf_result(name: String, o: Outcome) -> MonitorResult {
    MonitorResult {
        name,
        verdict: o.verdict,
        explanation: Some(o.explanation),
        children: vec![],
    }
}

fn finish_bin(
    is_and: bool,
    a: &mut Node,
    b: &mut Node,
    o: &Option<Outcome>,
    end_ns: i64,
    name: &str,
) -> MonitorResult {
    // Decided early: a child that had not decided then is shown as it stood at the decision,
    // not run on to the end of the trace.
    let child = |c: &mut Node| match o {
        Some(x) if c.decided().is_none() => {
            let why = format!(
                "`{}` had not decided when `{name}` was decided at {}",
                c.name(),
                fmt_ts(x.at_ns)
            );
            c.frozen(x.at_ns, &why)
        }
        _ => c.finish(end_ns, &c.name()),
    };
    let ra = child(a);
    let rb = child(b);
    let verdict = match o {
        Some(x) => x.verdict,
        None if is_and => ra.verdict.max(rb.verdict),
        None => or_verdict(ra.verdict, rb.verdict),
    };
    // Every part of an accepted `and` (a failed `or`) counts: its explanation gives each part's
    // reason, not only the first one's.
    let all_count = if is_and {
        Verdict::Accept
    } else {
        Verdict::Fail
    };
    let explanation = if verdict == all_count && ra.verdict == verdict && rb.verdict == verdict {
        let mut parts = Vec::new();
        bin_parts(is_and, &ra, &mut parts);
        bin_parts(is_and, &rb, &mut parts);
        // the details (deciding event, path) of the part that decided last
        let last = [&ra, &rb]
            .into_iter()
            .filter_map(|r| r.primary_explanation())
            .max_by_key(|e| e.decided_ns.unwrap_or(i64::MIN))
            .cloned();
        last.map(|mut e| {
            e.reason = parts.join("; ");
            let mut services: Vec<String> = [&ra, &rb]
                .into_iter()
                .flat_map(|r| r.primary_explanation())
                .flat_map(|x| x.services.iter().cloned())
                .collect();
            services.sort();
            services.dedup();
            e.services = services;
            e
        })
    } else {
        None
    };
    MonitorResult {
        name: name.to_string(),
        verdict,
        explanation,
        children: vec![ra, rb],
    }
}

/// `` `part`: reason `` of every operand of a chain of `and`s (`or`s), flattened.
fn bin_parts(is_and: bool, r: &MonitorResult, out: &mut Vec<String>) {
    // the same operator: its name is how `Node::name` writes that operator over the children
    let same_op = match r.children.as_slice() {
        [a, b] if is_and => r.name == format!("{} and {}", a.name, b.name),
        [a, b] => r.name == format!("({} or {})", a.name, b.name),
        _ => false,
    };
    if same_op {
        for c in &r.children {
            bin_parts(is_and, c, out);
        }
        return;
    }
    let reason = r
        .primary_explanation()
        .map(|e| e.reason.clone())
        .unwrap_or_default();
    out.push(format!("`{}`: {reason}", r.name));
}

fn or_verdict(a: Verdict, b: Verdict) -> Verdict {
    use Verdict::*;
    match (a, b) {
        (Accept, _) | (_, Accept) => Accept,
        (Inconclusive, _) | (_, Inconclusive) => Inconclusive,
        _ => Fail,
    }
}

fn combine_early(is_and: bool, a: Option<Outcome>, b: Option<Outcome>) -> Option<Outcome> {
    let (short, full) = if is_and {
        (Verdict::Fail, Verdict::Accept)
    } else {
        (Verdict::Accept, Verdict::Fail)
    };
    match (a, b) {
        (Some(x), Some(y)) if x.verdict == short && y.verdict == short => {
            Some(if earliest(&x, &y) { x } else { y })
        }
        (Some(x), _) if x.verdict == short => Some(x),
        (_, Some(y)) if y.verdict == short => Some(y),
        (Some(x), Some(y)) if x.verdict == full && y.verdict == full => {
            Some(if earliest(&x, &y) { y } else { x })
        }
        _ => None,
    }
}

fn negate(o: &Outcome) -> Outcome {
    let mut n = o.clone();
    n.value = None;
    n.verdict = o.verdict.negate();
    n.explanation.reason = format!("negated: {} ({})", o.explanation.reason, o.verdict);
    n
}
