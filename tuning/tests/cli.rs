//! `sepia-tune` as a user runs it: JSON shapes and exit codes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/topologies")
        .join(name)
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sepia-tune"))
        .args(args)
        .output()
        .expect("run sepia-tune")
}

fn json(args: &[&str]) -> Value {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?}: not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

#[test]
fn topology_json_counts() {
    let dense = fixture("dense-2s64c-8nvme.xml");
    let v = json(&[
        "topology",
        "--topology",
        dense.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(v["packages"], 2);
    assert_eq!(v["numa_nodes"], 2);
    assert_eq!(v["cores"], 64);
    assert_eq!(v["pus"], 128);
    assert_eq!(v["details"]["cores"].as_array().unwrap().len(), 64);
    let devices = v["devices"].as_array().unwrap();
    let eth0 = devices.iter().find(|d| d["name"] == "eth0").unwrap();
    assert_eq!(
        (&eth0["kind"], &eth0["numa"]),
        (&Value::from("net"), &Value::from(1))
    );

    let live = json(&["topology", "--format", "json"]);
    for k in ["packages", "numa_nodes", "cores", "pus"] {
        assert!(live[k].as_u64().unwrap() >= 1, "{k}: {live}");
    }
    let n = std::thread::available_parallelism().unwrap().get() as u64;
    assert_eq!(live["pus"], n);
}

#[test]
fn topology_plain_mentions_devices() {
    let out = run(&[
        "topology",
        "--topology",
        fixture("single-1s16c-2nvme.xml").to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("1 packages, 1 NUMA nodes, 16 cores, 32 PUs"),
        "{text}"
    );
    assert!(text.contains("nvme1n1"), "{text}");
}

#[test]
fn plan_json_per_osd_shards_and_cores() {
    let dense = fixture("dense-2s64c-8nvme.xml");
    let mut args = vec![
        "plan",
        "--topology",
        dense.to_str().unwrap(),
        "--format",
        "json",
        "--osds",
    ];
    let devs: Vec<String> = (0..8).map(|i| format!("{}=nvme{i}n1", 100 + i)).collect();
    args.extend(devs.iter().map(String::as_str));
    args.extend(["--reserve-cores", "2"]);
    let v = json(&args);
    let osds = v["osds"].as_array().unwrap();
    assert_eq!(osds.len(), 8);
    let mut seen = std::collections::BTreeSet::new();
    for (i, o) in osds.iter().enumerate() {
        assert_eq!(o["id"], 100 + i as u64);
        assert_eq!(o["device"], format!("nvme{i}n1"));
        let node = (i / 4) as u64;
        assert_eq!(o["numa"], node);
        let shards = o["shards"].as_array().unwrap();
        assert!(shards.len() >= 7, "{o}");
        let cpus = o["cpus"].as_array().unwrap();
        assert_eq!(cpus.len(), shards.len());
        for (k, s) in shards.iter().enumerate() {
            assert_eq!(s["shard"], k as u64);
            let pu = s["pu"].as_u64().unwrap();
            assert_eq!(cpus[k], pu);
            assert_eq!(o["cores"][k], s["core"]);
            // Fixture layout: node of CPU c is (c % 64) / 32.
            assert_eq!((pu % 64) / 32, node, "osd {} on cpu {pu}", o["id"]);
            assert!(seen.insert(pu), "cpu {pu} twice");
        }
    }
    assert_eq!(v["reserved"].as_array().unwrap().len(), 2);
}

#[test]
fn plan_errors_exit_nonzero_with_a_reason() {
    let dense = fixture("dense-2s64c-8nvme.xml");
    let mut args = vec![
        "plan",
        "--topology",
        dense.to_str().unwrap(),
        "--shards-per-osd",
        "9",
        "--osds",
    ];
    let devs: Vec<String> = (0..8).map(|i| format!("nvme{i}n1")).collect();
    args.extend(devs.iter().map(String::as_str));
    let out = run(&args);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("72 shards") && err.contains("only 64"),
        "{err}"
    );
    // Missing --osds is a usage error.
    assert_eq!(
        run(&["plan", "--topology", dense.to_str().unwrap()])
            .status
            .code(),
        Some(2)
    );
    // Unreadable topology.
    let out = run(&["topology", "--topology", "/nonexistent.xml"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn plan_plain_on_this_host() {
    let t = json(&["topology", "--format", "json"]);
    let Some(dev) = t["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["kind"] == "block")
    else {
        return;
    };
    let out = run(&["plan", "--osds", dev["name"].as_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("plan: OSDs 1, shards "), "{text}");
}

#[test]
fn check_json_shape() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&[
        "check",
        "--format",
        "json",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    // 0 unless a check failed (then 1): both are a report.
    assert!(matches!(out.status.code(), Some(0 | 1)), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let arr = v.as_array().unwrap();
    let names: Vec<&str> = arr.iter().map(|c| c["name"].as_str().unwrap()).collect();
    for want in [
        "memlock",
        "io_uring",
        "nofile",
        "o_direct",
        "nvme_scheduler",
        "nic_irq_affinity",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    let mut failed = false;
    for c in arr {
        let st = c["status"].as_str().unwrap();
        assert!(["ok", "warn", "fail"].contains(&st), "{c}");
        failed |= st == "fail";
        assert!(c["value"].is_string() && c["advice"].is_string(), "{c}");
        assert!(!c["value"].as_str().unwrap().is_empty(), "{c}");
        if st != "ok" {
            assert!(!c["advice"].as_str().unwrap().is_empty(), "no advice: {c}");
        }
    }
    assert_eq!(out.status.code(), Some(if failed { 1 } else { 0 }));
}

#[test]
fn check_with_fake_root_and_plan() {
    let dir = tempfile::tempdir().unwrap();
    let single = fixture("single-1s16c-2nvme.xml");
    let out = run(&[
        "check",
        "--format",
        "json",
        "--root",
        dir.path().to_str().unwrap(),
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--topology",
        single.to_str().unwrap(),
        "--osds",
        "nvme0n1",
        "nvme1n1",
        "--reserve-cores",
        "2",
    ]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let get = |n: &str| {
        v.as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == n)
            .unwrap()
            .clone()
    };
    assert_eq!(get("cpu_governor")["value"], "unavailable");
    // 14 planned shards sized the memlock need.
    assert!(
        get("memlock")["value"]
            .as_str()
            .unwrap()
            .contains("shards 14"),
        "{}",
        get("memlock")
    );
}
