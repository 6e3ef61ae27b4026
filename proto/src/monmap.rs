//! The MonMap: which monitors form the quorum and where they listen.
//!
//! Invariants: ranks are `0..n` in order, names and addresses are unique
//! and bounded; `decode` checks all of it, so a MonMap from the wire is
//! well-formed before anyone dials an address from it.

use rkyv::{Archive, Deserialize, Serialize};

use crate::limits;
use crate::osdmap::Epoch;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MonMapError {
    #[error("monmap bytes failed validation: {0}")]
    Invalid(String),
    #[error("{0}")]
    Rule(String),
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct MonInfo {
    pub rank: u32,
    /// `a`, `b`, ... (the `mon.` prefix is implied).
    pub name: String,
    /// `ip:port`.
    pub addr: String,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct MonMap {
    pub fsid: [u8; 16],
    pub epoch: Epoch,
    pub created_ms: u64,
    pub modified_ms: u64,
    pub mons: Vec<MonInfo>,
}

impl MonMap {
    /// A first MonMap from `(name, addr)` pairs, ranked in the given order.
    pub fn new(fsid: [u8; 16], mons: &[(String, String)], now_ms: u64) -> Result<MonMap, MonMapError> {
        let map = MonMap {
            fsid,
            epoch: 1,
            created_ms: now_ms,
            modified_ms: now_ms,
            mons: mons
                .iter()
                .enumerate()
                .map(|(rank, (name, addr))| MonInfo { rank: rank as u32, name: name.clone(), addr: addr.clone() })
                .collect(),
        };
        map.validate()?;
        Ok(map)
    }

    /// Majority size: more than half of the members.
    pub fn quorum_size(&self) -> usize {
        self.mons.len() / 2 + 1
    }

    pub fn by_name(&self, name: &str) -> Option<&MonInfo> {
        self.mons.iter().find(|m| m.name == name)
    }

    /// The next epoch with `name` added (ranked last).
    pub fn with_added(&self, name: &str, addr: &str, now_ms: u64) -> Result<MonMap, MonMapError> {
        if self.by_name(name).is_some() {
            return Err(MonMapError::Rule(format!("mon.{name} already exists")));
        }
        let mut next = self.clone();
        next.epoch += 1;
        next.modified_ms = now_ms;
        next.mons.push(MonInfo { rank: self.mons.len() as u32, name: name.into(), addr: addr.into() });
        next.validate()?;
        Ok(next)
    }

    /// The next epoch without `name`; ranks close up.
    pub fn with_removed(&self, name: &str, now_ms: u64) -> Result<MonMap, MonMapError> {
        if self.by_name(name).is_none() {
            return Err(MonMapError::Rule(format!("mon.{name} does not exist")));
        }
        if self.mons.len() == 1 {
            return Err(MonMapError::Rule("cannot remove the last monitor".into()));
        }
        let mut next = self.clone();
        next.epoch += 1;
        next.modified_ms = now_ms;
        next.mons.retain(|m| m.name != name);
        for (rank, m) in next.mons.iter_mut().enumerate() {
            m.rank = rank as u32;
        }
        next.validate()?;
        Ok(next)
    }

    pub fn validate(&self) -> Result<(), MonMapError> {
        if self.mons.is_empty() || self.mons.len() > limits::monitors_max {
            return Err(MonMapError::Rule(format!("a monmap holds 1..={} monitors", limits::monitors_max)));
        }
        for (i, m) in self.mons.iter().enumerate() {
            if m.rank as usize != i {
                return Err(MonMapError::Rule(format!("mon.{} has rank {} at position {i}", m.name, m.rank)));
            }
            if m.name.is_empty() || m.name.len() > limits::name_bytes_max || m.addr.len() > limits::addr_bytes_max {
                return Err(MonMapError::Rule(format!("monitor {i}: name or address out of bounds")));
            }
            if self.mons[..i].iter().any(|o| o.name == m.name || o.addr == m.addr) {
                return Err(MonMapError::Rule(format!("mon.{} duplicates a name or address", m.name)));
            }
        }
        Ok(())
    }

    pub fn encode(&self) -> Vec<u8> {
        rkyv::to_bytes::<rkyv::rancor::Error>(self).map(|b| b.to_vec()).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Result<MonMap, MonMapError> {
        let mut aligned = rkyv::util::AlignedVec::<16>::new();
        aligned.extend_from_slice(bytes);
        let map = rkyv::from_bytes::<MonMap, rkyv::rancor::Error>(&aligned).map_err(|e| MonMapError::Invalid(e.to_string()))?;
        map.validate()?;
        Ok(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three() -> MonMap {
        let mons: Vec<(String, String)> =
            ["a", "b", "c"].iter().enumerate().map(|(i, n)| (n.to_string(), format!("127.0.0.1:{}", 3300 + i))).collect();
        MonMap::new([1; 16], &mons, 5).unwrap()
    }

    #[test]
    fn round_trip_and_edits() {
        let m = three();
        assert_eq!(m.quorum_size(), 2);
        assert_eq!(MonMap::decode(&m.encode()).unwrap(), m);
        let added = m.with_added("d", "127.0.0.1:3310", 6).unwrap();
        assert_eq!((added.epoch, added.mons.len(), added.quorum_size()), (2, 4, 3));
        let removed = added.with_removed("a", 7).unwrap();
        assert_eq!(removed.mons.iter().map(|m| (m.rank, m.name.as_str())).collect::<Vec<_>>(), vec![(0, "b"), (1, "c"), (2, "d")]);
        assert!(m.with_added("a", "127.0.0.1:1", 6).is_err());
        assert!(m.with_removed("zz", 6).is_err());
    }

    #[test]
    fn garbage_is_an_error() {
        let bytes = three().encode();
        for cut in 0..bytes.len() {
            let _ = MonMap::decode(&bytes[..cut]);
        }
        let mut flipped = bytes.clone();
        for i in 0..flipped.len() {
            flipped[i] ^= 0xff;
            let _ = MonMap::decode(&flipped);
            flipped[i] ^= 0xff;
        }
        assert!(MonMap::decode(&[]).is_err());
    }
}
