//! The PG log: the ordered record of the last writes to a placement group,
//! by which members of the acting set find out what each other lacks
//! (log-based recovery) and by which a resent request is recognised.
//!
//! A clean PG keeps a short log (the primary trims it and tells the
//! replicas how far); a degraded one keeps up to `entries_max` so a member
//! that comes back can catch up from it. The request ids of trimmed entries
//! stay known (Ceph's dup entries): the shard makes each trim durable with
//! a record of the ids it trimmed, and a restarted OSD loads them again.
//!
//! Invariants: versions strictly increase from `tail` (exclusive) to
//! `head` (inclusive); the log holds at most `entries_max` entries; every
//! entry's `reqid` is in the dup index exactly while the entry is kept; at
//! most `dups_max` trimmed request ids are remembered.

use std::collections::{BTreeMap, VecDeque};

/// Hash maps of the log: foldhash, seeded at random per map, so request
/// ids and object names a client picks cannot be aimed at one bucket
/// without the seed, at a fraction of SipHash's cost per write.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

use sepia_proto::msg::{EVersion, ObjectId, ReqId};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogOp {
    /// The object was created or changed.
    Modify,
    /// The object was removed.
    Delete,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub version: EVersion,
    pub reqid: ReqId,
    pub object: ObjectId,
    pub op: LogOp,
    /// The object's version just before this entry (zero: it never
    /// existed; `None`: not recorded). Peering rolls a divergent write back
    /// to it when the log no longer reaches back that far.
    pub prior_version: Option<EVersion>,
}

/// What a member knows about its copy of the PG.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PgInfo {
    /// Newest entry in the log.
    pub last_update: EVersion,
    /// Every entry up to here is applied to every object (nothing missing).
    pub last_complete: EVersion,
    /// Entries at or before this have been trimmed.
    pub log_tail: EVersion,
}

#[derive(Debug, Clone)]
pub struct PgLog {
    entries: VecDeque<LogEntry>,
    tail: EVersion,
    dups: HashMap<ReqId, EVersion>,
    /// The newest entry of each object in the log.
    newest: HashMap<ObjectId, EVersion>,
    entries_max: usize,
    /// Request ids of trimmed entries, oldest first: a client may resend a
    /// write long after it left the log (its attempt timed out), and it
    /// must still be recognised.
    trimmed_dups: VecDeque<(ReqId, EVersion)>,
    trimmed_index: HashMap<ReqId, EVersion>,
    dups_max: usize,
    /// Trimmed since the shard last took a [`Trim`] to make durable.
    unpersisted: Option<Trim>,
}

/// A trim the shard must make durable: log entries up to `to` go, and the
/// request ids of the trimmed entries are recorded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Trim {
    pub to: EVersion,
    pub dups: Vec<(ReqId, EVersion)>,
    /// Every member had applied what was trimmed (a clean PG's trim):
    /// the records of removals up to `to` are no longer needed.
    pub clean: bool,
}

impl PgLog {
    pub fn new(entries_max: usize, dups_max: usize) -> PgLog {
        assert!(entries_max > 0);
        PgLog {
            entries: VecDeque::new(),
            tail: EVersion::default(),
            dups: HashMap::default(),
            newest: HashMap::default(),
            entries_max,
            trimmed_dups: VecDeque::new(),
            trimmed_index: HashMap::default(),
            dups_max,
            unpersisted: None,
        }
    }

    /// The log as loaded from the store: its tail, its entries and the
    /// request ids of entries trimmed before (oldest first). The entries
    /// come in version order (the loader refuses a log that does not);
    /// any at or before the tail are already trimmed and are skipped.
    pub fn load(entries_max: usize, dups_max: usize, tail: EVersion, entries: Vec<LogEntry>, dups: Vec<(ReqId, EVersion)>) -> PgLog {
        let mut log = PgLog::new(entries_max, dups_max);
        log.tail = tail;
        for (r, v) in dups {
            if v <= tail {
                log.remember_trimmed(r, v);
            }
        }
        for e in entries {
            if e.version > log.tail {
                log.append(e);
            }
        }
        log
    }

    pub fn head(&self) -> EVersion {
        self.entries.back().map_or(self.tail, |e| e.version)
    }

    pub fn tail(&self) -> EVersion {
        self.tail
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entries(&self) -> impl Iterator<Item = &LogEntry> {
        self.entries.iter()
    }

    /// The version a request already got, if it is still in the log.
    pub fn dup(&self, reqid: &ReqId) -> Option<EVersion> {
        self.dups.get(reqid).or_else(|| self.trimmed_index.get(reqid)).copied()
    }

    /// Appends an entry newer than `head`, trimming the oldest beyond the
    /// bound.
    pub fn append(&mut self, entry: LogEntry) {
        assert!(entry.version > self.head(), "log versions must increase");
        self.dups.insert(entry.reqid, entry.version);
        self.newest.insert(entry.object.clone(), entry.version);
        self.entries.push_back(entry);
        while self.entries.len() > self.entries_max {
            self.trim_oldest();
        }
    }

    /// Trims every entry at or before `v`, but never the newest entry.
    pub fn trim_to(&mut self, v: EVersion) {
        while self.entries.len() > 1 && self.entries.front().is_some_and(|e| e.version <= v) {
            self.trim_oldest();
        }
    }

    /// The version to trim to so that `keep` entries remain (`None` if
    /// there are not more than that).
    pub fn trim_point_keeping(&self, keep: usize) -> Option<EVersion> {
        let n = self.entries.len();
        (n > keep && keep > 0).then(|| self.entries[n - keep - 1].version)
    }

    fn trim_oldest(&mut self) {
        let old = self.entries.pop_front().expect("non-empty");
        if self.dups.get(&old.reqid) == Some(&old.version) {
            self.dups.remove(&old.reqid);
        }
        if self.newest.get(&old.object) == Some(&old.version) {
            self.newest.remove(&old.object);
        }
        self.remember_trimmed(old.reqid, old.version);
        let trim = self.unpersisted.get_or_insert_with(Trim::default);
        trim.to = old.version;
        if !is_recovery(&old.reqid) && self.dups_max > 0 {
            trim.dups.push((old.reqid, old.version));
            if trim.dups.len() > 2 * self.dups_max {
                // Only the newest `dups_max` matter; drop in bulk.
                trim.dups.drain(..self.dups_max);
            }
        }
        self.tail = old.version;
    }

    /// Marks what is trimmed and not yet taken as a clean PG's trim.
    pub fn mark_clean_trim(&mut self) {
        if let Some(t) = self.unpersisted.as_mut() {
            t.clean = true;
        }
    }

    /// What was trimmed since the last call, for the shard to make durable.
    pub fn take_trim(&mut self) -> Option<Trim> {
        let mut t = self.unpersisted.take()?;
        if t.dups.len() > self.dups_max {
            t.dups.drain(..t.dups.len() - self.dups_max);
        }
        Some(t)
    }

    fn remember_trimmed(&mut self, reqid: ReqId, version: EVersion) {
        // Recovery pushes carry no request (client 0).
        if is_recovery(&reqid) || self.dups_max == 0 {
            return;
        }
        // One record per id, its newest application: a second copy would
        // take the index entry with it when the first is evicted.
        match self.trimmed_index.get(&reqid) {
            Some(&have) if have >= version => return,
            // Applied again later (a resend after its record was gone):
            // rare, so the scan is affordable.
            Some(_) => self.trimmed_dups.retain(|(r, _)| *r != reqid),
            None => {}
        }
        self.trimmed_index.insert(reqid, version);
        self.trimmed_dups.push_back((reqid, version));
        while self.trimmed_dups.len() > self.dups_max {
            let (r, v) = self.trimmed_dups.pop_front().expect("non-empty");
            if self.trimmed_index.get(&r) == Some(&v) {
                self.trimmed_index.remove(&r);
            }
        }
    }

    /// The request ids of trimmed entries still remembered, oldest first
    /// (a backfill hands them to the member it fills).
    pub fn trimmed_dups(&self) -> Vec<(ReqId, EVersion)> {
        self.trimmed_dups.iter().copied().collect()
    }

    /// Replaces the whole log with another member's (a backfill): entries
    /// after `tail`, and that member's trimmed request ids, which become a
    /// trim for the shard to make durable. Request ids of the dropped
    /// entries are forgotten (a divergent write was never acknowledged).
    pub fn replace(&mut self, tail: EVersion, entries: Vec<LogEntry>, dups: Vec<(ReqId, EVersion)>) {
        self.entries.clear();
        self.dups.clear();
        self.newest.clear();
        self.tail = tail;
        // Ids we trimmed past the new tail are entries of the new log (or
        // were divergent): only the new log speaks for them.
        self.trimmed_dups.retain(|(_, v)| *v <= tail);
        self.trimmed_index = self.trimmed_dups.iter().copied().collect();
        for e in entries {
            if e.version > self.head() {
                self.dups.insert(e.reqid, e.version);
                self.newest.insert(e.object.clone(), e.version);
                self.entries.push_back(e);
            }
        }
        while self.entries.len() > self.entries_max {
            self.trim_oldest();
        }
        let mut kept: Vec<(ReqId, EVersion)> = dups.into_iter().filter(|(r, v)| *v <= self.tail && !is_recovery(r)).collect();
        if kept.len() > self.dups_max {
            kept.drain(..kept.len() - self.dups_max);
        }
        // Ours and theirs overlap (both trimmed the same entries): one
        // record each, the newest `dups_max` by version. Adding theirs one
        // by one evicted our older copy of a shared id, and its index entry
        // with it, so a late resend of that write was applied again.
        let mut all: Vec<(ReqId, EVersion)> = self.trimmed_dups.drain(..).chain(kept.iter().copied()).collect();
        // Newest first, so the first record of an id is the one kept.
        all.sort_by_key(|&(_, v)| std::cmp::Reverse(v));
        let mut seen = std::collections::HashSet::new();
        all.retain(|(r, _)| seen.insert(*r));
        all.truncate(self.dups_max);
        all.reverse();
        self.trimmed_index = all.iter().copied().collect();
        self.trimmed_dups = all.into();
        let trim = self.unpersisted.get_or_insert_with(Trim::default);
        // The shard drops every log key when it persists a replaced log,
        // so the trim names the new tail.
        trim.to = self.tail;
        trim.dups.extend(kept);
        if trim.dups.len() > self.dups_max {
            let n = trim.dups.len() - self.dups_max;
            trim.dups.drain(..n);
        }
    }

    /// Entries newer than `v`, oldest first (`None` if `v` is older than
    /// the tail: the caller needs a backfill, not a log).
    pub fn since(&self, v: EVersion) -> Option<Vec<LogEntry>> {
        if v < self.tail {
            return None;
        }
        Some(self.entries.iter().filter(|e| e.version > v).cloned().collect())
    }

    /// Drops entries newer than `v` (divergent after a primary change) and
    /// returns them, newest first.
    pub fn rewind_to(&mut self, v: EVersion) -> Vec<LogEntry> {
        let mut dropped = Vec::new();
        while self.entries.back().is_some_and(|e| e.version > v) {
            let e = self.entries.pop_back().expect("checked");
            if self.dups.get(&e.reqid) == Some(&e.version) {
                self.dups.remove(&e.reqid);
            }
            self.newest.remove(&e.object);
            dropped.push(e);
        }
        // An object of a dropped entry may still have an older one.
        for e in &dropped {
            if !self.newest.contains_key(&e.object) {
                if let Some(older) = self.entries.iter().rev().find(|x| x.object == e.object) {
                    self.newest.insert(e.object.clone(), older.version);
                }
            }
        }
        dropped
    }

    /// The version of the newest entry for `object` in the log, if any.
    pub fn newest_of(&self, object: &ObjectId) -> Option<EVersion> {
        self.newest.get(object).copied()
    }

    /// The newest version of each object among entries newer than `v`.
    pub fn objects_since(&self, v: EVersion) -> BTreeMap<ObjectId, (EVersion, LogOp)> {
        let mut out = BTreeMap::new();
        for e in self.entries.iter().filter(|e| e.version > v) {
            out.insert(e.object.clone(), (e.version, e.op.clone()));
        }
        out
    }

    /// Our own invariants.
    pub fn invariants(&self) {
        let mut prev = self.tail;
        for e in &self.entries {
            assert!(e.version > prev, "log out of order");
            prev = e.version;
        }
        assert!(self.entries.len() <= self.entries_max);
        assert!(self.trimmed_dups.len() <= self.dups_max && self.trimmed_index.len() <= self.trimmed_dups.len());
        assert!(self.trimmed_dups.iter().all(|(_, v)| *v <= self.tail), "a remembered trimmed id is newer than the tail");
        assert_eq!(self.trimmed_index.len(), self.trimmed_dups.len(), "one remembered record per trimmed id");
        assert!(self.trimmed_dups.iter().all(|(r, v)| self.trimmed_index.get(r) == Some(v)), "a remembered trimmed id is missing from the index");
        for (r, v) in &self.dups {
            assert!(self.entries.iter().any(|e| e.reqid == *r && e.version == *v), "dup without entry");
        }
        // Every entry's object is indexed at a version no older, and every
        // index entry is an entry of its object: the index holds exactly
        // each object's newest entry (without allocating, per step).
        assert!(self.entries.iter().all(|e| self.newest.get(&e.object).is_some_and(|v| *v >= e.version)), "the newest-entry index misses an entry");
        assert!(
            self.newest.iter().all(|(o, v)| self.entries.binary_search_by_key(v, |e| e.version).is_ok_and(|i| self.entries[i].object == *o)),
            "the newest-entry index names an entry that is not there"
        );
    }
}

/// Recovery pushes are logged without a request (client 0, tid 0): there
/// is nothing to answer a resend of.
fn is_recovery(reqid: &ReqId) -> bool {
    reqid.client == 0 && reqid.tid == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(epoch: u32, v: u64, tid: u64) -> LogEntry {
        LogEntry { version: EVersion { epoch, version: v }, reqid: ReqId { client: 1, tid }, object: ObjectId::new(format!("o{v}")), op: LogOp::Modify, prior_version: None }
    }

    #[test]
    fn newest_entry_per_object_follows_appends_trims_and_rewinds() {
        let on = |v: u64, name: &str| LogEntry { object: ObjectId::new(name), ..entry(1, v, v) };
        let (a, b) = (ObjectId::new("a"), ObjectId::new("b"));
        let at = |v| Some(EVersion { epoch: 1, version: v });
        let mut log = PgLog::new(4, 10);
        for (v, name) in [(1, "a"), (2, "b"), (3, "a"), (4, "a")] {
            log.append(on(v, name));
            log.invariants();
        }
        assert_eq!((log.newest_of(&a), log.newest_of(&b)), (at(4), at(2)));
        // Rewinding past a's newest entries finds its older one.
        log.rewind_to(EVersion { epoch: 1, version: 2 });
        log.invariants();
        assert_eq!((log.newest_of(&a), log.newest_of(&b)), (at(1), at(2)));
        // Trimming an object's only entry forgets it.
        log.trim_to(EVersion { epoch: 1, version: 1 });
        log.invariants();
        assert_eq!((log.newest_of(&a), log.newest_of(&b)), (None, at(2)));
        log.replace(EVersion { epoch: 1, version: 5 }, vec![on(6, "a")], Vec::new());
        log.invariants();
        assert_eq!((log.newest_of(&a), log.newest_of(&b)), (at(6), None));
    }

    #[test]
    fn append_trim_since_rewind() {
        let mut log = PgLog::new(3, 10);
        for v in 1..=5 {
            log.append(entry(1, v, v));
            log.invariants();
        }
        assert_eq!(log.len(), 3);
        assert_eq!(log.tail(), EVersion { epoch: 1, version: 2 });
        assert!(log.since(EVersion { epoch: 1, version: 1 }).is_none(), "before the tail: backfill");
        assert_eq!(log.since(EVersion { epoch: 1, version: 3 }).unwrap().len(), 2);
        assert_eq!(log.dup(&ReqId { client: 1, tid: 5 }), Some(EVersion { epoch: 1, version: 5 }));
        assert_eq!(log.dup(&ReqId { client: 1, tid: 1 }), Some(EVersion { epoch: 1, version: 1 }), "a trimmed write is still recognised when resent");
        assert_eq!(log.dup(&ReqId { client: 1, tid: 99 }), None);
        let dropped = log.rewind_to(EVersion { epoch: 1, version: 3 });
        assert_eq!(dropped.len(), 2);
        assert_eq!(log.head(), EVersion { epoch: 1, version: 3 });
        log.invariants();
    }

    /// A backfill hands over the source's trimmed ids, which overlap ours;
    /// with both lists full, a shared id must survive the merge (seed 1439
    /// of the PG simulation: it did not, and a resend was applied twice).
    #[test]
    fn replaced_log_keeps_ids_both_sides_remember() {
        let dups_max = 4;
        let mut log = PgLog::new(2, dups_max);
        for v in 1..=6 {
            log.append(entry(1, v, v));
        }
        // We trimmed 1..=4 and remember all four.
        let shared = ReqId { client: 1, tid: 4 };
        assert_eq!(log.dup(&shared), Some(EVersion { epoch: 1, version: 4 }));
        // The source trimmed 3..=6 (the same writes and two more).
        let theirs: Vec<(ReqId, EVersion)> = (3..=6).map(|v| (ReqId { client: 1, tid: v }, EVersion { epoch: 1, version: v })).collect();
        log.replace(EVersion { epoch: 1, version: 6 }, vec![entry(1, 7, 7)], theirs);
        log.invariants();
        for tid in 3..=7 {
            assert!(log.dup(&ReqId { client: 1, tid }).is_some(), "tid {tid} is remembered");
        }
        assert_eq!(log.trimmed_dups().len(), dups_max, "one record per id, the newest ones");
        // Reloading records that repeat themselves keeps them too.
        let repeated: Vec<(ReqId, EVersion)> = log.trimmed_dups().into_iter().chain(log.trimmed_dups()).collect();
        let reloaded = PgLog::load(2, dups_max, log.tail(), log.entries().cloned().collect(), repeated);
        for tid in 3..=7 {
            assert!(reloaded.dup(&ReqId { client: 1, tid }).is_some(), "tid {tid} is remembered after a reload");
        }
    }
}
