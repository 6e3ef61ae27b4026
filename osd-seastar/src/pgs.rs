//! The placement groups of one shard: the IO shell around the sans-IO PG
//! state machine in [`crate::pg::machine`].
//!
//! The shard feeds each PG its maps (every PG of every pool whose copy on
//! this OSD lives on this shard), client writes, messages from the other
//! members' shards and store commit notices, and carries out the effects:
//! store transactions, messages, client answers, object reads for
//! recovery.
//!
//! Durable PG state lives in the PG's own collection, in the omap of the
//! object [`PGMETA`] (a name no client object can take: client names may
//! not contain NUL): `info` (last update, last complete, log tail, last
//! epoch started), `missing`, and one key per log entry, `log.EPOCH.VERSION`
//! in fixed-width digits so the omap order is the log order, and the dup
//! records `dup.EPOCH.VERSION`: the request ids of entries a trim up to that
//! version removed (28 bytes each; the oldest records go once the newer ones
//! hold `dups_tracked_max` ids). A write's log entry, and any trim the PG
//! made with it, go into the same store transaction as its data, with the
//! object's version record (the version of its last write, 12 bytes;
//! backfill compares these instead of contents). The version record of an
//! object that exists is its xattr [`VERSION_ATTR`], as Ceph keeps its
//! object info in an attr of the object: a write finds the onode anyway,
//! where a key in the meta object's omap (every object of the PG, sorted)
//! cost a cold B-tree walk on every write and every lookup (the price:
//! an object without other xattrs now allocates an attr map node, ~560
//! bytes of RAM, where its omap key cost ~120). A removed
//! object's record is a tombstone `ver.KEY` in the meta omap, indexed by
//! `tomb.EPOCH.VERSION.KEY`; the write that creates the object again drops
//! it. (Stores written before the attr existed hold `ver.KEY` for live
//! objects too: a live object without the attr falls back to it.)
//! `backfill` holds
//! the member's backfill cursor while a backfill has not finished (absent:
//! complete). `intervals` holds the PG's [`PgHistory`] (the newest epoch
//! it processed, its current and past intervals; a format byte first, an
//! unknown format or a malformed record is logged and read as none), in
//! every `Persist` — the machine persists whenever its interval changes.
//!
//! Maps: the shard feeds every epoch in order (`advance_pgs` walks the
//! monitor link's bounded map history from the last epoch it fed), and
//! after each walk records the epoch and the map itself in the object
//! [`OSDMAP_META`] of the meta collection, through the same ordered queue
//! as the PG records, so once that record is durable every interval change
//! before it is too. At start the OSD subscribes after the oldest map its
//! shards recorded (the monitor sends the incrementals of the downtime),
//! each shard resumes its walk after its own, and a loaded PG counts every
//! epoch up to the shard's record as processed. Epochs nobody can supply
//! (older than the monitor's history) are a gap: logged, and the PGs treat
//! them as `crate::pg::machine` says.
//!
//! Invariants:
//! - Every store transaction of this shard's PGs is planned by one task,
//!   in the order the machines asked for it (`apply_loop`), so a PG's log
//!   and an object's bytes change in log order, and an `Append` or
//!   `Persist` is planned against everything asked before it.
//! - Effects that follow a `Persist` are carried out only once it is
//!   durable (peering never reports state that a crash could take back).
//! - Messages to one peer shard leave in the order they were produced
//!   (one outbox task per address); PG messages arriving on one
//!   connection are fed in arrival order (never from spawned tasks).
//! - A recovery or backfill read, and a backfill listing, run after every
//!   store transaction the PG asked for before them is planned (they go
//!   through the same queue), so they see every write the PG ordered
//!   before asking.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use sepia_proto::msg::{Body, EVersion, ObjectId, PeerOp, PgPeer, RepOp, ReqId, SubOp, WireBackfillPos, WireListed, WireLogEntry, WireMissing, WireObject};
use sepia_proto::osdmap::{Epoch, OsdId, OsdMap, PgId};
use tokio::sync::oneshot;

use crate::objstore::{CollId, Op, StoreError, Transaction};
use crate::pg::log::{LogEntry, LogOp, PgInfo};
use crate::pg::log::Trim;
use crate::pg::backfill::{object_of_key, BackfillPlan, BackfillPos, Listed};
use crate::pg::machine::{ClientWrite, Effect, Interval, ListTag, Missing, ObjectContent, PeerMsg, Pg, PgDurable, PgHistory, PgParams, PgState, Txn};
use crate::server::{coll_of, object_key, Payload, Shard};

/// The omap object holding a PG's durable state.
pub const PGMETA: &str = "\u{0}pgmeta";

pub mod limits {
    #![allow(non_upper_case_globals)]
    /// Store transactions queued for planning; client writes are refused
    /// with EAGAIN before it fills (see `apply_admit_free_min`).
    pub const apply_queue_max: usize = 4096;
    /// Free queue slots a client write needs: the rest is kept for
    /// peering and recovery, which cannot be refused.
    pub const apply_admit_free_min: usize = 512;
    /// Messages queued per peer shard before new ones are dropped (peering
    /// resends; a lost replica write times out and the client resends).
    pub const outbox_messages_max: usize = 4096;
    /// Queued messages to one peer shard written with one syscall.
    pub const outbox_batch_max: usize = 64;
    /// How often peering and recovery are nudged.
    pub const peering_retry_ms: u64 = 500;
    /// PG log entries a degraded PG keeps: a member further behind needs
    /// backfill (not built yet). Every entry lives in the store's metadata
    /// (~150 bytes), and a checkpoint rewrites it all.
    pub const log_entries_max: usize = 3000;
    /// Entries a clean PG keeps (Ceph's `osd_min_pg_log_entries`): short
    /// logs keep the metadata, and so every checkpoint, small.
    pub const log_entries_min: usize = 250;
    /// Request ids of trimmed entries kept durable per PG (Ceph's
    /// `osd_pg_log_dups_tracked`): a late resend of a trimmed write is
    /// still answered, not applied again. 28 bytes each.
    pub const dups_tracked_max: usize = 3000;
    /// How long a client write waits for its replicas before EAGAIN.
    pub const write_wait_ms: u64 = 10_000;
    /// Objects listed per backfill batch on each side (Ceph's
    /// `osd_backfill_scan_max`): one listing message stays small, and
    /// writes wait at most for one batch's objects.
    pub const backfill_scan_objects_max: usize = 64;
    /// Backfill pushes in flight per target (Ceph's
    /// `osd_recovery_max_active`): recovery must not crowd out clients.
    pub const backfill_pushes_max: usize = 8;
    /// Bytes of backfill pushes in flight per target: bounds the memory
    /// of object contents read and not yet acknowledged.
    pub const backfill_push_bytes_max: usize = 32 << 20;
    /// Tombstones (version records of removed objects) dropped with one
    /// clean trim: bounds the work a trim adds to a write's transaction.
    pub const tombstones_per_trim_max: usize = 256;
    /// Smallest log `SEPIA_OSD_PG_LOG_MAX` may ask for (tests lower the
    /// limits so a short outage needs a backfill).
    pub const log_entries_override_min: usize = 8;
}

/// The PG log limits: `limits::log_entries_min/max`, or, when
/// `SEPIA_OSD_PG_LOG_MAX=N` is set (tests), a degraded PG keeps `N` entries
/// and a clean one `N / 4`.
fn log_limits() -> (usize, usize) {
    static LIMITS: std::sync::OnceLock<(usize, usize)> = std::sync::OnceLock::new();
    *LIMITS.get_or_init(|| {
        let default = (limits::log_entries_min, limits::log_entries_max);
        let Ok(v) = std::env::var("SEPIA_OSD_PG_LOG_MAX") else { return default };
        match v.parse::<usize>() {
            Ok(n) if (limits::log_entries_override_min..=limits::log_entries_max).contains(&n) => (n / 4, n),
            _ => {
                eprintln!("SEPIA_OSD_PG_LOG_MAX={v}: want a number in {}..={}; ignored", limits::log_entries_override_min, limits::log_entries_max);
                default
            }
        }
    })
}

/// A client write's sub-ops and payload, as the machine carries it.
#[derive(Debug)]
pub struct WritePayload {
    pub subops: Vec<SubOp>,
    pub data: Vec<u8>,
}

pub type WriteRef = Rc<WritePayload>;

pub struct PgSlot {
    pub pg: Pg<WriteRef>,
    /// The durable dup records (`dup.` keys in the PG's meta object),
    /// oldest first, with how many request ids each holds.
    dup_records: std::collections::VecDeque<(String, usize)>,
}

/// A store transaction a PG asked for.
pub enum ApplyItem {
    Apply { pg: PgId, entry: LogEntry, txn: Txn<WriteRef>, info: PgInfo, les: Epoch, trim: Option<Trim> },
    Persist {
        pg: PgId,
        info: PgInfo,
        les: Epoch,
        missing: Vec<(ObjectId, Missing)>,
        rewound_to: Option<EVersion>,
        appended: Vec<LogEntry>,
        trim: Option<Trim>,
        last_backfill: BackfillPos,
        history: PgHistory,
        done: oneshot::Sender<bool>,
    },
    /// The shard fed its PGs every map up to this one: the epoch and the
    /// map itself, so a restart resumes the walk after it.
    ShardEpoch { map: Arc<OsdMap> },
    /// Read an object for recovery once everything before is planned.
    Read { pg: PgId, object: ObjectId },
    /// List objects for a backfill once everything before is planned.
    List { pg: PgId, tag: ListTag, after: BackfillPos, until: BackfillPos, max: usize },
}

/// The index of a tombstone (the version record of a removed object),
/// by version, so a clean PG's trim can drop the old ones.
fn tomb_key(v: EVersion, key: &str) -> String {
    let mut s = version_sorted_key("tomb.", v, key.len() + 1);
    s.push('.');
    s.push_str(key);
    s
}

/// `PREFIX` then the version as `EPOCH.VERSION` in fixed-width digits (10
/// and 20: every u32 and u64 fits), so keys sort in version order. Written
/// by hand: `format!` with padding was 1% of an OSD's CPU at one key per
/// write.
fn version_sorted_key(prefix: &str, v: EVersion, spare: usize) -> String {
    fn push_padded(out: &mut String, mut n: u64, width: usize) {
        let mut digits = [b'0'; 20];
        let mut i = digits.len();
        while n > 0 {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
        out.push_str(std::str::from_utf8(&digits[digits.len() - width..]).expect("ASCII digits"));
    }
    let mut s = String::with_capacity(prefix.len() + 31 + spare);
    s.push_str(prefix);
    push_padded(&mut s, u64::from(v.epoch), 10);
    s.push('.');
    push_padded(&mut s, v.version, 20);
    s
}

/// Length of a `tomb_key` before the object's key.
const TOMB_PREFIX_LEN: usize = 5 + 10 + 1 + 20 + 1;

/// The omap key, in the PG's meta object, of the version record of the
/// object stored under `key` when it is removed (its tombstone).
fn version_key(key: &str) -> String {
    format!("ver.{key}")
}

/// The xattr holding the version record of an object that exists. NUL
/// starts it, and clients' xattr names may not start with NUL: no client
/// can set, remove or see it.
pub const VERSION_ATTR: &str = "\u{0}ver";

/// Whether an xattr name is the OSD's own (hidden from clients).
pub fn is_internal_attr(name: &str) -> bool {
    name.starts_with('\u{0}')
}

fn encode_version(v: EVersion) -> Vec<u8> {
    let mut b = Vec::with_capacity(12);
    b.extend_from_slice(&v.epoch.to_le_bytes());
    b.extend_from_slice(&v.version.to_le_bytes());
    b
}

/// Zero (unknown: never equal to anything) for a malformed record.
fn decode_version(b: &[u8]) -> EVersion {
    if b.len() != 12 {
        return EVersion::default();
    }
    EVersion { epoch: u32::from_le_bytes(b[0..4].try_into().expect("4")), version: u64::from_le_bytes(b[4..12].try_into().expect("8")) }
}

fn pos_to_wire(p: &BackfillPos) -> WireBackfillPos {
    match p {
        BackfillPos::Min => WireBackfillPos::Min,
        BackfillPos::Key(k) => WireBackfillPos::Key(k.clone()),
        BackfillPos::Max => WireBackfillPos::Max,
    }
}

fn pos_from_wire(p: WireBackfillPos) -> BackfillPos {
    match p {
        WireBackfillPos::Min => BackfillPos::Min,
        WireBackfillPos::Key(k) => BackfillPos::Key(k),
        WireBackfillPos::Max => BackfillPos::Max,
    }
}

/// The durable form of a backfill cursor (`None`: complete, no key).
fn encode_pos(p: &BackfillPos) -> Option<Vec<u8>> {
    match p {
        BackfillPos::Max => None,
        BackfillPos::Min => Some(vec![0]),
        BackfillPos::Key(k) => Some([&[1u8][..], k.as_bytes()].concat()),
    }
}

/// A malformed record restarts the backfill (`Min`): never trusts more.
fn decode_pos(b: &[u8]) -> BackfillPos {
    match b.split_first() {
        Some((1, k)) => std::str::from_utf8(k).map_or(BackfillPos::Min, |k| BackfillPos::Key(k.to_string())),
        _ => BackfillPos::Min,
    }
}

/// The last byte of a log entry record in the current layout. A record
/// of the first layout (no `prior_version`) ends with its `delete` flag
/// or zero padding, so never with this.
const LOG_RECORD_TAG: u8 = 0xa2;

/// The first layout of a log entry record, read from stores written
/// before `prior_version` was.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct WireLogEntryV1 {
    version: EVersion,
    reqid: ReqId,
    object: ObjectId,
    delete: bool,
}

fn encode_log_entry(e: &LogEntry) -> Vec<u8> {
    let mut b = archive(&to_wire(e));
    b.push(LOG_RECORD_TAG);
    b
}

fn decode_log_entry(b: &[u8]) -> Option<LogEntry> {
    match b.split_last() {
        Some((&LOG_RECORD_TAG, body)) => unarchive::<WireLogEntry>(body).map(from_wire),
        _ => unarchive::<WireLogEntryV1>(b).map(|w| LogEntry { version: w.version, reqid: w.reqid, object: w.object, op: if w.delete { LogOp::Delete } else { LogOp::Modify }, prior_version: None }),
    }
}

fn log_key(v: EVersion) -> String {
    version_sorted_key("log.", v, 0)
}

/// Just past every `log.` key.
const LOG_KEYS_END: &str = "log/";

/// The dup record written with a trim to `v` (keys sort by version).
fn dup_key(v: EVersion) -> String {
    version_sorted_key("dup.", v, 0)
}

/// Just past every `dup.` key.
const DUP_KEYS_END: &str = "dup/";

/// Bytes of one request id and version in a dup record.
const DUP_BYTES: usize = 8 + 8 + 4 + 8;

fn encode_dups(dups: &[(ReqId, EVersion)]) -> Vec<u8> {
    let mut b = Vec::with_capacity(dups.len() * DUP_BYTES);
    for (r, v) in dups {
        b.extend_from_slice(&r.client.to_le_bytes());
        b.extend_from_slice(&r.tid.to_le_bytes());
        b.extend_from_slice(&v.epoch.to_le_bytes());
        b.extend_from_slice(&v.version.to_le_bytes());
    }
    b
}

/// `None` for a record of the wrong length (the store checksums its
/// metadata, so this is a bug or a foreign store, and the record is skipped).
fn decode_dups(b: &[u8]) -> Option<Vec<(ReqId, EVersion)>> {
    if !b.len().is_multiple_of(DUP_BYTES) {
        return None;
    }
    let u64_at = |c: &[u8], at: usize| u64::from_le_bytes(c[at..at + 8].try_into().expect("8 bytes"));
    Some(
        b.chunks_exact(DUP_BYTES)
            .map(|c| {
                let reqid = ReqId { client: u64_at(c, 0), tid: u64_at(c, 8) };
                let version = EVersion { epoch: u32::from_le_bytes(c[16..20].try_into().expect("4 bytes")), version: u64_at(c, 20) };
                (reqid, version)
            })
            .collect(),
    )
}

fn encode_info(info: &PgInfo, les: Epoch) -> Vec<u8> {
    let mut b = Vec::with_capacity(40);
    for v in [info.last_update, info.last_complete, info.log_tail] {
        b.extend_from_slice(&v.epoch.to_le_bytes());
        b.extend_from_slice(&v.version.to_le_bytes());
    }
    b.extend_from_slice(&les.to_le_bytes());
    b
}

fn decode_info(b: &[u8]) -> Option<(PgInfo, Epoch)> {
    if b.len() != 40 {
        return None;
    }
    let ev = |at: usize| EVersion { epoch: u32::from_le_bytes(b[at..at + 4].try_into().expect("4")), version: u64::from_le_bytes(b[at + 4..at + 12].try_into().expect("8")) };
    let info = PgInfo { last_update: ev(0), last_complete: ev(12), log_tail: ev(24) };
    Some((info, u32::from_le_bytes(b[36..40].try_into().expect("4"))))
}

/// Version byte of the `intervals` record; a record of another version
/// (or malformed) is read as none, with a log line.
const HISTORY_FORMAT: u8 = 1;

/// The `intervals` record: format byte, newest epoch processed, the
/// current interval (flag byte, then one), the count of past intervals and
/// each; an interval is start, end (u32), primary (i32, -1: none), a flag
/// byte (bit 0: unknown, a map gap; bit 1: `enough` recorded, bit 2 its
/// value; records written before `enough` was kept have neither), the
/// acting count (u16) and the members (i32). Little-endian.
fn encode_history(h: &PgHistory) -> Vec<u8> {
    fn interval(b: &mut Vec<u8>, iv: &Interval) {
        b.extend_from_slice(&iv.start.to_le_bytes());
        b.extend_from_slice(&iv.end.to_le_bytes());
        b.extend_from_slice(&iv.primary.unwrap_or(-1).to_le_bytes());
        let enough = match iv.enough {
            None => 0,
            Some(false) => 2,
            Some(true) => 2 | 4,
        };
        b.push(iv.unknown as u8 | enough);
        b.extend_from_slice(&(iv.acting.len() as u16).to_le_bytes());
        for o in &iv.acting {
            b.extend_from_slice(&o.to_le_bytes());
        }
    }
    let mut b = vec![HISTORY_FORMAT];
    b.extend_from_slice(&h.epoch.to_le_bytes());
    match &h.current {
        Some(c) => {
            b.push(1);
            interval(&mut b, c);
        }
        None => b.push(0),
    }
    b.extend_from_slice(&(h.past.len() as u32).to_le_bytes());
    for iv in &h.past {
        interval(&mut b, iv);
    }
    b
}

/// Why an `intervals` record was not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryError {
    Format(u8),
    Truncated,
    TooMany(&'static str, usize),
    Trailing(usize),
}

/// The `intervals` record (see [`encode_history`]); `past_max` bounds the
/// past intervals before anything is reserved.
fn decode_history(b: &[u8], past_max: usize) -> Result<PgHistory, HistoryError> {
    struct R<'a>(&'a [u8]);
    impl R<'_> {
        fn take<const N: usize>(&mut self) -> Result<[u8; N], HistoryError> {
            let (h, t) = self.0.split_first_chunk::<N>().ok_or(HistoryError::Truncated)?;
            self.0 = t;
            Ok(*h)
        }
        fn interval(&mut self) -> Result<Interval, HistoryError> {
            let start = u32::from_le_bytes(self.take()?);
            let end = u32::from_le_bytes(self.take()?);
            let primary = i32::from_le_bytes(self.take()?);
            let [flags] = self.take()?;
            let n = u16::from_le_bytes(self.take()?) as usize;
            if n > sepia_proto::limits::pool_size_max {
                return Err(HistoryError::TooMany("acting members", n));
            }
            let mut acting = Vec::with_capacity(n);
            for _ in 0..n {
                acting.push(i32::from_le_bytes(self.take()?));
            }
            let enough = (flags & 2 != 0).then_some(flags & 4 != 0);
            Ok(Interval { start, end, acting, primary: (primary >= 0).then_some(primary), unknown: flags & 1 != 0, enough })
        }
    }
    let mut r = R(b);
    let [format] = r.take()?;
    if format != HISTORY_FORMAT {
        return Err(HistoryError::Format(format));
    }
    let epoch = u32::from_le_bytes(r.take()?);
    let [has] = r.take()?;
    let current = match has {
        0 => None,
        1 => Some(r.interval()?),
        other => return Err(HistoryError::Format(other)),
    };
    let n = u32::from_le_bytes(r.take()?) as usize;
    if n > past_max {
        return Err(HistoryError::TooMany("past intervals", n));
    }
    let mut past = Vec::with_capacity(n);
    for _ in 0..n {
        past.push(r.interval()?);
    }
    if !r.0.is_empty() {
        return Err(HistoryError::Trailing(r.0.len()));
    }
    Ok(PgHistory { epoch, current, past })
}

/// The shard's own record (object [`OSDMAP_META`] in the meta collection):
/// `epoch` (u32) and `map` (the archived map of that epoch).
pub const OSDMAP_META: &str = "\u{0}osdmap";

fn to_wire(e: &LogEntry) -> WireLogEntry {
    WireLogEntry { version: e.version, reqid: e.reqid, object: e.object.clone(), delete: e.op == LogOp::Delete, prior_version: e.prior_version }
}

fn from_wire(e: WireLogEntry) -> LogEntry {
    LogEntry { version: e.version, reqid: e.reqid, object: e.object, op: if e.delete { LogOp::Delete } else { LogOp::Modify }, prior_version: e.prior_version }
}

fn missing_to_wire(m: &[(ObjectId, Missing)]) -> Vec<WireMissing> {
    m.iter().map(|(o, x)| WireMissing { object: o.clone(), need: x.need, have: x.have, intact_at: x.intact_at }).collect()
}

fn missing_from_wire(m: Vec<WireMissing>) -> Vec<(ObjectId, Missing)> {
    m.into_iter().map(|w| (w.object, Missing { need: w.need, have: w.have, intact_at: w.intact_at })).collect()
}

/// The PG meta key of the missing set (with `intact_at`).
const MISSING_KEY: &str = "missing.2";
/// The key stores written before `intact_at`, read when the new one is absent.
const MISSING_KEY_V1: &str = "missing";

/// The missing set's layout under [`MISSING_KEY_V1`].
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct WireMissingV1 {
    object: ObjectId,
    need: EVersion,
    have: EVersion,
}

fn archive<T>(v: &T) -> Vec<u8>
where
    T: for<'a> rkyv::Serialize<rkyv::api::high::HighSerializer<rkyv::util::AlignedVec, rkyv::ser::allocator::ArenaHandle<'a>, rkyv::rancor::Error>>,
{
    // Serializing our own value fails only on allocation failure.
    rkyv::to_bytes::<rkyv::rancor::Error>(v).map(|b| b.to_vec()).unwrap_or_default()
}

fn unarchive<T>(b: &[u8]) -> Option<T>
where
    T: rkyv::Archive,
    T::Archived: for<'a> rkyv::bytecheck::CheckBytes<rkyv::api::high::HighValidator<'a, rkyv::rancor::Error>> + rkyv::Deserialize<T, rkyv::api::high::HighDeserializer<rkyv::rancor::Error>>,
{
    let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(b.len());
    aligned.extend_from_slice(b);
    rkyv::from_bytes::<T, rkyv::rancor::Error>(&aligned).ok()
}

/// The shard's recorded map (see [`OSDMAP_META`]), if any and readable.
pub fn recorded_map<D: crate::objstore::Device>(store: &crate::objstore::Store<D>) -> Option<OsdMap> {
    let key = "map".to_string();
    let m = store.omap_get_keys(&CollId::META, OSDMAP_META, std::slice::from_ref(&key)).ok()?;
    let wire = unarchive::<sepia_proto::osdmap::OsdMapWire>(m.get(&key)?)?;
    OsdMap::from_wire(&wire).ok()
}

/// A PG's durable state from its meta object's omap, and its dup records
/// (key, ids held) oldest first. Refuses records that do not decode in full
/// or a log out of order: the caller then loads the PG as incomplete.
type LoadedPg = (PgDurable, std::collections::VecDeque<(String, usize)>);

fn decode_pg(pg: PgId, omap: &BTreeMap<String, Vec<u8>>, past_max: usize, durable_epoch: Epoch) -> Result<LoadedPg, String> {
    let (mut info, les) = match omap.get("info") {
        None => Default::default(),
        Some(b) => decode_info(b).ok_or("info record malformed")?,
    };
    let mut log: Vec<LogEntry> = Vec::new();
    for (key, v) in omap.range("log.".to_string()..LOG_KEYS_END.to_string()) {
        let entry = decode_log_entry(v).ok_or_else(|| format!("log entry {key} malformed"))?;
        if log_key(entry.version) != *key || log.last().is_some_and(|l| l.version >= entry.version) {
            return Err(format!("log entry {key} holds version {:?}, out of order", entry.version));
        }
        log.push(entry);
    }
    let missing = match omap.get(MISSING_KEY) {
        Some(b) => unarchive::<Vec<WireMissing>>(b).map(missing_from_wire).ok_or("missing set malformed")?,
        // A store from before `intact_at`: the same list without it.
        None => match omap.get(MISSING_KEY_V1) {
            None => Vec::new(),
            Some(b) => unarchive::<Vec<WireMissingV1>>(b)
                .map(|v| v.into_iter().map(|w| (w.object, Missing { need: w.need, have: w.have, intact_at: EVersion::default() })).collect())
                .ok_or("missing set (first layout) malformed")?,
        },
    };
    let last_backfill = omap.get("backfill").map_or(BackfillPos::Max, |b| decode_pos(b));
    // No record: a new PG, or a store from before intervals were kept.
    let mut history = match omap.get("intervals").map(|b| decode_history(b, past_max)) {
        None => PgHistory::default(),
        Some(Ok(h)) => h,
        // The map walk makes up for it: maps the PG cannot account for
        // count as unknown intervals.
        Some(Err(e)) => {
            eprintln!("pg {pg}: intervals record unreadable ({e:?}); past intervals unknown");
            PgHistory::default()
        }
    };
    // Every map up to the shard's durable epoch reached this PG, and
    // an interval change it made was durable before that record (one
    // ordered apply queue), so nothing changed since its own record.
    if history.current.is_some() {
        history.epoch = history.epoch.max(durable_epoch);
    }
    let mut dups = Vec::new();
    let mut records = std::collections::VecDeque::new();
    for (key, b) in omap.range("dup.".to_string()..DUP_KEYS_END.to_string()) {
        // Lost ids would let a late resend apply twice.
        let d = decode_dups(b).ok_or_else(|| format!("dup record {key} malformed"))?;
        records.push_back((key.clone(), d.len()));
        dups.extend(d);
    }
    // The info written with the newest entry may name a later entry of
    // the same batch that a crash lost: the log is the truth.
    let head = log.last().map_or(info.log_tail, |e| e.version);
    info.last_update = head;
    info.last_complete = info.last_complete.min(head);
    Ok((PgDurable { info, les, log, missing, dups, last_backfill, history }, records))
}

/// Logs a PG that became down for a past interval nobody answers for.
fn log_blocked(osd: OsdId, pg: PgId, before: Option<&Interval>, now: Option<&Interval>) {
    if let Some(iv) = now.filter(|iv| Some(*iv) != before) {
        let why = if iv.unknown { "maps this OSD never saw; one of the acting set last known before them must answer" } else { "it may have accepted writes" };
        eprintln!(
            "osd.{osd} pg {pg}: down: waiting for one of osds {:?} (past interval {}..={}: {why}); bring one back, or if they are gone for good mark them lost (osd lost ID --yes-i-really-mean-it)",
            iv.acting, iv.start, iv.end
        );
    }
}

/// True when the op leaves the object removed (its log entry is a delete).
fn ends_removed(subops: &[SubOp]) -> bool {
    subops.iter().rev().find(|s| s.is_write()).is_some_and(|s| matches!(s, SubOp::Remove))
}

impl Shard {
    /// Loads the durable state of a PG from its collection (empty if new).
    /// Also returns the PG's dup records as stored (key, ids held), oldest
    /// first, for the trim bookkeeping.
    ///
    /// A PG whose records cannot be read in full (an I/O or checksum error,
    /// an entry that does not decode, a log out of order) loads as an
    /// incomplete member: no log and nothing backfilled. Its copy is then
    /// never authoritative, and peering refills it from a complete member,
    /// or waits for one. Guessing a log from the pieces that did read could
    /// hide an acknowledged write.
    fn load_pg(&self, pg: PgId, params: &PgParams) -> LoadedPg {
        match self.read_pg(pg, params) {
            Ok(loaded) => loaded,
            Err(why) => {
                eprintln!("osd.{} pg {pg}: PG records unreadable ({why}); this copy is incomplete and will be backfilled from a complete member", self.osd);
                (PgDurable { last_backfill: BackfillPos::Min, ..Default::default() }, Default::default())
            }
        }
    }

    fn read_pg(&self, pg: PgId, params: &PgParams) -> Result<LoadedPg, String> {
        let coll = coll_of(pg);
        let omap = match self.store.omap_get(&coll, PGMETA) {
            Ok((_, omap)) => omap,
            // A PG this OSD never held.
            Err(StoreError::NoCollection(_)) => return Ok(Default::default()),
            // A collection whose records were never written is new unless
            // it holds objects.
            Err(StoreError::NoObject(..)) => match self.store.list(&coll, "", 2) {
                Ok((objects, _)) if objects.iter().all(|o| o == PGMETA) => return Ok(Default::default()),
                Ok(_) => return Err("objects but no PG record".to_string()),
                Err(e) => return Err(e.to_string()),
            },
            Err(e) => return Err(e.to_string()),
        };
        decode_pg(pg, &omap, params.past_intervals_max, self.durable_epoch.get())
    }

    /// Feeds every epoch up to `map`, in order, to every PG this shard
    /// holds or should hold (each PG must see each interval), then records
    /// the epoch and map (after the PG records it caused, in the same
    /// queue) so a restart resumes after it.
    pub(crate) fn advance_pgs(self: &Rc<Self>, map: &Arc<OsdMap>) {
        let from = self.pgs_epoch.get();
        if from >= map.epoch {
            return;
        }
        if from != 0 {
            let between: Vec<Arc<OsdMap>> = self.history.borrow().after(from).take_while(|m| m.epoch < map.epoch).cloned().collect();
            for m in between {
                self.note_gap(m.epoch);
                self.advance_one(&m);
            }
            self.note_gap(map.epoch);
        }
        self.advance_one(map);
        self.queue_apply(ApplyItem::ShardEpoch { map: map.clone() });
    }

    /// Says so when the epochs before `next` were not all fed (the PGs
    /// see a gap: see `crate::pg::machine`).
    fn note_gap(&self, next: Epoch) {
        let have = self.pgs_epoch.get();
        if have != 0 && next > have + 1 {
            eprintln!(
                "osd.{} shard {}: maps {}..={} are unavailable (older than the monitor's history); their PGs treat them as a gap",
                self.osd,
                self.shard,
                have + 1,
                next - 1
            );
        }
    }

    /// Feeds one map to every PG this shard holds or should hold.
    fn advance_one(self: &Rc<Self>, map: &Arc<OsdMap>) {
        if self.pgs_epoch.get() >= map.epoch {
            return;
        }
        self.pgs_epoch.set(map.epoch);
        let weights = map.crush_weights();
        // OSDs marked lost (`osd lost`), with the epoch that did it, and
        // OSDs removed (`osd rm`): neither holds a PG down.
        let lost: BTreeMap<OsdId, Epoch> = map
            .osds
            .iter()
            .filter_map(|o| match (o.exists, o.lost_at) {
                (false, _) => Some((o.id, crate::pg::machine::REMOVED)),
                (true, 0) => None,
                (true, at) => Some((o.id, at)),
            })
            .collect();
        let mut ws = crush_simd::Workspace::new();
        let mut batches = Vec::new();
        for pool in map.pools.values() {
            let (log_entries_min, log_entries_max) = log_limits();
            let params = PgParams {
                size: pool.size as usize,
                min_size: pool.min_size as usize,
                log_entries_min,
                log_entries_max,
                dups_tracked_max: limits::dups_tracked_max,
                backfill_scan_max: limits::backfill_scan_objects_max,
                backfill_pushes_max: limits::backfill_pushes_max,
                backfill_bytes_max: limits::backfill_push_bytes_max,
                ..PgParams::default()
            };
            for seed in 0..pool.pg_num {
                let pg = PgId { pool: pool.id, seed };
                if map.pg_shard(pg, self.osd) != Some(self.shard) {
                    continue;
                }
                let placed = map.pg_placement_with(pool, pg, &weights, &mut ws);
                let member = placed.acting.contains(&self.osd);
                let mut pgs = self.pgs.borrow_mut();
                if !pgs.contains_key(&pg) {
                    if !member && !self.store.collection_exists(&coll_of(pg)) {
                        continue;
                    }
                    let (durable, dup_records) = self.load_pg(pg, &params);
                    pgs.insert(pg, PgSlot { pg: Pg::new(pg, self.osd, params.clone(), durable), dup_records });
                }
                let slot = pgs.get_mut(&pg).expect("inserted");
                let acting: Vec<OsdId> = placed.acting.iter().copied().filter(|&o| o != crush_simd::ITEM_NONE).collect();
                let incarnation = acting.iter().map(|&o| map.osd(o).map_or(0, |i| i.up_from)).collect();
                let mut out = Vec::new();
                let was_blocked = slot.pg.blocked_by().cloned();
                slot.pg.set_shape(params.size, params.min_size);
                slot.pg.map_change_with(map.epoch, acting, placed.acting_primary, incarnation, &lost, &mut out);
                log_blocked(self.osd, pg, was_blocked.as_ref(), slot.pg.blocked_by());
                if !out.is_empty() {
                    batches.push((pg, out));
                }
            }
        }
        // PGs of removed pools: forget them (their data stays on disk).
        self.pgs.borrow_mut().retain(|pg, _| map.pools.contains_key(&pg.pool));
        for (pg, out) in batches {
            self.run_effects(pg, out);
        }
    }

    /// Runs `f` on a PG and carries out what it asks for.
    ///
    /// A PG that becomes down because a past interval has no member
    /// answering says which one (the operator must bring one back, or
    /// mark them lost).
    pub(crate) fn with_pg(self: &Rc<Self>, pg: PgId, f: impl FnOnce(&mut Pg<WriteRef>, &mut Vec<Effect<WriteRef>>)) {
        let mut out = Vec::new();
        {
            let mut pgs = self.pgs.borrow_mut();
            let Some(slot) = pgs.get_mut(&pg) else { return };
            let was_complete = *slot.pg.last_backfill() == BackfillPos::Max;
            let was_blocked = slot.pg.blocked_by().cloned();
            f(&mut slot.pg, &mut out);
            log_blocked(self.osd, pg, was_blocked.as_ref(), slot.pg.blocked_by());
            // The operator (and the tests) see a backfill of this copy
            // begin and end in the log.
            let complete = *slot.pg.last_backfill() == BackfillPos::Max;
            if was_complete != complete {
                let what = if complete { "backfilled: this copy is complete" } else { "backfill started: this copy is behind the log" };
                eprintln!("osd.{} pg {pg}: {what}", self.osd);
            }
            if cfg!(debug_assertions) {
                slot.pg.invariants();
            }
        }
        self.run_effects(pg, out);
    }

    /// Whether the PG's log (or its memory of trimmed entries) holds the
    /// write `reqid`: a resend of a write already ordered, which the PG
    /// answers with the first outcome.
    pub(crate) fn pg_knows_request(&self, pg: PgId, reqid: &sepia_proto::msg::ReqId) -> bool {
        self.pgs.borrow().get(&pg).is_some_and(|s| s.pg.log().dup(reqid).is_some())
    }

    /// The state of a PG we hold, and whether `object` may be read here.
    pub(crate) fn pg_readable(&self, pg: PgId, object: &ObjectId) -> bool {
        self.pgs.borrow().get(&pg).is_some_and(|s| s.pg.can_read(object))
    }

    fn run_effects(self: &Rc<Self>, pg: PgId, effects: Vec<Effect<WriteRef>>) {
        let mut effects = effects.into_iter();
        while let Some(e) = effects.next() {
            match e {
                Effect::Apply { entry, txn, trim } => {
                    // The info as of this entry (a later entry of the same
                    // batch is not durable yet).
                    let (mut info, les) = self.pgs.borrow().get(&pg).map(|s| (s.pg.info(), s.pg.les())).unwrap_or_default();
                    if matches!(txn, Txn::Write(_) | Txn::LogOnly) {
                        info.last_update = entry.version;
                        info.last_complete = info.last_complete.min(entry.version);
                    }
                    if matches!(txn, Txn::Replace(_)) {
                        self.queued_versions.borrow_mut().insert((pg, entry.object.clone()), entry.version);
                    }
                    self.queue_apply(ApplyItem::Apply { pg, entry, txn, info, les, trim });
                }
                Effect::Persist { info, les, missing, rewound_to, appended, trim, last_backfill, history } => {
                    let (done, durable) = oneshot::channel();
                    self.queue_apply(ApplyItem::Persist { pg, info, les, missing, rewound_to, appended, trim, last_backfill, history, done });
                    let rest: Vec<_> = effects.collect();
                    if !rest.is_empty() {
                        let me = self.clone();
                        glommio::spawn_local(async move {
                            if durable.await == Ok(true) {
                                me.run_effects(pg, rest);
                            }
                        })
                        .detach();
                    }
                    return;
                }
                Effect::Send { to, msg } => self.send_pg_msg(pg, to, msg),
                Effect::Reply { reqid, result, version, .. } => {
                    if let Some(waiters) = self.replies.borrow_mut().remove(&reqid) {
                        for w in waiters {
                            let _ = w.send((result, version));
                        }
                    }
                }
                Effect::Read { object } => self.queue_apply(ApplyItem::Read { pg, object }),
                Effect::List { tag, after, until, max } => self.queue_apply(ApplyItem::List { pg, tag, after, until, max }),
                Effect::Log { message } => eprintln!("osd.{} pg {pg}: {message}", self.osd),
            }
        }
    }

    fn queue_apply(&self, item: ApplyItem) {
        if let Err(e) = self.applies.try_send(item) {
            // Admission keeps room for this; if it is gone anyway the PG
            // stalls (the client times out and resends) rather than lose
            // the order of what is queued.
            let item = match e {
                tokio::sync::mpsc::error::TrySendError::Full(i) | tokio::sync::mpsc::error::TrySendError::Closed(i) => i,
            };
            if let ApplyItem::Apply { pg, entry, txn: Txn::Replace(_), .. } = &item {
                let key = (*pg, entry.object.clone());
                let mut queued = self.queued_versions.borrow_mut();
                if queued.get(&key) == Some(&entry.version) {
                    queued.remove(&key);
                }
            }
            eprintln!("osd.{} shard {}: store queue full, a PG transaction was dropped", self.osd, self.shard);
        }
    }

    /// True when the store queue can take a client write.
    pub(crate) fn can_admit_write(&self) -> bool {
        self.applies.capacity() >= limits::apply_admit_free_min
    }

    /// Plans every PG transaction, in order; waits for durability elsewhere.
    pub(crate) async fn apply_loop(self: Rc<Self>, mut rx: tokio::sync::mpsc::Receiver<ApplyItem>) {
        while let Some(item) = rx.recv().await {
            match item {
                ApplyItem::Apply { pg, entry, txn, info, les, trim } => {
                    let version = entry.version;
                    let write = matches!(txn, Txn::Write(_) | Txn::LogOnly);
                    let planned = self.store.enqueue(self.apply_txn(pg, &entry, &txn, &info, les, trim.as_ref())).await;
                    if matches!(txn, Txn::Replace(_)) {
                        // Planned: the store's version record answers now.
                        let mut queued = self.queued_versions.borrow_mut();
                        let key = (pg, entry.object.clone());
                        if queued.get(&key) == Some(&version) {
                            queued.remove(&key);
                        }
                    }
                    match planned {
                        Ok(queued) => {
                            let me = self.clone();
                            glommio::spawn_local(async move {
                                match me.store.durable(queued).await {
                                    Ok(()) => me.with_pg(pg, |p, out| p.committed(version, write, out)),
                                    Err(e) => me.apply_failed(pg, &entry, e),
                                }
                            })
                            .detach();
                        }
                        Err(e) => self.apply_failed(pg, &entry, e),
                    }
                }
                ApplyItem::Read { pg, object } => {
                    // Everything asked before is planned: the read sees it.
                    let me = self.clone();
                    glommio::spawn_local(async move {
                        match me.read_content(pg, &object).await {
                            Ok((content, version)) => me.with_pg(pg, |p, out| p.content(object, content, version, out)),
                            Err(e) => eprintln!("osd.{} pg {pg}: recovery read of {}: {e}", me.osd, object.name),
                        }
                    })
                    .detach();
                }
                ApplyItem::List { pg, tag, after, until, max } => {
                    let (objects, end) = self.list_objects(pg, &after, &until, max);
                    self.with_pg(pg, |p, out| p.listed(tag, after, until, objects, end, out));
                }
                ApplyItem::ShardEpoch { map } => {
                    let coll = CollId::META;
                    let mut ops = Vec::new();
                    if !self.store.collection_exists(&coll) {
                        ops.push(Op::CreateCollection(coll));
                    }
                    ops.push(Op::Touch { coll, obj: OSDMAP_META.into() });
                    let entries = BTreeMap::from([("epoch".to_string(), map.epoch.to_le_bytes().to_vec()), ("map".to_string(), archive(&map.to_wire()))]);
                    ops.push(Op::OmapSetKeys { coll, obj: OSDMAP_META.into(), entries });
                    // Durable in order after the PG records queued before
                    // it; nobody waits for it.
                    if let Err(e) = self.store.enqueue(Transaction { ops }).await {
                        eprintln!("osd.{} shard {}: recording map epoch {}: {e}", self.osd, self.shard, map.epoch);
                    }
                }
                ApplyItem::Persist { pg, info, les, missing, rewound_to, appended, trim, last_backfill, history, done } => {
                    let t = self.persist_txn(pg, &info, les, &missing, rewound_to, &appended, trim.as_ref(), &last_backfill, &history);
                    match self.store.enqueue(t).await {
                        Ok(queued) => {
                            let me = self.clone();
                            glommio::spawn_local(async move {
                                let ok = me.store.durable(queued).await;
                                if let Err(e) = &ok {
                                    eprintln!("osd.{} pg {pg}: persisting PG state: {e}", me.osd);
                                    me.stop_if_store_failed();
                                }
                                let _ = done.send(ok.is_ok());
                            })
                            .detach();
                        }
                        Err(e) => {
                            eprintln!("osd.{} pg {pg}: persisting PG state: {e}", self.osd);
                            self.stop_if_store_failed();
                            let _ = done.send(false);
                        }
                    }
                }
            }
        }
    }

    /// A write the PG ordered could not be stored here: its client hears
    /// the error (the primary screens for space before ordering, so this
    /// is an I/O failure).
    fn apply_failed(&self, pg: PgId, entry: &LogEntry, e: StoreError) {
        eprintln!("osd.{} pg {pg}: applying {}: {e}", self.osd, entry.object.name);
        self.stop_if_store_failed();
        if let Some(waiters) = self.replies.borrow_mut().remove(&entry.reqid) {
            for w in waiters {
                let _ = w.send((e.errno().result(), entry.version));
            }
        }
    }

    /// Fail-stop, as Ceph's OSD aborts on an I/O error of its store: the
    /// PGs' logs in memory are now ahead of the disk, so this OSD must not
    /// go on serving. Its peers mark it down and serve from their copies;
    /// a restart replays what is durable (like after `kill -9`).
    fn stop_if_store_failed(&self) {
        if let Some(why) = self.store.failure() {
            eprintln!("osd.{} shard {}: the store failed ({why}); stopping the OSD", self.osd, self.shard);
            std::process::exit(1);
        }
    }

    /// The PG's info, and a trim: its log keys go, and the request ids it
    /// trimmed become a dup record; the oldest records go once the newer
    /// ones hold `dups_tracked_max` ids. Runs in the apply loop, in order,
    /// so the record list matches what the store will hold.
    fn meta_ops(&self, pg: PgId, ops: &mut Vec<Op>, info: &PgInfo, les: Epoch, trim: Option<&Trim>) {
        let coll = coll_of(pg);
        let mut entries = BTreeMap::from([("info".to_string(), encode_info(info, les))]);
        if let Some(t) = trim.filter(|t| t.clean) {
            self.forget_tombstones(coll, t.to, ops);
        }
        if let Some(t) = trim {
            ops.push(Op::OmapRmRange { coll, obj: PGMETA.into(), start: "log.".into(), end: format!("{}\u{0}", log_key(t.to)) });
            if !t.dups.is_empty() {
                let key = dup_key(t.to);
                entries.insert(key.clone(), encode_dups(&t.dups));
                let mut pgs = self.pgs.borrow_mut();
                if let Some(slot) = pgs.get_mut(&pg) {
                    let max = slot.pg.params().dups_tracked_max;
                    slot.dup_records.retain(|(k, _)| *k != key);
                    slot.dup_records.push_back((key, t.dups.len()));
                    let mut held: usize = slot.dup_records.iter().map(|(_, n)| n).sum();
                    let mut gone = Vec::new();
                    while slot.dup_records.len() > 1 && held - slot.dup_records[0].1 >= max {
                        let (k, n) = slot.dup_records.pop_front().expect("len > 1");
                        held -= n;
                        gone.push(k);
                    }
                    if !gone.is_empty() {
                        ops.push(Op::OmapRmKeys { coll, obj: PGMETA.into(), keys: gone });
                    }
                }
            }
        }
        // Right after the txn's own pgmeta keys (its log entry), one op
        // sets both: every op names its object in the store's record and
        // delta, and is planned and applied on its own.
        match ops.last_mut() {
            Some(Op::OmapSetKeys { coll: c, obj, entries: earlier }) if *c == coll && obj == PGMETA => earlier.extend(entries),
            _ => ops.push(Op::OmapSetKeys { coll, obj: PGMETA.into(), entries }),
        }
    }

    /// A clean PG trimmed its log to `to`: no member lacks anything, so the
    /// tombstones of removals up to there go (a bounded number per trim;
    /// the rest with the next).
    fn forget_tombstones(&self, coll: CollId, to: EVersion, ops: &mut Vec<Op>) {
        let end = format!("tomb.{:010}.{:020}/", to.epoch, to.version);
        let Ok((page, _)) = self.store.omap_range(&coll, PGMETA, "tomb.", limits::tombstones_per_trim_max) else { return };
        let mut keys = Vec::new();
        for (k, _) in page.into_iter().take_while(|(k, _)| *k < end) {
            let Some(key) = k.get(TOMB_PREFIX_LEN..) else { continue };
            let vkey = version_key(key);
            let version = k.get(5..TOMB_PREFIX_LEN - 1).and_then(|d| {
                let (e, v) = d.split_once('.')?;
                Some(EVersion { epoch: e.parse().ok()?, version: v.parse().ok()? })
            });
            let record = self.store.omap_get_keys(&coll, PGMETA, std::slice::from_ref(&vkey)).ok().and_then(|m| m.get(&vkey).map(|b| decode_version(b)));
            // Only a record still naming that removal, of an object still
            // absent (a later write replaced it otherwise).
            if version.is_some() && record == version && self.store.stat(&coll, key).is_err() {
                keys.push(vkey);
            }
            keys.push(k);
        }
        if !keys.is_empty() {
            ops.push(Op::OmapRmKeys { coll, obj: PGMETA.into(), keys });
        }
    }

    fn ensure_coll(&self, coll: CollId, ops: &mut Vec<Op>) {
        if !self.store.collection_exists(&coll) {
            ops.push(Op::CreateCollection(coll));
        }
        if self.store.stat(&coll, PGMETA).is_err() {
            ops.push(Op::Touch { coll, obj: PGMETA.into() });
        }
    }

    fn apply_txn(&self, pg: PgId, entry: &LogEntry, txn: &Txn<WriteRef>, info: &PgInfo, les: Epoch, trim: Option<&Trim>) -> Transaction {
        let coll = coll_of(pg);
        let key = object_key(&entry.object);
        let mut ops = Vec::new();
        self.ensure_coll(coll, &mut ops);
        match txn {
            Txn::Write(w) => {
                let size_before = self.store.stat(&coll, &key).ok().map(|(size, _)| size);
                let existed = size_before.is_some();
                self.write_ops(&coll, &key, size_before.unwrap_or(0), &w.subops, &w.data, &mut ops);
                let mut entries = BTreeMap::from([(log_key(entry.version), encode_log_entry(entry))]);
                if entry.op == LogOp::Delete {
                    // A removal leaves its version as a tombstone record.
                    entries.insert(version_key(&key), encode_version(entry.version));
                    entries.insert(tomb_key(entry.version, &key), Vec::new());
                } else {
                    // A write that does not remove leaves the object in place.
                    ops.push(Op::SetAttr { coll, obj: key.clone(), name: VERSION_ATTR.into(), value: encode_version(entry.version) });
                    if !existed {
                        ops.push(Op::OmapRmKeys { coll, obj: PGMETA.into(), keys: vec![version_key(&key)] });
                    }
                }
                ops.push(Op::OmapSetKeys { coll, obj: PGMETA.into(), entries });
                self.meta_ops(pg, &mut ops, info, les, trim);
            }
            Txn::LogOnly => {
                ops.push(Op::OmapSetKeys { coll, obj: PGMETA.into(), entries: BTreeMap::from([(log_key(entry.version), encode_log_entry(entry))]) });
                self.meta_ops(pg, &mut ops, info, les, trim);
            }
            Txn::Replace(content) => {
                // The copy's version record: the pushed version (zero:
                // unknown, so a later backfill compares it unequal). A
                // present copy's goes into its attr below.
                match content {
                    None if entry.version != EVersion::default() => ops.push(Op::OmapSetKeys {
                        coll,
                        obj: PGMETA.into(),
                        entries: BTreeMap::from([(version_key(&key), encode_version(entry.version)), (tomb_key(entry.version, &key), Vec::new())]),
                    }),
                    _ => ops.push(Op::OmapRmKeys { coll, obj: PGMETA.into(), keys: vec![version_key(&key)] }),
                }
                if self.store.stat(&coll, &key).is_ok() {
                    ops.push(Op::Remove { coll, obj: key.clone() });
                }
                if let Some(c) = content {
                    ops.push(Op::Touch { coll, obj: key.clone() });
                    for (i, chunk) in c.data.chunks(crate::objstore::limits::write_bytes_max).enumerate() {
                        let offset = (i * crate::objstore::limits::write_bytes_max) as u64;
                        ops.push(Op::Write { coll, obj: key.clone(), offset, data: chunk.to_vec() });
                    }
                    for (name, value) in c.xattrs.iter().filter(|(name, _)| !is_internal_attr(name)) {
                        ops.push(Op::SetAttr { coll, obj: key.clone(), name: name.clone(), value: value.clone() });
                    }
                    if entry.version != EVersion::default() {
                        ops.push(Op::SetAttr { coll, obj: key.clone(), name: VERSION_ATTR.into(), value: encode_version(entry.version) });
                    }
                    if !c.omap.is_empty() {
                        ops.push(Op::OmapSetKeys { coll, obj: key.clone(), entries: c.omap.clone() });
                    }
                    if !c.omap_header.is_empty() {
                        ops.push(Op::OmapSetHeader { coll, obj: key.clone(), value: c.omap_header.clone() });
                    }
                }
                if trim.is_some() {
                    self.meta_ops(pg, &mut ops, info, les, trim);
                }
            }
        }
        Transaction { ops }
    }

    #[allow(clippy::too_many_arguments)]
    fn persist_txn(
        &self,
        pg: PgId,
        info: &PgInfo,
        les: Epoch,
        missing: &[(ObjectId, Missing)],
        rewound_to: Option<EVersion>,
        appended: &[LogEntry],
        trim: Option<&Trim>,
        last_backfill: &BackfillPos,
        history: &PgHistory,
    ) -> Transaction {
        let coll = coll_of(pg);
        let mut ops = Vec::new();
        self.ensure_coll(coll, &mut ops);
        if let Some(v) = rewound_to {
            ops.push(Op::OmapRmRange { coll, obj: PGMETA.into(), start: format!("{}\u{0}", log_key(v)), end: LOG_KEYS_END.into() });
        }
        let mut entries: BTreeMap<String, Vec<u8>> = appended.iter().map(|e| (log_key(e.version), encode_log_entry(e))).collect();
        entries.insert(MISSING_KEY.into(), archive(&missing_to_wire(missing)));
        entries.insert("intervals".into(), encode_history(history));
        match encode_pos(last_backfill) {
            Some(b) => {
                entries.insert("backfill".into(), b);
            }
            None => ops.push(Op::OmapRmKeys { coll, obj: PGMETA.into(), keys: vec!["backfill".into()] }),
        }
        ops.push(Op::OmapSetKeys { coll, obj: PGMETA.into(), entries });
        self.meta_ops(pg, &mut ops, info, les, trim);
        Transaction { ops }
    }

    /// The whole object, for a recovery push (`None`: it does not exist),
    /// and the version of its last write, a removal's too (zero: unknown).
    async fn read_content(&self, pg: PgId, object: &ObjectId) -> Result<(Option<ObjectContent>, EVersion), StoreError> {
        let coll = coll_of(pg);
        let key = object_key(object);
        let version = self.recorded_version(&coll, &key);
        if self.store.stat(&coll, &key).is_err() {
            // A removal's tombstone names the version it is absent at (as
            // the PG simulation's store does): recovery can then take an
            // absent copy as the needed removal.
            return Ok((None, version));
        }
        let data = self.store.read(&coll, &key, 0, 0).await?;
        let mut xattrs = self.store.getattrs(&coll, &key)?;
        xattrs.retain(|name, _| !is_internal_attr(name));
        let (omap_header, omap) = self.store.omap_get(&coll, &key)?;
        Ok((Some(ObjectContent { data, xattrs, omap, omap_header }), version))
    }

    /// The PG's objects in `(after, until]` in store order, at most `max`,
    /// with their version records, and the end of what was covered
    /// (`until`, or the last key listed when more follow).
    fn list_objects(&self, pg: PgId, after: &BackfillPos, until: &BackfillPos, max: usize) -> (Vec<Listed>, BackfillPos) {
        let coll = coll_of(pg);
        let start = match after {
            BackfillPos::Min => String::new(),
            BackfillPos::Key(k) => k.clone(),
            BackfillPos::Max => return (Vec::new(), until.clone()),
        };
        let Ok((keys, more)) = self.store.list(&coll, &start, max.max(1)) else { return (Vec::new(), until.clone()) };
        let last = keys.last().cloned();
        let mut end = until.clone();
        let mut names = Vec::new();
        for k in keys {
            if BackfillPos::Key(k.clone()) > *until {
                break;
            }
            names.push(k);
        }
        if more && names.len() == max.max(1) {
            if let Some(l) = last {
                end = BackfillPos::Key(l).min(until.clone());
            }
        }
        // Our own meta objects (names starting with NUL) are not the PG's.
        names.retain(|k| !k.starts_with('\u{0}'));
        let objects = names.iter().map(|k| (object_of_key(k), self.recorded_version(&coll, k))).collect();
        (objects, end)
    }

    /// The version record of the object stored under `key` (zero: none):
    /// its attr if it exists and has one, else the meta object's `ver.KEY`
    /// (a removal's tombstone, or a record of a store written before the
    /// attr existed).
    fn recorded_version(&self, coll: &CollId, key: &str) -> EVersion {
        match self.store.with_attr(coll, key, VERSION_ATTR, decode_version) {
            Ok(v) => v,
            Err(_) => {
                let vkey = version_key(key);
                let found = self.store.omap_get_keys(coll, PGMETA, std::slice::from_ref(&vkey));
                found.ok().and_then(|m| m.get(&vkey).map(|b| decode_version(b))).unwrap_or_default()
            }
        }
    }

    /// The version of `object` in this PG as the store will have it once
    /// every apply handed to it so far is planned (zero: none recorded).
    fn stored_version(&self, pg: PgId, object: &ObjectId) -> EVersion {
        // Empty but for recovery's replaces: no key built per client write.
        let queued = self.queued_versions.borrow();
        if let Some(v) = (!queued.is_empty()).then(|| queued.get(&(pg, object.clone()))).flatten() {
            return *v;
        }
        drop(queued);
        self.recorded_version(&coll_of(pg), &object_key(object))
    }

    /// A client write on the primary: ordered by the PG, answered once
    /// every acting member has it durable (or a resend of a write the PG
    /// log already holds: answered with its first outcome).
    pub(crate) async fn pg_write(self: &Rc<Self>, pg: PgId, reqid: sepia_proto::msg::ReqId, object: ObjectId, subops: Vec<SubOp>, data: Vec<u8>) -> (i32, EVersion) {
        let (tx, rx) = oneshot::channel();
        self.replies.borrow_mut().entry(reqid).or_default().push(tx);
        let delete = ends_removed(&subops);
        let write = Rc::new(WritePayload { subops, data });
        let stored_version = self.stored_version(pg, &object);
        self.with_pg(pg, |p, out| p.client_write(ClientWrite { client: reqid.client, reqid, object, delete, write, stored_version }, out));
        let answer = futures_lite::future::or(async { rx.await.ok() }, async {
            glommio::timer::sleep(Duration::from_millis(limits::write_wait_ms)).await;
            None
        })
        .await;
        match answer {
            Some(a) => a,
            None => {
                // Forget our waiter; a resend finds the write in the log.
                let mut replies = self.replies.borrow_mut();
                if let Some(ws) = replies.get_mut(&reqid) {
                    ws.retain(|w| !w.is_closed());
                    if ws.is_empty() {
                        replies.remove(&reqid);
                    }
                }
                (sepia_proto::errno::Errno::Again.result(), EVersion::default())
            }
        }
    }

    /// Sends a PG message to the member's owning shard.
    fn send_pg_msg(self: &Rc<Self>, pg: PgId, to: OsdId, msg: PeerMsg<WriteRef>) {
        let map = self.map();
        let Some(addr) = map.pg_shard(pg, to).and_then(|s| map.osd(to).and_then(|o| o.addrs.get(s as usize))) else { return };
        let epoch = msg.epoch();
        let peer = |op| Body::PgPeer(PgPeer { pg, epoch, from: self.osd, op });
        let (body, data) = match msg {
            PeerMsg::RepOp { entry, txn: Txn::Write(w), trim_to, .. } => {
                let rep = RepOp { reqid: entry.reqid, pg, epoch, version: entry.version, object: entry.object, subops: w.subops.clone(), trim_to, prior_version: entry.prior_version };
                // The payload is shared with the PG's own apply, not copied.
                self.post(addr, Body::RepOp(rep), Payload::Write(w));
                return;
            }
            // Replacements travel as pushes, entries alone as `RepLog`,
            // never as replica writes.
            PeerMsg::RepOp { txn: Txn::Replace(_) | Txn::LogOnly, .. } => return,
            PeerMsg::Query { .. } => (peer(PeerOp::Query), Vec::new()),
            PeerMsg::Notify { info, les, log, missing, last_backfill, .. } => (
                peer(PeerOp::NotifyBackfill {
                    last_update: info.last_update,
                    last_complete: info.last_complete,
                    log_tail: info.log_tail,
                    les,
                    log: log.iter().map(to_wire).collect(),
                    missing: missing_to_wire(&missing),
                    last_backfill: pos_to_wire(&last_backfill),
                }),
                Vec::new(),
            ),
            PeerMsg::Activate { rewind_to, append, missing, backfill: None, .. } => {
                (peer(PeerOp::Activate { rewind_to, append: append.iter().map(to_wire).collect(), missing: missing_to_wire(&missing) }), Vec::new())
            }
            PeerMsg::Activate { rewind_to, append, missing, backfill: Some(b), .. } => (
                peer(PeerOp::ActivateBackfill {
                    rewind_to,
                    append: append.iter().map(to_wire).collect(),
                    missing: missing_to_wire(&missing),
                    reset_log: b.reset_log,
                    tail: b.tail,
                    last_backfill: pos_to_wire(&b.last_backfill),
                    dups: b.dups,
                }),
                Vec::new(),
            ),
            PeerMsg::RepLog { entry, trim_to, .. } => (peer(PeerOp::RepLog { entry: to_wire(&entry), trim_to }), Vec::new()),
            PeerMsg::Scan { after, until, max, .. } => {
                (peer(PeerOp::Scan { after: pos_to_wire(&after), until: pos_to_wire(&until), max: max.min(u32::MAX as usize) as u32 }), Vec::new())
            }
            PeerMsg::ScanReply { after, until, end, objects, dups, .. } => (
                peer(PeerOp::ScanReply {
                    after: pos_to_wire(&after),
                    until: pos_to_wire(&until),
                    end: pos_to_wire(&end),
                    objects: objects.into_iter().map(|(object, version)| WireListed { object, version }).collect(),
                    dups,
                }),
                Vec::new(),
            ),
            PeerMsg::BackfillProgress { pos, .. } => (peer(PeerOp::BackfillProgress { pos: pos_to_wire(&pos) }), Vec::new()),
            PeerMsg::BackfillDone { tail, log, dups, .. } => (peer(PeerOp::BackfillDone { tail, log: log.iter().map(to_wire).collect(), dups }), Vec::new()),
            PeerMsg::BackfillDoneAck { .. } => (peer(PeerOp::BackfillDoneAck), Vec::new()),
            PeerMsg::ActivateAck { .. } => (peer(PeerOp::ActivateAck), Vec::new()),
            PeerMsg::Activated { .. } => (peer(PeerOp::Activated), Vec::new()),
            PeerMsg::RepOpAck { version, .. } => (peer(PeerOp::RepOpAck { version }), Vec::new()),
            PeerMsg::Pull { object, .. } => (peer(PeerOp::Pull { object }), Vec::new()),
            PeerMsg::PushAck { object, .. } => (peer(PeerOp::PushAck { object }), Vec::new()),
            PeerMsg::Push { object, version, content, .. } => match content {
                None => (peer(PeerOp::Push { object, version, content: None }), Vec::new()),
                Some(c) => {
                    if c.data.len() > sepia_proto::limits::frame_data_bytes_max {
                        eprintln!("osd.{} pg {pg}: {} is too big to push in one message", self.osd, object.name);
                        return;
                    }
                    let wire = WireObject { data_len: c.data.len() as u64, xattrs: c.xattrs.into_iter().collect(), omap: c.omap.into_iter().collect(), omap_header: c.omap_header };
                    (peer(PeerOp::Push { object, version, content: Some(wire) }), c.data)
                }
            },
        };
        self.post(addr, body, data.into());
    }

    /// Queues a one-way message to a peer shard (in order per address).
    fn post(self: &Rc<Self>, addr: &str, body: Body, data: Payload) {
        let existing = self.outboxes.borrow().get(addr).filter(|tx| !tx.is_closed()).cloned();
        let tx = match existing {
            Some(tx) => tx,
            None => {
                let (tx, rx) = tokio::sync::mpsc::channel(limits::outbox_messages_max);
                self.outboxes.borrow_mut().insert(addr.to_string(), tx.clone());
                glommio::spawn_local(self.clone().outbox(addr.to_string(), rx)).detach();
                tx
            }
        };
        if tx.try_send((body, data)).is_err() {
            eprintln!("osd.{}: outbox to {addr} is full, a PG message was dropped", self.osd);
        }
    }

    async fn outbox(self: Rc<Self>, addr: String, mut rx: tokio::sync::mpsc::Receiver<(Body, Payload)>) {
        // One connection for the whole queue, so messages keep their order.
        let mut conn = None;
        while let Some(first) = rx.recv().await {
            // Whatever else is queued leaves in the same write.
            let mut batch = vec![first];
            while batch.len() < limits::outbox_batch_max {
                match rx.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            if conn.as_ref().is_none_or(|c: &Rc<crate::server::PeerConn>| !c.alive.get()) {
                conn = self.peer(&addr).await.ok();
            }
            if let Some(c) = &conn {
                // A lost message is resent by peering, or times the op out.
                let _ = self.send_many_on(c, batch).await;
            }
        }
    }

    /// A PG message from a peer shard (fed in arrival order).
    pub(crate) async fn pg_input(self: &Rc<Self>, body: Body, data: Vec<u8>) {
        let (pg, epoch, from) = match &body {
            Body::PgPeer(p) => (p.pg, p.epoch, p.from),
            Body::RepOp(r) => (r.pg, r.epoch, -1),
            _ => return,
        };
        // Maps first: a message from a newer interval needs that interval
        // (waiting only then: replica writes take the fast path).
        let mut map = self.map();
        if epoch > map.epoch {
            map = self.map_at_least(epoch).await;
        }
        self.advance_pgs(&map);
        let msg: PeerMsg<WriteRef> = match body {
            Body::RepOp(r) => {
                if r.check(data.len()).is_err() {
                    return;
                }
                // The sender is the PG's primary (the machine checks it).
                let Some(primary) = self.pgs.borrow().get(&pg).and_then(|s| s.pg.primary()) else { return };
                let op = if ends_removed(&r.subops) { LogOp::Delete } else { LogOp::Modify };
                let entry = LogEntry { version: r.version, reqid: r.reqid, object: r.object, op, prior_version: r.prior_version };
                let msg = PeerMsg::RepOp { epoch, entry, txn: Txn::Write(Rc::new(WritePayload { subops: r.subops, data })), trim_to: r.trim_to };
                self.with_pg(pg, |p, out| p.peer(primary, msg, out));
                return;
            }
            Body::PgPeer(p) => match p.op {
                PeerOp::Query => PeerMsg::Query { epoch },
                PeerOp::Notify { last_update, last_complete, log_tail, les, log, missing } => PeerMsg::Notify {
                    epoch,
                    info: PgInfo { last_update, last_complete, log_tail },
                    les,
                    log: log.into_iter().map(from_wire).collect(),
                    missing: missing_from_wire(missing),
                    last_backfill: BackfillPos::Max,
                },
                PeerOp::NotifyBackfill { last_update, last_complete, log_tail, les, log, missing, last_backfill } => PeerMsg::Notify {
                    epoch,
                    info: PgInfo { last_update, last_complete, log_tail },
                    les,
                    log: log.into_iter().map(from_wire).collect(),
                    missing: missing_from_wire(missing),
                    last_backfill: pos_from_wire(last_backfill),
                },
                PeerOp::Activate { rewind_to, append, missing } => {
                    PeerMsg::Activate { epoch, rewind_to, append: append.into_iter().map(from_wire).collect(), missing: missing_from_wire(missing), backfill: None }
                }
                PeerOp::ActivateBackfill { rewind_to, append, missing, reset_log, tail, last_backfill, dups } => PeerMsg::Activate {
                    epoch,
                    rewind_to,
                    append: append.into_iter().map(from_wire).collect(),
                    missing: missing_from_wire(missing),
                    backfill: Some(BackfillPlan { reset_log, tail, last_backfill: pos_from_wire(last_backfill), dups }),
                },
                PeerOp::RepLog { entry, trim_to } => PeerMsg::RepLog { epoch, entry: from_wire(entry), trim_to },
                PeerOp::Scan { after, until, max } => PeerMsg::Scan { epoch, after: pos_from_wire(after), until: pos_from_wire(until), max: max as usize },
                PeerOp::ScanReply { after, until, end, objects, dups } => PeerMsg::ScanReply {
                    epoch,
                    after: pos_from_wire(after),
                    until: pos_from_wire(until),
                    end: pos_from_wire(end),
                    objects: objects.into_iter().map(|l| (l.object, l.version)).collect(),
                    dups,
                },
                PeerOp::BackfillProgress { pos } => PeerMsg::BackfillProgress { epoch, pos: pos_from_wire(pos) },
                PeerOp::BackfillDone { tail, log, dups } => PeerMsg::BackfillDone { epoch, tail, log: log.into_iter().map(from_wire).collect(), dups },
                PeerOp::BackfillDoneAck => PeerMsg::BackfillDoneAck { epoch },
                PeerOp::ActivateAck => PeerMsg::ActivateAck { epoch },
                PeerOp::Activated => PeerMsg::Activated { epoch },
                PeerOp::RepOpAck { version } => PeerMsg::RepOpAck { epoch, version },
                PeerOp::Pull { object } => PeerMsg::Pull { epoch, object },
                PeerOp::PushAck { object } => PeerMsg::PushAck { epoch, object },
                PeerOp::Push { object, version, content } => {
                    let content = match content {
                        None => None,
                        Some(w) => {
                            if w.data_len != data.len() as u64 {
                                return;
                            }
                            Some(ObjectContent { data, xattrs: w.xattrs.into_iter().collect(), omap: w.omap.into_iter().collect(), omap_header: w.omap_header })
                        }
                    };
                    PeerMsg::Push { epoch, object, version, content }
                }
            },
            _ => return,
        };
        self.with_pg(pg, |p, out| p.peer(from, msg, out));
    }

    /// Nudges peering and recovery on a timer; feeds new maps.
    pub(crate) async fn pg_ticker(self: Rc<Self>) {
        let mut maps = self.maps.clone();
        let mut maps_open = true;
        let mut last_states = BTreeMap::new();
        loop {
            let map = self.map();
            self.advance_pgs(&map);
            let busy: Vec<PgId> = self.pgs.borrow().iter().filter(|(_, s)| s.pg.state() == PgState::Peering || (s.pg.is_primary() && !s.pg.is_clean())).map(|(pg, _)| *pg).collect();
            for pg in busy {
                self.with_pg(pg, |p, out| p.retry(out));
            }
            // The operator (and the tests) see PG states change in the log.
            let states = self.pg_states();
            if states != last_states {
                let summary: Vec<String> = states.iter().map(|(k, v)| format!("{k}={v}")).collect();
                eprintln!("osd.{} shard {} pgs: {}", self.osd, self.shard, summary.join(" "));
                last_states = states;
            }
            let tick = glommio::timer::sleep(Duration::from_millis(limits::peering_retry_ms));
            if maps_open {
                let changed = futures_lite::future::or(async { maps.changed().await.is_ok() }, async {
                    tick.await;
                    true
                });
                // A closed map channel (shutdown) must not spin the loop.
                maps_open = changed.await;
            } else {
                tick.await;
            }
        }
    }

    /// PG states, for `status` and tests: counts by state name.
    pub fn pg_states(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for s in self.pgs.borrow().values() {
            let name = match s.pg.state() {
                PgState::Active if s.pg.is_primary() && s.pg.acting().len() < s.pg.params().size => "active+undersized",
                // ("recovering" too: tools that wait for recovery wait for it.)
                PgState::Active if s.pg.is_primary() && s.pg.is_backfilling() => "active+recovering+backfilling",
                PgState::Peering if s.pg.is_primary() && s.pg.is_backfilling() => "peering+backfilling",
                PgState::Active if s.pg.is_primary() && !s.pg.is_clean() => "active+recovering",
                PgState::Active if s.pg.is_primary() => "active+clean",
                PgState::Active => "active",
                PgState::Peering => "peering",
                PgState::Down => "down",
                PgState::Incomplete => "incomplete",
                PgState::Stray => "stray",
            };
            *out.entry(name.to_string()).or_default() += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_sorted_keys_match_their_padded_format() {
        let values = [(0, 0), (1, 9), (7, 10), (12, 1234), (u32::MAX, u64::MAX), (4_000_000_000, 10_000_000_000_000_000_000)];
        for (epoch, version) in values {
            let v = EVersion { epoch, version };
            assert_eq!(log_key(v), format!("log.{epoch:010}.{version:020}"));
            assert_eq!(dup_key(v), format!("dup.{epoch:010}.{version:020}"));
            assert_eq!(tomb_key(v, "ns\u{1f}obj"), format!("tomb.{epoch:010}.{version:020}.ns\u{1f}obj"));
            assert_eq!(tomb_key(v, "x").len(), TOMB_PREFIX_LEN + 1);
        }
    }

    #[test]
    fn intervals_record_round_trips_and_bad_ones_are_refused() {
        let iv = |start, end, acting: Vec<OsdId>, unknown| Interval { start, end, primary: acting.first().copied(), acting, unknown, enough: (!unknown).then_some(true) };
        let h = PgHistory { epoch: 42, current: Some(iv(40, 42, vec![2, 0], false)), past: vec![iv(3, 9, vec![0, 1, 2], false), Interval { enough: Some(false), ..iv(10, 20, vec![], false) }, iv(21, 39, vec![1], true)] };
        let b = encode_history(&h);
        assert_eq!(decode_history(&b, 8), Ok(h.clone()));
        // A record from before `enough` was kept reads as not recorded.
        let mut old = h.clone();
        old.past.iter_mut().chain(old.current.iter_mut()).for_each(|iv| iv.enough = None);
        let old_bytes = encode_history(&old);
        assert_eq!(decode_history(&old_bytes, 8), Ok(old));
        assert_eq!(decode_history(&b, 2), Err(HistoryError::TooMany("past intervals", 3)));
        assert_eq!(decode_history(&b[..b.len() - 1], 8), Err(HistoryError::Truncated));
        assert_eq!(decode_history(&[b.as_slice(), &[0]].concat(), 8), Err(HistoryError::Trailing(1)));
        let mut other = b.clone();
        other[0] = 9;
        assert_eq!(decode_history(&other, 8), Err(HistoryError::Format(9)));
        assert_eq!(decode_history(&encode_history(&PgHistory::default()), 8), Ok(PgHistory::default()));
    }

    fn entry(epoch: u32, version: u64, name: &str) -> LogEntry {
        let object = ObjectId { name: name.to_string(), locator: String::new(), namespace: String::new() };
        let prior_version = Some(EVersion { epoch, version: version.saturating_sub(3) });
        LogEntry { version: EVersion { epoch, version }, reqid: ReqId { client: 7, tid: version }, object, op: LogOp::Modify, prior_version }
    }

    /// A PG's records as the shard writes them: info, two log entries, a
    /// missing object and a dup record.
    fn records() -> BTreeMap<String, Vec<u8>> {
        let mut omap = BTreeMap::new();
        let v = |epoch, version| EVersion { epoch, version };
        let info = PgInfo { last_update: v(4, 12), last_complete: v(4, 11), log_tail: v(3, 10) };
        omap.insert("info".to_string(), encode_info(&info, 4));
        for e in [entry(4, 11, "a"), entry(4, 12, "b")] {
            omap.insert(log_key(e.version), encode_log_entry(&e));
        }
        let missing = vec![(entry(0, 0, "b").object, Missing { need: v(4, 12), have: v(4, 11), intact_at: v(4, 11) })];
        omap.insert(MISSING_KEY.to_string(), archive(&missing_to_wire(&missing)));
        omap.insert(dup_key(v(3, 10)), encode_dups(&[(ReqId { client: 7, tid: 10 }, v(3, 10))]));
        omap
    }

    #[test]
    fn log_records_of_both_layouts_load() {
        for (name, delete) in [("a", false), ("an-object-name-longer-than-inline", true)] {
            let mut e = entry(3, 9, name);
            e.op = if delete { LogOp::Delete } else { LogOp::Modify };
            assert_eq!(decode_log_entry(&encode_log_entry(&e)), Some(e.clone()));
            // A store written before `prior_version`: the record has no
            // tag, and its last byte (the flag or padding) is never one.
            let old = archive(&WireLogEntryV1 { version: e.version, reqid: e.reqid, object: e.object.clone(), delete });
            assert!(matches!(old.last(), Some(0 | 1)), "a first-layout record ends with {:?}", old.last());
            assert_eq!(decode_log_entry(&old), Some(LogEntry { prior_version: None, ..e }));
        }
        assert_eq!(decode_log_entry(&[LOG_RECORD_TAG]), None);
        assert_eq!(decode_log_entry(&[]), None);
    }

    #[test]
    fn pg_records_load_in_full_or_not_at_all() {
        let pg = PgId { pool: 1, seed: 0 };
        let (durable, dup_records) = decode_pg(pg, &records(), 8, 0).expect("well-formed records load");
        assert_eq!(durable.log, vec![entry(4, 11, "a"), entry(4, 12, "b")]);
        assert_eq!(durable.info.last_update, EVersion { epoch: 4, version: 12 });
        assert_eq!(durable.missing.len(), 1);
        assert_eq!(durable.dups.len(), 1);
        assert_eq!(dup_records.len(), 1);
        assert_eq!(durable.last_backfill, BackfillPos::Max);

        // Each way a record can be damaged: the PG must not load from the
        // pieces that still read.
        let damaged: [(&str, fn(&mut BTreeMap<String, Vec<u8>>)); 6] = [
            ("info cut short", |m| m.get_mut("info").unwrap().truncate(39)),
            ("log entry garbage", |m| *m.get_mut(&log_key(EVersion { epoch: 4, version: 11 })).unwrap() = vec![0xff; 9]),
            ("log entry under another version's key", |m| {
                let e = m.remove(&log_key(EVersion { epoch: 4, version: 12 })).unwrap();
                m.insert(log_key(EVersion { epoch: 4, version: 10 }), e);
            }),
            ("missing set garbage", |m| *m.get_mut(MISSING_KEY).unwrap() = vec![1, 2, 3]),
            ("first-layout missing set garbage", |m| {
                m.remove(MISSING_KEY);
                m.insert(MISSING_KEY_V1.to_string(), vec![1, 2, 3]);
            }),
            ("dup record cut short", |m| {
                m.get_mut(&dup_key(EVersion { epoch: 3, version: 10 })).unwrap().pop();
            }),
        ];
        for (what, damage) in damaged {
            let mut omap = records();
            damage(&mut omap);
            assert!(decode_pg(pg, &omap, 8, 0).is_err(), "{what}: loaded anyway");
        }

        // Unreadable intervals only lose the intervals: the map walk then
        // counts the maps the PG cannot account for as unknown.
        let mut omap = records();
        omap.insert("intervals".to_string(), vec![9, 9]);
        let (durable, _) = decode_pg(pg, &omap, 8, 0).expect("loads without intervals");
        assert_eq!(durable.history, PgHistory::default());
        assert_eq!(durable.log.len(), 2);
    }
}
