//! `sepia-mon -c CONF -i NAME --data DIR`: one monitor.
//!
//! The config names the cluster (`fsid`), the monitors (`mon_host`, with
//! `mon_initial_members` giving their names in rank order), the admin
//! keyring, and the failure-handling intervals.

// mimalloc: small, frequent allocations (frames, messages, map updates)
// cost less and do not contend across threads.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use sepia_client::config::Config;
use sepia_mon::daemon::{self, DaemonConfig};
use sepia_mon::paxos::Rejoin;
use sepia_mon::services::service::{MonConfig, MonServices};
use sepia_mon::services::state::{AuthEntry, ClusterState};
use sepia_proto::monmap::MonMap;
use sepia_proto::osdmap::OsdMap;

#[derive(Parser)]
#[command(name = "sepia-mon", about = "A Sepia monitor")]
struct Cli {
    /// Config file.
    #[arg(short = 'c', long = "conf")]
    conf: PathBuf,
    /// This monitor's name (`a`).
    #[arg(short = 'i', long = "id")]
    id: String,
    /// Where this monitor keeps its store.
    #[arg(long = "data")]
    data: PathBuf,
    /// Create the store (a new monitor of a new cluster). Without it the
    /// store must exist: a monitor whose store was lost must not rejoin
    /// under its old rank, where it could undo decided changes.
    #[arg(long = "mkfs")]
    mkfs: bool,
    /// Join a running cluster as a monitor already added with
    /// `sepia mon add NAME ADDR` (with --mkfs: a new or wiped store). The
    /// configuration and the members come from the monitors.
    #[arg(long = "join")]
    join: bool,
}

/// A quorum's answer to `mon paxos`: the configuration and its members
/// (name, node id, address).
type QuorumConfig = (u32, Vec<(String, u64, String)>);

/// Parses the output of `mon paxos` (from the network: checked).
fn parse_paxos(output: &str) -> Result<QuorumConfig, String> {
    let v: serde_json::Value = serde_json::from_str(output).map_err(|e| format!("mon paxos: {e}"))?;
    let config_id = v["config_id"].as_u64().and_then(|c| u32::try_from(c).ok()).ok_or("mon paxos: no config_id")?;
    let mut members = Vec::new();
    for m in v["members"].as_array().ok_or("mon paxos: no members")? {
        let (Some(n), Some(a), Some(id)) = (m["name"].as_str(), m["addr"].as_str(), m["id"].as_u64()) else {
            return Err("mon paxos: a malformed member".into());
        };
        if id == 0 || members.len() >= sepia_proto::limits::monitors_max {
            return Err("mon paxos: a bad member list".into());
        }
        members.push((n.to_string(), id, a.to_string()));
    }
    Ok((config_id, members))
}

/// Asks the monitors for the Paxos configuration and finds `name` in it.
async fn fetch_membership(conf: &Config, name: &str) -> Result<sepia_mon::paxos::Membership, String> {
    let mut monc = sepia_client::monc::MonClient::from_conf(conf, "client.admin")?;
    let r = monc.command(&["mon".to_string(), "paxos".to_string()], true).await.map_err(|e| e.to_string())?;
    if r.result != 0 {
        return Err(format!("mon paxos: {}", r.status));
    }
    let (config_id, members) = parse_paxos(&r.output)?;
    let me = members.iter().find(|(n, ..)| n == name).map(|(_, id, _)| *id);
    let me = me.ok_or(format!("mon.{name} is not in the monmap: add it first (sepia mon add {name} ADDR)"))?;
    Ok(sepia_mon::paxos::Membership { config_id, me, nodes: members.into_iter().map(|(_, id, a)| (id, a)).collect(), previous: None })
}

/// The configuration a quorum runs, asked of each address once (bounded
/// by `paxos::limits::rejoin_ask_ms`); `None` when no quorum answers
/// (every monitor restarting, say).
async fn quorum_config(addrs: &[String], secret: Option<sepia_proto::auth::key::Secret>) -> Option<QuorumConfig> {
    use sepia_client::conn::{authenticate, Conn};
    use sepia_proto::msg::{Body, Command};
    for addr in addrs {
        let attempt = async {
            let mut c = Conn::connect(addr, "client.admin", [0; 16]).await.map_err(|e| e.to_string())?;
            if let Some(s) = &secret {
                authenticate(&mut c, "client.admin", s).await.map_err(|e| e.to_string())?;
            }
            let ask = Body::Command(Command { tid: 1, args: vec!["mon".into(), "paxos".into()], json: true });
            c.send(&ask, &[]).await.map_err(|e| e.to_string())?;
            loop {
                if let Body::CommandReply(r) = c.recv_body().await.map_err(|e| e.to_string())?.1 {
                    break if r.result == 0 { parse_paxos(&r.output) } else { Err(r.status) };
                }
            }
        };
        let limit = Duration::from_millis(sepia_mon::paxos::limits::rejoin_ask_ms);
        if let Ok(Ok(answer)) = tokio::time::timeout(limit, attempt).await {
            return Some(answer);
        }
    }
    None
}

/// Creates or checks `DIR/mon.fsid`, the mark of a monitor store.
fn check_store(dir: &std::path::Path, fsid: &[u8; 16], mkfs: bool) -> Result<(), String> {
    let mark = dir.join("mon.fsid");
    let want = sepia_proto::uuid::format(fsid);
    match std::fs::read_to_string(&mark) {
        Ok(have) if have.trim() == want => Ok(()),
        Ok(have) => Err(format!("{} belongs to cluster {}, not {want}", dir.display(), have.trim())),
        Err(_) if mkfs => {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            std::fs::write(&mark, format!("{want}\n")).map_err(|e| format!("{}: {e}", mark.display()))?;
            std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| format!("{}: {e}", dir.display()))
        }
        Err(_) => Err(format!(
            "no monitor store in {}: a new monitor needs --mkfs; a monitor whose store was lost must be re-added, not restarted (it could undo decided changes)",
            dir.display()
        )),
    }
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("sepia-mon: {msg}");
    ExitCode::FAILURE
}

/// Reads `[NAME]` / `key = ...` / `caps SERVICE = "..."` entries.
fn read_keyring(path: &str) -> Result<Vec<(String, AuthEntry)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let mut out: Vec<(String, AuthEntry)> = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            out.push((name.to_string(), AuthEntry { key: String::new(), caps: Default::default() }));
        } else if let Some((k, v)) = line.split_once('=') {
            let Some((_, entry)) = out.last_mut() else { continue };
            let k = k.trim();
            let v = v.trim().trim_matches('"').to_string();
            if k == "key" {
                entry.key = v;
            } else if let Some(service) = k.strip_prefix("caps ") {
                entry.caps.insert(service.trim().to_string(), v);
            }
        }
    }
    Ok(out)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let conf = match Config::load(&cli.conf.to_string_lossy()) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let section = format!("mon.{}", cli.id);
    let addrs = conf.mon_addrs();
    let names: Vec<String> = conf
        .get(&section, "mon_initial_members")
        .map(|m| m.split([',', ' ']).filter(|s| !s.is_empty()).map(String::from).collect())
        .unwrap_or_default();
    let Some(fsid) = conf.get(&section, "fsid").and_then(sepia_proto::uuid::parse) else {
        return fail("the config needs a valid fsid");
    };
    if cli.join && !cli.mkfs {
        return fail("--join makes a new store: it needs --mkfs");
    }
    if let Err(e) = check_store(&cli.data, &fsid, cli.mkfs) {
        return fail(e);
    }
    // Which configuration: the one the store is in, the running cluster's
    // (joining), or the initial one the config file describes.
    let stored = match sepia_mon::paxos::Membership::load(&cli.data) {
        Ok(m) => m,
        Err(e) => return fail(e),
    };
    let initial = names.len() == addrs.len() && !addrs.is_empty();
    let rank = names.iter().position(|n| *n == cli.id).filter(|_| initial);
    if stored.is_none() && !cli.join && rank.is_none() {
        return fail(format!("mon.{} is not in mon_initial_members (or mon_host does not match it); a new monitor joins with --join", cli.id));
    }
    let solo = stored.is_none() && !cli.join && addrs.len() == 1;
    let num = |key: &str, default: u64| conf.get(&section, key).and_then(|v| v.parse().ok()).unwrap_or(default);
    // Test-only overrides (`SEPIA_MON_<OPTION>`): a test harness starts
    // many monitors through the launcher and cannot edit their config.
    let opt = |key: &str, default: u64| std::env::var(format!("SEPIA_MON_{}", key.to_uppercase())).ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| num(key, default));
    let compact_min_entries = opt("paxos_trim_min", sepia_mon::paxos::limits::compact_min_entries_default as u64) as usize;
    let failure_domain = if num("osd_crush_chooseleaf_type", 1) == 0 { "osd" } else { "host" };
    let mon_config = MonConfig {
        beacon_grace_ms: num("mon_osd_beacon_grace", 10) * 1000,
        down_out_interval_ms: num("mon_osd_down_out_interval", 600) * 1000,
        min_down_reporters: num("mon_osd_min_down_reporters", 2) as usize,
        failure_report_ttl_ms: 30_000,
        crush_location_type: failure_domain.to_string(),
    };
    let crush = match crush_simd::edit::default_map(failure_domain) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let osdmap = OsdMap::new(fsid, crush, 0);
    let auth = match conf.get(&section, "keyring").map(read_keyring).transpose() {
        Ok(a) => a.unwrap_or_default(),
        Err(e) => return fail(e),
    };
    let secret = match conf.secret_for("client.admin") {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(e),
    };
    let membership = match (&stored, rank) {
        _ if solo => None,
        // Down across membership changes? Ask a quorum where it is now.
        (Some(m), _) => {
            let mine = m.nodes.iter().find(|(id, _)| *id == m.me).map(|(_, a)| a.clone()).unwrap_or_default();
            let mut others: Vec<String> = Vec::new();
            for a in addrs.iter().chain(m.nodes.iter().map(|(_, a)| a)) {
                if *a != mine && !others.contains(a) {
                    others.push(a.clone());
                }
            }
            match rt.block_on(quorum_config(&others, secret.clone())) {
                None => {
                    eprintln!("mon.{}: no quorum answered where the cluster is now; resuming Paxos configuration {}", cli.id, m.config_id);
                    Some(m.clone())
                }
                Some((config_id, members)) => match m.rejoin(&cli.id, config_id, &members) {
                    Rejoin::Resume => Some(m.clone()),
                    Rejoin::Jump(next) => {
                        eprintln!(
                            "mon.{}: this store is at Paxos configuration {}, the quorum at {config_id}: joining it as node {} with a fresh log (catching up from the quorum)",
                            cli.id, m.config_id, next.me
                        );
                        if let Err(e) = next.adopt_fresh(&cli.data) {
                            return fail(format!("{}: {e}", cli.data.display()));
                        }
                        Some(next)
                    }
                    Rejoin::Refuse(why) => return fail(why),
                },
            }
        }
        (None, _) if cli.join => match rt.block_on(fetch_membership(&conf, &cli.id)) {
            Ok(m) => Some(m),
            Err(e) => return fail(format!("cannot join: {e}")),
        },
        // The initial members are node ids 1..=n in rank order.
        (None, Some(_)) => Some(sepia_mon::paxos::Membership {
            config_id: 1,
            me: rank.unwrap_or(0) as u64 + 1,
            nodes: addrs.iter().enumerate().map(|(r, a)| (r as u64 + 1, a.clone())).collect(),
            previous: None,
        }),
        (None, None) => return fail("no membership"),
    };
    if let Some(m) = membership.as_ref().filter(|_| stored.is_none()) {
        if let Err(e) = m.store(&cli.data) {
            return fail(format!("{}: {e}", cli.data.display()));
        }
    }
    let me = membership.as_ref().map_or(1, |m| m.me);
    let public_addr = match &membership {
        None => addrs[0].clone(),
        Some(m) => match m.nodes.iter().find(|(id, _)| *id == me) {
            Some((_, a)) => a.clone(),
            None => return fail(format!("node {me} is not among its configuration's members")),
        },
    };
    let mut services = MonServices::new(me, mon_config);
    let mut state = ClusterState::new();
    // Until the bootstrap entry commits, peers (and the admin) authenticate
    // against the local keyring: monitors must talk to agree on anything.
    // The bootstrap entry then sets the same database everywhere.
    state.auth = auth.iter().cloned().collect();
    // Only an initial member of the first configuration may bootstrap.
    let bootstrap = match (rank, &membership) {
        (Some(_), None) => true,
        (Some(_), Some(m)) => m.config_id == 1 && m.previous.is_none() && m.me == rank.unwrap_or(0) as u64 + 1,
        _ => false,
    };
    let bootstrap = if bootstrap {
        match MonMap::new(fsid, &names.iter().cloned().zip(addrs.iter().cloned()).collect::<Vec<_>>(), 0) {
            Ok(monmap) => Some(services.bootstrap_entry(monmap, &osdmap, auth)),
            Err(e) => return fail(e),
        }
    } else {
        None
    };
    // The osdmap fsid must be the cluster's even before bootstrap commits.
    state.osdmap.fsid = fsid;
    let daemon_config = DaemonConfig {
        name: cli.id.clone(),
        rank: (me - 1) as u32,
        public_addr,
        auth_required: conf.get(&section, "auth_required").is_some_and(|v| v == "true" || v == "1"),
        propose_interval: Duration::from_millis(num("mon_propose_interval_ms", 2)),
        // Paxos elections count ticks (see `paxos::limits`).
        tick_interval: Duration::from_millis(if membership.is_some() { 50 } else { 200 }),
        ticket_lifetime_ms: opt("auth_ticket_ttl_ms", DaemonConfig::TICKET_LIFETIME_MS_DEFAULT),
    };
    let links = sepia_mon::paxos::PeerLinks { entity: "client.admin".into(), secret };
    let result = rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&daemon_config.public_addr).await?;
        eprintln!("mon.{} node {} listening on {}", daemon_config.name, me, daemon_config.public_addr);
        match membership {
            None => {
                let log = sepia_mon::solo::SoloLog::open(&cli.data, compact_min_entries)?;
                daemon::run(daemon_config, listener, log, state, services, bootstrap).await
            }
            Some(m) => {
                let paxos = sepia_mon::consensus::open(&cli.data, m, links, compact_min_entries)?;
                daemon::run(daemon_config, listener, paxos, state, services, bootstrap).await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}
