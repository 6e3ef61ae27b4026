//! Backfill's vocabulary: positions in a PG's object order, the walk the
//! primary runs for one member that the log cannot catch up, and the
//! comparison of one batch of listings.
//!
//! Objects are walked in the order of their store keys
//! ([`sort_key`]: namespace, U+001F, name; the name alone without a
//! namespace), the order the store lists a collection in. A member's
//! `last_backfill` ([`BackfillPos`]) says which of its objects are
//! trustworthy: every object whose key is at or before it is identical to
//! the primary's; objects after it may be stale, missing or extra. `Max`
//! means the member is complete.
//!
//! A walk ([`Walk`]) fills one *target* from one *source* (the primary
//! fills a replica from its own store, or a primary that is itself behind
//! fills itself from a complete member before it activates). Each batch:
//! list up to `backfill_scan_max` objects of the source after the cursor
//! (name and version), list the target over the same range, move every
//! object whose versions differ or that only one side has (bounded in
//! flight), then advance the cursor, which the target makes durable.
//!
//! Invariants: a walk's cursor only moves forward within an interval; the
//! range of the batch being moved is `(cursor, end]` with `cursor < end`;
//! objects in flight all lie in that range.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use sepia_proto::msg::{EVersion, ObjectId, ReqId};
use sepia_proto::osdmap::OsdId;

/// A position in a PG's object order (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BackfillPos {
    /// Before every object: nothing is backfilled.
    Min,
    /// Every object whose key is at or before this one.
    Key(String),
    /// After every object: complete.
    Max,
}

impl Default for BackfillPos {
    /// A member is complete unless a backfill said otherwise.
    fn default() -> Self {
        BackfillPos::Max
    }
}

/// The store key an object sorts by (the same as the shard's store key).
pub fn sort_key(o: &ObjectId) -> String {
    if o.namespace.is_empty() {
        o.name.clone()
    } else {
        format!("{}\u{1f}{}", o.namespace, o.name)
    }
}

/// The object a store key names (the locator only chose the PG).
pub fn object_of_key(key: &str) -> ObjectId {
    match key.split_once('\u{1f}') {
        Some((ns, name)) => ObjectId { name: name.to_string(), locator: String::new(), namespace: ns.to_string() },
        None => ObjectId::new(key),
    }
}

/// The position of one object.
pub fn pos_of(o: &ObjectId) -> BackfillPos {
    BackfillPos::Key(sort_key(o))
}

/// How a member that the log cannot catch up is activated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackfillPlan {
    /// Drop the whole log and take the primary's from `tail` on (the
    /// member's log does not reach the primary's); otherwise the usual
    /// rewind and append apply.
    pub reset_log: bool,
    pub tail: EVersion,
    /// Where the walk resumes.
    pub last_backfill: BackfillPos,
    /// With `reset_log`: the primary's trimmed request ids, so writes
    /// trimmed before the new tail stay recognised when resent.
    pub dups: Vec<(ReqId, EVersion)>,
}

/// One listed object: its name and the version of its last write (zero:
/// unknown, which never compares equal).
pub type Listed = (ObjectId, EVersion);

#[derive(Debug)]
pub(super) enum Step {
    /// Waiting for the source's listing after the cursor.
    ListSource,
    /// Waiting for the target's listing of `(cursor, end]`.
    ListTarget { source: Vec<Listed>, end: BackfillPos },
    /// Moving what differs: `queue` still to start (object, whether the
    /// source has it), `in_flight` started and not yet acknowledged
    /// (whether the source has it, and the bytes of its push once sent).
    Move { end: BackfillPos, queue: VecDeque<(ObjectId, bool)>, in_flight: BTreeMap<ObjectId, (bool, Option<usize>)> },
    /// The walk reached the end; the target was sent the primary's log
    /// and has not acknowledged yet.
    Finish,
}

#[derive(Debug)]
pub(super) struct Walk {
    pub source: OsdId,
    pub target: OsdId,
    /// The target's `last_backfill` as far as the primary knows.
    pub cursor: BackfillPos,
    pub step: Step,
    /// Objects written since the source listing of this batch was asked
    /// for: the listing may not show those writes, so they are moved
    /// whatever the versions say.
    pub dirty: BTreeSet<ObjectId>,
    /// The source's trimmed request ids, sent with its last listing.
    pub source_dups: Vec<(ReqId, EVersion)>,
    /// The target's copies after the cursor as peering found them: when
    /// it was complete, every object it did not lack and that no entry
    /// after `common` touched is at its version as of `common`, so it can
    /// serve a copy the primary lacks at a version up to there (the walk
    /// does not change them before the primary lacks nothing).
    pub vouched_upto: Option<EVersion>,
    pub unvouched: BTreeSet<ObjectId>,
    /// Objects the source lacks that the target holds at the version the
    /// source needs (its own log said so when the walk began).
    pub target_holds: BTreeSet<ObjectId>,
    /// Set by every retry tick, cleared by progress: two ticks without
    /// progress resend the current step.
    pub idle_ticks: u32,
    /// The current step's request went out.
    pub requested: bool,
}

impl Walk {
    pub fn new(source: OsdId, target: OsdId, cursor: BackfillPos) -> Walk {
        Walk { source, target, cursor, step: Step::ListSource, dirty: BTreeSet::new(), source_dups: Vec::new(), vouched_upto: None, unvouched: BTreeSet::new(), target_holds: BTreeSet::new(), idle_ticks: 0, requested: false }
    }

    /// The end of the batch being moved (writes to objects in
    /// `(cursor, end]` wait until it is done), if any.
    pub fn batch_end(&self) -> Option<&BackfillPos> {
        match &self.step {
            Step::ListTarget { end, .. } | Step::Move { end, .. } => Some(end),
            Step::ListSource | Step::Finish => None,
        }
    }

    /// True when a write to `object` must wait for this batch.
    pub fn blocks(&self, object: &ObjectId) -> bool {
        let p = pos_of(object);
        self.batch_end().is_some_and(|end| p > self.cursor && p <= *end)
    }

    /// True when the target holds `object` as the primary does (so a write
    /// to it is replicated with its data).
    pub fn covers(&self, object: &ObjectId) -> bool {
        pos_of(object) <= self.cursor
    }

    /// True when the target's copy of `object` is the one at `need`.
    pub fn vouches(&self, object: &ObjectId, need: EVersion) -> bool {
        self.covers(object) || (need != EVersion::default() && self.vouched_upto.is_some_and(|c| need <= c) && !self.unvouched.contains(object))
    }
}

/// What to move in a batch `(after, end]`: objects whose versions differ or
/// that only one side has, and the dirty ones; `true` if the source has it.
pub fn diff(source: &[Listed], target: &[Listed], dirty: &BTreeSet<ObjectId>, after: &BackfillPos, end: &BackfillPos) -> VecDeque<(ObjectId, bool)> {
    let in_range = |o: &ObjectId| {
        let p = pos_of(o);
        p > *after && p <= *end
    };
    let src: BTreeMap<String, (&ObjectId, EVersion)> = source.iter().filter(|(o, _)| in_range(o)).map(|(o, v)| (sort_key(o), (o, *v))).collect();
    let tgt: BTreeMap<String, (&ObjectId, EVersion)> = target.iter().filter(|(o, _)| in_range(o)).map(|(o, v)| (sort_key(o), (o, *v))).collect();
    let mut out: BTreeMap<String, (ObjectId, bool)> = BTreeMap::new();
    for (k, (o, v)) in &src {
        let same = tgt.get(k).is_some_and(|(_, tv)| tv == v && *v != EVersion::default());
        if !same {
            out.insert(k.clone(), ((*o).clone(), true));
        }
    }
    for (k, (o, _)) in &tgt {
        if !src.contains_key(k) {
            out.insert(k.clone(), ((*o).clone(), false));
        }
    }
    // A dirty object is read whatever the listings said (the source's
    // listing may predate its write).
    for o in dirty.iter().filter(|o| in_range(o)) {
        out.insert(sort_key(o), (o.clone(), true));
    }
    out.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(n: u64) -> EVersion {
        EVersion { epoch: 1, version: n }
    }

    #[test]
    fn positions_order_like_store_keys() {
        assert!(BackfillPos::Min < pos_of(&ObjectId::new("a")));
        assert!(pos_of(&ObjectId::new("zzz")) < BackfillPos::Max);
        let mut ns = ObjectId::new("z");
        ns.namespace = "a".into();
        // "a\x1fz" sorts before "b", as in the store.
        assert!(pos_of(&ns) < pos_of(&ObjectId::new("b")));
        assert_eq!(object_of_key(&sort_key(&ns)), ns);
    }

    #[test]
    fn diff_moves_what_differs_and_removes_extras() {
        let o = |s: &str| ObjectId::new(s);
        let source = vec![(o("a"), v(1)), (o("b"), v(2)), (o("c"), v(3)), (o("z"), v(9))];
        let target = vec![(o("a"), v(1)), (o("b"), v(1)), (o("bb"), v(5)), (o("c"), EVersion::default())];
        let dirty = BTreeSet::from([o("a"), o("bb"), o("zz")]);
        let end = pos_of(&o("y"));
        let moved: Vec<(ObjectId, bool)> = diff(&source, &target, &dirty, &BackfillPos::Min, &end).into_iter().collect();
        assert_eq!(moved, vec![(o("a"), true), (o("b"), true), (o("bb"), true), (o("c"), true)]);
        let moved: Vec<(ObjectId, bool)> = diff(&source, &target, &BTreeSet::new(), &BackfillPos::Min, &end).into_iter().collect();
        assert_eq!(moved, vec![(o("b"), true), (o("bb"), false), (o("c"), true)]);
    }
}
