//! The system checklist for an OSD node: each check reads one fact, judges
//! it ok / warn / fail, and says how to fix it.
//!
//! Owns [`Check`], [`CheckContext`] and [`run_all`]. Each check is split in
//! two: a *gather* step that reads sysfs/procfs under the context's
//! [`SysRoot`] (or asks the kernel: rlimits, `io_uring_setup`, an O_DIRECT
//! probe) and a pure *judge* step, so tests can drive every status from a
//! fake tree or from plain values.
//!
//! Invariants: no check panics or returns an error; a file that is absent
//! gives `warn` with value `"unavailable"` (or the check's documented
//! neutral answer when absence is normal, e.g. no NVMe drives); the O_DIRECT
//! probe removes its file.

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::limits;
use crate::plan::Plan;
use crate::sys::{format_cpu_list, SysError, SysRoot};
use crate::topology::{self, human_bytes, DeviceKind, Topology};

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Nothing to do.
    Ok,
    /// Works, but slower or riskier than it should be; or not visible.
    Warn,
    /// The OSD will not work (well) until this is fixed.
    Fail,
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// Stable name (`io_uring`, `memlock`, ...).
    pub name: String,
    /// ok / warn / fail.
    pub status: Status,
    /// What was read.
    pub value: String,
    /// How to fix it (empty when ok and nothing to add).
    pub advice: String,
}

impl Check {
    fn new(
        name: &str,
        status: Status,
        value: impl Into<String>,
        advice: impl Into<String>,
    ) -> Check {
        Check {
            name: name.to_string(),
            status,
            value: value.into(),
            advice: advice.into(),
        }
    }

    fn unavailable(name: &str, what: &str) -> Check {
        Check::new(
            name,
            Status::Warn,
            "unavailable",
            format!("{what} is not visible on this host"),
        )
    }
}

/// What the checks look at.
#[derive(Debug, Clone)]
pub struct CheckContext {
    /// Where `/sys` and `/proc` are read.
    pub root: SysRoot,
    /// Directory on the OSD data path for the O_DIRECT probe.
    pub data_dir: PathBuf,
    /// The node's topology, if known (NICs, core count).
    pub topology: Option<Topology>,
    /// The shard plan, if any (IRQ overlap, memlock sizing).
    pub plan: Option<Plan>,
}

impl CheckContext {
    /// Live host, data dir `dir`, no plan.
    pub fn host(dir: impl Into<PathBuf>) -> CheckContext {
        CheckContext {
            root: SysRoot::default(),
            data_dir: dir.into(),
            topology: Topology::discover().ok(),
            plan: None,
        }
    }

    /// Shards the node will run: the plan's, else one per core.
    fn shards(&self) -> usize {
        if let Some(p) = &self.plan {
            return p.total_shards();
        }
        if let Some(t) = &self.topology {
            return t.cores.len();
        }
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

/// Runs every check, in a fixed order.
pub fn run_all(ctx: &CheckContext) -> Vec<Check> {
    vec![
        io_uring(&ctx.root),
        memlock(ctx),
        cpu_governor(&ctx.root),
        transparent_hugepages(&ctx.root),
        cpuidle(&ctx.root),
        nvme_scheduler(ctx),
        nic_irq_affinity(ctx),
        nofile(),
        o_direct(&ctx.data_dir),
    ]
}

/// Text report: one line per check, advice indented below.
pub fn render_text(checks: &[Check]) -> String {
    let mut s = String::new();
    for c in checks {
        let st = match c.status {
            Status::Ok => "ok",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        };
        let _ = writeln!(s, "{st:<5} {:<22} {}", c.name, c.value);
        if !c.advice.is_empty() && c.status != Status::Ok {
            let _ = writeln!(s, "      -> {}", c.advice);
        }
    }
    s
}

// ---------------------------------------------------------------- io_uring

/// `io_uring`: the sysctl and an actual `io_uring_setup`.
pub fn io_uring(root: &SysRoot) -> Check {
    let sysctl = root.read_i64("/proc/sys/kernel/io_uring_disabled");
    let release = root.read("/proc/sys/kernel/osrelease").ok();
    let setup = io_uring::IoUring::new(limits::io_uring_probe_entries_count).map(drop);
    judge_io_uring(sysctl, setup, release.as_deref())
}

/// Judges `kernel.io_uring_disabled` (absent before Linux 6.6) and the
/// result of `io_uring_setup`.
pub fn judge_io_uring(
    sysctl: Result<i64, SysError>,
    setup: Result<(), io::Error>,
    kernel: Option<&str>,
) -> Check {
    let name = "io_uring";
    let knob = match &sysctl {
        Ok(v) => format!("io_uring_disabled={v}"),
        Err(e) if e.is_missing() => "io_uring_disabled absent".to_string(),
        Err(_) => "io_uring_disabled unreadable".to_string(),
    };
    let kern = kernel.map(|k| format!(", kernel {k}")).unwrap_or_default();
    let persist = "sysctl -w kernel.io_uring_disabled=0 and persist it in /etc/sysctl.d/";
    match setup {
        Ok(()) => {
            let value = format!("{knob}, io_uring_setup ok{kern}");
            match sysctl {
                Ok(1) => Check::new(
                    name,
                    Status::Ok,
                    value,
                    "io_uring is limited to kernel.io_uring_group and CAP_SYS_ADMIN; \
                     run the OSD as a member of that group",
                ),
                _ => Check::new(name, Status::Ok, value, ""),
            }
        }
        Err(e) => {
            let value = format!("{knob}, io_uring_setup failed: {e}{kern}");
            let advice = match (e.raw_os_error(), &sysctl) {
                (Some(libc::EPERM), Ok(v)) if *v >= 1 => {
                    format!("io_uring is disabled by the kernel: {persist}")
                }
                (Some(libc::EPERM), _) => "io_uring_setup is blocked (seccomp or container \
                    policy): allow the io_uring_* syscalls for the OSD"
                    .to_string(),
                (Some(libc::ENOSYS), _) => {
                    "the kernel has no io_uring: glommio needs Linux >= 5.8".to_string()
                }
                (Some(libc::ENOMEM), _) => {
                    "io_uring_setup ran out of locked memory: raise RLIMIT_MEMLOCK".to_string()
                }
                _ => format!("io_uring must work for glommio; {persist}"),
            };
            Check::new(name, Status::Fail, value, advice)
        }
    }
}

// ----------------------------------------------------------------- memlock

/// An rlimit value; `None` is RLIM_INFINITY.
pub type Limit = Option<u64>;

fn getrlimit(resource: libc::__rlimit_resource_t) -> io::Result<(Limit, Limit)> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct we own.
    if unsafe { libc::getrlimit(resource, &mut r) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let conv = |v: libc::rlim_t| {
        if v == libc::RLIM_INFINITY {
            None
        } else {
            Some(v)
        }
    };
    Ok((conv(r.rlim_cur), conv(r.rlim_max)))
}

fn fmt_limit(l: Limit) -> String {
    l.map_or("unlimited".to_string(), human_bytes)
}

/// Whether the effective capabilities include CAP_IPC_LOCK (io_uring then
/// does not charge registered buffers against RLIMIT_MEMLOCK).
fn has_cap_ipc_lock(root: &SysRoot) -> bool {
    const CAP_IPC_LOCK_BIT: u32 = 14;
    let Ok(status) = root.read("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_IPC_LOCK_BIT) != 0)
}

/// `memlock`: RLIMIT_MEMLOCK against what glommio needs for the planned
/// shards.
pub fn memlock(ctx: &CheckContext) -> Check {
    match getrlimit(libc::RLIMIT_MEMLOCK) {
        Ok((soft, hard)) => judge_memlock(soft, hard, ctx.shards(), has_cap_ipc_lock(&ctx.root)),
        Err(e) => Check::new(
            "memlock",
            Status::Warn,
            "unavailable",
            format!("getrlimit: {e}"),
        ),
    }
}

/// Locked memory glommio registers for `shards` executors.
pub fn memlock_needed_bytes(shards: usize) -> u64 {
    (shards as u64)
        .saturating_mul(limits::glommio_rings_per_shard_count)
        .saturating_mul(limits::glommio_io_memory_per_shard_bytes)
}

/// Judges the soft/hard RLIMIT_MEMLOCK for `shards` shards.
pub fn judge_memlock(soft: Limit, hard: Limit, shards: usize, cap_ipc_lock: bool) -> Check {
    let name = "memlock";
    let needed = memlock_needed_bytes(shards);
    let value = format!(
        "soft {}, hard {}; shards {}: glommio needs {} ({} io_memory x {} rings each){}",
        fmt_limit(soft),
        fmt_limit(hard),
        shards,
        human_bytes(needed),
        human_bytes(limits::glommio_io_memory_per_shard_bytes),
        limits::glommio_rings_per_shard_count,
        if cap_ipc_lock {
            ", CAP_IPC_LOCK held"
        } else {
            ""
        }
    );
    let raise = "set LimitMEMLOCK=infinity in the sepia-osd systemd unit, or add \
                 '<user> - memlock unlimited' to /etc/security/limits.conf and log in \
                 again (check with `ulimit -l`); it is counted per user, so all OSDs of \
                 one user share it";
    let soft_bytes = soft.unwrap_or(u64::MAX);
    if soft_bytes < limits::glommio_memlock_floor_bytes {
        return Check::new(
            name,
            Status::Fail,
            value,
            format!(
                "glommio refuses to start below {}: {raise}",
                human_bytes(limits::glommio_memlock_floor_bytes)
            ),
        );
    }
    if soft_bytes >= needed {
        return Check::new(name, Status::Ok, value, "");
    }
    if cap_ipc_lock {
        // io_uring does not charge registered buffers to a CAP_IPC_LOCK
        // holder, but the OSD may run without it.
        return Check::new(
            name,
            Status::Ok,
            value,
            format!(
                "enough for a process holding CAP_IPC_LOCK; an OSD run without it needs {}: {raise}",
                human_bytes(needed)
            ),
        );
    }
    Check::new(
        name,
        Status::Warn,
        value,
        format!(
            "below {} glommio silently falls back to unregistered, slower I/O buffers: {raise}",
            human_bytes(needed)
        ),
    )
}

// ------------------------------------------------------------------ nofile

/// `nofile`: RLIMIT_NOFILE.
pub fn nofile() -> Check {
    match getrlimit(libc::RLIMIT_NOFILE) {
        Ok((soft, hard)) => judge_nofile(soft, hard),
        Err(e) => Check::new(
            "nofile",
            Status::Warn,
            "unavailable",
            format!("getrlimit: {e}"),
        ),
    }
}

/// Judges the open-file limits.
pub fn judge_nofile(soft: Limit, hard: Limit) -> Check {
    let show = |l: Limit| l.map_or("unlimited".to_string(), |v| v.to_string());
    let value = format!("soft {}, hard {}", show(soft), show(hard));
    let min = limits::nofile_min_count;
    if soft.unwrap_or(u64::MAX) >= min {
        return Check::new("nofile", Status::Ok, value, "");
    }
    let advice = if hard.unwrap_or(u64::MAX) >= min {
        format!("raise the soft limit to at least {min} (LimitNOFILE=1048576 in the unit, or `ulimit -n {min}`)")
    } else {
        format!(
            "raise both limits to at least {min}: LimitNOFILE=1048576 in the systemd unit, or \
             'nofile' lines in /etc/security/limits.conf"
        )
    };
    Check::new("nofile", Status::Warn, value, advice)
}

// ------------------------------------------------------------ cpu_governor

/// Names of `cpuN` directories under `/sys/devices/system/cpu`.
fn cpu_dirs(root: &SysRoot) -> Result<Vec<String>, SysError> {
    Ok(root
        .list_dir("/sys/devices/system/cpu")?
        .into_iter()
        .filter(|n| {
            n.strip_prefix("cpu")
                .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect())
}

/// `cpu_governor`: every CPU's cpufreq scaling governor.
pub fn cpu_governor(root: &SysRoot) -> Check {
    let name = "cpu_governor";
    let Ok(cpus) = cpu_dirs(root) else {
        return Check::unavailable(name, "/sys/devices/system/cpu");
    };
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    for cpu in &cpus {
        if let Ok(g) = root.read(format!(
            "/sys/devices/system/cpu/{cpu}/cpufreq/scaling_governor"
        )) {
            *counts.entry(g).or_default() += 1;
        }
    }
    judge_governors(&counts)
}

/// Judges governor → CPU count.
pub fn judge_governors(counts: &std::collections::BTreeMap<String, usize>) -> Check {
    let name = "cpu_governor";
    if counts.is_empty() {
        return Check::new(
            name,
            Status::Warn,
            "unavailable",
            "no cpufreq governor is visible (a VM, or frequency is managed by firmware): \
             set the BIOS/host power profile to maximum performance",
        );
    }
    let value = counts
        .iter()
        .map(|(g, n)| format!("{g} x{n}"))
        .collect::<Vec<_>>()
        .join(", ");
    if counts.keys().all(|g| g == "performance") {
        Check::new(name, Status::Ok, value, "")
    } else {
        Check::new(
            name,
            Status::Warn,
            value,
            "ramping the clock up adds latency to every burst: `cpupower frequency-set -g \
             performance` (persist with the cpupower service or a tuned profile)",
        )
    }
}

// --------------------------------------------------- transparent_hugepages

/// `transparent_hugepages`: THP mode and defrag policy.
pub fn transparent_hugepages(root: &SysRoot) -> Check {
    let enabled = root.read("/sys/kernel/mm/transparent_hugepage/enabled");
    let defrag = root.read("/sys/kernel/mm/transparent_hugepage/defrag");
    match enabled {
        Ok(e) => judge_thp(
            topology::selected_scheduler(&e).as_deref(),
            defrag
                .ok()
                .as_deref()
                .and_then(topology::selected_scheduler)
                .as_deref(),
        ),
        Err(_) => Check::unavailable(
            "transparent_hugepages",
            "/sys/kernel/mm/transparent_hugepage",
        ),
    }
}

/// Judges the selected THP `enabled` and `defrag` words.
pub fn judge_thp(enabled: Option<&str>, defrag: Option<&str>) -> Check {
    let name = "transparent_hugepages";
    let value = format!(
        "enabled={} defrag={}",
        enabled.unwrap_or("?"),
        defrag.unwrap_or("?")
    );
    let fix = "echo madvise > /sys/kernel/mm/transparent_hugepage/enabled and \
               echo madvise > /sys/kernel/mm/transparent_hugepage/defrag \
               (persist with transparent_hugepage=madvise on the kernel command line)";
    match (enabled, defrag) {
        (None, _) => Check::new(name, Status::Warn, value, "cannot parse the THP setting"),
        (Some("always"), _) => Check::new(
            name,
            Status::Warn,
            value,
            format!("THP 'always' lets khugepaged and compaction stall the shards and bloats memory: {fix}"),
        ),
        (_, Some("always")) => Check::new(
            name,
            Status::Warn,
            value,
            format!("defrag 'always' makes page faults wait for compaction: {fix}"),
        ),
        _ => Check::new(name, Status::Ok, value, ""),
    }
}

// ----------------------------------------------------------------- cpuidle

/// One idle state of cpu0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdleState {
    /// `name` (C1, C6, POLL...).
    pub name: String,
    /// Exit `latency` in µs.
    pub latency_us: u64,
    /// `disable` set.
    pub disabled: bool,
}

/// `cpuidle`: the idle driver and the deepest enabled state of cpu0.
pub fn cpuidle(root: &SysRoot) -> Check {
    let driver = match root.read("/sys/devices/system/cpu/cpuidle/current_driver") {
        Ok(d) => d,
        Err(_) => return Check::unavailable("cpuidle", "the cpuidle driver"),
    };
    let mut states = Vec::new();
    let base = "/sys/devices/system/cpu/cpu0/cpuidle";
    if let Ok(names) = root.list_dir(base) {
        for st in names.iter().filter(|n| n.starts_with("state")) {
            let name = root
                .read(format!("{base}/{st}/name"))
                .unwrap_or_else(|_| st.clone());
            let Ok(lat) = root.read_i64(format!("{base}/{st}/latency")) else {
                continue;
            };
            let disabled = root
                .read_i64(format!("{base}/{st}/disable"))
                .map(|v| v != 0)
                .unwrap_or(false);
            states.push(IdleState {
                name,
                latency_us: lat.max(0) as u64,
                disabled,
            });
        }
    }
    let max_cstate = root
        .read("/sys/module/intel_idle/parameters/max_cstate")
        .ok();
    let halt_poll_ns = root
        .read_i64("/sys/module/haltpoll/parameters/guest_halt_poll_ns")
        .ok()
        .map(|ns| ns.max(0) as u64);
    judge_cpuidle(&driver, &states, max_cstate.as_deref(), halt_poll_ns)
}

/// Judges the idle driver and cpu0's states; `halt_poll_ns` is the
/// `haltpoll` driver's guest poll window, where that module is loaded.
pub fn judge_cpuidle(
    driver: &str,
    states: &[IdleState],
    max_cstate: Option<&str>,
    halt_poll_ns: Option<u64>,
) -> Check {
    let name = "cpuidle";
    let deepest = states
        .iter()
        .filter(|s| !s.disabled)
        .max_by_key(|s| s.latency_us);
    let mut value = format!("driver {driver}");
    if let Some(m) = max_cstate {
        let _ = write!(value, ", intel_idle.max_cstate={m}");
    }
    match deepest {
        Some(d) => {
            let _ = write!(
                value,
                ", deepest enabled {} ({} us exit latency)",
                d.name, d.latency_us
            );
        }
        None if states.is_empty() => value.push_str(", idle states not visible"),
        None => value.push_str(", all idle states disabled"),
    }
    if let (Some(ns), "haltpoll") = (halt_poll_ns, driver) {
        let _ = write!(value, ", guest_halt_poll_ns={ns}");
        // The haltpoll state claims a tiny exit latency, but a guest that
        // halts at once leaves the vCPU to the host: the next completion
        // pays a VM entry and a host wakeup (tens of µs measured here).
        let min = limits::guest_halt_poll_ns_min;
        if ns < min {
            return Check::new(
                name,
                Status::Warn,
                value,
                format!(
                    "this guest halts its vCPU as soon as it idles, so every I/O completion that \
                     finds a shard parked waits for the host to resume the vCPU: let it poll \
                     first (`echo {min} > /sys/module/haltpoll/parameters/guest_halt_poll_ns`, or \
                     haltpoll.guest_halt_poll_ns={min} on the kernel command line)"
                ),
            );
        }
    }
    match deepest {
        Some(d) if d.latency_us > limits::idle_exit_latency_max_us => Check::new(
            name,
            Status::Warn,
            value,
            format!(
                "waking from {} costs {} us per idle period, a large share of an NVMe I/O: limit \
                 C-states (`cpupower idle-set -D {}`, or intel_idle.max_cstate=1 / \
                 processor.max_cstate=1 on the kernel command line)",
                d.name,
                d.latency_us,
                limits::idle_exit_latency_max_us
            ),
        ),
        _ => Check::new(name, Status::Ok, value, ""),
    }
}

// ---------------------------------------------------------- nvme_scheduler

/// `nvme_scheduler`: every NVMe namespace (and every planned OSD device)
/// should use the `none` I/O scheduler.
pub fn nvme_scheduler(ctx: &CheckContext) -> Check {
    let root = &ctx.root;
    let name = "nvme_scheduler";
    let names = match root.list_dir("/sys/block") {
        Ok(n) => n,
        Err(_) => return Check::unavailable(name, "/sys/block"),
    };
    let mut devices: Vec<String> = names
        .into_iter()
        .filter(|n| n.starts_with("nvme"))
        // nvmeXcYnZ are hidden multipath paths; their head has the queue.
        .filter(|n| root.read_i64(format!("/sys/block/{n}/hidden")).unwrap_or(0) == 0)
        .collect();
    if let Some(p) = &ctx.plan {
        // Planned OSD devices that are flash (not rotational) too; a disk
        // keeps its elevator, mq-deadline is right for spinning media.
        for o in &p.osds {
            let d = o
                .device
                .strip_prefix("/dev/")
                .unwrap_or(&o.device)
                .to_string();
            let flash = root
                .read_i64(format!("/sys/block/{d}/queue/rotational"))
                .ok()
                == Some(0);
            if flash && !devices.contains(&d) {
                devices.push(d);
            }
        }
    }
    let found: Vec<(String, Option<String>)> = devices
        .into_iter()
        .map(|d| {
            let s = root
                .read(format!("/sys/block/{d}/queue/scheduler"))
                .ok()
                .and_then(|s| topology::selected_scheduler(&s));
            (d, s)
        })
        .collect();
    judge_schedulers(&found)
}

/// Judges device → selected scheduler.
pub fn judge_schedulers(found: &[(String, Option<String>)]) -> Check {
    let name = "nvme_scheduler";
    if found.is_empty() {
        return Check::new(name, Status::Ok, "no NVMe block devices", "");
    }
    let value = found
        .iter()
        .map(|(d, s)| format!("{d}={}", s.as_deref().unwrap_or("unavailable")))
        .collect::<Vec<_>>()
        .join(", ");
    let bad: Vec<&str> = found
        .iter()
        .filter(|(_, s)| s.as_deref() != Some("none"))
        .map(|(d, _)| d.as_str())
        .collect();
    if bad.is_empty() {
        return Check::new(name, Status::Ok, value, "");
    }
    Check::new(
        name,
        Status::Warn,
        value,
        format!(
            "NVMe queues need no scheduler, one only adds locking and latency: `echo none > \
             /sys/block/DEV/queue/scheduler` for {}; persist with a udev rule \
             ACTION==\"add|change\", KERNEL==\"nvme[0-9]*n[0-9]*\", ATTR{{queue/scheduler}}=\"none\"",
            bad.join(", ")
        ),
    )
}

// -------------------------------------------------------- nic_irq_affinity

/// A NIC's interrupt and where it may fire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicIrq {
    /// Interface.
    pub nic: String,
    /// IRQ number.
    pub irq: u32,
    /// CPUs it may fire on.
    pub cpus: Vec<u32>,
}

/// IRQ numbers of a NIC: its PCI function's `msi_irqs` (found from the
/// `device` link, walking up past virtio), plus `/proc/interrupts` lines
/// naming the interface or its PCI address.
pub fn nic_irqs(root: &SysRoot, nic: &str, interrupts: &str) -> Vec<u32> {
    let mut irqs = std::collections::BTreeSet::new();
    let mut keys = vec![nic.to_string()];
    if let Some(dir) = topology::sysfs_device_dir(root, &format!("/sys/class/net/{nic}/device")) {
        if let Some(n) = dir.file_name().and_then(|n| n.to_str()) {
            // virtio names its vectors after the virtio device (virtio2-input.0).
            keys.push(n.to_string());
        }
        let mut cur = Some(dir.as_path());
        for _ in 0..limits::sysfs_parent_walk_max_count {
            let Some(d) = cur else { break };
            if !d.starts_with(root.root()) {
                break;
            }
            let msi = d.join("msi_irqs");
            if let Ok(rd) = std::fs::read_dir(&msi) {
                for e in rd.take(limits::dir_entries_max_count).flatten() {
                    if let Some(n) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) {
                        irqs.insert(n);
                    }
                }
                if let Some(n) = d.file_name().and_then(|n| n.to_str()) {
                    keys.push(n.to_string());
                }
                break;
            }
            cur = d.parent();
        }
    }
    for line in interrupts.lines() {
        let Some((num, rest)) = line.trim_start().split_once(':') else {
            continue;
        };
        let Ok(num) = num.parse::<u32>() else {
            continue;
        };
        // Descriptions name the vector after the interface, the virtio
        // device or the PCI function: "eth0-TxRx-3", "i40e-eth0-TxRx-0",
        // "virtio2-input.0", "PCI-MSIX-0000:00:03.0",
        // "mlx5_comp0@pci:0000:85:00.0". Compare whole tokens only, so
        // eth0 does not match eth01.
        let mentions = rest
            .split(|c: char| c.is_whitespace() || c == '-' || c == '@')
            .map(|t| t.strip_prefix("pci:").unwrap_or(t))
            .any(|t| keys.iter().any(|k| k == t));
        if mentions {
            irqs.insert(num);
        }
    }
    irqs.into_iter().collect()
}

/// `nic_irq_affinity`: the NICs' IRQ affinity versus the planned shard CPUs.
pub fn nic_irq_affinity(ctx: &CheckContext) -> Check {
    let root = &ctx.root;
    let name = "nic_irq_affinity";
    let interrupts = match root.read_large("/proc/interrupts", limits::proc_interrupts_max_bytes) {
        Ok(s) => s,
        Err(_) => return Check::unavailable(name, "/proc/interrupts"),
    };
    let mut nics: Vec<String> = ctx
        .topology
        .iter()
        .flat_map(|t| t.devices.iter())
        .filter(|d| d.kind == DeviceKind::Net)
        .map(|d| d.name.clone())
        .collect();
    if nics.is_empty() {
        if let Ok(names) = root.list_dir("/sys/class/net") {
            nics = names
                .into_iter()
                .filter(|n| root.exists(format!("/sys/class/net/{n}/device")))
                .collect();
        }
    }
    let mut found = Vec::new();
    for nic in &nics {
        for irq in nic_irqs(root, nic, &interrupts) {
            let eff = root.read_cpu_list(format!("/proc/irq/{irq}/effective_affinity_list"));
            let cpus = match eff {
                Ok(c) if !c.is_empty() => Ok(c),
                _ => root.read_cpu_list(format!("/proc/irq/{irq}/smp_affinity_list")),
            };
            if let Ok(cpus) = cpus {
                found.push(NicIrq {
                    nic: nic.clone(),
                    irq,
                    cpus,
                });
            }
        }
    }
    let shard_cpus = ctx.plan.as_ref().map(|p| (p.shard_pus(), reserved_pus(p)));
    judge_irqs(
        &nics,
        &found,
        shard_cpus
            .as_ref()
            .map(|(s, r)| (s.as_slice(), r.as_slice())),
    )
}

fn reserved_pus(p: &Plan) -> Vec<u32> {
    p.reserved
        .iter()
        .flat_map(|r| r.pus.iter().copied())
        .collect()
}

/// Judges NIC IRQ affinities against `(shard cpus, reserved cpus)` of a plan.
pub fn judge_irqs(nics: &[String], irqs: &[NicIrq], plan: Option<(&[u32], &[u32])>) -> Check {
    let name = "nic_irq_affinity";
    if nics.is_empty() {
        return Check::new(name, Status::Ok, "no PCI NIC found", "");
    }
    if irqs.is_empty() {
        return Check::new(
            name,
            Status::Warn,
            format!("no IRQs found for {}", nics.join(", ")),
            "cannot see the NIC's interrupts (/proc/irq); check them by hand",
        );
    }
    let mut parts = Vec::new();
    for nic in nics {
        let mine: Vec<&NicIrq> = irqs.iter().filter(|i| &i.nic == nic).collect();
        if mine.is_empty() {
            continue;
        }
        let all: Vec<u32> = mine.iter().flat_map(|i| i.cpus.iter().copied()).collect();
        parts.push(format!(
            "{nic}: {} irqs on cpus {}",
            mine.len(),
            format_cpu_list(&all)
        ));
    }
    let mut value = parts.join("; ");
    let Some((shards, reserved)) = plan else {
        return Check::new(
            name,
            Status::Ok,
            value + " (no plan to compare: pass --osds)",
            "",
        );
    };
    let overlapping: Vec<&NicIrq> = irqs
        .iter()
        .filter(|i| i.cpus.iter().any(|c| shards.contains(c)))
        .collect();
    if overlapping.is_empty() {
        return Check::new(name, Status::Ok, value + "; none on shard cpus", "");
    }
    let cpus: Vec<u32> = overlapping
        .iter()
        .flat_map(|i| i.cpus.iter().copied())
        .filter(|c| shards.contains(c))
        .collect();
    let _ = write!(
        value,
        "; {} irqs may fire on shard cpus {}",
        overlapping.len(),
        format_cpu_list(&cpus)
    );
    let target = if reserved.is_empty() {
        "the cores kept out of the plan (plan with --reserve-cores K)".to_string()
    } else {
        format!("the reserved cpus {}", format_cpu_list(reserved))
    };
    Check::new(
        name,
        Status::Warn,
        value,
        format!(
            "a shard interrupted by NIC IRQs stalls its whole executor: steer them to {target} \
             (echo LIST > /proc/irq/N/smp_affinity_list, and IRQBALANCE_BANNED_CPULIST={} for \
             irqbalance)",
            format_cpu_list(shards)
        ),
    )
}

// ---------------------------------------------------------------- o_direct

/// A 4 KiB block with the alignment O_DIRECT needs.
#[repr(C, align(4096))]
struct AlignedBlock([u8; limits::o_direct_block_bytes]);

/// What the O_DIRECT probe found.
#[derive(Debug)]
pub enum ODirectProbe {
    /// Wrote and read back a block; the file system's name.
    Works(String),
    /// The data dir does not exist.
    NoDir,
    /// Opening with O_DIRECT was refused (EINVAL: the fs has no O_DIRECT).
    Refused(String, io::Error),
    /// Some other step failed.
    Failed(String, io::Error),
    /// Read back different bytes.
    Mismatch(String),
}

/// `o_direct`: write and read one aligned block with O_DIRECT in `dir`.
pub fn o_direct(dir: &Path) -> Check {
    judge_o_direct(dir, probe_o_direct(dir))
}

/// Runs the probe; the file is removed whatever happens.
pub fn probe_o_direct(dir: &Path) -> ODirectProbe {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    if !dir.is_dir() {
        return ODirectProbe::NoDir;
    }
    let fs = fs_name(dir);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let path = dir.join(format!(
        ".sepia-tune-odirect-{}-{nanos}",
        std::process::id()
    ));
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_DIRECT)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            let _ = std::fs::remove_file(&path);
            return ODirectProbe::Refused(fs, e);
        }
        Err(e) => return ODirectProbe::Failed(fs, e),
    };
    let mut out = Box::new(AlignedBlock([0; limits::o_direct_block_bytes]));
    for (i, b) in out.0.iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
    let result = (|| {
        file.write_all_at(&out.0, 0)?;
        file.sync_data()?;
        let mut back = Box::new(AlignedBlock([0; limits::o_direct_block_bytes]));
        file.read_exact_at(&mut back.0, 0)?;
        Ok::<bool, io::Error>(back.0 == out.0)
    })();
    drop(file);
    let _ = std::fs::remove_file(&path);
    match result {
        Ok(true) => ODirectProbe::Works(fs),
        Ok(false) => ODirectProbe::Mismatch(fs),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => ODirectProbe::Refused(fs, e),
        Err(e) => ODirectProbe::Failed(fs, e),
    }
}

/// Judges the probe's result for `dir`.
pub fn judge_o_direct(dir: &Path, probe: ODirectProbe) -> Check {
    let name = "o_direct";
    let d = dir.display();
    let fix = "put the OSD data on ext4/xfs or a raw block device (tmpfs, overlayfs and some \
               FUSE file systems refuse O_DIRECT), or pass --data-dir on the data path";
    match probe {
        ODirectProbe::Works(fs) => Check::new(
            name,
            Status::Ok,
            format!("4 KiB O_DIRECT write+read ok in {d} ({fs})"),
            "",
        ),
        ODirectProbe::NoDir => Check::new(
            name,
            Status::Warn,
            "unavailable",
            format!("{d} is not a directory: pass --data-dir on the OSD data path"),
        ),
        ODirectProbe::Refused(fs, e) => Check::new(
            name,
            Status::Fail,
            format!("O_DIRECT refused in {d} ({fs}): {e}"),
            fix,
        ),
        ODirectProbe::Failed(fs, e) => Check::new(
            name,
            Status::Fail,
            format!("O_DIRECT probe failed in {d} ({fs}): {e}"),
            "the OSD needs to create and write files there with O_DIRECT",
        ),
        ODirectProbe::Mismatch(fs) => Check::new(
            name,
            Status::Fail,
            format!("O_DIRECT read back different bytes in {d} ({fs})"),
            "the storage stack corrupts direct I/O: do not use it for OSD data",
        ),
    }
}

/// File-system name of `dir` from its statfs magic.
fn fs_name(dir: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return "unknown fs".into();
    };
    // SAFETY: statfs fills the zeroed struct we own; c is NUL-terminated.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return "unknown fs".into();
    }
    #[allow(clippy::unnecessary_cast)] // f_type's width differs by arch
    let magic = st.f_type as u64;
    match magic {
        0xEF53 => "ext4",
        0x5846_5342 => "xfs",
        0x9123_683E => "btrfs",
        0x0102_1994 => "tmpfs",
        0x794C_7630 => "overlayfs",
        0x6573_5546 => "fuse",
        0x2FC1_2FC1 => "zfs",
        0xF2F5_2010 => "f2fs",
        0x0000_6969 => "nfs",
        0x0102_1997 => "9p",
        _ => return format!("fs magic {magic:#x}"),
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memlock_thresholds() {
        let floor = limits::glommio_memlock_floor_bytes;
        assert_eq!(
            judge_memlock(Some(floor - 1), None, 1, false).status,
            Status::Fail
        );
        assert_eq!(
            judge_memlock(Some(floor - 1), None, 1, true).status,
            Status::Fail
        );
        assert_eq!(
            judge_memlock(Some(8 << 20), Some(8 << 20), 2, false).status,
            Status::Warn
        );
        assert_eq!(
            judge_memlock(Some(8 << 20), Some(8 << 20), 2, true).status,
            Status::Ok
        );
        assert_eq!(
            judge_memlock(Some(60 << 20), None, 2, false).status,
            Status::Ok
        );
        assert_eq!(judge_memlock(None, None, 128, false).status, Status::Ok);
        // 2 shards x 3 rings x 10 MiB = 60 MiB: one byte less warns.
        assert_eq!(
            judge_memlock(Some((60 << 20) - 1), None, 2, false).status,
            Status::Warn
        );
    }

    #[test]
    fn nofile_thresholds() {
        assert_eq!(judge_nofile(Some(1024), Some(4096)).status, Status::Warn);
        assert_eq!(judge_nofile(Some(1024), Some(1 << 20)).status, Status::Warn);
        assert_eq!(
            judge_nofile(Some(1 << 20), Some(1 << 20)).status,
            Status::Ok
        );
        assert_eq!(judge_nofile(None, None).status, Status::Ok);
    }

    #[test]
    fn io_uring_judgement() {
        let eperm = || Err(io::Error::from_raw_os_error(libc::EPERM));
        assert_eq!(judge_io_uring(Ok(0), Ok(()), None).status, Status::Ok);
        let c = judge_io_uring(Ok(2), eperm(), Some("6.8.0"));
        assert_eq!(c.status, Status::Fail);
        assert!(c.advice.contains("io_uring_disabled=0"), "{}", c.advice);
        let c = judge_io_uring(Ok(0), eperm(), None);
        assert!(c.advice.contains("seccomp"), "{}", c.advice);
        let c = judge_io_uring(
            Err(SysError::Missing("/x".into())),
            Err(io::Error::from_raw_os_error(libc::ENOSYS)),
            None,
        );
        assert_eq!(c.status, Status::Fail);
        assert!(c.value.contains("absent"));
    }

    #[test]
    fn cpuidle_judgement() {
        let st = |n: &str, l, d| IdleState {
            name: n.into(),
            latency_us: l,
            disabled: d,
        };
        let deep = [
            st("POLL", 0, false),
            st("C1", 2, false),
            st("C6", 133, false),
        ];
        assert_eq!(
            judge_cpuidle("intel_idle", &deep, None, None).status,
            Status::Warn
        );
        let limited = [
            st("POLL", 0, false),
            st("C1", 2, false),
            st("C6", 133, true),
        ];
        let c = judge_cpuidle("intel_idle", &limited, Some("1"), None);
        assert_eq!(c.status, Status::Ok);
        assert!(c.value.contains("C1"), "{}", c.value);
        assert_eq!(judge_cpuidle("none", &[], None, None).status, Status::Ok);
        // A guest on the haltpoll driver: its halt state looks cheap, the
        // poll window decides.
        let guest = [st("POLL", 0, false), st("haltpoll idle", 1, false)];
        let halts_at_once = judge_cpuidle("haltpoll", &guest, None, Some(0));
        assert_eq!(halts_at_once.status, Status::Warn);
        assert!(
            halts_at_once.value.contains("guest_halt_poll_ns=0"),
            "{}",
            halts_at_once.value
        );
        assert!(
            halts_at_once.advice.contains("guest_halt_poll_ns"),
            "{}",
            halts_at_once.advice
        );
        let polls = judge_cpuidle("haltpoll", &guest, None, Some(200_000));
        assert_eq!(polls.status, Status::Ok, "{}", polls.value);
    }

    #[test]
    fn irq_overlap() {
        let nics = vec!["eth0".to_string()];
        let irqs = vec![
            NicIrq {
                nic: "eth0".into(),
                irq: 40,
                cpus: vec![0],
            },
            NicIrq {
                nic: "eth0".into(),
                irq: 41,
                cpus: vec![5, 6],
            },
        ];
        let c = judge_irqs(&nics, &irqs, Some((&[4, 5], &[0])));
        assert_eq!(c.status, Status::Warn);
        assert!(c.value.contains("shard cpus 5"), "{}", c.value);
        assert!(c.advice.contains("reserved cpus 0"), "{}", c.advice);
        assert_eq!(
            judge_irqs(&nics, &irqs, Some((&[1, 2], &[0]))).status,
            Status::Ok
        );
        assert_eq!(judge_irqs(&nics, &irqs, None).status, Status::Ok);
        assert_eq!(judge_irqs(&nics, &[], None).status, Status::Warn);
    }
}
