//! The monitor daemon's shell: the public TCP listener (clients, OSDs),
//! the consensus layer, the clock, and the map services, joined in one
//! event loop. Everything that decides lives in `services` (sans-IO); this
//! file only moves bytes and time.
//!
//! Invariants: every channel is bounded; a connection whose frames fail
//! to decode is closed with a logged reason; no request is answered with
//! a change that has not committed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sepia_proto::hello;
use sepia_proto::msg::{self, Body, CommandReply, SubscribeItem};
use sepia_proto::osdmap::Epoch;
use sepia_client::conn::Conn;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::services::access::{self, Identity};
use crate::services::service::{MonServices, QuorumInfo};
use crate::services::state::{Batch, ClusterState};

/// Bounds of the shell.
pub mod limits {
    #![allow(non_upper_case_globals)]
    /// Requests from all connections waiting for the event loop.
    pub const requests_queued_max: usize = 4096;
    /// Replies and map deliveries queued for one connection; a connection
    /// that falls further behind is closed.
    pub const replies_queued_max: usize = 256;
    /// Open client/OSD connections.
    pub const connections_max: usize = 4096;
    /// How long a proposed batch may wait for its commit before the
    /// leader gives up on it (elections take well under a second).
    pub const proposal_timeout: std::time::Duration = std::time::Duration::from_secs(10);
    /// How long a monitor removed from the monmap lingers before it stops,
    /// so the answers already queued (the `mon rm` itself, when it led)
    /// reach their connections.
    pub const removed_linger: std::time::Duration = std::time::Duration::from_secs(1);
}

/// One decided step of the log, for the daemon to apply.
#[derive(Debug)]
pub enum Committed {
    /// A log entry (a serialized `Batch`).
    Entry(Vec<u8>),
    /// The whole state after a compacted prefix of the log (a restart from
    /// a snapshot, or a snapshot a lagging monitor was sent).
    State(Box<ClusterState>),
}

/// What the consensus layer offers the daemon. The Paxos implementation
/// (omnipaxos behind `crate::paxos`) and a single-monitor log both fit.
pub trait Consensus: Send {
    /// Queues an entry; only the leader accepts.
    fn propose(&mut self, entry: Vec<u8>) -> Result<(), String>;
    /// Entries decided since the last call, in log order.
    fn take_committed(&mut self) -> Vec<Committed>;
    /// Drives timers and the network; called every tick.
    fn tick(&mut self);
    fn have_quorum(&self) -> bool;
    fn is_leader(&self) -> bool;
    /// Paxos node id of the leader, if one is known.
    fn leader(&self) -> Option<u64>;
    /// Node ids of the monitors the leader currently hears from (itself included).
    fn quorum_members(&self) -> Vec<u64>;
    fn election_epoch(&self) -> u64;
    /// Everything taken so far is applied and `state` is the result: the
    /// log may fold it into a snapshot and trim it. Returns the new
    /// compacted index if it did.
    fn compact(&mut self, _state: &ClusterState) -> Option<u64> {
        None
    }
    /// True once `state` is past the end of the log's configuration (an
    /// applied MonMap change ends it): decided entries after that belong
    /// to no configuration and are not applied.
    fn ends_config(&self, _state: &ClusterState) -> bool {
        false
    }
    /// Called with the state after every applied batch of entries; when
    /// the configuration ended, the next one starts here from `state`. An
    /// error is fatal for the monitor: a restart resumes where it stopped.
    fn after_apply(&mut self, _state: &ClusterState) -> Result<(), String> {
        Ok(())
    }
    /// The membership no longer includes this monitor.
    fn removed(&self) -> bool {
        false
    }
    /// A consensus message from the monitor with node id `from + 1`
    /// (untrusted bytes: implementations check and drop bad ones).
    fn incoming(&mut self, _from: u32, _bytes: &[u8]) {}
}

#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub name: String,
    pub rank: u32,
    pub public_addr: String,
    /// Refuse requests from connections that did not authenticate.
    pub auth_required: bool,
    /// How often pending changes become one log entry.
    pub propose_interval: Duration,
    pub tick_interval: Duration,
    /// How long a session and its tickets live before they must be renewed
    /// (`AuthMessage::Renew` on the authenticated connection).
    pub ticket_lifetime_ms: u64,
}

impl DaemonConfig {
    /// Ceph's `auth_service_ticket_ttl`: one hour.
    pub const TICKET_LIFETIME_MS_DEFAULT: u64 = 3_600_000;
}

/// A request from a connection, with where to send the answer; `body`
/// `None` means the connection closed. `who` is the authenticated entity
/// and its monitor capability (None: not authenticated).
struct Request {
    conn: u64,
    txid: u64,
    body: Option<Body>,
    who: Option<Identity>,
}

/// What connection tasks need to authenticate clients: the auth database
/// and the service keys, as of the newest commit.
#[derive(Default)]
pub struct AuthView {
    pub entries: BTreeMap<String, crate::services::state::AuthEntry>,
    pub service_keys: BTreeMap<String, (u64, [u8; 32])>,
}

fn auth_view(state: &ClusterState) -> Arc<AuthView> {
    Arc::new(AuthView { entries: state.auth.clone(), service_keys: state.service_keys.clone() })
}

enum ToConn {
    Frame { txid: u64, body: Body },
}

struct Subscriber {
    tx: mpsc::Sender<ToConn>,
    have: Epoch,
    onetime: bool,
}

/// Runs the monitor until the listener fails. `consensus` is driven from
/// this task only.
pub async fn run<C: Consensus>(
    config: DaemonConfig,
    listener: TcpListener,
    mut consensus: C,
    mut state: ClusterState,
    mut services: MonServices,
    bootstrap: Option<Vec<u8>>,
) -> std::io::Result<()> {
    let mut bootstrap = bootstrap;
    let (req_tx, mut req_rx) = mpsc::channel::<Request>(limits::requests_queued_max);
    let mut conns: BTreeMap<u64, mpsc::Sender<ToConn>> = BTreeMap::new();
    let mut subscribers: BTreeMap<u64, Subscriber> = BTreeMap::new();
    // waiter id → (connection, txid)
    let mut waiters: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    let mut next_waiter = 1u64;
    let start = Instant::now();
    let mut tick = tokio::time::interval(config.tick_interval);
    let mut propose = tokio::time::interval(config.propose_interval);
    let fsid = Arc::new(state.fsid());
    let (new_conn_tx, mut new_conn_rx) = mpsc::channel::<(u64, mpsc::Sender<ToConn>)>(64);
    let (auth_tx, auth_rx) = tokio::sync::watch::channel(auth_view(&state));

    // The acceptor: one task per connection, each with a bounded outbox.
    {
        let req_tx = req_tx.clone();
        let name = config.name.clone();
        let ticket_lifetime_ms = config.ticket_lifetime_ms;
        tokio::spawn(async move {
            let mut next_conn = 1u64;
            loop {
                let Ok((stream, peer)) = listener.accept().await else { continue };
                let _ = stream.set_nodelay(true);
                let id = next_conn;
                next_conn += 1;
                let (out_tx, out_rx) = mpsc::channel::<ToConn>(limits::replies_queued_max);
                if new_conn_tx.send((id, out_tx)).await.is_err() {
                    return;
                }
                let req_tx = req_tx.clone();
                let name = name.clone();
                let fsid = *fsid;
                let auth = auth_rx.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve_conn(id, Conn::from_stream(stream), &name, fsid, ticket_lifetime_ms, req_tx, out_rx, auth).await {
                        eprintln!("mon.{name}: connection {peer}: {e}");
                    }
                });
            }
        });
    }

    let mut was_leader = false;
    let mut proposed_at: Option<Instant> = None;
    loop {
        tokio::select! {
            Some((id, tx)) = new_conn_rx.recv() => {
                if conns.len() < limits::connections_max {
                    conns.insert(id, tx);
                }
            }
            Some(req) = req_rx.recv() => {
                // A connection is announced before its task starts, but
                // `select!` may take its first request first: register
                // the announced ones now, or its answers (a subscription,
                // a command reply) would go nowhere and the peer would wait
                // out its timeout.
                while let Ok((id, tx)) = new_conn_rx.try_recv() {
                    if conns.len() < limits::connections_max {
                        conns.insert(id, tx);
                    }
                }
                let Some(body) = &req.body else {
                    conns.remove(&req.conn);
                    subscribers.remove(&req.conn);
                    continue;
                };
                let now = start.elapsed().as_millis() as u64;
                let quorum = quorum_info(&consensus, &state, &config);
                let answer = |conns: &BTreeMap<u64, mpsc::Sender<ToConn>>, r: CommandReply| {
                    if let Some(tx) = conns.get(&req.conn) {
                        let _ = tx.try_send(ToConn::Frame { txid: req.txid, body: Body::CommandReply(r) });
                    }
                };
                if let Err(status) = access::check(config.auth_required, req.who.as_ref(), body) {
                    answer(&conns, CommandReply { tid: 0, result: sepia_proto::errno::Errno::Access.result(), status, output: String::new() });
                    continue;
                }
                match body {
                    Body::Command(c) => {
                        let w = next_waiter;
                        next_waiter += 1;
                        match services.handle_command(&state, &quorum, c, w, now) {
                            Some(r) => answer(&conns, r),
                            None => { waiters.insert(w, (req.conn, req.txid)); }
                        }
                    }
                    Body::OsdBoot(b) => {
                        let w = next_waiter;
                        next_waiter += 1;
                        match services.handle_boot(&state, &quorum, b, w, now) {
                            Some(r) => answer(&conns, r),
                            None => { waiters.insert(w, (req.conn, req.txid)); }
                        }
                    }
                    Body::OsdBeacon(b) => {
                        if services.is_leader() {
                            services.handle_beacon(b, now);
                            answer(&conns, ok_reply());
                        } else {
                            answer(&conns, not_leader_reply(&consensus, &state));
                        }
                    }
                    Body::OsdFailure(f) => {
                        if services.is_leader() {
                            services.handle_failure(&state, f, now);
                            answer(&conns, ok_reply());
                        } else {
                            answer(&conns, not_leader_reply(&consensus, &state));
                        }
                    }
                    Body::OsdMarkMeDown(m) => {
                        if services.is_leader() {
                            services.handle_mark_me_down(&state, m, now);
                            answer(&conns, ok_reply());
                        } else {
                            answer(&conns, not_leader_reply(&consensus, &state));
                        }
                    }
                    Body::Subscribe(s) => {
                        if let Some(tx) = conns.get(&req.conn) {
                            for SubscribeItem { what, start, onetime } in &s.items {
                                match what {
                                    msg::MapKind::OsdMap => {
                                        let sub = Subscriber { tx: tx.clone(), have: start.saturating_sub(1), onetime: *onetime };
                                        subscribers.insert(req.conn, sub);
                                    }
                                    msg::MapKind::MonMap => {
                                        let _ = tx.try_send(ToConn::Frame { txid: req.txid, body: Body::MonMap(state.monmap.clone()) });
                                    }
                                }
                            }
                        }
                    }
                    Body::MonPaxos(m) => {
                        consensus.incoming(m.from, &m.bytes);
                    }
                    Body::Ping(p) if !p.reply => {
                        if let Some(tx) = conns.get(&req.conn) {
                            let mut back = p.clone();
                            back.reply = true;
                            let _ = tx.try_send(ToConn::Frame { txid: req.txid, body: Body::Ping(back) });
                        }
                    }
                    _ => {}
                }
            }
            _ = propose.tick() => {
                let now = start.elapsed().as_millis() as u64;
                if let Some(entry) = services.flush(&state, now) {
                    proposed_at = Some(Instant::now());
                    if let Err(e) = consensus.propose(entry) {
                        for (w, r) in services.lose_leadership() {
                            send_waiter(&conns, &mut waiters, w, r);
                        }
                        eprintln!("mon.{}: proposal refused: {e}", config.name);
                    }
                }
                for (w, r) in services.take_immediate() {
                    send_waiter(&conns, &mut waiters, w, r);
                }
            }
            _ = tick.tick() => {
                let now = start.elapsed().as_millis() as u64;
                consensus.tick();
                let mut leader = consensus.is_leader() && consensus.have_quorum();
                // A proposal that never commits (a leader cut off and back,
                // whose entry the new majority never saw): give up on it, its
                // requesters retry, and leadership starts afresh.
                if services.has_in_flight() && proposed_at.is_some_and(|t| t.elapsed() > limits::proposal_timeout) {
                    eprintln!("mon.{}: a proposal did not commit in {:?}; retrying as a new leader", config.name, limits::proposal_timeout);
                    proposed_at = None;
                    leader = false;
                }
                if leader && !was_leader {
                    services.become_leader(&state, now);
                } else if !leader && was_leader {
                    for (w, r) in services.lose_leadership() {
                        send_waiter(&conns, &mut waiters, w, r);
                    }
                }
                was_leader = leader;
                // A new cluster: the first leader proposes the initial maps
                // (a second bootstrap entry, if any, is refused on apply).
                if leader && !state.bootstrapped {
                    if let Some(entry) = bootstrap.take() {
                        if let Err(e) = consensus.propose(entry.clone()) {
                            eprintln!("mon.{}: bootstrap proposal refused: {e}", config.name);
                            bootstrap = Some(entry);
                        }
                    }
                }
                services.tick(&state, now);
            }
        }
        // Apply whatever committed, answer its waiters, feed subscribers.
        let committed = consensus.take_committed();
        if !committed.is_empty() {
            for step in committed {
                let entry = match step {
                    Committed::Entry(e) => e,
                    Committed::State(snap) => {
                        eprintln!("mon.{}: installed a snapshot at log index {}", config.name, snap.applied);
                        // Before bootstrap our auth database is the local
                        // keyring; an unbootstrapped snapshot keeps it.
                        if snap.bootstrapped || state.bootstrapped {
                            state = *snap;
                        } else {
                            state.applied = snap.applied;
                        }
                        for (w, r) in services.on_committed(&state, None, Ok(())) {
                            send_waiter(&conns, &mut waiters, w, r);
                        }
                        if consensus.ends_config(&state) {
                            break;
                        }
                        continue;
                    }
                };
                let result = state.apply_entry(&entry);
                let batch = Batch::decode(&entry).ok();
                let applied = result.as_ref().map(|_| ()).map_err(|e| e.to_string());
                if let Err(e) = &applied {
                    eprintln!("mon.{}: log entry {} skipped: {e}", config.name, state.applied);
                }
                for (w, r) in services.on_committed(&state, batch.as_ref(), applied) {
                    send_waiter(&conns, &mut waiters, w, r);
                }
                if consensus.ends_config(&state) {
                    // The membership changed: this configuration's log ends
                    // here; what it decided later is never applied.
                    break;
                }
            }
            if let Err(e) = consensus.after_apply(&state) {
                return Err(std::io::Error::other(format!("mon.{}: {e}", config.name)));
            }
            if let Some(idx) = consensus.compact(&state) {
                eprintln!("mon.{}: compacted the log up to index {idx}", config.name);
            }
            if consensus.removed() {
                eprintln!("mon.{}: removed from the monmap; stopping", config.name);
                tokio::time::sleep(limits::removed_linger).await;
                return Ok(());
            }
            let _ = auth_tx.send(auth_view(&state));
        }
        // A monitor outside the majority serves no map as current.
        if state.bootstrapped && consensus.have_quorum() {
            subscribers.retain(|_, s| {
                if s.have >= state.osdmap.epoch {
                    return true;
                }
                let delivery = state.osdmap_delivery(s.have);
                s.have = state.osdmap.epoch;
                let ok = s.tx.try_send(ToConn::Frame { txid: 0, body: Body::OsdMap(delivery) }).is_ok();
                ok && !s.onetime
            });
        }
    }
}

fn send_waiter(conns: &BTreeMap<u64, mpsc::Sender<ToConn>>, waiters: &mut BTreeMap<u64, (u64, u64)>, w: u64, r: CommandReply) {
    if let Some((conn, txid)) = waiters.remove(&w) {
        if let Some(tx) = conns.get(&conn) {
            let _ = tx.try_send(ToConn::Frame { txid, body: Body::CommandReply(r) });
        }
    }
}

fn ok_reply() -> CommandReply {
    CommandReply { tid: 0, result: 0, status: String::new(), output: String::new() }
}

fn not_leader_reply<C: Consensus>(consensus: &C, state: &ClusterState) -> CommandReply {
    let addr = consensus
        .leader()
        .and_then(|id| state.mon_name(id))
        .and_then(|n| state.monmap.by_name(n))
        .map(|m| m.addr.clone())
        .unwrap_or_default();
    CommandReply { tid: 0, result: sepia_proto::errno::Errno::Again.result(), status: "not the leader".into(), output: addr }
}

fn quorum_info<C: Consensus>(consensus: &C, state: &ClusterState, config: &DaemonConfig) -> QuorumInfo {
    let name_of = |id: u64| state.mon_name(id).map(String::from).unwrap_or_else(|| id.to_string());
    QuorumInfo {
        have_quorum: consensus.have_quorum() && state.bootstrapped,
        is_leader: consensus.is_leader(),
        members: consensus.quorum_members().into_iter().map(name_of).collect(),
        leader: consensus.leader().map(name_of),
        election_epoch: consensus.election_epoch(),
        me: config.name.clone(),
    }
}

fn wall_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Issues the session key and one ticket per service for `entity`, valid
/// from now for `lifetime_ms`; `global_id` is kept across renewals.
fn grant(
    view: &AuthView,
    entity: &str,
    secret: &sepia_proto::auth::key::Secret,
    session: &sepia_proto::auth::mac::SessionKey,
    global_id: Option<u64>,
    lifetime_ms: u64,
) -> Result<sepia_proto::auth::AuthMessage, String> {
    use sepia_proto::auth::entity::EntityName;
    use sepia_proto::auth::ticket::{self, ServiceKeys, Ticket};
    let entry = view.entries.get(entity).ok_or("unknown entity")?;
    let name = EntityName::parse(entity).map_err(|e| e.to_string())?;
    let global_id = match global_id {
        Some(g) => g,
        None => {
            let mut id = [0u8; 8];
            getrandom::getrandom(&mut id).map_err(|e| e.to_string())?;
            u64::from_le_bytes(id)
        }
    };
    let now = wall_ms();
    let tickets = view
        .service_keys
        .iter()
        .map(|(service, (generation, key))| {
            let t = Ticket {
                entity: name.clone(),
                global_id,
                service: service.clone(),
                caps: entry.caps.clone(),
                session_key: session.0,
                valid_from_ms: now,
                expires_ms: now + lifetime_ms,
            };
            ticket::seal_ticket(&t, &ServiceKeys::new(*generation, *key), ticket::random_nonce())
        })
        .collect();
    Ok(sepia_proto::auth::AuthMessage::Granted {
        global_id,
        session_key: ticket::seal_session_key(secret, session, ticket::random_nonce()),
        tickets,
        expires_ms: now + lifetime_ms,
    })
}

/// One connection: hello, then requests to the loop and answers back.
/// An authenticated session lives `ticket_lifetime_ms`; after that its
/// requests are refused until it renews (`Renew`, answered with fresh
/// tickets under the same session key) or re-authenticates.
#[allow(clippy::too_many_arguments)]
async fn serve_conn(
    id: u64,
    mut conn: Conn,
    name: &str,
    fsid: [u8; 16],
    ticket_lifetime_ms: u64,
    req_tx: mpsc::Sender<Request>,
    mut out_rx: mpsc::Receiver<ToConn>,
    auth: tokio::sync::watch::Receiver<Arc<AuthView>>,
) -> Result<(), String> {
    use sepia_proto::auth::{key::Secret, mac::SessionKey, ticket, AuthMessage};
    let mut who: Option<Identity> = None;
    let mut session_key: Option<SessionKey> = None;
    // The authenticated entity, its global id, and when its session expires.
    let mut session: Option<(String, u64, u64)> = None;
    // (entity, client challenge, server challenge) between hello and proof.
    let mut pending: Option<(String, u64, u64)> = None;
    let refused = |why: &str| Body::Auth(AuthMessage::Refused { result: sepia_proto::errno::Errno::Access.result(), reason: why.to_string() });
    // Monitors always sign frames: their traffic is small and hands out
    // keys and maps.
    let ours = hello::local_hello_in(&format!("mon.{name}"), fsid, hello::FrameMode::Sign);
    let first = tokio::time::timeout(Duration::from_secs(10), conn.recv_body()).await.map_err(|_| "no hello".to_string())?;
    let (txid, body) = first.map_err(|e| e.to_string())?;
    let Body::Hello(theirs) = body else { return Err("first frame is not a hello".into()) };
    let (reply, negotiated) = hello::reply(&ours, &theirs);
    conn.send_with_txid(&Body::HelloReply(reply), txid, &[]).await.map_err(|e| e.to_string())?;
    negotiated.map_err(|e| e.to_string())?;
    conn.peer_entity = theirs.entity.clone();
    let result = loop {
        tokio::select! {
            incoming = conn.recv_body() => match incoming {
                Ok((txid, Body::Auth(m))) => {
                    let view = auth.borrow().clone();
                    let reply = match m {
                        AuthMessage::Hello { entity, client_challenge } => {
                            if view.entries.contains_key(&entity) {
                                let mut sc = [0u8; 8];
                                let _ = getrandom::getrandom(&mut sc);
                                let sc = u64::from_le_bytes(sc);
                                pending = Some((entity, client_challenge, sc));
                                Body::Auth(AuthMessage::Challenge { server_challenge: sc })
                            } else {
                                refused("unknown entity")
                            }
                        }
                        AuthMessage::Proof { proof } => match pending.take() {
                            None => refused("proof without hello"),
                            Some((entity, cc, sc)) => {
                                let secret = view.entries.get(&entity).and_then(|e| Secret::from_keyring_string(&e.key).ok());
                                match secret {
                                    Some(secret) if ticket::verify_proof(&secret, sc, cc, &proof).is_ok() => {
                                        let key = SessionKey::generate();
                                        match grant(&view, &entity, &secret, &key, None, ticket_lifetime_ms) {
                                            Ok(g) => {
                                                if let AuthMessage::Granted { global_id, expires_ms, .. } = &g {
                                                    session = Some((entity.clone(), *global_id, *expires_ms));
                                                }
                                                // Granted goes out unMACed; everything after is MACed.
                                                if let Err(e) = conn.send_with_txid(&Body::Auth(g), txid, &[]).await {
                                                    break Err(e.to_string());
                                                }
                                                conn.set_session_key(key.clone());
                                                session_key = Some(key);
                                                let mon_caps = view.entries.get(&entity).and_then(|e| e.caps.get("mon").cloned()).unwrap_or_default();
                                                who = Some(Identity { entity: entity.clone(), mon_caps });
                                                continue;
                                            }
                                            Err(e) => refused(&e),
                                        }
                                    }
                                    _ => refused("bad proof"),
                                }
                            }
                        },
                        AuthMessage::ServiceKeyRequest { service } => {
                            let daemon = who.as_ref().is_some_and(|w| access::may_fetch_service_key(w, &service));
                            match (&session_key, view.service_keys.get(&service)) {
                                (Some(session), Some((generation, key))) if daemon => Body::Auth(AuthMessage::ServiceKey {
                                    service,
                                    generation: *generation,
                                    sealed: ticket::seal_with_session(session, key),
                                }),
                                (None, _) => refused("authenticate first"),
                                (_, None) => refused("no such service"),
                                _ => refused(&format!("the {service} service key is not for {}", who.as_ref().map_or("this entity", |w| w.entity.as_str()))),
                            }
                        }
                        AuthMessage::Renew => {
                            // Only a live session renews; an expired one
                            // proves its identity again from the start.
                            let secret = session.as_ref().and_then(|(e, ..)| view.entries.get(e)).and_then(|e| Secret::from_keyring_string(&e.key).ok());
                            match (&session_key, &mut session, secret) {
                                (Some(key), Some((entity, global_id, expires)), Some(secret)) if wall_ms() < *expires => {
                                    match grant(&view, entity, &secret, key, Some(*global_id), ticket_lifetime_ms) {
                                        Ok(g) => {
                                            if let AuthMessage::Granted { expires_ms, .. } = &g {
                                                *expires = *expires_ms;
                                            }
                                            Body::Auth(g)
                                        }
                                        Err(e) => refused(&e),
                                    }
                                }
                                (None, ..) => refused("authenticate first"),
                                (_, _, None) => refused("the entity is no longer in the auth database"),
                                _ => refused("session expired; authenticate again"),
                            }
                        }
                        _ => refused("unexpected auth message"),
                    };
                    if let Err(e) = conn.send_with_txid(&reply, txid, &[]).await {
                        break Err(e.to_string());
                    }
                }
                Ok((txid, body)) if session.as_ref().is_some_and(|(.., expires)| wall_ms() >= *expires) => {
                    // One-way frames get no answer (nobody reads it).
                    if matches!(body, Body::MonPaxos(_)) {
                        continue;
                    }
                    let expired = CommandReply {
                        tid: 0,
                        result: sepia_proto::errno::Errno::Access.result(),
                        status: "session ticket expired; renew it or authenticate again".into(),
                        output: String::new(),
                    };
                    if let Err(e) = conn.send_with_txid(&Body::CommandReply(expired), txid, &[]).await {
                        break Err(e.to_string());
                    }
                }
                Ok((txid, body)) => {
                    if req_tx.send(Request { conn: id, txid, body: Some(body), who: who.clone() }).await.is_err() {
                        break Ok(());
                    }
                }
                Err(sepia_client::conn::ConnError::Closed) => break Ok(()),
                Err(e) => break Err(e.to_string()),
            },
            out = out_rx.recv() => match out {
                Some(ToConn::Frame { txid, body }) => {
                    if let Err(e) = conn.send_with_txid(&body, txid, &[]).await {
                        break Err(e.to_string());
                    }
                }
                None => break Ok(()),
            },
        }
    };
    let _ = req_tx.send(Request { conn: id, txid: 0, body: None, who: None }).await;
    result
}
