//! `sepia-tuning`: what a Sepia OSD node has and how to use it.
//!
//! A thread-per-core OSD is only as fast as its placement: a shard on the
//! wrong socket pays a memory and PCIe hop on every I/O, and two shards on
//! hyperthread siblings halve each other. This crate owns
//! - [`topology`] — discovery (hwloc through `hwlocality`, sysfs fallback)
//!   into plain structs, from the live host or an hwloc XML file;
//! - [`plan`] — the pure shard → core planner and its text/JSON plan, which
//!   `sepia-osd` pins its glommio executors with ([`plan::Plan::cores_for`]);
//! - [`check`] — the node checklist (io_uring, memlock, governor, THP,
//!   C-states, NVMe scheduler, NIC IRQs, open files, O_DIRECT);
//! - [`sys`] — bounded, typed reads of sysfs/procfs under an injectable root;
//! - [`limits`] — every bound and threshold, named.
//!
//! Invariants: nothing read from a file, sysfs or procfs panics — bad input
//! is a typed error, a `warn` finding or a `None` fact; the planner is a
//! pure function of its inputs; a plan never gives one PU to two shards.

pub mod check;
pub mod limits;
pub mod plan;
pub mod sys;
pub mod topology;

pub use plan::{plan, OsdSpec, Plan, PlanError, Policy};
pub use topology::{DeviceKind, IoDevice, Topology};
