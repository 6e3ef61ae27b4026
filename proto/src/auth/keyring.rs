//! Ceph's INI keyring: `[client.admin]`, `\tkey = <base64>`,
//! `\tcaps mon = "allow *"`, comments (`#`, `;`) and blank lines.
//!
//! Invariant: parsing never panics and is bounded
//! (`limits::keyring_bytes_max`); errors name the line. Printing orders
//! entities as Ceph does (by type number, then id) and caps by service.

use std::collections::BTreeMap;

use super::entity::EntityName;
use super::key::Secret;
use super::limits;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyringEntry {
    pub key: Secret,
    /// Service (`mon`, `osd`, `mgr`) → capability string.
    pub caps: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keyring {
    pub entries: BTreeMap<EntityName, KeyringEntry>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyringError {
    #[error("keyring of {0} bytes is too large")]
    TooLarge(usize),
    #[error("line {line}: {what}")]
    Line { line: usize, what: String },
}

impl Keyring {
    pub fn parse(text: &str) -> Result<Keyring, KeyringError> {
        if text.len() > limits::keyring_bytes_max {
            return Err(KeyringError::TooLarge(text.len()));
        }
        let mut ring = Keyring::default();
        let mut current: Option<(EntityName, Option<Secret>, BTreeMap<String, String>)> = None;
        let finish = |ring: &mut Keyring, cur: Option<(EntityName, Option<Secret>, BTreeMap<String, String>)>, line: usize| -> Result<(), KeyringError> {
            if let Some((name, key, caps)) = cur {
                let key = key.ok_or_else(|| KeyringError::Line { line, what: format!("[{name}] has no key") })?;
                ring.entries.insert(name, KeyringEntry { key, caps });
            }
            Ok(())
        };
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let l = raw.trim();
            if l.is_empty() || l.starts_with('#') || l.starts_with(';') {
                continue;
            }
            if let Some(name) = l.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
                finish(&mut ring, current.take(), line)?;
                let name = EntityName::parse(name.trim()).map_err(|e| KeyringError::Line { line, what: e.to_string() })?;
                if ring.entries.len() >= limits::keyring_entries_max {
                    return Err(KeyringError::Line { line, what: "too many entities".into() });
                }
                current = Some((name, None, BTreeMap::new()));
                continue;
            }
            let (k, v) = l.split_once('=').ok_or_else(|| KeyringError::Line { line, what: "expected 'key = value'".into() })?;
            let (k, v) = (k.trim(), v.trim());
            let Some((_, key, caps)) = current.as_mut() else {
                return Err(KeyringError::Line { line, what: "setting outside an [entity] section".into() });
            };
            if k == "key" {
                *key = Some(Secret::from_keyring_string(v).map_err(|e| KeyringError::Line { line, what: e.to_string() })?);
            } else if let Some(service) = k.strip_prefix("caps ") {
                let v = v.strip_prefix('"').and_then(|x| x.strip_suffix('"')).unwrap_or(v);
                if v.len() > limits::caps_bytes_max {
                    return Err(KeyringError::Line { line, what: "caps too long".into() });
                }
                caps.insert(service.trim().to_string(), v.to_string());
            } else {
                return Err(KeyringError::Line { line, what: format!("unknown setting '{k}'") });
            }
        }
        finish(&mut ring, current, text.lines().count())?;
        Ok(ring)
    }

    pub fn print(&self) -> String {
        let mut out = String::new();
        for (name, e) in &self.entries {
            out.push_str(&format!("[{name}]\n\tkey = {}\n", e.key.to_keyring_string()));
            for (service, caps) in &e.caps {
                out.push_str(&format!("\tcaps {service} = \"{caps}\"\n"));
            }
        }
        out
    }

    pub fn get(&self, name: &EntityName) -> Option<&KeyringEntry> {
        self.entries.get(name)
    }
}
