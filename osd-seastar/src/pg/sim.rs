//! A seeded, deterministic simulation of one replicated PG on a few OSDs:
//! clients write while OSDs crash (losing whatever was not yet durable) and
//! come back; the "monitor" publishes a new map on every change. After every
//! step the PGs' invariants hold and every read the primary would serve
//! shows an acknowledged write or a newer one; at the end, once everyone is
//! back and recovery finished, all copies are identical (objects and their
//! version records), and every member is complete.
//!
//! Each seed draws its own log limits and outage lengths: some keep logs
//! long enough for log-based recovery, most make a returning OSD fall
//! behind the log tail so it is backfilled (often while writes go on, and
//! crashes and restarts interrupt walks half-way). One seed in three runs
//! with min_size 1, so a lone OSD takes writes the others never saw.
//!
//! A restarted OSD keeps only its disk: its PG is rebuilt from the durable
//! state (log, info, missing set, cursor and its past intervals), then
//! walks the maps published while it was down, in order, before the map
//! that has it up again (as the shell does with the monitor's
//! incrementals). `sim_catches_forgotten_intervals` runs a mutant that
//! forgets the intervals and checks that some seed fails.
//!
//! Seeds with `seed % 7 == 6` also switch the pool's min_size between 1
//! and 2 now and then (a new map with the same acting set, a new interval
//! for the PGs): an interval that could take writes under the min_size of
//! its day must still hold a PG down after min_size is raised (judging
//! past intervals by today's min_size instead fails seed 69).
//!
//! A failing seed is printed; `SEPIA_PG_SEED=N` replays exactly that one,
//! `SEPIA_PG_SEEDS=N` runs more.

use std::collections::{BTreeMap, VecDeque};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sepia_proto::msg::{EVersion, ObjectId, ReqId};
use sepia_proto::osdmap::{Epoch, OsdId, PgId};

use super::backfill::{sort_key, BackfillPos};
use super::log::{LogEntry, LogOp, PgInfo, Trim};
use super::machine::{ClientWrite, Effect, Missing, ObjectContent, PeerMsg, Pg, PgDurable, PgHistory, PgParams, PgState, Txn};

/// The write payload: the value the object takes (0 = delete).
type W = u64;

#[derive(Default, Clone)]
struct Disk {
    objects: BTreeMap<ObjectId, u64>,
    log: Vec<LogEntry>,
    info: PgInfo,
    les: Epoch,
    missing: Vec<(ObjectId, Missing)>,
    /// Request ids of trimmed entries (the store's dup records).
    dups: Vec<(ReqId, EVersion)>,
    /// Each object's version record (the version of its last write).
    versions: BTreeMap<ObjectId, EVersion>,
    last_backfill: BackfillPos,
    /// The intervals the PG persisted.
    history: PgHistory,
}

struct Osd {
    disk: Disk,
    /// Applied in memory, not yet durable: lost on a crash.
    pending: VecDeque<(LogEntry, Txn<W>, Option<Trim>)>,
    pg: Option<Pg<W>>,
}

struct Sim {
    rng: StdRng,
    osds: Vec<Osd>,
    up: Vec<bool>,
    epoch: Epoch,
    /// Per (from, to) FIFO, like a TCP connection; cleared when either dies.
    net: BTreeMap<(OsdId, OsdId), VecDeque<PeerMsg<W>>>,
    /// Writes issued: reqid → (object, value).
    issued: BTreeMap<ReqId, (ObjectId, u64)>,
    /// Outstanding (unacknowledged) writes, resent after map changes.
    outstanding: BTreeMap<ReqId, ClientWrite<W>>,
    /// Per object: the order writes were acknowledged in and the floor.
    acked_floor: BTreeMap<ObjectId, u64>,
    /// Per object, every value ever written, in issue order.
    history: BTreeMap<ObjectId, Vec<u64>>,
    next_tid: u64,
    pgid: PgId,
    /// Every map published: (acting, primary) of epoch `i + 1`. A
    /// restarted OSD walks those after its durable epoch, in order, as the
    /// shell does with the monitor's incrementals.
    /// With each map, the pool's min_size it published.
    maps: Vec<(Vec<OsdId>, Option<OsdId>, usize)>,
    /// A mutant: restarted PGs forget their intervals (and walk no maps),
    /// as before intervals were durable; `sim_catches_forgotten_intervals`
    /// shows the checks catch it.
    forget_history: bool,
    /// Acknowledged writes whose acknowledgement the client did not hear
    /// (still outstanding: it will resend them).
    reply_lost: std::collections::BTreeSet<ReqId>,
    params: PgParams,
    /// Chance that a restart step brings an OSD back (low: long outages).
    restart_p: f64,
    /// Backfill happened (a member persisted an unfinished cursor), and
    /// an OSD restarted in the middle of one.
    backfilled: bool,
    resumed: bool,
    /// The pool's min_size changes now and then (see the module doc).
    shape_changes: bool,
    /// min_size was raised while a past interval had fewer members.
    raised_min_size: bool,
}

const OSDS: usize = 3;
const OBJECTS: u64 = 24;

impl Sim {
    fn new(seed: u64, forget_history: bool) -> Sim {
        let pgid = PgId { pool: 1, seed: 0 };
        let mut rng = StdRng::seed_from_u64(seed);
        // One seed in five keeps long logs (log-based recovery only); the
        // others make outages outlast the log.
        let mut params = params(if rng.gen_range(0..5) == 0 { 4096 } else { rng.gen_range(6..=16) });
        // One seed in three lets one OSD alone take writes (min_size 1):
        // a lone member's interval that the others never saw must keep
        // them down after they restart, until it answers. (Chosen from
        // the seed, not the RNG, so the other seeds run as before.)
        if seed % 3 == 2 {
            params.min_size = 1;
        }
        let restart_p = [1.0, 0.3, 0.1][rng.gen_range(0..3)];
        let osds = (0..OSDS)
            .map(|i| Osd { disk: Disk::default(), pending: VecDeque::new(), pg: Some(Pg::new(pgid, i as OsdId, params.clone(), PgDurable::default())) })
            .collect();
        let mut sim = Sim {
            rng,
            osds,
            up: vec![true; OSDS],
            epoch: 0,
            net: BTreeMap::new(),
            issued: BTreeMap::new(),
            outstanding: BTreeMap::new(),
            acked_floor: BTreeMap::new(),
            history: BTreeMap::new(),
            next_tid: 1,
            pgid,
            maps: Vec::new(),
            forget_history,
            reply_lost: Default::default(),
            params,
            restart_p,
            backfilled: false,
            resumed: false,
            shape_changes: seed % 7 == 6,
            raised_min_size: false,
        };
        sim.publish_map();
        sim
    }

    /// The monitor: acting = the up OSDs, primary rotating with the epoch
    /// so primaries change often.
    fn acting(&self) -> (Vec<OsdId>, Option<OsdId>) {
        let acting: Vec<OsdId> = (0..OSDS as OsdId).filter(|&o| self.up[o as usize]).collect();
        let primary = if acting.is_empty() { None } else { Some(acting[(self.epoch as usize / 3) % acting.len()]) };
        (acting, primary)
    }

    fn publish_map(&mut self) {
        self.epoch += 1;
        let (acting, primary) = self.acting();
        let min_size = self.params.min_size;
        self.maps.push((acting.clone(), primary, min_size));
        if std::env::var("SEPIA_PG_TRACE").is_ok() {
            eprintln!("epoch {} acting {acting:?} primary {primary:?}", self.epoch);
        }
        for o in 0..OSDS {
            if self.up[o] {
                let mut out = Vec::new();
                if let Some(pg) = self.osds[o].pg.as_mut() {
                    pg.set_shape(OSDS, min_size);
                    pg.map_change(self.epoch, acting.clone(), primary, &mut out);
                }
                self.run_effects(o as OsdId, out);
            }
        }
        // Clients resend what is outstanding to the new primary. A write
        // whose acknowledgement was lost may instead be resent later
        // (`resend_one`), when it may long have left the log: it must be
        // answered from the dup records, not applied again.
        let resend: Vec<ClientWrite<W>> = self.outstanding.values().cloned().collect();
        for w in resend {
            if !self.reply_lost.contains(&w.reqid) || self.rng.gen_bool(0.5) {
                self.send_client(w);
            }
        }
    }

    fn primary(&self) -> Option<OsdId> {
        self.acting().1
    }

    fn send_client(&mut self, mut w: ClientWrite<W>) {
        let Some(p) = self.primary() else { return };
        // What the shell asks its store (every apply handed to it counts).
        w.stored_version = self.view(p, &w.object).1;
        let mut out = Vec::new();
        if let Some(pg) = self.osds[p as usize].pg.as_mut() {
            pg.client_write(w, &mut out);
        }
        self.run_effects(p, out);
    }

    fn run_effects(&mut self, at: OsdId, effects: Vec<Effect<W>>) {
        self.run_effects_with(at, effects, true);
    }

    /// Reads and listings run after the other effects of their batch, as
    /// in the shell, where they queue behind them and their answers come
    /// later: run at once, an answer's effects (a waiting write let go by
    /// a recovered object) overtook the writes before it and reached the
    /// store out of version order (seed 5768 then reloaded a log missing
    /// those writes and applied their resends again).
    fn run_effects_with(&mut self, at: OsdId, effects: Vec<Effect<W>>, defer: bool) {
        let trace = std::env::var("SEPIA_PG_TRACE").is_ok();
        let mut deferred = Vec::new();
        for e in effects {
            if defer && matches!(e, Effect::Read { .. } | Effect::List { .. }) {
                deferred.push(e);
                continue;
            }
            if trace {
                match &e {
                    Effect::Persist { missing, rewound_to, appended, .. } => eprintln!(
                        "  osd.{at} persist missing {:?} rewound_to {rewound_to:?} appended {:?}",
                        missing.iter().map(|(o, v)| format!("{}@{}.{}", o.name, v.need.epoch, v.need.version)).collect::<Vec<_>>(),
                        appended.iter().map(|e| format!("{}.{}", e.version.epoch, e.version.version)).collect::<Vec<_>>()
                    ),
                    Effect::Send { to, msg: PeerMsg::Activate { rewind_to, append, missing, .. } } => eprintln!(
                        "  osd.{at} -> osd.{to} activate rewind {rewind_to:?} append {} missing {:?}",
                        append.len(),
                        missing.iter().map(|(o, v)| format!("{}@{}.{}", o.name, v.need.epoch, v.need.version)).collect::<Vec<_>>()
                    ),
                    Effect::Send { to, msg: PeerMsg::Push { object, version, .. } } => eprintln!("  osd.{at} -> osd.{to} push {} {}.{}", object.name, version.epoch, version.version),
                    Effect::Apply { entry, txn, .. } => eprintln!("  osd.{at} apply {} {}.{} {:?}", entry.object.name, entry.version.epoch, entry.version.version, match txn { Txn::Write(v) => Some(*v), Txn::Replace(c) => c.as_ref().map(|c| u64::from_le_bytes(c.data[..8].try_into().unwrap())), Txn::LogOnly => None }),
                    Effect::List { tag, after, until, .. } => eprintln!("  osd.{at} list {tag:?} ({after:?}, {until:?}]"),
                    Effect::Send { to, msg: PeerMsg::ScanReply { after, end, objects, .. } } => eprintln!("  osd.{at} -> osd.{to} scan reply ({after:?}, {end:?}] {:?}", objects.iter().map(|(o, v)| format!("{}@{}.{}", o.name, v.epoch, v.version)).collect::<Vec<_>>()),
                    Effect::Send { to, msg: PeerMsg::BackfillProgress { pos, .. } } => eprintln!("  osd.{at} -> osd.{to} backfill progress {pos:?}"),
                    Effect::Send { to, msg: PeerMsg::BackfillDone { .. } } => eprintln!("  osd.{at} -> osd.{to} backfill done"),
                    Effect::Send { to, msg: PeerMsg::RepLog { entry, .. } } => eprintln!("  osd.{at} -> osd.{to} replog {} {}.{}", entry.object.name, entry.version.epoch, entry.version.version),
                    _ => {}
                }
            }
            match e {
                Effect::Apply { entry, txn, trim } => self.osds[at as usize].pending.push_back((entry, txn, trim)),
                Effect::Log { message } => {
                    if trace {
                        eprintln!("  osd.{at} log: {message}");
                    }
                }
                Effect::Send { to, msg } => {
                    if self.up[to as usize] {
                        self.net.entry((at, to)).or_default().push_back(msg);
                    }
                }
                Effect::Reply { reqid, result, .. } => {
                    if result == 0 && self.outstanding.contains_key(&reqid) {
                        // The cluster acknowledged: the write is durable on
                        // the acting set. Sometimes the client never hears
                        // it and resends later.
                        if self.rng.gen_range(0..4) == 0 {
                            self.reply_lost.insert(reqid);
                        } else {
                            self.outstanding.remove(&reqid);
                            self.reply_lost.remove(&reqid);
                        }
                        {
                            let (obj, value) = self.issued[&reqid].clone();
                            // The acknowledged value's position in the history.
                            let idx = self.history[&obj].iter().position(|v| *v == value).expect("issued") as u64;
                            let floor = self.acked_floor.entry(obj).or_insert(0);
                            *floor = (*floor).max(idx + 1);
                        }
                    }
                }
                Effect::Read { object } => {
                    let (value, version) = self.view(at, &object);
                    let content = value.map(|v| ObjectContent { data: v.to_le_bytes().to_vec(), xattrs: Default::default(), omap: Default::default(), omap_header: vec![] });
                    let mut out = Vec::new();
                    if let Some(pg) = self.osds[at as usize].pg.as_mut() {
                        pg.content(object, content, version, &mut out);
                    }
                    self.run_effects(at, out);
                }
                Effect::List { tag, after, until, max } => {
                    // Like the store: keys in order, at most `max`, then
                    // the end of what was covered.
                    let d = &self.osds[at as usize];
                    let mut names: std::collections::BTreeSet<ObjectId> = d.disk.objects.keys().cloned().collect();
                    names.extend(d.pending.iter().map(|(e, _, _)| e.object.clone()));
                    let mut all: Vec<(String, ObjectId, EVersion)> = Vec::new();
                    for o in names {
                        let (value, version) = self.view(at, &o);
                        if value.is_some() {
                            all.push((sort_key(&o), o, version));
                        }
                    }
                    all.sort();
                    let after_ok = |k: &String| BackfillPos::Key(k.clone()) > after;
                    let listed: Vec<&(String, ObjectId, EVersion)> = all.iter().filter(|(k, _, _)| after_ok(k)).take(max).collect();
                    let more = all.iter().filter(|(k, _, _)| after_ok(k)).count() > max;
                    let mut end = until.clone();
                    if more {
                        if let Some((k, _, _)) = listed.last() {
                            end = BackfillPos::Key(k.clone()).min(until.clone());
                        }
                    }
                    let objects = listed.into_iter().filter(|(k, _, _)| BackfillPos::Key(k.clone()) <= end).map(|(_, o, v)| (o.clone(), *v)).collect();
                    let mut out = Vec::new();
                    if let Some(pg) = self.osds[at as usize].pg.as_mut() {
                        pg.listed(tag, after, until, objects, end, &mut out);
                    }
                    self.run_effects(at, out);
                }
                Effect::Persist { info, les, missing, rewound_to, appended, trim, last_backfill, history } => {
                    if last_backfill != BackfillPos::Max {
                        self.backfilled = true;
                    }
                    // Metadata is written through the journal like data:
                    // durable in order with the applies before it.
                    let pending: Vec<(LogEntry, Txn<W>, Option<Trim>)> = self.osds[at as usize].pending.drain(..).collect();
                    for (entry, txn, trim) in pending {
                        let d = &mut self.osds[at as usize];
                        apply_durable(&mut d.disk, &entry, &txn, trim.as_ref());
                        let mut out = Vec::new();
                        if let Some(pg) = d.pg.as_mut() {
                            pg.committed(entry.version, matches!(txn, Txn::Write(_) | Txn::LogOnly), &mut out);
                        }
                        self.run_effects(at, out);
                    }
                    let d = &mut self.osds[at as usize];
                    if let Some(v) = rewound_to {
                        d.disk.log.retain(|e| e.version <= v);
                    }
                    d.disk.log.extend(appended);
                    if let Some(t) = &trim {
                        apply_trim(&mut d.disk, t);
                    }
                    d.disk.info = info;
                    d.disk.les = les;
                    d.disk.missing = missing;
                    d.disk.last_backfill = last_backfill;
                    d.disk.history = history;
                }
            }
        }
        for e in deferred {
            self.run_effects_with(at, vec![e], false);
        }
    }

    fn view(&self, at: OsdId, object: &ObjectId) -> (Option<u64>, EVersion) {
        let d = &self.osds[at as usize];
        let start = (d.disk.objects.get(object).copied(), d.disk.versions.get(object).copied().unwrap_or_default());
        d.pending.iter().filter(|(e, _, _)| e.object == *object).fold(start, |cur, (e, t, _)| match t {
            Txn::Write(0) => (None, e.version),
            Txn::Write(x) => (Some(*x), e.version),
            Txn::Replace(Some(c)) => (Some(u64::from_le_bytes(c.data[..8].try_into().unwrap())), e.version),
            Txn::Replace(None) => (None, e.version),
            Txn::LogOnly => cur,
        })
    }

    fn step(&mut self) {
        let roll = self.rng.gen_range(0..100);
        match roll {
            0..=34 => self.deliver(),
            35..=59 => self.commit_one(),
            60..=79 => self.client_write(),
            80..=82 => self.crash(),
            83..=88 => {
                if self.rng.gen_bool(self.restart_p) {
                    self.restart()
                }
            }
            89..=92 => self.resend_one(),
            99 if self.shape_changes => self.change_min_size(),
            _ => self.retry(),
        }
        self.check();
    }

    /// The operator switches the pool's min_size between 1 and 2: the
    /// monitor publishes a map with the same acting set.
    fn change_min_size(&mut self) {
        let raise = self.params.min_size == 1;
        if raise && self.maps.iter().any(|(acting, _, _)| acting.len() == 1) {
            self.raised_min_size = true;
        }
        self.params.min_size = if raise { 2 } else { 1 };
        self.publish_map();
    }

    /// A client resends, late, a write whose acknowledgement it lost.
    fn resend_one(&mut self) {
        let lost: Vec<ClientWrite<W>> = self.outstanding.values().filter(|w| self.reply_lost.contains(&w.reqid)).cloned().collect();
        if lost.is_empty() {
            return;
        }
        let w = lost[self.rng.gen_range(0..lost.len())].clone();
        self.send_client(w);
    }

    fn deliver(&mut self) {
        let keys: Vec<(OsdId, OsdId)> = self.net.iter().filter(|(_, q)| !q.is_empty()).map(|(k, _)| *k).collect();
        if keys.is_empty() {
            return;
        }
        let (from, to) = keys[self.rng.gen_range(0..keys.len())];
        let msg = self.net.get_mut(&(from, to)).and_then(|q| q.pop_front()).expect("non-empty");
        if !self.up[to as usize] {
            return;
        }
        let mut out = Vec::new();
        if let Some(pg) = self.osds[to as usize].pg.as_mut() {
            pg.peer(from, msg, &mut out);
        }
        self.run_effects(to, out);
    }

    fn commit_one(&mut self) {
        let live: Vec<usize> = (0..OSDS).filter(|&o| self.up[o] && !self.osds[o].pending.is_empty()).collect();
        if live.is_empty() {
            return;
        }
        let o = live[self.rng.gen_range(0..live.len())];
        let (entry, txn, trim) = self.osds[o].pending.pop_front().expect("non-empty");
        apply_durable(&mut self.osds[o].disk, &entry, &txn, trim.as_ref());
        let mut out = Vec::new();
        if let Some(pg) = self.osds[o].pg.as_mut() {
            pg.committed(entry.version, matches!(txn, Txn::Write(_) | Txn::LogOnly), &mut out);
        }
        self.run_effects(o as OsdId, out);
    }

    fn client_write(&mut self) {
        if self.outstanding.len() >= 8 {
            return;
        }
        let object = ObjectId::new(format!("obj{}", self.rng.gen_range(0..OBJECTS)));
        let tid = self.next_tid;
        self.next_tid += 1;
        let reqid = ReqId { client: 1, tid };
        // Unique values; 0 is a delete.
        let value = if self.rng.gen_range(0..10) == 0 { 0 } else { tid };
        self.history.entry(object.clone()).or_default().push(value);
        self.issued.insert(reqid, (object.clone(), value));
        let w = ClientWrite { client: 1, reqid, object, delete: value == 0, write: value, stored_version: EVersion::default() };
        self.outstanding.insert(reqid, w.clone());
        self.send_client(w);
    }

    fn crash(&mut self) {
        let up: Vec<usize> = (0..OSDS).filter(|&o| self.up[o]).collect();
        // Keep a majority up most of the time; sometimes go below min_size.
        if up.len() <= 1 {
            return;
        }
        let o = up[self.rng.gen_range(0..up.len())];
        self.up[o] = false;
        self.osds[o].pending.clear();
        self.osds[o].pg = None;
        self.net.retain(|(a, b), _| *a as usize != o && *b as usize != o);
        self.publish_map();
    }

    fn restart(&mut self) {
        let down: Vec<usize> = (0..OSDS).filter(|&o| !self.up[o]).collect();
        if down.is_empty() {
            return;
        }
        let o = down[self.rng.gen_range(0..down.len())];
        let d = &self.osds[o].disk;
        if d.last_backfill != BackfillPos::Max {
            self.resumed = true;
        }
        let history = if self.forget_history { PgHistory::default() } else { d.history.clone() };
        let from = history.epoch;
        let durable = PgDurable { info: d.info, les: d.les, log: d.log.clone(), missing: d.missing.clone(), dups: d.dups.clone(), last_backfill: d.last_backfill.clone(), history };
        self.osds[o].pg = Some(Pg::new(self.pgid, o as OsdId, self.params.clone(), durable));
        // The maps it missed, in order (it is down in all of them, so it
        // says nothing to anyone), then the one that has it up again.
        if from != 0 {
            for e in from + 1..=self.epoch {
                let (acting, primary, min_size) = self.maps[e as usize - 1].clone();
                let mut out = Vec::new();
                if let Some(pg) = self.osds[o].pg.as_mut() {
                    pg.set_shape(OSDS, min_size);
                    pg.map_change(e, acting, primary, &mut out);
                }
                self.run_effects(o as OsdId, out);
            }
        }
        self.up[o] = true;
        self.publish_map();
    }

    fn retry(&mut self) {
        for o in 0..OSDS {
            if self.up[o] {
                let mut out = Vec::new();
                if let Some(pg) = self.osds[o].pg.as_mut() {
                    pg.retry(&mut out);
                }
                self.run_effects(o as OsdId, out);
            }
        }
    }

    /// Values the object may show: the acknowledged floor or anything later.
    fn allowed(&self, object: &ObjectId, value: Option<u64>) -> bool {
        let Some(hist) = self.history.get(object) else { return value.is_none() };
        let floor = self.acked_floor.get(object).copied().unwrap_or(0) as usize;
        let v = value.unwrap_or(0);
        if floor == 0 && value.is_none() {
            return true;
        }
        hist[floor.saturating_sub(1)..].contains(&v)
    }

    fn check(&self) {
        for o in 0..OSDS {
            if let (true, Some(pg)) = (self.up[o], self.osds[o].pg.as_ref()) {
                pg.invariants();
                for i in 0..OBJECTS {
                    let obj = ObjectId::new(format!("obj{i}"));
                    if pg.can_read(&obj) {
                        let value = self.view(o as OsdId, &obj).0;
                        assert!(self.allowed(&obj, value), "primary osd.{o} would serve {obj:?} = {value:?}, below an acknowledged write");
                    }
                }
            }
        }
    }

    /// Everyone back, no more faults: run until quiet and compare copies.
    /// Returns true when recovery stopped at an *unfound* object: one the
    /// primary lacks and no OSD holds at the needed version (Ceph's
    /// unfound objects; only liveness is lost, and the seed is counted).
    fn heal_and_check(&mut self) -> bool {
        while self.up.iter().any(|u| !u) {
            self.restart();
        }
        for _ in 0..20_000 {
            let busy = self.net.values().any(|q| !q.is_empty()) || self.osds.iter().any(|o| !o.pending.is_empty());
            if !busy {
                self.retry();
                let quiet = !self.net.values().any(|q| !q.is_empty()) && self.osds.iter().all(|o| o.pending.is_empty());
                if quiet && self.outstanding.is_empty() {
                    break;
                }
                if quiet {
                    // The client's timeout: resend everything outstanding.
                    let resend: Vec<ClientWrite<W>> = self.outstanding.values().cloned().collect();
                    for w in resend {
                        self.send_client(w);
                    }
                }
            }
            if self.rng.gen_bool(0.5) {
                self.deliver();
            } else {
                self.commit_one();
            }
            self.check();
        }
        let p = self.primary().expect("all up") as usize;
        let pg = self.osds[p].pg.as_ref().expect("up");
        assert_eq!(pg.state(), PgState::Active, "PG active after healing");
        if !pg.is_clean() && !pg.missing().is_empty() {
            let unfound = pg.missing().iter().all(|(obj, m)| {
                m.need == EVersion::default() || !self.osds.iter().any(|o| o.disk.versions.get(obj) == Some(&m.need))
            });
            if unfound {
                for (obj, m) in pg.missing() {
                    let held: Vec<_> = self.osds.iter().map(|o| o.disk.versions.get(obj).copied()).collect();
                    eprintln!("   unfound {obj:?} at primary osd.{p}: need {:?} have {:?}; copies at {held:?}", m.need, m.have);
                    for (o, osd) in self.osds.iter().enumerate() {
                        let entries: Vec<_> = osd.disk.log.iter().filter(|e| e.object == *obj).map(|e| (e.version, e.prior_version)).collect();
                        eprintln!("     osd.{o} tail {:?} entries {entries:?}", osd.disk.info.log_tail);
                    }
                    eprintln!("     primary: {}", pg.recovery_debug());
                }
                return true;
            }
        }
        if !pg.is_clean() {
            for o in 0..OSDS {
                let d = &self.osds[o].disk;
                eprintln!("osd.{o}: objects {:?} info {:?} missing {:?} log {:?}", d.objects, d.info, d.missing, d.log.iter().map(|e| (e.version.epoch, e.version.version, e.object.name.clone(), e.reqid.tid)).collect::<Vec<_>>());
                eprintln!("   pg: {}", self.osds[o].pg.as_ref().map(|p| p.recovery_debug()).unwrap_or_default());
            }
        }
        assert!(pg.is_clean(), "recovery finished: missing {:?}", pg.missing());
        assert!(self.outstanding.is_empty(), "every write eventually acknowledged: {:?}", self.outstanding.keys().collect::<Vec<_>>());
        for o in 0..OSDS {
            assert_eq!(self.osds[o].disk.objects, self.osds[p].disk.objects, "osd.{o} differs from the primary osd.{p}");
            // (Tombstones of removed objects may differ.)
            let present = |d: &Disk| d.versions.iter().filter(|(k, _)| d.objects.contains_key(*k)).map(|(k, v)| (k.clone(), *v)).collect::<BTreeMap<_, _>>();
            assert_eq!(present(&self.osds[o].disk), present(&self.osds[p].disk), "osd.{o}'s version records differ from the primary osd.{p}'s");
            assert_eq!(self.osds[o].disk.last_backfill, BackfillPos::Max, "osd.{o} is complete");
        }
        for (obj, hist) in &self.history {
            // Everything was acknowledged, so the last write wins.
            let last = *hist.last().expect("non-empty");
            let have = self.osds[p].disk.objects.get(obj).copied();
            assert_eq!(have.unwrap_or(0), last, "{obj:?}");
        }
        false
    }
}

/// `log_max`: entries a degraded PG keeps (short: a returning OSD is
/// backfilled). A clean one is trimmed hard, so resends of trimmed writes
/// (across restarts too) meet the dup records; walks list and move a few
/// objects at a time, so they take many steps and get interrupted.
fn params(log_max: usize) -> PgParams {
    PgParams {
        size: OSDS,
        min_size: 2,
        log_entries_min: 4,
        log_entries_max: log_max,
        dups_tracked_max: DUPS_MAX,
        backfill_scan_max: 5,
        backfill_pushes_max: 2,
        backfill_bytes_max: 16,
        ..PgParams::default()
    }
}

const DUPS_MAX: usize = 512;

/// A trim as the shard makes it durable: log entries go, a dup record of
/// their request ids comes, the oldest ids beyond the bound go.
fn apply_trim(disk: &mut Disk, t: &Trim) {
    disk.log.retain(|e| e.version > t.to);
    disk.info.log_tail = disk.info.log_tail.max(t.to);
    disk.dups.extend(t.dups.iter().copied());
    let excess = disk.dups.len().saturating_sub(DUPS_MAX);
    disk.dups.drain(..excess);
}

fn apply_durable(disk: &mut Disk, entry: &LogEntry, txn: &Txn<W>, trim: Option<&Trim>) {
    match txn {
        Txn::Write(0) => {
            // The removal's version stays as a tombstone.
            disk.objects.remove(&entry.object);
            disk.versions.insert(entry.object.clone(), entry.version);
        }
        Txn::Write(v) => {
            disk.objects.insert(entry.object.clone(), *v);
            disk.versions.insert(entry.object.clone(), entry.version);
        }
        Txn::Replace(Some(c)) => {
            disk.objects.insert(entry.object.clone(), u64::from_le_bytes(c.data[..8].try_into().unwrap()));
            if entry.version == EVersion::default() {
                disk.versions.remove(&entry.object);
            } else {
                disk.versions.insert(entry.object.clone(), entry.version);
            }
        }
        Txn::Replace(None) => {
            disk.objects.remove(&entry.object);
            if entry.version == EVersion::default() {
                disk.versions.remove(&entry.object);
            } else {
                disk.versions.insert(entry.object.clone(), entry.version);
            }
        }
        Txn::LogOnly => {}
    }
    if let Txn::Write(_) | Txn::LogOnly = txn {
        disk.log.push(entry.clone());
        disk.info.last_update = entry.version;
        if disk.missing.is_empty() {
            disk.info.last_complete = entry.version;
        }
    }
    if let Some(t) = trim {
        apply_trim(disk, t);
    }
    let _ = LogOp::Modify;
}

/// What a seed exercised.
#[derive(Default)]
struct Seen {
    /// Some OSD ended with a durable dup record (clean-log trimming).
    trimmed: bool,
    backfilled: bool,
    /// An OSD restarted with a backfill unfinished.
    resumed: bool,
    /// Recovery stopped at an unfound object.
    unfound: bool,
    /// min_size was raised after an interval of one member.
    raised_min_size: bool,
}

/// Runs one seed.
fn run_seed(seed: u64, steps: usize) -> Seen {
    run_seed_with(seed, steps, false)
}

fn run_seed_with(seed: u64, steps: usize, forget_history: bool) -> Seen {
    let result = std::panic::catch_unwind(|| {
        let mut sim = Sim::new(seed, forget_history);
        for _ in 0..steps {
            sim.step();
        }
        let unfound = sim.heal_and_check();
        Seen { trimmed: sim.osds.iter().any(|o| !o.disk.dups.is_empty()), backfilled: sim.backfilled, resumed: sim.resumed, unfound, raised_min_size: sim.raised_min_size }
    });
    match result {
        Ok(seen) => seen,
        Err(e) => {
            eprintln!("PG simulation failed with seed {seed}; replay with SEPIA_PG_SEED={seed}");
            std::panic::resume_unwind(e);
        }
    }
}

#[test]
fn replicated_pg_survives_crashes_and_recovers() {
    if let Ok(seed) = std::env::var("SEPIA_PG_SEED") {
        run_seed(seed.parse().expect("SEPIA_PG_SEED is a number"), 3000);
        return;
    }
    // 1000 by default: seeds 401, 1439, 2336, 5768 and 9731 found bugs the
    // first 200 did not (10000 pass).
    let seeds: u64 = std::env::var("SEPIA_PG_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(1000);
    let (mut trimmed, mut backfilled, mut resumed, mut unfound, mut raised) = (0u64, 0u64, 0u64, 0u64, 0u64);
    for seed in 0..seeds {
        let seen = run_seed(seed, 3000);
        trimmed += seen.trimmed as u64;
        backfilled += seen.backfilled as u64;
        resumed += seen.resumed as u64;
        raised += seen.raised_min_size as u64;
        if seen.unfound {
            eprintln!("PG simulation seed {seed}: recovery stopped at an unfound object");
            unfound += 1;
        }
    }
    eprintln!("PG simulation: {seeds} seeds, {trimmed} trimmed a clean log, {backfilled} backfilled, {resumed} restarted mid-backfill, {raised} raised min_size after a lone member's interval, {unfound} stopped at an unfound object");
    // Unfound objects remain where Ceph has them too: an unacknowledged
    // write that one interval's authority rolled back (its copies removed)
    // and a later one, whose authoritative log still held it, needs again.
    // They must stay rare (none in the first 1000 seeds, 2 in 10000: 4443
    // and 8791; 11 before log entries carried `prior_version`), and never
    // hide a lost acknowledged write (checked every step).
    assert!(unfound * 100 <= seeds.max(100), "{unfound} of {seeds} seeds stopped at an unfound object");
    // The runs must exercise clean-log trimming and its dup records, and
    // backfill, also interrupted by restarts.
    assert!(trimmed * 4 >= seeds, "only {trimmed} of {seeds} seeds trimmed a clean log");
    assert!(backfilled * 4 >= seeds, "only {backfilled} of {seeds} seeds backfilled");
    assert!(resumed * 10 >= seeds, "only {resumed} of {seeds} seeds restarted an OSD mid-backfill");
    // And min_size raised over an interval that had one member (1 seed
    // in 7 changes min_size).
    assert!(raised * 20 >= seeds, "only {raised} of {seeds} seeds raised min_size after a lone member's interval");
}

/// Seeds that each found a bug the first 200 seeds missed: a re-applied
/// resend after a backfill merged request ids (1439), a write overtaking
/// an earlier waiting one (9731), recoveries stuck on one wrong source
/// (2336, 401), effects run out of order in the simulator (5768), a
/// member's trimmed history from a losing log kept (529, 1797: a resend
/// answered from its request id, an object rolled back to the wrong
/// version); and seeds that stopped at unfound objects until divergent
/// writes rolled back to their `prior_version` (2364, 5593, 7299).
#[test]
fn seeds_that_found_bugs_stay_fixed() {
    for seed in [401, 529, 1439, 1797, 2336, 2364, 5593, 5768, 7299, 9731] {
        let seen = run_seed(seed, 3000);
        assert!(!seen.unfound, "seed {seed} stopped at an unfound object");
    }
}

/// The simulation can fail: PGs that forget their past intervals at a
/// restart (the bug durable intervals fix) serve stale data after a lone
/// member's writes, and some min_size 1 seed must catch that.
#[test]
fn sim_catches_forgotten_intervals() {
    let caught = (0..60u64).filter(|s| s % 3 == 2).find(|&seed| {
        std::panic::catch_unwind(|| {
            let mut sim = Sim::new(seed, true);
            for _ in 0..3000 {
                sim.step();
            }
            sim.heal_and_check();
        })
        .is_err()
    });
    assert!(caught.is_some(), "no seed caught PGs that forget their intervals");
    eprintln!("forgotten intervals caught by seed {}", caught.expect("checked"));
}
