//! Bounds on everything a CRUSH map can make us allocate or loop over.
//!
//! Maps come from operators and from the network, so every size is capped
//! before memory is reserved. The caps are far above real clusters.
#![allow(non_upper_case_globals)]

/// Device ids: Ceph's largest clusters have a few ten thousand OSDs; 1M
/// keeps a weight vector at 4 MiB.
pub const devices_max: usize = 1 << 20;
/// Bucket ids (`-1 .. -buckets_max`): one bucket per host/rack/row plus
/// the class shadows. The bucket table has one slot (~100 bytes) per id down
/// to the lowest, so 64k ids bound it to ~7 MB even for a hostile map.
pub const buckets_max: usize = 1 << 16;
/// Items in one bucket: the tree algorithm sizes arrays by the next power of
/// two, so 64k items cost at most 512 KiB per bucket.
pub const bucket_items_max: usize = 1 << 16;
/// Rule ids: Ceph stores rule ids in a byte.
pub const rules_max: usize = 256;
/// Steps per rule: real rules have < 10.
pub const rule_steps_max: usize = 64;
/// Device classes: each one clones the whole hierarchy.
pub const classes_max: usize = 64;
/// Bucket nesting depth: real maps have < 10 levels; this stops a cycle.
pub const hierarchy_depth_max: usize = 64;
/// `num_rep` / result size of one mapping: also bounds the mapper's scratch.
pub const result_max: usize = 256;
/// Text map size accepted by the parser.
pub const map_text_bytes_max: usize = 64 << 20;
/// Tries per choose step (`choose_total_tries`, `set_choose_tries`): the
/// mapper loops this many times per replica, so bound the work per input.
pub const choose_tries_max: u32 = 10_000;
