//! `sepia-ec`: encode a file into k + m chunk files, decode it back from any
//! k of them, and benchmark the coder (optionally beside ISA-L).

use clap::{Parser, Subcommand, ValueEnum};
use ec_simd::bench::{self, BenchConfig};
use ec_simd::files;
use ec_simd::{Codec, MatrixKind};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "sepia-ec",
    version,
    about = "Reed-Solomon erasure coding, bit-exact with ISA-L"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum Matrix {
    Rs,
    Cauchy,
}

impl From<Matrix> for MatrixKind {
    fn from(m: Matrix) -> MatrixKind {
        match m {
            Matrix::Rs => MatrixKind::Rs,
            Matrix::Cauchy => MatrixKind::Cauchy,
        }
    }
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Format {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Cmd {
    /// Encode INPUT into OUTDIR/chunk.0 .. chunk.(K+M-1) and OUTDIR/manifest.json.
    Encode {
        #[arg(short, long)]
        k: usize,
        #[arg(short, long)]
        m: usize,
        #[arg(long, value_enum, default_value = "rs")]
        matrix: Matrix,
        /// Bytes per chunk per stripe.
        #[arg(long, default_value_t = 1 << 20)]
        chunk_size: usize,
        input: PathBuf,
        outdir: PathBuf,
    },
    /// Rebuild the input from any K intact chunk files of DIR into OUTPUT.
    Decode { dir: PathBuf, output: PathBuf },
    /// Encode and cached-decode throughput (GB/s of data bytes).
    Bench {
        #[arg(short, long)]
        k: usize,
        #[arg(short, long)]
        m: usize,
        #[arg(long)]
        chunk_size: usize,
        /// Data chunks lost for the decode figure (default: m).
        #[arg(long)]
        erasures: Option<usize>,
        #[arg(long, value_enum, default_value = "rs")]
        matrix: Matrix,
        /// Also measure ISA-L in the same run (needs feature `isal`).
        #[arg(long)]
        vs_isal: bool,
        /// Seconds per measured figure.
        #[arg(long, default_value_t = 1.0)]
        seconds: f64,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        /// Measure every kernel this CPU supports, side by side.
        #[arg(long)]
        all_kernels: bool,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sepia-ec: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    match cli.cmd {
        Cmd::Encode {
            k,
            m,
            matrix,
            chunk_size,
            input,
            outdir,
        } => {
            let codec = Codec::new(k, m, matrix.into())?;
            let man = files::encode_file(&codec, chunk_size, &input, &outdir)?;
            eprintln!(
                "encoded {} bytes as {} stripes of {}+{} x {} bytes ({}, kernel {})",
                man.input_length,
                man.stripes,
                k,
                m,
                chunk_size,
                man.matrix,
                codec.kernel()
            );
        }
        Cmd::Decode { dir, output } => {
            let erased = files::decode_file(&dir, &output)?;
            if erased.is_empty() {
                eprintln!("decoded; all chunks intact");
            } else {
                eprintln!("decoded; rebuilt around lost chunks {erased:?}");
            }
        }
        Cmd::Bench {
            k,
            m,
            chunk_size,
            erasures,
            matrix,
            vs_isal,
            seconds,
            format,
            all_kernels,
        } => {
            if chunk_size == 0 || chunk_size > ec_simd::limits::chunk_bytes_max {
                return Err(format!(
                    "--chunk-size must be 1..={}",
                    ec_simd::limits::chunk_bytes_max
                )
                .into());
            }
            if !(seconds > 0.0 && seconds <= 600.0) {
                return Err("--seconds must be in (0, 600]".into());
            }
            let cfg = BenchConfig {
                k,
                m,
                chunk_bytes: chunk_size,
                erasures: erasures.unwrap_or(m.min(k)),
                matrix: matrix.into(),
                seconds,
                vs_isal,
            };
            if all_kernels {
                for (kernel, e, d) in bench::compare_kernels(&cfg)? {
                    println!(
                        "{:12} encode {e:8.2} GB/s   decode {d:8.2} GB/s",
                        kernel.name()
                    );
                }
                return Ok(());
            }
            let r = bench::run(&cfg)?;
            if format == Format::Json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!(
                    "k={} m={} chunk={} matrix={} kernel={} erasures={}",
                    r.k, r.m, r.chunk_bytes, r.matrix, r.kernel, r.erasures
                );
                print!("encode  {:8.2} GB/s", r.encode_gbps);
                if let (Some(i), Some(x)) = (r.isal_encode_gbps, r.encode_ratio) {
                    print!("   isa-l {i:8.2} GB/s   ratio {x:5.2}x");
                }
                println!();
                print!("decode  {:8.2} GB/s", r.decode_gbps);
                if let (Some(i), Some(x)) = (r.isal_decode_gbps, r.decode_ratio) {
                    print!("   isa-l {i:8.2} GB/s   ratio {x:5.2}x");
                }
                println!();
            }
        }
    }
    Ok(())
}
