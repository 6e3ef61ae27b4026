//! `sepia-bench`: Sepia's main job, the benchmark README.md runs first.
//!
//! What it measures today is the part of the data path that exists: CRUSH
//! placement, the work every client does per op and every OSD does for every
//! PG on each map change. On a 1000-OSD map (5 racks × 8 hosts × 25 OSDs,
//! straw2) it maps inputs with the scalar mapper and the batched SIMD mapper
//! and, in the same run, with Ceph's `crushtool` (the baseline), and prints
//! mappings per second per core and the ratios.
//!
//! The cluster IOPS benchmark (embedded monitors and OSDs on loopback, data
//! in files under a temporary folder, raw io_uring on the same file as the
//! baseline) becomes the default mode when the OSD and client land (#7).

use std::process::ExitCode;

use clap::Parser;
use crush_simd::batch::BatchMapper;
use crush_simd::compare::{synthetic_map, time_crushtool, time_mapper};
use crush_simd::tester::{weight_vector, ScalarBatch};
use crush_simd::text;

#[derive(Parser)]
#[command(name = "sepia-bench", about = "Sepia benchmarks: placement today, cluster IOPS with #7")]
struct Cli {
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
    if cli.inputs == 0 {
        eprintln!("sepia-bench: --inputs must be positive");
        return ExitCode::FAILURE;
    }
    let map = synthetic_map(5, 8, 25);
    let weights = weight_vector(&map, &[]);
    let map_file = std::env::temp_dir().join(format!("sepia-bench-{}.txt", std::process::id()));
    let crushtool = !cli.no_crushtool
        && std::fs::write(&map_file, text::print(&map)).is_ok()
        && std::process::Command::new("crushtool").arg("--help").output().is_ok();
    println!("sepia-bench: CRUSH placement, 1000 OSDs (5 racks x 8 hosts x 25), {} inputs per case, one core", cli.inputs);
    println!("{:<28} {:>14} {:>14} {:>14} {:>9} {:>9}", "case", "crushtool/s", "scalar/s", "batched/s", "scalar x", "batch x");
    let mut failed = false;
    for (rule, num_rep, label) in [(0, 3, "replicated rep 3 (firstn)"), (1, 6, "erasure 4+2 (indep)")] {
        let mut batch = BatchMapper::new(&map);
        let (batched, batch_sum) = time_mapper(&mut batch, rule, num_rep, cli.inputs, &weights);
        let (scalar, scalar_sum) = if cli.batched_only {
            (f64::NAN, batch_sum)
        } else {
            time_mapper(&mut ScalarBatch::new(&map), rule, num_rep, cli.inputs, &weights)
        };
        if scalar_sum != batch_sum {
            eprintln!("sepia-bench: batched and scalar placements differ for rule {rule}: a bug");
            failed = true;
        }
        let base = if crushtool {
            match time_crushtool(&map_file, rule, num_rep as i32, cli.inputs) {
                Ok(rate) => Some(rate),
                Err(e) => {
                    eprintln!("sepia-bench: crushtool baseline unavailable: {e}");
                    None
                }
            }
        } else {
            None
        };
        let fmt_ratio = |v: f64| base.map_or("-".to_string(), |b| format!("{:.2}", v / b));
        println!(
            "{:<28} {:>14} {:>14.0} {:>14.0} {:>9} {:>9}",
            label,
            base.map_or("-".to_string(), |b| format!("{b:.0}")),
            scalar,
            batched,
            fmt_ratio(scalar),
            fmt_ratio(batched)
        );
        if rule == 1 {
            println!("(batched kernel: {})", batch.kernel_name());
        }
    }
    let _ = std::fs::remove_file(&map_file);
    println!("cluster IOPS benchmark: not built yet (needs the OSD, monitor and client of issue #7)");
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
