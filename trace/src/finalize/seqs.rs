//! Finalization's check that no `seq` value occurs twice across a trace's tables
//! ([`SeqCheck`]), with bounded memory.
//!
//! A writer hands out seqs densely and in order, so the seqs seen are marked in a bitmap of
//! 65,536-seq pages (8 KB each): a seq already marked is a duplicate. Sparse seqs (a repaired or
//! hand-made trace) could need more pages than [`MAX_PAGES`] (16 MB); the check then moves what
//! it marked, in order, into an external sort of the seqs ([`RunSorter`], runs spilled to the
//! trace directory) and sorts the rest there too, finding duplicates as adjacent equal values.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch, UInt64Array};

use crate::sort::{merge_sorted, RunSorter};
use crate::TraceError;

/// Seqs per bitmap page.
const PAGE_BITS: u64 = 1 << 16;
const PAGE_WORDS: usize = (PAGE_BITS / 64) as usize;

/// Pages held before the check moves to the external sort (16 MB).
const MAX_PAGES: usize = 2048;

/// Seqs per batch handed to the external sort.
const SORT_BATCH: usize = 8192;

type Page = Box<[u64; PAGE_WORDS]>;

/// Collects `seq` values of one table and counts those that occur more than once.
pub(super) struct SeqCheck {
    dir: PathBuf,
    /// Marked seqs by page (`seq / PAGE_BITS`, the page), while they fit.
    pages: Vec<(u64, Page)>,
    /// Where each page is in `pages`.
    index: HashMap<u64, usize>,
    /// Once they did not: every seq, sorted externally.
    sorter: Option<RunSorter>,
    /// Duplicates found by the bitmap, and the smallest of them.
    duplicates: u64,
    first: Option<u64>,
}

/// What [`SeqCheck::finish_all`] found.
pub(super) struct SeqReport {
    /// Occurrences of a seq beyond its first.
    pub(super) duplicates: u64,
    /// The smallest seq that occurs more than once.
    pub(super) first: Option<u64>,
}

fn sort_schema() -> arrow_schema::SchemaRef {
    Arc::new(arrow_schema::Schema::new(vec![
        arrow_schema::Field::new("ts_ns", arrow_schema::DataType::Int64, false),
        arrow_schema::Field::new("seq", arrow_schema::DataType::UInt64, false),
    ]))
}

/// A batch of the external sort's shape holding `seqs`.
fn sort_batch(seqs: Vec<u64>) -> Result<RecordBatch, TraceError> {
    let zeros: ArrayRef = Arc::new(Int64Array::from(vec![0i64; seqs.len()]));
    RecordBatch::try_new(
        sort_schema(),
        vec![zeros, Arc::new(UInt64Array::from(seqs))],
    )
    .map_err(|e| TraceError::Invalid(format!("seq check: {e}")))
}

/// The marked seqs of `pages`, ascending, in batches of the external sort's shape, made one
/// batch at a time (a full bitmap marks 134 M seqs: 2 GB as batches at once).
struct Marked {
    pages: std::vec::IntoIter<(u64, Page)>,
    /// The page being read, and the next word of it.
    page: Option<(u64, Page)>,
    word: usize,
}

fn marked(mut pages: Vec<(u64, Page)>) -> Marked {
    pages.sort_unstable_by_key(|(k, _)| *k);
    Marked {
        pages: pages.into_iter(),
        page: None,
        word: 0,
    }
}

impl Iterator for Marked {
    type Item = Result<RecordBatch, TraceError>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut seqs = Vec::with_capacity(SORT_BATCH);
        // a batch ends on a word: at most SORT_BATCH + 63 seqs
        while seqs.len() < SORT_BATCH {
            if self.page.is_none() || self.word == PAGE_WORDS {
                self.page = self.pages.next();
                self.word = 0;
                if self.page.is_none() {
                    break;
                }
            }
            let Some((k, p)) = &self.page else { break };
            let mut bits = p[self.word];
            while bits != 0 {
                let b = u64::from(bits.trailing_zeros());
                bits &= bits - 1;
                seqs.push(k * PAGE_BITS + self.word as u64 * 64 + b);
            }
            self.word += 1;
        }
        (!seqs.is_empty()).then(|| sort_batch(seqs))
    }
}

impl SeqCheck {
    /// A check whose external sort, if it needs one, spills under `dir`.
    pub(super) fn new(dir: &Path) -> SeqCheck {
        SeqCheck {
            dir: dir.to_path_buf(),
            pages: Vec::new(),
            index: HashMap::new(),
            sorter: None,
            duplicates: 0,
            first: None,
        }
    }

    fn found(&mut self, v: u64) {
        self.duplicates += 1;
        self.first = Some(self.first.map_or(v, |f| f.min(v)));
    }

    /// Adds the `seq` column of `b` (a batch without one adds nothing).
    pub(super) fn push(&mut self, b: &RecordBatch) -> Result<(), TraceError> {
        let Some(seq) = b.column_by_name("seq") else {
            return Ok(());
        };
        let seq = arrow::compute::cast(seq, &arrow_schema::DataType::UInt64)
            .map_err(|e| TraceError::Invalid(format!("seq check: {e}")))?;
        let Some(seq) = seq.as_any().downcast_ref::<UInt64Array>() else {
            return Err(TraceError::Invalid(
                "seq check: seq is not an integer".into(),
            ));
        };
        let vals = seq.values();
        let mut from = 0;
        if self.sorter.is_none() {
            // the page of the last seq, by index into `pages`
            let mut cur: Option<(u64, usize)> = None;
            let mut i = 0;
            while i < vals.len() {
                if seq.is_null(i) {
                    i += 1;
                    continue;
                }
                let v = vals[i];
                let k = v / PAGE_BITS;
                let pi = match cur {
                    Some((ck, pi)) if ck == k => pi,
                    _ => match self.index.get(&k) {
                        Some(&pi) => pi,
                        None if self.pages.len() >= MAX_PAGES => break,
                        None => {
                            self.pages.push((k, Box::new([0u64; PAGE_WORDS])));
                            self.index.insert(k, self.pages.len() - 1);
                            self.pages.len() - 1
                        }
                    },
                };
                cur = Some((k, pi));
                let bit = (v % PAGE_BITS) as usize;
                let word = &mut self.pages[pi].1[bit / 64];
                let mask = 1u64 << (bit % 64);
                if *word & mask != 0 {
                    self.found(v);
                } else {
                    *word |= mask;
                }
                i += 1;
            }
            if i == vals.len() {
                return Ok(());
            }
            // too many pages: what was marked, then the rest of this batch, to the sort
            self.spill()?;
            from = i;
        }
        let rest: Vec<u64> = (from..vals.len())
            .filter(|&i| !seq.is_null(i))
            .map(|i| vals[i])
            .collect();
        match self.sorter.as_mut() {
            Some(s) => s.push(sort_batch(rest)?),
            None => Ok(()),
        }
    }

    /// Moves the marked seqs, in order, to an external sort that takes every seq from now on.
    fn spill(&mut self) -> Result<(), TraceError> {
        let pages = std::mem::take(&mut self.pages);
        self.index.clear();
        let mut sorter = RunSorter::new(sort_schema(), Some(&self.dir), 16 << 20, &self.dir)?;
        for b in marked(pages) {
            sorter.push(b?)?;
        }
        self.sorter = Some(sorter);
        Ok(())
    }

    /// Counts the seqs that occur more than once across every check (one per table).
    pub(super) fn finish_all(checks: Vec<SeqCheck>, dir: &Path) -> Result<SeqReport, TraceError> {
        let mut r = SeqReport {
            duplicates: checks.iter().map(|c| c.duplicates).sum(),
            first: checks.iter().filter_map(|c| c.first).min(),
        };
        let mut found = |v: u64| {
            r.duplicates += 1;
            r.first = Some(r.first.map_or(v, |f| f.min(v)));
        };
        if checks.iter().all(|c| c.sorter.is_none()) {
            // union of the bitmaps: a seq marked in two of them occurs twice
            let mut all: HashMap<u64, Page> = HashMap::new();
            for c in checks {
                for (k, p) in c.pages {
                    match all.get_mut(&k) {
                        None => {
                            all.insert(k, p);
                        }
                        Some(a) => {
                            for (w, (x, y)) in a.iter_mut().zip(p.iter()).enumerate() {
                                let mut both = *x & *y;
                                while both != 0 {
                                    let b = both.trailing_zeros() as u64;
                                    both &= both - 1;
                                    found(k * PAGE_BITS + w as u64 * 64 + b);
                                }
                                *x |= *y;
                            }
                        }
                    }
                }
            }
            return Ok(r);
        }
        let mut streams: Vec<Box<dyn Iterator<Item = Result<RecordBatch, TraceError>> + Send>> =
            Vec::new();
        for c in checks {
            match c.sorter {
                Some(s) => streams.push(Box::new(s.finish()?)),
                None => streams.push(Box::new(marked(c.pages))),
            }
        }
        let mut last: Option<u64> = None;
        for b in merge_sorted(streams, dir)? {
            let b = b?;
            let Some(seq) = b
                .column_by_name("seq")
                .and_then(|c| c.as_any().downcast_ref::<UInt64Array>())
            else {
                continue;
            };
            for &v in seq.values().iter() {
                if last == Some(v) {
                    found(v);
                }
                last = Some(v);
            }
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(seqs: &[u64]) -> RecordBatch {
        sort_batch(seqs.to_vec()).unwrap()
    }

    /// Duplicates and the smallest duplicated seq, counted naively.
    fn naive(tables: &[Vec<Vec<u64>>]) -> (u64, Option<u64>) {
        let mut seen: HashMap<u64, u64> = HashMap::new();
        for v in tables.iter().flatten().flatten() {
            *seen.entry(*v).or_default() += 1;
        }
        let dups = seen.values().map(|n| n - 1).sum();
        let first = seen.iter().filter(|(_, n)| **n > 1).map(|(v, _)| *v).min();
        (dups, first)
    }

    fn check(tables: &[Vec<Vec<u64>>]) -> (u64, Option<u64>, bool) {
        let d = tempfile::tempdir().unwrap();
        let mut spilled = false;
        let checks: Vec<SeqCheck> = tables
            .iter()
            .map(|batches| {
                let mut c = SeqCheck::new(d.path());
                for b in batches {
                    c.push(&batch(b)).unwrap();
                }
                spilled |= c.sorter.is_some();
                c
            })
            .collect();
        let r = SeqCheck::finish_all(checks, d.path()).unwrap();
        (r.duplicates, r.first, spilled)
    }

    #[test]
    fn dense_seqs_in_order_have_no_duplicate() {
        let t: Vec<Vec<u64>> = (0..40u64)
            .map(|b| (b * 5000..(b + 1) * 5000).collect())
            .collect();
        assert_eq!(check(std::slice::from_ref(&t)), (0, None, false));
        // the same seqs in a second table repeat every one of them
        assert_eq!(check(&[t.clone(), t]).0, 200_000);
    }

    #[test]
    fn duplicates_within_and_across_tables_are_counted_as_a_sort_counts_them() {
        let a = vec![vec![5, 1, 9, 70_000, 5], vec![3, 9, 9, 200_000]];
        let b = vec![vec![70_000, 2], vec![4, 1]];
        let want = naive(&[a.clone(), b.clone()]);
        let got = check(&[a, b]);
        assert_eq!((got.0, got.1), want);
        assert_eq!(want, (5, Some(1)));
    }

    #[test]
    fn sparse_seqs_move_to_the_external_sort_and_count_the_same() {
        // one seq per page: more pages than the bitmap holds, duplicates before, across and
        // after the move, in a table that moved and one that did not
        let sparse: Vec<u64> = (0..(MAX_PAGES as u64 + 500))
            .map(|i| i * PAGE_BITS * 3 + 7)
            .collect();
        let mut a: Vec<Vec<u64>> = sparse.chunks(700).map(|c| c.to_vec()).collect();
        a[0].push(sparse[3]);
        a.push(vec![sparse[10], sparse[MAX_PAGES + 100], 12]);
        let b = vec![vec![12, 13, sparse[1], 7]];
        let want = naive(&[a.clone(), b.clone()]);
        let got = check(&[a, b]);
        assert!(got.2, "the sparse table should have moved to the sort");
        assert_eq!((got.0, got.1), want);
        // sparse[3], sparse[10], sparse[MAX_PAGES + 100], 12, sparse[1], 7 (= sparse[0])
        assert_eq!(want.0, 6);
        // a dense table (several batches of marked seqs, across words and pages) merged with
        // one that moved to the sort
        let dense: Vec<Vec<u64>> = vec![(0..70_000).step_by(3).collect(), vec![69_999, 5]];
        let sparse: Vec<Vec<u64>> =
            vec![sparse.iter().copied().chain([9, 65_536, 69_999]).collect()];
        let want = naive(&[dense.clone(), sparse.clone()]);
        let got = check(&[dense, sparse]);
        assert!(got.2);
        assert_eq!((got.0, got.1), want);
        // 69_999 (a multiple of 3) three times, 9 twice; 5, 7 and 65_536 are not multiples of 3
        assert_eq!(want, (3, Some(9)));
    }
}
