//! Per-key instance lookup without the cost of the standard hasher on the per-event path:
//! [`FxBuild`] (FxHash's multiply-rotate), [`IntKeys`] (integer keys, the small non-negative
//! ones by index) and [`push_int`], which writes an integer key into the reused key buffer
//! as `{i}` formats it.

/// A small fast hasher for per-key instance lookup (keys are short strings; no untrusted-input
/// DoS concern worth SipHash's cost on the per-event path). FxHash's multiply-rotate.
#[derive(Default, Clone, Copy)]
pub(super) struct FxBuild;

pub(super) struct Fx(u64);

impl std::hash::BuildHasher for FxBuild {
    type Hasher = Fx;
    fn build_hasher(&self) -> Fx {
        Fx(0)
    }
}

impl std::hash::Hasher for Fx {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(b)).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ b as u64).wrapping_mul(K);
        }
    }
}

/// What integer keys seen before came to (their instance, or `None` for no instance: another
/// part's key), found without writing the key out as text: small non-negative keys (`per seq %
/// 100`) by index, in at most [`IntKeys::DENSE`] slots, others by hash.
#[derive(Debug, Default)]
pub(super) struct IntKeys {
    /// By key: 0 for not seen yet, 1 for no instance, `2 + i` for instance `i`.
    dense: Vec<u32>,
    sparse: std::collections::HashMap<i64, Option<u32>, FxBuild>,
}

impl IntKeys {
    pub(super) const DENSE: i64 = 1 << 16;

    /// What key `k` came to, if it was seen: `Some(None)` for no instance.
    #[inline]
    pub(super) fn get(&self, k: i64) -> Option<Option<u32>> {
        match usize::try_from(k).ok().filter(|&i| i < self.dense.len()) {
            Some(i) => match self.dense[i] {
                0 => None,
                1 => Some(None),
                i => Some(Some(i - 2)),
            },
            None if (0..Self::DENSE).contains(&k) => None,
            None => self.sparse.get(&k).copied(),
        }
    }

    /// What key `k` came to as one number: its instance, `u32::MAX` for no instance and
    /// `u32::MAX - 1` for a key not seen (the dense slots hold `2 + i`, 1 and 0: subtracting 2
    /// wraps the last two to those).
    #[inline(always)]
    pub(super) fn id(&self, k: i64) -> u32 {
        match usize::try_from(k).ok().and_then(|i| self.dense.get(i)) {
            Some(&d) => d.wrapping_sub(2),
            None => self.id_past_dense(k),
        }
    }

    /// [`IntKeys::id`] of a key past the dense slots.
    #[inline(never)]
    fn id_past_dense(&self, k: i64) -> u32 {
        match self.get(k) {
            Some(Some(i)) => i,
            Some(None) => u32::MAX,
            None => u32::MAX - 1,
        }
    }

    /// Records what key `k` came to.
    pub(super) fn set(&mut self, k: i64, inst: Option<u32>) {
        if !(0..Self::DENSE).contains(&k) {
            self.sparse.insert(k, inst);
            return;
        }
        let k = k as usize;
        if self.dense.len() <= k {
            self.dense.resize(k + 1, 0);
        }
        self.dense[k] = inst.map_or(1, |i| i.saturating_add(2));
    }
}

/// Appends the decimal form of `i` (as `{i}` formats it) without the formatting machinery.
pub(super) fn push_int(buf: &mut String, i: i64) {
    let mut digits = [0u8; 20];
    let mut n = i.unsigned_abs();
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if i < 0 {
        buf.push('-');
    }
    for &d in &digits[at..] {
        buf.push(d as char);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn int_keys_tell_unseen_other_and_instances_apart() {
        use super::IntKeys;
        let mut d = IntKeys::default();
        assert_eq!(d.get(5), None);
        d.set(5, Some(0));
        d.set(7, None);
        d.set(-1, Some(3));
        d.set(IntKeys::DENSE, None);
        assert_eq!(d.get(5), Some(Some(0)));
        assert_eq!(d.get(7), Some(None));
        assert_eq!(d.get(6), None);
        assert_eq!(d.get(100), None);
        assert_eq!(d.get(-1), Some(Some(3)));
        assert_eq!(d.get(-2), None);
        assert_eq!(d.get(IntKeys::DENSE), Some(None));
        assert_eq!(d.get(IntKeys::DENSE + 1), None);
        // the same as one number, dense or sparse, seen or not
        for k in [5, 7, 6, 100, -1, -2, IntKeys::DENSE, IntKeys::DENSE + 1] {
            let want = match d.get(k) {
                Some(Some(i)) => i,
                Some(None) => u32::MAX,
                None => u32::MAX - 1,
            };
            assert_eq!(d.id(k), want, "key {k}");
        }
        assert_eq!((d.id(5), d.id(7), d.id(6)), (0, u32::MAX, u32::MAX - 1));
        // the small keys by index, the others by hash
        assert_eq!((d.dense.len(), d.sparse.len()), (8, 2));
    }

    #[test]
    fn per_keys_format_integers_as_display_does() {
        for i in [0, 7, -7, 10, 99, 100, -100, 123_456_789, i64::MAX, i64::MIN] {
            let mut b = String::from("x");
            super::push_int(&mut b, i);
            assert_eq!(b, format!("x{i}"));
        }
    }
}
