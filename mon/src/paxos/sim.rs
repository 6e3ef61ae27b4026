//! A deterministic simulation of three monitors: the same Paxos core
//! ([`PaxosCore`]: omnipaxos, compaction, membership changes) and the same
//! map services the daemon runs, driven the way the daemon drives them,
//! over a simulated network that drops and delays messages, with monitors
//! that crash (losing everything but their store: the production
//! `FileStorage` on temporary files without fsync) and restart. Monitors
//! compact their logs every few entries, so a restart loads a snapshot and
//! replays the tail, and a monitor that was down while the others
//! compacted catches up from a snapshot the leader sends. Now and then a
//! client removes a monitor (`mon rm`: the configuration ends, the
//! removed one stops), and later the removed one's store is wiped and it
//! is added back as a new member (`mon add`, a new node id) that joins the
//! next configuration from a snapshot.
//! After every step it checks that no two monitors ever hold different
//! OSDMaps (or MonMaps) for the same epoch, that no two monitors ever
//! applied different entries at one log index, and that every snapshot a
//! monitor installs or takes at index N is the same state. Everything
//! random comes from one seed, so a failing seed replays exactly
//! (`SEPIA_MON_SIM_SEED=N`).

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};

use omnipaxos::messages::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sepia_proto::monmap::MonMap;
use sepia_proto::msg::Command;
use sepia_proto::osdmap::OsdMap;

use super::{Cmd, Membership, PaxosCore};
use crate::daemon::{Committed, Consensus};
use crate::services::service::{MonConfig, MonServices, QuorumInfo};
use crate::services::state::{AuthEntry, Batch, ClusterState};

/// Monitor slots; a slot's monitor may be removed and a new member (new
/// node id, new store) started in it.
const SLOTS: usize = 3;
/// Compact after this many entries: small, so snapshots happen all the time.
const COMPACT_MIN_ENTRIES: usize = 4;

fn name(slot: usize) -> String {
    char::from(b'a' + slot as u8).to_string()
}

/// What happened in a monitor's `apply`, for the world's checks.
#[derive(Default)]
struct Applied {
    /// (log index, entry) for each entry applied.
    entries: Vec<(u64, Vec<u8>)>,
    /// (log index, state digest) for each snapshot installed or taken.
    snapshots: Vec<(u64, u64)>,
    /// Snapshots installed that skipped entries this monitor never applied.
    catch_ups: u64,
    /// Configurations this monitor ended (a MonMap change applied).
    switches: u64,
}

fn digest(state: &ClusterState) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    state.snapshot().hash(&mut h);
    h.finish()
}

struct Mon {
    core: PaxosCore,
    state: ClusterState,
    services: MonServices,
    was_leader: bool,
    bootstrap: Option<Vec<u8>>,
}

/// Starts the monitor whose store is `dir`: the membership it stored, or
/// `join` (a new member), or the initial one of slot `slot`.
fn new_mon(dir: &Path, slot: usize, join: Option<Membership>) -> Mon {
    std::fs::create_dir_all(dir).expect("sim dir");
    let initial = Membership {
        config_id: 1,
        me: slot as u64 + 1,
        nodes: (0..SLOTS).map(|r| (r as u64 + 1, format!("127.0.0.1:{}", 3300 + r))).collect(),
        previous: None,
    };
    let membership = match Membership::load(dir).expect("sim membership") {
        Some(m) => m,
        None => {
            let m = join.unwrap_or(initial);
            m.store(dir).expect("sim membership store");
            m
        }
    };
    let me = membership.me;
    let mut services = MonServices::new(me, MonConfig { crush_location_type: "osd".into(), ..MonConfig::default() });
    let bootstrap = (membership.config_id == 1 && membership.previous.is_none() && me <= SLOTS as u64).then(|| {
        let monmap = MonMap::new([7; 16], &(0..SLOTS).map(|r| (name(r), format!("127.0.0.1:{}", 3300 + r))).collect::<Vec<_>>(), 0).expect("monmap");
        let osdmap = OsdMap::new([7; 16], crush_simd::edit::default_map("osd").expect("crush"), 0);
        // The same admin key everywhere: only one bootstrap entry ever applies.
        let admin = AuthEntry { key: "AQAAAAAAAAAAABAAAAAAAAAAAAAAAAAAAAAAAA==".into(), caps: [("mon".to_string(), "allow *".to_string())].into() };
        services.bootstrap_entry(monmap, &osdmap, vec![("client.admin".into(), admin)])
    });
    // Crashes here lose the process, not the page cache: no fsync needed.
    let core = PaxosCore::open(dir, membership, COMPACT_MIN_ENTRIES, false).expect("sim core");
    Mon { core, state: ClusterState::new(), services, was_leader: false, bootstrap }
}

impl Mon {
    fn quorum(&self) -> QuorumInfo {
        QuorumInfo {
            have_quorum: self.core.have_quorum() && self.state.bootstrapped,
            is_leader: self.core.is_leader(),
            members: Vec::new(),
            leader: self.core.leader().map(|p| p.to_string()),
            election_epoch: self.core.election_epoch(),
            me: self.core.membership().me.to_string(),
        }
    }

    /// What the daemon does on a tick (leadership, bootstrap, proposals).
    fn tick(&mut self, now: u64) {
        self.core.tick();
        let leader = self.core.is_leader() && self.core.have_quorum();
        if leader && !self.was_leader {
            self.services.become_leader(&self.state, now);
        } else if !leader && self.was_leader {
            self.services.lose_leadership();
        }
        self.was_leader = leader;
        if leader && !self.state.bootstrapped {
            if let Some(b) = self.bootstrap.take() {
                let _ = self.core.propose(b);
            }
        }
        if leader {
            if let Some(entry) = self.services.flush(&self.state, now) {
                if self.core.propose(entry).is_err() {
                    self.services.lose_leadership();
                    self.was_leader = false;
                }
            }
            self.services.take_immediate();
        }
        self.services.tick(&self.state, now);
    }

    /// Applies newly decided entries, compacts, and switches configuration,
    /// as the daemon does.
    fn apply(&mut self) -> Applied {
        let mut out = Applied::default();
        let steps = self.core.take_committed();
        for step in steps {
            match step {
                Committed::Entry(bytes) => {
                    out.entries.push((self.state.applied, bytes.clone()));
                    let applied = self.state.apply_entry(&bytes).map(|_| ()).map_err(|e| e.to_string());
                    let batch = Batch::decode(&bytes).ok();
                    self.services.on_committed(&self.state, batch.as_ref(), applied);
                }
                Committed::State(snap) => {
                    if snap.applied > self.state.applied {
                        out.catch_ups += u64::from(self.state.applied > 0 || self.state.bootstrapped);
                    }
                    out.snapshots.push((snap.applied, digest(&snap)));
                    self.state = *snap;
                    self.services.on_committed(&self.state, None, Ok(()));
                }
            }
            // A MonMap change ends the configuration's log, as in the daemon.
            if self.core.ends_config(&self.state) {
                out.switches += 1;
                break;
            }
        }
        self.core.after_apply(&self.state).expect("a configuration switch");
        if !self.core.removed() {
            assert_eq!(self.state.applied, self.core.taken() as u64, "the state reflects exactly the decided prefix");
        }
        if self.core.compact(&self.state).is_some() {
            out.snapshots.push((self.state.applied, digest(&self.state)));
        }
        if self.was_leader {
            self.services.invariants(&self.state);
        }
        out
    }
}

struct World {
    rng: StdRng,
    /// The monitor running in each slot.
    mons: Vec<Option<Mon>>,
    /// Each slot's store, and how many stores it has had.
    dirs: Vec<(PathBuf, u32)>,
    /// Slots whose monitor was removed from the monmap.
    removed: Vec<bool>,
    /// Node ids that ever ran: an id is never started again on a new store.
    started: std::collections::BTreeSet<u64>,
    root: PathBuf,
    /// (deliver at step, configuration, message).
    net: VecDeque<(u64, u32, Message<Cmd>)>,
    step: u64,
    /// Every OSDMap / MonMap epoch any monitor reached, with the map.
    seen: BTreeMap<u32, OsdMap>,
    seen_monmaps: BTreeMap<u32, MonMap>,
    /// Every entry any monitor applied, by log index.
    log: BTreeMap<u64, Vec<u8>>,
    /// The state digest of every snapshot taken or installed, by index.
    snapshots: BTreeMap<u64, u64>,
    /// Snapshots that brought a lagging, restarted or new monitor forward.
    catch_ups: u64,
    compactions: u64,
    /// Members added back after their store was wiped.
    rejoins: u64,
    requests: u64,
}

impl World {
    fn new(seed: u64) -> World {
        let root = std::env::temp_dir().join(format!("sepia-mon-sim-{}-{seed}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let dirs: Vec<(PathBuf, u32)> = (0..SLOTS).map(|s| (root.join(format!("{s}-0")), 0)).collect();
        World {
            rng: StdRng::seed_from_u64(seed),
            mons: (0..SLOTS).map(|s| Some(new_mon(&dirs[s].0, s, None))).collect(),
            dirs,
            removed: vec![false; SLOTS],
            started: (1..=SLOTS as u64).collect(),
            root,
            net: VecDeque::new(),
            step: 0,
            seen: BTreeMap::new(),
            seen_monmaps: BTreeMap::new(),
            log: BTreeMap::new(),
            snapshots: BTreeMap::new(),
            catch_ups: 0,
            compactions: 0,
            rejoins: 0,
            requests: 0,
        }
    }

    fn collect_messages(&mut self) {
        let mut out = Vec::new();
        for m in self.mons.iter_mut().flatten() {
            out.extend(m.core.take_outgoing());
        }
        for (c, msg) in out {
            // Dropped, delayed, or on time.
            if self.rng.gen_bool(0.1) {
                continue;
            }
            let delay = if self.rng.gen_bool(0.2) { self.rng.gen_range(1..8) } else { 0 };
            self.net.push_back((self.step + delay, c, msg));
        }
    }

    fn deliver(&mut self) {
        let mut later = VecDeque::new();
        while let Some((at, c, msg)) = self.net.pop_front() {
            if at > self.step {
                later.push_back((at, c, msg));
                continue;
            }
            let to = msg.get_receiver();
            let from = msg.get_sender();
            if let Some(m) = self.mons.iter_mut().flatten().find(|m| m.core.membership().me == to) {
                m.core.handle(from, c, msg);
            }
        }
        self.net = later;
    }

    /// The newest state any running monitor holds (by MonMap epoch, then
    /// by log index).
    fn newest(&self) -> Option<&ClusterState> {
        self.mons.iter().flatten().map(|m| &m.state).filter(|s| s.bootstrapped).max_by_key(|s| (s.monmap.epoch, s.applied))
    }

    /// A client command to the monitor in `slot`.
    fn command(&mut self, slot: usize, args: &[&str], now: u64) {
        if let Some(m) = self.mons[slot].as_mut() {
            let quorum = m.quorum();
            self.requests += 1;
            let cmd = Command { tid: self.requests, args: args.iter().map(|a| a.to_string()).collect(), json: false };
            let _ = m.services.handle_command(&m.state, &quorum, &cmd, self.requests, now);
        }
    }

    /// Membership changes: remove a member now and then; wipe a removed
    /// one and add it back; start the new member once its add committed.
    fn membership(&mut self, event: u32, slot: usize, now: u64) {
        let Some(newest) = self.newest() else { return };
        let members: Vec<String> = newest.monmap.mons.iter().map(|m| m.name.clone()).collect();
        let joining = newest.mon_ids_for(&newest.monmap);
        let config_id = newest.mon_config;
        let (members_now, full) = (members.clone(), members.len() == SLOTS);
        match event {
            // `mon rm`: only from a full monmap (a majority of two is
            // still a majority of the three the others can restart).
            26 if full => {
                let victim = name(self.rng.gen_range(0..SLOTS));
                self.command(slot, &["mon", "rm", &victim], now);
            }
            // `mon add` for a slot whose monitor is gone from the monmap:
            // its store is wiped first.
            27..=30 => {
                for s in 0..SLOTS {
                    if !members_now.contains(&name(s)) {
                        self.mons[s] = None;
                        self.removed[s] = true;
                        let gen = self.dirs[s].1 + 1;
                        let addr = format!("127.0.0.1:{}", 4000 + s as u32 + 10 * gen);
                        self.command(slot, &["mon", "add", &name(s), &addr], now);
                    }
                }
            }
            _ => {}
        }
        // A slot whose name is back in the monmap under a new id starts
        // its new member with a new store, as `--join` does.
        for s in 0..SLOTS {
            let Some((id, _)) = joining.iter().find(|(_, m)| m.name == name(s)) else { continue };
            let running = self.mons[s].as_ref().map(|m| m.core.membership().me);
            if self.removed[s] && running != Some(*id) && self.started.insert(*id) {
                let gen = self.dirs[s].1 + 1;
                self.dirs[s] = (self.root.join(format!("{s}-{gen}")), gen);
                let nodes = joining.iter().map(|(i, m)| (*i, m.addr.clone())).collect();
                let m = Membership { config_id, me: *id, nodes, previous: None };
                self.mons[s] = Some(new_mon(&self.dirs[s].0, s, Some(m)));
                self.removed[s] = false;
                self.rejoins += 1;
            }
        }
    }

    fn step(&mut self) {
        self.step += 1;
        let now = self.step * 10;
        let event = self.rng.gen_range(0..100);
        let slot = self.rng.gen_range(0..SLOTS);
        match event {
            // Crash: the process state is gone, the store stays.
            0..=1 => {
                self.mons[slot] = None;
            }
            2..=5 => {
                if self.mons[slot].is_none() && !self.removed[slot] {
                    self.mons[slot] = Some(new_mon(&self.dirs[slot].0, slot, None));
                }
            }
            // A client asks some monitor for a change.
            6..=25 => {
                let pool = format!("pool{}", self.requests + 1);
                self.command(slot, &["osd", "pool", "create", &pool, "4"], now);
            }
            _ => {}
        }
        self.membership(event, slot, now);
        for m in self.mons.iter_mut().flatten() {
            m.tick(now);
        }
        self.collect_messages();
        self.deliver();
        self.collect_messages();
        let mut applied = Vec::new();
        for m in self.mons.iter_mut().flatten() {
            applied.push(m.apply());
        }
        for a in applied {
            self.check_applied(a);
        }
        // A removed monitor stops (its store stays until it is re-added).
        for s in 0..SLOTS {
            if self.mons[s].as_ref().is_some_and(|m| m.core.removed()) {
                self.mons[s] = None;
                self.removed[s] = true;
            }
        }
        self.invariants();
    }

    /// No two monitors apply different entries at one index or hold
    /// different snapshots at one index.
    fn check_applied(&mut self, a: Applied) {
        for (idx, entry) in a.entries {
            match self.log.get(&idx) {
                Some(e) => assert!(*e == entry, "two different entries applied at log index {idx}"),
                None => {
                    self.log.insert(idx, entry);
                }
            }
        }
        for (idx, d) in a.snapshots {
            self.compactions += 1;
            match self.snapshots.get(&idx) {
                Some(have) => assert_eq!(*have, d, "two different snapshots at log index {idx}"),
                None => {
                    self.snapshots.insert(idx, d);
                }
            }
        }
        self.catch_ups += a.catch_ups;
    }

    fn invariants(&mut self) {
        // No two monitors ever hold different maps for one epoch.
        for m in self.mons.iter().flatten() {
            if !m.state.bootstrapped {
                continue;
            }
            let e = m.state.osdmap.epoch;
            match self.seen.get(&e) {
                Some(map) => assert!(*map == m.state.osdmap, "two different OSDMaps for epoch {e}"),
                None => {
                    self.seen.insert(e, m.state.osdmap.clone());
                }
            }
            let e = m.state.monmap.epoch;
            match self.seen_monmaps.get(&e) {
                Some(map) => assert!(*map == m.state.monmap, "two different MonMaps for epoch {e}"),
                None => {
                    self.seen_monmaps.insert(e, m.state.monmap.clone());
                }
            }
        }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn run(seed: u64, steps: u64) -> World {
    let mut w = World::new(seed);
    for _ in 0..steps {
        w.step();
    }
    w
}

#[test]
fn monitors_never_commit_different_maps_under_drops_delays_crashes_and_reconfiguration() {
    let seeds: Vec<u64> = match std::env::var("SEPIA_MON_SIM_SEED") {
        Ok(s) => vec![s.parse().expect("a seed number")],
        Err(_) => (0..40).collect(),
    };
    let mut progressed = 0;
    let (mut catch_ups, mut snapshots, mut rejoins, mut removals) = (0, 0, 0, 0);
    let runs = seeds.len();
    for seed in seeds {
        let w = run(seed, 1500);
        let top = w.seen.keys().max().copied().unwrap_or(0);
        let monmap_top = w.seen_monmaps.keys().max().copied().unwrap_or(0);
        if std::env::var("SEPIA_MON_SIM_TRACE").is_ok() {
            let applied: Vec<_> = w.mons.iter().map(|m| m.as_ref().map(|m| (m.core.membership().me, m.state.applied))).collect();
            eprintln!(
                "seed {seed}: {} requests, newest epoch {top}, monmap epoch {monmap_top}, (node, applied) {applied:?}, {} snapshots, {} catch-ups, {} rejoins",
                w.requests, w.compactions, w.catch_ups, w.rejoins
            );
        }
        if top > 3 {
            progressed += 1;
        }
        catch_ups += w.catch_ups;
        snapshots += w.compactions;
        rejoins += w.rejoins;
        removals += u64::from(monmap_top > 1);
    }
    // The checks must be able to fail: the maps really moved on in most
    // runs (a seed may spend long stretches with two monitors down), and
    // monitors really compacted, caught up from snapshots, were removed
    // and rejoined as new members.
    assert!(progressed * 2 > runs, "only {progressed} of {runs} runs committed changes");
    if runs > 1 {
        assert!(snapshots > 0 && catch_ups > 0, "{snapshots} snapshots, {catch_ups} catch-ups from a snapshot");
        assert!(removals > 0 && rejoins > 0, "{removals} runs removed a monitor, {rejoins} rejoins");
    }
}

#[test]
fn a_seed_replays_exactly() {
    let a = run(7, 600);
    let b = run(7, 600);
    let epochs = |w: &World| w.mons.iter().map(|m| m.as_ref().map(|m| (m.state.osdmap.epoch, m.state.monmap.epoch, m.state.applied))).collect::<Vec<_>>();
    assert_eq!(epochs(&a), epochs(&b));
}
