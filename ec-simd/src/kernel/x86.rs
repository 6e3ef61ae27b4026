//! x86-64 SIMD kernels, written once over the [`Simd`] trait and compiled
//! per instruction set inside `#[target_feature]` entry points.
//!
//! Loop order (as in ISA-L): for each column block of `U` vectors, for each
//! input j, load the input once and multiply-accumulate it into the block's
//! accumulators of every output row of the current group (up to
//! `Simd::ROWS_MAX` rows live in registers), then store. More rows than a
//! group holds take another pass over the inputs. A row of all-ones
//! coefficients (rs parity 0) is accumulated with XOR only.
//!
//! The helpers are `#[inline(always)]` so they are compiled with the
//! entry point's target features; the entry points are only called after
//! `Kernel::is_supported` said yes (checked when `Tables` are built by the
//! codec, see `Codec::with_kernel`).

use super::{scalar, Job};
use std::arch::x86_64::*;

/// One instruction set's vector operations.
trait Simd: Copy {
    /// A vector register.
    type V: Copy;
    /// An input vector prepared for multiplications (e.g. split nibbles).
    type P: Copy;
    /// Bytes per vector.
    const BYTES: usize;
    /// Output rows kept in registers per pass.
    const ROWS_MAX: usize;
    /// Whether the main loop handles several vectors per row at once.
    const UNROLL2: bool;
    unsafe fn load(p: *const u8) -> Self::V;
    unsafe fn store(p: *mut u8, v: Self::V);
    unsafe fn zero() -> Self::V;
    unsafe fn xor(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn prep(x: Self::V) -> Self::P;
    /// `c * x` for the prepared coefficient at `c`.
    unsafe fn mul(c: *const u8, x: Self::P) -> Self::V;
}

#[derive(Clone, Copy)]
struct GfniZ;
#[derive(Clone, Copy)]
struct GfniY;
#[derive(Clone, Copy)]
struct NibY;
#[derive(Clone, Copy)]
struct NibX;

impl Simd for GfniZ {
    type V = __m512i;
    type P = __m512i;
    const BYTES: usize = 64;
    const ROWS_MAX: usize = 8;
    const UNROLL2: bool = true;
    #[inline(always)]
    unsafe fn load(p: *const u8) -> __m512i {
        _mm512_loadu_si512(p as *const _)
    }
    #[inline(always)]
    unsafe fn store(p: *mut u8, v: __m512i) {
        _mm512_storeu_si512(p as *mut _, v)
    }
    #[inline(always)]
    unsafe fn zero() -> __m512i {
        _mm512_setzero_si512()
    }
    #[inline(always)]
    unsafe fn xor(a: __m512i, b: __m512i) -> __m512i {
        _mm512_xor_si512(a, b)
    }
    #[inline(always)]
    unsafe fn prep(x: __m512i) -> __m512i {
        x
    }
    #[inline(always)]
    unsafe fn mul(c: *const u8, x: __m512i) -> __m512i {
        let m = _mm512_set1_epi64((c as *const i64).read_unaligned());
        _mm512_gf2p8affine_epi64_epi8::<0>(x, m)
    }
}

impl Simd for GfniY {
    type V = __m256i;
    type P = __m256i;
    const BYTES: usize = 32;
    const ROWS_MAX: usize = 4;
    const UNROLL2: bool = true;
    #[inline(always)]
    unsafe fn load(p: *const u8) -> __m256i {
        _mm256_loadu_si256(p as *const _)
    }
    #[inline(always)]
    unsafe fn store(p: *mut u8, v: __m256i) {
        _mm256_storeu_si256(p as *mut _, v)
    }
    #[inline(always)]
    unsafe fn zero() -> __m256i {
        _mm256_setzero_si256()
    }
    #[inline(always)]
    unsafe fn xor(a: __m256i, b: __m256i) -> __m256i {
        _mm256_xor_si256(a, b)
    }
    #[inline(always)]
    unsafe fn prep(x: __m256i) -> __m256i {
        x
    }
    #[inline(always)]
    unsafe fn mul(c: *const u8, x: __m256i) -> __m256i {
        _mm256_gf2p8affine_epi64_epi8::<0>(x, _mm256_loadu_si256(c as *const _))
    }
}

impl Simd for NibY {
    type V = __m256i;
    type P = (__m256i, __m256i);
    const BYTES: usize = 32;
    const ROWS_MAX: usize = 4;
    const UNROLL2: bool = false;
    #[inline(always)]
    unsafe fn load(p: *const u8) -> __m256i {
        _mm256_loadu_si256(p as *const _)
    }
    #[inline(always)]
    unsafe fn store(p: *mut u8, v: __m256i) {
        _mm256_storeu_si256(p as *mut _, v)
    }
    #[inline(always)]
    unsafe fn zero() -> __m256i {
        _mm256_setzero_si256()
    }
    #[inline(always)]
    unsafe fn xor(a: __m256i, b: __m256i) -> __m256i {
        _mm256_xor_si256(a, b)
    }
    #[inline(always)]
    unsafe fn prep(x: __m256i) -> (__m256i, __m256i) {
        let mask = _mm256_set1_epi8(0x0f);
        (
            _mm256_and_si256(x, mask),
            _mm256_and_si256(_mm256_srli_epi64::<4>(x), mask),
        )
    }
    #[inline(always)]
    unsafe fn mul(c: *const u8, x: (__m256i, __m256i)) -> __m256i {
        let lo = _mm256_loadu_si256(c as *const _);
        let hi = _mm256_loadu_si256(c.add(32) as *const _);
        _mm256_xor_si256(_mm256_shuffle_epi8(lo, x.0), _mm256_shuffle_epi8(hi, x.1))
    }
}

impl Simd for NibX {
    type V = __m128i;
    type P = (__m128i, __m128i);
    const BYTES: usize = 16;
    const ROWS_MAX: usize = 4;
    const UNROLL2: bool = false;
    #[inline(always)]
    unsafe fn load(p: *const u8) -> __m128i {
        _mm_loadu_si128(p as *const _)
    }
    #[inline(always)]
    unsafe fn store(p: *mut u8, v: __m128i) {
        _mm_storeu_si128(p as *mut _, v)
    }
    #[inline(always)]
    unsafe fn zero() -> __m128i {
        _mm_setzero_si128()
    }
    #[inline(always)]
    unsafe fn xor(a: __m128i, b: __m128i) -> __m128i {
        _mm_xor_si128(a, b)
    }
    #[inline(always)]
    unsafe fn prep(x: __m128i) -> (__m128i, __m128i) {
        let mask = _mm_set1_epi8(0x0f);
        (
            _mm_and_si128(x, mask),
            _mm_and_si128(_mm_srli_epi64::<4>(x), mask),
        )
    }
    #[inline(always)]
    unsafe fn mul(c: *const u8, x: (__m128i, __m128i)) -> __m128i {
        let lo = _mm_loadu_si128(c as *const _);
        let hi = _mm_loadu_si128(c.add(16) as *const _);
        _mm_xor_si128(_mm_shuffle_epi8(lo, x.0), _mm_shuffle_epi8(hi, x.1))
    }
}

/// One group of rows: `R` multiplied rows plus, if `X`, one XOR-only row.
struct Group {
    /// Prepared coefficients of input 0 for each row; input j is at
    /// `coef[r] + j * coef_bytes`.
    coef: [*const u8; 8],
    out: [*mut u8; 8],
    xout: *mut u8,
}

/// Bytes `start..end` (a multiple of `U * BYTES` long) of one group.
// Index loops: r and u also compute pointer offsets, and the fixed-size
// arrays must stay in registers after full unrolling.
#[allow(clippy::needless_range_loop)]
#[inline(always)]
unsafe fn block<S: Simd, const R: usize, const X: bool, const U: usize>(
    job: &Job<'_>,
    g: &Group,
    cb: usize,
    start: usize,
    end: usize,
) {
    let ins = job.ins;
    let cols = ins.len();
    let step = S::BYTES * U;
    let mut off = start;
    while off < end {
        let mut acc = [[S::zero(); U]; R];
        let mut xacc = [S::zero(); U];
        if job.accumulate {
            for r in 0..R {
                for u in 0..U {
                    acc[r][u] = S::load(g.out[r].add(off + u * S::BYTES));
                }
            }
            if X {
                for u in 0..U {
                    xacc[u] = S::load(g.xout.add(off + u * S::BYTES));
                }
            }
        }
        for j in 0..cols {
            let src = (*ins.get_unchecked(j)).add(off);
            let mut d = [S::zero(); U];
            for u in 0..U {
                d[u] = S::load(src.add(u * S::BYTES));
            }
            if X {
                for u in 0..U {
                    xacc[u] = S::xor(xacc[u], d[u]);
                }
            }
            if R > 0 {
                let p = d.map(|v| S::prep(v));
                for r in 0..R {
                    let c = g.coef[r].add(j * cb);
                    for u in 0..U {
                        acc[r][u] = S::xor(acc[r][u], S::mul(c, p[u]));
                    }
                }
            }
        }
        for r in 0..R {
            for u in 0..U {
                S::store(g.out[r].add(off + u * S::BYTES), acc[r][u]);
            }
        }
        if X {
            for u in 0..U {
                S::store(g.xout.add(off + u * S::BYTES), xacc[u]);
            }
        }
        off += step;
    }
}

/// Whole vectors `0..vec_end` of one group.
#[inline(always)]
unsafe fn group<S: Simd, const R: usize, const X: bool>(
    job: &Job<'_>,
    g: &Group,
    cb: usize,
    vec_end: usize,
) {
    if S::UNROLL2 && R <= 1 {
        // Few rows: four vectors per block keeps enough independent work in
        // flight and halves the loop overhead.
        let four = vec_end / (4 * S::BYTES) * (4 * S::BYTES);
        block::<S, R, X, 4>(job, g, cb, 0, four);
        block::<S, R, X, 1>(job, g, cb, four, vec_end);
    } else if S::UNROLL2 {
        let two = vec_end / (2 * S::BYTES) * (2 * S::BYTES);
        block::<S, R, X, 2>(job, g, cb, 0, two);
        block::<S, R, X, 1>(job, g, cb, two, vec_end);
    } else {
        block::<S, R, X, 1>(job, g, cb, 0, vec_end);
    }
}

/// Runs the job with instruction set `S`, then the scalar tail.
#[inline(always)]
unsafe fn drive<S: Simd>(job: &Job<'_>) {
    let t = job.t;
    let cb = t.kernel.coef_bytes();
    let vec_end = job.len / S::BYTES * S::BYTES;
    if vec_end > 0 {
        let mut xor_row = t.ones_row;
        // General rows are 0..rows without the XOR-only row: the i-th one
        // is row i, or i + 1 past the XOR-only row.
        let nrows = t.rows - usize::from(xor_row.is_some());
        let row_of = |i: usize| match t.ones_row {
            Some(x) if i >= x => i + 1,
            _ => i,
        };
        let mut done = 0;
        while done < nrows || xor_row.is_some() {
            let n = (nrows - done).min(S::ROWS_MAX);
            let mut g = Group {
                coef: [std::ptr::null(); 8],
                out: [std::ptr::null_mut(); 8],
                xout: std::ptr::null_mut(),
            };
            for i in 0..n {
                let r = row_of(done + i);
                g.coef[i] = job.coef_ptr(r, 0);
                g.out[i] = job.outs[r];
            }
            let x = xor_row.take();
            if let Some(r) = x {
                g.xout = job.outs[r];
            }
            macro_rules! dispatch {
                ($($n:literal)*) => {
                    match (n, x.is_some()) {
                        $(
                            ($n, false) => group::<S, $n, false>(job, &g, cb, vec_end),
                            ($n, true) => group::<S, $n, true>(job, &g, cb, vec_end),
                        )*
                        _ => unreachable!("group larger than ROWS_MAX"),
                    }
                };
            }
            dispatch!(0 1 2 3 4 5 6 7 8);
            done += n;
        }
    }
    scalar::run(job, vec_end);
}

#[target_feature(enable = "avx512f,avx512bw,gfni")]
pub(crate) unsafe fn run_gfni_avx512(job: &Job<'_>) {
    drive::<GfniZ>(job)
}

#[target_feature(enable = "avx2,gfni")]
pub(crate) unsafe fn run_gfni_avx2(job: &Job<'_>) {
    drive::<GfniY>(job)
}

#[target_feature(enable = "avx2")]
pub(crate) unsafe fn run_avx2(job: &Job<'_>) {
    drive::<NibY>(job)
}

#[target_feature(enable = "ssse3")]
pub(crate) unsafe fn run_ssse3(job: &Job<'_>) {
    drive::<NibX>(job)
}
