//! The replicated PG state machine (primary copy), sans-IO.
//!
//! Inputs are map changes, client writes (already checked by the shard),
//! messages from peers, local commit notices and object contents read for
//! recovery; outputs are [`Effect`]s the shard carries out: apply a
//! transaction to the store, send a message, answer a client, read an
//! object, persist PG metadata.
//!
//! Peering (on every new interval): the primary queries the acting set,
//! refuses to go active while some past interval that may have accepted
//! writes has no member among the answers (the PG is *down* until one
//! comes back), picks the member with the newest log as authoritative,
//! tells each member how to rewind divergent entries and which entries and
//! objects it lacks, and goes active once all acknowledged. A divergent
//! write rolls its object back to the version before it: the member's own
//! log says which when it reaches back far enough, else the entry's
//! `prior_version` (the primary records it with each write, as Ceph does);
//! an object that only divergent writes created is removed as the member
//! rewinds. A member whose trimmed history is not the authoritative one
//! (its tail is not an authoritative entry) takes the log whole and is
//! backfilled. Recovery then
//! pushes whole objects from the primary (after pulling its own missing
//! ones from the authoritative member). A write to an object still missing
//! somewhere waits for that object's recovery.
//!
//! Backfill (see [`super::backfill`]): a member whose log does not reach
//! the authoritative log's tail (or whose earlier backfill did not finish)
//! is activated with the primary's log and a `last_backfill` cursor, and
//! the primary walks the PG's objects in order, moving whatever differs.
//! Writes to objects at or before the cursor reach it as usual; writes to
//! objects after it carry only the log entry (the walk copies the object);
//! writes to objects in the batch being moved wait for that batch. When
//! the walk ends the member takes the primary's log and is complete. An
//! incomplete member is never authoritative and never counts for a past
//! interval; a primary that is itself incomplete first fills itself from
//! the authoritative member (pulling, before it activates anyone).
//!
//! Past intervals: the shell feeds every map epoch in order (see
//! `crate::pgs`), so each interval this PG lived through is recorded, and
//! they are durable (a [`PgHistory`] in every `Persist`, written at least
//! whenever the interval changes), so a restarted OSD knows the intervals
//! before its restart and, walking the maps it missed, those while it was
//! down. They are forgotten once the PG goes active (`les`): that
//! activation accounted for them. A jump in the epochs is a *gap*: maps the
//! monitor no longer had (its history is bounded) or that a bounded map
//! history here dropped. The rule for a gap: it may hide intervals that
//! went active, with members we cannot know; it is recorded as an
//! `unknown` interval with the acting set last known before it, and it is
//! vouched for only by a complete member of that set other than this OSD
//! (this OSD did not see those maps, so its own copy proves nothing); if
//! that set held nobody else, any complete member vouches. Until one
//! answers the PG is *down*, and `blocked_by` names the interval, which
//! the shell logs.
//!
//! Lost OSDs: an operator who knows those OSDs are gone for good marks
//! them lost (`osd lost ID --yes-i-really-mean-it`: the map records
//! `lost_at`, the epoch of the map that did it, and every map brings the
//! PG the lost set). A past interval, known or a gap, whose members who
//! could vouch are all lost with `lost_at > end` no longer blocks: nobody
//! can do better than the responders, and the writes only those members
//! held are given up (the PG logs it when it goes active). A down primary
//! chooses again when a map changes the lost set within its interval. An
//! OSD marked lost that boots again is not lost for intervals after that
//! (they end after its `lost_at`), and one that answers vouches as usual.
//! (Ceph records `down_at` and compares with the interval's first epoch;
//! here the mark covers every interval that ended before it.) An OSD
//! removed from the map (`osd rm`) counts as lost for every interval
//! ([`REMOVED`]).
//!
//! A restarted PG always starts a new interval with its first map (its
//! old peering state is gone).
//!
//! Invariants (`invariants()`, called by the simulator after every step):
//! the log is ordered and bounded; only an active primary has writes in
//! flight; an acknowledged write is durable on every member of the acting
//! set it was acknowledged in (a backfill target's objects after its
//! cursor excepted); the primary never has an object missing that a client
//! write is queued on without a recovery in progress; an active primary is
//! complete; only a primary runs walks, each within its bounds.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use sepia_proto::msg::{EVersion, ObjectId, ReqId};
use sepia_proto::osdmap::{Epoch, OsdId, PgId};

use super::backfill::{self, pos_of, BackfillPlan, BackfillPos, Listed, Step, Walk};
use super::log::{LogEntry, LogOp, PgInfo, PgLog, Trim};

#[derive(Debug, Clone)]
pub struct PgParams {
    pub size: usize,
    pub min_size: usize,
    /// Entries a clean PG keeps (it trims in batches of this many, so its
    /// log holds between one and two times this).
    pub log_entries_min: usize,
    /// Entries a degraded PG keeps, so a member that comes back can catch
    /// up from the log.
    pub log_entries_max: usize,
    /// Request ids of trimmed entries remembered (and made durable) so a
    /// late resend is recognised (Ceph's `osd_pg_log_dups_tracked`).
    pub dups_tracked_max: usize,
    /// Client writes queued while peering or waiting on a missing object.
    pub waiting_ops_max: usize,
    /// Past intervals remembered (bounds the map history we reason over).
    pub past_intervals_max: usize,
    /// Objects listed per backfill batch (each side).
    pub backfill_scan_max: usize,
    /// Backfill pushes (or pulls) in flight per walk.
    pub backfill_pushes_max: usize,
    /// Bytes of backfill pushes in flight per walk (a push starts while
    /// fewer are in flight, so one object may overshoot it).
    pub backfill_bytes_max: usize,
}

impl Default for PgParams {
    fn default() -> Self {
        PgParams {
            size: 3,
            min_size: 2,
            log_entries_min: 250,
            log_entries_max: 3000,
            dups_tracked_max: 3000,
            waiting_ops_max: 1024,
            past_intervals_max: 512,
            backfill_scan_max: 64,
            backfill_pushes_max: 8,
            backfill_bytes_max: 32 << 20,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgState {
    /// Waiting for the acting set to answer.
    Peering,
    /// Serving I/O (recovery may still be running).
    Active,
    /// Fewer than min_size members, or a past interval is unreachable.
    Down,
    /// No complete member answered (only ones mid-backfill): waiting for
    /// a complete copy to come back.
    Incomplete,
    /// Not a member of the acting set.
    Stray,
}

/// An object a member lacks: the version it needs and the version its
/// copy holds (`have` lets a rewind recognise a copy that is already right).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Missing {
    pub need: EVersion,
    pub have: EVersion,
    /// The copy is the object as of this point of the log: it has every
    /// write to the object up to here and none after (zero: not known).
    /// A copy that went missing only through entries a later peering finds
    /// divergent is then right again, even where the log cannot say which
    /// version the object had (its last write is older than the log).
    pub intact_at: EVersion,
}

/// An interval of maps with one acting set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interval {
    pub start: Epoch,
    pub end: Epoch,
    pub acting: Vec<OsdId>,
    pub primary: Option<OsdId>,
    /// The maps of these epochs were never seen (a gap the monitor could
    /// not fill): `acting` is only the set last known before the gap.
    pub unknown: bool,
    /// The acting set had at least the pool's `min_size` members while
    /// the interval ran, so it could have gone active (Ceph's
    /// `maybe_went_rw`). Kept per interval because an operator may change
    /// `min_size` later. `None`: not recorded (a record from before this
    /// was kept); judged by today's `min_size`.
    pub enough: Option<bool>,
}

/// What a PG knows of the maps it processed; durable (in every
/// [`Effect::Persist`]), so a restarted OSD still knows the intervals
/// before its restart and walks the maps since `epoch`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PgHistory {
    /// The newest epoch whose map this PG processed (0: none). It may be
    /// older than the truth (it is written when the interval changes);
    /// walking the epochs after it again changes nothing.
    pub epoch: Epoch,
    /// The interval `epoch` belongs to (its `end` is meaningless).
    pub current: Option<Interval>,
    /// Past intervals since the PG last went active, oldest first.
    pub past: Vec<Interval>,
}

/// Whole-object state moved by recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectContent {
    pub data: Vec<u8>,
    pub xattrs: BTreeMap<String, Vec<u8>>,
    pub omap: BTreeMap<String, Vec<u8>>,
    pub omap_header: Vec<u8>,
}

/// A write the shard turns into a store transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum Txn<W> {
    /// The client's write sub-ops (`W`: the op and its payload handle).
    Write(W),
    /// Recovery: replace the object with this content (None: remove it).
    Replace(Option<ObjectContent>),
    /// Only the log entry (a write to an object after this backfill
    /// target's cursor: the walk will copy the object).
    LogOnly,
}

/// Who asked for a listing ([`Effect::List`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListTag {
    /// This primary's walk that fills `target`.
    Walk(OsdId),
    /// The primary, with a `Scan`.
    Peer(OsdId),
}

#[derive(Debug, Clone, PartialEq)]
pub enum PeerMsg<W> {
    Query { epoch: Epoch },
    Notify { epoch: Epoch, info: PgInfo, les: Epoch, log: Vec<LogEntry>, missing: Vec<(ObjectId, Missing)>, last_backfill: BackfillPos },
    /// `backfill`: the member is (still) filled by a walk.
    Activate { epoch: Epoch, rewind_to: Option<EVersion>, append: Vec<LogEntry>, missing: Vec<(ObjectId, Missing)>, backfill: Option<BackfillPlan> },
    ActivateAck { epoch: Epoch },
    /// Every member activated: the interval is active (sets `les`).
    Activated { epoch: Epoch },
    /// `trim_to`: the primary's log tail; the replica trims as far.
    RepOp { epoch: Epoch, entry: LogEntry, txn: Txn<W>, trim_to: EVersion },
    RepOpAck { epoch: Epoch, version: EVersion },
    Pull { epoch: Epoch, object: ObjectId },
    Push { epoch: Epoch, object: ObjectId, version: EVersion, content: Option<ObjectContent> },
    PushAck { epoch: Epoch, object: ObjectId },
    /// A write's log entry only, to a backfill target whose cursor is
    /// before the object.
    RepLog { epoch: Epoch, entry: LogEntry, trim_to: EVersion },
    /// List objects in `(after, until]`, at most `max`.
    Scan { epoch: Epoch, after: BackfillPos, until: BackfillPos, max: usize },
    /// Every object in `(after, end]` with its version; `dups`: the
    /// sender's trimmed request ids when `end` is `Max`.
    ScanReply { epoch: Epoch, after: BackfillPos, until: BackfillPos, end: BackfillPos, objects: Vec<Listed>, dups: Vec<(ReqId, EVersion)> },
    /// The target's objects up to `pos` are now the primary's.
    BackfillProgress { epoch: Epoch, pos: BackfillPos },
    /// The walk ended: take this log (and request ids) and be complete.
    BackfillDone { epoch: Epoch, tail: EVersion, log: Vec<LogEntry>, dups: Vec<(ReqId, EVersion)> },
    BackfillDoneAck { epoch: Epoch },
}

impl<W> PeerMsg<W> {
    pub fn epoch(&self) -> Epoch {
        match self {
            PeerMsg::Query { epoch }
            | PeerMsg::Notify { epoch, .. }
            | PeerMsg::Activate { epoch, .. }
            | PeerMsg::ActivateAck { epoch }
            | PeerMsg::Activated { epoch }
            | PeerMsg::RepOp { epoch, .. }
            | PeerMsg::RepOpAck { epoch, .. }
            | PeerMsg::Pull { epoch, .. }
            | PeerMsg::Push { epoch, .. }
            | PeerMsg::PushAck { epoch, .. }
            | PeerMsg::RepLog { epoch, .. }
            | PeerMsg::Scan { epoch, .. }
            | PeerMsg::ScanReply { epoch, .. }
            | PeerMsg::BackfillProgress { epoch, .. }
            | PeerMsg::BackfillDone { epoch, .. }
            | PeerMsg::BackfillDoneAck { epoch } => *epoch,
        }
    }
}

/// Something for the shard to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect<W> {
    /// Apply to the local store, durably, then call `committed(version)`.
    /// For `Txn::Write` the entry goes into the durable PG log with it; for
    /// `Txn::Replace` (recovery) the entry only names the version.
    /// `trim`: log entries to drop from the durable log in the same
    /// transaction, with the request ids to remember.
    Apply { entry: LogEntry, txn: Txn<W>, trim: Option<Trim> },
    Send { to: OsdId, msg: PeerMsg<W> },
    /// Answer a client write: 0 or `-errno`, and the version.
    Reply { client: u64, reqid: ReqId, result: i32, version: EVersion },
    /// Read the whole object (after every `Apply` asked before) and feed
    /// it to `content` with the version of its last write.
    Read { object: ObjectId },
    /// List the objects in `(after, until]` (at most `max`, after every
    /// `Apply` asked before) with the versions of their last writes, and
    /// feed them to `listed` with the end of what was covered: `until`
    /// if everything in the range was listed, else the last key listed.
    List { tag: ListTag, after: BackfillPos, until: BackfillPos, max: usize },
    /// Persist the PG's metadata: info, missing set, and log changes made
    /// by peering (drop entries newer than `rewound_to`, then add
    /// `appended` — entries whose objects are in the missing set). It goes
    /// through the store's journal after every earlier `Apply`, and the
    /// shard sends the effects after it only once it is durable: peering
    /// never reports a log entry whose write could still be lost.
    Persist {
        info: PgInfo,
        les: Epoch,
        missing: Vec<(ObjectId, Missing)>,
        rewound_to: Option<EVersion>,
        appended: Vec<LogEntry>,
        trim: Option<Trim>,
        /// Objects after this may be stale (`Max`: complete).
        last_backfill: BackfillPos,
        /// The intervals this PG knows of.
        history: PgHistory,
    },
    /// Something the operator should read in the OSD's log (after the
    /// effects before it are done).
    Log { message: String },
}

/// A client write waiting to be ordered.
#[derive(Debug, Clone)]
pub struct ClientWrite<W> {
    pub client: u64,
    pub reqid: ReqId,
    pub object: ObjectId,
    pub delete: bool,
    pub write: W,
    /// The object's version in this member's store when the write arrived
    /// (its version record, with every apply already handed to the store;
    /// zero: none). The entry's `prior_version` when the log has no newer
    /// word on the object.
    pub stored_version: EVersion,
}

#[derive(Debug)]
struct Gather {
    client: u64,
    reqid: ReqId,
    waiting: BTreeSet<OsdId>,
}

/// The durable part of a PG, as the shard reloads it after a restart.
#[derive(Debug, Clone, Default)]
pub struct PgDurable {
    pub info: PgInfo,
    pub les: Epoch,
    pub log: Vec<LogEntry>,
    pub missing: Vec<(ObjectId, Missing)>,
    /// Request ids of trimmed entries, oldest first.
    pub dups: Vec<(ReqId, EVersion)>,
    pub last_backfill: BackfillPos,
    /// The intervals it knew of (`epoch` 0: none, a new PG or an old store).
    pub history: PgHistory,
}

/// A member's answer to peering.
#[derive(Debug, Clone)]
struct Notified {
    info: PgInfo,
    les: Epoch,
    log: Vec<LogEntry>,
    missing: BTreeMap<ObjectId, Missing>,
    last_backfill: BackfillPos,
}

/// How peering activates one member.
struct Plan {
    rewind: Option<EVersion>,
    append: Vec<LogEntry>,
    need: BTreeMap<ObjectId, Missing>,
    backfill: Option<BackfillPlan>,
    /// For a backfill target that was complete: its copies are right as
    /// of this version except for these objects (see `Walk::vouches`).
    vouch: Option<(EVersion, BTreeSet<ObjectId>)>,
}

/// In the lost set handed to [`Pg::map_change_with`]: the OSD no longer
/// exists (`osd rm`). It can vouch for nothing, so like an OSD marked lost
/// it does not hold a PG down for any past interval (Ceph's prior set
/// treats an OSD missing from the map the same way).
pub const REMOVED: Epoch = Epoch::MAX;

pub struct Pg<W> {
    pub id: PgId,
    me: OsdId,
    params: PgParams,
    epoch: Epoch,
    acting: Vec<OsdId>,
    /// `up_from` of each acting member (see `map_change_with`).
    incarnation: Vec<Epoch>,
    primary: Option<OsdId>,
    state: PgState,
    log: PgLog,
    info: PgInfo,
    /// Epoch of the last interval in which this PG went active (durable).
    les: Epoch,
    past: Vec<Interval>,
    interval_start: Epoch,
    /// Loaded from the store: the next map starts a new interval (this
    /// OSD restarted, so the peering state of the old one is gone).
    restored: bool,
    /// The current interval's [`Interval::enough`].
    interval_enough: Option<bool>,
    /// The pool's size and min_size as the newest map says, applied when
    /// the next map is fed (a change starts a new interval).
    next_shape: Option<(usize, usize)>,
    /// The past interval that keeps this PG down (for the operator).
    blocked_by: Option<Interval>,
    /// `lost_at` of the OSDs the newest map says are lost (`osd lost`).
    lost: BTreeMap<OsdId, Epoch>,
    /// Primary: what the last choice gave up because of lost OSDs, said
    /// in the log when the PG goes active.
    lost_passed: Vec<String>,
    /// Per missing object, pulls answered with the wrong version so far: a
    /// last-resort pull (from a copy nobody vouches for) tries the next
    /// source each time. Per object: one counter for all of them advanced
    /// by the number of objects each round, and with as many sources as
    /// that, every pull of an object went to the same wrong one (PG
    /// simulation seed 401).
    pull_turns: BTreeMap<ObjectId, usize>,
    missing: BTreeMap<ObjectId, Missing>,
    // Primary-only peering and recovery state.
    notifies: BTreeMap<OsdId, Notified>,
    activating: BTreeSet<OsdId>,
    peer_missing: BTreeMap<OsdId, BTreeMap<ObjectId, Missing>>,
    pulling: BTreeSet<ObjectId>,
    pushing: BTreeMap<ObjectId, BTreeSet<OsdId>>,
    in_flight: BTreeMap<EVersion, Gather>,
    waiting: VecDeque<ClientWrite<W>>,
    next_version: u64,
    /// Objects after this may be stale here (durable; `Max`: complete).
    last_backfill: BackfillPos,
    /// Primary only: the backfill walks of this interval, by target.
    walks: BTreeMap<OsdId, Walk>,
    /// Primary only: replica messages held per backfill target until an
    /// entry before them is durable here (true: ready to go).
    held: BTreeMap<OsdId, VecDeque<(EVersion, PeerMsg<W>, bool)>>,
}

/// The version of `obj` at `common` by a member's log (oldest first) and
/// its tail: its newest entry up to `common`; zero (absent) when the log
/// reaches back to the beginning; else what the first later entry changed
/// it from (Ceph's `prior_version`, when recorded). `None`: unknown.
fn version_at(log: &[LogEntry], tail: EVersion, common: EVersion, obj: &ObjectId) -> Option<EVersion> {
    log.iter()
        .rev()
        .find(|e| e.version <= common && e.object == *obj)
        .map(|e| e.version)
        .or((tail == EVersion::default()).then_some(EVersion::default()))
        .or_else(|| log.iter().find(|e| e.version > common && e.object == *obj).and_then(|e| e.prior_version))
}

impl<W: Clone> Pg<W> {
    /// A PG as loaded from the store (or new and empty).
    pub fn new(id: PgId, me: OsdId, params: PgParams, durable: PgDurable) -> Pg<W> {
        // The tail comes from the durable info: a log that was trimmed
        // must not look as if it reached back to the beginning.
        let log = PgLog::load(params.log_entries_max, params.dups_tracked_max, durable.info.log_tail, durable.log, durable.dups);
        let next_version = log.head().version;
        let h = durable.history;
        let restored = h.epoch != 0 && h.current.is_some();
        let current = h.current.filter(|_| restored);
        let mut past = h.past;
        if past.len() > params.past_intervals_max {
            past.drain(..past.len() - params.past_intervals_max);
        }
        Pg {
            id,
            me,
            params,
            epoch: if restored { h.epoch } else { 0 },
            acting: current.as_ref().map_or_else(Vec::new, |c| c.acting.clone()),
            incarnation: Vec::new(),
            primary: current.as_ref().and_then(|c| c.primary),
            state: PgState::Stray,
            log,
            info: durable.info,
            les: durable.les,
            past: if restored { past } else { Vec::new() },
            interval_start: current.as_ref().map_or(0, |c| c.start),
            interval_enough: current.as_ref().and_then(|c| c.enough),
            next_shape: None,
            restored,
            blocked_by: None,
            lost: BTreeMap::new(),
            lost_passed: Vec::new(),
            pull_turns: BTreeMap::new(),
            missing: durable.missing.into_iter().collect(),
            notifies: BTreeMap::new(),
            activating: BTreeSet::new(),
            peer_missing: BTreeMap::new(),
            pulling: BTreeSet::new(),
            pushing: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            waiting: VecDeque::new(),
            next_version,
            last_backfill: durable.last_backfill,
            walks: BTreeMap::new(),
            held: BTreeMap::new(),
        }
    }

    pub fn state(&self) -> PgState {
        self.state
    }

    pub fn is_primary(&self) -> bool {
        self.primary == Some(self.me)
    }

    pub fn info(&self) -> PgInfo {
        self.info
    }

    /// The last epoch in which this PG went active (durable).
    pub fn les(&self) -> Epoch {
        self.les
    }

    pub fn primary(&self) -> Option<OsdId> {
        self.primary
    }

    pub fn acting(&self) -> &[OsdId] {
        &self.acting
    }

    pub fn params(&self) -> &PgParams {
        &self.params
    }

    pub fn log(&self) -> &PgLog {
        &self.log
    }

    pub fn missing(&self) -> &BTreeMap<ObjectId, Missing> {
        &self.missing
    }

    /// Objects after this may be stale here (`Max`: complete).
    pub fn last_backfill(&self) -> &BackfillPos {
        &self.last_backfill
    }

    /// True when this copy holds `object` as the PG does (not after an
    /// unfinished backfill's cursor).
    fn holds(&self, object: &ObjectId) -> bool {
        self.last_backfill == BackfillPos::Max || pos_of(object) <= self.last_backfill
    }

    /// True when a read of `object` may be served here now.
    pub fn can_read(&self, object: &ObjectId) -> bool {
        self.state == PgState::Active && self.is_primary() && !self.missing.contains_key(object) && self.holds(object)
    }

    /// Members being backfilled (for diagnostics and the PG state).
    pub fn is_backfilling(&self) -> bool {
        !self.walks.is_empty()
    }

    /// True when recovery has nothing left to do.
    pub fn is_clean(&self) -> bool {
        self.state == PgState::Active
            && self.missing.is_empty()
            && self.peer_missing.values().all(|m| m.is_empty())
            && self.acting.len() == self.params.size
            && self.walks.is_empty()
            && self.last_backfill == BackfillPos::Max
    }

    /// The intervals as persisted (see [`PgHistory`]).
    pub fn history(&self) -> PgHistory {
        let current = (self.epoch != 0).then(|| self.current_interval());
        PgHistory { epoch: self.epoch, current, past: self.past.clone() }
    }

    fn current_interval(&self) -> Interval {
        Interval {
            start: self.interval_start,
            end: self.epoch,
            acting: self.acting.clone(),
            primary: self.primary,
            unknown: false,
            enough: Some(self.interval_enough.unwrap_or(self.acting.len() >= self.params.min_size)),
        }
    }

    /// The pool's size and min_size as of the next map fed to
    /// [`Pg::map_change_with`]: a change is a new interval there (the
    /// acting set may read the same, but who may go active is not), and
    /// the interval it ends keeps the old min_size.
    pub fn set_shape(&mut self, size: usize, min_size: usize) {
        self.next_shape = Some((size, min_size));
    }

    /// The past interval that keeps this PG down, if one does.
    pub fn blocked_by(&self) -> Option<&Interval> {
        self.blocked_by.as_ref().filter(|_| self.state == PgState::Down)
    }

    fn durable_effect(&mut self, rewound_to: Option<EVersion>, appended: Vec<LogEntry>) -> Effect<W> {
        Effect::Persist {
            history: self.history(),
            info: self.info,
            les: self.les,
            missing: self.missing.iter().map(|(o, v)| (o.clone(), *v)).collect(),
            rewound_to,
            appended,
            trim: self.log.take_trim(),
            last_backfill: self.last_backfill.clone(),
        }
    }

    /// A clean primary trims its log to `log_entries_min` entries, in
    /// batches, never past a write still in flight (every member has
    /// applied what is trimmed; the replicas trim as far when told).
    fn trim_clean(&mut self) {
        let keep = self.params.log_entries_min;
        if !self.is_clean() || self.log.len() < keep.saturating_mul(2) {
            return;
        }
        let Some(to) = self.log.trim_point_keeping(keep) else { return };
        if self.in_flight.keys().next().is_some_and(|oldest| *oldest <= to) {
            return;
        }
        self.log.trim_to(to);
        self.log.mark_clean_trim();
        self.info.log_tail = self.log.tail();
    }

    /// A new map epoch: same acting set and primary = same interval.
    /// (The lost OSDs stay as the last map said.)
    pub fn map_change(&mut self, epoch: Epoch, acting: Vec<OsdId>, primary: Option<OsdId>, out: &mut Vec<Effect<W>>) {
        let lost = self.lost.clone();
        self.map_change_with(epoch, acting, primary, Vec::new(), &lost, out);
    }

    /// A new map epoch, where `incarnation` names each acting member's
    /// current life (its `up_from`): a member that restarted between two
    /// maps lost its peering state, so a new life is a new interval even
    /// if the acting set reads the same.
    ///
    /// `lost` holds the map's `lost_at` of every OSD marked lost (`osd
    /// lost`): a past interval whose members are all lost since after it
    /// ended no longer keeps the PG down (see the module doc).
    ///
    /// The caller feeds every epoch in order; an epoch after a jump is a
    /// gap (maps nobody could give us): see the module doc.
    pub fn map_change_with(
        &mut self,
        epoch: Epoch,
        acting: Vec<OsdId>,
        primary: Option<OsdId>,
        incarnation: Vec<Epoch>,
        lost: &BTreeMap<OsdId, Epoch>,
        out: &mut Vec<Effect<W>>,
    ) {
        if epoch <= self.epoch {
            return;
        }
        let gap = self.epoch != 0 && epoch > self.epoch + 1;
        let shape = self.next_shape.take().filter(|&(size, min_size)| (size, min_size) != (self.params.size, self.params.min_size));
        let same = !gap && !self.restored && shape.is_none() && acting == self.acting && primary == self.primary && incarnation == self.incarnation;
        self.incarnation = incarnation;
        self.restored = false;
        let lost_changed = *lost != self.lost;
        if lost_changed {
            self.lost = lost.clone();
        }
        if same && self.epoch != 0 {
            self.epoch = epoch;
            // A map that marks an OSD lost may release a primary down for
            // a past interval (every member answered: choose again).
            if lost_changed && self.state == PgState::Down && self.blocked_by.is_some() && self.is_primary() {
                self.state = PgState::Peering;
                self.blocked_by = None;
                self.try_choose(out);
            }
            return;
        }
        if self.epoch != 0 {
            self.past.push(self.current_interval());
            if gap {
                // Whether it could go active is unknown with the maps.
                self.past.push(Interval { start: self.epoch + 1, end: epoch - 1, acting: self.acting.clone(), primary: self.primary, unknown: true, enough: None });
            }
            if self.past.len() > self.params.past_intervals_max {
                let excess = self.past.len() - self.params.past_intervals_max;
                self.past.drain(..excess);
            }
        }
        if let Some((size, min_size)) = shape {
            self.params.size = size;
            self.params.min_size = min_size;
        }
        self.epoch = epoch;
        self.interval_start = epoch;
        self.acting = acting;
        self.primary = primary;
        self.interval_enough = Some(self.acting.len() >= self.params.min_size);
        // Everything in flight belongs to the old interval: clients resend.
        self.in_flight.clear();
        self.notifies.clear();
        self.activating.clear();
        self.peer_missing.clear();
        self.pulling.clear();
        self.pull_turns.clear();
        self.pushing.clear();
        self.walks.clear();
        self.held.clear();
        self.blocked_by = None;
        self.lost_passed.clear();
        // The new interval is durable before anything about it is said
        // (the primary's flush below does the same).
        if !self.is_primary() || !self.acting.contains(&self.me) || self.acting.len() < self.params.min_size {
            out.push(self.durable_effect(None, Vec::new()));
        }
        if !self.acting.contains(&self.me) {
            self.state = PgState::Stray;
            self.waiting.clear();
            return;
        }
        if self.acting.len() < self.params.min_size {
            self.state = PgState::Down;
            return;
        }
        self.state = PgState::Peering;
        if self.is_primary() {
            // Peering reasons about durable logs only: flush first.
            out.push(self.durable_effect(None, Vec::new()));
            let notify = self.own_notify();
            self.notifies.insert(self.me, notify);
            for &o in &self.acting {
                if o != self.me {
                    out.push(Effect::Send { to: o, msg: PeerMsg::Query { epoch } });
                }
            }
            self.try_choose(out);
        }
    }

    fn own_notify(&self) -> Notified {
        Notified {
            info: self.info,
            les: self.les,
            log: self.log.entries().cloned().collect(),
            missing: self.missing.clone(),
            last_backfill: self.last_backfill.clone(),
        }
    }

    /// Resends queries that may have been lost (the shard calls this on a
    /// timer while peering).
    pub fn retry(&mut self, out: &mut Vec<Effect<W>>) {
        if self.state == PgState::Peering && self.is_primary() {
            for &o in &self.acting {
                if o != self.me && !self.notifies.contains_key(&o) {
                    out.push(Effect::Send { to: o, msg: PeerMsg::Query { epoch: self.epoch } });
                }
            }
            // Lost activations are resent by choosing again (no write can
            // have happened: the PG is not active yet).
            if !self.activating.is_empty() {
                self.activating.clear();
                self.try_choose(out);
            }
        }
        if self.state == PgState::Active && self.is_primary() {
            self.start_recovery(out);
        }
        if self.is_primary() {
            // A walk that made no progress for two ticks resends its step
            // (a message may have been dropped); duplicates are harmless.
            let targets: Vec<OsdId> = self.walks.keys().copied().collect();
            for t in targets {
                let w = self.walks.get_mut(&t).expect("listed");
                w.idle_ticks += 1;
                if w.idle_ticks >= 2 || !w.requested {
                    w.idle_ticks = 0;
                    w.requested = false;
                    if let Step::Move { in_flight, .. } = &mut w.step {
                        for v in in_flight.values_mut() {
                            v.1 = None;
                        }
                    }
                    self.walk_request(t, out);
                }
            }
        }
    }

    /// Primary: once every acting member answered, pick the authoritative
    /// log and activate everyone (or first fill ourselves, if we are
    /// behind).
    fn try_choose(&mut self, out: &mut Vec<Effect<W>>) {
        if self.walks.contains_key(&self.me) || !self.acting.iter().all(|o| self.notifies.contains_key(o)) {
            return;
        }
        let complete = |n: &Notified| n.last_backfill == BackfillPos::Max;
        // A past interval that may have gone active after the newest
        // activation a complete member knows of must be represented by
        // some complete responder (a member mid-backfill lacks objects).
        // A member holding an entry written at epoch `e` took part in an
        // interval that was active at `e`, even if it never heard that it
        // went active (`Activated` lost): it counts as started there.
        let started = |n: &Notified| n.les.max(n.info.last_update.epoch);
        let les_max = self.notifies.values().filter(|n| complete(n)).map(started).max().unwrap_or(0);
        // Marked lost (`osd lost`) after the interval ended: it will never
        // answer for it, and the operator gave up what only it held.
        let lost_after = |o: OsdId, end: Epoch| self.lost.get(&o).is_some_and(|&at| at > end);
        let mut lost_passed = Vec::new();
        for iv in &self.past {
            // Its primary made `les` durable before any write: if it
            // answers with an older one, the interval never went active.
            let never_active = iv.primary.and_then(|p| self.notifies.get(&p)).is_some_and(|n| n.les < iv.start);
            let enough = iv.enough.unwrap_or(iv.acting.len() >= self.params.min_size);
            let known_active = enough && iv.primary.is_some() && !never_active;
            // A gap may hide any interval: see the module doc.
            let maybe_went_active = iv.end >= les_max && (iv.unknown || known_active);
            let answered = |o: &OsdId| self.notifies.get(o).is_some_and(complete);
            // Who may vouch: for a gap, not us (we did not see those maps).
            let vouchers: Vec<OsdId> = iv.acting.iter().copied().filter(|&o| !iv.unknown || o != self.me).collect();
            let vouched = if iv.unknown && vouchers.is_empty() {
                // A gap with nobody else known: nobody can do better than us.
                self.notifies.values().any(complete)
            } else {
                vouchers.iter().any(answered)
            };
            if maybe_went_active && !vouched {
                // Every one who could vouch is lost: nobody can do better
                // than the responders.
                if !vouchers.is_empty() && vouchers.iter().all(|&o| lost_after(o, iv.end)) {
                    let at: Vec<String> = vouchers
                        .iter()
                        .map(|o| match self.lost[o] {
                            REMOVED => format!("osd.{o} removed"),
                            at => format!("osd.{o} lost at {at}"),
                        })
                        .collect();
                    let what = if iv.unknown { "maps this OSD never saw, last known acting" } else { "acting" };
                    lost_passed.push(format!("past interval {}..={} ({what} {:?}; {})", iv.start, iv.end, iv.acting, at.join(", ")));
                    continue;
                }
                self.state = PgState::Down;
                self.blocked_by = Some(iv.clone());
                return;
            }
        }
        self.lost_passed = lost_passed;
        // Authoritative: among the complete members of the newest interval
        // that went active (highest les), the newest last_update; the
        // primary wins ties. A member with a newer entry from an older
        // interval holds a write that was never acknowledged and is rolled
        // back.
        // A member mid-backfill that went active later than every
        // complete responder saw writes they lack (its own copy of those
        // objects may be missing too): wait for a complete member of
        // that interval.
        let les_all = self.notifies.values().map(started).max().unwrap_or(0);
        let Some(auth) = self
            .notifies
            .iter()
            .filter(|(_, n)| complete(n) && started(n) == les_all)
            .max_by_key(|(o, n)| (started(n), n.info.last_update, **o == self.me))
            .map(|(o, _)| *o)
        else {
            self.state = PgState::Incomplete;
            return;
        };
        #[cfg(test)]
        if std::env::var("SEPIA_PG_TRACE").is_ok() {
            for (o, n) in &self.notifies {
                let tail: Vec<String> = n.log.iter().rev().take(6).map(|e| format!("{}.{}:{}#{}", e.version.epoch, e.version.version, e.object.name, e.reqid.tid)).collect();
                eprintln!(
                    "    choose@{} auth {auth} member {o}: lu {:?} tail {:?} lb {:?} log(newest first) {:?} missing {:?}",
                    self.epoch,
                    n.info.last_update,
                    n.info.log_tail,
                    n.last_backfill,
                    tail,
                    n.missing.keys().map(|k| k.name.clone()).collect::<Vec<_>>()
                );
            }
        }
        let auth_log: Vec<LogEntry> = self.notifies[&auth].log.clone();
        let auth_tail = self.notifies[&auth].info.log_tail;
        // A member mid-backfill acknowledged every entry it holds (only
        // once its primary had it durable). One the authoritative log
        // lacks, from the newest active interval a complete member knows
        // of or later, may be an acknowledged write whose data only absent
        // members hold: wait for them.
        // An entry was acknowledged only if every member of its interval
        // made it durable: a complete member of that interval (known from
        // the past intervals we saw) answering without it proves it was not.
        let auth_head = self.notifies[&auth].info.last_update;
        let disproved = |e: &LogEntry| {
            self.past.iter().find(|iv| !iv.unknown && iv.start <= e.version.epoch && e.version.epoch <= iv.end).is_some_and(|iv| {
                iv.acting.iter().any(|o| self.notifies.get(o).is_some_and(|m| complete(m) && !m.log.iter().any(|x| x == e)))
            })
        };
        let unknown_write = self.notifies.values().filter(|n| !complete(n)).any(|n| {
            n.log.iter().rev().take_while(|e| e.version > auth_head).any(|e| e.version.epoch >= les_all && !auth_log.iter().any(|a| a == e) && !disproved(e))
        });
        if unknown_write {
            self.state = PgState::Incomplete;
            return;
        }
        let mut plans: BTreeMap<OsdId, Plan> = BTreeMap::new();
        let own_dups = self.log.trimmed_dups();
        for (&o, n) in &self.notifies {
            let (info, log, missing) = (&n.info, &n.log, &n.missing);
            // Common point: the newest entry this member shares with auth.
            let common = log
                .iter()
                .rev()
                .find(|e| auth_log.iter().any(|a| a == *e))
                .map(|e| e.version)
                // No entry in common: what it holds up to the authoritative
                // tail may be shared history (trimmed there); after it,
                // nothing is known to be.
                .unwrap_or_else(|| log.iter().rev().map(|e| e.version).find(|v| *v <= auth_tail).unwrap_or(info.log_tail).max(info.log_tail));
            // A tail within or past the authoritative log's span that is
            // not one of its entries: this member trimmed entries of a
            // history that lost out (from an old primary, or a backfill
            // source's log). No rewind reaches them: the objects they
            // wrote are not known, and their request ids would answer
            // resends of writes that did not survive (PG simulation seeds
            // 529 and 1797). It takes the log whole.
            let tail_shared = info.log_tail <= auth_tail || auth_log.iter().any(|a| a.version == info.log_tail);
            let behind = common < auth_tail || !tail_shared;
            let divergent: Vec<&LogEntry> = log.iter().filter(|e| e.version > common).collect();
            if behind || !complete(n) {
                // The log cannot catch this member up (or an earlier
                // backfill did not finish): it takes the authoritative log
                // and a walk fills it. Its cursor stays only if nothing
                // changed at or before it since its log ends.
                let vouch = complete(n).then(|| (common, missing.keys().chain(divergent.iter().map(|e| &e.object)).cloned().collect()));
                let plan = if behind {
                    Plan {
                        rewind: None,
                        append: auth_log.clone(),
                        need: BTreeMap::new(),
                        backfill: Some(BackfillPlan { reset_log: true, tail: auth_tail, last_backfill: BackfillPos::Min, dups: own_dups.clone() }),
                        vouch,
                    }
                } else {
                    let append: Vec<LogEntry> = auth_log.iter().filter(|e| e.version > common).cloned().collect();
                    // Objects at or before its cursor that changed since its
                    // log ends are recovered from the log (like any member's);
                    // the walk goes on after the cursor.
                    let lb = &n.last_backfill;
                    let mut need: BTreeMap<ObjectId, Missing> = missing.iter().filter(|(o, _)| pos_of(o) <= *lb).map(|(o, m)| (o.clone(), *m)).collect();
                    for obj in divergent.iter().map(|e| &e.object).chain(append.iter().map(|e| &e.object)) {
                        if pos_of(obj) <= *lb {
                            let want = append.iter().rev().find(|e| e.object == *obj).map_or(EVersion::default(), |e| e.version);
                            let have = need.get(obj).map_or(EVersion::default(), |m| m.have);
                            need.insert(obj.clone(), Missing { need: want, have, intact_at: EVersion::default() });
                        }
                    }
                    let last_backfill = lb.clone();
                    Plan {
                        rewind: (!divergent.is_empty()).then_some(common),
                        append,
                        need,
                        backfill: Some(BackfillPlan { reset_log: false, tail: auth_tail, last_backfill, dups: Vec::new() }),
                        vouch,
                    }
                };
                plans.insert(o, plan);
                continue;
            }
            let append: Vec<LogEntry> = auth_log.iter().filter(|e| e.version > common).cloned().collect();
            let mut need = missing.clone();
            let at_common = |obj: &ObjectId| version_at(log, info.log_tail, common, obj);
            // Objects whose state at the common point is unknown: they
            // take the authoritative copy, whatever its version (`need`
            // zero, never dropped as already right).
            let mut unknown: BTreeSet<ObjectId> = BTreeSet::new();
            let divergent_objects: BTreeSet<&ObjectId> = divergent.iter().map(|e| &e.object).collect();
            for obj in divergent_objects {
                let target = at_common(obj);
                // What this member's copy holds now: what it still lacks
                // says so; otherwise it applied its newest (divergent) write.
                let have = match need.get(obj) {
                    Some(m) => m.have,
                    None => divergent.iter().rev().find(|e| e.object == *obj).map_or(target.unwrap_or_default(), |e| e.version),
                };
                // A copy that was missing applied none of the divergent
                // writes: it is still what it was.
                let intact_at = need.get(obj).map_or(EVersion::default(), |m| m.intact_at);
                match target {
                    Some(t) if have == t => {
                        need.remove(obj);
                    }
                    // Absent then (a divergent write created it): the
                    // member removes its copy as it rewinds (Ceph does the
                    // same); there is nothing to recover.
                    Some(t) if t == EVersion::default() => {
                        need.remove(obj);
                    }
                    Some(t) => {
                        need.insert(obj.clone(), Missing { need: t, have, intact_at });
                    }
                    // The log cannot tell the object's version at the common
                    // point, but the copy is the object as of a point no
                    // later than it, covered by this log, and the log has no
                    // write to it up to the common point: the copy is right.
                    None if intact_at != EVersion::default() && intact_at <= common && intact_at >= info.log_tail => {
                        need.remove(obj);
                    }
                    None => {
                        unknown.insert(obj.clone());
                        need.insert(obj.clone(), Missing { need: EVersion::default(), have, intact_at: EVersion::default() });
                    }
                }
            }
            for e in &append {
                // Not missing yet: no divergent write touched the copy, so
                // it is the object as of the common point.
                let (have, intact_at) = need.get(&e.object).map_or_else(|| (at_common(&e.object).unwrap_or_default(), common), |m| (m.have, m.intact_at));
                unknown.remove(&e.object);
                need.insert(e.object.clone(), Missing { need: e.version, have, intact_at });
            }
            // A copy already at the needed version lacks nothing (a zero
            // `need` asks for the authoritative copy, whatever it is).
            need.retain(|o, m| m.need != m.have || m.need == EVersion::default() || unknown.contains(o));
            let rewind = (!divergent.is_empty()).then_some(common);
            plans.insert(o, Plan { rewind, append, need, backfill: None, vouch: None });
        }
        if plans.get(&self.me).is_some_and(|p| p.backfill.is_some()) {
            // We are behind ourselves: fill our copy from the authoritative
            // member first (nobody activates meanwhile, so nothing is
            // written), then choose again.
            let p = plans.remove(&self.me).expect("checked");
            let cursor = p.backfill.as_ref().expect("checked").last_backfill.clone();
            // What the source lacks and our own log says we hold right.
            let own = &self.notifies[&self.me];
            let holds: BTreeSet<ObjectId> = self.notifies[&auth]
                .missing
                .iter()
                .filter(|(o, m)| {
                    (own.last_backfill == BackfillPos::Max || pos_of(o) <= own.last_backfill)
                        && !own.missing.contains_key(*o)
                        && own.log.iter().rev().find(|e| e.object == **o).is_some_and(|e| e.version == m.need)
                })
                .map(|(o, _)| o.clone())
                .collect();
            self.activate_local(p, out);
            let mut w = Walk::new(auth, self.me, cursor);
            w.target_holds = holds;
            self.walks.insert(self.me, w);
            self.walk_request(self.me, out);
            return;
        }
        self.activating.clear();
        for (o, p) in plans {
            if o == self.me {
                self.activate_local(p, out);
            } else {
                self.activating.insert(o);
                if let Some(b) = &p.backfill {
                    let mut w = Walk::new(self.me, o, b.last_backfill.clone());
                    if let Some((upto, unvouched)) = &p.vouch {
                        w.vouched_upto = Some(*upto);
                        w.unvouched = unvouched.clone();
                    }
                    self.walks.insert(o, w);
                }
                out.push(Effect::Send {
                    to: o,
                    msg: PeerMsg::Activate {
                        epoch: self.epoch,
                        rewind_to: p.rewind,
                        append: p.append,
                        missing: p.need.iter().map(|(k, v)| (k.clone(), *v)).collect(),
                        backfill: p.backfill,
                    },
                });
                self.peer_missing.insert(o, p.need);
            }
        }
        self.maybe_active(out);
    }

    fn activate_local(&mut self, p: Plan, out: &mut Vec<Effect<W>>) {
        let Plan { mut rewind, append, need, backfill, .. } = p;
        let mut appended = Vec::new();
        let mut created: Vec<ObjectId> = Vec::new();
        match &backfill {
            Some(b) if b.reset_log => {
                // Our log does not reach the authoritative one: take it
                // whole (every old log key goes).
                self.log.replace(b.tail, append, b.dups.clone());
                rewind = Some(EVersion::default());
                appended = self.log.entries().cloned().collect();
            }
            _ => {
                if let Some(v) = rewind {
                    // Objects only divergent writes created go (the plan
                    // left them out of what we lack: see `peer`'s plans).
                    let divergent: BTreeSet<&ObjectId> = self.log.entries().filter(|e| e.version > v).map(|e| &e.object).collect();
                    let entries: Vec<LogEntry> = self.log.entries().cloned().collect();
                    created = divergent
                        .into_iter()
                        .filter(|o| !need.contains_key(*o) && version_at(&entries, self.log.tail(), v, o) == Some(EVersion::default()))
                        .cloned()
                        .collect();
                    self.log.rewind_to(v);
                }
                for e in append {
                    if e.version > self.log.head() {
                        self.log.append(e.clone());
                        appended.push(e);
                    }
                }
            }
        }
        if let Some(b) = backfill {
            self.last_backfill = b.last_backfill;
        }
        self.missing = need;
        self.info.last_update = self.log.head();
        self.info.log_tail = self.log.tail();
        self.info.last_complete = if self.missing.is_empty() { self.info.last_update } else { self.info.last_complete.min(self.info.last_update) };
        self.next_version = self.next_version.max(self.log.head().version);
        // Removed before the rewound log is durable (one ordered queue): a
        // crash in between leaves the divergent entry to say so again.
        for object in created {
            self.recovered(&object, EVersion::default());
            let entry = LogEntry { version: EVersion::default(), reqid: ReqId { client: 0, tid: 0 }, object, op: LogOp::Delete, prior_version: None };
            out.push(Effect::Apply { entry, txn: Txn::Replace(None), trim: None });
        }
        out.push(self.durable_effect(rewind, appended));
    }

    fn maybe_active(&mut self, out: &mut Vec<Effect<W>>) {
        if self.state != PgState::Peering || !self.activating.is_empty() || !self.is_primary() {
            return;
        }
        self.state = PgState::Active;
        self.les = self.epoch;
        self.past.clear();
        out.push(self.durable_effect(None, Vec::new()));
        if !self.lost_passed.is_empty() {
            let passed = std::mem::take(&mut self.lost_passed).join("; ");
            out.push(Effect::Log { message: format!("active without waiting for lost OSDs: {passed}; writes only they held are gone") });
        }
        for &o in &self.acting {
            if o != self.me {
                out.push(Effect::Send { to: o, msg: PeerMsg::Activated { epoch: self.epoch } });
            }
        }
        self.start_recovery(out);
        self.run_waiting(out);
    }

    /// Starts pulls (for the primary's own missing objects) and reads for
    /// pushes (for the others'), a bounded number at a time, and the
    /// backfill walks once the primary lacks nothing itself.
    fn start_recovery(&mut self, out: &mut Vec<Effect<W>>) {
        const RECOVERY_OPS_MAX: usize = 16;
        let own: Vec<ObjectId> = self.missing.keys().filter(|o| !self.pulling.contains(*o)).take(RECOVERY_OPS_MAX).cloned().collect();
        // Bounded by the missing set: recovered objects lose their turns.
        let missing = &self.missing;
        self.pull_turns.retain(|o, _| missing.contains_key(o));
        for obj in own {
            // Any member that is not missing it can serve it. As a last
            // resort, in turns, and taken only at the needed version: a
            // backfill target's copy after its cursor, the copy of a member
            // whose record says it lacks the object, and our own (a record
            // can lag its copy, a removal's tombstone names its version;
            // without these the pull went to the only other candidate
            // forever, PG simulation seed 2336).
            let need = self.missing[&obj].need;
            let candidates = || self.acting.iter().copied().filter(|&o| o != self.me && self.peer_missing.get(&o).is_some_and(|m| !m.contains_key(&obj)));
            let source = candidates().find(|o| self.walks.get(o).is_none_or(|w| w.vouches(&obj, need))).or_else(|| {
                let mut last: Vec<OsdId> = candidates().collect();
                if need != EVersion::default() {
                    last.extend(self.acting.iter().copied().filter(|&o| o != self.me && self.peer_missing.get(&o).is_some_and(|m| m.contains_key(&obj))));
                    last.push(self.me);
                }
                let turn = self.pull_turns.get(&obj).copied().unwrap_or(0);
                (!last.is_empty()).then(|| last[turn % last.len()])
            });
            match source {
                Some(src) if src != self.me => {
                    self.pulling.insert(obj.clone());
                    out.push(Effect::Send { to: src, msg: PeerMsg::Pull { epoch: self.epoch, object: obj } });
                }
                Some(_) => {
                    // `content` checks whether our copy is the needed one.
                    self.pulling.insert(obj.clone());
                    out.push(Effect::Read { object: obj });
                }
                None => {}
            }
        }
        let mut wanted: BTreeSet<ObjectId> = BTreeSet::new();
        for m in self.peer_missing.values() {
            wanted.extend(m.keys().filter(|o| !self.missing.contains_key(*o) && !self.pushing.contains_key(*o)).cloned());
        }
        for obj in wanted.into_iter().take(RECOVERY_OPS_MAX) {
            let targets: BTreeSet<OsdId> = self.peer_missing.iter().filter(|(_, m)| m.contains_key(&obj)).map(|(o, _)| *o).collect();
            self.pushing.insert(obj.clone(), targets);
            out.push(Effect::Read { object: obj });
        }
        if self.state == PgState::Active {
            let idle: Vec<OsdId> = self.walks.iter().filter(|(_, w)| !w.requested).map(|(t, _)| *t).collect();
            for t in idle {
                self.walk_request(t, out);
            }
        }
    }

    /// The shard read an object for recovery or backfill; `version` is
    /// the version of its last write as the store recorded it (zero if
    /// unknown).
    pub fn content(&mut self, object: ObjectId, content: Option<ObjectContent>, version: EVersion, out: &mut Vec<Effect<W>>) {
        if self.is_primary() && self.pulling.contains(&object) {
            if self.missing.get(&object).is_some_and(|m| m.need == version && version != EVersion::default()) {
                // Our own copy is the one needed after all.
                self.missing.remove(&object);
                if self.missing.is_empty() {
                    self.info.last_complete = self.info.last_update;
                }
                out.push(self.durable_effect(None, Vec::new()));
                self.pulling.remove(&object);
                self.start_recovery(out);
                self.run_waiting(out);
                return;
            }
            if self.missing.contains_key(&object) && !self.pushing.contains_key(&object) {
                // Not ours either: the next source in turn, on the next tick.
                self.pulling.remove(&object);
                *self.pull_turns.entry(object).or_default() += 1;
                return;
            }
        }
        if let Some(targets) = self.pushing.get(&object) {
            // Without a record, a copy is named by our log (an absent one
            // stays unnamed: only a removal's own record says which).
            let version = if version != EVersion::default() || content.is_none() {
                version
            } else {
                self.log.objects_since(EVersion::default()).get(&object).map_or(self.info.last_update, |x| x.0)
            };
            for &t in targets {
                out.push(Effect::Send { to: t, msg: PeerMsg::Push { epoch: self.epoch, object: object.clone(), version, content: content.clone() } });
            }
        }
        if !self.is_primary() {
            return;
        }
        for w in self.walks.values_mut() {
            if w.source != self.me {
                continue;
            }
            if let Step::Move { in_flight, .. } = &mut w.step {
                if let Some(slot) = in_flight.get_mut(&object) {
                    if slot.1.is_none() {
                        slot.1 = Some(content.as_ref().map_or(0, |c| c.data.len()));
                        out.push(Effect::Send {
                            to: w.target,
                            msg: PeerMsg::Push { epoch: self.epoch, object: object.clone(), version, content: content.clone() },
                        });
                    }
                }
            }
        }
    }

    /// Asks for what the walk filling `target` waits on (and resends the
    /// moves in flight that are not marked sent).
    fn walk_request(&mut self, target: OsdId, out: &mut Vec<Effect<W>>) {
        let (me, epoch, scan_max) = (self.me, self.epoch, self.params.backfill_scan_max);
        // The primary's own copy must be whole before it is a source.
        let own_missing = !self.missing.is_empty();
        if self.walks.get(&target).is_some_and(|w| matches!(w.step, Step::Move { .. })) {
            self.walks.get_mut(&target).expect("checked").requested = true;
            self.walk_launch(target, out);
            return;
        }
        let finish = (self.log.tail(), self.log.entries().cloned().collect::<Vec<_>>(), self.log.trimmed_dups());
        let Some(w) = self.walks.get_mut(&target) else { return };
        let list = |who: OsdId, tag: ListTag, after: BackfillPos, until: BackfillPos| {
            if who == me {
                Effect::List { tag, after, until, max: scan_max }
            } else {
                Effect::Send { to: who, msg: PeerMsg::Scan { epoch, after, until, max: scan_max } }
            }
        };
        match &w.step {
            Step::ListSource => {
                if w.source == me && own_missing {
                    return;
                }
                w.dirty.clear();
                w.requested = true;
                out.push(list(w.source, ListTag::Walk(target), w.cursor.clone(), BackfillPos::Max));
            }
            Step::ListTarget { end, .. } => {
                w.requested = true;
                out.push(list(w.target, ListTag::Walk(target), w.cursor.clone(), end.clone()));
            }
            Step::Move { .. } => unreachable!("handled above"),
            Step::Finish => {
                w.requested = true;
                let (tail, log, dups) = finish;
                // After every replica message held for it: the log it
                // carries must not overtake the writes it lists.
                let msg = PeerMsg::BackfillDone { epoch, tail, log, dups };
                match self.held.get_mut(&target) {
                    Some(q) if !q.is_empty() => q.push_back((EVersion::default(), msg, true)),
                    _ => out.push(Effect::Send { to: target, msg }),
                }
            }
        }
    }

    /// Starts moves of the current batch within the bounds; finishes the
    /// batch when nothing is left.
    fn walk_launch(&mut self, target: OsdId, out: &mut Vec<Effect<W>>) {
        let (me, epoch) = (self.me, self.epoch);
        let (pushes_max, bytes_max) = (self.params.backfill_pushes_max, self.params.backfill_bytes_max);
        let Some(w) = self.walks.get_mut(&target) else { return };
        let source = w.source;
        let Step::Move { queue, in_flight, .. } = &mut w.step else { return };
        // Resend what is in flight and not sent (after a retry).
        for (obj, (has, sent)) in in_flight.iter_mut() {
            if sent.is_some() {
                continue;
            }
            if source == me {
                if *has {
                    out.push(Effect::Read { object: obj.clone() });
                } else {
                    *sent = Some(0);
                    out.push(Effect::Send { to: target, msg: PeerMsg::Push { epoch, object: obj.clone(), version: EVersion::default(), content: None } });
                }
            } else {
                *sent = Some(0);
                out.push(Effect::Send { to: source, msg: PeerMsg::Pull { epoch, object: obj.clone() } });
            }
        }
        let mut removed = Vec::new();
        loop {
            let bytes: usize = in_flight.values().filter_map(|v| v.1).sum();
            if in_flight.len() >= pushes_max || bytes >= bytes_max {
                break;
            }
            let Some((obj, has)) = queue.pop_front() else { break };
            if source == me {
                if has {
                    in_flight.insert(obj.clone(), (true, None));
                    out.push(Effect::Read { object: obj });
                } else {
                    in_flight.insert(obj.clone(), (false, Some(0)));
                    out.push(Effect::Send { to: target, msg: PeerMsg::Push { epoch, object: obj, version: EVersion::default(), content: None } });
                }
            } else if has {
                in_flight.insert(obj.clone(), (true, Some(0)));
                out.push(Effect::Send { to: source, msg: PeerMsg::Pull { epoch, object: obj } });
            } else {
                // We are the target and the source lacks it: remove ours.
                removed.push(obj);
            }
        }
        for obj in removed {
            self.recovered(&obj, EVersion::default());
            let entry = LogEntry { version: EVersion::default(), reqid: ReqId { client: 0, tid: 0 }, object: obj, op: LogOp::Delete, prior_version: None };
            out.push(Effect::Apply { entry, txn: Txn::Replace(None), trim: self.log.take_trim() });
        }
        let w = self.walks.get_mut(&target).expect("present");
        if let Step::Move { queue, in_flight, .. } = &w.step {
            if queue.is_empty() && in_flight.is_empty() {
                self.walk_batch_done(target, out);
            }
        }
    }

    /// A listing for the walk filling `target`, from `from`.
    #[allow(clippy::too_many_arguments)]
    fn walk_listed(&mut self, target: OsdId, from: OsdId, after: BackfillPos, until: BackfillPos, objects: Vec<Listed>, end: BackfillPos, dups: Vec<(ReqId, EVersion)>, out: &mut Vec<Effect<W>>) {
        // A source other than us may itself lack objects (log recovery
        // had not finished there): those are not moved or removed, we
        // take them as missing when the walk ends.
        let source_missing: BTreeMap<ObjectId, EVersion> = match self.walks.get(&target) {
            Some(w) if w.source != self.me => self.notifies.get(&w.source).map(|n| n.missing.iter().map(|(o, m)| (o.clone(), m.need)).collect()).unwrap_or_default(),
            _ => BTreeMap::new(),
        };
        let Some(w) = self.walks.get_mut(&target) else { return };
        if w.cursor != after || end <= after {
            return;
        }
        match &mut w.step {
            Step::ListSource if from == w.source && until == BackfillPos::Max => {
                if end == BackfillPos::Max {
                    w.source_dups = dups;
                }
                w.step = Step::ListTarget { source: objects, end };
            }
            Step::ListTarget { source, end: batch_end } if from == w.target && until == *batch_end => {
                // The target may have listed less (more objects there):
                // the batch ends where both listings reach.
                let end = end.min(batch_end.clone());
                let mut queue = backfill::diff(source, &objects, &w.dirty, &w.cursor, &end);
                queue.retain(|(o, _)| !source_missing.contains_key(o));
                // Of those, what we (the target) do not hold at the needed
                // version we lack from now on: the cursor passes them.
                let held: BTreeMap<&ObjectId, EVersion> = objects.iter().map(|(o, v)| (o, *v)).collect();
                let lacking: Vec<(ObjectId, EVersion)> = source_missing
                    .iter()
                    .filter(|(o, need)| {
                        let p = pos_of(o);
                        p > w.cursor && p <= end && !(held.get(o) == Some(*need) && **need != EVersion::default()) && !w.target_holds.contains(*o)
                    })
                    .map(|(o, need)| (o.clone(), *need))
                    .collect();
                w.step = Step::Move { end, queue, in_flight: BTreeMap::new() };
                w.idle_ticks = 0;
                w.requested = false;
                for (o, need) in lacking {
                    self.missing.insert(o, Missing { need, have: EVersion::default(), intact_at: EVersion::default() });
                }
                self.walk_request(target, out);
                return;
            }
            _ => return,
        }
        w.idle_ticks = 0;
        w.requested = false;
        self.walk_request(target, out);
    }

    /// Every move of the batch is acknowledged: the cursor advances.
    fn walk_batch_done(&mut self, target: OsdId, out: &mut Vec<Effect<W>>) {
        let Some(w) = self.walks.get_mut(&target) else { return };
        let Step::Move { end, .. } = &w.step else { return };
        let end = end.clone();
        w.cursor = end.clone();
        w.idle_ticks = 0;
        w.requested = false;
        w.step = if end == BackfillPos::Max { Step::Finish } else { Step::ListSource };
        if target == self.me {
            self.last_backfill = end.clone();
            if end == BackfillPos::Max {
                self.finish_self_backfill(out);
                return;
            }
            out.push(self.durable_effect(None, Vec::new()));
        } else if end != BackfillPos::Max {
            // (The end is `BackfillDone`, with the log and request ids.)
            out.push(Effect::Send { to: target, msg: PeerMsg::BackfillProgress { epoch: self.epoch, pos: end } });
        }
        self.walk_request(target, out);
        self.run_waiting(out);
    }

    /// Our own walk ended: take the source's log and request ids, then
    /// peer again as a complete member.
    fn finish_self_backfill(&mut self, out: &mut Vec<Effect<W>>) {
        let Some(w) = self.walks.remove(&self.me) else { return };
        let Some(n) = self.notifies.get(&w.source) else { return };
        let (tail, log, last_complete) = (n.info.log_tail, n.log.clone(), n.info.last_complete);
        // `missing` holds what the source lacked and we did not hold
        // either (recovered once active).
        self.log.replace(tail, log, w.source_dups);
        self.last_backfill = BackfillPos::Max;
        self.info.last_update = self.log.head();
        self.info.log_tail = self.log.tail();
        self.info.last_complete = if self.missing.is_empty() { self.info.last_update } else { last_complete.min(self.info.last_update) };
        self.next_version = self.next_version.max(self.log.head().version);
        let appended = self.log.entries().cloned().collect();
        out.push(self.durable_effect(Some(EVersion::default()), appended));
        let own = self.own_notify();
        self.notifies.insert(self.me, own);
        self.try_choose(out);
    }

    /// The shard listed objects for `tag` (see [`Effect::List`]).
    pub fn listed(&mut self, tag: ListTag, after: BackfillPos, until: BackfillPos, objects: Vec<Listed>, end: BackfillPos, out: &mut Vec<Effect<W>>) {
        match tag {
            ListTag::Peer(p) => {
                if self.primary == Some(p) {
                    let dups = if end == BackfillPos::Max { self.log.trimmed_dups() } else { Vec::new() };
                    out.push(Effect::Send { to: p, msg: PeerMsg::ScanReply { epoch: self.epoch, after, until, end, objects, dups } });
                }
            }
            ListTag::Walk(t) => {
                if self.is_primary() {
                    self.walk_listed(t, self.me, after, until, objects, end, Vec::new(), out);
                }
            }
        }
    }

    /// A client write (the shard checked the request, the PG is ours and
    /// active, and its map epoch is current).
    pub fn client_write(&mut self, w: ClientWrite<W>, out: &mut Vec<Effect<W>>) {
        if !self.is_primary() || self.state == PgState::Stray {
            out.push(Effect::Reply { client: w.client, reqid: w.reqid, result: -11, version: EVersion::default() });
            return;
        }
        let dup = self.log.dup(&w.reqid);
        if let Some(v) = dup {
            if self.in_flight.contains_key(&v) {
                // A resend of a write still in flight: the first answers.
                return;
            }
            if self.state == PgState::Active && !self.is_missing_anywhere(&w.object) {
                // Ordered before and now durable everywhere.
                out.push(Effect::Reply { client: w.client, reqid: w.reqid, result: 0, version: v });
                return;
            }
        }
        // A write never overtakes an earlier one to the same object that
        // still waits: one client's writes to an object apply in the order
        // sent (Ceph's guarantee). Without this, a write arriving just
        // after its object's recovery went ahead of one queued during it
        // (PG simulation seed 9731, with reads answered after their batch).
        let behind_waiting = self.waiting.iter().any(|x| x.object == w.object);
        if self.state != PgState::Active || self.is_missing_anywhere(&w.object) || dup.is_some() || behind_waiting {
            if self.waiting.len() >= self.params.waiting_ops_max {
                out.push(Effect::Reply { client: w.client, reqid: w.reqid, result: -11, version: EVersion::default() });
            } else {
                self.waiting.push_back(w);
            }
            return;
        }
        self.next_version += 1;
        let version = EVersion { epoch: self.epoch, version: self.next_version };
        // Writes ordered since the store's answer are in the log; a
        // recovery since then updated the waiting write (`recovered`).
        let prior_version = self.log.newest_of(&w.object).map_or(w.stored_version, |v| v.max(w.stored_version));
        let entry = LogEntry { version, reqid: w.reqid, object: w.object.clone(), op: if w.delete { LogOp::Delete } else { LogOp::Modify }, prior_version: Some(prior_version) };
        self.log.append(entry.clone());
        self.info.last_update = version;
        self.info.log_tail = self.log.tail();
        if self.missing.is_empty() {
            self.info.last_complete = version;
        }
        self.trim_clean();
        let trim_to = self.log.tail();
        let mut waiting: BTreeSet<OsdId> = self.acting.iter().copied().collect();
        waiting.insert(self.me);
        for &o in &self.acting {
            if o == self.me {
                continue;
            }
            let rep = PeerMsg::RepOp { epoch: self.epoch, entry: entry.clone(), txn: Txn::Write(w.write.clone()), trim_to };
            match self.walks.get_mut(&o) {
                // A backfill target gets a write once it is durable here
                // (so it never holds an entry its primary could lose: an
                // incomplete member's extra entries are then evidence of
                // acknowledged writes, see `try_choose`), in order.
                Some(walk) => {
                    let msg = if walk.covers(&w.object) {
                        rep
                    } else {
                        // After the target's cursor: the walk copies the
                        // object; the target only logs the write (and
                        // acknowledges that).
                        walk.dirty.insert(w.object.clone());
                        PeerMsg::RepLog { epoch: self.epoch, entry: entry.clone(), trim_to }
                    };
                    self.held.entry(o).or_default().push_back((version, msg, false));
                }
                // Behind a held entry (the walk just ended), in order.
                _ if self.held.get(&o).is_some_and(|q| !q.is_empty()) => self.held.entry(o).or_default().push_back((version, rep, true)),
                _ => out.push(Effect::Send { to: o, msg: rep }),
            }
        }
        out.push(Effect::Apply { entry, txn: Txn::Write(w.write), trim: self.log.take_trim() });
        self.in_flight.insert(version, Gather { client: w.client, reqid: w.reqid, waiting });
    }

    /// True when a write to `object` must wait: it is missing somewhere,
    /// in a backfill batch being moved, or not backfilled here yet.
    fn is_missing_anywhere(&self, object: &ObjectId) -> bool {
        self.missing.contains_key(object)
            || self.peer_missing.values().any(|m| m.contains_key(object))
            || self.walks.values().any(|w| w.blocks(object))
            || !self.holds(object)
            || self.data_holders(object) < self.params.min_size
    }

    /// Acting members that would hold a write's data for `object` (a
    /// backfill target gets only the entry for objects after its cursor).
    /// A write is acknowledged only with `min_size` copies of its data, so
    /// no single copy that a later rolled-back write overwrites is the
    /// only one.
    fn data_holders(&self, object: &ObjectId) -> usize {
        if self.walks.is_empty() {
            return self.acting.len();
        }
        self.acting.iter().filter(|o| self.walks.get(o).is_none_or(|w| w.covers(object))).count()
    }

    /// Our copy of `object` is replaced by a recovered one at `version`.
    /// Writes to it that wait asked the store before: their entries' prior
    /// version is this one (the shell hands the replace to the store only
    /// after this step, so a write let go in it would not see it there).
    fn recovered(&mut self, object: &ObjectId, version: EVersion) {
        for w in self.waiting.iter_mut().filter(|w| w.object == *object) {
            w.stored_version = version;
        }
    }

    fn run_waiting(&mut self, out: &mut Vec<Effect<W>>) {
        if self.state != PgState::Active {
            return;
        }
        let queued: Vec<ClientWrite<W>> = self.waiting.drain(..).collect();
        for w in queued {
            self.client_write(w, out);
        }
    }

    /// The local store made the apply of `version` durable. Only a write's
    /// commit (`Txn::Write`, or `Txn::LogOnly` on a backfill target)
    /// acknowledges anything: a recovery push may
    /// carry the same version as a write in flight, and its commit must not
    /// pass for that write's.
    pub fn committed(&mut self, version: EVersion, write: bool, out: &mut Vec<Effect<W>>) {
        if !write {
            return;
        }
        if self.is_primary() {
            for (&o, q) in self.held.iter_mut() {
                for item in q.iter_mut().filter(|(v, _, _)| *v == version) {
                    item.2 = true;
                }
                while q.front().is_some_and(|(_, _, ready)| *ready) {
                    let (_, msg, _) = q.pop_front().expect("checked");
                    out.push(Effect::Send { to: o, msg });
                }
            }
            self.ack_from(self.me, version, out);
        } else if let Some(p) = self.primary {
            out.push(Effect::Send { to: p, msg: PeerMsg::RepOpAck { epoch: self.epoch, version } });
        }
    }

    fn ack_from(&mut self, from: OsdId, version: EVersion, out: &mut Vec<Effect<W>>) {
        let done = match self.in_flight.get_mut(&version) {
            Some(g) => {
                g.waiting.remove(&from);
                g.waiting.is_empty()
            }
            None => false,
        };
        if done {
            let g = self.in_flight.remove(&version).expect("present");
            out.push(Effect::Reply { client: g.client, reqid: g.reqid, result: 0, version });
        }
    }

    /// A message from a peer OSD.
    pub fn peer(&mut self, from: OsdId, msg: PeerMsg<W>, out: &mut Vec<Effect<W>>) {
        // Messages from another interval are stale (or from the future: the
        // shard must have applied that map first; it feeds maps before peers).
        let epoch = msg.epoch();
        if epoch < self.interval_start || epoch > self.epoch {
            return;
        }
        match msg {
            PeerMsg::Query { epoch } => {
                if self.primary == Some(from) {
                    // Report only what is durable: the flush goes first.
                    out.push(self.durable_effect(None, Vec::new()));
                    let n = self.own_notify();
                    out.push(Effect::Send {
                        to: from,
                        msg: PeerMsg::Notify { epoch, info: n.info, les: n.les, log: n.log, missing: n.missing.into_iter().collect(), last_backfill: n.last_backfill },
                    });
                }
            }
            PeerMsg::Notify { info, les, log, missing, last_backfill, .. } => {
                if self.is_primary() && self.state == PgState::Peering && self.acting.contains(&from) {
                    self.notifies.insert(from, Notified { info, les, log, missing: missing.into_iter().collect(), last_backfill });
                    self.try_choose(out);
                }
            }
            PeerMsg::Activate { epoch, rewind_to, append, missing, backfill } => {
                if self.primary == Some(from) {
                    let need: BTreeMap<ObjectId, Missing> = missing.into_iter().collect();
                    self.activate_local(Plan { rewind: rewind_to, append, need, backfill, vouch: None }, out);
                    // `les` waits for `Activated`: this interval is not
                    // active until every member is, and a member that
                    // claimed otherwise could win a later authority choice
                    // with a log that lacks acknowledged writes.
                    self.state = PgState::Active;
                    out.push(Effect::Send { to: from, msg: PeerMsg::ActivateAck { epoch } });
                }
            }
            PeerMsg::Activated { epoch } => {
                if self.primary == Some(from) && self.les < epoch {
                    self.les = epoch;
                    self.past.clear();
                    out.push(self.durable_effect(None, Vec::new()));
                }
            }
            PeerMsg::ActivateAck { .. } => {
                if self.activating.remove(&from) {
                    self.maybe_active(out);
                }
            }
            PeerMsg::RepOp { entry, txn, trim_to, .. } => self.replicated(from, entry, txn, trim_to, out),
            PeerMsg::RepLog { entry, trim_to, .. } => self.replicated(from, entry, Txn::LogOnly, trim_to, out),
            PeerMsg::RepOpAck { version, .. } => {
                if self.is_primary() {
                    self.ack_from(from, version, out);
                }
            }
            PeerMsg::Pull { object, .. } => {
                // The primary wants our copy: read it and push it back.
                if self.primary == Some(from) {
                    self.pushing.insert(object.clone(), [from].into());
                    out.push(Effect::Read { object });
                }
            }
            PeerMsg::Push { epoch, object, version, content } => {
                if self.primary == Some(from) || self.is_primary() {
                    // Ours to take when log recovery said we lack it, or
                    // when it lies after our backfill cursor (the walk's
                    // batch; a late duplicate of a finished batch is not).
                    let for_walk = !self.holds(&object);
                    // A backfill target's copy after its cursor (pulled as
                    // a last resort) is taken only at the needed version.
                    // (Its absence is right when the needed entry is a delete.)
                    let wrong = self.missing.get(&object).is_some_and(|m| {
                        let untrusted = self.walks.get(&from).is_some_and(|w| !w.vouches(&object, m.need))
                            || self.peer_missing.get(&from).is_some_and(|pm| pm.contains_key(&object));
                        let deleted = content.is_none() && self.log.entries().any(|e| e.version == m.need && e.op == LogOp::Delete);
                        untrusted && !deleted && (version == EVersion::default() || version != m.need)
                    });
                    if wrong {
                        *self.pull_turns.entry(object.clone()).or_default() += 1;
                    }
                    if (!wrong && self.missing.remove(&object).is_some()) || for_walk {
                        let op = if content.is_some() { LogOp::Modify } else { LogOp::Delete };
                        self.recovered(&object, version);
                        let entry = LogEntry { version, reqid: ReqId { client: 0, tid: 0 }, object: object.clone(), op, prior_version: None };
                        out.push(Effect::Apply { entry, txn: Txn::Replace(content), trim: self.log.take_trim() });
                        if self.missing.is_empty() {
                            self.info.last_complete = self.info.last_update;
                        }
                        if !for_walk {
                            out.push(self.durable_effect(None, Vec::new()));
                        }
                    }
                    if self.is_primary() {
                        self.pulling.remove(&object);
                        self.walk_moved(self.me, &object, out);
                        self.start_recovery(out);
                        self.run_waiting(out);
                    } else {
                        out.push(Effect::Send { to: from, msg: PeerMsg::PushAck { epoch, object } });
                    }
                }
            }
            PeerMsg::PushAck { object, .. } => {
                if let Some(m) = self.peer_missing.get_mut(&from) {
                    m.remove(&object);
                }
                if let Some(t) = self.pushing.get_mut(&object) {
                    t.remove(&from);
                    if t.is_empty() {
                        self.pushing.remove(&object);
                    }
                }
                self.walk_moved(from, &object, out);
                self.start_recovery(out);
                self.run_waiting(out);
            }
            PeerMsg::Scan { after, until, max, .. } => {
                if self.primary == Some(from) {
                    let max = max.clamp(1, self.params.backfill_scan_max);
                    out.push(Effect::List { tag: ListTag::Peer(from), after, until, max });
                }
            }
            PeerMsg::ScanReply { after, until, end, objects, dups, .. } => {
                if self.is_primary() {
                    // From the target we fill, or from our own source.
                    let target = if self.walks.contains_key(&from) { from } else { self.me };
                    if self.walks.get(&target).is_some_and(|w| w.source == from || w.target == from) {
                        self.walk_listed(target, from, after, until, objects, end, dups, out);
                    }
                }
            }
            PeerMsg::BackfillProgress { pos, .. } => {
                // Only `BackfillDone` completes a copy (it brings the log).
                if self.primary == Some(from) && pos > self.last_backfill && pos != BackfillPos::Max {
                    self.last_backfill = pos;
                    out.push(self.durable_effect(None, Vec::new()));
                }
            }
            PeerMsg::BackfillDone { epoch, tail, log, dups } => {
                if self.primary == Some(from) {
                    // A duplicate (we are complete) must not take an older
                    // log back.
                    if self.last_backfill != BackfillPos::Max {
                        self.log.replace(tail, log, dups);
                        self.last_backfill = BackfillPos::Max;
                        self.missing.clear();
                        self.info.last_update = self.log.head();
                        self.info.log_tail = self.log.tail();
                        self.info.last_complete = self.info.last_update;
                        self.next_version = self.next_version.max(self.log.head().version);
                        let appended = self.log.entries().cloned().collect();
                        out.push(self.durable_effect(Some(EVersion::default()), appended));
                    }
                    out.push(Effect::Send { to: from, msg: PeerMsg::BackfillDoneAck { epoch } });
                }
            }
            PeerMsg::BackfillDoneAck { .. } => {
                if self.walks.get(&from).is_some_and(|w| matches!(w.step, Step::Finish)) {
                    self.walks.remove(&from);
                    self.run_waiting(out);
                }
            }
        }
    }

    /// A replica write from the primary (`Txn::LogOnly`: only its entry).
    fn replicated(&mut self, from: OsdId, entry: LogEntry, txn: Txn<W>, trim_to: EVersion, out: &mut Vec<Effect<W>>) {
        if self.primary == Some(from) && self.state == PgState::Active && entry.version > self.log.head() {
            self.log.append(entry.clone());
            // The primary trimmed only what every member applied;
            // a member still missing objects keeps its log.
            if self.missing.is_empty() && trim_to > self.log.tail() {
                self.log.trim_to(trim_to);
                self.log.mark_clean_trim();
            }
            self.info.last_update = entry.version;
            self.info.log_tail = self.log.tail();
            if self.missing.is_empty() {
                self.info.last_complete = entry.version;
            }
            self.next_version = self.next_version.max(entry.version.version);
            out.push(Effect::Apply { entry, txn, trim: self.log.take_trim() });
        }
    }

    /// `object` reached `target` (a push acknowledged, or a pull arrived
    /// here): the walk filling it moves on.
    fn walk_moved(&mut self, target: OsdId, object: &ObjectId, out: &mut Vec<Effect<W>>) {
        let Some(w) = self.walks.get_mut(&target) else { return };
        if let Step::Move { in_flight, .. } = &mut w.step {
            if in_flight.remove(object).is_some() {
                w.idle_ticks = 0;
                self.walk_launch(target, out);
            }
        }
    }

    /// Recovery state, for diagnostics.
    pub fn recovery_debug(&self) -> String {
        format!(
            "epoch {} acting {:?} primary {:?} state {:?} info {:?} last_backfill {:?} missing {:?} peer_missing {:?} pulling {:?} pushing {:?} walks {:?}",
            self.epoch,
            self.acting,
            self.primary,
            self.state,
            self.info,
            self.last_backfill,
            self.missing.keys().collect::<Vec<_>>(),
            self.peer_missing,
            self.pulling,
            self.pushing,
            self.walks.values().map(|w| (w.source, w.target, w.cursor.clone())).collect::<Vec<_>>()
        )
    }

    /// Our own invariants; the simulator calls this after every step.
    pub fn invariants(&self) {
        self.log.invariants();
        assert!(self.past.len() <= self.params.past_intervals_max, "past intervals are bounded");
        for w in self.past.windows(2) {
            assert!(w[0].end < w[1].start, "past intervals are ordered and disjoint");
        }
        for iv in &self.past {
            assert!(iv.start <= iv.end, "a past interval holds an epoch");
        }
        if let Some(last) = self.past.last() {
            assert!(last.end < self.interval_start, "past intervals end before the current one");
        }
        assert!(self.epoch == 0 || self.interval_start <= self.epoch, "the current interval started by now");
        if !(self.is_primary() && self.state == PgState::Active) {
            assert!(self.in_flight.is_empty(), "only an active primary has writes in flight");
        }
        assert!(self.info.last_update >= self.info.last_complete || self.info.last_complete == EVersion::default());
        assert!(self.waiting.len() <= self.params.waiting_ops_max);
        if !self.walks.is_empty() {
            assert!(self.is_primary(), "only a primary runs backfill walks");
        }
        if self.is_primary() && self.state == PgState::Active {
            assert_eq!(self.last_backfill, BackfillPos::Max, "an active primary is complete");
        }
        for (t, w) in &self.walks {
            assert_eq!(w.target, *t);
            assert!(w.source == self.me || w.target == self.me, "a walk moves objects to or from the primary");
            if w.target == self.me {
                assert!(self.state != PgState::Active, "a primary that fills itself is not active");
            }
            if let Step::Move { end, in_flight, .. } = &w.step {
                assert!(*end > w.cursor, "a batch moves forward");
                assert!(in_flight.len() <= self.params.backfill_pushes_max.max(1));
                assert!(in_flight.keys().all(|o| pos_of(o) > w.cursor && pos_of(o) <= *end), "moves lie in their batch");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> PgParams {
        PgParams { size: 2, min_size: 1, ..PgParams::default() }
    }

    /// osd.1 restarted knowing it was in [0, 1] (active since epoch 5)
    /// until epoch 10.
    fn restarted(last_known: Vec<OsdId>) -> Pg<u64> {
        let history = PgHistory { epoch: 10, current: Some(Interval { start: 5, end: 10, acting: last_known, primary: Some(0), unknown: false, enough: Some(true) }), past: Vec::new() };
        Pg::new(PgId { pool: 1, seed: 0 }, 1, params(), PgDurable { les: 5, history, ..PgDurable::default() })
    }

    #[test]
    fn walking_on_without_a_gap_goes_active() {
        let mut pg = restarted(vec![0, 1]);
        let mut out = Vec::new();
        pg.map_change(11, vec![1], Some(1), &mut out);
        pg.invariants();
        assert_eq!(pg.state(), PgState::Active);
        assert!(out.iter().any(|e| matches!(e, Effect::Persist { history, .. } if history.epoch == 11)), "the new interval is persisted");
    }

    #[test]
    fn a_gap_waits_for_another_member_last_known() {
        let mut pg = restarted(vec![0, 1]);
        let mut out = Vec::new();
        pg.map_change(20, vec![1], Some(1), &mut out);
        pg.invariants();
        assert_eq!(pg.state(), PgState::Down, "the gap may hide writes osd.0 took alone");
        let iv = pg.blocked_by().expect("names the interval");
        assert!(iv.unknown && iv.start == 11 && iv.end == 19 && iv.acting == vec![0, 1]);
        // osd.0 comes back and answers: it vouches for the gap.
        let mut out = Vec::new();
        pg.map_change(21, vec![1, 0], Some(1), &mut out);
        let notify = PeerMsg::Notify { epoch: 21, info: PgInfo::default(), les: 5, log: Vec::new(), missing: Vec::new(), last_backfill: BackfillPos::Max };
        pg.peer(0, notify, &mut out);
        assert_ne!(pg.state(), PgState::Down);
        assert!(pg.blocked_by().is_none());
    }

    #[test]
    fn a_gap_after_being_alone_is_vouched_for_by_ourselves() {
        let mut pg = restarted(vec![1]);
        let mut out = Vec::new();
        pg.map_change(20, vec![1], Some(1), &mut out);
        assert_eq!(pg.state(), PgState::Active, "nobody else was known: no deadlock");
    }

    /// osd.1 restarted (see `restarted`), then osd.0 went on alone at
    /// epoch 11 (a known interval that may have taken writes) and osd.1
    /// is alone from epoch 12: down, waiting for osd.0.
    fn down_for_osd0_alone() -> Pg<u64> {
        let mut pg = restarted(vec![0, 1]);
        let mut out = Vec::new();
        pg.map_change(11, vec![0], Some(0), &mut out);
        pg.map_change(12, vec![1], Some(1), &mut out);
        pg.invariants();
        assert_eq!(pg.state(), PgState::Down);
        let iv = pg.blocked_by().expect("names the interval");
        assert!(!iv.unknown && iv.start == 11 && iv.end == 11 && iv.acting == vec![0], "{iv:?}");
        pg
    }

    fn lost(osds: &[(OsdId, Epoch)]) -> BTreeMap<OsdId, Epoch> {
        osds.iter().copied().collect()
    }

    fn logged(out: &[Effect<u64>]) -> Vec<&str> {
        out.iter().filter_map(|e| if let Effect::Log { message } = e { Some(message.as_str()) } else { None }).collect()
    }

    #[test]
    fn a_pg_down_for_a_past_interval_goes_active_once_its_members_are_lost() {
        let mut pg = down_for_osd0_alone();
        // Another OSD marked lost changes nothing.
        let mut out = Vec::new();
        pg.map_change_with(13, vec![1], Some(1), Vec::new(), &lost(&[(5, 13)]), &mut out);
        assert_eq!(pg.state(), PgState::Down);
        assert!(logged(&out).is_empty());
        // osd.0 marked lost: same interval, but the PG chooses again.
        let mut out = Vec::new();
        pg.map_change_with(14, vec![1], Some(1), Vec::new(), &lost(&[(5, 13), (0, 14)]), &mut out);
        pg.invariants();
        assert_eq!(pg.state(), PgState::Active, "nobody can do better than osd.1 now");
        assert!(pg.blocked_by().is_none());
        assert_eq!(pg.history().current.unwrap().start, 12, "still the same interval");
        assert_eq!(pg.les(), 14);
        assert!(pg.history().past.is_empty(), "the activation accounted for the past intervals");
        let log = logged(&out);
        assert_eq!(log.len(), 1, "{log:?}");
        assert!(log[0].contains("11..=11") && log[0].contains("osd.0 lost at 14"), "{}", log[0]);
        // A later map with osd.0 still lost is nothing new.
        let mut out = Vec::new();
        pg.map_change_with(15, vec![1], Some(1), Vec::new(), &lost(&[(5, 13), (0, 14)]), &mut out);
        assert_eq!(pg.state(), PgState::Active);
        assert!(out.is_empty());
    }

    #[test]
    fn a_pg_down_for_a_past_interval_goes_active_once_its_members_are_removed() {
        let mut pg = down_for_osd0_alone();
        let mut out = Vec::new();
        pg.map_change_with(13, vec![1], Some(1), Vec::new(), &lost(&[(0, REMOVED)]), &mut out);
        pg.invariants();
        assert_eq!(pg.state(), PgState::Active, "osd.0 is gone for good");
        let log = logged(&out);
        assert!(log.len() == 1 && log[0].contains("osd.0 removed"), "{log:?}");
    }

    #[test]
    fn an_osd_lost_before_the_interval_ended_does_not_release_it() {
        let mut pg = down_for_osd0_alone();
        // osd.0 was marked lost at 11 (and booted again, as the interval
        // that needs it says): its writes of epoch 11 were not given up.
        for (epoch, at) in [(13, 11), (14, 8)] {
            let mut out = Vec::new();
            pg.map_change_with(epoch, vec![1], Some(1), Vec::new(), &lost(&[(0, at)]), &mut out);
            pg.invariants();
            assert_eq!(pg.state(), PgState::Down, "lost_at {at} <= the interval's end 11");
            assert_eq!(pg.blocked_by().map(|iv| (iv.start, iv.end)), Some((11, 11)));
            assert!(logged(&out).is_empty());
        }
        // Marked lost again, now after the interval: released.
        let mut out = Vec::new();
        pg.map_change_with(15, vec![1], Some(1), Vec::new(), &lost(&[(0, 15)]), &mut out);
        assert_eq!(pg.state(), PgState::Active);
    }

    #[test]
    fn a_gap_is_released_when_the_members_last_known_are_lost() {
        let mut pg = restarted(vec![0, 1]);
        let mut out = Vec::new();
        pg.map_change_with(20, vec![1], Some(1), Vec::new(), &lost(&[(0, 19)]), &mut out);
        assert_eq!(pg.state(), PgState::Down, "lost at 19 does not cover a gap through 19");
        let mut out = Vec::new();
        pg.map_change_with(21, vec![1], Some(1), Vec::new(), &lost(&[(0, 21)]), &mut out);
        pg.invariants();
        assert_eq!(pg.state(), PgState::Active);
        assert!(logged(&out).iter().any(|m| m.contains("11..=19") && m.contains("never saw")), "{out:?}");
    }

    #[test]
    fn a_lost_osd_that_answers_still_vouches() {
        let mut pg = down_for_osd0_alone();
        // osd.0 is marked lost, and comes back (a new interval): it
        // answers, so nothing is given up and nothing is said.
        let mut out = Vec::new();
        pg.map_change_with(13, vec![1, 0], Some(1), Vec::new(), &lost(&[(0, 13)]), &mut out);
        assert_eq!(pg.state(), PgState::Peering);
        let notify = PeerMsg::Notify { epoch: 13, info: PgInfo::default(), les: 11, log: Vec::new(), missing: Vec::new(), last_backfill: BackfillPos::Max };
        pg.peer(0, notify, &mut out);
        assert!(pg.blocked_by().is_none());
        pg.peer(0, PeerMsg::ActivateAck { epoch: 13 }, &mut out);
        pg.invariants();
        assert_eq!(pg.state(), PgState::Active);
        assert!(logged(&out).is_empty(), "osd.0 vouched itself: {out:?}");
    }

    #[test]
    fn a_restart_is_a_new_interval_even_with_the_same_acting_set() {
        let mut pg = restarted(vec![0, 1]);
        let mut out = Vec::new();
        pg.map_change(11, vec![0, 1], Some(0), &mut out);
        pg.invariants();
        assert_eq!(pg.history().past.len(), 1, "the interval before the restart is past");
        assert_eq!(pg.state(), PgState::Peering);
    }

    fn fresh(me: OsdId, size: usize, min_size: usize) -> Pg<u64> {
        Pg::new(PgId { pool: 1, seed: 0 }, me, PgParams { size, min_size, ..PgParams::default() }, PgDurable::default())
    }

    #[test]
    fn lowering_the_pool_size_brings_up_a_pg_down_for_too_few_members() {
        // A size-3 pool on a one-OSD cluster: down, whatever the acting set.
        let mut pg = fresh(0, 3, 2);
        let mut out = Vec::new();
        pg.map_change(3, vec![0], Some(0), &mut out);
        assert_eq!(pg.state(), PgState::Down);
        // The same shape again changes nothing.
        pg.set_shape(3, 2);
        pg.map_change(4, vec![0], Some(0), &mut out);
        assert_eq!(pg.state(), PgState::Down);
        assert!(pg.history().past.is_empty(), "one interval so far");
        // `osd pool set p size 1`: the acting set reads the same, but it
        // is a new interval, and one member is enough now.
        pg.set_shape(1, 1);
        pg.map_change(5, vec![0], Some(0), &mut out);
        pg.invariants();
        assert_eq!(pg.state(), PgState::Active);
        assert_eq!((pg.params().size, pg.params().min_size), (1, 1));
    }

    #[test]
    fn raising_min_size_keeps_what_a_past_interval_could_do_then() {
        // size 2, min_size 1: osd.0 alone at epoch 4 could take writes.
        let mut pg = fresh(1, 2, 1);
        let mut out = Vec::new();
        pg.map_change(3, vec![0, 1], Some(0), &mut out);
        pg.map_change(4, vec![0], Some(0), &mut out);
        // min_size 2 from epoch 5, and osd.0 is gone: osd.1 and osd.2.
        pg.set_shape(2, 2);
        pg.map_change(5, vec![1, 2], Some(1), &mut out);
        let notify = PeerMsg::Notify { epoch: 5, info: PgInfo::default(), les: 0, log: Vec::new(), missing: Vec::new(), last_backfill: BackfillPos::Max };
        pg.peer(2, notify, &mut out);
        pg.invariants();
        assert_eq!(pg.state(), PgState::Down, "judged by today's min_size, osd.0 alone could not have gone active");
        let iv = pg.blocked_by().expect("names the interval");
        assert_eq!((iv.start, iv.end, iv.acting.clone(), iv.enough), (4, 4, vec![0], Some(true)));
    }
}
