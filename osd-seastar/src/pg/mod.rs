//! Placement groups: the PG log ([`log`]) and the replicated, primary-copy
//! PG state machine ([`machine`]) with peering and log-based recovery.
//! Sans-IO: the OSD shard feeds inputs and carries out effects; the
//! deterministic simulator in `sim` drives several PGs with crashes.

pub mod log;
pub mod machine;

#[cfg(test)]
mod sim;
