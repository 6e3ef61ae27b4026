//! Named limits and thresholds of `sepia-tuning`.
//!
//! Owns every number the crate bounds input by or judges a host by. Units
//! come last in each name; each limit says why it has its value. Anything
//! read from sysfs, procfs, a topology file or a plan file is bounded by one
//! of these before memory is reserved for it.
#![allow(non_upper_case_globals)]

/// CPUs (PUs) a cpu list or cpuset may name: Linux's largest `NR_CPUS`
/// configuration is 8192, so a higher index is a corrupt file.
pub const cpus_max_count: usize = 8192;

/// OSDs one plan may place: a node rarely carries more than 24–36 drives;
/// 1024 keeps the planner's quadratic extra-shard loop trivial.
pub const osds_max_count: usize = 1024;

/// Shards a single OSD may ask for: one shard per CPU at most.
pub const shards_per_osd_max_count: usize = cpus_max_count;

/// A sysfs or procfs attribute we read: sysfs attributes are at most one
/// page; 64 KiB leaves room for procfs files such as `smp_affinity_list`.
pub const sysfs_attr_max_bytes: u64 = 64 << 10;

/// `/proc/interrupts`: one line per IRQ, one column per CPU (~11 bytes);
/// 4096 IRQs × 8192 CPUs is ~360 MiB, real hosts are far below 16 MiB.
pub const proc_interrupts_max_bytes: u64 = 16 << 20;

/// Entries we walk in one sysfs directory (`/sys/block`, `/sys/class/net`,
/// `/sys/devices/system/cpu`, `msi_irqs`): bounds the loops on a hostile
/// or corrupt tree.
pub const dir_entries_max_count: usize = 1 << 16;

/// Parent directories walked from a device link looking for `numa_node` or
/// `msi_irqs` (virtio → PCI function → root port → host bridge): PCIe
/// trees are a handful of levels deep.
pub const sysfs_parent_walk_max_count: usize = 8;

/// Topology XML accepted from `--topology`: `lstopo --of xml` of a
/// 1000-PU machine with all I/O is a few MiB.
pub const topology_xml_max_bytes: u64 = 64 << 20;

/// Plan JSON accepted by [`crate::plan::Plan::from_json`]: a plan is one
/// line per shard.
pub const plan_json_max_bytes: usize = 16 << 20;

/// Below this RLIMIT_MEMLOCK glommio refuses to create an executor at all
/// (`MIN_MEMLOCK_LIMIT` in glommio 0.9's reactor).
pub const glommio_memlock_floor_bytes: u64 = 512 << 10;

/// glommio's default `io_memory` per executor (shard): the buffer pool it
/// registers with io_uring. Without enough memlock the registration fails
/// and glommio silently uses unregistered, slower buffers.
pub const glommio_io_memory_per_shard_bytes: u64 = 10 << 20;

/// Rings per glommio executor that register the `io_memory` pool (main,
/// poll, latency): the kernel charges locked memory per registration.
pub const glommio_rings_per_shard_count: u64 = 3;

/// Open files an OSD should be allowed: every shard keeps client and peer
/// sockets plus its device descriptors; Ceph's own units set 1048576, and
/// below 65536 a busy node runs out.
pub const nofile_min_count: u64 = 65_536;

/// Block size of the O_DIRECT probe: the store writes 4 KiB blocks, and
/// NVMe logical blocks are 512 B or 4 KiB.
pub const o_direct_block_bytes: usize = 4096;

/// Submission queue entries of the io_uring probe ring: the smallest ring
/// that exercises `io_uring_setup`.
pub const io_uring_probe_entries_count: u32 = 8;

/// Deepest acceptable idle-state exit latency: an NVMe 4 KiB read takes
/// ~10–80 µs, so waking a core slower than ~10 µs is a visible share of it.
pub const idle_exit_latency_max_us: u64 = 10;

/// Shortest acceptable poll window of a guest on the `haltpoll` idle driver
/// (Linux's own default): a guest that halts at once hands its vCPU back to
/// the host, and the next I/O completion waits for a VM entry and a host
/// wakeup, tens of µs on the 2-vCPU guests measured here.
pub const guest_halt_poll_ns_min: u64 = 200_000;
