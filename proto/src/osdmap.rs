//! The OSDMap: pools, OSDs, the CRUSH map and temporary overrides at one
//! epoch, its incremental form, and the PG math on top of it (PG → up set,
//! acting set, primary and owning shard), identical to Ceph's.
//!
//! Invariants:
//! - `apply(E, diff(E, E+1)) == E+1` for any two maps of one cluster (a
//!   property test checks it), so subscribers can live on incrementals;
//! - an incremental applies only to the epoch right before it and to the
//!   same fsid; anything else is a typed error;
//! - decoding checks everything (rkyv validation, then the CRUSH model's
//!   builders, then the limits here): untrusted bytes never panic.

use std::collections::BTreeMap;

use crush_simd::hash::hash32_2;
use crush_simd::mapper::{Mapper, Workspace};
use crush_simd::wire::CrushWire;
use crush_simd::{CrushMap, ITEM_NONE};
use rkyv::{Archive, Deserialize, Serialize};

use crate::limits;
use crate::pg::{pg_num_mask, stable_mod, str_hash_rjenkins};

/// A map version. Epoch 0 is "no map yet".
pub type Epoch = u32;
pub type PoolId = i64;
pub type OsdId = i32;

/// Ceph's `FLAG_HASHPSPOOL`: mix the pool id into the placement seed so
/// pools with the same pg_num do not land on the same OSDs.
pub const POOL_FLAG_HASHPSPOOL: u64 = 1;
/// A full pool refuses writes (quota reached).
pub const POOL_FLAG_FULL: u64 = 1 << 1;

/// "In" as an OSD weight (16.16): fully in.
pub const OSD_IN: u32 = 0x10000;
/// "Out" as an OSD weight.
pub const OSD_OUT: u32 = 0;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MapError {
    #[error("incremental for epoch {got} cannot apply to a map at epoch {have}")]
    WrongEpoch { have: Epoch, got: Epoch },
    #[error("incremental belongs to another cluster (fsid mismatch)")]
    WrongFsid,
    #[error("map bytes failed validation: {0}")]
    Invalid(String),
    #[error("bad CRUSH map in OSDMap: {0}")]
    Crush(#[from] crush_simd::ModelError),
    #[error("{what} {value} exceeds the limit {max}")]
    Limit { what: &'static str, value: u64, max: u64 },
    #[error("pool {0} does not exist")]
    NoSuchPool(PoolId),
}

/// A placement group: pool and seed (Ceph's `pg_t`, printed `pool.seedhex`).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PgId {
    pub pool: PoolId,
    pub seed: u32,
}

impl std::fmt::Display for PgId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{:x}", self.pool, self.seed)
    }
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum PoolKind {
    Replicated,
    /// `k` data + `m` coding chunks; `technique` names the matrix
    /// (`reed_sol_van`, `cauchy`).
    Erasure { k: u32, m: u32, technique: String },
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    pub id: PoolId,
    pub name: String,
    pub kind: PoolKind,
    /// Replicas (or k + m chunks) per PG.
    pub size: u32,
    /// Fewest members that may serve I/O.
    pub min_size: u32,
    pub pg_num: u32,
    pub pgp_num: u32,
    pub crush_rule: i32,
    pub flags: u64,
    /// 0 = no quota.
    pub quota_max_bytes: u64,
    pub quota_max_objects: u64,
}

impl Pool {
    pub fn is_erasure(&self) -> bool {
        matches!(self.kind, PoolKind::Erasure { .. })
    }

    /// Replicated pools shift members up when one is missing; EC pools keep
    /// positions (a chunk's index is its position) and leave a hole.
    pub fn can_shift_osds(&self) -> bool {
        !self.is_erasure()
    }

    /// The PG an object maps to (Ceph's `object_locator_to_pg` + `raw_pg_to_pg`).
    /// `key` overrides the name for placement; a non-empty namespace is
    /// joined to it with a 0x1f byte, as Ceph does.
    pub fn object_pg(&self, name: &str, key: Option<&str>, namespace: &str) -> PgId {
        let placed = key.unwrap_or(name);
        let ps = if namespace.is_empty() {
            str_hash_rjenkins(placed.as_bytes())
        } else {
            let mut joined = Vec::with_capacity(namespace.len() + 1 + placed.len());
            joined.extend_from_slice(namespace.as_bytes());
            joined.push(0x1f);
            joined.extend_from_slice(placed.as_bytes());
            str_hash_rjenkins(&joined)
        };
        PgId { pool: self.id, seed: stable_mod(ps, self.pg_num, pg_num_mask(self.pg_num)) }
    }

    /// The CRUSH input for a PG (Ceph's `raw_pg_to_pps`).
    pub fn placement_seed(&self, pg: PgId) -> u32 {
        let folded = stable_mod(pg.seed, self.pgp_num, pg_num_mask(self.pgp_num));
        if self.flags & POOL_FLAG_HASHPSPOOL != 0 {
            hash32_2(folded, self.id as u32)
        } else {
            folded.wrapping_add(self.id as u32)
        }
    }
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct OsdInfo {
    pub id: OsdId,
    pub uuid: [u8; 16],
    pub exists: bool,
    pub up: bool,
    /// In/out reweight, 16.16: `OSD_IN`, `OSD_OUT` or in between.
    pub weight: u32,
    /// One `ip:port` per shard; `addrs.len()` is the shard count.
    pub addrs: Vec<String>,
    pub up_from: Epoch,
    pub down_at: Epoch,
    /// The epoch of the map that marked this OSD lost (`osd lost`; 0:
    /// never). Peering no longer waits for it in a past interval that
    /// ended before this epoch: the operator declared its data gone.
    pub lost_at: Epoch,
}

impl OsdInfo {
    pub fn shard_count(&self) -> u32 {
        self.addrs.len() as u32
    }
}

/// Where a PG lives at one epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgPlacement {
    pub up: Vec<OsdId>,
    pub up_primary: Option<OsdId>,
    pub acting: Vec<OsdId>,
    pub acting_primary: Option<OsdId>,
}

/// The full OSDMap at one epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct OsdMap {
    pub fsid: [u8; 16],
    pub epoch: Epoch,
    pub created_ms: u64,
    pub modified_ms: u64,
    pub flags: u64,
    pub pools: BTreeMap<PoolId, Pool>,
    pub pool_max: PoolId,
    /// Index = OSD id; `len()` is Ceph's max_osd.
    pub osds: Vec<OsdInfo>,
    pub crush: CrushMap,
    pub pg_temp: BTreeMap<PgId, Vec<OsdId>>,
    pub primary_temp: BTreeMap<PgId, OsdId>,
}

/// The archived form of [`OsdMap`].
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct OsdMapWire {
    pub fsid: [u8; 16],
    pub epoch: Epoch,
    pub created_ms: u64,
    pub modified_ms: u64,
    pub flags: u64,
    pub pools: Vec<Pool>,
    pub pool_max: PoolId,
    pub osds: Vec<OsdInfo>,
    pub crush: CrushWire,
    pub pg_temp: Vec<(PgId, Vec<OsdId>)>,
    pub primary_temp: Vec<(PgId, OsdId)>,
}

/// The change from epoch `epoch - 1` to `epoch`.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct OsdMapIncremental {
    pub fsid: [u8; 16],
    pub epoch: Epoch,
    pub modified_ms: u64,
    pub new_flags: Option<u64>,
    pub new_pool_max: Option<PoolId>,
    /// Pools created or changed (whole pool).
    pub new_pools: Vec<Pool>,
    pub removed_pools: Vec<PoolId>,
    pub new_max_osd: Option<u32>,
    /// OSDs created or changed (whole record).
    pub new_osds: Vec<OsdInfo>,
    pub new_crush: Option<CrushWire>,
    /// An empty list removes the override.
    pub new_pg_temp: Vec<(PgId, Vec<OsdId>)>,
    /// -1 removes the override.
    pub new_primary_temp: Vec<(PgId, OsdId)>,
}

impl OsdMap {
    /// An empty map for a new cluster (epoch 1).
    pub fn new(fsid: [u8; 16], crush: CrushMap, now_ms: u64) -> OsdMap {
        OsdMap {
            fsid,
            epoch: 1,
            created_ms: now_ms,
            modified_ms: now_ms,
            flags: 0,
            pools: BTreeMap::new(),
            pool_max: 0,
            osds: Vec::new(),
            crush,
            pg_temp: BTreeMap::new(),
            primary_temp: BTreeMap::new(),
        }
    }

    pub fn osd(&self, id: OsdId) -> Option<&OsdInfo> {
        usize::try_from(id).ok().and_then(|i| self.osds.get(i)).filter(|o| o.exists)
    }

    pub fn is_up(&self, id: OsdId) -> bool {
        self.osd(id).is_some_and(|o| o.up)
    }

    pub fn pool_by_name(&self, name: &str) -> Option<&Pool> {
        self.pools.values().find(|p| p.name == name)
    }

    /// CRUSH's per-device weight vector: the in/out reweight of existing
    /// OSDs, 0 for the rest (Ceph's `osd_weight`).
    pub fn crush_weights(&self) -> Vec<u32> {
        let n = (self.crush.max_devices.max(0) as usize).max(self.osds.len());
        (0..n)
            .map(|i| self.osds.get(i).filter(|o| o.exists).map_or(0, |o| o.weight))
            .collect()
    }

    /// PG → raw CRUSH output, nonexistent OSDs removed (or NONE for EC).
    fn raw_osds(&self, pool: &Pool, pg: PgId, weights: &[u32], ws: &mut Workspace) -> Vec<OsdId> {
        let mut raw = Vec::with_capacity(pool.size as usize);
        let pps = pool.placement_seed(pg) as i32;
        Mapper::new(&self.crush).do_rule(pool.crush_rule, pps, pool.size as usize, weights, ws, &mut raw);
        let exists = |o: OsdId| o != ITEM_NONE && self.osd(o).is_some();
        if pool.can_shift_osds() {
            raw.retain(|&o| exists(o));
        } else {
            for o in raw.iter_mut() {
                if !exists(*o) {
                    *o = ITEM_NONE;
                }
            }
        }
        raw
    }

    /// Where `pg` lives: up set (raw minus down OSDs), acting set (pg_temp
    /// wins) and their primaries (primary_temp wins).
    pub fn pg_placement(&self, pg: PgId) -> Result<PgPlacement, MapError> {
        let pool = self.pools.get(&pg.pool).ok_or(MapError::NoSuchPool(pg.pool))?;
        let weights = self.crush_weights();
        let mut ws = Workspace::new();
        Ok(self.pg_placement_with(pool, pg, &weights, &mut ws))
    }

    /// [`Self::pg_placement`] with caller-owned scratch, for mapping many PGs.
    pub fn pg_placement_with(&self, pool: &Pool, pg: PgId, weights: &[u32], ws: &mut Workspace) -> PgPlacement {
        let raw = self.raw_osds(pool, pg, weights, ws);
        let mut up = raw;
        if pool.can_shift_osds() {
            up.retain(|&o| self.is_up(o));
        } else {
            for o in up.iter_mut() {
                if *o != ITEM_NONE && !self.is_up(*o) {
                    *o = ITEM_NONE;
                }
            }
        }
        let first = |set: &[OsdId]| set.iter().copied().find(|&o| o != ITEM_NONE);
        let up_primary = first(&up);
        let acting = match self.pg_temp.get(&pg) {
            Some(temp) if !temp.is_empty() => {
                let mut a = temp.clone();
                if pool.can_shift_osds() {
                    a.retain(|&o| self.is_up(o));
                } else {
                    for o in a.iter_mut() {
                        if !self.is_up(*o) {
                            *o = ITEM_NONE;
                        }
                    }
                }
                a
            }
            _ => up.clone(),
        };
        let acting_primary = match self.primary_temp.get(&pg) {
            Some(&p) if acting.contains(&p) => Some(p),
            _ => first(&acting),
        };
        PgPlacement { up, up_primary, acting, acting_primary }
    }

    /// The shard of `osd` that owns `pg`: every op for the PG on that OSD goes
    /// to this one core. Spread by a hash so pools do not all start at shard 0.
    pub fn pg_shard(&self, pg: PgId, osd: OsdId) -> Option<u32> {
        let shards = self.osd(osd)?.shard_count();
        (shards > 0).then(|| hash32_2(pg.seed, pg.pool as u32) % shards)
    }

    pub fn to_wire(&self) -> OsdMapWire {
        OsdMapWire {
            fsid: self.fsid,
            epoch: self.epoch,
            created_ms: self.created_ms,
            modified_ms: self.modified_ms,
            flags: self.flags,
            pools: self.pools.values().cloned().collect(),
            pool_max: self.pool_max,
            osds: self.osds.clone(),
            crush: CrushWire::from_map(&self.crush),
            pg_temp: self.pg_temp.iter().map(|(k, v)| (*k, v.clone())).collect(),
            primary_temp: self.primary_temp.iter().map(|(k, v)| (*k, *v)).collect(),
        }
    }

    pub fn from_wire(w: &OsdMapWire) -> Result<OsdMap, MapError> {
        check_limit("pools", w.pools.len(), limits::pools_max)?;
        check_limit("osds", w.osds.len(), limits::osds_max)?;
        check_limit("pg_temp entries", w.pg_temp.len(), limits::pg_temp_entries_max)?;
        for (i, o) in w.osds.iter().enumerate() {
            if o.id as usize != i {
                return Err(MapError::Invalid(format!("osd record {i} carries id {}", o.id)));
            }
            check_limit("shards per OSD", o.addrs.len(), limits::shards_per_osd_max)?;
        }
        for p in &w.pools {
            validate_pool(p)?;
        }
        Ok(OsdMap {
            fsid: w.fsid,
            epoch: w.epoch,
            created_ms: w.created_ms,
            modified_ms: w.modified_ms,
            flags: w.flags,
            pools: w.pools.iter().map(|p| (p.id, p.clone())).collect(),
            pool_max: w.pool_max,
            osds: w.osds.clone(),
            crush: w.crush.to_map()?,
            pg_temp: w.pg_temp.iter().cloned().collect(),
            primary_temp: w.primary_temp.iter().copied().collect(),
        })
    }

    /// rkyv bytes of the whole map.
    pub fn encode(&self) -> Vec<u8> {
        rkyv::to_bytes::<rkyv::rancor::Error>(&self.to_wire()).map(|b| b.to_vec()).unwrap_or_default()
    }

    /// Validates and decodes rkyv bytes (any alignment: copied to aligned).
    pub fn decode(bytes: &[u8]) -> Result<OsdMap, MapError> {
        let mut aligned = rkyv::util::AlignedVec::<16>::new();
        aligned.extend_from_slice(bytes);
        let wire = rkyv::from_bytes::<OsdMapWire, rkyv::rancor::Error>(&aligned)
            .map_err(|e| MapError::Invalid(e.to_string()))?;
        OsdMap::from_wire(&wire)
    }

    /// The incremental that turns `self` into `next` (`next.epoch` must be
    /// `self.epoch + 1`; the caller, the monitor, guarantees it).
    pub fn diff(&self, next: &OsdMap) -> OsdMapIncremental {
        let mut inc = OsdMapIncremental {
            fsid: next.fsid,
            epoch: next.epoch,
            modified_ms: next.modified_ms,
            ..Default::default()
        };
        if next.flags != self.flags {
            inc.new_flags = Some(next.flags);
        }
        if next.pool_max != self.pool_max {
            inc.new_pool_max = Some(next.pool_max);
        }
        for (id, p) in &next.pools {
            if self.pools.get(id) != Some(p) {
                inc.new_pools.push(p.clone());
            }
        }
        inc.removed_pools = self.pools.keys().filter(|id| !next.pools.contains_key(id)).copied().collect();
        if next.osds.len() != self.osds.len() {
            inc.new_max_osd = Some(next.osds.len() as u32);
        }
        for o in &next.osds {
            if self.osds.get(o.id as usize) != Some(o) {
                inc.new_osds.push(o.clone());
            }
        }
        if next.crush != self.crush {
            inc.new_crush = Some(CrushWire::from_map(&next.crush));
        }
        for (pg, v) in &next.pg_temp {
            if self.pg_temp.get(pg) != Some(v) {
                inc.new_pg_temp.push((*pg, v.clone()));
            }
        }
        for pg in self.pg_temp.keys().filter(|pg| !next.pg_temp.contains_key(pg)) {
            inc.new_pg_temp.push((*pg, Vec::new()));
        }
        for (pg, p) in &next.primary_temp {
            if self.primary_temp.get(pg) != Some(p) {
                inc.new_primary_temp.push((*pg, *p));
            }
        }
        for pg in self.primary_temp.keys().filter(|pg| !next.primary_temp.contains_key(pg)) {
            inc.new_primary_temp.push((*pg, -1));
        }
        inc
    }

    /// Applies the incremental for the next epoch.
    pub fn apply(&mut self, inc: &OsdMapIncremental) -> Result<(), MapError> {
        if inc.fsid != self.fsid {
            return Err(MapError::WrongFsid);
        }
        if inc.epoch != self.epoch.wrapping_add(1) {
            return Err(MapError::WrongEpoch { have: self.epoch, got: inc.epoch });
        }
        for p in &inc.new_pools {
            validate_pool(p)?;
        }
        if let Some(max) = inc.new_max_osd {
            check_limit("osds", max as usize, limits::osds_max)?;
        }
        for o in &inc.new_osds {
            check_limit("shards per OSD", o.addrs.len(), limits::shards_per_osd_max)?;
            let max = inc.new_max_osd.map_or(self.osds.len(), |m| m as usize);
            if o.id < 0 || o.id as usize >= max {
                return Err(MapError::Invalid(format!("osd {} beyond max_osd {max}", o.id)));
            }
        }
        // Decode the new CRUSH map before changing anything: all or nothing.
        let crush = inc.new_crush.as_ref().map(CrushWire::to_map).transpose()?;
        let pools_after = self.pools.len() + inc.new_pools.len();
        check_limit("pools", pools_after, limits::pools_max + inc.removed_pools.len())?;

        self.epoch = inc.epoch;
        self.modified_ms = inc.modified_ms;
        if let Some(f) = inc.new_flags {
            self.flags = f;
        }
        if let Some(m) = inc.new_pool_max {
            self.pool_max = m;
        }
        for id in &inc.removed_pools {
            self.pools.remove(id);
        }
        for p in &inc.new_pools {
            self.pools.insert(p.id, p.clone());
        }
        if let Some(max) = inc.new_max_osd {
            let max = max as usize;
            self.osds.truncate(max);
            while self.osds.len() < max {
                let id = self.osds.len() as OsdId;
                self.osds.push(OsdInfo {
                    id,
                    uuid: [0; 16],
                    exists: false,
                    up: false,
                    weight: OSD_OUT,
                    addrs: Vec::new(),
                    up_from: 0,
                    down_at: 0,
                    lost_at: 0,
                });
            }
        }
        for o in &inc.new_osds {
            self.osds[o.id as usize] = o.clone();
        }
        if let Some(c) = crush {
            self.crush = c;
        }
        for (pg, v) in &inc.new_pg_temp {
            if v.is_empty() {
                self.pg_temp.remove(pg);
            } else {
                self.pg_temp.insert(*pg, v.clone());
            }
        }
        for (pg, p) in &inc.new_primary_temp {
            if *p < 0 {
                self.primary_temp.remove(pg);
            } else {
                self.primary_temp.insert(*pg, *p);
            }
        }
        Ok(())
    }
}

impl OsdMapIncremental {
    pub fn encode(&self) -> Vec<u8> {
        rkyv::to_bytes::<rkyv::rancor::Error>(self).map(|b| b.to_vec()).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Result<OsdMapIncremental, MapError> {
        let mut aligned = rkyv::util::AlignedVec::<16>::new();
        aligned.extend_from_slice(bytes);
        rkyv::from_bytes::<OsdMapIncremental, rkyv::rancor::Error>(&aligned).map_err(|e| MapError::Invalid(e.to_string()))
    }
}

fn check_limit(what: &'static str, value: usize, max: usize) -> Result<(), MapError> {
    if value > max {
        return Err(MapError::Limit { what, value: value as u64, max: max as u64 });
    }
    Ok(())
}

fn validate_pool(p: &Pool) -> Result<(), MapError> {
    check_limit("pg_num", p.pg_num as usize, limits::pg_num_max)?;
    check_limit("pgp_num", p.pgp_num as usize, p.pg_num as usize)?;
    check_limit("pool size", p.size as usize, limits::pool_size_max)?;
    if p.pg_num == 0 || p.pgp_num == 0 || p.size == 0 || p.min_size == 0 || p.min_size > p.size {
        return Err(MapError::Invalid(format!("pool {} has pg_num/pgp_num/size/min_size out of range", p.id)));
    }
    if let PoolKind::Erasure { k, m, .. } = p.kind {
        if k == 0 || k + m != p.size {
            return Err(MapError::Invalid(format!("EC pool {}: k + m must equal size", p.id)));
        }
    }
    Ok(())
}
