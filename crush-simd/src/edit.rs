//! Operator edits of a CRUSH map, the `ceph osd crush add|move|rm|reweight`
//! family, and the map a new cluster starts with.
//!
//! Invariants kept by every edit: a bucket's weight is the sum of its item
//! weights all the way to the roots (a changed weight is carried up to every
//! ancestor); an item has at most one non-shadow parent; class shadow trees
//! are rebuilt after each edit with their previous ids, so rules that take
//! `root class ssd` keep pointing at the same shadow bucket. An edit that
//! fails leaves the map unchanged (edits work on a copy).

use std::collections::BTreeMap;

use crate::model::{Bucket, BucketAlg, CrushMap, ModelError, Rule, Step, Tunables, RULE_TYPE_REPLICATED};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EditError {
    #[error("item '{0}' does not exist")]
    NoSuchItem(String),
    #[error("type '{0}' does not exist")]
    NoSuchType(String),
    #[error("item '{0}' already exists")]
    Exists(String),
    #[error("bucket '{0}' is not empty")]
    NotEmpty(String),
    #[error("location {0} is not valid: {1}")]
    BadLocation(String, String),
    #[error("moving '{0}' under '{1}' would make a loop")]
    Loop(String, String),
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// Ceph's default type hierarchy.
pub const DEFAULT_TYPES: [(i32, &str); 12] = [
    (0, "osd"),
    (1, "host"),
    (2, "chassis"),
    (3, "rack"),
    (4, "row"),
    (5, "pdu"),
    (6, "pod"),
    (7, "room"),
    (8, "datacenter"),
    (9, "zone"),
    (10, "region"),
    (11, "root"),
];

/// The map of a new cluster: Ceph's default types, an empty straw2 root
/// `default`, and `replicated_rule` (rule 0) choosing leaves across
/// `failure_domain` (`host` in production; `osd` for a one-node dev cluster,
/// as Ceph's vstart does).
pub fn default_map(failure_domain: &str) -> Result<CrushMap, EditError> {
    let mut map = CrushMap::new();
    map.tunables = Tunables::JEWEL;
    for (id, name) in DEFAULT_TYPES {
        map.add_type(id, name)?;
    }
    let domain = map.type_id(failure_domain).ok_or_else(|| EditError::NoSuchType(failure_domain.into()))?;
    map.add_bucket("default", Bucket::new(-1, 11, BucketAlg::Straw2, 0, vec![], vec![], 1)?)?;
    let leaf = if domain == 0 {
        Step::ChooseFirstN { n: 0, type_id: 0 }
    } else {
        Step::ChooseLeafFirstN { n: 0, type_id: domain }
    };
    map.add_rule(Rule {
        id: 0,
        name: "replicated_rule".into(),
        rule_type: RULE_TYPE_REPLICATED,
        min_size: 1,
        max_size: 10,
        steps: vec![Step::Take(-1), leaf, Step::Emit],
    })?;
    Ok(map)
}

/// Parses `type=name` words (`host=node1 root=default`).
pub fn parse_location(words: &[String]) -> Result<Vec<(String, String)>, EditError> {
    words
        .iter()
        .map(|w| match w.split_once('=') {
            Some((t, n)) if !t.is_empty() && !n.is_empty() => Ok((t.to_string(), n.to_string())),
            _ => Err(EditError::BadLocation(w.clone(), "expected type=name".into())),
        })
        .collect()
}

impl CrushMap {
    /// The non-shadow bucket holding `item`, if any.
    pub fn parent_of(&self, item: i32) -> Option<i32> {
        self.buckets().filter(|b| !self.is_shadow(b.id)).find(|b| b.items.contains(&item)).map(|b| b.id)
    }

    /// The weight `item` has in its parent (0 when unlinked).
    pub fn item_weight(&self, item: i32) -> u32 {
        self.parent_of(item)
            .and_then(|p| self.bucket(p))
            .and_then(|b| b.items.iter().position(|&i| i == item).map(|i| b.item_weights[i]))
            .unwrap_or(0)
    }

    /// `ceph osd crush add osd.N WEIGHT type=name...`, also "create or move"
    /// when the device exists: (re)links the device under the location,
    /// creating missing buckets (straw2) from the lowest type up.
    pub fn add_or_move_device(
        &mut self,
        id: i32,
        name: &str,
        weight: u32,
        location: &[(String, String)],
        class: Option<&str>,
    ) -> Result<(), EditError> {
        self.edit(|m| {
            if m.item_name(id).is_none() {
                if m.item_id(name).is_some() {
                    return Err(EditError::Exists(name.into()));
                }
                m.add_device(id, name, class)?;
            } else if let Some(class) = class {
                let c = m.class_id_or_create(class)?;
                m.device_classes.insert(id, c);
            }
            m.unlink(id)?;
            let parent = m.ensure_location(location)?;
            m.link(parent, id, weight)
        })
    }

    /// `ceph osd crush move NAME type=name...`: moves a bucket (or device)
    /// under a new location, keeping its weight.
    pub fn move_item(&mut self, name: &str, location: &[(String, String)]) -> Result<(), EditError> {
        self.edit(|m| {
            let id = m.item_id(name).ok_or_else(|| EditError::NoSuchItem(name.into()))?;
            let weight = if id < 0 { m.bucket(id).map_or(0, |b| b.weight) } else { m.item_weight(id) };
            m.unlink(id)?;
            let parent = m.ensure_location(location)?;
            // A bucket may not end up below itself.
            let mut up = Some(parent);
            while let Some(p) = up {
                if p == id {
                    return Err(EditError::Loop(name.into(), location_text(location)));
                }
                up = m.parent_of(p);
            }
            m.link(parent, id, weight)
        })
    }

    /// `ceph osd crush rm NAME`: unlinks a device and forgets it, or removes
    /// an empty bucket.
    pub fn remove_item(&mut self, name: &str) -> Result<(), EditError> {
        self.edit(|m| {
            let id = m.item_id(name).ok_or_else(|| EditError::NoSuchItem(name.into()))?;
            if id < 0 && m.bucket(id).is_some_and(|b| !b.items.is_empty()) {
                return Err(EditError::NotEmpty(name.into()));
            }
            if id < 0 && m.rules().any(|r| r.steps.contains(&Step::Take(id))) {
                return Err(EditError::NotEmpty(format!("{name} (a rule takes it)")));
            }
            m.unlink(id)?;
            if id < 0 {
                m.buckets[(-1 - id as i64) as usize] = None;
            } else {
                m.device_classes.remove(&id);
            }
            m.item_names.remove(&id);
            m.name_index.remove(name);
            Ok(())
        })
    }

    /// `ceph osd crush reweight NAME WEIGHT` for a device.
    pub fn reweight_device(&mut self, name: &str, weight: u32) -> Result<(), EditError> {
        self.edit(|m| {
            let id = m.item_id(name).filter(|&i| i >= 0).ok_or_else(|| EditError::NoSuchItem(name.into()))?;
            let parent = m.parent_of(id).ok_or_else(|| EditError::NoSuchItem(format!("{name} (not linked)")))?;
            m.set_item_weight(parent, id, weight)
        })
    }

    /// Runs an edit on a copy and commits it only if it (and the shadow
    /// rebuild) succeeded.
    fn edit(&mut self, f: impl FnOnce(&mut CrushMap) -> Result<(), EditError>) -> Result<(), EditError> {
        let mut copy = self.clone();
        // The shadows stay while editing so new buckets never take their ids.
        f(&mut copy)?;
        copy.drop_shadows();
        copy.rebuild_shadows(&self.class_buckets)?;
        *self = copy;
        Ok(())
    }

    fn drop_shadows(&mut self) {
        let shadows: Vec<i32> = self.class_buckets.values().flat_map(|m| m.values().copied()).collect();
        for id in shadows {
            if let Some(name) = self.item_names.remove(&id) {
                self.name_index.remove(&name);
            }
            if let Some(slot) = self.buckets.get_mut((-1 - id as i64) as usize) {
                *slot = None;
            }
        }
        self.class_buckets.clear();
    }

    fn rebuild_shadows(&mut self, previous: &BTreeMap<i32, BTreeMap<i32, i32>>) -> Result<(), EditError> {
        // Keep ids only for buckets that still exist.
        let requested: BTreeMap<i32, BTreeMap<i32, i32>> =
            previous.iter().filter(|(orig, _)| self.bucket(**orig).is_some()).map(|(o, m)| (*o, m.clone())).collect();
        self.populate_classes(&requested)?;
        Ok(())
    }

    /// Removes `item` from its parent (if any), carrying the weight change up.
    fn unlink(&mut self, item: i32) -> Result<(), EditError> {
        let Some(parent) = self.parent_of(item) else { return Ok(()) };
        let b = self.bucket(parent).cloned().ok_or_else(|| EditError::NoSuchItem(item.to_string()))?;
        let (items, weights): (Vec<i32>, Vec<u32>) =
            b.items.iter().zip(&b.item_weights).filter(|(i, _)| **i != item).map(|(i, w)| (*i, *w)).unzip();
        self.rebuild(parent, items, weights)
    }

    fn link(&mut self, parent: i32, item: i32, weight: u32) -> Result<(), EditError> {
        let b = self.bucket(parent).cloned().ok_or_else(|| EditError::NoSuchItem(parent.to_string()))?;
        let mut items = b.items.clone();
        let mut weights = b.item_weights.clone();
        items.push(item);
        weights.push(weight);
        self.rebuild(parent, items, weights)
    }

    fn set_item_weight(&mut self, parent: i32, item: i32, weight: u32) -> Result<(), EditError> {
        let b = self.bucket(parent).cloned().ok_or_else(|| EditError::NoSuchItem(parent.to_string()))?;
        let mut weights = b.item_weights.clone();
        if let Some(i) = b.items.iter().position(|&i| i == item) {
            weights[i] = weight;
        }
        self.rebuild(parent, b.items.clone(), weights)
    }

    /// Rebuilds bucket `id` with new contents and carries its new weight up.
    fn rebuild(&mut self, id: i32, items: Vec<i32>, weights: Vec<u32>) -> Result<(), EditError> {
        let old = self.bucket(id).cloned().ok_or_else(|| EditError::NoSuchItem(id.to_string()))?;
        let new = Bucket::new(id, old.type_id, old.alg, old.hash, items, weights, self.tunables.straw_calc_version)?;
        let new_weight = new.weight;
        self.buckets[(-1 - id as i64) as usize] = Some(new);
        if new_weight != old.weight {
            if let Some(parent) = self.parent_of(id) {
                self.set_item_weight(parent, id, new_weight)?;
            }
        }
        Ok(())
    }

    /// The bucket a location names, creating missing buckets and linking
    /// them from the lowest type up (Ceph's `insert_item` behaviour).
    fn ensure_location(&mut self, location: &[(String, String)]) -> Result<i32, EditError> {
        if location.is_empty() {
            return Err(EditError::BadLocation(String::new(), "empty location".into()));
        }
        let mut typed = Vec::with_capacity(location.len());
        for (t, n) in location {
            let tid = self.type_id(t).ok_or_else(|| EditError::NoSuchType(t.clone()))?;
            if tid == 0 {
                return Err(EditError::BadLocation(location_text(location), "a device type is not a location".into()));
            }
            typed.push((tid, n.clone()));
        }
        typed.sort();
        if typed.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(EditError::BadLocation(location_text(location), "a type given twice".into()));
        }
        let mut lowest = None;
        let mut below: Option<i32> = None;
        for (tid, name) in &typed {
            let (id, created) = match self.item_id(name) {
                Some(id) if id < 0 => {
                    if self.bucket(id).map(|b| b.type_id) != Some(*tid) {
                        return Err(EditError::BadLocation(location_text(location), format!("{name} has another type")));
                    }
                    (id, false)
                }
                Some(_) => return Err(EditError::BadLocation(location_text(location), format!("{name} is a device"))),
                None => {
                    let id = self.free_bucket_id();
                    self.add_bucket(name, Bucket::new(id, *tid, BucketAlg::Straw2, 0, vec![], vec![], 1)?)?;
                    (id, true)
                }
            };
            if let Some(child) = below {
                if self.parent_of(child).is_none() {
                    let w = self.bucket(child).map_or(0, |b| b.weight);
                    self.link(id, child, w)?;
                }
            }
            lowest.get_or_insert(id);
            below = Some(id);
            // An existing bucket is already placed; stop climbing there.
            if !created && self.parent_of(id).is_some() {
                break;
            }
        }
        lowest.ok_or_else(|| EditError::BadLocation(location_text(location), "no bucket".into()))
    }

    fn free_bucket_id(&self) -> i32 {
        let mut id = -1;
        while self.bucket(id).is_some() || self.item_names.contains_key(&id) {
            id -= 1;
        }
        id
    }
}

fn location_text(location: &[(String, String)]) -> String {
    location.iter().map(|(t, n)| format!("{t}={n}")).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapper::{Mapper, Workspace};

    fn loc(words: &[&str]) -> Vec<(String, String)> {
        parse_location(&words.iter().map(|w| w.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn check_weights(map: &CrushMap) {
        map.invariants();
        for b in map.buckets() {
            let sum: u32 = b.item_weights.iter().sum();
            assert_eq!(sum, b.weight);
            for (i, &item) in b.items.iter().enumerate() {
                if item < 0 {
                    assert_eq!(map.bucket(item).unwrap().weight, b.item_weights[i], "stale weight of {item} in {}", b.id);
                }
            }
        }
    }

    #[test]
    fn build_a_cluster_by_edits_and_map_on_it() {
        let mut map = default_map("host").unwrap();
        for osd in 0..12 {
            let host = format!("node{}", osd / 3);
            map.add_or_move_device(osd, &format!("osd.{osd}"), 0x10000, &loc(&[&format!("host={host}"), "root=default"]), Some("ssd"))
                .unwrap();
            check_weights(&map);
        }
        assert_eq!(map.bucket(-1).unwrap().weight, 12 * 0x10000);
        let mut ws = Workspace::new();
        let mut out = Vec::new();
        let weights = vec![0x10000; 12];
        for x in 0..200 {
            Mapper::new(&map).do_rule(0, x, 3, &weights, &mut ws, &mut out);
            assert_eq!(out.len(), 3);
            let hosts: std::collections::BTreeSet<i32> = out.iter().map(|o| o / 3).collect();
            assert_eq!(hosts.len(), 3, "one replica per host");
        }
        // Reweight, move a host into a rack, remove a device.
        map.reweight_device("osd.0", 0x20000).unwrap();
        check_weights(&map);
        assert_eq!(map.bucket(-1).unwrap().weight, 13 * 0x10000);
        map.move_item("node1", &loc(&["rack=r1", "root=default"])).unwrap();
        check_weights(&map);
        let rack = map.item_id("r1").unwrap();
        assert_eq!(map.parent_of(map.item_id("node1").unwrap()), Some(rack));
        assert_eq!(map.parent_of(rack), Some(-1));
        map.remove_item("osd.5").unwrap();
        check_weights(&map);
        assert!(map.item_id("osd.5").is_none());
        assert!(map.item_id("default~ssd").is_some(), "shadow trees rebuilt");
        assert_eq!(map.remove_item("node0"), Err(EditError::NotEmpty("node0".into())));
        assert!(matches!(map.move_item("default", &loc(&["rack=r1"])), Err(EditError::Loop(..))));
        assert!(matches!(map.move_item("nope", &loc(&["rack=r1"])), Err(EditError::NoSuchItem(_))));
        // The text form of an edited map parses back to the same map.
        let text = crate::text::print(&map);
        assert_eq!(crate::text::print(&crate::text::parse(&text).unwrap()), text);
    }

    #[test]
    fn failed_edits_change_nothing() {
        let mut map = default_map("osd").unwrap();
        map.add_or_move_device(0, "osd.0", 0x10000, &loc(&["host=a", "root=default"]), None).unwrap();
        let before = map.clone();
        assert!(map.add_or_move_device(1, "osd.1", 0x10000, &loc(&["nosuchtype=a"]), None).is_err());
        assert!(map.add_or_move_device(1, "osd.1", 0x10000, &loc(&["host=a", "host=b"]), None).is_err());
        assert!(map.add_or_move_device(1, "osd.0", 0x10000, &loc(&["host=a"]), None).is_err());
        assert_eq!(map, before);
    }
}
