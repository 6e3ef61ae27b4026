//! Exact straw2 quotients by multiplication instead of division.
//!
//! A straw2 draw is `trunc(ln / w)` with `ln = crush_ln(u) - 2^48` in
//! `[-2^48, 0)` and `w` the item's 16.16 weight (`1 ..= u32::MAX`; 0 means
//! "never chosen"). The division is the slowest step of a draw after the
//! hash, and `w` is fixed per item, so every straw2 item carries a
//! [`Recip`] computed when its bucket is built (see `model::Derived`).
//!
//! Invariant: for every weight and every `ln` in `[-2^48, 0)`,
//! [`Recip::draw`] equals `ln / w` as C computes it (truncating), and
//! `i64::MIN` for weight 0, which is what Ceph's `bucket_straw2_choose`
//! compares. The tests check it against `/` on edge and random values.

/// Bits of the numerator `n = -ln`: `1 <= n <= 2^48 < 2^49`.
const numerator_bits: u32 = 49;

/// `floor(n / w) = (n * m) >> (49 + l)` for one weight `w`, `l = ceil(log2 w)`.
///
/// With `k = 49 + l` and `m = ceil(2^k / w)`, write `m * w = 2^k + e`,
/// `0 <= e < w`. Then `n * m / 2^k = n / w + n * e / (w * 2^k)`, and the
/// second term is below `2^49 / 2^k <= 1 / w` for `n < 2^49`. With
/// `n = q * w + r`, `r <= w - 1`, the sum lies in `[q, q + 1)`, so the
/// floor is `q`. `m <= 2^50`. The shift runs as `(n << 15) * m >> 64`
/// (the high word of one 64x64 multiply) then `>> l`: no 128-bit shift.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Recip {
    /// 0 for weight 0 (no quotient: the draw is `i64::MIN`).
    m: u64,
    l: u32,
}

impl Recip {
    pub fn new(w: u32) -> Recip {
        if w == 0 {
            return Recip::default();
        }
        // ceil(log2 w): 0 for w = 1.
        let l = 32 - (w - 1).leading_zeros();
        let k = numerator_bits + l;
        let m = (1u128 << k).div_ceil(w as u128);
        debug_assert!(m <= 1 << 50);
        Recip { m: m as u64, l }
    }

    /// `floor(n / w)` for `1 <= n <= 2^48` (and `w > 0`).
    #[inline(always)]
    pub fn quotient(self, n: u64) -> u64 {
        // n < 2^49, so n << 15 < 2^64; 64 - 15 = 49.
        let high = ((n << (64 - numerator_bits)) as u128 * self.m as u128) >> 64;
        (high as u64) >> self.l
    }

    /// The straw2 draw for `ln_fixed = crush_ln(u)` (in `[0, 2^48)`):
    /// `trunc((ln_fixed - 2^48) / w)`, or `i64::MIN` for weight 0.
    #[inline(always)]
    pub fn draw(self, ln_fixed: u64) -> i64 {
        if self.m == 0 {
            return i64::MIN;
        }
        -(self.quotient((1u64 << 48) - ln_fixed) as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// C's truncating division, the definition the draws must match.
    fn reference(ln: i64, w: u32) -> i64 {
        if w == 0 {
            i64::MIN
        } else {
            ln / w as i64
        }
    }

    fn check(ln: i64, w: u32) {
        assert!((-(1i64 << 48)..0).contains(&ln));
        let got = Recip::new(w).draw((ln + (1i64 << 48)) as u64);
        assert_eq!(got, reference(ln, w), "ln {ln} w {w}");
    }

    #[test]
    fn edge_weights_and_numerators() {
        let lns = [
            -(1i64 << 48),
            -(1i64 << 48) + 1,
            -(1i64 << 32),
            -(1i64 << 32) - 1,
            -65536,
            -65535,
            -2,
            -1,
        ];
        let mut ws = vec![
            0u32,
            1,
            2,
            3,
            0xffff,
            0x10000,
            0x10001,
            0x7fff_ffff,
            0x8000_0000,
            0x8000_0001,
            u32::MAX - 1,
            u32::MAX,
        ];
        for s in 0..32 {
            ws.push(1 << s);
            ws.push((1u32 << s).wrapping_sub(1).max(1));
            ws.push((1u32 << s) + 1);
        }
        for &w in &ws {
            for &ln in &lns {
                check(ln, w);
            }
            // Numerators next to multiples of w, where rounding would show.
            for mult in [1i64, 2, 3, 1000, (1i64 << 48) / w.max(1) as i64] {
                for d in -2..=2 {
                    let ln = -(mult * w as i64 + d);
                    if (-(1i64 << 48)..0).contains(&ln) {
                        check(ln, w);
                    }
                }
            }
        }
    }

    #[test]
    fn random_weights_and_numerators() {
        // xorshift: deterministic, no dependency.
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        for _ in 0..200_000 {
            let w = match next() % 3 {
                0 => next() as u32,
                1 => (next() % 0x40_0000) as u32,
                _ => (next() >> (next() % 64)) as u32,
            };
            let ln = -((next() % (1u64 << 48)) as i64) - 1;
            check(ln, w);
            // A multiple of w and its neighbours.
            if w > 0 {
                let q = (next() % ((1u64 << 48) / w as u64).max(1)) as i64;
                for d in -1..=1 {
                    let ln = -(q * w as i64 + d);
                    if (-(1i64 << 48)..0).contains(&ln) {
                        check(ln, w);
                    }
                }
            }
        }
    }
}
