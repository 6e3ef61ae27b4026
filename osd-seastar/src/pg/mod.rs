//! Placement groups: the PG log ([`log`]) and the replicated, primary-copy
//! PG state machine ([`machine`]) with peering, log-based recovery and
//! backfill ([`backfill`]: object-order walks for members the log cannot
//! catch up).
//! Sans-IO: the OSD shard feeds inputs and carries out effects; the
//! deterministic simulator in `sim` drives several PGs with crashes.

pub mod backfill;
pub mod log;
pub mod machine;

#[cfg(test)]
mod sim;
