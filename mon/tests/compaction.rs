//! Log compaction with real monitor processes: with a tiny compaction
//! threshold the monitors fold their logs into snapshots while one of them
//! is down; it comes back behind the others' compacted index and catches
//! up from a snapshot; then all three restart from snapshot + tail with
//! nothing lost.

use std::time::Duration;

mod common;

use common::{log_of, wait_for_log};
use sepia_client::cluster::{self, UpOptions};
use sepia_client::config::Config;
use sepia_client::monc::MonClient;
use sepia_proto::msg::CommandReply;

/// Stopped and deleted when dropped.
use sepia_client::cluster::Guard as Cluster;

const NAMES: [&str; 3] = ["a", "b", "c"];

/// One command to monitor `rank`, one attempt (no failover to the others).
async fn ask(conf: &Config, rank: usize, line: &str, json: bool) -> Result<CommandReply, String> {
    common::ask(conf, &conf.mon_addrs()[rank], line, json).await
}

async fn wait_for_pools(conf: &Config, rank: usize, want: &[String], within: Duration) {
    common::wait_for_pools(conf, &conf.mon_addrs()[rank], want, within).await
}



#[test]
fn a_monitor_behind_the_compacted_log_catches_up_from_a_snapshot() {
    let dir = std::env::temp_dir().join(format!("sepia-compaction-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::env::set_var("CARGO_BIN_EXE_sepia-mon", env!("CARGO_BIN_EXE_sepia-mon"));
    // Only this test binary's monitors: compact every 5 decided entries.
    std::env::set_var("SEPIA_MON_PAXOS_TRIM_MIN", "5");
    cluster::up(&UpOptions { dir: dir.clone(), mons: 3, osds: 0, down_out_interval_s: 600 }).expect("cluster up");
    let c = Cluster { dir };
    let conf = Config::load(&c.dir.join("sepia.conf").to_string_lossy()).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();

    assert!(cluster::signal(&c.dir, "mon.c", 9));
    let pools: Vec<String> = (0..30).map(|i| format!("pool{i}")).collect();
    rt.block_on(async {
        let mut monc = MonClient::from_conf(&conf, "client.admin").unwrap();
        for p in &pools {
            let args: Vec<String> = ["osd", "pool", "create", p, "8"].map(String::from).to_vec();
            assert_eq!(monc.command(&args, false).await.unwrap().result, 0, "create {p}");
        }
    });
    // Both survivors compacted well past where mon.c stopped.
    for name in ["a", "b"] {
        wait_for_log(&c.dir, name, "compacted the log up to index", Duration::from_secs(5));
    }
    let a_log = std::fs::metadata(c.dir.join("mon.a").join("paxos.log")).unwrap().len();
    let c_log = std::fs::metadata(c.dir.join("mon.c").join("paxos.log")).unwrap().len();
    eprintln!("paxos.log: mon.a {a_log} bytes (compacted, 30 pools), mon.c {c_log} bytes (stopped early)");

    // mon.c returns: what it missed is only in the others' snapshots.
    cluster::start_mon(&c.dir, "c").unwrap();
    rt.block_on(wait_for_pools(&conf, 2, &pools, Duration::from_secs(30)));
    wait_for_log(&c.dir, "c", "installed a snapshot at log index", Duration::from_secs(5));
    // It serves changes with the others (and compacts too).
    rt.block_on(async {
        let mut monc = MonClient::from_conf(&conf, "client.admin").unwrap();
        for i in 0..8 {
            let args: Vec<String> = ["osd", "pool", "create", &format!("late{i}"), "8"].map(String::from).to_vec();
            assert_eq!(monc.command(&args, false).await.unwrap().result, 0);
        }
    });
    let mut all = pools.clone();
    all.extend((0..8).map(|i| format!("late{i}")));
    rt.block_on(wait_for_pools(&conf, 2, &all, Duration::from_secs(10)));

    // All three restart: snapshot + tail, nothing lost, same maps.
    for name in NAMES {
        assert!(cluster::signal(&c.dir, &format!("mon.{name}"), 9));
    }
    std::thread::sleep(Duration::from_millis(300));
    for name in NAMES {
        cluster::start_mon(&c.dir, name).unwrap();
    }
    cluster::wait_for_quorum(&c.dir, Duration::from_secs(30)).unwrap();
    rt.block_on(async {
        let mut epochs = Vec::new();
        for rank in 0..3 {
            wait_for_pools(&conf, rank, &all, Duration::from_secs(20)).await;
            let dump: serde_json::Value = serde_json::from_str(&ask(&conf, rank, "osd dump", true).await.unwrap().output).unwrap();
            epochs.push(dump["epoch"].clone());
        }
        assert!(epochs.iter().all(|e| *e == epochs[0]), "monitors disagree on the epoch: {epochs:?}");
    });
    for name in NAMES {
        let log = log_of(&c.dir, name);
        let restarts = log.matches("installed a snapshot at log index").count();
        assert!(restarts >= 1, "mon.{name} did not start from its snapshot:\n{log}");
    }
}

/// The records of a solo log file: (is a snapshot, payload bytes).
fn solo_records(path: &std::path::Path) -> Vec<(bool, usize)> {
    let bytes = std::fs::read(path).unwrap();
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + 8 <= bytes.len() {
        let word = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap());
        let len = (word & !(1 << 31)) as usize;
        out.push((word & (1 << 31) != 0, len));
        pos += 8 + len;
    }
    assert_eq!(pos, bytes.len(), "whole records");
    out
}

#[test]
fn a_single_monitor_compacts_its_log_and_restarts_from_the_snapshot() {
    let dir = std::env::temp_dir().join(format!("sepia-solo-compaction-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::env::set_var("CARGO_BIN_EXE_sepia-mon", env!("CARGO_BIN_EXE_sepia-mon"));
    std::env::set_var("SEPIA_MON_PAXOS_TRIM_MIN", "5");
    cluster::up(&UpOptions { dir: dir.clone(), mons: 1, osds: 0, down_out_interval_s: 600 }).expect("cluster up");
    let c = Cluster { dir };
    let conf = Config::load(&c.dir.join("sepia.conf").to_string_lossy()).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let log_path = c.dir.join("mon.a").join("solo.log");
    let create = |names: Vec<String>| {
        rt.block_on(async {
            let mut monc = MonClient::from_conf(&conf, "client.admin").unwrap();
            for p in &names {
                let args: Vec<String> = ["osd", "pool", "create", p, "8"].map(String::from).to_vec();
                assert_eq!(monc.command(&args, false).await.unwrap().result, 0, "create {p}");
            }
        })
    };
    let first: Vec<String> = (0..30).map(|i| format!("pool{i}")).collect();
    create(first.clone());
    wait_for_log(&c.dir, "a", "compacted the log up to index", Duration::from_secs(5));
    // Bounded: one snapshot, then fewer entries than the threshold.
    let records = solo_records(&log_path);
    assert!(records[0].0, "the file starts with a snapshot: {records:?}");
    assert!(records[1..].iter().all(|r| !r.0) && records.len() - 1 < 5, "{records:?}");
    let second: Vec<String> = (0..30).map(|i| format!("more{i}")).collect();
    create(second.clone());
    let records = solo_records(&log_path);
    assert!(records[0].0 && records.len() - 1 < 5, "{records:?}");

    // kill -9 and restart: the snapshot, then the tail; nothing lost.
    assert!(cluster::signal(&c.dir, "mon.a", 9));
    std::thread::sleep(Duration::from_millis(300));
    cluster::start_mon(&c.dir, "a").unwrap();
    cluster::wait_for_quorum(&c.dir, Duration::from_secs(20)).unwrap();
    let mut all = first;
    all.extend(second);
    rt.block_on(wait_for_pools(&conf, 0, &all, Duration::from_secs(20)));
    assert!(log_of(&c.dir, "a").contains("installed a snapshot at log index"), "{}", log_of(&c.dir, "a"));
    // And it goes on changing things and compacting.
    create((0..6).map(|i| format!("late{i}")).collect());
    all.extend((0..6).map(|i| format!("late{i}")));
    rt.block_on(wait_for_pools(&conf, 0, &all, Duration::from_secs(10)));
    let records = solo_records(&log_path);
    assert!(records[0].0 && records.len() - 1 < 5, "{records:?}");
}
