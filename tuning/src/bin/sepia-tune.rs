//! `sepia-tune`: shows a node's topology, plans shard-to-core placement for
//! its OSDs, and runs the system checklist.
//!
//! Exit codes: 0 success (a `check` with only ok/warn findings included),
//! 1 an error (unreadable topology, impossible plan) or a `check` with a
//! `fail` finding, 2 bad usage.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use sepia_tuning::check::{self, CheckContext, Status};
use sepia_tuning::plan::{self, OsdSpec, Plan, Policy};
use sepia_tuning::sys::SysRoot;
use sepia_tuning::topology::{self, Topology};

#[derive(Parser)]
#[command(
    name = "sepia-tune",
    version,
    about = "Topology, shard plans and system checks for Sepia OSD nodes"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Show packages, NUMA nodes, cores, PUs, caches and I/O devices.
    Topology {
        #[command(flatten)]
        source: Source,
        #[arg(long, value_enum, default_value_t = Format::Plain)]
        format: Format,
    },
    /// Assign each OSD's shards to cores near its device.
    Plan {
        #[command(flatten)]
        plan: PlanArgs,
        #[command(flatten)]
        source: Source,
        #[arg(long, value_enum, default_value_t = Format::Plain)]
        format: Format,
    },
    /// Run the system checklist (io_uring, memlock, governor, THP, ...).
    Check {
        /// Directory on the OSD data path for the O_DIRECT probe.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Plan to compare NIC IRQ affinity and size memlock against.
        #[command(flatten)]
        plan: OptPlanArgs,
        /// Root under which /sys and /proc are read (tests).
        #[arg(long, hide = true, default_value = "/")]
        root: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Plain)]
        format: Format,
    },
}

#[derive(Args)]
struct Source {
    /// Load the topology from an hwloc XML file (`lstopo --of xml`) instead
    /// of discovering this host.
    #[arg(long, value_name = "FILE.xml")]
    topology: Option<PathBuf>,
}

#[derive(Args)]
struct PlanArgs {
    /// OSD devices, `DEVICE` (ids 0, 1, ... in order) or `ID=DEVICE`.
    #[arg(long, num_args = 1.., required = true, value_name = "DEVICE")]
    osds: Vec<String>,
    #[command(flatten)]
    policy: PolicyArgs,
}

#[derive(Args)]
struct OptPlanArgs {
    /// OSD devices (as for `plan`); without them no plan is compared.
    #[arg(long, num_args = 1.., value_name = "DEVICE")]
    osds: Vec<String>,
    #[command(flatten)]
    policy: PolicyArgs,
    #[command(flatten)]
    source: Source,
}

#[derive(Args)]
struct PolicyArgs {
    /// Shards per OSD (default: all free cores, shared evenly).
    #[arg(long)]
    shards_per_osd: Option<usize>,
    /// Cores kept for the OS and NIC (taken near the NIC).
    #[arg(long, default_value_t = 0)]
    reserve_cores: usize,
    /// Allow shards on SMT (hyperthread) siblings.
    #[arg(long)]
    allow_smt: bool,
}

impl PolicyArgs {
    fn policy(&self) -> Policy {
        Policy {
            shards_per_osd: self.shards_per_osd,
            reserve_cores: self.reserve_cores,
            avoid_smt: !self.allow_smt,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Plain,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sepia-tune: {e}");
            ExitCode::from(1)
        }
    }
}

type BoxError = Box<dyn std::error::Error>;

fn load(source: &Source) -> Result<Topology, BoxError> {
    Ok(match &source.topology {
        Some(path) => Topology::from_xml_file(path)?,
        None => Topology::discover()?,
    })
}

/// Parses `--osds`; on a live topology, an OSD given as a path (a data file
/// or directory, a partition node) is resolved to the disk that holds it.
fn osd_specs(devices: &[String], topo: &Topology, live: bool) -> Result<Vec<OsdSpec>, BoxError> {
    let mut specs = plan::parse_osd_specs(devices)?;
    if live {
        for s in &mut specs {
            let path = std::path::Path::new(&s.device);
            if topo.device(&s.device).is_none() && path.is_absolute() {
                if let Some(disk) = topology::block_device_of(&SysRoot::default(), path) {
                    s.device = disk;
                }
            }
        }
    }
    Ok(specs)
}

fn print_json(v: &impl serde::Serialize) -> Result<(), BoxError> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn run(cli: Cli) -> Result<ExitCode, BoxError> {
    match cli.cmd {
        Cmd::Topology { source, format } => {
            let topo = load(&source)?;
            match format {
                Format::Json => print_json(&topo.summary())?,
                Format::Plain => print!("{}", topo.render_text()),
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Plan {
            plan: args,
            source,
            format,
        } => {
            let topo = load(&source)?;
            let osds = osd_specs(&args.osds, &topo, source.topology.is_none())?;
            let p = plan::plan(&topo, &osds, &args.policy.policy())?;
            match format {
                Format::Json => print_json(&p)?,
                Format::Plain => print!("{}", p.render_text()),
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Check {
            data_dir,
            plan: args,
            root,
            format,
        } => {
            let root = SysRoot::new(root);
            let live = root.root() == std::path::Path::new("/");
            // The plan (if any) needs a topology; a fake root has no hwloc
            // view, so only an explicit XML is used there.
            let topo = match (&args.source.topology, live) {
                (Some(_), _) | (None, true) => load(&args.source).ok(),
                (None, false) => None,
            };
            let plan: Option<Plan> = if args.osds.is_empty() {
                None
            } else {
                let topo = topo
                    .as_ref()
                    .ok_or("--osds needs a topology (use --topology)")?;
                let osds = osd_specs(&args.osds, topo, args.source.topology.is_none())?;
                Some(plan::plan(topo, &osds, &args.policy.policy())?)
            };
            let data_dir = data_dir.unwrap_or_else(|| {
                std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/tmp"))
            });
            let ctx = CheckContext {
                root,
                data_dir,
                topology: topo,
                plan,
            };
            let results = check::run_all(&ctx);
            match format {
                Format::Json => print_json(&results)?,
                Format::Plain => print!("{}", check::render_text(&results)),
            }
            if results.iter().any(|c| c.status == Status::Fail) {
                Ok(ExitCode::from(1))
            } else {
                Ok(ExitCode::SUCCESS)
            }
        }
    }
}
