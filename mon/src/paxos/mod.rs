//! The monitors' replicated log: omnipaxos (Sequence Paxos with ballot
//! leader election, crates.io) driven sans-IO from the daemon's task.
//!
//! The daemon calls `tick` on its timer, hands in Paxos messages that
//! arrived on its listener (`incoming`), proposes batches on the leader
//! and takes decided entries in log order. Outgoing messages go to one
//! sender task per peer monitor: a connection to the peer's public
//! address, authenticated like any client, carrying one-way `MonPaxos`
//! frames (serde JSON of omnipaxos's message), bounded queue, dropped when
//! full (Paxos resends what matters).
//!
//! Durability: [`storage::FileStorage`] fsyncs every promise, accepted
//! entry and decided index before omnipaxos sends anything that depends on
//! it. Restart = reopen the file; omnipaxos recovers as a follower and
//! catches up from the leader.
//!
//! Invariants: node ids are rank + 1 (omnipaxos wants nonzero, dense ids);
//! only entries omnipaxos reports as decided reach the daemon, each once,
//! in order; a message whose sender is not the connection's claimed rank
//! or whose receiver is not us is dropped.

#[cfg(test)]
mod sim;
pub mod storage;

use std::path::Path;

use omnipaxos::messages::Message;
use omnipaxos::storage::{Entry, NoSnapshot};
use omnipaxos::util::{LogEntry, NodeId};
use omnipaxos::{ClusterConfig, OmniPaxos, OmniPaxosConfig, ServerConfig};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tokio::sync::mpsc;

use crate::daemon::Consensus;
use storage::FileStorage;

pub mod limits {
    #![allow(non_upper_case_globals)]
    /// Paxos messages queued per peer before new ones are dropped.
    pub const peer_queue_max: usize = 4096;
    /// The largest Paxos message we accept (a log catch-up of many batches).
    pub const message_bytes_max: usize = 32 << 20;
    /// Daemon ticks per leader-election round (with the daemon's 50 ms tick:
    /// 200 ms rounds, well above loopback and LAN round trips plus fsync).
    pub const election_ticks: u64 = 4;
    /// Ticks before a lost prepare/promise is resent.
    pub const resend_ticks: u64 = 10;
}

/// One log entry: a serialized batch of monitor transactions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cmd(pub Vec<u8>);

impl Entry for Cmd {
    type Snapshot = NoSnapshot;
}

// Hex in JSON: a byte array as numbers would triple the log.
impl Serialize for Cmd {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut out = String::with_capacity(self.0.len() * 2);
        for b in &self.0 {
            out.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
            out.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
        }
        s.serialize_str(&out)
    }
}

impl<'de> Deserialize<'de> for Cmd {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Cmd, D::Error> {
        let text = String::deserialize(d)?;
        let nibble = |c: u8| match c {
            b'0'..=b'9' => Ok(c - b'0'),
            b'a'..=b'f' => Ok(c - b'a' + 10),
            _ => Err(serde::de::Error::custom("bad hex digit")),
        };
        let bytes = text.as_bytes();
        if bytes.len() % 2 != 0 {
            return Err(serde::de::Error::custom("odd hex length"));
        }
        let mut out = Vec::with_capacity(bytes.len() / 2);
        for pair in bytes.chunks_exact(2) {
            out.push(nibble(pair[0])? << 4 | nibble(pair[1])?);
        }
        Ok(Cmd(out))
    }
}

/// Where and as whom this monitor reaches its peers.
#[derive(Clone)]
pub struct PeerLinks {
    /// Public addresses of all monitors, by rank.
    pub addrs: Vec<String>,
    pub entity: String,
    pub secret: Option<sepia_proto::auth::key::Secret>,
}

pub struct PaxosLog {
    op: OmniPaxos<Cmd, FileStorage<Cmd>>,
    rank: u32,
    members: usize,
    /// Decided entries already handed to the daemon.
    taken: usize,
    peers: Vec<Option<mpsc::Sender<Vec<u8>>>>,
    outgoing: Vec<Message<Cmd>>,
}

fn node_id(rank: u32) -> NodeId {
    u64::from(rank) + 1
}

impl PaxosLog {
    /// Opens (or creates) the Paxos state of monitor `rank` in `dir` and
    /// starts the peer sender tasks (on the current tokio runtime).
    pub fn open(dir: &Path, rank: u32, links: PeerLinks) -> std::io::Result<PaxosLog> {
        let members = links.addrs.len();
        if members < 2 || rank as usize >= members {
            return Err(std::io::Error::other(format!("rank {rank} among {members} monitors")));
        }
        std::fs::create_dir_all(dir)?;
        let storage = FileStorage::open(dir.join("paxos.log"))?;
        let config = OmniPaxosConfig {
            cluster_config: ClusterConfig { configuration_id: 1, nodes: (0..members as u32).map(node_id).collect(), flexible_quorum: None },
            server_config: ServerConfig {
                pid: node_id(rank),
                election_tick_timeout: limits::election_ticks,
                resend_message_tick_timeout: limits::resend_ticks,
                ..ServerConfig::default()
            },
        };
        let op = config.build(storage).map_err(|e| std::io::Error::other(format!("paxos config: {e:?}")))?;
        let mut peers = Vec::with_capacity(members);
        for (r, addr) in links.addrs.iter().enumerate() {
            if r == rank as usize {
                peers.push(None);
                continue;
            }
            let (tx, rx) = mpsc::channel(limits::peer_queue_max);
            tokio::spawn(peer_sender(addr.clone(), rank, links.entity.clone(), links.secret.clone(), rx));
            peers.push(Some(tx));
        }
        Ok(PaxosLog { op, rank, members, taken: 0, peers, outgoing: Vec::new() })
    }

    fn flush(&mut self) {
        self.op.take_outgoing_messages(&mut self.outgoing);
        for m in self.outgoing.drain(..) {
            let to = m.get_receiver();
            let Some(Some(tx)) = to.checked_sub(1).and_then(|r| self.peers.get(r as usize)) else { continue };
            if let Ok(bytes) = serde_json::to_vec(&m) {
                // Full: dropped; Paxos resends what it needs.
                let _ = tx.try_send(bytes);
            }
        }
    }

    fn heard_from(&self) -> Vec<u32> {
        let mut ranks: Vec<u32> = self.op.get_ui_states().heartbeats.iter().filter_map(|h| h.ballot.pid.checked_sub(1)).map(|r| r as u32).collect();
        ranks.push(self.rank);
        ranks.sort_unstable();
        ranks.dedup();
        ranks
    }
}

impl Consensus for PaxosLog {
    fn propose(&mut self, entry: Vec<u8>) -> Result<(), String> {
        if !self.is_leader() {
            return Err("not the leader".into());
        }
        self.op.append(Cmd(entry)).map_err(|_| "the log is being reconfigured".to_string())?;
        self.flush();
        Ok(())
    }

    fn take_committed(&mut self) -> Vec<Vec<u8>> {
        let decided = self.op.get_decided_idx();
        if decided <= self.taken {
            return Vec::new();
        }
        let entries = self.op.read_decided_suffix(self.taken).unwrap_or_default();
        self.taken = decided;
        entries
            .into_iter()
            .filter_map(|e| match e {
                LogEntry::Decided(Cmd(bytes)) => Some(bytes),
                _ => None,
            })
            .collect()
    }

    fn tick(&mut self) {
        self.op.tick();
        self.flush();
    }

    fn incoming(&mut self, from_rank: u32, bytes: &[u8]) {
        if bytes.len() > limits::message_bytes_max {
            return;
        }
        let Ok(m) = serde_json::from_slice::<Message<Cmd>>(bytes) else { return };
        if m.get_sender() != node_id(from_rank) || m.get_receiver() != node_id(self.rank) || from_rank == self.rank {
            return;
        }
        self.op.handle_incoming(m);
        self.flush();
    }

    fn have_quorum(&self) -> bool {
        // A leader must be known and a majority (us included) must have
        // answered the last round: an isolated monitor stops at once.
        self.op.get_current_leader().is_some() && self.heard_from().len() * 2 > self.members
    }

    fn is_leader(&self) -> bool {
        self.op.get_current_leader() == Some((node_id(self.rank), true))
    }

    fn leader(&self) -> Option<u32> {
        self.op.get_current_leader().and_then(|(pid, _)| pid.checked_sub(1)).map(|r| r as u32)
    }

    fn quorum_members(&self) -> Vec<u32> {
        self.heard_from()
    }

    fn election_epoch(&self) -> u64 {
        u64::from(self.op.get_promise().n)
    }
}

/// Sends one peer its Paxos messages, reconnecting as needed.
async fn peer_sender(addr: String, rank: u32, entity: String, secret: Option<sepia_proto::auth::key::Secret>, mut rx: mpsc::Receiver<Vec<u8>>) {
    use sepia_client::conn::{authenticate, Conn};
    use sepia_proto::msg::{Body, MonPaxos};
    let mut conn: Option<Conn> = None;
    while let Some(bytes) = rx.recv().await {
        if conn.is_none() {
            let opened = async {
                let mut c = Conn::connect(&addr, &entity, [0; 16]).await?;
                if let Some(s) = &secret {
                    authenticate(&mut c, &entity, s).await?;
                }
                Ok::<Conn, sepia_client::conn::ConnError>(c)
            };
            match tokio::time::timeout(std::time::Duration::from_secs(2), opened).await {
                Ok(Ok(c)) => conn = Some(c),
                // The peer is down: drop this message; later ones retry.
                _ => continue,
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        if c.send(&Body::MonPaxos(MonPaxos { from: rank, bytes }), &[]).await.is_err() {
            conn = None;
        }
    }
}
