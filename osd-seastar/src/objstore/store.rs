//! The store of one shard's region: transactions planned against the
//! metadata, group-committed to the journal, checkpointed, replayed.
//!
//! Write path: `submit` plans a transaction under the plan lock — every
//! written 4 KiB block goes to a newly allocated device block (a partial
//! block is merged with its old content first), so nothing durable is ever
//! overwritten in place — applies it to the in-memory metadata and queues
//! it. The committer — a task of its own (`run_committer`, as the OSD
//! runs it), or else the first waiter that finds no commit running —
//! takes every queued transaction, writes their data blocks
//! (coalesced into runs) and one journal record, issues one fdatasync, and
//! only then releases the blocks those transactions freed and answers
//! them. When the journal is half full the committer wraps it: it appends
//! a delta (the metadata ops of every transaction made durable since the
//! last wrap, no data: the ops chunks of their records, copied as they
//! were archived) after the current checkpoint in its slot and starts the
//! journal over. A delta holds only what is durable, so planning goes on
//! while it is written. When the slot has no room for the delta (or
//! `deltas_per_base_max` is reached) the committer, holding the plan lock
//! so the metadata matches what is durable, writes a full checkpoint of
//! the whole metadata into the other slot instead, which the next deltas
//! then follow. A wrap thus costs what changed, not the size of the
//! metadata.
//!
//! Mount: the newest valid checkpoint, its deltas in order up to the first
//! that is torn or stale, then every journal record with the
//! next sequence number and a valid crc; the data blocks of the last record
//! are verified too (an earlier record was followed by a later one, which
//! is only written after the earlier one's sync), so a record whose data
//! never reached the medium is never applied.
//!
//! Memory: metadata lives in RAM. An object costs about 220 bytes plus
//! twice its name, plus its block map: a whole B-tree node (280 bytes)
//! for its first 4 KiB blocks, ~47 per block beyond (559 bytes for a
//! one-block object with a 29-byte name, by the formula a test checks).
//! An omap key or xattr costs about 91 bytes plus its key and value (116
//! for a 9-byte key and a 16-byte value), except that an object's first
//! xattr or omap key allocates a whole node: 544 bytes plus its key and
//! value (an OSD's version attr makes an object cost ~1100 bytes).
//! `meta::onode_bytes` is the formula (its node sizes were checked with a
//! counting allocator), `memory_usage` reports the total.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::rc::Rc;

use super::device::{Device, ReadBytes, BLOCK};
use super::layout::{CkptHeader, DeltaHeader, RecordHeader, RegionHeader, Superblock, DELTA_HEADER_BYTES, RECORD_HEADER_BYTES};
use super::limits;
use super::meta::growth::{new_object, removed_object, set_growth, surely_freed, BLOCK_ENTRY_BYTES, COLLECTION_BYTES};
use super::meta::{onode_bytes, BlockRef, Hasher, InlineBlock, Meta, Onode, PhysOp, RecordInline, RecordOps};
use super::txn::{CollId, Op, StoreError, Transaction};

/// What mkfs needs to know.
#[derive(Debug, Clone)]
pub struct MkfsOptions {
    pub fsid: [u8; 16],
    pub osd: i32,
    pub shards: u32,
    /// The OSD's uuid (kept in the superblock).
    pub osd_uuid: [u8; 16],
    /// Forced journal size per region (default: 1/16 of it, 4 MiB..1 GiB).
    pub journal_bytes: Option<u64>,
    /// Forced checkpoint slot size (default: 1/32 of the region).
    pub checkpoint_bytes: Option<u64>,
}

/// Who must own a device for `mount` to accept it.
#[derive(Debug, Clone, Copy)]
pub struct Expect {
    pub fsid: Option<[u8; 16]>,
    pub osd: i32,
    pub shards: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatFs {
    pub total_bytes: u64,
    pub used_bytes: u64,
    pub available_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    pub commits: u64,
    pub txns: u64,
    /// Full checkpoints (the whole metadata written).
    pub checkpoints: u64,
    /// Journal wraps that wrote a delta (the ops since) instead.
    pub deltas: u64,
    /// Journal records started while an earlier one was still in flight.
    pub pipelined: u64,
    /// Deferred blocks written to the data area beside the records
    /// (flushes, not counting those of wraps).
    pub deferred_flushes: u64,
    pub checksum_errors: u64,
    pub replayed_records: u64,
    /// Transactions refused because the metadata would outgrow a checkpoint.
    pub metadata_full: u64,
}

/// Bitmap allocator over the data blocks, next-fit from a cursor so that a
/// group's blocks land next to each other.
struct Alloc {
    used: Vec<u64>,
    blocks: u64,
    free: u64,
    cursor: u64,
}

impl Alloc {
    fn new(blocks: u64) -> Alloc {
        Alloc { used: vec![0; blocks.div_ceil(64) as usize], blocks, free: blocks, cursor: 0 }
    }
    fn is_used(&self, b: u64) -> bool {
        self.used[(b / 64) as usize] & (1 << (b % 64)) != 0
    }
    fn mark(&mut self, b: u64) {
        if b < self.blocks && !self.is_used(b) {
            self.used[(b / 64) as usize] |= 1 << (b % 64);
            self.free -= 1;
        }
    }
    fn release(&mut self, b: u64) {
        if b < self.blocks && self.is_used(b) {
            self.used[(b / 64) as usize] &= !(1 << (b % 64));
            self.free += 1;
        }
    }
    fn alloc(&mut self) -> Option<u64> {
        if self.free == 0 {
            return None;
        }
        for _ in 0..self.blocks {
            let b = self.cursor;
            self.cursor = (self.cursor + 1) % self.blocks;
            // Skip whole used words quickly.
            if b.is_multiple_of(64) && self.used[(b / 64) as usize] == u64::MAX && self.blocks - b >= 64 {
                self.cursor = (b + 64) % self.blocks;
                continue;
            }
            if !self.is_used(b) {
                self.mark(b);
                return Some(b);
            }
        }
        None
    }
}

impl Inner {
    /// Whether the metadata bound holds estimated growth on top of the
    /// last full checkpoint's measured body (a full checkpoint would
    /// measure it, and may find room).
    fn bound_is_estimate(&self) -> bool {
        self.meta_bytes_bound > self.ckpt_body_bytes
    }

    /// Whether a full checkpoint is worth it to re-measure the bound: only
    /// once enough estimated growth piled up since the last measure (a
    /// slot's `1/remeasure_fraction`). Near a full slot, re-measuring on
    /// every write rewrote all metadata per write (seen: 40% of an OSD's
    /// CPU and stalls of most of a second).
    fn worth_remeasuring(&self, ckpt_bytes: u64) -> bool {
        self.bound_is_estimate() && self.meta_bytes_bound - self.ckpt_body_bytes >= ckpt_bytes / limits::remeasure_fraction
    }
}

/// Counts a `checkpoint_exclusive` caller for as long as it lives (also
/// when its future is dropped), and wakes the dedicated committer, which
/// steps aside for it, when it is gone.
struct ExclusiveWaiting<'a> {
    count: &'a Cell<u32>,
    ended: &'a tokio::sync::Notify,
}

impl<'a> ExclusiveWaiting<'a> {
    fn new(count: &'a Cell<u32>, ended: &'a tokio::sync::Notify) -> Self {
        count.set(count.get() + 1);
        ExclusiveWaiting { count, ended }
    }
}

impl Drop for ExclusiveWaiting<'_> {
    fn drop(&mut self) {
        self.count.set(self.count.get() - 1);
        self.ended.notify_waiters();
    }
}

/// A deferred flush running beside the records in flight.
type Background<'a> = std::pin::Pin<Box<dyn Future<Output = Result<(), StoreError>> + 'a>>;

/// An inline group's journal record being written (see
/// [`Store::commit_all_locked`]).
struct Flight<'a> {
    group: Vec<QueuedTxn>,
    /// The record (shared with its write) and where its ops chunk lies,
    /// which goes into the next delta once the record is durable.
    record: Rc<Vec<u8>>,
    ops_chunk: std::ops::Range<usize>,
    write: std::pin::Pin<Box<dyn Future<Output = std::io::Result<()>> + 'a>>,
    done: Option<std::io::Result<()>>,
}

/// A transaction planned and queued for the journal (see [`Store::enqueue`]).
pub struct Queued(tokio::sync::oneshot::Receiver<Result<(), StoreError>>);

struct QueuedTxn {
    ops: Vec<PhysOp>,
    /// (data block number, content)
    data: Vec<(u64, Rc<Vec<u8>>)>,
    freed: Vec<u64>,
    done: tokio::sync::oneshot::Sender<Result<(), StoreError>>,
}

struct Inner {
    meta: Meta,
    alloc: Alloc,
    /// Next record offset inside the journal and its sequence number.
    journal_head: u64,
    journal_seq: u64,
    ckpt_seq: u64,
    queue: Vec<QueuedTxn>,
    /// Blocks written by queued or committing groups, or deferred, that
    /// are not yet in the data area: reads are served from here.
    unwritten: HashMap<u64, Rc<Vec<u8>>, Hasher>,
    /// Blocks durable only inside journal records (inline), waiting for
    /// their data-area write (always before the next checkpoint).
    deferred: BTreeSet<u64>,
    failed: Option<String>,
    counters: Counters,
    /// An upper bound of the next checkpoint's size: the last checkpoint's
    /// body plus what ops since may have added, as `Meta::apply` measured
    /// it (`meta::growth`).
    meta_bytes_bound: u64,
    /// The body size of the last full checkpoint (the bound's measured
    /// part).
    ckpt_body_bytes: u64,
    /// The next delta as it will be written: room for its header, then
    /// the ops chunk of every group made durable since the last checkpoint
    /// or delta, in commit order (which is planning order), copied from
    /// their records. Bounded by the journal: a wrap empties it.
    ops_since: Vec<u8>,
    /// Where the next delta goes inside the current checkpoint's slot, and
    /// its index.
    delta_offset: u64,
    delta_index: u64,
}

pub struct Store<D: Device> {
    dev: D,
    base: u64,
    header: RegionHeader,
    inner: RefCell<Inner>,
    committing: Cell<bool>,
    /// Woken whenever a committer finishes (`committing` turns false).
    commit_ended: tokio::sync::Notify,
    /// The committer waiting on records in flight: woken by `enqueue`, so
    /// that a new group starts while older records are still in flight.
    committer: Cell<Option<std::task::Waker>>,
    /// Set by [`Store::run_committer`]: a task of its own commits, so no
    /// waiter drives the group commit (and is held by it until the queue
    /// runs dry, its own transaction long durable).
    dedicated: Cell<bool>,
    /// Wakes the dedicated committer when a transaction is queued (a
    /// permit is kept if it is busy, so no wake-up is lost).
    work: tokio::sync::Notify,
    /// `checkpoint_exclusive` callers waiting for the committer to end:
    /// the dedicated committer lets them go first (else it would take the
    /// commit again at once under load, and they would wait forever).
    exclusive_waiting: Cell<u32>,
    plan_lock: async_lock::Mutex<()>,
    /// `limits::deltas_per_base_max`, lowered by tests to reach full
    /// checkpoints often.
    deltas_per_base_max: Cell<u64>,
    /// `limits::deferred_blocks_max`, lowered by tests so that flushes
    /// meet records in flight, frees and reuse of the flushed blocks.
    deferred_blocks_max: Cell<usize>,
    /// The last delta's buffer, kept for the next: a delta is megabytes,
    /// and growing a fresh one by doubling faulted in new pages and copied
    /// it over and over (2-3% of a shard's CPU at depth-32 writes). Never
    /// larger than a checkpoint slot (a bigger delta is a full checkpoint).
    delta_buf: Cell<Vec<u8>>,
    /// The last full checkpoint's buffer (header block and body), kept for
    /// the next for the same reason: a fresh one of megabytes had the
    /// kernel fault in and zero its pages each time (5-8% of a size-3
    /// replica's CPU). Never larger than a checkpoint slot.
    ckpt_buf: Cell<Vec<u8>>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn block_crc(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}

impl<D: Device> Store<D> {
    /// Formats `dev` for `opts.shards` shards.
    pub async fn mkfs(dev: &D, opts: &MkfsOptions) -> Result<(), StoreError> {
        if opts.shards == 0 || opts.shards > super::layout::SHARDS_MAX {
            return Err(StoreError::Invalid(format!("shard count {} out of range", opts.shards)));
        }
        let sb = Superblock { fsid: opts.fsid, osd: opts.osd, shards: opts.shards, device_bytes: dev.len(), osd_uuid: opts.osd_uuid };
        for shard in 0..opts.shards {
            let (start, len) = sb.region(shard);
            let instance = u64::from_le_bytes(sepia_proto::uuid::random()[..8].try_into().expect("8 bytes"));
            let h = RegionHeader::plan(shard, instance, len, opts.journal_bytes, opts.checkpoint_bytes).map_err(StoreError::Invalid)?;
            dev.write(start, &h.encode(&opts.fsid, opts.osd)).await?;
            let mut framed = vec![0; BLOCK];
            archive_after(&Meta::default(), &mut framed)?;
            // Checkpoint seq goes to slot seq % 2, so the next checkpoint
            // (seq 2) never overwrites this, the only valid one.
            Self::write_ckpt(dev, start, &h, 1, 1, 1, &mut framed).await?;
            dev.write(start + h.ckpt_offset(0), &vec![0; BLOCK]).await?;
            dev.write(start + h.journal_offset(), &vec![0; BLOCK]).await?;
        }
        dev.write(0, &sb.encode()).await?;
        dev.sync().await?;
        Ok(())
    }

    /// Writes a checkpoint from `framed`: a block of room for its header,
    /// then its body (padded here to whole blocks).
    async fn write_ckpt(dev: &D, base: u64, h: &RegionHeader, slot: usize, seq: u64, journal_seq: u64, framed: &mut Vec<u8>) -> Result<(), StoreError> {
        let body_len = framed.len() - BLOCK;
        let total = BLOCK + body_len.div_ceil(BLOCK) * BLOCK;
        if total as u64 > h.ckpt_bytes {
            return Err(StoreError::MetadataFull(format!("checkpoint of {} bytes exceeds its {}-byte slot", total, h.ckpt_bytes)));
        }
        let header = CkptHeader { instance: h.instance, seq, journal_seq, body_len: body_len as u64, body_crc: crc32fast::hash(&framed[BLOCK..]) };
        let encoded = header.encode();
        framed[..encoded.len()].copy_from_slice(&encoded);
        framed.resize(total, 0);
        dev.write(base + h.ckpt_offset(slot), framed).await?;
        Ok(())
    }

    /// The device's superblock: whose it is and how it was formatted
    /// (an error when it holds no valid Sepia store).
    pub async fn superblock(dev: &D) -> Result<Superblock, StoreError> {
        Superblock::decode(&dev.read(0, BLOCK).await?).map_err(StoreError::WrongDevice)
    }

    /// Mounts shard `shard` of `dev`, refusing a device of another OSD,
    /// cluster or shard count; replays the journal.
    pub async fn mount(dev: D, shard: u32, expect: Expect) -> Result<Store<D>, StoreError> {
        let sb = Superblock::decode(&dev.read(0, BLOCK).await?).map_err(StoreError::WrongDevice)?;
        if sb.osd != expect.osd {
            return Err(StoreError::WrongDevice(format!("device belongs to osd.{}, not osd.{}", sb.osd, expect.osd)));
        }
        if sb.shards != expect.shards {
            return Err(StoreError::WrongDevice(format!("device was made for {} shards, not {}", sb.shards, expect.shards)));
        }
        if expect.fsid.is_some_and(|f| f != sb.fsid) {
            return Err(StoreError::WrongDevice("device belongs to another cluster".into()));
        }
        if sb.device_bytes > dev.len() {
            return Err(StoreError::WrongDevice("device is smaller than when it was formatted".into()));
        }
        if shard >= sb.shards {
            return Err(StoreError::Invalid(format!("shard {shard} of {}", sb.shards)));
        }
        let (base, _) = sb.region(shard);
        let header = RegionHeader::decode(&dev.read(base, BLOCK).await?, &sb.fsid, sb.osd).map_err(StoreError::WrongDevice)?;
        if header.shard != shard {
            return Err(StoreError::WrongDevice(format!("region {shard} says it is shard {}", header.shard)));
        }
        // The newest valid checkpoint.
        let mut best: Option<(CkptHeader, Vec<u8>, usize)> = None;
        for slot in 0..2 {
            let off = base + header.ckpt_offset(slot);
            let Some(h) = CkptHeader::decode(&dev.read(off, BLOCK).await?, header.instance) else { continue };
            if BLOCK as u64 + h.body_len > header.ckpt_bytes {
                continue;
            }
            let body_blocks = (h.body_len as usize).div_ceil(BLOCK) * BLOCK;
            let body = if body_blocks == 0 { Vec::new() } else { dev.read(off + BLOCK as u64, body_blocks).await? };
            if crc32fast::hash(&body[..h.body_len as usize]) != h.body_crc {
                continue;
            }
            if best.as_ref().is_none_or(|(b, _, _)| h.seq > b.seq) {
                best = Some((h, body[..h.body_len as usize].to_vec(), slot));
            }
        }
        let (ckpt, body, slot) = best.ok_or_else(|| StoreError::WrongDevice("no valid checkpoint".into()))?;
        let mut aligned = rkyv::util::AlignedVec::<16>::new();
        aligned.extend_from_slice(&body);
        let mut meta = rkyv::from_bytes::<Meta, rkyv::rancor::Error>(&aligned).map_err(|e| StoreError::Invalid(format!("checkpoint: {e}")))?.loaded();
        let ckpt_body_bytes = body.len() as u64;
        // The base's deltas, in index order, up to the first that is not
        // valid (torn or stale: its journal records were not dropped yet).
        let slot_base = base + header.ckpt_offset(slot);
        let mut delta_offset = BLOCK as u64 + ckpt_body_bytes.div_ceil(BLOCK as u64) * BLOCK as u64;
        let mut delta_index = 1u64;
        let mut journal_seq = ckpt.journal_seq;
        let mut scratch = Vec::new();
        let mut delta_growth: i64 = 0;
        while delta_offset + BLOCK as u64 <= header.ckpt_bytes {
            let first = dev.read(slot_base + delta_offset, BLOCK).await?;
            let Some(h) = DeltaHeader::decode(&first, header.instance) else { break };
            let len = DeltaHeader::padded_len(h.body_len as usize) as u64;
            if h.base_seq != ckpt.seq || h.index != delta_index || delta_offset + len > header.ckpt_bytes || h.journal_seq < journal_seq {
                break;
            }
            let whole = if len > BLOCK as u64 { dev.read(slot_base + delta_offset, len as usize).await? } else { first };
            let body = &whole[DELTA_HEADER_BYTES..DELTA_HEADER_BYTES + h.body_len as usize];
            if crc32fast::hash(body) != h.body_crc {
                break;
            }
            // A delta whose crc holds was written by us: one that does not
            // decode is corruption, not a torn write.
            let corrupt = |e: String| StoreError::Invalid(format!("checkpoint delta {}: {e}", h.index));
            let mut rest = body;
            while !rest.is_empty() {
                let (archive, after) = split_ops_chunk(rest).ok_or_else(|| corrupt("ops chunk overruns the delta".into()))?;
                rest = after;
                for txn in &decode_ops(archive).map_err(|e| corrupt(e.to_string()))? {
                    for op in txn {
                        scratch.clear();
                        delta_growth += meta.apply(op, &mut scratch);
                    }
                }
            }
            journal_seq = h.journal_seq;
            delta_offset += len;
            delta_index += 1;
        }
        // Replay.
        let mut seq = journal_seq;
        let mut pos = 0u64;
        let mut last_blocks: Vec<(u64, u32)> = Vec::new();
        let mut records: Vec<Replayed> = Vec::new();
        loop {
            if pos + BLOCK as u64 > header.journal_bytes {
                break;
            }
            let first = dev.read(base + header.journal_offset() + pos, BLOCK).await?;
            let Some(h) = RecordHeader::decode(&first, header.instance) else { break };
            let len = RecordHeader::padded_len(h.body_len as usize);
            if h.seq != seq || pos + len as u64 > header.journal_bytes || h.body_len as usize > limits::record_body_bytes_max {
                break;
            }
            let whole = if len > BLOCK { dev.read(base + header.journal_offset() + pos, len).await? } else { first };
            let body = &whole[RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + h.body_len as usize];
            if crc32fast::hash(body) != h.body_crc {
                break;
            }
            let Some(rec) = decode_record(body, len as u64) else { break };
            records.push(rec);
            seq += 1;
            pos += len as u64;
        }
        // Only the last record's data may be missing: verify it.
        if let Some(rec) = records.last() {
            let inline: BTreeSet<u64> = rec.inline.iter().map(|b| b.dev).collect();
            for op in rec.txns.iter().flatten() {
                if let PhysOp::SetBlocks { blocks, .. } = op {
                    last_blocks.extend(blocks.iter().filter(|(_, b)| !inline.contains(&b.dev)).map(|(_, b)| (b.dev, b.crc)));
                }
            }
            let mut intact = true;
            for (b, crc) in &last_blocks {
                if *b >= header.data_blocks {
                    intact = false;
                    break;
                }
                let data = dev.read(base + header.data_offset() + b * BLOCK as u64, BLOCK).await?;
                if block_crc(&data) != *crc {
                    intact = false;
                    break;
                }
            }
            if !intact {
                let dropped = records.pop().expect("a last record");
                seq -= 1;
                pos -= dropped.len;
            }
        }
        let replayed = records.len() as u64;
        // Redo: inline blocks go to the data area, unless a later record
        // wrote that block in place (its content is newer).
        let mut redo: BTreeMap<u64, Rc<Vec<u8>>> = BTreeMap::new();
        for rec in &records {
            let mut freed = Vec::new();
            for op in rec.txns.iter().flatten() {
                delta_growth += meta.apply(op, &mut freed);
            }
            let inline: BTreeSet<u64> = rec.inline.iter().map(|b| b.dev).collect();
            for op in rec.txns.iter().flatten() {
                if let PhysOp::SetBlocks { blocks, .. } = op {
                    for (_, b) in blocks {
                        if !inline.contains(&b.dev) {
                            redo.remove(&b.dev);
                        }
                    }
                }
            }
            for b in &rec.inline {
                if b.dev < header.data_blocks && b.data.len() == BLOCK {
                    redo.insert(b.dev, b.data.clone());
                }
            }
        }
        for (b, d) in &redo {
            dev.write(base + header.data_offset() + b * BLOCK as u64, d).await?;
        }
        if !redo.is_empty() {
            dev.sync().await?;
        }
        let mut alloc = Alloc::new(header.data_blocks);
        for objs in meta.colls.values() {
            for o in objs.values() {
                for b in o.blocks.values() {
                    alloc.mark(b.dev);
                }
            }
        }
        let store = Store {
            dev,
            base,
            header,
            inner: RefCell::new(Inner {
                meta,
                alloc,
                journal_head: pos,
                journal_seq: seq,
                ckpt_seq: ckpt.seq,
                queue: Vec::new(),
                unwritten: HashMap::default(),
                deferred: BTreeSet::new(),
                failed: None,
                counters: Counters { replayed_records: replayed, ..Counters::default() },
                // Deltas may have grown the metadata past the base.
                meta_bytes_bound: ckpt_body_bytes.saturating_add_signed(delta_growth),
                ckpt_body_bytes,
                ops_since: vec![0; DELTA_HEADER_BYTES],
                delta_offset,
                delta_index,
            }),
            committing: Cell::new(false),
            commit_ended: tokio::sync::Notify::new(),
            committer: Cell::new(None),
            dedicated: Cell::new(false),
            work: tokio::sync::Notify::new(),
            exclusive_waiting: Cell::new(0),
            plan_lock: async_lock::Mutex::new(()),
            deltas_per_base_max: Cell::new(limits::deltas_per_base_max),
            deferred_blocks_max: Cell::new(limits::deferred_blocks_max),
            delta_buf: Cell::new(Vec::new()),
            ckpt_buf: Cell::new(Vec::new()),
        };
        // Records written in flight with the first missing one may have
        // reached the disk without it; the journal goes on past their seqs,
        // so none of them can ever pass for a later record. A fresh
        // checkpoint (after a replay) or an empty delta records that seq
        // before any new record is written.
        store.inner.borrow_mut().journal_seq = seq + limits::commits_in_flight_max as u64;
        {
            let _guard = store.plan_lock.lock().await;
            if replayed > 0 || pos > 0 {
                store.checkpoint().await?;
            } else {
                store.wrap(true).await?;
            }
        }
        Ok(store)
    }

    /// Flushes everything queued and writes a checkpoint, leaving the store
    /// usable (a clean shutdown calls this, then exits).
    pub async fn sync_checkpoint(&self) -> Result<(), StoreError> {
        // Any full checkpoint that ends after this holds everything queued
        // now (checkpoints run under the plan lock, after the queue).
        let asked_at = self.inner.borrow().counters.checkpoints;
        self.checkpoint_exclusive(asked_at).await
    }

    /// Flushes everything queued and writes a final checkpoint.
    pub async fn umount(self) -> Result<(), StoreError> {
        let _guard = self.plan_lock.lock().await;
        self.commit_all_locked(true).await;
        if let Some(f) = &self.inner.borrow().failed {
            return Err(StoreError::Failed(f.clone()));
        }
        self.checkpoint().await
    }

    fn data_offset(&self, block: u64) -> u64 {
        self.base + self.header.data_offset() + block * BLOCK as u64
    }

    /// The content of a data block, from the not-yet-written cache or the
    /// device, checked against its crc.
    async fn read_block(&self, coll: &CollId, obj: &str, idx: u64, b: BlockRef) -> Result<ReadBytes, StoreError> {
        if let Some(d) = self.inner.borrow().unwritten.get(&b.dev) {
            return Ok(ReadBytes::Shared(d.clone()));
        }
        let data = self.dev.read_bytes(self.data_offset(b.dev), BLOCK).await?;
        if block_crc(data.as_ref()) != b.crc {
            self.inner.borrow_mut().counters.checksum_errors += 1;
            return Err(StoreError::Checksum { coll: *coll, obj: obj.to_string(), block: idx });
        }
        Ok(data)
    }

    /// Applies `txn` atomically; returns once it is durable.
    pub async fn submit(&self, txn: Transaction) -> Result<(), StoreError> {
        let queued = self.enqueue(txn).await?;
        self.durable(queued).await
    }

    /// Plans `txn` and queues it for the journal: from here on reads see
    /// it and later transactions are planned after it, but it is durable
    /// only once [`Store::durable`] returns. Callers that must keep an
    /// order (a PG's log) enqueue from one task and wait elsewhere.
    pub async fn enqueue(&self, txn: Transaction) -> Result<Queued, StoreError> {
        if txn.ops.len() > limits::txn_ops_max {
            return Err(StoreError::Invalid(format!("{} ops exceed {}", txn.ops.len(), limits::txn_ops_max)));
        }
        let mut remeasured = false;
        let rx = loop {
            let guard = self.plan_lock.lock().await;
            if let Some(f) = &self.inner.borrow().failed {
                return Err(StoreError::Failed(f.clone()));
            }
            let (phys, data) = self.plan(&txn).await?;
            let mut inner = self.inner.borrow_mut();
            // Metadata must always fit a checkpoint: a transaction that
            // could grow it past the slot (less a reserve) is refused with
            // ENOSPC, while ones that shrink it (removes) go on.
            let limit = self.header.ckpt_bytes.saturating_sub(BLOCK as u64 + self.header.ckpt_bytes / limits::ckpt_reserve_fraction);
            // A cheap over-estimate (it looks no omap key up) admits
            // almost every transaction; the precise one only near the limit.
            let fits = |growth: i64| growth <= 0 || inner.meta_bytes_bound + growth as u64 <= limit;
            let mut growth = txn_growth_bytes(&inner.meta, &phys, false);
            if !fits(growth) {
                growth = txn_growth_bytes(&inner.meta, &phys, true);
            }
            if !fits(growth) {
                for (b, _) in &data {
                    inner.alloc.release(*b);
                }
                // The bound is the last full checkpoint plus estimates
                // since (deltas do not measure): measure it once with a
                // full checkpoint before refusing.
                if !remeasured && inner.worth_remeasuring(self.header.ckpt_bytes) {
                    let asked_at = inner.counters.checkpoints;
                    drop(inner);
                    drop(guard);
                    self.checkpoint_exclusive(asked_at).await?;
                    remeasured = true;
                    continue;
                }
                inner.counters.metadata_full += 1;
                return Err(StoreError::MetadataFull(format!("metadata of ~{} bytes would outgrow the {}-byte checkpoint slot", inner.meta_bytes_bound + growth as u64, self.header.ckpt_bytes)));
            }
            let (tx, rx) = tokio::sync::oneshot::channel();
            let mut txn_freed = Vec::new();
            // The bound grows by what applying measures: the same rules as
            // the precise estimate, with the old values found on the way.
            let mut applied_growth = 0;
            for op in &phys {
                applied_growth += inner.meta.apply(op, &mut txn_freed);
            }
            inner.meta_bytes_bound = inner.meta_bytes_bound.saturating_add_signed(applied_growth);
            for (b, d) in &data {
                inner.unwritten.insert(*b, d.clone());
            }
            inner.queue.push(QueuedTxn { ops: phys, data, freed: txn_freed, done: tx });
            if self.dedicated.get() {
                self.work.notify_one();
            }
            if let Some(committer) = self.committer.take() {
                committer.wake();
            }
            break rx;
        };
        Ok(Queued(rx))
    }

    /// Flushes everything queued and writes a full checkpoint as the only
    /// committer: waits (without the plan lock, which a running committer
    /// may need to wrap) until no commit is running. `asked_at` is
    /// `counters.checkpoints` when the caller decided it needs one: a full
    /// checkpoint finished since has measured for it, so concurrent askers
    /// share one instead of writing all metadata once each.
    async fn checkpoint_exclusive(&self, asked_at: u64) -> Result<(), StoreError> {
        let _waiting = ExclusiveWaiting::new(&self.exclusive_waiting, &self.commit_ended);
        self.checkpoint_exclusive_waiting(asked_at).await
    }

    async fn checkpoint_exclusive_waiting(&self, asked_at: u64) -> Result<(), StoreError> {
        loop {
            // Registered before the check: a commit that ends between the
            // check and the wait still wakes us.
            let commit_ended = self.commit_ended.notified();
            let _guard = self.plan_lock.lock().await;
            if self.inner.borrow().counters.checkpoints > asked_at {
                return Ok(());
            }
            if self.committing.get() {
                drop(_guard);
                commit_ended.await;
                continue;
            }
            self.committing.set(true);
            self.commit_all_locked(true).await;
            let failed = self.inner.borrow().failed.clone();
            let result = match failed {
                Some(f) => Err(StoreError::Failed(f)),
                None => self.checkpoint().await,
            };
            self.end_commit();
            return result;
        }
    }

    /// Commits whatever is queued, as a task of its own, for as long as it
    /// is polled: each transaction is then answered as soon as its record
    /// is durable. (Without it, the first waiter that finds no commit
    /// running drives the commit, and its own answer waits until the queue
    /// runs dry: under steady load, long after its record was durable.)
    pub async fn run_committer(&self) {
        self.dedicated.set(true);
        loop {
            if self.committing.get() || self.exclusive_waiting.get() > 0 {
                // A full checkpoint runs or waits to: let it.
                let ended = self.commit_ended.notified();
                let mut ended = std::pin::pin!(ended);
                ended.as_mut().enable();
                if self.committing.get() || self.exclusive_waiting.get() > 0 {
                    ended.await;
                    // Its task was woken first: let it take the commit.
                    super::device::yield_once().await;
                }
                continue;
            }
            if self.inner.borrow().queue.is_empty() {
                self.work.notified().await;
                continue;
            }
            self.committing.set(true);
            self.commit_all().await;
            self.end_commit();
        }
    }

    /// The committer is done: let a waiting [`Store::checkpoint_exclusive`]
    /// take its turn.
    fn end_commit(&self) {
        self.committing.set(false);
        self.commit_ended.notify_waiters();
    }

    /// Waits until a queued transaction is durable (driving the group
    /// commit if nobody else is and no [`Store::run_committer`] task runs).
    pub async fn durable(&self, queued: Queued) -> Result<(), StoreError> {
        let rx = queued.0;
        if !self.dedicated.get() && !self.committing.get() {
            self.committing.set(true);
            self.commit_all().await;
            self.end_commit();
        }
        rx.await.unwrap_or_else(|_| Err(StoreError::Failed("commit abandoned".into())))
    }

    /// Plans a transaction against the metadata: validates every op in
    /// order and produces the physical ops and the new data blocks. Nothing
    /// changes unless it all succeeds (allocations are undone on error).
    async fn plan(&self, txn: &Transaction) -> Result<(Vec<PhysOp>, Vec<(u64, Rc<Vec<u8>>)>), StoreError> {
        let mut view = View::default();
        let mut data: Vec<(u64, Rc<Vec<u8>>)> = Vec::new();
        let result = self.plan_ops(txn, &mut view, &mut data).await;
        if let Err(e) = result {
            let mut inner = self.inner.borrow_mut();
            for (b, _) in &data {
                inner.alloc.release(*b);
            }
            return Err(e);
        }
        let mut ops = view.ops;
        compact_ops(&mut ops);
        Ok((ops, data))
    }

    async fn plan_ops(&self, txn: &Transaction, view: &mut View, data: &mut Vec<(u64, Rc<Vec<u8>>)>) -> Result<(), StoreError> {
        let now = now_ms();
        for op in &txn.ops {
            match op {
                Op::CreateCollection(c) => {
                    if view.coll_exists(&self.inner.borrow().meta, c) {
                        return Err(StoreError::CollectionExists(*c));
                    }
                    view.emit(PhysOp::CreateColl(*c));
                }
                Op::RemoveCollection(c) => {
                    let inner = self.inner.borrow();
                    if !view.coll_exists(&inner.meta, c) {
                        return Err(StoreError::NoCollection(*c));
                    }
                    if !view.coll_empty(&inner.meta, c) {
                        return Err(StoreError::CollectionNotEmpty(*c));
                    }
                    drop(inner);
                    view.emit(PhysOp::RemoveColl(*c));
                }
                Op::Touch { coll, obj } => {
                    self.need_coll(view, coll)?;
                    check_name(obj)?;
                    view.emit(PhysOp::Touch { coll: *coll, obj: obj.clone(), mtime_ms: now });
                }
                Op::Write { coll, obj, offset, data: bytes } => {
                    self.need_coll(view, coll)?;
                    check_name(obj)?;
                    if bytes.len() > limits::write_bytes_max || offset.checked_add(bytes.len() as u64).is_none_or(|e| e > limits::object_bytes_max) {
                        return Err(StoreError::Invalid(format!("write of {} bytes at {offset} is out of bounds", bytes.len())));
                    }
                    // The size before the blocks are set (they do not change
                    // it): asking after would copy the object into the view.
                    let size = view.onode(&self.inner.borrow().meta, coll, obj).map(|o| o.size);
                    if size.is_none() {
                        view.emit(PhysOp::Touch { coll: *coll, obj: obj.clone(), mtime_ms: now });
                    }
                    let size = size.unwrap_or(0);
                    self.write_range(view, data, coll, obj, *offset, Some(bytes)).await?;
                    let end = offset + bytes.len() as u64;
                    if end > size {
                        view.emit(PhysOp::SetSize { coll: *coll, obj: obj.clone(), size: end });
                    }
                    view.emit(PhysOp::Touch { coll: *coll, obj: obj.clone(), mtime_ms: now });
                }
                Op::Zero { coll, obj, offset, len } => {
                    self.need_obj(view, coll, obj)?;
                    let end = offset.checked_add(*len).filter(|e| *e <= limits::object_bytes_max).ok_or_else(|| StoreError::Invalid("zero range out of bounds".into()))?;
                    self.zero_range(view, data, coll, obj, *offset, end).await?;
                    let size = view.onode(&self.inner.borrow().meta, coll, obj).map_or(0, |o| o.size);
                    if end > size {
                        view.emit(PhysOp::SetSize { coll: *coll, obj: obj.clone(), size: end });
                    }
                }
                Op::Truncate { coll, obj, size } => {
                    self.need_obj(view, coll, obj)?;
                    if *size > limits::object_bytes_max {
                        return Err(StoreError::Invalid("truncate past the object size limit".into()));
                    }
                    let b = BLOCK as u64;
                    // Blocks wholly past the new end go; the block the end
                    // falls in keeps only the bytes before it.
                    view.emit(PhysOp::DropBlocks { coll: *coll, obj: obj.clone(), from: size.div_ceil(b), to: u64::MAX });
                    let has_tail = size % b != 0
                        && view.onode(&self.inner.borrow().meta, coll, obj).is_some_and(|o| o.blocks.contains_key(&(size / b)));
                    if has_tail {
                        let zeros = vec![0u8; (b - size % b) as usize];
                        self.write_range(view, data, coll, obj, *size, Some(&zeros)).await?;
                    }
                    view.emit(PhysOp::SetSize { coll: *coll, obj: obj.clone(), size: *size });
                }
                Op::Remove { coll, obj } => {
                    self.need_obj(view, coll, obj)?;
                    view.emit(PhysOp::Remove { coll: *coll, obj: obj.clone() });
                }
                Op::CloneRange { coll, src, dst, src_off, len, dst_off } => {
                    self.need_obj(view, coll, src)?;
                    check_name(dst)?;
                    if *len as usize > limits::write_bytes_max {
                        return Err(StoreError::Invalid("clone range too long".into()));
                    }
                    let bytes = self.read_view(view, data, coll, src, *src_off, *len).await?;
                    let mut padded = bytes;
                    padded.resize(*len as usize, 0);
                    let write = Transaction { ops: vec![Op::Write { coll: *coll, obj: dst.clone(), offset: *dst_off, data: padded }] };
                    Box::pin(self.plan_ops(&write, view, data)).await?;
                }
                Op::SetAttr { coll, obj, name, value } => {
                    self.need_coll(view, coll)?;
                    check_name(obj)?;
                    if name.len() > limits::attr_name_bytes_max || value.len() > limits::attr_value_bytes_max {
                        return Err(StoreError::Invalid("xattr too large".into()));
                    }
                    if !view.exists(&self.inner.borrow().meta, coll, obj) {
                        view.emit(PhysOp::Touch { coll: *coll, obj: obj.clone(), mtime_ms: now });
                    }
                    view.emit(PhysOp::SetAttr { coll: *coll, obj: obj.clone(), name: name.clone(), value: value.clone() });
                }
                Op::RmAttr { coll, obj, name } => {
                    self.need_obj(view, coll, obj)?;
                    if !view.onode(&self.inner.borrow().meta, coll, obj).is_some_and(|o| o.xattrs.contains_key(name)) {
                        return Err(StoreError::NoAttr(name.clone()));
                    }
                    view.emit(PhysOp::RmAttr { coll: *coll, obj: obj.clone(), name: name.clone() });
                }
                Op::OmapSetKeys { coll, obj, entries } => {
                    self.need_coll(view, coll)?;
                    check_name(obj)?;
                    if entries.len() > limits::omap_keys_per_op_max
                        || entries.iter().any(|(k, v)| k.len() > limits::attr_name_bytes_max || v.len() > limits::attr_value_bytes_max)
                    {
                        return Err(StoreError::Invalid("omap entries too large".into()));
                    }
                    if !view.exists(&self.inner.borrow().meta, coll, obj) {
                        view.emit(PhysOp::Touch { coll: *coll, obj: obj.clone(), mtime_ms: now });
                    }
                    let entries = entries.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                    view.emit(PhysOp::OmapSet { coll: *coll, obj: obj.clone(), entries });
                }
                Op::OmapRmKeys { coll, obj, keys } => {
                    self.need_obj(view, coll, obj)?;
                    view.emit(PhysOp::OmapRm { coll: *coll, obj: obj.clone(), keys: keys.clone() });
                }
                Op::OmapRmRange { coll, obj, start, end } => {
                    self.need_obj(view, coll, obj)?;
                    view.emit(PhysOp::OmapRmRange { coll: *coll, obj: obj.clone(), start: start.clone(), end: end.clone() });
                }
                Op::OmapSetHeader { coll, obj, value } => {
                    self.need_coll(view, coll)?;
                    check_name(obj)?;
                    if value.len() > limits::attr_value_bytes_max {
                        return Err(StoreError::Invalid("omap header too large".into()));
                    }
                    if !view.exists(&self.inner.borrow().meta, coll, obj) {
                        view.emit(PhysOp::Touch { coll: *coll, obj: obj.clone(), mtime_ms: now });
                    }
                    view.emit(PhysOp::OmapHeader { coll: *coll, obj: obj.clone(), value: value.clone() });
                }
                Op::OmapClear { coll, obj } => {
                    self.need_obj(view, coll, obj)?;
                    view.emit(PhysOp::OmapClear { coll: *coll, obj: obj.clone() });
                }
            }
        }
        Ok(())
    }

    fn need_coll(&self, view: &mut View, c: &CollId) -> Result<(), StoreError> {
        if !view.coll_exists(&self.inner.borrow().meta, c) {
            return Err(StoreError::NoCollection(*c));
        }
        Ok(())
    }

    fn need_obj(&self, view: &mut View, c: &CollId, o: &str) -> Result<(), StoreError> {
        self.need_coll(view, c)?;
        if !view.exists(&self.inner.borrow().meta, c, o) {
            return Err(StoreError::NoObject(*c, o.to_string()));
        }
        Ok(())
    }

    /// Content of block `idx` as the view sees it (zeros for a hole).
    async fn view_block(&self, view: &mut View, data: &[(u64, Rc<Vec<u8>>)], coll: &CollId, obj: &str, idx: u64) -> Result<Vec<u8>, StoreError> {
        let b = view.onode(&self.inner.borrow().meta, coll, obj).and_then(|o| o.blocks.get(&idx).copied());
        match b {
            None => Ok(vec![0; BLOCK]),
            Some(b) => {
                if let Some((_, d)) = data.iter().find(|(d, _)| *d == b.dev) {
                    return Ok(d.as_ref().clone());
                }
                self.read_block(coll, obj, idx, b).await.map(ReadBytes::into_vec)
            }
        }
    }

    /// Writes `bytes` (or zeros when `None`) at `offset` into fresh blocks.
    async fn write_range(
        &self,
        view: &mut View,
        data: &mut Vec<(u64, Rc<Vec<u8>>)>,
        coll: &CollId,
        obj: &str,
        offset: u64,
        bytes: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        let Some(bytes) = bytes else { return Ok(()) };
        if bytes.is_empty() {
            return Ok(());
        }
        let end = offset + bytes.len() as u64;
        let (first, last) = (offset / BLOCK as u64, (end - 1) / BLOCK as u64);
        let mut blocks = Vec::with_capacity((last - first + 1) as usize);
        for idx in first..=last {
            let bstart = idx * BLOCK as u64;
            let (lo, hi) = (offset.max(bstart), end.min(bstart + BLOCK as u64));
            let src = &bytes[(lo - offset) as usize..(hi - offset) as usize];
            let content = if lo == bstart && hi == bstart + BLOCK as u64 {
                src.to_vec()
            } else {
                let mut merged = self.view_block(view, data, coll, obj, idx).await?;
                merged[(lo - bstart) as usize..(hi - bstart) as usize].copy_from_slice(src);
                merged
            };
            let dev = self.inner.borrow_mut().alloc.alloc().ok_or(StoreError::NoSpace)?;
            let crc = block_crc(&content);
            data.push((dev, Rc::new(content)));
            blocks.push((idx, BlockRef { dev, crc }));
        }
        view.emit(PhysOp::SetBlocks { coll: *coll, obj: obj.to_string(), blocks });
        Ok(())
    }

    /// Zeros `[start, end)`: whole blocks become holes, partly covered
    /// blocks that hold data are rewritten with zeros.
    #[allow(clippy::too_many_arguments)]
    async fn zero_range(
        &self,
        view: &mut View,
        data: &mut Vec<(u64, Rc<Vec<u8>>)>,
        coll: &CollId,
        obj: &str,
        start: u64,
        end: u64,
    ) -> Result<(), StoreError> {
        if start >= end {
            return Ok(());
        }
        let b = BLOCK as u64;
        let has = |view: &mut View, idx: u64| view.onode(&self.inner.borrow().meta, coll, obj).is_some_and(|o| o.blocks.contains_key(&idx));
        let mut edges = Vec::new();
        if start / b == end / b {
            edges.push((start, end));
        } else {
            if !start.is_multiple_of(b) {
                edges.push((start, (start / b + 1) * b));
            }
            if !end.is_multiple_of(b) {
                edges.push((end / b * b, end));
            }
            let (from, to) = (start.div_ceil(b), end / b);
            if from < to {
                view.emit(PhysOp::DropBlocks { coll: *coll, obj: obj.to_string(), from, to });
            }
        }
        for (lo, hi) in edges {
            if has(view, lo / b) {
                let zeros = vec![0u8; (hi - lo) as usize];
                self.write_range(view, data, coll, obj, lo, Some(&zeros)).await?;
            }
        }
        Ok(())
    }

    /// Reads through the view (used by clone_range while planning).
    /// Reads an object as the transaction sees it so far (blocks it wrote
    /// itself come from `data`: they are on no device yet).
    async fn read_view(&self, view: &mut View, data: &[(u64, Rc<Vec<u8>>)], coll: &CollId, obj: &str, offset: u64, len: u64) -> Result<Vec<u8>, StoreError> {
        let size = view.onode(&self.inner.borrow().meta, coll, obj).map_or(0, |o| o.size);
        let end = offset.saturating_add(len).min(size);
        let mut out = Vec::new();
        let mut pos = offset;
        while pos < end {
            let idx = pos / BLOCK as u64;
            let block = self.view_block(view, data, coll, obj, idx).await?;
            let lo = (pos - idx * BLOCK as u64) as usize;
            let hi = ((end - idx * BLOCK as u64) as usize).min(BLOCK);
            out.extend_from_slice(&block[lo..hi]);
            pos = idx * BLOCK as u64 + hi as u64;
        }
        Ok(out)
    }

    /// Takes every queued transaction and makes them durable, group after
    /// group, until the queue is empty. Only one caller runs it at a time;
    /// `holding_plan_lock` says the caller already holds the plan lock.
    ///
    /// Small (inline) groups are pipelined: up to
    /// `limits::commits_in_flight_max` journal records are written at once,
    /// each durable on completion, and retired strictly in seq order — a
    /// group is answered only when its record and every earlier one are
    /// durable, because replay stops at the first missing record.
    /// Transactions queued while records are in flight start the next one
    /// as soon as there is room, not when the oldest completes. Anything
    /// else (a group with data to write in place, a wrap) waits until no
    /// record is in flight and runs alone.
    ///
    /// Deferred blocks are written to the data area beside the records
    /// (one flush at a time), not between them: a flush takes milliseconds,
    /// and records stalled behind it stall every writer. What runs alone
    /// waits for the flush too, so no other data-area write to a block can
    /// race a flush's write of its old content.
    async fn commit_all_locked(&self, holding_plan_lock: bool) {
        let mut flights: VecDeque<Flight<'_>> = VecDeque::new();
        let mut flush: Option<Background<'_>> = None;
        loop {
            // A group that must run alone waits at the queue's head until
            // the records in flight are retired.
            let mut drain = false;
            while flights.len() < limits::commits_in_flight_max && self.inner.borrow().failed.is_none() {
                let group = self.next_group();
                if group.is_empty() {
                    break;
                }
                let mut group = group;
                let blocks: usize = group.iter().map(|q| q.data.len()).sum();
                let inline = blocks <= limits::inline_blocks_max;
                let (mut record, ops_chunk) = match encode_record(&mut group, inline) {
                    Ok(encoded) => encoded,
                    Err(e) => {
                        self.finish(group, &[], false, false, Err(e));
                        continue;
                    }
                };
                let body_len = record.len() - RECORD_HEADER_BYTES;
                let len = RecordHeader::padded_len(body_len) as u64;
                let head = self.inner.borrow().journal_head;
                let journals = self.record_fits(head, len, body_len);
                if inline && journals {
                    let offset = self.reserve_record(&mut record, len);
                    let record = Rc::new(record);
                    let written = record.clone();
                    let write = Box::pin(async move { self.dev.write_durable(offset, &written).await });
                    if !flights.is_empty() {
                        self.inner.borrow_mut().counters.pipelined += 1;
                    }
                    flights.push_back(Flight { group, record, ops_chunk, write, done: None });
                    continue;
                }
                if !flights.is_empty() {
                    // Runs alone: back to the head of the queue until the
                    // records in flight are retired.
                    let mut inner = self.inner.borrow_mut();
                    let later = std::mem::take(&mut inner.queue);
                    inner.queue = group;
                    inner.queue.extend(later);
                    drain = true;
                    break;
                }
                if let Some(f) = flush.take() {
                    self.flushed(f.await);
                }
                self.commit_alone(group, inline, record, ops_chunk, len, journals, holding_plan_lock).await;
            }
            if flights.is_empty() && flush.is_none() {
                let failed = self.inner.borrow().failed.clone();
                let rest = std::mem::take(&mut self.inner.borrow_mut().queue);
                match failed {
                    // Never journal after a failed record: its txns are in
                    // the metadata but not on disk.
                    Some(f) => {
                        for q in rest {
                            let _ = q.done.send(Err(StoreError::Failed(f.clone())));
                        }
                        return;
                    }
                    None if rest.is_empty() => return,
                    None => {
                        self.inner.borrow_mut().queue = rest;
                        continue;
                    }
                }
            }
            // Wait for the oldest record (the others progress meanwhile),
            // for the flush, or for transactions to start another record
            // with.
            let mut flush_result = None;
            std::future::poll_fn(|cx| {
                for f in flights.iter_mut() {
                    if f.done.is_none() {
                        if let std::task::Poll::Ready(r) = f.write.as_mut().poll(cx) {
                            f.done = Some(r);
                        }
                    }
                }
                if let Some(f) = flush.as_mut() {
                    if let std::task::Poll::Ready(r) = f.as_mut().poll(cx) {
                        flush = None;
                        flush_result = Some(r);
                    }
                }
                let room = !drain && flights.len() < limits::commits_in_flight_max && {
                    let inner = self.inner.borrow();
                    inner.failed.is_none() && !inner.queue.is_empty()
                };
                if room || flush_result.is_some() || flights.front().is_some_and(|f| f.done.is_some()) {
                    self.committer.set(None);
                    std::task::Poll::Ready(())
                } else {
                    self.committer.set(Some(cx.waker().clone()));
                    std::task::Poll::Pending
                }
            })
            .await;
            if let Some(r) = flush_result {
                self.flushed(r);
            }
            while flights.front().is_some_and(|f| f.done.is_some()) {
                let f = flights.pop_front().expect("front exists");
                let result = f.done.expect("done").map_err(StoreError::from);
                self.finish(f.group, &f.record[f.ops_chunk], true, false, result);
            }
            // Also when the journal nears its wrap, so that the wrap (which
            // stalls the committer) finds few deferred blocks left to write.
            let wants_flush = {
                let inner = self.inner.borrow();
                let wrap_near = inner.journal_head > self.header.journal_bytes / 2 / 8 * 7;
                inner.failed.is_none() && (inner.deferred.len() > self.deferred_blocks_max.get() || (wrap_near && !inner.deferred.is_empty()))
            };
            if flush.is_none() && wants_flush {
                self.inner.borrow_mut().counters.deferred_flushes += 1;
                flush = Some(Box::pin(self.flush_deferred()));
            }
        }
    }

    /// Whether a record of `len` bytes (`body_len` of body) fits the
    /// journal's half from `head` on.
    fn record_fits(&self, head: u64, len: u64, body_len: usize) -> bool {
        head + len <= self.header.journal_bytes / 2 && body_len <= limits::record_body_bytes_max
    }

    /// A deferred flush ended: a failed one fails the store (its blocks'
    /// records may be overwritten by the next wrap otherwise).
    fn flushed(&self, result: Result<(), StoreError>) {
        if let Err(e) = result {
            let mut inner = self.inner.borrow_mut();
            if inner.failed.is_none() {
                inner.failed = Some(e.to_string());
            }
        }
    }

    /// The next group from the queue: the longest run of transactions from
    /// its head whose blocks fit one inline record (so a deep queue becomes
    /// several records in flight), or — when the head transaction alone is
    /// too big — everything queued, its data to be written in place.
    fn next_group(&self) -> Vec<QueuedTxn> {
        let mut inner = self.inner.borrow_mut();
        let mut blocks = 0;
        let mut n = 0;
        for q in &inner.queue {
            if blocks + q.data.len() > limits::inline_blocks_max {
                break;
            }
            blocks += q.data.len();
            n += 1;
        }
        if n == 0 || n == inner.queue.len() {
            return std::mem::take(&mut inner.queue);
        }
        inner.queue.drain(..n).collect()
    }

    /// Commits a group with nothing else in flight: a group whose data is
    /// written in place first, or a wrap (when its record would not fit the
    /// journal's half).
    #[allow(clippy::too_many_arguments)]
    async fn commit_alone(&self, mut group: Vec<QueuedTxn>, inline: bool, mut record: Vec<u8>, ops_chunk: std::ops::Range<usize>, len: u64, journals: bool, holding_plan_lock: bool) {
        if journals {
            let result = self.commit_group(&group, &mut record, len, inline).await;
            self.finish(group, &record[ops_chunk], inline, false, result);
            return;
        }
        // The journal's half is full. When the ops of the groups made
        // durable since the last wrap fit a delta, save them and start the
        // journal over; the group then goes to the fresh journal like any
        // other. A delta holds durable groups only, so this needs no plan
        // lock: planning goes on meanwhile, and no queued group's data has
        // to be written in place first.
        let fits_empty_half = self.record_fits(0, len, record.len() - RECORD_HEADER_BYTES);
        if fits_empty_half && self.inner.borrow().journal_head > 0 {
            match self.wrap(false).await {
                Ok(true) => {
                    let mut inner = self.inner.borrow_mut();
                    let later = std::mem::take(&mut inner.queue);
                    inner.queue = group;
                    inner.queue.extend(later);
                    return;
                }
                Ok(false) => {}
                Err(e) => {
                    self.finish(group, &[], inline, false, Err(e));
                    return;
                }
            }
        }
        // A full checkpoint (or a group too big for any journal record):
        // with the plan lock held, the metadata is exactly what the queued
        // groups make it, so write all their data, sync, and save their ops
        // with the others since the last wrap (a delta), or the whole
        // metadata.
        let guard = if holding_plan_lock { None } else { Some(self.plan_lock.lock().await) };
        group.extend(std::mem::take(&mut self.inner.borrow_mut().queue));
        let archived = {
            let ops = RecordOps { txns: group.iter_mut().map(|q| std::mem::take(&mut q.ops)).collect() };
            archive_ops_chunk(&ops, &mut self.inner.borrow_mut().ops_since)
        };
        let result = async {
            archived?;
            for q in &group {
                self.write_data(&q.data).await?;
            }
            self.dev.sync().await?;
            self.wrap(true).await.map(|_| ())
        }
        .await;
        drop(guard);
        self.finish(group, &[], inline, true, result);
    }

    /// After a group's record (or wrap) completed: frees what it freed,
    /// remembers its ops (`ops_chunk`, from its record) for the next delta,
    /// and answers its transactions. Once the store has failed, nothing
    /// more is acknowledged.
    fn finish(&self, group: Vec<QueuedTxn>, ops_chunk: &[u8], inline: bool, checkpointed: bool, result: Result<(), StoreError>) {
        let result = {
            let mut inner = self.inner.borrow_mut();
            let result = match (&inner.failed, result) {
                (Some(f), _) => Err(StoreError::Failed(f.clone())),
                (None, r) => r,
            };
            match &result {
                Ok(()) => {
                    inner.counters.commits += 1;
                    inner.counters.txns += group.len() as u64;
                    if !checkpointed {
                        inner.ops_since.extend_from_slice(ops_chunk);
                    }
                    for q in &group {
                        for (b, _) in &q.data {
                            if inline && !checkpointed {
                                inner.deferred.insert(*b);
                            } else {
                                inner.unwritten.remove(b);
                            }
                        }
                        for b in &q.freed {
                            // A freed block's pending deferred write no longer
                            // matters (replay redoes it before the free).
                            inner.deferred.remove(b);
                            inner.unwritten.remove(b);
                            inner.alloc.release(*b);
                        }
                    }
                }
                Err(e) => {
                    // The in-memory metadata is now ahead of the disk: stop
                    // accepting writes; a remount replays what is durable.
                    if inner.failed.is_none() {
                        inner.failed = Some(e.to_string());
                    }
                }
            }
            result
        };
        for q in group {
            let _ = q.done.send(result.clone());
        }
    }

    /// Writes deferred blocks to the data area (their records keep them
    /// safe until then; the next checkpoint syncs before dropping those).
    async fn flush_deferred(&self) -> Result<(), StoreError> {
        let blocks: Vec<(u64, Rc<Vec<u8>>)> = {
            let inner = self.inner.borrow();
            inner.deferred.iter().filter_map(|b| inner.unwritten.get(b).map(|d| (*b, d.clone()))).collect()
        };
        if blocks.is_empty() {
            return Ok(());
        }
        // A trickle, not a burst: records queued behind megabytes of
        // flush on the device would stall every writer (p99 at size-1
        // depth-32 writes: ~3 ms with 1 MiB runs all at once, ~1.7 ms so).
        let writes = self.data_writes_runs(&blocks, limits::flush_run_blocks_max);
        self.write_all_bounded(writes, limits::flush_writes_in_flight_max).await?;
        let mut inner = self.inner.borrow_mut();
        for (b, d) in blocks {
            // Only if nothing replaced it meanwhile: a block freed during
            // the flush and planned again holds new content, deferred (or
            // about to be) in its own right.
            if inner.unwritten.get(&b).is_some_and(|x| Rc::ptr_eq(x, &d)) {
                inner.unwritten.remove(&b);
                inner.deferred.remove(&b);
            }
        }
        Ok(())
    }

    async fn commit_all(&self) {
        self.commit_all_locked(false).await
    }

    /// Data blocks, coalesced into runs of neighbours (the writes run
    /// concurrently).
    async fn write_data(&self, data: &[(u64, Rc<Vec<u8>>)]) -> Result<(), StoreError> {
        self.write_all(self.data_writes(data)).await
    }

    /// `(offset, blocks)` writes for data blocks, neighbours coalesced
    /// into one write each.
    fn data_writes(&self, data: &[(u64, Rc<Vec<u8>>)]) -> Vec<(u64, Vec<Rc<Vec<u8>>>)> {
        self.data_writes_runs(data, limits::write_run_blocks_max)
    }

    fn data_writes_runs(&self, data: &[(u64, Rc<Vec<u8>>)], run_max: usize) -> Vec<(u64, Vec<Rc<Vec<u8>>>)> {
        let mut blocks: Vec<&(u64, Rc<Vec<u8>>)> = data.iter().collect();
        blocks.sort_by_key(|(b, _)| *b);
        let mut writes = Vec::new();
        let mut i = 0;
        while i < blocks.len() {
            let mut j = i + 1;
            while j < blocks.len() && blocks[j].0 == blocks[j - 1].0 + 1 && j - i < run_max {
                j += 1;
            }
            writes.push((self.data_offset(blocks[i].0), blocks[i..j].iter().map(|(_, d)| d.clone()).collect()));
            i = j;
        }
        writes
    }

    /// Issues all writes at once and waits for every one.
    async fn write_all(&self, writes: Vec<(u64, Vec<Rc<Vec<u8>>>)>) -> Result<(), StoreError> {
        self.write_all_bounded(writes, usize::MAX).await
    }

    /// Issues the writes, at most `depth_max` at a time in order, and
    /// waits for every one.
    async fn write_all_bounded(&self, writes: Vec<(u64, Vec<Rc<Vec<u8>>>)>, depth_max: usize) -> Result<(), StoreError> {
        let mut futs: Vec<_> = writes.iter().map(|(off, parts)| Box::pin(self.dev.write_parts(*off, parts))).collect();
        let mut results: Vec<Option<std::io::Result<()>>> = (0..futs.len()).map(|_| None).collect();
        std::future::poll_fn(|cx| {
            let mut pending = false;
            let mut in_flight = 0;
            for (f, r) in futs.iter_mut().zip(results.iter_mut()) {
                if r.is_none() {
                    if in_flight >= depth_max {
                        pending = true;
                        break;
                    }
                    match f.as_mut().poll(cx) {
                        std::task::Poll::Ready(x) => *r = Some(x),
                        std::task::Poll::Pending => {
                            pending = true;
                            in_flight += 1;
                        }
                    }
                }
            }
            if pending {
                std::task::Poll::Pending
            } else {
                std::task::Poll::Ready(())
            }
        })
        .await;
        for r in results.into_iter().flatten() {
            r?;
        }
        Ok(())
    }

    /// One group: its data, then one journal record, then one sync. (If
    /// the record reaches the medium and the data does not, replay sees the
    /// last record's data crcs fail and drops it.)
    async fn commit_group(&self, group: &[QueuedTxn], record: &mut Vec<u8>, len: u64, inline: bool) -> Result<(), StoreError> {
        let all: Vec<(u64, Rc<Vec<u8>>)> = if inline { Vec::new() } else { group.iter().flat_map(|q| q.data.iter().cloned()).collect() };
        let writes = self.data_writes(&all);
        let offset = self.reserve_record(record, len);
        if inline {
            // One device write, durable on completion: the whole commit.
            self.dev.write_durable(offset, record).await?;
        } else {
            self.write_all(writes).await?;
            self.dev.write(offset, record).await?;
            self.dev.sync().await?;
        }
        Ok(())
    }

    /// Gives a record from [`encode_record`] the next place (seq and
    /// offset) in the journal: fills in its header and pads it to `len`
    /// bytes. Returns the device offset to write it at.
    fn reserve_record(&self, record: &mut Vec<u8>, len: u64) -> u64 {
        let mut inner = self.inner.borrow_mut();
        let (head, seq) = (inner.journal_head, inner.journal_seq);
        let body = &record[RECORD_HEADER_BYTES..];
        let header = RecordHeader { instance: self.header.instance, seq, body_len: body.len() as u32, body_crc: crc32fast::hash(body) };
        let mut framed = Vec::with_capacity(RECORD_HEADER_BYTES);
        header.encode_into(&mut framed);
        record[..RECORD_HEADER_BYTES].copy_from_slice(&framed);
        record.resize(len as usize, 0);
        inner.journal_head = head + len;
        inner.journal_seq = seq + 1;
        self.base + self.header.journal_offset() + head
    }

    /// Restarts the journal after saving what its records hold: a delta of
    /// the ops since the last wrap appended to the current checkpoint slot,
    /// or a full checkpoint when the slot has no room left or the delta
    /// would not be smaller than the whole metadata. The caller holds the
    /// plan lock, has made every queued group's data durable, and has moved
    /// their ops into `ops_since`.
    ///
    /// Without `may_checkpoint` (the caller does not hold the plan lock, so
    /// the metadata may hold queued groups that are not durable yet) it
    /// writes a delta or nothing: `false` when a full checkpoint is due.
    async fn wrap(&self, may_checkpoint: bool) -> Result<bool, StoreError> {
        let full_checkpoint_due = {
            let inner = self.inner.borrow();
            let body_len = inner.ops_since.len() - DELTA_HEADER_BYTES;
            let len = DeltaHeader::padded_len(body_len) as u64;
            inner.delta_offset + len > self.header.ckpt_bytes || inner.delta_index > self.deltas_per_base_max.get() || body_len as u64 >= inner.meta_bytes_bound || body_len >= u32::MAX as usize
        };
        if full_checkpoint_due {
            if !may_checkpoint {
                return Ok(false);
            }
            self.checkpoint().await?;
            return Ok(true);
        }
        // Blocks that live only in journal records must reach the data area
        // (durably) before the journal restarts (`checkpoint` does the same).
        self.flush_deferred().await?;
        self.dev.sync().await?;
        // Nothing was added to `ops_since` meanwhile: no record is in
        // flight while the committer wraps.
        let (mut buf, slot, offset, header) = {
            let mut inner = self.inner.borrow_mut();
            // `ops_since` is the delta, after room for its header; the
            // spare buffer collects the next one.
            let mut next = self.delta_buf.take();
            empty_delta(&mut next);
            let buf = std::mem::replace(&mut inner.ops_since, next);
            let body = &buf[DELTA_HEADER_BYTES..];
            let header = DeltaHeader {
                instance: self.header.instance,
                base_seq: inner.ckpt_seq,
                index: inner.delta_index,
                journal_seq: inner.journal_seq,
                body_len: u32::try_from(body.len()).unwrap_or(u32::MAX),
                body_crc: crc32fast::hash(body),
            };
            (buf, (inner.ckpt_seq % 2) as usize, inner.delta_offset, header)
        };
        let len = DeltaHeader::padded_len(buf.len() - DELTA_HEADER_BYTES) as u64;
        let mut framed = Vec::with_capacity(DELTA_HEADER_BYTES);
        header.encode_into(&mut framed);
        buf[..DELTA_HEADER_BYTES].copy_from_slice(&framed);
        buf.resize(len as usize, 0);
        self.dev.write(self.base + self.header.ckpt_offset(slot) + offset, &buf).await?;
        self.delta_buf.set(buf);
        self.dev.sync().await?;
        let mut inner = self.inner.borrow_mut();
        inner.delta_offset = offset + len;
        inner.delta_index += 1;
        inner.journal_head = 0;
        inner.counters.deltas += 1;
        Ok(true)
    }

    /// Writes the whole metadata into the older slot and restarts the
    /// journal. The caller guarantees the metadata equals the durable state.
    async fn checkpoint(&self) -> Result<(), StoreError> {
        // Blocks that live only in journal records must reach the data area
        // (durably) before the journal restarts.
        self.flush_deferred().await?;
        self.dev.sync().await?;
        // The last checkpoint's buffer: its pages are already faulted in.
        let mut framed = self.ckpt_buf.take();
        framed.clear();
        framed.resize(BLOCK, 0);
        let (seq, journal_seq, bound_at_snapshot) = {
            let inner = self.inner.borrow();
            if let Err(e) = archive_after(&inner.meta, &mut framed) {
                self.ckpt_buf.set(framed);
                return Err(e);
            }
            (inner.ckpt_seq + 1, inner.journal_seq, inner.meta_bytes_bound)
        };
        let body_len = framed.len() - BLOCK;
        let slot = (seq % 2) as usize;
        let written = Self::write_ckpt(&self.dev, self.base, &self.header, slot, seq, journal_seq, &mut framed).await;
        self.ckpt_buf.set(framed);
        written?;
        self.dev.sync().await?;
        let mut inner = self.inner.borrow_mut();
        inner.ckpt_seq = seq;
        inner.journal_head = 0;
        empty_delta(&mut inner.ops_since);
        inner.delta_offset = BLOCK as u64 + (body_len as u64).div_ceil(BLOCK as u64) * BLOCK as u64;
        inner.delta_index = 1;
        // The body is the measured base; ops planned while it was written
        // count on top of it.
        let growth_since = inner.meta_bytes_bound.saturating_sub(bound_at_snapshot);
        inner.meta_bytes_bound = body_len as u64 + growth_since;
        inner.ckpt_body_bytes = body_len as u64;
        inner.counters.checkpoints += 1;
        Ok(())
    }

    /// The upper bound of the next checkpoint's size the store keeps.
    #[cfg(test)]
    pub(crate) fn meta_bytes_bound(&self) -> u64 {
        self.inner.borrow().meta_bytes_bound
    }

    #[cfg(test)]
    pub(crate) fn set_deltas_per_base_max(&self, n: u64) {
        self.deltas_per_base_max.set(n);
    }

    /// Whether a commit runs (a test waits for a committer to go idle).
    #[cfg(test)]
    pub(crate) fn committing_now(&self) -> bool {
        self.committing.get()
    }

    #[cfg(test)]
    pub(crate) fn set_deferred_blocks_max(&self, n: usize) {
        self.deferred_blocks_max.set(n);
    }

    // ---- reads ----

    /// Bytes of metadata growth the checkpoint slot still takes (an
    /// estimate from below: writes beyond it are refused with ENOSPC).
    pub fn metadata_headroom_bytes(&self) -> u64 {
        let limit = self.header.ckpt_bytes.saturating_sub(BLOCK as u64 + self.header.ckpt_bytes / limits::ckpt_reserve_fraction);
        limit.saturating_sub(self.inner.borrow().meta_bytes_bound)
    }

    /// Whether at least `want` bytes of metadata headroom are left. The
    /// bound behind [`Store::metadata_headroom_bytes`] is the last full
    /// checkpoint plus estimates since (deltas do not measure it), so when
    /// it says no, a full checkpoint measures before the answer is final.
    pub async fn has_metadata_headroom(&self, want: u64) -> Result<bool, StoreError> {
        if self.metadata_headroom_bytes() >= want {
            return Ok(true);
        }
        let (worth, asked_at) = {
            let inner = self.inner.borrow();
            (inner.worth_remeasuring(self.header.ckpt_bytes), inner.counters.checkpoints)
        };
        if worth {
            self.checkpoint_exclusive(asked_at).await?;
        }
        Ok(self.metadata_headroom_bytes() >= want)
    }

    /// Why the store stopped taking writes (an I/O error while committing:
    /// its metadata is ahead of the disk until a remount replays).
    pub fn failure(&self) -> Option<String> {
        self.inner.borrow().failed.clone()
    }

    pub fn collections(&self) -> Vec<CollId> {
        self.inner.borrow().meta.colls.keys().copied().collect()
    }

    pub fn collection_exists(&self, c: &CollId) -> bool {
        self.inner.borrow().meta.colls.contains_key(c)
    }

    fn with_onode<T>(&self, coll: &CollId, obj: &str, f: impl FnOnce(&Onode) -> T) -> Result<T, StoreError> {
        let inner = self.inner.borrow();
        let objs = inner.meta.colls.get(coll).ok_or(StoreError::NoCollection(*coll))?;
        let o = objs.get(obj).ok_or_else(|| StoreError::NoObject(*coll, obj.to_string()))?;
        Ok(f(o))
    }

    /// `(size, mtime_ms)`.
    pub fn stat(&self, coll: &CollId, obj: &str) -> Result<(u64, u64), StoreError> {
        self.with_onode(coll, obj, |o| (o.size, o.mtime_ms))
    }

    /// Reads `len` bytes at `offset` (`len == 0`: to the end); short at the
    /// end of the object. Every block's crc is checked.
    pub async fn read(&self, coll: &CollId, obj: &str, offset: u64, len: u64) -> Result<Vec<u8>, StoreError> {
        Ok(self.read_bytes(coll, obj, offset, len).await?.0.into_vec())
    }

    /// [`Store::read`], a whole-block read in the buffer it arrived in and
    /// with its crc32 (the block's, checked).
    pub async fn read_bytes(&self, coll: &CollId, obj: &str, offset: u64, len: u64) -> Result<(ReadBytes, Option<u32>), StoreError> {
        let (size, whole_block) = self.with_onode(coll, obj, |o| {
            let end = if len == 0 { o.size } else { offset.saturating_add(len).min(o.size) };
            // The common small read: exactly one whole block that holds
            // data, returned as read (no list of blocks to build).
            let whole = offset.is_multiple_of(BLOCK as u64) && end.checked_sub(offset) == Some(BLOCK as u64);
            (end, if whole { o.blocks.get(&(offset / BLOCK as u64)).copied() } else { None })
        })?;
        if offset >= size {
            return Ok((ReadBytes::Owned(Vec::new()), None));
        }
        // Before the blocks are listed: the list is as long as the read.
        if size - offset > limits::read_bytes_max as u64 {
            return Err(StoreError::Invalid(format!("read of {} bytes exceeds {}", size - offset, limits::read_bytes_max)));
        }
        if let Some(b) = whole_block {
            return Ok((self.read_block(coll, obj, offset / BLOCK as u64, b).await?, Some(b.crc)));
        }
        let (first, last) = (offset / BLOCK as u64, (size - 1) / BLOCK as u64);
        let blocks = self.with_onode(coll, obj, |o| o.blocks.range(first..=last).map(|(i, b)| (*i, *b)).collect::<Vec<(u64, BlockRef)>>())?;
        let mut out = vec![0u8; (size - offset) as usize];
        for (idx, b) in blocks {
            let content = self.read_block(coll, obj, idx, b).await?;
            let bstart = idx * BLOCK as u64;
            let lo = offset.max(bstart);
            let hi = size.min(bstart + BLOCK as u64);
            out[(lo - offset) as usize..(hi - offset) as usize].copy_from_slice(&content.as_ref()[(lo - bstart) as usize..(hi - bstart) as usize]);
        }
        Ok((ReadBytes::Owned(out), None))
    }

    pub fn getattr(&self, coll: &CollId, obj: &str, name: &str) -> Result<Vec<u8>, StoreError> {
        self.with_attr(coll, obj, name, <[u8]>::to_vec)
    }

    /// `f` of an xattr's value, read in place (no copy).
    pub fn with_attr<T>(&self, coll: &CollId, obj: &str, name: &str, f: impl FnOnce(&[u8]) -> T) -> Result<T, StoreError> {
        self.with_onode(coll, obj, |o| o.xattrs.get(name).map(|v| f(v)))?.ok_or_else(|| StoreError::NoAttr(name.to_string()))
    }

    pub fn getattrs(&self, coll: &CollId, obj: &str) -> Result<BTreeMap<String, Vec<u8>>, StoreError> {
        self.with_onode(coll, obj, |o| o.xattrs.clone())
    }

    pub fn omap_get(&self, coll: &CollId, obj: &str) -> Result<(Vec<u8>, BTreeMap<String, Vec<u8>>), StoreError> {
        self.with_onode(coll, obj, |o| (o.omap_header.clone(), o.omap.clone()))
    }

    pub fn omap_get_keys(&self, coll: &CollId, obj: &str, keys: &[String]) -> Result<BTreeMap<String, Vec<u8>>, StoreError> {
        self.with_onode(coll, obj, |o| keys.iter().filter_map(|k| o.omap.get(k).map(|v| (k.clone(), v.clone()))).collect())
    }

    /// Up to `max` entries with keys after `after`; `true` if more follow.
    pub fn omap_range(&self, coll: &CollId, obj: &str, after: &str, max: usize) -> Result<(Vec<(String, Vec<u8>)>, bool), StoreError> {
        self.with_onode(coll, obj, |o| {
            let mut it = o.omap.range::<str, _>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded));
            let page: Vec<(String, Vec<u8>)> = it.by_ref().take(max).map(|(k, v)| (k.clone(), v.clone())).collect();
            (page, it.next().is_some())
        })
    }

    pub fn omap_header(&self, coll: &CollId, obj: &str) -> Result<Vec<u8>, StoreError> {
        self.with_onode(coll, obj, |o| o.omap_header.clone())
    }

    /// Objects of a collection in stable (byte) order after `after`.
    pub fn list(&self, coll: &CollId, after: &str, max: usize) -> Result<(Vec<String>, bool), StoreError> {
        let inner = self.inner.borrow();
        let objs = inner.meta.colls.get(coll).ok_or(StoreError::NoCollection(*coll))?;
        let mut it = objs.names_after(after);
        let page: Vec<String> = it.by_ref().take(max).cloned().collect();
        Ok((page, it.next().is_some()))
    }

    /// Reads every block of every object and names the objects with a bad
    /// one: `(collection, object, block index)`.
    pub async fn deep_scrub(&self) -> Vec<(CollId, String, u64)> {
        let all: Vec<(CollId, String, Vec<(u64, BlockRef)>)> = {
            let inner = self.inner.borrow();
            inner
                .meta
                .colls
                .iter()
                .flat_map(|(c, objs)| objs.iter().map(move |(n, o)| (*c, n.clone(), o.blocks.iter().map(|(i, b)| (*i, *b)).collect())))
                .collect()
        };
        let mut bad = Vec::new();
        for (c, n, blocks) in all {
            for (i, b) in blocks {
                if self.read_block(&c, &n, i, b).await.is_err() {
                    bad.push((c, n.clone(), i));
                }
            }
        }
        bad
    }

    pub fn statfs(&self) -> StatFs {
        let inner = self.inner.borrow();
        let total = self.header.data_blocks * BLOCK as u64;
        let free = inner.alloc.free * BLOCK as u64;
        StatFs { total_bytes: total, used_bytes: total - free, available_bytes: free }
    }

    pub fn counters(&self) -> Counters {
        self.inner.borrow().counters
    }

    /// Bytes of RAM the metadata takes (approximately, see `onode_bytes`).
    pub fn memory_usage(&self) -> usize {
        let inner = self.inner.borrow();
        inner.meta.colls.values().flat_map(|objs| objs.iter()).map(|(n, o)| onode_bytes(n, o)).sum::<usize>() + inner.alloc.used.len() * 8
    }

    /// A copy of the metadata (tests compare it with a model).
    pub fn meta_snapshot(&self) -> Meta {
        self.inner.borrow().meta.clone()
    }

    /// Our invariants: metadata consistent, allocator agrees with it.
    pub fn invariants(&self) {
        let inner = self.inner.borrow();
        inner.meta.invariants();
        let mut referenced = BTreeSet::new();
        for objs in inner.meta.colls.values() {
            for o in objs.values() {
                for b in o.blocks.values() {
                    assert!(inner.alloc.is_used(b.dev), "referenced block {} is free", b.dev);
                    referenced.insert(b.dev);
                }
            }
        }
    }
}

/// A journal record for `group` — its ops chunk and, for an inline group,
/// the content of its new blocks — after room for its header, which
/// [`Store::reserve_record`] fills in; and where in it the ops chunk lies.
/// The ops are lent to the body and given back, the blocks shared: a
/// block's bytes are copied once, into the record.
fn encode_record(group: &mut [QueuedTxn], inline: bool) -> Result<(Vec<u8>, std::ops::Range<usize>), StoreError> {
    let blocks: Vec<InlineBlock> = if inline { group.iter().flat_map(|q| q.data.iter().map(|(b, d)| InlineBlock { dev: *b, data: d.clone() })).collect() } else { Vec::new() };
    // Sized for the blocks and a generous share per op: rarely regrown.
    let ops: usize = group.iter().map(|q| q.ops.len()).sum();
    let mut record = Vec::with_capacity(RecordHeader::padded_len(blocks.len() * (BLOCK + 16) + ops * 256 + 64));
    record.resize(RECORD_HEADER_BYTES, 0);
    let body = RecordOps { txns: group.iter_mut().map(|q| std::mem::take(&mut q.ops)).collect() };
    let result = archive_ops_chunk(&body, &mut record);
    // A group that runs alone may wrap instead: its ops are archived again then.
    for (q, ops) in group.iter_mut().zip(body.txns) {
        q.ops = ops;
    }
    result?;
    let ops_chunk = RECORD_HEADER_BYTES..record.len();
    archive_after(&RecordInline { blocks }, &mut record)?;
    Ok((record, ops_chunk))
}

/// Appends `ops` to `buf` as one ops chunk: the archive's length (u32 LE),
/// then the archive.
fn archive_ops_chunk(ops: &RecordOps, buf: &mut Vec<u8>) -> Result<(), StoreError> {
    let at = buf.len();
    buf.extend_from_slice(&[0; 4]);
    let archived = archive_after(ops, buf).and_then(|()| u32::try_from(buf.len() - at - 4).map_err(|_| StoreError::Invalid("ops chunk exceeds 4 GiB".into())));
    match archived {
        Ok(n) => {
            buf[at..at + 4].copy_from_slice(&n.to_le_bytes());
            Ok(())
        }
        Err(e) => {
            buf.truncate(at);
            Err(e)
        }
    }
}

/// The first ops chunk's archive in `bytes` and what follows it; `None`
/// if its length overruns `bytes`.
fn split_ops_chunk(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let n = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let end = 4usize.checked_add(n)?;
    Some((bytes.get(4..end)?, &bytes[end..]))
}

/// Deserializes an ops chunk's archive (copied to an aligned buffer first:
/// chunks sit at any offset).
fn decode_ops(archive: &[u8]) -> Result<Vec<Vec<PhysOp>>, rkyv::rancor::Error> {
    let mut aligned = rkyv::util::AlignedVec::<16>::new();
    aligned.extend_from_slice(archive);
    Ok(rkyv::from_bytes::<RecordOps, rkyv::rancor::Error>(&aligned)?.txns)
}

/// A journal record read back at mount.
struct Replayed {
    txns: Vec<Vec<PhysOp>>,
    inline: Vec<InlineBlock>,
    /// Bytes it takes in the journal (header and padding included).
    len: u64,
}

/// Decodes the body of a record of `len` journal bytes (its crc already
/// checked); `None` if it does not decode, which ends the replay like a
/// torn record.
fn decode_record(body: &[u8], len: u64) -> Option<Replayed> {
    let (ops, rest) = split_ops_chunk(body)?;
    let txns = decode_ops(ops).ok()?;
    let mut aligned = rkyv::util::AlignedVec::<16>::new();
    aligned.extend_from_slice(rest);
    let inline = rkyv::from_bytes::<RecordInline, rkyv::rancor::Error>(&aligned).ok()?.blocks;
    Some(Replayed { txns, inline, len })
}

/// Clears a delta buffer back to room for its header, keeping its
/// capacity (a delta is megabytes).
fn empty_delta(buf: &mut Vec<u8>) {
    buf.clear();
    buf.resize(DELTA_HEADER_BYTES, 0);
}

/// Archives `value` at the end of `buf` (after a frame header or chunk
/// length already there), laid out exactly as in a buffer of its own:
/// readers copy it alone into an aligned buffer.
fn archive_after<T>(value: &T, buf: &mut Vec<u8>) -> Result<(), StoreError>
where
    T: for<'a, 'b> rkyv::Serialize<rkyv::api::high::HighSerializer<BodyWriter<'b>, rkyv::ser::allocator::ArenaHandle<'a>, rkyv::rancor::Error>>,
{
    let start = buf.len();
    rkyv::api::high::to_bytes_in::<_, rkyv::rancor::Error>(value, BodyWriter { buf, start }).map_err(|e| StoreError::Invalid(e.to_string()))?;
    Ok(())
}

/// An rkyv writer appending to a buffer whose positions count from
/// `start` (the body's first byte), not from the buffer's.
struct BodyWriter<'a> {
    buf: &'a mut Vec<u8>,
    start: usize,
}

impl rkyv::ser::Positional for BodyWriter<'_> {
    fn pos(&self) -> usize {
        self.buf.len() - self.start
    }
}

impl<E> rkyv::ser::Writer<E> for BodyWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), E> {
        self.buf.extend_from_slice(bytes);
        Ok(())
    }
}

fn check_name(obj: &str) -> Result<(), StoreError> {
    if obj.is_empty() || obj.len() > limits::object_name_bytes_max {
        return Err(StoreError::Invalid(format!("object name of {} bytes", obj.len())));
    }
    Ok(())
}

/// Drops the ops a later op of the same transaction makes moot, so that
/// records and deltas carry fewer (a client's write_full plans a touch, a
/// truncate to 0 and a write: two touches and two sizes, of which one each
/// is left): a `SetSize` that a later `SetSize` of the object overrides
/// (applying an op never reads the size), and a `Touch` of an object an
/// earlier `Touch` already made exist (that one takes the later mtime).
/// Neither reaches across a remove or creation of the object's collection
/// or a remove of the object: a touch after one creates the object anew.
pub(super) fn compact_ops(ops: &mut Vec<PhysOp>) {
    /// Per object since its last remove: its first touch, its last size.
    #[derive(Default)]
    struct Seen {
        touch: Option<usize>,
        size: Option<usize>,
    }
    let mut keep = vec![true; ops.len()];
    let mut later_mtimes: Vec<(usize, u64)> = Vec::new();
    {
        let mut seen: HashMap<(CollId, &str), Seen, Hasher> = HashMap::default();
        for (i, op) in ops.iter().enumerate() {
            match op {
                PhysOp::Touch { coll, obj, mtime_ms } => {
                    let s = seen.entry((*coll, obj.as_str())).or_default();
                    match s.touch {
                        Some(first) => {
                            keep[i] = false;
                            later_mtimes.push((first, *mtime_ms));
                        }
                        None => s.touch = Some(i),
                    }
                }
                PhysOp::SetSize { coll, obj, .. } => {
                    if let Some(overridden) = seen.entry((*coll, obj.as_str())).or_default().size.replace(i) {
                        keep[overridden] = false;
                    }
                }
                PhysOp::Remove { coll, obj } => {
                    seen.remove(&(*coll, obj.as_str()));
                }
                PhysOp::CreateColl(c) | PhysOp::RemoveColl(c) => seen.retain(|(kc, _), _| kc != c),
                _ => {}
            }
        }
    }
    if keep.iter().all(|k| *k) {
        return;
    }
    for (first, mtime) in later_mtimes {
        if let PhysOp::Touch { mtime_ms, .. } = &mut ops[first] {
            *mtime_ms = mtime;
        }
    }
    let mut at = 0;
    ops.retain(|_| {
        at += 1;
        keep[at - 1]
    });
}

/// An upper bound of how many bytes a transaction's ops would add to the
/// serialized metadata (negative: what they surely free), asked before
/// the transaction is admitted; once admitted, the bound grows by what
/// `Meta::apply` measures with the same rules (`meta::growth`). The ops
/// are walked in order over an overlay of what earlier ops of the same
/// transaction did, so a key set and removed (or removed and set) again
/// is counted right.
///
/// An archived omap or xattr map is a vector of entries (see `Onode`):
/// each costs `MAP_ENTRY_BYTES` plus the bytes of its key and value that do
/// not fit inline.
///
/// Not `precise`: every omap or xattr key set counts as new and removes
/// free nothing, so no key is looked up (a PG's omap holds thousands of
/// log keys; the lookups were ~5% of a replica write's CPU). The store
/// asks for the precise one only when this does not fit.
fn txn_growth_bytes<'a>(meta: &'a Meta, ops: &'a [PhysOp], precise: bool) -> i64 {
    let mut objects: HashMap<(CollId, &'a str), bool, Hasher> = HashMap::default();
    // Objects removed earlier in the transaction (maybe created again).
    let mut removed: HashSet<(CollId, &'a str), Hasher> = HashSet::default();
    let mut maps = MapOverlay { precise, ..MapOverlay::default() };
    let mut total = 0i64;
    for op in ops {
        total += match op {
            PhysOp::CreateColl(_) => COLLECTION_BYTES,
            PhysOp::RemoveColl(_) | PhysOp::DropBlocks { .. } | PhysOp::SetSize { .. } => 0,
            PhysOp::Touch { coll, obj, .. } => {
                let exists = objects.get(&(*coll, obj.as_str())).copied().unwrap_or_else(|| meta.onode(coll, obj).is_some());
                objects.insert((*coll, obj.as_str()), true);
                if exists {
                    0
                } else {
                    new_object(obj)
                }
            }
            PhysOp::Remove { coll, obj } => {
                let was_there = objects.get(&(*coll, obj.as_str())).copied();
                objects.insert((*coll, obj.as_str()), false);
                removed.insert((*coll, obj.as_str()));
                maps.clear(*coll, obj, MapKind::Omap);
                maps.clear(*coll, obj, MapKind::Xattr);
                match (was_there, meta.onode(coll, obj)) {
                    // Only the object's fixed part and blocks of the
                    // committed object: surely freed.
                    (None, Some(o)) => removed_object(obj, o.blocks.len()),
                    _ => 0,
                }
            }
            PhysOp::OmapClear { coll, obj } => {
                maps.clear(*coll, obj, MapKind::Omap);
                0
            }
            PhysOp::SetBlocks { coll, obj, blocks } => {
                // A block index of an object removed earlier in the
                // transaction is new again.
                let o = if removed.contains(&(*coll, obj.as_str())) { None } else { meta.onode(coll, obj) };
                blocks.iter().filter(|(i, _)| o.is_none_or(|o| !o.blocks.contains_key(i))).count() as i64 * BLOCK_ENTRY_BYTES
            }
            PhysOp::SetAttr { coll, obj, name, value } => maps.set(meta, *coll, obj, MapKind::Xattr, name, value.len()),
            PhysOp::RmAttr { coll, obj, name } => maps.remove(meta, *coll, obj, MapKind::Xattr, name),
            PhysOp::OmapSet { coll, obj, entries } => entries.iter().map(|(k, v)| maps.set(meta, *coll, obj, MapKind::Omap, k, v.len())).sum(),
            PhysOp::OmapRm { coll, obj, keys } => keys.iter().map(|k| maps.remove(meta, *coll, obj, MapKind::Omap, k)).sum(),
            PhysOp::OmapRmRange { coll, obj, start, end } => maps.remove_range(meta, *coll, obj, start, end),
            PhysOp::OmapHeader { value, .. } => value.len() as i64,
        };
    }
    total
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum MapKind {
    Omap,
    Xattr,
}

/// Omap and xattr maps as a transaction being estimated leaves them (see
/// [`txn_growth_bytes`]).
#[derive(Default)]
struct MapOverlay<'a> {
    /// Otherwise keys are not looked up: sets count as new, removes free
    /// nothing.
    precise: bool,
    /// Maps emptied by the transaction: their committed keys are gone.
    cleared: HashSet<(CollId, &'a str, MapKind), Hasher>,
    /// Keys the transaction set (value length) or removed (None).
    keys: HashMap<(CollId, &'a str, MapKind, &'a str), Option<usize>, Hasher>,
}

impl<'a> MapOverlay<'a> {
    fn committed(meta: &'a Meta, c: CollId, o: &str, kind: MapKind) -> Option<&'a BTreeMap<String, Vec<u8>>> {
        let onode = meta.onode(&c, o)?;
        Some(match kind {
            MapKind::Omap => &onode.omap,
            MapKind::Xattr => &onode.xattrs,
        })
    }

    /// The value length of `k` now (None: absent).
    fn value_len(&self, meta: &'a Meta, c: CollId, o: &'a str, kind: MapKind, k: &str) -> Option<usize> {
        if let Some(v) = self.keys.get(&(c, o, kind, k)) {
            return *v;
        }
        if self.cleared.contains(&(c, o, kind)) {
            return None;
        }
        Self::committed(meta, c, o, kind)?.get(k).map(Vec::len)
    }

    fn set(&mut self, meta: &'a Meta, c: CollId, o: &'a str, kind: MapKind, k: &'a str, v: usize) -> i64 {
        if !self.precise {
            return set_growth(k, None, v);
        }
        let grow = set_growth(k, self.value_len(meta, c, o, kind, k), v);
        self.keys.insert((c, o, kind, k), Some(v));
        grow
    }

    fn remove(&mut self, meta: &'a Meta, c: CollId, o: &'a str, kind: MapKind, k: &'a str) -> i64 {
        if !self.precise {
            return 0;
        }
        let freed = match self.value_len(meta, c, o, kind, k) {
            Some(old) => surely_freed(k, old),
            None => 0,
        };
        self.keys.insert((c, o, kind, k), None);
        freed
    }

    fn remove_range(&mut self, meta: &'a Meta, c: CollId, o: &'a str, start: &str, end: &str) -> i64 {
        if !self.precise || start >= end {
            return 0;
        }
        let in_range = |k: &str| k >= start && k < end;
        let mut gone: Vec<&'a str> =
            self.keys.iter().filter(|((kc, ko, kind, k), v)| *kc == c && *ko == o && *kind == MapKind::Omap && in_range(k) && v.is_some()).map(|((_, _, _, k), _)| *k).collect();
        if !self.cleared.contains(&(c, o, MapKind::Omap)) {
            if let Some(map) = Self::committed(meta, c, o, MapKind::Omap) {
                let range = map.range::<str, _>((std::ops::Bound::Included(start), std::ops::Bound::Excluded(end)));
                gone.extend(range.map(|(k, _)| k.as_str()).filter(|k| !self.keys.contains_key(&(c, o, MapKind::Omap, *k))));
            }
        }
        gone.into_iter().map(|k| self.remove(meta, c, o, MapKind::Omap, k)).sum()
    }

    fn clear(&mut self, c: CollId, o: &'a str, kind: MapKind) {
        self.cleared.insert((c, o, kind));
        self.keys.retain(|(kc, ko, kk, _), _| !(*kc == c && *ko == o && *kk == kind));
    }
}

/// What planning needs of an onode: everything but its omap.
fn planning_copy(o: &Onode) -> Onode {
    Onode { size: o.size, mtime_ms: o.mtime_ms, blocks: o.blocks.clone(), xattrs: o.xattrs.clone(), omap: BTreeMap::new(), omap_header: Vec::new() }
}

/// The metadata as a transaction being planned sees it: the committed
/// metadata with the transaction's own earlier ops applied on copies.
///
/// Ops are applied when the view is next asked, not when emitted: the last
/// ops of a transaction are often never asked about (a whole-block
/// overwrite asks nothing after its blocks are set), and applying one
/// copies its object into the view.
#[derive(Default)]
struct View {
    /// The transaction's physical ops so far.
    ops: Vec<PhysOp>,
    /// How many of `ops` `seen` reflects.
    applied: usize,
    seen: Overlay,
}

impl View {
    fn emit(&mut self, op: PhysOp) {
        self.ops.push(op);
    }

    /// The overlay with every op emitted so far applied.
    fn current(&mut self, meta: &Meta) -> &Overlay {
        for op in &self.ops[self.applied..] {
            self.seen.apply(meta, op);
        }
        self.applied = self.ops.len();
        &self.seen
    }

    /// Whether the collection exists after the ops so far: the newest
    /// create or remove of it among the ops not yet applied answers (no
    /// other op changes it), else the view (see [`View::exists`]: every
    /// op on an object checks its collection first).
    fn coll_exists(&mut self, meta: &Meta, c: &CollId) -> bool {
        for op in self.ops[self.applied..].iter().rev() {
            match op {
                PhysOp::CreateColl(coll) if coll == c => return true,
                PhysOp::RemoveColl(coll) if coll == c => return false,
                _ => {}
            }
        }
        self.seen.coll_exists(meta, c)
    }

    fn coll_empty(&mut self, meta: &Meta, c: &CollId) -> bool {
        self.current(meta).coll_empty(meta, c)
    }

    fn onode<'a>(&'a mut self, meta: &'a Meta, c: &CollId, o: &str) -> Option<&'a Onode> {
        self.current(meta).onode(meta, c, o)
    }

    /// Whether the object exists after the ops so far. Only ops that
    /// create or remove objects decide it, so the newest of those among
    /// the ops not yet applied answers without applying any: applying
    /// copies the object into the view, and a write that sets an attr
    /// after its blocks (every PG write: its version record) would pay
    /// for a copy of the block map just to learn the object exists.
    fn exists(&mut self, meta: &Meta, c: &CollId, o: &str) -> bool {
        for op in self.ops[self.applied..].iter().rev() {
            match op {
                PhysOp::Touch { coll, obj, .. } if coll == c && obj == o => return true,
                PhysOp::Remove { coll, obj } if coll == c && obj == o => return false,
                // A new collection is empty; a removed one was.
                PhysOp::CreateColl(coll) | PhysOp::RemoveColl(coll) if coll == c => return false,
                _ => {}
            }
        }
        self.seen.exists(meta, c, o)
    }
}

/// What a transaction's ops changed, over the committed metadata.
#[derive(Default)]
struct Overlay {
    /// Objects changed, per collection (`None`: removed). Keyed per
    /// collection so that a lookup borrows the name.
    objs: HashMap<CollId, HashMap<String, Option<Onode>, Hasher>, Hasher>,
    colls: HashMap<CollId, bool, Hasher>,
    /// Objects created or removed per collection (for emptiness checks).
    delta: HashMap<CollId, i64, Hasher>,
}

impl Overlay {
    fn coll_exists(&self, meta: &Meta, c: &CollId) -> bool {
        self.colls.get(c).copied().unwrap_or_else(|| meta.colls.contains_key(c))
    }

    fn coll_empty(&self, meta: &Meta, c: &CollId) -> bool {
        let base = if self.colls.get(c) == Some(&true) && !meta.colls.contains_key(c) { 0 } else { meta.colls.get(c).map_or(0, |o| o.len()) as i64 };
        base + self.delta.get(c).copied().unwrap_or(0) == 0
    }

    fn onode<'a>(&'a self, meta: &'a Meta, c: &CollId, o: &str) -> Option<&'a Onode> {
        match self.objs.get(c).and_then(|objs| objs.get(o)) {
            Some(v) => v.as_ref(),
            None => {
                if self.colls.get(c) == Some(&false) {
                    return None;
                }
                meta.onode(c, o)
            }
        }
    }

    fn exists(&self, meta: &Meta, c: &CollId, o: &str) -> bool {
        self.onode(meta, c, o).is_some()
    }

    fn apply(&mut self, meta: &Meta, op: &PhysOp) {
        match op {
            PhysOp::CreateColl(c) => {
                self.colls.insert(*c, true);
            }
            PhysOp::RemoveColl(c) => {
                self.colls.insert(*c, false);
            }
            PhysOp::Touch { coll, obj, mtime_ms } => {
                let existed = self.exists(meta, coll, obj);
                if let Some(Some(o)) = self.objs.get_mut(coll).and_then(|objs| objs.get_mut(obj.as_str())) {
                    o.mtime_ms = *mtime_ms;
                    return;
                }
                let mut o = self.onode(meta, coll, obj).map(planning_copy).unwrap_or_default();
                o.mtime_ms = *mtime_ms;
                self.objs.entry(*coll).or_default().insert(obj.clone(), Some(o));
                if !existed {
                    *self.delta.entry(*coll).or_default() += 1;
                }
            }
            PhysOp::Remove { coll, obj } => {
                if self.exists(meta, coll, obj) {
                    *self.delta.entry(*coll).or_default() -= 1;
                }
                self.objs.entry(*coll).or_default().insert(obj.clone(), None);
            }
            // Planning never looks at omap contents, only at existence,
            // sizes, blocks and xattr names: omap ops leave the view alone
            // (a PG's log lives in one omap; copying it per write was
            // O(log length)).
            PhysOp::OmapSet { .. } | PhysOp::OmapRm { .. } | PhysOp::OmapRmRange { .. } | PhysOp::OmapHeader { .. } | PhysOp::OmapClear { .. } => {}
            other => {
                let Some((coll, obj)) = other.object_target() else { return };
                let removed_coll = self.colls.get(coll) == Some(&false);
                let objs = self.objs.entry(*coll).or_default();
                // Copy the object into the view once; later ops of the
                // transaction change the copy in place.
                if !objs.contains_key(obj) {
                    let base = if removed_coll { None } else { meta.onode(coll, obj).map(planning_copy) };
                    objs.insert(obj.to_string(), base);
                }
                if let Some(Some(o)) = objs.get_mut(obj) {
                    let mut freed = Vec::new();
                    super::meta::apply_to_onode(o, other, &mut freed);
                }
            }
        }
    }
}
