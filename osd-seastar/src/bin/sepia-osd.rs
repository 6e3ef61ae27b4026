//! `sepia-osd --id N --data PATH [-c CONF] [--keyring K] [--shards S]
//! [--size-mib M]`: one OSD. It authenticates as `osd.N` with its own key
//! (Ceph's model: the OSD was created by `osd new UUID N` with that key,
//! e.g. by the launcher) — from `--keyring`, a `keyring` next to its data,
//! or the config's keyring; a keyring without `osd.N` falls back to
//! `client.admin` (older dev clusters). On first start it formats PATH (a
//! file, created and filled, or a block device) with one region per shard
//! under the uuid the OSD map has for `osd.N` (or `--osd-uuid`); an OSD
//! running as `client.admin` registers itself (`osd new UUID N`) instead.
//! Then one glommio executor per shard mounts its region, listens on its
//! own port, and the monitor link boots the OSD with those addresses.
//! SIGTERM: goodbye to the monitors and exit; `kill -9`: the next start
//! replays each shard's journal.

// mimalloc: small, frequent allocations (frames, messages, map updates)
// cost less and do not contend across threads.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use sepia_client::config::Config;
use sepia_osd::monlink::{MonLink, MonLinkConfig};
use sepia_osd::objstore::{Device, DmaDevice, Expect, MkfsOptions, Store, BLOCK};
use sepia_osd::server::{limits, Shard};
use sepia_proto::auth::entity::EntityName;
use sepia_proto::auth::key::Secret;
use sepia_proto::auth::keyring::Keyring;
use sepia_proto::osdmap::OsdMap;

#[derive(Parser)]
#[command(name = "sepia-osd", about = "A Sepia OSD (one shard per core)")]
struct Cli {
    #[arg(long = "id")]
    id: i32,
    /// Data file or block device.
    #[arg(long = "data")]
    data: PathBuf,
    #[arg(short = 'c', long = "conf")]
    conf: PathBuf,
    /// This OSD's keyring (holding `osd.ID`); default: `keyring` next to
    /// the data if present, else the config's keyring.
    #[arg(long = "keyring")]
    keyring: Option<PathBuf>,
    /// The uuid to format a new store with (default: the one the OSD map
    /// has for this id, set by `osd new`). Checked against a formatted one.
    #[arg(long = "osd-uuid")]
    osd_uuid: Option<String>,
    /// Shards (cores); fixed at the first start.
    #[arg(long = "shards", default_value_t = 1)]
    shards: u32,
    /// Size of a data file created at the first start.
    #[arg(long = "size-mib", default_value_t = 1024)]
    size_mib: u64,
    /// CPUs to pin shards to, comma separated, one per shard (default: not
    /// pinned, unless `--plan` says).
    #[arg(long = "cores")]
    cores: Option<String>,
    /// A shard plan: a file from `sepia-tune plan --format json` (this
    /// OSD's entry is used), or `auto` to plan this OSD alone on the cores
    /// local to its data device.
    #[arg(long = "plan")]
    plan: Option<String>,
    /// Address to listen on (ports are chosen per shard).
    #[arg(long = "host", default_value = "127.0.0.1")]
    host: String,
    /// Microseconds a shard pinned to a core (`--cores`, `--plan`) polls
    /// for work before it sleeps (Seastar's idle poll; 0: sleep at once;
    /// unpinned shards always sleep at once). Default: `osd_idle_poll_us`
    /// from the conf, else 150.
    #[arg(long = "idle-poll-us")]
    idle_poll_us: Option<u64>,
    /// Storage requests a task may leave queued before the shard submits
    /// them at once instead of between task runs (0: off). Default:
    /// `osd_submit_batch` from the conf, else 0. Helps a disk-bound shard,
    /// costs a CPU-bound one a syscall per batch.
    #[arg(long = "submit-batch")]
    submit_batch: Option<usize>,
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("sepia-osd: {msg}");
    ExitCode::FAILURE
}

/// Runs `f` on a glommio executor of its own and waits for its result.
fn on_glommio<F, Fut, T>(f: F) -> Result<T, String>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T, String>> + 'static,
    T: Send + 'static,
{
    glommio::LocalExecutorBuilder::default().spawn(f).map_err(|e| e.to_string())?.join().map_err(|e| format!("{e:?}"))?
}

/// The CPU of each shard (empty: not pinned), from `--cores` or `--plan`.
fn shard_cores(cli: &Cli, shards: u32) -> Result<Vec<usize>, String> {
    use sepia_tuning::plan::{plan, OsdSpec, Plan, Policy};
    let cores: Vec<usize> = match (&cli.cores, cli.plan.as_deref()) {
        (Some(_), Some(_)) => return Err("--cores and --plan exclude each other".into()),
        (None, None) => return Ok(Vec::new()),
        (Some(list), None) => list.split(',').map(|x| x.trim().parse::<usize>().map_err(|_| format!("--cores: '{x}' is not a CPU number"))).collect::<Result<_, _>>()?,
        (None, Some("auto")) => {
            let topo = sepia_tuning::topology::Topology::discover().map_err(|e| format!("--plan auto: topology: {e}"))?;
            // A data file (or partition) plans on the disk that holds it.
            let absolute = std::fs::canonicalize(&cli.data).unwrap_or_else(|_| cli.data.clone());
            let device = sepia_tuning::topology::block_device_of(&sepia_tuning::sys::SysRoot::default(), &absolute)
                .unwrap_or_else(|| cli.data.to_string_lossy().into_owned());
            let spec = OsdSpec { id: cli.id as u32, device };
            let policy = Policy { shards_per_osd: Some(shards as usize), ..Policy::default() };
            plan(&topo, &[spec], &policy).map_err(|e| format!("--plan auto: {e}"))?.cores_for(cli.id as u32)
        }
        (None, Some(file)) => {
            let text = std::fs::read_to_string(file).map_err(|e| format!("--plan {file}: {e}"))?;
            let p = Plan::from_json(&text).map_err(|e| format!("--plan {file}: {e}"))?;
            p.cores_for(cli.id as u32)
        }
    };
    if cores.len() != shards as usize {
        return Err(format!("{} CPU(s) for {shards} shard(s): give one per shard", cores.len()));
    }
    Ok(cores)
}

/// Who this OSD authenticates as with the monitors and its peers, and
/// with which key: `osd.ID` from `--keyring` (or a `keyring` next to the
/// data), or from the config's keyring; `client.admin` from the config's
/// keyring when that has no key for `osd.ID`. No key at all (a config
/// without a keyring): no authentication.
/// A numeric setting: the command line's value, else the conf's `key` in
/// `section`, else `default`; refused above `max`.
fn numeric_setting<T>(cli: Option<T>, conf: &Config, section: &str, key: &str, default: T, max: T) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let value = match (cli, conf.get(section, key)) {
        (Some(v), _) => v,
        (None, Some(text)) => text.trim().parse::<T>().map_err(|_| format!("{key} = {text}: want a whole number"))?,
        (None, None) => default,
    };
    if value > max {
        return Err(format!("{key} of {value} is above {max}"));
    }
    Ok(value)
}

fn identity(cli: &Cli, conf: &Config) -> Result<(String, Option<Secret>), String> {
    let me = format!("osd.{}", cli.id);
    let own = cli.keyring.clone().or_else(|| Some(cli.data.with_file_name("keyring")).filter(|k| k.is_file()));
    if let Some(path) = own {
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let ring = Keyring::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let name = EntityName::parse(&me).map_err(|e| e.to_string())?;
        let entry = ring.get(&name).ok_or_else(|| format!("{} has no key for {me}", path.display()))?;
        return Ok((me, Some(entry.key.clone())));
    }
    match conf.secret_for(&me) {
        Ok(Some(secret)) => return Ok((me, Some(secret))),
        Ok(None) => return Ok(("client.admin".into(), None)),
        Err(_) => {}
    }
    let secret = conf.secret_for("client.admin")?;
    eprintln!("{me}: no key of its own in the config's keyring; authenticating as client.admin");
    Ok(("client.admin".into(), secret))
}

/// The uuid the OSD map has for `osd.ID` (set by `osd new`), read as
/// `entity`.
fn uuid_in_map(conf: &Config, id: i32, entity: &str, secret: Option<Secret>) -> Result<[u8; 16], String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let map = rt.block_on(async {
        let rados = sepia_client::rados::Rados::connect_with_secret(conf.mon_addrs(), entity, secret).await.map_err(|e| format!("as {entity}: {e}"))?;
        Ok::<_, String>(rados.osdmap())
    })?;
    let Some(me) = map.osd(id) else {
        return Err(format!("osd.{id} is not in the OSD map: create it first with its key, `sepia osd new UUID {id} '{{\"cephx_secret\": \"KEY\"}}'` (the launcher does)"));
    };
    Some(me.uuid).filter(|u| *u != [0; 16]).ok_or_else(|| format!("osd.{id} has no uuid in the OSD map"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let conf = match Config::load(&cli.conf.to_string_lossy()) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let section = format!("osd.{}", cli.id);
    let Some(fsid) = conf.get(&section, "fsid").and_then(sepia_proto::uuid::parse) else {
        return fail("the config needs a valid fsid");
    };
    let idle_poll_us = match numeric_setting(cli.idle_poll_us, &conf, &section, "osd_idle_poll_us", limits::idle_poll_us_default, limits::idle_poll_us_max) {
        Ok(us) => us,
        Err(e) => return fail(e),
    };
    let submit_batch = match numeric_setting(cli.submit_batch, &conf, &section, "osd_submit_batch", limits::submit_batch_default, limits::submit_batch_max) {
        Ok(n) => n,
        Err(e) => return fail(e),
    };
    let frame_mode = match conf.get(&section, "ms_mode").map(sepia_proto::hello::FrameMode::parse).transpose() {
        Ok(m) => m.unwrap_or_default(),
        Err(e) => return fail(e),
    };
    let mon_addrs = conf.mon_addrs();
    if mon_addrs.is_empty() {
        return fail("the config names no monitors (mon_host)");
    }
    let (entity, secret) = match identity(&cli, &conf) {
        Ok(x) => x,
        Err(e) => return fail(e),
    };
    // An OSD with its own key was made by `osd new` with that key: the map
    // has its uuid. One running as client.admin registers itself.
    let own_key = entity != "client.admin";
    let given_uuid = match cli.osd_uuid.as_deref().map(|u| sepia_proto::uuid::parse(u).ok_or(format!("--osd-uuid: '{u}' is not a uuid"))).transpose() {
        Ok(u) => u,
        Err(e) => return fail(e),
    };
    eprintln!("osd.{}: authenticating as {entity}", cli.id);

    // The device says whose it is: a superblock of this OSD means it was
    // formatted before (the uuid and shard count come from it). A blank
    // device, or a file made now, is formatted and then registered.
    let fresh_file = !cli.data.exists();
    if fresh_file {
        if let Err(e) = DmaDevice::preallocate(&cli.data, cli.size_mib << 20) {
            return fail(format!("{}: {e}", cli.data.display()));
        }
    }
    let data = cli.data.clone();
    let probed = on_glommio(move || async move {
        let dev = DmaDevice::open(&data).await.map_err(|e| e.to_string())?;
        let blank = dev.read(0, BLOCK).await.map_err(|e| e.to_string())?.iter().all(|&b| b == 0);
        Ok::<_, String>((Store::superblock(&dev).await.ok(), blank))
    });
    let (uuid, shards) = match probed {
        Err(e) => return fail(format!("{}: {e}", cli.data.display())),
        Ok((Some(sb), _)) if given_uuid.is_some_and(|u| u != sb.osd_uuid) => {
            return fail(format!("{} holds osd.{} with uuid {}, not the --osd-uuid given", cli.data.display(), sb.osd, sepia_proto::uuid::format(&sb.osd_uuid)));
        }
        Ok((Some(sb), _)) if sb.osd == cli.id => (sb.osd_uuid, sb.shards),
        Ok((Some(sb), _)) => return fail(format!("{} belongs to osd.{}, not osd.{}", cli.data.display(), sb.osd, cli.id)),
        Ok((None, blank)) if !(fresh_file || blank) => {
            return fail(format!("{} holds data that is not a Sepia store of this version; refusing to format it (zero its first 4 KiB to allow that)", cli.data.display()));
        }
        Ok((None, _)) => {
            let uuid = match given_uuid {
                Some(u) => u,
                None if own_key => match uuid_in_map(&conf, cli.id, &entity, secret.clone()) {
                    Ok(u) => u,
                    Err(e) => return fail(e),
                },
                None => sepia_proto::uuid::random(),
            };
            let data = cli.data.clone();
            let opts = MkfsOptions { fsid, osd: cli.id, shards: cli.shards, osd_uuid: uuid, journal_bytes: None, checkpoint_bytes: None };
            let made = on_glommio(move || async move {
                let dev = DmaDevice::open(&data).await.map_err(|e| e.to_string())?;
                Store::mkfs(&dev, &opts).await.map_err(|e| e.to_string())
            });
            if let Err(e) = made {
                return fail(format!("mkfs: {e}"));
            }
            // `osd new UUID ID` is idempotent. (A crash between the format
            // and this leaves a store the monitors do not know: its boot is
            // refused as "does not exist"; zero the device's first 4 KiB
            // and start again.) An OSD with its own key exists already.
            if own_key {
                eprintln!("osd.{}: formatted {} as uuid {} (from the OSD map)", cli.id, cli.data.display(), sepia_proto::uuid::format(&uuid));
            } else {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => return fail(e),
                };
                let args = vec!["osd".to_string(), "new".to_string(), sepia_proto::uuid::format(&uuid), cli.id.to_string()];
                let registered = rt.block_on(async {
                    let mut monc = sepia_client::monc::MonClient::with_secret(mon_addrs.clone(), &entity, secret.clone()).map_err(|e| e.to_string())?;
                    monc.command(&args, false).await.map_err(|e| e.to_string())
                });
                match registered {
                    Ok(r) if r.result == 0 => {}
                    Ok(r) => return fail(format!("osd new: {} ({})", r.status, r.result)),
                    Err(e) => return fail(format!("osd new: {e}")),
                }
            }
            (uuid, cli.shards)
        }
    };

    let cores = match shard_cores(&cli, shards) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    if !cores.is_empty() {
        eprintln!("osd.{}: shards pinned to cpus {:?}", cli.id, cores);
    }

    // One executor per shard: mount, listen, report the address, wait for
    // the map channel, serve.
    // Each shard reports its address and the map it recorded last.
    let (addr_tx, addr_rx) = std::sync::mpsc::channel::<Result<(u32, String, Option<OsdMap>), String>>();
    let mut map_txs = Vec::new();
    let mut stop_txs = Vec::new();
    let mut handles = Vec::new();
    for shard in 0..shards {
        type Links = (
            tokio::sync::watch::Receiver<Arc<OsdMap>>,
            tokio::sync::watch::Receiver<Arc<sepia_client::rados::OsdMapHistory>>,
            tokio::sync::mpsc::Sender<sepia_osd::monlink::Report>,
            tokio::sync::watch::Receiver<Option<Arc<sepia_osd::monlink::OsdAuth>>>,
        );
        let (map_tx, map_rx) = std::sync::mpsc::channel::<Links>();
        map_txs.push(map_tx);
        // A oneshot future wakes the shard when the main thread sends (or
        // drops the sender): no polling while it serves.
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        stop_txs.push(stop_tx);
        let addr_tx = addr_tx.clone();
        let data = cli.data.clone();
        let host = cli.host.clone();
        let osd = cli.id;
        let auth_required = conf.get(&section, "auth_required").is_some_and(|v| v == "true" || v == "1");
        let placement = match cores.get(shard as usize) {
            Some(&cpu) => glommio::Placement::Fixed(cpu),
            None => glommio::Placement::Unbound,
        };
        let mut builder = glommio::LocalExecutorBuilder::new(placement).name(&format!("osd{osd}-shard{shard}"));
        if idle_poll_us > 0 {
            builder = builder.spin_before_park(std::time::Duration::from_micros(idle_poll_us));
        }
        let h = builder.spawn(move || async move {
            glommio::executor().set_submit_batch_min((submit_batch > 0).then_some(submit_batch));
            let store = async {
                let dev = DmaDevice::open(&data).await.map_err(|e| e.to_string())?;
                Store::mount(dev, shard, Expect { fsid: Some(fsid), osd, shards }).await.map_err(|e| e.to_string())
            }
            .await;
            let store = match store {
                Ok(s) => s,
                Err(e) => {
                    let _ = addr_tx.send(Err(format!("shard {shard}: mount: {e}")));
                    return;
                }
            };
            let listener = match glommio::net::TcpListener::bind(format!("{host}:0")) {
                Ok(l) => l,
                Err(e) => {
                    let _ = addr_tx.send(Err(format!("shard {shard}: listen: {e}")));
                    return;
                }
            };
            let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
            let _ = addr_tx.send(Ok((shard, addr, sepia_osd::pgs::recorded_map(&store))));
            // The map channel arrives once the monitor link runs.
            let (maps, history, reports, auth) = loop {
                match map_rx.try_recv() {
                    Ok(m) => break m,
                    Err(std::sync::mpsc::TryRecvError::Empty) => glommio::timer::sleep(std::time::Duration::from_millis(5)).await,
                    Err(_) => return,
                }
            };
            let index = shard;
            let shard = std::rc::Rc::new(Shard::new(osd, index, store, maps, history, Some(reports), auth, auth_required, frame_mode));
            // The store's group commit runs as a task of its own: each op
            // is answered once its record is durable.
            let committer = shard.clone();
            glommio::spawn_local(async move { committer.store.run_committer().await }).detach();
            if index == 0 {
                // Shard 0 watches the peers for the whole OSD.
                glommio::spawn_local(shard.clone().heartbeats(sepia_osd::heartbeat::HeartbeatConfig::default())).detach();
            }
            glommio::spawn_local(shard.clone().serve(listener)).detach();
            // Until a clean shutdown: then everything queued is made durable
            // and checkpointed, so the next start replays nothing.
            let _ = stop_rx.await;
            if let Err(e) = shard.store.sync_checkpoint().await {
                eprintln!("osd.{osd} shard {index}: final checkpoint: {e}");
            }
        });
        match h {
            Ok(h) => handles.push(h),
            Err(e) => return fail(format!("shard {shard}: executor: {e}")),
        }
    }
    drop(addr_tx);
    let mut addrs = vec![String::new(); shards as usize];
    // The subscription continues after the oldest map a shard recorded
    // (every shard walks on from its own); none if any shard has none.
    let mut recorded: Vec<Option<OsdMap>> = Vec::new();
    for _ in 0..shards {
        match addr_rx.recv() {
            Ok(Ok((s, a, m))) => {
                addrs[s as usize] = a;
                recorded.push(m);
            }
            Ok(Err(e)) => return fail(e),
            Err(_) => return fail("a shard died while starting"),
        }
    }
    let hostname = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "localhost".into());
    let link = match MonLink::start(MonLinkConfig {
        mon_addrs,
        osd: cli.id,
        uuid,
        shard_addrs: addrs.clone(),
        hostname,
        beacon_interval: std::time::Duration::from_secs(2),
        auth_entity: entity,
        secret,
        base: if recorded.iter().all(|m| m.is_some()) { recorded.into_iter().flatten().min_by_key(|m| m.epoch) } else { None },
    }) {
        Ok(l) => l,
        Err(e) => return fail(e),
    };
    for tx in &map_txs {
        let _ = tx.send((link.maps.clone(), link.history.clone(), link.reports.clone(), link.auth.clone()));
    }
    eprintln!("osd.{} up: {} shard(s) at {}", cli.id, shards, addrs.join(","));
    // Wait for SIGTERM / SIGINT: say goodbye, then exit.
    let mut signals = match signal_hook::iterator::Signals::new([signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT]) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    if signals.forever().next().is_some() {
        eprintln!("osd.{}: shutting down", cli.id);
        link.shutdown();
        for tx in stop_txs {
            let _ = tx.send(());
        }
        for h in handles {
            let _ = h.join();
        }
        eprintln!("osd.{}: stores checkpointed; bye", cli.id);
    }
    ExitCode::SUCCESS
}
