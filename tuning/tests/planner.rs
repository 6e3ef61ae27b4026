//! The planner on recorded topologies. Expected layouts are stated from the
//! fixtures' description (tests/topologies/README.md), not from the
//! planner: dense = 2 nodes, node p has cores 32p..32p+31, core c is CPUs
//! c and c + 64, nvme0-3 on node 0, nvme4-7 and eth0 on node 1, sda on no
//! node; single = 16 cores, core c is CPUs c and c + 16.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use sepia_tuning::plan::{plan, OsdSpec, Plan, PlanError, PlanFileError, Policy};
use sepia_tuning::topology::Topology;

fn load(name: &str) -> Topology {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/topologies")
        .join(name);
    Topology::from_xml_file(p).unwrap()
}

fn osds(devs: &[&str]) -> Vec<OsdSpec> {
    devs.iter()
        .enumerate()
        .map(|(i, d)| OsdSpec {
            id: i as u32,
            device: d.to_string(),
        })
        .collect()
}

fn all_nvme() -> Vec<OsdSpec> {
    osds(&[
        "nvme0n1", "nvme1n1", "nvme2n1", "nvme3n1", "nvme4n1", "nvme5n1", "nvme6n1", "nvme7n1",
    ])
}

fn policy(shards: Option<usize>, reserve: usize, avoid_smt: bool) -> Policy {
    Policy {
        shards_per_osd: shards,
        reserve_cores: reserve,
        avoid_smt,
    }
}

/// Dense fixture: NUMA node of a Linux CPU number.
fn dense_node(cpu: u32) -> u32 {
    (cpu % 64) / 32
}

/// Dense fixture: the physical core of a CPU (siblings share it).
fn dense_core(cpu: u32) -> u32 {
    cpu % 64
}

/// Dense fixture: NUMA node of an OSD device.
fn dense_device_node(dev: &str) -> Option<u32> {
    let i: u32 = dev.strip_prefix("nvme")?.strip_suffix("n1")?.parse().ok()?;
    Some(i / 4)
}

fn all_cpus(p: &Plan) -> Vec<u32> {
    p.osds.iter().flat_map(|o| o.cpus.iter().copied()).collect()
}

fn assert_no_cpu_twice(p: &Plan) {
    let cpus = all_cpus(p);
    let set: BTreeSet<u32> = cpus.iter().copied().collect();
    assert_eq!(set.len(), cpus.len(), "a CPU runs two shards: {cpus:?}");
}

#[test]
fn dense_all_cores_each_osd_on_its_node() {
    let t = load("dense-2s64c-8nvme.xml");
    let p = plan(&t, &all_nvme(), &policy(None, 0, true)).unwrap();
    assert_eq!(p.osds.len(), 8);
    for o in &p.osds {
        // 64 cores / 8 OSDs, all local: 8 each.
        assert_eq!(o.shards.len(), 8, "osd.{}", o.id);
        let want = dense_device_node(&o.device).unwrap();
        assert_eq!(o.numa, Some(want));
        for &cpu in &o.cpus {
            assert_eq!(
                dense_node(cpu),
                want,
                "osd.{} ({}) on cpu {cpu}",
                o.id,
                o.device
            );
        }
        assert!(o.shards.iter().all(|s| s.local));
        assert_eq!(
            p.cores_for(o.id),
            o.cpus.iter().map(|&c| c as usize).collect::<Vec<_>>()
        );
    }
    assert_no_cpu_twice(&p);
    // SMT avoided: 64 shards on 64 distinct physical cores, first threads.
    let cores: BTreeSet<u32> = all_cpus(&p).iter().map(|&c| dense_core(c)).collect();
    assert_eq!(cores.len(), 64);
    assert!(all_cpus(&p).iter().all(|&c| c < 64), "only primary threads");
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    assert!(p.cores_for(99).is_empty());
}

#[test]
fn dense_reserve_is_taken_near_the_nic() {
    let t = load("dense-2s64c-8nvme.xml");
    let p = plan(&t, &all_nvme(), &policy(None, 4, true)).unwrap();
    assert_eq!(p.reserved.len(), 4);
    let reserved_cpus: BTreeSet<u32> = p
        .reserved
        .iter()
        .flat_map(|r| r.pus.iter().copied())
        .collect();
    // eth0 is on node 1, so the reserve is there, not at core 0; whole
    // cores (both threads).
    assert_eq!(reserved_cpus.len(), 8);
    assert!(
        reserved_cpus.iter().all(|&c| dense_node(c) == 1),
        "{reserved_cpus:?}"
    );
    assert!(!reserved_cpus.contains(&0));
    let used: BTreeSet<u32> = all_cpus(&p).iter().map(|&c| dense_core(c)).collect();
    let reserved_cores: BTreeSet<u32> = reserved_cpus.iter().map(|&c| dense_core(c)).collect();
    assert!(
        used.is_disjoint(&reserved_cores),
        "a shard on a reserved core"
    );
    // 60 free cores, all used, every shard still local, each OSD within one
    // shard of the others.
    assert_eq!(p.total_shards(), 60);
    let counts: Vec<usize> = p.osds.iter().map(|o| o.shards.len()).collect();
    assert!(
        counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 1,
        "{counts:?}"
    );
    for o in &p.osds {
        let want = dense_device_node(&o.device).unwrap();
        assert!(
            o.cpus.iter().all(|&c| dense_node(c) == want),
            "osd.{} {:?}",
            o.id,
            o.cpus
        );
    }
    assert_no_cpu_twice(&p);
}

#[test]
fn dense_fixed_shards_leave_cores_idle() {
    let t = load("dense-2s64c-8nvme.xml");
    let p = plan(&t, &all_nvme(), &policy(Some(6), 2, true)).unwrap();
    assert!(p.osds.iter().all(|o| o.shards.len() == 6));
    assert_eq!(p.idle_cores.len(), 64 - 2 - 48);
    for o in &p.osds {
        let want = dense_device_node(&o.device).unwrap();
        assert!(o.cpus.iter().all(|&c| dense_node(c) == want));
    }
}

#[test]
fn dense_never_two_shards_on_siblings_even_when_tight() {
    let t = load("dense-2s64c-8nvme.xml");
    // Exactly all cores: siblings must stay idle.
    let p = plan(&t, &all_nvme(), &policy(Some(8), 0, true)).unwrap();
    let cores: Vec<u32> = all_cpus(&p).iter().map(|&c| dense_core(c)).collect();
    let set: BTreeSet<u32> = cores.iter().copied().collect();
    assert_eq!(set.len(), cores.len(), "two shards on one physical core");
}

#[test]
fn dense_oversubscription_is_an_error() {
    let t = load("dense-2s64c-8nvme.xml");
    let e = plan(&t, &all_nvme(), &policy(Some(9), 0, true)).unwrap_err();
    assert!(
        matches!(
            e,
            PlanError::Oversubscribed {
                shards: 72,
                slots: 64,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("--allow-smt"), "{e}");
    // Reserve counts against the cores.
    let e = plan(&t, &all_nvme(), &policy(Some(8), 1, true)).unwrap_err();
    assert!(
        matches!(
            e,
            PlanError::Oversubscribed {
                shards: 64,
                slots: 63,
                ..
            }
        ),
        "{e:?}"
    );
    // With SMT: 128 PUs, 8 x 17 = 136.
    let e = plan(&t, &all_nvme(), &policy(Some(17), 0, false)).unwrap_err();
    assert!(
        matches!(
            e,
            PlanError::Oversubscribed {
                shards: 136,
                slots: 128,
                ..
            }
        ),
        "{e:?}"
    );
    let e = plan(&t, &all_nvme(), &policy(None, 64, true)).unwrap_err();
    assert!(matches!(e, PlanError::ReserveTooLarge { .. }), "{e:?}");
}

#[test]
fn dense_with_smt_uses_siblings_only_when_cores_run_out() {
    let t = load("dense-2s64c-8nvme.xml");
    let p = plan(&t, &all_nvme(), &policy(Some(9), 0, false)).unwrap();
    assert_no_cpu_twice(&p);
    assert_eq!(p.total_shards(), 72);
    let cores: Vec<u32> = all_cpus(&p).iter().map(|&c| dense_core(c)).collect();
    let distinct: BTreeSet<u32> = cores.iter().copied().collect();
    // 72 shards on 64 cores: every core used once before 8 are doubled.
    assert_eq!(distinct.len(), 64);
    for o in &p.osds {
        let want = dense_device_node(&o.device).unwrap();
        assert!(
            o.cpus.iter().all(|&c| dense_node(c) == want),
            "osd.{} {:?}",
            o.id,
            o.cpus
        );
    }
    assert!(
        !p.warnings.is_empty(),
        "doubled siblings should be reported"
    );
}

#[test]
fn dense_spill_is_shared_evenly_and_counted() {
    let t = load("dense-2s64c-8nvme.xml");
    // Four OSDs on node 0 wanting 10 each: 32 local slots → 8 local each,
    // 2 remote each.
    let four = osds(&["nvme0n1", "nvme1n1", "nvme2n1", "nvme3n1"]);
    let p = plan(&t, &four, &policy(Some(10), 0, true)).unwrap();
    for o in &p.osds {
        let local = o.cpus.iter().filter(|&&c| dense_node(c) == 0).count();
        assert_eq!(
            (o.shards.len(), local),
            (10, 8),
            "osd.{} {:?}",
            o.id,
            o.cpus
        );
        assert_eq!(o.shards.iter().filter(|s| s.local).count(), 8);
    }
    assert_no_cpu_twice(&p);
    assert_eq!(p.warnings.len(), 4, "{:?}", p.warnings);
}

#[test]
fn unknown_locality_is_balanced_across_nodes() {
    let t = load("dense-2s64c-8nvme.xml");
    // sda hangs off no node: its shards spread so the nodes stay even.
    let p = plan(&t, &osds(&["sda"]), &policy(Some(16), 0, true)).unwrap();
    let mut per_node: BTreeMap<u32, usize> = BTreeMap::new();
    for &c in &all_cpus(&p) {
        *per_node.entry(dense_node(c)).or_default() += 1;
    }
    assert_eq!(per_node.get(&0), Some(&8), "{per_node:?}");
    assert_eq!(per_node.get(&1), Some(&8), "{per_node:?}");
    assert_eq!(p.osds[0].numa, None);
    assert!(p.osds[0].shards.iter().all(|s| !s.local));
}

#[test]
fn partitions_and_dev_paths_resolve_to_their_disk() {
    let t = load("dense-2s64c-8nvme.xml");
    let specs = vec![
        OsdSpec {
            id: 10,
            device: "/dev/nvme6n1p1".into(),
        },
        OsdSpec {
            id: 11,
            device: "/dev/nvme1n1".into(),
        },
    ];
    let p = plan(&t, &specs, &policy(Some(4), 0, true)).unwrap();
    assert!(p.cores_for(10).iter().all(|&c| dense_node(c as u32) == 1));
    assert!(p.cores_for(11).iter().all(|&c| dense_node(c as u32) == 0));
    assert_eq!(p.cores_for(10).len(), 4);
}

#[test]
fn bad_specs_are_errors() {
    let t = load("dense-2s64c-8nvme.xml");
    let e = plan(&t, &osds(&["nvme9n1"]), &Policy::default()).unwrap_err();
    assert!(matches!(e, PlanError::UnknownDevice { .. }), "{e:?}");
    assert!(
        e.to_string().contains("nvme0n1"),
        "lists the known devices: {e}"
    );
    let e = plan(&t, &osds(&["eth0"]), &Policy::default()).unwrap_err();
    assert!(
        matches!(e, PlanError::UnknownDevice { .. }),
        "a NIC is not a block device"
    );
    assert_eq!(
        plan(&t, &[], &Policy::default()).unwrap_err(),
        PlanError::NoOsds
    );
    let dup = vec![
        OsdSpec {
            id: 1,
            device: "nvme0n1".into(),
        },
        OsdSpec {
            id: 1,
            device: "nvme1n1".into(),
        },
    ];
    assert_eq!(
        plan(&t, &dup, &Policy::default()).unwrap_err(),
        PlanError::DuplicateOsd(1)
    );
    let e = plan(&t, &osds(&["nvme0n1"]), &policy(Some(0), 0, true)).unwrap_err();
    assert_eq!(e, PlanError::BadShardCount(0));
}

#[test]
fn single_socket_reserve_from_the_nic_node_and_all_local() {
    let t = load("single-1s16c-2nvme.xml");
    let p = plan(&t, &osds(&["nvme0n1", "nvme1n1"]), &policy(None, 2, true)).unwrap();
    // One node, so the NIC's node is node 0 and the reserve is its first
    // two cores: CPUs 0, 1 and their siblings 16, 17.
    let reserved: BTreeSet<u32> = p
        .reserved
        .iter()
        .flat_map(|r| r.pus.iter().copied())
        .collect();
    assert_eq!(reserved, BTreeSet::from([0, 1, 16, 17]));
    assert_eq!(p.osds[0].shards.len() + p.osds[1].shards.len(), 14);
    assert_eq!(p.osds[0].shards.len(), 7);
    for &c in &all_cpus(&p) {
        assert!((2..16).contains(&c), "cpu {c}: reserved or a sibling");
    }
    assert_no_cpu_twice(&p);
}

#[test]
fn this_vm_two_cores() {
    let t = load("this-vm-2c.xml");
    let p = plan(&t, &osds(&["vda"]), &Policy::default()).unwrap();
    assert_eq!(p.cores_for(0), vec![0, 1]);
    let p = plan(&t, &osds(&["vda"]), &policy(None, 1, true)).unwrap();
    assert_eq!(p.reserved.len(), 1);
    assert_eq!(p.cores_for(0).len(), 1);
    assert!(!p.cores_for(0).contains(&(p.reserved[0].pus[0] as usize)));
    let e = plan(&t, &osds(&["vda"]), &policy(Some(3), 0, true)).unwrap_err();
    assert!(
        matches!(
            e,
            PlanError::Oversubscribed {
                shards: 3,
                slots: 2,
                ..
            }
        ),
        "{e:?}"
    );
    // Two OSDs on two cores, each one shard.
    let two = vec![
        OsdSpec {
            id: 0,
            device: "vda".into(),
        },
        OsdSpec {
            id: 1,
            device: "vda".into(),
        },
    ];
    let p = plan(&t, &two, &Policy::default()).unwrap();
    assert_eq!(p.cores_for(0).len() + p.cores_for(1).len(), 2);
    assert_no_cpu_twice(&p);
}

#[test]
fn live_host_plan_is_valid() {
    let t = Topology::discover().unwrap();
    let Some(dev) = t
        .devices
        .iter()
        .find(|d| d.kind == sepia_tuning::DeviceKind::Block)
    else {
        return; // No block device visible (a container): nothing to plan.
    };
    let p = plan(&t, &osds(&[&dev.name]), &Policy::default()).unwrap();
    assert_eq!(p.total_shards(), t.cores.len());
    assert_eq!(p.validate(), Ok(()));
}

#[test]
fn plan_json_round_trips_and_is_validated() {
    let t = load("dense-2s64c-8nvme.xml");
    let p = plan(&t, &all_nvme(), &policy(None, 4, true)).unwrap();
    let json = serde_json::to_string(&p).unwrap();
    assert_eq!(Plan::from_json(&json).unwrap(), p);
    // The JSON carries, per OSD, its id, device, numa, shards and cpus.
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let o = &v["osds"][4];
    assert_eq!(o["device"], "nvme4n1");
    assert_eq!(o["numa"], 1);
    assert!(o["shards"][0]["core"].is_u64() && o["shards"][0]["pu"].is_u64());
    // Tamper: give osd.1's first shard osd.0's CPU.
    let mut bad = p.clone();
    let stolen = bad.osds[0].shards[0].clone();
    bad.osds[1].shards[0].pu = stolen.pu;
    bad.osds[1].shards[0].core = stolen.core;
    bad.osds[1].cpus[0] = stolen.pu;
    bad.osds[1].cores[0] = stolen.core;
    let e = Plan::from_json(&serde_json::to_string(&bad).unwrap()).unwrap_err();
    assert!(matches!(e, PlanFileError::Inconsistent(_)), "{e:?}");
    assert!(matches!(
        Plan::from_json("{\"osds\": 3}"),
        Err(PlanFileError::Json(_))
    ));
}

#[test]
fn a_corrupt_topology_never_yields_a_shared_cpu() {
    // A topology edited by hand (it is Serialize/Deserialize): core 1
    // repeats core 0's CPUs and core id, core 2 has no CPU at all.
    let mut t = load("single-1s16c-2nvme.xml");
    t.cores[1].pus = t.cores[0].pus.clone();
    t.cores[3].id = t.cores[2].id;
    t.cores[4].pus.clear();
    let p = plan(&t, &osds(&["nvme0n1"]), &policy(None, 1, false)).unwrap();
    assert_no_cpu_twice(&p);
    assert_eq!(p.validate(), Ok(()));
    let reserved: BTreeSet<u32> = p
        .reserved
        .iter()
        .flat_map(|r| r.pus.iter().copied())
        .collect();
    assert!(all_cpus(&p).iter().all(|c| !reserved.contains(c)));
}
