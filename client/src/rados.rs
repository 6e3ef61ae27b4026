//! The librados-style client: [`Rados`] (a cluster handle: monitor client,
//! map watcher, OSD connections) and [`IoCtx`] (object I/O in one pool).
//!
//! Placement is computed here — object → PG → acting primary → the shard
//! of that OSD that owns the PG — and every op goes straight to that
//! shard's socket. An op that reaches an OSD with a different map, a
//! non-primary, or a dead connection is resent (same request id, so the
//! OSD's PG log recognises a write it already applied) once the map has
//! moved on, until the op's deadline.
//!
//! Invariants: in-flight ops are bounded (`limits::ops_in_flight_max`);
//! every wait has a timeout; a reply is matched to its request by
//! transaction id on its own connection, never trusted beyond that.
//!
//! The op path reads no clock and runs no CRUSH in the common case: a
//! PG's primary address is computed once per map (`Targets`), an
//! attempt's timeout is enforced by its connection's task (one clock read
//! per batch sent, a sweep once a second), and an op's own deadline only
//! starts at its first failed attempt.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sepia_proto::hello::FrameMode;
use sepia_proto::errno::Errno;
use sepia_proto::msg::{Body, MapKind, ObjectId, OsdOp, OsdOpReply, PgList, PgListReply, ReqId, SubOp, SubOpOut, SubOpValue, Subscribe, SubscribeItem};
use sepia_proto::osdmap::{OsdMap, PgId, PoolId};
use tokio::sync::{mpsc, oneshot, watch, Mutex, Semaphore};

use crate::config::Config;
use crate::conn::{Conn, ConnError};
use crate::monc::{MonClient, MonError};

/// std's map with foldhash: the keys here (txids, PG ids, addresses) are
/// ours, not an attacker's, and SipHash showed in the op path's profile.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// Client-side bounds (ops).
pub mod limits {
    #![allow(non_upper_case_globals)]
    /// Ops in flight per cluster handle: back-pressure beyond this.
    pub const ops_in_flight_max: usize = 1024;
    /// Requests queued per OSD connection.
    pub const conn_queue_max: usize = 1024;
    /// How long one op may take, resends included.
    pub const op_timeout_ms: u64 = 30_000;
    /// How long one attempt waits for its reply.
    pub const attempt_timeout_ms: u64 = 10_000;
    /// How often a connection looks for requests past
    /// `attempt_timeout_ms` (so an attempt fails within their sum).
    pub const attempt_sweep_ms: u64 = 1_000;
    /// Queued requests sent to an OSD with one write (one syscall and one
    /// TCP segment for the lot at high queue depth).
    pub const send_batch_frames_max: usize = 64;
}

#[derive(Debug, thiserror::Error)]
pub enum RadosError {
    #[error("monitor: {0}")]
    Mon(#[from] MonError),
    #[error("pool '{0}' does not exist")]
    NoPool(String),
    #[error("{0}")]
    Errno(Errno),
    #[error("OSD returned unknown error {0}")]
    Unknown(i32),
    #[error("timed out after {0} ms")]
    TimedOut(u64),
    #[error("bad reply: {0}")]
    BadReply(String),
}

impl RadosError {
    fn from_result(code: i32) -> RadosError {
        match Errno::from_code(code) {
            Some(e) => RadosError::Errno(e),
            None => RadosError::Unknown(code),
        }
    }
}

type Pending = oneshot::Sender<Result<(Body, Vec<u8>), ConnError>>;

struct ConnRequest {
    body: Body,
    /// Shared with the op's later attempts (resent without a copy).
    data: Arc<Vec<u8>>,
    reply: Pending,
}

/// One OSD shard connection, owned by a task.
#[derive(Clone)]
struct OsdConn {
    tx: mpsc::Sender<ConnRequest>,
}

/// What a client shows OSDs: its session key and its OSD ticket.
type OsdCreds = (sepia_proto::auth::mac::SessionKey, sepia_proto::auth::ticket::SealedTicket);

impl OsdConn {
    async fn open(addr: &str, entity: &str, creds: Option<&OsdCreds>, mode: FrameMode) -> Result<OsdConn, ConnError> {
        let mut conn = Conn::connect_in(addr, entity, [0; 16], mode).await?;
        if let Some((session, ticket)) = creds {
            crate::conn::authorize(&mut conn, session, ticket).await?;
        }
        let (tx, rx) = mpsc::channel(limits::conn_queue_max);
        tokio::spawn(conn_task(conn, rx));
        Ok(OsdConn { tx })
    }
}

/// Owns one OSD connection: sends queued requests in batches, hands each
/// reply to its waiter, and fails a request unanswered after
/// `limits::attempt_timeout_ms` (checked every `limits::attempt_sweep_ms`)
/// with `ConnError::Timeout`, so every request it took is answered.
async fn conn_task(mut conn: Conn, mut rx: mpsc::Receiver<ConnRequest>) {
    // txid -> (waiter, when its batch was sent).
    let mut waiting: HashMap<u64, (Pending, Instant)> = HashMap::default();
    let fail_all = |waiting: &mut HashMap<u64, (Pending, Instant)>, e: &str| {
        for (_, (w, _)) in waiting.drain() {
            let _ = w.send(Err(ConnError::Unexpected(if e.is_empty() { "closed" } else { "connection failed" })));
        }
    };
    let attempt_timeout = Duration::from_millis(limits::attempt_timeout_ms);
    let mut sweep = tokio::time::interval(Duration::from_millis(limits::attempt_sweep_ms));
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = sweep.tick() => {
                if waiting.is_empty() {
                    continue;
                }
                let now = Instant::now();
                let late: Vec<u64> = waiting.iter().filter(|(_, (_, sent))| now.duration_since(*sent) >= attempt_timeout).map(|(&t, _)| t).collect();
                for t in late {
                    if let Some((w, _)) = waiting.remove(&t) {
                        let _ = w.send(Err(ConnError::Timeout(limits::attempt_timeout_ms)));
                    }
                }
            }
            req = rx.recv() => match req {
                Some(first) => {
                    // Whatever else is already queued goes in the same write.
                    let mut batch = vec![first];
                    while batch.len() < limits::send_batch_frames_max {
                        match rx.try_recv() {
                            Ok(r) => batch.push(r),
                            Err(_) => break,
                        }
                    }
                    let txids: Vec<u64> = batch.iter().map(|_| conn.next_txid()).collect();
                    let frames: Vec<(&Body, u64, &[u8])> = batch.iter().zip(&txids).map(|(r, &t)| (&r.body, t, r.data.as_slice())).collect();
                    // A peer that stops reading must not hold the task
                    // (and so every waiter's timeout) forever.
                    let sent = match tokio::time::timeout(attempt_timeout, conn.send_batch(&frames)).await {
                        Ok(r) => r,
                        Err(_) => Err(ConnError::Timeout(limits::attempt_timeout_ms)),
                    };
                    drop(frames);
                    if let Err(e) = sent {
                        let msg = e.to_string();
                        for r in batch {
                            let _ = r.reply.send(Err(ConnError::Unexpected(if msg.is_empty() { "closed" } else { "connection failed" })));
                        }
                        fail_all(&mut waiting, "x");
                        return;
                    }
                    let sent_at = Instant::now();
                    for (r, t) in batch.into_iter().zip(txids) {
                        waiting.insert(t, (r.reply, sent_at));
                    }
                }
                None => return,
            },
            frame = conn.recv() => match frame {
                Ok(mut f) => {
                    let txid = f.header.txid;
                    let data = f.take_data();
                    match sepia_proto::msg::decode(&f) {
                        // A reply goes to whoever waits on its txid; anything
                        // else (pings, notifies) is not ours here.
                        Ok(body) => {
                            if let Some((w, _)) = waiting.remove(&txid) {
                                let _ = w.send(Ok((body, data)));
                            }
                        }
                        Err(_) => {
                            fail_all(&mut waiting, "x");
                            return;
                        }
                    }
                }
                Err(_) => {
                    fail_all(&mut waiting, "x");
                    return;
                }
            },
        }
    }
}

/// Starts a task (on the current tokio runtime) that keeps the newest
/// OSDMap from a monitor subscription; returns its receiving end, which
/// any executor can await (tokio's sync types need no tokio runtime).
pub fn watch_osdmap(mon_addrs: Vec<String>, entity: &str, secret: Option<sepia_proto::auth::key::Secret>) -> watch::Receiver<Arc<OsdMap>> {
    let empty = OsdMap::new([0; 16], crush_simd::CrushMap::new(), 0);
    let (tx, rx) = watch::channel(Arc::new(OsdMap { epoch: 0, ..empty }));
    tokio::spawn(map_watcher(mon_addrs, entity.to_string(), secret, tx, None));
    rx
}

/// The maps a watcher applied, oldest first, in increasing epochs: every
/// epoch the monitor sent incrementally, so a reader that fell behind can
/// still walk each one. A jump between two neighbours is a gap (the
/// monitor sent a full map: its own history did not reach back).
#[derive(Debug, Clone, Default)]
pub struct OsdMapHistory {
    maps: std::collections::VecDeque<Arc<OsdMap>>,
}

impl OsdMapHistory {
    /// The map of `epoch`, if kept.
    pub fn get(&self, epoch: u32) -> Option<&Arc<OsdMap>> {
        let at = self.maps.partition_point(|m| m.epoch < epoch);
        self.maps.get(at).filter(|m| m.epoch == epoch)
    }

    /// The maps newer than `epoch`, oldest first.
    pub fn after(&self, epoch: u32) -> impl Iterator<Item = &Arc<OsdMap>> {
        let at = self.maps.partition_point(|m| m.epoch <= epoch);
        self.maps.range(at..)
    }

    pub fn oldest(&self) -> Option<u32> {
        self.maps.front().map(|m| m.epoch)
    }

    pub fn len(&self) -> usize {
        self.maps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.maps.is_empty()
    }

    fn push(&mut self, map: Arc<OsdMap>, keep: usize) {
        if self.maps.back().is_some_and(|m| m.epoch >= map.epoch) {
            return;
        }
        self.maps.push_back(map);
        while self.maps.len() > keep.max(1) {
            self.maps.pop_front();
        }
    }
}

/// Like [`watch_osdmap`], for a daemon that must see every epoch: starts
/// from `base` (the newest map it had before a restart, so the monitor
/// sends the incrementals since) and also publishes the last `keep` maps
/// (an [`OsdMapHistory`], updated before the newest map is).
pub fn watch_osdmap_history(
    mon_addrs: Vec<String>,
    entity: &str,
    secret: Option<sepia_proto::auth::key::Secret>,
    base: Option<OsdMap>,
    keep: usize,
) -> (watch::Receiver<Arc<OsdMap>>, watch::Receiver<Arc<OsdMapHistory>>) {
    let base = Arc::new(base.unwrap_or_else(|| OsdMap { epoch: 0, ..OsdMap::new([0; 16], crush_simd::CrushMap::new(), 0) }));
    let mut hist = OsdMapHistory::default();
    if base.epoch != 0 {
        hist.push(base.clone(), keep);
    }
    let (tx, rx) = watch::channel(base);
    let (htx, hrx) = watch::channel(Arc::new(hist));
    tokio::spawn(map_watcher(mon_addrs, entity.to_string(), secret, tx, Some((htx, keep))));
    (rx, hrx)
}

/// Keeps the newest OSDMap, fed by a monitor subscription (and, with
/// `hist`, the last maps, each epoch it applied).
async fn map_watcher(
    addrs: Vec<String>,
    entity: String,
    secret: Option<sepia_proto::auth::key::Secret>,
    tx: watch::Sender<Arc<OsdMap>>,
    hist: Option<(watch::Sender<Arc<OsdMapHistory>>, usize)>,
) {
    let mut index = 0usize;
    loop {
        if tx.is_closed() {
            return;
        }
        let addr = addrs[index % addrs.len()].clone();
        index += 1;
        let Ok(mut conn) = Conn::connect(&addr, &entity, [0; 16]).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        if let Some(s) = &secret {
            if crate::conn::authenticate(&mut conn, &entity, s).await.is_err() {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        }
        let have = tx.borrow().epoch;
        let sub = Body::Subscribe(Subscribe { items: vec![SubscribeItem { what: MapKind::OsdMap, start: have + 1, onetime: false }] });
        if conn.send(&sub, &[]).await.is_err() {
            continue;
        }
        while let Ok((_, body)) = conn.recv_body().await {
            let Body::OsdMap(d) = body else { continue };
            let mut map = (**tx.borrow()).clone();
            let mut ok = true;
            // Each map applied, for the history (only when kept).
            let mut applied: Vec<Arc<OsdMap>> = Vec::new();
            if let Some(full) = &d.full {
                match OsdMap::from_wire(full) {
                    Ok(m) => {
                        map = m;
                        if hist.is_some() {
                            applied.push(Arc::new(map.clone()));
                        }
                    }
                    Err(_) => ok = false,
                }
            }
            for inc in &d.incrementals {
                if inc.epoch <= map.epoch {
                    continue;
                }
                if map.apply(inc).is_err() {
                    ok = false;
                    break;
                }
                if hist.is_some() {
                    applied.push(Arc::new(map.clone()));
                }
            }
            if !ok {
                // A gap: ask again from what we have (a full map comes back).
                break;
            }
            if map.epoch > tx.borrow().epoch {
                if let Some((htx, keep)) = &hist {
                    // The history first: a reader woken by the newest map
                    // finds every epoch up to it there.
                    let mut h = (**htx.borrow()).clone();
                    for m in applied {
                        h.push(m, *keep);
                    }
                    let _ = htx.send(Arc::new(h));
                }
                let _ = tx.send(Arc::new(map));
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A connected cluster handle.
pub struct Rados {
    monc: Mutex<MonClient>,
    map: watch::Receiver<Arc<OsdMap>>,
    /// Open connections by shard address. A std lock: never held across
    /// an await.
    conns: std::sync::Mutex<HashMap<Arc<str>, OsdConn>>,
    targets: std::sync::Mutex<Targets>,
    entity: String,
    client_id: u64,
    next_tid: AtomicU64,
    in_flight: Semaphore,
    /// The OSD ticket and when to fetch a fresh one (before it expires).
    osd_creds: Mutex<Option<(OsdCreds, Instant)>>,
    mon_addrs: Vec<String>,
    secret: Option<sepia_proto::auth::key::Secret>,
    /// Whether we ask OSDs to sign frames (`ms_mode`).
    frame_mode: FrameMode,
}

/// Where each PG's primary shard listens, at one map: filled as ops ask,
/// emptied when the map changes. Bounded by the map's PG count.
struct Targets {
    map: Arc<OsdMap>,
    by_pg: HashMap<PgId, Option<Arc<str>>>,
}

/// A poisoned lock only means another thread panicked while holding it;
/// the caches behind ours stay consistent (each update is one insert or
/// remove), so the data is used as it is.
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Authenticates with one of the monitors and keeps the OSD ticket (and
/// when to renew it).
async fn osd_credentials(addrs: &[String], entity: &str, secret: &sepia_proto::auth::key::Secret) -> Result<(OsdCreds, Instant), RadosError> {
    let mut last = String::new();
    for addr in addrs {
        let attempt = async {
            let mut conn = Conn::connect(addr, entity, [0; 16]).await?;
            crate::conn::authenticate(&mut conn, entity, secret).await
        };
        match attempt.await {
            Ok(g) => {
                let renew_at = Instant::now() + crate::conn::renew_after(g.expires_ms);
                let ticket = g.tickets.into_iter().find(|t| t.service == "osd").ok_or_else(|| RadosError::BadReply("no OSD ticket granted".into()))?;
                return Ok(((g.session_key, ticket), renew_at));
            }
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    Err(RadosError::BadReply(format!("authentication failed: {last}")))
}

impl Rados {
    /// Connects to the monitors named in `conf` (or `mon_addrs`) and waits
    /// for the first OSDMap.
    pub async fn connect(mon_addrs: Vec<String>, entity: &str) -> Result<Arc<Rados>, RadosError> {
        Rados::connect_with_secret(mon_addrs, entity, None).await
    }

    /// Connects, authenticating as `entity` with `secret`.
    pub async fn connect_with_secret(mon_addrs: Vec<String>, entity: &str, secret: Option<sepia_proto::auth::key::Secret>) -> Result<Arc<Rados>, RadosError> {
        Rados::connect_in(mon_addrs, entity, secret, FrameMode::default()).await
    }

    /// Connects, authenticating as `entity` with `secret`, and asks OSDs for
    /// signed frames when `frame_mode` is `Sign` (monitors always sign).
    pub async fn connect_in(
        mon_addrs: Vec<String>,
        entity: &str,
        secret: Option<sepia_proto::auth::key::Secret>,
        frame_mode: FrameMode,
    ) -> Result<Arc<Rados>, RadosError> {
        let monc = MonClient::with_secret(mon_addrs.clone(), entity, secret.clone())?;
        let osd_creds = match &secret {
            Some(s) => Some(osd_credentials(&mon_addrs, entity, s).await?),
            None => None,
        };
        let (rados_mon_addrs, rados_secret) = (mon_addrs.clone(), secret.clone());
        let rx = watch_osdmap(mon_addrs, entity, secret);
        let client_id = u64::from_le_bytes(sepia_proto::uuid::random()[..8].try_into().expect("8 bytes"));
        let targets = Targets { map: rx.borrow().clone(), by_pg: HashMap::default() };
        let rados = Arc::new(Rados {
            monc: Mutex::new(monc),
            map: rx,
            conns: std::sync::Mutex::new(HashMap::default()),
            targets: std::sync::Mutex::new(targets),
            entity: entity.to_string(),
            client_id,
            next_tid: AtomicU64::new(1),
            in_flight: Semaphore::new(limits::ops_in_flight_max),
            osd_creds: Mutex::new(osd_creds),
            mon_addrs: rados_mon_addrs,
            secret: rados_secret,
            frame_mode,
        });
        rados.wait_for_epoch(1, Duration::from_millis(limits::op_timeout_ms)).await?;
        Ok(rados)
    }

    pub async fn connect_conf(conf: &Config, entity: &str) -> Result<Arc<Rados>, RadosError> {
        let secret = conf.secret_for(entity).map_err(|e| RadosError::BadReply(e))?;
        let mode = conf.get(entity, "ms_mode").map(FrameMode::parse).transpose().map_err(RadosError::BadReply)?.unwrap_or_default();
        Rados::connect_in(conf.mon_addrs(), entity, secret, mode).await
    }

    pub fn osdmap(&self) -> Arc<OsdMap> {
        self.map.borrow().clone()
    }

    async fn wait_for_epoch(&self, epoch: u32, timeout: Duration) -> Result<(), RadosError> {
        let mut rx = self.map.clone();
        let deadline = Instant::now() + timeout;
        while rx.borrow().epoch < epoch {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || tokio::time::timeout(left, rx.changed()).await.is_err() {
                return Err(RadosError::TimedOut(timeout.as_millis() as u64));
            }
        }
        Ok(())
    }

    /// An admin command through the monitors.
    pub async fn command(&self, args: &[String], json: bool) -> Result<sepia_proto::msg::CommandReply, RadosError> {
        Ok(self.monc.lock().await.command(args, json).await?)
    }

    pub fn ioctx(self: &Arc<Self>, pool: &str) -> Result<IoCtx, RadosError> {
        let map = self.osdmap();
        let p = map.pool_by_name(pool).ok_or_else(|| RadosError::NoPool(pool.to_string()))?;
        Ok(IoCtx { rados: self.clone(), pool: p.id, namespace: String::new() })
    }

    async fn conn(&self, addr: &Arc<str>) -> Result<OsdConn, ConnError> {
        if let Some(c) = lock(&self.conns).get(addr) {
            if !c.tx.is_closed() {
                return Ok(c.clone());
            }
        }
        let timeout = Duration::from_millis(limits::attempt_timeout_ms);
        let open = async {
            let creds = self.osd_creds().await;
            OsdConn::open(addr, &self.entity, creds.as_ref(), self.frame_mode).await
        };
        let c = tokio::time::timeout(timeout, open).await.map_err(|_| ConnError::Timeout(limits::attempt_timeout_ms))??;
        lock(&self.conns).insert(addr.clone(), c.clone());
        Ok(c)
    }

    /// The OSD ticket, fetched afresh from a monitor once its renewal time
    /// has come (a failed fetch keeps the old one until it expires).
    async fn osd_creds(&self) -> Option<OsdCreds> {
        let mut held = self.osd_creds.lock().await;
        let secret = self.secret.as_ref()?;
        if held.as_ref().is_some_and(|(_, at)| Instant::now() >= *at) {
            if let Ok(fresh) = osd_credentials(&self.mon_addrs, &self.entity, secret).await {
                *held = Some(fresh);
            }
        }
        held.as_ref().map(|(c, _)| c.clone())
    }

    /// Where a PG's primary shard listens, at `map`.
    fn primary_addr(map: &OsdMap, pg: PgId) -> Option<String> {
        let osd = map.pg_placement(pg).ok()?.acting_primary?;
        let shard = map.pg_shard(pg, osd)?;
        map.osd(osd)?.addrs.get(shard as usize).cloned()
    }

    /// [`Self::primary_addr`], computed once per PG and map.
    fn primary_target(&self, map: &Arc<OsdMap>, pg: PgId) -> Option<Arc<str>> {
        let mut t = lock(&self.targets);
        if !Arc::ptr_eq(&t.map, map) {
            t.map = map.clone();
            t.by_pg.clear();
        }
        t.by_pg.entry(pg).or_insert_with(|| Self::primary_addr(map, pg).map(Arc::from)).clone()
    }

    /// Sends `make(epoch)` to the primary of `pg` until it answers with
    /// something other than `-EAGAIN`, resending after map changes and
    /// connection failures, within the op deadline.
    async fn to_primary(&self, pg_of: impl Fn(&OsdMap) -> Result<PgId, RadosError>, make: impl Fn(u32, PgId) -> Body, data: &Arc<Vec<u8>>) -> Result<(Body, Vec<u8>), RadosError> {
        let _permit = self.in_flight.acquire().await.map_err(|_| RadosError::TimedOut(0))?;
        // The op's deadline starts at its first failed attempt; an attempt
        // itself is bounded by its connection (`conn_task`).
        let mut deadline: Option<Instant> = None;
        let mut last = None;
        for attempt in 0u64.. {
            if attempt > 0 {
                let d = *deadline.get_or_insert_with(|| Instant::now() + Duration::from_millis(limits::op_timeout_ms));
                if Instant::now() >= d {
                    break;
                }
            }
            let map = self.osdmap();
            let pg = pg_of(&map)?;
            let Some(addr) = self.primary_target(&map, pg) else {
                last = Some(format!("pg {pg} has no primary at epoch {}", map.epoch));
                let _ = self.wait_for_epoch(map.epoch + 1, Duration::from_millis(500)).await;
                continue;
            };
            let body = make(map.epoch, pg);
            let outcome = async {
                let conn = self.conn(&addr).await?;
                let (tx, rx) = oneshot::channel();
                conn.tx.send(ConnRequest { body, data: data.clone(), reply: tx }).await.map_err(|_| ConnError::Closed)?;
                rx.await.map_err(|_| ConnError::Closed)?
            };
            match outcome.await {
                Ok((body, rdata)) => {
                    let (result, epoch) = match &body {
                        Body::OsdOpReply(r) => (r.result, r.epoch),
                        Body::PgListReply(r) => (r.result, r.epoch),
                        other => return Err(RadosError::BadReply(format!("unexpected {}", sepia_proto::msg::type_name(other.msg_type())))),
                    };
                    if result != Errno::Again.result() {
                        return Ok((body, rdata));
                    }
                    last = Some(format!("osd at {addr} answered EAGAIN at epoch {epoch}"));
                    let _ = self.wait_for_epoch(epoch.max(map.epoch + 1), Duration::from_millis(1000)).await;
                }
                Err(ConnError::Timeout(ms)) => {
                    last = Some(format!("{addr}: no reply in {ms} ms"));
                    lock(&self.conns).remove(&addr);
                }
                Err(e) => {
                    last = Some(format!("{addr}: {e}"));
                    lock(&self.conns).remove(&addr);
                    let _ = self.wait_for_epoch(map.epoch + 1, Duration::from_millis(500)).await;
                }
            }
        }
        Err(RadosError::BadReply(format!("op timed out: {}", last.as_deref().unwrap_or("no attempt"))))
    }

    /// Runs one compound op on `object`; resent (same request id, so the
    /// PG log recognises a write it already applied) until it is answered.
    pub async fn operate(&self, pool: PoolId, object: ObjectId, subops: Vec<SubOp>, data: Vec<u8>) -> Result<(OsdOpReply, Vec<u8>), RadosError> {
        let tid = self.next_tid.fetch_add(1, Ordering::Relaxed);
        self.operate_with_tid(pool, object, subops, data, tid).await
    }

    /// [`Rados::operate`] with a caller-chosen transaction id: sending the
    /// same id twice is a resend, which the PG log answers with the first
    /// outcome instead of applying the write again.
    pub async fn operate_with_tid(&self, pool: PoolId, object: ObjectId, subops: Vec<SubOp>, data: Vec<u8>, tid: u64) -> Result<(OsdOpReply, Vec<u8>), RadosError> {
        let reqid = ReqId { client: self.client_id, tid };
        let pg_of = |map: &OsdMap| {
            let p = map.pools.get(&pool).ok_or_else(|| RadosError::NoPool(pool.to_string()))?;
            let locator = if object.locator.is_empty() { None } else { Some(object.locator.as_str()) };
            Ok(p.object_pg(&object.name, locator, &object.namespace))
        };
        let make = |epoch, pg| Body::OsdOp(OsdOp { reqid, pg, epoch, object: object.clone(), subops: subops.clone() });
        match self.to_primary(pg_of, make, &Arc::new(data)).await? {
            (Body::OsdOpReply(r), d) => Ok((r, d)),
            _ => Err(RadosError::BadReply("not an op reply".into())),
        }
    }

    /// Lists the objects of one PG (a page from `after`).
    pub async fn pg_list(&self, pg: PgId, namespace: &str, after: &str, max: u32) -> Result<PgListReply, RadosError> {
        let reqid = ReqId { client: self.client_id, tid: self.next_tid.fetch_add(1, Ordering::Relaxed) };
        let make = |epoch, pg| Body::PgList(PgList { reqid, pg, epoch, namespace: namespace.to_string(), after: after.to_string(), max });
        match self.to_primary(|_| Ok(pg), make, &Arc::new(Vec::new())).await? {
            (Body::PgListReply(r), _) if r.result == 0 => Ok(r),
            (Body::PgListReply(r), _) => Err(RadosError::from_result(r.result)),
            _ => Err(RadosError::BadReply("not a list reply".into())),
        }
    }
}

/// Object I/O in one pool (and namespace).
#[derive(Clone)]
pub struct IoCtx {
    rados: Arc<Rados>,
    pool: PoolId,
    namespace: String,
}

/// What `stat` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectStat {
    pub size: u64,
    pub mtime_ms: u64,
}

impl IoCtx {
    pub fn set_namespace(&mut self, ns: &str) {
        self.namespace = ns.to_string();
    }

    fn oid(&self, name: &str) -> ObjectId {
        ObjectId { name: name.to_string(), locator: String::new(), namespace: self.namespace.clone() }
    }

    /// A compound op; fails with the op's errno if it failed.
    pub async fn operate(&self, name: &str, subops: Vec<SubOp>, data: Vec<u8>) -> Result<(Vec<SubOpOut>, Vec<u8>), RadosError> {
        let (reply, rdata) = self.rados.operate(self.pool, self.oid(name), subops, data).await?;
        if reply.result != 0 {
            return Err(RadosError::from_result(reply.result));
        }
        Ok((reply.outs, rdata))
    }

    pub async fn write(&self, name: &str, offset: u64, data: &[u8]) -> Result<(), RadosError> {
        let len = u32::try_from(data.len()).map_err(|_| RadosError::Errno(Errno::FBig))?;
        self.operate(name, vec![SubOp::Write { offset, data_offset: 0, len }], data.to_vec()).await.map(|_| ())
    }

    pub async fn write_full(&self, name: &str, data: &[u8]) -> Result<(), RadosError> {
        let len = u32::try_from(data.len()).map_err(|_| RadosError::Errno(Errno::FBig))?;
        self.operate(name, vec![SubOp::WriteFull { data_offset: 0, len }], data.to_vec()).await.map(|_| ())
    }

    pub async fn append(&self, name: &str, data: &[u8]) -> Result<(), RadosError> {
        let len = u32::try_from(data.len()).map_err(|_| RadosError::Errno(Errno::FBig))?;
        self.operate(name, vec![SubOp::Append { data_offset: 0, len }], data.to_vec()).await.map(|_| ())
    }

    pub async fn truncate(&self, name: &str, size: u64) -> Result<(), RadosError> {
        self.operate(name, vec![SubOp::Truncate { size }], Vec::new()).await.map(|_| ())
    }

    pub async fn remove(&self, name: &str) -> Result<(), RadosError> {
        self.operate(name, vec![SubOp::Remove], Vec::new()).await.map(|_| ())
    }

    /// Reads `len` bytes at `offset` (`len == 0`: to the end).
    pub async fn read(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>, RadosError> {
        let (outs, mut data) = self.operate(name, vec![SubOp::Read { offset, len }], Vec::new()).await?;
        match outs.first().map(|o| &o.value) {
            Some(SubOpValue::Data { data_offset, len }) => {
                let start = *data_offset as usize;
                let end = start.checked_add(*len as usize).filter(|&e| e <= data.len()).ok_or_else(|| RadosError::BadReply("read reply outside its data".into()))?;
                // The reply's data is the read: hand it over, not a copy.
                if start == 0 {
                    data.truncate(end);
                    return Ok(data);
                }
                Ok(data[start..end].to_vec())
            }
            _ => Err(RadosError::BadReply("read reply without data".into())),
        }
    }

    /// Every object name in the pool (namespace), PG by PG.
    pub async fn list(&self) -> Result<Vec<String>, RadosError> {
        let map = self.rados.osdmap();
        let pg_num = map.pools.get(&self.pool).ok_or_else(|| RadosError::NoPool(self.pool.to_string()))?.pg_num;
        let mut names = Vec::new();
        for seed in 0..pg_num {
            let pg = PgId { pool: self.pool, seed };
            let mut after = String::new();
            loop {
                let page = self.rados.pg_list(pg, &self.namespace, &after, 1024).await?;
                after = page.objects.last().cloned().unwrap_or_default();
                names.extend(page.objects);
                if !page.more {
                    break;
                }
            }
        }
        Ok(names)
    }

    pub async fn stat(&self, name: &str) -> Result<ObjectStat, RadosError> {
        let (outs, _) = self.operate(name, vec![SubOp::Stat], Vec::new()).await?;
        match outs.first().map(|o| &o.value) {
            Some(SubOpValue::Stat { size, mtime_ms }) => Ok(ObjectStat { size: *size, mtime_ms: *mtime_ms }),
            _ => Err(RadosError::BadReply("stat reply without stat".into())),
        }
    }
}
