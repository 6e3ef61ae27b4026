//! Entity names: `client.admin`, `osd.3`, `mon.a`, `mgr.x`.
//!
//! Invariant: a parsed name has a known type and a non-empty id of printable
//! characters, at most `limits::entity_name_bytes_max` bytes in all.

use rkyv::{Archive, Deserialize, Serialize};

use super::limits;

/// Entity types, numbered as Ceph numbers them (which also orders keyrings).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EntityType {
    Mon = 1,
    Osd = 4,
    Client = 8,
    Mgr = 16,
}

impl EntityType {
    pub fn name(self) -> &'static str {
        match self {
            EntityType::Mon => "mon",
            EntityType::Osd => "osd",
            EntityType::Client => "client",
            EntityType::Mgr => "mgr",
        }
    }
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntityName {
    pub kind: EntityType,
    pub id: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EntityError {
    #[error("entity name '{0}' is not TYPE.ID with TYPE one of mon, osd, client, mgr")]
    Malformed(String),
    #[error("entity name of {0} bytes is too long")]
    TooLong(usize),
}

impl EntityName {
    pub fn parse(s: &str) -> Result<EntityName, EntityError> {
        if s.len() > limits::entity_name_bytes_max {
            return Err(EntityError::TooLong(s.len()));
        }
        let (t, id) = s.split_once('.').ok_or_else(|| EntityError::Malformed(s.into()))?;
        let kind = match t {
            "mon" => EntityType::Mon,
            "osd" => EntityType::Osd,
            "client" => EntityType::Client,
            "mgr" => EntityType::Mgr,
            _ => return Err(EntityError::Malformed(s.into())),
        };
        if id.is_empty() || id.chars().any(|c| c.is_control() || c.is_whitespace() || c == '[' || c == ']') {
            return Err(EntityError::Malformed(s.into()));
        }
        Ok(EntityName { kind, id: id.to_string() })
    }
}

impl std::fmt::Display for EntityName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.kind.name(), self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_print() {
        for s in ["client.admin", "osd.3", "mon.a", "mgr.x", "client.rbd-mirror.site1"] {
            assert_eq!(EntityName::parse(s).unwrap().to_string(), s);
        }
        for bad in ["", "client", "client.", "disk.1", "osd 3", ".x", "client.a b"] {
            assert!(EntityName::parse(bad).is_err(), "{bad}");
        }
        assert!(EntityName::parse(&format!("client.{}", "x".repeat(1000))).is_err());
        assert!(EntityName::parse("osd.3").unwrap() < EntityName::parse("client.admin").unwrap(), "Ceph's keyring order");
    }
}
