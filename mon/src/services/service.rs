//! The leader's services: requests in, batched log entries out.
//!
//! The leader keeps a *pending* next state (the committed maps plus every
//! accepted change) and proposes it as one [`Batch`] per flush — the shell
//! flushes every propose interval — so a thousand beacons or commands cost
//! one Paxos round. One batch is in flight at a time; requests that changed
//! something are answered only after their batch commits (read-your-writes
//! for the client that asked). A monitor that is not the leader refuses
//! changes with `-EAGAIN` and the leader's name; a monitor outside the
//! quorum refuses everything.
//!
//! Failure handling (Ceph's shape): an OSD is marked down when
//! `min_down_reporters` distinct peers report it (capped by how many peers
//! it has), when it misses beacons for `beacon_grace_ms`, or when it says
//! goodbye; a down OSD is marked out after `down_out_interval_ms`, and
//! marked in again when it boots if it was the monitor that took it out.
//!
//! Invariants (checked by `invariants()`): at most one batch in flight; the
//! pending OSDMap's epoch is one past its base; waiters are bounded.

use std::collections::{BTreeMap, BTreeSet};

use sepia_proto::errno::Errno;
use sepia_proto::monmap::MonMap;
use sepia_proto::msg::{Command, CommandReply, OsdBeacon, OsdBoot, OsdFailure, OsdMarkMeDown};
use sepia_proto::osdmap::{OsdId, OsdMap, OSD_IN, OSD_OUT};

use super::command::{self, CmdError, Pending};
use super::limits;
use super::state::{inc_is_empty, Batch, ClusterState, Tx};

#[derive(Debug, Clone)]
pub struct MonConfig {
    /// An OSD silent for this long is marked down (beacons every ~2 s).
    pub beacon_grace_ms: u64,
    /// A down OSD is marked out after this long (Ceph: 600 s).
    pub down_out_interval_ms: u64,
    /// Distinct peers that must report an OSD before it is marked down.
    pub min_down_reporters: usize,
    /// A failure report not repeated for this long is forgotten.
    pub failure_report_ttl_ms: u64,
    /// CRUSH failure domain for OSDs placed at boot (`host`, or `osd` for a
    /// one-node dev cluster).
    pub crush_location_type: String,
}

impl Default for MonConfig {
    fn default() -> Self {
        MonConfig {
            beacon_grace_ms: 10_000,
            down_out_interval_ms: 600_000,
            min_down_reporters: 2,
            failure_report_ttl_ms: 30_000,
            crush_location_type: "host".into(),
        }
    }
}

/// The quorum as the consensus layer sees it (the shell fills it in).
#[derive(Debug, Clone, Default)]
pub struct QuorumInfo {
    pub have_quorum: bool,
    pub is_leader: bool,
    /// Names of the monitors in the quorum.
    pub members: Vec<String>,
    pub leader: Option<String>,
    pub election_epoch: u64,
    /// This monitor's name.
    pub me: String,
}

/// A reply to send to the waiter the shell registered.
pub type Answer = (u64, CommandReply);

struct InFlight {
    seq: u64,
    waiters: Vec<Answer>,
    /// The OSDMap the batch produces once committed.
    result: OsdMap,
}

pub struct MonServices {
    node: u64,
    pub config: MonConfig,
    next_seq: u64,
    pending: Option<Pending>,
    pending_waiters: Vec<Answer>,
    in_flight: Option<InFlight>,
    last_beacon_ms: BTreeMap<OsdId, u64>,
    down_since_ms: BTreeMap<OsdId, u64>,
    auto_out: BTreeSet<OsdId>,
    /// target → reporter → when last reported.
    reports: BTreeMap<OsdId, BTreeMap<OsdId, u64>>,
    leader: bool,
}

fn reply(tid: u64, result: i32, status: impl Into<String>, output: impl Into<String>) -> CommandReply {
    CommandReply { tid, result, status: status.into(), output: output.into() }
}

impl MonServices {
    pub fn new(node: u64, config: MonConfig) -> MonServices {
        MonServices {
            node,
            config,
            next_seq: 1,
            pending: None,
            pending_waiters: Vec::new(),
            in_flight: None,
            last_beacon_ms: BTreeMap::new(),
            down_since_ms: BTreeMap::new(),
            auto_out: BTreeSet::new(),
            reports: BTreeMap::new(),
            leader: false,
        }
    }

    /// True while a proposed batch waits for its commit.
    pub fn has_in_flight(&self) -> bool {
        self.in_flight.is_some()
    }

    pub fn is_leader(&self) -> bool {
        self.leader
    }

    /// This monitor just became leader: every timer starts now, so an OSD is
    /// never marked down for silence it showed to a previous leader.
    pub fn become_leader(&mut self, state: &ClusterState, now_ms: u64) {
        self.leader = true;
        self.last_beacon_ms.clear();
        self.down_since_ms.clear();
        self.reports.clear();
        for o in state.osdmap.osds.iter().filter(|o| o.exists) {
            if o.up {
                self.last_beacon_ms.insert(o.id, now_ms);
            } else {
                self.down_since_ms.insert(o.id, now_ms);
            }
        }
    }

    /// Leadership (or the quorum) is gone: every waiter learns its change
    /// may not have happened and must retry.
    pub fn lose_leadership(&mut self) -> Vec<Answer> {
        self.leader = false;
        self.pending = None;
        let mut out: Vec<Answer> = std::mem::take(&mut self.pending_waiters);
        if let Some(f) = self.in_flight.take() {
            out.extend(f.waiters);
        }
        for (_, r) in &mut out {
            *r = reply(r.tid, Errno::Again.result(), "leader changed; retry", "");
        }
        out
    }

    fn pending(&mut self, state: &ClusterState) -> &mut Pending {
        let base = self.in_flight.as_ref().map_or(&state.osdmap, |f| &f.result);
        self.pending.get_or_insert_with(|| Pending::new(base, &state.monmap, &state.auth))
    }

    /// `-EAGAIN`; `output` carries the leader's address so the client can
    /// go there (empty when there is no quorum).
    fn not_leader(&self, tid: u64, quorum: &QuorumInfo, monmap: &MonMap) -> CommandReply {
        if !quorum.have_quorum {
            return reply(tid, Errno::Again.result(), "no quorum: this monitor refuses changes until a majority is back", "");
        }
        let leader = quorum.leader.clone().unwrap_or_else(|| "unknown".into());
        let addr = monmap.by_name(&leader).map(|m| m.addr.clone()).unwrap_or_default();
        reply(tid, Errno::Again.result(), format!("not the leader; leader is mon.{leader}"), addr)
    }

    /// An admin command. `Some` is the answer now; `None` means the answer
    /// comes from [`Self::on_committed`] (or [`Self::lose_leadership`]).
    pub fn handle_command(
        &mut self,
        state: &ClusterState,
        quorum: &QuorumInfo,
        cmd: &Command,
        waiter: u64,
        now_ms: u64,
    ) -> Option<CommandReply> {
        if cmd.args.len() > limits::command_args_max || cmd.args.iter().any(|a| a.len() > limits::command_arg_bytes_max) {
            return Some(reply(cmd.tid, Errno::Inval.result(), "command too long", ""));
        }
        if !quorum.have_quorum {
            return Some(self.not_leader(cmd.tid, quorum, &state.monmap));
        }
        if command::is_read_only(&cmd.args) {
            return Some(match command::read(state, quorum, &self.config, &cmd.args, cmd.json) {
                Ok(out) => reply(cmd.tid, 0, "", out),
                Err(e) => reply(cmd.tid, e.errno.result(), e.message, ""),
            });
        }
        if !self.leader {
            return Some(self.not_leader(cmd.tid, quorum, &state.monmap));
        }
        if self.pending_waiters.len() >= limits::waiters_max {
            return Some(reply(cmd.tid, Errno::Again.result(), "monitor busy; retry", ""));
        }
        let config = self.config.clone();
        let pending = self.pending(state);
        match command::write(pending, &config, &cmd.args, cmd.json, now_ms) {
            Ok((status, output)) => {
                self.pending_waiters.push((waiter, reply(cmd.tid, 0, status, output)));
                None
            }
            Err(CmdError { errno, message }) => Some(reply(cmd.tid, errno.result(), message, "")),
        }
    }

    /// An OSD announces itself with its per-shard addresses.
    pub fn handle_boot(&mut self, state: &ClusterState, quorum: &QuorumInfo, boot: &OsdBoot, waiter: u64, now_ms: u64) -> Option<CommandReply> {
        if !self.leader {
            return Some(self.not_leader(0, quorum, &state.monmap));
        }
        let location_type = self.config.crush_location_type.clone();
        let was_auto_out = self.auto_out.remove(&boot.osd);
        let pending = self.pending(state);
        match command::osd_boot(pending, boot, &location_type, was_auto_out) {
            Ok(()) => {
                self.last_beacon_ms.insert(boot.osd, now_ms);
                self.down_since_ms.remove(&boot.osd);
                self.reports.remove(&boot.osd);
                self.pending_waiters.push((waiter, reply(0, 0, format!("osd.{} boot", boot.osd), "")));
                None
            }
            Err(e) => Some(reply(0, e.errno.result(), e.message, "")),
        }
    }

    pub fn handle_beacon(&mut self, beacon: &OsdBeacon, now_ms: u64) {
        self.last_beacon_ms.insert(beacon.osd, now_ms);
    }

    pub fn handle_failure(&mut self, state: &ClusterState, f: &OsdFailure, now_ms: u64) {
        if !self.leader || f.reporter == f.target {
            return;
        }
        // Only reporters and targets the map knows count, and only a
        // reporter that is up (Ceph's rule): an OSD on its way down loses
        // its peers' answers and must not take a healthy one with it.
        if state.osdmap.osd(f.reporter).is_none() || state.osdmap.osd(f.target).is_none() || !state.osdmap.is_up(f.reporter) {
            return;
        }
        // A reporter whose map predates the target's boot reports on an
        // earlier life of it (Ceph ignores those too): counted, such late
        // reports marked a freshly restarted OSD down again at once. A
        // boot proposed but not yet committed counts already.
        // (The newest map: pending, else in flight, else committed; an
        // OSD's up_from only grows from one to the next.)
        let newest = self.pending.as_ref().map(|p| &p.osdmap).or(self.in_flight.as_ref().map(|f| &f.result)).unwrap_or(&state.osdmap);
        let up_from = newest.osd(f.target).map_or(0, |o| o.up_from);
        if f.still_failed && f.epoch < up_from {
            return;
        }
        let entry = self.reports.entry(f.target).or_default();
        if f.still_failed {
            if entry.len() < limits::failure_reporters_max || entry.contains_key(&f.reporter) {
                entry.insert(f.reporter, now_ms);
            }
        } else {
            entry.remove(&f.reporter);
        }
        self.check_failures(state, now_ms);
    }

    pub fn handle_mark_me_down(&mut self, state: &ClusterState, m: &OsdMarkMeDown, now_ms: u64) {
        if !self.leader {
            return;
        }
        if state.osdmap.is_up(m.osd) {
            eprintln!("osd.{} marked itself down", m.osd);
            self.mark_down(state, m.osd, now_ms);
        }
    }

    fn mark_down(&mut self, state: &ClusterState, osd: OsdId, now_ms: u64) {
        let pending = self.pending(state);
        let epoch = pending.osdmap.epoch;
        if let Some(o) = pending.osdmap.osds.get_mut(osd as usize).filter(|o| o.exists && o.up) {
            o.up = false;
            o.down_at = epoch;
            pending.osd_dirty = true;
        }
        self.last_beacon_ms.remove(&osd);
        self.reports.remove(&osd);
        self.down_since_ms.insert(osd, now_ms);
    }

    fn check_failures(&mut self, state: &ClusterState, now_ms: u64) {
        let ttl = self.config.failure_report_ttl_ms;
        for reporters in self.reports.values_mut() {
            reporters.retain(|r, at| now_ms.saturating_sub(*at) <= ttl && state.osdmap.is_up(*r));
        }
        self.reports.retain(|_, r| !r.is_empty());
        let up = state.osdmap.osds.iter().filter(|o| o.exists && o.up).count();
        // With few OSDs there are few possible reporters.
        let needed = self.config.min_down_reporters.min(up.saturating_sub(1)).max(1);
        let doomed: Vec<OsdId> = self
            .reports
            .iter()
            .filter(|(t, r)| r.len() >= needed && state.osdmap.is_up(**t))
            .map(|(t, _)| *t)
            .collect();
        for t in doomed {
            let by: Vec<String> = self.reports.get(&t).map(|r| r.keys().map(|o| format!("osd.{o}")).collect()).unwrap_or_default();
            eprintln!("osd.{t} marked down: reported failed by {}", by.join(", "));
            self.mark_down(state, t, now_ms);
        }
    }

    /// The clock: missed beacons → down, long down → out.
    pub fn tick(&mut self, state: &ClusterState, now_ms: u64) {
        if !self.leader {
            return;
        }
        let grace = self.config.beacon_grace_ms;
        let silent: Vec<OsdId> = state
            .osdmap
            .osds
            .iter()
            .filter(|o| o.exists && o.up)
            .filter(|o| {
                let last = *self.last_beacon_ms.entry(o.id).or_insert(now_ms);
                now_ms.saturating_sub(last) > grace
            })
            .map(|o| o.id)
            .collect();
        for osd in silent {
            eprintln!("osd.{osd} marked down: no beacon for {grace} ms");
            self.mark_down(state, osd, now_ms);
        }
        self.check_failures(state, now_ms);
        let out_after = self.config.down_out_interval_ms;
        let to_out: Vec<OsdId> = state
            .osdmap
            .osds
            .iter()
            .filter(|o| o.exists && !o.up && o.weight != OSD_OUT)
            .filter(|o| {
                let since = *self.down_since_ms.entry(o.id).or_insert(now_ms);
                now_ms.saturating_sub(since) > out_after
            })
            .map(|o| o.id)
            .collect();
        for osd in to_out {
            let pending = self.pending(state);
            if let Some(o) = pending.osdmap.osds.get_mut(osd as usize) {
                if !o.up && o.weight != OSD_OUT {
                    o.weight = OSD_OUT;
                    pending.osd_dirty = true;
                }
            }
            self.auto_out.insert(osd);
        }
    }

    /// The next log entry to propose, if anything changed and nothing is in
    /// flight. The shell calls this every propose interval.
    pub fn flush(&mut self, state: &ClusterState, now_ms: u64) -> Option<Vec<u8>> {
        if !self.leader || self.in_flight.is_some() {
            return None;
        }
        let mut pending = self.pending.take()?;
        let mut txs = Vec::new();
        let mut map_changed = false;
        if pending.osd_dirty {
            pending.osdmap.modified_ms = now_ms;
            let inc = state.osdmap.diff(&pending.osdmap);
            if !inc_is_empty(&inc) {
                txs.push(Tx::OsdMap(inc));
                map_changed = true;
            }
        }
        if let Some(m) = pending.monmap.take() {
            txs.push(Tx::MonMap(m));
        }
        txs.append(&mut pending.auth_txs);
        let waiters = std::mem::take(&mut self.pending_waiters);
        if txs.is_empty() {
            // Nothing to agree on (e.g. a no-op command): answer now.
            self.in_flight = Some(InFlight { seq: 0, waiters, result: state.osdmap.clone() });
            return None;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let result = if map_changed { pending.osdmap } else { state.osdmap.clone() };
        self.in_flight = Some(InFlight { seq, waiters, result });
        Some(Batch { proposer: self.node, seq, txs }.encode())
    }

    /// Answers that need no commit (a flush with nothing to propose).
    pub fn take_immediate(&mut self) -> Vec<Answer> {
        match &self.in_flight {
            Some(f) if f.seq == 0 => self.in_flight.take().map(|f| f.waiters).unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// A log entry committed and was applied to `state` (`applied` is the
    /// result of that). Returns the answers now due.
    pub fn on_committed(&mut self, state: &ClusterState, batch: Option<&Batch>, applied: Result<(), String>) -> Vec<Answer> {
        let mut out = Vec::new();
        let ours = batch.is_some_and(|b| b.proposer == self.node);
        match (&self.in_flight, batch) {
            (Some(f), Some(b)) if ours && f.seq == b.seq => {
                let f = self.in_flight.take().expect("checked above");
                for (w, mut r) in f.waiters {
                    if let Err(e) = &applied {
                        r = reply(r.tid, Errno::Inval.result(), format!("change refused at commit: {e}"), "");
                    }
                    out.push((w, r));
                }
            }
            _ => {}
        }
        // A pending state built on a map that is no longer the newest (a
        // previous leader's entry committed under us) must be rebuilt.
        if let Some(p) = &self.pending {
            let base_epoch = self.in_flight.as_ref().map_or(state.osdmap.epoch, |f| f.result.epoch);
            if p.osdmap.epoch != base_epoch + 1 {
                self.pending = None;
                for (w, r) in self.pending_waiters.drain(..) {
                    out.push((w, reply(r.tid, Errno::Again.result(), "map changed under the request; retry", "")));
                }
            }
        }
        out
    }

    /// The bootstrap entry for a brand new cluster.
    pub fn bootstrap_entry(&mut self, monmap: MonMap, osdmap: &OsdMap, auth: Vec<(String, super::state::AuthEntry)>) -> Vec<u8> {
        let seq = self.next_seq;
        self.next_seq += 1;
        let service_keys = ["mon", "osd"]
            .iter()
            .map(|s| {
                let mut k = [0u8; 32];
                getrandom::getrandom(&mut k).expect("the OS random source failed");
                (s.to_string(), 1u64, k)
            })
            .collect();
        Batch { proposer: self.node, seq, txs: vec![Tx::Bootstrap(super::state::Bootstrap { monmap, osdmap: osdmap.to_wire(), auth, service_keys })] }
            .encode()
    }

    /// Our invariants; the simulator calls this after every step.
    pub fn invariants(&self, state: &ClusterState) {
        if let Some(p) = &self.pending {
            let base = self.in_flight.as_ref().map_or(state.osdmap.epoch, |f| f.result.epoch);
            assert_eq!(p.osdmap.epoch, base + 1, "pending map must be one epoch past its base");
        }
        assert!(self.pending_waiters.len() <= limits::waiters_max);
        if !self.leader {
            assert!(self.in_flight.is_none() && self.pending_waiters.is_empty(), "only a leader has requests in flight");
        }
        let _ = OSD_IN;
    }
}
