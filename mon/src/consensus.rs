//! The consensus log among several monitors (Paxos; see `crate::paxos`
//! when present). Until it lands, multi-monitor clusters are refused with
//! a clear error rather than run without agreement.

use std::path::Path;

use crate::daemon::Consensus;
use crate::solo::SoloLog;

/// Opens the replicated log of monitor `rank` among `addrs`.
pub async fn open(_dir: &Path, _rank: u32, addrs: &[String]) -> std::io::Result<SoloLog> {
    Err(std::io::Error::other(format!(
        "a {}-monitor quorum needs the Paxos log, which is not built into this binary yet; run one monitor",
        addrs.len()
    )))
}

#[allow(dead_code)]
fn assert_consensus<C: Consensus>() {}
