//! Every bound `sepia-proto` enforces, in one place. Units last. Each is
//! checked before memory is reserved for untrusted input.
#![allow(non_upper_case_globals)]

/// Pools per cluster. Ceph clusters rarely exceed a few hundred; this caps
/// the size of a pool table decoded from the wire.
pub const pools_max: usize = 4096;
/// OSD ids per map (Ceph's max_osd). 65,536 covers the largest clusters known.
pub const osds_max: usize = 65_536;
/// pg_temp / primary_temp overrides per map: at most a few per PG in flight.
pub const pg_temp_entries_max: usize = 1 << 20;
/// Shards (cores) per OSD: one per core of a 256-core node.
pub const shards_per_osd_max: usize = 256;
/// PGs per pool. Ceph warns far below this; bounds placement tables.
pub const pg_num_max: usize = 1 << 20;
/// Replicas or k + m chunks per PG (ISA-L's k + m ≤ 255 bounds EC).
pub const pool_size_max: usize = 255;
/// Monitors in a MonMap: quorums are 1, 3, 5, rarely 7.
pub const monitors_max: usize = 15;
/// A pool, entity, or monitor name: plenty for humans, bounded for us.
pub const name_bytes_max: usize = 256;
/// An `ip:port` address string.
pub const addr_bytes_max: usize = 64;
/// An object name (Ceph's default `osd_max_object_name_len` is 2048).
pub const object_name_bytes_max: usize = 2048;
/// A namespace or locator key.
pub const object_locator_bytes_max: usize = 256;

/// A frame body (the rkyv part): maps for 65k OSDs fit; anything bigger is
/// an attack or a bug.
pub const frame_body_bytes_max: usize = 64 << 20;
/// A frame's data segment: one write of up to 16 MiB (rados' default
/// `osd_max_write_size` is 90 MiB; we split larger writes client-side).
pub const frame_data_bytes_max: usize = 16 << 20;
/// Frames a peer may have in flight on one connection before it must wait
/// for replies: bounds the server's per-connection queue.
pub const frames_in_flight_max: usize = 256;
/// Sub-ops in one compound object op.
pub const subops_per_op_max: usize = 64;
/// Keys in one omap get/set/rm sub-op.
pub const omap_keys_per_subop_max: usize = 4096;
/// An xattr or omap value.
pub const attr_value_bytes_max: usize = 64 << 10;
/// Entries returned by one list call.
pub const list_entries_max: usize = 4096;
