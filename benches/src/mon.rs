//! `sepia-bench mon`: the monitors' two figures — the commit latency of one
//! map change with three monitors on loopback (every member fsyncs its
//! Paxos log), and the OSD beacons per second a three-monitor quorum
//! absorbs. Real `sepia-mon` processes, started by the launcher.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use sepia_client::cluster::{self, UpOptions};
use sepia_client::config::Config;
use sepia_client::conn::{authenticate, Conn};
use sepia_client::monc::MonClient;
use sepia_proto::msg::{Body, OsdBeacon, OsdStat};

#[derive(Debug, Clone, serde::Serialize)]
pub struct MonFigures {
    pub monitors: usize,
    pub changes: u64,
    pub commit_p50_us: f64,
    pub commit_p99_us: f64,
    pub beacon_connections: usize,
    pub beacons_per_s: f64,
}

pub fn run(dir: &Path, changes: u64, beacon_seconds: u64, connections: usize) -> Result<MonFigures, String> {
    cluster::up(&UpOptions { dir: dir.to_path_buf(), mons: 3, osds: 0, down_out_interval_s: 600 })?;
    let result = (|| {
        let conf = Config::load(&dir.join("sepia.conf").to_string_lossy())?;
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().map_err(|e| e.to_string())?;
        rt.block_on(async {
            let mut monc = MonClient::from_conf(&conf, "client.admin").map_err(|e| e.to_string())?;
            // One change at a time: the client's round trip is the commit
            // latency (proposal, accept on a majority with fsync, apply).
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
            for i in 0..changes + 10 {
                let args: Vec<String> = ["osd", "pool", "create", &format!("bench{i}"), "8"].map(String::from).to_vec();
                let start = Instant::now();
                let r = monc.command(&args, false).await.map_err(|e| e.to_string())?;
                if r.result != 0 {
                    return Err(format!("pool create: {}", r.status));
                }
                // The first few warm the connection and the leader.
                if i >= 10 {
                    hist.record(start.elapsed().as_micros().max(1) as u64).ok();
                }
            }
            // Beacons: registered OSDs beacon over many connections to the leader.
            let q = monc.command(&["quorum_status".to_string()], true).await.map_err(|e| e.to_string())?;
            let q: serde_json::Value = serde_json::from_str(&q.output).map_err(|e| e.to_string())?;
            let leader_name = q["quorum_leader_name"].as_str().unwrap_or("a").to_string();
            let leader_rank = ["a", "b", "c"].iter().position(|n| *n == leader_name).unwrap_or(0);
            let leader_addr = conf.mon_addrs()[leader_rank].clone();
            let osds = 64;
            for _ in 0..osds {
                let r = monc.command(&["osd".to_string(), "new".to_string()], false).await.map_err(|e| e.to_string())?;
                if r.result != 0 {
                    return Err(format!("osd new: {}", r.status));
                }
            }
            let secret = conf.secret_for("client.admin")?.ok_or("no admin key")?;
            let done = Arc::new(AtomicU64::new(0));
            let stop = Arc::new(AtomicBool::new(false));
            let mut tasks = Vec::new();
            for t in 0..connections {
                let (addr, secret, done, stop) = (leader_addr.clone(), secret.clone(), done.clone(), stop.clone());
                tasks.push(tokio::spawn(async move {
                    let mut c = Conn::connect(&addr, "client.admin", [0; 16]).await.map_err(|e| e.to_string())?;
                    authenticate(&mut c, "client.admin", &secret).await.map_err(|e| e.to_string())?;
                    let mut n = 0u32;
                    // A window of beacons in flight per connection.
                    const WINDOW: u32 = 16;
                    let beacon = |n: u32| Body::OsdBeacon(OsdBeacon { osd: ((t as u32 * 7 + n) % osds) as i32, epoch: 1, stat: OsdStat::default() });
                    for _ in 0..WINDOW {
                        c.send(&beacon(n), &[]).await.map_err(|e| e.to_string())?;
                        n += 1;
                    }
                    while !stop.load(Ordering::Relaxed) {
                        c.recv_body().await.map_err(|e| e.to_string())?;
                        done.fetch_add(1, Ordering::Relaxed);
                        c.send(&beacon(n), &[]).await.map_err(|e| e.to_string())?;
                        n += 1;
                    }
                    Ok::<(), String>(())
                }));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            let before = done.load(Ordering::Relaxed);
            let t0 = Instant::now();
            tokio::time::sleep(Duration::from_secs(beacon_seconds)).await;
            let absorbed = done.load(Ordering::Relaxed) - before;
            let wall = t0.elapsed().as_secs_f64();
            stop.store(true, Ordering::Relaxed);
            for t in tasks {
                t.abort();
            }
            let us = |q: f64| hist.value_at_quantile(q) as f64;
            Ok(MonFigures {
                monitors: 3,
                changes,
                commit_p50_us: us(0.5),
                commit_p99_us: us(0.99),
                beacon_connections: connections,
                beacons_per_s: absorbed as f64 / wall,
            })
        })
    })();
    let _ = cluster::down(dir);
    result
}
