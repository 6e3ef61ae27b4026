//! Opens the consensus log a monitor runs: the Paxos log among several
//! monitors ([`crate::paxos`]), or the solo log of a one-monitor cluster
//! ([`crate::solo`]).

use std::path::Path;

use crate::paxos::{Membership, PaxosLog, PeerLinks};

/// Opens the replicated log of this monitor in `membership` (must run
/// inside a tokio runtime: it starts the peer links).
/// `compact_min_entries`: decided entries kept past the last snapshot.
pub fn open(dir: &Path, membership: Membership, links: PeerLinks, compact_min_entries: usize) -> std::io::Result<PaxosLog> {
    PaxosLog::open(dir, membership, links, compact_min_entries)
}
