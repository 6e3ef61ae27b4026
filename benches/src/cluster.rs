//! `sepia-bench cluster`: the IOPS benchmark of a whole local cluster — a
//! monitor and OSDs as real processes on loopback, data in files under a
//! temporary folder — against the raw device loop on the same file system,
//! in the same run.
//!
//! Cases: 4 KiB random overwrites of existing objects (each acknowledged
//! once durable on every replica) and 4 KiB random reads, at 1 and 32 ops
//! in flight, through the librados-style client.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use sepia_client::cluster::{self, UpOptions};
use sepia_client::config::Config;
use sepia_client::rados::{IoCtx, Rados};

use crate::raw::Row;

#[derive(Debug, Clone)]
pub struct ClusterBenchConfig {
    pub osds: usize,
    pub replicas: u32,
    pub seconds: u64,
    pub objects: u64,
    pub pg_num: u32,
}

fn cpu_time_children_and_self() -> Duration {
    crate::raw::cpu_time_of(libc::RUSAGE_SELF) + crate::raw::cpu_time_of(libc::RUSAGE_CHILDREN)
}

/// CPU seconds used so far by the cluster's daemons (from /proc).
fn daemons_cpu(dir: &Path) -> f64 {
    let ticks = 100.0; // USER_HZ on Linux
    let mut total = 0.0;
    let Ok(entries) = std::fs::read_dir(dir.join("run")) else { return 0.0 };
    for e in entries.flatten() {
        let Ok(pid) = std::fs::read_to_string(e.path()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())) else { continue };
        // Fields after the command's closing parenthesis: utime is 14th, stime 15th overall.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { continue };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.len() > 12 {
            total += f[11].parse::<f64>().unwrap_or(0.0) / ticks + f[12].parse::<f64>().unwrap_or(0.0) / ticks;
        }
    }
    total
}

fn name(i: u64) -> String {
    format!("bench_obj_{i:08}")
}

async fn case(io: &IoCtx, dir: &Path, cfg: &ClusterBenchConfig, write: bool, depth: usize) -> Result<Row, String> {
    let hist = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds")));
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(cfg.seconds);
    let cpu0 = cpu_time_children_and_self() + Duration::from_secs_f64(daemons_cpu(dir));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..depth {
        let (io, hist, done) = (io.clone(), hist.clone(), done.clone());
        let objects = cfg.objects;
        tasks.push(tokio::spawn(async move {
            let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ (t as u64 * 0x5851_f42d);
            let payload = vec![t as u8; 4096];
            while Instant::now() < deadline {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let obj = name(x % objects);
                let start = Instant::now();
                if write {
                    io.write(&obj, 0, &payload).await.map_err(|e| e.to_string())?;
                } else {
                    io.read(&obj, 0, 4096).await.map_err(|e| e.to_string())?;
                }
                hist.lock().expect("histogram").record(start.elapsed().as_nanos().max(1) as u64).ok();
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<(), String>(())
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = (cpu_time_children_and_self() + Duration::from_secs_f64(daemons_cpu(dir)) - cpu0).as_secs_f64();
    let n = done.load(Ordering::Relaxed);
    let h = hist.lock().expect("histogram");
    let us = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    Ok(Row {
        name: format!("cluster.{}.qd{depth}", if write { "write" } else { "read" }),
        iops: n as f64 / wall,
        p50_us: us(0.5),
        p99_us: us(0.99),
        p999_us: us(0.999),
        // Client and daemons together: the whole cost of an op on this box.
        cpu_us_per_io: cpu * 1e6 / n.max(1) as f64,
    })
}

/// Starts the cluster under `dir`, runs the cases, stops the cluster.
pub fn run(dir: &Path, cfg: &ClusterBenchConfig) -> Result<Vec<Row>, String> {
    cluster::up(&UpOptions { dir: dir.to_path_buf(), mons: 1, osds: cfg.osds, down_out_interval_s: 600 })?;
    let result = (|| {
        let conf = Config::load(&dir.join("sepia.conf").to_string_lossy())?;
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().map_err(|e| e.to_string())?;
        rt.block_on(async {
            let rados = Rados::connect_conf(&conf, "client.admin").await.map_err(|e| e.to_string())?;
            let args: Vec<String> = format!("osd pool create bench {} --size {}", cfg.pg_num, cfg.replicas).split(' ').map(String::from).collect();
            let r = rados.command(&args, false).await.map_err(|e| e.to_string())?;
            if r.result != 0 {
                return Err(format!("pool create: {}", r.status));
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while rados.osdmap().pool_by_name("bench").is_none() {
                if Instant::now() > deadline {
                    return Err("pool never reached the client".into());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let io = rados.ioctx("bench").map_err(|e| e.to_string())?;
            // Fill, 32 at a time.
            let block = vec![0xabu8; 4096];
            let mut i = 0;
            while i < cfg.objects {
                let mut fill = Vec::new();
                for j in i..(i + 32).min(cfg.objects) {
                    let (io, block) = (io.clone(), block.clone());
                    fill.push(tokio::spawn(async move { io.write_full(&name(j), &block).await.map_err(|e| e.to_string()) }));
                }
                for f in fill {
                    f.await.map_err(|e| e.to_string())??;
                }
                i += 32;
            }
            let mut rows = Vec::new();
            for (write, depth) in [(true, 1), (true, 32), (false, 1), (false, 32)] {
                rows.push(case(&io, dir, cfg, write, depth).await?);
            }
            Ok(rows)
        })
    })();
    let _ = cluster::down(dir);
    result
}
