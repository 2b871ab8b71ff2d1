//! Compiled regular expressions of guards ([`Re`]), searched through a copy owned by the
//! searching thread.
//!
//! A `regex::Regex` keeps its search caches in a pool whose fast path belongs to the first
//! thread that searched with it; every other thread takes a cache from the pool under a lock and
//! puts it back, on every search. When one trace is judged on several threads (the scanning
//! threads of a batch change from batch to batch), that slow path was taken for every log line,
//! and a guard with named captures allocated and freed a `Captures` per line besides. Here each
//! thread keeps its own clone of the expression (a clone has a pool of its own, owned by the
//! thread that first searches with it) and one reusable `CaptureLocations` for it, found by the
//! expression's id in a short thread-local list. Results are the same as searching the shared
//! expression; only where the cache lives changes. An expression of the shape
//! [`crate::re_plan::Plan`] takes (a literal, then literals and runs of a class) is searched by
//! that plan instead, with the same results and no per-thread copy.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

use regex::{CaptureLocations, Regex};

use crate::re_plan::Plan;
use std::sync::Arc;

/// A guard's regular expression. Clones share the id (and so the per-thread copy): they are the
/// same expression.
#[derive(Debug, Clone)]
pub(crate) struct Re {
    re: Regex,
    id: u64,
    /// The direct matcher of an expression of the shape [`Plan`] takes (same results).
    plan: Option<Arc<Plan>>,
}

/// Most capture groups (group 0 included) a [`Plan`] reports without allocating; an expression
/// with more searches with the regex crate.
const PLAN_GROUPS: usize = 8;

/// Equal when the patterns are (both are compiled with the same default options).
impl PartialEq for Re {
    fn eq(&self, other: &Re) -> bool {
        self.re.as_str() == other.re.as_str()
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// Expressions a thread keeps copies of before it drops them all and starts over (a thread that
/// judges spec after spec would otherwise keep every one it ever searched).
const MAX_LOCAL: usize = 64;

struct Local {
    id: u64,
    re: Regex,
    locs: CaptureLocations,
}

thread_local! {
    static LOCAL: RefCell<Vec<Local>> = const { RefCell::new(Vec::new()) };
}

impl Re {
    /// Compiles `pattern` with the default options.
    pub(crate) fn new(pattern: &str) -> Result<Re, regex::Error> {
        let re = Regex::new(pattern)?;
        Ok(Re {
            plan: Plan::of(pattern)
                .filter(|p| p.groups() <= PLAN_GROUPS)
                .map(Arc::new),
            re,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// The expression as shared by every thread (names of groups, pattern text).
    pub(crate) fn regex(&self) -> &Regex {
        &self.re
    }

    /// Runs `f` with this thread's copy of the expression and its capture locations.
    fn with_local<R>(&self, f: impl FnOnce(&Regex, &mut CaptureLocations) -> R) -> R {
        LOCAL.with(|l| match l.try_borrow_mut() {
            Ok(mut l) => {
                let i = match l.iter().position(|e| e.id == self.id) {
                    Some(i) => i,
                    None => {
                        if l.len() >= MAX_LOCAL {
                            l.clear();
                        }
                        let re = self.re.clone();
                        let locs = re.capture_locations();
                        l.push(Local {
                            id: self.id,
                            re,
                            locs,
                        });
                        l.len() - 1
                    }
                };
                let e = &mut l[i];
                f(&e.re, &mut e.locs)
            }
            // only if `f` searched again with the list borrowed, which it does not
            Err(_) => f(&self.re, &mut self.re.capture_locations()),
        })
    }

    /// Does the expression match somewhere in `hay`?
    pub(crate) fn is_match(&self, hay: &str) -> bool {
        if let Some(p) = &self.plan {
            return p.find(hay, None);
        }
        self.with_local(|re, _| re.is_match(hay))
    }

    /// Searches `hay`; on a match, calls `each` with the slot and byte range of every group of
    /// `groups` (group index, slot) that took part in it, and returns true. `each` must not
    /// search with a [`Re`] (it would search with a fresh copy, correct but slow).
    pub(crate) fn captures(
        &self,
        hay: &str,
        groups: &[(usize, u16)],
        mut each: impl FnMut(u16, std::ops::Range<usize>),
    ) -> bool {
        if let Some(p) = &self.plan {
            let mut spans = [None; PLAN_GROUPS];
            if !p.find(hay, Some(&mut spans)) {
                return false;
            }
            for (g, slot) in groups {
                if let Some(Some((s, e))) = spans.get(*g) {
                    each(*slot, *s..*e);
                }
            }
            return true;
        }
        self.with_local(|re, locs| {
            if re.captures_read(locs, hay).is_none() {
                return false;
            }
            for (g, slot) in groups {
                if let Some((s, e)) = locs.get(*g) {
                    each(*slot, s..e);
                }
            }
            true
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_thread_finds_what_the_shared_expression_finds() {
        let re = Re::new(r"processed request (?P<n>\d+) in (?P<us>\d+) us").unwrap();
        let shared = Regex::new(re.regex().as_str()).unwrap();
        let lines: Vec<String> = (0..200)
            .map(|i| match i % 3 {
                0 => format!("processed request {i} in {} us", i * 7),
                1 => format!("x processed request {i} in us"),
                _ => format!("processed request {i} in {i}{i} us, again {i}"),
            })
            .collect();
        let want: Vec<Option<(String, String)>> = lines
            .iter()
            .map(|l| {
                shared
                    .captures(l)
                    .map(|c| (c["n"].to_string(), c["us"].to_string()))
            })
            .collect();
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    for (l, w) in lines.iter().zip(&want) {
                        let mut got = (String::new(), String::new());
                        let m = re.captures(l, &[(1, 0), (2, 1)], |slot, r| {
                            if slot == 0 {
                                got.0 = l[r].to_string();
                            } else {
                                got.1 = l[r].to_string();
                            }
                        });
                        assert_eq!(m, w.is_some(), "{l}");
                        assert_eq!(re.is_match(l), w.is_some(), "{l}");
                        if let Some(w) = w {
                            assert_eq!(&got, w, "{l}");
                        }
                    }
                });
            }
        });
    }

    #[test]
    fn a_thread_that_searched_many_expressions_still_finds_each() {
        let res: Vec<Re> = (0..(MAX_LOCAL * 2 + 3))
            .map(|i| Re::new(&format!("^a{{{i}}}$")).unwrap())
            .collect();
        for _ in 0..2 {
            for (i, re) in res.iter().enumerate() {
                assert!(re.is_match(&"a".repeat(i)));
                assert!(!re.is_match(&"a".repeat(i + 1)));
            }
        }
    }
}
