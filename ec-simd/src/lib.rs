//! Reed-Solomon erasure coding over GF(2^8), bit-exact with Intel ISA-L.
//!
//! What this crate owns:
//! - [`gf`]: the field GF(2^8) with ISA-L's polynomial 0x11d (log/exp, inverse,
//!   a full multiplication table, and the per-constant tables the kernels use).
//! - [`matrix`]: ISA-L's two systematic generator matrices (`gf_gen_rs_matrix`,
//!   `gf_gen_cauchy1_matrix`), the safe ranges of the first, and inversion.
//! - [`kernel`]: the dot-product kernels (`out[r] = XOR_j c[r][j] * in[j]`),
//!   scalar plus x86 SIMD ones (GFNI+AVX-512, GFNI+AVX2, AVX2, SSSE3) chosen
//!   at run time. Every kernel produces the scalar kernel's bytes.
//! - [`codec`]: encode, reconstruct any <= m lost chunks with a bounded cache
//!   of decode tables, and incremental parity update.
//! - [`files`] and [`bench`]: what the `sepia-ec` tool does.
//!
//! Invariant: chunks written by this crate equal ISA-L's `ec_encode_data`
//! output for the same matrix, so either side can read the other's chunks.
//! Nothing here panics on bad input: sizes, counts and erasure sets from
//! callers are checked and refused with an [`EcError`].

pub mod bench;
pub mod codec;
pub mod error;
pub mod files;
pub mod gf;
#[cfg(feature = "isal")]
pub mod isal;
pub mod kernel;
pub mod limits;
pub mod matrix;

pub use codec::{CacheStats, Codec};
pub use error::EcError;
pub use kernel::Kernel;
pub use matrix::{Matrix, MatrixKind};
