//! `sepia cluster up|down|status`: a local development cluster on loopback,
//! like Ceph's vstart — monitors (and later OSDs) as real processes with
//! their data under one directory.
//!
//! Layout of `DIR`: `sepia.conf` (fsid, `mon_host`, names), `keyring`
//! (client.admin), `mon.NAME/` (each monitor's store), `data/osd.N/` (an
//! OSD's `block` data file and its own `keyring`, as Ceph lays out
//! `/var/lib/ceph/osd/ceph-N`), `out/*.log`, `run/*.pid`.
//!
//! Every OSD has its own key (Ceph's model): the launcher creates it with
//! the OSD (`osd new UUID N {"cephx_secret": KEY}` through the monitors,
//! which gives `osd.N` Ceph's OSD caps) and writes it to the OSD's
//! keyring; the OSD authenticates as `osd.N` with it. `up` on a folder
//! that already holds a cluster starts that cluster again.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::config::Config;

/// Monitor names in rank order, as Ceph's vstart names them.
const MON_NAMES: [&str; 7] = ["a", "b", "c", "d", "e", "f", "g"];

#[derive(Debug, Clone)]
pub struct UpOptions {
    pub dir: PathBuf,
    pub mons: usize,
    pub osds: usize,
    /// OSDs down for this long are marked out.
    pub down_out_interval_s: u64,
}

/// A sibling binary of the running one (`sepia-mon` next to `sepia`), or
/// the one `CARGO_BIN_EXE_<name>` names (tests).
pub fn sibling_binary(name: &str) -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os(format!("CARGO_BIN_EXE_{name}")) {
        return Ok(PathBuf::from(path));
    }
    let me = std::env::current_exe().map_err(|e| format!("cannot find my own binary: {e}"))?;
    let dir = me.parent().ok_or("binary has no directory")?;
    // Tests run from target/debug/deps; the binaries sit one level up.
    for candidate in [dir.join(name), dir.join("..").join(name)] {
        if candidate.exists() {
            return Ok(candidate);
        }
    }
    Err(format!("{name} not found next to {} (build it: cargo build --bin {name})", me.display()))
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

/// A new secret in Ceph's keyring form.
fn new_key() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as u32);
    sepia_proto::auth::key::Secret::generate(now).to_keyring_string()
}

/// Writes the config and admin keyring, starts the monitors and the
/// OSDs; returns the monitor addresses once a quorum answers (and the
/// OSDs are up). A folder that holds a cluster already is started again.
pub fn up(opts: &UpOptions) -> Result<Vec<String>, String> {
    if opts.mons == 0 || opts.mons > MON_NAMES.len() || opts.mons.is_multiple_of(2) {
        return Err(format!("--mons must be 1, 3, 5 or 7 (got {})", opts.mons));
    }
    if opts.osds > DEV_OSDS_MAX {
        return Err(format!("at most {DEV_OSDS_MAX} OSDs in a dev cluster"));
    }
    let dir = &opts.dir;
    if dir.join("sepia.conf").exists() {
        return up_again(opts);
    }
    for sub in ["out", "run"] {
        std::fs::create_dir_all(dir.join(sub)).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let mut addrs = Vec::new();
    for _ in 0..opts.mons {
        addrs.push(format!("127.0.0.1:{}", free_port()?));
    }
    let names: Vec<&str> = MON_NAMES[..opts.mons].to_vec();
    let keyring = dir.join("keyring");
    let conf = format!(
        "[global]\nfsid = {}\nmon_host = {}\nmon_initial_members = {}\nkeyring = {}\nauth_required = true\nosd_crush_chooseleaf_type = 0\nmon_osd_down_out_interval = {}\n",
        sepia_proto::uuid::format(&sepia_proto::uuid::random()),
        addrs.join(","),
        names.join(","),
        keyring.display(),
        opts.down_out_interval_s,
    );
    // How connections protect frames (`crc` or `sign`), for benchmarks that
    // compare the two; the default is crc, as in Ceph.
    let conf = match std::env::var("SEPIA_DEV_MS_MODE") {
        Ok(mode) => {
            let mode = sepia_proto::hello::FrameMode::parse(&mode).map_err(|e| format!("SEPIA_DEV_MS_MODE: {e}"))?;
            format!("{conf}ms_mode = {}\n", mode.name())
        }
        Err(_) => conf,
    };
    std::fs::write(dir.join("sepia.conf"), conf).map_err(|e| e.to_string())?;
    let admin = format!(
        "[client.admin]\n\tkey = {}\n\tcaps mon = \"allow *\"\n\tcaps osd = \"allow *\"\n\tcaps mgr = \"allow *\"\n",
        new_key()
    );
    std::fs::write(&keyring, admin).map_err(|e| e.to_string())?;
    for name in &names {
        spawn_mon(dir, name, true, false)?;
    }
    wait_for_quorum(dir, Duration::from_secs(30))?;
    if opts.osds > 0 {
        std::fs::create_dir_all(dir.join("data")).map_err(|e| e.to_string())?;
        for id in 0..opts.osds {
            start_osd(dir, id as i32)?;
        }
        wait_for_osds_up(dir, opts.osds, Duration::from_secs(60))?;
    }
    Ok(addrs)
}

/// OSDs a dev cluster may have.
const DEV_OSDS_MAX: usize = 64;

/// `up` on a folder that holds a cluster: starts every monitor of its
/// config and every OSD under `data/` that is not running, plus new OSDs
/// up to `opts.osds`.
fn up_again(opts: &UpOptions) -> Result<Vec<String>, String> {
    let dir = &opts.dir;
    let conf = Config::load(&dir.join("sepia.conf").to_string_lossy())?;
    let names: Vec<String> = conf.get("global", "mon_initial_members").unwrap_or("").split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
    for sub in ["out", "run", "data"] {
        std::fs::create_dir_all(dir.join(sub)).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    for name in &names {
        if !running(dir, &format!("mon.{name}")) {
            start_mon(dir, name)?;
        }
    }
    wait_for_quorum(dir, Duration::from_secs(30))?;
    let mut ids: std::collections::BTreeSet<i32> = (0..opts.osds as i32).collect();
    let entries = std::fs::read_dir(dir.join("data")).map_err(|e| format!("{}: {e}", dir.join("data").display()))?;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if let Some(id) = name.strip_prefix("osd.").and_then(|n| n.parse::<i32>().ok()) {
            ids.insert(id);
        }
    }
    if ids.len() > DEV_OSDS_MAX {
        return Err(format!("at most {DEV_OSDS_MAX} OSDs in a dev cluster"));
    }
    for &id in &ids {
        if !running(dir, &format!("osd.{id}")) {
            start_osd(dir, id)?;
        }
    }
    if !ids.is_empty() {
        wait_for_osds_up(dir, ids.len(), Duration::from_secs(60))?;
    }
    Ok(conf.mon_addrs())
}

/// True if the daemon `who` (`osd.0`) of the cluster in `dir` runs: its pid
/// file names a live process.
fn running(dir: &Path, who: &str) -> bool {
    let Ok(text) = std::fs::read_to_string(dir.join("run").join(format!("{who}.pid"))) else { return false };
    let Ok(pid) = text.trim().parse::<u32>() else { return false };
    Command::new("kill").arg("-0").arg(pid.to_string()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// Ceph's caps for an OSD's own key, as the monitors' `osd new` gives them
/// (used when an OSD of an older dev cluster gets its key).
const OSD_CAPS: [(&str, &str); 3] = [("mgr", "allow profile osd"), ("mon", "allow profile osd"), ("osd", "allow *")];

/// Where OSD `id` of the cluster in `dir` keeps its data and its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsdPaths {
    pub data: PathBuf,
    pub keyring: PathBuf,
}

/// `data/osd.ID/block` and `data/osd.ID/keyring` (the folder is made
/// here). A `data/osd.ID` that is not a folder — the data file of a dev
/// cluster made before per-OSD keys, or a block device linked there — is
/// the data itself, and the key goes to `data/osd.ID.keyring`.
pub fn osd_paths(dir: &Path, id: i32) -> Result<OsdPaths, String> {
    let base = dir.join("data").join(format!("osd.{id}"));
    if base.exists() && !base.is_dir() {
        return Ok(OsdPaths { data: base.clone(), keyring: dir.join("data").join(format!("osd.{id}.keyring")) });
    }
    std::fs::create_dir_all(&base).map_err(|e| format!("{}: {e}", base.display()))?;
    Ok(OsdPaths { data: base.join("block"), keyring: base.join("keyring") })
}

/// Gives OSD `id` its own key and writes it to `keyring`: a new OSD is
/// created with it (`osd new UUID ID {"cephx_secret": KEY}`, Ceph's way,
/// which also gives `osd.ID` the OSD caps); an OSD the map has already (a
/// cluster made before per-OSD keys) gets `osd.ID` by `auth get-or-create`.
fn provision_osd_key(dir: &Path, id: i32, keyring: &Path) -> Result<(), String> {
    let entity = format!("osd.{id}");
    let dump = admin_reply(dir, &["osd", "dump"], true)?;
    let v: serde_json::Value = serde_json::from_str(&dump.output).map_err(|e| format!("osd dump: {e}"))?;
    let exists = v["osds"].as_array().is_some_and(|osds| osds.iter().any(|o| o["osd"].as_i64() == Some(id as i64)));
    let text = if exists {
        match admin(dir, &["auth", "get", &entity]) {
            Ok(text) => text,
            Err(_) => {
                let mut args = vec!["auth", "get-or-create", entity.as_str()];
                for (service, caps) in OSD_CAPS {
                    args.extend([service, caps]);
                }
                admin(dir, &args)?
            }
        }
    } else {
        let key = new_key();
        let uuid = sepia_proto::uuid::format(&sepia_proto::uuid::random());
        let params = serde_json::json!({ "cephx_secret": key }).to_string();
        admin(dir, &["osd", "new", &uuid, &id.to_string(), &params])?;
        admin(dir, &["auth", "get", &entity])?
    };
    // Only our entity goes into the OSD's keyring (Ceph's format).
    let ring = sepia_proto::auth::keyring::Keyring::parse(&text).map_err(|e| format!("auth get {entity}: {e}"))?;
    let name = sepia_proto::auth::entity::EntityName::parse(&entity).map_err(|e| e.to_string())?;
    let own = ring.get(&name).ok_or_else(|| format!("the monitors returned no key for {entity}"))?;
    let mut mine = sepia_proto::auth::keyring::Keyring::default();
    mine.entries.insert(name, own.clone());
    write_synced(keyring, mine.print().as_bytes())
}

/// Writes `path` (owner-only) whole or not at all: a temporary file,
/// fsync, rename.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    // A keyring is readable by its owner only, as Ceph writes them.
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

/// A dev cluster that is stopped and deleted when dropped (tests, benches).
pub struct Guard {
    pub dir: PathBuf,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = down(&self.dir);
        // A failing test shows what its daemons said (CI keeps only
        // output), then the folder goes like any other.
        if std::thread::panicking() {
            print_log_tails(&self.dir, 40);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The last `lines` lines of every daemon log under `dir/out`, to stderr.
pub fn print_log_tails(dir: &Path, lines: usize) {
    let Ok(entries) = std::fs::read_dir(dir.join("out")) else { return };
    let mut logs: Vec<PathBuf> = entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "log")).collect();
    logs.sort();
    for log in logs {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        eprintln!("---- last {} lines of {} ----", lines.min(all.len()), log.display());
        for l in &all[all.len().saturating_sub(lines)..] {
            eprintln!("{l}");
        }
    }
}

/// The newest PG state summary OSD `osd` logged (`osd.N shard S pgs:
/// active+clean=8 ...`; empty if none yet).
pub fn pg_summary(dir: &Path, osd: i32) -> String {
    let log = std::fs::read_to_string(dir.join("out").join(format!("osd.{osd}.log"))).unwrap_or_default();
    log.lines().rev().find(|l| l.contains(" pgs: ")).unwrap_or("").to_string()
}

/// True when a summary shows every PG active with nothing to recover.
pub fn pgs_settled(summary: &str) -> bool {
    !summary.is_empty() && ["recovering", "undersized", "peering", "down", "incomplete"].iter().all(|w| !summary.contains(w))
}

/// Size of each dev-cluster OSD's data file: small, so tests running side
/// by side stay light. `SEPIA_DEV_OSD_MIB` overrides it (benchmarks want
/// a journal and checkpoint slots big enough to be representative).
const DEV_OSD_MIB: u64 = 256;

/// Bounds for `SEPIA_DEV_OSD_MIB`: a region needs room for its journal and
/// checkpoints; 64 GiB is more than a dev cluster should take by accident.
const DEV_OSD_MIB_RANGE: std::ops::RangeInclusive<u64> = 64..=65_536;

fn dev_osd_mib() -> Result<u64, String> {
    match std::env::var("SEPIA_DEV_OSD_MIB") {
        Err(_) => Ok(DEV_OSD_MIB),
        Ok(v) => match v.trim().parse::<u64>() {
            Ok(n) if DEV_OSD_MIB_RANGE.contains(&n) => Ok(n),
            _ => Err(format!("SEPIA_DEV_OSD_MIB={v}: want a number of MiB in {DEV_OSD_MIB_RANGE:?}")),
        },
    }
}

/// Starts (or restarts) OSD `id` of the cluster in `dir` (paths from
/// [`osd_paths`]); an OSD without a keyring gets its own key first
/// (created with the OSD when the map does not have it yet).
pub fn start_osd(dir: &Path, id: i32) -> Result<u32, String> {
    start_osd_with_shards(dir, id, None)
}

/// [`start_osd`], and a new OSD gets `shards` shards (its store keeps the
/// count it was formatted with; `None`: sepia-osd's default of one).
pub fn start_osd_with_shards(dir: &Path, id: i32, shards: Option<u32>) -> Result<u32, String> {
    let bin = sibling_binary("sepia-osd")?;
    let paths = osd_paths(dir, id)?;
    if !paths.keyring.exists() {
        provision_osd_key(dir, id, &paths.keyring)?;
    }
    let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("out").join(format!("osd.{id}.log"))).map_err(|e| e.to_string())?;
    let child = Command::new(bin)
        .arg("--id")
        .arg(id.to_string())
        .arg("--data")
        .arg(&paths.data)
        .arg("--keyring")
        .arg(&paths.keyring)
        .arg("-c")
        .arg(dir.join("sepia.conf"))
        .arg("--size-mib")
        .arg(dev_osd_mib()?.to_string())
        .args(shards.map(|n| ["--shards".to_string(), n.to_string()]).into_iter().flatten())
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start sepia-osd: {e}"))?;
    let pid = child.id();
    std::fs::write(dir.join("run").join(format!("osd.{id}.pid")), pid.to_string()).map_err(|e| e.to_string())?;
    std::mem::forget(child);
    Ok(pid)
}

/// Waits until at least `count` OSDs are up in the map.
pub fn wait_for_osds_up(dir: &Path, count: usize, timeout: Duration) -> Result<(), String> {
    let conf = Config::load(&dir.join("sepia.conf").to_string_lossy())?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < timeout {
        let up = rt.block_on(async {
            let mut monc = crate::monc::MonClient::from_conf(&conf, "client.admin")?;
            let r = monc.command(&["osd".to_string(), "stat".to_string()], true).await.map_err(|e| e.to_string())?;
            let v: serde_json::Value = serde_json::from_str(&r.output).map_err(|e| e.to_string())?;
            Ok::<u64, String>(v["num_up_osds"].as_u64().unwrap_or(0))
        });
        match up {
            Ok(n) if n as usize >= count => return Ok(()),
            Ok(n) => last = format!("{n} of {count} OSDs up"),
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(format!("OSDs not up after {timeout:?}: {last}"))
}

/// Starts (or restarts) monitor `name` of the cluster in `dir`.
pub fn start_mon(dir: &Path, name: &str) -> Result<u32, String> {
    spawn_mon(dir, name, false, false)
}

/// Runs one admin command through the monitors of the cluster in `dir`.
fn admin(dir: &Path, args: &[&str]) -> Result<String, String> {
    admin_reply(dir, args, false).map(|r| r.output)
}

/// One admin command as `client.admin`; a refusal is an error.
fn admin_reply(dir: &Path, args: &[&str], json: bool) -> Result<sepia_proto::msg::CommandReply, String> {
    let conf = Config::load(&dir.join("sepia.conf").to_string_lossy())?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let r = rt.block_on(async {
        let mut monc = crate::monc::MonClient::from_conf(&conf, "client.admin")?;
        monc.command(&args.iter().map(|a| a.to_string()).collect::<Vec<_>>(), json).await.map_err(|e| e.to_string())
    })?;
    if r.result != 0 {
        // The parameters of `osd new` hold a secret: not in messages.
        let shown: Vec<&str> = args.iter().map(|a| if a.starts_with('{') { "{...}" } else { a }).collect();
        return Err(format!("{}: {}", shown.join(" "), r.status));
    }
    Ok(r)
}

/// Rewrites the config's monitor list (`mon_host`, `mon_initial_members`)
/// as `f` edits the (name, address) pairs, so clients find the members.
fn edit_conf_mons(dir: &Path, f: impl FnOnce(&mut Vec<(String, String)>)) -> Result<(), String> {
    let path = dir.join("sepia.conf");
    let conf = Config::load(&path.to_string_lossy())?;
    let names: Vec<String> = conf.get("global", "mon_initial_members").unwrap_or("").split(',').filter(|s| !s.is_empty()).map(String::from).collect();
    let mut mons: Vec<(String, String)> = names.into_iter().zip(conf.mon_addrs()).collect();
    f(&mut mons);
    let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
    let hosts = mons.iter().map(|(_, a)| a.as_str()).collect::<Vec<_>>().join(",");
    let names = mons.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(",");
    let out: Vec<String> = text
        .lines()
        .map(|l| match l.split_once('=').map(|(k, _)| k.trim()) {
            Some("mon_host") => format!("mon_host = {hosts}"),
            Some("mon_initial_members") => format!("mon_initial_members = {names}"),
            _ => l.to_string(),
        })
        .collect();
    std::fs::write(&path, out.join("\n") + "\n").map_err(|e| e.to_string())
}

/// Adds monitor `name` to the running cluster in `dir`: a free loopback
/// port, `mon add NAME ADDR` through the quorum (a Paxos reconfiguration),
/// the config updated, and the monitor started with a new store that
/// catches up from the others. A monitor whose store was lost is removed
/// (`rm_mon`) and its old store deleted first: it rejoins as a new member.
pub fn add_mon(dir: &Path, name: &str) -> Result<String, String> {
    let data = dir.join(format!("mon.{name}"));
    if data.exists() {
        return Err(format!("{} exists: a monitor joins with a new store", data.display()));
    }
    let addr = format!("127.0.0.1:{}", free_port()?);
    admin(dir, &["mon", "add", name, &addr])?;
    edit_conf_mons(dir, |mons| {
        mons.retain(|(n, _)| n != name);
        mons.push((name.to_string(), addr.clone()));
    })?;
    spawn_mon(dir, name, true, true)?;
    Ok(addr)
}

/// Removes monitor `name` from the cluster in `dir` (`mon rm NAME`, a
/// Paxos reconfiguration; the removed monitor stops itself) and from the
/// config's monitor list.
pub fn rm_mon(dir: &Path, name: &str) -> Result<(), String> {
    admin(dir, &["mon", "rm", name])?;
    edit_conf_mons(dir, |mons| mons.retain(|(n, _)| n != name))
}

/// Starts a monitor; `mkfs` creates its store (only when the cluster is
/// made, or a monitor joins: a restarted monitor must find its old store).
fn spawn_mon(dir: &Path, name: &str, mkfs: bool, join: bool) -> Result<u32, String> {
    let bin = sibling_binary("sepia-mon")?;
    let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("out").join(format!("mon.{name}.log"))).map_err(|e| e.to_string())?;
    let mut cmd = Command::new(bin);
    if mkfs {
        cmd.arg("--mkfs");
    }
    if join {
        cmd.arg("--join");
    }
    let child = cmd
        .arg("-c")
        .arg(dir.join("sepia.conf"))
        .arg("-i")
        .arg(name)
        .arg("--data")
        .arg(dir.join(format!("mon.{name}")))
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start sepia-mon: {e}"))?;
    let pid = child.id();
    std::fs::write(dir.join("run").join(format!("mon.{name}.pid")), pid.to_string()).map_err(|e| e.to_string())?;
    // The child is reaped by `down` (or by init when we exit first).
    std::mem::forget(child);
    Ok(pid)
}

/// Sends `signal` to the daemon `who` (`mon.a`); true if it was running.
pub fn signal(dir: &Path, who: &str, signal: i32) -> bool {
    let pid_file = dir.join("run").join(format!("{who}.pid"));
    let Ok(text) = std::fs::read_to_string(&pid_file) else { return false };
    let Ok(pid) = text.trim().parse::<i32>() else { return false };
    let ok = Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).stderr(Stdio::null()).status().is_ok_and(|s| s.success());
    if ok {
        let _ = std::fs::remove_file(pid_file);
    }
    ok
}

/// Stops every daemon of the cluster in `dir` (SIGTERM).
pub fn down(dir: &Path) -> Result<usize, String> {
    let run = dir.join("run");
    let entries = std::fs::read_dir(&run).map_err(|e| format!("{}: {e}", run.display()))?;
    let mut stopped = 0;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if let Some(who) = name.strip_suffix(".pid") {
            if signal(dir, who, 15) {
                stopped += 1;
            }
        }
    }
    Ok(stopped)
}

/// Waits until `status` answers through the monitors.
pub fn wait_for_quorum(dir: &Path, timeout: Duration) -> Result<(), String> {
    let conf = Config::load(&dir.join("sepia.conf").to_string_lossy())?;
    let start = Instant::now();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let mut last = String::new();
    while start.elapsed() < timeout {
        let result = rt.block_on(async {
            let mut monc = crate::monc::MonClient::from_conf(&conf, "client.admin")?;
            tokio::time::timeout(Duration::from_secs(3), monc.command(&["quorum_status".to_string()], true))
                .await
                .map_err(|_| "timeout".to_string())?
                .map_err(|e| e.to_string())
        });
        match result {
            Ok(r) if r.result == 0 => return Ok(()),
            Ok(r) => last = r.status,
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(format!("no quorum after {:?}: {last}", timeout))
}
