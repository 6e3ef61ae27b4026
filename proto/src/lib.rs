//! `sepia-proto`: the one vocabulary monitors, OSDs and clients share.
//!
//! Sans-IO: types, codecs and pure functions only — no sockets, no runtime,
//! no clock (callers pass times in). The tokio shells (mon, client) and the
//! glommio shell (OSD) call the same code.
//!
//! - [`pg`] — Ceph's object → PG math (rjenkins string hash, `stable_mod`).
//! - [`osdmap`], [`monmap`] — the cluster maps, their rkyv encodings and
//!   incrementals.
//! - [`frame`] — the wire frame: header, checks, streaming decoder,
//!   zero-copy data segment.
//! - [`msg`] — every message body.
//! - [`hello`] — version and feature negotiation.
//! - [`auth`] — entities, keyrings, capabilities, tickets, frame MACs.
//! - [`errno`] — errno-style result codes.
//! - [`limits`] — every bound, with why.

pub mod auth;
pub mod errno;
pub mod frame;
pub mod hello;
pub mod limits;
pub mod monmap;
pub mod msg;
pub mod osdmap;
pub mod pg;
