//! The systematic Reed-Solomon codec: encode, reconstruct, update.
//!
//! A stripe is k data chunks followed by m parity chunks, all the same
//! length (any length; the SIMD kernels finish odd tails in scalar code).
//! Chunk i of the stripe is row i of the generator matrix.
//!
//! Decoding rebuilds the erased chunks from the first k surviving chunks in
//! index order (ISA-L's and Ceph's convention): with B the k x k matrix of
//! the survivors' generator rows, a lost data chunk e is row e of B^-1, and
//! a lost parity chunk p is (generator row p) * B^-1, both applied to the
//! survivors. These decode tables are cached per (erased, wanted) pattern in
//! a bounded least-recently-used cache, so a run of degraded reads pays for
//! one inversion.

use crate::error::EcError;
use crate::kernel::{Kernel, PtrArray, Tables};
use crate::limits;
use crate::matrix::{self, Matrix, MatrixKind};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A set of chunk indices below 256.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
struct Bits([u64; 4]);

impl Bits {
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn has(&self, i: usize) -> bool {
        self.0[i / 64] >> (i % 64) & 1 != 0
    }
}

/// Hasher for [`PlanKey`]: the key is eight words we chose ourselves
/// (bitmaps of chunk indices), not attacker-controlled strings, so a
/// multiply-rotate mix is enough and is far cheaper than SipHash on the
/// degraded-read path.
#[derive(Default)]
struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(w));
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0 ^ v)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(29);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type KeyMap<V> = HashMap<PlanKey, V, std::hash::BuildHasherDefault<KeyHasher>>;

/// Key of a cached decode plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct PlanKey {
    erased: Bits,
    wanted: Bits,
}

/// Tables to rebuild `wanted` chunks from `survivors`.
#[derive(Debug)]
pub struct DecodePlan {
    /// The k chunk indices read, increasing.
    pub survivors: Vec<usize>,
    /// The chunk indices rebuilt, increasing; output row i is `wanted[i]`.
    pub wanted: Vec<usize>,
    tables: Tables,
}

impl DecodePlan {
    /// The decode coefficients: one row per wanted chunk, one column per
    /// survivor.
    pub fn matrix(&self) -> &[u8] {
        self.tables.coefs()
    }
}

/// Hit and miss counts of the decode-table cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub entries: usize,
}

struct Cache {
    map: KeyMap<(Arc<DecodePlan>, u64)>,
    clock: u64,
    stats: CacheStats,
}

/// An erasure code with fixed (k, m, matrix, kernel).
pub struct Codec {
    k: usize,
    m: usize,
    kind: MatrixKind,
    kernel: Kernel,
    generator: Matrix,
    encode: Tables,
    /// Per data chunk j: m x 2 tables with column j twice, so that
    /// `parity ^= c*old ^ c*new` is one accumulate pass.
    update: Vec<Tables>,
    cache: Mutex<Cache>,
    cache_cap: usize,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Codec")
            .field("k", &self.k)
            .field("m", &self.m)
            .field("matrix", &self.kind)
            .field("kernel", &self.kernel)
            .finish()
    }
}

impl Codec {
    /// A codec with the fastest kernel this CPU supports.
    pub fn new(k: usize, m: usize, kind: MatrixKind) -> Result<Codec, EcError> {
        Codec::with_kernel(k, m, kind, Kernel::best())
    }

    /// A codec with a given kernel; refused if the CPU cannot run it.
    pub fn with_kernel(
        k: usize,
        m: usize,
        kind: MatrixKind,
        kernel: Kernel,
    ) -> Result<Codec, EcError> {
        if !kernel.is_supported() {
            return Err(EcError::KernelUnsupported(kernel.name()));
        }
        let generator = matrix::generator(kind, k, m)?;
        let parity_rows: Vec<usize> = (k..k + m).collect();
        let encode = Tables::new(kernel, &generator.select_rows(&parity_rows));
        let update = (0..k)
            .map(|j| {
                let mut u = Matrix::zero(m, 2);
                for p in 0..m {
                    let c = generator.get(k + p, j);
                    u.set(p, 0, c);
                    u.set(p, 1, c);
                }
                Tables::new(kernel, &u)
            })
            .collect();
        Ok(Codec {
            k,
            m,
            kind,
            kernel,
            generator,
            encode,
            update,
            cache: Mutex::new(Cache {
                map: KeyMap::default(),
                clock: 0,
                stats: CacheStats::default(),
            }),
            cache_cap: limits::decode_cache_entries_max,
        })
    }

    /// Sets the decode-cache capacity (at least 1, at most the limit).
    pub fn with_cache_capacity(mut self, entries: usize) -> Codec {
        self.cache_cap = entries.clamp(1, limits::decode_cache_entries_max);
        self
    }

    pub fn k(&self) -> usize {
        self.k
    }

    pub fn m(&self) -> usize {
        self.m
    }

    pub fn matrix_kind(&self) -> MatrixKind {
        self.kind
    }

    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// The (k + m) x k generator matrix.
    pub fn generator(&self) -> &Matrix {
        &self.generator
    }

    /// Computes the m parity chunks of the k data chunks.
    pub fn encode(&self, data: &[&[u8]], parity: &mut [&mut [u8]]) -> Result<(), EcError> {
        check_count("data", self.k, data.len())?;
        check_count("parity", self.m, parity.len())?;
        let len = data[0].len();
        check_lengths(
            len,
            data.iter()
                .map(|s| s.len())
                .chain(parity.iter().map(|s| s.len())),
        )?;
        self.encode.apply(data, parity, false);
        Ok(())
    }

    /// Updates the parity after data chunk `index` changed from `old` to
    /// `new` (EC overwrites): `parity[p] ^= c[p][index] * (old ^ new)`.
    pub fn update(
        &self,
        index: usize,
        old: &[u8],
        new: &[u8],
        parity: &mut [&mut [u8]],
    ) -> Result<(), EcError> {
        if index >= self.k {
            return Err(EcError::DataIndex { index, k: self.k });
        }
        check_count("parity", self.m, parity.len())?;
        let len = old.len();
        check_lengths(
            len,
            std::iter::once(new.len()).chain(parity.iter().map(|s| s.len())),
        )?;
        self.update[index].apply(&[old, new], parity, true);
        Ok(())
    }

    /// Rebuilds every chunk listed in `erased` in place. `shards` holds all
    /// k + m chunks (the erased ones are overwritten, whatever they hold).
    pub fn reconstruct(&self, shards: &mut [&mut [u8]], erased: &[usize]) -> Result<(), EcError> {
        self.reconstruct_inner(shards, erased, false)
    }

    /// Like [`Codec::reconstruct`] but rebuilds only erased *data* chunks
    /// (a degraded read); erased parity chunks are left as they are.
    pub fn reconstruct_data(
        &self,
        shards: &mut [&mut [u8]],
        erased: &[usize],
    ) -> Result<(), EcError> {
        self.reconstruct_inner(shards, erased, true)
    }

    fn reconstruct_inner(
        &self,
        shards: &mut [&mut [u8]],
        erased: &[usize],
        data_only: bool,
    ) -> Result<(), EcError> {
        let n = self.k + self.m;
        check_count("stripe", n, shards.len())?;
        let len = shards[0].len();
        check_lengths(len, shards.iter().map(|s| s.len()))?;
        let plan = self.plan(erased, data_only)?;
        if plan.wanted.is_empty() {
            return Ok(());
        }
        let mut ins = PtrArray::<*const u8>::new();
        let mut outs = PtrArray::<*mut u8>::new();
        for &s in &plan.survivors {
            ins.push(shards[s].as_ptr());
        }
        for &w in &plan.wanted {
            outs.push(shards[w].as_mut_ptr());
        }
        // SAFETY: every pointer comes from a distinct element of `shards`
        // (survivors and wanted are disjoint index sets, checked by `plan`),
        // all `len` bytes long; the kernel was checked in `with_kernel`.
        unsafe {
            plan.tables
                .apply_raw(ins.as_slice(), outs.as_slice(), len, false);
        }
        Ok(())
    }

    /// The (cached) decode plan for an erasure pattern: survivors are the
    /// first k chunks not in `erased`; wanted are the erased chunks (only
    /// the data ones if `data_only`).
    pub fn plan(&self, erased: &[usize], data_only: bool) -> Result<Arc<DecodePlan>, EcError> {
        let n = self.k + self.m;
        let mut key = PlanKey {
            erased: Bits::default(),
            wanted: Bits::default(),
        };
        for &e in erased {
            if e >= n {
                return Err(EcError::ErasureIndex { index: e, n });
            }
            if key.erased.has(e) {
                return Err(EcError::DuplicateErasure { index: e });
            }
            key.erased.set(e);
            if !data_only || e < self.k {
                key.wanted.set(e);
            }
        }
        if erased.len() > self.m {
            let mut list = erased.to_vec();
            list.sort_unstable();
            return Err(EcError::TooManyErasures {
                erased: list,
                max: self.m,
            });
        }
        {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            cache.clock += 1;
            let now = cache.clock;
            if let Some((plan, used)) = cache.map.get_mut(&key) {
                *used = now;
                let plan = Arc::clone(plan);
                cache.stats.hits += 1;
                return Ok(plan);
            }
            cache.stats.misses += 1;
        }
        let plan = Arc::new(self.build_plan(&key)?);
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.map.len() >= self.cache_cap {
            if let Some(oldest) = cache
                .map
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| *k)
            {
                cache.map.remove(&oldest);
            }
        }
        let now = cache.clock;
        cache.map.insert(key, (Arc::clone(&plan), now));
        cache.stats.entries = cache.map.len();
        Ok(plan)
    }

    fn build_plan(&self, key: &PlanKey) -> Result<DecodePlan, EcError> {
        let n = self.k + self.m;
        let survivors: Vec<usize> = (0..n)
            .filter(|&i| !key.erased.has(i))
            .take(self.k)
            .collect();
        let wanted: Vec<usize> = (0..n).filter(|&i| key.wanted.has(i)).collect();
        let erased_list = || (0..n).filter(|&i| key.erased.has(i)).collect::<Vec<_>>();
        // `plan` refused more than m erasures, so k survivors exist.
        assert_eq!(survivors.len(), self.k);
        let inv = self
            .generator
            .select_rows(&survivors)
            .invert()
            .ok_or_else(|| EcError::Singular {
                erased: erased_list(),
            })?;
        let mut dm = Matrix::zero(wanted.len(), self.k);
        for (row, &w) in wanted.iter().enumerate() {
            let coefs = if w < self.k {
                inv.row(w).to_vec()
            } else {
                let g = self.generator.select_rows(&[w]);
                g.mul(&inv).expect("1 x k times k x k").row(0).to_vec()
            };
            for (c, v) in coefs.into_iter().enumerate() {
                dm.set(row, c, v);
            }
        }
        Ok(DecodePlan {
            survivors,
            wanted,
            tables: Tables::new(self.kernel, &dm),
        })
    }

    /// Decode-cache counters.
    pub fn cache_stats(&self) -> CacheStats {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        CacheStats {
            entries: cache.map.len(),
            ..cache.stats
        }
    }

    /// Drops every cached decode plan (for benchmarks of the uncached path).
    pub fn clear_cache(&self) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.map.clear();
        cache.stats.entries = 0;
    }
}

fn check_count(what: &'static str, expected: usize, got: usize) -> Result<(), EcError> {
    if expected != got {
        return Err(EcError::ChunkCount {
            what,
            expected,
            got,
        });
    }
    Ok(())
}

fn check_lengths(expected: usize, lens: impl Iterator<Item = usize>) -> Result<(), EcError> {
    for (index, got) in lens.enumerate() {
        if got != expected {
            return Err(EcError::ChunkLength {
                index,
                expected,
                got,
            });
        }
    }
    Ok(())
}
