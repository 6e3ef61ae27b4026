//! Paxos membership changes with real monitor processes: `mon rm` ends a
//! configuration and the removed monitor stops; its store is wiped and it
//! is added back (`mon add`) as a new member, catches up from a snapshot,
//! and the new three-monitor quorum survives a leader kill.

use std::path::Path;
use std::time::{Duration, Instant};

mod common;

use common::{ask, wait_for_log, wait_for_pools};
use sepia_client::cluster::{self, UpOptions};
use sepia_client::config::Config;
use sepia_client::monc::MonClient;

/// Stopped and deleted when dropped.
use sepia_client::cluster::Guard as Cluster;

fn conf_of(dir: &Path) -> Config {
    Config::load(&dir.join("sepia.conf").to_string_lossy()).unwrap()
}



async fn create(conf: &Config, pools: &[String]) {
    let mut monc = MonClient::from_conf(conf, "client.admin").unwrap();
    for p in pools {
        let args: Vec<String> = ["osd", "pool", "create", p, "8"].map(String::from).to_vec();
        let r = monc.command(&args, false).await.unwrap();
        assert_eq!(r.result, 0, "create {p}: {}", r.status);
    }
}

async fn quorum(conf: &Config) -> serde_json::Value {
    let mut monc = MonClient::from_conf(conf, "client.admin").unwrap();
    let r = monc.command(&["quorum_status".to_string()], true).await.unwrap();
    serde_json::from_str(&r.output).unwrap()
}



fn addr_of(conf: &Config, name: &str) -> String {
    let names: Vec<&str> = conf.get("global", "mon_initial_members").unwrap().split(',').collect();
    let i = names.iter().position(|n| *n == name).unwrap();
    conf.mon_addrs()[i].clone()
}

#[test]
fn a_wiped_monitor_is_removed_and_added_back_and_the_quorum_survives_a_leader_kill() {
    let dir = std::env::temp_dir().join(format!("sepia-membership-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::env::set_var("CARGO_BIN_EXE_sepia-mon", env!("CARGO_BIN_EXE_sepia-mon"));
    // Compact often, so the re-added monitor can only catch up from a snapshot.
    std::env::set_var("SEPIA_MON_PAXOS_TRIM_MIN", "5");
    cluster::up(&UpOptions { dir: dir.clone(), mons: 3, osds: 0, down_out_interval_s: 600 }).expect("cluster up");
    let c = Cluster { dir };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut pools: Vec<String> = (0..10).map(|i| format!("before{i}")).collect();
    rt.block_on(create(&conf_of(&c.dir), &pools));

    // Remove mon.c: a new configuration of a and b; mon.c stops itself.
    cluster::rm_mon(&c.dir, "c").unwrap();
    wait_for_log(&c.dir, "c", "removed from the monmap", Duration::from_secs(10));
    let conf = conf_of(&c.dir);
    assert_eq!(conf.mon_addrs().len(), 2);
    let more: Vec<String> = (0..10).map(|i| format!("two{i}")).collect();
    rt.block_on(async {
        create(&conf, &more).await;
        let q = quorum(&conf).await;
        assert_eq!(q["quorum_names"], serde_json::json!(["a", "b"]), "{q}");
    });
    pools.extend(more);

    // Its disk is lost; it comes back as a new member.
    let _ = cluster::signal(&c.dir, "mon.c", 9);
    std::thread::sleep(Duration::from_millis(200));
    std::fs::remove_dir_all(c.dir.join("mon.c")).unwrap();
    let addr = cluster::add_mon(&c.dir, "c").unwrap();
    let conf = conf_of(&c.dir);
    assert_eq!(addr_of(&conf, "c"), addr);
    rt.block_on(wait_for_pools(&conf, &addr, &pools, Duration::from_secs(30)));
    wait_for_log(&c.dir, "c", "installed a snapshot at log index", Duration::from_secs(5));
    let ids: serde_json::Value = rt.block_on(async { serde_json::from_str(&ask(&conf, &addr, "mon paxos", true).await.unwrap().output).unwrap() });
    let c_id = ids["members"].as_array().unwrap().iter().find(|m| m["name"] == "c").unwrap()["id"].clone();
    assert_eq!(c_id, serde_json::json!(4), "a re-added monitor is a new member: {ids}");
    let leader = rt.block_on(async {
        let start = Instant::now();
        loop {
            let q = quorum(&conf).await;
            if q["quorum_names"].as_array().map(|a| a.len()) == Some(3) {
                break q["quorum_leader_name"].as_str().unwrap().to_string();
            }
            assert!(start.elapsed() < Duration::from_secs(10), "mon.c never joined the quorum: {q}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });

    // Kill the leader: the two others (one of them the new member unless
    // it led) elect a new one and keep every change.
    assert!(cluster::signal(&c.dir, &format!("mon.{leader}"), 9));
    let after: Vec<String> = (0..5).map(|i| format!("after{i}")).collect();
    let start = Instant::now();
    rt.block_on(create(&conf, &after));
    assert!(start.elapsed() < Duration::from_secs(15), "no new leader in time ({:?})", start.elapsed());
    pools.extend(after);
    for name in ["a", "b", "c"].into_iter().filter(|n| *n != leader) {
        rt.block_on(wait_for_pools(&conf, &addr_of(&conf, name), &pools, Duration::from_secs(10)));
    }
    let q = rt.block_on(quorum(&conf));
    assert_ne!(q["quorum_leader_name"], serde_json::json!(leader), "{q}");
}

/// True once process `pid` has exited (it may linger as our zombie: the
/// launcher spawned it from this process).
fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit(')').next().and_then(|rest| rest.split_whitespace().next()).is_some_and(|state| state == "Z" || state == "X"),
    }
}

async fn wait_for_quorum_of(conf: &Config, n: usize, within: Duration) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let q = quorum(conf).await;
        if q["quorum_names"].as_array().map(|a| a.len()) == Some(n) {
            return q;
        }
        assert!(start.elapsed() < within, "no quorum of {n}: {q}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn a_monitor_down_across_two_membership_changes_rejoins_or_is_refused() {
    let dir = std::env::temp_dir().join(format!("sepia-membership-stale-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::env::set_var("CARGO_BIN_EXE_sepia-mon", env!("CARGO_BIN_EXE_sepia-mon"));
    std::env::set_var("SEPIA_MON_PAXOS_TRIM_MIN", "5");
    // Five monitors, so every change below keeps a majority without mon.c.
    cluster::up(&UpOptions { dir: dir.clone(), mons: 5, osds: 0, down_out_interval_s: 600 }).expect("cluster up");
    let c = Cluster { dir };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut pools: Vec<String> = (0..5).map(|i| format!("before{i}")).collect();
    rt.block_on(create(&conf_of(&c.dir), &pools));

    // mon.c is down while e is removed (configuration 2) and f is added
    // (configuration 3): nobody runs its configuration any more.
    assert!(cluster::signal(&c.dir, "mon.c", 9));
    cluster::rm_mon(&c.dir, "e").unwrap();
    wait_for_log(&c.dir, "e", "removed from the monmap", Duration::from_secs(10));
    let during: Vec<String> = (0..5).map(|i| format!("during{i}")).collect();
    rt.block_on(create(&conf_of(&c.dir), &during));
    cluster::add_mon(&c.dir, "f").unwrap();
    rt.block_on(wait_for_quorum_of(&conf_of(&c.dir), 4, Duration::from_secs(30)));
    let after: Vec<String> = (0..5).map(|i| format!("after{i}")).collect();
    rt.block_on(create(&conf_of(&c.dir), &after));
    pools.extend(during);
    pools.extend(after);

    // It comes back: still a member under its node id, it joins the
    // current configuration and catches up.
    cluster::start_mon(&c.dir, "c").unwrap();
    wait_for_log(&c.dir, "c", "joining it as node 3 with a fresh log", Duration::from_secs(10));
    let conf = conf_of(&c.dir);
    rt.block_on(async {
        wait_for_pools(&conf, &addr_of(&conf, "c"), &pools, Duration::from_secs(30)).await;
        let q = wait_for_quorum_of(&conf, 5, Duration::from_secs(20)).await;
        let mut names: Vec<String> = q["quorum_names"].as_array().unwrap().iter().map(|n| n.as_str().unwrap().to_string()).collect();
        names.sort();
        assert_eq!(names, ["a", "b", "c", "d", "f"], "{q}");
        create(&conf, &["back".to_string()]).await;
    });
    pools.push("back".into());
    rt.block_on(wait_for_pools(&conf, &addr_of(&conf, "c"), &pools, Duration::from_secs(10)));

    // Down again while it is removed (configuration 4) and g is added (5):
    // it is refused, with what to do.
    let c_addr = addr_of(&conf, "c");
    assert!(cluster::signal(&c.dir, "mon.c", 9));
    cluster::rm_mon(&c.dir, "c").unwrap();
    cluster::add_mon(&c.dir, "g").unwrap();
    rt.block_on(wait_for_quorum_of(&conf_of(&c.dir), 5, Duration::from_secs(30)));
    let pid = cluster::start_mon(&c.dir, "c").unwrap();
    wait_for_log(&c.dir, "c", "was removed from the monitors while it was down", Duration::from_secs(10));
    let start = Instant::now();
    while !exited(pid) {
        assert!(start.elapsed() < Duration::from_secs(10), "the refused monitor kept running");
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = common::log_of(&c.dir, "c");
    assert!(log.contains("sepia cluster add-mon"), "{log}");
    assert!(std::net::TcpStream::connect(&c_addr).is_err(), "the refused monitor does not listen");
}
