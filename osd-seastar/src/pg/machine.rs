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
//! objects it lacks, and goes active once all acknowledged. Recovery then
//! pushes whole objects from the primary (after pulling its own missing
//! ones from the authoritative member). A write to an object still missing
//! somewhere waits for that object's recovery.
//!
//! Invariants (`invariants()`, called by the simulator after every step):
//! the log is ordered and bounded; only an active primary has writes in
//! flight; an acknowledged write is durable on every member of the acting
//! set it was acknowledged in; the primary never has an object missing
//! that a client write is queued on without a recovery in progress.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use sepia_proto::msg::{EVersion, ObjectId, ReqId};
use sepia_proto::osdmap::{Epoch, OsdId, PgId};

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
}

impl Default for PgParams {
    fn default() -> Self {
        PgParams { size: 3, min_size: 2, log_entries_min: 250, log_entries_max: 3000, dups_tracked_max: 3000, waiting_ops_max: 1024, past_intervals_max: 512 }
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
    /// Someone is behind the log tail: needs a backfill (not built yet).
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
}

/// An interval of maps with one acting set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interval {
    pub start: Epoch,
    pub end: Epoch,
    pub acting: Vec<OsdId>,
    pub primary: Option<OsdId>,
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
}

#[derive(Debug, Clone, PartialEq)]
pub enum PeerMsg<W> {
    Query { epoch: Epoch },
    Notify { epoch: Epoch, info: PgInfo, les: Epoch, log: Vec<LogEntry>, missing: Vec<(ObjectId, Missing)> },
    Activate { epoch: Epoch, rewind_to: Option<EVersion>, append: Vec<LogEntry>, missing: Vec<(ObjectId, Missing)> },
    ActivateAck { epoch: Epoch },
    /// Every member activated: the interval is active (sets `les`).
    Activated { epoch: Epoch },
    /// `trim_to`: the primary's log tail; the replica trims as far.
    RepOp { epoch: Epoch, entry: LogEntry, txn: Txn<W>, trim_to: EVersion },
    RepOpAck { epoch: Epoch, version: EVersion },
    Pull { epoch: Epoch, object: ObjectId },
    Push { epoch: Epoch, object: ObjectId, version: EVersion, content: Option<ObjectContent> },
    PushAck { epoch: Epoch, object: ObjectId },
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
            | PeerMsg::PushAck { epoch, .. } => *epoch,
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
    /// Read the whole object and feed `Input::Content`.
    Read { object: ObjectId },
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
    },
}

/// A client write waiting to be ordered.
#[derive(Debug, Clone)]
pub struct ClientWrite<W> {
    pub client: u64,
    pub reqid: ReqId,
    pub object: ObjectId,
    pub delete: bool,
    pub write: W,
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
}

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
    missing: BTreeMap<ObjectId, Missing>,
    // Primary-only peering and recovery state.
    notifies: BTreeMap<OsdId, (PgInfo, Epoch, Vec<LogEntry>, BTreeMap<ObjectId, Missing>)>,
    activating: BTreeSet<OsdId>,
    peer_missing: BTreeMap<OsdId, BTreeMap<ObjectId, Missing>>,
    pulling: BTreeSet<ObjectId>,
    pushing: BTreeMap<ObjectId, BTreeSet<OsdId>>,
    in_flight: BTreeMap<EVersion, Gather>,
    waiting: VecDeque<ClientWrite<W>>,
    next_version: u64,
}

impl<W: Clone> Pg<W> {
    /// A PG as loaded from the store (or new and empty).
    pub fn new(id: PgId, me: OsdId, params: PgParams, durable: PgDurable) -> Pg<W> {
        // The tail comes from the durable info: a log that was trimmed
        // must not look as if it reached back to the beginning.
        let log = PgLog::load(params.log_entries_max, params.dups_tracked_max, durable.info.log_tail, durable.log, durable.dups);
        let next_version = log.head().version;
        Pg {
            id,
            me,
            params,
            epoch: 0,
            acting: Vec::new(),
            incarnation: Vec::new(),
            primary: None,
            state: PgState::Stray,
            log,
            info: durable.info,
            les: durable.les,
            past: Vec::new(),
            interval_start: 0,
            missing: durable.missing.into_iter().collect(),
            notifies: BTreeMap::new(),
            activating: BTreeSet::new(),
            peer_missing: BTreeMap::new(),
            pulling: BTreeSet::new(),
            pushing: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            waiting: VecDeque::new(),
            next_version,
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

    /// True when a read of `object` may be served here now.
    pub fn can_read(&self, object: &ObjectId) -> bool {
        self.state == PgState::Active && self.is_primary() && !self.missing.contains_key(object)
    }

    /// True when recovery has nothing left to do.
    pub fn is_clean(&self) -> bool {
        self.state == PgState::Active
            && self.missing.is_empty()
            && self.peer_missing.values().all(|m| m.is_empty())
            && self.acting.len() == self.params.size
    }

    fn durable_effect(&mut self, rewound_to: Option<EVersion>, appended: Vec<LogEntry>) -> Effect<W> {
        Effect::Persist {
            info: self.info,
            les: self.les,
            missing: self.missing.iter().map(|(o, v)| (o.clone(), *v)).collect(),
            rewound_to,
            appended,
            trim: self.log.take_trim(),
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
        self.info.log_tail = self.log.tail();
    }

    /// A new map epoch: same acting set and primary = same interval.
    pub fn map_change(&mut self, epoch: Epoch, acting: Vec<OsdId>, primary: Option<OsdId>, out: &mut Vec<Effect<W>>) {
        self.map_change_with(epoch, acting, primary, Vec::new(), out);
    }

    /// A new map epoch, where `incarnation` names each acting member's
    /// current life (its `up_from`): a member that restarted between two
    /// maps lost its peering state, so a new life is a new interval even
    /// if the acting set reads the same.
    pub fn map_change_with(&mut self, epoch: Epoch, acting: Vec<OsdId>, primary: Option<OsdId>, incarnation: Vec<Epoch>, out: &mut Vec<Effect<W>>) {
        if epoch <= self.epoch {
            return;
        }
        let same = acting == self.acting && primary == self.primary && incarnation == self.incarnation;
        self.incarnation = incarnation;
        if same && self.epoch != 0 {
            self.epoch = epoch;
            return;
        }
        if self.epoch != 0 {
            self.past.push(Interval { start: self.interval_start, end: epoch - 1, acting: self.acting.clone(), primary: self.primary });
            if self.past.len() > self.params.past_intervals_max {
                self.past.remove(0);
            }
        }
        self.epoch = epoch;
        self.interval_start = epoch;
        self.acting = acting;
        self.primary = primary;
        // Everything in flight belongs to the old interval: clients resend.
        self.in_flight.clear();
        self.notifies.clear();
        self.activating.clear();
        self.peer_missing.clear();
        self.pulling.clear();
        self.pushing.clear();
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

    fn own_notify(&self) -> (PgInfo, Epoch, Vec<LogEntry>, BTreeMap<ObjectId, Missing>) {
        (self.info, self.les, self.log.entries().cloned().collect(), self.missing.clone())
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
    }

    /// Primary: once every acting member answered, pick the authoritative
    /// log and activate everyone.
    fn try_choose(&mut self, out: &mut Vec<Effect<W>>) {
        if !self.acting.iter().all(|o| self.notifies.contains_key(o)) {
            return;
        }
        // A past interval that may have gone active after the newest
        // activation we know of must be represented by some responder.
        let les_max = self.notifies.values().map(|n| n.1).max().unwrap_or(0);
        for iv in &self.past {
            let maybe_went_active = iv.acting.len() >= self.params.min_size && iv.end >= les_max && iv.primary.is_some();
            if maybe_went_active && !iv.acting.iter().any(|o| self.notifies.contains_key(o)) {
                self.state = PgState::Down;
                return;
            }
        }
        // Authoritative: among the members of the newest interval that went
        // active (highest les), the newest last_update; the primary wins
        // ties. A member with a newer entry from an older interval holds a
        // write that was never acknowledged and is rolled back.
        let auth = *self
            .notifies
            .iter()
            .max_by_key(|(o, n)| (n.1, n.0.last_update, **o == self.me))
            .map(|(o, _)| o)
            .expect("the primary is among the notifies");
        #[cfg(test)]
        if std::env::var("SEPIA_PG_TRACE").is_ok() {
            for (o, n) in &self.notifies {
                let tail: Vec<String> = n.2.iter().rev().take(6).map(|e| format!("{}.{}:{}#{}", e.version.epoch, e.version.version, e.object.name, e.reqid.tid)).collect();
                eprintln!("    choose@{} auth {auth} member {o}: lu {:?} log(newest first) {:?} missing {:?}", self.epoch, n.0.last_update, tail, n.3.keys().map(|k| k.name.clone()).collect::<Vec<_>>());
            }
        }
        let auth_log: Vec<LogEntry> = self.notifies[&auth].2.clone();
        let auth_info = self.notifies[&auth].0;
        let auth_tail = auth_info.log_tail;
        let mut plans = BTreeMap::new();
        for (&o, (info, _, log, missing)) in &self.notifies {
            // Common point: the newest entry this member shares with auth.
            let common = log
                .iter()
                .rev()
                .find(|e| auth_log.iter().any(|a| a == *e))
                .map(|e| e.version)
                .unwrap_or_else(|| info.log_tail.max(auth_tail).min(info.last_update));
            if common < auth_tail {
                // Behind the authoritative log's tail: needs a backfill.
                self.state = PgState::Incomplete;
                return;
            }
            let divergent: Vec<&LogEntry> = log.iter().filter(|e| e.version > common).collect();
            let append: Vec<LogEntry> = auth_log.iter().filter(|e| e.version > common).cloned().collect();
            let mut need = missing.clone();
            // The version of `obj` as of the common point (both logs agree
            // up to there); zero if the log does not reach back to it.
            let at_common = |obj: &ObjectId| {
                log.iter().rev().find(|e| e.version <= common && e.object == *obj).map_or(EVersion::default(), |e| e.version)
            };
            let divergent_objects: BTreeSet<&ObjectId> = divergent.iter().map(|e| &e.object).collect();
            for obj in divergent_objects {
                let target = at_common(obj);
                // What this member's copy holds now: what it still lacks
                // says so; otherwise it applied its newest (divergent) write.
                let have = match need.get(obj) {
                    Some(m) => m.have,
                    None => divergent.iter().rev().find(|e| e.object == *obj).map_or(target, |e| e.version),
                };
                if have == target {
                    need.remove(obj);
                } else {
                    need.insert(obj.clone(), Missing { need: target, have });
                }
            }
            for e in &append {
                let have = need.get(&e.object).map_or_else(|| at_common(&e.object), |m| m.have);
                need.insert(e.object.clone(), Missing { need: e.version, have });
            }
            // A copy already at the needed version lacks nothing.
            need.retain(|_, m| m.need != m.have);
            let rewind = (!divergent.is_empty()).then_some(common);
            plans.insert(o, (rewind, append, need));
        }
        self.activating.clear();
        for (o, (rewind, append, need)) in plans {
            if o == self.me {
                self.activate_local(rewind, append, need.clone(), out);
            } else {
                self.activating.insert(o);
                out.push(Effect::Send {
                    to: o,
                    msg: PeerMsg::Activate {
                        epoch: self.epoch,
                        rewind_to: rewind,
                        append,
                        missing: need.iter().map(|(k, v)| (k.clone(), *v)).collect(),
                    },
                });
                self.peer_missing.insert(o, need);
            }
        }
        self.maybe_active(out);
    }

    fn activate_local(&mut self, rewind: Option<EVersion>, append: Vec<LogEntry>, need: BTreeMap<ObjectId, Missing>, out: &mut Vec<Effect<W>>) {
        if let Some(v) = rewind {
            self.log.rewind_to(v);
        }
        let mut appended = Vec::new();
        for e in append {
            if e.version > self.log.head() {
                self.log.append(e.clone());
                appended.push(e);
            }
        }
        self.missing = need;
        self.info.last_update = self.log.head();
        self.info.log_tail = self.log.tail();
        self.info.last_complete = if self.missing.is_empty() { self.info.last_update } else { self.info.last_complete.min(self.info.last_update) };
        self.next_version = self.next_version.max(self.log.head().version);
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
        for &o in &self.acting {
            if o != self.me {
                out.push(Effect::Send { to: o, msg: PeerMsg::Activated { epoch: self.epoch } });
            }
        }
        self.start_recovery(out);
        self.run_waiting(out);
    }

    /// Starts pulls (for the primary's own missing objects) and reads for
    /// pushes (for the others'), a bounded number at a time.
    fn start_recovery(&mut self, out: &mut Vec<Effect<W>>) {
        const RECOVERY_OPS_MAX: usize = 16;
        let own: Vec<ObjectId> = self.missing.keys().filter(|o| !self.pulling.contains(*o)).take(RECOVERY_OPS_MAX).cloned().collect();
        for obj in own {
            // Any member that is not missing it can serve it.
            let source = self.acting.iter().copied().find(|&o| o != self.me && self.peer_missing.get(&o).is_some_and(|m| !m.contains_key(&obj)));
            if let Some(src) = source {
                self.pulling.insert(obj.clone());
                out.push(Effect::Send { to: src, msg: PeerMsg::Pull { epoch: self.epoch, object: obj } });
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
    }

    /// The shard read an object for recovery.
    pub fn content(&mut self, object: ObjectId, content: Option<ObjectContent>, out: &mut Vec<Effect<W>>) {
        if let Some(targets) = self.pushing.get(&object) {
            let version = self.log.objects_since(EVersion::default()).get(&object).map_or(self.info.last_update, |x| x.0);
            for &t in targets {
                out.push(Effect::Send { to: t, msg: PeerMsg::Push { epoch: self.epoch, object: object.clone(), version, content: content.clone() } });
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
        if self.state != PgState::Active || self.is_missing_anywhere(&w.object) || dup.is_some() {
            if self.waiting.len() >= self.params.waiting_ops_max {
                out.push(Effect::Reply { client: w.client, reqid: w.reqid, result: -11, version: EVersion::default() });
            } else {
                self.waiting.push_back(w);
            }
            return;
        }
        self.next_version += 1;
        let version = EVersion { epoch: self.epoch, version: self.next_version };
        let entry = LogEntry { version, reqid: w.reqid, object: w.object.clone(), op: if w.delete { LogOp::Delete } else { LogOp::Modify } };
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
            if o != self.me {
                out.push(Effect::Send { to: o, msg: PeerMsg::RepOp { epoch: self.epoch, entry: entry.clone(), txn: Txn::Write(w.write.clone()), trim_to } });
            }
        }
        out.push(Effect::Apply { entry, txn: Txn::Write(w.write), trim: self.log.take_trim() });
        self.in_flight.insert(version, Gather { client: w.client, reqid: w.reqid, waiting });
    }

    fn is_missing_anywhere(&self, object: &ObjectId) -> bool {
        self.missing.contains_key(object) || self.peer_missing.values().any(|m| m.contains_key(object))
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
    /// commit (`Txn::Write`) acknowledges anything: a recovery push may
    /// carry the same version as a write in flight, and its commit must not
    /// pass for that write's.
    pub fn committed(&mut self, version: EVersion, write: bool, out: &mut Vec<Effect<W>>) {
        if !write {
            return;
        }
        if self.is_primary() {
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
                    let (info, les, log, missing) = self.own_notify();
                    out.push(Effect::Send { to: from, msg: PeerMsg::Notify { epoch, info, les, log, missing: missing.into_iter().collect() } });
                }
            }
            PeerMsg::Notify { info, les, log, missing, .. } => {
                if self.is_primary() && self.state == PgState::Peering && self.acting.contains(&from) {
                    self.notifies.insert(from, (info, les, log, missing.into_iter().collect()));
                    self.try_choose(out);
                }
            }
            PeerMsg::Activate { epoch, rewind_to, append, missing } => {
                if self.primary == Some(from) {
                    let need: BTreeMap<ObjectId, Missing> = missing.into_iter().collect();
                    self.activate_local(rewind_to, append, need, out);
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
            PeerMsg::RepOp { entry, txn, trim_to, .. } => {
                if self.primary == Some(from) && self.state == PgState::Active && entry.version > self.log.head() {
                    self.log.append(entry.clone());
                    // The primary trimmed only what every member applied;
                    // a member still missing objects keeps its log.
                    if self.missing.is_empty() && trim_to > self.log.tail() {
                        self.log.trim_to(trim_to);
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
                    if self.missing.remove(&object).is_some() {
                        let entry = LogEntry { version, reqid: ReqId { client: 0, tid: 0 }, object: object.clone(), op: LogOp::Modify };
                        out.push(Effect::Apply { entry, txn: Txn::Replace(content), trim: self.log.take_trim() });
                        if self.missing.is_empty() {
                            self.info.last_complete = self.info.last_update;
                        }
                        out.push(self.durable_effect(None, Vec::new()));
                    }
                    if self.is_primary() {
                        self.pulling.remove(&object);
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
                self.start_recovery(out);
                self.run_waiting(out);
            }
        }
    }

    /// Recovery state, for diagnostics.
    pub fn recovery_debug(&self) -> String {
        format!(
            "epoch {} acting {:?} primary {:?} state {:?} info {:?} missing {:?} peer_missing {:?} pulling {:?} pushing {:?}",
            self.epoch, self.acting, self.primary, self.state, self.info, self.missing.keys().collect::<Vec<_>>(),
            self.peer_missing, self.pulling, self.pushing
        )
    }

    /// Our own invariants; the simulator calls this after every step.
    pub fn invariants(&self) {
        self.log.invariants();
        if !(self.is_primary() && self.state == PgState::Active) {
            assert!(self.in_flight.is_empty(), "only an active primary has writes in flight");
        }
        assert!(self.info.last_update >= self.info.last_complete || self.info.last_complete == EVersion::default());
        assert!(self.waiting.len() <= self.params.waiting_ops_max);
    }
}
