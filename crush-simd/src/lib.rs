//! `crush-simd`: Ceph-exact CRUSH placement.
//!
//! What it owns:
//! - [`model`]: the CRUSH map (devices, types, buckets of every Ceph
//!   algorithm, rules, tunables, device-class shadow trees);
//! - [`text`]: Ceph's text map format, parsed and printed exactly as
//!   `crushtool -c` / `crushtool -d` do;
//! - [`mapper`]: the exact scalar mapper (`crush_do_rule`), the oracle;
//! - [`hash`]: rjenkins1 and the fixed-point `crush_ln`;
//! - [`divide`]: exact straw2 quotients by multiplication;
//! - [`tester`]: `crushtool --test` output, line for line.
//!
//! Invariants: every result equals Ceph's (Pacific) for the same map, rule,
//! input and reweights; nothing built from untrusted text panics; every size
//! is bounded by [`limits`]. This crate is a leaf: it depends on no other
//! Sepia crate.

// Bounds are named `thing_unit_max`, like the `limits` module.
#![allow(non_upper_case_globals)]

pub mod batch;
pub mod compare;
pub mod divide;
pub mod edit;
pub mod hash;
pub mod limits;
mod ln_table;
pub mod mapper;
pub mod model;
pub mod tester;
pub mod wire;
pub mod text;

pub use mapper::{Mapper, Workspace};
pub use model::{Bucket, BucketAlg, CrushMap, ModelError, Rule, Step, Tunables, ITEM_NONE};
