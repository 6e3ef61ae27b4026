//! `sepia-bench cluster` (the main job): the IOPS benchmark of a whole
//! local cluster — a monitor and OSDs as real processes on loopback, data
//! in files under a temporary folder — against the raw device loop on the
//! same file system, in the same run. With `--conf` it runs against an
//! existing cluster instead.
//!
//! Pools: `size1` (one copy; on the embedded cluster a CRUSH rule keeps
//! it on osd.0, so one OSD's journal is measured against the raw loop's
//! one file) and, with three OSDs or more, `size3`. Cases
//! per pool: 4 KiB random overwrites of existing objects (each
//! acknowledged once durable on every replica) and 4 KiB random reads, at
//! 1 and 32 ops in flight, through the librados-style client. CPU is split
//! between the OSD processes (from /proc, when their pids are known) and
//! this process (the client).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use sepia_client::cluster::{self, UpOptions};
use sepia_client::config::Config;
use sepia_client::rados::{IoCtx, Rados, RadosError};

/// One measurement of the main job's table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClusterRow {
    pub name: String,
    pub iops: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    /// CPU of the OSD processes per I/O (None: their pids are unknown, or
    /// a raw row, which has no OSD).
    pub osd_cpu_us_per_io: Option<f64>,
    /// CPU of this process per I/O: the client (or the raw loop).
    pub client_cpu_us_per_io: f64,
    /// IOPS over the raw row of the same kind and depth.
    pub ratio_to_raw: f64,
}

#[derive(Debug, Clone)]
pub struct ClusterBenchConfig {
    pub osds: usize,
    pub seconds: u64,
    pub objects: u64,
    pub pg_num: u32,
    /// Case name prefixes to run (empty: all).
    pub only: Vec<String>,
    /// What the benchmark's client asks OSDs for (`ms_mode`).
    pub frame_mode: sepia_proto::hello::FrameMode,
}

/// Shards of the embedded cluster's osd.0, which holds the size-1 pool:
/// one per core, as a storage node runs its OSD (the size-1
/// target is "one OSD with one shard per core"). The other OSDs keep one
/// shard each: six executors of three OSDs on a 2-vCPU machine cut size-3
/// depth-32 writes by ~20%, while a one-shard osd.0 left size-1 depth-32
/// reads at 0.63-0.70x raw (0.82-0.85x with two shards; 2-vCPU VM,
/// `--seconds 6` and 10, interleaved).
fn osd0_shards() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, OSD0_SHARDS_MAX) as u32
}

/// osd.0's shards at most, whatever the machine claims: each shard owns
/// a region of the OSD's data file (1 GiB in the bench) with a journal
/// and checkpoint slots in proportion, and a quarter of it is the least
/// that keeps their pace representative.
const OSD0_SHARDS_MAX: usize = 4;

/// Starts the embedded cluster: a monitor, then the OSDs (osd.0 with
/// [`osd0_shards`]), and waits until they are all up.
fn up_embedded(dir: &Path, osds: usize) -> Result<(), String> {
    cluster::up(&UpOptions { dir: dir.to_path_buf(), mons: 1, osds: 0, down_out_interval_s: 600 })?;
    for id in 0..osds {
        let shards = if id == 0 { osd0_shards() } else { 1 };
        cluster::start_osd_with_shards(dir, id as i32, Some(shards))?;
    }
    cluster::wait_for_osds_up(dir, osds, Duration::from_secs(60))
}

/// Whether case `name` is selected by `only` (empty selects all).
pub fn wanted(only: &[String], name: &str) -> bool {
    only.is_empty() || only.iter().any(|p| name.starts_with(p.as_str()))
}

fn client_cpu() -> Duration {
    crate::raw::cpu_time_of(libc::RUSAGE_SELF)
}

/// CPU seconds used so far by the cluster's OSDs (from /proc; the pid
/// files the launcher writes under `run/`).
fn osds_cpu(run_dir: &Path) -> f64 {
    let ticks = 100.0; // USER_HZ on Linux
    let mut total = 0.0;
    let Ok(entries) = std::fs::read_dir(run_dir) else { return 0.0 };
    for e in entries.flatten() {
        if !e.file_name().to_string_lossy().starts_with("osd.") {
            continue;
        }
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

/// Where the OSDs' pid files are (None: a cluster we did not start and
/// whose conf is not in a launcher folder).
fn run_dir_of(conf_path: &Path) -> Option<PathBuf> {
    let run = conf_path.parent()?.join("run");
    run.is_dir().then_some(run)
}

async fn case(io: &IoCtx, pool: &str, run_dir: Option<&Path>, cfg: &ClusterBenchConfig, write: bool, depth: usize) -> Result<ClusterRow, String> {
    let hist = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds")));
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(cfg.seconds);
    let osd0 = run_dir.map(osds_cpu);
    let client0 = client_cpu();
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
                    io.write(&obj, 0, &payload).await.map_err(|e| io_error("write", &obj, e))?;
                } else {
                    io.read(&obj, 0, 4096).await.map_err(|e| io_error("read", &obj, e))?;
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
    let n = done.load(Ordering::Relaxed).max(1) as f64;
    let osd_cpu = match (run_dir, osd0) {
        (Some(d), Some(before)) => Some((osds_cpu(d) - before) * 1e6 / n),
        _ => None,
    };
    let client_cpu_s = (client_cpu() - client0).as_secs_f64();
    let h = hist.lock().expect("histogram");
    let us = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    Ok(ClusterRow {
        name: format!("{pool}.{}.qd{depth}", if write { "write" } else { "read" }),
        iops: n / wall,
        p50_us: us(0.5),
        p99_us: us(0.99),
        p999_us: us(0.999),
        osd_cpu_us_per_io: osd_cpu,
        client_cpu_us_per_io: client_cpu_s * 1e6 / n,
        ratio_to_raw: 0.0,
    })
}

/// Starts a cluster under `dir` (or uses the one `conf` names), runs the
/// cases on each pool, stops the cluster it started.
pub fn run(dir: &Path, conf: Option<&Path>, cfg: &ClusterBenchConfig) -> Result<Vec<ClusterRow>, String> {
    let conf_path = match conf {
        Some(c) => c.to_path_buf(),
        None => {
            // 1 GiB per OSD: a 64 MiB journal and 32 MiB checkpoint slots,
            // so checkpoints come at a representative pace.
            if std::env::var_os("SEPIA_DEV_OSD_MIB").is_none() {
                std::env::set_var("SEPIA_DEV_OSD_MIB", "1024");
            }
            eprintln!("sepia-bench: starting 1 monitor and {} OSD(s) under {}", cfg.osds, dir.display());
            if let Err(e) = up_embedded(dir, cfg.osds) {
                // What the daemons said, then none left running.
                cluster::print_log_tails(dir, 20);
                let _ = cluster::down(dir);
                return Err(e);
            }
            dir.join("sepia.conf")
        }
    };
    let embedded = conf.is_none();
    let result = (|| {
        let conf = Config::load(&conf_path.to_string_lossy())?;
        let run_dir = run_dir_of(&conf_path);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
        rt.block_on(async {
            let secret = conf.secret_for("client.admin")?;
            let rados = Rados::connect_in(conf.mon_addrs(), "client.admin", secret, cfg.frame_mode).await.map_err(|e| e.to_string())?;
            let up = rados.osdmap().osds.iter().filter(|o| o.up).count();
            let mut pools = vec![("size1", 1)];
            if up >= 3 {
                pools.push(("size3", 3));
            } else {
                eprintln!("sepia-bench: {up} OSD(s) up, so no size-3 pool");
            }
            let mut rows = Vec::new();
            pools.retain(|(pool, _)| cfg.only.is_empty() || cfg.only.iter().any(|p| p.starts_with(pool) || pool.starts_with(p.as_str())));
            for (pool, size) in pools {
                // The embedded cluster's size-1 pool lives on one OSD, as
                // the raw loop drives one file: one journal against one.
                let one_osd = pool == "size1" && embedded;
                if one_osd {
                    pin_rule_to_osd0(&rados).await?;
                }
                let io = prepare_pool(&rados, pool, size, if one_osd { Some(ONE_OSD_RULE) } else { None }, cfg).await?;
                for (write, depth) in [(true, 1), (true, 32), (false, 1), (false, 32)] {
                    if !wanted(&cfg.only, &format!("{pool}.{}.qd{depth}", if write { "write" } else { "read" })) {
                        continue;
                    }
                    eprintln!("sepia-bench: {pool} {} qd{depth}, {} s", if write { "write" } else { "read" }, cfg.seconds);
                    rows.push(case(&io, pool, run_dir.as_deref(), cfg, write, depth).await?);
                }
            }
            Ok(rows)
        })
    })();
    if conf.is_none() {
        let _ = cluster::down(dir);
    }
    result
}

/// The CRUSH rule that maps every PG to osd.0 alone.
const ONE_OSD_RULE: &str = "bench_osd0";

/// Adds [`ONE_OSD_RULE`] to the cluster's CRUSH map (`take osd.0`, `emit`),
/// unless it is there.
async fn pin_rule_to_osd0(rados: &Arc<Rados>) -> Result<(), String> {
    let words = |line: &str| line.split(' ').map(String::from).collect::<Vec<String>>();
    let r = rados.command(&words("osd getcrushmap"), false).await.map_err(|e| e.to_string())?;
    if r.result != 0 {
        return Err(format!("osd getcrushmap: {}", r.status));
    }
    let text = r.output;
    if text.contains(&format!("rule {ONE_OSD_RULE} ")) {
        return Ok(());
    }
    let id = text.lines().filter_map(|l| l.trim().strip_prefix("id ")).filter_map(|v| v.split_whitespace().next()?.parse::<i32>().ok()).filter(|&v| v >= 0).max().map_or(1, |m| m + 1);
    let rule = format!("rule {ONE_OSD_RULE} {{\n\tid {id}\n\ttype replicated\n\tmin_size 1\n\tmax_size 1\n\tstep take osd.0\n\tstep emit\n}}\n");
    let map = match text.find("# end crush map") {
        Some(at) => format!("{}{rule}{}", &text[..at], &text[at..]),
        None => format!("{text}\n{rule}"),
    };
    let r = rados.command(&["osd".to_string(), "setcrushmap".to_string(), map], false).await.map_err(|e| e.to_string())?;
    if r.result != 0 {
        return Err(format!("osd setcrushmap: {}", r.status));
    }
    Ok(())
}

/// An I/O error with what it was doing, and for a full cluster what to do
/// about it.
fn io_error(what: &str, obj: &str, e: RadosError) -> String {
    let hint = match &e {
        RadosError::Errno(sepia_proto::errno::Errno::NoSpc) => {
            "; the OSDs are full: their data area, or the metadata a checkpoint slot (1/32 of an OSD) holds. \
             A `sepia cluster up` OSD has 256 MiB: start the cluster with bigger ones (SEPIA_DEV_OSD_MIB=1024, as the \
             embedded cluster does), or pass fewer --objects"
        }
        _ => "",
    };
    format!("{what} {obj}: {e}{hint}")
}

/// Creates the pool (if needed, with `rule` if given) and fills it with
/// `cfg.objects` 4 KiB objects, 32 at a time.
async fn prepare_pool(rados: &Arc<Rados>, pool: &str, size: u32, rule: Option<&str>, cfg: &ClusterBenchConfig) -> Result<IoCtx, String> {
    let args: Vec<String> = format!("osd pool create {pool} {} --size {size} --min-size 1", cfg.pg_num).split(' ').map(String::from).collect();
    let r = rados.command(&args, false).await.map_err(|e| e.to_string())?;
    if r.result != 0 {
        return Err(format!("pool create {pool}: {}", r.status));
    }
    if let Some(rule) = rule {
        let args: Vec<String> = format!("osd pool set {pool} crush_rule {rule}").split(' ').map(String::from).collect();
        let r = rados.command(&args, false).await.map_err(|e| e.to_string())?;
        if r.result != 0 {
            return Err(format!("pool set {pool} crush_rule {rule}: {}", r.status));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while rados.osdmap().pool_by_name(pool).is_none() {
        if Instant::now() > deadline {
            return Err(format!("pool {pool} never reached the client"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let io = rados.ioctx(pool).map_err(|e| e.to_string())?;
    eprintln!("sepia-bench: filling {pool} with {} objects", cfg.objects);
    let block = vec![0xabu8; 4096];
    let mut i = 0;
    while i < cfg.objects {
        let mut fill = Vec::new();
        for j in i..(i + 32).min(cfg.objects) {
            let (io, block) = (io.clone(), block.clone());
            fill.push(tokio::spawn(async move { io.write_full(&name(j), &block).await.map_err(|e| io_error("fill", &name(j), e)) }));
        }
        for f in fill {
            f.await.map_err(|e| e.to_string())??;
        }
        i += 32;
    }
    Ok(io)
}
