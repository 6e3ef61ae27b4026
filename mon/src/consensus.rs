//! Opens the consensus log a monitor runs: the Paxos log among several
//! monitors ([`crate::paxos`]), or the solo log of a one-monitor cluster
//! ([`crate::solo`]).

use std::path::Path;

use crate::paxos::{PaxosLog, PeerLinks};

/// Opens the replicated log of monitor `rank` (must run inside a tokio
/// runtime: it starts the peer links).
pub fn open(dir: &Path, rank: u32, links: PeerLinks) -> std::io::Result<PaxosLog> {
    PaxosLog::open(dir, rank, links)
}
