//! Per-key instance lookup without the cost of the standard hasher on the per-event path:
//! [`FxBuild`] (FxHash's multiply-rotate), [`DenseKeys`] (small non-negative integer keys by
//! index, no hashing) and [`push_int`], which writes an integer key into the reused key buffer
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

/// Where small non-negative integer keys (`per seq % 100`) stand, looked up by index: 0 for a
/// key not seen yet, 1 for no instance (another part's key), `2 + i` for instance `i`. Grows to
/// the largest key seen, at most [`DenseKeys::MAX`] slots; other keys go through the hash map.
#[derive(Debug, Default)]
pub(super) struct DenseKeys(Vec<u32>);

impl DenseKeys {
    pub(super) const MAX: i64 = 1 << 16;

    /// What key `k` came to, if it was seen: `Some(None)` for no instance.
    #[inline]
    pub(super) fn get(&self, k: i64) -> Option<Option<u32>> {
        let slot = *self.0.get(usize::try_from(k).ok()?)?;
        match slot {
            0 => None,
            1 => Some(None),
            i => Some(Some(i - 2)),
        }
    }

    /// Records what key `k` came to (ignored outside `0..MAX`).
    pub(super) fn set(&mut self, k: i64, inst: Option<u32>) {
        if !(0..Self::MAX).contains(&k) {
            return;
        }
        let k = k as usize;
        if self.0.len() <= k {
            self.0.resize(k + 1, 0);
        }
        self.0[k] = inst.map_or(1, |i| i.saturating_add(2));
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
    fn dense_keys_tell_unseen_other_and_instances_apart() {
        let mut d = super::DenseKeys::default();
        assert_eq!(d.get(5), None);
        d.set(5, Some(0));
        d.set(7, None);
        d.set(-1, Some(3));
        d.set(super::DenseKeys::MAX, Some(3));
        assert_eq!(d.get(5), Some(Some(0)));
        assert_eq!(d.get(7), Some(None));
        assert_eq!(d.get(6), None);
        assert_eq!(d.get(-1), None);
        assert_eq!(d.get(super::DenseKeys::MAX), None);
        assert_eq!(d.0.len(), 8);
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
