//! The object store of one OSD shard: a region of a block device or file,
//! reached only through O_DIRECT io_uring I/O (glommio), with no page
//! cache and no locks (one store per shard, `!Send`).
//!
//! - [`device`] — the `Device` trait, glommio's DMA file, and a simulated
//!   device that loses, tears, fails and rots writes for tests.
//! - [`layout`] — superblock, regions, checkpoint and record headers.
//! - [`txn`] — transactions in Ceph's ObjectStore shape; errors.
//! - [`meta`] — in-memory metadata, physical ops, checkpoint form.
//! - [`store`] — planning, group commit, checkpoints, replay, reads,
//!   deep scrub, statfs.
//!
//! Invariants: an acknowledged transaction is durable (its data and its
//! journal record were synced); no acknowledged byte is overwritten in
//! place (writes go to new blocks; old ones are freed only once the record
//! that freed them is durable); every data block carries a crc32 that
//! every read checks, so a bad block is an error, never data.

pub mod device;
pub mod layout;
pub mod meta;
pub mod store;
pub mod txn;

pub use device::{Device, DmaDevice, ReadBytes, SimDevice, BLOCK};
pub use store::{Expect, MkfsOptions, Queued, StatFs, Store};
pub use txn::{CollId, Op, StoreError, Transaction};

/// Bounds of the store. Units last; each with its why.
pub mod limits {
    #![allow(non_upper_case_globals)]
    /// Operations per transaction: a compound client op is a few dozen.
    pub const txn_ops_max: usize = 1024;
    /// Bytes one write op carries (a client write is split above this).
    pub const write_bytes_max: usize = 64 << 20;
    /// Bytes one read returns.
    pub const read_bytes_max: usize = 64 << 20;
    /// Largest object (RADOS objects are usually 4 MiB; 1 TiB is plenty).
    pub const object_bytes_max: u64 = 1 << 40;
    /// An object name inside the store (the OSD's key: namespace + name).
    pub const object_name_bytes_max: usize = 4096;
    /// An xattr or omap key.
    pub const attr_name_bytes_max: usize = 1024;
    /// An xattr or omap value.
    pub const attr_value_bytes_max: usize = 1 << 20;
    /// Omap keys set by one op.
    pub const omap_keys_per_op_max: usize = 65_536;
    /// One journal record's body (a group of transactions).
    pub const record_body_bytes_max: usize = 64 << 20;
    /// Blocks written with one I/O when a group's blocks are neighbours.
    pub const write_run_blocks_max: usize = 256;
    /// A group with at most this many new blocks carries them inside its
    /// journal record: one device write and one sync per acknowledgement
    /// (the data area gets them later). Bigger groups write their blocks in
    /// place first — sequential runs are cheap, and doubling big writes is not.
    pub const inline_blocks_max: usize = 8;
    /// Journal records of small groups written at once (each durable on
    /// completion, retired in order): a device answers several writes in
    /// about the time of one, so a depth-32 workload is not serialised
    /// behind one record at a time. After a crash, records up to this many
    /// past the last good one may exist; mount skips this many seqs.
    pub const commits_in_flight_max: usize = 4;
    /// Blocks one write of a deferred flush carries (128 KiB), and such
    /// writes in flight at once: the flush runs beside journal records,
    /// which must not queue behind it on the device. With 1 MiB runs all
    /// issued at once, size-1 depth-32 writes had a p99 of ~3 ms; with
    /// these, ~1.7 ms and 5-10% more IOPS. The flush still keeps up:
    /// four 128 KiB writes in flight move blocks far faster than 4 KiB
    /// writers make them.
    pub const flush_run_blocks_max: usize = 32;
    pub const flush_writes_in_flight_max: usize = 4;
    /// Deferred blocks (journal only) held before they are written to the
    /// data area; their content stays in memory until then (4 MiB).
    pub const deferred_blocks_max: usize = 1024;
    /// Deltas after one base before the next wrap writes a full
    /// checkpoint: mount applies every delta of the base, so this bounds
    /// the work of a mount to ~this many journal-fulls of ops.
    pub const deltas_per_base_max: u64 = 256;
    /// The part of a checkpoint slot kept free (1/8): metadata estimates
    /// are bounds, and a checkpoint that does not fit would stop the store.
    pub const ckpt_reserve_fraction: u64 = 8;
    /// A full checkpoint re-measures the metadata bound before a refusal
    /// only once estimates since the last measure reach this part of a
    /// slot (1/32): a checkpoint rewrites all metadata, and near a full
    /// slot every write would otherwise ask for one.
    pub const remeasure_fraction: u64 = 32;
    /// The largest buffer one DMA write copies into; bigger writes (full
    /// checkpoints, deltas: megabytes) go out as pieces of this size.
    /// glommio hands out buffers up to its registered pool (10 MiB) from
    /// reused memory; a bigger one is a fresh allocation whose pages the
    /// kernel faults in and zeroes on every write.
    pub const dma_write_piece_bytes: usize = 1 << 20;
    /// Pieces of one big write in flight at once: enough to keep the
    /// device busy, few enough to stay well inside glommio's pool beside
    /// the shard's other I/O.
    pub const dma_write_pieces_in_flight_max: usize = 4;
}

#[cfg(test)]
mod tests;
