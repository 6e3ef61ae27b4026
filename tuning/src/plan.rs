//! The shard plan: which core (and which PU on it) runs each OSD shard.
//!
//! Owns [`plan`], a pure function of a [`Topology`], the OSDs of the node
//! and a [`Policy`], and the [`Plan`] it returns (text and JSON; the OSD
//! reads the JSON back with [`Plan::from_json`] or computes it itself and
//! pins with [`Plan::cores_for`]).
//!
//! How it places, and why:
//! 1. `reserve_cores` whole cores are kept for the OS and the NIC's
//!    interrupts, first from the NIC's NUMA node (its IRQs and softirqs run
//!    there), else starting at core 0.
//! 2. Each remaining core offers one *slot* (its first PU) when SMT is
//!    avoided, else one slot per PU, first PUs of every core before any
//!    sibling, so siblings are only doubled up when cores run out.
//! 3. An OSD's shards take slots on its device's NUMA node: a shard on the
//!    other socket pays a memory and PCIe hop on every I/O. When a node has
//!    fewer slots than its OSDs want, the local slots are shared out evenly
//!    (every OSD gets the same share of remote shards) and the rest spill
//!    to the node with the most free slots, which keeps nodes balanced; OSDs
//!    with unknown locality are spread the same way.
//! 4. Within a node, an OSD's shards are contiguous in topology order, so
//!    they share cache domains.
//!
//! Invariants of a [`Plan`] (checked again by [`Plan::from_json`]): no PU
//! and no core is given to two shards, except that with SMT allowed two
//! shards may share a core on different PUs; reserved cores carry no
//! shard; OSD ids are unique; `OsdPlan::cpus`/`cores` list exactly the
//! shards' PUs/cores in shard order.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::limits;
use crate::sys::format_cpu_list;
use crate::topology::{Core, DeviceKind, Topology};

/// One OSD of the node: its id and the block device it stores on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OsdSpec {
    /// OSD id.
    pub id: u32,
    /// Block device name (`nvme0n1`, `/dev/nvme0n1`, or a partition of it).
    pub device: String,
}

/// How to place shards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Shards per OSD; `None` = share all free cores evenly.
    pub shards_per_osd: Option<usize>,
    /// Whole cores kept for the OS and the NIC.
    pub reserve_cores: usize,
    /// Never put two shards on SMT siblings of one core.
    pub avoid_smt: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            shards_per_osd: None,
            reserve_cores: 0,
            avoid_smt: true,
        }
    }
}

/// Why no plan could be made.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PlanError {
    /// No OSDs were given.
    #[error("no OSDs to plan")]
    NoOsds,
    /// More OSDs than [`limits::osds_max_count`].
    #[error("{0} OSDs is more than the limit of {max}", max = limits::osds_max_count)]
    TooManyOsds(usize),
    /// Two OSDs share an id.
    #[error("osd.{0} is given twice")]
    DuplicateOsd(u32),
    /// `shards_per_osd` is 0 or above [`limits::shards_per_osd_max_count`].
    #[error("shards per OSD must be 1..={max}, not {0}", max = limits::shards_per_osd_max_count)]
    BadShardCount(usize),
    /// An OSD's device is not a block device of this topology.
    #[error(
        "osd.{osd}: device {device:?} is not a block device of this topology (known: {known})"
    )]
    UnknownDevice {
        /// The OSD.
        osd: u32,
        /// The device asked for.
        device: String,
        /// Block devices the topology has.
        known: String,
    },
    /// The reservation leaves no core for shards.
    #[error("reserving {reserve} cores leaves none of {cores} for shards")]
    ReserveTooLarge {
        /// Cores asked to reserve.
        reserve: usize,
        /// Cores the topology has.
        cores: usize,
    },
    /// More shards than slots.
    #[error("{shards} shards need {shards} {unit}, but only {slots} are free{hint}")]
    Oversubscribed {
        /// Shards asked for.
        shards: usize,
        /// Free slots (cores, or PUs with SMT allowed).
        slots: usize,
        /// "cores" or "PUs".
        unit: &'static str,
        /// How to make it fit.
        hint: String,
    },
    /// An `ID=DEVICE` argument could not be parsed.
    #[error("bad OSD spec {0:?}: expected DEVICE or ID=DEVICE")]
    BadSpec(String),
}

/// Why a plan file was rejected.
#[derive(Debug, Error)]
pub enum PlanFileError {
    /// Larger than [`limits::plan_json_max_bytes`].
    #[error("plan JSON larger than {} bytes", limits::plan_json_max_bytes)]
    TooLarge,
    /// Not a plan.
    #[error("plan JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A plan that breaks an invariant (a PU used twice...).
    #[error("inconsistent plan: {0}")]
    Inconsistent(String),
}

/// Where one shard runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardPlacement {
    /// Shard index within the OSD (0..n).
    pub shard: u32,
    /// Core id (topology order).
    pub core: u32,
    /// PU to pin (Linux CPU number).
    pub pu: u32,
    /// NUMA node of the core.
    pub numa: Option<u32>,
    /// Whether the core is on the device's NUMA node.
    pub local: bool,
}

/// One OSD's part of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OsdPlan {
    /// OSD id.
    pub id: u32,
    /// Its block device.
    pub device: String,
    /// The device's NUMA node.
    pub numa: Option<u32>,
    /// Shards in order.
    pub shards: Vec<ShardPlacement>,
    /// Core ids of the shards, in shard order.
    pub cores: Vec<u32>,
    /// PUs to pin, in shard order (what [`Plan::cores_for`] returns).
    pub cpus: Vec<u32>,
}

/// A core kept for the OS / NIC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservedCore {
    /// Core id.
    pub core: u32,
    /// Its NUMA node.
    pub numa: Option<u32>,
    /// Its PUs.
    pub pus: Vec<u32>,
}

/// The placement of every shard of every OSD on a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The policy it was made with.
    pub policy: Policy,
    /// Per OSD, in the order given.
    pub osds: Vec<OsdPlan>,
    /// Cores kept for the OS / NIC.
    pub reserved: Vec<ReservedCore>,
    /// Why they were taken where they were.
    pub reserved_reason: String,
    /// Cores neither reserved nor running a shard.
    pub idle_cores: Vec<u32>,
    /// Shards not local to their device, and similar facts.
    pub warnings: Vec<String>,
}

impl Plan {
    /// PUs (Linux CPU numbers) to pin the shards of `osd_id` to, shard 0
    /// first; empty when the OSD is not in the plan.
    pub fn cores_for(&self, osd_id: u32) -> Vec<usize> {
        self.osd(osd_id)
            .map(|o| o.cpus.iter().map(|&c| c as usize).collect())
            .unwrap_or_default()
    }

    /// The part of the plan for `osd_id`.
    pub fn osd(&self, osd_id: u32) -> Option<&OsdPlan> {
        self.osds.iter().find(|o| o.id == osd_id)
    }

    /// All shards, over all OSDs.
    pub fn total_shards(&self) -> usize {
        self.osds.iter().map(|o| o.shards.len()).sum()
    }

    /// Every PU that runs a shard, ascending.
    pub fn shard_pus(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self
            .osds
            .iter()
            .flat_map(|o| o.cpus.iter().copied())
            .collect();
        v.sort_unstable();
        v
    }

    /// Reads a plan written by `sepia-tune plan --format json` and checks
    /// its invariants.
    pub fn from_json(text: &str) -> Result<Plan, PlanFileError> {
        if text.len() > limits::plan_json_max_bytes {
            return Err(PlanFileError::TooLarge);
        }
        let plan: Plan = serde_json::from_str(text)?;
        plan.validate().map_err(PlanFileError::Inconsistent)?;
        Ok(plan)
    }

    /// Checks the invariants listed in the module docs.
    pub fn validate(&self) -> Result<(), String> {
        let mut ids = BTreeSet::new();
        let mut pus = BTreeSet::new();
        let mut cores = BTreeSet::new();
        let reserved: BTreeSet<u32> = self.reserved.iter().map(|r| r.core).collect();
        for o in &self.osds {
            if !ids.insert(o.id) {
                return Err(format!("osd.{} appears twice", o.id));
            }
            let want_cores: Vec<u32> = o.shards.iter().map(|s| s.core).collect();
            let want_cpus: Vec<u32> = o.shards.iter().map(|s| s.pu).collect();
            if o.cores != want_cores || o.cpus != want_cpus {
                return Err(format!("osd.{}: cores/cpus do not match its shards", o.id));
            }
            for (i, s) in o.shards.iter().enumerate() {
                if s.shard as usize != i {
                    return Err(format!("osd.{}: shard {} out of order", o.id, s.shard));
                }
                if !pus.insert(s.pu) {
                    return Err(format!("cpu {} runs two shards", s.pu));
                }
                if reserved.contains(&s.core) {
                    return Err(format!("core {} is reserved but runs a shard", s.core));
                }
                if !cores.insert(s.core) && self.policy.avoid_smt {
                    return Err(format!("core {} runs two shards with avoid_smt", s.core));
                }
            }
        }
        Ok(())
    }

    /// Human-readable plan.
    pub fn render_text(&self) -> String {
        let mut s = String::new();
        let total = self.total_shards();
        let smt = if self.policy.avoid_smt {
            "SMT siblings left idle"
        } else {
            "SMT siblings allowed"
        };
        let _ = writeln!(
            s,
            "plan: OSDs {}, shards {} ({}), reserved cores {}, idle cores {}",
            self.osds.len(),
            total,
            smt,
            self.reserved.len(),
            self.idle_cores.len()
        );
        if !self.reserved.is_empty() {
            let cores: Vec<u32> = self.reserved.iter().map(|r| r.core).collect();
            let pus: Vec<u32> = self
                .reserved
                .iter()
                .flat_map(|r| r.pus.iter().copied())
                .collect();
            let _ = writeln!(
                s,
                "reserved: cores {} (cpus {}) {}",
                format_cpu_list(&cores),
                format_cpu_list(&pus),
                self.reserved_reason
            );
        }
        for o in &self.osds {
            let local = o.shards.iter().filter(|x| x.local).count();
            let numa = o.numa.map_or("?".to_string(), |n| n.to_string());
            let _ = writeln!(
                s,
                "osd.{:<3} {:<10} numa {:<2} {:>3} shards ({} local)  cores {}  cpus {}",
                o.id,
                o.device,
                numa,
                o.shards.len(),
                local,
                format_cpu_list(&o.cores),
                format_cpu_list(&o.cpus)
            );
        }
        for w in &self.warnings {
            let _ = writeln!(s, "warning: {w}");
        }
        s
    }
}

/// Parses `DEVICE` (ids 0, 1, ... by position) or `ID=DEVICE` arguments.
pub fn parse_osd_specs(args: &[String]) -> Result<Vec<OsdSpec>, PlanError> {
    args.iter()
        .enumerate()
        .map(|(i, a)| match a.split_once('=') {
            Some((id, dev)) => {
                let id = id.trim().trim_start_matches("osd.");
                match (id.parse::<u32>(), dev.is_empty()) {
                    (Ok(id), false) => Ok(OsdSpec {
                        id,
                        device: dev.to_string(),
                    }),
                    _ => Err(PlanError::BadSpec(a.clone())),
                }
            }
            None if !a.is_empty() => Ok(OsdSpec {
                id: i as u32,
                device: a.clone(),
            }),
            None => Err(PlanError::BadSpec(a.clone())),
        })
        .collect()
}

/// Whole-disk candidates for a device name: itself, then its parent if it
/// looks like a partition (`nvme0n1p2` → `nvme0n1`, `sda3` → `sda`).
fn device_candidates(name: &str) -> Vec<String> {
    let name = name.strip_prefix("/dev/").unwrap_or(name);
    let mut v = vec![name.to_string()];
    let base = name.trim_end_matches(|c: char| c.is_ascii_digit());
    if base.len() < name.len() && !base.is_empty() {
        match base.strip_suffix('p') {
            Some(disk) if disk.ends_with(|c: char| c.is_ascii_digit()) => v.push(disk.to_string()),
            _ if !base.ends_with(|c: char| c.is_ascii_digit()) && !base.starts_with("nvme") => {
                v.push(base.to_string())
            }
            _ => {}
        }
    }
    v
}

/// One schedulable place for a shard.
#[derive(Debug, Clone, Copy)]
struct Slot {
    core: u32,
    pu: u32,
    numa: Option<u32>,
}

/// Places every OSD's shards; see the module docs for the rules.
pub fn plan(topo: &Topology, osds: &[OsdSpec], policy: &Policy) -> Result<Plan, PlanError> {
    if osds.is_empty() {
        return Err(PlanError::NoOsds);
    }
    if osds.len() > limits::osds_max_count {
        return Err(PlanError::TooManyOsds(osds.len()));
    }
    let mut ids = BTreeSet::new();
    for o in osds {
        if !ids.insert(o.id) {
            return Err(PlanError::DuplicateOsd(o.id));
        }
    }
    if let Some(n) = policy.shards_per_osd {
        if n == 0 || n > limits::shards_per_osd_max_count {
            return Err(PlanError::BadShardCount(n));
        }
    }

    // Devices → NUMA nodes.
    let mut osd_numa = Vec::with_capacity(osds.len());
    for o in osds {
        let dev = device_candidates(&o.device).iter().find_map(|c| {
            topo.devices
                .iter()
                .find(|d| d.kind == DeviceKind::Block && &d.name == c)
        });
        match dev {
            Some(d) => osd_numa.push(d.numa),
            None => {
                let known: Vec<&str> = topo
                    .devices
                    .iter()
                    .filter(|d| d.kind == DeviceKind::Block)
                    .map(|d| d.name.as_str())
                    .collect();
                return Err(PlanError::UnknownDevice {
                    osd: o.id,
                    device: o.device.clone(),
                    known: if known.is_empty() {
                        "none".into()
                    } else {
                        known.join(", ")
                    },
                });
            }
        }
    }

    // Reserve whole cores, near the NIC if we know where it is.
    let cores = &topo.cores;
    if policy.reserve_cores >= cores.len() {
        return Err(PlanError::ReserveTooLarge {
            reserve: policy.reserve_cores,
            cores: cores.len(),
        });
    }
    let nic = topo
        .devices
        .iter()
        .find(|d| d.kind == DeviceKind::Net && d.numa.is_some());
    let (order, reserved_reason): (Vec<&Core>, String) =
        match nic.and_then(|n| n.numa.map(|m| (n, m))) {
            // The NIC's node first (its IRQs and softirqs run there), then the rest.
            Some((n, node)) => (
                cores
                    .iter()
                    .filter(|c| c.numa == Some(node))
                    .chain(cores.iter().filter(|c| c.numa != Some(node)))
                    .collect(),
                format!("on NUMA node {node} (local to {})", n.name),
            ),
            None => (
                cores.iter().collect(),
                "from core 0 (no NIC locality known)".to_string(),
            ),
        };
    let reserved: Vec<ReservedCore> = order
        .iter()
        .take(policy.reserve_cores)
        .map(|c| ReservedCore {
            core: c.id,
            numa: c.numa,
            pus: c.pus.clone(),
        })
        .collect();
    let reserved_ids: BTreeSet<u32> = reserved.iter().map(|r| r.core).collect();

    // Slots per NUMA node: first PUs of every free core, then (with SMT
    // allowed) the second PUs, and so on.
    let free: Vec<&Core> = cores
        .iter()
        .filter(|c| !reserved_ids.contains(&c.id))
        .collect();
    let depth = if policy.avoid_smt {
        1
    } else {
        topo.threads_per_core().max(1)
    };
    let mut slots: BTreeMap<Option<u32>, VecDeque<Slot>> = BTreeMap::new();
    // A topology built by our loaders never repeats a PU or a core id, but
    // one deserialized from JSON might: never hand out either twice.
    let mut seen_pus: BTreeSet<u32> = reserved
        .iter()
        .flat_map(|r| r.pus.iter().copied())
        .collect();
    let mut seen_cores = BTreeSet::new();
    let free: Vec<&Core> = free
        .into_iter()
        .filter(|c| seen_cores.insert(c.id))
        .collect();
    for rank in 0..depth {
        for c in &free {
            if let Some(&pu) = c.pus.get(rank).filter(|&&pu| seen_pus.insert(pu)) {
                slots.entry(c.numa).or_default().push_back(Slot {
                    core: c.id,
                    pu,
                    numa: c.numa,
                });
            }
        }
    }
    let total_slots: usize = slots.values().map(VecDeque::len).sum();
    let unit = if policy.avoid_smt { "cores" } else { "PUs" };

    // Shards each OSD wants.
    let demand: Vec<usize> = match policy.shards_per_osd {
        Some(n) => {
            let shards = n * osds.len();
            if shards > total_slots {
                return Err(oversubscribed(shards, total_slots, unit, policy, topo));
            }
            vec![n; osds.len()]
        }
        None => {
            if osds.len() > total_slots {
                return Err(oversubscribed(osds.len(), total_slots, unit, policy, topo));
            }
            even_demand(&osd_numa, &slots, total_slots)
        }
    };

    // Phase 1: local slots, shared out evenly among a node's OSDs.
    let mut granted: Vec<Vec<Slot>> = vec![Vec::new(); osds.len()];
    let nodes: BTreeSet<u32> = osd_numa.iter().flatten().copied().collect();
    for node in nodes {
        let here: Vec<usize> = (0..osds.len())
            .filter(|&i| osd_numa[i] == Some(node))
            .collect();
        let Some(queue) = slots.get_mut(&Some(node)) else {
            continue;
        };
        let want: Vec<usize> = here.iter().map(|&i| demand[i]).collect();
        let share = fair_share(&want, queue.len());
        for (k, &i) in here.iter().enumerate() {
            // Contiguous blocks keep an OSD's shards in one cache domain.
            granted[i].extend(queue.drain(..share[k]));
        }
    }

    // Phase 2: what is left, and OSDs of unknown locality, one shard at a
    // time from the node with the most free slots.
    for i in 0..osds.len() {
        while granted[i].len() < demand[i] {
            let Some((_, q)) = slots
                .iter_mut()
                .filter(|(_, q)| !q.is_empty())
                .max_by(|a, b| {
                    // Most free slots; ties → the lower node id.
                    a.1.len().cmp(&b.1.len()).then(b.0.cmp(a.0))
                })
            else {
                // Cannot happen: total demand <= total slots was checked.
                break;
            };
            if let Some(s) = q.pop_front() {
                granted[i].push(s);
            }
        }
    }

    // Assemble.
    let mut warnings = Vec::new();
    let mut plans = Vec::with_capacity(osds.len());
    for (i, o) in osds.iter().enumerate() {
        let numa = osd_numa[i];
        let shards: Vec<ShardPlacement> = granted[i]
            .iter()
            .enumerate()
            .map(|(k, s)| ShardPlacement {
                shard: k as u32,
                core: s.core,
                pu: s.pu,
                numa: s.numa,
                local: numa.is_some() && s.numa == numa,
            })
            .collect();
        let remote = shards.iter().filter(|s| !s.local).count();
        match numa {
            None => warnings.push(format!(
                "osd.{}: NUMA locality of {} unknown; shards put where most cores were free",
                o.id, o.device
            )),
            Some(n) if remote > 0 => warnings.push(format!(
                "osd.{}: {} of {} shards are not on NUMA node {} ({}'s node): not enough free cores there",
                o.id,
                remote,
                shards.len(),
                n,
                o.device
            )),
            _ => {}
        }
        plans.push(OsdPlan {
            id: o.id,
            device: o.device.clone(),
            numa,
            cores: shards.iter().map(|s| s.core).collect(),
            cpus: shards.iter().map(|s| s.pu).collect(),
            shards,
        });
    }
    let used: BTreeSet<u32> = plans.iter().flat_map(|p| p.cores.iter().copied()).collect();
    let idle_cores: Vec<u32> = free
        .iter()
        .map(|c| c.id)
        .filter(|id| !used.contains(id))
        .collect();
    if !policy.avoid_smt {
        let mut per_core: BTreeMap<u32, usize> = BTreeMap::new();
        for p in &plans {
            for c in &p.cores {
                *per_core.entry(*c).or_default() += 1;
            }
        }
        let doubled = per_core.values().filter(|&&n| n > 1).count();
        if doubled > 0 {
            warnings.push(format!(
                "{doubled} cores run two or more shards on SMT siblings"
            ));
        }
    }
    let plan = Plan {
        policy: policy.clone(),
        osds: plans,
        reserved,
        reserved_reason,
        idle_cores,
        warnings,
    };
    debug_assert_eq!(plan.validate(), Ok(()));
    Ok(plan)
}

fn oversubscribed(
    shards: usize,
    slots: usize,
    unit: &'static str,
    policy: &Policy,
    topo: &Topology,
) -> PlanError {
    let mut hints = Vec::new();
    if policy.reserve_cores > 0 {
        hints.push("reserve fewer cores");
    }
    if policy.avoid_smt && topo.threads_per_core() > 1 {
        hints.push("allow SMT siblings (--allow-smt)");
    }
    hints.push("use fewer shards per OSD");
    PlanError::Oversubscribed {
        shards,
        slots,
        unit,
        hint: format!(" ({})", hints.join(", or ")),
    }
}

/// "All cores evenly": every OSD gets `slots / osds`, and the remainder goes
/// one each to OSDs whose node still has spare local slots, most spare
/// first, so extras do not land on remote cores.
fn even_demand(
    osd_numa: &[Option<u32>],
    slots: &BTreeMap<Option<u32>, VecDeque<Slot>>,
    total_slots: usize,
) -> Vec<usize> {
    let n = osd_numa.len();
    let base = total_slots / n;
    let mut extra = total_slots % n;
    let mut demand = vec![base; n];
    let mut spare: BTreeMap<Option<u32>, isize> =
        slots.iter().map(|(k, q)| (*k, q.len() as isize)).collect();
    for node in osd_numa {
        *spare.entry(*node).or_default() -= base as isize;
    }
    let mut has_extra = vec![false; n];
    while extra > 0 {
        let pick = (0..n).filter(|&i| !has_extra[i]).max_by(|&a, &b| {
            let sa = if osd_numa[a].is_some() {
                spare[&osd_numa[a]]
            } else {
                isize::MIN
            };
            let sb = if osd_numa[b].is_some() {
                spare[&osd_numa[b]]
            } else {
                isize::MIN
            };
            sa.cmp(&sb).then(b.cmp(&a))
        });
        let Some(i) = pick else { break };
        has_extra[i] = true;
        demand[i] += 1;
        *spare.entry(osd_numa[i]).or_default() -= 1;
        extra -= 1;
    }
    demand
}

/// Water-filling: `available` slots shared among wants, one at a time in
/// turn, never more than a want.
fn fair_share(want: &[usize], available: usize) -> Vec<usize> {
    let mut got = vec![0; want.len()];
    let mut left = available;
    loop {
        let mut progressed = false;
        for (g, w) in got.iter_mut().zip(want) {
            if left == 0 {
                return got;
            }
            if *g < *w {
                *g += 1;
                left -= 1;
                progressed = true;
            }
        }
        if !progressed {
            return got;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fair_share_is_even_and_bounded() {
        assert_eq!(fair_share(&[8, 8, 8, 8], 30), vec![8, 8, 7, 7]);
        assert_eq!(fair_share(&[2, 8], 9), vec![2, 7]);
        assert_eq!(fair_share(&[3, 3], 100), vec![3, 3]);
        assert_eq!(fair_share(&[], 4), Vec::<usize>::new());
    }

    #[test]
    fn partitions_map_to_disks() {
        assert_eq!(
            device_candidates("/dev/nvme0n1p2"),
            vec!["nvme0n1p2", "nvme0n1"]
        );
        assert_eq!(device_candidates("sda3"), vec!["sda3", "sda"]);
        assert_eq!(device_candidates("nvme0n1"), vec!["nvme0n1"]);
        assert_eq!(device_candidates("vda"), vec!["vda"]);
    }

    #[test]
    fn osd_specs_parse() {
        let a = [
            "nvme0n1".to_string(),
            "7=nvme1n1".into(),
            "osd.9=/dev/sda".into(),
        ];
        let v = parse_osd_specs(&a).unwrap();
        assert_eq!(
            v[0],
            OsdSpec {
                id: 0,
                device: "nvme0n1".into()
            }
        );
        assert_eq!(
            v[1],
            OsdSpec {
                id: 7,
                device: "nvme1n1".into()
            }
        );
        assert_eq!(
            v[2],
            OsdSpec {
                id: 9,
                device: "/dev/sda".into()
            }
        );
        assert!(parse_osd_specs(&["x=nvme0n1".to_string()]).is_err());
        assert!(parse_osd_specs(&["3=".to_string()]).is_err());
    }
}
