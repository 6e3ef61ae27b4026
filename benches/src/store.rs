//! `sepia-bench store`: the object store of one shard against the raw
//! device, on the same file, in the same run.
//!
//! The raw baseline (`raw.rs`: our own io_uring loop, O_DIRECT, O_DSYNC
//! writes) writes the preallocated file first; then the store formats the
//! same file, fills it with 4 KiB objects, and measures 4 KiB random
//! overwrites of existing objects (each acknowledged only once durable) and
//! 4 KiB random reads (crc checked), at 1 and 32 in flight, each case long
//! enough to wrap its journal several times. Raw reads run right before the
//! store reads at the same depth (they leave the file as it is).

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use sepia_osd::objstore::{CollId, DmaDevice, Expect, MkfsOptions, Op, Store, Transaction};

use crate::raw::{self, cpu_time, Row};

const COLL: CollId = CollId { pool: 1, seed: 0 };

#[derive(Debug, Clone)]
pub struct StoreBenchConfig {
    pub file_bytes: u64,
    pub seconds: u64,
    pub objects: u64,
    pub journal_bytes: u64,
    /// Spin before parking the executor's thread (0: park at once). A
    /// spinning executor is pinned to `core`.
    pub spin_us: u64,
    /// The CPU a spinning executor is pinned to; `None`: the last CPU this
    /// process may run on.
    pub core: Option<usize>,
    /// Requests a task may leave queued before the shard submits them at
    /// once (0: only between task runs, glommio's default).
    pub submit_batch: usize,
    /// Case name prefixes to run (empty: all).
    pub only: Vec<String>,
}

impl StoreBenchConfig {
    fn wants(&self, case: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|p| case.starts_with(p.as_str()))
    }
}

fn name(i: u64) -> String {
    format!("rbd_data.bench.{i:016x}")
}

/// What the store phase reports besides the rows.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StoreFacts {
    /// Full checkpoints (the whole metadata written).
    pub checkpoints: u64,
    /// Journal wraps that wrote only the ops since the last one.
    pub deltas: u64,
    pub commits: u64,
    pub txns: u64,
    pub metadata_bytes: usize,
}

/// The order rows are reported in.
const ROW_ORDER: [&str; 8] = ["raw.write.qd1", "raw.write.qd32", "raw.read.qd1", "raw.read.qd32", "store.write.qd1", "store.write.qd32", "store.read.qd1", "store.read.qd32"];

/// Runs the raw baseline and the store cases on `path`.
///
/// Raw writes run first: they overwrite the file, so they cannot follow
/// the store's format. Each raw read runs right before the store read at
/// the same depth, on the shard's thread while the store is idle: on a
/// shared machine the two halves of a ratio then see the same neighbours.
pub fn run(path: &Path, cfg: &StoreBenchConfig) -> Result<(Vec<Row>, StoreFacts), String> {
    raw::preallocate(path, cfg.file_bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut rows = Vec::new();
    let d = Duration::from_secs(cfg.seconds);
    for depth in [1, 32] {
        if cfg.wants(&format!("raw.write.qd{depth}")) {
            rows.push(raw::run(path, cfg.file_bytes, raw::Op::Write, depth, d).map_err(|e| format!("raw write qd{depth}: {e}"))?);
        }
    }
    let p = path.to_path_buf();
    let cfg2 = cfg.clone();
    // A shard owns its core (Seastar's model): glommio spins only on an
    // executor pinned to a CPU, so spinning pins it.
    let builder = if cfg.spin_us > 0 {
        let core = match cfg.core {
            Some(c) => c,
            None => last_allowed_cpu().ok_or("no CPU in this process's affinity mask")?,
        };
        glommio::LocalExecutorBuilder::new(glommio::Placement::Fixed(core)).spin_before_park(Duration::from_micros(cfg.spin_us))
    } else {
        glommio::LocalExecutorBuilder::default()
    };
    let result = builder
        .spawn(move || async move {
            glommio::executor().set_submit_batch_min((cfg2.submit_batch > 0).then_some(cfg2.submit_batch));
            store_cases(&p, &cfg2).await
        })
        .map_err(|e| format!("glommio executor: {e}"))?
        .join()
        .map_err(|e| format!("executor thread: {e:?}"))??;
    rows.extend(result.0);
    rows.sort_by_key(|r| ROW_ORDER.iter().position(|n| *n == r.name).unwrap_or(ROW_ORDER.len()));
    Ok((rows, result.1))
}

/// The highest-numbered CPU in this thread's affinity mask.
fn last_allowed_cpu() -> Option<usize> {
    // SAFETY: cpu_set_t is plain data that sched_getaffinity fills.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return None;
        }
        (0..libc::CPU_SETSIZE as usize).rev().find(|&c| libc::CPU_ISSET(c, &set))
    }
}

async fn store_cases(path: &Path, cfg: &StoreBenchConfig) -> Result<(Vec<Row>, StoreFacts), String> {
    let dev = DmaDevice::open(path).await.map_err(|e| e.to_string())?;
    let opts = MkfsOptions { fsid: [0x5e; 16], osd: 0, shards: 1, osd_uuid: [0x5f; 16], journal_bytes: Some(cfg.journal_bytes), checkpoint_bytes: None };
    Store::mkfs(&dev, &opts).await.map_err(|e| e.to_string())?;
    let store = Rc::new(Store::mount(dev, 0, Expect { fsid: Some([0x5e; 16]), osd: 0, shards: 1 }).await.map_err(|e| e.to_string())?);
    store.submit(Transaction { ops: vec![Op::CreateCollection(COLL)] }).await.map_err(|e| e.to_string())?;
    // Fill: every object exists with 4 KiB, 64 objects per transaction.
    let block = vec![0xabu8; 4096];
    let mut i = 0;
    while i < cfg.objects {
        let ops = (i..(i + 64).min(cfg.objects)).map(|j| Op::Write { coll: COLL, obj: name(j), offset: 0, data: block.clone() }).collect();
        store.submit(Transaction { ops }).await.map_err(|e| format!("fill: {e}"))?;
        i += 64;
    }
    let mut rows = Vec::new();
    for (write, depth) in [(true, 1usize), (true, 32), (false, 1), (false, 32)] {
        if !write && cfg.wants(&format!("raw.read.qd{depth}")) {
            // Blocks this thread: the store has nothing in flight now.
            rows.push(raw::run(path, cfg.file_bytes, raw::Op::Read, depth as u32, Duration::from_secs(cfg.seconds)).map_err(|e| format!("raw read qd{depth}: {e}"))?);
        }
        if !cfg.wants(&format!("store.{}.qd{depth}", if write { "write" } else { "read" })) {
            continue;
        }
        rows.push(case(&store, cfg, write, depth).await?);
    }
    let c = store.counters();
    let facts = StoreFacts { checkpoints: c.checkpoints, deltas: c.deltas, commits: c.commits, txns: c.txns, metadata_bytes: store.memory_usage() };
    Ok((rows, facts))
}

async fn case(store: &Rc<Store<DmaDevice>>, cfg: &StoreBenchConfig, write: bool, depth: usize) -> Result<Row, String> {
    let hist = Rc::new(RefCell::new(Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds")));
    let done = Rc::new(RefCell::new(0u64));
    let error: Rc<RefCell<Option<String>>> = Rc::new(RefCell::new(None));
    let deadline = Instant::now() + Duration::from_secs(cfg.seconds);
    let cpu0 = cpu_time();
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..depth {
        let (store, hist, done, error) = (store.clone(), hist.clone(), done.clone(), error.clone());
        let objects = cfg.objects;
        tasks.push(glommio::spawn_local(async move {
            let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ (t as u64 * 0x1234_5678);
            let payload = vec![t as u8; 4096];
            while Instant::now() < deadline && error.borrow().is_none() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let obj = name(x % objects);
                let start = Instant::now();
                let r = if write {
                    store.submit(Transaction { ops: vec![Op::Write { coll: COLL, obj, offset: 0, data: payload.clone() }] }).await.map(|_| ())
                } else {
                    store.read(&COLL, &obj, 0, 4096).await.map(|_| ())
                };
                if let Err(e) = r {
                    *error.borrow_mut() = Some(e.to_string());
                    break;
                }
                hist.borrow_mut().record(start.elapsed().as_nanos().max(1) as u64).ok();
                *done.borrow_mut() += 1;
            }
        }));
    }
    for t in tasks {
        t.await;
    }
    if let Some(e) = error.borrow().clone() {
        return Err(e);
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = (cpu_time() - cpu0).as_secs_f64();
    let n = *done.borrow();
    let h = hist.borrow();
    let us = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    Ok(Row {
        name: format!("store.{}.qd{depth}", if write { "write" } else { "read" }),
        iops: n as f64 / wall,
        p50_us: us(0.5),
        p99_us: us(0.99),
        p999_us: us(0.999),
        cpu_us_per_io: cpu * 1e6 / n.max(1) as f64,
    })
}
