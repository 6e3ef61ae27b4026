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
//! - [`uuid`] — fsid and OSD uuid text form.
//!
//! Invariants:
//! - Before any body is touched, the frame decoder has checked the magic,
//!   version, message type, flags and both lengths (against
//!   [`limits`], from the 32 header bytes alone, before allocating), the
//!   crc32 over header, body and data, and — on an authenticated
//!   connection — the MAC. Bodies are then validated by rkyv's bytecheck
//!   ([`msg::access`]); object ops by [`msg::OsdOp::check`].
//! - No input panics or allocates beyond a named limit (`fuzz/` drives the
//!   decoder with arbitrary bytes in arbitrary splits).
//! - `OsdMap::apply(E, diff(E, E+1)) == E+1`.

pub mod auth;
pub mod errno;
pub mod frame;
pub mod hello;
pub mod limits;
pub mod monmap;
pub mod msg;
pub mod osdmap;
pub mod pg;
pub mod uuid;
