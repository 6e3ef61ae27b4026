//! `sepia-mon`: the monitors, the one place where the cluster must never
//! disagree with itself.
//!
//! - [`services`] — sans-IO map services: the replicated [`services::state`]
//!   (MonMap, OSDMap with history, auth database) and the leader's
//!   [`services::service`] that batches requests into log entries.
//! - [`daemon`] — the tokio shell: client/OSD listener, consensus, clock.
//! - [`paxos`] — the replicated log among several monitors (omnipaxos,
//!   durable file storage, peer links); [`solo`] — the log of a
//!   one-monitor cluster; [`consensus`] opens the right one.
//!
//! Invariants: every change is a committed log entry applied identically
//! by every monitor; a monitor outside the majority changes nothing and
//! serves no map as current; every queue is bounded.

pub mod consensus;
pub mod daemon;
pub mod paxos;
pub mod services;
pub mod solo;
