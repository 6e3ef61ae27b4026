//! Heartbeats between OSDs, sans-IO: which peers to ping, when a silent
//! peer becomes a failure report, and when a report is withdrawn.
//!
//! An OSD pings every OSD it shares a PG with (its heartbeat peers) each
//! `interval_ms`; a peer that has not answered for `grace_ms` is reported
//! failed to the monitors (again every `interval_ms` while it stays silent,
//! so the monitor's report window stays fresh); an answer after a report
//! withdraws it. A peer the map shows down is dropped, and a peer that
//! booted again (a new `up_from`) is a new peer: its old silence does not
//! count against its new life.
//!
//! Invariants: at most one outstanding report per peer; peers are bounded
//! by the map's OSD count.

use std::collections::BTreeMap;

use sepia_proto::osdmap::{Epoch, OsdId};

#[derive(Debug, Clone)]
pub struct HeartbeatConfig {
    pub interval_ms: u64,
    /// Silence after which a peer is reported (Ceph's osd_heartbeat_grace
    /// is 20 s; ours is shorter so a dead OSD is down within 10 s).
    pub grace_ms: u64,
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        HeartbeatConfig { interval_ms: 1_000, grace_ms: 6_000 }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HbEffect {
    Ping { to: OsdId, stamp_ms: u64 },
    Report { target: OsdId, failed_for_ms: u64 },
    Withdraw { target: OsdId },
}

#[derive(Debug, Clone, Copy)]
struct Peer {
    /// Last time the peer answered (or when we started watching it).
    last_heard_ms: u64,
    reported: bool,
    /// The map epoch its current life began (`OsdInfo::up_from`).
    up_from: Epoch,
}

pub struct Heartbeat {
    config: HeartbeatConfig,
    peers: BTreeMap<OsdId, Peer>,
    last_ping_ms: Option<u64>,
}

impl Heartbeat {
    pub fn new(config: HeartbeatConfig) -> Heartbeat {
        Heartbeat { config, peers: BTreeMap::new(), last_ping_ms: None }
    }

    /// The peers after a map change (up OSDs we share PGs with, each with
    /// its `up_from`). New peers, and peers that booted again since, get a
    /// full grace period from now: a restarted peer listens on new ports,
    /// and reporting it for the silence of its old life took it down again
    /// at once.
    pub fn set_peers(&mut self, peers: impl IntoIterator<Item = (OsdId, Epoch)>, now_ms: u64) {
        let wanted: BTreeMap<OsdId, Peer> = peers
            .into_iter()
            .map(|(p, up_from)| {
                let fresh = Peer { last_heard_ms: now_ms, reported: false, up_from };
                (p, self.peers.get(&p).copied().filter(|old| old.up_from == up_from).unwrap_or(fresh))
            })
            .collect();
        self.peers = wanted;
    }

    /// A peer answered a ping.
    pub fn pong(&mut self, from: OsdId, now_ms: u64, out: &mut Vec<HbEffect>) {
        if let Some(p) = self.peers.get_mut(&from) {
            p.last_heard_ms = now_ms;
            if p.reported {
                p.reported = false;
                out.push(HbEffect::Withdraw { target: from });
            }
        }
    }

    /// The clock.
    pub fn tick(&mut self, now_ms: u64, out: &mut Vec<HbEffect>) {
        let due = self.last_ping_ms.is_none_or(|t| now_ms.saturating_sub(t) >= self.config.interval_ms);
        if !due {
            return;
        }
        self.last_ping_ms = Some(now_ms);
        for (&id, p) in &mut self.peers {
            out.push(HbEffect::Ping { to: id, stamp_ms: now_ms });
            let silent = now_ms.saturating_sub(p.last_heard_ms);
            if silent > self.config.grace_ms {
                p.reported = true;
                out.push(HbEffect::Report { target: id, failed_for_ms: silent });
            }
        }
    }

    pub fn peers(&self) -> impl Iterator<Item = OsdId> + '_ {
        self.peers.keys().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silent_peers_are_reported_and_withdrawn() {
        let mut hb = Heartbeat::new(HeartbeatConfig { interval_ms: 1000, grace_ms: 3000 });
        hb.set_peers([(1, 1), (2, 1)], 0);
        let mut out = Vec::new();
        for t in (0..=5000).step_by(500) {
            hb.tick(t, &mut out);
            hb.pong(1, t, &mut out); // peer 1 always answers
        }
        let reports: Vec<&HbEffect> = out.iter().filter(|e| matches!(e, HbEffect::Report { .. })).collect();
        assert!(!reports.is_empty());
        assert!(reports.iter().all(|e| matches!(e, HbEffect::Report { target: 2, .. })), "{reports:?}");
        assert_eq!(out.iter().filter(|e| matches!(e, HbEffect::Ping { .. })).count(), 12, "two peers, six ticks due");
        out.clear();
        hb.pong(2, 5200, &mut out);
        assert_eq!(out, vec![HbEffect::Withdraw { target: 2 }]);
        // Dropped peers are forgotten; new ones get a full grace.
        hb.set_peers([(2, 1), (3, 1)], 6000);
        out.clear();
        hb.tick(8000, &mut out);
        assert!(!out.iter().any(|e| matches!(e, HbEffect::Report { .. })));
        hb.tick(9100, &mut out);
        assert!(out.contains(&HbEffect::Report { target: 3, failed_for_ms: 3100 }));
        assert_eq!(hb.peers().collect::<Vec<_>>(), vec![2, 3]);
    }

    #[test]
    fn a_peer_that_booted_again_gets_a_fresh_grace() {
        let mut hb = Heartbeat::new(HeartbeatConfig { interval_ms: 1000, grace_ms: 3000 });
        hb.set_peers([(1, 5)], 0);
        let mut out = Vec::new();
        hb.tick(4000, &mut out);
        assert!(out.contains(&HbEffect::Report { target: 1, failed_for_ms: 4000 }), "silent past the grace");
        // The same map epoch's peer again: still silent, still reported.
        hb.set_peers([(1, 5)], 4500);
        out.clear();
        hb.tick(5000, &mut out);
        assert!(out.iter().any(|e| matches!(e, HbEffect::Report { target: 1, .. })));
        // It booted again (up_from 9): its new life starts with a full grace.
        hb.set_peers([(1, 9)], 5500);
        out.clear();
        hb.tick(6500, &mut out);
        hb.tick(8000, &mut out);
        assert!(!out.iter().any(|e| matches!(e, HbEffect::Report { .. })), "{out:?}");
        hb.tick(9000, &mut out);
        assert!(out.contains(&HbEffect::Report { target: 1, failed_for_ms: 3500 }));
    }
}
