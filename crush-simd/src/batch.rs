//! The batched mapper: many inputs at once, SIMD across inputs.
//!
//! Inputs are mapped in chunks of `L` lanes (16 with AVX-512, 8 with AVX2
//! or portable code) that walk the rule in lockstep. The expensive part of
//! CRUSH, the straw2 draw (`hash32_3` + fixed-point `ln` + divide by
//! weight), is computed for all lanes at once; lanes may sit in different
//! buckets (each lane gathers its own items and weights).
//!
//! The lockstep walk only covers the common case: every choice succeeds on
//! its first try (no collision, no rejected device, only straw2 buckets).
//! A lane that leaves that path is marked *slow* and mapped again from
//! scratch by the scalar oracle, so results equal [`crate::Mapper`]'s by
//! construction; the property tests check it on random maps anyway. When
//! most lanes of a batch's first chunks go slow (a rule that cannot be met,
//! say), the rest of the batch goes straight to the oracle.
//!
//! Filter, then verify (AVX2 and portable kernels). Only the winner of a
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
//! The AVX-512 kernel still draws exactly: `f64` `ln` from a 2^16-entry
//! table divided by the weight. `ln` is an integer in `[-2^48, 0)` and the
//! weight below `2^32`, both exact in `f64`; a quotient that is not an
//! integer is at least `1/w` away from one while the `f64` division error is
//! below `|q| * 2^-53 < 2^-4 / w`, so `trunc(ln / w)` in `f64` equals the C
//! integer division. Weight 0 gives `-inf`, which orders like Ceph's `S64_MIN`.

// Lane loops index several parallel per-lane arrays at once.
#![allow(clippy::needless_range_loop)]

use crate::divide::Recip;
use crate::hash::{crush_ln, hash32_2, hash32_3};
use crate::limits;
#[cfg(target_arch = "x86_64")]
use crate::mapper::straw2_exact_avx2;
use crate::mapper::straw2_exact_items;
use crate::model::{BucketAlg, CrushMap, Step, ITEM_NONE, ITEM_UNDEF, WEIGHT_ONE};
use crate::tester::{BatchMap, ScalarBatch};

/// Lanes of the widest kernel; lane arrays are sized for it.
const lanes_max: usize = 16;
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
        #[cfg(target_arch = "x86_64")]
        {
            // The AVX2 kernel draws with filter-then-verify (no tables, no
            // division); the AVX-512 one still gathers from the ln table,
            // so AVX2 comes first where both run (`SEPIA_CRUSH_KERNEL=avx512`
            // picks the other).
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                return Kernel::Avx2;
            }
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512dq")
                && std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("avx512vl")
                && std::arch::is_x86_feature_detected!("avx2")
            {
                return Kernel::Avx512;
            }
        }
        Kernel::Scalar
    }

    /// Every kernel that can run here (for tests and benchmarks).
    pub fn available() -> Vec<Kernel> {
        let mut all = vec![Kernel::Scalar, Kernel::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                all.push(Kernel::Avx2);
            }
            if Kernel::best() == Kernel::Avx512 {
                all.push(Kernel::Avx512);
            }
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
    /// What the exact AVX-512 kernel gathers from (built only for it).
    exact: Option<ExactTables>,
    any_fast: bool,
}

/// Tables of the exact AVX-512 kernel.
struct ExactTables {
    /// Item weights as `f64` (exact).
    weights: Vec<f64>,
    /// `crush_ln(u) - 2^48` for every 16-bit `u`, as `f64` (exact).
    ln: Vec<f64>,
}

impl Flat {
    fn new(map: &CrushMap, kernel: Kernel) -> Flat {
        let slots = map.max_buckets();
        let mut flat = Flat {
            off: vec![0; slots],
            size: vec![0; slots],
            type_id: vec![0; slots],
            fast: vec![false; slots],
            items: Vec::new(),
            scale: Vec::new(),
            pairs: Vec::new(),
            recips: Vec::new(),
            weights: Vec::new(),
            slack: vec![f64::INFINITY; slots],
            exact: None,
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
        if kernel == Kernel::Avx512 {
            flat.exact = Some(ExactTables {
                weights: flat.weights.iter().map(|&w| w as f64).collect(),
                ln: (0..=0xffffu32).map(|u| (crush_ln(u) as i64 - 0x1_0000_0000_0000) as f64).collect(),
            });
        }
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
    #[cfg(target_arch = "x86_64")]
    {
        if K == KERNEL_AVX512 && L == 16 {
            let exact = flat.exact.as_ref().expect("AVX-512 mapper builds the exact tables");
            // SAFETY: K == KERNEL_AVX512 only inside `chunks_avx512`, which
            // runs only when the CPU has AVX-512 F/DQ/BW/VL; every offset
            // and `last` index is inside `flat`'s arrays (built together).
            unsafe {
                x86::straw2_avx512(
                    flat,
                    exact,
                    (&off[..]).try_into().expect("L == 16"),
                    (&last[..]).try_into().expect("L == 16"),
                    max_size,
                    (&x[..]).try_into().expect("L == 16"),
                    (&r[..]).try_into().expect("L == 16"),
                    (&mut chosen[..]).try_into().expect("L == 16"),
                )
            };
            return;
        }
    }
    // Lanes whose approximate winner is not decisive, one bit each.
    let mut undecided = 0u32;
    #[cfg(not(target_arch = "x86_64"))]
    let done = false;
    #[cfg(target_arch = "x86_64")]
    let done = K == KERNEL_AVX2 && L == 8;
    #[cfg(target_arch = "x86_64")]
    {
        if done {
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
    //! of u32. AVX-512: gathers of items, weights and `ln`, an `f64` divide
    //! and a truncation, and a per-lane running maximum (first index wins
    //! ties). AVX2: one 64-bit gather of (item, scale) per four lanes, the
    //! approximate `ln` of [`super::approx_ln`] and a running best and
    //! second best.
    use super::{ExactTables, Flat, DRAW_ROUNDING, LN_APPROX_CEIL, LOG2_POLY};
    use crate::hash::x86::hash32_3_256;
    use std::arch::x86_64::*;

    const SEED: i32 = 1_315_423_911;

    /// Positions of a bucket hashed per loop turn by the AVX-512 kernel
    /// (32 registers; the AVX2 kernel, with 16, runs three). The rjenkins
    /// chain is ~135 dependent operations; independent chains, interleaved
    /// line by line, keep the vector units busy instead of waiting.
    const WAYS: usize = 4;

    /// `W` hashes sharing `a` (= x) and `c` (= r), one per item vector.
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq,avx512bw,avx512vl")]
    unsafe fn hash3_512_ways<const W: usize>(a0: __m512i, c0: __m512i, items: &[__m512i; W]) -> [__m512i; W] {
        let seed = _mm512_set1_epi32(SEED);
        let mut a = [a0; W];
        let mut b = *items;
        let mut c = [c0; W];
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

    /// Running maximum per lane: truncated draw (two halves) and its item.
    struct Best {
        lo: __m512d,
        hi: __m512d,
        item: __m512i,
    }

    /// Per-call constants of the AVX-512 straw2 kernel.
    struct Ctx {
        items: *const i32,
        weights: *const f64,
        ln: *const f64,
        off_v: __m512i,
        last_v: __m512i,
        xv: __m512i,
        rv: __m512i,
        low16: __m512i,
    }

    /// Draws positions `j .. j + W` of every lane's bucket and folds them,
    /// in position order, into `best`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq,avx512bw,avx512vl")]
    unsafe fn draw_positions<const W: usize>(c: &Ctx, j: u32, best: &mut Best) {
        let mut idx = [c.off_v; W];
        let mut valid: [__mmask16; W] = [0; W];
        let mut item = [c.off_v; W];
        for k in 0..W {
            let raw = _mm512_add_epi32(c.off_v, _mm512_set1_epi32((j as usize + k) as i32));
            // Past a lane's bucket: nothing drawn, index clamped in bounds.
            valid[k] = _mm512_cmple_epu32_mask(raw, c.last_v);
            idx[k] = _mm512_min_epu32(raw, c.last_v);
            item[k] = _mm512_i32gather_epi32::<4>(idx[k], c.items.cast());
        }
        let h = hash3_512_ways::<W>(c.xv, c.rv, &item);
        for k in 0..W {
            let u = _mm512_and_si512(h[k], c.low16);
            let w_lo = _mm512_i32gather_pd::<8>(_mm512_castsi512_si256(idx[k]), c.weights.cast());
            let w_hi = _mm512_i32gather_pd::<8>(_mm512_extracti64x4_epi64::<1>(idx[k]), c.weights.cast());
            let ln_lo = _mm512_i32gather_pd::<8>(_mm512_castsi512_si256(u), c.ln.cast());
            let ln_hi = _mm512_i32gather_pd::<8>(_mm512_extracti64x4_epi64::<1>(u), c.ln.cast());
            let d_lo = _mm512_roundscale_pd::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(_mm512_div_pd(ln_lo, w_lo));
            let d_hi = _mm512_roundscale_pd::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(_mm512_div_pd(ln_hi, w_hi));
            // In position order: a tie keeps the earlier item.
            let gt_lo = _mm512_mask_cmp_pd_mask::<_CMP_GT_OQ>(valid[k] as __mmask8, d_lo, best.lo);
            let gt_hi = _mm512_mask_cmp_pd_mask::<_CMP_GT_OQ>((valid[k] >> 8) as __mmask8, d_hi, best.hi);
            best.lo = _mm512_mask_blend_pd(gt_lo, best.lo, d_lo);
            best.hi = _mm512_mask_blend_pd(gt_hi, best.hi, d_hi);
            best.item = _mm512_mask_blend_epi32(gt_lo as u16 | ((gt_hi as u16) << 8), best.item, item[k]);
        }
    }

    /// # Safety
    /// The CPU has AVX-512 F/DQ/BW/VL; `off[l]..=last[l]` are valid indices
    /// of `flat.items`/`flat.weights` for every lane.
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq,avx512bw,avx512vl")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn straw2_avx512(
        flat: &Flat,
        exact: &ExactTables,
        off: &[u32; 16],
        last: &[u32; 16],
        max_size: u32,
        x: &[u32; 16],
        r: &[u32; 16],
        chosen: &mut [i32; 16],
    ) {
        let items = flat.items.as_ptr();
        let weights = exact.weights.as_ptr();
        let ln = exact.ln.as_ptr();
        let off_v = _mm512_loadu_si512(off.as_ptr().cast());
        let last_v = _mm512_loadu_si512(last.as_ptr().cast());
        let xv = _mm512_loadu_si512(x.as_ptr().cast());
        let rv = _mm512_loadu_si512(r.as_ptr().cast());
        let low16 = _mm512_set1_epi32(0xffff);
        let best_lo = _mm512_set1_pd(f64::NEG_INFINITY);
        let best_hi = best_lo;
        let best_item = _mm512_i32gather_epi32::<4>(off_v, items.cast());
        let mut state = Best { lo: best_lo, hi: best_hi, item: best_item };
        let ctx = Ctx { items, weights, ln, off_v, last_v, xv, rv, low16 };
        let mut j = 0u32;
        while max_size - j >= WAYS as u32 {
            draw_positions::<WAYS>(&ctx, j, &mut state);
            j += WAYS as u32;
        }
        // The tail hashes only the positions that exist.
        if max_size - j >= 2 {
            draw_positions::<2>(&ctx, j, &mut state);
            j += 2;
        }
        if max_size - j >= 1 {
            draw_positions::<1>(&ctx, j, &mut state);
        }
        let best_item = state.item;
        _mm512_storeu_si512(chosen.as_mut_ptr().cast(), best_item);
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
/// bucket, device of the wrong type, too deep) becomes slow. Inactive lanes
/// compute nothing useful and are never marked.
#[inline(always)]
fn descend<const L: usize, const K: u8>(
    flat: &Flat,
    chunk: &mut Chunk<L>,
    active: &[bool; L],
    start: &[i32; L],
    r: &[u32; L],
    type_id: i32,
    found: &mut [i32; L],
) {
    let mut slot = [0usize; L];
    let mut done = [true; L];
    let mut some_slot = None;
    for l in 0..L {
        if !active[l] || chunk.slow[l] {
            continue;
        }
        match flat.slot_of(start[l]) {
            Some(s) => {
                slot[l] = s;
                done[l] = false;
                some_slot = Some(s);
            }
            None => chunk.slow[l] = true,
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
                    items[l] = straw2_exact::<K>(flat, slot[l], chunk.x[l], r[l]);
                }
            }
        } else {
            straw2_lanes::<L, K>(flat, &slot, &chunk.x, r, &mut items);
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
                    chunk.slow[l] = true;
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
            chunk.slow[l] = true;
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
            descend::<L, K>(flat, chunk, &pending, start, &r, type_id, &mut item);
            let taken = lanes_holding(&chunk.vecs[oi][base..base + outpos], &item);
            let mut ok = [false; L];
            for l in 0..L {
                ok[l] = pending[l] && !chunk.slow[l] && !taken[l];
            }
            let mut leaf_item = item;
            if leaf {
                // The inner chooseleaf: one rep from the chosen bucket down to
                // a device, `recurse_tries` full-descent tries.
                let inner_rep = if p.stable != 0 { 0 } else { outpos as u32 };
                let mut inner_pending = [false; L];
                let mut inner_start = *start;
                let mut sub_r = [0u32; L];
                for l in 0..L {
                    if ok[l] && item[l] < 0 {
                        inner_pending[l] = true;
                        inner_start[l] = item[l];
                        sub_r[l] = if p.vary_r != 0 { r[l].wrapping_shr(p.vary_r - 1) } else { 0 };
                    }
                }
                let mut inner_ftotal = [0u32; L];
                while inner_pending.iter().any(|&b| b) {
                    let mut r2 = [0u32; L];
                    for l in 0..L {
                        r2[l] = inner_rep.wrapping_add(sub_r[l]).wrapping_add(inner_ftotal[l]);
                    }
                    let mut dev = [0i32; L];
                    descend::<L, K>(flat, chunk, &inner_pending, &inner_start, &r2, 0, &mut dev);
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
    for rep in 0..out_size {
        chunk.vecs[oi][base + rep] = [ITEM_UNDEF; L];
        chunk.vecs[ci][base + rep] = [ITEM_UNDEF; L];
    }
    let mut ftotal = 0u32;
    while ftotal < p.tries {
        let mut any_left = false;
        for rep in 0..out_size {
            let mut active = [false; L];
            for l in 0..L {
                active[l] = !chunk.slow[l] && chunk.vecs[oi][base + rep][l] == ITEM_UNDEF;
            }
            if !active.iter().any(|&a| a) {
                continue;
            }
            any_left = true;
            let r = (rep as u32).wrapping_add((numrep as u32).wrapping_mul(ftotal));
            let rv = [r; L];
            let mut item = [0i32; L];
            descend::<L, K>(flat, chunk, &active, start, &rv, type_id, &mut item);
            let taken = lanes_holding(&chunk.vecs[oi][base..base + out_size], &item);
            for l in 0..L {
                if chunk.slow[l] || taken[l] {
                    active[l] = false;
                }
            }
            if leaf {
                let mut inner = [false; L];
                let mut inner_start = *start;
                for l in 0..L {
                    if active[l] {
                        if item[l] < 0 {
                            inner[l] = true;
                            inner_start[l] = item[l];
                            chunk.vecs[ci][base + rep][l] = ITEM_UNDEF;
                        } else {
                            chunk.vecs[ci][base + rep][l] = item[l];
                        }
                    }
                }
                // Nested indep for position `rep` with parent_r = r.
                let mut f2 = 0u32;
                while f2 < recurse_tries && inner.iter().any(|&b| b) {
                    let r2 = [(rep as u32).wrapping_add(r).wrapping_add((numrep as u32).wrapping_mul(f2)); L];
                    let mut dev = [0i32; L];
                    descend::<L, K>(flat, chunk, &inner, &inner_start, &r2, 0, &mut dev);
                    for l in 0..L {
                        if !inner[l] {
                            continue;
                        }
                        if chunk.slow[l] {
                            inner[l] = false;
                            active[l] = false;
                            continue;
                        }
                        if !lane_is_out(weights, dev[l], chunk.x[l]) {
                            chunk.vecs[ci][base + rep][l] = dev[l];
                            inner[l] = false;
                        }
                    }
                    f2 += 1;
                }
                for l in 0..L {
                    if inner[l] {
                        // No leaf in this round: the position stays open.
                        chunk.vecs[ci][base + rep][l] = ITEM_NONE;
                        active[l] = false;
                    }
                }
            }
            if type_id == 0 {
                for l in 0..L {
                    if active[l] && lane_is_out(weights, item[l], chunk.x[l]) {
                        active[l] = false;
                    }
                }
            }
            for l in 0..L {
                if active[l] {
                    chunk.vecs[oi][base + rep][l] = item[l];
                }
            }
        }
        if !any_left {
            break;
        }
        ftotal += 1;
    }
    for rep in 0..out_size {
        for l in 0..L {
            if chunk.vecs[oi][base + rep][l] == ITEM_UNDEF {
                chunk.vecs[oi][base + rep][l] = ITEM_NONE;
            }
            if chunk.vecs[ci][base + rep][l] == ITEM_UNDEF {
                chunk.vecs[ci][base + rep][l] = ITEM_NONE;
            }
        }
    }
}

/// The batched mapper over one map.
pub struct BatchMapper<'m> {
    map: &'m CrushMap,
    flat: Flat,
    kernel: Kernel,
    scalar: ScalarBatch<'m>,
    scratch_lens: Vec<usize>,
    scratch_items: Vec<i32>,
    chunk16: Chunk<16>,
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
            flat: Flat::new(map, kernel),
            kernel,
            scalar: ScalarBatch::new(map),
            scratch_lens: Vec::new(),
            scratch_items: Vec::new(),
            chunk16: new_chunk(),
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
                    chunks_avx512(self.map, &self.flat, steps, &mut self.chunk16, xs, result_max, weights, lens, items, &mut slow)
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
    chunk: &mut Chunk<16>,
    xs: &[i32],
    result_max: usize,
    weights: &[u32],
    lens: &mut [usize],
    items: &mut [i32],
    slow: &mut Vec<usize>,
) {
    chunks::<16, KERNEL_AVX512>(map, flat, steps, chunk, xs, result_max, weights, lens, items, slow)
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
        let map = one_bucket_map(weights);
        let bucket = map.bucket(-1).unwrap();
        let flat = Flat::new(&map, Kernel::Portable);
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
            let (off, last) = ([0u32; 8], [weights.len() as u32 - 1; 8]);
            let (mut chosen, mut best, mut second) = ([0i32; 8], [0f32; 8], [0f32; 8]);
            straw2_portable(&flat, &off, &last, weights.len() as u32, &x, &r, &mut chosen, &mut best, &mut second);
            undecided += (0..8).filter(|&l| !decisive(best[l], second[l], flat.slack[0])).count();
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
