//! A row's integer `per` key read from its columns ([`RowKey`]: `seq` or `ts_ns`, maybe
//! `% n`, the remainder by multiplication) and a batch's rows grouped by that key
//! ([`KeyGroups`]), which [`super::Leaf::run_grouped`] evaluates instance by instance. The
//! grouping needs nothing of the leaf but the key, so the trace reader's decoding threads make it
//! ahead of the evaluator ([`crate::Runner::prepare`], [`trace::ReadOptions::prepare`]); a batch
//! that comes without it is grouped where it is evaluated.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Mutex;

use super::super::fx::{FxBuild, IntKeys};
use crate::fast::{FastKey, Operand};
use trace::EventColumns;

/// A `per` key of `seq` or `ts_ns`, or one of them `% n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RowKey {
    seq: bool,
    rem: Option<FastRem>,
}

/// `x % n` for a constant `n > 0`: for `x` and `n` below 2^32 by a multiplication (Lemire,
/// Kaser and Kurz, "Faster remainder by direct computation", 2019), not a division.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FastRem {
    n: u64,
    /// `⌊(2^64 - 1) / n⌋ + 1` (wrapping: 0 for `n = 1`, whose remainders are all 0).
    m: u64,
}

impl FastRem {
    pub(super) fn new(n: i64) -> Option<FastRem> {
        let n = u64::try_from(n).ok().filter(|&n| n > 0)?;
        Some(FastRem {
            n,
            m: (u64::MAX / n).wrapping_add(1),
        })
    }

    /// `x % n` for `x` and `n` below 2^32 (else a wrong value: the caller checks).
    #[inline]
    pub(super) fn rem_narrow(self, x: u64) -> u64 {
        ((u128::from(self.m.wrapping_mul(x)) * u128::from(self.n)) >> 64) as u64
    }

    /// `x % n` for `x >= 0` (the generic rules' remainder for a non-negative `x`).
    #[inline]
    pub(super) fn rem(self, x: u64) -> u64 {
        if x <= u64::from(u32::MAX) && self.n <= u64::from(u32::MAX) {
            self.rem_narrow(x)
        } else {
            x % self.n
        }
    }
}

/// What [`IntKeys::id`] gives for a key that is another part's ([`super::super::Shards`]) or
/// null: no instance.
pub(super) const SKIP: u32 = u32::MAX;
/// What [`IntKeys::id`] gives for a key not seen before: found by the generic key path.
pub(super) const UNSEEN: u32 = u32::MAX - 1;

impl RowKey {
    pub(super) fn of(k: &FastKey) -> Option<RowKey> {
        let field = |o: &Operand| match o {
            Operand::Seq => Some(true),
            Operand::Ts => Some(false),
            _ => None,
        };
        match k {
            FastKey::Operand(o) => Some(RowKey {
                seq: field(o)?,
                rem: None,
            }),
            FastKey::Mod(o, n) => Some(RowKey {
                seq: field(o)?,
                rem: Some(FastRem::new(*n)?),
            }),
        }
    }

    /// The instance of a row's key among `keys` as [`IntKeys::id`] gives it, [`UNSEEN`] for a
    /// key the fast way does not give.
    #[inline]
    pub(super) fn id(self, ts: i64, seq: u64, keys: &IntKeys) -> u32 {
        self.get(ts, seq).map_or(UNSEEN, |k| keys.id(k))
    }

    /// The key of a row, when the fast way gives it (a non-negative value for `% n`; the
    /// generic key path decides the others).
    #[inline]
    pub(super) fn get(self, ts: i64, seq: u64) -> Option<i64> {
        let x = if self.seq { seq as i64 } else { ts };
        match self.rem {
            None => Some(x),
            Some(r) if x >= 0 => Some(r.rem(x as u64) as i64),
            Some(_) => None,
        }
    }
}

/// The rows of a batch grouped by their [`RowKey`]: group `g` has key `keys[g]` and `sizes[g]`
/// rows (a group of no row has a key that is not the batch's), `rows[starts[g]..starts[g + 1]]`,
/// in row order.
#[derive(Debug, Default)]
pub(crate) struct KeyGroups {
    /// The key they were grouped by.
    pub(super) key: Option<RowKey>,
    pub(super) keys: Vec<i64>,
    pub(super) sizes: Vec<u32>,
    starts: Vec<u32>,
    rows: Vec<u32>,
}

/// The rows' buffers of dropped [`KeyGroups`], for the next ones [`KeyGroups::of`] makes (a
/// batch's groups are made on one thread and dropped on another: the buffer, written whole
/// for each batch, would otherwise be zeroed anew each time).
static ROWS_POOL: Mutex<Vec<Vec<u32>>> = Mutex::new(Vec::new());

/// How many buffers [`ROWS_POOL`] keeps (a few batches are in flight at a time).
const POOLED: usize = 8;

impl Drop for KeyGroups {
    fn drop(&mut self) {
        if self.rows.capacity() == 0 {
            return;
        }
        if let Ok(mut p) = ROWS_POOL.lock() {
            if p.len() < POOLED {
                p.push(std::mem::take(&mut self.rows));
            }
        }
    }
}

/// Buffers of [`KeyGroups::fill`] kept by each thread for its next batch.
#[derive(Default)]
struct Scratch {
    /// By key below [`IntKeys::DENSE`]: its group + 1 (0: none yet); set back to 0 after each
    /// batch, for the keys it had.
    dense: Vec<u32>,
    /// The same for the other keys.
    sparse: HashMap<i64, u32, FxBuild>,
    /// Each row's group.
    of_row: Vec<u32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

impl KeyGroups {
    /// The most groups a batch is grouped into: past that, instance by instance saves little
    /// over row after row, and grouping stops (a key per row gives up after this many rows).
    pub(super) const MAX: usize = 1024;

    /// The rows of `cols` grouped by `key`, or `None` when the fast way does not give every
    /// row's key or the batch has more than [`KeyGroups::MAX`] keys (or no row).
    pub(crate) fn of(key: RowKey, cols: &EventColumns<'_>) -> Option<KeyGroups> {
        // (the rows' buffer of groups dropped before: it is as long as a batch already)
        let rows = ROWS_POOL
            .lock()
            .ok()
            .and_then(|mut p| p.pop())
            .unwrap_or_default();
        let mut g = KeyGroups {
            key: None,
            keys: Vec::new(),
            sizes: Vec::new(),
            starts: Vec::new(),
            rows,
        };
        g.fill(key, cols).then_some(g)
    }

    /// [`KeyGroups::of`] into these buffers: returns whether it grouped the rows.
    pub(super) fn fill(&mut self, key: RowKey, cols: &EventColumns<'_>) -> bool {
        self.key = None;
        self.keys.clear();
        if cols.ts.is_empty()
            || cols.seq.len() != cols.ts.len()
            || cols.ts.len() > u32::MAX as usize
        {
            return false;
        }
        SCRATCH.with(|s| {
            let Ok(mut s) = s.try_borrow_mut() else {
                return false;
            };
            let ok = self.group(key, cols, &mut s);
            // leave the table clear for the next batch
            let Scratch { dense, sparse, .. } = &mut *s;
            for &k in &self.keys {
                if let Some(d) = usize::try_from(k).ok().and_then(|i| dense.get_mut(i)) {
                    *d = 0;
                }
            }
            sparse.clear();
            if ok {
                self.key = Some(key);
            }
            ok
        })
    }

    fn group(&mut self, key: RowKey, cols: &EventColumns<'_>, s: &mut Scratch) -> bool {
        let Scratch {
            dense,
            sparse,
            of_row,
        } = s;
        of_row.clear();
        of_row.reserve(cols.ts.len());
        // each row's group, `sizes[g]` counting group g's rows
        let sizes = &mut self.sizes;
        sizes.clear();
        // a key `% n` for a small `n` is its own group (none made at a key's first row; the
        // groups with no row have size 0)
        let small = key.rem.map(|r| r.n).filter(|&n| n <= KeyGroups::MAX as u64);
        if let (Some(n), Some(r)) = (small, key.rem) {
            sizes.resize(n as usize, 0);
            self.keys.extend(0..n as i64);
            // sequence numbers below 2^32 (a trace of fewer events): each row's remainder by
            // multiplication alone, computed again where the row is placed rather than kept
            if key.seq && cols.seq.iter().fold(0, |a, &x| a | x) <= u64::from(u32::MAX) {
                place_narrow(cols.seq, r, sizes, &mut self.starts, &mut self.rows);
                return true;
            }
            // (a loop over the one column the key reads)
            let ok = if key.seq {
                count_rem(cols.seq.iter().map(|&x| x as i64), r, sizes, of_row)
            } else {
                count_rem(cols.ts.iter().copied(), r, sizes, of_row)
            };
            if !ok {
                return false;
            }
        } else {
            for (&ts, &seq) in cols.ts.iter().zip(cols.seq) {
                let Some(k) = key.get(ts, seq) else {
                    return false;
                };
                let slot = match usize::try_from(k) {
                    Ok(i) if i < IntKeys::DENSE as usize => {
                        if dense.len() <= i {
                            dense.resize(i + 1, 0);
                        }
                        &mut dense[i]
                    }
                    _ => sparse.entry(k).or_insert(0),
                };
                if *slot == 0 {
                    if self.keys.len() == KeyGroups::MAX {
                        return false;
                    }
                    self.keys.push(k);
                    sizes.push(0);
                    *slot = self.keys.len() as u32;
                }
                let g = *slot - 1;
                if let Some(c) = sizes.get_mut(g as usize) {
                    *c += 1;
                }
                of_row.push(g);
            }
        }
        place(
            of_row.len(),
            of_row.iter().copied(),
            sizes,
            &mut self.starts,
            &mut self.rows,
        );
        true
    }

    /// The rows of group `g`.
    #[inline]
    pub(super) fn rows(&self, g: usize) -> &[u32] {
        match (self.starts.get(g), self.starts.get(g + 1)) {
            (Some(&a), Some(&z)) => self.rows.get(a as usize..z as usize).unwrap_or(&[]),
            _ => &[],
        }
    }
}

/// [`KeyGroups::group`] for a key `x % r` where every `x` is below 2^32: the rows counted by
/// group (`sizes`), then placed ([`place`]), each row's group computed in both passes.
fn place_narrow(
    xs: &[u64],
    r: FastRem,
    sizes: &mut [u32],
    starts: &mut Vec<u32>,
    rows: &mut Vec<u32>,
) {
    for &x in xs {
        if let Some(c) = sizes.get_mut(r.rem_narrow(x) as usize) {
            *c += 1;
        }
    }
    let groups = xs.iter().map(|&x| r.rem_narrow(x) as u32);
    place(xs.len(), groups, sizes, starts, rows);
}

/// The second pass of [`KeyGroups::group`]'s counting sort: given each group's size, the `n`
/// rows placed by their groups (`groups`, in row order) so that `rows[starts[g]..starts[g + 1]]`
/// holds group g's rows in row order.
#[inline(always)]
fn place(
    n: usize,
    groups: impl Iterator<Item = u32>,
    sizes: &[u32],
    starts: &mut Vec<u32>,
    rows: &mut Vec<u32>,
) {
    // `starts[g + 1]` is where group g's rows go (the sizes of those before it summed), moved
    // on as they are placed: it ends at where group g + 1's start
    starts.clear();
    starts.push(0);
    let mut sum = 0;
    for &size in sizes {
        starts.push(sum);
        sum += size;
    }
    // (every place is written below: what is there is never read)
    rows.resize(n, 0);
    // (as slices: through the vectors, their pointers and lengths were read again at each row,
    // the stores into them being free to change them as far as the compiler knew)
    let (starts, rows) = (starts.as_mut_slice(), rows.as_mut_slice());
    for (row, g) in (0..).zip(groups) {
        if let Some(to) = starts.get_mut(g as usize + 1) {
            if let Some(slot) = rows.get_mut(*to as usize) {
                *slot = row;
            }
            *to += 1;
        }
    }
}

/// Each of `xs % r` (`None` for a negative `x`: returns false) pushed to `of_row` and counted
/// in `counts[k]`.
#[inline(always)]
fn count_rem(
    xs: impl Iterator<Item = i64>,
    r: FastRem,
    counts: &mut [u32],
    of_row: &mut Vec<u32>,
) -> bool {
    for x in xs {
        let Ok(x) = u64::try_from(x) else {
            return false;
        };
        let k = r.rem(x) as usize;
        if let Some(c) = counts.get_mut(k) {
            *c += 1;
        }
        of_row.push(k as u32);
    }
    true
}

/// The work on each decoded batch that groups its rows by `key` for the keyed machines that
/// evaluate a batch instance by instance ([`trace::ReadOptions::prepare`]): [`KeyGroups`], or
/// [`Ungrouped`] for a batch it could not group.
pub(crate) fn prepare(key: RowKey) -> trace::Prepare {
    trace::Prepare::new(move |b| {
        let cols = b.columns()?;
        Some(match KeyGroups::of(key, &cols) {
            Some(g) => std::sync::Arc::new(g),
            None => std::sync::Arc::new(Ungrouped(key)),
        })
    })
}

/// What [`prepare`] gives for a batch whose rows it could not group by this key (too many keys,
/// or a key the fast way does not give): the evaluator does not try again.
#[derive(Debug)]
pub(crate) struct Ungrouped(pub(super) RowKey);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Every row is in the group of its key once, a group's rows in row order; the batch is
        /// not grouped when a row's key is not the fast way's or it has too many keys.
        #[test]
        fn groups_hold_every_row_once_under_its_key(
            seqs in prop_oneof![
                prop::collection::vec(
                    prop_oneof![0u64..50, 0u64..5_000, any::<u64>()], 0..1_200),
                // every value below 2^32 (the remainder by multiplication alone), up to it
                prop::collection::vec(
                    prop_oneof![0u64..5_000, u64::from(u32::MAX) - 50..=u64::from(u32::MAX)],
                    0..1_200),
            ],
            modulo in prop_oneof![
                Just(None), (1i64..40).prop_map(Some), (1i64..3_000).prop_map(Some)],
            by_seq in any::<bool>(),
        ) {
            let evs: Vec<trace::Event> = seqs
                .iter()
                .enumerate()
                .map(|(i, &seq)| {
                    // times with repeats and gaps, some below zero
                    let mut e = trace::Event::new(i as i64 / 3 * 7 - 100, "log", "a");
                    e.seq = seq;
                    e
                })
                .collect();
            let b = trace::EventBatch::from_arrow(&trace::schema::events_to_log_batch(evs.iter()))
                .expect("batch");
            let cols = b.columns().expect("columns");
            let key = RowKey {
                seq: by_seq,
                rem: modulo.and_then(FastRem::new),
            };
            let want: Option<Vec<i64>> =
                cols.ts.iter().zip(cols.seq).map(|(&t, &s)| key.get(t, s)).collect();
            let got = KeyGroups::of(key, &cols);
            let Some(want) = want.filter(|w| !w.is_empty()) else {
                prop_assert!(got.is_none());
                return Ok(());
            };
            let mut distinct = want.clone();
            distinct.sort_unstable();
            distinct.dedup();
            if distinct.len() > KeyGroups::MAX {
                prop_assert!(got.is_none());
                return Ok(());
            }
            let g = got.expect("grouped");
            prop_assert_eq!(g.key, Some(key));
            let mut seen = vec![false; want.len()];
            let mut keys = Vec::new();
            for (i, (&k, &size)) in g.keys.iter().zip(&g.sizes).enumerate() {
                let rows = g.rows(i);
                prop_assert_eq!(rows.len(), size as usize);
                prop_assert!(rows.windows(2).all(|w| w[0] < w[1]));
                for &r in rows {
                    prop_assert_eq!(want[r as usize], k);
                    prop_assert!(!std::mem::replace(&mut seen[r as usize], true));
                }
                if size > 0 {
                    keys.push(k);
                }
            }
            prop_assert!(seen.iter().all(|&s| s));
            keys.sort_unstable();
            prop_assert_eq!(keys, distinct);
        }
    }

    proptest! {
        #[test]
        fn the_remainder_by_multiplication_is_the_remainder(
            x in prop_oneof![0u64..1000, 0u64..=u64::from(u32::MAX), any::<u64>()],
            n in prop_oneof![1i64..200, 1i64..=i64::from(u32::MAX), 1i64..=i64::MAX],
        ) {
            let r = FastRem::new(n).expect("n > 0");
            prop_assert_eq!(r.rem(x), x % n as u64);
        }
    }

    #[test]
    fn edges_of_the_remainder_by_multiplication() {
        for n in [
            1i64,
            2,
            3,
            7,
            100,
            1 << 16,
            u32::MAX as i64 - 1,
            u32::MAX as i64,
        ] {
            let r = FastRem::new(n).expect("n > 0");
            for x in [
                0u64,
                1,
                n as u64 - 1,
                n as u64,
                n as u64 + 1,
                u32::MAX as u64 - 1,
                u32::MAX as u64,
            ] {
                assert_eq!(r.rem(x), x % n as u64, "{x} % {n}");
            }
        }
        assert!(FastRem::new(0).is_none());
        assert!(FastRem::new(-3).is_none());
    }
}
