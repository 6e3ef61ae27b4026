//! The XML loader and the sysfs fallback, on the recorded topologies of
//! `tests/topologies/` (layouts in its README.md and gen.py).

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use sepia_tuning::sys::SysRoot;
use sepia_tuning::topology::{DeviceKind, Locality, Topology, TopologyError};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/topologies")
        .join(name)
}

fn load(name: &str) -> Topology {
    Topology::from_xml_file(fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn numa_of(t: &Topology, dev: &str) -> Option<u32> {
    t.device(dev)
        .unwrap_or_else(|| panic!("{dev} missing"))
        .numa
}

#[test]
fn dense_counts_and_smt_numbering() {
    let t = load("dense-2s64c-8nvme.xml");
    assert_eq!(t.packages.len(), 2);
    assert_eq!(t.numa_nodes.len(), 2);
    assert_eq!(t.cores.len(), 64);
    assert_eq!(t.pus().len(), 128);
    assert_eq!(t.pus(), (0..128).collect::<Vec<u32>>());
    assert_eq!(t.threads_per_core(), 2);
    for (i, c) in t.cores.iter().enumerate() {
        assert_eq!(c.id as usize, i);
        // Linux numbering: siblings are N and N + 64; package p has cores
        // 32p..32p+31; NUMA node = package.
        let n = i as u32;
        assert_eq!(c.pus, vec![n, n + 64], "core {i}");
        assert_eq!(c.package, n / 32);
        assert_eq!(c.numa, Some(n / 32));
        assert_eq!(c.os_index, Some(n % 32), "core ids restart per package");
    }
    let node1: Vec<u32> = (32..64).chain(96..128).collect();
    assert_eq!(t.numa_nodes[1].pus, node1);
    assert_eq!(t.numa_nodes[1].memory_bytes, Some(64 << 30));
    // Two L3s (one per package), 64 of each private level.
    let l3 = t.caches.iter().find(|c| c.level == 3).expect("L3");
    assert_eq!((l3.count, l3.size_bytes), (2, Some(48 << 20)));
    assert!(t
        .caches
        .iter()
        .any(|c| c.level == 1 && c.kind == "instruction" && c.count == 64));
    // Cores of one package share their LLC.
    assert_eq!(t.cores[0].llc, t.cores[31].llc);
    assert_ne!(t.cores[0].llc, t.cores[32].llc);
}

#[test]
fn dense_device_localities_come_from_the_pci_tree() {
    let t = load("dense-2s64c-8nvme.xml");
    for i in 0..4 {
        assert_eq!(numa_of(&t, &format!("nvme{i}n1")), Some(0), "nvme{i}n1");
    }
    for i in 4..8 {
        assert_eq!(numa_of(&t, &format!("nvme{i}n1")), Some(1), "nvme{i}n1");
    }
    let eth0 = t.device("eth0").unwrap();
    assert_eq!(
        (eth0.kind, eth0.numa, eth0.locality),
        (DeviceKind::Net, Some(1), Locality::Hwloc)
    );
    assert_eq!(eth0.pci.as_deref(), Some("0000:85:00.0"));
    assert_eq!(
        t.device("/dev/nvme5n1").unwrap().pci.as_deref(),
        Some("0000:82:00.0")
    );
    // The SATA controller hangs off the machine: no single node.
    let sda = t.device("sda").unwrap();
    assert_eq!((sda.numa, sda.locality), (None, Locality::Unknown));
    assert_eq!(
        t.devices
            .iter()
            .filter(|d| d.kind == DeviceKind::Block)
            .count(),
        9
    );
    // XML carries no sysfs queue facts.
    assert!(t.devices.iter().all(|d| d.queue.is_none()));
}

#[test]
fn single_socket() {
    let t = load("single-1s16c-2nvme.xml");
    assert_eq!(
        (
            t.packages.len(),
            t.numa_nodes.len(),
            t.cores.len(),
            t.pus().len()
        ),
        (1, 1, 16, 32)
    );
    assert_eq!(t.cores[3].pus, vec![3, 19]);
    for d in ["nvme0n1", "nvme1n1", "eth0"] {
        assert_eq!(numa_of(&t, d), Some(0), "{d}");
    }
}

#[test]
fn this_vm() {
    let t = load("this-vm-2c.xml");
    assert_eq!(
        (
            t.packages.len(),
            t.numa_nodes.len(),
            t.cores.len(),
            t.pus().len()
        ),
        (1, 1, 2, 2)
    );
    assert_eq!(t.threads_per_core(), 1);
    assert_eq!(t.device("vda").unwrap().kind, DeviceKind::Block);
    assert_eq!(numa_of(&t, "vda"), Some(0));
    assert_eq!(numa_of(&t, "eth0"), Some(0));
    assert_eq!(
        t.device("vda").unwrap().pci.as_deref(),
        Some("0000:00:02.0")
    );
}

#[test]
fn live_discovery_is_consistent() {
    let t = Topology::discover().expect("hwloc discovers this host");
    assert!(!t.cores.is_empty());
    let pus = t.pus();
    let mut dedup = pus.clone();
    dedup.dedup();
    assert_eq!(pus, dedup, "a PU in two cores");
    for c in &t.cores {
        assert!(!c.pus.is_empty());
        if let Some(n) = c.numa {
            assert!(t.numa_nodes.iter().any(|x| x.id == n));
        }
    }
    assert_eq!(
        pus.len(),
        std::thread::available_parallelism().unwrap().get()
    );
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.xml");
    fs::write(&bad, "<topology version=\"2.0\"><object type=\"Banana\"/>").unwrap();
    assert!(Topology::from_xml_file(&bad).is_err());
    fs::write(&bad, [0xffu8, 0, 1, 2]).unwrap();
    assert!(Topology::from_xml_file(&bad).is_err());
    assert!(matches!(
        Topology::from_xml_file(dir.path().join("missing.xml")),
        Err(TopologyError::XmlRead { .. })
    ));
}

fn write(root: &Path, host_path: &str, text: &str) {
    let p = root.join(host_path.trim_start_matches('/'));
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, text).unwrap();
}

fn link(root: &Path, host_link: &str, host_target: &str) {
    let l = root.join(host_link.trim_start_matches('/'));
    fs::create_dir_all(l.parent().unwrap()).unwrap();
    fs::create_dir_all(root.join(host_target.trim_start_matches('/'))).unwrap();
    symlink(root.join(host_target.trim_start_matches('/')), l).unwrap();
}

/// A sysfs with an NVMe drive on node 1 (numa_node on its PCI function,
/// two levels above the nvme controller), a virtio NIC whose PCI function
/// says node 0, a drive whose firmware gave no locality (-1), and virtual
/// devices without a `device` link.
fn fake_sysfs(root: &Path) {
    let nvme_pci = "/sys/devices/pci0000:80/0000:80:01.0/0000:81:00.0";
    link(
        root,
        "/sys/block/nvme0n1/device",
        &format!("{nvme_pci}/nvme/nvme0"),
    );
    write(root, &format!("{nvme_pci}/numa_node"), "1\n");
    write(
        root,
        "/sys/block/nvme0n1/queue/logical_block_size",
        "4096\n",
    );
    write(root, "/sys/block/nvme0n1/queue/rotational", "0\n");
    write(root, "/sys/block/nvme0n1/queue/nr_requests", "1023\n");
    write(
        root,
        "/sys/block/nvme0n1/queue/scheduler",
        "[none] mq-deadline kyber\n",
    );
    write(
        root,
        "/sys/block/nvme0n1/queue/write_cache",
        "write through\n",
    );
    write(root, "/sys/block/nvme0n1/queue/io_poll", "1\n");

    let sd_pci = "/sys/devices/pci0000:00/0000:00:17.0";
    link(
        root,
        "/sys/block/sdb/device",
        &format!("{sd_pci}/ata1/host0/target0:0:0/0:0:0:0"),
    );
    write(root, &format!("{sd_pci}/numa_node"), "-1\n");
    write(root, "/sys/block/sdb/queue/rotational", "garbage\n");

    fs::create_dir_all(root.join("sys/block/loop0/queue")).unwrap();
    let nic_pci = "/sys/devices/pci0000:00/0000:00:03.0";
    link(
        root,
        "/sys/class/net/eth0/device",
        &format!("{nic_pci}/virtio2"),
    );
    write(root, &format!("{nic_pci}/numa_node"), "0\n");
    fs::create_dir_all(root.join("sys/class/net/lo")).unwrap();
}

#[test]
fn sysfs_fallback_when_hwloc_has_no_io() {
    let dir = tempfile::tempdir().unwrap();
    fake_sysfs(dir.path());
    let mut t = load("two-node-no-io.xml");
    assert!(t.devices.is_empty(), "fixture has no I/O objects");
    t.merge_sysfs(&SysRoot::new(dir.path()), true);

    let names: Vec<&str> = t.devices.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(
        names,
        ["nvme0n1", "sdb", "eth0"],
        "loop0 and lo have no device link"
    );
    let nvme = t.device("nvme0n1").unwrap();
    assert_eq!((nvme.numa, nvme.locality), (Some(1), Locality::Sysfs));
    assert_eq!(nvme.pci.as_deref(), Some("0000:81:00.0"));
    let q = nvme.queue.as_ref().unwrap();
    assert_eq!(q.logical_block_size_bytes, Some(4096));
    assert_eq!(q.rotational, Some(false));
    assert_eq!(q.nr_requests, Some(1023));
    assert_eq!(q.scheduler.as_deref(), Some("none"));
    assert_eq!(q.write_cache.as_deref(), Some("write through"));
    assert_eq!(q.io_poll, Some(true));

    let sdb = t.device("sdb").unwrap();
    assert_eq!((sdb.numa, sdb.locality), (None, Locality::Unknown));
    // A corrupt attribute is a None fact plus a warning, not a failure.
    assert_eq!(sdb.queue.as_ref().unwrap().rotational, None);
    assert!(
        t.warnings.iter().any(|w| w.contains("rotational")),
        "{:?}",
        t.warnings
    );

    let eth0 = t.device("eth0").unwrap();
    assert_eq!((eth0.kind, eth0.numa), (DeviceKind::Net, Some(0)));
}

#[test]
fn sysfs_fallback_on_a_single_node_host_makes_everything_local() {
    let dir = tempfile::tempdir().unwrap();
    fake_sysfs(dir.path());
    let mut t = load("this-vm-2c.xml");
    t.merge_sysfs(&SysRoot::new(dir.path()), false);
    // sdb's firmware said -1, but a one-node host has only node 0.
    let sdb = t.device("sdb").unwrap();
    assert_eq!((sdb.numa, sdb.locality), (Some(0), Locality::SingleNode));
    assert!(sdb.queue.is_none(), "queue facts not requested");
}

#[test]
fn a_data_file_resolves_to_the_disk_under_its_partition() {
    use std::os::unix::fs::MetadataExt;
    let data = tempfile::tempdir().unwrap();
    let dev = fs::metadata(data.path()).unwrap().dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let sys = tempfile::tempdir().unwrap();
    let root = SysRoot::new(sys.path());
    if major == 0 {
        // tmpfs/overlay: no block device, which is the answer.
        assert_eq!(
            sepia_tuning::topology::block_device_of(&root, data.path()),
            None
        );
        return;
    }
    assert_eq!(
        sepia_tuning::topology::block_device_of(&root, data.path()),
        None,
        "no sysfs entry"
    );
    // Pretend the file system sits on partition 2 of nvme3n1.
    let disk = "/sys/devices/pci0000:00/0000:00:04.0/nvme/nvme3/nvme3n1";
    link(
        sys.path(),
        &format!("/sys/dev/block/{major}:{minor}"),
        &format!("{disk}/nvme3n1p2"),
    );
    write(sys.path(), &format!("{disk}/nvme3n1p2/partition"), "2\n");
    assert_eq!(
        sepia_tuning::topology::block_device_of(&root, data.path()).as_deref(),
        Some("nvme3n1")
    );
}
