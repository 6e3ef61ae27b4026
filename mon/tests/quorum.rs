//! Three monitor processes on loopback agreeing through the Paxos log:
//! the leader is killed with SIGKILL while a client changes the maps, two
//! of three are killed, all three are restarted — no acknowledged change
//! is lost and a minority changes nothing.

use std::path::Path;
use std::time::{Duration, Instant};

mod common;

use sepia_client::cluster::{self, UpOptions};
use sepia_client::config::Config;
use sepia_client::monc::MonClient;
use sepia_proto::msg::CommandReply;

/// Stopped and deleted when dropped.
use sepia_client::cluster::Guard as Cluster;

fn up(name: &str) -> (Cluster, Config) {
    let dir = std::env::temp_dir().join(format!("sepia-quorum-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::env::set_var("CARGO_BIN_EXE_sepia-mon", env!("CARGO_BIN_EXE_sepia-mon"));
    cluster::up(&UpOptions { dir: dir.clone(), mons: 3, osds: 0, down_out_interval_s: 600 }).expect("cluster up");
    let conf = Config::load(&dir.join("sepia.conf").to_string_lossy()).unwrap();
    (Cluster { dir }, conf)
}

const NAMES: [&str; 3] = ["a", "b", "c"];

/// One command to monitor `rank`, one attempt (no failover to the others).
async fn ask(conf: &Config, rank: usize, line: &str, json: bool) -> Result<CommandReply, String> {
    common::ask(conf, &conf.mon_addrs()[rank], line, json).await
}

async fn leader(conf: &Config) -> usize {
    let mut monc = MonClient::from_conf(conf, "client.admin").unwrap();
    let r = monc.command(&["quorum_status".to_string()], true).await.unwrap();
    let q: serde_json::Value = serde_json::from_str(&r.output).unwrap();
    let name = q["quorum_leader_name"].as_str().unwrap().to_string();
    NAMES.iter().position(|n| *n == name).unwrap()
}

/// Waits until monitor `rank` lists every pool in `want`.
async fn wait_for_pools(conf: &Config, rank: usize, want: &[String], within: Duration) {
    common::wait_for_pools(conf, &conf.mon_addrs()[rank], want, within).await
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn restart(dir: &Path, rank: usize) {
    cluster::start_mon(dir, NAMES[rank]).unwrap();
}

#[test]
fn a_killed_leader_is_replaced_and_catches_up_on_return() {
    let (c, conf) = up("leader-kill");
    let rt = runtime();
    let (killed, acked) = rt.block_on(async {
        let old = leader(&conf).await;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (conf, stop) = (conf.clone(), stop.clone());
            tokio::spawn(async move {
                let mut monc = MonClient::from_conf(&conf, "client.admin").unwrap();
                let mut acked = Vec::new();
                let mut gaps = Vec::new();
                let mut last_ok = Instant::now();
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let name = format!("pool{i}");
                    let args: Vec<String> = ["osd", "pool", "create", &name, "8"].map(String::from).to_vec();
                    if let Ok(r) = monc.command(&args, false).await {
                        if r.result == 0 {
                            acked.push(name);
                            gaps.push(last_ok.elapsed());
                            last_ok = Instant::now();
                        }
                    }
                    i += 1;
                }
                (acked, gaps)
            })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(cluster::signal(&c.dir, &format!("mon.{}", NAMES[old]), 9));
        tokio::time::sleep(Duration::from_secs(4)).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (acked, gaps) = writer.await.unwrap();
        let worst = gaps.iter().max().copied().unwrap_or_default();
        eprintln!("{} pools acknowledged; longest wait for a commit across the leader kill: {worst:?}", acked.len());
        assert!(worst < Duration::from_secs(10), "no new leader answered within 10 s ({worst:?})");
        let new = leader(&conf).await;
        assert_ne!(new, old, "a survivor leads");
        // Every acknowledged change is on every survivor.
        for rank in (0..3).filter(|&r| r != old) {
            wait_for_pools(&conf, rank, &acked, Duration::from_secs(5)).await;
        }
        (old, acked)
    });
    // The killed monitor returns and catches up from the others.
    restart(&c.dir, killed);
    rt.block_on(async {
        wait_for_pools(&conf, killed, &acked, Duration::from_secs(20)).await;
    });
}

#[test]
fn a_minority_refuses_changes_and_nothing_is_lost() {
    let (c, conf) = up("minority");
    let rt = runtime();
    rt.block_on(async {
        let mut monc = MonClient::from_conf(&conf, "client.admin").unwrap();
        for p in ["one", "two"] {
            let args: Vec<String> = ["osd", "pool", "create", p, "8"].map(String::from).to_vec();
            assert_eq!(monc.command(&args, false).await.unwrap().result, 0);
        }
    });
    // Kill two of three: the survivor refuses, clearly.
    let survivor = 0;
    for rank in [1, 2] {
        assert!(cluster::signal(&c.dir, &format!("mon.{}", NAMES[rank]), 9));
    }
    rt.block_on(async {
        let start = Instant::now();
        loop {
            let r = ask(&conf, survivor, "osd pool create three 8", false).await;
            match r {
                // Until it notices (a heartbeat round), it may still point
                // at the dead leader; then it must say there is no quorum.
                Ok(r) if r.result != 0 && r.status.contains("quorum") => break,
                Ok(r) if r.result != 0 => {}
                Ok(r) => panic!("a minority accepted a change: {r:?}"),
                Err(_) => {}
            }
            assert!(start.elapsed() < Duration::from_secs(10), "the survivor never refused");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // Reads are refused too: its maps may be stale.
        let r = ask(&conf, survivor, "osd pool ls", true).await;
        assert!(r.is_err() || r.as_ref().is_ok_and(|r| r.result != 0), "a minority served a map: {r:?}");
    });
    // One comes back: service resumes with nothing lost.
    restart(&c.dir, 1);
    rt.block_on(async {
        let mut monc = MonClient::from_conf(&conf, "client.admin").unwrap();
        let args: Vec<String> = ["osd", "pool", "create", "three", "8"].map(String::from).to_vec();
        assert_eq!(monc.command(&args, false).await.unwrap().result, 0);
        let want: Vec<String> = ["one", "two", "three"].map(String::from).to_vec();
        for rank in [0, 1] {
            wait_for_pools(&conf, rank, &want, Duration::from_secs(10)).await;
        }
    });
    // Restart all three at once: the state survives.
    for rank in [0, 1] {
        assert!(cluster::signal(&c.dir, &format!("mon.{}", NAMES[rank]), 9));
    }
    std::thread::sleep(Duration::from_millis(300));
    for rank in 0..3 {
        restart(&c.dir, rank);
    }
    cluster::wait_for_quorum(&c.dir, Duration::from_secs(30)).unwrap();
    rt.block_on(async {
        let want: Vec<String> = ["one", "two", "three"].map(String::from).to_vec();
        for rank in 0..3 {
            wait_for_pools(&conf, rank, &want, Duration::from_secs(20)).await;
        }
    });
}

#[test]
fn a_monitor_without_its_store_refuses_to_rejoin() {
    let (c, _conf) = up("wiped");
    assert!(cluster::signal(&c.dir, "mon.b", 9));
    std::thread::sleep(Duration::from_millis(200));
    std::fs::remove_dir_all(c.dir.join("mon.b")).unwrap();
    restart(&c.dir, 1);
    let log = c.dir.join("out").join("mon.b.log");
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("no monitor store") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "a wiped monitor started: {text}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
