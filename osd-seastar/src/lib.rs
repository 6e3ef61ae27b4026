//! `sepia-osd`: the object storage daemon, one shard per core.
//!
//! - [`heartbeat`] — pings between OSDs and failure reports, sans-IO.
//! - [`monlink`] — boot, beacons, failure reports and the map
//!   subscription, on a control thread of its own.
//! - [`pg`] — placement groups: the PG log and the replicated PG state
//!   machine (peering, log-based recovery), sans-IO, with a deterministic
//!   simulator.
//!
//! - [`objstore`] — the per-shard object store on O_DIRECT io_uring I/O:
//!   transactions, group commit, checkpoints, replay, crc per block.
//! - [`pgs`] — the shell that runs a shard's PG state machines: durable
//!   PG logs, peering and recovery messages, ordered store transactions.
//! - [`server`] — the shard server: listener, client ops on the PGs the
//!   shard owns, replica ops, PG listing.
//!
//! Invariant: the data path never crosses cores — a PG belongs to exactly
//! one shard of its OSD, and everything it touches is that shard's.

pub mod heartbeat;
pub mod monlink;
pub mod objstore;
pub mod pg;
pub mod pgs;
pub mod server;
