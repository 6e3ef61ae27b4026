//! The config file (`ceph.conf`'s shape: `[global]` / `mon_host = a,b`) and
//! the monitor addresses a tool should try.

use std::collections::BTreeMap;

use crate::limits;

#[derive(Debug, Default, Clone)]
pub struct Config {
    /// section → key → value; keys are normalised (`mon host` = `mon_host`).
    pub sections: BTreeMap<String, BTreeMap<String, String>>,
}

impl Config {
    pub fn parse(text: &str) -> Result<Config, String> {
        if text.len() > limits::config_bytes_max {
            return Err("config file too large".into());
        }
        let mut cfg = Config::default();
        let mut section = "global".to_string();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.split(['#', ';']).next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.trim().to_string();
                continue;
            }
            let (k, v) = line.split_once('=').ok_or_else(|| format!("line {}: expected key = value", n + 1))?;
            let key = k.trim().replace([' ', '-'], "_");
            cfg.sections.entry(section.clone()).or_default().insert(key, v.trim().to_string());
        }
        Ok(cfg)
    }

    pub fn load(path: &str) -> Result<Config, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        Config::parse(&text).map_err(|e| format!("{path}: {e}"))
    }

    /// `section` first (`osd.3`), then its type's section (`osd`), then
    /// `global`, as Ceph looks options up.
    pub fn get(&self, section: &str, key: &str) -> Option<&str> {
        let key = key.replace([' ', '-'], "_");
        let kind = section.split_once('.').map(|(kind, _)| kind);
        [Some(section), kind, Some("global")]
            .into_iter()
            .flatten()
            .find_map(|name| self.sections.get(name).and_then(|s| s.get(&key)))
            .map(String::as_str)
    }

    /// Monitor addresses from `mon_host`.
    pub fn mon_addrs(&self) -> Vec<String> {
        self.get("global", "mon_host").map(split_addrs).unwrap_or_default()
    }
}

impl Config {
    /// The secret of `entity` from the keyring the config names (`keyring =
    /// PATH`); `None` when the config names no keyring.
    pub fn secret_for(&self, entity: &str) -> Result<Option<sepia_proto::auth::key::Secret>, String> {
        let Some(path) = self.get(entity, "keyring") else { return Ok(None) };
        let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        let ring = sepia_proto::auth::keyring::Keyring::parse(&text).map_err(|e| format!("{path}: {e}"))?;
        let name = sepia_proto::auth::entity::EntityName::parse(entity).map_err(|e| e.to_string())?;
        Ok(Some(ring.get(&name).ok_or_else(|| format!("{path} has no key for {entity}"))?.key.clone()))
    }
}

/// `a:1,b:2` or `a:1 b:2` → addresses.
pub fn split_addrs(s: &str) -> Vec<String> {
    s.split([',', ' ']).map(str::trim).filter(|a| !a.is_empty()).map(String::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ceph_shaped_files() {
        let c = Config::parse("# hi\n[global]\nmon host = 127.0.0.1:3300, 127.0.0.1:3301\nfsid=abc ; trailing\n[osd.0]\nosd data = /x\n").unwrap();
        assert_eq!(c.mon_addrs(), vec!["127.0.0.1:3300", "127.0.0.1:3301"]);
        assert_eq!(c.get("osd.0", "osd_data"), Some("/x"));
        assert_eq!(c.get("osd.0", "fsid"), Some("abc"));
        assert!(Config::parse("garbage line").is_err());
        // osd.N, then [osd], then [global].
        let c = Config::parse("[global]\nms_mode = crc\nx = g\n[osd]\nms_mode = sign\n[osd.1]\nms_mode = crc\n").unwrap();
        assert_eq!(c.get("osd.0", "ms_mode"), Some("sign"));
        assert_eq!(c.get("osd.1", "ms_mode"), Some("crc"));
        assert_eq!(c.get("osd.0", "x"), Some("g"));
        assert_eq!(c.get("client.admin", "ms_mode"), Some("crc"));
    }
}
