//! The batched mapper: many inputs at once, SIMD across inputs.
//!
//! Inputs are mapped in chunks of `L` lanes (32 with AVX-512, as two
//! vectors of 16; 8 with AVX2 or portable code) that walk the rule in
//! lockstep. The expensive part of CRUSH, the straw2 draw (`hash32_3` +
//! fixed-point `ln` + divide by weight), is computed for all lanes at once;
//! lanes may sit in different buckets (each lane gathers its own items and
//! weights).
//!
//! The lockstep walk only covers the common case: straw2 buckets, and
//! collisions or rejected devices retried by a full descent (no local
//! retries, no short `firstn` result). A lane that leaves that path is
//! marked *slow* and mapped again from scratch by the scalar oracle, so
//! results equal [`crate::Mapper`]'s by construction; the property tests
//! check it on random maps anyway. When
//! most lanes of a batch's first chunks go slow (a rule that cannot be met,
//! say), the rest of the batch goes straight to the oracle.
//!
//! Filter, then verify (every vector kernel). Only the winner of a
//! straw2 choice matters, not the draws themselves, so the lanes draw
//! *approximately*, in `f32` and without tables or divisions: `ln` from the
//! float exponent and a polynomial (`approx_ln`), times a per-item
//! `2^44 / w`. Each lane keeps its best and second-best approximate draw;
//! when the gap between them exceeds what the approximation error can
//! explain (`decisive`), the best is the exact winner (Ceph's unique
//! maximum). Otherwise (near ties, about one choice in a few hundred, and
//! every exact tie) the lane's bucket is drawn again exactly
//! (`straw2_exact`). The error bound of `approx_ln` against Ceph's
//! `crush_ln` is checked exhaustively over all 2^16 inputs by a test.
//!
//! The AVX-512 kernel (preferred where the CPU has it) runs the same
//! filter on sixteen lanes per vector, with the descent's lane bookkeeping
//! (slots, item types, which lanes are done or slow) in vector registers
//! and masks; a chunk is two such halves walked level by level in turn, so
//! one half's dependent bucket lookups overlap the other half's draws.
//! When fewer than half the lanes of a half are busy (retries after a
//! collision), it draws each busy lane alone with its bucket's items
//! across the vector (`ceil(size / 16)` hashes per lane instead of a full
//! pass per position); the same filter and exact redraw apply.
//!
//! `indep` steps draw their unfilled (lane, position) pairs `L` at a time
//! as virtual lanes (see `indep_lanes`), so the few positions left
//! after the first round share vector passes.

// Lane loops index several parallel per-lane arrays at once.
#![allow(clippy::needless_range_loop)]

use crate::divide::Recip;
use crate::hash::{hash32_2, hash32_3};
use crate::limits;
#[cfg(target_arch = "x86_64")]
use crate::mapper::straw2_exact_avx2;
use crate::mapper::straw2_exact_items;
use crate::model::{BucketAlg, CrushMap, Step, ITEM_NONE, ITEM_UNDEF, WEIGHT_ONE};
use crate::tester::{BatchMap, ScalarBatch};

/// Lanes of the widest kernel; lane arrays are sized for it.
const lanes_max: usize = 32;
/// Bucket descent depth in the lockstep walk before giving a lane to the
/// scalar path (real hierarchies are < 10 deep).
const descent_depth_max: usize = limits::hierarchy_depth_max;
/// Full-descent tries of one firstn replica in the lockstep walk before
/// giving the lane to the scalar path. More than a handful almost always
/// means a short result (more replicas than failure domains), which the
/// scalar path must redo from scratch anyway, after all `choose_tries`.
const lockstep_tries_max: u32 = 8;
/// Chunks of a batch walked in lockstep before checking whether most lanes
/// leave the fast path (then the rest of the batch goes to the oracle).
const lockstep_probe_chunks: usize = 4;

/// Which kernel runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    Avx512,
    Avx2,
    /// The lockstep walk with plain Rust lanes: no faster than the oracle,
    /// kept so the walk itself is tested on every CPU.
    Portable,
    /// No lockstep at all: every input through the scalar oracle (what
    /// runs on CPUs without AVX2).
    Scalar,
}

impl Kernel {
    /// The best kernel this CPU supports, unless `SEPIA_CRUSH_KERNEL`
    /// (`avx512`, `avx2`, `portable`, `scalar`) names another available one.
    pub fn detect() -> Kernel {
        if let Ok(name) = std::env::var("SEPIA_CRUSH_KERNEL") {
            if let Some(k) = Kernel::available().into_iter().find(|k| k.name() == name) {
                return k;
            }
        }
        Kernel::best()
    }

    fn best() -> Kernel {
        // Both vector kernels filter, then verify; with AVX-512 the
        // sixteen-lane one does twice the lanes per instruction.
        if Kernel::has_avx512() {
            return Kernel::Avx512;
        }
        if Kernel::has_avx2() {
            return Kernel::Avx2;
        }
        Kernel::Scalar
    }

    fn has_avx2() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// The AVX-512 kernel also runs the AVX2 exact redraws.
    fn has_avx512() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            Kernel::has_avx2()
                && std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512dq")
                && std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("avx512vl")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// Every kernel that can run here (for tests and benchmarks).
    pub fn available() -> Vec<Kernel> {
        let mut all = vec![Kernel::Scalar, Kernel::Portable];
        if Kernel::has_avx2() {
            all.push(Kernel::Avx2);
        }
        if Kernel::has_avx512() {
            all.push(Kernel::Avx512);
        }
        all
    }

    pub fn name(self) -> &'static str {
        match self {
            Kernel::Avx512 => "avx512",
            Kernel::Avx2 => "avx2",
            Kernel::Portable => "portable",
            Kernel::Scalar => "scalar",
        }
    }
}

/// Buckets flattened into arrays the lanes can gather from.
struct Flat {
    /// Per bucket slot (`-1 - id`): first item index, size, type.
    off: Vec<u32>,
    size: Vec<u32>,
    type_id: Vec<i32>,
    /// True for straw2 buckets with at least one item: the only kind the
    /// lockstep walk handles.
    fast: Vec<bool>,
    /// `fast` as 0/1 words, for the AVX-512 walk's gathers.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    fast32: Vec<i32>,
    items: Vec<i32>,
    /// `2^44 / w` per item, rounded to `f32` (`+inf` for weight 0): an
    /// approximate draw is `approx_ln(u) * scale`.
    scale: Vec<f32>,
    /// Item id (low half) and scale bits (high half) per item: the AVX2
    /// kernel fetches both with one 64-bit gather per four lanes, cheaper
    /// than two 32-bit gathers per eight.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pairs: Vec<u64>,
    /// Exact reciprocals and weights per item, for [`straw2_exact`].
    recips: Vec<Recip>,
    weights: Vec<u32>,
    /// Per bucket slot: the absolute error allowance of its approximate
    /// draws (`K` of [`decisive`]); `inf` when every weight is 0.
    slack: Vec<f64>,
    any_fast: bool,
}

impl Flat {
    fn new(map: &CrushMap) -> Flat {
        let slots = map.max_buckets();
        let mut flat = Flat {
            off: vec![0; slots],
            size: vec![0; slots],
            type_id: vec![0; slots],
            fast: vec![false; slots],
            fast32: Vec::new(),
            items: Vec::new(),
            scale: Vec::new(),
            pairs: Vec::new(),
            recips: Vec::new(),
            weights: Vec::new(),
            slack: vec![f64::INFINITY; slots],
            any_fast: false,
        };
        for b in map.buckets() {
            let slot = (-1 - b.id) as usize;
            flat.off[slot] = flat.items.len() as u32;
            flat.size[slot] = b.size() as u32;
            flat.type_id[slot] = b.type_id;
            flat.fast[slot] = b.alg == BucketAlg::Straw2 && b.size() > 0;
            flat.any_fast |= flat.fast[slot];
            flat.items.extend_from_slice(&b.items);
            flat.scale.extend(b.item_weights.iter().map(|&w| if w == 0 { f32::INFINITY } else { (LN_SCALE / w as f64) as f32 }));
            let first = flat.pairs.len();
            flat.pairs.extend(b.items.iter().zip(&flat.scale[first..]).map(|(&i, s)| i as u32 as u64 | (s.to_bits() as u64) << 32));
            flat.recips.extend(b.item_weights.iter().map(|&w| Recip::new(w)));
            flat.weights.extend_from_slice(&b.item_weights);
            if let Some(w_min) = b.item_weights.iter().copied().filter(|&w| w > 0).min() {
                flat.slack[slot] = LN_APPROX_ERROR_MAX * (LN_SCALE / w_min as f64) * (1.0 + SLACK_ROUNDING);
            }
        }
        flat.fast32 = flat.fast.iter().map(|&f| f as i32).collect();
        flat
    }

    #[inline(always)]
    fn slot_of(&self, item: i32) -> Option<usize> {
        if item >= 0 {
            return None;
        }
        let slot = (-1 - item as i64) as usize;
        (slot < self.fast.len() && self.fast[slot]).then_some(slot)
    }
}

/// `crush_ln` works in units of `2^-44` of a binary logarithm.
const LN_SCALE: f64 = (1u64 << 44) as f64;
/// `p(t) ~ log2(1 + t)` on `[0, 1)`, `p(t) = t * (c0 + t * (c1 + ...))`:
/// near-minimax, `|error| < 2^-16`, below the table noise of `crush_ln`.
const LOG2_POLY: [f32; 5] = [1.441965, -0.7096573, 0.41757908, -0.19624974, 0.046377182];
/// `approx_ln` stays at or below this: every exact `ln` is at most
/// `-2^-12` (in log2 units), and a negative draw keeps `0 * inf` away.
const LN_APPROX_CEIL: f32 = -1.0 / (1u32 << 20) as f32;
/// Bound on `|approx_ln(u) - (crush_ln(u) - 2^48) / 2^44|` over every `u`
/// (measured 5.69e-5: Ceph's tables deviate from log2 by up to ~2^-14.5;
/// the test `approx_ln_error_is_bounded` checks every `u`).
const LN_APPROX_ERROR_MAX: f64 = 5.8e-5;
/// Relative error of an approximate draw beyond the `ln` error: `f32`
/// rounding of `2^44 / w` and of the product (each `2^-24`), doubled.
const DRAW_ROUNDING: f64 = 1.0 / (1u64 << 21) as f64;
/// Widens the per-bucket slack for its own rounding.
const SLACK_ROUNDING: f64 = 1.0 / (1u64 << 20) as f64;

/// Approximate `(crush_ln(u) - 2^48) / 2^44`, i.e. `log2((u + 1) / 2^16)`,
/// from the `f32` exponent of `u + 1` and [`LOG2_POLY`] on its mantissa.
/// The SIMD kernels run the same operations in the same order.
#[inline(always)]
fn approx_ln(u: u32) -> f32 {
    // Exact: u + 1 <= 2^16.
    let bits = ((u & 0xffff) + 1) as f32;
    let bits = bits.to_bits();
    let biased_exp = (bits >> 23) as f32;
    let t = f32::from_bits((bits & 0x7f_ffff) | 0x3f80_0000) - 1.0;
    let c = LOG2_POLY;
    let p = ((((c[4] * t + c[3]) * t + c[2]) * t + c[1]) * t + c[0]) * t;
    // Unbiased exponent minus 16: 127 + 16.
    ((biased_exp - 143.0) + p).min(LN_APPROX_CEIL)
}

/// Whether the best approximate draw `best` certainly beats every other
/// draw of its bucket exactly, given the second-best `second` and the
/// bucket's slack `k`.
///
/// Each approximate draw `D` is within `E = k + DRAW_ROUNDING * |D|` of the
/// real quotient `t = ln / w`, and the exact draw `trunc(t)` lies in
/// `[t, t + 1)` (`t < 0`). If `best - second >= 1 + E_best + E_second`, the
/// best item's exact draw is strictly above every other's (the worst
/// competitor is the second best: the condition only gets easier as `D`
/// falls), so it is Ceph's winner whatever the tie rule. The check runs in
/// `f64` with 2 instead of 1 to absorb its own rounding. Ties, `-inf`
/// everywhere (all weights 0) and NaN all answer "not decisive".
#[inline(always)]
fn decisive(best: f32, second: f32, k: f64) -> bool {
    let (b, s) = (best as f64, second as f64);
    b - s >= 2.0 + 2.0 * k + DRAW_ROUNDING * (b.abs() + s.abs())
}

/// Straw2 choice for `L` lanes, each in its own bucket slot (all `fast`).
/// `K` selects the kernel: [`KERNEL_AVX512`], [`KERNEL_AVX2`] or portable.
#[inline(always)]
fn straw2_lanes<const L: usize, const K: u8>(
    flat: &Flat,
    slot: &[usize; L],
    x: &[u32; L],
    r: &[u32; L],
    chosen: &mut [i32; L],
) {
    let mut off = [0u32; L];
    let mut last = [0u32; L];
    let mut max_size = 0u32;
    for l in 0..L {
        let s = slot[l];
        off[l] = flat.off[s];
        let size = flat.size[s];
        last[l] = off[l] + size - 1;
        max_size = max_size.max(size);
    }
    // Lanes whose approximate winner is not decisive, one bit each.
    let mut undecided = 0u32;
    #[cfg(not(target_arch = "x86_64"))]
    let done = false;
    #[cfg(target_arch = "x86_64")]
    let done = (K == KERNEL_AVX2 && L == 8) || (K == KERNEL_AVX512 && L == 16);
    #[cfg(target_arch = "x86_64")]
    {
        if K == KERNEL_AVX512 && L == 16 {
            let slack: [f64; 16] = std::array::from_fn(|l| flat.slack[slot[l]]);
            // SAFETY: K == KERNEL_AVX512 only inside `chunks_avx512`, which
            // runs only when the CPU has AVX-512 F/DQ/BW/VL; every offset
            // and `last` index is inside `flat`'s arrays (built together).
            undecided = unsafe {
                x86::straw2_avx512(
                    flat,
                    (&off[..]).try_into().expect("L == 16"),
                    (&last[..]).try_into().expect("L == 16"),
                    max_size,
                    (&x[..]).try_into().expect("L == 16"),
                    (&r[..]).try_into().expect("L == 16"),
                    &slack,
                    (&mut chosen[..]).try_into().expect("L == 16"),
                )
            };
        } else if done {
            let slack: [f64; 8] = std::array::from_fn(|l| flat.slack[slot[l]]);
            // SAFETY: inside `chunks_avx2` on a CPU with AVX2; indices as above.
            undecided = unsafe {
                x86::straw2_avx2(
                    flat,
                    (&off[..]).try_into().expect("L == 8"),
                    (&last[..]).try_into().expect("L == 8"),
                    max_size,
                    (&x[..]).try_into().expect("L == 8"),
                    (&r[..]).try_into().expect("L == 8"),
                    &slack,
                    (&mut chosen[..]).try_into().expect("L == 8"),
                )
            };
        }
    }
    if !done {
        let (mut best, mut second) = ([0f32; L], [0f32; L]);
        straw2_portable(flat, &off, &last, max_size, x, r, chosen, &mut best, &mut second);
        for l in 0..L {
            if !decisive(best[l], second[l], flat.slack[slot[l]]) {
                undecided |= 1 << l;
            }
        }
    }
    while undecided != 0 {
        let l = undecided.trailing_zeros() as usize;
        undecided &= undecided - 1;
        chosen[l] = straw2_exact::<K>(flat, slot[l], x[l], r[l]);
    }
}

/// Busy lanes at or below which a descent draws lane by lane: one vector
/// pass costs about as much as three single-lane passes.
const scalar_lanes_max: usize = 3;

/// Blocks of sixteen items drawn at once by the few-lanes path of the
/// AVX-512 walk (bounds its stack array): 24 covers seven lanes in buckets
/// of 48.
const few_blocks_max: usize = 24;

/// Exact straw2 for one lane: Ceph's draws, eight items per vector step
/// (the scalar mapper's code).
#[inline(always)]
fn straw2_exact<const K: u8>(flat: &Flat, slot: usize, x: u32, r: u32) -> i32 {
    let off = flat.off[slot] as usize;
    let size = flat.size[slot] as usize;
    let (items, recips) = (&flat.items[off..off + size], &flat.recips[off..off + size]);
    #[cfg(target_arch = "x86_64")]
    {
        if K == KERNEL_AVX2 || K == KERNEL_AVX512 {
            // SAFETY: these kernels run only on CPUs with AVX2; the three
            // slices have the bucket's size.
            return unsafe { straw2_exact_avx2(items, &flat.weights[off..off + size], recips, x, r) };
        }
    }
    straw2_exact_items(items, recips, x, r)
}

/// Portable approximate straw2 over lanes (the reference for the AVX2
/// kernel): per lane the best item, its draw and the second-best draw.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn straw2_portable<const L: usize>(
    flat: &Flat,
    off: &[u32; L],
    last: &[u32; L],
    max_size: u32,
    x: &[u32; L],
    r: &[u32; L],
    chosen: &mut [i32; L],
    best: &mut [f32; L],
    second: &mut [f32; L],
) {
    let items = &flat.items[..];
    let scale = &flat.scale[..];
    *best = [f32::NEG_INFINITY; L];
    *second = [f32::NEG_INFINITY; L];
    for l in 0..L {
        chosen[l] = items[off[l] as usize];
    }
    for j in 0..max_size {
        for l in 0..L {
            let idx = off[l] + j;
            let valid = idx <= last[l];
            let idx = idx.min(last[l]) as usize;
            let item = items[idx];
            let u = hash32_3(x[l], item as u32, r[l]) & 0xffff;
            let draw = if valid { approx_ln(u) * scale[idx] } else { f32::NEG_INFINITY };
            second[l] = second[l].max(best[l].min(draw));
            if draw > best[l] {
                best[l] = draw;
                chosen[l] = item;
            }
        }
    }
}

const KERNEL_PORTABLE: u8 = 0;
const KERNEL_AVX2: u8 = 1;
const KERNEL_AVX512: u8 = 2;

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! Explicit straw2 kernels, rjenkins1 on 16 (AVX-512) or 8 (AVX2) lanes
    //! of u32, both filter-then-verify: a 64-bit gather of (item, scale) per
    //! lane, the approximate `ln` of [`super::approx_ln`] (same bits), a
    //! running best and second best per lane, and the [`super::decisive`]
    //! test in `f64`. AVX-512 adds the lane walk of a descent in vector
    //! registers and masks ([`descend_avx512_x2`]) and a few-lanes path that
    //! draws a lane's bucket with the items across the vector
    //! ([`straw2_blocks_avx512`]).
    use super::{Flat, DRAW_ROUNDING, LN_APPROX_CEIL, LOG2_POLY};
    use crate::hash::x86::hash32_3_256;
    use std::arch::x86_64::*;

    const SEED: i32 = 1_315_423_911;

    /// Positions of a bucket hashed per loop turn by the AVX-512 kernel
    /// (32 registers; the AVX2 kernel, with 16, runs three). The rjenkins
    /// chain is ~135 dependent operations; independent chains, interleaved
    /// line by line, keep the vector units busy instead of waiting.
    /// Measured on the `big` fixture (buckets of 5, 8 and 25): 5 beats 4
    /// by ~4% and 6 (spills).
    const WAYS: usize = 5;

    /// `W` hashes, one per vector of `a` (= x), item and `c` (= r).
    ///
    /// # Safety
    /// The CPU has AVX-512 F. Call it from AVX-512 code: like
    /// [`hash32_3_256`], it has no `target_feature` of its own so that it
    /// can be `inline(always)` (a call passes its vectors through memory).
    #[inline(always)]
    unsafe fn hash3_512_ways<const W: usize>(a0: [__m512i; W], c0: [__m512i; W], items: &[__m512i; W]) -> [__m512i; W] {
        let seed = _mm512_set1_epi32(SEED);
        let mut a = a0;
        let mut b = *items;
        let mut c = c0;
        let mut h = [seed; W];
        let mut x = [_mm512_set1_epi32(231_232); W];
        let mut y = [_mm512_set1_epi32(1232); W];
        for k in 0..W {
            h[k] = _mm512_xor_si512(_mm512_xor_si512(seed, a[k]), _mm512_xor_si512(b[k], c[k]));
        }
        macro_rules! line {
            ($a:ident, $b:ident, $c:ident, $sh:ident, $n:literal) => {
                for k in 0..W {
                    $a[k] = _mm512_xor_si512(_mm512_sub_epi32(_mm512_sub_epi32($a[k], $b[k]), $c[k]), $sh::<$n>($c[k]));
                }
            };
        }
        macro_rules! mix {
            ($a:ident, $b:ident, $c:ident) => {
                line!($a, $b, $c, _mm512_srli_epi32, 13);
                line!($b, $c, $a, _mm512_slli_epi32, 8);
                line!($c, $a, $b, _mm512_srli_epi32, 13);
                line!($a, $b, $c, _mm512_srli_epi32, 12);
                line!($b, $c, $a, _mm512_slli_epi32, 16);
                line!($c, $a, $b, _mm512_srli_epi32, 5);
                line!($a, $b, $c, _mm512_srli_epi32, 3);
                line!($b, $c, $a, _mm512_slli_epi32, 10);
                line!($c, $a, $b, _mm512_srli_epi32, 15);
            };
        }
        mix!(a, b, h);
        mix!(c, x, h);
        mix!(y, a, h);
        mix!(b, x, h);
        mix!(y, c, h);
        h
    }

    /// Running best and second-best approximate draw per lane (AVX-512).
    struct Best512 {
        draw: __m512,
        second: __m512,
        item: __m512i,
    }

    /// Per-call constants of the AVX-512 straw2 kernel.
    struct Ctx512 {
        pairs: *const i64,
        off_v: __m512i,
        last_v: __m512i,
        xv: __m512i,
        rv: __m512i,
    }

    /// [`super::approx_ln`] on sixteen 16-bit hashes: the same operations
    /// in the same order (no fused multiply-add), so the same bits.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn approx_ln_512(u: __m512i) -> __m512 {
        let bits = _mm512_castps_si512(_mm512_cvtepi32_ps(_mm512_add_epi32(u, _mm512_set1_epi32(1))));
        let biased_exp = _mm512_cvtepi32_ps(_mm512_srli_epi32::<23>(bits));
        let mantissa = _mm512_or_si512(_mm512_and_si512(bits, _mm512_set1_epi32(0x7f_ffff)), _mm512_set1_epi32(0x3f80_0000));
        let t = _mm512_sub_ps(_mm512_castsi512_ps(mantissa), _mm512_set1_ps(1.0));
        let c = LOG2_POLY;
        let mut p = _mm512_set1_ps(c[4]);
        p = _mm512_add_ps(_mm512_mul_ps(p, t), _mm512_set1_ps(c[3]));
        p = _mm512_add_ps(_mm512_mul_ps(p, t), _mm512_set1_ps(c[2]));
        p = _mm512_add_ps(_mm512_mul_ps(p, t), _mm512_set1_ps(c[1]));
        p = _mm512_add_ps(_mm512_mul_ps(p, t), _mm512_set1_ps(c[0]));
        p = _mm512_mul_ps(p, t);
        let ln = _mm512_add_ps(_mm512_sub_ps(biased_exp, _mm512_set1_ps(143.0)), p);
        _mm512_min_ps(ln, _mm512_set1_ps(LN_APPROX_CEIL))
    }

    /// Draws positions `j .. j + W` of every lane's bucket and folds them,
    /// in position order, into `best`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq,avx512bw,avx512vl")]
    unsafe fn draw_positions_512<const W: usize>(c: &Ctx512, j: u32, best: &mut Best512) {
        let mut valid: [__mmask16; W] = [0; W];
        let mut item = [c.off_v; W];
        let mut scale = [_mm512_setzero_ps(); W];
        // Even and odd 32-bit halves of sixteen (item, scale) pairs.
        let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
        for k in 0..W {
            let raw = _mm512_add_epi32(c.off_v, _mm512_set1_epi32((j as usize + k) as i32));
            // Past a lane's bucket: nothing drawn, index clamped in bounds.
            valid[k] = _mm512_cmple_epu32_mask(raw, c.last_v);
            let idx = _mm512_min_epu32(raw, c.last_v);
            let lo = _mm512_i32gather_epi64::<8>(_mm512_castsi512_si256(idx), c.pairs.cast());
            let hi = _mm512_i32gather_epi64::<8>(_mm512_extracti64x4_epi64::<1>(idx), c.pairs.cast());
            item[k] = _mm512_permutex2var_epi32(lo, even, hi);
            scale[k] = _mm512_castsi512_ps(_mm512_permutex2var_epi32(lo, odd, hi));
        }
        let h = hash3_512_ways::<W>([c.xv; W], [c.rv; W], &item);
        for k in 0..W {
            let u = _mm512_and_si512(h[k], _mm512_set1_epi32(0xffff));
            let draw = _mm512_mul_ps(approx_ln_512(u), scale[k]);
            // Past a lane's bucket: no draw.
            let draw = _mm512_mask_blend_ps(valid[k], _mm512_set1_ps(f32::NEG_INFINITY), draw);
            // In position order: a tie keeps the earlier item (and makes
            // the second best equal to the best, so the lane is redone).
            let gt = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(draw, best.draw);
            best.second = _mm512_max_ps(best.second, _mm512_min_ps(best.draw, draw));
            best.draw = _mm512_mask_blend_ps(gt, best.draw, draw);
            best.item = _mm512_mask_blend_epi32(gt, best.item, item[k]);
        }
    }

    /// Approximate straw2 for sixteen lanes (the AVX2 kernel on twice the
    /// lanes, with masks): each lane's best item into `chosen`; returns a
    /// bit per lane whose best is not [`super::decisive`] given its
    /// bucket's `slack`.
    ///
    /// # Safety
    /// The CPU has AVX-512 F/DQ/BW/VL; `off[l]..=last[l]` are valid indices
    /// of `flat.pairs` for every lane.
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq,avx512bw,avx512vl")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn straw2_avx512(
        flat: &Flat,
        off: &[u32; 16],
        last: &[u32; 16],
        max_size: u32,
        x: &[u32; 16],
        r: &[u32; 16],
        slack: &[f64; 16],
        chosen: &mut [i32; 16],
    ) -> u32 {
        let (best, undecided) = straw2_avx512_v(
            flat,
            _mm512_loadu_si512(off.as_ptr().cast()),
            _mm512_loadu_si512(last.as_ptr().cast()),
            max_size,
            _mm512_loadu_si512(x.as_ptr().cast()),
            _mm512_loadu_si512(r.as_ptr().cast()),
            [_mm512_loadu_pd(slack.as_ptr()), _mm512_loadu_pd(slack[8..].as_ptr())],
        );
        _mm512_storeu_si512(chosen.as_mut_ptr().cast(), best);
        undecided as u32
    }

    /// [`straw2_avx512`] on vectors: the lanes' best items and the
    /// undecided lanes.
    ///
    /// # Safety
    /// As for [`straw2_avx512`]; call from AVX-512 code: it has no
    /// `target_feature` of its own so that it can be `inline(always)`.
    #[inline(always)]
    unsafe fn straw2_avx512_v(
        flat: &Flat,
        off_v: __m512i,
        last_v: __m512i,
        max_size: u32,
        xv: __m512i,
        rv: __m512i,
        slack: [__m512d; 2],
    ) -> (__m512i, __mmask16) {
        let ctx = Ctx512 { pairs: flat.pairs.as_ptr().cast(), off_v, last_v, xv, rv };
        let mut best = Best512 {
            draw: _mm512_set1_ps(f32::NEG_INFINITY),
            second: _mm512_set1_ps(f32::NEG_INFINITY),
            item: _mm512_i32gather_epi32::<4>(off_v, flat.items.as_ptr().cast()),
        };
        let mut j = 0u32;
        while max_size - j >= WAYS as u32 {
            draw_positions_512::<WAYS>(&ctx, j, &mut best);
            j += WAYS as u32;
        }
        // The tail hashes only the positions that exist.
        match max_size - j {
            4 => draw_positions_512::<4>(&ctx, j, &mut best),
            3 => draw_positions_512::<3>(&ctx, j, &mut best),
            2 => draw_positions_512::<2>(&ctx, j, &mut best),
            1 => draw_positions_512::<1>(&ctx, j, &mut best),
            _ => {}
        }
        let halves = |v: __m512| [_mm512_cvtps_pd(_mm512_castps512_ps256(v)), _mm512_cvtps_pd(_mm512_extractf32x8_ps::<1>(v))];
        let (b, s) = (halves(best.draw), halves(best.second));
        let mut decided = 0u32;
        for h in 0..2 {
            let need = _mm512_add_pd(
                _mm512_add_pd(_mm512_set1_pd(2.0), _mm512_mul_pd(_mm512_set1_pd(2.0), slack[h])),
                _mm512_mul_pd(_mm512_set1_pd(DRAW_ROUNDING), _mm512_add_pd(_mm512_abs_pd(b[h]), _mm512_abs_pd(s[h]))),
            );
            let ok = _mm512_cmp_pd_mask::<_CMP_GE_OQ>(_mm512_sub_pd(b[h], s[h]), need);
            decided |= (ok as u32) << (8 * h);
        }
        (best.item, !decided as __mmask16)
    }

    /// Lanes of `m` whose `items` are buckets the lockstep walk handles
    /// (`Flat::slot_of` on vectors), and their slots.
    ///
    /// # Safety
    /// The CPU has AVX-512 F; call from AVX-512 code.
    #[inline(always)]
    unsafe fn fast_slots(flat: &Flat, items: __m512i, m: __mmask16) -> (__m512i, __mmask16) {
        let zero = _mm512_setzero_si512();
        // -1 - item
        let slot = _mm512_xor_si512(items, _mm512_set1_epi32(-1));
        let m = m
            & _mm512_cmplt_epi32_mask(items, zero)
            & _mm512_cmplt_epu32_mask(slot, _mm512_set1_epi32(flat.fast32.len() as i32));
        let fast = _mm512_mask_i32gather_epi32::<4>(zero, m, slot, flat.fast32.as_ptr().cast());
        (slot, _mm512_mask_test_epi32_mask(m, fast, fast))
    }

    /// One sixteen-lane descent in progress: the lanes' slots, results and
    /// states in vectors and masks.
    struct Walk16 {
        slot: __m512i,
        busy: __mmask16,
        new_slow: __mmask16,
        found: __m512i,
        xv: __m512i,
        rv: __m512i,
        depth: usize,
    }

    /// Starts a descent: the active lanes (not yet slow) whose `start` is
    /// a bucket the walk handles are busy, the others become slow.
    ///
    /// # Safety
    /// The CPU has AVX-512 F/DQ/BW/VL; call from such code.
    #[inline(always)]
    unsafe fn walk_start(
        flat: &Flat,
        x: &[u32; 16],
        slow: &[bool; 16],
        active: &[bool; 16],
        start: &[i32; 16],
        r: &[u32; 16],
        found: &[i32; 16],
    ) -> Walk16 {
        let ones = _mm_set1_epi8(1);
        let was_slow = _mm_test_epi8_mask(_mm_loadu_si128(slow.as_ptr().cast()), ones);
        let act = _mm_test_epi8_mask(_mm_loadu_si128(active.as_ptr().cast()), ones) & !was_slow;
        let (slot0, busy) = fast_slots(flat, _mm512_loadu_si512(start.as_ptr().cast()), act);
        let mut slot = slot0;
        if busy != 0 {
            // Idle lanes ride along in a real bucket so every load is in bounds.
            let mut slots = [0u32; 16];
            _mm512_storeu_si512(slots.as_mut_ptr().cast(), slot0);
            let idle = _mm512_set1_epi32(slots[busy.trailing_zeros() as usize] as i32);
            slot = _mm512_mask_blend_epi32(busy, idle, slot0);
        }
        Walk16 {
            slot,
            busy,
            new_slow: act & !busy,
            found: _mm512_loadu_si512(found.as_ptr().cast()),
            xv: _mm512_loadu_si512(x.as_ptr().cast()),
            rv: _mm512_loadu_si512(r.as_ptr().cast()),
            depth: 0,
        }
    }

    /// One level of a descent (call while `w.busy != 0`): each busy lane
    /// draws in its bucket; a lane that reaches `type_id` is done, one
    /// that reaches a bucket the walk cannot handle (or too deep) is slow.
    ///
    /// # Safety
    /// The CPU has AVX-512 F/DQ/BW/VL and AVX2; call from such code.
    #[inline(always)]
    unsafe fn walk_level(flat: &Flat, w: &mut Walk16, x: &[u32; 16], r: &[u32; 16], type_id: i32) {
        if w.depth == super::descent_depth_max {
            w.new_slow |= w.busy;
            w.busy = 0;
            return;
        }
        w.depth += 1;
        let (slot, busy) = (w.slot, w.busy);
        let zero = _mm512_setzero_si512();
        let mut slots = [0u32; 16];
        _mm512_storeu_si512(slots.as_mut_ptr().cast(), slot);
        let mut chosen = [0i32; 16];
        let item = if few_lanes(flat, &slots, busy, x, r, &mut chosen) {
            _mm512_loadu_si512(chosen.as_ptr().cast())
        } else {
            let off = _mm512_i32gather_epi32::<4>(slot, flat.off.as_ptr().cast());
            let size = _mm512_i32gather_epi32::<4>(slot, flat.size.as_ptr().cast());
            let last = _mm512_sub_epi32(_mm512_add_epi32(off, size), _mm512_set1_epi32(1));
            let slack = [
                _mm512_i32gather_pd::<8>(_mm512_castsi512_si256(slot), flat.slack.as_ptr().cast()),
                _mm512_i32gather_pd::<8>(_mm512_extracti64x4_epi64::<1>(slot), flat.slack.as_ptr().cast()),
            ];
            let max_size = _mm512_reduce_max_epu32(size);
            let (best, undecided) = straw2_avx512_v(flat, off, last, max_size, w.xv, w.rv, slack);
            let mut undecided = (undecided & busy) as u32;
            if undecided == 0 {
                best
            } else {
                _mm512_storeu_si512(chosen.as_mut_ptr().cast(), best);
                while undecided != 0 {
                    let l = undecided.trailing_zeros() as usize;
                    undecided &= undecided - 1;
                    chosen[l] = super::straw2_exact::<{ super::KERNEL_AVX512 }>(flat, slots[l] as usize, x[l], r[l]);
                }
                _mm512_loadu_si512(chosen.as_ptr().cast())
            }
        };
        // The item's type (0 for a device, else its bucket's) and whether
        // the walk can go on in it: two independent gathers.
        let next = _mm512_xor_si512(item, _mm512_set1_epi32(-1));
        let bucket = busy
            & _mm512_cmplt_epi32_mask(item, zero)
            & _mm512_cmplt_epu32_mask(next, _mm512_set1_epi32(flat.type_id.len() as i32));
        let item_type = _mm512_mask_i32gather_epi32::<4>(zero, bucket, next, flat.type_id.as_ptr().cast());
        let fast = _mm512_mask_i32gather_epi32::<4>(zero, bucket, next, flat.fast32.as_ptr().cast());
        let is_type =
            _mm512_cmpeq_epi32_mask(item_type, _mm512_set1_epi32(type_id)) & (bucket | _mm512_cmpge_epi32_mask(item, zero));
        let hit = busy & is_type;
        w.found = _mm512_mask_blend_epi32(hit, w.found, item);
        let busy = busy & !hit;
        let fast = busy & _mm512_mask_test_epi32_mask(bucket, fast, fast);
        w.new_slow |= busy & !fast;
        w.busy = fast;
        w.slot = _mm512_mask_blend_epi32(fast, slot, next);
    }

    /// Writes a finished descent back: found items and new slow lanes.
    ///
    /// # Safety
    /// The CPU has AVX-512 F; call from such code.
    #[inline(always)]
    unsafe fn walk_finish(w: &Walk16, slow: &mut [bool; 16], found: &mut [i32; 16]) {
        _mm512_storeu_si512(found.as_mut_ptr().cast(), w.found);
        let mut m = w.new_slow as u32;
        while m != 0 {
            slow[m.trailing_zeros() as usize] = true;
            m &= m - 1;
        }
    }

    /// [`super::descend`] for thirty-two lanes, as two independent halves
    /// of sixteen with their slots, items and states in vectors and masks
    /// (the same decisions), walked level by level in turn: while one
    /// half's next buckets are being looked up (dependent gathers), the
    /// core draws the other half's.
    ///
    /// # Safety
    /// The CPU has AVX-512 F/DQ/BW/VL and AVX2 (exact redraws).
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq,avx512bw,avx512vl,avx2,fma,bmi2")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn descend_avx512_x2(
        flat: &Flat,
        x: &[u32; 32],
        slow: &mut [bool; 32],
        active: &[bool; 32],
        start: &[i32; 32],
        r: &[u32; 32],
        type_id: i32,
        found: &mut [i32; 32],
    ) {
        // No closures here: they would not inherit the target features.
        let (x_lo, x_hi) = x.split_at(16);
        let (r_lo, r_hi) = r.split_at(16);
        let (s_lo, s_hi) = slow.split_at_mut(16);
        let (a_lo, a_hi) = active.split_at(16);
        let (t_lo, t_hi) = start.split_at(16);
        let (f_lo, f_hi) = found.split_at_mut(16);
        let x2: [&[u32; 16]; 2] = [x_lo.try_into().expect("16"), x_hi.try_into().expect("16")];
        let r2: [&[u32; 16]; 2] = [r_lo.try_into().expect("16"), r_hi.try_into().expect("16")];
        let slow2: [&mut [bool; 16]; 2] = [s_lo.try_into().expect("16"), s_hi.try_into().expect("16")];
        let found2: [&mut [i32; 16]; 2] = [f_lo.try_into().expect("16"), f_hi.try_into().expect("16")];
        let mut w = [
            walk_start(flat, x2[0], slow2[0], a_lo.try_into().expect("16"), t_lo.try_into().expect("16"), r2[0], found2[0]),
            walk_start(flat, x2[1], slow2[1], a_hi.try_into().expect("16"), t_hi.try_into().expect("16"), r2[1], found2[1]),
        ];
        while (w[0].busy | w[1].busy) != 0 {
            for k in 0..2 {
                if w[k].busy != 0 {
                    walk_level(flat, &mut w[k], x2[k], r2[k], type_id);
                }
            }
        }
        let [slow_lo, slow_hi] = slow2;
        let [found_lo, found_hi] = found2;
        walk_finish(&w[0], slow_lo, found_lo);
        walk_finish(&w[1], slow_hi, found_hi);
    }

    /// The few-lanes path of [`descend_avx512_x2`]: when fewer than half the
    /// lanes are busy, draws each busy lane with its bucket's items across
    /// the vector (`ceil(size / 16)` hash vectors per lane instead of one
    /// per position of the largest bucket for all lanes); filter, then
    /// verify. Returns false (nothing drawn) when the lockstep pass is
    /// cheaper.
    ///
    /// # Safety
    /// The CPU has AVX-512 F/DQ/BW/VL and AVX2; call from such code; every
    /// busy lane's slot is a `fast` bucket.
    #[inline(always)]
    pub(super) unsafe fn few_lanes(flat: &Flat, slots: &[u32; 16], busy: __mmask16, x: &[u32; 16], r: &[u32; 16], chosen: &mut [i32; 16]) -> bool {
        if busy.count_ones() >= 8 {
            return false;
        }
        let mut blocks = [Block::default(); super::few_blocks_max];
        let (mut n, mut max_size) = (0usize, 0u32);
        let mut m = busy as u32;
        while m != 0 {
            let l = m.trailing_zeros() as usize;
            m &= m - 1;
            let s = slots[l] as usize;
            let (off, size) = (flat.off[s], flat.size[s]);
            max_size = max_size.max(size);
            let lane_blocks = size.div_ceil(16) as usize;
            if n + lane_blocks > super::few_blocks_max {
                return false;
            }
            for b in 0..lane_blocks as u32 {
                blocks[n] = Block { first: off + 16 * b, len: (size - 16 * b).min(16), x: x[l], r: r[l], lane: l as u32 };
                n += 1;
            }
        }
        if n as u32 >= max_size {
            return false;
        }
        let slack: [f64; 16] = std::array::from_fn(|l| flat.slack[slots[l] as usize]);
        let mut undecided = straw2_blocks_avx512(flat, &blocks[..n], &slack, &mut chosen[..]);
        while undecided != 0 {
            let l = undecided.trailing_zeros() as usize;
            undecided &= undecided - 1;
            chosen[l] = super::straw2_exact::<{ super::KERNEL_AVX512 }>(flat, slots[l] as usize, x[l], r[l]);
        }
        true
    }

    /// One block of up to sixteen consecutive items of one lane's bucket,
    /// drawn across the vector (the lane's `x` and `r` broadcast).
    #[derive(Clone, Copy, Default)]
    pub(super) struct Block {
        /// Index of the block's first item in `flat.pairs`.
        pub(super) first: u32,
        /// Items in the block, `1..=16`.
        pub(super) len: u32,
        pub(super) x: u32,
        pub(super) r: u32,
        /// Which of the caller's lanes (`< 16`) the block belongs to.
        pub(super) lane: u32,
    }

    /// Per lane: each vector slot's best and second-best approximate draw
    /// and the best's item.
    #[derive(Clone, Copy)]
    struct SlotBest {
        draw: __m512,
        second: __m512,
        item: __m512i,
    }

    /// Approximate draws of `W` blocks (interleaved hash chains), folded
    /// into their lanes' `acc` (`seen` marks lanes holding a value).
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq,avx512bw,avx512vl")]
    unsafe fn draw_blocks_512<const W: usize>(
        flat: &Flat,
        blocks: &[Block; W],
        acc: &mut [std::mem::MaybeUninit<SlotBest>; 16],
        seen: &mut u32,
    ) {
        let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
        let pairs: *const i64 = flat.pairs.as_ptr().cast();
        let mut item = [_mm512_setzero_si512(); W];
        let mut scale = [_mm512_setzero_ps(); W];
        let mut valid: [__mmask16; W] = [0; W];
        let mut xv = [_mm512_setzero_si512(); W];
        let mut rv = [_mm512_setzero_si512(); W];
        for k in 0..W {
            let b = blocks[k];
            valid[k] = ((1u32 << b.len) - 1) as __mmask16;
            // Masked loads: nothing past the block is read.
            let p = pairs.add(b.first as usize);
            let lo = _mm512_maskz_loadu_epi64(valid[k] as __mmask8, p);
            let hi = _mm512_maskz_loadu_epi64((valid[k] >> 8) as __mmask8, p.add(8));
            item[k] = _mm512_permutex2var_epi32(lo, even, hi);
            scale[k] = _mm512_castsi512_ps(_mm512_permutex2var_epi32(lo, odd, hi));
            xv[k] = _mm512_set1_epi32(b.x as i32);
            rv[k] = _mm512_set1_epi32(b.r as i32);
        }
        let h = hash3_512_ways::<W>(xv, rv, &item);
        for k in 0..W {
            let u = _mm512_and_si512(h[k], _mm512_set1_epi32(0xffff));
            let draw = _mm512_mul_ps(approx_ln_512(u), scale[k]);
            let draw = _mm512_mask_blend_ps(valid[k], _mm512_set1_ps(f32::NEG_INFINITY), draw);
            let lane = blocks[k].lane as usize & 15;
            if *seen & (1 << lane) == 0 {
                *seen |= 1 << lane;
                acc[lane].write(SlotBest { draw, second: _mm512_set1_ps(f32::NEG_INFINITY), item: item[k] });
                continue;
            }
            // A later block of the lane, slot by slot (ties need no
            // order: they are never decisive).
            let a = acc[lane].assume_init_mut();
            let gt = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(draw, a.draw);
            a.second = _mm512_max_ps(a.second, _mm512_min_ps(a.draw, draw));
            a.draw = _mm512_mask_blend_ps(gt, a.draw, draw);
            a.item = _mm512_mask_blend_epi32(gt, a.item, item[k]);
        }
    }

    /// Approximate straw2 for a few lanes, each over its own bucket with
    /// the items across the vector (`blocks`, every lane's in item
    /// order). Writes each lane's best item to `chosen[lane]` and sets bit
    /// `lane` of the result when it is not [`super::decisive`] (a lane
    /// whose two best slots tie is not).
    ///
    /// # Safety
    /// The CPU has AVX-512 F/DQ/BW/VL; every block lies inside
    /// `flat.pairs`; lanes are below 16.
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq,avx512bw,avx512vl")]
    pub(super) unsafe fn straw2_blocks_avx512(flat: &Flat, blocks: &[Block], slack: &[f64], chosen: &mut [i32]) -> u32 {
        let mut acc = [const { std::mem::MaybeUninit::<SlotBest>::uninit() }; 16];
        let mut seen = 0u32;
        let mut i = 0;
        // Three chains: measured a little faster than four here.
        while blocks.len() - i >= 3 {
            draw_blocks_512::<3>(flat, blocks[i..i + 3].try_into().expect("3 blocks"), &mut acc, &mut seen);
            i += 3;
        }
        match blocks.len() - i {
            2 => draw_blocks_512::<2>(flat, blocks[i..].try_into().expect("2 blocks"), &mut acc, &mut seen),
            1 => draw_blocks_512::<1>(flat, blocks[i..].try_into().expect("1 block"), &mut acc, &mut seen),
            _ => {}
        }
        let mut undecided = 0u32;
        let mut lanes = seen;
        while lanes != 0 {
            let lane = lanes.trailing_zeros() as usize;
            lanes &= lanes - 1;
            let a = acc[lane].assume_init_ref();
            let best = _mm512_reduce_max_ps(a.draw);
            let at = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(a.draw, _mm512_set1_ps(best));
            let mut items = [0i32; 16];
            _mm512_storeu_si512(items.as_mut_ptr().cast(), a.item);
            chosen[lane] = items[(at.trailing_zeros() & 15) as usize];
            // The runner-up: the best slot's second, or another slot's best.
            let second = _mm512_reduce_max_ps(_mm512_mask_blend_ps(at, a.draw, a.second));
            if at.count_ones() != 1 || !super::decisive(best, second, slack[lane]) {
                undecided |= 1 << lane;
            }
        }
        undecided
    }

    /// Running best and second-best approximate draw per lane (AVX2).
    struct Best256 {
        draw: __m256,
        second: __m256,
        item: __m256i,
    }

    /// Per-call constants of the AVX2 straw2 kernel. Offsets are kept in
    /// gather order: 64-bit blocks 1 and 2 swapped (lanes 0 1 4 5 2 3 6 7),
    /// so that the two 4-lane gathers of `pairs`, unpacked by
    /// `_mm256_shuffle_ps` (which works within 128-bit halves), come out
    /// in lane order.
    struct Ctx256 {
        pairs: *const i64,
        off_p: __m256i,
        last_p: __m256i,
        xv: __m256i,
        rv: __m256i,
    }

    /// [`super::approx_ln`] on eight 16-bit hashes: the same operations in
    /// the same order, so the same bits.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn approx_ln_256(u: __m256i) -> __m256 {
        let bits = _mm256_castps_si256(_mm256_cvtepi32_ps(_mm256_add_epi32(u, _mm256_set1_epi32(1))));
        let biased_exp = _mm256_cvtepi32_ps(_mm256_srli_epi32::<23>(bits));
        let mantissa = _mm256_or_si256(_mm256_and_si256(bits, _mm256_set1_epi32(0x7f_ffff)), _mm256_set1_epi32(0x3f80_0000));
        let t = _mm256_sub_ps(_mm256_castsi256_ps(mantissa), _mm256_set1_ps(1.0));
        let c = LOG2_POLY;
        let mut p = _mm256_set1_ps(c[4]);
        p = _mm256_add_ps(_mm256_mul_ps(p, t), _mm256_set1_ps(c[3]));
        p = _mm256_add_ps(_mm256_mul_ps(p, t), _mm256_set1_ps(c[2]));
        p = _mm256_add_ps(_mm256_mul_ps(p, t), _mm256_set1_ps(c[1]));
        p = _mm256_add_ps(_mm256_mul_ps(p, t), _mm256_set1_ps(c[0]));
        p = _mm256_mul_ps(p, t);
        let ln = _mm256_add_ps(_mm256_sub_ps(biased_exp, _mm256_set1_ps(143.0)), p);
        _mm256_min_ps(ln, _mm256_set1_ps(LN_APPROX_CEIL))
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    /// Draws positions `j .. j + W` of every lane's bucket and folds them,
    /// in position order, into `best`.
    unsafe fn draw_positions_256<const W: usize>(c: &Ctx256, j: u32, best: &mut Best256) {
        let mut valid = [c.off_p; W];
        let mut item = [c.off_p; W];
        let mut scale = [_mm256_setzero_ps(); W];
        for k in 0..W {
            let raw = _mm256_add_epi32(c.off_p, _mm256_set1_epi32((j as usize + k) as i32));
            // raw <= last  <=>  min(raw, last) == raw (unsigned)
            let idx = _mm256_min_epu32(raw, c.last_p);
            // Back to lane order (the block swap is its own inverse).
            valid[k] = _mm256_permute4x64_epi64::<0xd8>(_mm256_cmpeq_epi32(idx, raw));
            let a = _mm256_castsi256_ps(_mm256_i32gather_epi64::<8>(c.pairs, _mm256_castsi256_si128(idx)));
            let b = _mm256_castsi256_ps(_mm256_i32gather_epi64::<8>(c.pairs, _mm256_extracti128_si256::<1>(idx)));
            item[k] = _mm256_castps_si256(_mm256_shuffle_ps::<0x88>(a, b));
            scale[k] = _mm256_shuffle_ps::<0xdd>(a, b);
        }
        let h = hash32_3_256::<W>(c.xv, c.rv, &item);
        for k in 0..W {
            let u = _mm256_and_si256(h[k], _mm256_set1_epi32(0xffff));
            let scale = scale[k];
            let draw = _mm256_mul_ps(approx_ln_256(u), scale);
            // Past a lane's bucket: no draw.
            let draw = _mm256_blendv_ps(_mm256_set1_ps(f32::NEG_INFINITY), draw, _mm256_castsi256_ps(valid[k]));
            // In position order: a tie keeps the earlier item (and makes
            // the second best equal to the best, so the lane is redone).
            let gt = _mm256_cmp_ps::<_CMP_GT_OQ>(draw, best.draw);
            best.second = _mm256_max_ps(best.second, _mm256_min_ps(best.draw, draw));
            best.draw = _mm256_blendv_ps(best.draw, draw, gt);
            best.item = _mm256_blendv_epi8(best.item, item[k], _mm256_castps_si256(gt));
        }
    }

    /// Approximate straw2 for eight lanes: each lane's best item into
    /// `chosen`; returns a bit per lane whose best is not [`super::decisive`]
    /// given its bucket's `slack` (the same test on four `f64` lanes).
    ///
    /// # Safety
    /// The CPU has AVX2; indices as for [`straw2_avx512`].
    #[allow(clippy::too_many_arguments)]
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn straw2_avx2(
        flat: &Flat,
        off: &[u32; 8],
        last: &[u32; 8],
        max_size: u32,
        x: &[u32; 8],
        r: &[u32; 8],
        slack: &[f64; 8],
        chosen: &mut [i32; 8],
    ) -> u32 {
        let items = flat.items.as_ptr();
        let off_v = _mm256_loadu_si256(off.as_ptr().cast());
        let ctx = Ctx256 {
            pairs: flat.pairs.as_ptr().cast(),
            off_p: _mm256_permute4x64_epi64::<0xd8>(off_v),
            last_p: _mm256_permute4x64_epi64::<0xd8>(_mm256_loadu_si256(last.as_ptr().cast())),
            xv: _mm256_loadu_si256(x.as_ptr().cast()),
            rv: _mm256_loadu_si256(r.as_ptr().cast()),
        };
        let mut best = Best256 {
            draw: _mm256_set1_ps(f32::NEG_INFINITY),
            second: _mm256_set1_ps(f32::NEG_INFINITY),
            item: _mm256_i32gather_epi32::<4>(items.cast(), off_v),
        };
        let mut j = 0u32;
        // Three interleaved hash chains: measured faster than two (the
        // chains wait on each other less) and than four (more spills).
        while max_size - j >= 3 {
            draw_positions_256::<3>(&ctx, j, &mut best);
            j += 3;
        }
        if max_size - j >= 2 {
            draw_positions_256::<2>(&ctx, j, &mut best);
            j += 2;
        }
        if max_size - j >= 1 {
            draw_positions_256::<1>(&ctx, j, &mut best);
        }
        _mm256_storeu_si256(chosen.as_mut_ptr().cast(), best.item);
        let halves = |v: __m256| [_mm256_cvtps_pd(_mm256_castps256_ps128(v)), _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(v))];
        let (b, s) = (halves(best.draw), halves(best.second));
        let abs = |v: __m256d| _mm256_andnot_pd(_mm256_set1_pd(-0.0), v);
        let mut decided = 0;
        for h in 0..2 {
            let k = _mm256_loadu_pd(slack[4 * h..].as_ptr());
            let need = _mm256_add_pd(
                _mm256_add_pd(_mm256_set1_pd(2.0), _mm256_mul_pd(_mm256_set1_pd(2.0), k)),
                _mm256_mul_pd(_mm256_set1_pd(DRAW_ROUNDING), _mm256_add_pd(abs(b[h]), abs(s[h]))),
            );
            let ok = _mm256_cmp_pd::<_CMP_GE_OQ>(_mm256_sub_pd(b[h], s[h]), need);
            decided |= (_mm256_movemask_pd(ok) as u32) << (4 * h);
        }
        !decided & 0xff
    }
}

/// Lane state of one chunk walking a rule in lockstep.
struct Chunk<const L: usize> {
    x: [u32; L],
    /// Lanes that left the fast path (mapped again by the scalar oracle).
    slow: [bool; L],
    /// Working vectors `w`, `o`, `c` of `crush_do_rule`, position-major.
    vecs: [Vec<[i32; L]>; 3],
    result: Vec<[i32; L]>,
}

/// Descends from each active lane's `start` bucket with rank `r` until an
/// item of `type_id`. An active lane that cannot (non-straw2 or empty
/// bucket, device of the wrong type, too deep) becomes slow (in `slow`).
/// Inactive lanes compute nothing useful and are never marked. Lane `l`
/// hashes input `x[l]`: a chunk's inputs, or virtual lanes.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn descend<const L: usize, const K: u8>(
    flat: &Flat,
    x: &[u32; L],
    slow: &mut [bool; L],
    active: &[bool; L],
    start: &[i32; L],
    r: &[u32; L],
    type_id: i32,
    found: &mut [i32; L],
) {
    #[cfg(target_arch = "x86_64")]
    {
        if K == KERNEL_AVX512 && L == 32 {
            // SAFETY: K == KERNEL_AVX512 only inside `chunks_avx512` (CPU
            // checked); L == 32.
            unsafe {
                x86::descend_avx512_x2(
                    flat,
                    (&x[..]).try_into().expect("L == 32"),
                    (&mut slow[..]).try_into().expect("L == 32"),
                    (&active[..]).try_into().expect("L == 32"),
                    (&start[..]).try_into().expect("L == 32"),
                    (&r[..]).try_into().expect("L == 32"),
                    type_id,
                    (&mut found[..]).try_into().expect("L == 32"),
                )
            };
            return;
        }
    }
    let mut slot = [0usize; L];
    let mut done = [true; L];
    let mut some_slot = None;
    for l in 0..L {
        if !active[l] || slow[l] {
            continue;
        }
        match flat.slot_of(start[l]) {
            Some(s) => {
                slot[l] = s;
                done[l] = false;
                some_slot = Some(s);
            }
            None => slow[l] = true,
        }
    }
    // Idle lanes ride along in a real bucket so every gather is in bounds.
    let Some(idle_slot) = some_slot else {
        return;
    };
    for l in 0..L {
        if done[l] {
            slot[l] = idle_slot;
        }
    }
    for _ in 0..descent_depth_max {
        let mut items = [0i32; L];
        let busy = done.iter().filter(|&&d| !d).count();
        if busy <= scalar_lanes_max && L > 1 {
            // A retry of one or two lanes: a full vector pass would pay for
            // sixteen, so draw those lanes one by one.
            for l in 0..L {
                if !done[l] {
                    items[l] = straw2_exact::<K>(flat, slot[l], x[l], r[l]);
                }
            }
        } else {
            straw2_lanes::<L, K>(flat, &slot, x, r, &mut items);
        }
        let mut all_done = true;
        for l in 0..L {
            if done[l] {
                continue;
            }
            let item = items[l];
            let item_type = if item >= 0 { 0 } else { flat.type_id[(-1 - item) as usize] };
            if item_type == type_id {
                found[l] = item;
                done[l] = true;
                continue;
            }
            match flat.slot_of(item) {
                Some(s) => {
                    slot[l] = s;
                    all_done = false;
                }
                None => {
                    slow[l] = true;
                    done[l] = true;
                }
            }
        }
        if all_done {
            return;
        }
    }
    for l in 0..L {
        if !done[l] {
            slow[l] = true;
        }
    }
}

/// Per lane: whether `item` is already among that lane's `placed` items
/// (a collision). Branch-free over positions, so the lanes vectorize.
#[inline(always)]
fn lanes_holding<const L: usize>(placed: &[[i32; L]], item: &[i32; L]) -> [bool; L] {
    let mut hit = [false; L];
    for row in placed {
        for l in 0..L {
            hit[l] |= row[l] == item[l];
        }
    }
    hit
}

#[inline(always)]
fn lane_is_out(weights: &[u32], item: i32, x: u32) -> bool {
    let Some(&w) = weights.get(item as usize) else {
        return true;
    };
    if w >= WEIGHT_ONE {
        return false;
    }
    w == 0 || (hash32_2(x, item as u32) & 0xffff) >= w
}

/// Tunables in force at a choose step (after `set_*` steps).
#[derive(Clone, Copy)]
struct StepParams {
    vary_r: u32,
    stable: u32,
    /// `choose_tries` of `crush_do_rule` (total tries + 1 or the override).
    tries: u32,
    /// `set_chooseleaf_tries`, 0 when unset.
    leaf_tries: u32,
    descend_once: bool,
    /// Local retries change where a retry starts; the lockstep walk only
    /// does full-descent retries, so with local retries a failure is slow.
    local_retries: bool,
}

/// Walks `rule` for one chunk. Lanes marked slow hold garbage.
#[inline(always)]
fn run_chunk<const L: usize, const K: u8>(
    map: &CrushMap,
    flat: &Flat,
    steps: &[Step],
    chunk: &mut Chunk<L>,
    result_max: usize,
    weights: &[u32],
) -> usize {
    let t = &map.tunables;
    let mut params = StepParams {
        vary_r: t.chooseleaf_vary_r,
        stable: t.chooseleaf_stable,
        tries: t.choose_total_tries.saturating_add(1),
        leaf_tries: 0,
        descend_once: t.chooseleaf_descend_once != 0,
        local_retries: t.choose_local_tries > 0 || t.choose_local_fallback_tries > 0,
    };
    let (mut local_tries, mut local_fallback) = (t.choose_local_tries, t.choose_local_fallback_tries);
    let (mut wi, mut oi, ci) = (0usize, 1usize, 2usize);
    let mut wsize = 0usize;
    let mut result_len = 0usize;
    for v in chunk.vecs.iter_mut() {
        v.clear();
        v.resize(result_max, [0; L]);
    }
    chunk.result.clear();
    chunk.result.resize(result_max, [0; L]);
    for step in steps {
        match *step {
            Step::Take(item) => {
                let valid = if item >= 0 { item < map.max_devices } else { map.bucket(item).is_some() };
                if valid {
                    chunk.vecs[wi][0] = [item; L];
                    wsize = 1;
                }
            }
            Step::SetChooseLeafVaryR(v) => {
                if v >= 0 {
                    params.vary_r = v as u32;
                }
            }
            Step::SetChooseLeafStable(v) => {
                if v >= 0 {
                    params.stable = v as u32;
                }
            }
            Step::SetChooseTries(v) => {
                if v > 0 {
                    params.tries = v as u32;
                }
            }
            Step::SetChooseLeafTries(v) => {
                if v > 0 {
                    params.leaf_tries = v as u32;
                }
            }
            Step::SetChooseLocalTries(v) => {
                if v >= 0 {
                    local_tries = v as u32;
                    params.local_retries = local_tries > 0 || local_fallback > 0;
                }
            }
            Step::SetChooseLocalFallbackTries(v) => {
                if v >= 0 {
                    local_fallback = v as u32;
                    params.local_retries = local_tries > 0 || local_fallback > 0;
                }
            }
            Step::ChooseFirstN { n, type_id }
            | Step::ChooseLeafFirstN { n, type_id }
            | Step::ChooseIndep { n, type_id }
            | Step::ChooseLeafIndep { n, type_id } => {
                if wsize == 0 {
                    continue;
                }
                let firstn = matches!(step, Step::ChooseFirstN { .. } | Step::ChooseLeafFirstN { .. });
                let leaf = matches!(step, Step::ChooseLeafFirstN { .. } | Step::ChooseLeafIndep { .. });
                let mut numrep = n;
                if numrep <= 0 {
                    numrep += result_max as i32;
                }
                let mut osize = 0usize;
                if numrep > 0 {
                    for i in 0..wsize {
                        let start = chunk.vecs[wi][i];
                        if firstn {
                            osize += firstn_lanes::<L, K>(
                                flat, chunk, &start, numrep, type_id, leaf, params, result_max - osize, osize, oi, ci,
                                weights,
                            );
                        } else {
                            let out_size = (numrep as usize).min(result_max - osize);
                            indep_lanes::<L, K>(
                                flat, chunk, &start, numrep, out_size, type_id, leaf, params, osize, oi, ci, weights,
                            );
                            osize += out_size;
                        }
                    }
                }
                if leaf {
                    for p in 0..osize {
                        chunk.vecs[oi][p] = chunk.vecs[ci][p];
                    }
                }
                std::mem::swap(&mut wi, &mut oi);
                wsize = osize;
            }
            Step::Emit => {
                for p in 0..wsize {
                    if result_len >= result_max {
                        break;
                    }
                    chunk.result[result_len] = chunk.vecs[wi][p];
                    result_len += 1;
                }
                wsize = 0;
            }
        }
    }
    result_len
}

/// `crush_choose_firstn` at the top level of a step, with full-descent
/// retries per lane (`r = rep + ftotal`). Returns the number of items
/// placed, the same for every lane that stays fast: a lane that runs out
/// of tries (a short result) or needs local retries becomes slow.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn firstn_lanes<const L: usize, const K: u8>(
    flat: &Flat,
    chunk: &mut Chunk<L>,
    start: &[i32; L],
    numrep: i32,
    type_id: i32,
    leaf: bool,
    p: StepParams,
    out_size: usize,
    base: usize,
    oi: usize,
    ci: usize,
    weights: &[u32],
) -> usize {
    let recurse_tries = if p.leaf_tries > 0 {
        p.leaf_tries
    } else if p.descend_once {
        1
    } else {
        p.tries
    };
    let mut outpos = 0usize;
    let mut count = out_size;
    // outpos is 0 at the top of a step, so stable or not, rep starts at 0.
    let mut rep = 0i32;
    while rep < numrep && count > 0 {
        let mut ftotal = [0u32; L];
        let mut pending = [false; L];
        for l in 0..L {
            pending[l] = !chunk.slow[l];
        }
        let mut placed_item = [0i32; L];
        let mut placed_leaf = [0i32; L];
        while pending.iter().any(|&b| b) {
            let mut r = [0u32; L];
            for l in 0..L {
                r[l] = (rep as u32).wrapping_add(ftotal[l]);
            }
            let mut item = [0i32; L];
            descend::<L, K>(flat, &chunk.x, &mut chunk.slow, &pending, start, &r, type_id, &mut item);
            let taken = lanes_holding(&chunk.vecs[oi][base..base + outpos], &item);
            let mut ok = [false; L];
            for l in 0..L {
                ok[l] = pending[l] & !chunk.slow[l] & !taken[l];
            }
            let mut leaf_item = item;
            if leaf {
                // The inner chooseleaf: one rep from the chosen bucket down to
                // a device, `recurse_tries` full-descent tries.
                let inner_rep = if p.stable != 0 { 0 } else { outpos as u32 };
                let mut inner_pending = [false; L];
                let mut inner_start = *start;
                let mut sub_r = [0u32; L];
                // Branch-free, so that it vectorizes.
                for l in 0..L {
                    let go = ok[l] & (item[l] < 0);
                    inner_pending[l] = go;
                    inner_start[l] = if go { item[l] } else { inner_start[l] };
                    sub_r[l] = if go & (p.vary_r != 0) { r[l].wrapping_shr(p.vary_r.wrapping_sub(1)) } else { 0 };
                }
                let mut inner_ftotal = [0u32; L];
                while inner_pending.iter().any(|&b| b) {
                    let mut r2 = [0u32; L];
                    for l in 0..L {
                        r2[l] = inner_rep.wrapping_add(sub_r[l]).wrapping_add(inner_ftotal[l]);
                    }
                    let mut dev = [0i32; L];
                    descend::<L, K>(flat, &chunk.x, &mut chunk.slow, &inner_pending, &inner_start, &r2, 0, &mut dev);
                    let taken = lanes_holding(&chunk.vecs[ci][base..base + outpos], &dev);
                    for l in 0..L {
                        if !inner_pending[l] {
                            continue;
                        }
                        if chunk.slow[l] {
                            inner_pending[l] = false;
                            ok[l] = false;
                            continue;
                        }
                        if !taken[l] && !lane_is_out(weights, dev[l], chunk.x[l]) {
                            leaf_item[l] = dev[l];
                            inner_pending[l] = false;
                            continue;
                        }
                        if p.local_retries {
                            chunk.slow[l] = true;
                            inner_pending[l] = false;
                            ok[l] = false;
                            continue;
                        }
                        inner_ftotal[l] += 1;
                        if inner_ftotal[l] >= recurse_tries {
                            inner_pending[l] = false;
                            ok[l] = false;
                        }
                    }
                }
            }
            if type_id == 0 {
                for l in 0..L {
                    if ok[l] && lane_is_out(weights, item[l], chunk.x[l]) {
                        ok[l] = false;
                    }
                }
            }
            for l in 0..L {
                if !pending[l] {
                    continue;
                }
                if ok[l] {
                    placed_item[l] = item[l];
                    placed_leaf[l] = leaf_item[l];
                    pending[l] = false;
                    continue;
                }
                if chunk.slow[l] || p.local_retries {
                    chunk.slow[l] = true;
                    pending[l] = false;
                    continue;
                }
                ftotal[l] += 1;
                if ftotal[l] >= p.tries.min(lockstep_tries_max) {
                    // A short result (the lanes would disagree on outpos),
                    // or likely one: the oracle redoes the lane anyway.
                    chunk.slow[l] = true;
                    pending[l] = false;
                }
            }
        }
        for l in 0..L {
            chunk.vecs[oi][base + outpos][l] = placed_item[l];
            if leaf {
                chunk.vecs[ci][base + outpos][l] = placed_leaf[l];
            }
        }
        outpos += 1;
        count -= 1;
        rep += 1;
    }
    outpos
}

/// `crush_choose_indep` at the top level of a step: rounds of
/// `r = rep + numrep * ftotal` over the unfilled positions, holes left as
/// `ITEM_NONE` when the tries run out (exactly like the oracle).
///
/// Each round draws the unfilled (lane, position) pairs `L` at a time as
/// *virtual lanes* (a lane's `x`, the position's `r`): the descents of one
/// round do not depend on each other, only the collision checks do, and
/// those are applied afterwards in position order, as the oracle makes
/// them. So the few positions left after the first round are drawn
/// together rather than one vector pass per position. A leaf descent may
/// run for an item that then collides; if that marks the lane slow, the
/// oracle merely redoes a lane it did not have to.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn indep_lanes<const L: usize, const K: u8>(
    flat: &Flat,
    chunk: &mut Chunk<L>,
    start: &[i32; L],
    numrep: i32,
    out_size: usize,
    type_id: i32,
    leaf: bool,
    p: StepParams,
    base: usize,
    oi: usize,
    ci: usize,
    weights: &[u32],
) {
    let recurse_tries = if p.leaf_tries > 0 { p.leaf_tries } else { 1 };
    let (o, c) = two_rows(&mut chunk.vecs, oi, ci);
    let (o, c) = (&mut o[base..base + out_size], &mut c[base..base + out_size]);
    o.fill([ITEM_UNDEF; L]);
    c.fill([ITEM_UNDEF; L]);
    let numrep = numrep as u32;
    let mut ftotal = 0u32;
    while ftotal < p.tries {
        let mut any_left = false;
        // Cursor over (position, lane) pairs, position-major: `open` holds
        // the lanes of position `rep` not yet taken into a group.
        let mut rep = 0usize;
        let mut open = 0u32;
        let slow_bits = lane_bits(&chunk.slow);
        if out_size > 0 {
            open = unfilled(&o[0]) & !slow_bits;
        }
        loop {
            let mut n = 0usize;
            let (mut v_lane, mut v_rep) = ([0usize; L], [0usize; L]);
            while n < L {
                if open == 0 {
                    rep += 1;
                    if rep >= out_size {
                        break;
                    }
                    open = unfilled(&o[rep]) & !slow_bits;
                    continue;
                }
                v_lane[n] = open.trailing_zeros() as usize;
                v_rep[n] = rep;
                open &= open - 1;
                n += 1;
            }
            if n == 0 {
                break;
            }
            any_left = true;
            let (mut vx, mut vstart, mut vr, mut active) = ([0u32; L], [0i32; L], [0u32; L], [false; L]);
            for v in 0..n {
                vx[v] = chunk.x[v_lane[v] % L];
                vstart[v] = start[v_lane[v] % L];
                vr[v] = (v_rep[v] as u32).wrapping_add(numrep.wrapping_mul(ftotal));
                active[v] = true;
            }
            let mut vslow = [false; L];
            let mut item = [0i32; L];
            descend::<L, K>(flat, &vx, &mut vslow, &active, &vstart, &vr, type_id, &mut item);
            let mut leaf_item = item;
            let mut leaf_failed = [false; L];
            if leaf {
                // Nested indep for each pair's position with parent_r = r.
                let mut inner = [false; L];
                for v in 0..n {
                    inner[v] = !vslow[v] && item[v] < 0;
                }
                let mut f2 = 0u32;
                while f2 < recurse_tries && inner.contains(&true) {
                    let r2: [u32; L] =
                        std::array::from_fn(|v| (v_rep[v] as u32).wrapping_add(vr[v]).wrapping_add(numrep.wrapping_mul(f2)));
                    let mut dev = [0i32; L];
                    descend::<L, K>(flat, &vx, &mut vslow, &inner, &item, &r2, 0, &mut dev);
                    for v in 0..n {
                        if !inner[v] {
                            continue;
                        }
                        if vslow[v] {
                            inner[v] = false;
                        } else if !lane_is_out(weights, dev[v], vx[v]) {
                            leaf_item[v] = dev[v];
                            inner[v] = false;
                        }
                    }
                    f2 += 1;
                }
                // No leaf in this round: the position stays open.
                leaf_failed = inner;
            }
            // The oracle's checks, in position order.
            for v in 0..n {
                // `% L`: a no-op (lanes are below L) that drops bounds checks.
                let (l, rep) = (v_lane[v] % L, v_rep[v]);
                if vslow[v] {
                    chunk.slow[l] = true;
                }
                if chunk.slow[l] {
                    continue;
                }
                let it = item[v];
                if o.iter().any(|row| row[l] == it) {
                    continue;
                }
                if leaf {
                    if leaf_failed[v] {
                        c[rep][l] = ITEM_NONE;
                        continue;
                    }
                    c[rep][l] = leaf_item[v];
                }
                if type_id == 0 && lane_is_out(weights, it, vx[v]) {
                    continue;
                }
                o[rep][l] = it;
            }
        }
        if !any_left {
            break;
        }
        ftotal += 1;
    }
    for row in o.iter_mut().chain(c.iter_mut()) {
        for v in row.iter_mut() {
            if *v == ITEM_UNDEF {
                *v = ITEM_NONE;
            }
        }
    }
}

/// Rows `a` and `b` (distinct) of the working vectors, both mutable.
fn two_rows<const L: usize>(vecs: &mut [Vec<[i32; L]>; 3], a: usize, b: usize) -> (&mut Vec<[i32; L]>, &mut Vec<[i32; L]>) {
    assert!(a != b && a < 3 && b < 3);
    let [v0, v1, v2] = vecs;
    match (a, b) {
        (0, 1) => (v0, v1),
        (0, _) => (v0, v2),
        (1, 0) => (v1, v0),
        (1, _) => (v1, v2),
        (2, 0) => (v2, v0),
        _ => (v2, v1),
    }
}

/// One bit per lane that is set.
#[inline(always)]
fn lane_bits<const L: usize>(set: &[bool; L]) -> u32 {
    let mut bits = 0u32;
    for l in 0..L {
        bits |= (set[l] as u32) << l;
    }
    bits
}

/// One bit per lane whose position is still `ITEM_UNDEF`.
#[inline(always)]
fn unfilled<const L: usize>(row: &[i32; L]) -> u32 {
    let mut bits = 0u32;
    for l in 0..L {
        bits |= ((row[l] == ITEM_UNDEF) as u32) << l;
    }
    bits
}

/// The batched mapper over one map.
pub struct BatchMapper<'m> {
    map: &'m CrushMap,
    flat: Flat,
    kernel: Kernel,
    scalar: ScalarBatch<'m>,
    scratch_lens: Vec<usize>,
    scratch_items: Vec<i32>,
    chunk32: Chunk<32>,
    chunk8: Chunk<8>,
}

fn new_chunk<const L: usize>() -> Chunk<L> {
    Chunk { x: [0; L], slow: [false; L], vecs: [Vec::new(), Vec::new(), Vec::new()], result: Vec::new() }
}

impl<'m> BatchMapper<'m> {
    pub fn new(map: &'m CrushMap) -> BatchMapper<'m> {
        BatchMapper::with_kernel(map, Kernel::detect())
    }

    /// A mapper forced to one kernel (tests compare every kernel).
    pub fn with_kernel(map: &'m CrushMap, kernel: Kernel) -> BatchMapper<'m> {
        BatchMapper {
            map,
            flat: Flat::new(map),
            kernel,
            scalar: ScalarBatch::new(map),
            scratch_lens: Vec::new(),
            scratch_items: Vec::new(),
            chunk32: new_chunk(),
            chunk8: new_chunk(),
        }
    }

    pub fn kernel_name(&self) -> &'static str {
        self.kernel.name()
    }

    /// Maps `xs` into flat results (see [`BatchMap`]).
    fn map_all(&mut self, rule: i32, xs: &[i32], result_max: usize, weights: &[u32], lens: &mut Vec<usize>, items: &mut Vec<i32>) {
        lens.clear();
        items.clear();
        let result_max = result_max.min(limits::result_max);
        items.resize(xs.len() * result_max, 0);
        lens.resize(xs.len(), 0);
        let Some(rule_ref) = self.map.rule(rule) else {
            return;
        };
        if result_max == 0 {
            return;
        }
        if !self.flat.any_fast || self.kernel == Kernel::Scalar {
            self.scalar.map_batch(rule, xs, result_max, weights, lens, items);
            return;
        }
        let steps = &rule_ref.steps[..];
        let mut slow: Vec<usize> = Vec::new();
        match self.kernel {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => {
                // SAFETY: Kernel::Avx512 is only chosen when the CPU has these features.
                unsafe {
                    chunks_avx512(self.map, &self.flat, steps, &mut self.chunk32, xs, result_max, weights, lens, items, &mut slow)
                }
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => {
                // SAFETY: Kernel::Avx2 is only chosen when the CPU has these features.
                unsafe { chunks_avx2(self.map, &self.flat, steps, &mut self.chunk8, xs, result_max, weights, lens, items, &mut slow) }
            }
            _ => chunks::<8, KERNEL_PORTABLE>(self.map, &self.flat, steps, &mut self.chunk8, xs, result_max, weights, lens, items, &mut slow),
        }
        if slow.is_empty() {
            return;
        }
        let slow_xs: Vec<i32> = slow.iter().map(|&i| xs[i]).collect();
        let (mut sl, mut si) = (std::mem::take(&mut self.scratch_lens), std::mem::take(&mut self.scratch_items));
        self.scalar.map_batch(rule, &slow_xs, result_max, weights, &mut sl, &mut si);
        for (k, &i) in slow.iter().enumerate() {
            lens[i] = sl[k];
            items[i * result_max..(i + 1) * result_max].copy_from_slice(&si[k * result_max..(k + 1) * result_max]);
        }
        self.scratch_lens = sl;
        self.scratch_items = si;
    }
}

/// Maps every chunk of `L` inputs; records the indices of slow inputs.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn chunks<const L: usize, const K: u8>(
    map: &CrushMap,
    flat: &Flat,
    steps: &[Step],
    chunk: &mut Chunk<L>,
    xs: &[i32],
    result_max: usize,
    weights: &[u32],
    lens: &mut [usize],
    items: &mut [i32],
    slow: &mut Vec<usize>,
) {
    debug_assert!(L <= lanes_max);
    for (ci, xc) in xs.chunks(L).enumerate() {
        if ci >= lockstep_probe_chunks && slow.len() * 2 > ci * L {
            // Most lanes leave the fast path (say, a rule asking for more
            // replicas than there are failure domains): the oracle alone
            // is cheaper than the lockstep walk plus the oracle.
            slow.extend(ci * L..xs.len());
            return;
        }
        for l in 0..L {
            chunk.x[l] = xc.get(l).copied().unwrap_or(xc[0]) as u32;
            chunk.slow[l] = false;
        }
        let len = run_chunk::<L, K>(map, flat, steps, chunk, result_max, weights);
        for (l, _) in xc.iter().enumerate() {
            let i = ci * L + l;
            if chunk.slow[l] {
                slow.push(i);
                continue;
            }
            lens[i] = len;
            for p in 0..len {
                items[i * result_max + p] = chunk.result[p][l];
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512bw,avx512vl,avx2,fma,bmi2")]
#[allow(clippy::too_many_arguments)]
unsafe fn chunks_avx512(
    map: &CrushMap,
    flat: &Flat,
    steps: &[Step],
    chunk: &mut Chunk<32>,
    xs: &[i32],
    result_max: usize,
    weights: &[u32],
    lens: &mut [usize],
    items: &mut [i32],
    slow: &mut Vec<usize>,
) {
    chunks::<32, KERNEL_AVX512>(map, flat, steps, chunk, xs, result_max, weights, lens, items, slow)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,bmi2")]
#[allow(clippy::too_many_arguments)]
unsafe fn chunks_avx2(
    map: &CrushMap,
    flat: &Flat,
    steps: &[Step],
    chunk: &mut Chunk<8>,
    xs: &[i32],
    result_max: usize,
    weights: &[u32],
    lens: &mut [usize],
    items: &mut [i32],
    slow: &mut Vec<usize>,
) {
    chunks::<8, KERNEL_AVX2>(map, flat, steps, chunk, xs, result_max, weights, lens, items, slow)
}

impl BatchMap for BatchMapper<'_> {
    fn map_batch(&mut self, rule: i32, xs: &[i32], result_max: usize, weights: &[u32], lens: &mut Vec<usize>, items: &mut Vec<i32>) {
        self.map_all(rule, xs, result_max, weights, lens, items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::crush_ln;
    use crate::mapper::straw2_choose_reference;
    use crate::model::Bucket;

    #[test]
    fn approx_ln_error_is_bounded() {
        let mut worst = 0f64;
        for u in 0..=0xffffu32 {
            let a = approx_ln(u);
            assert!(a <= LN_APPROX_CEIL, "approx_ln({u}) = {a}");
            let exact = (crush_ln(u) as i64 - 0x1_0000_0000_0000) as f64 / LN_SCALE;
            worst = worst.max((a as f64 - exact).abs());
        }
        assert!(worst <= LN_APPROX_ERROR_MAX, "approx_ln is {worst} away from crush_ln");
        // The bound is not slack hiding a broken approximation either.
        assert!(worst > LN_APPROX_ERROR_MAX / 2.0);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn approx_ln_avx2_has_the_scalar_bits() {
        use std::arch::x86_64::*;
        if !std::arch::is_x86_feature_detected!("avx2") {
            return;
        }
        for base in (0..=0xffffu32).step_by(8) {
            let u: [u32; 8] = std::array::from_fn(|k| base + k as u32);
            let mut got = [0f32; 8];
            // SAFETY: AVX2 checked above.
            unsafe { _mm256_storeu_ps(got.as_mut_ptr(), x86::approx_ln_256(_mm256_loadu_si256(u.as_ptr().cast()))) };
            for k in 0..8 {
                assert_eq!(got[k].to_bits(), approx_ln(u[k]).to_bits(), "u = {}", u[k]);
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn approx_ln_avx512_has_the_scalar_bits() {
        use std::arch::x86_64::*;
        if !std::arch::is_x86_feature_detected!("avx512f") {
            return;
        }
        for base in (0..=0xffffu32).step_by(16) {
            let u: [u32; 16] = std::array::from_fn(|k| base + k as u32);
            let mut got = [0f32; 16];
            // SAFETY: AVX-512 F checked above.
            unsafe { _mm512_storeu_ps(got.as_mut_ptr(), x86::approx_ln_512(_mm512_loadu_si512(u.as_ptr().cast()))) };
            for k in 0..16 {
                assert_eq!(got[k].to_bits(), approx_ln(u[k]).to_bits(), "u = {}", u[k]);
            }
        }
    }

    #[test]
    fn decisive_refuses_ties_and_empty_buckets() {
        let k = 1000.0;
        assert!(!decisive(-5e6, -5e6, k), "a tie");
        assert!(!decisive(-5e6, -5e6 - 2.0 * k as f32, k), "inside the error band");
        assert!(decisive(-5e6, -6e6, k));
        assert!(decisive(-5e6, f32::NEG_INFINITY, k), "one drawable item");
        assert!(!decisive(f32::NEG_INFINITY, f32::NEG_INFINITY, k), "every weight 0");
        assert!(!decisive(-5e6, -6e6, f64::INFINITY), "no weight to bound the error");
    }

    /// One straw2 bucket (id -1) over devices `0..weights.len()`.
    fn one_bucket_map(weights: &[u32]) -> CrushMap {
        let mut map = CrushMap::new();
        map.add_type(0, "osd").unwrap();
        map.add_type(1, "host").unwrap();
        for d in 0..weights.len() as i32 {
            map.add_device(d, &format!("osd.{d}"), None).unwrap();
        }
        let items = (0..weights.len() as i32).collect();
        map.add_bucket("b", Bucket::new(-1, 1, BucketAlg::Straw2, 0, items, weights.to_vec(), 1).unwrap()).unwrap();
        map
    }

    /// Every kernel's straw2 (filter, then verify) against Ceph's literal
    /// draws; returns how many lane choices were not decisive.
    fn check_straw2_lanes(weights: &[u32], inputs: u32) -> usize {
        let mut few_checked = 0;
        let map = one_bucket_map(weights);
        let bucket = map.bucket(-1).unwrap();
        let flat = Flat::new(&map);
        let mut undecided = 0;
        for base in (0..inputs).step_by(8) {
            let x: [u32; 8] = std::array::from_fn(|l| (base + l as u32).wrapping_mul(0x9e37_79b9));
            let r: [u32; 8] = std::array::from_fn(|l| (base / 8 + l as u32) % 7);
            let want: [i32; 8] = std::array::from_fn(|l| straw2_choose_reference(bucket, x[l] as i32, r[l] as i32));
            let mut got = [0i32; 8];
            straw2_lanes::<8, KERNEL_PORTABLE>(&flat, &[0; 8], &x, &r, &mut got);
            assert_eq!(got, want, "portable, weights {weights:?}");
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx2") {
                    let mut got = [0i32; 8];
                    straw2_lanes::<8, KERNEL_AVX2>(&flat, &[0; 8], &x, &r, &mut got);
                    assert_eq!(got, want, "avx2, weights {weights:?}");
                }
            }
            if Kernel::available().contains(&Kernel::Avx512) {
                // Sixteen lanes: these eight and the same eight again with r + 1.
                let x16: [u32; 16] = std::array::from_fn(|l| x[l % 8]);
                let r16: [u32; 16] = std::array::from_fn(|l| r[l % 8] + (l / 8) as u32);
                let want16: [i32; 16] =
                    std::array::from_fn(|l| straw2_choose_reference(bucket, x16[l] as i32, r16[l] as i32));
                let mut got = [0i32; 16];
                straw2_lanes::<16, KERNEL_AVX512>(&flat, &[0; 16], &x16, &r16, &mut got);
                assert_eq!(got, want16, "avx512, weights {weights:?}");
                // The few-lanes path (items across the vector), on 1, 3
                // and 7 busy lanes.
                for busy in [1u16 << (base / 8 % 16), 0b1000_0001_0000_0100, 0b0101_0101_0100_0101] {
                    let mut got = [-7i32; 16];
                    // SAFETY: AVX-512 F/DQ/BW/VL and AVX2 checked by `available`; slot 0 is fast.
                    if unsafe { x86::few_lanes(&flat, &[0; 16], busy, &x16, &r16, &mut got) } {
                        few_checked += 1;
                        for l in (0..16).filter(|l| busy & (1 << l) != 0) {
                            assert_eq!(got[l], want16[l], "avx512 few lanes, weights {weights:?}");
                        }
                    } else {
                        // Declined only where the lockstep pass is cheaper.
                        let blocks = busy.count_ones() as usize * weights.len().div_ceil(16);
                        assert!(blocks >= weights.len() || blocks > few_blocks_max, "declined {busy:#x}");
                    }
                }
            }
            let (off, last) = ([0u32; 8], [weights.len() as u32 - 1; 8]);
            let (mut chosen, mut best, mut second) = ([0i32; 8], [0f32; 8], [0f32; 8]);
            straw2_portable(&flat, &off, &last, weights.len() as u32, &x, &r, &mut chosen, &mut best, &mut second);
            undecided += (0..8).filter(|&l| !decisive(best[l], second[l], flat.slack[0])).count();
        }
        if Kernel::available().contains(&Kernel::Avx512) && weights.len() > 7 {
            assert!(few_checked > 0, "the few-lanes path never ran");
        }
        undecided
    }

    #[test]
    fn approximate_straw2_picks_the_exact_winner() {
        // Equal weights: two items with the same 16-bit hash tie exactly,
        // and Ceph keeps the first; those lanes must be redone exactly.
        let undecided = check_straw2_lanes(&[0x10000; 60], 40_000);
        assert!(undecided > 0, "no tie or near tie was exercised");
        assert!(undecided < 40_000 / 50, "{undecided} undecided lane choices: the filter is too weak");
        // Weight-0 items never win unless every weight is 0 (first item).
        check_straw2_lanes(&[0, 0x10000, 0, 0x8000, 0], 4_000);
        assert_eq!(check_straw2_lanes(&[0, 0, 0], 800), 800);
        // Extreme and mixed weights, single items, odd sizes.
        check_straw2_lanes(&[1, 2, 3, 0x7fff_ffff], 4_000);
        check_straw2_lanes(&[u32::MAX], 800);
        check_straw2_lanes(&[1], 800);
        check_straw2_lanes(&[1, 1, 1, 1, 1, 1, 1, 1, 1], 4_000);
        let mixed: Vec<u32> = (0..25u32).map(|i| [61_014, 119_210, 238_420, 476_906][(i * 7 % 11 % 4) as usize]).collect();
        check_straw2_lanes(&mixed, 40_000);
    }
}
