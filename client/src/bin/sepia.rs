//! `sepia`: the operator's tool, in the shape of `ceph`:
//! `sepia [-c CONF] [-m ADDRS] [--format json] status | health | osd tree | osd pool create rbd 32 | ...`
//!
//! Admin words go to the monitors as they are; the monitors parse them.

use std::process::ExitCode;

use clap::Parser;
use sepia_client::config::{split_addrs, Config};
use sepia_client::monc::MonClient;

#[derive(Parser)]
#[command(name = "sepia", about = "Sepia cluster administration (ceph-style)", trailing_var_arg = true)]
struct Cli {
    /// Config file (`[global] mon_host = ADDR,...`).
    #[arg(short = 'c', long = "conf")]
    conf: Option<String>,
    /// Monitor addresses, comma separated (overrides the config).
    #[arg(short = 'm', long = "mon-host")]
    mon_host: Option<String>,
    /// Output format.
    #[arg(long = "format", short = 'f', default_value = "plain", value_parser = ["plain", "json", "json-pretty"])]
    format: String,
    /// Who we are.
    #[arg(short = 'n', long = "name", default_value = "client.admin")]
    name: String,
    /// The command words (`osd pool ls`).
    #[arg(required = true, allow_hyphen_values = true)]
    words: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let conf = match cli.conf.as_deref().map(Config::load).transpose() {
        Ok(c) => c.unwrap_or_default(),
        Err(e) => {
            eprintln!("sepia: {e}");
            return ExitCode::from(22);
        }
    };
    let addrs = match &cli.mon_host {
        Some(m) => split_addrs(m),
        None => conf.mon_addrs(),
    };
    let json = cli.format.starts_with("json");
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sepia: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let mut monc = match MonClient::new(addrs, &cli.name) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("sepia: {e}");
                return ExitCode::from(22);
            }
        };
        match monc.command(&cli.words, json).await {
            Ok(r) => {
                if !r.output.is_empty() {
                    println!("{}", r.output.trim_end());
                }
                if !r.status.is_empty() {
                    eprintln!("{}", r.status);
                }
                if r.result == 0 {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(r.result.unsigned_abs().min(255) as u8)
                }
            }
            Err(e) => {
                eprintln!("sepia: {e}");
                ExitCode::from(110)
            }
        }
    })
}
