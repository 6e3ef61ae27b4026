//! The checklist against fake /sys and /proc trees: every status of every
//! file-driven check, missing files, and garbage.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use sepia_tuning::check::{self, Check, CheckContext, Status};
use sepia_tuning::plan::{plan, OsdSpec, Policy};
use sepia_tuning::sys::SysRoot;
use sepia_tuning::topology::Topology;

struct Fake {
    dir: tempfile::TempDir,
}

impl Fake {
    fn new() -> Fake {
        Fake {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn path(&self, host: &str) -> PathBuf {
        self.dir.path().join(host.trim_start_matches('/'))
    }
    fn write(&self, host: &str, text: &str) -> &Fake {
        let p = self.path(host);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
        self
    }
    fn link(&self, host_link: &str, host_target: &str) {
        fs::create_dir_all(self.path(host_target)).unwrap();
        fs::create_dir_all(self.path(host_link).parent().unwrap()).unwrap();
        symlink(self.path(host_target), self.path(host_link)).unwrap();
    }
    fn root(&self) -> SysRoot {
        SysRoot::new(self.dir.path())
    }
    fn ctx(&self) -> CheckContext {
        CheckContext {
            root: self.root(),
            data_dir: self.dir.path().to_path_buf(),
            topology: None,
            plan: None,
        }
    }
}

fn find<'a>(checks: &'a [Check], name: &str) -> &'a Check {
    checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no check {name}"))
}

#[test]
fn empty_root_every_check_answers() {
    let f = Fake::new();
    let checks = check::run_all(&f.ctx());
    let names: Vec<&str> = checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "io_uring",
            "memlock",
            "cpu_governor",
            "transparent_hugepages",
            "cpuidle",
            "nvme_scheduler",
            "nic_irq_affinity",
            "nofile",
            "o_direct"
        ]
    );
    for name in [
        "cpu_governor",
        "transparent_hugepages",
        "cpuidle",
        "nvme_scheduler",
        "nic_irq_affinity",
    ] {
        let c = find(&checks, name);
        assert_eq!(
            (c.status, c.value.as_str()),
            (Status::Warn, "unavailable"),
            "{c:?}"
        );
        assert!(!c.advice.is_empty());
    }
    assert!(find(&checks, "io_uring")
        .value
        .contains("io_uring_disabled absent"));
}

#[test]
fn cpu_governor_statuses() {
    let f = Fake::new();
    for cpu in 0..4 {
        f.write(
            &format!("/sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_governor"),
            "performance\n",
        );
    }
    f.write("/sys/devices/system/cpu/cpufreq/ondemand/x", ""); // not a cpuN dir
    let c = check::cpu_governor(&f.root());
    assert_eq!(c.status, Status::Ok, "{c:?}");
    assert_eq!(c.value, "performance x4");
    f.write(
        "/sys/devices/system/cpu/cpu2/cpufreq/scaling_governor",
        "powersave\n",
    );
    let c = check::cpu_governor(&f.root());
    assert_eq!(c.status, Status::Warn);
    assert_eq!(c.value, "performance x3, powersave x1");
    assert!(c.advice.contains("cpupower frequency-set -g performance"));

    let g = Fake::new();
    g.write("/sys/devices/system/cpu/cpu0/online", "1\n");
    let c = check::cpu_governor(&g.root());
    assert_eq!((c.status, c.value.as_str()), (Status::Warn, "unavailable"));
}

#[test]
fn thp_statuses() {
    let f = Fake::new();
    f.write(
        "/sys/kernel/mm/transparent_hugepage/enabled",
        "always [madvise] never\n",
    );
    f.write(
        "/sys/kernel/mm/transparent_hugepage/defrag",
        "always defer defer+madvise [madvise] never\n",
    );
    let c = check::transparent_hugepages(&f.root());
    assert_eq!(
        (c.status, c.value.as_str()),
        (Status::Ok, "enabled=madvise defrag=madvise")
    );
    f.write(
        "/sys/kernel/mm/transparent_hugepage/enabled",
        "[always] madvise never\n",
    );
    assert_eq!(check::transparent_hugepages(&f.root()).status, Status::Warn);
    f.write(
        "/sys/kernel/mm/transparent_hugepage/enabled",
        "always madvise [never]\n",
    );
    f.write(
        "/sys/kernel/mm/transparent_hugepage/defrag",
        "[always] defer never\n",
    );
    let c = check::transparent_hugepages(&f.root());
    assert_eq!(c.status, Status::Warn);
    assert!(c.advice.contains("compaction"));
    f.write(
        "/sys/kernel/mm/transparent_hugepage/enabled",
        "\u{1}\u{2}garbage",
    );
    assert_eq!(check::transparent_hugepages(&f.root()).status, Status::Warn);
}

#[test]
fn cpuidle_statuses() {
    let f = Fake::new();
    f.write(
        "/sys/devices/system/cpu/cpuidle/current_driver",
        "intel_idle\n",
    );
    let state = |n: u32, name: &str, lat: u64, disable: u32| {
        let base = format!("/sys/devices/system/cpu/cpu0/cpuidle/state{n}");
        f.write(&format!("{base}/name"), &format!("{name}\n"));
        f.write(&format!("{base}/latency"), &format!("{lat}\n"));
        f.write(&format!("{base}/disable"), &format!("{disable}\n"));
    };
    state(0, "POLL", 0, 0);
    state(1, "C1", 2, 0);
    state(2, "C1E", 10, 0);
    state(3, "C6", 170, 0);
    let c = check::cpuidle(&f.root());
    assert_eq!(c.status, Status::Warn, "{c:?}");
    assert!(c.value.contains("C6 (170 us"), "{}", c.value);
    state(3, "C6", 170, 1);
    let c = check::cpuidle(&f.root());
    assert_eq!(c.status, Status::Ok, "{c:?}");
    assert!(c.value.contains("C1E (10 us"), "{}", c.value);
    // Garbage latency: that state is skipped, no panic.
    f.write(
        "/sys/devices/system/cpu/cpu0/cpuidle/state3/latency",
        "lots\n",
    );
    f.write("/sys/devices/system/cpu/cpu0/cpuidle/state3/disable", "0\n");
    assert_eq!(check::cpuidle(&f.root()).status, Status::Ok);
}

#[test]
fn nvme_scheduler_statuses() {
    let f = Fake::new();
    f.write(
        "/sys/block/nvme0n1/queue/scheduler",
        "[none] mq-deadline kyber bfq\n",
    );
    f.write(
        "/sys/block/nvme1n1/queue/scheduler",
        "none [mq-deadline] kyber bfq\n",
    );
    // A hidden multipath path: its head carries the queue, skip it.
    f.write("/sys/block/nvme0c0n1/hidden", "1\n");
    f.write("/sys/block/nvme0c0n1/queue/scheduler", "[mq-deadline]\n");
    f.write("/sys/block/sda/queue/scheduler", "[bfq] none\n");
    let c = check::nvme_scheduler(&f.ctx());
    assert_eq!(c.status, Status::Warn);
    assert_eq!(c.value, "nvme0n1=none, nvme1n1=mq-deadline");
    assert!(c.advice.contains("for nvme1n1;"), "{}", c.advice);
    f.write("/sys/block/nvme1n1/queue/scheduler", "[none] mq-deadline\n");
    assert_eq!(check::nvme_scheduler(&f.ctx()).status, Status::Ok);

    let g = Fake::new();
    g.write("/sys/block/sda/queue/scheduler", "[bfq] none\n");
    let c = check::nvme_scheduler(&g.ctx());
    assert_eq!(
        (c.status, c.value.as_str()),
        (Status::Ok, "no NVMe block devices")
    );
}

/// A NIC `eth0` on PCI 0000:85:00.0 with MSI-X vectors 120-122, one more
/// IRQ (130) found only by name in /proc/interrupts, and an unrelated IRQ.
fn fake_nic(f: &Fake, affinity: &[(u32, &str)]) {
    let pci = "/sys/devices/pci0000:80/0000:80:05.0/0000:85:00.0";
    f.link("/sys/class/net/eth0/device", pci);
    for irq in [120, 121, 122] {
        f.write(&format!("{pci}/msi_irqs/{irq}"), "msix\n");
    }
    f.write(
        "/proc/interrupts",
        "            CPU0       CPU1\n\
         120:          5          0  IR-PCI-MSI 44040192-edge      mlx5_async0@pci:0000:85:00.0\n\
         121:          5          0  IR-PCI-MSI 44040193-edge      mlx5_comp0@pci:0000:85:00.0\n\
         122:          5          0  IR-PCI-MSI 44040194-edge      mlx5_comp1@pci:0000:85:00.0\n\
         130:          1          0  IR-PCI-MSI 1-edge      i40e-eth0-TxRx-7\n\
         131:          1          0  IR-PCI-MSI 2-edge      eth01-TxRx-0\n\
         132:          1          0  IR-PCI-MSI 2-edge      xeth0\n\
         140:          9          9  IR-PCI-MSI 3-edge      nvme0q1\n\
         NMI:          0          0   Non-maskable interrupts\n",
    );
    for (irq, list) in affinity {
        f.write(
            &format!("/proc/irq/{irq}/smp_affinity_list"),
            &format!("{list}\n"),
        );
    }
}

fn single_plan(reserve: usize) -> (Topology, sepia_tuning::Plan) {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/topologies/single-1s16c-2nvme.xml");
    let t = Topology::from_xml_file(p).unwrap();
    let osds = vec![OsdSpec {
        id: 0,
        device: "nvme0n1".into(),
    }];
    let pl = plan(
        &t,
        &osds,
        &Policy {
            shards_per_osd: None,
            reserve_cores: reserve,
            avoid_smt: true,
        },
    )
    .unwrap();
    (t, pl)
}

#[test]
fn nic_irqs_found_by_msi_and_by_name() {
    let f = Fake::new();
    fake_nic(&f, &[]);
    let text = fs::read_to_string(f.path("/proc/interrupts")).unwrap();
    assert_eq!(
        check::nic_irqs(&f.root(), "eth0", &text),
        vec![120, 121, 122, 130]
    );
}

#[test]
fn nic_irq_affinity_against_the_plan() {
    // Plan on the single-socket fixture with 2 reserved cores: shards on
    // CPUs 2-15, reserve CPUs 0, 1, 16, 17.
    let (t, pl) = single_plan(2);
    let f = Fake::new();
    fake_nic(
        &f,
        &[
            (120, "0"),
            (121, "1"),
            (122, "16-17"),
            (130, "0-1"),
            (131, "5"),
            (140, "7"),
        ],
    );
    let mut ctx = f.ctx();
    ctx.topology = Some(t.clone());
    ctx.plan = Some(pl.clone());
    let c = check::nic_irq_affinity(&ctx);
    assert_eq!(c.status, Status::Ok, "{c:?}");
    assert!(
        c.value.contains("eth0: 4 irqs on cpus 0-1,16-17"),
        "{}",
        c.value
    );

    // One NIC vector may fire on CPU 5, a shard CPU.
    f.write("/proc/irq/122/smp_affinity_list", "0-1,5\n");
    let c = check::nic_irq_affinity(&ctx);
    assert_eq!(c.status, Status::Warn, "{c:?}");
    assert!(c.value.contains("shard cpus 5"), "{}", c.value);
    assert!(c.advice.contains("reserved cpus 0-1,16-17"), "{}", c.advice);
    // effective_affinity_list wins over smp_affinity_list when present.
    f.write("/proc/irq/122/effective_affinity_list", "1\n");
    assert_eq!(check::nic_irq_affinity(&ctx).status, Status::Ok);

    // No plan: reported, not judged.
    ctx.plan = None;
    let c = check::nic_irq_affinity(&ctx);
    assert_eq!(c.status, Status::Ok);
    assert!(c.value.contains("no plan"), "{}", c.value);

    // Without reserved cores every NIC IRQ overlaps an all-cores plan.
    let (_, all) = single_plan(0);
    ctx.plan = Some(all);
    assert_eq!(check::nic_irq_affinity(&ctx).status, Status::Warn);
}

#[test]
fn nic_irq_affinity_garbage_and_missing() {
    let f = Fake::new();
    fake_nic(&f, &[(120, "zzz"), (121, "99999999")]);
    f.write("/proc/interrupts", "\u{0}\u{1}junk\n: : :\n-1: x\n");
    let c = check::nic_irq_affinity(&f.ctx());
    // The MSI directory still names IRQs; their affinity files are bad or
    // absent, so nothing can be shown.
    assert_eq!(c.status, Status::Warn, "{c:?}");
    let g = Fake::new();
    g.link(
        "/sys/class/net/eth0/device",
        "/sys/devices/pci0000:00/0000:00:03.0",
    );
    assert_eq!(check::nic_irq_affinity(&g.ctx()).value, "unavailable");
}

#[test]
fn io_uring_reads_the_sysctl() {
    let f = Fake::new();
    f.write("/proc/sys/kernel/io_uring_disabled", "2\n");
    f.write("/proc/sys/kernel/osrelease", "6.9.0-test\n");
    let c = check::io_uring(&f.root());
    assert!(c.value.starts_with("io_uring_disabled=2,"), "{}", c.value);
    assert!(c.value.contains("kernel 6.9.0-test"), "{}", c.value);
}

#[test]
fn memlock_is_sized_from_the_plan() {
    let (t, pl) = single_plan(2);
    let f = Fake::new();
    let mut ctx = f.ctx();
    ctx.topology = Some(t);
    ctx.plan = Some(pl);
    let c = check::memlock(&ctx);
    // 14 shards x 3 rings x 10 MiB.
    assert!(
        c.value.contains("shards 14: glommio needs 420 MiB"),
        "{}",
        c.value
    );
}

#[test]
fn o_direct_probe_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let c = check::o_direct(dir.path());
    assert!(matches!(c.status, Status::Ok | Status::Fail), "{c:?}");
    assert!(
        c.value.contains(&dir.path().display().to_string()),
        "{}",
        c.value
    );
    assert_eq!(
        fs::read_dir(dir.path()).unwrap().count(),
        0,
        "probe file left behind"
    );
    let c = check::o_direct(&dir.path().join("missing"));
    assert_eq!((c.status, c.value.as_str()), (Status::Warn, "unavailable"));
}

#[test]
fn o_direct_on_tmpfs_fails_if_there_is_one() {
    // /dev/shm is tmpfs on most Linux hosts; tmpfs refuses O_DIRECT on
    // kernels before 6.6 and accepts it after, so accept both but require
    // the verdict to match the answer of a plain open(O_DIRECT).
    use std::os::unix::fs::OpenOptionsExt;
    let shm = Path::new("/dev/shm");
    if !shm.is_dir() {
        return;
    }
    let Ok(dir) = tempfile::tempdir_in(shm) else {
        return;
    };
    let probe = dir.path().join("p");
    let opened = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .custom_flags(libc::O_DIRECT)
        .open(&probe)
        .is_ok();
    let _ = fs::remove_file(&probe);
    let c = check::o_direct(dir.path());
    if opened {
        assert_ne!(c.status, Status::Warn, "{c:?}");
    } else {
        assert_eq!(c.status, Status::Fail, "{c:?}");
        assert!(c.value.contains("refused"), "{}", c.value);
    }
}
