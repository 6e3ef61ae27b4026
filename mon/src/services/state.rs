//! The replicated state of the monitors and the log entries that change it.
//!
//! Every monitor applies the same committed [`Batch`]es in the same order,
//! so every monitor holds the same [`ClusterState`]. A batch is one Paxos
//! log entry: an atomic transaction over all maps (OSDMap incremental,
//! MonMap, auth database).
//!
//! Invariants: applying is deterministic and all-or-nothing (a batch that
//! fails validation changes nothing, on every monitor alike); the OSDMap's
//! epoch grows by exactly one per OSDMap transaction; the incremental
//! history is bounded (`limits::osdmap_history_max`), older subscribers get
//! a full map.

use std::collections::{BTreeMap, VecDeque};

use rkyv::{Archive, Deserialize, Serialize};
use sepia_proto::monmap::MonMap;
use sepia_proto::msg::OsdMapDelivery;
use sepia_proto::osdmap::{Epoch, OsdMap, OsdMapIncremental, OsdMapWire};

use super::limits;

/// One entity of the auth database: its secret (Ceph's base64 key form)
/// and its capability strings per service (`mon` → `allow *`).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct AuthEntry {
    pub key: String,
    pub caps: BTreeMap<String, String>,
}

/// The first entry of a cluster's log.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Bootstrap {
    pub monmap: MonMap,
    pub osdmap: OsdMapWire,
    pub auth: Vec<(String, AuthEntry)>,
    /// Per service (`mon`, `osd`): key generation and secret sealing its
    /// tickets.
    pub service_keys: Vec<(String, u64, [u8; 32])>,
}

/// One change. Several make a [`Batch`].
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub enum Tx {
    Bootstrap(Bootstrap),
    OsdMap(OsdMapIncremental),
    MonMap(MonMap),
    AuthSet { entity: String, entry: AuthEntry },
    AuthRm { entity: String },
}

/// One Paxos log entry. `(proposer, seq)` lets the proposing leader match
/// the commit to the requests waiting on it.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Batch {
    pub proposer: u64,
    pub seq: u64,
    pub txs: Vec<Tx>,
}

impl Batch {
    pub fn encode(&self) -> Vec<u8> {
        rkyv::to_bytes::<rkyv::rancor::Error>(self).map(|b| b.to_vec()).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Result<Batch, StateError> {
        let mut aligned = rkyv::util::AlignedVec::<16>::new();
        aligned.extend_from_slice(bytes);
        rkyv::from_bytes::<Batch, rkyv::rancor::Error>(&aligned).map_err(|e| StateError::Invalid(e.to_string()))
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum StateError {
    #[error("log entry failed validation: {0}")]
    Invalid(String),
    #[error("the cluster is not bootstrapped yet")]
    NotBootstrapped,
    #[error("the cluster is already bootstrapped")]
    AlreadyBootstrapped,
    #[error("osdmap: {0}")]
    Map(#[from] sepia_proto::osdmap::MapError),
    #[error("monmap: {0}")]
    MonMap(#[from] sepia_proto::monmap::MonMapError),
}

/// Everything the monitors agree on.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterState {
    pub bootstrapped: bool,
    pub monmap: MonMap,
    pub osdmap: OsdMap,
    /// The incrementals that led to `osdmap`, oldest first, bounded.
    pub history: VecDeque<OsdMapIncremental>,
    pub auth: BTreeMap<String, AuthEntry>,
    /// Service → (generation, secret) for sealing tickets.
    pub service_keys: BTreeMap<String, (u64, [u8; 32])>,
    /// Each monitor's Paxos node id, by name. Ids are never reused: a
    /// monitor removed and added again (its store wiped) is a new member,
    /// so nothing it promised under its old id can be mistaken for new.
    pub mon_ids: BTreeMap<String, u64>,
    /// The next id a new monitor gets.
    pub next_mon_id: u64,
    /// The Paxos configuration the members run: 1 at bootstrap, one more
    /// with each MonMap change (each one ends a configuration).
    pub mon_config: u32,
    /// Log entries applied (the Paxos index the state reflects).
    pub applied: u64,
}

/// The archived form of a [`ClusterState`] (the mon store's snapshot).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct StateWire {
    pub bootstrapped: bool,
    pub monmap: MonMap,
    pub osdmap: OsdMapWire,
    pub history: Vec<OsdMapIncremental>,
    pub auth: Vec<(String, AuthEntry)>,
    pub service_keys: Vec<(String, u64, [u8; 32])>,
    pub mon_ids: Vec<(String, u64)>,
    pub next_mon_id: u64,
    pub mon_config: u32,
    pub applied: u64,
}

impl Default for ClusterState {
    fn default() -> Self {
        ClusterState::new()
    }
}

impl ClusterState {
    /// A monitor that has applied nothing yet.
    pub fn new() -> ClusterState {
        ClusterState {
            bootstrapped: false,
            monmap: MonMap { fsid: [0; 16], epoch: 0, created_ms: 0, modified_ms: 0, mons: Vec::new() },
            osdmap: OsdMap::new([0; 16], crush_simd::CrushMap::new(), 0),
            history: VecDeque::new(),
            auth: BTreeMap::new(),
            service_keys: BTreeMap::new(),
            mon_ids: BTreeMap::new(),
            next_mon_id: 1,
            mon_config: 0,
            applied: 0,
        }
    }

    pub fn fsid(&self) -> [u8; 16] {
        self.osdmap.fsid
    }

    /// Applies one committed log entry. An entry that fails validation is
    /// skipped identically on every monitor (the error is for the log).
    pub fn apply_entry(&mut self, bytes: &[u8]) -> Result<Batch, StateError> {
        self.applied += 1;
        let batch = Batch::decode(bytes)?;
        let mut next = self.clone();
        for tx in &batch.txs {
            next.apply_tx(tx)?;
        }
        *self = next;
        Ok(batch)
    }

    fn apply_tx(&mut self, tx: &Tx) -> Result<(), StateError> {
        match tx {
            Tx::Bootstrap(b) => {
                if self.bootstrapped {
                    return Err(StateError::AlreadyBootstrapped);
                }
                b.monmap.validate()?;
                self.monmap = b.monmap.clone();
                self.osdmap = OsdMap::from_wire(&b.osdmap)?;
                self.auth = b.auth.iter().cloned().collect();
                self.service_keys = b.service_keys.iter().map(|(s, g, k)| (s.clone(), (*g, *k))).collect();
                // The initial members are ids 1..=n in rank order.
                self.mon_ids = b.monmap.mons.iter().map(|m| (m.name.clone(), u64::from(m.rank) + 1)).collect();
                self.next_mon_id = b.monmap.mons.len() as u64 + 1;
                self.mon_config = 1;
                self.bootstrapped = true;
            }
            _ if !self.bootstrapped => return Err(StateError::NotBootstrapped),
            Tx::OsdMap(inc) => {
                self.osdmap.apply(inc)?;
                self.history.push_back(inc.clone());
                while self.history.len() > limits::osdmap_history_max {
                    self.history.pop_front();
                }
            }
            Tx::MonMap(m) => {
                m.validate()?;
                if m.epoch != self.monmap.epoch + 1 || m.fsid != self.monmap.fsid {
                    return Err(StateError::Invalid(format!("monmap epoch {} after {}", m.epoch, self.monmap.epoch)));
                }
                let ids = self.mon_ids_for(m);
                self.next_mon_id = ids.iter().map(|(id, _)| id + 1).max().unwrap_or(1).max(self.next_mon_id);
                self.mon_ids = ids.into_iter().map(|(id, m)| (m.name, id)).collect();
                self.mon_config += 1;
                self.monmap = m.clone();
            }
            Tx::AuthSet { entity, entry } => {
                if self.auth.len() >= limits::auth_entities_max && !self.auth.contains_key(entity) {
                    return Err(StateError::Invalid("auth database full".into()));
                }
                self.auth.insert(entity.clone(), entry.clone());
            }
            Tx::AuthRm { entity } => {
                self.auth.remove(entity);
            }
        }
        Ok(())
    }

    /// The Paxos node ids the members of `monmap` have (or, for names new
    /// to us, will get when it commits), with each member, in rank order.
    pub fn mon_ids_for(&self, monmap: &MonMap) -> Vec<(u64, sepia_proto::monmap::MonInfo)> {
        let mut next = self.next_mon_id;
        monmap
            .mons
            .iter()
            .map(|m| {
                let id = self.mon_ids.get(&m.name).copied().unwrap_or_else(|| {
                    next += 1;
                    next - 1
                });
                (id, m.clone())
            })
            .collect()
    }

    /// The name of the monitor with Paxos node id `id`.
    pub fn mon_name(&self, id: u64) -> Option<&str> {
        self.mon_ids.iter().find(|(_, i)| **i == id).map(|(n, _)| n.as_str())
    }

    /// What a subscriber at `have` (0: nothing) needs to reach the newest
    /// epoch: incrementals when the history reaches back far enough, else
    /// the full map.
    pub fn osdmap_delivery(&self, have: Epoch) -> OsdMapDelivery {
        let newest = self.osdmap.epoch;
        let oldest_inc = self.history.front().map(|i| i.epoch);
        let incs_cover = have > 0 && oldest_inc.is_some_and(|first| first <= have + 1);
        if have >= newest {
            OsdMapDelivery { full: None, incrementals: Vec::new(), newest }
        } else if incs_cover {
            let incrementals = self.history.iter().filter(|i| i.epoch > have).cloned().collect();
            OsdMapDelivery { full: None, incrementals, newest }
        } else {
            OsdMapDelivery { full: Some(self.osdmap.to_wire()), incrementals: Vec::new(), newest }
        }
    }

    pub fn to_wire(&self) -> StateWire {
        StateWire {
            bootstrapped: self.bootstrapped,
            monmap: self.monmap.clone(),
            osdmap: self.osdmap.to_wire(),
            history: self.history.iter().cloned().collect(),
            auth: self.auth.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            service_keys: self.service_keys.iter().map(|(s, (g, k))| (s.clone(), *g, *k)).collect(),
            mon_ids: self.mon_ids.iter().map(|(n, i)| (n.clone(), *i)).collect(),
            next_mon_id: self.next_mon_id,
            mon_config: self.mon_config,
            applied: self.applied,
        }
    }

    /// The snapshot bytes the mon store keeps (and sends to a wiped peer).
    pub fn snapshot(&self) -> Vec<u8> {
        rkyv::to_bytes::<rkyv::rancor::Error>(&self.to_wire()).map(|b| b.to_vec()).unwrap_or_default()
    }

    pub fn restore(bytes: &[u8]) -> Result<ClusterState, StateError> {
        let mut aligned = rkyv::util::AlignedVec::<16>::new();
        aligned.extend_from_slice(bytes);
        let w = rkyv::from_bytes::<StateWire, rkyv::rancor::Error>(&aligned).map_err(|e| StateError::Invalid(e.to_string()))?;
        if w.history.len() > limits::osdmap_history_max || w.auth.len() > limits::auth_entities_max || w.mon_ids.len() > sepia_proto::limits::monitors_max {
            return Err(StateError::Invalid("snapshot exceeds limits".into()));
        }
        Ok(ClusterState {
            bootstrapped: w.bootstrapped,
            monmap: w.monmap,
            osdmap: OsdMap::from_wire(&w.osdmap)?,
            history: w.history.into(),
            auth: w.auth.into_iter().collect(),
            service_keys: w.service_keys.into_iter().map(|(s, g, k)| (s, (g, k))).collect(),
            mon_ids: w.mon_ids.into_iter().collect(),
            next_mon_id: w.next_mon_id,
            mon_config: w.mon_config,
            applied: w.applied,
        })
    }
}

/// True when an incremental changes nothing but the epoch and time.
pub fn inc_is_empty(inc: &OsdMapIncremental) -> bool {
    inc.new_flags.is_none()
        && inc.new_pool_max.is_none()
        && inc.new_pools.is_empty()
        && inc.removed_pools.is_empty()
        && inc.new_max_osd.is_none()
        && inc.new_osds.is_empty()
        && inc.new_crush.is_none()
        && inc.new_pg_temp.is_empty()
        && inc.new_primary_temp.is_empty()
}
