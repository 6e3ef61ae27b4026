//! `sepia-osd`: the object storage daemon, one shard per core.
//!
//! - [`heartbeat`] — pings between OSDs and failure reports, sans-IO.
//! - [`monlink`] — boot, beacons, failure reports and the map
//!   subscription, on a control thread of its own.
//! - [`pg`] — placement groups: the PG log and the replicated PG state
//!   machine (peering, log-based recovery), sans-IO, with a deterministic
//!   simulator.
//!
//! (The object store — `store` — and the shard runtime join here as their
//! issues land.)
//!
//! Invariant: the data path never crosses cores — a PG belongs to exactly
//! one shard of its OSD, and everything it touches is that shard's.

pub mod heartbeat;
pub mod monlink;
pub mod pg;
