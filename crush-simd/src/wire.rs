//! The CRUSH map as it travels inside an OSDMap: a flat, rkyv-archivable
//! form, and its checked conversion back into a [`CrushMap`].
//!
//! Invariant: `CrushMap → CrushWire → CrushMap` is the identity (same
//! buckets, derived data, rules, classes and shadows; a property test checks
//! it on every fixture). Decoding is for untrusted bytes: it rebuilds the
//! map through the model's checked builders, so a wire map that names a
//! missing item, repeats an id or overflows a weight is a [`ModelError`],
//! never a panic.

use rkyv::{Archive, Deserialize, Serialize};

use crate::model::{Bucket, BucketAlg, CrushMap, ModelError, Rule, Step, Tunables};

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct WireDevice {
    pub id: i32,
    pub name: String,
    /// Class id, or -1 for none.
    pub class: i32,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct WireBucket {
    pub id: i32,
    pub name: String,
    pub type_id: i32,
    /// Ceph's algorithm number (1 uniform .. 5 straw2).
    pub alg: u8,
    pub hash: u8,
    pub items: Vec<i32>,
    pub weights: Vec<u32>,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct WireStep {
    /// Ceph's `CRUSH_RULE_*` op code.
    pub op: u8,
    pub arg1: i32,
    pub arg2: i32,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct WireRule {
    pub id: i32,
    pub name: String,
    pub rule_type: u8,
    pub min_size: i32,
    pub max_size: i32,
    pub steps: Vec<WireStep>,
}

/// A whole CRUSH map in wire form.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct CrushWire {
    /// In the order of [`Tunables::named`].
    pub tunables: [u32; 8],
    pub types: Vec<(i32, String)>,
    pub classes: Vec<(i32, String)>,
    pub devices: Vec<WireDevice>,
    /// Children before parents; shadow buckets included.
    pub buckets: Vec<WireBucket>,
    /// (bucket, class, shadow bucket).
    pub class_buckets: Vec<(i32, i32, i32)>,
    pub rules: Vec<WireRule>,
}

fn step_to_wire(step: &Step) -> WireStep {
    let (arg1, arg2) = step.args();
    WireStep { op: step.op_code() as u8, arg1, arg2 }
}

fn step_from_wire(s: &WireStep, rule: i32) -> Result<Step, ModelError> {
    let (a, b) = (s.arg1, s.arg2);
    Ok(match s.op {
        1 => Step::Take(a),
        2 => Step::ChooseFirstN { n: a, type_id: b },
        3 => Step::ChooseIndep { n: a, type_id: b },
        4 => Step::Emit,
        6 => Step::ChooseLeafFirstN { n: a, type_id: b },
        7 => Step::ChooseLeafIndep { n: a, type_id: b },
        8 => Step::SetChooseTries(a),
        9 => Step::SetChooseLeafTries(a),
        10 => Step::SetChooseLocalTries(a),
        11 => Step::SetChooseLocalFallbackTries(a),
        12 => Step::SetChooseLeafVaryR(a),
        13 => Step::SetChooseLeafStable(a),
        _ => return Err(ModelError::BadRuleId(rule)),
    })
}

impl CrushWire {
    /// The wire form of `map`.
    pub fn from_map(map: &CrushMap) -> CrushWire {
        let named = map.tunables.named();
        let mut tunables = [0u32; 8];
        for (slot, (_, v)) in tunables.iter_mut().zip(named.iter()) {
            *slot = *v;
        }
        let devices = map
            .item_names
            .range(0..map.max_devices.max(0))
            .map(|(&id, name)| WireDevice {
                id,
                name: name.clone(),
                class: map.device_classes.get(&id).copied().unwrap_or(-1),
            })
            .collect();
        // Children first: a depth-first walk from every bucket, each once.
        let mut order = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        fn visit(map: &CrushMap, id: i32, seen: &mut std::collections::BTreeSet<i32>, order: &mut Vec<i32>) {
            if !seen.insert(id) {
                return;
            }
            if let Some(b) = map.bucket(id) {
                for &item in b.items.iter().filter(|&&i| i < 0) {
                    visit(map, item, seen, order);
                }
                order.push(id);
            }
        }
        for b in map.buckets() {
            visit(map, b.id, &mut seen, &mut order);
        }
        let buckets = order
            .iter()
            .filter_map(|&id| map.bucket(id))
            .map(|b| WireBucket {
                id: b.id,
                name: map.item_name(b.id).unwrap_or_default().to_string(),
                type_id: b.type_id,
                alg: b.alg as u8,
                hash: b.hash,
                items: b.items.clone(),
                weights: b.item_weights.clone(),
            })
            .collect();
        let class_buckets = map
            .class_buckets
            .iter()
            .flat_map(|(&b, m)| m.iter().map(move |(&c, &s)| (b, c, s)))
            .collect();
        let rules = map
            .rules()
            .map(|r| WireRule {
                id: r.id,
                name: r.name.clone(),
                rule_type: r.rule_type,
                min_size: r.min_size,
                max_size: r.max_size,
                steps: r.steps.iter().map(step_to_wire).collect(),
            })
            .collect();
        CrushWire {
            tunables,
            types: map.type_names.iter().map(|(&id, n)| (id, n.clone())).collect(),
            classes: map.class_names.iter().map(|(&id, n)| (id, n.clone())).collect(),
            devices,
            buckets,
            class_buckets,
            rules,
        }
    }

    /// Rebuilds the map, checking everything.
    pub fn to_map(&self) -> Result<CrushMap, ModelError> {
        let mut map = CrushMap::new();
        let mut tunables = Tunables::LEGACY;
        for ((name, _), &v) in Tunables::LEGACY.named().iter().zip(self.tunables.iter()) {
            tunables.set_named(name, v);
        }
        map.tunables = tunables;
        for (id, name) in &self.types {
            map.add_type(*id, name)?;
        }
        for (id, name) in &self.classes {
            map.add_class(*id, name)?;
        }
        for d in &self.devices {
            map.add_device(d.id, &d.name, None)?;
            if d.class >= 0 {
                if !map.class_names.contains_key(&d.class) {
                    return Err(ModelError::NoSuchItem { bucket: 0, item: d.class });
                }
                map.device_classes.insert(d.id, d.class);
            }
        }
        for b in &self.buckets {
            let alg = BucketAlg::ALL
                .into_iter()
                .find(|a| *a as u8 == b.alg)
                .ok_or(ModelError::BadBucketId(b.id))?;
            if b.items.len() != b.weights.len() {
                return Err(ModelError::NoSuchItem { bucket: b.id, item: b.items.len() as i32 });
            }
            let bucket = Bucket::new(
                b.id,
                b.type_id,
                alg,
                b.hash,
                b.items.clone(),
                b.weights.clone(),
                map.tunables.straw_calc_version,
            )?;
            map.add_bucket(&b.name, bucket)?;
        }
        for &(bucket, class, shadow) in &self.class_buckets {
            if map.bucket(bucket).is_none() || map.bucket(shadow).is_none() || !map.class_names.contains_key(&class) {
                return Err(ModelError::NoSuchItem { bucket, item: shadow });
            }
            map.class_buckets.entry(bucket).or_default().insert(class, shadow);
        }
        for r in &self.rules {
            let steps = r.steps.iter().map(|s| step_from_wire(s, r.id)).collect::<Result<Vec<_>, _>>()?;
            map.add_rule(Rule {
                id: r.id,
                name: r.name.clone(),
                rule_type: r.rule_type,
                min_size: r.min_size,
                max_size: r.max_size,
                steps,
            })?;
        }
        Ok(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::synthetic_map;

    #[test]
    fn wire_round_trip_is_identity_and_survives_rkyv() {
        let map = synthetic_map(2, 3, 4);
        let wire = CrushWire::from_map(&map);
        let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&wire).unwrap();
        let back: CrushWire = rkyv::from_bytes::<CrushWire, rkyv::rancor::Error>(&bytes).unwrap();
        assert_eq!(back, wire);
        assert_eq!(back.to_map().unwrap(), map);
    }

    #[test]
    fn a_wire_map_naming_a_missing_child_is_an_error() {
        let mut wire = CrushWire::from_map(&synthetic_map(1, 2, 2));
        let last = wire.buckets.len() - 1;
        wire.buckets[last].items.push(-999);
        wire.buckets[last].weights.push(0x10000);
        assert!(wire.to_map().is_err());
    }
}
