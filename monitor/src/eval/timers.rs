//! The armed timeouts of one leaf ([`Timers`]), popped in `(deadline, instance, tag)`
//! order. Timers armed in order (every timeout of a machine one duration, its states opening
//! as events come) go to a queue: arming one is an append, not a heap insertion. Any other goes
//! to a heap beside it; the earlier of the two fronts is next.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

/// A timer: its deadline, its instance and the tag the instance gave this entry (an instance
/// keeps one live entry: see `Leaf::schedule`).
pub(super) type Armed = (i64, u32, u32);

#[derive(Debug, Default)]
pub(super) struct Timers {
    /// Timers armed in nondecreasing order.
    run: VecDeque<Armed>,
    /// The timers armed out of order.
    heap: BinaryHeap<Reverse<Armed>>,
}

impl Timers {
    #[inline]
    pub(super) fn push(&mut self, t: Armed) {
        if self.run.back().is_none_or(|b| *b <= t) {
            self.run.push_back(t);
        } else {
            self.heap.push(Reverse(t));
        }
    }

    /// The next timer.
    #[inline]
    pub(super) fn peek(&self) -> Option<Armed> {
        match (self.run.front(), self.heap.peek()) {
            (Some(a), Some(Reverse(b))) => Some(*a.min(b)),
            (Some(a), None) => Some(*a),
            (None, Some(Reverse(b))) => Some(*b),
            (None, None) => None,
        }
    }

    /// Removes the next timer.
    pub(super) fn pop(&mut self) -> Option<Armed> {
        let from_run = match (self.run.front(), self.heap.peek()) {
            (Some(a), Some(Reverse(b))) => a <= b,
            (a, _) => a.is_some(),
        };
        if from_run {
            self.run.pop_front()
        } else {
            self.heap.pop().map(|Reverse(t)| t)
        }
    }

    pub(super) fn len(&self) -> usize {
        self.run.len() + self.heap.len()
    }

    pub(super) fn clear(&mut self) {
        self.run.clear();
        self.heap.clear();
    }

    /// Keeps only the timers `keep` accepts.
    pub(super) fn retain(&mut self, mut keep: impl FnMut(&Armed) -> bool) {
        self.run.retain(&mut keep);
        self.heap.retain(|Reverse(t)| keep(t));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Pushes, pops and retains in any order give the order and contents of one heap.
        #[test]
        fn timers_pop_in_the_order_of_one_heap(
            ops in proptest::collection::vec((0u8..6, 0i64..40, 0u32..4, 0u32..3), 0..200)
        ) {
            let mut t = Timers::default();
            let mut h: BinaryHeap<Reverse<Armed>> = BinaryHeap::new();
            let mut last = 0i64;
            for (op, d, i, g) in ops {
                match op {
                    // mostly in order (deadline from the last one), sometimes not
                    0..=2 => {
                        last += d % 5;
                        let x = (last, i, g);
                        t.push(x);
                        h.push(Reverse(x));
                    }
                    3 => {
                        let x = (d, i, g);
                        t.push(x);
                        h.push(Reverse(x));
                    }
                    4 => prop_assert_eq!(t.pop(), h.pop().map(|Reverse(x)| x)),
                    _ => {
                        t.retain(|x| x.2 != g);
                        h.retain(|Reverse(x)| x.2 != g);
                    }
                }
                prop_assert_eq!(t.peek(), h.peek().map(|Reverse(x)| *x));
                prop_assert_eq!(t.len(), h.len());
            }
            while let Some(Reverse(x)) = h.pop() {
                prop_assert_eq!(t.pop(), Some(x));
            }
            prop_assert_eq!(t.pop(), None);
        }
    }
}
