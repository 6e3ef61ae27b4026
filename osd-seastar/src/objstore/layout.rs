//! On-disk layout: the superblock, one region per shard, and the headers of
//! region, checkpoint slot and journal record.
//!
//! ```text
//! device: [superblock 4K][region 0][region 1]...
//! region: [region header 4K][checkpoint A][checkpoint B][journal][data blocks]
//! slot:   [checkpoint header 4K][base body][delta 1][delta 2]...
//! ```
//!
//! A checkpoint slot holds a full copy of the metadata (the base) followed
//! by deltas: each delta carries the metadata ops of the journal records it
//! replaced, so a journal wrap writes what changed, not everything. A delta
//! names its base's seq and its own index, so deltas left in a slot by an
//! older base never pass for the current one's.
//!
//! Every header carries a crc32 and is checked before use; a device of
//! another OSD, another cluster or another shard count is refused.

use super::device::BLOCK;

pub const SUPER_MAGIC: &[u8; 8] = b"SEPIASTR";
pub const REGION_MAGIC: &[u8; 8] = b"SEPIAREG";
pub const CKPT_MAGIC: &[u8; 8] = b"SEPIACKP";
pub const RECORD_MAGIC: u32 = 0x4e52_4a53; // "SJRN"
pub const DELTA_MAGIC: u32 = 0x544c_4453; // "SDLT"
/// 2: the superblock carries the OSD's uuid (a block device has no room
/// beside it for an identity file). 3: checkpoint slots carry deltas after
/// their base (a version-2 reader would ignore them and lose writes).
/// 4: a checkpoint archives each collection's objects as a hash table.
/// 5: a checkpoint archives objects and their maps as plain vectors of
/// entries (cheaper to write; mount rebuilds the tables). 6: a record's
/// body is an ops chunk then its inline blocks, and a delta is a run of
/// ops chunks (a chunk: the archive's length, u32 LE, then the archive).
pub const FORMAT_VERSION: u32 = 6;
pub const RECORD_HEADER_BYTES: usize = 40;
pub const DELTA_HEADER_BYTES: usize = 56;
/// Shards (regions) per device: one per core of a big node.
pub const SHARDS_MAX: u32 = 256;

fn put_u32(b: &mut Vec<u8>, v: u32) {
    b.extend_from_slice(&v.to_le_bytes());
}
fn put_u64(b: &mut Vec<u8>, v: u64) {
    b.extend_from_slice(&v.to_le_bytes());
}
fn get_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn get_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn seal(mut body: Vec<u8>) -> Vec<u8> {
    let crc = crc32fast::hash(&body);
    put_u32(&mut body, crc);
    body.resize(BLOCK, 0);
    body
}

fn unseal(block: &[u8], len: usize) -> Option<&[u8]> {
    if block.len() < len + 4 {
        return None;
    }
    (crc32fast::hash(&block[..len]) == get_u32(block, len)).then_some(&block[..len])
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superblock {
    pub fsid: [u8; 16],
    pub osd: i32,
    pub shards: u32,
    pub device_bytes: u64,
    /// The OSD's uuid, as registered with the monitors (`osd new`).
    pub osd_uuid: [u8; 16],
}

impl Superblock {
    const LEN: usize = 8 + 4 + 16 + 4 + 4 + 8 + 16;

    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(BLOCK);
        b.extend_from_slice(SUPER_MAGIC);
        put_u32(&mut b, FORMAT_VERSION);
        b.extend_from_slice(&self.fsid);
        put_u32(&mut b, self.osd as u32);
        put_u32(&mut b, self.shards);
        put_u64(&mut b, self.device_bytes);
        b.extend_from_slice(&self.osd_uuid);
        seal(b)
    }

    pub fn decode(block: &[u8]) -> Result<Superblock, String> {
        let b = unseal(block, Self::LEN).ok_or("superblock checksum mismatch (not a sepia store?)")?;
        if &b[..8] != SUPER_MAGIC {
            return Err("no sepia superblock".into());
        }
        if get_u32(b, 8) != FORMAT_VERSION {
            return Err(format!("format version {} is not {FORMAT_VERSION}", get_u32(b, 8)));
        }
        let sb = Superblock {
            fsid: b[12..28].try_into().expect("16 bytes"),
            osd: get_u32(b, 28) as i32,
            shards: get_u32(b, 32),
            device_bytes: get_u64(b, 36),
            osd_uuid: b[44..60].try_into().expect("16 bytes"),
        };
        if sb.shards == 0 || sb.shards > SHARDS_MAX {
            return Err(format!("shard count {} out of range", sb.shards));
        }
        Ok(sb)
    }

    /// Region `i`: its start and length, block aligned, equal shares.
    pub fn region(&self, i: u32) -> (u64, u64) {
        let usable = self.device_bytes - BLOCK as u64;
        let share = usable / u64::from(self.shards) / BLOCK as u64 * BLOCK as u64;
        (BLOCK as u64 + share * u64::from(i), share)
    }
}

/// Sizes inside one region, fixed at mkfs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegionHeader {
    pub shard: u32,
    /// Random per mkfs: records of an older store on the same device
    /// never pass for ours.
    pub instance: u64,
    pub ckpt_bytes: u64,
    pub journal_bytes: u64,
    pub data_blocks: u64,
}

impl RegionHeader {
    const LEN: usize = 8 + 16 + 4 + 4 + 8 * 4;

    pub fn encode(&self, fsid: &[u8; 16], osd: i32) -> Vec<u8> {
        let mut b = Vec::with_capacity(BLOCK);
        b.extend_from_slice(REGION_MAGIC);
        b.extend_from_slice(fsid);
        put_u32(&mut b, osd as u32);
        put_u32(&mut b, self.shard);
        put_u64(&mut b, self.instance);
        put_u64(&mut b, self.ckpt_bytes);
        put_u64(&mut b, self.journal_bytes);
        put_u64(&mut b, self.data_blocks);
        seal(b)
    }

    pub fn decode(block: &[u8], fsid: &[u8; 16], osd: i32) -> Result<RegionHeader, String> {
        let b = unseal(block, Self::LEN).ok_or("region header checksum mismatch")?;
        if &b[..8] != REGION_MAGIC || &b[8..24] != fsid || get_u32(b, 24) as i32 != osd {
            return Err("region header belongs to another store".into());
        }
        Ok(RegionHeader {
            shard: get_u32(b, 28),
            instance: get_u64(b, 32),
            ckpt_bytes: get_u64(b, 40),
            journal_bytes: get_u64(b, 48),
            data_blocks: get_u64(b, 56),
        })
    }

    pub fn ckpt_offset(&self, slot: usize) -> u64 {
        BLOCK as u64 + self.ckpt_bytes * slot as u64
    }

    pub fn journal_offset(&self) -> u64 {
        BLOCK as u64 + 2 * self.ckpt_bytes
    }

    pub fn data_offset(&self) -> u64 {
        self.journal_offset() + self.journal_bytes
    }

    /// Splits a region of `len` bytes (journal and checkpoint sizes may be
    /// forced, e.g. small to make a benchmark wrap often).
    pub fn plan(shard: u32, instance: u64, len: u64, journal: Option<u64>, ckpt: Option<u64>) -> Result<RegionHeader, String> {
        let round = |v: u64| v / BLOCK as u64 * BLOCK as u64;
        let ckpt_bytes = round(ckpt.unwrap_or((len / 32).clamp(1 << 20, 256 << 20)));
        let journal_bytes = round(journal.unwrap_or((len / 16).clamp(4 << 20, 1 << 30)));
        let meta = BLOCK as u64 + 2 * ckpt_bytes + journal_bytes;
        if ckpt_bytes < 2 * BLOCK as u64 || journal_bytes < 4 * BLOCK as u64 || len < meta + 16 * BLOCK as u64 {
            return Err(format!("region of {len} bytes too small for its journal ({journal_bytes}) and checkpoints ({ckpt_bytes})"));
        }
        Ok(RegionHeader { shard, instance, ckpt_bytes, journal_bytes, data_blocks: (len - meta) / BLOCK as u64 })
    }
}

/// A checkpoint slot's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CkptHeader {
    pub instance: u64,
    pub seq: u64,
    /// The seq of the first journal record after this checkpoint.
    pub journal_seq: u64,
    pub body_len: u64,
    pub body_crc: u32,
}

impl CkptHeader {
    const LEN: usize = 8 + 8 * 4 + 4;

    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(BLOCK);
        b.extend_from_slice(CKPT_MAGIC);
        put_u64(&mut b, self.instance);
        put_u64(&mut b, self.seq);
        put_u64(&mut b, self.journal_seq);
        put_u64(&mut b, self.body_len);
        put_u32(&mut b, self.body_crc);
        seal(b)
    }

    pub fn decode(block: &[u8], instance: u64) -> Option<CkptHeader> {
        let b = unseal(block, Self::LEN)?;
        if &b[..8] != CKPT_MAGIC || get_u64(b, 8) != instance {
            return None;
        }
        Some(CkptHeader { instance, seq: get_u64(b, 16), journal_seq: get_u64(b, 24), body_len: get_u64(b, 32), body_crc: get_u32(b, 40) })
    }
}

/// A journal record's header (the first bytes of its first block).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    pub instance: u64,
    pub seq: u64,
    pub body_len: u32,
    pub body_crc: u32,
}

impl RecordHeader {
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let start = out.len();
        put_u32(out, RECORD_MAGIC);
        put_u32(out, FORMAT_VERSION);
        put_u64(out, self.instance);
        put_u64(out, self.seq);
        put_u32(out, self.body_len);
        put_u32(out, self.body_crc);
        let crc = crc32fast::hash(&out[start..]);
        put_u32(out, crc);
        put_u32(out, 0);
        debug_assert_eq!(out.len() - start, RECORD_HEADER_BYTES);
    }

    pub fn decode(b: &[u8], instance: u64) -> Option<RecordHeader> {
        if b.len() < RECORD_HEADER_BYTES || get_u32(b, 0) != RECORD_MAGIC || crc32fast::hash(&b[..32]) != get_u32(b, 32) {
            return None;
        }
        let h = RecordHeader { instance: get_u64(b, 8), seq: get_u64(b, 16), body_len: get_u32(b, 24), body_crc: get_u32(b, 28) };
        (h.instance == instance).then_some(h)
    }

    /// Whole blocks the record occupies.
    pub fn padded_len(body_len: usize) -> usize {
        (RECORD_HEADER_BYTES + body_len).div_ceil(BLOCK) * BLOCK
    }
}

/// A checkpoint delta's header (the first bytes of its first block): the
/// metadata ops of every journal record with a seq below `journal_seq`
/// that the base and earlier deltas do not already hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeltaHeader {
    pub instance: u64,
    /// The seq of the base checkpoint this delta extends.
    pub base_seq: u64,
    /// 1 for the first delta after the base, then 2, 3, ...
    pub index: u64,
    /// The seq of the first journal record after this delta.
    pub journal_seq: u64,
    pub body_len: u32,
    pub body_crc: u32,
}

impl DeltaHeader {
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let start = out.len();
        put_u32(out, DELTA_MAGIC);
        put_u32(out, FORMAT_VERSION);
        put_u64(out, self.instance);
        put_u64(out, self.base_seq);
        put_u64(out, self.index);
        put_u64(out, self.journal_seq);
        put_u32(out, self.body_len);
        put_u32(out, self.body_crc);
        let crc = crc32fast::hash(&out[start..]);
        put_u32(out, crc);
        put_u32(out, 0);
        debug_assert_eq!(out.len() - start, DELTA_HEADER_BYTES);
    }

    pub fn decode(b: &[u8], instance: u64) -> Option<DeltaHeader> {
        if b.len() < DELTA_HEADER_BYTES || get_u32(b, 0) != DELTA_MAGIC || crc32fast::hash(&b[..48]) != get_u32(b, 48) {
            return None;
        }
        let h = DeltaHeader {
            instance: get_u64(b, 8),
            base_seq: get_u64(b, 16),
            index: get_u64(b, 24),
            journal_seq: get_u64(b, 32),
            body_len: get_u32(b, 40),
            body_crc: get_u32(b, 44),
        };
        (h.instance == instance).then_some(h)
    }

    /// Whole blocks the delta occupies.
    pub fn padded_len(body_len: usize) -> usize {
        (DELTA_HEADER_BYTES + body_len).div_ceil(BLOCK) * BLOCK
    }
}
