//! Per-key instance lookup without the cost of the standard hasher on the per-event path:
//! [`FxBuild`] (FxHash's multiply-rotate) and [`push_int`], which writes an integer key into the
//! reused key buffer as `{i}` formats it.

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
    fn per_keys_format_integers_as_display_does() {
        for i in [0, 7, -7, 10, 99, 100, -100, 123_456_789, i64::MAX, i64::MIN] {
            let mut b = String::from("x");
            super::push_int(&mut b, i);
            assert_eq!(b, format!("x{i}"));
        }
    }
}
