//! `sepia-bench`: Sepia's main job, the benchmark README.md runs first.
//!
//! - `raw`: the raw-disk baseline, our own io_uring loop with O_DIRECT on a
//!   file (4 KiB random O_DSYNC writes and reads at 1 and 32 in flight): the
//!   denominator of every IOPS ratio Sepia reports.
//! - `placement`: CRUSH placement on a 1000-OSD map (5 racks × 8 hosts × 25
//!   OSDs, straw2), scalar and batched SIMD mappers against Ceph's
//!   `crushtool` in the same run, in mappings per second per core.
//! - `store`: one shard's object store against `raw` on the same file.
//! - `cluster` — and no subcommand, the main job: the cluster IOPS
//!   benchmark (a monitor and three OSDs as processes on loopback, data in
//!   files under a temporary folder; pools of size 1 and 3) with `raw` in
//!   the same run, one table with ratios to raw.

// Bounds are named `thing_unit_max`, like the `limits` modules.
#![allow(non_upper_case_globals)]

mod cluster;
mod mon;
mod raw;
mod store;

// mimalloc, as in sepia-osd and sepia: the store cases run the store as the
// OSD does, and the client side as the `sepia` tool does.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use sepia_proto::hello::FrameMode;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use crush_simd::batch::BatchMapper;
use crush_simd::compare::{synthetic_map, time_crushtool, time_mapper};
use crush_simd::tester::{weight_vector, ScalarBatch};
use crush_simd::text;

#[derive(Parser)]
#[command(name = "sepia-bench", about = "Sepia benchmarks: with no subcommand, the cluster IOPS benchmark against the raw device")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Raw io_uring O_DIRECT baseline on a file.
    Raw(RawArgs),
    /// CRUSH placement throughput against crushtool.
    Placement(PlacementArgs),
    /// The object store of one shard against the raw device (same file).
    Store(StoreArgs),
    /// The whole local cluster (monitor + OSD processes on loopback) against
    /// the raw device loop on the same file system.
    Cluster(ClusterArgs),
    /// Three monitors on loopback: commit latency of one map change and
    /// OSD beacons absorbed per second.
    Mon(MonArgs),
}

#[derive(Args)]
struct MonArgs {
    /// Map changes timed one after another.
    #[arg(long, default_value_t = 300)]
    changes: u64,
    /// Seconds of beacons.
    #[arg(long, default_value_t = 5)]
    beacon_seconds: u64,
    /// Connections sending beacons (16 in flight each).
    #[arg(long, default_value_t = 8)]
    connections: usize,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

#[derive(Args, Clone)]
struct ClusterArgs {
    /// Directory for the cluster and the raw file (default: a new folder
    /// under the system temp dir).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Run against this existing cluster instead of starting one (its
    /// conf and admin keyring; OSD CPU is reported when the conf sits in
    /// a `sepia cluster up` folder).
    #[arg(long)]
    conf: Option<PathBuf>,
    /// OSDs to start (one data file each); a size-3 pool needs three.
    #[arg(long, default_value_t = 3)]
    osds: usize,
    /// Seconds per case.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Objects of 4 KiB written to each pool first.
    #[arg(long, default_value_t = 8192)]
    objects: u64,
    /// Run only the cases whose names start with one of these (comma
    /// separated, e.g. `size1.read,raw.read`).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// How connections protect frames: `crc` (Ceph's default: the
    /// connection is authenticated, frames carry a crc32) or `sign` (every
    /// frame also carries a MAC). On an embedded cluster the daemons use it
    /// too; with --conf only the benchmark's client asks for it.
    #[arg(long, default_value = "crc", value_parser = FrameMode::parse)]
    ms_mode: FrameMode,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

#[derive(Args)]
struct StoreArgs {
    /// Directory for the data file (default: the system temp dir).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Size of the data file in MiB.
    #[arg(long, default_value_t = 1024)]
    file_mib: u64,
    /// Seconds per case (each store case wraps its journal several times).
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Objects of 4 KiB the store is filled with first.
    #[arg(long, default_value_t = 65_536)]
    objects: u64,
    /// Journal size in MiB (small, so the journal wraps often).
    #[arg(long, default_value_t = 16)]
    journal_mib: u64,
    /// Microseconds the shard's executor spins before it parks its thread
    /// (Seastar polls; a parked thread waits for the kernel to wake it).
    /// glommio spins only on an executor pinned to a CPU, so a non-zero
    /// value pins the shard to `--core`; the kernel's io_uring workers (the
    /// journal's syncs) then share that CPU with the spinning thread, which
    /// on 2 vCPUs costs depth-1 writes more than spinning saves. 0: unpinned,
    /// park at once.
    #[arg(long, default_value_t = 0)]
    spin_us: u64,
    /// The CPU a spinning shard is pinned to (default: the last CPU this
    /// process may run on).
    #[arg(long)]
    core: Option<usize>,
    /// Storage requests a task may leave queued before the shard submits
    /// them at once instead of between task runs (the OSD's
    /// `--submit-batch`; 0: off). Keeps the device busy while a burst of
    /// completions is processed: depth-32 reads 0.89x -> 1.03x raw.
    #[arg(long, default_value_t = 4)]
    submit_batch: usize,
    /// Run only the cases whose names start with one of these (comma
    /// separated, e.g. `store.read` or `raw.read.qd1,store.read.qd1`).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Format {
    Text,
    Json,
}

#[derive(Args)]
struct RawArgs {
    /// Directory for the data file (default: the system temp dir).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Size of the data file in MiB.
    #[arg(long, default_value_t = 1024)]
    file_mib: u64,
    /// Seconds per case.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

#[derive(Args)]
struct PlacementArgs {
    /// Inputs (PG seeds) mapped per case.
    #[arg(long, default_value_t = 1_000_000)]
    inputs: u32,
    /// Skip the crushtool baseline even if it is installed.
    #[arg(long)]
    no_crushtool: bool,
    /// Time only the batched mapper (for profiling it alone).
    #[arg(long)]
    batched_only: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Raw(args)) => cmd_raw(&args),
        Some(Command::Placement(args)) => cmd_placement(&args),
        Some(Command::Store(args)) => cmd_store(&args),
        Some(Command::Cluster(args)) => cmd_cluster(&args),
        Some(Command::Mon(args)) => cmd_mon(&args),
        None => {
            // The main job: the cluster IOPS benchmark beside the raw device.
            let args = ClusterArgs { dir: None, conf: None, osds: 3, seconds: 10, objects: 8192, only: Vec::new(), ms_mode: FrameMode::Crc, format: Format::Text };
            cmd_cluster(&args)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("sepia-bench: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn cmd_raw(args: &RawArgs) -> Result<(), String> {
    if args.file_mib == 0 || args.seconds == 0 {
        return Err("--file-mib and --seconds must be positive".into());
    }
    let dir = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let path = raw::data_file(&dir);
    let bytes = args.file_mib << 20;
    raw::preallocate(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut rows = Vec::new();
    for (op, depth) in [(raw::Op::Write, 1), (raw::Op::Write, 32), (raw::Op::Read, 1), (raw::Op::Read, 32)] {
        let row = raw::run(&path, bytes, op, depth, Duration::from_secs(args.seconds))
            .map_err(|e| format!("{} ({op:?} at depth {depth}): {e}", path.display()))?;
        rows.push(row);
    }
    let _ = std::fs::remove_file(&path);
    match args.format {
        Format::Json => {
            let out = serde_json::json!({ "file": path.display().to_string(), "file_bytes": bytes, "rows": rows });
            println!("{out}");
        }
        Format::Text => {
            println!("sepia-bench raw: io_uring O_DIRECT 4 KiB random I/O on {} ({} MiB), {} s per case", path.display(), args.file_mib, args.seconds);
            println!("{:<16} {:>10} {:>9} {:>9} {:>9} {:>12}", "case", "IOPS", "p50 us", "p99 us", "p99.9 us", "CPU us/IO");
            for r in &rows {
                println!(
                    "{:<16} {:>10.0} {:>9.1} {:>9.1} {:>9.1} {:>12.2}",
                    r.name, r.iops, r.p50_us, r.p99_us, r.p999_us, r.cpu_us_per_io
                );
            }
        }
    }
    Ok(())
}

fn cmd_store(args: &StoreArgs) -> Result<(), String> {
    if args.file_mib < 64 || args.seconds == 0 || args.objects == 0 || args.journal_mib == 0 {
        return Err("--file-mib >= 64, and --seconds, --objects, --journal-mib positive".into());
    }
    if args.objects * 4096 * 2 > args.file_mib << 20 {
        return Err("--objects x 4 KiB must fit twice in the file (copy-on-write needs room)".into());
    }
    let dir = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let path = dir.join("sepia-store.dat");
    let cfg = store::StoreBenchConfig { file_bytes: args.file_mib << 20, seconds: args.seconds, objects: args.objects, journal_bytes: args.journal_mib << 20, spin_us: args.spin_us, core: args.core, submit_batch: args.submit_batch, only: args.only.clone() };
    let result = store::run(&path, &cfg);
    let _ = std::fs::remove_file(&path);
    let (rows, facts) = result?;
    let find = |n: &str| rows.iter().find(|r| r.name == n).map(|r| r.iops).unwrap_or(0.0);
    let ratio = |a: &str, b: &str| find(a) / find(b).max(1e-9);
    let ratios = serde_json::json!({
        "write_qd1": ratio("store.write.qd1", "raw.write.qd1"),
        "write_qd32": ratio("store.write.qd32", "raw.write.qd32"),
        "read_qd1": ratio("store.read.qd1", "raw.read.qd1"),
        "read_qd32": ratio("store.read.qd32", "raw.read.qd32"),
    });
    match args.format {
        Format::Json => println!("{}", serde_json::json!({ "file": path.display().to_string(), "file_bytes": cfg.file_bytes, "rows": rows, "ratios": ratios, "store": facts })),
        Format::Text => {
            println!("sepia-bench store: 4 KiB random I/O, {} s per case, file {} ({} MiB), {} objects, {} MiB journal, submit batch {}", args.seconds, path.display(), args.file_mib, args.objects, args.journal_mib, args.submit_batch);
            println!("{:<16} {:>10} {:>9} {:>9} {:>9} {:>12}", "case", "IOPS", "p50 us", "p99 us", "p99.9 us", "CPU us/IO");
            for r in &rows {
                println!("{:<16} {:>10.0} {:>9.1} {:>9.1} {:>9.1} {:>12.2}", r.name, r.iops, r.p50_us, r.p99_us, r.p999_us, r.cpu_us_per_io);
            }
            let lat = |a: &str, b: &str| {
                let get = |n: &str| rows.iter().find(|r| r.name == n).map(|r| r.p50_us).unwrap_or(0.0);
                get(a) / get(b).max(1e-9)
            };
            if rows.len() == 8 {
                println!("ratios store/raw: write qd1 {:.2}x, write qd32 {:.2}x, read qd1 {:.2}x, read qd32 {:.2}x; qd1 write p50 latency {:.2}x raw",
                ratio("store.write.qd1", "raw.write.qd1"), ratio("store.write.qd32", "raw.write.qd32"), ratio("store.read.qd1", "raw.read.qd1"), ratio("store.read.qd32", "raw.read.qd32"),
                lat("store.write.qd1", "raw.write.qd1"));
            }
            println!("store: {} full checkpoints, {} deltas (journal wraps), {} group commits for {} transactions, {} bytes of metadata", facts.checkpoints, facts.deltas, facts.commits, facts.txns, facts.metadata_bytes);
        }
    }
    Ok(())
}

fn cmd_cluster(args: &ClusterArgs) -> Result<(), String> {
    if args.osds == 0 || args.seconds == 0 || args.objects == 0 {
        return Err("--osds, --seconds and --objects must be positive".into());
    }
    let dir = args.dir.clone().unwrap_or_else(|| std::env::temp_dir().join(format!("sepia-bench-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    // Raw baseline on the same file system, same run.
    let raw_path = raw::data_file(&dir);
    let raw_bytes = 256u64 << 20;
    raw::preallocate(&raw_path, raw_bytes).map_err(|e| format!("{}: {e}", raw_path.display()))?;
    let mut rows = Vec::new();
    for (op, depth) in [(raw::Op::Write, 1), (raw::Op::Write, 32), (raw::Op::Read, 1), (raw::Op::Read, 32)] {
        if !cluster::wanted(&args.only, &format!("raw.{}.qd{depth}", if op == raw::Op::Write { "write" } else { "read" })) {
            continue;
        }
        eprintln!("sepia-bench: raw {} qd{depth}, {} s", if op == raw::Op::Write { "write" } else { "read" }, args.seconds);
        let r = raw::run(&raw_path, raw_bytes, op, depth, Duration::from_secs(args.seconds)).map_err(|e| format!("raw: {e}"))?;
        rows.push(cluster::ClusterRow {
            name: r.name,
            iops: r.iops,
            p50_us: r.p50_us,
            p99_us: r.p99_us,
            p999_us: r.p999_us,
            osd_cpu_us_per_io: None,
            client_cpu_us_per_io: r.cpu_us_per_io,
            ratio_to_raw: 1.0,
        });
    }
    let _ = std::fs::remove_file(&raw_path);
    if args.conf.is_none() {
        std::env::set_var("SEPIA_DEV_MS_MODE", args.ms_mode.name());
    }
    let cfg = cluster::ClusterBenchConfig { osds: args.osds, seconds: args.seconds, objects: args.objects, pg_num: 32, only: args.only.clone(), frame_mode: args.ms_mode };
    let result = cluster::run(&dir.join("cluster"), args.conf.as_deref(), &cfg);
    let _ = std::fs::remove_dir_all(&dir);
    let measured = result?;
    for mut r in measured {
        // size1.write.qd32 -> raw.write.qd32
        let raw_name = format!("raw.{}", r.name.split_once('.').map_or("", |(_, rest)| rest));
        let raw_iops = rows.iter().find(|x| x.name == raw_name).map_or(0.0, |x| x.iops);
        r.ratio_to_raw = if raw_iops > 0.0 { r.iops / raw_iops } else { 0.0 };
        rows.push(r);
    }
    match args.format {
        Format::Json => println!("{}", serde_json::json!({ "osds": args.osds, "seconds_per_case": args.seconds, "ms_mode": args.ms_mode.name(), "rows": rows })),
        Format::Text => {
            println!("sepia-bench: 4 KiB random I/O, {} s per case; raw = our io_uring O_DIRECT loop (writes O_DSYNC) on the same file system", args.seconds);
            let frames = match args.ms_mode {
                FrameMode::Sign => "every frame MACed",
                FrameMode::Crc => "crc32, after a ticket-authenticated handshake, as Ceph's default",
            };
            println!("sepia-bench: ms_mode = {} (frames: {frames})", args.ms_mode.name());
            println!("{:<18} {:>10} {:>9} {:>9} {:>9} {:>12} {:>12} {:>8}", "case", "IOPS", "p50 us", "p99 us", "p99.9 us", "OSD us/IO", "client us/IO", "x raw");
            for r in &rows {
                let osd = r.osd_cpu_us_per_io.map_or("-".to_string(), |v| format!("{v:.1}"));
                println!(
                    "{:<18} {:>10.0} {:>9.1} {:>9.1} {:>9.1} {:>12} {:>12.1} {:>8.2}",
                    r.name, r.iops, r.p50_us, r.p99_us, r.p999_us, osd, r.client_cpu_us_per_io, r.ratio_to_raw
                );
            }
        }
    }
    Ok(())
}

fn cmd_mon(args: &MonArgs) -> Result<(), String> {
    if args.changes == 0 || args.beacon_seconds == 0 || args.connections == 0 {
        return Err("--changes, --beacon-seconds and --connections must be positive".into());
    }
    let dir = std::env::temp_dir().join(format!("sepia-bench-mon-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let result = mon::run(&dir, args.changes, args.beacon_seconds, args.connections);
    let _ = std::fs::remove_dir_all(&dir);
    let f = result?;
    match args.format {
        Format::Json => println!("{}", serde_json::to_string(&f).map_err(|e| e.to_string())?),
        Format::Text => {
            println!("sepia-bench mon: {} monitors on loopback, Paxos log fsynced on each", f.monitors);
            println!("commit latency of one map change ({} changes, one at a time): p50 {:.2} ms, p99 {:.2} ms", f.changes, f.commit_p50_us / 1000.0, f.commit_p99_us / 1000.0);
            println!("OSD beacons absorbed by the leader: {:.0}/s over {} connections", f.beacons_per_s, f.beacon_connections);
        }
    }
    Ok(())
}

fn cmd_placement(args: &PlacementArgs) -> Result<(), String> {
    if args.inputs == 0 {
        return Err("--inputs must be positive".into());
    }
    let map = synthetic_map(5, 8, 25);
    let weights = weight_vector(&map, &[]);
    let map_file = std::env::temp_dir().join(format!("sepia-bench-{}.txt", std::process::id()));
    let crushtool = !args.no_crushtool
        && std::fs::write(&map_file, text::print(&map)).is_ok()
        && std::process::Command::new("crushtool").arg("--help").output().is_ok();
    println!(
        "sepia-bench placement: CRUSH on 1000 OSDs (5 racks x 8 hosts x 25), {} inputs per case, one core",
        args.inputs
    );
    println!("{:<28} {:>14} {:>14} {:>14} {:>9} {:>9}", "case", "crushtool/s", "scalar/s", "batched/s", "scalar x", "batch x");
    let mut mismatch = false;
    for (rule, num_rep, label) in [(0, 3, "replicated rep 3 (firstn)"), (1, 6, "erasure 4+2 (indep)")] {
        let mut batch = BatchMapper::new(&map);
        let (batched, batch_sum) = time_mapper(&mut batch, rule, num_rep, args.inputs, &weights);
        let (scalar, scalar_sum) = if args.batched_only {
            (f64::NAN, batch_sum)
        } else {
            time_mapper(&mut ScalarBatch::new(&map), rule, num_rep, args.inputs, &weights)
        };
        mismatch |= scalar_sum != batch_sum;
        let base = if crushtool {
            match time_crushtool(&map_file, rule, num_rep as i32, args.inputs) {
                Ok(rate) => Some(rate),
                Err(e) => {
                    eprintln!("sepia-bench: crushtool baseline unavailable: {e}");
                    None
                }
            }
        } else {
            None
        };
        let ratio = |v: f64| base.map_or("-".to_string(), |b| format!("{:.2}", v / b));
        println!(
            "{:<28} {:>14} {:>14.0} {:>14.0} {:>9} {:>9}",
            label,
            base.map_or("-".to_string(), |b| format!("{b:.0}")),
            scalar,
            batched,
            ratio(scalar),
            ratio(batched)
        );
        if rule == 1 {
            println!("(batched kernel: {})", batch.kernel_name());
        }
    }
    let _ = std::fs::remove_file(&map_file);
    if mismatch {
        return Err("batched and scalar placements differ: this is a bug".into());
    }
    Ok(())
}
