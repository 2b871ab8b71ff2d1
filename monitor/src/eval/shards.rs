//! One keyed monitor on several threads ([`Shards`]): the instances of a `per` machine split by
//! a hash of their key over independent [`Leaf`] parts, each part fed every event and keeping
//! only its own keys, and the parts' outcomes merged into the one a single leaf gives. Instances
//! of different keys share nothing, so the only order that matters is the leaf's: the monitor
//! fails with its earliest failing instance (by deciding time, event before timeout, then the
//! order the instances were created in), and at the end the instances are combined in creation
//! order. Built by the runner for top-level keyed monitors when it may use several threads,
//! but for one fed columns (`Node::split_by_key`).

use super::explain::{inconclusive, Outcome};
use super::leaf::{combine, Leaf};
use crate::ir::MonRef;
use crate::ops::JsonCell;
use trace::EventRef;

pub(crate) struct Shards {
    pub(crate) parts: Vec<Leaf>,
    /// The part whose failure decided the monitor (the earliest of the parts' failures).
    decided: Option<usize>,
}

impl Shards {
    /// `n` parts of the keyed machine `r` (at least one).
    pub fn new(r: &MonRef, n: usize) -> Shards {
        let n = n.max(1);
        Shards {
            parts: (0..n)
                .map(|i| Leaf::new_shard(r.clone(), i as u32, n as u32))
                .collect(),
            decided: None,
        }
    }

    pub fn display(&self) -> &str {
        &self.parts[0].r.display
    }

    pub fn decided(&self) -> Option<&Outcome> {
        self.decided.and_then(|i| self.parts[i].decided())
    }

    /// Takes the earliest failure of the parts as the monitor's; call after the parts were fed.
    pub fn update(&mut self) {
        if self.decided.is_none() {
            self.decided = self
                .parts
                .iter()
                .enumerate()
                .filter_map(|(i, p)| p.fail_order().map(|o| (o, i)))
                .min()
                .map(|(_, i)| i);
        }
    }

    pub fn start(&mut self, ts: i64) {
        self.parts.iter_mut().for_each(|p| p.start(ts));
    }

    pub fn observe(&mut self, ev: &EventRef<'_>, json: &JsonCell) {
        for p in &mut self.parts {
            p.observe(ev, json);
        }
        self.update();
    }

    pub fn advance_to(&mut self, ts: i64, inclusive: bool) {
        for p in &mut self.parts {
            p.advance_to(ts, inclusive);
        }
        self.update();
    }

    /// What [`Leaf::finish`] gives for the whole monitor.
    pub fn finish(&mut self, end_ns: i64) -> Outcome {
        for p in &mut self.parts {
            p.settle(end_ns);
        }
        self.update();
        if let Some(o) = self.decided() {
            return o.clone();
        }
        for p in &mut self.parts {
            p.end_all(end_ns);
        }
        if self.parts.iter().all(|p| p.instances() == 0) {
            // no key ever seen: the one-leaf judgement of a fresh instance at the end
            return self.parts[0].finish(end_ns);
        }
        let mut all: Vec<_> = self.parts.iter().flat_map(|p| p.outcomes()).collect();
        all.sort_by_key(|(born, _)| *born);
        combine(&self.parts[0].r, all.into_iter().map(|(_, o)| o), end_ns)
    }

    /// What [`Leaf::frozen`] gives for the whole monitor: its instance created first that had
    /// not decided at `at_ns`.
    pub fn frozen(&mut self, at_ns: i64, why: &str) -> Outcome {
        // (a part's paths may still name rows of the last batch it was fed)
        self.parts.iter_mut().for_each(Leaf::fill_held);
        if let Some(o) = self.decided() {
            return o.clone();
        }
        let first = self
            .parts
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.first_pending().map(|(born, idx)| (born, i, idx)))
            .min();
        match first {
            Some((_, i, idx)) => self.parts[i].pending_outcome(idx, at_ns, why.to_string()),
            None => inconclusive(self.display(), why, at_ns),
        }
    }
}
