//! The exact scalar mapper: Ceph's `crush_do_rule`, decision for decision.
//!
//! This is the oracle every faster path is tested against, so it follows
//! Ceph's control flow literally (retry descent, local retries, the
//! permutation fallback, firstn short results, indep holes) rather than
//! being clever. It owns no state between calls except reusable scratch in
//! a [`Workspace`]; each call starts from a logically fresh workspace, as
//! Ceph's `crush_init_workspace` does.
//!
//! Invariant: for any map, rule, input and weight vector the mapper returns
//! at most `result_max` items and never panics (bad ids are skipped, as
//! Ceph does, instead of trusted).

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

/// A straw2 draw from the 16-bit hash `u`: `ln(u) / weight`, larger wins.
///
/// The division runs in `f64`, which is exact here: `ln` is an integer in
/// `[-2^48, 0)` and `weight < 2^32`, both exact; a non-integer quotient is at
/// least `1/weight` from an integer while the rounding error is below
/// `|q| * 2^-53 < 2^-4 / weight`, so truncating gives C's integer quotient.
#[inline(always)]
pub(crate) fn straw2_draw_from_hash(u: u32, weight: u32) -> i64 {
    if weight == 0 {
        return i64::MIN;
    }
    let ln = crush_ln(u) as i64 - 0x1_0000_0000_0000;
    (ln as f64 / weight as f64) as i64
}

/// Ceph's `bucket_straw2_choose`. Hashes eight items per step: the eight
/// rjenkins chains are independent, so the core runs them side by side
/// instead of waiting on one long dependency chain at a time.
fn straw2_choose(b: &Bucket, x: i32, r: i32) -> i32 {
    let items = &b.items[..];
    let weights = &b.item_weights[..];
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
    let (x, r) = (x as u32, r as u32);
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
            consider(base + k, straw2_draw_from_hash(u[k], weights[base + k]));
        }
    }
    for i in blocks * BLOCK..items.len() {
        consider(i, straw2_draw_from_hash(hash32_3(x, items[i] as u32, r) & 0xffff, weights[i]));
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
        _ => straw2_choose(b, x, r),
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
