//! Transactions in Ceph's ObjectStore shape, and the store's errors.
//!
//! A [`Transaction`] is a list of operations on collections (a PG is a
//! collection) and their objects, applied atomically and in order.

use std::collections::BTreeMap;

use rkyv::{Archive, Deserialize, Serialize};

/// A collection: a placement group (`pool`, `seed`), or the OSD's own
/// metadata collection (`pool == -1`).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[rkyv(derive(PartialEq, Eq, PartialOrd, Ord))]
pub struct CollId {
    pub pool: i64,
    pub seed: u32,
}

impl CollId {
    pub const META: CollId = CollId { pool: -1, seed: 0 };
}

impl std::fmt::Display for CollId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{:x}", self.pool, self.seed)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    CreateCollection(CollId),
    /// The collection must be empty.
    RemoveCollection(CollId),
    Touch { coll: CollId, obj: String },
    Write { coll: CollId, obj: String, offset: u64, data: Vec<u8> },
    Zero { coll: CollId, obj: String, offset: u64, len: u64 },
    Truncate { coll: CollId, obj: String, size: u64 },
    Remove { coll: CollId, obj: String },
    /// Copies `len` bytes of `src` at `src_off` into `dst` at `dst_off`.
    CloneRange { coll: CollId, src: String, dst: String, src_off: u64, len: u64, dst_off: u64 },
    SetAttr { coll: CollId, obj: String, name: String, value: Vec<u8> },
    RmAttr { coll: CollId, obj: String, name: String },
    OmapSetKeys { coll: CollId, obj: String, entries: BTreeMap<String, Vec<u8>> },
    OmapRmKeys { coll: CollId, obj: String, keys: Vec<String> },
    /// Removes keys in `[start, end)`.
    OmapRmRange { coll: CollId, obj: String, start: String, end: String },
    OmapSetHeader { coll: CollId, obj: String, value: Vec<u8> },
    OmapClear { coll: CollId, obj: String },
}

/// Operations applied atomically, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transaction {
    pub ops: Vec<Op>,
}

impl Transaction {
    pub fn new() -> Transaction {
        Transaction::default()
    }

    pub fn push(&mut self, op: Op) -> &mut Self {
        self.ops.push(op);
        self
    }
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum StoreError {
    #[error("no such collection {0}")]
    NoCollection(CollId),
    #[error("collection {0} exists")]
    CollectionExists(CollId),
    #[error("collection {0} is not empty")]
    CollectionNotEmpty(CollId),
    #[error("no such object {1} in {0}")]
    NoObject(CollId, String),
    #[error("no such attribute {0}")]
    NoAttr(String),
    #[error("out of space")]
    NoSpace,
    #[error("metadata full: {0}")]
    MetadataFull(String),
    #[error("checksum mismatch in {coll}/{obj} block {block}")]
    Checksum { coll: CollId, obj: String, block: u64 },
    #[error("i/o error: {0}")]
    Io(String),
    #[error("invalid: {0}")]
    Invalid(String),
    #[error("device holds another store: {0}")]
    WrongDevice(String),
    #[error("the store failed earlier and is read-only: {0}")]
    Failed(String),
}

impl StoreError {
    /// The errno-style code a reply carries.
    pub fn errno(&self) -> sepia_proto::errno::Errno {
        use sepia_proto::errno::Errno;
        match self {
            StoreError::NoCollection(_) | StoreError::NoObject(..) => Errno::NoEnt,
            StoreError::NoAttr(_) => Errno::NoData,
            StoreError::CollectionExists(_) => Errno::Exist,
            StoreError::CollectionNotEmpty(_) => Errno::NotEmpty,
            StoreError::NoSpace | StoreError::MetadataFull(_) => Errno::NoSpc,
            StoreError::Checksum { .. } | StoreError::Io(_) | StoreError::Failed(_) => Errno::Io,
            StoreError::Invalid(_) | StoreError::WrongDevice(_) => Errno::Inval,
        }
    }
}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        StoreError::Io(e.to_string())
    }
}
