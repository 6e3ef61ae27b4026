//! `sepia-crush`: the operator's CRUSH tool.
//!
//! - `test`: `crushtool --test` with the same flags and output lines;
//! - `decompile`: parse a text map and print it back normalized;
//! - `bench`: mappings per second of Sepia's mappers, optionally beside
//!   Ceph's `crushtool` on the same map, rule, num-rep and inputs.
//!
//! Every error (unreadable file, malformed map, bad flag) goes to stderr
//! with a non-zero exit; nothing here panics on input.

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use crush_simd::batch::BatchMapper;
use crush_simd::tester::{self, ScalarBatch, TestOptions};
use crush_simd::{compare, limits, text, CrushMap};

#[derive(Parser)]
#[command(name = "sepia-crush", version, about = "CRUSH maps: test placements like crushtool, decompile, benchmark")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Map inputs like `crushtool --test` and print the same lines.
    Test(TestArgs),
    /// Parse a text map and print it back as `crushtool -d` would.
    Decompile {
        /// The text map.
        #[arg(short = 'i', long = "infn")]
        input: PathBuf,
    },
    /// Mappings per second of the scalar and batched mappers (and crushtool).
    Bench(BenchArgs),
}

#[derive(Args)]
struct TestArgs {
    /// The text map (`crushtool -d` format).
    #[arg(short = 'i', long = "infn")]
    input: PathBuf,
    /// Accepted for crushtool compatibility; `test` always tests.
    #[arg(long = "test", hide = true)]
    _test: bool,
    #[arg(long, allow_negative_numbers = true)]
    rule: Option<i32>,
    #[arg(long = "num-rep", allow_negative_numbers = true)]
    num_rep: Option<i32>,
    #[arg(long = "min-rep", allow_negative_numbers = true)]
    min_rep: Option<i32>,
    #[arg(long = "max-rep", allow_negative_numbers = true)]
    max_rep: Option<i32>,
    #[arg(long = "min-x", allow_negative_numbers = true)]
    min_x: Option<i64>,
    #[arg(long = "max-x", allow_negative_numbers = true)]
    max_x: Option<i64>,
    #[arg(long = "pool-id", allow_negative_numbers = true)]
    pool_id: Option<i64>,
    /// `--weight DEV W`: test-time reweight of device DEV to W (0..1).
    #[arg(long = "weight", num_args = 2, value_names = ["DEV", "W"], action = clap::ArgAction::Append, allow_negative_numbers = true)]
    weight: Vec<String>,
    #[arg(long = "show-mappings")]
    show_mappings: bool,
    #[arg(long = "show-statistics")]
    show_statistics: bool,
    #[arg(long = "show-utilization")]
    show_utilization: bool,
    #[arg(long = "show-utilization-all")]
    show_utilization_all: bool,
    #[arg(long = "show-bad-mappings")]
    show_bad_mappings: bool,
    #[arg(long = "show-choose-tries")]
    show_choose_tries: bool,
    /// Use the scalar oracle instead of the batched mapper.
    #[arg(long)]
    scalar: bool,
}

#[derive(Args)]
struct BenchArgs {
    /// The text map.
    map: PathBuf,
    #[arg(long, default_value_t = 0)]
    rule: i32,
    #[arg(long = "num-rep", default_value_t = 3)]
    num_rep: i32,
    /// Inputs to map (x = 0..inputs).
    #[arg(long, default_value_t = 1_000_000)]
    inputs: u32,
    /// Also time Ceph's `crushtool --test --show-statistics` on the same
    /// map (compiled with `crushtool -c`) and print the ratios.
    #[arg(long = "vs-crushtool")]
    vs_crushtool: bool,
    /// Time each side this many times (rounds interleaved) and report the
    /// best of each: on a shared machine the fastest run is the least
    /// disturbed one.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    repeat: u32,
    /// Time only the batched mapper (for profiling it); its results are
    /// then not checked against the scalar mapper's.
    #[arg(long = "skip-scalar")]
    skip_scalar: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Test(args) => cmd_test(args),
        Command::Decompile { input } => load_map(&input).map(|map| print!("{}", text::print(&map))),
        Command::Bench(args) => cmd_bench(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("sepia-crush: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn load_map(path: &Path) -> Result<CrushMap, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.len() > limits::map_text_bytes_max as u64 {
        return Err(format!("{}: map is larger than {} bytes", path.display(), limits::map_text_bytes_max));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    // Ceph's binary maps start with CRUSH_MAGIC 0x00010000 (little endian).
    if bytes.starts_with(&[0x00, 0x00, 0x01, 0x00]) {
        return Err(format!(
            "{}: this is a compiled (binary) map; decompile it with `crushtool -d` first",
            path.display()
        ));
    }
    let text = String::from_utf8(bytes).map_err(|e| format!("{}: not UTF-8 text: {e}", path.display()))?;
    text::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn cmd_test(args: TestArgs) -> Result<(), String> {
    let map = load_map(&args.input)?;
    let mut weights = Vec::new();
    for pair in args.weight.chunks(2) {
        let dev: i64 = pair[0].parse().map_err(|_| format!("--weight: bad device id '{}'", pair[0]))?;
        // crushtool uses atof: garbage parses as 0.
        let w: f32 = pair.get(1).and_then(|w| w.parse().ok()).unwrap_or(0.0);
        weights.push((dev, w));
    }
    let opts = TestOptions {
        rule: args.rule,
        min_rep: args.num_rep.or(args.min_rep),
        max_rep: args.num_rep.or(args.max_rep),
        min_x: args.min_x,
        max_x: args.max_x,
        weights,
        pool_id: args.pool_id,
        show_mappings: args.show_mappings,
        show_statistics: args.show_statistics,
        show_utilization: args.show_utilization,
        show_utilization_all: args.show_utilization_all,
        show_bad_mappings: args.show_bad_mappings,
        show_choose_tries: args.show_choose_tries,
    };
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut err = io::stderr();
    let result = if args.scalar || args.show_choose_tries {
        let mut scalar = ScalarBatch::new(&map);
        if args.show_choose_tries {
            scalar.enable_choose_tries();
        }
        tester::run(&map, &opts, &mut scalar, &mut out, &mut err)
    } else {
        let mut batch = BatchMapper::new(&map);
        tester::run(&map, &opts, &mut batch, &mut out, &mut err)
    };
    result.and_then(|()| out.flush()).map_err(|e| format!("writing output: {e}"))
}

fn cmd_bench(args: BenchArgs) -> Result<(), String> {
    let map = load_map(&args.map)?;
    if map.rule(args.rule).is_none() {
        return Err(format!("rule {} does not exist", args.rule));
    }
    if args.num_rep <= 0 || args.num_rep as usize > limits::result_max {
        return Err(format!("--num-rep must be in 1..={}", limits::result_max));
    }
    let weights = tester::weight_vector(&map, &[]);
    let nr = args.num_rep as usize;
    let mut scalar = ScalarBatch::new(&map);
    let mut batch = BatchMapper::new(&map);
    let (mut scalar_rate, mut batch_rate, mut crushtool_rate) = (0f64, 0f64, 0f64);
    let (mut scalar_sum, mut batch_sum) = (0, 0);
    for _ in 0..args.repeat {
        if !args.skip_scalar {
            let (rate, sum) = compare::time_mapper(&mut scalar, args.rule, nr, args.inputs, &weights);
            (scalar_rate, scalar_sum) = (scalar_rate.max(rate), sum);
        }
        let (rate, sum) = compare::time_mapper(&mut batch, args.rule, nr, args.inputs, &weights);
        (batch_rate, batch_sum) = (batch_rate.max(rate), sum);
        if args.vs_crushtool {
            crushtool_rate = crushtool_rate.max(compare::time_crushtool(&args.map, args.rule, args.num_rep, args.inputs)?);
        }
    }
    println!(
        "map {} rule {} num_rep {} inputs {} (single core, kernel {}, best of {})",
        args.map.display(),
        args.rule,
        args.num_rep,
        args.inputs,
        batch.kernel_name(),
        args.repeat
    );
    if !args.skip_scalar {
        println!("sepia scalar : {:>12.0} mappings/s", scalar_rate);
    }
    println!("sepia batched: {:>12.0} mappings/s", batch_rate);
    if args.vs_crushtool {
        println!("crushtool    : {:>12.0} mappings/s", crushtool_rate);
        if !args.skip_scalar {
            println!("ratio scalar/crushtool : {:.2}x", scalar_rate / crushtool_rate);
        }
        println!("ratio batched/crushtool: {:.2}x", batch_rate / crushtool_rate);
    }
    if !args.skip_scalar && scalar_sum != batch_sum {
        return Err("batched and scalar mappers disagree: this is a bug".into());
    }
    Ok(())
}

