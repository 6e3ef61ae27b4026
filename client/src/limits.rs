//! Client-side bounds. Units last; each with its why.
#![allow(non_upper_case_globals)]

/// Bytes read from the socket per `read` call: a few frames' worth.
pub const read_chunk_bytes: usize = 64 << 10;
/// Frames decoded but not yet consumed on one connection.
pub const frames_queued_max: usize = 1024;
/// How long one connect attempt may take.
pub const connect_timeout_ms: u64 = 3_000;
/// How long a command waits for its reply before trying another monitor.
pub const command_timeout_ms: u64 = 10_000;
/// Redirects / retries of one command across monitors (leader changes).
pub const command_attempts_max: usize = 20;
/// Bytes of a config file.
pub const config_bytes_max: usize = 1 << 20;
/// A session is renewed once this share of its remaining lifetime has
/// passed: a third is left for a slow monitor or a leader change.
pub const ticket_renew_after_lifetime_pct: u64 = 66;
/// A frame whose data segment is at most this is copied into one buffer
/// with its header and MAC and written at once (a syscall and a TCP
/// segment cost more than the copy); bigger data is written in place.
pub const coalesced_data_bytes_max: usize = 64 << 10;
