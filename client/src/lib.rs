//! `sepia-client`: how programs talk to a Sepia cluster.
//!
//! - [`conn`] — one framed TCP connection (tokio): hello, then request /
//!   reply frames; bounded, checked by `sepia_proto::frame`.
//! - [`config`] — the `ceph.conf`-shaped config file and `-m` addresses.
//! - [`monc`] — the monitor client: commands with leader redirects and
//!   retries, map subscriptions.
//! - [`rados`] — the librados-style object client (`Rados`, `IoCtx`):
//!   placement computed locally, one connection per OSD shard, resend on
//!   map change.
//! - [`blocking`] — a synchronous facade for tools.
//! - [`tools`] — `sepia` data commands (`put`, `get`, `bench`, ...).
//! - [`cluster`] — `sepia cluster up|down`: a local dev cluster of real
//!   processes on loopback.
//!
//! Invariant: nothing here trusts the network — every frame goes through
//! the proto decoder and every body through rkyv validation before use.

pub mod blocking;
pub mod cluster;
pub mod config;
pub mod conn;
pub mod limits;
pub mod monc;
pub mod rados;
pub mod tools;
