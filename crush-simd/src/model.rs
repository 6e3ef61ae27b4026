//! The CRUSH map model: devices, types, buckets, rules, tunables and
//! device-class shadow trees, with the derived per-algorithm data Ceph's
//! builder computes (list sums, tree node weights, straw lengths) and our
//! own (straw2 weight reciprocals, [`crate::divide`]).
//!
//! Invariants (checked by [`CrushMap::invariants`]):
//! - a bucket with id `b` lives at `buckets[-1 - b]`; ids are negative;
//! - `items.len() == item_weights.len()` and the derived data matches the
//!   items (recomputed whenever items change, never edited by hand);
//! - a device id is in `0..max_devices`;
//! - shadow buckets (`host0~ssd`) are listed in `class_buckets` and are only
//!   ever built by [`CrushMap::populate_classes`].
//!
//! Anything that comes from outside (text, edits) goes through the fallible
//! builders here and yields a [`ModelError`]; nothing here panics on input.

use std::collections::BTreeMap;

use crate::divide::Recip;
use crate::limits;

/// An empty slot in an `indep` result (Ceph's `CRUSH_ITEM_NONE`).
pub const ITEM_NONE: i32 = 0x7fff_ffff;
/// A slot not yet decided inside `indep` (Ceph's `CRUSH_ITEM_UNDEF`).
pub(crate) const ITEM_UNDEF: i32 = 0x7fff_fffe;
/// 16.16 fixed point "fully in" weight.
pub const WEIGHT_ONE: u32 = 0x10000;

/// Errors building or editing a map.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("bucket id {0} is not a valid bucket id (must be negative and above -{max})", max = limits::buckets_max)]
    BadBucketId(i32),
    #[error("device id {0} is out of range 0..{max}", max = limits::devices_max)]
    BadDeviceId(i32),
    #[error("id {0} is already in use")]
    DuplicateId(i32),
    #[error("name '{0}' is already in use")]
    DuplicateName(String),
    #[error("uniform bucket {bucket} needs identical item weights, got {first:#x} and {other:#x}")]
    UniformWeights { bucket: i32, first: u32, other: u32 },
    #[error("bucket {bucket} has {items} items, more than the limit {max}", max = limits::bucket_items_max)]
    TooManyItems { bucket: i32, items: usize },
    #[error("bucket {bucket} weight overflows 32 bits")]
    WeightOverflow { bucket: i32 },
    #[error("item {item} in bucket {bucket} does not exist")]
    NoSuchItem { bucket: i32, item: i32 },
    #[error("item {item} appears in bucket {bucket} more than once or in a cycle")]
    BadHierarchy { bucket: i32, item: i32 },
    #[error("rule id {0} is out of range or already used")]
    BadRuleId(i32),
    #[error("too many steps in rule {0}")]
    TooManySteps(i32),
    #[error("too many device classes")]
    TooManyClasses,
}

/// Bucket algorithms, numbered as in Ceph (`CRUSH_BUCKET_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BucketAlg {
    Uniform = 1,
    List = 2,
    Tree = 3,
    Straw = 4,
    Straw2 = 5,
}

impl BucketAlg {
    pub const ALL: [BucketAlg; 5] = [
        BucketAlg::Uniform,
        BucketAlg::List,
        BucketAlg::Tree,
        BucketAlg::Straw,
        BucketAlg::Straw2,
    ];

    pub fn name(self) -> &'static str {
        match self {
            BucketAlg::Uniform => "uniform",
            BucketAlg::List => "list",
            BucketAlg::Tree => "tree",
            BucketAlg::Straw => "straw",
            BucketAlg::Straw2 => "straw2",
        }
    }

    pub fn from_name(name: &str) -> Option<BucketAlg> {
        BucketAlg::ALL.into_iter().find(|a| a.name() == name)
    }
}

/// Map-wide tunables. Defaults are Ceph's legacy (argonaut) values, which is
/// what a text map means when it has no `tunable` line for a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tunables {
    pub choose_local_tries: u32,
    pub choose_local_fallback_tries: u32,
    pub choose_total_tries: u32,
    pub chooseleaf_descend_once: u32,
    pub chooseleaf_vary_r: u32,
    pub chooseleaf_stable: u32,
    pub straw_calc_version: u32,
    pub allowed_bucket_algs: u32,
}

impl Tunables {
    pub const LEGACY: Tunables = Tunables {
        choose_local_tries: 2,
        choose_local_fallback_tries: 5,
        choose_total_tries: 19,
        chooseleaf_descend_once: 0,
        chooseleaf_vary_r: 0,
        chooseleaf_stable: 0,
        straw_calc_version: 0,
        allowed_bucket_algs: 22,
    };

    /// Ceph's "optimal" profile as of Pacific (jewel).
    pub const JEWEL: Tunables = Tunables {
        choose_local_tries: 0,
        choose_local_fallback_tries: 0,
        choose_total_tries: 50,
        chooseleaf_descend_once: 1,
        chooseleaf_vary_r: 1,
        chooseleaf_stable: 1,
        straw_calc_version: 1,
        allowed_bucket_algs: 54,
    };

    /// The tunables as (text name, value) pairs in the order `crushtool -d`
    /// prints them.
    pub fn named(&self) -> [(&'static str, u32); 8] {
        [
            ("choose_local_tries", self.choose_local_tries),
            ("choose_local_fallback_tries", self.choose_local_fallback_tries),
            ("choose_total_tries", self.choose_total_tries),
            ("chooseleaf_descend_once", self.chooseleaf_descend_once),
            ("chooseleaf_vary_r", self.chooseleaf_vary_r),
            ("chooseleaf_stable", self.chooseleaf_stable),
            ("straw_calc_version", self.straw_calc_version),
            ("allowed_bucket_algs", self.allowed_bucket_algs),
        ]
    }

    /// Sets a tunable by its text name; false when the name is unknown.
    pub fn set_named(&mut self, name: &str, value: u32) -> bool {
        let slot = match name {
            "choose_local_tries" => &mut self.choose_local_tries,
            "choose_local_fallback_tries" => &mut self.choose_local_fallback_tries,
            "choose_total_tries" => &mut self.choose_total_tries,
            "chooseleaf_descend_once" => &mut self.chooseleaf_descend_once,
            "chooseleaf_vary_r" => &mut self.chooseleaf_vary_r,
            "chooseleaf_stable" => &mut self.chooseleaf_stable,
            "straw_calc_version" => &mut self.straw_calc_version,
            "allowed_bucket_algs" => &mut self.allowed_bucket_algs,
            _ => return false,
        };
        *slot = value;
        true
    }
}

impl Default for Tunables {
    fn default() -> Self {
        Tunables::LEGACY
    }
}

/// Per-algorithm data derived from a bucket's items and weights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Derived {
    /// uniform needs nothing beyond the item weights.
    None,
    /// Straw2: each item's weight as a reciprocal, so a draw multiplies.
    Straw2 { recips: Vec<Recip> },
    /// `sum_weights[i]` = weight of items `0..=i`.
    List { sum_weights: Vec<u32> },
    /// Implicit binary tree: leaf `i` is node `2i + 1`.
    Tree { node_weights: Vec<u32> },
    /// Straw v1 lengths (16.16), depend on `straw_calc_version`.
    Straw { straws: Vec<u32> },
}

/// One bucket of the hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    pub id: i32,
    pub type_id: i32,
    pub alg: BucketAlg,
    /// Hash function id; 0 (rjenkins1) is the only one Ceph has.
    pub hash: u8,
    pub items: Vec<i32>,
    /// Each item's 16.16 weight as this bucket sees it.
    pub item_weights: Vec<u32>,
    /// Sum of the item weights (for uniform: size × item weight).
    pub weight: u32,
    pub(crate) derived: Derived,
}

impl Bucket {
    /// Builds a bucket the way Ceph's `crush_make_bucket` does, computing
    /// the derived data. `straw_calc_version` only matters for straw v1.
    pub fn new(
        id: i32,
        type_id: i32,
        alg: BucketAlg,
        hash: u8,
        items: Vec<i32>,
        item_weights: Vec<u32>,
        straw_calc_version: u32,
    ) -> Result<Bucket, ModelError> {
        if id >= 0 || id <= -(limits::buckets_max as i32) {
            return Err(ModelError::BadBucketId(id));
        }
        if items.len() > limits::bucket_items_max {
            return Err(ModelError::TooManyItems { bucket: id, items: items.len() });
        }
        debug_assert_eq!(items.len(), item_weights.len());
        if alg == BucketAlg::Uniform {
            if let Some(&first) = item_weights.first() {
                if let Some(&other) = item_weights.iter().find(|&&w| w != first) {
                    return Err(ModelError::UniformWeights { bucket: id, first, other });
                }
            }
        }
        let mut weight: u32 = 0;
        for &w in &item_weights {
            weight = weight.checked_add(w).ok_or(ModelError::WeightOverflow { bucket: id })?;
        }
        let derived = match alg {
            BucketAlg::Uniform => Derived::None,
            BucketAlg::Straw2 => Derived::Straw2 { recips: item_weights.iter().map(|&w| Recip::new(w)).collect() },
            BucketAlg::List => {
                let mut sum = 0u32;
                let sum_weights = item_weights
                    .iter()
                    .map(|&w| {
                        sum += w;
                        sum
                    })
                    .collect();
                Derived::List { sum_weights }
            }
            BucketAlg::Tree => Derived::Tree { node_weights: tree_node_weights(&item_weights) },
            BucketAlg::Straw => {
                Derived::Straw { straws: straw_lengths(&item_weights, straw_calc_version) }
            }
        };
        Ok(Bucket { id, type_id, alg, hash, items, item_weights, weight, derived })
    }

    pub fn size(&self) -> usize {
        self.items.len()
    }
}

/// Depth of the implicit tree for `size` leaves (Ceph's `calc_depth`).
fn tree_depth(size: usize) -> u32 {
    if size == 0 {
        return 0;
    }
    let mut depth = 1;
    let mut t = size - 1;
    while t != 0 {
        t >>= 1;
        depth += 1;
    }
    depth
}

/// Height of node `n` in the implicit tree: its number of trailing zeros.
pub(crate) fn tree_height(n: u32) -> u32 {
    n.trailing_zeros()
}

fn tree_parent(n: u32) -> u32 {
    let h = tree_height(n);
    if n & (1 << (h + 1)) != 0 {
        n - (1 << h)
    } else {
        n + (1 << h)
    }
}

fn tree_node_weights(weights: &[u32]) -> Vec<u32> {
    let depth = tree_depth(weights.len());
    let num_nodes = 1usize << depth;
    let mut nodes = vec![0u32; num_nodes];
    for (i, &w) in weights.iter().enumerate() {
        let mut node = ((i as u32 + 1) << 1) - 1;
        nodes[node as usize] = w;
        for _ in 1..depth {
            node = tree_parent(node);
            nodes[node as usize] = nodes[node as usize].wrapping_add(w);
        }
    }
    nodes
}

/// Straw v1 lengths, exactly as Ceph's `crush_calc_straw` (double math,
/// including its `u32` multiply that can wrap for huge weights).
fn straw_lengths(weights: &[u32], straw_calc_version: u32) -> Vec<u32> {
    let size = weights.len();
    let mut straws = vec![0u32; size];
    // Stable insertion sort of indices by ascending weight.
    let mut reverse: Vec<usize> = Vec::with_capacity(size);
    for i in 0..size {
        let pos = reverse.iter().position(|&r| weights[i] < weights[r]).unwrap_or(reverse.len());
        reverse.insert(pos, i);
    }
    let mut numleft = size as i64;
    let mut straw = 1.0f64;
    let mut wbelow = 0.0f64;
    let mut lastw = 0.0f64;
    let mut i = 0;
    while i < size {
        let wi = weights[reverse[i]];
        if straw_calc_version == 0 {
            if wi == 0 {
                straws[reverse[i]] = 0;
                i += 1;
                continue;
            }
            straws[reverse[i]] = (straw * 65536.0) as u32;
            i += 1;
            if i == size {
                break;
            }
            if weights[reverse[i]] == weights[reverse[i - 1]] {
                continue;
            }
            wbelow += (weights[reverse[i - 1]] as f64 - lastw) * numleft as f64;
            for j in i..size {
                if weights[reverse[j]] == weights[reverse[i]] {
                    numleft -= 1;
                } else {
                    break;
                }
            }
        } else {
            if wi == 0 {
                straws[reverse[i]] = 0;
                i += 1;
                numleft -= 1;
                continue;
            }
            straws[reverse[i]] = (straw * 65536.0) as u32;
            i += 1;
            if i == size {
                break;
            }
            wbelow += (weights[reverse[i - 1]] as f64 - lastw) * numleft as f64;
            numleft -= 1;
        }
        // C computes `int * (u32 - u32)` in unsigned 32-bit arithmetic.
        let diff = weights[reverse[i]].wrapping_sub(weights[reverse[i - 1]]);
        let wnext = (numleft as u32).wrapping_mul(diff) as f64;
        let pbelow = wbelow / (wbelow + wnext);
        straw *= (1.0 / pbelow).powf(1.0 / numleft as f64);
        lastw = weights[reverse[i - 1]] as f64;
    }
    straws
}

/// Rule step operations, with Ceph's semantics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Start from an item (a bucket, a class shadow bucket, or a device).
    Take(i32),
    ChooseFirstN { n: i32, type_id: i32 },
    ChooseIndep { n: i32, type_id: i32 },
    ChooseLeafFirstN { n: i32, type_id: i32 },
    ChooseLeafIndep { n: i32, type_id: i32 },
    Emit,
    SetChooseTries(i32),
    SetChooseLeafTries(i32),
    SetChooseLocalTries(i32),
    SetChooseLocalFallbackTries(i32),
    SetChooseLeafVaryR(i32),
    SetChooseLeafStable(i32),
}

impl Step {
    /// Ceph's numeric op code (`CRUSH_RULE_*`), used by crushtool's statistics.
    pub fn op_code(&self) -> i32 {
        match self {
            Step::Take(_) => 1,
            Step::ChooseFirstN { .. } => 2,
            Step::ChooseIndep { .. } => 3,
            Step::Emit => 4,
            Step::ChooseLeafFirstN { .. } => 6,
            Step::ChooseLeafIndep { .. } => 7,
            Step::SetChooseTries(_) => 8,
            Step::SetChooseLeafTries(_) => 9,
            Step::SetChooseLocalTries(_) => 10,
            Step::SetChooseLocalFallbackTries(_) => 11,
            Step::SetChooseLeafVaryR(_) => 12,
            Step::SetChooseLeafStable(_) => 13,
        }
    }

    /// Ceph's (arg1, arg2) for the step.
    pub fn args(&self) -> (i32, i32) {
        match *self {
            Step::Take(item) => (item, 0),
            Step::ChooseFirstN { n, type_id }
            | Step::ChooseIndep { n, type_id }
            | Step::ChooseLeafFirstN { n, type_id }
            | Step::ChooseLeafIndep { n, type_id } => (n, type_id),
            Step::Emit => (0, 0),
            Step::SetChooseTries(v)
            | Step::SetChooseLeafTries(v)
            | Step::SetChooseLocalTries(v)
            | Step::SetChooseLocalFallbackTries(v)
            | Step::SetChooseLeafVaryR(v)
            | Step::SetChooseLeafStable(v) => (v, 0),
        }
    }
}

/// Rule type as Ceph numbers it (only informative for mapping).
pub const RULE_TYPE_REPLICATED: u8 = 1;
pub const RULE_TYPE_ERASURE: u8 = 3;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub id: i32,
    pub name: String,
    pub rule_type: u8,
    pub min_size: i32,
    pub max_size: i32,
    pub steps: Vec<Step>,
}

/// A whole CRUSH map.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CrushMap {
    pub tunables: Tunables,
    /// Bucket `b` at index `-1 - b`.
    pub(crate) buckets: Vec<Option<Bucket>>,
    /// Rule `r` at index `r`.
    pub(crate) rules: Vec<Option<Rule>>,
    /// Largest device id + 1 (0 when there are no devices).
    pub max_devices: i32,
    /// Device and bucket names, shadow buckets included (`host0~ssd`).
    pub item_names: BTreeMap<i32, String>,
    pub type_names: BTreeMap<i32, String>,
    pub class_names: BTreeMap<i32, String>,
    /// Device id → class id.
    pub device_classes: BTreeMap<i32, i32>,
    /// Bucket id → class id → shadow bucket id.
    pub class_buckets: BTreeMap<i32, BTreeMap<i32, i32>>,
    /// Name → id for devices and buckets (the reverse of `item_names`).
    pub(crate) name_index: BTreeMap<String, i32>,
}

impl CrushMap {
    pub fn new() -> CrushMap {
        CrushMap::default()
    }

    pub fn bucket(&self, id: i32) -> Option<&Bucket> {
        if id >= 0 {
            return None;
        }
        self.buckets.get((-1 - id as i64) as usize).and_then(|b| b.as_ref())
    }

    /// Number of bucket slots (Ceph's `max_buckets`).
    pub fn max_buckets(&self) -> usize {
        self.buckets.len()
    }

    pub fn buckets(&self) -> impl Iterator<Item = &Bucket> {
        self.buckets.iter().flatten()
    }

    pub fn rule(&self, id: i32) -> Option<&Rule> {
        if id < 0 {
            return None;
        }
        self.rules.get(id as usize).and_then(|r| r.as_ref())
    }

    pub fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter().flatten()
    }

    /// Number of rule slots (largest rule id + 1).
    pub fn max_rules(&self) -> usize {
        self.rules.len()
    }

    pub fn item_name(&self, id: i32) -> Option<&str> {
        self.item_names.get(&id).map(String::as_str)
    }

    pub fn item_id(&self, name: &str) -> Option<i32> {
        self.name_index.get(name).copied()
    }

    pub fn type_id(&self, name: &str) -> Option<i32> {
        self.type_names.iter().find(|(_, n)| n.as_str() == name).map(|(&id, _)| id)
    }

    pub fn class_id(&self, name: &str) -> Option<i32> {
        self.class_names.iter().find(|(_, n)| n.as_str() == name).map(|(&id, _)| id)
    }

    /// True when `id` is a class shadow bucket.
    pub fn is_shadow(&self, id: i32) -> bool {
        self.class_buckets.values().any(|m| m.values().any(|&s| s == id))
    }

    /// The original bucket and class a shadow bucket was cloned from.
    pub fn shadow_origin(&self, shadow: i32) -> Option<(i32, i32)> {
        self.class_buckets.iter().find_map(|(&b, m)| {
            m.iter().find(|(_, &s)| s == shadow).map(|(&c, _)| (b, c))
        })
    }

    /// Shadow bucket of `bucket` for class `class_name`.
    pub fn class_bucket(&self, bucket: i32, class_name: &str) -> Option<i32> {
        let class = self.class_id(class_name)?;
        self.class_buckets.get(&bucket)?.get(&class).copied()
    }

    /// Adds a device, optionally with a class (created on first use, with
    /// ids in order of first appearance like Ceph).
    pub fn add_device(&mut self, id: i32, name: &str, class: Option<&str>) -> Result<(), ModelError> {
        if id < 0 || id as usize >= limits::devices_max {
            return Err(ModelError::BadDeviceId(id));
        }
        if self.item_names.contains_key(&id) {
            return Err(ModelError::DuplicateId(id));
        }
        if self.item_id(name).is_some() {
            return Err(ModelError::DuplicateName(name.to_string()));
        }
        self.item_names.insert(id, name.to_string());
        self.name_index.insert(name.to_string(), id);
        self.max_devices = self.max_devices.max(id + 1);
        if let Some(class) = class {
            let class_id = self.class_id_or_create(class)?;
            self.device_classes.insert(id, class_id);
        }
        Ok(())
    }

    /// Names (or renames) item `id`, keeping the name index in step. Used
    /// by the text parser, where a repeated device id renames the device.
    pub fn set_item_name(&mut self, id: i32, name: &str) {
        if let Some(old) = self.item_names.insert(id, name.to_string()) {
            if self.name_index.get(&old) == Some(&id) {
                self.name_index.remove(&old);
            }
        }
        self.name_index.insert(name.to_string(), id);
        if id >= 0 {
            self.max_devices = self.max_devices.max(id + 1);
        }
    }

    /// The id of a device class, creating it if new.
    pub fn class_id_or_create(&mut self, class: &str) -> Result<i32, ModelError> {
        if let Some(id) = self.class_id(class) {
            return Ok(id);
        }
        if self.class_names.len() >= limits::classes_max {
            return Err(ModelError::TooManyClasses);
        }
        let id = self.class_names.keys().next_back().map_or(0, |&last| last + 1);
        self.class_names.insert(id, class.to_string());
        Ok(id)
    }

    /// Adds a device class with a given id (for maps decoded from the wire,
    /// where ids are already assigned).
    pub fn add_class(&mut self, id: i32, name: &str) -> Result<(), ModelError> {
        if self.class_names.contains_key(&id) {
            return Err(ModelError::DuplicateId(id));
        }
        if self.class_id(name).is_some() {
            return Err(ModelError::DuplicateName(name.to_string()));
        }
        if self.class_names.len() >= limits::classes_max {
            return Err(ModelError::TooManyClasses);
        }
        self.class_names.insert(id, name.to_string());
        Ok(())
    }

    pub fn add_type(&mut self, id: i32, name: &str) -> Result<(), ModelError> {
        if self.type_names.contains_key(&id) {
            return Err(ModelError::DuplicateId(id));
        }
        if self.type_id(name).is_some() {
            return Err(ModelError::DuplicateName(name.to_string()));
        }
        self.type_names.insert(id, name.to_string());
        Ok(())
    }

    /// Inserts a built bucket under `name`. Every item must already exist
    /// (children are defined before parents, as in Ceph's text format).
    pub fn add_bucket(&mut self, name: &str, bucket: Bucket) -> Result<(), ModelError> {
        let id = bucket.id;
        if self.item_names.contains_key(&id) || self.bucket(id).is_some() {
            return Err(ModelError::DuplicateId(id));
        }
        if self.item_id(name).is_some() {
            return Err(ModelError::DuplicateName(name.to_string()));
        }
        for &item in &bucket.items {
            let exists = if item >= 0 { self.item_names.contains_key(&item) } else { self.bucket(item).is_some() };
            if !exists {
                return Err(ModelError::NoSuchItem { bucket: id, item });
            }
        }
        // An item listed twice would make CRUSH place it twice.
        let mut seen = bucket.items.clone();
        seen.sort_unstable();
        if let Some(w) = seen.windows(2).find(|w| w[0] == w[1]) {
            return Err(ModelError::BadHierarchy { bucket: id, item: w[0] });
        }
        let slot = (-1 - id as i64) as usize;
        if self.buckets.len() <= slot {
            self.buckets.resize(slot + 1, None);
        }
        self.buckets[slot] = Some(bucket);
        self.item_names.insert(id, name.to_string());
        self.name_index.insert(name.to_string(), id);
        Ok(())
    }

    /// Inserts a rule at its id.
    pub fn add_rule(&mut self, rule: Rule) -> Result<(), ModelError> {
        if rule.id < 0 || rule.id as usize >= limits::rules_max || self.rule(rule.id).is_some() {
            return Err(ModelError::BadRuleId(rule.id));
        }
        if rule.steps.len() > limits::rule_steps_max {
            return Err(ModelError::TooManySteps(rule.id));
        }
        let slot = rule.id as usize;
        if self.rules.len() <= slot {
            self.rules.resize(slot + 1, None);
        }
        self.rules[slot] = Some(rule);
        Ok(())
    }

    /// Buckets that no other non-shadow bucket contains.
    fn nonshadow_roots(&self) -> Vec<i32> {
        let mut contained = std::collections::BTreeSet::new();
        for b in self.buckets() {
            if self.is_shadow(b.id) {
                continue;
            }
            contained.extend(b.items.iter().copied().filter(|&i| i < 0));
        }
        self.buckets()
            .map(|b| b.id)
            .filter(|id| !self.is_shadow(*id) && !contained.contains(id))
            .collect()
    }

    /// Builds the device-class shadow hierarchies, like Ceph's
    /// `populate_classes`: one shadow per (bucket, class) reachable from a
    /// root. `requested` holds the ids the text asked for (`id -8 class ssd`);
    /// other shadows get the highest free id not requested.
    pub fn populate_classes(&mut self, requested: &BTreeMap<i32, BTreeMap<i32, i32>>) -> Result<(), ModelError> {
        let used: std::collections::BTreeSet<i32> =
            requested.values().flat_map(|m| m.values().copied()).collect();
        let mut roots = self.nonshadow_roots();
        // Ceph walks its root set in ascending id order.
        roots.sort_unstable();
        let classes: Vec<i32> = self.class_names.keys().copied().collect();
        for root in roots {
            for &class in &classes {
                self.clone_for_class(root, class, requested, &used, 0)?;
            }
        }
        Ok(())
    }

    fn clone_for_class(
        &mut self,
        original: i32,
        class: i32,
        requested: &BTreeMap<i32, BTreeMap<i32, i32>>,
        used: &std::collections::BTreeSet<i32>,
        depth: usize,
    ) -> Result<i32, ModelError> {
        if depth > limits::hierarchy_depth_max {
            return Err(ModelError::BadHierarchy { bucket: original, item: original });
        }
        let name = match self.item_name(original) {
            Some(n) => n.to_string(),
            None => return Err(ModelError::NoSuchItem { bucket: original, item: original }),
        };
        let class_name = self.class_names.get(&class).cloned().unwrap_or_default();
        let copy_name = format!("{name}~{class_name}");
        if let Some(existing) = self.item_id(&copy_name) {
            return Ok(existing);
        }
        let orig = self.bucket(original).cloned().ok_or(ModelError::NoSuchItem { bucket: original, item: original })?;
        let mut items = Vec::new();
        let mut weights = Vec::new();
        for (i, &item) in orig.items.iter().enumerate() {
            if item >= 0 {
                if self.device_classes.get(&item) == Some(&class) {
                    items.push(item);
                    weights.push(orig.item_weights[i]);
                }
            } else {
                let child = self.clone_for_class(item, class, requested, used, depth + 1)?;
                let child_weight = self.bucket(child).map_or(0, |b| b.weight);
                items.push(child);
                weights.push(child_weight);
            }
            // Ceph grows a uniform shadow item by item with
            // `crush_bucket_add_item`, which refuses (-EINVAL) any weight but
            // the empty copy's item weight, 0: the clone, and the whole
            // populate_classes, stop right there (Pacific's crushtool then
            // keeps the shadows built so far).
            if orig.alg == BucketAlg::Uniform {
                if let Some(&other) = weights.last().filter(|&&w| w != 0) {
                    return Err(ModelError::UniformWeights { bucket: original, first: 0, other });
                }
            }
        }
        let id = match requested.get(&original).and_then(|m| m.get(&class)) {
            Some(&id) => id,
            None => {
                let mut id = -1;
                while self.bucket(id).is_some() || used.contains(&id) || self.item_names.contains_key(&id) {
                    id -= 1;
                }
                id
            }
        };
        let shadow = Bucket::new(
            id,
            orig.type_id,
            orig.alg,
            orig.hash,
            items,
            weights,
            self.tunables.straw_calc_version,
        )?;
        self.add_bucket(&copy_name, shadow)?;
        self.class_buckets.entry(original).or_default().insert(class, id);
        Ok(id)
    }

    /// Our own invariants; the simulator and tests call this after edits.
    pub fn invariants(&self) {
        for (slot, b) in self.buckets.iter().enumerate() {
            if let Some(b) = b {
                assert_eq!(b.id, -1 - slot as i32, "bucket stored in the wrong slot");
                assert_eq!(b.items.len(), b.item_weights.len());
                match &b.derived {
                    Derived::List { sum_weights } => assert_eq!(sum_weights.len(), b.items.len()),
                    Derived::Straw { straws } => assert_eq!(straws.len(), b.items.len()),
                    Derived::Straw2 { recips } => {
                        assert_eq!(recips.len(), b.items.len());
                        assert!(recips.iter().zip(&b.item_weights).all(|(r, &w)| *r == Recip::new(w)));
                    }
                    Derived::Tree { node_weights } => {
                        assert!(node_weights.len() >= 2 * b.items.len() || b.items.is_empty())
                    }
                    Derived::None => {}
                }
                for &item in &b.items {
                    assert!(item < self.max_devices, "device beyond max_devices");
                }
            }
        }
        for (slot, r) in self.rules.iter().enumerate() {
            if let Some(r) = r {
                assert_eq!(r.id, slot as i32);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_weights_sum_to_root() {
        let w = [0x10000, 0x20000, 0x8000];
        let nodes = tree_node_weights(&w);
        assert_eq!(nodes.len(), 8);
        assert_eq!(nodes[4], 0x10000 + 0x20000 + 0x8000);
        assert_eq!(nodes[1], 0x10000);
        assert_eq!(nodes[3], 0x20000);
        assert_eq!(nodes[2], 0x30000);
        assert_eq!(nodes[5], 0x8000);
    }

    #[test]
    fn straw_heaviest_item_gets_longest_straw() {
        for version in [0, 1] {
            let s = straw_lengths(&[0x10000, 0x20000, 0x8000, 0], version);
            assert_eq!(s[3], 0);
            assert_eq!(s[2], 0x10000);
            assert!(s[1] > s[0] && s[0] > s[2]);
        }
    }

    #[test]
    fn uniform_rejects_unequal_weights() {
        let err = Bucket::new(-1, 1, BucketAlg::Uniform, 0, vec![0, 1], vec![1, 2], 0).unwrap_err();
        assert!(matches!(err, ModelError::UniformWeights { .. }));
    }
}
