//! The monitors' replicated log: omnipaxos (Sequence Paxos with ballot
//! leader election, crates.io) driven sans-IO from the daemon's task.
//!
//! The daemon calls `tick` on its timer, hands in Paxos messages that
//! arrived on its listener (`incoming`), proposes batches on the leader
//! and takes decided entries in log order. Outgoing messages go to one
//! sender task per peer monitor: a connection to the peer's public
//! address, authenticated like any client, carrying one-way `MonPaxos`
//! frames (serde JSON of omnipaxos's message), bounded queue, dropped when
//! full (Paxos resends what matters).
//!
//! Durability: [`storage::FileStorage`] fsyncs every promise, accepted
//! entry and decided index before omnipaxos sends anything that depends on
//! it. Restart = reopen the file; omnipaxos recovers as a follower and
//! catches up from the leader.
//!
//! Compaction: once `compact_min_entries` decided entries pile up past the
//! last snapshot, the monitor folds them into a [`MonSnapshot`] (the whole
//! [`ClusterState`] after them) with omnipaxos's local `snapshot`, which
//! trims the log below it; the storage rewrites its file without the
//! trimmed entries. Each monitor compacts on its own schedule (a local
//! snapshot needs nobody's acceptance). A peer that lags behind a leader's
//! compacted index is sent the snapshot by omnipaxos itself (its log sync
//! carries a complete or delta `MonSnapshot`), and the daemon installs it
//! as [`Committed::State`]. Restart = the snapshot, then the log's tail.
//!
//! Membership ([`PaxosCore`]): each Paxos configuration has its own log
//! (`paxos.log` for the first, `paxos.cfgN.log` after), and
//! `paxos.current` says which one a monitor runs. A MonMap change (`mon
//! add|rm`) is an ordinary entry; the first one applied ends the
//! configuration (the state's `mon_config` moves on): the daemon applies
//! nothing its log decided after it, and every member of the next
//! configuration starts a fresh log seeded with the state there, at the
//! same index. We do not use omnipaxos's StopSign: in 0.2.4 its slot is
//! counted by a later log sync as an entry, which our simulation caught
//! losing decided entries. The previous configuration keeps running so a
//! member that missed its end still learns it; a monitor the next one
//! leaves out stops. Node ids come from the replicated state and are never
//! reused, so a monitor whose store was lost rejoins only as a new member.
//!
//! Invariants: node ids are nonzero and never reused; only entries
//! omnipaxos reports as decided reach the daemon, each once, in order, and
//! none after its configuration's end; a message whose sender is not the
//! connection's claimed node, whose receiver is not us, or of a
//! configuration we do not run is dropped; a snapshot at index N is exactly
//! the state after applying entries 0..N in order (folding stops at a
//! configuration's end).

#[cfg(test)]
mod sim;
pub mod storage;

use std::collections::BTreeMap;
use std::path::Path;

use omnipaxos::messages::Message;
use omnipaxos::storage::{Entry, Snapshot, Storage, StorageOp};
use omnipaxos::util::{LogEntry, NodeId};
use omnipaxos::{ClusterConfig, OmniPaxos, OmniPaxosConfig, ServerConfig};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tokio::sync::mpsc;

use crate::daemon::{Committed, Consensus};
use crate::services::state::{ClusterState, StateError};
use storage::FileStorage;

pub mod limits {
    #![allow(non_upper_case_globals)]
    /// Paxos messages queued per peer before new ones are dropped.
    pub const peer_queue_max: usize = 4096;
    /// The largest Paxos message we accept (a log catch-up of many batches).
    pub const message_bytes_max: usize = 32 << 20;
    /// Daemon ticks per leader-election round (with the daemon's 50 ms tick:
    /// 200 ms rounds, well above loopback and LAN round trips plus fsync).
    pub const election_ticks: u64 = 4;
    /// Ticks before a lost prepare/promise is resent.
    pub const resend_ticks: u64 = 10;
    /// Decided entries kept in the log past the last snapshot before the
    /// next compaction (Ceph's `paxos_trim_min` is 250): small enough that
    /// a restart replays little, large enough that compaction (a state
    /// fold and a file rewrite) stays rare under a beacon load.
    pub const compact_min_entries_default: usize = 250;
    /// How long a restarting monitor waits for each other monitor's
    /// answer on where the quorum is (a loopback or LAN round trip plus an
    /// authentication; a down monitor refuses the connection at once).
    pub const rejoin_ask_ms: u64 = 2_000;
}

/// One log entry: a serialized batch of monitor transactions, and, on
/// entries read back from [`FileStorage`], where it sits in the log (never
/// sent or stored: equality and serde see only the bytes).
#[derive(Clone, Debug)]
pub struct Cmd(pub Vec<u8>, pub Option<LogPos>);

/// An entry's absolute log index and whether it was decided when read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogPos {
    pub idx: u64,
    pub decided: bool,
}

impl Cmd {
    pub fn new(bytes: Vec<u8>) -> Cmd {
        Cmd(bytes, None)
    }
}

impl PartialEq for Cmd {
    fn eq(&self, other: &Cmd) -> bool {
        self.0 == other.0
    }
}

impl Eq for Cmd {}

impl storage::Positioned for Cmd {
    fn at(mut self, idx: usize, decided: bool) -> Cmd {
        self.1 = Some(LogPos { idx: idx as u64, decided });
        self
    }
}

impl Entry for Cmd {
    type Snapshot = MonSnapshot;
}

/// A compacted log prefix: the monitor state after it. `base` is an
/// archived [`ClusterState`] (`None`: the state before any entry) whose
/// `applied` is the log index it reflects; `tail` holds entries after it,
/// by absolute index, not folded in yet.
///
/// Entries carry their index and whether they were decided, because
/// omnipaxos builds a lagging follower's snapshot by folding the follower's
/// own log up to the leader's decided index and then merging the leader's
/// delta: the follower's accepted-but-undecided entries must not be folded
/// (the leader's decided ones replace them), and an overlap must not be
/// applied twice. So `merge` folds only consecutive decided entries from
/// the base's index on and skips those the base already holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonSnapshot {
    pub base: Option<Cmd>,
    pub tail: Vec<(LogPos, Cmd)>,
}

impl MonSnapshot {
    /// A snapshot holding exactly `state`.
    pub fn of(state: &ClusterState) -> MonSnapshot {
        MonSnapshot { base: Some(Cmd::new(state.snapshot())), tail: Vec::new() }
    }

    /// The state after the snapshotted prefix: the base and the decided
    /// entries that follow it without a gap. A base that does not decode
    /// (a corrupt file, a bad peer) is an error, never a panic.
    pub fn state(&self) -> Result<ClusterState, StateError> {
        let mut state = match &self.base {
            Some(b) => ClusterState::restore(&b.0)?,
            None => ClusterState::new(),
        };
        let config = state.mon_config;
        for (pos, Cmd(entry, _)) in &self.tail {
            if pos.idx < state.applied {
                continue;
            }
            if pos.idx > state.applied || !pos.decided {
                break;
            }
            // An entry that fails validation is skipped, as on apply.
            let _ = state.apply_entry(entry);
            // A MonMap change ends the configuration: what its log holds
            // after that is never applied, so never folded either.
            if state.bootstrapped && config > 0 && state.mon_config != config {
                break;
            }
        }
        Ok(state)
    }

    /// Adds one entry: a decided one replaces a tentative one at its index.
    fn insert(&mut self, pos: LogPos, cmd: Cmd) {
        match self.tail.binary_search_by_key(&pos.idx, |(p, _)| p.idx) {
            Ok(i) if pos.decided => self.tail[i] = (pos, cmd),
            Ok(_) => {}
            Err(i) => self.tail.insert(i, (pos, cmd)),
        }
    }
}

impl Snapshot<Cmd> for MonSnapshot {
    fn create(entries: &[Cmd]) -> Self {
        // Entries come from FileStorage, which positions every one; an
        // unpositioned one (none expected) follows its predecessor.
        let mut next = LogPos { idx: 0, decided: true };
        let mut tail = Vec::with_capacity(entries.len());
        for e in entries {
            let pos = e.1.unwrap_or(next);
            next = LogPos { idx: pos.idx + 1, decided: pos.decided };
            tail.push((pos, Cmd::new(e.0.clone())));
        }
        MonSnapshot { base: None, tail }
    }

    fn merge(&mut self, delta: Self) {
        if delta.base.is_some() {
            // A full state supersedes whatever we had.
            *self = delta;
        } else {
            for (pos, cmd) in delta.tail {
                self.insert(pos, cmd);
            }
        }
        // Fold; if our base does not decode, keep the entries unfolded
        // (nothing is lost) and let `state()` report the error.
        if let Ok(state) = self.state() {
            let mut folded = MonSnapshot::of(&state);
            folded.tail = self.tail.drain(..).filter(|(p, _)| p.idx >= state.applied).collect();
            *self = folded;
        }
    }

    fn use_snapshots() -> bool {
        true
    }
}

// Hex in JSON: a byte array as numbers would triple the log.
impl Serialize for Cmd {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut out = String::with_capacity(self.0.len() * 2);
        for b in &self.0 {
            out.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
            out.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
        }
        s.serialize_str(&out)
    }
}

impl<'de> Deserialize<'de> for Cmd {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Cmd, D::Error> {
        let text = String::deserialize(d)?;
        let nibble = |c: u8| match c {
            b'0'..=b'9' => Ok(c - b'0'),
            b'a'..=b'f' => Ok(c - b'a' + 10),
            _ => Err(serde::de::Error::custom("bad hex digit")),
        };
        let bytes = text.as_bytes();
        if bytes.len() % 2 != 0 {
            return Err(serde::de::Error::custom("odd hex length"));
        }
        let mut out = Vec::with_capacity(bytes.len() / 2);
        for pair in bytes.chunks_exact(2) {
            out.push(nibble(pair[0])? << 4 | nibble(pair[1])?);
        }
        Ok(Cmd::new(out))
    }
}

/// As whom this monitor reaches its peers (authenticated like any client).
#[derive(Clone)]
pub struct PeerLinks {
    pub entity: String,
    pub secret: Option<sepia_proto::auth::key::Secret>,
}

/// Which Paxos configuration this monitor runs, and who is in it. Kept in
/// `DIR/paxos.current` (replaced atomically) so a restart resumes the
/// configuration it was in; the previous one is kept running so a member
/// that missed its end still learns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    pub config_id: u32,
    /// Our node id.
    pub me: u64,
    /// (node id, public address) of every member, us included.
    pub nodes: Vec<(u64, String)>,
    pub previous: Option<(u32, Vec<(u64, String)>)>,
}

impl Membership {
    const FILE: &'static str = "paxos.current";

    /// The membership stored in `dir`, if any; a file that does not parse
    /// is an error (`InvalidData`), not a fresh start.
    pub fn load(dir: &Path) -> std::io::Result<Option<Membership>> {
        let path = dir.join(Self::FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Stores it atomically (temporary file, fsync, rename, fsync dir).
    pub fn store(&self, dir: &Path) -> std::io::Result<()> {
        use std::io::Write;
        let tmp = dir.join(format!("{}.tmp", Self::FILE));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(self).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, dir.join(Self::FILE))?;
        std::fs::File::open(dir)?.sync_all()
    }

    fn ids(&self) -> Vec<NodeId> {
        self.nodes.iter().map(|(id, _)| *id).collect()
    }

    /// What monitor `name`, restarting in this stored membership, does
    /// when a quorum reports its configuration `config_id` with `members`
    /// (name, node id, address). A store one configuration behind resumes:
    /// the previous configuration still answers and tells it the end. Two
    /// or more behind, nobody runs its configuration any more: still a
    /// member under the same node id, it joins the current configuration
    /// with a fresh log (it never ran that configuration, so it promised
    /// nothing there) and catches up from the quorum's snapshot; removed,
    /// or added back under another id, it is refused with what to do.
    pub fn rejoin(&self, name: &str, config_id: u32, members: &[(String, u64, String)]) -> Rejoin {
        if config_id <= self.config_id.saturating_add(1) {
            return Rejoin::Resume;
        }
        let here = self.config_id;
        match members.iter().find(|(n, ..)| n == name) {
            Some((_, id, _)) if *id == self.me => Rejoin::Jump(Membership {
                config_id,
                me: self.me,
                nodes: members.iter().map(|(_, id, addr)| (*id, addr.clone())).collect(),
                previous: None,
            }),
            Some((_, id, _)) => Rejoin::Refuse(format!(
                "mon.{name} was removed and added back as node {id} while this store (node {}, Paxos configuration {here}; the cluster is at {config_id}) was down: \
                 give it a new store: delete this --data folder and start `sepia-mon --mkfs --join -i {name}`",
                self.me
            )),
            None => Rejoin::Refuse(format!(
                "mon.{name} was removed from the monitors while it was down (this store is at Paxos configuration {here}, the cluster at {config_id}): \
                 to bring it back, add it as a new member with a new store: `sepia cluster add-mon --dir DIR {name}` \
                 (or `sepia mon add {name} ADDR`, then `sepia-mon --mkfs --join -i {name}` on an empty --data folder)"
            )),
        }
    }

    /// Makes `dir` resume in this membership, joined afresh: a log of its
    /// configuration left by a crash in the middle of a switch (never used:
    /// `paxos.current` did not name it) is deleted, then the membership is
    /// stored.
    pub fn adopt_fresh(&self, dir: &Path) -> std::io::Result<()> {
        match std::fs::remove_file(storage_path(dir, self.config_id)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        self.store(dir)
    }
}

/// See [`Membership::rejoin`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejoin {
    /// Run the stored configuration.
    Resume,
    /// Join this (current) configuration with a fresh log.
    Jump(Membership),
    /// Do not start; the message says what to do.
    Refuse(String),
}

/// The log file of configuration `config_id` (the first keeps its old name).
fn storage_path(dir: &Path, config_id: u32) -> std::path::PathBuf {
    if config_id <= 1 {
        dir.join("paxos.log")
    } else {
        dir.join(format!("paxos.cfg{config_id}.log"))
    }
}

type Paxos = OmniPaxos<Cmd, FileStorage<Cmd>>;

fn build(dir: &Path, config_id: u32, nodes: Vec<NodeId>, me: NodeId, sync: bool) -> std::io::Result<Paxos> {
    let path = storage_path(dir, config_id);
    let mut storage = FileStorage::open(&path)?;
    storage.sync = sync;
    check_snapshot(&storage).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {e}", path.display())))?;
    let config = OmniPaxosConfig {
        cluster_config: ClusterConfig { configuration_id: config_id, nodes, flexible_quorum: None },
        server_config: ServerConfig {
            pid: me,
            election_tick_timeout: limits::election_ticks,
            resend_message_tick_timeout: limits::resend_ticks,
            ..ServerConfig::default()
        },
    };
    config.build(storage).map_err(|e| std::io::Error::other(format!("paxos config: {e:?}")))
}

/// A Paxos message on the wire, tagged with its configuration.
#[derive(Serialize, Deserialize)]
struct Envelope {
    c: u32,
    m: Message<Cmd>,
}

/// The sans-IO part of a monitor's Paxos: the log of the current
/// configuration (and the previous one, still answering), the membership,
/// compaction, and the switch to the next configuration. [`PaxosLog`]
/// moves its messages over TCP; the simulator moves them itself.
pub struct PaxosCore {
    dir: std::path::PathBuf,
    op: Paxos,
    membership: Membership,
    /// The previous configuration, still answering its members.
    retired: Option<(u32, Paxos)>,
    /// Decided entries already handed to the daemon.
    taken: usize,
    /// Compact once this many decided entries follow the last snapshot.
    compact_min_entries: usize,
    /// The applied state went past this configuration's end: we switch.
    stopped: bool,
    /// The new configuration leaves us out.
    removed: bool,
    /// fsync the storage (false only in the simulator).
    sync: bool,
}

impl PaxosCore {
    /// Opens (or creates) the Paxos state of this monitor in `dir` for
    /// `membership`. A stored snapshot that does not decode is an error.
    pub fn open(dir: &Path, membership: Membership, compact_min_entries: usize, sync: bool) -> std::io::Result<PaxosCore> {
        if !membership.nodes.iter().any(|(id, _)| *id == membership.me) || membership.nodes.iter().any(|(id, _)| *id == 0) {
            return Err(std::io::Error::other(format!("node {} is not among the members {:?}", membership.me, membership.ids())));
        }
        std::fs::create_dir_all(dir)?;
        let op = build(dir, membership.config_id, membership.ids(), membership.me, sync)?;
        let retired = match &membership.previous {
            Some((cfg, nodes)) if nodes.iter().any(|(id, _)| *id == membership.me) && storage_path(dir, *cfg).exists() => {
                Some((*cfg, build(dir, *cfg, nodes.iter().map(|(id, _)| *id).collect(), membership.me, sync)?))
            }
            _ => None,
        };
        Ok(PaxosCore { dir: dir.to_path_buf(), op, membership, retired, taken: 0, compact_min_entries: compact_min_entries.max(1), stopped: false, removed: false, sync })
    }

    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// Decided entries handed out so far (the log index the state is at).
    pub fn taken(&self) -> usize {
        self.taken
    }

    /// Messages to send, each with the configuration it belongs to.
    pub fn take_outgoing(&mut self) -> Vec<(u32, Message<Cmd>)> {
        let mut buf = Vec::new();
        self.op.take_outgoing_messages(&mut buf);
        let mut out: Vec<(u32, Message<Cmd>)> = buf.drain(..).map(|m| (self.membership.config_id, m)).collect();
        if let Some((cfg, old)) = self.retired.as_mut() {
            old.take_outgoing_messages(&mut buf);
            out.extend(buf.drain(..).map(|m| (*cfg, m)));
        }
        out
    }

    /// A message of configuration `c` from node `from`; one that is not
    /// for us, not from who sent it, or of a configuration we do not run
    /// is dropped. True if it was handled.
    pub fn handle(&mut self, from: NodeId, c: u32, m: Message<Cmd>) -> bool {
        let me = self.membership.me;
        if m.get_sender() != from || m.get_receiver() != me || from == me {
            return false;
        }
        if c == self.membership.config_id {
            self.op.handle_incoming(m);
        } else if let Some((_, old)) = self.retired.as_mut().filter(|(cfg, _)| *cfg == c) {
            old.handle_incoming(m);
        } else {
            return false;
        }
        true
    }

    fn heard_from(&self) -> Vec<u64> {
        let members = self.membership.ids();
        let mut ids: Vec<u64> = self.op.get_ui_states().heartbeats.iter().map(|h| h.ballot.pid).filter(|p| members.contains(p)).collect();
        ids.push(self.membership.me);
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// The configuration that follows starts: a fresh log seeded with the
    /// state after the MonMap change that ended ours, at the same index,
    /// among the members that state names.
    fn switch(&mut self, state: &ClusterState) -> Result<(), String> {
        let cfg = state.mon_config;
        if cfg <= self.membership.config_id {
            return Ok(());
        }
        let me = self.membership.me;
        let next_nodes = state.mon_ids_for(&state.monmap);
        if !next_nodes.iter().any(|(id, _)| *id == me) {
            self.removed = true;
            return Ok(());
        }
        let nodes: Vec<(u64, String)> = next_nodes.into_iter().map(|(id, m)| (id, m.addr)).collect();
        let io = |e: Box<dyn std::error::Error>| format!("starting configuration {cfg}: {e}");
        let path = storage_path(&self.dir, cfg);
        // A half-made log from a crash during an earlier switch.
        let _ = std::fs::remove_file(&path);
        let n = state.applied as usize;
        let mut storage = FileStorage::<Cmd>::open(&path).map_err(|e| io(Box::new(e)))?;
        storage.sync = self.sync;
        storage
            .write_atomically(vec![
                StorageOp::SetDecidedIndex(n),
                StorageOp::Trim(n),
                StorageOp::SetCompactedIdx(n),
                StorageOp::SetSnapshot(Some(MonSnapshot::of(state))),
            ])
            .map_err(io)?;
        drop(storage);
        let next = Membership { config_id: cfg, me, nodes, previous: Some((self.membership.config_id, self.membership.nodes.clone())) };
        // From here a restart resumes the new configuration.
        next.store(&self.dir).map_err(|e| io(Box::new(e)))?;
        let op = build(&self.dir, cfg, next.ids(), me, self.sync).map_err(|e| io(Box::new(e)))?;
        let old = std::mem::replace(&mut self.op, op);
        self.retired = Some((self.membership.config_id, old));
        self.membership = next;
        self.taken = n;
        Ok(())
    }
}

impl Consensus for PaxosCore {
    fn propose(&mut self, entry: Vec<u8>) -> Result<(), String> {
        if !self.is_leader() {
            return Err("not the leader".into());
        }
        self.op.append(Cmd::new(entry)).map_err(|_| "the log is being reconfigured".to_string())
    }

    fn take_committed(&mut self) -> Vec<Committed> {
        let (out, taken) = take_decided(&self.op, self.taken, self.membership.config_id);
        self.taken = taken;
        out
    }

    fn compact(&mut self, _state: &ClusterState) -> Option<u64> {
        if self.stopped {
            return None;
        }
        compact(&mut self.op, self.taken, self.compact_min_entries)
    }

    fn ends_config(&self, state: &ClusterState) -> bool {
        state.bootstrapped && state.mon_config > self.membership.config_id
    }

    fn after_apply(&mut self, state: &ClusterState) -> Result<(), String> {
        if !self.ends_config(state) {
            return Ok(());
        }
        self.stopped = true;
        self.switch(state)?;
        self.stopped = self.removed;
        Ok(())
    }

    fn removed(&self) -> bool {
        self.removed
    }

    fn tick(&mut self) {
        self.op.tick();
        if let Some((_, old)) = self.retired.as_mut() {
            old.tick();
        }
    }

    fn have_quorum(&self) -> bool {
        // A leader must be known and a majority (us included) must have
        // answered the last round: an isolated monitor stops at once.
        !self.removed && self.op.get_current_leader().is_some() && self.heard_from().len() * 2 > self.membership.nodes.len()
    }

    fn is_leader(&self) -> bool {
        self.op.get_current_leader() == Some((self.membership.me, true))
    }

    fn leader(&self) -> Option<u64> {
        self.op.get_current_leader().map(|(pid, _)| pid)
    }

    fn quorum_members(&self) -> Vec<u64> {
        self.heard_from()
    }

    fn election_epoch(&self) -> u64 {
        u64::from(self.op.get_promise().n)
    }
}

/// The multi-monitor log of the daemon: a [`PaxosCore`] whose messages go
/// to one sender task per peer.
pub struct PaxosLog {
    core: PaxosCore,
    links: PeerLinks,
    peers: BTreeMap<NodeId, mpsc::Sender<Vec<u8>>>,
}

impl PaxosLog {
    /// Opens (or creates) the Paxos state of this monitor in `dir` for
    /// `membership` and starts the peer sender tasks (on the current tokio
    /// runtime). A stored snapshot that does not decode is an error here.
    pub fn open(dir: &Path, membership: Membership, links: PeerLinks, compact_min_entries: usize) -> std::io::Result<PaxosLog> {
        let core = PaxosCore::open(dir, membership, compact_min_entries, true)?;
        let mut log = PaxosLog { core, links, peers: BTreeMap::new() };
        log.link();
        Ok(log)
    }

    /// Starts a sender task for each member (current or previous
    /// configuration) we have none for.
    fn link(&mut self) {
        let m = self.core.membership.clone();
        let previous = m.previous.iter().flat_map(|(_, nodes)| nodes.iter());
        for (id, addr) in m.nodes.iter().chain(previous) {
            if *id == m.me || self.peers.contains_key(id) {
                continue;
            }
            let (tx, rx) = mpsc::channel(limits::peer_queue_max);
            let from = (m.me - 1) as u32;
            tokio::spawn(peer_sender(addr.clone(), from, self.links.entity.clone(), self.links.secret.clone(), rx));
            self.peers.insert(*id, tx);
        }
    }

    fn flush(&mut self) {
        for (c, m) in self.core.take_outgoing() {
            let Some(tx) = self.peers.get(&m.get_receiver()) else { continue };
            if let Ok(bytes) = serde_json::to_vec(&Envelope { c, m }) {
                // Full: dropped; Paxos resends what it needs.
                let _ = tx.try_send(bytes);
            }
        }
    }
}

impl Consensus for PaxosLog {
    fn propose(&mut self, entry: Vec<u8>) -> Result<(), String> {
        self.core.propose(entry)?;
        self.flush();
        Ok(())
    }

    fn take_committed(&mut self) -> Vec<Committed> {
        self.core.take_committed()
    }

    fn compact(&mut self, state: &ClusterState) -> Option<u64> {
        self.core.compact(state)
    }

    fn ends_config(&self, state: &ClusterState) -> bool {
        self.core.ends_config(state)
    }

    fn after_apply(&mut self, state: &ClusterState) -> Result<(), String> {
        let before = self.core.membership.config_id;
        self.core.after_apply(state)?;
        if self.core.membership.config_id != before {
            self.link();
        }
        Ok(())
    }

    fn removed(&self) -> bool {
        self.core.removed()
    }

    fn tick(&mut self) {
        self.core.tick();
        self.flush();
    }

    fn incoming(&mut self, from: u32, bytes: &[u8]) {
        if bytes.len() > limits::message_bytes_max {
            return;
        }
        let Ok(Envelope { c, m }) = serde_json::from_slice::<Envelope>(bytes) else { return };
        if self.core.handle(u64::from(from) + 1, c, m) {
            self.flush();
        }
    }

    fn have_quorum(&self) -> bool {
        self.core.have_quorum()
    }

    fn is_leader(&self) -> bool {
        self.core.is_leader()
    }

    fn leader(&self) -> Option<u64> {
        self.core.leader()
    }

    fn quorum_members(&self) -> Vec<u64> {
        self.core.quorum_members()
    }

    fn election_epoch(&self) -> u64 {
        self.core.election_epoch()
    }
}

/// Fails when `storage` holds a snapshot that does not decode.
pub fn check_snapshot(storage: &FileStorage<Cmd>) -> Result<(), String> {
    match storage.get_snapshot().map_err(|e| e.to_string())? {
        Some(s) => s.state().map(|_| ()).map_err(|e| format!("the stored snapshot is corrupt: {e}")),
        None => Ok(()),
    }
}

/// The decided entries of `op` from index `taken` on, in order, and the
/// new `taken`. A compacted prefix comes as one [`Committed::State`] (a
/// restart, or a snapshot sent by the leader to a lagging monitor); one
/// whose folding stopped at the end of configuration `config_id` (a MonMap
/// change) is installed too: the daemon applies nothing after it.
pub(crate) fn take_decided(op: &Paxos, taken: usize, config_id: u32) -> (Vec<Committed>, usize) {
    let decided = op.get_decided_idx();
    if decided <= taken {
        return (Vec::new(), taken);
    }
    let mut out = Vec::new();
    for e in op.read_decided_suffix(taken).unwrap_or_default() {
        match e {
            LogEntry::Decided(Cmd(bytes, _)) => out.push(Committed::Entry(bytes)),
            LogEntry::Snapshotted(s) => match s.snapshot.state() {
                Ok(state) if state.applied == s.trimmed_idx as u64 || (state.bootstrapped && state.mon_config > config_id) => {
                    out.push(Committed::State(Box::new(state)))
                }
                Ok(state) => eprintln!("paxos: a snapshot up to index {} holds the state at {}; not installed", s.trimmed_idx, state.applied),
                // Authenticated peers send snapshots; one that does not
                // decode leaves our state as it was (and says so).
                Err(e) => eprintln!("paxos: a snapshot up to index {} does not decode: {e}", s.trimmed_idx),
            },
            // We never trim without a snapshot, nor propose StopSigns.
            other => eprintln!("paxos: unexpected decided log entry {:?}", std::mem::discriminant(&other)),
        }
    }
    (out, decided)
}

/// Folds the decided entries up to `taken` into the snapshot when at least
/// `min_entries` of them follow the last one; returns the new compacted
/// index. Local: it needs no other monitor's acceptance.
pub(crate) fn compact(op: &mut Paxos, taken: usize, min_entries: usize) -> Option<u64> {
    if taken < op.get_compacted_idx() + min_entries || taken > op.get_decided_idx() {
        return None;
    }
    match op.snapshot(Some(taken), true) {
        Ok(()) => Some(taken as u64),
        Err(e) => {
            eprintln!("paxos: compaction at {taken} failed: {e:?}");
            None
        }
    }
}

/// Sends one peer its Paxos messages, reconnecting as needed; `from` is
/// our node id - 1 (the `MonPaxos` sender field).
async fn peer_sender(addr: String, from: u32, entity: String, secret: Option<sepia_proto::auth::key::Secret>, mut rx: mpsc::Receiver<Vec<u8>>) {
    use sepia_client::conn::{authenticate, Conn};
    use sepia_proto::msg::{Body, MonPaxos};
    let mut conn: Option<Conn> = None;
    // Our session with the peer expires; we authenticate afresh well before
    // (these frames are one-way, so a refusal would go unread).
    let mut renew_at = std::time::Instant::now();
    while let Some(bytes) = rx.recv().await {
        if secret.is_some() && std::time::Instant::now() >= renew_at {
            conn = None;
        }
        if conn.is_none() {
            let opened = async {
                let mut c = Conn::connect(&addr, &entity, [0; 16]).await?;
                let mut renew_at = std::time::Instant::now() + std::time::Duration::from_secs(3600);
                if let Some(s) = &secret {
                    let g = authenticate(&mut c, &entity, s).await?;
                    renew_at = std::time::Instant::now() + sepia_client::conn::renew_after(g.expires_ms);
                }
                Ok::<(Conn, std::time::Instant), sepia_client::conn::ConnError>((c, renew_at))
            };
            match tokio::time::timeout(std::time::Duration::from_secs(2), opened).await {
                Ok(Ok((c, at))) => {
                    conn = Some(c);
                    renew_at = at;
                }
                // The peer is down: drop this message; later ones retry.
                _ => continue,
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        if c.send(&Body::MonPaxos(MonPaxos { from, bytes }), &[]).await.is_err() {
            conn = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::service::{MonConfig, MonServices, QuorumInfo};
    use crate::services::state::AuthEntry;
    use omnipaxos::storage::StorageOp;
    use sepia_proto::monmap::MonMap;
    use sepia_proto::msg::Command;
    use sepia_proto::osdmap::OsdMap;

    /// A bootstrap entry and `n` pool creations, as a leader proposes them.
    fn entries(n: usize) -> Vec<Cmd> {
        let monmap = MonMap::new([3; 16], &[("a".into(), "127.0.0.1:3300".into())], 0).unwrap();
        let osdmap = OsdMap::new([3; 16], crush_simd::edit::default_map("osd").unwrap(), 0);
        let mut svc = MonServices::new(1, MonConfig { crush_location_type: "osd".into(), ..MonConfig::default() });
        let admin = AuthEntry { key: "AQAAAAAAAAAAABAAAAAAAAAAAAAAAAAAAAAAAA==".into(), caps: Default::default() };
        let mut out = vec![Cmd::new(svc.bootstrap_entry(monmap, &osdmap, vec![("client.admin".into(), admin)]))];
        let mut state = ClusterState::new();
        state.apply_entry(&out[0].0).unwrap();
        svc.become_leader(&state, 0);
        let quorum = QuorumInfo { have_quorum: true, is_leader: true, ..QuorumInfo::default() };
        for i in 0..n {
            let args = ["osd", "pool", "create", &format!("p{i}"), "4"].map(String::from).to_vec();
            assert!(svc.handle_command(&state, &quorum, &Command { tid: 1, args, json: false }, 1, 0).is_none());
            let e = svc.flush(&state, 0).expect("a batch");
            let batch = state.apply_entry(&e).unwrap();
            svc.on_committed(&state, Some(&batch), Ok(()));
            out.push(Cmd::new(e));
        }
        out
    }

    fn replay(entries: &[Cmd]) -> ClusterState {
        let mut s = ClusterState::new();
        for Cmd(e, _) in entries {
            let _ = s.apply_entry(e);
        }
        s
    }

    #[test]
    fn a_snapshot_is_the_state_after_its_prefix_however_it_was_merged() {
        use storage::Positioned;
        let all: Vec<Cmd> = entries(12).into_iter().enumerate().map(|(i, e)| e.at(i, true)).collect();
        assert_eq!(MonSnapshot::create(&all).state().unwrap(), replay(&all));
        // Folded in three steps, as repeated compactions and a leader's
        // delta do it: one state, no tail, equal to replaying everything.
        let mut snap = MonSnapshot::create(&all[..3]);
        snap.merge(MonSnapshot::create(&all[3..8]));
        assert!(snap.base.is_some() && snap.tail.is_empty());
        snap.merge(MonSnapshot::create(&all[8..]));
        assert_eq!(snap.state().unwrap(), replay(&all));
        assert_eq!(snap.state().unwrap().osdmap.pools.len(), 12);
        // It crosses the wire (and the file) as JSON and back unchanged.
        let json = serde_json::to_vec(&snap).unwrap();
        assert_eq!(serde_json::from_slice::<MonSnapshot>(&json).unwrap(), snap);
        // A lagging follower's view: its own log folded up to the leader's
        // decided index holds entries it accepted but that were never
        // decided (here: garbage at 5 and 6), then the leader's delta
        // overlaps what it had. The decided entries win; nothing twice.
        let mut follower = MonSnapshot::create(&all[..3]);
        let mut own: Vec<Cmd> = all[3..5].to_vec();
        own.push(Cmd::new(vec![1, 2, 3]).at(5, false));
        own.push(Cmd::new(vec![4, 5, 6]).at(6, false));
        follower.merge(MonSnapshot::create(&own));
        assert_eq!(follower.state().unwrap().applied, 5, "tentative entries are not folded");
        follower.merge(MonSnapshot::create(&all[4..]));
        assert_eq!(follower.state().unwrap(), replay(&all));
        assert!(follower.tail.is_empty());
        // A full state in a merge supersedes.
        let mut other = MonSnapshot::create(&all[..2]);
        other.merge(snap.clone());
        assert_eq!(other, snap);
    }

    #[test]
    fn a_stored_snapshot_that_does_not_decode_is_a_clear_error() {
        let p = std::env::temp_dir().join(format!("sepia-paxos-badsnap-{}.paxos", std::process::id()));
        let _ = std::fs::remove_file(&p);
        let mut s = FileStorage::<Cmd>::open(&p).unwrap();
        s.append_entries(entries(2)).unwrap();
        s.set_decided_idx(3).unwrap();
        let good = MonSnapshot::create(&entries(2));
        s.write_atomically(vec![StorageOp::Trim(3), StorageOp::SetCompactedIdx(3), StorageOp::SetSnapshot(Some(good))]).unwrap();
        assert!(check_snapshot(&s).is_ok());
        // Well-framed, crc-correct, but the state inside is garbage.
        let bad = MonSnapshot { base: Some(Cmd::new(vec![0xee; 100])), tail: Vec::new() };
        s.write_atomically(vec![StorageOp::Trim(3), StorageOp::SetSnapshot(Some(bad))]).unwrap();
        drop(s);
        let s = FileStorage::<Cmd>::open(&p).unwrap();
        let err = check_snapshot(&s).unwrap_err();
        assert!(err.contains("snapshot is corrupt"), "{err}");
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn a_monitor_two_configurations_behind_joins_the_current_one_or_is_refused() {
        let stored = Membership { config_id: 2, me: 3, nodes: vec![(1, "a:1".into()), (2, "b:1".into()), (3, "c:1".into())], previous: None };
        let members = |v: &[(&str, u64)]| v.iter().map(|(n, id)| (n.to_string(), *id, format!("{n}:1"))).collect::<Vec<_>>();
        let abc = members(&[("a", 1), ("b", 2), ("c", 3)]);
        // Current or one behind: the stored configuration (or the one
        // before the current, still answering) carries it.
        assert_eq!(stored.rejoin("c", 2, &abc), Rejoin::Resume);
        assert_eq!(stored.rejoin("c", 3, &abc), Rejoin::Resume);
        assert_eq!(stored.rejoin("c", 1, &abc), Rejoin::Resume);
        // Two behind and still a member under its id: a fresh log there.
        match stored.rejoin("c", 4, &abc) {
            Rejoin::Jump(m) => {
                assert_eq!((m.config_id, m.me, m.previous.clone()), (4, 3, None));
                assert_eq!(m.ids(), vec![1, 2, 3]);
            }
            other => panic!("{other:?}"),
        }
        // Removed while down, or added back as a new node: refused, with
        // what to do.
        match stored.rejoin("c", 4, &members(&[("a", 1), ("b", 2), ("d", 5)])) {
            Rejoin::Refuse(why) => assert!(why.contains("removed") && why.contains("add-mon") && why.contains("--mkfs --join"), "{why}"),
            other => panic!("{other:?}"),
        }
        match stored.rejoin("c", 5, &members(&[("a", 1), ("b", 2), ("c", 6)])) {
            Rejoin::Refuse(why) => assert!(why.contains("node 6") && why.contains("--mkfs --join"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn adopting_a_configuration_drops_a_half_made_log_of_it() {
        let dir = std::env::temp_dir().join(format!("sepia-adopt-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(storage_path(&dir, 4), b"left by a crash mid-switch").unwrap();
        std::fs::write(storage_path(&dir, 2), b"the old configuration").unwrap();
        let m = Membership { config_id: 4, me: 3, nodes: vec![(1, "a:1".into()), (3, "c:1".into())], previous: None };
        m.adopt_fresh(&dir).unwrap();
        assert!(!storage_path(&dir, 4).exists());
        assert!(storage_path(&dir, 2).exists(), "only that configuration's log goes");
        assert_eq!(Membership::load(&dir).unwrap(), Some(m));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
