//! Bounds of the monitor services. Units last; each with its why.
#![allow(non_upper_case_globals)]

/// OSDMap incrementals kept for subscribers: a subscriber further behind
/// gets one full map instead (Ceph keeps ~500 epochs by default).
pub const osdmap_history_max: usize = 500;
/// Entities in the auth database: clients, OSDs, monitors of a big cluster.
pub const auth_entities_max: usize = 1 << 20;
/// Requests waiting for a commit on the leader: back-pressure beyond this.
pub const waiters_max: usize = 65_536;
/// Words in one admin command.
pub const command_args_max: usize = 64;
/// Bytes in one admin command word (a CRUSH map in text fits).
pub const command_arg_bytes_max: usize = 4 << 20;
/// Failure reports tracked per target OSD.
pub const failure_reporters_max: usize = 64;
