//! The exact scalar mapper: Ceph's `crush_do_rule`, decision for decision.
//!
//! This is the oracle every faster path is tested against, so it follows
//! Ceph's control flow literally (retry descent, local retries, the
//! permutation fallback, firstn short results, indep holes) rather than
//! being clever. The one exception is the straw2 draw, where the time goes:
//! it computes Ceph's exact draws eight items at a time (AVX2) or with a
//! prepared reciprocal per item, never an approximation, and a test holds it
//! to the literal `straw2_choose_reference`. It owns no state between
//! calls except reusable scratch in a [`Workspace`]; each call starts from a
//! logically fresh workspace, as Ceph's `crush_init_workspace` does.
//!
//! Invariant: for any map, rule, input and weight vector the mapper returns
//! at most `result_max` items and never panics (bad ids are skipped, as
//! Ceph does, instead of trusted).

use crate::divide::Recip;
use crate::hash::{crush_ln, hash32_2, hash32_3, hash32_4};
use crate::limits;
use crate::model::{tree_height, Bucket, BucketAlg, CrushMap, Derived, Step, ITEM_NONE, ITEM_UNDEF, WEIGHT_ONE};

/// Per-bucket permutation state for `uniform` buckets and the local
/// fallback search (Ceph's `crush_work_bucket`).
#[derive(Debug, Clone, Default)]
struct Perm {
    /// Call generation this state belongs to; older means "reset".
    generation: u64,
    perm_x: u32,
    perm_n: u32,
    perm: Vec<u32>,
}

/// Reusable scratch for mapping; one per thread.
#[derive(Debug, Default)]
pub struct Workspace {
    generation: u64,
    perms: Vec<Perm>,
    vectors: [Vec<i32>; 3],
    /// Histogram of tries per successful choice (`--show-choose-tries`),
    /// recorded only when enabled.
    choose_tries: Option<Vec<u64>>,
}

impl Workspace {
    pub fn new() -> Workspace {
        Workspace::default()
    }

    /// Starts recording how many tries each choice took, in buckets
    /// `0..=max_tries`.
    pub fn enable_choose_tries(&mut self, max_tries: u32) {
        self.choose_tries = Some(vec![0; max_tries as usize + 1]);
    }

    pub fn choose_tries(&self) -> Option<&[u64]> {
        self.choose_tries.as_deref()
    }

    fn record_tries(&mut self, ftotal: u32, choose_total_tries: u32) {
        if let Some(hist) = self.choose_tries.as_mut() {
            if ftotal <= choose_total_tries {
                if let Some(slot) = hist.get_mut(ftotal as usize) {
                    *slot += 1;
                }
            }
        }
    }

    fn perm_for(&mut self, bucket: &Bucket) -> &mut Perm {
        let slot = (-1 - bucket.id as i64) as usize;
        if self.perms.len() <= slot {
            self.perms.resize_with(slot + 1, Perm::default);
        }
        let generation = self.generation;
        let p = &mut self.perms[slot];
        if p.generation != generation {
            p.generation = generation;
            p.perm_x = 0;
            p.perm_n = 0;
            p.perm.clear();
            p.perm.resize(bucket.size(), 0);
        }
        p
    }
}

/// Ceph's `is_out`: a device is rejected with probability `1 - w/0x10000`.
#[inline]
pub(crate) fn is_out(weights: &[u32], item: i32, x: i32) -> bool {
    let Some(&w) = weights.get(item as usize) else {
        return true;
    };
    if w >= WEIGHT_ONE {
        return false;
    }
    if w == 0 {
        return true;
    }
    (hash32_2(x as u32, item as u32) & 0xffff) >= w
}

/// Ceph's `bucket_straw2_choose`, literally: `ln(u) / weight` in 64-bit
/// integer division, the largest draw wins, the first of equal draws. The
/// reference the prepared [`straw2_choose`] is tested against.
pub(crate) fn straw2_choose_reference(b: &Bucket, x: i32, r: i32) -> i32 {
    let mut high = 0usize;
    let mut high_draw = i64::MIN;
    for (i, (&item, &w)) in b.items.iter().zip(&b.item_weights).enumerate() {
        let draw = if w == 0 {
            i64::MIN
        } else {
            let u = hash32_3(x as u32, item as u32, r as u32) & 0xffff;
            (crush_ln(u) as i64 - 0x1_0000_0000_0000) / w as i64
        };
        if i == 0 || draw > high_draw {
            high = i;
            high_draw = draw;
        }
    }
    b.items[high]
}

/// Ceph's `bucket_straw2_choose`, exactly, eight items at a time: with
/// AVX2 the hashes, `crush_ln` and the divisions all run on vector lanes
/// ([`straw2_exact_avx2`]); otherwise the hashes do (the compiler
/// vectorizes the eight independent chains) and each draw is one multiply
/// by a prepared reciprocal ([`Recip`]).
fn straw2_choose(b: &Bucket, recips: &[Recip], x: i32, r: i32) -> i32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2.
            return unsafe { straw2_choose_avx2(b, recips, x, r) };
        }
    }
    straw2_choose_lanes(b, recips, x, r)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn straw2_choose_avx2(b: &Bucket, recips: &[Recip], x: i32, r: i32) -> i32 {
    straw2_exact_avx2(&b.items, &b.item_weights, recips, x as u32, r as u32)
}

/// [`straw2_exact_items`] with AVX2, eight items per step: rjenkins on
/// eight lanes, Ceph's `crush_ln` bit for bit ([`crate::hash::x86`]), and
/// `trunc(ln / w)` as an `f64` division, which is exact: `-ln <= 2^48` and
/// `w < 2^32` are exact in `f64`, a quotient that is not an integer is at
/// least `1 / w` from one while the division's error is below
/// `2^48 / w * 2^-53`. Weight 0 divides to `+inf`, which orders like Ceph's
/// `S64_MIN` draw. Each lane keeps its smallest quotient (largest draw),
/// first position on ties; the lanes then merge by (quotient, position),
/// and the last `len % 8` items go through the scalar draws.
///
/// # Safety
/// The CPU has AVX2; `weights` and `recips` are as long as `items`.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn straw2_exact_avx2(items: &[i32], weights: &[u32], recips: &[Recip], x: u32, r: u32) -> i32 {
    use std::arch::x86_64::*;
    const BLOCK: usize = 8;
    let blocks = items.len() / BLOCK;
    if blocks == 0 {
        return straw2_exact_items(items, recips, x, r);
    }
    let weights = &weights[..items.len()];
    let mut best = Straw2Best256 {
        q: [_mm256_set1_pd(f64::INFINITY); 2],
        // A lane whose quotients are all +inf (weight 0) keeps its first
        // position.
        pos: [_mm256_setr_pd(0.0, 1.0, 2.0, 3.0), _mm256_setr_pd(4.0, 5.0, 6.0, 7.0)],
    };
    let (xv, rv) = (_mm256_set1_epi32(x as i32), _mm256_set1_epi32(r as i32));
    // Three blocks per step: three independent hash chains interleaved.
    let mut blk = 0;
    while blocks - blk >= 3 {
        straw2_exact_blocks::<3>(items, weights, blk * BLOCK, xv, rv, &mut best);
        blk += 3;
    }
    if blocks - blk == 2 {
        straw2_exact_blocks::<2>(items, weights, blk * BLOCK, xv, rv, &mut best);
    } else if blocks - blk == 1 {
        straw2_exact_blocks::<1>(items, weights, blk * BLOCK, xv, rv, &mut best);
    }
    let (mut q, mut pos) = ([0f64; 8], [0f64; 8]);
    _mm256_storeu_pd(q.as_mut_ptr(), best.q[0]);
    _mm256_storeu_pd(q[4..].as_mut_ptr(), best.q[1]);
    _mm256_storeu_pd(pos.as_mut_ptr(), best.pos[0]);
    _mm256_storeu_pd(pos[4..].as_mut_ptr(), best.pos[1]);
    let mut high = 0usize;
    for l in 1..BLOCK {
        if q[l] < q[high] || (q[l] == q[high] && pos[l] < pos[high]) {
            high = l;
        }
    }
    let mut high_pos = pos[high] as usize;
    let mut high_draw = if q[high] == f64::INFINITY { i64::MIN } else { -(q[high] as i64) };
    for i in blocks * BLOCK..items.len() {
        let draw = recips[i].draw(crush_ln(hash32_3(x, items[i] as u32, r) & 0xffff));
        if draw > high_draw {
            high_pos = i;
            high_draw = draw;
        }
    }
    items[high_pos]
}

/// Per lane of [`straw2_exact_avx2`] (two halves of four): the smallest
/// quotient so far and its position.
#[cfg(target_arch = "x86_64")]
struct Straw2Best256 {
    q: [std::arch::x86_64::__m256d; 2],
    pos: [std::arch::x86_64::__m256d; 2],
}

/// Draws the `W` blocks of eight items from `base` and folds them, in
/// position order, into `best`.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn straw2_exact_blocks<const W: usize>(
    items: &[i32],
    weights: &[u32],
    base: usize,
    xv: std::arch::x86_64::__m256i,
    rv: std::arch::x86_64::__m256i,
    best: &mut Straw2Best256,
) {
    use std::arch::x86_64::*;
    let items = &items[base..base + 8 * W];
    let weights = &weights[base..base + 8 * W];
    let item_v: [__m256i; W] = std::array::from_fn(|k| _mm256_loadu_si256(items[8 * k..].as_ptr().cast()));
    let h = crate::hash::x86::hash32_3_256::<W>(xv, rv, &item_v);
    let two_48 = _mm256_set1_epi64x(1 << 48);
    // n | 2^52 as f64, minus 2^52: n exactly (n < 2^52).
    let magic_bits = _mm256_set1_epi64x(0x4330_0000_0000_0000);
    let magic = _mm256_set1_pd(4_503_599_627_370_496.0);
    for k in 0..W {
        let ln = crate::hash::x86::crush_ln_256(_mm256_and_si256(h[k], _mm256_set1_epi32(0xffff)));
        // u32 weights to f64: flip the sign bit, convert signed, add 2^31.
        let w = _mm256_xor_si256(_mm256_loadu_si256(weights[8 * k..].as_ptr().cast()), _mm256_set1_epi32(i32::MIN));
        let w_halves = [_mm256_castsi256_si128(w), _mm256_extracti128_si256::<1>(w)];
        for half in 0..2 {
            let wf = _mm256_add_pd(_mm256_cvtepi32_pd(w_halves[half]), _mm256_set1_pd(2_147_483_648.0));
            let n = _mm256_sub_epi64(two_48, ln[half]);
            let nf = _mm256_sub_pd(_mm256_castsi256_pd(_mm256_or_si256(n, magic_bits)), magic);
            let q = _mm256_round_pd::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(_mm256_div_pd(nf, wf));
            let p = (base + 8 * k + 4 * half) as f64;
            let pos = _mm256_setr_pd(p, p + 1.0, p + 2.0, p + 3.0);
            // Strictly smaller only: a tie keeps the earlier position.
            let lt = _mm256_cmp_pd::<_CMP_LT_OQ>(q, best.q[half]);
            best.q[half] = _mm256_blendv_pd(best.q[half], q, lt);
            best.pos[half] = _mm256_blendv_pd(best.pos[half], pos, lt);
        }
    }
}

#[inline(always)]
fn straw2_choose_lanes(b: &Bucket, recips: &[Recip], x: i32, r: i32) -> i32 {
    straw2_exact_items(&b.items, recips, x as u32, r as u32)
}

/// The straw2 winner among `items` with weights given as reciprocals:
/// Ceph's draws exactly, the first of equal draws. Shared with the batched
/// mapper, which calls it (inlined into its AVX2 code) for single lanes.
#[inline(always)]
pub(crate) fn straw2_exact_items(items: &[i32], recips: &[Recip], x: u32, r: u32) -> i32 {
    let recips = &recips[..items.len()];
    let mut high = 0usize;
    let mut high_draw = i64::MIN;
    let mut first = true;
    let mut consider = |i: usize, draw: i64| {
        if first || draw > high_draw {
            high = i;
            high_draw = draw;
            first = false;
        }
    };
    const BLOCK: usize = 8;
    let blocks = items.len() / BLOCK;
    for blk in 0..blocks {
        let base = blk * BLOCK;
        let it: &[i32; BLOCK] = items[base..base + BLOCK].try_into().expect("block in bounds");
        let mut u = [0u32; BLOCK];
        for k in 0..BLOCK {
            u[k] = hash32_3(x, it[k] as u32, r) & 0xffff;
        }
        for k in 0..BLOCK {
            consider(base + k, recips[base + k].draw(crush_ln(u[k])));
        }
    }
    for i in blocks * BLOCK..items.len() {
        consider(i, recips[i].draw(crush_ln(hash32_3(x, items[i] as u32, r) & 0xffff)));
    }
    items[high]
}

fn straw_choose(b: &Bucket, straws: &[u32], x: i32, r: i32) -> i32 {
    let mut high = 0;
    let mut high_draw = 0u64;
    for (i, &item) in b.items.iter().enumerate() {
        let draw = (hash32_3(x as u32, item as u32, r as u32) & 0xffff) as u64 * straws[i] as u64;
        if i == 0 || draw > high_draw {
            high = i;
            high_draw = draw;
        }
    }
    b.items[high]
}

fn list_choose(b: &Bucket, sum_weights: &[u32], x: i32, r: i32) -> i32 {
    for i in (0..b.size()).rev() {
        let w = (hash32_4(x as u32, b.items[i] as u32, r as u32, b.id as u32) & 0xffff) as u64;
        let w = (w * sum_weights[i] as u64) >> 16;
        if w < b.item_weights[i] as u64 {
            return b.items[i];
        }
    }
    b.items[0]
}

fn tree_choose(b: &Bucket, node_weights: &[u32], x: i32, r: i32) -> i32 {
    let mut n = (node_weights.len() >> 1) as u32;
    // Leaves are odd; the root of a non-empty tree is even.
    while n & 1 == 0 {
        let w = node_weights[n as usize] as u64;
        let t = (hash32_4(x as u32, n, r as u32, b.id as u32) as u64 * w) >> 32;
        let h = tree_height(n);
        let left = n - (1 << (h - 1));
        n = if t < node_weights[left as usize] as u64 { left } else { n + (1 << (h - 1)) };
    }
    // A tree whose weights are all zero walks right into the padding
    // leaves (Ceph reads past its item array there): answer no item, which
    // the choose loop rejects like any bad item.
    b.items.get((n >> 1) as usize).copied().unwrap_or(ITEM_NONE)
}

/// Ceph's `bucket_perm_choose`: a lazily built pseudo-random permutation.
fn perm_choose(b: &Bucket, work: &mut Workspace, x: i32, r: i32) -> i32 {
    let size = b.size() as u32;
    let pr = (r as u32) % size;
    let p = work.perm_for(b);
    if p.perm_x != x as u32 || p.perm_n == 0 {
        p.perm_x = x as u32;
        if pr == 0 {
            // Common r = 0 case: no permutation needed yet.
            let s = hash32_3(x as u32, b.id as u32, 0) % size;
            p.perm[0] = s;
            p.perm_n = 0xffff;
            return b.items[s as usize];
        }
        for (i, slot) in p.perm.iter_mut().enumerate() {
            *slot = i as u32;
        }
        p.perm_n = 0;
    } else if p.perm_n == 0xffff {
        // Expand the r = 0 shortcut into a real permutation prefix.
        for i in 1..size {
            p.perm[i as usize] = i;
        }
        let first = p.perm[0] as usize;
        p.perm[first] = 0;
        p.perm_n = 1;
    }
    while p.perm_n <= pr {
        let pn = p.perm_n;
        if pn < size - 1 {
            let i = hash32_3(x as u32, b.id as u32, pn) % (size - pn);
            if i != 0 {
                p.perm.swap((pn + i) as usize, pn as usize);
            }
        }
        p.perm_n += 1;
    }
    b.items[p.perm[pr as usize] as usize]
}

fn bucket_choose(b: &Bucket, work: &mut Workspace, x: i32, r: i32) -> i32 {
    match (&b.derived, b.alg) {
        (_, BucketAlg::Uniform) => perm_choose(b, work, x, r),
        (Derived::List { sum_weights }, _) => list_choose(b, sum_weights, x, r),
        (Derived::Tree { node_weights }, _) => tree_choose(b, node_weights, x, r),
        (Derived::Straw { straws }, _) => straw_choose(b, straws, x, r),
        (Derived::Straw2 { recips }, _) => straw2_choose(b, recips, x, r),
        // Not built by `Bucket::new` (which prepares every straw2 bucket).
        (Derived::None, _) => straw2_choose_reference(b, x, r),
    }
}

/// Knobs for one choose step, after rule overrides.
#[derive(Clone, Copy)]
struct ChooseParams {
    tries: u32,
    recurse_tries: u32,
    local_retries: u32,
    local_fallback_retries: u32,
    vary_r: u32,
    stable: u32,
}

/// The scalar mapper over one map.
pub struct Mapper<'m> {
    map: &'m CrushMap,
}

impl<'m> Mapper<'m> {
    pub fn new(map: &'m CrushMap) -> Mapper<'m> {
        Mapper { map }
    }

    pub fn map(&self) -> &'m CrushMap {
        self.map
    }

    /// The type of an item: 0 for devices, the bucket type for buckets,
    /// `None` for an id that names nothing.
    fn item_type(&self, item: i32) -> Option<i32> {
        if item >= 0 {
            Some(0)
        } else {
            self.map.bucket(item).map(|b| b.type_id)
        }
    }

    /// Maps input `x` with rule `rule_id` into `result` (cleared first),
    /// at most `result_max` items, rejecting devices by `weights` (16.16
    /// reweights indexed by device id). Returns the number of items.
    /// An unknown rule yields an empty result, as in Ceph.
    pub fn do_rule(
        &self,
        rule_id: i32,
        x: i32,
        result_max: usize,
        weights: &[u32],
        ws: &mut Workspace,
        result: &mut Vec<i32>,
    ) -> usize {
        result.clear();
        let Some(rule) = self.map.rule(rule_id) else {
            return 0;
        };
        let result_max = result_max.min(limits::result_max);
        if result_max == 0 {
            return 0;
        }
        ws.generation += 1;
        let mut vectors = std::mem::take(&mut ws.vectors);
        for v in vectors.iter_mut() {
            v.clear();
            v.resize(result_max, 0);
        }
        let [va, vb, vc] = &mut vectors;
        let (mut w, mut o): (&mut Vec<i32>, &mut Vec<i32>) = (va, vb);
        let c = vc;

        let t = &self.map.tunables;
        // Ceph's choose_total_tries counted retries, not tries: add one.
        let mut choose_tries = t.choose_total_tries.saturating_add(1);
        let mut choose_leaf_tries = 0u32;
        let mut local_retries = t.choose_local_tries;
        let mut local_fallback_retries = t.choose_local_fallback_tries;
        let mut vary_r = t.chooseleaf_vary_r;
        let mut stable = t.chooseleaf_stable;
        let mut wsize = 0usize;

        for step in &rule.steps {
            match *step {
                Step::Take(item) => {
                    let valid = if item >= 0 { item < self.map.max_devices } else { self.map.bucket(item).is_some() };
                    if valid {
                        w[0] = item;
                        wsize = 1;
                    }
                }
                Step::SetChooseTries(v) => {
                    if v > 0 {
                        choose_tries = v as u32;
                    }
                }
                Step::SetChooseLeafTries(v) => {
                    if v > 0 {
                        choose_leaf_tries = v as u32;
                    }
                }
                Step::SetChooseLocalTries(v) => {
                    if v >= 0 {
                        local_retries = v as u32;
                    }
                }
                Step::SetChooseLocalFallbackTries(v) => {
                    if v >= 0 {
                        local_fallback_retries = v as u32;
                    }
                }
                Step::SetChooseLeafVaryR(v) => {
                    if v >= 0 {
                        vary_r = v as u32;
                    }
                }
                Step::SetChooseLeafStable(v) => {
                    if v >= 0 {
                        stable = v as u32;
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
                    let recurse_to_leaf =
                        matches!(step, Step::ChooseLeafFirstN { .. } | Step::ChooseLeafIndep { .. });
                    let mut osize = 0usize;
                    for &taken in w.iter().take(wsize) {
                        let mut numrep = n;
                        if numrep <= 0 {
                            numrep += result_max as i32;
                            if numrep <= 0 {
                                continue;
                            }
                        }
                        let Some(bucket) = self.map.bucket(taken) else {
                            // Probably ITEM_NONE from an earlier indep step.
                            continue;
                        };
                        if firstn {
                            let recurse_tries = if choose_leaf_tries > 0 {
                                choose_leaf_tries
                            } else if t.chooseleaf_descend_once != 0 {
                                1
                            } else {
                                choose_tries
                            };
                            let params = ChooseParams {
                                tries: choose_tries,
                                recurse_tries,
                                local_retries,
                                local_fallback_retries,
                                vary_r,
                                stable,
                            };
                            osize += self.choose_firstn(
                                ws,
                                bucket,
                                weights,
                                x,
                                numrep,
                                type_id,
                                &mut o[osize..],
                                0,
                                result_max - osize,
                                &params,
                                recurse_to_leaf,
                                Some(&mut c[osize..]),
                                0,
                            );
                        } else {
                            let out_size = (numrep as usize).min(result_max - osize);
                            let recurse_tries = if choose_leaf_tries > 0 { choose_leaf_tries } else { 1 };
                            self.choose_indep(
                                ws,
                                bucket,
                                weights,
                                x,
                                out_size,
                                numrep,
                                type_id,
                                &mut o[osize..],
                                0,
                                choose_tries,
                                recurse_tries,
                                recurse_to_leaf,
                                Some(&mut c[osize..]),
                                0,
                            );
                            osize += out_size;
                        }
                    }
                    if recurse_to_leaf {
                        o[..osize].copy_from_slice(&c[..osize]);
                    }
                    std::mem::swap(&mut w, &mut o);
                    wsize = osize;
                }
                Step::Emit => {
                    for &item in w.iter().take(wsize) {
                        if result.len() >= result_max {
                            break;
                        }
                        result.push(item);
                    }
                    wsize = 0;
                }
            }
        }
        ws.vectors = vectors;
        result.len()
    }

    #[allow(clippy::too_many_arguments)]
    fn choose_firstn(
        &self,
        ws: &mut Workspace,
        bucket: &Bucket,
        weights: &[u32],
        x: i32,
        numrep: i32,
        type_id: i32,
        out: &mut [i32],
        mut outpos: usize,
        out_size: usize,
        p: &ChooseParams,
        recurse_to_leaf: bool,
        mut out2: Option<&mut [i32]>,
        parent_r: i32,
    ) -> usize {
        let mut count = out_size;
        let mut rep: i32 = if p.stable != 0 { 0 } else { outpos as i32 };
        let mut item = 0i32;
        while rep < numrep && count > 0 {
            let mut ftotal: u32 = 0;
            let mut skip_rep = false;
            loop {
                // retry_descent
                let mut retry_descent = false;
                let mut inb = bucket;
                let mut flocal: u32 = 0;
                loop {
                    // retry_bucket
                    let mut collide = false;
                    let mut retry_bucket = false;
                    let r = rep.wrapping_add(parent_r).wrapping_add(ftotal as i32);
                    let reject;
                    if inb.size() == 0 {
                        reject = true;
                    } else {
                        item = if p.local_fallback_retries > 0
                            && flocal >= (inb.size() as u32 >> 1)
                            && flocal > p.local_fallback_retries
                        {
                            perm_choose(inb, ws, x, r)
                        } else {
                            bucket_choose(inb, ws, x, r)
                        };
                        if item >= self.map.max_devices {
                            skip_rep = true;
                            break;
                        }
                        let Some(t) = self.item_type(item) else {
                            skip_rep = true;
                            break;
                        };
                        let itemtype = t;
                        if itemtype != type_id {
                            match self.map.bucket(item) {
                                Some(next) if item < 0 => {
                                    inb = next;
                                    continue;
                                }
                                _ => {
                                    skip_rep = true;
                                    break;
                                }
                            }
                        }
                        collide = out[..outpos].contains(&item);
                        let mut rej = false;
                        if !collide && recurse_to_leaf {
                            if item < 0 {
                                let sub_r = if p.vary_r != 0 { r.wrapping_shr(p.vary_r - 1) } else { 0 };
                                let leaf_params = ChooseParams {
                                    tries: p.recurse_tries,
                                    recurse_tries: 0,
                                    ..*p
                                };
                                let child = self.map.bucket(item).expect("item type checked above");
                                let o2 = out2.as_deref_mut().expect("recurse_to_leaf needs out2");
                                let got = self.choose_firstn(
                                    ws,
                                    child,
                                    weights,
                                    x,
                                    if p.stable != 0 { 1 } else { outpos as i32 + 1 },
                                    0,
                                    o2,
                                    outpos,
                                    count,
                                    &leaf_params,
                                    false,
                                    None,
                                    sub_r,
                                );
                                if got <= outpos {
                                    rej = true;
                                }
                            } else if let Some(o2) = out2.as_deref_mut() {
                                o2[outpos] = item;
                            }
                        }
                        if !rej && !collide && itemtype == 0 {
                            rej = is_out(weights, item, x);
                        }
                        reject = rej;
                    }
                    if reject || collide {
                        ftotal += 1;
                        flocal += 1;
                        // Two distinct reasons to retry in the same bucket,
                        // kept apart as in Ceph.
                        #[allow(clippy::if_same_then_else)]
                        if collide && flocal <= p.local_retries {
                            retry_bucket = true;
                        } else if p.local_fallback_retries > 0
                            && flocal <= inb.size() as u32 + p.local_fallback_retries
                        {
                            retry_bucket = true;
                        } else if ftotal < p.tries {
                            retry_descent = true;
                        } else {
                            skip_rep = true;
                        }
                    }
                    if !retry_bucket {
                        break;
                    }
                }
                if !retry_descent {
                    break;
                }
            }
            if !skip_rep {
                out[outpos] = item;
                outpos += 1;
                count -= 1;
                ws.record_tries(ftotal, self.map.tunables.choose_total_tries);
            }
            rep += 1;
        }
        outpos
    }

    #[allow(clippy::too_many_arguments)]
    fn choose_indep(
        &self,
        ws: &mut Workspace,
        bucket: &Bucket,
        weights: &[u32],
        x: i32,
        left: usize,
        numrep: i32,
        type_id: i32,
        out: &mut [i32],
        outpos: usize,
        tries: u32,
        recurse_tries: u32,
        recurse_to_leaf: bool,
        mut out2: Option<&mut [i32]>,
        parent_r: i32,
    ) {
        let mut left = left;
        let endpos = outpos + left;
        for rep in outpos..endpos {
            out[rep] = ITEM_UNDEF;
            if let Some(o2) = out2.as_deref_mut() {
                o2[rep] = ITEM_UNDEF;
            }
        }
        let mut ftotal: u32 = 0;
        while left > 0 && ftotal < tries {
            for rep in outpos..endpos {
                if out[rep] != ITEM_UNDEF {
                    continue;
                }
                let mut inb = bucket;
                loop {
                    let mut r = (rep as i32).wrapping_add(parent_r);
                    if inb.alg == BucketAlg::Uniform && inb.size() as i32 % numrep == 0 {
                        r = r.wrapping_add((numrep + 1).wrapping_mul(ftotal as i32));
                    } else {
                        r = r.wrapping_add(numrep.wrapping_mul(ftotal as i32));
                    }
                    if inb.size() == 0 {
                        break;
                    }
                    let item = bucket_choose(inb, ws, x, r);
                    let itemtype = if item >= self.map.max_devices { None } else { self.item_type(item) };
                    let Some(itemtype) = itemtype else {
                        out[rep] = ITEM_NONE;
                        if let Some(o2) = out2.as_deref_mut() {
                            o2[rep] = ITEM_NONE;
                        }
                        left -= 1;
                        break;
                    };
                    if itemtype != type_id {
                        match self.map.bucket(item) {
                            Some(next) if item < 0 => {
                                inb = next;
                                continue;
                            }
                            _ => {
                                out[rep] = ITEM_NONE;
                                if let Some(o2) = out2.as_deref_mut() {
                                    o2[rep] = ITEM_NONE;
                                }
                                left -= 1;
                                break;
                            }
                        }
                    }
                    if out[outpos..endpos].contains(&item) {
                        break;
                    }
                    if recurse_to_leaf {
                        let o2 = out2.as_deref_mut().expect("recurse_to_leaf needs out2");
                        if item < 0 {
                            let child = self.map.bucket(item).expect("item type checked above");
                            self.choose_indep(
                                ws,
                                child,
                                weights,
                                x,
                                1,
                                numrep,
                                0,
                                o2,
                                rep,
                                recurse_tries,
                                0,
                                false,
                                None,
                                r,
                            );
                            if o2[rep] == ITEM_NONE {
                                break;
                            }
                        } else {
                            o2[rep] = item;
                        }
                    }
                    if itemtype == 0 && is_out(weights, item, x) {
                        break;
                    }
                    out[rep] = item;
                    left -= 1;
                    break;
                }
            }
            ftotal += 1;
        }
        for rep in outpos..endpos {
            if out[rep] == ITEM_UNDEF {
                out[rep] = ITEM_NONE;
            }
            if let Some(o2) = out2.as_deref_mut() {
                if o2[rep] == ITEM_UNDEF {
                    o2[rep] = ITEM_NONE;
                }
            }
        }
        ws.record_tries(ftotal, self.map.tunables.choose_total_tries);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepared_straw2_equals_the_literal_draws() {
        // xorshift: deterministic, no dependency.
        let mut s = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        for case in 0..400 {
            let size = 1 + (next() % 40) as usize;
            let shared = 1 + (next() % 0x40000) as u32;
            let weights: Vec<u32> = (0..size)
                .map(|_| match (case % 4, next() % 8) {
                    // Equal weights (ties on equal hashes), some zeros.
                    (0, 0) => 0,
                    (0, _) => shared,
                    // Few distinct weights.
                    (1, k) => [0x8000, 0x10000, 0x18000][(k % 3) as usize],
                    // Extremes: the largest weights that keep the sum in u32.
                    (2, k) => [1, 2, 0xffff, u32::MAX / 64][(k % 4) as usize],
                    _ => (next() % 0x100000) as u32,
                })
                .collect();
            let items: Vec<i32> = (0..size as i32).collect();
            let b = Bucket::new(-1, 1, BucketAlg::Straw2, 0, items, weights, 1).unwrap();
            let Derived::Straw2 { recips } = &b.derived else { panic!("straw2 is prepared") };
            for _ in 0..200 {
                let (x, r) = (next() as i32, (next() % 64) as i32);
                assert_eq!(straw2_choose(&b, recips, x, r), straw2_choose_reference(&b, x, r), "{:?} x {x} r {r}", b.item_weights);
            }
        }
    }
}
