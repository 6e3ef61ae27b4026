//! The data commands of `sepia` (rados' shape): `put`, `get`, `rm`,
//! `stat`, `ls` and `bench`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::rados::{IoCtx, RadosError};

/// The object rados bench leaves to say what a write run wrote.
const BENCH_METADATA: &str = "benchmark_last_metadata";

pub async fn put(io: &IoCtx, object: &str, path: &str) -> Result<String, String> {
    let data = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    io.write_full(object, &data).await.map_err(|e| e.to_string())?;
    Ok(String::new())
}

pub async fn get(io: &IoCtx, object: &str, path: &str) -> Result<String, String> {
    let data = io.read(object, 0, 0).await.map_err(|e| e.to_string())?;
    if path == "-" {
        use std::io::Write;
        std::io::stdout().write_all(&data).map_err(|e| e.to_string())?;
    } else {
        std::fs::write(path, &data).map_err(|e| format!("{path}: {e}"))?;
    }
    Ok(String::new())
}

pub async fn stat(io: &IoCtx, pool: &str, object: &str, json: bool) -> Result<String, String> {
    let s = io.stat(object).await.map_err(|e| e.to_string())?;
    if json {
        return Ok(serde_json::json!({"pool": pool, "name": object, "size": s.size, "mtime_ms": s.mtime_ms}).to_string());
    }
    Ok(format!("{pool}/{object} mtime_ms {}, size {}", s.mtime_ms, s.size))
}

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub seconds: u64,
    pub write: bool,
    pub threads: usize,
    pub block_bytes: usize,
    pub cleanup: bool,
}

/// Result of a bench run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchResult {
    pub mode: String,
    pub seconds: f64,
    pub ops: u64,
    pub block_bytes: usize,
    pub iops: f64,
    pub bandwidth_mib_s: f64,
    pub lat_avg_us: f64,
    pub lat_p50_us: u64,
    pub lat_p99_us: u64,
    pub lat_p999_us: u64,
    pub lat_max_us: u64,
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn object_name(i: u64) -> String {
    format!("benchmark_data_{}_{}_object{i}", hostname(), std::process::id())
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "localhost".into())
}

/// `bench POOL SECONDS write|read -t THREADS -b BYTES`.
pub async fn bench(io: &IoCtx, opts: &BenchOptions) -> Result<BenchResult, String> {
    let io = Arc::new(io.clone());
    let deadline = Instant::now() + Duration::from_secs(opts.seconds);
    let start = Instant::now();
    if !opts.write {
        // A read run reads what the last write run left.
        let meta = io.read(BENCH_METADATA, 0, 0).await.map_err(|e| format!("no objects to read ({e}); run `bench POOL N write --no-cleanup` first"))?;
        let text = String::from_utf8_lossy(&meta).to_string();
        let mut it = text.split_whitespace();
        let count: u64 = it.next().and_then(|c| c.parse().ok()).ok_or("bad bench metadata")?;
        let prefix = it.next().ok_or("bad bench metadata")?.to_string();
        if count == 0 {
            return Err("the last write run wrote nothing".into());
        }
        return read_run(io, opts, count, prefix, deadline, start).await;
    }
    let payload = Arc::new(vec![0x5au8; opts.block_bytes]);
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..opts.threads.max(1) {
        let io = io.clone();
        let payload = payload.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut lats = Vec::new();
            while Instant::now() < deadline {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let t = Instant::now();
                io.write_full(&object_name(i), &payload).await?;
                lats.push(t.elapsed().as_micros() as u64);
            }
            Ok::<Vec<u64>, RadosError>(lats)
        }));
    }
    let mut lats = Vec::new();
    for t in tasks {
        lats.extend(t.await.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let count = next.load(std::sync::atomic::Ordering::Relaxed).min(lats.len() as u64);
    if opts.cleanup {
        for i in 0..count {
            let _ = io.remove(&object_name(i)).await;
        }
    } else {
        let prefix = object_name(0).trim_end_matches('0').to_string();
        let meta = format!("{count} {prefix} {}", opts.block_bytes);
        io.write_full(BENCH_METADATA, meta.as_bytes()).await.map_err(|e| e.to_string())?;
    }
    Ok(summarize("write", elapsed, lats, opts.block_bytes))
}

async fn read_run(io: Arc<IoCtx>, opts: &BenchOptions, count: u64, prefix: String, deadline: Instant, start: Instant) -> Result<BenchResult, String> {
    let mut tasks = Vec::new();
    for t in 0..opts.threads.max(1) {
        let io = io.clone();
        let prefix = prefix.clone();
        tasks.push(tokio::spawn(async move {
            let mut lats = Vec::new();
            // A cheap per-task generator: reads spread over the objects.
            let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ (t as u64);
            let mut bytes = 0usize;
            while Instant::now() < deadline {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let name = format!("{prefix}{}", x % count);
                let t0 = Instant::now();
                bytes = io.read(&name, 0, 0).await?.len();
                lats.push(t0.elapsed().as_micros() as u64);
            }
            Ok::<(Vec<u64>, usize), RadosError>((lats, bytes))
        }));
    }
    let mut lats = Vec::new();
    let mut block = 0;
    for t in tasks {
        let (l, b) = t.await.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
        lats.extend(l);
        block = block.max(b);
    }
    Ok(summarize("read", start.elapsed().as_secs_f64(), lats, block))
}

fn summarize(mode: &str, seconds: f64, mut lats: Vec<u64>, block_bytes: usize) -> BenchResult {
    lats.sort_unstable();
    let ops = lats.len() as u64;
    let avg = if lats.is_empty() { 0.0 } else { lats.iter().sum::<u64>() as f64 / lats.len() as f64 };
    BenchResult {
        mode: mode.to_string(),
        seconds,
        ops,
        block_bytes,
        iops: ops as f64 / seconds.max(1e-9),
        bandwidth_mib_s: (ops as f64 * block_bytes as f64) / seconds.max(1e-9) / (1 << 20) as f64,
        lat_avg_us: avg,
        lat_p50_us: percentile(&lats, 0.50),
        lat_p99_us: percentile(&lats, 0.99),
        lat_p999_us: percentile(&lats, 0.999),
        lat_max_us: lats.last().copied().unwrap_or(0),
    }
}

/// rados bench's closing lines.
pub fn bench_text(r: &BenchResult) -> String {
    format!(
        "Total time run:         {:.3}\nTotal {}s made:      {}\n{} size:             {}\nBandwidth (MB/sec):     {:.3}\nAverage IOPS:           {:.0}\nAverage Latency(s):     {:.6}\nLatency p50/p99/p99.9(us): {}/{}/{}\nMax latency(s):         {:.6}",
        r.seconds,
        r.mode,
        r.ops,
        if r.mode == "write" { "Write" } else { "Read" },
        r.block_bytes,
        r.bandwidth_mib_s,
        r.iops,
        r.lat_avg_us / 1e6,
        r.lat_p50_us,
        r.lat_p99_us,
        r.lat_p999_us,
        r.lat_max_us as f64 / 1e6
    )
}
