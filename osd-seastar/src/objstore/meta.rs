//! The store's metadata, held in memory: collections, objects (onodes)
//! with their block maps and per-block crc32, xattrs and omap; the
//! physical operations journal records carry; the checkpoint form.
//!
//! Invariants: `apply` is deterministic (replay after a crash rebuilds the
//! same metadata); every block index of an onode is below
//! `ceil(size / BLOCK)`; a device block belongs to at most one onode.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;

use rkyv::with::{AsVec, Unshare};
use rkyv::{Archive, Deserialize, Serialize};

use super::device::BLOCK;
use super::txn::CollId;

/// Where one 4 KiB block of an object lives, and its crc32.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockRef {
    /// Device block number (offset / BLOCK) from the start of the region.
    pub dev: u64,
    pub crc: u32,
}

/// The maps are archived as plain vectors of entries (a checkpoint is
/// written often and read once: building archived B-trees cost more than
/// the rest of the checkpoint).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct Onode {
    pub size: u64,
    pub mtime_ms: u64,
    /// Object block index → device block. Missing indexes are holes (zeros).
    #[rkyv(with = AsVec)]
    pub blocks: BTreeMap<u64, BlockRef>,
    #[rkyv(with = AsVec)]
    pub xattrs: BTreeMap<String, Vec<u8>>,
    #[rkyv(with = AsVec)]
    pub omap: BTreeMap<String, Vec<u8>>,
    pub omap_header: Vec<u8>,
}

/// The hasher of the store's in-memory hash tables: fast on short keys
/// (object names, block numbers), seeded per process.
pub type Hasher = foldhash::fast::RandomState;

/// Bytes of RAM an onode costs, approximately (for reporting and bounds).
pub fn onode_bytes(name: &str, o: &Onode) -> usize {
    // A BTreeMap allocates whole nodes of 11 slots, about 6 of them used
    // (keys inserted in order split nodes in half: a counting allocator
    // measured 121 bytes per omap key of 9 + 16 bytes), and a map of one
    // entry still holds a whole node (544 bytes for String keys and Vec
    // values, 560 measured with a 4-byte name and a 12-byte value: an
    // object's first xattr costs that). Strings and vectors add their heap length. An object
    // has its name twice: the hash table's key (a slot of key and onode,
    // tables kept at most 7/8 full: ~1/8 more) and the sorted set's.
    const ENTRY: usize = 40;
    const STRING: usize = std::mem::size_of::<String>();
    const BYTES: usize = std::mem::size_of::<Vec<u8>>();
    fn btree_nodes(n: usize) -> usize {
        n.div_ceil(6)
    }
    const NODE_HEADER: usize = 16;
    let map_bytes = |n: usize, entry: usize| btree_nodes(n) * (NODE_HEADER + 11 * entry);
    let heap = |m: &BTreeMap<String, Vec<u8>>| m.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
    (STRING + std::mem::size_of::<Onode>()) * 8 / 7
        + name.len()
        + STRING
        + name.len()
        + ENTRY
        + map_bytes(o.blocks.len(), 8 + std::mem::size_of::<BlockRef>())
        + map_bytes(o.xattrs.len(), STRING + BYTES)
        + heap(&o.xattrs)
        + map_bytes(o.omap.len(), STRING + BYTES)
        + heap(&o.omap)
        + o.omap_header.len()
}

/// One physical change, as journal records and replay apply it.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum PhysOp {
    CreateColl(CollId),
    RemoveColl(CollId),
    Touch { coll: CollId, obj: String, mtime_ms: u64 },
    Remove { coll: CollId, obj: String },
    /// Points block indexes at newly written device blocks.
    SetBlocks { coll: CollId, obj: String, blocks: Vec<(u64, BlockRef)> },
    /// Makes block indexes `[from, to)` holes.
    DropBlocks { coll: CollId, obj: String, from: u64, to: u64 },
    SetSize { coll: CollId, obj: String, size: u64 },
    SetAttr { coll: CollId, obj: String, name: String, value: Vec<u8> },
    RmAttr { coll: CollId, obj: String, name: String },
    OmapSet { coll: CollId, obj: String, entries: Vec<(String, Vec<u8>)> },
    OmapRm { coll: CollId, obj: String, keys: Vec<String> },
    OmapRmRange { coll: CollId, obj: String, start: String, end: String },
    OmapHeader { coll: CollId, obj: String, value: Vec<u8> },
    OmapClear { coll: CollId, obj: String },
}

impl PhysOp {
    /// The existing object an op changes in place (not for ops that
    /// create, remove or act on whole collections).
    pub fn object_target(&self) -> Option<(&CollId, &str)> {
        match self {
            PhysOp::SetBlocks { coll, obj, .. }
            | PhysOp::DropBlocks { coll, obj, .. }
            | PhysOp::SetSize { coll, obj, .. }
            | PhysOp::SetAttr { coll, obj, .. }
            | PhysOp::RmAttr { coll, obj, .. }
            | PhysOp::OmapSet { coll, obj, .. }
            | PhysOp::OmapRm { coll, obj, .. }
            | PhysOp::OmapRmRange { coll, obj, .. }
            | PhysOp::OmapHeader { coll, obj, .. }
            | PhysOp::OmapClear { coll, obj } => Some((coll, obj)),
            PhysOp::CreateColl(_) | PhysOp::RemoveColl(_) | PhysOp::Touch { .. } | PhysOp::Remove { .. } => None,
        }
    }
}

/// Bounds of how many bytes a change adds to the archived metadata (a
/// checkpoint's body), in the units the store keeps its metadata bound in.
/// Growth is never under-counted; a free is counted only where it is sure.
pub mod growth {
    /// A new collection (an empty one measures 160 bytes).
    pub const COLLECTION_BYTES: i64 = 256;
    /// An object's fixed part in an archived collection (an empty object
    /// measures less).
    pub const OBJECT_BYTES: i64 = 160;
    /// What a removed object surely frees of its archived part: its name
    /// and its block map entries (not its fixed part or maps).
    const REMOVED_BLOCK_ENTRY_BYTES: i64 = 24;
    /// An archived block map entry: index and block reference.
    pub const BLOCK_ENTRY_BYTES: i64 = 40;
    /// An archived map entry: the key's string and the value's vector
    /// (their bytes out of line are counted apart).
    pub const MAP_ENTRY_BYTES: usize = 16;
    /// Strings up to this long are stored inline in an archived entry.
    pub const INLINE_STRING_BYTES: usize = 8;
    /// Out-of-line bytes are unaligned, what follows them may not be: a
    /// change of their length moves its padding by up to this.
    pub const ALIGN_PAD_BYTES: usize = 7;

    /// Bytes a key takes out of line (short keys live inline).
    pub fn out_of_line(k: &str) -> usize {
        if k.len() > INLINE_STRING_BYTES {
            k.len()
        } else {
            0
        }
    }

    /// What setting `k` to a value of `v` bytes adds, where it held a value
    /// of `old` bytes (None: a new key).
    pub fn set_growth(k: &str, old: Option<usize>, v: usize) -> i64 {
        match old {
            // The same length lands in the same place; another may move
            // the node's alignment padding.
            Some(old) if old == v => 0,
            Some(old) => (v + ALIGN_PAD_BYTES).saturating_sub(old) as i64,
            None => (MAP_ENTRY_BYTES + out_of_line(k) + v + ALIGN_PAD_BYTES) as i64,
        }
    }

    /// What removing an entry surely frees: the entry and its out-of-line
    /// bytes, less what alignment padding may take back.
    pub fn surely_freed(k: &str, value_len: usize) -> i64 {
        -((MAP_ENTRY_BYTES + out_of_line(k) + value_len).saturating_sub(ALIGN_PAD_BYTES) as i64)
    }

    /// What creating the object `name` adds.
    pub fn new_object(name: &str) -> i64 {
        OBJECT_BYTES + name.len() as i64
    }

    /// What removing the object `name` with `blocks` block entries surely
    /// frees.
    pub fn removed_object(name: &str, blocks: usize) -> i64 {
        -(name.len() as i64 + blocks as i64 * REMOVED_BLOCK_ENTRY_BYTES)
    }
}

/// Applies an op that changes one existing object (see
/// [`PhysOp::object_target`]) to that object; returns its
/// [`growth`] bound, measured on the way (the map updates find the old
/// values anyway, so knowing them costs no lookup of its own).
pub fn apply_to_onode(o: &mut Onode, op: &PhysOp, freed: &mut Vec<u64>) -> i64 {
    use growth::{set_growth, surely_freed, BLOCK_ENTRY_BYTES};
    match op {
        PhysOp::SetBlocks { blocks, .. } => {
            let mut new_entries = 0;
            for (idx, b) in blocks {
                match o.blocks.insert(*idx, *b) {
                    Some(old) => freed.push(old.dev),
                    None => new_entries += 1,
                }
            }
            new_entries * BLOCK_ENTRY_BYTES
        }
        PhysOp::DropBlocks { from, to, .. } => {
            let doomed: Vec<u64> = o.blocks.range(*from..*to).map(|(i, _)| *i).collect();
            for i in doomed {
                if let Some(old) = o.blocks.remove(&i) {
                    freed.push(old.dev);
                }
            }
            0
        }
        PhysOp::SetSize { size, .. } => {
            o.size = *size;
            0
        }
        PhysOp::SetAttr { name, value, .. } => {
            let old = o.xattrs.insert(name.clone(), value.clone());
            set_growth(name, old.map(|v| v.len()), value.len())
        }
        PhysOp::RmAttr { name, .. } => o.xattrs.remove(name).map_or(0, |old| surely_freed(name, old.len())),
        PhysOp::OmapSet { entries, .. } => {
            let mut grown = 0;
            for (k, v) in entries {
                let old = o.omap.insert(k.clone(), v.clone());
                grown += set_growth(k, old.map(|v| v.len()), v.len());
            }
            grown
        }
        PhysOp::OmapRm { keys, .. } => keys.iter().map(|k| o.omap.remove(k).map_or(0, |old| surely_freed(k, old.len()))).sum(),
        PhysOp::OmapRmRange { start, end, .. } => {
            let doomed: Vec<String> = o.omap.range(start.clone()..).take_while(|(k, _)| *k < end).map(|(k, _)| k.clone()).collect();
            let mut grown = 0;
            for k in doomed {
                if let Some(old) = o.omap.remove(&k) {
                    grown += surely_freed(&k, old.len());
                }
            }
            grown
        }
        // The old header's bytes may stay as padding: count the new ones.
        PhysOp::OmapHeader { value, .. } => {
            o.omap_header = value.clone();
            value.len() as i64
        }
        // Freed for sure, but not counted: the next full checkpoint
        // measures it.
        PhysOp::OmapClear { .. } => {
            o.omap.clear();
            o.omap_header.clear();
            0
        }
        _ => 0,
    }
}

/// The physical ops of a group of transactions: the first part of a
/// journal record's body, and, byte for byte, one chunk of a checkpoint
/// delta (a wrap copies the archived ops instead of serializing them again
/// while every writer waits).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct RecordOps {
    pub txns: Vec<Vec<PhysOp>>,
}

/// The second part of a journal record's body: for a small group, the
/// content of its new data blocks, which then reach the data area later
/// (deferred) or by replay (redo); empty for a group written in place.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct RecordInline {
    pub blocks: Vec<InlineBlock>,
}

/// A data block carried inside a journal record. The content is shared
/// with the store's cache of unwritten blocks (archived as the bytes
/// themselves: serializing a record copies each block once).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct InlineBlock {
    /// Device block number in the data area.
    pub dev: u64,
    #[rkyv(with = Unshare)]
    pub data: Rc<Vec<u8>>,
}

/// One collection's objects, found by name through a hash table and
/// listed in byte order through a sorted set of the names.
///
/// Why two structures: a lookup in a sorted map of strings compares the
/// name with a dozen or more keys, each behind its own heap pointer (a
/// cache miss apiece); that was ~10% of an OSD's CPU per 4 KiB read. The
/// hash table finds an onode in one probe; the sorted set (names only)
/// serves listing and backfill in stable order.
///
/// Invariant: `order` holds exactly the keys of `by_name`. Only
/// `by_name` is archived in a checkpoint, as a plain vector of entries (an
/// archived hash table took most of a checkpoint's CPU to build); the
/// table and `order` are rebuilt at mount.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct Objects {
    #[rkyv(with = AsVec)]
    by_name: HashMap<String, Onode, Hasher>,
    #[rkyv(with = rkyv::with::Skip)]
    order: BTreeSet<String>,
}

impl Objects {
    pub fn get(&self, name: &str) -> Option<&Onode> {
        self.by_name.get(name)
    }

    pub fn get_mut(&mut self, name: &str) -> Option<&mut Onode> {
        self.by_name.get_mut(name)
    }

    /// The object, created empty if absent.
    pub fn get_or_create(&mut self, name: &str) -> &mut Onode {
        // No key allocated for an object that exists (a touch per write).
        if !self.by_name.contains_key(name) {
            self.order.insert(name.to_string());
            self.by_name.insert(name.to_string(), Onode::default());
        }
        self.by_name.get_mut(name).expect("present: inserted above if it was not")
    }

    pub fn remove(&mut self, name: &str) -> Option<Onode> {
        let o = self.by_name.remove(name)?;
        self.order.remove(name);
        Some(o)
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Every onode, in no particular order.
    pub fn values(&self) -> impl Iterator<Item = &Onode> {
        self.by_name.values()
    }

    /// Every object in byte order of its name.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Onode)> {
        self.order.iter().map(|n| (n, &self.by_name[n]))
    }

    /// Names after `after` (exclusive), in byte order.
    pub fn names_after<'a>(&'a self, after: &str) -> impl Iterator<Item = &'a String> {
        self.order.range::<str, _>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
    }

    /// Rebuilds the sorted names after a checkpoint was loaded (they are
    /// not archived).
    fn rebuild_order(&mut self) {
        self.order = self.by_name.keys().cloned().collect();
    }

    fn invariants(&self) {
        assert_eq!(self.order.len(), self.by_name.len(), "sorted names and objects differ in number");
        for n in &self.order {
            assert!(self.by_name.contains_key(n), "sorted name {n} has no object");
        }
    }
}

/// All metadata of a region; also its checkpoint form (archived as is, no
/// copy of the maps first; [`Meta::loaded`] completes a deserialized one).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    pub colls: BTreeMap<CollId, Objects>,
}

impl Meta {
    /// Completes metadata deserialized from a checkpoint (the sorted
    /// names are not archived).
    pub fn loaded(mut self) -> Meta {
        for objs in self.colls.values_mut() {
            objs.rebuild_order();
        }
        self
    }

    pub fn onode(&self, coll: &CollId, obj: &str) -> Option<&Onode> {
        self.colls.get(coll)?.get(obj)
    }

    /// Applies one physical op; device blocks it releases go to `freed`.
    /// Returns the op's [`growth`] bound of the archived metadata.
    /// Ops come from our own validated transactions or from checked
    /// records, so a missing collection here is skipped, not a panic.
    pub fn apply(&mut self, op: &PhysOp, freed: &mut Vec<u64>) -> i64 {
        match op {
            PhysOp::CreateColl(c) => {
                self.colls.entry(*c).or_default();
                growth::COLLECTION_BYTES
            }
            PhysOp::RemoveColl(c) => {
                if let Some(objs) = self.colls.remove(c) {
                    for o in objs.values() {
                        freed.extend(o.blocks.values().map(|b| b.dev));
                    }
                }
                0
            }
            PhysOp::Touch { coll, obj, mtime_ms } => {
                let Some(objs) = self.colls.get_mut(coll) else { return 0 };
                let new = objs.get(obj).is_none();
                objs.get_or_create(obj).mtime_ms = *mtime_ms;
                if new {
                    growth::new_object(obj)
                } else {
                    0
                }
            }
            PhysOp::Remove { coll, obj } => {
                let Some(o) = self.colls.get_mut(coll).and_then(|objs| objs.remove(obj)) else { return 0 };
                freed.extend(o.blocks.values().map(|b| b.dev));
                growth::removed_object(obj, o.blocks.len())
            }
            _ => {
                let Some((coll, obj)) = op.object_target() else { return 0 };
                let Some(o) = self.colls.get_mut(coll).and_then(|objs| objs.get_mut(obj)) else { return 0 };
                apply_to_onode(o, op, freed)
            }
        }
    }

    /// Our invariants (the tests call this).
    pub fn invariants(&self) {
        let mut seen = std::collections::HashSet::new();
        for objs in self.colls.values() {
            objs.invariants();
            for o in objs.values() {
                let nblocks = o.size.div_ceil(BLOCK as u64);
                for (&i, b) in &o.blocks {
                    assert!(i < nblocks, "block index {i} past size {}", o.size);
                    assert!(seen.insert(b.dev), "device block {} used twice", b.dev);
                }
            }
        }
    }
}
