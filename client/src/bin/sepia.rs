//! `sepia`: the operator's tool, in the shape of `ceph`:
//! `sepia [-c CONF] [-m ADDRS] [--format json] status | health | osd tree | osd pool create rbd 32 | ...`
//!
//! Admin words go to the monitors as they are; the monitors parse them.

// mimalloc: small, frequent allocations (frames, messages, map updates)
// cost less and do not contend across threads.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Pool for the data commands (`-p rbd put OBJ FILE`).
    #[arg(short = 'p', long = "pool")]
    pool: Option<String>,
    /// Input file whose content becomes the command's last word (`osd new
    /// UUID ID -i params.json`, as with `ceph -i`); `-` reads stdin.
    #[arg(short = 'i', long = "in-file")]
    in_file: Option<String>,
    /// The command words (`osd pool ls`).
    #[arg(required = true, allow_hyphen_values = true)]
    words: Vec<String>,
}

/// The most `-i` reads: the monitors take no longer command word.
const IN_FILE_BYTES_MAX: u64 = 4 << 20;

/// The content of `-i PATH` (`-` is stdin) as one command word: bounded,
/// and text (command words are UTF-8).
fn read_in_file(path: &str) -> Result<String, String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    let reader: Box<dyn Read> = if path == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(path).map_err(|e| format!("-i {path}: {e}"))?)
    };
    reader.take(IN_FILE_BYTES_MAX + 1).read_to_end(&mut bytes).map_err(|e| format!("-i {path}: {e}"))?;
    if bytes.len() as u64 > IN_FILE_BYTES_MAX {
        return Err(format!("-i {path}: larger than {IN_FILE_BYTES_MAX} bytes"));
    }
    let text = String::from_utf8(bytes).map_err(|_| format!("-i {path}: not UTF-8 text"))?;
    Ok(text.trim_end().to_string())
}

/// `sepia cluster up|down|status --dir D [--mons N] [--osds N]`, run here
/// rather than by the monitors.
fn cluster_command(words: &[String]) -> ExitCode {
    use sepia_client::cluster;
    let mut dir = std::path::PathBuf::from("./sepia-cluster");
    let (mut mons, mut osds, mut down_out) = (1usize, 0usize, 600u64);
    let mut name: Option<String> = None;
    let mut it = words.iter().skip(2);
    while let Some(w) = it.next() {
        let mut value = || it.next().cloned().unwrap_or_default();
        match w.as_str() {
            "--dir" => dir = value().into(),
            "--mons" => mons = value().parse().unwrap_or(0),
            "--osds" => osds = value().parse().unwrap_or(usize::MAX),
            "--down-out-interval" => down_out = value().parse().unwrap_or(600),
            other if name.is_none() && !other.starts_with('-') => name = Some(other.to_string()),
            other => {
                eprintln!("sepia cluster: unknown option {other}");
                return ExitCode::from(22);
            }
        }
    }
    let result = match words.get(1).map(String::as_str) {
        Some("up") => cluster::up(&cluster::UpOptions { dir: dir.clone(), mons, osds, down_out_interval_s: down_out }).map(|addrs| {
            println!("cluster up: {} monitor(s) at {}", addrs.len(), addrs.join(","));
            println!("config: {}", dir.join("sepia.conf").display());
            println!("try: sepia -c {} status", dir.join("sepia.conf").display());
        }),
        Some("down") => cluster::down(&dir).map(|n| println!("stopped {n} daemon(s)")),
        Some("status") => cluster::wait_for_quorum(&dir, std::time::Duration::from_secs(5)).map(|()| println!("quorum is up")),
        Some("add-mon") => match &name {
            Some(n) => cluster::add_mon(&dir, n).map(|addr| println!("mon.{n} added at {addr}")),
            None => Err("usage: sepia cluster add-mon --dir DIR NAME".into()),
        },
        Some("rm-mon") => match &name {
            Some(n) => cluster::rm_mon(&dir, n).map(|()| println!("mon.{n} removed")),
            None => Err("usage: sepia cluster rm-mon --dir DIR NAME".into()),
        },
        _ => Err("usage: sepia cluster up|down|status|add-mon|rm-mon --dir DIR [--mons N] [--osds N] [NAME]".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sepia cluster: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    // `sepia ls | head`: a closed pipe ends us quietly, as it ends `ls`.
    // SAFETY: setting a signal disposition before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let mut cli = Cli::parse();
    // `--format json` may come after the command words, as with `ceph`.
    let mut words = Vec::with_capacity(cli.words.len());
    let mut it = std::mem::take(&mut cli.words).into_iter();
    while let Some(w) = it.next() {
        match w.as_str() {
            "--format" | "-f" => cli.format = it.next().unwrap_or_default(),
            _ if w.starts_with("--format=") => cli.format = w["--format=".len()..].to_string(),
            // `-i FILE` may come after the words too (`osd new U 3 -i p.json`).
            "-i" | "--in-file" => cli.in_file = it.next(),
            _ => words.push(w),
        }
    }
    if let Some(path) = &cli.in_file {
        match read_in_file(path) {
            Ok(text) => words.push(text),
            Err(e) => {
                eprintln!("sepia: {e}");
                return ExitCode::from(22);
            }
        }
    }
    cli.words = words;
    if cli.words.first().map(String::as_str) == Some("cluster") {
        return cluster_command(&cli.words);
    }
    let data_command = matches!(cli.words.first().map(String::as_str), Some("put" | "get" | "rm" | "stat" | "ls" | "bench"));
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
    if data_command {
        let secret = match conf.secret_for(&cli.name) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("sepia: {e}");
                return ExitCode::from(13);
            }
        };
        return rt.block_on(data(addrs, &cli.name, secret, cli.pool.clone(), &cli.words, json));
    }
    rt.block_on(async move {
        let secret = match conf.secret_for(&cli.name) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("sepia: {e}");
                return ExitCode::from(13);
            }
        };
        let mut monc = match MonClient::with_secret(addrs, &cli.name, secret) {
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

/// `sepia -p POOL put|get|rm|stat|ls ...` and `sepia bench POOL SECONDS write|read [-t N] [-b BYTES] [--no-cleanup]`.
async fn data(addrs: Vec<String>, name: &str, secret: Option<sepia_proto::auth::key::Secret>, pool: Option<String>, words: &[String], json: bool) -> ExitCode {
    use sepia_client::rados::Rados;
    use sepia_client::tools;
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    let (pool, rest): (String, Vec<&str>) = match (w.as_slice(), pool) {
        (["bench", p, rest @ ..], _) => (p.to_string(), rest.to_vec()),
        ([_, rest @ ..], Some(p)) => (p, rest.to_vec()),
        _ => {
            eprintln!("sepia: give a pool with -p POOL");
            return ExitCode::from(22);
        }
    };
    let rados = match Rados::connect_with_secret(addrs, name, secret).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sepia: {e}");
            return ExitCode::from(110);
        }
    };
    let io = match rados.ioctx(&pool) {
        Ok(io) => io,
        Err(e) => {
            eprintln!("sepia: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match (w[0], rest.as_slice()) {
        ("put", [obj, file]) => tools::put(&io, obj, file).await,
        ("get", [obj, file]) => tools::get(&io, obj, file).await,
        ("rm", objs) if !objs.is_empty() => {
            let mut r = Ok(String::new());
            for o in objs {
                if let Err(e) = io.remove(o).await {
                    r = Err(format!("{o}: {e}"));
                    break;
                }
            }
            r
        }
        ("stat", [obj]) => tools::stat(&io, &pool, obj, json).await,
        ("ls", []) => io.list().await.map(|mut names| {
            names.sort();
            if json {
                serde_json::json!(names).to_string()
            } else {
                names.join("\n")
            }
        }).map_err(|e| e.to_string()),
        ("bench", [secs, mode, flags @ ..]) => {
            let mut opts = tools::BenchOptions { seconds: secs.parse().unwrap_or(10), write: *mode == "write", threads: 16, block_bytes: 4096, cleanup: true };
            let mut it = flags.iter();
            let mut bad = None;
            while let Some(f) = it.next() {
                match *f {
                    "-t" => opts.threads = it.next().and_then(|v| v.parse().ok()).unwrap_or(16),
                    "-b" => opts.block_bytes = it.next().and_then(|v| v.parse().ok()).unwrap_or(4096),
                    "--no-cleanup" => opts.cleanup = false,
                    other => bad = Some(other.to_string()),
                }
            }
            match (bad, *mode) {
                (Some(b), _) => Err(format!("unknown bench option {b}")),
                (None, "write" | "read" | "rand" | "seq") => tools::bench(&io, &opts).await.map(|r| {
                    if json { serde_json::to_string_pretty(&r).unwrap_or_default() } else { tools::bench_text(&r) }
                }),
                (None, m) => Err(format!("bench mode {m}: use write or read")),
            }
        }
        _ => Err("usage: sepia -p POOL put OBJ FILE | get OBJ FILE | rm OBJ... | stat OBJ | ls; sepia bench POOL SECONDS write|read [-t N] [-b BYTES] [--no-cleanup]".into()),
    };
    match result {
        Ok(out) => {
            if !out.is_empty() {
                println!("{out}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sepia: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_file_is_one_bounded_text_word() {
        let dir = std::env::temp_dir().join(format!("sepia-in-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let params = dir.join("params.json");
        std::fs::write(&params, "{\"cephx_secret\": \"AQ==\"}\n").unwrap();
        assert_eq!(read_in_file(params.to_str().unwrap()).unwrap(), "{\"cephx_secret\": \"AQ==\"}");
        let big = dir.join("big");
        std::fs::write(&big, vec![b'x'; IN_FILE_BYTES_MAX as usize + 1]).unwrap();
        assert!(read_in_file(big.to_str().unwrap()).unwrap_err().contains("larger than"));
        let binary = dir.join("binary");
        std::fs::write(&binary, [0xff, 0xfe, 0x00]).unwrap();
        assert!(read_in_file(binary.to_str().unwrap()).unwrap_err().contains("not UTF-8"));
        assert!(read_in_file(dir.join("absent").to_str().unwrap()).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
