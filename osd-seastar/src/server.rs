//! The shard server: one glommio executor per shard, its listening socket,
//! its store, and the object ops of the PGs it owns.
//!
//! A client op reaches the shard that owns its PG on the acting primary;
//! any other shard, or an op from a newer map than ours (after a short
//! wait for that map), or one computed with a different primary, or one
//! for a PG that has not finished peering (or an object not yet recovered
//! here), is answered `-EAGAIN` with our epoch so the client recomputes
//! and resends. Reads are served from the local store; writes are handed
//! to the PG (`pgs`), which orders them in its log, sends them to the
//! other members' owning shards, applies them locally and answers once
//! every member has them durable. Connections present an authorizer
//! (ticket) first when the cluster requires auth; ops are checked against
//! the ticket's osd caps.
//!
//! Not yet here (issue #7 continues): backfill for a member behind the
//! log tail, watch/notify.
//!
//! Invariant: nothing here blocks the executor — every wait is an await —
//! and nothing crosses to another core: peers are other processes' (or
//! other shards') sockets.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use sepia_proto::errno::Errno;
use sepia_proto::frame::FrameDecoder;
use sepia_proto::hello::{self, FrameMode};
use sepia_proto::msg::{
    self, Body, CmpOp, EVersion, ObjectId, OsdOp, OsdOpReply, PgList, PgListReply, RepOpReply, ReqId, SubOp, SubOpOut, SubOpValue,
};
use sepia_proto::osdmap::{Epoch, OsdId, OsdMap, PgId};
use sepia_proto::auth::caps::{Caps, Grant, Perm};
use sepia_proto::auth::entity::EntityType;
use sepia_proto::auth::mac::SessionKey;
use tokio::sync::{oneshot, watch};

use crate::objstore::{CollId, DmaDevice, Op, Store, StoreError};

/// The shard's hash maps: foldhash, seeded at random per map (keys come
/// from clients and peers; std's SipHash cost ~1% of a read's CPU in the
/// object locks alone).
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// Bounds of the shard server.
pub mod limits {
    #![allow(non_upper_case_globals)]
    /// Bytes read from a socket per call.
    pub const read_chunk_bytes: usize = 256 << 10;
    /// How long an op from a newer map waits for that map to arrive.
    pub const map_wait_ms: u64 = 2_000;
    /// How long the primary waits for a replica's answer.
    pub const replica_timeout_ms: u64 = 10_000;
    /// Requests in flight per connection (the client's window is smaller).
    pub const conn_in_flight_max: usize = 256;
    /// Free space a client write must leave: other members of the acting
    /// set may be fuller than we are, and a write the PG log ordered must
    /// not fail for space anywhere.
    pub const space_reserve_bytes: u64 = 4 << 20;
    /// Metadata headroom a client write must leave, for the same reason
    /// (and for the PG log entries of removes and recovery).
    pub const metadata_reserve_bytes: u64 = 256 << 10;
    /// A frame whose data segment is at most this is copied into one buffer
    /// and written at once (a syscall and a TCP segment cost more than the
    /// copy); bigger data is written from where it lies.
    pub const coalesced_data_bytes_max: usize = 64 << 10;
    /// Small frames queued behind one another share a chunk up to this
    /// size (one write each).
    pub const write_chunk_bytes_max: usize = 256 << 10;
    /// Replies that wait for each other to leave in one send, at most. The
    /// device completes a depth's reads together; sending all their replies
    /// at once made the client work through them while this shard and the
    /// device sat idle, then send all its next requests at once (a convoy).
    /// Groups let the client start on the first while we build the rest.
    /// Measured at size-1 depth-32 reads on a 2-vCPU VM: 0.48-0.54x raw
    /// ungrouped, 0.63-0.73x with groups of 2 to 16.
    pub const reply_group_frames_max: usize = 8;
    /// How long a shard polls for work before it sleeps (Seastar's idle
    /// poll, 200 us there). Waking a sleeping core costs an interrupt and,
    /// in a VM, a halt exit (here ~150 us per wakeup, measured with a TCP
    /// ping-pong); polling a little longer than a client's turnaround
    /// keeps the next request from paying it. Measured on a 2-core VM:
    /// depth-32 and size-3 depth-1 IOPS up to 2x over no polling.
    /// Only shards pinned to a core poll (`--cores`, `--plan`): glommio
    /// never polls an unpinned executor, and that suits a machine with
    /// more shards than cores (polling the embedded cluster's three
    /// unpinned OSDs on 2 vCPUs cut size-3 depth-1 write IOPS by 20-35%).
    pub const idle_poll_us_default: u64 = 150;
    /// Above this a shard would mostly burn its core while idle.
    pub const idle_poll_us_max: u64 = 10_000;
    /// Storage requests a task may leave queued before the shard hands
    /// them to the kernel on the spot rather than between task queue runs
    /// (`osd_submit_batch`; 0 = off, the default). Early submits keep a
    /// device-bound shard's disk busy while a burst of completions is
    /// processed (store bench, depth-32 reads: 0.89x -> 1.03x raw), but
    /// each is one more `io_uring_enter`: on the embedded cluster, CPU
    /// bound on 2 vCPUs, 4 was neutral and 8 cost size-3 writes ~10%.
    pub const submit_batch_default: usize = 0;
    /// Larger batches are what the executor submits between runs anyway.
    pub const submit_batch_max: usize = 1024;
}

/// The store key of an object: namespace and name (the locator only chose
/// the PG).
pub fn object_key(o: &ObjectId) -> String {
    if o.namespace.is_empty() {
        o.name.clone()
    } else {
        format!("{}\u{1f}{}", o.namespace, o.name)
    }
}

pub(crate) fn coll_of(pg: PgId) -> CollId {
    CollId { pool: pg.pool, seed: pg.seed }
}

/// A connection to another OSD shard, for replica ops.
pub(crate) struct PeerConn {
    writer: FrameWriter,
    /// Set once the peer accepted our authorizer.
    mac: RefCell<Option<SessionKey>>,
    waiting: RefCell<HashMap<u64, oneshot::Sender<Body>>>,
    next_txid: Cell<u64>,
    pub(crate) alive: Cell<bool>,
}

pub struct Shard {
    pub osd: OsdId,
    pub shard: u32,
    pub store: Store<DmaDevice>,
    pub maps: watch::Receiver<Arc<OsdMap>>,
    /// The last maps, every epoch (see `crate::monlink`): the PGs walk
    /// each one.
    pub(crate) history: watch::Receiver<Arc<sepia_client::rados::OsdMapHistory>>,
    /// The newest epoch this shard had fed its PGs and recorded before
    /// this start (0: none).
    pub(crate) durable_epoch: Cell<Epoch>,
    peers: RefCell<HashMap<String, Rc<PeerConn>>>,
    /// The PGs whose copy on this OSD lives on this shard.
    pub(crate) pgs: RefCell<BTreeMap<PgId, crate::pgs::PgSlot>>,
    /// The newest map the PGs were fed.
    pub(crate) pgs_epoch: Cell<Epoch>,
    /// Client writes waiting for their PG's answer, by request id.
    pub(crate) replies: RefCell<HashMap<ReqId, Vec<oneshot::Sender<(i32, EVersion)>>>>,
    /// PG store transactions, planned in order by `apply_loop`.
    pub(crate) applies: tokio::sync::mpsc::Sender<crate::pgs::ApplyItem>,
    applies_rx: RefCell<Option<tokio::sync::mpsc::Receiver<crate::pgs::ApplyItem>>>,
    /// Object versions set by recovery applies that are queued but not yet
    /// planned, so not yet in the store's version records (at most one per
    /// queued apply).
    pub(crate) queued_versions: RefCell<HashMap<(PgId, ObjectId), EVersion>>,
    /// One ordered queue of one-way messages per peer shard address.
    pub(crate) outboxes: RefCell<HashMap<String, tokio::sync::mpsc::Sender<(Body, Payload)>>>,
    /// Peers that answered a ping since the heartbeat loop last looked.
    pongs: RefCell<Vec<OsdId>>,
    /// One lock per object with an op in progress: ops on one object run
    /// one after the other (checks, replication and all), so replicas see
    /// them in the primary's order.
    object_locks: RefCell<HashMap<(CollId, String), Rc<async_lock::Mutex<()>>>>,
    /// Failure reports to the monitors (shard 0 runs the heartbeats).
    reports: Option<tokio::sync::mpsc::Sender<crate::monlink::Report>>,
    /// The OSD service key and our own ticket, from the monitor link.
    auth: watch::Receiver<Option<Arc<crate::monlink::OsdAuth>>>,
    /// Refuse ops from connections without a valid ticket.
    pub auth_required: bool,
    /// Whether we ask every connection, ours and theirs, to sign frames.
    frame_mode: FrameMode,
}

/// The sending half of a connection. Frames are queued and one task at a
/// time writes out everything queued, so replies that complete together
/// leave in one write (one syscall, one TCP segment, one wakeup of the
/// peer) instead of one each.
///
/// Invariant: the stream is out of its cell exactly while a task writes
/// (`writing`); frames leave in the order they were queued.
pub(crate) struct FrameWriter {
    stream: RefCell<Option<futures_lite::io::WriteHalf<TcpStream>>>,
    /// Byte chunks in send order; small frames share the last chunk.
    queue: RefCell<std::collections::VecDeque<Vec<u8>>>,
    /// A task waits (yielded) to write out what others queue meanwhile.
    flushing: Cell<bool>,
    /// Frames queued since the last write began (a group leaves at
    /// `reply_group_frames_max`).
    queued: Cell<usize>,
    /// A write failed: the connection is dead and nothing more is queued.
    failed: Cell<bool>,
}

/// A frame's data segment: owned, or a client write's payload shared with
/// the PG, so that a replica message does not copy it once per replica.
pub(crate) enum Payload {
    Owned(Vec<u8>),
    Write(crate::pgs::WriteRef),
    /// A read's bytes in the buffer they were read into, with their crc32
    /// when the store has it.
    Read(crate::objstore::ReadBytes, Option<u32>),
}

impl Default for Payload {
    fn default() -> Payload {
        Payload::Owned(Vec::new())
    }
}

impl Payload {
    fn as_slice(&self) -> &[u8] {
        match self {
            Payload::Owned(v) => v,
            Payload::Write(w) => &w.data,
            Payload::Read(r, _) => r.as_ref(),
        }
    }

    /// Appends `bytes`, owning the data from then on.
    fn extend_from_slice(&mut self, bytes: &[u8]) {
        let mut v = std::mem::take(self).into_vec();
        v.extend_from_slice(bytes);
        *self = Payload::Owned(v);
    }

    /// Owned bytes, copied only when shared (data above
    /// `limits::coalesced_data_bytes_max`, which is queued whole).
    fn into_vec(self) -> Vec<u8> {
        match self {
            Payload::Owned(v) => v,
            Payload::Write(w) => Rc::try_unwrap(w).map_or_else(|w| w.data.clone(), |w| w.data),
            Payload::Read(r, _) => r.into_vec(),
        }
    }
}

impl From<Vec<u8>> for Payload {
    fn from(v: Vec<u8>) -> Payload {
        Payload::Owned(v)
    }
}

impl FrameWriter {
    pub(crate) fn new(stream: futures_lite::io::WriteHalf<TcpStream>) -> FrameWriter {
        FrameWriter { stream: RefCell::new(Some(stream)), queue: RefCell::new(Default::default()), flushing: Cell::new(false), queued: Cell::new(0), failed: Cell::new(false) }
    }

    /// Queues one frame and, unless another task is already writing (it
    /// will take this frame too), writes out the queue: at once when it
    /// holds a group's worth of frames, else after the tasks made ready
    /// with this one queued theirs. `Ok` means queued on a connection that
    /// has not failed.
    pub(crate) async fn send(&self, body: &Body, txid: u64, data: impl Into<Payload>, mac: Option<&SessionKey>) -> std::io::Result<()> {
        self.enqueue(body, txid, data, mac)?;
        if self.queued.get() >= limits::reply_group_frames_max && !self.writing() {
            return self.write_out().await;
        }
        self.flush_queue().await
    }

    /// Queues one frame without writing (a batch ends with `flush_queue`).
    pub(crate) fn enqueue(&self, body: &Body, txid: u64, data: impl Into<Payload>, mac: Option<&SessionKey>) -> std::io::Result<()> {
        if self.failed.get() {
            return Err(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "connection failed"));
        }
        let data: Payload = data.into();
        let data_crc = match &data {
            Payload::Read(_, crc) => *crc,
            _ => None,
        };
        let f = msg::encode_with_data_crc(body, txid, data.as_slice(), data_crc, mac.map(|k| k as &dyn sepia_proto::frame::FrameMac)).map_err(|e| std::io::Error::other(e.to_string()))?;
        self.queued.set(self.queued.get() + 1);
        {
            let mut q = self.queue.borrow_mut();
            if data.as_slice().len() <= limits::coalesced_data_bytes_max {
                match q.back_mut() {
                    Some(last) if last.len() < limits::write_chunk_bytes_max => f.append_to(last),
                    _ => {
                        // Room for a group of frames like this one: the
                        // replies of one reactor poll then fill the chunk
                        // without reallocating (each growth copied what
                        // was queued so far).
                        let mut chunk = Vec::with_capacity(f.len().saturating_mul(limits::reply_group_frames_max).min(limits::write_chunk_bytes_max).max(f.len()));
                        f.append_to(&mut chunk);
                        q.push_back(chunk);
                    }
                }
            } else {
                // Large data leaves from its own buffer, not copied.
                let mut head = Vec::with_capacity(f.header.len() + f.body.len());
                head.extend_from_slice(&f.header);
                head.extend_from_slice(&f.body);
                let tag = f.mac.map(|m| m.to_vec()).unwrap_or_default();
                drop(f);
                q.push_back(head);
                q.push_back(data.into_vec());
                q.push_back(tag);
            }
        }
        Ok(())
    }

    /// Writes out everything queued, unless another task is already at it
    /// (it takes what was queued too).
    pub(crate) async fn flush_queue(&self) -> std::io::Result<()> {
        if self.failed.get() {
            return Err(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "connection failed"));
        }
        if self.flushing.get() {
            return Ok(());
        }
        self.flushing.set(true);
        // Let the other tasks made ready by the same reactor poll (replies
        // whose reads or commits completed together) queue theirs first:
        // one send then carries them all. A send to loopback completes
        // inline, so without this each reply was its own syscall.
        futures_lite::future::yield_now().await;
        self.flushing.set(false);
        if self.writing() {
            return Ok(());
        }
        self.write_out().await
    }

    /// A task has the stream out of its cell and is writing.
    fn writing(&self) -> bool {
        self.stream.borrow().is_none()
    }

    async fn write_out(&self) -> std::io::Result<()> {
        self.queued.set(0);
        let mut stream = self.stream.borrow_mut().take().expect("the stream is home when no task writes");
        let result = async {
            loop {
                let chunk = self.queue.borrow_mut().pop_front();
                match chunk {
                    Some(c) if c.is_empty() => {}
                    Some(c) => stream.write_all(&c).await?,
                    None => {
                        stream.flush().await?;
                        // Frames queued while the flush waited would
                        // otherwise wait for the next send.
                        if self.queue.borrow().is_empty() {
                            return Ok(());
                        }
                    }
                }
            }
        }
        .await;
        *self.stream.borrow_mut() = Some(stream);
        if result.is_err() {
            self.failed.set(true);
            self.queue.borrow_mut().clear();
        }
        result
    }
}

fn wall_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// How far an authorizer's timestamp may be from our clock.
const AUTHORIZER_WINDOW_MS: u64 = 300_000;

impl Shard {
    // (Each argument is one of the shard's own links; grouping them would
    // only move the list.)
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        osd: OsdId,
        shard: u32,
        store: Store<DmaDevice>,
        maps: watch::Receiver<Arc<OsdMap>>,
        history: watch::Receiver<Arc<sepia_client::rados::OsdMapHistory>>,
        reports: Option<tokio::sync::mpsc::Sender<crate::monlink::Report>>,
        auth: watch::Receiver<Option<Arc<crate::monlink::OsdAuth>>>,
        auth_required: bool,
        frame_mode: FrameMode,
    ) -> Shard {
        let (applies, applies_rx) = tokio::sync::mpsc::channel(crate::pgs::limits::apply_queue_max);
        // The PGs resume their walk after the epoch recorded last time.
        let recorded = crate::pgs::recorded_map(&store).map_or(0, |m| m.epoch);
        Shard {
            pgs: RefCell::new(BTreeMap::new()),
            pgs_epoch: Cell::new(recorded),
            durable_epoch: Cell::new(recorded),
            history,
            replies: RefCell::new(HashMap::default()),
            applies,
            applies_rx: RefCell::new(Some(applies_rx)),
            queued_versions: RefCell::new(HashMap::default()),
            outboxes: RefCell::new(HashMap::default()),
            osd,
            shard,
            store,
            maps,
            peers: RefCell::new(HashMap::default()),
            pongs: RefCell::new(Vec::new()),
            object_locks: RefCell::new(HashMap::default()),
            reports,
            auth,
            auth_required,
            frame_mode,
        }
    }

    /// The OSDs we share a PG with (our heartbeat peers), up in `map`,
    /// each with the epoch its current life began.
    fn heartbeat_peers(&self, map: &OsdMap) -> Vec<(OsdId, sepia_proto::osdmap::Epoch)> {
        let mut peers = std::collections::BTreeSet::new();
        let weights = map.crush_weights();
        let mut ws = crush_simd::Workspace::new();
        for pool in map.pools.values() {
            for seed in 0..pool.pg_num.min(4096) {
                let placed = map.pg_placement_with(pool, PgId { pool: pool.id, seed }, &weights, &mut ws);
                if placed.up.contains(&self.osd) {
                    peers.extend(placed.up.iter().copied().filter(|&o| o != self.osd && o != crush_simd::ITEM_NONE));
                }
            }
        }
        peers.into_iter().filter(|&o| map.is_up(o)).filter_map(|o| map.osd(o).map(|i| (o, i.up_from))).collect()
    }

    /// Pings the peers and reports the silent ones (run on shard 0).
    pub async fn heartbeats(self: Rc<Self>, config: crate::heartbeat::HeartbeatConfig) {
        use crate::heartbeat::{HbEffect, Heartbeat};
        use crate::monlink::Report;
        let start = std::time::Instant::now();
        let now = || start.elapsed().as_millis() as u64;
        let mut hb = Heartbeat::new(config.clone());
        let mut epoch = 0;
        loop {
            let map = self.map();
            if map.epoch != epoch {
                epoch = map.epoch;
                hb.set_peers(self.heartbeat_peers(&map), now());
            }
            let mut out = Vec::new();
            hb.tick(now(), &mut out);
            for e in out {
                match e {
                    HbEffect::Ping { to, stamp_ms } => {
                        let me = self.clone();
                        let map = map.clone();
                        glommio::spawn_local(async move {
                            let Some(addr) = map.osd(to).and_then(|o| o.addrs.first().cloned()) else { return };
                            let ping = Body::Ping(sepia_proto::msg::Ping { from: me.osd, epoch: map.epoch, stamp_ms, reply: false });
                            if me.request(&addr, ping, &[]).await.is_ok() {
                                me.pongs.borrow_mut().push(to);
                            }
                        })
                        .detach();
                    }
                    HbEffect::Report { target, failed_for_ms } => {
                        if let Some(r) = &self.reports {
                            let _ = r.try_send(Report::Failure { target, failed_for_ms, still_failed: true });
                        }
                    }
                    HbEffect::Withdraw { target } => {
                        if let Some(r) = &self.reports {
                            let _ = r.try_send(Report::Failure { target, failed_for_ms: 0, still_failed: false });
                        }
                    }
                }
            }
            let pongs: Vec<OsdId> = std::mem::take(&mut *self.pongs.borrow_mut());
            let mut out = Vec::new();
            for p in pongs {
                hb.pong(p, now(), &mut out);
            }
            for e in out {
                if let (HbEffect::Withdraw { target }, Some(r)) = (e, &self.reports) {
                    let _ = r.try_send(Report::Failure { target, failed_for_ms: 0, still_failed: false });
                }
            }
            glommio::timer::sleep(Duration::from_millis(config.interval_ms / 2)).await;
        }
    }

    pub(crate) fn map(&self) -> Arc<OsdMap> {
        self.maps.borrow().clone()
    }

    /// Our map at least at `epoch`, if it arrives soon.
    pub(crate) async fn map_at_least(&self, epoch: Epoch) -> Arc<OsdMap> {
        let mut rx = self.maps.clone();
        let wait = async {
            while rx.borrow().epoch < epoch {
                if rx.changed().await.is_err() {
                    break;
                }
            }
        };
        let _ = futures_lite::future::or(async { wait.await; true }, async {
            glommio::timer::sleep(Duration::from_millis(limits::map_wait_ms)).await;
            false
        })
        .await;
        self.map()
    }

    /// Serves the listener until the executor stops; runs the PGs.
    pub async fn serve(self: Rc<Self>, listener: TcpListener) {
        if let Some(rx) = self.applies_rx.borrow_mut().take() {
            glommio::spawn_local(self.clone().apply_loop(rx)).detach();
            glommio::spawn_local(self.clone().pg_ticker()).detach();
        }
        loop {
            match listener.accept().await {
                Ok(stream) => {
                    let me = self.clone();
                    glommio::spawn_local(async move {
                        let (osd, shard) = (me.osd, me.shard);
                        if let Err(e) = me.serve_conn(stream).await {
                            if e.kind() != std::io::ErrorKind::UnexpectedEof {
                                eprintln!("osd.{osd} shard {shard}: connection: {e}");
                            }
                        }
                    })
                    .detach();
                }
                Err(e) => {
                    eprintln!("osd.{} shard {}: accept: {e}", self.osd, self.shard);
                    glommio::timer::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    async fn serve_conn(self: Rc<Self>, stream: TcpStream) -> std::io::Result<()> {
        use sepia_proto::auth::{ticket, AuthMessage};
        stream.set_nodelay(true).ok();
        let (mut reader, writer) = futures_lite::io::split(stream);
        let writer = Rc::new(FrameWriter::new(writer));
        let mut decoder = FrameDecoder::new(msg::known_type);
        let mut buf = vec![0u8; limits::read_chunk_bytes];
        let in_flight = Rc::new(Cell::new(0usize));
        let fsid = self.map().fsid;
        // After an accepted authorizer: the session key (frames are MACed
        // both ways) and the entity's OSD caps.
        let mac: Rc<RefCell<Option<SessionKey>>> = Rc::new(RefCell::new(None));
        let mut caps: Option<Rc<Caps>> = None;
        // From the hello: whether frames are signed once authenticated (a
        // connection that skipped hello signs), and the challenge its
        // authorizer must cover (0 until hello: no authorizer passes).
        let mut signed = true;
        let mut challenge = 0u64;
        // Whether the authenticated entity may speak OSD to OSD (peering,
        // replica writes): an OSD, or a key with unrestricted OSD caps (an
        // admin; dev OSDs without keys of their own run as client.admin).
        // A client limited to a pool must never reach a PG's log this way.
        let mut peer_ok = false;
        loop {
            let n = reader.read(&mut buf).await?;
            if n == 0 {
                return Ok(());
            }
            let mut frames = Vec::new();
            decoder.feed(&buf[..n], &mut frames).map_err(|e| std::io::Error::other(format!("bad frame: {e}")))?;
            for mut f in frames {
                let txid = f.header.txid;
                let body = msg::decode(&f).map_err(|e| std::io::Error::other(format!("bad body: {e}")))?;
                let data = f.take_data();
                match body {
                    Body::Hello(theirs) => {
                        let ours = hello::local_hello_in(&format!("osd.{}", self.osd), fsid, self.frame_mode);
                        let (mut reply, negotiated) = hello::reply(&ours, &theirs);
                        if let Ok(n) = negotiated {
                            signed = n.frames_signed();
                            challenge = hello::random_challenge();
                            reply.challenge = challenge;
                        }
                        writer.send(&Body::HelloReply(reply), txid, Vec::new(), None).await?;
                    }
                    Body::Auth(AuthMessage::Authorize(a)) => {
                        let keys = self.auth.borrow().as_ref().map(|x| x.keys.clone());
                        let verdict = match keys {
                            None => Err("this OSD has no service key yet".to_string()),
                            Some(_) if challenge == 0 => Err("an authorizer needs a hello first".to_string()),
                            Some(k) => ticket::verify_authorizer(&a, &k, "osd", challenge, wall_ms(), AUTHORIZER_WINDOW_MS).map_err(|e| e.to_string()),
                        };
                        match verdict {
                            Ok(t) => {
                                let c = t.caps.get("osd").and_then(|c| Caps::parse(c).ok()).unwrap_or_default();
                                writer.send(&Body::Auth(AuthMessage::Authorized { result: 0 }), txid, Vec::new(), None).await?;
                                if signed {
                                    let key = SessionKey(t.session_key);
                                    decoder.set_session_key(Box::new(key.clone()));
                                    *mac.borrow_mut() = Some(key);
                                }
                                peer_ok = t.entity.kind == EntityType::Osd || unrestricted(&c);
                                caps = Some(Rc::new(c));
                            }
                            Err(why) => {
                                let refused = AuthMessage::Refused { result: Errno::Access.result(), reason: why };
                                writer.send(&Body::Auth(refused), txid, Vec::new(), None).await?;
                            }
                        }
                    }
                    body @ (Body::PgPeer(_) | Body::RepOp(_)) => {
                        // In arrival order: a PG's messages must not overtake
                        // each other. Only from authenticated peers.
                        if self.auth_required && !peer_ok {
                            return Err(std::io::Error::other("OSD-to-OSD message from an entity that is not an OSD"));
                        }
                        self.pg_input(body, data).await;
                    }
                    body => {
                        if in_flight.get() >= limits::conn_in_flight_max {
                            return Err(std::io::Error::other("peer exceeded its in-flight window"));
                        }
                        in_flight.set(in_flight.get() + 1);
                        let (me, writer, in_flight, mac, caps) = (self.clone(), writer.clone(), in_flight.clone(), mac.clone(), caps.clone());
                        let fut = async move {
                            let (reply, rdata) = if me.auth_required && caps.is_none() {
                                (me.refuse(&body), Payload::default())
                            } else {
                                me.handle(body, data, caps.as_deref()).await
                            };
                            if let Some(reply) = reply {
                                let key = mac.borrow().clone();
                                let _ = writer.send(&reply, txid, rdata, key.as_ref()).await;
                            }
                            in_flight.set(in_flight.get() - 1);
                        };
                        // Boxed once here: glommio's spawn would otherwise
                        // copy the whole (KiB-sized) future more than once.
                        glommio::spawn_local(Box::pin(fut)).detach();
                    }
                }
            }
        }
    }

    /// The `-EACCES` answer to a request from a connection without a ticket.
    fn refuse(&self, body: &Body) -> Option<Body> {
        let epoch = self.map().epoch;
        let denied = Errno::Access.result();
        match body {
            Body::OsdOp(op) => Some(Body::OsdOpReply(self.reply(op.reqid, denied, epoch))),
            Body::PgList(l) => Some(Body::PgListReply(PgListReply { reqid: l.reqid, result: denied, epoch, objects: Vec::new(), more: false })),
            Body::RepOp(op) => Some(Body::RepOpReply(RepOpReply { reqid: op.reqid, pg: op.pg, epoch, version: op.version, result: denied })),
            _ => None,
        }
    }

    async fn handle(self: &Rc<Self>, body: Body, data: Vec<u8>, caps: Option<&Caps>) -> (Option<Body>, Payload) {
        match body {
            Body::OsdOp(op) => {
                // Caps: reads need r, writes rw, in the op's pool and namespace.
                if let Some(c) = caps {
                    let map = self.map();
                    let pool = map.pools.get(&op.pg.pool).map(|p| p.name.as_str());
                    let need = if op.is_write() { Perm { r: true, w: true, x: false } } else { Perm::READ };
                    if !c.allows("osd", pool, &op.object.namespace, &op.object.name, need) {
                        return (Some(Body::OsdOpReply(self.reply(op.reqid, Errno::Access.result(), map.epoch))), Payload::default());
                    }
                }
                let (r, d) = self.client_op(op, data).await;
                (Some(Body::OsdOpReply(r)), d)
            }
            // Boxed: rare, and its future would size every op's task.
            Body::PgList(l) => (Some(Body::PgListReply(Box::pin(self.pg_list(l)).await)), Payload::default()),
            Body::Ping(mut p) => {
                p.from = self.osd;
                p.reply = true;
                (Some(Body::Ping(p)), Payload::default())
            }
            _ => (None, Payload::default()),
        }
    }

    /// `Some(acting set size)` when we are the acting primary's owning
    /// shard for `pg` in `map` (our PGs must have been fed `map` first).
    fn primary_acting_len(&self, map: &OsdMap, pg: PgId) -> Option<usize> {
        if map.pg_shard(pg, self.osd) != Some(self.shard) {
            return None;
        }
        let pgs = self.pgs.borrow();
        let p = &pgs.get(&pg)?.pg;
        (p.primary() == Some(self.osd)).then(|| p.acting().len())
    }

    fn reply(&self, reqid: ReqId, result: i32, epoch: Epoch) -> OsdOpReply {
        OsdOpReply { reqid, result, epoch, version: EVersion::default(), outs: Vec::new() }
    }

    /// `data` is the frame's data segment, handed on (not copied) to the PG.
    async fn client_op(self: &Rc<Self>, op: OsdOp, data: Vec<u8>) -> (OsdOpReply, Payload) {
        // Slow paths are boxed: every op's task is as large as its largest
        // state, and spawning it copies all of it.
        let map = match self.map() {
            m if m.epoch >= op.epoch => m,
            _ => Box::pin(self.map_at_least(op.epoch)).await,
        };
        if map.epoch < op.epoch {
            // The client knows a newer map than we could get: retry later
            // (its pool may not exist in ours yet).
            return (self.reply(op.reqid, Errno::Again.result(), map.epoch), Payload::default());
        }
        if let Err(e) = op.check(data.len()) {
            let _ = e;
            return (self.reply(op.reqid, Errno::Inval.result(), map.epoch), Payload::default());
        }
        let Some(pool) = map.pools.get(&op.pg.pool) else {
            return (self.reply(op.reqid, Errno::NoEnt.result(), map.epoch), Payload::default());
        };
        // The client placed the object; check it agrees with the map.
        let locator = if op.object.locator.is_empty() { None } else { Some(op.object.locator.as_str()) };
        if pool.object_pg(&op.object.name, locator, &op.object.namespace) != op.pg {
            return (self.reply(op.reqid, Errno::Inval.result(), map.epoch), Payload::default());
        }
        // Our PGs follow the newest map; the PG knows its acting set for it
        // (no CRUSH computation per op).
        self.advance_pgs(&map);
        let Some(acting_len) = self.primary_acting_len(&map, op.pg) else {
            return (self.reply(op.reqid, Errno::Again.result(), map.epoch), Payload::default());
        };
        if acting_len < pool.min_size as usize {
            return (self.reply(op.reqid, Errno::Again.result(), map.epoch), Payload::default());
        }
        // The PG must have peered, and the object be recovered here: until
        // then the client retries (recovery runs object by object).
        if !self.pg_readable(op.pg, &op.object) {
            return (self.reply(op.reqid, Errno::Again.result(), map.epoch), Payload::default());
        }
        if op.is_write() {
            if !self.can_admit_write() {
                return (self.reply(op.reqid, Errno::Again.result(), map.epoch), Payload::default());
            }
            // Screen for space before the PG orders the write: a write the
            // log holds must not fail for space on any member.
            if !data.is_empty() && self.store.statfs().available_bytes < data.len() as u64 + limits::space_reserve_bytes {
                return (self.reply(op.reqid, Errno::NoSpc.result(), map.epoch), Payload::default());
            }
            // The same for metadata (objects, xattrs, omap, the PG log):
            // removes are let through, they make room.
            let removes = op.subops.iter().any(|s| matches!(s, SubOp::Remove));
            let reserve = limits::metadata_reserve_bytes;
            if !removes && self.store.metadata_headroom_bytes() < reserve && !Box::pin(self.store.has_metadata_headroom(reserve)).await.unwrap_or(false) {
                return (self.reply(op.reqid, Errno::NoSpc.result(), map.epoch), Payload::default());
            }
        }
        let coll = coll_of(op.pg);
        let key = object_key(&op.object);
        let lock = self.object_locks.borrow_mut().entry((coll, key.clone())).or_default().clone();
        let guard = lock.lock().await;
        let result = self.client_op_locked(&op, data, &map, coll, &key).await;
        drop(guard);
        // Forget the lock once nobody else holds or waits for it.
        if Rc::strong_count(&lock) == 2 {
            self.object_locks.borrow_mut().remove(&(coll, key));
        }
        result
    }

    async fn client_op_locked(self: &Rc<Self>, op: &OsdOp, data: Vec<u8>, map: &OsdMap, coll: CollId, key: &str) -> (OsdOpReply, Payload) {
        let key = key.to_string();
        // A resend of a write the PG already ordered (its reply was lost)
        // skips the checks: they would now see the write's own effect (a
        // second remove finds nothing, a second exclusive create finds the
        // object) and fail a write that succeeded. The PG answers it with
        // the first outcome, as Ceph's dup detection does before executing.
        let resend = op.is_write() && self.pg_knows_request(op.pg, &op.reqid);
        // Reads and checks see the object as it was before this op.
        let mut outs = Vec::with_capacity(op.subops.len());
        let mut rdata = Payload::default();
        for s in op.subops.iter().filter(|_| !resend) {
            match self.read_subop(&coll, &key, s, &mut rdata).await {
                Ok(out) => outs.push(out),
                Err(code) => {
                    let mut r = self.reply(op.reqid, code, map.epoch);
                    r.outs = outs;
                    return (r, Payload::default());
                }
            }
        }
        if !op.is_write() {
            let mut r = self.reply(op.reqid, 0, map.epoch);
            r.outs = outs;
            return (r, rdata);
        }
        let (result, version) = self.pg_write(op.pg, op.reqid, op.object.clone(), op.subops.clone(), data).await;
        let mut r = self.reply(op.reqid, result, map.epoch);
        r.version = version;
        r.outs = outs;
        (r, rdata)
    }

    /// One-way messages on a connection we hold, written together (marked
    /// dead on failure).
    pub(crate) async fn send_many_on(&self, conn: &Rc<PeerConn>, msgs: Vec<(Body, Payload)>) -> Result<(), String> {
        let key = conn.mac.borrow().clone();
        let mut queued = Ok(());
        for (body, data) in msgs {
            let txid = conn.next_txid.get();
            conn.next_txid.set(txid + 1);
            queued = conn.writer.enqueue(&body, txid, data, key.as_ref());
            if queued.is_err() {
                break;
            }
        }
        let sent = match queued {
            Ok(()) => conn.writer.flush_queue().await,
            Err(e) => Err(e),
        };
        sent.map_err(|e| {
            conn.alive.set(false);
            e.to_string()
        })
    }

    /// One request to another OSD shard and its answer (with a timeout).
    async fn request(&self, addr: &str, body: Body, data: &[u8]) -> Result<Body, String> {
        let conn = self.peer(addr).await.map_err(|e| format!("{addr}: {e}"))?;
        let txid = conn.next_txid.get();
        conn.next_txid.set(txid + 1);
        let (tx, rx) = oneshot::channel();
        conn.waiting.borrow_mut().insert(txid, tx);
        let key = conn.mac.borrow().clone();
        let sent = conn.writer.send(&body, txid, data.to_vec(), key.as_ref()).await;
        if let Err(e) = sent {
            conn.alive.set(false);
            self.peers.borrow_mut().remove(addr);
            return Err(e.to_string());
        }
        let answer = futures_lite::future::or(async { rx.await.ok() }, async {
            glommio::timer::sleep(Duration::from_millis(limits::replica_timeout_ms)).await;
            None
        })
        .await;
        match answer {
            Some(b) => Ok(b),
            None => {
                conn.alive.set(false);
                self.peers.borrow_mut().remove(addr);
                conn.waiting.borrow_mut().remove(&txid);
                Err("no answer".into())
            }
        }
    }

    pub(crate) async fn peer(&self, addr: &str) -> std::io::Result<Rc<PeerConn>> {
        if let Some(c) = self.peers.borrow().get(addr).filter(|c| c.alive.get()) {
            return Ok(c.clone());
        }
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true).ok();
        let (mut reader, writer) = futures_lite::io::split(stream);
        let writer = FrameWriter::new(writer);
        let ours = hello::local_hello_in(&format!("osd.{}", self.osd), self.map().fsid, self.frame_mode);
        let conn = Rc::new(PeerConn {
            writer,
            mac: RefCell::new(None),
            waiting: RefCell::new(HashMap::default()),
            next_txid: Cell::new(1),
            alive: Cell::new(true),
        });
        // Our own ticket, if we have one: the peer may require it.
        let creds = self.auth.borrow().as_ref().map(|a| (a.session.clone(), a.ticket.clone()));
        let c = conn.clone();
        glommio::spawn_local(async move {
            let mut decoder = FrameDecoder::new(msg::known_type);
            let mut buf = vec![0u8; 64 << 10];
            loop {
                let n = match reader.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let mut frames = Vec::new();
                if decoder.feed(&buf[..n], &mut frames).is_err() {
                    break;
                }
                for f in frames {
                    if let Ok(body) = msg::decode(&f) {
                        // Frames after an accepted authorizer carry MACs.
                        if let (Body::Auth(sepia_proto::auth::AuthMessage::Authorized { result: 0 }), Some(k)) = (&body, c.mac.borrow().as_ref()) {
                            decoder.set_session_key(Box::new(k.clone()));
                        }
                        if let Some(w) = c.waiting.borrow_mut().remove(&f.header.txid) {
                            let _ = w.send(body);
                        }
                    }
                }
            }
            c.alive.set(false);
            c.waiting.borrow_mut().clear();
        })
        .detach();
        // Hello first (txid 0): its reply says whether frames are signed and
        // carries the challenge our authorizer must cover.
        let (tx, rx) = oneshot::channel();
        conn.waiting.borrow_mut().insert(0, tx);
        let hello_reply = match conn.writer.send(&Body::Hello(ours.clone()), 0, Vec::new(), None).await {
            Ok(()) => rx.await.ok(),
            Err(_) => None,
        };
        let negotiated = match hello_reply {
            Some(Body::HelloReply(r)) => hello::accept_reply(&ours, &r).map(|n| (n, r.challenge)),
            _ => Err("no hello reply".to_string()),
        };
        let (negotiated, challenge) = match negotiated {
            Ok(x) => x,
            Err(why) => {
                conn.alive.set(false);
                return Err(std::io::Error::other(format!("{addr}: {why}")));
            }
        };
        if let Some((session, ticket)) = creds {
            let nonce = u64::from_le_bytes(sepia_proto::uuid::random()[..8].try_into().expect("8 bytes"));
            let a = sepia_proto::auth::ticket::build_authorizer(&ticket, &session, challenge, nonce, wall_ms());
            // The reader installs the key when `Authorized` arrives; we MAC
            // only after it did, so the peer never sees a MAC it cannot check.
            if negotiated.frames_signed() {
                *conn.mac.borrow_mut() = Some(session.clone());
            }
            let txid = conn.next_txid.get();
            conn.next_txid.set(txid + 1);
            let (tx, rx) = oneshot::channel();
            conn.waiting.borrow_mut().insert(txid, tx);
            let ok = match conn.writer.send(&Body::Auth(sepia_proto::auth::AuthMessage::Authorize(a)), txid, Vec::new(), None).await {
                Ok(()) => matches!(rx.await, Ok(Body::Auth(sepia_proto::auth::AuthMessage::Authorized { result: 0 }))),
                Err(_) => false,
            };
            if !ok {
                conn.alive.set(false);
                return Err(std::io::Error::other(format!("{addr} refused our authorizer")));
            }
        }
        self.peers.borrow_mut().insert(addr.to_string(), conn.clone());
        Ok(conn)
    }

    async fn pg_list(self: &Rc<Self>, l: PgList) -> PgListReply {
        let map = self.map_at_least(l.epoch).await;
        let reply = |result, objects, more| PgListReply { reqid: l.reqid, result, epoch: map.epoch, objects, more };
        if map.epoch < l.epoch {
            return reply(Errno::Again.result(), Vec::new(), false);
        }
        self.advance_pgs(&map);
        if self.primary_acting_len(&map, l.pg).is_none() {
            return reply(Errno::Again.result(), Vec::new(), false);
        }
        let coll = coll_of(l.pg);
        if !self.store.collection_exists(&coll) {
            return reply(0, Vec::new(), false);
        }
        let max = (l.max as usize).clamp(1, sepia_proto::limits::list_entries_max);
        let prefix = if l.namespace.is_empty() { String::new() } else { format!("{}\u{1f}", l.namespace) };
        let after = if l.after.is_empty() { prefix.clone() } else { format!("{prefix}{}", l.after) };
        match self.store.list(&coll, &after, max) {
            Ok((keys, more)) => {
                let names: Vec<String> = keys
                    .into_iter()
                    .filter(|k| !k.starts_with('\u{0}'))
                    .filter_map(|k| if prefix.is_empty() { (!k.contains('\u{1f}')).then_some(k) } else { k.strip_prefix(&prefix).map(String::from) })
                    .collect();
                reply(0, names, more)
            }
            Err(e) => reply(e.errno().result(), Vec::new(), false),
        }
    }

    /// A read-side sub-op (and the checks of write-side ones) against the
    /// current object.
    async fn read_subop(&self, coll: &CollId, key: &str, s: &SubOp, rdata: &mut Payload) -> Result<SubOpOut, i32> {
        let st = &self.store;
        // Only some sub-ops ask (an onode lookup is not free).
        let exists = || st.stat(coll, key).is_ok();
        let err = |e: StoreError| e.errno().result();
        let ok = |value| Ok(SubOpOut { result: 0, value });
        match s {
            SubOp::Read { offset, len } => {
                let (bytes, crc) = st.read_bytes(coll, key, *offset, *len).await.map_err(err)?;
                let (at, n) = (rdata.as_slice().len() as u32, bytes.as_ref().len() as u32);
                // The usual op reads once: its data is the read's buffer.
                if rdata.as_slice().is_empty() {
                    *rdata = Payload::Read(bytes, crc);
                } else {
                    rdata.extend_from_slice(bytes.as_ref());
                }
                ok(SubOpValue::Data { data_offset: at, len: n })
            }
            SubOp::Stat => {
                let (size, mtime_ms) = st.stat(coll, key).map_err(err)?;
                ok(SubOpValue::Stat { size, mtime_ms })
            }
            SubOp::GetXattr { name } => ok(SubOpValue::Bytes(st.getattr(coll, key, name).map_err(err)?)),
            SubOp::GetXattrs => ok(SubOpValue::Xattrs(st.getattrs(coll, key).map_err(err)?.into_iter().filter(|(name, _)| !crate::pgs::is_internal_attr(name)).collect())),
            SubOp::CmpXattr { name, op, value } => {
                let have = st.getattr(coll, key, name).unwrap_or_default();
                let holds = match op {
                    CmpOp::Eq => have == *value,
                    CmpOp::Ne => have != *value,
                    CmpOp::Gt => have > *value,
                    CmpOp::Gte => have >= *value,
                    CmpOp::Lt => have < *value,
                    CmpOp::Lte => have <= *value,
                };
                if holds {
                    ok(SubOpValue::None)
                } else {
                    Err(Errno::Canceled.result())
                }
            }
            SubOp::OmapGetKeys { after, max } => {
                let (page, more) = st.omap_range(coll, key, after, *max as usize).map_err(err)?;
                ok(SubOpValue::Keys { keys: page.into_iter().map(|(k, _)| k).collect(), more })
            }
            SubOp::OmapGetVals { after, max } => {
                let (entries, more) = st.omap_range(coll, key, after, *max as usize).map_err(err)?;
                ok(SubOpValue::Vals { entries, more })
            }
            SubOp::OmapGetValsByKeys { keys } => ok(SubOpValue::Vals { entries: st.omap_get_keys(coll, key, keys).map_err(err)?.into_iter().collect(), more: false }),
            SubOp::OmapGetHeader => ok(SubOpValue::Bytes(st.omap_header(coll, key).map_err(err)?)),
            SubOp::Create { exclusive: true } if exists() => Err(Errno::Exist.result()),
            SubOp::Remove | SubOp::Truncate { .. } | SubOp::Zero { .. } | SubOp::RmXattr { .. } | SubOp::OmapRmKeys { .. } | SubOp::OmapRmRange { .. } | SubOp::OmapClear
                if !exists() =>
            {
                Err(Errno::NoEnt.result())
            }
            _ => ok(SubOpValue::None),
        }
    }

    /// Appends the store ops of an op's write sub-ops to `ops`. `size` is
    /// the object's size before them (0: absent); the caller has made sure
    /// the collection exists.
    pub(crate) fn write_ops(&self, coll: &CollId, key: &str, mut size: u64, subops: &[SubOp], data: &[u8], ops: &mut Vec<Op>) {
        let slice = |off: u32, len: u32| data[off as usize..(off + len) as usize].to_vec();
        let k = key.to_string();
        for s in subops {
            match s {
                SubOp::Write { offset, data_offset, len } => {
                    ops.push(Op::Write { coll: *coll, obj: k.clone(), offset: *offset, data: slice(*data_offset, *len) });
                    size = size.max(offset + u64::from(*len));
                }
                SubOp::WriteFull { data_offset, len } => {
                    ops.push(Op::Touch { coll: *coll, obj: k.clone() });
                    ops.push(Op::Truncate { coll: *coll, obj: k.clone(), size: 0 });
                    ops.push(Op::Write { coll: *coll, obj: k.clone(), offset: 0, data: slice(*data_offset, *len) });
                    size = u64::from(*len);
                }
                SubOp::Append { data_offset, len } => {
                    ops.push(Op::Write { coll: *coll, obj: k.clone(), offset: size, data: slice(*data_offset, *len) });
                    size += u64::from(*len);
                }
                SubOp::Truncate { size: s } => {
                    ops.push(Op::Truncate { coll: *coll, obj: k.clone(), size: *s });
                    size = *s;
                }
                SubOp::Zero { offset, len } => ops.push(Op::Zero { coll: *coll, obj: k.clone(), offset: *offset, len: *len }),
                SubOp::Remove => {
                    ops.push(Op::Remove { coll: *coll, obj: k.clone() });
                    size = 0;
                }
                SubOp::Create { .. } => ops.push(Op::Touch { coll: *coll, obj: k.clone() }),
                SubOp::SetXattr { name, value } => ops.push(Op::SetAttr { coll: *coll, obj: k.clone(), name: name.clone(), value: value.clone() }),
                SubOp::RmXattr { name } => ops.push(Op::RmAttr { coll: *coll, obj: k.clone(), name: name.clone() }),
                SubOp::OmapSetVals { entries } => {
                    let e: BTreeMap<String, Vec<u8>> = entries.iter().cloned().collect();
                    ops.push(Op::OmapSetKeys { coll: *coll, obj: k.clone(), entries: e });
                }
                SubOp::OmapRmKeys { keys } => ops.push(Op::OmapRmKeys { coll: *coll, obj: k.clone(), keys: keys.clone() }),
                SubOp::OmapRmRange { start, end } => ops.push(Op::OmapRmRange { coll: *coll, obj: k.clone(), start: start.clone(), end: end.clone() }),
                SubOp::OmapClear => ops.push(Op::OmapClear { coll: *coll, obj: k.clone() }),
                SubOp::OmapSetHeader { value } => ops.push(Op::OmapSetHeader { coll: *coll, obj: k.clone(), value: value.clone() }),
                // Reads and checks were done by the primary.
                _ => {}
            }
        }
    }
}

/// `allow *` with no pool, namespace or object limit.
fn unrestricted(caps: &Caps) -> bool {
    caps.grants.iter().any(|g| matches!(g, Grant::Allow { star: true, pool: None, namespace: None, object_prefix: None, .. }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sepia_proto::msg::Ping;

    /// Many replies made ready together (more than a group, some too big
    /// to share a chunk): every frame arrives, in the order it was queued,
    /// whole.
    #[test]
    fn replies_sent_together_arrive_in_order_and_none_is_left_behind() {
        let data_len = |i: usize| if i % 3 == 0 { limits::coalesced_data_bytes_max + 4096 } else { 3000 };
        glommio::LocalExecutorBuilder::default()
            .spawn(move || async move {
                let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
                let addr = listener.local_addr().expect("addr");
                let mut client = TcpStream::connect(addr).await.expect("connect");
                // A frame left behind fails the test instead of hanging it.
                client.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
                let server = listener.accept().await.expect("accept");
                let (_reader, writer) = futures_lite::io::split(server);
                let writer = Rc::new(FrameWriter::new(writer));
                let total = 3 * limits::reply_group_frames_max + 5;
                let tasks: Vec<_> = (0..total)
                    .map(|i| {
                        let writer = writer.clone();
                        glommio::spawn_local(async move {
                            let ping = Body::Ping(Ping { from: 0, epoch: 1, stamp_ms: i as u64, reply: true });
                            writer.send(&ping, i as u64, vec![i as u8; data_len(i)], None).await.expect("send");
                        })
                    })
                    .collect();
                // Read while the senders run: the socket's buffer is smaller
                // than what they send.
                let mut decoder = FrameDecoder::new(msg::known_type);
                let mut frames = Vec::new();
                let mut buf = vec![0u8; 1 << 16];
                while frames.len() < total {
                    let n = client.read(&mut buf).await.expect("read");
                    assert!(n > 0, "connection closed after {} frames", frames.len());
                    decoder.feed(&buf[..n], &mut frames).expect("frames");
                }
                for t in tasks {
                    t.await;
                }
                let txids: Vec<u64> = frames.iter().map(|f| f.header.txid).collect();
                assert_eq!(txids, (0..total as u64).collect::<Vec<_>>());
                for f in &frames {
                    let i = f.header.txid as usize;
                    assert_eq!(f.data(), &vec![i as u8; data_len(i)][..]);
                }
            })
            .expect("executor")
            .join()
            .expect("test body");
    }
}
