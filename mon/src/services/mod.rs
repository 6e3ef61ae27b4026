//! The monitor's map services, sans-IO: the replicated [`state`] every
//! monitor applies from the Paxos log, and the leader's [`service`] that
//! turns requests (admin commands, OSD boots, beacons, failure reports,
//! the clock) into batched log entries. The tokio shell feeds them and
//! sends what they return; a simulator can drive the same code.

pub mod access;
pub mod caps_check;
pub mod command;
pub mod format;
pub mod limits;
pub mod service;
pub mod state;

#[cfg(test)]
mod tests;
