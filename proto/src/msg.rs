//! Every message body, one rkyv enum ([`Body`]), and its checked decoding.
//!
//! A frame's header carries the message type; the body is the archived
//! [`Body`] whose variant must agree with it. Bulk bytes (a write's payload,
//! a read's result) never sit in the body: they travel in the frame's data
//! segment and sub-ops refer to them by `(data_offset, len)`, so an OSD can
//! receive a payload straight into its DMA buffer.
//!
//! Invariants: [`decode`] and [`access`] return only bodies that passed
//! rkyv's bytecheck and whose variant matches the header; [`OsdOp::check`]
//! (and its archived twin) bound every count and keep every data reference
//! inside the data segment, so the OSD never indexes out of range.

use rkyv::{Archive, Deserialize, Serialize};

use crate::frame::{self, EncodedFrame, Frame, FrameError};
use crate::limits;
use crate::monmap::MonMap;
use crate::osdmap::{Epoch, OsdId, OsdMapIncremental, OsdMapWire, PgId};

/// Who sent a request and its sequence number: unique per client session,
/// the key of duplicate detection in the PG log.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReqId {
    pub client: u64,
    pub tid: u64,
}

/// A PG log position: the map epoch of the write and a per-PG counter.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EVersion {
    pub epoch: Epoch,
    pub version: u64,
}

/// An object's full name: `locator` (if not empty) replaces the name for
/// placement; `namespace` partitions a pool.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId {
    pub name: String,
    pub locator: String,
    pub namespace: String,
}

impl ObjectId {
    pub fn new(name: impl Into<String>) -> ObjectId {
        ObjectId { name: name.into(), locator: String::new(), namespace: String::new() }
    }
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Gt,
    Gte,
    Lt,
    Lte,
}

/// One step of a compound object op. All sub-ops of an op apply atomically
/// or not at all; reads see the object as of the op's start.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum SubOp {
    /// `len == 0` reads to the end of the object.
    Read { offset: u64, len: u64 },
    Write { offset: u64, data_offset: u32, len: u32 },
    WriteFull { data_offset: u32, len: u32 },
    Append { data_offset: u32, len: u32 },
    Truncate { size: u64 },
    Zero { offset: u64, len: u64 },
    Remove,
    Stat,
    /// Creates an empty object; with `exclusive`, EEXIST if it exists.
    Create { exclusive: bool },
    GetXattr { name: String },
    GetXattrs,
    SetXattr { name: String, value: Vec<u8> },
    RmXattr { name: String },
    /// ECANCELED (the whole op) unless `xattr <op> value` holds.
    CmpXattr { name: String, op: CmpOp, value: Vec<u8> },
    OmapGetKeys { after: String, max: u32 },
    OmapGetVals { after: String, max: u32 },
    OmapGetValsByKeys { keys: Vec<String> },
    OmapSetVals { entries: Vec<(String, Vec<u8>)> },
    OmapRmKeys { keys: Vec<String> },
    /// Removes keys in `[start, end)`.
    OmapRmRange { start: String, end: String },
    OmapClear,
    OmapGetHeader,
    OmapSetHeader { value: Vec<u8> },
}

impl SubOp {
    /// True for sub-ops that change the object (the op is then a write).
    pub fn is_write(&self) -> bool {
        !matches!(
            self,
            SubOp::Read { .. }
                | SubOp::Stat
                | SubOp::GetXattr { .. }
                | SubOp::GetXattrs
                | SubOp::CmpXattr { .. }
                | SubOp::OmapGetKeys { .. }
                | SubOp::OmapGetVals { .. }
                | SubOp::OmapGetValsByKeys { .. }
                | SubOp::OmapGetHeader
        )
    }
}

/// A client's compound op on one object, sent to the PG's primary shard.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct OsdOp {
    pub reqid: ReqId,
    pub pg: PgId,
    /// The map epoch the client computed the target with.
    pub epoch: Epoch,
    pub object: ObjectId,
    pub subops: Vec<SubOp>,
}

/// What a sub-op returned besides its code.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum SubOpValue {
    None,
    /// Bytes in the reply's data segment.
    Data { data_offset: u32, len: u32 },
    Stat { size: u64, mtime_ms: u64 },
    Bytes(Vec<u8>),
    Xattrs(Vec<(String, Vec<u8>)>),
    Keys { keys: Vec<String>, more: bool },
    Vals { entries: Vec<(String, Vec<u8>)>, more: bool },
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct SubOpOut {
    /// 0 or `-errno`.
    pub result: i32,
    pub value: SubOpValue,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct OsdOpReply {
    pub reqid: ReqId,
    /// 0 or `-errno` for the op as a whole. `-EAGAIN` with a newer `epoch`
    /// means "not the primary at this epoch: refresh the map and resend".
    pub result: i32,
    /// The OSD's map epoch when it answered.
    pub epoch: Epoch,
    /// The PG log version of a write (zero for reads).
    pub version: EVersion,
    pub outs: Vec<SubOpOut>,
}

/// List the objects of one PG (the primary answers), in stable order from
/// `after` (exclusive; empty = from the start).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct PgList {
    pub reqid: ReqId,
    pub pg: PgId,
    pub epoch: Epoch,
    pub namespace: String,
    pub after: String,
    pub max: u32,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct PgListReply {
    pub reqid: ReqId,
    /// 0, `-EAGAIN` (not the primary at `epoch`), or another `-errno`.
    pub result: i32,
    pub epoch: Epoch,
    pub objects: Vec<String>,
    /// More objects follow the last one returned.
    pub more: bool,
}

/// The primary's write, forwarded to a replica's owning shard.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct RepOp {
    pub reqid: ReqId,
    pub pg: PgId,
    pub epoch: Epoch,
    pub version: EVersion,
    pub object: ObjectId,
    /// Only write sub-ops, already validated by the primary.
    pub subops: Vec<SubOp>,
    /// Entries up to here may be trimmed from the PG log.
    pub trim_to: EVersion,
    /// The object's version before this write (see
    /// [`WireLogEntry::prior_version`]).
    pub prior_version: Option<EVersion>,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct RepOpReply {
    pub reqid: ReqId,
    pub pg: PgId,
    pub epoch: Epoch,
    pub version: EVersion,
    /// 0 once the write is durable on the replica.
    pub result: i32,
}

/// One PG log entry on the wire.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct WireLogEntry {
    pub version: EVersion,
    pub reqid: ReqId,
    pub object: ObjectId,
    pub delete: bool,
    /// The object's version just before this entry (a removal's version
    /// once removed; zero: it never existed), as Ceph's `prior_version`.
    /// Peering rolls a divergent write back to it when the log no longer
    /// reaches back that far. `None`: not recorded (entries written before
    /// it was).
    pub prior_version: Option<EVersion>,
}

/// An object a PG member lacks: needed version and the version it holds.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct WireMissing {
    pub object: ObjectId,
    pub need: EVersion,
    pub have: EVersion,
    /// The copy is the object as of this log point (zero: not known).
    pub intact_at: EVersion,
}

/// A whole object moved by recovery.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct WireObject {
    pub data_len: u64,
    pub xattrs: Vec<(String, Vec<u8>)>,
    pub omap: Vec<(String, Vec<u8>)>,
    pub omap_header: Vec<u8>,
}

/// Peering and recovery between the shards that hold one PG. Object data
/// (a push's content) travels in the frame's data segment.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum PeerOp {
    Query,
    Notify { last_update: EVersion, last_complete: EVersion, log_tail: EVersion, les: Epoch, log: Vec<WireLogEntry>, missing: Vec<WireMissing> },
    Activate { rewind_to: Option<EVersion>, append: Vec<WireLogEntry>, missing: Vec<WireMissing> },
    ActivateAck,
    Activated,
    RepOpAck { version: EVersion },
    Pull { object: ObjectId },
    /// `content: None` = the object does not exist (remove it).
    Push { object: ObjectId, version: EVersion, content: Option<WireObject> },
    PushAck { object: ObjectId },
    // Backfill (added after the variants above, whose encodings stay).
    /// `Notify` with the member's backfill cursor (`Max`: complete).
    NotifyBackfill {
        last_update: EVersion,
        last_complete: EVersion,
        log_tail: EVersion,
        les: Epoch,
        log: Vec<WireLogEntry>,
        missing: Vec<WireMissing>,
        last_backfill: WireBackfillPos,
    },
    /// `Activate` of a member a backfill fills: with `reset_log` it drops
    /// its log and takes `append` from `tail` on; it resumes at
    /// `last_backfill`.
    /// `dups`: the primary's trimmed request ids (with `reset_log`).
    ActivateBackfill {
        rewind_to: Option<EVersion>,
        append: Vec<WireLogEntry>,
        missing: Vec<WireMissing>,
        reset_log: bool,
        tail: EVersion,
        last_backfill: WireBackfillPos,
        dups: Vec<(ReqId, EVersion)>,
    },
    /// A write's log entry without its data (the object lies after the
    /// target's backfill cursor).
    RepLog { entry: WireLogEntry, trim_to: EVersion },
    /// List the objects in `(after, until]`, at most `max`.
    Scan { after: WireBackfillPos, until: WireBackfillPos, max: u32 },
    /// The objects in `(after, end]` with the versions of their last
    /// writes; `dups`: the sender's trimmed request ids when `end` is `Max`.
    ScanReply { after: WireBackfillPos, until: WireBackfillPos, end: WireBackfillPos, objects: Vec<WireListed>, dups: Vec<(ReqId, EVersion)> },
    /// The target's objects up to `pos` are the primary's.
    BackfillProgress { pos: WireBackfillPos },
    /// The walk ended: take this log and these request ids.
    BackfillDone { tail: EVersion, log: Vec<WireLogEntry>, dups: Vec<(ReqId, EVersion)> },
    BackfillDoneAck,
}

/// A position in a PG's object order (store keys): before everything,
/// every object up to a key, after everything.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum WireBackfillPos {
    Min,
    Key(String),
    Max,
}

/// One object of a backfill listing.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct WireListed {
    pub object: ObjectId,
    pub version: EVersion,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct PgPeer {
    pub pg: PgId,
    pub epoch: Epoch,
    pub from: OsdId,
    pub op: PeerOp,
}

/// A consensus message between monitors (omnipaxos's, serialized by the
/// monitor; opaque here). One-way: no reply.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct MonPaxos {
    /// The sender's rank in the MonMap.
    pub from: u32,
    pub bytes: Vec<u8>,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapKind {
    MonMap,
    OsdMap,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct SubscribeItem {
    pub what: MapKind,
    /// Send every epoch from `start` on (0: just the newest full map).
    pub start: Epoch,
    /// Deliver once, then forget the subscription.
    pub onetime: bool,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    pub items: Vec<SubscribeItem>,
}

/// OSDMap epochs for a subscriber: a full map when its start is too old,
/// then incrementals in order up to `newest`.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct OsdMapDelivery {
    pub full: Option<OsdMapWire>,
    pub incrementals: Vec<OsdMapIncremental>,
    pub newest: Epoch,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct OsdBoot {
    pub osd: OsdId,
    pub uuid: [u8; 16],
    /// One `ip:port` per shard.
    pub addrs: Vec<String>,
    /// The newest OSDMap epoch the OSD has.
    pub have_epoch: Epoch,
    pub hostname: String,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct OsdStat {
    pub total_bytes: u64,
    pub used_bytes: u64,
    pub available_bytes: u64,
    pub pgs: u32,
    pub objects: u64,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct OsdBeacon {
    pub osd: OsdId,
    pub epoch: Epoch,
    pub stat: OsdStat,
}

/// A peer's report that `target` stopped answering heartbeats.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct OsdFailure {
    pub reporter: OsdId,
    pub target: OsdId,
    /// The epoch at which the reporter last saw `target` up.
    pub epoch: Epoch,
    pub failed_for_ms: u64,
    /// `false` withdraws an earlier report (the peer answered again).
    pub still_failed: bool,
}

/// A clean shutdown: mark me down now instead of waiting for the grace.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct OsdMarkMeDown {
    pub osd: OsdId,
    pub epoch: Epoch,
}

/// An admin command as argv words (`osd pool create rbd 32 --size 3`).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub tid: u64,
    pub args: Vec<String>,
    /// Ask for JSON output (`--format json`).
    pub json: bool,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct CommandReply {
    pub tid: u64,
    /// 0 or `-errno`.
    pub result: i32,
    /// One human line, like `ceph`'s status string ("pool 'rbd' created").
    pub status: String,
    /// The command's output (text or JSON).
    pub output: String,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Ping {
    pub from: OsdId,
    pub epoch: Epoch,
    pub stamp_ms: u64,
    /// `true` on the answer.
    pub reply: bool,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchOp {
    Watch,
    Unwatch,
    /// Keep-alive of an existing watch.
    Ping,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Watch {
    pub reqid: ReqId,
    pub pg: PgId,
    pub epoch: Epoch,
    pub object: ObjectId,
    pub cookie: u64,
    pub op: WatchOp,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Notify {
    pub reqid: ReqId,
    pub pg: PgId,
    pub epoch: Epoch,
    pub object: ObjectId,
    pub timeout_ms: u64,
    pub payload: Vec<u8>,
}

/// The OSD tells a watcher about a notify.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct NotifyEvent {
    pub cookie: u64,
    pub notify_id: u64,
    pub notifier: u64,
    pub payload: Vec<u8>,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct NotifyAck {
    pub cookie: u64,
    pub notify_id: u64,
    pub reply: Vec<u8>,
}

/// The notifier's answer once every watcher acked or timed out.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct NotifyComplete {
    pub reqid: ReqId,
    pub notify_id: u64,
    pub acks: Vec<(u64, Vec<u8>)>,
    pub timed_out: Vec<u64>,
}

/// The first frame on every connection (see [`crate::hello`]).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub min_version: u16,
    pub max_version: u16,
    pub features: u64,
    /// `client.admin`, `osd.3`, `mon.a`.
    pub entity: String,
    /// The cluster the peer believes it talks to (zeros: unknown yet).
    pub fsid: [u8; 16],
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct HelloReply {
    /// 0 on success, `-errno` with `reason` otherwise.
    pub result: i32,
    pub reason: String,
    pub version: u16,
    pub features: u64,
    pub entity: String,
    pub fsid: [u8; 16],
    /// A fresh random number per connection that an authorizer sent on
    /// this connection must cover: an authorizer seen on the wire cannot be
    /// replayed on another connection.
    pub challenge: u64,
}

macro_rules! messages {
    ($($variant:ident($ty:ty) = $code:literal,)*) => {
        /// Every message. The discriminant on the wire is the frame header's
        /// `msg_type`; the codes never change meaning once released.
        #[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
        pub enum Body {
            $($variant($ty),)*
        }

        impl Body {
            pub fn msg_type(&self) -> u16 {
                match self { $(Body::$variant(_) => $code,)* }
            }
        }

        impl ArchivedBody {
            pub fn msg_type(&self) -> u16 {
                match self { $(ArchivedBody::$variant(_) => $code,)* }
            }
        }

        /// Message types this build understands (the frame decoder rejects
        /// any other before reading the body).
        pub fn known_type(t: u16) -> bool {
            matches!(t, $($code)|*)
        }

        /// The name of a message type, for logs.
        pub fn type_name(t: u16) -> &'static str {
            match t { $($code => stringify!($variant),)* _ => "unknown" }
        }
    };
}

messages! {
    Hello(Hello) = 1,
    HelloReply(HelloReply) = 2,
    Auth(crate::auth::AuthMessage) = 10,
    Subscribe(Subscribe) = 20,
    OsdMap(OsdMapDelivery) = 21,
    MonMap(MonMap) = 22,
    OsdBoot(OsdBoot) = 30,
    OsdBeacon(OsdBeacon) = 31,
    OsdFailure(OsdFailure) = 32,
    OsdMarkMeDown(OsdMarkMeDown) = 33,
    Command(Command) = 40,
    CommandReply(CommandReply) = 41,
    OsdOp(OsdOp) = 50,
    OsdOpReply(OsdOpReply) = 51,
    PgList(PgList) = 52,
    PgListReply(PgListReply) = 53,
    RepOp(RepOp) = 60,
    RepOpReply(RepOpReply) = 61,
    PgPeer(PgPeer) = 62,
    Ping(Ping) = 70,
    MonPaxos(MonPaxos) = 71,
    Watch(Watch) = 80,
    Notify(Notify) = 81,
    NotifyEvent(NotifyEvent) = 82,
    NotifyAck(NotifyAck) = 83,
    NotifyComplete(NotifyComplete) = 84,
}

/// Archives a body (rkyv) into an aligned buffer.
pub fn archive(body: &Body) -> rkyv::util::AlignedVec<16> {
    // Serializing our own in-memory value cannot fail except on allocation
    // failure, which aborts anyway.
    rkyv::to_bytes::<rkyv::rancor::Error>(body).expect("archiving an in-memory message")
}

/// Builds a frame for `body` with its data segment.
pub fn encode<'d>(
    body: &Body,
    txid: u64,
    data: &'d [u8],
    key: Option<&dyn frame::FrameMac>,
) -> Result<EncodedFrame<'d>, FrameError> {
    frame::encode_frame(body.msg_type(), txid, archive(body), data, key)
}

/// [`encode`], given the crc32 of `data` (see
/// [`frame::encode_frame_with_data_crc`]).
pub fn encode_with_data_crc<'d>(
    body: &Body,
    txid: u64,
    data: &'d [u8],
    data_crc: Option<u32>,
    key: Option<&dyn frame::FrameMac>,
) -> Result<EncodedFrame<'d>, FrameError> {
    frame::encode_frame_with_data_crc(body.msg_type(), txid, archive(body), data, data_crc, key)
}

/// The archived body of a checked frame, validated in place (zero copy).
pub fn access<B>(frame: &Frame<B>) -> Result<&ArchivedBody, FrameError> {
    let body = rkyv::access::<ArchivedBody, rkyv::rancor::Error>(&frame.body)
        .map_err(|e| FrameError::BadBody(e.to_string()))?;
    if body.msg_type() != frame.header.msg_type {
        return Err(FrameError::TypeMismatch { header: frame.header.msg_type, body: body.msg_type() });
    }
    Ok(body)
}

/// The owned body of a checked frame.
pub fn decode<B>(frame: &Frame<B>) -> Result<Body, FrameError> {
    let archived = access(frame)?;
    rkyv::deserialize::<Body, rkyv::rancor::Error>(archived).map_err(|e| FrameError::BadBody(e.to_string()))
}

/// A semantic check failure of a well-formed op: answered with `-EINVAL`
/// (or `-ENAMETOOLONG`/`-E2BIG`-like), not by closing the connection.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid op: {0}")]
pub struct OpInvalid(pub String);

fn check_data_ref(data_offset: u32, len: u32, data_len: usize) -> Result<(), OpInvalid> {
    let end = u64::from(data_offset) + u64::from(len);
    if end > data_len as u64 {
        return Err(OpInvalid(format!("sub-op data [{data_offset}, {end}) outside the {data_len}-byte data segment")));
    }
    Ok(())
}

fn check_name(what: &str, s: &str, max: usize) -> Result<(), OpInvalid> {
    if s.len() > max {
        return Err(OpInvalid(format!("{what} of {} bytes exceeds {max}", s.len())));
    }
    Ok(())
}

fn check_count(what: &str, n: usize, max: usize) -> Result<(), OpInvalid> {
    if n > max {
        return Err(OpInvalid(format!("{n} {what} exceed {max}")));
    }
    Ok(())
}

/// An xattr name from a client: bounded, and not starting with NUL (the
/// OSD's own attrs, such as an object's version record, start with it).
fn check_xattr_name(name: &str) -> Result<(), OpInvalid> {
    check_name("xattr name", name, limits::name_bytes_max)?;
    if name.starts_with('\0') {
        return Err(OpInvalid("xattr name starts with NUL (reserved for the OSD)".into()));
    }
    Ok(())
}

fn check_value(v: &[u8]) -> Result<(), OpInvalid> {
    if v.len() > limits::attr_value_bytes_max {
        return Err(OpInvalid(format!("value of {} bytes exceeds {}", v.len(), limits::attr_value_bytes_max)));
    }
    Ok(())
}

impl OsdOp {
    /// Bounds every count and size and keeps data references inside the
    /// frame's `data_len`-byte segment.
    pub fn check(&self, data_len: usize) -> Result<(), OpInvalid> {
        check_object(&self.object)?;
        check_subops(&self.subops, data_len)
    }

    pub fn is_write(&self) -> bool {
        self.subops.iter().any(SubOp::is_write)
    }
}

impl RepOp {
    pub fn check(&self, data_len: usize) -> Result<(), OpInvalid> {
        check_object(&self.object)?;
        check_subops(&self.subops, data_len)
    }
}

fn check_object(o: &ObjectId) -> Result<(), OpInvalid> {
    if o.name.is_empty() {
        return Err(OpInvalid("empty object name".into()));
    }
    check_name("object name", &o.name, limits::object_name_bytes_max)?;
    check_name("locator", &o.locator, limits::object_locator_bytes_max)?;
    check_name("namespace", &o.namespace, limits::object_locator_bytes_max)?;
    // NUL starts the OSD's own metadata keys and U+001F separates a
    // namespace from the name in store keys: neither may come from outside.
    if o.name.contains('\0') || o.namespace.contains(['\0', '\u{1f}']) || o.locator.contains('\0') {
        return Err(OpInvalid("object name, locator or namespace contains a reserved character".into()));
    }
    Ok(())
}

fn check_subops(subops: &[SubOp], data_len: usize) -> Result<(), OpInvalid> {
    if subops.is_empty() {
        return Err(OpInvalid("no sub-ops".into()));
    }
    check_count("sub-ops", subops.len(), limits::subops_per_op_max)?;
    for s in subops {
        match s {
            SubOp::Write { data_offset, len, offset } => {
                check_data_ref(*data_offset, *len, data_len)?;
                offset.checked_add(u64::from(*len)).ok_or_else(|| OpInvalid("write past 2^64".into()))?;
            }
            SubOp::WriteFull { data_offset, len } | SubOp::Append { data_offset, len } => {
                check_data_ref(*data_offset, *len, data_len)?
            }
            SubOp::Zero { offset, len } | SubOp::Read { offset, len } => {
                offset.checked_add(*len).ok_or_else(|| OpInvalid("range past 2^64".into()))?;
            }
            SubOp::GetXattr { name } | SubOp::RmXattr { name } => check_xattr_name(name)?,
            SubOp::SetXattr { name, value } | SubOp::CmpXattr { name, value, .. } => {
                check_xattr_name(name)?;
                check_value(value)?;
            }
            SubOp::OmapGetKeys { after, max } | SubOp::OmapGetVals { after, max } => {
                check_name("omap key", after, limits::name_bytes_max)?;
                check_count("entries asked", *max as usize, limits::list_entries_max)?;
            }
            SubOp::OmapGetValsByKeys { keys } | SubOp::OmapRmKeys { keys } => {
                check_count("omap keys", keys.len(), limits::omap_keys_per_subop_max)?;
                for k in keys {
                    check_name("omap key", k, limits::name_bytes_max)?;
                }
            }
            SubOp::OmapSetVals { entries } => {
                check_count("omap keys", entries.len(), limits::omap_keys_per_subop_max)?;
                for (k, v) in entries {
                    check_name("omap key", k, limits::name_bytes_max)?;
                    check_value(v)?;
                }
            }
            SubOp::OmapRmRange { start, end } => {
                check_name("omap key", start, limits::name_bytes_max)?;
                check_name("omap key", end, limits::name_bytes_max)?;
            }
            SubOp::OmapSetHeader { value } => check_value(value)?,
            SubOp::Truncate { .. }
            | SubOp::Remove
            | SubOp::Stat
            | SubOp::Create { .. }
            | SubOp::GetXattrs
            | SubOp::OmapClear
            | SubOp::OmapGetHeader => {}
        }
    }
    Ok(())
}
