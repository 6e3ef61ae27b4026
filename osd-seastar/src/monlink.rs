//! The OSD's link to the monitors: boot (with one address per shard),
//! beacons, failure reports and the OSDMap subscription. Control path
//! only, so it runs on a small tokio runtime in a thread of its own; the
//! shards read the newest map from a `watch` channel (tokio's sync types
//! work under glommio too) and send reports through a bounded channel.
//! Next to it a second channel carries the last `map_history_max` maps
//! (every epoch applied), so a shard that fell behind walks each epoch;
//! the subscription starts after the newest map the shards recorded
//! (`MonLinkConfig::base`), so after a restart the monitor sends the
//! incrementals of the downtime.
//!
//! Invariant: the link never blocks a shard — shards only `try_send`
//! reports and read maps; a full report queue drops the oldest reason to
//! report, never a data-path operation.

use std::sync::Arc;
use std::time::Duration;

use sepia_client::monc::MonClient;
use sepia_client::rados::{watch_osdmap_history, OsdMapHistory};
use sepia_proto::msg::{Body, OsdBeacon, OsdBoot, OsdFailure, OsdMarkMeDown, OsdStat};
use sepia_proto::osdmap::{OsdId, OsdMap};
use tokio::sync::{mpsc, watch};

/// Bounds of the link.
pub mod limits {
    #![allow(non_upper_case_globals)]
    /// Reports (failures, stats) queued from the shards to the monitors.
    pub const reports_queued_max: usize = 256;
    /// Maps kept for shards that fell behind (each PG must see every
    /// epoch to know its past intervals). As many as the monitor keeps
    /// incrementals (`osdmap_history_max`): every map a catch-up
    /// subscription can deliver in one batch fits, so only a gap the
    /// monitor itself cannot fill reaches the PGs. A small cluster's map is
    /// a few KiB, so this holds a few MiB at most.
    pub const map_history_max: usize = 500;
}

#[derive(Debug, Clone)]
pub struct MonLinkConfig {
    pub mon_addrs: Vec<String>,
    pub osd: OsdId,
    pub uuid: [u8; 16],
    /// One `ip:port` per shard, in shard order.
    pub shard_addrs: Vec<String>,
    pub hostname: String,
    pub beacon_interval: Duration,
    /// Who the link authenticates as with the monitors, and its key (none:
    /// no authentication).
    pub auth_entity: String,
    pub secret: Option<sepia_proto::auth::key::Secret>,
    /// The newest map the shards recorded before a restart (the oldest of
    /// theirs): the subscription continues after it.
    pub base: Option<OsdMap>,
}

/// What shards tell the monitors.
#[derive(Debug, Clone)]
pub enum Report {
    Failure { target: OsdId, failed_for_ms: u64, still_failed: bool },
    Stat(OsdStat),
    /// Clean shutdown: ask to be marked down now.
    Goodbye,
}

/// What the OSD needs to check clients' tickets and to show its own to
/// peers: the OSD service key, and its own session key and OSD ticket.
pub struct OsdAuth {
    pub keys: sepia_proto::auth::ticket::ServiceKeys,
    pub session: sepia_proto::auth::mac::SessionKey,
    pub ticket: sepia_proto::auth::ticket::SealedTicket,
}

/// How often the OSD refreshes its key and ticket (tickets live an hour).
const AUTH_REFRESH: Duration = Duration::from_secs(600);

pub struct MonLink {
    pub maps: watch::Receiver<Arc<OsdMap>>,
    /// The last maps, every epoch (updated before `maps`).
    pub history: watch::Receiver<Arc<OsdMapHistory>>,
    /// `None` until the first authentication (or without a key).
    pub auth: watch::Receiver<Option<Arc<OsdAuth>>>,
    pub reports: mpsc::Sender<Report>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MonLink {
    /// Starts the link thread; returns once the thread runs (boot happens
    /// in the background and is retried until a monitor accepts it).
    pub fn start(cfg: MonLinkConfig) -> std::io::Result<MonLink> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (report_tx, report_rx) = mpsc::channel(limits::reports_queued_max);
        let (map_tx, map_rx) = std::sync::mpsc::sync_channel(1);
        let (auth_tx, auth_rx) = watch::channel(None);
        let mut cfg = cfg;
        let base = cfg.base.take();
        let thread = std::thread::Builder::new().name(format!("osd.{}-monlink", cfg.osd)).spawn(move || {
            rt.block_on(async move {
                let (maps, history) = watch_osdmap_history(cfg.mon_addrs.clone(), &cfg.auth_entity, cfg.secret.clone(), base, limits::map_history_max);
                let _ = map_tx.send((maps.clone(), history));
                if cfg.secret.is_some() {
                    tokio::spawn(refresh_auth(cfg.clone(), auth_tx));
                }
                run(cfg, maps, report_rx).await;
            })
        })?;
        let (maps, history) = map_rx.recv().map_err(|_| std::io::Error::other("monitor link thread died"))?;
        Ok(MonLink { maps, history, auth: auth_rx, reports: report_tx, thread: Some(thread) })
    }

    /// Says goodbye (marked down now) and stops the link.
    pub fn shutdown(mut self) {
        let _ = self.reports.try_send(Report::Goodbye);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Authenticates, fetches the OSD service key, publishes both; again and
/// again before the ticket expires.
async fn refresh_auth(cfg: MonLinkConfig, tx: watch::Sender<Option<Arc<OsdAuth>>>) {
    use sepia_client::conn::{authenticate, fetch_service_key, Conn};
    let Some(secret) = cfg.secret.clone() else { return };
    let mut index = 0usize;
    loop {
        let addr = cfg.mon_addrs[index % cfg.mon_addrs.len()].clone();
        index += 1;
        let got = async {
            let mut conn = Conn::connect(&addr, &cfg.auth_entity, [0; 16]).await?;
            let g = authenticate(&mut conn, &cfg.auth_entity, &secret).await?;
            let (generation, key) = fetch_service_key(&mut conn, &g.session_key, "osd").await?;
            let ticket = g.tickets.into_iter().find(|t| t.service == "osd").ok_or(sepia_client::conn::ConnError::Unexpected("no osd ticket"))?;
            Ok::<OsdAuth, sepia_client::conn::ConnError>(OsdAuth { keys: sepia_proto::auth::ticket::ServiceKeys::new(generation, key), session: g.session_key, ticket })
        }
        .await;
        match got {
            Ok(a) => {
                let _ = tx.send(Some(Arc::new(a)));
                tokio::time::sleep(AUTH_REFRESH).await;
            }
            Err(e) => {
                eprintln!("osd.{}: authentication with {addr}: {e}", cfg.osd);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        if tx.is_closed() {
            return;
        }
    }
}

async fn run(cfg: MonLinkConfig, mut maps: watch::Receiver<Arc<OsdMap>>, mut reports: mpsc::Receiver<Report>) {
    let Ok(mut monc) = MonClient::with_secret(cfg.mon_addrs.clone(), &cfg.auth_entity, cfg.secret.clone()) else { return };
    let boot = |have_epoch| {
        Body::OsdBoot(OsdBoot {
            osd: cfg.osd,
            uuid: cfg.uuid,
            addrs: cfg.shard_addrs.clone(),
            have_epoch,
            hostname: cfg.hostname.clone(),
        })
    };
    let mut booted_at: Option<u32> = None;
    let mut beacon = tokio::time::interval(cfg.beacon_interval);
    loop {
        tokio::select! {
            _ = beacon.tick() => {
                let map = maps.borrow().clone();
                let me = map.osd(cfg.osd);
                let up_in_map = me.is_some_and(|o| o.up && o.addrs == cfg.shard_addrs);
                if !up_in_map {
                    // Not (or no longer) up in the map: (re)boot. A wrongly
                    // marked-down OSD comes back the same way.
                    if booted_at.is_none_or(|e| map.epoch > e) {
                        if booted_at.is_some() {
                            eprintln!("osd.{}: not up in the map at epoch {}; booting again", cfg.osd, map.epoch);
                        }
                        match monc.request(&boot(map.epoch)).await {
                            Ok(r) if r.result == 0 => booted_at = Some(map.epoch),
                            Ok(r) => eprintln!("osd.{}: boot refused: {} ({})", cfg.osd, r.status, r.result),
                            Err(e) => eprintln!("osd.{}: boot: {e}", cfg.osd),
                        }
                    }
                } else {
                    let _ = monc.request(&Body::OsdBeacon(OsdBeacon { osd: cfg.osd, epoch: map.epoch, stat: OsdStat::default() })).await;
                }
            }
            report = reports.recv() => match report {
                Some(Report::Failure { target, failed_for_ms, still_failed }) => {
                    let epoch = maps.borrow().epoch;
                    let f = OsdFailure { reporter: cfg.osd, target, epoch, failed_for_ms, still_failed };
                    let _ = monc.request(&Body::OsdFailure(f)).await;
                }
                Some(Report::Stat(stat)) => {
                    let epoch = maps.borrow().epoch;
                    let _ = monc.request(&Body::OsdBeacon(OsdBeacon { osd: cfg.osd, epoch, stat })).await;
                }
                Some(Report::Goodbye) | None => {
                    let epoch = maps.borrow().epoch;
                    let _ = tokio::time::timeout(
                        Duration::from_secs(3),
                        monc.request(&Body::OsdMarkMeDown(OsdMarkMeDown { osd: cfg.osd, epoch })),
                    ).await;
                    return;
                }
            },
            _ = maps.changed() => {}
        }
    }
}
