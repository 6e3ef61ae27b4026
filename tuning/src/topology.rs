//! Hardware discovery: packages, NUMA nodes, cores, PUs, caches, and the
//! block and network devices with their NUMA locality.
//!
//! Owns [`Topology`], a plain-data copy of what hwloc (through
//! `hwlocality`) reports, so that the planner and the OSD never touch hwloc
//! objects. Sources: the live host (hwloc, then sysfs for what hwloc's I/O
//! discovery missed and for block-queue facts) or an hwloc XML file
//! (`lstopo --of xml`), which carries no sysfs facts.
//!
//! Invariants of a built [`Topology`]:
//! - `cores` are in hwloc's logical order (package, then cache domain, then
//!   core) and `cores[i].id == i`; every core has at least one PU, its PUs
//!   are Linux CPU numbers in ascending order, and no PU belongs to two
//!   cores.
//! - `core.numa`, `device.numa` are NUMA node os indexes present in
//!   `numa_nodes`, or `None` when the locality is unknown or spans nodes.
//! - Nothing read from a file panics; unreadable sysfs facts become `None`
//!   plus a line in `warnings`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use hwlocality::object::attributes::ObjectAttributes;
use hwlocality::object::types::{CacheType, OSDeviceType, ObjectType};
use hwlocality::object::TopologyObject;
use hwlocality::topology::builder::TypeFilter;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::limits;
use crate::sys::{format_cpu_list, SysError, SysRoot};

/// Why a topology could not be obtained.
#[derive(Debug, Error)]
pub enum TopologyError {
    /// hwloc failed to discover or load.
    #[error("hwloc: {0}")]
    Hwloc(String),
    /// The XML file could not be read.
    #[error("{path}: {source}")]
    XmlRead {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The XML file is larger than [`limits::topology_xml_max_bytes`].
    #[error("{path}: topology XML larger than {limit_bytes} bytes")]
    XmlTooLarge {
        /// The file.
        path: PathBuf,
        /// The limit.
        limit_bytes: u64,
    },
    /// hwloc loaded the input but it has no PU: nothing to plan on.
    #[error("{0}: topology has no processing units")]
    NoPus(String),
    /// The topology names more CPUs than [`limits::cpus_max_count`].
    #[error("{0}: topology has a CPU index beyond {max}", max = limits::cpus_max_count)]
    TooManyCpus(String),
}

/// A physical package (socket).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    /// Linux physical package id (hwloc os index), else its logical index.
    pub id: u32,
    /// CPU model string, when hwloc knows it.
    pub model: Option<String>,
    /// Cores in this package.
    pub cores: usize,
    /// Its PUs (Linux CPU numbers).
    pub pus: Vec<u32>,
}

/// A NUMA node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NumaNode {
    /// NUMA node number (hwloc os index, Linux node id).
    pub id: u32,
    /// Local memory, when known.
    pub memory_bytes: Option<u64>,
    /// PUs local to it (empty for memory-only nodes such as CXL or HBM).
    pub pus: Vec<u32>,
}

/// A core and its hardware threads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Core {
    /// Dense index in topology order (hwloc logical index); unique.
    pub id: u32,
    /// Linux `core_id`: unique only within a package.
    pub os_index: Option<u32>,
    /// Package id.
    pub package: u32,
    /// NUMA node whose CPUs include this core.
    pub numa: Option<u32>,
    /// Logical index of the last-level cache this core sits under.
    pub llc: Option<u32>,
    /// Its PUs (SMT siblings), ascending; the first is the one to pin.
    pub pus: Vec<u32>,
}

/// One kind of cache, aggregated (L2 of 2 MiB, 64 instances).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheLevel {
    /// 1 for L1, 2 for L2, ...
    pub level: u32,
    /// "data", "instruction" or "unified".
    pub kind: String,
    /// Size of one instance.
    pub size_bytes: Option<u64>,
    /// Cache line size.
    pub line_bytes: Option<u64>,
    /// Number of instances.
    pub count: usize,
}

/// Block device or network interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    /// A block device (`nvme0n1`, `sda`).
    Block,
    /// A network interface (`eth0`).
    Net,
}

/// Where a device's NUMA locality came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Locality {
    /// hwloc's PCI tree (the device's first non-I/O ancestor).
    Hwloc,
    /// sysfs `numa_node` of the device or a PCI parent.
    Sysfs,
    /// The host has a single NUMA node, so everything is local to it.
    SingleNode,
    /// Not known, or the device hangs off several nodes.
    Unknown,
}

/// Block queue facts from `/sys/block/X/queue`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockQueue {
    /// `logical_block_size`.
    pub logical_block_size_bytes: Option<u64>,
    /// `rotational`.
    pub rotational: Option<bool>,
    /// `nr_requests`.
    pub nr_requests: Option<u64>,
    /// Selected `scheduler` (the bracketed one).
    pub scheduler: Option<String>,
    /// `write_cache` ("write back" / "write through").
    pub write_cache: Option<String>,
    /// `io_poll`.
    pub io_poll: Option<bool>,
}

/// A block device or NIC with its locality.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IoDevice {
    /// Kernel name (`nvme0n1`, `eth0`).
    pub name: String,
    /// Block or net.
    pub kind: DeviceKind,
    /// NUMA node it is attached to.
    pub numa: Option<u32>,
    /// How `numa` was found.
    pub locality: Locality,
    /// PCI address (`0000:01:00.0`), when known.
    pub pci: Option<String>,
    /// Queue facts (block devices discovered live only).
    pub queue: Option<BlockQueue>,
}

/// A node's hardware, as plain data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topology {
    /// "host" or the XML path it came from.
    pub source: String,
    /// Packages (sockets).
    pub packages: Vec<Package>,
    /// NUMA nodes, by id.
    pub numa_nodes: Vec<NumaNode>,
    /// Cores in topology order; `cores[i].id == i`.
    pub cores: Vec<Core>,
    /// Caches, aggregated per level and kind.
    pub caches: Vec<CacheLevel>,
    /// Block devices and NICs.
    pub devices: Vec<IoDevice>,
    /// Facts that could not be read (missing numa_node, bad queue file...).
    pub warnings: Vec<String>,
}

/// The `topology --format json` shape: counts first, then details.
#[derive(Debug, Serialize)]
pub struct Summary<'a> {
    /// Where the topology came from.
    pub source: &'a str,
    /// Number of packages.
    pub packages: usize,
    /// Number of NUMA nodes.
    pub numa_nodes: usize,
    /// Number of cores.
    pub cores: usize,
    /// Number of PUs (hardware threads).
    pub pus: usize,
    /// Most PUs on one core (1 = no SMT).
    pub threads_per_core: usize,
    /// Everything else.
    pub details: Details<'a>,
    /// Block devices and NICs.
    pub devices: &'a [IoDevice],
    /// Facts that could not be read.
    pub warnings: &'a [String],
}

/// Per-object lists of [`Summary`].
#[derive(Debug, Serialize)]
pub struct Details<'a> {
    /// Packages.
    pub packages: &'a [Package],
    /// NUMA nodes.
    pub numa_nodes: &'a [NumaNode],
    /// Cores.
    pub cores: &'a [Core],
    /// Caches.
    pub caches: &'a [CacheLevel],
}

impl Topology {
    /// Discovers this host: hwloc, completed from sysfs under `/`.
    pub fn discover() -> Result<Topology, TopologyError> {
        Self::discover_with(&SysRoot::default())
    }

    /// Discovers this host with sysfs read under `root`.
    pub fn discover_with(root: &SysRoot) -> Result<Topology, TopologyError> {
        let hw = hwlocality::Topology::builder()
            .with_io_type_filter(TypeFilter::KeepImportant)
            .map_err(|e| TopologyError::Hwloc(e.to_string()))?
            .with_cpu_icache_type_filter(TypeFilter::KeepAll)
            .map_err(|e| TopologyError::Hwloc(e.to_string()))?
            .build()
            .map_err(|e| TopologyError::Hwloc(e.to_string()))?;
        let mut topo = from_hwloc(&hw, "host")?;
        topo.merge_sysfs(root, true);
        Ok(topo)
    }

    /// Loads an hwloc XML topology (`lstopo --of xml`). No sysfs is read:
    /// the file describes another machine.
    pub fn from_xml_file(path: impl AsRef<Path>) -> Result<Topology, TopologyError> {
        let path = path.as_ref();
        let meta = std::fs::metadata(path).map_err(|source| TopologyError::XmlRead {
            path: path.into(),
            source,
        })?;
        if meta.len() > limits::topology_xml_max_bytes {
            return Err(TopologyError::XmlTooLarge {
                path: path.into(),
                limit_bytes: limits::topology_xml_max_bytes,
            });
        }
        let text = std::fs::read_to_string(path).map_err(|source| TopologyError::XmlRead {
            path: path.into(),
            source,
        })?;
        Self::from_xml_str(&text, &path.display().to_string())
    }

    /// Loads an hwloc XML topology from memory; `source` names it.
    pub fn from_xml_str(xml: &str, source: &str) -> Result<Topology, TopologyError> {
        let hw = hwlocality::Topology::builder()
            .from_xml(xml)
            .map_err(|e| TopologyError::Hwloc(format!("{source}: {e}")))?
            .with_io_type_filter(TypeFilter::KeepImportant)
            .map_err(|e| TopologyError::Hwloc(e.to_string()))?
            .with_cpu_icache_type_filter(TypeFilter::KeepAll)
            .map_err(|e| TopologyError::Hwloc(e.to_string()))?
            .build()
            .map_err(|e| {
                TopologyError::Hwloc(format!("{source}: not a valid hwloc topology ({e})"))
            })?;
        from_hwloc(&hw, source)
    }

    /// Completes the device list from sysfs under `root`: devices hwloc did
    /// not see (no I/O discovery, virtual buses) and localities hwloc could
    /// not attach. With `queue_facts`, also reads block-queue facts.
    pub fn merge_sysfs(&mut self, root: &SysRoot, queue_facts: bool) {
        let mut warnings = Vec::new();
        let found = sysfs_devices(root, &mut warnings);
        for mut dev in found {
            if let Some(known) = self
                .devices
                .iter_mut()
                .find(|d| d.name == dev.name && d.kind == dev.kind)
            {
                if known.numa.is_none() && dev.numa.is_some() {
                    known.numa = dev.numa;
                    known.locality = Locality::Sysfs;
                }
                if queue_facts {
                    known.queue = dev.queue.take();
                }
            } else {
                if !queue_facts {
                    dev.queue = None;
                }
                self.devices.push(dev);
            }
        }
        self.warnings.extend(warnings);
        self.apply_single_node();
    }

    /// On a one-node host every device is local to that node, even when
    /// the firmware reports `numa_node` -1.
    fn apply_single_node(&mut self) {
        if let [only] = self.numa_nodes.as_slice() {
            let id = only.id;
            for d in &mut self.devices {
                if d.numa.is_none() {
                    d.numa = Some(id);
                    d.locality = Locality::SingleNode;
                }
            }
        }
    }

    /// The device named `name` (a `/dev/` prefix is ignored).
    pub fn device(&self, name: &str) -> Option<&IoDevice> {
        let name = name.strip_prefix("/dev/").unwrap_or(name);
        self.devices.iter().find(|d| d.name == name)
    }

    /// All PUs, ascending.
    pub fn pus(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self
            .cores
            .iter()
            .flat_map(|c| c.pus.iter().copied())
            .collect();
        v.sort_unstable();
        v
    }

    /// Most PUs on one core.
    pub fn threads_per_core(&self) -> usize {
        self.cores.iter().map(|c| c.pus.len()).max().unwrap_or(0)
    }

    /// The JSON view: counts plus details.
    pub fn summary(&self) -> Summary<'_> {
        Summary {
            source: &self.source,
            packages: self.packages.len(),
            numa_nodes: self.numa_nodes.len(),
            cores: self.cores.len(),
            pus: self.pus().len(),
            threads_per_core: self.threads_per_core(),
            details: Details {
                packages: &self.packages,
                numa_nodes: &self.numa_nodes,
                cores: &self.cores,
                caches: &self.caches,
            },
            devices: &self.devices,
            warnings: &self.warnings,
        }
    }

    /// Human-readable report.
    pub fn render_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "source: {}", self.source);
        let _ = writeln!(
            s,
            "{} packages, {} NUMA nodes, {} cores, {} PUs ({} per core)",
            self.packages.len(),
            self.numa_nodes.len(),
            self.cores.len(),
            self.pus().len(),
            self.threads_per_core()
        );
        for p in &self.packages {
            let _ = writeln!(
                s,
                "package {}: {}, {} cores, cpus {}",
                p.id,
                p.model.as_deref().unwrap_or("unknown model"),
                p.cores,
                format_cpu_list(&p.pus)
            );
        }
        for n in &self.numa_nodes {
            let cores: Vec<u32> = self
                .cores
                .iter()
                .filter(|c| c.numa == Some(n.id))
                .map(|c| c.id)
                .collect();
            let _ = writeln!(
                s,
                "numa {}: {}, cores {}, cpus {}",
                n.id,
                n.memory_bytes
                    .map_or("memory unknown".to_string(), human_bytes),
                format_cpu_list(&cores),
                format_cpu_list(&n.pus)
            );
        }
        if !self.caches.is_empty() {
            let parts: Vec<String> = self
                .caches
                .iter()
                .map(|c| {
                    let k = match c.kind.as_str() {
                        "data" => "d",
                        "instruction" => "i",
                        _ => "",
                    };
                    let size = c.size_bytes.map_or("?".to_string(), human_bytes);
                    format!("L{}{} {} x{}", c.level, k, size, c.count)
                })
                .collect();
            let _ = writeln!(s, "caches: {}", parts.join(", "));
        }
        let smt: Vec<String> = self
            .cores
            .iter()
            .filter(|c| c.pus.len() > 1)
            .take(4)
            .map(|c| format!("core {} = cpus {}", c.id, format_cpu_list(&c.pus)))
            .collect();
        if !smt.is_empty() {
            let _ = writeln!(s, "smt siblings: {} ...", smt.join("; "));
        }
        let _ = writeln!(s, "devices:");
        if self.devices.is_empty() {
            let _ = writeln!(s, "  (none found)");
        }
        for d in &self.devices {
            let numa = d.numa.map_or("numa ?".to_string(), |n| format!("numa {n}"));
            let loc = match d.locality {
                Locality::Hwloc => "hwloc",
                Locality::Sysfs => "sysfs",
                Locality::SingleNode => "single node",
                Locality::Unknown => "unknown",
            };
            let kind = match d.kind {
                DeviceKind::Block => "block",
                DeviceKind::Net => "net",
            };
            let _ = write!(s, "  {:<10} {:<5} {} ({})", d.name, kind, numa, loc);
            if let Some(pci) = &d.pci {
                let _ = write!(s, " pci {pci}");
            }
            if let Some(q) = &d.queue {
                let opt = |v: Option<u64>| v.map_or("?".to_string(), |v| v.to_string());
                let b = |v: Option<bool>| v.map_or("?", |v| if v { "1" } else { "0" });
                let _ = write!(
                    s,
                    " lbs {} rotational {} nr_requests {} scheduler {} write_cache {} io_poll {}",
                    opt(q.logical_block_size_bytes),
                    b(q.rotational),
                    opt(q.nr_requests),
                    q.scheduler.as_deref().unwrap_or("?"),
                    q.write_cache.as_deref().unwrap_or("?"),
                    b(q.io_poll)
                );
            }
            let _ = writeln!(s);
        }
        for w in &self.warnings {
            let _ = writeln!(s, "warning: {w}");
        }
        s
    }
}

/// `12.0 GiB`-style sizes.
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 || v.fract() == 0.0 {
        format!("{v:.0} {}", UNITS[u])
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Set bits of an hwloc cpuset/nodeset as u32s (None if beyond our bound).
fn bits<B>(set: Option<B>) -> Option<Vec<u32>>
where
    B: std::ops::Deref,
    B::Target: std::borrow::Borrow<hwlocality::bitmap::Bitmap>,
{
    use std::borrow::Borrow;
    let set = set?;
    let bitmap: &hwlocality::bitmap::Bitmap = (*set).borrow();
    // An infinite (full) bitmap has no weight: refuse it rather than loop.
    bitmap.weight()?;
    let mut v = Vec::new();
    for i in bitmap.iter_set() {
        let i: usize = i.into();
        if i >= limits::cpus_max_count {
            return None;
        }
        v.push(i as u32);
    }
    Some(v)
}

fn cstr(s: Option<&std::ffi::CStr>) -> Option<String> {
    s.map(|c| c.to_string_lossy().into_owned())
}

fn os_index_u32(obj: &TopologyObject) -> Option<u32> {
    obj.os_index().and_then(|i| u32::try_from(i).ok())
}

fn logical_u32(obj: &TopologyObject) -> u32 {
    u32::try_from(obj.logical_index()).unwrap_or(u32::MAX)
}

/// Copies what we need out of an hwloc topology.
fn from_hwloc(hw: &hwlocality::Topology, source: &str) -> Result<Topology, TopologyError> {
    let too_many = || TopologyError::TooManyCpus(source.to_string());

    let mut numa_nodes = Vec::new();
    for n in hw.objects_with_type(ObjectType::NUMANode) {
        let id = os_index_u32(n).unwrap_or_else(|| logical_u32(n));
        let memory_bytes = match n.attributes() {
            Some(ObjectAttributes::NUMANode(a)) => a.local_memory().map(|m| m.get()),
            _ => None,
        };
        let pus = bits(n.cpuset()).ok_or_else(too_many)?;
        numa_nodes.push(NumaNode {
            id,
            memory_bytes,
            pus,
        });
    }
    numa_nodes.sort_by_key(|n| n.id);

    let mut packages = Vec::new();
    for p in hw.objects_with_type(ObjectType::Package) {
        let id = os_index_u32(p).unwrap_or_else(|| logical_u32(p));
        let pus = bits(p.cpuset()).ok_or_else(too_many)?;
        packages.push(Package {
            id,
            model: cstr(p.info("CPUModel")),
            cores: 0,
            pus,
        });
    }

    let mut cores = Vec::new();
    let mut seen_pus = BTreeSet::new();
    let hw_cores: Vec<&TopologyObject> = hw.objects_with_type(ObjectType::Core).collect();
    // Some platforms report PUs without cores: then each PU is a core.
    let units: Vec<&TopologyObject> = if hw_cores.is_empty() {
        hw.objects_with_type(ObjectType::PU).collect()
    } else {
        hw_cores
    };
    for c in units {
        let pus = bits(c.cpuset()).ok_or_else(too_many)?;
        // A core with no allowed PU (cgroup-disallowed) cannot run a shard;
        // hwloc should drop those, but do not trust a file to.
        let pus: Vec<u32> = pus.into_iter().filter(|p| seen_pus.insert(*p)).collect();
        if pus.is_empty() {
            continue;
        }
        let package = c
            .first_ancestor_with_type(ObjectType::Package)
            .map(|p| os_index_u32(p).unwrap_or_else(|| logical_u32(p)))
            .unwrap_or(0);
        let numa = numa_nodes
            .iter()
            .find(|n| n.pus.contains(&pus[0]))
            .map(|n| n.id);
        // The last-level cache is the ancestor cache with the highest level.
        let llc = c
            .ancestors()
            .filter_map(|a| match a.attributes() {
                Some(ObjectAttributes::Cache(ca)) if ca.cache_type() != CacheType::Instruction => {
                    Some((ca.depth(), logical_u32(a)))
                }
                _ => None,
            })
            .max_by_key(|(depth, _)| *depth)
            .map(|(_, idx)| idx);
        cores.push(Core {
            id: cores.len() as u32,
            os_index: if c.object_type() == ObjectType::Core {
                os_index_u32(c)
            } else {
                None
            },
            package,
            numa,
            llc,
            pus,
        });
    }
    if cores.is_empty() {
        return Err(TopologyError::NoPus(source.to_string()));
    }
    for p in &mut packages {
        p.cores = cores.iter().filter(|c| c.package == p.id).count();
    }

    let mut caches: BTreeMap<(u32, String, Option<u64>, Option<u64>), usize> = BTreeMap::new();
    for obj in hw.objects() {
        if let Some(ObjectAttributes::Cache(ca)) = obj.attributes() {
            let kind = match ca.cache_type() {
                CacheType::Data => "data",
                CacheType::Instruction => "instruction",
                _ => "unified",
            };
            let key = (
                u32::try_from(ca.depth()).unwrap_or(u32::MAX),
                kind.to_string(),
                ca.size().map(|s| s.get()),
                ca.line_size().map(|l| l.get() as u64),
            );
            *caches.entry(key).or_default() += 1;
        }
    }
    let caches = caches
        .into_iter()
        .map(
            |((level, kind, size_bytes, line_bytes), count)| CacheLevel {
                level,
                kind,
                size_bytes,
                line_bytes,
                count,
            },
        )
        .collect();

    let mut devices = Vec::new();
    for d in hw.objects_with_type(ObjectType::OSDevice) {
        let kind = match d.attributes() {
            Some(ObjectAttributes::OSDevice(a)) => match a.device_type() {
                OSDeviceType::Storage => DeviceKind::Block,
                OSDeviceType::Network => DeviceKind::Net,
                _ => continue,
            },
            _ => continue,
        };
        let Some(name) = cstr(d.name()) else { continue };
        let pci = d.ancestors().find_map(|a| match a.attributes() {
            Some(ObjectAttributes::PCIDevice(p)) => Some(format!(
                "{:04x}:{:02x}:{:02x}.{:x}",
                p.domain(),
                p.bus_id(),
                p.bus_device(),
                p.function()
            )),
            _ => None,
        });
        // A device is local to the node(s) of its first non-I/O ancestor; if
        // that ancestor spans several nodes (hung off the machine), the
        // locality is unknown.
        let nodes = d
            .first_non_io_ancestor()
            .and_then(|a| bits(a.nodeset()))
            .unwrap_or_default();
        let (numa, locality) = match nodes.as_slice() {
            [one] => (Some(*one), Locality::Hwloc),
            _ => (None, Locality::Unknown),
        };
        devices.push(IoDevice {
            name,
            kind,
            numa,
            locality,
            pci,
            queue: None,
        });
    }

    let mut topo = Topology {
        source: source.to_string(),
        packages,
        numa_nodes,
        cores,
        caches,
        devices,
        warnings: Vec::new(),
    };
    topo.apply_single_node();
    Ok(topo)
}

/// Block devices and NICs backed by hardware (they have a `device` link;
/// loop, zram, dm, lo, bridges and veths do not), with sysfs locality and
/// queue facts.
fn sysfs_devices(root: &SysRoot, warnings: &mut Vec<String>) -> Vec<IoDevice> {
    let mut out = Vec::new();
    for (dir, kind) in [
        ("/sys/block", DeviceKind::Block),
        ("/sys/class/net", DeviceKind::Net),
    ] {
        let names = match root.list_dir(dir) {
            Ok(n) => n,
            Err(e) => {
                if !e.is_missing() {
                    warnings.push(e.to_string());
                }
                continue;
            }
        };
        for name in names {
            let link = format!("{dir}/{name}/device");
            if !root.exists(&link) {
                continue;
            }
            let (numa, pci) = sysfs_locality(root, &link, warnings);
            let queue = (kind == DeviceKind::Block).then(|| block_queue(root, &name, warnings));
            out.push(IoDevice {
                locality: if numa.is_some() {
                    Locality::Sysfs
                } else {
                    Locality::Unknown
                },
                name,
                kind,
                numa,
                pci,
                queue,
            });
        }
    }
    out
}

/// NUMA node and PCI address of a device from sysfs: the device directory
/// or the nearest parent that has `numa_node` (a virtio or nvme device sits
/// below its PCI function). `-1` means the firmware gave no locality.
pub(crate) fn sysfs_locality(
    root: &SysRoot,
    device_link: &str,
    warnings: &mut Vec<String>,
) -> (Option<u32>, Option<String>) {
    let Some(dir) = sysfs_device_dir(root, device_link) else {
        return (None, None);
    };
    let mut numa = None;
    let mut pci = None;
    let mut cur = Some(dir.as_path());
    for _ in 0..limits::sysfs_parent_walk_max_count {
        let Some(d) = cur else { break };
        if !d.starts_with(root.root()) {
            break;
        }
        if pci.is_none() {
            pci = d
                .file_name()
                .and_then(|n| n.to_str())
                .filter(|n| is_pci_address(n))
                .map(String::from);
        }
        let attr = d.join("numa_node");
        if attr.exists() {
            match read_i64_abs(&attr) {
                Ok(n) if n >= 0 && (n as usize) < limits::cpus_max_count => numa = Some(n as u32),
                Ok(_) => {}
                Err(e) => warnings.push(e.to_string()),
            }
            break;
        }
        cur = d.parent();
    }
    (numa, pci)
}

/// The resolved directory behind a sysfs `device` link, under the root.
pub(crate) fn sysfs_device_dir(root: &SysRoot, device_link: &str) -> Option<PathBuf> {
    let dir = root.canonical(device_link).ok()?;
    // Compare against the canonical root: the tempdir of a test may itself
    // sit behind a symlink.
    let croot = std::fs::canonicalize(root.root()).ok()?;
    let rel = dir.strip_prefix(&croot).ok()?;
    Some(root.root().join(rel))
}

fn read_i64_abs(path: &Path) -> Result<i64, SysError> {
    // Read through a root at "/" so the same bounds and errors apply.
    SysRoot::new("/").read_i64(path)
}

/// The whole-disk block device (kernel name) holding `path` on this host:
/// a device node (`/dev/nvme0n1p2`) names itself, a file or directory its
/// file system's device, found through `/sys/dev/block/MAJ:MIN` under
/// `root`; a partition resolves to its disk. `None` for anything else
/// (tmpfs, overlayfs, device-mapper without a single disk...).
pub fn block_device_of(root: &SysRoot, path: &Path) -> Option<String> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let meta = std::fs::metadata(path).ok()?;
    let dev = if meta.file_type().is_block_device() {
        meta.rdev()
    } else {
        meta.dev()
    };
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    if major == 0 {
        // Anonymous device numbers: no block device behind the file system.
        return None;
    }
    let link = format!("/sys/dev/block/{major}:{minor}");
    let dir = sysfs_device_dir(root, &link)?;
    let dir = if dir.join("partition").exists() {
        dir.parent()?.to_path_buf()
    } else {
        dir
    };
    dir.file_name()?.to_str().map(String::from)
}

/// `0000:01:00.0`
pub(crate) fn is_pci_address(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 12
        && b[4] == b':'
        && b[7] == b':'
        && b[10] == b'.'
        && b.iter()
            .enumerate()
            .all(|(i, c)| [4, 7, 10].contains(&i) || c.is_ascii_hexdigit())
}

/// The selected scheduler of a `scheduler` attribute: `none [mq-deadline]`
/// → `mq-deadline`; a single word (no choice offered) is itself.
pub fn selected_scheduler(s: &str) -> Option<String> {
    if let (Some(a), Some(b)) = (s.find('['), s.find(']')) {
        if a < b {
            return Some(s[a + 1..b].to_string());
        }
    }
    let words: Vec<&str> = s.split_whitespace().collect();
    match words.as_slice() {
        [one] => Some(one.to_string()),
        _ => None,
    }
}

fn block_queue(root: &SysRoot, name: &str, warnings: &mut Vec<String>) -> BlockQueue {
    let q = format!("/sys/block/{name}/queue");
    let mut num = |attr: &str| -> Option<u64> {
        match root.read_i64(format!("{q}/{attr}")) {
            Ok(v) if v >= 0 => Some(v as u64),
            Ok(_) => None,
            Err(e) => {
                if !e.is_missing() {
                    warnings.push(e.to_string());
                }
                None
            }
        }
    };
    let logical_block_size_bytes = num("logical_block_size");
    let rotational = num("rotational").map(|v| v != 0);
    let nr_requests = num("nr_requests");
    let io_poll = num("io_poll").map(|v| v != 0);
    let text = |attr: &str| root.read(format!("{q}/{attr}")).ok();
    BlockQueue {
        logical_block_size_bytes,
        rotational,
        nr_requests,
        scheduler: text("scheduler").as_deref().and_then(selected_scheduler),
        write_cache: text("write_cache"),
        io_poll,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedulers_are_parsed() {
        assert_eq!(
            selected_scheduler("none [mq-deadline] kyber bfq").as_deref(),
            Some("mq-deadline")
        );
        assert_eq!(
            selected_scheduler("[none] mq-deadline").as_deref(),
            Some("none")
        );
        assert_eq!(selected_scheduler("none").as_deref(), Some("none"));
        assert_eq!(selected_scheduler("none kyber"), None);
    }

    #[test]
    fn pci_addresses() {
        assert!(is_pci_address("0000:00:03.0"));
        assert!(!is_pci_address("virtio2"));
        assert!(!is_pci_address("pci0000:00"));
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_bytes(64 << 30), "64 GiB");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(12), "12 B");
    }
}
