//! Ceph's rjenkins1 CRUSH hash (`crush_hash32_*`), bit-exact.
//!
//! Every placement decision is a function of these hashes, so they must equal
//! Ceph's for all inputs. Arithmetic is on wrapping `u32`, as in C.

/// Ceph's hash seed for rjenkins1.
const SEED: u32 = 1_315_423_911;
const X0: u32 = 231_232;
const Y0: u32 = 1232;

/// Bob Jenkins' 96-bit mix, on three lanes in place.
#[inline(always)]
fn mix(a: &mut u32, b: &mut u32, c: &mut u32) {
    *a = a.wrapping_sub(*b).wrapping_sub(*c) ^ (*c >> 13);
    *b = b.wrapping_sub(*c).wrapping_sub(*a) ^ (*a << 8);
    *c = c.wrapping_sub(*a).wrapping_sub(*b) ^ (*b >> 13);
    *a = a.wrapping_sub(*b).wrapping_sub(*c) ^ (*c >> 12);
    *b = b.wrapping_sub(*c).wrapping_sub(*a) ^ (*a << 16);
    *c = c.wrapping_sub(*a).wrapping_sub(*b) ^ (*b >> 5);
    *a = a.wrapping_sub(*b).wrapping_sub(*c) ^ (*c >> 3);
    *b = b.wrapping_sub(*c).wrapping_sub(*a) ^ (*a << 10);
    *c = c.wrapping_sub(*a).wrapping_sub(*b) ^ (*b >> 15);
}

/// `crush_hash32_rjenkins1(a)`.
#[inline]
pub fn hash32_1(a: u32) -> u32 {
    let mut a = a;
    let mut hash = SEED ^ a;
    let mut b = a;
    let (mut x, mut y) = (X0, Y0);
    mix(&mut b, &mut x, &mut hash);
    mix(&mut y, &mut a, &mut hash);
    hash
}

/// `crush_hash32_rjenkins1_2(a, b)`.
#[inline(always)]
pub fn hash32_2(a: u32, b: u32) -> u32 {
    let (mut a, mut b) = (a, b);
    let mut hash = SEED ^ a ^ b;
    let (mut x, mut y) = (X0, Y0);
    mix(&mut a, &mut b, &mut hash);
    mix(&mut x, &mut a, &mut hash);
    mix(&mut b, &mut y, &mut hash);
    hash
}

/// `crush_hash32_rjenkins1_3(a, b, c)`.
#[inline(always)]
pub fn hash32_3(a: u32, b: u32, c: u32) -> u32 {
    let (mut a, mut b, mut c) = (a, b, c);
    let mut hash = SEED ^ a ^ b ^ c;
    let (mut x, mut y) = (X0, Y0);
    mix(&mut a, &mut b, &mut hash);
    mix(&mut c, &mut x, &mut hash);
    mix(&mut y, &mut a, &mut hash);
    mix(&mut b, &mut x, &mut hash);
    mix(&mut y, &mut c, &mut hash);
    hash
}

/// `crush_hash32_rjenkins1_4(a, b, c, d)`.
#[inline(always)]
pub fn hash32_4(a: u32, b: u32, c: u32, d: u32) -> u32 {
    let (mut a, mut b, mut c, mut d) = (a, b, c, d);
    let mut hash = SEED ^ a ^ b ^ c ^ d;
    let (mut x, mut y) = (X0, Y0);
    mix(&mut a, &mut b, &mut hash);
    mix(&mut c, &mut d, &mut hash);
    mix(&mut a, &mut x, &mut hash);
    mix(&mut y, &mut b, &mut hash);
    mix(&mut c, &mut x, &mut hash);
    mix(&mut y, &mut d, &mut hash);
    hash
}

/// Ceph's fixed-point `crush_ln(x)`: about `2^44 * log2(x + 1)` for
/// `x` in `0..=0xffff`, computed from two lookup tables.
#[inline(always)]
pub fn crush_ln(xin: u32) -> u64 {
    use crate::ln_table::{LL, RH_LH};
    let mut x = xin.wrapping_add(1);
    let mut iexpon: i64 = 15;
    // Normalize so that bit 15 or 16 is set, in one shift.
    if x & 0x18000 == 0 {
        let bits = (x & 0x1ffff).leading_zeros() as i64 - 16;
        x <<= bits;
        iexpon = 15 - bits;
    }
    let index1 = ((x >> 8) << 1) as usize;
    let rh = RH_LH[index1 - 256] as u64;
    let lh = RH_LH[index1 + 1 - 256] as u64;
    let xl64 = ((x as i64 as u64).wrapping_mul(rh)) >> 48;
    let mut result = (iexpon as u64) << (12 + 32);
    let index2 = (xl64 & 0xff) as usize;
    let ll = LL[index2] as u64;
    let lh = (lh.wrapping_add(ll)) >> (48 - 12 - 32);
    result = result.wrapping_add(lh);
    result
}

/// Vector forms of the hash-side helpers (x86-64).
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use crate::ln_table::{LL, RH_LH};
    use std::arch::x86_64::*;

    /// `W` vectors of eight [`super::hash32_3`] each, sharing `a` and `c`
    /// (per lane), with `b` from `items`; the `W` chains are interleaved
    /// line by line so that the core works on one while another waits.
    ///
    /// # Safety
    /// The CPU has AVX2. Call it from AVX2 code: it has no
    /// `target_feature` of its own so that it can be `inline(always)` (as a
    /// call, with its vectors passed through memory, it costs the kernels
    /// about a tenth of their speed).
    #[inline(always)]
    pub(crate) unsafe fn hash32_3_256<const W: usize>(
        a0: __m256i,
        c0: __m256i,
        items: &[__m256i; W],
    ) -> [__m256i; W] {
        let seed = _mm256_set1_epi32(super::SEED as i32);
        let mut a = [a0; W];
        let mut b = *items;
        let mut c = [c0; W];
        let mut h = [seed; W];
        let mut x = [_mm256_set1_epi32(231_232); W];
        let mut y = [_mm256_set1_epi32(1232); W];
        // seed ^ a ^ c is the same for every position: hoisted by the caller's loop.
        let sac = _mm256_xor_si256(_mm256_xor_si256(seed, a0), c0);
        for k in 0..W {
            h[k] = _mm256_xor_si256(sac, b[k]);
        }
        macro_rules! line {
            ($a:ident, $b:ident, $c:ident, $sh:ident, $n:literal) => {
                for k in 0..W {
                    $a[k] = _mm256_xor_si256(
                        _mm256_sub_epi32(_mm256_sub_epi32($a[k], $b[k]), $c[k]),
                        $sh::<$n>($c[k]),
                    );
                }
            };
        }
        macro_rules! mix {
            ($a:ident, $b:ident, $c:ident) => {
                line!($a, $b, $c, _mm256_srli_epi32, 13);
                line!($b, $c, $a, _mm256_slli_epi32, 8);
                line!($c, $a, $b, _mm256_srli_epi32, 13);
                line!($a, $b, $c, _mm256_srli_epi32, 12);
                line!($b, $c, $a, _mm256_slli_epi32, 16);
                line!($c, $a, $b, _mm256_srli_epi32, 5);
                line!($a, $b, $c, _mm256_srli_epi32, 3);
                line!($b, $c, $a, _mm256_slli_epi32, 10);
                line!($c, $a, $b, _mm256_srli_epi32, 15);
            };
        }
        mix!(a, b, h);
        mix!(c, x, h);
        mix!(y, a, h);
        mix!(b, x, h);
        mix!(y, c, h);
        h
    }

    /// [`super::crush_ln`] of eight 16-bit values, bit for bit: lanes 0-3
    /// and 4-7 as two vectors of `u64`.
    ///
    /// # Safety
    /// The CPU has AVX2; every lane of `u` is at most `0xffff`.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(crate) unsafe fn crush_ln_256(u: __m256i) -> [__m256i; 2] {
        let x = _mm256_add_epi32(u, _mm256_set1_epi32(1));
        // floor(log2 x) from the f32 exponent (exact: x <= 2^16).
        let e = _mm256_sub_epi32(
            _mm256_srli_epi32::<23>(_mm256_castps_si256(_mm256_cvtepi32_ps(x))),
            _mm256_set1_epi32(127),
        );
        // Ceph shifts x < 2^15 up until bit 15 is set (clz - 16 bits).
        let bits = _mm256_max_epi32(
            _mm256_sub_epi32(_mm256_set1_epi32(15), e),
            _mm256_setzero_si256(),
        );
        let x = _mm256_sllv_epi32(x, bits);
        let iexpon = _mm256_sub_epi32(_mm256_set1_epi32(15), bits);
        // RH_LH[index1 - 256] and the entry after it, index1 = (x >> 8) << 1.
        let k2 = _mm256_slli_epi32::<1>(_mm256_sub_epi32(
            _mm256_srli_epi32::<8>(x),
            _mm256_set1_epi32(128),
        ));
        let table = RH_LH.as_ptr();
        let halves = [
            (
                _mm256_castsi256_si128(k2),
                _mm256_castsi256_si128(x),
                _mm256_castsi256_si128(iexpon),
            ),
            (
                _mm256_extracti128_si256::<1>(k2),
                _mm256_extracti128_si256::<1>(x),
                _mm256_extracti128_si256::<1>(iexpon),
            ),
        ];
        let mut out = [_mm256_setzero_si256(); 2];
        for (h, &(k2h, xh, eh)) in halves.iter().enumerate() {
            let x64 = _mm256_cvtepu32_epi64(xh);
            let rh = _mm256_i32gather_epi64::<8>(table, k2h);
            let lh = _mm256_i32gather_epi64::<8>(table.add(1), k2h);
            // (x * rh) mod 2^64 from 32x32 -> 64 products (x < 2^17, rh < 2^49).
            let lo = _mm256_mul_epu32(x64, rh);
            let hi = _mm256_mul_epu32(x64, _mm256_srli_epi64::<32>(rh));
            let xl64 = _mm256_srli_epi64::<48>(_mm256_add_epi64(lo, _mm256_slli_epi64::<32>(hi)));
            let ll = _mm256_i64gather_epi64::<8>(
                LL.as_ptr(),
                _mm256_and_si256(xl64, _mm256_set1_epi64x(0xff)),
            );
            let frac = _mm256_srli_epi64::<4>(_mm256_add_epi64(lh, ll));
            out[h] = _mm256_add_epi64(_mm256_slli_epi64::<44>(_mm256_cvtepu32_epi64(eh)), frac);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crush_ln_tracks_log2_and_stays_below_2_pow_48() {
        // Ceph's tables are not exactly the closed form (and not even
        // monotonic at the very top), so check closeness, which catches a
        // mistyped table digit; the fixtures check exactness.
        for u in 0..=0xffffu32 {
            let v = crush_ln(u);
            // Straw2 subtracts 2^48 and relies on the result being negative.
            assert!(v < 0x1_0000_0000_0000, "crush_ln({u}) = {v:#x}");
            let ideal = ((u + 1) as f64).log2() * (1u64 << 44) as f64;
            let err = (v as f64 - ideal).abs() / (1u64 << 44) as f64;
            assert!(err < 1e-4, "crush_ln({u}) = {v:#x} is {err} away from log2");
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn crush_ln_avx2_is_bit_exact() {
        use std::arch::x86_64::*;
        if !std::arch::is_x86_feature_detected!("avx2") {
            return;
        }
        for base in (0..=0xffffu32).step_by(8) {
            let u: [u32; 8] = std::array::from_fn(|k| base + k as u32);
            let mut got = [0u64; 8];
            // SAFETY: AVX2 checked above; lanes are 16-bit.
            unsafe {
                let [lo, hi] = x86::crush_ln_256(_mm256_loadu_si256(u.as_ptr().cast()));
                _mm256_storeu_si256(got.as_mut_ptr().cast(), lo);
                _mm256_storeu_si256(got[4..].as_mut_ptr().cast(), hi);
            }
            for k in 0..8 {
                assert_eq!(got[k], crush_ln(u[k]), "u = {}", u[k]);
            }
        }
    }

    #[test]
    fn hashes_mix_every_argument() {
        let base = hash32_4(1, 2, 3, 4);
        assert_ne!(base, hash32_4(0, 2, 3, 4));
        assert_ne!(base, hash32_4(1, 0, 3, 4));
        assert_ne!(base, hash32_4(1, 2, 0, 4));
        assert_ne!(base, hash32_4(1, 2, 3, 0));
        assert_ne!(hash32_3(1, 2, 3), hash32_3(3, 2, 1));
        assert_ne!(hash32_2(1, 2), hash32_2(2, 1));
        assert_ne!(hash32_1(1), hash32_1(2));
    }
}
